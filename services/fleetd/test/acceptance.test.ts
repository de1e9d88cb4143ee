/**
 * Acceptance tests of fleetd on real processes: a local cluster of fleetd processes and a
 * nats-server on loopback (`LocalCluster`), driven through the management API and the built CLI.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiClient, type MigrationUpdate, type Vm } from "@hyperfleet/api";
import { instructionsByVm, sleep, until } from "./helpers.js";
import { hyperfleet as runCli } from "../../cli/test/helpers.js";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { LocalCluster, type LocalNode } from "../src/local-cluster.js";
import { parseRunRecords, runRecordsPath } from "../src/run-records.js";

const MIB = 2 ** 20;

const dirs: string[] = [];
const clusters: LocalCluster[] = [];
const clients: ApiClient[] = [];

function client(cluster: LocalCluster, node: LocalNode): ApiClient {
  const c = new ApiClient(node.apiAddress, { token: cluster.token, timeoutMs: 5000 });
  clients.push(c);
  return c;
}

/** The last lines (below debug) of each node's log in `dir`. */
function logTails(dir: string): string {
  return readdirSync(dir).filter((f) => f.endsWith(".log")).map((f) => {
    const lines = readFileSync(join(dir, f), "utf8").split("\n").filter((l) => l !== "" && !l.includes('"level":"debug"'));
    return `${f}:\n${lines.slice(-12).join("\n")}`;
  }).join("\n");
}

/**
 * A fresh 3-node cluster. A node that exits while the cluster starts is retried once on a fresh
 * directory (fleetd's start-up failure is reported with the nodes' logs, never silently).
 */
async function startCluster(memoryMib: number): Promise<LocalCluster> {
  for (let attempt = 1; ; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), "fleetd-acceptance-"));
    dirs.push(dir);
    try {
      const cluster = await LocalCluster.start({ nodes: 3, dir, memoryMib });
      clusters.push(cluster);
      return cluster;
    } catch (e) {
      const why = `${e instanceof Error ? e.message : String(e)}\n${logTails(dir)}`;
      if (attempt >= 2) throw new Error(`the cluster did not start twice: ${why}`, { cause: e });
      console.warn(`fleetd acceptance: the cluster did not start (retrying once): ${why}`);
    }
  }
}

/**
 * The runs open on a node by its run records (`<dataDir>/runs.jsonl`): each VM with a `start` and no
 * `stop` after it in the node's current process (a `boot` line begins a process), with the epoch the
 * node started it at.
 */
function openRuns(dataDir: string): Map<string, number> {
  const open = new Map<string, number>();
  for (const r of parseRunRecords(readFileSync(runRecordsPath(dataDir), "utf8"))) {
    if (r.t === "boot") open.clear();
    else if (r.t === "start") open.set(r.vm, r.epoch);
    else if (r.t === "stop") open.delete(r.vm);
  }
  return open;
}

/** The VMs whose instructions advance on `node` between two reads `gapMs` apart. */
async function advancing(node: LocalNode, gapMs = 300): Promise<string[]> {
  const first = await instructionsByVm(node);
  await sleep(gapMs);
  const second = await instructionsByVm(node);
  return [...second].filter(([vm, n]) => first.has(vm) && n > first.get(vm)!).map(([vm]) => vm).sort();
}

/**
 * Kills, by pid, any nats-server or fleetd this test process started and still has: a cluster that
 * failed to start can leave one behind (LocalNatsServer.start does not kill its nats-server when it
 * cannot read the ports file).
 */
function killLeftoverChildren(): void {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== process.pid) continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (cmdline.includes("nats-server") || cmdline.includes(join("fleetd", "dist", "main.js"))) process.kill(Number(entry), "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
}

// Each test's cluster stops when the test ends: nine nodes left running under the next test's three
// took most of the machine (the last test ran 31 s alone, 49 s after the other two).
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(clusters.splice(0).map((c) => c.stop(3000)));
}, 30_000);

