import { describe, expect, it } from "vitest";
import { encodeCommand } from "../src/commands.js";
import { CLUSTER_NODES_MAX } from "../src/fields.js";
import { ClusterState } from "../src/state.js";
import { GiB, Harness, MiB, nodeCommand, spec } from "./helpers.js";

describe("state - registerNode", () => {
  it("adds an active node with its lease, addresses, capacity and sorted labels", () => {
    const h = new Harness();
    expect(h.ok(nodeCommand("n1", 8 * GiB, 4, 100, { labels: { zone: "b", rack: "r1" } }))).toEqual({
      ok: true, type: "registerNode", node: "n1", created: true, leaseUntilMs: 10_100,
    });
    const node = h.state.getNode("n1")!;
    expect(node).toMatchObject({ state: "active", leaseUntilMs: 10_100, registeredAtMs: 100, capacity: { memoryBytes: 8 * GiB, vcpus: 4 } });
    expect(Object.keys(node.labels)).toEqual(["rack", "zone"]);
    expect(Object.isFrozen(node)).toBe(true);
  });

  it("updates a registered node in place: addresses, labels, capacity, a lease that only grows, the state kept", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", 8 * GiB, 4, 0));
    h.ok({ type: "setNodeState", atMs: 1, node: "n1", state: "draining" });
    const r = h.ok(nodeCommand("n1", 16 * GiB, 8, 2, { apiAddress: "10.0.0.1:7000", leaseUntilMs: 5000 }));
    expect(r).toMatchObject({ created: false, leaseUntilMs: 10_000 });
    expect(h.state.getNode("n1")).toMatchObject({ apiAddress: "10.0.0.1:7000", state: "draining", leaseUntilMs: 10_000, registeredAtMs: 0, capacity: { memoryBytes: 16 * GiB } });
  });

  it("refuses a new capacity below what is committed on the node", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", 8 * GiB, 4));
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(4 * GiB, 8) });
    h.rejected(nodeCommand("n1", 2 * GiB, 4, 2), "FAILED_PRECONDITION", `node n1 has ${4 * GiB} bytes committed, more than the new capacity.memoryBytes ${2 * GiB}`);
    h.rejected(nodeCommand("n1", 8 * GiB, 1, 2), "FAILED_PRECONDITION", "node n1 has 8 vCPUs committed, more than the new capacity.vcpus allows (4 at 4:1)");
  });

  it("refuses a node beyond the most the cluster holds", () => {
    const s = new ClusterState();
    for (let i = 0; i < CLUSTER_NODES_MAX; i++) expect(s.apply(i + 1, encodeCommand(nodeCommand(`n${i}`, GiB, 1))).ok).toBe(true);
    expect(s.apply(CLUSTER_NODES_MAX + 1, encodeCommand(nodeCommand("one-more", GiB, 1)))).toEqual({
      ok: false, command: "registerNode", code: "NO_CAPACITY", message: `the cluster already holds ${CLUSTER_NODES_MAX} nodes, the most it may hold`,
    });
    expect(s.apply(CLUSTER_NODES_MAX + 2, encodeCommand(nodeCommand("n0", 2 * GiB, 1)))).toMatchObject({ ok: true, created: false });
  });

  it("refuses a lease longer than leaseMsMax", () => {
    const h = new Harness({ leaseMsMax: 5000 });
    h.rejected(nodeCommand("n1", GiB, 1, 100), "INVALID_ARGUMENT", "registerNode.leaseUntilMs 10100 ms is more than leaseMsMax 5000 ms after atMs 100");
    expect(h.state.getNode("n1")).toBeNull();
  });
});

describe("state - renewLease", () => {
  it("extends the lease and never shrinks it", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", GiB, 1, 0));
    expect(h.ok({ type: "renewLease", atMs: 5000, node: "n1", untilMs: 15_000 })).toEqual({ ok: true, type: "renewLease", node: "n1", leaseUntilMs: 15_000 });
    expect(h.ok({ type: "renewLease", atMs: 5001, node: "n1", untilMs: 12_000 })).toMatchObject({ leaseUntilMs: 15_000 });
    expect(h.state.getNode("n1")!.leaseUntilMs).toBe(15_000);
  });

  it("refuses an unknown node and a lease too far ahead", () => {
    const h = new Harness();
    h.rejected({ type: "renewLease", atMs: 0, node: "ghost", untilMs: 1 }, "NOT_FOUND", "node ghost is not registered");
    h.ok(nodeCommand("n1", GiB, 1));
    h.rejected({ type: "renewLease", atMs: 1000, node: "n1", untilMs: 61_001 }, "INVALID_ARGUMENT", "renewLease.untilMs 61001 ms is more than leaseMsMax 60000 ms after atMs 1000");
  });
});

