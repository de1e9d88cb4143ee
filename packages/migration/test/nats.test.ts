/** Migration over a real nats-server on loopback, including the server dying mid-migration. */
import { connect } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import { NatsTransport } from "../src/adapters/nats.js";
import { MigrationDestination } from "../src/destination.js";
import { MigrationSource, type MigrationOptions } from "../src/source.js";
import { follow, heartbeats, NatsServer, sleep, twoNodes } from "./lib.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function setup(bootargs: string, extraConnections = 0) {
  const server = await NatsServer.start();
  cleanups.push(() => server.stop());
  const [ncA, ncB] = await Promise.all([connect({ servers: server.url }), connect({ servers: server.url })]);
  const extraA = await Promise.all(Array.from({ length: extraConnections }, () => connect({ servers: server.url })));
  const extraB = await Promise.all(Array.from({ length: extraConnections }, () => connect({ servers: server.url })));
  cleanups.push(async () => {
    for (const nc of [ncA, ncB, ...extraA, ...extraB]) await nc.close().catch(() => undefined);
  });
  const nodes = await twoNodes(bootargs);
  cleanups.push(async () => {
    for (const r of [nodes.a, nodes.b]) for (const c of r.list()) await r.destroy(c.spec.name);
  });
  const session = 0x5eed;
  const toSource = new NatsTransport(ncA, session, "source", { streamConnections: extraA });
  const toDestination = new NatsTransport(ncB, session, "destination", { streamConnections: extraB });
  await Promise.all([toSource.ready(), toDestination.ready()]);
  const destination = new MigrationDestination(nodes.b, toDestination, session);
  const spec = nodes.vm.spec;
  const source = (options: MigrationOptions = {}) =>
    new MigrationSource(
      { vm: nodes.vm.worker!, name: spec.name, memoryBytes: spec.memoryBytes, vcpus: spec.vcpus, boot: spec.boot, bootargs: spec.bootargs },
      toSource,
      session,
      options,
    );
  return { server, ...nodes, destination, source };
}

describe("migration over NATS", () => {
  it("moves a dirtier between two nodes through a real nats-server", async () => {
    const { a, b, console, destination, source } = await setup("rate=20000 ws=8");
    await sleep(1200);
    const result = await source().run();
    expect(result.ok, JSON.stringify(result)).toBe(true);
    expect((await destination.done).ok).toBe(true);
    await a.destroy("vm1");
    const moved = b.get("vm1")!;
    follow(moved, console);
    await sleep(1200);
    expect(moved.state).toBe("running");
    heartbeats(console).forEach((n, i) => expect(n).toBe(i + 1));
    expect(heartbeats(console).length).toBeGreaterThanOrEqual(2);
  }, 30_000);

  it("three page streams, two on connections of their own: the VM moves and keeps counting", async () => {
    const { a, b, console, destination, source } = await setup("rate=20000 ws=8", 2);
    await sleep(800);
    const result = await source({ streams: 3 }).run();
    expect(result.ok, JSON.stringify(result)).toBe(true);
    expect((await destination.done).ok).toBe(true);
    await a.destroy("vm1");
    const moved = b.get("vm1")!;
    follow(moved, console);
    await sleep(1200);
    expect(moved.state).toBe("running");
    heartbeats(console).forEach((n, i) => expect(n).toBe(i + 1));
    expect(heartbeats(console).length).toBeGreaterThanOrEqual(2);
  }, 30_000);

  it("nats-server stopped mid-migration: a clean abort, the VM keeps running on the source", async () => {
    const { server, b, vm, destination, source } = await setup("rate=20000 ws=16");
    await sleep(300);
    let killed = false;
    const run = source({
      onProgress: (p) => {
        // the moment pre-copy starts: admitted, nothing copied yet
        if (p.phase === "precopy" && !killed) {
          killed = true;
          server.kill();
        }
      },
    }).run();
    const result = await run;
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.committed).toBe(false);
    const incoming = await Promise.race([destination.done, sleep(5000).then(() => ({ ok: false as const, reason: "timeout" }))]);
    expect(incoming.ok).toBe(false);
    expect(b.list()).toEqual([]);
    const s1 = await vm.worker!.stats();
    await sleep(100);
    expect((await vm.worker!.stats()).instructions).toBeGreaterThan(s1.instructions);
    expect(vm.state).toBe("running");
  }, 30_000);
});
