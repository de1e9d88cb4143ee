/**
 * SIGTERM of a node whose VM no other node can take (the others are drained): the node saves the VM
 * where it is (saved state `host-shutdown`), exits 0 and stays a member of the cluster, which reports
 * the VM saved and still owned by the stopped node. Started again on its data directory, the node
 * restores the VM, which goes on from where it was instead of booting again.
 *
 * The nodes take a 30 s lease, so the stopped node is not declared failed (and its VM not failed
 * over) while the test looks at it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiClient, type Vm } from "@hyperfleet/api";
import { afterAll, describe, expect, it } from "vitest";
import { fleetdMainPath, httpStatus, LocalCluster, localNodeEnv, stopProcess, type LocalNode } from "../src/local-cluster.js";
import { follow, instructionsOf, sleep, until } from "./helpers.js";

const MIB = 2 ** 20;
const MEMORY_MIB = 64;
const LEASE_MS = "30000";
const dir = mkdtempSync(join(tmpdir(), "fleetd-shutdown-"));
let cluster: LocalCluster | undefined;
const clients: ApiClient[] = [];
const restarted: ChildProcess[] = [];

afterAll(async () => {
  for (const c of clients) c.close();
  for (const p of restarted) await stopProcess(p, 3000, "SIGINT");
  await cluster?.stop(3000);
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

function client(node: LocalNode): ApiClient {
  const c = new ApiClient(node.apiAddress, { token: cluster!.token, timeoutMs: 5000 });
  clients.push(c);
  return c;
}

function heartbeats(text: string): number[] {
  return [...text.matchAll(/heartbeat (\d+) \(/g)].map((m) => Number(m[1]));
}

/** The last lines (below debug) of a node's log. */
function logTail(id: string): string {
  const lines = readFileSync(join(dir, `${id}.log`), "utf8").split("\n").filter((l) => l !== "" && !l.includes('"level":"debug"'));
  return lines.slice(-15).join("\n");
}

/** Starts `node` again as `LocalCluster` started it: same id, addresses, data directory and cluster. */
function startAgain(node: LocalNode): ChildProcess {
  const c = cluster!;
  const peers = c.nodes.map((n) => `${n.id}=${n.raftAddress}`).join(",");
  const self = { id: node.id, api: node.apiAddress, raft: node.raftAddress, http: node.httpAddress };
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...localNodeEnv({ memoryMib: MEMORY_MIB, env: { HYPERFLEET_LEASE_MS: LEASE_MS } }, c.dir, self, peers, c.natsUrl, c.token),
  };
  const child = spawn(process.execPath, [fleetdMainPath()], { env, stdio: ["ignore", "ignore", "pipe"] });
  child.stderr?.pipe(createWriteStream(join(c.dir, `${node.id}.log`), { flags: "a" }));
  restarted.push(child);
  return child;
}

