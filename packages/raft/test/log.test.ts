/**
 * The Raft log (stable storage + unstable part) and MemoryStorage, checked against plain-array models
 * with fast-check, plus the invariants they enforce.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RaftInvariantError } from "../src/errors.js";
import { RaftLog, Unstable } from "../src/log.js";
import { MemoryStorage, newBootstrapStorage } from "../src/memory-storage.js";
import { CompactedError, ENTRY_OVERHEAD_BYTES, SnapshotOutOfDateError, UnavailableError, limitSize } from "../src/storage.js";
import { EntryType } from "../src/types.js";
import type { Entry } from "../src/types.js";
import { ent } from "./helpers.js";

function expectThrows(fn: () => unknown, type: new (...args: never[]) => Error): void {
  let error: unknown = null;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(type);
}

/** The model's answer to a size-limited read: the longest prefix within `max`, at least one entry. */
function modelLimit(sizes: number[], max: number): number {
  if (sizes.length === 0) return 0;
  let total = sizes[0];
  let n = 1;
  while (n < sizes.length && total + sizes[n] <= max) total += sizes[n++];
  return n;
}

type LogOp =
  | { kind: "append"; at: number; count: number; bump: number; steps: number[] }
  | { kind: "commit"; to: number }
  | { kind: "persist" }
  | { kind: "compact"; at: number }
  | { kind: "follower"; at: number; count: number; bump: number; commit: number };