afterAll(async () => {
  killLeftoverChildren();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 30_000);

describe("fleetd acceptance", () => {
  it("fleetd - kill -9 of the Raft leader during a live migration ends with the VM running on exactly one node", async () => {
    const cluster = await startCluster(256);
    const byId = (id: string): LocalNode => {
      const n = cluster.nodes.find((x) => x.id === id);
      if (n === undefined) throw new Error(`no node ${id}`);
      return n;
    };
    const leaderId = await until("a leader", 10_000, async () => {
      const s = await client(cluster, cluster.nodes[0]!).clusterStatus();
      return s.leaderId === "" ? undefined : s.leaderId;
    });
    const leader = byId(leaderId);
    const followers = cluster.nodes.filter((n) => n !== leader);
    const api = client(cluster, followers[0]!);

    const created = await api.createVm({ name: "big", memoryBytes: 64 * MIB, vcpus: 1, image: "dirtier", bootargs: "rate=2000 ws=8", start: true });
    expect(created.owner).not.toBe("");
    let vm = await until("big running", 20_000, async () => {
      const v = await api.getVm({ name: "big" });
      return v.state === "VM_STATE_RUNNING" ? v : undefined;
    });
    if (vm.owner === leader.id) {
      // placed on the leader: move it to a follower first, so the leader is neither end of the migration under test
      const to = followers[0]!.id;
      await api.migrate({ vm: "big", targetNode: to });
      vm = await until("big moved off the leader", 30_000, async () => {
        const v = await api.getVm({ name: "big" });
        return v.owner === to && v.migrationId === "" && v.state === "VM_STATE_RUNNING" ? v : undefined;
      });
    }
    expect((await api.clusterStatus()).leaderId).toBe(leader.id);
    const source = byId(vm.owner);
    const target = followers.find((n) => n !== source)!;
    await until("big advancing on its owner", 10_000, async () => ((await advancing(source)).includes("big") ? true : undefined));
    const before = vm;

    // 64 KiB/s: the pre-copy lasts long enough (about a second) for the leader to die under it
    const started = await api.migrate({ vm: "big", targetNode: target.id, bandwidthLimitBytesPerSecond: 64 * 1024 });
    expect(started.targetNode).toBe(target.id);
    const updates: MigrationUpdate[] = [];
    const watcher = client(cluster, source);
    const stream = watcher.watchMigration({ migrationId: started.migrationId });
    const watched = (async () => {
      for await (const u of stream) updates.push(u);
    })().catch(() => undefined);
    await until("a pre-copy round or the result", 15_000, async () =>
      updates.some((u) => u.update === "result" || (u.update === "progress" && u.progress.phase === "MIGRATION_PHASE_PRECOPY")) ? true : undefined);
    const inFlightAtKill = !updates.some((u) => u.update === "result");

    const exited = new Promise((r) => leader.process.once("exit", r));
    leader.process.kill("SIGKILL");
    await Promise.race([exited, sleep(5000)]);
    expect(leader.process.signalCode).toBe("SIGKILL");
    // LocalCluster cannot restart a node on its data dir: the old leader stays dead.

    const survivorApi = client(cluster, target);
    const settled: Vm = await until("big settled with one owner", 20_000, async () => {
      const s = await survivorApi.clusterStatus();
      if (s.leaderId === "" || s.leaderId === leader.id) return undefined;
      const v = await survivorApi.getVm({ name: "big" });
      return v.migrationId === "" && v.state === "VM_STATE_RUNNING" && (v.owner === source.id || v.owner === target.id) ? v : undefined;
    });
    // the other survivor agrees, once it has applied as far (bounded)
    const sourceApi = client(cluster, source);
    const other = await until("the other survivor's view", 5_000, async () => {
      const v = await sourceApi.getVm({ name: "big" });
      return v.migrationId === "" ? v : undefined;
    });
    expect({ owner: other.owner, epoch: other.epoch }).toEqual({ owner: settled.owner, epoch: settled.epoch });
    expect(settled.epoch).toBe(settled.owner === target.id ? before.epoch + 1 : before.epoch);
    await Promise.race([watched, sleep(5000)]);
    const last = updates.at(-1);
    if (last?.update === "result") expect(last.result.ok).toBe(settled.owner === target.id);

    const owner = byId(settled.owner);
    const notOwner = settled.owner === source.id ? target : source;
    await until("big advancing on its owner", 10_000, async () => ((await advancing(owner)).includes("big") ? true : undefined));
    await until("big gone from the other survivor", 10_000, async () => ((await instructionsByVm(notOwner)).has("big") ? undefined : true));
    // a few bounded tries: a starved owner may miss one 300 ms window on 2 shared cores; a copy running elsewhere would not go away
    const onlyOwner = async (): Promise<string[]> => {
      const on: string[] = [];
      for (const n of [source, target]) if ((await advancing(n)).includes("big")) on.push(n.id);
      return on;
    };
    let advancingOn: string[] = [];
    for (let i = 0; i < 3 && JSON.stringify(advancingOn) !== JSON.stringify([owner.id]); i++) advancingOn = await onlyOwner();
    expect(advancingOn).toEqual([owner.id]);
    expect(inFlightAtKill, "the migration had already ended when the leader was killed").toBe(true);
  }, 90_000);

  it("fleetd - ten VMs created through the CLI, each migrated while it runs, owners and epochs agree", async () => {
    const cluster = await startCluster(256);
    const flags = ["--api", cluster.apiAddresses.join(","), "--token", cluster.token, "--json"];
    const names = Array.from({ length: 10 }, (_, i) => `small-${i}`);
    // created all at once, as an operator's script would
    await Promise.all(names.map(async (name, i) => {
      const r = await runCli(["vm", "create", name, "--memory", `${16 + (i % 3) * 8}M`, "--image", "dirtier", "--bootargs", "rate=50 ws=1", ...flags], { cwd: tmpdir() });
      expect(r.code, `vm create ${name}: ${r.stderr}`).toBe(0);
      const created = JSON.parse(r.stdout) as Vm;
      expect(created.name).toBe(name);
      expect(created.epoch).toBe(1);
    }));
    const api = client(cluster, cluster.nodes[1]!);
    await until("ten VMs running", 30_000, async () => {
      const { vms } = await api.listVms({});
      return vms.length === 10 && vms.every((v) => v.state === "VM_STATE_RUNNING") ? true : undefined;
    });
    for (const name of names) {
      const before = await api.getVm({ name });
      const r = await runCli(["vm", "migrate", name, ...flags], { cwd: tmpdir(), timeoutMs: 45_000 });
      expect(r.code, `vm migrate ${name}: ${r.stderr}`).toBe(0);
      const done = JSON.parse(r.stdout) as { vm: string; sourceNode: string; targetNode: string; result: { ok: boolean } };
      expect(done.vm).toBe(name);
      expect(done.sourceNode).toBe(before.owner);
      expect(done.targetNode).not.toBe(before.owner);
      expect(done.result.ok).toBe(true);
    }

    const listed = await runCli(["vm", "list", ...flags], { cwd: tmpdir() });
    expect(listed.code, `vm list: ${listed.stderr}`).toBe(0);
    const vms = JSON.parse(listed.stdout) as Vm[];
    expect(vms.map((v) => v.name).sort()).toEqual([...names].sort());
    for (const v of vms) {
      expect({ name: v.name, state: v.state, epoch: v.epoch, migrationId: v.migrationId }).toEqual({ name: v.name, state: "VM_STATE_RUNNING", epoch: 2, migrationId: "" });
    }
    const expected = new Map(cluster.nodes.map((n) => [n.id, vms.filter((v) => v.owner === n.id).map((v) => v.name).sort()]));
    // every node runs exactly the VMs the cluster says it owns (a migrated-away copy may take a moment to go)
    await until("each node's /metrics matching the cluster's owners", 10_000, async () => {
      for (const n of cluster.nodes) {
        const local = [...(await instructionsByVm(n)).keys()].sort();
        if (JSON.stringify(local) !== JSON.stringify(expected.get(n.id))) return undefined;
      }
      return true;
    }).catch(async (e: unknown) => {
      const seen: Record<string, string[]> = {};
      for (const n of cluster.nodes) seen[n.id] = [...(await instructionsByVm(n)).keys()].sort();
      expect(seen).toEqual(Object.fromEntries(expected));
      throw e;
    });
    for (const n of cluster.nodes) {
      let running = await advancing(n);
      for (let i = 1; i < 3 && JSON.stringify(running) !== JSON.stringify(expected.get(n.id)); i++) running = await advancing(n);
      expect({ node: n.id, advancing: running }).toEqual({ node: n.id, advancing: expected.get(n.id) });
    }
    // what each node itself believes it runs, from its run records (<data-dir>/runs.jsonl): the (owner,
    // epoch) of every VM in the cluster state is the (node, epoch) of the one open run of it
    const raft = Object.fromEntries(vms.map((v) => [v.name, `${v.owner}@${v.epoch}`]));
    const believed = (): Record<string, string> => {
      const out: Record<string, string[]> = {};
      for (const n of cluster.nodes) {
        for (const [vm, epoch] of openRuns(join(cluster.dir, n.id))) (out[vm] ??= []).push(`${n.id}@${epoch}`);
      }
      return Object.fromEntries(Object.entries(out).map(([vm, runs]) => [vm, runs.sort().join(",")]));
    };
    await until("each node's run records matching the cluster's owners and epochs", 10_000, async () =>
      (JSON.stringify(Object.entries(believed()).sort()) === JSON.stringify(Object.entries(raft).sort()) ? true : undefined)).catch(() => undefined);
    expect(believed()).toEqual(raft);
  }, 120_000);
  it("fleetd - stop, start, save, restore, quick migration, drain and SIGTERM through the CLI, owners and epochs agree", async () => {
    const cluster = await startCluster(256);
    const flags = ["--api", cluster.apiAddresses.join(","), "--token", cluster.token, "--json"];
    const cli = async (args: string[], timeoutMs = 60_000): Promise<unknown> => {
      const r = await runCli([...args, ...flags], { cwd: tmpdir(), timeoutMs });
      expect(r.code, `hyperfleet ${args.join(" ")}: ${r.stderr}`).toBe(0);
      return JSON.parse(r.stdout) as unknown;
    };
    const api = client(cluster, cluster.nodes[0]!);
    const byId = (id: string): LocalNode => cluster.nodes.find((n) => n.id === id)!;
    const names = ["a", "b", "c", "d", "e"];
    for (const name of names) await cli(["vm", "create", name, "--memory", "16M", "--image", "dirtier", "--bootargs", "rate=50 ws=1"]);
    const running = (name: string): Promise<Vm> => until(`${name} running`, 30_000, async () => {
      const v = await api.getVm({ name });
      return v.state === "VM_STATE_RUNNING" && v.migrationId === "" ? v : undefined;
    });
    for (const name of names) await running(name);
    const advancingOn = (name: string, node: string): Promise<number> => until(`${name} advancing on ${node}`, 15_000, async () => {
      const n = byId(node);
      if (!(await advancing(n)).includes(name)) return undefined;
      return (await instructionsByVm(n)).get(name);
    });
    const goneEverywhere = (name: string): Promise<true> => until(`${name} gone from every node`, 10_000, async () => {
      for (const n of cluster.nodes) if (n.process.exitCode === null && (await instructionsByVm(n)).has(name)) return undefined;
      return true;
    });

    // stop and start: a fresh boot
    await running("a");
    expect((await cli(["vm", "stop", "a"]) as Vm).desiredState).toBe("VM_DESIRED_STATE_STOPPED");
    await goneEverywhere("a");
    expect((await api.getVm({ name: "a" })).state).toBe("VM_STATE_STOPPED");
    await cli(["vm", "start", "a"]);
    await advancingOn("a", (await running("a")).owner);

    // save and restore: the guest goes on from where it was saved (its retired instructions too)
    const b = await running("b");
    const beforeSave = await advancingOn("b", b.owner);
    const saved = await cli(["vm", "save", "b"]) as { savedState: string; sizeBytes: number; vm: Vm };
    expect(saved.savedState).toBe("saved");
    expect(saved.sizeBytes).toBeGreaterThan(0);
    expect(saved.vm.state).toBe("VM_STATE_SAVED");
    await goneEverywhere("b");
    const restored = await cli(["vm", "restore", "b"]) as Vm;
    expect(restored.owner).toBe(b.owner);
    expect(restored.epoch).toBe(b.epoch);
    expect(await advancingOn("b", b.owner)).toBeGreaterThan(beforeSave);

    // a named saved state, then Start of the saved VM restores it
    const c = await running("c");
    const beforeSaveC = await advancingOn("c", c.owner);
    expect((await cli(["vm", "save", "c", "--as", "snap-1"]) as { savedState: string }).savedState).toBe("snap-1");
    expect((await api.getVm({ name: "c" })).savedState).toBe("snap-1");
    await cli(["vm", "start", "c"]);
    await running("c");
    expect(await advancingOn("c", c.owner)).toBeGreaterThan(beforeSaveC);
    expect((await api.getVm({ name: "c" })).savedState).toBe("");

    // quick migration: paused, copied, resumed on the target; the epoch moves on by one
    const d = await running("d");
    const beforeQuick = await advancingOn("d", d.owner);
    const quick = await cli(["vm", "migrate", "d", "--quick"]) as { targetNode: string; result: { ok: boolean; downtimeMs: number; totalMs: number } };
    expect(quick.result.ok).toBe(true);
    expect(quick.result.downtimeMs).toBeGreaterThan(0);
    const movedD = await running("d");
    expect({ owner: movedD.owner, epoch: movedD.epoch }).toEqual({ owner: quick.targetNode, epoch: d.epoch + 1 });
    expect(await advancingOn("d", movedD.owner)).toBeGreaterThan(beforeQuick);

    // drain the node with the most VMs: they all go elsewhere and keep running; then it takes VMs again
    const owned = async (): Promise<Map<string, Vm[]>> => {
      const m = new Map<string, Vm[]>(cluster.nodes.map((n) => [n.id, []]));
      for (const v of (await api.listVms({})).vms) m.get(v.owner)?.push(v);
      return m;
    };
    const [drainId, drainVms] = [...(await owned())].sort((x, y) => y[1].length - x[1].length)[0]!;
    expect(drainVms.length).toBeGreaterThan(0);
    const drained = await cli(["node", "drain", drainId, "--wait", "--timeout", "60"], 70_000) as { state: string; usage: { vms: number } };
    expect(drained.state).toBe("NODE_STATE_DRAINED");
    expect(drained.usage.vms).toBe(0);
    for (const v of drainVms) {
      const now = await running(v.name);
      expect(now.owner).not.toBe(drainId);
      expect(now.epoch).toBe(v.epoch + 1);
      await advancingOn(v.name, now.owner);
    }
    expect((await instructionsByVm(byId(drainId))).size).toBe(0);
    const created = await api.createVm({ name: "f", memoryBytes: 16 * MIB, vcpus: 1, image: "dirtier", bootargs: "rate=50 ws=1", start: true });
    expect(created.owner).not.toBe(drainId);
    expect((await cli(["node", "resume", drainId]) as { state: string }).state).toBe("NODE_STATE_ACTIVE");

    // SIGTERM of a node that runs VMs: they are live-migrated away (not rebooted) and it exits 0
    const now = await owned();
    const [termId, termVms] = [...now].filter(([id]) => id !== drainId).sort((x, y) => y[1].length - x[1].length)[0]!;
    expect(termVms.length).toBeGreaterThan(0);
    const counts = await instructionsByVm(byId(termId));
    const term = byId(termId);
    const exited = new Promise<number | null>((r) => term.process.once("exit", (code) => r(code)));
    term.process.kill("SIGTERM");
    const exit = await Promise.race([exited, sleep(45_000).then(() => "still running")]);
    expect(exit, `${termId} after SIGTERM:\n${logTails(dirs.at(-1)!)}`).toBe(0);
    const other = client(cluster, cluster.nodes.find((n) => n.id !== termId)!);
    for (const v of termVms) {
      const moved = await until(`${v.name} running elsewhere`, 30_000, async () => {
        const x = await other.getVm({ name: v.name });
        return x.state === "VM_STATE_RUNNING" && x.owner !== termId && x.migrationId === "" ? x : undefined;
      });
      expect(moved.epoch).toBe(v.epoch + 1);
      expect(await advancingOn(v.name, moved.owner)).toBeGreaterThan(counts.get(v.name) ?? 0);
    }

    // every VM's owner and epoch agree with the one node that runs it
    const { vms } = await other.listVms({});
    expect(vms.map((v) => v.name).sort()).toEqual([...names, "f"].sort());
    const alive = cluster.nodes.filter((n) => n.id !== termId);
    await until("each live node runs exactly what it owns", 15_000, async () => {
      for (const n of alive) {
        const local = [...(await instructionsByVm(n)).keys()].sort();
        const mine = vms.filter((v) => v.owner === n.id).map((v) => v.name).sort();
        if (JSON.stringify(local) !== JSON.stringify(mine)) return undefined;
      }
      return true;
    });
    for (const v of vms) expect(v.state).toBe("VM_STATE_RUNNING");
  }, 240_000);
});
