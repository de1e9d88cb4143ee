import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { HistoryEvent, Operation } from "../src/check/history.js";
import { fromEvents, HistoryError, HistoryRecorder, toEvents, validateHistory } from "../src/check/history.js";
import type { KvInput, KvOutput, KvState } from "../src/check/kv-model.js";
import { kvModel } from "../src/check/kv-model.js";
import { checkEvents, checkOperations, describeCheckResult } from "../src/check/linearizability.js";
import type { Model, NondeterministicModel } from "../src/check/model.js";
import { fromNondeterministic, ModelError } from "../src/check/model.js";
import { SeededRng } from "../src/rng.js";

type KvOp = Operation<KvInput, KvOutput>;

const get = (key: string): KvInput => ({ op: "get", key });
const put = (key: string, value: string): KvInput => ({ op: "put", key, value });
const cas = (key: string, expected: string | null, value: string): KvInput => ({ op: "cas", key, expected, value });
const del = (key: string): KvInput => ({ op: "delete", key });
const read = (value: string | null): KvOutput => ({ op: "get", value });
const PUT: KvOutput = { op: "put" };
const casResult = (ok: boolean): KvOutput => ({ op: "cas", ok });

let nextClient = 1000;
/** A completed operation on a fresh client (`clientId` given when sequencing on one client matters). */
function op(input: KvInput, output: KvOutput, call: number, ret: number, clientId = nextClient++): KvOp {
  return { clientId, input, output, call, return: ret };
}
/** An operation whose outcome is unknown. */
function pending(input: KvInput, call: number, clientId = nextClient++): KvOp {
  return { clientId, input, output: undefined, call, return: Infinity };
}

/** The key-value store as plain sequential code: the reference the model and the oracle are held to. */
function referenceApply(store: Map<string, string>, input: KvInput): KvOutput {
  const current = store.get(input.key) ?? null;
  switch (input.op) {
    case "get":
      return { op: "get", value: current };
    case "put":
      store.set(input.key, input.value);
      return { op: "put" };
    case "cas":
      if (current === input.expected) store.set(input.key, input.value);
      return { op: "cas", ok: current === input.expected };
    case "delete":
      store.delete(input.key);
      return { op: "delete", existed: current !== null };
  }
}

/**
 * Brute force: tries every order of every subset of operations that contains all the determinate ones
 * and respects real time (a before b when a.return < b.call), replaying the reference store.
 */
function bruteForceLinearizable(history: readonly KvOp[]): boolean {
  const n = history.length;
  const used = new Array<boolean>(n).fill(false);
  const mustRemain = history.filter((o) => o.return !== Infinity).length;
  const extend = (store: Map<string, string>, determinateDone: number): boolean => {
    if (determinateDone === mustRemain) return true;
    for (let i = 0; i < n; i++) {
      if (used[i]) continue;
      const o = history[i]!;
      // Every operation that returned before this one was called must already be placed.
      if (history.some((p, j) => !used[j] && j !== i && p.return < o.call)) continue;
      const copy = new Map(store);
      const output = referenceApply(copy, o.input);
      if (o.output !== undefined && JSON.stringify(output) !== JSON.stringify(o.output)) continue;
      used[i] = true;
      const found = extend(copy, determinateDone + (o.return === Infinity ? 0 : 1));
      used[i] = false;
      if (found) return true;
    }
    return false;
  };
  return extend(new Map(), 0);
}

/** The same model without partitioning (one search over all keys). */
const unpartitioned: Model<KvState, KvInput, KvOutput> = (() => {
  const { partition: _partition, ...rest } = kvModel;
  return rest;
})();

/** The same model without a state hash: memoization then relies on `equal` alone. */
const unhashed: Model<KvState, KvInput, KvOutput> = (() => {
  const { hash: _hash, ...rest } = kvModel;
  return rest;
})();

