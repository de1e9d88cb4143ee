import { describe, expect, it } from "vitest";
import { Cause, Csr } from "../src/csr.js";
import { Hart } from "../src/hart.js";
import * as a from "./asm.js";
import { csr, DATA, installHandlers, machine, M_HANDLER, pcOf, u } from "./helpers.js";
import { RAM_BASE } from "./machine.js";

const MIN = 0x8000_0000 | 0;

/** Runs `program` with x10 = DATA and memory word DATA = `initial`. */
function atomics(program: readonly number[], initial: number, regs: Record<number, number> = {}, count = program.length) {
  const s = machine(program);
  s.bus.write32(DATA, initial);
  s.bus.write32(DATA + 4, 0x0bad_f00d);
  s.hart.x[10] = DATA;
  for (const [r, v] of Object.entries(regs)) s.hart.x[Number(r)] = v;
  s.hart.run(count);
  expect(pcOf(s.hart)).not.toBe(M_HANDLER);
  return s;
}

describe("hart - LR/SC", () => {
  it("LR then SC to the same address succeeds: rd = 0 and memory written", () => {
    const s = atomics([a.lrw(1, 10), a.scw(2, 10, 3)], 41, { 2: 99, 3: 42 });
    expect(s.hart.x[1]).toBe(41);
    expect(s.hart.x[2]).toBe(0);
    expect(s.bus.read32(DATA)).toBe(42);
  });

  it("SC without a preceding LR fails: rd = 1 (nonzero) and memory unchanged", () => {
    const s = atomics([a.scw(2, 10, 3)], 41, { 3: 42 });
    expect(s.hart.x[2]).toBe(1);
    expect(s.bus.read32(DATA)).toBe(41);
  });

  it("a second SC after a successful SC fails", () => {
    const s = atomics([a.lrw(1, 10), a.scw(2, 10, 3), a.scw(4, 10, 5)], 41, { 3: 42, 5: 43 });
    expect(s.hart.x[2]).toBe(0);
    expect(s.hart.x[4]).toBe(1);
    expect(s.bus.read32(DATA)).toBe(42);
  });

  it("SC to a different address than the LR fails and writes nothing", () => {
    const s = atomics([a.lrw(1, 10), a.scw(2, 11, 3)], 41, { 11: DATA + 4, 3: 42 });
    expect(s.hart.x[2]).toBe(1);
    expect(s.bus.read32(DATA)).toBe(41);
    expect(s.bus.read32(DATA + 4)).toBe(0x0bad_f00d);
  });

  it("SC with rd = x0 still stores on success and x0 stays 0", () => {
    const s = atomics([a.lrw(0, 10), a.scw(0, 10, 3), a.add(4, 0, 0)], 41, { 3: 42 });
    expect(s.hart.x[0]).toBe(0);
    expect(s.hart.x[4]).toBe(0);
    expect(s.bus.read32(DATA)).toBe(42);
  });

  describe("two harts on one bus", () => {
    /** Hart A runs `lr; sc` at RAM_BASE; hart B runs `program` at RAM_BASE + 0x2000. */
    function twoHarts(programB: readonly number[]) {
      const s = machine([a.lrw(1, 10), a.scw(2, 10, 3)]);
      s.bus.write32(DATA, 41);
      s.bus.load(RAM_BASE + 0x2000, programB);
      const b = new Hart({ bus: s.bus, hartId: 1, decodeCache: s.hart.decodeCache });
      b.reset(RAM_BASE + 0x2000);
      installHandlers(s.bus, b);
      s.hart.x[10] = DATA;
      s.hart.x[3] = 42;
      b.x[10] = DATA;
      b.x[3] = 7;
      return { ...s, b };
    }

    it("SC fails when another hart stored to the reserved word between LR and SC", () => {
      const { hart, b, bus } = twoHarts([a.sw(3, 10, 0)]);
      hart.run(1); // LR
      b.run(1); // the other hart's store
      hart.run(1); // SC
      expect(hart.x[1]).toBe(41);
      expect(hart.x[2]).not.toBe(0);
      expect(bus.read32(DATA)).toBe(7);
    });

    it("SC fails when another hart's AMO changed the reserved word", () => {
      const { hart, b, bus } = twoHarts([a.amoadd(0, 10, 3)]);
      hart.run(1);
      b.run(1);
      hart.run(1);
      expect(hart.x[2]).not.toBe(0);
      expect(bus.read32(DATA)).toBe(48);
    });

    it("SC succeeds when the other hart only touched a different word", () => {
      const { hart, b, bus } = twoHarts([a.sw(3, 10, 64)]);
      hart.run(1);
      b.run(1);
      hart.run(1);
      expect(hart.x[2]).toBe(0);
      expect(bus.read32(DATA)).toBe(42);
      expect(bus.read32(DATA + 64)).toBe(7);
    });

    it("each hart has its own reservation: B's SC without its own LR fails", () => {
      const { hart, b, bus } = twoHarts([a.scw(4, 10, 3)]);
      hart.run(1); // A reserves
      b.run(1); // B has no reservation
      expect(b.x[4]).toBe(1);
      expect(bus.read32(DATA)).toBe(41);
      hart.run(1);
      expect(hart.x[2]).toBe(0);
      expect(bus.read32(DATA)).toBe(42);
    });
  });

  it("SC on a page the bus refuses writes to raises a store access fault", () => {
    const s = machine([a.lrw(1, 10), a.scw(2, 10, 3)]);
    s.bus.write32(DATA, 41);
    s.bus.readOnly.add(DATA >>> 12);
    s.hart.x[10] = DATA;
    s.hart.x[2] = 99;
    s.hart.run(3);
    expect(s.hart.x[1]).toBe(41); // LR only needs read access
    expect(csr(s.hart, Csr.mcause)).toBe(Cause.StoreAccessFault);
    expect(csr(s.hart, Csr.mepc) >>> 0).toBe(RAM_BASE + 4);
    expect(s.hart.x[2]).toBe(99);
  });
});

