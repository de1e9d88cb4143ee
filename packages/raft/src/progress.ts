import { invariant } from "./errors.js";
import { committedIndex, voteResult, type VoteResult } from "./quorum.js";
import type { ConfState, NodeId } from "./types.js";

/**
 * How the leader replicates to one follower:
 *  - probe: one append at a time, waiting for its answer (after a reject, or when the follower's
 *    log position is unknown);
 *  - replicate: pipelined appends with an optimistic `next`, bounded by the inflights window;
 *  - snapshot: a snapshot is on its way; nothing else is sent until it is reported.
 */
export type ProgressState = "probe" | "replicate" | "snapshot";

/**
 * The window of appends sent to a follower in replicate state and not yet acknowledged: at most
 * `size` messages and `maxBytes` payload bytes. Each element is the last index a message carried.
 */
export class Inflights {
  private readonly indexes: number[] = [];
  private readonly sizes: number[] = [];
  private start = 0;
  private bytes = 0;

  constructor(readonly size: number, readonly maxBytes: number = Number.POSITIVE_INFINITY) {
    invariant(Number.isInteger(size) && size >= 1, () => `inflights size must be a positive integer, got ${size}`);
  }

  /** Records a message whose last entry is `index`. The window must not be full. */
  add(index: number, bytes: number): void {
    invariant(!this.full(), "cannot add into a full inflights window");
    const n = this.indexes.length;
    invariant(n === this.start || index > this.indexes[n - 1], () =>
      `inflights indexes must increase: ${index} after ${this.indexes[n - 1]}`);
    this.indexes.push(index);
    this.sizes.push(bytes);
    this.bytes += bytes;
  }

  /** Frees every message whose last index is `<= index` (acknowledged). */
  freeLE(index: number): void {
    while (this.start < this.indexes.length && this.indexes[this.start] <= index) {
      this.bytes -= this.sizes[this.start];
      this.start++;
    }
    if (this.start === this.indexes.length) {
      this.indexes.length = 0;
      this.sizes.length = 0;
      this.start = 0;
    } else if (this.start > 64 && this.start * 2 > this.indexes.length) {
      this.indexes.splice(0, this.start);
      this.sizes.splice(0, this.start);
      this.start = 0;
    }
  }

  full(): boolean {
    return this.count() >= this.size || this.bytes >= this.maxBytes;
  }

  count(): number {
    return this.indexes.length - this.start;
  }

  reset(): void {
    this.indexes.length = 0;
    this.sizes.length = 0;
    this.start = 0;
    this.bytes = 0;
  }
}

/** What the leader knows about one member's log (the leader's own entry included). */
export class Progress {
  /** Highest index known to be replicated on the member. */
  match = 0;
  /** Index of the next entry to send. Invariant: `match < next`. */
  next: number;
  state: ProgressState = "probe";
  /** In snapshot state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from during the current check-quorum period (or just added). */
  recentActive = false;
  /** Probe: an append is in flight. Replicate: the inflights window is full. */
  msgAppFlowPaused = false;
  /** Snapshot state: a full election timeout passed without the snapshot being reported. */
  snapshotStale = false;
  /** The highest commit index this member can have learned from what was sent to it (an estimate). */
  sentCommit = 0;
  readonly inflights: Inflights;

  constructor(next: number, maxInflight: number, public isLearner: boolean) {
    this.next = next;
    this.inflights = new Inflights(maxInflight);
  }

