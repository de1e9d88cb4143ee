/**
 * Simulated key-value clients. Each client runs one operation at a time against the member it
 * believes leads, follows redirects (trying the members in turn when no leader is known), retries
 * on timeout with the same request id (the state
 * machine answers a retry of an applied request from its session table, so a write applies at most
 * once), and records every operation in the history for the linearizability check.
 *
 * Outcomes: an answer is recorded as `ok`; an operation abandoned after its attempts ran out is
 * recorded as `unknown` (it may still apply later), and the client continues under a new session
 * and a new history stream.
 */
import type { SeededRng } from "../rng.js";
import type { HistoryRecorder, OperationHandle } from "../check/history.js";
import type { KvInput, KvOutput } from "../check/kv-model.js";
import type { NodeId } from "../types.js";
import type { Clock, TimerId } from "./clock.js";

/** A member's answer to a client request. */
export type ClientReply =
  | { readonly type: "ok"; readonly output: KvOutput }
  /** Not the leader; `leader` is the one it knows, or "" (none known). Nothing was proposed. */
  | { readonly type: "redirect"; readonly leader: NodeId }
  /** The leader could not take it now (proposal dropped); nothing was proposed. */
  | { readonly type: "retry" };

export interface ClientRequest {
  readonly kind: "request";
  readonly session: string;
  readonly requestId: number;
  readonly input: KvInput;
}

export interface ClientResponse {
  readonly kind: "response";
  readonly session: string;
  readonly requestId: number;
  readonly reply: ClientReply;
}

export interface ClientOptions {
  readonly keyCount: number;
  readonly timeoutMs: number;
  readonly thinkMsMax: number;
  /** Delay before retrying after a redirect without a known leader. */
  readonly backoffMs: number;
  /** Attempts per operation in the safety phase before it is abandoned as unknown. */
  readonly attemptsMax: number;
}

export interface ClientStats {
  ok: number;
  unknown: number;
  attempts: number;
  redirects: number;
  timeouts: number;
}

interface CurrentOp {
  readonly input: KvInput;
  readonly handle: OperationHandle;
  readonly requestId: number;
  attempts: number;
  timer: TimerId | null;
}

export class SimClient {
  private generation = 0;
  private sessionName: string;
  private requestIdNext = 1;
  private valueNext = 1;
  private current: CurrentOp | null = null;
  private thinkTimer: TimerId | null = null;
  private target: number;
  /** Position in the round-robin over all members, advanced on timeouts and unhelpful answers. */
  private rotation: number;
  /** Operations still to start; null = unlimited (safety phase). */
  private remainingOps: number | null = null;
  private readonly lastSeen = new Map<string, string | null>();
  /** The session and request id of every operation this client invoked, by history handle id. */
  readonly requests = new Map<number, { readonly session: string; readonly requestId: number }>();
  readonly stats: ClientStats = { ok: 0, unknown: 0, attempts: 0, redirects: 0, timeouts: 0 };

  constructor(
    readonly name: string,
    private readonly members: readonly NodeId[],
    private readonly clock: Clock,
    private readonly rng: SeededRng,
    private readonly history: HistoryRecorder<KvInput, KvOutput>,
    private readonly send: (to: NodeId, request: ClientRequest) => void,
    private readonly options: ClientOptions,
  ) {
    this.sessionName = `${name}.0`;
    this.rotation = rng.int(members.length);
    this.target = this.rotation;
  }

  get session(): string {
    return this.sessionName;
  }

  /** True once the client started every operation it was allowed and none is in flight. */
  get done(): boolean {
    return this.current === null && this.remainingOps === 0;
  }

  get busy(): boolean {
    return this.current !== null;
  }

  start(): void {
    this.think();
  }

  /** Liveness phase: retry without limit, finish the operation in flight, then run `ops` more and stop. */
  enterLiveness(ops: number): void {
    this.remainingOps = ops;
    if (this.current === null && this.thinkTimer === null) this.think();
  }

