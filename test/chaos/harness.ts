/**
 * The chaos harness: a `ChaosCluster` with VMs that have disks (vmbus-probe guests writing numbered
 * records) and a memory-dirtying guest to migrate, and the faults it injects, one trial at a time.
 * Each trial notes what the probes had written, injects its fault, brings the cluster back (killed
 * nodes restarted on their data directories, links healed, the nats-server started again), lets it
 * settle and runs the external checker (`checker.ts`) over everything collected. Every wait is
 * bounded in time and in turns; a trial that does not settle is reported, never waited on forever.
 */
import type { ApiClient, MigrationUpdate, Vm } from "../../packages/api/src/index.js";
import { checkAccepted, checkDisk, checkNoOverlap, closestHandoverMs, parseDiskView, runIntervals, type DiskView, type Violation, type VmView } from "./checker.js";
import { httpStatus } from "../../services/fleetd/src/local-cluster.js";
import { ChaosCluster, sleep } from "./cluster.js";

const MIB = 2 ** 20;

export type MigrationMoment = "early" | "rounds" | "switchover";

export type Fault =
  | { readonly kind: "kill-node" }
  | { readonly kind: "kill-leader" }
  | { readonly kind: "kill-migration-source"; readonly moment: MigrationMoment }
  | { readonly kind: "kill-migration-destination"; readonly moment: MigrationMoment }
  | { readonly kind: "nats-restart"; readonly downMs: number }
  | { readonly kind: "partition"; readonly cutMs: number };

export function faultName(f: Fault): string {
  switch (f.kind) {
    case "kill-migration-source":
    case "kill-migration-destination":
      return `${f.kind} (${f.moment})`;
    case "nats-restart":
      return `${f.kind} (${f.downMs} ms down)`;
    case "partition":
      return `${f.kind} (${f.cutMs} ms cut)`;
    default:
      return f.kind;
  }
}

/** Every fault kind once: the CI trial set. */
export const FAULTS_EACH_ONCE: readonly Fault[] = [
  { kind: "kill-node" },
  { kind: "kill-migration-source", moment: "early" },
  { kind: "kill-migration-destination", moment: "rounds" },
  { kind: "kill-migration-source", moment: "switchover" },
  { kind: "kill-migration-destination", moment: "switchover" },
  { kind: "nats-restart", downMs: 1500 },
  { kind: "partition", cutMs: 6000 },
  { kind: "kill-leader" },
];

/** A small seeded PRNG (mulberry32): the fault schedule of a seed is always the same. */
export class Rng {
  private s: number;
  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }

  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
}

/** A random fault for `pnpm chaos`. */
export function randomFault(rng: Rng): Fault {
  const moments: readonly MigrationMoment[] = ["early", "rounds", "switchover"];
  switch (rng.int(0, 5)) {
    case 0: return { kind: "kill-node" };
    case 1: return { kind: "kill-leader" };
    case 2: return { kind: "kill-migration-source", moment: rng.pick(moments) };
    case 3: return { kind: "kill-migration-destination", moment: rng.pick(moments) };
    case 4: return { kind: "nats-restart", downMs: rng.int(500, 2500) };
    default: return { kind: "partition", cutMs: rng.int(4000, 9000) };
  }
}

export interface TrialResult {
  readonly index: number;
  readonly fault: string;
  /** What was hit: a node, and for migrations the phase seen when it was killed. */
  readonly target: string;
  readonly durationMs: number;
  /** Failovers and moves seen (VMs whose owner changed). */
  readonly moved: number;
  /** The least time between a VM's run ending on one node and starting on another in this trial (null: no hand-over). */
  readonly handoverMsMin: number | null;
  readonly violations: readonly Violation[];
}

export interface HarnessOptions {
  readonly dir: string;
  readonly nodes: number;
  /** Probe VMs with a disk (default 3). */
  readonly probes?: number;
  readonly log?: (line: string) => void;
  /** How long a trial may take to settle (default 90,000 ms). */
  readonly settleTimeoutMs?: number;
}

