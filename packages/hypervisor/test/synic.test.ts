/**
 * The SynIC's hypercalls as a guest makes them (through the hypercall page of a real partition):
 * offers, connect, open and close with every refusal, signals, the root's interrupts, reset and
 * save/restore of the channel table.
 */
import { describe, expect, it } from "vitest";
import {
  HvCall, HypercallDispatcher, ManualClock, SbiExtension, MemoryMap, Partition, restorePartition, savePartition, concat, SbiError, VMBUS_IRQ, type Offer,
} from "../src/index.js";

const offers: Offer[] = [
  { channel: 1, type: 3, instance: 0, param: 0 },
  { channel: 8, type: 1, instance: 0, param: 0 },
  { channel: 16, type: 2, instance: 0, param: 0xc0ffee },
];
const RAM = MemoryMap.ram;
const MiB = 2 ** 20;

function partition(): { p: Partition; call: (code: number, ...args: number[]) => { error: number; value: number }; signals: number[]; tables: number } {
  const p = new Partition({ memoryBytes: 4 * MiB, clock: new ManualClock(), offers });
  const signals: number[] = [];
  const state = { tables: 0 };
  p.synic.onSignal = (c) => signals.push(c);
  p.synic.onChannels = () => state.tables++;
  const page = p.hypercallPage;
  const call = (code: number, ...args: number[]) => {
    args.forEach((a, i) => page.store(4 * i, 4, a));
    page.store(0x18, 4, code);
    return { error: page.load(0x1c, 4)!, value: page.load(0x20, 4)! >>> 0 };
  };
  return { p, call, signals, get tables() { return state.tables; } };
}

