/**
 * fleetd's metrics end to end: a local cluster of three real fleetd processes and a real Prometheus
 * (Debian's `prometheus`) scraping them every second with deploy/prometheus/rules.yml; a known set of
 * VMs and one live migration; the consolidation ratios, the migration count and the downtime
 * histogram read back through PromQL. Then the exposition itself: metric names, label cardinality
 * (every registered family's label names, and the values each node exports), `promtool check metrics`,
 * and every Grafana dashboard's queries against what fleetd exports. Each test needs only the programs
 * it uses (`need`): one that is missing fails the tests that use it, not the others.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { API_METHODS, ApiClient, methodName } from "@hyperfleet/api";
import type { RootPartition } from "@hyperfleet/hypervisor";
import type { RaftNodeStatus } from "@hyperfleet/raft";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLUSTER_FILE, findExecutable, LocalCluster, localNodeEnv, type ClusterFile, type LocalNode, type LocalPrometheus } from "../src/local-cluster.js";
import { DIRTY_PAGES_VMS_KEPT, FleetdMetrics, LABEL_VALUES } from "../src/metrics.js";
import { parseUpArgs } from "../src/up-main.js";
import { sleep, until } from "./helpers.js";

const ROOT = resolve(import.meta.dirname, "..", "..", "..");
const RULES = join(ROOT, "deploy", "prometheus", "rules.yml");
const DASHBOARDS = join(ROOT, "deploy", "grafana", "dashboards");
const MIB = 2 ** 20;
const NODE_MEMORY_MIB = 64;
const NODE_CPUS = 4; // fleetd's default --vcpus

/** The known set: name, MiB, vCPUs. */
const VMS: readonly [string, number, number][] = [["m1", 8, 1], ["m2", 16, 2], ["m3", 8, 1], ["m4", 16, 1]];

let cluster: LocalCluster | undefined;
let api: ApiClient | undefined;

/** The gRPC status names: the values of `code`. */
const GRPC_CODES = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"];

/**
 * The labels a metric may declare, each with a bounded set of values: `node` (every series, the fleetd
 * id), the fixed sets of `LABEL_VALUES`, the API's methods and the gRPC codes, and `nodejs` (one value
 * per process). `vm` is the one label whose values grow with the cluster.
 */
const BOUNDED_LABELS = ["node", "result", "kind", "reason", "state", "role", "method", "code", "nodejs"] as const;
const UNBOUNDED_LABELS = ["vm"] as const;

function need(binary: string): string {
  const path = findExecutable(binary);
  if (path === null) throw new Error(`${binary} is not installed: run scripts/setup.sh (it installs the Debian packages CI uses)`);
  return path;
}

/** The cluster's Prometheus; fails (never skips) when Debian's prometheus is not installed. */
function prometheus(): LocalPrometheus {
  need("prometheus");
  if (cluster?.prometheus === null || cluster?.prometheus === undefined) throw new Error("the cluster runs no Prometheus");
  return cluster.prometheus;
}

async function scrape(node: LocalNode): Promise<string> {
  const res = await fetch(`http://${node.httpAddress}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of an exposition text (prom-client's output: no escapes beyond \" and \\ in values). */
function samples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Polls an instant query until `accept` takes its first value (bounded); fails with the last value seen. */
async function settled(promql: string, accept: (v: number) => boolean, timeoutMs = 20_000): Promise<number> {
  let last: number | string = "no result";
  try {
    return await until(promql, timeoutMs, async () => {
      const r = await prometheus().query(promql);
      if (r.length === 0) return undefined;
      last = r[0]!.value;
      return accept(r[0]!.value) ? r[0]!.value : undefined;
    });
  } catch (e) {
    throw new Error(`${promql}: last value ${last} (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
}

interface Panel {
  title?: string;
  type?: string;
  targets?: { expr?: string; refId?: string }[];
  panels?: Panel[];
}

/** The node whose /metrics says it leads. */
async function leaderNode(): Promise<LocalNode> {
  return until("a leader", 10_000, async () => {
    for (const n of cluster!.nodes) {
      if (n.process.exitCode !== null || n.process.signalCode !== null) continue;
      if (/^hyperfleet_raft_is_leader\{[^}]*\} 1$/m.test(await scrape(n))) return n;
    }
    return undefined;
  });
}

function dashboardFiles(): string[] {
  return readdirSync(DASHBOARDS).filter((f) => f.endsWith(".json")).sort();
}

function queriesOf(file: string): { panel: string; expr: string }[] {
  const dash = JSON.parse(readFileSync(join(DASHBOARDS, file), "utf8")) as { panels?: Panel[]; templating?: { list?: { query?: unknown; name?: string }[] } };
  const out: { panel: string; expr: string }[] = [];
  const walk = (panels: Panel[] | undefined): void => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) if (typeof t.expr === "string") out.push({ panel: p.title ?? "(untitled)", expr: t.expr });
      walk(p.panels);
    }
  };
  walk(dash.panels);
  for (const v of dash.templating?.list ?? []) {
    const q = typeof v.query === "string" ? v.query : (v.query as { query?: string } | undefined)?.query;
    const m = typeof q === "string" ? /^label_values\((.+),\s*\w+\)$/.exec(q) : null;
    if (m !== null) out.push({ panel: `variable ${v.name ?? ""}`, expr: m[1]! });
  }
  return out;
}

