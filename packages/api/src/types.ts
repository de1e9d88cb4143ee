/**
 * The messages of `proto/hyperfleet/v1/*.proto` as TypeScript sees them, and the `Backend` that a
 * node daemon (fleetd) implements behind the server.
 *
 * Shapes are exactly what `@grpc/proto-loader` hands out with the options this package loads the
 * protos with (`PROTO_LOADER_OPTIONS`, `adapters/proto.ts`):
 *  - `keepCase: false`: fields are camelCase (`memory_bytes` → `memoryBytes`);
 *  - `longs: Number`: 64-bit fields are plain numbers. Every 64-bit quantity of the API (bytes,
 *    milliseconds, log indexes) stays far below 2^53, and validation refuses any request value that
 *    is not a safe integer, so nothing is silently rounded on the way in;
 *  - `enums: String`: enum fields are their value names (`"BOOT_MODE_SBI"`); a number the server
 *    does not know arrives as that number, which validation refuses ("unknown value 7");
 *  - `defaults: true`: every scalar, enum, bytes, repeated and map field is present (zero values:
 *    `""`, `0`, `false`, the `*_UNSPECIFIED` name, an empty Buffer, `[]`, `{}`); an unset message
 *    field is `null`;
 *  - `oneofs: true`: a oneof adds a field naming the member that is set (`VmEvent.event`), and only
 *    that member is present. The oneof types below are discriminated unions on that field.
 *
 * Nested message fields that the server always fills (because `Backend` results must carry them)
 * are typed non-null; `Migration.result` is the one documented as absent (null) at times.
 * `bytes` fields are `Uint8Array` (proto-loader gives Buffers, which are Uint8Arrays).
 */

// ---------------------------------------------------------------------------------------------
// Enums: each as the tuple of its value names, in the order of the .proto (checked by a test).

export const BOOT_MODES = ["BOOT_MODE_UNSPECIFIED", "BOOT_MODE_BARE", "BOOT_MODE_SBI"] as const;
export type BootMode = (typeof BOOT_MODES)[number];

export const VM_PRIORITIES = ["VM_PRIORITY_UNSPECIFIED", "VM_PRIORITY_HIGH", "VM_PRIORITY_NORMAL", "VM_PRIORITY_LOW"] as const;
export type VmPriority = (typeof VM_PRIORITIES)[number];

export const RESTART_POLICIES = ["RESTART_POLICY_UNSPECIFIED", "RESTART_POLICY_RESTART", "RESTART_POLICY_DO_NOT_RESTART"] as const;
export type RestartPolicy = (typeof RESTART_POLICIES)[number];

export const VM_DESIRED_STATES = [
  "VM_DESIRED_STATE_UNSPECIFIED", "VM_DESIRED_STATE_RUNNING", "VM_DESIRED_STATE_STOPPED", "VM_DESIRED_STATE_PAUSED", "VM_DESIRED_STATE_SAVED",
] as const;
export type VmDesiredState = (typeof VM_DESIRED_STATES)[number];

export const VM_STATES = [
  "VM_STATE_UNSPECIFIED", "VM_STATE_PENDING", "VM_STATE_STARTING", "VM_STATE_RUNNING", "VM_STATE_PAUSED", "VM_STATE_STOPPING",
  "VM_STATE_STOPPED", "VM_STATE_SAVED", "VM_STATE_CRASHED",
] as const;
export type VmState = (typeof VM_STATES)[number];

export const OWNER_CHANGE_REASONS = [
  "OWNER_CHANGE_REASON_UNSPECIFIED", "OWNER_CHANGE_REASON_PLACEMENT", "OWNER_CHANGE_REASON_MIGRATION", "OWNER_CHANGE_REASON_FAILOVER",
] as const;
export type OwnerChangeReason = (typeof OWNER_CHANGE_REASONS)[number];

export const VM_MIGRATION_EVENT_KINDS = [
  "VM_MIGRATION_EVENT_KIND_UNSPECIFIED", "VM_MIGRATION_EVENT_KIND_STARTED", "VM_MIGRATION_EVENT_KIND_COMPLETED",
  "VM_MIGRATION_EVENT_KIND_FAILED", "VM_MIGRATION_EVENT_KIND_CANCELLED",
] as const;
export type VmMigrationEventKind = (typeof VM_MIGRATION_EVENT_KINDS)[number];

