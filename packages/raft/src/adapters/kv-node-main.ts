/**
 * A member of a replicated key-value store, as a process:
 *
 *   node --import tsx packages/raft/src/adapters/kv-node-main.ts \
 *     --id n1 --cluster-id kv1 --data-dir /var/lib/kv/n1 \
 *     --listen-raft 127.0.0.1:7001 --listen-kv 127.0.0.1:8001 \
 *     --peers n1=127.0.0.1:7001/127.0.0.1:8001,n2=127.0.0.1:7002/127.0.0.1:8002,n3=127.0.0.1:7003/127.0.0.1:8003
 *
 * (or `node packages/raft/dist/adapters/kv-node-main.js …` once built). Every flag can also come from
 * the environment: `--data-dir` is `HYPERFLEET_KV_DATA_DIR`, and so on; flags win.
 *
 *   --id ID                 this member's id (required)
 *   --cluster-id ID         the cluster's id (required)
 *   --data-dir DIR          WAL and snapshots; created if missing, reused on restart (required)
 *   --listen-raft HOST:PORT where peers reach this member (required)
 *   --listen-kv HOST:PORT   where clients reach this member (required)
 *   --peers LIST            id=RAFT_ADDRESS/KV_ADDRESS, comma-separated: the members known at start
 *   --initial-voters IDS    founding voters, comma-separated (default: every id of --peers); a member
 *                           not among them joins later (see `RaftNodeOptions.initialVoters`)
 *   --tick-ms N             default 10
 *   --election-ticks N      default 40: the election timeout is randomized in [N, 2N) ticks, 400–800 ms,
 *                           so that a new leader serves writes within 1 s of losing the old one
 *                           (`pnpm bench raft`); fine ticks give 40 distinct timeouts, so two followers
 *                           rarely time out together and split the vote
 *   --heartbeat-ticks N     default 5 (a heartbeat every 50 ms)
 *   --snapshot-every N      entries between snapshots, default 10000
 *   --compact-keep N        entries kept behind a snapshot, default 1000
 *   --cluster-token TOKEN   required of every Raft peer when set
 *
 * Once both servers listen it prints one line on stdout:
 *   {"ready":true,"id":"n1","raftAddress":"127.0.0.1:7001","kvAddress":"127.0.0.1:8001","pid":1234}
 * Log lines (JSON) go to stderr. SIGTERM or SIGINT: stops serving, closes the member (the WAL is synced
 * and closed), exits 0. An error the member cannot continue from: exits 1.
 */
import { realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { GrpcRaftTransport } from "./grpc-transport.js";
import { KvService, kvReplicatedStateMachine } from "./kv-service.js";
import { type MemberInfo, RaftNode, type RaftNodeLogger } from "./raft-node.js";
import { KvStateMachine } from "../kv.js";

/** A command line or environment that does not describe a member. */
export class KvNodeConfigError extends Error {
  override readonly name = "KvNodeConfigError";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

export interface KvNodeConfig {
  readonly id: string;
  readonly clusterId: string;
  readonly dataDir: string;
  readonly listenRaft: { readonly host: string; readonly port: number };
  readonly listenKv: { readonly host: string; readonly port: number };
  readonly peers: readonly MemberInfo[];
  readonly initialVoters: readonly string[];
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly snapshotEveryEntries: number;
  readonly compactKeepEntries: number;
  readonly clusterToken: string | undefined;
}

const FLAGS = [
  "id", "cluster-id", "data-dir", "listen-raft", "listen-kv", "peers", "initial-voters", "tick-ms", "election-ticks", "heartbeat-ticks", "snapshot-every",
  "compact-keep", "cluster-token",
] as const;
type Flag = (typeof FLAGS)[number];

function envName(flag: Flag): string {
  return `HYPERFLEET_KV_${flag.toUpperCase().replaceAll("-", "_")}`;
}

/** "host:port" or "[v6]:port". */
export function parseHostPort(text: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  if (m === null) throw new KvNodeConfigError(`${what}: expected HOST:PORT, got ${JSON.stringify(text)}`);
  const port = Number(m[3]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new KvNodeConfigError(`${what}: bad port in ${JSON.stringify(text)}`);
  return { host: m[1] ?? m[2]!, port };
}

/** "n1=RAFT/KV,n2=RAFT/KV" (the KV part optional). */
export function parsePeers(text: string): MemberInfo[] {
  if (text.trim() === "") return [];
  return text.split(",").map((item) => {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new KvNodeConfigError(`--peers: expected id=RAFT_ADDRESS/KV_ADDRESS, got ${JSON.stringify(item)}`);
    const id = item.slice(0, eq).trim();
    const [peerAddress = "", clientAddress = ""] = item.slice(eq + 1).split("/");
    parseHostPort(peerAddress, `--peers ${id}`);
    if (clientAddress !== "") parseHostPort(clientAddress, `--peers ${id}`);
    return { id, peerAddress, clientAddress };
  });
}

/** The member's configuration from flags (`--name value` or `--name=value`), then the environment. */
export function parseKvNodeConfig(argv: readonly string[], env: NodeJS.ProcessEnv): KvNodeConfig {
  const values = new Map<Flag, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) throw new KvNodeConfigError(`unexpected argument ${JSON.stringify(arg)}`);
    const eq = arg.indexOf("=");
    const name = (eq < 0 ? arg.slice(2) : arg.slice(2, eq)) as Flag;
    if (!FLAGS.includes(name)) throw new KvNodeConfigError(`unknown flag --${name} (known: ${FLAGS.map((f) => `--${f}`).join(" ")})`);
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else value = argv[++i];
    if (value === undefined) throw new KvNodeConfigError(`--${name} needs a value`);
    values.set(name, value);
  }
  const get = (flag: Flag): string | undefined => values.get(flag) ?? env[envName(flag)];
  const required = (flag: Flag): string => {
    const v = get(flag);
    if (v === undefined || v === "") throw new KvNodeConfigError(`--${flag} (or ${envName(flag)}) is required`);
    return v;
  };
  const integer = (flag: Flag, fallback: number): number => {
    const v = get(flag);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 1) throw new KvNodeConfigError(`--${flag} must be a positive integer, got ${JSON.stringify(v)}`);
    return n;
  };
  const id = required("id");
  const peers = parsePeers(get("peers") ?? "");
  const voters = get("initial-voters");
  const initialVoters = voters !== undefined ? voters.split(",").map((s) => s.trim()).filter((s) => s !== "") : peers.map((p) => p.id);
  if (initialVoters.length === 0) throw new KvNodeConfigError("no founding voters: give --peers (or --initial-voters)");
  return {
    id,
    clusterId: required("cluster-id"),
    dataDir: required("data-dir"),
    listenRaft: parseHostPort(required("listen-raft"), "--listen-raft"),
    listenKv: parseHostPort(required("listen-kv"), "--listen-kv"),
    peers,
    initialVoters,
    tickMs: integer("tick-ms", 10),
    electionTicks: integer("election-ticks", 40),
    heartbeatTicks: integer("heartbeat-ticks", 5),
    snapshotEveryEntries: integer("snapshot-every", 10_000),
    compactKeepEntries: integer("compact-keep", 1_000),
    clusterToken: get("cluster-token"),
  };
}

