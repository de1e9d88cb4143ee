import { describe, expect, it } from "vitest";
import { SeededRng } from "../src/rng.js";
import { SimFileSystem } from "../src/sim-fs.js";
import { SafetyChecker, SimInvariantError, type LogView } from "../src/sim/checker.js";
import { MemberDisk } from "../src/sim/disk.js";
import { runSeed, type RunResult } from "../src/sim/run.js";
import { ratio } from "../src/sim/network.js";
import { optionsSwarm } from "../src/sim/swarm.js";
import { EntryType, type Entry, type HardState } from "../src/types.js";

/** Seeds swept in CI: SWEEP_FIRST .. SWEEP_FIRST + SWEEP_SEEDS - 1, in SWEEP_CHUNKS test cases. */
const SWEEP_FIRST = 1;
const SWEEP_SEEDS = 1000;
const SWEEP_CHUNKS = 4;
/** Ticks of 10 ms: the faulty phase of each CI run is 200 ticks. */
const SWEEP_SAFETY_MS = 2000;

function entry(index: number, term: number, text: string): Entry {
  return { index, term, type: EntryType.Normal, data: new TextEncoder().encode(text) };
}

function view(entries: readonly Entry[], snapshotIndex = 0): LogView {
  return {
    snapshotIndex: () => snapshotIndex,
    lastIndex: () => (entries.length === 0 ? snapshotIndex : entries[entries.length - 1]!.index),
    entry: (index) => entries.find((e) => e.index === index)!,
    term: (index) => (index === snapshotIndex ? 0 : entries.find((e) => e.index === index)!.term),
  };
}

const hs = (term: number, vote: string, commit: number): HardState => ({ term, vote, commit });

function describeFailure(r: RunResult): string {
  return r.failure === null ? "" : `seed ${r.seed}: ${r.failure.kind} in ${r.failure.phase} at ${r.failure.atMs} ms: ${r.failure.message}`;
}

describe("checker", () => {
  it("checker - refuses two leaders in one term", () => {
    const c = new SafetyChecker();
    const log = view([entry(1, 1, "")]);
    c.onPersist("n1", hs(1, "n1", 0), true, true, 1, log);
    c.onPersist("n2", hs(2, "n2", 0), true, true, 2, log);
    expect(() => c.onPersist("n3", hs(2, "n3", 0), true, true, 2, log)).toThrow(/election-safety/);
  });

  it("checker - refuses different entries committed at one index", () => {
    const c = new SafetyChecker();
    c.onPersist("n1", hs(1, "n1", 2), true, false, 1, view([entry(1, 1, ""), entry(2, 1, "a")]));
    c.onPersist("n2", hs(1, "n1", 1), true, false, 1, view([entry(1, 1, ""), entry(2, 1, "b")]));
    expect(() => c.onPersist("n2", hs(1, "n1", 2), false, false, 1, view([entry(1, 1, ""), entry(2, 1, "b")]))).toThrow(SimInvariantError);
  });

  it("checker - refuses a new leader that misses a committed entry", () => {
    const c = new SafetyChecker();
    c.onPersist("n1", hs(1, "n1", 2), true, true, 1, view([entry(1, 1, ""), entry(2, 1, "a")]));
    expect(() => c.onPersist("n2", hs(2, "n2", 0), true, true, 2, view([entry(1, 1, "")]))).toThrow(/leader-completeness/);
  });

  it("checker - refuses a vote changed within a term and a synced term lost in a crash", () => {
    const c = new SafetyChecker();
    c.onPersist("n1", hs(3, "n2", 0), true, false, 3, view([]));
    expect(() => c.onPersist("n1", hs(3, "n3", 0), true, false, 3, view([]))).toThrow(/one-vote-per-term/);
    const d = new SafetyChecker();
    d.onPersist("n1", hs(3, "n2", 0), true, false, 3, view([]));
    expect(() => d.onStart("n1", 2, hs(2, "", 0), view([]), 0)).toThrow(/durability/);
  });

  it("checker - refuses different applied entries or states at one index", () => {
    const c = new SafetyChecker();
    c.onPersist("n1", hs(1, "n1", 1), true, false, 1, view([entry(1, 1, "a")]));
    c.onPersist("n2", hs(1, "n1", 1), true, false, 1, view([entry(1, 1, "a")]));
    c.onApply("n1", entry(1, 1, "a"), 7);
    expect(() => c.onApply("n2", entry(1, 1, "a"), 8)).toThrow(/state-agreement/);
    expect(() => c.onApply("n3", entry(1, 1, "b"), 7)).toThrow(/state-machine-safety/);
  });
});

