/**
 * A replicated key-value state machine: what a Raft group applies to serve `KvInput` operations, and
 * what the simulator's linearizability tests run against.
 *
 * Every replica applies the same committed entries in the same order and must end in the same state
 * with the same results, so everything here is a deterministic function of the entries: no clock, no
 * randomness, no iteration over anything whose order depends on history other than the log.
 *
 * Command encoding (an entry's `data`; integers little-endian):
 *
 *   u8  format version (1)
 *   u8  op: 1 get, 2 put, 3 cas, 4 delete
 *   str client id (u16 byte length + UTF-8, 1..256 bytes)
 *   u53 request id (u32 low, u32 high; a safe integer ≥ 1)
 *   str key (u16 byte length + UTF-8, ≤ 1 KiB)
 *   put:    value (u32 byte length + UTF-8, ≤ 1 MiB)
 *   cas:    u8 0 = expect absent | 1 = expect a value, then that value (if 1), then the new value
 *
 * Nothing may follow. An entry that does not decode yields an error result ("malformed") on every
 * replica alike; it never throws.
 *
 * Exactly-once writes: a client numbers its requests 1, 2, 3… and retries a request with the same
 * number. The machine keeps, per client, the last request id and its result; a retry of that request
 * gets the stored result without being applied again, an older request id gets "stale-request". The
 * table holds at most `maxClients` clients, evicting the one applied least recently; a client evicted
 * that way loses deduplication (a retry after eviction is applied again), so size it above the number
 * of clients active at once.
 */
import { crc32 } from "node:zlib";
import type { Entry } from "./types.js";
import { EntryType } from "./types.js";
import type { KvInput, KvOutput } from "./check/kv-model.js";

export const KV_COMMAND_VERSION = 1;
export const KV_SNAPSHOT_VERSION = 1;
/** "HFKV": the first bytes of a snapshot. */
export const KV_SNAPSHOT_MAGIC = Uint8Array.from([0x48, 0x46, 0x4b, 0x56]);
export const KV_MAX_CLIENT_ID_BYTES = 256;
export const KV_MAX_KEY_BYTES = 1024;
export const KV_MAX_VALUE_BYTES = 1 << 20;
export const KV_DEFAULT_MAX_CLIENTS = 10_000;

/** A client request as carried in a log entry. */
export interface KvCommand {
  readonly clientId: string;
  /** Per-client sequence number, a safe integer ≥ 1; a retry reuses it. */
  readonly requestId: number;
  readonly input: KvInput;
}

export type KvErrorCode = "malformed" | "stale-request";

export type KvResult =
  | { readonly ok: true; readonly output: KvOutput }
  | { readonly ok: false; readonly error: KvErrorCode; readonly message: string };

/** What applying one entry produced. */
export interface KvApplied {
  readonly index: number;
  /** The requester; `null` when the command did not decode. */
  readonly clientId: string | null;
  readonly requestId: number | null;
  readonly result: KvResult;
  /** True when this was a retry answered from the deduplication table, not applied again. */
  readonly duplicate: boolean;
}

/** A command that cannot be encoded (too long, bad id), or that does not decode. */
export class KvCommandError extends Error {
  override readonly name = "KvCommandError";
}

/** A snapshot that cannot be restored: wrong magic or version, bad checksum, truncated, inconsistent. */
export class KvSnapshotError extends Error {
  override readonly name = "KvSnapshotError";
}

/** Misuse of the state machine: entries applied out of order. */
export class KvStateError extends Error {
  override readonly name = "KvStateError";
}

const OP_CODES = { get: 1, put: 2, cas: 3, delete: 4 } as const;
const OPS = ["", "get", "put", "cas", "delete"] as const;
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

