import { crc32 } from "node:zlib";
import { describe, expect, it } from "vitest";
import type { ClusterCommand } from "../src/commands.js";
import { encodeCommand } from "../src/commands.js";
import { ClusterSnapshotError } from "../src/errors.js";
import { decodeSnapshot, encodeSnapshot, SNAPSHOT_MAGIC } from "../src/snapshot.js";
import { ClusterState } from "../src/state.js";
import { GiB, MiB, nodeCommand, spec } from "./helpers.js";

const history: ClusterCommand[] = [
  nodeCommand("n1", 4 * GiB, 2, 0, { labels: { zone: "a" } }),
  nodeCommand("n2", 4 * GiB, 2, 0, { labels: { zone: "b", "hw/gen": "2" } }),
  nodeCommand("n3", 2 * GiB, 1, 0),
  { type: "createVm", atMs: 1, vm: "web-1", spec: spec(GiB, 2, { antiAffinityGroup: "web", bootargs: "console=ttyS0" }) },
  { type: "createVm", atMs: 1, vm: "web-2", spec: spec(GiB, 2, { antiAffinityGroup: "web", affinityGroup: "shop" }) },
  { type: "createVm", atMs: 1, vm: "db", spec: spec(512 * MiB, 1, { bootMode: "sbi", priority: "high", restartPolicy: "do-not-restart" }), node: "n3" },
  { type: "reportActual", atMs: 2, vm: "db", node: "n3", epoch: 1, actual: "running" },
  { type: "beginMigration", atMs: 3, vm: "db", from: "n3", to: "n1", kind: "quick" },
  { type: "renewLease", atMs: 4, node: "n1", untilMs: 30_000 },
  { type: "renewLease", atMs: 4, node: "n2", untilMs: 30_000 },
  { type: "setNodeState", atMs: 5, node: "n2", state: "draining" },
];

function build(commands: readonly ClusterCommand[]): ClusterState {
  const s = new ClusterState({ checkInvariantsOnApply: true });
  for (const c of commands) s.apply(s.appliedIndex + 1, encodeCommand(c));
  return s;
}

/** A state with a pending VM as well: n1 and n3 lose their leases and web-1's failover finds no room. */
function richState(): ClusterState {
  const s = build(history);
  const web1 = s.getVm("web-1")!;
  const r = s.apply(s.appliedIndex + 1, encodeCommand({ type: "failover", atMs: 40_000, vm: "web-1", epoch: web1.epoch }));
  expect(r).toMatchObject({ ok: true, owner: null });
  return s;
}

/** web-1 cannot join web-2 on n1 (anti-affinity): it gets n2 once n2 is active with a live lease. */
const later: ClusterCommand[] = [
  { type: "renewLease", atMs: 40_001, node: "n1", untilMs: 90_000 },
  { type: "failover", atMs: 40_001, vm: "web-1", epoch: 2 },
  { type: "setNodeState", atMs: 40_001, node: "n2", state: "active" },
  { type: "renewLease", atMs: 40_001, node: "n2", untilMs: 90_000 },
  { type: "failover", atMs: 40_002, vm: "web-1", epoch: 2 },
  { type: "abortMigration", atMs: 40_003, vm: "db", epoch: 1 },
  { type: "createVm", atMs: 40_004, vm: "late", spec: spec(MiB) },
];

