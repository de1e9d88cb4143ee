/**
 * VM placement: pure functions over nodes and their committed usage.
 *
 * Capacity accounting. A node's committed resources are the specs of the VMs it owns plus the specs
 * reserved by migrations in flight towards it (a migrating VM counts on both ends until the migration
 * ends). Memory is never overcommitted: committed memory ≤ `capacity.memoryBytes`. vCPUs are: committed
 * vCPUs ≤ floor(pCPUs × `vcpuOvercommitRatio`). A VM's resources stay committed whatever its desired
 * state, so a stopped VM can always start again where it is.
 *
 * A node fits a request when, checked in this order: it is "active"; its lease is live at the
 * request's time (`leaseUntilMs > atMs`); it holds no VM of the request's anti-affinity group (owned or
 * reserved); its free memory ≥ the request's; its free vCPUs ≥ the request's.
 *
 * Among the nodes that fit, the documented order (first wins):
 *   1. with an affinity group: nodes holding a VM of that group before the others;
 *   2. "best-fit": least free memory after placement; "spread": most free memory after placement;
 *   3. fewest VMs (owned + incoming);
 *   4. smallest node id (UTF-16 code-unit order).
 * The order is total, so the choice does not depend on the order the nodes are given in.
 */
import { ClusterInvariantError, invariant } from "./errors.js";
import type { Capacity, MigrationRecord, NodeRecord, NodeState, NodeUsage, PlacementPolicy, VmRecord, VmSpec } from "./types.js";

const MIB = 1024 * 1024;
/** How many nodes a no-fit reason lists before "and N more". */
export const REASON_NODES_MAX = 8;

/** What placement needs to know about a node. */
export interface PlacementNode {
  readonly id: string;
  readonly state: NodeState;
  readonly leaseUntilMs: number;
  readonly capacity: Capacity;
  readonly usage: NodeUsage;
}

export interface PlacementRequest {
  readonly memoryBytes: number;
  readonly vcpus: number;
  readonly antiAffinityGroup: string | null;
  readonly affinityGroup: string | null;
  /** The command's time: only nodes whose lease is live at `atMs` are eligible. */
  readonly atMs: number;
}

export interface PlacementConfig {
  readonly policy: PlacementPolicy;
  readonly vcpuOvercommitRatio: number;
}

/** Why one node does not fit, in check order. */
export type MismatchKind = "not-active" | "lease-expired" | "anti-affinity" | "memory" | "vcpus";

export interface NodeMismatch {
  readonly node: string;
  readonly kind: MismatchKind;
  /** Names the node and the figure at fault, e.g. "n2 has 1024 MiB free, needs 2048 MiB". */
  readonly message: string;
}

export type PlacementDecision = { readonly ok: true; readonly node: string } | { readonly ok: false; readonly reason: string };

/** The request for placing `spec` at `atMs`. */
export function requestFor(spec: VmSpec, atMs: number): PlacementRequest {
  return { memoryBytes: spec.memoryBytes, vcpus: spec.vcpus, antiAffinityGroup: spec.antiAffinityGroup, affinityGroup: spec.affinityGroup, atMs };
}

/** The most vCPUs that may be committed on a node with `pcpus` physical CPUs. */
export function vcpuLimit(pcpus: number, vcpuOvercommitRatio: number): number {
  return Math.floor(pcpus * vcpuOvercommitRatio);
}

export function freeMemoryBytes(node: PlacementNode): number {
  return node.capacity.memoryBytes - node.usage.memoryBytes;
}

export function freeVcpus(node: PlacementNode, vcpuOvercommitRatio: number): number {
  return vcpuLimit(node.capacity.vcpus, vcpuOvercommitRatio) - node.usage.vcpus;
}

