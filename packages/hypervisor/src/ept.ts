/**
 * The EPT: second-level translation of a child partition's guest-physical RAM pages to host frames,
 * with R/W/X permissions, and the dirty log built on write-protection.
 *
 * One int32 entry per guest page, in a SharedArrayBuffer so that the root and the partition's VM
 * worker see the same table:
 *
 *   bits 0..2  R, W, X granted to the guest
 *   bit  3     WP: write-protected for dirty logging (the guest still has W; the first write exits)
 *   bit  4     present
 *   bits 12..  host frame number in the FramePool
 *
 * The dirty bitmap has one bit per guest page, also shared.
 */
import { PAGE_SHIFT } from "./frame-pool.js";

export const EPT_R = 1;
export const EPT_W = 2;
export const EPT_X = 4;
export const EPT_RWX = 7;
export const EPT_WP = 8;
export const EPT_PRESENT = 16;

export interface EptShared {
  table: SharedArrayBuffer;
  dirty: SharedArrayBuffer;
  /** [dirty logging on (0/1), write-protect faults taken] */
  state: SharedArrayBuffer;
}

const LOGGING = 0;
const WP_FAULTS = 1;

export class Ept {
  readonly pages: number;
  readonly table: Int32Array;
  readonly dirty: Int32Array;
  private readonly state: Int32Array;

  constructor(pagesOrShared: number | EptShared) {
    if (typeof pagesOrShared === "number") {
      this.pages = pagesOrShared;
      this.table = new Int32Array(new SharedArrayBuffer(this.pages * 4));
      this.dirty = new Int32Array(new SharedArrayBuffer(Math.ceil(this.pages / 32) * 4));
      this.state = new Int32Array(new SharedArrayBuffer(8));
    } else {
      this.table = new Int32Array(pagesOrShared.table);
      this.pages = this.table.length;
      this.dirty = new Int32Array(pagesOrShared.dirty);
      this.state = new Int32Array(pagesOrShared.state);
    }
  }

  get shared(): EptShared {
    return {
      table: this.table.buffer as SharedArrayBuffer,
      dirty: this.dirty.buffer as SharedArrayBuffer,
      state: this.state.buffer as SharedArrayBuffer,
    };
  }

  /** Maps guest page `gpn` to host frame `frame` with permissions `rwx`. */
  map(gpn: number, frame: number, rwx: number): void {
    this.check(gpn);
    let entry = (frame << PAGE_SHIFT) | EPT_PRESENT | (rwx & EPT_RWX);
    if (this.logging && (rwx & EPT_W) !== 0) entry |= EPT_WP;
    Atomics.store(this.table, gpn, entry);
  }

  /** Removes a mapping; returns the frame it had, or -1. */
  unmap(gpn: number): number {
    this.check(gpn);
    const old = Atomics.exchange(this.table, gpn, 0);
    return old & EPT_PRESENT ? old >>> PAGE_SHIFT : -1;
  }

  /** Changes the permissions of a present page (the frame stays). */
  protect(gpn: number, rwx: number): void {
    this.check(gpn);
    const e = Atomics.load(this.table, gpn);
    if ((e & EPT_PRESENT) === 0) return;
    Atomics.store(this.table, gpn, (e & ~(EPT_RWX | EPT_WP)) | (rwx & EPT_RWX) | (this.logging && rwx & EPT_W ? EPT_WP : 0));
  }

  entry(gpn: number): number {
    return Atomics.load(this.table, gpn);
  }

  /** The host frame of a present page, or -1. */
  frame(gpn: number): number {
    const e = Atomics.load(this.table, gpn);
    return e & EPT_PRESENT ? e >>> PAGE_SHIFT : -1;
  }

  get presentPages(): number {
    let n = 0;
    for (let i = 0; i < this.pages; i++) if (this.table[i]! & EPT_PRESENT) n++;
    return n;
  }

