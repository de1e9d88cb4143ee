/**
 * The deterministic simulator's command line.
 *
 *   pnpm sim raft --seeds N [--from S]      sweep N seeds starting at S (random start if omitted)
 *   pnpm sim raft --seed S [--verbose]      replay one seed exactly (with its event log)
 *   pnpm sim cluster ...                     the cluster simulator (see packages/cluster/sim/main.ts)
 *
 * --jobs J runs a sweep on J worker threads (default 1; 0 = one per core); results are the same,
 * only the order they are printed in changes.
 * Options: --safety-ms MS (length of the faulty phase), --liveness-ms MS (convergence budget),
 * --verbose (options and event log of each run), --stop (stop at the first failure).
 * The first seed is printed first; every failure prints its seed and how to replay it.
 * Exit status: 0 when every seed passed, 1 when any failed, 2 on a usage error.
 */
import { randomInt } from "node:crypto";
import { availableParallelism } from "node:os";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { describeOptions, runSeed, type RunResult, type SwarmLimits } from "../src/sim/index.js";

interface Args {
  seeds: number;
  from: number | null;
  seed: number | null;
  verbose: boolean;
  stop: boolean;
  safetyMs: number | undefined;
  livenessMs: number | undefined;
  jobs: number;
}

interface WorkerInput {
  readonly seeds: readonly number[];
  readonly limits: SwarmLimits;
}

const USAGE = "usage: pnpm sim raft (--seeds N [--from S] [--jobs J] | --seed S) [--verbose] [--stop] [--safety-ms MS] [--liveness-ms MS]";

class UsageError extends Error {
  override readonly name = "UsageError";
}

function parseSeed(text: string | undefined, flag: string): number {
  const n = Number(text);
  if (text === undefined || !Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) throw new UsageError(`${flag} needs an integer in [0, 2^32), got ${String(text)}`);
  return n;
}

function parseArgs(argv: readonly string[]): Args {
  const [target, ...rest] = argv;
  if (target !== "raft") throw new UsageError(`unknown simulator ${JSON.stringify(target ?? "")} (known: raft, cluster)`);
  const args: Args = { seeds: 1, from: null, seed: null, verbose: false, stop: false, safetyMs: undefined, livenessMs: undefined, jobs: 1 };
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i]!;
    switch (flag) {
      case "--seeds":
        args.seeds = parseSeed(rest[++i], flag);
        if (args.seeds < 1) throw new UsageError("--seeds must be at least 1");
        break;
      case "--from":
        args.from = parseSeed(rest[++i], flag);
        break;
      case "--seed":
        args.seed = parseSeed(rest[++i], flag);
        break;
      case "--safety-ms":
        args.safetyMs = parseSeed(rest[++i], flag);
        break;
      case "--liveness-ms":
        args.livenessMs = parseSeed(rest[++i], flag);
        break;
      case "--jobs":
        args.jobs = parseSeed(rest[++i], flag);
        break;
      case "--verbose":
        args.verbose = true;
        break;
      case "--stop":
        args.stop = true;
        break;
      default:
        throw new UsageError(`unknown option ${flag}`);
    }
  }
  return args;
}

function pad(text: string | number, width: number): string {
  return String(text).padStart(width);
}

function printFailure(r: RunResult): void {
  const f = r.failure!;
  console.log(`FAIL seed ${r.seed}: ${f.kind} in the ${f.phase} phase at ${f.atMs} ms (trace ${r.traceHash})`);
  console.log(`  ${f.message.split("\n").slice(0, 12).join("\n  ")}`);
  console.log(`  options: ${describeOptions(r.options).split("\n").join("\n           ")}`);
  console.log(`  replay:  pnpm sim raft --seed ${r.seed} --verbose`);
}

class Summary {
  passed = 0;
  failed = 0;
  elections = 0;
  committed = 0;
  faults = 0;
  opsOk = 0;
  unknownVerdicts = 0;
  readonly failures: number[] = [];

  add(r: RunResult): void {
    this.elections += r.stats.elections;
    this.committed += r.stats.committedEntries;
    this.faults += r.stats.faultsInjected;
    this.opsOk += r.stats.opsOk;
    if (r.stats.linearizability === "unknown") this.unknownVerdicts++;
    if (r.ok) {
      this.passed++;
    } else {
      this.failed++;
      this.failures.push(r.seed);
    }
  }

