/**
 * `pnpm bench raft`: the replicated key-value store (`packages/raft`, `kv-node-main.ts`) as real member
 * processes on loopback, fsync on:
 *  - committed writes per second, one client sequential, and 64 clients in flight (batching: the
 *    writes that arrive together share one Ready and one fsync on every member);
 *  - failover: time from kill -9 of the leader to the first write a new leader acknowledged, over
 *    `--trials` kills (the killed member is restarted and caught up between trials).
 * Options: --members N (3), --seconds S per throughput run (5), --trials N (20), --tick-ms (10),
 * --election-ticks (40: the members' default, an election timeout of 400–800 ms), --inflight N (64).
 *
 * Measured in the same run as context: the disk's 4 KiB write + fdatasync latency in the data
 * directory. The reference is etcd 3.4 on this kind of machine (our ANCHORS table): etcd could not be
 * run beside us here, so its figures are quoted, not measured in this run.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { KvClient, KvConnections, kvMemberStatus, type KvStatusResponse } from "@hyperfleet/raft";
import { median, option, percentile, round, table } from "./stats.js";
import { freePorts } from "../test/lib/ports.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const MAIN = join(ROOT, "packages", "raft", "src", "adapters", "kv-node-main.ts");
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** etcd 3.4, 3 members on loopback, fsync on, this kind of machine (shared/ANCHORS.md). */
const ETCD = { writesPerSecondSequential: 598, writesPerSecondInflight64: 3746, failoverMsP50: 1191, failoverMsP99: 2586 };
const TARGETS = { writesPerSecondInflight64Min: 2000, failoverMsP99Max: 1000 };

interface Member {
  readonly id: string;
  readonly raftAddress: string;
  readonly kvAddress: string;
  readonly dir: string;
  child: ChildProcess | null;
  readonly log: string[];
  /** Wall-clock times (ms) at which this member logged that it became leader. */
  readonly becameLeaderMs: number[];
}

/** Median and p99 of `samples` 4 KiB appends each followed by fdatasync, in `dir`. */
function probeFsync(dir: string, samples = 200): { p50Ms: number; p99Ms: number } {
  const path = join(dir, "fsync-probe");
  const fd = openSync(path, "w");
  const block = Buffer.alloc(4096, 7);
  const times: number[] = [];
  try {
    for (let i = 0; i < samples; i++) {
      const t0 = performance.now();
      writeSync(fd, block);
      fdatasyncSync(fd);
      times.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
    unlinkSync(path);
  }
  return { p50Ms: median(times), p99Ms: percentile(times, 99) };
}

class Cluster {
  readonly members: Member[] = [];
  readonly connections = new KvConnections();
  private readonly args: string[];

  constructor(readonly root: string, size: number, ports: readonly number[], tickMs: number, electionTicks: number) {
    for (let i = 0; i < size; i++) {
      const id = `n${i + 1}`;
      this.members.push({ id, raftAddress: `127.0.0.1:${ports[2 * i]}`, kvAddress: `127.0.0.1:${ports[2 * i + 1]}`, dir: join(root, id), child: null, log: [], becameLeaderMs: [] });
    }
    const peers = this.members.map((m) => `${m.id}=${m.raftAddress}/${m.kvAddress}`).join(",");
    this.args = ["--cluster-id", "bench", "--peers", peers, "--tick-ms", String(tickMs), "--election-ticks", String(electionTicks)];
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.kvAddress);
  }

  async start(m: Member): Promise<void> {
    const child = spawn(process.execPath, [
      "--import", "tsx", MAIN, "--id", m.id, "--data-dir", m.dir, "--listen-raft", m.raftAddress, "--listen-kv", m.kvAddress, ...this.args,
    ], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    m.child = child;
    createInterface({ input: child.stderr! }).on("line", (line) => {
      m.log.push(line);
      if (m.log.length > 20) m.log.shift();
      if (line.includes(`"${m.id}: leader,`)) {
        try {
          m.becameLeaderMs.push((JSON.parse(line) as { timeMs: number }).timeMs);
        } catch {
          // Not a log line of ours.
        }
      }
    });
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 30_000);
      createInterface({ input: child.stdout! }).once("line", () => {
        clearTimeout(timer);
        resolve(true);
      });
      child.once("exit", () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (!ok) throw new Error(`${m.id} did not start:\n${m.log.join("\n")}`);
  }

  async kill(m: Member): Promise<void> {
    const child = m.child;
    if (child === null) return;
    m.child = null;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGKILL");
    await exited;
  }

  async statuses(): Promise<(KvStatusResponse | null)[]> {
    return Promise.all(this.members.map((m) => (m.child === null ? Promise.resolve(null) : kvMemberStatus(this.connections, m.kvAddress, 1000))));
  }

  /** Waits until one member leads and every member applied the same index; returns the leader. */
  async settle(timeoutMs = 30_000): Promise<Member> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.statuses();
      const leaders = s.flatMap((x, i) => (x?.role === "leader" ? [i] : []));
      if (leaders.length === 1 && s.every((x) => x !== null && x.appliedIndex === s[leaders[0]!]!.commitIndex && x.leaderId === s[leaders[0]!]!.id)) {
        return this.members[leaders[0]!]!;
      }
      if (Date.now() > deadline) {
        const last = JSON.stringify(s.map((x) => x && { id: x.id, role: x.role, term: x.term, applied: x.appliedIndex, commit: x.commitIndex }));
        throw new Error(`the cluster did not settle within ${timeoutMs} ms: ${last}`);
      }
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    this.connections.close();
    await Promise.all(this.members.map(async (m) => {
      const child = m.child;
      if (child === null) return;
      m.child = null;
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }));
  }
}

