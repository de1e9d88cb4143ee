/**
 * How a Raft member talks to its peers: the interface the node driver uses, whatever carries the
 * bytes (gRPC in production, `src/adapters/grpc-transport.ts`; an in-memory network in tests).
 *
 * Raft tolerates lost, duplicated and reordered messages, so a transport is allowed to lose
 * messages; what it must not do is block or throw in the driver's send path. It tells Raft about
 * losses instead, through `RaftTransportHandler.reportUnreachable`, so that a leader stops
 * pipelining appends to a follower it cannot reach and probes it again (etcd's rafthttp does the
 * same with `ReportUnreachable`).
 */
import type { Message, NodeId } from "./types.js";

/** The outcome of sending one snapshot message (Raft steps it as a `SnapStatus`). */
export type SnapshotStatus = "finish" | "failure";

/**
 * What a transport calls back into. The node driver implements it.
 *
 * Contract for every method: the transport never calls it synchronously from inside one of its own
 * methods (`send`, `addPeer`, `removePeer`, `close`, `setHandler`); calls come later, from the
 * event loop, one at a time. No call happens after `close()` was called. A method that throws does
 * not break the transport: the exception is passed to `reportError` (or dropped, for
 * `reportError` itself).
 */
export interface RaftTransportHandler {
  /**
   * A message from a peer. Messages from one peer arrive in the order that peer sent them, except
   * snapshot messages, which travel apart and may overtake or be overtaken by others. Any message
   * may be missing (lost on the way).
   */
  receive(message: Message): void;
  /**
   * Messages to `id` may have been lost because `id` could not be reached (down, refusing us,
   * too slow to keep up, or a message too large to send). Called at most once per peer for each
   * `send()` call, once when a stream to `id` breaks with messages in it, and when a snapshot
   * message to `id` fails.
   */
  reportUnreachable(id: NodeId): void;
  /** A snapshot message to `id` was delivered (`"finish"`) or not (`"failure"`). */
  reportSnapshot(id: NodeId, status: SnapshotStatus): void;
  /**
   * Something worth a log line: a stream was refused, by a peer or by us (`PeerRefusedError`,
   * `ClusterMismatchError`: a member of another cluster or without the token dialled in), a peer
   * became unreachable (`PeerUnreachableError`, once per outage, not per retry), a message was
   * too large (`MessageTooLargeError`) or unreadable (`MessageDecodeError`).
   */
  reportError(error: RaftTransportError): void;
}

/**
 * Carries Raft messages between the members of one cluster.
 *
 * Members are known by id; `addPeer` says where a peer listens. Messages for one peer leave in the
 * order given to `send`, through one stream per peer.
 */
export interface RaftTransport {
  /**
   * Queues `messages` (each to its `message.to`) and returns at once.
   *
   * Never blocks and never throws because of a peer: a message to a peer that is down, unknown,
   * refusing us or behind a full queue is dropped, counted and reported through
   * `reportUnreachable` (and, for a snapshot message, `reportSnapshot(id, "failure")`). Queues
   * are bounded, so a slow peer costs bounded memory. Call it after the `Ready`'s state was
   * persisted (see `Ready`).
   */
  send(messages: readonly Message[]): void;
  /** Where `reportUnreachable`, `receive`... go from now on. Messages received before any handler is set are dropped. */
  setHandler(handler: RaftTransportHandler): void;
  /**
   * Starts talking to `id` at `address` ("host:port"). Adding a known peer at the same address does
   * nothing; at another address, it drops the old connection and its queue and dials the new one.
   */
  addPeer(id: NodeId, address: string): void;
  /** Stops talking to `id`: drops its connection and queued messages without reporting them. Unknown ids are ignored. */
  removePeer(id: NodeId): void;
  /**
   * Releases every connection, listener and timer; queued messages are dropped. After the
   * returned promise resolves the transport holds no handle that keeps the process alive. `send`
   * after `close` drops silently. Calling it twice is harmless.
   */
  close(): Promise<void>;
}

/** Base of every error a transport reports or throws. `peer` is the member it concerns, if any. */
export class RaftTransportError extends Error {
  override readonly name: string = "RaftTransportError";
  readonly peer: NodeId | null;

  constructor(message: string, peer: NodeId | null, options?: ErrorOptions) {
    super(message, options);
    this.peer = peer;
  }
}

/** Why a peer refused a stream or a call. */
export type RefusalReason =
  /** The peer belongs to another cluster (see `ClusterMismatchError`). */
  | "cluster-mismatch"
  /** The peer at that address is another member than the one we meant. */
  | "member-mismatch"
  /** The cluster token was missing or wrong. */
  | "unauthenticated"
  /** The peer did not understand us (bad hello, unknown method). */
  | "protocol";

/**
 * A stream or call between two members was refused. Reported by the sender (a peer refused us:
 * retrying quickly will not help, so transports retry slowly, as a peer may be reconfigured, and
 * report each refusal) and by the receiver (we refused a peer). `peer` is the other end.
 */
export class PeerRefusedError extends RaftTransportError {
  override readonly name: string = "PeerRefusedError";
  readonly reason: RefusalReason;

  constructor(message: string, peer: NodeId | null, reason: RefusalReason, options?: ErrorOptions) {
    super(message, peer, options);
    this.reason = reason;
  }
}

/**
 * The two ends belong to different clusters: usually a stale address (a machine reused by another
 * cluster) or a wrong cluster id in the configuration. Reported on both ends.
 */
export class ClusterMismatchError extends PeerRefusedError {
  override readonly name: string = "ClusterMismatchError";
  readonly localClusterId: string;
  readonly remoteClusterId: string;

  constructor(peer: NodeId | null, localClusterId: string, remoteClusterId: string, options?: ErrorOptions) {
    super(
      `cluster id mismatch with member ${peer ?? "(unknown)"}: this member belongs to cluster ` +
        `${JSON.stringify(localClusterId)}, the peer to cluster ${JSON.stringify(remoteClusterId)}`,
      peer,
      "cluster-mismatch",
      options,
    );
    this.localClusterId = localClusterId;
    this.remoteClusterId = remoteClusterId;
  }
}

/** A peer could not be reached (connection refused, timed out, reset). Reported once per outage. */
export class PeerUnreachableError extends RaftTransportError {
  override readonly name: string = "PeerUnreachableError";
  readonly address: string;

  constructor(peer: NodeId, address: string, detail: string, options?: ErrorOptions) {
    super(`member ${peer} at ${address} is unreachable: ${detail}`, peer, options);
    this.address = address;
  }
}

/** A message was larger than the configured limit and was dropped instead of sent. */
export class MessageTooLargeError extends RaftTransportError {
  override readonly name: string = "MessageTooLargeError";
  readonly sizeBytes: number;
  readonly limitBytes: number;

  constructor(peer: NodeId, sizeBytes: number, limitBytes: number, what: string) {
    super(`${what} to member ${peer} dropped: ${sizeBytes} bytes, over the limit of ${limitBytes} bytes`, peer);
    this.sizeBytes = sizeBytes;
    this.limitBytes = limitBytes;
  }
}

/** Bytes from a peer did not decode to a Raft message, or a message was not for this member; it was dropped. */
export class MessageDecodeError extends RaftTransportError {
  override readonly name: string = "MessageDecodeError";
}
