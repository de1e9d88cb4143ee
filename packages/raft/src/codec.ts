import * as zlib from "node:zlib";
import type { ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot, SnapshotMetadata } from "./types.js";

/**
 * Binary encodings of the shared vocabulary (types.ts), for the wire and for the WAL.
 *
 * Layout rules, the same for every type:
 *  - little-endian; `u8`, `u32`, and `u64` for terms and indexes (a u64 holding a non-negative safe
 *    integer, i.e. < 2^53: written as low u32 then high u32, rejected on decode above 2^53 - 1);
 *  - byte strings are `[length u32][bytes]`, text is the same over UTF-8 (well-formed only);
 *  - lists are `[count u32][item]*`;
 *  - a `Message` starts with a format version byte (`MESSAGE_FORMAT_VERSION`); the other encodings
 *    are embedded in versioned containers (messages, WAL segments, snapshot files) and carry none.
 *
 * Decoding is total: it returns a value only if the input is exactly one well-formed encoding
 * (no trailing bytes) and otherwise throws `CodecError` naming the field that failed. Encoding
 * throws `CodecError` for values that cannot round-trip (a negative or fractional index, an unknown
 * enum value, a string with a lone surrogate), so garbage is never written.
 * Decoded byte fields are copies: they never alias the input buffer.
 */

/** Version byte leading every encoded `Message`. Decoders reject any other value. */
export const MESSAGE_FORMAT_VERSION = 1;

const TWO_POW_32 = 0x1_0000_0000;
/** Largest high word of a safe integer: 2^53 - 1 = 0x1f_ffff * 2^32 + 0xffff_ffff. */
const U64_SAFE_HIGH_MAX = 0x1f_ffff;
/** Highest MessageType value (SnapStatus). */
const MESSAGE_TYPE_MAX = 18;
const ENTRY_TYPE_MAX = 1;
/** Smallest possible encodings, used to reject absurd counts before looping over them. */
const ENTRY_BYTES_MIN = 8 + 8 + 1 + 4;
const STRING_BYTES_MIN = 4;

/** Input that is not a well-formed encoding, or a value that cannot be encoded. */
export class CodecError extends Error {
  override readonly name = "CodecError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** An append-only little-endian byte buffer that grows as needed. */
export class ByteWriter {
  private buf: Uint8Array;
  private view: DataView;
  private len = 0;

  constructor(initialCapacityBytes = 256) {
    this.buf = new Uint8Array(Math.max(16, initialCapacityBytes));
    this.view = new DataView(this.buf.buffer);
  }

  get lengthBytes(): number {
    return this.len;
  }

