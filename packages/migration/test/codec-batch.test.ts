import { crc32 } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  applyBatch,
  BATCH_HEADER_BYTES,
  BatchBuilder,
  CodecError,
  codecBench,
  decodeBatch,
  encodeBatch,
  encodeDelta,
  pageChecksum,
  SentPages,
  warmCodec,
  type BatchEntry,
} from "../src/codec/index.js";

const PAGE = 4096;

function randomPage(seed: number): Uint8Array {
  const page = new Uint8Array(PAGE);
  let x = (Math.imul(seed, 0x9e3779b1) ^ 0x2545f491) | 1;
  for (let i = 0; i < PAGE; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    page[i] = x & 0xff;
  }
  return page;
}

/** A compressible page: a few distinct 16-byte patterns repeated. */
function textPage(seed: number): Uint8Array {
  const line = new TextEncoder().encode(`addi a${seed % 8}, sp, ${seed}\nlw t0, 4(sp)\n`);
  const page = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i++) page[i] = line[i % line.length]!;
  return page;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/** Entries compared by value (payload bytes, not views). */
function plain(entries: readonly BatchEntry[]): unknown[] {
  return entries.map((e) => ({ gpn: e.gpn, kind: e.kind, payload: Buffer.from(e.payload).toString("hex"), crc: e.kind === "delta" ? e.pageCrc32 : undefined }));
}

const entryArb: fc.Arbitrary<BatchEntry> = fc.oneof(
  fc.record({ gpn: fc.nat(0xffff_ffff), kind: fc.constant("zero" as const), payload: fc.constant(new Uint8Array(0)) }),
  fc.tuple(fc.nat(0xffff_ffff), fc.integer(), fc.boolean()).map(([gpn, seed, text]) => ({ gpn, kind: "full" as const, payload: text ? textPage(seed) : randomPage(seed) })),
  fc.tuple(fc.nat(0xffff_ffff), fc.integer(), fc.array(fc.nat(PAGE - 1), { maxLength: 20 })).map(([gpn, seed, edits]) => {
    const previous = randomPage(seed);
    const current = previous.slice();
    for (const at of edits) current[at] = current[at]! ^ 0x5a;
    return { gpn, kind: "delta" as const, payload: encodeDelta(previous, current, PAGE)!, pageCrc32: pageChecksum(current) };
  }),
);

/** Recomputes a batch's checksum after the test changed its header or (uncompressed) body. */
function reseal(batch: Uint8Array): Uint8Array {
  new DataView(batch.buffer, batch.byteOffset).setUint32(16, crc32(batch.subarray(BATCH_HEADER_BYTES), crc32(batch.subarray(0, 16))), true);
  return batch;
}

describe("page-batch - round trip", () => {
  it("decodes to the entries encoded, for any mix of kinds, compressed or not", () => {
    fc.assert(
      fc.property(fc.array(entryArb, { maxLength: 40 }), fc.boolean(), (entries, compress) => {
        const batch = encodeBatch(entries, { codec: compress ? undefined : null });
        expect(batch.length).toBeLessThanOrEqual(256 * 1024);
        expect(plain(decodeBatch(batch))).toEqual(plain(entries));
      }),
      { numRuns: 150 },
    );
  });

  it("brings the receiver's memory to the sender's over rounds of random writes (BatchBuilder + SentPages)", () => {
    const pages = 48;
    const write = fc.record({ gpn: fc.nat(pages - 1), at: fc.nat(PAGE / 4 - 1), value: fc.integer(), wipe: fc.boolean() });
    fc.assert(
      fc.property(fc.array(fc.array(write, { maxLength: 30 }), { minLength: 1, maxLength: 4 }), fc.nat(pages), fc.integer({ min: 0, max: 12 }), fc.boolean(), (rounds, budgetPages, extra, stable) => {
        const source = Array.from({ length: pages }, (_, i) => (i % 5 === 0 ? new Uint8Array(PAGE) : i % 2 ? textPage(i) : randomPage(i)));
        const dest = Array.from({ length: pages }, () => new Uint8Array(PAGE));
        const sent = new SentPages({ budgetBytes: budgetPages * PAGE });
        // Small batches, so that rounds span several and pages must wait for the next one.
        const builder = new BatchBuilder({ maxBatchBytes: BATCH_HEADER_BYTES + (2 + extra) * (PAGE + 5) });
        const send = (dirty: Iterable<number>): void => {
          const batches: Uint8Array[] = [];
          for (const gpn of dirty) {
            // (stable: nothing writes the pages while a round is encoded, as in a stop-and-copy)
            if (builder.addPage(gpn, source[gpn]!, sent, stable)) continue;
            batches.push(builder.finish());
            expect(builder.addPage(gpn, source[gpn]!, sent, stable)).toBe(true);
          }
          batches.push(builder.finish());
          for (const b of batches) {
            expect(b.length).toBeLessThanOrEqual(BATCH_HEADER_BYTES + (2 + extra) * (PAGE + 5));
            applyBatch(decodeBatch(b), (gpn) => dest[gpn]!);
          }
        };
        send(source.keys());
        for (const writes of rounds) {
          const dirty = new Set<number>();
          for (const w of writes) {
            const view = new DataView(source[w.gpn]!.buffer);
            if (w.wipe && w.value % 7 === 0) source[w.gpn]!.fill(0);
            else view.setInt32(w.at * 4, w.value, true);
            dirty.add(w.gpn);
          }
          send(dirty);
        }
        for (let i = 0; i < pages; i++) expect(same(dest[i]!, source[i]!)).toBe(true);
        expect(sent.stats().bytesHeld).toBeLessThanOrEqual(budgetPages * PAGE);
      }),
      { numRuns: 60 },
    );
  });
});

