/**
 * The hypercall dispatcher and the SBI the hypervisor provides to S-mode guest kernels (RISC-V SBI
 * specification v2.0: base, TIME, IPI, RFENCE, HSM, SRST, DBCN, and the legacy console/timer calls).
 *
 * Every hypercall, whatever door it came through (an `ecall` from S-mode today), reaches `dispatch`
 * with the extension id, function id and six argument words, and returns SBI's (error, value) pair.
 * Arguments that are guest addresses are resolved through the partition's own guest memory only.
 */
import type { Hart } from "@hyperfleet/riscv";

export const SbiError = {
  Success: 0,
  Failed: -1,
  NotSupported: -2,
  InvalidParam: -3,
  Denied: -4,
  InvalidAddress: -5,
  AlreadyAvailable: -6,
  AlreadyStarted: -7,
  AlreadyStopped: -8,
} as const;

export const SbiExtension = {
  LegacySetTimer: 0x00,
  LegacyConsolePutchar: 0x01,
  LegacyConsoleGetchar: 0x02,
  LegacyShutdown: 0x08,
  Base: 0x10,
  Time: 0x54494d45,
  Ipi: 0x735049,
  Rfence: 0x52464e43,
  Hsm: 0x48534d,
  Srst: 0x53525354,
  Dbcn: 0x4442434e,
  /** "HFVB": VMBus hypercalls (see synic.ts), function id = the call code. */
  VmBus: 0x48465642,
} as const;

/** SBI spec version 2.0, and our implementation id (outside the registered range 0..10). */
export const SBI_SPEC_VERSION = 0x0200_0000;
export const SBI_IMPL_ID = 0x4846; // "HF"
export const SBI_IMPL_VERSION = 0x0001_0000;

export const HartState = { Started: 0, Stopped: 1, StartPending: 2, StopPending: 3 } as const;

/** What the dispatcher needs from its partition. */
export interface HypercallHost {
  readonly harts: readonly Hart[];
  /** 0 Started, 1 Stopped (HartState). */
  hartState(hart: number): number;
  startHart(hart: number, startAddress: number, opaque: number): void;
  stopHart(hart: number): void;
  setTimer(hart: number, compare: number): void;
  consoleWrite(bytes: Uint8Array): void;
  /** A byte from the console input, or -1. */
  consoleRead(): number;
  /** Reads guest RAM; undefined when the range is not all inside this partition's RAM. */
  readGuest(gpa: number, length: number): Uint8Array | undefined;
  writeGuest(gpa: number, bytes: Uint8Array): boolean;
  flushInstructionCaches(): void;
  flushTlbs(hartMask: number[]): void;
  systemReset(type: number, reason: number): void;
  /** A VMBus hypercall (code, arguments). */
  vmbusCall(code: number, args: readonly number[]): HypercallResult;
}

export interface HypercallResult {
  error: number;
  value: number;
}

const SUPPORTED = new Set<number>(Object.values(SbiExtension));
const TWO_32 = 4294967296;

export class HypercallDispatcher {
  /** Calls served, by extension id: for metrics. */
  readonly counts = new Map<number, number>();

  constructor(private readonly host: HypercallHost) {}

  /** Serves an `ecall` from S-mode on `hart` (a7 = extension, a6 = function, a0..a5 = arguments). */
  handleEcall(hart: Hart): void {
    const x = hart.x;
    const r = this.dispatch(hart.hartId, x[17]! >>> 0, x[16]! >>> 0, [x[10]!, x[11]!, x[12]!, x[13]!, x[14]!, x[15]!]);
    // Legacy extensions return only a0; the v0.2+ ones return (a0 = error, a1 = value).
    const eid = x[17]! >>> 0;
    x[10] = r.error;
    if (eid >= 0x10) x[11] = r.value;
    hart.pc = (hart.pc + 4) | 0;
  }

