import { Access, BUS_FAULT, PAGE_EXIT, PAGE_FAULT, PAGE_MMIO, type PhysicalBus } from "./bus.js";
import {
  ALL_INTERRUPTS, CAUSE_INTERRUPT, Cause, Csr, DELEGABLE_EXCEPTIONS, MIP_SSIP, MISA,
  MSTATUS_MIE, MSTATUS_MPIE, MSTATUS_MPP, MSTATUS_MPP_SHIFT, MSTATUS_MPRV, MSTATUS_MXR, MSTATUS_SIE,
  MSTATUS_SPIE, MSTATUS_SPP, MSTATUS_SUM, MSTATUS_TSR, MSTATUS_TVM, MSTATUS_TW, MSTATUS_WRITABLE,
  Priv, SSTATUS_MASK, S_INTERRUPTS,
} from "./csr.js";
import { Op } from "./decode.js";
import { DecodeCache, type CodeFrameListener, type DecodedPage } from "./decode-cache.js";

/** Why `Hart.run` returned. */
export const enum Exit {
  /** The instruction budget is spent. */
  Budget = 0,
  /** WFI with no interrupt pending: sleep until an interrupt line changes. `pc` is past the WFI. */
  Wfi = 1,
  /** `requestExit()` was called (by a device during an MMIO access, or by the owner). */
  Requested = 2,
  /** The bus answered PAGE_EXIT; the instruction at `pc` runs again on the next `run`. */
  Bus = 3,
  /** ECALL from S-mode with `ecallExit` set: the hypervisor handles it (SBI), then advances `pc` by 4. */
  Ecall = 4,
  /** With `machineTrapExit`: a trap was just taken into M-mode (mcause/mepc/mtval say which). */
  MachineTrap = 5,
}

export interface HartOptions {
  bus: PhysicalBus;
  hartId?: number;
  /** Shared by the harts of one partition; made for this hart when absent. */
  decodeCache?: DecodeCache;
  /** The platform timer (mtime, 10 MHz ticks) behind the `time` CSR; without it `time` is illegal. */
  readTime?: () => number;
  /** ECALL from S-mode returns Exit.Ecall instead of trapping (the hypervisor provides the SBI). */
  ecallExit?: boolean;
  /** Return Exit.MachineTrap as soon as a trap is taken into M-mode (the hypervisor owns M-mode). */
  machineTrapExit?: boolean;
}

/** TLB geometry: direct-mapped on the virtual page number. */
const TLB_SIZE = 1024;
const TLB_MASK = TLB_SIZE - 1;
/** Set in a write-TLB base: the frame holds decoded code, so stores forget the words they overwrite. */
const CODE_FRAME = 1;

/** fillTlb results other than a host frame base. */
const FILL_TRAPPED = -1;
const FILL_MMIO = -2;
const FILL_EXIT = -3;

/** One privilege level's translations: virtual page -> host frame base, for read, write and execute. */
class TlbSet {
  readonly rTag = new Int32Array(TLB_SIZE).fill(-1);
  readonly rBase = new Int32Array(TLB_SIZE);
  readonly wTag = new Int32Array(TLB_SIZE).fill(-1);
  readonly wBase = new Int32Array(TLB_SIZE);
  readonly xTag = new Int32Array(TLB_SIZE).fill(-1);
  readonly xBase = new Int32Array(TLB_SIZE);

  flush(): void {
    this.rTag.fill(-1);
    this.wTag.fill(-1);
    this.xTag.fill(-1);
  }

  /** Marks write entries that point at `frameBase` as code frames. */
  markCode(frameBase: number): void {
    const { wTag, wBase } = this;
    for (let i = 0; i < TLB_SIZE; i++) if (wTag[i] !== -1 && wBase[i] === frameBase) wBase[i] = frameBase | CODE_FRAME;
  }
}

const EMPTY_PAGE: DecodedPage = { ops: new Int32Array(1024), imms: new Int32Array(1024) };
const TWO_32 = 4294967296;


/**
 * One RISC-V hart: RV32IMA + Zicsr + Zifencei, M/S/U modes, Sv32, PMP.
 *
 * Execution model: `run(budget)` executes up to `budget` instructions and returns an Exit. Traps are
 * values: an exception updates the CSRs and `pc` and execution goes on at the handler; nothing throws.
 *
 * The hot loop keeps pc, the remaining budget and the current decoded page in locals; everything that
 * can change privilege, translation or the interrupt state leaves the inner loop through `continue outer`,
 * which reloads those locals and checks for interrupts. Loads, stores and fetches hit a direct-mapped
 * TLB per privilege level that maps virtual pages straight to host frames; a miss, MMIO, a page the bus
 * write-protects, a misaligned access or a store to a frame with decoded code takes the slow path.
 */
export class Hart implements CodeFrameListener {
  /** x0..x31, and x32: the sink that decoded writes to x0 go to. x[0] is always 0. */
  readonly x = new Int32Array(33);
  pc = 0;
  priv: Priv = Priv.M;
  readonly hartId: number;
  readonly decodeCache: DecodeCache;

  // Machine-level CSRs.
  mstatus = 0;
  medeleg = 0;
  mideleg = 0;
  mie = 0;
  /** Software-writable pending bits (SSIP, STIP, SEIP). */
  mipSoftware = 0;
  /** Pending bits driven by devices (MSIP, MTIP, MEIP, external SEIP). */
  mipLines = 0;
  mtvec = 0;
  mcounteren = 0;
  mcountinhibit = 0;
  mscratch = 0;
  mepc = 0;
  mcause = 0;
  mtval = 0;
  menvcfg = 0;
  readonly pmpcfg = new Uint8Array(16);
  readonly pmpaddr = new Int32Array(16);
  // Supervisor-level CSRs.
  stvec = 0;
  scounteren = 0;
  sscratch = 0;
  sepc = 0;
  scause = 0;
  stval = 0;
  satp = 0;
  senvcfg = 0;
  /** Retired instructions and cycles (one cycle per instruction). Doubles: exact up to 2^53. */
  instret = 0;
  cycle = 0;
  /** LR/SC reservation: virtual address and the value LR read (SC succeeds if memory still holds it). */
  reservationVa = -1;
  reservationValue = 0;

  private readonly bus: PhysicalBus;
  private readonly readTime: (() => number) | undefined;
  private readonly ecallExit: boolean;
  private readonly machineTrapExit: boolean;
  /** Budget given to the last `run` and what was left of it. */
  private runBudget = 0;
  private readonly mem8: Uint8Array;
  private readonly mem16: Uint16Array;
  private readonly mem32: Int32Array;
  /** TLB sets by privilege level (index 2 unused). */
  private readonly tlbs: TlbSet[] = [new TlbSet(), new TlbSet(), new TlbSet(), new TlbSet()];
  private fetchTlb: TlbSet;
  private dataTlb: TlbSet;
  private dataPriv: Priv = Priv.M;
  private pmpActive = false;
  /**
   * Budget accounting. `left` is the budget remaining in the current `run` (kept in a field while a slow
   * path runs); every instruction started, faulting or not, spends one, so a guest that faults forever
   * (say, with an unmapped trap vector) still returns from `run`. `unretired` counts the ones that
   * started but did not retire. Counters are settled into `instret`/`cycle` at the end of a run and
   * whenever a counter CSR is written; `budget` is `left` as of the last settlement.
   */
  private left = 0;
  private budget = 0;
  private unretired = 0;
  private exitRequested = false;
  /** Set when an interrupt line rose: the run loop re-checks interrupts after the current instruction. */
  private recheck = false;
  private exitReason: Exit = Exit.Budget;
  /** The physical page number of the last fillTlb (what an MMIO access goes to). */
  private lastPhysicalPage = 0;

