/**
 * The vocabulary shared by the Raft core, its storage, its transports and the simulator.
 *
 * Everything here is plain data: no methods, no classes, so a message can be encoded for the
 * wire, a record for the WAL, and a trace line for a golden scenario without special cases.
 * Indexes and terms are non-negative safe integers (a cluster would need 2^53 entries to wrap).
 */

/** A member's id. Members are named by their node name, e.g. "n1"; the empty string is "none". */
export type NodeId = string;

/** "No node": no vote cast, no known leader. */
export const NONE: NodeId = "";

export const enum EntryType {
  /** Application data (the cluster state machine's commands); empty data is the leader's no-op. */
  Normal = 0,
  /** A membership change: `data` is `encodeConfChange(change)`. */
  ConfChange = 1,
}

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** What must be on stable storage before a message that depends on it leaves this member. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

export const EMPTY_HARD_STATE: HardState = { term: 0, vote: NONE, commit: 0 };

/** The membership in force. A member is a voter or a learner, never both. */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export const enum ConfChangeType {
  /** Adds a voter, or promotes an existing learner to voter. */
  AddVoter = 0,
  /** Adds a non-voting member that receives the log (a new node catching up). */
  AddLearner = 1,
  /** Removes a voter or a learner. */
  Remove = 2,
}

/** A single-server membership change (Raft thesis §4.1): one in flight at a time. */
export interface ConfChange {
  readonly type: ConfChangeType;
  readonly node: NodeId;
  /** Opaque to Raft: e.g. the new member's address, carried to every member's state machine. */
  readonly context: Uint8Array;
}

export interface SnapshotMetadata {
  /** The last log index the snapshot covers, and that entry's term. */
  readonly index: number;
  readonly term: number;
  /** Membership as of `index`. */
  readonly confState: ConfState;
}

export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  /** The application state machine's serialized state at `metadata.index`. */
  readonly data: Uint8Array;
}

export const enum MessageType {
  // Local messages: never sent on the wire.
  /** Start an election (or pre-election). */
  Hup = 0,
  /** Leader: send heartbeats now. */
  Beat = 1,
  /** Leader: check that a quorum was heard from during the last election timeout. */
  CheckQuorum = 2,
  /** Proposal of entries: local, or forwarded from a follower to the leader. */
  Prop = 3,
  // Wire messages.
  App = 4,
  AppResp = 5,
  Vote = 6,
  VoteResp = 7,
  PreVote = 8,
  PreVoteResp = 9,
  Snap = 10,
  Heartbeat = 11,
  HeartbeatResp = 12,
  /** Ask the leader to transfer leadership to `from` (or handle locally on the leader). */
  TransferLeader = 13,
  /** Leader to transferee: campaign now, ignoring the election timeout and lease. */
  TimeoutNow = 14,
  ReadIndex = 15,
  ReadIndexResp = 16,
  // Local reports from the transport to the leader.
  Unreachable = 17,
  SnapStatus = 18,
}

/**
 * One message between members. Fields a message type does not use are zero / empty.
 * `term` is 0 only on local messages.
 */
export interface Message {
  readonly type: MessageType;
  readonly to: NodeId;
  readonly from: NodeId;
  readonly term: number;
  /** App: term of the entry at `index`. Vote/PreVote: candidate's last log term. */
  readonly logTerm: number;
  /** App: index of the entry preceding `entries`. AppResp: the follower's match or rejected index. */
  readonly index: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
  readonly snapshot: Snapshot | null;
  readonly reject: boolean;
  /** AppResp with reject: the follower's hint of where its log could match. */
  readonly rejectHint: number;
  /** ReadIndex request id; campaign kind on Vote during a leadership transfer. */
  readonly context: Uint8Array;
}

export const enum Role {
  Follower = 0,
  PreCandidate = 1,
  Candidate = 2,
  Leader = 3,
}

export interface SoftState {
  readonly lead: NodeId;
  readonly role: Role;
}

/** A linearizable read is safe to serve once the state machine has applied `index`. */
export interface ReadState {
  readonly index: number;
  readonly requestCtx: Uint8Array;
}

/**
 * What a member must do next, handed out by `RawNode.ready()`.
 *
 * Contract, in this order:
 *  1. Persist `snapshot` (if any), then `entries`, then `hardState` (if any); when `mustSync`, the
 *     write is fsynced before step 2. Entries replace any persisted entries at the same or higher
 *     index.
 *  2. Send `messages` (they may depend on what was just persisted: a vote, an appended entry).
 *  3. Apply `snapshot` (if any) then `committedEntries` to the state machine, in order.
 *  4. Call `advance(ready)`.
 */
export interface Ready {
  readonly softState: SoftState | null;
  readonly hardState: HardState | null;
  readonly readStates: readonly ReadState[];
  readonly entries: readonly Entry[];
  readonly snapshot: Snapshot | null;
  readonly committedEntries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly mustSync: boolean;
}

/** Source of randomness injected into the core (election timeout jitter). Deterministic per seed. */
export interface Rng {
  /** A uniformly distributed integer in [0, n), n ≥ 1. */
  int(n: number): number;
}
