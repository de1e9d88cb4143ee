import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseRunRecords, RunRecordError, RunRecorder, runRecordsPath } from "../src/run-records.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function recorder(): { rec: RunRecorder; read: () => ReturnType<typeof parseRunRecords>; tick: (ms: number) => void } {
  const dir = mkdtempSync(join(tmpdir(), "run-records-"));
  dirs.push(dir);
  let now = 1000;
  const path = runRecordsPath(join(dir, "n1"));
  const rec = new RunRecorder(path, "n1", () => now, 42);
  return { rec, read: () => parseRunRecords(readFileSync(path, "utf8")), tick: (ms) => (now += ms) };
}

describe("run-records", () => {
  it("run-records - a boot line, then start, fences only when they change, and one stop", () => {
    const { rec, read, tick } = recorder();
    rec.fenced("a", 5000); // no run open: nothing
    rec.started("a", 3, "boot");
    rec.started("a", 3, "boot"); // repeated hook: nothing
    tick(10);
    rec.fenced("a", 5000);
    rec.fenced("a", 5000);
    rec.fenced("a", 6000);
    tick(10);
    rec.stopped("a", "destroyed");
    rec.stopped("a", "destroyed");
    expect(read()).toEqual([
      { t: "boot", node: "n1", pid: 42, atMs: 1000 },
      { t: "start", node: "n1", pid: 42, atMs: 1000, vm: "a", epoch: 3, why: "boot" },
      { t: "fence", node: "n1", pid: 42, atMs: 1010, vm: "a", untilMs: 5000 },
      { t: "fence", node: "n1", pid: 42, atMs: 1010, vm: "a", untilMs: 6000 },
      { t: "stop", node: "n1", pid: 42, atMs: 1020, vm: "a", why: "destroyed" },
    ]);
  });

  it("run-records - a hand-over ends the run and gives its epoch; a VM taken back runs again at that epoch", () => {
    const { rec, read } = recorder();
    rec.started("a", 7, "boot");
    const epoch = rec.handOver("a");
    expect(epoch).toBe(7);
    expect(rec.running("a")).toBe(false);
    rec.started("a", epoch!, "switchover refused");
    expect(rec.running("a")).toBe(true);
    expect(rec.handOver("a")).toBe(7);
    expect(rec.handOver("a")).toBeUndefined(); // no run open: nothing written
    expect(read().map((r) => (r.t === "start" ? `start ${r.epoch} ${r.why}` : r.t === "stop" ? `stop ${r.why}` : r.t))).toEqual([
      "boot", "start 7 boot", "stop switchover", "start 7 switchover refused", "stop switchover",
    ]);
  });

  it("run-records - past its size limit the file rotates and starts with the open runs again", () => {
    const dir = mkdtempSync(join(tmpdir(), "run-records-"));
    dirs.push(dir);
    const path = runRecordsPath(dir);
    const rec = new RunRecorder(path, "n1", () => 7, 42, 500);
    rec.started("a", 1, "boot");
    rec.fenced("a", 100);
    rec.started("b", 2, "boot");
    for (let i = 0; i < 5; i++) rec.fenced("a", 200 + i);
    const old = parseRunRecords(readFileSync(`${path}.1`, "utf8"));
    const now = parseRunRecords(readFileSync(path, "utf8"));
    expect(old[0]!.t).toBe("boot");
    expect(now.filter((r) => r.t === "start").map((r) => (r.t === "start" ? `${r.vm} ${r.epoch} ${r.why}` : ""))).toEqual(["a 1 continued", "b 2 continued"]);
    expect(now.at(-1)).toEqual({ t: "fence", node: "n1", pid: 42, atMs: 7, vm: "a", untilMs: 204 });
  });

  it("run-records - a torn last line is left out; a bad line elsewhere is an error", () => {
    const good = JSON.stringify({ t: "boot", node: "n1", pid: 1, atMs: 5 });
    expect(parseRunRecords(`${good}\n{"t":"sta`)).toHaveLength(1);
    expect(() => parseRunRecords(`{"t":"sta\n${good}\n${good}\n`)).toThrow(RunRecordError);
    expect(() => parseRunRecords(`${JSON.stringify({ t: "start", node: "n1", pid: 1, atMs: 5 })}\n`)).toThrow(RunRecordError);
  });
});
