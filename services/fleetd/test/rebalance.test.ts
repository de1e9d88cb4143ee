/**
 * Rebalancing on real processes: VMs packed on one node (best-fit placement) are spread by live
 * migration, one at a time, until the nodes' loads are within the threshold; no VM moves twice.
 */
import type { Vm } from "@hyperfleet/api";
import { describe, expect, it } from "vitest";
import { sleep, until, useCluster } from "./helpers.js";

const MIB = 2 ** 20;
const local = useCluster("rebalance", {
  nodes: 3, memoryMib: 128,
  env: { HYPERFLEET_REBALANCE_INTERVAL_MS: "300", HYPERFLEET_REBALANCE_THRESHOLD_PERCENT: "20" },
});

describe("rebalance", () => {
  it("rebalance - VMs packed on one node are spread by live migration until the loads are even, none moving twice", async () => {
    const api = local.client(local.cluster.apiAddresses[0]!);
    for (let i = 0; i < 4; i++) await api.createVm({ name: `r${i}`, memoryBytes: 24 * MIB, vcpus: 1, image: "dirtier", bootargs: "rate=50 ws=1", start: true });
    const load = async (): Promise<{ gap: number; vms: Vm[] }> => {
      const nodes = (await api.listNodes()).nodes;
      const ratios = nodes.map((n) => n.usage.memoryBytes / n.capacity.memoryBytes);
      return { gap: Math.max(...ratios) - Math.min(...ratios), vms: (await api.listVms()).vms };
    };
    // settled: every VM running, nothing in flight, loads within the threshold, and it stays so
    const settled = await until("the cluster balanced", 60_000, async () => {
      const { gap, vms } = await load();
      if (gap > 0.2 || vms.some((v) => v.migrationId !== "" || v.state !== "VM_STATE_RUNNING")) return undefined;
      return vms;
    });
    await sleep(1500);
    const after = (await api.listVms()).vms;
    expect(after.map((v) => [v.name, v.owner, v.epoch])).toEqual(settled.map((v) => [v.name, v.owner, v.epoch]));
    expect(new Set(after.map((v) => v.owner)).size).toBeGreaterThan(1);
    for (const v of after) expect(v.epoch, `${v.name} moved more than once`).toBeLessThanOrEqual(2);
    expect(after.filter((v) => v.epoch === 2).length).toBeGreaterThan(0);
  }, 90_000);
});
