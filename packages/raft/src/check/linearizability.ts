/**
 * A linearizability checker: the Wing & Gong search with Lowe's memoization, as in Porcupine.
 *
 * The history is first split by the model's `partition` (P-compositionality: linearizable iff every
 * part is). For each part, the calls and returns are put in time order in a doubly linked list. The
 * search walks the list from its head: at a call it tries to linearize that operation next (apply the
 * model's `step`); if legal and the configuration (set of linearized operations, model state) was
 * never seen, it records the configuration, removes the operation's call and return from the list and
 * starts again from the head. Reaching the return of an operation not yet linearized means the
 * current prefix cannot be extended: undo the last choice and try the next entry after it. The part
 * is linearizable once every operation with a known outcome is linearized.
 *
 * Indeterminate operations (`return = Infinity`) have their return at the end of the list, so they may
 * be linearized at any point after their call, or left out. Indeterminate read-only operations
 * (`model.isReadOnly`) are dropped up front.
 *
 * The search is bounded by a step budget (one step = one walk iteration) and optionally by an
 * injected clock; when the budget runs out the verdict is "unknown", never a guess.
 */
import type { HistoryEvent, Operation } from "./history.js";
import { fromEvents, validateHistory } from "./history.js";
import type { Model } from "./model.js";

/** "ok": linearizable; "illegal": proven not linearizable; "unknown": the budget ran out first. */
export type CheckVerdict = "ok" | "illegal" | "unknown";

export interface CheckOptions {
  /** Search steps allowed over all partitions together. Default 10,000,000. */
  readonly maxSteps?: number;
  /** An injected clock (ms) for a time budget; read every 1,024 steps. Needs `timeoutMs`. */
  readonly now?: () => number;
  /** The time budget in ms of `now`. Ignored without `now`. */
  readonly timeoutMs?: number;
}

/** The verdict on one partition, with the longest linearization the search found. */
export interface PartitionResult<I, O> {
  readonly result: CheckVerdict;
  /** The partition's operations as searched (indeterminate read-only ones dropped). */
  readonly operations: readonly Operation<I, O>[];
  /**
   * The longest sequence of operations the search linearized, in linearization order: a complete
   * linearization when the result is "ok" (indeterminate operations left out did not take effect).
   */
  readonly linearization: readonly Operation<I, O>[];
  /** Search steps spent on this partition. */
  readonly steps: number;
  /** A readable account: for a failure, the longest linearization and the operations that could not follow it. */
  readonly description: string;
}

export interface CheckResult<I, O> {
  /** "illegal" if any partition is illegal, else "unknown" if any is unknown, else "ok". */
  readonly result: CheckVerdict;
  /** Search steps spent in total. */
  readonly steps: number;
  /** One entry per partition, in the order the model's `partition` produced them. */
  readonly partial: readonly PartitionResult<I, O>[];
}

const DEFAULT_MAX_STEPS = 10_000_000;
const CLOCK_EVERY_STEPS = 1024;
const NIL = -1;
/** Failure descriptions show this many last steps of the longest linearization. */
const DESCRIBE_LAST_STEPS = 20;

/**
 * Checks that `history` is linearizable with respect to `model`. Throws a `HistoryError` when the
 * history is malformed (see `validateHistory`). Pure apart from the injected clock.
 */
export function checkOperations<S, I, O>(model: Model<S, I, O>, history: readonly Operation<I, O>[], options: CheckOptions = {}): CheckResult<I, O> {
  validateHistory(history);
  const budget = new Budget(options);
  const parts = model.partition !== undefined ? model.partition(history) : [history.slice()];
  const partial: PartitionResult<I, O>[] = [];
  for (const [index, part] of parts.entries()) {
    const ops = model.isReadOnly !== undefined ? part.filter((op) => op.return !== Infinity || !model.isReadOnly!(op.input)) : part.slice();
    const dropped = part.length - ops.length;
    if (budget.exhausted) {
      partial.push({ result: "unknown", operations: ops, linearization: [], steps: 0, description: `partition ${index}: unknown (not searched: the budget ran out before it)` });
      continue;
    }
    const before = budget.steps;
    const found = searchPartition(model, ops, budget);
    const steps = budget.steps - before;
    const linearization = found.longest.map((i) => ops[i]!);
    partial.push({ result: found.verdict, operations: ops, linearization, steps, description: describePartition(model, index, found.verdict, ops, found.longest, steps, dropped) });
  }
  const result: CheckVerdict = partial.some((p) => p.result === "illegal") ? "illegal" : partial.some((p) => p.result === "unknown") ? "unknown" : "ok";
  return { result, steps: budget.steps, partial };
}

