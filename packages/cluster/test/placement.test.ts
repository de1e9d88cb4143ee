import { describe, expect, it } from "vitest";
import { ClusterInvariantError } from "../src/errors.js";
import type { PlacementConfig, PlacementNode, PlacementRequest } from "../src/placement.js";
import { checkNode, formatBytes, place, UsageLedger, vcpuLimit } from "../src/placement.js";
import type { NodeState } from "../src/types.js";
import { GiB, Harness, MiB, nodeCommand, spec } from "./helpers.js";

interface NodeShape {
  memoryBytes?: number;
  pcpus?: number;
  usedMemoryBytes?: number;
  usedVcpus?: number;
  vms?: number;
  incoming?: number;
  antiAffinity?: Record<string, number>;
  affinity?: Record<string, number>;
  state?: NodeState;
  leaseUntilMs?: number;
}

function node(id: string, s: NodeShape = {}): PlacementNode {
  return {
    id,
    state: s.state ?? "active",
    leaseUntilMs: s.leaseUntilMs ?? 1_000,
    capacity: { memoryBytes: s.memoryBytes ?? 8 * GiB, vcpus: s.pcpus ?? 4 },
    usage: {
      memoryBytes: s.usedMemoryBytes ?? 0,
      vcpus: s.usedVcpus ?? 0,
      vms: s.vms ?? 0,
      incoming: s.incoming ?? 0,
      antiAffinity: new Map(Object.entries(s.antiAffinity ?? {})),
      affinity: new Map(Object.entries(s.affinity ?? {})),
    },
  };
}

function request(memoryBytes: number, vcpus = 1, extra: Partial<PlacementRequest> = {}): PlacementRequest {
  return { memoryBytes, vcpus, antiAffinityGroup: null, affinityGroup: null, atMs: 0, ...extra };
}

const bestFit: PlacementConfig = { policy: "best-fit", vcpuOvercommitRatio: 4 };
const spread: PlacementConfig = { policy: "spread", vcpuOvercommitRatio: 4 };

/** Every permutation of a small array. */
function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

