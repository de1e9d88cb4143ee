/**
 * VMBus end to end: the vmbus-probe guest (guests/vmbus-probe) in a real VM worker opens its
 * channels by hypercall, and the root serves them: a disk image, heartbeat, shutdown, time sync and
 * KVP. (Imports the built hypervisor: the worker runs its compiled vm-worker.js.)
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { concat, RootPartition } from "@hyperfleet/hypervisor";
import { buildOffers, DiskImage } from "../src/index.js";
import { consoleOf, MiB, Served, sleep, startProbe, until } from "./lib.js";

let dir: string;
let root: RootPartition;
const cleanups: (() => Promise<unknown> | unknown)[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "hf-vmbus-"));
  root = new RootPartition(128 * MiB);
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  for (const child of root.list()) await root.destroy(child.spec.name).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

async function disk(name = "d0", sizeBytes = 8 * MiB): Promise<DiskImage> {
  const d = await DiskImage.create(join(dir, `${name}.hfdisk`), { sizeBytes });
  cleanups.push(() => d.close());
  return d;
}

const records = (text: string): number[] => [...text.matchAll(/disk: record (\d+)/g)].map((m) => Number(m[1]));

describe("vmbus - a guest's channels served by the root", () => {
  it("the guest opens its channels, reads the disk's size and writes durable records", async () => {
    const offers = buildOffers({ disks: 1 });
    const d = await disk();
    const child = await startProbe(root, "p1", offers);
    const out = consoleOf(child);
    const served = new Served(child, offers, [d]);
    cleanups.push(() => served.close());
    await until("40 records", () => Math.max(0, ...records(out.text())) >= 40, 15_000, out.text);
    const text = out.text();
    expect(text).toContain(`vmbus-probe: offers ${offers.length}`);
    expect(text).toContain(`disk: size ${8 * MiB} sector 512`);
    expect(text).toContain("disk: verified 0 records up to 0");
    expect(text).toContain("disk: boot 1");
    expect(text).not.toMatch(/CORRUPT|error|no \w+ channel/);
    expect(served.bus.channels).toEqual(offers.map((o) => o.channel));
    expect(served.storage[0]!.stats.writes).toBeGreaterThanOrEqual(80); // a record and the superblock each
    expect(served.storage[0]!.stats.flushes).toBeGreaterThanOrEqual(40);
    expect(served.errors).toEqual([]);
  }, 30_000);

  it("a guest that signalled before the root served its VMBus is served once it does", async () => {
    const offers = buildOffers({ disks: 1 });
    const d = await disk();
    const child = await startProbe(root, "p0", offers);
    const out = consoleOf(child);
    await until("the guest to open its channels", () => child.worker!.channels().channels.length === offers.length);
    await sleep(200); // it asked for the disk's size and waits, its signal unheard
    expect(out.text()).not.toContain("disk: size");
    const served = new Served(child, offers, [d]);
    cleanups.push(() => served.close());
    await until("40 records", () => Math.max(0, ...records(out.text())) >= 40, 15_000, out.text);
  }, 30_000);

  it("integration services: heartbeat health, time sync, KVP both ways, and a shutdown the guest accepts", async () => {
    const offers = buildOffers({ disks: 0 });
    const child = await startProbe(root, "p2", offers, "disk=0");
    const out = consoleOf(child);
    const served = new Served(child, offers, []);
    cleanups.push(() => served.close());
    await until("the guest to publish its status", () => served.kvp.guestValues.get("probe.status") === "ready", 10_000, out.text);
    expect(served.kvp.guestValues.get("probe.boots")).toBe("0");
    // heartbeat
    for (let i = 0; i < 3; i++) {
      served.heartbeat.ping(Date.now());
      await sleep(50);
    }
    await until("a healthy heartbeat", () => served.heartbeat.health === "ok", 5_000, out.text);
    // time sync: stepped when the channel opened, to the host's clock
    const step = /timesync: (\d+) stepped/.exec(out.text());
    expect(step, out.text()).not.toBeNull();
    expect(Math.abs(Number(step![1]) - Date.now() / 1000)).toBeLessThan(5);
    // KVP: a value the host sets comes back through the guest
    served.kvp.set("probe.echo", "hello there");
    await until("the echo", () => served.kvp.guestValues.get("probe.echoed") === "hello there", 5_000, out.text);
    expect(out.text()).toContain("kvp: echo hello there");
    // the guest answers GET from the host's values; a host DELETE takes one back
    expect(await served.kvp.get("probe.echo")).toBe("hello there");
    served.kvp.delete("probe.echo");
    expect(served.kvp.hostValues.has("probe.echo")).toBe(false);
    expect(await served.kvp.get("probe.echo")).toBeUndefined();
    // shutdown
    const answer = await served.shutdown.request("maintenance window");
    expect(answer).toBe(0);
    const halt = await child.worker!.exited;
    expect(halt.code).toBe(0);
    expect(out.text()).toContain("shutdown: maintenance window");
    expect(served.errors).toEqual([]);
  }, 30_000);

  it("a guest that stopped answering is reported without contact", async () => {
    const offers = buildOffers({ disks: 0 });
    const child = await startProbe(root, "p3", offers, "disk=0");
    const served = new Served(child, offers, []);
    cleanups.push(() => served.close());
    await until("the heartbeat channel", () => served.heartbeat.health !== "not-connected");
    served.heartbeat.ping(Date.now());
    await until("a healthy heartbeat", () => served.heartbeat.health === "ok");
    await child.pause();
    for (let i = 0; i < 5; i++) served.heartbeat.ping(Date.now());
    await sleep(100);
    expect(served.heartbeat.health).toBe("no-contact");
  }, 30_000);
});

describe("vmbus - disk data outlives the VM", () => {
  it("records written before a stop are all there at the next start, which goes on counting", async () => {
    const offers = buildOffers({ disks: 1 });
    const d = await disk();
    const first = await startProbe(root, "p4", offers);
    const out1 = consoleOf(first);
    const s1 = new Served(first, offers, [d]);
    await until("20 records", () => Math.max(0, ...records(out1.text())) >= 20, 15_000, out1.text);
    s1.close();
    await root.destroy("p4"); // turned off, mid-write perhaps
    const last = s1.storage[0]!.stats.writes;
    expect(last).toBeGreaterThan(0);

    const second = await startProbe(root, "p4", offers);
    const out2 = consoleOf(second);
    const s2 = new Served(second, offers, [d]);
    cleanups.push(() => s2.close());
    await until("the second boot", () => /disk: boot 2/.test(out2.text()), 15_000, out2.text);
    const verified = /disk: verified (\d+) records up to (\d+)/.exec(out2.text());
    expect(verified, out2.text()).not.toBeNull();
    expect(Number(verified![2])).toBeGreaterThanOrEqual(20);
    expect(Number(verified![1])).toBe(Number(verified![2]));
    expect(out2.text()).not.toContain("CORRUPT");
  }, 40_000);

  it("a VM saved with open channels continues from its saved state: no reopening, records go on", async () => {
    const offers = buildOffers({ disks: 1 });
    const d = await disk();
    const first = await startProbe(root, "p5", offers);
    const out1 = consoleOf(first);
    const s1 = new Served(first, offers, [d]);
    await until("20 records", () => Math.max(0, ...records(out1.text())) >= 20, 15_000, out1.text);
    await s1.bus.suspend();
    await first.pause();
    const snapshot = concat(await first.worker!.save({ memory: true }));
    s1.close();
    await root.destroy("p5");
    const before = Math.max(...records(out1.text()));

    const again = root.create({ name: "p5", memoryBytes: 16 * MiB, bootargs: "rate=50", offers });
    await again.start({ snapshot });
    const out2 = consoleOf(again);
    expect(again.worker!.channels().channels.map((c) => c.channel)).toEqual(offers.map((o) => o.channel));
    const s2 = new Served(again, offers, [d]);
    cleanups.push(() => s2.close());
    await until("20 more records", () => Math.max(0, ...records(out2.text())) >= before + 20, 15_000, out2.text);
    expect(out2.text()).not.toMatch(/vmbus-probe: offers|disk: boot|CORRUPT|error/); // it did not start over
    expect(s2.errors).toEqual([]);
  }, 40_000);
});
