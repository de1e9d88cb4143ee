/** Time as the hypervisor sees it: injected, never read from globals, so tests and simulations control it. */
export interface Clock {
  /** Monotonic milliseconds (fractional allowed). */
  now(): number;
}

/** Guest timer frequency: mtime ticks per second, as on QEMU `virt`. */
export const MTIME_HZ = 10_000_000;
export const TICKS_PER_MS = MTIME_HZ / 1000;

/** A clock that moves only when told to: for tests and the simulator. */
export class ManualClock implements Clock {
  constructor(private ms = 0) {}
  now(): number {
    return this.ms;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}
