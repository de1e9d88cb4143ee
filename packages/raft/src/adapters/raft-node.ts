/**
 * `RaftNode`: one running Raft member, the shape of etcd's raftexample `raftNode`. It owns
 *
 *  - a `RawNode` (the pure algorithm) over a `MemoryStorage` rebuilt from the member's data
 *    directory (`openDiskStorage`: the newest snapshot, then the logged entries, then the hard state);
 *  - the `Wal` and the `SnapshotStore` in that directory;
 *  - a `RaftTransport` (gRPC in production), whose handler it is;
 *  - the application's `ReplicatedStateMachine`;
 *  - a tick timer (every `tickMs`) and a ready loop.
 *
 * The ready loop runs on the event loop, after the inputs that arrived together (messages, ticks,
 * proposals, reads): everything one turn brought goes into one `Ready`, so many proposals share one
 * fsync. For each `Ready`, in this order (the contract written on `Ready`):
 *
 *   1. persist — the snapshot (file, synced, then the WAL's marker), then the entries and the hard
 *      state in one WAL write, fsynced once when `mustSync`; then the same into the MemoryStorage the
 *      core reads (never before the disk has it);
 *   2. send — `transport.send(messages)`, only now: a vote or an append acknowledgement must not leave
 *      before what it promises is durable;
 *   3. apply — restore the snapshot into the state machine, then apply the committed entries in order
 *      (membership changes through `RawNode.applyConfChange` as they are applied), settle the
 *      proposals they carry, serve the reads whose index is now applied;
 *   4. advance — `RawNode.advance(ready)`; then maybe compact (snapshot every `snapshotEveryEntries`).
 *
 * What this member adds to the bytes it replicates (all little-endian, `ByteWriter` encodings):
 *  - a normal entry proposed through `propose` carries `u8 1 | u64 proposer | u64 sequence | payload`;
 *    the proposer is a random number drawn by each incarnation of each member, so the member that
 *    proposed an entry recognises it when it is applied (wherever it was appended) and settles its
 *    promise; the state machine sees the entry with `data = payload`;
 *  - a membership change's `context` carries `u8 1 | u64 proposer | u64 sequence | string peerAddress
 *    | string clientAddress`, so every member learns where a new member listens;
 *  - a snapshot's `data` is `u32 "HFRN" | u8 1 | u32 n | n × (string id, string peerAddress, string
 *    clientAddress) | bytes stateMachineSnapshot`;
 *  - the WAL's `meta` is `u32 "HFNM" | u8 1 | string clusterId | string id | u32 n | n × string voter`:
 *    a data directory is refused by a member with another id or cluster id.
 */
import { randomInt } from "node:crypto";
import { ByteReader, ByteWriter } from "../codec.js";
import { decodeConfChange } from "../conf-change.js";
import { type DiskState, openDiskStorage, persistReady, saveSnapshot } from "../disk-storage.js";
import { ConfChangeError, InvalidMessageError, ProposalDroppedError } from "../errors.js";
import type { FileSystem } from "../fs.js";
import { MemoryStorage } from "../memory-storage.js";
import { newMessage, type RaftLogger } from "../raft.js";
import { RawNode, type ProgressStatus } from "../raw-node.js";
import { SeededRng } from "../rng.js";
import type { RaftTransport, RaftTransportError, RaftTransportHandler, SnapshotStatus } from "../transport.js";
import { ConfChangeType, EntryType, MessageType, NONE, Role } from "../types.js";
import type { ConfChange, ConfState, Entry, HardState, Message, NodeId, ReadState, Ready, Rng, Snapshot, SoftState } from "../types.js";
import { NodeFileSystem } from "./node-fs.js";

/** Where a member listens: `peerAddress` for Raft (the transport), `clientAddress` for its clients ("" if none). */
export interface MemberInfo {
  readonly id: NodeId;
  readonly peerAddress: string;
  readonly clientAddress: string;
}

/**
 * The application replicated by Raft. Every member applies the same entries in the same order and
 * must reach the same state with the same results: `apply` is a deterministic function of the
 * entries (no clock, no randomness).
 */
export interface ReplicatedStateMachine<R> {
  /**
   * Applies one committed entry; called for every entry of the log exactly once per incarnation, in
   * index order, starting after the restored snapshot (index `snapshotIndex + 1`): the leader's empty
   * no-op entries and membership changes (`type` ConfChange, `data` as logged) included. A normal
   * entry proposed through `RaftNode.propose` arrives with `data` = the proposed bytes. The result
   * settles that proposal's promise on the member that proposed it. Throwing is fatal to the member.
   */
  apply(entry: Entry): R;
  /** The whole state as of the last applied entry. */
  snapshot(): Uint8Array;
  /** Replaces the whole state with one `snapshot()` produced (possibly on another member). */
  restore(bytes: Uint8Array): void;
}

export interface RaftNodeLogger {
  info(line: string): void;
  warn(line: string): void;
}

export interface RaftNodeOptions<R> {
  readonly id: NodeId;
  /** Written into the data directory when it is created; a directory of another cluster is refused. */
  readonly clusterId: string;
  /** This member's directory (`wal/`, `snap/`); created if missing. */
  readonly dataDir: string;
  /** Connected to peers by this node (`addPeer`), listening already; closed by `close()`. */
  readonly transport: RaftTransport;
  readonly stateMachine: ReplicatedStateMachine<R>;
  /**
   * The founding voters of the cluster (etcd's initial-cluster): a new data directory starts from a
   * snapshot at index 0, term 0 whose membership is these voters. A founder is one of them. A member
   * joining later is not: it starts with an empty log, cannot campaign, and waits for the leader to
   * send it the log (or a snapshot) once `addLearner` committed. It must be given the same list as
   * the founders were: the founding membership is in no log entry, so a joiner that replays the log
   * from index 1 needs it to apply the later membership changes on top of the right set.
   * Ignored once the data directory exists (the list stored there wins).
   */
  readonly initialVoters: readonly NodeId[];
  /** Addresses of the members known at start (this member's own entry is used for its client address). */
  readonly peers: readonly MemberInfo[];
  readonly fs?: FileSystem;
  /** Real time of one tick. Default 100 ms. */
  readonly tickMs?: number;
  /** Election timeout in ticks: randomized in [electionTicks, 2 × electionTicks). Default 10. */
  readonly electionTicks?: number;
  /** Heartbeat interval in ticks. Default 1. */
  readonly heartbeatTicks?: number;
  /** Default true. */
  readonly preVote?: boolean;
  /** Default true. */
  readonly checkQuorum?: boolean;
  /** Take a snapshot of the state machine every this many applied entries. Default 10,000. */
  readonly snapshotEveryEntries?: number;
  /** Entries kept in memory behind a snapshot for followers that lag a little (etcd: 5,000). Default 1,000. */
  readonly compactKeepEntries?: number;
  /** A proposal not applied within this time fails with an unknown outcome. Default 5,000 ms. */
  readonly proposalTimeoutMs?: number;
  /** A read barrier not reached within this time fails. Default 5,000 ms. */
  readonly readTimeoutMs?: number;
  readonly maxSizePerMsgBytes?: number;
  readonly maxInflightMsgs?: number;
  readonly maxUncommittedEntriesBytes?: number;
  readonly walSegmentSizeBytes?: number;
  /** Snapshot files kept on disk. Default 3. */
  readonly snapshotsRetained?: number;
  /** Election jitter. Default: seeded from the operating system's random source. */
  readonly rng?: Rng;
  readonly logger?: RaftNodeLogger;
  /** Trace of the core's decisions (role changes, votes). Silent by default. */
  readonly raftLogger?: RaftLogger;
  /** Called once if the member stops on an error it cannot continue from (a disk failure, a broken invariant). */
  readonly onFatal?: (error: RaftNodeFailedError) => void;
}

