import { Cause } from "@hyperfleet/riscv";
import { describe, expect, it } from "vitest";
import { countDirty, dirtyPages, Ept, EPT_R, EPT_RWX, EPT_W, EPT_WP, EPT_X } from "../src/ept.js";
import { FramePool, PAGE_SIZE } from "../src/frame-pool.js";
import { asm, boot, RAM, setMtvec, skipHandler } from "./lib.js";

const HANDLER = RAM + 0x800;
const DATA = RAM + 0x10_0000; // 1 MiB in: a page of its own

/** A guest that installs the skip handler and then runs `body`, then spins. */
function guest(body: number[]): number[] {
  const prologue = setMtvec(HANDLER);
  const code = [...prologue, ...body, asm.jal(0, 0)];
  const padded = [...code];
  while (padded.length < (HANDLER - RAM) / 4) padded.push(asm.addi(0, 0, 0));
  return [...padded, ...skipHandler()];
}


const gpn = (gpa: number) => (gpa - RAM) / PAGE_SIZE;

describe("ept - mappings and permission faults", () => {
  it("maps guest pages to pool frames on first touch only", () => {
    const { p } = boot(guest([...asm.li(6, DATA), asm.sw(6, 6, 0)]), { memoryBytes: 64 << 20 });
    const before = p.ept.presentPages;
    p.step(100);
    expect(p.ept.presentPages).toBe(before + 1);
    expect(p.ept.frame(gpn(DATA))).toBeGreaterThan(0);
    expect(p.guest.readU32(DATA)).toBe(DATA);
    // a 64 MiB guest that touched a handful of pages holds a handful of frames
    expect(p.pool.used).toBeLessThan(16);
  });

  it("a write to a page without W is a store access fault in the guest", () => {
    const { p } = boot(guest([...asm.li(6, DATA), asm.lw(7, 6, 0), asm.sw(6, 6, 0), asm.addi(8, 0, 1)]));
    p.guest.write(DATA, Uint8Array.of(1, 2, 3, 4));
    p.ept.protect(gpn(DATA), EPT_R | EPT_X);
    p.step(200);
    const h = p.harts[0]!;
    expect(h.x[30]).toBe(Cause.StoreAccessFault);
    expect(h.x[31]! >>> 0).toBe(DATA);
    expect(h.x[7]).toBe(0x04030201); // the read was allowed
    expect(h.x[8]).toBe(1); // and execution went on after the skipped store
    expect(p.guest.readU32(DATA)).toBe(0x04030201);
    expect(p.exits.eptViolation).toBe(1);
  });

  it("the hypervisor hears each violation with its address and kind, and may fix the mapping and retry", () => {
    const seen: { gpa: number; access: string }[] = [];
    const { p } = boot(guest([...asm.li(6, DATA), asm.sw(6, 6, 0), asm.addi(8, 0, 1)]), {
      onEptViolation: (v) => {
        seen.push({ gpa: v.gpa, access: v.access });
        p.ept.protect(gpn(DATA), EPT_RWX); // grant W, as a hypervisor would for a page it manages
        return "retry";
      },
    });
    p.guest.write(DATA, new Uint8Array(4));
    p.ept.protect(gpn(DATA), EPT_R);
    p.step(200);
    expect(seen).toEqual([{ gpa: DATA, access: "write" }]);
    expect(p.harts[0]!.x[29]).toBe(0); // no fault reached the guest
    expect(p.guest.readU32(DATA)).toBe(DATA);
    expect(p.lastEptViolation).toMatchObject({ gpa: DATA, access: "write", vcpu: 0 });
  });

  it("a 1 GiB guest that touched 4 MiB holds about 4 MiB of host frames", () => {
    // touch 4 MiB, one word per page, then spin
    const body = [...asm.li(6, RAM + 0x40_0000), ...asm.li(7, RAM + 0x80_0000), ...asm.li(9, 4096), asm.sw(6, 6, 0), asm.add(6, 6, 9), asm.bne(6, 7, -8)];
    const { p } = boot(guest(body), { memoryBytes: 1 << 30 });
    for (let i = 0; i < 10; i++) p.step(100_000);
    expect(p.guest.readU32(RAM + 0x7f_f000)).toBe(RAM + 0x7f_f000);
    const frames = p.pool.used;
    expect(frames).toBeGreaterThanOrEqual(1024);
    expect(frames).toBeLessThan(1024 + 16); // the program, its stack page, the device tree
    expect(p.ept.table.byteLength).toBe((1 << 30) / 4096 * 4); // plus the table: 1 MiB
  });

  it("a fetch from a page without X is an instruction access fault", () => {
    const target = RAM + 0x2000;
    const { p } = boot(guest([...asm.li(6, target), asm.jalr(1, 6, 0)]), { memSize: 0x3000 });
    p.guest.write(target, Uint8Array.of(0x13, 0, 0, 0)); // nop
    p.ept.protect(gpn(target), EPT_R | EPT_W);
    p.step(20);
    const h = p.harts[0]!;
    expect(h.x[30]).toBe(Cause.InstructionAccessFault);
    expect(h.x[29]).toBeGreaterThan(0);
    // the handler skips to the next word, which faults too: every fault is a fetch inside that page
    expect((h.x[31]! & ~0xfff) >>> 0).toBe(target);
    expect(h.x[31]).toBe(h.x[28]! - 4); // mtval = the faulting pc (mepc, before the skip)
  });

  it("a read from a page without R is a load access fault", () => {
    const { p } = boot(guest([...asm.li(6, DATA), asm.lw(7, 6, 0)]));
    p.guest.write(DATA, Uint8Array.of(9));
    p.ept.protect(gpn(DATA), EPT_W);
    p.step(200);
    expect(p.harts[0]!.x[30]).toBe(Cause.LoadAccessFault);
  });

  it("taking W away after the guest cached it needs a TLB flush, which the partition offers", () => {
    const loop = [...asm.li(6, DATA), asm.addi(7, 7, 1), asm.sw(7, 6, 0), asm.jal(0, -8)];
    const { p } = boot(guest(loop));
    p.step(100);
    const f = gpn(DATA);
    p.ept.protect(f, EPT_R | EPT_X);
    p.flushTlbs();
    p.step(100);
    expect(p.harts[0]!.x[30]).toBe(Cause.StoreAccessFault);
  });
});

