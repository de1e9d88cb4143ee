import { describe, expect, it } from "vitest";
import { Cause, Csr } from "../src/csr.js";
import { Exit } from "../src/hart.js";
import * as a from "./asm.js";
import { csr, DATA, machine, M_HANDLER, pcOf, u } from "./helpers.js";
import { RAM_BASE } from "./machine.js";

/** Runs `program` from RAM_BASE for `count` instructions with registers preset; asserts no trap. */
function exec(program: readonly number[], regs: Record<number, number> = {}, count = program.length) {
  const s = machine(program);
  for (const [r, v] of Object.entries(regs)) s.hart.x[Number(r)] = v;
  expect(s.hart.run(count)).toBe(Exit.Budget);
  expect(pcOf(s.hart)).not.toBe(M_HANDLER);
  return s;
}

/** Runs one instruction with rs1 = x1 = a, rs2 = x2 = b and returns x3 (unsigned). */
function alu(insn: number, a1: number, b: number): number {
  return u(exec([insn], { 1: a1, 2: b }).hart, 3);
}

const MIN = 0x8000_0000 | 0;
const MAX = 0x7fff_ffff;

describe("hart - RV32I upper immediates", () => {
  it("LUI puts the 20-bit immediate in the top bits and zeroes the low 12", () => {
    const { hart } = exec([a.lui(1, 0x12345), a.lui(2, 0xfffff)], { 1: -1 });
    expect(u(hart, 1)).toBe(0x1234_5000);
    expect(u(hart, 2)).toBe(0xffff_f000);
  });

  it("AUIPC adds the shifted immediate to its own address", () => {
    const { hart } = exec([a.addi(0, 0, 0), a.auipc(2, 1), a.auipc(3, 0), a.auipc(4, 0x80000)]);
    expect(u(hart, 2)).toBe(RAM_BASE + 4 + 0x1000);
    expect(u(hart, 3)).toBe(RAM_BASE + 8);
    // 0x8000_000c + 0x8000_0000 wraps to 0x0000_000c
    expect(u(hart, 4)).toBe(0xc);
  });
});

describe("hart - RV32I register-immediate", () => {
  it("ADDI sign-extends its immediate and wraps on overflow", () => {
    const { hart } = exec([a.addi(3, 0, -1), a.addi(4, 0, 2047), a.addi(5, 0, -2048), a.addi(6, 1, 1)], { 1: MAX });
    expect(u(hart, 3)).toBe(0xffff_ffff);
    expect(hart.x[4]).toBe(2047);
    expect(hart.x[5]).toBe(-2048);
    expect(hart.x[6]).toBe(MIN);
  });

  it("SLTI compares signed, SLTIU compares unsigned against the sign-extended immediate", () => {
    const { hart } = exec(
      [a.slti(3, 1, 0), a.sltiu(4, 1, 0), a.slti(5, 2, -1), a.sltiu(6, 2, -1), a.sltiu(7, 0, 1), a.sltiu(8, 2, 1), a.sltiu(9, 1, -1)],
      { 1: -5, 2: 7 },
    );
    expect(hart.x[3]).toBe(1); // -5 < 0
    expect(hart.x[4]).toBe(0); // 0xfffffffb < 0 is false
    expect(hart.x[5]).toBe(0); // 7 < -1 is false
    expect(hart.x[6]).toBe(1); // 7 < 0xffffffff
    expect(hart.x[7]).toBe(1); // seqz x0
    expect(hart.x[8]).toBe(0); // seqz 7
    expect(hart.x[9]).toBe(1); // 0xfffffffb < 0xffffffff
  });

  it("XORI, ORI and ANDI use the sign-extended immediate", () => {
    const { hart } = exec([a.xori(3, 1, -1), a.ori(4, 1, -2048), a.andi(5, 1, -16), a.andi(6, 1, 0x7ff), a.xori(7, 1, 0x0f0)], {
      1: 0x1234_5678,
    });
    expect(u(hart, 3)).toBe(0xedcb_a987); // NOT
    expect(u(hart, 4)).toBe(0xffff_fe78); // 0x12345678 | 0xfffff800
    expect(u(hart, 5)).toBe(0x1234_5670);
    expect(u(hart, 6)).toBe(0x678);
    expect(u(hart, 7)).toBe(0x1234_5688);
  });

  it("SLLI, SRLI and SRAI shift by the 5-bit shamt", () => {
    const { hart } = exec(
      [a.slli(3, 1, 4), a.srli(4, 1, 4), a.srai(5, 1, 4), a.slli(6, 1, 31), a.srli(7, 1, 31), a.srai(8, 1, 31), a.srai(9, 1, 0), a.srai(10, 2, 31)],
      { 1: 0x8765_4321 | 0, 2: MAX },
    );
    expect(u(hart, 3)).toBe(0x7654_3210);
    expect(u(hart, 4)).toBe(0x0876_5432);
    expect(u(hart, 5)).toBe(0xf876_5432);
    expect(u(hart, 6)).toBe(0x8000_0000);
    expect(u(hart, 7)).toBe(1);
    expect(u(hart, 8)).toBe(0xffff_ffff);
    expect(u(hart, 9)).toBe(0x8765_4321);
    expect(u(hart, 10)).toBe(0);
  });

  it("SLLI/SRLI/SRAI with shamt[5] set are illegal on RV32 (mtval = the instruction)", () => {
    for (const insn of [a.slli(3, 1, 1) | (1 << 25), a.srli(3, 1, 1) | (1 << 25), a.srai(3, 1, 1) | (1 << 25)]) {
      const { hart } = machine([insn]);
      hart.x[3] = 77;
      hart.run(3);
      expect(csr(hart, Csr.mcause)).toBe(Cause.IllegalInstruction);
      expect(csr(hart, Csr.mtval) >>> 0).toBe(insn >>> 0);
      expect(csr(hart, Csr.mepc) >>> 0).toBe(RAM_BASE);
      expect(hart.x[3]).toBe(77);
    }
  });
});

