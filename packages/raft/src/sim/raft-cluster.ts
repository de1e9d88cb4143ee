/**
 * A simulated Raft cluster: every member is the production `RawNode` over a `MemoryStorage`
 * rebuilt from its WAL on its own `SimFileSystem`, with a `KvStateMachine` on top, all driven by
 * one `SimClock`, one `SimNetwork` and one seed.
 *
 * The driver obeys the Ready contract after every input (tick, message, proposal):
 *   1. persist the snapshot (file, then WAL marker), the entries and the hard state, fsynced when
 *      `mustSync`;
 *   2. send the messages (encoded with the codec, so nothing is shared between members);
 *   3. restore the snapshot into the state machine, apply the committed entries (conf changes via
 *      `applyConfChange`), answer the clients, serve ReadIndex reads;
 *   4. `advance`.
 * The `SafetyChecker` sees every persist and every apply.
 *
 * Faults (see `SimOptions`): the network's own (loss, duplication, delay, partitions, clogs);
 * members' clocks ticking at slightly different rates; and a nemesis process, every tick, that
 * crashes members (their file system loses unsynced writes and may keep a torn tail) and restarts
 * them later from their disk (the production WAL and snapshot store), makes a write or sync fail
 * (the member stops, fail-stop), crashes a member between a snapshot file and its WAL marker,
 * proposes membership changes (add learner, promote, remove) and leadership transfers.
 *
 * Clients talk to members over the same network (never partitioned): the leader proposes their
 * commands (or serves reads through ReadIndex), followers redirect them or, in some seeds, forward
 * them; the member that took a request answers once it applied it.
 */
import type { HistoryRecorder, Operation } from "../check/history.js";
import type { KvInput, KvOutput } from "../check/kv-model.js";
import { decodeMessage, encodeMessage } from "../codec.js";
import { applyConfChangeToConfState, decodeConfChange } from "../conf-change.js";
import { ProposalDroppedError } from "../errors.js";
import { FsError } from "../fs.js";
import { KvStateMachine, encodeKvCommand } from "../kv.js";
import type { MemoryStorage } from "../memory-storage.js";
import { RawNode } from "../raw-node.js";
import { SeededRng } from "../rng.js";
import { SimFileSystem } from "../sim-fs.js";
import { ConfChangeType, EntryType, MessageType, NONE, Role } from "../types.js";
import type { ConfChange, ConfState, Entry, Message, NodeId, Ready } from "../types.js";
import { WalError } from "../wal.js";
import { SafetyChecker, SimInvariantError, type LogView } from "./checker.js";
import { SimClient, type ClientReply, type ClientRequest, type ClientResponse } from "./client.js";
import { SimClock, type TimerId } from "./clock.js";
import { MemberDisk } from "./disk.js";
import { SimNetwork, type SendOutcome } from "./network.js";
import type { SimOptions } from "./swarm.js";
import { TraceHash } from "./trace.js";

/** What travels on the simulated network. */
export type Packet =
  | { readonly kind: "raft"; readonly bytes: Uint8Array }
  | ClientRequest
  | ClientResponse;

/** Ready rounds one input may cause before the driver calls it a livelock. */
const READY_ROUNDS_MAX = 64;
const DISK_OPTIONS = { segmentSizeBytes: 16 * 1024, retain: 2 };
const MAX_SIZE_PER_MSG_BYTES = 2048;
const MAX_INFLIGHT_MSGS = 32;
const DISK_FAULT_OPS = ["write", "sync", "rename", "syncDir"] as const;

export class SimDriverError extends Error {
  override readonly name = "SimDriverError";
}

interface PendingWrite {
  readonly client: string;
  readonly requestId: number;
}

interface PendingRead {
  readonly client: string;
  readonly session: string;
  readonly requestId: number;
  readonly key: string;
  /** Set once the ReadState came out of a Ready. */
  index: number | null;
}

/** One simulated machine: its disk outlives crashes; everything else is one incarnation's. */
export interface SimMember {
  readonly id: NodeId;
  readonly fs: SimFileSystem;
  readonly rng: SeededRng;
  readonly founder: boolean;
  /** This member's tick period (clock skew between members). */
  readonly tickMs: number;
  up: boolean;
  incarnation: number;
  disk: MemberDisk | null;
  node: RawNode | null;
  storage: MemoryStorage | null;
  kv: KvStateMachine | null;
  role: Role;
  lead: NodeId;
  term: number;
  tickTimer: TimerId | null;
  restartTimer: TimerId | null;
  readonly pendingWrites: Map<string, PendingWrite>;
  readonly pendingReads: Map<string, PendingRead>;
  readCounter: number;
  /** The checker's view of `storage`, built once per incarnation. */
  logView: LogView | null;
  logViewOf: MemoryStorage | null;
}