describe("placement - policies", () => {
  const nodes = [
    node("n1", { usedMemoryBytes: 4 * GiB }), // 4 GiB free
    node("n2", { usedMemoryBytes: 6 * GiB }), // 2 GiB free
    node("n3", { usedMemoryBytes: 7 * GiB }), // 1 GiB free
  ];

  it("best fit picks the node left with the least free memory", () => {
    expect(place(nodes, request(1536 * MiB), bestFit)).toEqual({ ok: true, node: "n2" });
    expect(place(nodes, request(GiB), bestFit)).toEqual({ ok: true, node: "n3" });
  });

  it("spread picks the node left with the most free memory", () => {
    expect(place(nodes, request(GiB), spread)).toEqual({ ok: true, node: "n1" });
  });

  it("breaks ties by fewest VMs (incoming migrations counted), then by node id, whatever the input order", () => {
    const tied = [node("b", { vms: 2 }), node("c", { vms: 1 }), node("a", { vms: 1, incoming: 1 }), node("d", { vms: 1 })];
    for (const order of permutations(tied)) {
      expect(place(order, request(GiB), bestFit)).toEqual({ ok: true, node: "c" });
      expect(place(order, request(GiB), spread)).toEqual({ ok: true, node: "c" });
    }
  });

  it("never places two VMs of an anti-affinity group on one node, reservations included", () => {
    const group = [node("n1", { antiAffinity: { db: 1 } }), node("n2", { usedMemoryBytes: 4 * GiB, incoming: 1, antiAffinity: { db: 1 } }), node("n3", { antiAffinity: { web: 1 } })];
    expect(place(group, request(GiB, 1, { antiAffinityGroup: "db" }), bestFit)).toEqual({ ok: true, node: "n3" });
    expect(place(group, request(GiB, 1, { antiAffinityGroup: "web" }), bestFit)).toEqual({ ok: true, node: "n2" });
  });

  it("prefers a node that holds the affinity group, and falls back when it does not fit", () => {
    const group = [node("n1", { usedMemoryBytes: 6 * GiB }), node("n2", { affinity: { app: 2 } }), node("n3", { usedMemoryBytes: 7 * GiB, affinity: { app: 1 } })];
    expect(place(group, request(GiB, 1, { affinityGroup: "app" }), bestFit)).toEqual({ ok: true, node: "n3" });
    expect(place(group, request(2 * GiB, 1, { affinityGroup: "app" }), bestFit)).toEqual({ ok: true, node: "n2" });
    expect(place(group, request(2 * GiB, 1, { affinityGroup: "other" }), bestFit)).toEqual({ ok: true, node: "n1" });
    expect(place(group, request(2 * GiB, 1), spread)).toEqual({ ok: true, node: "n2" });
  });

  it("considers only active nodes whose lease is live at the request's time", () => {
    const some = [node("n1", { state: "draining" }), node("n2", { leaseUntilMs: 500 }), node("n3", { state: "failed" }), node("n4", { memoryBytes: GiB })];
    expect(place(some, request(MiB, 1, { atMs: 499 }), spread)).toEqual({ ok: true, node: "n2" });
    expect(place(some, request(MiB, 1, { atMs: 500 }), spread)).toEqual({ ok: true, node: "n4" });
  });

  it("overcommits vCPUs up to floor(pCPUs × ratio) and never memory", () => {
    expect(vcpuLimit(2, 4)).toBe(8);
    expect(vcpuLimit(3, 1.5)).toBe(4);
    const busy = [node("n1", { pcpus: 2, usedVcpus: 6 })];
    expect(place(busy, request(MiB, 2), bestFit)).toEqual({ ok: true, node: "n1" });
    expect(place(busy, request(MiB, 3), bestFit)).toMatchObject({ ok: false });
    expect(place(busy, request(MiB, 2), { policy: "best-fit", vcpuOvercommitRatio: 1 })).toMatchObject({ ok: false });
    expect(checkNode(node("n1", { memoryBytes: GiB, usedMemoryBytes: GiB - 4096 }), request(8192), bestFit)).toMatchObject({ kind: "memory" });
  });
});

describe("placement - reasons when nothing fits", () => {
  it("names the largest free memory when memory rules out every node", () => {
    const nodes = [node("n1", { memoryBytes: 4 * GiB, usedMemoryBytes: 3584 * MiB }), node("n2", { memoryBytes: 4 * GiB, usedMemoryBytes: 3 * GiB }), node("n3", { state: "draining" })];
    expect(place(nodes, request(2 * GiB), bestFit)).toEqual({ ok: false, reason: "no node has 2048 MiB free; the largest free is 1024 MiB on n2" });
  });

  it("names the most free vCPUs when vCPUs rule out every node", () => {
    const nodes = [node("n1", { pcpus: 1, usedVcpus: 3 }), node("n2", { pcpus: 1, usedVcpus: 2 })];
    expect(place(nodes, request(MiB, 4), bestFit)).toEqual({ ok: false, reason: "no node has 4 vCPUs free (overcommit 4:1); the most free is 2 on n2" });
  });

  it("names the group when anti-affinity rules out every node", () => {
    const nodes = [node("n1", { antiAffinity: { db: 1 } }), node("n2", { antiAffinity: { db: 1 } })];
    expect(place(nodes, request(MiB, 1, { antiAffinityGroup: "db" }), bestFit)).toEqual({
      ok: false, reason: "every eligible node already holds a VM of anti-affinity group db: n1, n2",
    });
  });

  it("lists why each node is ineligible, or each node's first failed check when the causes are mixed", () => {
    expect(place([], request(MiB), bestFit)).toEqual({ ok: false, reason: "no node is registered" });
    expect(place([node("n2", { state: "failed" }), node("n1", { leaseUntilMs: 5 })], request(MiB, 1, { atMs: 7 }), bestFit)).toEqual({
      ok: false, reason: "no node is active with a live lease at 7 ms: n1's lease ended at 5 ms (atMs 7); n2 is failed",
    });
    const mixed = [node("n1", { antiAffinity: { db: 1 } }), node("n2", { memoryBytes: GiB }), node("n3", { pcpus: 1, usedVcpus: 4 }), node("n4", { state: "drained" })];
    expect(place(mixed, request(2 * GiB, 1, { antiAffinityGroup: "db" }), bestFit)).toEqual({
      ok: false,
      reason: "no node fits 2048 MiB and 1 vCPUs: n1 already holds a VM of anti-affinity group db; n2 has 1024 MiB free, needs 2048 MiB; " +
        "n3 has 0 vCPUs free (4 committed of 4 at 4:1), needs 1; n4 is drained",
    });
  });

  it("lists at most eight nodes", () => {
    const many = Array.from({ length: 11 }, (_, i) => node(`n${String(i).padStart(2, "0")}`, { state: "failed" }));
    const decision = place(many, request(MiB), bestFit);
    expect(decision.ok).toBe(false);
    if (!decision.ok) expect(decision.reason).toMatch(/n07 is failed; and 3 more$/);
  });

  it("formats byte counts in MiB, KiB or bytes", () => {
    expect(formatBytes(2 * GiB)).toBe("2048 MiB");
    expect(formatBytes(6144)).toBe("6 KiB");
    expect(formatBytes(1000)).toBe("1000 bytes");
  });
});