class Writer {
  private bytes = new Uint8Array(64);
  private view = new DataView(this.bytes.buffer);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.length + n) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.bytes.subarray(0, this.length));
    this.bytes = bigger;
    this.view = new DataView(bigger.buffer);
  }
  u8(v: number): void {
    this.room(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
  }
  u16(v: number): void {
    this.room(2);
    this.view.setUint16(this.length, v, true);
    this.length += 2;
  }
  u32(v: number): void {
    this.room(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  u53(v: number): void {
    this.u32(v % 0x1_0000_0000);
    this.u32(Math.floor(v / 0x1_0000_0000));
  }
  raw(b: Uint8Array): void {
    this.room(b.length);
    this.bytes.set(b, this.length);
    this.length += b.length;
  }
  /** A string with a u16 (short) or u32 length prefix, checked against `maxBytes`. */
  str(s: string, wide: boolean, maxBytes: number, what: string): void {
    const b = utf8.encode(s);
    if (b.length > maxBytes) throw new KvCommandError(`${what} is ${b.length} bytes, more than ${maxBytes}`);
    if (wide) this.u32(b.length);
    else this.u16(b.length);
    this.raw(b);
  }
  finish(): Uint8Array {
    return this.bytes.slice(0, this.length);
  }
}

/** A bounds-checked reader; every failure is a `KvCommandError` naming the offset. */
class Reader {
  private readonly view: DataView;
  offset = 0;

  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private need(n: number, what: string): void {
    if (this.offset + n > this.bytes.length) throw new KvCommandError(`truncated at byte ${this.offset}: ${what} needs ${n} bytes, ${this.bytes.length - this.offset} left`);
  }
  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.offset++);
  }
  u16(what: string): number {
    this.need(2, what);
    const v = this.view.getUint16(this.offset, true);
    this.offset += 2;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return v;
  }
  u53(what: string): number {
    const lo = this.u32(what);
    const hi = this.u32(what);
    if (hi >= 0x20_0000) throw new KvCommandError(`${what} at byte ${this.offset - 8} is not a safe integer`);
    return hi * 0x1_0000_0000 + lo;
  }
  flag(what: string): boolean {
    const v = this.u8(what);
    if (v > 1) throw new KvCommandError(`${what} at byte ${this.offset - 1} must be 0 or 1, got ${v}`);
    return v === 1;
  }
  str(wide: boolean, maxBytes: number, what: string): string {
    const n = wide ? this.u32(what) : this.u16(what);
    if (n > maxBytes) throw new KvCommandError(`${what} at byte ${this.offset} is ${n} bytes, more than ${maxBytes}`);
    this.need(n, what);
    const slice = this.bytes.subarray(this.offset, this.offset + n);
    this.offset += n;
    try {
      return strictUtf8.decode(slice);
    } catch (cause) {
      throw new KvCommandError(`${what} is not valid UTF-8`, { cause });
    }
  }
  end(): void {
    if (this.offset !== this.bytes.length) throw new KvCommandError(`${this.bytes.length - this.offset} unexpected bytes after the end at byte ${this.offset}`);
  }
}

function checkRequestId(requestId: number): void {
  if (!Number.isSafeInteger(requestId) || requestId < 1) throw new KvCommandError(`request id must be a safe integer ≥ 1, got ${requestId}`);
}

/** Encodes a command for a log entry. Throws `KvCommandError` on an empty or oversized field. */
export function encodeKvCommand(command: KvCommand): Uint8Array {
  const { clientId, requestId, input } = command;
  checkRequestId(requestId);
  if (clientId.length === 0) throw new KvCommandError("client id must not be empty");
  const w = new Writer();
  w.u8(KV_COMMAND_VERSION);
  w.u8(OP_CODES[input.op]);
  w.str(clientId, false, KV_MAX_CLIENT_ID_BYTES, "client id");
  w.u53(requestId);
  w.str(input.key, false, KV_MAX_KEY_BYTES, "key");
  if (input.op === "put") w.str(input.value, true, KV_MAX_VALUE_BYTES, "value");
  if (input.op === "cas") {
    w.u8(input.expected === null ? 0 : 1);
    if (input.expected !== null) w.str(input.expected, true, KV_MAX_VALUE_BYTES, "expected value");
    w.str(input.value, true, KV_MAX_VALUE_BYTES, "value");
  }
  return w.finish();
}

/** Decodes a command; throws `KvCommandError` saying what is wrong with the bytes. */
export function decodeKvCommand(bytes: Uint8Array): KvCommand {
  const r = new Reader(bytes);
  const version = r.u8("format version");
  if (version !== KV_COMMAND_VERSION) throw new KvCommandError(`unknown command format version ${version} (expected ${KV_COMMAND_VERSION})`);
  const code = r.u8("op");
  const op = OPS[code];
  if (op === undefined || op === "") throw new KvCommandError(`unknown op code ${code}`);
  const clientId = r.str(false, KV_MAX_CLIENT_ID_BYTES, "client id");
  if (clientId.length === 0) throw new KvCommandError("empty client id");
  const requestId = r.u53("request id");
  if (requestId < 1) throw new KvCommandError("request id 0");
  const key = r.str(false, KV_MAX_KEY_BYTES, "key");
  let input: KvInput;
  switch (op) {
    case "get":
    case "delete":
      input = { op, key };
      break;
    case "put":
      input = { op, key, value: r.str(true, KV_MAX_VALUE_BYTES, "value") };
      break;
    case "cas": {
      const expected = r.flag("expected-present flag") ? r.str(true, KV_MAX_VALUE_BYTES, "expected value") : null;
      input = { op, key, expected, value: r.str(true, KV_MAX_VALUE_BYTES, "value") };
      break;
    }
  }
  r.end();
  return { clientId, requestId, input };
}