const logOp: fc.Arbitrary<LogOp> = fc.oneof(
  fc.record({ kind: fc.constant("append" as const), at: fc.nat(), count: fc.integer({ min: 1, max: 4 }), bump: fc.integer({ min: 0, max: 2 }), steps: fc.array(fc.integer({ min: 0, max: 1 }), { minLength: 4, maxLength: 4 }) }),
  fc.record({ kind: fc.constant("commit" as const), to: fc.nat() }),
  fc.record({ kind: fc.constant("persist" as const) }),
  fc.record({ kind: fc.constant("compact" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("follower" as const), at: fc.nat(), count: fc.integer({ min: 0, max: 3 }), bump: fc.integer({ min: 0, max: 2 }), commit: fc.nat() }),
);

describe("log - RaftLog against an array model", () => {
  it("log - appends, truncations, commits, persistence and compaction match a plain array of terms", () => {
    fc.assert(
      fc.property(fc.array(logOp, { maxLength: 60 }), fc.array(fc.nat(), { minLength: 8, maxLength: 8 }), (ops, probes) => {
        const storage = newBootstrapStorage(["a", "b", "c"]);
        const log = new RaftLog(storage);
        // terms[i] is the term of entry i; index 0 is the initial snapshot (term 0).
        const terms: number[] = [0];
        let first = 1;
        let committed = 0;
        let stable = 0; // entries up to here are in storage, identical to the model
        const last = (): number => terms.length - 1;
        for (const op of ops) {
          switch (op.kind) {
            case "append": {
              const at = committed + 1 + (op.at % (last() - committed + 1)); // in [committed + 1, last + 1]
              let term = terms[at - 1] + op.bump;
              const ents: Entry[] = [];
              for (let k = 0; k < op.count; k++) {
                ents.push(ent(term, at + k, `${at + k}`));
                term += op.steps[k];
              }
              expect(log.append(ents)).toBe(at + op.count - 1);
              terms.length = at;
              for (const e of ents) terms.push(e.term);
              stable = Math.min(stable, at - 1);
              break;
            }
            case "follower": {
              // An append as a follower receives it: after (index, logTerm), with the log matching check.
              const index = committed + (op.at % (last() - committed + 2)); // in [committed, last + 1]
              const logTerm = index <= last() ? terms[index] : 99;
              let term = (index <= last() ? terms[index] : 0) + op.bump;
              const ents: Entry[] = [];
              for (let k = 0; k < op.count; k++) ents.push(ent(term++, index + 1 + k, `f${index + 1 + k}`));
              const res = log.maybeAppend(index, logTerm, op.commit, ents);
              if (index > last()) {
                expect(res).toBeNull();
                break;
              }
              expect(res).toBe(index + op.count);
              // Entries already present with the same term are kept; the first conflicting one truncates.
              for (const e of ents) {
                if (e.index <= last() && terms[e.index] === e.term) continue;
                terms.length = e.index;
                terms.push(e.term);
                stable = Math.min(stable, e.index - 1);
              }
              committed = Math.max(committed, Math.min(op.commit, index + op.count));
              break;
            }
            case "commit": {
              const to = committed + (op.to % (last() - committed + 1));
              log.commitTo(to);
              committed = to;
              break;
            }
            case "persist": {
              const unstable = log.unstableEntries();
              storage.append(unstable);
              if (unstable.length > 0) log.stableTo(unstable[unstable.length - 1].index, unstable[unstable.length - 1].term);
              stable = last();
              expect(log.hasUnstableEntries()).toBe(false);
              break;
            }
            case "compact": {
              const upTo = Math.min(committed, stable);
              if (upTo < first) break;
              const at = first + (op.at % (upTo - first + 1));
              log.appliedTo(Math.max(log.applied, at));
              storage.createSnapshot(at, null, new Uint8Array());
              storage.compact(at);
              first = at + 1;
              break;
            }
          }
          expect(log.lastIndex()).toBe(last());
          expect(log.firstIndex()).toBe(first);
          expect(log.committed).toBe(committed);
          expect(log.lastTerm()).toBe(terms[last()]);
          for (let i = 0; i <= last() + 1; i++) {
            if (i < first - 1) expectThrows(() => log.term(i), CompactedError);
            else if (i > last()) expectThrows(() => log.term(i), UnavailableError);
            else expect(log.term(i)).toBe(terms[i]);
          }
          const lo = first + (probes[0] % (last() - first + 2));
          const hi = lo + (probes[1] % (last() - lo + 2));
          expect(log.slice(lo, hi, Infinity).map((e) => [e.index, e.term])).toEqual(
            terms.slice(lo, hi).map((t, k) => [lo + k, t]));
          const max = probes[2] % 200;
          const limited = log.slice(lo, hi, max);
          const sizes = log.slice(lo, hi, Infinity).map((e) => e.data.length + ENTRY_OVERHEAD_BYTES);
          expect(limited.length).toBe(modelLimit(sizes, max));
          // Election restriction and fast backtracking against naive definitions.
          const cTerm = probes[3] % 8;
          const cIndex = probes[4] % (last() + 3);
          expect(log.isUpToDate(cIndex, cTerm)).toBe(cTerm > terms[last()] || (cTerm === terms[last()] && cIndex >= last()));
          const hint = Math.min(probes[5] % (last() + 1), last());
          const byTerm = log.findConflictByTerm(hint, probes[6] % 8);
          let want = { index: 0, term: 0 };
          for (let i = hint; i > 0; i--) {
            if (i < first - 1) {
              want = { index: i, term: 0 };
              break;
            }
            if (terms[i] <= probes[6] % 8) {
              want = { index: i, term: terms[i] };
              break;
            }
          }
          expect(byTerm).toEqual(want);
        }
      }),
      { numRuns: 400 },
    );
  });
});

describe("log - invariants", () => {
  it("log - committing beyond the last index throws", () => {
    const log = new RaftLog(newBootstrapStorage(["a"]));
    log.append([ent(1, 1)]);
    expectThrows(() => log.commitTo(2), RaftInvariantError);
  });

  it("log - appending with a gap, below the commit index, or with a term going backwards throws", () => {
    const log = new RaftLog(newBootstrapStorage(["a"]));
    log.append([ent(1, 1), ent(2, 2)]);
    log.commitTo(1);
    expectThrows(() => log.append([ent(2, 4)]), RaftInvariantError);
    expectThrows(() => log.append([ent(3, 3), ent(3, 5)]), RaftInvariantError);
    expectThrows(() => log.append([ent(3, 1)]), RaftInvariantError);
    expectThrows(() => log.append([ent(1, 3)]), RaftInvariantError);
    expectThrows(() => log.maybeAppend(2, 2, 0, [ent(2, 4)]), RaftInvariantError);
    // A follower's log never truncates committed entries.
    expectThrows(() => log.maybeAppend(0, 0, 0, [ent(5, 1)]), RaftInvariantError);
    expect(log.lastIndex()).toBe(2);
  });

  it("log - applied moves only forward and never past the commit index", () => {
    const log = new RaftLog(newBootstrapStorage(["a"]));
    log.append([ent(1, 1), ent(1, 2)]);
    log.commitTo(2);
    log.appliedTo(2);
    expectThrows(() => log.appliedTo(1), RaftInvariantError);
    log.append([ent(1, 3)]);
    expectThrows(() => log.appliedTo(3), RaftInvariantError);
  });
});

describe("log - unstable", () => {
  it("log - stableTo ignores an index whose entry was replaced since it was handed out", () => {
    const u = new Unstable(5);
    u.truncateAndAppend([ent(1, 5), ent(1, 6), ent(1, 7)]);
    u.truncateAndAppend([ent(2, 6)]);
    u.stableTo(7, 1); // gone
    expect(u.entries.map((e) => e.index)).toEqual([5, 6]);
    u.stableTo(6, 1); // wrong term
    expect(u.entries.map((e) => e.index)).toEqual([5, 6]);
    u.stableTo(5, 1);
    expect(u.offset).toBe(6);
    expect(u.entries.map((e) => [e.index, e.term])).toEqual([[6, 2]]);
  });

  it("log - truncateAndAppend before the offset replaces the whole unstable part", () => {
    const u = new Unstable(5);
    u.truncateAndAppend([ent(1, 5), ent(1, 6)]);
    u.truncateAndAppend([ent(2, 3), ent(2, 4)]);
    expect(u.offset).toBe(3);
    expect(u.entries.map((e) => e.index)).toEqual([3, 4]);
    expect(u.maybeTerm(4)).toBe(2);
    expect(u.maybeTerm(2)).toBeNull();
  });

  it("log - a restored snapshot decides the first and last index until it is persisted", () => {
    const log = new RaftLog(newBootstrapStorage(["a"]));
    log.append([ent(1, 1)]);
    log.restore({ metadata: { index: 10, term: 3, confState: { voters: ["a"], learners: [] } }, data: new Uint8Array() });
    expect([log.firstIndex(), log.lastIndex(), log.lastTerm(), log.committed]).toEqual([11, 10, 3, 10]);
    expect(log.hasPendingSnapshot()).toBe(true);
    expect(log.nextCommittedEntries()).toEqual([]);
    expectThrows(() => log.term(9), CompactedError);
  });
});

type StorageOp =
  | { kind: "append"; at: number; terms: number[] }
  | { kind: "compact"; at: number }
  | { kind: "snapshot"; ahead: number; term: number };

describe("log - MemoryStorage against an array model", () => {
  it("log - MemoryStorage entries, terms, compaction and snapshots match a plain array", () => {
    const op: fc.Arbitrary<StorageOp> = fc.oneof(
      { weight: 4, arbitrary: fc.record({ kind: fc.constant("append" as const), at: fc.integer({ min: 0, max: 40 }), terms: fc.array(fc.integer({ min: 1, max: 5 }), { maxLength: 5 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant("compact" as const), at: fc.integer({ min: 0, max: 40 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("snapshot" as const), ahead: fc.integer({ min: -2, max: 5 }), term: fc.integer({ min: 1, max: 9 }) }) },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), fc.array(fc.nat(), { minLength: 3, maxLength: 3 }), (ops, probes) => {
        const s = new MemoryStorage({ voters: ["a"], learners: [] });
        // model[i - offset] is the entry at index i; model[0] is the dummy at the snapshot index.
        let offset = 0;
        let model: Array<{ term: number; size: number }> = [{ term: 0, size: 0 }];
        const last = (): number => offset + model.length - 1;
        for (const o of ops) {
          if (o.kind === "append") {
            const at = o.at; // may be compacted, inside, at the end, or leave a gap
            const ents = o.terms.map((t, k) => ent(t, at + k, "x".repeat((at + k) % 4)));
            if (ents.length > 0 && at > last() + 1 && at + ents.length - 1 >= offset + 1) {
              expectThrows(() => s.append(ents), RaftInvariantError);
              continue;
            }
            s.append(ents);
            for (const e of ents) {
              if (e.index <= offset) continue;
              model = model.slice(0, e.index - offset);
              model.push({ term: e.term, size: e.data.length });
            }
          } else if (o.kind === "compact") {
            if (o.at <= offset) {
              expectThrows(() => s.compact(o.at), CompactedError);
            } else if (o.at > last()) {
              expectThrows(() => s.compact(o.at), RaftInvariantError);
            } else {
              s.compact(o.at);
              model = model.slice(o.at - offset);
              model[0] = { term: model[0].term, size: 0 };
              offset = o.at;
            }
          } else {
            const index = offset + o.ahead;
            const snap = { metadata: { index, term: o.term, confState: { voters: ["a"], learners: [] } }, data: new Uint8Array() };
            if (index <= offset) {
              if (index >= 0) expectThrows(() => s.applySnapshot(snap), SnapshotOutOfDateError);
              continue;
            }
            s.applySnapshot(snap);
            offset = index;
            model = [{ term: o.term, size: 0 }];
          }
          expect(s.firstIndex()).toBe(offset + 1);
          expect(s.lastIndex()).toBe(last());
          for (let i = Math.max(0, offset - 1); i <= last() + 1; i++) {
            if (i < offset) expectThrows(() => s.term(i), CompactedError);
            else if (i > last()) expectThrows(() => s.term(i), UnavailableError);
            else expect(s.term(i)).toBe(model[i - offset].term);
          }
          const lo = offset + 1 + (probes[0] % (model.length));
          const hi = lo + (probes[1] % (last() - lo + 2));
          const max = probes[2] % 60;
          const got = s.entries(lo, hi, max);
          const want = model.slice(lo - offset, hi - offset);
          const n = modelLimit(want.map((w) => w.size + ENTRY_OVERHEAD_BYTES), max);
          expect(got.map((e) => [e.index, e.term])).toEqual(want.slice(0, n).map((w, k) => [lo + k, w.term]));
          if (offset > 0) expectThrows(() => s.entries(offset, last() + 1, Infinity), CompactedError);
          expectThrows(() => s.entries(offset + 1, last() + 2, Infinity), UnavailableError);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it("log - createSnapshot records the term and membership at its index; older snapshots are refused", () => {
    const s = newBootstrapStorage(["a", "b"]);
    s.append([ent(1, 1), ent(2, 2), ent(2, 3)]);
    const snap = s.createSnapshot(2, { voters: ["a", "b", "c"], learners: [] }, new Uint8Array([7]));
    expect(snap.metadata).toEqual({ index: 2, term: 2, confState: { voters: ["a", "b", "c"], learners: [] } });
    expectThrows(() => s.createSnapshot(2, null, new Uint8Array()), SnapshotOutOfDateError);
    expectThrows(() => s.createSnapshot(9, null, new Uint8Array()), RaftInvariantError);
    expect(s.initialState().confState.voters).toEqual(["a", "b", "c"]);
    s.compact(2);
    expect([s.firstIndex(), s.lastIndex(), s.term(2)]).toEqual([3, 3, 2]);
  });

  it("log - a fresh joining storage accepts the membership snapshot at index 0, a founding one does not", () => {
    const cs = { voters: ["a", "b", "c"], learners: [] };
    const joiner = new MemoryStorage();
    joiner.applySnapshot({ metadata: { index: 0, term: 0, confState: cs }, data: new Uint8Array() });
    expect(joiner.initialState().confState).toEqual(cs);
    expectThrows(() => newBootstrapStorage(["a"]).applySnapshot({ metadata: { index: 0, term: 0, confState: cs }, data: new Uint8Array() }), SnapshotOutOfDateError);
  });

  it("log - limitSize keeps the longest prefix within the limit and at least one entry", () => {
    const ents = [0, 4, 10, 1].map((n, i) => ({ term: 1, index: i + 1, type: EntryType.Normal, data: new Uint8Array(n) }));
    const o = ENTRY_OVERHEAD_BYTES;
    expect(limitSize(ents, 0)).toHaveLength(1);
    expect(limitSize(ents, o + o + 4)).toHaveLength(2);
    expect(limitSize(ents, Infinity)).toBe(ents);
    expect(limitSize([], 0)).toEqual([]);
  });
});
