import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CodecError, decodeDelta, encodeDelta, isZeroPage, validateDelta } from "../src/codec/index.js";

const PAGE = 4096;
const UNLIMITED = 4 * PAGE;

/** A deterministic pseudo-random page (xorshift32). */
function randomPage(seed: number, length = PAGE): Uint8Array {
  const page = new Uint8Array(length);
  let x = (Math.imul(seed, 0x9e3779b1) ^ 0x2545f491) | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    page[i] = x & 0xff;
  }
  return page;
}

/** A modification: set `bytes` at `at` (clipped to the page). */
const edit = fc.record({ at: fc.nat(PAGE - 1), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) });
const sparse = fc.array(edit, { maxLength: 8 });
const dense = fc.array(edit, { minLength: 50, maxLength: 400 });

function modified(previous: Uint8Array, edits: { at: number; bytes: Uint8Array }[]): Uint8Array {
  const current = previous.slice();
  for (const e of edits) current.set(e.bytes.subarray(0, previous.length - e.at), e.at);
  return current;
}

/** Parses a delta into records (a naive reader for checking the encoder's output). */
function records(delta: Uint8Array): { unchanged: number; start: number; changed: number }[] {
  const out: { unchanged: number; start: number; changed: number }[] = [];
  let p = 0;
  let pos = 0;
  const varint = (): number => {
    let v = 0;
    let scale = 1;
    while (true) {
      const b = delta[p++]!;
      v += (b & 0x7f) * scale;
      if (b < 0x80) return v;
      scale *= 128;
    }
  };
  while (p < delta.length) {
    const unchanged = varint();
    const changed = varint();
    pos += unchanged;
    out.push({ unchanged, start: pos, changed });
    pos += changed;
    p += changed;
  }
  return out;
}

/** Byte equality (vitest's deep equality is slow on 4 KiB arrays); reports the first difference. */
function expectSame(actual: Uint8Array, expected: Uint8Array): void {
  if (actual.length === expected.length && Buffer.compare(actual, expected) === 0) return;
  let i = 0;
  while (i < actual.length && actual[i] === expected[i]) i++;
  expect({ length: actual.length, firstDifference: i }).toEqual({ length: expected.length, firstDifference: -1 });
}

function roundTrips(previous: Uint8Array, current: Uint8Array): Uint8Array {
  const delta = encodeDelta(previous, current, UNLIMITED)!;
  expect(delta).toBeDefined();
  expectSame(decodeDelta(previous, delta), current);
  return delta;
}

function expectCodecErrorOrPage(fn: () => Uint8Array, length: number): void {
  try {
    expect(fn().length).toBe(length);
  } catch (e) {
    expect(e).toBeInstanceOf(CodecError);
  }
}

describe("delta - round trip", () => {
  it("decodes to the current page for sparse modifications", () => {
    fc.assert(
      fc.property(fc.integer(), sparse, (seed, edits) => {
        const previous = randomPage(seed);
        roundTrips(previous, modified(previous, edits));
      }),
      { numRuns: 300 },
    );
  });

  it("decodes to the current page for dense modifications", () => {
    fc.assert(
      fc.property(fc.integer(), dense, (seed, edits) => {
        const previous = randomPage(seed);
        roundTrips(previous, modified(previous, edits));
      }),
      { numRuns: 200 },
    );
  });

  it("decodes to the current page for unaligned and odd-length pages (byte path)", () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 0, max: 300 }), fc.array(fc.record({ at: fc.nat(299), value: fc.nat(255) }), { maxLength: 40 }), (seed, length, edits) => {
        const a = new Uint8Array(length + 1);
        a.set(randomPage(seed, length), 1);
        const previous = a.subarray(1);
        const b = new Uint8Array(length + 3);
        b.set(previous, 3);
        const current = b.subarray(3);
        for (const e of edits) if (e.at < length) current[e.at] = e.value;
        roundTrips(previous, current);
      }),
      { numRuns: 300 },
    );
  });

  it("encodes identical pages to the empty delta", () => {
    const page = randomPage(7);
    expect(encodeDelta(page, page.slice(), UNLIMITED)!.length).toBe(0);
    expectSame(decodeDelta(page, new Uint8Array(0)), page);
  });

  it("round-trips pages that differ in every byte, in one record of the whole page", () => {
    const previous = randomPage(1);
    const current = previous.map((b) => b ^ 0xff);
    const delta = roundTrips(previous, current);
    expect(records(delta)).toEqual([{ unchanged: 0, start: 0, changed: PAGE }]);
    expect(delta.length).toBe(PAGE + 3);
  });

  it("round-trips zero and all-ones pages in both directions", () => {
    const zero = new Uint8Array(PAGE);
    const ones = new Uint8Array(PAGE).fill(0xff);
    roundTrips(zero, ones);
    roundTrips(ones, zero);
    expect(isZeroPage(decodeDelta(ones, encodeDelta(ones, zero, UNLIMITED)!))).toBe(true);
  });
});

