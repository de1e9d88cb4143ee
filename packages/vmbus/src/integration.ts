/**
 * Integration services: the channels that tie a guest to its host (Hyper-V's ICs).
 *
 *   heartbeat   host PING {u64 seq} -> guest PONG {u64 seq; u32 health}: is the guest alive and well
 *   shutdown    host SHUTDOWN {u32 flags; reason} -> guest ACK {i32 status}, then it powers off
 *   time sync   host TIME {u64 unix ns; u32 flags}; flag 1: just restored or migrated, step the clock
 *   KVP         host SET {key NUL value NUL}, GET {key NUL} -> VALUE {i32 status; key NUL value NUL};
 *               guest PUBLISH {key NUL value NUL}, DELETE {key NUL}
 *
 * They hold no timers: the node drives them (ping every second, time sync on open), so they run
 * the same in tests and in the simulator.
 */
import { ChannelType, type Offer } from "@hyperfleet/hypervisor";
import type { Packet } from "./ring.js";
import { REPLY, type ChannelEnd, type Vsp } from "./vmbus.js";

export class IntegrationError extends Error {
  override readonly name = "IntegrationError";
}

/** The guest's health as the heartbeat sees it. */
export type GuestHealth = "ok" | "unhealthy" | "no-contact" | "not-connected";

export class HeartbeatVsp implements Vsp {
  private channel: ChannelEnd | undefined;
  private seq = 0;
  private lastSeq = 0;
  private lastHealth = 0;
  private lastSeenMs: number | undefined;
  private sentAtMs = new Map<number, number>();

  constructor(private readonly missedPingsAllowed = 3) {}

  open(channel: ChannelEnd): void {
    this.channel = channel;
  }

  close(): void {
    this.channel = undefined;
  }

  /** Sends the next PING (the node calls it every second or so). */
  ping(nowMs: number): void {
    if (this.channel === undefined) return;
    this.seq++;
    this.sentAtMs.set(this.seq, nowMs);
    if (this.sentAtMs.size > 64) this.sentAtMs.delete(this.sentAtMs.keys().next().value!);
    const p = new Uint8Array(8);
    new DataView(p.buffer).setBigUint64(0, BigInt(this.seq), true);
    this.channel.send({ type: 1, flags: 0, txid: this.seq, payload: p });
  }

  packet(p: Packet): void {
    if (p.type !== (1 | REPLY) || p.payload.length < 12) throw new IntegrationError(`heartbeat: unexpected packet type ${p.type} of ${p.payload.length} bytes`);
    const v = new DataView(p.payload.buffer, p.payload.byteOffset, p.payload.byteLength);
    const seq = Number(v.getBigUint64(0, true));
    if (seq > this.seq || seq <= 0) return; // not one of ours (a reply to another node's ping, after a move)
    this.lastSeq = Math.max(this.lastSeq, seq);
    this.lastHealth = v.getUint32(8, true);
    this.lastSeenMs = this.sentAtMs.get(seq) ?? this.lastSeenMs;
  }

  /** The guest's health: answering and healthy, answering and not, silent for too long, or no channel. */
  get health(): GuestHealth {
    if (this.channel === undefined) return "not-connected";
    if (this.seq - this.lastSeq > this.missedPingsAllowed) return "no-contact";
    if (this.lastSeq === 0) return "no-contact";
    return this.lastHealth === 0 ? "ok" : "unhealthy";
  }

  /** When the last answered ping was sent (the caller's clock), if any. */
  get lastContactMs(): number | undefined {
    return this.lastSeenMs;
  }
}

export class ShutdownVsp implements Vsp {
  private channel: ChannelEnd | undefined;
  private txid = 0;
  private readonly waiting = new Map<number, (status: number) => void>();

  open(channel: ChannelEnd): void {
    this.channel = channel;
  }

  close(): void {
    this.channel = undefined;
    for (const w of this.waiting.values()) w(-1);
    this.waiting.clear();
  }

  get connected(): boolean {
    return this.channel !== undefined;
  }

  /**
   * Asks the guest to shut down; resolves with its answer (0: it accepted and powers off). Rejects
   * at once when the guest has no shutdown channel open. The caller bounds the wait.
   */
  request(reason: string, flags = 0): Promise<number> {
    if (this.channel === undefined) return Promise.reject(new IntegrationError("the guest has no shutdown channel open"));
    const text = new TextEncoder().encode(reason);
    const p = new Uint8Array(4 + text.length);
    new DataView(p.buffer).setUint32(0, flags, true);
    p.set(text, 4);
    const txid = ++this.txid;
    const answer = new Promise<number>((resolve) => this.waiting.set(txid, resolve));
    this.channel.send({ type: 1, flags: 0, txid, payload: p });
    return answer;
  }

  packet(p: Packet): void {
    if (p.type !== (1 | REPLY) || p.payload.length < 4) throw new IntegrationError(`shutdown: unexpected packet type ${p.type}`);
    const status = new DataView(p.payload.buffer, p.payload.byteOffset, 4).getInt32(0, true);
    const w = this.waiting.get(p.txid);
    this.waiting.delete(p.txid);
    w?.(status);
  }
}

export class TimeSyncVsp implements Vsp {
  private channel: ChannelEnd | undefined;
  private txid = 0;

  /** `unixMs`: the host's wall clock. */
  constructor(private readonly unixMs: () => number) {}

  /** A channel opened (the guest's driver started, or the VM continues here after a restore or a move): step its clock. */
  open(channel: ChannelEnd): void {
    this.channel = channel;
    this.sync(true);
  }

  close(): void {
    this.channel = undefined;
  }

