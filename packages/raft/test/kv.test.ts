import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { HistoryRecorder } from "../src/check/history.js";
import type { KvInput, KvOutput } from "../src/check/kv-model.js";
import { kvModel } from "../src/check/kv-model.js";
import { checkOperations, describeCheckResult } from "../src/check/linearizability.js";
import type { KvApplied, KvCommand } from "../src/kv.js";
import { decodeKvCommand, encodeKvCommand, KV_MAX_KEY_BYTES, KvCommandError, KvSnapshotError, KvStateError, KvStateMachine } from "../src/kv.js";
import { SeededRng } from "../src/rng.js";
import type { Entry } from "../src/types.js";
import { EntryType } from "../src/types.js";

const entry = (index: number, data: Uint8Array, type: EntryType = EntryType.Normal): Entry => ({ term: 1, index, type, data });
const command = (clientId: string, requestId: number, input: KvInput): Uint8Array => encodeKvCommand({ clientId, requestId, input });

/** Feeds `datas` as consecutive entries after the machine's applied index and returns the results. */
function feed(sm: KvStateMachine, datas: readonly Uint8Array[]): (KvApplied | null)[] {
  return datas.map((d) => sm.apply(entry(sm.appliedIndex + 1, d)));
}

function output(applied: KvApplied | null): KvOutput {
  if (applied === null || !applied.result.ok) throw new Error(`expected a successful result, got ${JSON.stringify(applied)}`);
  return applied.result.output;
}

describe("kv - command encoding", () => {
  it("round-trips every operation, including unicode and a cas on an absent key", () => {
    const commands: KvCommand[] = [
      { clientId: "c1", requestId: 1, input: { op: "get", key: "k" } },
      { clientId: "c1", requestId: 2, input: { op: "put", key: "ключ", value: "värde ✓" } },
      { clientId: "c2", requestId: 2 ** 40 + 3, input: { op: "cas", key: "k", expected: null, value: "" } },
      { clientId: "c2", requestId: 9, input: { op: "cas", key: "k", expected: "", value: "x" } },
      { clientId: "c3", requestId: 1, input: { op: "delete", key: "" } },
    ];
    for (const c of commands) expect(decodeKvCommand(encodeKvCommand(c))).toEqual(c);
  });

  it("refuses to encode oversized fields or bad request ids", () => {
    expect(() => encodeKvCommand({ clientId: "c", requestId: 1, input: { op: "get", key: "k".repeat(KV_MAX_KEY_BYTES + 1) } })).toThrow(KvCommandError);
    expect(() => encodeKvCommand({ clientId: "c", requestId: 0, input: { op: "get", key: "k" } })).toThrow(/request id/);
    expect(() => encodeKvCommand({ clientId: "", requestId: 1, input: { op: "get", key: "k" } })).toThrow(/client id/);
  });
});

describe("kv - applying commands", () => {
  it("executes get, put, cas and delete", () => {
    const sm = new KvStateMachine();
    const results = feed(sm, [
      command("a", 1, { op: "get", key: "x" }),
      command("a", 2, { op: "put", key: "x", value: "1" }),
      command("a", 3, { op: "cas", key: "x", expected: "0", value: "2" }),
      command("a", 4, { op: "cas", key: "x", expected: "1", value: "2" }),
      command("a", 5, { op: "get", key: "x" }),
      command("a", 6, { op: "delete", key: "x" }),
      command("a", 7, { op: "delete", key: "x" }),
      command("a", 8, { op: "cas", key: "x", expected: null, value: "3" }),
    ]);
    expect(results.map(output)).toEqual([
      { op: "get", value: null },
      { op: "put" },
      { op: "cas", ok: false },
      { op: "cas", ok: true },
      { op: "get", value: "2" },
      { op: "delete", existed: true },
      { op: "delete", existed: false },
      { op: "cas", ok: true },
    ]);
    expect(sm.read("x")).toBe("3");
    expect(sm.appliedIndex).toBe(8);
    expect(results[3]).toMatchObject({ index: 4, clientId: "a", requestId: 4, duplicate: false });
  });

  it("advances over no-op and membership entries without a result", () => {
    const sm = new KvStateMachine();
    expect(sm.apply(entry(1, new Uint8Array()))).toBeNull();
    expect(sm.apply(entry(2, Uint8Array.of(1, 2, 3), EntryType.ConfChange))).toBeNull();
    expect(sm.appliedIndex).toBe(2);
  });

  it("refuses entries out of order", () => {
    const sm = new KvStateMachine();
    feed(sm, [command("a", 1, { op: "put", key: "x", value: "1" })]);
    expect(() => sm.apply(entry(1, command("a", 2, { op: "put", key: "x", value: "2" })))).toThrow(KvStateError);
    expect(() => sm.apply(entry(3, command("a", 2, { op: "put", key: "x", value: "2" })))).toThrow(KvStateError);
    expect(sm.read("x")).toBe("1");
  });
});

