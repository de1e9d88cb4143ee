/**
 * A typed client of the management API.
 *
 * Unary calls are promise methods that resolve with the response (shaped as in `types.ts`) or reject
 * with an `ApiError` carrying the server's code and message (transport failures too: UNAVAILABLE
 * when the server cannot be reached, DEADLINE_EXCEEDED when the deadline passed, CANCELLED when the
 * caller's signal aborted). Every unary call has a deadline: `CallOptions.timeoutMs`, else the
 * client's `timeoutMs` (10 s by default). Streams have none unless the call options give one.
 *
 * Requests may leave out any field: the wire fills proto3 defaults (`""`, `0`, `false`, the
 * `*_UNSPECIFIED` enum value), which the server reads as each .proto field documents. An enum field
 * given as a string the protos do not define is refused here (INVALID_ARGUMENT, nothing sent):
 * protobuf would otherwise send it as `*_UNSPECIFIED`, i.e. silently as the default.
 *
 * Streams (`watchVmEvents`, `watchMigration`) start when the method is called (so nothing that
 * happens before the first `next()` is missed) and are consumed once, with `for await`; leaving the
 * loop early or calling `cancel()` cancels the call, and the iteration then ends without an error.
 */
import * as grpc from "@grpc/grpc-js";
import { ApiConfigError, ApiError, apiCodeOfGrpcStatus, grpcStatusName, INVALID_FIELDS_TRAILER_KEY } from "../errors.js";
import { FORWARDED_HOPS_METADATA_KEY, type ForwardTarget } from "../forwarding.js";
import { methodOf, type MethodSpec } from "../methods.js";
import type {
  AddMemberRequest, Backend, CancelMigrationRequest, ClusterStatus, ClusterStatusRequest, ConsoleInput, ConsoleOutput, CreateVmRequest,
  DeleteVmRequest, DeleteVmResponse, DrainNodeRequest, GetMigrationRequest, GetVmRequest, ListMigrationsRequest, ListMigrationsResponse,
  ListNodesRequest, ListNodesResponse, ListVmsRequest, ListVmsResponse, Member, MembersRequest, MembersResponse, MigrateRequest,
  MigrateResponse, Migration, MigrationUpdate, Node, PauseVmRequest, PromoteMemberRequest, RemoveMemberRequest, RemoveMemberResponse,
  RestoreVmRequest, ResumeNodeRequest, ResumeVmRequest, SaveVmRequest, SaveVmResponse, SetVmKvpRequest, StartVmRequest, StopVmRequest, Vm, VmEvent,
  WatchEventsRequest, WatchMigrationRequest,
} from "../types.js";
import { AUTHORIZATION_METADATA_KEY } from "./server.js";
import { loadApi } from "./proto.js";

export interface ClientTlsOptions {
  /** PEM CA certificates that signed the server's certificate; default: the system's roots. */
  readonly rootCerts?: Buffer;
  /** Mutual TLS: the client's PEM private key and certificate chain. */
  readonly privateKey?: Buffer;
  readonly certChain?: Buffer;
  /** The name the server's certificate must carry, when it is not the address's host. */
  readonly serverNameOverride?: string;
}

export interface ApiClientOptions {
  /** The cluster token, sent as `authorization: Bearer <token>` on every call. */
  readonly token?: string;
  /** Deadline of a unary call that gives none. Default 10,000 ms. */
  readonly timeoutMs?: number;
  /** Default: plaintext. */
  readonly tls?: ClientTlsOptions;
}

export interface CallOptions {
  /** This call's deadline, from now (unary default: the client's `timeoutMs`; streams: none). */
  readonly timeoutMs?: number;
  /** An absolute deadline (Unix ms); the earlier of this and `timeoutMs` applies. */
  readonly deadlineMs?: number;
  /** Cancels the call when it aborts (the call then fails with CANCELLED). */
  readonly signal?: AbortSignal;
  /** Forwarding (`forwarding.ts`): how many nodes forwarded the call. Clients leave it unset. */
  readonly hops?: number;
}

/** A server stream: iterate it once; `cancel()` (or leaving the loop) ends it without an error. */
export interface ApiStream<T> extends AsyncIterable<T> {
  cancel(): void;
}

/** An attached console. */
export interface ConsoleConnection {
  /** The console's output: history (`history` set) first, then live output; iterate once. */
  readonly output: AsyncIterable<ConsoleOutput>;
  /** Types `data` into the console (a string is sent as UTF-8); false when the caller should wait for the output to move. */
  write(data: Uint8Array | string): boolean;
  /** Ends the input; the output goes on until the server ends the call. */
  end(): void;
  /** Detaches: cancels the call. */
  cancel(): void;
}

/** A request with `K` required and every other field optional. */
export type RequestInput<T, K extends keyof T> = Pick<T, K> & Partial<Omit<T, K>>;

