import { describe, expect, it } from "vitest";
import type { ClusterCommand } from "../src/commands.js";
import { COMMAND_BYTES_MAX, COMMAND_TYPES, decodeCommand, encodeCommand } from "../src/commands.js";
import { ClusterCommandError, ClusterStateError } from "../src/errors.js";
import { ClusterState } from "../src/state.js";
import { GiB, Harness, MiB, nodeCommand, spec } from "./helpers.js";

const utf8 = new TextEncoder();
const json = (value: unknown): Uint8Array => utf8.encode(JSON.stringify(value));

const everyCommand: ClusterCommand[] = [
  nodeCommand("n1", 4 * GiB, 4, 5, { labels: { zone: "a", "hw/gen": "2" } }),
  { type: "renewLease", atMs: 6, node: "n1", untilMs: 9000 },
  { type: "setNodeState", atMs: 7, node: "n1", state: "draining" },
  { type: "removeNode", atMs: 8, node: "n1" },
  { type: "createVm", atMs: 9, vm: "web-1", spec: spec(512 * MiB, 2, { antiAffinityGroup: "web", priority: "high" }), desiredState: "paused", node: "n1" },
  { type: "setDesiredState", atMs: 10, vm: "web-1", desiredState: "stopped" },
  { type: "reportActual", atMs: 11, vm: "web-1", node: "n1", epoch: 3, actual: "running" },
  { type: "beginMigration", atMs: 12, vm: "web-1", from: "n1", to: "n2", kind: "live" },
  { type: "transfer", atMs: 13, vm: "web-1", from: "n1", to: "n2", epoch: 3, migrationId: 17 },
  { type: "abortMigration", atMs: 14, vm: "web-1", epoch: 3 },
  { type: "failover", atMs: 15, vm: "web-1", to: null, epoch: 4 },
  { type: "deleteVm", atMs: 16, vm: "web-1" },
  { type: "setVmKvp", atMs: 17, vm: "web-1", key: "app.port", value: "8080" },
];

describe("commands - encoding", () => {
  it("round-trips every command type, filling in defaults", () => {
    expect(everyCommand.map((c) => c.type).sort()).toEqual([...COMMAND_TYPES].sort());
    for (const command of everyCommand) {
      const decoded = decodeCommand(encodeCommand(command));
      expect(decoded).toMatchObject(command);
      expect(decodeCommand(encodeCommand(decoded))).toEqual(decoded);
    }
    const create = decodeCommand(encodeCommand({ type: "createVm", atMs: 0, vm: "a", spec: spec(4096) }));
    expect(create).toEqual({
      type: "createVm", atMs: 0, vm: "a", desiredState: "running", node: null,
      spec: {
        memoryBytes: 4096, vcpus: 1, image: "guests/build/hello.elf", bootMode: "bare", bootargs: "", antiAffinityGroup: null, affinityGroup: null,
        priority: "normal", restartPolicy: "restart", disks: [], integration: true, nics: [],
      },
    });
    expect(decodeCommand(encodeCommand({ type: "transfer", atMs: 0, vm: "a", from: "x", to: "y", epoch: 1 }))).toMatchObject({ migrationId: null });
    expect(decodeCommand(encodeCommand(nodeCommand("n", 1, 1)))).toMatchObject({ labels: {} });
  });

  it("writes one encoding per command whatever the key order of the caller's object", () => {
    const a = encodeCommand({ type: "renewLease", atMs: 1, node: "n1", untilMs: 2 });
    const b = encodeCommand({ untilMs: 2, node: "n1", atMs: 1, type: "renewLease" } as ClusterCommand);
    expect(a).toEqual(b);
    const labelsA = encodeCommand(nodeCommand("n", 1, 1, 0, { labels: { b: "2", a: "1" } }));
    const labelsB = encodeCommand(nodeCommand("n", 1, 1, 0, { labels: { a: "1", b: "2" } }));
    expect(labelsA).toEqual(labelsB);
    expect(new TextDecoder().decode(a)).toBe('{"v":1,"type":"renewLease","atMs":1,"node":"n1","untilMs":2}');
  });

  it("refuses to encode an invalid command, naming the field", () => {
    expect(() => encodeCommand({ type: "createVm", atMs: 0, vm: "a", spec: spec(1000) })).toThrow(ClusterCommandError);
    expect(() => encodeCommand({ type: "createVm", atMs: 0, vm: "a", spec: spec(5000) })).toThrow("createVm.spec.memoryBytes must be a multiple of 4096, got 5000");
    expect(() => encodeCommand({ type: "renewLease", atMs: -1, node: "n", untilMs: 0 })).toThrow("renewLease.atMs must be an integer ≥ 0, got -1");
    expect(() => encodeCommand({ type: "removeNode", atMs: 0, node: "-x" })).toThrow(/removeNode\.node must be 1 to 64 letters/);
    expect(() => encodeCommand({ type: "createVm", atMs: 0, vm: "a", spec: spec(4096, 65) })).toThrow("createVm.spec.vcpus must be an integer from 1 to 64, got 65");
    expect(() => encodeCommand({ type: "createVm", atMs: 0, vm: "a", spec: spec(4096, 1, { bootargs: "x".repeat(COMMAND_BYTES_MAX) }) })).toThrow(/bootargs must be 0 to 4096/);
  });
});

