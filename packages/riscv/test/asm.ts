/**
 * A tiny RV32IMA assembler for tests: each function returns one encoded instruction word.
 * Register arguments are numbers (x0..x31); immediates are checked against their field width.
 */

function checkReg(r: number): number {
  if (!Number.isInteger(r) || r < 0 || r > 31) throw new RangeError(`bad register x${r}`);
  return r;
}

function checkImm(v: number, bits: number, signed = true): number {
  const min = signed ? -(2 ** (bits - 1)) : 0;
  const max = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
  if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`immediate ${v} does not fit in ${bits} bits`);
  return v;
}

export function rType(opcode: number, funct3: number, funct7: number, rd: number, rs1: number, rs2: number): number {
  return ((funct7 << 25) | (checkReg(rs2) << 20) | (checkReg(rs1) << 15) | (funct3 << 12) | (checkReg(rd) << 7) | opcode) >>> 0;
}

export function iType(opcode: number, funct3: number, rd: number, rs1: number, imm: number): number {
  return (((checkImm(imm, 12) & 0xfff) << 20) | (checkReg(rs1) << 15) | (funct3 << 12) | (checkReg(rd) << 7) | opcode) >>> 0;
}

export function sType(funct3: number, rs1: number, rs2: number, imm: number): number {
  checkImm(imm, 12);
  return ((((imm >> 5) & 0x7f) << 25) | (checkReg(rs2) << 20) | (checkReg(rs1) << 15) | (funct3 << 12) | ((imm & 31) << 7) | 0x23) >>> 0;
}

export function bType(funct3: number, rs1: number, rs2: number, offset: number): number {
  checkImm(offset, 13);
  if (offset & 1) throw new RangeError("branch offset must be even");
  const o = offset & 0x1fff;
  return (
    ((((o >> 12) & 1) << 31) | (((o >> 5) & 0x3f) << 25) | (checkReg(rs2) << 20) | (checkReg(rs1) << 15) |
      (funct3 << 12) | (((o >> 1) & 0xf) << 8) | (((o >> 11) & 1) << 7) | 0x63) >>> 0
  );
}

export function uType(opcode: number, rd: number, imm20: number): number {
  return (((checkImm(imm20, 20, false) & 0xfffff) << 12) | (checkReg(rd) << 7) | opcode) >>> 0;
}

export function jal(rd: number, offset: number): number {
  checkImm(offset, 21);
  const o = offset & 0x1fffff;
  return (
    ((((o >> 20) & 1) << 31) | (((o >> 1) & 0x3ff) << 21) | (((o >> 11) & 1) << 20) | (((o >> 12) & 0xff) << 12) |
      (checkReg(rd) << 7) | 0x6f) >>> 0
  );
}

export const lui = (rd: number, imm20: number) => uType(0x37, rd, imm20);
export const auipc = (rd: number, imm20: number) => uType(0x17, rd, imm20);
export const jalr = (rd: number, rs1: number, imm: number) => iType(0x67, 0, rd, rs1, imm);

export const beq = (a: number, b: number, o: number) => bType(0, a, b, o);
export const bne = (a: number, b: number, o: number) => bType(1, a, b, o);
export const blt = (a: number, b: number, o: number) => bType(4, a, b, o);
export const bge = (a: number, b: number, o: number) => bType(5, a, b, o);
export const bltu = (a: number, b: number, o: number) => bType(6, a, b, o);
export const bgeu = (a: number, b: number, o: number) => bType(7, a, b, o);

export const lb = (rd: number, rs1: number, imm: number) => iType(0x03, 0, rd, rs1, imm);
export const lh = (rd: number, rs1: number, imm: number) => iType(0x03, 1, rd, rs1, imm);
export const lw = (rd: number, rs1: number, imm: number) => iType(0x03, 2, rd, rs1, imm);
export const lbu = (rd: number, rs1: number, imm: number) => iType(0x03, 4, rd, rs1, imm);
export const lhu = (rd: number, rs1: number, imm: number) => iType(0x03, 5, rd, rs1, imm);
export const sb = (rs2: number, rs1: number, imm: number) => sType(0, rs1, rs2, imm);
export const sh = (rs2: number, rs1: number, imm: number) => sType(1, rs1, rs2, imm);
export const sw = (rs2: number, rs1: number, imm: number) => sType(2, rs1, rs2, imm);