  /** Sends the host's time; `step`: the guest should set its clock now rather than slew. */
  sync(step = false): void {
    if (this.channel === undefined) return;
    const p = new Uint8Array(12);
    const v = new DataView(p.buffer);
    v.setBigUint64(0, BigInt(Math.round(this.unixMs() * 1e6)), true);
    v.setUint32(8, step ? 1 : 0, true);
    this.channel.send({ type: 1, flags: 0, txid: ++this.txid, payload: p });
  }

  packet(p: Packet): void {
    throw new IntegrationError(`time sync: the guest sends nothing, got type ${p.type}`);
  }
}

/** The four integration services of one VM, and the provider of their channels. */
export class IntegrationServices {
  readonly heartbeat = new HeartbeatVsp();
  readonly shutdown = new ShutdownVsp();
  readonly timeSync: TimeSyncVsp;
  readonly kvp = new KvpVsp();

  /** `unixMs`: the host's wall clock, for time sync. */
  constructor(unixMs: () => number) {
    this.timeSync = new TimeSyncVsp(unixMs);
  }

  /** The service for an offered channel, or undefined when it is not an integration service. */
  provider(offer: Offer): Vsp | undefined {
    switch (offer.type) {
      case ChannelType.Heartbeat: return this.heartbeat;
      case ChannelType.Shutdown: return this.shutdown;
      case ChannelType.TimeSync: return this.timeSync;
      case ChannelType.Kvp: return this.kvp;
    }
    return undefined;
  }
}

export const KvpOp = { Set: 1, Get: 2, Publish: 3, Delete: 4 } as const;

export class KvpVsp implements Vsp {
  private channel: ChannelEnd | undefined;
  private txid = 0;
  /** What the guest published. */
  readonly guestValues = new Map<string, string>();
  /** What the host set (sent again whenever the channel opens). */
  readonly hostValues = new Map<string, string>();
  private readonly waiting = new Map<number, (value: string | undefined) => void>();
  /** Hears the guest's PUBLISH and DELETE (value undefined). */
  onGuestChange: (key: string, value: string | undefined) => void = () => {};

  open(channel: ChannelEnd): void {
    this.channel = channel;
    for (const [k, v] of this.hostValues) this.sendSet(k, v);
  }

  close(): void {
    this.channel = undefined;
    for (const w of this.waiting.values()) w(undefined);
    this.waiting.clear();
  }

  /** Sets a host value the guest can read (kept, and sent again if the guest reconnects). */
  set(key: string, value: string): void {
    checkKey(key);
    if (value.includes("\0")) throw new IntegrationError("a KVP value cannot contain NUL");
    this.hostValues.set(key, value);
    this.sendSet(key, value);
  }

  /** Removes a host value: the guest forgets it (a host DELETE) and it is no longer sent on reconnects. */
  delete(key: string): void {
    checkKey(key);
    if (!this.hostValues.delete(key)) return;
    this.channel?.send({ type: KvpOp.Delete, flags: 0, txid: ++this.txid, payload: strings(key) });
  }

  /** Asks the guest for its value of `key` (undefined: it has none, or no channel). */
  get(key: string): Promise<string | undefined> {
    checkKey(key);
    if (this.channel === undefined) return Promise.resolve(undefined);
    const txid = ++this.txid;
    const answer = new Promise<string | undefined>((resolve) => this.waiting.set(txid, resolve));
    this.channel.send({ type: KvpOp.Get, flags: 0, txid, payload: strings(key) });
    return answer;
  }

  packet(p: Packet): void {
    switch (p.type) {
      case KvpOp.Publish: {
        const [key, value] = parseStrings(p.payload, 2);
        this.guestValues.set(key!, value!);
        this.onGuestChange(key!, value);
        return;
      }
      case KvpOp.Delete: {
        const [key] = parseStrings(p.payload, 1);
        this.guestValues.delete(key!);
        this.onGuestChange(key!, undefined);
        return;
      }
      case KvpOp.Get | REPLY: {
        const w = this.waiting.get(p.txid);
        this.waiting.delete(p.txid);
        if (p.payload.length < 4) return w?.(undefined);
        const status = new DataView(p.payload.buffer, p.payload.byteOffset, 4).getInt32(0, true);
        const [, value] = status === 0 ? parseStrings(p.payload.subarray(4), 2) : [];
        w?.(value);
        return;
      }
    }
    throw new IntegrationError(`KVP: unexpected packet type ${p.type}`);
  }

  private sendSet(key: string, value: string): void {
    this.channel?.send({ type: KvpOp.Set, flags: 0, txid: ++this.txid, payload: strings(key, value) });
  }
}

const MAX_KVP_BYTES = 512;

function checkKey(key: string): void {
  if (key.length === 0 || key.includes("\0") || key.includes("=")) throw new IntegrationError(`bad KVP key ${JSON.stringify(key)}: non-empty, no NUL or '='`);
}

function strings(...parts: string[]): Uint8Array {
  const bytes = new TextEncoder().encode(parts.map((p) => `${p}\0`).join(""));
  if (bytes.length > MAX_KVP_BYTES) throw new IntegrationError(`a KVP entry of ${bytes.length} bytes, at most ${MAX_KVP_BYTES}`);
  return bytes;
}

/** `n` NUL-terminated strings from the payload. */
function parseStrings(payload: Uint8Array, n: number): string[] {
  const out: string[] = [];
  let at = 0;
  for (let i = 0; i < n; i++) {
    const end = payload.indexOf(0, at);
    if (end < 0) throw new IntegrationError(`KVP: string ${i + 1} of ${n} is not NUL-terminated`);
    out.push(new TextDecoder().decode(payload.subarray(at, end)));
    at = end + 1;
  }
  return out;
}
