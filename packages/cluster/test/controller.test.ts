import { describe, expect, it } from "vitest";
import type { ControllerConfig, DrainStep } from "../src/controller.js";
import { LeaderController } from "../src/controller.js";
import { GiB, Harness, MiB, nodeCommand, spec } from "./helpers.js";

const CONFIG: ControllerConfig = { leaseMs: 10_000, failoverMarginMs: 1000, rebalanceIntervalMs: 0, rebalanceThresholdPercent: 20 };

function controller(extra: Partial<ControllerConfig> = {}): LeaderController {
  return new LeaderController({ ...CONFIG, ...extra });
}

/** Marks `vm` reported running by its owner at its epoch. */
function running(h: Harness, vm: string, atMs: number): void {
  const record = h.state.getVm(vm)!;
  h.ok({ type: "reportActual", atMs, vm, node: record.owner!, epoch: record.epoch, actual: "running" });
}

function steps(c: LeaderController, h: Harness, nowMs: number): DrainStep[] {
  return [...c.drainSteps(h.state, nowMs)];
}

describe("controller - failure detection", () => {
  it("declares a node failed only once its lease ended more than failoverMarginMs ago", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", 4 * GiB, 4, 0)); // lease until 10 000
    h.ok(nodeCommand("n2", 4 * GiB, 4, 0, { leaseUntilMs: 30_000 }));
    const c = controller();
    expect(c.nodesToFail(h.state, 11_000)).toEqual([]); // ended 1000 ms ago: not more than the margin
    expect(c.nodesToFail(h.state, 11_001)).toEqual([{ node: "n1", leaseUntilMs: 10_000, leaseEndedAgoMs: 1001 }]);
    h.ok({ type: "setNodeState", atMs: 11_001, node: "n1", state: "failed" });
    expect(c.nodesToFail(h.state, 20_000)).toEqual([]); // already failed
  });

  it("waits half a lease plus the margin after becoming the leader before failing anything over", () => {
    const c = controller();
    expect(c.failoversAllowed(50_000, null)).toBe(false);
    expect(c.failoversAllowed(50_000 + 5_999, 50_000)).toBe(false);
    expect(c.failoversAllowed(50_000 + 6_000, 50_000)).toBe(true);
  });
});

describe("controller - failover", () => {
  function failedCluster(): Harness {
    const h = new Harness();
    h.ok(nodeCommand("n1", 8 * GiB, 8, 0));
    h.ok(nodeCommand("n2", 8 * GiB, 8, 0, { leaseUntilMs: 60_000 }));
    const vms = [["d", "low"], ["c", "normal"], ["b", "high"], ["a", "normal"], ["e", "high"]] as const;
    for (const [id, priority] of vms) h.ok({ type: "createVm", atMs: 1, vm: id, spec: spec(512 * MiB, 1, { priority }), node: "n1" });
    h.ok({ type: "setNodeState", atMs: 12_000, node: "n1", state: "failed" });
    return h;
  }

  it("orders the VMs of failed nodes high priority first, then by id, at most failoversPerPass", () => {
    const h = failedCluster();
    expect(controller().failoverOrder(h.state, 12_000).map((vm) => vm.id)).toEqual(["b", "e", "a", "c", "d"]);
    expect(controller({ failoversPerPass: 2 }).failoverOrder(h.state, 12_000).map((vm) => vm.id)).toEqual(["b", "e"]);
  });

  it("leaves the VMs of a failed node alone while its lease plus margin has not run out", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", 8 * GiB, 8, 0));
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(512 * MiB), node: "n1" });
    h.ok({ type: "setNodeState", atMs: 2, node: "n1", state: "failed" }); // an operator's word, the lease still runs
    expect(controller().failoverOrder(h.state, 10_500)).toEqual([]);
    expect(controller().failoverOrder(h.state, 11_001).map((vm) => vm.id)).toEqual(["a"]);
  });

  it("retries a pending VM only every pendingRetryMs and forgets it once placed", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", 1 * GiB, 4, 0));
    h.ok(nodeCommand("n2", 512 * MiB, 4, 0, { leaseUntilMs: 60_000 }));
    h.ok({ type: "createVm", atMs: 1, vm: "big", spec: spec(1 * GiB), node: "n1" });
    h.ok({ type: "setNodeState", atMs: 12_000, node: "n1", state: "failed" });
    const c = controller();
    const [first] = c.failoverOrder(h.state, 12_000);
    const result = h.ok({ type: "failover", atMs: 12_000, vm: "big", epoch: first!.epoch });
    expect(result.owner).toBeNull(); // no room on n2: pending with a reason
    c.failoverDone(first!, result, 12_000);
    const pending = h.state.getVm("big")!;
    expect(pending.pendingReason).not.toBeNull();
    // A pending VM is tried at once the first time, then every 2 s.
    const [again] = c.failoverOrder(h.state, 12_100);
    expect(again!.id).toBe("big");
    c.failoverDone(again!, h.run({ type: "failover", atMs: 12_100, vm: "big", epoch: again!.epoch }), 12_100);
    expect(c.failoverOrder(h.state, 14_000)).toEqual([]);
    expect(c.failoverOrder(h.state, 14_100).map((vm) => vm.id)).toEqual(["big"]);
  });

  it("places a do-not-restart VM stopped (the state machine's rule, in the same order)", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", 4 * GiB, 4, 0));
    h.ok(nodeCommand("n2", 4 * GiB, 4, 0, { leaseUntilMs: 60_000 }));
    h.ok({ type: "createVm", atMs: 1, vm: "keep", spec: spec(512 * MiB, 1, { restartPolicy: "do-not-restart", priority: "high" }), node: "n1" });
    h.ok({ type: "createVm", atMs: 1, vm: "run", spec: spec(512 * MiB), node: "n1" });
    h.ok({ type: "setNodeState", atMs: 12_000, node: "n1", state: "failed" });
    const c = controller();
    const order = c.failoverOrder(h.state, 12_000);
    expect(order.map((vm) => vm.id)).toEqual(["keep", "run"]);
    for (const vm of order) c.failoverDone(vm, h.ok({ type: "failover", atMs: 12_000, vm: vm.id, epoch: vm.epoch }), 12_000);
    expect(h.state.getVm("keep")).toMatchObject({ owner: "n2", desiredState: "stopped" });
    expect(h.state.getVm("run")).toMatchObject({ owner: "n2", desiredState: "running" });
  });
});

