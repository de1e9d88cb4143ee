/** Helpers for partition tests: hand-assembled guests booted in-process on a ManualClock. */
import { parseElf } from "@hyperfleet/riscv";
import * as asm from "../../riscv/test/asm.js";
import { writeElf } from "../../riscv/test/elf-writer.js";
import { ManualClock } from "../src/clock.js";
import type { FramePool } from "../src/frame-pool.js";
import { MemoryMap, Partition, type BootMode, type PartitionConfig } from "../src/partition.js";

export { asm };
export const RAM = MemoryMap.ram;

export interface Booted {
  p: Partition;
  clock: ManualClock;
  console: () => string;
}

export interface BootOptions {
  memoryBytes?: number;
  vcpus?: number;
  boot?: BootMode;
  pool?: FramePool;
  memSize?: number;
  address?: number;
  bootargs?: string;
  symbols?: Record<string, number>;
  onEptViolation?: PartitionConfig["onEptViolation"];
}

/** Boots `code` (instruction words) at the start of RAM (or `address`). */
export function boot(code: number[], options: BootOptions = {}): Booted {
  const clock = new ManualClock();
  const out: number[] = [];
  const p = new Partition({
    memoryBytes: options.memoryBytes ?? 4 << 20,
    vcpus: options.vcpus ?? 1,
    boot: options.boot ?? "bare",
    bootargs: options.bootargs ?? "",
    clock,
    pool: options.pool,
    onConsole: (b) => out.push(...b),
    onEptViolation: options.onEptViolation,
  });
  const address = options.address ?? RAM;
  p.load(parseElf(writeElf({ entry: address, address, code, memSize: options.memSize ?? 0x1000, symbols: options.symbols })));
  return { p, clock, console: () => new TextDecoder().decode(Uint8Array.from(out)) };
}

/** A trap handler that records mcause/mtval in x30/x31, counts traps in x29 and skips the instruction. */
export function skipHandler(): number[] {
  return [
    asm.csrrs(30, 0x342, 0), // mcause
    asm.csrrs(31, 0x343, 0), // mtval
    asm.addi(29, 29, 1),
    asm.csrrs(28, 0x341, 0), // mepc
    asm.addi(28, 28, 4),
    asm.csrrw(0, 0x341, 28),
    asm.mret(),
  ];
}

/** Code that installs `handlerAddress` in mtvec (uses x5). */
export function setMtvec(handlerAddress: number): number[] {
  return [...asm.li(5, handlerAddress), asm.csrrw(0, 0x305, 5)];
}
