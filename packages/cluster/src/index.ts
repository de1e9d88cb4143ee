export { ClusterState, NODE_TRANSITIONS } from "./state.js";
export type {
  ClusterRejection, ClusterResult, ClusterStateOptions, ClusterSuccess, ConsolidationFigures, NodeConsolidation, NodeView,
} from "./state.js";
export { COMMAND_BYTES_MAX, COMMAND_TYPES, COMMAND_VERSION, decodeCommand, encodeCommand } from "./commands.js";
export type {
  AbortMigrationCommand, BeginMigrationCommand, ClusterCommand, CommandType, CreateVmCommand, DecodedCommand, DeleteVmCommand, FailoverCommand,
  RegisterNodeCommand, RemoveNodeCommand, RenewLeaseCommand, ReportActualCommand, SetDesiredStateCommand, SetVmKvpCommand, SetNodeStateCommand, TransferCommand,
  VmSpecInput,
} from "./commands.js";
export {
  checkEligible, checkNode, computeUsage, explainNoFit, formatBytes, freeMemoryBytes, freeVcpus, place, placesBefore, REASON_NODES_MAX, requestFor,
  sameUsage, UsageLedger, vcpuLimit,
} from "./placement.js";
export type { MismatchKind, NodeMismatch, PlacementConfig, PlacementDecision, PlacementNode, PlacementRequest, UsageRole } from "./placement.js";
export { assertInvariants, checkInvariants, checkTransition, VIOLATIONS_MAX } from "./invariants.js";
export {
  decodeSnapshot, encodeSnapshot, SNAPSHOT_BYTES_MAX, SNAPSHOT_FORMAT_MAJOR, SNAPSHOT_FORMAT_MINOR, SNAPSHOT_MAGIC, VCPU_OVERCOMMIT_RATIO_MAX,
} from "./snapshot.js";
export {
  ADDRESS_CHARS_MAX, BOOTARGS_CHARS_MAX, CLUSTER_NODES_MAX, CLUSTER_VMS_MAX, ID_CHARS_MAX, IMAGE_CHARS_MAX, LABEL_VALUE_CHARS_MAX, LABELS_MAX,
  NODE_VCPUS_MAX, PAGE_BYTES, VM_VCPUS_MAX, VM_DISKS_MAX, DISK_SECTOR_BYTES, DISK_BYTES_MAX, VM_NICS_MAX, NIC_MAC_PATTERN, VM_KVP_KEYS_MAX, KVP_KEY_BYTES_MAX, KVP_VALUE_BYTES_MAX,
} from "./fields.js";
export { ClusterCommandError, ClusterInvariantError, ClusterSnapshotError, ClusterStateError } from "./errors.js";
export {
  BOOT_MODES, DEFAULT_CLUSTER_OPTIONS, MIGRATION_KINDS, NODE_STATES, PLACEMENT_POLICIES, REJECTION_CODES, RESTART_POLICIES, VM_ACTUAL_STATES,
  VM_DESIRED_STATES, VM_PRIORITIES,
} from "./types.js";
export type {
  ActualReport, BootMode, Capacity, ClusterData, ClusterOptions, MigrationKind, MigrationRecord, NodeRecord, NodeState, NodeUsage, PlacementPolicy,
  RejectionCode, RestartPolicy, VmActualState, VmDesiredState, VmPriority, VmRecord, VmSpec, VmDisk, VmNic,
} from "./types.js";
export { planRebalance } from "./rebalance.js";
export type { RebalanceMove, RebalanceOptions } from "./rebalance.js";
export { CONTROLLER_DEFAULTS, LeaderController, PRIORITY_RANK } from "./controller.js";
export type { ClusterReadView, ControllerConfig, DrainBackoff, DrainStep, NodeFailure } from "./controller.js";
export * as sim from "./sim/index.js";
