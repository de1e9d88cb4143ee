/**
 * A deterministic simulator of the cluster's high availability at scale: hosts that renew their
 * leases through the leader, run exactly the VMs they own at their epoch while their lease is live and
 * fence themselves `fenceMarginMs` before it ends; a leader that applies commands to the `ClusterState`
 * and takes its HA decisions with the `LeaderController` (the code fleetd runs).
 *
 * Model. Simulated time (an event heap), one seeded PRNG. The replicated state is one `ClusterState`
 * fed through `encodeCommand` → `apply(index, bytes)`: the leader's commits, in log order. Raft itself
 * is not simulated here (the cluster package may not depend on the raft package, which has its own
 * simulator); a leader change is modelled as Raft shows it to this layer: an election gap during which
 * nothing commits and requests to the leader are lost, then a new leader with its own clock skew and an
 * empty controller memory that reads everything else from the committed state. At the end the log is
 * replayed into a fresh replica, which must reach the same snapshot.
 *
 * Hosts talk to the leader by messages that are delayed, lost and cut by partitions. A host knows its
 * lease and its VMs only from the views the leader sends back (each view carries its log index; an
 * older view never replaces a newer one). Every host keeps run records (VM, epoch, start, end); a run
 * ends when the host stops it, at its fence deadline (whichever comes first), or when the host crashes.
 *
 * Checked during the run and at the end: no VM ran on two hosts at overlapping times (from the run
 * records), `checkInvariants` of the state, drained nodes own nothing; after the faults heal, every
 * accepted VM must settle to running on its owner (or pending with a reason) within a time budget.
 */
import { encodeCommand } from "../commands.js";
import type { ClusterCommand } from "../commands.js";
import { LeaderController } from "../controller.js";
import { ClusterState } from "../state.js";
import type { ClusterResult } from "../state.js";
import type { VmDesiredState, VmPriority } from "../types.js";
import { EventQueue } from "./queue.js";
import { SimRng } from "./rng.js";

const GiB = 2 ** 30;
const MiB = 2 ** 20;
/** Events fired per simulated second, at most (a runaway guard). */
const EVENTS_PER_SECOND_MAX = 2_000_000;
/** Run records kept, at most. */
const RUNS_MAX = 1_000_000;
/** Violations kept, at most. */
const VIOLATIONS_MAX = 20;

export interface ClusterSimOptions {
  readonly seed: number;
  readonly hosts: number;
  readonly vms: number;
  readonly leaseMs: number;
  /** A host stops its VMs this long before its lease ends (negative: a broken host that runs past it). */
  readonly fenceMarginMs: number;
  readonly failoverMarginMs: number;
  /** Each host's and each leader's clock is off by at most this much. */
  readonly clockSkewMsMax: number;
  readonly hostTickMs: number;
  readonly leaderTickMs: number;
  /** Length of the faulty phase. */
  readonly faultMs: number;
  /** After the faults heal, the cluster must settle within this time. */
  readonly settleMsMax: number;
  /** How often the invariants are checked. */
  readonly checkEveryMs: number;
  readonly rebalanceIntervalMs: number;
  /** A migration in flight for longer than this is aborted by the leader (its order or transfer was lost). */
  readonly migrationTimeoutMs: number;
  /** Fault counts, at most (the seed picks how many). */
  readonly crashesMax: number;
  readonly partitionsMax: number;
  readonly drainsMax: number;
  readonly leaderChangesMax: number;
  /** Message loss in the faulty phase, at most this many per thousand. */
  readonly lossPerMilleMax: number;
  readonly delayMsMax: number;
  /** Receives a line per notable event (for --verbose). */
  readonly log?: (line: string) => void;
}

