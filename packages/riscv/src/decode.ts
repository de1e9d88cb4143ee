/**
 * Instruction decoding for RV32IMA + Zicsr + Zifencei.
 *
 * A decoded instruction is two int32 words kept side by side in a decoded page (see decode-cache.ts):
 *
 *   packed = op | rd << 8 | rs1 << 14 | rs2 << 19      imm = the sign-extended immediate
 *
 * `op` is never 0, so 0 marks a slot that is not decoded yet. `rd` is 6 bits wide: a write to x0 is
 * decoded as a write to the sink register 32, so the executor never tests for x0.
 * CSR instructions keep the CSR number in `imm` and the uimm (for the immediate forms) in `rs1`.
 * An illegal instruction keeps its raw bits in `imm`, which is what mtval reports.
 */

/** Operation ids. Values are dense so that the executor's switch compiles to a jump table. */
export const enum Op {
  Illegal = 1,
  Lui, Auipc, Jal, Jalr,
  Beq, Bne, Blt, Bge, Bltu, Bgeu,
  Lb, Lh, Lw, Lbu, Lhu, Sb, Sh, Sw,
  Addi, Slti, Sltiu, Xori, Ori, Andi, Slli, Srli, Srai,
  Add, Sub, Sll, Slt, Sltu, Xor, Srl, Sra, Or, And,
  Mul, Mulh, Mulhsu, Mulhu, Div, Divu, Rem, Remu,
  LrW, ScW, AmoSwap, AmoAdd, AmoXor, AmoAnd, AmoOr, AmoMin, AmoMax, AmoMinu, AmoMaxu,
  Fence, FenceI,
  Ecall, Ebreak, Mret, Sret, Wfi, SfenceVma,
  Csrrw, Csrrs, Csrrc, Csrrwi, Csrrsi, Csrrci,
}

/** The register index a decoded `rd` of x0 is redirected to. */
export const SINK_REGISTER = 32;

export interface Decoded {
  op: Op;
  rd: number;
  rs1: number;
  rs2: number;
  imm: number;
}

/** Packs fields into the decoded word; `rd` 0 becomes the sink register. */
function pack(op: Op, rd: number, rs1: number, rs2: number): number {
  return op | ((rd === 0 ? SINK_REGISTER : rd) << 8) | (rs1 << 14) | (rs2 << 19);
}

/** Ops by funct3 (0 = reserved encoding). */
const BRANCH_OPS = Uint8Array.of(Op.Beq, Op.Bne, 0, 0, Op.Blt, Op.Bge, Op.Bltu, Op.Bgeu);
const LOAD_OPS = Uint8Array.of(Op.Lb, Op.Lh, Op.Lw, 0, Op.Lbu, Op.Lhu, 0, 0);
const STORE_OPS = Uint8Array.of(Op.Sb, Op.Sh, Op.Sw, 0, 0, 0, 0, 0);
const OP_IMM_OPS = Uint8Array.of(Op.Addi, 0, Op.Slti, Op.Sltiu, Op.Xori, 0, Op.Ori, Op.Andi);
const OP_OPS = Uint8Array.of(Op.Add, Op.Sll, Op.Slt, Op.Sltu, Op.Xor, Op.Srl, Op.Or, Op.And);
const MULDIV_OPS = Uint8Array.of(Op.Mul, Op.Mulh, Op.Mulhsu, Op.Mulhu, Op.Div, Op.Divu, Op.Rem, Op.Remu);
const CSR_OPS = Uint8Array.of(0, Op.Csrrw, Op.Csrrs, Op.Csrrc, 0, Op.Csrrwi, Op.Csrrsi, Op.Csrrci);

/** Scratch slot for the immediate of the last `decodeWord` call: avoids an allocation per decode. */
export const decodedImm = new Int32Array(1);

/**
 * Decodes one instruction word. Returns the packed word and leaves the immediate in `decodedImm[0]`.
 * Never throws: anything that is not a valid RV32IMA/Zicsr/Zifencei encoding decodes as Op.Illegal.
 */