export const MIGRATION_KINDS = ["MIGRATION_KIND_UNSPECIFIED", "MIGRATION_KIND_LIVE", "MIGRATION_KIND_QUICK"] as const;
export type MigrationKind = (typeof MIGRATION_KINDS)[number];

export const NO_CONVERGENCE_POLICIES = [
  "NO_CONVERGENCE_POLICY_UNSPECIFIED", "NO_CONVERGENCE_POLICY_FORCE", "NO_CONVERGENCE_POLICY_CANCEL", "NO_CONVERGENCE_POLICY_AUTO_CONVERGE",
] as const;
export type NoConvergencePolicy = (typeof NO_CONVERGENCE_POLICIES)[number];

export const MIGRATION_PHASES = [
  "MIGRATION_PHASE_UNSPECIFIED", "MIGRATION_PHASE_HANDSHAKE", "MIGRATION_PHASE_PRECOPY", "MIGRATION_PHASE_STOP_AND_COPY",
  "MIGRATION_PHASE_COMMIT", "MIGRATION_PHASE_DONE", "MIGRATION_PHASE_FAILED",
] as const;
export type MigrationPhase = (typeof MIGRATION_PHASES)[number];

export const NODE_STATES = ["NODE_STATE_UNSPECIFIED", "NODE_STATE_ACTIVE", "NODE_STATE_DRAINING", "NODE_STATE_DRAINED", "NODE_STATE_FAILED"] as const;
export type NodeState = (typeof NODE_STATES)[number];

export const MEMBER_ROLES = [
  "MEMBER_ROLE_UNSPECIFIED", "MEMBER_ROLE_LEADER", "MEMBER_ROLE_FOLLOWER", "MEMBER_ROLE_CANDIDATE", "MEMBER_ROLE_LEARNER",
] as const;
export type MemberRole = (typeof MEMBER_ROLES)[number];

// ---------------------------------------------------------------------------------------------
// Vms (vms.proto)

export interface VmSpec {
  memoryBytes: number;
  vcpus: number;
  image: string;
  bootMode: BootMode;
  bootargs: string;
  antiAffinityGroup: string;
  priority: VmPriority;
  restartPolicy: RestartPolicy;
  /** Virtual disk sizes, in order. */
  diskBytes: number[];
  /** The guest is not offered the integration services. */
  noIntegration: boolean;
  /** Its synthetic NICs' MACs, in order. */
  nicMacs: string[];
}

/** `Vm.guestHealth`: the heartbeat's view of the guest, or "unknown" (see the proto). */
export const GUEST_HEALTHS = ["ok", "unhealthy", "no-contact", "not-connected", "unknown"] as const;
export type GuestHealth = (typeof GUEST_HEALTHS)[number];

export interface Vm {
  name: string;
  spec: VmSpec;
  desiredState: VmDesiredState;
  state: VmState;
  /** Empty while the VM is pending. */
  owner: string;
  epoch: number;
  pendingReason: string;
  /** Empty when no migration is in flight. */
  migrationId: string;
  createdAtMs: number;
  /** The saved state the owner writes (desired SAVED) or loads at the next start; empty when none. */
  savedState: string;
  /**
   * One of `GUEST_HEALTHS`, as the owner node's heartbeat sees the guest; "unknown" when the VM does
   * not run or the answering node is not its owner and could not ask it.
   */
  guestHealth: string;
  /** What the guest published through KVP (as the owner last heard it). */
  guestKvp: Record<string, string>;
  /** What the host set for the guest to read (SetKvp). */
  hostKvp: Record<string, string>;
}

export interface CreateVmRequest {
  name: string;
  memoryBytes: number;
  vcpus: number;
  image: string;
  bootMode: BootMode;
  bootargs: string;
  antiAffinityGroup: string;
  priority: VmPriority;
  restartPolicy: RestartPolicy;
  start: boolean;
  /** Virtual disk sizes (each a positive multiple of 512, at most 64 GiB; at most 8). */
  diskBytes: number[];
  noIntegration: boolean;
  /** NICs with MACs the cluster assigns (0 to 8); not with `nicMacs`. */
  nics: number;
  /** NICs with these MACs ("02:48:" and four more lowercase hex bytes); not with `nics`. */
  nicMacs: string[];
}

