/** The root partition's API over child partitions (the VID), with real VM workers. */
import { guestElf } from "./guests.js";
import { describe, expect, it } from "vitest";
import { RootPartition } from "../dist/index.js";

const MiB = 2 ** 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe("root-partition - child partitions through one API", () => {
  it("create, start, pause, resume, stop, destroy; frames return to the pool", async () => {
    const root = new RootPartition(64 * MiB);
    const vm = root.create({ name: "web-1", memoryBytes: 16 * MiB, bootargs: "rate=max ws=4" });
    expect(vm.state).toBe("created");
    await vm.start({ image: guestElf("dirtier") });
    expect(vm.state).toBe("running");
    for (let i = 0; i < 250 && root.pool.used <= 1024; i++) await sleep(20);
    expect(root.pool.used).toBeGreaterThan(1024); // 4 MiB working set touched
    await vm.pause();
    expect(vm.state).toBe("paused");
    await vm.resume();
    expect(vm.state).toBe("running");
    const halt = await vm.stop(0);
    expect(halt.code).toBe(0);
    expect(vm.state).toBe("halted");
    await root.destroy("web-1");
    expect(root.pool.used).toBe(0);
    expect(root.list()).toEqual([]);
  });

  it("spare VM workers: VMs start from started threads, and the pool refills after each", async () => {
    const root = new RootPartition(64 * MiB, { spareWorkers: 1 });
    try {
      // a spare counts once its thread has loaded its code, never before (its word comes as a message)
      expect(root.spareWorkersReady).toBe(0);
      for (let i = 0; i < 200 && root.spareWorkersReady < 1; i++) await sleep(20);
      expect(root.spareWorkersReady).toBe(1);
      for (const name of ["s-1", "s-2", "s-3"]) {
        const vm = root.create({ name, memoryBytes: 8 * MiB });
        await vm.start({ image: guestElf("hello") });
        const halt = await vm.worker!.exited;
        expect(halt.code, name).toBe(0);
        expect(text(vm.consoleHistory())).toContain("Hello");
        await root.destroy(name);
      }
      // the last take starts a new spare after the refill delay; it comes up in the background (bounded wait)
      for (let i = 0; i < 200 && root.spareWorkersReady < 1; i++) await sleep(20);
      expect(root.spareWorkersReady).toBe(1);
    } finally {
      await root.close();
    }
  });

  it("spare VM workers: a take's replacement waits out the refill delay, so it does not compete with the VM just started", async () => {
    const root = new RootPartition(64 * MiB, { spareWorkers: 1, spareRefillDelayMs: 400 });
    try {
      for (let i = 0; i < 100 && root.spareWorkersReady < 1; i++) await sleep(20);
      expect(root.spareWorkersReady).toBe(1);
      const vm = root.create({ name: "r-1", memoryBytes: 8 * MiB });
      const started = vm.start({ image: guestElf("hello") }); // takes the spare at once
      const takenBy = performance.now();
      await started;
      expect(root.spareWorkersReady).toBe(0);
      await sleep(200);
      expect(root.spareWorkersReady).toBe(0); // no replacement yet
      for (let i = 0; i < 200 && root.spareWorkersReady < 1; i++) await sleep(10);
      expect(root.spareWorkersReady).toBe(1);
      expect(performance.now() - takenBy).toBeGreaterThanOrEqual(395);
      await vm.worker!.exited;
      await root.destroy("r-1");
    } finally {
      await root.close();
    }
  });

  it("admits RAM only up to what the node can promise, and names the shortfall", () => {
    const root = new RootPartition(64 * MiB);
    root.create({ name: "a", memoryBytes: 40 * MiB });
    expect(() => root.create({ name: "b", memoryBytes: 32 * MiB })).toThrow(/needs 32 MiB; the node can promise 23 MiB more/);
    expect(() => root.create({ name: "a", memoryBytes: 1 * MiB })).toThrow(/a partition named a exists/);
    expect(() => root.create({ name: "bad name", memoryBytes: 1 * MiB })).toThrow(/partition name/);
  });

  it("keeps each child's console readable after the fact, and streams it", async () => {
    const root = new RootPartition(32 * MiB);
    const vm = root.create({ name: "hello", memoryBytes: 8 * MiB, bootargs: "x=1" });
    const streamed: string[] = [];
    vm.onConsole((b) => streamed.push(text(b)));
    await vm.start({ image: guestElf("hello") });
    await vm.worker!.exited;
    expect(text(vm.consoleHistory())).toBe('Hello from a Hyperfleet guest!\nhart 0, bootargs: "x=1"\n');
    expect(streamed.join("")).toBe(text(vm.consoleHistory()));
    await root.destroy("hello");
  });

  it("two children on one pool run side by side in their own workers", async () => {
    const root = new RootPartition(64 * MiB);
    const a = root.create({ name: "a", memoryBytes: 16 * MiB, bootargs: "rate=max ws=2" });
    const b = root.create({ name: "b", memoryBytes: 16 * MiB, bootargs: "rate=max ws=2" });
    await Promise.all([a.start({ image: guestElf("dirtier") }), b.start({ image: guestElf("dirtier") })]);
    await sleep(100);
    const [sa, sb] = await Promise.all([a.worker!.stats(), b.worker!.stats()]);
    expect(sa.instructions).toBeGreaterThan(0);
    expect(sb.instructions).toBeGreaterThan(0);
    await Promise.all([root.destroy("a"), root.destroy("b")]);
    expect(root.pool.used).toBe(0);
  });
});