/** The leases and margins of the chaos cluster: quick failover, as in the fencing tests. */
export const CHAOS_ENV = { HYPERFLEET_LEASE_MS: "2000", HYPERFLEET_FENCE_MARGIN_MS: "500", HYPERFLEET_FAILOVER_MARGIN_MS: "300" } as const;

const MIGRATING_VM = "mover";

function describeVms(vms: readonly Vm[]): string {
  return vms.map((v) => `${v.name}:${v.state.replace("VM_STATE_", "")}@${v.owner || "-"}/${v.epoch}${v.migrationId !== "" ? "(migrating)" : ""}`).join(" ");
}

/** Polls `probe` every 200 ms until it returns a value, at most `timeoutMs`; undefined when it never did. */
async function poll<T>(timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000 && Date.now() < deadline; i++) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch {
      // a node may be down or electing: ask again
    }
    await sleep(200);
  }
  return undefined;
}

export class ChaosHarness {
  /** Per probe VM: the last record it printed (durable by then), and at which epoch it was seen. */
  private readonly floors = new Map<string, { record: number; epoch: number }>();
  private trials = 0;
  /** Why the last settle was not there yet. */
  private unsettled = "";
  /** Whether the last trial ended settled (if not, the next one waits less before its fault). */
  private lastSettled = true;

  private constructor(readonly cluster: ChaosCluster, readonly vms: readonly string[], readonly probes: readonly string[], private readonly options: HarnessOptions) {}

  static async start(options: HarnessOptions): Promise<ChaosHarness> {
    const cluster = await ChaosCluster.start({ nodes: options.nodes, dir: options.dir, memoryMib: 128, env: CHAOS_ENV });
    try {
      const probes = Array.from({ length: options.probes ?? 3 }, (_, i) => `probe${i + 1}`);
      const h = new ChaosHarness(cluster, [...probes, MIGRATING_VM], probes, options);
      const api = await h.anyApi();
      for (const p of probes) {
        await api.createVm({ name: p, memoryBytes: 16 * MIB, vcpus: 1, image: "vmbus-probe", bootargs: "rate=20", diskBytes: [8 * MIB], start: true });
      }
      await api.createVm({ name: MIGRATING_VM, memoryBytes: 16 * MIB, vcpus: 1, image: "dirtier", bootargs: "rate=400 ws=4", start: true });
      const views = await h.settle(60_000);
      if (views === null) throw new Error("the chaos cluster's VMs did not all start within 60 s");
      for (const p of probes) await h.noteFloor(p, views);
      return h;
    } catch (e) {
      await cluster.stop();
      throw e;
    }
  }

  private log(line: string): void {
    this.options.log?.(line);
  }

  /** A client of some running node (the leader forwards what needs it). */
  private async anyApi(exclude: readonly string[] = []): Promise<ApiClient> {
    for (const n of this.cluster.nodes) if (this.cluster.alive(n.id) && !exclude.includes(n.id)) return this.cluster.api(n.id);
    throw new Error("no node is running");
  }

  private async listVms(exclude: readonly string[] = []): Promise<Vm[]> {
    return (await (await this.anyApi(exclude)).listVms()).vms;
  }

