/**
 * The root's side of a VM's VMBus: it follows the channel table the guest builds (through the
 * SynIC in the VM worker), reads each open channel's guest-to-host ring, hands the packets to the
 * channel's provider (VSP) one at a time, and writes the provider's packets into the host-to-guest
 * ring, raising the guest's VMBus interrupt when it wants one.
 *
 * A packet leaves the guest's ring only once its provider has handled it (for storage: the write
 * is durable and the reply is in the other ring). So a VM stopped for a migration or a save
 * between the two has the request still in its ring, and the providers of the node it continues on
 * serve it again: requests must be idempotent (disk reads and writes are; a duplicated frame is a
 * network's ordinary fault), and a guest ignores a reply whose transaction it no longer waits for.
 *
 *   guest: OPEN -> table changes -> VmBus opens a Channel, the provider's open()
 *   guest: packet + SIGNAL -> poll: peek, await provider.packet(), consume, next ...
 *   provider: send() -> host-to-guest ring (queued while full) -> interrupt unless masked
 *   guest: CLOSE (or reset) -> table changes -> provider's close()
 */
import { PAGE_SIZE, type Ept, type GuestMemory, type Offer, type OpenChannel } from "@hyperfleet/hypervisor";
import { Ring, RingError, type Packet } from "./ring.js";

/** What VmBus needs of a running VM: VmWorker provides it. */
export interface VmBusPort {
  readonly guest: GuestMemory;
  readonly ept: Ept;
  onVmBus(listener: () => void): void;
  takeSignals(): number;
  channels(): { generation: number; channels: OpenChannel[] };
  interruptGuest(mask: number): void;
}

/** A channel as its provider sees it. */
export interface ChannelEnd {
  readonly offer: Offer;
  /** Sends a packet to the guest (queued while the ring is full, in order). */
  send(packet: Packet): void;
  /** Sends a reply: `type | 0x80` and the request's transaction id. */
  reply(request: Packet, payload: Uint8Array): void;
}

/** A virtualization service provider: the root's end of one channel type. */
export interface Vsp {
  open(channel: ChannelEnd): void;
  /** A packet from the guest. The next one waits until this settles; a throw closes the channel. */
  packet(packet: Packet, channel: ChannelEnd): Promise<void> | void;
  close(): void;
  /** The VMBus is suspended (the VM is about to be frozen): send the guest nothing until resume. */
  suspend?(): void;
  resume?(): void;
}

export class VmBusError extends Error {
  override readonly name = "VmBusError";
}

/** Packets a channel holds for a full host-to-guest ring before it drops the oldest. */
const SEND_QUEUE_MAX = 1024;
export const REPLY = 0x80;

export interface VmBusOptions {
  /** The provider for an offered channel (undefined: the channel is offered but nobody serves it). */
  provider: (offer: Offer) => Vsp | undefined;
  /** A channel broke (the guest broke its ring's rules, or its provider failed): it is closed. */
  onError?: (offer: Offer, error: Error) => void;
}

export class VmBus {
  private readonly open = new Map<number, Channel>();
  private generation = -1;
  private interruptMask = 0;
  private interruptQueued = false;
  private closed = false;
  private suspended = false;

  constructor(
    private readonly port: VmBusPort,
    private readonly offers: readonly Offer[],
    private readonly options: VmBusOptions,
  ) {}

  /**
   * Starts serving: opens the channels the guest has open now (a restored or migrated VM has them
   * already), serves whatever waits in their rings, and interrupts the guest once on each, so that
   * a signal lost in the move costs nothing.
   */
  attach(): void {
    this.port.onVmBus(() => this.event());
    this.sync();
    // Signals from before (nobody listened, or another root did) are served by the polls below; the
    // word must be cleared, or the worker, which posts only when it goes from empty, never posts again.
    this.port.takeSignals();
    let mask = 0;
    for (const c of this.open.values()) {
      c.poll();
      mask |= 1 << c.offer.channel;
    }
    this.interrupt(mask);
  }