/** `checkOperations` over an event list (see `fromEvents`: positions are timestamps). */
export function checkEvents<S, I, O>(model: Model<S, I, O>, events: readonly HistoryEvent<I, O>[], options: CheckOptions = {}): CheckResult<I, O> {
  return checkOperations(model, fromEvents(events), options);
}

/** The descriptions of the partitions that are not "ok", or a one-line summary when all are. */
export function describeCheckResult(result: CheckResult<unknown, unknown>): string {
  const bad = result.partial.filter((p) => p.result !== "ok");
  const head = `${result.result}: ${result.partial.length} partition(s), ${result.steps} steps`;
  return bad.length === 0 ? head : [head, ...bad.map((p) => p.description)].join("\n");
}

class Budget {
  steps = 0;
  exhausted = false;
  private readonly maxSteps: number;
  private readonly now: (() => number) | undefined;
  private readonly deadline: number;

  constructor(options: CheckOptions) {
    this.maxSteps = options.maxSteps ?? DEFAULT_MAX_STEPS;
    this.now = options.timeoutMs !== undefined ? options.now : undefined;
    this.deadline = this.now !== undefined ? this.now() + options.timeoutMs! : Infinity;
  }

  /** Takes one step; false (and stays false) once the budget is spent. */
  spend(): boolean {
    if (this.exhausted) return false;
    if (this.steps >= this.maxSteps) return !(this.exhausted = true);
    this.steps++;
    if (this.now !== undefined && this.steps % CLOCK_EVERY_STEPS === 0 && this.now() >= this.deadline) return !(this.exhausted = true);
    return true;
  }
}

interface SearchOutcome {
  readonly verdict: CheckVerdict;
  /** Operation indexes of the longest linearized prefix seen, in order. */
  readonly longest: readonly number[];
}

/** A well-mixed 32-bit value per operation index: the linearized set's hash is their XOR. */
function mixIndex(i: number): number {
  let h = Math.imul(i + 1, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}

function searchPartition<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[], budget: Budget): SearchOutcome {
  const n = ops.length;
  // List nodes: 0..n-1 are calls, n..2n-1 the matching returns, 2n the head sentinel.
  const head = 2 * n;
  const nodes: number[] = [];
  for (let i = 0; i < 2 * n; i++) nodes.push(i);
  const time = (node: number): number => (node < n ? ops[node]!.call : ops[node - n]!.return);
  // Closed intervals: at equal times calls come first, so touching operations are concurrent.
  nodes.sort((a, b) => time(a) - time(b) || Number(a >= n) - Number(b >= n) || a - b);
  const next = new Int32Array(2 * n + 1);
  const prev = new Int32Array(2 * n + 1);
  let last = head;
  for (const node of nodes) {
    next[last] = node;
    prev[node] = last;
    last = node;
  }
  next[last] = NIL;
  prev[head] = NIL;

  const unlink = (node: number): void => {
    next[prev[node]!] = next[node]!;
    if (next[node] !== NIL) prev[next[node]!] = prev[node]!;
  };
  const relink = (node: number): void => {
    next[prev[node]!] = node;
    if (next[node] !== NIL) prev[next[node]!] = node;
  };
  // Dancing links: undo in the reverse order of removal.
  const lift = (call: number): void => {
    unlink(call);
    unlink(call + n);
  };
  const unlift = (call: number): void => {
    relink(call + n);
    relink(call);
  };

  const bits = new Uint32Array((n + 31) >>> 5);
  let bitsHash = 0;
  const flip = (i: number): void => {
    bits[i >>> 5]! ^= 1 << (i & 31);
    bitsHash ^= mixIndex(i);
  };
  const cache = new Map<number, { bits: Uint32Array; state: S }[]>();
  const remember = (state: S): boolean => {
    const key = model.hash !== undefined ? (bitsHash ^ Math.imul(model.hash(state), 0x27d4eb2d)) | 0 : bitsHash;
    let bucket = cache.get(key);
    if (bucket === undefined) cache.set(key, (bucket = []));
    for (const seen of bucket) {
      if (sameBits(seen.bits, bits) && model.equal(seen.state, state)) return false;
    }
    bucket.push({ bits: bits.slice(), state });
    return true;
  };

  let remaining = 0;
  for (const op of ops) if (op.return !== Infinity) remaining++;
  const stackCall = new Int32Array(n);
  const stackState: (S | undefined)[] = new Array<S | undefined>(n).fill(undefined);
  let depth = 0;
  let longest: number[] = [];
  let state = model.init();
  let entry = next[head]!;

  while (remaining > 0) {
    if (!budget.spend()) return { verdict: "unknown", longest };
    if (entry !== NIL && entry < n) {
      const op = ops[entry]!;
      const stepped = model.step(state, op.input, op.output);
      if (stepped.ok) {
        flip(entry);
        if (remember(stepped.state)) {
          stackCall[depth] = entry;
          stackState[depth] = state;
          depth++;
          if (depth > longest.length) longest = Array.from(stackCall.subarray(0, depth));
          state = stepped.state;
          lift(entry);
          if (op.return !== Infinity) remaining--;
          entry = next[head]!;
          continue;
        }
        flip(entry);
      }
      entry = next[entry]!;
    } else {
      // The return of an operation not linearized yet: this prefix is a dead end.
      if (depth === 0) return { verdict: "illegal", longest };
      depth--;
      const call = stackCall[depth]!;
      state = stackState[depth] as S;
      stackState[depth] = undefined;
      flip(call);
      unlift(call);
      if (ops[call]!.return !== Infinity) remaining++;
      entry = next[call]!;
    }
  }
  return { verdict: "ok", longest: Array.from(stackCall.subarray(0, depth)) };
}

