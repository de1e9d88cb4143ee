/**
 * The wire encoding of one batch of guest pages for one migration round. All integers little-endian.
 *
 *   header (20 bytes)
 *     0   magic        "HP" (0x48 0x50)
 *     2   version      u8, 1
 *     3   flags        u8, bit 0: the body is LZ4-compressed (lz4Codec's format); other bits 0
 *     4   page shift   u8, log2 of the page size (12 for 4 KiB)
 *     5   reserved     3 bytes, 0
 *     8   entry count  u32
 *     12  body length  u32, of the uncompressed body
 *     16  CRC-32       u32, of header bytes 0..15 followed by the uncompressed body
 *   body (stored as is, or compressed as a whole when that saves at least 1/8)
 *     entry  kind u8 (0 ZERO, 1 FULL, 2 DELTA), page number u32, then
 *            ZERO   nothing: the page becomes all zero
 *            FULL   the page (page-size bytes)
 *            DELTA  delta length u16, CRC-32 of the page after the delta u32, the delta (see delta.ts)
 *                   against the page the receiver holds
 *
 * A batch is at most `maxBatchBytes` (default 256 KiB, well under NATS's default 1 MiB max_payload),
 * compressed or not: `BatchBuilder` accepts pages until the next one would not fit. The decoder refuses
 * anything malformed, truncated, oversized or failing its checksum with a CodecError before returning a
 * single entry, so a bad batch is never half-applied; only a DELTA whose result fails its page checksum
 * (the two sides disagree on the previous page: a broken SentPages contract) is found while applying.
 *
 * Ordering contract: DELTA entries are relative to the receiver's current page, so batches must be
 * applied in the order they were built, and entries of one batch in their order.
 */
import { crc32 } from "node:zlib";
import { applyDeltaInPlace, applyValidDelta, encodeDeltaInto, undoDelta, validateDelta } from "./delta.js";
import { CodecError } from "./errors.js";
import { compressIfWorthIt, lz4Codec, type Codec } from "./lz4.js";
import { SentPages } from "./sent-pages.js";
import { isZeroPage } from "./zero.js";

export const BATCH_MAGIC_0 = 0x48; // "H"
export const BATCH_MAGIC_1 = 0x50; // "P"
export const BATCH_VERSION = 1;
export const BATCH_FLAG_LZ4 = 1;
export const BATCH_HEADER_BYTES = 20;
export const BATCH_MAX_BYTES_DEFAULT = 256 * 1024;
/** Largest batch either side accepts, whatever the options say (bounds allocation on decode). */
export const BATCH_MAX_BYTES_LIMIT = 16 * 1024 * 1024;
export const PAGE_SIZE_DEFAULT = 4096;
/** Largest page number on the wire (u32). */
export const GPN_MAX = 0xffff_ffff;

const KIND_ZERO = 0;
const KIND_FULL = 1;
const KIND_DELTA = 2;
const ENTRY_HEAD = 5; // kind u8, gpn u32
const DELTA_HEAD = 6; // length u16, page CRC-32 u32
const DELTA_LENGTH_MAX = 0xffff;
/** Bodies shorter than this are not worth a compression attempt. */
const COMPRESS_MIN_BYTES = 256;
const EMPTY = new Uint8Array(0);

export type PageKind = "zero" | "full" | "delta";

/**
 * One page of a batch. `payload` is empty for "zero", the page for "full", the delta for "delta".
 * `pageCrc32` (delta only) is the CRC-32 of the page after the delta; `pageChecksum` computes it.
 * Decoded payloads are views of the batch (or of its decompressed body): copy them to keep them.
 */
export interface BatchEntry {
  gpn: number;
  kind: PageKind;
  payload: Uint8Array;
  pageCrc32?: number;
}

