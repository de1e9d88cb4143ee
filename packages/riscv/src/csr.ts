/** CSR numbers (RISC-V privileged spec, RV32) and bit fields the hart implements. */
export const Csr = {
  // unprivileged counters
  cycle: 0xc00, time: 0xc01, instret: 0xc02, cycleh: 0xc80, timeh: 0xc81, instreth: 0xc82,
  // supervisor
  sstatus: 0x100, sie: 0x104, stvec: 0x105, scounteren: 0x106, senvcfg: 0x10a,
  sscratch: 0x140, sepc: 0x141, scause: 0x142, stval: 0x143, sip: 0x144, satp: 0x180,
  // machine information
  mvendorid: 0xf11, marchid: 0xf12, mimpid: 0xf13, mhartid: 0xf14, mconfigptr: 0xf15,
  // machine trap setup and handling
  mstatus: 0x300, misa: 0x301, medeleg: 0x302, mideleg: 0x303, mie: 0x304, mtvec: 0x305,
  mcounteren: 0x306, mstatush: 0x310, menvcfg: 0x30a, menvcfgh: 0x31a, mcountinhibit: 0x320,
  mscratch: 0x340, mepc: 0x341, mcause: 0x342, mtval: 0x343, mip: 0x344, mtinst: 0x34a, mtval2: 0x34b,
  // memory protection
  pmpcfg0: 0x3a0, pmpaddr0: 0x3b0,
  // machine counters
  mcycle: 0xb00, minstret: 0xb02, mcycleh: 0xb80, minstreth: 0xb82,
  mhpmcounter3: 0xb03, mhpmcounter3h: 0xb83, mhpmevent3: 0x323,
  hpmcounter3: 0xc03, hpmcounter3h: 0xc83,
} as const;

/** mstatus bits. */
export const MSTATUS_SIE = 1 << 1;
export const MSTATUS_MIE = 1 << 3;
export const MSTATUS_SPIE = 1 << 5;
export const MSTATUS_MPIE = 1 << 7;
export const MSTATUS_SPP = 1 << 8;
export const MSTATUS_MPP_SHIFT = 11;
export const MSTATUS_MPP = 3 << 11;
export const MSTATUS_MPRV = 1 << 17;
export const MSTATUS_SUM = 1 << 18;
export const MSTATUS_MXR = 1 << 19;
export const MSTATUS_TVM = 1 << 20;
export const MSTATUS_TW = 1 << 21;
export const MSTATUS_TSR = 1 << 22;

/** What M-mode can write in mstatus (no F/V extensions, little-endian only). */
export const MSTATUS_WRITABLE =
  MSTATUS_SIE | MSTATUS_MIE | MSTATUS_SPIE | MSTATUS_MPIE | MSTATUS_SPP | MSTATUS_MPP |
  MSTATUS_MPRV | MSTATUS_SUM | MSTATUS_MXR | MSTATUS_TVM | MSTATUS_TW | MSTATUS_TSR;
/** The part of mstatus visible (and writable) through sstatus. */
export const SSTATUS_MASK = MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_SUM | MSTATUS_MXR;

/** Interrupt numbers (bits of mip/mie and mcause with the interrupt bit). */
export const Irq = { SSI: 1, MSI: 3, STI: 5, MTI: 7, SEI: 9, MEI: 11 } as const;
export const MIP_SSIP = 1 << 1;
export const MIP_MSIP = 1 << 3;
export const MIP_STIP = 1 << 5;
export const MIP_MTIP = 1 << 7;
export const MIP_SEIP = 1 << 9;
export const MIP_MEIP = 1 << 11;
/** Supervisor-level interrupts: the only ones mideleg can delegate. */
export const S_INTERRUPTS = MIP_SSIP | MIP_STIP | MIP_SEIP;
export const ALL_INTERRUPTS = S_INTERRUPTS | MIP_MSIP | MIP_MTIP | MIP_MEIP;

/** Exception causes (mcause without the interrupt bit). */
export const Cause = {
  InstructionMisaligned: 0,
  InstructionAccessFault: 1,
  IllegalInstruction: 2,
  Breakpoint: 3,
  LoadMisaligned: 4,
  LoadAccessFault: 5,
  StoreMisaligned: 6,
  StoreAccessFault: 7,
  EcallFromU: 8,
  EcallFromS: 9,
  EcallFromM: 11,
  InstructionPageFault: 12,
  LoadPageFault: 13,
  StorePageFault: 15,
} as const;
/** Exceptions M-mode may delegate to S-mode through medeleg (ecall from M cannot be). */
export const DELEGABLE_EXCEPTIONS = 0xb3ff;
/** The interrupt bit of mcause/scause. */
export const CAUSE_INTERRUPT = 0x8000_0000 | 0;

/** misa: MXL=1 (RV32), extensions A, I, M, S, U. */
export const MISA = (1 << 30) | (1 << 0) | (1 << 8) | (1 << 12) | (1 << 18) | (1 << 20);

/** Privilege modes. */
export const enum Priv {
  U = 0,
  S = 1,
  M = 3,
}
