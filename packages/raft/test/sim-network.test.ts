import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SeededRng } from "../src/rng.js";
import { SimClock, SimClockError } from "../src/sim/clock.js";
import { NETWORK_OPTIONS_CALM, SimNetwork, ratio, type NetworkOptions } from "../src/sim/network.js";

interface Delivery {
  readonly atMs: number;
  readonly from: string;
  readonly to: string;
  readonly payload: number;
}

function setup(options: Partial<NetworkOptions>, seed = 1, ids: readonly string[] = ["a", "b", "c"]) {
  const clock = new SimClock();
  const network = new SimNetwork<number>(clock, new SeededRng(seed), { ...NETWORK_OPTIONS_CALM, ...options });
  const deliveries: Delivery[] = [];
  for (const id of ids) network.addEndpoint(id, (from, payload) => deliveries.push({ atMs: clock.nowMs(), from, to: id, payload }), true);
  return { clock, network, deliveries };
}

describe("clock", () => {
  it("clock - fires timers in due order, equal due times in insertion order", () => {
    const clock = new SimClock();
    const fired: string[] = [];
    clock.setTimer(5, () => fired.push("a5"));
    clock.setTimer(1, () => fired.push("b1"));
    clock.setTimer(5, () => fired.push("c5"));
    clock.setTimer(0, () => fired.push("d0"));
    clock.setTimer(1, () => fired.push("e1"));
    clock.runUntil(100);
    expect(fired).toEqual(["d0", "b1", "e1", "a5", "c5"]);
    expect(clock.nowMs()).toBe(100);
  });

  it("clock - callbacks may set timers; time jumps to each due time", () => {
    const clock = new SimClock();
    const seen: number[] = [];
    const again = (): void => {
      seen.push(clock.nowMs());
      if (seen.length < 4) clock.setTimer(10, again);
    };
    clock.setTimer(3, again);
    expect(clock.runUntil(1000)).toBe(4);
    expect(seen).toEqual([3, 13, 23, 33]);
    expect(clock.step()).toBe(false);
  });

  it("clock - cancelled timers never fire", () => {
    const clock = new SimClock();
    const fired: number[] = [];
    const ids = Array.from({ length: 3000 }, (_, i) => clock.setTimer(i % 17, () => fired.push(i)));
    for (const id of ids) if (id % 3 !== 0) expect(clock.cancel(id)).toBe(true);
    expect(clock.cancel(ids[1]!)).toBe(false);
    expect(clock.pending).toBe(1000);
    clock.runUntil(100);
    expect(fired.length).toBe(1000);
    expect(fired.every((i) => i % 3 === 0)).toBe(true);
  });

  it("clock - rejects bad delays and bounds runUntil", () => {
    const clock = new SimClock();
    expect(() => clock.setTimer(-1, () => {})).toThrow(SimClockError);
    expect(() => clock.setTimer(1.5, () => {})).toThrow(SimClockError);
    const spin = (): void => {
      clock.setTimer(0, spin);
    };
    clock.setTimer(0, spin);
    expect(() => clock.runUntil(10, 100)).toThrow(SimClockError);
  });

  it("clock - fires in (due, seq) order for any schedule (property vs sorted oracle)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(50), fc.boolean()), { maxLength: 200 }), (plan) => {
        const clock = new SimClock();
        const fired: number[] = [];
        const ids = plan.map(([delayMs], i) => clock.setTimer(delayMs, () => fired.push(i)));
        plan.forEach(([, cancel], i) => {
          if (cancel) clock.cancel(ids[i]!);
        });
        clock.runUntil(100);
        const expected = plan
          .map(([delayMs, cancel], i) => ({ delayMs, cancel, i }))
          .filter((t) => !t.cancel)
          .sort((x, y) => x.delayMs - y.delayMs || x.i - y.i)
          .map((t) => t.i);
        expect(fired).toEqual(expected);
      }),
    );
  });
});

