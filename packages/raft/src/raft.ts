import { applyConfChangeToConfState, decodeConfChange, describeConfChange } from "./conf-change.js";
import { ProposalDroppedError, RaftConfigError, RaftInvariantError, invariant } from "./errors.js";
import { RaftLog } from "./log.js";
import { type Progress, ProgressTracker } from "./progress.js";
import { ReadOnly } from "./read-only.js";
import { CompactedError, SnapshotTemporarilyUnavailableError, payloadSizeBytes, type Storage } from "./storage.js";
import { EntryType, MessageType, NONE, Role } from "./types.js";
import type {
  ConfChange, ConfState, Entry, HardState, Message, NodeId, ReadState, Rng, Snapshot, SoftState,
} from "./types.js";

/** Where the core writes what it decides and why (role changes, votes, refused messages). */
export interface RaftLogger {
  info(message: string): void;
  warn(message: string): void;
}

/**
 * Configuration of one Raft member (`RawNode`). Validated by the constructor, which throws a
 * `RaftConfigError` naming the field.
 */
export interface RaftConfig {
  /** This member's id; never empty. */
  readonly id: NodeId;
  /** Ticks without hearing from a leader before campaigning. Default 10. Must exceed `heartbeatTicks`. */
  readonly electionTicks?: number;
  /** Ticks between the leader's heartbeats. Default 1. */
  readonly heartbeatTicks?: number;
  /** The stable log; its initial state gives the term, vote, commit index and membership. */
  readonly storage: Storage;
  /** Election jitter: the randomized timeout is `electionTicks + rng.int(electionTicks)`. */
  readonly rng: Rng;
  /** The last index the application applied before a restart (entries up to it are not handed out again). Default: the snapshot index. */
  readonly applied?: number;
  /** Upper bound of the entry bytes in one append message (at least one entry is always sent). Default 1 MiB. */
  readonly maxSizePerMsgBytes?: number;
  /** Appends in flight per follower in replicate state. Default 256. */
  readonly maxInflightMsgs?: number;
  /** Leader: refuse proposals once this many payload bytes are uncommitted. Default: no limit. */
  readonly maxUncommittedEntriesBytes?: number;
  /** Upper bound of the committed entry bytes in one Ready (at least one entry). Default: no limit. */
  readonly maxCommittedBytesPerReady?: number;
  /** Run a pre-vote round before a real election (thesis §9.6). Default true. */
  readonly preVote?: boolean;
  /** Leader steps down without a quorum of recent contact; followers in lease ignore votes (thesis §6.2). Default true. */
  readonly checkQuorum?: boolean;
  /** Optional trace of decisions; silent by default. */
  readonly logger?: RaftLogger;
}

const DEFAULT_MAX_SIZE_PER_MSG_BYTES = 1024 * 1024;
const DEFAULT_MAX_INFLIGHT_MSGS = 256;
const EMPTY_BYTES = new Uint8Array(0);
const SILENT_LOGGER: RaftLogger = { info: () => {}, warn: () => {} };

/** The context of a Vote sent by a transferee after TimeoutNow: voters grant it even within a lease. */
export const CAMPAIGN_TRANSFER_CONTEXT = new TextEncoder().encode("CampaignTransfer");

type CampaignKind = "pre-election" | "election" | "transfer";

/** Fields of a Message a caller sets; every other field takes its zero value. */
export type MessageFields = Partial<Message> & Pick<Message, "type">;

/** A complete Message from `fields`, every missing field at its zero value. */
export function newMessage(fields: MessageFields): Message {
  return {
    type: fields.type,
    to: fields.to ?? NONE,
    from: fields.from ?? NONE,
    term: fields.term ?? 0,
    logTerm: fields.logTerm ?? 0,
    index: fields.index ?? 0,
    entries: fields.entries ?? [],
    commit: fields.commit ?? 0,
    snapshot: fields.snapshot ?? null,
    reject: fields.reject ?? false,
    rejectHint: fields.rejectHint ?? 0,
    context: fields.context ?? EMPTY_BYTES,
  };
}

/** Message types that only ever come from this member itself, never from the wire. */
export function isLocalMessageType(type: MessageType): boolean {
  return type === MessageType.Hup || type === MessageType.Beat || type === MessageType.CheckQuorum ||
    type === MessageType.Unreachable || type === MessageType.SnapStatus;
}

const MESSAGE_TYPE_NAMES: Record<number, string> = {
  [MessageType.Hup]: "Hup", [MessageType.Beat]: "Beat", [MessageType.CheckQuorum]: "CheckQuorum",
  [MessageType.Prop]: "Prop", [MessageType.App]: "App", [MessageType.AppResp]: "AppResp",
  [MessageType.Vote]: "Vote", [MessageType.VoteResp]: "VoteResp", [MessageType.PreVote]: "PreVote",
  [MessageType.PreVoteResp]: "PreVoteResp", [MessageType.Snap]: "Snap", [MessageType.Heartbeat]: "Heartbeat",
  [MessageType.HeartbeatResp]: "HeartbeatResp", [MessageType.TransferLeader]: "TransferLeader",
  [MessageType.TimeoutNow]: "TimeoutNow", [MessageType.ReadIndex]: "ReadIndex",
  [MessageType.ReadIndexResp]: "ReadIndexResp", [MessageType.Unreachable]: "Unreachable",
  [MessageType.SnapStatus]: "SnapStatus",
};

export function messageTypeName(type: MessageType): string {
  return MESSAGE_TYPE_NAMES[type] ?? `MessageType(${type})`;
}

const ROLE_NAMES: Record<number, string> = {
  [Role.Follower]: "follower", [Role.PreCandidate]: "pre-candidate", [Role.Candidate]: "candidate", [Role.Leader]: "leader",
};

export function roleName(role: Role): string {
  return ROLE_NAMES[role] ?? `Role(${role})`;
}