export interface BatchOptions {
  /** Most bytes of an encoded batch, header included (default 256 KiB). */
  maxBatchBytes?: number;
  /** Page size in bytes, a power of two from 512 to 65536 (default 4096). */
  pageSize?: number;
  /** Compression for the body (default lz4Codec); null never compresses. The decoder needs it too. */
  codec?: Codec | null;
  /** Keep the compressed body only if at most this fraction of the raw body (default 0.875). */
  compressRatio?: number;
  /** BatchBuilder.addPage sends a delta only if it takes at most this many bytes (default page size / 2). */
  deltaLimitBytes?: number;
}

interface ResolvedOptions {
  maxBatchBytes: number;
  pageSize: number;
  pageShift: number;
  codec: Codec | null;
  compressRatio: number;
  deltaLimitBytes: number;
}

function resolve(options: BatchOptions): ResolvedOptions {
  const pageSize = options.pageSize ?? PAGE_SIZE_DEFAULT;
  const pageShift = Math.log2(pageSize);
  if (!Number.isInteger(pageShift) || pageShift < 9 || pageShift > 16) throw new CodecError(`batch: page size must be a power of two from 512 to 65536, got ${pageSize}`);
  const maxBatchBytes = options.maxBatchBytes ?? BATCH_MAX_BYTES_DEFAULT;
  if (!Number.isInteger(maxBatchBytes) || maxBatchBytes < BATCH_HEADER_BYTES + ENTRY_HEAD + pageSize || maxBatchBytes > BATCH_MAX_BYTES_LIMIT) {
    throw new CodecError(`batch: maximum size must hold a header and one full page and be at most ${BATCH_MAX_BYTES_LIMIT} bytes, got ${maxBatchBytes}`);
  }
  const deltaLimitBytes = Math.min(options.deltaLimitBytes ?? pageSize >>> 1, DELTA_LENGTH_MAX);
  if (!Number.isInteger(deltaLimitBytes) || deltaLimitBytes < 0) throw new CodecError(`batch: bad delta limit ${options.deltaLimitBytes}`);
  const compressRatio = options.compressRatio ?? 0.875;
  if (!(compressRatio > 0 && compressRatio <= 1)) throw new CodecError(`batch: compression ratio must be in (0, 1], got ${compressRatio}`);
  return { maxBatchBytes, pageSize, pageShift, codec: options.codec === undefined ? lz4Codec : options.codec, compressRatio, deltaLimitBytes };
}

/** The CRC-32 of a page, as carried by DELTA entries. */
export function pageChecksum(page: Uint8Array): number {
  return crc32(page);
}

/** Cumulative counts of what a BatchBuilder encoded. */
export interface BatchBuilderStats {
  batches: number;
  zeroPages: number;
  fullPages: number;
  deltaPages: number;
  /** Bytes of the batches before / after compression, headers included. */
  rawBytes: number;
  wireBytes: number;
}

/**
 * Builds one batch at a time into a preallocated buffer: `addPage` (or `addZero`, `add`) until it
 * returns false (the page does not fit: `finish()` the batch, send it, add the page again), then
 * `finish()` for the encoded batch. Reuse the builder after `finish` rather than making a new one per
 * batch (it holds a `maxBatchBytes` buffer).
 */
export class BatchBuilder {
  private readonly o: ResolvedOptions;
  private readonly body: Uint8Array;
  private readonly view: DataView;
  private readonly page: Uint8Array;
  /** What `addPage` encoded last: `page`, or the caller's page when it was stable. */
  private last: Uint8Array;
  private length = 0;
  private entries = 0;
  private kind: PageKind | undefined;
  readonly stats: BatchBuilderStats = { batches: 0, zeroPages: 0, fullPages: 0, deltaPages: 0, rawBytes: 0, wireBytes: 0 };

  constructor(options: BatchOptions = {}) {
    this.o = resolve(options);
    this.body = new Uint8Array(this.o.maxBatchBytes - BATCH_HEADER_BYTES);
    this.view = new DataView(this.body.buffer);
    this.page = new Uint8Array(this.o.pageSize);
    this.last = this.page;
  }

