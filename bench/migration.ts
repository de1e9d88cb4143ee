/**
 * `pnpm bench migration`: live migration of the dirtier guest between two root partitions over a real
 * nats-server on loopback, for guest RAM 256 MiB and 1 GiB × idle, moderate (64 MiB, 5,000 pages/s),
 * heavy (256 MiB, 50,000 pages/s), max-speed (64 MiB) × unlimited bandwidth and 125 MB/s (1 Gbit/s).
 * Case names: `ram256-moderate-unl`, `ram1024-heavy-1g`... `--case NAME` runs one. `--streams N`: page
 * streams (default: the engine's), each beyond the first on a NATS connection of its own on both nodes.
 *
 * Measured in the same run as the ceiling: raw loopback TCP throughput (one connection, 1 MiB writes).
 * The reference figures are QEMU 7.2's own migration of the same guest on this kind of machine, with the
 * same 300 ms downtime limit ("–" where QEMU never converges).
 *
 * Downtime is ours end to end: the vCPUs stopping on the source to the vCPUs running on the destination.
 * QEMU times its downtime on the source alone, from stopping the VM to having written the last of the
 * device state (migration_completion; without postcopy it does not wait for the destination to load
 * and start), so the table also prints our figure for that same stretch (`sourceDowntimeMs`: vCPUs
 * stopped to State sent) beside it, for reading the two side by side.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { RootPartition } from "@hyperfleet/hypervisor";
import { LocalNatsServer, MigrationSource, NatsTransport, SentPages, warmCodec, type MigrationResult } from "@hyperfleet/migration";
import { round, table } from "./stats.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const MiB = 2 ** 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const WORKLOADS = {
  idle: { bootargs: "rate=0 ws=1", wsMiB: 0 },
  moderate: { bootargs: "rate=5000 ws=64", wsMiB: 64 },
  // "~256 MiB": all a 256 MiB guest can give (its program and device tree take the rest)
  heavy: { bootargs: "rate=50000 ws=248", wsMiB: 248 },
  max: { bootargs: "rate=max ws=64", wsMiB: 64 },
} as const;
const BANDWIDTHS = { unl: undefined, "1g": 125_000_000 } as const;
const RAMS = [256, 1024] as const;

/** QEMU 7.2 on this kind of machine, downtime limit 300 ms: [total ms, downtime ms]; undefined: never converges. */
const QEMU: Record<string, [number, number] | undefined> = {
  "ram256-idle-unl": [31, 1],
  "ram256-moderate-unl": [425, 18],
  "ram256-moderate-1g": [552, 20],
  "ram256-heavy-unl": [1049, 63],
  "ram256-heavy-1g": undefined,
  "ram256-max-unl": [571, 51],
  "ram256-max-1g": undefined,
  "ram1024-idle-unl": [82, 1],
  "ram1024-moderate-unl": [311, 5],
  "ram1024-moderate-1g": [603, 8],
  "ram1024-heavy-unl": [883, 20],
  "ram1024-heavy-1g": undefined,
  "ram1024-max-unl": [752, 49],
};

interface CaseResult {
  case: string;
  converged: boolean;
  downtimeMs?: number;
  /** vCPUs stopped to State sent, on the source alone (the stretch QEMU's downtime covers). */
  sourceDowntimeMs?: number;
  totalMs: number;
  bytesSent: number;
  rounds?: number;
  reason?: string;
  qemuTotalMs?: number;
  qemuDowntimeMs?: number;
  downtimeBreakdownMs?: Record<string, number>;
  handshakeMs?: number;
  roundMs?: number[];
  pagesPerRound?: number[];
}

async function tcpCeiling(): Promise<number> {
  const total = 512 * MiB;
  const server = createServer((socket) => socket.resume());
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  const socket = tcpConnect(port, "127.0.0.1");
  await once(socket, "connect");
  const chunk = Buffer.alloc(MiB, 1);
  const start = performance.now();
  for (let sent = 0; sent < total; sent += chunk.length) if (!socket.write(chunk)) await once(socket, "drain");
  await new Promise<void>((r) => socket.end(r));
  const seconds = (performance.now() - start) / 1000;
  server.close();
  return total / seconds / 1e6;
}

/**
 * Two nodes as they are in service, in two processes as in a cluster: host memory committed
 * (prefaulted) when a node starts, a spare VM worker started, the page codec warmed (warmCodec, as
 * fleetd does at start), and a reserved cache of last-sent pages on the source, reused by every case
 * of one guest RAM size. (Fresh memory costs ~13 µs per 4 KiB
 * page on first touch on this kind of host.) The receiving node is bench/migration-node.ts.
 */