  constructor(options: HartOptions) {
    this.bus = options.bus;
    this.hartId = options.hartId ?? 0;
    this.readTime = options.readTime;
    this.ecallExit = options.ecallExit ?? false;
    this.machineTrapExit = options.machineTrapExit ?? false;
    const memory = options.bus.memory;
    if (memory.byteOffset % 4096 !== 0 || memory.byteLength % 4096 !== 0) {
      throw new RangeError("bus memory must start and end on a 4 KiB boundary");
    }
    // Host offsets are kept in int32 TLB entries and used as typed-array indexes.
    if (memory.byteLength > 0x8000_0000) throw new RangeError("bus memory must be at most 2 GiB");
    if (new Uint8Array(Uint32Array.of(1).buffer)[0] !== 1) throw new Error("the host must be little-endian");
    this.mem8 = memory;
    this.mem16 = new Uint16Array(memory.buffer, memory.byteOffset, memory.byteLength >>> 1);
    this.mem32 = new Int32Array(memory.buffer, memory.byteOffset, memory.byteLength >>> 2);
    this.decodeCache = options.decodeCache ?? new DecodeCache(memory);
    this.decodeCache.addListener(this);
    this.fetchTlb = this.tlbs[Priv.M]!;
    this.dataTlb = this.tlbs[Priv.M]!;
  }

  /** The full mip value: software bits and device lines. */
  get mip(): number {
    return this.mipSoftware | this.mipLines;
  }

  /** Drives an interrupt line (a mip bit owned by a device: MSIP, MTIP, MEIP, or the external SEIP). */
  setInterruptLine(bit: number, level: boolean): void {
    if (level) {
      // A line raised by a device during this hart's MMIO access is taken after that instruction.
      if ((this.mipLines & bit) === 0) this.recheck = true;
      this.mipLines |= bit;
    } else this.mipLines &= ~bit;
  }

  /** Whether an interrupt is pending and enabled in mie, whatever the global enables say (WFI's wake rule). */
  get wakeable(): boolean {
    return (this.mip & this.mie) !== 0;
  }

  /** Asks the current `run` to return Exit.Requested at the next instruction boundary it checks. */
  requestExit(): void {
    this.exitRequested = true;
  }

  /** Forgets every cached translation (the bus's answers changed, e.g. the EPT was write-protected). */
  flushTlb(): void {
    for (const t of this.tlbs) t.flush();
  }

  onCodeFrame(frameBase: number): void {
    for (const t of this.tlbs) t.markCode(frameBase);
  }

  /** Puts the hart in its reset state, starting at `pc` in M-mode. */
  reset(pc: number): void {
    this.x.fill(0);
    this.pc = pc | 0;
    this.priv = Priv.M;
    this.mstatus = 0;
    this.medeleg = this.mideleg = this.mie = this.mipSoftware = 0;
    this.mtvec = this.mcounteren = this.mcountinhibit = this.mscratch = this.mepc = this.mcause = this.mtval = 0;
    this.menvcfg = this.senvcfg = 0;
    this.stvec = this.scounteren = this.sscratch = this.sepc = this.scause = this.stval = this.satp = 0;
    this.pmpcfg.fill(0);
    this.pmpaddr.fill(0);
    this.pmpActive = false;
    this.reservationVa = -1;
    this.flushTlb();
    this.updateContext();
  }

