import { describe, expect, it } from "vitest";
import { API_PROTO_ROOT, loadApi } from "../src/adapters/proto.js";
import { API_METHODS, API_PACKAGE, API_SERVICES, methodPath, WRITE_METHODS } from "../src/methods.js";
import {
  BOOT_MODES, MEMBER_ROLES, MIGRATION_KINDS, MIGRATION_PHASES, NO_CONVERGENCE_POLICIES, NODE_STATES, OWNER_CHANGE_REASONS, RESTART_POLICIES,
  VM_DESIRED_STATES, VM_MIGRATION_EVENT_KINDS, VM_PRIORITIES, VM_STATES,
} from "../src/types.js";
import type * as T from "../src/types.js";

interface Definition {
  format?: string;
  type?: { value?: { name: string; number: number }[]; field?: unknown[] };
  serialize?: (value: object) => Buffer;
  deserialize?: (bytes: Buffer) => object;
}

const definitions = (): Record<string, Definition> => loadApi().packageDefinition as unknown as Record<string, Definition>;

function definition(name: string): Definition {
  const d = definitions()[`${API_PACKAGE}.${name}`];
  if (d === undefined) throw new Error(`no ${API_PACKAGE}.${name} in ${API_PROTO_ROOT}`);
  return d;
}

const spec: T.VmSpec = {
  memoryBytes: 268435456, vcpus: 2, image: "guests/echo.elf", bootMode: "BOOT_MODE_SBI", bootargs: "console=hvc0", antiAffinityGroup: "db",
  priority: "VM_PRIORITY_HIGH", restartPolicy: "RESTART_POLICY_DO_NOT_RESTART", diskBytes: [67108864, 512], noIntegration: true,
  nicMacs: ["02:48:00:00:00:01"],
};
const vm: T.Vm = {
  name: "web", spec, desiredState: "VM_DESIRED_STATE_RUNNING", state: "VM_STATE_RUNNING", owner: "n1", epoch: 7, pendingReason: "",
  migrationId: "m3", createdAtMs: 1_700_000_000_123, savedState: "before-upgrade", guestHealth: "ok", guestKvp: { "probe.status": "ready" },
  hostKvp: { "app.port": "8080" },
};
const progress: T.MigrationProgress = {
  phase: "MIGRATION_PHASE_PRECOPY", round: 2, pagesRemaining: 1234, dirtyPagesPerSecond: 5000.5, throughputBytesPerSecond: 1.25e9,
  expectedDowntimeMs: 12.5, etaMs: 340.25, throttlePercent: 20,
};
const result: T.MigrationResult = {
  ok: false, totalMs: 4200, downtimeMs: 0, bytesSent: 9_000_000_000, rounds: 31, throttlePercentMax: 60, failureReason: "no convergence", cancelled: false,
};
const options: T.MigrationOptions = {
  kind: "MIGRATION_KIND_LIVE", downtimeLimitMs: 300, bandwidthLimitBytesPerSecond: 125_000_000, maxRounds: 30, policy: "NO_CONVERGENCE_POLICY_FORCE",
};
const migration: T.Migration = {
  id: "m3", vm: "web", sourceNode: "n1", targetNode: "n2", options, progress, result, startedAtMs: 1_700_000_000_000, finishedAtMs: 1_700_000_004_200,
};
const node: T.Node = {
  id: "n1", apiAddress: "127.0.0.1:7001", state: "NODE_STATE_DRAINING", capacity: { memoryBytes: 8589934592, vcpus: 4 },
  usage: { memoryBytes: 536870912, vcpus: 6, vms: 3, runningVms: 2, incomingMigrations: 1 }, leaseUntilMs: 1_700_000_060_000, leaseLive: true,
  labels: { zone: "a", rack: "r7" },
};
const member: T.Member = { id: "n2", raftAddress: "127.0.0.1:8002", apiAddress: "127.0.0.1:7002", role: "MEMBER_ROLE_LEARNER", matchIndex: 99, reachable: true };

/**
 * One value of every message type, typed by `types.ts` (so the compiler checks the TS side has
 * exactly these fields) and round-tripped through the proto (so the wire has exactly these fields,
 * with these types). Every field is set to a value other than its default.
 */
