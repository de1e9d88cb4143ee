/**
 * The chaos cluster: a real nats-server and N fleetd processes on loopback, with a `FaultProxy` on
 * every link that a partition must cut — one between each node and the nats-server, and one for each
 * direction of each Raft link (node i reaches node j's Raft port through its own proxy i→j, so
 * cutting node X's proxies, in and out, cuts X off symmetrically and leaves the others' links alone).
 * Nodes are killed with SIGKILL and restarted on the same data directory and ports; the nats-server
 * is stopped and started again on the same port. The time each fleetd process exited is kept (by
 * pid) for the run-record checker: a killed process's open runs end there.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { ApiClient } from "../../packages/api/src/index.js";
import { fleetdMainPath, freePort, httpStatus, localNodeEnv, stopProcess } from "../../services/fleetd/src/local-cluster.js";
import { parseRunRecords, runRecordsPath, type RunRecord } from "../../services/fleetd/src/run-records.js";
import { FaultProxy } from "./proxy.js";

export class ChaosClusterError extends Error {
  override readonly name = "ChaosClusterError";
}

export interface ChaosClusterOptions {
  readonly nodes: number;
  readonly dir: string;
  readonly memoryMib: number;
  /** Extra `HYPERFLEET_*` environment for every node (lease and margins). */
  readonly env?: Readonly<Record<string, string>>;
  /** Default 60,000 ms. */
  readonly readyTimeoutMs?: number;
}

export interface ChaosNode {
  readonly id: string;
  readonly apiAddress: string;
  readonly httpAddress: string;
  readonly raftPort: number;
  readonly dataDir: string;
  readonly env: NodeJS.ProcessEnv;
  process: ChildProcess | null;
}

