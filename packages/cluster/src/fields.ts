/**
 * Field validators shared by the command decoder and the snapshot reader. Each returns the value in
 * its normal form or throws a `ClusterCommandError` whose message names the field (`createVm.spec.vcpus`)
 * and the rule it breaks. Messages depend only on the input, so every member writes the same one.
 */
import { ClusterCommandError } from "./errors.js";
import type { Capacity, VmSpec } from "./types.js";
import { BOOT_MODES, RESTART_POLICIES, VM_PRIORITIES } from "./types.js";

export const ID_CHARS_MAX = 64;
export const ADDRESS_CHARS_MAX = 256;
export const IMAGE_CHARS_MAX = 1024;
export const BOOTARGS_CHARS_MAX = 4096;
export const LABELS_MAX = 32;
export const LABEL_VALUE_CHARS_MAX = 128;
export const PAGE_BYTES = 4096;
export const VM_VCPUS_MAX = 64;
export const NODE_VCPUS_MAX = 4096;
/** The most nodes the cluster state holds; a registerNode beyond it is refused (NO_CAPACITY). */
export const CLUSTER_NODES_MAX = 1024;
/** The most VMs the cluster state holds; a createVm beyond it is refused (NO_CAPACITY). */
export const CLUSTER_VMS_MAX = 100_000;

/** Virtual disks of one VM, at most. */
export const VM_DISKS_MAX = 8;
/** Virtual disk sizes: a positive multiple of 512 bytes, at most 64 GiB. */
export const DISK_SECTOR_BYTES = 512;
export const DISK_BYTES_MAX = 64 * 2 ** 30;
/** Host KVP values of one VM (what the host sets for the guest to read), at most; keys and values in UTF-8 bytes. */
export const VM_KVP_KEYS_MAX = 32;
export const KVP_KEY_BYTES_MAX = 63;
export const KVP_VALUE_BYTES_MAX = 255;
/** Synthetic NICs of one VM, at most. */
export const VM_NICS_MAX = 8;
/** A NIC's MAC: locally administered, "02:48:" then four bytes, lowercase hex. */
export const NIC_MAC_PATTERN = /^02:48(?::[0-9a-f]{2}){4}$/;

/** Node, VM and group ids: 1 to 64 characters, letters, digits, '.', '_', '-', starting alphanumeric. */
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Label keys: 1 to 63 characters, letters, digits, '.', '/', '-', alphanumeric at both ends. */
const LABEL_KEY_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9./-]{0,61}[A-Za-z0-9])?$/;
/** Addresses: printable ASCII without spaces ("host:port", "[::1]:7000", "nats://h:4222"). */
const ADDRESS_PATTERN = /^[\x21-\x7e]+$/;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

export type Fields = Readonly<Record<string, unknown>>;

/** A short rendering of an offending value for a message. */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") {
    const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
    return JSON.stringify(shown);
  }
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return `a ${typeof value}`;
}

function fail(path: string, rule: string, value: unknown): never {
  throw new ClusterCommandError(`${path} ${rule}, got ${describeValue(value)}`);
}

/** A plain object (not null, not an array) whose keys are all in `allowed`. */
export function record(value: unknown, path: string, allowed: readonly string[]): Fields {
  if (typeof value !== "object" || value === null || Array.isArray(value)) fail(path, "must be an object", value);
  const fields = value as Fields;
  for (const key of Object.keys(fields)) {
    if (!allowed.includes(key) && fields[key] !== undefined) throw new ClusterCommandError(`${path} has an unknown field ${JSON.stringify(key)}`);
  }
  return fields;
}

export function id(value: unknown, path: string): string {
  if (typeof value !== "string" || !ID_PATTERN.test(value)) {
    fail(path, `must be 1 to ${ID_CHARS_MAX} letters, digits, '.', '_' or '-', starting with a letter or digit`, value);
  }
  return value;
}

/** `null` when absent. */
export function optionalBoolean(value: unknown, path: string): boolean {
  if (value === undefined || value === null) return false;
  if (typeof value !== "boolean") fail(path, "must be true or false", value);
  return value;
}

export function optionalId(value: unknown, path: string): string | null {
  return value === undefined || value === null ? null : id(value, path);
}

export function safeInteger(value: unknown, path: string, min: number, max: number = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    fail(path, max === Number.MAX_SAFE_INTEGER ? `must be an integer ≥ ${min}` : `must be an integer from ${min} to ${max}`, value);
  }
  return value;
}

