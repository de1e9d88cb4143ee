/**
 * Micro benchmark of the page codec, for `pnpm bench`. Throughput is in MB/s (10^6 bytes per second) of
 * guest page bytes handled (a 4 KiB page delta'd counts 4096 bytes, however small its delta).
 *
 * Time is injected (`clock`, e.g. the hypervisor's `systemClock`), and so is the data: `programs` are
 * program images (the guest ELF files) cut into 4 KiB pages; without them the pages are pseudo-random
 * text from a fixed seed. Each case runs for about `caseMs` after a short warm-up.
 */
import { decodeDelta, encodeDelta } from "./delta.js";
import { lz4Codec } from "./lz4.js";
import { applyBatch, BatchBuilder, decodeBatch } from "./page-batch.js";
import { SentPages } from "./sent-pages.js";
import { isZeroPage } from "./zero.js";

const PAGE = 4096;
const BATCH_PAGES = 64;

export interface CodecBenchOptions {
  /** Monotonic milliseconds. */
  clock: { now(): number };
  /** Program images to cut into pages (zero pages are skipped). */
  programs?: readonly Uint8Array[];
  /** Time per case (default 300 ms). */
  caseMs?: number;
}

export interface CodecBenchResult {
  name: string;
  mbPerSecond: number;
  /** For compressing cases: compressed bytes / original bytes. */
  ratio?: number;
}

