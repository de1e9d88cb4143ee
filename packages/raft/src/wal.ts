import {
  ByteReader, ByteWriter, CodecError, crc32, readEntries, readHardState, writeEntries, writeHardState,
} from "./codec.js";
import { type Fd, type FileSystem, joinPath, parentPath } from "./fs.js";
import { EMPTY_HARD_STATE, type Entry, type HardState } from "./types.js";

/**
 * The write-ahead log: Raft's entries, hard state and snapshot markers, appended to segment files in
 * one directory.
 *
 * Files: `<seq>-<firstIndex>.wal`, both 16-digit zero-padded decimals; `seq` counts segments from 1,
 * `firstIndex` is the WAL's last index + 1 when the segment was started. A segment grows to about
 * `segmentSizeBytes` (a new one is started before a write once the current one reached it).
 *
 * Records: `[length u32][crc32 u32][type u8][payload]`, little-endian; `length` counts type and
 * payload, the CRC-32 covers them. Each segment starts with a header record holding the format
 * version, the segment's sequence number, the WAL's `meta`, and the state at the moment the segment
 * was started (last index and term, snapshot marker, hard state): so a segment can be read without
 * the ones before it, which lets `releaseTo` delete old segments, and so the header is checked against
 * what replaying the previous segments produced (a pair assertion). Then entries, hard-state and
 * snapshot-marker records follow in the order they were saved.
 *
 * Replay applies Raft's rules: appended entries replace any entries at the same or higher index;
 * a snapshot marker (index, term) keeps the entries after it if the log has an entry with that index
 * and term and drops the whole log otherwise (Raft §7). It also checks, as on every write, that the
 * log never has a gap, never rewrites at or below the snapshot marker or the commit index, that entry
 * terms never decrease, that the hard state's term and commit never decrease, that a vote is never
 * changed within a term and that commit never exceeds the last index. A violation on write throws
 * `WalInvariantError` and writes nothing; on replay it throws `WalCorruptError`.
 *
 * Recovery: a damaged record at the end of the last segment is the trace of a crash during a write
 * (incomplete header or payload, CRC mismatch, zeros from preallocation): the file is truncated
 * before it and synced, and `repaired` says so. Damage anywhere else — in an earlier segment, or
 * followed by a valid record — is not a crash trace and throws `WalCorruptError`: data that was
 * acknowledged may be missing, and skipping it silently could break Raft's safety.
 *
 * After any file system error the WAL refuses further use (`WalError`): after a failed write or
 * fsync the state of the file is unknown; reopening it runs recovery.
 */

/** On-disk format version. Readers accept the same major and a minor up to theirs. */
export const WAL_FORMAT_MAJOR = 1;
export const WAL_FORMAT_MINOR = 0;
export const WAL_SEGMENT_SIZE_BYTES_DEFAULT = 64 * 1024 * 1024;
/** A single record (one save's entries) may not exceed this. */
export const WAL_RECORD_BYTES_MAX = 256 * 1024 * 1024;
/** "HFWL" */
const SEGMENT_MAGIC = 0x4c57_4648;
const RECORD_HEADER_BYTES = 8;
/** CRC work allowed when checking whether valid records follow a damaged one. */
const TAIL_SCAN_BUDGET_BYTES = 256 * 1024 * 1024;

const enum RecordType {
  SegmentHeader = 1,
  Entries = 2,
  HardState = 3,
  SnapshotMarker = 4,
}
const RECORD_TYPE_MAX = 4;

const SEGMENT_NAME = /^(\d{16})-(\d{16})\.wal$/;

/** The snapshot the log starts after: entries at or below `index` are not in the WAL. */
export interface WalSnapshotMarker {
  readonly index: number;
  readonly term: number;
}

export interface WalOptions {
  /** Start a new segment once the current one holds this many bytes. Default 64 MiB. */
  readonly segmentSizeBytes?: number;
}

/** The tail that recovery cut from the last segment. */
export interface WalRepair {
  /** File name of the segment. */
  readonly segment: string;
  /** Where the damaged record started; the file now ends there (0: the whole segment was removed). */
  readonly offsetBytes: number;
  readonly truncatedBytes: number;
  /** What was wrong with the first damaged record. */
  readonly reason: string;
  /** The segment held no complete header and was removed (it was being started during the crash). */
  readonly removedSegment: boolean;
}