  /**
   * Stops touching guest memory: no packet is started and nothing more is written into a ring;
   * resolves once the packets being handled are done (their replies written, themselves consumed).
   * A migration's source calls it before the stop-and-copy, so the pages it sends hold no half-done
   * exchange; what the guest sends meanwhile waits in its rings for whoever serves it next.
   */
  async suspend(): Promise<void> {
    this.suspended = true;
    for (const c of this.open.values()) c.vsp.suspend?.();
    await Promise.all([...this.open.values()].map((c) => c.idle()));
  }

  /** Serves again after suspend (the migration failed and the VM runs on here). */
  resume(): void {
    if (!this.suspended) return;
    this.suspended = false;
    this.sync();
    this.port.takeSignals(); // taken while suspended: the polls below serve them
    let mask = 0;
    for (const c of this.open.values()) {
      c.vsp.resume?.();
      c.poll();
      mask |= 1 << c.offer.channel;
    }
    this.interrupt(mask);
  }

  /** @internal */
  get isSuspended(): boolean {
    return this.suspended;
  }

  /** Stops serving: every provider is closed; the guest's rings stay as they are. */
  close(): void {
    this.closed = true;
    this.port.onVmBus(() => {});
    for (const c of this.open.values()) c.close();
    this.open.clear();
  }

  /** The channels open now, by number. */
  get channels(): number[] {
    return [...this.open.keys()].sort((a, b) => a - b);
  }

  private event(): void {
    if (this.closed || this.suspended) return; // the signals wait in the shared word
    this.sync();
    const signals = this.port.takeSignals();
    for (const c of this.open.values()) if ((signals >>> c.offer.channel) & 1) c.poll();
  }

  /** Follows the table: opens new channels, closes gone ones (or ones whose rings moved). */
  private sync(): void {
    const { generation, channels } = this.port.channels();
    if (generation === this.generation) return;
    this.generation = generation;
    const now = new Map(channels.map((c) => [c.channel, c]));
    for (const [n, c] of this.open) {
      const t = now.get(n);
      if (t === undefined || t.ringGpa !== c.info.ringGpa || t.ringPages !== c.info.ringPages) {
        c.close();
        this.open.delete(n);
      }
    }
    for (const info of channels) {
      if (this.open.has(info.channel)) continue;
      const offer = this.offers.find((o) => o.channel === info.channel);
      if (offer === undefined) continue;
      const vsp = this.options.provider(offer);
      if (vsp === undefined) continue;
      try {
        const channel = new Channel(this, offer, info, vsp, this.ringMemory(info));
        this.open.set(info.channel, channel);
        channel.start();
      } catch (e) {
        this.options.onError?.(offer, e as Error);
      }
    }
  }

  private ringMemory(info: OpenChannel): { halves: [RingPages, RingPages] } {
    const half = info.ringPages / 2;
    const base = (info.ringGpa - this.port.guest.base) / PAGE_SIZE;
    const pages = (first: number): RingPages => {
      const gpns = Array.from({ length: half }, (_, i) => first + i);
      return { gpns, frames: gpns.map((g) => this.port.guest.frameFor(g)) };
    };
    return { halves: [pages(base), pages(base + half)] };
  }

  /** @internal A ring of this VM's guest memory. */
  ring(pages: RingPages): Ring {
    const ept = this.port.ept;
    return new Ring({ memory: this.port.guest.pool.memory, frames: pages.frames, gpns: pages.gpns, markDirty: (g) => ept.markDirty(g) });
  }

  /** @internal Interrupts the guest on these channels, once per turn for all of them. */
  interrupt(mask: number): void {
    if (mask === 0 || this.closed) return;
    this.interruptMask |= mask;
    if (this.interruptQueued) return;
    this.interruptQueued = true;
    queueMicrotask(() => {
      this.interruptQueued = false;
      const m = this.interruptMask;
      this.interruptMask = 0;
      if (!this.closed) this.port.interruptGuest(m);
    });
  }