/** Grafana's variables, as Prometheus would see them once Grafana filled them in. */
function concrete(expr: string): string {
  return expr.replaceAll("$__rate_interval", "1m").replaceAll("$__interval", "15s").replaceAll("$__range", "5m")
    .replace(/\$\{?node\}?/g, ".*").replace(/\$\{?vm\}?/g, ".*");
}

function recordedNames(): Set<string> {
  return new Set([...readFileSync(RULES, "utf8").matchAll(/^\s*-\s*record:\s*(\S+)\s*$/gm)].map((m) => m[1]!));
}

describe("metrics", () => {
  const dir = mkdtempSync(join(tmpdir(), "fleetd-metrics-"));
  beforeAll(async () => {
    cluster = await LocalCluster.start({
      nodes: 3, dir, memoryMib: NODE_MEMORY_MIB,
      // the tests that query Prometheus fail on their own when it is not installed (`prometheus()`)
      ...(findExecutable("prometheus") !== null ? { prometheus: { scrapeIntervalMs: 1000 } } : {}),
      // short leases, for the failover at the end
      env: { HYPERFLEET_LEASE_MS: "2000", HYPERFLEET_FENCE_MARGIN_MS: "500", HYPERFLEET_FAILOVER_MARGIN_MS: "300" },
    });
    api = new ApiClient(cluster.apiAddresses[0]!, { token: cluster.token, timeoutMs: 10_000 });
  }, 60_000);

  afterAll(async () => {
    api?.close();
    await cluster?.stop(3000);
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it("metrics - consolidation ratios, migration count and downtime histogram through PromQL", async () => {
    prometheus();
    for (const [name, mib, vcpus] of VMS) {
      await api!.createVm({ name, memoryBytes: mib * MIB, vcpus, image: "dirtier", bootargs: "rate=50 ws=1", start: true });
    }
    for (const [name] of VMS) {
      await until(`${name} running`, 20_000, async () => ((await api!.getVm({ name })).state === "VM_STATE_RUNNING" ? true : undefined));
    }
    const vms = VMS.length;
    const vcpus = VMS.reduce((n, v) => n + v[2], 0);
    const memory = VMS.reduce((n, v) => n + v[1], 0) * MIB;
    const hosts = cluster!.nodes.length;

    // every figure a node exports as it is now
    const nodeTotal = await settled("max(hyperfleet_node_memory_total_bytes)", (v) => v > 0);
    expect(nodeTotal).toBeLessThanOrEqual(NODE_MEMORY_MIB * MIB);
    expect(nodeTotal).toBeGreaterThan((NODE_MEMORY_MIB - 1) * MIB);
    await settled("hyperfleet:cluster_hosts:count", (v) => v === hosts);
    await settled("hyperfleet:cluster_vms_per_host:ratio", (v) => Math.abs(v - vms / hosts) < 1e-9);
    await settled("hyperfleet:cluster_vcpu_per_pcpu:ratio", (v) => Math.abs(v - vcpus / (hosts * NODE_CPUS)) < 1e-9);
    await settled("hyperfleet:cluster_memory_commitment:ratio", (v) => Math.abs(v - memory / (hosts * nodeTotal)) < 1e-9);
    // the same ratios straight from the node gauges
    await settled("sum(hyperfleet_node_vms_running) / count(hyperfleet_node_vms_running)", (v) => Math.abs(v - vms / hosts) < 1e-9);
    await settled("sum(hyperfleet_node_memory_assigned_bytes)", (v) => v === memory);
    await settled("sum(hyperfleet_node_cpus_physical)", (v) => v === hosts * NODE_CPUS);
    await settled(`count(hyperfleet_vm_info{state="running"})`, (v) => v === vms);
    await settled("sum(hyperfleet_migration_finished_total) or vector(0)", (v) => v === 0);
    // the guests run (the dirtier waits with WFI between its writes); no dirty log runs yet
    await settled(`sum(hyperfleet_vm_exits_total{vm="m1",reason="wfi"})`, (v) => v > 0);
    await settled("max(hyperfleet_vm_write_protect_faults_total)", (v) => v === 0);
    await settled("sum(hyperfleet_vm_dirty_pages_total) or vector(0)", (v) => v === 0);

    // One live migration of m2 (16 MiB, 2 vCPUs, writing 50 pages a second) to the leader, or away
    // from it when it owns m2: the leader then holds a VM (the failover test stops the leader). At
    // 4 KiB/s (some 20 KB to send) the copy takes seconds, so Prometheus scrapes the source while the
    // dirty log runs there: the write-protect faults are the VM worker's counts, on the node running it.
    const before = await api!.getVm({ name: "m2" });
    const leader = await leaderNode();
    const target = before.owner !== leader.id ? leader : cluster!.nodes.find((n) => n.id !== before.owner)!;
    const started = await api!.migrate({ vm: "m2", targetNode: target.id, bandwidthLimitBytesPerSecond: 4096 });
    const done = await until("the migration's result", 30_000, async () => {
      const m = await api!.getMigration({ migrationId: started.migrationId });
      return m.result !== undefined && m.result !== null ? m : undefined;
    });
    expect(done.result!.ok).toBe(true);
    const downtimeSeconds = done.result!.downtimeMs / 1000;
    expect(downtimeSeconds).toBeGreaterThan(0);

    await settled(`sum(hyperfleet_migration_finished_total{result="succeeded",kind="live"})`, (v) => v === 1);
    await settled(`sum(hyperfleet_migration_finished_total{result!="succeeded"}) or vector(0)`, (v) => v === 0);
    await settled(`sum(hyperfleet_migration_finished_total{node="${before.owner}"})`, (v) => v === 1);
    await settled("sum(hyperfleet_migration_downtime_seconds_count)", (v) => v === 1);
    const sum = await settled("sum(hyperfleet_migration_downtime_seconds_sum)", (v) => v > 0);
    // the API reports whole milliseconds; the histogram has the exact figure
    expect(Math.abs(sum - downtimeSeconds)).toBeLessThan(0.001);
    // the histogram's buckets: 0 below the downtime, 1 from the first bucket that holds it
    const buckets = await prometheus().query("sum by (le) (hyperfleet_migration_downtime_seconds_bucket)");
    expect(buckets.length).toBeGreaterThan(3);
    for (const b of buckets) {
      const le = b.metric["le"] === "+Inf" ? Infinity : Number(b.metric["le"]);
      expect(b.value, `bucket le=${b.metric["le"]}`).toBe(sum <= le ? 1 : 0);
    }
    await settled("sum(hyperfleet_migration_duration_seconds_count)", (v) => v === 1);
    await settled(`sum(hyperfleet_migration_sent_bytes_sum)`, (v) => v > 0 && v === done.result!.bytesSent);
    await settled("sum(hyperfleet_migration_in_flight)", (v) => v === 0);

    // the ratios are the same after the move; the VM counts per node show where m2 went
    await settled("hyperfleet:cluster_vms_per_host:ratio", (v) => Math.abs(v - vms / hosts) < 1e-9);
    await settled("hyperfleet:cluster_vcpu_per_pcpu:ratio", (v) => Math.abs(v - vcpus / (hosts * NODE_CPUS)) < 1e-9);
    await settled(`sum(hyperfleet_vm_info{vm="m2",node="${target.id}"})`, (v) => v === 1);
    await settled(`sum(hyperfleet_vm_info{vm="m2"})`, (v) => v === 1);

    // the dirty log: write-protect faults on the source while it ran (and as exits), the pages it found
    // dirty counted by the source once the migration completed, for m2 only
    await settled(`max(max_over_time(hyperfleet_vm_write_protect_faults_total{vm="m2",node="${before.owner}"}[5m]))`, (v) => v > 0);
    await settled(`max(max_over_time(hyperfleet_vm_exits_total{vm="m2",node="${before.owner}",reason="write_protect"}[5m]))`, (v) => v > 0);
    await settled(`max(max_over_time(hyperfleet_vm_write_protect_faults_total{vm!="m2"}[5m]))`, (v) => v === 0);
    await settled(`sum(hyperfleet_vm_dirty_pages_total{vm="m2",node="${before.owner}"})`, (v) => v > 0);
    await settled("count(hyperfleet_vm_dirty_pages_total)", (v) => v === 1);

    // Raft, hypervisor and API figures
    await settled("count(hyperfleet_raft_is_leader == 1)", (v) => v === 1);
    await settled("min(hyperfleet_raft_term)", (v) => v >= 1);
    await settled("min(hyperfleet_raft_applied_index)", (v) => v > 0);
    await settled(`count((hyperfleet_raft_commit_index >= hyperfleet_raft_applied_index) and (hyperfleet_raft_applied_index > 0))`, (v) => v === hosts);
    // every node saw the first leader's term begin
    await settled("min(hyperfleet_raft_leader_changes_total)", (v) => v >= 1);
    await settled("count(hyperfleet_raft_proposal_duration_seconds_count > 0)", (v) => v >= 1);
    await settled("min(hyperfleet_raft_members)", (v) => v === hosts);
    await settled(`sum(hyperfleet_vm_instructions_total{vm="m1"})`, (v) => v > 0);
    // and straight from each node's exposition (one sample of the Raft status): commit >= applied > 0
    for (const node of cluster!.nodes) {
      const text = await scrape(node);
      const value = (name: string): number => Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, "m").exec(text)?.[1]);
      const applied = value("hyperfleet_raft_applied_index");
      expect(applied, `${node.id} applied index`).toBeGreaterThan(0);
      expect(value("hyperfleet_raft_commit_index"), `${node.id} commit index`).toBeGreaterThanOrEqual(applied);
    }
    await settled(`sum(hyperfleet_api_requests_total{method="Vms/Create",code="OK",node="${cluster!.nodes[0]!.id}"})`, (v) => v === VMS.length);
    await settled(`sum(hyperfleet_cluster_nodes{state="active"}) / count(hyperfleet_cluster_nodes{state="active"})`, (v) => v === hosts);
  });

  it("metrics - every name is hyperfleet_<area>_<what> with a unit or a documented count; labels are bounded; promtool agrees", async () => {
    const readme = readFileSync(join(ROOT, "services", "fleetd", "README.md"), "utf8");
    const counts = new Set([...readme.matchAll(/^\| `(hyperfleet_[a-z_]+)(?:\{[a-z,]+\})?` \| gauge \(count\)/gm)].map((m) => m[1]!));
    expect(counts.size).toBeGreaterThan(0);
    // the values each bounded label may take
    const bounded: Record<(typeof BOUNDED_LABELS)[number], readonly string[]> = {
      node: cluster!.nodes.map((n) => n.id),
      result: [...LABEL_VALUES.result, ...LABEL_VALUES.failover],
      kind: LABEL_VALUES.kind,
      reason: LABEL_VALUES.reason,
      state: [...LABEL_VALUES.state, ...LABEL_VALUES.nodeState],
      role: LABEL_VALUES.role,
      method: API_METHODS.map(methodName),
      code: GRPC_CODES,
      nodejs: [process.versions.node],
    };
    const promtool = need("promtool");
    for (const node of cluster!.nodes) {
      const text = await scrape(node);
      const families = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => ({ name: m[1]!, type: m[2]! }));
      expect(families.length).toBeGreaterThan(20);
      for (const { name, type } of families) {
        expect(name, name).toMatch(/^hyperfleet_[a-z]+_[a-z_]+$/);
        const unit = /_(bytes|seconds|total|ratio|info|pages|per_second)$/.test(name);
        expect(unit || counts.has(name), `${name}: no unit suffix and not a documented count in services/fleetd/README.md`).toBe(true);
        if (type === "counter") expect(name).toMatch(/_total$/);
      }
      for (const s of samples(text)) {
        for (const [label, value] of Object.entries(s.labels)) {
          if ((UNBOUNDED_LABELS as readonly string[]).includes(label) || label === "le" || label === "quantile") continue;
          expect(Object.keys(bounded), `${s.name}: label ${label} has no bounded set of values`).toContain(label);
          expect(bounded[label as keyof typeof bounded], `${s.name}{${label}}`).toContain(value);
        }
      }
      const lint = spawnSync(promtool, ["check", "metrics"], { input: text, encoding: "utf8", timeout: 10_000 });
      expect(lint.status, `promtool check metrics:\n${lint.stdout}${lint.stderr}`).toBe(0);
    }
  });

  it("metrics - every dashboard loads and queries only metrics fleetd exports (or recording rules), and Prometheus accepts each query", async () => {
    const exported = new Set<string>();
    for (const node of cluster!.nodes) {
      const text = await scrape(node);
      for (const s of samples(text)) exported.add(s.name);
      // a family declared with no series yet (an API method not called so far) exists all the same
      for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
        exported.add(m[1]!);
        if (m[2] === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) exported.add(`${m[1]!}${suffix}`);
      }
    }
    const recorded = recordedNames();
    expect(recorded.size).toBeGreaterThan(0);
    const files = dashboardFiles();
    expect(files.length).toBeGreaterThanOrEqual(4);
    const uids = new Set<string>();
    for (const file of files) {
      const dash = JSON.parse(readFileSync(join(DASHBOARDS, file), "utf8")) as { uid?: string; title?: string; panels?: unknown[] };
      expect(typeof dash.uid, file).toBe("string");
      expect(uids.has(dash.uid!), `${file}: uid ${dash.uid} used twice`).toBe(false);
      uids.add(dash.uid!);
      expect(dash.title, file).toMatch(/^Hyperfleet/);
      const queries = queriesOf(file);
      expect(queries.length, file).toBeGreaterThan(3);
      for (const { panel, expr } of queries) {
        const names = [...expr.matchAll(/\b(hyperfleet[_:][a-zA-Z0-9_:]*)/g)].map((m) => m[1]!);
        expect(names.length, `${file} / ${panel}: ${expr} refers to no hyperfleet metric`).toBeGreaterThan(0);
        for (const name of names) {
          expect(exported.has(name) || recorded.has(name), `${file} / ${panel}: ${name} is neither exported by fleetd nor recorded`).toBe(true);
        }
        await expect(prometheus().query(concrete(expr)), `${file} / ${panel}: ${expr}`).resolves.toBeDefined();
      }
    }
    // the recording rules use only exported metrics too
    const rules = readFileSync(RULES, "utf8");
    for (const m of rules.matchAll(/^\s*expr:\s*(.+)$/gm)) {
      for (const n of m[1]!.matchAll(/\b(hyperfleet_[a-z_]+)/g)) expect(exported.has(n[1]!), `rules.yml: ${n[1]}`).toBe(true);
    }
  });

  it("metrics - a failover of the leader: a new leader (each survivor counts the change), the VMs restart elsewhere, the failover count, duration and ratios follow", async () => {
    prometheus();
    // the leader holds a VM (the migration of the first test saw to it)
    const victim = await leaderNode();
    const vms = await api!.listVms();
    const lost = vms.vms.filter((v) => v.owner === victim.id).map((v) => v.name);
    expect(lost.length, `VMs of the leader ${victim.id}`).toBeGreaterThan(0);
    const survivors = cluster!.nodes.filter((n) => n !== victim);
    const sampled = (text: string, name: string): number => Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, "m").exec(text)?.[1]);
    const before = new Map<string, { changes: number; term: number }>();
    for (const n of survivors) {
      const text = await scrape(n);
      before.set(n.id, { changes: sampled(text, "hyperfleet_raft_leader_changes_total"), term: sampled(text, "hyperfleet_raft_term") });
      expect(before.get(n.id)!.changes, `${n.id} leader changes`).toBeGreaterThanOrEqual(1);
    }
    const client = new ApiClient(survivors[0]!.apiAddress, { token: cluster!.token, timeoutMs: 10_000 });
    try {
      victim.process.kill("SIGKILL");
      // the survivors elect one of them; each applies the new leader's first entry and counts the change
      for (const n of survivors) {
        await settled(`hyperfleet_raft_leader_changes_total{node="${n.id}"}`, (v) => v >= before.get(n.id)!.changes + 1);
        await settled(`hyperfleet_raft_term{node="${n.id}"}`, (v) => v > before.get(n.id)!.term);
      }
      await settled(`count(hyperfleet_raft_is_leader{node=~"${survivors.map((n) => n.id).join("|")}"} == 1)`, (v) => v === 1);
      for (const name of lost) {
        await until(`${name} running again elsewhere`, 30_000, async () => {
          const vm = await client.getVm({ name });
          return vm.owner !== victim.id && vm.owner !== "" && vm.state === "VM_STATE_RUNNING" ? true : undefined;
        });
      }
      await settled(`sum(hyperfleet_failover_vms_total{result="placed"})`, (v) => v === lost.length);
      await settled(`sum(hyperfleet_failover_nodes_failed_total)`, (v) => v === 1);
      await settled(`sum(hyperfleet_failover_duration_seconds_count)`, (v) => v === lost.length);
      const mean = await settled(`sum(hyperfleet_failover_duration_seconds_sum) / sum(hyperfleet_failover_duration_seconds_count)`, (v) => v > 0);
      expect(mean).toBeLessThan(30);
      await settled(`max(hyperfleet_cluster_nodes{state="failed"})`, (v) => v === 1);
      await settled(`up{job="fleetd",instance="${victim.httpAddress}"}`, (v) => v === 0);
      // two hosts now carry every VM
      await settled("hyperfleet:cluster_hosts:count", (v) => v === 2);
      await settled("hyperfleet:cluster_vms_per_host:ratio", (v) => Math.abs(v - VMS.length / 2) < 1e-9);
      await settled("hyperfleet:cluster_vcpu_per_pcpu:ratio", (v) => Math.abs(v - VMS.reduce((n, x) => n + x[2], 0) / (2 * NODE_CPUS)) < 1e-9);
    } finally {
      client.close();
    }
  });
});

