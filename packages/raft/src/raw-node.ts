import { encodeConfChange } from "./conf-change.js";
import { InvalidMessageError, ProposalDroppedError, ReadyProtocolError, invariant } from "./errors.js";
import type { ProgressState } from "./progress.js";
import { Raft, isLocalMessageType, messageTypeName, newMessage, type RaftConfig } from "./raft.js";
import { payloadSizeBytes } from "./storage.js";
import { EntryType, MessageType, NONE, Role } from "./types.js";
import type { ConfChange, ConfState, HardState, Message, NodeId, Ready, SoftState } from "./types.js";

/** Configuration of a RawNode; see `RaftConfig` for each field and its default. */
export type RawNodeConfig = RaftConfig;

/** What the leader knows about one member's replication, as reported by `status()`. */
export interface ProgressStatus {
  readonly match: number;
  readonly next: number;
  readonly state: ProgressState;
  readonly isLearner: boolean;
  readonly recentActive: boolean;
  readonly pendingSnapshot: number;
  readonly inflight: number;
  readonly paused: boolean;
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly lead: NodeId;
  readonly role: Role;
  /** The member leadership is being transferred to (leader only), or NONE. */
  readonly leadTransferee: NodeId;
  readonly confState: ConfState;
  /** Per-member progress (this leader included), keyed by id in sorted order; null unless leader. */
  readonly progress: Readonly<Record<NodeId, ProgressStatus>> | null;
}

function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function softStateEqual(a: SoftState, b: SoftState): boolean {
  return a.lead === b.lead && a.role === b.role;
}

/**
 * One Raft member driven synchronously by its owner (the simulator, a test, or the on-disk node):
 *
 *   tick() / step(message) / propose(…) / campaign() / readIndex(…)   inputs
 *   hasReady() → ready() → persist, send, apply (see `Ready`) → advance(ready)
 *
 * Not re-entrant and not thread-safe; no I/O, timers or randomness of its own. At most one Ready is
 * outstanding: between `ready()` and `advance()` inputs are accepted and their effects go into the
 * next Ready; `hasReady()` answers false and `ready()` throws until `advance()`.
 *
 * Starting a member:
 *  - a founder of a new cluster: `newBootstrapStorage(founders)` (snapshot at index 0 carrying the
 *    founding voters), identical on every founder;
 *  - a member joining later: either a storage carrying the founding membership (like etcd's
 *    initial-cluster), or a fresh `new MemoryStorage()` with an empty membership. Either way it is not
 *    a voter, so it never campaigns; once the leader committed `AddLearner` for it, it receives the log
 *    or a snapshot. A fresh joiner first asks the leader for its snapshot: when the leader never
 *    compacted, that is the snapshot at index 0, whose only content is the founding membership (its
 *    `data` is whatever the founders' storage holds at index 0, empty for `newBootstrapStorage`). The
 *    application persists it like any Ready snapshot; it has no state machine content to restore.
 */
export class RawNode {
  private readonly raft: Raft;
  private prevSoftState: SoftState;
  private prevHardState: HardState;
  private outstanding: Ready | null = null;

  /** Throws `RaftConfigError` for an invalid configuration. */
  constructor(config: RawNodeConfig) {
    this.raft = new Raft(config);
    this.prevSoftState = this.raft.softState();
    this.prevHardState = this.raft.hardState();
  }

  get id(): NodeId {
    return this.raft.id;
  }

  /** Advances the logical clock by one tick (election and heartbeat timeouts count ticks). */
  tick(): void {
    this.raft.tick();
  }

  /** Starts an election now (a pre-election first when pre-vote is on). Ignored by leaders, learners and non-members. */
  campaign(): void {
    this.raft.step(newMessage({ type: MessageType.Hup, from: this.raft.id }));
  }

