import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Vm } from "@hyperfleet/api";
import { afterAll, describe, expect, it } from "vitest";
import { hyperfleet } from "../../cli/test/helpers.js";
import { CLUSTER_FILE, findExecutable, httpStatus, stopProcess, type ClusterFile } from "../src/local-cluster.js";
import { parseUpArgs, UpUsageError } from "../src/up-main.js";
import { until } from "./helpers.js";

const CLI_MAIN = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "cli", "dist", "main.js");
const dir = mkdtempSync(join(tmpdir(), "fleetd-up-"));
const dir3 = mkdtempSync(join(tmpdir(), "fleetd-up3-"));
const started: ChildProcess[] = [];
const nodePids: number[] = [];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

afterAll(async () => {
  for (const child of started) await stopProcess(child, 8000);
  for (const pid of nodePids) if (alive(pid)) process.kill(pid, "SIGKILL");
  rmSync(dir, { recursive: true, force: true });
  rmSync(dir3, { recursive: true, force: true });
}, 30_000);

/** Every process below `pid` (children, their children, ...), with its command line, from /proc. */
function descendants(pid: number): { pid: number; cmdline: string }[] {
  const parents = new Map<number, { ppid: number; cmdline: string }>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parents.set(Number(entry), { ppid, cmdline: readFileSync(`/proc/${entry}/cmdline`, "utf8").replaceAll("\0", " ") });
    } catch {
      // gone meanwhile
    }
  }
  const out: { pid: number; cmdline: string }[] = [];
  const below = new Set([pid]);
  // bounded: each pass adds a generation; a process tree here is a few levels deep
  for (let pass = 0; pass < 8; pass++) {
    for (const [p, { ppid, cmdline }] of parents) {
      if (below.has(ppid) && !below.has(p)) {
        below.add(p);
        out.push({ pid: p, cmdline });
      }
    }
  }
  return out;
}

/** Runs `hyperfleet up ARGS` and waits (30 s at most) until it says the cluster is up; returns what it printed so far. */
async function up(args: string[]): Promise<{ child: ChildProcess; out: string }> {
  const child = spawn(process.execPath, [CLI_MAIN, "up", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  started.push(child);
  let out = "";
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const ready = new Promise<void>((resolveReady, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("Ctrl-C stops the cluster.")) resolveReady();
    });
    child.once("exit", (code) => reject(new Error(`hyperfleet up exited ${code}: ${err}`)));
  });
  await Promise.race([ready, new Promise((_, reject) => setTimeout(() => reject(new Error(`not up within 30 s: ${out} ${err}`)), 30_000))]);
  return { child, out };
}

