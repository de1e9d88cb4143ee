/**
 * VM workers as the root drives them: real worker threads, guest memory shared with the root.
 * (Imports the built package: the worker runs the compiled vm-worker.js.)
 */
import { afterEach, describe, expect, it } from "vitest";
import { guestElf } from "./guests.js";
import { concat, countDirty, decodeSnapshot, FramePool, PAGE_SIZE, VmError, VmWorker, WorkerState } from "../dist/index.js";



const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const vms: VmWorker[] = [];
afterEach(async () => {
  await Promise.all(vms.splice(0).map((vm) => vm.stop().catch(() => undefined)));
});

async function dirtier(bootargs: string, pool = new FramePool(64 << 20), out?: string[]): Promise<VmWorker> {
  const vm = await VmWorker.start({
    pool,
    memoryBytes: 32 << 20,
    image: guestElf("dirtier"),
    bootargs,
    onConsole: (b) => out?.push(new TextDecoder().decode(b)),
  });
  vms.push(vm);
  return vm;
}

describe("vm-worker - pause and resume", () => {
  it("pause returns once the vCPUs have stopped: no instruction and no guest time passes while paused", async () => {
    const vm = await dirtier("rate=max ws=4");
    await sleep(100);
    await vm.pause();
    const a = await vm.stats();
    await sleep(150);
    const b = await vm.stats();
    expect(b.instructions).toBe(a.instructions);
    expect(b.mtimeTicks).toBe(a.mtimeTicks);
    await vm.resume();
    await sleep(100);
    const c = await vm.stats();
    expect(c.instructions).toBeGreaterThan(b.instructions);
    // guest time went on from where it stood: about 100 ms more, not the 250 ms of host time
    expect(c.mtimeTicks - b.mtimeTicks).toBeLessThan(2_000_000);
    expect(c.mtimeTicks).toBeGreaterThan(b.mtimeTicks);
  });

  it("guest memory stays readable from the root while the vCPUs run", async () => {
    const vm = await dirtier("rate=max ws=4");
    await sleep(50);
    // the dirtier writes a running counter into the first word of its pages: read them twice
    const firstWords = () => Array.from({ length: vm.ept.pages }, (_, g) => {
      const page = vm.guest.page(g);
      return page === undefined ? 0 : new DataView(page.buffer, page.byteOffset, 4).getUint32(0, true);
    });
    const a = firstWords();
    await sleep(50);
    const b = firstWords();
    const changed = a.filter((v, g) => v !== b[g]).length;
    expect(changed).toBeGreaterThan(100);
  });
});

describe("vm-worker - console delivery", () => {
  it("once the console has settled after a pause, nothing the guest printed is still on its way", async () => {
    const out: string[] = [];
    const vm = await dirtier("rate=20000 ws=2", undefined, out);
    for (let i = 0; i < 14; i++) { // about 2.5 s of guest time: a heartbeat a guest second
      await sleep(100 + 50 * (i % 4));
      await (i % 2 === 0 ? vm.pause() : vm.freeze().then(() => undefined));
      expect(await vm.consoleSettled()).toBe(true);
      const seen = out.length;
      await sleep(30);
      expect(out.length, `pause ${i + 1}`).toBe(seen);
      if (i % 2 === 1) await vm.stopDirtyLog();
      await vm.resume();
      if (i % 2 === 0) await vm.startDirtyLog();
    }
    const beats = [...out.join("").matchAll(/dirtier: heartbeat (\d+)/g)].map((m) => Number(m[1]));
    expect(beats.length).toBeGreaterThanOrEqual(2);
    beats.forEach((n, i) => expect(n).toBe(i + 1));
  });
});

describe("vm-worker - the fence", () => {
  it("past its fence the guest runs no instruction, until the fence moves later again", async () => {
    const vm = await dirtier("rate=max ws=1");
    const advancing = async (): Promise<boolean> => {
      const a = (await vm.stats()).instructions;
      await new Promise((r) => setTimeout(r, 60));
      return (await vm.stats()).instructions > a;
    };
    expect(await advancing()).toBe(true);
    vm.fence(Date.now() + 50);
    await new Promise((r) => setTimeout(r, 100));
    const stoppedAt = (await vm.stats()).instructions;
    await new Promise((r) => setTimeout(r, 150));
    expect((await vm.stats()).instructions).toBe(stoppedAt);
    vm.fence(Date.now() + 60_000);
    expect(await advancing()).toBe(true);
    vm.fence(null);
    expect(await advancing()).toBe(true);
  });
});

describe("vm-worker - dirty logging across threads", () => {
  it("no page whose contents changed is missing from the union of the rounds' bitmaps", async () => {
    const vm = await dirtier("rate=max ws=8");
    await sleep(50);
    await vm.startDirtyLog();
    await vm.getAndClearDirtyLog();
    await vm.pause();
    // baseline: every page's bytes, taken while the vCPUs are stopped
    const pages = vm.ept.pages;
    const baseline = Array.from({ length: pages }, (_, g) => vm.guest.page(g)?.slice());
    await vm.resume();
    const union = new Int32Array(vm.ept.dirty.length);
    for (let round = 0; round < 8; round++) {
      await sleep(15);
      const bitmap = await vm.getAndClearDirtyLog();
      for (let w = 0; w < union.length; w++) union[w]! |= bitmap[w]!;
    }
    await vm.pause();
    const last = await vm.getAndClearDirtyLog();
    for (let w = 0; w < union.length; w++) union[w]! |= last[w]!;
    let changed = 0;
    for (let g = 0; g < pages; g++) {
      const now = vm.guest.page(g);
      const before = baseline[g];
      const same = now === undefined ? before === undefined : before !== undefined && Buffer.from(now).equals(Buffer.from(before));
      if (!same) {
        changed++;
        expect((union[g >>> 5]! >>> (g & 31)) & 1, `page ${g} changed but was never logged`).toBe(1);
      }
    }
    expect(changed).toBeGreaterThan(100);
    expect(vm.ept.writeProtectFaults).toBeGreaterThan(0);
  });
});