export interface StartVmRequest {
  name: string;
}

export interface SetVmKvpRequest {
  name: string;
  key: string;
  value: string;
  /** Remove the key instead. */
  delete: boolean;
}

export interface StopVmRequest {
  name: string;
  /** Turn it off at once: do not ask the guest to shut down. */
  force: boolean;
  /** How long the guest has to power off after the shutdown request; 0: the owner node's default. */
  timeoutMs: number;
}

export interface PauseVmRequest {
  name: string;
}

export interface ResumeVmRequest {
  name: string;
}

export interface SaveVmRequest {
  name: string;
  savedState: string;
}

export interface SaveVmResponse {
  vm: Vm;
  savedState: string;
  sizeBytes: number;
}

export interface RestoreVmRequest {
  name: string;
  savedState: string;
}

export interface DeleteVmRequest {
  name: string;
  force: boolean;
}

export type DeleteVmResponse = Record<string, never>;

export interface GetVmRequest {
  name: string;
}

export interface ListVmsRequest {
  /** "": every node. */
  node: string;
  /** UNSPECIFIED: any state. */
  state: VmState;
}

export interface ListVmsResponse {
  vms: Vm[];
}

export interface WatchEventsRequest {
  /** "": every VM. */
  vm: string;
}

export interface VmCreated {
  vm: Vm;
}

export type VmDeleted = Record<string, never>;

export interface VmStateChanged {
  desiredState: VmDesiredState;
  previousState: VmState;
  state: VmState;
  reason: string;
}

export interface VmOwnerChanged {
  previousOwner: string;
  owner: string;
  epoch: number;
  reason: OwnerChangeReason;
}

export interface VmMigrationEvent {
  migrationId: string;
  kind: VmMigrationEventKind;
  sourceNode: string;
  targetNode: string;
  reason: string;
}

/** The `event` oneof of `VmEvent`: `event` names the member that is set. */
export type VmEventBody =
  | { event: "created"; created: VmCreated }
  | { event: "deleted"; deleted: VmDeleted }
  | { event: "stateChanged"; stateChanged: VmStateChanged }
  | { event: "ownerChanged"; ownerChanged: VmOwnerChanged }
  | { event: "migration"; migration: VmMigrationEvent };

export type VmEvent = {
  /** Grows along one stream. */
  sequence: number;
  atMs: number;
  vm: string;
} & VmEventBody;

export interface ConsoleInput {
  vm: string;
  data: Uint8Array;
}

export interface ConsoleOutput {
  data: Uint8Array;
  /** Set on the chunks that replay the console's history (they come first). */
  history: boolean;
}

/** What the server hands the backend for a Console call: the VM named by the first ConsoleInput. */
export interface ConsoleOpenRequest {
  vm: string;
}

// ---------------------------------------------------------------------------------------------
// Migrations (migrations.proto)

export interface MigrateRequest {
  vm: string;
  /** "": the cluster chooses. */
  targetNode: string;
  kind: MigrationKind;
  downtimeLimitMs: number;
  bandwidthLimitBytesPerSecond: number;
  maxRounds: number;
  policy: NoConvergencePolicy;
}

export interface MigrateResponse {
  migrationId: string;
  targetNode: string;
}

export interface MigrationOptions {
  kind: MigrationKind;
  downtimeLimitMs: number;
  bandwidthLimitBytesPerSecond: number;
  maxRounds: number;
  policy: NoConvergencePolicy;
}

export interface MigrationProgress {
  phase: MigrationPhase;
  round: number;
  pagesRemaining: number;
  dirtyPagesPerSecond: number;
  throughputBytesPerSecond: number;
  expectedDowntimeMs: number;
  etaMs: number;
  throttlePercent: number;
}

export interface MigrationResult {
  ok: boolean;
  totalMs: number;
  downtimeMs: number;
  bytesSent: number;
  rounds: number;
  throttlePercentMax: number;
  failureReason: string;
  cancelled: boolean;
}