function log(level: "info" | "warn" | "error", msg: string): void {
  process.stderr.write(`${JSON.stringify({ timeMs: Date.now(), level, msg })}\n`);
}

async function main(): Promise<void> {
  let config: KvNodeConfig;
  try {
    config = parseKvNodeConfig(process.argv.slice(2), process.env);
  } catch (e) {
    log("error", e instanceof Error ? e.message : String(e));
    process.exit(2);
  }
  const logger: RaftNodeLogger = { info: (line) => log("info", line), warn: (line) => log("warn", line) };
  const transport = new GrpcRaftTransport({ clusterId: config.clusterId, id: config.id, clusterToken: config.clusterToken });
  const raftAddress = await transport.listen(config.listenRaft);
  const kv = new KvStateMachine();
  let stopping = false;
  const self = config.peers.find((p) => p.id === config.id);
  const peers: MemberInfo[] = [
    ...config.peers.filter((p) => p.id !== config.id),
    { id: config.id, peerAddress: raftAddress.address, clientAddress: self?.clientAddress ?? `${config.listenKv.host}:${config.listenKv.port}` },
  ];
  const node = RaftNode.start({
    id: config.id,
    clusterId: config.clusterId,
    dataDir: config.dataDir,
    transport,
    stateMachine: kvReplicatedStateMachine(kv),
    initialVoters: config.initialVoters,
    peers,
    tickMs: config.tickMs,
    electionTicks: config.electionTicks,
    heartbeatTicks: config.heartbeatTicks,
    snapshotEveryEntries: config.snapshotEveryEntries,
    compactKeepEntries: config.compactKeepEntries,
    logger,
    onFatal: (error) => {
      log("error", `${error.message}${error.cause instanceof Error && error.cause.stack !== undefined ? `\n${error.cause.stack}` : ""}`);
      process.exit(1);
    },
  });
  const service = new KvService({ node, kv });
  const kvAddress = await service.listen(config.listenKv);
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log("info", `${config.id}: ${signal}, shutting down`);
    void (async () => {
      await service.close();
      await node.close();
      process.exit(0);
    })().catch((e: unknown) => {
      log("error", `shutdown failed: ${e instanceof Error ? e.message : String(e)}`);
      process.exit(1);
    });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  process.stdout.write(`${JSON.stringify({ ready: true, id: config.id, raftAddress: raftAddress.address, kvAddress: kvAddress.address, pid: process.pid })}\n`);
}

// Runs only as a program, so that the parsing above can be imported (and tested) without starting a member.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  main().catch((e: unknown) => {
    log("error", e instanceof Error ? `${e.name}: ${e.message}` : String(e));
    process.exit(1);
  });
}
