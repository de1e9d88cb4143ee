/**
 * Membership changes through the API on real processes: a fourth fleetd joins a running 3-node
 * cluster as a learner (AddMember), catches up and registers, is promoted to a voter (PromoteMember),
 * takes VMs, and is removed again (RemoveMember) once it owns none.
 */
import type { ChildProcess } from "node:child_process";
import { ApiError, type ApiClient } from "@hyperfleet/api";
import { afterAll, describe, expect, it } from "vitest";
import { httpStatus, stopProcess } from "../src/local-cluster.js";
import { startJoiner, until, useCluster } from "./helpers.js";

const MIB = 2 ** 20;
const local = useCluster("membership", { nodes: 3, memoryMib: 128 });
const dir = local.dir;
let joiner: ChildProcess | undefined;
// after-hooks run last registered first: the joiner stops before the cluster
afterAll(async () => {
  if (joiner !== undefined) await stopProcess(joiner, 3000, "SIGKILL");
}, 30_000);

function client(address: string): ApiClient {
  return local.client(address, undefined, 10_000);
}

describe("membership", () => {
  it("membership - a node joins as a learner, is promoted, takes a VM and is removed once it owns none", async () => {
    const api = client(local.cluster.apiAddresses[0]!);
    const started = await startJoiner(local.cluster, dir, 128);
    joiner = started.process;
    const { raftAddress: raft, apiAddress, httpAddress: http } = started;

    const added = await api.addMember({ id: "n4", raftAddress: raft, apiAddress });
    expect(added).toMatchObject({ id: "n4", raftAddress: raft, role: "MEMBER_ROLE_LEARNER" });
    await expect(api.addMember({ id: "n4", raftAddress: raft, apiAddress })).rejects.toSatisfy((e) => e instanceof ApiError && e.code === "ALREADY_EXISTS");
    // the learner catches up, learns the leader and registers itself
    await until("n4 healthy", 30_000, async () => ((await httpStatus(http, "/healthz")) === 200 ? true : undefined));
    const own = client(apiAddress);
    expect((await own.listNodes()).nodes.map((n) => n.id)).toContain("n4");

    const promoted = await api.promoteMember({ id: "n4" });
    expect(promoted.role).toBe("MEMBER_ROLE_FOLLOWER");
    await expect(api.promoteMember({ id: "n4" })).rejects.toSatisfy((e) => e instanceof ApiError && e.code === "FAILED_PRECONDITION");
    const status = await own.clusterStatus();
    expect(status.members.map((m) => m.id).sort()).toEqual(["n1", "n2", "n3", "n4"]);

    // it takes a VM (moved there), which it must give back before it can leave
    await api.createVm({ name: "guest", memoryBytes: 8 * MIB, vcpus: 1, image: "dirtier", bootargs: "rate=0 ws=1", start: true });
    await until("guest running", 20_000, async () => ((await api.getVm({ name: "guest" })).state === "VM_STATE_RUNNING" ? true : undefined));
    if ((await api.getVm({ name: "guest" })).owner !== "n4") await api.migrate({ vm: "guest", targetNode: "n4" });
    await until("guest running on n4", 20_000, async () => {
      const v = await api.getVm({ name: "guest" });
      return v.owner === "n4" && v.state === "VM_STATE_RUNNING" && v.migrationId === "" ? true : undefined;
    });
    await expect(api.removeMember({ id: "n4" })).rejects.toSatisfy((e) => e instanceof ApiError && e.code === "FAILED_PRECONDITION" && /owns 1 VM/.test(e.message));
    await api.drainNode({ node: "n4" });
    await until("n4 drained", 30_000, async () => {
      const n = (await api.listNodes()).nodes.find((x) => x.id === "n4");
      return n?.state === "NODE_STATE_DRAINED" ? true : undefined;
    });
    expect((await api.getVm({ name: "guest" })).owner).not.toBe("n4");

    await api.removeMember({ id: "n4" });
    await until("n4 gone from members and nodes", 10_000, async () => {
      const s = await api.clusterStatus();
      const nodes = (await api.listNodes()).nodes;
      return !s.members.some((m) => m.id === "n4") && !nodes.some((n) => n.id === "n4") ? true : undefined;
    });
    await expect(api.removeMember({ id: "n4" })).rejects.toSatisfy((e) => e instanceof ApiError && e.code === "NOT_FOUND");
    // n4 still runs and would renew its lease: the cluster no longer lets it register
    await new Promise((r) => setTimeout(r, 1500));
    expect((await api.listNodes()).nodes.map((n) => n.id)).not.toContain("n4");
    expect((await api.getVm({ name: "guest" })).state).toBe("VM_STATE_RUNNING");
  }, 120_000);
});