describe("state - setNodeState", () => {
  it("follows the lifecycle active → draining → drained → active, and treats the current state as a no-op", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", GiB, 1));
    expect(h.ok({ type: "setNodeState", atMs: 1, node: "n1", state: "draining" })).toEqual({ ok: true, type: "setNodeState", node: "n1", state: "draining", previous: "active" });
    h.ok({ type: "setNodeState", atMs: 2, node: "n1", state: "drained" });
    expect(h.ok({ type: "setNodeState", atMs: 3, node: "n1", state: "drained" })).toMatchObject({ previous: "drained" });
    h.ok({ type: "setNodeState", atMs: 4, node: "n1", state: "active" });
    h.ok({ type: "setNodeState", atMs: 5, node: "n1", state: "failed" });
    h.ok({ type: "setNodeState", atMs: 6, node: "n1", state: "drained" });
    expect(h.state.getNode("n1")!.state).toBe("drained");
  });

  it("refuses a transition outside the lifecycle, naming the allowed ones", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", GiB, 1));
    h.rejected({ type: "setNodeState", atMs: 1, node: "n1", state: "drained" }, "FAILED_PRECONDITION", "node n1 cannot go from active to drained (allowed: draining, failed)");
    h.rejected({ type: "setNodeState", atMs: 1, node: "nx", state: "failed" }, "NOT_FOUND", "node nx is not registered");
  });

  it("refuses to call a node drained while it owns VMs or takes part in a migration", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", GiB, 2));
    h.ok(nodeCommand("n2", GiB, 2));
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(256 * MiB), node: "n1" });
    h.ok({ type: "createVm", atMs: 1, vm: "b", spec: spec(256 * MiB), node: "n1" });
    h.ok({ type: "setNodeState", atMs: 2, node: "n1", state: "draining" });
    h.rejected({ type: "setNodeState", atMs: 3, node: "n1", state: "drained" }, "FAILED_PRECONDITION", "node n1 still owns 2 VMs (a, b): move them away before it is drained");
    h.ok({ type: "setNodeState", atMs: 3, node: "n2", state: "draining" });
    h.ok({ type: "setNodeState", atMs: 3, node: "n2", state: "active" });
    h.ok({ type: "beginMigration", atMs: 4, vm: "a", from: "n1", to: "n2", kind: "live" });
    h.ok({ type: "setNodeState", atMs: 5, node: "n2", state: "draining" });
    h.rejected({ type: "setNodeState", atMs: 5, node: "n2", state: "drained" }, "FAILED_PRECONDITION", "node n2 takes part in migrations in flight of a");
  });

  it("brings a failed node back only with a live lease", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", GiB, 1, 0));
    h.ok({ type: "setNodeState", atMs: 1, node: "n1", state: "failed" });
    h.rejected({ type: "setNodeState", atMs: 20_000, node: "n1", state: "active" }, "FAILED_PRECONDITION",
      "node n1's lease ended at 10000 ms (atMs 20000): a failed node becomes active only with a live lease");
    h.ok({ type: "renewLease", atMs: 20_000, node: "n1", untilMs: 30_000 });
    h.ok({ type: "setNodeState", atMs: 20_001, node: "n1", state: "active" });
  });
});

describe("state - removeNode", () => {
  it("forgets a node that owns nothing", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", GiB, 1));
    expect(h.ok({ type: "removeNode", atMs: 1, node: "n1" })).toEqual({ ok: true, type: "removeNode", node: "n1" });
    expect(h.state.getNode("n1")).toBeNull();
    expect(h.state.listNodes()).toEqual([]);
    h.rejected({ type: "removeNode", atMs: 2, node: "n1" }, "NOT_FOUND", "node n1 is not registered");
  });

  it("refuses while the node owns VMs or a migration reserves room on it", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", GiB, 1));
    h.ok(nodeCommand("n2", GiB, 1));
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(MiB), node: "n1" });
    h.rejected({ type: "removeNode", atMs: 2, node: "n1" }, "FAILED_PRECONDITION", "node n1 still owns 1 VMs (a)");
    h.ok({ type: "beginMigration", atMs: 3, vm: "a", from: "n1", to: "n2", kind: "quick" });
    h.rejected({ type: "removeNode", atMs: 4, node: "n2" }, "FAILED_PRECONDITION", "node n2 takes part in migrations in flight of a");
  });
});