interface Throughput {
  writesPerSecond: number;
  latencyMsP50: number;
  latencyMsP99: number;
  writes: number;
  /** Entries the leader persisted per fsync during the run. */
  entriesPerFsync: number;
}

/** `clients` sequential writers for `seconds`, unique values over 1,000 keys. */
async function throughput(cluster: Cluster, leader: Member, clients: number, seconds: number): Promise<Throughput> {
  const before = await kvMemberStatus(cluster.connections, leader.kvAddress);
  const writers = Array.from({ length: clients }, (_, i) => new KvClient({
    endpoints: [leader.kvAddress, ...cluster.endpoints.filter((e) => e !== leader.kvAddress)], clientId: `bench-${clients}-${i}`,
    connections: cluster.connections,
  }));
  const latencies: number[] = [];
  let failures = 0;
  const startMs = performance.now();
  const endMs = startMs + seconds * 1000;
  await Promise.all(writers.map(async (w, i) => {
    for (let n = 0; performance.now() < endMs; n++) {
      const t0 = performance.now();
      try {
        await w.put(`key-${(i * 7919 + n) % 1000}`, `value-${i}-${n}`);
        latencies.push(performance.now() - t0);
      } catch {
        failures++;
      }
    }
  }));
  const elapsedS = (performance.now() - startMs) / 1000;
  const after = await kvMemberStatus(cluster.connections, leader.kvAddress);
  if (failures > 0) process.stderr.write(`bench raft: ${failures} writes failed during the ${clients}-client run\n`);
  const fsyncs = after !== null && before !== null ? after.fsyncTotal - before.fsyncTotal : 0;
  const entries = after !== null && before !== null ? after.entriesPersistedTotal - before.entriesPersistedTotal : 0;
  return {
    writesPerSecond: latencies.length / elapsedS,
    latencyMsP50: latencies.length > 0 ? median(latencies) : NaN,
    latencyMsP99: latencies.length > 0 ? percentile(latencies, 99) : NaN,
    writes: latencies.length,
    entriesPerFsync: fsyncs > 0 ? entries / fsyncs : NaN,
  };
}