describe("commands - decoding", () => {
  const cases: [string, Uint8Array, string | RegExp][] = [
    ["empty bytes", new Uint8Array(), "empty command"],
    ["invalid UTF-8", Uint8Array.of(0x7b, 0xff, 0x7d), "command is not valid UTF-8"],
    ["invalid JSON", utf8.encode('{"v":1,'), "command is not valid JSON"],
    ["an array", json([1, 2]), "a command must be a JSON object"],
    ["no version", json({ type: "removeNode", atMs: 0, node: "n" }), "unsupported command version null (this member knows 1)"],
    ["a newer version", json({ v: 2, type: "removeNode", atMs: 0, node: "n" }), "unsupported command version 2 (this member knows 1)"],
    ["an unknown type", json({ v: 1, type: "explode", atMs: 0 }), 'unknown command type "explode"'],
    ["an unknown field", json({ v: 1, type: "removeNode", atMs: 0, node: "n", force: true }), 'removeNode has an unknown field "force"'],
    ["a __proto__ field", utf8.encode('{"v":1,"type":"removeNode","atMs":0,"node":"n","__proto__":{}}'), 'removeNode has an unknown field "__proto__"'],
    ["a missing field", json({ v: 1, type: "removeNode", atMs: 0 }), "removeNode.node must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit, got nothing"],
    ["a fractional epoch", json({ v: 1, type: "abortMigration", atMs: 0, vm: "a", epoch: 1.5 }), "abortMigration.epoch must be an integer ≥ 1, got 1.5"],
    ["epoch 0", json({ v: 1, type: "failover", atMs: 0, vm: "a", epoch: 0 }), "failover.epoch must be an integer ≥ 1, got 0"],
    ["an unsafe integer", utf8.encode('{"v":1,"type":"removeNode","atMs":9007199254740993,"node":"n"}'), /removeNode\.atMs must be an integer ≥ 0/],
    ["a string number", json({ v: 1, type: "removeNode", atMs: "5", node: "n" }), 'removeNode.atMs must be an integer ≥ 0, got "5"'],
    ["an unknown state", json({ v: 1, type: "setNodeState", atMs: 0, node: "n", state: "asleep" }), 'setNodeState.state must be one of active, draining, drained, failed, got "asleep"'],
    ["an unknown kind", json({ v: 1, type: "beginMigration", atMs: 0, vm: "a", from: "x", to: "y", kind: "teleport" }), /beginMigration\.kind must be one of live, quick/],
    ["a bad label key", json({ ...nodeCommand("n", 1, 1), v: 1, labels: { "-bad": "x" } }), /registerNode\.labels key must be 1 to 63/],
    ["a control character", json({ v: 1, type: "createVm", atMs: 0, vm: "a", spec: { ...spec(4096), image: "a\nb" } }), 'createVm.spec.image must not contain control characters, got "a\\nb"'],
    ["zero node memory", json({ ...nodeCommand("n", 0, 1), v: 1 }), "registerNode.capacity.memoryBytes must be an integer ≥ 1, got 0"],
    ["an address with spaces", json({ ...nodeCommand("n", 1, 1), v: 1, apiAddress: "a b" }), /registerNode\.apiAddress must be 1 to 256 printable ASCII/],
    ["too many bytes", new Uint8Array(COMMAND_BYTES_MAX + 1), `command is ${COMMAND_BYTES_MAX + 1} bytes, more than ${COMMAND_BYTES_MAX}`],
  ];
  for (const [what, bytes, message] of cases) {
    it(`refuses ${what} with a message naming the fault`, () => {
      expect(() => decodeCommand(bytes)).toThrow(ClusterCommandError);
      expect(() => decodeCommand(bytes)).toThrow(message);
    });
  }

  it("turns a malformed entry into an INVALID_ARGUMENT result, identical on two members, without a change", () => {
    const a = new Harness();
    const b = new ClusterState();
    a.ok(nodeCommand("n1", GiB, 2));
    b.apply(1, encodeCommand(nodeCommand("n1", GiB, 2)));
    for (const [, bytes, message] of cases) {
      const index = a.state.appliedIndex + 1;
      const ra = a.state.apply(index, bytes);
      const rb = b.apply(index, bytes);
      expect(ra).toEqual(rb);
      expect(ra).toMatchObject({ ok: false, command: null, code: "INVALID_ARGUMENT" });
      if (!ra.ok) expect(ra.message).toMatch(message);
    }
    expect(a.state.snapshot()).toEqual(b.snapshot());
    expect(a.state.listNodes()).toHaveLength(1);
    expect(a.state.appliedIndex).toBe(1 + cases.length);
  });
});

