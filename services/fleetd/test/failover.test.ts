/**
 * Failover on real processes: kill -9 of a node that runs VMs. The leader declares it failed once its
 * lease has ended (plus the skew margin) and restarts its VMs on the survivors by placement, high
 * priority first; a "do-not-restart" VM is placed but left stopped; nothing runs twice.
 */
import type { Vm } from "@hyperfleet/api";
import { describe, expect, it } from "vitest";
import { instructionsByVm, sleep, until, useCluster } from "./helpers.js";

const MIB = 2 ** 20;
const LEASE_MS = 2000;
const local = useCluster("failover", {
  nodes: 3, memoryMib: 128,
  env: { HYPERFLEET_LEASE_MS: String(LEASE_MS), HYPERFLEET_FENCE_MARGIN_MS: "500", HYPERFLEET_FAILOVER_MARGIN_MS: "300" },
});

describe("failover", () => {
  it("failover - kill -9 of a node: its VMs run again on the survivors, high priority first, do-not-restart left stopped", async () => {
    const cluster = local.cluster;
    const api = local.client(cluster.nodes[0]!.apiAddress);
    const specs = [
      { name: "hi", priority: "VM_PRIORITY_HIGH" as const, restartPolicy: "RESTART_POLICY_RESTART" as const },
      { name: "mid", priority: "VM_PRIORITY_NORMAL" as const, restartPolicy: "RESTART_POLICY_RESTART" as const },
      { name: "lo", priority: "VM_PRIORITY_LOW" as const, restartPolicy: "RESTART_POLICY_RESTART" as const },
      { name: "once", priority: "VM_PRIORITY_NORMAL" as const, restartPolicy: "RESTART_POLICY_DO_NOT_RESTART" as const },
    ];
    for (const s of specs) {
      await api.createVm({ name: s.name, memoryBytes: 8 * MIB, vcpus: 1, image: "dirtier", bootargs: "rate=50 ws=1", start: true, priority: s.priority, restartPolicy: s.restartPolicy });
    }
    const before = await until("all four running", 30_000, async () => {
      const { vms } = await api.listVms();
      return vms.length === 4 && vms.every((v) => v.state === "VM_STATE_RUNNING") ? vms : undefined;
    });
    // best fit packs them on one node; kill the node that owns the most
    const owners = new Map<string, Vm[]>();
    for (const v of before) owners.set(v.owner, [...(owners.get(v.owner) ?? []), v]);
    const [victimId, victims] = [...owners].sort((a, b) => b[1].length - a[1].length)[0]!;
    const victim = cluster.nodes.find((n) => n.id === victimId)!;
    const survivors = cluster.nodes.filter((n) => n !== victim);
    const survivorApi = local.client(survivors[0]!.apiAddress);

    const killedAt = Date.now();
    const exited = new Promise((r) => victim.process.once("exit", r));
    victim.process.kill("SIGKILL");
    await exited;

    const moved = new Map<string, { vm: Vm; afterMs: number }>();
    await until("every VM of the dead node decided", 30_000, async () => {
      const { vms } = await survivorApi.listVms();
      for (const v of vms) {
        const was = victims.find((x) => x.name === v.name);
        if (was === undefined || moved.has(v.name) || v.owner === victimId || v.owner === "") continue;
        const done = v.name === "once" ? v.state === "VM_STATE_STOPPED" : v.state === "VM_STATE_RUNNING";
        if (done) moved.set(v.name, { vm: v, afterMs: Date.now() - killedAt });
      }
      return moved.size === victims.length ? true : undefined;
    });
    const nodes = (await survivorApi.listNodes()).nodes;
    expect(nodes.find((n) => n.id === victimId)!.state).toBe("NODE_STATE_FAILED");
    for (const v of victims) {
      const m = moved.get(v.name)!;
      expect(m.vm.epoch).toBe(v.epoch + 1);
      expect(survivors.map((n) => n.id)).toContain(m.vm.owner);
      expect(m.vm.desiredState).toBe(v.name === "once" ? "VM_DESIRED_STATE_STOPPED" : "VM_DESIRED_STATE_RUNNING");
      // not before the lease could have ended
      expect(m.afterMs).toBeGreaterThan(500);
    }
    // each restarted VM runs on exactly its new owner
    await sleep(300);
    for (const v of victims.filter((x) => x.name !== "once")) {
      const owner = moved.get(v.name)!.vm.owner;
      await until(`${v.name} advancing on ${owner}`, 10_000, async () => {
        const node = survivors.find((n) => n.id === owner)!;
        const a = await instructionsByVm(node);
        await sleep(300);
        const b = await instructionsByVm(node);
        return (b.get(v.name) ?? 0) > (a.get(v.name) ?? 0) ? true : undefined;
      });
      for (const other of survivors.filter((n) => n.id !== owner)) expect((await instructionsByVm(other)).has(v.name)).toBe(false);
    }
  }, 90_000);
});
