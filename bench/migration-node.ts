/**
 * The receiving node of `pnpm bench migration`, a process of its own as in a cluster: one root
 * partition in service (memory committed, a spare VM worker), NATS for migration.
 *
 *   node --import tsx bench/migration-node.ts <nats-url> <host-memory-MiB> [<extra-connections>]
 *
 * Reads commands on stdin, one per line: `accept <session>` (listen for that migration; answers
 * {"listening":session}, then {"done":session,"ok":...} once it ends here, after the VM ran 200 ms
 * and was stopped again) and `quit`. Prints {"ready":true} once the node is up. Extra connections carry
 * page streams beyond the first (the source's --streams).
 */
import { createInterface } from "node:readline";
import { connect } from "@nats-io/transport-node";
import { RootPartition } from "@hyperfleet/hypervisor";
import { MigrationDestination, NatsTransport, warmCodec } from "@hyperfleet/migration";

const [url, memoryText, extraText = "0"] = process.argv.slice(2);
const say = (v: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(v)}\n`);
const root = new RootPartition(Number(memoryText) * 2 ** 20, { prefault: true, spareWorkers: 1 });
warmCodec(); // as fleetd does when it starts
const nc = await connect({ servers: url! });
const extra = await Promise.all(Array.from({ length: Number(extraText) }, () => connect({ servers: url! })));
for (let i = 0; i < 250 && root.spareWorkersReady < 1; i++) await new Promise((r) => setTimeout(r, 20));
say({ ready: true });

for await (const line of createInterface({ input: process.stdin })) {
  const [command, arg] = line.trim().split(/\s+/);
  if (command === "quit") break;
  if (command !== "accept") continue;
  const session = Number(arg);
  const transport = new NatsTransport(nc, session, "destination", { streamConnections: extra });
  await transport.ready();
  const destination = new MigrationDestination(root, transport, session);
  say({ listening: session });
  const result = await destination.done;
  if (result.ok) {
    await new Promise((r) => setTimeout(r, 200));
    const running = result.partition.state === "running";
    for (const c of root.list()) await root.destroy(c.spec.name);
    say({ done: session, ok: running, reason: running ? undefined : `the VM is ${result.partition.state} after the move` });
  } else {
    say({ done: session, ok: false, reason: result.reason });
  }
  await transport.close();
  for (let i = 0; i < 250 && root.spareWorkersReady < 1; i++) await new Promise((r) => setTimeout(r, 20));
}
await root.close();
await nc.close();
for (const c of extra) await c.close();
