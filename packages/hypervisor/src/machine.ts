import {
  Access, BUS_FAULT, DecodeCache, ElfError, Exit, Hart, PAGE_FAULT, PAGE_MMIO, type ElfImage, type PhysicalBus,
} from "@hyperfleet/riscv";
import { TICKS_PER_MS, type Clock } from "./clock.js";
import { Clint } from "./devices/clint.js";
import type { MmioDevice } from "./devices/device.js";
import { TestDevice, type PowerRequest } from "./devices/test-device.js";
import { Uart16550 } from "./devices/uart16550.js";
import { buildFdt, type FdtNode } from "./fdt.js";

/** The memory map of QEMU's riscv `virt` board, for the devices we have. */
export const MemoryMap = {
  test: 0x0010_0000,
  clint: 0x0200_0000,
  plic: 0x0c00_0000,
  uart: 0x1000_0000,
  ram: 0x8000_0000,
} as const;

export const MAX_HARTS = 4;
const MiB = 1024 * 1024;

export interface MachineConfig {
  /** RAM size in bytes: a multiple of 4 KiB, at least 1 MiB, at most 2 GiB. */
  memoryBytes: number;
  /** Number of harts, 1 to 4. */
  harts?: number;
  /** The kernel command line, put in the device tree's /chosen/bootargs. */
  bootargs?: string;
  clock: Clock;
  /** Receives console (UART) output as it is produced, in batches. */
  onConsole?: (bytes: Uint8Array) => void;
}

/** Why a machine stopped. `code` is the exit status a launcher should return. */
export interface Halt {
  code: number;
  reason: string;
}

export class MachineConfigError extends Error {
  override readonly name = "MachineConfigError";
}

/** Result of one `step`: whether every hart sleeps in WFI, and until which mtime (Infinity: no timer). */
export interface StepResult {
  idle: boolean;
  wakeAtTicks: number;
}

/**
 * A bare-metal RISC-V machine with QEMU `virt`'s memory map: RAM, 16550 UART, CLINT and the test device,
 * 1 to 4 harts. Boots an ELF like QEMU's `-bios none -kernel`: every hart starts at the entry in M-mode
 * with a0 = hart id and a1 = the device tree's address (placed where QEMU puts it).
 * Honours the riscv-tests `tohost` convention when the ELF has a `tohost` symbol.
 */
export class Machine implements PhysicalBus {
  readonly memory: Uint8Array;
  readonly harts: Hart[];
  readonly uart: Uart16550;
  readonly clint: Clint;
  readonly decodeCache: DecodeCache;
  readonly memoryBytes: number;
  readonly bootargs: string;
  private readonly devices: MmioDevice[];
  private readonly clock: Clock;
  private readonly onConsole: (bytes: Uint8Array) => void;
  private readonly sleeping: boolean[];
  private consoleBuffer: number[] = [];
  private bootMs: number;
  private image: ElfImage | undefined;
  private tohost = -1;
  private halt: Halt | undefined;
  private resetRequested = false;
  /** Where the device tree was put. */
  fdtAddress = 0;

  constructor(config: MachineConfig) {
    const { memoryBytes } = config;
    const harts = config.harts ?? 1;
    if (!Number.isInteger(memoryBytes) || memoryBytes % 4096 !== 0 || memoryBytes < MiB || memoryBytes > 2048 * MiB) {
      throw new MachineConfigError(`memory size ${memoryBytes} bytes: must be a multiple of 4 KiB from 1 MiB to 2 GiB`);
    }
    if (!Number.isInteger(harts) || harts < 1 || harts > MAX_HARTS) {
      throw new MachineConfigError(`hart count ${harts}: must be 1 to ${MAX_HARTS}`);
    }
    this.memoryBytes = memoryBytes;
    this.bootargs = config.bootargs ?? "";
    this.clock = config.clock;
    this.bootMs = this.clock.now();
    this.onConsole = config.onConsole ?? (() => {});
    this.memory = new Uint8Array(new SharedArrayBuffer(memoryBytes));
    this.decodeCache = new DecodeCache(this.memory);
    this.harts = [];
    const readTime = (): number => this.mtime();
    for (let i = 0; i < harts; i++) {
      this.harts.push(new Hart({ bus: this, hartId: i, decodeCache: this.decodeCache, readTime }));
    }
    this.sleeping = this.harts.map(() => false);
    this.uart = new Uart16550(MemoryMap.uart, (b) => this.consoleBuffer.push(b));
    this.clint = new Clint(MemoryMap.clint, this.harts, readTime);
    const test = new TestDevice(MemoryMap.test, (r) => this.powerRequest(r));
    this.devices = [test, this.clint, this.uart];
  }

  /** Guest time: mtime ticks (10 MHz) since boot. */
  mtime(): number {
    return Math.floor((this.clock.now() - this.bootMs) * TICKS_PER_MS);
  }