describe("kv - exactly-once writes", () => {
  it("answers a retried request from the table without applying it again", () => {
    const sm = new KvStateMachine();
    const retried = command("a", 1, { op: "cas", key: "x", expected: null, value: "a1" });
    const [first, , again] = feed(sm, [retried, command("b", 1, { op: "put", key: "x", value: "b1" }), retried]);
    expect(output(first)).toEqual({ op: "cas", ok: true });
    // Applied again, the cas would now fail and nothing would change; the retry must report the original success.
    expect(again).toMatchObject({ duplicate: true, clientId: "a", requestId: 1, result: { ok: true, output: { op: "cas", ok: true } } });
    expect(sm.read("x")).toBe("b1");
    const putAgain = command("b", 1, { op: "put", key: "x", value: "b1" });
    feed(sm, [command("a", 2, { op: "put", key: "x", value: "a2" })]);
    expect(feed(sm, [putAgain])[0]).toMatchObject({ duplicate: true });
    expect(sm.read("x")).toBe("a2"); // b's retried put did not overwrite a's later write
  });

  it("rejects a request older than the client's last one", () => {
    const sm = new KvStateMachine();
    const [, , stale] = feed(sm, [command("a", 1, { op: "put", key: "x", value: "1" }), command("a", 2, { op: "put", key: "x", value: "2" }), command("a", 1, { op: "put", key: "x", value: "1" })]);
    expect(stale).toMatchObject({ result: { ok: false, error: "stale-request" }, duplicate: false });
    expect(sm.read("x")).toBe("2");
  });

  it("keeps at most maxClients clients, evicting the least recently applied", () => {
    const sm = new KvStateMachine({ maxClients: 2 });
    const aPut = command("a", 1, { op: "put", key: "n", value: "a" });
    feed(sm, [aPut, command("b", 1, { op: "get", key: "n" }), command("a", 1, { op: "put", key: "n", value: "a" })]); // a's retry refreshes a
    feed(sm, [command("c", 1, { op: "get", key: "n" })]); // evicts b, the least recently applied
    expect(sm.clientCount).toBe(2);
    expect(feed(sm, [aPut])[0]!.duplicate).toBe(true);
    // b was evicted: its retry is applied as new (the documented cost of a bounded table).
    expect(feed(sm, [command("b", 1, { op: "get", key: "n" })])[0]!.duplicate).toBe(false);
    expect(sm.clientCount).toBe(2);
  });
});

