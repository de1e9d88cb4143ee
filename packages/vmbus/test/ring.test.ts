/**
 * The root's view of a VMBus ring against a plain model of the guest's side (the C SDK's rules):
 * packets in order and intact across many wrap-arounds, scattered host frames, the dirty log, and
 * every broken rule a guest could try refused without touching memory outside the ring.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PAGE_SIZE } from "@hyperfleet/hypervisor";
import { align8, Ring, RingError, type Packet } from "../src/index.js";

/** A ring half over scattered frames of a shared memory, and the guest's side of it as plain code. */
function setup(pages = 3, frames = [5, 2, 7, 3, 9, 1].slice(0, pages)) {
  const memory = new Uint8Array(new SharedArrayBuffer(12 * PAGE_SIZE));
  const dirty = new Set<number>();
  const gpns = frames.map((_, i) => 100 + i);
  const dataBytes = (pages - 1) * PAGE_SIZE;
  const header = new DataView(memory.buffer, frames[0]! * PAGE_SIZE, 16);
  header.setUint32(12, dataBytes, true);
  const at = (offset: number): number => frames[1 + Math.floor(offset / PAGE_SIZE)]! * PAGE_SIZE + (offset % PAGE_SIZE);
  const guest = {
    header,
    /** The guest writes a packet (false when it does not fit), as the SDK does. */
    write(p: Packet): boolean {
      const w = header.getUint32(0, true);
      const r = header.getUint32(4, true);
      const used = w >= r ? w - r : dataBytes - r + w;
      const bytes = 16 + align8(p.payload.length);
      if (bytes > dataBytes - used - 8) return false;
      const out = new Uint8Array(bytes);
      const v = new DataView(out.buffer);
      v.setUint32(0, p.payload.length, true);
      v.setUint16(4, p.type, true);
      v.setUint16(6, p.flags, true);
      v.setUint32(8, p.txid >>> 0, true);
      v.setUint32(12, Math.floor(p.txid / 2 ** 32), true);
      out.set(p.payload, 16);
      for (let i = 0; i < bytes; i++) memory[at((w + i) % dataBytes)] = out[i]!;
      header.setUint32(0, (w + bytes) % dataBytes, true);
      return true;
    },
    /** The guest reads a packet, or undefined. */
    read(): Packet | undefined {
      const w = header.getUint32(0, true);
      const r = header.getUint32(4, true);
      if (w === r) return undefined;
      const byte = (i: number): number => memory[at((r + i) % dataBytes)]!;
      const u32 = (i: number): number => (byte(i) | (byte(i + 1) << 8) | (byte(i + 2) << 16) | (byte(i + 3) << 24)) >>> 0;
      const length = u32(0);
      const payload = Uint8Array.from({ length }, (_, i) => byte(16 + i));
      header.setUint32(4, (r + 16 + align8(length)) % dataBytes, true);
      return { type: u32(4) & 0xffff, flags: u32(4) >>> 16, txid: u32(8) + u32(12) * 2 ** 32, payload };
    },
  };
  const ring = new Ring({ memory, frames, gpns, markDirty: (g) => dirty.add(g) });
  return { memory, ring, guest, dirty, dataBytes, frames };
}

const packet = (n: number, length: number): Packet => ({
  type: (n % 5) + 1,
  flags: n & 0xff,
  txid: n * 2 ** 33 + 7,
  payload: Uint8Array.from({ length }, (_, i) => (n * 31 + i) & 0xff),
});

