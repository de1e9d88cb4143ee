/**
 * Rebalancing (DRS-like): one live migration at a time that cuts the load imbalance between active
 * nodes. A node's load is its dominant share: the larger of committed memory / memory and committed
 * vCPUs / its vCPU limit. A pass acts only when the most and least loaded nodes differ by more than
 * `threshold`, and takes a move only if, after it, the source is still at least as loaded as the
 * target (the gap shrinks, it never flips): so the next pass never moves a VM back. VMs moved
 * recently are left alone (the caller says which). Pure: the caller turns the plan into a migration.
 */
import type { NodeView } from "./state.js";
import type { VmRecord } from "./types.js";

export interface RebalanceOptions {
  /** Act when the most and least loaded nodes' loads differ by more than this (0..1). */
  readonly threshold: number;
}

export interface RebalanceMove {
  readonly vm: string;
  readonly from: string;
  readonly to: string;
  /** Max minus min load now, and between the two nodes after the move. */
  readonly gapBefore: number;
  readonly gapAfter: number;
}

interface Load {
  readonly node: NodeView;
  readonly memory: number;
  readonly vcpus: number;
}

function share(used: number, capacity: number): number {
  return capacity <= 0 ? (used > 0 ? Infinity : 0) : used / capacity;
}

function load(l: Load): number {
  return Math.max(share(l.memory, l.node.capacity.memoryBytes), share(l.vcpus, l.node.vcpusLimit));
}

/**
 * The move that best evens out the most and least loaded active nodes (live leases at `atMs`), or
 * null when they are within `threshold` or no VM can go. `movable` says whether a VM may move now
 * (running, not moved lately, no saved state...); `fits` whether it may go on a node (room, groups).
 */
export function planRebalance(
  nodes: readonly NodeView[],
  vms: readonly VmRecord[],
  atMs: number,
  options: RebalanceOptions,
  movable: (vm: VmRecord) => boolean,
  fits: (vm: VmRecord, node: string) => boolean,
): RebalanceMove | null {
  const loads: Load[] = nodes
    .filter((n) => n.state === "active" && n.leaseUntilMs > atMs)
    .map((n) => ({ node: n, memory: n.usage.memoryBytes, vcpus: n.usage.vcpus }))
    .sort((a, b) => load(a) - load(b) || (a.node.id < b.node.id ? -1 : 1));
  if (loads.length < 2) return null;
  const lo = loads[0]!;
  const hi = loads[loads.length - 1]!;
  const gapBefore = load(hi) - load(lo);
  if (!(gapBefore > options.threshold)) return null;
  let best: RebalanceMove | null = null;
  for (const vm of vms) {
    if (vm.owner !== hi.node.id || !movable(vm)) continue;
    const from = load({ node: hi.node, memory: hi.memory - vm.spec.memoryBytes, vcpus: hi.vcpus - vm.spec.vcpus });
    const to = load({ node: lo.node, memory: lo.memory + vm.spec.memoryBytes, vcpus: lo.vcpus + vm.spec.vcpus });
    if (to > from) continue; // would flip the imbalance: the next pass would move it back
    const gapAfter = from - to;
    if (!(gapAfter < gapBefore)) continue;
    if (best !== null && (gapAfter > best.gapAfter || (gapAfter === best.gapAfter && vm.id > best.vm))) continue;
    if (!fits(vm, lo.node.id)) continue;
    best = { vm: vm.id, from: hi.node.id, to: lo.node.id, gapBefore, gapAfter };
  }
  return best;
}