describe("state - apply order", () => {
  it("refuses an index applied twice, a gap, or an index before the first", () => {
    const s = new ClusterState();
    s.apply(1, encodeCommand(nodeCommand("n1", GiB, 2)));
    expect(() => s.apply(1, encodeCommand(nodeCommand("n2", GiB, 2)))).toThrow(ClusterStateError);
    expect(() => s.apply(1, encodeCommand(nodeCommand("n2", GiB, 2)))).toThrow("entry 1 applied after 1: entries must be applied in order, once");
    expect(() => s.apply(3, encodeCommand(nodeCommand("n2", GiB, 2)))).toThrow("entry 3 applied after 1");
    expect(() => s.skip(0)).toThrow(ClusterStateError);
    expect(s.getNode("n2")).toBeNull();
    s.skip(2);
    expect(s.apply(3, encodeCommand(nodeCommand("n2", GiB, 2)))).toMatchObject({ ok: true, created: true });
    expect(s.appliedIndex).toBe(3);
  });

  it("refuses invalid options", () => {
    expect(() => new ClusterState({ vcpuOvercommitRatio: 0 })).toThrow(ClusterStateError);
    expect(() => new ClusterState({ vcpuOvercommitRatio: Number.NaN })).toThrow("options.vcpuOvercommitRatio must be a number in (0, 64], got NaN");
    expect(() => new ClusterState({ leaseMsMax: 0 })).toThrow("options.leaseMsMax must be an integer ≥ 1, got 0");
    expect(() => new ClusterState({ placementPolicy: "random" as "spread" })).toThrow(/options\.placementPolicy must be one of best-fit, spread/);
    expect(new ClusterState().options).toEqual({ vcpuOvercommitRatio: 4, placementPolicy: "best-fit", leaseMsMax: 60_000 });
  });
});

describe("commands - VM disks", () => {
  it("refuses a disk size that is not a positive multiple of 512 up to 64 GiB, and more than 8 disks, naming the field", () => {
    const create = (disks: { sizeBytes: number }[]): ClusterCommand => ({ type: "createVm", atMs: 0, vm: "a", spec: spec(4096, 1, { disks }) });
    expect(() => encodeCommand(create([{ sizeBytes: 1000 }]))).toThrow("createVm.spec.disks[0].sizeBytes must be a multiple of 512, got 1000");
    expect(() => encodeCommand(create([{ sizeBytes: 512 }, { sizeBytes: 0 }]))).toThrow(/createVm\.spec\.disks\[1\]\.sizeBytes must be an integer from 512/);
    expect(() => encodeCommand(create([{ sizeBytes: 128 * GiB }]))).toThrow(/disks\[0\]\.sizeBytes/);
    expect(() => encodeCommand(create(Array.from({ length: 9 }, () => ({ sizeBytes: MiB }))))).toThrow("createVm.spec.disks has 9 disks, more than 8");
    expect(decodeCommand(encodeCommand(create([{ sizeBytes: MiB }])))).toMatchObject({ spec: { disks: [{ sizeBytes: MiB }], integration: true } });
  });
});

