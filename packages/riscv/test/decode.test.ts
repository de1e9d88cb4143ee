import { describe, expect, it } from "vitest";
import * as decodeModule from "../src/decode.js";
import { decode, decodeWord, Op, SINK_REGISTER } from "../src/decode.js";
import * as a from "./asm.js";

/** Op names by value, from the enum object the test transform keeps. */
const OP_NAMES = (decodeModule as unknown as Record<string, Record<number, string>>)["Op"]!;

/**
 * The golden table: every op and a set of illegal encodings. Each line is
 * `word  op rd rs1 rs2 imm`; imm is hex for LUI/AUIPC (the shifted value), CSR ops (the CSR number) and
 * Illegal (the raw bits), signed decimal otherwise.
 */
const WORDS: [string, number][] = [
  ["lui x5, 0x12345", a.lui(5, 0x12345)],
  ["lui x1, 0xfffff", a.lui(1, 0xfffff)],
  ["auipc x2, 0x80000", a.auipc(2, 0x80000)],
  ["jal x1, 2048", a.jal(1, 2048)],
  ["jal x0, -4", a.jal(0, -4)],
  ["jal x3, -1048576", a.jal(3, -1048576)],
  ["jal x4, 1048574", a.jal(4, 1048574)],
  ["jalr x1, -1(x2)", a.jalr(1, 2, -1)],
  ["beq x1, x2, -4096", a.beq(1, 2, -4096)],
  ["bne x3, x4, 4094", a.bne(3, 4, 4094)],
  ["blt x5, x6, 8", a.blt(5, 6, 8)],
  ["bge x7, x8, -2", a.bge(7, 8, -2)],
  ["bltu x9, x10, 2048", a.bltu(9, 10, 2048)],
  ["bgeu x31, x0, 16", a.bgeu(31, 0, 16)],
  ["lb x1, -2048(x2)", a.lb(1, 2, -2048)],
  ["lh x3, 2(x4)", a.lh(3, 4, 2)],
  ["lw x5, 2047(x6)", a.lw(5, 6, 2047)],
  ["lbu x7, 0(x8)", a.lbu(7, 8, 0)],
  ["lhu x31, -1(x30)", a.lhu(31, 30, -1)],
  ["sb x5, -1(x6)", a.sb(5, 6, -1)],
  ["sh x7, 32(x8)", a.sh(7, 8, 32)],
  ["sw x9, 2047(x10)", a.sw(9, 10, 2047)],
  ["sw x1, -2048(x2)", a.sw(1, 2, -2048)],
  ["addi x1, x0, -2048", a.addi(1, 0, -2048)],
  ["addi x0, x0, 0 (nop)", a.addi(0, 0, 0)],
  ["slti x2, x3, 100", a.slti(2, 3, 100)],
  ["sltiu x4, x5, -1", a.sltiu(4, 5, -1)],
  ["xori x6, x7, 0x555", a.xori(6, 7, 0x555)],
  ["ori x8, x9, -256", a.ori(8, 9, -256)],
  ["andi x10, x11, 255", a.andi(10, 11, 255)],
  ["slli x1, x2, 31", a.slli(1, 2, 31)],
  ["srli x3, x4, 1", a.srli(3, 4, 1)],
  ["srai x5, x6, 0", a.srai(5, 6, 0)],
  ["srai x5, x6, 17", a.srai(5, 6, 17)],
  ["add x1, x2, x3", a.add(1, 2, 3)],
  ["sub x4, x5, x6", a.sub(4, 5, 6)],
  ["sll x7, x8, x9", a.sll(7, 8, 9)],
  ["slt x10, x11, x12", a.slt(10, 11, 12)],
  ["sltu x13, x14, x15", a.sltu(13, 14, 15)],
  ["xor x16, x17, x18", a.xor(16, 17, 18)],
  ["srl x19, x20, x21", a.srl(19, 20, 21)],
  ["sra x22, x23, x24", a.sra(22, 23, 24)],
  ["or x25, x26, x27", a.or(25, 26, 27)],
  ["and x28, x29, x30", a.and(28, 29, 30)],
  ["mul x1, x2, x3", a.mul(1, 2, 3)],
  ["mulh x4, x5, x6", a.mulh(4, 5, 6)],
  ["mulhsu x7, x8, x9", a.mulhsu(7, 8, 9)],
  ["mulhu x10, x11, x12", a.mulhu(10, 11, 12)],
  ["div x13, x14, x15", a.div(13, 14, 15)],
  ["divu x16, x17, x18", a.divu(16, 17, 18)],
  ["rem x19, x20, x21", a.rem(19, 20, 21)],
  ["remu x22, x23, x24", a.remu(22, 23, 24)],
  ["lr.w x1, (x2)", a.lrw(1, 2)],
  ["lr.w.aqrl x1, (x2)", a.rType(0x2f, 2, (0x02 << 2) | 3, 1, 2, 0)],
  ["sc.w x3, x4, (x5)", a.scw(3, 5, 4)],
  ["amoswap.w x6, x7, (x8)", a.amoswap(6, 8, 7)],
  ["amoadd.w x9, x10, (x11)", a.amoadd(9, 11, 10)],
  ["amoxor.w x12, x13, (x14)", a.amoxor(12, 14, 13)],
  ["amoand.w x15, x16, (x17)", a.amoand(15, 17, 16)],
  ["amoor.w x18, x19, (x20)", a.amoor(18, 20, 19)],
  ["amomin.w x21, x22, (x23)", a.amomin(21, 23, 22)],
  ["amomax.w x24, x25, (x26)", a.amomax(24, 26, 25)],
  ["amominu.w x27, x28, (x29)", a.amominu(27, 29, 28)],
  ["amomaxu.w x30, x31, (x1)", a.amomaxu(30, 1, 31)],
  ["amoadd.w.aq x0, x2, (x3)", a.amoadd(0, 3, 2, 1, 0)],
  ["fence", a.fence()],
  ["fence.i", a.fencei()],
  ["ecall", a.ecall()],
  ["ebreak", a.ebreak()],
  ["mret", a.mret()],
  ["sret", a.sret()],
  ["wfi", a.wfi()],
  ["sfence.vma x0, x0", a.sfencevma()],
  ["sfence.vma x1, x2", a.sfencevma(1, 2)],
  ["csrrw x1, mstatus, x2", a.csrrw(1, 0x300, 2)],
  ["csrrs x3, cycle, x0", a.csrrs(3, 0xc00, 0)],
  ["csrrc x0, mip, x4", a.csrrc(0, 0x344, 4)],
  ["csrrwi x5, mscratch, 31", a.csrrwi(5, 0x340, 31)],
  ["csrrsi x6, sstatus, 2", a.csrrsi(6, 0x100, 2)],
  ["csrrci x7, 0xfff, 0", a.csrrci(7, 0xfff, 0)],
  // illegal encodings
  ["illegal: all zeros", 0x0000_0000],
  ["illegal: all ones", 0xffff_ffff],
  ["illegal: compressed c.li a0, 0", 0x0000_4501],
  ["illegal: compressed c.nop in the low half", 0x0000_0001],
  ["illegal: custom-0 opcode", 0x0000_000b],
  ["illegal: branch funct3 = 2", 0x0000_2063],
  ["illegal: branch funct3 = 3", 0x0000_3063],
  ["illegal: load funct3 = 3 (ld)", 0x0000_3003],
  ["illegal: load funct3 = 6 (lwu)", 0x0000_6003],
  ["illegal: load funct3 = 7", 0x0000_7003],
  ["illegal: store funct3 = 3 (sd)", 0x0000_3023],
  ["illegal: store funct3 = 4", 0x0000_4023],
  ["illegal: slli with shamt[5] (bit 25)", a.slli(1, 2, 3) | (1 << 25)],
  ["illegal: srli with shamt[5] (bit 25)", a.srli(1, 2, 3) | (1 << 25)],
  ["illegal: srai with shamt[5] (bit 25)", a.srai(1, 2, 3) | (1 << 25)],
  ["illegal: slli with funct7 = 0x20", a.slli(1, 2, 3) | (0x20 << 25)],
  ["illegal: op funct7 = 0x20 funct3 = 1", a.sll(1, 2, 3) | (0x20 << 25)],
  ["illegal: op funct7 = 0x02", a.add(1, 2, 3) | (0x02 << 25)],
  ["illegal: jalr funct3 = 1", a.jalr(1, 2, 0) | (1 << 12)],
  ["illegal: amoadd with funct3 = 3 (amoadd.d)", (a.amoadd(1, 2, 3) & ~(7 << 12)) | (3 << 12)],
  ["illegal: amo with funct3 = 0", a.amoadd(1, 2, 3) & ~(7 << 12)],
  ["illegal: amo funct5 = 0x06", a.rType(0x2f, 2, 0x06 << 2, 1, 2, 3)],
  ["illegal: lr.w with rs2 != 0", a.lrw(1, 2) | (5 << 20)],
  ["illegal: system funct3 = 4", 0x3400_4073],
  ["illegal: uret", 0x0020_0073],
  ["illegal: ecall with rd != 0", 0x0000_00f3],
  ["illegal: sfence.vma with rd != 0", a.sfencevma(1, 2) | (1 << 7)],
  ["illegal: misc-mem funct3 = 2", 0x0000_200f],
];

