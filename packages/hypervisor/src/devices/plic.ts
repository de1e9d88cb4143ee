import { MIP_MEIP, MIP_SEIP, type Hart } from "@hyperfleet/riscv";
import type { MmioDevice } from "./device.js";

/** Interrupt sources, as on QEMU `virt` (source 0 does not exist). */
export const PLIC_SOURCES = 96;
const PRIORITY_MAX = 7;
const ENABLE_BASE = 0x2000;
const ENABLE_STRIDE = 0x80;
const CONTEXT_BASE = 0x20_0000;
const CONTEXT_STRIDE = 0x1000;
const WORDS = PLIC_SOURCES / 32;

export interface PlicState {
  priority: number[];
  pending: number[];
  claimed: number[];
  levels: number[];
  /** Absent in states saved before edge-triggered sources. */
  latched?: number[];
  enable: number[][];
  threshold: number[];
}

/**
 * The platform-level interrupt controller (SiFive PLIC layout, as on QEMU `virt` at 0x0C00_0000).
 * Two contexts per hart: 2h is the hart's M-mode (drives MEIP), 2h + 1 its S-mode (drives SEIP).
 * Sources are level-triggered through a gateway: a source is pending while its line is high, stops
 * being pending when claimed, and may become pending again only after the claim is completed.
 */
export class Plic implements MmioDevice {
  readonly name = "plic";
  readonly size = 0x400_0000;
  private readonly priority = new Uint32Array(PLIC_SOURCES);
  private readonly pending = new Uint32Array(WORDS);
  /** Claimed and not yet completed: the gateway holds these. */
  private readonly claimed = new Uint32Array(WORDS);
  private readonly levels = new Uint32Array(WORDS);
  /** Edges that came while their source was claimed: pending again at completion. */
  private readonly latched = new Uint32Array(WORDS);
  private readonly enable: Uint32Array[];
  private readonly threshold: Uint32Array;

  constructor(
    readonly base: number,
    private readonly harts: readonly Hart[],
  ) {
    this.enable = harts.flatMap(() => [new Uint32Array(WORDS), new Uint32Array(WORDS)]);
    this.threshold = new Uint32Array(harts.length * 2);
  }

  /** A device drives its interrupt line. */
  setLevel(source: number, level: boolean): void {
    if (source <= 0 || source >= PLIC_SOURCES) throw new RangeError(`PLIC source ${source} out of range`);
    const w = source >>> 5;
    const bit = 1 << (source & 31);
    if (level) {
      this.levels[w]! |= bit;
      if ((this.claimed[w]! & bit) === 0) this.pending[w]! |= bit;
    } else {
      this.levels[w]! &= ~bit;
      this.pending[w]! &= ~bit;
    }
    this.update();
  }

  /**
   * An edge on an edge-triggered source (VMBus): it becomes pending; if it is claimed now, it becomes
   * pending again once the claim is completed, so an edge during the handler is not lost.
   */
  trigger(source: number): void {
    if (source <= 0 || source >= PLIC_SOURCES) throw new RangeError(`PLIC source ${source} out of range`);
    const w = source >>> 5;
    const bit = 1 << (source & 31);
    if ((this.claimed[w]! & bit) === 0) this.pending[w]! |= bit;
    else this.latched[w]! |= bit;
    this.update();
  }

  load(offset: number, size: 1 | 2 | 4): number | undefined {
    if (size !== 4 || (offset & 3) !== 0) return undefined;
    if (offset < 0x1000) return offset >>> 2 < PLIC_SOURCES ? this.priority[offset >>> 2]! : 0;
    if (offset < ENABLE_BASE) {
      const w = (offset - 0x1000) >>> 2;
      return w < WORDS ? this.pending[w]! | 0 : 0;
    }
    if (offset < CONTEXT_BASE) {
      const ctx = Math.floor((offset - ENABLE_BASE) / ENABLE_STRIDE);
      const w = ((offset - ENABLE_BASE) % ENABLE_STRIDE) >>> 2;
      return ctx < this.enable.length && w < WORDS ? this.enable[ctx]![w]! | 0 : 0;
    }
    const ctx = Math.floor((offset - CONTEXT_BASE) / CONTEXT_STRIDE);
    const reg = (offset - CONTEXT_BASE) % CONTEXT_STRIDE;
    if (ctx >= this.threshold.length) return 0;
    if (reg === 0) return this.threshold[ctx]!;
    if (reg === 4) return this.claim(ctx);
    return 0;
  }

