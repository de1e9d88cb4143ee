import { describe, expect, it } from "vitest";
import {
  Cause, Csr, MSTATUS_MPP_SHIFT, MSTATUS_MPRV, MSTATUS_MXR, MSTATUS_SUM,
} from "../src/csr.js";
import * as a from "./asm.js";
import {
  CODE, csr, DATA, enter, machine, M_HANDLER, PageTables, pcOf, Priv, PTE_A, PTE_D, PTE_R, PTE_U, PTE_V, PTE_W, PTE_X,
  pte, S_HANDLER, satpFor, u,
} from "./helpers.js";
import { MMIO_BASE, RAM_BASE } from "./machine.js";

const VA = 0x4000_0000;
const RW = PTE_R | PTE_W;

/**
 * A hart in `priv` with Sv32 on: code and trap-handler pages (RAM_BASE .. RAM_BASE + 0x5000) identity
 * mapped with A and D set (and U for U-mode), `map` adds the rest. x10 = VA.
 */
function paged(priv: Priv, program: readonly number[], map: (pt: PageTables) => void, mstatus = 0) {
  const s = enter(priv, program, { mstatus });
  const pt = new PageTables(s.bus);
  const codeFlags = PTE_R | PTE_W | PTE_X | PTE_A | PTE_D | (priv === Priv.U ? PTE_U : 0);
  for (let p = RAM_BASE; p < RAM_BASE + 0x5000; p += 0x1000) pt.map4k(p, p, codeFlags);
  map(pt);
  s.hart.csrWrite(Csr.satp, pt.satp);
  s.hart.x[10] = VA;
  return { ...s, pt };
}

function expectTrap(hart: ReturnType<typeof paged>["hart"], cause: number, tval: number, epc: number) {
  expect(pcOf(hart)).toBe(M_HANDLER);
  expect(csr(hart, Csr.mcause)).toBe(cause);
  expect(csr(hart, Csr.mtval) >>> 0).toBe(tval >>> 0);
  expect(csr(hart, Csr.mepc) >>> 0).toBe(epc >>> 0);
}