  /** Entries in the batch being built. */
  get count(): number {
    return this.entries;
  }

  /** Bytes the batch would take uncompressed, header included (an upper bound of `finish()`'s length). */
  get byteLength(): number {
    return BATCH_HEADER_BYTES + this.length;
  }

  /**
   * Adds page `gpn` with the cheapest encoding: ZERO if it is all zero; else DELTA against the previous
   * copy when there is one and the delta takes at most `deltaLimitBytes`; else FULL. The page is copied
   * once first, so a guest writing it meanwhile cannot make the entry inconsistent.
   *
   * `previous` is either the copy the receiver holds (the caller keeps its own record of sent pages),
   * or a SentPages, which is then looked up and, if the page is added, given the copy that was encoded
   * (see SentPages for what to do if the batch is not delivered).
   *
   * Returns false when the page does not fit in this batch (nothing is added or recorded: finish the
   * batch and add the page to the next one); `lastKind` tells which encoding was used.
   *
   * `stable`: nothing writes the page meanwhile (its VM's vCPUs and devices are stopped), so it is
   * encoded where it lies, without the copy (on pages not in the CPU's cache the copy costs about a
   * third of the work).
   */
  addPage(gpn: number, page: Uint8Array, previous?: Uint8Array | SentPages, stable = false): boolean {
    checkGpn(gpn);
    if (page.length !== this.o.pageSize) throw new CodecError(`batch: page ${gpn} has ${page.length} bytes, expected ${this.o.pageSize}`);
    const copy = stable ? page : this.page;
    if (!stable) copy.set(page);
    this.last = copy;
    const sent = previous instanceof SentPages ? previous : undefined;
    const room = this.body.length - this.length;
    this.kind = undefined;
    if (isZeroPage(copy)) {
      if (room < ENTRY_HEAD) return false;
      this.head(KIND_ZERO, gpn);
      this.stats.zeroPages++;
      this.kind = "zero";
      sent?.set(gpn, copy);
      return true;
    }
    const base = sent !== undefined ? sent.get(gpn) : (previous as Uint8Array | undefined);
    if (base !== undefined) {
      const limit = Math.min(this.o.deltaLimitBytes, room - ENTRY_HEAD - DELTA_HEAD);
      const at = this.length + ENTRY_HEAD + DELTA_HEAD;
      const n = limit < 0 ? -1 : encodeDeltaInto(base, copy, limit, this.body, at);
      if (n >= 0) {
        this.view.setUint16(this.length + ENTRY_HEAD, n, true);
        this.view.setUint32(this.length + ENTRY_HEAD + 2, crc32(copy), true);
        // The held copy becomes the encoded one by applying the (small) delta to it: no page copy.
        if (sent !== undefined) applyValidDelta(this.body.subarray(at, at + n), base);
        this.head(KIND_DELTA, gpn);
        this.length += DELTA_HEAD + n;
        this.stats.deltaPages++;
        this.kind = "delta";
        return true;
      }
    }
    if (room < ENTRY_HEAD + this.o.pageSize) return false;
    this.body.set(copy, this.length + ENTRY_HEAD);
    this.head(KIND_FULL, gpn);
    this.length += this.o.pageSize;
    this.stats.fullPages++;
    this.kind = "full";
    sent?.set(gpn, copy);
    return true;
  }

  /** Adds a ZERO entry for page `gpn`; returns false (adding nothing) when it does not fit. */
  addZero(gpn: number): boolean {
    return this.add({ gpn, kind: "zero", payload: EMPTY });
  }

  /**
   * The copy of the page `addPage` last added, exactly as encoded (a view the next `addPage`
   * overwrites; with `stable`, the page itself): what to record as sent.
   */
  get lastPage(): Uint8Array {
    return this.last;
  }