describe("page-batch - stable pages", () => {
  it("encodes a stable page where it lies: the same batch as through the copy, and lastPage is the page itself", () => {
    const pages = [randomPage(3), new Uint8Array(PAGE), textPage(4), randomPage(5)];
    const build = (stable: boolean): { batch: Uint8Array; last: Uint8Array[] } => {
      const sent = new SentPages();
      sent.set(0, randomPage(3));
      sent.set(3, randomPage(6));
      const builder = new BatchBuilder({ codec: null });
      const last: Uint8Array[] = [];
      new DataView(pages[0]!.buffer).setUint32(40, 0xfeed, true);
      pages.forEach((p, gpn) => {
        expect(builder.addPage(gpn, p, sent, stable)).toBe(true);
        last.push(builder.lastPage);
      });
      return { batch: builder.finish(), last };
    };
    const copied = build(false);
    const inPlace = build(true);
    expect(Buffer.from(inPlace.batch).equals(Buffer.from(copied.batch))).toBe(true);
    inPlace.last.forEach((l, i) => expect(l).toBe(pages[i]));
    copied.last.forEach((l, i) => expect(l).not.toBe(pages[i]));
    expect(decodeBatch(inPlace.batch).map((e) => e.kind)).toEqual(["delta", "zero", "full", "full"]);
  });
});

describe("page-batch - sizes", () => {
  it("sends 64 pages with one word changed each in far less than 64 × 4 KiB", () => {
    const sent = new SentPages();
    const builder = new BatchBuilder();
    const pages = Array.from({ length: 64 }, (_, i) => randomPage(i + 1));
    for (let i = 0; i < 64; i++) sent.set(i, pages[i]!);
    for (let i = 0; i < 64; i++) {
      new DataView(pages[i]!.buffer).setUint32(((i * 61) % 1024) * 4, 0xdeadbeef ^ i, true);
      expect(builder.addPage(i, pages[i]!, sent)).toBe(true);
      expect(builder.lastKind).toBe("delta");
    }
    const batch = builder.finish();
    // 20-byte header + 64 × (5 entry + 6 delta header + at most 7 delta bytes).
    expect(batch.length).toBeLessThanOrEqual(BATCH_HEADER_BYTES + 64 * 18);
    expect(builder.stats).toMatchObject({ batches: 1, deltaPages: 64, fullPages: 0 });
  });

  it("compresses a batch of program-like pages and flags it; leaves random pages uncompressed", () => {
    const text = encodeBatch(Array.from({ length: 16 }, (_, i) => ({ gpn: i, kind: "full" as const, payload: textPage(i) })));
    expect(text[3]).toBe(1);
    expect(text.length).toBeLessThan(16 * PAGE * 0.875);
    const random = encodeBatch(Array.from({ length: 16 }, (_, i) => ({ gpn: i, kind: "full" as const, payload: randomPage(i + 1) })));
    expect(random[3]).toBe(0);
    expect(random.length).toBe(BATCH_HEADER_BYTES + 16 * (5 + PAGE));
  });

  it("encodes a zero page in 5 bytes and an unchanged page as an empty delta", () => {
    const builder = new BatchBuilder();
    const sent = new SentPages();
    const p = randomPage(3);
    sent.set(7, p);
    expect(builder.addPage(6, new Uint8Array(PAGE), sent)).toBe(true);
    expect(builder.lastKind).toBe("zero");
    expect(builder.addPage(7, p, sent)).toBe(true);
    expect(builder.lastKind).toBe("delta");
    expect(builder.byteLength).toBe(BATCH_HEADER_BYTES + 5 + 11);
  });
});

