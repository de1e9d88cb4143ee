import { describe, expect, it } from "vitest";
import type { RunRecord } from "../src/sim/index.js";
import { findDoubleRuns, runClusterSim } from "../src/sim/index.js";

function run(vm: string, host: string, epoch: number, startMs: number, endMs: number | null, fenceAtMs = Infinity): RunRecord {
  return { vm, host, epoch, startMs, endMs, fenceAtMs, endReason: endMs === null ? null : "stop" };
}

describe("cluster sim - double-run checker", () => {
  it("reports runs of one VM that overlap in time, and accepts runs back to back", () => {
    expect(findDoubleRuns([run("a", "h1", 1, 0, 100), run("a", "h2", 2, 100, 200)], 1000)).toEqual([]);
    expect(findDoubleRuns([run("a", "h1", 1, 0, 100), run("a", "h2", 2, 99, 200)], 1000)).toHaveLength(1);
    expect(findDoubleRuns([run("a", "h1", 1, 0, 100), run("b", "h2", 1, 50, 200)], 1000)).toEqual([]);
  });

  it("ends a run still going at its fence deadline", () => {
    // h1 is cut off: its run ends where its fence stops it, before h2 starts the VM.
    expect(findDoubleRuns([run("a", "h1", 1, 0, null, 500), run("a", "h2", 2, 600, null)], 1000)).toEqual([]);
    expect(findDoubleRuns([run("a", "h1", 1, 0, null, 700), run("a", "h2", 2, 600, null)], 1000)).toHaveLength(1);
  });
});

// Full scale: 100 hosts, 5,000 VMs, about a minute of faults and up to 90 s to settle, each in a few seconds.
describe("cluster sim - 100 hosts and 5,000 VMs under faults", () => {
  for (const seed of [1, 3, 6]) {
    it(`cluster sim - seed ${seed}: no VM runs twice, the state stays sound, every VM settles`, () => {
      const r = runClusterSim(seed);
      expect(r.violations, r.replay).toEqual([]);
      expect(r.ok).toBe(true);
      expect(r.options.hosts).toBe(100);
      expect(r.options.vms).toBe(5000);
      expect(r.stats.settledAtMs).not.toBeNull();
      expect(r.stats.crashes + r.stats.partitions + r.stats.drains + r.stats.leaderChanges).toBeGreaterThan(0);
      expect(r.stats.failovers).toBeGreaterThan(0);
      expect(r.stats.invariantChecks).toBeGreaterThan(10);
    }, 60_000);
  }
});

describe("cluster sim - determinism and the checker", () => {
  it("cluster sim - a seed replays to the same trace", () => {
    const options = { hosts: 20, vms: 600, faultMs: 30_000 };
    const a = runClusterSim(11, options);
    const b = runClusterSim(11, options);
    expect(a.traceHash).toBe(b.traceHash);
    expect(a.stats).toEqual(b.stats);
    expect(runClusterSim(12, options).traceHash).not.toBe(a.traceHash);
  }, 30_000);

  it("cluster sim - catches VMs run twice when hosts fence after their lease ends", () => {
    // A broken host that keeps running 3 s past its lease, and a leader that fails over as soon as the
    // lease ends: a partitioned host's VMs run on two hosts at once, and the checker must say so.
    const r = runClusterSim(1, { hosts: 40, vms: 1500, fenceMarginMs: -3000, failoverMarginMs: 0, partitionsMax: 8 });
    expect(r.ok).toBe(false);
    expect(r.violations.some((v) => v.kind === "double-run")).toBe(true);
    expect(r.replay).toContain("--fence-margin-ms -3000");
    expect(r.replay).toContain("--seed 1");
  }, 30_000);
});