describe("hart - RV32I register-register", () => {
  it("ADD and SUB wrap modulo 2^32", () => {
    expect(alu(a.add(3, 1, 2), MAX, 1)).toBe(0x8000_0000);
    expect(alu(a.add(3, 1, 2), -1, -1)).toBe(0xffff_fffe);
    expect(alu(a.sub(3, 1, 2), MIN, 1)).toBe(0x7fff_ffff);
    expect(alu(a.sub(3, 1, 2), 0, 1)).toBe(0xffff_ffff);
    expect(alu(a.sub(3, 1, 2), 5, 3)).toBe(2);
  });

  it("SLT is signed and SLTU unsigned", () => {
    expect(alu(a.slt(3, 1, 2), -1, 1)).toBe(1);
    expect(alu(a.sltu(3, 1, 2), -1, 1)).toBe(0);
    expect(alu(a.slt(3, 1, 2), MIN, MAX)).toBe(1);
    expect(alu(a.sltu(3, 1, 2), MAX, MIN)).toBe(1);
    expect(alu(a.slt(3, 1, 2), 4, 4)).toBe(0);
    expect(alu(a.sltu(3, 1, 2), 4, 4)).toBe(0);
  });

  it("SLTU with rs1 = x0 is snez", () => {
    expect(u(exec([a.sltu(3, 0, 2)], { 2: 9 }).hart, 3)).toBe(1);
    expect(u(exec([a.sltu(3, 0, 2)], { 2: 0 }).hart, 3)).toBe(0);
  });

  it("XOR, OR and AND are bitwise", () => {
    expect(alu(a.xor(3, 1, 2), 0xff00_ff00 | 0, 0x0ff0_0ff0)).toBe(0xf0f0_f0f0);
    expect(alu(a.or(3, 1, 2), 0xff00_ff00 | 0, 0x0ff0_0ff0)).toBe(0xfff0_fff0);
    expect(alu(a.and(3, 1, 2), 0xff00_ff00 | 0, 0x0ff0_0ff0)).toBe(0x0f00_0f00);
  });

  it("SLL, SRL and SRA use only the low 5 bits of rs2", () => {
    expect(alu(a.sll(3, 1, 2), 1, 33)).toBe(2);
    expect(alu(a.srl(3, 1, 2), MIN, 33)).toBe(0x4000_0000);
    expect(alu(a.sra(3, 1, 2), MIN, 33)).toBe(0xc000_0000);
    expect(alu(a.sll(3, 1, 2), 0x1234_5678, 32)).toBe(0x1234_5678);
    expect(alu(a.sll(3, 1, 2), 0x1234_5678, 0xffff_ffe0 | 0)).toBe(0x1234_5678);
    expect(alu(a.srl(3, 1, 2), -1, -1)).toBe(1); // shift by 31
    expect(alu(a.sra(3, 1, 2), -1, -1)).toBe(0xffff_ffff);
    expect(alu(a.sll(3, 1, 2), 3, 31)).toBe(0x8000_0000);
  });
});

