import { describe, expect, it } from "vitest";
import { GiB, Harness, MiB, nodeCommand, spec } from "./helpers.js";

function twoNodes(): Harness {
  const h = new Harness();
  h.ok(nodeCommand("n1", 4 * GiB, 2));
  h.ok(nodeCommand("n2", 2 * GiB, 2));
  return h;
}

describe("state - createVm", () => {
  it("places the VM at apply time and records owner and epoch 1 before anyone starts it", () => {
    const h = twoNodes();
    expect(h.ok({ type: "createVm", atMs: 5, vm: "web-1", spec: spec(GiB, 2) })).toEqual({ ok: true, type: "createVm", vm: "web-1", owner: "n2", epoch: 1 });
    const vm = h.state.getVm("web-1")!;
    expect(vm).toMatchObject({ owner: "n2", epoch: 1, desiredState: "running", actual: null, pendingReason: null, createdAtMs: 5 });
    expect(h.state.listNodes().find((n) => n.id === "n2")!.usage).toEqual({ memoryBytes: GiB, vcpus: 2, vms: 1, incoming: 0 });
  });

  it("pins the VM to a named node after checking it like a placement", () => {
    const h = twoNodes();
    expect(h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(GiB), node: "n1", desiredState: "stopped" })).toMatchObject({ owner: "n1" });
    expect(h.state.getVm("a")!.desiredState).toBe("stopped");
    h.rejected({ type: "createVm", atMs: 1, vm: "b", spec: spec(GiB), node: "n9" }, "NOT_FOUND", "node n9 is not registered");
    h.rejected({ type: "createVm", atMs: 1, vm: "b", spec: spec(4 * GiB), node: "n1" }, "NO_CAPACITY", "vm b cannot go on n1: n1 has 3072 MiB free, needs 4096 MiB");
    h.rejected({ type: "createVm", atMs: 1, vm: "b", spec: spec(MiB, 9), node: "n1" }, "NO_CAPACITY", "vm b cannot go on n1: n1 has 7 vCPUs free (1 committed of 8 at 4:1), needs 9");
    h.ok({ type: "setNodeState", atMs: 2, node: "n2", state: "draining" });
    h.rejected({ type: "createVm", atMs: 3, vm: "b", spec: spec(MiB), node: "n2" }, "FAILED_PRECONDITION", "vm b cannot go on n2: n2 is draining");
    h.rejected({ type: "createVm", atMs: 10_000, vm: "b", spec: spec(MiB), node: "n1" }, "FAILED_PRECONDITION", "vm b cannot go on n1: n1's lease ended at 10000 ms (atMs 10000)");
  });

  it("refuses a pinned node that already holds a VM of the anti-affinity group", () => {
    const h = twoNodes();
    h.ok({ type: "createVm", atMs: 1, vm: "db-1", spec: spec(MiB, 1, { antiAffinityGroup: "db" }), node: "n1" });
    h.rejected({ type: "createVm", atMs: 1, vm: "db-2", spec: spec(MiB, 1, { antiAffinityGroup: "db" }), node: "n1" }, "FAILED_PRECONDITION",
      "vm db-2 cannot go on n1: n1 already holds a VM of anti-affinity group db");
  });

  it("refuses an id in use and a VM that fits nowhere, with the placement's reason", () => {
    const h = twoNodes();
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(GiB) });
    h.rejected({ type: "createVm", atMs: 2, vm: "a", spec: spec(MiB) }, "ALREADY_EXISTS", "vm a already exists (owner n2, epoch 1)");
    h.rejected({ type: "createVm", atMs: 2, vm: "big", spec: spec(5 * GiB) }, "NO_CAPACITY", "vm big cannot be placed: no node has 5120 MiB free; the largest free is 4096 MiB on n1");
    expect(h.state.getVm("big")).toBeNull();
  });
});

describe("state - setDesiredState", () => {
  it("records what the operator wants and returns the previous value", () => {
    const h = twoNodes();
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(MiB) });
    expect(h.ok({ type: "setDesiredState", atMs: 2, vm: "a", desiredState: "paused" })).toEqual({
      ok: true, type: "setDesiredState", vm: "a", desiredState: "paused", previous: "running",
    });
    expect(h.state.getVm("a")!.desiredState).toBe("paused");
    h.rejected({ type: "setDesiredState", atMs: 2, vm: "zz", desiredState: "paused" }, "NOT_FOUND", "vm zz does not exist");
  });
});

