/**
 * A VM's synthetic devices through its lifecycle on real processes: the vmbus-probe guest writes
 * durable records to a virtual disk on cluster storage (`<cluster dir>/storage`, shared by the
 * nodes) and uses every integration service. It is live-migrated (its record count goes on), stopped
 * gracefully (the guest is asked through the shutdown service) and started on the other node, where
 * it finds every record on its disk.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ApiError, type ApiClient, type Vm } from "@hyperfleet/api";
import { describe, expect, it } from "vitest";
import type { LocalNode } from "../src/local-cluster.js";
import { follow, sleep, until, useCluster } from "./helpers.js";

const MIB = 2 ** 20;
const local = useCluster("devices", { nodes: 2, memoryMib: 96 });

const records = (text: string): number[] => [...text.matchAll(/disk: record (\d+)/g)].map((m) => Number(m[1]));

function increasing(xs: readonly number[]): boolean {
  return xs.every((x, i) => i === 0 || x > xs[i - 1]!);
}

const state = { owner: "", seen: 0 };

describe("devices", () => {
  const node = (id: string): LocalNode => local.cluster.nodes.find((n) => n.id === id)!;
  const other = (id: string): LocalNode => local.cluster.nodes.find((n) => n.id !== id)!;
  const api = (n: LocalNode): ApiClient => local.client(n.apiAddress, undefined, 15_000);
  const running = (client: ApiClient, owner?: string): Promise<Vm> =>
    until("probe running", 20_000, async () => {
      const vm = await client.getVm({ name: "probe" });
      return vm.state === "VM_STATE_RUNNING" && (owner === undefined || vm.owner === owner) ? vm : undefined;
    });

  it("devices - a VM with a disk writes records; GetVm shows its guest healthy and the KVP values it published", async () => {
    const first = api(local.cluster.nodes[0]!);
    await first.createVm({ name: "probe", memoryBytes: 16 * MIB, vcpus: 1, image: "vmbus-probe", bootargs: "rate=50", diskBytes: [8 * MIB], start: true });
    const vm = await running(first);
    expect(vm.spec.diskBytes).toEqual([8 * MIB]);
    expect(vm.spec.noIntegration).toBe(false);
    state.owner = vm.owner;
    expect(existsSync(join(local.dir, "storage", "probe", "disk0.hfdisk"))).toBe(true);
    const out = follow(api(node(vm.owner)), "probe");
    try {
      await until("records on the disk", 15_000, async () => (records(out.text()).length >= 2 ? true : undefined));
      // the owner answers from its devices; a node that does not own the VM asks the owner
      for (const n of local.cluster.nodes) {
        const seen = await until(`guest health ok and probe.status on ${n.id}`, 10_000, async () => {
          const v = await api(n).getVm({ name: "probe" });
          return v.guestHealth === "ok" && v.guestKvp["probe.status"] === "ready" ? v : undefined;
        });
        expect(seen.guestKvp["probe.boots"]).toBe("1");
      }
      // a host value reaches the guest (the probe echoes probe.echo back as probe.echoed), through any node
      const set = await api(other(vm.owner)).setVmKvp({ name: "probe", key: "probe.echo", value: "first" });
      expect(set.hostKvp).toEqual({ "probe.echo": "first" });
      await until("the guest echoing the host's value", 10_000, async () =>
        ((await first.getVm({ name: "probe" })).guestKvp["probe.echoed"] === "first" ? true : undefined));
      expect(out.text()).toMatch(/vmbus-probe: offers 5/);
      expect(out.text()).not.toMatch(/CORRUPT|disk: error|no \w+ channel/);
      state.seen = Math.max(...records(out.text()));
    } finally {
      await out.stop();
    }
  }, 40_000);

  it("devices - live migration: the guest's record count goes on on the other node, its devices served there", async () => {
    const from = node(state.owner);
    const to = other(state.owner);
    const source = follow(api(from), "probe");
    await until("records before the move", 10_000, async () => (records(source.text()).length >= 1 ? true : undefined));
    const { migrationId } = await api(to).migrate({ vm: "probe", targetNode: to.id });
    const ended = await until("the migration's result", 20_000, async () => {
      const m = await api(to).getMigration({ migrationId });
      return m.result !== null ? m : undefined;
    });
    expect(ended.result?.ok, JSON.stringify(ended.result)).toBe(true);
    await source.stop();
    await running(api(to), to.id);
    state.owner = to.id;
    const before = Math.max(state.seen, ...records(source.text()));
    const destination = follow(api(to), "probe");
    try {
      await until(`records past ${before} on ${to.id}`, 15_000, async () => (Math.max(0, ...records(destination.text())) > before + 20 ? true : undefined));
      const text = source.text() + destination.text();
      expect(text).not.toMatch(/CORRUPT|disk: error|disk: boot [2-9]/);
      expect(increasing(records(source.text()))).toBe(true);
      expect(increasing(records(destination.text()))).toBe(true);
      const v = await until("guest health ok after the move", 10_000, async () => {
        const x = await api(from).getVm({ name: "probe" });
        return x.guestHealth === "ok" ? x : undefined;
      });
      expect(v.owner).toBe(to.id);
      // the new owner offers the host's values too, and sends a change on
      expect(v.hostKvp).toEqual({ "probe.echo": "first" });
      await api(from).setVmKvp({ name: "probe", key: "probe.echo", value: "after-the-move" });
      await until("the guest echoing the changed value on its new node", 10_000, async () =>
        ((await api(to).getVm({ name: "probe" })).guestKvp["probe.echoed"] === "after-the-move" ? true : undefined));
      expect((await api(to).setVmKvp({ name: "probe", key: "probe.echo", delete: true })).hostKvp).toEqual({});
      state.seen = Math.max(...records(destination.text()));
    } finally {
      await destination.stop();
    }
  }, 45_000);

  it("devices - graceful stop asks the guest; started on the other node, it finds every record on its disk", async () => {
    const owner = node(state.owner);
    const out = follow(api(owner), "probe");
    await until("the console", 5000, async () => (records(out.text()).length >= 1 ? true : undefined));
    const startedAt = Date.now();
    await api(other(owner.id)).stopVm({ name: "probe" });
    await until("probe stopped", 15_000, async () => ((await api(owner).getVm({ name: "probe" })).state === "VM_STATE_STOPPED" ? true : undefined));
    expect(Date.now() - startedAt).toBeLessThan(5000); // the guest powered off: no wait for the timeout
    await sleep(200);
    await out.stop();
    expect(out.text()).toMatch(/shutdown: /);
    const lastWritten = Math.max(state.seen, ...records(out.text()));
    const log = readFileSync(join(local.dir, `${owner.id}.log`), "utf8");
    expect(log).toContain("vm probe: the guest shut down");
    expect((await api(owner).getVm({ name: "probe" })).guestHealth).toBe("unknown");

    // moved while stopped, then started there: a cold boot from the same disk
    const target = other(owner.id);
    await api(owner).migrate({ vm: "probe", targetNode: target.id });
    await until("owned by the other node", 10_000, async () => ((await api(target).getVm({ name: "probe" })).owner === target.id ? true : undefined));
    await api(target).startVm({ name: "probe" });
    await running(api(target), target.id);
    const cold = follow(api(target), "probe");
    try {
      await until("the cold boot's check", 15_000, async () => (/disk: boot 2/.test(cold.text()) ? true : undefined));
      const verified = /disk: verified (\d+) records up to (\d+)/.exec(cold.text());
      expect(verified, cold.text()).not.toBeNull();
      const [n, m] = [Number(verified![1]), Number(verified![2])];
      expect(m).toBeGreaterThanOrEqual(lastWritten);
      expect(n).toBe(Math.min(2000, m));
      expect(cold.text()).not.toMatch(/CORRUPT/);
    } finally {
      await cold.stop();
    }
    await api(target).stopVm({ name: "probe", force: true });
    await api(target).deleteVm({ name: "probe", force: true });
    await until("its disks removed from cluster storage", 5000, async () => (existsSync(join(local.dir, "storage", "probe")) ? undefined : true));
  }, 60_000);

  it("devices - the API refuses a bad disk size with INVALID_ARGUMENT naming the field", async () => {
    const client = api(local.cluster.nodes[1]!);
    const error = await client.createVm({ name: "bad-disk", memoryBytes: 16 * MIB, vcpus: 1, image: "vmbus-probe", diskBytes: [8 * MIB, 1000] }).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).code).toBe("INVALID_ARGUMENT");
    expect((error as ApiError).fields).toEqual(["disk_bytes[1]"]);
    expect((error as ApiError).message).toMatch(/^disk_bytes\[1\]: must be a multiple of 512/);
  });
});
