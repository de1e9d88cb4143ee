/**
 * The replicated key-value store as real processes on loopback (`kv-node-main.ts`), with fsync on,
 * under a client load while members — the leader included — are killed with SIGKILL and restarted
 * on the same data directory. At the end every member converges, the recorded client history is
 * linearizable, and no acknowledged write is lost.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import {
  KvClient, KvConnections, kvMemberStatus, KvOutcomeUnknownError, KvUnavailableError,
} from "../src/adapters/kv-client.js";
import { KvNodeConfigError, parseKvNodeConfig } from "../src/adapters/kv-node-main.js";
import type { KvStatusResponse } from "../src/adapters/kv-service.js";
import { HistoryRecorder, type Operation } from "../src/check/history.js";
import { kvModel, type KvInput, type KvOutput } from "../src/check/kv-model.js";
import { checkOperations, describeCheckResult } from "../src/check/linearizability.js";
import { SeededRng } from "../src/rng.js";
import { freePorts } from "../../../test/lib/ports.js";

const ROOT = join(import.meta.dirname, "..", "..", "..");
const MAIN = join(import.meta.dirname, "..", "src", "adapters", "kv-node-main.ts");
const TICK_MS = 50;
const ELECTION_TICKS = 8;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface MemberProcess {
  readonly id: string;
  readonly raftAddress: string;
  readonly kvAddress: string;
  readonly dir: string;
  child: ChildProcess | null;
  /** The last lines of stderr, across incarnations. */
  readonly log: string[];
  starts: number;
}

/** The member processes of one cluster, their directories, and what went wrong with them. */
class ProcessCluster {
  readonly members: MemberProcess[] = [];
  readonly root = mkdtempSync(join(tmpdir(), "raft-processes-"));
  /** Exits we did not cause. */
  readonly unexpectedExits: string[] = [];
  private readonly args: string[];

  private constructor(ids: readonly string[], ports: readonly number[]) {
    for (const [i, id] of ids.entries()) {
      this.members.push({
        id, raftAddress: `127.0.0.1:${ports[2 * i]}`, kvAddress: `127.0.0.1:${ports[2 * i + 1]}`, dir: join(this.root, id),
        child: null, log: [], starts: 0,
      });
    }
    const peers = this.members.map((m) => `${m.id}=${m.raftAddress}/${m.kvAddress}`).join(",");
    this.args = ["--cluster-id", "kv-processes", "--peers", peers, "--tick-ms", String(TICK_MS), "--election-ticks", String(ELECTION_TICKS),
      "--snapshot-every", "500", "--compact-keep", "100"];
  }