interface Nodes {
  a: RootPartition;
  b: DestinationNode;
  cache: SentPages;
  /** Page streams (undefined: the engine's default). */
  streams: number | undefined;
}

/** The receiving node's process, driven over its stdin/stdout. */
class DestinationNode {
  private readonly child: ChildProcess;
  private readonly lines: Record<string, unknown>[] = [];
  private wake: (() => void) | undefined;

  constructor(natsUrl: string, memoryMiB: number, extraConnections: number) {
    this.child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "bench", "migration-node.ts"), natsUrl, String(memoryMiB), String(extraConnections)], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    createInterface({ input: this.child.stdout! }).on("line", (line) => {
      this.lines.push(JSON.parse(line) as Record<string, unknown>);
      this.wake?.();
    });
    this.child.on("exit", () => this.wake?.());
  }

  /** The next line with `key` (bounded wait). */
  async next(key: string, timeoutMs = 120_000): Promise<Record<string, unknown>> {
    const end = performance.now() + timeoutMs;
    for (;;) {
      const i = this.lines.findIndex((l) => key in l);
      if (i >= 0) return this.lines.splice(i, 1)[0]!;
      if (this.child.exitCode !== null) throw new Error(`the receiving node exited (${this.child.exitCode})`);
      if (performance.now() > end) throw new Error(`the receiving node said no "${key}" in ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 100);
      });
    }
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.send("quit");
    const exited = once(this.child, "exit");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
}

async function nodesFor(ramMiB: number, natsUrl: string, streams: number | undefined): Promise<Nodes> {
  const b = new DestinationNode(natsUrl, ramMiB + 64, Math.max(0, (streams ?? 1) - 1));
  const cache = new SentPages({ budgetBytes: ramMiB * MiB });
  cache.reserve();
  warmCodec(); // as fleetd does when it starts
  const nodes = { a: new RootPartition((ramMiB + 64) * MiB, { prefault: true, spareWorkers: 1 }), b, cache, streams };
  await b.next("ready");
  return nodes;
}

async function closeNodes(nodes: Nodes): Promise<void> {
  await Promise.all([nodes.a.close(), nodes.b.close()]);
}

function ramOf(name: string): number {
  return Number(/^ram(\d+)-/.exec(name)![1]);
}

async function runCase(name: string, natsUrl: string, session: number, nodes: Nodes): Promise<CaseResult> {
  const [, ramText, workload, bw] = /^ram(\d+)-(\w+)-(\w+)$/.exec(name)!;
  const ramMiB = Number(ramText);
  const w = WORKLOADS[workload as keyof typeof WORKLOADS];
  const limit = BANDWIDTHS[bw as keyof typeof BANDWIDTHS];
  const { a, b } = nodes;
  const ncA = await connect({ servers: natsUrl });
  const extra = await Promise.all(Array.from({ length: Math.max(0, (nodes.streams ?? 1) - 1) }, () => connect({ servers: natsUrl })));
  try {
    const vm = a.create({ name: "vm", memoryBytes: ramMiB * MiB, bootargs: w.bootargs });
    await vm.start({ image: readFileSync(join(ROOT, "guests", "build", "dirtier.elf")) });
    // Let the guest reach its steady state: its working set touched, and the node too: the spare
    // worker that replaces the one this VM took has started (bounded by 15 s).
    const wsPages = (w.wsMiB * MiB) / 4096;
    const warmEnd = performance.now() + 15_000;
    await sleep(500);
    while ((vm.worker!.ept.presentPages < wsPages || a.spareWorkersReady < 1) && performance.now() < warmEnd) await sleep(200);
    const src = new NatsTransport(ncA, session, "source", { streamConnections: extra });
    await src.ready();
    b.send(`accept ${session}`);
    await b.next("listening");
    if (vm.state !== "running") throw new Error(`${name}: the guest stopped before the migration (${vm.consoleHistory().length ? new TextDecoder().decode(vm.consoleHistory()).trim() : vm.state})`);
    const spec = vm.spec;
    const result: MigrationResult = await new MigrationSource(
      { vm: vm.worker!, name: spec.name, memoryBytes: spec.memoryBytes, vcpus: spec.vcpus, boot: spec.boot, bootargs: spec.bootargs },
      src,
      session,
      {
        downtimeLimitMs: 300, bandwidthLimitBytesPerSecond: limit, maxPreCopyMs: 60_000, whenNoConvergence: "cancel", deltaCache: nodes.cache,
        streams: nodes.streams,
      },
    ).run();
    const received = await b.next("done");
    if (result.ok && received.ok !== true) throw new Error(`${name}: the receiving node: ${String(received.reason)}`);
    await src.close();
    const q = QEMU[name];
    const base = { case: name, totalMs: round(result.totalMs), bytesSent: result.bytesSent, qemuTotalMs: q?.[0], qemuDowntimeMs: q?.[1] };
    return result.ok
      ? {
          ...base,
          converged: true,
          downtimeMs: round(result.downtimeMs),
          sourceDowntimeMs: round(result.downtimeBreakdownMs.sync + result.downtimeBreakdownMs.pages + result.downtimeBreakdownMs.state),
          rounds: result.rounds,
          downtimeBreakdownMs: Object.fromEntries(Object.entries(result.downtimeBreakdownMs).map(([k, v]) => [k, round(v)])),
          handshakeMs: round(result.handshakeMs),
          roundMs: result.roundMs.map(round),
          pagesPerRound: result.pagesPerRound,
        }
      : { ...base, converged: false, reason: result.reason };
  } finally {
    for (const c of a.list()) await a.destroy(c.spec.name);
    await ncA.close();
    for (const nc of extra) await nc.close();
  }
}

export async function migrationBench(args: string[]): Promise<{ table: string; json: unknown }> {
  const all = RAMS.flatMap((r) => Object.keys(WORKLOADS).flatMap((w) => Object.keys(BANDWIDTHS).map((b) => `ram${r}-${w}-${b}`)));
  const i = args.indexOf("--case");
  const r = args.indexOf("--repeat");
  const repeat = r >= 0 ? Number(args[r + 1]) : 1;
  if (!(Number.isInteger(repeat) && repeat >= 1 && repeat <= 100)) throw new Error(`--repeat: 1 to 100, got "${args[r + 1]}"`);
  const cases = (i >= 0 ? [args[i + 1] ?? ""] : all).flatMap((c) => Array<string>(repeat).fill(c));
  for (const c of cases) if (!all.includes(c)) throw new Error(`unknown case "${c}"; one of: ${all.join(", ")}`);
  const s = args.indexOf("--streams");
  const streams = s >= 0 ? Number(args[s + 1]) : undefined;
  if (streams !== undefined && !(Number.isInteger(streams) && streams >= 1 && streams <= 16)) throw new Error(`--streams: 1 to 16, got "${args[s + 1]}"`);
  const ceiling = await tcpCeiling();
  const server = await LocalNatsServer.start();
  const results: CaseResult[] = [];
  try {
    let session = 1;
    let nodes: Nodes | undefined;
    let nodesRam = 0;
    for (const c of cases) {
      if (nodes === undefined || nodesRam !== ramOf(c)) {
        if (nodes !== undefined) await closeNodes(nodes);
        nodes = undefined; // let the last size's memory go first
        nodesRam = ramOf(c);
        nodes = await nodesFor(nodesRam, server.url, streams);
      }
      results.push(await runCase(c, server.url, session++, nodes));
    }
    if (nodes !== undefined) await closeNodes(nodes);
  } finally {
    await server.stop();
  }
  const fmt = (v: number | undefined) => (v === undefined ? "–" : String(v));
  const rows = [["case", "downtime ms", "source part ms", "total ms", "MB sent", "rounds", "QEMU downtime ms", "QEMU total ms"]];
  for (const r of results) {
    rows.push([
      r.case,
      r.converged ? fmt(r.downtimeMs) : `no: ${r.reason}`,
      fmt(r.sourceDowntimeMs),
      fmt(r.totalMs),
      (r.bytesSent / 1e6).toFixed(1),
      fmt(r.rounds),
      fmt(r.qemuDowntimeMs),
      fmt(r.qemuTotalMs),
    ]);
  }
  const text =
    `${table(rows)}\n\nloopback TCP ceiling, same run: ${ceiling.toFixed(0)} MB/s (one connection, 1 MiB writes)\n` +
    "two node processes as in service: host memory committed at start, a spare VM worker, a reserved last-sent page cache\n" +
    "downtime: vCPUs stopped on the source to running on the destination; source part: stopped to State sent (the stretch QEMU's downtime times)\n";
  return { table: text, json: { bench: "migration", tcpCeilingMBPerSecond: round(ceiling), streams: streams ?? "default", cases: results } };
}
