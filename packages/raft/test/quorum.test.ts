/**
 * Quorum arithmetic against naive oracles (property tests), and the progress tracker built on it.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Inflights, Progress, ProgressTracker } from "../src/progress.js";
import { committedIndex, majority, voteResult } from "../src/quorum.js";

/** The largest index that a majority of voters has matched, by trying every candidate index. */
function naiveCommittedIndex(voters: readonly string[], match: ReadonlyMap<string, number>): number {
  if (voters.length === 0) return 0;
  const candidates = new Set([0, ...voters.map((v) => match.get(v) ?? 0)]);
  let best = 0;
  for (const idx of candidates) {
    const count = voters.filter((v) => (match.get(v) ?? 0) >= idx).length;
    if (count > voters.length / 2 && idx > best) best = idx;
  }
  return best;
}

/** Won if the granted votes already form a majority, lost if no way of casting the missing votes does. */
function naiveVoteResult(voters: readonly string[], votes: ReadonlyMap<string, boolean>): string {
  if (voters.length === 0) return "won";
  const granted = voters.filter((v) => votes.get(v) === true).length;
  const missing = voters.filter((v) => !votes.has(v)).length;
  if (2 * granted > voters.length) return "won";
  if (2 * (granted + missing) > voters.length) return "pending";
  return "lost";
}

const voterSet = fc.uniqueArray(fc.integer({ min: 1, max: 9 }).map((n) => `n${n}`), { maxLength: 9 });

describe("quorum - committed index", () => {
  it("quorum - committedIndex equals the largest index matched by a majority (naive oracle)", () => {
    fc.assert(
      fc.property(voterSet, fc.array(fc.tuple(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 50 })), { maxLength: 14 }),
        (voters, pairs) => {
          const match = new Map(pairs.map(([n, i]) => [`n${n}`, i] as [string, number]));
          expect(committedIndex(voters, (id) => match.get(id))).toBe(naiveCommittedIndex(voters, match));
        }),
      { numRuns: 5000 },
    );
  });

  it("quorum - committedIndex examples: a single voter, ties, missing voters count as 0", () => {
    const m = (o: Record<string, number>) => (id: string) => o[id];
    expect(committedIndex([], m({}))).toBe(0);
    expect(committedIndex(["a"], m({ a: 7 }))).toBe(7);
    expect(committedIndex(["a", "b", "c"], m({ a: 5, b: 3, c: 1 }))).toBe(3);
    expect(committedIndex(["a", "b", "c", "d"], m({ a: 5, b: 3, c: 1, d: 9 }))).toBe(3);
    expect(committedIndex(["a", "b", "c"], m({ a: 5 }))).toBe(0);
    expect(majority(1)).toBe(1);
    expect(majority(4)).toBe(3);
    expect(majority(5)).toBe(3);
  });
});

describe("quorum - votes", () => {
  it("quorum - voteResult equals the naive oracle; votes of non-voters never count", () => {
    fc.assert(
      fc.property(voterSet, fc.array(fc.tuple(fc.integer({ min: 1, max: 12 }), fc.boolean()), { maxLength: 14 }), (voters, pairs) => {
        const votes = new Map(pairs.map(([n, v]) => [`n${n}`, v] as [string, boolean]));
        expect(voteResult(voters, votes)).toBe(naiveVoteResult(voters, votes));
      }),
      { numRuns: 5000 },
    );
  });

  it("quorum - the tracker counts only the first vote of each voter", () => {
    const trk = new ProgressTracker(4);
    trk.setConfig({ voters: ["a", "b", "c"], learners: ["l"] }, 0);
    trk.recordVote("a", true);
    trk.recordVote("b", false);
    trk.recordVote("b", true);
    trk.recordVote("l", true);
    expect(trk.tallyVotes()).toEqual({ granted: 1, rejected: 1, result: "pending" });
    trk.recordVote("c", true);
    expect(trk.tallyVotes().result).toBe("won");
  });

  it("quorum - the tracker's quorumActive counts recently active voters and the leader itself, never learners", () => {
    const trk = new ProgressTracker(4);
    trk.setConfig({ voters: ["a", "b", "c"], learners: ["l"] }, 0);
    trk.visit((_id, pr) => {
      pr.recentActive = false;
    });
    trk.progress.get("l")!.recentActive = true;
    expect(trk.quorumActive("a")).toBe(false);
    trk.progress.get("c")!.recentActive = true;
    expect(trk.quorumActive("a")).toBe(true);
  });
});

describe("quorum - progress and flow control", () => {
  it("quorum - inflights fill up to their size, free by acknowledged index, and reject additions when full", () => {
    const inf = new Inflights(3);
    inf.add(2, 10);
    inf.add(5, 10);
    inf.add(9, 10);
    expect(inf.full()).toBe(true);
    expect(() => inf.add(10, 1)).toThrow();
    inf.freeLE(5);
    expect(inf.count()).toBe(1);
    expect(inf.full()).toBe(false);
    inf.freeLE(100);
    expect(inf.count()).toBe(0);
    const bytes = new Inflights(10, 100);
    bytes.add(1, 60);
    expect(bytes.full()).toBe(false);
    bytes.add(2, 60);
    expect(bytes.full()).toBe(true);
  });

  it("quorum - inflights behave like a queue of acknowledged-by-index messages (model check)", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constant("add" as const), fc.integer({ min: 0, max: 60 })), { maxLength: 200 }), (ops) => {
        const inf = new Inflights(8);
        const model: number[] = [];
        let next = 1;
        for (const op of ops) {
          if (op === "add") {
            if (model.length >= 8) continue;
            inf.add(next, 1);
            model.push(next);
            next += 1 + (next % 3);
          } else {
            inf.freeLE(op);
            while (model.length > 0 && model[0] <= op) model.shift();
          }
          expect(inf.count()).toBe(model.length);
          expect(inf.full()).toBe(model.length >= 8);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("quorum - progress: a stale rejection is ignored, a fresh one backs off to the hint, never below match", () => {
    const pr = new Progress(11, 4, false);
    pr.match = 5;
    pr.becomeReplicate();
    expect(pr.next).toBe(6);
    expect(pr.maybeDecrTo(5, 5)).toBe(false); // at or below match: stale
    expect(pr.maybeDecrTo(8, 3)).toBe(true);
    expect(pr.next).toBe(6);
    pr.becomeProbe();
    pr.next = 10;
    expect(pr.maybeDecrTo(7, 2)).toBe(false); // not the probe in flight
    expect(pr.maybeDecrTo(9, 2)).toBe(true);
    expect(pr.next).toBe(6); // max(min(9, 3), match + 1)
    expect(pr.maybeDecrTo(5, 5)).toBe(true);
    expect(pr.next).toBe(6);
  });

  it("quorum - progress: probe sends one append at a time, replicate pipelines, snapshot pauses", () => {
    const pr = new Progress(1, 2, false);
    expect(pr.isPaused()).toBe(false);
    pr.sentEntries(1, 10);
    expect(pr.isPaused()).toBe(true);
    expect(pr.maybeUpdate(1)).toBe(true);
    pr.becomeReplicate();
    pr.sentEntries(2, 1);
    expect(pr.isPaused()).toBe(false);
    pr.sentEntries(1, 1);
    expect(pr.isPaused()).toBe(true);
    expect(pr.next).toBe(5);
    pr.becomeSnapshot(20);
    expect(pr.isPaused()).toBe(true);
    pr.becomeProbe();
    expect(pr.next).toBe(21);
  });
});