  dispatch(hartId: number, eid: number, fid: number, a: number[]): HypercallResult {
    this.counts.set(eid, (this.counts.get(eid) ?? 0) + 1);
    const ok = (value = 0): HypercallResult => ({ error: SbiError.Success, value });
    const err = (error: number): HypercallResult => ({ error, value: 0 });
    const host = this.host;
    const u = (i: number): number => a[i]! >>> 0;
    switch (eid) {
      case SbiExtension.LegacySetTimer:
        host.setTimer(hartId, u(1) * TWO_32 + u(0));
        return ok();
      case SbiExtension.LegacyConsolePutchar:
        host.consoleWrite(Uint8Array.of(u(0) & 0xff));
        return ok();
      case SbiExtension.LegacyConsoleGetchar:
        return { error: host.consoleRead(), value: 0 };
      case SbiExtension.LegacyShutdown:
        host.systemReset(0, 0);
        return ok();
      case SbiExtension.Base:
        switch (fid) {
          case 0: return ok(SBI_SPEC_VERSION);
          case 1: return ok(SBI_IMPL_ID);
          case 2: return ok(SBI_IMPL_VERSION);
          case 3: return ok(SUPPORTED.has(u(0)) ? 1 : 0);
          case 4: case 5: case 6: return ok(0); // mvendorid, marchid, mimpid
        }
        return err(SbiError.NotSupported);
      case SbiExtension.Time:
        if (fid !== 0) return err(SbiError.NotSupported);
        host.setTimer(hartId, u(1) * TWO_32 + u(0));
        return ok();
      case SbiExtension.Ipi: {
        if (fid !== 0) return err(SbiError.NotSupported);
        const targets = this.hartMask(u(0), a[1]!);
        if (targets === undefined) return err(SbiError.InvalidParam);
        for (const h of targets) host.harts[h]!.mipSoftware |= 1 << 1; // SSIP
        return ok();
      }
      case SbiExtension.Rfence: {
        const targets = this.hartMask(u(0), a[1]!);
        if (targets === undefined) return err(SbiError.InvalidParam);
        if (fid === 0) host.flushInstructionCaches();
        else if (fid === 1 || fid === 2) host.flushTlbs(targets);
        else return err(SbiError.NotSupported);
        return ok();
      }
      case SbiExtension.Hsm:
        return this.hsm(fid, u(0), u(1), u(2), hartId);
      case SbiExtension.Srst:
        if (fid !== 0) return err(SbiError.NotSupported);
        if (u(0) > 2 || u(1) > 1) return err(SbiError.InvalidParam);
        host.systemReset(u(0), u(1));
        return ok();
      case SbiExtension.VmBus:
        return host.vmbusCall(fid, a);
      case SbiExtension.Dbcn: {
        if (fid === 0 || fid === 1) {
          // (num_bytes, base_addr_lo, base_addr_hi): the buffer must lie in this partition's RAM
          if (u(2) !== 0) return err(SbiError.InvalidParam);
          const n = u(0);
          if (fid === 0) {
            const bytes = host.readGuest(u(1), n);
            if (bytes === undefined) return err(SbiError.InvalidParam);
            host.consoleWrite(bytes);
            return ok(n);
          }
          // Check the buffer before taking input, so a bad call consumes nothing (SBI v2.0 §12.2).
          if (host.readGuest(u(1), n) === undefined) return err(SbiError.InvalidParam);
          const got: number[] = [];
          while (got.length < n) {
            const c = host.consoleRead();
            if (c < 0) break;
            got.push(c);
          }
          host.writeGuest(u(1), Uint8Array.from(got));
          return ok(got.length);
        }
        if (fid === 2) {
          host.consoleWrite(Uint8Array.of(u(0) & 0xff));
          return ok();
        }
        return err(SbiError.NotSupported);
      }
    }
    return err(SbiError.NotSupported);
  }

  private hsm(fid: number, hart: number, start: number, opaque: number, caller: number): HypercallResult {
    const host = this.host;
    const valid = hart < host.harts.length;
    switch (fid) {
      case 0: // hart_start
        if (!valid) return { error: SbiError.InvalidParam, value: 0 };
        if (host.hartState(hart) !== HartState.Stopped) return { error: SbiError.AlreadyAvailable, value: 0 };
        if (host.readGuest(start, 4) === undefined) return { error: SbiError.InvalidAddress, value: 0 };
        host.startHart(hart, start, opaque);
        return { error: SbiError.Success, value: 0 };
      case 1: // hart_stop: the calling hart
        host.stopHart(caller);
        return { error: SbiError.Success, value: 0 };
      case 2: // hart_get_status
        if (!valid) return { error: SbiError.InvalidParam, value: 0 };
        return { error: SbiError.Success, value: host.hartState(hart) };
    }
    return { error: SbiError.NotSupported, value: 0 };
  }

  /** The harts named by an SBI hart mask (base -1 means all harts), or undefined if one does not exist. */
  private hartMask(mask: number, base: number): number[] | undefined {
    const n = this.host.harts.length;
    if (base === -1) return [...Array(n).keys()];
    const out: number[] = [];
    for (let b = 0; b < 32; b++) {
      if (((mask >>> b) & 1) === 0) continue;
      const h = (base >>> 0) + b;
      if (h >= n) return undefined;
      out.push(h);
    }
    return out;
  }
}