describe("placement - usage ledger", () => {
  it("asserts that usage never goes negative and a node leaves with nothing committed", () => {
    const ledger = new UsageLedger();
    ledger.addNode("n1");
    const s = { ...spec(GiB, 2), bootargs: "", antiAffinityGroup: "g", affinityGroup: null, priority: "normal" as const, restartPolicy: "restart" as const, disks: [], integration: true, nics: [] };
    expect(() => ledger.remove("n1", s, "owned")).toThrow(ClusterInvariantError);
    ledger.add("n1", s, "incoming");
    expect(ledger.get("n1")).toMatchObject({ memoryBytes: GiB, vcpus: 2, vms: 0, incoming: 1 });
    expect(() => ledger.removeNode("n1")).toThrow("node n1 removed with resources committed");
    expect(() => ledger.addNode("n1")).toThrow(ClusterInvariantError);
    expect(() => ledger.add("n9", s, "owned")).toThrow("usage of node n9 not tracked");
  });
});

describe("placement - in the state machine", () => {
  it("counts reservations of migrations in flight against the destination", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", 4 * GiB, 4));
    h.ok(nodeCommand("n2", 3 * GiB, 4));
    h.ok(nodeCommand("n3", 8 * GiB, 4));
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(2 * GiB), node: "n3" });
    h.ok({ type: "beginMigration", atMs: 2, vm: "a", from: "n3", to: "n2", kind: "live" });
    // n2 has 1 GiB left after the reservation: best fit for 1 GiB is n2, for 2 GiB it is n1.
    expect(h.ok({ type: "createVm", atMs: 3, vm: "b", spec: spec(2 * GiB) })).toMatchObject({ owner: "n1" });
    expect(h.ok({ type: "createVm", atMs: 3, vm: "c", spec: spec(GiB) })).toMatchObject({ owner: "n2" });
  });

  it("uses the configured policy", () => {
    const h = new Harness({ placementPolicy: "spread" });
    h.ok(nodeCommand("n1", 4 * GiB, 4));
    h.ok(nodeCommand("n2", 4 * GiB, 4));
    const owners = ["a", "b", "c", "d"].map((vm) => h.ok({ type: "createVm", atMs: 1, vm, spec: spec(GiB) }).owner);
    expect(owners).toEqual(["n1", "n2", "n1", "n2"]);
  });
});
