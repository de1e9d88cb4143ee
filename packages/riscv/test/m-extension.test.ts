import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Exit, mulh, mulhsu, mulhu } from "../src/hart.js";
import * as a from "./asm.js";
import { machine, pcOf } from "./helpers.js";
import { RAM_BASE } from "./machine.js";

const MIN = 0x8000_0000 | 0;
const MAX = 0x7fff_ffff;

// Naive BigInt oracle, straight from the ISA manual's definitions.
const s = (v: number): bigint => BigInt(v | 0);
const uns = (v: number): bigint => BigInt(v >>> 0);
const wrap = (v: bigint): number => Number(BigInt.asIntN(32, v));

const oracle: Record<string, (x: number, y: number) => number> = {
  ADD: (x, y) => wrap(s(x) + s(y)),
  SUB: (x, y) => wrap(s(x) - s(y)),
  SLT: (x, y) => (s(x) < s(y) ? 1 : 0),
  SLTU: (x, y) => (uns(x) < uns(y) ? 1 : 0),
  SLL: (x, y) => wrap(uns(x) << (uns(y) & 31n)),
  SRL: (x, y) => wrap(uns(x) >> (uns(y) & 31n)),
  SRA: (x, y) => wrap(s(x) >> (uns(y) & 31n)),
  XOR: (x, y) => wrap(uns(x) ^ uns(y)),
  OR: (x, y) => wrap(uns(x) | uns(y)),
  AND: (x, y) => wrap(uns(x) & uns(y)),
  MUL: (x, y) => wrap(s(x) * s(y)),
  MULH: (x, y) => wrap((s(x) * s(y)) >> 32n),
  MULHSU: (x, y) => wrap((s(x) * uns(y)) >> 32n),
  MULHU: (x, y) => wrap((uns(x) * uns(y)) >> 32n),
  DIV: (x, y) => (y === 0 ? -1 : (x | 0) === MIN && (y | 0) === -1 ? MIN : wrap(s(x) / s(y))),
  DIVU: (x, y) => (y >>> 0 === 0 ? -1 : wrap(uns(x) / uns(y))),
  REM: (x, y) => (y === 0 ? x | 0 : (x | 0) === MIN && (y | 0) === -1 ? 0 : wrap(s(x) % s(y))),
  REMU: (x, y) => (y >>> 0 === 0 ? x | 0 : wrap(uns(x) % uns(y))),
};

const encoders: Record<string, (rd: number, rs1: number, rs2: number) => number> = {
  ADD: a.add, SUB: a.sub, SLT: a.slt, SLTU: a.sltu, SLL: a.sll, SRL: a.srl, SRA: a.sra, XOR: a.xor, OR: a.or, AND: a.and,
  MUL: a.mul, MULH: a.mulh, MULHSU: a.mulhsu, MULHU: a.mulhu, DIV: a.div, DIVU: a.divu, REM: a.rem, REMU: a.remu,
};
const names = Object.keys(encoders);

/** One machine that runs every op on x1, x2 into x3, x4, ... in one pass. */
function aluMachine() {
  const program = names.map((n, i) => encoders[n]!(3 + i, 1, 2));
  const { hart } = machine(program);
  return (x: number, y: number): Record<string, number> => {
    hart.pc = RAM_BASE;
    hart.x[1] = x;
    hart.x[2] = y;
    expect(hart.run(program.length)).toBe(Exit.Budget);
    expect(pcOf(hart)).toBe(RAM_BASE + 4 * program.length);
    return Object.fromEntries(names.map((n, i) => [n, hart.x[3 + i]!]));
  };
}

const EXTREMES = [0, 1, -1, 2, -2, MIN, MAX, MIN + 1, MAX - 1, 0x0000_ffff, 0x0001_0000, 0xffff_0000 | 0, 0x5555_5555, 0xaaaa_aaaa | 0];
const int32 = fc.oneof(fc.constantFrom(...EXTREMES), fc.integer({ min: MIN, max: MAX }));