export interface ClusterStats {
  crashes: number;
  restarts: number;
  walRepairs: number;
  /** Disk writes that failed (injected EIO), each stopping its member. */
  diskErrors: number;
  /** Restarts whose replayed commit index was below the adopted snapshot (a disk-storage defect, worked around). */
  commitsRaisedToSnapshot: number;
  lostBytes: number;
  snapshotsTaken: number;
  snapshotsInstalled: number;
  confChangesProposed: number;
  confChangesApplied: number;
  transfersRequested: number;
  readsServed: number;
  writesAnswered: number;
  appliedEntries: number;
}

export type ClusterPhase = "safety" | "liveness";

export interface ClusterHooks {
  /** One line per notable event (crash, restart, leader change, conf change), for `--verbose`. */
  readonly log?: (line: string) => void;
  /**
   * A deliberately broken driver that never fsyncs (a Ready's writes stay volatile while its
   * messages go out): only to show that the checkers catch what a crash then loses.
   */
  readonly unsafeSkipFsync?: boolean;
  /**
   * A deliberately broken server that answers reads from any member's local state at once, with
   * neither ReadIndex nor the log: only to show that the linearizability check catches stale reads.
   */
  readonly unsafeLocalReads?: boolean;
  /** Every decision the Raft core logs (role changes, votes, rejections), prefixed with the time. */
  readonly raftLog?: (line: string) => void;
}

function ratioTuple(r: { numerator: number; denominator: number }): [number, number] {
  return [r.numerator, r.denominator];
}

function contextKey(ctx: Uint8Array): string {
  let s = "";
  for (let i = 0; i < ctx.length; i++) s += String.fromCharCode(ctx[i]!);
  return s;
}

function contextBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

/** The last 4 bytes of a KV snapshot are the CRC-32 of everything before it: a hash of the whole state. */
function kvFullHash(kv: KvStateMachine): number {
  const bytes = kv.snapshot();
  const n = bytes.length;
  return (bytes[n - 4]! | (bytes[n - 3]! << 8) | (bytes[n - 2]! << 16) | (bytes[n - 1]! << 24)) >>> 0;
}

/** A cheap hash of what clients can observe: the applied index and the value of every key they use. */
function kvDataHash(kv: KvStateMachine, keys: readonly string[]): number {
  let h = Math.imul(0x811c9dc5 ^ kv.appliedIndex, 0x01000193);
  for (const key of keys) {
    const value = kv.read(key);
    if (value === null) {
      h = Math.imul(h ^ 0xff, 0x01000193);
      continue;
    }
    for (let i = 0; i < value.length; i++) h = Math.imul(h ^ value.charCodeAt(i), 0x01000193);
    h = Math.imul(h ^ 0xfe, 0x01000193);
  }
  return h >>> 0;
}

export class RaftCluster {
  readonly clock = new SimClock();
  readonly network: SimNetwork<Packet>;
  readonly checker = new SafetyChecker();
  readonly trace = new TraceHash();
  readonly members: SimMember[] = [];
  readonly clients: SimClient[] = [];
  readonly stats: ClusterStats = {
    crashes: 0, restarts: 0, walRepairs: 0, diskErrors: 0, commitsRaisedToSnapshot: 0, lostBytes: 0, snapshotsTaken: 0, snapshotsInstalled: 0, confChangesProposed: 0,
    confChangesApplied: 0, transfersRequested: 0, readsServed: 0, writesAnswered: 0, appliedEntries: 0,
  };
  phase: ClusterPhase = "safety";
  private readonly byId = new Map<NodeId, SimMember>();
  private readonly faultRng: SeededRng;
  private readonly fsRng: SeededRng;
  private readonly snapRng: SeededRng;
  private nemesisTimer: TimerId | null = null;
  /** Members that were ever named in a proposed membership change: never added again after a removal. */
  private readonly everAdded = new Set<NodeId>();
  private readonly everRemoved = new Set<NodeId>();
  /** Every distinct voter set seen in force on some member (founding set included). */
  private readonly voterSets = new Map<string, readonly NodeId[]>();
  private readonly log: ((line: string) => void) | undefined;
  private readonly unsafeSkipFsync: boolean;
  private readonly unsafeLocalReads: boolean;
  private readonly raftLog: ((line: string) => void) | undefined;
  /** When each client request (session#requestId) was first applied, and its result. */
  private readonly firstApplied = new Map<string, { readonly atMs: number; readonly output: KvOutput }>();
  /** The keys the clients use (k0, k1, …): what the cheap state hash covers. */
  private readonly keys: readonly string[];

