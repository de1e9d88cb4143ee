/**
 * The snapshot format of the cluster state, for Raft log compaction (all integers little-endian):
 *
 *   4 bytes  magic "HFCS"
 *   u8       format major (1): a reader refuses another major
 *   u8       format minor (0): a reader accepts an older or equal minor, refuses a newer one
 *   u32      body length in bytes
 *   body     UTF-8 JSON of the `ClusterData`: keys in a fixed order, records sorted by id, so two
 *            members with the same state write the same bytes
 *   u32      CRC-32 (IEEE) of everything before it
 *
 * At most `SNAPSHOT_BYTES_MAX` bytes. The format version is independent of package versions.
 */
import { crc32 } from "node:zlib";
import { ClusterCommandError, ClusterSnapshotError } from "./errors.js";
import type { Fields } from "./fields.js";
import { address, CLUSTER_NODES_MAX, CLUSTER_VMS_MAX, hostKvp, id, labels, nodeCapacity, oneOf, record, safeInteger, text, vmSpec } from "./fields.js";
import type { ClusterData, ClusterOptions, MigrationRecord, NodeRecord, VmRecord } from "./types.js";
import { MIGRATION_KINDS, NODE_STATES, PLACEMENT_POLICIES, VM_ACTUAL_STATES, VM_DESIRED_STATES } from "./types.js";

/** "HFCS": the first bytes of a cluster state snapshot. */
export const SNAPSHOT_MAGIC = Uint8Array.from([0x48, 0x46, 0x43, 0x53]);
export const SNAPSHOT_FORMAT_MAJOR = 1;
export const SNAPSHOT_FORMAT_MINOR = 0;
export const SNAPSHOT_BYTES_MAX = 256 * 1024 * 1024;
export const PENDING_REASON_CHARS_MAX = 8192;
/** A vCPU overcommit ratio is a finite number in (0, 64]. */
export const VCPU_OVERCOMMIT_RATIO_MAX = 64;

const HEADER_BYTES = SNAPSHOT_MAGIC.length + 2 + 4;
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Validates options (from a snapshot or a constructor); throws `ClusterCommandError` naming the field. */
export function parseOptions(value: unknown, path: string): ClusterOptions {
  const f = record(value, path, ["vcpuOvercommitRatio", "placementPolicy", "leaseMsMax"]);
  const ratio = f["vcpuOvercommitRatio"];
  if (typeof ratio !== "number" || !Number.isFinite(ratio) || ratio <= 0 || ratio > VCPU_OVERCOMMIT_RATIO_MAX) {
    throw new ClusterCommandError(`${path}.vcpuOvercommitRatio must be a number in (0, ${VCPU_OVERCOMMIT_RATIO_MAX}], got ${String(ratio)}`);
  }
  return Object.freeze({
    vcpuOvercommitRatio: ratio,
    placementPolicy: oneOf(f["placementPolicy"], PLACEMENT_POLICIES, `${path}.placementPolicy`),
    leaseMsMax: safeInteger(f["leaseMsMax"], `${path}.leaseMsMax`, 1),
  });
}

function array(value: unknown, path: string, maxItems: number): readonly unknown[] {
  if (!Array.isArray(value)) throw new ClusterCommandError(`${path} must be an array`);
  if (value.length > maxItems) throw new ClusterCommandError(`${path} has ${value.length} entries, more than ${maxItems}`);
  return value;
}

function nullable<T>(value: unknown, parse: (v: unknown) => T): T | null {
  return value === null ? null : parse(value);
}

function parseNode(value: unknown, path: string): NodeRecord {
  const f = record(value, path, ["id", "apiAddress", "migrationAddress", "capacity", "labels", "state", "leaseUntilMs", "registeredAtMs"]);
  return Object.freeze({
    id: id(f["id"], `${path}.id`),
    apiAddress: address(f["apiAddress"], `${path}.apiAddress`),
    migrationAddress: address(f["migrationAddress"], `${path}.migrationAddress`),
    capacity: nodeCapacity(f["capacity"], `${path}.capacity`),
    labels: labels(f["labels"], `${path}.labels`),
    state: oneOf(f["state"], NODE_STATES, `${path}.state`),
    leaseUntilMs: safeInteger(f["leaseUntilMs"], `${path}.leaseUntilMs`, 0),
    registeredAtMs: safeInteger(f["registeredAtMs"], `${path}.registeredAtMs`, 0),
  });
}