describe("ept - dirty logging by write-protection", () => {
  /** Writes the words of `pages` (gpa list) once each, then spins. */
  const writer = (pages: number[]) => guest(pages.flatMap((a, i) => [...asm.li(6, a), asm.addi(7, 0, i + 1), asm.sw(7, 6, 0)]));
  const A = RAM + 0x10_0000;
  const B = RAM + 0x10_1000;
  const C = RAM + 0x10_2000;

  it("a guest write sets the page's bit and gives W back: one fault per page per round", () => {
    const { p } = boot(writer([A, B]));
    p.guest.write(A, new Uint8Array(4)); // make the pages present before logging starts
    p.guest.write(B, new Uint8Array(4));
    p.startDirtyLog();
    expect(p.ept.entry(gpn(A)) & EPT_WP).toBe(EPT_WP);
    p.getAndClearDirtyLog(); // drop the root's own writes above
    p.step(200);
    const dirty = p.getAndClearDirtyLog();
    expect(dirtyPages(dirty)).toEqual([gpn(A), gpn(B)]);
    expect(p.exits.writeProtect).toBe(2);
    // clearing protected them again
    expect(p.ept.entry(gpn(A)) & EPT_WP).toBe(EPT_WP);
    expect(p.ept.entry(gpn(A)) & EPT_W).toBe(EPT_W); // the guest keeps its permission
  });

  it("a second write to the same page in one round takes no fault", () => {
    const { p } = boot(writer([A, A, A]));
    p.guest.write(A, new Uint8Array(4));
    p.startDirtyLog();
    p.getAndClearDirtyLog();
    p.step(200);
    expect(p.exits.writeProtect).toBe(1);
    expect(dirtyPages(p.getAndClearDirtyLog())).toEqual([gpn(A)]);
  });

  it("after a clear, the next write faults again (cached W was dropped)", () => {
    const loop = [...asm.li(6, A), asm.addi(7, 7, 1), asm.sw(7, 6, 0), asm.jal(0, -8)];
    const { p } = boot(guest(loop));
    p.startDirtyLog();
    p.step(100);
    expect(dirtyPages(p.getAndClearDirtyLog())).toContain(gpn(A));
    const faults = p.exits.writeProtect;
    p.step(100);
    expect(p.exits.writeProtect).toBe(faults + 1);
    expect(dirtyPages(p.getAndClearDirtyLog())).toContain(gpn(A));
  });

  it("writes the root makes into guest memory are logged too", () => {
    const { p } = boot(guest([]));
    p.startDirtyLog();
    p.getAndClearDirtyLog();
    p.guest.write(C - 2, Uint8Array.of(1, 2, 3, 4)); // straddles B and C
    expect(dirtyPages(p.getAndClearDirtyLog())).toEqual([gpn(B), gpn(C)]);
  });

  it("a round that fails mid-way loses no page: its bitmap is merged back and the retry sees it", () => {
    const { p } = boot(writer([A, B]));
    p.startDirtyLog();
    p.getAndClearDirtyLog();
    p.step(200);
    const failedRound = p.getAndClearDirtyLog();
    expect(countDirty(failedRound)).toBe(2);
    // the round's transfer failed: give the bits back, then the guest dirties another page
    p.ept.mergeDirtyLog(failedRound);
    p.guest.write(C, Uint8Array.of(7));
    expect(dirtyPages(p.getAndClearDirtyLog())).toEqual([gpn(A), gpn(B), gpn(C)]);
  });

  it("pages first touched during logging are logged when written", () => {
    const { p } = boot(writer([C]));
    p.startDirtyLog();
    p.getAndClearDirtyLog();
    expect(p.ept.frame(gpn(C))).toBe(-1);
    p.step(200);
    expect(dirtyPages(p.getAndClearDirtyLog())).toContain(gpn(C));
  });

  it("stopping the log removes write protection", () => {
    const { p } = boot(guest([]));
    p.guest.write(A, new Uint8Array(4));
    p.startDirtyLog();
    p.stopDirtyLog();
    expect(p.ept.entry(gpn(A)) & EPT_WP).toBe(0);
    expect(p.ept.logging).toBe(false);
  });
});