describe("hart - M extension", () => {
  const cases: [string, number, number, number][] = [
    ["DIV by zero gives -1", a.div(3, 1, 2), 1234, 0],
    ["DIVU by zero gives all ones", a.divu(3, 1, 2), 1234, 0],
    ["REM by zero gives the dividend", a.rem(3, 1, 2), -1234, 0],
    ["REMU by zero gives the dividend", a.remu(3, 1, 2), -1234, 0],
    ["DIV of INT32_MIN by -1 overflows to INT32_MIN", a.div(3, 1, 2), MIN, -1],
    ["REM of INT32_MIN by -1 is 0", a.rem(3, 1, 2), MIN, -1],
    ["DIV rounds toward zero", a.div(3, 1, 2), -7, 2],
    ["REM takes the sign of the dividend", a.rem(3, 1, 2), -7, 2],
    ["REM with a negative divisor", a.rem(3, 1, 2), 7, -2],
    ["DIVU treats operands as unsigned", a.divu(3, 1, 2), -1, 2],
    ["REMU treats operands as unsigned", a.remu(3, 1, 2), -1, 10],
    ["MUL keeps the low 32 bits", a.mul(3, 1, 2), 0x1234_5678, 0x9abc_def0 | 0],
    ["MULH of INT32_MIN squared", a.mulh(3, 1, 2), MIN, MIN],
    ["MULH of INT32_MIN and INT32_MAX", a.mulh(3, 1, 2), MIN, MAX],
    ["MULH of -1 and -1 is 0", a.mulh(3, 1, 2), -1, -1],
    ["MULHSU of -1 and 0xffffffff", a.mulhsu(3, 1, 2), -1, -1],
    ["MULHSU of INT32_MIN and 0xffffffff", a.mulhsu(3, 1, 2), MIN, -1],
    ["MULHU of 0xffffffff squared", a.mulhu(3, 1, 2), -1, -1],
    ["MULHU of INT32_MIN and 2", a.mulhu(3, 1, 2), MIN, 2],
  ];
  const opOf = (insn: number): string => names.find((n) => encoders[n]!(3, 1, 2) === insn)!;
  for (const [name, insn, x, y] of cases) {
    it(name, () => {
      const { hart } = machine([insn]);
      hart.x[1] = x;
      hart.x[2] = y;
      hart.run(1);
      expect(hart.x[3]).toBe(oracle[opOf(insn)]!(x, y));
    });
  }

  it("the oracle agrees with the spec table for the special cases", () => {
    // RISC-V unprivileged spec, table "Semantics for division by zero and division overflow".
    expect(oracle.DIV!(5, 0)).toBe(-1);
    expect(oracle.DIVU!(5, 0) >>> 0).toBe(0xffff_ffff);
    expect(oracle.REM!(5, 0)).toBe(5);
    expect(oracle.REMU!(5, 0)).toBe(5);
    expect(oracle.DIV!(MIN, -1)).toBe(MIN);
    expect(oracle.REM!(MIN, -1)).toBe(0);
    expect(oracle.MULH!(MIN, MIN)).toBe(0x4000_0000);
    expect(oracle.MULHU!(-1, -1) >>> 0).toBe(0xffff_fffe);
    expect(oracle.MULHSU!(-1, -1) >>> 0).toBe(0xffff_ffff);
    expect(oracle.MULHSU!(MIN, -1) >>> 0).toBe(0x8000_0000);
  });

  it("MUL/MULH with rd == rs1 == rs2 squares the register", () => {
    const { hart } = machine([a.mulh(5, 1, 1), a.mul(1, 1, 1)]);
    hart.x[1] = 0x0001_0001;
    hart.run(2);
    expect(hart.x[1]).toBe(0x0002_0001); // (2^16 + 1)^2 = 2^32 + 2^17 + 1
    expect(hart.x[5]).toBe(1);
  });

  it("M results into x0 are discarded", () => {
    const { hart } = machine([a.div(0, 1, 2), a.mulhu(0, 1, 1), a.add(3, 0, 0)]);
    hart.x[1] = -1;
    hart.x[2] = 0;
    hart.run(3);
    expect(hart.x[0]).toBe(0);
    expect(hart.x[3]).toBe(0);
  });
});

