/**
 * Validation of every request of the management API, before a backend sees it.
 *
 * Each `validate*` function is pure and total: it accepts any value (requests come off the wire,
 * and a number where an enum name belongs is possible) and returns the list of violations, empty
 * when the request is valid. A violation names the request field at fault by its proto name
 * (`memory_bytes`), so the message means the same to every client language. `invalidArgument`
 * turns a non-empty list into the `ApiError` the server sends.
 *
 * What is checked here is what can be decided from the request alone; whether a named VM exists,
 * fits somewhere or is in the right state is the backend's answer (NOT_FOUND, RESOURCE_EXHAUSTED,
 * FAILED_PRECONDITION).
 */
import { ApiError } from "./errors.js";
import {
  BOOT_MODES, MIGRATION_KINDS, NO_CONVERGENCE_POLICIES, NODE_STATES, RESTART_POLICIES, VM_PRIORITIES, VM_STATES,
} from "./types.js";

export interface FieldViolation {
  /** The proto field name, e.g. "memory_bytes". */
  readonly field: string;
  /** What is wrong, e.g. "must be a multiple of 4096 (4 KiB), got 1000". */
  readonly description: string;
}

/** Names of VMs, nodes, members, saved states and groups. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;
const NAME_RULE = "must match ^[a-z0-9][a-z0-9-]{0,62}$ (lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters)";
/** One guest page; guest memory comes in whole pages. */
export const GUEST_PAGE_BYTES = 4096;
export const VM_MEMORY_BYTES_MAX = 2 * 1024 * 1024 * 1024;
export const VM_VCPUS_MIN = 1;
export const VM_VCPUS_MAX = 8;
export const IMAGE_LENGTH_MAX = 1024;
export const BOOTARGS_LENGTH_MAX = 1024;
export const STOP_TIMEOUT_MS_MAX = 3_600_000;
/** Virtual disks of one VM, at most. */
export const VM_DISKS_MAX = 8;
/** A virtual disk's size: a positive multiple of this, at most DISK_BYTES_MAX (64 GiB). */
export const DISK_SECTOR_BYTES = 512;
export const DISK_BYTES_MAX = 64 * 1024 * 1024 * 1024;
/** Synthetic NICs of one VM, at most. */
export const VM_NICS_MAX = 8;
/** A NIC's MAC: "02:48:" and four more lowercase hex bytes. */
export const NIC_MAC_PATTERN = /^02:48(?::[0-9a-f]{2}){4}$/;
export const DOWNTIME_LIMIT_MS_MAX = 60_000;
export const MAX_ROUNDS_MAX = 10_000;
/** 1 TB/s: far above any link; a larger number is a mistake. */
export const BANDWIDTH_LIMIT_BYTES_PER_SECOND_MAX = 1e12;
/** Migration ids are the backend's (a log index, a UUID): printable ASCII without spaces. */
export const MIGRATION_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
export const CONSOLE_INPUT_BYTES_MAX = 64 * 1024;
const ADDRESS_LENGTH_MAX = 261;

/** The value as it appears in a message: JSON, cut to 64 characters. */
function show(value: unknown): string {
  let text: string;
  if (typeof value === "number" && !Number.isFinite(value)) text = String(value);
  else if (typeof value === "bigint") text = `${value}n`;
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = String(value);
    }
  }
  return text.length > 64 ? `${text.slice(0, 61)}...` : text;
}

/** Collects violations for one request. */
class Checker {
  readonly violations: FieldViolation[] = [];

  fail(field: string, description: string): void {
    this.violations.push({ field, description });
  }

  /** A name; `required` false accepts "" (meaning "none" or "any"). */
  name(field: string, value: unknown, required: boolean): void {
    if (typeof value !== "string") return this.fail(field, `must be a string, got ${show(value)}`);
    if (value === "") {
      if (required) this.fail(field, "is required");
      return;
    }
    if (!NAME_PATTERN.test(value)) this.fail(field, `${NAME_RULE}, got ${show(value)}`);
  }

