/**
 * `ClusterState`: the replicated cluster state machine, the one true record of the cluster — nodes,
 * VMs with their owner and epoch, migrations in flight — applied on every member of the Raft group.
 *
 * Determinism. Every member applies the same committed entries in the same order and ends in the same
 * state with the same results: the machine reads no clock (time comes in the command's `atMs`), draws
 * no random number, and never lets a result depend on the insertion order of a map (placement's order
 * is total; listings and snapshots sort by id). A command that is malformed or not allowed in the
 * current state is a rejection result `{ ok: false, code, message }`, decided from the state and the
 * command alone, and leaves the state unchanged: every check runs before the first change.
 *
 * Ownership (DESIGN "Ownership, epochs and the no-split-brain rule"). A VM has at most one owner at an
 * epoch. A node runs a VM only while it owns it at the current epoch and holds a live lease. The owner
 * changes only by `transfer` (the commit point of a migration) and `failover` (after the owner's lease
 * ran out), each raising the epoch by one; both name the epoch they expect and are refused with
 * STALE_EPOCH otherwise, so of two competing changes at one epoch at most one commits.
 *
 * Wiring into Raft: for each committed entry in index order, `apply(entry.index, entry.data)` for a
 * normal entry with data, `skip(entry.index)` for the leader's empty entries and membership changes;
 * `snapshot()` / `restore()` for compaction.
 */
import type { CommandType, DecodedCommand } from "./commands.js";
import { decodeCommand } from "./commands.js";
import { ClusterCommandError, ClusterInvariantError, ClusterSnapshotError, ClusterStateError, invariant } from "./errors.js";
import { CLUSTER_NODES_MAX, CLUSTER_VMS_MAX, VM_KVP_KEYS_MAX } from "./fields.js";
import { checkInvariants } from "./invariants.js";
import type { PlacementConfig, PlacementNode } from "./placement.js";
import { checkNode, freeMemoryBytes, freeVcpus, place, requestFor, UsageLedger, vcpuLimit } from "./placement.js";
import { decodeSnapshot, encodeSnapshot, parseOptions } from "./snapshot.js";
import type {
  ClusterData, ClusterOptions, MigrationRecord, NodeRecord, NodeState, NodeUsage, RejectionCode, VmActualState, VmDesiredState, VmRecord,
  VmSpec,
} from "./types.js";
import { DEFAULT_CLUSTER_OPTIONS } from "./types.js";

/** How many ids a rejection message lists before "and N more". */
const MESSAGE_IDS_MAX = 8;

/** The node lifecycle: the states each state may move to. */
export const NODE_TRANSITIONS: Readonly<Record<NodeState, readonly NodeState[]>> = Object.freeze({
  active: ["draining", "failed"],
  draining: ["active", "drained", "failed"],
  drained: ["active", "failed"],
  failed: ["active", "drained"],
});

/** What a successful command did. */
export type ClusterSuccess =
  | { readonly ok: true; readonly type: "registerNode"; readonly node: string; readonly created: boolean; readonly leaseUntilMs: number }
  | { readonly ok: true; readonly type: "renewLease"; readonly node: string; readonly leaseUntilMs: number }
  | { readonly ok: true; readonly type: "setNodeState"; readonly node: string; readonly state: NodeState; readonly previous: NodeState }
  | { readonly ok: true; readonly type: "removeNode"; readonly node: string }
  | { readonly ok: true; readonly type: "createVm"; readonly vm: string; readonly owner: string; readonly epoch: number }
  | { readonly ok: true; readonly type: "setDesiredState"; readonly vm: string; readonly desiredState: VmDesiredState; readonly previous: VmDesiredState }
  | { readonly ok: true; readonly type: "reportActual"; readonly vm: string; readonly actual: VmActualState; readonly epoch: number }
  | {
    readonly ok: true; readonly type: "beginMigration"; readonly vm: string; readonly from: string; readonly to: string; readonly epoch: number;
    readonly migrationId: number;
  }
  | { readonly ok: true; readonly type: "transfer"; readonly vm: string; readonly owner: string; readonly epoch: number }
  | { readonly ok: true; readonly type: "abortMigration"; readonly vm: string; readonly owner: string; readonly epoch: number; readonly releasedOn: string }
  | {
    readonly ok: true; readonly type: "failover"; readonly vm: string; readonly owner: string | null; readonly epoch: number;
    readonly desiredState: VmDesiredState; readonly pendingReason: string | null;
  }
  | { readonly ok: true; readonly type: "deleteVm"; readonly vm: string; readonly owner: string | null }
  | { readonly ok: true; readonly type: "setVmKvp"; readonly vm: string; readonly key: string; readonly value: string | null };

/** A refused command: nothing changed. `command` is `null` when the bytes did not decode. */
export interface ClusterRejection {
  readonly ok: false;
  readonly command: CommandType | null;
  readonly code: RejectionCode;
  /** Names the field or the state at fault. */
  readonly message: string;
}

export type ClusterResult = ClusterSuccess | ClusterRejection;

/** A node with its committed usage, as `listNodes` returns it. */
export interface NodeView extends NodeRecord {
  readonly usage: { readonly memoryBytes: number; readonly vcpus: number; readonly vms: number; readonly incoming: number };
  /** floor(pCPUs × vcpuOvercommitRatio). */
  readonly vcpusLimit: number;
  readonly freeMemoryBytes: number;
  readonly freeVcpus: number;
}