/** Counters since start. */
export interface RaftNodeStats {
  readonly readyTotal: number;
  /** WAL writes fsynced (one per Ready that had entries, a vote or a snapshot). */
  readonly fsyncTotal: number;
  readonly entriesPersistedTotal: number;
  readonly entriesAppliedTotal: number;
  readonly messagesSentTotal: number;
  readonly proposalsTotal: number;
  readonly snapshotsTakenTotal: number;
  /** Snapshots received from a leader and installed. */
  readonly snapshotsInstalledTotal: number;
  readonly walSegmentsReleasedTotal: number;
  /** Time spent persisting Readys (WAL writes and fsyncs, snapshot files), in ms. */
  readonly persistMsTotal: number;
  /** Time spent handling Readys (persist, send, apply, snapshot), in ms. */
  readonly readyMsTotal: number;
}

export interface RaftNodeStatus {
  readonly id: NodeId;
  readonly clusterId: string;
  readonly state: "running" | "closed" | "failed";
  readonly role: Role;
  readonly term: number;
  readonly vote: NodeId;
  /** The leader this member knows, or NONE. */
  readonly lead: NodeId;
  readonly commit: number;
  readonly applied: number;
  /** Index of the newest snapshot (taken or installed); 0 if none. */
  readonly snapshotIndex: number;
  /** First and last index held in memory. */
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly confState: ConfState;
  /** Known addresses, by id. */
  readonly members: readonly MemberInfo[];
  /** A committed change removed this member. */
  readonly removed: boolean;
  readonly stats: RaftNodeStats;
  /** On the leader: each member's replication (match index, recently heard from...); null elsewhere. */
  readonly progress: Readonly<Record<NodeId, ProgressStatus>> | null;
}

export interface ProposeOptions {
  readonly timeoutMs?: number;
}

