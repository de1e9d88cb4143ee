import { describe, expect, it } from "vitest";
import {
  CAUSE_INTERRUPT, Cause, Csr, MIP_MEIP, MIP_MSIP, MIP_MTIP, MIP_SEIP, MIP_SSIP, MIP_STIP, MISA, MSTATUS_MIE,
  MSTATUS_MPIE, MSTATUS_MPP, MSTATUS_MPP_SHIFT, MSTATUS_MPRV, MSTATUS_SIE, MSTATUS_SPIE, MSTATUS_SPP, MSTATUS_TSR,
  MSTATUS_TVM, MSTATUS_TW,
} from "../src/csr.js";
import { Exit } from "../src/hart.js";
import * as a from "./asm.js";
import { CODE, csr, enter, machine, M_HANDLER, pcOf, Priv, S_HANDLER } from "./helpers.js";
import { RAM_BASE } from "./machine.js";

const mpp = (mstatus: number): number => (mstatus & MSTATUS_MPP) >>> MSTATUS_MPP_SHIFT;
const SENTINEL = 0x55;

describe("hart - ECALL and EBREAK", () => {
  it("ECALL from M-mode traps with cause 11, mepc = the ECALL and mtval = 0", () => {
    const { hart } = machine([a.addi(0, 0, 0), a.ecall()]);
    hart.csrWrite(Csr.mtval, SENTINEL);
    hart.run(5);
    expect(csr(hart, Csr.mcause)).toBe(Cause.EcallFromM);
    expect(csr(hart, Csr.mepc) >>> 0).toBe(RAM_BASE + 4);
    expect(csr(hart, Csr.mtval)).toBe(0);
    expect(pcOf(hart)).toBe(M_HANDLER);
    expect(hart.priv).toBe(Priv.M);
    expect(mpp(hart.mstatus)).toBe(Priv.M);
  });

  it("ECALL from S-mode traps to M with cause 9 and MPP = S", () => {
    const { hart } = enter(Priv.S, [a.addi(0, 0, 0), a.ecall()]);
    hart.run(5);
    expect(csr(hart, Csr.mcause)).toBe(Cause.EcallFromS);
    expect(csr(hart, Csr.mepc) >>> 0).toBe(CODE + 4);
    expect(hart.priv).toBe(Priv.M);
    expect(mpp(hart.mstatus)).toBe(Priv.S);
    expect(pcOf(hart)).toBe(M_HANDLER);
  });

  it("ECALL from U-mode traps to M with cause 8 and MPP = U", () => {
    const { hart } = enter(Priv.U, [a.ecall()]);
    hart.run(5);
    expect(csr(hart, Csr.mcause)).toBe(Cause.EcallFromU);
    expect(csr(hart, Csr.mepc) >>> 0).toBe(CODE);
    expect(hart.priv).toBe(Priv.M);
    expect(mpp(hart.mstatus)).toBe(Priv.U);
  });

  it("EBREAK raises a breakpoint (cause 3) at its own address", () => {
    const { hart } = machine([a.addi(0, 0, 0), a.ebreak()]);
    hart.run(5);
    expect(csr(hart, Csr.mcause)).toBe(Cause.Breakpoint);
    expect(csr(hart, Csr.mepc) >>> 0).toBe(RAM_BASE + 4);
    // mtval is either 0 or the faulting address (privileged spec, mtval)
    expect([0, RAM_BASE + 4]).toContain(csr(hart, Csr.mtval) >>> 0);
  });

  it("ECALL and EBREAK do not retire", () => {
    for (const insn of [a.ecall(), a.ebreak()]) {
      const s = machine([a.addi(0, 0, 0), insn]);
      s.bus.load(M_HANDLER, [a.csrrs(5, Csr.minstret, 0), a.jal(0, 0)]);
      s.hart.run(3); // ADDI, the trapping instruction (it spends budget), the handler's read
      expect(s.hart.x[5]).toBe(1); // only the first ADDI retired before the handler's read
    }
  });

  it("with ecallExit, ECALL from S-mode returns Exit.Ecall without trapping", () => {
    const { hart } = enter(Priv.S, [a.ecall(), a.addi(1, 0, 1)], { options: { ecallExit: true } });
    hart.csrWrite(Csr.mcause, SENTINEL);
    expect(hart.run(10)).toBe(Exit.Ecall);
    expect(pcOf(hart)).toBe(CODE); // the hypervisor advances pc
    expect(hart.priv).toBe(Priv.S);
    expect(csr(hart, Csr.mcause)).toBe(SENTINEL);
    expect(hart.x[1]).toBe(0);
  });

  it("with ecallExit, ECALL from U-mode still traps", () => {
    const { hart } = enter(Priv.U, [a.ecall()], { options: { ecallExit: true } });
    expect(hart.run(3)).toBe(Exit.Budget);
    expect(csr(hart, Csr.mcause)).toBe(Cause.EcallFromU);
  });
});

describe("hart - illegal instructions", () => {
  const words: [string, number][] = [
    ["all zeros", 0x0000_0000],
    ["all ones", 0xffff_ffff],
    ["a compressed instruction (c.li a0, 0)", 0x0000_4501],
    ["a reserved branch funct3", 0x0000_2063],
    ["a reserved load funct3 (LD on RV64)", 0x0000_3003],
    ["an AMO with funct3 = 3 (RV64 .D)", 0x0000_b0af],
    ["a CSR instruction with funct3 = 4", 0x3400_4073],
  ];
  for (const [name, word] of words) {
    it(`${name} raises cause 2 with mtval = the instruction bits`, () => {
      const { hart } = machine([a.addi(0, 0, 0), word]);
      hart.run(5);
      expect(csr(hart, Csr.mcause)).toBe(Cause.IllegalInstruction);
      expect(csr(hart, Csr.mtval) >>> 0).toBe(word >>> 0);
      expect(csr(hart, Csr.mepc) >>> 0).toBe(RAM_BASE + 4);
    });
  }

  it("an access to a CSR that does not exist is illegal, mtval = the instruction, rd untouched", () => {
    const insn = a.csrrs(1, 0x7c0, 0);
    const { hart } = machine([insn]);
    hart.x[1] = 99;
    hart.run(3);
    expect(csr(hart, Csr.mcause)).toBe(Cause.IllegalInstruction);
    expect(csr(hart, Csr.mtval) >>> 0).toBe(insn);
    expect(hart.x[1]).toBe(99);
  });

  it("an illegal instruction does not retire", () => {
    const s = machine([a.addi(0, 0, 0), 0]);
    s.bus.load(M_HANDLER, [a.csrrs(5, Csr.minstret, 0), a.jal(0, 0)]);
    s.hart.run(3); // ADDI, the illegal word (it spends budget), the handler's read
    expect(s.hart.x[5]).toBe(1);
  });
});

