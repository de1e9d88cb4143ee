import { describe, expect, it } from "vitest";
import { GiB, Harness, MiB, nodeCommand, spec } from "./helpers.js";

/** n1, n2, n3 (4 GiB, 2 pCPUs each, leases until 10 s) and vm "a" (1 GiB, 2 vCPUs) on n1. */
function cluster(): Harness {
  const h = new Harness();
  for (const id of ["n1", "n2", "n3"]) h.ok(nodeCommand(id, 4 * GiB, 2));
  h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(GiB, 2), node: "n1" });
  return h;
}

const usageOf = (h: Harness, node: string) => h.state.listNodes().find((n) => n.id === node)!.usage;

describe("state - beginMigration", () => {
  it("records the migration at the VM's epoch and reserves the VM's resources on the destination", () => {
    const h = cluster();
    const r = h.ok({ type: "beginMigration", atMs: 2, vm: "a", from: "n1", to: "n2", kind: "live" });
    expect(r).toEqual({ ok: true, type: "beginMigration", vm: "a", from: "n1", to: "n2", epoch: 1, migrationId: h.state.appliedIndex });
    expect(h.state.getMigration("a")).toEqual({ vm: "a", from: "n1", to: "n2", epoch: 1, kind: "live", startedAtMs: 2, migrationId: r.migrationId });
    expect(usageOf(h, "n2")).toEqual({ memoryBytes: GiB, vcpus: 2, vms: 0, incoming: 1 });
    expect(usageOf(h, "n1")).toEqual({ memoryBytes: GiB, vcpus: 2, vms: 1, incoming: 0 });
    expect(h.state.getVm("a")).toMatchObject({ owner: "n1", epoch: 1 });
  });

  it("refuses each broken precondition with a message naming it", () => {
    const h = cluster();
    h.rejected({ type: "beginMigration", atMs: 2, vm: "x", from: "n1", to: "n2", kind: "live" }, "NOT_FOUND", "vm x does not exist");
    h.rejected({ type: "beginMigration", atMs: 2, vm: "a", from: "n1", to: "n1", kind: "live" }, "INVALID_ARGUMENT", "beginMigration.to must differ from beginMigration.from (both n1)");
    h.rejected({ type: "beginMigration", atMs: 2, vm: "a", from: "n2", to: "n3", kind: "live" }, "FAILED_PRECONDITION", "vm a is owned by n1, not n2");
    h.rejected({ type: "beginMigration", atMs: 2, vm: "a", from: "n1", to: "n9", kind: "live" }, "NOT_FOUND", "node n9 is not registered");
    h.ok({ type: "setNodeState", atMs: 2, node: "n3", state: "draining" });
    h.rejected({ type: "beginMigration", atMs: 2, vm: "a", from: "n1", to: "n3", kind: "live" }, "FAILED_PRECONDITION", "vm a cannot go on n3: n3 is draining");
    h.rejected({ type: "beginMigration", atMs: 10_000, vm: "a", from: "n1", to: "n2", kind: "live" }, "FAILED_PRECONDITION", "vm a cannot go on n2: n2's lease ended at 10000 ms (atMs 10000)");
    h.ok({ type: "createVm", atMs: 3, vm: "filler", spec: spec(3584 * MiB), node: "n2" });
    h.rejected({ type: "beginMigration", atMs: 3, vm: "a", from: "n1", to: "n2", kind: "quick" }, "NO_CAPACITY", "vm a cannot go on n2: n2 has 512 MiB free, needs 1024 MiB");
    h.ok({ type: "deleteVm", atMs: 3, vm: "filler" });
    h.ok({ type: "beginMigration", atMs: 4, vm: "a", from: "n1", to: "n2", kind: "live" });
    h.ok({ type: "setNodeState", atMs: 4, node: "n3", state: "active" });
    h.rejected({ type: "beginMigration", atMs: 5, vm: "a", from: "n1", to: "n3", kind: "live" }, "FAILED_PRECONDITION", /^vm a already has a migration in flight from n1 to n2 at epoch 1 \(id \d+\)$/);
  });

  it("counts the reservation for anti-affinity: no VM of the group may land on the destination meanwhile", () => {
    const h = new Harness();
    for (const id of ["n1", "n2", "n3"]) h.ok(nodeCommand(id, 4 * GiB, 2));
    h.ok({ type: "createVm", atMs: 1, vm: "db-1", spec: spec(GiB, 1, { antiAffinityGroup: "db" }), node: "n1" });
    h.ok({ type: "createVm", atMs: 1, vm: "db-2", spec: spec(GiB, 1, { antiAffinityGroup: "db" }), node: "n3" });
    h.ok({ type: "beginMigration", atMs: 2, vm: "db-1", from: "n1", to: "n2", kind: "live" });
    h.rejected({ type: "createVm", atMs: 3, vm: "db-3", spec: spec(GiB, 1, { antiAffinityGroup: "db" }) }, "NO_CAPACITY",
      "vm db-3 cannot be placed: every eligible node already holds a VM of anti-affinity group db: n1, n2, n3");
    h.rejected({ type: "beginMigration", atMs: 3, vm: "db-2", from: "n3", to: "n2", kind: "live" }, "FAILED_PRECONDITION",
      "vm db-2 cannot go on n2: n2 already holds a VM of anti-affinity group db");
  });
});