describe("up", () => {
  it("up - parses its options and names a bad one", () => {
    expect(parseUpArgs([])).toEqual({ nodes: 3, dir: ".hyperfleet", memoryMib: 512 });
    expect(parseUpArgs(["--nodes", "1", "--dir=x", "--memory-mib", "64"])).toEqual({ nodes: 1, dir: "x", memoryMib: 64 });
    expect(() => parseUpArgs(["--nodes", "0"])).toThrow(UpUsageError);
    expect(() => parseUpArgs(["--nodes", "0"])).toThrow("--nodes must be an integer from 1 to 9");
    expect(() => parseUpArgs(["--memory-mib", "lots"])).toThrow("--memory-mib must be an integer from 16 to 2047");
    expect(() => parseUpArgs(["--colour", "1"])).toThrow('unknown option "--colour"');
  });

  it("up - hyperfleet up starts a healthy cluster, writes cluster.json and stops it all on SIGINT", async () => {
    expect(existsSync(CLI_MAIN)).toBe(true);
    const { child, out } = await up(["--nodes", "1", "--dir", dir, "--memory-mib", "64"]);
    for (const m of out.matchAll(/pid (\d+)/g)) nodePids.push(Number(m[1]));
    expect(nodePids).toHaveLength(1);
    const file = JSON.parse(readFileSync(join(dir, CLUSTER_FILE), "utf8")) as ClusterFile;
    expect(file.apiAddresses).toHaveLength(1);
    expect(file.natsUrl).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    const http = /http http:\/\/(\S+)/.exec(out)![1]!;
    expect(await httpStatus(http, "/healthz")).toBe(200);

    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill("SIGINT");
    expect(await exited).toBe(0);
    expect(alive(nodePids[0]!)).toBe(false);
    expect(await httpStatus(http, "/healthz")).toBe(0);
  });

  const prometheus = findExecutable("prometheus") !== null;

  it(`up - hyperfleet up --nodes 3${prometheus ? " --prometheus" : ""}: every node healthy, a VM created through the CLI runs, SIGINT stops every process it started and exits 0`, async () => {
    const { child, out } = await up(["--nodes", "3", "--dir", dir3, "--memory-mib", "64", ...(prometheus ? ["--prometheus", "--prometheus-port", "0"] : [])]);
    expect(out).toContain("cluster up: 3 nodes");

    // one endpoint line per node
    const printed = [...out.matchAll(/^ {2}(n\d):\s+api (\S+)\s+raft (\S+)\s+http http:\/\/(\S+) .*pid (\d+)$/gm)].map((m) => ({
      id: m[1]!, api: m[2]!, raft: m[3]!, http: m[4]!, pid: Number(m[5]),
    }));
    nodePids.push(...printed.map((n) => n.pid));
    expect(printed.map((n) => n.id)).toEqual(["n1", "n2", "n3"]);
    for (const n of printed) expect([n.api, n.raft, n.http].every((a) => /^127\.0\.0\.1:\d+$/.test(a)), JSON.stringify(n)).toBe(true);
    expect(new Set(printed.flatMap((n) => [n.api, n.raft, n.http])).size).toBe(9);
    const file = JSON.parse(readFileSync(join(dir3, CLUSTER_FILE), "utf8")) as ClusterFile;
    expect(file.apiAddresses).toEqual(printed.map((n) => n.api));
    expect(out).toContain(`  nats:  ${file.natsUrl}`);
    for (const n of printed) expect(await httpStatus(n.http, "/healthz"), `/healthz of ${n.id}`).toBe(200);

    // the processes it started: three fleetd (the printed pids), one nats-server, Prometheus when asked for
    const tree = descendants(child.pid!);
    nodePids.push(...tree.map((p) => p.pid));
    const fleetds = tree.filter((p) => p.cmdline.includes(join("fleetd", "dist", "main.js"))).map((p) => p.pid).sort((a, b) => a - b);
    expect(fleetds).toEqual(printed.map((n) => n.pid).sort((a, b) => a - b));
    const nats = tree.filter((p) => /(^|\/)nats-server /.test(p.cmdline));
    expect(nats, JSON.stringify(tree)).toHaveLength(1);
    const prometheusProcesses = tree.filter((p) => /(^|\/)prometheus /.test(p.cmdline));
    expect(prometheusProcesses, JSON.stringify(tree)).toHaveLength(prometheus ? 1 : 0);

    if (prometheus) {
      const url = /^ {2}prometheus: (http:\/\/127\.0\.0\.1:\d+) /m.exec(out)?.[1];
      expect(url, out).toBeDefined();
      expect(file.prometheusUrl).toBe(url);
      expect(await httpStatus(url!.slice("http://".length), "/-/ready")).toBe(200);
      // it scrapes the three nodes' /metrics, all up
      const targets = await until("Prometheus scraping three targets, all up", 25_000, async () => {
        const res = await fetch(`${url}/api/v1/targets?state=active`, { signal: AbortSignal.timeout(3000) });
        const body = (await res.json()) as { data: { activeTargets: { scrapeUrl: string; health: string }[] } };
        const active = body.data.activeTargets;
        return active.length === 3 && active.every((t) => t.health === "up") ? active : undefined;
      });
      expect(targets.map((t) => t.scrapeUrl).sort()).toEqual(printed.map((n) => `http://${n.http}/metrics`).sort());
    }

    // the CLI finds the cluster through <dir>/cluster.json
    const created = await hyperfleet(["vm", "create", "web", "--memory", "8M", "--image", "dirtier", "--bootargs", "rate=50 ws=1", "--dir", dir3, "--json"], { cwd: tmpdir() });
    expect(created.code, created.stderr).toBe(0);
    expect((JSON.parse(created.stdout) as Vm).name).toBe("web");
    const running = await until("web running, as the CLI shows it", 20_000, async () => {
      const r = await hyperfleet(["vm", "show", "web", "--dir", dir3, "--json"], { cwd: tmpdir() });
      const vm = r.code === 0 ? (JSON.parse(r.stdout) as Vm) : undefined;
      return vm?.state === "VM_STATE_RUNNING" ? vm : undefined;
    });
    expect(printed.map((n) => n.id)).toContain(running.owner);

    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill("SIGINT");
    expect(await Promise.race([exited, new Promise((r) => setTimeout(() => r("still running"), 20_000))])).toBe(0);
    const left = tree.filter((p) => alive(p.pid));
    expect(left, "processes left after hyperfleet up exited").toEqual([]);
    for (const n of printed) expect(await httpStatus(n.http, "/healthz")).toBe(0);
  }, 60_000);
});