describe("hart - Sv32 translation", () => {
  it("4 KiB pages map loads and stores to their frames", () => {
    const s = paged(Priv.S, [a.lw(1, 10, 8), a.lui(11, 0x40001), a.sw(3, 11, 12)], (pt) => {
      pt.map4k(VA, DATA, RW);
      pt.map4k(VA + 0x1000, DATA + 0x2000, RW);
    });
    s.bus.write32(DATA + 8, 0x1234_5678);
    s.hart.x[3] = 0x0bad_cafe;
    s.hart.run(3);
    expect(pcOf(s.hart)).toBe(CODE + 12);
    expect(s.hart.x[1]).toBe(0x1234_5678);
    expect(s.bus.read32(DATA + 0x2000 + 12)).toBe(0x0bad_cafe);
    expect(s.bus.read32(DATA + 0x1000 + 12)).toBe(0);
  });

  it("a 4 MiB superpage maps the page offset and VPN[0] straight through", () => {
    const s = paged(Priv.S, [a.lui(10, 0x40008), a.lw(1, 10, 16), a.sw(2, 10, 20)], (pt) => {
      pt.mapSuper(VA, RAM_BASE, RW);
    });
    s.bus.write32(RAM_BASE + 0x8010, 0x5555_aaaa);
    s.hart.x[2] = 77;
    s.hart.run(3);
    expect(pcOf(s.hart)).toBe(CODE + 12);
    expect(s.hart.x[1]).toBe(0x5555_aaaa);
    expect(s.bus.read32(RAM_BASE + 0x8014)).toBe(77);
  });

  it("a misaligned superpage (PPN[0] != 0) is a page fault", () => {
    const s = paged(Priv.S, [a.lw(1, 10, 16)], (pt) => pt.mapSuper(VA, RAM_BASE + 0x1000, RW));
    s.hart.run(3);
    expectTrap(s.hart, Cause.LoadPageFault, VA + 16, CODE);
  });

  it("the hart sets A on a read and A and D on a write", () => {
    const s = paged(Priv.S, [a.lw(1, 10, 0), a.sw(1, 10, 4)], (pt) => pt.map4k(VA, DATA, RW));
    const address = s.pt.leafAddress(VA);
    s.hart.run(1);
    expect(s.bus.read32(address) & (PTE_A | PTE_D)).toBe(PTE_A);
    s.hart.run(1);
    expect(s.bus.read32(address) & (PTE_A | PTE_D)).toBe(PTE_A | PTE_D);
    expect(s.bus.read32(address) >>> 10).toBe(DATA >>> 12);
  });

  it("a store alone sets both A and D", () => {
    const s = paged(Priv.S, [a.sw(1, 10, 4)], (pt) => pt.map4k(VA, DATA, RW));
    s.hart.run(1);
    expect(s.bus.read32(s.pt.leafAddress(VA)) & (PTE_A | PTE_D)).toBe(PTE_A | PTE_D);
  });

  it("the hart sets A on an instruction fetch", () => {
    const s = paged(Priv.S, [a.jalr(0, 10, 0)], (pt) => pt.map4k(VA, DATA, PTE_X));
    s.bus.load(DATA, [a.addi(1, 0, 9)]);
    s.hart.run(2);
    expect(s.hart.x[1]).toBe(9);
    expect(s.bus.read32(s.pt.leafAddress(VA)) & (PTE_A | PTE_D)).toBe(PTE_A);
  });

  it("a store to a read-only page faults (15) with stval = va, even after a load cached it", () => {
    const s = paged(Priv.S, [a.lw(1, 10, 0), a.sw(2, 10, 4)], (pt) => pt.map4k(VA, DATA, PTE_R));
    s.bus.write32(DATA + 4, 0x0bad_f00d);
    s.hart.x[2] = 1;
    s.hart.run(5);
    expectTrap(s.hart, Cause.StorePageFault, VA + 4, CODE + 4);
    expect(s.bus.read32(DATA + 4)).toBe(0x0bad_f00d);
    expect(s.bus.read32(s.pt.leafAddress(VA)) & PTE_D).toBe(0);
  });

  it("a load from an execute-only page faults (13)", () => {
    const s = paged(Priv.S, [a.lw(1, 10, 0)], (pt) => pt.map4k(VA, DATA, PTE_X));
    s.hart.x[1] = 99;
    s.hart.run(3);
    expectTrap(s.hart, Cause.LoadPageFault, VA, CODE);
    expect(s.hart.x[1]).toBe(99);
  });

  it("a fetch from a page without X faults (12) with tval = mepc = the target", () => {
    const s = paged(Priv.S, [a.jalr(1, 10, 0x20)], (pt) => pt.map4k(VA, DATA, RW));
    s.hart.run(3);
    expectTrap(s.hart, Cause.InstructionPageFault, VA + 0x20, VA + 0x20);
    expect(u(s.hart, 1)).toBe(CODE + 4); // the JALR retired
  });

  it("a delegated page fault goes to S with scause and stval", () => {
    const s = paged(Priv.S, [a.sw(1, 10, 8)], (pt) => pt.map4k(VA, DATA, PTE_R));
    s.hart.csrWrite(Csr.medeleg, 1 << Cause.StorePageFault);
    s.hart.run(3);
    expect(s.hart.priv).toBe(Priv.S);
    expect(pcOf(s.hart)).toBe(S_HANDLER);
    expect(csr(s.hart, Csr.scause)).toBe(Cause.StorePageFault);
    expect(csr(s.hart, Csr.stval) >>> 0).toBe(VA + 8);
    expect(csr(s.hart, Csr.sepc) >>> 0).toBe(CODE);
  });

  it("an invalid PTE (V = 0) is a page fault for load, store and fetch", () => {
    for (const [insn, cause, epc] of [
      [a.lw(1, 10, 0), Cause.LoadPageFault, CODE],
      [a.sw(1, 10, 0), Cause.StorePageFault, CODE],
      [a.jalr(0, 10, 0), Cause.InstructionPageFault, VA],
    ] as const) {
      const s = paged(Priv.S, [insn], (pt) => pt.map4k(VA, DATA, RW | PTE_X));
      const address = s.pt.leafAddress(VA);
      s.bus.write32(address, s.bus.read32(address) & ~PTE_V);
      s.hart.run(3);
      expectTrap(s.hart, cause, VA, epc);
    }
  });

  it("W without R is reserved: a page fault even for a store", () => {
    for (const flags of [PTE_W, PTE_W | PTE_X]) {
      const s = paged(Priv.S, [a.sw(1, 10, 0)], (pt) => pt.map4k(VA, DATA, flags));
      s.hart.run(3);
      expectTrap(s.hart, Cause.StorePageFault, VA, CODE);
    }
  });

  it("a pointer PTE at level 0 is a page fault", () => {
    const s = paged(Priv.S, [a.lw(1, 10, 0)], (pt) => pt.map4k(VA, DATA, 0));
    s.hart.run(3);
    expectTrap(s.hart, Cause.LoadPageFault, VA, CODE);
  });

  it("a page table outside memory gives an access fault of the original access type", () => {
    const s = paged(Priv.S, [a.lw(1, 10, 0), a.sw(1, 10, 0)], () => undefined);
    s.bus.write32(s.pt.root + (VA >>> 22) * 4, pte(0x2000_0000, PTE_V)); // level-0 table in unmapped space
    s.hart.run(3);
    expectTrap(s.hart, Cause.LoadAccessFault, VA, CODE);
  });
});