  /** The encoding `addPage` used for the page it last added (undefined if it added nothing). */
  get lastKind(): PageKind | undefined {
    return this.kind;
  }

  /** Adds an already encoded entry; returns false (adding nothing) when it does not fit. */
  add(entry: BatchEntry): boolean {
    checkGpn(entry.gpn);
    const room = this.body.length - this.length;
    switch (entry.kind) {
      case "zero":
        if (entry.payload.length !== 0) throw new CodecError(`batch: zero page ${entry.gpn} with a ${entry.payload.length}-byte payload`);
        if (room < ENTRY_HEAD) return false;
        this.head(KIND_ZERO, entry.gpn);
        this.stats.zeroPages++;
        return true;
      case "full":
        if (entry.payload.length !== this.o.pageSize) throw new CodecError(`batch: full page ${entry.gpn} has ${entry.payload.length} bytes, expected ${this.o.pageSize}`);
        if (room < ENTRY_HEAD + this.o.pageSize) return false;
        this.body.set(entry.payload, this.length + ENTRY_HEAD);
        this.head(KIND_FULL, entry.gpn);
        this.length += this.o.pageSize;
        this.stats.fullPages++;
        return true;
      case "delta": {
        const n = entry.payload.length;
        const crc = entry.pageCrc32;
        if (n > DELTA_LENGTH_MAX) throw new CodecError(`batch: delta of page ${entry.gpn} is ${n} bytes, over ${DELTA_LENGTH_MAX}`);
        if (crc === undefined || !Number.isInteger(crc) || crc < 0 || crc > 0xffff_ffff) throw new CodecError(`batch: delta of page ${entry.gpn} needs pageCrc32`);
        validateDelta(entry.payload, this.o.pageSize);
        if (room < ENTRY_HEAD + DELTA_HEAD + n) return false;
        this.view.setUint16(this.length + ENTRY_HEAD, n, true);
        this.view.setUint32(this.length + ENTRY_HEAD + 2, crc, true);
        this.body.set(entry.payload, this.length + ENTRY_HEAD + DELTA_HEAD);
        this.head(KIND_DELTA, entry.gpn);
        this.length += DELTA_HEAD + n;
        this.stats.deltaPages++;
        return true;
      }
      default:
        throw new CodecError(`batch: unknown page kind ${String((entry as { kind: unknown }).kind)}`);
    }
  }

  /** Encodes the batch built so far (possibly empty), compressing its body if that pays, and resets. */
  finish(): Uint8Array {
    const raw = this.body.subarray(0, this.length);
    let flags = 0;
    let wire = raw;
    if (this.o.codec !== null && raw.length >= COMPRESS_MIN_BYTES) {
      const packed = compressIfWorthIt(this.o.codec, raw, this.o.compressRatio);
      if (packed.compressed) {
        flags |= BATCH_FLAG_LZ4;
        wire = packed.data;
      }
    }
    const out = new Uint8Array(BATCH_HEADER_BYTES + wire.length);
    const v = new DataView(out.buffer);
    out[0] = BATCH_MAGIC_0;
    out[1] = BATCH_MAGIC_1;
    out[2] = BATCH_VERSION;
    out[3] = flags;
    out[4] = this.o.pageShift;
    v.setUint32(8, this.entries, true);
    v.setUint32(12, raw.length, true);
    v.setUint32(16, crc32(raw, crc32(out.subarray(0, 16))), true);
    out.set(wire, BATCH_HEADER_BYTES);
    this.stats.batches++;
    this.stats.rawBytes += BATCH_HEADER_BYTES + raw.length;
    this.stats.wireBytes += out.length;
    this.reset();
    return out;
  }

  /** Drops the batch being built (pages already recorded in a SentPages stay recorded: delete them). */
  reset(): void {
    this.length = 0;
    this.entries = 0;
  }

