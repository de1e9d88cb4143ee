/** Helpers shared by the real-process fleetd tests: waiting, a cluster per file, VM progress from /metrics. */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiClient } from "@hyperfleet/api";
import { afterAll, beforeAll } from "vitest";
import { fleetdMainPath, freePort, LocalCluster, localNodeEnv, type LocalClusterOptions } from "../src/local-cluster.js";

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `probe` every 100 ms until it returns a value (not undefined), at most `timeoutMs`. */
export async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last instanceof Error ? ` (last error: ${last.message})` : ""}`);
}

/** Each local VM's instructions retired, from the node's /metrics. */
export async function instructionsByVm(node: { readonly httpAddress: string }): Promise<Map<string, number>> {
  const res = await fetch(`http://${node.httpAddress}/metrics`, { signal: AbortSignal.timeout(3000) });
  const out = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    const vm = /^hyperfleet_vm_instructions_total\{[^}]*vm="([^"]*)"/.exec(line)?.[1];
    if (vm !== undefined) out.set(vm, Number(line.slice(line.lastIndexOf(" ") + 1)));
  }
  return out;
}

/** One VM's instructions retired on `node`; undefined when the node does not run it. */
export async function instructionsOf(node: { readonly httpAddress: string }, vm: string): Promise<number | undefined> {
  return (await instructionsByVm(node)).get(vm);
}

/**
 * One local cluster for a test file: started in beforeAll on a fresh directory, stopped in afterAll
 * with every client made through `client()`, and the directory removed.
 */
export function useCluster(prefix: string, options: Omit<LocalClusterOptions, "dir">): {
  readonly cluster: LocalCluster;
  readonly dir: string;
  client(address: string, token?: string | null, timeoutMs?: number): ApiClient;
} {
  const dir = mkdtempSync(join(tmpdir(), `fleetd-${prefix}-`));
  let cluster: LocalCluster | undefined;
  const clients: ApiClient[] = [];
  beforeAll(async () => {
    cluster = await LocalCluster.start({ ...options, dir });
  }, 60_000);
  afterAll(async () => {
    for (const c of clients) c.close();
    await cluster?.stop(3000);
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);
  return {
    get cluster(): LocalCluster {
      if (cluster === undefined) throw new Error("the cluster has not started");
      return cluster;
    },
    dir,
    client(address: string, token: string | null = cluster!.token, timeoutMs = 5000): ApiClient {
      const c = new ApiClient(address, token === null ? { timeoutMs } : { token, timeoutMs });
      clients.push(c);
      return c;
    },
  };
}

/** The console of `vm` (through `api`, its owner's), collected in the background until `stop()`. */
export function follow(api: ApiClient, vm: string): { text: () => string; stop: () => Promise<void> } {
  const conn = api.attachConsole(vm);
  let text = "";
  const reading = (async () => {
    for await (const chunk of conn.output) text += Buffer.from(chunk.data).toString("utf8");
  })().catch(() => undefined);
  return {
    text: () => text,
    stop: async () => {
      conn.cancel();
      await Promise.race([reading, sleep(1000)]);
    },
  };
}

/**
 * Starts one more fleetd, "n4", that knows `cluster` (its peers, NATS and token) but is not a member of
 * it: it waits to be added. Its data directory is `<dir>/n4`, its log `<dir>/n4.log`.
 */
export async function startJoiner(
  cluster: LocalCluster, dir: string, memoryMib: number,
): Promise<{ process: ChildProcess; apiAddress: string; raftAddress: string; httpAddress: string }> {
  const apiAddress = `127.0.0.1:${await freePort()}`;
  const raftAddress = `127.0.0.1:${await freePort()}`;
  const httpAddress = `127.0.0.1:${await freePort()}`;
  const peers = [...cluster.nodes.map((n) => `${n.id}=${n.raftAddress}`), `n4=${raftAddress}`].join(",");
  const self = { id: "n4", api: apiAddress, raft: raftAddress, http: httpAddress };
  const joining = { HYPERFLEET_INITIAL_VOTERS: cluster.nodes.map((n) => n.id).join(",") };
  const env: NodeJS.ProcessEnv = { ...process.env, ...localNodeEnv({ memoryMib, env: joining }, dir, self, peers, cluster.natsUrl, cluster.token) };
  const child = spawn(process.execPath, [fleetdMainPath()], { env, stdio: ["ignore", "ignore", "pipe"] });
  child.stderr?.pipe(createWriteStream(join(dir, "n4.log"), { flags: "a" }));
  return { process: child, apiAddress, raftAddress, httpAddress };
}