describe("hart - mtvec", () => {
  const VEC = RAM_BASE + 0x5000;
  function vectored(mode: number) {
    const s = machine([a.addi(0, 0, 0), a.ecall()]);
    const spin = a.jal(0, 0);
    for (let i = 0; i < 16; i++) s.bus.load(VEC + 4 * i, [spin]);
    s.hart.csrWrite(Csr.mtvec, VEC | mode);
    return s;
  }

  it("direct mode sends exceptions and interrupts to the base", () => {
    const s = vectored(0);
    s.hart.run(5);
    expect(pcOf(s.hart)).toBe(VEC);
    s.hart.csrWrite(Csr.mie, MIP_MTIP);
    s.hart.csrWrite(Csr.mstatus, MSTATUS_MIE);
    s.hart.setInterruptLine(MIP_MTIP, true);
    s.hart.pc = RAM_BASE;
    s.hart.run(1);
    expect(csr(s.hart, Csr.mcause) >>> 0).toBe((CAUSE_INTERRUPT | 7) >>> 0);
    expect(pcOf(s.hart)).toBe(VEC);
  });

  it("vectored mode sends exceptions to the base", () => {
    const s = vectored(1);
    s.hart.run(5);
    expect(csr(s.hart, Csr.mcause)).toBe(Cause.EcallFromM);
    expect(pcOf(s.hart)).toBe(VEC);
  });

  it("vectored mode sends interrupts to base + 4 * cause", () => {
    for (const [bit, cause] of [[MIP_MTIP, 7], [MIP_MEIP, 11], [MIP_MSIP, 3]] as const) {
      const s = vectored(1);
      s.hart.csrWrite(Csr.mie, bit);
      s.hart.csrWrite(Csr.mstatus, MSTATUS_MIE);
      s.hart.setInterruptLine(bit, true);
      s.hart.run(1);
      expect(csr(s.hart, Csr.mcause) >>> 0).toBe((CAUSE_INTERRUPT | cause) >>> 0);
      expect(pcOf(s.hart)).toBe(VEC + 4 * cause);
      expect(csr(s.hart, Csr.mepc) >>> 0).toBe(RAM_BASE);
    }
  });

  it("mtvec keeps only legal modes (0 direct, 1 vectored)", () => {
    const { hart } = machine([]);
    for (const v of [VEC | 2, VEC | 3]) {
      hart.csrWrite(Csr.mtvec, v);
      expect(csr(hart, Csr.mtvec) & 3).toBeLessThan(2);
    }
  });
});