  /**
   * Proposes `data` (non-empty: an empty entry is the leader's no-op) for appending to the log. The
   * proposal is forwarded to the leader by a follower. Throws `ProposalDroppedError` when there is no
   * known leader, during a leadership transfer, or over the leader's uncommitted-size limit. A proposal
   * that was not dropped may still be lost (a leader change): watch the committed entries.
   */
  propose(data: Uint8Array): void {
    if (!(data instanceof Uint8Array) || data.length === 0) throw new RangeError("propose: data must be a non-empty Uint8Array");
    this.raft.step(newMessage({
      type: MessageType.Prop, from: this.raft.id, entries: [{ term: 0, index: 0, type: EntryType.Normal, data }],
    }));
  }

  /**
   * Proposes a membership change. Besides the drops of `propose`, a leader throws `ProposalDroppedError`
   * when a conf change is still unapplied or when `cc` does not apply to the membership in force;
   * (a follower forwards it, and the leader turns such a change into a no-op entry).
   * The change takes effect when the application calls `applyConfChange` for the committed entry.
   */
  proposeConfChange(cc: ConfChange): void {
    const data = encodeConfChange(cc);
    this.raft.step(newMessage({
      type: MessageType.Prop, from: this.raft.id, entries: [{ term: 0, index: 0, type: EntryType.ConfChange, data }],
    }));
  }

