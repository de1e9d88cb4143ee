import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { CreateVmRequest, MigrateRequest } from "../src/types.js";
import {
  GUEST_PAGE_BYTES, invalidArgument, NAME_PATTERN, validateAddMemberRequest, validateConsoleInput, validateConsoleOpen, validateCreateVmRequest,
  validateDeleteVmRequest, validateEmptyRequest, validateListMigrationsRequest, validateListNodesRequest, validateListVmsRequest,
  validateMemberIdRequest, validateMigrateRequest, validateMigrationIdRequest, validateNodeRequest, validateSavedStateRequest, validateSetVmKvpRequest,
  validateStopVmRequest, validateVmNameRequest, validateWatchEventsRequest, VM_MEMORY_BYTES_MAX,
} from "../src/validate.js";
import { GiB, MiB } from "./units.js";

const create: CreateVmRequest = {
  name: "web-1",
  memoryBytes: 64 * MiB,
  vcpus: 2,
  image: "guests/echo.elf",
  bootMode: "BOOT_MODE_UNSPECIFIED",
  bootargs: "",
  antiAffinityGroup: "",
  priority: "VM_PRIORITY_UNSPECIFIED",
  restartPolicy: "RESTART_POLICY_UNSPECIFIED",
  start: false,
  diskBytes: [],
  noIntegration: false,
  nics: 0,
  nicMacs: [],
};

const migrate: MigrateRequest = {
  vm: "web-1",
  targetNode: "",
  kind: "MIGRATION_KIND_UNSPECIFIED",
  downtimeLimitMs: 0,
  bandwidthLimitBytesPerSecond: 0,
  maxRounds: 0,
  policy: "NO_CONVERGENCE_POLICY_UNSPECIFIED",
};

const fields = (violations: { field: string }[]): string[] => violations.map((v) => v.field);

