/**
 * The commands of the cluster state machine and their encoding in a Raft entry.
 *
 * Encoding: UTF-8 JSON of one object, `{"v":1,"type":"<command>","atMs":…,<fields>}`, at most
 * `COMMAND_BYTES_MAX` bytes. `encodeCommand` writes the fields in a fixed order with defaults filled in,
 * so one command has one encoding. `decodeCommand` validates every field (type, range, pattern) and
 * refuses unknown fields and unknown versions with a `ClusterCommandError` naming the field; the state
 * machine turns that into an INVALID_ARGUMENT result, the same on every member.
 *
 * Versioning: `v` is the format of the command, independent of package versions. A member refuses a
 * version it does not know, so a new version (or a new field) may only be proposed once every member
 * understands it; a member never ignores a field it does not know.
 *
 * Time: every command carries `atMs`, the proposer's clock when it proposed the command. The state
 * machine reads no clock; lease decisions compare lease ends with the command's `atMs`.
 */
import { ClusterCommandError } from "./errors.js";
import type { Fields } from "./fields.js";
import { address, id, kvpKey, kvpValue, labels, nodeCapacity, oneOf, optionalBoolean, optionalId, optionalSafeInteger, record, safeInteger, vmSpec } from "./fields.js";
import type { Capacity, MigrationKind, NodeState, VmActualState, VmDesiredState, VmSpec } from "./types.js";
import { MIGRATION_KINDS, NODE_STATES, VM_ACTUAL_STATES, VM_DESIRED_STATES } from "./types.js";

export const COMMAND_VERSION = 1;
export const COMMAND_BYTES_MAX = 64 * 1024;

/** A VM spec as written by a caller: the optional fields take their defaults (see `VmSpec`). */
export type VmSpecInput = Omit<VmSpec, "bootargs" | "antiAffinityGroup" | "affinityGroup" | "priority" | "restartPolicy" | "disks" | "integration" | "nics"> &
  Partial<Pick<VmSpec, "bootargs" | "antiAffinityGroup" | "affinityGroup" | "priority" | "restartPolicy" | "disks" | "integration" | "nics">>;

interface Stamped {
  /** The proposer's clock (ms) when it proposed the command; a safe integer ≥ 0. */
  readonly atMs: number;
}

/**
 * Adds a node, active, with a lease until `leaseUntilMs`. For a node already registered: updates its
 * addresses, labels and capacity (refused if the new capacity is below what is committed there) and
 * extends its lease; its state is kept.
 */
export interface RegisterNodeCommand extends Stamped {
  readonly type: "registerNode";
  readonly node: string;
  readonly apiAddress: string;
  readonly migrationAddress: string;
  readonly capacity: Capacity;
  readonly labels?: Readonly<Record<string, string>>;
  readonly leaseUntilMs: number;
}

/** Extends a node's lease to `untilMs` (a lease never shrinks); `untilMs ≤ atMs + leaseMsMax`. */
export interface RenewLeaseCommand extends Stamped {
  readonly type: "renewLease";
  readonly node: string;
  readonly untilMs: number;
}

/**
 * Moves a node through its lifecycle: active → draining | failed; draining → active | drained | failed;
 * drained → active | failed; failed → active (needs a live lease) | drained. "drained" needs a node
 * that owns no VM and takes part in no migration. Setting the current state again is a no-op.
 */
export interface SetNodeStateCommand extends Stamped {
  readonly type: "setNodeState";
  readonly node: string;
  readonly state: NodeState;
}

/** Forgets a node that owns no VM and takes part in no migration. */
export interface RemoveNodeCommand extends Stamped {
  readonly type: "removeNode";
  readonly node: string;
}

/**
 * Creates a VM and places it at apply time: on `node` when given (checked like a placement), else on
 * the node the placement policy picks. The owner and epoch 1 are committed before any node starts it.
 * No room: NO_CAPACITY with the placement's reason, nothing created.
 */
