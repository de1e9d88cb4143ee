/**
 * A deterministic simulator of the cluster's high availability at scale: hosts that renew their
 * leases through the leader, run exactly the VMs they own at their epoch while their lease is live and
 * fence themselves `fenceMarginMs` before it ends; manager members that replicate the `ClusterState`
 * with the real Raft of `@hyperfleet/raft`, and a leader that takes its HA decisions with the
 * `LeaderController` (the code fleetd runs).
 *
 * Model. Simulated time (an event heap), one seeded PRNG (`SeededRng` of `@hyperfleet/raft`).
 *
 * Managers. `managers` members (3 by default), each a `RawNode` over its own `SimLogStorage` (its
 * disk: it survives a crash, everything persisted before it is sent) and its own `ClusterState`, to
 * which it applies its committed entries in index order (`apply` for a command, `skip` for the empty
 * entry of a new leader). Raft ticks every `raftTickMs`; Raft messages between members are delayed,
 * lost and cut by partitions like every other message. The log starts with the cluster as it was
 * built (hosts registered, VMs created) committed at term 1, so the run begins with an election. The
 * member that Raft elects runs a fresh `LeaderController` over its own state (its memory starts
 * empty), proposes commands and acts on their results once they are applied; it takes its next HA
 * decisions only once its previous ones are applied. Leader changes come from real elections: the
 * faults crash members (they lose their `ClusterState` and their in-flight proposals, restart later
 * from their log) and cut them off the network.
 *
 * Hosts send their requests (renew, report, transfer) to the member they believe leads. A member
 * that does not lead answers with a redirect naming the leader it knows (the host sends the request
 * there, a few hops at most); a request without an answer within `requestTimeoutMs` makes the host
 * try the next member. A host knows its lease and its VMs only from the views the leader sends back
 * (each view carries the leader's applied index; an older view never replaces a newer one). Every
 * host keeps run records (VM, epoch, start, end); a run ends when the host stops it, at its fence
 * deadline (whichever comes first), or when the host crashes.
 *
 * Checked during the run and at the end: no VM ran on two hosts at overlapping times (from the run
 * records), at most one leader per Raft term, `checkInvariants` of every member's state, drained
 * nodes own nothing; replicas agree (every `replicaCheckEveryIndexes` indexes each member's snapshot
 * is compared with the first one taken at that index, a member replaying its log after a restart
 * included; at the end each member's snapshot is compared with a replay of the longest log up to its
 * applied index); after the faults heal, every accepted VM must settle to running on its owner (or
 * pending with a reason) within a time budget.
 */
import { EntryType, NONE, ProposalDroppedError, RawNode, Role, SeededRng, sim } from "@hyperfleet/raft";
import type { Entry, Message, Ready } from "@hyperfleet/raft";
import { encodeCommand } from "../commands.js";
import type { ClusterCommand } from "../commands.js";
import { LeaderController } from "../controller.js";
import { ClusterState } from "../state.js";
import type { ClusterResult } from "../state.js";
import type { VmDesiredState, VmPriority } from "../types.js";
import { SimLogStorage } from "./log-storage.js";

const GiB = 2 ** 30;
const MiB = 2 ** 20;
/** Events fired per simulated second, at most (a runaway guard). */
const EVENTS_PER_SECOND_MAX = 2_000_000;
/** Run records kept, at most. */
const RUNS_MAX = 1_000_000;
/** Violations kept, at most. */
const VIOLATIONS_MAX = 20;
/** Ready rounds handled in a row for one member, at most. */
const READY_ROUNDS_MAX = 1000;
/** Proposals a leader waits on, at most (further requests are dropped). */
const PENDING_PROPOSALS_MAX = 50_000;
/** Redirects a request follows, at most. */
const REDIRECT_HOPS_MAX = 2;
/** Attempts of an operator command (drain, resume) that finds no leader, at most, a second apart. */
const OPERATOR_ATTEMPTS_MAX = 120;
/** The bytes before a command in an entry: proposer member, its life, its proposal number (u32 each). */
const ENTRY_HEADER_BYTES = 12;
/** The proposer field of the entries the log starts with. */
const BOOTSTRAP_PROPOSER = 0xffffffff;

export interface ClusterSimOptions {
  readonly seed: number;
  readonly hosts: number;
  readonly vms: number;
  /** Manager members, each a Raft voter with its own replica of the state (1..7). */
  readonly managers: number;
  readonly leaseMs: number;
  /** A host stops its VMs this long before its lease ends (negative: a broken host that runs past it). */
  readonly fenceMarginMs: number;
  readonly failoverMarginMs: number;
  /** Each host's and each member's clock is off by at most this much. */
  readonly clockSkewMsMax: number;
  readonly hostTickMs: number;
  readonly leaderTickMs: number;
  /** One Raft tick. */
  readonly raftTickMs: number;
  /** Raft ticks without a leader before a member campaigns (randomized up to twice that). */
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  /** A host that got no answer from the member it believes leads for this long tries the next one. */
  readonly requestTimeoutMs: number;
  /** Length of the faulty phase. */
  readonly faultMs: number;
  /** After the faults heal, the cluster must settle within this time. */
  readonly settleMsMax: number;
  /** How often the invariants are checked. */
  readonly checkEveryMs: number;
  /** Every this many log indexes, each member's snapshot is compared with the first one taken there. */
  readonly replicaCheckEveryIndexes: number;
  readonly rebalanceIntervalMs: number;
  /** A migration in flight for longer than this is aborted by the leader (its order or transfer was lost). */
  readonly migrationTimeoutMs: number;
  /** Fault counts, at most (the seed picks how many). */
  readonly crashesMax: number;
  readonly partitionsMax: number;
  readonly drainsMax: number;
  /** Manager member crashes (most of them hit the member leading at the time) and partitions, at most. */
  readonly managerCrashesMax: number;
  readonly managerPartitionsMax: number;
  /** A forced fault: the member leading at this time crashes (for `leaderCrashDownMs`); null: none. */
  readonly leaderCrashAtMs: number | null;
  readonly leaderCrashDownMs: number;
  /** Message loss in the faulty phase, at most this many per thousand. */
  readonly lossPerMilleMax: number;
  readonly delayMsMax: number;
  /** Receives a line per notable event (for --verbose). */
  readonly log?: (line: string) => void;
}

export const CLUSTER_SIM_DEFAULTS: Omit<ClusterSimOptions, "seed"> = Object.freeze({
  hosts: 100,
  vms: 5000,
  managers: 3,
  leaseMs: 10_000,
  fenceMarginMs: 2000,
  failoverMarginMs: 1000,
  clockSkewMsMax: 200,
  hostTickMs: 200,
  leaderTickMs: 250,
  raftTickMs: 100,
  electionTicks: 10,
  heartbeatTicks: 1,
  requestTimeoutMs: 1000,
  faultMs: 60_000,
  settleMsMax: 90_000,
  checkEveryMs: 2000,
  replicaCheckEveryIndexes: 5000,
  rebalanceIntervalMs: 5000,
  migrationTimeoutMs: 20_000,
  crashesMax: 8,
  partitionsMax: 8,
  drainsMax: 4,
  managerCrashesMax: 3,
  managerPartitionsMax: 3,
  leaderCrashAtMs: null,
  leaderCrashDownMs: 8000,
  lossPerMilleMax: 50,
  delayMsMax: 80,
});

export interface RunRecord {
  readonly vm: string;
  readonly host: string;
  readonly epoch: number;
  readonly startMs: number;
  /** Simulated (true) time; null while it runs. */
  endMs: number | null;
  /** Where the host's fence stops it (true time), moved on as its lease is renewed. */
  fenceAtMs: number;
  endReason: "stop" | "fence" | "crash" | null;
}

