import { createHash } from "node:crypto";
import { parseElf } from "@hyperfleet/riscv";
import { describe, expect, it } from "vitest";
import { guestElf } from "./guests.js";
import { ManualClock } from "../src/clock.js";
import { Partition } from "../src/partition.js";
import { restorePartition, restorePartitionInto, savePartition } from "../src/saved-state.js";
import { concat, decodeSnapshot, encodeSnapshot, snapshotInfo, SnapshotError } from "../src/snapshot.js";



interface Run {
  p: Partition;
  clock: ManualClock;
  out: number[];
}

function start(): Run {
  const clock = new ManualClock(1000);
  const out: number[] = [];
  const p = new Partition({ memoryBytes: 16 << 20, vcpus: 1, bootargs: "rate=20000 ws=4 seconds=3", clock, onConsole: (b) => out.push(...b) });
  p.load(parseElf(guestElf("dirtier")));
  return { p, clock, out };
}

/** Deterministic progress: each step runs a batch and moves guest time by 0.25 ms. */
function advance(r: Run, steps: number): void {
  for (let i = 0; i < steps && r.p.halted === undefined; i++) {
    r.p.step(5000);
    r.clock.advance(0.25);
  }
}

function memoryHash(p: Partition): string {
  return createHash("sha256").update(p.guest.read(p.guest.base, p.memoryBytes)).digest("hex");
}

const text = (bytes: number[]) => new TextDecoder().decode(Uint8Array.from(bytes));

describe("saved-state - save and restore a whole partition", () => {
  it("save, restore, continue: same console output and same memory as an uninterrupted run", () => {
    const whole = start();
    advance(whole, 16_000);
    expect(whole.p.halted?.code).toBe(0);

    const first = start();
    advance(first, 5_000); // about 1.25 s of guest time: mid-run, with memory dirtied
    const file = concat(savePartition(first.p));
    const clock = new ManualClock(first.clock.now());
    const out = [...first.out];
    const restored = restorePartition(file, { clock, onConsole: (b) => out.push(...b) });
    const second: Run = { p: restored, clock, out };
    advance(second, 11_000);

    expect(second.p.halted).toEqual(whole.p.halted);
    expect(text(second.out)).toBe(text(whole.out));
    expect(text(whole.out)).toContain("dirtier: heartbeat 3");
    expect(memoryHash(second.p)).toBe(memoryHash(whole.p));
    expect(second.p.instructions).toBe(whole.p.instructions);
  });

  it("restoring into a partition built beforehand continues exactly like a fresh restore", () => {
    const whole = start();
    advance(whole, 16_000);
    const first = start();
    advance(first, 5_000);
    const memory = concat(savePartition(first.p));
    const state = concat(savePartition(first.p, { memory: false }));
    // The incoming side of a migration: the partition exists first, memory arrives, then the state.
    const clock = new ManualClock(first.clock.now());
    const out = [...first.out];
    const shell = new Partition({ memoryBytes: 16 << 20, vcpus: 1, bootargs: "rate=20000 ws=4 seconds=3", clock, onConsole: (b) => out.push(...b) });
    const carrier = restorePartition(memory, { clock: new ManualClock(0) });
    for (let g = 0; g < carrier.ept.pages; g++) {
      const page = carrier.guest.page(g);
      if (page !== undefined) shell.guest.write(shell.guest.base + g * 4096, page);
    }
    restorePartitionInto(shell, state, { memoryInPlace: true });
    advance({ p: shell, clock, out }, 11_000);
    expect(shell.halted).toEqual(whole.p.halted);
    expect(text(out)).toBe(text(whole.out));
    expect(memoryHash(shell)).toBe(memoryHash(whole.p));
  });

  it("restoring into a partition of another shape is refused, naming the difference", () => {
    const first = start();
    advance(first, 100);
    const state = concat(savePartition(first.p, { memory: false }));
    const clock = new ManualClock(0);
    const small = new Partition({ memoryBytes: 8 << 20, vcpus: 1, bootargs: "rate=20000 ws=4 seconds=3", clock });
    expect(() => restorePartitionInto(small, state, { memoryInPlace: true })).toThrow(/memory 16777216 bytes, the partition has 8388608/);
    const two = new Partition({ memoryBytes: 16 << 20, vcpus: 2, bootargs: "rate=20000 ws=4 seconds=3", clock });
    expect(() => restorePartitionInto(two, state, { memoryInPlace: true })).toThrow(/1 vCPUs, the partition has 2/);
    const other = new Partition({ memoryBytes: 16 << 20, vcpus: 1, bootargs: "rate=1", clock });
    expect(() => restorePartitionInto(other, state, { memoryInPlace: true })).toThrow(/other bootargs/);
  });

  it("restored guest time continues from the saved instant, without a jump", () => {
    const r = start();
    advance(r, 2000);
    const saved = r.p.mtime();
    const later = new ManualClock(987_654); // a different host clock altogether
    const p = restorePartition(concat(savePartition(r.p)), { clock: later });
    expect(p.mtime()).toBe(saved);
    later.advance(1);
    expect(p.mtime()).toBe(saved + 10_000);
  });

  it("untouched and all-zero pages are left out of the file", () => {
    const r = start();
    advance(r, 10);
    const file = concat(savePartition(r.p));
    const memory = decodeSnapshot(file).get("memory")!;
    expect(memory.kind).toBe("binary");
    // 16 MiB of RAM, a few pages touched: the file is a small fraction of it
    expect(file.length).toBeLessThan(1 << 20);
  });
});

