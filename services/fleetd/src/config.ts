/**
 * fleetd's configuration: a JSON file (`--config FILE`), then the environment (`HYPERFLEET_<NAME>`,
 * e.g. `HYPERFLEET_DATA_DIR`), then flags (`--data-dir DIR` or `--data-dir=DIR`); a later source wins.
 * In the file, keys are the flag names (`"data-dir"`) or their camelCase (`"dataDir"`); values are
 * strings or numbers. Every field is checked and a bad one is named in one `FleetdConfigError`.
 */
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { NAME_PATTERN } from "@hyperfleet/api";

/** A configuration that does not describe a node (fleetd exits 2 with its message). */
export class FleetdConfigError extends Error {
  override readonly name = "FleetdConfigError";
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface PeerConfig {
  readonly id: string;
  /** "host:port" of the peer's Raft transport. */
  readonly raftAddress: string;
}

export interface FleetdConfig {
  readonly id: string;
  readonly clusterId: string;
  readonly clusterToken: string;
  readonly dataDir: string;
  readonly listenApi: HostPort;
  readonly listenRaft: HostPort;
  readonly listenHttp: HostPort;
  readonly peers: readonly PeerConfig[];
  readonly initialVoters: readonly string[];
  readonly natsUrl: string;
  /** Presented to the NATS server (node-to-node requests and migration traffic); default: the cluster token. */
  readonly natsToken: string;
  readonly memoryMib: number;
  readonly vcpus: number;
  readonly imageDir: string;
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  /** How long a lease lasts from each renewal. */
  readonly leaseMs: number;
  /**
   * SIGTERM: how long the node waits for its running VMs to be live-migrated away before it saves
   * those still here (0: save at once).
   */
  readonly shutdownTimeoutMs: number;
  /**
   * Failover: the leader declares a node failed, and restarts its VMs elsewhere, only this long after
   * the node's lease ended (a margin for clock skew between nodes).
   */
  readonly failoverMarginMs: number;
  /** Self-fencing: a node stops its VMs this long before its lease ends when it could not renew it. */
  readonly fenceMarginMs: number;
  /** Rebalancing: how often the leader looks for a live migration that evens out the nodes' load (0: never). */
  readonly rebalanceIntervalMs: number;
  /** Rebalancing acts when the most and least loaded nodes differ by more than this many percent. */
  readonly rebalanceThresholdPercent: number;
  /**
   * Cluster storage: the folder (shared by every node) holding the VMs' virtual disks,
   * `<storage-dir>/<vm>/disk<i>.hfdisk`. Null: this node cannot run VMs with disks.
   */
  readonly storageDir: string | null;
  /** A graceful stop gives the guest this long to power off after the shutdown request (StopVm without a timeout). */
  readonly guestShutdownTimeoutMs: number;
  /** TCP ports on this node that reach a VM's request/response service through its first NIC, wherever it runs. */
  readonly gateways: readonly GatewayConfig[];
}

/** `--gateways [HOST:]PORT=VM,...`: one gateway (see `Gateway` in @hyperfleet/vmbus) per entry. */
export interface GatewayConfig {
  readonly listen: HostPort;
  readonly vm: string;
}

export const CONFIG_FLAGS = [
  "id", "cluster-id", "cluster-token", "data-dir", "listen-api", "listen-raft", "listen-http", "peers", "initial-voters", "nats-url",
  "memory-mib", "vcpus", "image-dir", "tick-ms", "election-ticks", "heartbeat-ticks", "lease-ms",
  "shutdown-timeout-ms", "nats-token", "failover-margin-ms", "fence-margin-ms",
  "rebalance-interval-ms", "rebalance-threshold-percent", "storage-dir", "guest-shutdown-timeout-ms", "gateways",
] as const;
export type ConfigFlag = (typeof CONFIG_FLAGS)[number];

const ID_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/;

/** The guest images built by `make -C guests`: `<repo>/guests/build`. */
export function defaultImageDir(): string {
  // src/config.ts and dist/config.js are both two levels below services/fleetd
  return resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "guests", "build");
}

export function envName(flag: ConfigFlag): string {
  return `HYPERFLEET_${flag.toUpperCase().replaceAll("-", "_")}`;
}

function camel(flag: ConfigFlag): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