export interface ClusterSimStats {
  crashes: number;
  partitions: number;
  drains: number;
  resumes: number;
  /** Manager members crashed and cut off. */
  managerCrashes: number;
  managerPartitions: number;
  /** Times a member became the Raft leader (the first election included). */
  leaderElections: number;
  /** The highest Raft term reached. */
  raftTermMax: number;
  raftMessages: number;
  raftMessagesLost: number;
  messagesSent: number;
  messagesLost: number;
  /** Host requests answered with a redirect, and hosts that gave up waiting on a member. */
  redirects: number;
  requestTimeouts: number;
  /** Proposals refused by Raft (no leader known, a transfer) or lost with a leadership. */
  proposalsDropped: number;
  proposalsLost: number;
  commands: number;
  rejections: number;
  /** Comparisons of two members' snapshots at the same applied index. */
  replicaChecks: number;
  nodesFailed: number;
  failovers: number;
  pendingAfterFailover: number;
  drainMoves: number;
  drainedNodes: number;
  rebalanceMoves: number;
  migrationsCommitted: number;
  migrationsAborted: number;
  runs: number;
  invariantChecks: number;
  settledAtMs: number | null;
  pendingVmsAtEnd: number;
  eventsFired: number;
}

export type ClusterSimFailureKind = "double-run" | "state-invariant" | "drained-owns" | "not-settled" | "replica-diverged" | "two-leaders" | "crash";

export interface ClusterSimResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly violations: readonly { readonly kind: ClusterSimFailureKind; readonly atMs: number; readonly message: string }[];
  readonly stats: ClusterSimStats;
  /** FNV-1a of the event trace: the same seed and options give the same hash. */
  readonly traceHash: string;
  readonly simulatedMs: number;
  readonly options: Omit<ClusterSimOptions, "log">;
  /** The command line that replays this run. */
  readonly replay: string;
}

interface HostView {
  readonly index: number;
  readonly leaseUntilMs: number;
  readonly failed: boolean;
  /** VMs the host owns: epoch, desired state, the id of a migration in flight (or null). */
  readonly vms: ReadonlyMap<string, ViewVm>;
}

/** A VM as its owner sees it in a view. */
interface ViewVm {
  readonly epoch: number;
  readonly desired: VmDesiredState;
  /** The migration in flight, or null. */
  readonly migrationId: number | null;
  /** Whether the state says it runs (reported "running" at this epoch). */
  readonly reportedRunning: boolean;
}

interface Host {
  readonly id: string;
  up: boolean;
  /** Bumped by each crash: messages and timers of an earlier life are ignored. */
  life: number;
  clockOffsetMs: number;
  partitioned: boolean;
  view: HostView | null;
  lastRenewMs: number;
  /** The member the host believes leads (an index into the members). */
  leaderGuess: number;
  /** When the host sent its oldest request not answered since (null: nothing outstanding). */
  unansweredSinceMs: number | null;
  readonly runs: Map<string, RunRecord>;
  /** VMs whose "starting" report is in flight: epoch and when it was sent. */
  readonly starting: Map<string, { epoch: number; sentMs: number }>;
  /** VMs this host is sending away: the migration, and whether its transfer was sent. */
  readonly outgoing: Map<string, { epoch: number; migrationId: number; to: string }>;
  /** When the host last reported each running VM as running (a lost report is sent again). */
  readonly reportedMs: Map<string, number>;
}

/** A member's copy of the state, with the owner index the simulator reads. */
class Replica {
  readonly state = new ClusterState();
  /** Owner → VMs it owns (kept in step with the state after every command). */
  readonly ownedBy = new Map<string, Set<string>>();
  private readonly ownerOf = new Map<string, string>();

  apply(index: number, command: Uint8Array): ClusterResult {
    const result = this.state.apply(index, command);
    if (result.ok && "vm" in result) this.reindex(result.vm);
    return result;
  }

  private reindex(vm: string): void {
    const before = this.ownerOf.get(vm);
    const after = this.state.getVm(vm)?.owner ?? undefined;
    if (before === after) return;
    if (before !== undefined) this.ownedBy.get(before)?.delete(vm);
    if (after === undefined) {
      this.ownerOf.delete(vm);
      return;
    }
    this.ownerOf.set(vm, after);
    let set = this.ownedBy.get(after);
    if (set === undefined) this.ownedBy.set(after, (set = new Set()));
    set.add(vm);
  }
}

/** A manager member: a Raft voter with its storage (kept across crashes) and its replica (lost in one). */
interface Member {
  readonly id: string;
  readonly index: number;
  readonly storage: SimLogStorage;
  readonly rng: SeededRng;
  up: boolean;
  /** Bumped by each crash: proposals and timers of an earlier life are ignored. */
  life: number;
  partitioned: boolean;
  clockOffsetMs: number;
  node: RawNode | null;
  replica: Replica;
  role: Role;
  /** The leader this member knows (NONE when none). */
  lead: string;
  /** The member's Raft term, as last persisted. */
  term: number;
  controller: LeaderController | null;
  leaderSinceMs: number | null;
  /** Migrations this leader ordered: by VM, the purpose. */
  readonly ordered: Map<string, "drain" | "rebalance">;
  /** Proposals of this life awaiting their result, by proposal number. */
  readonly pending: Map<number, ((result: ClusterResult) => void) | null>;
  /** Of those, proposals the controller made (it decides again once they are all applied). */
  controllerPending: number;
  proposalSeq: number;
  flushScheduled: boolean;
}

type LeaderRequest =
  | { readonly kind: "renew"; readonly host: string; readonly untilMs: number }
  | { readonly kind: "report"; readonly host: string; readonly vm: string; readonly epoch: number; readonly actual: "starting" | "running" }
  | { readonly kind: "transfer"; readonly host: string; readonly vm: string; readonly to: string; readonly epoch: number; readonly migrationId: number };

type HostMessage =
  | { readonly kind: "view"; readonly view: HostView; readonly reply: ClusterResult | null; readonly about: LeaderRequest | null }
  | { readonly kind: "migrate"; readonly vm: string; readonly epoch: number; readonly migrationId: number; readonly to: string }
  | { readonly kind: "redirect"; readonly leader: number | null; readonly about: LeaderRequest; readonly hops: number };

/** FNV-1a, 32 bits, folded over strings. */
class TraceHash {
  private h = 0x811c9dc5;
  add(text: string): void {
    let h = this.h;
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    this.h = h >>> 0;
  }
  hex(): string {
    return this.h.toString(16).padStart(8, "0");
  }
}

export class ClusterSimError extends Error {
  override readonly name = "ClusterSimError";
}

function hostId(i: number): string {
  return `h${String(i).padStart(3, "0")}`;
}

function vmId(i: number): string {
  return `vm${String(i).padStart(5, "0")}`;
}

/**
 * Finds runs of one VM on two hosts (or twice on one) at overlapping times: [startMs, end) with end the
 * run's end, or for a run still going min(`nowMs`, its fence deadline). Pure; at most `max` messages.
 */
export function findDoubleRuns(records: readonly RunRecord[], nowMs: number, max = VIOLATIONS_MAX): string[] {
  const byVm = new Map<string, RunRecord[]>();
  for (const r of records) {
    let list = byVm.get(r.vm);
    if (list === undefined) byVm.set(r.vm, (list = []));
    list.push(r);
  }
  const out: string[] = [];
  for (const [vm, list] of byVm) {
    if (list.length < 2) continue;
    list.sort((a, b) => a.startMs - b.startMs);
    let last: RunRecord | null = null;
    let lastEnd = -Infinity;
    for (const r of list) {
      const end = r.endMs ?? Math.min(nowMs, r.fenceAtMs);
      if (last !== null && r.startMs < lastEnd && end > r.startMs) {
        out.push(`vm ${vm} ran on ${last.host} (epoch ${last.epoch}, ${last.startMs}..${lastEnd} ms) and on ${r.host} (epoch ${r.epoch}, from ${r.startMs} ms) at once`);
        if (out.length >= max) return out;
      }
      if (end > lastEnd) {
        lastEnd = end;
        last = r;
      }
    }
  }
  return out;
}

/** A uniform integer in [lo, hi]. */
function between(rng: SeededRng, lo: number, hi: number): number {
  return lo + rng.int(hi - lo + 1);
}

