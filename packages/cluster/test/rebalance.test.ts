import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { planRebalance } from "../src/rebalance.js";
import { GiB, Harness, MiB, nodeCommand, spec } from "./helpers.js";

/** Applies a plan as the cluster would (begin + transfer) and returns the harness. */
function move(h: Harness, vm: string, from: string, to: string, atMs: number): void {
  const begun = h.ok({ type: "beginMigration", atMs, vm, from, to, kind: "live" });
  if (begun.type !== "beginMigration") throw new Error("not begun");
  h.ok({ type: "transfer", atMs, vm, from, to, epoch: begun.epoch, migrationId: begun.migrationId });
}

const always = (): boolean => true;

describe("rebalance - planRebalance", () => {
  it("moves a VM from the most to the least loaded node, the one that evens them out best", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", 4 * GiB, 4));
    h.ok(nodeCommand("n2", 4 * GiB, 4));
    for (const [id, size] of [["a", 2 * GiB], ["b", GiB], ["c", 512 * MiB]] as const) h.ok({ type: "createVm", atMs: 1, vm: id, spec: spec(size), node: "n1" });
    const plan = planRebalance(h.state.listNodes(), h.state.listVms(), 2, { threshold: 0.2 }, always, (vm, n) => h.state.fitsOn(vm.id, n, 2));
    // n1 holds 3.5 of 4 GiB; moving b (1 GiB) leaves 2.5 vs 1 GiB; moving a (2 GiB) would flip the gap
    expect(plan).toMatchObject({ vm: "b", from: "n1", to: "n2" });
    expect(plan!.gapAfter).toBeLessThan(plan!.gapBefore);
  });

  it("does nothing within the threshold, with one active node, or when only a flip would help", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", 4 * GiB, 4));
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(GiB), node: "n1" });
    const plan = (): ReturnType<typeof planRebalance> => planRebalance(h.state.listNodes(), h.state.listVms(), 2, { threshold: 0.2 }, always, (vm, n) => h.state.fitsOn(vm.id, n, 2));
    expect(plan()).toBeNull(); // one node
    h.ok(nodeCommand("n2", 4 * GiB, 4));
    expect(plan()).toBeNull(); // 0.25 gap, but moving the only VM would flip it
    h.ok({ type: "createVm", atMs: 1, vm: "b", spec: spec(256 * MiB), node: "n1" });
    expect(plan()).toMatchObject({ vm: "b", to: "n2" });
    expect(planRebalance(h.state.listNodes(), h.state.listVms(), 2, { threshold: 0.5 }, always, always)).toBeNull();
    expect(planRebalance(h.state.listNodes(), h.state.listVms(), 2, { threshold: 0.2 }, (vm) => vm.id !== "b", always)).toBeNull();
  });

  it("never targets a draining node, one with an expired lease, or one the VM does not fit on", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", 4 * GiB, 4));
    h.ok(nodeCommand("n2", 4 * GiB, 4, 0, { leaseUntilMs: 3 }));
    h.ok(nodeCommand("n3", GiB, 4));
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(1536 * MiB), node: "n1" });
    h.ok({ type: "createVm", atMs: 1, vm: "b", spec: spec(1536 * MiB), node: "n1" });
    h.ok({ type: "createVm", atMs: 1, vm: "c", spec: spec(256 * MiB), node: "n3" });
    h.ok({ type: "setNodeState", atMs: 1, node: "n3", state: "draining" });
    // n2's lease has ended at 5, n3 drains: nothing to balance against
    expect(planRebalance(h.state.listNodes(), h.state.listVms(), 5, { threshold: 0.1 }, always, (vm, n) => h.state.fitsOn(vm.id, n, 5))).toBeNull();
    h.ok({ type: "setNodeState", atMs: 1, node: "n3", state: "active" });
    // n3 is loaded less, but neither VM of n1 fits in its 768 MiB free
    expect(planRebalance(h.state.listNodes(), h.state.listVms(), 5, { threshold: 0.1 }, always, (vm, n) => h.state.fitsOn(vm.id, n, 5))).toBeNull();
  });

  it("passes converge and never move a VM back: each move shrinks the gap, and moves stop", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 5 }),
        fc.array(fc.tuple(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 4 }), fc.nat(4)), { minLength: 1, maxLength: 25 }),
        fc.constantFrom(0.05, 0.1, 0.2, 0.3),
        (nodes, vms, threshold) => {
          const h = new Harness();
          for (let i = 1; i <= nodes; i++) h.ok(nodeCommand(`n${i}`, 4 * GiB, 8, 0, { leaseUntilMs: 60_000 }));
          vms.forEach(([mem, cpus, node], i) => {
            h.run({ type: "createVm", atMs: 1, vm: `v${i}`, spec: spec(mem * 64 * MiB, cpus), node: `n${(node % nodes) + 1}` });
          });
          const seen = new Map<string, string[]>();
          let moves = 0;
          for (; moves < 200; moves++) {
            const plan = planRebalance(h.state.listNodes(), h.state.listVms(), 2, { threshold }, always, (vm, n) => h.state.fitsOn(vm.id, n, 2));
            if (plan === null) break;
            expect(plan.gapAfter).toBeLessThan(plan.gapBefore);
            const path = seen.get(plan.vm) ?? [plan.from];
            expect(path, `vm ${plan.vm} goes back to a node it left`).not.toContain(plan.to);
            seen.set(plan.vm, [...path, plan.to]);
            move(h, plan.vm, plan.from, plan.to, 2);
          }
          expect(moves).toBeLessThan(200);
        },
      ),
      { numRuns: 150, seed: 4242 },
    );
  });
});