export interface CreateVmCommand extends Stamped {
  readonly type: "createVm";
  readonly vm: string;
  readonly spec: VmSpecInput;
  /** Default "running". */
  readonly desiredState?: VmDesiredState;
  /** Pin to this node; `null`/absent lets the placement policy choose. */
  readonly node?: string | null;
}

/**
 * Sets what the VM should do. "saved" needs `savedState` (the name to save into) and a VM that is
 * meant to run or be paused. "running" with `savedState` restores that saved state (the VM must not be
 * meant to run); "running" without it keeps the saved state of a saved VM (Start restores it) and
 * boots any other. "stopped" forgets the saved state to load.
 */
export interface SetDesiredStateCommand extends Stamped {
  readonly type: "setDesiredState";
  readonly vm: string;
  readonly desiredState: VmDesiredState;
  readonly savedState?: string | null;
}

/** The owner's report of what the VM is doing; STALE_EPOCH unless `node`/`epoch` are the current owner's. */
export interface ReportActualCommand extends Stamped {
  readonly type: "reportActual";
  readonly vm: string;
  readonly node: string;
  readonly epoch: number;
  readonly actual: VmActualState;
}

/**
 * Starts a migration: the VM's owner must be `from`, `to` must differ, be active with a live lease,
 * satisfy anti-affinity and have room; no other migration of the VM may be in flight. Reserves the
 * VM's memory and vCPUs on `to`. The result's `migrationId` identifies this attempt.
 */
export interface BeginMigrationCommand extends Stamped {
  readonly type: "beginMigration";
  readonly vm: string;
  readonly from: string;
  readonly to: string;
  readonly kind: MigrationKind;
}

/**
 * The commit point of a migration: succeeds only when the owner is `from` at exactly `epoch` and the
 * migration to `to` (of `migrationId`, when given) is in flight, and `to` is not failed and holds a live
 * lease. Then owner = `to`, epoch + 1, the reservation becomes the VM's allocation, the migration ends.
 * The destination resumes the VM only after this entry committed with an `ok` result.
 */
export interface TransferCommand extends Stamped {
  readonly type: "transfer";
  readonly vm: string;
  readonly from: string;
  readonly to: string;
  readonly epoch: number;
  /** The `migrationId` that `beginMigration` returned; recommended, so a late transfer of an aborted attempt cannot commit a later one. */
  readonly migrationId?: number | null;
}

/** Ends the migration in flight at `epoch` without moving the VM: the reservation is released, owner and epoch unchanged. */
export interface AbortMigrationCommand extends Stamped {
  readonly type: "abortMigration";
  readonly vm: string;
  readonly epoch: number;
  readonly migrationId?: number | null;
  /** An operator cancelled it (rather than it failing); recorded for those who watch. Default false. */
  readonly cancelled?: boolean;
}

/**
 * Restarts a VM elsewhere after its owner failed. Needs `epoch` = the VM's epoch and an owner whose
 * lease ran out (`leaseUntilMs ≤ atMs`), or no owner (a pending VM). Places the VM on `to` when given,
 * else by the placement policy; a migration in flight is cancelled. Epoch + 1. With no `to` and no
 * room, a VM that had an owner becomes pending (owner null, epoch + 1, `pendingReason`); a pending VM
 * stays as it was (NO_CAPACITY).
 */
export interface FailoverCommand extends Stamped {
  readonly type: "failover";
  readonly vm: string;
  readonly to?: string | null;
  readonly epoch: number;
}

/** Forgets a VM (its owner stops it when it sees it gone); refused while a migration is in flight. */
/** Sets (or with `value` null removes) a host KVP value of the VM, which its guest reads wherever it runs. */
export interface SetVmKvpCommand extends Stamped {
  readonly type: "setVmKvp";
  readonly vm: string;
  readonly key: string;
  readonly value: string | null;
}

export interface DeleteVmCommand extends Stamped {
  readonly type: "deleteVm";
  readonly vm: string;
}

export type ClusterCommand =
  | RegisterNodeCommand
  | RenewLeaseCommand
  | SetNodeStateCommand
  | RemoveNodeCommand
  | CreateVmCommand
  | SetDesiredStateCommand
  | ReportActualCommand
  | BeginMigrationCommand
  | TransferCommand
  | AbortMigrationCommand
  | FailoverCommand
  | SetVmKvpCommand
  | DeleteVmCommand;