describe("hart - MRET and SRET", () => {
  it("MRET goes to MPP at mepc, sets MIE from MPIE, MPIE to 1 and MPP to U", () => {
    const s = machine([a.mret()]);
    s.bus.load(CODE, [a.addi(0, 0, 0)]);
    s.hart.csrWrite(Csr.mstatus, (Priv.S << MSTATUS_MPP_SHIFT) | MSTATUS_MPIE);
    s.hart.csrWrite(Csr.mepc, CODE);
    s.hart.run(1);
    expect(s.hart.priv).toBe(Priv.S);
    expect(pcOf(s.hart)).toBe(CODE);
    const m = s.hart.mstatus;
    expect(m & MSTATUS_MIE).toBe(MSTATUS_MIE);
    expect(m & MSTATUS_MPIE).toBe(MSTATUS_MPIE);
    expect(mpp(m)).toBe(Priv.U);
  });

  it("MRET with MPIE = 0 leaves MIE = 0", () => {
    const s = machine([a.mret()]);
    s.hart.csrWrite(Csr.mstatus, (Priv.U << MSTATUS_MPP_SHIFT) | MSTATUS_MIE);
    s.hart.csrWrite(Csr.mepc, CODE);
    s.hart.run(1);
    expect(s.hart.priv).toBe(Priv.U);
    expect(s.hart.mstatus & MSTATUS_MIE).toBe(0);
    expect(s.hart.mstatus & MSTATUS_MPIE).toBe(MSTATUS_MPIE);
  });

  it("MRET to a lower mode clears MPRV; MRET to M keeps it", () => {
    const toU = machine([a.mret()]);
    toU.hart.csrWrite(Csr.mstatus, (Priv.U << MSTATUS_MPP_SHIFT) | MSTATUS_MPRV);
    toU.hart.csrWrite(Csr.mepc, CODE);
    toU.hart.run(1);
    expect(toU.hart.mstatus & MSTATUS_MPRV).toBe(0);
    const toM = machine([a.mret()]);
    toM.hart.csrWrite(Csr.mstatus, (Priv.M << MSTATUS_MPP_SHIFT) | MSTATUS_MPRV);
    toM.hart.csrWrite(Csr.mepc, CODE);
    toM.hart.run(1);
    expect(toM.hart.priv).toBe(Priv.M);
    expect(toM.hart.mstatus & MSTATUS_MPRV).toBe(MSTATUS_MPRV);
  });

  it("SRET from S goes to SPP at sepc, sets SIE from SPIE, SPIE to 1 and SPP to U", () => {
    const { hart } = enter(Priv.S, [a.sret()]);
    hart.csrWrite(Csr.sstatus, MSTATUS_SPIE);
    hart.csrWrite(Csr.sepc, CODE + 0x40);
    hart.run(1);
    expect(hart.priv).toBe(Priv.U);
    expect(pcOf(hart)).toBe(CODE + 0x40);
    const sstatus = csr(hart, Csr.sstatus);
    expect(sstatus & MSTATUS_SIE).toBe(MSTATUS_SIE);
    expect(sstatus & MSTATUS_SPIE).toBe(MSTATUS_SPIE);
    expect(sstatus & MSTATUS_SPP).toBe(0);
  });

  it("SRET with SPP = S stays in S; SPIE = 0 leaves SIE = 0", () => {
    const { hart } = enter(Priv.S, [a.sret()]);
    hart.csrWrite(Csr.sstatus, MSTATUS_SPP | MSTATUS_SIE);
    hart.csrWrite(Csr.sepc, CODE + 0x40);
    hart.run(1);
    expect(hart.priv).toBe(Priv.S);
    expect(csr(hart, Csr.sstatus) & (MSTATUS_SIE | MSTATUS_SPP)).toBe(0);
  });

  it("SRET from M-mode is allowed and goes to SPP", () => {
    const { hart } = machine([a.sret()]);
    hart.csrWrite(Csr.mstatus, MSTATUS_SPP);
    hart.csrWrite(Csr.sepc, CODE);
    hart.run(1);
    expect(hart.priv).toBe(Priv.S);
    expect(pcOf(hart)).toBe(CODE);
  });

  it("a trap into M saves MIE in MPIE, clears MIE and records the previous mode", () => {
    const { hart } = enter(Priv.S, [a.ecall()], { mstatus: MSTATUS_MPIE }); // MRET makes MIE = 1
    expect(hart.mstatus & MSTATUS_MIE).toBe(MSTATUS_MIE);
    hart.run(3);
    expect(hart.mstatus & MSTATUS_MIE).toBe(0);
    expect(hart.mstatus & MSTATUS_MPIE).toBe(MSTATUS_MPIE);
    expect(mpp(hart.mstatus)).toBe(Priv.S);
  });

  it("a trap into S saves SIE in SPIE, clears SIE and records SPP", () => {
    const fromS = enter(Priv.S, [a.ecall()]).hart;
    fromS.csrWrite(Csr.medeleg, 1 << Cause.EcallFromS);
    fromS.csrWrite(Csr.sstatus, MSTATUS_SIE);
    fromS.run(3);
    expect(fromS.priv).toBe(Priv.S);
    expect(fromS.mstatus & (MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP)).toBe(MSTATUS_SPIE | MSTATUS_SPP);
    const fromU = enter(Priv.U, [a.ecall()]).hart;
    fromU.csrWrite(Csr.medeleg, 1 << Cause.EcallFromU);
    fromU.run(3);
    expect(fromU.priv).toBe(Priv.S);
    expect(fromU.mstatus & (MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP)).toBe(0);
  });

  it("a trap and MRET round trip returns to the interrupted mode and address", () => {
    const s = enter(Priv.U, [a.ecall(), a.addi(1, 0, 7)]);
    // handler: mepc += 4; mret
    s.bus.load(M_HANDLER, [a.csrrs(5, Csr.mepc, 0), a.addi(5, 5, 4), a.csrrw(0, Csr.mepc, 5), a.mret()]);
    s.hart.run(6); // ECALL, four handler instructions, the ADDI
    expect(s.hart.priv).toBe(Priv.U);
    expect(s.hart.x[1]).toBe(7);
    expect(pcOf(s.hart)).toBe(CODE + 8);
  });
});

describe("hart - exception delegation", () => {
  it("a delegated ECALL from U goes to S: scause, sepc, stval set; mcause untouched", () => {
    const { hart } = enter(Priv.U, [a.addi(0, 0, 0), a.ecall()]);
    hart.csrWrite(Csr.medeleg, 1 << Cause.EcallFromU);
    hart.csrWrite(Csr.mcause, SENTINEL);
    hart.csrWrite(Csr.stval, SENTINEL);
    hart.run(5);
    expect(hart.priv).toBe(Priv.S);
    expect(pcOf(hart)).toBe(S_HANDLER);
    expect(csr(hart, Csr.scause)).toBe(Cause.EcallFromU);
    expect(csr(hart, Csr.sepc) >>> 0).toBe(CODE + 4);
    expect(csr(hart, Csr.stval)).toBe(0);
    expect(csr(hart, Csr.mcause)).toBe(SENTINEL);
  });

  it("a delegated illegal instruction in S sets stval to the instruction bits", () => {
    const { hart } = enter(Priv.S, [0xffff_ffff]);
    hart.csrWrite(Csr.medeleg, 1 << Cause.IllegalInstruction);
    hart.run(3);
    expect(hart.priv).toBe(Priv.S);
    expect(csr(hart, Csr.scause)).toBe(Cause.IllegalInstruction);
    expect(csr(hart, Csr.stval) >>> 0).toBe(0xffff_ffff);
    expect(csr(hart, Csr.sepc) >>> 0).toBe(CODE);
  });

  it("a delegated load access fault from U sets stval to the address", () => {
    const { hart } = enter(Priv.U, [a.lw(1, 10, 4)]);
    hart.csrWrite(Csr.medeleg, 1 << Cause.LoadAccessFault);
    hart.x[10] = 0x2000_0000;
    hart.run(3);
    expect(csr(hart, Csr.scause)).toBe(Cause.LoadAccessFault);
    expect(csr(hart, Csr.stval) >>> 0).toBe(0x2000_0004);
  });

  it("an exception whose medeleg bit is clear goes to M", () => {
    const { hart } = enter(Priv.U, [a.ecall()]);
    hart.csrWrite(Csr.medeleg, 1 << Cause.EcallFromS);
    hart.csrWrite(Csr.scause, SENTINEL);
    hart.run(3);
    expect(hart.priv).toBe(Priv.M);
    expect(csr(hart, Csr.mcause)).toBe(Cause.EcallFromU);
    expect(csr(hart, Csr.scause)).toBe(SENTINEL);
  });

  it("exceptions in M-mode are never delegated", () => {
    for (const insn of [0xffff_ffff, a.ecall(), a.ebreak()]) {
      const { hart } = machine([insn]);
      hart.csrWrite(Csr.medeleg, -1);
      hart.csrWrite(Csr.scause, SENTINEL);
      hart.run(3);
      expect(hart.priv).toBe(Priv.M);
      expect(pcOf(hart)).toBe(M_HANDLER);
      expect(csr(hart, Csr.scause)).toBe(SENTINEL);
    }
  });

  it("medeleg bit 11 (ECALL from M) is read-only zero", () => {
    const { hart } = machine([]);
    hart.csrWrite(Csr.medeleg, -1);
    expect(csr(hart, Csr.medeleg) & (1 << 11)).toBe(0);
    expect(csr(hart, Csr.medeleg) & (1 << Cause.EcallFromU)).not.toBe(0);
  });
});