/** What replay found. */
export interface WalReplay {
  readonly hardState: HardState;
  /** The log after `snapshot.index`, contiguous from `snapshot.index + 1`. */
  readonly entries: Entry[];
  readonly snapshot: WalSnapshotMarker;
  readonly meta: Uint8Array;
  readonly repaired: WalRepair | null;
}

export class WalError extends Error {
  override readonly name: string = "WalError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The WAL's content is damaged or inconsistent in a way that is not the trace of a crash. */
export class WalCorruptError extends WalError {
  override readonly name = "WalCorruptError";
  constructor(readonly segment: string, readonly offsetBytes: number, readonly reason: string, options?: { cause?: unknown }) {
    super(`WAL segment ${segment} corrupt at offset ${offsetBytes}: ${reason}`, options);
  }
}

/** A save would break one of the log's invariants; nothing was written. */
export class WalInvariantError extends WalError {
  override readonly name = "WalInvariantError";
}

interface Segment {
  readonly seq: number;
  readonly firstIndex: number;
  readonly name: string;
  readonly path: string;
  /** Highest entry index written in this segment (0 if none). */
  maxIndex: number;
}

interface SegmentHeader {
  readonly major: number;
  readonly minor: number;
  readonly seq: number;
  readonly lastIndex: number;
  readonly lastTerm: number;
  readonly marker: WalSnapshotMarker;
  readonly hardState: HardState;
  readonly meta: Uint8Array;
}

/**
 * The shape of the log as the WAL's records define it, replayed the same way on write (to check
 * before writing) and on open (to check after reading). Entry data is kept only while replaying.
 *
 * Indexes: `markerIndex ≤ baseIndex ≤ lastIndex`. Entries in `(baseIndex, lastIndex]` are known
 * (their terms in `runs`); entries in `(markerIndex, baseIndex)` were in segments deleted by
 * `releaseTo` and must be covered by a later snapshot marker by the end of a replay.
 */
class LogTracker {
  markerIndex = 0;
  markerTerm = 0;
  baseIndex = 0;
  /** Term at `baseIndex`, or -1 if unknown. */
  baseTerm = 0;
  lastIndex = 0;
  hardState: HardState = EMPTY_HARD_STATE;
  /** Term runs over `(baseIndex, lastIndex]`: run i covers `[runs[i].index, runs[i+1].index)`. */
  private runs: { index: number; term: number }[] = [];
  /** Entries `(baseIndex, lastIndex]`, only while replaying. */
  entries: Entry[] | null = null;

  static fromHeader(h: SegmentHeader, collectEntries: boolean): LogTracker {
    const t = new LogTracker();
    t.markerIndex = h.marker.index;
    t.markerTerm = h.marker.term;
    t.baseIndex = h.lastIndex;
    t.baseTerm = h.lastTerm;
    t.lastIndex = h.lastIndex;
    t.hardState = h.hardState;
    t.entries = collectEntries ? [] : null;
    return t;
  }