describe("hart - Sv32 U pages and SUM/MXR", () => {
  it("S-mode cannot load from a U page without SUM", () => {
    const s = paged(Priv.S, [a.lw(1, 10, 0)], (pt) => pt.map4k(VA, DATA, RW | PTE_U));
    s.hart.run(3);
    expectTrap(s.hart, Cause.LoadPageFault, VA, CODE);
  });

  it("S-mode can load and store a U page with SUM", () => {
    const s = paged(Priv.S, [a.lw(1, 10, 0), a.sw(2, 10, 4)], (pt) => pt.map4k(VA, DATA, RW | PTE_U), MSTATUS_SUM);
    s.bus.write32(DATA, 31);
    s.hart.x[2] = 32;
    s.hart.run(2);
    expect(pcOf(s.hart)).toBe(CODE + 8);
    expect(s.hart.x[1]).toBe(31);
    expect(s.bus.read32(DATA + 4)).toBe(32);
  });

  it("clearing SUM takes effect for the next access (no stale translation)", () => {
    const program = [a.lw(1, 10, 0), a.csrrc(0, Csr.sstatus, 5), a.lw(2, 10, 0)];
    const s = paged(Priv.S, program, (pt) => pt.map4k(VA, DATA, RW | PTE_U), MSTATUS_SUM);
    s.bus.write32(DATA, 31);
    s.hart.x[5] = MSTATUS_SUM;
    s.hart.run(5);
    expect(s.hart.x[1]).toBe(31);
    expectTrap(s.hart, Cause.LoadPageFault, VA, CODE + 8);
  });

  it("S-mode never executes a U page, even with SUM", () => {
    const s = paged(Priv.S, [a.jalr(0, 10, 0)], (pt) => pt.map4k(VA, DATA, PTE_R | PTE_X | PTE_U), MSTATUS_SUM);
    s.bus.load(DATA, [a.addi(1, 0, 1)]);
    s.hart.run(3);
    expectTrap(s.hart, Cause.InstructionPageFault, VA, VA);
    expect(s.hart.x[1]).toBe(0);
  });

  it("U-mode can use U pages but not S pages", () => {
    const ok = paged(Priv.U, [a.lw(1, 10, 0), a.sw(1, 10, 4)], (pt) => pt.map4k(VA, DATA, RW | PTE_U));
    ok.bus.write32(DATA, 5);
    ok.hart.run(2);
    expect(pcOf(ok.hart)).toBe(CODE + 8);
    expect(ok.bus.read32(DATA + 4)).toBe(5);
    const denied = paged(Priv.U, [a.lw(1, 10, 0)], (pt) => pt.map4k(VA, DATA, RW));
    denied.hart.run(3);
    expectTrap(denied.hart, Cause.LoadPageFault, VA, CODE);
  });

  it("U-mode cannot execute an S page", () => {
    const s = paged(Priv.U, [a.jalr(0, 10, 0)], (pt) => pt.map4k(VA, DATA, PTE_R | PTE_X));
    s.hart.run(3);
    expectTrap(s.hart, Cause.InstructionPageFault, VA, VA);
  });

  it("MXR makes execute-only pages readable", () => {
    const s = paged(Priv.S, [a.lw(1, 10, 0)], (pt) => pt.map4k(VA, DATA, PTE_X), MSTATUS_MXR);
    s.bus.write32(DATA, 0x600d);
    s.hart.run(1);
    expect(pcOf(s.hart)).toBe(CODE + 4);
    expect(s.hart.x[1]).toBe(0x600d);
  });

  it("MXR does not make execute-only pages writable", () => {
    const s = paged(Priv.S, [a.sw(1, 10, 0)], (pt) => pt.map4k(VA, DATA, PTE_X), MSTATUS_MXR);
    s.hart.run(3);
    expectTrap(s.hart, Cause.StorePageFault, VA, CODE);
  });
});