describe("hart - RV32I x0", () => {
  it("x0 as destination stays 0 and reads as 0 afterwards", () => {
    const { hart } = exec([a.addi(0, 0, 5), a.lui(0, 0x12345), a.add(0, 1, 1), a.addi(3, 0, 0), a.add(4, 0, 1)], { 1: 21 });
    expect(hart.x[0]).toBe(0);
    expect(hart.x[3]).toBe(0);
    expect(hart.x[4]).toBe(21);
  });

  it("x0 as source reads 0: SUB from x0 negates", () => {
    expect(alu(a.sub(3, 0, 2), 0, 7) | 0).toBe(-7);
  });

  it("a load into x0 performs the load but keeps x0 at 0", () => {
    const s = machine([a.lw(0, 1, 0), a.lbu(0, 1, 0), a.add(3, 0, 0)]);
    s.bus.write32(DATA, 0x5555_5555);
    s.hart.x[1] = DATA;
    s.hart.run(3);
    expect(s.hart.x[0]).toBe(0);
    expect(s.hart.x[3]).toBe(0);
  });

  it("JAL and JALR with rd = x0 jump without linking", () => {
    const { hart } = exec([a.jal(0, 8), a.addi(5, 0, 1), a.jalr(0, 1, 0), a.addi(6, 0, 1), a.add(3, 0, 0)], { 1: RAM_BASE + 16 }, 3);
    expect(hart.x[0]).toBe(0);
    expect(hart.x[5]).toBe(0);
    expect(hart.x[6]).toBe(0);
    expect(pcOf(hart)).toBe(RAM_BASE + 20);
  });
});

describe("hart - RV32I loads and stores", () => {
  function memory(words: Record<number, number>, program: readonly number[], regs: Record<number, number> = {}) {
    const s = machine(program);
    for (const [pa, v] of Object.entries(words)) s.bus.write32(Number(pa), v);
    for (const [r, v] of Object.entries(regs)) s.hart.x[Number(r)] = v;
    expect(s.hart.run(program.length)).toBe(Exit.Budget);
    expect(pcOf(s.hart)).toBe(RAM_BASE + 4 * program.length);
    return s;
  }

  it("LB and LH sign-extend, LBU and LHU zero-extend", () => {
    const { hart } = memory(
      { [DATA]: 0x8081_7f80 | 0 },
      [a.lb(3, 1, 0), a.lbu(4, 1, 0), a.lb(5, 1, 1), a.lh(6, 1, 2), a.lhu(7, 1, 2), a.lh(8, 1, 0), a.lhu(9, 1, 0), a.lw(10, 1, 0)],
      { 1: DATA },
    );
    expect(u(hart, 3)).toBe(0xffff_ff80);
    expect(u(hart, 4)).toBe(0x80);
    expect(u(hart, 5)).toBe(0x7f);
    expect(u(hart, 6)).toBe(0xffff_8081);
    expect(u(hart, 7)).toBe(0x8081);
    expect(u(hart, 8)).toBe(0x7f80);
    expect(u(hart, 9)).toBe(0x7f80);
    expect(u(hart, 10)).toBe(0x8081_7f80);
  });

  it("loads use rs1 + sign-extended offset (negative offsets too)", () => {
    const { hart } = memory({ [DATA]: 0x1111_1111, [DATA + 0x7fc]: 0x2222_2222 }, [a.lw(3, 1, -4), a.lw(4, 2, 2047 - 3)], {
      1: DATA + 4,
      2: DATA + 0x7fc - 2044,
    });
    expect(u(hart, 3)).toBe(0x1111_1111);
    expect(u(hart, 4)).toBe(0x2222_2222);
  });

  it("SB, SH and SW write only their bytes, little-endian", () => {
    const s = memory(
      { [DATA]: -1, [DATA + 4]: -1, [DATA + 8]: -1 },
      [a.sb(2, 1, 1), a.sh(2, 1, 6), a.sw(2, 1, 8), a.sb(2, 1, -1)],
      { 1: DATA, 2: 0x1234_5678 },
    );
    expect(s.bus.read32(DATA) >>> 0).toBe(0xffff_78ff);
    expect(s.bus.read32(DATA + 4) >>> 0).toBe(0x5678_ffff);
    expect(s.bus.read32(DATA + 8) >>> 0).toBe(0x1234_5678);
    expect(s.bus.memory[DATA - RAM_BASE - 1]).toBe(0x78);
  });

  it("a store then a load of the same address sees the stored value", () => {
    const { hart } = memory({}, [a.sw(2, 1, 0), a.lw(3, 1, 0), a.sh(2, 1, 4), a.lh(4, 1, 4)], { 1: DATA, 2: 0xdead_beef | 0 });
    expect(u(hart, 3)).toBe(0xdead_beef);
    expect(u(hart, 4)).toBe(0xffff_beef);
  });
});