describe("vm-worker - save and restore", () => {
  it("a VM saved in one worker continues in another; its console goes on where it stopped", async () => {
    const out: string[] = [];
    const pool = new FramePool(64 << 20);
    const vm = await dirtier("rate=5000 ws=4 seconds=3", pool, out);
    await sleep(1300);
    await vm.pause();
    const snapshot = concat(await vm.save());
    await vm.stop();
    const before = out.join("");
    expect(before).toContain("dirtier: heartbeat 1");
    expect(before).not.toContain("dirtier: done");
    const after: string[] = [];
    const restored = await VmWorker.start({ pool, memoryBytes: 0, snapshot, onConsole: (b) => after.push(new TextDecoder().decode(b)) });
    vms.push(restored);
    const halt = await restored.exited;
    expect(halt.code).toBe(0);
    const lines = (before + after.join("")).split("\n").filter((l) => l.startsWith("dirtier: heartbeat"));
    expect(lines.map((l) => l.replace(/ \(.*\)/, ""))).toEqual(["dirtier: heartbeat 1", "dirtier: heartbeat 2", "dirtier: heartbeat 3"]);
    expect(after.join("")).toContain("dirtier: done");
    // no jump in guest time: every heartbeat reports about 5,000 pages/s
    for (const l of lines) expect(Number(/, (\d+) pages\/s/.exec(l)![1])).toBeGreaterThan(4000);
  });

  it("save needs a paused VM", async () => {
    const vm = await dirtier("rate=1000 ws=1");
    await expect(vm.save()).rejects.toThrow(/paused/);
  });

  it("frames come from the shared pool, and go back when the root releases them", async () => {
    const pool = new FramePool(64 << 20);
    const vm = await dirtier("rate=max ws=2", pool);
    await sleep(50);
    await vm.stop();
    const used = pool.used;
    expect(used).toBeGreaterThan((2 << 20) / PAGE_SIZE);
    vm.guest.releaseAll();
    expect(pool.used).toBe(0);
  });
});

describe("vm-worker - a migration's switchover through shared memory", () => {
  it("freeze stops the vCPUs and hands over the dirty log and the state that save() would give", async () => {
    const vm = await dirtier("rate=max ws=4");
    await sleep(50);
    await vm.startDirtyLog();
    await vm.getAndClearDirtyLog();
    await sleep(60);
    const frozen = await vm.freeze();
    expect(vm.state).toBe(WorkerState.Paused);
    expect(frozen.stoppedAfterMs).toBeLessThan(1000);
    // the guest wrote pages since the last sync: they are in the handed-over bitmap, and it was cleared
    expect(countDirty(frozen.dirty)).toBeGreaterThan(0);
    expect(countDirty(await vm.getAndClearDirtyLog())).toBe(0);
    // the same vCPU and device state as the message path gives, and nothing runs any more
    const sections = (file: Uint8Array) => [...decodeSnapshot(file).values()];
    expect(sections(frozen.state)).toEqual(sections(concat(await vm.save({ memory: false }))));
    const a = await vm.stats();
    await sleep(60);
    const b = await vm.stats();
    expect(b.instructions).toBe(a.instructions);
    expect(b.mtimeTicks).toBe(a.mtimeTicks);
    expect(await vm.resume()).toBeLessThan(1000);
    await sleep(60);
    expect((await vm.stats()).instructions).toBeGreaterThan(b.instructions);
  });

  it("a waiting worker takes its state from shared memory, refuses a bad one, and runs on from the good one", async () => {
    const pool = new FramePool(64 << 20);
    const out: string[] = [];
    const vm = await dirtier("rate=5000 ws=2", pool, out);
    await sleep(1200);
    await vm.startDirtyLog();
    const { state } = await vm.freeze();
    await vm.stop();
    const later: string[] = [];
    const incoming = await VmWorker.start({
      pool, memoryBytes: 32 << 20, bootargs: "rate=5000 ws=2", ept: vm.ept, awaitState: true, startPaused: true,
      onConsole: (b) => later.push(new TextDecoder().decode(b)),
    });
    vms.push(incoming);
    const bad = state.slice();
    bad[bad.length - 1]! ^= 0xff;
    await expect(incoming.provideState(bad)).rejects.toThrow(VmError);
    await incoming.provideState(state);
    expect(incoming.state).toBe(WorkerState.Paused);
    const ranAfter = await incoming.resume();
    expect(ranAfter).toBeLessThan(1000);
    await sleep(1300);
    const beats = [...(out.join("") + later.join("")).matchAll(/dirtier: heartbeat (\d+)/g)].map((m) => Number(m[1]));
    expect(beats.length).toBeGreaterThanOrEqual(2);
    beats.forEach((n, i) => expect(n).toBe(i + 1)); // no reset, no gap: it went on where it stopped
    expect(later.join("")).toMatch(/heartbeat/);
  });
});
