import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  CodecError, crc32, crc32Portable, decodeConfState, decodeEntries, decodeEntry, decodeHardState, decodeMessage,
  decodeSnapshot, encodeConfState, encodeEntries, encodeEntry, encodeHardState, encodeMessage, encodeSnapshot,
  MESSAGE_FORMAT_VERSION,
} from "../src/codec.js";
import type { ConfState, Entry, HardState, Message, Snapshot } from "../src/types.js";

const safeInt = fc.oneof(
  fc.integer({ min: 0, max: 1000 }),
  fc.maxSafeNat(),
  fc.constantFrom(0, 1, 0xffff_ffff, 0x1_0000_0000, Number.MAX_SAFE_INTEGER),
);
const bytes = fc.uint8Array({ maxLength: 40 });
const nodeId = fc.string({ unit: "grapheme", maxLength: 8 });
const entry: fc.Arbitrary<Entry> = fc.record({ term: safeInt, index: safeInt, type: fc.constantFrom(0, 1), data: bytes });
const hardState: fc.Arbitrary<HardState> = fc.record({ term: safeInt, vote: nodeId, commit: safeInt });
const confState: fc.Arbitrary<ConfState> = fc.record({ voters: fc.array(nodeId, { maxLength: 5 }), learners: fc.array(nodeId, { maxLength: 3 }) });
const snapshot: fc.Arbitrary<Snapshot> = fc.record({ metadata: fc.record({ index: safeInt, term: safeInt, confState }), data: bytes });
const message: fc.Arbitrary<Message> = fc.record({
  type: fc.integer({ min: 0, max: 18 }),
  to: nodeId,
  from: nodeId,
  term: safeInt,
  logTerm: safeInt,
  index: safeInt,
  entries: fc.array(entry, { maxLength: 4 }),
  commit: safeInt,
  snapshot: fc.option(snapshot, { nil: null }),
  reject: fc.boolean(),
  rejectHint: safeInt,
  context: bytes,
});

interface Codec<T> {
  name: string;
  arb: fc.Arbitrary<T>;
  encode(v: T): Uint8Array;
  decode(b: Uint8Array): T;
}
const codecs: Codec<never>[] = [
  { name: "Message", arb: message, encode: encodeMessage, decode: decodeMessage },
  { name: "Entry", arb: entry, encode: encodeEntry, decode: decodeEntry },
  { name: "Entries", arb: fc.array(entry, { maxLength: 5 }), encode: encodeEntries, decode: decodeEntries },
  { name: "HardState", arb: hardState, encode: encodeHardState, decode: decodeHardState },
  { name: "ConfState", arb: confState, encode: encodeConfState, decode: decodeConfState },
  { name: "Snapshot", arb: snapshot, encode: encodeSnapshot, decode: decodeSnapshot },
] as unknown as Codec<never>[];

const heartbeat: Message = {
  type: 11, to: "n2", from: "n1", term: 7, logTerm: 0, index: 0, entries: [], commit: 41,
  snapshot: null, reject: false, rejectHint: 0, context: new Uint8Array(),
};

