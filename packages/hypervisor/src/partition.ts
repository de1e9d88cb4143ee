import {
  Access, BUS_FAULT, DecodeCache, ElfError, Exit, Hart, MIP_STIP, PAGE_FAULT, PAGE_MMIO, Priv, type ElfImage, type PhysicalBus,
} from "@hyperfleet/riscv";
import { TICKS_PER_MS, type Clock } from "./clock.js";
import { Clint, MTIMECMP_DISARMED } from "./devices/clint.js";
import type { MmioDevice } from "./devices/device.js";
import { Plic } from "./devices/plic.js";
import { TestDevice, type PowerRequest } from "./devices/test-device.js";
import { Uart16550 } from "./devices/uart16550.js";
import { Ept, EPT_PRESENT, EPT_R, EPT_W, EPT_WP, EPT_X } from "./ept.js";
import { buildFdt, type FdtNode } from "./fdt.js";
import { FramePool, PAGE_SHIFT, PAGE_SIZE } from "./frame-pool.js";
import { GuestMemory, GuestMemoryError } from "./guest-memory.js";
import { HartState, HypercallDispatcher, type HypercallHost, type HypercallResult } from "./hypercalls.js";
import { HypercallPage, Synic, VMBUS_IRQ, type Offer } from "./synic.js";

/** The memory map of QEMU's riscv `virt` board, for the devices we have. */
export const MemoryMap = {
  test: 0x0010_0000,
  hypercall: HypercallPage.BASE,
  clint: 0x0200_0000,
  plic: 0x0c00_0000,
  uart: 0x1000_0000,
  ram: 0x8000_0000,
} as const;

/** PLIC source of the UART, as on `virt`. */
export const UART_IRQ = 10;
/** Where an SBI-mode kernel is loaded and entered (the first 2 MiB of RAM belong to the firmware). */
export const SBI_KERNEL_BASE = 0x8020_0000;
export const MAX_VCPUS = 4;
const MiB = 1024 * 1024;
const RAM_PPN = MemoryMap.ram / PAGE_SIZE;

export type BootMode = "bare" | "sbi";

export interface PartitionConfig {
  /** Guest RAM in bytes: a multiple of 4 KiB, from 1 MiB to 2 GiB. */
  memoryBytes: number;
  /** Virtual processors, 1 to 4. */
  vcpus?: number;
  /**
   * "bare": every vCPU starts at the ELF entry in M-mode (QEMU `-bios none`). "sbi": the hypervisor is
   * the firmware: vCPU 0 starts the kernel in S-mode, the others wait for an SBI hart_start.
   */
  boot?: BootMode;
  /** The kernel command line, in the device tree's /chosen/bootargs. */
  bootargs?: string;
  clock: Clock;
  /** Host memory (the root partition's frame pool). A private pool of the guest's size when absent. */
  pool?: FramePool;
  /** The partition's EPT, when the root made it (a VM worker attaches to the shared one). */
  ept?: Ept;
  /** Receives console (UART and SBI console) output, in batches. */
  onConsole?: (bytes: Uint8Array) => void;
  /**
   * Hears every EPT violation that is not dirty logging's (an access the EPT does not allow). It may
   * change the mapping and answer "retry" (the access is tried once more), or "fault": the guest gets
   * an access fault. Without it, every such violation is a fault.
   */
  onEptViolation?: (violation: EptViolation) => "fault" | "retry";
  /** The VMBus channels the host offers the guest (see Synic). */
  offers?: readonly Offer[];
}

/** An access the EPT refused: the guest-physical address and the kind of access. */
export interface EptViolation {
  gpa: number;
  access: "read" | "write" | "execute";
  vcpu: number;
}

/** Why a partition stopped. `code` is the exit status a launcher should return. */
export interface Halt {
  code: number;
  reason: string;
}

export class PartitionConfigError extends Error {
  override readonly name = "PartitionConfigError";
}

/** Result of one `step`: whether every vCPU waits (WFI or stopped), and until which mtime. */
export interface StepResult {
  idle: boolean;
  wakeAtTicks: number;
}