describe("hart - interrupts", () => {
  it("an M interrupt is not taken in M with MIE = 0, and is taken right after MIE is set", () => {
    const { hart } = machine([a.addi(1, 0, 1), a.csrrsi(0, Csr.mstatus, MSTATUS_MIE), a.addi(2, 0, 1)]);
    hart.csrWrite(Csr.mie, MIP_MTIP);
    hart.setInterruptLine(MIP_MTIP, true);
    hart.run(10);
    expect(hart.x[1]).toBe(1);
    expect(hart.x[2]).toBe(0);
    expect(csr(hart, Csr.mcause) >>> 0).toBe((CAUSE_INTERRUPT | 7) >>> 0);
    expect(csr(hart, Csr.mepc) >>> 0).toBe(RAM_BASE + 8);
    expect(csr(hart, Csr.mtval)).toBe(0);
    expect(hart.mstatus & MSTATUS_MIE).toBe(0);
    expect(hart.mstatus & MSTATUS_MPIE).toBe(MSTATUS_MPIE);
  });

  it("an M interrupt pending but disabled in mie is not taken", () => {
    const { hart } = machine([a.addi(1, 0, 1), a.addi(2, 0, 1)]);
    hart.csrWrite(Csr.mstatus, MSTATUS_MIE);
    hart.csrWrite(Csr.mie, MIP_MSIP);
    hart.setInterruptLine(MIP_MTIP, true);
    hart.run(2);
    expect(hart.x[2]).toBe(1);
    expect(pcOf(hart)).toBe(RAM_BASE + 8);
  });

  for (const priv of [Priv.S, Priv.U]) {
    it(`M-level interrupts are taken in ${priv === Priv.S ? "S" : "U"}-mode even with MIE = 0`, () => {
      const { hart } = enter(priv, [a.addi(1, 0, 1)]);
      expect(hart.mstatus & MSTATUS_MIE).toBe(0);
      hart.csrWrite(Csr.mie, MIP_MEIP);
      hart.setInterruptLine(MIP_MEIP, true);
      hart.run(1);
      expect(hart.x[1]).toBe(0);
      expect(csr(hart, Csr.mcause) >>> 0).toBe((CAUSE_INTERRUPT | 11) >>> 0);
      expect(csr(hart, Csr.mepc) >>> 0).toBe(CODE);
      expect(mpp(hart.mstatus)).toBe(priv);
      expect(hart.priv).toBe(Priv.M);
    });
  }

  it("a non-delegated S-level interrupt is taken into M from S even with MIE = 0", () => {
    const { hart } = enter(Priv.S, [a.addi(1, 0, 1)]);
    hart.csrWrite(Csr.mie, MIP_SEIP);
    hart.csrWrite(Csr.mip, MIP_SEIP);
    hart.run(1);
    expect(hart.priv).toBe(Priv.M);
    expect(csr(hart, Csr.mcause) >>> 0).toBe((CAUSE_INTERRUPT | 9) >>> 0);
  });

  it("a delegated S interrupt is taken in U regardless of SIE, into S with scause", () => {
    const { hart } = enter(Priv.U, [a.addi(1, 0, 1)]);
    hart.csrWrite(Csr.mideleg, MIP_STIP);
    hart.csrWrite(Csr.mie, MIP_STIP);
    hart.csrWrite(Csr.mip, MIP_STIP);
    hart.csrWrite(Csr.mcause, SENTINEL);
    hart.run(1);
    expect(hart.priv).toBe(Priv.S);
    expect(pcOf(hart)).toBe(S_HANDLER);
    expect(csr(hart, Csr.scause) >>> 0).toBe((CAUSE_INTERRUPT | 5) >>> 0);
    expect(csr(hart, Csr.sepc) >>> 0).toBe(CODE);
    expect(csr(hart, Csr.mcause)).toBe(SENTINEL);
  });

  it("a delegated S interrupt in S waits for SIE", () => {
    const { hart } = enter(Priv.S, [a.addi(1, 0, 1), a.csrrsi(0, Csr.sstatus, MSTATUS_SIE), a.addi(2, 0, 1)]);
    hart.csrWrite(Csr.mideleg, MIP_SSIP);
    hart.csrWrite(Csr.mie, MIP_SSIP);
    hart.csrWrite(Csr.mip, MIP_SSIP);
    hart.run(10);
    expect(hart.x[1]).toBe(1);
    expect(hart.x[2]).toBe(0);
    expect(pcOf(hart)).toBe(S_HANDLER);
    expect(csr(hart, Csr.scause) >>> 0).toBe((CAUSE_INTERRUPT | 1) >>> 0);
    expect(csr(hart, Csr.sepc) >>> 0).toBe(CODE + 8);
    expect(csr(hart, Csr.sstatus) & (MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP)).toBe(MSTATUS_SPIE | MSTATUS_SPP);
  });

  it("a delegated S interrupt is never taken in M, even with MIE and SIE set", () => {
    const { hart } = machine([a.addi(1, 0, 1), a.addi(2, 0, 1)]);
    hart.csrWrite(Csr.mstatus, MSTATUS_MIE | MSTATUS_SIE);
    hart.csrWrite(Csr.mideleg, MIP_STIP);
    hart.csrWrite(Csr.mie, MIP_STIP);
    hart.csrWrite(Csr.mip, MIP_STIP);
    hart.run(2);
    expect(hart.x[2]).toBe(1);
    expect(hart.priv).toBe(Priv.M);
  });

  it("priority is MEI > MSI > MTI > SEI > SSI > STI", () => {
    const order: [number, number][] = [[MIP_MEIP, 11], [MIP_MSIP, 3], [MIP_MTIP, 7], [MIP_SEIP, 9], [MIP_SSIP, 1], [MIP_STIP, 5]];
    for (let first = 0; first < order.length; first++) {
      const { hart } = machine([a.addi(0, 0, 0)]);
      hart.csrWrite(Csr.mstatus, MSTATUS_MIE);
      hart.csrWrite(Csr.mie, -1);
      let software = 0;
      for (const [bit] of order.slice(first)) {
        if (bit === MIP_MEIP || bit === MIP_MSIP || bit === MIP_MTIP) hart.setInterruptLine(bit, true);
        else software |= bit;
      }
      hart.csrWrite(Csr.mip, software);
      hart.run(1);
      expect(csr(hart, Csr.mcause) >>> 0).toBe((CAUSE_INTERRUPT | order[first]![1]) >>> 0);
    }
  });

  it("among delegated interrupts SEI > SSI > STI", () => {
    const order: [number, number][] = [[MIP_SEIP, 9], [MIP_SSIP, 1], [MIP_STIP, 5]];
    for (let first = 0; first < order.length; first++) {
      const { hart } = enter(Priv.U, [a.addi(0, 0, 0)]);
      hart.csrWrite(Csr.mideleg, MIP_SEIP | MIP_SSIP | MIP_STIP);
      hart.csrWrite(Csr.mie, -1);
      hart.csrWrite(Csr.mip, order.slice(first).reduce((m, [bit]) => m | bit, 0));
      hart.run(1);
      expect(csr(hart, Csr.scause) >>> 0).toBe((CAUSE_INTERRUPT | order[first]![1]) >>> 0);
    }
  });

  it("an M interrupt wins over a delegated S interrupt in S-mode", () => {
    const { hart } = enter(Priv.S, [a.addi(0, 0, 0)]);
    hart.csrWrite(Csr.sstatus, MSTATUS_SIE);
    hart.csrWrite(Csr.mideleg, MIP_SEIP);
    hart.csrWrite(Csr.mie, MIP_SEIP | MIP_MTIP);
    hart.csrWrite(Csr.mip, MIP_SEIP);
    hart.setInterruptLine(MIP_MTIP, true);
    hart.run(1);
    expect(hart.priv).toBe(Priv.M);
    expect(csr(hart, Csr.mcause) >>> 0).toBe((CAUSE_INTERRUPT | 7) >>> 0);
  });

  it("sie and sip show only delegated bits; S can set SSIP only when delegated", () => {
    const { hart } = machine([]);
    hart.csrWrite(Csr.mie, MIP_MTIP | MIP_STIP | MIP_SSIP);
    hart.csrWrite(Csr.mideleg, MIP_SSIP);
    expect(csr(hart, Csr.sie)).toBe(MIP_SSIP);
    hart.csrWrite(Csr.sip, -1);
    expect(csr(hart, Csr.mip)).toBe(MIP_SSIP);
    hart.csrWrite(Csr.mideleg, 0);
    hart.csrWrite(Csr.mip, 0);
    hart.csrWrite(Csr.sip, -1);
    expect(csr(hart, Csr.mip)).toBe(0);
  });

  it("mideleg cannot delegate M-level interrupts", () => {
    const { hart } = machine([]);
    hart.csrWrite(Csr.mideleg, -1);
    expect(csr(hart, Csr.mideleg) & (MIP_MEIP | MIP_MSIP | MIP_MTIP)).toBe(0);
  });
});