export type CommandType = ClusterCommand["type"];

/** A command in normal form, as `decodeCommand` returns it: every optional field present. */
type Complete<C> = C extends { readonly spec: VmSpecInput }
  ? { readonly [K in keyof C]-?: K extends "spec" ? VmSpec : Exclude<C[K], undefined> }
  : { readonly [K in keyof C]-?: Exclude<C[K], undefined> };
export type DecodedCommand = Complete<ClusterCommand>;

export const COMMAND_TYPES: readonly CommandType[] = [
  "registerNode", "renewLease", "setNodeState", "removeNode", "createVm", "setDesiredState", "reportActual",
  "beginMigration", "transfer", "abortMigration", "failover", "deleteVm", "setVmKvp",
];

const BASE_FIELDS = ["v", "type", "atMs"];

const FIELDS: Record<CommandType, readonly string[]> = {
  registerNode: ["node", "apiAddress", "migrationAddress", "capacity", "labels", "leaseUntilMs"],
  renewLease: ["node", "untilMs"],
  setNodeState: ["node", "state"],
  removeNode: ["node"],
  createVm: ["vm", "spec", "desiredState", "node"],
  setDesiredState: ["vm", "desiredState", "savedState"],
  reportActual: ["vm", "node", "epoch", "actual"],
  beginMigration: ["vm", "from", "to", "kind"],
  transfer: ["vm", "from", "to", "epoch", "migrationId"],
  abortMigration: ["vm", "epoch", "migrationId", "cancelled"],
  failover: ["vm", "to", "epoch"],
  deleteVm: ["vm"],
  setVmKvp: ["vm", "key", "value"],
};