describe("hart - AMOs", () => {
  // [name, encoder, memory before, rs2, memory after]; rd always gets the old memory value.
  const cases: [string, typeof a.amoadd, number, number, number][] = [
    ["AMOSWAP.W", a.amoswap, 0x1111_1111, 0x2222_2222, 0x2222_2222],
    ["AMOADD.W", a.amoadd, 40, 2, 42],
    ["AMOADD.W wraps", a.amoadd, 0x7fff_ffff, 1, MIN],
    ["AMOXOR.W", a.amoxor, 0xff00_ff00 | 0, 0x0ff0_0ff0, 0xf0f0_f0f0 | 0],
    ["AMOAND.W", a.amoand, 0xff00_ff00 | 0, 0x0ff0_0ff0, 0x0f00_0f00],
    ["AMOOR.W", a.amoor, 0xff00_ff00 | 0, 0x0ff0_0ff0, 0xfff0_fff0 | 0],
    ["AMOMIN.W is signed (-1 vs 1)", a.amomin, -1, 1, -1],
    ["AMOMIN.W is signed (1 vs -1)", a.amomin, 1, -1, -1],
    ["AMOMAX.W is signed (-1 vs 1)", a.amomax, -1, 1, 1],
    ["AMOMAX.W with INT32_MIN", a.amomax, MIN, -5, -5],
    ["AMOMINU.W is unsigned (0xffffffff vs 1)", a.amominu, -1, 1, 1],
    ["AMOMINU.W is unsigned (0x80000000 vs 0x7fffffff)", a.amominu, MIN, 0x7fff_ffff, 0x7fff_ffff],
    ["AMOMAXU.W is unsigned (1 vs 0xffffffff)", a.amomaxu, 1, -1, -1],
    ["AMOMAXU.W is unsigned (0x80000000 vs 0x7fffffff)", a.amomaxu, MIN, 0x7fff_ffff, MIN],
  ];
  for (const [name, enc, before, src, after] of cases) {
    it(`${name} returns the old value and stores the new one`, () => {
      const s = atomics([enc(1, 10, 2)], before, { 2: src });
      expect(s.hart.x[1]).toBe(before);
      expect(s.bus.read32(DATA)).toBe(after);
      expect(s.bus.read32(DATA + 4)).toBe(0x0bad_f00d);
    });
  }

  it("an AMO with rd = x0 updates memory and x0 stays 0", () => {
    const s = atomics([a.amoadd(0, 10, 2), a.add(3, 0, 0)], 40, { 2: 2 });
    expect(s.bus.read32(DATA)).toBe(42);
    expect(s.hart.x[0]).toBe(0);
    expect(s.hart.x[3]).toBe(0);
  });

  it("an AMO with rd == rs2 uses the old rs2 as operand", () => {
    const s = atomics([a.amoadd(2, 10, 2)], 40, { 2: 2 });
    expect(s.hart.x[2]).toBe(40);
    expect(s.bus.read32(DATA)).toBe(42);
  });

  it("aq/rl bits do not change the result", () => {
    const s = atomics([a.amoswap(1, 10, 2, 1, 1), a.lrw(3, 10), a.scw(4, 10, 5, 1, 1)], 40, { 2: 2, 5: 9 });
    expect(s.hart.x[1]).toBe(40);
    expect(s.hart.x[3]).toBe(2);
    expect(s.hart.x[4]).toBe(0);
    expect(s.bus.read32(DATA)).toBe(9);
  });
});

