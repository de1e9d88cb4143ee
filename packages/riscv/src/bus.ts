/**
 * What the hart sees of the machine below it. The hart is pure: guest-physical memory and MMIO come
 * through this interface, so the hypervisor can put its EPT (guest page -> host frame, R/W/X) under it.
 */

/** The kind of access, used for translation, permission checks and the resulting exception. */
export const enum Access {
  Read = 0,
  Write = 1,
  Execute = 2,
}

/** `resolvePage` result: the page is device memory; use `mmioLoad` / `mmioStore` for every access. */
export const PAGE_MMIO = -1;
/** `resolvePage` result: nothing is mapped there (or the access is refused): an access-fault exception. */
export const PAGE_FAULT = -2;
/**
 * `resolvePage` result: the bus wants the hart to stop before this instruction (for example an EPT
 * violation the hypervisor handles outside the hart). The instruction is retried when `run` is called again.
 */
export const PAGE_EXIT = -3;

/** `mmioLoad` result for an access no device answers: the hart raises an access fault. Not an int32. */
export const BUS_FAULT = 0x1_0000_0000;

export interface PhysicalBus {
  /**
   * Host memory that guest frames live in (usually over a SharedArrayBuffer). `byteOffset` must be a
   * multiple of 4096 and `byteLength` a multiple of 4096. The host is little-endian, like RISC-V.
   */
  readonly memory: Uint8Array;
  /**
   * Resolves guest-physical page number `ppn` (address >>> 12, up to 22 bits) for an access.
   * Returns the byte offset in `memory` of the host frame backing it (a multiple of 4096), or one of
   * PAGE_MMIO, PAGE_FAULT, PAGE_EXIT.
   *
   * Contract: harts cache the result per page (their TLB). Whoever changes what `resolvePage` answers
   * for a page (remaps it, takes away W for dirty logging) must call `Hart.flushTlb()` on every hart
   * of the partition before the change may be relied on. A Write access may have side effects (for
   * example, marking the page dirty and restoring W: the EPT violation handled in place).
   */
  resolvePage(ppn: number, access: Access): number;
  /** Reads `size` bytes of device memory at physical address `pa`; BUS_FAULT if nothing answers. */
  mmioLoad(pa: number, size: 1 | 2 | 4): number;
  /** Writes `size` bytes of device memory; false if nothing answers (the hart raises an access fault). */
  mmioStore(pa: number, size: 1 | 2 | 4, value: number): boolean;
}