  /** The term of the entry at `index`, or undefined if it is not known. */
  termAt(index: number): number | undefined {
    if (index === this.baseIndex) return this.baseTerm >= 0 ? this.baseTerm : index === this.markerIndex ? this.markerTerm : undefined;
    if (index === this.markerIndex) return this.markerTerm;
    if (index < this.baseIndex || index > this.lastIndex) return undefined;
    let lo = 0;
    let hi = this.runs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.runs[mid]!.index <= index) lo = mid;
      else hi = mid - 1;
    }
    return this.runs[lo]!.term;
  }

  /** Why appending `entries` would break the log's invariants, or null. */
  checkAppend(entries: readonly Entry[]): string | null {
    if (entries.length === 0) return null;
    const first = entries[0]!;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (!Number.isSafeInteger(e.index) || e.index < 1 || !Number.isSafeInteger(e.term) || e.term < 0) {
        return `entry ${i} has index ${e.index} and term ${e.term}: not non-negative safe integers`;
      }
      if (i > 0 && e.index !== entries[i - 1]!.index + 1) return `entries not contiguous: ${entries[i - 1]!.index} then ${e.index}`;
      if (i > 0 && e.term < entries[i - 1]!.term) return `entry terms decrease: term ${entries[i - 1]!.term} at ${e.index - 1}, term ${e.term} at ${e.index}`;
    }
    if (first.index <= this.markerIndex) return `entry ${first.index} is at or below the snapshot marker ${this.markerIndex}`;
    if (first.index > this.lastIndex + 1) return `gap: entry ${first.index} follows last index ${this.lastIndex}`;
    if (first.index <= this.hardState.commit) return `entry ${first.index} would replace committed entry ${first.index} (commit ${this.hardState.commit})`;
    const prevTerm = this.termAt(first.index - 1);
    if (prevTerm !== undefined && first.term < prevTerm) return `entry ${first.index} has term ${first.term} below the previous entry's term ${prevTerm}`;
    return null;
  }

  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    if (first <= this.baseIndex) {
      // A rewrite into or just after the released region: nothing known survives.
      this.baseTerm = first - 1 === this.markerIndex ? this.markerTerm : -1;
      this.baseIndex = first - 1;
      this.runs = [];
      if (this.entries !== null) this.entries.length = 0;
    } else {
      while (this.runs.length > 0 && this.runs[this.runs.length - 1]!.index >= first) this.runs.pop();
      if (this.entries !== null) this.entries.length = first - this.baseIndex - 1;
    }
    for (const e of entries) {
      const lastRun = this.runs[this.runs.length - 1];
      if (lastRun === undefined || lastRun.term !== e.term) this.runs.push({ index: e.index, term: e.term });
      if (this.entries !== null) this.entries.push(e);
    }
    this.lastIndex = entries[entries.length - 1]!.index;
  }

  checkMarker(m: WalSnapshotMarker): string | null {
    if (!Number.isSafeInteger(m.index) || m.index < 0 || !Number.isSafeInteger(m.term) || m.term < 0) {
      return `snapshot marker (${m.index}, ${m.term}) is not made of non-negative safe integers`;
    }
    if (m.index < this.markerIndex) return `snapshot marker ${m.index} is below the previous marker ${this.markerIndex}`;
    if (m.term < this.markerTerm) return `snapshot marker term ${m.term} is below the previous marker's term ${this.markerTerm}`;
    if (m.index === this.markerIndex && m.term !== this.markerTerm) {
      return `snapshot marker (${m.index}, ${m.term}) contradicts the previous marker (${this.markerIndex}, ${this.markerTerm})`;
    }
    return null;
  }

  marker(m: WalSnapshotMarker): void {
    const inReleasedRegion = m.index > this.markerIndex && m.index < this.baseIndex;
    if (inReleasedRegion) {
      // The entry at m.index was released: it cannot be compared, and a later marker must cover the region.
    } else if (this.termAt(m.index) === m.term) {
      if (m.index > this.baseIndex) {
        if (this.entries !== null) this.entries.splice(0, m.index - this.baseIndex);
        let i = 0;
        while (i + 1 < this.runs.length && this.runs[i + 1]!.index <= m.index + 1) i++;
        this.runs.splice(0, i);
        if (this.runs.length > 0) this.runs[0] = { index: m.index + 1, term: this.runs[0]!.term };
        if (m.index === this.lastIndex) this.runs = [];
        this.baseIndex = m.index;
        this.baseTerm = m.term;
      } else if (m.index === this.baseIndex) {
        this.baseTerm = m.term;
      }
    } else {
      this.baseIndex = m.index;
      this.baseTerm = m.term;
      this.lastIndex = m.index;
      this.runs = [];
      if (this.entries !== null) this.entries.length = 0;
    }
    this.markerIndex = m.index;
    this.markerTerm = m.term;
  }

  /** Why `hs` cannot follow the current hard state once the log ends at `lastIndex`, or null. */
  checkHardState(hs: HardState, lastIndex: number): string | null {
    if (!Number.isSafeInteger(hs.term) || hs.term < 0 || !Number.isSafeInteger(hs.commit) || hs.commit < 0) {
      return `hard state (term ${hs.term}, commit ${hs.commit}) is not made of non-negative safe integers`;
    }
    const prev = this.hardState;
    if (hs.term < prev.term) return `hard state term goes back from ${prev.term} to ${hs.term}`;
    if (hs.term === prev.term && prev.vote !== "" && hs.vote !== prev.vote) {
      return `vote changes within term ${hs.term} from "${prev.vote}" to "${hs.vote}"`;
    }
    if (hs.commit < prev.commit) return `commit goes back from ${prev.commit} to ${hs.commit}`;
    if (hs.commit > lastIndex) return `commit ${hs.commit} is beyond the last index ${lastIndex}`;
    return null;
  }
}

