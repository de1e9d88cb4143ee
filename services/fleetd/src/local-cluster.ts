/**
 * A local cluster on loopback, as `hyperfleet up` starts it: a nats-server and N fleetd processes on
 * free ports, data under one directory (`<dir>/<node>/`, logs in `<dir>/<node>.log`, the VMs' disks
 * in `<dir>/storage/`, the cluster storage every node shares), and
 * `<dir>/cluster.json` ({ apiAddresses, token, natsUrl }) for the other CLI commands. With
 * `prometheus`, also a Prometheus server (Debian's `prometheus`) that scrapes every node's /metrics
 * with the recording rules of `deploy/prometheus/rules.yml`, storing under `<dir>/prometheus/`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { createServer } from "node:net";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { LocalNatsServer } from "@hyperfleet/migration";

export const CLUSTER_FILE = "cluster.json";
export const NODES_MAX = 9;

export interface LocalClusterOptions {
  readonly nodes: number;
  readonly dir: string;
  readonly memoryMib: number;
  /** Default 30,000 ms: how long to wait for every node's /healthz. */
  readonly readyTimeoutMs?: number;
  /** Guest images (default: fleetd's default, `guests/build`). */
  readonly imageDir?: string;
  /** Extra `HYPERFLEET_*` environment for every node. */
  readonly env?: Readonly<Record<string, string>>;
  /** Extra `HYPERFLEET_*` environment for one node (by id: n1, n2, ...), over `env`. */
  readonly nodeEnv?: (id: string) => Readonly<Record<string, string>>;
  /** Also start a Prometheus server that scrapes the nodes. */
  readonly prometheus?: Omit<LocalPrometheusOptions, "dir" | "targets">;
}

export interface LocalNode {
  readonly id: string;
  readonly apiAddress: string;
  readonly raftAddress: string;
  readonly httpAddress: string;
  readonly process: ChildProcess;
}

/** What `<dir>/cluster.json` holds. */
export interface ClusterFile {
  readonly apiAddresses: readonly string[];
  readonly token: string;
  readonly natsUrl: string;
  /** Prometheus's address (http://host:port) when the cluster runs one. */
  readonly prometheusUrl?: string;
}

export class LocalClusterError extends Error {
  override readonly name = "LocalClusterError";
}

