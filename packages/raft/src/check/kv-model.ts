/**
 * The sequential specification of a key-value store (get, put, compare-and-set, delete), partitioned
 * by key for the linearizability checker. These input/output types are also the operations the
 * replicated `KvStateMachine` executes.
 */
import type { Operation } from "./history.js";
import type { Model } from "./model.js";
import { hashString, ModelError, partitionByKey } from "./model.js";

/** A key-value operation. A `null` value means "absent". */
export type KvInput =
  | { readonly op: "get"; readonly key: string }
  | { readonly op: "put"; readonly key: string; readonly value: string }
  /** Sets `value` only if the current value is `expected` (`null`: only if the key is absent). */
  | { readonly op: "cas"; readonly key: string; readonly expected: string | null; readonly value: string }
  | { readonly op: "delete"; readonly key: string };

/** The result of a `KvInput`, of the same `op`. */
export type KvOutput =
  | { readonly op: "get"; readonly value: string | null }
  | { readonly op: "put" }
  | { readonly op: "cas"; readonly ok: boolean }
  /** Whether the key was present before the delete. */
  | { readonly op: "delete"; readonly existed: boolean };

/** The store's contents. Never mutated: every change makes a new map. */
export type KvState = ReadonlyMap<string, string>;

const EMPTY: KvState = new Map();

function withValue(state: KvState, key: string, value: string | null): KvState {
  const next = new Map(state);
  if (value === null) next.delete(key);
  else next.set(key, value);
  return next;
}

function expectKind(input: KvInput, output: KvOutput): void {
  if (output.op !== input.op) throw new ModelError(`output of kind "${output.op}" for a "${input.op}" operation`);
}

const quote = (v: string | null): string => (v === null ? "null" : JSON.stringify(v));

/** The key-value model. Correct with or without partitioning; partitioned by key for speed. */
export const kvModel: Model<KvState, KvInput, KvOutput> = {
  init: () => EMPTY,

  step(state, input, output) {
    if (output !== undefined) expectKind(input, output);
    const current = state.get(input.key) ?? null;
    switch (input.op) {
      case "get":
        return { ok: output === undefined || (output.op === "get" && output.value === current), state };
      case "put":
        return { ok: true, state: withValue(state, input.key, input.value) };
      case "cas": {
        const matches = current === input.expected;
        // Unknown outcome: the result is decided by the state, so the step is still deterministic.
        const ok = output === undefined || (output.op === "cas" && output.ok === matches);
        return { ok, state: ok && matches ? withValue(state, input.key, input.value) : state };
      }
      case "delete": {
        const ok = output === undefined || (output.op === "delete" && output.existed === (current !== null));
        return { ok, state: ok && current !== null ? withValue(state, input.key, null) : state };
      }
    }
  },

  equal(a, b) {
    if (a.size !== b.size) return false;
    for (const [k, v] of a) if (b.get(k) !== v) return false;
    return true;
  },

  hash(state) {
    // Order-independent: equal maps built in different orders hash alike.
    let h = 0;
    for (const [k, v] of state) h ^= hashString(v, hashString(k));
    return h;
  },

  partition: (history: readonly Operation<KvInput, KvOutput>[]) => partitionByKey(history, (input) => input.key),

  isReadOnly: (input) => input.op === "get",

  describeOperation(input, output) {
    const unknown = output === undefined;
    switch (input.op) {
      case "get":
        return `get(${input.key}) -> ${unknown ? "?" : output.op === "get" ? quote(output.value) : output.op}`;
      case "put":
        return `put(${input.key}, ${quote(input.value)})${unknown ? " -> ?" : ""}`;
      case "cas":
        return `cas(${input.key}, ${quote(input.expected)} -> ${quote(input.value)}) -> ${unknown ? "?" : output.op === "cas" ? String(output.ok) : output.op}`;
      case "delete":
        return `delete(${input.key}) -> ${unknown ? "?" : output.op === "delete" ? (output.existed ? "existed" : "absent") : output.op}`;
    }
  },

  describeState(state) {
    const entries = [...state].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${k}: ${quote(v)}`).join(", ")}}`;
  },
};
