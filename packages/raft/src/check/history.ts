/**
 * Client histories for linearizability checking (Porcupine / Jepsen style).
 *
 * A history is a list of operations `{ clientId, input, output, call, return }`. Intervals are closed:
 * operation A precedes operation B in real time only when `A.return < B.call`; equal timestamps make
 * two operations concurrent (a call sorts before a return at the same instant).
 *
 * An operation whose outcome is unknown (the request timed out, the connection broke, the server
 * crashed) is *indeterminate*: `return = Infinity` and `output = undefined`. It may have taken effect
 * at any instant after its call, or never. Its client cannot know when it finished, so the client
 * continues under a fresh `clientId` (Knossos: the process "crashed"). Operations that definitely did
 * not happen (rejected before being proposed, a definite error) are left out of the history.
 *
 * Writes should carry unique values so that a read names the write it saw.
 */

/** One client operation. */
export interface Operation<I, O> {
  /** The client stream that issued it; each stream is sequential (one operation at a time). */
  readonly clientId: number;
  readonly input: I;
  /** The observed result; `undefined` exactly when the outcome is unknown (indeterminate). */
  readonly output: O | undefined;
  /** When the client sent the request. Finite. */
  readonly call: number;
  /** When the client received the response; `Infinity` for an indeterminate operation. */
  readonly return: number;
}

/** A call or return event, in the order they happened (Porcupine's `Event`). `id` pairs them. */
export type HistoryEvent<I, O> =
  | { readonly kind: "call"; readonly clientId: number; readonly id: number; readonly value: I }
  | { readonly kind: "return"; readonly clientId: number; readonly id: number; readonly value: O };

/** A malformed history or a misuse of the recorder. */
export class HistoryError extends Error {
  override readonly name = "HistoryError";
}

/** True when the operation's outcome is unknown: it may or may not have taken effect. */
export function isIndeterminate(op: Operation<unknown, unknown>): boolean {
  return op.return === Infinity;
}

/**
 * Throws a `HistoryError` unless: every call is finite, every return is ≥ its call, only
 * indeterminate operations (return = Infinity) lack an output, and each client stream is sequential
 * (an operation starts no earlier than the previous one of the same client returned, and an
 * indeterminate operation is its client's last).
 */
export function validateHistory(history: readonly Operation<unknown, unknown>[]): void {
  const byClient = new Map<number, Operation<unknown, unknown>[]>();
  for (const [i, op] of history.entries()) {
    if (!Number.isFinite(op.call)) throw new HistoryError(`operation ${i}: call time must be finite, got ${op.call}`);
    if (Number.isNaN(op.return) || op.return < op.call) {
      throw new HistoryError(`operation ${i}: return time ${op.return} is before its call ${op.call}`);
    }
    if (op.output === undefined && op.return !== Infinity) {
      throw new HistoryError(`operation ${i}: a completed operation needs an output (use return = Infinity for an unknown outcome)`);
    }
    let list = byClient.get(op.clientId);
    if (list === undefined) byClient.set(op.clientId, (list = []));
    list.push(op);
  }
  for (const [clientId, ops] of byClient) {
    ops.sort((a, b) => a.call - b.call);
    for (let i = 1; i < ops.length; i++) {
      const prev = ops[i - 1]!;
      const next = ops[i]!;
      if (next.call < prev.return) {
        const what = prev.return === Infinity ? "after an indeterminate operation (use a new client id)" : `before the previous one returned (${prev.return})`;
        throw new HistoryError(`client ${clientId}: operation called at ${next.call} ${what}`);
      }
    }
  }
}

/**
 * The events of a history in time order (ties: calls before returns, then by operation index).
 * Indeterminate operations have a call event and no return event. Event ids are operation indexes.
 */
export function toEvents<I, O>(history: readonly Operation<I, O>[]): HistoryEvent<I, O>[] {
  const points: { time: number; isCall: boolean; id: number }[] = [];
  for (const [id, op] of history.entries()) {
    points.push({ time: op.call, isCall: true, id });
    if (op.return !== Infinity) points.push({ time: op.return, isCall: false, id });
  }
  points.sort((a, b) => a.time - b.time || Number(b.isCall) - Number(a.isCall) || a.id - b.id);
  return points.map((p): HistoryEvent<I, O> => {
    const op = history[p.id]!;
    return p.isCall
      ? { kind: "call", clientId: op.clientId, id: p.id, value: op.input }
      : { kind: "return", clientId: op.clientId, id: p.id, value: op.output as O };
  });
}

/**
 * The operations of an event list. An event's position is its timestamp; a call without a return is
 * an indeterminate operation. Throws a `HistoryError` on a duplicate call, a return without a call,
 * or a second return. Operations come out in the order of their calls.
 */
