import { describe, expect, it } from "vitest";
import { encodeCommand } from "../src/commands.js";
import { ClusterInvariantError } from "../src/errors.js";
import { assertInvariants, checkInvariants, checkTransition } from "../src/invariants.js";
import { ClusterState } from "../src/state.js";
import type { ClusterData, MigrationRecord, NodeUsage, VmRecord } from "../src/types.js";
import { GiB, nodeCommand, spec } from "./helpers.js";

/** n1, n2 (4 GiB, 1 pCPU); a (1 GiB, anti-affinity g) on n1 migrating to n2; b (1 GiB) on n2. */
function sound(): ClusterState {
  const s = new ClusterState();
  const commands = [
    nodeCommand("n1", 4 * GiB, 1),
    nodeCommand("n2", 4 * GiB, 1),
    { type: "createVm", atMs: 1, vm: "a", spec: spec(GiB, 1, { antiAffinityGroup: "g" }), node: "n1" },
    { type: "createVm", atMs: 1, vm: "b", spec: spec(GiB, 1), node: "n2" },
    { type: "beginMigration", atMs: 2, vm: "a", from: "n1", to: "n2", kind: "live" },
  ] as const;
  for (const c of commands) expect(s.apply(s.appliedIndex + 1, encodeCommand(c)).ok).toBe(true);
  return s;
}

function withVm(data: ClusterData, id: string, patch: Partial<VmRecord>): ClusterData {
  return { ...data, vms: data.vms.map((vm) => (vm.id === id ? { ...vm, ...patch } : vm)) };
}

function withMigration(data: ClusterData, patch: Partial<MigrationRecord>): ClusterData {
  return { ...data, migrations: data.migrations.map((m) => ({ ...m, ...patch })) };
}

describe("invariants - one state", () => {
  it("finds nothing wrong in a sound state", () => {
    const s = sound();
    expect(checkInvariants(s.toData(), s.usageByNode())).toEqual([]);
    expect(() => assertInvariants(s.toData())).not.toThrow();
  });

  it("reports each broken rule", () => {
    const data = sound().toData();
    const a = data.vms[0]!;
    const cases: [ClusterData, string][] = [
      [{ ...data, vms: [a, a, data.vms[1]!] }, "1 VM ids appear more than once: a VM would have two records (two owners)"],
      [{ ...data, nodes: [data.nodes[1]!, data.nodes[0]!] }, "nodes are not sorted by id at n1"],
      [withVm(data, "b", { owner: "n9" }), "vm b is owned by n9, which is not a registered node"],
      [withVm(data, "b", { owner: null }), "vm b has owner none and pending reason none: exactly one is expected"],
      [withVm(data, "b", { epoch: 0 }), "vm b has epoch 0, not a positive integer"],
      [withVm(data, "b", { actual: { state: "running", epoch: 2, atMs: 0 } }), "vm b has an actual state reported at epoch 2, after its epoch 1"],
      [withVm(data, "b", { spec: { ...data.vms[1]!.spec, memoryBytes: 4 * GiB } }), `node n2 has ${5 * GiB} bytes committed, more than its ${4 * GiB}`],
      [withVm(data, "b", { spec: { ...data.vms[1]!.spec, vcpus: 4 } }), "node n2 has 5 vCPUs committed, more than its limit 4 (1 pCPUs at 4:1)"],
      [withVm(data, "b", { spec: { ...data.vms[1]!.spec, antiAffinityGroup: "g" } }), "node n2 holds 2 VMs of anti-affinity group g"],
      [withMigration(data, { from: "n2" }), "the migration of vm a starts from n2, but the owner is n1"],
      [withMigration(data, { epoch: 2 }), "the migration of vm a began at epoch 2, but the VM is at epoch 1"],
      [withMigration(data, { to: "n7" }), "the migration of vm a goes to n7, which is not a registered node"],
      [withMigration(data, { vm: "zz" }), "a migration in flight concerns vm zz, which does not exist"],
      [withMigration(data, { migrationId: 99 }), "the migration of vm a has id 99, outside 1..5"],
      [{ ...data, migrations: [...data.migrations, ...data.migrations] }, "vm a has two migrations in flight"],
    ];
    for (const [broken, message] of cases) expect(checkInvariants(broken)).toContain(message);
    expect(() => assertInvariants(cases[2]![0])).toThrow(ClusterInvariantError);
    expect(() => assertInvariants(cases[2]![0])).toThrow("cluster state invariants violated at index 5: vm b is owned by n9, which is not a registered node");
  });

  it("compares the incremental usage ledger with the usage rebuilt from the records", () => {
    const s = sound();
    const data = s.toData();
    const usage = s.usageByNode();
    const n2 = usage.get("n2")!;
    const noReservation = new Map<string, NodeUsage>(usage);
    noReservation.set("n2", { ...n2, memoryBytes: n2.memoryBytes - GiB, vcpus: n2.vcpus - 1, incoming: 0, antiAffinity: new Map() });
    const violations = checkInvariants(data, noReservation);
    expect(violations).toContain("node n2 holds 0 reservations for 1 migrations coming in");
    expect(violations.some((v) => v.startsWith("the usage ledger of node n2"))).toBe(true);
    const twice = new Map<string, NodeUsage>(usage);
    twice.set("n2", { ...n2, vms: n2.vms + 1 });
    expect(checkInvariants(data, twice)).toContain("the usage ledger counts 3 owned VMs, the state has 2");
    const missing = new Map<string, NodeUsage>([["n1", usage.get("n1")!]]);
    expect(checkInvariants(data, missing)).toContain("the usage ledger does not track node n2");
  });
});

describe("invariants - transitions", () => {
  it("accepts a transfer and refuses an epoch that goes back or an owner change without a new epoch", () => {
    const s = sound();
    const before = s.toData();
    s.apply(s.appliedIndex + 1, encodeCommand({ type: "transfer", atMs: 3, vm: "a", from: "n1", to: "n2", epoch: 1 }));
    const after = s.toData();
    expect(checkTransition(before, after)).toEqual([]);
    expect(checkTransition(after, before)).toEqual(expect.arrayContaining([
      "the applied index went back from 6 to 5",
      "vm a's epoch went back from 2 to 1",
      "vm a moved from n2 to n1 without a new epoch (1)",
    ]));
    expect(checkTransition(before, withVm(before, "b", { owner: "n1" }))).toEqual(["vm b moved from n2 to n1 without a new epoch (1)"]);
    expect(checkTransition(before, withMigration(before, { to: "n1" }))).toEqual([`migration ${before.migrations[0]!.migrationId} of vm a changed while in flight`]);
    expect(checkTransition(before, { ...before, options: { ...before.options, leaseMsMax: 1 } })).toEqual(["the options changed"]);
  });
});
