import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ApiClient } from "../src/adapters/client.js";
import type { BootMode } from "../src/types.js";
import { apiErrorOf, type Harness, startHarness } from "./helpers.js";
import { GiB, MiB } from "./units.js";

/** An enum value the protos do not define, sent as a number (the client only guards strings). */
const unknownEnum = <T>(n: number): T => n as unknown as T;

const vm = { name: "web-2", memoryBytes: 64 * MiB, vcpus: 1, image: "echo" };

/** [what, the call, the field it must name] */
const cases: [string, (c: ApiClient) => Promise<unknown>, string][] = [
  ["create: no name", (c) => c.createVm({ ...vm, name: "" }), "name"],
  ["create: bad name syntax", (c) => c.createVm({ ...vm, name: "Web_2" }), "name"],
  ["create: name too long", (c) => c.createVm({ ...vm, name: "a".repeat(64) }), "name"],
  ["create: no memory", (c) => c.createVm({ ...vm, memoryBytes: 0 }), "memory_bytes"],
  ["create: memory not whole pages", (c) => c.createVm({ ...vm, memoryBytes: 1000 }), "memory_bytes"],
  ["create: negative memory", (c) => c.createVm({ ...vm, memoryBytes: -4096 }), "memory_bytes"],
  ["create: memory over 2 GiB", (c) => c.createVm({ ...vm, memoryBytes: 2 * GiB + 4096 }), "memory_bytes"],
  ["create: no vcpus", (c) => c.createVm({ ...vm, vcpus: 0 }), "vcpus"],
  ["create: 9 vcpus", (c) => c.createVm({ ...vm, vcpus: 9 }), "vcpus"],
  ["create: no image", (c) => c.createVm({ ...vm, image: "" }), "image"],
  ["create: image with a newline", (c) => c.createVm({ ...vm, image: "echo\n" }), "image"],
  ["create: unknown boot mode", (c) => c.createVm({ ...vm, bootMode: unknownEnum(7) }), "boot_mode"],
  ["create: bootargs too long", (c) => c.createVm({ ...vm, bootargs: "x".repeat(1025) }), "bootargs"],
  ["create: bad anti-affinity group", (c) => c.createVm({ ...vm, antiAffinityGroup: "Group A" }), "anti_affinity_group"],
  ["create: unknown priority", (c) => c.createVm({ ...vm, priority: unknownEnum(9) }), "priority"],
  ["create: unknown restart policy", (c) => c.createVm({ ...vm, restartPolicy: unknownEnum(5) }), "restart_policy"],
  ["start: no name", (c) => c.startVm({ name: "" }), "name"],
  ["stop: negative timeout", (c) => c.stopVm({ name: "web", timeoutMs: -1 }), "timeout_ms"],
  ["stop: timeout over an hour", (c) => c.stopVm({ name: "web", timeoutMs: 3_600_001 }), "timeout_ms"],
  ["stop: force with a timeout", (c) => c.stopVm({ name: "web", force: true, timeoutMs: 10 }), "timeout_ms"],
  ["pause: bad name", (c) => c.pauseVm({ name: "WEB" }), "name"],
  ["resume: no name", (c) => c.resumeVm({ name: "" }), "name"],
  ["save: no saved state", (c) => c.saveVm({ name: "web", savedState: "" }), "saved_state"],
  ["restore: bad saved state", (c) => c.restoreVm({ name: "web", savedState: "Before Upgrade" }), "saved_state"],
  ["delete: no name", (c) => c.deleteVm({ name: "" }), "name"],
  ["set kvp: bad name", (c) => c.setVmKvp({ name: "Web", key: "k", value: "v" }), "name"],
  ["set kvp: no key", (c) => c.setVmKvp({ name: "web", key: "", value: "v" }), "key"],
  ["set kvp: key with '='", (c) => c.setVmKvp({ name: "web", key: "a=b", value: "v" }), "key"],
  ["set kvp: key over 63 bytes", (c) => c.setVmKvp({ name: "web", key: "é".repeat(32), value: "v" }), "key"],
  ["set kvp: key with a control character", (c) => c.setVmKvp({ name: "web", key: "a\tb", value: "v" }), "key"],
  ["set kvp: value over 255 bytes", (c) => c.setVmKvp({ name: "web", key: "k", value: "v".repeat(256) }), "value"],
  ["set kvp: value with a newline", (c) => c.setVmKvp({ name: "web", key: "k", value: "a\nb" }), "value"],
  ["get: bad name", (c) => c.getVm({ name: "web/1" }), "name"],
  ["list vms: bad node", (c) => c.listVms({ node: "N1" }), "node"],
  ["list vms: unknown state", (c) => c.listVms({ state: unknownEnum(42) }), "state"],
  ["watch events: bad vm", (c) => drain(c.watchVmEvents({ vm: "Web" })), "vm"],
  ["migrate: no vm", (c) => c.migrate({ vm: "" }), "vm"],
  ["migrate: bad target", (c) => c.migrate({ vm: "web", targetNode: "node 2" }), "target_node"],
  ["migrate: unknown kind", (c) => c.migrate({ vm: "web", kind: unknownEnum(9) }), "kind"],
  ["migrate: negative downtime limit", (c) => c.migrate({ vm: "web", downtimeLimitMs: -5 }), "downtime_limit_ms"],
  ["migrate: negative bandwidth", (c) => c.migrate({ vm: "web", bandwidthLimitBytesPerSecond: -1 }), "bandwidth_limit_bytes_per_second"],
  ["migrate: negative max rounds", (c) => c.migrate({ vm: "web", maxRounds: -1 }), "max_rounds"],
  ["migrate: unknown policy", (c) => c.migrate({ vm: "web", policy: unknownEnum(77) }), "policy"],
  ["migrate: quick with a downtime limit", (c) => c.migrate({ vm: "web", kind: "MIGRATION_KIND_QUICK", downtimeLimitMs: 100 }), "downtime_limit_ms"],
  ["cancel: no id", (c) => c.cancelMigration({ migrationId: "" }), "migration_id"],
  ["watch migration: bad id", (c) => drain(c.watchMigration({ migrationId: "m 1" })), "migration_id"],
  ["get migration: id too long", (c) => c.getMigration({ migrationId: "m".repeat(129) }), "migration_id"],
  ["list migrations: bad vm", (c) => c.listMigrations({ vm: "-web" }), "vm"],
  ["list nodes: unknown state", (c) => c.listNodes({ state: unknownEnum(9) }), "state"],
  ["drain: no node", (c) => c.drainNode({ node: "" }), "node"],
  ["resume node: bad node", (c) => c.resumeNode({ node: "N3" }), "node"],
  ["add member: no id", (c) => c.addMember({ id: "", raftAddress: "127.0.0.1:8004" }), "id"],
  ["add member: no raft address", (c) => c.addMember({ id: "n4", raftAddress: "" }), "raft_address"],
  ["add member: port out of range", (c) => c.addMember({ id: "n4", raftAddress: "127.0.0.1:70000" }), "raft_address"],
  ["add member: bad api address", (c) => c.addMember({ id: "n4", raftAddress: "127.0.0.1:8004", apiAddress: "nowhere" }), "api_address"],
  ["promote: no id", (c) => c.promoteMember({ id: "" }), "id"],
  ["remove: bad id", (c) => c.removeMember({ id: "N4" }), "id"],
];

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream) {
    // read to the end or the error
  }
}

