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

// Full scale: 100 hosts, 5,000 VMs, 3 Raft members, about a minute of faults and up to 90 s to settle,
// each in a few seconds (the command line sweeps more seeds).
describe("cluster sim - 100 hosts and 5,000 VMs under faults", () => {
  for (const seed of [2, 4, 6]) {
    it(`cluster sim - seed ${seed}: no VM runs twice, the state stays sound, replicas agree, every VM settles`, () => {
      const r = runClusterSim(seed);
      expect(r.violations, r.replay).toEqual([]);
      expect(r.ok).toBe(true);
      expect(r.options.hosts).toBe(100);
      expect(r.options.vms).toBe(5000);
      expect(r.options.managers).toBe(3);
      expect(r.stats.settledAtMs).not.toBeNull();
      expect(r.stats.crashes + r.stats.partitions + r.stats.drains + r.stats.managerCrashes + r.stats.managerPartitions).toBeGreaterThan(0);
      // Each of these seeds sees at least one leader change from a real election.
      expect(r.stats.leaderElections).toBeGreaterThanOrEqual(2);
      expect(r.stats.replicaChecks).toBeGreaterThan(0);
      expect(r.stats.failovers).toBeGreaterThan(0);
      expect(r.stats.invariantChecks).toBeGreaterThan(10);
    }, 60_000);
  }
});

describe("cluster sim - Raft under the managers", () => {
  it("cluster sim - survives the leading member crashing mid-run: a new leader is elected and the invariants hold", () => {
    // No other manager fault: the only leader change after the first election is the forced crash.
    const r = runClusterSim(5, {
      hosts: 30, vms: 900, managerCrashesMax: 0, managerPartitionsMax: 0, leaderCrashAtMs: 20_000, replicaCheckEveryIndexes: 500,
    });
    expect(r.violations, r.replay).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.stats.managerCrashes).toBe(1);
    expect(r.stats.leaderElections).toBeGreaterThanOrEqual(2);
    expect(r.stats.raftTermMax).toBeGreaterThanOrEqual(3);
    expect(r.stats.settledAtMs).not.toBeNull();
    // The crashed member replays its log from scratch on restart and is compared along the way.
    expect(r.stats.replicaChecks).toBeGreaterThan(10);
    expect(r.replay).toContain("--leader-crash-ms 20000");
  }, 30_000);

  it("cluster sim - five members ride out member crashes and partitions", () => {
    const r = runClusterSim(7, { hosts: 30, vms: 900, managers: 5, managerCrashesMax: 4, managerPartitionsMax: 4 });
    expect(r.violations, r.replay).toEqual([]);
    expect(r.stats.managerCrashes + r.stats.managerPartitions).toBeGreaterThan(0);
    expect(r.stats.leaderElections).toBeGreaterThanOrEqual(2);
  }, 30_000);
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