  // ---------------------------------------------------------------------------------------------
  // Dirty logging
  //
  // Contract:
  // - startDirtyLog() clears the bitmap and write-protects every present writable page. From then on a
  //   page's bit is set by the first guest write after it was last protected (the EPT violation sets
  //   the bit and restores W) and by every write the root makes (markDirty).
  // - getAndClearDirtyLog() returns the bits set since the last call (or since start) and clears them,
  //   write-protecting those pages again. It must run where no vCPU of the partition executes (the VM
  //   worker calls it between batches and then flushes its harts' TLBs, which may hold W for those
  //   pages): a vCPU write therefore lands either in the returned bitmap or in the next one, never in
  //   neither. Root writes race safely: their bit is set with an atomic OR.
  // - A caller that fails to use a returned bitmap must give it back with mergeDirtyLog() so that no
  //   page is lost.

  get logging(): boolean {
    return Atomics.load(this.state, LOGGING) !== 0;
  }

  /** Write-protect faults taken since the EPT was made. */
  get writeProtectFaults(): number {
    return Atomics.load(this.state, WP_FAULTS);
  }

  startDirtyLog(): void {
    Atomics.store(this.state, LOGGING, 1);
    this.dirty.fill(0);
    for (let i = 0; i < this.pages; i++) {
      const e = this.table[i]!;
      if (e & EPT_PRESENT && e & EPT_W) Atomics.or(this.table, i, EPT_WP);
    }
  }

  stopDirtyLog(): void {
    Atomics.store(this.state, LOGGING, 0);
    for (let i = 0; i < this.pages; i++) if (this.table[i]! & EPT_WP) Atomics.and(this.table, i, ~EPT_WP);
  }

  getAndClearDirtyLog(): Int32Array {
    const out = new Int32Array(this.dirty.length);
    for (let w = 0; w < this.dirty.length; w++) {
      if (Atomics.load(this.dirty, w) === 0) continue;
      const bits = Atomics.exchange(this.dirty, w, 0);
      out[w] = bits;
      for (let b = 0; b < 32; b++) {
        if (((bits >>> b) & 1) === 0) continue;
        const gpn = w * 32 + b;
        if (this.table[gpn]! & EPT_W) Atomics.or(this.table, gpn, EPT_WP);
      }
    }
    return out;
  }

  /** Gives back bits from a bitmap that was not used (a failed migration round). */
  mergeDirtyLog(bitmap: Int32Array): void {
    for (let w = 0; w < this.dirty.length; w++) if (bitmap[w]) Atomics.or(this.dirty, w, bitmap[w]!);
  }

  /** Sets a page's dirty bit (a write by the root, or a first write through a fault). */
  markDirty(gpn: number): void {
    Atomics.or(this.dirty, gpn >>> 5, 1 << (gpn & 31));
  }

  /**
   * A guest write hit a write-protected page: log it and give W back. Returns the entry after.
   * Called by the partition's bus in the VM worker (the EPT violation handled in place).
   */
  writeFault(gpn: number): number {
    this.markDirty(gpn);
    Atomics.add(this.state, WP_FAULTS, 1);
    return Atomics.and(this.table, gpn, ~EPT_WP) & ~EPT_WP;
  }

  private check(gpn: number): void {
    if (!Number.isInteger(gpn) || gpn < 0 || gpn >= this.pages) throw new RangeError(`guest page ${gpn} outside the EPT (0..${this.pages - 1})`);
  }
}

/** The page numbers whose bits are set in a dirty bitmap, in increasing order. */
export function dirtyPages(bitmap: Int32Array): number[] {
  const out: number[] = [];
  for (let w = 0; w < bitmap.length; w++) {
    let bits = bitmap[w]! >>> 0;
    while (bits !== 0) {
      out.push(w * 32 + 31 - Math.clz32(bits & -bits));
      bits = (bits & (bits - 1)) >>> 0;
    }
  }
  return out;
}

/** Number of set bits in a dirty bitmap. */
export function countDirty(bitmap: Int32Array): number {
  let n = 0;
  for (const w of bitmap) {
    let v = w >>> 0;
    while (v) {
      v &= v - 1;
      n++;
    }
  }
  return n;
}
