import { describe, expect, it } from "vitest";
import { Access, PAGE_EXIT } from "../src/bus.js";
import { Cause, Csr, MSTATUS_MPP_SHIFT } from "../src/csr.js";
import { Exit, Hart } from "../src/hart.js";
import * as a from "./asm.js";
import {
  CODE, csr, DATA, installHandlers, M_HANDLER, PageTables, pcOf, Priv, PTE_A, PTE_D, PTE_R, PTE_W, PTE_X, u,
} from "./helpers.js";
import { MMIO_BASE, RAM_BASE, TestBus } from "./machine.js";

/** A TestBus that records MMIO loads, can answer PAGE_EXIT once per (page, access) and can ask a hart to exit. */
class ProbeBus extends TestBus {
  readonly mmioLoads: { pa: number; size: number }[] = [];
  readonly exitOnce = new Set<string>();
  exitOn: Hart | undefined;

  override resolvePage(ppn: number, access: Access): number {
    const key = `${ppn}:${access}`;
    if (this.exitOnce.delete(key)) {
      this.resolves++;
      return PAGE_EXIT;
    }
    return super.resolvePage(ppn, access);
  }

  override mmioLoad(pa: number, size: 1 | 2 | 4): number {
    this.mmioLoads.push({ pa, size });
    if (this.exitOn !== undefined) this.exitOn.requestExit();
    return super.mmioLoad(pa, size);
  }

  override mmioStore(pa: number, size: 1 | 2 | 4, value: number): boolean {
    if (this.exitOn !== undefined) this.exitOn.requestExit();
    return super.mmioStore(pa, size, value);
  }
}

function probe(program: readonly number[]) {
  const bus = new ProbeBus();
  bus.load(RAM_BASE, program);
  const hart = new Hart({ bus });
  hart.reset(RAM_BASE);
  installHandlers(bus, hart);
  hart.x[10] = DATA;
  hart.x[11] = MMIO_BASE;
  return { bus, hart };
}

const key = (pa: number, access: Access): string => `${pa >>> 12}:${access}`;

describe("bus - MMIO", () => {
  it("loads reach mmioLoad with the physical address and size, and are sign/zero-extended", () => {
    const { bus, hart } = probe([a.lw(1, 11, 0x10), a.lh(2, 11, 0x22), a.lhu(3, 11, 0x22), a.lb(4, 11, 0x33), a.lbu(5, 11, 0x33)]);
    bus.mmioValue = 0x1234_f6f8;
    hart.run(5);
    expect(pcOf(hart)).toBe(RAM_BASE + 20);
    expect(bus.mmioLoads).toEqual([
      { pa: MMIO_BASE + 0x10, size: 4 },
      { pa: MMIO_BASE + 0x22, size: 2 },
      { pa: MMIO_BASE + 0x22, size: 2 },
      { pa: MMIO_BASE + 0x33, size: 1 },
      { pa: MMIO_BASE + 0x33, size: 1 },
    ]);
    expect(u(hart, 1)).toBe(0x1234_f6f8);
    expect(u(hart, 2)).toBe(0xffff_f6f8);
    expect(u(hart, 3)).toBe(0xf6f8);
    expect(u(hart, 4)).toBe(0xffff_fff8);
    expect(u(hart, 5)).toBe(0xf8);
  });

  it("stores reach mmioStore with the physical address, size and the stored bytes", () => {
    const { bus, hart } = probe([a.sw(1, 11, 0x40), a.sh(1, 11, 0x46), a.sb(1, 11, 0x4b)]);
    hart.x[1] = 0x89ab_cdef | 0;
    hart.run(3);
    expect(pcOf(hart)).toBe(RAM_BASE + 12);
    expect(bus.mmioStores.map((st) => ({ ...st, value: st.value >>> 0 }))).toEqual([
      { pa: MMIO_BASE + 0x40, size: 4, value: 0x89ab_cdef },
      { pa: MMIO_BASE + 0x46, size: 2, value: 0xcdef },
      { pa: MMIO_BASE + 0x4b, size: 1, value: 0xef },
    ]);
  });

  it("an MMIO load nobody answers is a load access fault; rd is untouched", () => {
    const { hart } = probe([a.lw(1, 11, 0x200)]);
    hart.x[1] = 99;
    hart.run(3);
    expect(csr(hart, Csr.mcause)).toBe(Cause.LoadAccessFault);
    expect(csr(hart, Csr.mtval) >>> 0).toBe(MMIO_BASE + 0x200);
    expect(hart.x[1]).toBe(99);
  });

  it("an MMIO store nobody answers is a store access fault", () => {
    const { hart } = probe([a.sw(1, 11, 0x200)]);
    hart.run(3);
    expect(csr(hart, Csr.mcause)).toBe(Cause.StoreAccessFault);
    expect(csr(hart, Csr.mtval) >>> 0).toBe(MMIO_BASE + 0x200);
  });

  it("fetching from device memory is an instruction access fault", () => {
    const { hart } = probe([a.jalr(0, 11, 0)]);
    hart.run(3);
    expect(csr(hart, Csr.mcause)).toBe(Cause.InstructionAccessFault);
    expect(csr(hart, Csr.mepc) >>> 0).toBe(MMIO_BASE);
  });
});