describe("linearizability - classic register histories", () => {
  it("accepts a read that sees a write it overlaps and one that does not see it yet", () => {
    // Porcupine's README shape: put [0,100]; get → "100" [25,75]; get → null [30,60].
    const history = [op(put("x", "100"), PUT, 0, 100), op(get("x"), read("100"), 25, 75), op(get("x"), read(null), 30, 60)];
    const r = checkOperations(kvModel, history);
    expect(r.result).toBe("ok");
    expect(r.partial).toHaveLength(1);
    // A complete linearization: the null read, then the put, then the "100" read.
    expect(r.partial[0]!.linearization.map((o) => kvModel.describeOperation(o.input, o.output))).toEqual(['get(x) -> null', 'put(x, "100")', 'get(x) -> "100"']);
  });

  it("rejects a read of the initial value after another read saw the write", () => {
    const history = [op(put("x", "200"), PUT, 0, 100), op(get("x"), read("200"), 10, 30), op(get("x"), read(null), 40, 90)];
    expect(checkOperations(kvModel, history).result).toBe("illegal");
  });

  it("accepts concurrent writes seen in either order, but not both orders one after the other", () => {
    const writes = [op(put("x", "1"), PUT, 0, 10), op(put("x", "2"), PUT, 0, 10)];
    expect(checkOperations(kvModel, [...writes, op(get("x"), read("1"), 20, 30), op(get("x"), read("1"), 31, 40)]).result).toBe("ok");
    expect(checkOperations(kvModel, [...writes, op(get("x"), read("2"), 20, 30)]).result).toBe("ok");
    expect(checkOperations(kvModel, [...writes, op(get("x"), read("2"), 20, 30), op(get("x"), read("1"), 31, 40)]).result).toBe("illegal");
  });

  it("accepts a read that sees a concurrent write or the value before it", () => {
    const base = [op(put("x", "1"), PUT, 0, 10), op(put("x", "2"), PUT, 20, 40)];
    expect(checkOperations(kvModel, [...base, op(get("x"), read("2"), 25, 30)]).result).toBe("ok");
    expect(checkOperations(kvModel, [...base, op(get("x"), read("1"), 25, 30)]).result).toBe("ok");
  });

  it("treats touching intervals as concurrent (closed intervals)", () => {
    // The read is called at the very instant the write returns: it may still be ordered first.
    expect(checkOperations(kvModel, [op(put("x", "1"), PUT, 0, 10), op(get("x"), read(null), 10, 12)]).result).toBe("ok");
    expect(checkOperations(kvModel, [op(put("x", "1"), PUT, 0, 10), op(get("x"), read(null), 11, 12)]).result).toBe("illegal");
  });

  it("rejects a stale read after a completed write", () => {
    const history = [op(put("x", "1"), PUT, 0, 10), op(put("x", "2"), PUT, 20, 30), op(get("x"), read("1"), 40, 50)];
    const r = checkOperations(kvModel, history);
    expect(r.result).toBe("illegal");
    const text = describeCheckResult(r);
    expect(text).toContain("longest linearization found: 2 of 3");
    expect(text).toContain('get(x) -> "1"  illegal in state {x: "2"}');
  });

  it("rejects a read-your-write violation on one client", () => {
    const history = [op(put("x", "1"), PUT, 0, 10, 7), op(get("x"), read(null), 11, 20, 7)];
    expect(checkOperations(kvModel, history).result).toBe("illegal");
  });

  it("rejects a lost acknowledged write and pins it to its key's partition", () => {
    const history = [
      op(put("x", "a"), PUT, 0, 10),
      op(put("y", "b"), PUT, 0, 10),
      op(cas("y", "b", "c"), casResult(true), 12, 14),
      op(get("x"), read("a"), 20, 30),
      op(get("y"), read("b"), 20, 30), // the acknowledged cas to "c" is lost
    ];
    const r = checkOperations(kvModel, history);
    expect(r.result).toBe("illegal");
    expect(r.partial.map((p) => p.result)).toEqual(["ok", "illegal"]);
    expect(r.partial[1]!.operations.every((o) => o.input.key === "y")).toBe(true);
    expect(r.partial[1]!.linearization).toHaveLength(2);
  });

  it("memoizes on the state as well as on the set of linearized operations", () => {
    // Both writes linearized, in the order the search tries first, leave "2": the read needs the other order.
    const history = [op(put("x", "1"), PUT, 0, 10), op(put("x", "2"), PUT, 0, 10), op(get("x"), read("1"), 20, 30)];
    expect(checkOperations(unhashed, history).result).toBe("ok");
    expect(checkOperations(kvModel, history).result).toBe("ok");
  });

  it("checks cas and delete outcomes against the state", () => {
    const ok = [
      op(put("x", "1"), PUT, 0, 1),
      op(cas("x", "1", "2"), casResult(true), 2, 3),
      op(cas("x", "1", "3"), casResult(false), 4, 5),
      op(del("x"), { op: "delete", existed: true }, 6, 7),
      op(del("x"), { op: "delete", existed: false }, 8, 9),
      op(cas("x", null, "4"), casResult(true), 10, 11),
      op(get("x"), read("4"), 12, 13),
    ];
    expect(checkOperations(kvModel, ok).result).toBe("ok");
    const bad = [op(put("x", "1"), PUT, 0, 1), op(cas("x", "1", "2"), casResult(false), 2, 3)];
    expect(checkOperations(kvModel, bad).result).toBe("illegal");
  });
});