describe("page-batch - BatchBuilder", () => {
  it("accepts pages until the next one would not fit, and never makes a batch over the maximum", () => {
    const max = BATCH_HEADER_BYTES + 3 * (PAGE + 5) + 4;
    const builder = new BatchBuilder({ maxBatchBytes: max, codec: null });
    for (let i = 0; i < 3; i++) expect(builder.addPage(i, randomPage(i + 1))).toBe(true);
    expect(builder.addPage(3, randomPage(4))).toBe(false);
    expect(builder.addZero(3)).toBe(false);
    expect(builder.lastKind).toBeUndefined();
    expect(builder.count).toBe(3);
    const first = builder.finish();
    expect(first.length).toBe(max - 4);
    expect(builder.count).toBe(0);
    expect(builder.addPage(3, randomPage(4))).toBe(true);
    expect(decodeBatch(builder.finish(), { maxBatchBytes: max }).map((e) => e.gpn)).toEqual([3]);
    expect(decodeBatch(first, { maxBatchBytes: max }).map((e) => e.gpn)).toEqual([0, 1, 2]);
  });

  it("records nothing in SentPages for a page that did not fit", () => {
    const builder = new BatchBuilder({ maxBatchBytes: BATCH_HEADER_BYTES + PAGE + 5 });
    const sent = new SentPages();
    expect(builder.addPage(1, randomPage(1), sent)).toBe(true);
    expect(builder.addPage(2, randomPage(2), sent)).toBe(false);
    expect(sent.has(1)).toBe(true);
    expect(sent.has(2)).toBe(false);
  });

  it("deltas against a caller-held previous page, sends full pages when the delta is over the limit", () => {
    const builder = new BatchBuilder({ deltaLimitBytes: 100 });
    const previous = randomPage(1);
    const small = previous.slice();
    small[10] = small[10]! ^ 1;
    expect(builder.addPage(1, small, previous)).toBe(true);
    expect(builder.lastKind).toBe("delta");
    const big = previous.slice();
    big.fill(1, 0, 200);
    expect(builder.addPage(2, big, previous)).toBe(true);
    expect(builder.lastKind).toBe("full");
    const decoded = decodeBatch(builder.finish());
    const target = [previous.slice(), previous.slice(), previous.slice()];
    applyBatch(decoded, (gpn) => target[gpn]!);
    expect(same(target[1]!, small) && same(target[2]!, big)).toBe(true);
  });

  it("refuses bad options, page numbers and entries", () => {
    expect(() => new BatchBuilder({ maxBatchBytes: 1000 })).toThrow(CodecError);
    expect(() => new BatchBuilder({ pageSize: 3000 })).toThrow(CodecError);
    expect(() => new BatchBuilder({ compressRatio: 0 })).toThrow(CodecError);
    const builder = new BatchBuilder();
    expect(() => builder.addPage(-1, randomPage(1))).toThrow(CodecError);
    expect(() => builder.addPage(2 ** 32, randomPage(1))).toThrow(CodecError);
    expect(() => builder.addPage(1, new Uint8Array(100))).toThrow(CodecError);
    expect(() => builder.add({ gpn: 1, kind: "delta", payload: new Uint8Array(0) })).toThrow(/pageCrc32/);
    expect(() => builder.add({ gpn: 1, kind: "delta", payload: Uint8Array.of(0, 0), pageCrc32: 0 })).toThrow(CodecError);
    expect(() => builder.add({ gpn: 1, kind: "full", payload: new Uint8Array(10) })).toThrow(CodecError);
    const many = Array.from({ length: 70 }, (_, i) => ({ gpn: i, kind: "full" as const, payload: randomPage(i) }));
    expect(() => encodeBatch(many)).toThrow(/does not fit/);
  });
});