export function decodeWord(insn: number): number {
  insn |= 0;
  const opcode = insn & 0x7f;
  const rd = (insn >>> 7) & 31;
  const funct3 = (insn >>> 12) & 7;
  const rs1 = (insn >>> 15) & 31;
  const rs2 = (insn >>> 20) & 31;
  const funct7 = insn >>> 25;
  const immI = insn >> 20;
  decodedImm[0] = 0;
  switch (opcode) {
    case 0x37: // LUI
      decodedImm[0] = insn & 0xfffff000;
      return pack(Op.Lui, rd, 0, 0);
    case 0x17: // AUIPC
      decodedImm[0] = insn & 0xfffff000;
      return pack(Op.Auipc, rd, 0, 0);
    case 0x6f: { // JAL
      decodedImm[0] =
        ((insn >> 31) << 20) | (((insn >>> 12) & 0xff) << 12) | (((insn >>> 20) & 1) << 11) | (((insn >>> 21) & 0x3ff) << 1);
      return pack(Op.Jal, rd, 0, 0);
    }
    case 0x67: // JALR
      if (funct3 !== 0) break;
      decodedImm[0] = immI;
      return pack(Op.Jalr, rd, rs1, 0);
    case 0x63: { // BRANCH
      const op = BRANCH_OPS[funct3]!;
      if (op === 0) break;
      decodedImm[0] =
        ((insn >> 31) << 12) | (((insn >>> 7) & 1) << 11) | (((insn >>> 25) & 0x3f) << 5) | (((insn >>> 8) & 0xf) << 1);
      return op | (rs1 << 14) | (rs2 << 19);
    }
    case 0x03: { // LOAD
      const op = LOAD_OPS[funct3]!;
      if (op === 0) break;
      decodedImm[0] = immI;
      return pack(op, rd, rs1, 0);
    }
    case 0x23: { // STORE
      const op = STORE_OPS[funct3]!;
      if (op === 0) break;
      decodedImm[0] = ((insn >> 25) << 5) | ((insn >>> 7) & 31);
      return op | (rs1 << 14) | (rs2 << 19);
    }
    case 0x13: { // OP-IMM
      if (funct3 === 1) {
        if (funct7 !== 0) break;
        decodedImm[0] = rs2;
        return pack(Op.Slli, rd, rs1, 0);
      }
      if (funct3 === 5) {
        if (funct7 !== 0 && funct7 !== 0x20) break;
        decodedImm[0] = rs2;
        return pack(funct7 === 0 ? Op.Srli : Op.Srai, rd, rs1, 0);
      }
      const op = OP_IMM_OPS[funct3]!;
      decodedImm[0] = immI;
      return pack(op, rd, rs1, 0);
    }
    case 0x33: { // OP
      let op = 0;
      if (funct7 === 0) op = OP_OPS[funct3]!;
      else if (funct7 === 1) op = MULDIV_OPS[funct3]!;
      else if (funct7 === 0x20) op = funct3 === 0 ? Op.Sub : funct3 === 5 ? Op.Sra : 0;
      if (op === 0) break;
      return pack(op, rd, rs1, rs2);
    }
    case 0x0f: // MISC-MEM
      if (funct3 === 0) return pack(Op.Fence, 0, 0, 0);
      if (funct3 === 1) return pack(Op.FenceI, 0, 0, 0);
      break;
    case 0x2f: { // AMO
      if (funct3 !== 2) break;
      const funct5 = funct7 >>> 2;
      let op = 0;
      switch (funct5) {
        case 0x02: op = rs2 === 0 ? Op.LrW : 0; break;
        case 0x03: op = Op.ScW; break;
        case 0x01: op = Op.AmoSwap; break;
        case 0x00: op = Op.AmoAdd; break;
        case 0x04: op = Op.AmoXor; break;
        case 0x0c: op = Op.AmoAnd; break;
        case 0x08: op = Op.AmoOr; break;
        case 0x10: op = Op.AmoMin; break;
        case 0x14: op = Op.AmoMax; break;
        case 0x18: op = Op.AmoMinu; break;
        case 0x1c: op = Op.AmoMaxu; break;
      }
      if (op === 0) break;
      return pack(op, rd, rs1, rs2);
    }
    case 0x73: { // SYSTEM
      if (funct3 === 0) {
        if (insn === 0x00000073) return pack(Op.Ecall, 0, 0, 0);
        if (insn === 0x00100073) return pack(Op.Ebreak, 0, 0, 0);
        if (insn === 0x30200073) return pack(Op.Mret, 0, 0, 0);
        if (insn === 0x10200073) return pack(Op.Sret, 0, 0, 0);
        if (insn === 0x10500073) return pack(Op.Wfi, 0, 0, 0);
        if (funct7 === 0x09 && rd === 0) return pack(Op.SfenceVma, 0, rs1, rs2);
        break;
      }
      if (funct3 === 4) break;
      const op = CSR_OPS[funct3]!;
      decodedImm[0] = (insn >>> 20) & 0xfff;
      return pack(op, rd, rs1, 0);
    }
  }
  decodedImm[0] = insn;
  return Op.Illegal;
}

/** Decodes into a plain object: for tools and tests, not for the executor. */
export function decode(insn: number): Decoded {
  const w = decodeWord(insn);
  const rd = (w >>> 8) & 63;
  return { op: w & 0xff, rd: rd === SINK_REGISTER ? 0 : rd, rs1: (w >>> 14) & 31, rs2: (w >>> 19) & 31, imm: decodedImm[0]! };
}
