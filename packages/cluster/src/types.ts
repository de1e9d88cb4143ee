/**
 * The records of the cluster state: plain, immutable data. The state machine replaces a record when it
 * changes (it never mutates one in place), so a record handed out by a query stays valid as a picture
 * of the moment it was read.
 */

/** A member node's lifecycle, set by commands (`setNodeState`), never by a clock. */
export const NODE_STATES = ["active", "draining", "drained", "failed"] as const;
export type NodeState = (typeof NODE_STATES)[number];

/**
 * What the operator wants a VM to be doing. "saved": its whole state written to a saved state on the
 * owner node and the VM turned off (Hyper-V's Save); starting it again restores that state.
 */
export const VM_DESIRED_STATES = ["running", "stopped", "paused", "saved"] as const;
export type VmDesiredState = (typeof VM_DESIRED_STATES)[number];

/** What the owner node last reported a VM to be doing. */
export const VM_ACTUAL_STATES = ["starting", "running", "paused", "stopping", "stopped", "crashed", "saved"] as const;
export type VmActualState = (typeof VM_ACTUAL_STATES)[number];

/** DESIGN "The guest machine": bare (M-mode at the ELF entry) or SBI (S-mode kernel at 0x8020_0000). */
export const BOOT_MODES = ["bare", "sbi"] as const;
export type BootMode = (typeof BOOT_MODES)[number];

/** The order in which the leader restarts VMs after a failure; placement itself ignores it. */
export const VM_PRIORITIES = ["high", "normal", "low"] as const;
export type VmPriority = (typeof VM_PRIORITIES)[number];

/**
 * What a failover does with the VM: "restart" keeps its desired state; "do-not-restart" places it on
 * another node (when one fits) with desired state "stopped".
 */
export const RESTART_POLICIES = ["restart", "do-not-restart"] as const;
export type RestartPolicy = (typeof RESTART_POLICIES)[number];

/** Live: pre-copy while running, then switchover. Quick: pause, copy everything, resume (Hyper-V 1.0). */
export const MIGRATION_KINDS = ["live", "quick"] as const;
export type MigrationKind = (typeof MIGRATION_KINDS)[number];

/**
 * "best-fit": the node that leaves the least free memory after placement (packs nodes, frees whole
 * nodes for maintenance). "spread": the node that leaves the most free memory (balances load).
 * Both break ties by fewest VMs, then by node id.
 */
export const PLACEMENT_POLICIES = ["best-fit", "spread"] as const;
export type PlacementPolicy = (typeof PLACEMENT_POLICIES)[number];

/** The codes of a rejected command: a closed set, so callers can switch on them. */
export const REJECTION_CODES = [
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "NO_CAPACITY",
  "INVALID_ARGUMENT",
  "FAILED_PRECONDITION",
  "STALE_EPOCH",
] as const;
export type RejectionCode = (typeof REJECTION_CODES)[number];

/** Resources of a node offered to guests (pCPUs in `vcpus`), or asked by a VM. */
export interface Capacity {
  readonly memoryBytes: number;
  readonly vcpus: number;
}

export interface NodeRecord {
  readonly id: string;
  /** Where the node's management API (VMMS, gRPC) listens, "host:port". */
  readonly apiAddress: string;
  /** Where the node's migration endpoint listens (a NATS subject root or "host:port"). */
  readonly migrationAddress: string;
  /** What the node offers to guests: memory (never overcommitted) and physical CPUs. */
  readonly capacity: Capacity;
  /** Free-form labels (zone, rack, hardware), keys sorted. */
  readonly labels: Readonly<Record<string, string>>;
  readonly state: NodeState;
  /**
   * The node may run its VMs until this time (proposer clock, ms). Placement and migration only target
   * nodes with `leaseUntilMs > atMs`; a failover away from a node needs `leaseUntilMs <= atMs`.
   */
  readonly leaseUntilMs: number;
  readonly registeredAtMs: number;
}

export interface VmSpec {
  /** A positive multiple of 4 KiB (guest pages). */
  readonly memoryBytes: number;
  readonly vcpus: number;
  /** The guest image reference (a path on cluster storage or an image name). */
  readonly image: string;
  readonly bootMode: BootMode;
  readonly bootargs: string;
  /** No two VMs of one anti-affinity group ever share a node (reservations included). */
  readonly antiAffinityGroup: string | null;
  /** Placement prefers a node that already holds a VM of this group. */
  readonly affinityGroup: string | null;
  readonly priority: VmPriority;
  readonly restartPolicy: RestartPolicy;
  /** Virtual disks on cluster storage, in order (0 to 8): each a positive multiple of 512 bytes, at most 64 GiB. */
  readonly disks: readonly VmDisk[];
  /** Whether the guest is offered the integration services (heartbeat, shutdown, time sync, KVP). */
  readonly integration: boolean;
  /** Synthetic NICs, in order (0 to 8), each on the virtual switch by its MAC (unique in the cluster). */
  readonly nics: readonly VmNic[];
}