describe("hart - misaligned atomics", () => {
  const cases: [string, number, number][] = [
    ["LR.W", a.lrw(1, 10), Cause.LoadMisaligned],
    ["SC.W", a.scw(1, 10, 2), Cause.StoreMisaligned],
    ["AMOSWAP.W", a.amoswap(1, 10, 2), Cause.StoreMisaligned],
    ["AMOADD.W", a.amoadd(1, 10, 2), Cause.StoreMisaligned],
    ["AMOMAXU.W", a.amomaxu(1, 10, 2), Cause.StoreMisaligned],
  ];
  for (const [name, insn, cause] of cases) {
    for (const offset of [1, 2, 3]) {
      it(`${name} at an address ${offset} mod 4 raises cause ${cause} with tval = the address`, () => {
        const s = machine([insn]);
        s.bus.write32(DATA, 0x1122_3344);
        s.bus.write32(DATA + 4, 0x5566_7788);
        s.hart.x[10] = DATA + offset;
        s.hart.x[1] = 99;
        s.hart.x[2] = -1;
        s.hart.run(3);
        expect(csr(s.hart, Csr.mcause)).toBe(cause);
        expect(csr(s.hart, Csr.mtval) >>> 0).toBe(DATA + offset);
        expect(csr(s.hart, Csr.mepc) >>> 0).toBe(RAM_BASE);
        expect(s.hart.x[1]).toBe(99);
        expect(s.bus.read32(DATA)).toBe(0x1122_3344);
        expect(s.bus.read32(DATA + 4)).toBe(0x5566_7788);
      });
    }
  }

  it("a misaligned SC raises even when the hart holds a reservation", () => {
    const s = machine([a.lrw(1, 10), a.scw(2, 11, 3)]);
    s.hart.x[10] = DATA;
    s.hart.x[11] = DATA + 2;
    s.hart.run(3);
    expect(csr(s.hart, Csr.mcause)).toBe(Cause.StoreMisaligned);
    expect(csr(s.hart, Csr.mtval) >>> 0).toBe(DATA + 2);
  });
});