describe("codec", () => {
  for (const c of codecs) {
    it(`codec - ${c.name} round-trips arbitrary values`, () => {
      fc.assert(fc.property(c.arb, (v) => {
        expect(c.decode(c.encode(v))).toEqual(v);
      }), { numRuns: 300 });
    });

    it(`codec - every strict prefix of a ${c.name} encoding is rejected with CodecError`, () => {
      fc.assert(fc.property(c.arb, (v) => {
        const enc = c.encode(v);
        for (let n = 0; n < enc.length; n++) {
          expect(() => c.decode(enc.subarray(0, n))).toThrow(CodecError);
        }
      }), { numRuns: 60 });
    });

    it(`codec - ${c.name} with trailing bytes is rejected`, () => {
      fc.assert(fc.property(c.arb, fc.uint8Array({ minLength: 1, maxLength: 4 }), (v, extra) => {
        const enc = c.encode(v);
        const longer = new Uint8Array(enc.length + extra.length);
        longer.set(enc);
        longer.set(extra, enc.length);
        expect(() => c.decode(longer)).toThrow(/trailing bytes/);
      }), { numRuns: 50 });
    });
  }

  it("codec - random bytes decode to a message or throw CodecError, never anything else", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 120 }), (input) => {
      const withVersion = input.length > 0 ? Uint8Array.of(MESSAGE_FORMAT_VERSION, ...input.subarray(1)) : input;
      for (const b of [input, withVersion]) {
        try {
          const m = decodeMessage(b);
          expect(encodeMessage(m)).toEqual(b); // a decodable input is a canonical encoding
        } catch (err) {
          expect(err).toBeInstanceOf(CodecError);
        }
      }
    }), { numRuns: 500 });
  });

  it("codec - a message starts with the format version byte and the type", () => {
    const enc = encodeMessage(heartbeat);
    expect(enc[0]).toBe(MESSAGE_FORMAT_VERSION);
    expect(enc[1]).toBe(11);
  });

  it("codec - errors name what was wrong", () => {
    const enc = encodeMessage(heartbeat);
    const badVersion = enc.slice();
    badVersion[0] = 9;
    expect(() => decodeMessage(badVersion)).toThrow(/unsupported format version 9/);
    const badType = enc.slice();
    badType[1] = 19;
    expect(() => decodeMessage(badType)).toThrow(/unknown message type 19/);
    expect(() => decodeMessage(enc.subarray(0, 10))).toThrow(/truncated at (from|term)/);
    // "to" is at offset 2: claim a length far beyond the buffer.
    const badLength = enc.slice();
    new DataView(badLength.buffer).setUint32(2, 1_000_000, true);
    expect(() => decodeMessage(badLength)).toThrow(/to length 1000000 at offset 2 is beyond the buffer/);
  });

  it("codec - an entry count larger than the buffer could hold is rejected before allocating", () => {
    const enc = encodeEntries([]);
    new DataView(enc.buffer, enc.byteOffset).setUint32(0, 0xffff_ffff, true);
    expect(() => decodeEntries(enc)).toThrow(/entries.count 4294967295 at offset 0 is beyond the buffer/);
  });

  it("codec - terms and indexes at and above 2^53 are handled exactly", () => {
    const e: Entry = { term: Number.MAX_SAFE_INTEGER, index: 2 ** 32 + 5, type: 0, data: new Uint8Array() };
    expect(decodeEntry(encodeEntry(e))).toEqual(e);
    expect(() => encodeEntry({ ...e, term: 2 ** 53 })).toThrow(/term: 9007199254740992 is not a non-negative safe integer/);
    expect(() => encodeEntry({ ...e, index: -1 })).toThrow(CodecError);
    expect(() => encodeEntry({ ...e, index: 1.5 })).toThrow(CodecError);
    const enc = encodeEntry(e);
    enc[7] = 0x00;
    enc[6] = 0x20; // high word of term = 0x00200000 → 2^53
    expect(() => decodeEntry(enc)).toThrow(/term at offset 0 exceeds 2\^53 - 1/);
  });

  it("codec - values that cannot round-trip are refused at encode time", () => {
    expect(() => encodeMessage({ ...heartbeat, type: 42 as never })).toThrow(/unknown message type 42/);
    expect(() => encodeEntry({ term: 1, index: 1, type: 7 as never, data: new Uint8Array() })).toThrow(/unknown entry type 7/);
    expect(() => encodeHardState({ term: 1, vote: "n\uD800", commit: 0 })).toThrow(/lone surrogate/);
  });

  it("codec - invalid UTF-8 in a node id is rejected", () => {
    const enc = encodeHardState({ term: 1, vote: "ab", commit: 2 });
    enc[12] = 0xff; // first byte of "ab"
    expect(() => decodeHardState(enc)).toThrow(/vote at offset 8 is not valid UTF-8/);
  });

  it("codec - decoded byte fields do not alias the input", () => {
    const enc = encodeEntry({ term: 1, index: 2, type: 0, data: Uint8Array.of(1, 2, 3) });
    const e = decodeEntry(enc);
    enc.fill(0);
    expect(Array.from(e.data)).toEqual([1, 2, 3]);
  });

  it("codec - crc32 matches the portable table implementation and known vectors", () => {
    expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
    expect(crc32Portable(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat({ max: 300 }), (b, cut) => {
      const k = Math.min(cut, b.length);
      expect(crc32(b)).toBe(crc32Portable(b));
      expect(crc32(b.subarray(k), crc32(b.subarray(0, k)))).toBe(crc32(b));
    }), { numRuns: 200 });
  });
});