export interface Migration {
  id: string;
  vm: string;
  sourceNode: string;
  targetNode: string;
  options: MigrationOptions;
  progress: MigrationProgress;
  /** null while the migration is in flight. */
  result: MigrationResult | null;
  startedAtMs: number;
  /** 0 while in flight. */
  finishedAtMs: number;
}

export interface CancelMigrationRequest {
  migrationId: string;
}

export interface WatchMigrationRequest {
  migrationId: string;
}

/** The `update` oneof of `MigrationUpdate`. */
export type MigrationUpdateBody =
  | { update: "progress"; progress: MigrationProgress }
  | { update: "result"; result: MigrationResult };

export type MigrationUpdate = { migrationId: string } & MigrationUpdateBody;

export interface GetMigrationRequest {
  migrationId: string;
}

export interface ListMigrationsRequest {
  /** "": all VMs. */
  vm: string;
  activeOnly: boolean;
}

export interface ListMigrationsResponse {
  migrations: Migration[];
}

// ---------------------------------------------------------------------------------------------
// Nodes (nodes.proto)

export interface Resources {
  memoryBytes: number;
  vcpus: number;
}

export interface NodeUsage {
  memoryBytes: number;
  vcpus: number;
  vms: number;
  runningVms: number;
  incomingMigrations: number;
}

export interface Node {
  id: string;
  apiAddress: string;
  state: NodeState;
  capacity: Resources;
  usage: NodeUsage;
  leaseUntilMs: number;
  leaseLive: boolean;
  labels: Record<string, string>;
}

export interface ListNodesRequest {
  /** UNSPECIFIED: any state. */
  state: NodeState;
}

export interface ListNodesResponse {
  nodes: Node[];
}

export interface DrainNodeRequest {
  node: string;
}

export interface ResumeNodeRequest {
  node: string;
}

// ---------------------------------------------------------------------------------------------
// Cluster (cluster.proto)

export interface Member {
  id: string;
  raftAddress: string;
  apiAddress: string;
  role: MemberRole;
  matchIndex: number;
  reachable: boolean;
}

export interface ConsolidationRatios {
  vmsPerNode: number;
  vcpusPerPcpu: number;
  memoryCommittedRatio: number;
}

export type ClusterStatusRequest = Record<string, never>;

export interface ClusterStatus {
  clusterId: string;
  nodeId: string;
  leaderId: string;
  leaderApiAddress: string;
  term: number;
  commitIndex: number;
  appliedIndex: number;
  members: Member[];
  nodeCount: number;
  vmCount: number;
  runningVmCount: number;
  migrationsInFlight: number;
  consolidation: ConsolidationRatios;
}

export type MembersRequest = Record<string, never>;

export interface MembersResponse {
  members: Member[];
}

export interface AddMemberRequest {
  id: string;
  raftAddress: string;
  apiAddress: string;
}

export interface PromoteMemberRequest {
  id: string;
}

export interface RemoveMemberRequest {
  id: string;
}

export type RemoveMemberResponse = Record<string, never>;

// ---------------------------------------------------------------------------------------------
// The backend

/**
 * What the server tells the backend about one call.
 *
 * Contract: `signal` aborts when the caller cancels, the deadline passes, or the server shuts down;
 * the backend should stop work it started only for this call (a write already proposed to the
 * cluster may still commit: that is the client's "outcome unknown").
 */
export interface CallContext {
  /** "Service/Rpc", e.g. "Vms/Create". */
  readonly method: string;
  /** The caller's address, as gRPC reports it ("ipv4:127.0.0.1:53122"). */
  readonly peer: string;
  readonly signal: AbortSignal;
  /** Unix time (ms) past which the caller stops waiting; null when the call has no deadline. */
  readonly deadlineMs: number | null;
  /** How many nodes already forwarded this call (0: it came from a client). */
  readonly hops: number;
}

/**
 * The management API as the node daemon implements it: one method per RPC. The server checks the
 * token and validates every request before calling a method, so a method only ever sees requests
 * that passed `validate.ts` (names well-formed, numbers in range, enum values known; the
 * *_UNSPECIFIED defaults are left for the backend to fill as each .proto field documents).
 *
 * Errors: throw `ApiError(code, message)` (errors.ts); the client receives that code and message.
 * Anything else thrown becomes INTERNAL with a generic message, and the original is logged.
 *
 * Streams are async iterables, pulled by the server one message at a time as the client's flow
 * control allows (so a slow client slows the producer instead of growing a buffer):
 *  - the stream ends with OK when the iterable ends, and with the error's status when it throws (an
 *    error before the first message refuses the call, e.g. NOT_FOUND);
 *  - when the client cancels or the server shuts down, `context.signal` aborts and the server calls
 *    the iterator's `return()`. An async generator suspended in an `await` only sees `return()`
 *    after that await settles, so a method that waits for something (the next event) must also wait
 *    on `context.signal` and end promptly when it aborts.
 */
