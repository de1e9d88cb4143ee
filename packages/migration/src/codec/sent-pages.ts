/**
 * The source's memory of what it sent: the last-sent copy of guest pages, so that a page resent in a
 * later round can go as a delta against it. Bounded by a byte budget (default 64 MiB); when full, a
 * page is evicted with the CLOCK algorithm (a second-chance approximation of LRU: `get` and `set` set a
 * page's reference bit, the hand clears bits and evicts the first page whose bit is already clear).
 *
 * Storage is a few slabs of `pageSize`-byte slots, allocated as needed up to the budget, and typed
 * arrays for the slot metadata; the only per-page object is the Map entry from page number to slot.
 *
 * Contract (what keeps deltas correct): a page held here must be exactly the page the receiver holds
 * for that page number once the batches sent so far have been applied. So the sender
 * - records a page (`set`) with the bytes it encoded, not a later read of guest memory;
 * - after a batch that was not delivered (or whose delivery is unknown), `delete`s its pages (or calls
 *   `clear()`) before sending them again, so they go in full;
 * - never holds a page the receiver lost (a receiver restart means `clear()`).
 * A page missing here only costs bandwidth (it is sent in full); a wrong page would corrupt the guest,
 * which the batch format's per-delta checksum detects.
 */
import { CodecError } from "./errors.js";

export const SENT_PAGES_BUDGET_BYTES_DEFAULT = 64 * 1024 * 1024;
const CHUNK_PAGES = 256;

export interface SentPagesOptions {
  /** Most bytes of page copies held (default 64 MiB). 0 disables the cache (nothing is kept). */
  budgetBytes?: number;
  /** Page length in bytes (default 4096). */
  pageSize?: number;
}

export interface SentPagesStats {
  /** Pages held now. */
  pages: number;
  /** Most pages the budget allows. */
  capacityPages: number;
  /** Bytes of page copies held now (pages × page size). */
  bytesHeld: number;
  /** Bytes of slab memory allocated (grows in 256-page steps up to the budget; `clear` frees it). */
  bytesAllocated: number;
  budgetBytes: number;
  /** `get` calls that found the page / did not (cumulative; `clear` does not reset them). */
  hits: number;
  misses: number;
  /** Pages dropped to make room (cumulative). */
  evictions: number;
}

const FREE = 0;
const HELD = 1;
const REFERENCED = 2;

export class SentPages {
  readonly pageSize: number;
  readonly budgetBytes: number;
  readonly capacityPages: number;
  private readonly slotOf = new Map<number, number>();
  private readonly slotGpn: Float64Array;
  private readonly slotState: Uint8Array;
  private readonly freeSlots: Int32Array;
  private freeCount = 0;
  /** Slots [0, slotsInUse) have memory; those not in `freeSlots` hold a page. */
  private slotsInUse = 0;
  private views: Uint8Array[] = [];
  private bytesAllocated = 0;
  private hand = 0;
  private hits = 0;
  private misses = 0;
  private evictions = 0;

  constructor(options: SentPagesOptions = {}) {
    const pageSize = options.pageSize ?? 4096;
    const budgetBytes = options.budgetBytes ?? SENT_PAGES_BUDGET_BYTES_DEFAULT;
    if (!Number.isInteger(pageSize) || pageSize <= 0) throw new CodecError(`SentPages: bad page size ${pageSize}`);
    if (!Number.isSafeInteger(budgetBytes) || budgetBytes < 0) throw new CodecError(`SentPages: bad budget ${budgetBytes} bytes`);
    this.pageSize = pageSize;
    this.budgetBytes = budgetBytes;
    this.capacityPages = Math.floor(budgetBytes / pageSize);
    this.slotGpn = new Float64Array(this.capacityPages);
    this.slotState = new Uint8Array(this.capacityPages);
    this.freeSlots = new Int32Array(this.capacityPages);
  }

  get size(): number {
    return this.slotOf.size;
  }

  /** Whether page `gpn` is held (does not count as a hit or miss, does not set its reference bit). */
  has(gpn: number): boolean {
    return this.slotOf.has(gpn);
  }

