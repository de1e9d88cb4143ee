/**
 * `RaftTransport` over gRPC (`@grpc/grpc-js`), shaped after etcd's rafthttp.
 *
 * Outbound, per peer:
 *  - one long-lived bidi `Stream` on a connection of its own; its first envelope is a hello
 *    (cluster id, from, to) that the peer answers with one `Ack` before anything else is written;
 *  - a bounded FIFO queue in front of it (`queueLengthMax`): when full, new messages are dropped
 *    (counted, and reported to Raft as unreachable), as etcd drops on a full stream buffer;
 *  - while the stream is down, messages are dropped and reported rather than kept: Raft resends
 *    what matters, and stale heartbeats are worthless;
 *  - reconnection after exponential backoff with equal jitter, from `backoffMsMin` to
 *    `backoffMsMax`; a peer that refuses us (another cluster, wrong member, bad token) is retried
 *    only every `refusedRetryMs`, and each refusal is reported as a typed error;
 *  - snapshot messages go by a unary `Snapshot` call over a second connection, so that a large
 *    snapshot never sits in front of heartbeats; one in flight per peer.
 *
 * Inbound: a gRPC server (`listen`) that checks the cluster token (metadata
 * `hyperfleet-cluster-token`), the cluster id and the destination of every stream's hello and of
 * every snapshot call, then decodes each message and hands it to the handler.
 *
 * Size limits: a message whose encoding is over `messageBytesMax` (snapshots: `snapshotBytesMax`)
 * is dropped before it reaches gRPC and reported (`MessageTooLargeError`), so it never breaks a
 * stream; gRPC's own send and receive limits are set just above ours as a backstop.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { decodeMessage, encodeMessage } from "../codec.js";
import {
  ClusterMismatchError, MessageDecodeError, MessageTooLargeError, PeerRefusedError, PeerUnreachableError,
  RaftTransportError,
} from "../transport.js";
import type { RaftTransport, RaftTransportHandler, SnapshotStatus } from "../transport.js";
import { MessageType } from "../types.js";
import type { Message, NodeId, Rng } from "../types.js";

/** Turns Raft messages into bytes and back; `decode` throws on bytes it cannot read. */
export interface RaftMessageCodec {
  encode(message: Message): Uint8Array;
  decode(bytes: Uint8Array): Message;
}

/** The codec of `@hyperfleet/raft` (`src/codec.ts`). */
export const defaultRaftMessageCodec: RaftMessageCodec = { encode: encodeMessage, decode: decodeMessage };

export interface GrpcRaftTransportOptions {
  /** Every member of the cluster uses the same id; streams between different ids are refused. */
  readonly clusterId: string;
  /** This member's id. */
  readonly id: NodeId;
  /** May also be set later with `setHandler`. */
  readonly handler?: RaftTransportHandler;
  /** When set, sent with every call and required of every incoming call. */
  readonly clusterToken?: string;
  readonly codec?: RaftMessageCodec;
  /** Largest encoded non-snapshot message sent or accepted. Default 4 MiB. */
  readonly messageBytesMax?: number;
  /** Largest encoded snapshot message sent or accepted. Default 256 MiB. */
  readonly snapshotBytesMax?: number;
  /** Messages waiting per peer while its stream is connecting or busy. Default 4096. */
  readonly queueLengthMax?: number;
  /** First reconnection delay after a failure. Default 50 ms. */
  readonly backoffMsMin?: number;
  /** Cap of the reconnection delay. Default 1000 ms. */
  readonly backoffMsMax?: number;
  /** Delay before dialling again a peer that refused us. Default 5000 ms. */
  readonly refusedRetryMs?: number;
  /** A stream not accepted within this time is abandoned and retried. Default 2000 ms. */
  readonly connectTimeoutMs?: number;
  /** Deadline of one snapshot call. Default 60 000 ms. */
  readonly snapshotTimeoutMs?: number;
  /** HTTP/2 keepalive ping interval, on both ends. Default 10 000 ms. */
  readonly keepaliveTimeMs?: number;
  /** A connection whose ping is not answered within this time is closed. Default 5000 ms. */
  readonly keepaliveTimeoutMs?: number;
  /** How long `close()` lets the server finish gracefully before it cuts connections. Default 500 ms. */
  readonly closeGraceMs?: number;
  /** Jitter of reconnection delays. Default: `Math.random`. */
  readonly rng?: Rng;
  /** Default: insecure (plaintext). */
  readonly channelCredentials?: grpc.ChannelCredentials;
  /** Default: insecure (plaintext). */
  readonly serverCredentials?: grpc.ServerCredentials;
}