describe("page-batch - decoding untrusted input", () => {
  const entries: BatchEntry[] = [
    { gpn: 1, kind: "zero", payload: new Uint8Array(0) },
    { gpn: 2, kind: "full", payload: textPage(2) },
    { gpn: 3, kind: "delta", payload: encodeDelta(textPage(3), textPage(4), PAGE)!, pageCrc32: pageChecksum(textPage(4)) },
    { gpn: 4, kind: "full", payload: randomPage(4) },
  ];
  const raw = encodeBatch(entries, { codec: null });
  const packed = encodeBatch(entries);

  function expectCodecErrorOrSame(data: Uint8Array): void {
    try {
      expect(plain(decodeBatch(data))).toEqual(plain(entries));
    } catch (e) {
      expect(e).toBeInstanceOf(CodecError);
    }
  }

  it("names what is wrong in a bad header", () => {
    const bad = (at: number, value: number): Uint8Array => {
      const b = raw.slice();
      b[at] = value;
      return b;
    };
    expect(packed[3]).toBe(1);
    expect(() => decodeBatch(raw.subarray(0, 19))).toThrow(/shorter than its 20-byte header/);
    expect(() => decodeBatch(bad(0, 0))).toThrow(/bad magic/);
    expect(() => decodeBatch(bad(2, 2))).toThrow(/version 2/);
    expect(() => decodeBatch(bad(3, 4))).toThrow(/unknown flags/);
    expect(() => decodeBatch(bad(4, 13))).toThrow(/8192-byte pages/);
    expect(() => decodeBatch(bad(6, 1))).toThrow(/reserved/);
    expect(() => decodeBatch(bad(11, 1))).toThrow(/entries cannot fit/);
    expect(() => decodeBatch(bad(8, raw[8]! + 1))).toThrow(/checksum mismatch/);
    expect(() => decodeBatch(bad(15, 1))).toThrow(/over the 262144-byte limit/);
    expect(() => decodeBatch(bad(16, raw[16]! ^ 1))).toThrow(/checksum mismatch/);
    expect(() => decodeBatch(raw, { maxBatchBytes: 2 * PAGE + 100 })).toThrow(/over the/);
    expect(() => decodeBatch(packed, { codec: null })).toThrow(/no codec/);
    const trailing = new Uint8Array(raw.length + 1);
    trailing.set(raw);
    expect(() => decodeBatch(trailing)).toThrow(/after its body/);
  });

  it("names what is wrong in bad entries (with a valid checksum)", () => {
    const at = (n: number, value: number): Uint8Array => {
      const b = raw.slice();
      b[BATCH_HEADER_BYTES + n] = value;
      return reseal(b);
    };
    expect(() => decodeBatch(at(0, 9))).toThrow(/entry 0 has unknown kind 9/);
    expect(() => decodeBatch(at(0, 1))).toThrow(CodecError); // a zero entry read as full: misaligned from there
    const deltaAt = BATCH_HEADER_BYTES + 5 + 5 + PAGE; // the delta entry's head
    const wrongDelta = raw.slice();
    wrongDelta[deltaAt + 5 + 6] = 0xff; // its first varint becomes huge
    expect(() => decodeBatch(reseal(wrongDelta))).toThrow(/delta of page 3 \(entry 2\)/);
    const fewer = raw.slice();
    fewer[8] = 3;
    expect(() => decodeBatch(reseal(fewer))).toThrow(/bytes after entry 3/);
  });

  it("gives a CodecError for every truncation, compressed or not", () => {
    for (const batch of [raw, packed]) {
      for (let n = 0; n < batch.length; n += n < 64 || batch.length - n < 64 ? 1 : 37) {
        expect(() => decodeBatch(batch.subarray(0, n))).toThrow(CodecError);
      }
    }
  });

  it("gives a CodecError or the original entries for random byte flips", () => {
    for (const batch of [raw, packed]) {
      fc.assert(
        fc.property(fc.array(fc.record({ at: fc.nat(batch.length - 1), xor: fc.integer({ min: 1, max: 255 }) }), { minLength: 1, maxLength: 3 }), (flips) => {
          const bad = batch.slice();
          for (const f of flips) bad[f.at] = bad[f.at]! ^ f.xor;
          expectCodecErrorOrSame(bad);
        }),
        { numRuns: 1000 },
      );
    }
  });

  it("survives body corruption that passes the checksum: CodecError or entries that apply inside their pages", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat(raw.length - BATCH_HEADER_BYTES - 1), value: fc.nat(255) }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: -8, max: 8 }),
        (writes, cut) => {
          let bad = raw.slice();
          for (const w of writes) bad[BATCH_HEADER_BYTES + w.at] = w.value;
          if (cut < 0) {
            bad = bad.slice(0, bad.length + cut);
            new DataView(bad.buffer).setUint32(12, bad.length - BATCH_HEADER_BYTES, true);
          }
          reseal(bad);
          let decoded: BatchEntry[];
          try {
            decoded = decodeBatch(bad);
          } catch (e) {
            expect(e).toBeInstanceOf(CodecError);
            return;
          }
          // Every page of the receiver is a view with guard bytes on both sides.
          const memory = new Uint8Array(PAGE * 3).fill(0xaa);
          const page = memory.subarray(PAGE, 2 * PAGE);
          try {
            applyBatch(decoded, () => page);
          } catch (e) {
            expect(e).toBeInstanceOf(CodecError);
          }
          expect(memory.subarray(0, PAGE).every((b) => b === 0xaa)).toBe(true);
          expect(memory.subarray(2 * PAGE).every((b) => b === 0xaa)).toBe(true);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe("page-batch - applyBatch", () => {
  it("refuses a delta against a page other than the one it was made from, leaving that page unchanged", () => {
    const sent = new SentPages();
    const builder = new BatchBuilder();
    const page = randomPage(1);
    sent.set(5, page);
    const next = page.slice();
    next[100] = next[100]! ^ 1;
    builder.addPage(5, next, sent);
    const decoded = decodeBatch(builder.finish());
    const stale = randomPage(2);
    const before = stale.slice();
    expect(() => applyBatch(decoded, () => stale)).toThrow(/not the one the sender last sent/);
    expect(same(stale, before)).toBe(true);
    const right = page.slice();
    expect(applyBatch(decoded, () => right)).toBe(1);
    expect(same(right, next)).toBe(true);
  });

  it("writes zero, full and delta pages into the receiver's pages, in order", () => {
    const base = randomPage(9);
    const a = base.slice();
    a[0] = a[0]! ^ 1;
    const b = a.slice();
    b[1] = b[1]! ^ 1;
    const entries: BatchEntry[] = [
      { gpn: 0, kind: "delta", payload: encodeDelta(base, a, PAGE)!, pageCrc32: pageChecksum(a) },
      { gpn: 0, kind: "delta", payload: encodeDelta(a, b, PAGE)!, pageCrc32: pageChecksum(b) },
      { gpn: 1, kind: "zero", payload: new Uint8Array(0) },
      { gpn: 2, kind: "full", payload: textPage(1) },
    ];
    const receiver = [base.slice(), randomPage(1), randomPage(2)];
    applyBatch(decodeBatch(encodeBatch(entries)), (gpn) => receiver[gpn]!);
    expect(same(receiver[0]!, b)).toBe(true);
    expect(receiver[1]!.every((x) => x === 0)).toBe(true);
    expect(same(receiver[2]!, textPage(1))).toBe(true);
    expect(() => applyBatch(entries.slice(3), () => new Uint8Array(PAGE / 2))).toThrow(CodecError);
  });
});

describe("codec bench - runs every case", () => {
  it("reports a positive throughput for each case with an injected clock", () => {
    let now = 0;
    const results = codecBench({ clock: { now: () => (now += 0.25) }, caseMs: 1 });
    expect(results.map((r) => r.name)).toContain("encodeDelta (1 word changed)");
    expect(results.length).toBe(11);
    for (const r of results) expect(r.mbPerSecond).toBeGreaterThan(0);
    const deltaBatch = results.find((r) => r.name === "batch encode (1 word changed per page)")!;
    expect(deltaBatch.ratio).toBeLessThan(0.01);
  });
});

describe("codec warm-up", () => {
  it("warmCodec carries its pages through the sender's and the receiver's paths (full, one-word deltas, zero pages) and they end equal", () => {
    expect(warmCodec(64, 3)).toBe(192);
    expect(warmCodec()).toBe(2048);
  });
});