describe("state - a VM does not start while it moves", () => {
  it("refuses its owner's \"starting\" while a migration is in flight, and takes it again once the migration is aborted", () => {
    const h = cluster();
    const begun = h.ok({ type: "beginMigration", atMs: 2, vm: "a", from: "n1", to: "n2", kind: "quick" });
    h.rejected({ type: "reportActual", atMs: 3, vm: "a", node: "n1", epoch: 1, actual: "starting" }, "FAILED_PRECONDITION",
      `vm a cannot start on n1: migration ${begun.migrationId} to n2 is in flight`);
    h.ok({ type: "reportActual", atMs: 3, vm: "a", node: "n1", epoch: 1, actual: "stopped" });
    h.ok({ type: "abortMigration", atMs: 4, vm: "a", epoch: 1, migrationId: begun.migrationId });
    h.ok({ type: "reportActual", atMs: 5, vm: "a", node: "n1", epoch: 1, actual: "starting" });
  });
});

describe("state - transfer", () => {
  it("commits the migration: owner = destination, epoch + 1, the reservation becomes the allocation", () => {
    const h = cluster();
    const begun = h.ok({ type: "beginMigration", atMs: 2, vm: "a", from: "n1", to: "n2", kind: "live" });
    expect(h.ok({ type: "transfer", atMs: 3, vm: "a", from: "n1", to: "n2", epoch: 1, migrationId: begun.migrationId })).toEqual({
      ok: true, type: "transfer", vm: "a", owner: "n2", epoch: 2,
    });
    expect(h.state.getVm("a")).toMatchObject({ owner: "n2", epoch: 2 });
    expect(h.state.getMigration("a")).toBeNull();
    expect(usageOf(h, "n1")).toEqual({ memoryBytes: 0, vcpus: 0, vms: 0, incoming: 0 });
    expect(usageOf(h, "n2")).toEqual({ memoryBytes: GiB, vcpus: 2, vms: 1, incoming: 0 });
  });

  it("refuses a stale epoch and a transfer from a node that is not the owner", () => {
    const h = cluster();
    h.ok({ type: "beginMigration", atMs: 2, vm: "a", from: "n1", to: "n2", kind: "live" });
    h.rejected({ type: "transfer", atMs: 3, vm: "a", from: "n1", to: "n2", epoch: 2 }, "STALE_EPOCH", "transfer of vm a from n1 at epoch 2 is stale: the owner is n1 at epoch 1");
    h.rejected({ type: "transfer", atMs: 3, vm: "a", from: "n3", to: "n2", epoch: 1 }, "STALE_EPOCH", "transfer of vm a from n3 at epoch 1 is stale: the owner is n1 at epoch 1");
    h.rejected({ type: "transfer", atMs: 3, vm: "b", from: "n1", to: "n2", epoch: 1 }, "NOT_FOUND", "vm b does not exist");
    expect(h.state.getVm("a")).toMatchObject({ owner: "n1", epoch: 1 });
  });

  it("refuses a second transfer of the same migration", () => {
    const h = cluster();
    h.ok({ type: "beginMigration", atMs: 2, vm: "a", from: "n1", to: "n2", kind: "live" });
    h.ok({ type: "transfer", atMs: 3, vm: "a", from: "n1", to: "n2", epoch: 1 });
    h.rejected({ type: "transfer", atMs: 4, vm: "a", from: "n1", to: "n2", epoch: 1 }, "STALE_EPOCH", "transfer of vm a from n1 at epoch 1 is stale: the owner is n2 at epoch 2");
    expect(h.state.getVm("a")).toMatchObject({ owner: "n2", epoch: 2 });
  });

  it("refuses without a migration in flight, towards another destination, or for an earlier attempt", () => {
    const h = cluster();
    h.rejected({ type: "transfer", atMs: 2, vm: "a", from: "n1", to: "n2", epoch: 1 }, "FAILED_PRECONDITION", "vm a has no migration in flight");
    const first = h.ok({ type: "beginMigration", atMs: 2, vm: "a", from: "n1", to: "n2", kind: "live" });
    h.rejected({ type: "transfer", atMs: 3, vm: "a", from: "n1", to: "n3", epoch: 1 }, "FAILED_PRECONDITION", "the migration in flight of vm a goes to n2, not n3");
    h.ok({ type: "abortMigration", atMs: 3, vm: "a", epoch: 1, migrationId: first.migrationId });
    const second = h.ok({ type: "beginMigration", atMs: 4, vm: "a", from: "n1", to: "n2", kind: "live" });
    // A late transfer of the aborted attempt, at the same epoch, must not commit the new one.
    h.rejected({ type: "transfer", atMs: 5, vm: "a", from: "n1", to: "n2", epoch: 1, migrationId: first.migrationId }, "STALE_EPOCH",
      `transfer of vm a names migration ${first.migrationId}, but migration ${second.migrationId} is in flight`);
    h.ok({ type: "transfer", atMs: 5, vm: "a", from: "n1", to: "n2", epoch: 1, migrationId: second.migrationId });
  });

  it("refuses a destination that failed or whose lease ran out, so the source can resume", () => {
    const h = cluster();
    h.ok({ type: "beginMigration", atMs: 2, vm: "a", from: "n1", to: "n2", kind: "live" });
    h.rejected({ type: "transfer", atMs: 10_000, vm: "a", from: "n1", to: "n2", epoch: 1 }, "FAILED_PRECONDITION", "destination n2's lease ended at 10000 ms (atMs 10000)");
    h.ok({ type: "setNodeState", atMs: 3, node: "n2", state: "failed" });
    h.rejected({ type: "transfer", atMs: 4, vm: "a", from: "n1", to: "n2", epoch: 1 }, "FAILED_PRECONDITION", "destination n2 is failed");
    h.ok({ type: "abortMigration", atMs: 5, vm: "a", epoch: 1 });
    expect(h.state.getVm("a")).toMatchObject({ owner: "n1", epoch: 1 });
  });
});

