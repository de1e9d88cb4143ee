/**
 * Run records: each node appends, to a JSON-lines file in its data directory (`runs.jsonl`), when each
 * VM (id, epoch) may be running there, so that an external checker can prove that no VM ever ran on
 * two nodes at once. The records are conservative, never late:
 *
 *  - `start` is written BEFORE the vCPUs are started or resumed (boot, restore, resume, failover
 *    restart, migration arrival, a source that takes its VM back after a refused switchover);
 *  - `fence` is written BEFORE the VM worker is given a new fence: the vCPUs cannot run past
 *    `untilMs` until a later `fence` record says so;
 *  - `stop` is written AFTER the vCPUs stopped (stop, pause, the source's freeze at a switchover,
 *    a halted or crashed worker, a destroyed partition).
 *
 * A `boot` record opens each process's part of the file. So the interval from a `start` to the
 * earliest of its `stop`, its last fence (`max(atMs, untilMs)` of the last `fence` record) and the
 * death of the process that wrote it always contains the VM's real run there. Records are written
 * with `appendFileSync`: once a hook returns, the line is in the file even if the process is killed
 * the next instant (the checker runs on the same machine; a power cut is not what it checks).
 */
import { appendFileSync, existsSync, mkdirSync, renameSync, statSync } from "node:fs";
import { dirname, join } from "node:path";

/** The file name of a node's run records, in its data directory. */
export const RUN_RECORDS_FILE = "runs.jsonl";

export type RunRecord =
  | { readonly t: "boot"; readonly node: string; readonly pid: number; readonly atMs: number }
  | { readonly t: "start"; readonly node: string; readonly pid: number; readonly atMs: number; readonly vm: string; readonly epoch: number; readonly why: string }
  | { readonly t: "fence"; readonly node: string; readonly pid: number; readonly atMs: number; readonly vm: string; readonly untilMs: number }
  | { readonly t: "stop"; readonly node: string; readonly pid: number; readonly atMs: number; readonly vm: string; readonly why: string };

export class RunRecordError extends Error {
  override readonly name = "RunRecordError";
}

/** Past this size the file is rotated to `runs.jsonl.1` (the one before is dropped). */
export const RUN_RECORDS_BYTES_MAX = 64 * 2 ** 20;

/** Where a node's run records go: `<dataDir>/runs.jsonl`. */
export function runRecordsPath(dataDir: string): string {
  return join(dataDir, RUN_RECORDS_FILE);
}

/** Parses a run-records file's text; a torn last line (the process died mid-write) is left out. */
export function parseRunRecords(text: string): RunRecord[] {
  const out: RunRecord[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    let r: unknown;
    try {
      r = JSON.parse(line);
    } catch (e) {
      if (i >= lines.length - 2) break; // the last line, cut short by a kill
      throw new RunRecordError(`run records line ${i + 1}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!isRunRecord(r)) throw new RunRecordError(`run records line ${i + 1}: not a run record: ${line.slice(0, 200)}`);
    out.push(r);
  }
  return out;
}

function isRunRecord(r: unknown): r is RunRecord {
  if (typeof r !== "object" || r === null) return false;
  const o = r as Record<string, unknown>;
  if (typeof o["node"] !== "string" || typeof o["pid"] !== "number" || typeof o["atMs"] !== "number") return false;
  switch (o["t"]) {
    case "boot": return true;
    case "start": return typeof o["vm"] === "string" && typeof o["epoch"] === "number" && typeof o["why"] === "string";
    case "fence": return typeof o["vm"] === "string" && typeof o["untilMs"] === "number";
    case "stop": return typeof o["vm"] === "string" && typeof o["why"] === "string";
    default: return false;
  }
}

/**
 * One process's writer of run records. It keeps which VMs it recorded as running, so hooks may
 * repeat. The file is rotated past `bytesMax` to `<path>.1`; the new file starts with the open runs
 * again (`start` "continued" and their last fence), so it reads on its own.
 */
export class RunRecorder {
  /** VMs with a `start` and no `stop` yet: their epoch and the last fence written. */
  private readonly open = new Map<string, { epoch: number; fenceUntilMs: number | null }>();
  private bytes: number;

  constructor(
    private readonly path: string,
    private readonly node: string,
    private readonly clock: () => number = Date.now,
    private readonly pid: number = process.pid,
    private readonly bytesMax = RUN_RECORDS_BYTES_MAX,
  ) {
    mkdirSync(dirname(path), { recursive: true });
    this.bytes = existsSync(path) ? statSync(path).size : 0;
    this.write({ t: "boot", node, pid, atMs: clock() });
  }

  /** Before the vCPUs of `vm` start or resume here at `epoch`. */
  started(vm: string, epoch: number, why: string): void {
    const was = this.open.get(vm);
    if (was !== undefined && was.epoch === epoch) return;
    if (was !== undefined) this.stopped(vm, "superseded");
    this.open.set(vm, { epoch, fenceUntilMs: null });
    this.write({ t: "start", node: this.node, pid: this.pid, atMs: this.clock(), vm, epoch, why });
  }

  /** Before the worker of `vm` is given the fence `untilMs` (written only when it changes). */
  fenced(vm: string, untilMs: number): void {
    const run = this.open.get(vm);
    if (run === undefined || run.fenceUntilMs === untilMs) return;
    run.fenceUntilMs = untilMs;
    this.write({ t: "fence", node: this.node, pid: this.pid, atMs: this.clock(), vm, untilMs });
  }

  /** After the vCPUs of `vm` stopped here (nothing is written when no run is open). */
  stopped(vm: string, why: string): void {
    if (!this.open.delete(vm)) return;
    this.write({ t: "stop", node: this.node, pid: this.pid, atMs: this.clock(), vm, why });
  }

  /** Whether a run of `vm` is open here. */
  running(vm: string): boolean {
    return this.open.has(vm);
  }

  /**
   * A migration source hands its VM over: its vCPUs are frozen and State is about to go out (from then
   * on the destination may run it), so the run ends here. Returns the run's epoch, for `started` again
   * if the switchover does not commit and the VM is taken back (undefined when no run was open).
   */
  handOver(vm: string): number | undefined {
    const epoch = this.open.get(vm)?.epoch;
    this.stopped(vm, "switchover");
    return epoch;
  }

  private write(record: RunRecord): void {
    const line = `${JSON.stringify(record)}\n`;
    if (this.bytes + line.length > this.bytesMax && this.bytes > 0) this.rotate();
    appendFileSync(this.path, line);
    this.bytes += line.length;
  }

  private rotate(): void {
    renameSync(this.path, `${this.path}.1`);
    this.bytes = 0;
    const atMs = this.clock();
    for (const [vm, run] of this.open) {
      const lines = [JSON.stringify({ t: "start", node: this.node, pid: this.pid, atMs, vm, epoch: run.epoch, why: "continued" } satisfies RunRecord)];
      if (run.fenceUntilMs !== null) lines.push(JSON.stringify({ t: "fence", node: this.node, pid: this.pid, atMs, vm, untilMs: run.fenceUntilMs } satisfies RunRecord));
      const text = `${lines.join("\n")}\n`;
      appendFileSync(this.path, text);
      this.bytes += text.length;
    }
  }
}