export function fromEvents<I, O>(events: readonly HistoryEvent<I, O>[]): Operation<I, O>[] {
  const open = new Map<number, { clientId: number; input: I; call: number; output?: O; return?: number }>();
  const order: number[] = [];
  for (const [time, e] of events.entries()) {
    const found = open.get(e.id);
    if (e.kind === "call") {
      if (found !== undefined) throw new HistoryError(`event ${time}: second call for id ${e.id}`);
      open.set(e.id, { clientId: e.clientId, input: e.value, call: time });
      order.push(e.id);
    } else {
      if (found === undefined) throw new HistoryError(`event ${time}: return for id ${e.id} without a call`);
      if (found.return !== undefined) throw new HistoryError(`event ${time}: second return for id ${e.id}`);
      found.output = e.value;
      found.return = time;
    }
  }
  return order.map((id) => {
    const o = open.get(id)!;
    return { clientId: o.clientId, input: o.input, output: o.output, call: o.call, return: o.return ?? Infinity };
  });
}

/** An operation in flight, returned by `HistoryRecorder.invoke`. */
export interface OperationHandle {
  readonly id: number;
}

interface Pending<I> {
  readonly client: string | number;
  readonly clientId: number;
  readonly input: I;
  readonly call: number;
}

/**
 * Records a history as clients run. Time comes from the injected `now()` (a simulated clock, or a
 * monotonic clock in real-process tests) and must never go backwards.
 *
 * Contract: a logical client (any string or number) has at most one operation in flight; it calls
 * `invoke` before sending and exactly one of `ok` (response received), `fail` (the operation
 * definitely did not take effect: it is dropped from the history) or `unknown` (outcome unknown: the
 * operation becomes indeterminate and the logical client continues under a fresh `clientId`).
 * Operations still in flight when `operations()` is read are reported as indeterminate.
 */
export class HistoryRecorder<I, O> {
  private readonly now: () => number;
  private lastTime = -Infinity;
  private nextClientId = 0;
  private nextHandle = 0;
  private nextValue = 0;
  private readonly streams = new Map<string | number, number>();
  private readonly inFlight = new Map<string | number, number>();
  private readonly pending = new Map<number, Pending<I>>();
  private readonly done: { readonly seq: number; readonly op: Operation<I, O> }[] = [];

  constructor(options: { readonly now: () => number }) {
    this.now = options.now;
  }

  /** Records the call of `input` by `client` now. Throws if that client already has one in flight. */
  invoke(client: string | number, input: I): OperationHandle {
    if (this.inFlight.has(client)) throw new HistoryError(`client ${String(client)} invoked an operation while another is in flight`);
    const call = this.time();
    let clientId = this.streams.get(client);
    if (clientId === undefined) this.streams.set(client, (clientId = this.nextClientId++));
    const id = this.nextHandle++;
    this.pending.set(id, { client, clientId, input, call });
    this.inFlight.set(client, id);
    return { id };
  }

  /** The operation completed with `output`. */
  ok(handle: OperationHandle, output: O): void {
    const p = this.settle(handle);
    this.done.push({ seq: handle.id, op: { clientId: p.clientId, input: p.input, output, call: p.call, return: this.time() } });
  }

  /** The operation definitely did not take effect: it is left out of the history. */
  fail(handle: OperationHandle): void {
    this.settle(handle);
  }

  /** The outcome is unknown: the operation is indeterminate and its client gets a fresh id. */
  unknown(handle: OperationHandle): void {
    const p = this.settle(handle);
    this.done.push({ seq: handle.id, op: { clientId: p.clientId, input: p.input, output: undefined, call: p.call, return: Infinity } });
    this.streams.set(p.client, this.nextClientId++);
  }

  /**
   * A value never returned before by this recorder (`${prefix}${n}`), for writes: with unique values a
   * read names the write it observed.
   */
  uniqueValue(prefix = "v"): string {
    return `${prefix}${this.nextValue++}`;
  }

  /** The history so far, in the order of calls; operations still in flight are indeterminate. */
  operations(): Operation<I, O>[] {
    const all = [...this.done];
    for (const [seq, p] of this.pending) {
      all.push({ seq, op: { clientId: p.clientId, input: p.input, output: undefined, call: p.call, return: Infinity } });
    }
    all.sort((a, b) => a.seq - b.seq);
    return all.map((x) => x.op);
  }

  /** The history so far as events (see `toEvents`). */
  events(): HistoryEvent<I, O>[] {
    return toEvents(this.operations());
  }

  private settle(handle: OperationHandle): Pending<I> {
    const p = this.pending.get(handle.id);
    if (p === undefined) throw new HistoryError(`operation ${handle.id} is not in flight (already settled?)`);
    this.pending.delete(handle.id);
    this.inFlight.delete(p.client);
    return p;
  }

  private time(): number {
    const t = this.now();
    if (!Number.isFinite(t) || t < this.lastTime) throw new HistoryError(`the clock went backwards or is not finite: ${t} after ${this.lastTime}`);
    this.lastTime = t;
    return t;
  }
}
