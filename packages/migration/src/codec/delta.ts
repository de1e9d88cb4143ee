/**
 * Page deltas (the XBZRLE idea): a page resent in a later round has usually changed in a few words
 * only, so the source sends the difference against the copy it sent before instead of the whole page.
 *
 * Format: a sequence of records, nothing else (no header; the page length is known to both sides):
 *
 *   record   unchanged  LEB128 varint   bytes to keep from the previous page
 *            changed    LEB128 varint   bytes to replace, at least 1
 *            bytes      `changed` bytes the new content of those bytes
 *
 * Records run from the start of the page in order; bytes after the last record are unchanged, so two
 * identical pages encode to the empty delta (0 bytes). A varint is unsigned LEB128: 7 bits per byte,
 * least significant group first, high bit set on every byte but the last, at most 5 bytes. One changed
 * 32-bit word costs at most 2 + 1 + 4 = 7 bytes on a 4 KiB page.
 *
 * The encoder skips equal 256-byte blocks with a native compare (and, after each run, tries the
 * whole rest of the page in one compare) and compares 32-bit words in the others when both pages are 4-byte aligned with a length divisible by 4 (the case for guest pages),
 * then trims the equal leading bytes of a run's first word and trailing bytes of its last word, so runs
 * are byte-exact at their edges; a run may contain equal bytes inside (never a whole equal word). Other
 * pages are compared byte by byte (a single equal byte between changes joins the run: cheaper than a
 * new record). The decoder accepts any record sequence that stays inside the page, not only what this
 * encoder produces.
 *
 * Contract: a delta is meaningful only against the exact previous page it was computed from; the
 * receiver must hold that page (see SentPages and the batch format for how the two sides stay in step).
 */
import { CodecError } from "./errors.js";

/** Longest varint accepted: 5 bytes (values below 2^35; anything above a page length is refused). */
const VARINT_BYTES_MAX = 5;

let scratch = new Uint8Array(8192);

/** `buf.compare(target, targetStart, targetEnd, sourceStart, sourceEnd)`, called on plain Uint8Arrays. */
const compareRange = Buffer.prototype.compare as (this: Uint8Array, target: Uint8Array, targetStart: number, targetEnd: number, sourceStart: number, sourceEnd: number) => number;
const BLOCK_BYTES = 256;
const BLOCK_WORDS = BLOCK_BYTES >>> 2;

/**
 * Encodes the delta from `previous` to `current` (same length). Returns it, or undefined when it would
 * take more than `limit` bytes (then the caller sends the full page).
 *
 * With `out`, the delta is written to its start and the result is a view of `out` (valid until the
 * caller reuses `out`); `out` must hold at least `limit` bytes. Without it, the result is a new array of
 * exactly the delta's length.
 */
export function encodeDelta(previous: Uint8Array, current: Uint8Array, limit: number, out?: Uint8Array): Uint8Array | undefined {
  checkLimit(limit);
  if (out !== undefined) {
    if (out.length < limit) throw new CodecError(`delta output buffer of ${out.length} bytes is smaller than the limit of ${limit} bytes`);
    const n = encodeDeltaInto(previous, current, limit, out, 0);
    return n < 0 ? undefined : out.subarray(0, n);
  }
  if (scratch.length < limit) scratch = new Uint8Array(limit);
  const n = encodeDeltaInto(previous, current, limit, scratch, 0);
  return n < 0 ? undefined : scratch.slice(0, n);
}

/**
 * Encodes the delta into `out` at `offset`, writing at most `limit` bytes (the caller guarantees that
 * `out` has room for them). Returns the delta's length, or -1 when it would exceed `limit`; on -1 the
 * bytes of `out` in [offset, offset + limit) may have been overwritten.
 */
export function encodeDeltaInto(previous: Uint8Array, current: Uint8Array, limit: number, out: Uint8Array, offset: number): number {
  const length = current.length;
  if (previous.length !== length) throw new CodecError(`delta between pages of different lengths (${previous.length} and ${length} bytes)`);
  if (length === 0) return 0;
  if ((length & 3) === 0 && (previous.byteOffset & 3) === 0 && (current.byteOffset & 3) === 0) {
    return encodeWords(previous, current, limit, out, offset);
  }
  return encodeBytes(previous, current, limit, out, offset);
}