describe("delta - size", () => {
  it("deltas a page with one changed 32-bit word to at most 7 bytes, wherever the word is", () => {
    const previous = randomPage(3);
    for (let word = 0; word < PAGE / 4; word++) {
      const current = previous.slice();
      const v = new DataView(current.buffer);
      v.setUint32(word * 4, ~v.getUint32(word * 4, true) >>> 0, true);
      const delta = encodeDelta(previous, current, UNLIMITED)!;
      expect(delta.length).toBeLessThanOrEqual(7);
      expectSame(decodeDelta(previous, delta), current);
    }
  });

  it("deltas a page with one changed byte to at most 4 bytes (runs are byte-exact at their edges)", () => {
    const previous = randomPage(4);
    for (let at = 0; at < PAGE; at += 13) {
      const current = previous.slice();
      current[at] = current[at]! ^ 1;
      expect(encodeDelta(previous, current, UNLIMITED)!.length).toBeLessThanOrEqual(4);
    }
  });

  it("starts and ends every changed run on a changed byte, and separates runs by unchanged bytes", () => {
    fc.assert(
      fc.property(fc.integer(), fc.oneof(sparse, dense), (seed, edits) => {
        const previous = randomPage(seed);
        const current = modified(previous, edits);
        const delta = encodeDelta(previous, current, UNLIMITED)!;
        records(delta).forEach((r, i) => {
          expect(r.changed).toBeGreaterThan(0);
          if (i > 0) expect(r.unchanged).toBeGreaterThan(0);
          expect(current[r.start]).not.toBe(previous[r.start]);
          expect(current[r.start + r.changed - 1]).not.toBe(previous[r.start + r.changed - 1]);
        });
      }),
      { numRuns: 200 },
    );
  });
});