/** "2048 MiB" for whole MiB, "6 KiB" for whole KiB, otherwise "1000 bytes". */
export function formatBytes(bytes: number): string {
  if (bytes % MIB === 0) return `${bytes / MIB} MiB`;
  if (bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

/** Is the node active with a live lease at `atMs`? `null` when yes, else why not. */
export function checkEligible(node: PlacementNode, atMs: number): NodeMismatch | null {
  if (node.state !== "active") return { node: node.id, kind: "not-active", message: `${node.id} is ${node.state}` };
  if (node.leaseUntilMs <= atMs) {
    return { node: node.id, kind: "lease-expired", message: `${node.id}'s lease ended at ${node.leaseUntilMs} ms (atMs ${atMs})` };
  }
  return null;
}

/** Does `node` fit `request`? `null` when it does, else the first check it fails (see the module comment). */
export function checkNode(node: PlacementNode, request: PlacementRequest, config: PlacementConfig): NodeMismatch | null {
  const ineligible = checkEligible(node, request.atMs);
  if (ineligible !== null) return ineligible;
  const group = request.antiAffinityGroup;
  if (group !== null && (node.usage.antiAffinity.get(group) ?? 0) > 0) {
    return { node: node.id, kind: "anti-affinity", message: `${node.id} already holds a VM of anti-affinity group ${group}` };
  }
  const memory = freeMemoryBytes(node);
  if (memory < request.memoryBytes) {
    return { node: node.id, kind: "memory", message: `${node.id} has ${formatBytes(memory)} free, needs ${formatBytes(request.memoryBytes)}` };
  }
  const vcpus = freeVcpus(node, config.vcpuOvercommitRatio);
  if (vcpus < request.vcpus) {
    return {
      node: node.id, kind: "vcpus",
      message: `${node.id} has ${vcpus} vCPUs free (${node.usage.vcpus} committed of ${vcpuLimit(node.capacity.vcpus, config.vcpuOvercommitRatio)} at ${config.vcpuOvercommitRatio}:1), needs ${request.vcpus}`,
    };
  }
  return null;
}

/** True when `a` comes before `b` in the documented order; both must fit `request`. */
export function placesBefore(a: PlacementNode, b: PlacementNode, request: PlacementRequest, config: PlacementConfig): boolean {
  if (request.affinityGroup !== null) {
    const aHolds = (a.usage.affinity.get(request.affinityGroup) ?? 0) > 0;
    const bHolds = (b.usage.affinity.get(request.affinityGroup) ?? 0) > 0;
    if (aHolds !== bHolds) return aHolds;
  }
  const aFree = freeMemoryBytes(a);
  const bFree = freeMemoryBytes(b);
  if (aFree !== bFree) return config.policy === "best-fit" ? aFree < bFree : aFree > bFree;
  const aVms = a.usage.vms + a.usage.incoming;
  const bVms = b.usage.vms + b.usage.incoming;
  if (aVms !== bVms) return aVms < bVms;
  invariant(a.id !== b.id, () => `node ${a.id} listed twice`);
  return a.id < b.id;
}

/** Chooses the node for `request` among `nodes` in one pass, or explains why none fits. */
export function place(nodes: readonly PlacementNode[], request: PlacementRequest, config: PlacementConfig): PlacementDecision {
  let best: PlacementNode | null = null;
  for (const node of nodes) {
    if (checkNode(node, request, config) !== null) continue;
    if (best === null || placesBefore(node, best, request, config)) best = node;
  }
  if (best !== null) return { ok: true, node: best.id };
  return { ok: false, reason: explainNoFit(nodes, request, config) };
}

function byId<T extends { readonly id: string }>(a: T, b: T): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** The first `REASON_NODES_MAX` items joined by `separator`, then "and N more". */
function listed(items: readonly string[], separator = "; "): string {
  const shown = items.slice(0, REASON_NODES_MAX).join(separator);
  return items.length > REASON_NODES_MAX ? `${shown}${separator}and ${items.length - REASON_NODES_MAX} more` : shown;
}

/**
 * Why no node fits `request`, naming the figure at fault: "no node has 2048 MiB free; the largest free
 * is 1024 MiB on n2". Ineligible nodes, memory, vCPUs and anti-affinity are summarised when one of
 * them alone rules out every node; otherwise each node's first failed check is listed.
 */
export function explainNoFit(nodes: readonly PlacementNode[], request: PlacementRequest, config: PlacementConfig): string {
  const sorted = [...nodes].sort(byId);
  if (sorted.length === 0) return "no node is registered";
  const eligible = sorted.filter((n) => checkEligible(n, request.atMs) === null);
  if (eligible.length === 0) {
    return `no node is active with a live lease at ${request.atMs} ms: ${listed(sorted.map((n) => checkEligible(n, request.atMs)!.message))}`;
  }
  if (eligible.every((n) => freeMemoryBytes(n) < request.memoryBytes)) {
    let largest = eligible[0]!;
    for (const n of eligible) if (freeMemoryBytes(n) > freeMemoryBytes(largest)) largest = n;
    return `no node has ${formatBytes(request.memoryBytes)} free; the largest free is ${formatBytes(freeMemoryBytes(largest))} on ${largest.id}`;
  }
  const ratio = config.vcpuOvercommitRatio;
  if (eligible.every((n) => freeVcpus(n, ratio) < request.vcpus)) {
    let most = eligible[0]!;
    for (const n of eligible) if (freeVcpus(n, ratio) > freeVcpus(most, ratio)) most = n;
    return `no node has ${request.vcpus} vCPUs free (overcommit ${ratio}:1); the most free is ${freeVcpus(most, ratio)} on ${most.id}`;
  }
  const group = request.antiAffinityGroup;
  if (group !== null && eligible.every((n) => (n.usage.antiAffinity.get(group) ?? 0) > 0)) {
    return `every eligible node already holds a VM of anti-affinity group ${group}: ${listed(eligible.map((n) => n.id), ", ")}`;
  }
  const mismatches = sorted.map((n) => checkNode(n, request, config));
  if (mismatches.some((m) => m === null)) throw new ClusterInvariantError(`explainNoFit called while a node fits ${formatBytes(request.memoryBytes)}`);
  return `no node fits ${formatBytes(request.memoryBytes)} and ${request.vcpus} vCPUs: ${listed(mismatches.map((m) => m!.message))}`;
}

interface MutableUsage {
  memoryBytes: number;
  vcpus: number;
  vms: number;
  incoming: number;
  readonly antiAffinity: Map<string, number>;
  readonly affinity: Map<string, number>;
}

/** Whether a spec counts on a node as an owned VM or as the reservation of an incoming migration. */
export type UsageRole = "owned" | "incoming";

function groupCount(map: ReadonlyMap<string, number>, group: string | null, delta: number): number {
  return group === null ? 0 : (map.get(group) ?? 0) + delta;
}

function setGroupCount(map: Map<string, number>, group: string | null, count: number): void {
  if (group === null) return;
  if (count === 0) map.delete(group);
  else map.set(group, count);
}

/**
 * Committed usage per node, kept up to date one change at a time (the state machine's ledger) or
 * built from scratch (`computeUsage`). Every change asserts that nothing goes negative.
 */
export class UsageLedger {
  private readonly byNode = new Map<string, MutableUsage>();

  addNode(node: string): void {
    invariant(!this.byNode.has(node), () => `usage of node ${node} already tracked`);
    this.byNode.set(node, { memoryBytes: 0, vcpus: 0, vms: 0, incoming: 0, antiAffinity: new Map(), affinity: new Map() });
  }

  /** Stops tracking a node; it must have nothing committed. */
  removeNode(node: string): void {
    const u = this.byNode.get(node);
    invariant(u !== undefined, () => `usage of node ${node} not tracked`);
    invariant(u.memoryBytes === 0 && u.vcpus === 0 && u.vms === 0 && u.incoming === 0, () => `node ${node} removed with resources committed`);
    this.byNode.delete(node);
  }

  has(node: string): boolean {
    return this.byNode.has(node);
  }

  /** The live usage of `node` (read-only to the caller; it changes with the ledger). */
  get(node: string): NodeUsage {
    const u = this.byNode.get(node);
    invariant(u !== undefined, () => `usage of node ${node} not tracked`);
    return u;
  }

  add(node: string, spec: VmSpec, role: UsageRole): void {
    this.change(node, spec, role, 1);
  }

  remove(node: string, spec: VmSpec, role: UsageRole): void {
    this.change(node, spec, role, -1);
  }

  /** Node ids tracked, in insertion order. */
  nodes(): IterableIterator<string> {
    return this.byNode.keys();
  }

  /** Checks every figure first, then changes them: a refused change leaves the ledger as it was. */
  private change(node: string, spec: VmSpec, role: UsageRole, sign: 1 | -1): void {
    const u = this.byNode.get(node);
    invariant(u !== undefined, () => `usage of node ${node} not tracked`);
    const memoryBytes = u.memoryBytes + sign * spec.memoryBytes;
    const vcpus = u.vcpus + sign * spec.vcpus;
    const vms = u.vms + (role === "owned" ? sign : 0);
    const incoming = u.incoming + (role === "incoming" ? sign : 0);
    invariant(memoryBytes >= 0 && vcpus >= 0 && vms >= 0 && incoming >= 0, () => `usage of node ${node} would go negative`);
    const anti = groupCount(u.antiAffinity, spec.antiAffinityGroup, sign);
    const aff = groupCount(u.affinity, spec.affinityGroup, sign);
    invariant(anti >= 0 && aff >= 0, () => `a group count of node ${node} would go negative`);
    u.memoryBytes = memoryBytes;
    u.vcpus = vcpus;
    u.vms = vms;
    u.incoming = incoming;
    setGroupCount(u.antiAffinity, spec.antiAffinityGroup, anti);
    setGroupCount(u.affinity, spec.affinityGroup, aff);
  }
}

/**
 * Usage per registered node built from scratch: every owned VM on its owner, every migration's
 * reservation on its destination. VMs owned by, and migrations towards, unknown nodes are skipped (the
 * invariant checker reports them).
 */
export function computeUsage(nodes: readonly NodeRecord[], vms: readonly VmRecord[], migrations: readonly MigrationRecord[]): Map<string, NodeUsage> {
  const ledger = new UsageLedger();
  for (const n of nodes) if (!ledger.has(n.id)) ledger.addNode(n.id);
  const specs = new Map<string, VmSpec>();
  for (const vm of vms) {
    specs.set(vm.id, vm.spec);
    if (vm.owner !== null && ledger.has(vm.owner)) ledger.add(vm.owner, vm.spec, "owned");
  }
  for (const m of migrations) {
    const spec = specs.get(m.vm);
    if (spec !== undefined && ledger.has(m.to)) ledger.add(m.to, spec, "incoming");
  }
  const out = new Map<string, NodeUsage>();
  for (const id of ledger.nodes()) out.set(id, ledger.get(id));
  return out;
}

/** Two usages are the same figures (group maps compared as sets of entries). */
export function sameUsage(a: NodeUsage, b: NodeUsage): boolean {
  const sameMap = (x: ReadonlyMap<string, number>, y: ReadonlyMap<string, number>): boolean =>
    x.size === y.size && [...x].every(([k, v]) => y.get(k) === v);
  return a.memoryBytes === b.memoryBytes && a.vcpus === b.vcpus && a.vms === b.vms && a.incoming === b.incoming &&
    sameMap(a.antiAffinity, b.antiAffinity) && sameMap(a.affinity, b.affinity);
}