  private resetState(state: ProgressState): void {
    this.msgAppFlowPaused = false;
    this.snapshotStale = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    // Messages may have been lost: do not rely on what was sent.
    this.sentCommit = Math.min(this.sentCommit, this.match);
    if (this.state === "snapshot") {
      // The snapshot, if it arrived, moved the follower at least to its index.
      const pendingSnapshot = this.pendingSnapshot;
      this.resetState("probe");
      this.next = Math.max(this.match + 1, pendingSnapshot + 1);
    } else {
      this.resetState("probe");
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState("snapshot");
    this.pendingSnapshot = snapshotIndex;
    this.next = snapshotIndex + 1;
  }

  /** Bookkeeping after an append with `entries` entries of `bytes` payload was sent. */
  sentEntries(entries: number, bytes: number): void {
    switch (this.state) {
      case "replicate":
        if (entries > 0) {
          this.next += entries;
          this.inflights.add(this.next - 1, bytes);
        }
        this.msgAppFlowPaused = this.inflights.full();
        break;
      case "probe":
        // Every append in probe state is a probe: wait for its answer (or a heartbeat response).
        this.msgAppFlowPaused = true;
        break;
      case "snapshot":
        invariant(false, "sending entries to a follower in snapshot state");
    }
  }

  /** A message was sent from which the member learns commit index `commit` (if it arrives). */
  sentCommitIndex(commit: number): void {
    this.sentCommit = Math.max(this.sentCommit, commit);
  }

  /** Whether sending `committed` could move this member's commit index (used to avoid empty appends). */
  canBumpCommit(committed: number): boolean {
    return Math.min(committed, this.next - 1) > this.sentCommit;
  }

  /** An acknowledgement of index `n`: returns whether `match` moved. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.msgAppFlowPaused = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /**
   * A rejection of the append at `rejected`, with the follower's hint `matchHint` of where its log may
   * match. Returns false when the rejection is stale (answers an older append) and is ignored.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  /** Whether the leader must hold appends to this member for now. */
  isPaused(): boolean {
    switch (this.state) {
      case "probe":
      case "replicate":
        return this.msgAppFlowPaused;
      case "snapshot":
        return true;
    }
  }

  toString(): string {
    let s = `${this.state} match=${this.match} next=${this.next}`;
    if (this.isLearner) s += " learner";
    if (this.state === "snapshot") s += ` pendingSnap=${this.pendingSnapshot}`;
    if (this.msgAppFlowPaused) s += " paused";
    if (this.inflights.count() > 0) s += ` inflight=${this.inflights.count()}`;
    return s;
  }
}

/** The membership in force, each member's Progress (on the leader), and the votes of an election. */
export class ProgressTracker {
  /** Sorted voter ids. */
  voters: NodeId[] = [];
  /** Sorted learner ids. */
  learners: NodeId[] = [];
  readonly progress = new Map<NodeId, Progress>();
  readonly votes = new Map<NodeId, boolean>();
  private sortedIds: NodeId[] = [];

  constructor(readonly maxInflight: number) {}

  confState(): ConfState {
    return { voters: this.voters.slice(), learners: this.learners.slice() };
  }

  isVoter(id: NodeId): boolean {
    return this.voters.includes(id);
  }

  /** Exactly one voter. */
  isSingleton(): boolean {
    return this.voters.length === 1;
  }

  /**
   * Installs membership `cs`: members that stay keep their progress; new members start probing at
   * `lastIndex` (the first probe carries the last entry) and count as recently active (so that a
   * check-quorum right after adding them does not depose the leader); removed members are forgotten.
   */
  setConfig(cs: ConfState, lastIndex: number): void {
    const voters = [...cs.voters].sort();
    const learners = [...cs.learners].sort();
    const all = new Set([...voters, ...learners]);
    invariant(all.size === voters.length + learners.length, () =>
      `invalid membership: voters [${voters.join(",")}] learners [${learners.join(",")}] overlap or repeat`);
    for (const id of [...this.progress.keys()]) {
      if (!all.has(id)) this.progress.delete(id);
    }
    for (const id of all) {
      const isLearner = learners.includes(id);
      const pr = this.progress.get(id);
      if (pr === undefined) {
        const fresh = new Progress(Math.max(lastIndex, 1), this.maxInflight, isLearner);
        fresh.recentActive = true;
        this.progress.set(id, fresh);
      } else {
        pr.isLearner = isLearner;
      }
    }
    this.voters = voters;
    this.learners = learners;
    this.sortedIds = [...all].sort();
  }

  /** Calls `fn` for every member in sorted id order. */
  visit(fn: (id: NodeId, pr: Progress) => void): void {
    for (const id of this.sortedIds) {
      const pr = this.progress.get(id);
      if (pr !== undefined) fn(id, pr);
    }
  }

  /** The largest index replicated on a majority of voters. */
  committed(): number {
    return committedIndex(this.voters, (id) => this.progress.get(id)?.match);
  }

  /** Whether a majority of voters was recently active (`self` always counts as active). */
  quorumActive(self: NodeId): boolean {
    const active = new Map<NodeId, boolean>();
    this.visit((id, pr) => {
      if (!pr.isLearner) active.set(id, id === self || pr.recentActive);
    });
    return voteResult(this.voters, active) === "won";
  }

  resetVotes(): void {
    this.votes.clear();
  }

  /** Records `id`'s vote; only its first vote of an election counts. */
  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voters) {
      const v = this.votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    return { granted, rejected, result: voteResult(this.voters, this.votes) };
  }
}