  /**
   * Waits until every node runs and is healthy and active with a live lease, and every accepted VM
   * runs (or is pending with a reason) with no migration in flight; null when that did not happen
   * within `timeoutMs`.
   */
  async settle(timeoutMs = this.options.settleTimeoutMs ?? 90_000): Promise<Vm[] | null> {
    this.unsettled = "nothing answered";
    const found = await poll(timeoutMs, async () => {
      for (const n of this.cluster.nodes) if (!this.cluster.alive(n.id)) return this.notYet(`${n.id} is down`);
      // healthy: it knows a leader and reaches nats-server again (after an outage it reconnects)
      for (const n of this.cluster.nodes) {
        if ((await httpStatus(n.httpAddress, "/healthz").catch(() => 0)) !== 200) return this.notYet(`${n.id} is not healthy`);
      }
      const api = await this.anyApi();
      const nodes = (await api.listNodes()).nodes;
      const bad = nodes.filter((n) => n.state !== "NODE_STATE_ACTIVE" || !n.leaseLive);
      if (nodes.length !== this.cluster.nodes.length || bad.length > 0) {
        return this.notYet(`nodes ${bad.map((n) => `${n.id}:${n.state.replace("NODE_STATE_", "")}${n.leaseLive ? "" : "(no lease)"}`).join(" ")}`);
      }
      const vms = (await api.listVms()).vms;
      const waiting = this.vms.filter((name) => {
        const v = vms.find((x) => x.name === name);
        return v === undefined || v.migrationId !== "" || !((v.owner !== "" && v.state === "VM_STATE_RUNNING") || (v.owner === "" && v.pendingReason !== ""));
      });
      if (waiting.length > 0) return this.notYet(`vms ${describeVms(vms.filter((v) => waiting.includes(v.name)))}`);
      // the nodes' run records agree with the cluster's view (a report may lag behind what a node did)
      const disagree = this.checkRecords(vms).filter((v) => v.rule === "accepted");
      if (disagree.length > 0) return this.notYet(disagree[0]!.message);
      return vms;
    });
    return found ?? null;
  }

  private notYet(reason: string): undefined {
    this.unsettled = reason;
    return undefined;
  }

  /** The console history of `vm`'s current run, from its owner (at most ~3 s). */
  private async consoleOf(owner: string, vm: string): Promise<string> {
    const conn = this.cluster.api(owner, 5000).attachConsole(vm);
    let text = "";
    const reading = (async () => {
      for await (const chunk of conn.output) {
        text += Buffer.from(chunk.data).toString("utf8");
        if (chunk.history === true) break;
      }
    })().catch(() => undefined);
    await Promise.race([reading, sleep(3000)]);
    conn.cancel();
    return text;
  }

  /** Reads what a probe has written so far and raises its floor. */
  private async noteFloor(vm: string, views: readonly Vm[]): Promise<void> {
    const v = views.find((x) => x.name === vm);
    if (v === undefined || v.owner === "" || !this.cluster.alive(v.owner)) return;
    const d = parseDiskView(await this.consoleOf(v.owner, vm));
    const record = Math.max(d.lastRecord ?? 0, d.verified?.upTo ?? 0, this.floors.get(vm)?.record ?? 0);
    this.floors.set(vm, { record, epoch: v.epoch });
  }

  /**
   * Rule 3 for every probe: its current run shows its disk check (a new run) or a record past the
   * floor (the same run, or one that arrived by migration), within 20 s; then the checker decides.
   */
  private async checkDisks(views: readonly Vm[]): Promise<Violation[]> {
    const out: Violation[] = [];
    for (const vm of this.probes) {
      const v = views.find((x) => x.name === vm);
      const floor = this.floors.get(vm) ?? { record: 0, epoch: -1 };
      if (v === undefined || v.owner === "") continue; // rule 2 speaks of it
      const sameRun = v.epoch === floor.epoch;
      const seen = await poll(20_000, async () => {
        const raw = parseDiskView(await this.consoleOf(v.owner, vm));
        const d: DiskView = sameRun ? { ...raw, verified: null } : raw;
        return d.verified !== null || d.corrupt || (d.lastRecord !== null && d.lastRecord > floor.record) ? d : undefined;
      });
      if (seen === undefined) {
        out.push({ rule: "disk", vm, message: `vm ${vm}: no disk check nor a record past ${floor.record} on ${v.owner} within 20 s` });
        continue;
      }
      out.push(...checkDisk(vm, floor.record, seen));
      this.floors.set(vm, { record: Math.max(floor.record, seen.lastRecord ?? 0, seen.verified?.upTo ?? 0), epoch: v.epoch });
    }
    return out;
  }

