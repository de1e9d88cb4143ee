/**
 * `LeaderController`: the leader's high-availability decisions as pure code — failure detection,
 * failover order, drains and rebalancing — over a read view of the `ClusterState`.
 *
 * The controller reads no clock and does no I/O: the caller passes `nowMs`, proposes the commands the
 * decisions call for, starts the migrations, logs, and reports outcomes back (`failoverDone`,
 * `drainFailed`, `drainDone`). What it keeps between passes is its own small memory: when pending
 * VMs were last tried, the failed move attempts of draining nodes (with their backoff) and the VMs
 * rebalancing moved lately (hysteresis). A new leader may start with an empty memory: everything
 * else is read from the cluster state.
 *
 * Passes (each called from the leader's reconcile loop):
 *  - failures, once `failoversAllowed` (half a lease after this member became the leader): `nodesToFail` (leases ended more than `failoverMarginMs`
 *    ago), then, once those are committed, `failoverOrder` (VMs of failed nodes and pending VMs due
 *    for a retry, high priority first, at most `failoversPerPass`);
 *  - drains: `drainSteps`, a lazy sequence of steps that reads the state as it goes, so a caller that
 *    commits each step before asking for the next sees its effect (an idle transfer frees room);
 *  - rebalance: `planRebalance`, at most one move every `rebalanceIntervalMs`.
 */
import type { RebalanceMove } from "./rebalance.js";
import { planRebalance } from "./rebalance.js";
import type { ClusterResult, NodeView } from "./state.js";
import type { MigrationRecord, VmPriority, VmRecord } from "./types.js";

/** What the controller reads of the cluster state (a `ClusterState` is one). */
export interface ClusterReadView {
  listNodes(): NodeView[];
  listVms(filter?: { readonly node?: string }): VmRecord[];
  listMigrations(): MigrationRecord[];
  getMigration(vm: string): MigrationRecord | null;
  placeAway(vmId: string, atMs: number): { ok: true; node: string } | { ok: false; reason: string };
  fitsOn(vmId: string, nodeId: string, atMs: number): boolean;
}

export interface ControllerConfig {
  /** The lease a node takes when it renews; a new leader waits `leaseMs / 2 + failoverMarginMs` before failing nodes over. */
  readonly leaseMs: number;
  /** A node is declared failed once its lease ended more than this long ago (covers clock skew). */
  readonly failoverMarginMs: number;
  /** 0: no rebalancing. */
  readonly rebalanceIntervalMs: number;
  /** Act when the most and least loaded active nodes differ by more than this many percent. */
  readonly rebalanceThresholdPercent: number;
  /** Live migrations a draining node sends at once. Default 2. */
  readonly drainParallel?: number;
  /** The longest delay before a failed drain move is tried again. Default 30 s. */
  readonly drainRetryMsMax?: number;
  /** A pending VM (no node could take it) is tried again this often. Default 2 s. */
  readonly pendingRetryMs?: number;
  /** Failovers per pass (the rest go in the next passes). Default 50. */
  readonly failoversPerPass?: number;
  /** A memory map (pending tries, drain attempts) that grows past this is cleared. Default 10,000. */
  readonly memoryEntriesMax?: number;
}

export const CONTROLLER_DEFAULTS = Object.freeze({
  drainParallel: 2,
  drainRetryMsMax: 30_000,
  pendingRetryMs: 2000,
  failoversPerPass: 50,
  memoryEntriesMax: 10_000,
});

/** A VM moved by rebalancing is left alone for this many intervals. */
const REBALANCE_HOLD_INTERVALS = 5;

/** The order of failovers: high priority first. */
export const PRIORITY_RANK: Readonly<Record<VmPriority, number>> = Object.freeze({ high: 0, normal: 1, low: 2 });

/** A node whose lease ended more than `failoverMarginMs` ago and is not marked failed yet. */
export interface NodeFailure {
  readonly node: string;
  readonly leaseUntilMs: number;
  /** How long ago its lease ended. */
  readonly leaseEndedAgoMs: number;
}

/** One step of a drain pass. */
export type DrainStep =
  /** Every VM and migration of the node is gone: propose `setNodeState drained`. */
  | { readonly kind: "drained"; readonly node: string }
  /** Move `vm` away from `from` to `to`: by live migration when it runs, else by moving its ownership (begin and transfer at once). */
  | { readonly kind: "move"; readonly vm: string; readonly from: string; readonly to: string; readonly live: boolean }
  /** `vm` cannot move now (recorded: it is tried again after `delayMs`); `changed` when the reason is new (worth a log line). */
  | { readonly kind: "deferred"; readonly vm: string; readonly node: string; readonly reason: string; readonly delayMs: number; readonly changed: boolean };