  static async create(size: number): Promise<ProcessCluster> {
    const ids = Array.from({ length: size }, (_, i) => `n${i + 1}`);
    const cluster = new ProcessCluster(ids, await freePorts(2 * size));
    await Promise.all(cluster.members.map((m) => cluster.start(m)));
    return cluster;
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.kvAddress);
  }

  /** Starts `m` and waits for its ready line. */
  async start(m: MemberProcess): Promise<void> {
    if (m.child !== null) throw new Error(`${m.id} is running`);
    const child = spawn(process.execPath, [
      "--import", "tsx", MAIN, "--id", m.id, "--data-dir", m.dir, "--listen-raft", m.raftAddress, "--listen-kv", m.kvAddress, ...this.args,
    ], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    m.child = child;
    m.starts++;
    createInterface({ input: child.stderr! }).on("line", (line) => {
      m.log.push(line);
      if (m.log.length > 40) m.log.shift();
    });
    child.on("exit", (code, signal) => {
      if (m.child === child) {
        m.child = null;
        this.unexpectedExits.push(`${m.id} exited by itself (code ${code}, signal ${signal}):\n${m.log.slice(-10).join("\n")}`);
      }
    });
    const ready = await new Promise<string | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), 30_000);
      createInterface({ input: child.stdout! }).on("line", (line) => {
        clearTimeout(timer);
        resolve(line);
      });
      child.once("exit", () => {
        clearTimeout(timer);
        resolve(null);
      });
    });
    if (ready === null) throw new Error(`${m.id} did not print its ready line:\n${m.log.join("\n")}`);
    const parsed = JSON.parse(ready) as { ready: boolean; raftAddress: string; kvAddress: string };
    expect(parsed).toMatchObject({ ready: true, raftAddress: m.raftAddress, kvAddress: m.kvAddress });
  }

  /** kill -9. */
  async kill(m: MemberProcess): Promise<void> {
    const child = m.child;
    if (child === null) return;
    m.child = null;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGKILL");
    await exited;
  }

  /** SIGTERM; resolves with the exit code (null if it had to be killed after 10 s). */
  async terminate(m: MemberProcess): Promise<number | null> {
    const child = m.child;
    if (child === null) return null;
    m.child = null;
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }

  async statuses(connections: KvConnections): Promise<(KvStatusResponse | null)[]> {
    return Promise.all(this.members.map((m) => (m.child === null ? Promise.resolve(null) : kvMemberStatus(connections, m.kvAddress, 1000))));
  }

  async leader(connections: KvConnections): Promise<MemberProcess | null> {
    const statuses = await this.statuses(connections);
    let best: { m: MemberProcess; term: number } | null = null;
    for (const [i, s] of statuses.entries()) {
      if (s !== null && s.role === "leader" && (best === null || s.term > best.term)) best = { m: this.members[i]!, term: s.term };
    }
    return best?.m ?? null;
  }

  async destroy(): Promise<void> {
    await Promise.all(this.members.map((m) => this.kill(m)));
    rmSync(this.root, { recursive: true, force: true });
  }
}

let current: ProcessCluster | null = null;
let openConnections: KvConnections[] = [];

afterEach(async () => {
  for (const c of openConnections) c.close();
  openConnections = [];
  const c = current;
  current = null;
  await c?.destroy();
});

interface ChaosReport {
  readonly kills: number;
  readonly leaderKills: number;
}

/**
 * Kills members for `durationMs`: every 0.6–1.8 s one member (the leader every other time), and with
 * five members sometimes a second one; each is restarted 0.3–1.3 s later on the same directory.
 * A majority stays up at all times. On a slow machine the rounds take longer: it goes on past
 * `durationMs` (for at most as long again) until the leader was killed at least twice.
 */
async function chaos(cluster: ProcessCluster, rng: SeededRng, durationMs: number, connections: KvConnections): Promise<ChaosReport> {
  const deadline = Date.now() + durationMs;
  const hardDeadline = deadline + durationMs;
  let kills = 0;
  let leaderKills = 0;
  const maxDown = Math.floor((cluster.members.length - 1) / 2);
  for (let round = 0; round < 1000 && (Date.now() < deadline || (leaderKills < 2 && Date.now() < hardDeadline)); round++) {
    await sleep(600 + rng.int(1200));
    const victims: typeof cluster.members = [];
    if (round % 2 === 0) {
      const leader = await cluster.leader(connections);
      if (leader !== null) {
        victims.push(leader);
        leaderKills++;
      }
    }
    const count = maxDown >= 2 && rng.chance(1, 2) ? 2 : 1;
    while (victims.length < count) {
      const candidates = cluster.members.filter((m) => !victims.includes(m));
      victims.push(candidates[rng.int(candidates.length)]!);
    }
    for (const v of victims) await cluster.kill(v);
    kills += victims.length;
    await sleep(300 + rng.int(1000));
    await Promise.all(victims.map((v) => cluster.start(v)));
  }
  return { kills, leaderKills };
}

interface Workload {
  readonly stop: () => Promise<void>;
  readonly unexpected: string[];
}

