/**
 * The operator commands (`vm`, `node`, `cluster`) as an operator meets them: the built CLI against a
 * management API server on loopback with the fake backend (3 nodes, VMs `web` on n1 and `db` on n2).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CallContext, Migration, Vm } from "@hyperfleet/api";
import type { FakeBackend } from "../../../packages/api/test/fake-backend.js";
import { bandwidthBytesPerSecondOf, memoryBytesOf } from "../src/commands/values.js";
import { formatBytes, formatDuration } from "../src/output.js";
import { UsageError } from "../src/run.js";
import {
  CLI, hyperfleet, parseKeyValue, parseTable, removeTempDirs, runProcess, startTestCluster, tempDir, TOKEN, type TestCluster,
} from "./helpers.js";

const MiB = 1024 * 1024;

afterAll(removeTempDirs);

/** The single line of `stderr` (fails the test when there are more). */
function oneLine(stderr: string): string {
  const lines = stderr.trimEnd().split("\n");
  expect(lines).toHaveLength(1);
  return lines[0]!;
}

function hasScript(): boolean {
  try {
    execFileSync("sh", ["-c", "command -v script"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

function callContext(): CallContext {
  return { method: "Migrations/Cancel", peer: "test", signal: new AbortController().signal, deadlineMs: null, hops: 0 };
}

/** Waits (bounded) until `condition` holds. */
async function until(condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  for (let waitedMs = 0; !condition(); waitedMs += 20) {
    if (waitedMs >= timeoutMs) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A running 64M VM on n1 (the first active node with room), made in the backend directly. */
async function addVm(backend: FakeBackend, name: string): Promise<void> {
  await backend.createVm(
    {
      name, memoryBytes: 64 * MiB, vcpus: 1, image: "dirtier", bootMode: "BOOT_MODE_BARE", bootargs: "", antiAffinityGroup: "",
      priority: "VM_PRIORITY_NORMAL", restartPolicy: "RESTART_POLICY_RESTART", start: true, diskBytes: [], noIntegration: false, nics: 0, nicMacs: [],
    },
    callContext(),
  );
}

function migrationOf(backend: FakeBackend, vm: string): Migration {
  const m = [...backend.migrations.values()].find((x) => x.vm === vm);
  if (m === undefined) throw new Error(`no migration of ${vm}`);
  return m;
}

function useCluster(): { get: () => TestCluster; flags: () => string[] } {
  let cluster: TestCluster | undefined;
  beforeAll(async () => {
    cluster = await startTestCluster();
  });
  afterAll(async () => {
    await cluster?.close();
  });
  return { get: () => cluster!, flags: () => [...cluster!.flags] };
}

describe.concurrent("commands - reading VMs", { timeout: 60_000 }, () => {
  const c = useCluster();

  it("vm list prints a table of every VM", async () => {
    const r = await hyperfleet(["vm", "list", ...c.flags()]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    const rows = parseTable(r.stdout);
    expect(rows.map((row) => row.NAME)).toEqual(["db", "web"]);
    expect(rows[1]).toMatchObject({ NAME: "web", STATE: "running", NODE: "n1", MEMORY: "256M", VCPUS: "2", IMAGE: "echo", EPOCH: "1" });
    expect(rows[0]).toMatchObject({ NAME: "db", STATE: "stopped", NODE: "n2", MEMORY: "512M", VCPUS: "1" });
    expect(rows[1]!.AGE).toMatch(/^\d+d\d+h$/);
  });

  it("vm list --node keeps that node's VMs", async () => {
    const r = await hyperfleet(["vm", "list", "--node", "n2", ...c.flags()]);
    expect(r.code).toBe(0);
    expect(parseTable(r.stdout).map((row) => row.NAME)).toEqual(["db"]);
  });

  it("vm list --json prints the VMs as one JSON document", async () => {
    const r = await hyperfleet(["vm", "list", "--json", ...c.flags()]);
    expect(r.code).toBe(0);
    const vms = JSON.parse(r.stdout) as Vm[];
    expect(vms.map((vm) => [vm.name, vm.state, vm.owner, vm.spec.memoryBytes])).toEqual([
      ["db", "VM_STATE_STOPPED", "n2", 512 * MiB],
      ["web", "VM_STATE_RUNNING", "n1", 256 * MiB],
    ]);
  });

  it("vm show prints one VM as key/value lines", async () => {
    const r = await hyperfleet(["vm", "show", "web", ...c.flags()]);
    expect(r.code).toBe(0);
    expect(parseKeyValue(r.stdout)).toMatchObject({
      Name: "web", State: "running", "Desired state": "running", Node: "n1", Epoch: "1", Memory: "256M", vCPUs: "2", Image: "echo",
      "Boot mode": "bare", Priority: "normal", "Restart policy": "restart", Migration: "-",
    });
  });

  it("vm show --json prints the VM", async () => {
    const r = await hyperfleet(["vm", "show", "db", "--json", ...c.flags()]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ name: "db", owner: "n2", spec: { vcpus: 1, image: "kv" } });
  });
});

describe.concurrent("commands - VM lifecycle", { timeout: 60_000 }, () => {
  const c = useCluster();

  it("create --no-start, then start and delete", async () => {
    const created = await hyperfleet([
      "vm", "create", "t1", "--memory", "64M", "--vcpus", "1", "--image", "dirtier", "--bootargs", "rate=1000",
      "--anti-affinity", "g1", "--priority", "high", "--no-start", ...c.flags(),
    ]);
    expect(created.stderr).toBe("");
    expect(created.code).toBe(0);
    expect(created.stdout).toBe("created t1: stopped on n1\n");
    expect(c.get().backend.vms.get("t1")!.spec).toMatchObject({
      memoryBytes: 64 * MiB, vcpus: 1, image: "dirtier", bootargs: "rate=1000", antiAffinityGroup: "g1", priority: "VM_PRIORITY_HIGH",
    });
    expect((await hyperfleet(["vm", "start", "t1", ...c.flags()])).stdout).toBe("started t1: running on n1\n");
    expect((await hyperfleet(["vm", "delete", "t1", "--force", ...c.flags()])).stdout).toBe("deleted t1\n");
    expect(c.get().backend.vms.has("t1")).toBe(false);
  });

  it("pause, resume, stop and delete", async () => {
    await addVm(c.get().backend, "t3");
    expect((await hyperfleet(["vm", "pause", "t3", ...c.flags()])).stdout).toBe("paused t3: paused on n1\n");
    const resumed = await hyperfleet(["vm", "resume", "t3", "--json", ...c.flags()]);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ name: "t3", state: "VM_STATE_RUNNING" });
    expect((await hyperfleet(["vm", "stop", "t3", "--timeout", "5", ...c.flags()])).stdout).toBe("stopped t3: stopped on n1\n");
    expect((await hyperfleet(["vm", "delete", "t3", ...c.flags()])).stdout).toBe("deleted t3\n");
  });

  it("save, then restore from the saved state; an unknown saved state: exit 1", async () => {
    await addVm(c.get().backend, "t4");
    expect((await hyperfleet(["vm", "save", "t4", ...c.flags()])).stdout).toBe("saved t4 as saved (64M) on n1\n");
    const named = await hyperfleet(["vm", "save", "t4", "--as", "snap-1", "--json", ...c.flags()]);
    expect(named.code).toBe(1);
    expect(oneLine(named.stderr)).toBe("hyperfleet: vm t4 is not running");
    expect((await hyperfleet(["vm", "restore", "t4", ...c.flags()])).stdout).toBe("restored t4: running on n1\n");
    const missing = await hyperfleet(["vm", "restore", "t4", "--from", "nope", ...c.flags()]);
    expect(missing.code).toBe(1);
    expect(oneLine(missing.stderr)).toBe("hyperfleet: vm t4 has no saved state nope");
  });

  it("events follows what happens to a VM, one line each, and --count stops it", async () => {
    const events = hyperfleet(["vm", "events", "t5", "--count", "3", ...c.flags()]);
    // once the CLI's stream is open (bounded), what follows is what it must print
    for (let i = 0; i < 200 && !c.get().backend.calls.includes("watchVmEvents"); i++) await new Promise((r) => setTimeout(r, 50));
    await addVm(c.get().backend, "t5");
    await c.get().backend.pauseVm({ name: "t5" }, callContext());
    const r = await events;
    expect(r.code, `${r.stderr} / ${r.stdout}`).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\S+ t5 created on n1$/);
    expect(lines[1]).toMatch(/ t5 stopped -> running \(desired running, /);
    expect(lines[2]).toMatch(/ t5 running -> paused \(desired paused, pause requested\)$/);
  });

  it("stop: --force and --timeout together are a usage error", async () => {
    const both = await hyperfleet(["vm", "stop", "web", "--force", "--timeout", "5", ...c.flags()]);
    expect(both.code).toBe(2);
    expect(oneLine(both.stderr)).toMatch(/^hyperfleet: --timeout is for a clean shutdown/);
  });

  it("vm - create --disk (repeatable) and --no-integration; show prints disks, guest health and KVP", async () => {
    const r = await hyperfleet(["vm", "create", "t6", "--memory", "32M", "--image", "vmbus-probe", "--disk", "64M", "--disk", "1G", ...c.flags()]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(c.get().backend.vms.get("t6")!.spec).toMatchObject({ diskBytes: [64 * MiB, 1024 * MiB], noIntegration: false });
    const bare = await hyperfleet(["vm", "create", "t8", "--memory", "32M", "--image", "vmbus-probe", "--no-integration", "--no-start", ...c.flags()]);
    expect(bare.code).toBe(0);
    expect(c.get().backend.vms.get("t8")!.spec).toMatchObject({ diskBytes: [], noIntegration: true });
    const shown = await hyperfleet(["vm", "show", "t6", ...c.flags()]);
    expect(shown.stdout).toMatch(/Disks:\s+disk0 64M, disk1 1G\n/);
    expect(shown.stdout).toMatch(/Integration:\s+on\n/);
    expect(shown.stdout).toMatch(/Guest health:\s+ok\n/);
    expect(shown.stdout).toMatch(/Guest KVP:\s+probe\.status=ready\n/);
    const bad = await hyperfleet(["vm", "create", "t7", "--image", "vmbus-probe", "--disk", "1.1K", ...c.flags()]);
    expect(bad.code).toBe(2);
    expect(oneLine(bad.stderr)).toMatch(/^hyperfleet: --disk: 1.1K is not a positive multiple of 512 bytes/);
    expect(c.get().backend.vms.has("t7")).toBe(false);
  });

  it("vm - create --nics and --nic-mac (repeatable); show prints the NICs' MACs; both together or a bad MAC are refused", async () => {
    const r = await hyperfleet(["vm", "create", "t9", "--memory", "32M", "--image", "kvserver", "--nics", "2", "--no-start", ...c.flags()]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const macs = c.get().backend.vms.get("t9")!.spec.nicMacs;
    expect(macs).toHaveLength(2);
    const shown = await hyperfleet(["vm", "show", "t9", ...c.flags()]);
    expect(shown.stdout).toContain(`NICs:`);
    expect(shown.stdout).toContain(`nic0 ${macs[0]!}, nic1 ${macs[1]!}\n`);
    const given = await hyperfleet(["vm", "create", "t10", "--image", "kvserver", "--nic-mac", "02:48:00:00:0a:01", "--nic-mac", "02:48:00:00:0a:02", "--no-start", ...c.flags()]);
    expect(given.code).toBe(0);
    expect(c.get().backend.vms.get("t10")!.spec.nicMacs).toEqual(["02:48:00:00:0a:01", "02:48:00:00:0a:02"]);
    const both = await hyperfleet(["vm", "create", "t11", "--image", "kvserver", "--nics", "1", "--nic-mac", "02:48:00:00:0a:03", ...c.flags()]);
    expect(both.code).not.toBe(0);
    expect(oneLine(both.stderr)).toMatch(/nic_macs: give either nics \(1\) or nic_macs, not both/);
    const bad = await hyperfleet(["vm", "create", "t12", "--image", "kvserver", "--nic-mac", "52:54:00:12:34:56", ...c.flags()]);
    expect(bad.code).not.toBe(0);
    expect(oneLine(bad.stderr)).toMatch(/nic_macs\[0\]: must be "02:48:" and four more lowercase hex bytes/);
    const many = await hyperfleet(["vm", "create", "t13", "--image", "kvserver", "--nics", "9", ...c.flags()]);
    expect(many.code).toBe(2);
    expect(oneLine(many.stderr)).toMatch(/^hyperfleet: --nics: "9" is not an integer from 0 to 8/);
    expect(["t11", "t12", "t13"].some((n) => c.get().backend.vms.has(n))).toBe(false);
  });

  it("vm - kvp sets and takes back a host value; show prints the host's values; a bad entry is a usage error", async () => {
    const r = await hyperfleet(["vm", "kvp", "web", "app.port=8080", ...c.flags()]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^set app\.port for web: /);
    expect(c.get().backend.vms.get("web")!.hostKvp).toEqual({ "app.port": "8080" });
    const shown = await hyperfleet(["vm", "show", "web", ...c.flags()]);
    expect(shown.stdout).toMatch(/Host KVP:\s+app\.port=8080\n/);
    const gone = await hyperfleet(["vm", "kvp", "web", "app.port", "--delete", ...c.flags()]);
    expect(gone.code).toBe(0);
    expect(c.get().backend.vms.get("web")!.hostKvp).toEqual({});
    const bad = await hyperfleet(["vm", "kvp", "web", "no-equals-sign", ...c.flags()]);
    expect(bad.code).toBe(2);
    expect(oneLine(bad.stderr)).toMatch(/^hyperfleet: expected key=value, got "no-equals-sign"/);
  });

  it("create starts the VM unless --no-start", async () => {
    const r = await hyperfleet(["vm", "create", "t2", "--memory", "32M", "--image", "dirtier", "--json", ...c.flags()]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ name: "t2", state: "VM_STATE_RUNNING", spec: { memoryBytes: 32 * MiB, vcpus: 1 } });
    const deleted = await hyperfleet(["vm", "delete", "t2", "--force", "--json", ...c.flags()]);
    expect(JSON.parse(deleted.stdout)).toEqual({ name: "t2", deleted: true });
  });
});

describe.concurrent("commands - errors are one line on stderr", { timeout: 60_000 }, () => {
  const c = useCluster();

  it("an unknown VM: exit 1 and the server's message", async () => {
    const r = await hyperfleet(["vm", "show", "nope", ...c.flags()]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(oneLine(r.stderr)).toBe("hyperfleet: vm nope not found");
  });

  it("a refused change: exit 1 and the server's message", async () => {
    const r = await hyperfleet(["vm", "start", "web", ...c.flags()]);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toBe("hyperfleet: vm web is already running");
  });

  it("with --json an error still goes to stderr and stdout stays empty", async () => {
    const r = await hyperfleet(["vm", "show", "nope", "--json", ...c.flags()]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(oneLine(r.stderr)).toBe("hyperfleet: vm nope not found");
  });

  it("a bad --memory: exit 2 naming the option, nothing sent", async () => {
    const r = await hyperfleet(["vm", "create", "bad", "--memory", "12Q", "--image", "dirtier", ...c.flags()]);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/^hyperfleet: --memory: bad size "12Q"/);
    expect(c.get().backend.vms.has("bad")).toBe(false);
  });

  it("a bad --vcpus, --priority or --bandwidth-limit: exit 2", async () => {
    const vcpus = await hyperfleet(["vm", "create", "bad", "--vcpus", "0", "--image", "dirtier", ...c.flags()]);
    expect(vcpus.code).toBe(2);
    expect(oneLine(vcpus.stderr)).toMatch(/^hyperfleet: --vcpus: "0" is not an integer from 1 to 8/);
    const priority = await hyperfleet(["vm", "create", "bad", "--priority", "urgent", "--image", "dirtier", ...c.flags()]);
    expect(priority.code).toBe(2);
    expect(oneLine(priority.stderr)).toMatch(/^hyperfleet: option '--priority <priority>' argument 'urgent' is invalid/);
    const rate = await hyperfleet(["vm", "migrate", "web", "--bandwidth-limit", "fast", ...c.flags()]);
    expect(rate.code).toBe(2);
    expect(oneLine(rate.stderr)).toMatch(/^hyperfleet: --bandwidth-limit: bad rate "fast"/);
  });

  it("an unknown option: exit 2", async () => {
    const r = await hyperfleet(["vm", "list", "--bogus", ...c.flags()]);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toBe("hyperfleet: unknown option '--bogus'");
  });

  it("a wrong token: exit 1 naming authentication", async () => {
    const r = await hyperfleet(["vm", "list", "--api", c.get().server.address, "--token", "not-the-token"]);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toMatch(/^hyperfleet: authentication failed: wrong cluster token/);
  });

  it("no connection configured: exit 2 saying what to do", async () => {
    const r = await hyperfleet(["vm", "list"]);
    expect(r.code).toBe(2);
    const line = oneLine(r.stderr);
    expect(line).toContain("no cluster to talk to");
    expect(line).toContain("--api HOST:PORT");
    expect(line).toContain("HYPERFLEET_API");
    expect(line).toContain("hyperfleet up");
  });

  it("an unreachable API: exit 1 naming the address", async () => {
    const r = await hyperfleet(["node", "list", "--api", "127.0.0.1:1", "--token", TOKEN]);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toBe("hyperfleet: the cluster API is unavailable (addresses from --api): 127.0.0.1:1: connect ECONNREFUSED 127.0.0.1:1");
  });
});

describe.concurrent("commands - finding the cluster", { timeout: 60_000 }, () => {
  const c = useCluster();

  it("HYPERFLEET_API and HYPERFLEET_TOKEN", async () => {
    const r = await hyperfleet(["vm", "list", "--json"], { env: { HYPERFLEET_API: c.get().server.address, HYPERFLEET_TOKEN: TOKEN } });
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as Vm[]).length).toBe(2);
  });

  it(".hyperfleet/cluster.json, trying its addresses in order", async () => {
    const cwd = tempDir();
    mkdirSync(join(cwd, ".hyperfleet"));
    const file = { apiAddresses: ["127.0.0.1:1", c.get().server.address], token: TOKEN };
    writeFileSync(join(cwd, ".hyperfleet", "cluster.json"), JSON.stringify(file));
    const r = await hyperfleet(["cluster", "status", "--json"], { cwd });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ leaderId: "n1", term: 3 });
  });

  it("--dir names another directory; --token wins over the file's", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "cluster.json"), JSON.stringify({ apiAddresses: [c.get().server.address], token: "stale" }));
    const stale = await hyperfleet(["node", "list", "--dir", dir]);
    expect(stale.code).toBe(1);
    expect(oneLine(stale.stderr)).toContain("authentication failed");
    const r = await hyperfleet(["node", "list", "--dir", dir, "--token", TOKEN, "--json"]);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as unknown[]).length).toBe(3);
  });
});