describe("hart - misaligned loads and stores", () => {
  it("misaligned LW/LH/LHU read little-endian bytes", () => {
    const s = machine([a.lw(1, 10, 1), a.lh(2, 10, 3), a.lhu(3, 10, 3), a.lw(4, 10, 3), a.lh(5, 10, 1)]);
    s.bus.write32(DATA, 0x4433_2211);
    s.bus.write32(DATA + 4, 0x88_77_66_55 | 0);
    s.hart.x[10] = DATA;
    s.hart.run(5);
    expect(pcOf(s.hart)).toBe(RAM_BASE + 20);
    expect(u(s.hart, 1)).toBe(0x5544_3322);
    expect(u(s.hart, 2)).toBe(0x5544);
    expect(u(s.hart, 3)).toBe(0x5544);
    expect(u(s.hart, 4)).toBe(0x7766_5544);
    expect(u(s.hart, 5)).toBe(0x3322);
  });

  it("misaligned LH sign-extends the assembled halfword", () => {
    const s = machine([a.lh(1, 10, 1), a.lhu(2, 10, 1)]);
    s.bus.write32(DATA, 0x0080_ff00);
    s.hart.x[10] = DATA;
    s.hart.run(2);
    expect(u(s.hart, 1)).toBe(0xffff_80ff);
    expect(u(s.hart, 2)).toBe(0x80ff);
  });

  it("misaligned SW/SH write the right bytes and nothing else", () => {
    const s = machine([a.sw(1, 10, 1), a.sh(1, 10, 7)]);
    s.bus.write32(DATA, 0);
    s.bus.write32(DATA + 4, 0);
    s.bus.write32(DATA + 8, 0);
    s.hart.x[10] = DATA;
    s.hart.x[1] = 0xaabb_ccdd | 0;
    s.hart.run(2);
    expect(pcOf(s.hart)).toBe(RAM_BASE + 8);
    expect(s.bus.read32(DATA) >>> 0).toBe(0xbbcc_dd00);
    expect(s.bus.read32(DATA + 4) >>> 0).toBe(0xdd00_00aa);
    expect(s.bus.read32(DATA + 8) >>> 0).toBe(0x0000_00cc);
  });

  it("misaligned accesses that cross a page boundary work", () => {
    const edge = DATA + 0xffe; // the next page starts at DATA + 0x1000
    const s = machine([a.sw(1, 10, 0), a.lw(2, 10, 0), a.lh(3, 10, 1), a.sh(1, 10, 1)]);
    s.hart.x[10] = edge;
    s.hart.x[1] = 0x1234_5678;
    s.hart.run(2);
    expect(s.bus.read32(DATA + 0xffc) >>> 0).toBe(0x5678_0000);
    expect(s.bus.read32(DATA + 0x1000) >>> 0).toBe(0x0000_1234);
    expect(u(s.hart, 2)).toBe(0x1234_5678);
    s.hart.run(2);
    expect(u(s.hart, 3)).toBe(0x3456);
    expect(s.bus.read32(DATA + 0xffc) >>> 0).toBe(0x7878_0000);
    expect(s.bus.read32(DATA + 0x1000) >>> 0).toBe(0x0000_1256);
  });

  it("a misaligned load whose second half is unmapped raises a load access fault and writes nothing", () => {
    const end = RAM_BASE + (1 << 20); // first address past RAM
    const s = machine([a.lw(1, 10, -2)]);
    s.hart.x[10] = end;
    s.hart.x[1] = 99;
    s.hart.run(3);
    expect(csr(s.hart, Csr.mcause)).toBe(Cause.LoadAccessFault);
    const tval = csr(s.hart, Csr.mtval) >>> 0;
    expect(tval).toBeGreaterThanOrEqual(end); // the address of the part that faulted
    expect(tval).toBeLessThanOrEqual(end + 1);
    expect(s.hart.x[1]).toBe(99);
  });

  it("a misaligned store whose second half is unmapped writes no byte at all", () => {
    const end = RAM_BASE + (1 << 20);
    const s = machine([a.sw(1, 10, -2)]);
    s.bus.write32(end - 4, 0x0bad_f00d);
    s.hart.x[10] = end;
    s.hart.x[1] = -1;
    s.hart.run(3);
    expect(csr(s.hart, Csr.mcause)).toBe(Cause.StoreAccessFault);
    const tval = csr(s.hart, Csr.mtval) >>> 0;
    expect(tval).toBeGreaterThanOrEqual(end);
    expect(tval).toBeLessThanOrEqual(end + 1);
    expect(s.bus.read32(end - 4)).toBe(0x0bad_f00d);
  });
});