describe("hart - Sv32 SFENCE.VMA and satp", () => {
  it("after a PTE change and SFENCE.VMA the new mapping is used", () => {
    const s = paged(Priv.S, [a.lw(1, 10, 0), a.sfencevma(), a.lw(2, 10, 0)], (pt) => pt.map4k(VA, DATA, RW));
    s.bus.write32(DATA, 1111);
    s.bus.write32(DATA + 0x1000, 2222);
    s.hart.run(1);
    expect(s.hart.x[1]).toBe(1111);
    s.bus.write32(s.pt.leafAddress(VA), pte(DATA + 0x1000, RW | PTE_V));
    s.hart.run(2);
    expect(s.hart.x[2]).toBe(2222);
  });

  it("SFENCE.VMA makes a removed mapping fault", () => {
    const s = paged(Priv.S, [a.lw(1, 10, 0), a.sfencevma(), a.lw(2, 10, 0)], (pt) => pt.map4k(VA, DATA, RW));
    s.hart.run(1);
    s.bus.write32(s.pt.leafAddress(VA), 0);
    s.hart.run(4);
    expectTrap(s.hart, Cause.LoadPageFault, VA, CODE + 8);
  });

  it("writing satp switches to the new page tables", () => {
    const program = [a.lw(1, 10, 0), a.csrrw(0, Csr.satp, 5), a.lw(2, 10, 0)];
    const s = paged(Priv.S, program, (pt) => pt.map4k(VA, DATA, RW));
    // A second root: the same code mapping, VA -> DATA + 0x1000.
    const other = new PageTables(s.bus, RAM_BASE + 0x20000);
    for (let p = RAM_BASE; p < RAM_BASE + 0x5000; p += 0x1000) other.map4k(p, p, PTE_R | PTE_X | PTE_A | PTE_D);
    other.map4k(VA, DATA + 0x1000, RW);
    s.bus.write32(DATA, 1111);
    s.bus.write32(DATA + 0x1000, 2222);
    s.hart.x[5] = other.satp;
    s.hart.run(3);
    expect(s.hart.x[1]).toBe(1111);
    expect(s.hart.x[2]).toBe(2222);
  });

  it("satp with MODE = Bare turns translation off", () => {
    const s = paged(Priv.S, [a.lw(1, 10, 0)], (pt) => pt.map4k(VA, DATA, RW));
    s.hart.csrWrite(Csr.satp, 0);
    s.hart.x[10] = DATA;
    s.bus.write32(DATA, 4242);
    s.hart.run(1);
    expect(s.hart.x[1]).toBe(4242);
  });
});