describe("commands - VM NICs", () => {
  it("refuses a MAC that is not 02:48 and four lowercase bytes, one NIC's MAC twice and more than 8 NICs, naming the field", () => {
    const create = (nics: { mac: string }[]): ClusterCommand => ({ type: "createVm", atMs: 0, vm: "a", spec: spec(4096, 1, { nics }) });
    expect(() => encodeCommand(create([{ mac: "02:48:00:00:00:0G" }]))).toThrow(/createVm\.spec\.nics\[0\]\.mac must be "02:48:" and four more lowercase hex bytes/);
    expect(() => encodeCommand(create([{ mac: "52:54:00:00:00:01" }]))).toThrow(/nics\[0\]\.mac/);
    expect(() => encodeCommand(create([{ mac: "02:48:00:00:00:01" }, { mac: "02:48:00:00:00:01" }]))).toThrow(/nics\[1\]\.mac is the MAC of an earlier NIC/);
    expect(() => encodeCommand(create(Array.from({ length: 9 }, (_, i) => ({ mac: `02:48:00:00:00:1${i}` }))))).toThrow("createVm.spec.nics has 9 NICs, more than 8");
    expect(decodeCommand(encodeCommand(create([{ mac: "02:48:0a:0b:0c:0d" }])))).toMatchObject({ spec: { nics: [{ mac: "02:48:0a:0b:0c:0d" }] } });
  });

  it("refuses a second VM with a MAC already in the cluster, and frees a deleted VM's MAC", () => {
    const s = new ClusterState();
    const apply = (c: ClusterCommand) => s.apply(s.appliedIndex + 1, encodeCommand(c));
    expect(apply(nodeCommand("n1", 64 * MiB, 4)).ok).toBe(true);
    const create = (vm: string, mac: string): ClusterCommand => ({ type: "createVm", atMs: 1, vm, spec: spec(MiB, 1, { nics: [{ mac }] }) });
    expect(apply(create("a", "02:48:00:00:00:01")).ok).toBe(true);
    const twin = apply(create("b", "02:48:00:00:00:01"));
    expect(twin).toMatchObject({ ok: false, code: "ALREADY_EXISTS", message: "createVm.spec.nics: MAC 02:48:00:00:00:01 belongs to vm a" });
    expect(apply({ type: "deleteVm", atMs: 2, vm: "a" }).ok).toBe(true);
    expect(apply(create("b", "02:48:00:00:00:01")).ok).toBe(true);
    expect(s.checkInvariants()).toEqual([]);
  });
});

describe("commands - host KVP values", () => {
  it("sets, replaces and removes a VM's host values, at most 32, refusing bad keys and values by field", () => {
    const h = new Harness();
    h.ok(nodeCommand("n1", 4 * GiB, 4));
    h.ok({ type: "createVm", atMs: 1, vm: "a", spec: spec(MiB) });
    h.ok({ type: "setVmKvp", atMs: 2, vm: "a", key: "b.port", value: "80" });
    h.ok({ type: "setVmKvp", atMs: 2, vm: "a", key: "a.name", value: "web" });
    h.ok({ type: "setVmKvp", atMs: 3, vm: "a", key: "b.port", value: "8080" });
    expect(h.state.getVm("a")!.hostKvp).toEqual({ "a.name": "web", "b.port": "8080" });
    expect(Object.keys(h.state.getVm("a")!.hostKvp)).toEqual(["a.name", "b.port"]);
    h.ok({ type: "setVmKvp", atMs: 4, vm: "a", key: "a.name", value: null });
    expect(h.state.getVm("a")!.hostKvp).toEqual({ "b.port": "8080" });
    h.rejected({ type: "setVmKvp", atMs: 4, vm: "zz", key: "k", value: "v" }, "NOT_FOUND", "vm zz does not exist");
    for (let i = 0; i < 31; i++) h.ok({ type: "setVmKvp", atMs: 5, vm: "a", key: `k${i}`, value: "x" });
    h.rejected({ type: "setVmKvp", atMs: 6, vm: "a", key: "one-more", value: "x" }, "FAILED_PRECONDITION", /already has 32 host KVP values/);
    h.ok({ type: "setVmKvp", atMs: 6, vm: "a", key: "k0", value: "replaced" }); // replacing is not adding
    const set = (key: string, value: string | null): ClusterCommand => ({ type: "setVmKvp", atMs: 0, vm: "a", key, value });
    expect(() => encodeCommand(set("", "v"))).toThrow(/setVmKvp\.key must be 1 to 63 bytes of UTF-8 without control characters or '='/);
    expect(() => encodeCommand(set("a=b", "v"))).toThrow(/setVmKvp\.key/);
    expect(() => encodeCommand(set("k".repeat(64), "v"))).toThrow(/setVmKvp\.key/);
    expect(() => encodeCommand(set("k", "v".repeat(256)))).toThrow(/setVmKvp\.value must be 0 to 255 bytes/);
    expect(() => encodeCommand(set("k", "a\nb"))).toThrow(/setVmKvp\.value/);
    expect(decodeCommand(encodeCommand(set("k", "")))).toMatchObject({ value: "" });
  });
});