/**
 * One kill -9 of the leader while a writer keeps writing (attempts of 250 ms, retries every 5–20 ms);
 * returns the ms from the kill to the first write acknowledged by another member.
 */
async function failoverTrial(cluster: Cluster, trial: number): Promise<{ ms: number; electionMs: number; newLeader: string }> {
  const leader = await cluster.settle();
  const writer = new KvClient({
    endpoints: cluster.endpoints, clientId: `failover-${trial}`, connections: cluster.connections,
    operationTimeoutMs: 10_000, attemptTimeoutMs: 250, backoffMsMin: 5, backoffMsMax: 20,
  });
  let killMs = Infinity;
  let firstAfterKillMs = Infinity;
  let newLeader = "";
  let stop = false;
  const loop = (async () => {
    for (let n = 0; !stop && n < 1_000_000; n++) {
      try {
        await writer.put(`failover-${trial}`, String(n));
      } catch {
        continue;
      }
      const doneMs = performance.now();
      if (doneMs > killMs && writer.currentLeader !== leader.kvAddress && firstAfterKillMs === Infinity) {
        firstAfterKillMs = doneMs;
        newLeader = writer.currentLeader ?? "";
        return;
      }
    }
  })();
  await sleep(300);
  killMs = performance.now();
  const killWallMs = Date.now();
  await cluster.kill(leader);
  const deadline = Date.now() + 15_000;
  while (firstAfterKillMs === Infinity && Date.now() < deadline) await sleep(5);
  stop = true;
  await loop;
  if (firstAfterKillMs === Infinity) throw new Error(`trial ${trial}: no write succeeded within 15 s of killing ${leader.id}`);
  // When a new leader was elected, by its own log (the write above also waited for the client to find it).
  const elected = cluster.members.flatMap((m) => m.becameLeaderMs).filter((t) => t >= killWallMs);
  const electionMs = elected.length > 0 ? Math.min(...elected) - killWallMs : NaN;
  await cluster.start(leader);
  await cluster.settle();
  return { ms: firstAfterKillMs - killMs, electionMs, newLeader };
}