  /** Rules 1 and 2 (rule 2 only with the cluster's view, after a settle). */
  checkRecords(views: readonly Vm[] | null): Violation[] {
    const runs = runIntervals(this.cluster.runRecords(), this.cluster.deaths, Date.now());
    const out = checkNoOverlap(runs);
    if (views !== null) {
      const reduced: VmView[] = views.map((v) => ({ name: v.name, state: v.state, owner: v.owner, epoch: v.epoch, pendingReason: v.pendingReason }));
      out.push(...checkAccepted(this.vms, reduced, runs));
    }
    return out;
  }

  /** One trial: the fault, recovery, settle, checks. */
  async trial(fault: Fault): Promise<TrialResult> {
    const index = ++this.trials;
    const started = Date.now();
    this.log(`trial ${index}: ${faultName(fault)}`);
    const violations: Violation[] = [];
    // after a trial that did not settle, waiting the whole time again would only repeat its report
    const settled = await this.settle(this.lastSettled ? undefined : 15_000);
    if (settled === null) violations.push({ rule: "accepted", vm: "-", message: `not settled before the fault: ${this.unsettled}` });
    const before = settled ?? (await this.listVms());
    for (const p of this.probes) await this.noteFloor(p, before).catch(() => undefined);
    let target = "";
    try {
      target = await this.inject(fault, before);
    } catch (e) {
      violations.push({ rule: "accepted", vm: "-", message: `the fault could not be carried out: ${e instanceof Error ? e.message : String(e)}` });
    }
    // recovery: every node running again, links healed, the nats-server up
    for (const n of this.cluster.nodes) this.cluster.heal(n.id);
    for (const n of this.cluster.nodes) {
      if (this.cluster.alive(n.id)) continue;
      await this.cluster.restart(n.id).catch((e: unknown) => violations.push({ rule: "accepted", vm: "-", message: `node ${n.id} did not come back: ${e instanceof Error ? e.message : String(e)}` }));
    }
    const views = await this.settle();
    this.lastSettled = views !== null;
    if (views === null) {
      violations.push({ rule: "accepted", vm: "-", message: `the cluster did not settle within ${this.options.settleTimeoutMs ?? 90_000} ms: ${this.unsettled}` });
    }
    violations.push(...this.checkRecords(views ?? await this.listVms().catch(() => null)));
    if (views !== null) violations.push(...await this.checkDisks(views));
    const moved = views === null ? 0 : views.filter((v) => before.find((b) => b.name === v.name)?.owner !== v.owner).length;
    const handoverMsMin = closestHandoverMs(runIntervals(this.cluster.runRecords(), this.cluster.deaths, Date.now()), started);
    const result: TrialResult = { index, fault: faultName(fault), target, durationMs: Date.now() - started, moved, handoverMsMin, violations };
    this.log(`trial ${index}: ${result.fault} on ${target}: ${violations.length === 0 ? "ok" : `${violations.length} violation(s)`} in ${result.durationMs} ms`);
    for (const v of violations) this.log(`  ${v.rule}: ${v.message}`);
    return result;
  }

  /** The final check: rules 1 and 2 over the whole run, then the cluster is stopped and rule 1 once more. */
  async finish(): Promise<Violation[]> {
    const views = await this.settle(30_000);
    const out = this.checkRecords(views);
    await this.cluster.stop();
    out.push(...checkNoOverlap(runIntervals(this.cluster.runRecords(), this.cluster.deaths, Date.now())));
    return out;
  }

  async stop(): Promise<void> {
    await this.cluster.stop();
  }

  private owners(vms: readonly Vm[]): Map<string, number> {
    const count = new Map<string, number>();
    for (const v of vms) if (v.owner !== "") count.set(v.owner, (count.get(v.owner) ?? 0) + 1);
    return count;
  }

  /** Waits (bounded) until no VM belongs to `node` any more and they run elsewhere or are pending. */
  private async waitMovedAway(node: string, timeoutMs = 30_000): Promise<void> {
    await poll(timeoutMs, async () => {
      const vms = await this.listVms([node]);
      return vms.every((v) => v.owner !== node && (v.state === "VM_STATE_RUNNING" || v.owner === "")) ? true : undefined;
    });
  }