describe("network", () => {
  it("network - delivers every packet within the link's delay range", () => {
    const { clock, network, deliveries } = setup({ delayMsMin: 3, delayMsMax: 9 });
    network.setLinkDelay("a", "c", 20, 20);
    for (let i = 0; i < 200; i++) {
      network.send("a", "b", i);
      network.send("a", "c", i);
    }
    clock.runUntil(100);
    const toB = deliveries.filter((d) => d.to === "b");
    expect(toB.length).toBe(200);
    expect(toB.every((d) => d.atMs >= 3 && d.atMs <= 9)).toBe(true);
    expect(new Set(toB.map((d) => d.atMs)).size).toBeGreaterThan(3);
    const toC = deliveries.filter((d) => d.to === "c");
    expect(toC.map((d) => d.atMs)).toEqual(Array(200).fill(20));
    // A fixed delay keeps a link's order; a spread reorders it.
    expect(toC.map((d) => d.payload)).toEqual([...Array(200).keys()]);
    expect(toB.map((d) => d.payload)).not.toEqual([...Array(200).keys()]);
    expect(network.stats.delivered).toBe(400);
  });

  it("network - loses and duplicates packets at about the configured ratios", () => {
    const { clock, network, deliveries } = setup({ lossRatio: ratio(1, 5), duplicateRatio: ratio(1, 10), linkCapacityMax: 100_000 });
    const n = 10_000;
    for (let i = 0; i < n; i++) network.send("a", "b", i);
    clock.runUntil(100);
    expect(network.stats.droppedLoss).toBeGreaterThan(n * 0.17);
    expect(network.stats.droppedLoss).toBeLessThan(n * 0.23);
    const kept = n - network.stats.droppedLoss;
    expect(network.stats.duplicated).toBeGreaterThan(kept * 0.08);
    expect(network.stats.duplicated).toBeLessThan(kept * 0.12);
    expect(deliveries.length).toBe(kept + network.stats.duplicated);
  });

  it("network - a symmetric partition cuts both ways, a one-way partition one way", () => {
    const { clock, network, deliveries } = setup({});
    network.partition(["a"], ["b", "c"]);
    network.send("a", "b", 1);
    network.send("b", "a", 2);
    network.send("b", "c", 3);
    clock.runUntil(50);
    expect(deliveries.map((d) => d.payload)).toEqual([3]);
    network.partition(["a"], ["b"], "oneWay");
    network.send("a", "b", 4);
    network.send("b", "a", 5);
    network.send("a", "c", 6);
    clock.runUntil(100);
    expect(deliveries.map((d) => d.payload).sort()).toEqual([3, 5, 6]);
    expect(network.stats.droppedPartition).toBe(3);
    network.heal();
    network.send("a", "b", 7);
    clock.runUntil(150);
    expect(deliveries.at(-1)?.payload).toBe(7);
  });

  it("network - packets in flight are lost when a partition starts before they land", () => {
    const { clock, network, deliveries } = setup({ delayMsMin: 10, delayMsMax: 10 });
    network.send("a", "b", 1);
    clock.runUntil(5);
    network.partition(["a"], ["b"]);
    clock.runUntil(50);
    expect(deliveries).toEqual([]);
  });

  it("network - a down endpoint neither sends nor receives", () => {
    const { clock, network, deliveries } = setup({ delayMsMin: 10, delayMsMax: 10 });
    network.send("a", "b", 1);
    network.setUp("b", false);
    network.send("b", "a", 2);
    clock.runUntil(50);
    network.setUp("b", true);
    network.send("a", "b", 3);
    clock.runUntil(100);
    expect(deliveries.map((d) => d.payload)).toEqual([3]);
    expect(network.stats.droppedDown).toBe(2);
  });

  it("network - a clogged link holds packets until the clog ends", () => {
    const { clock, network, deliveries } = setup({ delayMsMin: 2, delayMsMax: 2 });
    network.clog("a", "b", 40);
    network.send("a", "b", 1);
    network.send("a", "c", 2);
    clock.runUntil(10);
    network.send("a", "b", 3);
    clock.runUntil(100);
    expect(deliveries.map((d) => [d.payload, d.atMs])).toEqual([[2, 2], [1, 40], [3, 40]]);
    network.send("a", "b", 4);
    clock.runUntil(200);
    expect(deliveries.at(-1)).toEqual({ atMs: 102, from: "a", to: "b", payload: 4 });
  });

  it("network - a link drops packets beyond its capacity", () => {
    const { clock, network, deliveries } = setup({ linkCapacityMax: 3, delayMsMin: 5, delayMsMax: 5 });
    for (let i = 0; i < 5; i++) network.send("a", "b", i);
    clock.runUntil(10);
    expect(deliveries.map((d) => d.payload)).toEqual([0, 1, 2]);
    expect(network.stats.droppedCapacity).toBe(2);
    expect(network.inFlightCount).toBe(0);
  });

  it("network - reports what became of each packet, never from inside send", () => {
    const { clock, network } = setup({ delayMsMin: 5, delayMsMax: 5 });
    const outcomes: string[] = [];
    const note = (tag: string) => (outcome: string) => outcomes.push(`${tag}:${outcome}@${clock.nowMs()}`);
    network.send("a", "b", 1, note("ok"));
    network.partition(["a"], ["c"]);
    network.send("a", "c", 2, note("cut"));
    expect(outcomes).toEqual([]);
    network.heal();
    network.setUp("b", false);
    clock.runUntil(50);
    expect(outcomes.sort()).toEqual(["cut:unreachable@5", "ok:unreachable@5"]);
    network.setUp("b", true);
    network.send("a", "b", 3, note("up"));
    clock.runUntil(100);
    expect(outcomes.at(-1)).toBe("up:delivered@55");
  });

  it("network - random partitions last at least their stability and heal after it", () => {
    const ids = ["n1", "n2", "n3", "n4", "n5"];
    for (const partitionMode of ["uniformSize", "uniformPartition", "isolateSingle"] as const) {
      const { clock, network } = setup(
        {
          partitionMode,
          partitionSymmetry: "symmetric",
          partitionRatio: ratio(1, 4),
          unpartitionRatio: ratio(1, 4),
          partitionStabilityMs: 50,
          unpartitionStabilityMs: 30,
          faultTickMs: 10,
        },
        7,
        ids,
      );
      network.startFaults();
      const spans: { partitioned: boolean; fromMs: number }[] = [];
      let partitionedSideSizes = 0;
      for (let t = 10; t <= 5000; t += 10) {
        clock.runUntil(t);
        if (spans.at(-1)?.partitioned !== network.isPartitioned) {
          spans.push({ partitioned: network.isPartitioned, fromMs: t });
          if (network.isPartitioned) {
            const isolated = ids.filter((a) => ids.every((b) => a === b || network.isCut(a, b)));
            if (partitionMode === "isolateSingle") expect(isolated.length).toBe(1);
            partitionedSideSizes++;
          }
        }
      }
      network.stopFaults();
      expect(partitionedSideSizes).toBeGreaterThan(10);
      for (let i = 1; i + 1 < spans.length; i++) {
        const lastedMs = spans[i + 1]!.fromMs - spans[i]!.fromMs;
        expect(lastedMs).toBeGreaterThanOrEqual(spans[i]!.partitioned ? 50 : 30);
      }
      expect(network.stats.partitions).toBe(partitionedSideSizes);
    }
  });

  it("network - the same seed gives the same deliveries, another seed different ones", () => {
    const run = (seed: number): string => {
      const { clock, network, deliveries } = setup(
        {
          delayMsMin: 1,
          delayMsMax: 30,
          lossRatio: ratio(1, 10),
          duplicateRatio: ratio(1, 10),
          partitionMode: "uniformPartition",
          partitionSymmetry: "oneWay",
          partitionRatio: ratio(1, 5),
          unpartitionRatio: ratio(1, 5),
          clogRatio: ratio(1, 50),
          clogDurationMsMax: 40,
        },
        seed,
      );
      network.startFaults();
      const ids = ["a", "b", "c"];
      const traffic = new SeededRng(seed + 1000);
      for (let t = 0; t < 2000; t += 5) {
        clock.runUntil(t);
        network.send(ids[traffic.int(3)]!, ids[traffic.int(3)]!, t);
      }
      clock.runUntil(2100);
      return JSON.stringify(deliveries);
    };
    expect(run(42)).toBe(run(42));
    expect(run(42)).not.toBe(run(43));
  });
});