function encodeWords(previous: Uint8Array, current: Uint8Array, limit: number, out: Uint8Array, offset: number): number {
  const length = current.length;
  const words = length >>> 2;
  // Word views of the whole underlying buffers, reused from call to call (a page is a view into a
  // slab or into guest memory: making two typed arrays per page costs more than comparing it).
  const a = wordsOf(previous.buffer, 0);
  const b = wordsOf(current.buffer, 1);
  const pa = previous.byteOffset >>> 2;
  const pb = current.byteOffset >>> 2;
  const end = offset + limit;
  let o = offset;
  let w = 0;
  let last = 0; // byte position after the previous record
  while (true) {
    // Find the next differing word: words one by one up to a block boundary, then equal stretches
    // with a native compare (first of the whole rest of the page: most resent pages changed in a word
    // or two, and identical ones in none).
    while (w < words) {
      if ((w & (BLOCK_WORDS - 1)) === 0) {
        const s = w << 2;
        if (compareRange.call(previous, current, s, length, s, length) === 0) return o - offset;
        while (w + BLOCK_WORDS <= words && compareRange.call(previous, current, w << 2, (w << 2) + BLOCK_BYTES, w << 2, (w << 2) + BLOCK_BYTES) === 0) {
          w += BLOCK_WORDS;
        }
        if (w === words) break;
      }
      if (a[pa + w] !== b[pb + w]) break;
      w++;
    }
    if (w === words) return o - offset;
    const first = w;
    w++;
    while (w < words && a[pa + w] !== b[pb + w]) w++;
    let start = first << 2;
    let stop = w << 2;
    // Word `first` and word `w - 1` differ, so both loops stop inside them.
    while (previous[start] === current[start]) start++;
    while (previous[stop - 1] === current[stop - 1]) stop--;
    o = writeRecord(current, start, stop, start - last, out, o, end);
    if (o < 0) return -1;
    last = stop;
  }
}

const wordViews: [ArrayBufferLike | undefined, ArrayBufferLike | undefined] = [undefined, undefined];
const wordArrays: [Int32Array, Int32Array] = [new Int32Array(0), new Int32Array(0)];

/** An Int32Array over all of `buffer` (whole words), cached in `slot` while the buffer stays the same. */
function wordsOf(buffer: ArrayBufferLike, slot: 0 | 1): Int32Array {
  if (wordViews[slot] !== buffer) {
    wordViews[slot] = buffer;
    wordArrays[slot] = new Int32Array(buffer, 0, buffer.byteLength >>> 2);
  }
  return wordArrays[slot];
}

function encodeBytes(previous: Uint8Array, current: Uint8Array, limit: number, out: Uint8Array, offset: number): number {
  const length = current.length;
  const end = offset + limit;
  let o = offset;
  let i = 0;
  let last = 0;
  while (true) {
    while (i < length && previous[i] === current[i]) i++;
    if (i === length) return o - offset;
    const start = i;
    i++;
    // A gap of one equal byte costs less inside the run than a new record (two varint bytes).
    while (i < length && (previous[i] !== current[i] || (i + 1 < length && previous[i + 1] !== current[i + 1]))) i++;
    o = writeRecord(current, start, i, start - last, out, o, end);
    if (o < 0) return -1;
    last = i;
  }
}

/** Writes one record; returns the new output position, or -1 if it would pass `end`. */
function writeRecord(current: Uint8Array, start: number, stop: number, unchanged: number, out: Uint8Array, o: number, end: number): number {
  const changed = stop - start;
  if (o + varintLength(unchanged) + varintLength(changed) + changed > end) return -1;
  o = writeVarint(out, o, unchanged);
  o = writeVarint(out, o, changed);
  if (changed <= 32) {
    for (let k = start; k < stop; k++) out[o++] = current[k]!;
  } else {
    out.set(current.subarray(start, stop), o);
    o += changed;
  }
  return o;
}

function varintLength(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x20_0000 ? 3 : v < 0x1000_0000 ? 4 : 5;
}

