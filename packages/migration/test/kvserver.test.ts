/**
 * Connected clients do not notice a live migration: the kvserver guest (get/set over its synthetic
 * NIC, data on its virtual disk) is moved 10 times between two nodes while a client sends a steady
 * stream of requests through a gateway over a real nats-server. No request fails (the client may
 * retry within its timeout: counted), every acknowledged set reads back afterwards, and the test
 * prints request latency during migration against the same client without migration.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import { RootPartition, type ChildPartition } from "@hyperfleet/hypervisor";
import { buildOffers, DiskImage, Gateway, KvClient, NatsFabric, nicMac } from "../../vmbus/src/index.js";
import { consoleOf, guestElf, Served, until } from "../../vmbus/test/lib.js";
import { LocalNatsServer } from "../src/adapters/nats-server.js";
import { memoryLink, MigrationDestination, MigrationSource } from "../src/index.js";

const MiB = 2 ** 20;
const MAC_PARAM = 0x00c0ffee;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

describe("migration - clients stay connected", () => {
  it("the kvserver guest moves 10 times under a steady stream of requests: none fails, every acknowledged set reads back", async () => {
    const nats = await LocalNatsServer.start();
    cleanups.push(() => nats.stop());
    const conns: NatsConnection[] = [];
    for (let i = 0; i < 3; i++) conns.push(await connect({ servers: nats.url }));
    cleanups.push(() => Promise.all(conns.map((c) => c.close())));
    const fabrics = conns.map((c) => new NatsFabric(c)); // node A, node B, the gateway's node

    const dir = await mkdtemp(join(tmpdir(), "hf-kvserver-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "kv.hfdisk");
    await (await DiskImage.create(path, { sizeBytes: 16 * MiB })).close();
    const roots = [new RootPartition(96 * MiB), new RootPartition(96 * MiB)] as const;
    cleanups.push(async () => {
      for (const r of roots) for (const c of r.list()) await r.destroy(c.spec.name).catch(() => undefined);
    });
    const offers = buildOffers({ disks: 1, nics: [MAC_PARAM] });
    let generation = 0;
    const serve = async (child: ChildPartition, node: 0 | 1): Promise<Served> => {
      const disk = await DiskImage.open(path);
      const s = new Served(child, offers, [disk], { fabric: fabrics[node]!, senderId: `node${node}-${++generation}` });
      cleanups.push(async () => {
        s.close();
        await disk.close();
      });
      await fabrics[node]!.flush(); // listening before the guest is told it runs here
      return s;
    };

    const vmMac = nicMac(MAC_PARAM);
    const gateway = new Gateway({ fabric: fabrics[2]!, mac: "02:48:ff:00:00:01", target: () => vmMac, senderId: "gw", attemptMs: 150, deadlineMs: 1500 });
    const port = await gateway.listen(0);
    cleanups.push(() => gateway.close());
    await fabrics[2]!.flush();

    const child = roots[0].create({ name: "kv", memoryBytes: 16 * MiB, offers });
    await child.start({ image: guestElf("kvserver") });
    let vm = child;
    let node: 0 | 1 = 0;
    let out = consoleOf(vm);
    let served = await serve(vm, 0);
    await until("kvserver to serve", () => /kvserver: serving on/.test(out.text()), 15_000, out.text);

    // The client: sets and gets in turn, one at a time, as fast as answers come.
    const client = new KvClient({ port, timeoutMs: 5000 });
    cleanups.push(() => client.close());
    const acked = new Map<string, string>();
    const failures: string[] = [];
    let running = true;
    let n = 0;
    const latencies: { atMs: number; ms: number }[] = [];
    const load = (async () => {
      while (running) {
        const key = `k${n % 400}`;
        const value = `v${n}`;
        const t0 = performance.now();
        try {
          if (n % 2 === 0) {
            await client.set(key, value);
            acked.set(key, value);
          } else {
            const got = await client.get(`k${(n - 1) % 400}`);
            if (got !== acked.get(`k${(n - 1) % 400}`)) failures.push(`GET k${(n - 1) % 400}: ${String(got)}, acknowledged ${String(acked.get(`k${(n - 1) % 400}`))}`);
          }
        } catch (e) {
          failures.push((e as Error).message);
        }
        latencies.push({ atMs: t0, ms: performance.now() - t0 });
        n++;
      }
    })();

    await new Promise((r) => setTimeout(r, 2000)); // without migration
    const migrationStart = performance.now();
    for (let i = 0; i < 10; i++) {
      const to: 0 | 1 = node === 0 ? 1 : 0;
      const link = memoryLink();
      const destination = new MigrationDestination(roots[to], link.destination, 100 + i);
      const source = new MigrationSource(
        { vm: vm.worker!, devices: served.bus, name: "kv", memoryBytes: vm.spec.memoryBytes, vcpus: 1, boot: "bare", bootargs: "" },
        link.source,
        100 + i,
        { downtimeLimitMs: 50 },
      );
      const result = await source.run();
      expect(result.ok, JSON.stringify(result)).toBe(true);
      expect((await destination.done).ok).toBe(true);
      const moved: ChildPartition = roots[to].get("kv")!;
      const next = await serve(moved, to); // the destination's port listens, then the source hands over
      served.handOver();
      await roots[node].destroy("kv");
      [vm, node, served] = [moved, to, next];
      out = consoleOf(vm);
      await new Promise((r) => setTimeout(r, 300));
    }
    const migrationEnd = performance.now();
    await new Promise((r) => setTimeout(r, 500));
    running = false;
    await load;

    // Every acknowledged set reads back (through the gateway, from wherever the VM is now)
    const reader = new KvClient({ port, timeoutMs: 5000 });
    cleanups.push(() => reader.close());
    for (const [k, v] of acked) expect(await reader.get(k), k).toBe(v);

    const during = latencies.filter((l) => l.atMs >= migrationStart && l.atMs < migrationEnd).map((l) => l.ms).sort((a, b) => a - b);
    const before = latencies.filter((l) => l.atMs < migrationStart).map((l) => l.ms).sort((a, b) => a - b);
    const row = (name: string, s: number[]): string =>
      `${name.padEnd(18)} ${String(s.length).padStart(6)} ${percentile(s, 50).toFixed(2).padStart(8)} ${percentile(s, 99).toFixed(2).padStart(8)} ${(s.at(-1) ?? NaN).toFixed(2).padStart(8)}`;
    console.log(
      [
        "kvserver request latency (ms)    requests      p50      p99      max",
        row("without migration", before),
        row("during 10 moves", during),
        `client retries: ${client.retries}; gateway resends: ${gateway.stats.resends}, timeouts: ${gateway.stats.timeouts}`,
      ].join("\n"),
    );
    expect(failures).toEqual([]);
    expect(before.length).toBeGreaterThan(20);
    expect(during.length).toBeGreaterThan(20);
    expect(served.errors).toEqual([]);
    expect(out.text()).not.toMatch(/kvserver: boot|disk full/); // it never started over
  }, 180_000);
});