  /**
   * Executes up to `budget` instructions. Pending, enabled interrupts are taken on entry and after every
   * instruction that may enable one. Returns why it stopped; `instret` counts what retired.
   */
  run(budget: number): Exit {
    this.budget = budget;
    this.runBudget = budget;
    this.left = budget;
    this.unretired = 0;
    this.exitReason = Exit.Budget;
    this.exitRequested = false;
    const x = this.x;
    const mem8 = this.mem8;
    const mem16 = this.mem16;
    const mem32 = this.mem32;
    const cache = this.decodeCache;
    outer: for (;;) {
      if (this.exitRequested) {
        this.exitRequested = false;
        this.exitReason = Exit.Requested;
        break;
      }
      if (this.left <= 0 || this.exitReason !== Exit.Budget) break;
      this.recheck = false;
      if ((this.mipSoftware | this.mipLines) & this.mie) this.takeInterrupt();
      let pc = this.pc;
      let left = this.left;
      const { xTag, xBase } = this.fetchTlb;
      const { rTag, rBase, wTag, wBase } = this.dataTlb;
      let pageVpn = -1;
      let frame = 0;
      let page = EMPTY_PAGE;
      let ops = page.ops;
      let imms = page.imms;
      while (left > 0) {
        if (pc >>> 12 !== pageVpn) {
          const vpn = pc >>> 12;
          const t = vpn & TLB_MASK;
          if (xTag[t] === vpn) frame = xBase[t]!;
          else {
            // Count the instruction as started, like the ones in the switch: a fault un-counts it.
            this.sync(pc, left - 1);
            const r = this.fillTlb(pc, Access.Execute);
            if (r < 0) {
              if (r === FILL_MMIO) this.raise(Cause.InstructionAccessFault, pc);
              continue outer;
            }
            frame = r;
          }
          page = cache.page(frame);
          ops = page.ops;
          imms = page.imms;
          pageVpn = vpn;
        }
        const index = (pc >>> 2) & 1023;
        let w = ops[index]!;
        if (w === 0) w = cache.fill(page, frame, index);
        const imm = imms[index]!;
        left--;
        switch (w & 0xff) {
          case Op.Addi:
            x[(w >>> 8) & 63] = (x[(w >>> 14) & 31]! + imm) | 0;
            pc = (pc + 4) | 0;
            break;
          case Op.Lui:
            x[(w >>> 8) & 63] = imm;
            pc = (pc + 4) | 0;
            break;
          case Op.Auipc:
            x[(w >>> 8) & 63] = (pc + imm) | 0;
            pc = (pc + 4) | 0;
            break;
          case Op.Jal: {
            const target = (pc + imm) | 0;
            if ((target & 3) !== 0) {
              this.sync(pc, left);
              this.raise(Cause.InstructionMisaligned, target);
              continue outer;
            }
            x[(w >>> 8) & 63] = (pc + 4) | 0;
            pc = target;
            break;
          }
          case Op.Jalr: {
            const target = ((x[(w >>> 14) & 31]! + imm) & ~1) | 0;
            if ((target & 3) !== 0) {
              this.sync(pc, left);
              this.raise(Cause.InstructionMisaligned, target);
              continue outer;
            }
            x[(w >>> 8) & 63] = (pc + 4) | 0;
            pc = target;
            break;
          }
          case Op.Beq:
          case Op.Bne:
          case Op.Blt:
          case Op.Bge:
          case Op.Bltu:
          case Op.Bgeu: {
            const a = x[(w >>> 14) & 31]!;
            const b = x[(w >>> 19) & 31]!;
            let taken: boolean;
            switch (w & 0xff) {
              case Op.Beq: taken = a === b; break;
              case Op.Bne: taken = a !== b; break;
              case Op.Blt: taken = a < b; break;
              case Op.Bge: taken = a >= b; break;
              case Op.Bltu: taken = a >>> 0 < b >>> 0; break;
              default: taken = a >>> 0 >= b >>> 0; break;
            }
            if (!taken) {
              pc = (pc + 4) | 0;
              break;
            }
            const target = (pc + imm) | 0;
            if ((target & 3) !== 0) {
              this.sync(pc, left);
              this.raise(Cause.InstructionMisaligned, target);
              continue outer;
            }
            pc = target;
            break;
          }
          case Op.Lw: {
            const va = (x[(w >>> 14) & 31]! + imm) | 0;
            const vpn = va >>> 12;
            const t = vpn & TLB_MASK;
            if (rTag[t] === vpn && (va & 3) === 0) {
              x[(w >>> 8) & 63] = mem32[(rBase[t]! | (va & 0xfff)) >>> 2]!;
              pc = (pc + 4) | 0;
              break;
            }
            this.sync(pc, left);
            const v = this.loadSlow(va, 4);
            if (v === BUS_FAULT) continue outer;
            x[(w >>> 8) & 63] = v;
            pc = (pc + 4) | 0;
            if (this.exitRequested || this.recheck) {
              this.sync(pc, left);
              continue outer;
            }
            break;
          }
          case Op.Lh:
          case Op.Lhu: {
            const va = (x[(w >>> 14) & 31]! + imm) | 0;
            const vpn = va >>> 12;
            const t = vpn & TLB_MASK;
            let v: number;
            if (rTag[t] === vpn && (va & 1) === 0) v = mem16[(rBase[t]! | (va & 0xfff)) >>> 1]!;
            else {
              this.sync(pc, left);
              v = this.loadSlow(va, 2);
              if (v === BUS_FAULT) continue outer;
            }
            x[(w >>> 8) & 63] = (w & 0xff) === Op.Lh ? (v << 16) >> 16 : v & 0xffff;
            pc = (pc + 4) | 0;
            if (this.exitRequested || this.recheck) {
              this.sync(pc, left);
              continue outer;
            }
            break;
          }
          case Op.Lb:
          case Op.Lbu: {
            const va = (x[(w >>> 14) & 31]! + imm) | 0;
            const vpn = va >>> 12;
            const t = vpn & TLB_MASK;
            let v: number;
            if (rTag[t] === vpn) v = mem8[rBase[t]! | (va & 0xfff)]!;
            else {
              this.sync(pc, left);
              v = this.loadSlow(va, 1);
              if (v === BUS_FAULT) continue outer;
            }
            x[(w >>> 8) & 63] = (w & 0xff) === Op.Lb ? (v << 24) >> 24 : v & 0xff;
            pc = (pc + 4) | 0;
            if (this.exitRequested || this.recheck) {
              this.sync(pc, left);
              continue outer;
            }
            break;
          }
          case Op.Sw: {
            const va = (x[(w >>> 14) & 31]! + imm) | 0;
            const vpn = va >>> 12;
            const t = vpn & TLB_MASK;
            const base = wBase[t]!;
            if (wTag[t] === vpn && ((va & 3) | (base & CODE_FRAME)) === 0) {
              mem32[(base | (va & 0xfff)) >>> 2] = x[(w >>> 19) & 31]!;
              pc = (pc + 4) | 0;
              break;
            }
            this.sync(pc, left);
            if (!this.storeSlow(va, 4, x[(w >>> 19) & 31]!)) continue outer;
            pc = (pc + 4) | 0;
            if (this.exitRequested || this.recheck) {
              this.sync(pc, left);
              continue outer;
            }
            break;
          }
          case Op.Sh: {
            const va = (x[(w >>> 14) & 31]! + imm) | 0;
            const vpn = va >>> 12;
            const t = vpn & TLB_MASK;
            const base = wBase[t]!;
            if (wTag[t] === vpn && ((va & 1) | (base & CODE_FRAME)) === 0) {
              mem16[(base | (va & 0xfff)) >>> 1] = x[(w >>> 19) & 31]!;
              pc = (pc + 4) | 0;
              break;
            }
            this.sync(pc, left);
            if (!this.storeSlow(va, 2, x[(w >>> 19) & 31]!)) continue outer;
            pc = (pc + 4) | 0;
            if (this.exitRequested || this.recheck) {
              this.sync(pc, left);
              continue outer;
            }
            break;
          }
          case Op.Sb: {
            const va = (x[(w >>> 14) & 31]! + imm) | 0;
            const vpn = va >>> 12;
            const t = vpn & TLB_MASK;
            const base = wBase[t]!;
            if (wTag[t] === vpn && (base & CODE_FRAME) === 0) {
              mem8[base | (va & 0xfff)] = x[(w >>> 19) & 31]!;
              pc = (pc + 4) | 0;
              break;
            }
            this.sync(pc, left);
            if (!this.storeSlow(va, 1, x[(w >>> 19) & 31]!)) continue outer;
            pc = (pc + 4) | 0;
            if (this.exitRequested || this.recheck) {
              this.sync(pc, left);
              continue outer;
            }
            break;
          }
          case Op.Slti:
            x[(w >>> 8) & 63] = x[(w >>> 14) & 31]! < imm ? 1 : 0;
            pc = (pc + 4) | 0;
            break;
          case Op.Sltiu:
            x[(w >>> 8) & 63] = x[(w >>> 14) & 31]! >>> 0 < imm >>> 0 ? 1 : 0;
            pc = (pc + 4) | 0;
            break;
          case Op.Xori:
            x[(w >>> 8) & 63] = x[(w >>> 14) & 31]! ^ imm;
            pc = (pc + 4) | 0;
            break;
          case Op.Ori:
            x[(w >>> 8) & 63] = x[(w >>> 14) & 31]! | imm;
            pc = (pc + 4) | 0;
            break;
          case Op.Andi:
            x[(w >>> 8) & 63] = x[(w >>> 14) & 31]! & imm;
            pc = (pc + 4) | 0;
            break;
          case Op.Slli:
            x[(w >>> 8) & 63] = x[(w >>> 14) & 31]! << imm;
            pc = (pc + 4) | 0;
            break;
          case Op.Srli:
            x[(w >>> 8) & 63] = x[(w >>> 14) & 31]! >>> imm;
            pc = (pc + 4) | 0;
            break;
          case Op.Srai:
            x[(w >>> 8) & 63] = x[(w >>> 14) & 31]! >> imm;
            pc = (pc + 4) | 0;
            break;
          case Op.Add:
            x[(w >>> 8) & 63] = (x[(w >>> 14) & 31]! + x[(w >>> 19) & 31]!) | 0;
            pc = (pc + 4) | 0;
            break;
          case Op.Sub:
            x[(w >>> 8) & 63] = (x[(w >>> 14) & 31]! - x[(w >>> 19) & 31]!) | 0;
            pc = (pc + 4) | 0;
            break;
          case Op.Sll:
            x[(w >>> 8) & 63] = x[(w >>> 14) & 31]! << (x[(w >>> 19) & 31]! & 31);
            pc = (pc + 4) | 0;
            break;
          case Op.Slt:
            x[(w >>> 8) & 63] = x[(w >>> 14) & 31]! < x[(w >>> 19) & 31]! ? 1 : 0;
            pc = (pc + 4) | 0;
            break;
          case Op.Sltu:
            x[(w >>> 8) & 63] = x[(w >>> 14) & 31]! >>> 0 < x[(w >>> 19) & 31]! >>> 0 ? 1 : 0;
            pc = (pc + 4) | 0;
            break;
          case Op.Xor:
            x[(w >>> 8) & 63] = x[(w >>> 14) & 31]! ^ x[(w >>> 19) & 31]!;
            pc = (pc + 4) | 0;
            break;
          case Op.Srl:
            x[(w >>> 8) & 63] = x[(w >>> 14) & 31]! >>> (x[(w >>> 19) & 31]! & 31);
            pc = (pc + 4) | 0;
            break;
          case Op.Sra:
            x[(w >>> 8) & 63] = x[(w >>> 14) & 31]! >> (x[(w >>> 19) & 31]! & 31);
            pc = (pc + 4) | 0;
            break;
          case Op.Or:
            x[(w >>> 8) & 63] = x[(w >>> 14) & 31]! | x[(w >>> 19) & 31]!;
            pc = (pc + 4) | 0;
            break;
          case Op.And:
            x[(w >>> 8) & 63] = x[(w >>> 14) & 31]! & x[(w >>> 19) & 31]!;
            pc = (pc + 4) | 0;
            break;
          case Op.Mul:
            x[(w >>> 8) & 63] = Math.imul(x[(w >>> 14) & 31]!, x[(w >>> 19) & 31]!);
            pc = (pc + 4) | 0;
            break;
          case Op.Mulh:
            x[(w >>> 8) & 63] = mulh(x[(w >>> 14) & 31]!, x[(w >>> 19) & 31]!);
            pc = (pc + 4) | 0;
            break;
          case Op.Mulhsu:
            x[(w >>> 8) & 63] = mulhsu(x[(w >>> 14) & 31]!, x[(w >>> 19) & 31]!);
            pc = (pc + 4) | 0;
            break;
          case Op.Mulhu:
            x[(w >>> 8) & 63] = mulhu(x[(w >>> 14) & 31]!, x[(w >>> 19) & 31]!);
            pc = (pc + 4) | 0;
            break;
          case Op.Div: {
            const a = x[(w >>> 14) & 31]!;
            const b = x[(w >>> 19) & 31]!;
            // x / 0 = -1; INT32_MIN / -1 = INT32_MIN (the | 0 wraps 2^31)
            x[(w >>> 8) & 63] = b === 0 ? -1 : (a / b) | 0;
            pc = (pc + 4) | 0;
            break;
          }
          case Op.Divu: {
            const b = x[(w >>> 19) & 31]! >>> 0;
            x[(w >>> 8) & 63] = b === 0 ? -1 : ((x[(w >>> 14) & 31]! >>> 0) / b) | 0;
            pc = (pc + 4) | 0;
            break;
          }
          case Op.Rem: {
            const a = x[(w >>> 14) & 31]!;
            const b = x[(w >>> 19) & 31]!;
            // x % 0 = x; INT32_MIN % -1 = 0 (JS gives -0, which | 0 makes 0)
            x[(w >>> 8) & 63] = b === 0 ? a : a % b | 0;
            pc = (pc + 4) | 0;
            break;
          }
          case Op.Remu: {
            const a = x[(w >>> 14) & 31]! >>> 0;
            const b = x[(w >>> 19) & 31]! >>> 0;
            x[(w >>> 8) & 63] = b === 0 ? a | 0 : a % b | 0;
            pc = (pc + 4) | 0;
            break;
          }
          case Op.Fence:
            pc = (pc + 4) | 0;
            break;
          case Op.LrW:
          case Op.ScW:
          case Op.AmoSwap:
          case Op.AmoAdd:
          case Op.AmoXor:
          case Op.AmoAnd:
          case Op.AmoOr:
          case Op.AmoMin:
          case Op.AmoMax:
          case Op.AmoMinu:
          case Op.AmoMaxu: {
            this.sync(pc, left);
            const v = this.atomic(w & 0xff, x[(w >>> 14) & 31]!, x[(w >>> 19) & 31]!);
            if (v === BUS_FAULT) continue outer;
            x[(w >>> 8) & 63] = v;
            pc = (pc + 4) | 0;
            break;
          }
          default:
            // System instructions, CSRs, FENCE.I and illegal encodings: may change privilege, translation
            // or interrupt state, so reload everything afterwards.
            this.sync(pc, left);
            this.system(w, imm);
            continue outer;
        }
      }
      this.sync(pc, left);
    }
    this.settleCounters();
    return this.exitReason;
  }