  /**
   * The last-sent copy of page `gpn`, or undefined. The result is a view of internal storage: it stays
   * valid until the next `set`, `delete` or `clear` (any of which may reuse its slot), so the caller
   * uses it at once (encodes its delta) and does not keep it.
   */
  get(gpn: number): Uint8Array | undefined {
    const slot = this.slotOf.get(gpn);
    if (slot === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.slotState[slot] = REFERENCED;
    return this.views[slot]!;
  }

  /**
   * Records `bytes` (exactly `pageSize` long; copied) as the last-sent content of page `gpn`, evicting
   * another page if the budget is full. With a zero budget nothing is kept.
   */
  set(gpn: number, bytes: Uint8Array): void {
    if (!Number.isSafeInteger(gpn) || gpn < 0) throw new CodecError(`SentPages: bad page number ${gpn}`);
    if (bytes.length !== this.pageSize) throw new CodecError(`SentPages: page ${gpn} has ${bytes.length} bytes, expected ${this.pageSize}`);
    if (this.capacityPages === 0) return;
    let slot = this.slotOf.get(gpn);
    if (slot === undefined) {
      slot = this.takeSlot();
      this.slotOf.set(gpn, slot);
      this.slotGpn[slot] = gpn;
    }
    this.slotState[slot] = REFERENCED;
    this.views[slot]!.set(bytes);
  }

  /** Forgets page `gpn` (it will be sent in full next time). Returns whether it was held. */
  delete(gpn: number): boolean {
    const slot = this.slotOf.get(gpn);
    if (slot === undefined) return false;
    this.slotOf.delete(gpn);
    this.slotState[slot] = FREE;
    this.freeSlots[this.freeCount++] = slot;
    return true;
  }

  /**
   * Allocates the whole budget now and touches every page of it, so that recording pages later pays
   * no first-touch page faults (on a virtual machine host one costs ~13 µs per 4 KiB, more than
   * copying the page). A node keeps one reserved cache and reuses it across migrations (`forget`).
   */
  reserve(): void {
    while (this.views.length < this.capacityPages) this.growSlab();
    for (const view of this.views) view[0] = 0;
  }

  /** Forgets every page but keeps the slab memory for the next migration. Counters are kept. */
  forget(): void {
    this.slotOf.clear();
    this.slotState.fill(FREE);
    this.freeCount = 0;
    this.slotsInUse = 0;
    this.hand = 0;
  }

  /** Forgets every page and frees the slab memory. Counters are kept. */
  clear(): void {
    this.slotOf.clear();
    this.slotState.fill(FREE);
    this.freeCount = 0;
    this.slotsInUse = 0;
    this.views = [];
    this.bytesAllocated = 0;
    this.hand = 0;
  }

  stats(): SentPagesStats {
    return {
      pages: this.slotOf.size,
      capacityPages: this.capacityPages,
      bytesHeld: this.slotOf.size * this.pageSize,
      bytesAllocated: this.bytesAllocated,
      budgetBytes: this.budgetBytes,
      hits: this.hits,
      misses: this.misses,
      evictions: this.evictions,
    };
  }

  /** A slot for a new page: a freed one, else fresh memory within the budget, else an evicted one. */
  private takeSlot(): number {
    if (this.freeCount > 0) return this.freeSlots[--this.freeCount]!;
    if (this.slotsInUse < this.capacityPages) {
      if (this.slotsInUse === this.views.length) this.growSlab();
      return this.slotsInUse++;
    }
    // Full: every slot holds a page. Two sweeps at most: the first clears every reference bit.
    for (let step = 0; step < 2 * this.capacityPages; step++) {
      const slot = this.hand;
      this.hand = slot + 1 === this.capacityPages ? 0 : slot + 1;
      if (this.slotState[slot] === REFERENCED) {
        this.slotState[slot] = HELD;
        continue;
      }
      this.slotOf.delete(this.slotGpn[slot]!);
      this.evictions++;
      return slot;
    }
    throw new CodecError("SentPages: no slot to evict (state corrupt)");
  }

  private growSlab(): void {
    const pages = Math.min(CHUNK_PAGES, this.capacityPages - this.views.length);
    const slab = new Uint8Array(pages * this.pageSize);
    for (let i = 0; i < pages; i++) this.views.push(slab.subarray(i * this.pageSize, (i + 1) * this.pageSize));
    this.bytesAllocated += slab.length;
  }
}
