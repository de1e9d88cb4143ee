import { MIP_MSIP, MIP_MTIP, type Hart } from "@hyperfleet/riscv";

export interface ClintState {
  mtimecmp: number[];
  msip: boolean[];
}

/** mtimecmp after reset on QEMU `virt`: 0, so the timer line is high from boot until the guest sets it. */
export const MTIMECMP_RESET_QEMU = 0;
/** mtimecmp as SBI firmware leaves it for the kernel: as far as it goes (no timer pending). */
export const MTIMECMP_DISARMED = 2 ** 64;
import type { MmioDevice } from "./device.js";

const MTIMECMP_BASE = 0x4000;
const MTIME = 0xbff8;
const TWO_32 = 4294967296;

/**
 * The core-local interruptor (SiFive CLINT layout, as on QEMU `virt` at 0x0200_0000): per-hart msip and
 * 64-bit mtimecmp, and the 64-bit mtime counter that `mtime()` supplies (10 MHz guest time). Drives MSIP
 * and the timer line on the harts.
 */
export class Clint implements MmioDevice {
  readonly name = "clint";
  readonly size = 0x10000;
  private readonly mtimecmp: number[];

  /**
   * `timerBit` is the mip bit the compare drives: MTIP for bare-metal guests; STIP when the hypervisor
   * provides the SBI and the guest kernel, in S-mode, sets its timer through it.
   */
  constructor(
    readonly base: number,
    private readonly harts: readonly Hart[],
    readonly mtime: () => number,
    private readonly timerBit = MIP_MTIP,
    resetCompare = MTIMECMP_RESET_QEMU,
  ) {
    this.mtimecmp = harts.map(() => resetCompare);
  }

  /** Raises or lowers MTIP on every hart for the current time. Called before each batch. */
  update(): void {
    const now = this.mtime();
    for (let i = 0; i < this.harts.length; i++) {
      this.harts[i]!.setInterruptLine(this.timerBit, now >= this.mtimecmp[i]!);
    }
  }

  /** The earliest compare still in the future (the next instant a timer line rises), Infinity if none. */
  nextDeadline(): number {
    const now = this.mtime();
    let next = Infinity;
    for (const c of this.mtimecmp) if (c > now && c < next) next = c;
    return next;
  }

  /** Arms hart's compare (an MMIO write, or the SBI's set_timer) and updates its timer line at once. */
  setTimer(hart: number, compare: number): void {
    this.mtimecmp[hart] = compare;
    this.harts[hart]!.setInterruptLine(this.timerBit, this.mtime() >= compare);
  }

  save(): ClintState {
    return {
      mtimecmp: [...this.mtimecmp],
      msip: this.harts.map((h) => (h.mipLines & MIP_MSIP) !== 0),
    };
  }

  restore(s: ClintState): void {
    s.mtimecmp.forEach((v, i) => (this.mtimecmp[i] = v));
    s.msip.forEach((v, i) => this.harts[i]?.setInterruptLine(MIP_MSIP, v));
    this.update();
  }

  load(offset: number, size: 1 | 2 | 4): number | undefined {
    if (size !== 4) return undefined;
    if (offset < MTIMECMP_BASE) {
      const hart = offset >>> 2;
      if (hart >= this.harts.length) return 0;
      return (this.harts[hart]!.mipLines & MIP_MSIP) !== 0 ? 1 : 0;
    }
    if (offset >= MTIMECMP_BASE && offset < MTIME) {
      const hart = (offset - MTIMECMP_BASE) >>> 3;
      if (hart >= this.harts.length) return 0;
      return word(this.mtimecmp[hart]!, (offset & 4) !== 0);
    }
    if (offset === MTIME || offset === MTIME + 4) return word(this.mtime(), offset === MTIME + 4);
    return 0;
  }

  store(offset: number, size: 1 | 2 | 4, value: number): boolean {
    if (size !== 4) return false;
    if (offset < MTIMECMP_BASE) {
      const hart = offset >>> 2;
      if (hart < this.harts.length) this.harts[hart]!.setInterruptLine(MIP_MSIP, (value & 1) !== 0);
      return true;
    }
    if (offset >= MTIMECMP_BASE && offset < MTIME) {
      const hart = (offset - MTIMECMP_BASE) >>> 3;
      if (hart >= this.harts.length) return true;
      const old = this.mtimecmp[hart]!;
      const lo = (offset & 4) === 0 ? value >>> 0 : lowWord(old);
      const hi = (offset & 4) !== 0 ? value >>> 0 : highWord(old);
      this.setTimer(hart, hi * TWO_32 + lo);
      return true;
    }
    // mtime is read-only here: guest time follows the host clock
    return true;
  }
}

function word(v: number, high: boolean): number {
  return (high ? highWord(v) : lowWord(v)) | 0;
}

// 64-bit values are doubles: exact below 2^53; an all-ones compare (2^64 - 1) rounds to 2^64 and reads back
// as all ones.
function lowWord(v: number): number {
  return v >= 2 ** 64 ? 0xffffffff : v % TWO_32;
}

function highWord(v: number): number {
  return v >= 2 ** 64 ? 0xffffffff : Math.floor(v / TWO_32);
}