  /** Budget the last `run` spent: instructions executed, retired or not. */
  get spent(): number {
    return this.runBudget - this.left;
  }

  /** Instructions retired since the counters were last settled. */
  private get retiredInRun(): number {
    return this.budget - this.left - this.unretired;
  }

  /** Adds what retired since the last settlement to the counters that are not inhibited. */
  private settleCounters(): void {
    const retired = this.retiredInRun;
    if ((this.mcountinhibit & 4) === 0) this.instret += retired;
    if ((this.mcountinhibit & 1) === 0) this.cycle += retired;
    this.budget = this.left;
    this.unretired = 0;
  }

  private get cycleNow(): number {
    return this.cycle + ((this.mcountinhibit & 1) === 0 ? this.retiredInRun : 0);
  }

  private get instretNow(): number {
    return this.instret + ((this.mcountinhibit & 4) === 0 ? this.retiredInRun : 0);
  }

  private sync(pc: number, left: number): void {
    this.pc = pc;
    this.left = left;
  }

  // ---------------------------------------------------------------------------------------------
  // Traps

  /**
   * Takes exception `cause` at the instruction at `this.pc`, which does not retire (it was counted
   * when it started, so the count is given back).
   * Delegated to S-mode when medeleg says so and the hart is not in M-mode.
   */
  raise(cause: number, tval: number): void {
    this.unretired++; // it spent budget, but does not count as retired
    this.trap(cause, tval, false);
  }

  private trap(cause: number, tval: number, interrupt: boolean): void {
    const deleg = interrupt ? this.mideleg : this.medeleg;
    const epc = this.pc;
    const causeValue = interrupt ? (cause | CAUSE_INTERRUPT) : cause;
    if (this.priv !== Priv.M && ((deleg >>> cause) & 1) !== 0) {
      this.scause = causeValue;
      this.sepc = epc;
      this.stval = tval | 0;
      let s = this.mstatus & ~(MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_SIE);
      if (this.mstatus & MSTATUS_SIE) s |= MSTATUS_SPIE;
      if (this.priv === Priv.S) s |= MSTATUS_SPP;
      this.mstatus = s;
      this.priv = Priv.S;
      this.pc = vector(this.stvec, cause, interrupt);
    } else {
      this.mcause = causeValue;
      this.mepc = epc;
      this.mtval = tval | 0;
      let s = this.mstatus & ~(MSTATUS_MPIE | MSTATUS_MPP | MSTATUS_MIE);
      if (this.mstatus & MSTATUS_MIE) s |= MSTATUS_MPIE;
      s |= this.priv << MSTATUS_MPP_SHIFT;
      this.mstatus = s;
      this.priv = Priv.M;
      this.pc = vector(this.mtvec, cause, interrupt);
      if (this.machineTrapExit) this.exitReason = Exit.MachineTrap;
    }
    this.updateContext();
  }

  /** Takes the highest-priority pending interrupt that the current privilege and enables allow. */
  private takeInterrupt(): void {
    const pending = (this.mipSoftware | this.mipLines) & this.mie;
    const m = pending & ~this.mideleg;
    const mEnabled = this.priv < Priv.M || (this.mstatus & MSTATUS_MIE) !== 0;
    if (m !== 0 && mEnabled) {
      this.trap(highestInterrupt(m), 0, true);
      return;
    }
    const s = pending & this.mideleg;
    const sEnabled = this.priv < Priv.S || (this.priv === Priv.S && (this.mstatus & MSTATUS_SIE) !== 0);
    if (s !== 0 && sEnabled) this.trap(highestInterrupt(s), 0, true);
  }

