/**
 * The hypervisor's half of VMBus: the synthetic interrupt controller (SynIC) of a partition and its
 * channel table. The guest reaches it by hypercall (the hypercall page for bare guests, the HFVB SBI
 * extension for S-mode kernels; the ABI is guests/sdk/hf_vmbus.h):
 *
 *   QUERY(buf, len)           the offers: 16 bytes each {channel, type, instance, param}
 *   CONNECT(page)             the event flags page: bit c set = channel c has news for the guest
 *   OPEN(ch, ring, pages)     channel ch's ring pair in guest memory (first half guest-to-host)
 *   CLOSE(ch)
 *   SIGNAL(ch)                the guest wrote to channel ch's ring (or made room in the other)
 *
 * The root's providers (packages/vmbus) read and write the rings through the shared guest memory;
 * this class only records what the guest set up, passes signals out (`onSignal`, `onChannels`) and
 * brings the root's interrupts in (`interrupt`: flag bits in the event page, then PLIC source
 * VMBUS_IRQ). Its state (offers, event page, open channels) is part of the partition's saved state,
 * so a restored or migrated VM keeps its channels; the rings themselves are guest memory.
 */
import { PAGE_SIZE } from "./frame-pool.js";
import { SbiError, type HypercallResult } from "./hypercalls.js";
import type { MmioDevice } from "./devices/device.js";

/** PLIC source of the VMBus interrupt (the UART is 10). */
export const VMBUS_IRQ = 11;
/** Channels are numbered 1 to MAX_CHANNELS - 1: one bit each in a 32-bit event word. */
export const MAX_CHANNELS = 32;
/** The HFVB SBI extension: VMBus hypercalls from S-mode. */
export const SBI_EXT_VMBUS = 0x48465642;
/** Ring pair sizes a guest may give, in pages (even: two halves of a header page and data). */
export const RING_PAGES_MIN = 4;
export const RING_PAGES_MAX = 256;

export const HvCall = { Query: 1, Connect: 2, Open: 3, Close: 4, Signal: 5 } as const;

/** Channel types (the `type` of an offer). */
export const ChannelType = { Storage: 1, Network: 2, Heartbeat: 3, Shutdown: 4, TimeSync: 5, Kvp: 6 } as const;

/** A channel the host offers the guest. */
export interface Offer {
  channel: number;
  type: number;
  /** The n-th channel of its type, from 0. */
  instance: number;
  /** Per type: a NIC's MAC (its low 4 bytes). */
  param: number;
}

/** An open channel: where the guest put its rings. */
export interface OpenChannel {
  channel: number;
  /** Guest-physical address of the ring pair (the guest-to-host half first). */
  ringGpa: number;
  ringPages: number;
}

export interface SynicState {
  offers: Offer[];
  eventPage: number;
  channels: OpenChannel[];
}

/** The hypercall page's registers (a guest may be stopped between storing arguments and the call). */
export interface HypercallPageState {
  args: number[];
  error: number;
  value: number;
}

/** What the SynIC needs of its partition. */
export interface SynicHost {
  /** Whether [gpa, gpa + length) is all guest RAM. */
  inRam(gpa: number, length: number): boolean;
  /** Gives every page of the range a frame (the root's providers reach rings through the EPT). */
  prefault(gpa: number, length: number): void;
  writeGuest(gpa: number, bytes: Uint8Array): boolean;
  /** ORs `bits` into the guest word at `gpa` atomically (the guest takes them with an amoswap). */
  orGuestWord(gpa: number, bits: number): void;
  /** An edge on the VMBus interrupt line. */
  raiseIrq(): void;
}

export class Synic {
  private offerList: Offer[] = [];
  private eventPage = 0;
  private readonly open = new Map<number, OpenChannel>();
  /** The guest opened or closed a channel (the table changed). */
  onChannels: () => void = () => {};
  /** The guest signalled channel `channel`. */
  onSignal: (channel: number) => void = () => {};

  constructor(private readonly host: SynicHost, offers: readonly Offer[] = []) {
    this.setOffers(offers);
  }

  get offers(): readonly Offer[] {
    return this.offerList;
  }

  /** The open channels, by channel number. */
  get channels(): OpenChannel[] {
    return [...this.open.values()].sort((a, b) => a.channel - b.channel);
  }

  private setOffers(offers: readonly Offer[]): void {
    const seen = new Set<number>();
    for (const o of offers) {
      if (!Number.isInteger(o.channel) || o.channel < 1 || o.channel >= MAX_CHANNELS) throw new RangeError(`offer of channel ${o.channel}: channels are 1 to ${MAX_CHANNELS - 1}`);
      if (seen.has(o.channel)) throw new RangeError(`channel ${o.channel} offered twice`);
      seen.add(o.channel);
    }
    this.offerList = offers.map((o) => ({ channel: o.channel, type: o.type >>> 0, instance: o.instance >>> 0, param: o.param >>> 0 }));
  }

