/**
 * Raft's safety properties, checked from outside the members after every step of a simulation
 * (TigerBeetle's state_checker): the driver reports what each member persisted and applied, and the
 * checker keeps one canonical history to compare everyone against.
 *
 *  - Election safety: at most one leader per term.
 *  - Log matching: members that committed an index hold the same entry there (same term, same
 *    bytes), so committed prefixes are identical.
 *  - Leader completeness: a member that becomes leader of term T holds every entry whose commit
 *    was observed at a term below T.
 *  - State machine safety: no two members apply different entries at one index, and state machines
 *    that applied the same index hold the same state.
 *  - Durability of what was fsynced: a term and vote that were synced survive a crash; per member,
 *    term never goes back and a vote never changes within a term; commit never goes back within
 *    one run of a member.
 *
 * Any violation throws `SimInvariantError` naming the property, the member and the index.
 */
import type { Entry, HardState, NodeId } from "../types.js";

export class SimInvariantError extends Error {
  override readonly name = "SimInvariantError";
  constructor(readonly invariant: string, message: string) {
    super(`${invariant}: ${message}`);
  }
}

/** Read access to a member's stable log (its MemoryStorage after persisting a Ready). */
export interface LogView {
  /** The index of the snapshot the log starts after (entries at or below it are gone). */
  snapshotIndex(): number;
  lastIndex(): number;
  /** The entry at `index`, for `snapshotIndex() < index ≤ lastIndex()`. */
  entry(index: number): Entry;
  /** The term at `index`, for `snapshotIndex() ≤ index ≤ lastIndex()`. */
  term(index: number): number;
}

/** A 32-bit FNV-1a over an entry's type and bytes (terms are compared separately). */
export function entryDataHash(entry: Entry): number {
  let h = Math.imul(0x811c9dc5 ^ entry.type, 0x01000193);
  const data = entry.data;
  for (let i = 0; i < data.length; i++) h = Math.imul(h ^ data[i]!, 0x01000193);
  return h >>> 0;
}

interface CanonicalEntry {
  readonly term: number;
  readonly dataHash: number;
  /** The lowest term at which a member was seen committing this index (an upper bound of the real commit term). */
  commitTerm: number;
  readonly firstSeenBy: NodeId;
}

interface MemberTrack {
  incarnation: number;
  /** Entries up to this index were compared with the canonical log. */
  checkedCommit: number;
  commit: number;
  term: number;
  vote: NodeId;
  /** Term and vote as of the last synced save: what a crash must preserve. */
  syncedTerm: number;
  syncedVote: NodeId;
  applied: number;
}

export interface CheckerStats {
  /** Terms that had a leader. */
  readonly leaderTerms: number;
  /** The highest index seen committed. */
  readonly committedIndex: number;
  /** The highest index seen applied. */
  readonly appliedIndex: number;
  readonly checks: number;
}

export class SafetyChecker {
  private readonly leaderByTerm = new Map<number, NodeId>();
  /** Canonical committed log, by index (index 0 unused). */
  private readonly committed: (CanonicalEntry | undefined)[] = [];
  private committedMax = 0;
  /** Canonical applied entries: term and data hash at each index, and the state hash after it. */
  private readonly appliedTerm: number[] = [];
  private readonly appliedHash: number[] = [];
  private readonly stateHashAt = new Map<number, number>();
  private readonly fullHashAt = new Map<number, number>();
  private appliedMax = 0;
  private readonly members = new Map<NodeId, MemberTrack>();
  private checkCount = 0;

  stats(): CheckerStats {
    return { leaderTerms: this.leaderByTerm.size, committedIndex: this.committedMax, appliedIndex: this.appliedMax, checks: this.checkCount };
  }

  /** The leader recorded for `term`, if any. */
  leaderOf(term: number): NodeId | undefined {
    return this.leaderByTerm.get(term);
  }

  get committedIndex(): number {
    return this.committedMax;
  }

