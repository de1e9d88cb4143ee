import { RaftInvariantError, invariant } from "./errors.js";
import { CompactedError, UnavailableError, limitSize, type Storage } from "./storage.js";
import type { Entry, Snapshot } from "./types.js";

/**
 * The part of the log not yet known to be on stable storage: an incoming snapshot and/or entries
 * `[offset, offset + entries.length)`.
 *
 * Invariants: `entries[i].index === offset + i`; when `snapshot` is set, `offset === snapshot index + 1`
 * at the time it was restored.
 */
export class Unstable {
  snapshot: Snapshot | null = null;
  entries: Entry[] = [];

  constructor(public offset: number) {}

  /** The first index of the log if an unstable snapshot decides it. */
  maybeFirstIndex(): number | null {
    return this.snapshot === null ? null : this.snapshot.metadata.index + 1;
  }

  /** The last index of the log if the unstable part decides it. */
  maybeLastIndex(): number | null {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot === null ? null : this.snapshot.metadata.index;
  }

  /** The term of entry `index` if the unstable part holds it. */
  maybeTerm(index: number): number | null {
    if (index < this.offset) {
      return this.snapshot !== null && this.snapshot.metadata.index === index ? this.snapshot.metadata.term : null;
    }
    const last = this.maybeLastIndex();
    if (last === null || index > last) return null;
    return this.entries[index - this.offset].term;
  }

  /** Entries up to `index` (of term `term`) were persisted. Ignored when the entry was replaced since. */
  stableTo(index: number, term: number): void {
    const t = this.maybeTerm(index);
    if (t === null || t !== term || index < this.offset) return;
    this.entries = this.entries.slice(index + 1 - this.offset);
    this.offset = index + 1;
  }

  /** The snapshot at `index` was persisted. */
  stableSnapTo(index: number): void {
    if (this.snapshot !== null && this.snapshot.metadata.index === index) this.snapshot = null;
  }

  restore(snapshot: Snapshot): void {
    this.offset = snapshot.metadata.index + 1;
    this.entries = [];
    this.snapshot = snapshot;
  }

  /** Appends `ents` (contiguous), truncating any unstable entries at or after `ents[0].index`. */
  truncateAndAppend(ents: readonly Entry[]): void {
    const after = ents[0].index;
    if (after === this.offset + this.entries.length) {
      this.entries = this.entries.concat(ents);
    } else if (after <= this.offset) {
      // Replaces the whole unstable part; the caller checked that `after` does not leave a gap.
      this.offset = after;
      this.entries = ents.slice();
    } else {
      this.entries = this.entries.slice(0, after - this.offset).concat(ents);
    }
  }

  /** Unstable entries `[lo, hi)`, which must lie within `[offset, offset + entries.length]`. */
  slice(lo: number, hi: number): Entry[] {
    invariant(lo <= hi && lo >= this.offset && hi <= this.offset + this.entries.length, () =>
      `unstable.slice[${lo},${hi}) out of bounds [${this.offset},${this.offset + this.entries.length}]`);
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}

/**
 * The Raft log of one member: the stable part in `Storage` followed by the `Unstable` part, plus the
 * commit and applied indexes. Invariant: `applied <= committed <= lastIndex()`.
 */
export class RaftLog {
  readonly unstable: Unstable;
  /** Highest index known to be committed by a quorum. */
  committed: number;
  /** Highest index the application applied (advanced by `RawNode.advance`). */
  applied: number;

  constructor(readonly storage: Storage, readonly maxCommittedBytesPerReady: number = Number.POSITIVE_INFINITY) {
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    invariant(first <= last + 1, () => `storage first index ${first} > last index ${last} + 1`);
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applied = first - 1;
  }

  toString(): string {
    return `committed=${this.committed}, applied=${this.applied}, unstable.offset=${this.unstable.offset}, ` +
      `unstable.entries=${this.unstable.entries.length}`;
  }

