/**
 * The chaos suite on real processes: a 3-node local cluster (real nats-server, fault proxies on
 * every link) with probe VMs writing records to their disks and a VM to migrate; every fault kind
 * once (kill -9 of a node, of the Raft leader, of a migration's source and destination at different
 * phases, the nats-server restarted, a node cut off and healed), each followed by a settle and the
 * external checker. `pnpm chaos --minutes N` runs random faults for longer.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ChaosHarness, FAULTS_EACH_ONCE, faultName, type TrialResult } from "./harness.js";
import { trialTable } from "./report.js";

const dir = mkdtempSync(join(tmpdir(), "hyperfleet-chaos-"));
let harness: ChaosHarness | undefined;
let failed = false;
/** Trials still to run past this are skipped (and the test fails), so the table is always printed. */
const TRIALS_BUDGET_MS = 300_000;

afterAll(async () => {
  await harness?.stop().catch(() => undefined);
  if (!failed) rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe("chaos", () => {
  it("chaos - no VM runs twice, none is lost and no disk record is lost under every fault kind", async () => {
    const log: string[] = [];
    harness = await ChaosHarness.start({ dir, nodes: 3, log: (line) => log.push(`${new Date().toISOString().slice(11, 23)} ${line}`), settleTimeoutMs: 60_000 });
    const trials: TrialResult[] = [];
    const skipped: string[] = [];
    const started = Date.now();
    // the first trial with a violation ends the run: what follows a broken state says little more
    for (const fault of FAULTS_EACH_ONCE) {
      if (Date.now() - started > TRIALS_BUDGET_MS || trials.some((t) => t.violations.length > 0)) skipped.push(faultName(fault));
      else trials.push(await harness.trial(fault));
    }
    const final = await harness.finish();
    const table = trialTable(trials, final);
    failed = final.length > 0 || skipped.length > 0 || trials.some((t) => t.violations.length > 0);
    console.log(table);
    expect(trials.flatMap((t) => t.violations.map((v) => `trial ${t.index} (${t.fault}) ${v.rule}: ${v.message}`)), `${table}\n${log.join("\n")}\nlogs in ${dir}`).toEqual([]);
    expect(final.map((v) => `${v.rule}: ${v.message}`), `logs in ${dir}`).toEqual([]);
    expect(skipped, `trials skipped (after a violation, or past ${TRIALS_BUDGET_MS} ms)`).toEqual([]);
  }, 420_000);
});