  /** @internal A channel broke: it is closed until the guest opens it again. */
  broke(channel: Channel, error: Error): void {
    channel.close();
    if (this.open.get(channel.offer.channel) === channel) this.open.delete(channel.offer.channel);
    this.options.onError?.(channel.offer, error);
  }
}

interface RingPages {
  gpns: number[];
  frames: number[];
}

class Channel implements ChannelEnd {
  private readonly incoming: Ring; // guest to host
  private readonly outgoing: Ring; // host to guest
  private readonly queue: Packet[] = [];
  private polling = false;
  private again = false;
  private readonly idleWaiters: (() => void)[] = [];
  private closed = false;

  constructor(
    private readonly bus: VmBus,
    readonly offer: Offer,
    readonly info: OpenChannel,
    readonly vsp: Vsp,
    memory: { halves: [RingPages, RingPages] },
  ) {
    this.incoming = bus.ring(memory.halves[0]);
    this.outgoing = bus.ring(memory.halves[1]);
  }

  start(): void {
    this.vsp.open(this);
  }

  send(packet: Packet): void {
    if (this.closed) return;
    if (!this.outgoing.fits(packet.payload.length)) {
      this.bus.broke(this, new VmBusError(`channel ${this.offer.channel}: a packet of ${packet.payload.length} bytes can never fit its ring of ${this.outgoing.dataBytes}`));
      return;
    }
    this.queue.push(packet);
    if (this.queue.length > SEND_QUEUE_MAX) this.queue.shift();
    this.flush();
  }

  reply(request: Packet, payload: Uint8Array): void {
    this.send({ type: (request.type | REPLY) & 0xffff, flags: 0, txid: request.txid, payload });
  }

  /** Writes what the queue holds while the ring has room. */
  private flush(): void {
    if (this.bus.isSuspended) return;
    let wrote = false;
    try {
      while (this.queue.length > 0 && this.outgoing.write(this.queue[0]!)) {
        this.queue.shift();
        wrote = true;
      }
      if (wrote && !this.outgoing.interruptMasked) this.bus.interrupt(1 << this.offer.channel);
    } catch (e) {
      this.bus.broke(this, e as Error);
    }
  }

  /** Serves the guest-to-host ring until it is empty (one run at a time; a signal meanwhile runs it again). */
  poll(): void {
    if (this.closed || this.bus.isSuspended) return;
    this.flush(); // the guest may have made room
    if (this.polling) {
      this.again = true;
      return;
    }
    this.polling = true;
    void this.run();
  }

  private async run(): Promise<void> {
    try {
      do {
        this.again = false;
        for (let next = this.incoming.peek(); next !== undefined && !this.closed && !this.bus.isSuspended; next = this.incoming.peek()) {
          await this.vsp.packet(next.packet, this);
          if (this.closed) return;
          this.flushUnsuspended();
          const crowded = this.incoming.free < this.incoming.dataBytes / 2;
          this.incoming.consume(next.bytes);
          if (crowded) this.bus.interrupt(1 << this.offer.channel); // a writer waiting for room goes on
        }
      } while (this.again && !this.closed && !this.bus.isSuspended);
    } catch (e) {
      this.bus.broke(this, e instanceof Error ? e : new RingError(String(e)));
    } finally {
      this.polling = false;
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /** The reply of a packet handled while a suspend was asked for still goes out, before the consume. */
  private flushUnsuspended(): void {
    if (!this.bus.isSuspended) return;
    let wrote = false;
    while (this.queue.length > 0 && this.outgoing.write(this.queue[0]!)) {
      this.queue.shift();
      wrote = true;
    }
    if (wrote && !this.outgoing.interruptMasked) this.bus.interrupt(1 << this.offer.channel);
  }

  /** Resolves when no packet is being handled. */
  idle(): Promise<void> {
    if (!this.polling) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.vsp.close();
  }
}
