/** The chaos run's table: one line per trial, then the final check. */
import type { Violation } from "./checker.js";
import type { TrialResult } from "./harness.js";

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + " ".repeat(n - s.length);
}

export function trialTable(trials: readonly TrialResult[], final: readonly Violation[]): string {
  const rows = trials.map((t) => [
    String(t.index), t.fault, t.target, `${(t.durationMs / 1000).toFixed(1)} s`, String(t.moved), t.handoverMsMin === null ? "-" : `${t.handoverMsMin} ms`,
    ...(["no-overlap", "accepted", "disk"] as const).map((rule) => {
      const n = t.violations.filter((v) => v.rule === rule).length;
      return n === 0 ? "ok" : `FAIL ${n}`;
    }),
  ]);
  const header = ["#", "fault", "target", "took", "moved", "closest hand-over", "no-overlap", "accepted", "disk"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => pad(c, widths[i]!)).join("  ").trimEnd();
  const out = [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)];
  const failed = trials.filter((t) => t.violations.length > 0).length;
  out.push("", `${trials.length} trials, ${failed} with violations; final check: ${final.length === 0 ? "ok" : `${final.length} violation(s)`}`);
  for (const t of trials) for (const v of t.violations) out.push(`  trial ${t.index} ${v.rule}: ${v.message}`);
  for (const v of final) out.push(`  final ${v.rule}: ${v.message}`);
  return out.join("\n");
}