  constructor(
    readonly options: SimOptions,
    readonly history: HistoryRecorder<KvInput, KvOutput>,
    hooks: ClusterHooks = {},
  ) {
    this.log = hooks.log;
    this.unsafeSkipFsync = hooks.unsafeSkipFsync ?? false;
    this.unsafeLocalReads = hooks.unsafeLocalReads ?? false;
    const raftLog = hooks.raftLog;
    this.raftLog = raftLog === undefined ? undefined : (line) => raftLog(`${this.clock.nowMs()} ms: ${line}`);
    this.keys = Array.from({ length: options.keyCount }, (_, i) => `k${i}`);
    const root = new SeededRng(options.seed);
    const netRng = root.fork();
    this.faultRng = root.fork();
    this.fsRng = root.fork();
    this.snapRng = root.fork();
    const clientRng = root.fork();
    const memberRng = root.fork();
    this.network = new SimNetwork<Packet>(this.clock, netRng, options.network);
    const founders: NodeId[] = [];
    for (let i = 1; i <= options.memberCount; i++) founders.push(`n${i}`);
    const ids = [...founders];
    for (let i = 1; i <= options.spareCount; i++) ids.push(`n${options.memberCount + i}`);
    this.voterSets.set(founders.join(","), founders);
    for (const id of founders) this.everAdded.add(id);
    for (const id of ids) {
      const member: SimMember = {
        id, fs: new SimFileSystem(), rng: memberRng.fork(), founder: founders.includes(id),
        tickMs: options.tickMs - options.tickSkewMs + memberRng.int(2 * options.tickSkewMs + 1), up: false, incarnation: 0,
        disk: null, node: null, storage: null, kv: null, role: Role.Follower, lead: NONE, term: 0, tickTimer: null, restartTimer: null,
        pendingWrites: new Map(), pendingReads: new Map(), readCounter: 0, logView: null, logViewOf: null,
      };
      this.members.push(member);
      this.byId.set(id, member);
      this.network.addEndpoint(id, (from, packet) => this.onMemberPacket(member, from, packet), true);
      // A joiner knows the founding membership too (etcd's initial-cluster): it may receive the log
      // from index 1 and must apply its membership changes on top of the founders, not of nothing.
      MemberDisk.create(member.fs, `/${id}`, { voters: founders, learners: [] }, DISK_OPTIONS);
    }
    if (options.linkDelaysVary) {
      const n = options.network;
      for (const a of ids) {
        for (const b of ids) {
          if (a === b) continue;
          const lo = n.delayMsMin + netRng.int(n.delayMsMax - n.delayMsMin + 1);
          const hi = lo + netRng.int(n.delayMsMax - lo + 1);
          this.network.setLinkDelay(a, b, lo, hi);
        }
      }
    }
    for (let i = 1; i <= options.clientCount; i++) {
      const name = `c${i}`;
      const client = new SimClient(name, ids, this.clock, clientRng.fork(), history, (to, request) => this.network.send(name, to, request), {
        keyCount: options.keyCount,
        timeoutMs: options.clientTimeoutMs,
        thinkMsMax: options.clientThinkMsMax,
        backoffMs: options.tickMs,
        attemptsMax: 3,
      });
      this.clients.push(client);
      this.network.addEndpoint(name, (from, packet) => this.onClientPacket(client, from, packet), false);
      for (const id of ids) {
        this.network.setLinkDelay(name, id, 1, options.clientDelayMsMax);
        this.network.setLinkDelay(id, name, 1, options.clientDelayMsMax);
      }
    }
  }

  member(id: NodeId): SimMember {
    const m = this.byId.get(id);
    if (m === undefined) throw new SimDriverError(`unknown member ${id}`);
    return m;
  }

  /** Boots every member from its (fresh) disk, starts the clients and the fault processes. */
  start(): void {
    for (const m of this.members) this.startMember(m);
    for (const c of this.clients) c.start();
    this.network.startFaults();
    const fire = (): void => {
      this.nemesisTimer = this.clock.setTimer(this.options.tickMs, fire);
      this.nemesis();
    };
    this.nemesisTimer = this.clock.setTimer(this.options.tickMs, fire);
  }

  // ---- Members ----------------------------------------------------------------------------------