export interface ListenOptions {
  /** e.g. "127.0.0.1", "0.0.0.0", "::1". */
  readonly host: string;
  /** 0 asks the operating system for a free port. */
  readonly port: number;
}

/** Where a transport listens; `address` is what peers pass to `addPeer`. */
export interface ListenAddress {
  readonly host: string;
  readonly port: number;
  readonly address: string;
}

/** The state of the stream to one peer. */
export type PeerLinkState = "connecting" | "open" | "backoff" | "refused";

/** Counters of one peer, since it was added. Totals only grow. */
export interface PeerTransportStats {
  readonly state: PeerLinkState;
  readonly address: string;
  /** Messages waiting for the stream. */
  readonly queuedMessages: number;
  /** Messages written to a stream (not necessarily received: a breaking stream loses some). */
  readonly messagesSentTotal: number;
  /** Dropped because the queue was full. */
  readonly messagesDroppedQueueFullTotal: number;
  /** Dropped because the peer was down or refusing us, or lost from the queue when a stream failed. */
  readonly messagesDroppedUnreachableTotal: number;
  /** Dropped because they were over the size limit. */
  readonly messagesDroppedTooLargeTotal: number;
  readonly snapshotsSentTotal: number;
  readonly snapshotsFailedTotal: number;
  /** Streams started (first dial included). */
  readonly streamAttemptsTotal: number;
  /** Streams the peer accepted. */
  readonly streamsOpenedTotal: number;
}

export interface GrpcTransportStats {
  /** Messages decoded and handed to the handler. */
  readonly messagesReceivedTotal: number;
  /** Messages to ids that were not added as peers. */
  readonly messagesDroppedUnknownPeerTotal: number;
  readonly streamsRefusedTotal: number;
}

/** Metadata key carrying the cluster token on every call. */
export const CLUSTER_TOKEN_METADATA_KEY = "hyperfleet-cluster-token";
const REFUSAL_TRAILER_KEY = "hyperfleet-refusal";
const CLUSTER_ID_TRAILER_KEY = "hyperfleet-cluster-id";
/** Room for the envelope's own fields and gRPC framing above a message's bytes. */
const ENVELOPE_OVERHEAD_BYTES = 16 * 1024;
const SERVICE_NAME = "hyperfleet.raft.v1.RaftTransport";
/** Found from `src/adapters/` (tests) and `dist/adapters/` (built code) alike. */
const PROTO_PATH = fileURLToPath(new URL("../../proto/raft.proto", import.meta.url));

const DEFAULTS = {
  messageBytesMax: 4 * 1024 * 1024,
  snapshotBytesMax: 256 * 1024 * 1024,
  queueLengthMax: 4096,
  backoffMsMin: 50,
  backoffMsMax: 1000,
  refusedRetryMs: 5000,
  connectTimeoutMs: 2000,
  snapshotTimeoutMs: 60_000,
  keepaliveTimeMs: 10_000,
  keepaliveTimeoutMs: 5000,
  closeGraceMs: 500,
} as const;

type Settings = { -readonly [K in keyof typeof DEFAULTS]: number };

/** An `Envelope` as proto-loader presents it (camelCase fields). */
interface Envelope {
  clusterId: string;
  from: string;
  to: string;
  message: Uint8Array;
}

interface Ack {
  received: number;
}

interface Method<Req, Res> {
  readonly path: string;
  readonly requestSerialize: (value: Req) => Buffer;
  readonly requestDeserialize: (bytes: Buffer) => Req;
  readonly responseSerialize: (value: Res) => Buffer;
  readonly responseDeserialize: (bytes: Buffer) => Res;
}

interface RaftService {
  readonly definition: grpc.ServiceDefinition;
  readonly stream: Method<Envelope, Ack>;
  readonly snapshot: Method<Envelope, Ack>;
}

function loadService(): RaftService {
  const pkg = protoLoader.loadSync(PROTO_PATH, { keepCase: false, longs: Number, defaults: true });
  const definition = pkg[SERVICE_NAME] as unknown as grpc.ServiceDefinition | undefined;
  if (definition === undefined || definition.Stream === undefined || definition.Snapshot === undefined) {
    throw new RaftTransportError(`${PROTO_PATH} does not define ${SERVICE_NAME} with Stream and Snapshot`, null);
  }
  return {
    definition,
    stream: definition.Stream as unknown as Method<Envelope, Ack>,
    snapshot: definition.Snapshot as unknown as Method<Envelope, Ack>,
  };
}

const mathRandomRng: Rng = { int: (n) => Math.floor(Math.random() * n) };

