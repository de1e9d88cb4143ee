import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ApiError, type MigrationUpdate } from "@hyperfleet/api";
import { connect } from "@nats-io/transport-node";
import { instructionsOf, sleep, until, useCluster } from "./helpers.js";
import { describe, expect, it } from "vitest";
import { CLUSTER_FILE, httpStatus, type ClusterFile, type LocalNode } from "../src/local-cluster.js";

const local = useCluster("cluster", { nodes: 3, memoryMib: 128 });
const dir = local.dir;

/** A client of `address` with `token` (none when undefined). */
function client(address: string, token?: string): ReturnType<typeof local.client> {
  return local.client(address, token ?? null);
}

/** Instructions retired by `vm` on `node`, or null when the node does not run it. */
async function instructions(node: LocalNode, vm: string): Promise<number | null> {
  return (await instructionsOf(node, vm)) ?? null;
}

function nodeById(id: string): LocalNode {
  const n = local.cluster.nodes.find((x) => x.id === id);
  if (n === undefined) throw new Error(`no node ${id}`);
  return n;
}

describe("cluster", () => {
  it("cluster - up writes cluster.json and every node is healthy", async () => {
    const file = JSON.parse(readFileSync(join(dir, CLUSTER_FILE), "utf8")) as ClusterFile;
    expect(file.apiAddresses).toEqual(local.cluster.apiAddresses);
    expect(file.token).toBe(local.cluster.token);
    expect(file.natsUrl).toBe(local.cluster.natsUrl);
    for (const n of local.cluster.nodes) expect(await httpStatus(n.httpAddress, "/healthz")).toBe(200);
    const nodes = await client(local.cluster.apiAddresses[1]!, local.cluster.token).listNodes();
    expect(nodes.nodes.map((n) => n.id).sort()).toEqual(["n1", "n2", "n3"]);
  });

  it("cluster - an unauthenticated call is refused", async () => {
    const anonymous = client(local.cluster.apiAddresses[0]!);
    await expect(anonymous.listVms()).rejects.toSatisfy((e) => e instanceof ApiError && e.code === "UNAUTHENTICATED");
    const wrong = client(local.cluster.apiAddresses[0]!, "not-the-token");
    await expect(wrong.listVms()).rejects.toSatisfy((e) => e instanceof ApiError && e.code === "UNAUTHENTICATED");
  });

  it("cluster - the NATS server that carries migrations admits only holders of the cluster token", async () => {
    await expect(connect({ servers: local.cluster.natsUrl, reconnect: false, timeout: 3000 })).rejects.toThrow(/Authorization Violation/i);
    await expect(connect({ servers: local.cluster.natsUrl, reconnect: false, timeout: 3000, token: "not-the-token" })).rejects.toThrow(/Authorization Violation/i);
    const nc = await connect({ servers: local.cluster.natsUrl, reconnect: false, timeout: 3000, token: local.cluster.token });
    await nc.close();
  });

  it("cluster - a created VM runs on the node the cluster placed it on, and live-migrates to another", async () => {
    // through a node that may not be the leader: the write is forwarded
    const api = client(local.cluster.apiAddresses[2]!, local.cluster.token);
    const created = await api.createVm({ name: "vm1", memoryBytes: 8 * 2 ** 20, vcpus: 1, image: "dirtier", bootargs: "rate=200 ws=2", start: true });
    expect(created.owner).not.toBe("");
    expect(created.epoch).toBe(1);
    const owner = nodeById(created.owner);
    await until("vm1 running", 15_000, async () => ((await api.getVm({ name: "vm1" })).state === "VM_STATE_RUNNING" ? true : undefined));
    const first = await until("vm1 stats on its owner", 10_000, async () => (await instructions(owner, "vm1")) ?? undefined);
    await until("vm1 advancing", 10_000, async () => ((await instructions(owner, "vm1"))! > first ? true : undefined));
    for (const n of local.cluster.nodes.filter((x) => x !== owner)) expect(await instructions(n, "vm1")).toBeNull();

    const target = local.cluster.nodes.find((x) => x !== owner)!;
    const started = await api.migrate({ vm: "vm1", targetNode: target.id });
    expect(started.targetNode).toBe(target.id);
    const updates: MigrationUpdate[] = [];
    const watcher = client(target.apiAddress, local.cluster.token);
    const watched = (async () => {
      for await (const u of watcher.watchMigration({ migrationId: started.migrationId })) updates.push(u);
    })();
    await until("vm1 owned by the target at epoch 2", 30_000, async () => {
      const vm = await api.getVm({ name: "vm1" });
      return vm.owner === target.id && vm.epoch === 2 && vm.state === "VM_STATE_RUNNING" ? vm : undefined;
    });
    await Promise.race([watched, sleep(10_000)]);
    const last = updates.at(-1);
    expect(last?.update).toBe("result");
    if (last?.update === "result") expect(last.result.ok).toBe(true);

    const there = await until("vm1 stats on the target", 10_000, async () => (await instructions(target, "vm1")) ?? undefined);
    await until("vm1 advancing on the target", 10_000, async () => ((await instructions(target, "vm1"))! > there ? true : undefined));
    await until("vm1 gone from the old owner", 5_000, async () => ((await instructions(owner, "vm1")) === null ? true : undefined));
    for (const n of local.cluster.nodes.filter((x) => x !== target)) expect(await instructions(n, "vm1")).toBeNull();
  });

  it("cluster - a cancelled migration is aborted in the cluster state and the VM keeps running on its owner", async () => {
    const api = client(local.cluster.apiAddresses[0]!, local.cluster.token);
    const before = await api.getVm({ name: "vm1" });
    const owner = nodeById(before.owner);
    const target = local.cluster.nodes.find((x) => x !== owner)!;
    // slow enough (64 KiB/s) that the cancel lands in pre-copy
    const started = await api.migrate({ vm: "vm1", targetNode: target.id, bandwidthLimitBytesPerSecond: 64 * 1024 });
    const watcher = client(owner.apiAddress, local.cluster.token);
    const updates: MigrationUpdate[] = [];
    const stream = watcher.watchMigration({ migrationId: started.migrationId });
    const watched = (async () => {
      for await (const u of stream) updates.push(u);
    })();
    await until("the migration in flight", 10_000, async () => ((await api.getVm({ name: "vm1" })).migrationId === started.migrationId ? true : undefined));
    await api.cancelMigration({ migrationId: started.migrationId });
    await Promise.race([watched, sleep(15_000)]);
    const last = updates.at(-1);
    expect(last?.update).toBe("result");
    if (last?.update === "result") {
      expect(last.result.ok).toBe(false);
      expect(last.result.cancelled).toBe(true);
    }
    const after = await until("the abort committed", 10_000, async () => {
      const vm = await api.getVm({ name: "vm1" });
      return vm.migrationId === "" ? vm : undefined;
    });
    expect(after.owner).toBe(owner.id);
    expect(after.epoch).toBe(before.epoch);
    const here = await until("vm1 stats on its owner", 10_000, async () => (await instructions(owner, "vm1")) ?? undefined);
    await until("vm1 still advancing on its owner", 10_000, async () => ((await instructions(owner, "vm1"))! > here ? true : undefined));
    await until("nothing left on the target", 10_000, async () => ((await instructions(target, "vm1")) === null ? true : undefined));
  });

  it("cluster - kill -9 of the leader keeps the API answering after a new leader is elected", async () => {
    const status = await client(local.cluster.apiAddresses[0]!, local.cluster.token).clusterStatus();
    expect(status.leaderId).not.toBe("");
    const leader = nodeById(status.leaderId);
    const survivor = local.cluster.nodes.find((x) => x !== leader)!;
    const exited = new Promise((r) => leader.process.once("exit", r));
    leader.process.kill("SIGKILL");
    await exited;
    const api = client(survivor.apiAddress, local.cluster.token);
    await until("a new leader", 15_000, async () => {
      const s = await api.clusterStatus();
      return s.leaderId !== "" && s.leaderId !== leader.id ? s : undefined;
    });
    const vm = await until("a write after the failover", 15_000, async () =>
      api.createVm({ name: "vm2", memoryBytes: 4 * 2 ** 20, vcpus: 1, image: "dirtier", bootargs: "rate=10 ws=1", start: false }));
    expect(vm.name).toBe("vm2");
    expect((await api.listVms()).vms.map((v) => v.name).sort()).toEqual(["vm1", "vm2"]);
  });
});
