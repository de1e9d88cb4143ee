/**
 * The gRPC server of the management API: every service of `proto/hyperfleet/v1`, in front of a
 * `Backend`.
 *
 * For every call, in this order:
 *  1. authentication: the metadata `authorization: Bearer <cluster token>` must carry the cluster
 *     token (compared in constant time, through SHA-256 digests as the Raft transport does); otherwise
 *     UNAUTHENTICATED with a message saying what is missing or wrong. A server with mutual TLS and no
 *     token relies on the client certificate alone;
 *  2. validation (`validate.ts`): INVALID_ARGUMENT naming the fields, which also go in the trailer
 *     `hyperfleet-invalid-fields`; the backend never sees an invalid request;
 *  3. the backend method, with a `CallContext` whose signal aborts on cancellation, deadline or
 *     shutdown;
 *  4. error mapping: an `ApiError` is sent as its code and message; anything else is logged and sent
 *     as INTERNAL "internal error" (its message may hold details a caller must not see);
 *  5. `onRequest(method, code, durationMs)` once the call ended, whatever the outcome (a stream:
 *     when it ends; a client's cancellation counts as CANCELLED).
 *
 * Streams: the server pulls the backend's iterable one message at a time and waits while gRPC's
 * buffer is full, so a slow client slows the producer. A client's cancellation aborts the context
 * and returns the iterator; `close()` ends open streams with UNAVAILABLE.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { ApiConfigError, ApiError, type GrpcStatusName, GRPC_STATUS, grpcStatusName, INVALID_FIELDS_TRAILER_KEY, isApiErrorCode } from "../errors.js";
import { FORWARDED_HOPS_METADATA_KEY } from "../forwarding.js";
import { API_METHODS, API_SERVICES, type MethodSpec, methodName } from "../methods.js";
import type { ApiLogger, Backend, CallContext, ConsoleInput, ConsoleOutput } from "../types.js";
import { invalidArgument, validateConsoleInput } from "../validate.js";
import { loadApi } from "./proto.js";

/** Metadata key of the credentials: `authorization: Bearer <token>`. */
export const AUTHORIZATION_METADATA_KEY = "authorization";

export interface ServerTlsOptions {
  /** PEM certificate chain of the server. */
  readonly certChain: Buffer;
  /** PEM private key of the server. */
  readonly privateKey: Buffer;
  /**
   * PEM CA certificates: when set, every client must present a certificate they signed (mutual
   * TLS), which authenticates it; a server with `clientCa` may then run without a cluster token.
   */
  readonly clientCa?: Buffer;
}

export interface ApiServerOptions {
  readonly backend: Backend;
  /** Default "127.0.0.1". */
  readonly host?: string;
  /** Default 0: a free port chosen by the operating system. */
  readonly port?: number;
  /**
   * Required of every call (`authorization: Bearer <token>`): a non-empty string without whitespace.
   * Needed unless `tls.clientCa` is set.
   */
  readonly clusterToken?: string;
  /** Default: plaintext. */
  readonly tls?: ServerTlsOptions;
  /** Where backend failures and hook errors go. Default: the console. */
  readonly logger?: ApiLogger;
  /** Called once per finished call with "Service/Rpc", the gRPC status name and the duration. */
  readonly onRequest?: (method: string, code: GrpcStatusName, durationMs: number) => void;
  /** How long `close()` lets calls finish before cutting connections. Default 1,000 ms. */
  readonly closeGraceMs?: number;
}

export interface ApiServer {
  /** "host:port" to give to `ApiClient` ("[::1]:port" for IPv6). */
  readonly address: string;
  readonly host: string;
  readonly port: number;
  /** Stops accepting calls, ends open streams with UNAVAILABLE and waits for the rest (grace). */
  close(): Promise<void>;
}

/** Writes to the console: the default logger. */
export const consoleApiLogger: ApiLogger = {
  warn: (fields, message) => console.warn(message, fields),
  error: (fields, message) => console.error(message, fields),
};

