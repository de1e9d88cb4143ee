/**
 * Sequential specifications for the linearizability checker (Porcupine's `Model`).
 *
 * A model is pure: `step` never mutates the state it is given, and the same arguments always give
 * the same answer. The checker calls it many times on the same states while it backtracks.
 */
import type { Operation } from "./history.js";

/** The outcome of applying one operation to a state. */
export interface StepResult<S> {
  /** False when the operation with that output is impossible in that state. */
  readonly ok: boolean;
  /** The state after the operation (meaningful only when `ok`). */
  readonly state: S;
}

/** A deterministic sequential specification. */
export interface Model<S, I, O> {
  /** The initial state. */
  init(): S;
  /**
   * Applies `input` observed with `output` to `state`. `output` is `undefined` when the outcome is
   * unknown (an indeterminate operation): the step is then legal if the operation can take effect
   * with some output, and yields the state it would leave. Must not mutate `state`.
   */
  step(state: S, input: I, output: O | undefined): StepResult<S>;
  /** State equality, used to memoize the search. */
  equal(a: S, b: S): boolean;
  /** Optional 32-bit hash consistent with `equal` (equal states, equal hashes); speeds up memoization. */
  hash?(state: S): number;
  /**
   * Optional P-compositionality: splits a history into independent sub-histories (e.g. one per key)
   * such that the history is linearizable if and only if each part is.
   */
  partition?(history: readonly Operation<I, O>[]): Operation<I, O>[][];
  /**
   * Optional: true when `input` never changes the state. Indeterminate read-only operations carry no
   * information and are dropped before the search.
   */
  isReadOnly?(input: I): boolean;
  /** One line for an operation, e.g. `put(x, "1")` or `get(x) -> "1"`. */
  describeOperation(input: I, output: O | undefined): string;
  /** One line for a state. */
  describeState(state: S): string;
}

/**
 * A specification whose operations may lead to several states (Porcupine's `NondeterministicModel`).
 * `step` returns every possible next state; an empty list means the operation is illegal.
 */
export interface NondeterministicModel<S, I, O> {
  init(): readonly S[];
  step(state: S, input: I, output: O | undefined): readonly S[];
  equal(a: S, b: S): boolean;
  hash?(state: S): number;
  partition?(history: readonly Operation<I, O>[]): Operation<I, O>[][];
  isReadOnly?(input: I): boolean;
  describeOperation(input: I, output: O | undefined): string;
  describeState(state: S): string;
}

/** A history handed to a model that does not describe it (e.g. an output of the wrong kind). */
export class ModelError extends Error {
  override readonly name = "ModelError";
}

/**
 * The deterministic model over sets of states (the power-set construction): a state is the set of
 * states the nondeterministic model could be in; an operation is legal when it is legal from at least
 * one of them.
 */
export function fromNondeterministic<S, I, O>(m: NondeterministicModel<S, I, O>): Model<readonly S[], I, O> {
  const dedup = (states: readonly S[]): S[] => {
    const out: S[] = [];
    for (const s of states) if (!out.some((t) => m.equal(s, t))) out.push(s);
    return out;
  };
  const hash = m.hash?.bind(m);
  const model: Model<readonly S[], I, O> = {
    init: () => dedup(m.init()),
    step(states, input, output) {
      const next: S[] = [];
      for (const s of states) for (const t of m.step(s, input, output)) next.push(t);
      const state = dedup(next);
      return { ok: state.length > 0, state };
    },
    equal: (a, b) => a.length === b.length && a.every((s) => b.some((t) => m.equal(s, t))),
    describeOperation: (input, output) => m.describeOperation(input, output),
    describeState: (states) => (states.length === 1 ? m.describeState(states[0]!) : `one of [${states.map((s) => m.describeState(s)).join(", ")}]`),
  };
  if (hash !== undefined) {
    // XOR is order-independent, as set equality is.
    model.hash = (states) => states.reduce((h, s) => h ^ hash(s), 0x5bd1e995) | 0;
  }
  if (m.partition !== undefined) model.partition = m.partition.bind(m);
  if (m.isReadOnly !== undefined) model.isReadOnly = m.isReadOnly.bind(m);
  return model;
}

/** Splits a history by the key `keyOf` gives each input, keeping each part in the original order. */
export function partitionByKey<I, O>(history: readonly Operation<I, O>[], keyOf: (input: I) => string): Operation<I, O>[][] {
  const parts = new Map<string, Operation<I, O>[]>();
  for (const op of history) {
    const key = keyOf(op.input);
    let part = parts.get(key);
    if (part === undefined) parts.set(key, (part = []));
    part.push(op);
  }
  return [...parts.values()];
}

/** FNV-1a over the UTF-16 code units of `s`, as a signed 32-bit integer. */
export function hashString(s: string, seed = 0x811c9dc5): number {
  let h = seed | 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h | 0;
}