/** Base of the errors of `RaftNode`. */
export class RaftNodeError extends Error {
  override readonly name: string = "RaftNodeError";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** The data directory or the options do not fit this member: nothing was started. */
export class RaftNodeConfigError extends RaftNodeError {
  override readonly name: string = "RaftNodeConfigError";
}

/**
 * This member is not the leader: nothing was proposed. `leader` is the member it believes leads (its
 * addresses), or null when it knows none (an election is under way).
 */
export class NotLeaderError extends RaftNodeError {
  override readonly name: string = "NotLeaderError";
  constructor(readonly id: NodeId, readonly leaderId: NodeId | null, readonly leader: MemberInfo | null, options?: ErrorOptions) {
    super(leaderId === null ? `member ${id} is not the leader and knows no leader` : `member ${id} is not the leader; ${leaderId} is`, options);
  }
}

/** Why a proposal certainly did not and will not take effect. */
export type ProposalRejection =
  /** The core refused it (no leader, leadership transfer, a membership change pending, over a size limit). */
  | "dropped"
  /** Another entry was committed at the index it was appended at: it was lost with a leader change. */
  | "superseded"
  /** The membership change does not apply to the membership in force when it was applied. */
  | "conf-change-invalid"
  /** The member was closed or failed before it proposed. */
  | "closed";

/** The proposal (or read) certainly had no effect; retrying it is safe. */
export class ProposalRejectedError extends RaftNodeError {
  override readonly name: string = "ProposalRejectedError";
  constructor(readonly reason: ProposalRejection, message: string, options?: ErrorOptions) {
    super(`proposal rejected (${reason}): ${message}`, options);
  }
}

/** Why a proposal's outcome is unknown. */
export type OutcomeUnknownReason = "timeout" | "closed" | "snapshot";

/**
 * The proposal was handed to Raft but this member cannot tell whether it will be applied: it may be
 * applied later, or never. A client that retries must make the retry idempotent (the same request id).
 */
export class ProposalOutcomeUnknownError extends RaftNodeError {
  override readonly name: string = "ProposalOutcomeUnknownError";
  constructor(readonly reason: OutcomeUnknownReason, message: string, options?: ErrorOptions) {
    super(`proposal outcome unknown (${reason}): ${message}`, options);
  }
}

/** The member stopped on an error it cannot recover from; it must be restarted from its data directory. */
export class RaftNodeFailedError extends RaftNodeError {
  override readonly name: string = "RaftNodeFailedError";
}

const PROPOSAL_FORMAT = 1;
const CONF_CONTEXT_FORMAT = 1;
const SNAPSHOT_DATA_MAGIC = 0x4e52_4648; // "HFRN"
const SNAPSHOT_DATA_FORMAT = 1;
const META_MAGIC = 0x4d4e_4648; // "HFNM"
const META_FORMAT = 1;
/** u8 format + u64 proposer + u64 sequence. */
const PROPOSAL_HEADER_BYTES = 17;
/** Bounds of the wait for more inputs before a Ready (see `scheduleReady`). */
const COALESCE_TURNS_MAX = 64;
const COALESCE_MS_MAX = 2;
/** Ready rounds run back to back before yielding to the event loop. */
const READY_ROUNDS_PER_TURN = 16;

const DEFAULTS = {
  tickMs: 100,
  electionTicks: 10,
  heartbeatTicks: 1,
  snapshotEveryEntries: 10_000,
  compactKeepEntries: 1_000,
  proposalTimeoutMs: 5_000,
  readTimeoutMs: 5_000,
} as const;

const SILENT: RaftNodeLogger = { info: () => {}, warn: () => {} };

interface PendingProposal {
  readonly seq: number;
  /** Where the entry was appended, once a Ready showed it (0: not seen yet). */
  index: number;
  readonly timer: NodeJS.Timeout;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
}

interface PendingRead {
  readonly seq: number;
  /** The read index, once the leader answered (0: not yet). */
  index: number;
  readonly timer: NodeJS.Timeout;
  readonly resolve: (index: number) => void;
  readonly reject: (error: Error) => void;
}

interface PendingTransfer {
  readonly to: NodeId;
  readonly timer: NodeJS.Timeout;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

interface ProposalTag {
  readonly proposer: number;
  readonly seq: number;
}

// ---- Encodings ------------------------------------------------------------------------------------

function encodeProposal(proposer: number, seq: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(PROPOSAL_HEADER_BYTES + payload.length);
  const view = new DataView(out.buffer);
  out[0] = PROPOSAL_FORMAT;
  view.setUint32(1, proposer % 0x1_0000_0000, true);
  view.setUint32(5, Math.floor(proposer / 0x1_0000_0000), true);
  view.setUint32(9, seq % 0x1_0000_0000, true);
  view.setUint32(13, Math.floor(seq / 0x1_0000_0000), true);
  out.set(payload, PROPOSAL_HEADER_BYTES);
  return out;
}

/** The tag of a normal entry's data, or null when it is not a proposal of this format. */
function proposalTag(data: Uint8Array): ProposalTag | null {
  if (data.length < PROPOSAL_HEADER_BYTES || data[0] !== PROPOSAL_FORMAT) return null;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const proposer = view.getUint32(5, true) * 0x1_0000_0000 + view.getUint32(1, true);
  const seq = view.getUint32(13, true) * 0x1_0000_0000 + view.getUint32(9, true);
  return { proposer, seq };
}

interface ConfContext extends ProposalTag {
  readonly peerAddress: string;
  readonly clientAddress: string;
}

function encodeConfContext(c: ConfContext): Uint8Array {
  const w = new ByteWriter(64);
  w.u8(CONF_CONTEXT_FORMAT, "format");
  w.u64(c.proposer, "proposer");
  w.u64(c.seq, "seq");
  w.string(c.peerAddress, "peerAddress");
  w.string(c.clientAddress, "clientAddress");
  return w.finish().slice();
}

function decodeConfContext(bytes: Uint8Array): ConfContext | null {
  if (bytes.length === 0 || bytes[0] !== CONF_CONTEXT_FORMAT) return null;
  try {
    const r = new ByteReader(bytes, "conf change context");
    r.u8("format");
    const proposer = r.u64("proposer");
    const seq = r.u64("seq");
    const peerAddress = r.string("peerAddress");
    const clientAddress = r.string("clientAddress");
    r.end();
    return { proposer, seq, peerAddress, clientAddress };
  } catch {
    return null;
  }
}

function encodeSnapshotData(members: Iterable<MemberInfo>, app: Uint8Array): Uint8Array {
  const list = [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const w = new ByteWriter(64 + app.length);
  w.u32(SNAPSHOT_DATA_MAGIC, "magic");
  w.u8(SNAPSHOT_DATA_FORMAT, "format");
  w.u32(list.length, "members");
  for (const m of list) {
    w.string(m.id, "member.id");
    w.string(m.peerAddress, "member.peerAddress");
    w.string(m.clientAddress, "member.clientAddress");
  }
  w.bytes(app, "stateMachine");
  return w.finish().slice();
}

function decodeSnapshotData(bytes: Uint8Array): { members: MemberInfo[]; app: Uint8Array } {
  const r = new ByteReader(bytes, "RaftNode snapshot data");
  const magic = r.u32("magic");
  if (magic !== SNAPSHOT_DATA_MAGIC) throw new RaftNodeFailedError(`snapshot data has magic 0x${magic.toString(16)}, not "HFRN"`);
  const format = r.u8("format");
  if (format !== SNAPSHOT_DATA_FORMAT) throw new RaftNodeFailedError(`snapshot data format ${format} is not supported (expected ${SNAPSHOT_DATA_FORMAT})`);
  const n = r.count("members", 12);
  const members: MemberInfo[] = [];
  for (let i = 0; i < n; i++) {
    members.push({ id: r.string("member.id"), peerAddress: r.string("member.peerAddress"), clientAddress: r.string("member.clientAddress") });
  }
  const app = r.bytes("stateMachine");
  r.end();
  return { members, app };
}

interface NodeMeta {
  readonly clusterId: string;
  readonly id: NodeId;
  readonly initialVoters: readonly NodeId[];
}

function encodeMeta(m: NodeMeta): Uint8Array {
  const w = new ByteWriter(64);
  w.u32(META_MAGIC, "magic");
  w.u8(META_FORMAT, "format");
  w.string(m.clusterId, "clusterId");
  w.string(m.id, "id");
  w.u32(m.initialVoters.length, "initialVoters");
  for (const v of m.initialVoters) w.string(v, "initialVoter");
  return w.finish().slice();
}

function decodeMeta(bytes: Uint8Array, dir: string): NodeMeta {
  try {
    const r = new ByteReader(bytes, "RaftNode WAL meta");
    const magic = r.u32("magic");
    if (magic !== META_MAGIC) throw new RaftNodeConfigError(`the WAL in ${dir} was not written by a RaftNode (meta magic 0x${magic.toString(16)})`);
    const format = r.u8("format");
    if (format !== META_FORMAT) throw new RaftNodeConfigError(`the WAL meta in ${dir} has format ${format}, this member reads ${META_FORMAT}`);
    const clusterId = r.string("clusterId");
    const id = r.string("id");
    const n = r.count("initialVoters", 4);
    const initialVoters: NodeId[] = [];
    for (let i = 0; i < n; i++) initialVoters.push(r.string("initialVoter"));
    r.end();
    return { clusterId, id, initialVoters };
  } catch (e) {
    if (e instanceof RaftNodeConfigError) throw e;
    throw new RaftNodeConfigError(`the WAL meta in ${dir} does not decode`, { cause: e });
  }
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < 1) throw new RaftNodeConfigError(`${name} must be a positive integer, got ${v}`);
  return v;
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** A random safe integer below 2^48 (each incarnation's proposer tag). */
function randomProposerTag(): number {
  return randomInt(0, 2 ** 24) * 2 ** 24 + randomInt(0, 2 ** 24);
}

// ---- The node ---------------------------------------------------------------------------------------

/**
 * A running Raft member (see the module comment for the ready loop's ordering). Create with
 * `RaftNode.start`; `close()` when done.
 *
 * Proposals are accepted by the leader only (`NotLeaderError` elsewhere, with the leader's addresses
 * when known); a proposal's promise settles when the entry is applied on this member, with the state
 * machine's result. Not thread-safe (nothing in Node is): every method runs to completion on the
 * event loop.
 */
export class RaftNode<R> implements RaftTransportHandler {
  readonly id: NodeId;
  readonly clusterId: string;
  private readonly raw: RawNode;
  private readonly storage: MemoryStorage;
  private readonly disk: DiskState;
  private readonly transport: RaftTransport;
  private readonly sm: ReplicatedStateMachine<R>;
  private readonly logger: RaftNodeLogger;
  private readonly onFatal: ((error: RaftNodeFailedError) => void) | undefined;
  private readonly settings: {
    readonly tickMs: number;
    readonly electionTicks: number;
    readonly snapshotEveryEntries: number;
    readonly compactKeepEntries: number;
    readonly proposalTimeoutMs: number;
    readonly readTimeoutMs: number;
  };
  /** This incarnation's tag in proposals and read contexts. */
  private readonly proposer = randomProposerTag();
  private nextSeq = 1;
  private state: "running" | "closed" | "failed" = "running";
  private closing: Promise<void> | null = null;
  private failure: RaftNodeFailedError | null = null;
  private tickTimer: NodeJS.Timeout | null = null;
  private readyScheduled = false;
  /** Inputs (messages, proposals, reads) that arrived since the ready loop was scheduled. */
  private inputsWhileScheduled = 0;
  private role: Role = Role.Follower;
  private lead: NodeId = NONE;
  private applied: number;
  private snapshotIndex: number;
  private removed = false;
  private readonly members = new Map<NodeId, MemberInfo>();
  private readonly configuredPeers: ReadonlyMap<NodeId, MemberInfo>;
  private readonly proposals = new Map<number, PendingProposal>();
  /** Proposals not yet handed to the core (this turn's batch). */
  private queued: { readonly seq: number; readonly data: Uint8Array }[] = [];
  /** Index → sequence of this member's proposals appended there (to detect a superseded entry). */
  private readonly proposalAt = new Map<number, number>();
  private readonly reads = new Map<number, PendingRead>();
  private readonly transfers = new Set<PendingTransfer>();
  private readonly counters = {
    readyTotal: 0, fsyncTotal: 0, entriesPersistedTotal: 0, entriesAppliedTotal: 0, messagesSentTotal: 0, proposalsTotal: 0,
    snapshotsTakenTotal: 0, snapshotsInstalledTotal: 0, walSegmentsReleasedTotal: 0, persistMsTotal: 0, readyMsTotal: 0,
  };

  private constructor(options: RaftNodeOptions<R>) {
    if (typeof options.id !== "string" || options.id === NONE) throw new RaftNodeConfigError("id must be a non-empty string");
    if (typeof options.clusterId !== "string" || options.clusterId === "") throw new RaftNodeConfigError("clusterId must be a non-empty string");
    this.id = options.id;
    this.clusterId = options.clusterId;
    this.settings = {
      tickMs: positiveInteger("tickMs", options.tickMs, DEFAULTS.tickMs),
      electionTicks: positiveInteger("electionTicks", options.electionTicks, DEFAULTS.electionTicks),
      snapshotEveryEntries: positiveInteger("snapshotEveryEntries", options.snapshotEveryEntries, DEFAULTS.snapshotEveryEntries),
      compactKeepEntries: Math.max(0, Math.floor(options.compactKeepEntries ?? DEFAULTS.compactKeepEntries)),
      proposalTimeoutMs: positiveInteger("proposalTimeoutMs", options.proposalTimeoutMs, DEFAULTS.proposalTimeoutMs),
      readTimeoutMs: positiveInteger("readTimeoutMs", options.readTimeoutMs, DEFAULTS.readTimeoutMs),
    };
    const voters = [...new Set(options.initialVoters)].sort();
    if (voters.length === 0) throw new RaftNodeConfigError("initialVoters must name at least one founding voter");
    this.transport = options.transport;
    this.sm = options.stateMachine;
    this.logger = options.logger ?? SILENT;
    this.onFatal = options.onFatal;
    const peers = new Map<NodeId, MemberInfo>();
    for (const p of options.peers) peers.set(p.id, { id: p.id, peerAddress: p.peerAddress, clientAddress: p.clientAddress });
    this.configuredPeers = peers;

    const fs = options.fs ?? new NodeFileSystem();
    const disk = openDiskStorage(fs, options.dataDir, {
      meta: encodeMeta({ clusterId: this.clusterId, id: this.id, initialVoters: voters }),
      segmentSizeBytes: options.walSegmentSizeBytes,
      retain: options.snapshotsRetained,
    });
    this.disk = disk;
    try {
      const meta = decodeMeta(disk.meta, options.dataDir);
      if (meta.clusterId !== this.clusterId || meta.id !== this.id) {
        throw new RaftNodeConfigError(`${options.dataDir} belongs to member ${meta.id} of cluster ${JSON.stringify(meta.clusterId)}, ` +
          `not to member ${this.id} of cluster ${JSON.stringify(this.clusterId)}`);
      }
      if (disk.walRepair !== null) {
        this.logger.warn(`${this.id}: cut a torn WAL tail in ${disk.walRepair.segment} at ${disk.walRepair.offsetBytes} (${disk.walRepair.reason})`);
      }
      for (const s of disk.skippedSnapshots) this.logger.warn(`${this.id}: skipped corrupt snapshot ${s.file}: ${s.error.message}`);

      // Rebuild the storage the core reads: snapshot, then entries, then hard state.
      let storage: MemoryStorage;
      let snapshotIndex = 0;
      if (disk.snapshot !== null) {
        storage = new MemoryStorage();
        storage.applySnapshot(disk.snapshot);
        snapshotIndex = disk.snapshot.metadata.index;
        const data = decodeSnapshotData(disk.snapshot.data);
        for (const m of data.members) this.members.set(m.id, m);
        this.sm.restore(data.app);
      } else {
        storage = new MemoryStorage({ voters: [...meta.initialVoters], learners: [] });
      }
      storage.append(disk.entries);
      // A crash between a received snapshot's marker and the hard state written with it leaves a commit
      // index below the snapshot: the snapshot is committed state, so the commit index is at least its index.
      const hs: HardState = disk.hardState.commit < snapshotIndex ? { ...disk.hardState, commit: snapshotIndex } : disk.hardState;
      storage.setHardState(hs);
      this.storage = storage;
      this.applied = snapshotIndex;
      this.snapshotIndex = snapshotIndex;
      // Addresses given in the options win over those learned from the log (a member may have moved).
      for (const [id, p] of peers) this.members.set(id, p);
      const rng = options.rng ?? new SeededRng(randomInt(0, 2 ** 32 - 1));
      this.raw = new RawNode({
        id: this.id,
        storage,
        rng,
        applied: snapshotIndex,
        electionTicks: this.settings.electionTicks,
        heartbeatTicks: options.heartbeatTicks ?? DEFAULTS.heartbeatTicks,
        preVote: options.preVote ?? true,
        checkQuorum: options.checkQuorum ?? true,
        maxSizePerMsgBytes: options.maxSizePerMsgBytes,
        maxInflightMsgs: options.maxInflightMsgs,
        maxUncommittedEntriesBytes: options.maxUncommittedEntriesBytes,
        logger: options.raftLogger,
      });
      this.logger.info(`${this.id}: started at term ${hs.term}, commit ${hs.commit}, snapshot ${snapshotIndex}, ` +
        `last index ${storage.lastIndex()}${disk.created ? " (new data directory)" : ""}`);
    } catch (e) {
      disk.wal.close();
      throw e;
    }
  }

  /**
   * Opens (or creates) the data directory, rebuilds the member and starts it: connects the transport
   * to every known member, starts ticking. Throws `RaftNodeConfigError` when the directory belongs to
   * another member or cluster, and the storage's errors (`WalCorruptError`, `DiskStorageError`) when
   * it cannot be read.
   */
  static start<R>(options: RaftNodeOptions<R>): RaftNode<R> {
    const node = new RaftNode(options);
    node.transport.setHandler(node);
    for (const m of node.members.values()) if (m.id !== node.id && m.peerAddress !== "") node.transport.addPeer(m.id, m.peerAddress);
    node.tickTimer = setInterval(() => node.onTick(), node.settings.tickMs);
    node.scheduleReady();
    return node;
  }

  // ---- Public API ---------------------------------------------------------------------------------

  /** Whether this member led when it last processed a Ready. */
  isLeader(): boolean {
    return this.state === "running" && this.role === Role.Leader;
  }

  /** The leader this member knows (its addresses when known), or null. */
  leader(): { readonly id: NodeId; readonly info: MemberInfo | null } | null {
    if (this.lead === NONE) return null;
    return { id: this.lead, info: this.members.get(this.lead) ?? null };
  }

  /**
   * Proposes `data` (non-empty) and resolves with the state machine's result once the entry is
   * applied here. Rejects with `NotLeaderError` (nothing proposed) when this member is not the leader,
   * `ProposalRejectedError` when it certainly had no effect, `ProposalOutcomeUnknownError` when it may
   * still be applied (timeout, close).
   */
  propose(data: Uint8Array, options: ProposeOptions = {}): Promise<R> {
    if (!(data instanceof Uint8Array) || data.length === 0) return Promise.reject(new RangeError("propose: data must be a non-empty Uint8Array"));
    const refusal = this.refuseUnlessLeader();
    if (refusal !== null) return Promise.reject(refusal);
    const seq = this.nextSeq++;
    // Queued until the ready loop runs: everything proposed in one turn is appended at once (one
    // append message per follower, one fsync), see `flushProposals`.
    this.queued.push({ seq, data: encodeProposal(this.proposer, seq, data) });
    this.counters.proposalsTotal++;
    return this.track<R>(seq, options.timeoutMs);
  }

  /** Adds `member` as a learner (it receives the log, does not vote). Resolves with the membership once applied here. */
  addLearner(member: MemberInfo, options: ProposeOptions = {}): Promise<ConfState> {
    return this.proposeConfChange(ConfChangeType.AddLearner, member.id, member, options);
  }

  /** Promotes learner `id` to voter. Resolves with the membership once applied here. */
  promote(id: NodeId, options: ProposeOptions = {}): Promise<ConfState> {
    return this.proposeConfChange(ConfChangeType.AddVoter, id, this.members.get(id) ?? null, options);
  }

  /** Removes member `id` (voter or learner). Resolves with the membership once applied here. */
  remove(id: NodeId, options: ProposeOptions = {}): Promise<ConfState> {
    return this.proposeConfChange(ConfChangeType.Remove, id, null, options);
  }

  /**
   * A linearizable read barrier (Raft §6.4, ReadIndex): resolves with the read index once this
   * member's state machine applied at least that index; a read of the local state after that sees
   * every write acknowledged before `readIndex` was called. On a follower the request goes to the
   * leader. Rejects with `NotLeaderError` when no leader is known or leadership changed meanwhile,
   * `ProposalOutcomeUnknownError` after `timeoutMs` (reads have no effect: retrying is always safe).
   */
  readIndex(options: ProposeOptions = {}): Promise<number> {
    if (this.state !== "running") return Promise.reject(this.closedError());
    const seq = this.nextSeq++;
    const ctx = new Uint8Array(16);
    const view = new DataView(ctx.buffer);
    view.setUint32(0, this.proposer % 0x1_0000_0000, true);
    view.setUint32(4, Math.floor(this.proposer / 0x1_0000_0000), true);
    view.setUint32(8, seq % 0x1_0000_0000, true);
    view.setUint32(12, Math.floor(seq / 0x1_0000_0000), true);
    try {
      this.raw.readIndex(ctx);
    } catch (e) {
      if (e instanceof ProposalDroppedError) return Promise.reject(this.notLeader(e));
      return Promise.reject(this.fail(e));
    }
    this.scheduleReady();
    const timeoutMs = options.timeoutMs ?? this.settings.readTimeoutMs;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.reads.delete(seq);
        reject(new ProposalOutcomeUnknownError("timeout", `read barrier ${seq} not reached within ${timeoutMs} ms`));
      }, timeoutMs);
      this.reads.set(seq, { seq, index: 0, timer, resolve, reject });
    });
  }

