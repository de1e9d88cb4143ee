import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ClusterCommand } from "../src/commands.js";
import { encodeCommand } from "../src/commands.js";
import { checkInvariants, checkTransition } from "../src/invariants.js";
import type { PlacementConfig, PlacementNode, PlacementRequest } from "../src/placement.js";
import { place } from "../src/placement.js";
import type { ClusterResult } from "../src/state.js";
import { ClusterState } from "../src/state.js";
import type { ClusterData, MigrationKind, NodeState, PlacementPolicy, VmActualState, VmDesiredState } from "../src/types.js";
import { MiB } from "./helpers.js";

// ---- a naive placement oracle: try every node, rebuild its usage from the records, sort by the documented order ----

interface OracleRequest {
  readonly memoryBytes: number;
  readonly vcpus: number;
  readonly antiAffinityGroup: string | null;
  readonly affinityGroup: string | null;
  readonly atMs: number;
}

interface Candidate {
  readonly id: string;
  readonly holdsAffinity: boolean;
  readonly freeAfterBytes: number;
  readonly vmCount: number;
}

function compareCandidates(a: Candidate, b: Candidate, policy: PlacementPolicy): number {
  if (a.holdsAffinity !== b.holdsAffinity) return a.holdsAffinity ? -1 : 1;
  if (a.freeAfterBytes !== b.freeAfterBytes) return policy === "best-fit" ? a.freeAfterBytes - b.freeAfterBytes : b.freeAfterBytes - a.freeAfterBytes;
  if (a.vmCount !== b.vmCount) return a.vmCount - b.vmCount;
  return a.id < b.id ? -1 : 1;
}

/** Where the documented policy puts `req` in `data`, ignoring everything about VM `exclude`; `null` when nowhere. */
function oracle(data: ClusterData, req: OracleRequest, exclude: string | null): string | null {
  const { placementPolicy: policy, vcpuOvercommitRatio } = data.options;
  const candidates: Candidate[] = [];
  for (const node of data.nodes) {
    if (node.state !== "active" || node.leaseUntilMs <= req.atMs) continue;
    let memoryBytes = 0;
    let vcpus = 0;
    let vmCount = 0;
    let holdsAnti = false;
    let holdsAffinity = false;
    const count = (vmId: string): void => {
      const vm = data.vms.find((v) => v.id === vmId)!;
      memoryBytes += vm.spec.memoryBytes;
      vcpus += vm.spec.vcpus;
      vmCount += 1;
      if (req.antiAffinityGroup !== null && vm.spec.antiAffinityGroup === req.antiAffinityGroup) holdsAnti = true;
      if (req.affinityGroup !== null && vm.spec.affinityGroup === req.affinityGroup) holdsAffinity = true;
    };
    for (const vm of data.vms) if (vm.id !== exclude && vm.owner === node.id) count(vm.id);
    for (const m of data.migrations) if (m.vm !== exclude && m.to === node.id) count(m.vm);
    if (holdsAnti) continue;
    if (memoryBytes + req.memoryBytes > node.capacity.memoryBytes) continue;
    if (vcpus + req.vcpus > Math.floor(node.capacity.vcpus * vcpuOvercommitRatio)) continue;
    candidates.push({ id: node.id, holdsAffinity, freeAfterBytes: node.capacity.memoryBytes - memoryBytes - req.memoryBytes, vmCount });
  }
  candidates.sort((a, b) => compareCandidates(a, b, policy));
  return candidates[0]?.id ?? null;
}

// ---- random operations, turned into commands against the current state ----

const NODE_IDS = ["n0", "n1", "n2", "n3"];
const VM_IDS = ["v0", "v1", "v2", "v3", "v4", "v5"];
const nodeIdx = fc.integer({ min: 0, max: NODE_IDS.length - 1 });
const vmIdx = fc.integer({ min: 0, max: VM_IDS.length - 1 });
const epochDelta = fc.constantFrom(0, 0, 0, -1, 1);
/** `null` (meaning: the value the current state suggests) four times out of five. */
function mostlyNull<T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> {
  return fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: arb });
}
const dtMs = fc.integer({ min: 0, max: 800 });