/** Exits taken to the hypervisor, by reason (for metrics and benchmarks). */
export interface ExitCounts {
  wfi: number;
  mmio: number;
  hypercall: number;
  writeProtect: number;
  eptViolation: number;
}

const enum VcpuState {
  Running = 0,
  Waiting = 1, // WFI
  Stopped = 2, // HSM: not started, or stopped
}

/**
 * A child partition: guest RAM mapped through an EPT onto frames of the root's pool, 1 to 4 vCPUs,
 * and the `virt` devices (16550 UART, CLINT, PLIC, test device). The partition is the bus its harts
 * see: RAM accesses resolve through the EPT (allocating a frame on a page's first touch, logging the
 * first write to a write-protected page), device pages go to MMIO, everything else is an access fault.
 *
 * It runs wherever `step` is called: in a VM worker thread for real VMs, in-process for tests.
 */
export class Partition implements PhysicalBus, HypercallHost {
  readonly memory: Uint8Array;
  readonly pool: FramePool;
  readonly ept: Ept;
  readonly guest: GuestMemory;
  readonly harts: Hart[];
  readonly uart: Uart16550;
  readonly clint: Clint;
  readonly plic: Plic;
  readonly decodeCache: DecodeCache;
  /** VMBus: the channel table and the synthetic interrupt. */
  readonly synic: Synic;
  readonly hypercallPage: HypercallPage;
  readonly memoryBytes: number;
  readonly bootargs: string;
  readonly boot: BootMode;
  readonly exits: ExitCounts = { wfi: 0, mmio: 0, hypercall: 0, writeProtect: 0, eptViolation: 0 };
  /** Where the device tree was put. */
  fdtAddress = 0;
  private readonly devices: MmioDevice[];
  private readonly clock: Clock;
  private readonly onConsole: (bytes: Uint8Array) => void;
  private readonly onEptViolation: ((violation: EptViolation) => "fault" | "retry") | undefined;
  /** The last EPT violation taken, for the root to inspect. */
  lastEptViolation: EptViolation | undefined;
  /** The vCPU running now (the one whose accesses resolvePage serves). */
  private currentVcpu = 0;
  private readonly vcpuState: VcpuState[];
  private readonly hypercalls: HypercallDispatcher;
  private consoleBuffer: number[] = [];
  /** Guest time: ticks = (clock - timeBaseMs) * TICKS_PER_MS while running; frozen while paused. */
  private timeBaseMs: number;
  private frozenTicks: number | undefined;
  private image: ElfImage | undefined;
  private tohost = -1;
  private halt: Halt | undefined;
  private resetRequested = false;

