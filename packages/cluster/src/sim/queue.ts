/**
 * The simulator's only clock: a binary heap of events ordered by (due, seq). Time moves only when an
 * event fires, jumping to its due time; events due at the same time fire in the order they were
 * scheduled, so a run is a pure function of its seed.
 */
export class SimQueueError extends Error {
  override readonly name = "SimQueueError";
}

interface Event {
  readonly dueMs: number;
  readonly seq: number;
  readonly run: () => void;
}

export class EventQueue {
  private timeMs = 0;
  private seqNext = 0;
  private readonly heap: Event[] = [];
  private firedCount = 0;

  constructor(readonly pendingMax = 2_000_000) {}

  nowMs(): number {
    return this.timeMs;
  }

  get fired(): number {
    return this.firedCount;
  }

  get pending(): number {
    return this.heap.length;
  }

  /** Runs `run` `delayMs` (an integer ≥ 0) from now. */
  at(delayMs: number, run: () => void): void {
    if (!Number.isSafeInteger(delayMs) || delayMs < 0) throw new SimQueueError(`delayMs must be a non-negative integer, got ${delayMs}`);
    if (this.heap.length >= this.pendingMax) throw new SimQueueError(`more than ${this.pendingMax} pending events`);
    const h = this.heap;
    h.push({ dueMs: this.timeMs + delayMs, seq: this.seqNext++, run });
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  /** Fires every event due at or before `untilMs` (at most `eventsMax`), then sets the time to `untilMs`. */
  runUntil(untilMs: number, eventsMax: number): void {
    let n = 0;
    while (this.heap.length > 0 && this.heap[0]!.dueMs <= untilMs) {
      if (++n > eventsMax) throw new SimQueueError(`more than ${eventsMax} events before ${untilMs} ms`);
      const e = this.pop();
      this.timeMs = e.dueMs;
      this.firedCount++;
      e.run();
    }
    this.timeMs = Math.max(this.timeMs, untilMs);
  }

  private pop(): Event {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Event, b: Event): boolean {
  return a.dueMs < b.dueMs || (a.dueMs === b.dueMs && a.seq < b.seq);
}