export type CreateVmInput = RequestInput<CreateVmRequest, "name" | "memoryBytes" | "vcpus" | "image">;
export type StopVmInput = RequestInput<StopVmRequest, "name">;
export type SetVmKvpInput = RequestInput<SetVmKvpRequest, "name" | "key">;
export type DeleteVmInput = RequestInput<DeleteVmRequest, "name">;
export type MigrateInput = RequestInput<MigrateRequest, "vm">;
export type AddMemberInput = RequestInput<AddMemberRequest, "id" | "raftAddress">;

const DEFAULT_TIMEOUT_MS = 10_000;

function snakeCase(camel: string): string {
  return camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** The `ApiError` for a failed call. */
export function apiErrorOf(error: grpc.ServiceError): ApiError {
  const code = apiCodeOfGrpcStatus(error.code);
  const details = error.details ?? error.message;
  const message = grpcStatusName(error.code) === code ? details : `${grpcStatusName(error.code)}: ${details}`;
  const fieldsValue = error.metadata?.get(INVALID_FIELDS_TRAILER_KEY) ?? [];
  const fields = fieldsValue.length === 0 ? [] : String(fieldsValue[0]).split(",").filter((f) => f !== "");
  return new ApiError(code, message, { cause: error, fields, grpcCode: error.code });
}

function isServiceError(e: unknown): e is grpc.ServiceError {
  return e instanceof Error && typeof (e as Partial<grpc.ServiceError>).code === "number";
}

/**
 * A client of one node's management API. Methods mirror `Backend` (same names and shapes), so an
 * `ApiClient` is also what `forwardingBackend` forwards writes through.
 */
export class ApiClient implements ForwardTarget {
  readonly address: string;
  private readonly client: grpc.Client;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;
  private closed = false;

  constructor(address: string, options: ApiClientOptions = {}) {
    if (options.timeoutMs !== undefined && !(options.timeoutMs > 0)) throw new ApiConfigError(`timeoutMs must be positive, got ${options.timeoutMs}`);
    this.address = address;
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const tls = options.tls;
    const credentials = tls === undefined
      ? grpc.credentials.createInsecure()
      : grpc.credentials.createSsl(tls.rootCerts ?? null, tls.privateKey ?? null, tls.certChain ?? null);
    const channelOptions: grpc.ChannelOptions = {
      // A restarted node must be found again quickly.
      "grpc.initial_reconnect_backoff_ms": 50,
      "grpc.min_reconnect_backoff_ms": 50,
      "grpc.max_reconnect_backoff_ms": 1000,
    };
    if (tls?.serverNameOverride !== undefined) channelOptions["grpc.ssl_target_name_override"] = tls.serverNameOverride;
    this.client = new grpc.Client(address, credentials, channelOptions);
  }

  /** Closes the connection; calls in progress fail, later calls fail with UNAVAILABLE. */
  close(): void {
    this.closed = true;
    this.client.close();
  }

  // Vms ---------------------------------------------------------------------------------------

  createVm(request: CreateVmInput, options?: CallOptions): Promise<Vm> {
    return this.unary("createVm", request, options);
  }
  startVm(request: StartVmRequest, options?: CallOptions): Promise<Vm> {
    return this.unary("startVm", request, options);
  }
  stopVm(request: StopVmInput, options?: CallOptions): Promise<Vm> {
    return this.unary("stopVm", request, options);
  }
  pauseVm(request: PauseVmRequest, options?: CallOptions): Promise<Vm> {
    return this.unary("pauseVm", request, options);
  }
  resumeVm(request: ResumeVmRequest, options?: CallOptions): Promise<Vm> {
    return this.unary("resumeVm", request, options);
  }
  saveVm(request: SaveVmRequest, options?: CallOptions): Promise<SaveVmResponse> {
    return this.unary("saveVm", request, options);
  }
  restoreVm(request: RestoreVmRequest, options?: CallOptions): Promise<Vm> {
    return this.unary("restoreVm", request, options);
  }
  setVmKvp(request: SetVmKvpInput, options?: CallOptions): Promise<Vm> {
    return this.unary("setVmKvp", request, options);
  }
  deleteVm(request: DeleteVmInput, options?: CallOptions): Promise<DeleteVmResponse> {
    return this.unary("deleteVm", request, options);
  }
  getVm(request: GetVmRequest, options?: CallOptions): Promise<Vm> {
    return this.unary("getVm", request, options);
  }
  listVms(request: Partial<ListVmsRequest> = {}, options?: CallOptions): Promise<ListVmsResponse> {
    return this.unary("listVms", request, options);
  }
  /** VM events from now on (all VMs, or `request.vm`'s), until cancelled. */
  watchVmEvents(request: Partial<WatchEventsRequest> = {}, options?: CallOptions): ApiStream<VmEvent> {
    return this.serverStream("watchVmEvents", request, options);
  }

  /** Attaches to a VM's console. */
  attachConsole(vm: string, options?: CallOptions): ConsoleConnection {
    if (this.closed) {
      const output = failedStream<ConsoleOutput>(new ApiError("UNAVAILABLE", "the client is closed"));
      return { output, write: () => false, end: () => undefined, cancel: () => output.cancel() };
    }
    const spec = methodOf("attachConsole");
    const m = loadApi().method(spec);
    const call = this.client.makeBidiStreamRequest<ConsoleInput, ConsoleOutput>(
      m.path, m.requestSerialize, m.responseDeserialize as (b: Buffer) => ConsoleOutput, this.metadata(options), this.callOptions(options, null),
    );
    const output = new CallStream<ConsoleOutput>(call, options?.signal);
    call.write({ vm, data: new Uint8Array(0) });
    let inputEnded = false;
    return {
      output,
      write: (data) => {
        if (inputEnded) throw new ApiConfigError("the console input was ended");
        return call.write({ vm: "", data: typeof data === "string" ? Buffer.from(data, "utf8") : data });
      },
      end: () => {
        if (inputEnded) return;
        inputEnded = true;
        call.end();
      },
      cancel: () => output.cancel(),
    };
  }

  // Migrations --------------------------------------------------------------------------------

  migrate(request: MigrateInput, options?: CallOptions): Promise<MigrateResponse> {
    return this.unary("migrate", request, options);
  }
  cancelMigration(request: CancelMigrationRequest, options?: CallOptions): Promise<Migration> {
    return this.unary("cancelMigration", request, options);
  }
  /** Progress updates, then the result; the iteration ends after the result. */
  watchMigration(request: WatchMigrationRequest, options?: CallOptions): ApiStream<MigrationUpdate> {
    return this.serverStream("watchMigration", request, options);
  }
  getMigration(request: GetMigrationRequest, options?: CallOptions): Promise<Migration> {
    return this.unary("getMigration", request, options);
  }
  listMigrations(request: Partial<ListMigrationsRequest> = {}, options?: CallOptions): Promise<ListMigrationsResponse> {
    return this.unary("listMigrations", request, options);
  }

  // Nodes -------------------------------------------------------------------------------------

  listNodes(request: Partial<ListNodesRequest> = {}, options?: CallOptions): Promise<ListNodesResponse> {
    return this.unary("listNodes", request, options);
  }
  drainNode(request: DrainNodeRequest, options?: CallOptions): Promise<Node> {
    return this.unary("drainNode", request, options);
  }
  resumeNode(request: ResumeNodeRequest, options?: CallOptions): Promise<Node> {
    return this.unary("resumeNode", request, options);
  }

  // Cluster -----------------------------------------------------------------------------------

  clusterStatus(request: ClusterStatusRequest = {}, options?: CallOptions): Promise<ClusterStatus> {
    return this.unary("clusterStatus", request, options);
  }
  listMembers(request: MembersRequest = {}, options?: CallOptions): Promise<MembersResponse> {
    return this.unary("listMembers", request, options);
  }
  addMember(request: AddMemberInput, options?: CallOptions): Promise<Member> {
    return this.unary("addMember", request, options);
  }
  promoteMember(request: PromoteMemberRequest, options?: CallOptions): Promise<Member> {
    return this.unary("promoteMember", request, options);
  }
  removeMember(request: RemoveMemberRequest, options?: CallOptions): Promise<RemoveMemberResponse> {
    return this.unary("removeMember", request, options);
  }

  // -------------------------------------------------------------------------------------------

  private metadata(options: CallOptions | undefined): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (this.token !== undefined) metadata.set(AUTHORIZATION_METADATA_KEY, `Bearer ${this.token}`);
    if (options?.hops !== undefined && options.hops > 0) metadata.set(FORWARDED_HOPS_METADATA_KEY, String(options.hops));
    return metadata;
  }

  /** The call's deadline: the earlier of `timeoutMs` from now and `deadlineMs`; none if neither. */
  private callOptions(options: CallOptions | undefined, defaultTimeoutMs: number | null): grpc.CallOptions {
    const timeoutMs = options?.timeoutMs ?? defaultTimeoutMs;
    const candidates: number[] = [];
    if (timeoutMs !== null) candidates.push(Date.now() + timeoutMs);
    if (options?.deadlineMs !== undefined) candidates.push(options.deadlineMs);
    return candidates.length === 0 ? {} : { deadline: new Date(Math.min(...candidates)) };
  }

  /** Refuses enum strings the protos do not define (they would go out as *_UNSPECIFIED). */
  private checkEnums(spec: MethodSpec, request: object): ApiError | null {
    const fields = loadApi().enumFields(spec.requestType);
    for (const [field, names] of fields) {
      const value = (request as Record<string, unknown>)[field];
      if (typeof value === "string" && !names.includes(value)) {
        const proto = snakeCase(field);
        return new ApiError(
          "INVALID_ARGUMENT",
          `${proto}: unknown value ${JSON.stringify(value).slice(0, 64)} (expected one of ${names.join(", ")}); not sent`,
          { fields: [proto] },
        );
      }
    }
    return null;
  }

  private unary<Res>(backend: keyof Backend, request: object, options: CallOptions | undefined): Promise<Res> {
    const spec = methodOf(backend);
    if (this.closed) return Promise.reject(new ApiError("UNAVAILABLE", "the client is closed"));
    const invalid = this.checkEnums(spec, request);
    if (invalid !== null) return Promise.reject(invalid);
    const signal = options?.signal;
    if (signal?.aborted === true) return Promise.reject(new ApiError("CANCELLED", "cancelled before it was sent"));
    const m = loadApi().method(spec);
    return new Promise<Res>((resolve, reject) => {
      let onAbort: (() => void) | null = null;
      let call: grpc.ClientUnaryCall;
      try {
        call = this.client.makeUnaryRequest<object, Res>(
          m.path, m.requestSerialize, m.responseDeserialize as (b: Buffer) => Res, request, this.metadata(options),
          this.callOptions(options, this.timeoutMs),
          (error, response) => {
            if (onAbort !== null) signal?.removeEventListener("abort", onAbort);
            if (error !== null) reject(apiErrorOf(error));
            else if (response === undefined) reject(new ApiError("INTERNAL", "empty response"));
            else resolve(response);
          },
        );
      } catch (e) {
        reject(new ApiError("INTERNAL", `the call could not be made: ${e instanceof Error ? e.message : String(e)}`, { cause: e }));
        return;
      }
      if (signal !== undefined) {
        onAbort = () => call.cancel();
        signal.addEventListener("abort", onAbort, { once: true });
      }
    });
  }

  private serverStream<T>(backend: keyof Backend, request: object, options: CallOptions | undefined): ApiStream<T> {
    const spec = methodOf(backend);
    if (this.closed) return failedStream(new ApiError("UNAVAILABLE", "the client is closed"));
    const invalid = this.checkEnums(spec, request);
    if (invalid !== null) return failedStream(invalid);
    const m = loadApi().method(spec);
    const call = this.client.makeServerStreamRequest<object, T>(
      m.path, m.requestSerialize, m.responseDeserialize as (b: Buffer) => T, request, this.metadata(options), this.callOptions(options, null),
    );
    return new CallStream<T>(call, options?.signal);
  }
}

