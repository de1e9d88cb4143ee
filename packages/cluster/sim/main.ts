/**
 * The cluster simulator's command line (also `pnpm sim cluster ...`).
 *
 *   pnpm sim cluster --seeds N [--from S]     sweep N seeds starting at S (random start if omitted)
 *   pnpm sim cluster --seed S [--verbose]     replay one seed exactly (with its event log)
 *
 * Options: --hosts H (default 100), --vms V (default 5000), --managers M (Raft members replicating
 * the state, default 3), --fault-ms MS (length of the faulty phase), --settle-ms MS (budget to settle
 * after the faults heal), --fence-margin-ms MS, --failover-margin-ms MS, --skew-ms MS (clock skew
 * bound), --leader-crash-ms MS (also crash the member leading at that time), --stop (stop at the
 * first failure).
 * Prints, per seed, the faults injected (host crashes and partitions, drains, member crashes and
 * partitions, message loss), the Raft elections and terms, failovers, migrations and the invariant
 * results (replicas compared included), then a summary; every failure prints its seed and the
 * command that replays it.
 * Exit status: 0 when every seed passed, 1 when any failed, 2 on a usage error.
 */
import { randomInt } from "node:crypto";
import { pathToFileURL } from "node:url";
import { runClusterSim, type ClusterSimOptions, type ClusterSimResult } from "../src/sim/index.js";

const USAGE = "usage: pnpm sim cluster (--seeds N [--from S] | --seed S) [--hosts H] [--vms V] [--managers M] [--fault-ms MS] [--settle-ms MS] " +
  "[--fence-margin-ms MS] [--failover-margin-ms MS] [--skew-ms MS] [--leader-crash-ms MS] [--verbose] [--stop]";

class UsageError extends Error {
  override readonly name = "UsageError";
}

interface Args {
  seeds: number;
  from: number | null;
  seed: number | null;
  verbose: boolean;
  stop: boolean;
  overrides: { -readonly [K in keyof ClusterSimOptions]?: ClusterSimOptions[K] };
}

function integer(text: string | undefined, flag: string, min: number, max: number): number {
  const n = Number(text);
  if (text === undefined || !Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${flag} needs an integer in [${min}, ${max}], got ${String(text)}`);
  return n;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { seeds: 1, from: null, seed: null, verbose: false, stop: false, overrides: {} };
  const o = args.overrides;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    switch (flag) {
      case "--seeds": args.seeds = integer(argv[++i], flag, 1, 1_000_000); break;
      case "--from": args.from = integer(argv[++i], flag, 0, 0xffffffff); break;
      case "--seed": args.seed = integer(argv[++i], flag, 0, 0xffffffff); break;
      case "--hosts": o.hosts = integer(argv[++i], flag, 2, 1000); break;
      case "--vms": o.vms = integer(argv[++i], flag, 0, 100_000); break;
      case "--managers": o.managers = integer(argv[++i], flag, 1, 7); break;
      case "--leader-crash-ms": o.leaderCrashAtMs = integer(argv[++i], flag, 0, 3_600_000); break;
      case "--fault-ms": o.faultMs = integer(argv[++i], flag, 0, 3_600_000); break;
      case "--settle-ms": o.settleMsMax = integer(argv[++i], flag, 1000, 3_600_000); break;
      case "--fence-margin-ms": o.fenceMarginMs = integer(argv[++i], flag, -60_000, 60_000); break;
      case "--failover-margin-ms": o.failoverMarginMs = integer(argv[++i], flag, -60_000, 60_000); break;
      case "--skew-ms": o.clockSkewMsMax = integer(argv[++i], flag, 0, 60_000); break;
      case "--verbose": args.verbose = true; break;
      case "--stop": args.stop = true; break;
      default: throw new UsageError(`unknown option ${flag}`);
    }
  }
  return args;
}

function line(r: ClusterSimResult, wallMs: number): string {
  const s = r.stats;
  const faults = `faults: ${s.crashes} host crashes, ${s.partitions} host partitions, ${s.drains} drains (${s.resumes} resumed), ` +
    `${s.managerCrashes} member crashes, ${s.managerPartitions} member partitions, ${s.messagesLost}/${s.messagesSent} host and ` +
    `${s.raftMessagesLost}/${s.raftMessages} Raft messages lost`;
  const raft = `raft: ${s.leaderElections} leader elections (term ${s.raftTermMax} at most), ${s.redirects} redirects, ${s.requestTimeouts} request timeouts, ` +
    `${s.proposalsLost + s.proposalsDropped} proposals lost with a leader`;
  const work = `failovers ${s.failovers} (nodes failed ${s.nodesFailed}, pending after failover ${s.pendingAfterFailover}), drain moves ${s.drainMoves}, ` +
    `nodes drained ${s.drainedNodes}, rebalance moves ${s.rebalanceMoves}, migrations ${s.migrationsCommitted} committed / ${s.migrationsAborted} aborted`;
  const checks = `invariants: ${s.invariantChecks} checks, ${s.replicaChecks} replica comparisons, ${r.violations.length} violations; settled at ${s.settledAtMs ?? "never"} ms; ` +
    `pending at end ${s.pendingVmsAtEnd}; ${s.runs} runs, ${s.commands} commands, ${s.eventsFired} events`;
  return `${r.ok ? "ok  " : "FAIL"} seed ${r.seed} trace ${r.traceHash} simulated ${(r.simulatedMs / 1000).toFixed(0)} s, wall ${(wallMs / 1000).toFixed(1)} s\n` +
    `     ${faults}\n     ${raft}\n     ${work}\n     ${checks}`;
}

export async function main(argv: readonly string[]): Promise<number> {
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
  const log = args.verbose ? (text: string) => console.log(`  ${text}`) : undefined;
  const startMs = performance.now();
  const failures: number[] = [];
  let passed = 0;
  const totals = { failovers: 0, crashes: 0, partitions: 0, drains: 0, managerCrashes: 0, managerPartitions: 0, leaderElections: 0, checks: 0 };
  for (let i = 0; i < count; i++) {
    const seed = (first + i) >>> 0;
    const t0 = performance.now();
    const r = runClusterSim(seed, { ...args.overrides, ...(log !== undefined ? { log } : {}) });
    console.log(line(r, performance.now() - t0));
    totals.failovers += r.stats.failovers;
    totals.crashes += r.stats.crashes;
    totals.partitions += r.stats.partitions;
    totals.drains += r.stats.drains;
    totals.managerCrashes += r.stats.managerCrashes;
    totals.managerPartitions += r.stats.managerPartitions;
    totals.leaderElections += r.stats.leaderElections;
    totals.checks += r.stats.invariantChecks;
    if (r.ok) {
      passed++;
      continue;
    }
    failures.push(seed);
    for (const v of r.violations.slice(0, 10)) console.log(`     ${v.kind} at ${v.atMs} ms: ${v.message}`);
    console.log(`     replay: ${r.replay}`);
    if (args.stop) break;
  }
  const elapsedS = (performance.now() - startMs) / 1000;
  console.log(`\nseeds ${passed + failures.length}, passed ${passed}, failed ${failures.length}; host crashes ${totals.crashes}, host partitions ${totals.partitions}, ` +
    `drains ${totals.drains}, member crashes ${totals.managerCrashes}, member partitions ${totals.managerPartitions}, leader elections ${totals.leaderElections}, ` +
    `failovers ${totals.failovers}, invariant checks ${totals.checks}; ${elapsedS.toFixed(1)} s`);
  if (failures.length > 0) console.log(`failing seeds: ${failures.join(" ")}`);
  return failures.length > 0 ? 1 : 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