function parseVm(value: unknown, path: string): VmRecord {
  const f = record(value, path, ["id", "spec", "desiredState", "owner", "epoch", "actual", "pendingReason", "createdAtMs", "savedState", "hostKvp"]);
  return Object.freeze({
    id: id(f["id"], `${path}.id`),
    spec: vmSpec(f["spec"], `${path}.spec`),
    desiredState: oneOf(f["desiredState"], VM_DESIRED_STATES, `${path}.desiredState`),
    owner: nullable(f["owner"], (v) => id(v, `${path}.owner`)),
    epoch: safeInteger(f["epoch"], `${path}.epoch`, 1),
    actual: nullable(f["actual"], (v) => {
      const a: Fields = record(v, `${path}.actual`, ["state", "epoch", "atMs"]);
      return Object.freeze({
        state: oneOf(a["state"], VM_ACTUAL_STATES, `${path}.actual.state`),
        epoch: safeInteger(a["epoch"], `${path}.actual.epoch`, 1),
        atMs: safeInteger(a["atMs"], `${path}.actual.atMs`, 0),
      });
    }),
    pendingReason: nullable(f["pendingReason"], (v) => text(v, `${path}.pendingReason`, 1, PENDING_REASON_CHARS_MAX)),
    createdAtMs: safeInteger(f["createdAtMs"], `${path}.createdAtMs`, 0),
    // absent in snapshots written before saved states existed
    savedState: nullable(f["savedState"] ?? null, (v) => id(v, `${path}.savedState`)),
    // absent in snapshots written before host KVP values existed
    hostKvp: hostKvp(f["hostKvp"], `${path}.hostKvp`),
  });
}

function parseMigration(value: unknown, path: string): MigrationRecord {
  const f = record(value, path, ["vm", "from", "to", "epoch", "kind", "startedAtMs", "migrationId"]);
  return Object.freeze({
    vm: id(f["vm"], `${path}.vm`),
    from: id(f["from"], `${path}.from`),
    to: id(f["to"], `${path}.to`),
    epoch: safeInteger(f["epoch"], `${path}.epoch`, 1),
    kind: oneOf(f["kind"], MIGRATION_KINDS, `${path}.kind`),
    startedAtMs: safeInteger(f["startedAtMs"], `${path}.startedAtMs`, 0),
    migrationId: safeInteger(f["migrationId"], `${path}.migrationId`, 1),
  });
}

/** Parses and validates every field of a state's plain data (not its cross-record invariants). */
export function parseClusterData(value: unknown): ClusterData {
  const f = record(value, "snapshot", ["appliedIndex", "options", "nodes", "vms", "migrations"]);
  return {
    appliedIndex: safeInteger(f["appliedIndex"], "snapshot.appliedIndex", 0),
    options: parseOptions(f["options"], "snapshot.options"),
    nodes: array(f["nodes"], "snapshot.nodes", CLUSTER_NODES_MAX).map((n, i) => parseNode(n, `snapshot.nodes[${i}]`)),
    vms: array(f["vms"], "snapshot.vms", CLUSTER_VMS_MAX).map((vm, i) => parseVm(vm, `snapshot.vms[${i}]`)),
    migrations: array(f["migrations"], "snapshot.migrations", CLUSTER_VMS_MAX).map((m, i) => parseMigration(m, `snapshot.migrations[${i}]`)),
  };
}

