/**
 * The network VSP and the virtual switch port of a VM's NIC.
 *
 * Frames are Ethernet-like: dst MAC[6] src MAC[6] ethertype[2] data. A NIC's MAC belongs to its VM
 * (02:48 and the offer's param), so the switch is keyed by the VM, not by its node: the node that
 * runs the VM listens for the MAC on the fabric (`SwitchFabric`, NATS in service), wherever that is.
 *
 * Around a live migration: the source's port stops delivering when its VMBus is suspended and
 * queues what arrives; once the VM runs elsewhere the source hands its queue back to the fabric,
 * where the destination's port (listening since the VM started there) takes it. Every frame carries
 * an id from its sender, and a port drops ids it has delivered, so a frame that reached both nodes
 * in the handover is delivered once.
 */
import type { Packet } from "./ring.js";
import type { ChannelEnd, Vsp } from "./vmbus.js";

export const ETHERNET_HEADER_BYTES = 14;
export const NET_MTU = 1500;
export const NET_FRAME = 1;
export const BROADCAST_MAC = "ff:ff:ff:ff:ff:ff";
/** Frames a port holds for its guest (not connected yet, suspended, ring full) before dropping the oldest. */
const QUEUE_MAX = 1024;
/** Frame ids a port remembers, to drop a second copy. */
const RECENT_IDS = 4096;

export class NetworkError extends Error {
  override readonly name = "NetworkError";
}

/** A frame on the fabric: its bytes and the id its sender gave it. */
export interface FabricFrame {
  id: string;
  frame: Uint8Array;
}

/** What carries frames between ports: publish to a MAC, listen on one. */
export interface SwitchFabric {
  publish(dstMac: string, f: FabricFrame): void;
  /** Listens for frames to `mac` (and broadcast); returns the function that stops listening. */
  listen(mac: string, handler: (f: FabricFrame) => void): () => void;
}

/** The MAC of a NIC whose offer param is `param`: 02:48 then param, most significant byte first. */
export function nicMac(param: number): string {
  const p = param >>> 0;
  return ["02", "48", ...[24, 16, 8, 0].map((s) => ((p >>> s) & 0xff).toString(16).padStart(2, "0"))].join(":");
}

export function macBytes(mac: string): Uint8Array {
  const parts = mac.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-f]{2}$/.test(p))) throw new NetworkError(`bad MAC address "${mac}": six lowercase hex pairs separated by colons`);
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

export function macString(bytes: Uint8Array, offset = 0): string {
  return Array.from(bytes.subarray(offset, offset + 6), (b) => b.toString(16).padStart(2, "0")).join(":");
}

export interface NicStats {
  framesIn: number;
  framesOut: number;
  dropped: number;
  duplicates: number;
  spoofed: number;
}

/**
 * A NIC's VSP and its port on the switch: frames the guest sends go to the fabric (their source
 * MAC must be the NIC's), frames for the NIC's MAC go to the guest.
 */
export class NetworkVsp implements Vsp {
  readonly stats: NicStats = { framesIn: 0, framesOut: 0, dropped: 0, duplicates: 0, spoofed: 0 };
  private channel: ChannelEnd | undefined;
  private readonly queue: FabricFrame[] = [];
  private readonly recent = new Set<string>();
  private stopListening: (() => void) | undefined;
  private delivering = true;
  private seq = 0;
  /** The VM runs elsewhere now: this port holds what arrives until the new port announces itself. */
  private leaving: (() => void) | undefined;
  /** Another port announced itself for this MAC while this one was suspended (the VM's next home). */
  private announcedWhileSuspended = false;

  /** `senderId`: unique to this port among all nodes (it prefixes the ids of the frames it sends). */
  constructor(
    readonly mac: string,
    private readonly fabric: SwitchFabric,
    private readonly senderId: string,
  ) {
    macBytes(mac);
  }

  /** Starts listening for the NIC's MAC (before the guest connects: frames wait for it). */
  listen(): void {
    this.stopListening ??= this.fabric.listen(this.mac, (f) => this.arrive(f));
  }