function sameBits(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function interval(op: Operation<unknown, unknown>): string {
  return `${op.call}..${op.return === Infinity ? "∞" : op.return}`;
}

function describePartition<S, I, O>(
  model: Model<S, I, O>,
  index: number,
  verdict: CheckVerdict,
  ops: readonly Operation<I, O>[],
  longest: readonly number[],
  steps: number,
  dropped: number,
): string {
  const indeterminate = ops.filter((op) => op.return === Infinity).length;
  const line = (op: Operation<I, O>): string => `[client ${op.clientId}, ${interval(op)}] ${model.describeOperation(op.input, op.output)}`;
  const summary = `partition ${index}: ${verdict} (${ops.length} operations, ${indeterminate} indeterminate${dropped > 0 ? `, ${dropped} indeterminate reads dropped` : ""}; ${steps} steps)`;
  if (verdict === "ok") {
    const leftOut = ops.length - longest.length;
    return `${summary}; linearized all, ${leftOut} indeterminate left out`;
  }
  const out = [summary];
  let state = model.init();
  out.push(`  longest linearization found: ${longest.length} of ${ops.length - indeterminate} determinate + ${indeterminate} indeterminate`);
  if (longest.length <= DESCRIBE_LAST_STEPS) out.push(`    initial state ${model.describeState(state)}`);
  const shownFrom = Math.max(0, longest.length - DESCRIBE_LAST_STEPS);
  if (shownFrom > 0) out.push(`    … ${shownFrom} earlier operations`);
  for (const [k, i] of longest.entries()) {
    const op = ops[i]!;
    state = model.step(state, op.input, op.output).state;
    if (k >= shownFrom) out.push(`    ${k + 1}. ${line(op)}  => ${model.describeState(state)}`);
  }
  // The operations the search could try after that prefix: every remaining one called no later than
  // the earliest return among the remaining determinate ones.
  const done = new Set(longest);
  const rest = ops.map((op, i) => ({ op, i })).filter((x) => !done.has(x.i));
  const horizon = rest.reduce((m, x) => Math.min(m, x.op.return), Infinity);
  const candidates = rest.filter((x) => x.op.call <= horizon).sort((a, b) => a.op.call - b.op.call || a.i - b.i);
  out.push(verdict === "illegal" ? "  no operation can follow it:" : "  the search stopped (budget spent); candidates after it:");
  for (const { op } of candidates) {
    const legal = model.step(state, op.input, op.output).ok;
    out.push(`    ${line(op)}  ${legal ? (verdict === "illegal" ? "legal, but every continuation through it fails" : "legal") : `illegal in state ${model.describeState(state)}`}`);
  }
  return out.join("\n");
}