/** A stream that was never sent: iterating it throws `error`. */
function failedStream<T>(error: ApiError): ApiStream<T> {
  let iterated = false;
  return {
    cancel: () => undefined,
    [Symbol.asyncIterator](): AsyncIterator<T> {
      if (iterated) throw new ApiConfigError("a stream can be iterated only once");
      iterated = true;
      return { next: () => Promise.reject(error) };
    },
  };
}

/** The readable side of a streaming call as an `ApiStream`. */
class CallStream<T> implements ApiStream<T> {
  private readonly call: grpc.ClientReadableStream<T> | grpc.ClientDuplexStream<unknown, T>;
  private cancelled = false;
  private iterated = false;
  private ended = false;

  constructor(call: grpc.ClientReadableStream<T> | grpc.ClientDuplexStream<unknown, T>, signal: AbortSignal | undefined) {
    this.call = call;
    // Errors are read through the iterator; this listener keeps an error that comes before the first
    // `next()` (or after the loop was left) from being thrown as an unhandled 'error' event.
    call.on("error", () => undefined);
    if (signal !== undefined) {
      if (signal.aborted) this.cancel();
      else signal.addEventListener("abort", () => this.cancel(), { once: true });
    }
  }

  cancel(): void {
    if (this.cancelled || this.ended) return;
    this.cancelled = true;
    this.call.cancel();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    if (this.iterated) throw new ApiConfigError("a stream can be iterated only once");
    this.iterated = true;
    const reader = this.call.iterator({ destroyOnReturn: false }) as AsyncIterator<T>;
    try {
      // Bounded by the call: each turn reads one message, or the call ends, fails or is cancelled.
      for (;;) {
        let r: IteratorResult<T>;
        try {
          r = await reader.next();
        } catch (e) {
          if (this.cancelled) return;
          throw isServiceError(e) ? apiErrorOf(e) : e;
        }
        if (r.done === true) {
          this.ended = true;
          return;
        }
        yield r.value;
      }
    } finally {
      // Left early (break, return, throw in the loop body): the call is no longer wanted.
      if (!this.ended) this.cancel();
    }
  }
}