  /**
   * Applies a committed conf change (decoded from a ConfChange entry of `committedEntries`); the
   * application calls it while applying that entry, before `advance`. Returns the membership now in
   * force. A leader removed by it steps down.
   */
  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc);
  }

  /**
   * Steps a message received from another member. Throws `InvalidMessageError` for local message types
   * (Hup, Beat, CheckQuorum, Unreachable, SnapStatus), messages addressed to someone else, and messages
   * without a term (other than forwarded proposals and read requests). Forwarded
   * proposals and read requests that this member cannot serve are dropped silently.
   */
  step(m: Message): void {
    if (isLocalMessageType(m.type)) {
      throw new InvalidMessageError(`cannot step local message type ${messageTypeName(m.type)} from the wire (from ${m.from || "none"})`);
    }
    if (m.to !== this.raft.id) {
      throw new InvalidMessageError(`${messageTypeName(m.type)} from ${m.from} is addressed to ${JSON.stringify(m.to)}, not to ${this.raft.id}`);
    }
    if (m.from === NONE) throw new InvalidMessageError(`${messageTypeName(m.type)} to ${m.to} has no sender`);
    if (m.term === 0 && m.type !== MessageType.Prop && m.type !== MessageType.ReadIndex) {
      // Only forwarded proposals and read requests travel without a term.
      throw new InvalidMessageError(`${messageTypeName(m.type)} from ${m.from} has no term`);
    }
    try {
      this.raft.step(m);
    } catch (e) {
      if (e instanceof ProposalDroppedError) return;
      throw e;
    }
  }

  /**
   * Requests a linearizable read: once a `ReadState` with the same `context` comes out of a Ready, a
   * read is safe when the state machine applied `readState.index`. `context` must be non-empty and
   * unique among pending reads. Throws `ProposalDroppedError` when no leader is known. A request can be
   * lost (a leader change, a lost message): retry with a new context after a timeout.
   */
  readIndex(context: Uint8Array): void {
    if (!(context instanceof Uint8Array) || context.length === 0) throw new RangeError("readIndex: context must be a non-empty Uint8Array");
    this.raft.step(newMessage({ type: MessageType.ReadIndex, context }));
  }

  /** Asks the leader (this member, or the one a follower knows) to hand leadership to `transferee`. */
  transferLeader(transferee: NodeId): void {
    if (transferee === NONE) throw new RangeError("transferLeader: transferee must be a member id");
    this.raft.step(newMessage({ type: MessageType.TransferLeader, from: transferee }));
  }

  /** The transport failed to deliver to `id`: the leader probes it instead of pipelining. */
  reportUnreachable(id: NodeId): void {
    this.raft.step(newMessage({ type: MessageType.Unreachable, from: id }));
  }

  /** The snapshot sent to `id` was delivered and applied (`ok`), or failed (retried later). */
  reportSnapshot(id: NodeId, ok: boolean): void {
    this.raft.step(newMessage({ type: MessageType.SnapStatus, from: id, reject: !ok }));
  }

  /** Whether `ready()` would hand out anything. False while a Ready is outstanding (not advanced). */
  hasReady(): boolean {
    if (this.outstanding !== null) return false;
    const r = this.raft;
    if (!softStateEqual(r.softState(), this.prevSoftState)) return true;
    if (!hardStateEqual(r.hardState(), this.prevHardState)) return true;
    return r.raftLog.hasPendingSnapshot() || r.msgs.length > 0 || r.raftLog.hasUnstableEntries() ||
      r.raftLog.hasNextCommittedEntries() || r.readStates.length > 0;
  }

  /**
   * Hands out what to persist, send and apply (see the contract on `Ready`). Call `advance(ready)` once
   * it is done; until then `ready()` throws `ReadyProtocolError`.
   */
  ready(): Ready {
    if (this.outstanding !== null) throw new ReadyProtocolError("ready() called while the previous Ready was not advanced");
    const r = this.raft;
    const soft = r.softState();
    const hard = r.hardState();
    const entries = r.raftLog.unstableEntries();
    const snapshot = r.raftLog.unstable.snapshot;
    const committedEntries = r.raftLog.nextCommittedEntries();
    const softChanged = !softStateEqual(soft, this.prevSoftState);
    const hardChanged = !hardStateEqual(hard, this.prevHardState);
    invariant(hard.commit <= r.raftLog.lastIndex(), () => `hard state commit ${hard.commit} beyond last index ${r.raftLog.lastIndex()}`);
    invariant(committedEntries.length === 0 || committedEntries[committedEntries.length - 1].index <= hard.commit, () =>
      `committed entries up to ${committedEntries[committedEntries.length - 1].index} beyond the commit index ${hard.commit}`);
    const rd: Ready = {
      softState: softChanged ? soft : null,
      hardState: hardChanged ? hard : null,
      readStates: r.readStates,
      entries,
      snapshot,
      committedEntries,
      messages: r.msgs,
      mustSync: entries.length > 0 || snapshot !== null || hard.term !== this.prevHardState.term || hard.vote !== this.prevHardState.vote,
    };
    r.readStates = [];
    r.msgs = [];
    if (softChanged) this.prevSoftState = soft;
    if (hardChanged) this.prevHardState = hard;
    this.outstanding = rd;
    return rd;
  }

  /** Tells the node that `ready` was persisted, sent and applied. Throws `ReadyProtocolError` for any other Ready. */
  advance(ready: Ready): void {
    if (this.outstanding === null) throw new ReadyProtocolError("advance() called without an outstanding Ready");
    if (ready !== this.outstanding) throw new ReadyProtocolError("advance() called with a Ready that is not the one handed out last");
    this.outstanding = null;
    const log = this.raft.raftLog;
    if (ready.snapshot !== null) {
      const index = ready.snapshot.metadata.index;
      log.stableSnapTo(index);
      if (index > log.applied) log.appliedTo(index);
    }
    if (ready.entries.length > 0) {
      const last = ready.entries[ready.entries.length - 1];
      log.stableTo(last.index, last.term);
    }
    if (ready.committedEntries.length > 0) {
      const last = ready.committedEntries[ready.committedEntries.length - 1];
      if (last.index > log.applied) log.appliedTo(last.index);
      this.raft.reduceUncommittedSize(payloadSizeBytes(ready.committedEntries));
    }
  }

  status(): RaftStatus {
    const r = this.raft;
    let progress: Record<NodeId, ProgressStatus> | null = null;
    if (r.role === Role.Leader) {
      const all: Record<NodeId, ProgressStatus> = {};
      progress = all;
      r.trk.visit((id, pr) => {
        all[id] = {
          match: pr.match, next: pr.next, state: pr.state, isLearner: pr.isLearner, recentActive: pr.recentActive,
          pendingSnapshot: pr.pendingSnapshot, inflight: pr.inflights.count(), paused: pr.isPaused(),
        };
      });
    }
    return {
      id: r.id, term: r.term, vote: r.vote, commit: r.raftLog.committed, applied: r.raftLog.applied, lead: r.lead,
      role: r.role, leadTransferee: r.leadTransferee, confState: r.trk.confState(), progress,
    };
  }
}
