import { CompactedError, limitSize, UnavailableError } from "@hyperfleet/raft";
import type { ConfState, Entry, HardState, InitialState, Snapshot, Storage } from "@hyperfleet/raft";

/**
 * A manager member's disk in the cluster simulator: the Raft log and hard state, kept across the
 * member's crashes (everything is written before the Ready's messages are sent, so nothing is lost).
 * The log is never compacted (the only snapshot is the founding membership at index 0), and appends
 * grow it in place, so a long run stays linear in the number of entries.
 */
export class SimLogStorage implements Storage {
  private hardState: HardState = { term: 0, vote: "", commit: 0 };
  private readonly snap: Snapshot;
  /** `ents[i]` is the entry at index i + 1. */
  private readonly ents: Entry[] = [];

  constructor(voters: readonly string[]) {
    const confState: ConfState = { voters: [...voters].sort(), learners: [] };
    this.snap = { metadata: { index: 0, term: 0, confState }, data: new Uint8Array(0) };
  }

  initialState(): InitialState {
    return { hardState: this.hardState, confState: this.snap.metadata.confState };
  }

  setHardState(hardState: HardState): void {
    this.hardState = hardState;
  }

  entries(lo: number, hi: number, maxSizeBytes: number): Entry[] {
    if (lo <= 0) throw new CompactedError(lo, 1);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi - 1, this.lastIndex());
    if (lo > hi) throw new RangeError(`SimLogStorage.entries: lo ${lo} > hi ${hi}`);
    return limitSize(this.ents.slice(lo - 1, hi - 1), maxSizeBytes);
  }

  term(index: number): number {
    if (index < 0) throw new CompactedError(index, 1);
    if (index === 0) return 0;
    if (index > this.ents.length) throw new UnavailableError(index, this.lastIndex());
    return this.ents[index - 1]!.term;
  }

  lastIndex(): number {
    return this.ents.length;
  }

  firstIndex(): number {
    return 1;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Appends the entries a Ready handed out; an entry at an index already held replaces it and everything after. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    if (first < 1 || first > this.ents.length + 1) throw new RangeError(`SimLogStorage.append: entry ${first} leaves a gap after ${this.ents.length}`);
    this.ents.length = first - 1;
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k]!;
      if (e.index !== first + k) throw new RangeError(`SimLogStorage.append: entries not contiguous (${first + k - 1} then ${e.index})`);
      this.ents.push(e);
    }
  }
}