describe("ept - tables and pools in shared memory", () => {
  it("an EPT attached from its shared buffers sees the same entries and log", () => {
    const a = new Ept(64);
    a.map(3, 7, EPT_RWX);
    const b = new Ept(a.shared);
    expect(b.frame(3)).toBe(7);
    b.markDirty(5);
    expect(dirtyPages(a.getAndClearDirtyLog())).toEqual([5]);
  });

  it("a pool never hands out frame 0 or a frame twice, and zeroes frames on release", () => {
    const pool = new FramePool(16 * PAGE_SIZE);
    const got = new Set<number>();
    for (let i = 0; i < 15; i++) got.add(pool.allocate());
    expect(got.size).toBe(15);
    expect(got.has(0)).toBe(false);
    expect(pool.allocate()).toBe(-1);
    const f = [...got][0]!;
    pool.memory[f * PAGE_SIZE] = 0xaa;
    pool.release(f);
    expect(pool.memory[f * PAGE_SIZE]).toBe(0);
    expect(pool.allocate()).toBe(f);
    expect(() => pool.release(0)).toThrow(/bad frame/);
  });

  it("prefault commits the pool without changing a byte of it or its free list", () => {
    const pool = new FramePool(32 * PAGE_SIZE);
    const f = pool.allocate();
    pool.memory.fill(0x5a, f * PAGE_SIZE, (f + 1) * PAGE_SIZE);
    const before = pool.memory.slice();
    const free = pool.free;
    pool.prefault();
    expect(Buffer.from(pool.memory).equals(Buffer.from(before))).toBe(true);
    expect(pool.free).toBe(free);
  });

  it("a guest that exhausts host memory stops with a clear reason", () => {
    const pool = new FramePool(8 * PAGE_SIZE);
    // touch 16 pages one after another
    const body: number[] = [];
    for (let i = 0; i < 16; i++) body.push(...asm.li(6, RAM + 0x4000 + i * PAGE_SIZE), asm.sw(0, 6, 0));
    const { p } = boot(guest(body), { pool, memoryBytes: 4 << 20 });
    p.step(1000);
    expect(p.halted?.reason).toMatch(/host memory exhausted/);
  });
});