/** `null` when absent. */
export function optionalSafeInteger(value: unknown, path: string, min: number): number | null {
  return value === undefined || value === null ? null : safeInteger(value, path, min);
}

export function oneOf<T extends string>(value: unknown, values: readonly T[], path: string): T {
  if (typeof value !== "string" || !(values as readonly string[]).includes(value)) fail(path, `must be one of ${values.join(", ")}`, value);
  return value as T;
}

export function text(value: unknown, path: string, minChars: number, maxChars: number): string {
  if (typeof value !== "string") fail(path, "must be a string", value);
  if (value.length < minChars || value.length > maxChars) fail(path, `must be ${minChars} to ${maxChars} characters long`, value);
  if (CONTROL_CHARS.test(value)) fail(path, "must not contain control characters", value);
  return value;
}

export function address(value: unknown, path: string): string {
  if (typeof value !== "string" || value.length > ADDRESS_CHARS_MAX || !ADDRESS_PATTERN.test(value)) {
    fail(path, `must be 1 to ${ADDRESS_CHARS_MAX} printable ASCII characters without spaces`, value);
  }
  return value;
}

/** Labels in normal form: a fresh object with its keys sorted. `{}` when absent. */
export function labels(value: unknown, path: string): Readonly<Record<string, string>> {
  if (value === undefined || value === null) return Object.freeze({});
  if (typeof value !== "object" || Array.isArray(value)) fail(path, "must be an object of strings", value);
  const keys = Object.keys(value).sort();
  if (keys.length > LABELS_MAX) throw new ClusterCommandError(`${path} has ${keys.length} labels, more than ${LABELS_MAX}`);
  const out: Record<string, string> = {};
  for (const key of keys) {
    if (!LABEL_KEY_PATTERN.test(key)) fail(`${path} key`, "must be 1 to 63 letters, digits, '.', '/' or '-', alphanumeric at both ends", key);
    out[key] = text((value as Fields)[key], `${path}.${key}`, 0, LABEL_VALUE_CHARS_MAX);
  }
  return Object.freeze(out);
}

/** A node's capacity: any positive byte count, 1 to 4096 pCPUs. */
export function nodeCapacity(value: unknown, path: string): Capacity {
  const f = record(value, path, ["memoryBytes", "vcpus"]);
  return Object.freeze({
    memoryBytes: safeInteger(f["memoryBytes"], `${path}.memoryBytes`, 1),
    vcpus: safeInteger(f["vcpus"], `${path}.vcpus`, 1, NODE_VCPUS_MAX),
  });
}

const SPEC_FIELDS = ["memoryBytes", "vcpus", "image", "bootMode", "bootargs", "antiAffinityGroup", "affinityGroup", "priority", "restartPolicy", "disks", "integration", "nics"] as const;

/** A VM's virtual disks in normal form; `[]` when absent (specs written before disks existed). */
export function vmDisks(value: unknown, path: string): VmSpec["disks"] {
  if (value === undefined || value === null) return Object.freeze([]);
  if (!Array.isArray(value)) fail(path, "must be an array of disks", value);
  if (value.length > VM_DISKS_MAX) throw new ClusterCommandError(`${path} has ${value.length} disks, more than ${VM_DISKS_MAX}`);
  return Object.freeze(value.map((d: unknown, i) => {
    const f = record(d, `${path}[${i}]`, ["sizeBytes"]);
    const sizeBytes = safeInteger(f["sizeBytes"], `${path}[${i}].sizeBytes`, DISK_SECTOR_BYTES, DISK_BYTES_MAX);
    if (sizeBytes % DISK_SECTOR_BYTES !== 0) fail(`${path}[${i}].sizeBytes`, `must be a multiple of ${DISK_SECTOR_BYTES}`, sizeBytes);
    return Object.freeze({ sizeBytes });
  }));
}

const kvpBytes = new TextEncoder();

/** A KVP key: 1 to 63 UTF-8 bytes, no control characters, no '='. */
export function kvpKey(value: unknown, path: string): string {
  if (typeof value !== "string" || value.length === 0 || kvpBytes.encode(value).length > KVP_KEY_BYTES_MAX || CONTROL_CHARS.test(value) || value.includes("=")) {
    fail(path, `must be 1 to ${KVP_KEY_BYTES_MAX} bytes of UTF-8 without control characters or '='`, value);
  }
  return value;
}