  /** Serves a VMBus hypercall (`code`, arguments a0..a5). */
  call(code: number, a: readonly number[]): HypercallResult {
    const u = (i: number): number => (a[i] ?? 0) >>> 0;
    const ok = (value = 0): HypercallResult => ({ error: SbiError.Success, value });
    const err = (error: number): HypercallResult => ({ error, value: 0 });
    switch (code) {
      case HvCall.Query: {
        const [buf, len] = [u(0), u(1)];
        const n = Math.min(this.offerList.length, Math.floor(len / 16));
        if (n > 0) {
          if (!this.host.inRam(buf, n * 16)) return err(SbiError.InvalidAddress);
          const out = new Uint8Array(n * 16);
          const v = new DataView(out.buffer);
          this.offerList.slice(0, n).forEach((o, i) => {
            v.setUint32(i * 16, o.channel, true);
            v.setUint32(i * 16 + 4, o.type, true);
            v.setUint32(i * 16 + 8, o.instance, true);
            v.setUint32(i * 16 + 12, o.param, true);
          });
          this.host.writeGuest(buf, out);
        }
        return ok(this.offerList.length);
      }
      case HvCall.Connect: {
        const page = u(0);
        if (page !== 0 && (page % PAGE_SIZE !== 0 || !this.host.inRam(page, PAGE_SIZE))) return err(page % PAGE_SIZE !== 0 ? SbiError.InvalidParam : SbiError.InvalidAddress);
        if (page !== 0) this.host.prefault(page, PAGE_SIZE);
        this.eventPage = page;
        return ok();
      }
      case HvCall.Open: {
        const [channel, ring, pages] = [u(0), u(1), u(2)];
        if (!this.offerList.some((o) => o.channel === channel)) return err(SbiError.InvalidParam);
        if (this.open.has(channel)) return err(SbiError.AlreadyStarted);
        if (ring % PAGE_SIZE !== 0 || pages % 2 !== 0 || pages < RING_PAGES_MIN || pages > RING_PAGES_MAX) return err(SbiError.InvalidParam);
        if (!this.host.inRam(ring, pages * PAGE_SIZE)) return err(SbiError.InvalidAddress);
        for (const c of this.open.values()) {
          if (ring < c.ringGpa + c.ringPages * PAGE_SIZE && c.ringGpa < ring + pages * PAGE_SIZE) return err(SbiError.InvalidParam);
        }
        this.host.prefault(ring, pages * PAGE_SIZE);
        this.open.set(channel, { channel, ringGpa: ring, ringPages: pages });
        this.onChannels();
        return ok();
      }
      case HvCall.Close: {
        const channel = u(0);
        if (!this.offerList.some((o) => o.channel === channel)) return err(SbiError.InvalidParam);
        if (!this.open.delete(channel)) return err(SbiError.AlreadyStopped);
        this.onChannels();
        return ok();
      }
      case HvCall.Signal: {
        const channel = u(0);
        if (!this.open.has(channel)) return err(SbiError.InvalidParam);
        this.onSignal(channel);
        return ok();
      }
    }
    return err(SbiError.NotSupported);
  }

  /**
   * The root has news on the channels in `mask` (bit c = channel c): sets their flags in the guest's
   * event page and raises the VMBus interrupt. Channels not open, or a guest not connected, get none.
   */
  interrupt(mask: number): void {
    let bits = 0;
    for (const c of this.open.keys()) bits |= (mask >>> c) & 1 ? 1 << c : 0;
    if (bits === 0 || this.eventPage === 0) return;
    this.host.orGuestWord(this.eventPage, bits);
    this.host.raiseIrq();
  }

  /** Forgets every channel and the event page (the guest reset: its rings are gone). */
  reset(): void {
    this.eventPage = 0;
    const had = this.open.size > 0;
    this.open.clear();
    if (had) this.onChannels();
  }

  save(): SynicState {
    return { offers: this.offerList.map((o) => ({ ...o })), eventPage: this.eventPage, channels: this.channels.map((c) => ({ ...c })) };
  }

  restore(s: SynicState): void {
    this.setOffers(s.offers);
    this.eventPage = s.eventPage >>> 0;
    this.open.clear();
    for (const c of s.channels) {
      if (!this.offerList.some((o) => o.channel === c.channel)) throw new RangeError(`open channel ${c.channel} was never offered`);
      this.open.set(c.channel, { channel: c.channel, ringGpa: c.ringGpa >>> 0, ringPages: c.ringPages });
    }
    this.onChannels();
  }
}

/**
 * The hypercall page at HypercallPage.BASE, for bare M-mode guests (an `ecall` there goes to the
 * guest's own trap handler): ARG0..ARG5 at 0x00..0x14, CODE at 0x18 (the store makes the call),
 * ERROR (an SBI error code) at 0x1C and VALUE at 0x20.
 */
export class HypercallPage implements MmioDevice {
  static readonly BASE = 0x0011_0000;
  readonly name = "hypercall";
  readonly size = 0x1000;
  readonly base = HypercallPage.BASE;
  private readonly args = new Uint32Array(6);
  private error = 0;
  private value = 0;

  constructor(private readonly call: (code: number, args: readonly number[]) => HypercallResult) {}

  load(offset: number, size: 1 | 2 | 4): number | undefined {
    if (size !== 4 || (offset & 3) !== 0) return undefined;
    if (offset < 0x18) return this.args[offset >>> 2]! | 0;
    if (offset === 0x18) return 0;
    if (offset === 0x1c) return this.error | 0;
    if (offset === 0x20) return this.value | 0;
    return undefined;
  }

  store(offset: number, size: 1 | 2 | 4, value: number): boolean {
    if (size !== 4 || (offset & 3) !== 0) return false;
    if (offset < 0x18) {
      this.args[offset >>> 2] = value >>> 0;
      return true;
    }
    if (offset !== 0x18) return false;
    const r = this.call(value >>> 0, [...this.args]);
    this.error = r.error;
    this.value = r.value >>> 0;
    return true;
  }

  save(): HypercallPageState {
    return { args: [...this.args], error: this.error, value: this.value };
  }

  restore(s: HypercallPageState): void {
    if (s.args.length !== 6) throw new RangeError(`hypercall page: ${s.args.length} argument registers, expected 6`);
    this.args.set(s.args.map((a) => a >>> 0));
    this.error = s.error | 0;
    this.value = s.value >>> 0;
  }
}
