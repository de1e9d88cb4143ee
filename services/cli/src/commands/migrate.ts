/**
 * `hyperfleet vm migrate NAME`: starts a live (or quick) migration and follows it to its result.
 *
 * On a terminal the rounds drive a progress bar (cli-progress) over the guest's pages; otherwise
 * each round is one line, so a log or a script sees every round. The last line is the outcome:
 * "migrated NAME from n1 to n2: downtime X ms, total Y ms, Z MB sent, R rounds". A migration that
 * fails or is cancelled leaves the VM running on its source: one line on stderr, exit status 1.
 * Ctrl-C asks the cluster to cancel the migration (a second Ctrl-C stops waiting for the result).
 */
import cliProgress, { type SingleBar } from "cli-progress";
import {
  ApiError, GUEST_PAGE_BYTES, MAX_ROUNDS_MAX, type MigrateInput, type MigrationProgress, type MigrationResult, type NoConvergencePolicy,
} from "@hyperfleet/api";
import { enumText, formatMegabytes, formatMs, formatRate, printJson, printLine } from "../output.js";
import type { Cluster, CommonOptions } from "./connection.js";
import { bandwidthBytesPerSecondOf, downtimeLimitMsOf, integerOf } from "./values.js";

export interface MigrateOptions extends CommonOptions {
  to?: string;
  quick?: boolean;
  downtimeLimit?: string;
  bandwidthLimit?: string;
  maxRounds?: string;
  policy?: string;
}

const POLICIES: Record<string, NoConvergencePolicy> = {
  force: "NO_CONVERGENCE_POLICY_FORCE",
  cancel: "NO_CONVERGENCE_POLICY_CANCEL",
  "auto-converge": "NO_CONVERGENCE_POLICY_AUTO_CONVERGE",
};