describe("metric families", () => {
  it("metrics - every family fleetd registers declares only bounded labels (or vm) and is in the README's table with them, series or not", () => {
    const status = { term: 0, commit: 0, applied: 0, role: 0, lead: "", state: "running", confState: { voters: [], learners: [] } } as unknown as RaftNodeStatus;
    const metrics = new FleetdMetrics({
      node: "n1", physicalCpus: 1, root: {} as RootPartition, raft: { status: () => status }, migrationsInFlight: () => 0, clusterNodes: () => [],
    });
    try {
      // the registry's own record of each family (no scrape: a family with no series yet counts the same)
      const families = metrics.registry.getMetricsAsArray().map((m) => ({ name: m.name, labelNames: (m as unknown as { labelNames?: readonly string[] }).labelNames ?? [] }));
      expect(families.length).toBeGreaterThan(20);
      const readme = readFileSync(join(ROOT, "services", "fleetd", "README.md"), "utf8");
      const documented = new Map([...readme.matchAll(/^\| `(hyperfleet_[a-z_]+)(?:\{([a-z,]+)\})?` \|/gm)].map((m) => [m[1]!, (m[2] ?? "").split(",").filter((l) => l !== "").sort()]));
      for (const { name, labelNames } of families) {
        for (const label of labelNames) {
          expect([...BOUNDED_LABELS, ...UNBOUNDED_LABELS], `${name}: label ${label} has no bounded set of values`).toContain(label);
        }
        expect(labelNames, `${name}: node is on every series already`).not.toContain("node");
        expect(documented.get(name), `${name} in the metrics table of services/fleetd/README.md`).toEqual([...labelNames].sort());
      }
      expect(families.map((f) => f.name)).toContain("hyperfleet_vm_dirty_pages_total");
    } finally {
      metrics.close();
    }
  });

  it("metrics - a leader change counts once per new term (not the terms a restart replays); dirty pages stay with the node that sent the VM, for its last VMs", async () => {
    // a node that restarted at term 3: the log it replays holds terms up to 3
    const status = { term: 3, commit: 9, applied: 9, role: 0, lead: "", state: "running", confState: { voters: ["n1"], learners: [] } } as unknown as RaftNodeStatus;
    const root = { list: () => [], committedBytes: 0, availableBytes: 64 * MIB } as unknown as RootPartition;
    const metrics = new FleetdMetrics({ node: "n1", physicalCpus: 1, root, raft: { status: () => status }, migrationsInFlight: () => 0, clusterNodes: () => [] });
    const value = async (series: string): Promise<number | undefined> => {
      const line = (await metrics.text()).split("\n").find((l) => l.startsWith(`${series} `) || l.startsWith(`${series.replace(/\}$/, ",")}`));
      return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
    };
    try {
      for (const term of [1, 2, 3]) metrics.leaderTermBegan(term);
      expect(await value(`hyperfleet_raft_leader_changes_total{node="n1"}`)).toBe(0);
      for (const term of [4, 4, 6]) metrics.leaderTermBegan(term);
      expect(await value(`hyperfleet_raft_leader_changes_total{node="n1"}`)).toBe(2);

      const ok = { ok: true, totalMs: 100, downtimeMs: 5, bytesSent: 4096, rounds: 3, throttlePercentMax: 0, failureReason: "", cancelled: false };
      metrics.migrationFinished("a", "live", ok, 7);
      metrics.migrationFinished("a", "live", ok, 5);
      metrics.migrationFinished("b", "live", ok, 0);
      expect(await value(`hyperfleet_vm_dirty_pages_total{vm="a",node="n1"}`)).toBe(12);
      expect(await value(`hyperfleet_vm_dirty_pages_total{vm="b",node="n1"}`)).toBeUndefined();
      for (let i = 0; i < DIRTY_PAGES_VMS_KEPT; i++) metrics.migrationFinished(`v${i}`, "live", ok, 1);
      const text = await metrics.text();
      expect(text.split("\n").filter((l) => l.startsWith("hyperfleet_vm_dirty_pages_total{"))).toHaveLength(DIRTY_PAGES_VMS_KEPT);
      expect(await value(`hyperfleet_vm_dirty_pages_total{vm="a",node="n1"}`)).toBeUndefined();
    } finally {
      metrics.close();
    }
  });
});