type RecordParse =
  | { readonly ok: true; readonly type: RecordType; readonly body: Uint8Array; readonly end: number }
  | { readonly ok: false; readonly reason: string };

function parseRecord(bytes: Uint8Array, view: DataView, at: number): RecordParse {
  const left = bytes.length - at;
  if (left < RECORD_HEADER_BYTES) return { ok: false, reason: `incomplete record header (${left} bytes)` };
  const length = view.getUint32(at, true);
  if (length === 0) return { ok: false, reason: "zero record length" };
  if (length > WAL_RECORD_BYTES_MAX) return { ok: false, reason: `record length ${length} above the maximum` };
  if (length > left - RECORD_HEADER_BYTES) return { ok: false, reason: `record length ${length} extends beyond the end of the file` };
  const body = bytes.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + length);
  const expected = view.getUint32(at + 4, true);
  const actual = crc32(body);
  if (actual !== expected) return { ok: false, reason: `CRC mismatch (stored 0x${expected.toString(16)}, computed 0x${actual.toString(16)})` };
  return { ok: true, type: body[0]! as RecordType, body, end: at + RECORD_HEADER_BYTES + length };
}

/** The offset of the first valid record after `from`, null if none, "unknown" if the budget ran out. */
function findValidRecord(bytes: Uint8Array, view: DataView, from: number): number | null | "unknown" {
  let budget = TAIL_SCAN_BUDGET_BYTES;
  for (let p = from; p + RECORD_HEADER_BYTES < bytes.length; p++) {
    const length = view.getUint32(p, true);
    if (length === 0 || length > bytes.length - p - RECORD_HEADER_BYTES) continue;
    const type = bytes[p + RECORD_HEADER_BYTES]!;
    if (type < 1 || type > RECORD_TYPE_MAX) continue;
    budget -= length;
    if (budget < 0) return "unknown";
    if (crc32(bytes.subarray(p + RECORD_HEADER_BYTES, p + RECORD_HEADER_BYTES + length)) === view.getUint32(p + 4, true)) return p;
  }
  return null;
}

function frame(w: ByteWriter, type: RecordType, writeBody: (w: ByteWriter) => void): void {
  const start = w.lengthBytes;
  w.u32(0, "record.length");
  w.u32(0, "record.crc");
  w.u8(type, "record.type");
  writeBody(w);
  const length = w.lengthBytes - start - RECORD_HEADER_BYTES;
  if (length > WAL_RECORD_BYTES_MAX) throw new WalInvariantError(`a WAL record of ${length} bytes exceeds the maximum ${WAL_RECORD_BYTES_MAX}`);
  w.patchU32(start, length);
  w.patchU32(start + 4, crc32(w.finish().subarray(start + RECORD_HEADER_BYTES)));
}

function writeHeader(w: ByteWriter, h: SegmentHeader): void {
  frame(w, RecordType.SegmentHeader, (b) => {
    b.u32(SEGMENT_MAGIC, "magic");
    b.u8(h.major, "major");
    b.u8(h.minor, "minor");
    b.u64(h.seq, "seq");
    b.u64(h.lastIndex, "lastIndex");
    b.u64(h.lastTerm, "lastTerm");
    b.u64(h.marker.index, "marker.index");
    b.u64(h.marker.term, "marker.term");
    writeHardState(b, h.hardState);
    b.bytes(h.meta, "meta");
  });
}

function readHeader(r: ByteReader): SegmentHeader {
  const magic = r.u32("magic");
  if (magic !== SEGMENT_MAGIC) throw new CodecError(`segment header: bad magic 0x${magic.toString(16)}`);
  const major = r.u8("major");
  const minor = r.u8("minor");
  if (major !== WAL_FORMAT_MAJOR || minor > WAL_FORMAT_MINOR) {
    throw new CodecError(`segment header: format ${major}.${minor} is not readable by format ${WAL_FORMAT_MAJOR}.${WAL_FORMAT_MINOR}`);
  }
  const seq = r.u64("seq");
  const lastIndex = r.u64("lastIndex");
  const lastTerm = r.u64("lastTerm");
  const marker = { index: r.u64("marker.index"), term: r.u64("marker.term") };
  const hardState = readHardState(r);
  const meta = r.bytes("meta");
  return { major, minor, seq, lastIndex, lastTerm, marker, hardState, meta };
}