export interface NodeConsolidation {
  readonly node: string;
  readonly state: NodeState;
  /** VMs owned. */
  readonly vms: number;
  /** Migrations in flight towards the node. */
  readonly incoming: number;
  /** Committed vCPUs (owned + reserved) and physical CPUs. */
  readonly vcpusCommitted: number;
  readonly pcpus: number;
  /** vcpusCommitted / pcpus. */
  readonly vcpusPerPcpu: number;
  readonly memoryCommittedBytes: number;
  readonly memoryCapacityBytes: number;
  /** memoryCommittedBytes / memoryCapacityBytes (≤ 1: memory is never overcommitted). */
  readonly memoryCommittedRatio: number;
}

/** Consolidation figures for metrics and the CLI. Totals are over every registered node; ratios are 0 when the denominator is. */
export interface ConsolidationFigures {
  readonly nodes: readonly NodeConsolidation[];
  readonly nodeCount: number;
  readonly vmCount: number;
  /** VMs with an owner. */
  readonly placedVmCount: number;
  /** VMs without an owner (a failover found no room). */
  readonly pendingVmCount: number;
  readonly migrationsInFlight: number;
  /** placedVmCount / nodeCount. */
  readonly vmsPerNode: number;
  /** Σ committed vCPUs / Σ pCPUs. */
  readonly vcpusPerPcpu: number;
  /** Σ committed memory / Σ memory capacity. */
  readonly memoryCommittedRatio: number;
}

export interface ClusterStateOptions extends Partial<ClusterOptions> {
  /**
   * Run the full invariant checker after every applied command and throw a `ClusterInvariantError` on
   * a violation. O(state) per command: for tests and the simulator. Default false.
   */
  readonly checkInvariantsOnApply?: boolean;
}

