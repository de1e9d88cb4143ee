/**
 * The simulator's only clock: a binary heap of timers ordered by (due, seq).
 *
 * Time moves only when a timer fires, jumping straight to its due time. `seq` is a counter taken
 * at `setTimer`, so timers with equal due times fire in the order they were set: a run is a pure
 * function of the seed.
 */

export type TimerId = number;

/** The clock interface the simulated components see. */
export interface Clock {
  /** Simulated milliseconds since the start of the run (an integer). */
  nowMs(): number;
  /** Calls `callback` once, `delayMs` (an integer ≥ 0) from now. */
  setTimer(delayMs: number, callback: () => void): TimerId;
  /** Cancels a pending timer; returns false if it already fired or was cancelled. */
  cancel(id: TimerId): boolean;
}

export class SimClockError extends Error {
  override readonly name = "SimClockError";
}

interface Timer {
  readonly dueMs: number;
  readonly seq: number;
  readonly callback: () => void;
}

export class SimClock implements Clock {
  private timeMs = 0;
  private seqNext = 0;
  private readonly heap: Timer[] = [];
  /** Pending timers by id (= seq); a cancelled timer stays in the heap but not here. */
  private readonly pendingById = new Map<TimerId, Timer>();
  private firedCount = 0;

  constructor(readonly timersMax = 1_000_000) {}

  nowMs(): number {
    return this.timeMs;
  }

  /** Timers fired since the start: a measure of simulated work. */
  get fired(): number {
    return this.firedCount;
  }

  /** Timers set and not yet fired or cancelled. */
  get pending(): number {
    return this.pendingById.size;
  }

  setTimer(delayMs: number, callback: () => void): TimerId {
    if (!Number.isSafeInteger(delayMs) || delayMs < 0) throw new SimClockError(`delayMs must be a non-negative integer, got ${delayMs}`);
    if (this.pendingById.size >= this.timersMax) throw new SimClockError(`more than ${this.timersMax} pending timers`);
    const timer: Timer = { dueMs: this.timeMs + delayMs, seq: this.seqNext++, callback };
    this.pendingById.set(timer.seq, timer);
    this.push(timer);
    return timer.seq;
  }

  cancel(id: TimerId): boolean {
    if (!this.pendingById.delete(id)) return false;
    // Cancelled timers leave the heap lazily; rebuild it when they outnumber the live ones.
    if (this.heap.length > 1024 && this.heap.length > 2 * this.pendingById.size) this.rebuild();
    return true;
  }

  /** The due time of the next pending timer, or null when none is pending. */
  peekDueMs(): number | null {
    this.dropCancelledTop();
    const top = this.heap[0];
    return top === undefined ? null : top.dueMs;
  }

  /** Fires the next pending timer (moving time to its due time); false when none is pending. */
  step(): boolean {
    this.dropCancelledTop();
    const timer = this.pop();
    if (timer === undefined) return false;
    if (timer.dueMs < this.timeMs) throw new SimClockError(`time went backwards: ${timer.dueMs} < ${this.timeMs}`);
    this.pendingById.delete(timer.seq);
    this.timeMs = timer.dueMs;
    this.firedCount++;
    timer.callback();
    return true;
  }

  /**
   * Fires every timer due at or before `untilMs` (including timers those callbacks set), then
   * moves time to `untilMs`. Throws after `eventsMax` timers: a run must not spin in place.
   * Returns the number of timers fired.
   */
  runUntil(untilMs: number, eventsMax = 10_000_000): number {
    if (untilMs < this.timeMs) throw new SimClockError(`runUntil(${untilMs}) is in the past (now ${this.timeMs})`);
    let fired = 0;
    for (;;) {
      const dueMs = this.peekDueMs();
      if (dueMs === null || dueMs > untilMs) break;
      if (fired >= eventsMax) throw new SimClockError(`more than ${eventsMax} timers before ${untilMs} ms`);
      this.step();
      fired++;
    }
    this.timeMs = untilMs;
    return fired;
  }

  private rebuild(): void {
    const live = this.heap.filter((timer) => this.pendingById.has(timer.seq));
    this.heap.length = 0;
    for (const timer of live) this.push(timer);
  }

  private dropCancelledTop(): void {
    for (;;) {
      const top = this.heap[0];
      if (top === undefined || this.pendingById.has(top.seq)) return;
      this.pop();
    }
  }

  private static before(a: Timer, b: Timer): boolean {
    return a.dueMs < b.dueMs || (a.dueMs === b.dueMs && a.seq < b.seq);
  }

  private push(timer: Timer): void {
    const heap = this.heap;
    heap.push(timer);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent];
      if (!SimClock.before(timer, p)) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = timer;
  }

  private pop(): Timer | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined || heap.length === 0) return top;
    let i = 0;
    const n = heap.length;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && SimClock.before(heap[right], heap[left]) ? right : left;
      if (!SimClock.before(heap[child], last)) break;
      heap[i] = heap[child];
      i = child;
    }
    heap[i] = last;
    return top;
  }
}