  /** Recomputes the TLB sets for fetch and data after a privilege or mstatus change. */
  private updateContext(): void {
    this.fetchTlb = this.tlbs[this.priv]!;
    this.dataPriv =
      this.priv === Priv.M && (this.mstatus & MSTATUS_MPRV) !== 0
        ? (((this.mstatus & MSTATUS_MPP) >>> MSTATUS_MPP_SHIFT) as Priv)
        : this.priv;
    this.dataTlb = this.tlbs[this.dataPriv]!;
  }

  // ---------------------------------------------------------------------------------------------
  // Memory: translation, slow paths

  /**
   * Translates `va` for `access` at the effective privilege, resolves the physical page on the bus and,
   * when cacheable, installs the TLB entry. Returns the host frame base (with CODE_FRAME for a write to
   * a code frame) or FILL_TRAPPED (exception raised), FILL_MMIO (`lastPhysicalPage` holds the page) or
   * FILL_EXIT.
   */
  private fillTlb(va: number, access: Access): number {
    const priv = access === Access.Execute ? this.priv : this.dataPriv;
    const ppn = this.walk(va, access, priv);
    if (ppn < 0) return FILL_TRAPPED;
    this.lastPhysicalPage = ppn;
    if (this.pmpActive && !this.pmpAllows(ppn, access, priv)) {
      this.raise(accessFaultCause(access), va);
      return FILL_TRAPPED;
    }
    const r = this.bus.resolvePage(ppn, access);
    if (r === PAGE_MMIO) return FILL_MMIO;
    if (r === PAGE_EXIT) {
      this.exitReason = Exit.Bus;
      this.unretired++; // the instruction runs again on the next run
      return FILL_EXIT;
    }
    if (r === PAGE_FAULT || r < 0) {
      this.raise(accessFaultCause(access), va);
      return FILL_TRAPPED;
    }
    const vpn = va >>> 12;
    const t = vpn & TLB_MASK;
    const set = this.tlbs[priv]!;
    if (access === Access.Read) {
      set.rTag[t] = vpn;
      set.rBase[t] = r;
      return r;
    }
    if (access === Access.Execute) {
      set.xTag[t] = vpn;
      set.xBase[t] = r;
      return r;
    }
    const base = this.decodeCache.codeFrames[r >>> 12] !== 0 ? r | CODE_FRAME : r;
    set.wTag[t] = vpn;
    set.wBase[t] = base;
    return base;
  }

  /**
   * Sv32 translation of `va` (RISC-V privileged spec, "Virtual Address Translation Process").
   * Returns the physical page number, or -1 after raising a page fault or an access fault. Sets A and D
   * in the PTE as the access requires (hardware A/D update, as QEMU does).
   */
  private walk(va: number, access: Access, priv: Priv): number {
    if (priv === Priv.M || this.satp >= 0) return va >>> 12; // M-mode, or satp.MODE = Bare
    let table = (this.satp & 0x3fffff) * 4096;
    for (let level = 1; level >= 0; level--) {
      const vpnPart = level === 1 ? va >>> 22 : (va >>> 12) & 0x3ff;
      const pteAddress = table + vpnPart * 4;
      const pte = this.physicalLoad32(pteAddress);
      if (pte === BUS_FAULT) {
        if (this.exitReason !== Exit.Bus) this.raise(accessFaultCause(access), va);
        return -1;
      }
      const v = pte & 1;
      const r = (pte >>> 1) & 1;
      const w = (pte >>> 2) & 1;
      const xbit = (pte >>> 3) & 1;
      if (v === 0 || (r === 0 && w === 1)) break;
      if (r === 0 && xbit === 0) {
        // pointer to the next level
        if (level === 0) break;
        table = (pte >>> 10) * 4096;
        continue;
      }
      // leaf: permissions
      const u = (pte >>> 4) & 1;
      if (priv === Priv.U && u === 0) break;
      if (priv === Priv.S && u === 1 && (access === Access.Execute || (this.mstatus & MSTATUS_SUM) === 0)) break;
      if (access === Access.Execute && xbit === 0) break;
      if (access === Access.Read && r === 0 && !((this.mstatus & MSTATUS_MXR) !== 0 && xbit === 1)) break;
      if (access === Access.Write && w === 0) break;
      const pteppn = pte >>> 10;
      if (level === 1 && (pteppn & 0x3ff) !== 0) break; // misaligned superpage
      const a = (pte >>> 6) & 1;
      const d = (pte >>> 7) & 1;
      if (a === 0 || (access === Access.Write && d === 0)) {
        const updated = pte | 0x40 | (access === Access.Write ? 0x80 : 0);
        if (!this.physicalStore32(pteAddress, updated)) {
          if (this.exitReason !== Exit.Bus) this.raise(accessFaultCause(access), va);
          return -1;
        }
      }
      return level === 1 ? (pteppn & ~0x3ff) | ((va >>> 12) & 0x3ff) : pteppn;
    }
    this.raise(pageFaultCause(access), va);
    return -1;
  }

  /** Reads a 32-bit word of RAM at a physical address (page-table walks). BUS_FAULT if not RAM. */
  private physicalLoad32(pa: number): number {
    if (pa >= TWO_32) return BUS_FAULT;
    const r = this.bus.resolvePage(pa >>> 12, Access.Read);
    if (r < 0) {
      if (r === PAGE_EXIT) this.walkExit();
      return BUS_FAULT;
    }
    return this.mem32[(r + (pa & 0xfff)) >>> 2]!;
  }

  /** The bus answered PAGE_EXIT for a page-table access: stop before the instruction, like fillTlb. */
  private walkExit(): void {
    this.exitReason = Exit.Bus;
    this.unretired++; // the instruction runs again on the next run
  }

  private physicalStore32(pa: number, value: number): boolean {
    if (pa >= TWO_32) return false;
    const r = this.bus.resolvePage(pa >>> 12, Access.Write);
    if (r < 0) {
      if (r === PAGE_EXIT) this.walkExit();
      return false;
    }
    const host = r + (pa & 0xfff);
    this.mem32[host >>> 2] = value;
    this.decodeCache.invalidate(host, 4);
    return true;
  }

  /**
   * Load that missed the fast path: TLB fill, MMIO, misaligned, PMP. Returns the zero-extended value, or
   * BUS_FAULT after raising an exception (or on a bus exit). Misaligned accesses are done byte by byte.
   */
  private loadSlow(va: number, size: 1 | 2 | 4): number {
    if ((va & (size - 1)) !== 0) {
      let v = 0;
      for (let i = 0; i < size; i++) {
        const b = this.loadSlow((va + i) | 0, 1);
        if (b === BUS_FAULT) return BUS_FAULT;
        v |= b << (8 * i);
      }
      return size === 4 ? v | 0 : v;
    }
    const vpn = va >>> 12;
    const t = vpn & TLB_MASK;
    const set = this.dataTlb;
    let base: number;
    if (set.rTag[t] === vpn) base = set.rBase[t]!;
    else {
      base = this.fillTlb(va, Access.Read);
      if (base === FILL_MMIO) {
        const v = this.bus.mmioLoad(this.lastPhysicalPage * 4096 + (va & 0xfff), size);
        if (v === BUS_FAULT) this.raise(Cause.LoadAccessFault, va);
        return v;
      }
      if (base < 0) return BUS_FAULT;
    }
    const host = base | (va & 0xfff);
    if (size === 4) return this.mem32[host >>> 2]!;
    if (size === 2) return this.mem16[host >>> 1]!;
    return this.mem8[host]!;
  }