describe.concurrent("commands - nodes and cluster", { timeout: 60_000 }, () => {
  const c = useCluster();

  it("node list prints capacity and usage", async () => {
    const r = await hyperfleet(["node", "list", ...c.flags()]);
    expect(r.code).toBe(0);
    const rows = parseTable(r.stdout);
    expect(rows.map((row) => row.NODE)).toEqual(["n1", "n2", "n3"]);
    expect(rows[0]).toMatchObject({ STATE: "active", ADDRESS: "127.0.0.1:7001", VMS: "1", RUNNING: "1", VCPUS: "2/4", MEMORY: "256M/1G", "MEM%": "25.0%", LEASE: "live", LABELS: "zone=a" });
    expect(rows[2]).toMatchObject({ NODE: "n3", STATE: "drained", VMS: "0", VCPUS: "0/4", MEMORY: "0/1G" });
  });

  it("node list --json", async () => {
    const r = await hyperfleet(["node", "list", "--json", ...c.flags()]);
    const nodes = JSON.parse(r.stdout) as { id: string; capacity: { vcpus: number } }[];
    expect(nodes.map((n) => [n.id, n.capacity.vcpus])).toEqual([["n1", 4], ["n2", 4], ["n3", 4]]);
  });

  it("cluster status prints the leader, term, ratios and members", async () => {
    const r = await hyperfleet(["cluster", "status", ...c.flags()]);
    expect(r.code).toBe(0);
    expect(parseKeyValue(r.stdout)).toMatchObject({
      Cluster: "test-cluster", Leader: "n1 (127.0.0.1:7001)", Term: "3", "Commit index": "42", Nodes: "3", VMs: "2 (1 running)",
      "VMs per node": "0.50", "vCPUs per pCPU": "0.38", "Memory committed": "37.5%",
    });
    const members = parseTable(r.stdout.split("\n\n")[1]!);
    expect(members.map((m) => [m.MEMBER, m.ROLE, m.MATCH])).toEqual([["n1", "leader", "42"], ["n2", "follower", "42"], ["n3", "follower", "41"]]);
  });

  it("cluster status --json", async () => {
    const r = await hyperfleet(["cluster", "status", "--json", ...c.flags()]);
    expect(JSON.parse(r.stdout)).toMatchObject({ clusterId: "test-cluster", leaderId: "n1", term: 3, members: [{ id: "n1" }, { id: "n2" }, { id: "n3" }] });
  });
});