  constructor(config: PartitionConfig) {
    const { memoryBytes } = config;
    const vcpus = config.vcpus ?? 1;
    if (!Number.isInteger(memoryBytes) || memoryBytes % PAGE_SIZE !== 0 || memoryBytes < MiB || memoryBytes > 2048 * MiB) {
      throw new PartitionConfigError(`memory size ${memoryBytes} bytes: must be a multiple of 4 KiB from 1 MiB to 2 GiB`);
    }
    if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS) {
      throw new PartitionConfigError(`vCPU count ${vcpus}: must be 1 to ${MAX_VCPUS}`);
    }
    this.memoryBytes = memoryBytes;
    this.bootargs = config.bootargs ?? "";
    this.boot = config.boot ?? "bare";
    this.clock = config.clock;
    this.timeBaseMs = this.clock.now();
    this.onConsole = config.onConsole ?? (() => {});
    this.onEptViolation = config.onEptViolation;
    // A private pool covers the whole guest plus its reserved frame 0; the OS commits pages as touched.
    this.pool = config.pool ?? new FramePool(Math.min(memoryBytes + PAGE_SIZE, 2048 * MiB));
    this.ept = config.ept ?? new Ept(memoryBytes / PAGE_SIZE);
    if (this.ept.pages !== memoryBytes / PAGE_SIZE) throw new PartitionConfigError("the EPT does not match the memory size");
    this.memory = this.pool.memory;
    this.decodeCache = new DecodeCache(this.memory);
    this.guest = new GuestMemory(this.pool, this.ept, MemoryMap.ram);
    this.guest.onWrite = (host, length) => this.decodeCache.invalidate(host, length);
    const readTime = (): number => this.mtime();
    const sbi = this.boot === "sbi";
    this.harts = [];
    for (let i = 0; i < vcpus; i++) {
      this.harts.push(
        new Hart({ bus: this, hartId: i, decodeCache: this.decodeCache, readTime, ecallExit: sbi, machineTrapExit: sbi }),
      );
    }
    this.vcpuState = this.harts.map(() => VcpuState.Running);
    this.plic = new Plic(MemoryMap.plic, this.harts);
    this.uart = new Uart16550(
      MemoryMap.uart,
      (b) => this.consoleBuffer.push(b),
      (level) => this.plic.setLevel(UART_IRQ, level),
    );
    this.clint = sbi
      ? new Clint(MemoryMap.clint, this.harts, readTime, MIP_STIP, MTIMECMP_DISARMED)
      : new Clint(MemoryMap.clint, this.harts, readTime);
    const test = new TestDevice(MemoryMap.test, (r) => this.powerRequest(r));
    const words = new Int32Array(this.memory.buffer, this.memory.byteOffset, this.memory.byteLength >>> 2);
    this.synic = new Synic(
      {
        inRam: (gpa, length) => this.guest.contains(gpa, length),
        prefault: (gpa, length) => {
          for (let g = gpa; g < gpa + length; g += PAGE_SIZE) this.guest.frameFor((g - MemoryMap.ram) >>> PAGE_SHIFT);
        },
        writeGuest: (gpa, bytes) => this.writeGuest(gpa, bytes),
        orGuestWord: (gpa, bits) => {
          const gpn = (gpa - MemoryMap.ram) >>> PAGE_SHIFT;
          Atomics.or(words, (this.guest.frameFor(gpn) * PAGE_SIZE + (gpa & (PAGE_SIZE - 1))) >>> 2, bits);
          this.ept.markDirty(gpn);
        },
        raiseIrq: () => this.plic.trigger(VMBUS_IRQ),
      },
      config.offers,
    );
    this.hypercallPage = new HypercallPage((code, args) => this.vmbusCall(code, args));
    this.devices = [test, this.hypercallPage, this.clint, this.plic, this.uart];
    this.hypercalls = new HypercallDispatcher(this);
  }

  // ---------------------------------------------------------------------------------------------
  // Guest time

  /** Guest time: mtime ticks (10 MHz). Stands still while the partition is paused. */
  mtime(): number {
    if (this.frozenTicks !== undefined) return this.frozenTicks;
    return Math.floor((this.clock.now() - this.timeBaseMs) * TICKS_PER_MS);
  }

  /** Stops guest time (the VM is paused or being saved). */
  freezeTime(): void {
    if (this.frozenTicks === undefined) this.frozenTicks = this.mtime();
  }

  /** Lets guest time run again from where it stood: no jump. */
  thawTime(): void {
    if (this.frozenTicks === undefined) return;
    this.timeBaseMs = this.clock.now() - this.frozenTicks / TICKS_PER_MS;
    this.frozenTicks = undefined;
  }

  /** Sets guest time (restore): it continues from `ticks`, frozen or running as it was. */
  setTime(ticks: number): void {
    if (this.frozenTicks !== undefined) this.frozenTicks = ticks;
    else this.timeBaseMs = this.clock.now() - ticks / TICKS_PER_MS;
  }

  // ---------------------------------------------------------------------------------------------
  // Boot

  /** Loads an ELF image and its device tree, and resets the vCPUs to run it. */
  load(image: ElfImage): void {
    const ramEnd = MemoryMap.ram + this.memoryBytes;
    const low = this.boot === "sbi" ? SBI_KERNEL_BASE : MemoryMap.ram;
    for (const s of image.segments) {
      if (s.address < low || s.address + s.memSize > ramEnd) {
        throw new ElfError(
          `segment at 0x${hex(s.address)} (${s.memSize} bytes) does not fit in ${this.boot === "sbi" ? "the kernel's part of " : ""}` +
            `RAM 0x${hex(low)}-0x${hex(ramEnd - 1)} (${this.memoryBytes / MiB} MiB)` +
            (s.address >= low ? "; give the machine more memory" : this.boot === "sbi" ? "; SBI kernels load at 0x80200000" : ""),
        );
      }
    }
    const fdt = buildFdt(this.deviceTree());
    // Where QEMU's riscv boards put it: below min(end of RAM, 3 GiB), aligned down to 2 MiB.
    this.fdtAddress = Math.floor((Math.min(ramEnd, 3072 * MiB) - fdt.length) / (2 * MiB)) * 2 * MiB;
    for (const s of image.segments) {
      if (s.address < this.fdtAddress + fdt.length && this.fdtAddress < s.address + s.memSize) {
        throw new ElfError(`the program (up to 0x${hex(s.address + s.memSize - 1)}) leaves no room for the device tree; give the machine more memory`);
      }
    }
    if (this.boot === "sbi" && this.fdtAddress < SBI_KERNEL_BASE) throw new ElfError("RAM too small for an SBI kernel and its device tree");
    this.image = image;
    const tohost = image.symbols.get("tohost");
    this.tohost = tohost !== undefined && this.guest.contains(tohost, 4) && tohost % 4 === 0 ? tohost : -1;
    this.reboot(fdt);
  }

  private reboot(fdt = buildFdt(this.deviceTree())): void {
    const image = this.image;
    if (image === undefined) throw new Error("no image loaded");
    for (const s of image.segments) {
      this.guest.write(s.address, s.data);
      if (s.memSize > s.data.length) this.guest.zero(s.address + s.data.length, s.memSize - s.data.length);
    }
    this.guest.write(this.fdtAddress, fdt);
    this.decodeCache.flush();
    for (const hart of this.harts) {
      hart.reset(image.entry);
      hart.x[10] = hart.hartId;
      hart.x[11] = this.fdtAddress | 0;
      if (this.boot === "sbi") this.enterSupervisor(hart, image.entry, this.fdtAddress);
    }
    this.synic.reset(); // the guest starts over: it has no rings yet
    this.vcpuState.fill(VcpuState.Running);
    if (this.boot === "sbi") for (let i = 1; i < this.harts.length; i++) this.vcpuState[i] = VcpuState.Stopped;
    this.halt = undefined;
  }

  /** Puts a hart in S-mode at `pc` as SBI firmware leaves it: interrupts and exceptions delegated. */
  private enterSupervisor(hart: Hart, pc: number, a1: number): void {
    hart.reset(pc);
    hart.x[10] = hart.hartId;
    hart.x[11] = a1 | 0;
    hart.medeleg = 0xb3ff & ~(1 << 9); // everything delegable but ecall from S, which is the SBI call
    hart.mideleg = (1 << 1) | (1 << 5) | (1 << 9);
    hart.mcounteren = 7;
    hart.priv = Priv.S;
    hart.csrWrite(0x300, 0); // mstatus: recompute the translation context for S-mode
  }

  /** The device tree the guest gets in a1: the nodes QEMU's `virt` describes for these devices. */
  deviceTree(): FdtNode {
    const cells = (v: number): number[] => [Math.floor(v / 2 ** 32), v >>> 0];
    const plicPhandle = 100;
    const cpus: FdtNode[] = this.harts.map((h) => ({
      name: `cpu@${h.hartId}`,
      props: {
        device_type: "cpu",
        reg: h.hartId,
        status: "okay",
        compatible: "riscv",
        "riscv,isa": "rv32ima_zicsr_zifencei",
        "mmu-type": "riscv,sv32",
      },
      children: [
        {
          name: "interrupt-controller",
          props: { "#interrupt-cells": 1, "interrupt-controller": true, compatible: "riscv,cpu-intc", phandle: 1 + h.hartId },
        },
      ],
    }));
    const chosen: Record<string, string> = { bootargs: this.bootargs, "stdout-path": `/soc/serial@${hex(MemoryMap.uart)}` };
    return {
      name: "",
      props: { "#address-cells": 2, "#size-cells": 2, compatible: "riscv-virtio", model: "riscv-virtio,qemu" },
      children: [
        { name: "chosen", props: chosen },
        {
          name: `memory@${hex(MemoryMap.ram)}`,
          props: { device_type: "memory", reg: [...cells(MemoryMap.ram), ...cells(this.memoryBytes)] },
        },
        { name: "cpus", props: { "#address-cells": 1, "#size-cells": 0, "timebase-frequency": 10_000_000 }, children: cpus },
        {
          name: "soc",
          props: { "#address-cells": 2, "#size-cells": 2, compatible: "simple-bus", ranges: true },
          children: [
            {
              name: `serial@${hex(MemoryMap.uart)}`,
              props: {
                compatible: "ns16550a",
                reg: [...cells(MemoryMap.uart), 0, 0x100],
                "clock-frequency": 0x384000,
                "interrupt-parent": plicPhandle,
                interrupts: UART_IRQ,
              },
            },
            {
              name: `clint@${hex(MemoryMap.clint)}`,
              props: {
                compatible: ["sifive,clint0", "riscv,clint0"],
                reg: [...cells(MemoryMap.clint), 0, 0x10000],
                "interrupts-extended": this.harts.flatMap((h) => [1 + h.hartId, 3, 1 + h.hartId, 7]),
              },
            },
            {
              name: `plic@${hex(MemoryMap.plic)}`,
              props: {
                compatible: ["sifive,plic-1.0.0", "riscv,plic0"],
                reg: [...cells(MemoryMap.plic), 0, 0x400_0000],
                "#interrupt-cells": 1,
                "#address-cells": 0,
                "interrupt-controller": true,
                "riscv,ndev": 95,
                "interrupts-extended": this.harts.flatMap((h) => [1 + h.hartId, 11, 1 + h.hartId, 9]),
                phandle: plicPhandle,
              },
            },
            {
              name: `test@${hex(MemoryMap.test)}`,
              props: { compatible: ["sifive,test1", "sifive,test0", "syscon"], reg: [...cells(MemoryMap.test), 0, 0x1000] },
            },
          ],
        },
      ],
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Running

  /** Set when the guest powered off, reset-failed, or reported through tohost, or the root stopped it. */
  get halted(): Halt | undefined {
    return this.halt;
  }

  /** Queues input bytes for the guest's console. */
  consoleInput(bytes: Uint8Array): void {
    this.uart.receive(bytes);
  }

  /**
   * Runs every runnable vCPU for up to `budget` instructions (round-robin, one batch each), after
   * bringing the timer lines up to date. A vCPU in WFI wakes when an interrupt is pending and enabled.
   */
  step(budget: number): StepResult {
    this.clint.update();
    let idle = true;
    for (let i = 0; i < this.harts.length && this.halt === undefined; i++) {
      const state = this.vcpuState[i]!;
      if (state === VcpuState.Stopped) continue;
      const hart = this.harts[i]!;
      if (state === VcpuState.Waiting) {
        if (!hart.wakeable) continue;
        this.vcpuState[i] = VcpuState.Running;
      }
      idle = false;
      this.currentVcpu = i;
      // A hypercall exit is served at once and the vCPU goes on with the rest of its batch.
      for (let remaining = budget; remaining > 0; ) {
        const exit = hart.run(remaining);
        remaining -= hart.spent;
        if (this.tohost >= 0) this.pollTohost();
        if (exit === Exit.Wfi) {
          this.exits.wfi++;
          this.vcpuState[i] = VcpuState.Waiting;
        } else if (exit === Exit.Ecall) {
          this.exits.hypercall++;
          this.hypercalls.handleEcall(hart);
          if (this.halt === undefined && this.vcpuState[i] === VcpuState.Running && !this.resetRequested) continue;
        } else if (exit === Exit.MachineTrap && this.halt === undefined) {
          this.stop({
            code: 1,
            reason: `vCPU ${i}: trap to M-mode, which the hypervisor owns (mcause 0x${hex(hart.mcause)}, mepc 0x${hex(hart.mepc)}, mtval 0x${hex(hart.mtval)})`,
          });
        }
        break;
      }
    }
    if (this.resetRequested) {
      this.resetRequested = false;
      this.reboot();
    }
    this.flushConsole();
    return { idle: idle && this.halt === undefined, wakeAtTicks: this.clint.nextDeadline() };
  }

  /** Passes buffered console output to `onConsole`. */
  flushConsole(): void {
    if (this.consoleBuffer.length === 0) return;
    const bytes = Uint8Array.from(this.consoleBuffer);
    this.consoleBuffer = [];
    this.onConsole(bytes);
  }

  /** Retired instructions over all vCPUs. */
  get instructions(): number {
    let n = 0;
    for (const h of this.harts) n += h.instret;
    return n;
  }

  /** Stops the partition: every vCPU returns from its batch at the next check. */
  stop(halt: Halt): void {
    if (this.halt !== undefined) return;
    this.halt = halt;
    for (const h of this.harts) h.requestExit();
  }

  /** Forgets cached translations on every vCPU (after the EPT changed). */
  flushTlbs(harts: readonly number[] = this.harts.map((h) => h.hartId)): void {
    for (const i of harts) this.harts[i]!.flushTlb();
  }

  /** Dirty-log sync point: returns and clears the dirty bitmap, then drops every vCPU's stale W. */
  getAndClearDirtyLog(): Int32Array {
    const bitmap = this.ept.getAndClearDirtyLog();
    this.flushTlbs();
    return bitmap;
  }

  startDirtyLog(): void {
    this.ept.startDirtyLog();
    this.flushTlbs();
  }

  stopDirtyLog(): void {
    this.ept.stopDirtyLog();
  }

  // ---------------------------------------------------------------------------------------------
  // PhysicalBus: what the harts see

  resolvePage(ppn: number, access: Access): number {
    const gpn = ppn - RAM_PPN;
    if (gpn >= 0 && gpn < this.ept.pages) {
      const table = this.ept.table;
      let e = table[gpn]!;
      if ((e & EPT_PRESENT) === 0) {
        try {
          this.guest.frameFor(gpn);
        } catch (err) {
          if (!(err instanceof GuestMemoryError)) throw err;
          this.stop({ code: 1, reason: err.message });
          return PAGE_FAULT;
        }
        e = table[gpn]!;
      }
      const need = access === Access.Read ? EPT_R : access === Access.Write ? EPT_W : EPT_X;
      if ((e & need) === 0) {
        // EPT violation: the hypervisor hears of it and may fix the mapping; otherwise an access fault.
        this.exits.eptViolation++;
        const violation: EptViolation = {
          gpa: ppn * PAGE_SIZE,
          access: access === Access.Read ? "read" : access === Access.Write ? "write" : "execute",
          vcpu: this.currentVcpu,
        };
        this.lastEptViolation = violation;
        if (this.onEptViolation?.(violation) !== "retry") return PAGE_FAULT;
        e = table[gpn]!;
        if ((e & EPT_PRESENT) === 0 || (e & need) === 0) return PAGE_FAULT;
      }
      if (access === Access.Write && (e & EPT_WP) !== 0) {
        this.exits.writeProtect++;
        e = this.ept.writeFault(gpn);
      }
      return (e >>> PAGE_SHIFT) * PAGE_SIZE;
    }
    return this.deviceAt(ppn * PAGE_SIZE) !== undefined ? PAGE_MMIO : PAGE_FAULT;
  }

  mmioLoad(pa: number, size: 1 | 2 | 4): number {
    this.exits.mmio++;
    const device = this.deviceAt(pa);
    if (device === undefined) return BUS_FAULT;
    const v = device.load(pa - device.base, size);
    return v === undefined ? BUS_FAULT : v;
  }

  mmioStore(pa: number, size: 1 | 2 | 4, value: number): boolean {
    this.exits.mmio++;
    const device = this.deviceAt(pa);
    if (device === undefined) return false;
    return device.store(pa - device.base, size, value);
  }

  private deviceAt(pa: number): MmioDevice | undefined {
    for (const d of this.devices) if (pa >= d.base && pa < d.base + d.size) return d;
    return undefined;
  }

  /**
   * The riscv-tests `tohost` convention, polled after every batch as HTIF hosts do: 1 means pass, any
   * other odd value v a failure of test v >> 1. (Zero means nothing; even values are syscall requests,
   * which we do not serve.) Polling costs one read per batch, where trapping writes would slow every
   * store to the page that holds tohost.
   */
  private pollTohost(): void {
    const frame = this.ept.frame((this.tohost - MemoryMap.ram) >>> PAGE_SHIFT);
    if (frame < 0) return;
    const host = frame * PAGE_SIZE + (this.tohost & (PAGE_SIZE - 1));
    const v = (this.memory[host]! | (this.memory[host + 1]! << 8) | (this.memory[host + 2]! << 16) | (this.memory[host + 3]! << 24)) >>> 0;
    if (v === 0 || (v & 1) === 0) return;
    this.halt = undefined; // tohost was written first: it decides, even if a power-off followed
    this.stop(v === 1 ? { code: 0, reason: "tohost: pass" } : { code: 1, reason: `tohost: test ${v >>> 1} failed` });
  }

  private powerRequest(request: PowerRequest): void {
    if (request.kind === "reset") {
      this.resetRequested = true;
      for (const h of this.harts) h.requestExit();
      return;
    }
    this.stop({ code: request.code, reason: request.code === 0 ? "poweroff" : `poweroff with failure code ${request.code}` });
  }

  // ---------------------------------------------------------------------------------------------
  // HypercallHost: what the SBI reaches

  hartState(hart: number): number {
    return this.vcpuState[hart] === VcpuState.Stopped ? HartState.Stopped : HartState.Started;
  }

  startHart(hart: number, startAddress: number, opaque: number): void {
    this.enterSupervisor(this.harts[hart]!, startAddress, opaque);
    this.vcpuState[hart] = VcpuState.Running;
  }

  stopHart(hart: number): void {
    this.vcpuState[hart] = VcpuState.Stopped;
    this.harts[hart]!.requestExit();
  }

  setTimer(hart: number, compare: number): void {
    this.clint.setTimer(hart, compare);
  }

  consoleWrite(bytes: Uint8Array): void {
    for (const b of bytes) this.consoleBuffer.push(b);
  }

  consoleRead(): number {
    const lsr = this.uart.load(5, 1)!;
    return lsr & 1 ? this.uart.load(0, 1)! : -1;
  }

  readGuest(gpa: number, length: number): Uint8Array | undefined {
    return this.guest.contains(gpa, length) ? this.guest.read(gpa, length) : undefined;
  }

  writeGuest(gpa: number, bytes: Uint8Array): boolean {
    if (!this.guest.contains(gpa, bytes.length)) return false;
    this.guest.write(gpa, bytes);
    return true;
  }

  flushInstructionCaches(): void {
    this.decodeCache.flush();
  }

  vmbusCall(code: number, args: readonly number[]): HypercallResult {
    return this.synic.call(code, args);
  }

  systemReset(type: number, reason: number): void {
    if (type === 0) this.stop({ code: reason === 0 ? 0 : 1, reason: reason === 0 ? "SBI shutdown" : "SBI shutdown: system failure" });
    else this.powerRequest({ kind: "reset" });
  }

  /** Internal state the snapshot code needs. */
  get vcpuStates(): number[] {
    return [...this.vcpuState];
  }

  set vcpuStates(states: number[]) {
    states.forEach((s, i) => (this.vcpuState[i] = s as VcpuState));
  }

  get loadedImage(): { tohost: number } {
    return { tohost: this.tohost };
  }

  set tohostAddress(address: number) {
    this.tohost = address;
  }
}

function hex(v: number): string {
  return (v >>> 0).toString(16);
}