/** A FIFO of at most `capacity` items; `shift` is O(1) amortised. */
class BoundedQueue<T> {
  private items: T[] = [];
  private head = 0;

  constructor(private readonly capacity: number) {}

  get length(): number {
    return this.items.length - this.head;
  }

  /** False (and nothing added) when full. */
  push(item: T): boolean {
    if (this.length >= this.capacity) return false;
    this.items.push(item);
    return true;
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Empties the queue; returns how many items it held. */
  clear(): number {
    const n = this.length;
    this.items = [];
    this.head = 0;
    return n;
  }
}

/** What a peer link needs from its transport. */
interface LinkContext {
  readonly clusterId: string;
  readonly id: NodeId;
  readonly settings: Settings;
  readonly service: RaftService;
  readonly rng: Rng;
  readonly channelCredentials: grpc.ChannelCredentials;
  metadata(): grpc.Metadata;
  reportUnreachable(id: NodeId): void;
  reportSnapshot(id: NodeId, status: SnapshotStatus): void;
  reportError(error: RaftTransportError): void;
}

/**
 * The outbound side for one peer: its stream, queue, reconnection timer and snapshot calls.
 * Every callback checks that it belongs to the current call, so events of an abandoned call are
 * ignored.
 */
class PeerLink {
  state: PeerLinkState | "stopped" = "connecting";
  private readonly client: grpc.Client;
  private snapshotClient: grpc.Client | null = null;
  private call: grpc.ClientDuplexStream<Envelope, Ack> | null = null;
  private snapshotCall: grpc.ClientUnaryCall | null = null;
  private readonly queue: BoundedQueue<Uint8Array>;
  private timer: NodeJS.Timeout | null = null;
  /** Consecutive failed attempts since the last accepted stream: the backoff exponent. */
  private failures = 0;
  /** A `PeerUnreachableError` was reported for the current outage. */
  private outageReported = false;
  readonly counters = {
    messagesSentTotal: 0,
    messagesDroppedQueueFullTotal: 0,
    messagesDroppedUnreachableTotal: 0,
    messagesDroppedTooLargeTotal: 0,
    snapshotsSentTotal: 0,
    snapshotsFailedTotal: 0,
    streamAttemptsTotal: 0,
    streamsOpenedTotal: 0,
  };

  constructor(
    readonly peer: NodeId,
    readonly address: string,
    private readonly ctx: LinkContext,
  ) {
    this.queue = new BoundedQueue(ctx.settings.queueLengthMax);
    this.client = new grpc.Client(address, ctx.channelCredentials, this.channelOptions(ctx.settings.messageBytesMax));
    this.connect();
  }

  stats(): PeerTransportStats {
    return {
      state: this.state === "stopped" ? "backoff" : this.state,
      address: this.address,
      queuedMessages: this.queue.length,
      ...this.counters,
    };
  }

  /** Queues one encoded message; false when it was dropped (the caller reports unreachable). */
  enqueue(bytes: Uint8Array): boolean {
    switch (this.state) {
      case "connecting":
      case "open":
        if (!this.queue.push(bytes)) {
          this.counters.messagesDroppedQueueFullTotal++;
          return false;
        }
        if (this.state === "open") this.flush();
        return true;
      case "backoff":
      case "refused":
        this.counters.messagesDroppedUnreachableTotal++;
        return false;
      case "stopped":
        return false;
    }
  }

  /** Sends one encoded snapshot message by its own call; the outcome goes to `reportSnapshot`. */
  sendSnapshot(bytes: Uint8Array): void {
    if (this.state === "stopped") return;
    if (this.snapshotCall !== null) {
      this.counters.snapshotsFailedTotal++;
      this.ctx.reportError(new RaftTransportError(`snapshot to member ${this.peer} dropped: another one is in flight`, this.peer));
      this.ctx.reportSnapshot(this.peer, "failure");
      return;
    }
    this.snapshotClient ??= new grpc.Client(this.address, this.ctx.channelCredentials, this.channelOptions(this.ctx.settings.snapshotBytesMax));
    const envelope: Envelope = { clusterId: this.ctx.clusterId, from: this.ctx.id, to: this.peer, message: bytes };
    const method = this.ctx.service.snapshot;
    const deadline = new Date(Date.now() + this.ctx.settings.snapshotTimeoutMs);
    const call = this.snapshotClient.makeUnaryRequest<Envelope, Ack>(
      method.path, method.requestSerialize, method.responseDeserialize, envelope, this.ctx.metadata(), { deadline },
      (error) => {
        if (this.snapshotCall !== call) return;
        this.snapshotCall = null;
        if (this.state === "stopped") return;
        if (error === null) {
          this.counters.snapshotsSentTotal++;
          this.ctx.reportSnapshot(this.peer, "finish");
          return;
        }
        this.counters.snapshotsFailedTotal++;
        this.ctx.reportError(
          this.refusal(error) ??
            new PeerUnreachableError(this.peer, this.address, `snapshot call failed: ${statusText(error)}`, { cause: error }),
        );
        this.ctx.reportSnapshot(this.peer, "failure");
        this.ctx.reportUnreachable(this.peer);
      },
    );
    this.snapshotCall = call;
  }