function byId(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function listIds(ids: readonly string[]): string {
  const shown = ids.slice(0, MESSAGE_IDS_MAX).join(", ");
  return ids.length > MESSAGE_IDS_MAX ? `${shown} and ${ids.length - MESSAGE_IDS_MAX} more` : shown;
}

function reject(command: CommandType | null, code: RejectionCode, message: string): ClusterRejection {
  return { ok: false, command, code, message };
}

/** A copy of `u` without one VM of `spec` counted in `role`. */
function usageWithout(u: NodeUsage, spec: VmSpec, role: "owned" | "incoming"): NodeUsage {
  const minus = (map: ReadonlyMap<string, number>, key: string | null): ReadonlyMap<string, number> => {
    if (key === null) return map;
    const copy = new Map(map);
    const next = (copy.get(key) ?? 0) - 1;
    invariant(next >= 0, () => `group ${key} count would go negative`);
    if (next === 0) copy.delete(key);
    else copy.set(key, next);
    return copy;
  };
  return {
    memoryBytes: u.memoryBytes - spec.memoryBytes,
    vcpus: u.vcpus - spec.vcpus,
    vms: u.vms - (role === "owned" ? 1 : 0),
    incoming: u.incoming - (role === "incoming" ? 1 : 0),
    antiAffinity: minus(u.antiAffinity, spec.antiAffinityGroup),
    affinity: minus(u.affinity, spec.affinityGroup),
  };
}

/**
 * The cluster state machine. Apply every committed entry exactly once, in index order (after a
 * `restore`, continue from the snapshot's index + 1). Queries read this member's applied state:
 * linearizable only behind a Raft read barrier.
 */
export class ClusterState {
  private nodes = new Map<string, NodeRecord>();
  private vms = new Map<string, VmRecord>();
  /** The VM each NIC MAC belongs to (a MAC is unique in the cluster: the switch is keyed by it). */
  private macs = new Map<string, string>();
  /** By VM id. */
  private migrations = new Map<string, MigrationRecord>();
  private ledger = new UsageLedger();
  private applied = 0;
  private readonly config: ClusterOptions;
  private readonly checkOnApply: boolean;

  /** Throws `ClusterStateError` on invalid options (see `ClusterOptions` for the defaults). */
  constructor(options: ClusterStateOptions = {}) {
    try {
      this.config = parseOptions({
        vcpuOvercommitRatio: options.vcpuOvercommitRatio ?? DEFAULT_CLUSTER_OPTIONS.vcpuOvercommitRatio,
        placementPolicy: options.placementPolicy ?? DEFAULT_CLUSTER_OPTIONS.placementPolicy,
        leaseMsMax: options.leaseMsMax ?? DEFAULT_CLUSTER_OPTIONS.leaseMsMax,
      }, "options");
    } catch (cause) {
      throw new ClusterStateError(cause instanceof Error ? cause.message : String(cause), { cause });
    }
    this.checkOnApply = options.checkInvariantsOnApply ?? false;
  }

  /** The index of the last entry applied or skipped (or covered by the restored snapshot). */
  get appliedIndex(): number {
    return this.applied;
  }

  get options(): ClusterOptions {
    return this.config;
  }

  private advance(index: number): void {
    if (index !== this.applied + 1) throw new ClusterStateError(`entry ${index} applied after ${this.applied}: entries must be applied in order, once`);
    this.applied = index;
  }

  /**
   * Advances over an entry that carries no command (the leader's empty entry, a membership change).
   * Its index must be `appliedIndex + 1` (a `ClusterStateError` otherwise).
   */
  skip(index: number): void {
    this.advance(index);
  }

  /**
   * Applies the command of the entry at `index`, which must be `appliedIndex + 1` (a
   * `ClusterStateError` otherwise: a bug in the caller, not in the entry). Bytes that do not decode
   * give an INVALID_ARGUMENT rejection; a command not allowed in the current state gives a rejection
   * with its code; neither changes the state (the index still advances). Throws only
   * `ClusterStateError` (caller misuse) or `ClusterInvariantError` (an impossible state: stop the member).
   */
  apply(index: number, command: Uint8Array): ClusterResult {
    this.advance(index);
    let decoded: DecodedCommand;
    try {
      decoded = decodeCommand(command);
    } catch (cause) {
      if (!(cause instanceof ClusterCommandError)) throw cause;
      return reject(null, "INVALID_ARGUMENT", cause.message);
    }
    const result = this.execute(index, decoded);
    if (this.checkOnApply) {
      const violations = checkInvariants(this.toData(), this.usageByNode());
      if (violations.length > 0) {
        throw new ClusterInvariantError(`after ${decoded.type} at index ${index}: ${violations.join("; ")}`);
      }
    }
    return result;
  }

  private execute(index: number, c: DecodedCommand): ClusterResult {
    switch (c.type) {
      case "registerNode": return this.registerNode(c);
      case "renewLease": return this.renewLease(c);
      case "setNodeState": return this.setNodeState(c);
      case "removeNode": return this.removeNode(c);
      case "createVm": return this.createVm(c);
      case "setDesiredState": return this.setDesiredState(c);
      case "setVmKvp": return this.setVmKvp(c);
      case "reportActual": return this.reportActual(c);
      case "beginMigration": return this.beginMigration(index, c);
      case "transfer": return this.transfer(c);
      case "abortMigration": return this.abortMigration(c);
      case "failover": return this.failover(c);
      case "deleteVm": return this.deleteVm(c);
    }
  }

  // ---- checks shared by the commands ----

  private placementConfig(): PlacementConfig {
    return { policy: this.config.placementPolicy, vcpuOvercommitRatio: this.config.vcpuOvercommitRatio };
  }

  private placementNode(node: NodeRecord, usage: NodeUsage = this.ledger.get(node.id)): PlacementNode {
    return { id: node.id, state: node.state, leaseUntilMs: node.leaseUntilMs, capacity: node.capacity, usage };
  }

  /** Every node as placement sees it, with `vm`'s own contributions taken out (for a failover). */
  private placementNodes(without: VmRecord | null): PlacementNode[] {
    const flight = without === null ? undefined : this.migrations.get(without.id);
    const out: PlacementNode[] = [];
    for (const node of this.nodes.values()) {
      let usage = this.ledger.get(node.id);
      if (without !== null && without.owner === node.id) usage = usageWithout(usage, without.spec, "owned");
      if (without !== null && flight !== undefined && flight.to === node.id) usage = usageWithout(usage, without.spec, "incoming");
      out.push(this.placementNode(node, usage));
    }
    return out;
  }

  /** Can a VM of `spec` go on the named node at `atMs`? `null` when yes, else the rejection. */
  private checkTarget(type: CommandType, vm: string, spec: VmSpec, target: PlacementNode | undefined, nodeId: string, atMs: number): ClusterRejection | null {
    if (target === undefined) return reject(type, "NOT_FOUND", `node ${nodeId} is not registered`);
    const mismatch = checkNode(target, requestFor(spec, atMs), this.placementConfig());
    if (mismatch === null) return null;
    const code: RejectionCode = mismatch.kind === "memory" || mismatch.kind === "vcpus" ? "NO_CAPACITY" : "FAILED_PRECONDITION";
    return reject(type, code, `vm ${vm} cannot go on ${nodeId}: ${mismatch.message}`);
  }

  private leaseTooLong(type: CommandType, field: string, untilMs: number, atMs: number): ClusterRejection | null {
    if (untilMs <= atMs + this.config.leaseMsMax) return null;
    return reject(type, "INVALID_ARGUMENT", `${type}.${field} ${untilMs} ms is more than leaseMsMax ${this.config.leaseMsMax} ms after atMs ${atMs}`);
  }

  private ownedBy(node: string): string[] {
    const ids: string[] = [];
    for (const vm of this.vms.values()) if (vm.owner === node) ids.push(vm.id);
    return ids.sort(byId);
  }

  private migrationsTouching(node: string): string[] {
    const ids: string[] = [];
    for (const m of this.migrations.values()) if (m.from === node || m.to === node) ids.push(m.vm);
    return ids.sort(byId);
  }

  private putVm(vm: VmRecord): void {
    this.vms.set(vm.id, Object.freeze(vm));
  }

  private putNode(node: NodeRecord): void {
    this.nodes.set(node.id, Object.freeze(node));
  }

  // ---- nodes ----

  private registerNode(c: Extract<DecodedCommand, { type: "registerNode" }>): ClusterResult {
    const tooLong = this.leaseTooLong(c.type, "leaseUntilMs", c.leaseUntilMs, c.atMs);
    if (tooLong !== null) return tooLong;
    const existing = this.nodes.get(c.node);
    if (existing === undefined) {
      if (this.nodes.size >= CLUSTER_NODES_MAX) return reject(c.type, "NO_CAPACITY", `the cluster already holds ${this.nodes.size} nodes, the most it may hold`);
      this.putNode({
        id: c.node, apiAddress: c.apiAddress, migrationAddress: c.migrationAddress, capacity: c.capacity, labels: c.labels,
        state: "active", leaseUntilMs: c.leaseUntilMs, registeredAtMs: c.atMs,
      });
      this.ledger.addNode(c.node);
      return { ok: true, type: c.type, node: c.node, created: true, leaseUntilMs: c.leaseUntilMs };
    }
    const usage = this.ledger.get(c.node);
    if (usage.memoryBytes > c.capacity.memoryBytes) {
      return reject(c.type, "FAILED_PRECONDITION", `node ${c.node} has ${usage.memoryBytes} bytes committed, more than the new capacity.memoryBytes ${c.capacity.memoryBytes}`);
    }
    const limit = vcpuLimit(c.capacity.vcpus, this.config.vcpuOvercommitRatio);
    if (usage.vcpus > limit) {
      return reject(c.type, "FAILED_PRECONDITION", `node ${c.node} has ${usage.vcpus} vCPUs committed, more than the new capacity.vcpus allows (${limit} at ${this.config.vcpuOvercommitRatio}:1)`);
    }
    const leaseUntilMs = Math.max(existing.leaseUntilMs, c.leaseUntilMs);
    this.putNode({ ...existing, apiAddress: c.apiAddress, migrationAddress: c.migrationAddress, capacity: c.capacity, labels: c.labels, leaseUntilMs });
    return { ok: true, type: c.type, node: c.node, created: false, leaseUntilMs };
  }

  private renewLease(c: Extract<DecodedCommand, { type: "renewLease" }>): ClusterResult {
    const node = this.nodes.get(c.node);
    if (node === undefined) return reject(c.type, "NOT_FOUND", `node ${c.node} is not registered`);
    const tooLong = this.leaseTooLong(c.type, "untilMs", c.untilMs, c.atMs);
    if (tooLong !== null) return tooLong;
    const leaseUntilMs = Math.max(node.leaseUntilMs, c.untilMs);
    if (leaseUntilMs !== node.leaseUntilMs) this.putNode({ ...node, leaseUntilMs });
    return { ok: true, type: c.type, node: c.node, leaseUntilMs };
  }

  private setNodeState(c: Extract<DecodedCommand, { type: "setNodeState" }>): ClusterResult {
    const node = this.nodes.get(c.node);
    if (node === undefined) return reject(c.type, "NOT_FOUND", `node ${c.node} is not registered`);
    const previous = node.state;
    if (previous === c.state) return { ok: true, type: c.type, node: c.node, state: c.state, previous };
    const allowed = NODE_TRANSITIONS[previous];
    if (!allowed.includes(c.state)) {
      return reject(c.type, "FAILED_PRECONDITION", `node ${c.node} cannot go from ${previous} to ${c.state} (allowed: ${allowed.join(", ")})`);
    }
    if (c.state === "drained") {
      const owned = this.ownedBy(c.node);
      if (owned.length > 0) return reject(c.type, "FAILED_PRECONDITION", `node ${c.node} still owns ${owned.length} VMs (${listIds(owned)}): move them away before it is drained`);
      const flights = this.migrationsTouching(c.node);
      if (flights.length > 0) return reject(c.type, "FAILED_PRECONDITION", `node ${c.node} takes part in migrations in flight of ${listIds(flights)}`);
    }
    if (previous === "failed" && c.state === "active" && node.leaseUntilMs <= c.atMs) {
      return reject(c.type, "FAILED_PRECONDITION", `node ${c.node}'s lease ended at ${node.leaseUntilMs} ms (atMs ${c.atMs}): a failed node becomes active only with a live lease`);
    }
    this.putNode({ ...node, state: c.state });
    return { ok: true, type: c.type, node: c.node, state: c.state, previous };
  }

  private removeNode(c: Extract<DecodedCommand, { type: "removeNode" }>): ClusterResult {
    if (!this.nodes.has(c.node)) return reject(c.type, "NOT_FOUND", `node ${c.node} is not registered`);
    const owned = this.ownedBy(c.node);
    if (owned.length > 0) return reject(c.type, "FAILED_PRECONDITION", `node ${c.node} still owns ${owned.length} VMs (${listIds(owned)})`);
    const flights = this.migrationsTouching(c.node);
    if (flights.length > 0) return reject(c.type, "FAILED_PRECONDITION", `node ${c.node} takes part in migrations in flight of ${listIds(flights)}`);
    this.ledger.removeNode(c.node);
    this.nodes.delete(c.node);
    return { ok: true, type: c.type, node: c.node };
  }

  // ---- VMs ----

  private createVm(c: Extract<DecodedCommand, { type: "createVm" }>): ClusterResult {
    const existing = this.vms.get(c.vm);
    if (existing !== undefined) {
      return reject(c.type, "ALREADY_EXISTS", `vm ${c.vm} already exists (owner ${existing.owner ?? "none"}, epoch ${existing.epoch})`);
    }
    if (this.vms.size >= CLUSTER_VMS_MAX) return reject(c.type, "NO_CAPACITY", `the cluster already holds ${this.vms.size} VMs, the most it may hold`);
    let owner: string;
    if (c.node !== null) {
      const target = this.nodes.get(c.node);
      const refused = this.checkTarget(c.type, c.vm, c.spec, target === undefined ? undefined : this.placementNode(target), c.node, c.atMs);
      if (refused !== null) return refused;
      owner = c.node;
    } else {
      const decision = place(this.placementNodes(null), requestFor(c.spec, c.atMs), this.placementConfig());
      if (!decision.ok) return reject(c.type, "NO_CAPACITY", `vm ${c.vm} cannot be placed: ${decision.reason}`);
      owner = decision.node;
    }
    if (c.desiredState === "saved") return reject(c.type, "INVALID_ARGUMENT", `createVm.desiredState cannot be saved: a new VM has nothing to save`);
    for (const nic of c.spec.nics) {
      const holder = this.macs.get(nic.mac);
      if (holder !== undefined) return reject(c.type, "ALREADY_EXISTS", `createVm.spec.nics: MAC ${nic.mac} belongs to vm ${holder}`);
    }
    for (const nic of c.spec.nics) this.macs.set(nic.mac, c.vm);
    this.putVm({ id: c.vm, spec: c.spec, desiredState: c.desiredState, owner, epoch: 1, actual: null, pendingReason: null, createdAtMs: c.atMs, savedState: null, hostKvp: Object.freeze({}) });
    this.ledger.add(owner, c.spec, "owned");
    return { ok: true, type: c.type, vm: c.vm, owner, epoch: 1 };
  }

  private setDesiredState(c: Extract<DecodedCommand, { type: "setDesiredState" }>): ClusterResult {
    const vm = this.vms.get(c.vm);
    if (vm === undefined) return reject(c.type, "NOT_FOUND", `vm ${c.vm} does not exist`);
    const previous = vm.desiredState;
    let savedState = vm.savedState;
    switch (c.desiredState) {
      case "saved":
        if (c.savedState === null) return reject(c.type, "INVALID_ARGUMENT", `setDesiredState.savedState must name the saved state to write`);
        if (previous !== "running" && previous !== "paused" && !(previous === "saved" && vm.savedState === c.savedState)) {
          return reject(c.type, "FAILED_PRECONDITION", `vm ${c.vm} is ${previous}: only a running or paused VM can be saved`);
        }
        savedState = c.savedState;
        break;
      case "running":
        if (c.savedState !== null) {
          if (previous === "running" || previous === "paused") {
            return reject(c.type, "FAILED_PRECONDITION", `vm ${c.vm} is ${previous}: stop or save it before restoring a saved state`);
          }
          savedState = c.savedState;
        } else if (previous !== "saved" && previous !== "running") savedState = null;
        break;
      case "stopped":
        savedState = null;
        break;
      case "paused":
        if (previous === "saved" || previous === "stopped") return reject(c.type, "FAILED_PRECONDITION", `vm ${c.vm} is ${previous}: only a running VM can be paused`);
        break;
    }
    if (previous !== c.desiredState || savedState !== vm.savedState) this.putVm({ ...vm, desiredState: c.desiredState, savedState });
    return { ok: true, type: c.type, vm: c.vm, desiredState: c.desiredState, previous };
  }

  private reportActual(c: Extract<DecodedCommand, { type: "reportActual" }>): ClusterResult {
    const vm = this.vms.get(c.vm);
    if (vm === undefined) return reject(c.type, "NOT_FOUND", `vm ${c.vm} does not exist`);
    if (vm.owner !== c.node || vm.epoch !== c.epoch) {
      return reject(c.type, "STALE_EPOCH", `report of vm ${c.vm} from ${c.node} at epoch ${c.epoch} is stale: the owner is ${vm.owner ?? "none"} at epoch ${vm.epoch}`);
    }
    // A VM does not start while it moves: its owner may lose it to the destination at any moment (a
    // stopped VM's move is only a transfer of ownership, which nothing on the owner waits for).
    const flight = this.migrations.get(c.vm);
    if (c.actual === "starting" && flight !== undefined) {
      return reject(c.type, "FAILED_PRECONDITION", `vm ${c.vm} cannot start on ${c.node}: migration ${flight.migrationId} to ${flight.to} is in flight`);
    }
    // a VM running at its epoch has loaded its saved state (or never needed it)
    const savedState = c.actual === "running" && vm.desiredState === "running" ? null : vm.savedState;
    this.putVm({ ...vm, actual: Object.freeze({ state: c.actual, epoch: c.epoch, atMs: c.atMs }), savedState });
    return { ok: true, type: c.type, vm: c.vm, actual: c.actual, epoch: c.epoch };
  }

  private setVmKvp(c: Extract<DecodedCommand, { type: "setVmKvp" }>): ClusterResult {
    const vm = this.vms.get(c.vm);
    if (vm === undefined) return reject(c.type, "NOT_FOUND", `vm ${c.vm} does not exist`);
    const next: Record<string, string> = { ...vm.hostKvp };
    if (c.value === null) delete next[c.key];
    else {
      if (!(c.key in next) && Object.keys(next).length >= VM_KVP_KEYS_MAX) {
        return reject(c.type, "FAILED_PRECONDITION", `vm ${c.vm} already has ${VM_KVP_KEYS_MAX} host KVP values, the most it may have: remove one first`);
      }
      next[c.key] = c.value;
    }
    const sorted = Object.freeze(Object.fromEntries(Object.entries(next).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
    this.putVm({ ...vm, hostKvp: sorted });
    return { ok: true, type: c.type, vm: c.vm, key: c.key, value: c.value };
  }

  private deleteVm(c: Extract<DecodedCommand, { type: "deleteVm" }>): ClusterResult {
    const vm = this.vms.get(c.vm);
    if (vm === undefined) return reject(c.type, "NOT_FOUND", `vm ${c.vm} does not exist`);
    const flight = this.migrations.get(c.vm);
    if (flight !== undefined) {
      return reject(c.type, "FAILED_PRECONDITION", `vm ${c.vm} has a migration in flight from ${flight.from} to ${flight.to} (id ${flight.migrationId}): abort it first`);
    }
    if (vm.owner !== null) this.ledger.remove(vm.owner, vm.spec, "owned");
    this.vms.delete(c.vm);
    for (const nic of vm.spec.nics) this.macs.delete(nic.mac);
    return { ok: true, type: c.type, vm: c.vm, owner: vm.owner };
  }

  // ---- migrations and failover ----

  private beginMigration(index: number, c: Extract<DecodedCommand, { type: "beginMigration" }>): ClusterResult {
    const vm = this.vms.get(c.vm);
    if (vm === undefined) return reject(c.type, "NOT_FOUND", `vm ${c.vm} does not exist`);
    if (c.from === c.to) return reject(c.type, "INVALID_ARGUMENT", `beginMigration.to must differ from beginMigration.from (both ${c.from})`);
    if (vm.owner === null) return reject(c.type, "FAILED_PRECONDITION", `vm ${c.vm} has no owner (pending: ${vm.pendingReason ?? ""})`);
    if (vm.owner !== c.from) return reject(c.type, "FAILED_PRECONDITION", `vm ${c.vm} is owned by ${vm.owner}, not ${c.from}`);
    if (vm.desiredState === "saved" || vm.savedState !== null) {
      return reject(c.type, "FAILED_PRECONDITION", `vm ${c.vm} has a saved state on ${vm.owner}: restore it (or stop the VM) before moving it`);
    }
    const flight = this.migrations.get(c.vm);
    if (flight !== undefined) {
      return reject(c.type, "FAILED_PRECONDITION", `vm ${c.vm} already has a migration in flight from ${flight.from} to ${flight.to} at epoch ${flight.epoch} (id ${flight.migrationId})`);
    }
    const target = this.nodes.get(c.to);
    const refused = this.checkTarget(c.type, c.vm, vm.spec, target === undefined ? undefined : this.placementNode(target), c.to, c.atMs);
    if (refused !== null) return refused;
    const record: MigrationRecord = { vm: c.vm, from: c.from, to: c.to, epoch: vm.epoch, kind: c.kind, startedAtMs: c.atMs, migrationId: index };
    this.migrations.set(c.vm, Object.freeze(record));
    this.ledger.add(c.to, vm.spec, "incoming");
    return { ok: true, type: c.type, vm: c.vm, from: c.from, to: c.to, epoch: vm.epoch, migrationId: index };
  }

  private transfer(c: Extract<DecodedCommand, { type: "transfer" }>): ClusterResult {
    const vm = this.vms.get(c.vm);
    if (vm === undefined) return reject(c.type, "NOT_FOUND", `vm ${c.vm} does not exist`);
    if (vm.owner !== c.from || vm.epoch !== c.epoch) {
      return reject(c.type, "STALE_EPOCH", `transfer of vm ${c.vm} from ${c.from} at epoch ${c.epoch} is stale: the owner is ${vm.owner ?? "none"} at epoch ${vm.epoch}`);
    }
    const flight = this.migrations.get(c.vm);
    if (flight === undefined) return reject(c.type, "FAILED_PRECONDITION", `vm ${c.vm} has no migration in flight`);
    invariant(flight.from === vm.owner && flight.epoch === vm.epoch, () => `migration ${flight.migrationId} of vm ${c.vm} does not match its owner and epoch`);
    if (c.migrationId !== null && c.migrationId !== flight.migrationId) {
      return reject(c.type, "STALE_EPOCH", `transfer of vm ${c.vm} names migration ${c.migrationId}, but migration ${flight.migrationId} is in flight`);
    }
    if (flight.to !== c.to) return reject(c.type, "FAILED_PRECONDITION", `the migration in flight of vm ${c.vm} goes to ${flight.to}, not ${c.to}`);
    const dest = this.nodes.get(c.to);
    invariant(dest !== undefined, () => `destination ${c.to} of a migration in flight is not registered`);
    if (dest.state === "failed") return reject(c.type, "FAILED_PRECONDITION", `destination ${c.to} is failed`);
    if (dest.leaseUntilMs <= c.atMs) {
      return reject(c.type, "FAILED_PRECONDITION", `destination ${c.to}'s lease ended at ${dest.leaseUntilMs} ms (atMs ${c.atMs})`);
    }
    this.ledger.remove(c.from, vm.spec, "owned");
    this.ledger.remove(c.to, vm.spec, "incoming");
    this.ledger.add(c.to, vm.spec, "owned");
    this.migrations.delete(c.vm);
    const epoch = vm.epoch + 1;
    this.putVm({ ...vm, owner: c.to, epoch });
    return { ok: true, type: c.type, vm: c.vm, owner: c.to, epoch };
  }

  private abortMigration(c: Extract<DecodedCommand, { type: "abortMigration" }>): ClusterResult {
    const vm = this.vms.get(c.vm);
    if (vm === undefined) return reject(c.type, "NOT_FOUND", `vm ${c.vm} does not exist`);
    const flight = this.migrations.get(c.vm);
    if (flight === undefined) return reject(c.type, "FAILED_PRECONDITION", `vm ${c.vm} has no migration in flight`);
    if (c.epoch !== vm.epoch) {
      return reject(c.type, "STALE_EPOCH", `abort of vm ${c.vm}'s migration at epoch ${c.epoch} is stale: the VM is at epoch ${vm.epoch}`);
    }
    if (c.migrationId !== null && c.migrationId !== flight.migrationId) {
      return reject(c.type, "STALE_EPOCH", `abort of vm ${c.vm}'s migration names migration ${c.migrationId}, but migration ${flight.migrationId} is in flight`);
    }
    invariant(vm.owner !== null && flight.from === vm.owner, () => `migration ${flight.migrationId} of vm ${c.vm} does not start from its owner`);
    this.ledger.remove(flight.to, vm.spec, "incoming");
    this.migrations.delete(c.vm);
    return { ok: true, type: c.type, vm: c.vm, owner: vm.owner, epoch: vm.epoch, releasedOn: flight.to };
  }

  private failover(c: Extract<DecodedCommand, { type: "failover" }>): ClusterResult {
    const vm = this.vms.get(c.vm);
    if (vm === undefined) return reject(c.type, "NOT_FOUND", `vm ${c.vm} does not exist`);
    if (c.epoch !== vm.epoch) {
      return reject(c.type, "STALE_EPOCH", `failover of vm ${c.vm} at epoch ${c.epoch} is stale: the owner is ${vm.owner ?? "none"} at epoch ${vm.epoch}`);
    }
    if (vm.owner !== null) {
      const owner = this.nodes.get(vm.owner);
      invariant(owner !== undefined, () => `owner ${vm.owner} of vm ${vm.id} is not registered`);
      if (owner.leaseUntilMs > c.atMs) {
        return reject(c.type, "FAILED_PRECONDITION", `owner ${owner.id} of vm ${c.vm} holds a lease until ${owner.leaseUntilMs} ms (atMs ${c.atMs}): a VM leaves a node only after its lease ran out`);
      }
    }
    const views = this.placementNodes(vm);
    let newOwner: string | null;
    let pendingReason: string | null = null;
    if (c.to !== null) {
      const refused = this.checkTarget(c.type, c.vm, vm.spec, views.find((n) => n.id === c.to), c.to, c.atMs);
      if (refused !== null) return refused;
      newOwner = c.to;
    } else {
      const decision = place(views, requestFor(vm.spec, c.atMs), this.placementConfig());
      if (decision.ok) newOwner = decision.node;
      else if (vm.owner === null) return reject(c.type, "NO_CAPACITY", `vm ${c.vm} cannot be placed: ${decision.reason}`);
      else {
        newOwner = null;
        pendingReason = decision.reason;
      }
    }
    const flight = this.migrations.get(c.vm);
    if (flight !== undefined) {
      this.ledger.remove(flight.to, vm.spec, "incoming");
      this.migrations.delete(c.vm);
    }
    if (vm.owner !== null) this.ledger.remove(vm.owner, vm.spec, "owned");
    if (newOwner !== null) this.ledger.add(newOwner, vm.spec, "owned");
    // A saved state stays on the node that wrote it: a saved VM comes back stopped elsewhere.
    const desiredState: VmDesiredState = vm.desiredState === "saved" || (vm.owner !== null && vm.spec.restartPolicy === "do-not-restart") ? "stopped" : vm.desiredState;
    const epoch = vm.epoch + 1;
    this.putVm({ ...vm, owner: newOwner, epoch, pendingReason, desiredState, savedState: null });
    return { ok: true, type: c.type, vm: c.vm, owner: newOwner, epoch, desiredState, pendingReason };
  }

  // ---- queries ----

  getNode(id: string): NodeRecord | null {
    return this.nodes.get(id) ?? null;
  }

  getVm(id: string): VmRecord | null {
    return this.vms.get(id) ?? null;
  }

  /**
   * Where the placement policy would move `vm` now, away from its owner (for a drain or a
   * rebalance): `{ ok: false, reason }` when no other node fits.
   */
  placeAway(vmId: string, atMs: number): { ok: true; node: string } | { ok: false; reason: string } {
    const vm = this.vms.get(vmId);
    if (vm === undefined) return { ok: false, reason: `vm ${vmId} does not exist` };
    const views = this.placementNodes(vm).filter((n) => n.id !== vm.owner);
    if (views.length === 0) return { ok: false, reason: "no other node is registered" };
    const decision = place(views, requestFor(vm.spec, atMs), this.placementConfig());
    return decision.ok ? { ok: true, node: decision.node } : { ok: false, reason: decision.reason };
  }

  /** Whether `vm` could go on node `nodeId` at `atMs` (room, node state and lease, affinity groups). */
  fitsOn(vmId: string, nodeId: string, atMs: number): boolean {
    const vm = this.vms.get(vmId);
    if (vm === undefined || vm.owner === nodeId) return false;
    const target = this.placementNodes(vm).find((n) => n.id === nodeId);
    return this.checkTarget("beginMigration", vm.id, vm.spec, target, nodeId, atMs) === null;
  }

  /** The migration in flight of `vm`, if any. */
  getMigration(vm: string): MigrationRecord | null {
    return this.migrations.get(vm) ?? null;
  }

  /** VMs sorted by id; with `node`, only the VMs that node owns. */
  listVms(filter: { readonly node?: string } = {}): VmRecord[] {
    const out: VmRecord[] = [];
    for (const vm of this.vms.values()) if (filter.node === undefined || vm.owner === filter.node) out.push(vm);
    return out.sort((a, b) => byId(a.id, b.id));
  }

  /** Nodes sorted by id, with their committed usage and what is left. */
  listNodes(): NodeView[] {
    const ratio = this.config.vcpuOvercommitRatio;
    return [...this.nodes.values()].sort((a, b) => byId(a.id, b.id)).map((node) => {
      const u = this.ledger.get(node.id);
      const view = this.placementNode(node, u);
      return {
        ...node,
        usage: { memoryBytes: u.memoryBytes, vcpus: u.vcpus, vms: u.vms, incoming: u.incoming },
        vcpusLimit: vcpuLimit(node.capacity.vcpus, ratio),
        freeMemoryBytes: freeMemoryBytes(view),
        freeVcpus: freeVcpus(view, ratio),
      };
    });
  }

  /** Migrations in flight, sorted by VM id. */
  listMigrations(): MigrationRecord[] {
    return [...this.migrations.values()].sort((a, b) => byId(a.vm, b.vm));
  }

  /** Consolidation figures (VMs per node, vCPU:pCPU, memory committed) for fleetd's metrics and the CLI. */
  consolidation(): ConsolidationFigures {
    const nodes: NodeConsolidation[] = [];
    let vcpus = 0;
    let pcpus = 0;
    let memory = 0;
    let capacity = 0;
    for (const node of this.listNodes()) {
      const u = node.usage;
      nodes.push({
        node: node.id, state: node.state, vms: u.vms, incoming: u.incoming,
        vcpusCommitted: u.vcpus, pcpus: node.capacity.vcpus, vcpusPerPcpu: u.vcpus / node.capacity.vcpus,
        memoryCommittedBytes: u.memoryBytes, memoryCapacityBytes: node.capacity.memoryBytes, memoryCommittedRatio: u.memoryBytes / node.capacity.memoryBytes,
      });
      vcpus += u.vcpus;
      pcpus += node.capacity.vcpus;
      memory += u.memoryBytes;
      capacity += node.capacity.memoryBytes;
    }
    let placed = 0;
    for (const vm of this.vms.values()) if (vm.owner !== null) placed++;
    return {
      nodes,
      nodeCount: nodes.length,
      vmCount: this.vms.size,
      placedVmCount: placed,
      pendingVmCount: this.vms.size - placed,
      migrationsInFlight: this.migrations.size,
      vmsPerNode: nodes.length === 0 ? 0 : placed / nodes.length,
      vcpusPerPcpu: pcpus === 0 ? 0 : vcpus / pcpus,
      memoryCommittedRatio: capacity === 0 ? 0 : memory / capacity,
    };
  }

  /** A copy of the incremental usage ledger, by node id (for the invariant checker). */
  usageByNode(): Map<string, NodeUsage> {
    const out = new Map<string, NodeUsage>();
    for (const id of [...this.ledger.nodes()].sort(byId)) {
      const u = this.ledger.get(id);
      out.set(id, { ...u, antiAffinity: new Map(u.antiAffinity), affinity: new Map(u.affinity) });
    }
    return out;
  }

  /** The whole state as plain data, records sorted by id (records are immutable and shared). */
  toData(): ClusterData {
    return {
      appliedIndex: this.applied,
      options: this.config,
      nodes: [...this.nodes.values()].sort((a, b) => byId(a.id, b.id)),
      vms: [...this.vms.values()].sort((a, b) => byId(a.id, b.id)),
      migrations: this.listMigrations(),
    };
  }

  /** Runs the invariant checker on this state, its usage ledger included; empty when sound. */
  checkInvariants(): string[] {
    return checkInvariants(this.toData(), this.usageByNode());
  }

  // ---- snapshots ----

  /** The whole state as bytes (see `snapshot.ts`), identical on members that applied the same entries. */
  snapshot(): Uint8Array {
    return encodeSnapshot(this.toData());
  }

  /**
   * Replaces the whole state with a snapshot's. All or nothing: on any defect (format, checksum, a
   * field, an invariant, options other than this member's) the state is left as it was and a
   * `ClusterSnapshotError` says what is wrong.
   */
  restore(bytes: Uint8Array): void {
    const data = decodeSnapshot(bytes);
    const o = data.options;
    const mine = this.config;
    if (o.vcpuOvercommitRatio !== mine.vcpuOvercommitRatio || o.placementPolicy !== mine.placementPolicy || o.leaseMsMax !== mine.leaseMsMax) {
      throw new ClusterSnapshotError(
        `snapshot options (vcpuOvercommitRatio ${o.vcpuOvercommitRatio}, placementPolicy ${o.placementPolicy}, leaseMsMax ${o.leaseMsMax}) differ from this member's ` +
        `(${mine.vcpuOvercommitRatio}, ${mine.placementPolicy}, ${mine.leaseMsMax}): every member must run with the same options`,
      );
    }
    const violations = checkInvariants(data);
    if (violations.length > 0) throw new ClusterSnapshotError(`inconsistent snapshot: ${violations.join("; ")}`);
    const ledger = new UsageLedger();
    for (const node of data.nodes) ledger.addNode(node.id);
    for (const vm of data.vms) if (vm.owner !== null) ledger.add(vm.owner, vm.spec, "owned");
    const vmsById = new Map(data.vms.map((vm) => [vm.id, vm]));
    for (const m of data.migrations) ledger.add(m.to, vmsById.get(m.vm)!.spec, "incoming");
    this.nodes = new Map(data.nodes.map((n) => [n.id, n]));
    this.vms = vmsById;
    this.macs = new Map(data.vms.flatMap((vm) => vm.spec.nics.map((n) => [n.mac, vm.id] as const)));
    this.migrations = new Map(data.migrations.map((m) => [m.vm, m]));
    this.ledger = ledger;
    this.applied = data.appliedIndex;
  }
}