describe("linearizability - indeterminate operations", () => {
  it("lets a write with unknown outcome take effect or not", () => {
    const w = pending(put("x", "1"), 0);
    expect(checkOperations(kvModel, [w, op(get("x"), read("1"), 5, 10)]).result).toBe("ok");
    expect(checkOperations(kvModel, [w, op(get("x"), read(null), 5, 10)]).result).toBe("ok");
    // It may take effect late: after a read that did not see it.
    expect(checkOperations(kvModel, [w, op(get("x"), read(null), 5, 10), op(get("x"), read("1"), 20, 30)]).result).toBe("ok");
  });

  it("does not let a write with unknown outcome be undone or take effect before its call", () => {
    const w = pending(put("x", "1"), 10);
    expect(checkOperations(kvModel, [w, op(get("x"), read("1"), 12, 14), op(get("x"), read(null), 20, 30)]).result).toBe("illegal");
    expect(checkOperations(kvModel, [w, op(get("x"), read("1"), 0, 5)]).result).toBe("illegal");
  });

  it("decides an unknown cas by the state it is linearized in", () => {
    const history = [op(put("x", "a"), PUT, 0, 1), pending(cas("x", "a", "b"), 2), pending(cas("x", "zzz", "c"), 2), op(get("x"), read("b"), 10, 11)];
    expect(checkOperations(kvModel, history).result).toBe("ok");
    // A cas whose expectation never holds cannot produce its value.
    const impossible = [op(put("x", "a"), PUT, 0, 1), pending(cas("x", "zzz", "c"), 2), op(get("x"), read("c"), 10, 11)];
    expect(checkOperations(kvModel, impossible).result).toBe("illegal");
  });

  it("drops indeterminate reads before the search", () => {
    const r = checkOperations(kvModel, [op(put("x", "1"), PUT, 0, 1), pending(get("x"), 2), pending(get("x"), 3)]);
    expect(r.result).toBe("ok");
    expect(r.partial[0]!.operations).toHaveLength(1);
    expect(r.partial[0]!.description).toContain("2 indeterminate reads dropped");
  });
});