/** One synthetic NIC of a VM: its MAC, "02:48:" and four more bytes (the VM keeps it wherever it runs). */
export interface VmNic {
  readonly mac: string;
}

/** One virtual disk of a VM. */
export interface VmDisk {
  readonly sizeBytes: number;
}

/** The last state the owner reported, with the epoch it reported at. */
export interface ActualReport {
  readonly state: VmActualState;
  /** Lower than the VM's epoch when the current owner has not reported yet. */
  readonly epoch: number;
  readonly atMs: number;
}

export interface VmRecord {
  readonly id: string;
  readonly spec: VmSpec;
  readonly desiredState: VmDesiredState;
  /**
   * The node that may run the VM, at `epoch`; `null` while the VM is pending (a failover found no
   * node, `pendingReason` says why).
   */
  readonly owner: string | null;
  /** A positive integer: 1 at creation, + 1 on every ownership change (transfer, failover). */
  readonly epoch: number;
  readonly actual: ActualReport | null;
  /** Why the VM has no owner; `null` exactly when `owner` is not. */
  readonly pendingReason: string | null;
  readonly createdAtMs: number;
  /**
   * The saved state (a name, kept on the owner node) the owner writes while the desired state is
   * "saved", and loads instead of booting the next time it starts the VM. Cleared when the VM is
   * reported running at its epoch, when it is stopped, and when its owner changes by failover (the
   * saved state stays on the node that wrote it).
   */
  readonly savedState: string | null;
  /** Values the host set for the guest to read through the KVP integration service (any owner sends them). */
  readonly hostKvp: Readonly<Record<string, string>>;
}

/** A migration between `beginMigration` and its `transfer` or `abortMigration`. */
export interface MigrationRecord {
  readonly vm: string;
  /** The owner when the migration began (still the owner while it is in flight). */
  readonly from: string;
  /** Holds a reservation of the VM's memory and vCPUs until the migration ends. */
  readonly to: string;
  /** The VM's epoch when the migration began (still its epoch while it is in flight). */
  readonly epoch: number;
  readonly kind: MigrationKind;
  readonly startedAtMs: number;
  /** The log index of the `beginMigration` entry: tells one attempt from a later one at the same epoch. */
  readonly migrationId: number;
}

/**
 * Parameters of the state machine's decisions. They must be identical on every member (they decide
 * placement and lease checks); a snapshot records them and a member configured otherwise refuses it.
 */
export interface ClusterOptions {
  /** Committed vCPUs per node ≤ floor(pCPUs × ratio). Default 4 (4:1). Memory is never overcommitted. */
  readonly vcpuOvercommitRatio: number;
  /** Placement policy of `createVm` and `failover` without an explicit node. Default "best-fit". */
  readonly placementPolicy: PlacementPolicy;
  /** A lease (registerNode, renewLease) may end at most this long after the command's `atMs`. Default 60 s. */
  readonly leaseMsMax: number;
}

export const DEFAULT_CLUSTER_OPTIONS: ClusterOptions = Object.freeze({
  vcpuOvercommitRatio: 4,
  placementPolicy: "best-fit",
  leaseMsMax: 60_000,
});

/** The whole state as plain data: records sorted by id (migrations by VM id). */
export interface ClusterData {
  readonly appliedIndex: number;
  readonly options: ClusterOptions;
  readonly nodes: readonly NodeRecord[];
  readonly vms: readonly VmRecord[];
  readonly migrations: readonly MigrationRecord[];
}

/** Committed resources on one node: owned VMs plus reservations of migrations coming in. */
export interface NodeUsage {
  readonly memoryBytes: number;
  readonly vcpus: number;
  /** VMs the node owns. */
  readonly vms: number;
  /** Migrations in flight towards the node (each holds a reservation). */
  readonly incoming: number;
  /** Anti-affinity group → VMs of the group owned or reserved on the node (entries > 0 only). */
  readonly antiAffinity: ReadonlyMap<string, number>;
  /** Affinity group → VMs of the group owned or reserved on the node (entries > 0 only). */
  readonly affinity: ReadonlyMap<string, number>;
}
