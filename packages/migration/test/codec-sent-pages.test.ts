import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CodecError, SentPages } from "../src/codec/index.js";

const PAGE = 4096;

function page(fill: number, size = PAGE): Uint8Array {
  return new Uint8Array(size).fill(fill);
}

describe("sent-pages - get, set, delete, clear", () => {
  it("keeps a copy of what was set, not a view of the caller's page", () => {
    const sent = new SentPages();
    const p = page(5);
    sent.set(42, p);
    p.fill(6);
    expect(sent.get(42)!.every((b) => b === 5)).toBe(true);
    sent.set(42, p);
    expect(sent.get(42)!.every((b) => b === 6)).toBe(true);
    expect(sent.size).toBe(1);
  });

  it("counts hits and misses, forgets deleted pages, and frees memory on clear", () => {
    const sent = new SentPages({ budgetBytes: 10 * PAGE });
    expect(sent.get(1)).toBeUndefined();
    sent.set(1, page(1));
    sent.set(2, page(2));
    expect(sent.get(1)![0]).toBe(1);
    expect(sent.has(2)).toBe(true);
    expect(sent.delete(2)).toBe(true);
    expect(sent.delete(2)).toBe(false);
    expect(sent.get(2)).toBeUndefined();
    expect(sent.stats()).toEqual({ pages: 1, capacityPages: 10, bytesHeld: PAGE, bytesAllocated: 10 * PAGE, budgetBytes: 10 * PAGE, hits: 1, misses: 2, evictions: 0 });
    sent.clear();
    expect(sent.get(1)).toBeUndefined();
    expect(sent.stats()).toMatchObject({ pages: 0, bytesHeld: 0, bytesAllocated: 0, hits: 1, misses: 3 });
    sent.set(3, page(3));
    expect(sent.get(3)![0]).toBe(3);
  });

  it("reserve allocates the whole budget up front; forget drops the pages and keeps that memory", () => {
    const sent = new SentPages({ budgetBytes: 600 * PAGE });
    sent.reserve();
    expect(sent.stats().bytesAllocated).toBe(600 * PAGE);
    for (let g = 0; g < 600; g++) sent.set(g, page(g & 0xff));
    expect(sent.stats().bytesAllocated).toBe(600 * PAGE);
    sent.forget();
    expect(sent.size).toBe(0);
    expect(sent.get(5)).toBeUndefined();
    expect(sent.stats().bytesAllocated).toBe(600 * PAGE);
    // reused slots hold the new pages, never the forgotten ones
    for (let g = 1000; g < 1600; g++) sent.set(g, page((g * 7) & 0xff));
    for (let g = 1000; g < 1600; g++) expect(sent.get(g)![100]).toBe((g * 7) & 0xff);
    expect(sent.stats().evictions).toBe(0);
  });

  it("refuses pages of the wrong length, bad page numbers and bad budgets", () => {
    const sent = new SentPages();
    expect(() => sent.set(1, page(0, PAGE - 1))).toThrow(CodecError);
    expect(() => sent.set(-1, page(0))).toThrow(CodecError);
    expect(() => sent.set(0.5, page(0))).toThrow(CodecError);
    expect(() => new SentPages({ budgetBytes: -1 })).toThrow(CodecError);
    expect(() => new SentPages({ pageSize: 0 })).toThrow(CodecError);
  });
});

describe("sent-pages - budget and eviction", () => {
  it("never holds more than the budget and evicts one page per page over it", () => {
    const sent = new SentPages({ budgetBytes: 100 * PAGE + 123 });
    for (let gpn = 0; gpn < 1000; gpn++) {
      sent.set(gpn, page(gpn & 0xff));
      const s = sent.stats();
      expect(s.bytesHeld).toBeLessThanOrEqual(s.budgetBytes);
      expect(s.bytesAllocated).toBeLessThanOrEqual(s.budgetBytes);
    }
    expect(sent.stats()).toMatchObject({ pages: 100, capacityPages: 100, bytesHeld: 100 * PAGE, evictions: 900 });
  });

  it("allocates memory as pages arrive, not the whole budget up front", () => {
    const sent = new SentPages({ budgetBytes: 64 * 1024 * 1024 });
    sent.set(0, page(1));
    expect(sent.stats().bytesAllocated).toBe(256 * PAGE);
  });

  it("gives a recently read page a second chance (CLOCK)", () => {
    const sent = new SentPages({ budgetBytes: 4 * PAGE });
    for (let gpn = 0; gpn < 4; gpn++) sent.set(gpn, page(gpn));
    sent.set(4, page(4)); // the hand clears every reference bit and evicts the oldest, 0
    expect(sent.has(0)).toBe(false);
    expect(sent.get(2)).toBeDefined();
    sent.set(5, page(5)); // evicts 1
    sent.set(6, page(6)); // 2 was read since: skips it, evicts 3
    expect([0, 1, 2, 3, 4, 5, 6].filter((g) => sent.has(g))).toEqual([2, 4, 5, 6]);
    expect(sent.get(2)![0]).toBe(2);
    expect(sent.stats().evictions).toBe(3);
  });

  it("keeps nothing with a zero budget", () => {
    const sent = new SentPages({ budgetBytes: PAGE - 1 });
    sent.set(1, page(1));
    expect(sent.get(1)).toBeUndefined();
    expect(sent.stats()).toMatchObject({ pages: 0, capacityPages: 0, bytesAllocated: 0 });
  });

  it("never returns stale content, and holds every page while under budget (against a Map model)", () => {
    const op = fc.oneof(
      fc.record({ op: fc.constant("set" as const), gpn: fc.nat(40), fill: fc.nat(255) }),
      fc.record({ op: fc.constant("get" as const), gpn: fc.nat(40) }),
      fc.record({ op: fc.constant("delete" as const), gpn: fc.nat(40) }),
      fc.record({ op: fc.constant("clear" as const) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 50 }), fc.array(op, { maxLength: 300 }), (capacity, ops) => {
        const size = 64;
        const sent = new SentPages({ budgetBytes: capacity * size, pageSize: size });
        const model = new Map<number, number>();
        for (const o of ops) {
          if (o.op === "set") {
            sent.set(o.gpn, page(o.fill, size));
            model.set(o.gpn, o.fill);
          } else if (o.op === "get") {
            const got = sent.get(o.gpn);
            if (got !== undefined) {
              expect(model.has(o.gpn)).toBe(true);
              expect(got.every((b) => b === model.get(o.gpn))).toBe(true);
            } else if (capacity > 40) {
              expect(model.has(o.gpn)).toBe(false);
            }
          } else if (o.op === "delete") {
            sent.delete(o.gpn);
            model.delete(o.gpn);
          } else {
            sent.clear();
            model.clear();
          }
          expect(sent.size).toBeLessThanOrEqual(capacity);
          expect(sent.size).toBeLessThanOrEqual(model.size);
        }
      }),
      { numRuns: 300 },
    );
  });
});