describe("hart - WFI", () => {
  it("returns Exit.Wfi when nothing is pending, with pc past the WFI", () => {
    const { hart } = machine([a.addi(1, 0, 1), a.wfi(), a.addi(2, 0, 1)]);
    expect(hart.run(10)).toBe(Exit.Wfi);
    expect(pcOf(hart)).toBe(RAM_BASE + 8);
    expect(hart.x[1]).toBe(1);
    expect(hart.x[2]).toBe(0);
    expect(hart.run(1)).toBe(Exit.Budget);
    expect(hart.x[2]).toBe(1);
  });

  it("continues when an interrupt is pending and enabled in mie but globally disabled", () => {
    const { hart } = machine([a.wfi(), a.addi(2, 0, 1)]);
    hart.csrWrite(Csr.mie, MIP_MTIP);
    hart.setInterruptLine(MIP_MTIP, true);
    expect(hart.run(2)).toBe(Exit.Budget);
    expect(hart.x[2]).toBe(1);
    expect(hart.priv).toBe(Priv.M);
  });

  it("takes an enabled interrupt after the WFI (mepc = the next instruction)", () => {
    const { hart } = machine([a.wfi(), a.addi(2, 0, 1)]);
    hart.csrWrite(Csr.mie, MIP_MTIP);
    hart.run(1);
    hart.setInterruptLine(MIP_MTIP, true);
    hart.csrWrite(Csr.mstatus, MSTATUS_MIE);
    hart.run(1);
    expect(csr(hart, Csr.mepc) >>> 0).toBe(RAM_BASE + 4);
    expect(hart.x[2]).toBe(0);
  });

  it("WFI in S-mode with TW = 0 waits", () => {
    const { hart } = enter(Priv.S, [a.wfi()]);
    expect(hart.run(3)).toBe(Exit.Wfi);
    expect(pcOf(hart)).toBe(CODE + 4);
  });
});