describe("bus - unmapped addresses", () => {
  const HOLE = 0x2000_0000;
  it("a load from an unmapped address is a load access fault (5) with tval = address", () => {
    const { hart } = probe([a.lw(1, 12, 8)]);
    hart.x[12] = HOLE;
    hart.run(3);
    expect(csr(hart, Csr.mcause)).toBe(Cause.LoadAccessFault);
    expect(csr(hart, Csr.mtval) >>> 0).toBe(HOLE + 8);
    expect(csr(hart, Csr.mepc) >>> 0).toBe(RAM_BASE);
  });

  it("a store to an unmapped address is a store access fault (7)", () => {
    const { hart } = probe([a.sb(1, 12, 3)]);
    hart.x[12] = HOLE;
    hart.run(3);
    expect(csr(hart, Csr.mcause)).toBe(Cause.StoreAccessFault);
    expect(csr(hart, Csr.mtval) >>> 0).toBe(HOLE + 3);
  });

  it("a jump to an unmapped address is an instruction access fault (1), mepc = tval = the target", () => {
    const { hart } = probe([a.jalr(1, 12, 0)]);
    hart.x[12] = HOLE;
    hart.run(3);
    expect(csr(hart, Csr.mcause)).toBe(Cause.InstructionAccessFault);
    expect(csr(hart, Csr.mepc) >>> 0).toBe(HOLE);
    expect(csr(hart, Csr.mtval) >>> 0).toBe(HOLE);
    expect(u(hart, 1)).toBe(RAM_BASE + 4);
  });

  it("an AMO to an unmapped address is a store access fault", () => {
    const { hart } = probe([a.amoadd(1, 12, 2)]);
    hart.x[12] = HOLE;
    hart.run(3);
    expect(csr(hart, Csr.mcause)).toBe(Cause.StoreAccessFault);
  });

  it("a store to a page the bus refuses writes to faults; loads still work", () => {
    const { bus, hart } = probe([a.lw(1, 10, 0), a.sw(2, 10, 0)]);
    bus.readOnly.add(DATA >>> 12);
    bus.write32(DATA, 5);
    hart.x[2] = 6;
    hart.run(3);
    expect(hart.x[1]).toBe(5);
    expect(csr(hart, Csr.mcause)).toBe(Cause.StoreAccessFault);
    expect(bus.read32(DATA)).toBe(5);
  });
});

describe("bus - PAGE_EXIT", () => {
  it("a load on a page that answers PAGE_EXIT stops before the load; the next run executes it once", () => {
    const { bus, hart } = probe([a.addi(1, 1, 1), a.lw(2, 10, 0), a.addi(3, 3, 1)]);
    bus.write32(DATA, 77);
    bus.exitOnce.add(key(DATA, Access.Read));
    expect(hart.run(10)).toBe(Exit.Bus);
    expect(pcOf(hart)).toBe(RAM_BASE + 4);
    expect([hart.x[1], hart.x[2], hart.x[3]]).toEqual([1, 0, 0]);
    expect(csr(hart, Csr.minstret)).toBe(1);
    expect(hart.run(1)).toBe(Exit.Budget);
    expect(pcOf(hart)).toBe(RAM_BASE + 8);
    expect(hart.x[2]).toBe(77);
    expect(csr(hart, Csr.minstret)).toBe(2);
  });

  it("a store that exits writes nothing; the next run writes once", () => {
    const { bus, hart } = probe([a.sw(1, 10, 0)]);
    hart.x[1] = 5;
    bus.exitOnce.add(key(DATA, Access.Write));
    expect(hart.run(10)).toBe(Exit.Bus);
    expect(bus.read32(DATA)).toBe(0);
    expect(pcOf(hart)).toBe(RAM_BASE);
    hart.run(1);
    expect(bus.read32(DATA)).toBe(5);
    expect(pcOf(hart)).toBe(RAM_BASE + 4);
  });

  it("an AMO that exits is executed exactly once after the retry", () => {
    const { bus, hart } = probe([a.amoadd(1, 10, 2), a.addi(0, 0, 0)]);
    bus.write32(DATA, 40);
    hart.x[2] = 2;
    bus.exitOnce.add(key(DATA, Access.Write));
    expect(hart.run(10)).toBe(Exit.Bus);
    expect(bus.read32(DATA)).toBe(40);
    hart.run(1);
    expect(bus.read32(DATA)).toBe(42);
    expect(hart.x[1]).toBe(40);
    expect(csr(hart, Csr.minstret)).toBe(1);
  });

  it("an instruction fetch that exits runs nothing; the next run executes the instruction", () => {
    const { bus, hart } = probe([a.addi(1, 1, 1)]);
    bus.exitOnce.add(key(RAM_BASE, Access.Execute));
    expect(hart.run(10)).toBe(Exit.Bus);
    expect(pcOf(hart)).toBe(RAM_BASE);
    expect(hart.x[1]).toBe(0);
    expect(csr(hart, Csr.minstret)).toBe(0);
    hart.run(1);
    expect(hart.x[1]).toBe(1);
  });
});