interface ClientRecord {
  readonly requestId: number;
  readonly output: KvOutput;
  /** The log index that applied the request. */
  readonly index: number;
}

/**
 * The key-value state machine. Apply every committed entry, in log order, exactly once (after a
 * `restore`, continue from the snapshot's index + 1).
 */
export class KvStateMachine {
  private data = new Map<string, string>();
  /** Insertion order = least recently applied first: the eviction order, the same on every replica. */
  private records = new Map<string, ClientRecord>();
  private applied = 0;
  private readonly maxClients: number;

  constructor(options: { readonly maxClients?: number } = {}) {
    this.maxClients = options.maxClients ?? KV_DEFAULT_MAX_CLIENTS;
    if (!Number.isSafeInteger(this.maxClients) || this.maxClients < 1) throw new RangeError(`maxClients must be a positive integer, got ${this.maxClients}`);
  }

  /** The index of the last entry applied (or covered by the restored snapshot). */
  get appliedIndex(): number {
    return this.applied;
  }

  /** The number of keys stored. */
  get size(): number {
    return this.data.size;
  }

  /** The number of clients in the deduplication table. */
  get clientCount(): number {
    return this.records.size;
  }

  /** The current value of `key` on this replica (a local read: linearizable only behind a ReadIndex). */
  read(key: string): string | null {
    return this.data.get(key) ?? null;
  }

  /**
   * Applies one committed entry. Its index must be `appliedIndex + 1` (a `KvStateError` otherwise: a
   * bug in the caller, not in the entry). Entries that carry no command (the leader's empty no-op,
   * membership changes) advance the index and return `null`; every other entry returns a result, an
   * error result when it does not decode.
   */
  apply(entry: Entry): KvApplied | null {
    if (entry.index !== this.applied + 1) throw new KvStateError(`entry ${entry.index} applied after ${this.applied}: entries must be applied in order, once`);
    this.applied = entry.index;
    if (entry.type !== EntryType.Normal || entry.data.length === 0) return null;
    let command: KvCommand;
    try {
      command = decodeKvCommand(entry.data);
    } catch (cause) {
      const message = cause instanceof Error ? cause.message : String(cause);
      return { index: entry.index, clientId: null, requestId: null, result: { ok: false, error: "malformed", message }, duplicate: false };
    }
    const { clientId, requestId, input } = command;
    const base = { index: entry.index, clientId, requestId };
    const record = this.records.get(clientId);
    if (record !== undefined && requestId < record.requestId) {
      return { ...base, result: { ok: false, error: "stale-request", message: `request ${requestId} is older than the last one applied (${record.requestId})` }, duplicate: false };
    }
    if (record !== undefined && requestId === record.requestId) {
      this.records.delete(clientId);
      this.records.set(clientId, record);
      return { ...base, result: { ok: true, output: record.output }, duplicate: true };
    }
    const output = this.execute(input);
    this.records.delete(clientId);
    this.records.set(clientId, { requestId, output, index: entry.index });
    if (this.records.size > this.maxClients) {
      const oldest = this.records.keys().next().value as string;
      this.records.delete(oldest);
    }
    return { ...base, result: { ok: true, output }, duplicate: false };
  }

  private execute(input: KvInput): KvOutput {
    const current = this.data.get(input.key) ?? null;
    switch (input.op) {
      case "get":
        return { op: "get", value: current };
      case "put":
        this.data.set(input.key, input.value);
        return { op: "put" };
      case "cas": {
        const ok = current === input.expected;
        if (ok) this.data.set(input.key, input.value);
        return { op: "cas", ok };
      }
      case "delete":
        this.data.delete(input.key);
        return { op: "delete", existed: current !== null };
    }
  }

