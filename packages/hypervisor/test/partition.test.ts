import { describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { parseFdt } from "../src/fdt.js";
import { MemoryMap, Partition, PartitionConfigError } from "../src/partition.js";
import { asm, boot } from "./lib.js";

const RAM = MemoryMap.ram;
const UART = MemoryMap.uart;

/** Boots `code` on a 4 MiB partition. */
function machine(code: number[], options: { harts?: number; bootargs?: string; symbols?: Record<string, number>; memSize?: number } = {}) {
  const { p, clock, console } = boot(code, { vcpus: options.harts, bootargs: options.bootargs, symbols: options.symbols, memSize: options.memSize ?? 0x2000 });
  return { m: p, clock, console };
}

/** Prints `text` on the UART byte by byte, then powers off with `code`. */
function printAndPowerOff(text: string, code = 0): number[] {
  const out = [...asm.li(5, UART)];
  for (const ch of new TextEncoder().encode(text)) out.push(asm.addi(6, 0, ch), asm.sb(6, 5, 0));
  out.push(...asm.li(5, MemoryMap.test), ...asm.li(6, code === 0 ? 0x5555 : (code << 16) | 0x3333), asm.sw(6, 5, 0), asm.jal(0, 0));
  return out;
}

describe("partition - boot like QEMU virt -bios none", () => {
  it("starts every hart at the entry in M-mode with a0 = hart id and a1 = the device tree", () => {
    const { m } = machine([asm.jal(0, 0)], { harts: 3 });
    for (const h of m.harts) {
      expect(h.pc >>> 0).toBe(RAM);
      expect(h.x[10]).toBe(h.hartId);
      expect(h.x[11]! >>> 0).toBe(m.fdtAddress);
    }
    // QEMU's placement: 2 MiB-aligned just below the end of RAM
    expect(m.fdtAddress).toBe(RAM + (4 << 20) - (2 << 20));
  });

  it("the device tree in guest memory carries bootargs, memory and the harts", () => {
    const { m } = machine([asm.jal(0, 0)], { harts: 2, bootargs: "rate=max ws=8" });
    const fdt = parseFdt(m.guest.read(m.fdtAddress, 4096));
    const node = (name: string) => fdt.children!.find((c) => c.name === name) as ReturnType<typeof parseFdt>;
    expect(new TextDecoder().decode(node("chosen").props.bootargs)).toBe("rate=max ws=8\0");
    const reg = new DataView(node("memory@80000000").props.reg!.buffer);
    expect(reg.getUint32(4)).toBe(RAM);
    expect(reg.getUint32(12)).toBe(4 << 20);
    expect(node("cpus").children).toHaveLength(2);
  });

  it("streams UART output and powers off with the test device's code", () => {
    const { m, console } = machine(printAndPowerOff("hi!\n", 5));
    for (let i = 0; i < 10 && !m.halted; i++) m.step(1000);
    expect(console()).toBe("hi!\n");
    expect(m.halted).toEqual({ code: 5, reason: "poweroff with failure code 5" });
  });

  it("stops on tohost: 1 passes, an odd value names the failed test", () => {
    const tohost = RAM + 0x1000;
    const prog = (v: number) => [...asm.li(5, tohost), ...asm.li(6, v), asm.sw(6, 5, 0), asm.jal(0, 0)];
    const pass = machine(prog(1), { symbols: { tohost } });
    pass.m.step(100);
    expect(pass.m.halted).toEqual({ code: 0, reason: "tohost: pass" });
    const fail = machine(prog((9 << 1) | 1), { symbols: { tohost } });
    fail.m.step(100);
    expect(fail.m.halted).toEqual({ code: 1, reason: "tohost: test 9 failed" });
    // the write itself reached memory
    expect(fail.m.guest.readU32(RAM + 0x1000)).toBe(19);
  });

  it("ignores tohost writes without a tohost symbol", () => {
    const { m } = machine([...asm.li(5, RAM + 0x1000), asm.addi(6, 0, 1), asm.sw(6, 5, 0), asm.jal(0, 0)]);
    m.step(100);
    expect(m.halted).toBeUndefined();
  });

  it("a hart in WFI sleeps until its timer compare, then wakes on guest time", () => {
    const clint = MemoryMap.clint;
    const code = [
      ...asm.li(5, clint + 0x4000),
      ...asm.li(6, 10_000), // mtimecmp = 1 ms of guest time
      asm.sw(6, 5, 0),
      asm.sw(0, 5, 4),
      asm.addi(7, 0, 0x80),
      asm.csrrs(0, 0x304, 7), // mie.MTIE, with mstatus.MIE off: WFI wakes but no trap is taken
      asm.wfi(),
      asm.addi(10, 0, 42),
      asm.jal(0, 0),
    ];
    const { m, clock } = machine(code);
    let r = m.step(1000);
    expect(r.idle).toBe(false);
    r = m.step(1000);
    expect(r.idle).toBe(true);
    expect(r.wakeAtTicks).toBe(10_000);
    expect(m.harts[0]!.x[10]).toBe(0);
    clock.advance(0.5);
    expect(m.step(1000).idle).toBe(true);
    clock.advance(0.5);
    expect(m.step(1000).idle).toBe(false);
    expect(m.harts[0]!.x[10]).toBe(42);
  });

  it("reset through the test device reboots the image; RAM beyond it keeps its contents", () => {
    const test = MemoryMap.test;
    const resetBlock = [...asm.li(5, test), ...asm.li(6, 0x7777), asm.sw(6, 5, 0), asm.jal(0, 0)];
    const offBlock = [...asm.li(5, test), ...asm.li(6, 0x5555), asm.sw(6, 5, 0), asm.jal(0, 0)];
    const counter = RAM + 0x3000; // outside the image (memSize 0x2000): survives a reboot
    const prog = [
      ...asm.li(5, counter),
      asm.lw(6, 5, 0),
      asm.addi(6, 6, 1),
      asm.sw(6, 5, 0),
      asm.addi(7, 0, 2),
      asm.beq(6, 7, 4 * (1 + resetBlock.length)), // second boot: power off
      ...resetBlock,
      ...offBlock,
    ];
    const { m } = machine(prog);
    for (let i = 0; i < 10 && !m.halted; i++) m.step(1000);
    expect(m.halted).toEqual({ code: 0, reason: "poweroff" });
    expect(m.guest.readU32(RAM + 0x3000)).toBe(2);
  });

  it("refuses an ELF that does not fit in RAM and bad configurations", () => {
    expect(() => machine([0], { memSize: 8 << 20 })).toThrow(/does not fit in RAM/);
    expect(() => new Partition({ memoryBytes: 1000, clock: new ManualClock() })).toThrow(PartitionConfigError);
    expect(() => new Partition({ memoryBytes: 1 << 20, vcpus: 5, clock: new ManualClock() })).toThrow(/vCPU count 5/);
  });
});