describe("kv - malformed commands", () => {
  const good = command("client", 7, { op: "cas", key: "key", expected: "old", value: "new" });
  const cases: [string, Uint8Array, RegExp][] = [
    ["empty-looking garbage", Uint8Array.of(0xff), /format version/],
    ["an unknown op", Uint8Array.of(1, 9), /op code 9/],
    ["a truncated command", good.subarray(0, good.length - 2), /truncated/],
    ["trailing bytes", Uint8Array.of(...good, 0), /unexpected bytes/],
    ["invalid UTF-8 in the key", Uint8Array.of(1, 1, 1, 0, 0x63, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xc3), /UTF-8/],
    ["request id zero", Uint8Array.of(1, 1, 1, 0, 0x63, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), /request id 0/],
    ["a bad cas flag", (() => {
      const b = command("c", 1, { op: "cas", key: "k", expected: null, value: "v" });
      const flagAt = 2 + 2 + 1 + 8 + 2 + 1;
      b[flagAt] = 7;
      return b;
    })(), /must be 0 or 1/],
  ];

  for (const [what, bytes, message] of cases) {
    it(`yields an error result for ${what}`, () => {
      const sm = new KvStateMachine();
      feed(sm, [command("z", 1, { op: "put", key: "key", value: "old" })]);
      const before = sm.snapshot();
      const [r] = feed(sm, [bytes]);
      expect(r).toMatchObject({ index: 2, clientId: null, requestId: null, duplicate: false, result: { ok: false, error: "malformed" } });
      expect(r!.result.ok ? "" : r!.result.message).toMatch(message);
      expect(sm.appliedIndex).toBe(2);
      // Only the applied index moved.
      expect(sm.read("key")).toBe("old");
      expect(sm.snapshot().subarray(13, before.length - 4)).toEqual(before.subarray(13, before.length - 4));
    });
  }

  it("never throws on arbitrary bytes, and two replicas agree on every result", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 20 }), (datas) => {
        const one = new KvStateMachine();
        const two = new KvStateMachine();
        const shaped = datas.map((d) => (d.length > 0 ? Uint8Array.of(1, ...d) : d)); // mostly past the version byte
        expect(feed(one, shaped)).toEqual(feed(two, shaped));
        expect(one.snapshot()).toEqual(two.snapshot());
      }),
      { numRuns: 120, seed: 5 },
    );
  });
});

/** A random command stream from a few clients, with retries, stale requests and garbage. */
function randomEntries(seed: number, count: number): Uint8Array[] {
  const rng = new SeededRng(seed);
  const next = new Map<string, number>();
  const sent: Uint8Array[] = [];
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const roll = rng.int(100);
    if (roll < 10 && sent.length > 0) {
      out.push(sent[sent.length - 1 - rng.int(Math.min(sent.length, 5))]!); // a retry (or a stale request)
      continue;
    }
    if (roll < 13) {
      out.push(Uint8Array.from({ length: rng.int(12) }, () => rng.int(256)));
      continue;
    }
    const client = `c${rng.int(6)}`;
    const requestId = (next.get(client) ?? 0) + 1;
    next.set(client, requestId);
    const key = `k${rng.int(4)}`;
    const kind = rng.int(4);
    const input: KvInput =
      kind === 0 ? { op: "get", key } : kind === 1 ? { op: "put", key, value: `v${i}` } : kind === 2 ? { op: "cas", key, expected: rng.chance(1, 2) ? null : `v${rng.int(i + 1)}`, value: `v${i}` } : { op: "delete", key };
    const bytes = command(client, requestId, input);
    sent.push(bytes);
    out.push(bytes);
  }
  return out;
}

describe("kv - snapshots and replicas", () => {
  it("gives identical results and snapshots on two replicas fed the same entries", () => {
    const entries = randomEntries(11, 400);
    const one = new KvStateMachine({ maxClients: 4 });
    const two = new KvStateMachine({ maxClients: 4 });
    const r1 = feed(one, entries);
    const r2 = feed(two, entries);
    expect(r1).toEqual(r2);
    expect(one.snapshot()).toEqual(two.snapshot());
    // The stream exercised every path.
    expect(r1.some((r) => r?.duplicate)).toBe(true);
    expect(r1.some((r) => r !== null && !r.result.ok && r.result.error === "stale-request")).toBe(true);
    expect(r1.some((r) => r !== null && !r.result.ok && r.result.error === "malformed")).toBe(true);
  });

  it("restores a snapshot taken mid-stream and continues exactly like the original", () => {
    const entries = randomEntries(12, 300);
    const original = new KvStateMachine({ maxClients: 4 });
    feed(original, entries.slice(0, 150));
    const bytes = original.snapshot();
    const copy = new KvStateMachine({ maxClients: 4 });
    copy.restore(bytes);
    expect(copy.appliedIndex).toBe(150);
    expect(copy.snapshot()).toEqual(bytes);
    expect(feed(copy, entries.slice(150))).toEqual(feed(original, entries.slice(150)));
    expect(copy.snapshot()).toEqual(original.snapshot());
  });

  it("keeps deduplicating across a snapshot", () => {
    const sm = new KvStateMachine();
    const put = command("a", 1, { op: "put", key: "x", value: "1" });
    feed(sm, [put, command("b", 1, { op: "put", key: "x", value: "2" })]);
    const copy = new KvStateMachine();
    copy.restore(sm.snapshot());
    expect(feed(copy, [put])[0]!.duplicate).toBe(true);
    expect(copy.read("x")).toBe("2");
  });

  it("refuses damaged snapshots and keeps its state", () => {
    const sm = new KvStateMachine();
    feed(sm, [command("a", 1, { op: "put", key: "x", value: "1" })]);
    const good = sm.snapshot();
    const target = new KvStateMachine();
    feed(target, [command("t", 1, { op: "put", key: "mine", value: "kept" })]);
    const flipped = good.slice();
    flipped[10]! ^= 0x40;
    const badMagic = good.slice();
    badMagic[0] = 0x58;
    const newer = good.slice();
    newer[4] = 2;
    expect(() => target.restore(flipped)).toThrow(/checksum mismatch/);
    expect(() => target.restore(badMagic)).toThrow(/bad magic/);
    expect(() => target.restore(newer)).toThrow(/unsupported snapshot version 2/);
    expect(() => target.restore(good.subarray(0, 6))).toThrow(KvSnapshotError);
    expect(() => target.restore(good.subarray(0, good.length - 1))).toThrow(KvSnapshotError);
    expect(target.read("mine")).toBe("kept");
    expect(target.read("x")).toBeNull();
  });
});

