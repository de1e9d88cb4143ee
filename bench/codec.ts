/** `pnpm bench codec`: throughput of the migration page codec (zero test, deltas, LZ4, batches). */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { codecBench } from "@hyperfleet/migration";
import { round, table } from "./stats.js";

const GUESTS = join(dirname(fileURLToPath(import.meta.url)), "..", "guests", "build");

export async function codecBenchCommand(): Promise<{ table: string; json: unknown }> {
  // program-like pages: the guest ELFs
  const programs = readdirSync(GUESTS).filter((f) => f.endsWith(".elf")).map((f) => readFileSync(join(GUESTS, f)));
  const results = codecBench({ clock: { now: () => performance.now() }, programs });
  const rows = [["case", "MB/s", "size ratio"], ...results.map((r) => [r.name, String(round(r.mbPerSecond)), r.ratio === undefined ? "" : String(round(r.ratio, 3))])];
  return { table: `${table(rows)}\n`, json: { bench: "codec", cases: results.map((r) => ({ name: r.name, mbPerSecond: round(r.mbPerSecond), ratio: r.ratio })) } };
}