  /** Free text without control characters, at most `lengthMax` characters. */
  text(field: string, value: unknown, required: boolean, lengthMax: number): void {
    if (typeof value !== "string") return this.fail(field, `must be a string, got ${show(value)}`);
    if (value === "") {
      if (required) this.fail(field, "is required");
      return;
    }
    if (value.length > lengthMax) return this.fail(field, `must be at most ${lengthMax} characters, got ${value.length}`);
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(value)) this.fail(field, `must not contain control characters, got ${show(value)}`);
  }

  /** An integer in `min..max`. */
  integer(field: string, value: unknown, min: number, max: number): void {
    if (typeof value !== "number" || !Number.isSafeInteger(value)) return this.fail(field, `must be an integer, got ${show(value)}`);
    if (value < min) {
      this.fail(field, min === 0 ? `must not be negative, got ${value}` : `must be at least ${min}, got ${value}`);
    } else if (value > max) {
      this.fail(field, `must be at most ${max}, got ${value}`);
    }
  }

  /** One of the enum's value names (`*_UNSPECIFIED` included: it means the default or "any"). */
  enumValue(field: string, value: unknown, names: readonly string[]): void {
    if (typeof value === "string" && names.includes(value)) return;
    this.fail(field, `unknown value ${show(value)} (expected one of ${names.join(", ")})`);
  }

  bool(field: string, value: unknown): void {
    if (typeof value !== "boolean") this.fail(field, `must be a boolean, got ${show(value)}`);
  }

  /** "host:port" with a port in 1..65535 ("[v6]:port" for IPv6); `required` false accepts "". */
  address(field: string, value: unknown, required: boolean): void {
    if (typeof value !== "string") return this.fail(field, `must be a string, got ${show(value)}`);
    if (value === "") {
      if (required) this.fail(field, "is required");
      return;
    }
    const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
    const port = match === null ? 0 : Number(match[2]);
    if (value.length > ADDRESS_LENGTH_MAX || match === null || port < 1 || port > 65535) {
      this.fail(field, `must be "host:port" with a port in 1..65535, got ${show(value)}`);
    }
  }

  migrationId(field: string, value: unknown): void {
    if (typeof value !== "string") return this.fail(field, `must be a string, got ${show(value)}`);
    if (value === "") return this.fail(field, "is required");
    if (!MIGRATION_ID_PATTERN.test(value)) {
      this.fail(field, `must be 1 to 128 characters among letters, digits and . _ : -, got ${show(value)}`);
    }
  }

  bytes(field: string, value: unknown, lengthMax: number): void {
    if (!(value instanceof Uint8Array)) return this.fail(field, "must be bytes");
    if (value.length > lengthMax) this.fail(field, `must be at most ${lengthMax} bytes, got ${value.length}`);
  }
}

/** A request object; anything else is reported as a violation of the whole request. */
function fieldsOf(request: unknown): Record<string, unknown> | null {
  return typeof request === "object" && request !== null && !Array.isArray(request) ? (request as Record<string, unknown>) : null;
}

function check(request: unknown, body: (r: Record<string, unknown>, c: Checker) => void): FieldViolation[] {
  const r = fieldsOf(request);
  if (r === null) return [{ field: "request", description: "must be a message" }];
  const c = new Checker();
  body(r, c);
  return c.violations;
}

/**
 * The ApiError for a failed validation: INVALID_ARGUMENT, the message "<field>: <what>" for each
 * violation joined with "; ", and the fields in `ApiError.fields`.
 */
export function invalidArgument(violations: readonly FieldViolation[]): ApiError {
  const fields = [...new Set(violations.map((v) => v.field))];
  return new ApiError("INVALID_ARGUMENT", violations.map((v) => `${v.field}: ${v.description}`).join("; "), { fields });
}

/** Throws `invalidArgument(violations)` when there are any. */
export function assertValid(violations: readonly FieldViolation[]): void {
  if (violations.length > 0) throw invalidArgument(violations);
}

// ---------------------------------------------------------------------------------------------
// Vms

