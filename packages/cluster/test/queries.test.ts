import { describe, expect, it } from "vitest";
import { GiB, Harness, nodeCommand, spec } from "./helpers.js";

function fleet(): Harness {
  const h = new Harness();
  h.ok(nodeCommand("n2", 8 * GiB, 4));
  h.ok(nodeCommand("n1", 4 * GiB, 2));
  h.ok({ type: "createVm", atMs: 1, vm: "c", spec: spec(2 * GiB, 4), node: "n1" });
  h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(GiB, 2), node: "n2" });
  h.ok({ type: "createVm", atMs: 1, vm: "b", spec: spec(GiB, 2), node: "n1" });
  h.ok({ type: "beginMigration", atMs: 2, vm: "b", from: "n1", to: "n2", kind: "live" });
  return h;
}

describe("queries - listing", () => {
  it("lists VMs sorted by id, all or those one node owns", () => {
    const h = fleet();
    expect(h.state.listVms().map((vm) => vm.id)).toEqual(["a", "b", "c"]);
    expect(h.state.listVms({ node: "n1" }).map((vm) => vm.id)).toEqual(["b", "c"]);
    expect(h.state.listVms({ node: "n3" })).toEqual([]);
    expect(h.state.getVm("nope")).toBeNull();
    expect(h.state.listMigrations().map((m) => [m.vm, m.from, m.to])).toEqual([["b", "n1", "n2"]]);
  });

  it("lists nodes sorted by id with committed usage (reservations included) and what is left", () => {
    const nodes = fleet().state.listNodes();
    expect(nodes.map((n) => n.id)).toEqual(["n1", "n2"]);
    expect(nodes[0]).toMatchObject({ usage: { memoryBytes: 3 * GiB, vcpus: 6, vms: 2, incoming: 0 }, vcpusLimit: 8, freeMemoryBytes: GiB, freeVcpus: 2 });
    expect(nodes[1]).toMatchObject({ usage: { memoryBytes: 2 * GiB, vcpus: 4, vms: 1, incoming: 1 }, vcpusLimit: 16, freeMemoryBytes: 6 * GiB, freeVcpus: 12 });
  });
});

describe("queries - consolidation", () => {
  it("gives VMs per node, vCPU:pCPU and memory committed, per node and in total", () => {
    const c = fleet().state.consolidation();
    expect(c.nodes).toEqual([
      {
        node: "n1", state: "active", vms: 2, incoming: 0, vcpusCommitted: 6, pcpus: 2, vcpusPerPcpu: 3,
        memoryCommittedBytes: 3 * GiB, memoryCapacityBytes: 4 * GiB, memoryCommittedRatio: 0.75,
      },
      {
        node: "n2", state: "active", vms: 1, incoming: 1, vcpusCommitted: 4, pcpus: 4, vcpusPerPcpu: 1,
        memoryCommittedBytes: 2 * GiB, memoryCapacityBytes: 8 * GiB, memoryCommittedRatio: 0.25,
      },
    ]);
    expect(c).toMatchObject({
      nodeCount: 2, vmCount: 3, placedVmCount: 3, pendingVmCount: 0, migrationsInFlight: 1,
      vmsPerNode: 1.5, vcpusPerPcpu: 10 / 6, memoryCommittedRatio: 5 / 12,
    });
  });

  it("gives zeros for an empty cluster", () => {
    expect(new Harness().state.consolidation()).toEqual({
      nodes: [], nodeCount: 0, vmCount: 0, placedVmCount: 0, pendingVmCount: 0, migrationsInFlight: 0, vmsPerNode: 0, vcpusPerPcpu: 0, memoryCommittedRatio: 0,
    });
  });
});