  /** Cancels everything and closes both connections; nothing is reported afterwards. */
  stop(): void {
    this.state = "stopped";
    this.clearTimer();
    this.queue.clear();
    const call = this.call;
    this.call = null;
    call?.cancel();
    const snapshotCall = this.snapshotCall;
    this.snapshotCall = null;
    snapshotCall?.cancel();
    this.client.close();
    this.snapshotClient?.close();
  }

  private channelOptions(messageBytesMax: number): grpc.ChannelOptions {
    const s = this.ctx.settings;
    return {
      "grpc.max_send_message_length": messageBytesMax + ENVELOPE_OVERHEAD_BYTES,
      "grpc.max_receive_message_length": ENVELOPE_OVERHEAD_BYTES,
      "grpc.keepalive_time_ms": s.keepaliveTimeMs,
      "grpc.keepalive_timeout_ms": s.keepaliveTimeoutMs,
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.initial_reconnect_backoff_ms": s.backoffMsMin,
      "grpc.max_reconnect_backoff_ms": s.backoffMsMax,
      // Messages are not worth replaying: Raft resends. Retries would only buffer them.
      "grpc.enable_retries": 0,
      // A connection of this channel's own: streams and snapshots never share one, nor do two transports in a process.
      "grpc.use_local_subchannel_pool": 1,
    };
  }

  private connect(): void {
    this.state = "connecting";
    this.counters.streamAttemptsTotal++;
    const method = this.ctx.service.stream;
    const call = this.client.makeBidiStreamRequest<Envelope, Ack>(
      method.path, method.requestSerialize, method.responseDeserialize, this.ctx.metadata(),
    );
    this.call = call;
    call.on("data", () => {
      if (call === this.call && this.state === "connecting") this.onAccepted();
    });
    call.on("drain", () => {
      if (call === this.call && this.state === "open") this.flush();
    });
    // Every end of a call, OK or not, also arrives as "status", which does the work.
    call.on("error", () => {});
    call.on("status", (status: grpc.StatusObject) => {
      if (call !== this.call) return;
      const ended = status.code === grpc.status.OK ? "the peer closed the stream" : `stream failed: ${statusText(status)}`;
      this.onFailed(this.refusal(status) ?? ended, status);
    });
    call.write({ clusterId: this.ctx.clusterId, from: this.ctx.id, to: this.peer, message: new Uint8Array(0) });
    this.timer = setTimeout(() => {
      this.timer = null;
      if (call !== this.call || this.state !== "connecting") return;
      this.onFailed(`no answer to the stream's hello within ${this.ctx.settings.connectTimeoutMs} ms`, null);
    }, this.ctx.settings.connectTimeoutMs);
  }

  private onAccepted(): void {
    this.clearTimer();
    this.state = "open";
    this.failures = 0;
    this.outageReported = false;
    this.counters.streamsOpenedTotal++;
    this.flush();
  }

  /** Writes queued messages until the stream pushes back; "drain" resumes. */
  private flush(): void {
    const call = this.call;
    if (call === null) return;
    while (this.state === "open" && this.queue.length > 0) {
      const bytes = this.queue.shift() as Uint8Array;
      this.counters.messagesSentTotal++;
      if (!call.write({ clusterId: "", from: "", to: "", message: bytes })) break;
    }
  }

