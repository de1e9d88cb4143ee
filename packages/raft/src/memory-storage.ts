import { invariant } from "./errors.js";
import {
  CompactedError, SnapshotOutOfDateError, UnavailableError, limitSize,
  type InitialState, type Storage,
} from "./storage.js";
import { EMPTY_HARD_STATE, EntryType } from "./types.js";
import type { ConfState, Entry, HardState, NodeId, Snapshot } from "./types.js";

const EMPTY_BYTES = new Uint8Array(0);
const EMPTY_CONF_STATE: ConfState = { voters: [], learners: [] };

/**
 * A `Storage` kept in memory, written by the application following the `Ready` contract.
 * Used by tests, by the simulator, and by the on-disk member after it replayed its WAL.
 *
 * Layout: `ents[0]` is a dummy entry carrying the snapshot's index and term, followed by the entries
 * `[snapshot index + 1, lastIndex()]`.
 */
export class MemoryStorage implements Storage {
  private hardState: HardState = EMPTY_HARD_STATE;
  private snap: Snapshot;
  private ents: Entry[];

  /**
   * An empty storage at index 0. `confState` is the membership the snapshot at index 0 carries:
   * the founding voters of a new cluster (see `newBootstrapStorage`), or empty for a member that
   * joins an existing cluster later.
   */
  constructor(confState: ConfState = EMPTY_CONF_STATE) {
    this.snap = { metadata: { index: 0, term: 0, confState: copyConfState(confState) }, data: EMPTY_BYTES };
    this.ents = [dummyEntry(0, 0)];
  }

  initialState(): InitialState {
    return { hardState: this.hardState, confState: this.snap.metadata.confState };
  }

  /** Records the hard state a Ready handed out (step 1 of the Ready contract, after the entries). */
  setHardState(hardState: HardState): void {
    this.hardState = hardState;
  }

  entries(lo: number, hi: number, maxSizeBytes: number): Entry[] {
    const offset = this.ents[0].index;
    if (lo <= offset) throw new CompactedError(lo, offset + 1);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi - 1, this.lastIndex());
    invariant(lo <= hi, () => `MemoryStorage.entries: lo ${lo} > hi ${hi}`);
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxSizeBytes);
  }

  term(index: number): number {
    const offset = this.ents[0].index;
    if (index < offset) throw new CompactedError(index, offset + 1);
    if (index - offset >= this.ents.length) throw new UnavailableError(index, this.lastIndex());
    return this.ents[index - offset].term;
  }

  lastIndex(): number {
    return this.ents[0].index + this.ents.length - 1;
  }

  firstIndex(): number {
    return this.ents[0].index + 1;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /**
   * Replaces the whole content by `snapshot` (a snapshot a Ready handed out, received from the leader).
   * Throws `SnapshotOutOfDateError` when it is not newer than the current snapshot; the one exception
   * is the membership snapshot at index 0 that a joining member (empty membership, no entries) adopts.
   */
  applySnapshot(snapshot: Snapshot): void {
    const { index, term } = snapshot.metadata;
    // Entries compacted without a snapshot (see `compact`) count as covered by one.
    const current = Math.max(this.snap.metadata.index, this.ents[0].index);
    const cs = this.snap.metadata.confState;
    const fresh = current === 0 && this.ents.length === 1 && cs.voters.length === 0 && cs.learners.length === 0;
    if (index < current || (index === current && !(index === 0 && fresh))) throw new SnapshotOutOfDateError(index, current);
    this.snap = snapshot;
    this.ents = [dummyEntry(index, term)];
  }

  /**
   * Makes a snapshot of the application state `data` as of applied index `index`, with the membership
   * `confState` in force at `index` (null keeps the current snapshot's). Does not discard entries:
   * call `compact` for that. Throws `SnapshotOutOfDateError` when `index` is not newer than the current
   * snapshot, and `RaftInvariantError` when `index` is beyond the last entry.
   */
  createSnapshot(index: number, confState: ConfState | null, data: Uint8Array): Snapshot {
    const current = this.snap.metadata.index;
    if (index <= current || index < this.ents[0].index) throw new SnapshotOutOfDateError(index, Math.max(current, this.ents[0].index));
    invariant(index <= this.lastIndex(), () => `snapshot index ${index} is beyond the last index ${this.lastIndex()}`);
    const term = this.ents[index - this.ents[0].index].term;
    this.snap = {
      metadata: { index, term, confState: copyConfState(confState ?? this.snap.metadata.confState) },
      data,
    };
    return this.snap;
  }

  /**
   * Discards the entries up to and including `compactIndex`, which must be covered by a snapshot the
   * application made (`createSnapshot`) or about to make. Throws `CompactedError` when `compactIndex`
   * is already compacted, `RaftInvariantError` when it is beyond the last entry.
   */
  compact(compactIndex: number): void {
    const offset = this.ents[0].index;
    if (compactIndex <= offset) throw new CompactedError(compactIndex, offset + 1);
    invariant(compactIndex <= this.lastIndex(), () => `compact ${compactIndex} is beyond the last index ${this.lastIndex()}`);
    const i = compactIndex - offset;
    const kept = this.ents.slice(i);
    kept[0] = dummyEntry(this.ents[i].index, this.ents[i].term);
    this.ents = kept;
  }

  /**
   * Appends entries a Ready handed out. Entries at an index already held replace the held entry and
   * everything after it; entries already compacted are skipped. Throws `RaftInvariantError` when the
   * entries are not contiguous or would leave a gap after the last index.
   */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    for (let k = 1; k < entries.length; k++) {
      invariant(entries[k].index === entries[k - 1].index + 1, () =>
        `MemoryStorage.append: entries not contiguous (${entries[k - 1].index} then ${entries[k].index})`);
    }
    const first = this.firstIndex();
    const last = entries[0].index + entries.length - 1;
    if (last < first) return;
    let ents = entries;
    if (first > ents[0].index) ents = ents.slice(first - ents[0].index);
    const offset = ents[0].index - this.ents[0].index;
    invariant(offset <= this.ents.length, () =>
      `MemoryStorage.append: missing log entries [last: ${this.lastIndex()}, append at: ${ents[0].index}]`);
    // in place: readers only ever get copies (`entries` slices), so truncating and extending the
    // array costs the appended entries, not the whole log
    this.ents.length = offset;
    for (const e of ents) this.ents.push(e);
  }
}

/**
 * A storage for a founding member of a new cluster: its snapshot at index 0, term 0 carries the
 * founding `voters`, so every founder starts from the same membership and can campaign.
 * A member that joins later uses `new MemoryStorage()` (empty membership) instead, does not
 * campaign, and receives the log or a snapshot once the leader committed `AddLearner` for it.
 */
export function newBootstrapStorage(voters: readonly NodeId[]): MemoryStorage {
  invariant(voters.length > 0, "a cluster needs at least one founding voter");
  invariant(new Set(voters).size === voters.length, () => `duplicate founding voters: ${voters.join(",")}`);
  return new MemoryStorage({ voters: [...voters].sort(), learners: [] });
}

function dummyEntry(index: number, term: number): Entry {
  return { index, term, type: EntryType.Normal, data: EMPTY_BYTES };
}

function copyConfState(cs: ConfState): ConfState {
  return { voters: [...cs.voters], learners: [...cs.learners] };
}
