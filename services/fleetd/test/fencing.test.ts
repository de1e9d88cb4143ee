/**
 * Self-fencing on real processes: a node frozen (SIGSTOP) past its lease is failed over; when it
 * thaws (SIGCONT), its copy of the VM must not run again. (Its main thread and its VM worker thaw
 * together: the worker stops at its fence, the lease's end less the margin, and the reconcile pass
 * then removes the copy. The worker's fence on its own is tested in the hypervisor's vm-worker tests.)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiClient } from "@hyperfleet/api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalCluster, type LocalNode } from "../src/local-cluster.js";
import { sleep, until } from "./helpers.js";

const MIB = 2 ** 20;
const dir = mkdtempSync(join(tmpdir(), "fleetd-fencing-"));
let cluster: LocalCluster | undefined;
const clients: ApiClient[] = [];
let frozen: LocalNode | undefined;

async function instructions(node: LocalNode, vm: string): Promise<number | undefined> {
  const res = await fetch(`http://${node.httpAddress}/metrics`, { signal: AbortSignal.timeout(3000) });
  const line = (await res.text()).split("\n").find((l) => l.startsWith("hyperfleet_vm_instructions_total{") && l.includes(`vm="${vm}"`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

beforeAll(async () => {
  cluster = await LocalCluster.start({
    nodes: 3, dir, memoryMib: 128,
    env: { HYPERFLEET_LEASE_MS: "2000", HYPERFLEET_FENCE_MARGIN_MS: "500", HYPERFLEET_FAILOVER_MARGIN_MS: "300" },
  });
}, 60_000);

afterAll(async () => {
  if (frozen !== undefined && frozen.process.exitCode === null) frozen.process.kill("SIGCONT");
  for (const c of clients) c.close();
  await cluster?.stop(3000);
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe("fencing", () => {
  it("fencing - a frozen node's VM is restarted elsewhere, and the thawed node never runs its copy again", async () => {
    const api = new ApiClient(cluster!.apiAddresses[0]!, { token: cluster!.token, timeoutMs: 5000 });
    clients.push(api);
    // a guest that runs flat out: any instruction after the thaw would show
    await api.createVm({ name: "spin", memoryBytes: 8 * MIB, vcpus: 1, image: "dirtier", bootargs: "rate=max ws=1", start: true });
    const vm = await until("spin running", 20_000, async () => {
      const v = await api.getVm({ name: "spin" });
      return v.state === "VM_STATE_RUNNING" ? v : undefined;
    });
    const owner = cluster!.nodes.find((n) => n.id === vm.owner)!;
    frozen = owner;
    const other = cluster!.nodes.find((n) => n !== owner)!;
    const survivor = new ApiClient(other.apiAddress, { token: cluster!.token, timeoutMs: 5000 });
    clients.push(survivor);
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
    const newOwner = cluster!.nodes.find((n) => n.id === moved.owner)!;
    const a = (await instructions(newOwner, "spin"))!;
    await sleep(300);
    expect((await instructions(newOwner, "spin"))!).toBeGreaterThan(a);
  }, 90_000);
});
