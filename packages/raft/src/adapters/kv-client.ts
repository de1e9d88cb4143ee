/**
 * A client of the replicated key-value service (`proto/kv.proto`).
 *
 * One `KvClient` is one logical client: it runs one operation at a time. It numbers its writes
 * 1, 2, 3… under its `clientId` and retries a write with the same number until an answer is
 * certain or the operation's time is up, so the state machine applies it at most once.
 *
 * Wire: every Put/Get/Cas goes out through `KvConnections.submit`, which packs the operations that
 * clients sharing the connections issue in one event-loop turn to one member into one `Batch` call.
 * Gets are linearizable reads (the leader's ReadIndex, see `kv-service.ts`).
 *
 * Finding the leader: the client sends to the member it believes leads (first one of `endpoints`);
 * a NOT_LEADER answer names the leader (the client switches to it) or nobody (the client tries the
 * next endpoint after a short pause); a member that cannot be reached is skipped the same way.
 *
 * Outcomes, and how they are recorded in a `HistoryRecorder` when one is given (STYLE rule 9):
 *  - the operation completed: resolves, recorded `ok` with its output;
 *  - it certainly had no effect (every attempt was refused before Raft took it, or a read failed):
 *    rejects with `KvUnavailableError`, left out of the history (`fail`);
 *  - a write whose outcome is unknown (an attempt timed out or broke after it was sent, or the
 *    member answered OUTCOME_UNKNOWN, and no later attempt got a definite answer): rejects with
 *    `KvOutcomeUnknownError`, recorded `unknown` (return = ∞), and the recorder moves this client to a
 *    fresh history stream. The client itself continues with the next request id: a straggler of the
 *    abandoned write that reaches the log after a newer request is refused as stale.
 */
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import type { HistoryRecorder, OperationHandle } from "../check/history.js";
import type { KvInput, KvOutput } from "../check/kv-model.js";
import { KV_BATCH_OPS_MAX, type KvBatchOp, type KvMethod, type KvResponse, type KvStatusResponse, loadKvApi } from "./kv-service.js";

export interface KvClientOptions {
  /** Client addresses ("host:port") of the members; the leader is searched among them. */
  readonly endpoints: readonly string[];
  /** Unique per logical client; default a random UUID. */
  readonly clientId?: string;
  /** Time for one operation, all retries included. Default 5,000 ms. */
  readonly operationTimeoutMs?: number;
  /** Deadline of one attempt. Default 1,000 ms. */
  readonly attemptTimeoutMs?: number;
  /** Pause before retrying when no leader is known, doubled up to `backoffMsMax`. Default 10 ms. */
  readonly backoffMsMin?: number;
  /** Default 200 ms. */
  readonly backoffMsMax?: number;
  /** Connections to share with other clients (closed by their owner); default: the client's own. */
  readonly connections?: KvConnections;
  /** Records every operation (call and return times from the recorder's clock). */
  readonly history?: HistoryRecorder<KvInput, KvOutput>;
  /** The logical client's name in the history. Default `clientId`. */
  readonly historyClient?: string | number;
}

/** Base of the client's errors. */
export class KvClientError extends Error {
  override readonly name: string = "KvClientError";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** The operation certainly had no effect (no leader found in time, or refused before Raft took it). */
export class KvUnavailableError extends KvClientError {
  override readonly name: string = "KvUnavailableError";
}

/** The write may or may not have been applied. */
export class KvOutcomeUnknownError extends KvClientError {
  override readonly name: string = "KvOutcomeUnknownError";
}

/** The state machine refused the command (malformed, stale request id). */
export class KvRejectedError extends KvClientError {
  override readonly name: string = "KvRejectedError";
}

interface QueuedOp {
  readonly op: KvBatchOp;
  readonly deadlineMs: number;
  readonly timer: NodeJS.Timeout;
  settled: boolean;
  readonly resolve: (attempt: Attempt<KvResponse>) => void;
}

/**
 * gRPC connections to members, by address; shared by clients. Operations submitted to one member
 * in the same event-loop turn leave together in one `Batch` call (at most `KV_BATCH_OPS_MAX`): a
 * gRPC call costs more than the write it carries, so 64 clients in flight cost a few calls per
 * round instead of 64. Each operation keeps its own deadline.
 */
export class KvConnections {
  private readonly clients = new Map<string, grpc.Client>();
  private readonly queues = new Map<string, QueuedOp[]>();
  private closed = false;