export function codecBench(options: CodecBenchOptions): CodecBenchResult[] {
  const { clock } = options;
  const caseMs = options.caseMs ?? 300;
  const pages = programPages(options.programs ?? []);
  const results: CodecBenchResult[] = [];
  const run = (name: string, bytesPerCall: number, fn: (i: number) => void, ratio?: number): void => {
    for (let i = 0; i < 16; i++) fn(i);
    let calls = 0;
    let batch = 16;
    const start = clock.now();
    let elapsed = 0;
    while (elapsed < caseMs) {
      for (let i = 0; i < batch; i++) fn(calls + i);
      calls += batch;
      batch *= 2;
      elapsed = clock.now() - start;
    }
    const result: CodecBenchResult = { name, mbPerSecond: round((calls * bytesPerCall) / (elapsed / 1000) / 1e6) };
    if (ratio !== undefined) result.ratio = round(ratio);
    results.push(result);
  };

  const zero = new Uint8Array(PAGE);
  let sink = 0;
  run("isZeroPage (zero page)", PAGE, () => {
    if (isZeroPage(zero)) sink++;
  });
  run("isZeroPage (program page)", PAGE, (i) => {
    if (isZeroPage(pages[i % pages.length]!)) sink++;
  });

  // One 32-bit word changed per page, at a different place in each.
  const changed = pages.map((p, i) => {
    const c = p.slice();
    const at = ((i * 97) % (PAGE / 4)) * 4;
    c[at] = c[at]! ^ 0x5a;
    c[at + 3] = c[at + 3]! ^ 0xa5;
    return c;
  });
  const out = new Uint8Array(PAGE);
  run("encodeDelta (1 word changed)", PAGE, (i) => {
    const k = i % pages.length;
    if (encodeDelta(pages[k]!, changed[k]!, PAGE / 2, out) === undefined) throw new Error("bench: delta over limit");
  });
  run("encodeDelta (identical)", PAGE, (i) => {
    const k = i % pages.length;
    encodeDelta(pages[k]!, pages[k]!, PAGE / 2, out);
  });
  const deltas = pages.map((p, k) => encodeDelta(p, changed[k]!, PAGE)!);
  const target = new Uint8Array(PAGE);
  run("decodeDelta (1 word changed)", PAGE, (i) => {
    const k = i % pages.length;
    decodeDelta(pages[k]!, deltas[k]!, target);
  });

  // LZ4 on 256 KiB of program pages (a batch body).
  const chunk = new Uint8Array(BATCH_PAGES * PAGE);
  for (let i = 0; i < BATCH_PAGES; i++) chunk.set(pages[i % pages.length]!, i * PAGE);
  const packed = lz4Codec.compress(chunk);
  run("lz4 compress (program pages)", chunk.length, () => {
    sink += lz4Codec.compress(chunk).length;
  }, packed.length / chunk.length);
  run("lz4 decompress (program pages)", chunk.length, () => {
    sink += lz4Codec.decompress(packed, chunk.length).length;
  });

  // Batches: 63 full program pages (fits in 256 KiB), and 64 pages with one word changed each.
  const fullBuilder = new BatchBuilder();
  const fullPages = Math.min(63, pages.length);
  const buildFull = (): Uint8Array => {
    for (let i = 0; i < fullPages; i++) if (!fullBuilder.addPage(i, pages[i]!)) throw new Error("bench: batch full");
    return fullBuilder.finish();
  };
  const fullBatch = buildFull();
  run("batch encode (full program pages, lz4)", fullPages * PAGE, () => {
    sink += buildFull().length;
  }, fullBatch.length / (fullPages * PAGE));
  const receiver = pages.map((p) => p.slice());
  run("batch decode+apply (full program pages)", fullPages * PAGE, () => {
    applyBatch(decodeBatch(fullBatch), (gpn) => receiver[gpn]!);
  });

  const deltaPages = Math.min(BATCH_PAGES, pages.length);
  const sent = new SentPages({ budgetBytes: 2 * deltaPages * PAGE });
  const deltaBuilder = new BatchBuilder();
  let flip = 0;
  const buildDeltas = (): Uint8Array => {
    // Alternate between the two versions so that every page differs from its sent copy by one word.
    const from = flip++ % 2 === 0 ? changed : pages;
    for (let i = 0; i < deltaPages; i++) if (!deltaBuilder.addPage(i, from[i]!, sent)) throw new Error("bench: batch full");
    return deltaBuilder.finish();
  };
  for (let i = 0; i < deltaPages; i++) sent.set(i, pages[i]!);
  const deltaBatch = buildDeltas();
  run("batch encode (1 word changed per page)", deltaPages * PAGE, () => {
    sink += buildDeltas().length;
  }, deltaBatch.length / (deltaPages * PAGE));
  const base = pages.slice(0, deltaPages).map((p) => p.slice());
  const work = base.map((p) => p.slice());
  run("batch decode+apply (1 word changed per page)", deltaPages * PAGE, () => {
    for (let i = 0; i < deltaPages; i++) work[i]!.set(base[i]!);
    applyBatch(decodeBatch(deltaBatch), (gpn) => work[gpn]!);
  });
  if (sink === -1) results.push({ name: "unreachable", mbPerSecond: 0 });
  return results;
}

/** Non-zero 4 KiB pages of the programs, or 64 pages of pseudo-random text when there are none. */
function programPages(programs: readonly Uint8Array[]): Uint8Array[] {
  const pages: Uint8Array[] = [];
  for (const program of programs) {
    for (let at = 0; at + PAGE <= program.length; at += PAGE) {
      const page = program.slice(at, at + PAGE);
      if (!isZeroPage(page)) pages.push(page);
    }
  }
  if (pages.length >= BATCH_PAGES) return pages;
  const words = ["addi", "lw", "sw", "beq", "jal", "ret", "a0", "a1", "sp", "ra", "t0", "0x10", "-4", "(sp)", ",", "\n"];
  let seed = 0x2545f491;
  const text = new Uint8Array(BATCH_PAGES * PAGE);
  for (let p = 0; p < text.length; ) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    const word = words[(seed >>> 0) % words.length]!;
    for (let k = 0; k < word.length && p < text.length; k++) text[p++] = word.charCodeAt(k);
    if (p < text.length) text[p++] = 0x20;
  }
  for (let at = 0; at < text.length; at += PAGE) pages.push(text.subarray(at, at + PAGE));
  return pages;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
