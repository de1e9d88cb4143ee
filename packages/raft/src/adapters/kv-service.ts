/**
 * The key-value service of a Raft member: `proto/kv.proto` over gRPC, in front of a `RaftNode` that
 * replicates a `KvStateMachine`.
 *
 * Writes (Put, Cas) are proposed to Raft as `encodeKvCommand({ clientId, requestId, input })` and
 * answered with the state machine's result once applied on this member. Gets go through ReadIndex
 * (`RaftNode.readIndex`): the leader confirms with a quorum that it still leads, waits until it applied
 * the commit index of that moment, then reads its local state — linearizable without a log entry.
 * Only the leader serves Put/Get/Cas; the others answer NOT_LEADER with the leader they know.
 */
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { KvInput } from "../check/kv-model.js";
import { encodeKvCommand, KvCommandError, type KvApplied, type KvStateMachine } from "../kv.js";
import { type Entry, Role } from "../types.js";
import type { ListenAddress, ListenOptions } from "./grpc-transport.js";
import {
  NotLeaderError, ProposalOutcomeUnknownError, ProposalRejectedError, RaftNodeFailedError, type RaftNode, type ReplicatedStateMachine,
} from "./raft-node.js";

/** Found from `src/adapters/` (tests, tsx) and `dist/adapters/` (built code) alike. */
const PROTO_PATH = fileURLToPath(new URL("../../proto/kv.proto", import.meta.url));
const SERVICE_NAME = "hyperfleet.kv.v1.Kv";

export type KvStatus = "STATUS_UNSPECIFIED" | "OK" | "NOT_LEADER" | "UNAVAILABLE" | "OUTCOME_UNKNOWN" | "REJECTED";

export interface KvPutRequest {
  clientId: string;
  requestId: number;
  key: string;
  value: string;
}

export interface KvGetRequest {
  key: string;
}

export interface KvCasRequest {
  clientId: string;
  requestId: number;
  key: string;
  expectPresent: boolean;
  expected: string;
  value: string;
}

export interface KvResponse {
  status: KvStatus;
  leaderId: string;
  leaderAddress: string;
  message: string;
  present: boolean;
  value: string;
  succeeded: boolean;
  index: number;
}

/** One operation of a batch: exactly one field set. */
export interface KvBatchOp {
  put?: KvPutRequest | null;
  get?: KvGetRequest | null;
  cas?: KvCasRequest | null;
}

export interface KvBatchRequest {
  ops: KvBatchOp[];
}

export interface KvBatchResponse {
  responses: KvResponse[];
}

/** The most operations one Batch call may carry. */
export const KV_BATCH_OPS_MAX = 1024;

export type KvStatusRequest = Record<string, never>;

export interface KvStatusResponse {
  id: string;
  role: string;
  term: number;
  leaderId: string;
  commitIndex: number;
  appliedIndex: number;
  snapshotIndex: number;
  voters: string[];
  learners: string[];
  stateCrc: number;
  keyCount: number;
  readyTotal: number;
  fsyncTotal: number;
  entriesPersistedTotal: number;
  entriesAppliedTotal: number;
  snapshotsTakenTotal: number;
  snapshotsInstalledTotal: number;
  persistMsTotal: number;
  readyMsTotal: number;
}

/** One method of the KV service as proto-loader describes it. */
export interface KvMethod<Req, Res> {
  readonly path: string;
  readonly requestSerialize: (value: Req) => Buffer;
  readonly requestDeserialize: (bytes: Buffer) => Req;
  readonly responseSerialize: (value: Res) => Buffer;
  readonly responseDeserialize: (bytes: Buffer) => Res;
}

export interface KvApi {
  readonly definition: grpc.ServiceDefinition;
  readonly put: KvMethod<KvPutRequest, KvResponse>;
  readonly get: KvMethod<KvGetRequest, KvResponse>;
  readonly cas: KvMethod<KvCasRequest, KvResponse>;
  readonly batch: KvMethod<KvBatchRequest, KvBatchResponse>;
  readonly status: KvMethod<KvStatusRequest, KvStatusResponse>;
}

