/**
 * Live migration of a VM whose synthetic devices are busy: the vmbus-probe guest writes durable
 * records to its disk (cluster storage: one image file both nodes open) while it moves back and
 * forth. Its channels move with it (the channel table is in its state, the rings in its memory);
 * the source's VMBus is quiet during the stop-and-copy and the destination's serves what waits.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RootPartition, type ChildPartition } from "@hyperfleet/hypervisor";
import { buildOffers, DiskImage } from "../../vmbus/src/index.js";
import { memoryLink, MigrationDestination, MigrationSource } from "../src/index.js";
import { consoleOf, Served, startProbe, until } from "../../vmbus/test/lib.js";

const MiB = 2 ** 20;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const records = (text: string): number[] => [...text.matchAll(/disk: record (\d+)/g)].map((m) => Number(m[1]));

describe("migration - a VM with a busy disk and open channels", () => {
  it("moves 6 times while writing records: none lost or torn, its channels served wherever it runs, and a cold start elsewhere finds them all", async () => {
    const dir = await mkdtemp(join(tmpdir(), "hf-mig-vmbus-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "probe.hfdisk");
    await (await DiskImage.create(path, { sizeBytes: 8 * MiB })).close();
    const roots = [new RootPartition(96 * MiB), new RootPartition(96 * MiB)] as const;
    cleanups.push(async () => {
      for (const r of roots) for (const c of r.list()) await r.destroy(c.spec.name).catch(() => undefined);
    });
    const offers = buildOffers({ disks: 1 });
    /** One node's handle on the shared image and its providers for the VM. */
    const serve = async (child: ChildPartition): Promise<Served> => {
      const disk = await DiskImage.open(path);
      const s = new Served(child, offers, [disk]);
      cleanups.push(async () => {
        s.close();
        await disk.close();
      });
      return s;
    };

    let vm = await startProbe(roots[0], "probe", offers, "rate=100");
    let served = await serve(vm);
    const printed: string[] = [];
    let out = consoleOf(vm);
    await until("20 records", () => records(out.text()).length >= 1, 15_000, out.text);
    for (let i = 0; i < 6; i++) {
      const [from, to] = i % 2 === 0 ? [roots[0], roots[1]] : [roots[1], roots[0]];
      const link = memoryLink();
      const destination = new MigrationDestination(to, link.destination, 40 + i);
      const source = new MigrationSource(
        { vm: vm.worker!, devices: served.bus, name: "probe", memoryBytes: vm.spec.memoryBytes, vcpus: 1, boot: "bare", bootargs: vm.spec.bootargs },
        link.source,
        40 + i,
        { downtimeLimitMs: 50 },
      );
      const result = await source.run();
      expect(result.ok, JSON.stringify(result)).toBe(true);
      const incoming = await destination.done;
      expect(incoming.ok).toBe(true);
      printed.push(out.text());
      expect(served.errors).toEqual([]);
      served.close();
      await from.destroy("probe");
      vm = to.get("probe")!;
      out = consoleOf(vm);
      served = await serve(vm);
      const seen = Math.max(0, ...records(printed.join("") + out.text()));
      await until(`records past ${seen} after move ${i + 1}`, () => Math.max(0, ...records(out.text())) > seen, 15_000, () => `${out.text()}\nerrors: ${served.errors.join("; ")}`);
    }
    printed.push(out.text());
    const all = printed.join("");
    expect(all).not.toMatch(/CORRUPT|disk: error|no \w+ channel/);
    expect(all.match(/disk: boot/g)).toHaveLength(1); // never started over
    // every 20th record reported once, in order: the guest's count went on through every move
    const seq = records(all);
    seq.forEach((n, k) => expect(n).toBe(20 * (k + 1)));
    expect(served.errors).toEqual([]);
    expect(served.bus.channels).toEqual(offers.map((o) => o.channel));

    // turned off where it runs, started cold on the other node: every record is on the disk
    served.close();
    const last = vm;
    const lastRoot = roots.find((r) => r.get("probe") === last)!;
    await lastRoot.destroy("probe");
    const other = lastRoot === roots[0] ? roots[1] : roots[0];
    const cold = await startProbe(other, "probe", offers, "rate=100 records=1");
    const coldOut = consoleOf(cold);
    await serve(cold);
    await until("the cold boot's check", () => /disk: boot 2/.test(coldOut.text()), 15_000, coldOut.text);
    const verified = /disk: verified (\d+) records up to (\d+)/.exec(coldOut.text());
    expect(verified, coldOut.text()).not.toBeNull();
    expect(Number(verified![2])).toBeGreaterThanOrEqual(seq.at(-1)!);
    expect(Number(verified![1])).toBe(Math.min(2000, Number(verified![2])));
  }, 120_000);
});