describe("state - saved states", () => {
  it("saves a running VM into a named saved state, restores it on start, and forgets it once the VM runs", () => {
    const h = twoNodes();
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(MiB), node: "n1" });
    h.rejected({ type: "setDesiredState", atMs: 2, vm: "a", desiredState: "saved" }, "INVALID_ARGUMENT", "setDesiredState.savedState must name the saved state to write");
    h.ok({ type: "setDesiredState", atMs: 2, vm: "a", desiredState: "saved", savedState: "before-upgrade" });
    expect(h.state.getVm("a")).toMatchObject({ desiredState: "saved", savedState: "before-upgrade" });
    h.ok({ type: "reportActual", atMs: 3, vm: "a", node: "n1", epoch: 1, actual: "saved" });
    // Start of a saved VM keeps the saved state: the owner loads it instead of booting
    h.ok({ type: "setDesiredState", atMs: 4, vm: "a", desiredState: "running" });
    expect(h.state.getVm("a")).toMatchObject({ desiredState: "running", savedState: "before-upgrade" });
    h.ok({ type: "reportActual", atMs: 5, vm: "a", node: "n1", epoch: 1, actual: "running" });
    expect(h.state.getVm("a")!.savedState).toBeNull();
  });

  it("restores a named saved state only into a VM that is not meant to run, and a stop forgets it", () => {
    const h = twoNodes();
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(MiB), node: "n1" });
    h.rejected({ type: "setDesiredState", atMs: 2, vm: "a", desiredState: "running", savedState: "s1" }, "FAILED_PRECONDITION",
      "vm a is running: stop or save it before restoring a saved state");
    h.ok({ type: "setDesiredState", atMs: 2, vm: "a", desiredState: "stopped" });
    h.rejected({ type: "setDesiredState", atMs: 2, vm: "a", desiredState: "saved", savedState: "s1" }, "FAILED_PRECONDITION", "vm a is stopped: only a running or paused VM can be saved");
    h.rejected({ type: "setDesiredState", atMs: 2, vm: "a", desiredState: "paused" }, "FAILED_PRECONDITION", "vm a is stopped: only a running VM can be paused");
    h.ok({ type: "setDesiredState", atMs: 3, vm: "a", desiredState: "running", savedState: "s1" });
    expect(h.state.getVm("a")!.savedState).toBe("s1");
    h.ok({ type: "setDesiredState", atMs: 4, vm: "a", desiredState: "stopped" });
    expect(h.state.getVm("a")!.savedState).toBeNull();
    h.ok({ type: "setDesiredState", atMs: 5, vm: "a", desiredState: "running" });
    expect(h.state.getVm("a")!.savedState).toBeNull();
  });

  it("keeps a VM with a saved state on its node, and a failover brings a saved VM back stopped", () => {
    const h = twoNodes();
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(MiB), node: "n1" });
    h.ok({ type: "setDesiredState", atMs: 2, vm: "a", desiredState: "saved", savedState: "s" });
    h.rejected({ type: "beginMigration", atMs: 3, vm: "a", from: "n1", to: "n2", kind: "live" }, "FAILED_PRECONDITION",
      "vm a has a saved state on n1: restore it (or stop the VM) before moving it");
    h.ok(nodeCommand("n2", 2 * GiB, 2, 20_000, { leaseUntilMs: 40_000 }));
    h.ok({ type: "failover", atMs: 20_000, vm: "a", epoch: 1 });
    expect(h.state.getVm("a")).toMatchObject({ owner: "n2", epoch: 2, desiredState: "stopped", savedState: null });
  });

  it("places a VM away from its owner for a drain, or says why it cannot", () => {
    const h = twoNodes();
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(GiB), node: "n1" });
    expect(h.state.placeAway("a", 2)).toEqual({ ok: true, node: "n2" });
    h.ok({ type: "createVm", atMs: 1, vm: "big", spec: spec(3 * GiB), node: "n1" });
    expect(h.state.placeAway("big", 2)).toEqual({ ok: false, reason: expect.stringContaining("3072 MiB") });
    expect(h.state.placeAway("zz", 2)).toEqual({ ok: false, reason: "vm zz does not exist" });
  });
});

describe("state - reportActual", () => {
  it("records the owner's report at the current epoch", () => {
    const h = twoNodes();
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(MiB), node: "n1" });
    expect(h.ok({ type: "reportActual", atMs: 7, vm: "a", node: "n1", epoch: 1, actual: "running" })).toEqual({
      ok: true, type: "reportActual", vm: "a", actual: "running", epoch: 1,
    });
    expect(h.state.getVm("a")!.actual).toEqual({ state: "running", epoch: 1, atMs: 7 });
  });

  it("refuses a report from another node or another epoch as STALE_EPOCH", () => {
    const h = twoNodes();
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(MiB), node: "n1" });
    h.rejected({ type: "reportActual", atMs: 2, vm: "a", node: "n2", epoch: 1, actual: "running" }, "STALE_EPOCH",
      "report of vm a from n2 at epoch 1 is stale: the owner is n1 at epoch 1");
    h.rejected({ type: "reportActual", atMs: 2, vm: "a", node: "n1", epoch: 2, actual: "running" }, "STALE_EPOCH",
      "report of vm a from n1 at epoch 2 is stale: the owner is n1 at epoch 1");
    h.rejected({ type: "reportActual", atMs: 2, vm: "b", node: "n1", epoch: 1, actual: "running" }, "NOT_FOUND", "vm b does not exist");
    expect(h.state.getVm("a")!.actual).toBeNull();
  });
});

describe("state - deleteVm", () => {
  it("forgets the VM and releases its resources", () => {
    const h = twoNodes();
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(GiB, 2), node: "n1" });
    expect(h.ok({ type: "deleteVm", atMs: 2, vm: "a" })).toEqual({ ok: true, type: "deleteVm", vm: "a", owner: "n1" });
    expect(h.state.getVm("a")).toBeNull();
    expect(h.state.listNodes()[0]!.usage).toEqual({ memoryBytes: 0, vcpus: 0, vms: 0, incoming: 0 });
    h.rejected({ type: "deleteVm", atMs: 3, vm: "a" }, "NOT_FOUND", "vm a does not exist");
  });

  it("refuses while a migration is in flight", () => {
    const h = twoNodes();
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(GiB), node: "n1" });
    const begun = h.ok({ type: "beginMigration", atMs: 2, vm: "a", from: "n1", to: "n2", kind: "live" });
    h.rejected({ type: "deleteVm", atMs: 3, vm: "a" }, "FAILED_PRECONDITION", `vm a has a migration in flight from n1 to n2 (id ${begun.migrationId}): abort it first`);
  });
});