/** The fleetd program: `dist/main.js` of this package (from `src/` or `dist/` alike). */
export function fleetdMainPath(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "..", "dist", "main.js");
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A free loopback TCP port (the operating system's choice). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** GET http://address/path: the status code, or 0 when nothing answers. */
export function httpStatus(address: string, path: string, timeoutMs = 1000): Promise<number> {
  return new Promise((resolveStatus) => {
    const req = request(`http://${address}${path}`, { timeout: timeoutMs }, (res) => {
      res.resume();
      resolveStatus(res.statusCode ?? 0);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolveStatus(0));
    req.end();
  });
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** `signal` (SIGTERM), then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopProcess(child: ChildProcess, graceMs = 5000, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (exited(child)) return;
  const gone = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill(signal);
  const timer = new Promise<"late">((r) => setTimeout(() => r("late"), graceMs).unref());
  if ((await Promise.race([gone, timer])) === "late" && !exited(child)) {
    child.kill("SIGKILL");
    await gone;
  }
}

/**
 * The `HYPERFLEET_*` environment of node `node.id` (docker-compose.yml gives its nodes the same keys):
 * `peers` is "id=raftAddress,...", the data under `<dir>/<id>`, the cluster storage `<dir>/storage`,
 * the cluster id `clusterId` ("local" unless given).
 */
export function localNodeEnv(
  options: Pick<LocalClusterOptions, "memoryMib" | "imageDir" | "env" | "nodeEnv"> & { clusterId?: string }, dir: string,
  node: { readonly id: string; readonly api: string; readonly raft: string; readonly http: string }, peers: string, natsUrl: string, token: string,
): Record<string, string> {
  return {
    // cluster storage: one folder every node shares (the VMs' virtual disks)
    HYPERFLEET_STORAGE_DIR: join(dir, "storage"),
    ...options.env,
    ...options.nodeEnv?.(node.id),
    HYPERFLEET_ID: node.id,
    HYPERFLEET_CLUSTER_ID: options.clusterId ?? "local",
    HYPERFLEET_CLUSTER_TOKEN: token,
    HYPERFLEET_DATA_DIR: join(dir, node.id),
    HYPERFLEET_LISTEN_API: node.api,
    HYPERFLEET_LISTEN_RAFT: node.raft,
    HYPERFLEET_LISTEN_HTTP: node.http,
    HYPERFLEET_PEERS: peers,
    HYPERFLEET_NATS_URL: natsUrl,
    HYPERFLEET_MEMORY_MIB: String(options.memoryMib),
    ...(options.imageDir !== undefined ? { HYPERFLEET_IMAGE_DIR: options.imageDir } : {}),
  };
}

/** Tries of `LocalCluster.start` when a node exits as it starts (a port taken meanwhile). */
const START_ATTEMPTS = 3;

export class LocalCluster {
  private constructor(
    readonly nats: LocalNatsServer,
    readonly nodes: readonly LocalNode[],
    readonly token: string,
    readonly dir: string,
    readonly prometheus: LocalPrometheus | null = null,
  ) {}

  get apiAddresses(): string[] {
    return this.nodes.map((n) => n.apiAddress);
  }

  get natsUrl(): string {
    return this.nats.url;
  }

  /** Starts everything and resolves once every node answers /healthz with 200; on failure stops what it started. */
  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    // Ports are picked free and then bound by the node, so another process may take one in between
    // (EADDRINUSE): a node that exits while the cluster starts is tried again on fresh ports, twice.
    for (let attempt = 1; ; attempt++) {
      try {
        return await LocalCluster.startOnce(options);
      } catch (e) {
        if (attempt >= START_ATTEMPTS || !(e instanceof LocalClusterError) || !/ exited /.test(e.message)) throw e;
      }
    }
  }

  private static async startOnce(options: LocalClusterOptions): Promise<LocalCluster> {
    if (!Number.isInteger(options.nodes) || options.nodes < 1 || options.nodes > NODES_MAX) {
      throw new LocalClusterError(`--nodes must be an integer from 1 to ${NODES_MAX}`);
    }
    const dir = resolve(options.dir);
    mkdirSync(dir, { recursive: true });
    const token = LocalCluster.previousToken(dir) ?? randomBytes(24).toString("hex");
    // The NATS server admits only holders of the cluster token: migration traffic is authenticated too.
    const nats = await LocalNatsServer.start(5000, { token });
    const nodes: LocalNode[] = [];
    let prometheus: LocalPrometheus | null = null;
    try {
      const plan: { id: string; api: string; raft: string; http: string }[] = [];
      for (let i = 1; i <= options.nodes; i++) {
        plan.push({ id: `n${i}`, api: `127.0.0.1:${await freePort()}`, raft: `127.0.0.1:${await freePort()}`, http: `127.0.0.1:${await freePort()}` });
      }
      const peers = plan.map((p) => `${p.id}=${p.raft}`).join(",");
      for (const p of plan) {
        const env: NodeJS.ProcessEnv = { ...process.env, ...localNodeEnv(options, dir, p, peers, nats.url, token) };
        const child = spawn(process.execPath, [fleetdMainPath()], { env, stdio: ["ignore", "ignore", "pipe"] });
        child.stderr?.pipe(createWriteStream(join(dir, `${p.id}.log`), { flags: "a" }));
        nodes.push({ id: p.id, apiAddress: p.api, raftAddress: p.raft, httpAddress: p.http, process: child });
      }
      await new LocalCluster(nats, nodes, token, dir).waitHealthy(options.readyTimeoutMs ?? 30_000);
      if (options.prometheus !== undefined) {
        prometheus = await LocalPrometheus.start({ ...options.prometheus, dir: join(dir, "prometheus"), targets: nodes.map((n) => n.httpAddress) });
      }
      const cluster = new LocalCluster(nats, nodes, token, dir, prometheus);
      const file: ClusterFile = { apiAddresses: cluster.apiAddresses, token, natsUrl: nats.url, ...(prometheus !== null ? { prometheusUrl: prometheus.url } : {}) };
      writeFileSync(join(dir, CLUSTER_FILE), `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
      return cluster;
    } catch (e) {
      await prometheus?.stop();
      await Promise.all(nodes.map((n) => stopProcess(n.process, 2000)));
      await nats.stop();
      throw e;
    }
  }

  private static previousToken(dir: string): string | undefined {
    const path = join(dir, CLUSTER_FILE);
    if (!existsSync(path)) return undefined;
    try {
      const token = (JSON.parse(readFileSync(path, "utf8")) as Partial<ClusterFile>).token;
      return typeof token === "string" && /^\S+$/.test(token) ? token : undefined;
    } catch {
      return undefined;
    }
  }

  /** Resolves once every node still running answers /healthz with 200. */
  async waitHealthy(timeoutMs: number, nodes: readonly LocalNode[] = this.nodes): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const pending = new Set(nodes);
    while (pending.size > 0) {
      for (const n of [...pending]) {
        if (exited(n.process)) {
          throw new LocalClusterError(`fleetd ${n.id} exited (code ${n.process.exitCode ?? n.process.signalCode}); see ${join(this.dir, `${n.id}.log`)}`);
        }
        if ((await httpStatus(n.httpAddress, "/healthz")) === 200) pending.delete(n);
      }
      if (pending.size === 0) break;
      if (Date.now() > deadline) {
        throw new LocalClusterError(`not healthy within ${timeoutMs} ms: ${[...pending].map((n) => n.id).join(", ")}`);
      }
      await sleep(100);
    }
  }

  /**
   * Stops every node and then the nats-server. The whole cluster stops, so nothing is moved: SIGINT
   * has each node save its VMs where they are (restored when the cluster starts again); SIGKILL after
   * `graceMs`.
   */
  async stop(graceMs = 10_000): Promise<void> {
    await this.prometheus?.stop();
    await Promise.all(this.nodes.map((n) => stopProcess(n.process, graceMs, "SIGINT")));
    await this.nats.stop();
  }
}

// ---- Prometheus ----

export interface LocalPrometheusOptions {
  /** Where the configuration, the TSDB and `prometheus.log` go. */
  readonly dir: string;
  /** host:port of each fleetd's HTTP server (/metrics). */
  readonly targets: readonly string[];
  /** Default 5000 ms: the scrape and rule evaluation interval. */
  readonly scrapeIntervalMs?: number;
  /** Default: a free loopback port. */
  readonly port?: number;
  /** Default: `deploy/prometheus/rules.yml` of this repository. */
  readonly rulesFile?: string;
  /** Default: `prometheus` on the PATH. */
  readonly binary?: string;
  /** Default 30,000 ms: how long to wait for /-/ready. */
  readonly readyTimeoutMs?: number;
}

/** The recording rules shipped in `deploy/prometheus/rules.yml` (from `src/` or `dist/` alike). */
export function defaultRulesFile(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "deploy", "prometheus", "rules.yml");
}

/** The path of an executable on the PATH, or null. */
export function findExecutable(name: string): string | null {
  for (const d of (process.env["PATH"] ?? "").split(delimiter)) {
    if (d === "") continue;
    const path = join(d, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return null;
}

/** The Prometheus configuration that scrapes `targets` (job "fleetd") with `rulesFile`. */
export function prometheusConfig(targets: readonly string[], scrapeIntervalMs: number, rulesFile: string): string {
  const interval = `${scrapeIntervalMs}ms`;
  return [
    "global:",
    `  scrape_interval: ${interval}`,
    `  evaluation_interval: ${interval}`,
    "rule_files:",
    `  - ${JSON.stringify(rulesFile)}`,
    "scrape_configs:",
    "  - job_name: fleetd",
    "    static_configs:",
    `      - targets: [${targets.map((t) => JSON.stringify(t)).join(", ")}]`,
    "",
  ].join("\n");
}

/** A Prometheus server on loopback, storing under its own directory. */
export class LocalPrometheus {
  private constructor(readonly process: ChildProcess, readonly url: string, readonly dir: string) {}

  static async start(options: LocalPrometheusOptions): Promise<LocalPrometheus> {
    const binary = options.binary ?? findExecutable("prometheus");
    if (binary === null) throw new LocalClusterError("prometheus is not installed: run scripts/setup.sh (Debian package prometheus)");
    const dir = resolve(options.dir);
    mkdirSync(join(dir, "data"), { recursive: true });
    const configFile = join(dir, "prometheus.yml");
    writeFileSync(configFile, prometheusConfig(options.targets, options.scrapeIntervalMs ?? 5000, options.rulesFile ?? defaultRulesFile()));
    const port = options.port ?? await freePort();
    const address = `127.0.0.1:${port}`;
    const child = spawn(binary, [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=${address}`,
      "--web.enable-lifecycle",
    ], { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr?.pipe(createWriteStream(join(dir, "prometheus.log"), { flags: "a" }));
    const prometheus = new LocalPrometheus(child, `http://${address}`, dir);
    const timeoutMs = options.readyTimeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (exited(child)) throw new LocalClusterError(`prometheus exited (code ${child.exitCode ?? child.signalCode}); see ${join(dir, "prometheus.log")}`);
      if ((await httpStatus(address, "/-/ready")) === 200) return prometheus;
      if (Date.now() > deadline) {
        await prometheus.stop();
        throw new LocalClusterError(`prometheus not ready within ${timeoutMs} ms; see ${join(dir, "prometheus.log")}`);
      }
      await sleep(100);
    }
  }

  /** An instant query (`/api/v1/query`): the result vector as { labels, value } pairs. */
  async query(promql: string): Promise<{ metric: Record<string, string>; value: number }[]> {
    const res = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] } };
    if (body.status !== "success" || body.data === undefined) throw new LocalClusterError(`prometheus query ${promql}: ${body.error ?? res.status}`);
    if (body.data.resultType === "scalar") {
      const v = body.data.result as unknown as [number, string];
      return [{ metric: {}, value: Number(v[1]) }];
    }
    return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  }

  async stop(graceMs = 5000): Promise<void> {
    await stopProcess(this.process, graceMs);
  }
}
