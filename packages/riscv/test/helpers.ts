/**
 * Shared helpers for the hart tests: a machine with trap handlers that stop in place, entering S/U
 * through MRET, Sv32 page-table builders and a register/CSR view.
 */
import { Csr, MSTATUS_MPP, MSTATUS_MPP_SHIFT, Priv } from "../src/csr.js";
import type { Hart, HartOptions } from "../src/hart.js";
import * as a from "./asm.js";
import { RAM_BASE, setup, type Setup, type TestBus } from "./machine.js";

/** M-mode trap handler: a `jal x0, 0` that spins, so after a trap the hart stays at this address. */
export const M_HANDLER = RAM_BASE + 0x4000;
/** S-mode trap handler, also a spin loop. */
export const S_HANDLER = RAM_BASE + 0x4100;
/** Where programs entered through `enter` start (the MRET that gets there sits at RAM_BASE). */
export const CODE = RAM_BASE + 0x1000;
/** A scratch data area. */
export const DATA = RAM_BASE + 0x8000;

/** A hart running `program` at RAM_BASE in M-mode, with mtvec and stvec pointing at spin loops. */
export function machine(program: readonly number[], options: Partial<HartOptions> = {}): Setup {
  const s = setup(program, options);
  installHandlers(s.bus, s.hart);
  return s;
}

export function installHandlers(bus: TestBus, hart: Hart): void {
  bus.load(M_HANDLER, [a.jal(0, 0)]);
  bus.load(S_HANDLER, [a.jal(0, 0)]);
  hart.csrWrite(Csr.mtvec, M_HANDLER);
  hart.csrWrite(Csr.stvec, S_HANDLER);
}

/**
 * A hart that has executed an MRET into `priv` at `pc` (CODE by default), with `program` loaded at CODE.
 * `mstatus` bits given are set before the MRET.
 */
export function enter(priv: Priv, program: readonly number[], opts: { pc?: number; mstatus?: number; options?: Partial<HartOptions> } = {}): Setup {
  const s = machine([a.mret()], opts.options);
  s.bus.load(CODE, program);
  const { hart } = s;
  hart.csrWrite(Csr.mstatus, (opts.mstatus ?? 0) | ((priv << MSTATUS_MPP_SHIFT) & MSTATUS_MPP));
  hart.csrWrite(Csr.mepc, opts.pc ?? CODE);
  hart.run(1);
  if (hart.priv !== priv || hart.pc !== ((opts.pc ?? CODE) | 0)) throw new Error("MRET did not reach the requested mode");
  return s;
}

/** Reads a CSR that must exist. */
export function csr(hart: Hart, n: number): number {
  const v = hart.csrRead(n);
  if (v === undefined) throw new Error(`CSR 0x${n.toString(16)} does not exist`);
  return v;
}

/** Unsigned view of a register. */
export const u = (hart: Hart, r: number): number => hart.x[r]! >>> 0;

/** The pc as an unsigned number (the hart keeps it as int32). */
export const pcOf = (hart: Hart): number => hart.pc >>> 0;

// ---------------------------------------------------------------------------------------------
// Sv32

export const PTE_V = 1 << 0;
export const PTE_R = 1 << 1;
export const PTE_W = 1 << 2;
export const PTE_X = 1 << 3;
export const PTE_U = 1 << 4;
export const PTE_G = 1 << 5;
export const PTE_A = 1 << 6;
export const PTE_D = 1 << 7;

/** Default root page table (level 1); `map4k` puts level-0 tables in the pages after it. */
export const ROOT_TABLE = RAM_BASE + 0x10000;

/** satp value for Sv32 with the given root table. */
export const satpFor = (root: number): number => (0x8000_0000 | (root >>> 12)) | 0;

/** A PTE pointing at physical address `pa` (page aligned) with `flags`. */
export const pte = (pa: number, flags: number): number => ((pa >>> 12) << 10) | flags;

/** Sv32 page tables written into the TestBus RAM. */
export class PageTables {
  private nextTable: number;
  private readonly leafTables = new Map<number, number>();

  /** Level-0 tables go in the pages right after the root. */
  constructor(private readonly bus: TestBus, readonly root = ROOT_TABLE) {
    this.nextTable = root + 0x1000;
  }

  get satp(): number {
    return satpFor(this.root);
  }

  /** Maps the 4 KiB page at `va` to `pa` with `flags` (V is added), creating the level-0 table. */
  map4k(va: number, pa: number, flags: number): number {
    const vpn1 = va >>> 22;
    let table = this.leafTables.get(vpn1);
    if (table === undefined) {
      table = this.nextTable;
      this.nextTable += 0x1000;
      this.leafTables.set(vpn1, table);
      this.bus.write32(this.root + vpn1 * 4, pte(table, PTE_V));
    }
    const address = table + ((va >>> 12) & 0x3ff) * 4;
    this.bus.write32(address, pte(pa, flags | PTE_V));
    return address;
  }

  /** Writes a level-1 leaf (a 4 MiB superpage) for `va`; returns the PTE's address. */
  mapSuper(va: number, pa: number, flags: number): number {
    const address = this.root + (va >>> 22) * 4;
    this.bus.write32(address, pte(pa, flags | PTE_V));
    return address;
  }

  /** The address of the level-0 PTE of `va` (after `map4k`). */
  leafAddress(va: number): number {
    const table = this.leafTables.get(va >>> 22);
    if (table === undefined) throw new Error("no level-0 table for this address");
    return table + ((va >>> 12) & 0x3ff) * 4;
  }
}

export { Priv };
