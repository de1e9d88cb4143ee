/** A memory-mapped device on the machine's bus. Offsets are relative to the device's base address. */
export interface MmioDevice {
  readonly name: string;
  readonly base: number;
  readonly size: number;
  /** Returns the value, or undefined when the offset/size is not a register (the hart gets an access fault). */
  load(offset: number, size: 1 | 2 | 4): number | undefined;
  /** Returns false when the offset/size is not a register. */
  store(offset: number, size: 1 | 2 | 4, value: number): boolean;
}
