/**
 * A VM's synthetic NIC through fleetd on real processes: the kvserver guest (get/set over HFRPC
 * datagrams on its NIC, its data in a log on its virtual disk) is reached through a gateway port on
 * node n1 (`--gateways PORT=kv`) while it is live-migrated 10 times between n2 and n3. The client sends a
 * steady stream of requests: none fails (the client library's retries within its timeout are counted),
 * every acknowledged set reads back afterwards, and the latency during the moves is printed beside
 * the latency without them. Then the VM is stopped and started on another node: the data is still there.
 * And VM to VM: the netpeer guest pings kvserver across nodes while kvserver moves.
 */
import { NIC_MAC_PATTERN, type ApiClient, type Vm } from "@hyperfleet/api";
import { KvClient } from "@hyperfleet/vmbus";
import { describe, expect, it } from "vitest";
import { freePort, type LocalNode } from "../src/local-cluster.js";
import { follow, sleep, until, useCluster } from "./helpers.js";

const MIB = 2 ** 20;
const MOVES = 10;
const gatewayPort = await freePort();
const local = useCluster("network", {
  nodes: 3,
  memoryMib: 64,
  nodeEnv: (id): Record<string, string> => (id === "n1" ? { HYPERFLEET_GATEWAYS: `${gatewayPort}=kv` } : {}),
});

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** A counter of n1's /metrics for the gateway to kv (0 when absent). */
async function gatewayCount(node: LocalNode, name: string): Promise<number> {
  const text = await (await fetch(`http://${node.httpAddress}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && l.includes('vm="kv"'));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

describe("network", () => {
  const node = (id: string): LocalNode => local.cluster.nodes.find((n) => n.id === id)!;
  const api = (n: LocalNode): ApiClient => local.client(n.apiAddress, undefined, 15_000);
  const acked = new Map<string, string>();
  /** Every acknowledged set reads back through the gateway. */
  const readsBack = async (client: KvClient): Promise<void> => {
    expect(acked.size).toBeGreaterThan(50);
    for (const [k, v] of acked) expect(await client.get(k), k).toBe(v);
  };

  it("network - kvserver behind a gateway: 10 live migrations under a steady stream of requests, none fails, every acknowledged set reads back", async () => {
    const n1 = api(node("n1"));
    const created = await n1.createVm({ name: "kv", memoryBytes: 16 * MIB, vcpus: 1, image: "kvserver", diskBytes: [16 * MIB], nics: 1, start: false });
    expect(created.spec.nicMacs).toHaveLength(1);
    expect(created.spec.nicMacs[0]).toMatch(NIC_MAC_PATTERN);
    // it runs on n2 and n3 only, so the gateway's node never holds it: every frame crosses the switch
    if (created.owner !== "n2") await n1.migrate({ vm: "kv", targetNode: "n2" });
    await until("kv owned by n2", 10_000, async () => ((await n1.getVm({ name: "kv" })).owner === "n2" ? true : undefined));
    await n1.startVm({ name: "kv" });

    const client = new KvClient({ port: gatewayPort, timeoutMs: 5000 });
    try {
      await until("kvserver answering through the gateway", 30_000, async () => ((await client.get("probe")) === undefined ? true : undefined));
      const failures: string[] = [];
      const latencies: { atMs: number; ms: number }[] = [];
      let running = true;
      let n = 0;
      const load = (async () => {
        while (running && n < 1_000_000) {
          const key = `k${n % 300}`;
          const t0 = performance.now();
          try {
            if (n % 2 === 0) {
              await client.set(key, `v${n}`);
              acked.set(key, `v${n}`);
            } else {
              const prev = `k${(n - 1) % 300}`;
              const got = await client.get(prev);
              if (got !== acked.get(prev)) failures.push(`GET ${prev}: ${String(got)}, acknowledged ${String(acked.get(prev))}`);
            }
          } catch (e) {
            failures.push((e as Error).message);
          }
          latencies.push({ atMs: t0, ms: performance.now() - t0 });
          n++;
        }
      })();

      await sleep(2000); // without migration
      const resendsBefore = await gatewayCount(node("n1"), "hyperfleet_gateway_resends_total");
      const migrationStart = performance.now();
      const downtimesMs: number[] = [];
      try {
        for (let i = 0; i < MOVES; i++) {
          const vm: Vm = await n1.getVm({ name: "kv" });
          const to = vm.owner === "n2" ? "n3" : "n2";
          const { migrationId } = await n1.migrate({ vm: "kv", targetNode: to });
          const ended = await until(`move ${i + 1} to ${to}`, 30_000, async () => {
            const m = await n1.getMigration({ migrationId });
            return m.result !== null ? m : undefined;
          });
          expect(ended.result?.ok, JSON.stringify(ended.result)).toBe(true);
          downtimesMs.push(ended.result!.downtimeMs);
          await until(`kv running on ${to}`, 10_000, async () => {
            const v = await n1.getVm({ name: "kv" });
            return v.owner === to && v.state === "VM_STATE_RUNNING" ? true : undefined;
          });
          await sleep(300);
        }
      } finally {
        const migrationEnd = performance.now();
        await sleep(500);
        running = false;
        await load;
        const during = latencies.filter((l) => l.atMs >= migrationStart && l.atMs < migrationEnd).map((l) => l.ms).sort((a, b) => a - b);
        const before = latencies.filter((l) => l.atMs < migrationStart).map((l) => l.ms).sort((a, b) => a - b);
        const row = (name: string, s: number[]): string =>
          `${name.padEnd(22)} ${String(s.length).padStart(6)} ${percentile(s, 50).toFixed(2).padStart(8)} ${percentile(s, 99).toFixed(2).padStart(8)} ${(s.at(-1) ?? NaN).toFixed(2).padStart(8)}`;
        const resends = (await gatewayCount(node("n1"), "hyperfleet_gateway_resends_total")) - resendsBefore;
        console.log([
          "kvserver through fleetd's gateway, latency (ms)  requests      p50      p99      max",
          row("without migration", before),
          row(`during ${MOVES} moves`, during),
          `client retries ${client.retries}; gateway resends during the moves ${resends}, timeouts ${await gatewayCount(node("n1"), "hyperfleet_gateway_timeouts_total")}; ` +
            `migration downtimes (ms) ${downtimesMs.join(" ")}`,
        ].join("\n"));
        expect(failures).toEqual([]);
        expect(before.length).toBeGreaterThan(20);
        expect(during.length).toBeGreaterThan(20);
      }

      await readsBack(client); // from wherever the VM is now
    } finally {
      client.close();
    }
  }, 240_000);

  it("network - stopped and started on another node, kvserver replays its disk and serves every acknowledged value through the same gateway", async () => {
    const n1 = api(node("n1"));
    const owner = (await n1.getVm({ name: "kv" })).owner;
    await n1.stopVm({ name: "kv" });
    await until("kv stopped", 20_000, async () => ((await n1.getVm({ name: "kv" })).state === "VM_STATE_STOPPED" ? true : undefined));
    const target = owner === "n2" ? "n3" : "n2";
    await n1.migrate({ vm: "kv", targetNode: target });
    await until(`kv owned by ${target}`, 10_000, async () => ((await n1.getVm({ name: "kv" })).owner === target ? true : undefined));
    await n1.startVm({ name: "kv" });
    const client = new KvClient({ port: gatewayPort, timeoutMs: 5000 });
    try {
      await until("kvserver answering again", 30_000, async () => ((await client.get("probe")) === undefined ? true : undefined));
      await readsBack(client);
    } finally {
      client.close();
    }
  }, 90_000);

  it("network - VM to VM: netpeer on n1 pings kvserver over the switch, and the replies go on while kvserver moves twice", async () => {
    const n1 = api(node("n1"));
    const mac = (await n1.getVm({ name: "kv" })).spec.nicMacs[0]!;
    const created = await n1.createVm({ name: "peer", memoryBytes: 8 * MIB, vcpus: 1, image: "netpeer", bootargs: `peer=${mac} period=50`, nics: 1, start: false });
    if (created.owner !== "n1") await n1.migrate({ vm: "peer", targetNode: "n1" });
    await until("peer owned by n1", 10_000, async () => ((await n1.getVm({ name: "peer" })).owner === "n1" ? true : undefined));
    await n1.startVm({ name: "peer" });
    await until("peer running", 20_000, async () => ((await n1.getVm({ name: "peer" })).state === "VM_STATE_RUNNING" ? true : undefined));
    const out = follow(n1, "peer");
    const counts = (): { sent: number; answered: number } => {
      const last = [...out.text().matchAll(/netpeer: sent (\d+) answered (\d+)/g)].at(-1);
      return { sent: Number(last?.[1] ?? 0), answered: Number(last?.[2] ?? 0) };
    };
    try {
      await until("the first reply", 20_000, async () => (/netpeer: first reply from/.test(out.text()) ? true : undefined));
      for (let i = 0; i < 2; i++) {
        const owner = (await n1.getVm({ name: "kv" })).owner;
        const to = owner === "n2" ? "n3" : "n2";
        const { migrationId } = await n1.migrate({ vm: "kv", targetNode: to });
        const ended = await until(`kv to ${to}`, 30_000, async () => {
          const m = await n1.getMigration({ migrationId });
          return m.result !== null ? m : undefined;
        });
        expect(ended.result?.ok, JSON.stringify(ended.result)).toBe(true);
        const moved = counts().answered;
        await until(`replies from kv on ${to}`, 15_000, async () => (counts().answered >= moved + 20 ? true : undefined));
      }
      const { sent, answered } = counts();
      expect(out.text()).not.toMatch(/bad peer|no network channel/);
      expect(answered / sent).toBeGreaterThan(0.9);
    } finally {
      await out.stop();
    }
  }, 120_000);

  it("network - a NIC MAC already in the cluster is refused, naming the VM that has it", async () => {
    const n1 = api(node("n1"));
    const mac = (await n1.getVm({ name: "kv" })).spec.nicMacs[0]!;
    await expect(n1.createVm({ name: "twin", memoryBytes: 4 * MIB, vcpus: 1, image: "hello", nicMacs: [mac], start: false }))
      .rejects.toThrow(`MAC ${mac} belongs to vm kv`);
  }, 20_000);
});