describe("ring - the root reads what the guest writes", () => {
  it("an empty ring has no packet; one written is read intact, then consumed", () => {
    const { ring, guest } = setup();
    expect(ring.peek()).toBeUndefined();
    expect(guest.write(packet(1, 13))).toBe(true);
    const got = ring.peek()!;
    expect(got.packet).toEqual(packet(1, 13));
    expect(got.bytes).toBe(16 + 16);
    expect(ring.peek()!.packet).toEqual(packet(1, 13)); // peek does not consume
    ring.consume(got.bytes);
    expect(ring.peek()).toBeUndefined();
    expect(guest.header.getUint32(4, true)).toBe(32);
  });

  it("packets of every size keep their order and bytes across many wrap-arounds", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 20, maxLength: 120 }), (sizes) => {
        const { ring, guest } = setup();
        const pending: Packet[] = [];
        let n = 0;
        for (const size of sizes) {
          const p = packet(n++, size);
          while (!guest.write(p)) {
            const got = ring.peek()!;
            expect(got.packet).toEqual(pending.shift());
            ring.consume(got.bytes);
          }
          pending.push(p);
        }
        for (let got = ring.peek(); got !== undefined; got = ring.peek()) {
          expect(got.packet).toEqual(pending.shift());
          ring.consume(got.bytes);
        }
        expect(pending).toEqual([]);
      }),
      { numRuns: 15, seed: 7 },
    );
  }, 30_000);
});

describe("ring - the guest reads what the root writes", () => {
  it("the root fills the ring to 8 bytes short, then waits for room; everything arrives in order across wrap-arounds", () => {
    const { ring, guest, dataBytes } = setup();
    let sent = 0;
    let received = 0;
    for (let round = 0; round < 50; round++) {
      while (ring.write(packet(sent, (sent * 37) % 700))) sent++;
      expect(ring.free).toBeLessThan(16 + align8(((sent * 37) % 700)));
      expect(ring.used).toBeLessThanOrEqual(dataBytes - 8);
      // the guest takes a few
      for (let k = 0; k < 3; k++) expect(guest.read()).toEqual(packet(received++, (received - 1) * 37 % 700));
    }
    for (let p = guest.read(); p !== undefined; p = guest.read()) expect(p).toEqual(packet(received++, (received - 1) * 37 % 700));
    expect(received).toBe(sent);
    expect(sent).toBeGreaterThan(100);
  });

  it("every page the root writes is marked dirty, the header included", () => {
    const { ring, dirty } = setup(4);
    ring.write(packet(1, 5000)); // spans data pages 1 and 2
    expect([...dirty].sort()).toEqual([100, 101, 102]);
  });

  it("a packet that could never fit is refused with a reason; one that does not fit now waits", () => {
    const { ring, dataBytes } = setup();
    expect(() => ring.write(packet(1, dataBytes))).toThrow(/can never fit/);
    expect(ring.fits(dataBytes - 24)).toBe(true);
    expect(ring.write(packet(2, dataBytes - 24))).toBe(true);
    expect(ring.write(packet(3, 0))).toBe(false);
  });
});

describe("ring - a guest that breaks the rules", () => {
  it("refuses a ring whose data size is not what its pages hold", () => {
    const memory = new Uint8Array(new SharedArrayBuffer(4 * PAGE_SIZE));
    expect(() => new Ring({ memory, frames: [0, 1, 2], gpns: [0, 1, 2], markDirty: () => {} })).toThrow(/data size 0, its pages hold 8192/);
  });

  it("refuses indices outside the data area or not multiples of 8", () => {
    const { ring, guest, dataBytes } = setup();
    guest.header.setUint32(0, dataBytes + 8, true);
    expect(() => ring.peek()).toThrow(RingError);
    guest.header.setUint32(0, 12, true);
    expect(() => ring.peek()).toThrow(/not a multiple of 8/);
  });

  it("refuses a packet longer than what the ring holds, however large its length field", () => {
    const { ring, guest, memory, frames } = setup();
    guest.write(packet(1, 8));
    for (const length of [9, 4096, 0x7fff_fff9, 0xffff_ffff]) {
      new DataView(memory.buffer, frames[1]! * PAGE_SIZE, 4).setUint32(0, length, true);
      expect(() => ring.peek()).toThrow(/a packet of \d+ bytes, the ring holds 8/);
    }
  });
});