  private track(id: NodeId): MemberTrack {
    let t = this.members.get(id);
    if (t === undefined) {
      t = { incarnation: 0, checkedCommit: 0, commit: 0, term: 0, vote: "", syncedTerm: 0, syncedVote: "", applied: 0 };
      this.members.set(id, t);
    }
    return t;
  }

  /**
   * A member (re)started from its disk with `hardState` and its log in `log`; `applied` is where its
   * state machine starts (the snapshot index).
   */
  onStart(id: NodeId, incarnation: number, hardState: HardState, log: LogView, applied: number): void {
    const t = this.track(id);
    this.checkCount++;
    if (hardState.term < t.syncedTerm) {
      throw new SimInvariantError("durability", `${id} restarted at term ${hardState.term}, below the synced term ${t.syncedTerm}`);
    }
    if (hardState.term === t.syncedTerm && t.syncedVote !== "" && hardState.vote !== t.syncedVote) {
      throw new SimInvariantError("durability", `${id} restarted in term ${hardState.term} with vote "${hardState.vote}", but "${t.syncedVote}" was synced`);
    }
    t.incarnation = incarnation;
    t.term = hardState.term;
    t.vote = hardState.vote;
    t.syncedTerm = hardState.term;
    t.syncedVote = hardState.vote;
    t.commit = hardState.commit;
    t.applied = applied;
    t.checkedCommit = Math.min(t.checkedCommit, log.snapshotIndex());
    this.checkCommitted(id, t, log, hardState.commit, hardState.term);
  }

  /**
   * A member persisted a Ready: `hardState` (if it changed) and entries, synced when `synced`;
   * `isLeader`/`term` describe it after the Ready, `becameLeader` when this Ready made it leader.
   */
  onPersist(id: NodeId, hardState: HardState | null, synced: boolean, becameLeader: boolean, term: number, log: LogView): void {
    const t = this.track(id);
    this.checkCount++;
    if (hardState !== null) {
      if (hardState.term < t.term) throw new SimInvariantError("term-monotonic", `${id} term went back from ${t.term} to ${hardState.term}`);
      if (hardState.term === t.term && t.vote !== "" && hardState.vote !== t.vote) {
        throw new SimInvariantError("one-vote-per-term", `${id} changed its vote in term ${t.term} from "${t.vote}" to "${hardState.vote}"`);
      }
      if (hardState.commit < t.commit) throw new SimInvariantError("commit-monotonic", `${id} commit went back from ${t.commit} to ${hardState.commit}`);
      t.term = hardState.term;
      t.vote = hardState.vote;
      t.commit = hardState.commit;
      if (synced) {
        t.syncedTerm = hardState.term;
        t.syncedVote = hardState.vote;
      }
      this.checkCommitted(id, t, log, hardState.commit, hardState.term);
    } else if (synced) {
      t.syncedTerm = t.term;
      t.syncedVote = t.vote;
    }
    if (becameLeader) this.onLeader(id, term, log);
  }

  private onLeader(id: NodeId, term: number, log: LogView): void {
    const other = this.leaderByTerm.get(term);
    if (other !== undefined && other !== id) {
      throw new SimInvariantError("election-safety", `${id} became leader of term ${term}, which ${other} already led`);
    }
    this.leaderByTerm.set(term, id);
    const first = log.snapshotIndex();
    const last = log.lastIndex();
    for (let index = 1; index <= this.committedMax; index++) {
      const c = this.committed[index];
      if (c === undefined || c.commitTerm >= term) continue;
      if (index > last) {
        throw new SimInvariantError("leader-completeness", `${id} became leader of term ${term} with last index ${last}, missing entry ${index} committed at term ${c.commitTerm}`);
      }
      if (index < first) continue;
      const held = log.term(index);
      if (held !== c.term) {
        throw new SimInvariantError("leader-completeness", `${id} became leader of term ${term} holding term ${held} at ${index}, where term ${c.term} was committed at term ${c.commitTerm}`);
      }
    }
  }