export function validateCreateVmRequest(request: unknown): FieldViolation[] {
  return check(request, (r, c) => {
    c.name("name", r.name, true);
    const memory = r.memoryBytes;
    if (typeof memory !== "number" || !Number.isSafeInteger(memory)) {
      c.fail("memory_bytes", `must be an integer, got ${show(memory)}`);
    } else if (memory <= 0) {
      c.fail("memory_bytes", `must be positive, got ${memory}`);
    } else if (memory % GUEST_PAGE_BYTES !== 0) {
      c.fail("memory_bytes", `must be a multiple of ${GUEST_PAGE_BYTES} (4 KiB guest pages), got ${memory}`);
    } else if (memory > VM_MEMORY_BYTES_MAX) {
      c.fail("memory_bytes", `must be at most ${VM_MEMORY_BYTES_MAX} (2 GiB), got ${memory}`);
    }
    c.integer("vcpus", r.vcpus, VM_VCPUS_MIN, VM_VCPUS_MAX);
    c.text("image", r.image, true, IMAGE_LENGTH_MAX);
    c.enumValue("boot_mode", r.bootMode, BOOT_MODES);
    c.text("bootargs", r.bootargs, false, BOOTARGS_LENGTH_MAX);
    c.name("anti_affinity_group", r.antiAffinityGroup, false);
    c.enumValue("priority", r.priority, VM_PRIORITIES);
    c.enumValue("restart_policy", r.restartPolicy, RESTART_POLICIES);
    c.bool("start", r.start);
    const disks = r.diskBytes;
    if (disks !== undefined && disks !== null) {
      if (!Array.isArray(disks)) c.fail("disk_bytes", `must be a list of sizes, got ${show(disks)}`);
      else {
        if (disks.length > VM_DISKS_MAX) c.fail("disk_bytes", `at most ${VM_DISKS_MAX} disks, got ${disks.length}`);
        disks.forEach((size: unknown, i: number) => {
          if (typeof size !== "number" || !Number.isSafeInteger(size)) c.fail(`disk_bytes[${i}]`, `must be an integer, got ${show(size)}`);
          else if (size <= 0) c.fail(`disk_bytes[${i}]`, `must be positive, got ${size}`);
          else if (size % DISK_SECTOR_BYTES !== 0) c.fail(`disk_bytes[${i}]`, `must be a multiple of ${DISK_SECTOR_BYTES} (disk sectors), got ${size}`);
          else if (size > DISK_BYTES_MAX) c.fail(`disk_bytes[${i}]`, `must be at most ${DISK_BYTES_MAX} (64 GiB), got ${size}`);
        });
      }
    }
    if (r.noIntegration !== undefined) c.bool("no_integration", r.noIntegration);
    const nics = r.nics;
    if (nics !== undefined && nics !== null && (typeof nics !== "number" || !Number.isInteger(nics) || nics < 0 || nics > VM_NICS_MAX)) {
      c.fail("nics", `must be an integer from 0 to ${VM_NICS_MAX}, got ${show(nics)}`);
    }
    const macs = r.nicMacs;
    if (macs !== undefined && macs !== null) {
      if (!Array.isArray(macs)) c.fail("nic_macs", `must be a list of MACs, got ${show(macs)}`);
      else {
        if (macs.length > VM_NICS_MAX) c.fail("nic_macs", `at most ${VM_NICS_MAX} NICs, got ${macs.length}`);
        if (macs.length > 0 && typeof nics === "number" && nics > 0) c.fail("nic_macs", `give either nics (${nics}) or nic_macs, not both`);
        macs.forEach((mac: unknown, i: number) => {
          if (typeof mac !== "string" || !NIC_MAC_PATTERN.test(mac)) c.fail(`nic_macs[${i}]`, `must be "02:48:" and four more lowercase hex bytes, got ${show(mac)}`);
          else if (macs.indexOf(mac) < i) c.fail(`nic_macs[${i}]`, `repeats ${mac}`);
        });
      }
    }
  });
}

/** Start, Pause, Resume, Get: a request that only names a VM. */
export function validateVmNameRequest(request: unknown): FieldViolation[] {
  return check(request, (r, c) => c.name("name", r.name, true));
}

export function validateStopVmRequest(request: unknown): FieldViolation[] {
  return check(request, (r, c) => {
    c.name("name", r.name, true);
    c.bool("force", r.force);
    c.integer("timeout_ms", r.timeoutMs, 0, STOP_TIMEOUT_MS_MAX);
    if (r.force === true && typeof r.timeoutMs === "number" && r.timeoutMs > 0) {
      c.fail("timeout_ms", `must be 0 when force is set (a forced stop does not wait), got ${r.timeoutMs}`);
    }
  });
}

/** A KVP key: 1 to 63 UTF-8 bytes, no control characters or '='; a value: at most 255 bytes, no control characters. */
export const KVP_KEY_BYTES_MAX = 63;
export const KVP_VALUE_BYTES_MAX = 255;

export function validateSetVmKvpRequest(request: unknown): FieldViolation[] {
  return check(request, (r, c) => {
    c.name("name", r.name, true);
    const bytes = (s: string): number => new TextEncoder().encode(s).length;
    // eslint-disable-next-line no-control-regex
    const control = /[\u0000-\u001f\u007f]/;
    const key = r.key;
    if (typeof key !== "string" || key === "" || bytes(key) > KVP_KEY_BYTES_MAX || control.test(key) || key.includes("=")) {
      c.fail("key", `must be 1 to ${KVP_KEY_BYTES_MAX} bytes of UTF-8 without control characters or '=', got ${show(key)}`);
    }
    if (r.delete !== undefined) c.bool("delete", r.delete);
    const value = r.value;
    if (value !== undefined && value !== null && (typeof value !== "string" || bytes(value) > KVP_VALUE_BYTES_MAX || control.test(value))) {
      c.fail("value", `must be at most ${KVP_VALUE_BYTES_MAX} bytes of UTF-8 without control characters, got ${show(value)}`);
    }
  });
}