describe("snapshot - round trip", () => {
  it("restores an equal state that goes on exactly like the original", () => {
    const original = richState();
    const bytes = original.snapshot();
    expect(Array.from(bytes.subarray(0, 4))).toEqual(Array.from(SNAPSHOT_MAGIC));
    const copy = new ClusterState();
    copy.restore(bytes);
    expect(copy.toData()).toEqual(original.toData());
    expect(copy.usageByNode()).toEqual(original.usageByNode());
    expect(copy.appliedIndex).toBe(original.appliedIndex);
    expect(copy.snapshot()).toEqual(bytes);
    expect(copy.checkInvariants()).toEqual([]);
    for (const c of later) {
      const index = original.appliedIndex + 1;
      expect(copy.apply(index, encodeCommand(c))).toEqual(original.apply(index, encodeCommand(c)));
    }
    expect(copy.snapshot()).toEqual(original.snapshot());
    expect(copy.getVm("web-1")).toMatchObject({ owner: "n2", epoch: 3 });
    expect(copy.getVm("web-2")).toMatchObject({ owner: "n1", epoch: 1 });
  });

  it("writes the same bytes for the same state reached through a different order", () => {
    const a = build([nodeCommand("n1", GiB, 1), nodeCommand("n2", GiB, 1), { type: "createVm", atMs: 1, vm: "x", spec: spec(MiB), node: "n1" }]);
    const b = build([nodeCommand("n2", GiB, 1), nodeCommand("n1", GiB, 1), { type: "createVm", atMs: 1, vm: "x", spec: spec(MiB), node: "n1" }]);
    expect(a.snapshot()).toEqual(b.snapshot());
  });

  it("round-trips an empty state", () => {
    const empty = new ClusterState();
    const copy = new ClusterState();
    copy.restore(empty.snapshot());
    expect(copy.toData()).toEqual(empty.toData());
    expect(decodeSnapshot(empty.snapshot())).toEqual(empty.toData());
  });
});

/** Asserts that restoring `bytes` into `target` throws a ClusterSnapshotError matching `message` and changes nothing. */
function expectRefused(target: ClusterState, bytes: Uint8Array, message: RegExp | string): void {
  const before = target.snapshot();
  let error: unknown = null;
  try {
    target.restore(bytes);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(ClusterSnapshotError);
  expect((error as Error).message).toMatch(message);
  expect(target.snapshot()).toEqual(before);
}

/** Re-seals a damaged body with a valid length and checksum, so only the content is wrong. */
function seal(body: string): Uint8Array {
  const b = new TextEncoder().encode(body);
  const out = new Uint8Array(10 + b.length + 4);
  out.set(SNAPSHOT_MAGIC);
  out[4] = 1;
  out[5] = 0;
  new DataView(out.buffer).setUint32(6, b.length, true);
  out.set(b, 10);
  new DataView(out.buffer).setUint32(10 + b.length, crc32(out.subarray(0, 10 + b.length)), true);
  return out;
}

describe("snapshot - damage", () => {
  const good = richState().snapshot();
  const target = (): ClusterState => build(history.slice(0, 4));

  it("detects a flip of any single byte", () => {
    const t = target();
    const before = t.snapshot();
    for (let i = 0; i < good.length; i++) {
      const bad = good.slice();
      bad[i] = bad[i]! ^ 0x10;
      expect(() => t.restore(bad)).toThrow(ClusterSnapshotError);
    }
    expect(t.snapshot()).toEqual(before);
  });

  it("names the fault: magic, version, length, checksum", () => {
    const t = target();
    const magic = good.slice();
    magic[0] = 0x58;
    expectRefused(t, magic, "not a cluster state snapshot (bad magic)");
    const major = good.slice();
    major[4] = 2;
    expectRefused(t, major, "unsupported snapshot format 2.0 (this reader knows 1.0 to 1.0)");
    const minor = good.slice();
    minor[5] = 1;
    expectRefused(t, minor, "unsupported snapshot format 1.1");
    expectRefused(t, good.subarray(0, 20), /^snapshot length mismatch: the header announces a \d+-byte body, the snapshot holds 6$/);
    expectRefused(t, good.subarray(0, 8), "snapshot too short: 8 bytes");
    const flipped = good.slice();
    flipped[20] = flipped[20]! ^ 1;
    expectRefused(t, flipped, /^snapshot checksum mismatch: stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}$/);
  });

  it("refuses a sealed body that is not JSON or has an invalid field", () => {
    const t = target();
    expectRefused(t, seal("{nope"), "snapshot body is not valid UTF-8 JSON");
    const data = JSON.parse(new TextDecoder().decode(good.subarray(10, good.length - 4))) as { vms: { epoch: number }[]; extra?: number };
    data.vms[0]!.epoch = 0;
    expectRefused(t, seal(JSON.stringify(data)), "malformed snapshot: snapshot.vms[0].epoch must be an integer ≥ 1, got 0");
  });

  it("refuses a well-formed snapshot whose records contradict each other", () => {
    const t = target();
    const data = richState().toData();
    const ghostOwner = { ...data, vms: data.vms.map((vm) => (vm.id === "db" ? { ...vm, owner: "ghost" } : vm)) };
    expectRefused(t, encodeSnapshot(ghostOwner), /^inconsistent snapshot: .*vm db is owned by ghost, which is not a registered node/);
    const shrunk = { ...data, nodes: data.nodes.map((n) => (n.id === "n3" ? { ...n, capacity: { memoryBytes: 256 * MiB, vcpus: 1 } } : n)) };
    expectRefused(t, encodeSnapshot(shrunk), `inconsistent snapshot: node n3 has ${512 * MiB} bytes committed, more than its ${256 * MiB}`);
  });

  it("refuses a snapshot taken with other options", () => {
    const t = new ClusterState({ vcpuOvercommitRatio: 2 });
    expectRefused(t, good, "snapshot options (vcpuOvercommitRatio 4, placementPolicy best-fit, leaseMsMax 60000) differ from this member's (2, best-fit, 60000): every member must run with the same options");
  });
});

