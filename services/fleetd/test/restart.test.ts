/**
 * The whole cluster stops (as `hyperfleet up`'s Ctrl-C stops it) and starts again on the same
 * directory: every node saves its VMs when it stops and restores them when it starts, so a guest goes
 * on where it was instead of booting again.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiClient } from "@hyperfleet/api";
import { afterAll, describe, expect, it } from "vitest";
import { LocalCluster } from "../src/local-cluster.js";
import { instructionsOf as instructions, until } from "./helpers.js";

const MIB = 2 ** 20;
const dir = mkdtempSync(join(tmpdir(), "fleetd-restart-"));
const clusters: LocalCluster[] = [];
const clients: ApiClient[] = [];

afterAll(async () => {
  for (const c of clients) c.close();
  for (const c of clusters) await c.stop(3000);
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe("restart", () => {
  it("restart - a stopped cluster saves its VMs and restores them when it starts again on the same directory", async () => {
    let cluster = await LocalCluster.start({ nodes: 2, dir, memoryMib: 64 });
    clusters.push(cluster);
    let api = new ApiClient(cluster.apiAddresses[0]!, { token: cluster.token, timeoutMs: 5000 });
    clients.push(api);
    await api.createVm({ name: "keeps", memoryBytes: 8 * MIB, vcpus: 1, image: "dirtier", bootargs: "rate=50 ws=1", start: true });
    const vm = await until("keeps running", 20_000, async () => {
      const v = await api.getVm({ name: "keeps" });
      return v.state === "VM_STATE_RUNNING" ? v : undefined;
    });
    const owner = cluster.nodes.find((n) => n.id === vm.owner)!;
    // let it run long enough that a fresh boot could not have retired as many instructions by the check below
    const before = await until("keeps past 2 M instructions", 30_000, async () => {
      const n = await instructions(owner, "keeps");
      return n !== undefined && n > 2_000_000 ? n : undefined;
    });
    await cluster.stop();
    clusters.pop();

    cluster = await LocalCluster.start({ nodes: 2, dir, memoryMib: 64 });
    clusters.push(cluster);
    api = new ApiClient(cluster.apiAddresses[0]!, { token: cluster.token, timeoutMs: 5000 });
    clients.push(api);
    const again = await until("keeps running again", 60_000, async () => {
      const v = await api.getVm({ name: "keeps" });
      return v.state === "VM_STATE_RUNNING" ? v : undefined;
    }).catch((e: unknown) => {
      // say why: the nodes' logs (both runs)
      const logs = readdirSync(dir).filter((f) => f.endsWith(".log")).map((f) => `${f}:\n${readFileSync(join(dir, f), "utf8").split("\n").slice(-25).join("\n")}`);
      throw new Error(`${(e as Error).message}\n${logs.join("\n")}`);
    });
    expect({ owner: again.owner, epoch: again.epoch }).toEqual({ owner: vm.owner, epoch: vm.epoch });
    const node = cluster.nodes.find((n) => n.id === again.owner)!;
    const after = await until("keeps counted on its owner", 10_000, () => instructions(node, "keeps"));
    expect(after).toBeGreaterThanOrEqual(before);
    expect(readFileSync(join(dir, `${again.owner}.log`), "utf8")).toContain("vm keeps restored from saved state host-shutdown");
  }, 150_000);
});