describe("controller - drains", () => {
  function drainCluster(): Harness {
    const h = new Harness();
    h.ok(nodeCommand("n1", 8 * GiB, 8, 0, { leaseUntilMs: 60_000 }));
    h.ok(nodeCommand("n2", 8 * GiB, 8, 0, { leaseUntilMs: 60_000 }));
    for (const id of ["a", "b", "c"]) {
      h.ok({ type: "createVm", atMs: 1, vm: id, spec: spec(512 * MiB), node: "n1" });
      running(h, id, 1);
    }
    h.ok({ type: "createVm", atMs: 1, vm: "off", spec: spec(512 * MiB), desiredState: "stopped", node: "n1" });
    h.ok({ type: "setNodeState", atMs: 2, node: "n1", state: "draining" });
    return h;
  }

  it("live-migrates running VMs at most drainParallel at a time and moves a stopped one by transfer", () => {
    const h = drainCluster();
    const c = controller();
    expect(steps(c, h, 3)).toEqual([
      { kind: "move", vm: "a", from: "n1", to: "n2", live: true },
      { kind: "move", vm: "b", from: "n1", to: "n2", live: true },
    ]);
    // With one live migration in flight only one slot is left; the stopped VM comes in its turn.
    h.ok({ type: "beginMigration", atMs: 3, vm: "a", from: "n1", to: "n2", kind: "live" });
    expect(steps(c, h, 3)).toEqual([{ kind: "move", vm: "b", from: "n1", to: "n2", live: true }]);
    expect(steps(controller({ drainParallel: 4 }), h, 3)).toEqual([
      { kind: "move", vm: "b", from: "n1", to: "n2", live: true },
      { kind: "move", vm: "c", from: "n1", to: "n2", live: true },
      { kind: "move", vm: "off", from: "n1", to: "n2", live: false },
    ]);
  });

  it("reads the state lazily: a step committed before the next is seen by it", () => {
    const h = drainCluster();
    const c = controller({ drainParallel: 1 });
    const seen: DrainStep[] = [];
    for (const step of c.drainSteps(h.state, 3)) {
      seen.push(step);
      if (step.kind === "move") h.ok({ type: "beginMigration", atMs: 3, vm: step.vm, from: step.from, to: step.to, kind: "live" });
    }
    expect(seen).toEqual([{ kind: "move", vm: "a", from: "n1", to: "n2", live: true }]);
  });

  it("marks a draining node drained once it owns nothing and takes part in no migration", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", 8 * GiB, 8, 0, { leaseUntilMs: 60_000 }));
    h.ok(nodeCommand("n2", 8 * GiB, 8, 0, { leaseUntilMs: 60_000 }));
    h.ok({ type: "setNodeState", atMs: 2, node: "n1", state: "draining" });
    expect(steps(controller(), h, 3)).toEqual([{ kind: "drained", node: "n1" }]);
  });

  it("backs off a VM no node can take, with a growing delay, and says why it stays", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", 8 * GiB, 8, 0, { leaseUntilMs: 60_000 }));
    h.ok(nodeCommand("n2", 1 * GiB, 8, 0, { leaseUntilMs: 60_000 }));
    h.ok({ type: "createVm", atMs: 1, vm: "big", spec: spec(2 * GiB), node: "n1" });
    running(h, "big", 1);
    h.ok({ type: "setNodeState", atMs: 2, node: "n1", state: "draining" });
    const c = controller();
    const [first] = steps(c, h, 1000);
    expect(first).toMatchObject({ kind: "deferred", vm: "big", delayMs: 1000, changed: true });
    expect(steps(c, h, 1999)).toEqual([]); // still backing off
    expect(steps(c, h, 2000)[0]).toMatchObject({ kind: "deferred", vm: "big", delayMs: 2000, changed: false });
    expect(c.drainBlockers(h.state, "n1")[0]).toMatch(/^big: no node can take it/);
    for (let i = 0; i < 12; i++) c.drainFailed("big", 5000, "migration failed");
    expect(c.drainFailed("big", 5000, "migration failed").delayMs).toBe(30_000);
    c.drainDone("big");
    expect(c.drainBlockers(h.state, "n1")).toEqual([]);
  });

  it("leaves a paused VM and one being started, and names the paused one as a blocker", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", 8 * GiB, 8, 0, { leaseUntilMs: 60_000 }));
    h.ok(nodeCommand("n2", 8 * GiB, 8, 0, { leaseUntilMs: 60_000 }));
    h.ok({ type: "createVm", atMs: 1, vm: "p", spec: spec(512 * MiB), desiredState: "paused", node: "n1" });
    h.ok({ type: "createVm", atMs: 1, vm: "s", spec: spec(512 * MiB), node: "n1" });
    h.ok({ type: "reportActual", atMs: 1, vm: "s", node: "n1", epoch: 1, actual: "starting" });
    h.ok({ type: "setNodeState", atMs: 2, node: "n1", state: "draining" });
    const c = controller();
    expect(steps(c, h, 3)).toEqual([]);
    expect(c.drainBlockers(h.state, "n1")).toEqual(["p: paused"]);
  });
});

