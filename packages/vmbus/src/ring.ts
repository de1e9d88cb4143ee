/**
 * One ring of a VMBus channel, as the root sees it: a header page and data pages in guest memory
 * (contiguous guest-physical, scattered host frames), shared with the guest's vCPU thread.
 *
 *   header (little-endian u32s): write index, read index, interrupt mask, data size
 *   data: packets of a 16-byte header {u32 length, u16 type, u16 flags, u32 txid lo, u32 txid hi}
 *         and `length` bytes of payload padded to 8; a packet may wrap around the end
 *
 * Empty when read == write; the writer leaves 8 bytes free, so it never catches up with the reader.
 * Indices go through Atomics (the guest's side is another thread); every byte the root writes marks
 * its page dirty, so a live migration carries it (DESIGN: never lose a page a device wrote).
 *
 * A guest controls these bytes: every index and length is checked, and a ring that breaks the rules
 * throws RingError (its channel is then closed), never reads or writes outside the ring.
 */
import { PAGE_SIZE } from "@hyperfleet/hypervisor";

export const RING_HEADER_BYTES = PAGE_SIZE;
export const PACKET_HEADER_BYTES = 16;
const WRITE_INDEX = 0;
const READ_INDEX = 1;
const INTERRUPT_MASK = 2;
const DATA_SIZE = 3;

export class RingError extends Error {
  override readonly name = "RingError";
}

/** A packet on a ring: its type, flags, transaction id and payload. */
export interface Packet {
  type: number;
  flags: number;
  /** A reply carries its request's (up to 2^53). */
  txid: number;
  payload: Uint8Array;
}

/** Where the ring's pages are: the root's view of guest memory. */
export interface RingMemory {
  /** The host memory all frames are in (a SharedArrayBuffer view). */
  readonly memory: Uint8Array;
  /** The host frame of each page of the ring half, header page first. */
  readonly frames: readonly number[];
  /** The guest page number of each of those pages, for the dirty log. */
  readonly gpns: readonly number[];
  markDirty(gpn: number): void;
}

export class Ring {
  /** Bytes of packet data the ring holds (pages - 1 pages). */
  readonly dataBytes: number;
  private readonly words: Int32Array;
  private readonly headerWord: number;

  constructor(private readonly mem: RingMemory) {
    if (mem.frames.length < 2 || mem.frames.length !== mem.gpns.length) throw new RingError(`a ring needs a header page and data pages, got ${mem.frames.length} pages`);
    this.dataBytes = (mem.frames.length - 1) * PAGE_SIZE;
    const m = mem.memory;
    this.words = new Int32Array(m.buffer, m.byteOffset, m.byteLength >>> 2);
    this.headerWord = (mem.frames[0]! * PAGE_SIZE) >>> 2;
    const size = this.load(DATA_SIZE);
    if (size !== this.dataBytes) throw new RingError(`ring data size ${size}, its pages hold ${this.dataBytes}: the guest must set it before opening`);
  }

  get writeIndex(): number {
    return this.index(WRITE_INDEX);
  }

  get readIndex(): number {
    return this.index(READ_INDEX);
  }

  /** The reader does not want signals now (it polls). */
  get interruptMasked(): boolean {
    return this.load(INTERRUPT_MASK) !== 0;
  }

  set interruptMasked(masked: boolean) {
    this.store(INTERRUPT_MASK, masked ? 1 : 0);
  }

  /** Bytes waiting to be read. */
  get used(): number {
    const w = this.writeIndex;
    const r = this.readIndex;
    return w >= r ? w - r : this.dataBytes - r + w;
  }

  /** Bytes a writer may still add (8 always stay free). */
  get free(): number {
    return this.dataBytes - this.used - 8;
  }

  // ---- the root as reader (the guest-to-host ring) -----------------------------------------------