  open(channel: ChannelEnd): void {
    this.channel = channel;
    this.listen();
    this.flush();
  }

  close(): void {
    this.channel = undefined;
  }

  /** Stops delivering to the guest (its VMBus is suspended: the VM is being frozen): frames queue. */
  suspend(): void {
    this.delivering = false;
  }

  /** Delivers again (the migration failed; the VM runs on here). */
  resume(): void {
    this.delivering = true;
    this.announcedWhileSuspended = false;
    this.flush();
  }

  /**
   * Tells the fabric this port listens for its MAC now (an empty frame to its own MAC): the port the
   * VM ran behind before hands over what it holds once it hears it (see `leave`). Call after `listen`:
   * one connection sends the subscription before the announcement.
   */
  announce(): void {
    this.fabric.publish(this.mac, { id: this.senderId, frame: new Uint8Array(0) }); // its id: the port's own
  }

  /**
   * The VM moved to another node: deliver nothing more here, keep holding what arrives, and hand it
   * all over (`handOver`) once the new port announces itself; `handedOver` is called then. The caller
   * bounds the wait by calling `handOver` itself.
   */
  leave(handedOver?: () => void): void {
    this.delivering = false;
    this.channel = undefined;
    this.listen();
    this.leaving = handedOver ?? (() => undefined);
    // the new port may have announced itself before this one knew the move was done
    if (this.announcedWhileSuspended) this.handOver();
  }

  /**
   * The VM runs elsewhere now: stop listening and give the frames that waited here back to the
   * fabric, for the port that serves the VM now (it drops any it already has).
   */
  handOver(): void {
    const handedOver = this.leaving;
    this.leaving = undefined;
    this.announcedWhileSuspended = false;
    this.stopListening?.();
    this.stopListening = undefined;
    this.channel = undefined;
    for (const f of this.queue.splice(0)) this.fabric.publish(this.mac, f);
    handedOver?.();
  }

  /** Stops listening; frames waiting here are dropped. */
  shutdown(): void {
    this.leaving = undefined;
    this.stopListening?.();
    this.stopListening = undefined;
    this.channel = undefined;
    this.queue.length = 0;
  }

  packet(p: Packet): void {
    if (p.type !== NET_FRAME) throw new NetworkError(`network: unexpected packet type ${p.type}`);
    const frame = p.payload;
    if (frame.length < ETHERNET_HEADER_BYTES || frame.length > ETHERNET_HEADER_BYTES + NET_MTU) {
      this.stats.dropped++;
      return;
    }
    if (macString(frame, 6) !== this.mac) {
      this.stats.spoofed++; // a guest may only send as its own NIC
      return;
    }
    this.stats.framesOut++;
    this.fabric.publish(macString(frame, 0), { id: `${this.senderId}-${++this.seq}`, frame: new Uint8Array(frame) });
  }

  private arrive(f: FabricFrame): void {
    if (f.frame.length === 0) {
      // a port's announcement: the new home of the VM this port served listens now
      if (f.id === this.senderId) return;
      if (this.leaving !== undefined) this.handOver();
      else if (!this.delivering) this.announcedWhileSuspended = true;
      return;
    }
    if (this.recent.has(f.id)) {
      this.stats.duplicates++;
      return;
    }
    this.queue.push(f);
    if (this.queue.length > QUEUE_MAX) {
      this.queue.shift();
      this.stats.dropped++;
    }
    this.flush();
  }

  private flush(): void {
    if (!this.delivering || this.channel === undefined) return;
    for (const f of this.queue.splice(0)) {
      this.remember(f.id);
      this.stats.framesIn++;
      this.channel.send({ type: NET_FRAME, flags: 0, txid: 0, payload: f.frame });
    }
  }

  private remember(id: string): void {
    this.recent.add(id);
    if (this.recent.size > RECENT_IDS) this.recent.delete(this.recent.values().next().value!);
  }
}