/** Save and Restore. */
export function validateSavedStateRequest(request: unknown): FieldViolation[] {
  return check(request, (r, c) => {
    c.name("name", r.name, true);
    c.name("saved_state", r.savedState, true);
  });
}

export function validateDeleteVmRequest(request: unknown): FieldViolation[] {
  return check(request, (r, c) => {
    c.name("name", r.name, true);
    c.bool("force", r.force);
  });
}

export function validateListVmsRequest(request: unknown): FieldViolation[] {
  return check(request, (r, c) => {
    c.name("node", r.node, false);
    c.enumValue("state", r.state, VM_STATES);
  });
}

export function validateWatchEventsRequest(request: unknown): FieldViolation[] {
  return check(request, (r, c) => c.name("vm", r.vm, false));
}

/** The first ConsoleInput of a Console call: it must name the VM. */
export function validateConsoleOpen(input: unknown): FieldViolation[] {
  return check(input, (r, c) => {
    c.name("vm", r.vm, true);
    c.bytes("data", r.data, CONSOLE_INPUT_BYTES_MAX);
  });
}

/** A later ConsoleInput of a call attached to `vm`: `vm` empty or the same. */
export function validateConsoleInput(input: unknown, vm: string): FieldViolation[] {
  return check(input, (r, c) => {
    if (r.vm !== "" && r.vm !== vm) c.fail("vm", `must be empty or ${show(vm)} (the VM this console is attached to), got ${show(r.vm)}`);
    c.bytes("data", r.data, CONSOLE_INPUT_BYTES_MAX);
  });
}

// ---------------------------------------------------------------------------------------------
// Migrations

export function validateMigrateRequest(request: unknown): FieldViolation[] {
  return check(request, (r, c) => {
    c.name("vm", r.vm, true);
    c.name("target_node", r.targetNode, false);
    c.enumValue("kind", r.kind, MIGRATION_KINDS);
    c.integer("downtime_limit_ms", r.downtimeLimitMs, 0, DOWNTIME_LIMIT_MS_MAX);
    c.integer("bandwidth_limit_bytes_per_second", r.bandwidthLimitBytesPerSecond, 0, BANDWIDTH_LIMIT_BYTES_PER_SECOND_MAX);
    c.integer("max_rounds", r.maxRounds, 0, MAX_ROUNDS_MAX);
    c.enumValue("policy", r.policy, NO_CONVERGENCE_POLICIES);
    if (r.kind === "MIGRATION_KIND_QUICK") {
      const liveOnly = "applies to live migrations only (kind is MIGRATION_KIND_QUICK): leave it unset";
      if (typeof r.downtimeLimitMs === "number" && r.downtimeLimitMs > 0) c.fail("downtime_limit_ms", liveOnly);
      if (typeof r.maxRounds === "number" && r.maxRounds > 0) c.fail("max_rounds", liveOnly);
      if (typeof r.policy === "string" && r.policy !== "NO_CONVERGENCE_POLICY_UNSPECIFIED") c.fail("policy", liveOnly);
    }
  });
}

/** Cancel, Watch, Get: a request that only names a migration. */
export function validateMigrationIdRequest(request: unknown): FieldViolation[] {
  return check(request, (r, c) => c.migrationId("migration_id", r.migrationId));
}

export function validateListMigrationsRequest(request: unknown): FieldViolation[] {
  return check(request, (r, c) => {
    c.name("vm", r.vm, false);
    c.bool("active_only", r.activeOnly);
  });
}

// ---------------------------------------------------------------------------------------------
// Nodes

export function validateListNodesRequest(request: unknown): FieldViolation[] {
  return check(request, (r, c) => c.enumValue("state", r.state, NODE_STATES));
}

/** Drain and Resume. */
export function validateNodeRequest(request: unknown): FieldViolation[] {
  return check(request, (r, c) => c.name("node", r.node, true));
}

// ---------------------------------------------------------------------------------------------
// Cluster

/** Status, Members: nothing to check but the shape. */
export function validateEmptyRequest(request: unknown): FieldViolation[] {
  return check(request, () => undefined);
}

export function validateAddMemberRequest(request: unknown): FieldViolation[] {
  return check(request, (r, c) => {
    c.name("id", r.id, true);
    c.address("raft_address", r.raftAddress, true);
    c.address("api_address", r.apiAddress, false);
  });
}

/** PromoteMember, RemoveMember. */
export function validateMemberIdRequest(request: unknown): FieldViolation[] {
  return check(request, (r, c) => c.name("id", r.id, true));
}