  /**
   * Store that missed the fast path. Returns false after raising an exception (or on a bus exit).
   * A misaligned store translates every byte's page before writing any, so it is all or nothing.
   */
  private storeSlow(va: number, size: 1 | 2 | 4, value: number): boolean {
    if ((va & (size - 1)) !== 0) {
      const last = (va + size - 1) | 0;
      if (last >>> 12 !== va >>> 12) {
        const lastBase = this.writableBase(last);
        if (lastBase < 0 && lastBase !== FILL_MMIO) return false; // trapped or bus exit; MMIO is writable
      }
      for (let i = 0; i < size; i++) if (!this.storeSlow((va + i) | 0, 1, value >>> (8 * i))) return false;
      return true;
    }
    const base = this.writableBase(va);
    if (base === FILL_MMIO) {
      const pa = this.lastPhysicalPage * 4096 + (va & 0xfff);
      const ok = this.bus.mmioStore(pa, size, size === 4 ? value | 0 : value & (size === 2 ? 0xffff : 0xff));
      if (!ok) this.raise(Cause.StoreAccessFault, va);
      return ok;
    }
    if (base < 0) return false;
    const host = (base & ~CODE_FRAME) | (va & 0xfff);
    if (base & CODE_FRAME) this.decodeCache.invalidate(host, size);
    if (size === 4) this.mem32[host >>> 2] = value;
    else if (size === 2) this.mem16[host >>> 1] = value;
    else this.mem8[host] = value;
    return true;
  }

  /** The write-TLB base for `va` (filling it when needed), FILL_MMIO, or a negative failure. */
  private writableBase(va: number): number {
    const vpn = va >>> 12;
    const t = vpn & TLB_MASK;
    const set = this.dataTlb;
    if (set.wTag[t] === vpn) return set.wBase[t]!;
    return this.fillTlb(va, Access.Write);
  }

  /** LR.W, SC.W and the AMOs. Returns the value for rd, or BUS_FAULT after raising an exception. */
  private atomic(op: number, va: number, src: number): number {
    if ((va & 3) !== 0) {
      this.raise(op === Op.LrW ? Cause.LoadMisaligned : Cause.StoreMisaligned, va);
      return BUS_FAULT;
    }
    if (op === Op.ScW && va !== this.reservationVa) {
      this.reservationVa = -1;
      return 1;
    }
    let base: number;
    if (op === Op.LrW) {
      const set = this.dataTlb;
      const vpn = va >>> 12;
      base = set.rTag[vpn & TLB_MASK] === vpn ? set.rBase[vpn & TLB_MASK]! : this.fillTlb(va, Access.Read);
    } else base = this.writableBase(va);
    if (base === FILL_MMIO) {
      this.raise(op === Op.LrW ? Cause.LoadAccessFault : Cause.StoreAccessFault, va);
      return BUS_FAULT;
    }
    if (base < 0) return BUS_FAULT;
    const host = (base & ~CODE_FRAME) | (va & 0xfff);
    const index = host >>> 2;
    const mem32 = this.mem32;
    const old = mem32[index]!;
    let next: number;
    switch (op) {
      case Op.LrW:
        this.reservationVa = va;
        this.reservationValue = old;
        return old;
      case Op.ScW: {
        this.reservationVa = -1;
        if (old !== this.reservationValue) return 1;
        next = src;
        break;
      }
      case Op.AmoSwap: next = src; break;
      case Op.AmoAdd: next = (old + src) | 0; break;
      case Op.AmoXor: next = old ^ src; break;
      case Op.AmoAnd: next = old & src; break;
      case Op.AmoOr: next = old | src; break;
      case Op.AmoMin: next = old < src ? old : src; break;
      case Op.AmoMax: next = old > src ? old : src; break;
      case Op.AmoMinu: next = old >>> 0 < src >>> 0 ? old : src; break;
      default: next = old >>> 0 > src >>> 0 ? old : src; break;
    }
    if (base & CODE_FRAME) this.decodeCache.invalidate(host, 4);
    mem32[index] = next;
    return op === Op.ScW ? 0 : old;
  }

  // ---------------------------------------------------------------------------------------------
  // PMP (checked when a translation is cached, so a page is cached only if one entry covers all of it)

  private pmpAllows(ppn: number, access: Access, priv: Priv): boolean {
    const lo = ppn * 4096;
    const hi = lo + 4095;
    let prevTop = 0;
    for (let i = 0; i < 16; i++) {
      const cfg = this.pmpcfg[i]!;
      const mode = (cfg >>> 3) & 3;
      const addr = (this.pmpaddr[i]! >>> 0) * 4;
      let start = 0;
      let end = 0; // exclusive
      if (mode === 1) {
        start = prevTop;
        end = addr;
      } else if (mode === 2) {
        start = addr;
        end = addr + 4;
      } else if (mode === 3) {
        const ones = countTrailingOnes(this.pmpaddr[i]! >>> 0);
        const size = 2 ** (ones + 3);
        start = Math.floor(addr / size) * size;
        end = start + size;
      }
      prevTop = addr;
      if (mode === 0) continue;
      const hitLo = lo >= start && lo < end;
      const hitHi = hi >= start && hi < end;
      if (!hitLo && !hitHi) continue;
      if (!(hitLo && hitHi)) return false; // the page straddles an entry: refuse rather than mis-cache
      if (priv === Priv.M && (cfg & 0x80) === 0) return true;
      const bit = access === Access.Read ? 1 : access === Access.Write ? 2 : 4;
      return (cfg & bit) !== 0;
    }
    return priv === Priv.M;
  }

  // ---------------------------------------------------------------------------------------------
  // System instructions and CSRs