describe("deploy", () => {
  it("deploy - promtool accepts the recording rules and the compose Prometheus configuration", () => {
    const promtool = need("promtool");
    const rules = spawnSync(promtool, ["check", "rules", RULES], { encoding: "utf8", timeout: 10_000 });
    expect(rules.status, `${rules.stdout}${rules.stderr}`).toBe(0);
    expect(rules.stdout).toMatch(/SUCCESS: \d+ rules found/);
    // the compose configuration names its rules file by its path in the container: check a copy that points at ours
    const config = readFileSync(join(ROOT, "deploy", "prometheus", "prometheus.yml"), "utf8");
    expect(config).toContain("/etc/prometheus/rules.yml");
    const tmp = mkdtempSync(join(tmpdir(), "prom-config-"));
    try {
      const copy = join(tmp, "prometheus.yml");
      execFileSync("cp", [RULES, join(tmp, "rules.yml")]);
      execFileSync("sh", ["-c", `sed 's#/etc/prometheus/rules.yml#${join(tmp, "rules.yml")}#' "$1" > "$2"`, "sh", join(ROOT, "deploy", "prometheus", "prometheus.yml"), copy]);
      const check = spawnSync(promtool, ["check", "config", copy], { encoding: "utf8", timeout: 10_000 });
      expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("deploy - docker-compose accepts docker-compose.yml: three fleetd, three NATS servers, Prometheus and Grafana", () => {
    const compose = need("docker-compose");
    const quiet = spawnSync(compose, ["-f", join(ROOT, "docker-compose.yml"), "config", "-q"], { cwd: ROOT, encoding: "utf8", timeout: 30_000 });
    expect(quiet.status, `${quiet.stdout}${quiet.stderr}`).toBe(0);
    const services = spawnSync(compose, ["-f", join(ROOT, "docker-compose.yml"), "config", "--services"], { cwd: ROOT, encoding: "utf8", timeout: 30_000 });
    expect(services.status, services.stderr).toBe(0);
    expect(services.stdout.split("\n").filter((s) => s !== "").sort()).toEqual(
      ["fleetd-1", "fleetd-2", "fleetd-3", "grafana", "nats-1", "nats-2", "nats-3", "prometheus"],
    );
  });

  it("deploy - docker-compose.yml gives each fleetd every key `hyperfleet up` gives its nodes, the storage on a volume all three share, a data dir of its own", () => {
    const compose = need("docker-compose");
    const out = spawnSync(compose, ["-f", join(ROOT, "docker-compose.yml"), "config"], { cwd: ROOT, encoding: "utf8", timeout: 30_000 });
    expect(out.status, out.stderr).toBe(0);
    // docker-compose 1 (Debian's) prints the resolved configuration as YAML only; PyYAML, which it runs
    // on, reads it (with the interpreter of its #! line)
    const head = Buffer.alloc(256);
    const fd = openSync(compose, "r");
    try {
      readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
    const python = /^#!\s*(\S*python3?)[ \t]*\n/.exec(head.toString("latin1"))?.[1] ?? need("python3");
    const read = spawnSync(python, ["-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"], { input: out.stdout, encoding: "utf8", timeout: 10_000 });
    expect(read.status, read.stderr).toBe(0);
    type Mount = string | { type?: string; source?: string; target?: string };
    const config = JSON.parse(read.stdout) as {
      services: Record<string, { environment?: Record<string, string | number | null>; volumes?: Mount[] }>;
      volumes?: Record<string, unknown>;
    };
    const keys = Object.keys(localNodeEnv({ memoryMib: 64 }, "/cluster", { id: "n1", api: "a:7000", raft: "a:7100", http: "a:9100" }, "n1=a:7100", "nats://a:4222", "token"));
    expect(keys).toContain("HYPERFLEET_STORAGE_DIR");
    expect(keys.every((k) => k.startsWith("HYPERFLEET_"))).toBe(true);
    const named = new Set(Object.keys(config.volumes ?? {}));
    /** The named volume a path of the service lies on and the path inside it, or null. */
    const onVolume = (mounts: readonly Mount[], path: string): { volume: string; inside: string } | null => {
      let best: { volume: string; inside: string; depth: number } | null = null;
      for (const m of mounts) {
        const [source, target] = typeof m === "string" ? m.split(":") : [m.source, m.target];
        if (source === undefined || target === undefined || !named.has(source)) continue;
        if (path !== target && !path.startsWith(`${target.replace(/\/$/, "")}/`)) continue;
        if (best === null || target.length > best.depth) best = { volume: source, inside: path.slice(target.length).replace(/^\/+/, ""), depth: target.length };
      }
      return best === null ? null : { volume: best.volume, inside: best.inside };
    };
    const fleetd = ["fleetd-1", "fleetd-2", "fleetd-3"];
    const storage = new Set<string>();
    const dataDirs = new Set<string>();
    for (const name of fleetd) {
      const service = config.services[name];
      expect(service, name).toBeDefined();
      const env = service!.environment ?? {};
      for (const key of keys) expect(String(env[key] ?? ""), `${name}: ${key}`).not.toBe("");
      const mounts = service!.volumes ?? [];
      const shared = onVolume(mounts, String(env["HYPERFLEET_STORAGE_DIR"]));
      expect(shared, `${name}: HYPERFLEET_STORAGE_DIR on a named volume`).not.toBeNull();
      storage.add(`${shared!.volume}:${shared!.inside}`);
      const data = onVolume(mounts, String(env["HYPERFLEET_DATA_DIR"]));
      expect(data, `${name}: HYPERFLEET_DATA_DIR on a named volume`).not.toBeNull();
      const own = `${data!.volume}:${data!.inside}`;
      expect(dataDirs.has(own), `${name}: data dir ${own} is another node's`).toBe(false);
      dataDirs.add(own);
      // neither holds the other
      const within = (path: string, folder: string): boolean => folder === "" || path === folder || path.startsWith(`${folder}/`);
      if (data!.volume === shared!.volume) {
        expect(within(data!.inside, shared!.inside), `${name}: the data dir lies in the storage`).toBe(false);
        expect(within(shared!.inside, data!.inside), `${name}: the storage lies in the data dir`).toBe(false);
      }
    }
    // one storage for the three: the same folder of the same volume
    expect([...storage]).toHaveLength(1);
    // the same cluster: one token, one peer list, distinct ids
    expect(new Set(fleetd.map((n) => config.services[n]!.environment!["HYPERFLEET_CLUSTER_TOKEN"])).size).toBe(1);
    expect(new Set(fleetd.map((n) => config.services[n]!.environment!["HYPERFLEET_PEERS"])).size).toBe(1);
    expect(new Set(fleetd.map((n) => config.services[n]!.environment!["HYPERFLEET_ID"])).size).toBe(3);
  });

  it("deploy - nats-server accepts the NATS cluster configuration", () => {
    const nats = need("nats-server");
    const check = spawnSync(nats, ["-t", "-c", join(ROOT, "deploy", "nats", "nats.conf")], {
      encoding: "utf8", timeout: 10_000, env: { ...process.env, HYPERFLEET_NATS_TOKEN: "check-token" },
    });
    expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
  });

  it("deploy - Grafana's provisioning names the Prometheus data source every dashboard uses", () => {
    const datasources = readFileSync(join(ROOT, "deploy", "grafana", "provisioning", "datasources", "prometheus.yml"), "utf8");
    const uid = /^\s*uid:\s*(\S+)\s*$/m.exec(datasources)?.[1];
    expect(uid).toBeDefined();
    expect(datasources).toMatch(/type:\s*prometheus/);
    const providers = readFileSync(join(ROOT, "deploy", "grafana", "provisioning", "dashboards", "hyperfleet.yml"), "utf8");
    expect(providers).toMatch(/path:\s*\/var\/lib\/grafana\/dashboards/);
    for (const file of dashboardFiles()) {
      const found: unknown[] = [];
      const walk = (v: unknown): void => {
        if (Array.isArray(v)) v.forEach(walk);
        else if (typeof v === "object" && v !== null) {
          for (const [k, x] of Object.entries(v)) {
            if (k === "datasource") found.push(x);
            else walk(x);
          }
        }
      };
      walk(JSON.parse(readFileSync(join(DASHBOARDS, file), "utf8")));
      expect(found.length, file).toBeGreaterThan(0);
      for (const ds of found) expect(ds, file).toEqual({ type: "prometheus", uid });
    }
  });
});

describe("up --prometheus", () => {
  it("up - the options: --prometheus (port 9090), --prometheus-port N implies it, none without", () => {
    expect(parseUpArgs([]).prometheusPort).toBeUndefined();
    expect(parseUpArgs(["--prometheus"])).toEqual({ nodes: 3, dir: ".hyperfleet", memoryMib: 512, prometheusPort: 9090 });
    expect(parseUpArgs(["--prometheus-port=0", "--nodes", "1"])).toEqual({ nodes: 1, dir: ".hyperfleet", memoryMib: 512, prometheusPort: 0 });
    expect(() => parseUpArgs(["--prometheus-port", "70000"])).toThrow("--prometheus-port must be an integer from 0 to 65535");
  });

  it("up - `up-main --prometheus` runs a Prometheus that scrapes the local cluster, and stops it on SIGINT", async () => {
    need("prometheus");
    const upDir = mkdtempSync(join(tmpdir(), "fleetd-up-prom-"));
    const child = spawn(process.execPath, [join(ROOT, "services", "fleetd", "dist", "up-main.js"), "--nodes", "1", "--dir", upDir, "--memory-mib", "32", "--prometheus-port", "0"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (out += b.toString()));
    try {
      const url = await until("the Prometheus address on stdout", 30_000, async () => /prometheus: (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1]);
      const file = JSON.parse(readFileSync(join(upDir, CLUSTER_FILE), "utf8")) as ClusterFile;
      expect(file.prometheusUrl).toBe(url);
      // the default scrape interval is 5 s: the first scrape and rule evaluation land within a few
      const hosts = await until("hyperfleet:cluster_hosts:count through the up Prometheus", 20_000, async () => {
        const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent("hyperfleet:cluster_hosts:count")}`);
        const body = (await res.json()) as { data: { result: { value: [number, string] }[] } };
        return body.data.result[0]?.value[1];
      });
      expect(Number(hosts)).toBe(1);
      const up = (await (await fetch(`${url}/api/v1/query?query=${encodeURIComponent("up{job=\"fleetd\"}")}`)).json()) as { data: { result: { value: [number, string] }[] } };
      expect(up.data.result.map((r) => r.value[1])).toEqual(["1"]);
    } finally {
      const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
      child.kill("SIGINT");
      const code = await Promise.race([exited, sleep(20_000).then(() => "late" as const)]);
      if (code === "late") child.kill("SIGKILL");
      rmSync(upDir, { recursive: true, force: true });
      expect(code).toBe(0);
    }
  }, 60_000);
});