  private async inject(fault: Fault, before: readonly Vm[]): Promise<string> {
    const owners = this.owners(before);
    const busiest = [...this.cluster.nodes.map((n) => n.id)].sort((a, b) => (owners.get(b) ?? 0) - (owners.get(a) ?? 0));
    switch (fault.kind) {
      case "kill-node": {
        const leader = await this.cluster.leader();
        // the node with the most VMs, not the leader when another has VMs too
        const victim = busiest.find((id) => id !== leader && (owners.get(id) ?? 0) > 0) ?? busiest[0]!;
        await this.cluster.kill(victim);
        await this.waitMovedAway(victim);
        return victim;
      }
      case "kill-leader": {
        const leader = await this.cluster.leader();
        if (leader === null) throw new Error("no leader");
        await this.cluster.kill(leader);
        await this.waitMovedAway(leader, 40_000);
        return leader;
      }
      case "nats-restart": {
        await this.cluster.stopNats();
        await sleep(fault.downMs);
        await this.cluster.startNats();
        return "nats-server";
      }
      case "partition": {
        const victim = busiest[0]!;
        this.cluster.cut(victim);
        await sleep(fault.cutMs);
        this.cluster.heal(victim);
        return victim;
      }
      case "kill-migration-source":
      case "kill-migration-destination":
        return this.migrationKill(fault.kind === "kill-migration-source" ? "source" : "destination", fault.moment, before);
    }
  }

  /**
   * Starts a live migration of the memory-dirtying VM (bandwidth-limited, so its rounds take a while)
   * and kills its source or destination: at once ("early"), once pre-copy is past its first round
   * ("rounds"), or when the stop-and-copy or commit phase is reported ("switchover"). Returns the
   * node killed and the phase last seen.
   */
  private async migrationKill(side: "source" | "destination", moment: MigrationMoment, before: readonly Vm[]): Promise<string> {
    const vm = before.find((v) => v.name === MIGRATING_VM);
    if (vm === undefined || vm.owner === "") throw new Error(`${MIGRATING_VM} has no owner`);
    const source = vm.owner;
    const others = this.cluster.nodes.map((n) => n.id).filter((id) => id !== source);
    const target = others[0]!;
    const observer = others.find((id) => id !== target) ?? target;
    const api = this.cluster.api(observer);
    const { migrationId } = await api.migrate({
      vm: MIGRATING_VM, targetNode: target, kind: "MIGRATION_KIND_LIVE", // "rounds": a downtime budget of 1 ms is never met, so pre-copy goes round after round
      downtimeLimitMs: moment === "switchover" ? 1500 : moment === "rounds" ? 1 : 300,
      bandwidthLimitBytesPerSecond: 2_000_000, maxRounds: 30, policy: "NO_CONVERGENCE_POLICY_AUTO_CONVERGE",
    });
    const victim = side === "source" ? source : target;
    let seen = "started";
    if (moment !== "early") {
      const watch = api.watchMigration({ migrationId }, { timeoutMs: 30_000 });
      const trigger = (u: MigrationUpdate): boolean => {
        if (u.update === "result") {
          seen = u.result.ok ? "done (too late)" : `failed: ${u.result.failureReason}`;
          return true;
        }
        const p = u.progress;
        seen = `${p.phase.replace("MIGRATION_PHASE_", "").toLowerCase()} round ${p.round}`;
        if (moment === "rounds") return p.phase === "MIGRATION_PHASE_PRECOPY" && p.round >= 2;
        return p.phase === "MIGRATION_PHASE_STOP_AND_COPY" || p.phase === "MIGRATION_PHASE_COMMIT";
      };
      const watched = (async () => {
        for await (const u of watch) if (trigger(u)) return;
      })().catch(() => undefined);
      await Promise.race([watched, sleep(30_000)]);
      watch.cancel();
    }
    await this.cluster.kill(victim);
    if (side === "source") await this.waitMovedAway(victim);
    else await sleep(3000);
    return `${victim} (${side} at ${seen})`;
  }
}
