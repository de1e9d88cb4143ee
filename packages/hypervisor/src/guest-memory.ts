/**
 * A partition's guest-physical RAM as the root sees it: reads and writes by guest-physical address,
 * through the partition's EPT into host frames. Nothing here reaches a frame the EPT does not map to
 * this partition, so a hypercall argument or a device address cannot touch another partition's memory.
 *
 * Pages never touched have no frame: they read as zero and cost no host memory. A write allocates the
 * frame (zero-filled) and marks the page dirty when dirty logging is on.
 */
import { EPT_PRESENT, EPT_RWX, EPT_WP, type Ept } from "./ept.js";
import { PAGE_SHIFT, PAGE_SIZE, type FramePool } from "./frame-pool.js";

export class GuestMemoryError extends Error {
  override readonly name = "GuestMemoryError";
}

export class GuestMemory {
  readonly bytes: number;
  /** Called with the host byte range of every write, so decoded instructions there are forgotten. */
  onWrite: (hostAddress: number, length: number) => void = () => {};

  constructor(
    readonly pool: FramePool,
    readonly ept: Ept,
    /** Guest-physical address of the first RAM byte. */
    readonly base: number,
  ) {
    this.bytes = ept.pages * PAGE_SIZE;
  }

  /** Whether [gpa, gpa + length) lies inside guest RAM. */
  contains(gpa: number, length: number): boolean {
    return Number.isInteger(gpa) && length >= 0 && gpa >= this.base && gpa + length <= this.base + this.bytes;
  }

  /**
   * The host frame of guest page `gpn` (RAM page index), allocated on first touch. Safe to race with the
   * VM worker: the first to install a frame wins, the other gives its frame back.
   */
  frameFor(gpn: number): number {
    const table = this.ept.table;
    const e = Atomics.load(table, gpn);
    if (e & EPT_PRESENT) return e >>> PAGE_SHIFT;
    const frame = this.pool.allocate();
    if (frame < 0) throw new GuestMemoryError(`host memory exhausted (${this.pool.frames} frames in use)`);
    const entry = (frame << PAGE_SHIFT) | EPT_PRESENT | EPT_RWX | (this.ept.logging ? EPT_WP : 0);
    const old = Atomics.compareExchange(table, gpn, 0, entry);
    if (old !== 0) {
      this.pool.release(frame);
      return old >>> PAGE_SHIFT;
    }
    return frame;
  }

  /** Copies guest memory out. Untouched pages read as zero. */
  read(gpa: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.eachPage(gpa, length, (gpn, inPage, n, done) => {
      const frame = this.ept.frame(gpn);
      if (frame >= 0) out.set(this.pool.memory.subarray(frame * PAGE_SIZE + inPage, frame * PAGE_SIZE + inPage + n), done);
    });
    return out;
  }

  /** Copies bytes into guest memory, allocating frames and marking pages dirty. */
  write(gpa: number, data: Uint8Array): void {
    this.eachPage(gpa, data.length, (gpn, inPage, n, done) => {
      const host = this.frameFor(gpn) * PAGE_SIZE + inPage;
      this.pool.memory.set(data.subarray(done, done + n), host);
      this.ept.markDirty(gpn);
      this.onWrite(host, n);
    });
  }

  /** Fills guest memory with zeros (only pages that have frames need it). */
  zero(gpa: number, length: number): void {
    this.eachPage(gpa, length, (gpn, inPage, n) => {
      const frame = this.ept.frame(gpn);
      if (frame < 0) return;
      this.pool.memory.fill(0, frame * PAGE_SIZE + inPage, frame * PAGE_SIZE + inPage + n);
      this.ept.markDirty(gpn);
      this.onWrite(frame * PAGE_SIZE + inPage, n);
    });
  }

  /** Splits [gpa, gpa + length) at page boundaries: `visit(gpn, offset in page, bytes, bytes done)`. */
  private eachPage(gpa: number, length: number, visit: (gpn: number, inPage: number, n: number, done: number) => void): void {
    this.check(gpa, length);
    let done = 0;
    while (done < length) {
      const offset = gpa - this.base + done;
      const inPage = offset % PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - inPage, length - done);
      visit(Math.floor(offset / PAGE_SIZE), inPage, n, done);
      done += n;
    }
  }

  readU32(gpa: number): number {
    const b = this.read(gpa, 4);
    return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
  }

  /** The page's bytes as a view into host memory, or undefined for a page never touched (all zero). */
  page(gpn: number): Uint8Array | undefined {
    const frame = this.ept.frame(gpn);
    return frame < 0 ? undefined : this.pool.memory.subarray(frame * PAGE_SIZE, (frame + 1) * PAGE_SIZE);
  }

  /** Gives every frame back to the pool (the partition is destroyed). */
  releaseAll(): void {
    for (let gpn = 0; gpn < this.ept.pages; gpn++) {
      const frame = this.ept.unmap(gpn);
      if (frame >= 0) this.pool.release(frame);
    }
  }

  private check(gpa: number, length: number): void {
    if (!this.contains(gpa, length)) {
      throw new GuestMemoryError(
        `guest range 0x${(gpa >>> 0).toString(16)}+${length} is outside RAM 0x${this.base.toString(16)}-0x${(this.base + this.bytes - 1).toString(16)}`,
      );
    }
  }
}
