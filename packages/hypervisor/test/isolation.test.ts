/**
 * A child partition reaches only its own frames: no guest address, MMIO access or hypercall argument
 * gets to another partition's memory or the host's. Two partitions share one pool here, as on a node.
 */
import { Cause } from "@hyperfleet/riscv";
import { describe, expect, it } from "vitest";
import { FramePool, PAGE_SIZE } from "../src/frame-pool.js";
import { SbiError, SbiExtension } from "../src/hypercalls.js";
import { SBI_KERNEL_BASE } from "../src/partition.js";
import { asm, boot, RAM, setMtvec, skipHandler } from "./lib.js";

const MEM = 4 << 20;
const HANDLER = RAM + 0x800;

/** Fills every word of its RAM from 0x1000 up with `pattern`, then probes addresses outside it. */
function hostile(pattern: number, probes: number[]): number[] {
  const body = [
    ...setMtvec(HANDLER),
    ...asm.li(6, RAM + 0x1000),
    ...asm.li(7, RAM + MEM),
    ...asm.li(8, pattern),
    asm.sw(8, 6, 0), // loop: fill
    asm.addi(6, 6, 4),
    asm.bne(6, 7, -8),
  ];
  for (const a of probes) body.push(...asm.li(6, a), asm.lw(9, 6, 0), asm.sw(8, 6, 0));
  body.push(asm.jal(0, 0));
  while (body.length < (HANDLER - RAM) / 4) body.push(asm.addi(0, 0, 0));
  return [...body, ...skipHandler()];
}

const run = (p: { step(n: number): unknown; halted: unknown }, rounds: number) => {
  for (let i = 0; i < rounds && p.halted === undefined; i++) p.step(200_000);
};

describe("isolation - partitions on one pool", () => {
  it("a guest that writes all of its RAM and probes beyond it cannot touch another partition", () => {
    const pool = new FramePool(16 << 20);
    const probes = [RAM + MEM, RAM + MEM + 0x10_0000, 0x7fff_f000, 0x0000_0000, 0x0000_2000, 0xffff_f000, 0x2000_0000, 0x0c00_0000 + 0x400_0000];
    const a = boot(hostile(0xdead_beef | 0, probes), { pool, memoryBytes: MEM });
    const b = boot([asm.jal(0, 0)], { pool, memoryBytes: MEM });
    run(a.p, 20);
    const h = a.p.harts[0]!;
    // every probe outside RAM and outside the devices faulted: a load and a store each
    expect(h.x[29]).toBe(probes.length * 2);
    expect([Cause.LoadAccessFault, Cause.StoreAccessFault]).toContain(h.x[30]);
    // A's RAM is full of its pattern, B's RAM has only its own image and device tree
    expect(a.p.guest.readU32(RAM + MEM - 4)).toBe(0xdeadbeef);
    const bRam = b.p.guest.read(RAM, MEM);
    const words = new Uint32Array(bRam.buffer);
    expect(words.includes(0xdeadbeef)).toBe(false);
    // their frames are disjoint
    const frames = (p: typeof a.p) => {
      const s = new Set<number>();
      for (let g = 0; g < p.ept.pages; g++) if (p.ept.frame(g) >= 0) s.add(p.ept.frame(g));
      return s;
    };
    const fa = frames(a.p);
    for (const f of frames(b.p)) expect(fa.has(f)).toBe(false);
    expect(fa.has(0)).toBe(false);
  });

  it("root-side accesses by guest address stay inside the partition's RAM", () => {
    const { p } = boot([asm.jal(0, 0)], { memoryBytes: MEM });
    expect(() => p.guest.read(RAM - 4, 8)).toThrow(/outside RAM/);
    expect(() => p.guest.write(RAM + MEM - 2, new Uint8Array(4))).toThrow(/outside RAM/);
    expect(() => p.guest.read(0x1000_0000, 4)).toThrow(/outside RAM/);
    expect(p.readGuest(RAM + MEM, 1)).toBeUndefined();
  });
});

describe("isolation - hypercall arguments", () => {
  /** An S-mode kernel making one SBI call with the given registers; the result lands in x10/x11. */
  function sbiCall(eid: number, fid: number, args: number[]): ReturnType<typeof boot> {
    const code = [
      ...args.flatMap((v, i) => asm.li(10 + i, v)),
      ...asm.li(17, eid),
      ...asm.li(16, fid),
      asm.ecall(),
      asm.jal(0, 0),
    ];
    const b = boot(code, { memoryBytes: 2 * MEM, boot: "sbi", address: SBI_KERNEL_BASE });
    b.p.step(100);
    return b;
  }

  it("DBCN console_write refuses a buffer outside the caller's RAM", () => {
    for (const [base, len] of [[0x1000, 16], [RAM + 2 * MEM - 8, 16], [0xffff_fff0, 32]] as const) {
      const { p, console } = sbiCall(SbiExtension.Dbcn, 0, [len, base, 0]);
      expect(p.harts[0]!.x[10]).toBe(SbiError.InvalidParam);
      expect(console()).toBe("");
    }
  });

  it("DBCN console_write of the caller's own RAM works", () => {
    const { p, console } = sbiCall(SbiExtension.Dbcn, 0, [4, SBI_KERNEL_BASE, 0]);
    expect(p.harts[0]!.x[10]).toBe(SbiError.Success);
    expect(p.harts[0]!.x[11]).toBe(4);
    expect(console().length).toBe(4);
  });

  it("HSM hart_start refuses a start address outside RAM and a hart that does not exist", () => {
    expect(sbiCall(SbiExtension.Hsm, 0, [0, 0x1000, 0]).p.harts[0]!.x[10]).toBe(SbiError.AlreadyAvailable); // hart 0 is running
    const vcpus2 = (() => {
      const code = [...asm.li(10, 1), ...asm.li(11, 0x2000), ...asm.li(12, 0), ...asm.li(17, SbiExtension.Hsm), ...asm.li(16, 0), asm.ecall(), asm.jal(0, 0)];
      const b = boot(code, { memoryBytes: 2 * MEM, boot: "sbi", address: SBI_KERNEL_BASE, vcpus: 2 });
      b.p.step(100);
      return b.p.harts[0]!.x[10];
    })();
    expect(vcpus2).toBe(SbiError.InvalidAddress);
    expect(sbiCall(SbiExtension.Hsm, 0, [99, SBI_KERNEL_BASE, 0]).p.harts[0]!.x[10]).toBe(SbiError.InvalidParam);
  });

  it("a frame the pool never gave out stays unreachable: guest pages map to frames above 0", () => {
    const { p } = boot([asm.jal(0, 0)], { memoryBytes: MEM });
    for (let g = 0; g < p.ept.pages; g++) {
      const f = p.ept.frame(g);
      if (f >= 0) {
        expect(f).toBeGreaterThan(0);
        expect(f * PAGE_SIZE).toBeLessThan(p.pool.memory.byteLength);
      }
    }
  });
});