/** A KVP value: 0 to 255 UTF-8 bytes, no control characters. */
export function kvpValue(value: unknown, path: string): string {
  if (typeof value !== "string" || kvpBytes.encode(value).length > KVP_VALUE_BYTES_MAX || CONTROL_CHARS.test(value)) {
    fail(path, `must be 0 to ${KVP_VALUE_BYTES_MAX} bytes of UTF-8 without control characters`, value);
  }
  return value;
}

/** A VM's host KVP values in normal form (keys sorted); `{}` when absent (records written before they existed). */
export function hostKvp(value: unknown, path: string): Readonly<Record<string, string>> {
  if (value === undefined || value === null) return Object.freeze({});
  if (typeof value !== "object" || Array.isArray(value)) fail(path, "must be an object of key to value", value);
  const entries = Object.entries(value as Fields);
  if (entries.length > VM_KVP_KEYS_MAX) throw new ClusterCommandError(`${path} has ${entries.length} values, more than ${VM_KVP_KEYS_MAX}`);
  const out: Record<string, string> = {};
  for (const [k, v] of entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) out[kvpKey(k, `${path} key`)] = kvpValue(v, `${path}.${k}`);
  return Object.freeze(out);
}

/** A VM's NICs in normal form; `[]` when absent (specs written before NICs existed). No MAC twice. */
export function vmNics(value: unknown, path: string): VmSpec["nics"] {
  if (value === undefined || value === null) return Object.freeze([]);
  if (!Array.isArray(value)) fail(path, "must be an array of NICs", value);
  if (value.length > VM_NICS_MAX) throw new ClusterCommandError(`${path} has ${value.length} NICs, more than ${VM_NICS_MAX}`);
  const seen = new Set<string>();
  return Object.freeze(value.map((n: unknown, i) => {
    const f = record(n, `${path}[${i}]`, ["mac"]);
    const mac = f["mac"];
    if (typeof mac !== "string" || !NIC_MAC_PATTERN.test(mac)) fail(`${path}[${i}].mac`, `must be "02:48:" and four more lowercase hex bytes`, mac);
    if (seen.has(mac)) fail(`${path}[${i}].mac`, "is the MAC of an earlier NIC of this VM", mac);
    seen.add(mac);
    return Object.freeze({ mac });
  }));
}

/**
 * A VM spec in normal form. Defaults for absent fields: bootargs "", no groups, priority "normal",
 * restart policy "restart", no disks, integration services on, no NICs. Memory must be a positive multiple of 4 KiB, vCPUs 1 to 64.
 */
export function vmSpec(value: unknown, path: string): VmSpec {
  const f = record(value, path, SPEC_FIELDS);
  const memoryBytes = safeInteger(f["memoryBytes"], `${path}.memoryBytes`, PAGE_BYTES);
  if (memoryBytes % PAGE_BYTES !== 0) fail(`${path}.memoryBytes`, `must be a multiple of ${PAGE_BYTES}`, memoryBytes);
  return Object.freeze({
    memoryBytes,
    vcpus: safeInteger(f["vcpus"], `${path}.vcpus`, 1, VM_VCPUS_MAX),
    image: text(f["image"], `${path}.image`, 1, IMAGE_CHARS_MAX),
    bootMode: oneOf(f["bootMode"], BOOT_MODES, `${path}.bootMode`),
    bootargs: f["bootargs"] === undefined ? "" : text(f["bootargs"], `${path}.bootargs`, 0, BOOTARGS_CHARS_MAX),
    antiAffinityGroup: optionalId(f["antiAffinityGroup"], `${path}.antiAffinityGroup`),
    affinityGroup: optionalId(f["affinityGroup"], `${path}.affinityGroup`),
    priority: f["priority"] === undefined ? "normal" : oneOf(f["priority"], VM_PRIORITIES, `${path}.priority`),
    restartPolicy: f["restartPolicy"] === undefined ? "restart" : oneOf(f["restartPolicy"], RESTART_POLICIES, `${path}.restartPolicy`),
    disks: vmDisks(f["disks"], `${path}.disks`),
    integration: f["integration"] === undefined || f["integration"] === null ? true : optionalBoolean(f["integration"], `${path}.integration`),
    nics: vmNics(f["nics"], `${path}.nics`),
  });
}