  onResponse(from: NodeId, response: ClientResponse): void {
    const op = this.current;
    if (op === null || response.session !== this.sessionName || response.requestId !== op.requestId) return;
    const reply = response.reply;
    if (op.timer !== null) this.clock.cancel(op.timer);
    op.timer = null;
    switch (reply.type) {
      case "ok":
        this.complete(op, reply.output);
        return;
      case "redirect": {
        this.stats.redirects++;
        const hinted = reply.leader === "" || reply.leader === from ? -1 : this.members.indexOf(reply.leader);
        if (hinted >= 0) {
          this.target = hinted;
          this.retry(op, 1);
        } else {
          this.rotate();
          this.retry(op, this.options.backoffMs);
        }
        return;
      }
      case "retry":
        this.rotate();
        this.retry(op, this.options.backoffMs);
        return;
    }
  }

  private think(): void {
    if (this.remainingOps === 0) return;
    const delayMs = this.rng.int(this.options.thinkMsMax + 1);
    this.thinkTimer = this.clock.setTimer(delayMs, () => {
      this.thinkTimer = null;
      this.startOp();
    });
  }

  private startOp(): void {
    if (this.remainingOps !== null) {
      if (this.remainingOps === 0) return;
      this.remainingOps--;
    }
    const input = this.nextInput();
    const handle = this.history.invoke(this.name, input);
    this.current = { input, handle, requestId: this.requestIdNext++, attempts: 0, timer: null };
    this.requests.set(handle.id, { session: this.sessionName, requestId: this.current.requestId });
    this.attempt(this.current);
  }

  private nextInput(): KvInput {
    const key = `k${this.rng.int(this.options.keyCount)}`;
    const r = this.rng.int(10);
    if (r < 4) return { op: "get", key };
    const value = `${this.name}.${this.valueNext++}`;
    if (r < 7) return { op: "put", key, value };
    const seen = this.lastSeen.get(key) ?? null;
    const expected = this.rng.chance(3, 4) ? seen : null;
    return { op: "cas", key, expected, value };
  }

  private attempt(op: CurrentOp): void {
    op.attempts++;
    this.stats.attempts++;
    this.send(this.members[this.target]!, { kind: "request", session: this.sessionName, requestId: op.requestId, input: op.input });
    op.timer = this.clock.setTimer(this.options.timeoutMs, () => {
      op.timer = null;
      this.stats.timeouts++;
      this.rotate();
      this.retry(op, 0);
    });
  }

  /**
   * Tries the next member in a fixed rotation. Redirects are followed without moving the rotation,
   * so stale hints (a removed member naming a crashed leader) cannot trap the client in a cycle.
   */
  private rotate(): void {
    this.rotation = (this.rotation + 1) % this.members.length;
    this.target = this.rotation;
  }

  private retry(op: CurrentOp, delayMs: number): void {
    if (this.remainingOps === null && op.attempts >= this.options.attemptsMax) {
      this.abandon(op);
      return;
    }
    op.timer = this.clock.setTimer(delayMs, () => {
      op.timer = null;
      this.attempt(op);
    });
  }

  private complete(op: CurrentOp, output: KvOutput): void {
    this.history.ok(op.handle, output);
    this.stats.ok++;
    const input = op.input;
    if (output.op === "get") this.lastSeen.set(input.key, output.value);
    else if (input.op === "put") this.lastSeen.set(input.key, input.value);
    else if (input.op === "cas" && output.op === "cas" && output.ok) this.lastSeen.set(input.key, input.value);
    this.current = null;
    this.think();
  }

  private abandon(op: CurrentOp): void {
    this.history.unknown(op.handle);
    this.stats.unknown++;
    this.current = null;
    this.generation++;
    this.sessionName = `${this.name}.${this.generation}`;
    this.requestIdNext = 1;
    this.think();
  }
}
