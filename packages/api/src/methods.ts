/**
 * The RPCs of the management API in one table: which service and backend method each is, whether it
 * streams, whether it writes (and is therefore forwarded to the leader), and how its request is
 * validated. The server, the client and the forwarding wrapper all work from this table, and a test
 * checks it against the .proto services.
 */
import type { Backend, UnaryMethodName } from "./types.js";
import {
  type FieldViolation, validateAddMemberRequest, validateConsoleOpen, validateCreateVmRequest, validateDeleteVmRequest, validateEmptyRequest,
  validateListMigrationsRequest, validateListNodesRequest, validateListVmsRequest, validateMemberIdRequest, validateMigrateRequest,
  validateMigrationIdRequest, validateNodeRequest, validateSavedStateRequest, validateSetVmKvpRequest, validateStopVmRequest, validateVmNameRequest,
  validateWatchEventsRequest,
} from "./validate.js";

/** The proto package of every service. */
export const API_PACKAGE = "hyperfleet.v1";

/** The .proto files, relative to the proto root (`packages/api/proto`). */
export const API_PROTO_FILES = [
  "hyperfleet/v1/vms.proto",
  "hyperfleet/v1/migrations.proto",
  "hyperfleet/v1/nodes.proto",
  "hyperfleet/v1/cluster.proto",
] as const;

export const API_SERVICES = ["Vms", "Migrations", "Nodes", "Cluster"] as const;
export type ApiServiceName = (typeof API_SERVICES)[number];

export type MethodKind = "unary" | "server-stream" | "bidi";

/**
 * The backend methods that change the cluster: the leader serves them, a follower forwards them
 * (`forwarding.ts`). Everything else is a read, served by the node that receives it.
 */
export const WRITE_METHODS = [
  "createVm", "startVm", "stopVm", "pauseVm", "resumeVm", "saveVm", "restoreVm", "deleteVm", "setVmKvp",
  "migrate", "cancelMigration",
  "drainNode", "resumeNode",
  "addMember", "promoteMember", "removeMember",
] as const satisfies readonly UnaryMethodName[];
export type WriteMethodName = (typeof WRITE_METHODS)[number];

export interface MethodSpec {
  readonly service: ApiServiceName;
  /** The rpc's name in its service ("Create"). */
  readonly rpc: string;
  /** The `Backend` method that serves it. */
  readonly backend: keyof Backend;
  readonly kind: MethodKind;
  /** Changes the cluster: served by the leader (a follower forwards it). */
  readonly write: boolean;
  /** The request message, without the package ("CreateVmRequest"). */
  readonly requestType: string;
  /** Bidi: checks the first message (later ones: `validateConsoleInput`). */
  readonly validate: (request: unknown) => FieldViolation[];
}

function method(
  service: ApiServiceName, rpc: string, backend: keyof Backend, kind: MethodKind, requestType: string,
  validate: (request: unknown) => FieldViolation[],
): MethodSpec {
  const write = (WRITE_METHODS as readonly string[]).includes(backend);
  return Object.freeze({ service, rpc, backend, kind, write, requestType, validate });
}

export const API_METHODS: readonly MethodSpec[] = Object.freeze([
  method("Vms", "Create", "createVm", "unary", "CreateVmRequest", validateCreateVmRequest),
  method("Vms", "Start", "startVm", "unary", "StartVmRequest", validateVmNameRequest),
  method("Vms", "Stop", "stopVm", "unary", "StopVmRequest", validateStopVmRequest),
  method("Vms", "Pause", "pauseVm", "unary", "PauseVmRequest", validateVmNameRequest),
  method("Vms", "Resume", "resumeVm", "unary", "ResumeVmRequest", validateVmNameRequest),
  method("Vms", "Save", "saveVm", "unary", "SaveVmRequest", validateSavedStateRequest),
  method("Vms", "Restore", "restoreVm", "unary", "RestoreVmRequest", validateSavedStateRequest),
  method("Vms", "Delete", "deleteVm", "unary", "DeleteVmRequest", validateDeleteVmRequest),
  method("Vms", "SetKvp", "setVmKvp", "unary", "SetVmKvpRequest", validateSetVmKvpRequest),
  method("Vms", "Get", "getVm", "unary", "GetVmRequest", validateVmNameRequest),
  method("Vms", "List", "listVms", "unary", "ListVmsRequest", validateListVmsRequest),
  method("Vms", "WatchEvents", "watchVmEvents", "server-stream", "WatchEventsRequest", validateWatchEventsRequest),
  method("Vms", "Console", "attachConsole", "bidi", "ConsoleInput", validateConsoleOpen),
  method("Migrations", "Migrate", "migrate", "unary", "MigrateRequest", validateMigrateRequest),
  method("Migrations", "Cancel", "cancelMigration", "unary", "CancelMigrationRequest", validateMigrationIdRequest),
  method("Migrations", "Watch", "watchMigration", "server-stream", "WatchMigrationRequest", validateMigrationIdRequest),
  method("Migrations", "Get", "getMigration", "unary", "GetMigrationRequest", validateMigrationIdRequest),
  method("Migrations", "List", "listMigrations", "unary", "ListMigrationsRequest", validateListMigrationsRequest),
  method("Nodes", "List", "listNodes", "unary", "ListNodesRequest", validateListNodesRequest),
  method("Nodes", "Drain", "drainNode", "unary", "DrainNodeRequest", validateNodeRequest),
  method("Nodes", "Resume", "resumeNode", "unary", "ResumeNodeRequest", validateNodeRequest),
  method("Cluster", "Status", "clusterStatus", "unary", "ClusterStatusRequest", validateEmptyRequest),
  method("Cluster", "Members", "listMembers", "unary", "MembersRequest", validateEmptyRequest),
  method("Cluster", "AddMember", "addMember", "unary", "AddMemberRequest", validateAddMemberRequest),
  method("Cluster", "PromoteMember", "promoteMember", "unary", "PromoteMemberRequest", validateMemberIdRequest),
  method("Cluster", "RemoveMember", "removeMember", "unary", "RemoveMemberRequest", validateMemberIdRequest),
]);

/** "Vms/Create": how hooks, logs and `CallContext.method` name an RPC. */
export function methodName(spec: Pick<MethodSpec, "service" | "rpc">): string {
  return `${spec.service}/${spec.rpc}`;
}

/** The gRPC path of an RPC: "/hyperfleet.v1.Vms/Create". */
export function methodPath(spec: Pick<MethodSpec, "service" | "rpc">): string {
  return `/${API_PACKAGE}.${spec.service}/${spec.rpc}`;
}

/** The table's entry for a backend method. */
export function methodOf(backend: keyof Backend): MethodSpec {
  const spec = API_METHODS.find((m) => m.backend === backend);
  if (spec === undefined) throw new RangeError(`no RPC is served by Backend.${String(backend)}`);
  return spec;
}