describe("controller - rebalance", () => {
  it("moves one VM per interval, stays quiet while a migration is in flight, and never moves one back", () => {
    const h = new Harness({ leaseMsMax: 600_000 });
    h.ok(nodeCommand("n1", 4 * GiB, 4, 0, { leaseUntilMs: 600_000 }));
    h.ok(nodeCommand("n2", 4 * GiB, 4, 0, { leaseUntilMs: 600_000 }));
    for (const id of ["a", "b", "c"]) {
      h.ok({ type: "createVm", atMs: 1, vm: id, spec: spec(1 * GiB), node: "n1" });
      running(h, id, 1);
    }
    const c = controller({ rebalanceIntervalMs: 10_000 });
    const plan = c.planRebalance(h.state, 10_000);
    expect(plan).toMatchObject({ from: "n1", to: "n2" });
    expect(c.planRebalance(h.state, 15_000)).toBeNull(); // within the interval
    const begun = h.ok({ type: "beginMigration", atMs: 20_000, vm: plan!.vm, from: "n1", to: "n2", kind: "live" });
    expect(c.planRebalance(h.state, 20_000)).toBeNull(); // a migration is in flight
    h.ok({ type: "transfer", atMs: 20_001, vm: plan!.vm, from: "n1", to: "n2", epoch: begun.epoch, migrationId: begun.migrationId });
    running(h, plan!.vm, 20_002);
    // n1 holds 2 GiB, n2 1 GiB: the gap (25 %) is above the threshold, but any move would flip it.
    expect(c.planRebalance(h.state, 30_000)).toBeNull();
  });

  it("does nothing when rebalancing is off", () => {
    const h = new Harness({ leaseMsMax: 600_000 });
    h.ok(nodeCommand("n1", 4 * GiB, 4, 0, { leaseUntilMs: 600_000 }));
    h.ok(nodeCommand("n2", 4 * GiB, 4, 0, { leaseUntilMs: 600_000 }));
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(3 * GiB), node: "n1" });
    running(h, "a", 1);
    expect(controller().planRebalance(h.state, 100_000)).toBeNull();
  });
});