  /** Loads an ELF image and its device tree and resets the harts to its entry. */
  load(image: ElfImage): void {
    const ramEnd = MemoryMap.ram + this.memoryBytes;
    for (const s of image.segments) {
      if (s.address < MemoryMap.ram || s.address + s.memSize > ramEnd) {
        throw new ElfError(
          `segment at 0x${hex(s.address)} (${s.memSize} bytes) does not fit in RAM 0x${hex(MemoryMap.ram)}-0x${hex(ramEnd - 1)} ` +
            `(${this.memoryBytes / MiB} MiB)${s.address >= MemoryMap.ram ? "; give the machine more memory" : ""}`,
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
    this.image = image;
    this.tohost = image.symbols.get("tohost") ?? -1;
    this.boot(fdt);
  }

  private boot(fdt = buildFdt(this.deviceTree())): void {
    const image = this.image;
    if (image === undefined) throw new Error("no image loaded");
    for (const s of image.segments) {
      const offset = s.address - MemoryMap.ram;
      this.memory.set(s.data, offset);
      this.memory.fill(0, offset + s.data.length, offset + s.memSize);
    }
    this.memory.set(fdt, this.fdtAddress - MemoryMap.ram);
    this.decodeCache.flush();
    for (const hart of this.harts) {
      hart.reset(image.entry);
      hart.x[10] = hart.hartId;
      hart.x[11] = this.fdtAddress | 0;
    }
    this.sleeping.fill(false);
    this.halt = undefined;
  }

  /** The device tree the guest gets in a1: the same nodes QEMU's `virt` describes for these devices. */
  deviceTree(): FdtNode {
    const cells = (v: number): number[] => [Math.floor(v / 2 ** 32), v >>> 0];
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
    return {
      name: "",
      props: { "#address-cells": 2, "#size-cells": 2, compatible: "riscv-virtio", model: "riscv-virtio,qemu" },
      children: [
        { name: "chosen", props: { bootargs: this.bootargs, "stdout-path": `/soc/serial@${hex(MemoryMap.uart)}` } },
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
              props: { compatible: "ns16550a", reg: [...cells(MemoryMap.uart), 0, 0x100], "clock-frequency": 0x384000 },
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
              name: `test@${hex(MemoryMap.test)}`,
              props: { compatible: ["sifive,test1", "sifive,test0", "syscon"], reg: [...cells(MemoryMap.test), 0, 0x1000] },
            },
          ],
        },
      ],
    };
  }

  /** Set when the guest powered off, failed a tohost test or reported success through tohost. */
  get halted(): Halt | undefined {
    return this.halt;
  }

  /** Queues input bytes for the guest's console. */
  consoleInput(bytes: Uint8Array): void {
    this.uart.receive(bytes);
  }

  /**
   * Runs every awake hart for up to `budget` instructions (round-robin, one batch each), after bringing
   * the timer lines up to date. Harts in WFI wake when an interrupt is pending and enabled.
   */
  step(budget: number): StepResult {
    this.clint.update();
    let idle = true;
    for (let i = 0; i < this.harts.length && this.halt === undefined; i++) {
      const hart = this.harts[i]!;
      if (this.sleeping[i]) {
        if (!hart.wakeable) continue;
        this.sleeping[i] = false;
      }
      idle = false;
      const exit = hart.run(budget);
      if (exit === Exit.Wfi) this.sleeping[i] = true;
    }
    if (this.resetRequested) {
      this.resetRequested = false;
      this.boot();
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

  /** Retired instructions over all harts. */
  get instructions(): number {
    let n = 0;
    for (const h of this.harts) n += h.instret;
    return n;
  }

  // PhysicalBus ----------------------------------------------------------------------------------

  resolvePage(ppn: number, access: Access): number {
    const offset = ppn * 4096 - MemoryMap.ram;
    if (offset >= 0 && offset < this.memoryBytes) {
      // Writes to the tohost page go through mmioStore so that the write is seen.
      if (access === Access.Write && this.tohost >= 0 && ppn === this.tohost >>> 12) return PAGE_MMIO;
      return offset;
    }
    return this.deviceAt(ppn * 4096) !== undefined ? PAGE_MMIO : PAGE_FAULT;
  }

  mmioLoad(pa: number, size: 1 | 2 | 4): number {
    const device = this.deviceAt(pa);
    if (device === undefined) return BUS_FAULT;
    const v = device.load(pa - device.base, size);
    return v === undefined ? BUS_FAULT : v;
  }

  mmioStore(pa: number, size: 1 | 2 | 4, value: number): boolean {
    const offset = pa - MemoryMap.ram;
    if (offset >= 0 && offset < this.memoryBytes) {
      this.ramStore(offset, size, value);
      if (pa === this.tohost && size === 4) this.tohostWrite(value);
      return true;
    }
    const device = this.deviceAt(pa);
    if (device === undefined) return false;
    return device.store(pa - device.base, size, value);
  }

  private ramStore(offset: number, size: 1 | 2 | 4, value: number): void {
    const view = new DataView(this.memory.buffer, this.memory.byteOffset);
    if (size === 4) view.setInt32(offset, value, true);
    else if (size === 2) view.setUint16(offset, value, true);
    else view.setUint8(offset, value);
    this.decodeCache.invalidate(offset, size);
  }

  private deviceAt(pa: number): MmioDevice | undefined {
    for (const d of this.devices) if (pa >= d.base && pa < d.base + d.size) return d;
    return undefined;
  }

  private tohostWrite(value: number): void {
    if (value === 0 || (value & 1) === 0) return; // 0: nothing; even: a syscall request we do not serve
    const v = value >>> 0;
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

  /** Stops the machine: every hart returns from its batch at the next check. */
  stop(halt: Halt): void {
    if (this.halt !== undefined) return;
    this.halt = halt;
    for (const h of this.harts) h.requestExit();
  }
}

function hex(v: number): string {
  return (v >>> 0).toString(16);
}