  /**
   * The current call is over: drop what was queued, report, and dial again later. `reason` is a
   * refusal (typed error) or the text of a transport failure.
   */
  private onFailed(reason: RaftTransportError | string, status: grpc.StatusObject | null): void {
    const call = this.call;
    this.call = null;
    this.clearTimer();
    call?.cancel();
    const wasOpen = this.state === "open";
    const lost = this.queue.clear();
    this.counters.messagesDroppedUnreachableTotal += lost;
    let delayMs: number;
    if (reason instanceof RaftTransportError) {
      this.state = "refused";
      this.ctx.reportError(reason);
      delayMs = this.ctx.settings.refusedRetryMs;
    } else {
      this.state = "backoff";
      if (!this.outageReported) {
        this.outageReported = true;
        this.ctx.reportError(new PeerUnreachableError(this.peer, this.address, reason, status === null ? undefined : { cause: statusError(status) }));
      }
      // A stream that had worked ended: dial again soon; otherwise back off further each time.
      this.failures = wasOpen ? 1 : this.failures + 1;
      delayMs = this.backoffMs(this.failures - 1);
    }
    if (wasOpen || lost > 0) this.ctx.reportUnreachable(this.peer);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.state === "backoff" || this.state === "refused") this.connect();
    }, delayMs);
  }

  /** Exponential in `attempt`, capped, with equal jitter: half fixed, half random. */
  private backoffMs(attempt: number): number {
    const { backoffMsMin, backoffMsMax } = this.ctx.settings;
    const ceilingMs = Math.min(backoffMsMax, backoffMsMin * 2 ** Math.min(attempt, 30));
    const halfMs = Math.floor(ceilingMs / 2);
    return ceilingMs - halfMs + this.ctx.rng.int(halfMs + 1);
  }

  /** The typed refusal carried by a failed call's status, or null for an ordinary failure. */
  private refusal(status: grpc.StatusObject | grpc.ServiceError): PeerRefusedError | null {
    const cause = statusError(status);
    const trailer = (key: string): string | null => {
      const values = status.metadata?.get(key) ?? [];
      return values.length > 0 ? String(values[0]) : null;
    };
    switch (status.code) {
      case grpc.status.FAILED_PRECONDITION: {
        const reason = trailer(REFUSAL_TRAILER_KEY);
        if (reason === "cluster-mismatch") {
          return new ClusterMismatchError(this.peer, this.ctx.clusterId, trailer(CLUSTER_ID_TRAILER_KEY) ?? "(not given)", { cause });
        }
        if (reason === "member-mismatch") {
          return new PeerRefusedError(
            `the member at ${this.address} is not ${this.peer}: ${status.details}`, this.peer, "member-mismatch", { cause },
          );
        }
        return new PeerRefusedError(`member ${this.peer} at ${this.address} refused us: ${status.details}`, this.peer, "protocol", { cause });
      }
      case grpc.status.UNAUTHENTICATED:
      case grpc.status.PERMISSION_DENIED:
        return new PeerRefusedError(
          `member ${this.peer} at ${this.address} refused our cluster token: ${status.details}`, this.peer, "unauthenticated", { cause },
        );
      case grpc.status.UNIMPLEMENTED:
      case grpc.status.INVALID_ARGUMENT:
        return new PeerRefusedError(
          `member ${this.peer} at ${this.address} does not speak our protocol: ${status.details}`, this.peer, "protocol", { cause },
        );
      default:
        return null;
    }
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

function statusText(status: { code: grpc.status; details: string }): string {
  return `${grpc.status[status.code] ?? status.code}: ${status.details}`;
}

function statusError(status: grpc.StatusObject | grpc.ServiceError): Error {
  return status instanceof Error ? status : new Error(statusText(status));
}

function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`GrpcRaftTransport: ${name} must be a positive integer, got ${value}`);
  return value;
}

/** A refusal decided by the receiving end of a stream or snapshot call. */
interface Refusal {
  readonly code: grpc.status;
  readonly details: string;
  readonly trailer: grpc.Metadata;
  readonly error: RaftTransportError;
}

/**
 * A Raft member's transport over gRPC. Construct, `listen`, `addPeer` each peer, `send`; `close`
 * when done. See the module comment for the wire behaviour and `RaftTransport` for the contracts.
 */
export class GrpcRaftTransport implements RaftTransport {
  readonly clusterId: string;
  readonly id: NodeId;
  private handler: RaftTransportHandler | null;
  private readonly codec: RaftMessageCodec;
  private readonly settings: Settings;
  private readonly service: RaftService;
  private readonly tokenDigest: Buffer | null;
  private readonly clusterToken: string | null;
  private readonly serverCredentials: grpc.ServerCredentials;
  private readonly linkContext: LinkContext;
  private readonly peers = new Map<NodeId, PeerLink>();
  private readonly inbound = new Set<grpc.ServerDuplexStream<Envelope, Ack>>();
  private server: grpc.Server | null = null;
  private listening: Promise<ListenAddress> | null = null;
  private bound: ListenAddress | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
  private readonly counters = { messagesReceivedTotal: 0, messagesDroppedUnknownPeerTotal: 0, streamsRefusedTotal: 0 };