const opArb = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant("register" as const), node: nodeIdx, memoryMiB: fc.constantFrom(512, 1024, 2048, 4096), vcpus: fc.integer({ min: 1, max: 3 }), dtMs }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant("renew" as const), node: nodeIdx, leaseMs: fc.integer({ min: 0, max: 30_000 }), dtMs }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("setState" as const), node: nodeIdx, state: fc.constantFrom<NodeState>("active", "draining", "drained", "failed"), dtMs }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("remove" as const), node: nodeIdx, dtMs }) },
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant("create" as const), vm: vmIdx, memoryMiB: fc.constantFrom(128, 256, 512, 1024, 2048), vcpus: fc.integer({ min: 1, max: 4 }),
      anti: fc.constantFrom<string | null>(null, null, "g1", "g2"), affinity: fc.constantFrom<string | null>(null, null, "a1"),
      pin: mostlyNull(nodeIdx), restartable: fc.boolean(), dtMs,
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("desired" as const), vm: vmIdx, state: fc.constantFrom<VmDesiredState>("running", "stopped", "paused"), dtMs }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("report" as const), vm: vmIdx, node: mostlyNull(nodeIdx), epochDelta,
      actual: fc.constantFrom<VmActualState>("starting", "running", "stopped", "crashed"), dtMs,
    }),
  },
  { weight: 5, arbitrary: fc.record({ k: fc.constant("begin" as const), vm: vmIdx, from: mostlyNull(nodeIdx), to: nodeIdx, kind: fc.constantFrom<MigrationKind>("live", "quick"), dtMs }) },
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant("transfer" as const), vm: vmIdx, from: mostlyNull(nodeIdx), to: mostlyNull(nodeIdx),
      epochDelta, migrationId: fc.constantFrom("right", "none", "wrong"), dtMs,
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("abort" as const), vm: vmIdx, epochDelta, migrationId: fc.constantFrom("right", "none", "wrong"), dtMs }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("failover" as const), vm: vmIdx, to: mostlyNull(nodeIdx), epochDelta, dtMs }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("delete" as const), vm: vmIdx, dtMs }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("garbage" as const), bytes: fc.uint8Array({ maxLength: 48 }), dtMs }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("corrupt" as const), field: fc.constantFrom("atMs", "vm", "node", "epoch", "spec", "type", "v", "extra"), value: fc.jsonValue({ maxDepth: 2 }), dtMs }) },
);
type Op = typeof opArb extends fc.Arbitrary<infer T> ? T : never;

const utf8 = new TextEncoder();

/** Turns `op` into an entry's bytes, reading the current state (owner, epoch, migration) so most commands can succeed. */
function toCommand(op: Op, s: ClusterState, nowMs: number): ClusterCommand | Uint8Array {
  const atMs = nowMs;
  switch (op.k) {
    case "register":
      return {
        type: "registerNode", atMs, node: NODE_IDS[op.node]!, apiAddress: `10.0.0.${op.node}:7000`, migrationAddress: `10.0.0.${op.node}:7001`,
        capacity: { memoryBytes: op.memoryMiB * MiB, vcpus: op.vcpus }, leaseUntilMs: atMs + 10_000,
      };
    case "renew":
      return { type: "renewLease", atMs, node: NODE_IDS[op.node]!, untilMs: atMs + op.leaseMs };
    case "setState":
      return { type: "setNodeState", atMs, node: NODE_IDS[op.node]!, state: op.state };
    case "remove":
      return { type: "removeNode", atMs, node: NODE_IDS[op.node]! };
    case "create":
      return {
        type: "createVm", atMs, vm: VM_IDS[op.vm]!, node: op.pin === null ? null : NODE_IDS[op.pin]!,
        spec: {
          memoryBytes: op.memoryMiB * MiB, vcpus: op.vcpus, image: "img", bootMode: "bare", antiAffinityGroup: op.anti, affinityGroup: op.affinity,
          restartPolicy: op.restartable ? "restart" : "do-not-restart",
        },
      };
    default:
      break;
  }
  if (op.k === "garbage") return op.bytes;
  if (op.k === "corrupt") {
    const base = JSON.parse(new TextDecoder().decode(encodeCommand({ type: "failover", atMs, vm: VM_IDS[0]!, epoch: 1 }))) as Record<string, unknown>;
    base[op.field] = op.value;
    return utf8.encode(JSON.stringify(base));
  }
  // Mostly an existing VM (one with a migration in flight for transfer and abort), sometimes any id.
  const flights = s.listMigrations().map((m) => m.vm);
  const existing = s.listVms().map((v) => v.id);
  const pool = (op.k === "transfer" || op.k === "abort") && flights.length > 0 ? flights : existing;
  const vmId = pool.length > 0 && op.vm < VM_IDS.length - 1 ? pool[op.vm % pool.length]! : VM_IDS[op.vm]!;
  const vm = s.getVm(vmId);
  const flight = s.getMigration(vmId);
  const epoch = Math.max(1, (vm?.epoch ?? 1) + ("epochDelta" in op ? op.epochDelta : 0));
  const owner = vm?.owner ?? NODE_IDS[0]!;
  switch (op.k) {
    case "desired":
      return { type: "setDesiredState", atMs, vm: vmId, desiredState: op.state };
    case "report":
      return { type: "reportActual", atMs, vm: vmId, node: op.node === null ? owner : NODE_IDS[op.node]!, epoch, actual: op.actual };
    case "begin":
      return { type: "beginMigration", atMs, vm: vmId, from: op.from === null ? owner : NODE_IDS[op.from]!, to: NODE_IDS[op.to]!, kind: op.kind };
    case "transfer":
      return {
        type: "transfer", atMs, vm: vmId, epoch,
        from: op.from === null ? owner : NODE_IDS[op.from]!,
        to: op.to === null ? flight?.to ?? NODE_IDS[1]! : NODE_IDS[op.to]!,
        migrationId: op.migrationId === "none" ? null : op.migrationId === "right" ? flight?.migrationId ?? 1 : (flight?.migrationId ?? 0) + 1,
      };
    case "abort":
      return {
        type: "abortMigration", atMs, vm: vmId, epoch,
        migrationId: op.migrationId === "none" ? null : op.migrationId === "right" ? flight?.migrationId ?? 1 : (flight?.migrationId ?? 0) + 1,
      };
    case "failover":
      return { type: "failover", atMs, vm: vmId, to: op.to === null ? null : NODE_IDS[op.to]!, epoch };
    case "delete":
      return { type: "deleteVm", atMs, vm: vmId };
  }
}

