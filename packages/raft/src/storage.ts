import type { ConfState, Entry, HardState, Snapshot } from "./types.js";

/**
 * The narrow read interface through which the Raft core queries the stable part of its log.
 * Writes belong to the application, which follows the `Ready` contract (persist the snapshot, the
 * entries and the hard state a Ready hands out before sending its messages).
 *
 * Indexes: the storage holds a snapshot covering `[1, firstIndex() - 1]` and entries
 * `[firstIndex(), lastIndex()]`. `term(firstIndex() - 1)` is the snapshot's term and must be answered.
 *
 * Errors: `CompactedError` and `UnavailableError` are part of the contract and handled by the core.
 * Any other error thrown by a method makes the Raft member inoperable (the error propagates out of
 * the RawNode call that caused the read).
 */
export interface Storage {
  /** The persisted hard state and the membership in force (as of the last persisted snapshot or conf change). */
  initialState(): InitialState;
  /**
   * The entries in `[lo, hi)`, at most `maxSizeBytes` in total by `entrySizeBytes` but always at least
   * one entry when `lo < hi`.
   * Throws `CompactedError` when `lo <= firstIndex() - 1` (the entry was compacted into the snapshot),
   * `UnavailableError` when `hi > lastIndex() + 1`.
   */
  entries(lo: number, hi: number, maxSizeBytes: number): Entry[];
  /**
   * The term of entry `index`, for `index` in `[firstIndex() - 1, lastIndex()]`.
   * Throws `CompactedError` below that range, `UnavailableError` above it.
   */
  term(index: number): number;
  /** The index of the last entry (the snapshot index when there is no entry). */
  lastIndex(): number;
  /** The index of the first entry that is still available (the snapshot index plus one). */
  firstIndex(): number;
  /**
   * The most recent snapshot. Throws `SnapshotTemporarilyUnavailableError` when a snapshot is being
   * built; the core then retries later.
   */
  snapshot(): Snapshot;
}

export interface InitialState {
  readonly hardState: HardState;
  readonly confState: ConfState;
}

/** The requested index is older than the storage's snapshot: it was compacted away. */
export class CompactedError extends Error {
  override readonly name = "CompactedError";
  constructor(readonly index: number, readonly firstIndex: number, options?: ErrorOptions) {
    super(`index ${index} is compacted (first available index ${firstIndex})`, options);
  }
}

/** The requested index is beyond the last entry the storage holds. */
export class UnavailableError extends Error {
  override readonly name = "UnavailableError";
  constructor(readonly index: number, readonly lastIndex: number, options?: ErrorOptions) {
    super(`index ${index} is unavailable (last index ${lastIndex})`, options);
  }
}

/** A snapshot older than (or as old as) the storage's current snapshot was offered. */
export class SnapshotOutOfDateError extends Error {
  override readonly name = "SnapshotOutOfDateError";
  constructor(readonly index: number, readonly currentIndex: number, options?: ErrorOptions) {
    super(`snapshot at index ${index} is out of date (current snapshot index ${currentIndex})`, options);
  }
}

/** The storage is building a snapshot and cannot hand one out now; the leader retries later. */
export class SnapshotTemporarilyUnavailableError extends Error {
  override readonly name = "SnapshotTemporarilyUnavailableError";
}

/** Bytes an entry is counted for in size limits beyond its payload (index, term, type, framing). */
export const ENTRY_OVERHEAD_BYTES = 16;

/** The size an entry counts for against `maxSizeBytes` limits (messages, storage reads, Ready). */
export function entrySizeBytes(entry: Entry): number {
  return entry.data.byteLength + ENTRY_OVERHEAD_BYTES;
}

/** The payload bytes of entries: what counts against the leader's uncommitted-size limit. */
export function payloadSizeBytes(entries: readonly Entry[]): number {
  let size = 0;
  for (const e of entries) size += e.data.byteLength;
  return size;
}

/**
 * The longest prefix of `entries` whose total `entrySizeBytes` is at most `maxSizeBytes`, but never
 * fewer than one entry when `entries` is not empty. Returns `entries` itself when nothing is cut.
 */
export function limitSize<T extends Entry>(entries: T[], maxSizeBytes: number): T[] {
  if (entries.length === 0) return entries;
  let size = entrySizeBytes(entries[0]);
  let n = 1;
  for (; n < entries.length; n++) {
    size += entrySizeBytes(entries[n]);
    if (size > maxSizeBytes) break;
  }
  return n === entries.length ? entries : entries.slice(0, n);
}