  /** The connection to `address`, opened on first use. */
  get(address: string): grpc.Client {
    if (this.closed) throw new KvClientError("the connections are closed");
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new grpc.Client(address, grpc.credentials.createInsecure(), {
        // A member that restarts must be found again quickly.
        "grpc.initial_reconnect_backoff_ms": 50,
        "grpc.min_reconnect_backoff_ms": 50,
        "grpc.max_reconnect_backoff_ms": 500,
        "grpc.enable_retries": 0,
      });
      this.clients.set(address, client);
    }
    return client;
  }

  /**
   * Sends `op` to `address` with the other operations of this turn; resolves with its answer, or
   * with an "rpc-error" (DEADLINE_EXCEEDED when its own `timeoutMs` passed first). Never rejects.
   */
  submit(address: string, op: KvBatchOp, timeoutMs: number): Promise<Attempt<KvResponse>> {
    if (this.closed) return Promise.resolve(rpcError(grpc.status.CANCELLED, "the connections are closed"));
    return new Promise((resolve) => {
      let queue = this.queues.get(address);
      if (queue === undefined) {
        queue = [];
        this.queues.set(address, queue);
        setImmediate(() => this.flush(address));
      }
      const queued: QueuedOp = {
        op,
        deadlineMs: Date.now() + timeoutMs,
        settled: false,
        resolve,
        timer: setTimeout(() => {
          if (queued.settled) return;
          queued.settled = true;
          resolve(rpcError(grpc.status.DEADLINE_EXCEEDED, `no answer from ${address} within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      queue.push(queued);
    });
  }

  private flush(address: string): void {
    const queue = this.queues.get(address) ?? [];
    this.queues.delete(address);
    const settle = (q: QueuedOp, attempt: Attempt<KvResponse>): void => {
      if (q.settled) return;
      q.settled = true;
      clearTimeout(q.timer);
      q.resolve(attempt);
    };
    if (this.closed) {
      for (const q of queue) settle(q, rpcError(grpc.status.CANCELLED, "the connections are closed"));
      return;
    }
    const kvApi = loadKvApi();
    for (let start = 0; start < queue.length; start += KV_BATCH_OPS_MAX) {
      const batch = queue.slice(start, start + KV_BATCH_OPS_MAX).filter((q) => !q.settled);
      if (batch.length === 0) continue;
      const deadlineMs = Math.max(...batch.map((q) => q.deadlineMs));
      const timeoutMs = Math.max(1, deadlineMs - Date.now());
      void callKv(this, address, kvApi.batch, { ops: batch.map((q) => q.op) }, timeoutMs).then((r) => {
        if (r.kind === "rpc-error") {
          for (const q of batch) settle(q, r);
          return;
        }
        for (const [i, q] of batch.entries()) {
          const answer = r.response.responses[i];
          settle(q, answer === undefined ? rpcError(grpc.status.INTERNAL, `the batch answer from ${address} lacks operation ${i}`) : { kind: "answer", response: answer });
        }
      });
    }
  }

  close(): void {
    this.closed = true;
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

function rpcError(code: grpc.status, details: string): { kind: "rpc-error"; error: grpc.ServiceError } {
  return { kind: "rpc-error", error: Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() }) };
}

export type Attempt<Res> = { readonly kind: "answer"; readonly response: Res } | { readonly kind: "rpc-error"; readonly error: grpc.ServiceError };

/** Calls `method` on `address`; never rejects (transport failures come back as "rpc-error"). */
export function callKv<Req, Res>(connections: KvConnections, address: string, method: KvMethod<Req, Res>, request: Req, timeoutMs: number): Promise<Attempt<Res>> {
  const client = connections.get(address);
  return new Promise((resolve) => {
    client.makeUnaryRequest<Req, Res>(
      method.path, method.requestSerialize, method.responseDeserialize, request, new grpc.Metadata(),
      { deadline: new Date(Date.now() + timeoutMs) },
      (error, response) => {
        if (error !== null) resolve({ kind: "rpc-error", error });
        else if (response === undefined) resolve(rpcError(grpc.status.INTERNAL, "empty response"));
        else resolve({ kind: "answer", response });
      },
    );
  });
}

/** The status of the member at `address`, or null if it does not answer within `timeoutMs`. */
export async function kvMemberStatus(connections: KvConnections, address: string, timeoutMs = 1000): Promise<KvStatusResponse | null> {
  const r = await callKv(connections, address, loadKvApi().status, {}, timeoutMs);
  return r.kind === "answer" ? r.response : null;
}

/** True when the request certainly never reached a server (the connection could not be made). */
function neverSent(error: grpc.ServiceError): boolean {
  return error.code === grpc.status.UNAVAILABLE && /No connection established|ECONNREFUSED/.test(error.details ?? "");
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Counters of one client. */
export interface KvClientStats {
  attemptsTotal: number;
  redirectsTotal: number;
  operationsOkTotal: number;
  operationsUnavailableTotal: number;
  operationsUnknownTotal: number;
}

export class KvClient {
  readonly clientId: string;
  private readonly endpoints: readonly string[];
  private readonly connections: KvConnections;
  private readonly ownsConnections: boolean;
  private readonly operationTimeoutMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly backoffMsMin: number;
  private readonly backoffMsMax: number;
  private readonly history: HistoryRecorder<KvInput, KvOutput> | undefined;
  private readonly historyClient: string | number;
  private nextRequestId = 1;
  private leaderAddress: string | null = null;
  private rotation = 0;
  private busy = false;
  readonly stats: KvClientStats = { attemptsTotal: 0, redirectsTotal: 0, operationsOkTotal: 0, operationsUnavailableTotal: 0, operationsUnknownTotal: 0 };

  constructor(options: KvClientOptions) {
    if (options.endpoints.length === 0) throw new KvClientError("a KvClient needs at least one endpoint");
    this.endpoints = [...options.endpoints];
    this.clientId = options.clientId ?? randomUUID();
    this.connections = options.connections ?? new KvConnections();
    this.ownsConnections = options.connections === undefined;
    this.operationTimeoutMs = options.operationTimeoutMs ?? 5000;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? 1000;
    this.backoffMsMin = options.backoffMsMin ?? 10;
    this.backoffMsMax = options.backoffMsMax ?? 200;
    this.history = options.history;
    this.historyClient = options.historyClient ?? this.clientId;
  }

  /** The member this client currently sends to first. */
  get currentLeader(): string | null {
    return this.leaderAddress;
  }

  /** Writes `value` under `key`. */
  async put(key: string, value: string): Promise<void> {
    await this.write({ op: "put", key, value });
  }

  /** Sets `key` to `value` if it holds `expected` (null: if absent); resolves whether it did. */
  async cas(key: string, expected: string | null, value: string): Promise<boolean> {
    const output = await this.write({ op: "cas", key, expected, value });
    return output.op === "cas" && output.ok;
  }

  /** A linearizable read of `key` (null: absent). */
  async get(key: string): Promise<string | null> {
    const input: KvInput = { op: "get", key };
    const handle = this.begin(input);
    let outcome: { ok: true; response: KvResponse } | { ok: false; error: KvClientError };
    try {
      outcome = await this.attempts((address, timeoutMs) => this.connections.submit(address, { get: { key } }, timeoutMs), false);
    } finally {
      this.busy = false;
    }
    if (!outcome.ok) {
      // A read changes nothing: whatever happened, it is left out of the history.
      if (handle !== null) this.history!.fail(handle);
      this.stats.operationsUnavailableTotal++;
      throw outcome.error;
    }
    const value = outcome.response.present ? outcome.response.value : null;
    if (handle !== null) this.history!.ok(handle, { op: "get", value });
    this.stats.operationsOkTotal++;
    return value;
  }

  /** Closes the connections unless they were given (shared). */
  close(): void {
    if (this.ownsConnections) this.connections.close();
  }

  private begin(input: KvInput): OperationHandle | null {
    if (this.busy) throw new KvClientError(`client ${this.clientId} already has an operation in flight`);
    this.busy = true;
    return this.history?.invoke(this.historyClient, input) ?? null;
  }

  private async write(input: Exclude<KvInput, { op: "get" | "delete" }>): Promise<KvOutput> {
    const handle = this.begin(input);
    const requestId = this.nextRequestId++;
    const op: KvBatchOp = input.op === "put"
      ? { put: { clientId: this.clientId, requestId, key: input.key, value: input.value } }
      : { cas: { clientId: this.clientId, requestId, key: input.key, expectPresent: input.expected !== null, expected: input.expected ?? "", value: input.value } };
    let outcome: { ok: true; response: KvResponse } | { ok: false; error: KvClientError };
    try {
      outcome = await this.attempts((address, timeoutMs) => this.connections.submit(address, op, timeoutMs), true);
    } finally {
      this.busy = false;
    }
    if (!outcome.ok) {
      if (outcome.error instanceof KvOutcomeUnknownError) {
        if (handle !== null) this.history!.unknown(handle);
        this.stats.operationsUnknownTotal++;
      } else {
        if (handle !== null) this.history!.fail(handle);
        this.stats.operationsUnavailableTotal++;
      }
      throw outcome.error;
    }
    const output: KvOutput = input.op === "put" ? { op: "put" } : { op: "cas", ok: outcome.response.succeeded };
    if (handle !== null) this.history!.ok(handle, output);
    this.stats.operationsOkTotal++;
    return output;
  }

  private nextTarget(): string {
    if (this.leaderAddress !== null) return this.leaderAddress;
    const address = this.endpoints[this.rotation % this.endpoints.length]!;
    return address;
  }

  /** Forget the current target: the next attempt goes to the next endpoint. */
  private skip(address: string): void {
    if (this.leaderAddress === address) this.leaderAddress = null;
    const i = this.endpoints.indexOf(address);
    this.rotation = i < 0 ? this.rotation + 1 : i + 1;
  }

  /**
   * Sends attempts until one gets a definite answer or the operation's time is up. For a write, any
   * attempt that may have reached Raft makes the outcome unknown unless a later attempt (same request
   * id: answered from the state machine's table if it was applied) settles it.
   */
  private async attempts(
    send: (address: string, timeoutMs: number) => Promise<Attempt<KvResponse>>,
    isWrite: boolean,
  ): Promise<{ ok: true; response: KvResponse } | { ok: false; error: KvClientError }> {
    const deadline = Date.now() + this.operationTimeoutMs;
    let maybeApplied = false;
    let backoffMs = this.backoffMsMin;
    let last = "no attempt";
    // Bounded by the deadline; the count bound is a backstop.
    for (let attempt = 0; attempt < 100_000; attempt++) {
      const leftMs = deadline - Date.now();
      if (leftMs <= 0) break;
      const address = this.nextTarget();
      this.stats.attemptsTotal++;
      const r = await send(address, Math.max(1, Math.min(this.attemptTimeoutMs, leftMs)));
      let pause = false;
      if (r.kind === "rpc-error") {
        last = `${address}: ${grpc.status[r.error.code] ?? r.error.code} ${r.error.details}`;
        if (isWrite && !neverSent(r.error)) maybeApplied = true;
        this.skip(address);
        pause = true;
      } else {
        const res = r.response;
        switch (res.status) {
          case "OK":
            this.leaderAddress = address;
            return { ok: true, response: res };
          case "NOT_LEADER":
            this.stats.redirectsTotal++;
            last = `${address}: not the leader${res.leaderId !== "" ? ` (${res.leaderId} is)` : ""}`;
            if (res.leaderAddress !== "" && res.leaderAddress !== address) {
              this.leaderAddress = res.leaderAddress;
            } else {
              this.skip(address);
              pause = true;
            }
            break;
          case "UNAVAILABLE":
            last = `${address}: unavailable: ${res.message}`;
            this.skip(address);
            pause = true;
            break;
          case "OUTCOME_UNKNOWN":
            last = `${address}: outcome unknown: ${res.message}`;
            if (isWrite) maybeApplied = true;
            pause = true;
            break;
          case "REJECTED":
            return { ok: false, error: new KvRejectedError(`${address} rejected the request: ${res.message}`) };
          default:
            last = `${address}: unexpected status ${res.status}`;
            this.skip(address);
            pause = true;
        }
      }
      if (pause) {
        const waitMs = Math.min(backoffMs, deadline - Date.now());
        if (waitMs > 0) await sleep(waitMs);
        backoffMs = Math.min(this.backoffMsMax, backoffMs * 2);
      } else {
        backoffMs = this.backoffMsMin;
      }
    }
    const what = `no definite answer within ${this.operationTimeoutMs} ms (last: ${last})`;
    return maybeApplied
      ? { ok: false, error: new KvOutcomeUnknownError(`write of client ${this.clientId}: ${what}`) }
      : { ok: false, error: new KvUnavailableError(`client ${this.clientId}: ${what}`) };
  }
}