  private system(w: number, imm: number): void {
    const op = w & 0xff;
    const rdField = (w >>> 8) & 63;
    const rs1 = (w >>> 14) & 31;
    const priv = this.priv;
    switch (op) {
      case Op.Csrrw:
      case Op.Csrrs:
      case Op.Csrrc:
      case Op.Csrrwi:
      case Op.Csrrsi:
      case Op.Csrrci: {
        const csr = imm;
        const operand = op >= Op.Csrrwi ? rs1 : this.x[rs1]!;
        const isWrite = op === Op.Csrrw || op === Op.Csrrwi || rs1 !== 0;
        if (!this.csrAccessible(csr, isWrite)) return this.illegal(w, imm);
        let old = 0;
        if (!((op === Op.Csrrw || op === Op.Csrrwi) && rdField === 32)) {
          // A counter reads its value from before this instruction (Zicsr): un-count it for the read.
          this.unretired++;
          const v = this.csrRead(csr);
          this.unretired--;
          if (v === undefined) return this.illegal(w, imm);
          old = v;
        }
        if (isWrite) {
          let value = operand;
          if (op === Op.Csrrs || op === Op.Csrrsi) value = old | operand;
          else if (op === Op.Csrrc || op === Op.Csrrci) value = old & ~operand;
          if (!this.csrWrite(csr, value | 0)) return this.illegal(w, imm);
        }
        this.x[rdField] = old;
        this.pc = (this.pc + 4) | 0;
        return;
      }
      case Op.Ecall:
        if (this.ecallExit && priv === Priv.S) {
          this.exitReason = Exit.Ecall;
          return;
        }
        this.raise(priv === Priv.U ? Cause.EcallFromU : priv === Priv.S ? Cause.EcallFromS : Cause.EcallFromM, 0);
        return;
      case Op.Ebreak:
        this.raise(Cause.Breakpoint, 0); // tval 0, as QEMU (the spec allows 0 or the pc)
        return;
      case Op.Mret: {
        if (priv !== Priv.M) return this.illegal(w, imm);
        const s = this.mstatus;
        const mpp = ((s & MSTATUS_MPP) >>> MSTATUS_MPP_SHIFT) as Priv;
        let next = (s & ~(MSTATUS_MIE | MSTATUS_MPP)) | MSTATUS_MPIE;
        if (s & MSTATUS_MPIE) next |= MSTATUS_MIE;
        if (mpp !== Priv.M) next &= ~MSTATUS_MPRV;
        this.mstatus = next;
        this.priv = mpp;
        this.pc = this.mepc;
        this.updateContext();
        return;
      }
      case Op.Sret: {
        if (priv === Priv.U || (priv === Priv.S && (this.mstatus & MSTATUS_TSR) !== 0)) return this.illegal(w, imm);
        const s = this.mstatus;
        let next = (s & ~(MSTATUS_SIE | MSTATUS_SPP | MSTATUS_MPRV)) | MSTATUS_SPIE;
        if (s & MSTATUS_SPIE) next |= MSTATUS_SIE;
        this.mstatus = next;
        this.priv = s & MSTATUS_SPP ? Priv.S : Priv.U;
        this.pc = this.sepc;
        this.updateContext();
        return;
      }
      case Op.Wfi:
        if (priv === Priv.U || (priv === Priv.S && (this.mstatus & MSTATUS_TW) !== 0)) return this.illegal(w, imm);
        this.pc = (this.pc + 4) | 0;
        if (!this.wakeable) this.exitReason = Exit.Wfi;
        return;
      case Op.SfenceVma:
        if (priv === Priv.U || (priv === Priv.S && (this.mstatus & MSTATUS_TVM) !== 0)) return this.illegal(w, imm);
        this.flushVirtualTlbs();
        this.pc = (this.pc + 4) | 0;
        return;
      case Op.FenceI:
        this.decodeCache.flush();
        this.pc = (this.pc + 4) | 0;
        return;
      default:
        return this.illegal(w, imm);
    }
  }

  private illegal(w: number, imm: number): void {
    // mtval gets the instruction bits; for a decoded-legal instruction refused here, re-encode is not
    // possible, so read them back from memory through the fetch path.
    this.raise(Cause.IllegalInstruction, (w & 0xff) === Op.Illegal ? imm : this.fetchBits());
  }

  /** The instruction word at pc (already known to be fetchable: it was just executed). */
  private fetchBits(): number {
    const vpn = this.pc >>> 12;
    const set = this.fetchTlb;
    if (set.xTag[vpn & TLB_MASK] !== vpn) return 0;
    return this.mem32[(set.xBase[vpn & TLB_MASK]! | (this.pc & 0xfff)) >>> 2]!;
  }

  private flushVirtualTlbs(): void {
    this.tlbs[Priv.U]!.flush();
    this.tlbs[Priv.S]!.flush();
  }

  /** Privilege and read-only checks common to every CSR, plus the counter-enable gates. */
  private csrAccessible(csr: number, isWrite: boolean): boolean {
    if (((csr >>> 8) & 3) > this.priv) return false;
    if (isWrite && csr >>> 10 === 3) return false;
    if (csr === Csr.satp && this.priv === Priv.S && (this.mstatus & MSTATUS_TVM) !== 0) return false;
    if ((csr >= 0xc00 && csr <= 0xc1f) || (csr >= 0xc80 && csr <= 0xc9f)) {
      const bit = 1 << (csr & 31);
      if (this.priv < Priv.M && (this.mcounteren & bit) === 0) return false;
      if (this.priv === Priv.U && (this.scounteren & bit) === 0) return false;
    }
    return true;
  }

  /** Reads a CSR; undefined if it does not exist. */
  csrRead(csr: number): number | undefined {
    switch (csr) {
      case Csr.cycle:
      case Csr.mcycle:
        return low32(this.cycleNow);
      case Csr.cycleh:
      case Csr.mcycleh:
        return high32(this.cycleNow);
      case Csr.instret:
      case Csr.minstret:
        return low32(this.instretNow);
      case Csr.instreth:
      case Csr.minstreth:
        return high32(this.instretNow);
      case Csr.time:
        return this.readTime === undefined ? undefined : low32(this.readTime());
      case Csr.timeh:
        return this.readTime === undefined ? undefined : high32(this.readTime());
      case Csr.sstatus:
        return this.mstatus & SSTATUS_MASK;
      case Csr.sie:
        return this.mie & this.mideleg;
      case Csr.stvec: return this.stvec;
      case Csr.scounteren: return this.scounteren;
      case Csr.senvcfg: return this.senvcfg;
      case Csr.sscratch: return this.sscratch;
      case Csr.sepc: return this.sepc;
      case Csr.scause: return this.scause;
      case Csr.stval: return this.stval;
      case Csr.sip:
        return this.mip & this.mideleg;
      case Csr.satp: return this.satp;
      case Csr.mvendorid:
      case Csr.marchid:
      case Csr.mimpid:
      case Csr.mconfigptr:
        return 0;
      case Csr.mhartid: return this.hartId;
      case Csr.mstatus: return this.mstatus;
      case Csr.mstatush: return 0;
      case Csr.misa: return MISA;
      case Csr.medeleg: return this.medeleg;
      case Csr.mideleg: return this.mideleg;
      case Csr.mie: return this.mie;
      case Csr.mtvec: return this.mtvec;
      case Csr.mcounteren: return this.mcounteren;
      case Csr.menvcfg: return this.menvcfg;
      case Csr.menvcfgh: return 0;
      case Csr.mcountinhibit: return this.mcountinhibit;
      case Csr.mscratch: return this.mscratch;
      case Csr.mepc: return this.mepc;
      case Csr.mcause: return this.mcause;
      case Csr.mtval: return this.mtval;
      case Csr.mip: return this.mip;
    }
    if (csr >= Csr.pmpcfg0 && csr <= Csr.pmpcfg0 + 3) {
      const i = (csr - Csr.pmpcfg0) * 4;
      const c = this.pmpcfg;
      return c[i]! | (c[i + 1]! << 8) | (c[i + 2]! << 16) | (c[i + 3]! << 24);
    }
    if (csr >= Csr.pmpaddr0 && csr <= Csr.pmpaddr0 + 15) return this.pmpaddr[csr - Csr.pmpaddr0]!;
    // hpm counters and events: present, hard-wired to zero
    if ((csr >= Csr.mhpmcounter3 && csr <= 0xb1f) || (csr >= Csr.mhpmcounter3h && csr <= 0xb9f)) return 0;
    if ((csr >= Csr.hpmcounter3 && csr <= 0xc1f) || (csr >= Csr.hpmcounter3h && csr <= 0xc9f)) return 0;
    if (csr >= Csr.mhpmevent3 && csr <= 0x33f) return 0;
    return undefined;
  }