describe("hart - privileged instructions in lower modes", () => {
  const illegalIn = (priv: Priv, insn: number, mstatus = 0) => {
    const { hart } = enter(priv, [insn]);
    hart.csrWrite(Csr.mstatus, (hart.mstatus & ~(MSTATUS_TSR | MSTATUS_TW | MSTATUS_TVM)) | mstatus);
    hart.run(3);
    expect(hart.priv).toBe(Priv.M);
    expect(csr(hart, Csr.mcause)).toBe(Cause.IllegalInstruction);
    expect(csr(hart, Csr.mtval) >>> 0).toBe(insn >>> 0);
    expect(csr(hart, Csr.mepc) >>> 0).toBe(CODE);
  };
  it("MRET in S-mode is illegal", () => illegalIn(Priv.S, a.mret()));
  it("MRET in U-mode is illegal", () => illegalIn(Priv.U, a.mret()));
  it("SRET in U-mode is illegal", () => illegalIn(Priv.U, a.sret()));
  it("SRET in S-mode with TSR is illegal", () => illegalIn(Priv.S, a.sret(), MSTATUS_TSR));
  it("WFI in S-mode with TW is illegal", () => illegalIn(Priv.S, a.wfi(), MSTATUS_TW));
  it("WFI in U-mode is illegal", () => illegalIn(Priv.U, a.wfi()));
  it("SFENCE.VMA in S-mode with TVM is illegal", () => illegalIn(Priv.S, a.sfencevma(), MSTATUS_TVM));
  it("SFENCE.VMA in U-mode is illegal", () => illegalIn(Priv.U, a.sfencevma()));
  it("reading satp in S-mode with TVM is illegal", () => illegalIn(Priv.S, a.csrrs(1, Csr.satp, 0), MSTATUS_TVM));
  it("writing satp in S-mode with TVM is illegal", () => illegalIn(Priv.S, a.csrrw(0, Csr.satp, 0), MSTATUS_TVM));

  it("SFENCE.VMA and satp work in S-mode without TVM, and in M-mode with TVM", () => {
    const s = enter(Priv.S, [a.sfencevma(), a.csrrs(1, Csr.satp, 0)]);
    s.hart.csrWrite(Csr.satp, 0x1234);
    s.hart.run(2);
    expect(pcOf(s.hart)).toBe(CODE + 8);
    expect(s.hart.x[1]).toBe(0x1234);
    const m = machine([a.sfencevma(), a.csrrs(1, Csr.satp, 0)]);
    m.hart.csrWrite(Csr.mstatus, MSTATUS_TVM);
    m.hart.csrWrite(Csr.satp, 0x1234);
    m.hart.run(2);
    expect(m.hart.x[1]).toBe(0x1234);
  });

  it("SRET in S-mode without TSR works", () => {
    const { hart } = enter(Priv.S, [a.sret()]);
    hart.csrWrite(Csr.sepc, CODE + 0x10);
    hart.run(1);
    expect(hart.priv).toBe(Priv.U);
    expect(pcOf(hart)).toBe(CODE + 0x10);
  });
});