const samples: Record<string, object> = {
  VmSpec: spec,
  Vm: vm,
  CreateVmRequest: {
    name: "web", memoryBytes: 4096, vcpus: 1, image: "i", bootMode: "BOOT_MODE_BARE", bootargs: "a", antiAffinityGroup: "g",
    priority: "VM_PRIORITY_LOW", restartPolicy: "RESTART_POLICY_RESTART", start: true, diskBytes: [1048576], noIntegration: true, nics: 1,
    nicMacs: ["02:48:0a:0b:0c:0d"],
  } satisfies T.CreateVmRequest,
  StartVmRequest: { name: "web" } satisfies T.StartVmRequest,
  StopVmRequest: { name: "web", force: true, timeoutMs: 5 } satisfies T.StopVmRequest,
  SetVmKvpRequest: { name: "web", key: "app.port", value: "8080", delete: true } satisfies T.SetVmKvpRequest,
  PauseVmRequest: { name: "web" } satisfies T.PauseVmRequest,
  ResumeVmRequest: { name: "web" } satisfies T.ResumeVmRequest,
  SaveVmRequest: { name: "web", savedState: "s1" } satisfies T.SaveVmRequest,
  SaveVmResponse: { vm, savedState: "s1", sizeBytes: 268439552 } satisfies T.SaveVmResponse,
  RestoreVmRequest: { name: "web", savedState: "s1" } satisfies T.RestoreVmRequest,
  DeleteVmRequest: { name: "web", force: true } satisfies T.DeleteVmRequest,
  DeleteVmResponse: {} satisfies T.DeleteVmResponse,
  GetVmRequest: { name: "web" } satisfies T.GetVmRequest,
  ListVmsRequest: { node: "n1", state: "VM_STATE_CRASHED" } satisfies T.ListVmsRequest,
  ListVmsResponse: { vms: [vm, { ...vm, name: "db" }] } satisfies T.ListVmsResponse,
  WatchEventsRequest: { vm: "web" } satisfies T.WatchEventsRequest,
  VmEvent: { sequence: 12, atMs: 1_700_000_000_500, vm: "web", event: "created", created: { vm } } satisfies T.VmEvent,
  VmCreated: { vm } satisfies T.VmCreated,
  VmDeleted: {} satisfies T.VmDeleted,
  VmStateChanged: { desiredState: "VM_DESIRED_STATE_PAUSED", previousState: "VM_STATE_RUNNING", state: "VM_STATE_PAUSED", reason: "pause" } satisfies T.VmStateChanged,
  VmOwnerChanged: { previousOwner: "n1", owner: "n2", epoch: 8, reason: "OWNER_CHANGE_REASON_MIGRATION" } satisfies T.VmOwnerChanged,
  VmMigrationEvent: {
    migrationId: "m3", kind: "VM_MIGRATION_EVENT_KIND_FAILED", sourceNode: "n1", targetNode: "n2", reason: "target failed",
  } satisfies T.VmMigrationEvent,
  ConsoleInput: { vm: "web", data: Buffer.from("ls\r") } satisfies T.ConsoleInput,
  ConsoleOutput: { data: Buffer.from("$ "), history: true } satisfies T.ConsoleOutput,
  MigrateRequest: {
    vm: "web", targetNode: "n2", kind: "MIGRATION_KIND_QUICK", downtimeLimitMs: 1, bandwidthLimitBytesPerSecond: 2, maxRounds: 3,
    policy: "NO_CONVERGENCE_POLICY_AUTO_CONVERGE",
  } satisfies T.MigrateRequest,
  MigrateResponse: { migrationId: "m3", targetNode: "n2" } satisfies T.MigrateResponse,
  MigrationOptions: options,
  MigrationProgress: progress,
  MigrationResult: result,
  Migration: migration,
  CancelMigrationRequest: { migrationId: "m3" } satisfies T.CancelMigrationRequest,
  WatchMigrationRequest: { migrationId: "m3" } satisfies T.WatchMigrationRequest,
  MigrationUpdate: { migrationId: "m3", update: "progress", progress } satisfies T.MigrationUpdate,
  GetMigrationRequest: { migrationId: "m3" } satisfies T.GetMigrationRequest,
  ListMigrationsRequest: { vm: "web", activeOnly: true } satisfies T.ListMigrationsRequest,
  ListMigrationsResponse: { migrations: [migration, { ...migration, id: "m4", result: null }] } satisfies T.ListMigrationsResponse,
  Resources: { memoryBytes: 1024, vcpus: 2 } satisfies T.Resources,
  NodeUsage: node.usage,
  Node: node,
  ListNodesRequest: { state: "NODE_STATE_FAILED" } satisfies T.ListNodesRequest,
  ListNodesResponse: { nodes: [node] } satisfies T.ListNodesResponse,
  DrainNodeRequest: { node: "n1" } satisfies T.DrainNodeRequest,
  ResumeNodeRequest: { node: "n1" } satisfies T.ResumeNodeRequest,
  Member: member,
  ConsolidationRatios: { vmsPerNode: 2.5, vcpusPerPcpu: 1.75, memoryCommittedRatio: 0.625 } satisfies T.ConsolidationRatios,
  ClusterStatusRequest: {} satisfies T.ClusterStatusRequest,
  ClusterStatus: {
    clusterId: "c", nodeId: "n2", leaderId: "n1", leaderApiAddress: "127.0.0.1:7001", term: 4, commitIndex: 1000, appliedIndex: 999,
    members: [member], nodeCount: 3, vmCount: 10, runningVmCount: 8, migrationsInFlight: 1,
    consolidation: { vmsPerNode: 2.5, vcpusPerPcpu: 1.75, memoryCommittedRatio: 0.625 },
  } satisfies T.ClusterStatus,
  MembersRequest: {} satisfies T.MembersRequest,
  MembersResponse: { members: [member] } satisfies T.MembersResponse,
  AddMemberRequest: { id: "n4", raftAddress: "h:1", apiAddress: "h:2" } satisfies T.AddMemberRequest,
  PromoteMemberRequest: { id: "n4" } satisfies T.PromoteMemberRequest,
  RemoveMemberRequest: { id: "n4" } satisfies T.RemoveMemberRequest,
  RemoveMemberResponse: {} satisfies T.RemoveMemberResponse,
};