describe.concurrent("commands - node drain and resume", { timeout: 60_000 }, () => {
  const c = useCluster();

  it("node drain moves the VMs off; node resume brings the node back", async () => {
    const drain = await hyperfleet(["node", "drain", "n2", ...c.flags()]);
    expect(drain.code).toBe(0);
    expect(drain.stdout).toMatch(/^draining n2: 1 VM\(s\) to move/);
    const resume = await hyperfleet(["node", "resume", "n2", ...c.flags()]);
    expect(resume.stdout).toBe("n2 is active\n");
  });

  it("node drain of an empty node --json", async () => {
    const empty = await hyperfleet(["node", "drain", "n3", "--json", ...c.flags()]);
    expect(JSON.parse(empty.stdout)).toMatchObject({ id: "n3", state: "NODE_STATE_DRAINED" });
  });

  it("node drain of an unknown node: exit 1", async () => {
    const unknown = await hyperfleet(["node", "drain", "n9", ...c.flags()]);
    expect(unknown.code).toBe(1);
    expect(oneLine(unknown.stderr)).toBe("hyperfleet: node n9 not found");
  });
});

describe.concurrent("commands - vm migrate", { timeout: 60_000 }, () => {
  const c = useCluster();

  it("without a terminal: one line per round, then the outcome", async () => {
    await addVm(c.get().backend, "mig-lines");
    const r = await hyperfleet([
      "vm", "migrate", "mig-lines", "--to", "n2", "--bandwidth-limit", "1G", "--downtime-limit", "50", "--policy", "force", ...c.flags(),
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(4);
    expect(lines[0]).toBe(
      "round 1 (precopy): 8192 pages left, dirty 5000 pages/s (20.5 MB/s), throughput 1000.0 MB/s, expected downtime 50 ms, ETA 200 ms",
    );
    expect(lines[1]).toMatch(/^round 2 \(precopy\): 1024 pages left, /);
    expect(lines[2]).toMatch(/^round 3 \(stop-and-copy\): 128 pages left, .*ETA 0 ms$/);
    expect(lines[3]).toBe("migrated mig-lines from n1 to n2: downtime 12 ms, total 420 ms, 83.9 MB sent, 3 rounds");
    expect(migrationOf(c.get().backend, "mig-lines").options).toMatchObject({
      kind: "MIGRATION_KIND_LIVE", bandwidthLimitBytesPerSecond: 125_000_000, downtimeLimitMs: 50, policy: "NO_CONVERGENCE_POLICY_FORCE",
    });
  });

  it("--json: the rounds and the result in one document; 125MB/s is 1G", async () => {
    await addVm(c.get().backend, "mig-json");
    const r = await hyperfleet(["vm", "migrate", "mig-json", "--quick", "--bandwidth-limit", "125MB/s", "--json", ...c.flags()]);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as { rounds: { round: number }[] };
    expect(doc).toMatchObject({ vm: "mig-json", sourceNode: "n1", targetNode: "n2", result: { ok: true, rounds: 3, downtimeMs: 12 } });
    expect(doc.rounds.map((p) => p.round)).toEqual([1, 2, 3]);
    expect(migrationOf(c.get().backend, "mig-json").options).toMatchObject({ kind: "MIGRATION_KIND_QUICK", bandwidthLimitBytesPerSecond: 125_000_000 });
  });

  it.skipIf(!hasScript())("on a terminal (a pty from `script`): a progress bar, then the outcome", async () => {
    await addVm(c.get().backend, "mig-tty");
    const command = [process.execPath, CLI, "vm", "migrate", "mig-tty", "--to", "n2", ...c.flags()].map(shellQuote).join(" ");
    const r = await runProcess("script", ["-qfec", command, "/dev/null"]);
    expect(r.code).toBe(0);
    const text = r.stdout.replace(/\r/g, "");
    expect(text).toContain("migrating mig-tty [");
    expect(text).toContain("100% | round 3 stop-and-copy | dirty 20.5 MB/s | 1000.0 MB/s | ETA 0 ms");
    // the ETA field: "-" before the first round, then each round's ETA (300 ms less 100 ms a round, from the backend), as `formatMs` writes it
    expect(text).toMatch(/\| round 0 handshake \| dirty - \| - \| ETA -/);
    // the frames one per line: the terminal's control sequences (clear line, cursor moves) end a frame
    // eslint-disable-next-line no-control-regex
    const frames = r.stdout.replace(/\u001b\[[0-9;?]*[A-Za-z]/g, "\n").replace(/\r/g, "\n");
    const etas = [...frames.matchAll(/\| ETA (.*)$/gm)].map((m) => m[1]);
    expect(etas.length).toBeGreaterThanOrEqual(2);
    for (const eta of etas) expect(["-", "200 ms", "100 ms", "0 ms"]).toContain(eta);
    expect(text).not.toMatch(/ETA (\{etaText\}|undefined|NaN)/);
    expect(text).not.toMatch(/^round 1 \(/m);
    expect(text).toContain("migrated mig-tty from n1 to n2: downtime 12 ms, total 420 ms, 83.9 MB sent, 3 rounds");
  });

  it("an unknown target node: exit 1", async () => {
    const r = await hyperfleet(["vm", "migrate", "web", "--to", "n9", ...c.flags()]);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toBe("hyperfleet: node n9 not found");
  });
});

describe("commands - vm migrate that is cancelled", { timeout: 60_000 }, () => {
  const c = useCluster();

  it("exit 1 and one line on stderr; the VM stays on its source", async () => {
    const backend = c.get().backend;
    backend.holdMigrations = true;
    const running = hyperfleet(["vm", "migrate", "db", ...c.flags()]);
    await until(() => [...backend.migrations.values()].some((m) => m.vm === "db" && m.result === null && m.progress.round === 3));
    await backend.cancelMigration({ migrationId: migrationOf(backend, "db").id }, callContext());
    const r = await running;
    expect(r.code).toBe(1);
    expect(r.stdout.trimEnd().split("\n")).toHaveLength(3);
    expect(oneLine(r.stderr)).toBe("hyperfleet: migration of db from n2 to n1 was cancelled: cancelled; it still runs on n2");
    expect(backend.vms.get("db")!.owner).toBe("n2");
  });
});

describe.concurrent("commands - vm console", { timeout: 60_000 }, () => {
  const c = useCluster();

  it("prints the history, then what the guest echoes of stdin", async () => {
    const r = await hyperfleet(["vm", "console", "web", ...c.flags()], { input: "uname\n" });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("boot ok\r\n$ uname\n");
  });

  it("--json separates the history from the live output", async () => {
    const r = await hyperfleet(["vm", "console", "web", "--json", ...c.flags()], { input: "ls" });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ vm: "web", history: "boot ok\r\n$ ", output: "ls", detached: false });
  });

  it("Ctrl-] detaches; what follows it is not sent", async () => {
    const r = await hyperfleet(["vm", "console", "web", "--json", ...c.flags()], { input: "a\u001db" });
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as { output: string; detached: boolean };
    expect(doc.detached).toBe(true);
    expect(doc.output).not.toContain("b");
  });

  it("an unknown VM: exit 1", async () => {
    const r = await hyperfleet(["vm", "console", "nope", ...c.flags()]);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toBe("hyperfleet: vm nope not found");
  });
});

describe("commands - option values", () => {
  it("--bandwidth-limit: bits per second without B, bytes per second with it", () => {
    expect(bandwidthBytesPerSecondOf("1G")).toBe(125_000_000);
    expect(bandwidthBytesPerSecondOf("1Gbit")).toBe(125_000_000);
    expect(bandwidthBytesPerSecondOf("100Mbps")).toBe(12_500_000);
    expect(bandwidthBytesPerSecondOf("125MB/s")).toBe(125_000_000);
    expect(bandwidthBytesPerSecondOf("100MiB/s")).toBe(100 * MiB);
    expect(bandwidthBytesPerSecondOf("2.5 GB/s")).toBe(2_500_000_000);
    for (const bad of ["", "fast", "1000", "1X", "2TB/s"]) expect(() => bandwidthBytesPerSecondOf(bad)).toThrow(UsageError);
  });

  it("--memory: a size in whole 4K pages, at most 2G", () => {
    expect(memoryBytesOf("--memory", "256M")).toBe(256 * MiB);
    expect(memoryBytesOf("--memory", "64")).toBe(64 * MiB);
    for (const bad of ["12Q", "0", "3G", "1001K"]) expect(() => memoryBytesOf("--memory", bad), bad).toThrow(UsageError);
  });

  it("sizes and durations print as an operator reads them", () => {
    expect([formatBytes(0), formatBytes(256 * MiB), formatBytes(1024 * MiB), formatBytes(1536 * MiB)]).toEqual(["0", "256M", "1G", "1.5G"]);
    expect([formatDuration(45_000), formatDuration(723_000), formatDuration(5 * 3600_000 + 120_000), formatDuration(76 * 3600_000)]).toEqual([
      "45s", "12m3s", "5h2m", "3d4h",
    ]);
  });
});