describe("state - abortMigration", () => {
  it("releases the reservation and leaves owner and epoch unchanged", () => {
    const h = cluster();
    const begun = h.ok({ type: "beginMigration", atMs: 2, vm: "a", from: "n1", to: "n2", kind: "live" });
    expect(h.ok({ type: "abortMigration", atMs: 3, vm: "a", epoch: 1, migrationId: begun.migrationId })).toEqual({
      ok: true, type: "abortMigration", vm: "a", owner: "n1", epoch: 1, releasedOn: "n2",
    });
    expect(usageOf(h, "n2")).toEqual({ memoryBytes: 0, vcpus: 0, vms: 0, incoming: 0 });
    expect(h.state.getMigration("a")).toBeNull();
    expect(h.state.getVm("a")).toMatchObject({ owner: "n1", epoch: 1 });
    // The transfer of the aborted migration can no longer commit.
    h.rejected({ type: "transfer", atMs: 4, vm: "a", from: "n1", to: "n2", epoch: 1 }, "FAILED_PRECONDITION", "vm a has no migration in flight");
  });

  it("refuses a stale epoch, another attempt's id, or no migration", () => {
    const h = cluster();
    h.rejected({ type: "abortMigration", atMs: 2, vm: "a", epoch: 1 }, "FAILED_PRECONDITION", "vm a has no migration in flight");
    const begun = h.ok({ type: "beginMigration", atMs: 2, vm: "a", from: "n1", to: "n2", kind: "live" });
    h.rejected({ type: "abortMigration", atMs: 3, vm: "a", epoch: 2 }, "STALE_EPOCH", "abort of vm a's migration at epoch 2 is stale: the VM is at epoch 1");
    h.rejected({ type: "abortMigration", atMs: 3, vm: "a", epoch: 1, migrationId: begun.migrationId + 100 }, "STALE_EPOCH",
      `abort of vm a's migration names migration ${begun.migrationId + 100}, but migration ${begun.migrationId} is in flight`);
    h.rejected({ type: "abortMigration", atMs: 3, vm: "q", epoch: 1 }, "NOT_FOUND", "vm q does not exist");
    expect(h.state.getMigration("a")).not.toBeNull();
  });
});