  private startMember(m: SimMember): void {
    if (m.up) throw new SimDriverError(`${m.id} is already up`);
    const { disk, recovery } = MemberDisk.open(m.fs, `/${m.id}`, DISK_OPTIONS);
    if (recovery.repaired !== null) this.stats.walRepairs++;
    if (recovery.commitRaised) this.stats.commitsRaisedToSnapshot++;
    const snapshotIndex = recovery.snapshot?.metadata.index ?? 0;
    const kv = new KvStateMachine();
    if (recovery.snapshot !== null) kv.restore(recovery.snapshot.data);
    if (kv.appliedIndex !== snapshotIndex) throw new SimDriverError(`${m.id}: snapshot ${snapshotIndex} holds a state machine at ${kv.appliedIndex}`);
    m.incarnation++;
    m.disk = disk;
    m.storage = recovery.storage;
    m.kv = kv;
    m.node = new RawNode({
      id: m.id,
      storage: recovery.storage,
      rng: m.rng.fork(),
      electionTicks: this.options.electionTick,
      heartbeatTicks: this.options.heartbeatTick,
      preVote: this.options.preVote,
      checkQuorum: this.options.checkQuorum,
      applied: snapshotIndex,
      maxSizePerMsgBytes: MAX_SIZE_PER_MSG_BYTES,
      maxInflightMsgs: MAX_INFLIGHT_MSGS,
      ...(this.raftLog !== undefined ? { logger: { info: this.raftLog, warn: this.raftLog } } : {}),
    });
    m.role = Role.Follower;
    m.lead = NONE;
    m.term = recovery.hardState.term;
    m.up = true;
    this.checker.onStart(m.id, m.incarnation, recovery.hardState, this.logView(m), snapshotIndex);
    if (recovery.snapshot !== null) {
      this.checker.onRestore(m.id, snapshotIndex, kvDataHash(kv, this.keys));
      this.checker.onFullState(m.id, snapshotIndex, kvFullHash(kv));
    }
    this.network.setUp(m.id, true);
    const incarnation = m.incarnation;
    const fire = (): void => {
      if (m.incarnation !== incarnation || !m.up) return;
      m.tickTimer = this.clock.setTimer(m.tickMs, fire);
      m.node!.tick();
      this.processReady(m);
    };
    m.tickTimer = this.clock.setTimer(1 + this.faultRng.int(m.tickMs), fire);
    this.processReady(m);
  }

  /**
   * Power loss: in-memory state gone, unsynced writes lost or torn. The member restarts later in
   * the safety phase, and in the liveness phase too when `restart` (a crash the driver caused).
   */
  crash(m: SimMember, restart = false): void {
    if (!m.up) return;
    m.up = false;
    this.network.setUp(m.id, false);
    if (m.tickTimer !== null) this.clock.cancel(m.tickTimer);
    m.tickTimer = null;
    m.node = null;
    m.storage = null;
    m.kv = null;
    m.disk = null;
    m.pendingWrites.clear();
    m.pendingReads.clear();
    m.role = Role.Follower;
    m.lead = NONE;
    const report = m.fs.crash(this.fsRng, { keepUnsyncedPrefix: ratioTuple(this.options.tornTailRatio), corruptTorn: [0, 1], keepUnsyncedMetadata: [1, 2] });
    this.stats.crashes++;
    this.stats.lostBytes += report.lostBytes;
    this.log?.(`${this.clock.nowMs()} ms: ${m.id} crashed (lost ${report.lostBytes} unsynced bytes)`);
    if (this.phase === "safety" || restart) {
      const delayMs = this.options.tickMs + this.faultRng.int(this.options.restartDelayMsMax);
      m.restartTimer = this.clock.setTimer(delayMs, () => {
        m.restartTimer = null;
        this.restart(m);
      });
    }
  }

  restart(m: SimMember): void {
    if (m.up) return;
    if (m.restartTimer !== null) this.clock.cancel(m.restartTimer);
    m.restartTimer = null;
    this.stats.restarts++;
    this.log?.(`${this.clock.nowMs()} ms: ${m.id} restarts`);
    this.startMember(m);
  }

  private logView(m: SimMember): LogView {
    const storage = m.storage!;
    if (m.logView !== null && m.logViewOf === storage) return m.logView;
    m.logViewOf = storage;
    return (m.logView = {
      snapshotIndex: () => storage.firstIndex() - 1,
      lastIndex: () => storage.lastIndex(),
      entry: (index) => storage.entries(index, index + 1, Number.POSITIVE_INFINITY)[0]!,
      term: (index) => storage.term(index),
    });
  }

  // ---- The Ready loop ---------------------------------------------------------------------------

  private processReady(m: SimMember): void {
    const node = m.node;
    if (node === null) return;
    for (let round = 0; node.hasReady(); round++) {
      if (round >= READY_ROUNDS_MAX) throw new SimDriverError(`${m.id}: still has a Ready after ${READY_ROUNDS_MAX} rounds`);
      this.handleReady(m, node, node.ready());
      if (m.node !== node) return;
    }
  }