  private reserve(n: number): void {
    const need = this.len + n;
    if (need <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < need) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(value: number, field: string): void {
    if (!Number.isInteger(value) || value < 0 || value > 0xff) throw new CodecError(`${field}: ${value} is not a u8`);
    this.reserve(1);
    this.buf[this.len++] = value;
  }

  u32(value: number, field: string): void {
    if (!Number.isInteger(value) || value < 0 || value >= TWO_POW_32) throw new CodecError(`${field}: ${value} is not a u32`);
    this.reserve(4);
    this.view.setUint32(this.len, value, true);
    this.len += 4;
  }

  /** A non-negative safe integer as a u64 (low word first). */
  u64(value: number, field: string): void {
    if (!Number.isSafeInteger(value) || value < 0) throw new CodecError(`${field}: ${value} is not a non-negative safe integer`);
    this.reserve(8);
    this.view.setUint32(this.len, value % TWO_POW_32, true);
    this.view.setUint32(this.len + 4, Math.floor(value / TWO_POW_32), true);
    this.len += 8;
  }

  bool(value: boolean, field: string): void {
    if (typeof value !== "boolean") throw new CodecError(`${field}: ${String(value)} is not a boolean`);
    this.u8(value ? 1 : 0, field);
  }

  /** `[length u32][bytes]`. */
  bytes(value: Uint8Array, field: string): void {
    if (!(value instanceof Uint8Array)) throw new CodecError(`${field}: not a Uint8Array`);
    this.u32(value.length, `${field}.length`);
    this.raw(value);
  }

  /** `[length u32][utf-8]`; rejects strings that UTF-8 cannot carry unchanged (lone surrogates). */
  string(value: string, field: string): void {
    if (typeof value !== "string") throw new CodecError(`${field}: not a string`);
    if (LONE_SURROGATE.test(value)) throw new CodecError(`${field}: string has a lone surrogate and cannot round-trip through UTF-8`);
    this.bytes(textEncoder.encode(value), field);
  }

  /** Bytes with no length prefix. */
  raw(value: Uint8Array): void {
    this.reserve(value.length);
    this.buf.set(value, this.len);
    this.len += value.length;
  }

  /** Overwrites a u32 written earlier at `offsetBytes` (e.g. a length known only at the end). */
  patchU32(offsetBytes: number, value: number): void {
    if (offsetBytes < 0 || offsetBytes + 4 > this.len) throw new RangeError(`ByteWriter.patchU32: offset ${offsetBytes} outside 0..${this.len - 4}`);
    if (!Number.isInteger(value) || value < 0 || value >= TWO_POW_32) throw new CodecError(`patchU32: ${value} is not a u32`);
    this.view.setUint32(offsetBytes, value, true);
  }

  /** The bytes written so far (a view: writing more afterwards may or may not show through). */
  finish(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

/** Reads what ByteWriter writes; every read names its field so failures say where input was bad. */
export class ByteReader {
  private readonly view: DataView;
  private pos = 0;

  /** `what` names the whole value being decoded, for error messages ("Message", "WAL record"). */
  constructor(private readonly input: Uint8Array, private readonly what: string) {
    this.view = new DataView(input.buffer, input.byteOffset, input.byteLength);
  }

  get offsetBytes(): number {
    return this.pos;
  }

  get remainingBytes(): number {
    return this.input.length - this.pos;
  }

  private need(n: number, field: string): void {
    if (this.pos + n > this.input.length) {
      throw new CodecError(`${this.what}: truncated at ${field} (offset ${this.pos}, needs ${n} bytes, ${this.input.length - this.pos} left)`);
    }
  }

  u8(field: string): number {
    this.need(1, field);
    return this.input[this.pos++]!;
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  u64(field: string): number {
    this.need(8, field);
    const lo = this.view.getUint32(this.pos, true);
    const hi = this.view.getUint32(this.pos + 4, true);
    if (hi > U64_SAFE_HIGH_MAX) throw new CodecError(`${this.what}: ${field} at offset ${this.pos} exceeds 2^53 - 1`);
    this.pos += 8;
    return hi * TWO_POW_32 + lo;
  }

  bool(field: string): boolean {
    const at = this.pos;
    const v = this.u8(field);
    if (v > 1) throw new CodecError(`${this.what}: ${field} at offset ${at} is ${v}, not a boolean`);
    return v === 1;
  }

  /** A count of items, each at least `itemBytesMin` long, checked against what is left. */
  count(field: string, itemBytesMin: number): number {
    const at = this.pos;
    const n = this.u32(field);
    if (n * itemBytesMin > this.remainingBytes) {
      throw new CodecError(`${this.what}: ${field} ${n} at offset ${at} is beyond the buffer (${this.remainingBytes} bytes left)`);
    }
    return n;
  }

  /** `[length u32][bytes]`, returned as a copy. */
  bytes(field: string): Uint8Array {
    const at = this.pos;
    const n = this.u32(`${field}.length`);
    if (n > this.remainingBytes) {
      throw new CodecError(`${this.what}: ${field} length ${n} at offset ${at} is beyond the buffer (${this.remainingBytes} bytes left)`);
    }
    const out = this.input.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  string(field: string): string {
    const at = this.pos;
    const b = this.bytes(field);
    try {
      return textDecoder.decode(b);
    } catch (err) {
      throw new CodecError(`${this.what}: ${field} at offset ${at} is not valid UTF-8`, { cause: err });
    }
  }

  /** `n` bytes with no length prefix, as a view into the input (not a copy). */
  rawView(n: number, field: string): Uint8Array {
    this.need(n, field);
    const out = this.input.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** Asserts that the whole input was consumed. */
  end(): void {
    if (this.pos !== this.input.length) {
      throw new CodecError(`${this.what}: ${this.input.length - this.pos} trailing bytes after offset ${this.pos}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Field-level writers and readers, shared by the top-level codecs, the WAL and the snapshot store.

export function writeEntry(w: ByteWriter, e: Entry, field = "entry"): void {
  w.u64(e.term, `${field}.term`);
  w.u64(e.index, `${field}.index`);
  if (!Number.isInteger(e.type) || e.type < 0 || e.type > ENTRY_TYPE_MAX) throw new CodecError(`${field}.type: unknown entry type ${e.type}`);
  w.u8(e.type, `${field}.type`);
  w.bytes(e.data, `${field}.data`);
}

export function readEntry(r: ByteReader, field = "entry"): Entry {
  const term = r.u64(`${field}.term`);
  const index = r.u64(`${field}.index`);
  const at = r.offsetBytes;
  const type = r.u8(`${field}.type`);
  if (type > ENTRY_TYPE_MAX) throw new CodecError(`${field}.type: unknown entry type ${type} at offset ${at}`);
  const data = r.bytes(`${field}.data`);
  return { term, index, type: type as EntryType, data };
}

export function writeEntries(w: ByteWriter, entries: readonly Entry[], field = "entries"): void {
  w.u32(entries.length, `${field}.count`);
  for (let i = 0; i < entries.length; i++) writeEntry(w, entries[i]!, `${field}[${i}]`);
}

export function readEntries(r: ByteReader, field = "entries"): Entry[] {
  const n = r.count(`${field}.count`, ENTRY_BYTES_MIN);
  const out: Entry[] = new Array<Entry>(n);
  for (let i = 0; i < n; i++) out[i] = readEntry(r, `${field}[${i}]`);
  return out;
}

export function writeHardState(w: ByteWriter, hs: HardState, field = "hardState"): void {
  w.u64(hs.term, `${field}.term`);
  w.string(hs.vote, `${field}.vote`);
  w.u64(hs.commit, `${field}.commit`);
}

export function readHardState(r: ByteReader, field = "hardState"): HardState {
  const term = r.u64(`${field}.term`);
  const vote = r.string(`${field}.vote`);
  const commit = r.u64(`${field}.commit`);
  return { term, vote, commit };
}

function writeStrings(w: ByteWriter, values: readonly string[], field: string): void {
  w.u32(values.length, `${field}.count`);
  for (let i = 0; i < values.length; i++) w.string(values[i]!, `${field}[${i}]`);
}

function readStrings(r: ByteReader, field: string): string[] {
  const n = r.count(`${field}.count`, STRING_BYTES_MIN);
  const out: string[] = new Array<string>(n);
  for (let i = 0; i < n; i++) out[i] = r.string(`${field}[${i}]`);
  return out;
}

export function writeConfState(w: ByteWriter, cs: ConfState, field = "confState"): void {
  writeStrings(w, cs.voters, `${field}.voters`);
  writeStrings(w, cs.learners, `${field}.learners`);
}

export function readConfState(r: ByteReader, field = "confState"): ConfState {
  const voters = readStrings(r, `${field}.voters`);
  const learners = readStrings(r, `${field}.learners`);
  return { voters, learners };
}

export function writeSnapshotMetadata(w: ByteWriter, m: SnapshotMetadata, field = "metadata"): void {
  w.u64(m.index, `${field}.index`);
  w.u64(m.term, `${field}.term`);
  writeConfState(w, m.confState, `${field}.confState`);
}

export function readSnapshotMetadata(r: ByteReader, field = "metadata"): SnapshotMetadata {
  const index = r.u64(`${field}.index`);
  const term = r.u64(`${field}.term`);
  const confState = readConfState(r, `${field}.confState`);
  return { index, term, confState };
}

export function writeSnapshot(w: ByteWriter, s: Snapshot, field = "snapshot"): void {
  writeSnapshotMetadata(w, s.metadata, `${field}.metadata`);
  w.bytes(s.data, `${field}.data`);
}

export function readSnapshot(r: ByteReader, field = "snapshot"): Snapshot {
  const metadata = readSnapshotMetadata(r, `${field}.metadata`);
  const data = r.bytes(`${field}.data`);
  return { metadata, data };
}

const FLAG_REJECT = 1;
const FLAG_SNAPSHOT = 2;

export function writeMessage(w: ByteWriter, m: Message): void {
  w.u8(MESSAGE_FORMAT_VERSION, "version");
  if (!Number.isInteger(m.type) || m.type < 0 || m.type > MESSAGE_TYPE_MAX) throw new CodecError(`type: unknown message type ${m.type}`);
  w.u8(m.type, "type");
  w.string(m.to, "to");
  w.string(m.from, "from");
  w.u64(m.term, "term");
  w.u64(m.logTerm, "logTerm");
  w.u64(m.index, "index");
  w.u64(m.commit, "commit");
  w.u64(m.rejectHint, "rejectHint");
  if (typeof m.reject !== "boolean") throw new CodecError(`reject: ${String(m.reject)} is not a boolean`);
  w.u8((m.reject ? FLAG_REJECT : 0) | (m.snapshot !== null ? FLAG_SNAPSHOT : 0), "flags");
  w.bytes(m.context, "context");
  writeEntries(w, m.entries, "entries");
  if (m.snapshot !== null) writeSnapshot(w, m.snapshot, "snapshot");
}

export function readMessage(r: ByteReader): Message {
  const version = r.u8("version");
  if (version !== MESSAGE_FORMAT_VERSION) throw new CodecError(`Message: unsupported format version ${version} (expected ${MESSAGE_FORMAT_VERSION})`);
  const type = r.u8("type");
  if (type > MESSAGE_TYPE_MAX) throw new CodecError(`Message: unknown message type ${type}`);
  const to = r.string("to");
  const from = r.string("from");
  const term = r.u64("term");
  const logTerm = r.u64("logTerm");
  const index = r.u64("index");
  const commit = r.u64("commit");
  const rejectHint = r.u64("rejectHint");
  const flags = r.u8("flags");
  if ((flags & ~(FLAG_REJECT | FLAG_SNAPSHOT)) !== 0) throw new CodecError(`Message: unknown flags 0x${flags.toString(16)}`);
  const context = r.bytes("context");
  const entries = readEntries(r, "entries");
  const snapshot = (flags & FLAG_SNAPSHOT) !== 0 ? readSnapshot(r, "snapshot") : null;
  return {
    type: type as MessageType, to, from, term, logTerm, index, entries, commit, snapshot,
    reject: (flags & FLAG_REJECT) !== 0, rejectHint, context,
  };
}

// ---------------------------------------------------------------------------------------------
// Top-level codecs: one value per buffer, no trailing bytes.

function encodeWith<T>(value: T, write: (w: ByteWriter, v: T) => void): Uint8Array {
  const w = new ByteWriter();
  write(w, value);
  return w.finish();
}

function decodeWith<T>(bytes: Uint8Array, what: string, read: (r: ByteReader) => T): T {
  if (!(bytes instanceof Uint8Array)) throw new CodecError(`${what}: input is not a Uint8Array`);
  const r = new ByteReader(bytes, what);
  const v = read(r);
  r.end();
  return v;
}

export function encodeMessage(m: Message): Uint8Array {
  return encodeWith(m, writeMessage);
}

export function decodeMessage(bytes: Uint8Array): Message {
  return decodeWith(bytes, "Message", readMessage);
}

export function encodeEntry(e: Entry): Uint8Array {
  return encodeWith(e, (w, v) => writeEntry(w, v));
}

export function decodeEntry(bytes: Uint8Array): Entry {
  return decodeWith(bytes, "Entry", (r) => readEntry(r));
}

export function encodeEntries(entries: readonly Entry[]): Uint8Array {
  return encodeWith(entries, (w, v) => writeEntries(w, v));
}

export function decodeEntries(bytes: Uint8Array): Entry[] {
  return decodeWith(bytes, "Entries", (r) => readEntries(r));
}

export function encodeHardState(hs: HardState): Uint8Array {
  return encodeWith(hs, (w, v) => writeHardState(w, v));
}

export function decodeHardState(bytes: Uint8Array): HardState {
  return decodeWith(bytes, "HardState", (r) => readHardState(r));
}

export function encodeConfState(cs: ConfState): Uint8Array {
  return encodeWith(cs, (w, v) => writeConfState(w, v));
}

export function decodeConfState(bytes: Uint8Array): ConfState {
  return decodeWith(bytes, "ConfState", (r) => readConfState(r));
}

export function encodeSnapshotMetadata(m: SnapshotMetadata): Uint8Array {
  return encodeWith(m, (w, v) => writeSnapshotMetadata(w, v));
}

export function decodeSnapshotMetadata(bytes: Uint8Array): SnapshotMetadata {
  return decodeWith(bytes, "SnapshotMetadata", (r) => readSnapshotMetadata(r));
}

export function encodeSnapshot(s: Snapshot): Uint8Array {
  return encodeWith(s, (w, v) => writeSnapshot(w, v));
}

export function decodeSnapshot(bytes: Uint8Array): Snapshot {
  return decodeWith(bytes, "Snapshot", (r) => readSnapshot(r));
}

// ---------------------------------------------------------------------------------------------
// CRC-32 (IEEE 802.3, the zlib/PNG polynomial), used by the WAL and the snapshot files.

let crcTable: Uint32Array | null = null;

function table(): Uint32Array {
  if (crcTable !== null) return crcTable;
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  crcTable = t;
  return t;
}

/** Table-driven CRC-32; the fallback when `zlib.crc32` (Node ≥ 20.15) is missing. */
export function crc32Portable(data: Uint8Array, previous = 0): number {
  const t = table();
  let c = (previous ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) c = t[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const nativeCrc32: ((data: Uint8Array, value?: number) => number) | undefined =
  typeof (zlib as { crc32?: unknown }).crc32 === "function" ? zlib.crc32 : undefined;

/** CRC-32 of `data`, continuing from `previous` (the CRC of the bytes before it), as a u32. */
export function crc32(data: Uint8Array, previous = 0): number {
  return nativeCrc32 !== undefined ? nativeCrc32(data, previous) >>> 0 : crc32Portable(data, previous);
}