function segmentName(seq: number, firstIndex: number): string {
  return `${String(seq).padStart(16, "0")}-${String(firstIndex).padStart(16, "0")}.wal`;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class Wal {
  private state: "open" | "closed" | "failed" = "open";
  private failure: unknown = null;
  private fd: Fd;
  private currentSizeBytes: number;
  private unsynced = false;
  private readonly segmentSizeBytes: number;

  private constructor(
    private readonly fs: FileSystem,
    readonly dir: string,
    readonly meta: Uint8Array,
    private readonly segments: Segment[],
    private readonly log: LogTracker,
    options: WalOptions,
  ) {
    this.segmentSizeBytes = options.segmentSizeBytes ?? WAL_SEGMENT_SIZE_BYTES_DEFAULT;
    if (!Number.isSafeInteger(this.segmentSizeBytes) || this.segmentSizeBytes < 1) {
      throw new WalError(`segmentSizeBytes must be a positive integer, got ${this.segmentSizeBytes}`);
    }
    const last = segments[segments.length - 1]!;
    this.fd = fs.openAppend(last.path, { create: false });
    this.currentSizeBytes = fs.size(last.path);
  }

  /** Whether `dir` holds a WAL (it exists: `create` makes it appear atomically). */
  static exists(fs: FileSystem, dir: string): boolean {
    return fs.exists(dir);
  }

  /**
   * Creates a WAL in `dir`, which must not exist (its parent must). The first segment is written
   * and synced in `<dir>.tmp`, which is then renamed to `dir` and the parent synced: after a crash
   * the WAL either exists whole or not at all.
   */
  static create(fs: FileSystem, dir: string, meta: Uint8Array, options: WalOptions = {}): Wal {
    if (fs.exists(dir)) throw new WalError(`cannot create a WAL in ${dir}: it already exists`);
    const tmp = `${dir}.tmp`;
    if (fs.exists(tmp)) {
      for (const name of fs.readdir(tmp)) fs.remove(joinPath(tmp, name));
      fs.remove(tmp);
    }
    fs.mkdir(tmp);
    const name = segmentName(1, 1);
    const w = new ByteWriter();
    writeHeader(w, {
      major: WAL_FORMAT_MAJOR, minor: WAL_FORMAT_MINOR, seq: 1, lastIndex: 0, lastTerm: 0,
      marker: { index: 0, term: 0 }, hardState: EMPTY_HARD_STATE, meta,
    });
    const fd = fs.openAppend(joinPath(tmp, name));
    try {
      fs.write(fd, w.finish());
      fs.sync(fd);
    } finally {
      fs.close(fd);
    }
    fs.syncDir(tmp);
    fs.rename(tmp, dir);
    fs.syncDir(parentPath(dir));
    const segments: Segment[] = [{ seq: 1, firstIndex: 1, name, path: joinPath(dir, name), maxIndex: 0 }];
    return new Wal(fs, dir, meta.slice(), segments, LogTracker.fromHeader({
      major: WAL_FORMAT_MAJOR, minor: WAL_FORMAT_MINOR, seq: 1, lastIndex: 0, lastTerm: 0,
      marker: { index: 0, term: 0 }, hardState: EMPTY_HARD_STATE, meta,
    }, false), options);
  }

  /**
   * Opens the WAL in `dir`, replays it, repairs a torn tail (truncating the last segment and syncing
   * it) and returns the WAL ready for appends together with what replay found.
   * Throws `WalCorruptError` for damage that is not a crash trace, `WalError` if there is no WAL.
   */
  static open(fs: FileSystem, dir: string, options: WalOptions = {}): { wal: Wal; replay: WalReplay } {
    if (!fs.exists(dir)) throw new WalError(`no WAL in ${dir}`);
    const segments: Segment[] = [];
    for (const name of fs.readdir(dir)) {
      const m = SEGMENT_NAME.exec(name);
      if (m === null) continue;
      segments.push({ seq: Number(m[1]), firstIndex: Number(m[2]), name, path: joinPath(dir, name), maxIndex: 0 });
    }
    if (segments.length === 0) throw new WalError(`no WAL segments in ${dir}`);
    segments.sort((a, b) => a.seq - b.seq);
    for (let i = 1; i < segments.length; i++) {
      if (segments[i]!.seq !== segments[i - 1]!.seq + 1) {
        throw new WalCorruptError(segments[i]!.name, 0, `segment ${segments[i - 1]!.seq + 1} is missing before it`);
      }
    }

    let log: LogTracker | null = null;
    let meta: Uint8Array | null = null;
    let repaired: WalRepair | null = null;
    for (let si = 0; si < segments.length; si++) {
      const seg = segments[si]!;
      const isLast = si === segments.length - 1;
      const bytes = fs.readFile(seg.path);
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      let at = 0;
      // Bounded: every iteration consumes at least one record header.
      while (at < bytes.length) {
        const rec = parseRecord(bytes, view, at);
        if (!rec.ok) {
          if (!isLast) throw new WalCorruptError(seg.name, at, `${rec.reason}, in a segment that is not the last`);
          const next = findValidRecord(bytes, view, at + 1);
          if (next === "unknown") throw new WalCorruptError(seg.name, at, `${rec.reason}; cannot rule out valid records after it`);
          if (next !== null) throw new WalCorruptError(seg.name, at, `${rec.reason}, yet a valid record follows at offset ${next}`);
          repaired = { segment: seg.name, offsetBytes: at, truncatedBytes: bytes.length - at, reason: rec.reason, removedSegment: at === 0 };
          break;
        }
        try {
          const r = new ByteReader(rec.body.subarray(1), `WAL record type ${rec.type}`);
          if (at === 0) {
            if (rec.type !== RecordType.SegmentHeader) throw new WalCorruptError(seg.name, at, `first record has type ${rec.type}, not a segment header`);
            const h = readHeader(r);
            r.end();
            if (h.seq !== seg.seq) throw new WalCorruptError(seg.name, at, `header says segment ${h.seq}`);
            if (h.lastIndex + 1 !== seg.firstIndex) throw new WalCorruptError(seg.name, at, `header's last index ${h.lastIndex} disagrees with the name`);
            if (log === null || meta === null) {
              log = LogTracker.fromHeader(h, true);
              meta = h.meta;
            } else {
              const mismatch = headerMismatch(h, log, meta);
              if (mismatch !== null) throw new WalCorruptError(seg.name, at, `header disagrees with the replayed log: ${mismatch}`);
            }
          } else {
            if (log === null) throw new WalCorruptError(seg.name, at, "record before any segment header");
            const problem = applyRecord(log, rec.type, r, seg);
            if (problem !== null) throw new WalCorruptError(seg.name, at, problem);
          }
        } catch (err) {
          if (err instanceof WalCorruptError) throw err;
          if (err instanceof CodecError) throw new WalCorruptError(seg.name, at, `record passes its CRC but does not decode: ${err.message}`, { cause: err });
          throw err;
        }
        at = rec.end;
      }
      if (bytes.length === 0) {
        // Created but not a byte written: a crash while the segment was being started.
        if (!isLast) throw new WalCorruptError(seg.name, 0, "empty segment that is not the last");
        repaired = { segment: seg.name, offsetBytes: 0, truncatedBytes: 0, reason: "empty segment", removedSegment: true };
      }
    }

    if (repaired !== null) {
      const last = segments[segments.length - 1]!;
      if (repaired.removedSegment) {
        if (segments.length === 1) throw new WalCorruptError(last.name, 0, `the only segment has no valid header: ${repaired.reason}`);
        fs.remove(last.path);
        fs.syncDir(dir);
        segments.pop();
      } else {
        const fd = fs.openAppend(last.path, { create: false });
        try {
          fs.truncate(fd, repaired.offsetBytes);
          fs.sync(fd);
        } finally {
          fs.close(fd);
        }
      }
    }
    if (log === null || meta === null) throw new WalCorruptError(segments[0]!.name, 0, "no segment header");
    if (log.baseIndex > log.markerIndex) {
      throw new WalCorruptError(segments[0]!.name, 0,
        `entries ${log.markerIndex + 1}..${log.baseIndex} were released but no snapshot marker covers them`);
    }
    const entries = log.entries ?? [];
    log.entries = null;
    const replay: WalReplay = {
      hardState: log.hardState,
      entries,
      snapshot: { index: log.markerIndex, term: log.markerTerm },
      meta,
      repaired,
    };
    return { wal: new Wal(fs, dir, meta, segments, log, options), replay };
  }

  /** The last index in the log (the snapshot marker's index if the log is empty). */
  get lastIndex(): number {
    return this.log.lastIndex;
  }

  get snapshotMarker(): WalSnapshotMarker {
    return { index: this.log.markerIndex, term: this.log.markerTerm };
  }

  get hardState(): HardState {
    return this.log.hardState;
  }

  /** Names of the segment files, oldest first. */
  segmentNames(): string[] {
    return this.segments.map((s) => s.name);
  }

  /**
   * Appends `entries` (they replace any logged entries at the same or higher index), then
   * `hardState` if given, in one write; with `sync`, one fsync covers the whole batch and everything
   * written before it. Returns once written (and synced). Throws `WalInvariantError` (nothing
   * written) if the batch breaks the log's invariants, `WalError` on I/O failure (the WAL is then
   * unusable).
   */
  save(hardState: HardState | null, entries: readonly Entry[], sync: boolean): void {
    this.assertUsable();
    const entriesProblem = this.log.checkAppend(entries);
    if (entriesProblem !== null) throw new WalInvariantError(entriesProblem);
    if (hardState !== null) {
      const lastAfter = entries.length > 0 ? entries[entries.length - 1]!.index : this.log.lastIndex;
      const hsProblem = this.log.checkHardState(hardState, lastAfter);
      if (hsProblem !== null) throw new WalInvariantError(hsProblem);
    }
    if (entries.length === 0 && hardState === null) {
      if (sync) this.sync();
      return;
    }
    const w = new ByteWriter(256 + entries.length * 64);
    if (entries.length > 0) frame(w, RecordType.Entries, (b) => writeEntries(b, entries));
    if (hardState !== null) frame(w, RecordType.HardState, (b) => writeHardState(b, hardState));
    this.append(w.finish(), sync);
    this.log.append(entries);
    if (entries.length > 0) {
      const seg = this.segments[this.segments.length - 1]!;
      seg.maxIndex = Math.max(seg.maxIndex, entries[entries.length - 1]!.index);
    }
    if (hardState !== null) this.log.hardState = hardState;
  }

  /**
   * Records that a snapshot at (index, term) is durable elsewhere, and syncs. From now on replay
   * returns only entries after it: those already logged after `index` are kept if the log holds
   * `index` at `term`, else the whole log is dropped (Raft §7). Markers never go backwards.
   */
  saveSnapshotMarker(marker: WalSnapshotMarker): void {
    this.assertUsable();
    const m = { index: marker.index, term: marker.term };
    const problem = this.log.checkMarker(m);
    if (problem !== null) throw new WalInvariantError(problem);
    const w = new ByteWriter(32);
    frame(w, RecordType.SnapshotMarker, (b) => {
      b.u64(m.index, "marker.index");
      b.u64(m.term, "marker.term");
    });
    this.append(w.finish(), true);
    this.log.marker(m);
  }

  /** fsyncs what was written since the last sync (nothing if nothing was). */
  sync(): void {
    this.assertUsable();
    if (!this.unsynced) return;
    this.guard(() => this.fs.sync(this.fd));
    this.unsynced = false;
  }

  /**
   * Deletes the oldest segments while they hold only entries below `index` (never the segment
   * being written), and syncs the directory. `index` may not exceed the snapshot marker + 1: entries
   * not covered by a snapshot are never released. Returns how many segments were deleted.
   */
  releaseTo(index: number): number {
    this.assertUsable();
    if (!Number.isSafeInteger(index) || index > this.log.markerIndex + 1) {
      throw new WalInvariantError(`releaseTo(${index}): only entries up to the snapshot marker ${this.log.markerIndex} may be released`);
    }
    let removed = 0;
    // Bounded by the number of segments.
    while (this.segments.length > 1 && this.segments[0]!.maxIndex < index) {
      const seg = this.segments[0]!;
      this.guard(() => this.fs.remove(seg.path));
      this.segments.shift();
      removed++;
    }
    if (removed > 0) this.guard(() => this.fs.syncDir(this.dir));
    return removed;
  }

  /** Syncs anything unsynced and releases the file. Further calls throw `WalError`. */
  close(): void {
    if (this.state === "closed") return;
    if (this.state === "open") {
      try {
        this.sync();
      } finally {
        this.state = "closed";
        this.fs.close(this.fd);
      }
      return;
    }
    this.state = "closed";
    try {
      this.fs.close(this.fd);
    } catch {
      // The WAL already failed; the close error adds nothing.
    }
  }

  private assertUsable(): void {
    if (this.state === "closed") throw new WalError(`WAL ${this.dir} is closed`);
    if (this.state === "failed") throw new WalError(`WAL ${this.dir} is unusable after an I/O failure`, { cause: this.failure });
  }

  private guard<T>(f: () => T): T {
    try {
      return f();
    } catch (err) {
      this.state = "failed";
      this.failure = err;
      throw new WalError(`WAL ${this.dir}: I/O failure, the WAL must be reopened`, { cause: err });
    }
  }

  private append(bytes: Uint8Array, sync: boolean): void {
    if (this.currentSizeBytes >= this.segmentSizeBytes) this.cut();
    this.guard(() => {
      this.fs.write(this.fd, bytes);
      this.currentSizeBytes += bytes.length;
      this.unsynced = true;
      if (sync) {
        this.fs.sync(this.fd);
        this.unsynced = false;
      }
    });
  }

  /** Starts the next segment: syncs the current one, then writes and syncs the new header and the directory. */
  private cut(): void {
    const prev = this.segments[this.segments.length - 1]!;
    const seq = prev.seq + 1;
    const firstIndex = this.log.lastIndex + 1;
    const name = segmentName(seq, firstIndex);
    const path = joinPath(this.dir, name);
    const lastTerm = this.log.termAt(this.log.lastIndex);
    if (lastTerm === undefined) throw new WalError(`internal: term of the last index ${this.log.lastIndex} unknown`);
    const w = new ByteWriter();
    writeHeader(w, {
      major: WAL_FORMAT_MAJOR, minor: WAL_FORMAT_MINOR, seq, lastIndex: this.log.lastIndex, lastTerm,
      marker: { index: this.log.markerIndex, term: this.log.markerTerm }, hardState: this.log.hardState, meta: this.meta,
    });
    this.guard(() => {
      if (this.unsynced) this.fs.sync(this.fd);
      this.unsynced = false;
      this.fs.close(this.fd);
      if (this.fs.exists(path)) throw new WalError(`segment ${name} already exists`);
      this.fd = this.fs.openAppend(path);
      this.segments.push({ seq, firstIndex, name, path, maxIndex: 0 });
      this.fs.write(this.fd, w.finish());
      this.fs.sync(this.fd);
      this.fs.syncDir(this.dir);
      this.currentSizeBytes = w.lengthBytes;
    });
  }
}

function headerMismatch(h: SegmentHeader, log: LogTracker, meta: Uint8Array): string | null {
  if (h.lastIndex !== log.lastIndex) return `last index ${h.lastIndex}, replayed ${log.lastIndex}`;
  const lastTerm = log.termAt(log.lastIndex);
  if (h.lastTerm !== lastTerm) return `last term ${h.lastTerm}, replayed ${String(lastTerm)}`;
  if (h.marker.index !== log.markerIndex || h.marker.term !== log.markerTerm) {
    return `snapshot marker (${h.marker.index}, ${h.marker.term}), replayed (${log.markerIndex}, ${log.markerTerm})`;
  }
  const hs = log.hardState;
  if (h.hardState.term !== hs.term || h.hardState.vote !== hs.vote || h.hardState.commit !== hs.commit) {
    return `hard state ${JSON.stringify(h.hardState)}, replayed ${JSON.stringify(hs)}`;
  }
  if (!sameBytes(h.meta, meta)) return "meta differs from the first segment's";
  return null;
}

/** Applies one replayed record; returns why it breaks the log's invariants, or null. */
function applyRecord(log: LogTracker, type: RecordType, r: ByteReader, seg: Segment): string | null {
  switch (type) {
    case RecordType.Entries: {
      const entries = readEntries(r);
      r.end();
      const problem = log.checkAppend(entries);
      if (problem !== null) return problem;
      log.append(entries);
      if (entries.length > 0) seg.maxIndex = Math.max(seg.maxIndex, entries[entries.length - 1]!.index);
      return null;
    }
    case RecordType.HardState: {
      const hs = readHardState(r);
      r.end();
      const problem = log.checkHardState(hs, log.lastIndex);
      if (problem !== null) return problem;
      log.hardState = hs;
      return null;
    }
    case RecordType.SnapshotMarker: {
      const m = { index: r.u64("marker.index"), term: r.u64("marker.term") };
      r.end();
      const problem = log.checkMarker(m);
      if (problem !== null) return problem;
      log.marker(m);
      return null;
    }
    case RecordType.SegmentHeader:
      return "a segment header in the middle of a segment";
    default:
      return `unknown record type ${String(type)}`;
  }
}