  /**
   * Asks this leader to hand leadership to voter `to` (Raft thesis §3.10). Resolves once this member
   * sees `to` lead; rejects after two election timeouts, or when another member takes over.
   */
  transferLeadership(to: NodeId, options: ProposeOptions = {}): Promise<void> {
    const refusal = this.refuseUnlessLeader();
    if (refusal !== null) return Promise.reject(refusal);
    if (to === this.id) return Promise.resolve();
    this.raw.transferLeader(to);
    this.scheduleReady();
    const timeoutMs = options.timeoutMs ?? 2 * 2 * this.settings.electionTicks * this.settings.tickMs;
    return new Promise<void>((resolve, reject) => {
      const transfer: PendingTransfer = {
        to,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.transfers.delete(transfer);
          reject(new ProposalOutcomeUnknownError("timeout", `leadership did not move to ${to} within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.transfers.add(transfer);
    });
  }

  status(): RaftNodeStatus {
    const s = this.raw.status();
    return {
      id: this.id,
      clusterId: this.clusterId,
      state: this.state,
      role: this.state === "running" ? s.role : Role.Follower,
      term: s.term,
      vote: s.vote,
      lead: this.state === "running" ? s.lead : NONE,
      commit: s.commit,
      applied: this.applied,
      snapshotIndex: this.snapshotIndex,
      firstIndex: this.storage.firstIndex(),
      lastIndex: this.storage.lastIndex(),
      confState: s.confState,
      members: [...this.members.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
      removed: this.removed,
      stats: { ...this.counters },
      progress: this.state === "running" ? s.progress : null,
    };
  }

  /**
   * Stops ticking and processing, fails what is pending (`ProposalOutcomeUnknownError` "closed" for
   * proposals handed to Raft, `NotLeaderError`-free rejections for reads), closes the transport, then
   * syncs and closes the WAL. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  // ---- Transport handler ----------------------------------------------------------------------------

  /** @internal Called by the transport. */
  receive(message: Message): void {
    if (this.state !== "running") return;
    try {
      this.raw.step(message);
    } catch (e) {
      if (e instanceof InvalidMessageError) {
        this.logger.warn(`${this.id}: dropped a message from ${message.from}: ${e.message}`);
        return;
      }
      this.fail(e);
      return;
    }
    this.scheduleReady();
  }

  /** @internal Called by the transport. */
  reportUnreachable(id: NodeId): void {
    if (this.state !== "running") return;
    this.guard(() => this.raw.reportUnreachable(id));
    this.scheduleReady();
  }

  /** @internal Called by the transport. */
  reportSnapshot(id: NodeId, status: SnapshotStatus): void {
    if (this.state !== "running") return;
    this.guard(() => this.raw.reportSnapshot(id, status === "finish"));
    this.scheduleReady();
  }

  /** @internal Called by the transport. */
  reportError(error: RaftTransportError): void {
    if (this.state !== "running") return;
    this.logger.warn(`${this.id}: transport: ${error.message}`);
  }

  // ---- Inputs ---------------------------------------------------------------------------------------

  private onTick(): void {
    if (this.state !== "running") return;
    this.guard(() => this.raw.tick());
    this.scheduleReady();
  }

  private refuseUnlessLeader(): Error | null {
    if (this.state !== "running") return this.closedError();
    if (this.role !== Role.Leader) return this.notLeader();
    return null;
  }

  private notLeader(cause?: unknown): NotLeaderError {
    const lead = this.lead === NONE || this.lead === this.id ? null : this.lead;
    return new NotLeaderError(this.id, lead, lead === null ? null : this.members.get(lead) ?? null, cause === undefined ? undefined : { cause });
  }

  private closedError(): Error {
    if (this.state === "failed" && this.failure !== null) return this.failure;
    return new ProposalRejectedError("closed", `member ${this.id} is closed`);
  }

  private proposalError(e: unknown): Error {
    if (e instanceof ProposalDroppedError) {
      if (e.reason === "no-leader") return this.notLeader(e);
      return new ProposalRejectedError("dropped", e.message, { cause: e });
    }
    return this.fail(e);
  }

  private proposeConfChange(type: ConfChangeType, node: NodeId, info: MemberInfo | null, options: ProposeOptions): Promise<ConfState> {
    if (node === NONE) return Promise.reject(new RangeError("a membership change needs a member id"));
    const refusal = this.refuseUnlessLeader();
    if (refusal !== null) return Promise.reject(refusal);
    const seq = this.nextSeq++;
    const context = encodeConfContext({
      proposer: this.proposer, seq, peerAddress: info?.peerAddress ?? "", clientAddress: info?.clientAddress ?? "",
    });
    const cc: ConfChange = { type, node, context };
    try {
      this.raw.proposeConfChange(cc);
    } catch (e) {
      return Promise.reject(this.proposalError(e));
    }
    this.counters.proposalsTotal++;
    return this.track<ConfState>(seq, options.timeoutMs);
  }

  /** Registers proposal `seq` (just handed to the core) and returns its promise. */
  private track<T>(seq: number, timeoutMsOption: number | undefined): Promise<T> {
    this.scheduleReady();
    const timeoutMs = timeoutMsOption ?? this.settings.proposalTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        const p = this.proposals.get(seq);
        if (p === undefined) return;
        this.forgetProposal(p);
        reject(new ProposalOutcomeUnknownError("timeout", `proposal ${seq} of ${this.id} not applied within ${timeoutMs} ms`));
      }, timeoutMs);
      this.proposals.set(seq, { seq, index: 0, timer, resolve: resolve as (value: unknown) => void, reject });
    });
  }

  private forgetProposal(p: PendingProposal): void {
    clearTimeout(p.timer);
    this.proposals.delete(p.seq);
    if (p.index !== 0 && this.proposalAt.get(p.index) === p.seq) this.proposalAt.delete(p.index);
  }

  // ---- The ready loop -------------------------------------------------------------------------------

  /**
   * Runs the ready loop once the inputs that arrive together are in, so that they all go into one
   * Ready (one fsync). gRPC hands this member one inbound message or call per event-loop turn, and a
   * Ready blocks the loop for its fsync: running a Ready after each one would persist them one by one.
   * So while inputs keep arriving turn after turn, the Ready waits one more turn — at most
   * `COALESCE_TURNS_MAX` turns and `COALESCE_MS_MAX` ms. A lone input is handled in the next turn.
   */
  private scheduleReady(): void {
    if (this.state !== "running") return;
    if (this.readyScheduled) {
      this.inputsWhileScheduled++;
      return;
    }
    this.readyScheduled = true;
    this.inputsWhileScheduled = 0;
    const firstMs = performance.now();
    let turns = 0;
    const turn = (): void => {
      if (this.inputsWhileScheduled > 0 && ++turns < COALESCE_TURNS_MAX && performance.now() - firstMs < COALESCE_MS_MAX) {
        this.inputsWhileScheduled = 0;
        setImmediate(turn);
        return;
      }
      this.readyScheduled = false;
      this.runReady();
    };
    setImmediate(turn);
  }

  private runReady(): void {
    if (this.state !== "running") return;
    try {
      this.flushProposals();
      for (let round = 0; round < READY_ROUNDS_PER_TURN && this.raw.hasReady(); round++) {
        this.handleReady(this.raw.ready());
        if (this.state !== "running") return;
      }
    } catch (e) {
      this.fail(e);
      return;
    }
    // More work (e.g. a long apply backlog): continue after other events had their turn.
    if (this.raw.hasReady()) this.scheduleReady();
  }

  private handleReady(rd: Ready): void {
    const startMs = performance.now();
    this.counters.readyTotal++;
    if (rd.softState !== null) this.onSoftState(rd.softState);

    // 1. Persist: snapshot (file, then WAL marker), entries and hard state in one write, one fsync
    //    when mustSync. Only then does the core's storage see them.
    persistReady(this.disk, rd);
    this.counters.persistMsTotal += performance.now() - startMs;
    if (rd.mustSync) this.counters.fsyncTotal++;
    this.counters.entriesPersistedTotal += rd.entries.length;
    if (rd.snapshot !== null) {
      this.storage.applySnapshot(rd.snapshot);
      this.counters.walSegmentsReleasedTotal += this.disk.wal.releaseTo(rd.snapshot.metadata.index + 1);
    }
    this.storage.append(rd.entries);
    if (rd.hardState !== null) this.storage.setHardState(rd.hardState);
    this.noteProposalIndexes(rd.entries);

    // 2. Send, now that what the messages promise is durable.
    if (rd.messages.length > 0) {
      this.counters.messagesSentTotal += rd.messages.length;
      this.transport.send(rd.messages);
    }

    // 3. Apply: the snapshot, then the committed entries in order; then serve reads.
    if (rd.snapshot !== null) this.installSnapshot(rd.snapshot);
    for (const entry of rd.committedEntries) this.applyEntry(entry);
    for (const rs of rd.readStates) this.noteReadState(rs);
    if (this.reads.size > 0) this.serveReads();

    // 4. Advance; then compact if enough was applied since the last snapshot.
    this.raw.advance(rd);
    this.maybeSnapshot();
    this.counters.readyMsTotal += performance.now() - startMs;
  }

  /**
   * Hands this turn's proposals to the core as one proposal message with many entries (etcd's
   * `MsgProp`, which `RawNode.propose` sends with one entry): the leader appends them together and
   * sends each follower one append for all of them. A follower then persists them with one fsync:
   * with one message per proposal it would persist them one by one, as the gRPC stream hands a
   * member one inbound message per event-loop turn.
   *
   * `RawNode.step` drops a proposal the leader refuses without saying so; whether it was appended is
   * read from the leader's own progress (its match index is its last index).
   */
  private flushProposals(): void {
    if (this.queued.length === 0) return;
    const batch = this.queued;
    this.queued = [];
    const refuse = (error: Error): void => {
      for (const q of batch) {
        const p = this.proposals.get(q.seq);
        if (p === undefined) continue;
        this.forgetProposal(p);
        p.reject(error);
      }
    };
    const before = this.raw.status();
    const lastBefore = before.progress?.[this.id]?.match;
    if (before.role !== Role.Leader || lastBefore === undefined) {
      refuse(this.notLeader());
      return;
    }
    if (before.leadTransferee !== NONE) {
      refuse(new ProposalRejectedError("dropped", `${this.id} is transferring leadership to ${before.leadTransferee}`));
      return;
    }
    const entries: Entry[] = batch.map((q) => ({ term: 0, index: 0, type: EntryType.Normal, data: q.data }));
    this.raw.step(newMessage({ type: MessageType.Prop, from: this.id, to: this.id, entries }));
    const lastAfter = this.raw.status().progress?.[this.id]?.match;
    if (lastAfter !== lastBefore + batch.length) {
      refuse(new ProposalRejectedError("dropped", `the leader ${this.id} did not append the proposals (last index ${lastBefore} -> ${lastAfter ?? "none"})`));
      return;
    }
    for (const [i, q] of batch.entries()) {
      const p = this.proposals.get(q.seq);
      if (p === undefined) continue;
      p.index = lastBefore + 1 + i;
      this.proposalAt.set(p.index, q.seq);
    }
  }

  private onSoftState(ss: SoftState): void {
    const leadChanged = ss.lead !== this.lead;
    if (ss.role !== this.role || leadChanged) {
      this.logger.info(`${this.id}: ${roleText(ss.role)}, leader ${ss.lead === NONE ? "unknown" : ss.lead}`);
    }
    this.role = ss.role;
    this.lead = ss.lead;
    if (!leadChanged) return;
    // Reads not yet answered were asked of a leader that is gone: they had no effect, ask again.
    for (const read of [...this.reads.values()]) {
      if (read.index !== 0) continue;
      clearTimeout(read.timer);
      this.reads.delete(read.seq);
      read.reject(this.notLeader());
    }
    for (const t of [...this.transfers]) {
      if (ss.lead === NONE) continue;
      clearTimeout(t.timer);
      this.transfers.delete(t);
      if (ss.lead === t.to) t.resolve();
      else t.reject(new ProposalRejectedError("dropped", `leadership went to ${ss.lead}, not ${t.to}`));
    }
  }

  /**
   * Records where this member's membership changes were appended (they settle or are superseded at
   * that index). Normal proposals get their index when they are handed to the core (`flushProposals`).
   */
  private noteProposalIndexes(entries: readonly Entry[]): void {
    if (this.proposals.size === 0) return;
    for (const e of entries) {
      if (e.type !== EntryType.ConfChange) continue;
      const tag = confTag(e.data);
      if (tag === null || tag.proposer !== this.proposer) continue;
      const p = this.proposals.get(tag.seq);
      if (p === undefined) continue;
      p.index = e.index;
      this.proposalAt.set(e.index, tag.seq);
    }
  }

  private installSnapshot(snapshot: Snapshot): void {
    const index = snapshot.metadata.index;
    const data = decodeSnapshotData(snapshot.data);
    this.sm.restore(data.app);
    const before = new Set(this.members.keys());
    this.members.clear();
    for (const m of data.members) this.members.set(m.id, m);
    for (const [id, p] of this.configuredPeers) if (!this.members.has(id)) this.members.set(id, p);
    const inConfig = new Set([...snapshot.metadata.confState.voters, ...snapshot.metadata.confState.learners]);
    for (const id of before) if (!this.members.has(id) && id !== this.id) this.transport.removePeer(id);
    for (const m of this.members.values()) if (m.id !== this.id && m.peerAddress !== "") this.transport.addPeer(m.id, m.peerAddress);
    this.removed = this.removed && !inConfig.has(this.id);
    this.applied = index;
    this.snapshotIndex = index;
    this.counters.snapshotsInstalledTotal++;
    // Proposals the snapshot covers may or may not be in it: their results are lost.
    for (const p of [...this.proposals.values()]) {
      if (p.index === 0 || p.index > index) continue;
      this.forgetProposal(p);
      p.reject(new ProposalOutcomeUnknownError("snapshot", `entry ${p.index} was replaced by the snapshot at ${index} before it was applied here`));
    }
    this.logger.info(`${this.id}: installed snapshot at index ${index} (term ${snapshot.metadata.term})`);
  }

  private applyEntry(entry: Entry): void {
    if (entry.index !== this.applied + 1) {
      throw new RaftNodeFailedError(`entry ${entry.index} handed out for applying after ${this.applied}`);
    }
    let tag: ProposalTag | null = null;
    let outcome: { ok: true; value: unknown } | { ok: false; error: Error } | null = null;
    if (entry.type === EntryType.ConfChange) {
      const cc = decodeConfChange(entry.data);
      const ctx = decodeConfContext(cc.context);
      tag = ctx;
      let cs: ConfState | null = null;
      try {
        cs = this.raw.applyConfChange(cc);
      } catch (e) {
        if (!(e instanceof ConfChangeError)) throw e;
        this.logger.warn(`${this.id}: membership change at ${entry.index} does not apply: ${e.message}`);
        outcome = { ok: false, error: new ProposalRejectedError("conf-change-invalid", e.message, { cause: e }) };
      }
      if (cs !== null) {
        this.onMembershipApplied(cc, ctx);
        outcome = { ok: true, value: cs };
      }
      this.sm.apply(entry);
    } else if (entry.data.length === 0) {
      this.sm.apply(entry);
    } else {
      tag = proposalTag(entry.data);
      const data = tag === null ? entry.data : entry.data.subarray(PROPOSAL_HEADER_BYTES);
      const result = this.sm.apply(tag === null ? entry : { term: entry.term, index: entry.index, type: entry.type, data });
      outcome = { ok: true, value: result };
    }
    this.applied = entry.index;
    this.counters.entriesAppliedTotal++;

    const mine = tag !== null && tag.proposer === this.proposer ? this.proposals.get(tag.seq) : undefined;
    const waiting = this.proposalAt.get(entry.index);
    if (waiting !== undefined && (mine === undefined || mine.seq !== waiting)) {
      // Our proposal was appended here, but another entry was committed at this index: it is lost for good.
      const lost = this.proposals.get(waiting);
      if (lost !== undefined) {
        this.forgetProposal(lost);
        lost.reject(new ProposalRejectedError("superseded", `entry ${entry.index} (term ${entry.term}) holds another proposal`));
      }
      this.proposalAt.delete(entry.index);
    }
    if (mine !== undefined && outcome !== null) {
      this.forgetProposal(mine);
      if (outcome.ok) mine.resolve(outcome.value);
      else mine.reject(outcome.error);
    }
  }

  private onMembershipApplied(cc: ConfChange, ctx: ConfContext | null): void {
    if (cc.type === ConfChangeType.Remove) {
      this.members.delete(cc.node);
      if (cc.node === this.id) {
        this.removed = true;
        this.logger.warn(`${this.id}: removed from the cluster`);
      } else {
        this.transport.removePeer(cc.node);
      }
      return;
    }
    const known = this.members.get(cc.node);
    const info: MemberInfo = {
      id: cc.node,
      peerAddress: ctx !== null && ctx.peerAddress !== "" ? ctx.peerAddress : known?.peerAddress ?? "",
      clientAddress: ctx !== null && ctx.clientAddress !== "" ? ctx.clientAddress : known?.clientAddress ?? "",
    };
    // An address given to this member at start wins over the one logged (see the constructor).
    const configured = this.configuredPeers.get(cc.node);
    this.members.set(cc.node, configured ?? info);
    const address = (configured ?? info).peerAddress;
    if (cc.node !== this.id && address !== "") this.transport.addPeer(cc.node, address);
  }

  private noteReadState(rs: ReadState): void {
    if (rs.requestCtx.length !== 16) return;
    const view = new DataView(rs.requestCtx.buffer, rs.requestCtx.byteOffset, 16);
    const proposer = view.getUint32(4, true) * 0x1_0000_0000 + view.getUint32(0, true);
    if (proposer !== this.proposer) return;
    const seq = view.getUint32(12, true) * 0x1_0000_0000 + view.getUint32(8, true);
    const read = this.reads.get(seq);
    if (read !== undefined) read.index = rs.index;
  }

  private serveReads(): void {
    for (const read of [...this.reads.values()]) {
      if (read.index === 0 || read.index > this.applied) continue;
      clearTimeout(read.timer);
      this.reads.delete(read.seq);
      read.resolve(read.index);
    }
  }

  /**
   * Log compaction: every `snapshotEveryEntries` applied entries, snapshot the state machine (with the
   * members' addresses), make it durable (file, WAL marker), release the WAL segments it covers, and
   * drop from memory the entries older than `compactKeepEntries` behind it. A follower that needs an
   * entry no longer held gets the snapshot instead (the core sends it; the transport carries it apart).
   */
  private maybeSnapshot(): void {
    if (this.applied - this.snapshotIndex < this.settings.snapshotEveryEntries) return;
    const confState = this.raw.status().confState;
    const data = encodeSnapshotData(this.members.values(), this.sm.snapshot());
    const snapshot = this.storage.createSnapshot(this.applied, confState, data);
    this.counters.walSegmentsReleasedTotal += saveSnapshot(this.disk, snapshot);
    this.snapshotIndex = this.applied;
    this.counters.snapshotsTakenTotal++;
    const compactTo = this.applied - this.settings.compactKeepEntries;
    if (compactTo >= this.storage.firstIndex()) this.storage.compact(compactTo);
  }

  // ---- Failure and shutdown ---------------------------------------------------------------------------

  private guard(f: () => void): void {
    try {
      f();
    } catch (e) {
      this.fail(e);
    }
  }

  /** Stops the member for good after an error it cannot continue from. Returns the error. */
  private fail(e: unknown): RaftNodeFailedError {
    if (this.failure !== null) return this.failure;
    const error = e instanceof RaftNodeFailedError ? e : new RaftNodeFailedError(`member ${this.id} stopped: ${describe(e)}`, { cause: e });
    if (this.state !== "running") return error;
    this.failure = error;
    this.state = "failed";
    this.logger.warn(error.message);
    this.stopAndRejectAll(error);
    void this.transport.close().catch(() => undefined);
    try {
      this.disk.wal.close();
    } catch {
      // The WAL may be what failed; nothing more to save.
    }
    this.onFatal?.(error);
    return error;
  }

  private stopAndRejectAll(cause: Error | null): void {
    if (this.tickTimer !== null) clearInterval(this.tickTimer);
    this.tickTimer = null;
    for (const q of this.queued) {
      const p = this.proposals.get(q.seq);
      if (p === undefined) continue;
      this.forgetProposal(p);
      p.reject(new ProposalRejectedError("closed", `member ${this.id} stopped before proposal ${q.seq} was handed to Raft`));
    }
    this.queued = [];
    for (const p of [...this.proposals.values()]) {
      this.forgetProposal(p);
      p.reject(new ProposalOutcomeUnknownError("closed", `member ${this.id} stopped before proposal ${p.seq} was applied`, cause === null ? undefined : { cause }));
    }
    for (const read of [...this.reads.values()]) {
      clearTimeout(read.timer);
      this.reads.delete(read.seq);
      read.reject(new ProposalRejectedError("closed", `member ${this.id} stopped before read ${read.seq} was served`));
    }
    for (const t of [...this.transfers]) {
      clearTimeout(t.timer);
      this.transfers.delete(t);
      t.reject(new ProposalRejectedError("closed", `member ${this.id} stopped`));
    }
  }

  private async shutdown(): Promise<void> {
    if (this.state === "running") {
      this.state = "closed";
      this.stopAndRejectAll(null);
      this.logger.info(`${this.id}: closing`);
    }
    await this.transport.close();
    if (this.failure === null) this.disk.wal.close();
  }
}

function confTag(data: Uint8Array): ProposalTag | null {
  try {
    return decodeConfContext(decodeConfChange(data).context);
  } catch {
    return null;
  }
}

function roleText(role: Role): string {
  switch (role) {
    case Role.Leader: return "leader";
    case Role.Candidate: return "candidate";
    case Role.PreCandidate: return "pre-candidate";
    default: return "follower";
  }
}