function voteRespType(t: MessageType): MessageType {
  switch (t) {
    case MessageType.Vote: return MessageType.VoteResp;
    case MessageType.PreVote: return MessageType.PreVoteResp;
    default: throw new RaftInvariantError(`not a vote message: ${messageTypeName(t)}`);
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

interface ResolvedConfig {
  id: NodeId;
  electionTicks: number;
  heartbeatTicks: number;
  storage: Storage;
  rng: Rng;
  applied: number;
  maxSizePerMsgBytes: number;
  maxInflightMsgs: number;
  maxUncommittedEntriesBytes: number;
  maxCommittedBytesPerReady: number;
  preVote: boolean;
  checkQuorum: boolean;
  logger: RaftLogger;
}

function positiveInteger(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < 1) throw new RaftConfigError(`${name} must be a positive integer, got ${v}`);
  return v;
}

function sizeLimit(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (v === Number.POSITIVE_INFINITY) return v;
  if (!Number.isSafeInteger(v) || v < 0) throw new RaftConfigError(`${name} must be a non-negative integer or Infinity, got ${v}`);
  return v;
}

/** Checks `config` and fills in defaults; throws `RaftConfigError` naming the offending field. */
export function resolveConfig(config: RaftConfig): ResolvedConfig {
  if (typeof config !== "object" || config === null) throw new RaftConfigError("config must be an object");
  if (typeof config.id !== "string" || config.id === NONE) throw new RaftConfigError("id must be a non-empty string (the empty string means \"none\")");
  const electionTicks = positiveInteger("electionTicks", config.electionTicks, 10);
  const heartbeatTicks = positiveInteger("heartbeatTicks", config.heartbeatTicks, 1);
  if (electionTicks <= heartbeatTicks) {
    throw new RaftConfigError(`electionTicks (${electionTicks}) must be greater than heartbeatTicks (${heartbeatTicks})`);
  }
  const s = config.storage as Partial<Storage> | undefined;
  if (s === undefined || s === null || typeof s.initialState !== "function" || typeof s.entries !== "function" ||
    typeof s.term !== "function" || typeof s.lastIndex !== "function" || typeof s.firstIndex !== "function" ||
    typeof s.snapshot !== "function") {
    throw new RaftConfigError("storage must implement Storage (initialState, entries, term, lastIndex, firstIndex, snapshot)");
  }
  if (config.rng === undefined || config.rng === null || typeof config.rng.int !== "function") {
    throw new RaftConfigError("rng must be an Rng with int(n)");
  }
  const applied = config.applied ?? 0;
  if (!Number.isSafeInteger(applied) || applied < 0) throw new RaftConfigError(`applied must be a non-negative integer, got ${applied}`);
  const maxUncommitted = config.maxUncommittedEntriesBytes;
  if (maxUncommitted !== undefined && maxUncommitted !== Number.POSITIVE_INFINITY && (!Number.isSafeInteger(maxUncommitted) || maxUncommitted < 1)) {
    throw new RaftConfigError(`maxUncommittedEntriesBytes must be a positive integer or Infinity, got ${maxUncommitted}`);
  }
  for (const flag of ["preVote", "checkQuorum"] as const) {
    if (config[flag] !== undefined && typeof config[flag] !== "boolean") throw new RaftConfigError(`${flag} must be a boolean`);
  }
  return {
    id: config.id,
    electionTicks,
    heartbeatTicks,
    storage: config.storage,
    rng: config.rng,
    applied,
    maxSizePerMsgBytes: sizeLimit("maxSizePerMsgBytes", config.maxSizePerMsgBytes, DEFAULT_MAX_SIZE_PER_MSG_BYTES),
    maxInflightMsgs: positiveInteger("maxInflightMsgs", config.maxInflightMsgs, DEFAULT_MAX_INFLIGHT_MSGS),
    maxUncommittedEntriesBytes: maxUncommitted ?? Number.POSITIVE_INFINITY,
    maxCommittedBytesPerReady: sizeLimit("maxCommittedBytesPerReady", config.maxCommittedBytesPerReady, Number.POSITIVE_INFINITY),
    preVote: config.preVote ?? true,
    checkQuorum: config.checkQuorum ?? true,
    logger: config.logger ?? SILENT_LOGGER,
  };
}

/**
 * The Raft algorithm of one member as a deterministic state machine: `step(message)` and `tick()` are
 * its only inputs; its outputs accumulate in `msgs`, `readStates` and the log's unstable part until
 * `RawNode.ready()` hands them out. No I/O, no timers, no ambient randomness.
 *
 * Implemented: leader election with randomized timeouts, pre-vote and check-quorum (with the follower
 * lease), log replication with probe/replicate/snapshot flow control and fast backtracking, commit by
 * counting only in the current term, snapshots, single-server membership changes with at most one
 * unapplied change, leadership transfer, and ReadIndex reads. Proposals and ReadIndex requests are
 * forwarded by followers to the leader.
 */
export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NONE;
  readStates: ReadState[] = [];
  readonly raftLog: RaftLog;
  readonly trk: ProgressTracker;
  role: Role = Role.Follower;
  /** This member is a learner in the membership in force. */
  isLearner = false;
  /** Messages to send once the state they depend on is persisted (handed out by Ready). */
  msgs: Message[] = [];
  lead: NodeId = NONE;
  /** Leader: the member leadership is being transferred to, or NONE. */
  leadTransferee: NodeId = NONE;
  /** Leader: index of the latest conf change appended; a new one is refused until it is applied. */
  pendingConfIndex = 0;
  /** Leader: payload bytes appended and not yet applied. */
  uncommittedSizeBytes = 0;
  readOnly = new ReadOnly();
  /** Leader: ReadIndex requests waiting for the first commit of this term. */
  pendingReadIndexMessages: Message[] = [];
  /** Ticks since the last election timeout (leader, candidate) or since the leader was last heard (follower). */
  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;
  readonly checkQuorum: boolean;
  readonly preVote: boolean;
  readonly heartbeatTimeout: number;
  readonly electionTimeout: number;
  readonly maxMsgSizeBytes: number;
  readonly maxUncommittedSizeBytes: number;
  private readonly rng: Rng;
  private readonly logger: RaftLogger;

  constructor(config: RaftConfig) {
    const c = resolveConfig(config);
    this.id = c.id;
    this.rng = c.rng;
    this.logger = c.logger;
    this.electionTimeout = c.electionTicks;
    this.heartbeatTimeout = c.heartbeatTicks;
    this.checkQuorum = c.checkQuorum;
    this.preVote = c.preVote;
    this.maxMsgSizeBytes = c.maxSizePerMsgBytes;
    this.maxUncommittedSizeBytes = c.maxUncommittedEntriesBytes;
    this.raftLog = new RaftLog(c.storage, c.maxCommittedBytesPerReady);
    this.trk = new ProgressTracker(c.maxInflightMsgs);
    const { hardState, confState } = c.storage.initialState();
    this.switchToConfig(confState);
    if (hardState.term !== 0 || hardState.vote !== NONE || hardState.commit !== 0) this.loadState(hardState);
    if (c.applied > this.raftLog.committed) {
      throw new RaftConfigError(`applied (${c.applied}) is beyond the commit index ${this.raftLog.committed} of the storage`);
    }
    if (c.applied > this.raftLog.applied) this.raftLog.appliedTo(c.applied);
    this.becomeFollower(this.term, NONE);
    this.logger.info(`${this.id} newRaft [peers: [${this.trk.voters.join(",")}], learners: [${this.trk.learners.join(",")}], ` +
      `term: ${this.term}, commit: ${this.raftLog.committed}, applied: ${this.raftLog.applied}, ` +
      `lastindex: ${this.raftLog.lastIndex()}, lastterm: ${this.raftLog.lastTerm()}]`);
  }

  softState(): SoftState {
    return { lead: this.lead, role: this.role };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.raftLog.committed };
  }

  /** Drains the outgoing messages (tests; `RawNode.ready` does the same). */
  readMessages(): Message[] {
    const msgs = this.msgs;
    this.msgs = [];
    return msgs;
  }

  private loadState(hs: HardState): void {
    invariant(hs.commit >= this.raftLog.committed && hs.commit <= this.raftLog.lastIndex(), () =>
      `${this.id} state.commit ${hs.commit} is out of range [${this.raftLog.committed}, ${this.raftLog.lastIndex()}]`);
    this.raftLog.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  /** A member that may campaign: a voter in the membership in force, with no snapshot waiting to be applied. */
  promotable(): boolean {
    return this.trk.isVoter(this.id) && !this.raftLog.hasPendingSnapshot();
  }

  /** Queues `fields` to send, filling `from` and the term as the message type requires. */
  private send(fields: MessageFields): void {
    const from = fields.from === undefined || fields.from === NONE ? this.id : fields.from;
    const t = fields.type;
    let term = fields.term ?? 0;
    if (t === MessageType.Vote || t === MessageType.VoteResp || t === MessageType.PreVote || t === MessageType.PreVoteResp) {
      // Vote messages carry the term of the election, not necessarily ours.
      invariant(term !== 0, () => `term should be set when sending ${messageTypeName(t)}`);
    } else {
      invariant(term === 0, () => `term should not be set when sending ${messageTypeName(t)} (was ${term})`);
      // Proposals and read requests forwarded to the leader are local in nature: no term.
      if (t !== MessageType.Prop && t !== MessageType.ReadIndex) term = this.term;
    }
    invariant(fields.to !== undefined && fields.to !== NONE && fields.to !== this.id, () =>
      `${this.id} sending ${messageTypeName(t)} to ${JSON.stringify(fields.to)}`);
    this.msgs.push(newMessage({ ...fields, from, term }));
  }

  // ---- Replication (leader) -------------------------------------------------------------------

  private sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  /**
   * Sends an append with new entries to `to` (or an empty one when `sendIfEmpty`), or a snapshot when
   * the entries it needs were compacted. Returns whether a message was sent.
   */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.trk.progress.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    let prevTerm: number;
    let ents: Entry[];
    try {
      prevTerm = this.raftLog.term(prevIndex);
      ents = pr.state === "replicate" && pr.inflights.full() ? [] : this.raftLog.entries(pr.next, this.maxMsgSizeBytes);
    } catch (e) {
      if (e instanceof CompactedError) return this.maybeSendSnapshot(to, pr);
      throw e;
    }
    if (ents.length === 0 && !sendIfEmpty) return false;
    this.send({ to, type: MessageType.App, index: prevIndex, logTerm: prevTerm, entries: ents, commit: this.raftLog.committed });
    pr.sentEntries(ents.length, payloadSizeBytes(ents));
    // The follower commits up to the last entry it has from this message at most.
    pr.sentCommitIndex(Math.min(this.raftLog.committed, prevIndex + ents.length));
    return true;
  }

  private maybeSendSnapshot(to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) {
      this.logger.info(`${this.id} ignored sending snapshot to ${to}: not recently active`);
      return false;
    }
    let snapshot: Snapshot;
    try {
      snapshot = this.raftLog.snapshot();
    } catch (e) {
      if (e instanceof SnapshotTemporarilyUnavailableError) {
        this.logger.info(`${this.id} failed to send snapshot to ${to}: snapshot temporarily unavailable`);
        return false;
      }
      throw e;
    }
    const { index, term, confState: cs } = snapshot.metadata;
    if (index < this.raftLog.firstIndex() - 1) {
      // The storage compacted entries that no snapshot covers yet (the application compacts only
      // behind a snapshot it made): nothing can catch this follower up for now.
      this.logger.warn(`${this.id} cannot send a snapshot to ${to}: the snapshot at ${index} is older than the compacted log (first index ${this.raftLog.firstIndex()})`);
      return false;
    }
    if (index === 0 && cs.voters.length + cs.learners.length === 0) {
      // The snapshot at index 0 is only worth sending for the founding membership it carries.
      this.logger.warn(`${this.id} cannot send a snapshot to ${to}: no snapshot and no founding membership to send`);
      return false;
    }
    this.logger.info(`${this.id} [firstindex: ${this.raftLog.firstIndex()}, commit: ${this.raftLog.committed}] ` +
      `sent snapshot[index: ${index}, term: ${term}] to ${to} [${pr.toString()}]`);
    pr.becomeSnapshot(index);
    this.send({ to, type: MessageType.Snap, snapshot });
    return true;
  }

  private sendHeartbeat(to: NodeId, context: Uint8Array): void {
    const pr = this.trk.progress.get(to);
    if (pr === undefined) return;
    // A follower may not have the entries up to our commit index yet: never tell it to commit beyond its match.
    const commit = Math.min(pr.match, this.raftLog.committed);
    this.send({ to, type: MessageType.Heartbeat, commit, context });
    pr.sentCommitIndex(commit);
  }

  private bcastAppend(): void {
    this.trk.visit((id) => {
      if (id !== this.id) this.sendAppend(id);
    });
  }

  private bcastHeartbeat(): void {
    this.bcastHeartbeatWithContext(this.readOnly.lastPendingRequestContext() ?? EMPTY_BYTES);
  }

  private bcastHeartbeatWithContext(context: Uint8Array): void {
    this.trk.visit((id) => {
      if (id !== this.id) this.sendHeartbeat(id, context);
    });
  }

  /** Commits what a majority matched, if it is of the current term. */
  private maybeCommit(): boolean {
    return this.raftLog.maybeCommit(this.trk.committed(), this.term);
  }

  // ---- Role transitions -----------------------------------------------------------------------

  private reset(term: number): void {
    invariant(term >= this.term, () => `${this.id} term going backwards from ${this.term} to ${term}`);
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.trk.resetVotes();
    const lastIndex = this.raftLog.lastIndex();
    this.trk.visit((id, pr) => {
      pr.becomeProbe();
      pr.match = id === this.id ? lastIndex : 0;
      pr.next = lastIndex + 1;
      pr.recentActive = false;
    });
    this.pendingConfIndex = 0;
    this.uncommittedSizeBytes = 0;
    this.readOnly = new ReadOnly();
    this.pendingReadIndexMessages = [];
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.lead = lead;
    this.role = Role.Follower;
    this.logger.info(`${this.id} became follower at term ${this.term}`);
  }

  becomeCandidate(): void {
    invariant(this.role !== Role.Leader, "invalid transition [leader -> candidate]");
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
    this.logger.info(`${this.id} became candidate at term ${this.term}`);
  }

  becomePreCandidate(): void {
    invariant(this.role !== Role.Leader, "invalid transition [leader -> pre-candidate]");
    // A pre-candidate changes neither its term nor its vote: it only asks whether it could win.
    this.trk.resetVotes();
    this.lead = NONE;
    this.role = Role.PreCandidate;
    this.logger.info(`${this.id} became pre-candidate at term ${this.term}`);
  }

  becomeLeader(): void {
    invariant(this.role !== Role.Follower, "invalid transition [follower -> leader]");
    this.reset(this.term);
    this.lead = this.id;
    this.role = Role.Leader;
    const self = this.trk.progress.get(this.id);
    invariant(self !== undefined, () => `${this.id} became leader without being a member`);
    self.becomeReplicate();
    self.recentActive = true;
    // The no-op entry of the new term: committing it commits every earlier entry (§5.4.2, §8).
    const appended = this.appendEntry([{ term: 0, index: 0, type: EntryType.Normal, data: EMPTY_BYTES }]);
    invariant(appended, "empty entry was dropped");
    // Refuse conf changes until the no-op is applied: any conf change before it is then applied too, and
    // an entry of this term is committed, which single-server changes need to be safe across leader
    // changes (Ongaro, raft-dev 2015: "a leader may not append a new configuration entry until it has
    // committed an entry from its current term").
    this.pendingConfIndex = this.raftLog.lastIndex();
    this.logger.info(`${this.id} became leader at term ${this.term}`);
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTimeout + this.rng.int(this.electionTimeout);
  }

  pastElectionTimeout(): boolean {
    return this.electionElapsed >= this.randomizedElectionTimeout;
  }

  private abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }

  // ---- Elections ------------------------------------------------------------------------------

  private hup(kind: CampaignKind): void {
    if (this.role === Role.Leader) {
      this.logger.info(`${this.id} ignoring Hup because already leader`);
      return;
    }
    if (!this.promotable()) {
      this.logger.warn(`${this.id} is unpromotable and can not campaign`);
      return;
    }
    if (this.hasUnappliedConfChanges()) {
      this.logger.warn(`${this.id} cannot campaign at term ${this.term} since there are still pending configuration changes to apply`);
      return;
    }
    this.logger.info(`${this.id} is starting a new election at term ${this.term}`);
    this.campaign(kind);
  }

  private hasUnappliedConfChanges(): boolean {
    const lo = Math.max(this.raftLog.applied + 1, this.raftLog.firstIndex());
    if (lo > this.raftLog.committed) return false;
    for (const e of this.raftLog.slice(lo, this.raftLog.committed + 1, Number.POSITIVE_INFINITY)) {
      if (e.type === EntryType.ConfChange) return true;
    }
    return false;
  }

  private campaign(kind: CampaignKind): void {
    invariant(this.promotable(), () => `${this.id} is unpromotable; campaign() should have been called`);
    let term: number;
    let voteType: MessageType;
    if (kind === "pre-election") {
      this.becomePreCandidate();
      voteType = MessageType.PreVote;
      // Pre-votes are asked for the term we would campaign at, without moving to it.
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteType = MessageType.Vote;
      term = this.term;
    }
    // Our own vote: persisted with the Ready (the vote is in the hard state) before any request leaves.
    if (this.poll(this.id, voteRespType(voteType), true) === "won") {
      // A single voter wins at once.
      if (kind === "pre-election") this.campaign("election");
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.raftLog.lastIndex();
    const lastTerm = this.raftLog.lastTerm();
    for (const id of this.trk.voters) {
      if (id === this.id) continue;
      this.logger.info(`${this.id} [logterm: ${lastTerm}, index: ${lastIndex}] sent ${messageTypeName(voteType)} request to ${id} at term ${this.term}`);
      this.send({
        to: id, term, type: voteType, index: lastIndex, logTerm: lastTerm,
        context: kind === "transfer" ? CAMPAIGN_TRANSFER_CONTEXT : EMPTY_BYTES,
      });
    }
  }

  private poll(id: NodeId, type: MessageType, granted: boolean): "pending" | "lost" | "won" {
    if (id !== this.id) {
      this.logger.info(`${this.id} received ${messageTypeName(type)} ${granted ? "" : "rejection "}from ${id} at term ${this.term}`);
    }
    this.trk.recordVote(id, granted);
    return this.trk.tallyVotes().result;
  }

  // ---- Step -----------------------------------------------------------------------------------

  /**
   * The single entry point of the algorithm. Local messages (term 0: Hup, Beat, Prop, …) and wire
   * messages alike. Throws `ProposalDroppedError` when a proposal or read request is refused.
   */
  step(m: Message): void {
    if (m.term === 0) {
      // Local message (or a forwarded proposal / read request).
    } else if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        const force = bytesEqual(m.context, CAMPAIGN_TRANSFER_CONTEXT);
        const inLease = this.checkQuorum && this.lead !== NONE && this.electionElapsed < this.electionTimeout;
        if (!force && inLease) {
          // We heard from a leader within the minimum election timeout: do not let a partitioned or
          // removed member disrupt it (thesis §4.2.3 and §6 leader lease).
          this.logger.info(`${this.id} [logterm: ${this.raftLog.lastTerm()}, index: ${this.raftLog.lastIndex()}, vote: ${this.vote || "none"}] ` +
            `ignored ${messageTypeName(m.type)} from ${m.from} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}: ` +
            `lease is not expired (remaining ticks: ${this.electionTimeout - this.electionElapsed})`);
          return;
        }
      }
      if (m.type === MessageType.PreVote) {
        // Never change our term in response to a pre-vote.
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // The term in a granted pre-vote response is the one we would campaign at; we move to it on winning.
      } else {
        this.logger.info(`${this.id} [term: ${this.term}] received a ${messageTypeName(m.type)} message with higher term from ${m.from} [term: ${m.term}]`);
        const fromLeader = m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap;
        this.becomeFollower(m.term, fromLeader ? m.from : NONE);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === MessageType.Heartbeat || m.type === MessageType.App)) {
        // A stale leader (e.g. back from a partition) learns our term from this response and steps down.
        // Without it, with check-quorum or pre-vote, a member with a higher term could be stuck forever.
        this.send({ to: m.from, type: MessageType.AppResp });
      } else if (m.type === MessageType.Vote) {
        // Reject with our term (§5.1): the candidate learns it and campaigns again above it. Ignoring it
        // can leave the only member able to win stuck below a member that can never win.
        this.send({ to: m.from, term: this.term, type: MessageType.VoteResp, reject: true });
      } else if (m.type === MessageType.PreVote) {
        // Reject, so that the pre-candidate learns our term and does not stay stuck at a lower one.
        this.logger.info(`${this.id} [logterm: ${this.raftLog.lastTerm()}, index: ${this.raftLog.lastIndex()}, vote: ${this.vote || "none"}] ` +
          `rejected PreVote from ${m.from} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`);
        this.send({ to: m.from, term: this.term, type: MessageType.PreVoteResp, reject: true });
      } else {
        this.logger.info(`${this.id} [term: ${this.term}] ignored a ${messageTypeName(m.type)} message with lower term from ${m.from} [term: ${m.term}]`);
      }
      return;
    }

    switch (m.type) {
      case MessageType.Hup:
        this.hup(this.preVote ? "pre-election" : "election");
        return;
      case MessageType.Vote:
      case MessageType.PreVote:
        this.handleVoteRequest(m);
        return;
      default:
        switch (this.role) {
          case Role.Leader: this.stepLeader(m); return;
          case Role.Candidate:
          case Role.PreCandidate: this.stepCandidate(m); return;
          case Role.Follower: this.stepFollower(m); return;
        }
    }
  }

  private handleVoteRequest(m: Message): void {
    // We can vote if this is a repeat of a vote we cast, if we have not voted and know no leader in this
    // term, or if it is a pre-vote for a future term.
    const canVote = this.vote === m.from || (this.vote === NONE && this.lead === NONE) ||
      (m.type === MessageType.PreVote && m.term > this.term);
    const lastTerm = this.raftLog.lastTerm();
    const lastIndex = this.raftLog.lastIndex();
    // §5.4.1: only to a candidate whose log is at least as up to date as ours.
    if (canVote && this.raftLog.isUpToDate(m.index, m.logTerm)) {
      this.logger.info(`${this.id} [logterm: ${lastTerm}, index: ${lastIndex}, vote: ${this.vote || "none"}] cast ${messageTypeName(m.type)} ` +
        `for ${m.from} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`);
      // The response carries the term of the request: for a pre-vote, the future term the candidate asks about.
      this.send({ to: m.from, term: m.term, type: voteRespType(m.type) });
      if (m.type === MessageType.Vote) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.logger.info(`${this.id} [logterm: ${lastTerm}, index: ${lastIndex}, vote: ${this.vote || "none"}] rejected ${messageTypeName(m.type)} ` +
        `from ${m.from} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`);
      this.send({ to: m.from, term: this.term, type: voteRespType(m.type), reject: true });
    }
  }

  // ---- Leader ---------------------------------------------------------------------------------

  private stepLeader(m: Message): void {
    switch (m.type) {
      case MessageType.Beat:
        this.bcastHeartbeat();
        return;
      case MessageType.CheckQuorum:
        if (!this.trk.quorumActive(this.id)) {
          this.logger.warn(`${this.id} stepped down to follower since quorum is not active`);
          this.becomeFollower(this.term, NONE);
        }
        // Mark everyone but us inactive for the next period.
        this.trk.visit((id, pr) => {
          if (id !== this.id) pr.recentActive = false;
        });
        return;
      case MessageType.Prop:
        this.leaderPropose(m);
        return;
      case MessageType.ReadIndex:
        if (this.trk.isSingleton()) {
          this.respondToReadIndex(m, this.raftLog.committed);
          return;
        }
        // §6.4: the commit index is only known to be up to date once an entry of this term committed.
        if (!this.committedEntryInCurrentTerm()) {
          this.pendingReadIndexMessages.push(m);
          return;
        }
        this.startReadIndex(m);
        return;
      default:
        break;
    }

    const pr = this.trk.progress.get(m.from);
    if (pr === undefined) {
      this.logger.info(`${this.id} no progress available for ${m.from}`);
      return;
    }
    switch (m.type) {
      case MessageType.AppResp:
        this.handleAppendResponse(m, pr);
        return;
      case MessageType.HeartbeatResp: {
        pr.recentActive = true;
        pr.msgAppFlowPaused = false;
        if (pr.match < this.raftLog.lastIndex() || pr.state === "probe") this.sendAppend(m.from);
        if (m.context.length === 0) return;
        const acks = this.readOnly.recvAck(m.from, m.context);
        if (acks === null || this.voteOf(acks) !== "won") return;
        for (const rs of this.readOnly.advance(m.context)) this.respondToReadIndex(rs.req, rs.index);
        return;
      }
      case MessageType.SnapStatus:
        if (pr.state !== "snapshot") return;
        if (!m.reject) {
          pr.becomeProbe();
          this.logger.info(`${this.id} snapshot succeeded, resumed sending replication messages to ${m.from} [${pr.toString()}]`);
        } else {
          // The snapshot did not arrive: forget it, so the next probe asks again.
          pr.pendingSnapshot = 0;
          pr.becomeProbe();
          this.logger.info(`${this.id} snapshot failed, resumed sending replication messages to ${m.from} [${pr.toString()}]`);
        }
        // Wait for a heartbeat response before the next probe: the snapshot may still be applied.
        pr.msgAppFlowPaused = true;
        return;
      case MessageType.Unreachable:
        // Appends to an unreachable member were probably lost: fall back to probing.
        if (pr.state === "replicate") pr.becomeProbe();
        this.logger.info(`${this.id} failed to send message to ${m.from} because it is unreachable [${pr.toString()}]`);
        return;
      case MessageType.TransferLeader:
        this.handleTransferLeader(m, pr);
        return;
      default:
        return;
    }
  }

  private voteOf(acks: ReadonlySet<NodeId>): "pending" | "lost" | "won" {
    let granted = 0;
    for (const id of this.trk.voters) if (acks.has(id)) granted++;
    return granted >= Math.floor(this.trk.voters.length / 2) + 1 ? "won" : "pending";
  }

  private leaderPropose(m: Message): void {
    invariant(m.entries.length > 0, () => `${this.id} stepped empty Prop`);
    const local = m.from === NONE || m.from === this.id;
    if (!this.trk.progress.has(this.id)) {
      // This leader was removed from the membership and is about to step down.
      throw new ProposalDroppedError("not-member", `${this.id} is no longer a member`);
    }
    if (this.leadTransferee !== NONE) {
      throw new ProposalDroppedError("leadership-transfer", `${this.id} is transferring leadership to ${this.leadTransferee}`);
    }
    let confIndex = this.pendingConfIndex;
    const entries = m.entries.map((e, i): Entry => {
      if (e.type !== EntryType.ConfChange) return e;
      let refusal: { reason: "conf-change-pending" | "conf-change-invalid"; message: string } | null = null;
      if (confIndex > this.raftLog.applied) {
        refusal = { reason: "conf-change-pending", message: `possible unapplied conf change at index ${confIndex} (applied to ${this.raftLog.applied})` };
      } else {
        try {
          applyConfChangeToConfState(this.trk.confState(), decodeConfChange(e.data));
        } catch (err) {
          refusal = { reason: "conf-change-invalid", message: err instanceof Error ? err.message : String(err) };
        }
      }
      if (refusal !== null) {
        if (local) throw new ProposalDroppedError(refusal.reason, refusal.message);
        this.logger.warn(`${this.id} ignoring conf change: ${refusal.message}`);
        return { term: 0, index: 0, type: EntryType.Normal, data: EMPTY_BYTES };
      }
      confIndex = this.raftLog.lastIndex() + i + 1;
      return e;
    });
    if (!this.appendEntry(entries)) {
      throw new ProposalDroppedError("uncommitted-limit",
        `${this.id} has ${this.uncommittedSizeBytes} uncommitted bytes, limit ${this.maxUncommittedSizeBytes}`);
    }
    this.pendingConfIndex = confIndex;
    this.bcastAppend();
  }

  /** Appends entries of the current term to the leader's log. Returns false when over the uncommitted-size limit. */
  private appendEntry(es: readonly Entry[]): boolean {
    const li = this.raftLog.lastIndex();
    const ents = es.map((e, i): Entry => ({ term: this.term, index: li + 1 + i, type: e.type, data: e.data }));
    const size = payloadSizeBytes(ents);
    // Always accept at least one proposal when nothing is uncommitted, and empty entries (no-ops) always.
    if (this.uncommittedSizeBytes > 0 && size > 0 && this.uncommittedSizeBytes + size > this.maxUncommittedSizeBytes) {
      this.logger.warn(`${this.id} appending new entries to log would exceed uncommitted entry size limit; dropping proposal`);
      return false;
    }
    this.uncommittedSizeBytes += size;
    const last = this.raftLog.append(ents);
    // The leader counts itself as having the entries: they are persisted with the Ready that carries them,
    // before any message revealing the resulting commit index leaves this member.
    this.trk.progress.get(this.id)?.maybeUpdate(last);
    this.maybeCommit();
    return true;
  }

  /** Called when the application applied committed entries of `sizeBytes` payload. */
  reduceUncommittedSize(sizeBytes: number): void {
    this.uncommittedSizeBytes = Math.max(0, this.uncommittedSizeBytes - sizeBytes);
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    if (m.reject && m.index === 0) {
      // A member that joined with an empty membership asks for the membership (see isFreshJoiner).
      if (pr.state !== "snapshot") this.maybeSendSnapshot(m.from, pr);
      return;
    }
    if (m.reject) {
      this.logger.info(`${this.id} received AppResp(rejected, hint: (index ${m.rejectHint}, term ${m.logTerm})) from ${m.from} for index ${m.index}`);
      // Fast backtracking (§5.3 optimization): skip the whole conflicting term at once.
      let nextProbeIndex = m.rejectHint;
      if (m.logTerm > 0) nextProbeIndex = this.raftLog.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, nextProbeIndex)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.logger.info(`${this.id} decreased progress of ${m.from} to [${pr.toString()}]`);
        this.sendAppend(m.from);
      }
      return;
    }
    const snapshotArrived = pr.state === "snapshot" && m.index >= pr.pendingSnapshot;
    if (pr.maybeUpdate(m.index) || (pr.match === m.index && pr.state === "probe") || snapshotArrived) {
      switch (pr.state) {
        case "probe":
          pr.becomeReplicate();
          break;
        case "snapshot":
          if (pr.match + 1 >= this.raftLog.firstIndex()) {
            // The follower caught up (by the snapshot or otherwise): replicate from its match.
            this.logger.info(`${this.id} recovered from needing snapshot, resumed sending replication messages to ${m.from} [${pr.toString()}]`);
            pr.becomeProbe();
            pr.becomeReplicate();
          }
          break;
        case "replicate":
          pr.inflights.freeLE(m.index);
          break;
      }
      if (this.maybeCommit()) {
        this.releasePendingReadIndexMessages();
        this.bcastAppend();
      } else if (pr.canBumpCommit(this.raftLog.committed)) {
        // The follower may not know the commit index yet: tell it (with entries if there are any).
        this.sendAppend(m.from);
      }
      // Pipeline: keep sending while the window allows.
      for (let guard = 0; guard < this.trk.maxInflight + 1 && this.maybeSendAppend(m.from, false); guard++) { /* sent one */ }
      if (m.from === this.leadTransferee && pr.match === this.raftLog.lastIndex()) {
        this.logger.info(`${this.id} sent TimeoutNow to ${m.from} after it caught up with the log`);
        this.sendTimeoutNow(m.from);
      }
    }
  }

  private handleTransferLeader(m: Message, pr: Progress): void {
    if (pr.isLearner) {
      this.logger.info(`${this.id} is ignoring transfer of leadership to learner ${m.from}`);
      return;
    }
    const transferee = m.from;
    if (this.leadTransferee !== NONE) {
      if (this.leadTransferee === transferee) {
        this.logger.info(`${this.id} [term ${this.term}] transfer of leadership to ${transferee} is in progress, ignoring the same request`);
        return;
      }
      this.logger.info(`${this.id} [term ${this.term}] aborted transfer of leadership to ${this.leadTransferee}`);
      this.abortLeaderTransfer();
    }
    if (transferee === this.id) {
      this.logger.info(`${this.id} is already leader; ignoring transfer of leadership to itself`);
      return;
    }
    this.logger.info(`${this.id} [term ${this.term}] starts to transfer leadership to ${transferee}`);
    // The transfer must finish within one election timeout, else it is aborted (tickHeartbeat).
    this.electionElapsed = 0;
    this.leadTransferee = transferee;
    if (pr.match === this.raftLog.lastIndex()) {
      this.sendTimeoutNow(transferee);
      this.logger.info(`${this.id} sent TimeoutNow to ${transferee} immediately as it already has up-to-date log`);
    } else {
      // Catch the transferee up first; TimeoutNow follows once it acknowledges the last index.
      this.sendAppend(transferee);
    }
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({ to, type: MessageType.TimeoutNow });
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.raftLog.termOrNull(this.raftLog.committed) === this.term;
  }

  private releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0) return;
    if (!this.committedEntryInCurrentTerm()) return;
    const msgs = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of msgs) this.startReadIndex(m);
  }

  /** Records a read at the current commit index and asks the voters to confirm our leadership. */
  private startReadIndex(m: Message): void {
    if (this.trk.isSingleton()) {
      this.respondToReadIndex(m, this.raftLog.committed);
      return;
    }
    this.readOnly.addRequest(this.raftLog.committed, m);
    this.readOnly.recvAck(this.id, m.context);
    this.bcastHeartbeatWithContext(m.context);
  }

  private respondToReadIndex(req: Message, readIndex: number): void {
    if (req.from === NONE || req.from === this.id) {
      this.readStates.push({ index: readIndex, requestCtx: req.context });
      return;
    }
    this.send({ to: req.from, type: MessageType.ReadIndexResp, index: readIndex, context: req.context });
  }

  // ---- Candidate ------------------------------------------------------------------------------

  private stepCandidate(m: Message): void {
    // A pre-candidate only counts pre-vote responses, a candidate only vote responses: a stale response
    // of the other kind (same term) must not count.
    const myVoteRespType = this.role === Role.PreCandidate ? MessageType.PreVoteResp : MessageType.VoteResp;
    switch (m.type) {
      case MessageType.Prop:
        throw new ProposalDroppedError("no-leader", `${this.id} is a ${roleName(this.role)} at term ${this.term}: no leader`);
      case MessageType.ReadIndex:
        throw new ProposalDroppedError("no-leader", `${this.id} is a ${roleName(this.role)} at term ${this.term}: no leader to read from`);
      case MessageType.App:
        this.becomeFollower(m.term, m.from);
        this.handleAppendEntries(m);
        return;
      case MessageType.Heartbeat:
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case MessageType.Snap:
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case myVoteRespType: {
        const res = this.poll(m.from, m.type, !m.reject);
        const { granted, rejected } = this.trk.tallyVotes();
        this.logger.info(`${this.id} has received ${granted} ${messageTypeName(m.type)} votes and ${rejected} vote rejections`);
        if (res === "won") {
          if (this.role === Role.PreCandidate) {
            this.campaign("election");
          } else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (res === "lost") {
          // A pre-candidate stays at its term; a candidate keeps its (self) vote of this term.
          this.becomeFollower(this.term, NONE);
        }
        return;
      }
      case MessageType.TimeoutNow:
        this.logger.info(`${this.id} [term ${this.term} state ${roleName(this.role)}] ignored TimeoutNow from ${m.from}`);
        return;
      default:
        return;
    }
  }

  // ---- Follower -------------------------------------------------------------------------------

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.Prop:
        if (this.lead === NONE) throw new ProposalDroppedError("no-leader", `${this.id} knows no leader at term ${this.term}`);
        this.send({ ...m, to: this.lead, term: 0 });
        return;
      case MessageType.App:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppendEntries(m);
        return;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return;
      case MessageType.Snap:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case MessageType.TransferLeader:
        if (this.lead === NONE) {
          this.logger.info(`${this.id} no leader at term ${this.term}; dropping leader transfer msg`);
          return;
        }
        this.send({ ...m, to: this.lead, term: 0 });
        return;
      case MessageType.TimeoutNow:
        this.logger.info(`${this.id} [term ${this.term}] received TimeoutNow from ${m.from} and starts an election to get leadership`);
        // Leadership transfer never uses pre-vote: the leader itself asked us to campaign.
        this.hup("transfer");
        return;
      case MessageType.ReadIndex:
        if (this.lead === NONE) throw new ProposalDroppedError("no-leader", `${this.id} knows no leader at term ${this.term}; dropping index reading msg`);
        this.send({ ...m, to: this.lead, term: 0 });
        return;
      case MessageType.ReadIndexResp:
        this.readStates.push({ index: m.index, requestCtx: m.context });
        return;
      default:
        return;
    }
  }

  /**
   * A member that joined with an empty membership and has no log yet: it cannot apply the log from
   * index 1 because the founding membership lives only in the snapshot at index 0.
   */
  private isFreshJoiner(): boolean {
    return this.trk.voters.length === 0 && this.trk.learners.length === 0 &&
      this.raftLog.lastIndex() === 0 && this.raftLog.committed === 0;
  }

  private handleAppendEntries(m: Message): void {
    if (this.isFreshJoiner()) {
      // A rejection at index 0 never happens otherwise (every log matches at 0/0): the leader reads it
      // as "send me your snapshot" and sends its snapshot, at index 0 if it never compacted its log,
      // which carries the founding membership.
      this.logger.info(`${this.id} has no membership yet; asking ${m.from} for the membership snapshot`);
      this.send({ to: m.from, type: MessageType.AppResp, index: 0, reject: true, rejectHint: 0 });
      return;
    }
    if (m.index < this.raftLog.committed) {
      // An old append (duplicated or reordered): everything up to our commit index matches anyway.
      this.send({ to: m.from, type: MessageType.AppResp, index: this.raftLog.committed });
      return;
    }
    const lastNew = this.raftLog.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== null) {
      this.send({ to: m.from, type: MessageType.AppResp, index: lastNew });
      return;
    }
    // Log matching failed at m.index: hint the leader where our log could match, skipping whole terms.
    const hint = this.raftLog.findConflictByTerm(Math.min(m.index, this.raftLog.lastIndex()), m.logTerm);
    this.logger.info(`${this.id} [logterm: ${this.raftLog.termOrNull(m.index) ?? 0}, index: ${m.index}] rejected App ` +
      `[logterm: ${m.logTerm}, index: ${m.index}] from ${m.from}`);
    this.send({ to: m.from, type: MessageType.AppResp, index: m.index, reject: true, rejectHint: hint.index, logTerm: hint.term });
  }

  private handleHeartbeat(m: Message): void {
    this.raftLog.commitTo(m.commit);
    this.send({ to: m.from, type: MessageType.HeartbeatResp, context: m.context });
  }

  private handleSnapshot(m: Message): void {
    const snapshot = m.snapshot;
    invariant(snapshot !== null, () => `${this.id} received Snap without a snapshot from ${m.from}`);
    const { index, term } = snapshot.metadata;
    if (this.restore(snapshot)) {
      this.logger.info(`${this.id} [commit: ${this.raftLog.committed}] restored snapshot [index: ${index}, term: ${term}]`);
      this.send({ to: m.from, type: MessageType.AppResp, index: this.raftLog.lastIndex() });
    } else {
      this.logger.info(`${this.id} [commit: ${this.raftLog.committed}] ignored snapshot [index: ${index}, term: ${term}]`);
      this.send({ to: m.from, type: MessageType.AppResp, index: this.raftLog.committed });
    }
  }

  /**
   * Installs `snapshot` as the log and its membership. Returns false when it is not newer than the
   * commit index, or when the log already holds its last entry (then only the commit index moves).
   * A joining member accepts a snapshot whose membership does not name it yet: it stays unpromotable
   * until it applies the entry adding it.
   */
  restore(snapshot: Snapshot): boolean {
    const { index, term, confState } = snapshot.metadata;
    // A joining member with no membership adopts even the snapshot at index 0: it brings the founding voters.
    const membershipOnly = index === 0 && this.isFreshJoiner() && confState.voters.length > 0;
    if (index <= this.raftLog.committed && !membershipOnly) return false;
    invariant(this.role === Role.Follower, () => `${this.id} restoring a snapshot as ${roleName(this.role)}`);
    if (!membershipOnly && this.raftLog.matchTerm(index, term)) {
      this.logger.info(`${this.id} [commit: ${this.raftLog.committed}] fast-forwarded commit to snapshot [index: ${index}, term: ${term}]`);
      this.raftLog.commitTo(index);
      return false;
    }
    this.raftLog.restore(snapshot);
    this.trk.progress.clear();
    this.switchToConfig(confState);
    this.logger.info(`${this.id} [commit: ${this.raftLog.committed}] restored membership [voters: [${this.trk.voters.join(",")}], ` +
      `learners: [${this.trk.learners.join(",")}]]`);
    return true;
  }

  // ---- Membership -----------------------------------------------------------------------------

  /**
   * Applies a committed conf change (the application calls this when it applies the entry). Throws
   * `ConfChangeError` when it does not apply to the membership in force (nothing changes then).
   */
  applyConfChange(cc: ConfChange): ConfState {
    const cs = applyConfChangeToConfState(this.trk.confState(), cc);
    this.logger.info(`${this.id} applied conf change ${describeConfChange(cc)}: voters [${cs.voters.join(",")}] learners [${cs.learners.join(",")}]`);
    this.switchToConfig(cs);
    return this.trk.confState();
  }

  private switchToConfig(cs: ConfState): void {
    this.trk.setConfig(cs, this.raftLog.lastIndex());
    const self = this.trk.progress.get(this.id);
    this.isLearner = self?.isLearner ?? false;
    if (this.role !== Role.Leader) return;
    if (self === undefined || self.isLearner) {
      // A removed leader steps down; the remaining voters elect a new leader among themselves.
      this.logger.info(`${this.id} stepping down: no longer a voter`);
      this.becomeFollower(this.term, NONE);
      return;
    }
    // The membership changed: the commit index may move (e.g. a voter was removed).
    if (this.maybeCommit()) {
      this.bcastAppend();
    } else {
      // Start replicating to new members right away.
      this.trk.visit((id) => {
        if (id !== this.id) this.maybeSendAppend(id, false);
      });
    }
    if (this.leadTransferee !== NONE && !this.trk.isVoter(this.leadTransferee)) this.abortLeaderTransfer();
  }

  // ---- Time -----------------------------------------------------------------------------------

  tick(): void {
    if (this.role === Role.Leader) this.tickHeartbeat();
    else this.tickElection();
  }

  /**
   * A snapshot whose delivery was not reported (`reportSnapshot`) within one to two election timeouts
   * is presumed lost: probe the follower again, which sends a new snapshot if it still needs one.
   * Without this, a lost report would stall that follower forever.
   */
  private retryUnreportedSnapshots(): void {
    this.trk.visit((id, pr) => {
      if (pr.state !== "snapshot") return;
      if (!pr.snapshotStale) {
        pr.snapshotStale = true;
        return;
      }
      this.logger.info(`${this.id} snapshot to ${id} was not reported within an election timeout; probing again`);
      pr.becomeProbe();
    });
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.pastElectionTimeout()) {
      this.electionElapsed = 0;
      this.step(newMessage({ type: MessageType.Hup, from: this.id }));
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      this.retryUnreportedSnapshots();
      if (this.checkQuorum) this.step(newMessage({ type: MessageType.CheckQuorum, from: this.id }));
      // A transfer that did not finish within an election timeout is aborted: proposals resume.
      if (this.role === Role.Leader && this.leadTransferee !== NONE) {
        this.logger.info(`${this.id} aborted transfer of leadership to ${this.leadTransferee}: election timeout elapsed`);
        this.abortLeaderTransfer();
      }
    }
    if (this.role !== Role.Leader) return;
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.step(newMessage({ type: MessageType.Beat, from: this.id }));
    }
  }
}