  constructor(options: GrpcRaftTransportOptions) {
    if (options.clusterId === "") throw new RangeError("GrpcRaftTransport: clusterId must not be empty");
    if (options.id === "") throw new RangeError("GrpcRaftTransport: id must not be empty");
    this.clusterId = options.clusterId;
    this.id = options.id;
    this.handler = options.handler ?? null;
    this.codec = options.codec ?? defaultRaftMessageCodec;
    const settings = { ...DEFAULTS } as Settings;
    for (const key of Object.keys(DEFAULTS) as (keyof Settings)[]) {
      settings[key] = positiveInteger(key, options[key] ?? DEFAULTS[key]);
    }
    if (settings.backoffMsMin > settings.backoffMsMax) {
      throw new RangeError(`GrpcRaftTransport: backoffMsMin (${settings.backoffMsMin}) is over backoffMsMax (${settings.backoffMsMax})`);
    }
    this.settings = settings;
    this.service = loadService();
    this.clusterToken = options.clusterToken ?? null;
    this.tokenDigest = this.clusterToken === null ? null : digest(this.clusterToken);
    this.serverCredentials = options.serverCredentials ?? grpc.ServerCredentials.createInsecure();
    const rng = options.rng ?? mathRandomRng;
    this.linkContext = {
      clusterId: this.clusterId,
      id: this.id,
      settings,
      service: this.service,
      rng,
      channelCredentials: options.channelCredentials ?? grpc.credentials.createInsecure(),
      metadata: () => this.outgoingMetadata(),
      reportUnreachable: (id) => this.defer((h) => h.reportUnreachable(id)),
      reportSnapshot: (id, status) => this.defer((h) => h.reportSnapshot(id, status)),
      reportError: (error) => this.deferError(error),
    };
  }

  setHandler(handler: RaftTransportHandler): void {
    this.handler = handler;
  }

  /**
   * Starts the server on `host:port` (port 0: any free port) and resolves with the bound address.
   * Rejects with a `RaftTransportError` when the address cannot be bound, when already listening,
   * or after `close()`.
   */
  listen(options: ListenOptions): Promise<ListenAddress> {
    if (this.closed) return Promise.reject(new RaftTransportError("cannot listen: the transport is closed", null));
    if (this.listening !== null) return Promise.reject(new RaftTransportError("the transport is already listening", null));
    const s = this.settings;
    const server = new grpc.Server({
      "grpc.max_receive_message_length": Math.max(s.messageBytesMax, s.snapshotBytesMax) + ENVELOPE_OVERHEAD_BYTES,
      "grpc.max_send_message_length": ENVELOPE_OVERHEAD_BYTES,
      "grpc.keepalive_time_ms": s.keepaliveTimeMs,
      "grpc.keepalive_timeout_ms": s.keepaliveTimeoutMs,
    });
    server.addService(this.service.definition, {
      Stream: (call: grpc.ServerDuplexStream<Envelope, Ack>) => this.onStream(call),
      Snapshot: (call: grpc.ServerUnaryCall<Envelope, Ack>, callback: grpc.sendUnaryData<Ack>) => this.onSnapshot(call, callback),
    });
    this.server = server;
    const target = formatHostPort(options.host, options.port);
    this.listening = new Promise<ListenAddress>((resolve, reject) => {
      server.bindAsync(target, this.serverCredentials, (error, port) => {
        if (error !== null) {
          // Leave the transport able to listen elsewhere.
          server.forceShutdown();
          if (this.server === server) this.server = null;
          this.listening = null;
          reject(new RaftTransportError(`cannot listen on ${target}: ${error.message}`, null, { cause: error }));
          return;
        }
        if (this.closed) {
          reject(new RaftTransportError("cannot listen: the transport was closed meanwhile", null));
          return;
        }
        this.bound = { host: options.host, port, address: formatHostPort(options.host, port) };
        resolve(this.bound);
      });
    });
    return this.listening;
  }

  /** Where this transport listens, once `listen` has resolved. */
  get address(): ListenAddress | null {
    return this.bound;
  }

  addPeer(id: NodeId, address: string): void {
    if (this.closed) return;
    const existing = this.peers.get(id);
    if (existing !== undefined) {
      if (existing.address === address) return;
      existing.stop();
    }
    this.peers.set(id, new PeerLink(id, address, this.linkContext));
  }

  removePeer(id: NodeId): void {
    const link = this.peers.get(id);
    if (link === undefined) return;
    this.peers.delete(id);
    link.stop();
  }