describe("linearizability - budget", () => {
  /** Ten concurrent writes, then a read of a value nobody wrote: illegal, but only after a wide search. */
  function wideIllegal(): KvOp[] {
    const writes = Array.from({ length: 10 }, (_, i) => op(put("x", `w${i}`), PUT, 0, 100));
    return [...writes, op(get("x"), read("nobody"), 200, 201)];
  }

  it("answers unknown when the step budget runs out, and the true verdict with enough budget", () => {
    const history = wideIllegal();
    const full = checkOperations(kvModel, history);
    expect(full.result).toBe("illegal");
    expect(full.steps).toBeGreaterThan(1000);
    const cut = checkOperations(kvModel, history, { maxSteps: 500 });
    expect(cut.result).toBe("unknown");
    expect(cut.steps).toBe(500);
    expect(cut.partial[0]!.description).toContain("budget spent");
  });

  it("never gives a wrong verdict whatever the budget", () => {
    const illegal = [op(put("x", "1"), PUT, 0, 10), op(put("x", "2"), PUT, 0, 10), op(get("x"), read("2"), 20, 30), op(get("x"), read("1"), 31, 40)];
    const fine = [op(put("x", "1"), PUT, 0, 10), op(put("x", "2"), PUT, 0, 10), op(get("x"), read("1"), 20, 30)];
    for (let maxSteps = 0; maxSteps <= 40; maxSteps++) {
      expect(["unknown", "illegal"]).toContain(checkOperations(kvModel, illegal, { maxSteps }).result);
      expect(["unknown", "ok"]).toContain(checkOperations(kvModel, fine, { maxSteps }).result);
    }
  });

  it("stops at the injected clock's deadline and leaves later partitions unsearched", () => {
    let clockMs = 0;
    const now = (): number => clockMs++; // every reading advances the clock 1 ms
    const other = op(put("y", "1"), PUT, 0, 1);
    const r = checkOperations(kvModel, [...wideIllegal(), other], { now, timeoutMs: 3 });
    expect(r.result).toBe("unknown");
    expect(r.steps).toBe(3 * 1024);
    expect(r.partial[1]!.steps).toBe(0);
    expect(r.partial[1]!.description).toContain("not searched");
  });
});