function pick<T>(rng: SeededRng, items: readonly T[]): T {
  return items[rng.int(items.length)]!;
}

function memberId(i: number): string {
  return `m${i + 1}`;
}

/** The bytes of an entry: the proposer's header, then the encoded command. */
function entryData(proposer: number, life: number, seq: number, command: Uint8Array): Uint8Array {
  const data = new Uint8Array(ENTRY_HEADER_BYTES + command.length);
  const view = new DataView(data.buffer);
  view.setUint32(0, proposer);
  view.setUint32(4, life);
  view.setUint32(8, seq);
  data.set(command, ENTRY_HEADER_BYTES);
  return data;
}

/** FNV-1a of bytes (to compare snapshots without keeping them). */
function bytesHash(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Applies one committed entry to a replica: its command, or a skip for an entry without one. */
function applyEntry(replica: Replica, entry: Entry): ClusterResult | null {
  if (entry.type !== EntryType.Normal || entry.data.length === 0) {
    replica.state.skip(entry.index);
    return null;
  }
  if (entry.data.length < ENTRY_HEADER_BYTES) throw new ClusterSimError(`entry ${entry.index} is ${entry.data.length} bytes, shorter than its header`);
  return replica.apply(entry.index, entry.data.subarray(ENTRY_HEADER_BYTES));
}

/** The cluster simulator: build it with options, `run()` once. */
export class ClusterSim {
  readonly options: ClusterSimOptions;
  private readonly rng: SeededRng;
  /** Simulated time and every pending event (the Raft simulator's clock). */
  private readonly q = new sim.SimClock(2_000_000);
  private readonly trace = new TraceHash();
  private readonly members: Member[] = [];
  private readonly hosts = new Map<string, Host>();
  private readonly records: RunRecord[] = [];
  private readonly violations: { kind: ClusterSimFailureKind; atMs: number; message: string }[] = [];
  private readonly stats: ClusterSimStats = {
    crashes: 0, partitions: 0, drains: 0, resumes: 0, managerCrashes: 0, managerPartitions: 0, leaderElections: 0, raftTermMax: 0, raftMessages: 0,
    raftMessagesLost: 0, messagesSent: 0, messagesLost: 0, redirects: 0, requestTimeouts: 0, proposalsDropped: 0, proposalsLost: 0, commands: 0,
    rejections: 0, replicaChecks: 0, nodesFailed: 0, failovers: 0, pendingAfterFailover: 0, drainMoves: 0, drainedNodes: 0, rebalanceMoves: 0,
    migrationsCommitted: 0, migrationsAborted: 0, runs: 0, invariantChecks: 0, settledAtMs: null, pendingVmsAtEnd: 0, eventsFired: 0,
  };
  /** The highest index any member applied (each command is counted and traced once). */
  private appliedMax = 0;
  /** Snapshot hashes at every `replicaCheckEveryIndexes`th index: the first member's, to compare the others' with. */
  private readonly snapshotAt = new Map<number, { readonly member: string; readonly hash: number }>();
  /** The member that led each term (Raft elects at most one per term). */
  private readonly leaderOfTerm = new Map<number, string>();
  private lossPerMille = 0;
  private delayMsMax: number;
  private healed = false;

  constructor(options: Partial<ClusterSimOptions> & { readonly seed: number }) {
    this.options = { ...CLUSTER_SIM_DEFAULTS, ...options };
    const o = this.options;
    if (!Number.isSafeInteger(o.hosts) || o.hosts < 2 || o.hosts > 1000) throw new ClusterSimError(`hosts must be in 2..1000, got ${o.hosts}`);
    if (!Number.isSafeInteger(o.vms) || o.vms < 0 || o.vms > 100_000) throw new ClusterSimError(`vms must be in 0..100000, got ${o.vms}`);
    if (!Number.isSafeInteger(o.managers) || o.managers < 1 || o.managers > 7) throw new ClusterSimError(`managers must be in 1..7, got ${o.managers}`);
    if (!Number.isSafeInteger(o.replicaCheckEveryIndexes) || o.replicaCheckEveryIndexes < 1) {
      throw new ClusterSimError(`replicaCheckEveryIndexes must be a positive integer, got ${o.replicaCheckEveryIndexes}`);
    }
    if (!Number.isSafeInteger(o.raftTickMs) || o.raftTickMs < 1) throw new ClusterSimError(`raftTickMs must be a positive integer, got ${o.raftTickMs}`);
    this.rng = new SeededRng(o.seed);
    this.delayMsMax = o.delayMsMax;
  }

  private newController(): LeaderController {
    const o = this.options;
    return new LeaderController({ leaseMs: o.leaseMs, failoverMarginMs: o.failoverMarginMs, rebalanceIntervalMs: o.rebalanceIntervalMs, rebalanceThresholdPercent: 20 });
  }

  private note(line: string): void {
    this.trace.add(line);
    this.options.log?.(`${String(this.q.nowMs()).padStart(7)} ms  ${line}`);
  }

  private violation(kind: ClusterSimFailureKind, message: string): void {
    if (this.violations.length < VIOLATIONS_MAX) this.violations.push({ kind, atMs: this.q.nowMs(), message });
    this.note(`VIOLATION ${kind}: ${message}`);
  }

  private memberNow(m: Member): number {
    return this.q.nowMs() + m.clockOffsetMs;
  }

  private isLeader(m: Member): boolean {
    return m.up && m.node !== null && m.role === Role.Leader;
  }

  /** The member that leads and can reach the others (highest term first), or null. */
  private leader(): Member | null {
    let best: Member | null = null;
    for (const m of this.members) {
      if (!this.isLeader(m) || m.partitioned) continue;
      if (best === null || m.term > best.term) best = m;
    }
    return best;
  }

  // ---- the managers: Raft members ----

  private startMember(m: Member): void {
    const o = this.options;
    m.up = true;
    m.replica = new Replica();
    m.role = Role.Follower;
    m.lead = NONE;
    m.term = m.storage.initialState().hardState.term;
    m.node = new RawNode({
      id: m.id, storage: m.storage, rng: m.rng.fork(), electionTicks: o.electionTicks, heartbeatTicks: o.heartbeatTicks, applied: 0,
    });
    this.processReady(m);
  }

  private scheduleFlush(m: Member): void {
    if (m.flushScheduled) return;
    m.flushScheduled = true;
    const life = m.life;
    this.q.setTimer(0, () => {
      m.flushScheduled = false;
      if (m.up && m.life === life) this.processReady(m);
    });
  }

  private processReady(m: Member): void {
    const node = m.node;
    if (node === null) return;
    for (let round = 0; node.hasReady(); round++) {
      if (round >= READY_ROUNDS_MAX) throw new ClusterSimError(`${m.id}: still has a Ready after ${READY_ROUNDS_MAX} rounds`);
      this.handleReady(m, node, node.ready());
      if (m.node !== node) return;
    }
  }

  /** Persist, send, apply, advance (the contract of `Ready`); results go to their proposers after. */
  private handleReady(m: Member, node: RawNode, rd: Ready): void {
    if (rd.snapshot !== null) throw new ClusterSimError(`${m.id}: a snapshot arrived, but no member compacts its log`);
    m.storage.append(rd.entries);
    if (rd.hardState !== null) {
      m.storage.setHardState(rd.hardState);
      m.term = rd.hardState.term;
      if (rd.hardState.term > this.stats.raftTermMax) this.stats.raftTermMax = rd.hardState.term;
    }
    if (rd.softState !== null) {
      const wasLeader = m.role === Role.Leader;
      m.role = rd.softState.role;
      m.lead = rd.softState.lead;
      if (!wasLeader && m.role === Role.Leader) this.becameLeader(m);
      if (wasLeader && m.role !== Role.Leader) this.lostLeadership(m, "stepped down");
    }
    for (const msg of rd.messages) this.sendRaft(m, msg);
    const results: { readonly done: (result: ClusterResult) => void; readonly result: ClusterResult }[] = [];
    for (const entry of rd.committedEntries) {
      const replica = m.replica;
      if (entry.index !== replica.state.appliedIndex + 1) throw new ClusterSimError(`${m.id}: entry ${entry.index} committed after ${replica.state.appliedIndex}`);
      const result = applyEntry(replica, entry);
      if (entry.index > this.appliedMax) {
        this.appliedMax = entry.index;
        if (result !== null) {
          this.stats.commands++;
          if (!result.ok) this.stats.rejections++;
          this.trace.add(result.ok ? `${entry.index} ${result.type} ${"vm" in result ? result.vm : result.node} ok` : `${entry.index} ${result.command} ${result.code}`);
        }
      }
      if (result !== null) {
        const view = new DataView(entry.data.buffer, entry.data.byteOffset, ENTRY_HEADER_BYTES);
        if (view.getUint32(0) === m.index && view.getUint32(4) === m.life) {
          const seq = view.getUint32(8);
          const done = m.pending.get(seq);
          if (m.pending.delete(seq) && done !== undefined && done !== null) results.push({ done, result });
        }
      }
      if (entry.index % this.options.replicaCheckEveryIndexes === 0) this.compareReplica(m, entry.index);
    }
    node.advance(rd);
    for (const { done, result } of results) done(result);
  }

  private compareReplica(m: Member, index: number): void {
    const hash = bytesHash(m.replica.state.snapshot());
    const first = this.snapshotAt.get(index);
    if (first === undefined) {
      this.snapshotAt.set(index, { member: m.id, hash });
      return;
    }
    this.stats.replicaChecks++;
    if (first.hash !== hash) this.violation("replica-diverged", `${m.id} and ${first.member} hold different states at index ${index}`);
  }

  private becameLeader(m: Member): void {
    this.stats.leaderElections++;
    const other = this.leaderOfTerm.get(m.term);
    if (other !== undefined && other !== m.id) this.violation("two-leaders", `${m.id} and ${other} both led term ${m.term}`);
    this.leaderOfTerm.set(m.term, m.id);
    m.controller = this.newController();
    m.leaderSinceMs = this.memberNow(m);
    m.ordered.clear();
    m.controllerPending = 0;
    this.note(`${m.id} leads term ${m.term}`);
  }

  /** A leader that stepped down or crashed: its controller memory and the results it waited on are gone. */
  private lostLeadership(m: Member, why: string): void {
    if (m.controller === null) return;
    this.stats.proposalsLost += m.pending.size;
    m.pending.clear();
    m.controllerPending = 0;
    m.controller = null;
    m.leaderSinceMs = null;
    m.ordered.clear();
    this.note(`${m.id} no longer leads: ${why}`);
  }

  private sendRaft(from: Member, msg: Message): void {
    this.stats.raftMessages++;
    if (from.partitioned) return;
    if (this.lossPerMille > 0 && this.rng.chance(this.lossPerMille, 1000)) {
      this.stats.raftMessagesLost++;
      return;
    }
    const to = this.members[Number(msg.to.slice(1)) - 1];
    if (to === undefined) throw new ClusterSimError(`${from.id} sent a message to the unknown member ${msg.to}`);
    this.q.setTimer(this.delay(), () => {
      if (!to.up || to.node === null || to.partitioned || from.partitioned) return;
      to.node.step(msg);
      this.scheduleFlush(to);
    });
  }

  private raftTicker(): void {
    for (const m of this.members) {
      if (!m.up || m.node === null) continue;
      m.node.tick();
      this.processReady(m);
    }
    this.q.setTimer(this.options.raftTickMs, () => this.raftTicker());
  }

  /**
   * Proposes `command` at leader `m`; `done` gets its result once `m` applied it (never if `m` loses
   * the leadership first). False when `m` cannot propose (not leading, or Raft dropped it).
   */
  private propose(m: Member, command: ClusterCommand, done: ((result: ClusterResult) => void) | null, byController = false): boolean {
    if (!this.isLeader(m) || m.pending.size >= PENDING_PROPOSALS_MAX) return false;
    const seq = ++m.proposalSeq;
    try {
      m.node!.propose(entryData(m.index, m.life, seq, encodeCommand(command)));
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
      this.stats.proposalsDropped++;
      return false;
    }
    if (byController) {
      m.controllerPending++;
      m.pending.set(seq, (result) => {
        m.controllerPending--;
        done?.(result);
      });
    } else if (done !== null) {
      m.pending.set(seq, done);
    }
    this.scheduleFlush(m);
    return true;
  }

  private viewOf(m: Member, host: string): HostView {
    const state = m.replica.state;
    const node = state.getNode(host);
    const vms = new Map<string, ViewVm>();
    for (const id of m.replica.ownedBy.get(host) ?? []) {
      const vm = state.getVm(id)!;
      vms.set(id, {
        epoch: vm.epoch, desired: vm.desiredState, migrationId: state.getMigration(id)?.migrationId ?? null,
        reportedRunning: vm.actual !== null && vm.actual.epoch === vm.epoch && vm.actual.state === "running",
      });
    }
    return { index: state.appliedIndex, leaseUntilMs: node?.leaseUntilMs ?? 0, failed: node?.state === "failed", vms };
  }

  private sendView(m: Member, host: string): void {
    const h = this.hosts.get(host);
    if (h !== undefined) this.toHost(m, h, { kind: "view", view: this.viewOf(m, host), reply: null, about: null });
  }

  // ---- the network between hosts and members ----

  private delay(): number {
    return 1 + this.rng.int(this.delayMsMax);
  }

  private lost(): boolean {
    this.stats.messagesSent++;
    if (this.lossPerMille > 0 && this.rng.chance(this.lossPerMille, 1000)) {
      this.stats.messagesLost++;
      return true;
    }
    return false;
  }

  /** Sends a request to the member `from` believes leads. */
  private toLeader(from: Host, request: LeaderRequest, hops = 0): void {
    from.unansweredSinceMs ??= this.q.nowMs();
    const m = this.members[from.leaderGuess]!;
    if (from.partitioned || this.lost()) return;
    const life = from.life;
    this.q.setTimer(this.delay(), () => {
      if (!m.up || m.partitioned || from.partitioned) return;
      this.handleRequest(m, request, from, life, hops);
    });
  }

  private toHost(m: Member, host: Host, message: HostMessage): void {
    if (m.partitioned || host.partitioned || this.lost()) return;
    const life = host.life;
    this.q.setTimer(this.delay(), () => {
      if (!host.up || host.life !== life || host.partitioned || m.partitioned) return;
      host.unansweredSinceMs = null;
      this.handleHostMessage(host, message);
    });
  }

  // ---- the leader ----

  private redirect(m: Member, request: LeaderRequest, from: Host, life: number, hops: number): void {
    this.stats.redirects++;
    const lead = m.lead === NONE || m.lead === m.id ? null : Number(m.lead.slice(1)) - 1;
    if (from.life === life) this.toHost(m, from, { kind: "redirect", leader: lead, about: request, hops });
  }

  private handleRequest(m: Member, request: LeaderRequest, from: Host, life: number, hops: number): void {
    if (!this.isLeader(m)) {
      this.redirect(m, request, from, life, hops);
      return;
    }
    const now = this.memberNow(m);
    const answer = (reply: ClusterResult): void => {
      if (from.life === life) this.toHost(m, from, { kind: "view", view: this.viewOf(m, from.id), reply, about: request });
    };
    let proposed: boolean;
    switch (request.kind) {
      case "renew":
        proposed = this.propose(m, { type: "renewLease", atMs: now, node: request.host, untilMs: request.untilMs }, (reply) => {
          const node = m.replica.state.getNode(request.host);
          const atMs = this.memberNow(m);
          if (reply.ok && node !== null && node.state === "failed" && node.leaseUntilMs > atMs) {
            const again = this.propose(m, { type: "setNodeState", atMs, node: request.host, state: "active" }, (r) => {
              if (r.ok) this.note(`node ${request.host} is active again`);
              answer(reply);
            });
            if (again) return;
          }
          answer(reply);
        });
        break;
      case "report":
        proposed = this.propose(m, { type: "reportActual", atMs: now, vm: request.vm, node: request.host, epoch: request.epoch, actual: request.actual }, answer);
        break;
      case "transfer":
        proposed = this.propose(m, {
          type: "transfer", atMs: now, vm: request.vm, from: request.host, to: request.to, epoch: request.epoch, migrationId: request.migrationId,
        }, (reply) => {
          const purpose = m.ordered.get(request.vm);
          if (reply.ok) {
            this.stats.migrationsCommitted++;
            this.note(`migration of ${request.vm} ${request.host} -> ${request.to} committed`);
            if (purpose === "drain") m.controller?.drainDone(request.vm);
            this.sendView(m, request.to);
            m.ordered.delete(request.vm);
            answer(reply);
          } else {
            m.ordered.delete(request.vm);
            this.abortIfInFlight(m, request.vm, request.migrationId, `transfer refused: ${reply.message}`);
            answer(reply);
          }
        });
        break;
    }
    if (!proposed) this.redirect(m, request, from, life, hops);
  }

  private abortIfInFlight(m: Member, vm: string, migrationId: number, reason: string): void {
    const flight = m.replica.state.getMigration(vm);
    if (flight === null || flight.migrationId !== migrationId) return;
    const atMs = this.memberNow(m);
    this.propose(m, { type: "abortMigration", atMs, vm, epoch: flight.epoch, migrationId }, (result) => {
      if (!result.ok) return;
      this.stats.migrationsAborted++;
      this.note(`migration of ${vm} aborted: ${reason}`);
      if (m.ordered.get(vm) === "drain") m.controller?.drainFailed(vm, this.memberNow(m), reason);
      m.ordered.delete(vm);
      this.sendView(m, flight.from);
    }, true);
  }

  /** Begins a live migration and, once that is applied, orders the source to send it. */
  private startLiveMigration(m: Member, vm: string, from: string, to: string, purpose: "drain" | "rebalance"): void {
    const proposed = this.propose(m, { type: "beginMigration", atMs: this.memberNow(m), vm, from, to, kind: "live" }, (begun) => {
      if (!begun.ok || begun.type !== "beginMigration") {
        if (purpose === "drain") m.controller?.drainFailed(vm, this.memberNow(m), begun.ok ? "unexpected result" : begun.message);
        return;
      }
      if (purpose === "rebalance") {
        this.stats.rebalanceMoves++;
        this.note(`rebalance: ${vm} ${from} -> ${to}`);
      }
      m.ordered.set(vm, purpose);
      const source = this.hosts.get(from);
      if (source !== undefined) this.toHost(m, source, { kind: "migrate", vm, epoch: begun.epoch, migrationId: begun.migrationId, to });
    }, true);
    if (!proposed && purpose === "drain") m.controller?.drainFailed(vm, this.memberNow(m), "not proposed");
  }

  private leaderTicker(): void {
    for (const m of this.members) {
      if (this.isLeader(m) && m.controller !== null && m.controllerPending === 0) this.leaderTick(m, m.controller);
    }
    this.q.setTimer(this.options.leaderTickMs, () => this.leaderTicker());
  }

  /** One round of the leader's HA decisions over its own state; results are acted on once applied. */
  private leaderTick(m: Member, c: LeaderController): void {
    const now = this.memberNow(m);
    const state = m.replica.state;
    // Migrations whose order or transfer was lost: the order's answer timed out.
    for (const flight of state.listMigrations()) {
      if (now - flight.startedAtMs > this.options.migrationTimeoutMs) this.abortIfInFlight(m, flight.vm, flight.migrationId, "timed out");
    }
    let drainSteps = 0;
    for (const step of c.drainSteps(state, now)) {
      if (++drainSteps > 10_000) break;
      if (step.kind === "drained") {
        this.propose(m, { type: "setNodeState", atMs: now, node: step.node, state: "drained" }, (result) => {
          if (!result.ok) return;
          this.stats.drainedNodes++;
          this.note(`node ${step.node} is drained`);
        }, true);
      } else if (step.kind === "move") {
        this.stats.drainMoves++;
        if (step.live) {
          this.startLiveMigration(m, step.vm, step.from, step.to, "drain");
          continue;
        }
        const proposed = this.propose(m, { type: "beginMigration", atMs: now, vm: step.vm, from: step.from, to: step.to, kind: "quick" }, (begun) => {
          const atMs = this.memberNow(m);
          if (!begun.ok || begun.type !== "beginMigration") {
            m.controller?.drainFailed(step.vm, atMs, begun.ok ? "unexpected result" : begun.message);
            return;
          }
          this.propose(m, {
            type: "transfer", atMs, vm: step.vm, from: step.from, to: step.to, epoch: begun.epoch, migrationId: begun.migrationId,
          }, (moved) => {
            if (moved.ok) {
              m.controller?.drainDone(step.vm);
              this.sendView(m, step.to);
            } else {
              this.abortIfInFlight(m, step.vm, begun.migrationId, moved.message);
              m.controller?.drainFailed(step.vm, this.memberNow(m), moved.message);
            }
          }, true);
        }, true);
        if (!proposed) c.drainFailed(step.vm, now, "not proposed");
      }
    }
    if (c.failoversAllowed(now, m.leaderSinceMs)) {
      for (const failure of c.nodesToFail(state, now)) {
        this.propose(m, { type: "setNodeState", atMs: now, node: failure.node, state: "failed" }, (result) => {
          if (!result.ok) return;
          this.stats.nodesFailed++;
          this.note(`node ${failure.node} failed: its lease ended ${failure.leaseEndedAgoMs} ms before`);
        }, true);
      }
      const order = c.failoverOrder(state, now);
      const touched = new Set<string>();
      let outstanding = order.length;
      const oneDone = (): void => {
        if (--outstanding > 0) return;
        for (const id of [...touched].sort()) this.sendView(m, id);
      };
      for (const vm of order) {
        const proposed = this.propose(m, { type: "failover", atMs: now, vm: vm.id, epoch: vm.epoch }, (result) => {
          m.controller?.failoverDone(vm, result, now);
          if (result.ok && result.type === "failover") {
            if (vm.owner !== null) this.stats.failovers++;
            if (result.owner === null) {
              if (vm.owner !== null) this.stats.pendingAfterFailover++;
            } else {
              touched.add(result.owner);
            }
          }
          oneDone();
        }, true);
        if (!proposed) {
          c.failoverDone(vm, null, now);
          oneDone();
        }
      }
    }
    const plan = c.planRebalance(state, now);
    if (plan !== null) this.startLiveMigration(m, plan.vm, plan.from, plan.to, "rebalance");
  }

// ---- the hosts ----

  private hostNow(host: Host): number {
    return this.q.nowMs() + host.clockOffsetMs;
  }

  /** True time at which the host's clock reads `hostMs`. */
  private trueTime(host: Host, hostMs: number): number {
    return hostMs - host.clockOffsetMs;
  }

  private leaseLive(host: Host): boolean {
    const v = host.view;
    return v !== null && !v.failed && v.leaseUntilMs - this.options.fenceMarginMs > this.hostNow(host);
  }

  private fenceAt(host: Host): number {
    const v = host.view;
    if (v === null || v.failed) return this.q.nowMs();
    return this.trueTime(host, v.leaseUntilMs - this.options.fenceMarginMs);
  }

  private endRun(host: Host, run: RunRecord, reason: "stop" | "fence" | "crash"): void {
    const now = this.q.nowMs();
    run.endMs = Math.min(now, run.fenceAtMs);
    run.endReason = run.endMs < now ? "fence" : reason;
    host.runs.delete(run.vm);
    host.reportedMs.delete(run.vm);
    this.trace.add(`end ${run.vm} ${host.id} ${run.endMs} ${run.endReason}`);
  }

  private startRun(host: Host, vm: string, epoch: number): void {
    if (this.records.length >= RUNS_MAX) throw new ClusterSimError(`more than ${RUNS_MAX} runs`);
    const run: RunRecord = { vm, host: host.id, epoch, startMs: this.q.nowMs(), endMs: null, fenceAtMs: this.fenceAt(host), endReason: null };
    this.records.push(run);
    host.runs.set(vm, run);
    this.stats.runs++;
    this.trace.add(`start ${vm} ${host.id} ${epoch} ${run.startMs}`);
  }

  private hostTick(host: Host): void {
    if (!host.up) return;
    const now = this.q.nowMs();
    if (host.unansweredSinceMs !== null && now - host.unansweredSinceMs > this.options.requestTimeoutMs) {
      // No answer from the member believed to lead: try the next one, with a renewal at once.
      this.stats.requestTimeouts++;
      host.leaderGuess = (host.leaderGuess + 1) % this.members.length;
      host.unansweredSinceMs = null;
      host.lastRenewMs = -Infinity;
    }
    if (now - host.lastRenewMs >= this.options.leaseMs / 4) {
      host.lastRenewMs = now;
      this.toLeader(host, { kind: "renew", host: host.id, untilMs: this.hostNow(host) + this.options.leaseMs });
    }
    this.converge(host);
  }

  /** Runs exactly the VMs the host owns at their epoch, meant to run, while its lease is live. */
  private converge(host: Host): void {
    const now = this.q.nowMs();
    const view = host.view;
    const live = this.leaseLive(host);
    let ending: RunRecord[] | null = null;
    for (const run of host.runs.values()) {
      const mine = view?.vms.get(run.vm);
      if (now >= run.fenceAtMs || !live || mine === undefined || mine.epoch !== run.epoch || mine.desired !== "running" || host.outgoing.has(run.vm)) {
        (ending ??= []).push(run);
      }
    }
    for (const run of ending ?? []) this.endRun(host, run, now >= run.fenceAtMs ? "fence" : "stop");
    if (view === null || !live) return;
    for (const run of host.runs.values()) {
      const mine = view.vms.get(run.vm);
      if (mine === undefined || mine.reportedRunning || now - (host.reportedMs.get(run.vm) ?? -Infinity) < this.options.leaseMs / 4) continue;
      host.reportedMs.set(run.vm, now);
      this.toLeader(host, { kind: "report", host: host.id, vm: run.vm, epoch: run.epoch, actual: "running" });
    }
    for (const [vm, s] of host.starting) if (now - s.sentMs > 2000) host.starting.delete(vm);
    for (const [vm, mine] of view.vms) {
      if (mine.desired !== "running" || host.runs.has(vm) || host.outgoing.has(vm) || mine.migrationId !== null || host.starting.has(vm)) continue;
      host.starting.set(vm, { epoch: mine.epoch, sentMs: now });
      this.toLeader(host, { kind: "report", host: host.id, vm, epoch: mine.epoch, actual: "starting" });
    }
  }

  private handleHostMessage(host: Host, message: HostMessage): void {
    if (message.kind === "redirect") {
      // The member does not lead: go to the one it names (or the next one) and send the request there.
      const guess = message.leader ?? (host.leaderGuess + 1) % this.members.length;
      host.leaderGuess = guess === host.leaderGuess ? (guess + 1) % this.members.length : guess;
      if (message.hops < REDIRECT_HOPS_MAX) this.toLeader(host, message.about, message.hops + 1);
      return;
    }
    if (message.kind === "migrate") {
      const run = host.runs.get(message.vm);
      if (run === undefined || run.epoch !== message.epoch || host.outgoing.has(message.vm)) return;
      host.outgoing.set(message.vm, { epoch: message.epoch, migrationId: message.migrationId, to: message.to });
      const life = host.life;
      // Pre-copy while it runs, then stop-and-copy and ask for the transfer.
      this.q.setTimer(200 + this.rng.int(1500), () => {
        if (!host.up || host.life !== life) return;
        const out = host.outgoing.get(message.vm);
        if (out === undefined || out.migrationId !== message.migrationId) return;
        const r = host.runs.get(message.vm);
        if (r !== undefined) this.endRun(host, r, "stop");
        this.toLeader(host, { kind: "transfer", host: host.id, vm: message.vm, to: message.to, epoch: message.epoch, migrationId: message.migrationId });
      });
      return;
    }
    const view = message.view;
    if (host.view === null || view.index > host.view.index) {
      host.view = view;
      // The fence follows the lease; a run of a VM no longer owned at its epoch stops below.
      const fenceAt = this.fenceAt(host);
      for (const run of host.runs.values()) if (fenceAt > run.fenceAtMs || view.failed) run.fenceAtMs = view.failed ? Math.min(run.fenceAtMs, this.q.nowMs()) : fenceAt;
      // A migration this host sends ends once a later view shows the VM moved or the migration gone.
      for (const [vm, out] of host.outgoing) {
        if (view.index <= out.migrationId) continue;
        const mine = view.vms.get(vm);
        if (mine === undefined || mine.epoch !== out.epoch || mine.migrationId !== out.migrationId) host.outgoing.delete(vm);
      }
    }
    const about = message.about;
    if (about !== null && about.kind === "report" && about.actual === "starting") {
      const s = host.starting.get(about.vm);
      if (s === undefined || s.epoch !== about.epoch) return;
      host.starting.delete(about.vm);
      const mine = host.view?.vms.get(about.vm);
      const reply = message.reply;
      if (reply === null || !reply.ok || mine === undefined || mine.epoch !== about.epoch || mine.desired !== "running" || mine.migrationId !== null) return;
      if (!this.leaseLive(host) || host.runs.has(about.vm) || host.outgoing.has(about.vm)) return;
      // The "starting" report committed at this epoch: the VM may run here now.
      this.startRun(host, about.vm, about.epoch);
      host.reportedMs.set(about.vm, this.q.nowMs());
      this.toLeader(host, { kind: "report", host: host.id, vm: about.vm, epoch: about.epoch, actual: "running" });
      return;
    }
    this.converge(host);
  }

  // ---- faults ----

  private crash(host: Host, downMs: number): void {
    if (!host.up) return;
    host.up = false;
    host.life++;
    for (const run of [...host.runs.values()]) this.endRun(host, run, "crash");
    host.view = null;
    host.unansweredSinceMs = null;
    host.starting.clear();
    host.outgoing.clear();
    host.reportedMs.clear();
    this.stats.crashes++;
    this.note(`crash ${host.id} for ${downMs} ms`);
    this.q.setTimer(downMs, () => this.restart(host));
  }

  private restart(host: Host): void {
    if (host.up) return;
    host.up = true;
    host.lastRenewMs = -Infinity;
    host.clockOffsetMs = this.skew();
    this.note(`restart ${host.id}`);
  }

  private partition(host: Host, cutMs: number): void {
    if (host.partitioned) return;
    host.partitioned = true;
    this.stats.partitions++;
    this.note(`partition ${host.id} from the managers for ${cutMs} ms`);
    this.q.setTimer(cutMs, () => {
      host.partitioned = false;
      this.note(`heal ${host.id}`);
    });
  }

  /** An operator command sent to the leader; tried again a second later while there is none. */
  private operator(command: () => ClusterCommand, done: (result: ClusterResult) => void, attempt = 0): void {
    const m = this.leader();
    if (m !== null && this.propose(m, command(), done)) return;
    if (attempt + 1 < OPERATOR_ATTEMPTS_MAX) this.q.setTimer(1000, () => this.operator(command, done, attempt + 1));
  }

  private drain(host: Host, resumeAfterMs: number | null): void {
    this.operator(() => ({ type: "setNodeState", atMs: this.q.nowMs(), node: host.id, state: "draining" }), (result) => {
      if (!result.ok) return;
      this.stats.drains++;
      this.note(`drain ${host.id}${resumeAfterMs === null ? "" : `, resume after ${resumeAfterMs} ms`}`);
      if (resumeAfterMs !== null) this.q.setTimer(resumeAfterMs, () => this.resume(host));
    });
  }

  private resume(host: Host): void {
    this.operator(() => ({ type: "setNodeState", atMs: this.q.nowMs(), node: host.id, state: "active" }), (result) => {
      if (!result.ok) return;
      this.stats.resumes++;
      this.note(`resume ${host.id}`);
    });
  }

  /** A manager member loses power: its replica and the proposals it waited on are gone, its log stays. */
  private crashMember(m: Member, downMs: number): void {
    if (!m.up) return;
    this.lostLeadership(m, "crashed");
    m.up = false;
    m.life++;
    m.node = null;
    m.role = Role.Follower;
    m.lead = NONE;
    m.pending.clear();
    m.controllerPending = 0;
    m.replica = new Replica();
    this.stats.managerCrashes++;
    this.note(`crash member ${m.id} for ${downMs} ms`);
    this.q.setTimer(downMs, () => this.restartMember(m));
  }

  private restartMember(m: Member): void {
    if (m.up) return;
    m.clockOffsetMs = this.skew();
    this.note(`restart member ${m.id}`);
    this.startMember(m);
  }

  private partitionMember(m: Member, cutMs: number): void {
    if (m.partitioned || !m.up) return;
    m.partitioned = true;
    this.stats.managerPartitions++;
    this.note(`partition member ${m.id} from everyone for ${cutMs} ms`);
    this.q.setTimer(cutMs, () => {
      if (!m.partitioned) return;
      m.partitioned = false;
      this.note(`heal member ${m.id}`);
    });
  }

  /** The member a manager fault hits: the leader of the time when `target` is -1 (or none leads), else that member. */
  private faultTarget(target: number): Member {
    return target < 0 ? this.leader() ?? this.members[0]! : this.members[target]!;
  }

  private skew(): number {
    const max = this.options.clockSkewMsMax;
    return max <= 0 ? 0 : between(this.rng, -max, max);
  }

  private scheduleFaults(): void {
    const o = this.options;
    const rng = this.rng;
    const ids = [...this.hosts.keys()];
    const at = (): number => 2000 + rng.int(Math.max(1, o.faultMs - 4000));
    const crashes = rng.int(o.crashesMax + 1);
    const partitions = rng.int(o.partitionsMax + 1);
    const drains = rng.int(o.drainsMax + 1);
    const managerCrashes = rng.int(o.managerCrashesMax + 1);
    const managerPartitions = rng.int(o.managerPartitionsMax + 1);
    this.lossPerMille = rng.int(o.lossPerMilleMax + 1);
    this.delayMsMax = 1 + rng.int(o.delayMsMax);
    this.note(`faults: ${crashes} crashes, ${partitions} partitions, ${drains} drains, ${managerCrashes} member crashes, ` +
      `${managerPartitions} member partitions, loss ${this.lossPerMille}/1000, delay ≤ ${this.delayMsMax} ms`);
    for (let i = 0; i < crashes; i++) {
      const host = this.hosts.get(pick(rng, ids))!;
      // Short crashes come back within the lease (nothing moves), long ones are failed over.
      const downMs = rng.chance(1, 3) ? 500 + rng.int(Math.max(1, Math.floor(o.leaseMs / 2))) : o.leaseMs + rng.int(3 * o.leaseMs);
      this.q.setTimer(at(), () => this.crash(host, downMs));
    }
    for (let i = 0; i < partitions; i++) {
      const host = this.hosts.get(pick(rng, ids))!;
      const cutMs = rng.chance(1, 3) ? 500 + rng.int(Math.max(1, Math.floor(o.leaseMs / 2))) : o.leaseMs + rng.int(3 * o.leaseMs);
      this.q.setTimer(at(), () => this.partition(host, cutMs));
    }
    for (let i = 0; i < drains; i++) {
      const host = this.hosts.get(pick(rng, ids))!;
      const resumeMs = rng.chance(1, 2) ? 10_000 + rng.int(30_000) : null;
      this.q.setTimer(at(), () => this.drain(host, resumeMs));
    }
    // Manager faults: most hit the member leading at the time; some last longer than a lease.
    for (let i = 0; i < managerCrashes; i++) {
      const target = rng.chance(2, 3) ? -1 : rng.int(this.members.length);
      const downMs = 1000 + rng.int(rng.chance(1, 4) ? 2 * o.leaseMs : o.leaseMs / 2);
      this.q.setTimer(at(), () => this.crashMember(this.faultTarget(target), downMs));
    }
    for (let i = 0; i < managerPartitions; i++) {
      const target = rng.chance(2, 3) ? -1 : rng.int(this.members.length);
      const cutMs = 1000 + rng.int(rng.chance(1, 4) ? 2 * o.leaseMs : o.leaseMs / 2);
      this.q.setTimer(at(), () => this.partitionMember(this.faultTarget(target), cutMs));
    }
    if (o.leaderCrashAtMs !== null) {
      this.q.setTimer(o.leaderCrashAtMs, () => {
        const m = this.leader();
        if (m === null) this.note("forced leader crash: no member leads");
        else this.crashMember(m, o.leaderCrashDownMs);
      });
    }
  }

  /** The end of the faulty phase: partitions heal, crashed hosts and members restart, no more loss. */
  private heal(): void {
    this.healed = true;
    this.lossPerMille = 0;
    for (const host of this.hosts.values()) {
      host.partitioned = false;
      if (!host.up) this.restart(host);
    }
    for (const m of this.members) {
      m.partitioned = false;
      if (!m.up) this.restartMember(m);
    }
    this.note("heal: partitions healed, hosts and members restarted, no loss");
  }

  // ---- checks ----

  private check(): void {
    this.stats.invariantChecks++;
    for (const m of this.members) {
      if (!m.up) continue;
      const state = m.replica.state;
      for (const message of state.checkInvariants()) this.violation("state-invariant", `${m.id} at index ${state.appliedIndex}: ${message}`);
      for (const node of state.listNodes()) {
        if (node.state !== "drained") continue;
        const owned = m.replica.ownedBy.get(node.id)?.size ?? 0;
        const flights = state.listMigrations().filter((f) => f.from === node.id || f.to === node.id).length;
        if (owned > 0 || flights > 0) this.violation("drained-owns", `${m.id}: drained node ${node.id} owns ${owned} VMs and takes part in ${flights} migrations`);
      }
    }
    for (const message of findDoubleRuns(this.records, this.q.nowMs())) this.violation("double-run", message);
  }

  /**
   * Why the cluster has not settled (empty when it has): a member leads, every member is up, every VM
   * meant to run runs on its owner, no migration is in flight, no node drains or stays failed.
   */
  private unsettled(limit: number): string[] {
    const out: string[] = [];
    const leader = this.leader();
    if (leader === null) return ["no leader"];
    const state = leader.replica.state;
    for (const m of this.members) if (!m.up) out.push(`member ${m.id} is down`);
    if (state.listMigrations().length > 0) out.push(`${state.listMigrations().length} migrations in flight`);
    for (const node of state.listNodes()) {
      if (node.state === "draining") out.push(`node ${node.id} is still draining`);
      if (node.state === "failed") out.push(`node ${node.id} is still failed`);
      if (out.length >= limit) return out;
    }
    for (const vm of state.listVms()) {
      if (vm.owner === null) {
        if (vm.pendingReason === null) out.push(`vm ${vm.id} has neither owner nor pending reason`);
        continue;
      }
      const host = this.hosts.get(vm.owner);
      const run = host?.runs.get(vm.id);
      if (vm.desiredState === "running" && (run === undefined || run.epoch !== vm.epoch)) out.push(`vm ${vm.id} is not running on its owner ${vm.owner} at epoch ${vm.epoch}`);
      if (out.length >= limit) return out;
    }
    return out;
  }

  // ---- the run ----

  private setup(): void {
    const o = this.options;
    const rng = this.rng;
    // The cluster as it was built: hosts registered, VMs created, committed at term 1 on every member.
    const commands: ClusterCommand[] = [];
    for (let i = 0; i < o.hosts; i++) {
      const id = hostId(i);
      const host: Host = {
        id, up: true, life: 0, clockOffsetMs: this.skew(), partitioned: false, view: null, lastRenewMs: -Infinity, leaderGuess: rng.int(o.managers),
        unansweredSinceMs: null, runs: new Map(), starting: new Map(), outgoing: new Map(), reportedMs: new Map(),
      };
      this.hosts.set(id, host);
      commands.push({
        type: "registerNode", atMs: 0, node: id, apiAddress: `10.0.${i >> 8}.${i & 255}:7000`, migrationAddress: `hyperfleet.sim.node.${id}.receive`,
        capacity: { memoryBytes: 160 * GiB, vcpus: 48 }, labels: { rack: `r${i % 10}` }, leaseUntilMs: o.leaseMs,
      });
    }
    const memory = [512 * MiB, 1 * GiB, 2 * GiB, 2 * GiB, 4 * GiB];
    const priorities: VmPriority[] = ["high", "normal", "normal", "normal", "low"];
    for (let i = 0; i < o.vms; i++) {
      commands.push({
        type: "createVm", atMs: 0, vm: vmId(i),
        spec: {
          memoryBytes: pick(rng, memory), vcpus: 1 + rng.int(4), image: "guests/build/hello.elf", bootMode: "bare",
          priority: pick(rng, priorities), restartPolicy: rng.chance(1, 20) ? "do-not-restart" : "restart",
          antiAffinityGroup: rng.chance(1, 10) ? `g${rng.int(Math.max(1, Math.floor(o.vms / 30)))}` : null,
        },
      });
    }
    const entries: Entry[] = commands.map((c, i) => ({ index: i + 1, term: 1, type: EntryType.Normal, data: entryData(BOOTSTRAP_PROPOSER, 0, i + 1, encodeCommand(c)) }));
    const voters = Array.from({ length: o.managers }, (_, i) => memberId(i));
    for (let i = 0; i < o.managers; i++) {
      const storage = new SimLogStorage(voters);
      storage.append(entries);
      storage.setHardState({ term: 1, vote: NONE, commit: entries.length });
      const m: Member = {
        id: memberId(i), index: i, storage, rng: new SeededRng(rng.next32()), up: false, life: 0, partitioned: false, clockOffsetMs: this.skew(),
        node: null, replica: new Replica(), role: Role.Follower, lead: NONE, term: 1, controller: null, leaderSinceMs: null, ordered: new Map(),
        pending: new Map(), controllerPending: 0, proposalSeq: 0, flushScheduled: false,
      };
      this.members.push(m);
    }
    for (const m of this.members) this.startMember(m);
    const first = this.members[0]!.replica.state;
    for (const vm of commands) {
      if (vm.type === "createVm" && first.getVm(vm.vm) === null) this.note(`createVm ${vm.vm} refused`);
    }
    for (const host of this.hosts.values()) {
      this.q.setTimer(rng.int(o.hostTickMs), () => this.hostTicker(host));
    }
    this.q.setTimer(rng.int(o.raftTickMs), () => this.raftTicker());
    this.q.setTimer(0, () => this.leaderTicker());
    this.q.setTimer(o.checkEveryMs, () => this.checker());
  }

  private hostTicker(host: Host): void {
    this.hostTick(host);
    this.q.setTimer(this.options.hostTickMs, () => this.hostTicker(host));
  }

  private checker(): void {
    this.check();
    this.q.setTimer(this.options.checkEveryMs, () => this.checker());
  }

  /** Runs the whole simulation once: setup, faulty phase, heal, settle, final checks. */
  run(): ClusterSimResult {
    const o = this.options;
    let endMs: number;
    try {
      this.setup();
      this.scheduleFaults();
      const stepMs = 1000;
      for (let t = stepMs; t <= o.faultMs; t += stepMs) this.q.runUntil(t, EVENTS_PER_SECOND_MAX);
      this.q.runUntil(o.faultMs, EVENTS_PER_SECOND_MAX);
      this.heal();
      const settleEnd = o.faultMs + o.settleMsMax;
      for (let t = o.faultMs + stepMs; t <= settleEnd; t += stepMs) {
        this.q.runUntil(t, EVENTS_PER_SECOND_MAX);
        if (this.violations.length > 0) break;
        if (this.unsettled(1).length === 0) {
          this.stats.settledAtMs = t;
          break;
        }
      }
      endMs = this.q.nowMs();
      this.check();
      if (this.stats.settledAtMs === null && this.violations.length === 0) {
        this.violation("not-settled", `${o.settleMsMax} ms after the faults healed: ${this.unsettled(5).join("; ")}`);
      }
      this.checkReplicas();
    } catch (e) {
      this.violation("crash", e instanceof Error ? `${e.name}: ${e.message}` : String(e));
      endMs = this.q.nowMs();
    }
    const leader = this.leader() ?? this.members[0];
    this.stats.pendingVmsAtEnd = leader === undefined ? 0 : leader.replica.state.listVms().filter((vm) => vm.owner === null).length;
    this.stats.eventsFired = this.q.fired;
    const { log: _log, ...options } = o;
    return {
      seed: o.seed, ok: this.violations.length === 0, violations: this.violations, stats: this.stats, traceHash: this.trace.hex(), simulatedMs: endMs,
      options, replay: replayCommand(o),
    };
  }

  /**
   * Replicas agree: a fresh state applying the longest log reaches, at each member's applied index,
   * the snapshot that member holds.
   */
  private checkReplicas(): void {
    const up = this.members.filter((m) => m.up).sort((a, b) => a.replica.state.appliedIndex - b.replica.state.appliedIndex || a.index - b.index);
    if (up.length === 0) return;
    const longest = up[up.length - 1]!;
    const last = longest.replica.state.appliedIndex;
    const entries = last === 0 ? [] : longest.storage.entries(1, last + 1, Number.POSITIVE_INFINITY);
    const fresh = new Replica();
    let next = 0;
    for (const m of up) {
      const target = m.replica.state.appliedIndex;
      while (fresh.state.appliedIndex < target) applyEntry(fresh, entries[next++]!);
      const a = fresh.state.snapshot();
      const b = m.replica.state.snapshot();
      this.stats.replicaChecks++;
      if (a.length !== b.length || a.some((x, i) => x !== b[i])) {
        this.violation("replica-diverged", `${m.id} at index ${target} holds another state than the log of ${longest.id} gives`);
      }
    }
  }

  /** Whether the faulty phase is over (for tests). */
  get isHealed(): boolean {
    return this.healed;
  }
}

/** The command line that replays a run with these options. */
export function replayCommand(o: Omit<ClusterSimOptions, "log">): string {
  const parts = [`pnpm sim cluster --seed ${o.seed}`];
  const d = CLUSTER_SIM_DEFAULTS;
  if (o.hosts !== d.hosts) parts.push(`--hosts ${o.hosts}`);
  if (o.vms !== d.vms) parts.push(`--vms ${o.vms}`);
  if (o.managers !== d.managers) parts.push(`--managers ${o.managers}`);
  if (o.faultMs !== d.faultMs) parts.push(`--fault-ms ${o.faultMs}`);
  if (o.settleMsMax !== d.settleMsMax) parts.push(`--settle-ms ${o.settleMsMax}`);
  if (o.fenceMarginMs !== d.fenceMarginMs) parts.push(`--fence-margin-ms ${o.fenceMarginMs}`);
  if (o.failoverMarginMs !== d.failoverMarginMs) parts.push(`--failover-margin-ms ${o.failoverMarginMs}`);
  if (o.clockSkewMsMax !== d.clockSkewMsMax) parts.push(`--skew-ms ${o.clockSkewMsMax}`);
  if (o.leaderCrashAtMs !== d.leaderCrashAtMs && o.leaderCrashAtMs !== null) parts.push(`--leader-crash-ms ${o.leaderCrashAtMs}`);
  return `${parts.join(" ")} --verbose`;
}

/** Runs one seed with the defaults and `overrides`. */
export function runClusterSim(seed: number, overrides: Partial<ClusterSimOptions> = {}): ClusterSimResult {
  return new ClusterSim({ ...overrides, seed }).run();
}