/** What `drainFailed` recorded. */
export interface DrainBackoff {
  readonly count: number;
  readonly delayMs: number;
  readonly nextAtMs: number;
  /** The reason differs from the previous attempt's. */
  readonly changed: boolean;
}

function byId(a: { readonly id: string }, b: { readonly id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export class LeaderController {
  private readonly config: Required<ControllerConfig>;
  /** Pending VMs: when the leader last tried to place them. */
  private readonly pendingTried = new Map<string, number>();
  /** Per VM of a draining node: failed move attempts and when to try again. */
  private readonly drainAttempts = new Map<string, { count: number; nextAtMs: number; reason: string }>();
  /** VMs rebalancing moved, and when (left alone for a while). */
  private readonly rebalanced = new Map<string, number>();
  private lastRebalanceMs = 0;

  constructor(config: ControllerConfig) {
    this.config = { ...CONTROLLER_DEFAULTS, ...config };
  }

  // ---- failure detection and failover ----

  /**
   * Whether failure detection may run: only once this member has led (since `leaderSinceMs`, null
   * while it does not lead) for half a lease plus the margin, so every live node had the time to renew
   * with it (nodes renew every quarter lease and retry sooner when they could not; after a restart of
   * the whole cluster, every lease in the state has long ended). Not a safety rule — a node that
   * cannot renew stops its VMs before its lease ends, and nothing fails over before it ended plus the
   * margin — but it keeps a new leader from failing live nodes over that have not found it yet.
   */
  failoversAllowed(nowMs: number, leaderSinceMs: number | null): boolean {
    return leaderSinceMs !== null && nowMs - leaderSinceMs >= this.config.leaseMs / 2 + this.config.failoverMarginMs;
  }

  private expired(leaseUntilMs: number, nowMs: number): boolean {
    return leaseUntilMs + this.config.failoverMarginMs < nowMs;
  }

  /** Nodes to declare failed now (not failed yet, lease ended more than `failoverMarginMs` ago), by id. */
  nodesToFail(state: ClusterReadView, nowMs: number): NodeFailure[] {
    return state.listNodes()
      .filter((n) => n.state !== "failed" && this.expired(n.leaseUntilMs, nowMs))
      .map((n) => ({ node: n.id, leaseUntilMs: n.leaseUntilMs, leaseEndedAgoMs: nowMs - n.leaseUntilMs }));
  }

  /**
   * The VMs to fail over now, in order: those owned by failed nodes whose lease ended more than the
   * margin ago, and pending VMs not tried for `pendingRetryMs`; high priority first, then by id; at
   * most `failoversPerPass`. Propose `failover` for each (at the VM's epoch) and report the result to
   * `failoverDone`. "do-not-restart" needs nothing here: the state machine places such a VM stopped.
   */
  failoverOrder(state: ClusterReadView, nowMs: number): VmRecord[] {
    const failed = new Set(state.listNodes().filter((n) => n.state === "failed" && this.expired(n.leaseUntilMs, nowMs)).map((n) => n.id));
    const retryMs = this.config.pendingRetryMs;
    return state.listVms()
      .filter((vm) => (vm.owner !== null && failed.has(vm.owner)) || (vm.owner === null && nowMs - (this.pendingTried.get(vm.id) ?? 0) >= retryMs))
      .sort((a, b) => PRIORITY_RANK[a.spec.priority] - PRIORITY_RANK[b.spec.priority] || byId(a, b))
      .slice(0, this.config.failoversPerPass);
  }

  /** Records the outcome of a failover of `vm` (as it was when ordered) proposed at `nowMs`. */
  failoverDone(vm: VmRecord, result: ClusterResult | null, nowMs: number): void {
    if (vm.owner === null) this.pendingTried.set(vm.id, nowMs);
    if (result !== null && result.ok && result.type === "failover" && result.owner !== null) this.pendingTried.delete(vm.id);
    if (this.pendingTried.size > this.config.memoryEntriesMax) this.pendingTried.clear();
  }

  // ---- drains ----

  /**
   * The steps of one drain pass, computed lazily from `state` as the caller asks for them: for each
   * draining node (by id), "drained" when it owns nothing and takes part in no migration; else moves
   * of its VMs — running ones by live migration, at most `drainParallel` in flight per node, stopped
   * ones by moving their ownership — to where the placement policy puts them. A VM in backoff, one
   * with a migration in flight, a paused VM and one with a saved state (which stays on its node) are
   * left for now; one that no node can take is deferred with a growing delay.
   */
  *drainSteps(state: ClusterReadView, nowMs: number): Generator<DrainStep, void, undefined> {
    for (const node of state.listNodes()) {
      if (node.state !== "draining") continue;
      const owned = state.listVms({ node: node.id });
      const flights = state.listMigrations().filter((m) => m.from === node.id || m.to === node.id);
      if (owned.length === 0 && flights.length === 0) {
        yield { kind: "drained", node: node.id };
        continue;
      }
      let slots = this.config.drainParallel - flights.filter((m) => m.from === node.id).length;
      for (const vm of owned) {
        if (slots <= 0) break;
        if (state.getMigration(vm.id) !== null) continue;
        const tried = this.drainAttempts.get(vm.id);
        if (tried !== undefined && tried.nextAtMs > nowMs) continue;
        if (vm.desiredState === "saved" || vm.savedState !== null) continue;
        const reported = vm.actual !== null && vm.actual.epoch === vm.epoch ? vm.actual.state : null;
        const runs = reported === "running" && vm.desiredState === "running";
        const off = vm.desiredState !== "paused" && reported !== "running" && reported !== "paused" && reported !== "starting" && reported !== "stopping";
        if (!runs && !off) continue;
        const target = state.placeAway(vm.id, nowMs);
        if (!target.ok) {
          const reason = `no node can take it: ${target.reason}`;
          const backoff = this.drainFailed(vm.id, nowMs, reason);
          yield { kind: "deferred", vm: vm.id, node: node.id, reason, delayMs: backoff.delayMs, changed: backoff.changed };
          continue;
        }
        slots--;
        yield { kind: "move", vm: vm.id, from: node.id, to: target.node, live: runs };
      }
    }
  }

  /** Records a failed move of a draining node's VM: tried again after 0.5 s × 2^attempts, at most `drainRetryMsMax`. */
  drainFailed(vm: string, nowMs: number, reason: string): DrainBackoff {
    const previous = this.drainAttempts.get(vm);
    const count = (previous?.count ?? 0) + 1;
    const delayMs = Math.min(this.config.drainRetryMsMax, 500 * 2 ** Math.min(count, 10));
    this.drainAttempts.set(vm, { count, nextAtMs: nowMs + delayMs, reason });
    if (this.drainAttempts.size > this.config.memoryEntriesMax) this.drainAttempts.clear();
    return { count, delayMs, nextAtMs: nowMs + delayMs, changed: previous?.reason !== reason };
  }

  /** A move of `vm` succeeded (or was handed over): its backoff is forgotten. */
  drainDone(vm: string): void {
    this.drainAttempts.delete(vm);
  }

  /** Why the VMs of a draining node that have not moved are still there. */
  drainBlockers(state: ClusterReadView, node: string): string[] {
    const out: string[] = [];
    for (const vm of state.listVms({ node })) {
      const tried = this.drainAttempts.get(vm.id);
      if (vm.desiredState === "saved" || vm.savedState !== null) out.push(`${vm.id}: has a saved state on ${node}`);
      else if (vm.desiredState === "paused") out.push(`${vm.id}: paused`);
      else if (tried !== undefined) out.push(`${vm.id}: ${tried.reason}`);
    }
    return out;
  }

  // ---- rebalancing ----

  /**
   * Every `rebalanceIntervalMs`: the one live migration that best evens out the most and least loaded
   * active nodes (see `planRebalance`), or null. Quiet while any migration is in flight or a node
   * drains; a VM it moves is left alone for five intervals (recorded when the move is returned).
   */
  planRebalance(state: ClusterReadView, nowMs: number): RebalanceMove | null {
    const interval = this.config.rebalanceIntervalMs;
    if (interval === 0 || nowMs - this.lastRebalanceMs < interval) return null;
    this.lastRebalanceMs = nowMs;
    if (state.listMigrations().length > 0 || state.listNodes().some((n) => n.state === "draining")) return null;
    for (const [vm, at] of this.rebalanced) if (nowMs - at >= REBALANCE_HOLD_INTERVALS * interval) this.rebalanced.delete(vm);
    const plan = planRebalance(
      state.listNodes(), state.listVms(), nowMs, { threshold: this.config.rebalanceThresholdPercent / 100 },
      (vm) => vm.desiredState === "running" && vm.savedState === null && vm.actual?.epoch === vm.epoch && vm.actual.state === "running" && !this.rebalanced.has(vm.id),
      (vm, node) => state.fitsOn(vm.id, node, nowMs),
    );
    if (plan !== null) this.rebalanced.set(plan.vm, nowMs);
    return plan;
  }
}
