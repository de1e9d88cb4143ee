/**
 * `pnpm chaos [--minutes N] [--nodes N] [--seed S] [--keep]`: random faults on a real local cluster
 * for N minutes (default: every fault kind once), each followed by a settle and the external checks;
 * prints the trials and the invariant results as a table. Exit status 1 on any violation.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Violation } from "./checker.js";
import { ChaosHarness, FAULTS_EACH_ONCE, faultName, randomFault, Rng, type Fault, type TrialResult } from "./harness.js";
import { trialTable } from "./report.js";

class ChaosUsageError extends Error {
  override readonly name = "ChaosUsageError";
}

/** Trials a timed run makes at most, whatever its length. */
const TRIALS_MAX = 10_000;

function parseArgs(argv: readonly string[]): { minutes: number | null; nodes: number; seed: number; keep: boolean } {
  let minutes: number | null = null;
  let nodes = 3;
  let seed = Date.now() % 2 ** 31;
  let keep = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v <= 0) throw new ChaosUsageError(`${a} needs a positive number`);
      return v;
    };
    if (a === "--minutes") minutes = value();
    else if (a === "--nodes") nodes = Math.floor(value());
    else if (a === "--seed") seed = Math.floor(value());
    else if (a === "--keep") keep = true;
    else if (a === "--") continue;
    else throw new ChaosUsageError(`unknown argument ${a}: use --minutes N, --nodes N (3 to 5), --seed S, --keep`);
  }
  if (nodes < 3 || nodes > 5) throw new ChaosUsageError("--nodes must be 3 to 5");
  return { minutes, nodes, seed, keep };
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const rng = new Rng(args.seed);
  const dir = mkdtempSync(join(tmpdir(), "hyperfleet-chaos-"));
  const stamp = (): string => new Date().toISOString().slice(11, 19);
  console.log(`chaos: seed ${args.seed}, ${args.nodes} nodes, ${args.minutes === null ? "every fault kind once" : `${args.minutes} min of random faults`}, in ${dir}`);
  const harness = await ChaosHarness.start({ dir, nodes: args.nodes, log: (line) => console.log(`${stamp()} ${line}`) });
  const trials: TrialResult[] = [];
  let final: Violation[];
  try {
    const endMs = args.minutes === null ? Infinity : Date.now() + args.minutes * 60_000;
    const plan: readonly Fault[] | null = args.minutes === null ? FAULTS_EACH_ONCE : null;
    for (let i = 0; i < TRIALS_MAX; i++) {
      if (plan !== null && i >= plan.length) break;
      if (plan === null && Date.now() >= endMs) break;
      const fault = plan !== null ? plan[i]! : randomFault(rng);
      console.log(`${stamp()} seed ${args.seed} trial ${i + 1}: ${faultName(fault)}`);
      trials.push(await harness.trial(fault));
    }
    final = await harness.finish();
  } finally {
    await harness.stop().catch(() => undefined);
  }
  console.log("");
  console.log(trialTable(trials, final));
  const ok = final.length === 0 && trials.every((t) => t.violations.length === 0);
  console.log(`seed ${args.seed}: ${ok ? "every invariant held" : "VIOLATIONS"}${args.keep || !ok ? `; logs and run records in ${dir}` : ""}`);
  if (ok && !args.keep) rmSync(dir, { recursive: true, force: true });
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
    process.exit(e instanceof ChaosUsageError ? 2 : 1);
  },
);
