import { describe, expect, it } from "vitest";
import { Csr } from "../src/csr.js";
import { Hart } from "../src/hart.js";
import * as a from "./asm.js";
import { csr, installHandlers, machine, M_HANDLER, pcOf } from "./helpers.js";
import { RAM_BASE } from "./machine.js";

/**
 * Runs code at P = RAM_BASE (addi x1, x1, 1), then `patch` (instructions that overwrite P with
 * x6 = addi x1, x1, 100), then jumps back to P once more. x10 = P, x5 is the "second time" flag.
 */
function selfModifying(patch: readonly number[], newWord = a.addi(1, 1, 100)) {
  const program = [
    a.addi(1, 1, 1), // P
    a.addi(0, 0, 0), // replaced below by the bne that ends the second pass
    ...a.li(6, newWord),
  ];
  const liLength = program.length - 2;
  program.push(...patch, a.addi(5, 0, 1), a.jal(0, -4 * (program.length + patch.length + 1)), a.addi(0, 0, 0));
  // second time: skip li (liLength words), the patch, addi x5 and jal to land on the final nop
  program[1] = a.bne(5, 0, 4 * (1 + liLength + patch.length + 2));
  const s = machine(program);
  s.hart.x[10] = RAM_BASE;
  const count = 2 + liLength + patch.length + 2 + 2; // first pass, then P and the taken bne
  s.hart.run(count);
  expect(pcOf(s.hart)).toBe(RAM_BASE + 4 * (program.length - 1));
  return s;
}

describe("decode cache - self-modifying code", () => {
  it("the control run without a patch executes the old instruction twice", () => {
    const { hart } = selfModifying([a.addi(0, 0, 0)]);
    expect(hart.x[1]).toBe(2);
  });

  it("a SW over an instruction that already ran is seen the next time it runs", () => {
    const { hart } = selfModifying([a.sw(6, 10, 0)]);
    expect(hart.x[1]).toBe(101);
  });

  it("an SB changing one byte of an executed instruction is seen", () => {
    // byte 3 of `addi x1, x1, 1` holds imm[11:4]: 0x06 makes the immediate 0x061 = 97
    const { hart } = selfModifying([a.addi(7, 0, 6), a.sb(7, 10, 3)]);
    expect(hart.x[1]).toBe(1 + 97);
  });

  it("an AMOSWAP over an executed instruction is seen", () => {
    const { hart } = selfModifying([a.amoswap(0, 10, 6)]);
    expect(hart.x[1]).toBe(101);
  });

  it("a store to a page written before it held code, then executed, then rewritten, is seen", () => {
    const CODE2 = RAM_BASE + 0x6000;
    // 1) write `addi x1, x1, 1; jalr x0, x2, 0` to CODE2 with stores (fills the write translation)
    // 2) call CODE2, 3) store `addi x1, x1, 100` over it, 4) call CODE2 again
    const program = [
      ...a.li(6, a.addi(1, 1, 1)), a.sw(6, 10, 0),
      ...a.li(6, a.jalr(0, 2, 0)), a.sw(6, 10, 4),
      a.jalr(2, 10, 0),
      ...a.li(6, a.addi(1, 1, 100)), a.sw(6, 10, 0),
      a.jalr(2, 10, 0),
      a.addi(0, 0, 0),
    ];
    const s = machine(program);
    s.hart.x[10] = CODE2;
    s.hart.run(program.length - 1 + 4); // two calls of two instructions each
    expect(pcOf(s.hart)).toBe(RAM_BASE + 4 * (program.length - 1));
    expect(s.hart.x[1]).toBe(101);
  });

  it("a store by another hart over code this hart executed is seen", () => {
    const s = machine([a.addi(1, 1, 1), a.jal(0, -4)]);
    const other = new Hart({ bus: s.bus, hartId: 1, decodeCache: s.hart.decodeCache });
    other.reset(RAM_BASE + 0x2000);
    installHandlers(s.bus, other);
    s.bus.load(RAM_BASE + 0x2000, [a.sw(6, 10, 0)]);
    other.x[10] = RAM_BASE;
    other.x[6] = a.addi(1, 1, 100);
    s.hart.run(4); // two loop iterations
    expect(s.hart.x[1]).toBe(2);
    other.run(1);
    s.hart.run(2);
    expect(s.hart.x[1]).toBe(102);
  });

  it("executing the same code again decodes nothing new", () => {
    const { hart } = machine([a.addi(1, 1, 1), a.addi(2, 2, 1), a.jal(0, -8)]);
    hart.run(3);
    const decodes = hart.decodeCache.decodes;
    expect(decodes).toBeGreaterThanOrEqual(3);
    hart.run(30);
    expect(hart.decodeCache.decodes).toBe(decodes);
    expect(hart.x[1]).toBe(11);
  });
});

describe("decode cache - writes from outside the hart", () => {
  it("after the root writes memory directly, decodeCache.invalidate makes the hart see it", () => {
    const { hart, bus } = machine([a.addi(1, 0, 1), a.jal(0, -4)]);
    hart.run(2);
    expect(hart.x[1]).toBe(1);
    bus.load(RAM_BASE, [a.addi(1, 0, 2)]);
    hart.decodeCache.invalidate(0, 4);
    hart.run(1);
    expect(hart.x[1]).toBe(2);
  });

  it("invalidate covers every word of a range that crosses frames", () => {
    const { hart, bus } = machine([a.jal(0, 0xffc)]);
    bus.load(RAM_BASE + 0xffc, [a.addi(1, 0, 1), a.addi(2, 0, 1), a.jal(0, -0x1004)]);
    hart.run(4);
    expect([hart.x[1], hart.x[2]]).toEqual([1, 1]);
    bus.load(RAM_BASE + 0xffc, [a.addi(1, 0, 7), a.addi(2, 0, 8)]);
    hart.decodeCache.invalidate(0xffc, 8);
    hart.run(4);
    expect([hart.x[1], hart.x[2]]).toEqual([7, 8]);
  });

  it("FENCE.I makes the hart see a write made behind the decode cache", () => {
    // 0: addi x1, x0, 1   4: bne x5, x0, +16 (to 20)   8: fence.i   12: addi x5, x0, 1   16: jal x0, -16
    const program = [a.addi(1, 0, 1), a.bne(5, 0, 16), a.fencei(), a.addi(5, 0, 1), a.jal(0, -16), a.addi(0, 0, 0)];
    const { hart, bus } = machine(program);
    hart.run(2);
    bus.load(RAM_BASE, [a.addi(1, 0, 42)]); // behind the cache's back, no invalidate
    hart.run(5); // fence.i, addi, jal, P, bne
    expect(pcOf(hart)).toBe(RAM_BASE + 20);
    expect(hart.x[1]).toBe(42);
  });

  it("FENCE.I retires and advances pc", () => {
    const { hart } = machine([a.fencei(), a.addi(1, 0, 1)]);
    hart.run(2);
    expect(hart.x[1]).toBe(1);
    expect(csr(hart, Csr.minstret)).toBe(2);
    expect(pcOf(hart)).not.toBe(M_HANDLER);
  });

  it("writes by the hart to data in a frame with code do not disturb the code", () => {
    const { hart, bus } = machine([a.sw(1, 10, 0), a.lw(2, 10, 0), a.addi(3, 0, 3)]);
    hart.x[10] = RAM_BASE + 0x800; // same frame as the code
    hart.x[1] = 0x1234;
    hart.run(3);
    expect(hart.x[2]).toBe(0x1234);
    expect(hart.x[3]).toBe(3);
    expect(bus.read32(RAM_BASE + 0x800)).toBe(0x1234);
  });
});