describe("state - failover", () => {
  it("refuses while the owner's lease is live, and at a stale epoch", () => {
    const h = cluster();
    h.rejected({ type: "failover", atMs: 9_999, vm: "a", epoch: 1 }, "FAILED_PRECONDITION",
      "owner n1 of vm a holds a lease until 10000 ms (atMs 9999): a VM leaves a node only after its lease ran out");
    h.rejected({ type: "failover", atMs: 20_000, vm: "a", epoch: 2 }, "STALE_EPOCH", "failover of vm a at epoch 2 is stale: the owner is n1 at epoch 1");
    h.rejected({ type: "failover", atMs: 20_000, vm: "b", epoch: 1 }, "NOT_FOUND", "vm b does not exist");
  });

  it("restarts the VM on the node placement picks among the live ones, epoch + 1", () => {
    const h = cluster();
    h.ok({ type: "renewLease", atMs: 9_000, node: "n2", untilMs: 30_000 });
    h.ok({ type: "renewLease", atMs: 9_000, node: "n3", untilMs: 30_000 });
    h.ok({ type: "createVm", atMs: 9_001, vm: "b", spec: spec(GiB), node: "n3" });
    const r = h.ok({ type: "failover", atMs: 20_000, vm: "a", epoch: 1 });
    expect(r).toEqual({ ok: true, type: "failover", vm: "a", owner: "n3", epoch: 2, desiredState: "running", pendingReason: null });
    expect(usageOf(h, "n1")).toEqual({ memoryBytes: 0, vcpus: 0, vms: 0, incoming: 0 });
    // The old owner's late report is stale.
    h.rejected({ type: "reportActual", atMs: 20_001, vm: "a", node: "n1", epoch: 1, actual: "running" }, "STALE_EPOCH", /stale: the owner is n3 at epoch 2$/);
    // Two failovers at one epoch: only the first commits.
    h.rejected({ type: "failover", atMs: 20_002, vm: "a", epoch: 1 }, "STALE_EPOCH", /at epoch 1 is stale/);
  });

  it("places on the named node after checking it", () => {
    const h = cluster();
    h.ok({ type: "renewLease", atMs: 9_000, node: "n2", untilMs: 30_000 });
    h.rejected({ type: "failover", atMs: 20_000, vm: "a", to: "n3", epoch: 1 }, "FAILED_PRECONDITION", "vm a cannot go on n3: n3's lease ended at 10000 ms (atMs 20000)");
    h.rejected({ type: "failover", atMs: 20_000, vm: "a", to: "n1", epoch: 1 }, "FAILED_PRECONDITION", "vm a cannot go on n1: n1's lease ended at 10000 ms (atMs 20000)");
    h.rejected({ type: "failover", atMs: 20_000, vm: "a", to: "n7", epoch: 1 }, "NOT_FOUND", "node n7 is not registered");
    expect(h.ok({ type: "failover", atMs: 20_000, vm: "a", to: "n2", epoch: 1 })).toMatchObject({ owner: "n2", epoch: 2 });
  });

  it("leaves the VM pending with a reason when no node fits, and places it by a later failover", () => {
    const h = cluster();
    const r = h.ok({ type: "failover", atMs: 20_000, vm: "a", epoch: 1 });
    expect(r).toMatchObject({ owner: null, epoch: 2 });
    expect(r.pendingReason).toBe("no node is active with a live lease at 20000 ms: n1's lease ended at 10000 ms (atMs 20000); n2's lease ended at 10000 ms (atMs 20000); n3's lease ended at 10000 ms (atMs 20000)");
    expect(h.state.getVm("a")).toMatchObject({ owner: null, epoch: 2, pendingReason: r.pendingReason });
    expect(h.state.consolidation()).toMatchObject({ pendingVmCount: 1, placedVmCount: 0 });
    h.rejected({ type: "beginMigration", atMs: 20_000, vm: "a", from: "n1", to: "n2", kind: "live" }, "FAILED_PRECONDITION", /^vm a has no owner \(pending: no node is active/);
    // Still no room: refused, nothing changes (a pending VM stays as it was).
    h.rejected({ type: "failover", atMs: 20_001, vm: "a", epoch: 2 }, "NO_CAPACITY", /^vm a cannot be placed: no node is active with a live lease/);
    h.ok({ type: "renewLease", atMs: 20_002, node: "n2", untilMs: 40_000 });
    expect(h.ok({ type: "failover", atMs: 20_003, vm: "a", epoch: 2 })).toEqual({
      ok: true, type: "failover", vm: "a", owner: "n2", epoch: 3, desiredState: "running", pendingReason: null,
    });
  });

  it("cancels a migration in flight and may restart on its destination, whose reservation it reuses", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", 2 * GiB, 1));
    h.ok(nodeCommand("n2", GiB, 1));
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(GiB), node: "n1" });
    h.ok({ type: "beginMigration", atMs: 2, vm: "a", from: "n1", to: "n2", kind: "live" });
    h.ok({ type: "renewLease", atMs: 9_000, node: "n2", untilMs: 30_000 });
    expect(h.ok({ type: "failover", atMs: 20_000, vm: "a", epoch: 1 })).toMatchObject({ owner: "n2", epoch: 2 });
    expect(h.state.getMigration("a")).toBeNull();
    expect(usageOf(h, "n2")).toEqual({ memoryBytes: GiB, vcpus: 1, vms: 1, incoming: 0 });
    // The source's transfer arrives late: refused.
    h.rejected({ type: "transfer", atMs: 20_001, vm: "a", from: "n1", to: "n2", epoch: 1 }, "STALE_EPOCH", /is stale: the owner is n2 at epoch 2/);
  });

  it("places a do-not-restart VM with desired state stopped", () => {
    const h = cluster();
    h.ok({ type: "createVm", atMs: 2, vm: "batch", spec: spec(GiB, 1, { restartPolicy: "do-not-restart" }), node: "n1" });
    h.ok({ type: "renewLease", atMs: 9_000, node: "n2", untilMs: 30_000 });
    expect(h.ok({ type: "failover", atMs: 20_000, vm: "batch", epoch: 1 })).toMatchObject({ owner: "n2", desiredState: "stopped", epoch: 2 });
    expect(h.ok({ type: "failover", atMs: 20_000, vm: "a", epoch: 1 })).toMatchObject({ owner: "n2", desiredState: "running", epoch: 2 });
  });
});
