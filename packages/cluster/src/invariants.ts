/**
 * The external invariant checker of the cluster state (STYLE rule 7): pure functions over plain
 * `ClusterData`, usable after every apply in tests, by the simulator and by chaos tests. Each returns
 * the violations it found as messages (empty when the state is sound), at most `VIOLATIONS_MAX`.
 */
import { ClusterInvariantError } from "./errors.js";
import { computeUsage, sameUsage, vcpuLimit } from "./placement.js";
import type { ClusterData, NodeUsage } from "./types.js";

export const VIOLATIONS_MAX = 50;

class Violations {
  readonly list: string[] = [];
  add(message: string): void {
    if (this.list.length < VIOLATIONS_MAX) this.list.push(message);
  }
}

/**
 * Checks one state:
 *  - ids are unique (nodes, VMs, one migration per VM) and records sorted by id;
 *  - every VM has at most one owner, a registered node, or none exactly when it is pending;
 *    its epoch is a positive integer and its actual report is not from a later epoch;
 *  - no node's committed memory exceeds its capacity, nor its committed vCPUs the overcommit limit;
 *  - no two VMs of one anti-affinity group on one node (owned or reserved);
 *  - no NIC MAC belongs to two VMs (the virtual switch delivers by MAC);
 *  - a migration in flight concerns an existing VM, starts from its owner at its epoch, goes to another
 *    registered node, and began at an index already applied;
 *  - when `usage` (the state machine's incremental ledger) is given: it equals the usage rebuilt from
 *    scratch, so every migration holds its reservation on the destination and every owned VM is
 *    counted on exactly one node.
 */
export function checkInvariants(data: ClusterData, usage?: ReadonlyMap<string, NodeUsage>): string[] {
  const v = new Violations();
  const nodes = new Map(data.nodes.map((n) => [n.id, n]));
  const vms = new Map(data.vms.map((vm) => [vm.id, vm]));
  if (nodes.size !== data.nodes.length) v.add(`${data.nodes.length - nodes.size} node ids appear more than once`);
  if (vms.size !== data.vms.length) v.add(`${data.vms.length - vms.size} VM ids appear more than once: a VM would have two records (two owners)`);
  for (let i = 1; i < data.nodes.length; i++) if (!(data.nodes[i - 1]!.id < data.nodes[i]!.id)) v.add(`nodes are not sorted by id at ${data.nodes[i]!.id}`);
  for (let i = 1; i < data.vms.length; i++) if (!(data.vms[i - 1]!.id < data.vms[i]!.id)) v.add(`VMs are not sorted by id at ${data.vms[i]!.id}`);

  let owned = 0;
  const macs = new Map<string, string>();
  for (const vm of data.vms) {
    for (const nic of vm.spec.nics) {
      const holder = macs.get(nic.mac);
      if (holder !== undefined && holder !== vm.id) v.add(`MAC ${nic.mac} belongs to vm ${holder} and vm ${vm.id}`);
      macs.set(nic.mac, vm.id);
    }
    if (!Number.isSafeInteger(vm.epoch) || vm.epoch < 1) v.add(`vm ${vm.id} has epoch ${vm.epoch}, not a positive integer`);
    if (vm.owner !== null) {
      owned++;
      if (!nodes.has(vm.owner)) v.add(`vm ${vm.id} is owned by ${vm.owner}, which is not a registered node`);
    }
    if ((vm.owner === null) !== (vm.pendingReason !== null)) {
      v.add(`vm ${vm.id} has owner ${vm.owner ?? "none"} and pending reason ${vm.pendingReason === null ? "none" : JSON.stringify(vm.pendingReason)}: exactly one is expected`);
    }
    if (vm.actual !== null && vm.actual.epoch > vm.epoch) v.add(`vm ${vm.id} has an actual state reported at epoch ${vm.actual.epoch}, after its epoch ${vm.epoch}`);
  }

  const seenMigrations = new Set<string>();
  const incomingByNode = new Map<string, number>();
  for (let i = 0; i < data.migrations.length; i++) {
    const m = data.migrations[i]!;
    if (seenMigrations.has(m.vm)) v.add(`vm ${m.vm} has two migrations in flight`);
    seenMigrations.add(m.vm);
    if (i > 0 && !(data.migrations[i - 1]!.vm < m.vm)) v.add(`migrations are not sorted by VM id at ${m.vm}`);
    const vm = vms.get(m.vm);
    if (vm === undefined) {
      v.add(`a migration in flight concerns vm ${m.vm}, which does not exist`);
      continue;
    }
    if (vm.owner !== m.from) v.add(`the migration of vm ${m.vm} starts from ${m.from}, but the owner is ${vm.owner ?? "none"}`);
    if (vm.epoch !== m.epoch) v.add(`the migration of vm ${m.vm} began at epoch ${m.epoch}, but the VM is at epoch ${vm.epoch}`);
    if (!nodes.has(m.to)) v.add(`the migration of vm ${m.vm} goes to ${m.to}, which is not a registered node`);
    if (m.to === m.from) v.add(`the migration of vm ${m.vm} goes from ${m.from} to itself`);
    if (m.migrationId < 1 || m.migrationId > data.appliedIndex) v.add(`the migration of vm ${m.vm} has id ${m.migrationId}, outside 1..${data.appliedIndex}`);
    incomingByNode.set(m.to, (incomingByNode.get(m.to) ?? 0) + 1);
  }

  const rebuilt = computeUsage(data.nodes, data.vms, data.migrations);
  const ratio = data.options.vcpuOvercommitRatio;
  for (const node of data.nodes) {
    const u = rebuilt.get(node.id)!;
    if (u.memoryBytes > node.capacity.memoryBytes) v.add(`node ${node.id} has ${u.memoryBytes} bytes committed, more than its ${node.capacity.memoryBytes}`);
    const limit = vcpuLimit(node.capacity.vcpus, ratio);
    if (u.vcpus > limit) v.add(`node ${node.id} has ${u.vcpus} vCPUs committed, more than its limit ${limit} (${node.capacity.vcpus} pCPUs at ${ratio}:1)`);
    for (const [group, count] of u.antiAffinity) {
      if (count > 1) v.add(`node ${node.id} holds ${count} VMs of anti-affinity group ${group}`);
    }
  }

  if (usage !== undefined) {
    let counted = 0;
    for (const [id, u] of usage) {
      counted += u.vms;
      const expected = rebuilt.get(id);
      if (expected === undefined) v.add(`the usage ledger tracks node ${id}, which is not registered`);
      else if (!sameUsage(u, expected)) v.add(`the usage ledger of node ${id} (${describeUsage(u)}) differs from the state (${describeUsage(expected)})`);
    }
    for (const node of data.nodes) if (!usage.has(node.id)) v.add(`the usage ledger does not track node ${node.id}`);
    if (counted !== owned) v.add(`the usage ledger counts ${counted} owned VMs, the state has ${owned}`);
    for (const [to, n] of incomingByNode) {
      const reserved = usage.get(to)?.incoming ?? 0;
      if (reserved < n) v.add(`node ${to} holds ${reserved} reservations for ${n} migrations coming in`);
    }
  }
  return v.list;
}