export async function raftBench(args: string[]): Promise<{ table: string; json: unknown }> {
  const members = option(args, "--members", 3);
  const seconds = option(args, "--seconds", 5);
  const trials = option(args, "--trials", 20);
  const tickMs = option(args, "--tick-ms", 10);
  const electionTicks = option(args, "--election-ticks", 40);
  const inflight = option(args, "--inflight", 64);
  const root = mkdtempSync(join(tmpdir(), "bench-raft-"));
  const cluster = new Cluster(root, members, await freePorts(2 * members), tickMs, electionTicks);
  try {
    const disk = probeFsync(root);
    await Promise.all(cluster.members.map((m) => cluster.start(m)));
    const leader = await cluster.settle();
    // Warm-up: connections, JIT.
    await throughput(cluster, leader, 8, 1);
    const sequential = await throughput(cluster, await cluster.settle(), 1, seconds);
    const batched = await throughput(cluster, await cluster.settle(), inflight, seconds);
    const failovers: { ms: number; electionMs: number; newLeader: string }[] = [];
    for (let t = 0; t < trials; t++) failovers.push(await failoverTrial(cluster, t));
    const samples = failovers.map((f) => f.ms);
    const failoverMsP50 = median(samples);
    const failoverMsP99 = percentile(samples, 99);
    const elections = failovers.map((f) => f.electionMs).filter((x) => Number.isFinite(x));
    const json = {
      bench: "raft",
      members,
      tickMs,
      electionTicks,
      electionTimeoutMsRange: [tickMs * electionTicks, 2 * tickMs * electionTicks],
      diskFsync4KiBMsP50: round(disk.p50Ms, 3),
      diskFsync4KiBMsP99: round(disk.p99Ms, 3),
      sequential: {
        clients: 1,
        writesPerSecond: round(sequential.writesPerSecond),
        latencyMsP50: round(sequential.latencyMsP50, 2),
        latencyMsP99: round(sequential.latencyMsP99, 2),
        leaderEntriesPerFsync: round(sequential.entriesPerFsync, 2),
      },
      inflight: {
        clients: inflight,
        writesPerSecond: round(batched.writesPerSecond),
        latencyMsP50: round(batched.latencyMsP50, 2),
        latencyMsP99: round(batched.latencyMsP99, 2),
        leaderEntriesPerFsync: round(batched.entriesPerFsync, 2),
      },
      failover: {
        trials,
        msP50: round(failoverMsP50),
        msP99: round(failoverMsP99),
        msMax: round(Math.max(...samples)),
        samplesMs: samples.map((s) => round(s)),
        electionMsP50: elections.length > 0 ? round(median(elections)) : null,
        electionMsP99: elections.length > 0 ? round(percentile(elections, 99)) : null,
        electionSamplesMs: elections.map((s) => round(s)),
      },
      etcdReference: ETCD,
      targets: TARGETS,
      meetsTargets: {
        inflightWrites: batched.writesPerSecond >= TARGETS.writesPerSecondInflight64Min,
        failoverP99: failoverMsP99 <= TARGETS.failoverMsP99Max,
      },
    };
    const rows = [
      ["measure", "hyperfleet", "etcd 3.4 (ANCHORS)", "target"],
      ["writes/s, 1 client sequential", sequential.writesPerSecond.toFixed(0), String(ETCD.writesPerSecondSequential), ""],
      [`writes/s, ${inflight} in flight`, batched.writesPerSecond.toFixed(0), String(ETCD.writesPerSecondInflight64), `>= ${TARGETS.writesPerSecondInflight64Min}`],
      ["write latency ms p50 / p99, sequential", `${sequential.latencyMsP50.toFixed(2)} / ${sequential.latencyMsP99.toFixed(2)}`, "", ""],
      [`write latency ms p50 / p99, ${inflight} in flight`, `${batched.latencyMsP50.toFixed(1)} / ${batched.latencyMsP99.toFixed(1)}`, "", ""],
      [`leader entries per fsync, ${inflight} in flight`, batched.entriesPerFsync.toFixed(1), "", ""],
      [`kill -9 leader -> write ok, ms p50 / p99 (${trials} trials)`, `${failoverMsP50.toFixed(0)} / ${failoverMsP99.toFixed(0)}`,
        `${ETCD.failoverMsP50} / ${ETCD.failoverMsP99}`, `p99 <= ${TARGETS.failoverMsP99Max}`],
    ];
    const text = `${table(rows)}\n\n` +
      `${members} members on loopback, fsync on; tick ${tickMs} ms x ${electionTicks} (election timeout ${tickMs * electionTicks}-${2 * tickMs * electionTicks} ms), ` +
      `pre-vote and check-quorum on.\n` +
      `disk here: 4 KiB write + fdatasync p50 ${disk.p50Ms.toFixed(2)} ms, p99 ${disk.p99Ms.toFixed(2)} ms (ANCHORS measured 0.21 ms p50 for etcd's run).\n` +
      `failover samples (ms): ${samples.map((s) => s.toFixed(0)).join(" ")}\n` +
      `of which kill -9 -> new leader elected (its log), p50 / p99: ${elections.length > 0 ? `${median(elections).toFixed(0)} / ${percentile(elections, 99).toFixed(0)} ms` : "n/a"}\n` +
      `load average at the end: ${loadavg().map((x) => x.toFixed(2)).join(" ")} (2 cores shared with other work)\n` +
      `targets: ${inflight} in flight >= ${TARGETS.writesPerSecondInflight64Min}/s ${json.meetsTargets.inflightWrites ? "met" : "NOT met"}; ` +
      `failover p99 <= ${TARGETS.failoverMsP99Max} ms ${json.meetsTargets.failoverP99 ? "met" : "NOT met"}\n`;
    return { table: text, json };
  } finally {
    await cluster.stop();
    rmSync(root, { recursive: true, force: true });
  }
}