const hex = (v: number): string => "0x" + (v >>> 0).toString(16).padStart(8, "0");

function render(word: number): string {
  const d = decode(word);
  const name = OP_NAMES[d.op] ?? `?${d.op}`;
  const hexImm = d.op === Op.Lui || d.op === Op.Auipc || d.op === Op.Illegal || (d.op >= Op.Csrrw && d.op <= Op.Csrrci);
  const imm = hexImm ? hex(d.imm) : String(d.imm);
  return `${hex(word)}  ${name} ${d.rd} ${d.rs1} ${d.rs2} ${imm}`;
}

describe("decode - golden table", () => {
  it("decodes every op and the illegal encodings as in testdata/decode.golden.txt", async () => {
    const text = WORDS.map(([asm, word]) => `${render(word).padEnd(40)} # ${asm}`).join("\n") + "\n";
    await expect(text).toMatchFileSnapshot("testdata/decode.golden.txt");
  });

  it("every Op except Illegal appears in the table", () => {
    const seen = new Set(WORDS.map(([, w]) => decode(w).op));
    for (const [value, name] of Object.entries(OP_NAMES)) {
      if (Number.isNaN(Number(value))) continue;
      expect([name, seen.has(Number(value))]).toEqual([name, true]);
    }
  });
});

describe("decode - packed word", () => {
  it("a write to x0 is redirected to the sink register; other registers are kept", () => {
    expect((decodeWord(a.addi(0, 1, 5)) >>> 8) & 63).toBe(SINK_REGISTER);
    expect((decodeWord(a.addi(31, 1, 5)) >>> 8) & 63).toBe(31);
    expect(decode(a.addi(0, 1, 5)).rd).toBe(0);
  });

  it("the op is never 0, so 0 can mark an undecoded slot", () => {
    for (const [, w] of WORDS) expect(decodeWord(w) & 0xff).not.toBe(0);
  });
});