describe("disk", () => {
  it("disk - a restart keeps what was synced and cuts a torn tail", () => {
    const fs = new SimFileSystem();
    const founders = { voters: ["n1", "n2", "n3"], learners: [] };
    const options = { segmentSizeBytes: 1024, retain: 2 };
    MemberDisk.create(fs, "/n1", founders, options);
    const first = MemberDisk.open(fs, "/n1", options);
    expect(first.recovery.storage.initialState().confState.voters).toEqual(["n1", "n2", "n3"]);
    const synced = [entry(1, 1, "a"), entry(2, 1, "b")];
    first.disk.persist({ snapshot: null, entries: synced, hardState: hs(1, "n1", 1) }, true);
    first.disk.persist({ snapshot: null, entries: [entry(3, 1, "c")], hardState: hs(1, "n1", 2) }, false);
    let repaired = 0;
    for (let seed = 1; seed <= 20; seed++) {
      const copy = new SimFileSystem();
      MemberDisk.create(copy, "/n1", founders, options);
      const d = MemberDisk.open(copy, "/n1", options).disk;
      d.persist({ snapshot: null, entries: synced, hardState: hs(1, "n1", 1) }, true);
      d.persist({ snapshot: null, entries: [entry(3, 1, "c")], hardState: hs(1, "n1", 2) }, false);
      copy.crash(new SeededRng(seed), { keepUnsyncedPrefix: [1, 1] });
      const { recovery } = MemberDisk.open(copy, "/n1", options);
      if (recovery.repaired !== null) repaired++;
      expect(recovery.storage.lastIndex()).toBeGreaterThanOrEqual(2);
      expect(recovery.storage.entries(1, 3, Infinity).map((e) => e.term)).toEqual([1, 1]);
      expect(recovery.hardState.term).toBe(1);
      expect(recovery.hardState.vote).toBe("n1");
    }
    expect(repaired).toBeGreaterThan(0);
  });
});

describe("sim", () => {
  it("sim - a seed replays to the identical trace; other seeds differ", () => {
    const seeds = [7, 12, 40];
    const hashes = seeds.map((seed) => {
      const a = runSeed(seed, { safetyMs: 1500 });
      const b = runSeed(seed, { safetyMs: 1500 });
      expect(a.ok, describeFailure(a)).toBe(true);
      expect(b.traceHash).toBe(a.traceHash);
      expect(b.stats).toEqual(a.stats);
      expect(a.stats.messagesDelivered).toBeGreaterThan(0);
      return a.traceHash;
    });
    expect(new Set(hashes).size).toBe(seeds.length);
  });

  it("sim - catches a driver that sends before its writes are durable", () => {
    // Crash-heavy runs with a driver that never fsyncs: a restarted member forgets votes and entries
    // it acknowledged, which the checkers (or the core's own assertions) must notice.
    const kinds: string[] = [];
    for (let seed = 1; seed <= 8; seed++) {
      const options = { ...optionsSwarm(seed, { safetyMs: 1500 }), memberCount: 3, crashRatio: ratio(20, 1000), downMax: 2, restartDelayMsMax: 100 };
      const r = runSeed(seed, { options, unsafeSkipFsync: true });
      kinds.push(r.failure?.kind ?? "none");
    }
    expect(kinds.filter((k) => k === "invariant" || k === "error").length).toBeGreaterThanOrEqual(6);
  });

  it("sim - catches reads served from a member's local state", () => {
    // Stale reads from followers and deposed leaders: only the linearizability check can see them.
    const kinds: string[] = [];
    for (let seed = 1; seed <= 20; seed++) kinds.push(runSeed(seed, { safetyMs: 2000, unsafeLocalReads: true }).failure?.kind ?? "none");
    expect(kinds.filter((k) => k === "linearizability").length).toBeGreaterThanOrEqual(3);
    expect(kinds.filter((k) => k !== "linearizability" && k !== "none")).toEqual([]);
  });

  it("sim - swarm options are drawn from the seed alone", () => {
    expect(optionsSwarm(99)).toEqual(optionsSwarm(99));
    const kinds = new Set(Array.from({ length: 200 }, (_, i) => optionsSwarm(i).network.partitionMode));
    expect(kinds).toEqual(new Set(["none", "uniformSize", "uniformPartition", "isolateSingle"]));
  });

  const chunk = Math.ceil(SWEEP_SEEDS / SWEEP_CHUNKS);
  const totals = { runs: 0, crashes: 0, walRepairs: 0, snapshotsInstalled: 0, confChangesApplied: 0, transfers: 0, elections: 0, linearizable: 0 };
  for (let k = 0; k < SWEEP_CHUNKS; k++) {
    const first = SWEEP_FIRST + k * chunk;
    const last = Math.min(SWEEP_FIRST + SWEEP_SEEDS, first + chunk) - 1;
    it(`sim - seeds ${first}..${last} keep Raft safe, converge after healing and stay linearizable`, () => {
      const failures: string[] = [];
      for (let seed = first; seed <= last; seed++) {
        const r = runSeed(seed, { safetyMs: SWEEP_SAFETY_MS });
        if (!r.ok) failures.push(describeFailure(r));
        totals.runs++;
        totals.crashes += r.stats.crashes;
        totals.walRepairs += r.stats.walRepairs;
        totals.snapshotsInstalled += r.stats.snapshotsInstalled;
        totals.confChangesApplied += r.stats.confChangesApplied;
        totals.transfers += r.stats.transfersRequested;
        totals.elections += r.stats.elections;
        if (r.stats.linearizability === "ok") totals.linearizable++;
      }
      expect(failures).toEqual([]);
    }, 300_000);
  }

  it("sim - the sweep exercised every fault and feature", () => {
    expect(totals.runs).toBe(SWEEP_SEEDS);
    expect(totals.crashes).toBeGreaterThan(100);
    expect(totals.walRepairs).toBeGreaterThan(10);
    expect(totals.snapshotsInstalled).toBeGreaterThan(10);
    expect(totals.confChangesApplied).toBeGreaterThan(50);
    expect(totals.transfers).toBeGreaterThan(50);
    expect(totals.elections).toBeGreaterThan(SWEEP_SEEDS);
    expect(totals.linearizable).toBeGreaterThan(SWEEP_SEEDS * 0.95);
  });
});