describe("shutdown", () => {
  it("shutdown - SIGTERM with no other node to take the VM: exit 0, the VM saved and still owned by the stopped node, which stays a member; started again, the node restores the VM and it runs on", async () => {
    cluster = await LocalCluster.start({ nodes: 3, dir, memoryMib: MEMORY_MIB, env: { HYPERFLEET_LEASE_MS: LEASE_MS } });
    const nodes = cluster.nodes;
    const first = client(nodes[0]!);
    await until("three active nodes", 15_000, async () => {
      const { nodes: listed } = await first.listNodes();
      return listed.length === 3 && listed.every((n) => n.leaseLive && n.state === "NODE_STATE_ACTIVE") ? true : undefined;
    });
    await first.createVm({ name: "keeps", memoryBytes: 8 * MIB, vcpus: 1, image: "dirtier", bootargs: "rate=50 ws=1", start: true });
    const vm: Vm = await until("keeps running", 20_000, async () => {
      const v = await first.getVm({ name: "keeps" });
      return v.state === "VM_STATE_RUNNING" && v.migrationId === "" ? v : undefined;
    });
    const owner = nodes.find((n) => n.id === vm.owner)!;
    const others = nodes.filter((n) => n !== owner);
    const witness = client(others[0]!);

    // no room anywhere else: the two other nodes are drained (they hold no VM, so at once)
    for (const n of others) await witness.drainNode({ node: n.id });
    await until("the two other nodes drained", 15_000, async () => {
      const { nodes: listed } = await witness.listNodes();
      return others.every((o) => listed.find((x) => x.id === o.id)?.state === "NODE_STATE_DRAINED") ? true : undefined;
    });

    // the guest's progress before the stop: its retired instructions and its heartbeats on the console
    const output = follow(client(owner), "keeps");
    const before = await until("keeps past 1 M instructions", 30_000, async () => {
      const n = await instructionsOf(owner, "keeps");
      return n !== undefined && n > 1_000_000 ? n : undefined;
    });
    await until("a heartbeat on the console of keeps", 10_000, async () => (heartbeats(output.text()).length > 0 ? true : undefined));
    await output.stop();
    const lastBeat = Math.max(...heartbeats(output.text()));

    const exited = new Promise<number | null>((r) => owner.process.once("exit", (code) => r(code)));
    owner.process.kill("SIGTERM");
    const exit = await Promise.race([exited, sleep(30_000).then(() => "still running")]);
    expect(exit, `${owner.id} after SIGTERM:\n${logTail(owner.id)}`).toBe(0);

    // as another node sees it: saved, still owned by the stopped node at the same epoch, meant to run
    const saved = await until("keeps saved, seen by another node", 10_000, async () => {
      const v = await witness.getVm({ name: "keeps" });
      return v.state === "VM_STATE_SAVED" ? v : undefined;
    });
    expect({ owner: saved.owner, epoch: saved.epoch, desiredState: saved.desiredState, migrationId: saved.migrationId }).toEqual({
      owner: owner.id, epoch: vm.epoch, desiredState: "VM_DESIRED_STATE_RUNNING", migrationId: "",
    });
    expect(existsSync(join(dir, owner.id, "saved-states", "keeps", "host-shutdown.hfsave"))).toBe(true);
    expect(readFileSync(join(dir, `${owner.id}.log`), "utf8")).toContain("shutdown: vm keeps saved");
    for (const n of others) expect(await instructionsOf(n, "keeps"), `keeps on ${n.id}`).toBeUndefined();
    // it stays a member and a node of the cluster
    expect((await witness.listMembers()).members.map((m) => m.id)).toEqual(nodes.map((n) => n.id));
    expect((await witness.listNodes()).nodes.map((n) => n.id)).toEqual(nodes.map((n) => n.id));

    // started again on its data directory: it takes VMs again and restores keeps, which goes on from where it was
    const again = startAgain(owner);
    await until(`${owner.id} healthy again`, 30_000, async () => {
      if (again.exitCode !== null) throw new Error(`${owner.id} exited ${again.exitCode}:\n${logTail(owner.id)}`);
      return (await httpStatus(owner.httpAddress, "/healthz")) === 200 ? true : undefined;
    });
    const running = await until("keeps running again", 30_000, async () => {
      const v = await witness.getVm({ name: "keeps" });
      return v.state === "VM_STATE_RUNNING" ? v : undefined;
    }).catch((e: unknown) => {
      throw new Error(`${(e as Error).message}\n${logTail(owner.id)}`, { cause: e });
    });
    expect({ owner: running.owner, epoch: running.epoch }).toEqual({ owner: owner.id, epoch: vm.epoch });
    const after = await until("keeps advancing past its count before the stop", 15_000, async () => {
      const n = await instructionsOf(owner, "keeps");
      return n !== undefined && n > before ? n : undefined;
    });
    expect(after).toBeGreaterThan(before);
    const resumed = follow(client(owner), "keeps");
    await until("a new heartbeat on the console of keeps", 10_000, async () => (heartbeats(resumed.text()).some((b) => b > lastBeat) ? true : undefined))
      .finally(() => resumed.stop());
    // restored, not booted again: no banner, and the heartbeats go on from before the stop
    expect(resumed.text()).not.toMatch(/dirtier: rate=/);
    expect(Math.min(...heartbeats(resumed.text()))).toBeGreaterThan(lastBeat);
    expect(readFileSync(join(dir, `${owner.id}.log`), "utf8")).toContain("vm keeps restored from saved state host-shutdown");
    await until(`${owner.id} active again`, 10_000, async () =>
      (await witness.listNodes()).nodes.find((n) => n.id === owner.id)?.state === "NODE_STATE_ACTIVE" ? true : undefined);
  }, 150_000);
});