/** The placement the oracle expects for a createVm/failover that lets the state machine choose; `undefined` when not such a command. */
function expectedPlacement(command: ClusterCommand, before: ClusterData): { readonly vm: string; readonly node: string | null } | undefined {
  if (command.type === "createVm" && (command.node ?? null) === null && !before.vms.some((v) => v.id === command.vm)) {
    const s = command.spec;
    return { vm: command.vm, node: oracle(before, { memoryBytes: s.memoryBytes, vcpus: s.vcpus, antiAffinityGroup: s.antiAffinityGroup ?? null, affinityGroup: s.affinityGroup ?? null, atMs: command.atMs }, null) };
  }
  if (command.type === "failover" && (command.to ?? null) === null) {
    const vm = before.vms.find((v) => v.id === command.vm);
    if (vm === undefined || vm.epoch !== command.epoch) return undefined;
    const owner = before.nodes.find((n) => n.id === vm.owner);
    if (owner !== undefined && owner.leaseUntilMs > command.atMs) return undefined;
    return { vm: vm.id, node: oracle(before, { ...vm.spec, atMs: command.atMs }, vm.id) };
  }
  return undefined;
}

function checkAgainstOracle(command: ClusterCommand, before: ClusterData, result: ClusterResult): number {
  const expected = expectedPlacement(command, before);
  if (expected === undefined) return 0;
  if (result.ok) {
    expect(result.type === "createVm" || result.type === "failover").toBe(true);
    if (result.type === "createVm" || result.type === "failover") expect(result.owner).toBe(expected.node);
  } else {
    expect(result.code).toBe("NO_CAPACITY");
    expect(expected.node).toBeNull();
  }
  return 1;
}

/** Every run starts by registering the nodes (random capacities), so the random part mostly meets a live cluster. */
const setupArb = fc.tuple(...NODE_IDS.map((_, node) => fc.record({
  k: fc.constant("register" as const), node: fc.constant(node), memoryMiB: fc.constantFrom(1024, 2048, 4096), vcpus: fc.integer({ min: 1, max: 3 }), dtMs: fc.constant(0),
})));

const configArb = fc.record({
  placementPolicy: fc.constantFrom<PlacementPolicy>("best-fit", "spread"),
  vcpuOvercommitRatio: fc.constantFrom(1, 1.5, 4),
});

describe("property - replicated determinism", () => {
  it("gives identical results and states on two members, keeps every invariant, and agrees with the placement oracle", { timeout: 60_000 }, () => {
    let placementsChecked = 0;
    let successes = 0;
    const okByType = new Map<string, number>();
    fc.assert(
      fc.property(configArb, setupArb, fc.array(opArb, { minLength: 1, maxLength: 90, size: "max" }), fc.nat(), (config, setup, random, cut) => {
        const ops: Op[] = [...setup, ...random];
        const a = new ClusterState(config);
        const b = new ClusterState(config);
        const cutAt = cut % ops.length;
        let restored: ClusterState | null = null;
        let nowMs = 0;
        let before = a.toData();
        for (let i = 0; i < ops.length; i++) {
          const op = ops[i]!;
          nowMs += op.dtMs;
          const command = toCommand(op, a, nowMs);
          const bytes = command instanceof Uint8Array ? command : encodeCommand(command);
          const index = a.appliedIndex + 1;
          const ra = a.apply(index, bytes);
          const rb = b.apply(index, bytes);
          expect(rb).toEqual(ra);
          restored?.apply(index, bytes);
          const after = a.toData();
          expect(checkInvariants(after, a.usageByNode())).toEqual([]);
          expect(checkTransition(before, after)).toEqual([]);
          if (!ra.ok) expect({ ...after, appliedIndex: before.appliedIndex }).toEqual(before);
          else {
            successes++;
            okByType.set(ra.type, (okByType.get(ra.type) ?? 0) + 1);
          }
          if (!(command instanceof Uint8Array)) placementsChecked += checkAgainstOracle(command, before, ra);
          before = after;
          if (i === cutAt) {
            restored = new ClusterState(config);
            restored.restore(a.snapshot());
          }
        }
        const final = a.snapshot();
        expect(b.snapshot()).toEqual(final);
        expect(restored!.snapshot()).toEqual(final);
      }),
      { numRuns: 300 },
    );
    // The generator must reach the interesting paths, not only rejections.
    expect(placementsChecked).toBeGreaterThan(500);
    expect(successes).toBeGreaterThan(3000);
    for (const type of ["createVm", "beginMigration", "transfer", "abortMigration", "failover", "reportActual", "removeNode"]) {
      expect(okByType.get(type) ?? 0, type).toBeGreaterThan(20);
    }
  });
});