  private head(kind: number, gpn: number): void {
    this.body[this.length] = kind;
    this.view.setUint32(this.length + 1, gpn, true);
    this.length += ENTRY_HEAD;
    this.entries++;
  }
}

/** Encodes already encoded entries as one batch; throws CodecError if they do not fit in one. */
export function encodeBatch(entries: readonly BatchEntry[], options: BatchOptions = {}): Uint8Array {
  const builder = new BatchBuilder(options);
  for (let i = 0; i < entries.length; i++) {
    if (!builder.add(entries[i]!)) {
      throw new CodecError(`batch: entry ${i} (page ${entries[i]!.gpn}) does not fit in ${options.maxBatchBytes ?? BATCH_MAX_BYTES_DEFAULT} bytes; use BatchBuilder to split`);
    }
  }
  return builder.finish();
}

/**
 * Decodes and fully checks a batch: header, size limits, decompression, checksum, every entry and every
 * delta's structure. Returns the entries in order (payloads are views, see BatchEntry). The options
 * must agree with the sender's on page size and codec; `maxBatchBytes` bounds what is accepted.
 */
export function decodeBatch(data: Uint8Array, options: BatchOptions = {}): BatchEntry[] {
  const o = resolve(options);
  if (data.length < BATCH_HEADER_BYTES) throw new CodecError(`batch truncated: ${data.length} bytes, shorter than its ${BATCH_HEADER_BYTES}-byte header`);
  if (data[0] !== BATCH_MAGIC_0 || data[1] !== BATCH_MAGIC_1) throw new CodecError("not a page batch (bad magic)");
  if (data[2] !== BATCH_VERSION) throw new CodecError(`page batch version ${data[2]} is not readable by this build (reads ${BATCH_VERSION})`);
  const flags = data[3]!;
  if ((flags & ~BATCH_FLAG_LZ4) !== 0) throw new CodecError(`page batch has unknown flags 0x${flags.toString(16)}`);
  if (data[4] !== o.pageShift) throw new CodecError(`page batch of ${2 ** data[4]!}-byte pages, expected ${o.pageSize}`);
  if (data[5] !== 0 || data[6] !== 0 || data[7] !== 0) throw new CodecError("page batch corrupt: reserved header bytes are not zero");
  if (data.length > o.maxBatchBytes) throw new CodecError(`page batch of ${data.length} bytes is over the ${o.maxBatchBytes}-byte limit`);
  const hv = new DataView(data.buffer, data.byteOffset, BATCH_HEADER_BYTES);
  const count = hv.getUint32(8, true);
  const bodyLength = hv.getUint32(12, true);
  const crc = hv.getUint32(16, true);
  if (bodyLength > o.maxBatchBytes - BATCH_HEADER_BYTES) throw new CodecError(`page batch corrupt: body of ${bodyLength} bytes is over the ${o.maxBatchBytes}-byte limit`);
  if (count > Math.floor(bodyLength / ENTRY_HEAD)) throw new CodecError(`page batch corrupt: ${count} entries cannot fit in ${bodyLength} bytes`);
  const wire = data.subarray(BATCH_HEADER_BYTES);
  let body: Uint8Array;
  if ((flags & BATCH_FLAG_LZ4) !== 0) {
    if (o.codec === null) throw new CodecError("page batch is compressed but no codec was given");
    body = o.codec.decompress(wire, bodyLength);
  } else {
    if (wire.length < bodyLength) throw new CodecError(`page batch truncated: body has ${wire.length} of ${bodyLength} bytes`);
    if (wire.length > bodyLength) throw new CodecError(`page batch corrupt: ${wire.length - bodyLength} bytes after its body`);
    body = wire;
  }
  if (crc32(body, crc32(data.subarray(0, 16))) !== crc) throw new CodecError("page batch corrupt: checksum mismatch");
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const entries: BatchEntry[] = new Array<BatchEntry>(count);
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (bodyLength - p < ENTRY_HEAD) throw new CodecError(`page batch truncated: entry ${i} of ${count} at body offset ${p}`);
    const kind = body[p]!;
    const gpn = v.getUint32(p + 1, true);
    p += ENTRY_HEAD;
    if (kind === KIND_ZERO) {
      entries[i] = { gpn, kind: "zero", payload: body.subarray(p, p) };
    } else if (kind === KIND_FULL) {
      if (bodyLength - p < o.pageSize) throw new CodecError(`page batch truncated: full page ${gpn} (entry ${i}) at body offset ${p}`);
      entries[i] = { gpn, kind: "full", payload: body.subarray(p, p + o.pageSize) };
      p += o.pageSize;
    } else if (kind === KIND_DELTA) {
      if (bodyLength - p < DELTA_HEAD) throw new CodecError(`page batch truncated: delta of page ${gpn} (entry ${i}) at body offset ${p}`);
      const n = v.getUint16(p, true);
      const pageCrc32 = v.getUint32(p + 2, true);
      p += DELTA_HEAD;
      if (bodyLength - p < n) throw new CodecError(`page batch truncated: delta of page ${gpn} (entry ${i}) has ${bodyLength - p} of ${n} bytes`);
      const payload = body.subarray(p, p + n);
      try {
        validateDelta(payload, o.pageSize);
      } catch (e) {
        throw new CodecError(`page batch corrupt: delta of page ${gpn} (entry ${i}): ${(e as Error).message}`, { cause: e });
      }
      entries[i] = { gpn, kind: "delta", payload, pageCrc32 };
      p += n;
    } else {
      throw new CodecError(`page batch corrupt: entry ${i} has unknown kind ${kind}`);
    }
  }
  if (p !== bodyLength) throw new CodecError(`page batch corrupt: ${bodyLength - p} bytes after entry ${count}`);
  return entries;
}