describe("bus - translation cache contract", () => {
  it("the hart caches resolvePage answers until flushTlb, then asks again", () => {
    const { bus, hart } = probe([a.lw(1, 10, 0), a.sw(1, 10, 4), a.jal(0, -8)]);
    hart.run(3);
    const afterFirst = bus.resolves;
    expect(afterFirst).toBeGreaterThan(0);
    hart.run(30);
    expect(bus.resolves).toBe(afterFirst);
    hart.flushTlb();
    hart.run(3);
    expect(bus.resolves).toBeGreaterThan(afterFirst);
  });

  it("after the bus write-protects a page and flushTlb, a store faults", () => {
    const { bus, hart } = probe([a.sw(1, 10, 0), a.jal(0, -4)]);
    hart.x[1] = 1;
    hart.run(4);
    expect(bus.read32(DATA)).toBe(1);
    bus.readOnly.add(DATA >>> 12);
    hart.flushTlb();
    hart.x[1] = 2;
    hart.run(3);
    expect(csr(hart, Csr.mcause)).toBe(Cause.StoreAccessFault);
    expect(bus.read32(DATA)).toBe(1);
    expect(pcOf(hart)).toBe(M_HANDLER);
  });
});

describe("bus - requestExit", () => {
  it("requestExit from inside an MMIO store returns Exit.Requested right after that instruction", () => {
    const { bus, hart } = probe([a.addi(1, 0, 1), a.sw(1, 11, 0), a.addi(2, 0, 1)]);
    bus.exitOn = hart;
    expect(hart.run(10)).toBe(Exit.Requested);
    expect(pcOf(hart)).toBe(RAM_BASE + 8);
    expect(bus.mmioStores).toHaveLength(1);
    expect(hart.x[2]).toBe(0);
    expect(csr(hart, Csr.minstret)).toBe(2);
    bus.exitOn = undefined;
    expect(hart.run(1)).toBe(Exit.Budget);
    expect(hart.x[2]).toBe(1);
  });

  it("requestExit from inside an MMIO load writes rd, then returns Exit.Requested", () => {
    const { bus, hart } = probe([a.lw(1, 11, 0), a.addi(2, 0, 1)]);
    bus.exitOn = hart;
    expect(hart.run(10)).toBe(Exit.Requested);
    expect(pcOf(hart)).toBe(RAM_BASE + 4);
    expect(hart.x[1]).toBe(bus.mmioValue);
    expect(hart.x[2]).toBe(0);
  });
});

describe("bus - PAGE_EXIT during a page-table walk", () => {
  /** S-mode with Sv32: code identity-mapped, VA 0x4000_0000 -> DATA through its own level-0 table. */
  function pagedProbe(program: readonly number[], dataFlags: number) {
    const { bus, hart } = probe([a.mret()]);
    bus.load(CODE, program);
    hart.csrWrite(Csr.mstatus, Priv.S << MSTATUS_MPP_SHIFT);
    hart.csrWrite(Csr.mepc, CODE);
    hart.run(1);
    const pt = new PageTables(bus);
    for (let p = RAM_BASE; p < RAM_BASE + 0x5000; p += 0x1000) pt.map4k(p, p, PTE_R | PTE_W | PTE_X | PTE_A | PTE_D);
    pt.map4k(VA, DATA, dataFlags);
    hart.csrWrite(Csr.satp, pt.satp);
    hart.x[10] = VA;
    bus.write32(DATA, 31);
    return { bus, hart, pt, table: pt.leafAddress(VA) & ~0xfff };
  }
  const VA = 0x4000_0000;

  it("PAGE_EXIT on a page-table read stops before the instruction; the next run completes it", () => {
    const { bus, hart, table } = pagedProbe([a.addi(2, 0, 1), a.lw(1, 10, 0)], PTE_R | PTE_A);
    bus.exitOnce.add(key(table, Access.Read));
    expect(hart.run(10)).toBe(Exit.Bus);
    expect(pcOf(hart)).toBe(CODE + 4);
    expect(hart.x[1]).toBe(0);
    expect(csr(hart, Csr.minstret)).toBe(2); // the MRET and the ADDI
    expect(hart.run(1)).toBe(Exit.Budget);
    expect(hart.x[1]).toBe(31);
    expect(pcOf(hart)).toBe(CODE + 8);
  });

  it("PAGE_EXIT on the A/D update of a PTE stops before the instruction; the retry sets A and D", () => {
    const { bus, hart, pt } = pagedProbe([a.sw(2, 10, 0)], PTE_R | PTE_W);
    const address = pt.leafAddress(VA);
    hart.x[2] = 5;
    bus.exitOnce.add(key(address, Access.Write));
    expect(hart.run(10)).toBe(Exit.Bus);
    expect(pcOf(hart)).toBe(CODE);
    expect(bus.read32(DATA)).toBe(31);
    expect(hart.run(1)).toBe(Exit.Budget);
    expect(bus.read32(DATA)).toBe(5);
    expect(bus.read32(address) & (PTE_A | PTE_D)).toBe(PTE_A | PTE_D);
  });
});