export const CLUSTER_SIM_DEFAULTS: Omit<ClusterSimOptions, "seed"> = Object.freeze({
  hosts: 100,
  vms: 5000,
  leaseMs: 10_000,
  fenceMarginMs: 2000,
  failoverMarginMs: 1000,
  clockSkewMsMax: 200,
  hostTickMs: 200,
  leaderTickMs: 250,
  faultMs: 60_000,
  settleMsMax: 90_000,
  checkEveryMs: 2000,
  rebalanceIntervalMs: 5000,
  migrationTimeoutMs: 20_000,
  crashesMax: 8,
  partitionsMax: 8,
  drainsMax: 4,
  leaderChangesMax: 3,
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
  leaderChanges: number;
  messagesSent: number;
  messagesLost: number;
  commands: number;
  rejections: number;
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

export type ClusterSimFailureKind = "double-run" | "state-invariant" | "drained-owns" | "not-settled" | "replica-diverged" | "crash";

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
  readonly runs: Map<string, RunRecord>;
  /** VMs whose "starting" report is in flight: epoch and when it was sent. */
  readonly starting: Map<string, { epoch: number; sentMs: number }>;
  /** VMs this host is sending away: the migration, and whether its transfer was sent. */
  readonly outgoing: Map<string, { epoch: number; migrationId: number; to: string }>;
  /** When the host last reported each running VM as running (a lost report is sent again). */
  readonly reportedMs: Map<string, number>;
}

type LeaderRequest =
  | { readonly kind: "renew"; readonly host: string; readonly untilMs: number }
  | { readonly kind: "report"; readonly host: string; readonly vm: string; readonly epoch: number; readonly actual: "starting" | "running" }
  | { readonly kind: "transfer"; readonly host: string; readonly vm: string; readonly to: string; readonly epoch: number; readonly migrationId: number };

type HostMessage =
  | { readonly kind: "view"; readonly view: HostView; readonly reply: ClusterResult | null; readonly about: LeaderRequest | null }
  | { readonly kind: "migrate"; readonly vm: string; readonly epoch: number; readonly migrationId: number; readonly to: string };

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

/** The cluster simulator: build it with options, `run()` once. */
export class ClusterSim {
  readonly options: ClusterSimOptions;
  private readonly rng: SimRng;
  private readonly q = new EventQueue();
  private readonly trace = new TraceHash();
  private readonly state = new ClusterState();
  /** The committed log (for the replica check). */
  private readonly log: Uint8Array[] = [];
  private readonly hosts = new Map<string, Host>();
  /** Owner → VMs it owns (kept in step with the state after every command). */
  private readonly ownedBy = new Map<string, Set<string>>();
  private readonly ownerOf = new Map<string, string>();
  private readonly records: RunRecord[] = [];
  private readonly violations: { kind: ClusterSimFailureKind; atMs: number; message: string }[] = [];
  private readonly stats: ClusterSimStats = {
    crashes: 0, partitions: 0, drains: 0, resumes: 0, leaderChanges: 0, messagesSent: 0, messagesLost: 0, commands: 0, rejections: 0,
    nodesFailed: 0, failovers: 0, pendingAfterFailover: 0, drainMoves: 0, drainedNodes: 0, rebalanceMoves: 0, migrationsCommitted: 0,
    migrationsAborted: 0, runs: 0, invariantChecks: 0, settledAtMs: null, pendingVmsAtEnd: 0, eventsFired: 0,
  };
  private leaderUp = true;
  private leaderOffsetMs = 0;
  private leaderSinceMs: number | null = 0;
  private controller: LeaderController;
  private lossPerMille = 0;
  private delayMsMax: number;
  private healed = false;
  /** Migrations the leader ordered: by VM, the purpose (for counting and drain bookkeeping). */
  private readonly ordered = new Map<string, "drain" | "rebalance">();

  constructor(options: Partial<ClusterSimOptions> & { readonly seed: number }) {
    this.options = { ...CLUSTER_SIM_DEFAULTS, ...options };
    const o = this.options;
    if (!Number.isSafeInteger(o.hosts) || o.hosts < 2 || o.hosts > 1000) throw new ClusterSimError(`hosts must be in 2..1000, got ${o.hosts}`);
    if (!Number.isSafeInteger(o.vms) || o.vms < 0 || o.vms > 100_000) throw new ClusterSimError(`vms must be in 0..100000, got ${o.vms}`);
    this.rng = new SimRng(o.seed);
    this.delayMsMax = o.delayMsMax;
    this.controller = this.newController();
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

  private leaderNow(): number {
    return this.q.nowMs() + this.leaderOffsetMs;
  }

  // ---- the replicated state ----

  private commit(command: ClusterCommand): ClusterResult {
    const bytes = encodeCommand(command);
    this.log.push(bytes);
    const result = this.state.apply(this.log.length, bytes);
    this.stats.commands++;
    if (!result.ok) this.stats.rejections++;
    const subject = "vm" in command ? command.vm : "node" in command ? command.node : "";
    this.trace.add(`${command.type} ${subject} ${result.ok ? "ok" : result.code}`);
    if ("vm" in command) this.reindex(command.vm);
    return result;
  }

  private reindex(vm: string): void {
    const record = this.state.getVm(vm);
    const before = this.ownerOf.get(vm);
    const after = record?.owner ?? undefined;
    if (before === after) return;
    if (before !== undefined) this.ownedBy.get(before)?.delete(vm);
    if (after === undefined) this.ownerOf.delete(vm);
    else this.ownerOf.set(vm, after);
    if (record !== null && record.owner !== null) {
      let set = this.ownedBy.get(record.owner);
      if (set === undefined) this.ownedBy.set(record.owner, (set = new Set()));
      set.add(vm);
    }
  }

  private viewOf(host: string): HostView {
    const node = this.state.getNode(host);
    const vms = new Map<string, ViewVm>();
    for (const id of this.ownedBy.get(host) ?? []) {
      const vm = this.state.getVm(id)!;
      vms.set(id, {
        epoch: vm.epoch, desired: vm.desiredState, migrationId: this.state.getMigration(id)?.migrationId ?? null,
        reportedRunning: vm.actual !== null && vm.actual.epoch === vm.epoch && vm.actual.state === "running",
      });
    }
    return { index: this.log.length, leaseUntilMs: node?.leaseUntilMs ?? 0, failed: node?.state === "failed", vms };
  }

  // ---- the network ----

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

  private toLeader(from: Host, request: LeaderRequest): void {
    if (from.partitioned || this.lost()) return;
    const life = from.life;
    this.q.at(this.delay(), () => {
      if (!this.leaderUp || from.partitioned) return;
      this.handleRequest(request, from, life);
    });
  }

  private toHost(host: Host, message: HostMessage): void {
    if (host.partitioned || this.lost()) return;
    const life = host.life;
    this.q.at(this.delay(), () => {
      if (!host.up || host.life !== life || host.partitioned) return;
      this.handleHostMessage(host, message);
    });
  }

  // ---- the leader ----

  private handleRequest(request: LeaderRequest, from: Host, life: number): void {
    const now = this.leaderNow();
    let reply: ClusterResult | null = null;
    switch (request.kind) {
      case "renew": {
        reply = this.commit({ type: "renewLease", atMs: now, node: request.host, untilMs: request.untilMs });
        const node = this.state.getNode(request.host);
        if (reply.ok && node !== null && node.state === "failed" && node.leaseUntilMs > now) {
          this.commit({ type: "setNodeState", atMs: now, node: request.host, state: "active" });
          this.note(`node ${request.host} is active again`);
        }
        break;
      }
      case "report":
        reply = this.commit({ type: "reportActual", atMs: now, vm: request.vm, node: request.host, epoch: request.epoch, actual: request.actual });
        break;
      case "transfer": {
        reply = this.commit({ type: "transfer", atMs: now, vm: request.vm, from: request.host, to: request.to, epoch: request.epoch, migrationId: request.migrationId });
        const purpose = this.ordered.get(request.vm);
        if (reply.ok) {
          this.stats.migrationsCommitted++;
          this.note(`migration of ${request.vm} ${request.host} -> ${request.to} committed`);
          if (purpose === "drain") this.controller.drainDone(request.vm);
          const dest = this.hosts.get(request.to);
          if (dest !== undefined) this.toHost(dest, { kind: "view", view: this.viewOf(dest.id), reply: null, about: null });
        } else {
          this.abortIfInFlight(request.vm, request.migrationId, `transfer refused: ${reply.message}`);
        }
        this.ordered.delete(request.vm);
        break;
      }
    }
    if (from.life === life) this.toHost(from, { kind: "view", view: this.viewOf(from.id), reply, about: request });
  }

  private abortIfInFlight(vm: string, migrationId: number, reason: string): void {
    const flight = this.state.getMigration(vm);
    if (flight === null || flight.migrationId !== migrationId) return;
    const result = this.commit({ type: "abortMigration", atMs: this.leaderNow(), vm, epoch: flight.epoch, migrationId });
    if (result.ok) {
      this.stats.migrationsAborted++;
      this.note(`migration of ${vm} aborted: ${reason}`);
      if (this.ordered.get(vm) === "drain") this.controller.drainFailed(vm, this.leaderNow(), reason);
      this.ordered.delete(vm);
      const source = this.hosts.get(flight.from);
      if (source !== undefined) this.toHost(source, { kind: "view", view: this.viewOf(source.id), reply: null, about: null });
    }
  }

  /** Begins a live migration and orders the source to send it. */
  private startLiveMigration(vm: string, from: string, to: string, purpose: "drain" | "rebalance"): boolean {
    const begun = this.commit({ type: "beginMigration", atMs: this.leaderNow(), vm, from, to, kind: "live" });
    if (!begun.ok || begun.type !== "beginMigration") {
      if (purpose === "drain") this.controller.drainFailed(vm, this.leaderNow(), begun.ok ? "unexpected result" : begun.message);
      return false;
    }
    this.ordered.set(vm, purpose);
    const source = this.hosts.get(from);
    if (source !== undefined) this.toHost(source, { kind: "migrate", vm, epoch: begun.epoch, migrationId: begun.migrationId, to });
    return true;
  }

  private leaderTick(): void {
    if (!this.leaderUp) return;
    const now = this.leaderNow();
    const c = this.controller;
    // Migrations whose order or transfer was lost: the order's answer timed out.
    for (const m of this.state.listMigrations()) {
      if (now - m.startedAtMs > this.options.migrationTimeoutMs) this.abortIfInFlight(m.vm, m.migrationId, "timed out");
    }
    let drainSteps = 0;
    for (const step of c.drainSteps(this.state, now)) {
      if (++drainSteps > 10_000) break;
      if (step.kind === "drained") {
        if (this.commit({ type: "setNodeState", atMs: now, node: step.node, state: "drained" }).ok) {
          this.stats.drainedNodes++;
          this.note(`node ${step.node} is drained`);
        }
      } else if (step.kind === "move") {
        this.stats.drainMoves++;
        if (step.live) {
          this.startLiveMigration(step.vm, step.from, step.to, "drain");
        } else {
          const begun = this.commit({ type: "beginMigration", atMs: now, vm: step.vm, from: step.from, to: step.to, kind: "quick" });
          if (!begun.ok || begun.type !== "beginMigration") {
            c.drainFailed(step.vm, now, begun.ok ? "unexpected result" : begun.message);
            continue;
          }
          const moved = this.commit({ type: "transfer", atMs: now, vm: step.vm, from: step.from, to: step.to, epoch: begun.epoch, migrationId: begun.migrationId });
          if (moved.ok) {
            c.drainDone(step.vm);
            const dest = this.hosts.get(step.to);
            if (dest !== undefined) this.toHost(dest, { kind: "view", view: this.viewOf(dest.id), reply: null, about: null });
          } else {
            this.abortIfInFlight(step.vm, begun.migrationId, moved.message);
            c.drainFailed(step.vm, now, moved.message);
          }
        }
      }
    }
    if (c.failoversAllowed(now, this.leaderSinceMs)) {
      for (const failure of c.nodesToFail(this.state, now)) {
        if (this.commit({ type: "setNodeState", atMs: now, node: failure.node, state: "failed" }).ok) {
          this.stats.nodesFailed++;
          this.note(`node ${failure.node} failed: its lease ended ${failure.leaseEndedAgoMs} ms ago`);
        }
      }
      const touched = new Set<string>();
      for (const vm of c.failoverOrder(this.state, now)) {
        const result = this.commit({ type: "failover", atMs: now, vm: vm.id, epoch: vm.epoch });
        c.failoverDone(vm, result, now);
        if (!result.ok || result.type !== "failover") continue;
        if (vm.owner !== null) this.stats.failovers++;
        if (result.owner === null) {
          if (vm.owner !== null) this.stats.pendingAfterFailover++;
        } else {
          touched.add(result.owner);
        }
      }
      for (const id of [...touched].sort()) {
        const host = this.hosts.get(id);
        if (host !== undefined) this.toHost(host, { kind: "view", view: this.viewOf(id), reply: null, about: null });
      }
    }
    const plan = c.planRebalance(this.state, now);
    if (plan !== null && this.startLiveMigration(plan.vm, plan.from, plan.to, "rebalance")) {
      this.stats.rebalanceMoves++;
      this.note(`rebalance: ${plan.vm} ${plan.from} -> ${plan.to}`);
    }
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
    if (message.kind === "migrate") {
      const run = host.runs.get(message.vm);
      if (run === undefined || run.epoch !== message.epoch || host.outgoing.has(message.vm)) return;
      host.outgoing.set(message.vm, { epoch: message.epoch, migrationId: message.migrationId, to: message.to });
      const life = host.life;
      // Pre-copy while it runs, then stop-and-copy and ask for the transfer.
      this.q.at(200 + this.rng.int(1500), () => {
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
    host.starting.clear();
    host.outgoing.clear();
    host.reportedMs.clear();
    this.stats.crashes++;
    this.note(`crash ${host.id} for ${downMs} ms`);
    this.q.at(downMs, () => this.restart(host));
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
    this.note(`partition ${host.id} from the leader for ${cutMs} ms`);
    this.q.at(cutMs, () => {
      host.partitioned = false;
      this.note(`heal ${host.id}`);
    });
  }

  private drain(host: Host, resumeAfterMs: number | null): void {
    if (!this.leaderUp) return;
    const result = this.commit({ type: "setNodeState", atMs: this.leaderNow(), node: host.id, state: "draining" });
    if (!result.ok) return;
    this.stats.drains++;
    this.note(`drain ${host.id}${resumeAfterMs === null ? "" : `, resume after ${resumeAfterMs} ms`}`);
    if (resumeAfterMs !== null) this.q.at(resumeAfterMs, () => this.resume(host));
  }

  private resume(host: Host): void {
    if (!this.leaderUp) {
      this.q.at(1000, () => this.resume(host));
      return;
    }
    const node = this.state.getNode(host.id);
    if (node === null || (node.state !== "draining" && node.state !== "drained")) return;
    if (this.commit({ type: "setNodeState", atMs: this.leaderNow(), node: host.id, state: "active" }).ok) {
      this.stats.resumes++;
      this.note(`resume ${host.id}`);
    }
  }

  private changeLeader(electionMs: number): void {
    if (!this.leaderUp) return;
    this.leaderUp = false;
    this.leaderSinceMs = null;
    this.stats.leaderChanges++;
    this.note(`leader lost; election for ${electionMs} ms`);
    this.q.at(electionMs, () => {
      this.leaderUp = true;
      this.leaderOffsetMs = this.skew();
      this.controller = this.newController();
      this.ordered.clear();
      this.leaderSinceMs = this.leaderNow();
      this.note("new leader");
    });
  }

  private skew(): number {
    const max = this.options.clockSkewMsMax;
    return max <= 0 ? 0 : this.rng.between(-max, max);
  }

  private scheduleFaults(): void {
    const o = this.options;
    const rng = this.rng;
    const ids = [...this.hosts.keys()];
    const at = (): number => 2000 + rng.int(Math.max(1, o.faultMs - 4000));
    const crashes = rng.int(o.crashesMax + 1);
    const partitions = rng.int(o.partitionsMax + 1);
    const drains = rng.int(o.drainsMax + 1);
    const leaderChanges = rng.int(o.leaderChangesMax + 1);
    this.lossPerMille = rng.int(o.lossPerMilleMax + 1);
    this.delayMsMax = 1 + rng.int(o.delayMsMax);
    this.note(`faults: ${crashes} crashes, ${partitions} partitions, ${drains} drains, ${leaderChanges} leader changes, loss ${this.lossPerMille}/1000, delay ≤ ${this.delayMsMax} ms`);
    for (let i = 0; i < crashes; i++) {
      const host = this.hosts.get(rng.pick(ids))!;
      // Short crashes come back within the lease (nothing moves), long ones are failed over.
      const downMs = rng.chance(1, 3) ? 500 + rng.int(Math.max(1, Math.floor(o.leaseMs / 2))) : o.leaseMs + rng.int(3 * o.leaseMs);
      this.q.at(at(), () => this.crash(host, downMs));
    }
    for (let i = 0; i < partitions; i++) {
      const host = this.hosts.get(rng.pick(ids))!;
      const cutMs = rng.chance(1, 3) ? 500 + rng.int(Math.max(1, Math.floor(o.leaseMs / 2))) : o.leaseMs + rng.int(3 * o.leaseMs);
      this.q.at(at(), () => this.partition(host, cutMs));
    }
    for (let i = 0; i < drains; i++) {
      const host = this.hosts.get(rng.pick(ids))!;
      const resumeMs = rng.chance(1, 2) ? 10_000 + rng.int(30_000) : null;
      this.q.at(at(), () => this.drain(host, resumeMs));
    }
    for (let i = 0; i < leaderChanges; i++) {
      const electionMs = 300 + rng.int(3000);
      this.q.at(at(), () => this.changeLeader(electionMs));
    }
  }

  /** The end of the faulty phase: partitions heal, crashed hosts restart, no more loss. */
  private heal(): void {
    this.healed = true;
    this.lossPerMille = 0;
    for (const host of this.hosts.values()) {
      host.partitioned = false;
      if (!host.up) this.restart(host);
    }
    this.note("heal: partitions healed, hosts restarted, no loss");
  }

  // ---- checks ----

  private check(): void {
    this.stats.invariantChecks++;
    for (const message of this.state.checkInvariants()) this.violation("state-invariant", message);
    for (const node of this.state.listNodes()) {
      if (node.state !== "drained") continue;
      const owned = this.ownedBy.get(node.id)?.size ?? 0;
      const flights = this.state.listMigrations().filter((m) => m.from === node.id || m.to === node.id).length;
      if (owned > 0 || flights > 0) this.violation("drained-owns", `drained node ${node.id} owns ${owned} VMs and takes part in ${flights} migrations`);
    }
    for (const message of findDoubleRuns(this.records, this.q.nowMs())) this.violation("double-run", message);
  }

  /** Why the cluster has not settled (empty when it has): every VM meant to run runs on its owner, no migration is in flight, no node drains. */
  private unsettled(limit: number): string[] {
    const out: string[] = [];
    if (!this.leaderUp) out.push("no leader");
    if (this.state.listMigrations().length > 0) out.push(`${this.state.listMigrations().length} migrations in flight`);
    for (const node of this.state.listNodes()) {
      if (node.state === "draining") out.push(`node ${node.id} is still draining`);
      if (node.state === "failed") out.push(`node ${node.id} is still failed`);
      if (out.length >= limit) return out;
    }
    for (const vm of this.state.listVms()) {
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
    for (let i = 0; i < o.hosts; i++) {
      const id = hostId(i);
      const host: Host = {
        id, up: true, life: 0, clockOffsetMs: this.skew(), partitioned: false, view: null, lastRenewMs: -Infinity,
        runs: new Map(), starting: new Map(), outgoing: new Map(), reportedMs: new Map(),
      };
      this.hosts.set(id, host);
      this.commit({
        type: "registerNode", atMs: 0, node: id, apiAddress: `10.0.${i >> 8}.${i & 255}:7000`, migrationAddress: `hyperfleet.sim.node.${id}.receive`,
        capacity: { memoryBytes: 160 * GiB, vcpus: 48 }, labels: { rack: `r${i % 10}` }, leaseUntilMs: o.leaseMs,
      });
    }
    const memory = [512 * MiB, 1 * GiB, 2 * GiB, 2 * GiB, 4 * GiB];
    const priorities: VmPriority[] = ["high", "normal", "normal", "normal", "low"];
    for (let i = 0; i < o.vms; i++) {
      const result = this.commit({
        type: "createVm", atMs: 0, vm: vmId(i),
        spec: {
          memoryBytes: rng.pick(memory), vcpus: 1 + rng.int(4), image: "guests/build/hello.elf", bootMode: "bare",
          priority: rng.pick(priorities), restartPolicy: rng.chance(1, 20) ? "do-not-restart" : "restart",
          antiAffinityGroup: rng.chance(1, 10) ? `g${rng.int(Math.max(1, Math.floor(o.vms / 30)))}` : null,
        },
      });
      if (!result.ok) this.note(`createVm ${vmId(i)} refused: ${result.message}`);
    }
    for (const host of this.hosts.values()) {
      this.q.at(rng.int(o.hostTickMs), () => this.hostTicker(host));
    }
    this.q.at(0, () => this.leaderTicker());
    this.q.at(o.checkEveryMs, () => this.checker());
  }

  private hostTicker(host: Host): void {
    this.hostTick(host);
    this.q.at(this.options.hostTickMs, () => this.hostTicker(host));
  }

  private leaderTicker(): void {
    this.leaderTick();
    this.q.at(this.options.leaderTickMs, () => this.leaderTicker());
  }

  private checker(): void {
    this.check();
    this.q.at(this.options.checkEveryMs, () => this.checker());
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
      this.checkReplica();
    } catch (e) {
      this.violation("crash", e instanceof Error ? `${e.name}: ${e.message}` : String(e));
      endMs = this.q.nowMs();
    }
    this.stats.pendingVmsAtEnd = this.state.listVms().filter((vm) => vm.owner === null).length;
    this.stats.eventsFired = this.q.fired;
    const { log: _log, ...options } = o;
    return {
      seed: o.seed, ok: this.violations.length === 0, violations: this.violations, stats: this.stats, traceHash: this.trace.hex(), simulatedMs: endMs,
      options, replay: replayCommand(o),
    };
  }

  /** A fresh member that applies the committed log must reach the same state. */
  private checkReplica(): void {
    const replica = new ClusterState();
    this.log.forEach((bytes, i) => replica.apply(i + 1, bytes));
    const a = replica.snapshot();
    const b = this.state.snapshot();
    if (a.length !== b.length || a.some((x, i) => x !== b[i])) this.violation("replica-diverged", "a replica applying the committed log reached another snapshot");
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
  if (o.faultMs !== d.faultMs) parts.push(`--fault-ms ${o.faultMs}`);
  if (o.settleMsMax !== d.settleMsMax) parts.push(`--settle-ms ${o.settleMsMax}`);
  if (o.fenceMarginMs !== d.fenceMarginMs) parts.push(`--fence-margin-ms ${o.fenceMarginMs}`);
  if (o.failoverMarginMs !== d.failoverMarginMs) parts.push(`--failover-margin-ms ${o.failoverMarginMs}`);
  if (o.clockSkewMsMax !== d.clockSkewMsMax) parts.push(`--skew-ms ${o.clockSkewMsMax}`);
  return `${parts.join(" ")} --verbose`;
}

/** Runs one seed with the defaults and `overrides`. */
export function runClusterSim(seed: number, overrides: Partial<ClusterSimOptions> = {}): ClusterSimResult {
  return new ClusterSim({ ...overrides, seed }).run();
}