describe("hart - CSR instructions", () => {
  function csrs(program: readonly number[], regs: Record<number, number> = {}) {
    const s = machine(program);
    for (const [r, v] of Object.entries(regs)) s.hart.x[Number(r)] = v;
    s.hart.csrWrite(Csr.mscratch, 0x0f0f_00ff);
    s.hart.run(program.length);
    expect(pcOf(s.hart)).toBe(RAM_BASE + 4 * program.length);
    return s.hart;
  }

  it("CSRRW swaps the register and the CSR", () => {
    const hart = csrs([a.csrrw(1, Csr.mscratch, 2)], { 2: 0x1234_5678 });
    expect(hart.x[1]).toBe(0x0f0f_00ff);
    expect(csr(hart, Csr.mscratch)).toBe(0x1234_5678);
  });

  it("CSRRS sets bits, CSRRC clears bits, both return the old value", () => {
    const hart = csrs([a.csrrs(1, Csr.mscratch, 2), a.csrrc(3, Csr.mscratch, 4)], { 2: 0x7000_0000, 4: 0x0f00_000f });
    expect(hart.x[1]).toBe(0x0f0f_00ff);
    expect(hart.x[3]).toBe(0x7f0f_00ff);
    expect(csr(hart, Csr.mscratch)).toBe(0x700f_00f0);
  });

  it("the immediate forms use the zero-extended 5-bit uimm", () => {
    const hart = csrs([a.csrrwi(1, Csr.mscratch, 31), a.csrrsi(2, Csr.mscratch, 0), a.csrrci(3, Csr.mscratch, 5), a.csrrsi(4, Csr.mscratch, 0)]);
    expect(hart.x[1]).toBe(0x0f0f_00ff);
    expect(hart.x[2]).toBe(31);
    expect(hart.x[3]).toBe(31);
    expect(hart.x[4]).toBe(26);
  });

  it("CSRRW with rd = x0 writes; reads into x0 keep x0 at 0", () => {
    const hart = csrs([a.csrrw(0, Csr.mscratch, 2), a.csrrs(0, Csr.mscratch, 0), a.add(3, 0, 0)], { 2: 77 });
    expect(csr(hart, Csr.mscratch)).toBe(77);
    expect(hart.x[0]).toBe(0);
    expect(hart.x[3]).toBe(0);
  });

  it("CSRRS/CSRRC with rs1 = x0 do not write", () => {
    const hart = csrs([a.csrrs(1, Csr.mscratch, 0), a.csrrc(2, Csr.mscratch, 0)]);
    expect(hart.x[1]).toBe(0x0f0f_00ff);
    expect(hart.x[2]).toBe(0x0f0f_00ff);
    expect(csr(hart, Csr.mscratch)).toBe(0x0f0f_00ff);
  });

  it("CSRRS with rs1 = x0 on a read-only CSR is a legal read", () => {
    const s = machine([a.csrrs(1, Csr.mhartid, 0), a.csrrsi(2, Csr.mvendorid, 0), a.csrrc(3, Csr.misa, 0)], { hartId: 5 });
    s.hart.run(3);
    expect(pcOf(s.hart)).toBe(RAM_BASE + 12);
    expect(s.hart.x[1]).toBe(5);
    expect(s.hart.x[3]).toBe(MISA);
  });

  const readOnlyWrites: [string, number][] = [
    ["CSRRW to mhartid", a.csrrw(1, Csr.mhartid, 2)],
    ["CSRRW with rd = x0 to mhartid", a.csrrw(0, Csr.mhartid, 2)],
    ["CSRRS to mhartid with rs1 != x0 (even if it holds 0)", a.csrrs(1, Csr.mhartid, 3)],
    ["CSRRCI with uimm != 0 to mvendorid", a.csrrci(1, Csr.mvendorid, 1)],
    ["CSRRWI to cycle", a.csrrwi(1, Csr.cycle, 0)],
  ];
  for (const [name, insn] of readOnlyWrites) {
    it(`${name} is illegal (read-only CSR)`, () => {
      const { hart } = machine([insn]);
      hart.x[1] = 99;
      hart.x[2] = 1;
      hart.x[3] = 0;
      hart.run(3);
      expect(csr(hart, Csr.mcause)).toBe(Cause.IllegalInstruction);
      expect(csr(hart, Csr.mtval) >>> 0).toBe(insn);
      expect(hart.x[1]).toBe(99);
    });
  }

  const tooPrivileged: [string, Priv, number][] = [
    ["reading mstatus from S", Priv.S, a.csrrs(1, Csr.mstatus, 0)],
    ["writing mscratch from S", Priv.S, a.csrrw(1, Csr.mscratch, 2)],
    ["reading mhartid from S", Priv.S, a.csrrs(1, Csr.mhartid, 0)],
    ["reading sstatus from U", Priv.U, a.csrrs(1, Csr.sstatus, 0)],
    ["writing sscratch from U", Priv.U, a.csrrw(1, Csr.sscratch, 2)],
  ];
  for (const [name, priv, insn] of tooPrivileged) {
    it(`${name} is illegal and leaves rd and the CSR unchanged`, () => {
      const { hart } = enter(priv, [insn]);
      hart.csrWrite(Csr.mscratch, SENTINEL);
      hart.csrWrite(Csr.sscratch, SENTINEL);
      hart.x[1] = 99;
      hart.x[2] = 7;
      hart.run(3);
      expect(csr(hart, Csr.mcause)).toBe(Cause.IllegalInstruction);
      expect(csr(hart, Csr.mtval) >>> 0).toBe(insn);
      expect(hart.x[1]).toBe(99);
      expect(csr(hart, Csr.mscratch)).toBe(SENTINEL);
      expect(csr(hart, Csr.sscratch)).toBe(SENTINEL);
    });
  }

  it("S-mode can use its own CSRs", () => {
    const { hart } = enter(Priv.S, [a.csrrw(1, Csr.sscratch, 2), a.csrrs(3, Csr.sscratch, 0)]);
    hart.x[2] = 1234;
    hart.run(2);
    expect(pcOf(hart)).toBe(CODE + 8);
    expect(hart.x[3]).toBe(1234);
  });

  it("sstatus is a restricted view of mstatus", () => {
    const { hart } = machine([]);
    hart.csrWrite(Csr.mstatus, MSTATUS_MIE | MSTATUS_SIE | (Priv.S << MSTATUS_MPP_SHIFT));
    expect(csr(hart, Csr.sstatus)).toBe(MSTATUS_SIE);
    hart.csrWrite(Csr.sstatus, MSTATUS_SPP); // clears SIE, cannot touch MIE or MPP
    expect(hart.mstatus).toBe(MSTATUS_MIE | MSTATUS_SPP | (Priv.S << MSTATUS_MPP_SHIFT));
  });

  it("misa reports RV32 with A, I, M, S and U", () => {
    const m = MISA >>> 0;
    expect(m >>> 30).toBe(1);
    const letters = [...Array(26).keys()].filter((i) => (m >>> i) & 1).map((i) => String.fromCharCode(65 + i)).join("");
    expect(letters).toBe("AIMSU");
    expect(csr(machine([]).hart, Csr.misa)).toBe(MISA);
  });

  it("MPP cannot hold the reserved value 2", () => {
    const { hart } = machine([]);
    hart.csrWrite(Csr.mstatus, 2 << MSTATUS_MPP_SHIFT);
    expect(mpp(hart.mstatus)).not.toBe(2);
  });
});

