/**
 * Self-fencing on real processes: a node frozen (SIGSTOP) past its lease is failed over; when it
 * thaws (SIGCONT), its copy of the VM must not run again. (Its main thread and its VM worker thaw
 * together: the worker stops at its fence, the lease's end less the margin, and the reconcile pass
 * then removes the copy. The worker's fence on its own is tested in the hypervisor's vm-worker tests.)
 */
import { afterAll, describe, expect, it } from "vitest";
import type { LocalNode } from "../src/local-cluster.js";
import { instructionsOf as instructions, sleep, until, useCluster } from "./helpers.js";

const MIB = 2 ** 20;
let frozen: LocalNode | undefined;
const local = useCluster("fencing", {
  nodes: 3, memoryMib: 128,
  env: { HYPERFLEET_LEASE_MS: "2000", HYPERFLEET_FENCE_MARGIN_MS: "500", HYPERFLEET_FAILOVER_MARGIN_MS: "300" },
});
// after-hooks run last registered first: a node left stopped is thawed before the cluster stops
afterAll(() => {
  if (frozen !== undefined && frozen.process.exitCode === null) frozen.process.kill("SIGCONT");
});

describe("fencing", () => {
  it("fencing - a frozen node's VM is restarted elsewhere, and the thawed node never runs its copy again", async () => {
    const cluster = local.cluster;
    const api = local.client(cluster.apiAddresses[0]!);
    // a guest that runs flat out: any instruction after the thaw would show
    await api.createVm({ name: "spin", memoryBytes: 8 * MIB, vcpus: 1, image: "dirtier", bootargs: "rate=max ws=1", start: true });
    const vm = await until("spin running", 20_000, async () => {
      const v = await api.getVm({ name: "spin" });
      return v.state === "VM_STATE_RUNNING" ? v : undefined;
    });
    const owner = cluster.nodes.find((n) => n.id === vm.owner)!;
    frozen = owner;
    const other = cluster.nodes.find((n) => n !== owner)!;
    const survivor = local.client(other.apiAddress);
    await until("spin advancing", 10_000, async () => ((await instructions(owner, "spin")) ?? 0) > 0 ? true : undefined);

    const before = (await instructions(owner, "spin"))!;
    owner.process.kill("SIGSTOP");
    const moved = await until("spin failed over", 30_000, async () => {
      const v = await survivor.getVm({ name: "spin" });
      return v.owner !== owner.id && v.state === "VM_STATE_RUNNING" ? v : undefined;
    });
    expect(moved.epoch).toBe(vm.epoch + 1);

    owner.process.kill("SIGCONT");
    // For two seconds after the thaw the old copy shows at most what it ran before the freeze (plus
    // the few milliseconds between reading `before` and SIGSTOP), then it is gone.
    const deadline = Date.now() + 2000;
    while (Date.now() < deadline) {
      const n = await instructions(owner, "spin").catch(() => undefined);
      if (n !== undefined) expect(n - before, "instructions the thawed copy ran").toBeLessThan(20_000_000);
      await sleep(50);
    }
    await until("the old copy gone", 10_000, async () => ((await instructions(owner, "spin")) === undefined ? true : undefined));
    const newOwner = cluster.nodes.find((n) => n.id === moved.owner)!;
    const a = (await instructions(newOwner, "spin"))!;
    await sleep(300);
    expect((await instructions(newOwner, "spin"))!).toBeGreaterThan(a);
  }, 90_000);
});