describe("hart - RV32I jumps", () => {
  it("JAL links pc + 4 and jumps forward and backward", () => {
    // 0: jal x1, +12 -> 12;  12: jal x2, -4 -> 8;  8: jal x0, +8 -> 16
    const { hart } = exec([a.jal(1, 12), a.addi(5, 0, 1), a.jal(0, 8), a.jal(2, -4), a.addi(0, 0, 0)], {}, 3);
    expect(u(hart, 1)).toBe(RAM_BASE + 4);
    expect(u(hart, 2)).toBe(RAM_BASE + 16);
    expect(hart.x[5]).toBe(0);
    expect(pcOf(hart)).toBe(RAM_BASE + 16);
  });

  it("JALR adds the offset to rs1 and clears bit 0 of the target", () => {
    const { hart } = exec([a.jalr(2, 1, 1), a.addi(5, 0, 1), a.addi(6, 0, 1)], { 1: RAM_BASE + 8 }, 2);
    expect(u(hart, 2)).toBe(RAM_BASE + 4);
    expect(hart.x[5]).toBe(0);
    expect(hart.x[6]).toBe(1);
    expect(pcOf(hart)).toBe(RAM_BASE + 12);
  });

  it("JALR with a negative offset", () => {
    const { hart } = exec([a.jalr(2, 1, -8), a.addi(5, 0, 1)], { 1: RAM_BASE + 12 }, 1);
    expect(pcOf(hart)).toBe(RAM_BASE + 4);
  });

  it("JALR with rd == rs1 jumps to the old rs1 and links", () => {
    const { hart } = exec([a.jalr(1, 1, 0), a.addi(5, 0, 1), a.addi(6, 0, 1)], { 1: RAM_BASE + 8 }, 1);
    expect(pcOf(hart)).toBe(RAM_BASE + 8);
    expect(u(hart, 1)).toBe(RAM_BASE + 4);
  });

  it("a JAL to a target that is not 4-byte aligned raises instruction-address-misaligned", () => {
    const { hart } = machine([a.addi(0, 0, 0), a.jal(1, 6)]);
    hart.x[1] = 99;
    hart.run(5);
    expect(csr(hart, Csr.mcause)).toBe(Cause.InstructionMisaligned);
    expect(csr(hart, Csr.mtval) >>> 0).toBe(RAM_BASE + 10);
    expect(csr(hart, Csr.mepc) >>> 0).toBe(RAM_BASE + 4);
    expect(hart.x[1]).toBe(99); // no writeback
    expect(pcOf(hart)).toBe(M_HANDLER);
  });

  it("a JALR to a 2-mod-4 target raises instruction-address-misaligned without writing rd", () => {
    const { hart } = machine([a.jalr(1, 1, 3)]);
    hart.x[1] = RAM_BASE + 7; // (RAM_BASE + 10) & ~1 = RAM_BASE + 10
    hart.run(5);
    expect(csr(hart, Csr.mcause)).toBe(Cause.InstructionMisaligned);
    expect(csr(hart, Csr.mtval) >>> 0).toBe(RAM_BASE + 10);
    expect(csr(hart, Csr.mepc) >>> 0).toBe(RAM_BASE);
    expect(u(hart, 1)).toBe(RAM_BASE + 7);
  });
});