  store(offset: number, size: 1 | 2 | 4, value: number): boolean {
    if (size !== 4 || (offset & 3) !== 0) return false;
    if (offset < 0x1000) {
      const s = offset >>> 2;
      if (s > 0 && s < PLIC_SOURCES) this.priority[s] = Math.min(value >>> 0, PRIORITY_MAX);
    } else if (offset < ENABLE_BASE) {
      // pending bits are read-only
    } else if (offset < CONTEXT_BASE) {
      const ctx = Math.floor((offset - ENABLE_BASE) / ENABLE_STRIDE);
      const w = ((offset - ENABLE_BASE) % ENABLE_STRIDE) >>> 2;
      if (ctx < this.enable.length && w < WORDS) this.enable[ctx]![w] = w === 0 ? value & ~1 : value;
    } else {
      const ctx = Math.floor((offset - CONTEXT_BASE) / CONTEXT_STRIDE);
      const reg = (offset - CONTEXT_BASE) % CONTEXT_STRIDE;
      if (ctx < this.threshold.length) {
        if (reg === 0) this.threshold[ctx] = Math.min(value >>> 0, PRIORITY_MAX);
        else if (reg === 4) this.complete(ctx, value >>> 0);
      }
    }
    this.update();
    return true;
  }

  /** The best pending, enabled source above the context's threshold (lowest id on ties), or 0. */
  private best(ctx: number): number {
    let best = 0;
    let bestPriority = this.threshold[ctx]!;
    const enable = this.enable[ctx]!;
    for (let w = 0; w < WORDS; w++) {
      let bits = this.pending[w]! & enable[w]!;
      while (bits !== 0) {
        const b = 31 - Math.clz32(bits & -bits);
        bits &= bits - 1;
        const s = w * 32 + b;
        if (this.priority[s]! > bestPriority) {
          best = s;
          bestPriority = this.priority[s]!;
        }
      }
    }
    return best;
  }

  private claim(ctx: number): number {
    const s = this.best(ctx);
    if (s !== 0) {
      this.pending[s >>> 5]! &= ~(1 << (s & 31));
      this.claimed[s >>> 5]! |= 1 << (s & 31);
      this.update();
    }
    return s;
  }

  private complete(ctx: number, source: number): void {
    if (source <= 0 || source >= PLIC_SOURCES) return;
    if ((this.enable[ctx]![source >>> 5]! & (1 << (source & 31))) === 0) return; // spec: ignored if not enabled
    const bit = 1 << (source & 31);
    this.claimed[source >>> 5]! &= ~bit;
    if ((this.levels[source >>> 5]! | this.latched[source >>> 5]!) & bit) this.pending[source >>> 5]! |= bit;
    this.latched[source >>> 5]! &= ~bit;
  }

  private update(): void {
    for (let h = 0; h < this.harts.length; h++) {
      this.harts[h]!.setInterruptLine(MIP_MEIP, this.best(2 * h) !== 0);
      this.harts[h]!.setInterruptLine(MIP_SEIP, this.best(2 * h + 1) !== 0);
    }
  }

  save(): PlicState {
    return {
      priority: [...this.priority],
      pending: [...this.pending],
      claimed: [...this.claimed],
      levels: [...this.levels],
      latched: [...this.latched],
      enable: this.enable.map((e) => [...e]),
      threshold: [...this.threshold],
    };
  }

  restore(s: PlicState): void {
    this.priority.set(s.priority);
    this.pending.set(s.pending);
    this.claimed.set(s.claimed);
    this.levels.set(s.levels);
    this.latched.set(s.latched ?? []);
    s.enable.forEach((e, i) => this.enable[i]?.set(e));
    this.threshold.set(s.threshold);
    this.update();
  }
}