describe("api protos", () => {
  it("api protos - every enum's values, in order, are the TypeScript tuple's", () => {
    const tuples: Record<string, readonly string[]> = {
      BootMode: BOOT_MODES, VmPriority: VM_PRIORITIES, RestartPolicy: RESTART_POLICIES, VmDesiredState: VM_DESIRED_STATES, VmState: VM_STATES,
      OwnerChangeReason: OWNER_CHANGE_REASONS, VmMigrationEventKind: VM_MIGRATION_EVENT_KINDS, MigrationKind: MIGRATION_KINDS,
      NoConvergencePolicy: NO_CONVERGENCE_POLICIES, MigrationPhase: MIGRATION_PHASES, NodeState: NODE_STATES, MemberRole: MEMBER_ROLES,
    };
    const protoEnums = Object.entries(definitions())
      .filter(([, d]) => d.format === "Protocol Buffer 3 EnumDescriptorProto")
      .map(([name]) => name.slice(API_PACKAGE.length + 1));
    expect(protoEnums.sort()).toEqual(Object.keys(tuples).sort());
    for (const [name, tuple] of Object.entries(tuples)) {
      const values = definition(name).type!.value!;
      expect(values.map((v) => v.name), name).toEqual([...tuple]);
      expect(values.map((v) => v.number), name).toEqual(tuple.map((_, i) => i));
      expect(tuple[0], name).toMatch(/_UNSPECIFIED$/);
    }
  });

  it("api protos - every message round-trips with exactly the fields of its TypeScript type", () => {
    const protoMessages = Object.entries(definitions())
      .filter(([, d]) => d.format === "Protocol Buffer 3 DescriptorProto")
      .map(([name]) => name.slice(API_PACKAGE.length + 1));
    expect(protoMessages.sort()).toEqual(Object.keys(samples).sort());
    for (const [name, value] of Object.entries(samples)) {
      const d = definition(name);
      const decoded = d.deserialize!(d.serialize!(value));
      expect(decoded, name).toEqual(value);
      expect(Object.keys(decoded).sort(), name).toEqual(Object.keys(value).sort());
    }
  });

  it("api protos - an empty message decodes to the documented defaults", () => {
    const d = definition("Migration");
    expect(d.deserialize!(Buffer.alloc(0))).toEqual({
      id: "", vm: "", sourceNode: "", targetNode: "", options: null, progress: null, result: null, startedAtMs: 0, finishedAtMs: 0,
    });
    const e = definition("VmEvent");
    expect(e.deserialize!(Buffer.alloc(0))).toEqual({ sequence: 0, atMs: 0, vm: "" });
    const c = definition("ConsoleInput");
    const input = c.deserialize!(Buffer.alloc(0)) as T.ConsoleInput;
    expect(input.vm).toBe("");
    expect(input.data).toBeInstanceOf(Uint8Array);
    expect(input.data.length).toBe(0);
  });

  it("api protos - the method table names every rpc of every service, with its streaming kind and request type", () => {
    const api = loadApi();
    for (const service of API_SERVICES) {
      const rpcs = Object.keys(api.services[service]).sort();
      expect(API_METHODS.filter((m) => m.service === service).map((m) => m.rpc).sort(), service).toEqual(rpcs);
    }
    const serviceNames = Object.entries(definitions()).filter(([, d]) => d.format === undefined).map(([n]) => n.slice(API_PACKAGE.length + 1));
    expect(serviceNames.sort()).toEqual([...API_SERVICES].sort());
    for (const m of API_METHODS) {
      const loaded = api.services[m.service][m.rpc] as unknown as {
        path: string; requestStream: boolean; responseStream: boolean; requestType: { type: { name: string } };
      };
      expect(loaded.path).toBe(methodPath(m));
      const kind = loaded.requestStream ? "bidi" : loaded.responseStream ? "server-stream" : "unary";
      expect(kind, m.rpc).toBe(m.kind);
      expect(loaded.requestType.type.name).toBe(m.requestType);
    }
    const backends = API_METHODS.map((m) => m.backend);
    expect(new Set(backends).size).toBe(backends.length);
    expect(API_METHODS.filter((m) => m.write).map((m) => m.backend)).toEqual([...WRITE_METHODS]);
    expect(API_METHODS.filter((m) => m.write && m.kind !== "unary")).toEqual([]);
  });

  it("api protos - the client's enum guard knows each request's enum fields", () => {
    const api = loadApi();
    expect([...api.enumFields("CreateVmRequest").keys()]).toEqual(["bootMode", "priority", "restartPolicy"]);
    expect(api.enumFields("MigrateRequest").get("policy")).toEqual([...NO_CONVERGENCE_POLICIES]);
    expect(api.enumFields("GetVmRequest").size).toBe(0);
  });
});
