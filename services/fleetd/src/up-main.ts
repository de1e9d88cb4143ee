#!/usr/bin/env node
/**
 * Runs a local cluster until SIGINT or SIGTERM (what `hyperfleet up` starts):
 *   node services/fleetd/dist/up-main.js [--nodes 3] [--dir .hyperfleet] [--memory-mib 512] [--prometheus] [--prometheus-port 9090]
 * `--prometheus` also starts Prometheus (Debian's `prometheus`) scraping every node with the recording
 * rules of deploy/prometheus/rules.yml; `--prometheus-port` (default 9090; 0: a free port) implies it.
 * Prints the endpoints once every node is healthy; on a signal stops every node (SIGTERM, then SIGKILL
 * after a bound) and the nats-server, and exits 0. Bad options exit 2; a cluster that does not come up, 1.
 */
import { realpathSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { CLUSTER_FILE, LocalCluster, NODES_MAX } from "./local-cluster.js";

export class UpUsageError extends Error {
  override readonly name = "UpUsageError";
}

export interface UpOptions {
  readonly nodes: number;
  readonly dir: string;
  readonly memoryMib: number;
  /** Start Prometheus too, listening on loopback at this port (0: a free one). */
  readonly prometheusPort?: number;
}

export function parseUpArgs(argv: readonly string[]): UpOptions {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf("=");
    const name = eq < 0 ? arg : arg.slice(0, eq);
    if (name === "--prometheus" && eq < 0) {
      values.set(name, "");
      continue;
    }
    if (name !== "--nodes" && name !== "--dir" && name !== "--memory-mib" && name !== "--prometheus-port") throw new UpUsageError(`unknown option ${JSON.stringify(arg)}`);
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new UpUsageError(`${name} needs a value`);
    values.set(name, value);
  }
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const v = values.get(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (v.trim() === "" || !Number.isInteger(n) || n < min || n > max) throw new UpUsageError(`${name} must be an integer from ${min} to ${max}`);
    return n;
  };
  const prometheus = values.has("--prometheus") || values.has("--prometheus-port");
  return {
    nodes: integer("--nodes", 3, 1, NODES_MAX), dir: values.get("--dir") ?? ".hyperfleet", memoryMib: integer("--memory-mib", 512, 16, 2047),
    ...(prometheus ? { prometheusPort: integer("--prometheus-port", 9090, 0, 65535) } : {}),
  };
}

async function main(): Promise<void> {
  let options: UpOptions;
  try {
    options = parseUpArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`hyperfleet up: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(2);
  }
  process.stdout.write(`starting nats-server and ${options.nodes} fleetd nodes under ${options.dir} ...\n`);
  const cluster = await LocalCluster.start({
    nodes: options.nodes, dir: options.dir, memoryMib: options.memoryMib,
    ...(options.prometheusPort !== undefined ? { prometheus: options.prometheusPort === 0 ? {} : { port: options.prometheusPort } } : {}),
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`${signal}: stopping the cluster ...\n`);
    cluster.stop().then(() => process.exit(0), (e: unknown) => {
      process.stderr.write(`hyperfleet up: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    });
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  const lines = [
    `cluster up: ${cluster.nodes.length} nodes`,
    `  nats:  ${cluster.natsUrl}`,
    ...cluster.nodes.map((n) => `  ${n.id}:    api ${n.apiAddress}  raft ${n.raftAddress}  http http://${n.httpAddress} (/healthz, /metrics)  pid ${n.process.pid ?? "?"}`),
    ...(cluster.prometheus !== null ? [`  prometheus: ${cluster.prometheus.url} (recording rules: hyperfleet:*; data under ${cluster.prometheus.dir})`] : []),
    `  token and addresses: ${join(cluster.dir, CLUSTER_FILE)}`,
    "Ctrl-C stops the cluster.",
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  // A node that dies on its own is reported (the others keep running).
  for (const n of cluster.nodes) {
    n.process.once("exit", (code, signal) => {
      if (!stopping) process.stderr.write(`hyperfleet up: fleetd ${n.id} exited (${code ?? signal}); see ${join(cluster.dir, `${n.id}.log`)}\n`);
    });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  main().catch((e: unknown) => {
    process.stderr.write(`hyperfleet up: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