  private checkCommitted(id: NodeId, t: MemberTrack, log: LogView, commit: number, term: number): void {
    const first = log.snapshotIndex();
    const from = Math.max(t.checkedCommit + 1, first + 1);
    const last = log.lastIndex();
    if (commit > last) throw new SimInvariantError("commit-in-log", `${id} commit ${commit} beyond its last index ${last}`);
    for (let index = from; index <= commit; index++) {
      const e = log.entry(index);
      if (e.index !== index) throw new SimInvariantError("log-index", `${id} holds entry ${e.index} at index ${index}`);
      const dataHash = entryDataHash(e);
      const c = this.committed[index];
      if (c === undefined) {
        this.committed[index] = { term: e.term, dataHash, commitTerm: term, firstSeenBy: id };
        if (index > this.committedMax) this.committedMax = index;
      } else {
        if (c.term !== e.term || c.dataHash !== dataHash) {
          throw new SimInvariantError("log-matching", `${id} committed (term ${e.term}, hash ${dataHash}) at ${index}, ${c.firstSeenBy} committed (term ${c.term}, hash ${c.dataHash})`);
        }
        if (term < c.commitTerm) c.commitTerm = term;
      }
    }
    if (commit > t.checkedCommit) t.checkedCommit = commit;
  }

  /** A member applied `entry`; `stateHash` identifies its state machine after it. */
  onApply(id: NodeId, entry: Entry, stateHash: number): void {
    const t = this.track(id);
    this.checkCount++;
    const index = entry.index;
    if (index !== t.applied + 1) throw new SimInvariantError("apply-order", `${id} applied ${index} after ${t.applied}`);
    t.applied = index;
    const dataHash = entryDataHash(entry);
    const c = this.committed[index];
    if (c !== undefined && (c.term !== entry.term || c.dataHash !== dataHash)) {
      throw new SimInvariantError("state-machine-safety", `${id} applied (term ${entry.term}) at ${index}, but (term ${c.term}) was committed there`);
    }
    if (index > t.commit && c === undefined) {
      throw new SimInvariantError("apply-committed", `${id} applied ${index} beyond its commit ${t.commit}`);
    }
    if (index <= this.appliedMax) {
      if (this.appliedTerm[index] !== entry.term || this.appliedHash[index] !== dataHash) {
        throw new SimInvariantError("state-machine-safety", `${id} applied (term ${entry.term}, hash ${dataHash}) at ${index}, another member (term ${this.appliedTerm[index]}, hash ${this.appliedHash[index]})`);
      }
    } else {
      for (let i = this.appliedMax + 1; i < index; i++) {
        this.appliedTerm[i] = -1;
        this.appliedHash[i] = -1;
      }
      this.appliedTerm[index] = entry.term;
      this.appliedHash[index] = dataHash;
      this.appliedMax = index;
    }
    if (this.appliedTerm[index] === -1) {
      this.appliedTerm[index] = entry.term;
      this.appliedHash[index] = dataHash;
    }
    this.checkState(id, index, stateHash);
  }

  /** A member's state machine was replaced by a snapshot at `index`. */
  onRestore(id: NodeId, index: number, stateHash: number): void {
    const t = this.track(id);
    this.checkCount++;
    t.applied = index;
    this.checkState(id, index, stateHash);
  }

  /**
   * A member's whole state machine (data and client sessions, `KvStateMachine.snapshot()`) hashes to
   * `fullHash` at applied index `index`; checked when it takes, installs or restarts from a snapshot.
   */
  onFullState(id: NodeId, index: number, fullHash: number): void {
    this.checkCount++;
    const known = this.fullHashAt.get(index);
    if (known === undefined) this.fullHashAt.set(index, fullHash);
    else if (known !== fullHash) {
      throw new SimInvariantError("state-agreement", `${id} full state at ${index} hashes to ${fullHash >>> 0}, another member's to ${known >>> 0}`);
    }
  }

  private checkState(id: NodeId, index: number, stateHash: number): void {
    const known = this.stateHashAt.get(index);
    if (known === undefined) this.stateHashAt.set(index, stateHash);
    else if (known !== stateHash) {
      throw new SimInvariantError("state-agreement", `${id} state after applying ${index} hashes to ${stateHash >>> 0}, another member's to ${known >>> 0}`);
    }
  }
}