describe("snapshot - VM devices", () => {
  it("round-trips disks and integration, and loads a snapshot written before they existed with no disks and integration on", () => {
    const s = build([...history, { type: "createVm", atMs: 6, vm: "store", spec: spec(MiB, 1, { disks: [{ sizeBytes: 64 * MiB }, { sizeBytes: 512 }], integration: false }) }]);
    const copy = new ClusterState();
    copy.restore(s.snapshot());
    expect(copy.getVm("store")!.spec).toMatchObject({ disks: [{ sizeBytes: 64 * MiB }, { sizeBytes: 512 }], integration: false });
    expect(copy.getVm("db")!.spec).toMatchObject({ disks: [], integration: true });
    const old = new TextDecoder().decode(s.snapshot().subarray(10, -4)).replaceAll(/,"disks":\[[^\]]*\],"integration":(true|false)/g, "");
    expect(old).not.toContain("disks");
    const restored = new ClusterState();
    restored.restore(seal(old));
    expect(restored.getVm("store")!.spec).toMatchObject({ disks: [], integration: true });
  });
});

describe("snapshot - VM NICs", () => {
  it("round-trips NICs, keeps their MACs taken after a restore, and loads a snapshot written before NICs with none", () => {
    const s = build([...history, { type: "createVm", atMs: 6, vm: "web", spec: spec(MiB, 1, { nics: [{ mac: "02:48:00:00:00:07" }] }) }]);
    const copy = new ClusterState();
    copy.restore(s.snapshot());
    expect(copy.getVm("web")!.spec.nics).toEqual([{ mac: "02:48:00:00:00:07" }]);
    expect(copy.apply(copy.appliedIndex + 1, encodeCommand({ type: "createVm", atMs: 7, vm: "web2", spec: spec(MiB, 1, { nics: [{ mac: "02:48:00:00:00:07" }] }) })))
      .toMatchObject({ ok: false, code: "ALREADY_EXISTS" });
    const old = new TextDecoder().decode(s.snapshot().subarray(10, -4)).replaceAll(/,"nics":\[[^\]]*\]/g, "");
    expect(old).not.toContain("nics");
    const restored = new ClusterState();
    restored.restore(seal(old));
    expect(restored.getVm("web")!.spec.nics).toEqual([]);
  });
});

describe("snapshot - host KVP values", () => {
  it("round-trips a VM's host values, and loads a snapshot written before they existed with none", () => {
    const s = build([...history, { type: "setVmKvp", atMs: 6, vm: "db", key: "db.role", value: "primary" }]);
    const copy = new ClusterState();
    copy.restore(s.snapshot());
    expect(copy.getVm("db")!.hostKvp).toEqual({ "db.role": "primary" });
    const old = new TextDecoder().decode(s.snapshot().subarray(10, -4)).replaceAll(/,"hostKvp":\{[^}]*\}/g, "");
    expect(old).not.toContain("hostKvp");
    const restored = new ClusterState();
    restored.restore(seal(old));
    expect(restored.getVm("db")!.hostKvp).toEqual({});
  });
});