describe("hart - Sv32 MPRV", () => {
  function mprv(program: readonly number[], mode: Priv, flags: number, mprvOn = true) {
    const s = machine(program);
    const pt = new PageTables(s.bus);
    pt.map4k(VA, DATA, flags);
    s.hart.csrWrite(Csr.satp, satpFor(pt.root));
    s.hart.csrWrite(Csr.mstatus, (mprvOn ? MSTATUS_MPRV : 0) | (mode << MSTATUS_MPP_SHIFT));
    s.hart.x[10] = VA;
    s.bus.write32(DATA, 0x1357);
    return { ...s, pt };
  }

  it("M-mode loads and stores with MPRV = 1 use MPP's translation (fetch stays physical)", () => {
    const s = mprv([a.lw(1, 10, 0), a.sw(1, 10, 4)], Priv.S, RW);
    s.hart.run(2);
    expect(pcOf(s.hart)).toBe(RAM_BASE + 8);
    expect(s.hart.x[1]).toBe(0x1357);
    expect(s.bus.read32(DATA + 4)).toBe(0x1357);
    expect(s.bus.read32(s.pt.leafAddress(VA)) & (PTE_A | PTE_D)).toBe(PTE_A | PTE_D);
  });

  it("without MPRV, M-mode addresses are physical", () => {
    const s = mprv([a.lw(1, 10, 0)], Priv.S, RW, false);
    s.hart.run(3);
    expectTrap(s.hart, Cause.LoadAccessFault, VA, RAM_BASE);
  });

  it("MPRV with MPP = U applies U-mode permissions", () => {
    const s = mprv([a.lw(1, 10, 0)], Priv.U, RW);
    s.hart.run(3);
    expectTrap(s.hart, Cause.LoadPageFault, VA, RAM_BASE);
    const ok = mprv([a.lw(1, 10, 0)], Priv.U, RW | PTE_U);
    ok.hart.run(1);
    expect(ok.hart.x[1]).toBe(0x1357);
  });

  it("MPRV with MPP = M leaves data accesses physical", () => {
    const s = mprv([a.lw(1, 10, 0)], Priv.M, RW);
    s.hart.x[10] = DATA;
    s.hart.run(1);
    expect(s.hart.x[1]).toBe(0x1357);
  });

  it("a page fault under MPRV is taken in M even if medeleg delegates it", () => {
    const s = mprv([a.lw(1, 10, 0)], Priv.S, PTE_X);
    s.hart.csrWrite(Csr.medeleg, 1 << Cause.LoadPageFault);
    s.hart.run(3);
    expectTrap(s.hart, Cause.LoadPageFault, VA, RAM_BASE);
  });
});

describe("hart - Sv32 misaligned accesses across pages", () => {
  it("a misaligned store split between a RAM page and an MMIO page writes both parts", () => {
    const s = paged(Priv.S, [a.sw(1, 10, 0)], (pt) => {
      pt.map4k(VA, DATA, RW);
      pt.map4k(VA + 0x1000, MMIO_BASE, RW);
    });
    s.hart.x[10] = VA + 0xffe;
    s.hart.x[1] = 0x1234_5678;
    s.hart.run(1);
    expect(pcOf(s.hart)).toBe(CODE + 4);
    expect(s.bus.read32(DATA + 0xffc) >>> 0).toBe(0x5678_0000);
    expect(s.bus.mmioStores).toEqual([
      { pa: MMIO_BASE, size: 1, value: 0x34 },
      { pa: MMIO_BASE + 1, size: 1, value: 0x12 },
    ]);
  });

  it("a misaligned load whose second page faults raises a page fault with tval in the faulting page", () => {
    const s = paged(Priv.S, [a.lw(1, 10, 0)], (pt) => pt.map4k(VA, DATA, RW));
    s.hart.x[10] = VA + 0xffe;
    s.hart.x[1] = 99;
    s.hart.run(3);
    expect(csr(s.hart, Csr.mcause)).toBe(Cause.LoadPageFault);
    const tval = csr(s.hart, Csr.mtval) >>> 0;
    expect(tval).toBeGreaterThanOrEqual(VA + 0x1000);
    expect(tval).toBeLessThanOrEqual(VA + 0x1001);
    expect(s.hart.x[1]).toBe(99);
  });

  it("a misaligned store whose second page is read-only writes nothing", () => {
    const s = paged(Priv.S, [a.sw(1, 10, 0)], (pt) => {
      pt.map4k(VA, DATA, RW);
      pt.map4k(VA + 0x1000, DATA + 0x1000, PTE_R);
    });
    s.hart.x[10] = VA + 0xffe;
    s.hart.x[1] = -1;
    s.hart.run(3);
    expect(csr(s.hart, Csr.mcause)).toBe(Cause.StorePageFault);
    expect(s.bus.read32(DATA + 0xffc)).toBe(0);
    expect(s.bus.read32(DATA + 0x1000)).toBe(0);
  });
});