describe("validate", () => {
  it("validate - accepts well-formed requests of every kind (defaults included)", () => {
    expect(validateCreateVmRequest(create)).toEqual([]);
    expect(validateCreateVmRequest({
      ...create, bootMode: "BOOT_MODE_SBI", bootargs: "console=hvc0 root=/dev/vda", antiAffinityGroup: "db", priority: "VM_PRIORITY_HIGH",
      restartPolicy: "RESTART_POLICY_DO_NOT_RESTART", start: true, memoryBytes: VM_MEMORY_BYTES_MAX, vcpus: 8,
    })).toEqual([]);
    expect(validateVmNameRequest({ name: "a" })).toEqual([]);
    expect(validateStopVmRequest({ name: "a", force: false, timeoutMs: 30_000 })).toEqual([]);
    expect(validateStopVmRequest({ name: "a", force: true, timeoutMs: 0 })).toEqual([]);
    expect(validateSavedStateRequest({ name: "a", savedState: "nightly-2" })).toEqual([]);
    expect(validateDeleteVmRequest({ name: "a", force: true })).toEqual([]);
    expect(validateListVmsRequest({ node: "", state: "VM_STATE_UNSPECIFIED" })).toEqual([]);
    expect(validateListVmsRequest({ node: "n1", state: "VM_STATE_SAVED" })).toEqual([]);
    expect(validateWatchEventsRequest({ vm: "" })).toEqual([]);
    expect(validateConsoleOpen({ vm: "web", data: new Uint8Array(3) })).toEqual([]);
    expect(validateConsoleInput({ vm: "", data: new Uint8Array(3) }, "web")).toEqual([]);
    expect(validateConsoleInput({ vm: "web", data: new Uint8Array(0) }, "web")).toEqual([]);
    expect(validateMigrateRequest(migrate)).toEqual([]);
    expect(validateMigrateRequest({
      ...migrate, targetNode: "n2", kind: "MIGRATION_KIND_LIVE", downtimeLimitMs: 300, bandwidthLimitBytesPerSecond: 125_000_000, maxRounds: 30,
      policy: "NO_CONVERGENCE_POLICY_CANCEL",
    })).toEqual([]);
    expect(validateMigrateRequest({ ...migrate, kind: "MIGRATION_KIND_QUICK", bandwidthLimitBytesPerSecond: 1000 })).toEqual([]);
    expect(validateMigrationIdRequest({ migrationId: "1842" })).toEqual([]);
    expect(validateMigrationIdRequest({ migrationId: "0b6c2a4e-1d3f-4c5e-9a8b-7f6e5d4c3b2a" })).toEqual([]);
    expect(validateListMigrationsRequest({ vm: "", activeOnly: true })).toEqual([]);
    expect(validateListNodesRequest({ state: "NODE_STATE_DRAINING" })).toEqual([]);
    expect(validateNodeRequest({ node: "n3" })).toEqual([]);
    expect(validateEmptyRequest({})).toEqual([]);
    expect(validateAddMemberRequest({ id: "n4", raftAddress: "10.0.0.4:7100", apiAddress: "" })).toEqual([]);
    expect(validateAddMemberRequest({ id: "n4", raftAddress: "[::1]:7100", apiAddress: "node-4.local:7000" })).toEqual([]);
    expect(validateMemberIdRequest({ id: "n4" })).toEqual([]);
  });

  it("validate - names: accepted exactly when they match the pattern", () => {
    fc.assert(fc.property(fc.string({ maxLength: 80 }), (name) => {
      const violations = validateVmNameRequest({ name });
      expect(violations.length === 0).toBe(NAME_PATTERN.test(name));
      if (violations.length > 0) {
        expect(fields(violations)).toEqual(["name"]);
        expect(violations[0]!.description).toMatch(name === "" ? /is required/ : /must match/);
      }
    }), { numRuns: 500 });
    const valid = fc.tuple(
      fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789"),
      fc.array(fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789-"), { maxLength: 62 }),
    ).map(([head, tail]) => head + tail.join(""));
    fc.assert(fc.property(valid, (name) => {
      expect(validateVmNameRequest({ name })).toEqual([]);
    }), { numRuns: 300 });
    for (const bad of ["Web", "web_1", "-web", "web.1", "wéb", "a".repeat(64), " web", "web\n"]) {
      expect(fields(validateVmNameRequest({ name: bad }))).toEqual(["name"]);
    }
    expect(validateVmNameRequest({ name: "a".repeat(63) })).toEqual([]);
  });

  it("validate - disk_bytes: each a positive multiple of 512, at most 64 GiB, at most 8 disks", () => {
    expect(validateCreateVmRequest({ ...create, diskBytes: [512, 64 * MiB, 64 * GiB] })).toEqual([]);
    expect(validateCreateVmRequest({ ...create, diskBytes: [MiB, 1000] })).toEqual([{ field: "disk_bytes[1]", description: "must be a multiple of 512 (disk sectors), got 1000" }]);
    expect(fields(validateCreateVmRequest({ ...create, diskBytes: [0] }))).toEqual(["disk_bytes[0]"]);
    expect(fields(validateCreateVmRequest({ ...create, diskBytes: [-512] }))).toEqual(["disk_bytes[0]"]);
    expect(fields(validateCreateVmRequest({ ...create, diskBytes: [64 * GiB + 512] }))).toEqual(["disk_bytes[0]"]);
    expect(fields(validateCreateVmRequest({ ...create, diskBytes: Array.from({ length: 9 }, () => MiB) }))).toEqual(["disk_bytes"]);
    expect(fields(validateCreateVmRequest({ ...create, noIntegration: "yes" }))).toEqual(["no_integration"]);
  });

  it("validate - nics and nic_macs: up to 8, MACs 02:48 and four lowercase bytes, no repeats, not both", () => {
    expect(validateCreateVmRequest({ ...create, nics: 2 })).toEqual([]);
    expect(validateCreateVmRequest({ ...create, nicMacs: ["02:48:00:00:00:01", "02:48:ff:00:00:02"] })).toEqual([]);
    expect(fields(validateCreateVmRequest({ ...create, nics: 9 }))).toEqual(["nics"]);
    expect(fields(validateCreateVmRequest({ ...create, nics: -1 }))).toEqual(["nics"]);
    expect(validateCreateVmRequest({ ...create, nicMacs: ["02:48:00:00:00:01", "52:54:00:00:00:01"] }))
      .toEqual([{ field: "nic_macs[1]", description: `must be "02:48:" and four more lowercase hex bytes, got "52:54:00:00:00:01"` }]);
    expect(fields(validateCreateVmRequest({ ...create, nicMacs: ["02:48:00:00:00:01", "02:48:00:00:00:01"] }))).toEqual(["nic_macs[1]"]);
    expect(fields(validateCreateVmRequest({ ...create, nicMacs: ["02:48:00:00:00:0A"] }))).toEqual(["nic_macs[0]"]);
    expect(fields(validateCreateVmRequest({ ...create, nics: 1, nicMacs: ["02:48:00:00:00:01"] }))).toEqual(["nic_macs"]);
    expect(fields(validateCreateVmRequest({ ...create, nicMacs: Array.from({ length: 9 }, (_, i) => `02:48:00:00:00:1${i}`) }))).toEqual(["nic_macs"]);
  });

  it("validate - SetKvp: a key of 1 to 63 bytes without '=' or control characters, a value of at most 255 bytes", () => {
    expect(validateSetVmKvpRequest({ name: "web", key: "app.port", value: "8080", delete: false })).toEqual([]);
    expect(validateSetVmKvpRequest({ name: "web", key: "app.port", delete: true })).toEqual([]);
    expect(fields(validateSetVmKvpRequest({ name: "web", key: "", value: "v" }))).toEqual(["key"]);
    expect(fields(validateSetVmKvpRequest({ name: "web", key: "a=b", value: "v" }))).toEqual(["key"]);
    expect(fields(validateSetVmKvpRequest({ name: "web", key: "k".repeat(64), value: "v" }))).toEqual(["key"]);
    expect(fields(validateSetVmKvpRequest({ name: "web", key: "k", value: "v".repeat(256) }))).toEqual(["value"]);
    expect(validateSetVmKvpRequest({ name: "web", key: "k", value: "a\nb" })).toEqual([{ field: "value", description: 'must be at most 255 bytes of UTF-8 without control characters, got "a\\nb"' }]);
    expect(fields(validateSetVmKvpRequest({ name: "Web", key: "k", value: "v" }))).toEqual(["name"]);
  });

  it("validate - memory_bytes: a positive multiple of 4 KiB, at most 2 GiB", () => {
    const memoryOk = (m: number): boolean => m > 0 && m % GUEST_PAGE_BYTES === 0 && m <= 2 * GiB;
    fc.assert(fc.property(
      fc.oneof(fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), fc.integer({ min: -600_000, max: 600_000 }).map((p) => p * 4096), fc.constantFrom(0, 2 * GiB, 2 * GiB + 4096)),
      (memoryBytes) => {
        const violations = fields(validateCreateVmRequest({ ...create, memoryBytes }));
        expect(violations.includes("memory_bytes")).toBe(!memoryOk(memoryBytes));
        expect(violations.filter((f) => f !== "memory_bytes")).toEqual([]);
      },
    ), { numRuns: 500 });
    const describe = (memoryBytes: unknown): string => validateCreateVmRequest({ ...create, memoryBytes })[0]!.description;
    expect(describe(0)).toBe("must be positive, got 0");
    expect(describe(-4096)).toBe("must be positive, got -4096");
    expect(describe(1000)).toBe("must be a multiple of 4096 (4 KiB guest pages), got 1000");
    expect(describe(2 * GiB + 4096)).toBe(`must be at most ${2 * GiB} (2 GiB), got ${2 * GiB + 4096}`);
    expect(describe(2 ** 60)).toMatch(/must be an integer/);
    expect(describe(4096.5)).toMatch(/must be an integer/);
    expect(describe("4096")).toMatch(/must be an integer/);
  });

  it("validate - vcpus: 1..8", () => {
    fc.assert(fc.property(fc.integer({ min: -20, max: 2 ** 32 }), (vcpus) => {
      const violations = fields(validateCreateVmRequest({ ...create, vcpus }));
      expect(violations.includes("vcpus")).toBe(vcpus < 1 || vcpus > 8);
    }), { numRuns: 300 });
    expect(validateCreateVmRequest({ ...create, vcpus: 0 })[0]!.description).toBe("must be at least 1, got 0");
    expect(validateCreateVmRequest({ ...create, vcpus: 9 })[0]!.description).toBe("must be at most 8, got 9");
  });

  it("validate - limits: a negative number is refused, naming the field", () => {
    const limits = ["downtimeLimitMs", "bandwidthLimitBytesPerSecond", "maxRounds"] as const;
    const proto = { downtimeLimitMs: "downtime_limit_ms", bandwidthLimitBytesPerSecond: "bandwidth_limit_bytes_per_second", maxRounds: "max_rounds" };
    fc.assert(fc.property(fc.constantFrom(...limits), fc.integer({ min: -(2 ** 52), max: -1 }), (field, value) => {
      const violations = validateMigrateRequest({ ...migrate, [field]: value });
      expect(violations).toEqual([{ field: proto[field], description: `must not be negative, got ${value}` }]);
    }), { numRuns: 200 });
    expect(fields(validateStopVmRequest({ name: "a", force: false, timeoutMs: -1 }))).toEqual(["timeout_ms"]);
    expect(fields(validateStopVmRequest({ name: "a", force: false, timeoutMs: 3_600_001 }))).toEqual(["timeout_ms"]);
    expect(fields(validateMigrateRequest({ ...migrate, downtimeLimitMs: 60_001 }))).toEqual(["downtime_limit_ms"]);
    expect(fields(validateMigrateRequest({ ...migrate, maxRounds: 10_001 }))).toEqual(["max_rounds"]);
    expect(fields(validateMigrateRequest({ ...migrate, bandwidthLimitBytesPerSecond: 2e12 }))).toEqual(["bandwidth_limit_bytes_per_second"]);
  });

  it("validate - enums: only the names the protos define (a number the server does not know is refused)", () => {
    expect(validateCreateVmRequest({ ...create, bootMode: 7 })).toEqual([
      { field: "boot_mode", description: "unknown value 7 (expected one of BOOT_MODE_UNSPECIFIED, BOOT_MODE_BARE, BOOT_MODE_SBI)" },
    ]);
    expect(fields(validateCreateVmRequest({ ...create, priority: "VM_PRIORITY_URGENT" }))).toEqual(["priority"]);
    expect(fields(validateCreateVmRequest({ ...create, restartPolicy: 3 }))).toEqual(["restart_policy"]);
    expect(fields(validateListVmsRequest({ node: "", state: 99 }))).toEqual(["state"]);
    expect(fields(validateListNodesRequest({ state: "ACTIVE" }))).toEqual(["state"]);
    expect(fields(validateMigrateRequest({ ...migrate, kind: 3, policy: 4 }))).toEqual(["kind", "policy"]);
  });

  it("validate - text fields: required, bounded, without control characters", () => {
    expect(validateCreateVmRequest({ ...create, image: "" })).toEqual([{ field: "image", description: "is required" }]);
    expect(fields(validateCreateVmRequest({ ...create, image: "a".repeat(1025) }))).toEqual(["image"]);
    expect(fields(validateCreateVmRequest({ ...create, image: "echo\u0000.elf" }))).toEqual(["image"]);
    expect(fields(validateCreateVmRequest({ ...create, bootargs: "x".repeat(1025) }))).toEqual(["bootargs"]);
    expect(fields(validateCreateVmRequest({ ...create, bootargs: "a\nb" }))).toEqual(["bootargs"]);
    expect(fields(validateCreateVmRequest({ ...create, antiAffinityGroup: "DB" }))).toEqual(["anti_affinity_group"]);
  });

  it("validate - cross-field rules: force with a timeout, live-only options on a quick migration", () => {
    expect(validateStopVmRequest({ name: "a", force: true, timeoutMs: 1000 })).toEqual([
      { field: "timeout_ms", description: "must be 0 when force is set (a forced stop does not wait), got 1000" },
    ]);
    const quick = { ...migrate, kind: "MIGRATION_KIND_QUICK" };
    expect(fields(validateMigrateRequest({ ...quick, downtimeLimitMs: 300 }))).toEqual(["downtime_limit_ms"]);
    expect(fields(validateMigrateRequest({ ...quick, maxRounds: 5 }))).toEqual(["max_rounds"]);
    expect(fields(validateMigrateRequest({ ...quick, policy: "NO_CONVERGENCE_POLICY_FORCE" }))).toEqual(["policy"]);
  });

  it("validate - ids and addresses", () => {
    expect(validateMigrationIdRequest({ migrationId: "" })).toEqual([{ field: "migration_id", description: "is required" }]);
    expect(fields(validateMigrationIdRequest({ migrationId: "m 1" }))).toEqual(["migration_id"]);
    expect(fields(validateMigrationIdRequest({ migrationId: "m".repeat(129) }))).toEqual(["migration_id"]);
    expect(validateAddMemberRequest({ id: "n4", raftAddress: "", apiAddress: "" })).toEqual([{ field: "raft_address", description: "is required" }]);
    for (const bad of ["localhost", "host:0", "host:65536", "host:port", ":7000", "a b:7000", "[zz]:1"]) {
      expect(fields(validateAddMemberRequest({ id: "n4", raftAddress: bad, apiAddress: "" }))).toEqual(["raft_address"]);
    }
    expect(fields(validateAddMemberRequest({ id: "n4", raftAddress: "h:1", apiAddress: "h" }))).toEqual(["api_address"]);
    expect(fields(validateConsoleOpen({ vm: "", data: new Uint8Array(0) }))).toEqual(["vm"]);
    expect(fields(validateConsoleOpen({ vm: "web", data: new Uint8Array(64 * 1024 + 1) }))).toEqual(["data"]);
    expect(fields(validateConsoleInput({ vm: "db", data: new Uint8Array(0) }, "web"))).toEqual(["vm"]);
  });

  it("validate - reports every violation, and refuses what is not a message", () => {
    const violations = validateCreateVmRequest({ ...create, name: "", memoryBytes: 1, vcpus: 0, image: "" });
    expect(fields(violations)).toEqual(["name", "memory_bytes", "vcpus", "image"]);
    const error = invalidArgument(violations);
    expect(error.code).toBe("INVALID_ARGUMENT");
    expect(error.fields).toEqual(["name", "memory_bytes", "vcpus", "image"]);
    expect(error.message).toBe(
      "name: is required; memory_bytes: must be a multiple of 4096 (4 KiB guest pages), got 1; vcpus: must be at least 1, got 0; image: is required",
    );
    for (const bad of [null, undefined, 42, "x", [1]]) expect(fields(validateCreateVmRequest(bad))).toEqual(["request"]);
  });

  it("validate - never throws, whatever the input, and echoes at most 64 characters of a value", () => {
    const validators = [
      validateCreateVmRequest, validateVmNameRequest, validateStopVmRequest, validateSavedStateRequest, validateDeleteVmRequest,
      validateListVmsRequest, validateWatchEventsRequest, validateConsoleOpen, validateMigrateRequest, validateMigrationIdRequest,
      validateListMigrationsRequest, validateListNodesRequest, validateNodeRequest, validateAddMemberRequest, validateMemberIdRequest,
    ];
    fc.assert(fc.property(fc.constantFrom(...validators), fc.anything(), (validate, value) => {
      const violations = validate(value);
      for (const v of violations) expect(v.description.length).toBeLessThan(400);
    }), { numRuns: 500 });
    const long = validateVmNameRequest({ name: "X".repeat(10_000) })[0]!.description;
    expect(long.length).toBeLessThan(300);
  });
});