export function parseHostPort(text: string, what: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  if (m === null) throw new FleetdConfigError(`${what}: expected HOST:PORT, got ${JSON.stringify(text)}`);
  const port = Number(m[3]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new FleetdConfigError(`${what}: port must be 0 to 65535, got ${JSON.stringify(text)}`);
  return { host: m[1] ?? m[2]!, port };
}

export function parsePeers(text: string): PeerConfig[] {
  if (text.trim() === "") return [];
  const seen = new Set<string>();
  return text.split(",").map((item) => {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new FleetdConfigError(`--peers: expected id=HOST:PORT, got ${JSON.stringify(item)}`);
    const id = item.slice(0, eq).trim();
    if (!ID_PATTERN.test(id)) throw new FleetdConfigError(`--peers: bad node id ${JSON.stringify(id)}`);
    if (seen.has(id)) throw new FleetdConfigError(`--peers: node ${id} is listed twice`);
    seen.add(id);
    const raftAddress = item.slice(eq + 1).trim();
    parseHostPort(raftAddress, `--peers ${id}`);
    return { id, raftAddress };
  });
}

/** `[HOST:]PORT=VM,...` (HOST defaults to `defaultHost`); "" is none. */
export function parseGateways(text: string, defaultHost: string): GatewayConfig[] {
  if (text.trim() === "") return [];
  const seen = new Set<string>();
  return text.split(",").map((item) => {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new FleetdConfigError(`--gateways: expected [HOST:]PORT=VM, got ${JSON.stringify(item)}`);
    const where = item.slice(0, eq).trim();
    const vm = item.slice(eq + 1).trim();
    if (!NAME_PATTERN.test(vm)) throw new FleetdConfigError(`--gateways: bad VM name ${JSON.stringify(vm)} in ${JSON.stringify(item)}`);
    const listen = parseHostPort(/^\d+$/.test(where) ? `${defaultHost.includes(":") ? `[${defaultHost}]` : defaultHost}:${where}` : where, `--gateways ${vm}`);
    const key = `${listen.host}:${listen.port}`;
    if (listen.port !== 0 && seen.has(key)) throw new FleetdConfigError(`--gateways: ${key} is listed twice`);
    seen.add(key);
    return { listen, vm };
  });
}

function readFile(path: string): Map<ConfigFlag, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new FleetdConfigError(`--config ${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new FleetdConfigError(`--config ${path}: expected a JSON object`);
  const out = new Map<ConfigFlag, string>();
  for (const [key, value] of Object.entries(parsed)) {
    const flag = CONFIG_FLAGS.find((f) => f === key || camel(f) === key);
    if (flag === undefined) throw new FleetdConfigError(`--config ${path}: unknown field ${JSON.stringify(key)}`);
    if (typeof value === "string" || typeof value === "number") out.set(flag, String(value));
    else if (Array.isArray(value) && value.every((v) => typeof v === "string")) out.set(flag, value.join(","));
    else throw new FleetdConfigError(`--config ${path}: field ${key} must be a string or a number`);
  }
  return out;
}

/** Builds the configuration from flags, the environment and the `--config` file. Throws `FleetdConfigError`. */
export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv): FleetdConfig {
  const flags = new Map<ConfigFlag, string>();
  let configFile = env["HYPERFLEET_CONFIG"];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) throw new FleetdConfigError(`unexpected argument ${JSON.stringify(arg)}`);
    const eq = arg.indexOf("=");
    const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new FleetdConfigError(`--${name} needs a value`);
    if (name === "config") {
      configFile = value;
      continue;
    }
    const flag = CONFIG_FLAGS.find((f) => f === name);
    if (flag === undefined) throw new FleetdConfigError(`unknown flag --${name}`);
    flags.set(flag, value);
  }
  const file = configFile !== undefined && configFile !== "" ? readFile(configFile) : new Map<ConfigFlag, string>();
  const get = (flag: ConfigFlag): string | undefined => flags.get(flag) ?? env[envName(flag)] ?? file.get(flag);
  const required = (flag: ConfigFlag): string => {
    const v = get(flag);
    if (v === undefined || v.trim() === "") throw new FleetdConfigError(`--${flag} (or ${envName(flag)}) is required`);
    return v.trim();
  };
  const identifier = (flag: ConfigFlag): string => {
    const v = required(flag);
    if (!ID_PATTERN.test(v)) throw new FleetdConfigError(`--${flag}: use 1-63 letters, digits, dot, dash or underscore, got ${JSON.stringify(v)}`);
    return v;
  };
  const integer = (flag: ConfigFlag, fallback: number, min: number, max: number): number => {
    const v = get(flag);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (v.trim() === "" || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new FleetdConfigError(`--${flag} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
    }
    return n;
  };

  const id = identifier("id");
  const clusterId = identifier("cluster-id");
  const clusterToken = required("cluster-token");
  if (/\s/.test(clusterToken)) throw new FleetdConfigError("--cluster-token must not contain whitespace");
  const dataDir = resolve(required("data-dir"));
  const listenApi = parseHostPort(required("listen-api"), "--listen-api");
  const listenRaft = parseHostPort(required("listen-raft"), "--listen-raft");
  const listenHttp = parseHostPort(required("listen-http"), "--listen-http");
  const peers = parsePeers(get("peers") ?? "");
  const votersText = get("initial-voters");
  const initialVoters = votersText !== undefined
    ? votersText.split(",").map((s) => s.trim()).filter((s) => s !== "")
    : peers.length > 0 ? peers.map((p) => p.id) : [id];
  if (initialVoters.length === 0) throw new FleetdConfigError("--initial-voters: no founding voters");
  for (const v of initialVoters) {
    if (!ID_PATTERN.test(v)) throw new FleetdConfigError(`--initial-voters: bad node id ${JSON.stringify(v)}`);
  }
  const natsUrl = required("nats-url");
  if (!/^(nats|tls|ws|wss):\/\/[^\s]+$/.test(natsUrl)) throw new FleetdConfigError(`--nats-url: expected nats://HOST:PORT, got ${JSON.stringify(natsUrl)}`);
  const tickMs = integer("tick-ms", 10, 1, 1000);
  const electionTicks = integer("election-ticks", 40, 2, 10_000);
  const heartbeatTicks = integer("heartbeat-ticks", 5, 1, 10_000);
  if (heartbeatTicks >= electionTicks) {
    throw new FleetdConfigError(`--heartbeat-ticks (${heartbeatTicks}) must be less than --election-ticks (${electionTicks})`);
  }
  const imageDir = resolve(get("image-dir") ?? defaultImageDir());
  return {
    id,
    clusterId,
    clusterToken,
    dataDir,
    listenApi,
    listenRaft,
    listenHttp,
    peers,
    initialVoters,
    natsUrl,
    memoryMib: integer("memory-mib", 512, 1, 2047),
    vcpus: integer("vcpus", 4, 1, 1024),
    imageDir,
    tickMs,
    electionTicks,
    heartbeatTicks,
    leaseMs: integer("lease-ms", 10_000, 1000, 60_000),
    shutdownTimeoutMs: integer("shutdown-timeout-ms", 60_000, 0, 3_600_000),
    natsToken: get("nats-token")?.trim() || clusterToken,
    failoverMarginMs: integer("failover-margin-ms", 1000, 0, 60_000),
    rebalanceIntervalMs: integer("rebalance-interval-ms", 0, 0, 86_400_000),
    rebalanceThresholdPercent: integer("rebalance-threshold-percent", 20, 1, 100),
    storageDir: (() => {
      const v = get("storage-dir");
      return v === undefined || v.trim() === "" ? null : resolve(v.trim());
    })(),
    guestShutdownTimeoutMs: integer("guest-shutdown-timeout-ms", 5000, 0, 3_600_000),
    gateways: parseGateways(get("gateways") ?? "", listenApi.host),
    fenceMarginMs: (() => {
      const fence = integer("fence-margin-ms", 2000, 0, 60_000);
      const lease = integer("lease-ms", 10_000, 1000, 60_000);
      if (fence * 2 > lease) throw new FleetdConfigError(`--fence-margin-ms (${fence}) must be at most half of --lease-ms (${lease})`);
      return fence;
    })(),
  };
}

/** `<dataDir>/raft`: the Raft member's WAL and snapshots. */
export function raftDir(config: FleetdConfig): string {
  return join(config.dataDir, "raft");
}