describe("kv - linearizable through the checker", () => {
  it("serves clients that retry lost responses with the same request id, and the history checks ok", () => {
    const rng = new SeededRng(2024);
    const sm = new KvStateMachine();
    let clock = 0;
    const history = new HistoryRecorder<KvInput, KvOutput>({ now: () => clock });
    type Client = { name: string; requestId: number; inFlight: { handle: { id: number }; bytes: Uint8Array; tries: number } | null };
    const clients: Client[] = Array.from({ length: 5 }, (_, i) => ({ name: `c${i}`, requestId: 0, inFlight: null }));
    // Proposals wait in a queue and are committed in a random order, one at a time.
    const queue: { client: Client; bytes: Uint8Array }[] = [];
    let value = 0;
    let duplicates = 0;
    for (let tick = 0; tick < 3000; tick++) {
      clock = tick;
      const c = clients[rng.int(clients.length)]!;
      if (c.inFlight === null) {
        const key = `k${rng.int(2)}`;
        const kind = rng.int(4);
        const input: KvInput = kind === 0 ? { op: "get", key } : kind === 1 ? { op: "put", key, value: `v${value++}` } : kind === 2 ? { op: "cas", key, expected: sm.read(key), value: `v${value++}` } : { op: "delete", key };
        const bytes = command(c.name, ++c.requestId, input);
        c.inFlight = { handle: history.invoke(c.name, input), bytes, tries: 1 };
        queue.push({ client: c, bytes });
      } else if (rng.chance(1, 10)) {
        // Timed out waiting: retry the same request, or give up (outcome unknown).
        if (c.inFlight.tries < 3) {
          c.inFlight.tries++;
          queue.push({ client: c, bytes: c.inFlight.bytes });
        } else {
          history.unknown(c.inFlight.handle);
          c.inFlight = null;
        }
      }
      if (queue.length > 0 && rng.chance(1, 2)) {
        const [{ client, bytes }] = queue.splice(rng.int(queue.length), 1);
        const applied = sm.apply(entry(sm.appliedIndex + 1, bytes))!;
        if (applied.duplicate) duplicates++;
        // The response reaches the client unless it is lost, or the client already moved on.
        if (applied.result.ok && client.inFlight?.bytes === bytes && rng.chance(3, 4)) {
          history.ok(client.inFlight.handle, applied.result.output);
          client.inFlight = null;
        }
      }
    }
    const ops = history.operations();
    expect(ops.length).toBeGreaterThan(500);
    expect(ops.some((o) => o.return === Infinity)).toBe(true);
    const r = checkOperations(kvModel, ops);
    expect(r.result, describeCheckResult(r)).toBe("ok");
    expect(duplicates).toBeGreaterThan(20);
  });
});