interface Status {
  readonly code: number;
  readonly details: string;
  readonly metadata?: grpc.Metadata;
}

const ABORTED: unique symbol = Symbol("aborted");
type AbortReason = "cancelled" | "shutdown" | "invalid-input";

/** Resolves with ABORTED once `signal` aborts. */
function whenAborted(signal: AbortSignal): Promise<typeof ABORTED> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(ABORTED);
    else signal.addEventListener("abort", () => resolve(ABORTED), { once: true });
  });
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

function deadlineMsOf(deadline: grpc.Deadline): number | null {
  if (deadline instanceof Date) return deadline.getTime();
  return Number.isFinite(deadline) ? deadline : null;
}

function hopsOf(metadata: grpc.Metadata): number {
  const values = metadata.get(FORWARDED_HOPS_METADATA_KEY);
  if (values.length === 0) return 0;
  const n = Number(String(values[0]));
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

type AnyServerCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>;

/** One call in progress: its context and how it ends. */
interface Tracked {
  readonly context: CallContext;
  readonly controller: AbortController;
  readonly startedMs: number;
  finished: boolean;
}

class ApiServerImpl {
  private readonly backend: Backend;
  private readonly tokenDigest: Buffer | null;
  private readonly logger: ApiLogger;
  private readonly onRequest: ApiServerOptions["onRequest"];
  private readonly active = new Set<Tracked>();
  closing = false;

  constructor(options: ApiServerOptions) {
    this.backend = options.backend;
    this.tokenDigest = options.clusterToken === undefined ? null : digest(options.clusterToken);
    this.logger = options.logger ?? consoleApiLogger;
    this.onRequest = options.onRequest;
  }

  /** The implementation object of one service for `grpc.Server.addService`. */
  implementation(service: MethodSpec["service"]): grpc.UntypedServiceImplementation {
    const impl: grpc.UntypedServiceImplementation = {};
    for (const spec of API_METHODS) {
      if (spec.service !== service) continue;
      if (spec.kind === "unary") impl[spec.rpc] = this.unary(spec);
      else if (spec.kind === "server-stream") impl[spec.rpc] = this.serverStream(spec);
      else impl[spec.rpc] = this.console(spec);
    }
    return impl;
  }

  /** Aborts every call in progress (streams then end with UNAVAILABLE). */
  abortAll(): void {
    for (const t of this.active) t.controller.abort("shutdown" satisfies AbortReason);
  }

  /** null when the metadata carries the right credentials, else why not. */
  private authenticate(metadata: grpc.Metadata): string | null {
    if (this.tokenDigest === null) return null;
    const values = metadata.get(AUTHORIZATION_METADATA_KEY);
    if (values.length === 0) return "missing credentials: send the metadata 'authorization: Bearer <cluster token>'";
    if (values.length > 1) return "more than one 'authorization' metadata value";
    const match = /^Bearer (\S+)$/i.exec(String(values[0]).trim());
    if (match === null) return "the 'authorization' metadata must be 'Bearer <cluster token>'";
    if (!timingSafeEqual(digest(match[1]!), this.tokenDigest)) return "wrong cluster token";
    return null;
  }

  private track(spec: MethodSpec, call: AnyServerCall): Tracked {
    const controller = new AbortController();
    const tracked: Tracked = {
      controller,
      startedMs: Date.now(),
      finished: false,
      context: {
        method: methodName(spec),
        peer: call.getPeer(),
        signal: controller.signal,
        deadlineMs: deadlineMsOf(call.getDeadline()),
        hops: hopsOf(call.metadata),
      },
    };
    (call as grpc.ServerUnaryCall<unknown, unknown>).on("cancelled", () => controller.abort("cancelled" satisfies AbortReason));
    this.active.add(tracked);
    if (this.closing) controller.abort("shutdown" satisfies AbortReason);
    return tracked;
  }

  /** Records the end of a call (once). */
  private finish(spec: MethodSpec, tracked: Tracked | number, code: number): void {
    let startedMs: number;
    if (typeof tracked === "number") {
      startedMs = tracked;
    } else {
      if (tracked.finished) return;
      tracked.finished = true;
      this.active.delete(tracked);
      startedMs = tracked.startedMs;
    }
    if (this.onRequest === undefined) return;
    try {
      this.onRequest(methodName(spec), grpcStatusName(code), Date.now() - startedMs);
    } catch (e) {
      this.logger.warn({ method: methodName(spec), err: e }, "the onRequest hook threw");
    }
  }

  /** The status for an error thrown by the backend (or by this server's checks). */
  private statusOf(spec: MethodSpec, e: unknown): Status {
    if (e instanceof ApiError || (e instanceof Error && e.name === "ApiError" && isApiErrorCode((e as ApiError).code))) {
      const error = e as ApiError;
      const code = GRPC_STATUS[error.code];
      const fields: readonly string[] = Array.isArray(error.fields) ? error.fields : [];
      if (fields.length === 0) return { code, details: error.message };
      const metadata = new grpc.Metadata();
      metadata.set(INVALID_FIELDS_TRAILER_KEY, fields.join(","));
      return { code, details: error.message, metadata };
    }
    this.logger.error({ method: methodName(spec), err: e }, "the backend failed");
    return { code: GRPC_STATUS.INTERNAL, details: "internal error (the server logged the details)" };
  }

  /** The status of a call aborted before it ended by itself. */
  private abortStatus(tracked: Tracked): Status {
    const reason = tracked.controller.signal.reason as AbortReason;
    if (reason === "shutdown") return { code: GRPC_STATUS.UNAVAILABLE, details: "the server is shutting down" };
    const deadlineMs = tracked.context.deadlineMs;
    if (deadlineMs !== null && Date.now() >= deadlineMs) return { code: GRPC_STATUS.DEADLINE_EXCEEDED, details: "deadline exceeded" };
    return { code: GRPC_STATUS.CANCELLED, details: "cancelled by the client" };
  }

  /** Checks credentials and the request; null when the call may go on. */
  private admit(spec: MethodSpec, metadata: grpc.Metadata, request: unknown): Status | null {
    const authError = this.authenticate(metadata);
    if (authError !== null) return { code: GRPC_STATUS.UNAUTHENTICATED, details: authError };
    if (this.closing) return { code: GRPC_STATUS.UNAVAILABLE, details: "the server is shutting down" };
    const violations = spec.validate(request);
    return violations.length === 0 ? null : this.statusOf(spec, invalidArgument(violations));
  }

  private callBackend(spec: MethodSpec, args: unknown[]): unknown {
    const fn = this.backend[spec.backend] as unknown as (...a: unknown[]) => unknown;
    return fn.apply(this.backend, args);
  }

  private unary(spec: MethodSpec): grpc.handleUnaryCall<unknown, unknown> {
    return (call, callback) => {
      const startedMs = Date.now();
      const refusal = this.admit(spec, call.metadata, call.request);
      if (refusal !== null) {
        this.finish(spec, startedMs, refusal.code);
        callback(refusal);
        return;
      }
      const tracked = this.track(spec, call);
      let result: Promise<unknown>;
      try {
        result = Promise.resolve(this.callBackend(spec, [call.request, tracked.context]));
      } catch (e) {
        result = Promise.reject(e);
      }
      result.then(
        (response) => {
          if (tracked.controller.signal.aborted && tracked.controller.signal.reason !== "shutdown") {
            this.finish(spec, tracked, this.abortStatus(tracked).code);
          } else {
            this.finish(spec, tracked, GRPC_STATUS.OK);
          }
          callback(null, response);
        },
        (e: unknown) => {
          // A call aborted under the backend (cancelled, deadline, shutdown) that then gave up.
          const gaveUp = tracked.controller.signal.aborted && e instanceof ApiError && e.code === "CANCELLED";
          const status = gaveUp ? this.abortStatus(tracked) : this.statusOf(spec, e);
          this.finish(spec, tracked, status.code);
          callback(status);
        },
      );
    };
  }

  /**
   * Writes the iterable's messages to the call until it ends ("ended") or the call is aborted
   * ("aborted"); throws what the iterable throws. Bounded by the call's life: each turn either
   * writes one message, ends, or returns on abort.
   */
  private async pump(call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>, iterable: AsyncIterable<unknown>, signal: AbortSignal): Promise<"ended" | "aborted"> {
    const aborted = whenAborted(signal);
    const iterator = iterable[Symbol.asyncIterator]();
    const stop = (): "aborted" => {
      // Not awaited: a generator suspended in an await only returns once that await settles.
      if (iterator.return !== undefined) iterator.return().catch(() => undefined);
      return "aborted";
    };
    for (;;) {
      const next = iterator.next();
      next.catch(() => undefined);
      const r = await Promise.race([next, aborted]);
      if (r === ABORTED) return stop();
      if (r.done === true) return "ended";
      if (!call.write(r.value)) {
        const drained = new Promise<void>((resolve) => call.once("drain", () => resolve()));
        if ((await Promise.race([drained, aborted])) === ABORTED) return stop();
      }
      if (signal.aborted) return stop();
    }
  }

  /** Ends a stream call with `status` (OK: `call.end()`). */
  private endStream(call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>, status: Status): void {
    if (status.code === GRPC_STATUS.OK) {
      call.end();
      return;
    }
    if (call.cancelled) return;
    call.emit("error", { code: status.code, details: status.details, metadata: status.metadata ?? new grpc.Metadata() });
  }

  /** Runs the backend's stream on a call and ends the call accordingly. */
  private async serve(
    spec: MethodSpec, call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>, tracked: Tracked,
    open: () => AsyncIterable<unknown>, inputError: () => ApiError | null,
  ): Promise<void> {
    let status: Status;
    try {
      const outcome = await this.pump(call, open(), tracked.controller.signal);
      if (outcome === "ended") {
        status = { code: GRPC_STATUS.OK, details: "OK" };
      } else {
        const invalid = inputError();
        status = invalid !== null ? this.statusOf(spec, invalid) : this.abortStatus(tracked);
      }
    } catch (e) {
      const invalid = inputError();
      status = invalid !== null
        ? this.statusOf(spec, invalid)
        : tracked.controller.signal.aborted ? this.abortStatus(tracked) : this.statusOf(spec, e);
    }
    this.finish(spec, tracked, status.code);
    this.endStream(call, status);
  }

  private serverStream(spec: MethodSpec): grpc.handleServerStreamingCall<unknown, unknown> {
    return (call) => {
      const startedMs = Date.now();
      const refusal = this.admit(spec, call.metadata, call.request);
      if (refusal !== null) {
        this.finish(spec, startedMs, refusal.code);
        this.endStream(call, refusal);
        return;
      }
      const tracked = this.track(spec, call);
      void this.serve(spec, call, tracked, () => this.callBackend(spec, [call.request, tracked.context]) as AsyncIterable<unknown>, () => null);
    };
  }

  /**
   * Console: the first ConsoleInput names the VM (validated like a request); later ones carry input,
   * handed to the backend as an async iterable that follows gRPC's flow control.
   */
  private console(spec: MethodSpec): grpc.handleBidiStreamingCall<unknown, unknown> {
    return (untypedCall) => {
      const call = untypedCall as grpc.ServerDuplexStream<ConsoleInput, ConsoleOutput>;
      const startedMs = Date.now();
      const authError = this.authenticate(call.metadata);
      if (authError !== null || this.closing) {
        const status = authError !== null
          ? { code: GRPC_STATUS.UNAUTHENTICATED, details: authError }
          : { code: GRPC_STATUS.UNAVAILABLE, details: "the server is shutting down" };
        this.finish(spec, startedMs, status.code);
        this.endStream(untypedCall, status);
        return;
      }
      const tracked = this.track(spec, untypedCall);
      const signal = tracked.controller.signal;
      // Not `call[Symbol.asyncIterator]()`: that one destroys the whole duplex once the client
      // half-closes, and the output must go on after the input ended.
      const reader = call.iterator({ destroyOnReturn: false }) as AsyncIterator<ConsoleInput>;
      let invalidInput: ApiError | null = null;
      const run = async (): Promise<void> => {
        let first: IteratorResult<ConsoleInput>;
        try {
          const firstNext = reader.next();
          firstNext.catch(() => undefined);
          const r = await Promise.race([firstNext, whenAborted(signal)]);
          if (r === ABORTED) {
            const status = this.abortStatus(tracked);
            this.finish(spec, tracked, status.code);
            this.endStream(untypedCall, status);
            return;
          }
          first = r;
        } catch {
          const status = this.abortStatus(tracked);
          this.finish(spec, tracked, status.code);
          return;
        }
        const firstViolations = first.done === true
          ? [{ field: "vm", description: "is required: the first ConsoleInput must name the VM, and none was sent" }]
          : spec.validate(first.value);
        if (firstViolations.length > 0) {
          const status = this.statusOf(spec, invalidArgument(firstViolations));
          this.finish(spec, tracked, status.code);
          this.endStream(untypedCall, status);
          return;
        }
        const opening = first.value as ConsoleInput;
        const vm = opening.vm;
        async function* input(): AsyncGenerator<Uint8Array> {
          if (opening.data.length > 0) yield opening.data;
          // Bounded by the call: ends when the client half-closes, cancels, or sends a bad message.
          for (;;) {
            let r: IteratorResult<ConsoleInput>;
            try {
              r = await reader.next();
            } catch {
              return;
            }
            if (r.done === true || signal.aborted) return;
            const violations = validateConsoleInput(r.value, vm);
            if (violations.length > 0) {
              invalidInput = invalidArgument(violations);
              tracked.controller.abort("invalid-input" satisfies AbortReason);
              return;
            }
            if (r.value.data.length > 0) yield r.value.data;
          }
        }
        await this.serve(
          spec, untypedCall, tracked,
          () => this.callBackend(spec, [{ vm }, input(), tracked.context]) as AsyncIterable<unknown>,
          () => invalidInput,
        );
      };
      void run();
    };
  }
}

/**
 * Starts the management API server on `host:port` and resolves once it listens.
 * Throws `ApiConfigError` without a way to authenticate callers (a token, or TLS with `clientCa`).
 */
export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  if (options.clusterToken === undefined && options.tls?.clientCa === undefined) {
    throw new ApiConfigError("startApiServer needs a clusterToken, or tls with clientCa (client certificates), to authenticate callers");
  }
  if (options.clusterToken !== undefined && !/^\S+$/.test(options.clusterToken)) {
    throw new ApiConfigError("clusterToken must be a non-empty string without whitespace");
  }
  const api = loadApi();
  const impl = new ApiServerImpl(options);
  const server = new grpc.Server();
  for (const service of API_SERVICES) server.addService(api.services[service], impl.implementation(service));
  const credentials = options.tls === undefined
    ? grpc.ServerCredentials.createInsecure()
    : grpc.ServerCredentials.createSsl(
      options.tls.clientCa ?? null,
      [{ cert_chain: options.tls.certChain, private_key: options.tls.privateKey }],
      options.tls.clientCa !== undefined,
    );
  const host = options.host ?? "127.0.0.1";
  const bindHost = host.includes(":") ? `[${host}]` : host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${bindHost}:${options.port ?? 0}`, credentials, (error, bound) => {
      if (error !== null) {
        server.forceShutdown();
        reject(new ApiConfigError(`cannot listen on ${bindHost}:${options.port ?? 0}: ${error.message}`, { cause: error }));
        return;
      }
      resolve(bound);
    });
  });
  const graceMs = options.closeGraceMs ?? 1000;
  let closed: Promise<void> | null = null;
  return {
    address: `${bindHost}:${port}`,
    host,
    port,
    close(): Promise<void> {
      if (closed !== null) return closed;
      impl.closing = true;
      impl.abortAll();
      closed = new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      return closed;
    },
  };
}