  send(messages: readonly Message[]): void {
    if (this.closed) return;
    let unreachable: Set<NodeId> | null = null;
    const markUnreachable = (id: NodeId): void => {
      (unreachable ??= new Set()).add(id);
    };
    for (const message of messages) {
      const link = this.peers.get(message.to);
      if (link === undefined) {
        this.counters.messagesDroppedUnknownPeerTotal++;
        markUnreachable(message.to);
        continue;
      }
      let bytes: Uint8Array;
      try {
        bytes = this.codec.encode(message);
      } catch (error) {
        this.deferError(new RaftTransportError(`message to member ${message.to} dropped: it could not be encoded`, message.to, { cause: error }));
        markUnreachable(message.to);
        continue;
      }
      if (message.type === MessageType.Snap) {
        if (bytes.length > this.settings.snapshotBytesMax) {
          link.counters.messagesDroppedTooLargeTotal++;
          link.counters.snapshotsFailedTotal++;
          this.deferError(new MessageTooLargeError(message.to, bytes.length, this.settings.snapshotBytesMax, "snapshot message"));
          this.defer((h) => h.reportSnapshot(message.to, "failure"));
          markUnreachable(message.to);
        } else {
          link.sendSnapshot(bytes);
        }
        continue;
      }
      if (bytes.length > this.settings.messageBytesMax) {
        link.counters.messagesDroppedTooLargeTotal++;
        this.deferError(new MessageTooLargeError(message.to, bytes.length, this.settings.messageBytesMax, "message"));
        markUnreachable(message.to);
        continue;
      }
      if (!link.enqueue(bytes)) markUnreachable(message.to);
    }
    if (unreachable !== null) {
      for (const id of unreachable as Set<NodeId>) this.defer((h) => h.reportUnreachable(id));
    }
  }

  /** Counters of one peer, or undefined for an unknown id. */
  peerStats(id: NodeId): PeerTransportStats | undefined {
    return this.peers.get(id)?.stats();
  }

