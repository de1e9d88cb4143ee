import { MIP_MEIP, MIP_SEIP } from "@hyperfleet/riscv";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { Plic } from "../src/devices/plic.js";
import { Partition } from "../src/partition.js";

const ENABLE = (ctx: number) => 0x2000 + 0x80 * ctx;
const THRESHOLD = (ctx: number) => 0x20_0000 + 0x1000 * ctx;
const CLAIM = (ctx: number) => THRESHOLD(ctx) + 4;

function setup(vcpus = 2) {
  const p = new Partition({ memoryBytes: 1 << 20, vcpus, clock: new ManualClock() });
  const plic = new Plic(0, p.harts);
  return { plic, harts: p.harts };
}

describe("plic - routing, priority, claim and complete", () => {
  it("a source reaches a context only when enabled there with a priority above its threshold", () => {
    const { plic, harts } = setup();
    plic.setLevel(10, true);
    expect(harts[0]!.mipLines & MIP_MEIP).toBe(0); // priority 0: never
    plic.store(4 * 10, 4, 1);
    expect(harts[0]!.mipLines & MIP_MEIP).toBe(0); // not enabled
    plic.store(ENABLE(0), 4, 1 << 10);
    expect(harts[0]!.mipLines & MIP_MEIP).toBe(MIP_MEIP);
    expect(harts[0]!.mipLines & MIP_SEIP).toBe(0);
    expect(harts[1]!.mipLines & MIP_MEIP).toBe(0);
    plic.store(THRESHOLD(0), 4, 1); // threshold 1: priority 1 is not above it
    expect(harts[0]!.mipLines & MIP_MEIP).toBe(0);
  });

  it("S-mode contexts drive SEIP, and the pending bits read back", () => {
    const { plic, harts } = setup();
    plic.store(4 * 3, 4, 2);
    plic.store(ENABLE(3), 4, 1 << 3); // hart 1, S-mode
    plic.setLevel(3, true);
    expect(harts[1]!.mipLines & MIP_SEIP).toBe(MIP_SEIP);
    expect(plic.load(0x1000, 4)! & (1 << 3)).toBe(1 << 3);
  });

  it("claim gives the highest priority (lowest id on ties), clears pending, and completion re-arms a level source", () => {
    const { plic, harts } = setup();
    for (const [s, prio] of [[5, 3], [7, 3], [9, 6]] as const) plic.store(4 * s, 4, prio);
    plic.store(ENABLE(0), 4, (1 << 5) | (1 << 7) | (1 << 9));
    for (const s of [5, 7, 9]) plic.setLevel(s, true);
    expect(plic.load(CLAIM(0), 4)).toBe(9);
    expect(plic.load(CLAIM(0), 4)).toBe(5);
    expect(plic.load(CLAIM(0), 4)).toBe(7);
    expect(plic.load(CLAIM(0), 4)).toBe(0); // nothing left: claimed ones wait for completion
    expect(harts[0]!.mipLines & MIP_MEIP).toBe(0);
    plic.setLevel(5, false);
    plic.store(CLAIM(0), 4, 5); // complete 5: its line is low, so it stays quiet
    plic.store(CLAIM(0), 4, 9); // complete 9: still high, pending again
    expect(harts[0]!.mipLines & MIP_MEIP).toBe(MIP_MEIP);
    expect(plic.load(CLAIM(0), 4)).toBe(9);
  });

  it("a completion for a source not enabled in that context is ignored", () => {
    const { plic } = setup();
    plic.store(4 * 4, 4, 1);
    plic.store(ENABLE(0), 4, 1 << 4);
    plic.setLevel(4, true);
    expect(plic.load(CLAIM(0), 4)).toBe(4);
    plic.store(CLAIM(2), 4, 4); // hart 1's context never enabled 4
    expect(plic.load(0x1000, 4)! & (1 << 4)).toBe(0); // still held by the gateway
  });

  it("keeps priorities within 0..7, source 0 unusable, and survives save/restore", () => {
    const { plic } = setup();
    plic.store(4 * 2, 4, 99);
    expect(plic.load(4 * 2, 4)).toBe(7);
    plic.store(ENABLE(0), 4, 0xffffffff);
    expect(plic.load(ENABLE(0), 4)! & 1).toBe(0);
    plic.setLevel(2, true);
    const saved = plic.save();
    const other = setup();
    other.plic.restore(saved);
    expect(other.harts[0]!.mipLines & MIP_MEIP).toBe(MIP_MEIP);
    expect(other.plic.load(CLAIM(0), 4)).toBe(2);
    expect(() => plic.setLevel(0, true)).toThrow(/out of range/);
  });

  it("the UART's interrupt reaches the guest through the PLIC (source 10)", () => {
    const p = new Partition({ memoryBytes: 1 << 20, clock: new ManualClock() });
    p.plic.store(4 * 10, 4, 1);
    p.plic.store(ENABLE(1), 4, 1 << 10);
    p.uart.store(1, 1, 1); // IER: receive interrupts
    p.consoleInput(Uint8Array.of(0x61));
    expect(p.harts[0]!.mipLines & MIP_SEIP).toBe(MIP_SEIP);
    expect(p.plic.load(CLAIM(1), 4)).toBe(10);
    p.uart.load(0, 1); // read the byte: the line drops
    p.plic.store(CLAIM(1), 4, 10);
    expect(p.harts[0]!.mipLines & MIP_SEIP).toBe(0);
  });
});