describe("hart - ALU and M extension vs a BigInt oracle", () => {
  it("every register-register op matches the oracle for random operands", () => {
    const runAll = aluMachine();
    fc.assert(
      fc.property(int32, int32, (x, y) => {
        const got = runAll(x, y);
        for (const n of names) {
          if (got[n] !== oracle[n]!(x, y)) throw new Error(`${n}(${x}, ${y}) = ${got[n]}, expected ${oracle[n]!(x, y)}`);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("every extreme pair matches the oracle", () => {
    const runAll = aluMachine();
    for (const x of EXTREMES) {
      for (const y of EXTREMES) {
        const got = runAll(x, y);
        for (const n of names) expect([n, x, y, got[n]]).toEqual([n, x, y, oracle[n]!(x, y)]);
      }
    }
  });

  it("immediate shifts match the oracle for every shamt", () => {
    const program: number[] = [];
    for (let sh = 0; sh < 32; sh++) program.push(a.slli(2, 1, sh), a.srli(3, 1, sh), a.srai(4, 1, sh), a.sw(2, 10, sh * 12), a.sw(3, 10, sh * 12 + 4), a.sw(4, 10, sh * 12 + 8));
    const m = machine(program);
    const base = RAM_BASE + 0x8000;
    fc.assert(
      fc.property(int32, (x) => {
        m.hart.pc = RAM_BASE;
        m.hart.x[1] = x;
        m.hart.x[10] = base;
        m.hart.run(program.length);
        for (let sh = 0; sh < 32; sh++) {
          expect(m.bus.read32(base + sh * 12)).toBe(oracle.SLL!(x, sh));
          expect(m.bus.read32(base + sh * 12 + 4)).toBe(oracle.SRL!(x, sh));
          expect(m.bus.read32(base + sh * 12 + 8)).toBe(oracle.SRA!(x, sh));
        }
      }),
      { numRuns: 200 },
    );
  });

  it("register-immediate ops match the oracle for random operands and immediates", () => {
    const imm12 = fc.oneof(fc.constantFrom(0, 1, -1, 2047, -2048), fc.integer({ min: -2048, max: 2047 }));
    const m = machine([0, 0, 0, 0, 0, 0]);
    fc.assert(
      fc.property(int32, imm12, (x, imm) => {
        m.bus.load(RAM_BASE, [a.addi(3, 1, imm), a.slti(4, 1, imm), a.sltiu(5, 1, imm), a.xori(6, 1, imm), a.ori(7, 1, imm), a.andi(8, 1, imm)]);
        m.hart.decodeCache.invalidate(0, 24);
        m.hart.pc = RAM_BASE;
        m.hart.x[1] = x;
        m.hart.run(6);
        expect([...m.hart.x.subarray(3, 9)]).toEqual([
          oracle.ADD!(x, imm), oracle.SLT!(x, imm), oracle.SLTU!(x, imm), oracle.XOR!(x, imm), oracle.OR!(x, imm), oracle.AND!(x, imm),
        ]);
      }),
      { numRuns: 500 },
    );
  });
});

describe("hart - mulh helpers", () => {
  it("mulh, mulhsu and mulhu match the oracle for random int32 operands", () => {
    fc.assert(
      fc.property(int32, int32, (x, y) => {
        expect(mulh(x, y)).toBe(oracle.MULH!(x, y));
        expect(mulhsu(x, y)).toBe(oracle.MULHSU!(x, y));
        expect(mulhu(x, y)).toBe(oracle.MULHU!(x, y));
      }),
      { numRuns: 5000 },
    );
  });

  it("mulhu accepts operands given as unsigned numbers", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), fc.integer({ min: 0, max: 0xffff_ffff }), (x, y) => {
        expect(mulhu(x, y)).toBe(oracle.MULHU!(x, y));
      }),
    );
  });

  it("the helpers return int32 values", () => {
    for (const x of EXTREMES) {
      for (const y of EXTREMES) {
        for (const f of [mulh, mulhsu, mulhu]) expect(f(x, y) | 0).toBe(f(x, y));
      }
    }
  });
});
