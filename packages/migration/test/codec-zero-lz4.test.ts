import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CodecError, compressIfWorthIt, isZeroPage, lz4Codec, type Codec } from "../src/codec/index.js";

const PAGE = 4096;
const GUESTS = join(import.meta.dirname, "..", "..", "..", "guests", "build");

/** Program-like bytes: a guest ELF if one is built, else repetitive assembly text. */
function programBytes(): Uint8Array {
  try {
    const elf = readdirSync(GUESTS).find((f) => f.endsWith(".elf"));
    if (elf !== undefined) return readFileSync(join(GUESTS, elf)).subarray(0, 16 * PAGE);
  } catch {
    // no guests built: fall through
  }
  return new TextEncoder().encode("addi a0, a0, 1\nlw t0, 0(sp)\nsw t0, 4(sp)\nret\n".repeat(1500)).subarray(0, 16 * PAGE);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

describe("zero - isZeroPage", () => {
  it("is true for zero pages of any length and alignment, including shared memory", () => {
    expect(isZeroPage(new Uint8Array(PAGE))).toBe(true);
    expect(isZeroPage(new Uint8Array(0))).toBe(true);
    expect(isZeroPage(new Uint8Array(PAGE + 8).subarray(3, 3 + PAGE))).toBe(true);
    expect(isZeroPage(new Uint8Array(new SharedArrayBuffer(2 * PAGE), PAGE, PAGE))).toBe(true);
    expect(isZeroPage(new Uint8Array(200_000))).toBe(true);
  });

  it("is false when any one byte is not zero", () => {
    const page = new Uint8Array(PAGE);
    for (let i = 0; i < PAGE; i++) {
      page[i] = 1 << (i & 7);
      expect(isZeroPage(page)).toBe(false);
      page[i] = 0;
    }
    const big = new Uint8Array(200_000);
    big[199_999] = 1;
    expect(isZeroPage(big)).toBe(false);
    big[199_999] = 0;
    big[65_536] = 1;
    expect(isZeroPage(big)).toBe(false);
  });

  it("looks only at the view, not at the rest of its buffer", () => {
    const memory = new Uint8Array(3 * PAGE).fill(0xff);
    memory.fill(0, PAGE, 2 * PAGE);
    expect(isZeroPage(memory.subarray(PAGE, 2 * PAGE))).toBe(true);
    expect(isZeroPage(memory.subarray(PAGE - 1, 2 * PAGE - 1))).toBe(false);
  });
});

describe("lz4 - codec", () => {
  it("round-trips program pages, random bytes and empty input", () => {
    const program = programBytes();
    const packed = lz4Codec.compress(program);
    expect(packed.length).toBeLessThan(program.length);
    expect(sameBytes(lz4Codec.decompress(packed, program.length), program)).toBe(true);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3 * PAGE }), (data) => {
        expect(sameBytes(lz4Codec.decompress(lz4Codec.compress(data), data.length), data)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it("compresses views of shared memory without copying them first", () => {
    const shared = new Uint8Array(new SharedArrayBuffer(4 * PAGE));
    shared.fill(7, PAGE, 2 * PAGE);
    const view = shared.subarray(PAGE, 2 * PAGE);
    expect(sameBytes(lz4Codec.decompress(lz4Codec.compress(view), PAGE), view)).toBe(true);
  });

  it("refuses a block of another size before decoding it", () => {
    const packed = lz4Codec.compress(new Uint8Array(PAGE).fill(1));
    expect(() => lz4Codec.decompress(packed, PAGE - 1)).toThrow(/declares 4096 bytes, expected 4095/);
    const huge = packed.slice();
    huge.set([0xff, 0xff, 0xff, 0x7f], 0);
    expect(() => lz4Codec.decompress(huge, PAGE)).toThrow(CodecError);
    expect(() => lz4Codec.decompress(packed, -1)).toThrow(CodecError);
    expect(() => lz4Codec.decompress(new Uint8Array(0), 0)).toThrow(/truncated/);
  });

  // LZ4 has no checksum: a flipped literal decodes to other bytes of the right length. The contract is
  // "CodecError or exactly `size` bytes"; the batch format's CRC catches the rest.
  it("gives a CodecError for every truncation, and a CodecError or exactly `size` bytes for byte flips", () => {
    const program = programBytes().subarray(0, 2 * PAGE);
    const packed = lz4Codec.compress(program);
    const check = (data: Uint8Array): void => {
      try {
        expect(lz4Codec.decompress(data, program.length).length).toBe(program.length);
      } catch (e) {
        expect(e).toBeInstanceOf(CodecError);
      }
    };
    for (let n = 0; n < packed.length; n++) expect(() => lz4Codec.decompress(packed.subarray(0, n), program.length)).toThrow(CodecError);
    fc.assert(
      fc.property(fc.array(fc.record({ at: fc.nat(packed.length - 1), xor: fc.integer({ min: 1, max: 255 }) }), { minLength: 1, maxLength: 3 }), (flips) => {
        const bad = packed.slice();
        for (const f of flips) bad[f.at] = bad[f.at]! ^ f.xor;
        check(bad);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (body) => {
        const bad = new Uint8Array(4 + body.length);
        new DataView(bad.buffer).setUint32(0, program.length, true);
        bad.set(body, 4);
        check(bad);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("lz4 - compressIfWorthIt", () => {
  it("keeps the compressed form of program pages and the original of random bytes", () => {
    const program = programBytes();
    const kept = compressIfWorthIt(lz4Codec, program);
    expect(kept.compressed).toBe(true);
    expect(kept.data.length).toBeLessThanOrEqual(0.875 * program.length);
    let x = 0x2545f491;
    const random = new Uint8Array(PAGE).map(() => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return x & 0xff;
    });
    const notKept = compressIfWorthIt(lz4Codec, random);
    expect(notKept).toEqual({ compressed: false, data: random });
    expect(notKept.data).toBe(random);
  });

  it("keeps the compressed form exactly when it is at most ratio × the original", () => {
    const fixed = (length: number): Codec => ({ name: "fixed", compress: () => new Uint8Array(length), decompress: () => new Uint8Array(0) });
    const data = new Uint8Array(1000);
    expect(compressIfWorthIt(fixed(875), data).compressed).toBe(true);
    expect(compressIfWorthIt(fixed(876), data).compressed).toBe(false);
    expect(compressIfWorthIt(fixed(500), data, 0.5).compressed).toBe(true);
    expect(compressIfWorthIt(fixed(501), data, 0.5).compressed).toBe(false);
    expect(compressIfWorthIt(fixed(0), new Uint8Array(0)).compressed).toBe(false);
    expect(() => compressIfWorthIt(fixed(1), data, 0)).toThrow(CodecError);
    expect(() => compressIfWorthIt(fixed(1), data, 1.5)).toThrow(CodecError);
  });
});