describe("api validation over the wire", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h.close());

  it.each(cases)("api validation - %s: INVALID_ARGUMENT naming the field", async (_what, call, field) => {
    const before = h.backend.calls.length;
    const e = await apiErrorOf(call(h.client));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.grpcCode).toBe(3);
    expect(e.message).toContain(`${field}: `);
    expect(e.fields).toContain(field);
    // The backend never saw it.
    expect(h.backend.calls.length).toBe(before);
  });

  it("api validation - the client refuses an enum string the protos do not define, sending nothing", async () => {
    h.requests.length = 0;
    const e = await apiErrorOf(h.client.createVm({ ...vm, bootMode: "BOOT_MODE_UEFI" as BootMode }));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.message).toMatch(/^boot_mode: unknown value "BOOT_MODE_UEFI" \(expected one of BOOT_MODE_UNSPECIFIED, BOOT_MODE_BARE, BOOT_MODE_SBI\); not sent$/);
    expect(e.fields).toEqual(["boot_mode"]);
    expect(h.requests).toEqual([]);
    const filter = await apiErrorOf(h.client.listVms({ state: "RUNNING" as never }));
    expect(filter.fields).toEqual(["state"]);
    expect(h.requests).toEqual([]);
  });

  it("api validation - several bad fields are all named, in the message and the trailer", async () => {
    const e = await apiErrorOf(h.client.createVm({ name: "", memoryBytes: 3, vcpus: 99, image: "" }));
    expect(e.fields).toEqual(["name", "memory_bytes", "vcpus", "image"]);
    expect(e.message.split("; ").map((part) => part.split(":")[0])).toEqual(["name", "memory_bytes", "vcpus", "image"]);
  });
});
