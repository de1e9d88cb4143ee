/**
 * A minimal machine for hart tests: RAM at 0x8000_0000, a test MMIO page at 0x1000_0000 that records
 * stores and answers loads, and nothing else (everything else is an access fault).
 */
import { Access, BUS_FAULT, PAGE_FAULT, PAGE_MMIO, type PhysicalBus } from "../src/bus.js";
import { Hart, type Exit, type HartOptions } from "../src/hart.js";

export const RAM_BASE = 0x8000_0000;
export const MMIO_BASE = 0x1000_0000;

export class TestBus implements PhysicalBus {
  readonly memory: Uint8Array;
  readonly words: Int32Array;
  readonly mmioStores: { pa: number; size: number; value: number }[] = [];
  mmioValue = 0x1234_5678;
  /** Pages (ppn) the bus refuses writes to, for EPT-like tests. */
  readonly readOnly = new Set<number>();
  resolves = 0;

  constructor(readonly ramBytes = 1 << 20) {
    this.memory = new Uint8Array(ramBytes);
    this.words = new Int32Array(this.memory.buffer);
  }

  resolvePage(ppn: number, access: Access): number {
    this.resolves++;
    const pa = ppn * 4096;
    if (pa >= RAM_BASE && pa < RAM_BASE + this.ramBytes) {
      if (access === Access.Write && this.readOnly.has(ppn)) return PAGE_FAULT;
      return pa - RAM_BASE;
    }
    if (pa === MMIO_BASE) return PAGE_MMIO;
    return PAGE_FAULT;
  }

  mmioLoad(pa: number, size: 1 | 2 | 4): number {
    if (pa - MMIO_BASE >= 0x100) return BUS_FAULT;
    return size === 4 ? this.mmioValue : this.mmioValue & (size === 2 ? 0xffff : 0xff);
  }

  mmioStore(pa: number, size: 1 | 2 | 4, value: number): boolean {
    if (pa - MMIO_BASE >= 0x100) return false;
    this.mmioStores.push({ pa, size, value });
    return true;
  }

  /** Writes instruction words at a physical RAM address. */
  load(pa: number, words: readonly number[]): void {
    for (let i = 0; i < words.length; i++) this.words[(pa - RAM_BASE) / 4 + i] = words[i]! | 0;
  }

  read32(pa: number): number {
    return this.words[(pa - RAM_BASE) >>> 2]!;
  }

  write32(pa: number, value: number): void {
    this.words[(pa - RAM_BASE) >>> 2] = value | 0;
  }
}

export interface Setup {
  bus: TestBus;
  hart: Hart;
}

/** A hart with `program` at RAM_BASE, reset to run it in M-mode. */
export function setup(program: readonly number[], options: Partial<HartOptions> = {}): Setup {
  const bus = new TestBus();
  bus.load(RAM_BASE, program);
  const hart = new Hart({ bus, ...options });
  hart.reset(RAM_BASE);
  return { bus, hart };
}

/** Runs `count` instructions exactly (asserting nothing stopped it early). */
export function step(hart: Hart, count: number): Exit {
  return hart.run(count);
}