  /** The packet at the read index, without consuming it; undefined when the ring is empty. */
  peek(): { packet: Packet; bytes: number } | undefined {
    const r = this.readIndex;
    const w = this.writeIndex;
    if (r === w) return undefined;
    const used = this.used;
    if (used < PACKET_HEADER_BYTES) throw new RingError(`${used} bytes in the ring, less than a packet header`);
    const header = this.copyOut(r, PACKET_HEADER_BYTES);
    const v = new DataView(header.buffer);
    const length = v.getUint32(0, true);
    const bytes = length > this.dataBytes ? Infinity : PACKET_HEADER_BYTES + align8(length);
    if (bytes > used) throw new RingError(`a packet of ${length} bytes, the ring holds ${used - PACKET_HEADER_BYTES} after its header`);
    const payload = this.copyOut((r + PACKET_HEADER_BYTES) % this.dataBytes, length);
    return {
      packet: { type: v.getUint16(4, true), flags: v.getUint16(6, true), txid: v.getUint32(8, true) + v.getUint32(12, true) * 2 ** 32, payload },
      bytes,
    };
  }

  /** Consumes `bytes` (a packet peek returned): the guest may reuse the room. */
  consume(bytes: number): void {
    if (bytes % 8 !== 0 || bytes > this.used) throw new RingError(`consume ${bytes} bytes of ${this.used}`);
    this.store(READ_INDEX, (this.readIndex + bytes) % this.dataBytes);
  }

  // ---- the root as writer (the host-to-guest ring) -----------------------------------------------

  /** Adds a packet; false (nothing written) when it does not fit now. */
  write(packet: Packet): boolean {
    const bytes = PACKET_HEADER_BYTES + align8(packet.payload.length);
    if (bytes > this.dataBytes - 8) throw new RingError(`a packet of ${packet.payload.length} bytes can never fit a ring of ${this.dataBytes}`);
    if (bytes > this.free) return false;
    const out = new Uint8Array(bytes);
    const v = new DataView(out.buffer);
    v.setUint32(0, packet.payload.length, true);
    v.setUint16(4, packet.type, true);
    v.setUint16(6, packet.flags, true);
    v.setUint32(8, packet.txid >>> 0, true);
    v.setUint32(12, Math.floor(packet.txid / 2 ** 32) >>> 0, true);
    out.set(packet.payload, PACKET_HEADER_BYTES);
    const w = this.writeIndex;
    this.copyIn(w, out);
    this.store(WRITE_INDEX, (w + bytes) % this.dataBytes); // after the bytes: Atomics orders them
    return true;
  }

  /** Whether a packet of this payload size could ever fit. */
  fits(payloadBytes: number): boolean {
    return PACKET_HEADER_BYTES + align8(payloadBytes) <= this.dataBytes - 8;
  }

  // ---- memory --------------------------------------------------------------------------------------

  private index(word: number): number {
    const i = this.load(word);
    if (i < 0 || i >= this.dataBytes || i % 8 !== 0) throw new RingError(`${word === WRITE_INDEX ? "write" : "read"} index ${i >>> 0} outside a data area of ${this.dataBytes} bytes or not a multiple of 8`);
    return i;
  }

  private load(word: number): number {
    return Atomics.load(this.words, this.headerWord + word);
  }

  private store(word: number, value: number): void {
    Atomics.store(this.words, this.headerWord + word, value);
    this.mem.markDirty(this.mem.gpns[0]!);
  }

  /** `length` bytes of the data area from `offset`, wrapping around its end. */
  private copyOut(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let done = 0;
    let at = offset;
    while (done < length) {
      const page = 1 + Math.floor(at / PAGE_SIZE);
      const inPage = at % PAGE_SIZE;
      const n = Math.min(length - done, PAGE_SIZE - inPage);
      const host = this.mem.frames[page]! * PAGE_SIZE + inPage;
      out.set(this.mem.memory.subarray(host, host + n), done);
      done += n;
      at = (at + n) % this.dataBytes;
    }
    return out;
  }

  private copyIn(offset: number, bytes: Uint8Array): void {
    let done = 0;
    let at = offset;
    while (done < bytes.length) {
      const page = 1 + Math.floor(at / PAGE_SIZE);
      const inPage = at % PAGE_SIZE;
      const n = Math.min(bytes.length - done, PAGE_SIZE - inPage);
      this.mem.memory.set(bytes.subarray(done, done + n), this.mem.frames[page]! * PAGE_SIZE + inPage);
      this.mem.markDirty(this.mem.gpns[page]!);
      done += n;
      at = (at + n) % this.dataBytes;
    }
  }
}

export function align8(n: number): number {
  return (n + 7) & ~7;
}