  /**
   * Appends `ents` after the entry `(index, logTerm)` if this log holds that entry (the log matching
   * check of AppendEntries), truncating a conflicting suffix, and moves the commit index to
   * `min(committed, index + ents.length)`. Returns the index of the last new entry, or null when the
   * check fails.
   */
  maybeAppend(index: number, logTerm: number, committed: number, ents: readonly Entry[]): number | null {
    if (!this.matchTerm(index, logTerm)) return null;
    const lastNew = index + ents.length;
    for (let k = 0; k < ents.length; k++) {
      invariant(ents[k].index === index + 1 + k, () =>
        `appended entries have a gap: entry ${k} has index ${ents[k].index}, expected ${index + 1 + k}`);
    }
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      invariant(ci > this.committed, () => `entry ${ci} conflicts with committed entry [committed(${this.committed})]`);
      this.append(ents.slice(ci - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  /**
   * Appends contiguous entries whose first index is at most `lastIndex() + 1` and beyond the commit
   * index, truncating what follows. Returns the new last index.
   */
  append(ents: readonly Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0].index - 1;
    invariant(after >= this.committed, () => `after(${after}) is out of range [committed(${this.committed})]`);
    invariant(after <= this.lastIndex(), () => `appending at ${after + 1} leaves a gap after last index ${this.lastIndex()}`);
    const prevTerm = this.termOrNull(after);
    for (let k = 0; k < ents.length; k++) {
      invariant(k === 0 || ents[k].index === ents[k - 1].index + 1, () => `appended entries have a gap at ${ents[k].index}`);
      const before = k === 0 ? prevTerm : ents[k - 1].term;
      invariant(before === null || ents[k].term >= before, () =>
        `entry ${ents[k].index} has term ${ents[k].term}, lower than the term ${before} of the entry before it`);
    }
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /**
   * The index of the first entry of `ents` that is not in this log with the same term (a conflicting
   * entry or a new one), or 0 when all of them are present.
   */
  findConflict(ents: readonly Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The last index `<= index` whose term is `<= term`, with that term; used for fast backtracking of a
   * rejected append. An index whose term is unknown (compacted) is returned with term 0.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (let i = index; i > 0; i--) {
      const t = this.termOrNull(i);
      if (t === null) return { index: i, term: 0 };
      if (t <= term) return { index: i, term: t };
    }
    return { index: 0, term: 0 };
  }

  /** The unstable entries, to hand out in a Ready. */
  unstableEntries(): Entry[] {
    return this.unstable.entries.slice();
  }

  hasUnstableEntries(): boolean {
    return this.unstable.entries.length > 0;
  }

  /**
   * Committed entries not yet applied, at most `maxCommittedBytesPerReady` (but at least one).
   * Empty while a snapshot is waiting to be applied.
   */
  nextCommittedEntries(): Entry[] {
    if (this.hasPendingSnapshot()) return [];
    const lo = this.applied + 1;
    const hi = this.committed + 1;
    if (lo >= hi) return [];
    return this.slice(lo, hi, this.maxCommittedBytesPerReady);
  }

  hasNextCommittedEntries(): boolean {
    return !this.hasPendingSnapshot() && this.committed > this.applied;
  }

  hasPendingSnapshot(): boolean {
    return this.unstable.snapshot !== null;
  }

  /** The snapshot to send a follower: the unstable one if any, else the storage's. */
  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): number {
    const t = this.termOrNull(this.lastIndex());
    invariant(t !== null, () => `the term of the last index ${this.lastIndex()} is unknown`);
    return t;
  }

  /** Moves the commit index forward to `toCommit` (never back). */
  commitTo(toCommit: number): void {
    if (this.committed >= toCommit) return;
    invariant(toCommit <= this.lastIndex(), () =>
      `toCommit(${toCommit}) is out of range [lastIndex(${this.lastIndex()})]; the log was corrupted, truncated, or lost`);
    this.committed = toCommit;
  }

  appliedTo(index: number): void {
    if (index === 0) return;
    invariant(index <= this.committed && index >= this.applied, () =>
      `applied(${index}) is out of range [prevApplied(${this.applied}), committed(${this.committed})]`);
    this.applied = index;
  }

  stableTo(index: number, term: number): void {
    this.unstable.stableTo(index, term);
  }

  stableSnapTo(index: number): void {
    this.unstable.stableSnapTo(index);
  }

  /**
   * The term of entry `index`, for `index` in `[firstIndex() - 1, lastIndex()]`. Throws
   * `CompactedError` below that range and `UnavailableError` above it.
   */
  term(index: number): number {
    const t = this.unstable.maybeTerm(index);
    if (t !== null) return t;
    const dummy = this.firstIndex() - 1;
    if (index < dummy) throw new CompactedError(index, dummy + 1);
    if (index > this.lastIndex()) throw new UnavailableError(index, this.lastIndex());
    return this.storage.term(index);
  }

  /** The term of entry `index`, or null when it is compacted or not (yet) in the log. */
  termOrNull(index: number): number | null {
    try {
      return this.term(index);
    } catch (e) {
      if (e instanceof CompactedError || e instanceof UnavailableError) return null;
      throw e;
    }
  }

  matchTerm(index: number, term: number): boolean {
    return this.termOrNull(index) === term;
  }

  /** Commits up to `maxIndex` if that entry has term `term` (only entries of the leader's term commit by counting, §5.4.2). */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.termOrNull(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  /** Whether a log ending at `(lastIndex, term)` is at least as up to date as this one (§5.4.1). */
  isUpToDate(lastIndex: number, term: number): boolean {
    const ourTerm = this.lastTerm();
    return term > ourTerm || (term === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Replaces the log by `snapshot`; its index becomes the commit index. */
  restore(snapshot: Snapshot): void {
    invariant(snapshot.metadata.index > this.committed || (snapshot.metadata.index === 0 && this.lastIndex() === 0), () =>
      `restoring snapshot at ${snapshot.metadata.index} at or below the commit index ${this.committed}`);
    this.committed = snapshot.metadata.index;
    this.unstable.restore(snapshot);
  }

  /** Entries from `index` to the last one, at most `maxSizeBytes` (at least one). Throws `CompactedError`. */
  entries(index: number, maxSizeBytes: number): Entry[] {
    if (index > this.lastIndex()) return [];
    return this.slice(index, this.lastIndex() + 1, maxSizeBytes);
  }

  /** Every entry still in the log (tests and debugging). */
  allEntries(): Entry[] {
    return this.entries(this.firstIndex(), Number.POSITIVE_INFINITY);
  }

  /** Entries `[lo, hi)`, at most `maxSizeBytes` (at least one). Throws `CompactedError` when `lo` is compacted. */
  slice(lo: number, hi: number, maxSizeBytes: number): Entry[] {
    invariant(lo <= hi, () => `invalid slice ${lo} > ${hi}`);
    const first = this.firstIndex();
    if (lo < first) throw new CompactedError(lo, first);
    invariant(hi <= this.lastIndex() + 1, () => `slice[${lo},${hi}) out of bound [${first},${this.lastIndex()}]`);
    if (lo === hi) return [];
    let ents: Entry[] = [];
    const offset = this.unstable.offset;
    if (lo < offset) {
      const storedHi = Math.min(hi, offset);
      try {
        ents = this.storage.entries(lo, storedHi, maxSizeBytes);
      } catch (e) {
        if (e instanceof UnavailableError) {
          throw new RaftInvariantError(`entries[${lo}:${storedHi}) are unavailable from storage`, { cause: e });
        }
        throw e;
      }
      // The storage applied the size limit: nothing from the unstable part fits.
      if (ents.length < storedHi - lo) return ents;
    }
    if (hi > offset) {
      const unstable = this.unstable.slice(Math.max(lo, offset), hi);
      ents = ents.length > 0 ? ents.concat(unstable) : unstable;
    }
    return limitSize(ents, maxSizeBytes);
  }
}