function writeVarint(out: Uint8Array, o: number, v: number): number {
  while (v >= 0x80) {
    out[o++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[o++] = v;
  return o;
}

/**
 * Applies `delta` to `previous` and returns the new page. With `target` (same length as `previous`),
 * the page is written there and `target` is returned; `target` may be `previous` itself (in place).
 * Without it, a new array is returned and `previous` is left alone.
 *
 * The whole delta is checked before anything is written: on a malformed or truncated delta a
 * CodecError is thrown and `target` is untouched. Runs in time linear in the delta and page lengths.
 */
export function decodeDelta(previous: Uint8Array, delta: Uint8Array, target?: Uint8Array): Uint8Array {
  validateDelta(delta, previous.length);
  if (target === undefined) {
    target = previous.slice();
  } else {
    if (target.length !== previous.length) {
      throw new CodecError(`delta target of ${target.length} bytes for a page of ${previous.length} bytes`);
    }
    if (target !== previous) target.set(previous);
  }
  applyValidDelta(delta, target);
  return target;
}

/**
 * Checks that `delta` is well formed for a page of `pageLength` bytes: every varint complete and at
 * most 5 bytes, every changed run non-empty and present in full, every run inside the page. Throws a
 * CodecError naming the first problem.
 */
export function validateDelta(delta: Uint8Array, pageLength: number): void {
  const length = delta.length;
  let p = 0;
  let pos = 0;
  while (p < length) {
    const unchanged = readVarint(delta, p, "unchanged run length");
    p = varintEnd;
    if (unchanged > pageLength - pos) throw new CodecError(`delta corrupt: unchanged run of ${unchanged} bytes at page offset ${pos} passes the end of a ${pageLength}-byte page`);
    pos += unchanged;
    const changed = readVarint(delta, p, "changed run length");
    p = varintEnd;
    if (changed === 0) throw new CodecError(`delta corrupt: empty changed run at delta offset ${p - 1}`);
    if (changed > pageLength - pos) throw new CodecError(`delta corrupt: changed run of ${changed} bytes at page offset ${pos} passes the end of a ${pageLength}-byte page`);
    if (changed > length - p) throw new CodecError(`delta truncated: changed run of ${changed} bytes at delta offset ${p} has only ${length - p} bytes`);
    p += changed;
    pos += changed;
  }
}

/**
 * Applies a delta already checked by validateDelta to `page` in place, first copying the bytes it
 * overwrites to `undo` (which must hold `delta.length` bytes: a delta carries every byte it writes),
 * so that `undoDelta` can put them back. Costs only the bytes the delta changes.
 */
export function applyDeltaInPlace(delta: Uint8Array, page: Uint8Array, undo: Uint8Array): void {
  const length = delta.length;
  let p = 0;
  let pos = 0;
  let u = 0;
  while (p < length) {
    pos += readVarint(delta, p, "");
    const changed = readVarint(delta, varintEnd, "");
    p = varintEnd;
    if (changed <= 32) {
      for (let k = 0; k < changed; k++) {
        undo[u++] = page[pos + k]!;
        page[pos + k] = delta[p + k]!;
      }
    } else {
      undo.set(page.subarray(pos, pos + changed), u);
      u += changed;
      page.set(delta.subarray(p, p + changed), pos);
    }
    p += changed;
    pos += changed;
  }
}

/** Puts back the bytes `applyDeltaInPlace(delta, page, undo)` overwrote. */
export function undoDelta(delta: Uint8Array, page: Uint8Array, undo: Uint8Array): void {
  const length = delta.length;
  let p = 0;
  let pos = 0;
  let u = 0;
  while (p < length) {
    pos += readVarint(delta, p, "");
    const changed = readVarint(delta, varintEnd, "");
    p = varintEnd;
    page.set(undo.subarray(u, u + changed), pos);
    u += changed;
    p += changed;
    pos += changed;
  }
}

/** Writes a delta already checked by validateDelta (or just made by the encoder) into `target` (holding the previous page). */
export function applyValidDelta(delta: Uint8Array, target: Uint8Array): void {
  const length = delta.length;
  let p = 0;
  let pos = 0;
  while (p < length) {
    pos += readVarint(delta, p, "");
    const changed = readVarint(delta, varintEnd, "");
    p = varintEnd;
    if (changed <= 32) {
      for (let k = 0; k < changed; k++) target[pos + k] = delta[p + k]!;
    } else {
      target.set(delta.subarray(p, p + changed), pos);
    }
    p += changed;
    pos += changed;
  }
}

/** Position after the varint last read by readVarint (a module variable, so reads allocate nothing). */
let varintEnd = 0;

function readVarint(data: Uint8Array, p: number, what: string): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < VARINT_BYTES_MAX; i++) {
    if (p >= data.length) throw new CodecError(`delta truncated: ${what} at delta offset ${p} is cut off`);
    const byte = data[p++]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) {
      varintEnd = p;
      return value;
    }
    scale *= 128;
  }
  throw new CodecError(`delta corrupt: ${what} at delta offset ${p - VARINT_BYTES_MAX} is longer than ${VARINT_BYTES_MAX} bytes`);
}

function checkLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 0) throw new CodecError(`delta limit must be a byte count, got ${limit}`);
}