describe("saved-state - bad files are refused with a clear error", () => {
  const good = (): Uint8Array => {
    const r = start();
    advance(r, 100);
    return concat(savePartition(r.p));
  };
  const restore = (file: Uint8Array) => () => restorePartition(file, { clock: new ManualClock() });

  it("bad magic", () => {
    const f = good();
    f[0] = 0x00;
    expect(restore(f)).toThrow(/not a Hyperfleet snapshot \(bad magic\)/);
  });

  it("a newer major or minor version", () => {
    const f = good();
    new DataView(f.buffer).setUint16(8, 2, true);
    new DataView(f.buffer).setUint16(10, 0, true);
    expect(restore(f)).toThrow(/format 2\.0 is not readable/);
    const g = good();
    new DataView(g.buffer).setUint16(10, 7, true);
    expect(restore(g)).toThrow(/format 1\.7 is not readable/);
  });

  it("truncated", () => {
    const f = good();
    expect(restore(f.subarray(0, f.length - 100))).toThrow(SnapshotError);
    expect(restore(f.subarray(0, f.length - 100))).toThrow(/truncated/);
    expect(restore(f.subarray(0, 12))).toThrow(/truncated/);
  });

  it("a flipped byte anywhere", () => {
    const f = good();
    f[Math.floor(f.length / 2)]! ^= 0x40;
    expect(restore(f)).toThrow(/corrupt: .*checksum mismatch/);
  });

  it("trailing garbage", () => {
    const f = good();
    expect(restore(concat([f, Uint8Array.of(1, 2, 3)]))).toThrow(/bytes after its end/);
  });

  it("a well-formed file missing a section, or with a field of the wrong type", () => {
    const sections = [...decodeSnapshot(good()).values()];
    const noVcpu = concat(encodeSnapshot(sections.filter((s) => s.id !== "vcpu/0")));
    expect(restore(noVcpu)).toThrow(/no vcpu\/0 section/);
    const badField = sections.map((s) => (s.id === "partition" && s.kind === "json" ? { ...s, value: { ...(s.value as object), vcpus: "four" } } : s));
    expect(restore(concat(encodeSnapshot(badField)))).toThrow(/section partition: field vcpus is missing or not a number/);
  });

  it("snapshotInfo reads the partition section alone; damage elsewhere is left to the full decode", () => {
    const f = good();
    f[f.length - 100]! ^= 0x01; // inside the memory section, the last one
    const info = snapshotInfo(f);
    expect(info.id).toBe("partition");
    expect(info.kind === "json" && (info.value as { memoryBytes: number }).memoryBytes).toBe(16 << 20);
    expect(() => decodeSnapshot(f)).toThrow(/checksum mismatch/);
    expect(() => snapshotInfo(f.subarray(0, f.length - 1))).toThrow(/truncated/);
    const g = good();
    g[40]! ^= 0x01; // inside the partition section itself
    expect(() => snapshotInfo(g)).toThrow(/section partition checksum mismatch/);
  });

  it("a memory section that disagrees with the partition size", () => {
    const sections = [...decodeSnapshot(good()).values()].map((s) =>
      s.id === "memory" && s.kind === "binary" ? { ...s, data: s.data.subarray(0, s.data.length - 4096) } : s,
    );
    expect(restore(concat(encodeSnapshot(sections)))).toThrow(/section memory: shorter than its bitmap says/);
  });
});