function describeUsage(u: NodeUsage): string {
  return `${u.memoryBytes} bytes, ${u.vcpus} vCPUs, ${u.vms} VMs, ${u.incoming} incoming`;
}

/**
 * Checks what may change from one state to the next (successive states, or any later state when no VM
 * id was deleted and created again in between): the applied index never goes back, the options never
 * change, a VM's epoch never decreases, its owner changes only with a higher epoch, and a migration
 * keeps its endpoints and epoch while it is in flight.
 */
export function checkTransition(before: ClusterData, after: ClusterData): string[] {
  const v = new Violations();
  if (after.appliedIndex < before.appliedIndex) v.add(`the applied index went back from ${before.appliedIndex} to ${after.appliedIndex}`);
  const o1 = before.options;
  const o2 = after.options;
  if (o1.vcpuOvercommitRatio !== o2.vcpuOvercommitRatio || o1.placementPolicy !== o2.placementPolicy || o1.leaseMsMax !== o2.leaseMsMax) {
    v.add("the options changed");
  }
  const previous = new Map(before.vms.map((vm) => [vm.id, vm]));
  for (const vm of after.vms) {
    const old = previous.get(vm.id);
    if (old === undefined) continue;
    if (vm.epoch < old.epoch) v.add(`vm ${vm.id}'s epoch went back from ${old.epoch} to ${vm.epoch}`);
    if (vm.owner !== old.owner && vm.epoch <= old.epoch) v.add(`vm ${vm.id} moved from ${old.owner ?? "none"} to ${vm.owner ?? "none"} without a new epoch (${vm.epoch})`);
  }
  const flights = new Map(before.migrations.map((m) => [m.vm, m]));
  for (const m of after.migrations) {
    const old = flights.get(m.vm);
    if (old === undefined || old.migrationId !== m.migrationId) continue;
    if (old.from !== m.from || old.to !== m.to || old.epoch !== m.epoch || old.kind !== m.kind) v.add(`migration ${m.migrationId} of vm ${m.vm} changed while in flight`);
  }
  return v.list;
}

/** Throws a `ClusterInvariantError` listing the violations of `checkInvariants`, if any. */
export function assertInvariants(data: ClusterData, usage?: ReadonlyMap<string, NodeUsage>): void {
  const violations = checkInvariants(data, usage);
  if (violations.length > 0) throw new ClusterInvariantError(`cluster state invariants violated at index ${data.appliedIndex}: ${violations.join("; ")}`);
}