  print(elapsedS: number): void {
    const ran = this.passed + this.failed;
    const rows: [string, string | number][] = [
      ["seeds", ran],
      ["passed", this.passed],
      ["failed", this.failed],
      ["elections", this.elections],
      ["committed entries", this.committed],
      ["faults injected", this.faults],
      ["client ops ok", this.opsOk],
      ["lin. unknown", this.unknownVerdicts],
      ["seeds/s", (ran / Math.max(elapsedS, 1e-9)).toFixed(1)],
    ];
    const widths = rows.map(([k, v]) => Math.max(k.length, String(v).length));
    console.log(`\n${rows.map(([k], i) => pad(k, widths[i]!)).join("  ")}\n${rows.map(([, v], i) => pad(v, widths[i]!)).join("  ")}`);
    if (this.failures.length > 0) console.log(`\nfailing seeds: ${[...this.failures].sort((a, b) => a - b).join(" ")}`);
  }
}

/** Runs `seeds` on `jobs` worker threads; `onResult` sees each result as it arrives. */
async function runOnWorkers(seeds: readonly number[], jobs: number, limits: SwarmLimits, onResult: (r: RunResult) => boolean): Promise<void> {
  const shares: number[][] = Array.from({ length: jobs }, () => []);
  seeds.forEach((seed, i) => shares[i % jobs]!.push(seed));
  // Workers load this file again, as TypeScript: they register tsx's loader first (on Node 20 a
  // worker does not inherit the main thread's module hooks).
  const bootstrap = `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))}).then((api) => { api.register(); return import(${JSON.stringify(import.meta.url)}); });`;
  const workers = shares.filter((share) => share.length > 0)
    .map((share) => new Worker(bootstrap, { eval: true, workerData: { seeds: share, limits } satisfies WorkerInput }));
  await Promise.all(workers.map((worker) => new Promise<void>((resolve, reject) => {
    worker.on("message", (r: RunResult) => {
      if (!onResult(r)) for (const w of workers) void w.terminate();
    });
    worker.on("error", reject);
    worker.on("exit", () => resolve());
  })));
}

async function main(argv: readonly string[]): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`${e.message}\n${USAGE}`);
    return 2;
  }
  const single = args.seed !== null;
  const first = args.seed ?? args.from ?? randomInt(0, 0xffffffff);
  const count = single ? 1 : args.seeds;
  console.log(single ? `seed ${first}` : `seeds ${first}..${first + count - 1}`);
  const limits: SwarmLimits = { ...(args.safetyMs !== undefined ? { safetyMs: args.safetyMs } : {}), ...(args.livenessMs !== undefined ? { livenessMsMax: args.livenessMs } : {}) };
  const seeds = Array.from({ length: count }, (_, i) => (first + i) >>> 0);
  const jobs = Math.min(args.jobs === 0 ? availableParallelism() : args.jobs, count);
  const startMs = performance.now();
  const summary = new Summary();
  const onResult = (r: RunResult): boolean => {
    summary.add(r);
    if (r.ok) {
      if (args.verbose || single) console.log(`ok seed ${r.seed} trace ${r.traceHash} ${JSON.stringify(r.stats)}`);
      return true;
    }
    printFailure(r);
    return !args.stop;
  };
  if (jobs > 1 && !args.verbose) {
    await runOnWorkers(seeds, jobs, limits, onResult);
  } else {
    const log = args.verbose ? (line: string) => console.log(`  ${line.split("\n").join("\n  ")}`) : undefined;
    for (const seed of seeds) {
      if (!onResult(runSeed(seed, { ...limits, ...(log !== undefined ? { log } : {}) }))) break;
    }
  }
  summary.print((performance.now() - startMs) / 1000);
  return summary.failed > 0 ? 1 : 0;
}

if (isMainThread) {
  // `pnpm sim cluster ...`: the cluster simulator has its own command line.
  process.exitCode = process.argv[2] === "cluster"
    ? await (await import("../../cluster/sim/main.js")).main(process.argv.slice(3))
    : await main(process.argv.slice(2));
} else {
  const input = workerData as WorkerInput;
  for (const seed of input.seeds) parentPort!.postMessage(runSeed(seed, input.limits));
}