  private handleReady(m: SimMember, node: RawNode, rd: Ready): void {
    const storage = m.storage!;
    const disk = m.disk!;
    // 1. Persist: snapshot, entries, hard state; fsync when required, before anything is sent.
    //    An I/O error stops the member (fail-stop): nothing of this Ready is sent or applied.
    if (!this.diskOp(m, () => disk.persist(rd, rd.mustSync && !this.unsafeSkipFsync))) return;
    if (rd.snapshot !== null) storage.applySnapshot(rd.snapshot);
    storage.append(rd.entries);
    if (rd.hardState !== null) {
      storage.setHardState(rd.hardState);
      m.term = rd.hardState.term;
    }
    let becameLeader = false;
    if (rd.softState !== null) {
      const wasLeader = m.role === Role.Leader;
      becameLeader = rd.softState.role === Role.Leader && !wasLeader;
      m.role = rd.softState.role;
      m.lead = rd.softState.lead;
      if (becameLeader) this.log?.(`${this.clock.nowMs()} ms: ${m.id} leads term ${m.term}`);
      if (wasLeader && m.role !== Role.Leader) this.releasePending(m);
    }
    this.checker.onPersist(m.id, rd.hardState, rd.mustSync, becameLeader, m.term, this.logView(m));
    // 2. Send.
    for (const msg of rd.messages) this.sendRaft(m, msg);
    // 3. Apply.
    if (rd.snapshot !== null) {
      const kv = new KvStateMachine();
      kv.restore(rd.snapshot.data);
      const index = rd.snapshot.metadata.index;
      if (kv.appliedIndex !== index) throw new SimDriverError(`${m.id}: snapshot ${index} holds a state machine at ${kv.appliedIndex}`);
      m.kv = kv;
      this.stats.snapshotsInstalled++;
      this.checker.onRestore(m.id, index, kvDataHash(kv, this.keys));
      this.checker.onFullState(m.id, index, kvFullHash(kv));
      this.noteConfState(rd.snapshot.metadata.confState);
    }
    for (const entry of rd.committedEntries) this.applyEntry(m, node, entry);
    for (const rs of rd.readStates) {
      const read = m.pendingReads.get(contextKey(rs.requestCtx));
      if (read !== undefined) read.index = rs.index;
    }
    this.serveReads(m);
    // 4. Advance.
    node.advance(rd);
    this.maybeSnapshot(m, node);
  }

