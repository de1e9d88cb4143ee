/**
 * How migration frames travel. The engine sees only this interface; NATS (adapters/nats.ts) and an
 * in-memory pair with fault injection (for tests and the simulator) implement it.
 */

export interface MigrationTransport {
  /**
   * Sends one frame to the peer. Resolves once handed to the network (not once delivered). The frame
   * is taken before `send` returns, so frames go out in the order of the calls even when a sender
   * makes several before awaiting any (they may then leave in one write).
   */
  send(frame: Uint8Array): Promise<void>;
  /** Frames from the peer, in the order the network delivered them. */
  onFrame(handler: (frame: Uint8Array) => void): void;
  /** Called once if the link fails (e.g. the server went away); the engine aborts. */
  onError(handler: (error: Error) => void): void;
  close(): Promise<void>;
  /**
   * Opens page stream `index` (1, 2...) of this migration: another link between the same two ends,
   * with its own frames, order and failures (NATS: its own subjects, and its own connection if the
   * transport was given more). Resolves once it receives (so nothing the peer sends on it is missed).
   * Transports without it carry one stream only. The engine closes what it opened.
   */
  stream?(index: number): Promise<MigrationTransport>;
}

export class TransportError extends Error {
  override readonly name = "TransportError";
}

/** What a faulty link does to frames, for tests: each rule sees the n-th frame of its direction. */
export interface LinkFaults {
  /** Drop the n-th frame (1-based). */
  drop?: (n: number, frame: Uint8Array) => boolean;
  /** Deliver the n-th frame twice. */
  duplicate?: (n: number, frame: Uint8Array) => boolean;
  /** Hold the n-th frame back and deliver it after the next one. */
  swapWithNext?: (n: number, frame: Uint8Array) => boolean;
  /** Replace the n-th frame's bytes (corrupt or truncate it). */
  mangle?: (n: number, frame: Uint8Array) => Uint8Array | undefined;
  /** Fail the link when the n-th frame is sent (the peer died, the server stopped). */
  failAt?: (n: number, frame: Uint8Array) => boolean;
}

/** Fault rules of one link: each direction's. */
export interface DirectionFaults {
  toDestination?: LinkFaults;
  toSource?: LinkFaults;
}

/**
 * Two connected in-memory endpoints. Delivery is asynchronous (a microtask later), in order unless a
 * fault rule says otherwise. Page streams (`stream(k)`) are links of their own, with the fault rules
 * of `faults.streams[k]`.
 */
export function memoryLink(faults: DirectionFaults & { streams?: Record<number, DirectionFaults> } = {}): {
  source: MigrationTransport;
  destination: MigrationTransport;
} {
  const pairs = new Map<number, [MemoryEndpoint, MemoryEndpoint]>();
  const pair = (k: number): [MemoryEndpoint, MemoryEndpoint] => {
    let p = pairs.get(k);
    if (p === undefined) {
      const f = k === 0 ? faults : (faults.streams?.[k] ?? {});
      const a = new MemoryEndpoint((i) => Promise.resolve(pair(i)[0]));
      const b = new MemoryEndpoint((i) => Promise.resolve(pair(i)[1]));
      a.connect(b, f.toDestination ?? {});
      b.connect(a, f.toSource ?? {});
      p = [a, b];
      pairs.set(k, p);
    }
    return p;
  };
  const [source, destination] = pair(0);
  return { source, destination };
}

class MemoryEndpoint implements MigrationTransport {
  constructor(private readonly open: (index: number) => Promise<MemoryEndpoint>) {}

  stream(index: number): Promise<MigrationTransport> {
    if (!Number.isInteger(index) || index < 1) throw new TransportError(`stream ${index}: page streams are numbered from 1`);
    return this.open(index);
  }

  private peer: MemoryEndpoint | undefined;
  private faults: LinkFaults = {};
  private handler: (frame: Uint8Array) => void = () => {};
  private errorHandler: (error: Error) => void = () => {};
  private sent = 0;
  private held: Uint8Array | undefined;
  private closed = false;
  private failed = false;

  connect(peer: MemoryEndpoint, faults: LinkFaults): void {
    this.peer = peer;
    this.faults = faults;
  }

  async send(frame: Uint8Array): Promise<void> {
    if (this.closed || this.failed) throw new TransportError("link closed");
    const n = ++this.sent;
    const f = this.faults;
    if (f.failAt?.(n, frame)) {
      this.fail();
      throw new TransportError("link failed");
    }
    if (f.drop?.(n, frame)) return;
    const bytes = f.mangle?.(n, frame) ?? frame;
    if (f.swapWithNext?.(n, frame) && this.held === undefined) {
      this.held = bytes;
      return;
    }
    this.deliver(bytes);
    if (f.duplicate?.(n, frame)) this.deliver(bytes);
    if (this.held !== undefined) {
      const held = this.held;
      this.held = undefined;
      this.deliver(held);
    }
  }

  private deliver(bytes: Uint8Array): void {
    const peer = this.peer!;
    const copy = bytes.slice();
    queueMicrotask(() => {
      if (!peer.closed && !peer.failed) peer.handler(copy);
    });
  }

  /** Both ends see the link fail. */
  private fail(): void {
    for (const end of [this, this.peer!]) {
      if (end.failed) continue;
      end.failed = true;
      const handler = end.errorHandler;
      queueMicrotask(() => handler(new TransportError("link failed")));
    }
  }

  onFrame(handler: (frame: Uint8Array) => void): void {
    this.handler = handler;
  }

  onError(handler: (error: Error) => void): void {
    this.errorHandler = handler;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