/**
 * Writes decoded entries into the receiver's pages, in order: `getPage(gpn)` returns the receiver's
 * current page (a writable view, exactly the page size) and receives ZERO as zeroes, FULL as a copy,
 * DELTA applied to it. A DELTA whose result does not match its checksum throws a CodecError and leaves
 * that page unchanged; the entries before it have been applied (the migration must then be abandoned:
 * the receiver's memory no longer matches the sender's idea of it). Returns the number of pages written.
 */
export function applyBatch(entries: readonly BatchEntry[], getPage: (gpn: number) => Uint8Array): number {
  let undo = new Uint8Array(0);
  for (const e of entries) {
    const page = getPage(e.gpn);
    switch (e.kind) {
      case "zero":
        page.fill(0);
        break;
      case "full":
        if (e.payload.length !== page.length) throw new CodecError(`batch: full page ${e.gpn} of ${e.payload.length} bytes for a ${page.length}-byte page`);
        page.set(e.payload);
        break;
      case "delta": {
        // In place, keeping the bytes it overwrites: a wrong result is undone, so the page is left
        // unchanged, without copying whole pages.
        validateDelta(e.payload, page.length);
        if (undo.length < e.payload.length) undo = new Uint8Array(Math.max(e.payload.length, 256));
        applyDeltaInPlace(e.payload, page, undo);
        const crc = crc32(page);
        if (crc !== e.pageCrc32) {
          undoDelta(e.payload, page, undo);
          throw new CodecError(`batch: delta of page ${e.gpn} gives a page with CRC-32 ${hex(crc)}, expected ${hex(e.pageCrc32 ?? 0)}: the receiver's page is not the one the sender last sent`);
        }
        break;
      }
      default:
        throw new CodecError(`batch: unknown page kind ${String((e as { kind: unknown }).kind)}`);
    }
  }
  return entries.length;
}

function checkGpn(gpn: number): void {
  if (!Number.isInteger(gpn) || gpn < 0 || gpn > GPN_MAX) throw new CodecError(`batch: page number ${gpn} is not a u32`);
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}