export interface Backend {
  // Vms
  createVm(request: CreateVmRequest, context: CallContext): Promise<Vm>;
  startVm(request: StartVmRequest, context: CallContext): Promise<Vm>;
  stopVm(request: StopVmRequest, context: CallContext): Promise<Vm>;
  pauseVm(request: PauseVmRequest, context: CallContext): Promise<Vm>;
  resumeVm(request: ResumeVmRequest, context: CallContext): Promise<Vm>;
  saveVm(request: SaveVmRequest, context: CallContext): Promise<SaveVmResponse>;
  restoreVm(request: RestoreVmRequest, context: CallContext): Promise<Vm>;
  deleteVm(request: DeleteVmRequest, context: CallContext): Promise<DeleteVmResponse>;
  setVmKvp(request: SetVmKvpRequest, context: CallContext): Promise<Vm>;
  getVm(request: GetVmRequest, context: CallContext): Promise<Vm>;
  listVms(request: ListVmsRequest, context: CallContext): Promise<ListVmsResponse>;
  /** Events from now on, in commit order; never ends by itself except on shutdown. */
  watchVmEvents(request: WatchEventsRequest, context: CallContext): AsyncIterable<VmEvent>;
  /**
   * The VM's console: yield the history (with `history: true`) and then live output. `input` yields
   * the bytes the client types (never empty chunks) and ends when the client half-closes; the call
   * lasts until this iterable ends or the signal aborts. Usually served by the VM's owner node.
   */
  attachConsole(request: ConsoleOpenRequest, input: AsyncIterable<Uint8Array>, context: CallContext): AsyncIterable<ConsoleOutput>;

  // Migrations
  migrate(request: MigrateRequest, context: CallContext): Promise<MigrateResponse>;
  cancelMigration(request: CancelMigrationRequest, context: CallContext): Promise<Migration>;
  /** Progress updates, then exactly one `result` update, then the end. */
  watchMigration(request: WatchMigrationRequest, context: CallContext): AsyncIterable<MigrationUpdate>;
  getMigration(request: GetMigrationRequest, context: CallContext): Promise<Migration>;
  listMigrations(request: ListMigrationsRequest, context: CallContext): Promise<ListMigrationsResponse>;

  // Nodes
  listNodes(request: ListNodesRequest, context: CallContext): Promise<ListNodesResponse>;
  drainNode(request: DrainNodeRequest, context: CallContext): Promise<Node>;
  resumeNode(request: ResumeNodeRequest, context: CallContext): Promise<Node>;

  // Cluster
  clusterStatus(request: ClusterStatusRequest, context: CallContext): Promise<ClusterStatus>;
  listMembers(request: MembersRequest, context: CallContext): Promise<MembersResponse>;
  addMember(request: AddMemberRequest, context: CallContext): Promise<Member>;
  promoteMember(request: PromoteMemberRequest, context: CallContext): Promise<Member>;
  removeMember(request: RemoveMemberRequest, context: CallContext): Promise<RemoveMemberResponse>;
}

/** The backend methods answered with one message. */
export type UnaryMethodName = {
  [K in keyof Backend]: ReturnType<Backend[K]> extends Promise<unknown> ? K : never;
}[keyof Backend];

/** The backend methods answered with a stream. */
export type StreamMethodName = Exclude<keyof Backend, UnaryMethodName>;

export type RequestOf<K extends keyof Backend> = Parameters<Backend[K]>[0];
export type ResponseOf<K extends UnaryMethodName> = Awaited<ReturnType<Backend[K]>>;

/**
 * Structured logging, shaped like pino's (`logger.error({ err }, "message")`), so a pino logger can
 * be passed as is.
 */
export interface ApiLogger {
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}