describe("linearizability - histories, events and models", () => {
  it("round-trips operations through events", () => {
    const history = [op(put("x", "1"), PUT, 0, 10, 1), op(get("x"), read("1"), 5, 15, 2), pending(put("x", "2"), 12, 3)];
    const events = toEvents(history);
    expect(events.map((e) => `${e.kind}${e.id}`)).toEqual(["call0", "call1", "return0", "call2", "return1"]);
    const back = fromEvents(events);
    expect(back.map((o) => [o.clientId, o.input, o.output, o.return === Infinity])).toEqual(history.map((o) => [o.clientId, o.input, o.output, o.return === Infinity]));
    expect(checkEvents(kvModel, events).result).toBe("ok");
  });

  it("checks Porcupine-style event lists", () => {
    const events: HistoryEvent<KvInput, KvOutput>[] = [
      { kind: "call", clientId: 0, id: 0, value: put("x", "100") },
      { kind: "call", clientId: 1, id: 1, value: get("x") },
      { kind: "return", clientId: 1, id: 1, value: read("100") },
      { kind: "call", clientId: 2, id: 2, value: get("x") },
      { kind: "return", clientId: 2, id: 2, value: read(null) },
      { kind: "return", clientId: 0, id: 0, value: PUT },
    ];
    expect(checkEvents(kvModel, events).result).toBe("illegal");
    expect(() => fromEvents([{ kind: "return", clientId: 0, id: 9, value: PUT }])).toThrow(HistoryError);
  });

  it("rejects malformed histories", () => {
    expect(() => validateHistory([op(get("x"), read(null), 5, 4)])).toThrow(/before its call/);
    expect(() => validateHistory([op(get("x"), read(null), 0, 10, 1), op(get("x"), read(null), 5, 12, 1)])).toThrow(/before the previous one returned/);
    expect(() => validateHistory([pending(put("x", "1"), 0, 1), op(get("x"), read(null), 5, 12, 1)])).toThrow(/new client id/);
    expect(() => checkOperations(kvModel, [{ clientId: 1, input: get("x"), output: undefined, call: 0, return: 3 }])).toThrow(HistoryError);
    expect(() => checkOperations(kvModel, [op(get("x"), PUT, 0, 1)])).toThrow(ModelError);
  });

  it("records invoke, ok, fail and unknown with an injected clock", () => {
    let clock = 0;
    const h = new HistoryRecorder<KvInput, KvOutput>({ now: () => clock });
    expect([h.uniqueValue(), h.uniqueValue("w"), h.uniqueValue()]).toEqual(["v0", "w1", "v2"]);
    const a = h.invoke("alice", put("x", "1"));
    clock = 5;
    expect(() => h.invoke("alice", get("x"))).toThrow(HistoryError);
    h.ok(a, PUT);
    const b = h.invoke("alice", put("x", "2"));
    clock = 7;
    h.unknown(b); // alice continues under a new client id
    const c = h.invoke("alice", put("x", "3"));
    clock = 8;
    h.fail(c); // definitely not applied: not in the history
    const d = h.invoke("bob", get("x"));
    clock = 9;
    h.ok(d, read("2"));
    const e = h.invoke("alice", get("x")); // still in flight at the end: indeterminate
    expect(() => h.ok(a, PUT)).toThrow(HistoryError);
    const ops = h.operations();
    expect(ops.map((o) => [o.clientId, o.call, o.return])).toEqual([
      [0, 0, 5],
      [0, 5, Infinity],
      [2, 8, 9],
      [1, 9, Infinity],
    ]);
    expect(e.id).toBe(4);
    expect(checkOperations(kvModel, ops).result).toBe("ok");
    expect(h.events()).toHaveLength(6);
    clock = 3;
    expect(() => h.invoke("carol", get("x"))).toThrow(/backwards/);
  });

  it("checks nondeterministic models through the power-set construction", () => {
    // A register whose writes may be silently lost: a read of the old value after an ack is allowed.
    const lossy: NondeterministicModel<string | null, KvInput, KvOutput> = {
      init: () => [null],
      step: (s, input, output) => {
        if (input.op === "put") return [s, input.value];
        if (input.op === "get") return output === undefined || (output.op === "get" && output.value === s) ? [s] : [];
        return [];
      },
      equal: (a, b) => a === b,
      hash: (s) => (s === null ? 0 : s.length),
      describeOperation: (input, output) => kvModel.describeOperation(input, output),
      describeState: (s) => String(s),
    };
    const model = fromNondeterministic(lossy);
    const history = [op(put("x", "1"), PUT, 0, 1), op(get("x"), read(null), 2, 3), op(put("x", "2"), PUT, 4, 5), op(get("x"), read("2"), 6, 7)];
    expect(checkOperations(model, history).result).toBe("ok");
    expect(checkOperations(kvModel, history).result).toBe("illegal");
    // Once read, a value is the state: it cannot be unread.
    expect(checkOperations(model, [...history, op(get("x"), read("1"), 8, 9)]).result).toBe("illegal");
    expect(model.describeState(model.step(model.init(), put("x", "1"), PUT).state)).toBe("one of [null, 1]");
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

/** A small random history: ≤ 7 operations over 1–2 keys; reads name values written to their key. */
const smallHistory = fc
  .record({
    keys: fc.integer({ min: 1, max: 2 }),
    specs: fc.array(
      fc.record({
        kind: fc.constantFrom("get", "get", "put", "put", "cas", "delete"),
        key: fc.nat(1),
        call: fc.nat(20),
        durationTicks: fc.nat(10),
        indeterminate: fc.nat(5).map((x) => x === 0),
        pick: fc.nat(10),
        flag: fc.boolean(),
      }),
      { minLength: 1, maxLength: 7 },
    ),
  })
  .map(({ keys, specs }): KvOp[] => {
    const keyOf = (k: number): string => (k % keys === 0 ? "x" : "y");
    const written = (key: string): (string | null)[] => [null, ...specs.flatMap((s, i) => (keyOf(s.key) === key && (s.kind === "put" || s.kind === "cas") ? [`v${i}`] : []))];
    return specs.map((s, i): KvOp => {
      const key = keyOf(s.key);
      const values = written(key);
      const someValue = values[s.pick % values.length]!;
      let input: KvInput;
      let output: KvOutput;
      switch (s.kind) {
        case "get":
          [input, output] = [get(key), read(someValue)];
          break;
        case "put":
          [input, output] = [put(key, `v${i}`), PUT];
          break;
        case "cas":
          [input, output] = [cas(key, someValue, `v${i}`), casResult(s.flag)];
          break;
        default:
          [input, output] = [del(key), { op: "delete", existed: s.flag }];
      }
      return s.indeterminate
        ? { clientId: i, input, output: undefined, call: s.call, return: Infinity }
        : { clientId: i, input, output, call: s.call, return: s.call + s.durationTicks };
    });
  });

/** Operations run one at a time against the reference store, then given wider intervals around that instant. */
const sequentialRun = fc
  .array(
    fc.record({
      kind: fc.constantFrom("get", "get", "put", "put", "cas", "delete"),
      key: fc.constantFrom("a", "b", "c"),
      before: fc.nat(25),
      after: fc.nat(25),
      outcome: fc.constantFrom("known", "known", "known", "known", "unknown-applied", "unknown-lost"),
      guessCurrent: fc.boolean(),
    }),
    { minLength: 1, maxLength: 30 },
  )
  .map((specs): KvOp[] => {
    const store = new Map<string, string>();
    const history: KvOp[] = [];
    for (const [i, s] of specs.entries()) {
      const current = store.get(s.key) ?? null;
      const input: KvInput =
        s.kind === "get" ? get(s.key) : s.kind === "put" ? put(s.key, `v${i}`) : s.kind === "cas" ? cas(s.key, s.guessCurrent ? current : "nope", `v${i}`) : del(s.key);
      const pointTicks = 10 * i + 30; // the instant the operation takes effect
      const call = pointTicks - s.before;
      if (s.outcome === "unknown-lost") {
        history.push({ clientId: i, input, output: undefined, call, return: Infinity });
        continue;
      }
      const output = referenceApply(store, input);
      history.push(s.outcome === "known" ? { clientId: i, input, output, call, return: pointTicks + s.after } : { clientId: i, input, output: undefined, call, return: Infinity });
    }
    return history;
  });

describe("linearizability - properties", () => {
  it("agrees with a brute-force search over every real-time-consistent order", () => {
    let illegalSeen = 0;
    fc.assert(
      fc.property(smallHistory, (history) => {
        const expected = bruteForceLinearizable(history) ? "ok" : "illegal";
        if (expected === "illegal") illegalSeen++;
        expect(checkOperations(kvModel, history).result).toBe(expected);
        expect(checkOperations(unpartitioned, history).result).toBe(expected);
        expect(checkOperations(unhashed, history).result).toBe(expected);
      }),
      { numRuns: 400, seed: 20240611 },
    );
    // Both verdicts are exercised.
    expect(illegalSeen).toBeGreaterThan(40);
    expect(illegalSeen).toBeLessThan(360);
  });

  it("accepts any history from a sequential run with widened intervals, and rejects it with one read corrupted", () => {
    fc.assert(
      fc.property(sequentialRun, fc.nat(), (history, which) => {
        const r = checkOperations(kvModel, history);
        expect(r.result, describeCheckResult(r)).toBe("ok");
        const reads = history.flatMap((o, i) => (o.input.op === "get" && o.output !== undefined ? [i] : []));
        if (reads.length === 0) return;
        const victim = reads[which % reads.length]!;
        const corrupted = history.map((o, i) => (i === victim ? { ...o, output: read("never-written") } : o));
        expect(checkOperations(kvModel, corrupted).result).toBe("illegal");
      }),
      { numRuns: 300, seed: 77 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Scale

/**
 * A correct concurrent history: `clients` clients issue operations back to back; each takes effect at
 * a random instant inside its interval and outputs come from applying them in that order. About 1 in
 * 200 times a client loses the response (outcome unknown, effect applied or not) and carries on under
 * a new id.
 */
function simulatedRegisterHistory(seed: number, count: number, keyCount: number, clients: number): KvOp[] {
  const rng = new SeededRng(seed);
  const planned: { op: Omit<KvOp, "output">; pointTicks: number; applied: boolean; known: boolean }[] = [];
  const clock = new Array<number>(clients).fill(0);
  const ids = Array.from({ length: clients }, (_, i) => i);
  let nextId = clients;
  const lastSeen = new Map<string, string | null>();
  for (let i = 0; i < count; i++) {
    const c = rng.int(clients);
    const key = `k${rng.int(keyCount)}`;
    const call = clock[c]! + rng.int(5);
    const roll = rng.int(100);
    const input: KvInput = roll < 40 ? get(key) : roll < 75 ? put(key, `v${i}`) : roll < 90 ? cas(key, lastSeen.get(`${c}/${key}`) ?? null, `v${i}`) : del(key);
    const known = rng.int(200) !== 0;
    const ret = call + 1 + rng.int(20);
    planned.push({ op: { clientId: ids[c]!, input, call, return: known ? ret : Infinity }, pointTicks: call + rng.int(ret - call + 1), applied: known || rng.chance(1, 2), known });
    clock[c] = known ? ret + 1 : ret + 50;
    if (!known) ids[c] = nextId++;
  }
  const order = planned.map((_, i) => i).sort((a, b) => planned[a]!.pointTicks - planned[b]!.pointTicks || a - b);
  const outputs = new Array<KvOutput | undefined>(planned.length);
  const store = new Map<string, string>();
  for (const i of order) {
    const p = planned[i]!;
    if (!p.applied) continue;
    const out = referenceApply(store, p.op.input);
    if (p.known) outputs[i] = out;
    if (out.op === "get") lastSeen.set(`${p.op.clientId}/${p.op.input.key}`, out.value);
  }
  return planned.map((p, i) => ({ ...p.op, output: outputs[i] }));
}

describe("linearizability - scale", () => {
  it("checks 5,000 operations over 10 keys from 40 concurrent clients quickly", () => {
    const history = simulatedRegisterHistory(42, 5000, 10, 40);
    const indeterminate = history.filter((o) => o.return === Infinity).length;
    expect(indeterminate).toBeGreaterThan(5);
    const t0 = process.hrtime.bigint();
    const r = checkOperations(kvModel, history);
    const elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
    console.info(`linearizability scale: ${history.length} operations (${indeterminate} indeterminate), ${r.partial.length} partitions, ${r.steps} steps, ${elapsedMs.toFixed(0)} ms`);
    expect(r.result, describeCheckResult(r)).toBe("ok");
    expect(r.partial).toHaveLength(10);
    expect(elapsedMs).toBeLessThan(3000);
  });

  it("finds a single corrupted read among 5,000 operations", () => {
    const history = simulatedRegisterHistory(43, 5000, 10, 40);
    const victim = history.findIndex((o, i) => i > 4000 && o.input.op === "get" && o.output !== undefined);
    const corrupted = history.map((o, i) => (i === victim ? { ...o, output: read("never-written") } : o));
    const r = checkOperations(kvModel, corrupted, { maxSteps: 2_000_000 });
    expect(r.result).toBe("illegal");
    expect(r.partial.filter((p) => p.result === "illegal")).toHaveLength(1);
    expect(describeCheckResult(r)).toContain('-> "never-written"  illegal in state');
  });
});
