/**
 * How the operator commands print: aligned tables (columns separated by at least two spaces, no cell
 * holding two spaces in a row, so a script can split on /\s{2,}/), key/value blocks, one JSON
 * document for --json, and the units an operator reads (256M, 1.5G, 20.0 MB/s, 3d4h).
 */

/** Writes `value` as one JSON document (and nothing else) on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Writes `text` and a newline on stdout. */
export function printLine(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** A cell never holds a run of spaces (that would split it when the table is read back). */
function cell(value: string): string {
  const flat = value.replace(/\s+/g, " ").trim();
  return flat === "" ? "-" : flat;
}

/** A table: a header row and one row per item, columns left-aligned and two spaces apart. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [headers.map(cell), ...rows.map((r) => headers.map((_h, i) => cell(r[i] ?? "")))];
  const widths = headers.map((_h, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n");
}

/** Key/value lines: `Key:  value`, keys padded to one width. */
export function formatKeyValue(pairs: readonly (readonly [string, string])[]): string {
  const width = Math.max(...pairs.map(([k]) => k.length + 1));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width)}  ${cell(v)}`).join("\n");
}

/** `VM_STATE_RUNNING` → `running`, `NO_CONVERGENCE_POLICY_AUTO_CONVERGE` → `auto-converge`. */
export function enumText(value: string, prefix: string): string {
  const bare = value.startsWith(prefix) ? value.slice(prefix.length) : value;
  return bare.toLowerCase().replace(/_/g, "-");
}

const BINARY_UNITS = ["", "K", "M", "G", "T"] as const;

/** Bytes in binary units with the suffixes `--memory` takes: 268435456 → "256M", 1.5 GiB → "1.5G". */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BINARY_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const text = Number.isInteger(value) || unit === 0 ? value.toFixed(0) : value.toFixed(1).replace(/\.0$/, "");
  return `${text}${BINARY_UNITS[unit]}`;
}

/** Decimal megabytes, as transfer amounts are usually given: 83886080 → "83.9 MB". */
export function formatMegabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** A rate in decimal units: 1e9 → "1000.0 MB/s". */
export function formatRate(bytesPerSecond: number): string {
  if (bytesPerSecond >= 1e6) return `${(bytesPerSecond / 1e6).toFixed(1)} MB/s`;
  if (bytesPerSecond >= 1e3) return `${(bytesPerSecond / 1e3).toFixed(1)} kB/s`;
  return `${bytesPerSecond.toFixed(0)} B/s`;
}

/** A duration for people: 45s, 12m3s, 5h2m, 3d4h. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${m % 60}m`;
  return `${Math.floor(h / 24)}d${h % 24}h`;
}

/** Milliseconds, shown as ms below 10 s and as seconds above: 420 → "420 ms", 12500 → "12.5 s". */
export function formatMs(ms: number): string {
  return ms < 10_000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** A ratio as a percentage: 0.375 → "37.5%". */
export function formatPercent(ratio: number): string {
  return `${(ratio * 100).toFixed(1)}%`;
}