/** The request the options describe; a UsageError before anything is sent when one cannot be read. */
export function migrateRequestOf(name: string, options: MigrateOptions): MigrateInput {
  return {
    vm: name,
    targetNode: options.to ?? "",
    kind: options.quick ? "MIGRATION_KIND_QUICK" : "MIGRATION_KIND_LIVE",
    downtimeLimitMs: options.downtimeLimit === undefined ? 0 : downtimeLimitMsOf(options.downtimeLimit),
    bandwidthLimitBytesPerSecond: options.bandwidthLimit === undefined ? 0 : bandwidthBytesPerSecondOf(options.bandwidthLimit),
    maxRounds: options.maxRounds === undefined ? 0 : integerOf("--max-rounds", options.maxRounds, 1, MAX_ROUNDS_MAX),
    policy: options.policy === undefined ? "NO_CONVERGENCE_POLICY_UNSPECIFIED" : POLICIES[options.policy]!,
  };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** One round as a line: what a log keeps of the progress bar. */
export function roundLine(p: MigrationProgress): string {
  const dirty = `${Math.round(p.dirtyPagesPerSecond)} pages/s (${formatRate(p.dirtyPagesPerSecond * GUEST_PAGE_BYTES)})`;
  const throttle = p.throttlePercent > 0 ? `, guest throttled ${p.throttlePercent}%` : "";
  return `round ${p.round} (${enumText(p.phase, "MIGRATION_PHASE_")}): ${p.pagesRemaining} pages left, dirty ${dirty}, ` +
    `throughput ${formatRate(p.throughputBytesPerSecond)}, expected downtime ${formatMs(p.expectedDowntimeMs)}, ETA ${formatMs(p.etaMs)}${throttle}`;
}

/** The closing line of a migration that succeeded. */
export function migratedLine(name: string, sourceNode: string, targetNode: string, r: MigrationResult): string {
  return `migrated ${name} from ${sourceNode} to ${targetNode}: downtime ${r.downtimeMs} ms, total ${r.totalMs} ms, ` +
    `${formatMegabytes(r.bytesSent)} sent, ${plural(r.rounds, "round")}`;
}

interface ProgressView {
  round(p: MigrationProgress): void;
  /** Ends the view; `done` fills the bar. */
  end(done: boolean): void;
}

/** A line per round on stdout. */
class LineView implements ProgressView {
  round(p: MigrationProgress): void {
    printLine(roundLine(p));
  }
  end(): void {}
}

/** A progress bar over the guest's pages, redrawn on each round. */
class BarView implements ProgressView {
  private readonly bar: SingleBar;
  private readonly totalPages: number;

  constructor(name: string, totalPages: number) {
    this.totalPages = Math.max(1, totalPages);
    this.bar = new cliProgress.SingleBar(
      {
        format: `migrating ${name} [{bar}] {percentage}% | round {round} {phase} | dirty {dirty} | {throughput} | ETA {etaText}`,
        stream: process.stdout,
        hideCursor: true,
        barsize: 30,
        fps: 20,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(this.totalPages, 0, { round: 0, phase: "handshake", dirty: "-", throughput: "-", etaText: "-" });
  }

  round(p: MigrationProgress): void {
    const value = Math.min(this.totalPages, Math.max(0, this.totalPages - p.pagesRemaining));
    this.bar.update(value, {
      round: p.round,
      phase: enumText(p.phase, "MIGRATION_PHASE_"),
      dirty: formatRate(p.dirtyPagesPerSecond * GUEST_PAGE_BYTES),
      throughput: formatRate(p.throughputBytesPerSecond),
      etaText: formatMs(p.etaMs),
    });
  }

  end(done: boolean): void {
    if (done) this.bar.update(this.totalPages, { etaText: "0 ms" });
    this.bar.stop();
  }
}

/** Runs `vm migrate`; returns the exit status. */
export async function migrateVm(cluster: Cluster, name: string, options: MigrateOptions): Promise<number> {
  const request = migrateRequestOf(name, options);
  const vm = await cluster.call((c, o) => c.getVm({ name }, o));
  const sourceNode = vm.owner;
  const started = await cluster.call((c, o) => c.migrate(request, o));
  const targetNode = started.targetNode;
  const client = cluster.client;
  const updates = client.watchMigration({ migrationId: started.migrationId });

  let interrupts = 0;
  const onSigint = (): void => {
    interrupts++;
    if (interrupts === 1) {
      process.stderr.write(`\nhyperfleet: cancelling migration ${started.migrationId} (Ctrl-C again to stop waiting)\n`);
      client.cancelMigration({ migrationId: started.migrationId }).catch((e: unknown) => {
        process.stderr.write(`hyperfleet: could not cancel: ${e instanceof Error ? e.message : String(e)}\n`);
      });
    } else {
      updates.cancel();
    }
  };
  process.on("SIGINT", onSigint);

  const rounds: MigrationProgress[] = [];
  let result: MigrationResult | undefined;
  const view: ProgressView | null = options.json ? null : process.stdout.isTTY === true ? new BarView(name, vm.spec.memoryBytes / GUEST_PAGE_BYTES) : new LineView();
  try {
    for await (const u of updates) {
      if (u.update === "progress") {
        rounds.push(u.progress);
        view?.round(u.progress);
      } else {
        result = u.result;
        break;
      }
    }
  } finally {
    process.off("SIGINT", onSigint);
    view?.end(result?.ok === true);
  }

  if (result === undefined) {
    const why = interrupts > 1 ? "stopped waiting" : "the cluster ended the progress stream";
    throw new ApiError("UNAVAILABLE", `${why} before migration ${started.migrationId} of ${name} ended; see \`hyperfleet vm show ${name}\``);
  }
  if (options.json) {
    printJson({ migrationId: started.migrationId, vm: name, sourceNode, targetNode, rounds, result });
  } else if (result.ok) {
    printLine(migratedLine(name, sourceNode, targetNode, result));
  }
  if (!result.ok) {
    const what = result.cancelled ? "was cancelled" : "failed";
    const reason = result.failureReason === "" ? "" : `: ${result.failureReason}`;
    process.stderr.write(`hyperfleet: migration of ${name} from ${sourceNode} to ${targetNode} ${what}${reason}; it still runs on ${sourceNode}\n`);
    return 1;
  }
  return 0;
}