function byKey(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The data with every object's keys in one fixed order and records sorted: one state, one encoding. */
function canonical(data: ClusterData): unknown {
  const o = data.options;
  return {
    appliedIndex: data.appliedIndex,
    options: { vcpuOvercommitRatio: o.vcpuOvercommitRatio, placementPolicy: o.placementPolicy, leaseMsMax: o.leaseMsMax },
    nodes: [...data.nodes].sort((a, b) => byKey(a.id, b.id)).map((n) => ({
      id: n.id,
      apiAddress: n.apiAddress,
      migrationAddress: n.migrationAddress,
      capacity: { memoryBytes: n.capacity.memoryBytes, vcpus: n.capacity.vcpus },
      labels: Object.fromEntries(Object.keys(n.labels).sort(byKey).map((k) => [k, n.labels[k]!])),
      state: n.state,
      leaseUntilMs: n.leaseUntilMs,
      registeredAtMs: n.registeredAtMs,
    })),
    vms: [...data.vms].sort((a, b) => byKey(a.id, b.id)).map((vm) => ({
      id: vm.id,
      spec: {
        memoryBytes: vm.spec.memoryBytes,
        vcpus: vm.spec.vcpus,
        image: vm.spec.image,
        bootMode: vm.spec.bootMode,
        bootargs: vm.spec.bootargs,
        antiAffinityGroup: vm.spec.antiAffinityGroup,
        affinityGroup: vm.spec.affinityGroup,
        priority: vm.spec.priority,
        restartPolicy: vm.spec.restartPolicy,
        disks: vm.spec.disks.map((d) => ({ sizeBytes: d.sizeBytes })),
        integration: vm.spec.integration,
        nics: vm.spec.nics.map((n) => ({ mac: n.mac })),
      },
      desiredState: vm.desiredState,
      owner: vm.owner,
      epoch: vm.epoch,
      actual: vm.actual === null ? null : { state: vm.actual.state, epoch: vm.actual.epoch, atMs: vm.actual.atMs },
      pendingReason: vm.pendingReason,
      createdAtMs: vm.createdAtMs,
      savedState: vm.savedState,
      hostKvp: vm.hostKvp,
    })),
    migrations: [...data.migrations].sort((a, b) => byKey(a.vm, b.vm)).map((m) => ({
      vm: m.vm, from: m.from, to: m.to, epoch: m.epoch, kind: m.kind, startedAtMs: m.startedAtMs, migrationId: m.migrationId,
    })),
  };
}

/** Encodes a state's data as a snapshot (see the module comment). */
export function encodeSnapshot(data: ClusterData): Uint8Array {
  const body = utf8.encode(JSON.stringify(canonical(data)));
  const total = HEADER_BYTES + body.length + 4;
  if (total > SNAPSHOT_BYTES_MAX) throw new ClusterSnapshotError(`snapshot would be ${total} bytes, more than ${SNAPSHOT_BYTES_MAX}`);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  out.set(SNAPSHOT_MAGIC, 0);
  view.setUint8(4, SNAPSHOT_FORMAT_MAJOR);
  view.setUint8(5, SNAPSHOT_FORMAT_MINOR);
  view.setUint32(6, body.length, true);
  out.set(body, HEADER_BYTES);
  view.setUint32(HEADER_BYTES + body.length, crc32(out.subarray(0, HEADER_BYTES + body.length)), true);
  return out;
}

function hex(v: number): string {
  return `0x${v.toString(16).padStart(8, "0")}`;
}

/**
 * Decodes a snapshot and validates every field. Throws `ClusterSnapshotError` saying what is wrong:
 * size, magic, version, length, checksum, encoding, or the first invalid field. Cross-record
 * invariants are left to `checkInvariants` (the state machine runs it before adopting the data).
 */
export function decodeSnapshot(bytes: Uint8Array): ClusterData {
  if (bytes.length > SNAPSHOT_BYTES_MAX) throw new ClusterSnapshotError(`snapshot is ${bytes.length} bytes, more than ${SNAPSHOT_BYTES_MAX}`);
  if (bytes.length < HEADER_BYTES + 4) throw new ClusterSnapshotError(`snapshot too short: ${bytes.length} bytes`);
  for (let i = 0; i < SNAPSHOT_MAGIC.length; i++) {
    if (bytes[i] !== SNAPSHOT_MAGIC[i]) throw new ClusterSnapshotError("not a cluster state snapshot (bad magic)");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = view.getUint8(4);
  const minor = view.getUint8(5);
  if (major !== SNAPSHOT_FORMAT_MAJOR || minor > SNAPSHOT_FORMAT_MINOR) {
    throw new ClusterSnapshotError(`unsupported snapshot format ${major}.${minor} (this reader knows ${SNAPSHOT_FORMAT_MAJOR}.0 to ${SNAPSHOT_FORMAT_MAJOR}.${SNAPSHOT_FORMAT_MINOR})`);
  }
  const bodyBytes = view.getUint32(6, true);
  if (HEADER_BYTES + bodyBytes + 4 !== bytes.length) {
    throw new ClusterSnapshotError(`snapshot length mismatch: the header announces a ${bodyBytes}-byte body, the snapshot holds ${bytes.length - HEADER_BYTES - 4}`);
  }
  const stored = view.getUint32(HEADER_BYTES + bodyBytes, true);
  const actual = crc32(bytes.subarray(0, HEADER_BYTES + bodyBytes));
  if (stored !== actual) throw new ClusterSnapshotError(`snapshot checksum mismatch: stored ${hex(stored)}, computed ${hex(actual)}`);
  let value: unknown;
  try {
    value = JSON.parse(strictUtf8.decode(bytes.subarray(HEADER_BYTES, HEADER_BYTES + bodyBytes)));
  } catch (cause) {
    throw new ClusterSnapshotError("snapshot body is not valid UTF-8 JSON", { cause });
  }
  try {
    return parseClusterData(value);
  } catch (cause) {
    if (!(cause instanceof ClusterCommandError)) throw cause;
    throw new ClusterSnapshotError(`malformed snapshot: ${cause.message}`, { cause });
  }
}