/** Tries of `ChaosCluster.start` when a node exits as the cluster starts. */
const START_ATTEMPTS = 3;

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function portOpen(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

export class ChaosCluster {
  readonly nodes: ChaosNode[] = [];
  /** When each fleetd process (by pid) was seen to exit (ms since the epoch). */
  readonly deaths = new Map<number, number>();
  private nats: ChildProcess | null = null;
  private readonly natsProxies = new Map<string, FaultProxy>();
  /** Raft link proxies: "from>to" → the proxy `from` dials to reach `to`. */
  private readonly raftProxies = new Map<string, FaultProxy>();
  private readonly clients = new Map<string, ApiClient>();

  private constructor(readonly options: ChaosClusterOptions, readonly token: string, readonly natsPort: number) {}

  /**
   * Starts the nats-server, the proxies and the nodes; resolves once every node is healthy. A node
   * that exits while the cluster starts (a port picked free and taken meanwhile) makes it start again
   * from scratch, at most `START_ATTEMPTS` times.
   */
  static async start(options: ChaosClusterOptions): Promise<ChaosCluster> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await ChaosCluster.startOnce(options);
      } catch (e) {
        if (attempt >= START_ATTEMPTS || !(e instanceof ChaosClusterError) || !/ exited/.test(e.message)) throw e;
        for (let i = 1; i <= options.nodes; i++) rmSync(join(options.dir, `n${i}`), { recursive: true, force: true });
        rmSync(join(options.dir, "storage"), { recursive: true, force: true });
      }
    }
  }

  private static async startOnce(options: ChaosClusterOptions): Promise<ChaosCluster> {
    mkdirSync(options.dir, { recursive: true });
    const cluster = new ChaosCluster(options, randomBytes(24).toString("hex"), await freePort());
    try {
      await cluster.startNats();
      // the proxies listen first (on ports the system gives), so a port picked below for a node is never one of theirs
      const ids = Array.from({ length: options.nodes }, (_, i) => `n${i + 1}`);
      for (const p of ids) {
        cluster.natsProxies.set(p, await FaultProxy.start(`${p}>nats`, cluster.natsPort));
        for (const q of ids) if (q !== p) cluster.raftProxies.set(`${p}>${q}`, await FaultProxy.start(`${p}>${q}`, 0));
      }
      const plan: { id: string; api: number; raft: number; http: number }[] = [];
      for (const id of ids) plan.push({ id, api: await freePort(), raft: await freePort(), http: await freePort() });
      for (const [link, proxy] of cluster.raftProxies) proxy.retarget(plan.find((q) => q.id === link.slice(link.indexOf(">") + 1))!.raft);
      for (const p of plan) {
        const peers = plan.map((q) => `${q.id}=${q === p ? `127.0.0.1:${q.raft}` : cluster.raftProxies.get(`${p.id}>${q.id}`)!.address}`).join(",");
        const dataDir = join(options.dir, p.id);
        const self = { id: p.id, api: `127.0.0.1:${p.api}`, raft: `127.0.0.1:${p.raft}`, http: `127.0.0.1:${p.http}` };
        const natsUrl = `nats://${cluster.natsProxies.get(p.id)!.address}`;
        const env: NodeJS.ProcessEnv = {
          ...process.env,
          ...localNodeEnv({ memoryMib: options.memoryMib, env: options.env, clusterId: "chaos" }, options.dir, self, peers, natsUrl, cluster.token),
        };
        cluster.nodes.push({ id: p.id, apiAddress: `127.0.0.1:${p.api}`, httpAddress: `127.0.0.1:${p.http}`, raftPort: p.raft, dataDir, env, process: null });
      }
      for (const n of cluster.nodes) cluster.spawnNode(n);
      await cluster.waitHealthy(options.readyTimeoutMs ?? 60_000);
      return cluster;
    } catch (e) {
      await cluster.stop();
      throw e;
    }
  }

  node(id: string): ChaosNode {
    const n = this.nodes.find((x) => x.id === id);
    if (n === undefined) throw new ChaosClusterError(`no node ${id}`);
    return n;
  }

  alive(id: string): boolean {
    const p = this.node(id).process;
    return p !== null && !exited(p);
  }

  /** An API client of node `id` (kept; closed by `stop()`). */
  api(id: string, timeoutMs = 10_000): ApiClient {
    const key = `${id}/${timeoutMs}`;
    let c = this.clients.get(key);
    if (c === undefined) {
      c = new ApiClient(this.node(id).apiAddress, { token: this.token, timeoutMs });
      this.clients.set(key, c);
    }
    return c;
  }

  private spawnNode(n: ChaosNode): void {
    const child = spawn(process.execPath, [fleetdMainPath()], { env: n.env, stdio: ["ignore", "ignore", "pipe"] });
    child.stderr?.pipe(createWriteStream(join(this.options.dir, `${n.id}.log`), { flags: "a" }));
    child.once("exit", () => {
      if (child.pid !== undefined && !this.deaths.has(child.pid)) this.deaths.set(child.pid, Date.now());
    });
    n.process = child;
  }

  /** Resolves once every running node answers /healthz with 200. */
  async waitHealthy(timeoutMs: number, ids: readonly string[] = this.nodes.map((n) => n.id)): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const pending = new Set(ids);
    for (let i = 0; pending.size > 0 && i < 100_000; i++) {
      for (const id of [...pending]) {
        const n = this.node(id);
        if (n.process === null || exited(n.process)) throw new ChaosClusterError(`fleetd ${id} exited; see ${join(this.options.dir, `${id}.log`)}`);
        if ((await httpStatus(n.httpAddress, "/healthz")) === 200) pending.delete(id);
      }
      if (pending.size === 0) return;
      if (Date.now() > deadline) throw new ChaosClusterError(`not healthy within ${timeoutMs} ms: ${[...pending].join(", ")}`);
      await sleep(200);
    }
  }

  /** kill -9 of node `id`; resolves with the time it was seen gone. */
  async kill(id: string): Promise<number> {
    const child = this.node(id).process;
    if (child === null || exited(child)) throw new ChaosClusterError(`node ${id} is not running`);
    const gone = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGKILL");
    await Promise.race([gone, sleep(10_000)]);
    if (!exited(child)) throw new ChaosClusterError(`node ${id} did not die within 10 s of SIGKILL`);
    return this.deaths.get(child.pid!) ?? Date.now();
  }

  /** Starts a killed node again on its data directory and ports; resolves once it is healthy. */
  async restart(id: string, timeoutMs = 60_000): Promise<void> {
    const n = this.node(id);
    if (n.process !== null && !exited(n.process)) throw new ChaosClusterError(`node ${id} is still running`);
    this.spawnNode(n);
    await this.waitHealthy(timeoutMs, [id]);
  }

  /** Cuts node `id` off: its link to the nats-server and its Raft links, both directions. */
  cut(id: string): void {
    this.natsProxies.get(id)!.cut();
    for (const [link, p] of this.raftProxies) if (link.startsWith(`${id}>`) || link.endsWith(`>${id}`)) p.cut();
  }

  heal(id: string): void {
    this.natsProxies.get(id)!.heal();
    for (const [link, p] of this.raftProxies) if (link.startsWith(`${id}>`) || link.endsWith(`>${id}`)) p.heal();
  }

  async startNats(timeoutMs = 10_000): Promise<void> {
    const dir = join(this.options.dir, "nats");
    mkdirSync(dir, { recursive: true });
    const config = join(dir, "nats.conf");
    // a generous authentication timeout: a busy machine may take seconds to finish a CONNECT
    if (!existsSync(config)) writeFileSync(config, `authorization {\n  token: ${JSON.stringify(this.token)}\n  timeout: 10\n}\n`, { mode: 0o600 });
    const child = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(this.natsPort), "-c", config], { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr?.pipe(createWriteStream(join(dir, "nats.log"), { flags: "a" }));
    child.on("error", () => undefined);
    this.nats = child;
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < 10_000; i++) {
      if (exited(child)) throw new ChaosClusterError(`nats-server exited; see ${join(dir, "nats.log")}`);
      if (await portOpen(this.natsPort)) return;
      if (Date.now() > deadline) break;
      await sleep(50);
    }
    throw new ChaosClusterError(`nats-server did not listen within ${timeoutMs} ms`);
  }

  async stopNats(): Promise<void> {
    if (this.nats !== null) await stopProcess(this.nats, 3000);
    this.nats = null;
  }

  /** The Raft leader as the live nodes see it (null when none is agreed). */
  async leader(): Promise<string | null> {
    for (const n of this.nodes) {
      if (!this.alive(n.id)) continue;
      try {
        const s = await this.api(n.id, 3000).clusterStatus();
        if (s.leaderId !== "") return s.leaderId;
      } catch {
        // the next node
      }
    }
    return null;
  }

  /** Every node's run records (all processes, in file order). */
  runRecords(): RunRecord[] {
    const out: RunRecord[] = [];
    for (const n of this.nodes) {
      // a rotated file first (fleetd rotates past 64 MiB)
      for (const path of [`${runRecordsPath(n.dataDir)}.1`, runRecordsPath(n.dataDir)]) {
        if (existsSync(path)) out.push(...parseRunRecords(readFileSync(path, "utf8")));
      }
    }
    return out;
  }

  async stop(): Promise<void> {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
    // the cluster goes away whole: SIGKILL, nothing to save
    await Promise.all(this.nodes.map((n) => (n.process === null ? Promise.resolve() : stopProcess(n.process, 0, "SIGKILL"))));
    await this.stopNats();
    for (const p of [...this.natsProxies.values(), ...this.raftProxies.values()]) await p.close();
  }
}