/** Validates one command object (decoded JSON or a caller's object) and returns its normal form. */
function parseCommand(value: unknown): DecodedCommand {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new ClusterCommandError("a command must be a JSON object");
  const raw = value as Fields;
  if (raw["v"] !== COMMAND_VERSION) {
    throw new ClusterCommandError(`unsupported command version ${JSON.stringify(raw["v"] ?? null)} (this member knows ${COMMAND_VERSION})`);
  }
  const type = raw["type"];
  if (typeof type !== "string" || !(COMMAND_TYPES as readonly string[]).includes(type)) {
    throw new ClusterCommandError(`unknown command type ${JSON.stringify(type ?? null)}`);
  }
  const t = type as CommandType;
  const f = record(raw, t, [...BASE_FIELDS, ...FIELDS[t]]);
  const atMs = safeInteger(f["atMs"], `${t}.atMs`, 0);
  switch (t) {
    case "registerNode":
      return {
        type: t, atMs,
        node: id(f["node"], `${t}.node`),
        apiAddress: address(f["apiAddress"], `${t}.apiAddress`),
        migrationAddress: address(f["migrationAddress"], `${t}.migrationAddress`),
        capacity: nodeCapacity(f["capacity"], `${t}.capacity`),
        labels: labels(f["labels"], `${t}.labels`),
        leaseUntilMs: safeInteger(f["leaseUntilMs"], `${t}.leaseUntilMs`, 0),
      };
    case "renewLease":
      return { type: t, atMs, node: id(f["node"], `${t}.node`), untilMs: safeInteger(f["untilMs"], `${t}.untilMs`, 0) };
    case "setNodeState":
      return { type: t, atMs, node: id(f["node"], `${t}.node`), state: oneOf(f["state"], NODE_STATES, `${t}.state`) };
    case "removeNode":
      return { type: t, atMs, node: id(f["node"], `${t}.node`) };
    case "createVm":
      return {
        type: t, atMs,
        vm: id(f["vm"], `${t}.vm`),
        spec: vmSpec(f["spec"], `${t}.spec`),
        desiredState: f["desiredState"] === undefined ? "running" : oneOf(f["desiredState"], VM_DESIRED_STATES, `${t}.desiredState`),
        node: optionalId(f["node"], `${t}.node`),
      };
    case "setDesiredState":
      return {
        type: t, atMs,
        vm: id(f["vm"], `${t}.vm`),
        desiredState: oneOf(f["desiredState"], VM_DESIRED_STATES, `${t}.desiredState`),
        savedState: optionalId(f["savedState"], `${t}.savedState`),
      };
    case "reportActual":
      return {
        type: t, atMs,
        vm: id(f["vm"], `${t}.vm`),
        node: id(f["node"], `${t}.node`),
        epoch: safeInteger(f["epoch"], `${t}.epoch`, 1),
        actual: oneOf(f["actual"], VM_ACTUAL_STATES, `${t}.actual`),
      };
    case "beginMigration":
      return {
        type: t, atMs,
        vm: id(f["vm"], `${t}.vm`),
        from: id(f["from"], `${t}.from`),
        to: id(f["to"], `${t}.to`),
        kind: oneOf(f["kind"], MIGRATION_KINDS, `${t}.kind`),
      };
    case "transfer":
      return {
        type: t, atMs,
        vm: id(f["vm"], `${t}.vm`),
        from: id(f["from"], `${t}.from`),
        to: id(f["to"], `${t}.to`),
        epoch: safeInteger(f["epoch"], `${t}.epoch`, 1),
        migrationId: optionalSafeInteger(f["migrationId"], `${t}.migrationId`, 1),
      };
    case "abortMigration":
      return {
        type: t, atMs,
        vm: id(f["vm"], `${t}.vm`),
        epoch: safeInteger(f["epoch"], `${t}.epoch`, 1),
        migrationId: optionalSafeInteger(f["migrationId"], `${t}.migrationId`, 1),
        cancelled: optionalBoolean(f["cancelled"], `${t}.cancelled`),
      };
    case "failover":
      return { type: t, atMs, vm: id(f["vm"], `${t}.vm`), to: optionalId(f["to"], `${t}.to`), epoch: safeInteger(f["epoch"], `${t}.epoch`, 1) };
    case "deleteVm":
      return { type: t, atMs, vm: id(f["vm"], `${t}.vm`) };
    case "setVmKvp":
      return {
        type: t, atMs,
        vm: id(f["vm"], `${t}.vm`),
        key: kvpKey(f["key"], `${t}.key`),
        value: f["value"] === null || f["value"] === undefined ? null : kvpValue(f["value"], `${t}.value`),
      };
  }
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Validates `command` and encodes it for a log entry. Throws `ClusterCommandError` naming the field
 * when the command is invalid (the same check `decodeCommand` makes) or longer than `COMMAND_BYTES_MAX`.
 */
export function encodeCommand(command: ClusterCommand): Uint8Array {
  const normal = parseCommand({ ...command, v: COMMAND_VERSION });
  // parseCommand builds every object with its keys in a fixed order: one command, one encoding.
  const bytes = utf8.encode(JSON.stringify({ v: COMMAND_VERSION, ...normal }));
  if (bytes.length > COMMAND_BYTES_MAX) throw new ClusterCommandError(`command is ${bytes.length} bytes, more than ${COMMAND_BYTES_MAX}`);
  return bytes;
}

/**
 * Decodes and validates a command. Throws `ClusterCommandError` saying what is wrong; the message
 * depends only on the bytes (never on the engine's parser messages), so every member writes the same.
 */
export function decodeCommand(bytes: Uint8Array): DecodedCommand {
  if (bytes.length === 0) throw new ClusterCommandError("empty command");
  if (bytes.length > COMMAND_BYTES_MAX) throw new ClusterCommandError(`command is ${bytes.length} bytes, more than ${COMMAND_BYTES_MAX}`);
  let textValue: string;
  try {
    textValue = strictUtf8.decode(bytes);
  } catch (cause) {
    throw new ClusterCommandError("command is not valid UTF-8", { cause });
  }
  let value: unknown;
  try {
    value = JSON.parse(textValue);
  } catch (cause) {
    throw new ClusterCommandError("command is not valid JSON", { cause });
  }
  return parseCommand(value);
}