export const addi = (rd: number, rs1: number, imm: number) => iType(0x13, 0, rd, rs1, imm);
export const slti = (rd: number, rs1: number, imm: number) => iType(0x13, 2, rd, rs1, imm);
export const sltiu = (rd: number, rs1: number, imm: number) => iType(0x13, 3, rd, rs1, imm);
export const xori = (rd: number, rs1: number, imm: number) => iType(0x13, 4, rd, rs1, imm);
export const ori = (rd: number, rs1: number, imm: number) => iType(0x13, 6, rd, rs1, imm);
export const andi = (rd: number, rs1: number, imm: number) => iType(0x13, 7, rd, rs1, imm);
export const slli = (rd: number, rs1: number, sh: number) => rType(0x13, 1, 0, rd, rs1, checkImm(sh, 5, false));
export const srli = (rd: number, rs1: number, sh: number) => rType(0x13, 5, 0, rd, rs1, checkImm(sh, 5, false));
export const srai = (rd: number, rs1: number, sh: number) => rType(0x13, 5, 0x20, rd, rs1, checkImm(sh, 5, false));

const op = (f3: number, f7: number) => (rd: number, rs1: number, rs2: number) => rType(0x33, f3, f7, rd, rs1, rs2);
export const add = op(0, 0);
export const sub = op(0, 0x20);
export const sll = op(1, 0);
export const slt = op(2, 0);
export const sltu = op(3, 0);
export const xor = op(4, 0);
export const srl = op(5, 0);
export const sra = op(5, 0x20);
export const or = op(6, 0);
export const and = op(7, 0);
export const mul = op(0, 1);
export const mulh = op(1, 1);
export const mulhsu = op(2, 1);
export const mulhu = op(3, 1);
export const div = op(4, 1);
export const divu = op(5, 1);
export const rem = op(6, 1);
export const remu = op(7, 1);

const amo = (funct5: number) => (rd: number, rs1: number, rs2: number, aq = 0, rl = 0) =>
  rType(0x2f, 2, (funct5 << 2) | (aq << 1) | rl, rd, rs1, rs2);
export const lrw = (rd: number, rs1: number) => amo(0x02)(rd, rs1, 0);
export const scw = amo(0x03);
export const amoswap = amo(0x01);
export const amoadd = amo(0x00);
export const amoxor = amo(0x04);
export const amoand = amo(0x0c);
export const amoor = amo(0x08);
export const amomin = amo(0x10);
export const amomax = amo(0x14);
export const amominu = amo(0x18);
export const amomaxu = amo(0x1c);

export const fence = () => 0x0ff0000f;
export const fencei = () => 0x0000100f;
export const ecall = () => 0x00000073;
export const ebreak = () => 0x00100073;
export const mret = () => 0x30200073;
export const sret = () => 0x10200073;
export const wfi = () => 0x10500073;
export const sfencevma = (rs1 = 0, rs2 = 0) => rType(0x73, 0, 0x09, 0, rs1, rs2);

const csrOp = (f3: number) => (rd: number, csr: number, rs1: number) =>
  ((csr << 20) | (checkReg(rs1) << 15) | (f3 << 12) | (checkReg(rd) << 7) | 0x73) >>> 0;
export const csrrw = csrOp(1);
export const csrrs = csrOp(2);
export const csrrc = csrOp(3);
/** Immediate forms: the third argument is the 5-bit uimm. */
export const csrrwi = csrOp(5);
export const csrrsi = csrOp(6);
export const csrrci = csrOp(7);

/** Loads a full 32-bit constant into rd (lui + addi). */
export function li(rd: number, value: number): number[] {
  value |= 0;
  const lo = (value << 20) >> 20;
  const hi = ((value - lo) >>> 12) & 0xfffff;
  if (hi === 0) return [addi(rd, 0, lo)];
  return [lui(rd, hi), addi(rd, rd, lo)];
}
