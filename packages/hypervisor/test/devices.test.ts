import { MIP_MSIP, MIP_MTIP, MIP_STIP } from "@hyperfleet/riscv";
import { describe, expect, it } from "vitest";
import { Clint, MTIMECMP_DISARMED } from "../src/devices/clint.js";
import { TestDevice, type PowerRequest } from "../src/devices/test-device.js";
import { Uart16550 } from "../src/devices/uart16550.js";
import { Partition } from "../src/partition.js";
import { ManualClock } from "../src/clock.js";

describe("uart16550 - registers", () => {
  it("sends THR bytes out and reports THR empty", () => {
    const out: number[] = [];
    const uart = new Uart16550(0, (b) => out.push(b));
    uart.store(0, 1, 0x41);
    uart.store(0, 1, 0x142); // only the low byte counts
    expect(out).toEqual([0x41, 0x42]);
    expect(uart.load(5, 1)! & 0x60).toBe(0x60);
  });

  it("queues received bytes, reports data ready, and reads them in order", () => {
    const uart = new Uart16550(0, () => {});
    expect(uart.load(5, 1)! & 1).toBe(0);
    uart.receive(new Uint8Array([1, 2]));
    expect(uart.load(5, 1)! & 1).toBe(1);
    expect(uart.load(0, 1)).toBe(1);
    expect(uart.load(0, 1)).toBe(2);
    expect(uart.load(5, 1)! & 1).toBe(0);
  });

  it("reaches the divisor latch through DLAB and leaves THR alone", () => {
    const out: number[] = [];
    const uart = new Uart16550(0, (b) => out.push(b));
    uart.store(3, 1, 0x83);
    uart.store(0, 1, 0x01);
    uart.store(1, 1, 0x00);
    expect(uart.load(0, 1)).toBe(1);
    uart.store(3, 1, 0x03);
    expect(out).toEqual([]);
  });

  it("raises its interrupt line for received data when enabled", () => {
    const levels: boolean[] = [];
    const uart = new Uart16550(0, () => {}, (l) => levels.push(l));
    uart.store(1, 1, 0x01);
    uart.receive(new Uint8Array([7]));
    expect(levels.at(-1)).toBe(true);
    expect(uart.load(2, 1)! & 0x0f).toBe(0x04);
    uart.load(0, 1);
    expect(levels.at(-1)).toBe(false);
  });

  it("refuses accesses wider than a byte", () => {
    const uart = new Uart16550(0, () => {});
    expect(uart.load(0, 4)).toBeUndefined();
    expect(uart.store(0, 2, 0)).toBe(false);
  });
});

describe("clint - timer and software interrupts", () => {
  const harts = () => {
    const m = new Partition({ memoryBytes: 1 << 20, vcpus: 2, clock: new ManualClock() });
    return m.harts;
  };

  it("mtime counts 10 MHz ticks of the injected clock, read as two words", () => {
    let t = 0;
    const clint = new Clint(0, harts(), () => t);
    t = 0x1_2345_6789;
    expect(clint.load(0xbff8, 4)! >>> 0).toBe(0x2345_6789);
    expect(clint.load(0xbffc, 4)).toBe(1);
  });

  it("resets mtimecmp to 0 as QEMU does, so MTIP is high until the guest sets a compare", () => {
    let t = 100;
    const hs = harts();
    const clint = new Clint(0, hs, () => t);
    clint.update();
    expect(hs[0]!.mipLines & MIP_MTIP).toBe(MIP_MTIP);
    expect(clint.load(0x4000, 4)).toBe(0);
    clint.store(0x4004, 4, 0);
    clint.store(0x4000, 4, 150);
    expect(hs[0]!.mipLines & MIP_MTIP).toBe(0);
    expect(clint.nextDeadline()).toBe(150);
    t = 150;
    clint.update();
    expect(hs[0]!.mipLines & MIP_MTIP).toBe(MIP_MTIP);
    expect(hs[1]!.mipLines & MIP_MTIP).toBe(MIP_MTIP); // never set: still 0
    clint.store(0x4004, 4, -1); // push the compare far away: the line drops at once
    expect(hs[0]!.mipLines & MIP_MTIP).toBe(0);
  });

  it("nextDeadline names only compares still ahead", () => {
    let t = 1000;
    const clint = new Clint(0, harts(), () => t);
    expect(clint.nextDeadline()).toBe(Infinity); // both at 0: already passed
    clint.setTimer(1, 5000);
    expect(clint.nextDeadline()).toBe(5000);
    t = 6000;
    expect(clint.nextDeadline()).toBe(Infinity);
  });

  it("a disarmed reset (SBI firmware) keeps the line low", () => {
    const hs = harts();
    const clint = new Clint(0, hs, () => 1e9, MIP_STIP, MTIMECMP_DISARMED);
    clint.update();
    expect(hs[0]!.mipLines & (MIP_STIP | MIP_MTIP)).toBe(0);
    expect(clint.load(0x4000, 4)).toBe(-1);
    clint.setTimer(0, 10);
    expect(hs[0]!.mipLines & MIP_STIP).toBe(MIP_STIP);
  });

  it("msip writes drive each hart's MSIP", () => {
    const hs = harts();
    const clint = new Clint(0, hs, () => 0);
    clint.store(4, 4, 1);
    expect(hs[1]!.mipLines & MIP_MSIP).toBe(MIP_MSIP);
    expect(clint.load(4, 4)).toBe(1);
    expect(hs[0]!.mipLines & MIP_MSIP).toBe(0);
    clint.store(4, 4, 0);
    expect(hs[1]!.mipLines & MIP_MSIP).toBe(0);
  });
});

describe("test device - power requests", () => {
  it("decodes pass, fail with code and reset", () => {
    const seen: PowerRequest[] = [];
    const dev = new TestDevice(0, (r) => seen.push(r));
    dev.store(0, 4, 0x5555);
    dev.store(0, 4, (3 << 16) | 0x3333);
    dev.store(0, 4, 0x7777);
    dev.store(0, 4, 0x1234); // nothing
    expect(seen).toEqual([{ kind: "poweroff", code: 0 }, { kind: "poweroff", code: 3 }, { kind: "reset" }]);
  });
});