describe("synic - hypercalls", () => {
  it("QUERY writes the offers into guest memory and says how many there are, even when the buffer holds fewer", () => {
    const { p, call } = partition();
    expect(call(HvCall.Query, RAM + 0x1000, 64)).toEqual({ error: 0, value: 3 });
    const v = new DataView(p.guest.read(RAM + 0x1000, 48).buffer);
    expect([0, 1, 2].map((i) => [v.getUint32(16 * i, true), v.getUint32(16 * i + 4, true), v.getUint32(16 * i + 12, true)])).toEqual([[1, 3, 0], [8, 1, 0], [16, 2, 0xc0ffee]]);
    expect(call(HvCall.Query, RAM + 0x3000, 16)).toEqual({ error: 0, value: 3 });
    expect(new DataView(p.guest.read(RAM + 0x3010, 4).buffer).getUint32(0, true)).toBe(0); // only one fitted
    expect(call(HvCall.Query, 0x1000, 64).error).toBe(SbiError.InvalidAddress);
  });

  it("OPEN and CLOSE: the table follows, and every bad request is refused with its code", () => {
    const t = partition();
    const { call, p } = t;
    expect(call(HvCall.Open, 8, RAM + 0x10000, 8).error).toBe(0);
    expect(p.synic.channels).toEqual([{ channel: 8, ringGpa: RAM + 0x10000, ringPages: 8 }]);
    expect(t.tables).toBe(1);
    expect(call(HvCall.Open, 8, RAM + 0x20000, 8).error).toBe(SbiError.AlreadyStarted);
    expect(call(HvCall.Open, 9, RAM + 0x20000, 8).error).toBe(SbiError.InvalidParam); // not offered
    expect(call(HvCall.Open, 1, RAM + 0x10800, 4).error).toBe(SbiError.InvalidParam); // unaligned
    expect(call(HvCall.Open, 1, RAM + 0x20000, 5).error).toBe(SbiError.InvalidParam); // odd
    expect(call(HvCall.Open, 1, RAM + 0x20000, 2).error).toBe(SbiError.InvalidParam); // too small
    expect(call(HvCall.Open, 1, RAM + 0x14000, 4).error).toBe(SbiError.InvalidParam); // overlaps channel 8's
    expect(call(HvCall.Open, 1, RAM + 4 * MiB - 0x2000, 4).error).toBe(SbiError.InvalidAddress); // past RAM
    expect(call(HvCall.Open, 1, RAM + 0x20000, 4).error).toBe(0);
    expect(p.synic.channels.map((c) => c.channel)).toEqual([1, 8]);
    expect(call(HvCall.Close, 8).error).toBe(0);
    expect(call(HvCall.Close, 8).error).toBe(SbiError.AlreadyStopped);
    expect(call(HvCall.Close, 5).error).toBe(SbiError.InvalidParam);
    expect(p.synic.channels.map((c) => c.channel)).toEqual([1]);
    expect(t.tables).toBe(3);
    expect(call(99).error).toBe(SbiError.NotSupported);
  });

  it("S-mode reaches the same calls through the HFVB SBI extension, which the base extension reports", () => {
    const { p } = partition();
    const sbi = new HypercallDispatcher(p);
    expect(sbi.dispatch(0, SbiExtension.Base, 3, [SbiExtension.VmBus, 0, 0, 0, 0, 0])).toEqual({ error: 0, value: 1 });
    expect(sbi.dispatch(0, SbiExtension.VmBus, HvCall.Open, [16, RAM + 0x40000, 4, 0, 0, 0])).toEqual({ error: 0, value: 0 });
    expect(p.synic.channels.map((c) => c.channel)).toEqual([16]);
  });

  it("SIGNAL reaches the root for open channels only", () => {
    const { call, signals } = partition();
    expect(call(HvCall.Signal, 8).error).toBe(SbiError.InvalidParam);
    call(HvCall.Open, 8, RAM + 0x10000, 8);
    expect(call(HvCall.Signal, 8).error).toBe(0);
    expect(signals).toEqual([8]);
  });

  it("the root's interrupt sets the open channels' flags in the event page and makes the VMBus source pending", () => {
    const { p, call } = partition();
    p.plic.store(4 * VMBUS_IRQ, 4, 1); // priority 1
    p.plic.store(0x2000, 4, 1 << VMBUS_IRQ); // enabled for hart 0's M-mode context
    p.synic.interrupt(1 << 8);
    expect(p.plic.load(0x1000, 4)! & (1 << VMBUS_IRQ)).toBe(0); // not connected: nothing
    expect(call(HvCall.Connect, RAM + 0x8000).error).toBe(0);
    expect(call(HvCall.Connect, RAM + 0x8004).error).toBe(SbiError.InvalidParam);
    call(HvCall.Open, 8, RAM + 0x10000, 8);
    p.synic.interrupt((1 << 8) | (1 << 16)); // 16 is not open
    expect(new DataView(p.guest.read(RAM + 0x8000, 4).buffer).getUint32(0, true)).toBe(1 << 8);
    expect(p.plic.load(0x1000, 4)! & (1 << VMBUS_IRQ)).not.toBe(0);
    // an edge while the source is claimed is not lost: pending again at completion
    expect(p.plic.load(0x200004, 4)).toBe(VMBUS_IRQ);
    p.synic.interrupt(1 << 8);
    expect(p.plic.load(0x1000, 4)! & (1 << VMBUS_IRQ)).toBe(0);
    p.plic.store(0x200004, 4, VMBUS_IRQ);
    expect(p.plic.load(0x1000, 4)! & (1 << VMBUS_IRQ)).not.toBe(0);
  });

  it("the channel table and event page survive save and restore; a reset of the guest forgets them", () => {
    const { p, call } = partition();
    call(HvCall.Connect, RAM + 0x8000);
    call(HvCall.Open, 16, RAM + 0x10000, 16);
    call(HvCall.Open, 1, RAM + 0x30000, 4);
    const q = restorePartition(concat(savePartition(p)), { clock: new ManualClock() });
    expect(q.synic.channels).toEqual(p.synic.channels);
    expect(q.synic.offers).toEqual(offers);
    expect(q.synic.save()).toEqual(p.synic.save());
    p.synic.reset();
    expect(p.synic.channels).toEqual([]);
    expect(p.synic.save().eventPage).toBe(0);
  });
});