  stats(): GrpcTransportStats {
    return { ...this.counters };
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    for (const link of this.peers.values()) link.stop();
    this.peers.clear();
    const server = this.server;
    this.server = null;
    if (server === null) return;
    // Let a pending bind finish first, so that the port it takes is released too.
    await this.listening?.catch(() => undefined);
    for (const call of this.inbound) call.end();
    this.inbound.clear();
    await new Promise<void>((resolve) => {
      const grace = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, this.settings.closeGraceMs);
      server.tryShutdown(() => {
        clearTimeout(grace);
        resolve();
      });
    });
  }

  private outgoingMetadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (this.clusterToken !== null) metadata.set(CLUSTER_TOKEN_METADATA_KEY, this.clusterToken);
    return metadata;
  }

  private tokenAccepted(metadata: grpc.Metadata): boolean {
    if (this.tokenDigest === null) return true;
    const values = metadata.get(CLUSTER_TOKEN_METADATA_KEY);
    if (values.length !== 1) return false;
    return timingSafeEqual(digest(String(values[0])), this.tokenDigest);
  }

  /** Checks a hello (or a snapshot envelope): null to accept, or why and how to refuse. */
  private checkEnvelope(metadata: grpc.Metadata, envelope: Envelope, peerAddress: string): Refusal | null {
    const trailer = new grpc.Metadata();
    const from = envelope.from === "" ? null : envelope.from;
    const refuse = (code: grpc.status, details: string, error: RaftTransportError, reason?: string): Refusal => {
      if (reason !== undefined) trailer.set(REFUSAL_TRAILER_KEY, reason);
      return { code, details, trailer, error };
    };
    if (!this.tokenAccepted(metadata)) {
      return refuse(
        grpc.status.UNAUTHENTICATED, "missing or wrong cluster token",
        new PeerRefusedError(`refused a stream from ${from ?? "an unnamed member"} at ${peerAddress}: missing or wrong cluster token`, from, "unauthenticated"),
      );
    }
    if (envelope.clusterId !== this.clusterId) {
      trailer.set(CLUSTER_ID_TRAILER_KEY, this.clusterId);
      return refuse(
        grpc.status.FAILED_PRECONDITION,
        `cluster id mismatch: member ${this.id} belongs to cluster ${JSON.stringify(this.clusterId)}, ` +
          `the sender ${from ?? "(unnamed)"} to cluster ${JSON.stringify(envelope.clusterId)}`,
        new ClusterMismatchError(from, this.clusterId, envelope.clusterId),
        "cluster-mismatch",
      );
    }
    if (from === null) {
      return refuse(
        grpc.status.INVALID_ARGUMENT, "the hello names no sender",
        new PeerRefusedError(`refused a stream from ${peerAddress}: its hello names no sender`, null, "protocol"),
      );
    }
    if (envelope.to !== this.id) {
      return refuse(
        grpc.status.FAILED_PRECONDITION,
        `member mismatch: this is member ${this.id}, the sender ${from} meant member ${envelope.to}`,
        new PeerRefusedError(`refused a stream from member ${from}: it was meant for member ${envelope.to}, this is ${this.id}`, from, "member-mismatch"),
        "member-mismatch",
      );
    }
    return null;
  }

  private onStream(call: grpc.ServerDuplexStream<Envelope, Ack>): void {
    if (this.closed) {
      call.emit("error", { code: grpc.status.UNAVAILABLE, details: "member is shutting down" });
      return;
    }
    this.inbound.add(call);
    const forget = (): void => {
      this.inbound.delete(call);
    };
    let from: NodeId | null = null;
    let done = false;
    const refuse = (refusal: Refusal): void => {
      done = true;
      forget();
      this.counters.streamsRefusedTotal++;
      this.deferError(refusal.error);
      call.emit("error", { code: refusal.code, details: refusal.details, metadata: refusal.trailer });
    };
    call.on("data", (envelope: Envelope) => {
      if (done) return;
      if (from === null) {
        const refusal = this.checkEnvelope(call.metadata, envelope, call.getPeer());
        if (refusal !== null) {
          refuse(refusal);
          return;
        }
        from = envelope.from;
        call.write({ received: 0 });
      } else if (
        (envelope.clusterId !== "" && envelope.clusterId !== this.clusterId) ||
        (envelope.from !== "" && envelope.from !== from) ||
        (envelope.to !== "" && envelope.to !== this.id)
      ) {
        refuse({
          code: grpc.status.INVALID_ARGUMENT,
          details: "an envelope's cluster id, sender or destination differs from the stream's hello",
          trailer: new grpc.Metadata(),
          error: new PeerRefusedError(`cut the stream from member ${from}: an envelope's addressing differs from its hello`, from, "protocol"),
        });
        return;
      }
      if (envelope.message.length > 0) this.deliver(from, envelope.message);
    });
    call.on("end", () => {
      // The sender half-closed: finish our side too.
      forget();
      if (!done) {
        done = true;
        call.end();
      }
    });
    call.on("error", forget);
    call.on("cancelled", () => {
      done = true;
      forget();
    });
    call.on("close", forget);
  }

  private onSnapshot(call: grpc.ServerUnaryCall<Envelope, Ack>, callback: grpc.sendUnaryData<Ack>): void {
    if (this.closed) {
      callback({ code: grpc.status.UNAVAILABLE, details: "member is shutting down" });
      return;
    }
    const envelope = call.request;
    const refusal = this.checkEnvelope(call.metadata, envelope, call.getPeer());
    if (refusal !== null) {
      this.counters.streamsRefusedTotal++;
      this.deferError(refusal.error);
      callback({ code: refusal.code, details: refusal.details, metadata: refusal.trailer });
      return;
    }
    if (!this.deliver(envelope.from, envelope.message)) {
      callback({ code: grpc.status.INVALID_ARGUMENT, details: "the snapshot message could not be decoded" });
      return;
    }
    callback(null, { received: 1 });
  }

  /** Decodes one message from `from` and hands it to the handler; false when it was dropped. */
  private deliver(from: NodeId, bytes: Uint8Array): boolean {
    let message: Message;
    try {
      message = this.codec.decode(bytes);
    } catch (error) {
      this.deferError(new MessageDecodeError(`message from member ${from} dropped: ${describe(error)}`, from, { cause: error }));
      return false;
    }
    if (message.to !== this.id) {
      this.deferError(new MessageDecodeError(`message from member ${from} to member ${message.to} dropped: this is ${this.id}`, from));
      return false;
    }
    this.counters.messagesReceivedTotal++;
    const handler = this.handler;
    if (handler === null || this.closed) return true;
    try {
      handler.receive(message);
    } catch (error) {
      this.deferError(new RaftTransportError(`the receive handler threw on a message from member ${from}`, from, { cause: error }));
    }
    return true;
  }

  /** Calls the handler later (never inside one of our own methods), unless closed by then. */
  private defer(fn: (handler: RaftTransportHandler) => void): void {
    queueMicrotask(() => {
      const handler = this.handler;
      if (this.closed || handler === null) return;
      try {
        fn(handler);
      } catch (error) {
        this.callReportError(handler, new RaftTransportError("a transport handler threw", null, { cause: error }));
      }
    });
  }

  private deferError(error: RaftTransportError): void {
    queueMicrotask(() => {
      const handler = this.handler;
      if (this.closed || handler === null) return;
      this.callReportError(handler, error);
    });
  }

  private callReportError(handler: RaftTransportHandler, error: RaftTransportError): void {
    try {
      handler.reportError(error);
    } catch {
      // reportError itself failed: nothing left to tell.
    }
  }
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