/** `clientCount` sequential clients doing get / put (unique values) / cas over `keys`, recorded in `history`. */
function startWorkload(endpoints: readonly string[], history: HistoryRecorder<KvInput, KvOutput>, clientCount: number, keys: number, rng: SeededRng,
  connections: KvConnections): Workload {
  let running = true;
  const unexpected: string[] = [];
  const loops = Array.from({ length: clientCount }, async (_, i) => {
    const r = rng.fork();
    const client = new KvClient({
      endpoints, clientId: `client-${i}`, history, historyClient: i, connections, operationTimeoutMs: 4000, attemptTimeoutMs: 1000,
    });
    const lastSeen = new Map<string, string | null>();
    for (let n = 0; running && n < 100_000; n++) {
      const key = `key${r.int(keys)}`;
      const dice = r.int(100);
      try {
        if (dice < 40) {
          lastSeen.set(key, await client.get(key));
        } else if (dice < 85) {
          const value = history.uniqueValue(`c${i}-`);
          await client.put(key, value);
          lastSeen.set(key, value);
        } else {
          const value = history.uniqueValue(`c${i}-`);
          const expected = lastSeen.get(key) ?? null;
          if (await client.cas(key, expected, value)) lastSeen.set(key, value);
        }
      } catch (e) {
        if (!(e instanceof KvUnavailableError || e instanceof KvOutcomeUnknownError)) unexpected.push(`client ${i}: ${String(e)}`);
      }
      await sleep(r.int(15));
    }
  });
  return {
    unexpected,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** Null when every acknowledged put is the final value of its key or was overwritten by a write not known to precede it. */
function lostWrite(ops: readonly Operation<KvInput, KvOutput>[], finalValues: ReadonlyMap<string, string | null>): string | null {
  const writers = new Map<string, Operation<KvInput, KvOutput>>();
  for (const op of ops) {
    const i = op.input;
    if (i.op !== "put" && i.op !== "cas") continue;
    if (i.op === "cas" && op.output !== undefined && !(op.output.op === "cas" && op.output.ok)) continue;
    writers.set(`${i.key}\u0000${i.value}`, op);
  }
  for (const op of ops) {
    if (op.input.op !== "put" || op.output === undefined) continue;
    const { key, value } = op.input;
    const final = finalValues.get(key);
    if (final === undefined) return `key ${key} was not read at the end`;
    if (final === value) continue;
    if (final === null) return `acknowledged put(${key}, ${value}) is lost: the key is absent at the end`;
    const writer = writers.get(`${key}\u0000${final}`);
    if (writer === undefined) return `final value ${final} of ${key} was written by nobody`;
    if (writer.return < op.call) {
      return `acknowledged put(${key}, ${value}) at [${op.call.toFixed(1)}, ${op.return.toFixed(1)}] is lost: ` +
        `the final value ${final} was written before it, at [${writer.call.toFixed(1)}, ${writer.return.toFixed(1)}]`;
    }
  }
  return null;
}

async function runScenario(size: number, seed: number, chaosMs: number): Promise<void> {
  const rng = new SeededRng(seed);
  const connections = new KvConnections();
  openConnections.push(connections);
  const cluster = await ProcessCluster.create(size);
  current = cluster;
  const history = new HistoryRecorder<KvInput, KvOutput>({ now: () => performance.now() });
  const keys = 8;
  const workload = startWorkload(cluster.endpoints, history, 4, keys, rng.fork(), connections);
  const report = await chaos(cluster, rng.fork(), chaosMs, connections);
  await workload.stop();

  // Liveness: every member up, one leader, everyone applied everything and holds the same state.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const statuses = await cluster.statuses(connections);
    const leaders = statuses.filter((s) => s?.role === "leader");
    const applied = new Set(statuses.map((s) => s?.appliedIndex));
    const crcs = new Set(statuses.map((s) => s?.stateCrc));
    if (statuses.every((s) => s !== null) && leaders.length === 1 && applied.size === 1 && crcs.size === 1 &&
      statuses.every((s) => s!.commitIndex === s!.appliedIndex)) break;
    if (Date.now() > deadline) {
      const last = statuses.map((s) => s === null ? null : { id: s.id, role: s.role, term: s.term, commit: s.commitIndex, applied: s.appliedIndex, crc: s.stateCrc });
      throw new Error(`members did not converge within 20 s: ${JSON.stringify(last)}`);
    }
    await sleep(100);
  }

  // Final reads (linearizable, recorded too) of every key.
  const reader = new KvClient({ endpoints: cluster.endpoints, clientId: "final-reader", history, historyClient: "final", connections, operationTimeoutMs: 10_000 });
  const finalValues = new Map<string, string | null>();
  for (let k = 0; k < keys; k++) finalValues.set(`key${k}`, await reader.get(`key${k}`));

  const ops = history.operations();
  const acknowledgedWrites = ops.filter((o) => o.input.op !== "get" && o.output !== undefined).length;
  const unknownWrites = ops.filter((o) => o.output === undefined).length;
  const context = `${size} members, seed ${seed}: ${ops.length} operations (${acknowledgedWrites} acknowledged writes, ${unknownWrites} unknown), ` +
    `${report.kills} kills (${report.leaderKills} of the leader)`;
  expect(cluster.unexpectedExits, context).toEqual([]);
  expect(workload.unexpected, context).toEqual([]);
  expect(report.leaderKills, context).toBeGreaterThanOrEqual(2);
  expect(acknowledgedWrites, context).toBeGreaterThan(100);

  const result = checkOperations(kvModel, ops, { maxSteps: 50_000_000, now: () => performance.now(), timeoutMs: 20_000 });
  if (result.result !== "ok") {
    throw new Error(`history is ${result.result === "unknown" ? "not decided (the checker's budget ran out)" : "not linearizable"}; ${context}\n` +
      describeCheckResult(result));
  }
  expect(lostWrite(ops, finalValues), context).toBeNull();

  // SIGTERM: every member closes cleanly (exit code 0).
  const exits = await Promise.all(cluster.members.map((m) => cluster.terminate(m)));
  expect(exits, context).toEqual(cluster.members.map(() => 0));
}

describe("processes", () => {
  it("processes - a member reads its configuration from flags, then from the environment", () => {
    const config = parseKvNodeConfig(
      ["--id", "n2", "--data-dir=/d/n2", "--listen-raft", "127.0.0.1:7002", "--listen-kv", "[::1]:8002",
        "--peers", "n1=127.0.0.1:7001/127.0.0.1:8001,n2=127.0.0.1:7002/[::1]:8002,n3=127.0.0.1:7003"],
      { HYPERFLEET_KV_CLUSTER_ID: "c9", HYPERFLEET_KV_ID: "ignored", HYPERFLEET_KV_TICK_MS: "20" },
    );
    expect(config).toMatchObject({
      id: "n2", clusterId: "c9", dataDir: "/d/n2", listenRaft: { host: "127.0.0.1", port: 7002 }, listenKv: { host: "::1", port: 8002 },
      initialVoters: ["n1", "n2", "n3"], tickMs: 20, electionTicks: 40, heartbeatTicks: 5,
    });
    expect(config.peers[2]).toEqual({ id: "n3", peerAddress: "127.0.0.1:7003", clientAddress: "" });
    expect(() => parseKvNodeConfig(["--id", "n1"], {})).toThrow(KvNodeConfigError);
    expect(() => parseKvNodeConfig(["--bogus", "1"], {})).toThrow(/unknown flag --bogus/);
  });

  it("processes - a 3-member cluster survives kill -9 of random members and of the leader", async () => {
    await runScenario(3, 1, 8_000);
  }, 120_000);

  it("processes - a 5-member cluster survives kill -9 of up to two members at once", async () => {
    await runScenario(5, 2, 8_000);
  }, 120_000);
});