  private applyEntry(m: SimMember, node: RawNode, entry: Entry): void {
    const kv = m.kv!;
    if (entry.type === EntryType.ConfChange) {
      const cc = decodeConfChange(entry.data);
      let cs: ConfState;
      try {
        cs = node.applyConfChange(cc);
      } catch (e) {
        const before = node.status().confState;
        throw new SimDriverError(`${m.id} applying conf change at ${entry.index} (term ${entry.term}) to voters [${before.voters.join(",")}] learners [${before.learners.join(",")}]: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      this.noteConfState(cs);
      this.stats.confChangesApplied++;
    }
    const applied = kv.apply(entry);
    this.stats.appliedEntries++;
    this.trace.string(m.id).int(entry.index).int(entry.term).int(entry.type).bytes(entry.data).end();
    this.checker.onApply(m.id, entry, kvDataHash(kv, this.keys));
    if (applied === null || applied.clientId === null) return;
    const request = `${applied.clientId}#${applied.requestId}`;
    if (!applied.duplicate && applied.result.ok && !this.firstApplied.has(request)) {
      this.firstApplied.set(request, { atMs: this.clock.nowMs(), output: applied.result.output });
    }
    const pending = m.pendingWrites.get(applied.clientId);
    if (pending === undefined || pending.requestId !== applied.requestId) return;
    m.pendingWrites.delete(applied.clientId);
    const result = applied.result;
    if (!result.ok) {
      // A copy of a request the network delayed or duplicated, proposed after a newer one applied:
      // the client moved on and is not waiting for it.
      if (result.error === "stale-request") return;
      throw new SimInvariantError("kv-result", `${m.id} answered request ${applied.requestId} of ${applied.clientId} with ${result.error}: ${result.message}`);
    }
    this.stats.writesAnswered++;
    this.reply(m, pending.client, applied.clientId, pending.requestId, { type: "ok", output: result.output });
  }

  private noteConfState(cs: ConfState): void {
    const key = cs.voters.join(",");
    if (!this.voterSets.has(key)) this.voterSets.set(key, [...cs.voters]);
  }

  private serveReads(m: SimMember): void {
    const kv = m.kv!;
    for (const [key, read] of m.pendingReads) {
      if (read.index === null || read.index > kv.appliedIndex) continue;
      m.pendingReads.delete(key);
      this.stats.readsServed++;
      this.reply(m, read.client, read.session, read.requestId, { type: "ok", output: { op: "get", value: kv.read(read.key) } });
    }
  }

  /** A leader stepped down: requests it had not answered go elsewhere (writes are deduplicated). */
  private releasePending(m: SimMember): void {
    for (const [session, w] of m.pendingWrites) this.reply(m, w.client, session, w.requestId, { type: "redirect", leader: m.lead });
    m.pendingWrites.clear();
    for (const [key, read] of m.pendingReads) {
      if (read.index !== null) continue;
      m.pendingReads.delete(key);
      this.reply(m, read.client, read.session, read.requestId, { type: "redirect", leader: m.lead });
    }
  }

  private maybeSnapshot(m: SimMember, node: RawNode): void {
    const every = this.options.snapshotEvery;
    if (every === 0 || m.node !== node) return;
    const storage = m.storage!;
    const kv = m.kv!;
    const applied = kv.appliedIndex;
    const snapshotIndex = storage.snapshot().metadata.index;
    if (applied - snapshotIndex < every) return;
    const data = kv.snapshot();
    const snapshot = storage.createSnapshot(applied, node.status().confState, data);
    this.checker.onFullState(m.id, applied, kvFullHash(kv));
    if (this.phase === "safety" && this.faultRng.chance(this.options.crashInSnapshotRatio.numerator, this.options.crashInSnapshotRatio.denominator)) {
      // Power loss after the snapshot file is durable and before the WAL marker is written.
      if (!this.diskOp(m, () => m.disk!.saveSnapshotFileOnly(snapshot))) return;
      this.log?.(`${this.clock.nowMs()} ms: ${m.id} crashes while saving snapshot ${applied}`);
      this.crash(m);
      return;
    }
    if (!this.diskOp(m, () => m.disk!.saveSnapshot(snapshot))) return;
    // Keep a few entries behind the snapshot so a slightly lagging follower still gets entries.
    const compactTo = Math.max(storage.firstIndex(), applied - this.snapRng.int(6));
    storage.compact(compactTo);
    this.stats.snapshotsTaken++;
  }

  /** Runs a disk write; on an I/O error (an injected EIO) the member crashes and false is returned. */
  private diskOp(m: SimMember, write: () => void): boolean {
    try {
      write();
      return true;
    } catch (e) {
      if (!(e instanceof FsError || e instanceof WalError)) throw e;
      this.stats.diskErrors++;
      this.log?.(`${this.clock.nowMs()} ms: ${m.id} stops on a disk error: ${e.message}`);
      this.crash(m, true);
      return false;
    }
  }

  private sendRaft(m: SimMember, msg: Message): void {
    const packet: Packet = { kind: "raft", bytes: encodeMessage(msg) };
    const incarnation = m.incarnation;
    const isSnap = msg.type === MessageType.Snap;
    this.network.send(m.id, msg.to, packet, (outcome) => this.onRaftOutcome(m, incarnation, msg.to, isSnap, outcome));
  }

  private onRaftOutcome(m: SimMember, incarnation: number, to: NodeId, isSnap: boolean, outcome: SendOutcome): void {
    if (m.incarnation !== incarnation || m.node === null) return;
    if (isSnap) m.node.reportSnapshot(to, outcome === "delivered");
    else if (outcome === "unreachable") m.node.reportUnreachable(to);
    else return;
    this.processReady(m);
  }

  // ---- Packets ------------------------------------------------------------------------------------

  private onMemberPacket(m: SimMember, from: string, packet: Packet): void {
    this.traceDelivery(m.id, from, packet);
    const node = m.node;
    if (node === null) throw new SimDriverError(`${m.id} received a packet while down`);
    switch (packet.kind) {
      case "raft": {
        const msg = decodeMessage(packet.bytes);
        node.step(msg);
        this.processReady(m);
        return;
      }
      case "request":
        this.onRequest(m, node, from, packet);
        return;
      case "response":
        throw new SimDriverError(`${m.id} received a client response from ${from}`);
    }
  }

  private onClientPacket(client: SimClient, from: string, packet: Packet): void {
    this.traceDelivery(client.name, from, packet);
    if (packet.kind !== "response") throw new SimDriverError(`client ${client.name} received a ${packet.kind} packet`);
    client.onResponse(from, packet);
  }

  private traceDelivery(to: string, from: string, packet: Packet): void {
    const t = this.trace.int(this.clock.nowMs()).string(to).string(from);
    switch (packet.kind) {
      case "raft":
        t.bytes(packet.bytes);
        break;
      case "request":
        t.string(packet.session).int(packet.requestId).string(JSON.stringify(packet.input));
        break;
      case "response":
        t.string(packet.session).int(packet.requestId).string(JSON.stringify(packet.reply));
        break;
    }
    t.end();
  }

  private onRequest(m: SimMember, node: RawNode, client: string, request: ClientRequest): void {
    if (this.unsafeLocalReads && request.input.op === "get") {
      this.reply(m, client, request.session, request.requestId, { type: "ok", output: { op: "get", value: m.kv!.read(request.input.key) } });
      return;
    }
    const serves = m.role === Role.Leader || (this.options.followersServe && m.lead !== NONE);
    if (!serves) {
      this.reply(m, client, request.session, request.requestId, { type: "redirect", leader: m.lead });
      return;
    }
    const { session, requestId, input } = request;
    try {
      if (input.op === "get" && this.options.readIndexReads) {
        const key = `${m.incarnation}/${++m.readCounter}`;
        m.pendingReads.set(key, { client, session, requestId, key: input.key, index: null });
        try {
          node.readIndex(contextBytes(key));
        } catch (e) {
          m.pendingReads.delete(key);
          throw e;
        }
      } else {
        // A late copy of an older request of this session: the client is waiting for a newer one.
        const waiting = m.pendingWrites.get(session);
        if (waiting !== undefined && waiting.requestId > requestId) return;
        node.propose(encodeKvCommand({ clientId: session, requestId, input }));
        m.pendingWrites.set(session, { client, requestId });
      }
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
      this.reply(m, client, session, requestId, { type: "retry" });
      return;
    }
    this.processReady(m);
  }

  private reply(m: SimMember, client: string, session: string, requestId: number, reply: ClientReply): void {
    this.network.send(m.id, client, { kind: "response", session, requestId, reply });
  }

  // ---- Nemesis ------------------------------------------------------------------------------------

  private nemesis(): void {
    const o = this.options;
    let down = 0;
    for (const m of this.members) if (!m.up) down++;
    for (const m of this.members) {
      if (!m.up || down >= o.downMax) continue;
      if (this.faultRng.chance(o.crashRatio.numerator, o.crashRatio.denominator)) {
        this.crash(m);
        down++;
      }
    }
    if (this.faultRng.chance(o.diskFaultRatio.numerator, o.diskFaultRatio.denominator)) {
      const m = this.members[this.faultRng.int(this.members.length)]!;
      if (m.up) m.fs.failNext(DISK_FAULT_OPS[this.faultRng.int(DISK_FAULT_OPS.length)]!);
    }
    if (this.faultRng.chance(o.confChangeRatio.numerator, o.confChangeRatio.denominator)) this.proposeConfChange();
    if (this.faultRng.chance(o.transferRatio.numerator, o.transferRatio.denominator)) this.requestTransfer();
  }

  /** The up member that leads the highest term, if any. */
  leader(): SimMember | null {
    let best: SimMember | null = null;
    for (const m of this.members) {
      if (m.up && m.role === Role.Leader && (best === null || m.term > best.term)) best = m;
    }
    return best;
  }

  private proposeConfChange(): void {
    const leader = this.leader();
    if (leader === null) return;
    const node = leader.node!;
    const cs = node.status().confState;
    const choices: ConfChange[] = [];
    const empty = new Uint8Array(0);
    for (const m of this.members) {
      if (!this.everAdded.has(m.id) && !this.everRemoved.has(m.id)) choices.push({ type: ConfChangeType.AddLearner, node: m.id, context: empty });
    }
    for (const id of cs.learners) {
      choices.push({ type: ConfChangeType.AddVoter, node: id, context: empty });
      choices.push({ type: ConfChangeType.Remove, node: id, context: empty });
    }
    if (cs.voters.length >= 3) for (const id of cs.voters) choices.push({ type: ConfChangeType.Remove, node: id, context: empty });
    if (choices.length === 0) return;
    const cc = choices[this.faultRng.int(choices.length)]!;
    try {
      node.proposeConfChange(cc);
    } catch (e) {
      if (e instanceof ProposalDroppedError) return;
      throw e;
    }
    // The change may commit later on whoever leads: the liveness core must be a majority of it too.
    this.noteConfState(applyConfChangeToConfState(cs, cc));
    if (cc.type === ConfChangeType.Remove) this.everRemoved.add(cc.node);
    else this.everAdded.add(cc.node);
    this.stats.confChangesProposed++;
    this.log?.(`${this.clock.nowMs()} ms: ${leader.id} proposes ${["AddVoter", "AddLearner", "Remove"][cc.type]} ${cc.node}`);
    this.processReady(leader);
  }

  private requestTransfer(): void {
    const leader = this.leader();
    if (leader === null) return;
    const node = leader.node!;
    const voters = node.status().confState.voters.filter((id) => id !== leader.id);
    if (voters.length === 0) return;
    const target = voters[this.faultRng.int(voters.length)]!;
    node.transferLeader(target);
    this.stats.transfersRequested++;
    this.log?.(`${this.clock.nowMs()} ms: ${leader.id} asked to transfer leadership to ${target}`);
    this.processReady(leader);
  }

  // ---- Liveness -----------------------------------------------------------------------------------

  /**
   * Ends the safety phase: no more faults, the network healed and lossless, members removed from
   * the latest membership stopped, and every crashed member restarted except `livenessDownCount`
   * voters kept down; a member stays down only if the rest is a majority of every voter set seen.
   * Each client finishes its operation and runs `clientOps` more.
   */
  enterLiveness(clientOps: number): NodeId[] {
    this.phase = "liveness";
    if (this.nemesisTimer !== null) this.clock.cancel(this.nemesisTimer);
    this.nemesisTimer = null;
    this.network.stopFaults();
    this.network.heal();
    this.network.setOptions({
      ...this.options.network,
      lossRatio: { numerator: 0, denominator: 1 },
      partitionMode: "none",
      clogRatio: { numerator: 0, denominator: 1 },
    });
    for (const m of this.members) {
      if (m.restartTimer !== null) this.clock.cancel(m.restartTimer);
      m.restartTimer = null;
    }
    const latest = this.latestConfState();
    const inConfig = new Set([...latest.voters, ...latest.learners]);
    // Members stay down only while every voter set some member may still be using keeps a strict
    // majority up: first members removed from the latest membership (stopped, as a removed member
    // stops itself), then up to `livenessDownCount` random voters.
    const down = new Set<NodeId>();
    const mayGoDown = (id: NodeId): boolean => [...this.voterSets.values()].every((voters) => {
      const upCount = voters.filter((v) => v !== id && !down.has(v)).length;
      return upCount * 2 > voters.length;
    });
    for (const m of this.members) {
      if (this.everRemoved.has(m.id) && !inConfig.has(m.id) && mayGoDown(m.id)) down.add(m.id);
    }
    const candidates = [...latest.voters];
    for (let i = candidates.length - 1; i > 0; i--) {
      const j = this.faultRng.int(i + 1);
      const t = candidates[i]!;
      candidates[i] = candidates[j]!;
      candidates[j] = t;
    }
    const keptDown: NodeId[] = [];
    for (const id of candidates) {
      if (keptDown.length >= this.options.livenessDownCount) break;
      if (!mayGoDown(id)) continue;
      down.add(id);
      keptDown.push(id);
    }
    for (const m of this.members) {
      if (down.has(m.id)) this.crash(m);
      else if (!m.up) this.restart(m);
    }
    for (const c of this.clients) c.enterLiveness(clientOps);
    this.log?.(`${this.clock.nowMs()} ms: liveness phase, voters [${latest.voters.join(",")}], down [${[...down].join(",")}]`);
    return keptDown;
  }

  /** The membership in force on the up member that applied the most. */
  latestConfState(): ConfState {
    let best: SimMember | null = null;
    for (const m of this.members) {
      if (m.up && (best === null || m.kv!.appliedIndex > best.kv!.appliedIndex)) best = m;
    }
    if (best === null) {
      return { voters: this.members.filter((m) => m.founder).map((m) => m.id), learners: [] };
    }
    return best.node!.status().confState;
  }

  /**
   * The history with its indeterminate operations resolved by what the replicated log shows
   * (etcd's patch_history): an abandoned request that some member applied took effect by the time
   * it was first applied, with the result the state machine computed; one that no member applied by
   * the end of the run never took effect before any observation, so it is left out.
   * `operations` must be `history.operations()` (operation i has handle id i).
   */
  patchHistory(operations: readonly Operation<KvInput, KvOutput>[]): Operation<KvInput, KvOutput>[] {
    const requests = new Map<number, { readonly session: string; readonly requestId: number }>();
    for (const c of this.clients) for (const [id, r] of c.requests) requests.set(id, r);
    if (requests.size !== operations.length) throw new SimDriverError(`history has ${operations.length} operations, clients invoked ${requests.size}`);
    const patched: Operation<KvInput, KvOutput>[] = [];
    for (const [i, op] of operations.entries()) {
      if (op.return !== Infinity) {
        patched.push(op);
        continue;
      }
      const r = requests.get(i);
      if (r === undefined) throw new SimDriverError(`no request recorded for operation ${i}`);
      const applied = this.firstApplied.get(`${r.session}#${r.requestId}`);
      if (applied === undefined) continue;
      if (applied.atMs < op.call) throw new SimInvariantError("history", `request ${r.session}#${r.requestId} applied at ${applied.atMs} ms, before its call at ${op.call} ms`);
      patched.push({ ...op, output: applied.output, return: applied.atMs });
    }
    return patched;
  }

  /**
   * Null when the cluster converged: a leader, every up member of its membership has applied
   * everything ever committed, and every client is done. Otherwise why not.
   */
  convergence(): string | null {
    const leader = this.leader();
    if (leader === null) return "no leader";
    const status = leader.node!.status();
    if (status.commit < this.checker.committedIndex) return `leader ${leader.id} commit ${status.commit} below the committed ${this.checker.committedIndex}`;
    const members = [...status.confState.voters, ...status.confState.learners];
    for (const id of members) {
      const m = this.member(id);
      if (!m.up) continue;
      if (m.kv!.appliedIndex < status.commit) return `${id} applied ${m.kv!.appliedIndex} of ${status.commit}`;
    }
    for (const c of this.clients) if (!c.done) return `client ${c.name} not done`;
    return null;
  }
}