describe("delta - limit", () => {
  it("returns undefined exactly when the delta would exceed the limit, and never more than the limit", () => {
    fc.assert(
      fc.property(fc.integer(), fc.oneof(sparse, dense), fc.nat(PAGE + 8), (seed, edits, limit) => {
        const previous = randomPage(seed);
        const current = modified(previous, edits);
        const full = encodeDelta(previous, current, UNLIMITED)!;
        const limited = encodeDelta(previous, current, limit);
        if (full.length > limit) {
          expect(limited).toBeUndefined();
        } else {
          expect(limited).toEqual(full);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("writes into `out` without passing the limit and returns a view of it", () => {
    const previous = randomPage(5);
    const current = modified(previous, [{ at: 100, bytes: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) }]);
    const out = new Uint8Array(64).fill(0xee);
    const delta = encodeDelta(previous, current, 32, out)!;
    expect(delta.buffer).toBe(out.buffer);
    expect(out.subarray(32).every((b) => b === 0xee)).toBe(true);
    expectSame(decodeDelta(previous, delta), current);
    expect(() => encodeDelta(previous, current, 65, out)).toThrow(CodecError);
  });

  it("refuses a bad limit and pages of different lengths", () => {
    const page = randomPage(6);
    expect(() => encodeDelta(page, page, -1)).toThrow(CodecError);
    expect(() => encodeDelta(page, page, 1.5)).toThrow(CodecError);
    expect(() => encodeDelta(page, page.subarray(4), 100)).toThrow(/different lengths/);
  });
});

describe("delta - decoding untrusted input", () => {
  const previous = randomPage(8);
  const current = modified(previous, [
    { at: 10, bytes: Uint8Array.of(1, 2, 3) },
    { at: 2000, bytes: new Uint8Array(200).fill(9) },
    { at: 4090, bytes: Uint8Array.of(4, 5, 6, 7, 8, 9) },
  ]);
  const delta = encodeDelta(previous, current, UNLIMITED)!;

  it("names what is wrong in malformed deltas", () => {
    const cases: [number[], RegExp][] = [
      [[0x80], /truncated: unchanged run length/],
      [[0, 0x85], /truncated: changed run length/],
      [[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], /longer than 5 bytes/],
      [[0, 0], /empty changed run/],
      [[0x81, 0x20, 1, 0], /unchanged run of 4097 bytes/],
      [[0x80, 0x20, 1, 0], /changed run of 1 bytes at page offset 4096/],
      [[0, 4, 1, 2], /truncated: changed run of 4 bytes/],
      [[0xff, 0xff, 0xff, 0xff, 0x0f, 1, 0], /unchanged run/],
    ];
    for (const [bytes, message] of cases) expect(() => decodeDelta(previous, Uint8Array.from(bytes))).toThrow(message);
  });

  it("gives a CodecError or a page for every truncation", () => {
    for (let n = 0; n <= delta.length; n++) expectCodecErrorOrPage(() => decodeDelta(previous, delta.subarray(0, n)), PAGE);
    expect(() => decodeDelta(previous, delta.subarray(0, delta.length - 1))).toThrow(CodecError);
  });

  it("gives a CodecError or a page for random byte flips and random bytes", () => {
    fc.assert(
      fc.property(fc.array(fc.record({ at: fc.nat(delta.length - 1), xor: fc.integer({ min: 1, max: 255 }) }), { minLength: 1, maxLength: 4 }), (flips) => {
        const bad = delta.slice();
        for (const f of flips) bad[f.at] = bad[f.at]! ^ f.xor;
        expectCodecErrorOrPage(() => decodeDelta(previous, bad), PAGE);
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => expectCodecErrorOrPage(() => decodeDelta(previous, bytes), PAGE)),
      { numRuns: 1000 },
    );
  });

  it("leaves the target untouched when the delta is malformed", () => {
    const target = randomPage(9);
    const before = target.slice();
    const bad = delta.slice(0, delta.length - 1);
    expect(() => decodeDelta(previous, bad, target)).toThrow(CodecError);
    expectSame(target, before);
    expect(() => validateDelta(bad, PAGE)).toThrow(CodecError);
  });

  it("writes only inside the target page", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const memory = new Uint8Array(3 * 64).fill(0xaa);
        const page = memory.subarray(64, 128);
        try {
          decodeDelta(page, bytes, page);
        } catch (e) {
          expect(e).toBeInstanceOf(CodecError);
        }
        expect(memory.subarray(0, 64).every((b) => b === 0xaa)).toBe(true);
        expect(memory.subarray(128).every((b) => b === 0xaa)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it("decodes in place, into a target, or into a new page, leaving `previous` alone unless it is the target", () => {
    const target = new Uint8Array(PAGE);
    expect(decodeDelta(previous, delta, target)).toBe(target);
    expectSame(target, current);
    const copy = previous.slice();
    expectSame(decodeDelta(copy, delta, copy), current);
    expectSame(decodeDelta(previous, delta), current);
    expectSame(previous, randomPage(8));
    expect(() => decodeDelta(previous, delta, new Uint8Array(PAGE - 1))).toThrow(CodecError);
  });
});
