export {
  BOOT_MODES, GUEST_HEALTHS, MEMBER_ROLES, MIGRATION_KINDS, MIGRATION_PHASES, NO_CONVERGENCE_POLICIES, NODE_STATES, OWNER_CHANGE_REASONS, RESTART_POLICIES,
  VM_DESIRED_STATES, VM_MIGRATION_EVENT_KINDS, VM_PRIORITIES, VM_STATES,
} from "./types.js";
export type {
  AddMemberRequest, ApiLogger, Backend, BootMode, CallContext, CancelMigrationRequest, ClusterStatus, ClusterStatusRequest, ConsoleInput,
  ConsoleOpenRequest, ConsoleOutput, ConsolidationRatios, CreateVmRequest, DeleteVmRequest, DeleteVmResponse, DrainNodeRequest,
  GuestHealth, GetMigrationRequest, GetVmRequest, ListMigrationsRequest, ListMigrationsResponse, ListNodesRequest, ListNodesResponse, ListVmsRequest,
  ListVmsResponse, Member, MemberRole, MembersRequest, MembersResponse, MigrateRequest, MigrateResponse, Migration, MigrationKind,
  MigrationOptions, MigrationPhase, MigrationProgress, MigrationResult, MigrationUpdate, MigrationUpdateBody, NoConvergencePolicy, Node,
  NodeState, NodeUsage, OwnerChangeReason, PauseVmRequest, PromoteMemberRequest, RemoveMemberRequest, RemoveMemberResponse, RequestOf,
  Resources, ResponseOf, RestartPolicy, RestoreVmRequest, ResumeNodeRequest, ResumeVmRequest, SaveVmRequest, SaveVmResponse,
  SetVmKvpRequest, StartVmRequest, StopVmRequest, StreamMethodName, UnaryMethodName, Vm, VmCreated, VmDeleted, VmDesiredState, VmEvent, VmEventBody,
  VmMigrationEvent, VmMigrationEventKind, VmOwnerChanged, VmPriority, VmSpec, VmState, VmStateChanged, WatchEventsRequest,
  WatchMigrationRequest,
} from "./types.js";
export {
  API_ERROR_CODES, ApiConfigError, ApiError, apiCodeOfGrpcStatus, GRPC_STATUS, grpcStatusName, grpcStatusOf, INVALID_FIELDS_TRAILER_KEY,
  isApiErrorCode, REJECTION_API_CODES, rejectionToApiError,
} from "./errors.js";
export type { ApiErrorCode, ApiErrorOptions, GrpcStatusName, RejectionCode } from "./errors.js";
export {
  assertValid, BANDWIDTH_LIMIT_BYTES_PER_SECOND_MAX, BOOTARGS_LENGTH_MAX, CONSOLE_INPUT_BYTES_MAX, DOWNTIME_LIMIT_MS_MAX, GUEST_PAGE_BYTES,
  IMAGE_LENGTH_MAX, invalidArgument, MAX_ROUNDS_MAX, MIGRATION_ID_PATTERN, NAME_PATTERN, STOP_TIMEOUT_MS_MAX, validateAddMemberRequest,
  validateConsoleInput, validateConsoleOpen, validateCreateVmRequest, validateDeleteVmRequest, validateEmptyRequest,
  validateListMigrationsRequest, validateListNodesRequest, validateListVmsRequest, validateMemberIdRequest, validateMigrateRequest,
  validateMigrationIdRequest, validateNodeRequest, validateSavedStateRequest, validateSetVmKvpRequest, validateStopVmRequest, validateVmNameRequest, KVP_KEY_BYTES_MAX, KVP_VALUE_BYTES_MAX,
  validateWatchEventsRequest, VM_MEMORY_BYTES_MAX, VM_VCPUS_MAX, VM_VCPUS_MIN,
  VM_DISKS_MAX, DISK_SECTOR_BYTES, DISK_BYTES_MAX, VM_NICS_MAX, NIC_MAC_PATTERN,
} from "./validate.js";
export type { FieldViolation } from "./validate.js";
export { API_METHODS, API_PACKAGE, API_PROTO_FILES, API_SERVICES, methodName, methodOf, methodPath, WRITE_METHODS } from "./methods.js";
export type { ApiServiceName, MethodKind, MethodSpec, WriteMethodName } from "./methods.js";
export { FORWARD_HOPS_MAX, FORWARDED_HOPS_METADATA_KEY, forwardingBackend } from "./forwarding.js";
export type { ForwardCallOptions, ForwardTarget } from "./forwarding.js";
export { API_PROTO_ROOT, loadApi, PROTO_LOADER_OPTIONS } from "./adapters/proto.js";
export type { LoadedApi, LoadedMethod } from "./adapters/proto.js";
export { AUTHORIZATION_METADATA_KEY, consoleApiLogger, startApiServer } from "./adapters/server.js";
export type { ApiServer, ApiServerOptions, ServerTlsOptions } from "./adapters/server.js";
export { ApiClient, apiErrorOf } from "./adapters/client.js";
export type {
  AddMemberInput, ApiClientOptions, ApiStream, CallOptions, ClientTlsOptions, ConsoleConnection, CreateVmInput, DeleteVmInput, MigrateInput,
  RequestInput, SetVmKvpInput, StopVmInput,
} from "./adapters/client.js";