describe("hart - RV32I branches", () => {
  const cases: [string, (x: number, y: number, o: number) => number, number, number, boolean][] = [
    ["BEQ equal", a.beq, 5, 5, true],
    ["BEQ different", a.beq, 5, 6, false],
    ["BNE different", a.bne, 5, 6, true],
    ["BNE equal", a.bne, -1, -1, false],
    ["BLT -1 < 1", a.blt, -1, 1, true],
    ["BLT 1 < -1", a.blt, 1, -1, false],
    ["BLT equal", a.blt, 3, 3, false],
    ["BGE 1 >= -1", a.bge, 1, -1, true],
    ["BGE equal", a.bge, MIN, MIN, true],
    ["BGE -1 >= 1", a.bge, -1, 1, false],
    ["BLTU 1 < 0xffffffff", a.bltu, 1, -1, true],
    ["BLTU 0xffffffff < 1", a.bltu, -1, 1, false],
    ["BLTU equal", a.bltu, 7, 7, false],
    ["BGEU 0xffffffff >= 1", a.bgeu, -1, 1, true],
    ["BGEU equal", a.bgeu, 0, 0, true],
    ["BGEU 1 >= 0x80000000", a.bgeu, 1, MIN, false],
  ];
  for (const [name, enc, x, y, taken] of cases) {
    it(`${name} is ${taken ? "taken" : "not taken"}`, () => {
      const { hart } = exec([enc(1, 2, 8), a.addi(3, 0, 1), a.addi(4, 0, 1)], { 1: x, 2: y }, 2);
      expect(hart.x[3]).toBe(taken ? 0 : 1);
      expect(hart.x[4]).toBe(taken ? 1 : 0);
      expect(pcOf(hart)).toBe(RAM_BASE + (taken ? 12 : 8));
    });
  }

  it("a backward branch loops", () => {
    // x1 = 5; loop: x2 += 3; x1 -= 1; bne x1, x0, loop
    const program = [a.addi(1, 0, 5), a.addi(2, 2, 3), a.addi(1, 1, -1), a.bne(1, 0, -8), a.addi(0, 0, 0)];
    const { hart } = exec(program, {}, 1 + 5 * 3);
    expect(hart.x[2]).toBe(15);
    expect(pcOf(hart)).toBe(RAM_BASE + 16);
  });

  it("branches reach 4092 bytes forward and backward", () => {
    const s = machine([a.beq(0, 0, 4092)]);
    s.bus.load(RAM_BASE + 4092, [a.blt(0, 1, -4092)]);
    s.hart.x[1] = 1;
    s.hart.run(2);
    expect(pcOf(s.hart)).toBe(RAM_BASE);
  });

  it("a taken branch to a misaligned target raises cause 0 with tval = target, mepc = the branch", () => {
    const { hart } = machine([a.addi(0, 0, 0), a.beq(0, 0, 6)]);
    hart.run(5);
    expect(csr(hart, Csr.mcause)).toBe(Cause.InstructionMisaligned);
    expect(csr(hart, Csr.mtval) >>> 0).toBe(RAM_BASE + 10);
    expect(csr(hart, Csr.mepc) >>> 0).toBe(RAM_BASE + 4);
  });

  it("a not-taken branch with a misaligned target does not trap", () => {
    const { hart } = exec([a.bne(0, 0, 6), a.addi(3, 0, 1)]);
    expect(hart.x[3]).toBe(1);
    expect(pcOf(hart)).toBe(RAM_BASE + 8);
  });
});

describe("hart - RV32I FENCE", () => {
  it("FENCE is a no-op that advances pc", () => {
    const { hart } = exec([a.fence(), a.addi(3, 0, 1)]);
    expect(hart.x[3]).toBe(1);
    expect(csr(hart, Csr.minstret)).toBe(2);
  });
});