describe("hart - counters", () => {
  it("minstret and mcycle count retired instructions across runs", () => {
    const { hart } = machine(Array(10).fill(a.addi(0, 0, 0)));
    hart.run(3);
    hart.run(4);
    expect(csr(hart, Csr.minstret)).toBe(7);
    expect(csr(hart, Csr.minstreth)).toBe(0);
    expect(csr(hart, Csr.mcycle)).toBe(7); // one cycle per instruction
    expect(hart.instret).toBe(7);
  });

  it("a CSR read of instret gives the count before the reading instruction", () => {
    const { hart } = machine([a.addi(0, 0, 0), a.addi(0, 0, 0), a.csrrs(1, Csr.instret, 0), a.csrrs(2, Csr.minstret, 0), a.csrrs(3, Csr.cycle, 0)]);
    hart.run(5);
    expect(hart.x[1]).toBe(2);
    expect(hart.x[2]).toBe(3);
    expect(hart.x[3]).toBe(4);
  });

  it("a value written to minstret is the value read by the next instruction", () => {
    const { hart } = machine([a.addi(0, 0, 0), a.csrrw(0, Csr.minstret, 5), a.csrrs(6, Csr.minstret, 0), a.addi(0, 0, 0)]);
    hart.x[5] = 100;
    hart.run(4);
    expect(hart.x[6]).toBe(100);
    expect(csr(hart, Csr.minstret)).toBe(102); // the read and the last ADDI retired after the write
  });

  it("a value written to mcycle is the value read by the next instruction", () => {
    const { hart } = machine([a.csrrw(0, Csr.mcycle, 5), a.csrrs(6, Csr.mcycle, 0)]);
    hart.x[5] = 1000;
    hart.run(2);
    expect(hart.x[6]).toBe(1000);
  });

  it("minstret carries into minstreth", () => {
    const { hart } = machine([a.addi(0, 0, 0), a.csrrs(1, Csr.minstreth, 0), a.csrrs(2, Csr.minstret, 0)]);
    hart.csrWrite(Csr.minstret, -1);
    hart.run(3);
    expect(hart.x[1]).toBe(1);
    expect(hart.x[2]).toBe(1);
    expect(csr(hart, Csr.minstreth)).toBe(1);
    expect(csr(hart, Csr.instreth)).toBe(1);
  });

  it("minstreth writes set the high word", () => {
    const { hart } = machine([a.addi(0, 0, 0)]);
    hart.csrWrite(Csr.minstreth, 3);
    hart.csrWrite(Csr.minstret, 5);
    hart.run(1);
    expect(csr(hart, Csr.minstreth)).toBe(3);
    expect(csr(hart, Csr.minstret)).toBe(6);
    expect(hart.instret).toBe(3 * 2 ** 32 + 6);
  });

  it("time reads the platform timer, split into time and timeh", () => {
    const { hart } = machine([a.csrrs(1, Csr.time, 0), a.csrrs(2, Csr.timeh, 0)], { readTime: () => 0x1_2345_6789 });
    hart.run(2);
    expect(hart.x[1]).toBe(0x2345_6789);
    expect(hart.x[2]).toBe(1);
  });

  it("time is illegal without a platform timer", () => {
    const { hart } = machine([a.csrrs(1, Csr.time, 0)]);
    hart.run(3);
    expect(csr(hart, Csr.mcause)).toBe(Cause.IllegalInstruction);
  });

  const counters: [string, number, number][] = [["cycle", Csr.cycle, 0], ["time", Csr.time, 1], ["instret", Csr.instret, 2], ["cycleh", Csr.cycleh, 0], ["instreth", Csr.instreth, 2]];
  for (const [name, number, bit] of counters) {
    it(`${name} from S-mode needs mcounteren bit ${bit}`, () => {
      const denied = enter(Priv.S, [a.csrrs(1, number, 0)], { options: { readTime: () => 0 } }).hart;
      denied.csrWrite(Csr.mcounteren, ~(1 << bit));
      denied.csrWrite(Csr.scounteren, -1);
      denied.run(3);
      expect(csr(denied, Csr.mcause)).toBe(Cause.IllegalInstruction);
      const allowed = enter(Priv.S, [a.csrrs(1, number, 0)], { options: { readTime: () => 0 } }).hart;
      allowed.csrWrite(Csr.mcounteren, 1 << bit);
      allowed.run(1);
      expect(pcOf(allowed)).toBe(CODE + 4);
    });

    it(`${name} from U-mode needs both mcounteren and scounteren bit ${bit}`, () => {
      for (const [m, sc, ok] of [[1 << bit, 0, false], [0, 1 << bit, false], [1 << bit, 1 << bit, true]] as const) {
        const { hart } = enter(Priv.U, [a.csrrs(1, number, 0)], { options: { readTime: () => 0 } });
        hart.csrWrite(Csr.mcounteren, m);
        hart.csrWrite(Csr.scounteren, sc);
        hart.run(1);
        expect(pcOf(hart)).toBe(ok ? CODE + 4 : M_HANDLER);
      }
    });
  }

  it("instret read in U-mode counts the instructions retired in M-mode too", () => {
    const { hart } = enter(Priv.U, [a.addi(0, 0, 0), a.csrrs(1, Csr.instret, 0)]);
    hart.csrWrite(Csr.mcounteren, -1);
    hart.csrWrite(Csr.scounteren, -1);
    hart.run(2);
    expect(hart.x[1]).toBe(2); // the MRET that entered U and the ADDI
  });
});

describe("hart - budget", () => {
  it("a guest that faults forever (trap vector unmapped) still returns from run", () => {
    // mtvec = 0 after reset: the handler address is unmapped, so every fetch faults again
    const s = machine([0]);
    s.hart.csrWrite(Csr.mtvec, 0);
    expect(s.hart.run(1000)).toBe(Exit.Budget);
    expect(s.hart.instret).toBe(0); // nothing retired
    expect(csr(s.hart, Csr.mcause)).toBe(Cause.InstructionAccessFault);
  });

  it("mcountinhibit stops instret mid-run and reads do not count inhibited instructions", () => {
    const s = machine([
      a.addi(1, 0, 4),
      a.csrrw(0, Csr.mcountinhibit, 1), // inhibit IR from here on
      a.addi(0, 0, 0),
      a.addi(0, 0, 0),
      a.csrrs(5, Csr.minstret, 0),
    ]);
    s.hart.run(5);
    // ADDI and the CSRRW itself retired with IR counting; nothing after
    expect(s.hart.x[5]).toBe(2);
    expect(s.hart.instret).toBe(2);
  });
});