/** A malformed `kv.proto` or a misuse of the service. */
export class KvServiceError extends Error {
  override readonly name = "KvServiceError";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

let api: KvApi | null = null;

/** The service definition and its methods, loaded once from `proto/kv.proto`. */
export function loadKvApi(): KvApi {
  if (api !== null) return api;
  const pkg = protoLoader.loadSync(PROTO_PATH, { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
  const definition = pkg[SERVICE_NAME] as unknown as grpc.ServiceDefinition | undefined;
  if (definition === undefined) throw new KvServiceError(`${PROTO_PATH} does not define ${SERVICE_NAME}`);
  const method = <Req, Res>(name: string): KvMethod<Req, Res> => {
    const m = definition[name];
    if (m === undefined) throw new KvServiceError(`${SERVICE_NAME} has no method ${name}`);
    return m as unknown as KvMethod<Req, Res>;
  };
  api = {
    definition,
    put: method("Put"),
    get: method("Get"),
    cas: method("Cas"),
    batch: method("Batch"),
    status: method("Status"),
  };
  return api;
}

/** A `KvStateMachine` as the state machine a `RaftNode` replicates. */
export function kvReplicatedStateMachine(kv: KvStateMachine): ReplicatedStateMachine<KvApplied | null> {
  return {
    apply: (entry: Entry) => kv.apply(entry),
    snapshot: () => kv.snapshot(),
    restore: (bytes: Uint8Array) => kv.restore(bytes),
  };
}

/** CRC-32 of the state: the last 4 bytes of a KV snapshot are the CRC of everything before them. */
export function kvStateCrc(kv: KvStateMachine): number {
  const bytes = kv.snapshot();
  const n = bytes.length;
  return (bytes[n - 4]! | (bytes[n - 3]! << 8) | (bytes[n - 2]! << 16) | (bytes[n - 1]! << 24)) >>> 0;
}

export interface KvServiceOptions {
  readonly node: RaftNode<KvApplied | null>;
  /** The machine `node` replicates (`kvReplicatedStateMachine(kv)`), read by Get after the read barrier. */
  readonly kv: KvStateMachine;
  /** A write not applied within this time is answered OUTCOME_UNKNOWN. Default 3,000 ms. */
  readonly writeTimeoutMs?: number;
  /** A read barrier not reached within this time is answered UNAVAILABLE. Default 3,000 ms. */
  readonly readTimeoutMs?: number;
}

function response(fields: Partial<KvResponse> & Pick<KvResponse, "status">): KvResponse {
  return { leaderId: "", leaderAddress: "", message: "", present: false, value: "", succeeded: false, index: 0, ...fields };
}

function roleName(role: Role): string {
  switch (role) {
    case Role.Leader: return "leader";
    case Role.Candidate: return "candidate";
    case Role.PreCandidate: return "pre-candidate";
    default: return "follower";
  }
}

/**
 * The gRPC server of one member. `listen` once; `close` stops it (the RaftNode is closed by its owner).
 */
export class KvService {
  private readonly node: RaftNode<KvApplied | null>;
  private readonly kv: KvStateMachine;
  private readonly writeTimeoutMs: number;
  private readonly readTimeoutMs: number;
  private server: grpc.Server | null = null;
  private closed = false;

  constructor(options: KvServiceOptions) {
    this.node = options.node;
    this.kv = options.kv;
    this.writeTimeoutMs = options.writeTimeoutMs ?? 3000;
    this.readTimeoutMs = options.readTimeoutMs ?? 3000;
  }

  /** Starts serving on `host:port` (0: any free port); resolves with the bound address. */
  listen(options: ListenOptions): Promise<ListenAddress> {
    if (this.closed) return Promise.reject(new KvServiceError("the service is closed"));
    if (this.server !== null) return Promise.reject(new KvServiceError("the service is already listening"));
    const kvApi = loadKvApi();
    const server = new grpc.Server();
    const unary = <Req, Res>(handler: (request: Req) => Promise<Res>) =>
      (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>): void => {
        handler(call.request).then(
          (res) => callback(null, res),
          (e: unknown) => callback({ code: grpc.status.INTERNAL, details: e instanceof Error ? e.message : String(e) }),
        );
      };
    server.addService(kvApi.definition, {
      Put: unary((r: KvPutRequest) => this.write(r.clientId, r.requestId, { op: "put", key: r.key, value: r.value })),
      Cas: unary((r: KvCasRequest) =>
        this.write(r.clientId, r.requestId, { op: "cas", key: r.key, expected: r.expectPresent ? r.expected : null, value: r.value })),
      Get: unary((r: KvGetRequest) => this.read(r.key)),
      Batch: unary(async (r: KvBatchRequest): Promise<KvBatchResponse> => {
        if (r.ops.length > KV_BATCH_OPS_MAX) {
          const rejected = response({ status: "REJECTED", message: `a batch carries at most ${KV_BATCH_OPS_MAX} operations, got ${r.ops.length}` });
          return { responses: r.ops.map(() => rejected) };
        }
        return { responses: await Promise.all(r.ops.map((op) => this.batchOp(op))) };
      }),
      Status: unary(() => Promise.resolve(this.statusResponse())),
    });
    this.server = server;
    const host = options.host.includes(":") ? `[${options.host}]` : options.host;
    return new Promise<ListenAddress>((resolve, reject) => {
      server.bindAsync(`${host}:${options.port}`, grpc.ServerCredentials.createInsecure(), (error, port) => {
        if (error !== null) {
          server.forceShutdown();
          this.server = null;
          reject(new KvServiceError(`cannot listen on ${host}:${options.port}: ${error.message}`, { cause: error }));
          return;
        }
        resolve({ host: options.host, port, address: `${host}:${port}` });
      });
    });
  }

  /** Stops accepting calls and ends those in progress (within `graceMs`). */
  async close(graceMs = 500): Promise<void> {
    this.closed = true;
    const server = this.server;
    this.server = null;
    if (server === null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, graceMs);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private batchOp(op: KvBatchOp): Promise<KvResponse> {
    if (op.put !== null && op.put !== undefined) return this.write(op.put.clientId, op.put.requestId, { op: "put", key: op.put.key, value: op.put.value });
    if (op.cas !== null && op.cas !== undefined) {
      const c = op.cas;
      return this.write(c.clientId, c.requestId, { op: "cas", key: c.key, expected: c.expectPresent ? c.expected : null, value: c.value });
    }
    if (op.get !== null && op.get !== undefined) return this.read(op.get.key);
    return Promise.resolve(response({ status: "REJECTED", message: "a batch operation names no operation" }));
  }

  private notLeader(e?: NotLeaderError): KvResponse {
    const leader = e === undefined ? this.node.leader() : e.leaderId === null ? null : { id: e.leaderId, info: e.leader };
    const self = leader !== null && leader.id === this.node.id;
    return response({
      status: "NOT_LEADER",
      leaderId: leader === null || self ? "" : leader.id,
      leaderAddress: leader === null || self ? "" : leader.info?.clientAddress ?? "",
      message: `member ${this.node.id} is not the leader`,
    });
  }

  private async write(clientId: string, requestId: number, input: KvInput): Promise<KvResponse> {
    if (!this.node.isLeader()) return this.notLeader();
    let command: Uint8Array;
    try {
      command = encodeKvCommand({ clientId, requestId, input });
    } catch (e) {
      if (e instanceof KvCommandError) return response({ status: "REJECTED", message: e.message });
      throw e;
    }
    let applied: KvApplied | null;
    try {
      applied = await this.node.propose(command, { timeoutMs: this.writeTimeoutMs });
    } catch (e) {
      return this.failure(e);
    }
    if (applied === null) return response({ status: "OUTCOME_UNKNOWN", message: "the entry applied no command" });
    const result = applied.result;
    if (!result.ok) return response({ status: "REJECTED", message: `${result.error}: ${result.message}`, index: applied.index });
    const output = result.output;
    return response({ status: "OK", index: applied.index, succeeded: output.op === "cas" ? output.ok : false });
  }

  private async read(key: string): Promise<KvResponse> {
    if (!this.node.isLeader()) return this.notLeader();
    let index: number;
    try {
      index = await this.node.readIndex({ timeoutMs: this.readTimeoutMs });
    } catch (e) {
      // A read has no effect: whatever went wrong, it is safe to retry.
      if (e instanceof NotLeaderError) return this.notLeader(e);
      return response({ status: "UNAVAILABLE", message: e instanceof Error ? e.message : String(e) });
    }
    const value = this.kv.read(key);
    return response({ status: "OK", index, present: value !== null, value: value ?? "" });
  }

  /** The answer for a write that failed, by what is known of its outcome. */
  private failure(e: unknown): KvResponse {
    const message = e instanceof Error ? e.message : String(e);
    if (e instanceof NotLeaderError) return this.notLeader(e);
    if (e instanceof ProposalRejectedError) return response({ status: "UNAVAILABLE", message });
    if (e instanceof ProposalOutcomeUnknownError || e instanceof RaftNodeFailedError) return response({ status: "OUTCOME_UNKNOWN", message });
    // Anything else: it may have been proposed.
    return response({ status: "OUTCOME_UNKNOWN", message });
  }

  private statusResponse(): KvStatusResponse {
    const s = this.node.status();
    return {
      id: s.id,
      role: s.state === "running" ? roleName(s.role) : "stopped",
      term: s.term,
      leaderId: s.lead,
      commitIndex: s.commit,
      appliedIndex: s.applied,
      snapshotIndex: s.snapshotIndex,
      voters: [...s.confState.voters],
      learners: [...s.confState.learners],
      stateCrc: kvStateCrc(this.kv),
      keyCount: this.kv.size,
      readyTotal: s.stats.readyTotal,
      fsyncTotal: s.stats.fsyncTotal,
      entriesPersistedTotal: s.stats.entriesPersistedTotal,
      entriesAppliedTotal: s.stats.entriesAppliedTotal,
      snapshotsTakenTotal: s.stats.snapshotsTakenTotal,
      snapshotsInstalledTotal: s.stats.snapshotsInstalledTotal,
      persistMsTotal: s.stats.persistMsTotal,
      readyMsTotal: s.stats.readyMsTotal,
    };
  }
}