  /**
   * The whole state as bytes, identical on replicas that applied the same entries:
   *
   *   "HFKV", u8 version, u53 applied index,
   *   u32 key count, then per key in code-unit order: key (u16 + UTF-8), value (u32 + UTF-8),
   *   u32 client count, then per client record from least to most recently applied:
   *     client id (u16 + UTF-8), u53 request id, u53 index, output (u8 op, then get: u8 present [+ value];
   *     cas: u8 ok; delete: u8 existed),
   *   u32 CRC-32 of everything before it.
   */
  snapshot(): Uint8Array {
    const w = new Writer();
    w.raw(KV_SNAPSHOT_MAGIC);
    w.u8(KV_SNAPSHOT_VERSION);
    w.u53(this.applied);
    const keys = [...this.data.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    w.u32(keys.length);
    for (const key of keys) {
      w.str(key, false, KV_MAX_KEY_BYTES, "key");
      w.str(this.data.get(key)!, true, KV_MAX_VALUE_BYTES, "value");
    }
    w.u32(this.records.size);
    for (const [clientId, s] of this.records) {
      w.str(clientId, false, KV_MAX_CLIENT_ID_BYTES, "client id");
      w.u53(s.requestId);
      w.u53(s.index);
      const o = s.output;
      w.u8(OP_CODES[o.op]);
      if (o.op === "get") {
        w.u8(o.value === null ? 0 : 1);
        if (o.value !== null) w.str(o.value, true, KV_MAX_VALUE_BYTES, "value");
      } else if (o.op === "cas") w.u8(o.ok ? 1 : 0);
      else if (o.op === "delete") w.u8(o.existed ? 1 : 0);
    }
    const body = w.finish();
    const out = new Uint8Array(body.length + 4);
    out.set(body);
    new DataView(out.buffer).setUint32(body.length, crc32(body), true);
    return out;
  }

  /**
   * Replaces the whole state with a snapshot's. All or nothing: on any defect the state is left as it
   * was and a `KvSnapshotError` says what is wrong.
   */
  restore(bytes: Uint8Array): void {
    if (bytes.length < KV_SNAPSHOT_MAGIC.length + 1 + 4) throw new KvSnapshotError(`snapshot too short: ${bytes.length} bytes`);
    for (let i = 0; i < KV_SNAPSHOT_MAGIC.length; i++) {
      if (bytes[i] !== KV_SNAPSHOT_MAGIC[i]) throw new KvSnapshotError("not a key-value snapshot (bad magic)");
    }
    const version = bytes[KV_SNAPSHOT_MAGIC.length]!;
    if (version !== KV_SNAPSHOT_VERSION) throw new KvSnapshotError(`unsupported snapshot version ${version} (this reader knows ${KV_SNAPSHOT_VERSION})`);
    const body = bytes.subarray(0, bytes.length - 4);
    const stored = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(bytes.length - 4, true);
    const actual = crc32(body);
    if (stored !== actual) throw new KvSnapshotError(`snapshot checksum mismatch: stored ${hex(stored)}, computed ${hex(actual)}`);
    try {
      const r = new Reader(body);
      r.offset = KV_SNAPSHOT_MAGIC.length + 1;
      const applied = r.u53("applied index");
      const data = new Map<string, string>();
      const keyCount = r.u32("key count");
      for (let i = 0; i < keyCount; i++) {
        const key = r.str(false, KV_MAX_KEY_BYTES, "key");
        if (data.has(key)) throw new KvCommandError(`duplicate key ${JSON.stringify(key)}`);
        data.set(key, r.str(true, KV_MAX_VALUE_BYTES, "value"));
      }
      const records = new Map<string, ClientRecord>();
      const clientCount = r.u32("client count");
      for (let i = 0; i < clientCount; i++) {
        const clientId = r.str(false, KV_MAX_CLIENT_ID_BYTES, "client id");
        if (records.has(clientId)) throw new KvCommandError(`duplicate client record ${JSON.stringify(clientId)}`);
        const requestId = r.u53("request id");
        const index = r.u53("client record index");
        const code = r.u8("output op");
        let output: KvOutput;
        switch (OPS[code]) {
          case "get":
            output = { op: "get", value: r.flag("value-present flag") ? r.str(true, KV_MAX_VALUE_BYTES, "value") : null };
            break;
          case "put":
            output = { op: "put" };
            break;
          case "cas":
            output = { op: "cas", ok: r.flag("cas result") };
            break;
          case "delete":
            output = { op: "delete", existed: r.flag("delete result") };
            break;
          default:
            throw new KvCommandError(`unknown output op code ${code}`);
        }
        if (requestId < 1 || index < 1 || index > applied) throw new KvCommandError(`client record ${JSON.stringify(clientId)} is inconsistent (request ${requestId}, index ${index}, applied ${applied})`);
        records.set(clientId, { requestId, output, index });
      }
      r.end();
      // A replica configured with a smaller table keeps the most recently applied clients.
      for (const clientId of records.keys()) {
        if (records.size <= this.maxClients) break;
        records.delete(clientId);
      }
      this.data = data;
      this.records = records;
      this.applied = applied;
    } catch (cause) {
      const message = cause instanceof Error ? cause.message : String(cause);
      throw new KvSnapshotError(`malformed snapshot: ${message}`, { cause });
    }
  }
}

function hex(v: number): string {
  return `0x${v.toString(16).padStart(8, "0")}`;
}