  /** Writes a CSR (WARL fields legalized); false if it does not exist. */
  csrWrite(csr: number, value: number): boolean {
    switch (csr) {
      // A counter write sets what the next instruction reads: settle first (the writing instruction
      // included), then overwrite.
      case Csr.mcycle:
        this.settleCounters();
        this.cycle = setLow32(this.cycle, value);
        return true;
      case Csr.mcycleh:
        this.settleCounters();
        this.cycle = setHigh32(this.cycle, value);
        return true;
      case Csr.minstret:
        this.settleCounters();
        this.instret = setLow32(this.instret, value);
        return true;
      case Csr.minstreth:
        this.settleCounters();
        this.instret = setHigh32(this.instret, value);
        return true;
      case Csr.sstatus:
        this.writeMstatus((this.mstatus & ~SSTATUS_MASK) | (value & SSTATUS_MASK));
        return true;
      case Csr.sie: {
        const mask = this.mideleg & S_INTERRUPTS;
        this.mie = (this.mie & ~mask) | (value & mask);
        return true;
      }
      case Csr.stvec:
        if ((value & 3) < 2) this.stvec = value;
        return true;
      case Csr.scounteren: this.scounteren = value; return true;
      case Csr.senvcfg: this.senvcfg = value & 1; return true;
      case Csr.sscratch: this.sscratch = value; return true;
      case Csr.sepc: this.sepc = value & ~3; return true;
      case Csr.scause: this.scause = value; return true;
      case Csr.stval: this.stval = value; return true;
      case Csr.sip: {
        const mask = this.mideleg & MIP_SSIP;
        this.mipSoftware = (this.mipSoftware & ~mask) | (value & mask);
        return true;
      }
      case Csr.satp:
        this.satp = value;
        this.flushVirtualTlbs();
        return true;
      case Csr.mstatus:
        this.writeMstatus(value);
        return true;
      case Csr.mstatush:
      case Csr.menvcfgh:
      case Csr.misa: // fixed ISA: writes ignored (WARL)
        return true;
      case Csr.medeleg: this.medeleg = value & DELEGABLE_EXCEPTIONS; return true;
      case Csr.mideleg: this.mideleg = value & S_INTERRUPTS; return true;
      case Csr.mie: this.mie = value & ALL_INTERRUPTS; return true;
      case Csr.mtvec:
        if ((value & 3) < 2) this.mtvec = value;
        return true;
      case Csr.mcounteren: this.mcounteren = value; return true;
      case Csr.menvcfg: this.menvcfg = value & 1; return true;
      case Csr.mcountinhibit:
        this.settleCounters(); // what retired so far counts under the old inhibit bits
        this.mcountinhibit = value & ~2;
        return true;
      case Csr.mscratch: this.mscratch = value; return true;
      case Csr.mepc: this.mepc = value & ~3; return true;
      case Csr.mcause: this.mcause = value; return true;
      case Csr.mtval: this.mtval = value; return true;
      case Csr.mip:
        this.mipSoftware = value & S_INTERRUPTS;
        return true;
    }
    if (csr >= Csr.pmpcfg0 && csr <= Csr.pmpcfg0 + 3) {
      const first = (csr - Csr.pmpcfg0) * 4;
      for (let i = 0; i < 4; i++) {
        if (this.pmpcfg[first + i]! & 0x80) continue; // locked
        let cfg = (value >>> (8 * i)) & 0x9f;
        if ((cfg & 3) === 2) cfg &= ~3; // W without R is reserved: keep neither
        this.pmpcfg[first + i] = cfg;
      }
      this.pmpChanged();
      return true;
    }
    if (csr >= Csr.pmpaddr0 && csr <= Csr.pmpaddr0 + 15) {
      const i = csr - Csr.pmpaddr0;
      const locked = (this.pmpcfg[i]! & 0x80) !== 0;
      const nextLockedTor = i < 15 && (this.pmpcfg[i + 1]! & 0x80) !== 0 && ((this.pmpcfg[i + 1]! >>> 3) & 3) === 1;
      if (!locked && !nextLockedTor) this.pmpaddr[i] = value;
      this.pmpChanged();
      return true;
    }
    if ((csr >= Csr.mhpmcounter3 && csr <= 0xb1f) || (csr >= Csr.mhpmcounter3h && csr <= 0xb9f)) return true;
    if (csr >= Csr.mhpmevent3 && csr <= 0x33f) return true;
    return false;
  }

  private writeMstatus(value: number): void {
    let next = (this.mstatus & ~MSTATUS_WRITABLE) | (value & MSTATUS_WRITABLE);
    if ((next & MSTATUS_MPP) === 2 << MSTATUS_MPP_SHIFT) next = (next & ~MSTATUS_MPP) | (this.mstatus & MSTATUS_MPP);
    const changed = next ^ this.mstatus;
    this.mstatus = next;
    if (changed & (MSTATUS_SUM | MSTATUS_MXR)) this.flushVirtualTlbs();
    this.updateContext();
  }

  private pmpChanged(): void {
    let active = false;
    for (let i = 0; i < 16; i++) if ((this.pmpcfg[i]! >>> 3) & 3) active = true;
    this.pmpActive = active;
    this.flushTlb();
  }
}

function vector(tvec: number, cause: number, interrupt: boolean): number {
  const base = tvec & ~3;
  return interrupt && (tvec & 3) === 1 ? (base + 4 * cause) | 0 : base;
}

/** Interrupt priority: MEI, MSI, MTI, SEI, SSI, STI (privileged spec 3.1.9). */
const INTERRUPT_PRIORITY = [11, 3, 7, 9, 1, 5] as const;

function highestInterrupt(bits: number): number {
  for (const irq of INTERRUPT_PRIORITY) if (bits & (1 << irq)) return irq;
  return 31 - Math.clz32(bits);
}

function accessFaultCause(access: Access): number {
  return access === Access.Read ? Cause.LoadAccessFault : access === Access.Write ? Cause.StoreAccessFault : Cause.InstructionAccessFault;
}

function pageFaultCause(access: Access): number {
  return access === Access.Read ? Cause.LoadPageFault : access === Access.Write ? Cause.StorePageFault : Cause.InstructionPageFault;
}

function countTrailingOnes(v: number): number {
  let n = 0;
  while (n < 32 && ((v >>> n) & 1) === 1) n++;
  return n;
}

function low32(v: number): number {
  return v % TWO_32 | 0;
}

function high32(v: number): number {
  return Math.floor(v / TWO_32) | 0;
}

function setLow32(v: number, low: number): number {
  return Math.floor(v / TWO_32) * TWO_32 + (low >>> 0);
}

function setHigh32(v: number, high: number): number {
  return (high >>> 0) * TWO_32 + (v % TWO_32);
}

/** High 32 bits of the unsigned 64-bit product, with 16-bit limbs (no BigInt, exact). */
export function mulhu(a: number, b: number): number {
  a >>>= 0;
  b >>>= 0;
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const p00 = a0 * b0;
  const p01 = a0 * b1;
  const p10 = a1 * b0;
  const p11 = a1 * b1;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  return (p11 + (p01 >>> 16) + (p10 >>> 16) + Math.floor(mid / 65536)) | 0;
}

/** High 32 bits of the signed 64-bit product. */
export function mulh(a: number, b: number): number {
  let hi = mulhu(a, b);
  if (a < 0) hi = (hi - b) | 0;
  if (b < 0) hi = (hi - a) | 0;
  return hi;
}

/** High 32 bits of signed a times unsigned b. */
export function mulhsu(a: number, b: number): number {
  let hi = mulhu(a, b);
  if (a < 0) hi = (hi - b) | 0;
  return hi;
}