// ---- the pure placement function against the oracle, on arbitrary nodes ----

const placementNodeArb = fc.record({
  state: fc.constantFrom<NodeState>("active", "active", "active", "draining", "failed"),
  leaseUntilMs: fc.integer({ min: 0, max: 20 }),
  memoryMiB: fc.integer({ min: 1, max: 16 }),
  pcpus: fc.integer({ min: 1, max: 4 }),
  usedMiB: fc.integer({ min: 0, max: 16 }),
  usedVcpus: fc.integer({ min: 0, max: 16 }),
  vms: fc.integer({ min: 0, max: 3 }),
  incoming: fc.integer({ min: 0, max: 2 }),
  anti: fc.constantFrom<string | null>(null, "g"),
  affinity: fc.constantFrom<string | null>(null, "a"),
});

describe("property - placement oracle", () => {
  it("the one-pass placement picks what sorting every fitting node by the documented order picks", { timeout: 60_000 }, () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: 30 }), placementNodeArb), { maxLength: 8, selector: ([id]) => id }),
        fc.record({ memoryMiB: fc.integer({ min: 1, max: 8 }), vcpus: fc.integer({ min: 1, max: 6 }), anti: fc.constantFrom<string | null>(null, "g"), affinity: fc.constantFrom<string | null>(null, "a"), atMs: fc.integer({ min: 0, max: 20 }) }),
        fc.constantFrom<PlacementPolicy>("best-fit", "spread"),
        fc.constantFrom(1, 2, 4),
        (shapes, r, policy, ratio) => {
          const nodes: PlacementNode[] = shapes.map(([n, s]) => {
            const usedMemoryBytes = Math.min(s.usedMiB, s.memoryMiB) * MiB;
            return {
              id: `n${n}`, state: s.state, leaseUntilMs: s.leaseUntilMs,
              capacity: { memoryBytes: s.memoryMiB * MiB, vcpus: s.pcpus },
              usage: {
                memoryBytes: usedMemoryBytes, vcpus: Math.min(s.usedVcpus, s.pcpus * ratio), vms: s.vms, incoming: s.incoming,
                antiAffinity: new Map(s.anti === null ? [] : [[s.anti, 1]]), affinity: new Map(s.affinity === null ? [] : [[s.affinity, 1]]),
              },
            };
          });
          const request: PlacementRequest = { memoryBytes: r.memoryMiB * MiB, vcpus: r.vcpus, antiAffinityGroup: r.anti, affinityGroup: r.affinity, atMs: r.atMs };
          const config: PlacementConfig = { policy, vcpuOvercommitRatio: ratio };
          const fitting: Candidate[] = nodes
            .filter((n) => n.state === "active" && n.leaseUntilMs > r.atMs)
            .filter((n) => r.anti === null || !n.usage.antiAffinity.has(r.anti))
            .filter((n) => n.capacity.memoryBytes - n.usage.memoryBytes >= request.memoryBytes)
            .filter((n) => Math.floor(n.capacity.vcpus * ratio) - n.usage.vcpus >= request.vcpus)
            .map((n) => ({
              id: n.id, holdsAffinity: r.affinity !== null && n.usage.affinity.has(r.affinity),
              freeAfterBytes: n.capacity.memoryBytes - n.usage.memoryBytes - request.memoryBytes, vmCount: n.usage.vms + n.usage.incoming,
            }))
            .sort((x, y) => compareCandidates(x, y, policy));
          const decision = place(nodes, request, config);
          if (fitting.length === 0) {
            expect(decision.ok).toBe(false);
            if (!decision.ok) expect(decision.reason.length).toBeGreaterThan(0);
          } else {
            expect(decision).toEqual({ ok: true, node: fitting[0]!.id });
          }
          expect(place([...nodes].reverse(), request, config)).toEqual(decision);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
