/**
 * Migration frames over NATS: one subject per direction of a session,
 * `hyperfleet.migration.<session>.to-destination` and `...to-source`; page stream k of the session
 * (k >= 1) uses `hyperfleet.migration.<session>.<k>.to-...`, on connection k - 1 of `streamConnections`
 * when given (round robin), else on the same connection. Core NATS gives at-most-once, in-order
 * delivery per publisher; the protocol's sequence numbers catch any loss, and its Ack window keeps a
 * slow destination from making the server drop a slow consumer.
 */
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { TransportError, type MigrationTransport } from "../transport.js";

export function migrationSubject(session: number, to: "destination" | "source", stream = 0): string {
  return stream === 0 ? `hyperfleet.migration.${session >>> 0}.to-${to}` : `hyperfleet.migration.${session >>> 0}.${stream}.to-${to}`;
}

export class NatsTransport implements MigrationTransport {
  private readonly subscription: Subscription;
  private handler: (frame: Uint8Array) => void = () => {};
  private errorHandler: (error: Error) => void = () => {};
  private readonly outbound: string;
  private closed = false;
  private sinceFlush = 0;

  /**
   * `side` is this end: it listens on the subject addressed to it and publishes to the other.
   * `streamConnections`: connections for page streams (see `stream`); `index` is this one's stream.
   */
  constructor(
    private readonly nc: NatsConnection,
    private readonly session: number,
    private readonly side: "source" | "destination",
    private readonly options: { streamConnections?: NatsConnection[]; index?: number } = {},
  ) {
    const index = options.index ?? 0;
    this.outbound = migrationSubject(session, side === "source" ? "destination" : "source", index);
    this.subscription = nc.subscribe(migrationSubject(session, side, index), {
      callback: (err, msg) => {
        if (err) this.failed(err);
        else this.handler(msg.data);
      },
    });
    void nc.closed().then((err) => {
      if (!this.closed) this.failed(err ?? new TransportError("the NATS connection closed"));
    });
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect" && !this.closed) this.failed(new TransportError("lost the NATS server"));
      }
    })().catch(() => undefined);
  }

  /** Resolves once the subscription is registered with the server (so nothing sent to it is missed). */
  async ready(): Promise<void> {
    await this.nc.flush();
  }

  async stream(index: number): Promise<MigrationTransport> {
    if (!Number.isInteger(index) || index < 1) throw new TransportError(`stream ${index}: page streams are numbered from 1`);
    const pool = this.options.streamConnections ?? [];
    const nc = pool.length > 0 ? pool[(index - 1) % pool.length]! : this.nc;
    const t = new NatsTransport(nc, this.session, this.side, { index });
    await t.ready();
    return t;
  }

  async send(frame: Uint8Array): Promise<void> {
    if (this.closed) throw new TransportError("transport closed");
    if (this.nc.isClosed()) throw new TransportError("the NATS connection is closed");
    this.nc.publish(this.outbound, frame);
    // Flush now and then so that a send reports a dead server instead of buffering without end.
    this.sinceFlush += frame.length;
    if (this.sinceFlush >= 4 * 1024 * 1024) {
      this.sinceFlush = 0;
      await this.nc.flush();
    }
  }

  onFrame(handler: (frame: Uint8Array) => void): void {
    this.handler = handler;
  }

  onError(handler: (error: Error) => void): void {
    this.errorHandler = handler;
  }

  private failed(error: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.errorHandler(error instanceof TransportError ? error : new TransportError(error.message));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.subscription.unsubscribe();
  }
}
