import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiClient } from "../src/adapters/client.js";
import { forwardingBackend } from "../src/forwarding.js";
import { FakeBackend } from "./fake-backend.js";
import { apiErrorOf, type Harness, startHarness, TOKEN } from "./helpers.js";

const harnesses: Harness[] = [];
const clients: ApiClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const h of harnesses.splice(0)) await h.close();
});

/** A node: its own state (`local`) behind a forwarding backend. */
async function startNode(nodeId: string, isLeader: () => boolean, leader: () => ApiClient | undefined): Promise<Harness & { local: FakeBackend }> {
  const local = new FakeBackend(nodeId);
  const h = await startHarness({ backend: forwardingBackend(local, isLeader, leader) });
  harnesses.push(h);
  return Object.assign(h, { local });
}

function clientOf(h: Harness): ApiClient {
  const c = new ApiClient(h.server.address, { token: TOKEN, timeoutMs: 5000 });
  clients.push(c);
  return c;
}

describe("api forwarding", () => {
  it("api forwarding - a write on a follower is served by the leader; a read is served locally", async () => {
    const leader = await startNode("n1", () => true, () => undefined);
    const toLeader = clientOf(leader);
    const follower = await startNode("n2", () => false, () => toLeader);

    const created = await follower.client.createVm({ name: "fwd-1", memoryBytes: 4096, vcpus: 1, image: "echo" });
    expect(created.name).toBe("fwd-1");
    expect(leader.local.vms.has("fwd-1")).toBe(true);
    expect(follower.local.vms.has("fwd-1")).toBe(false);
    expect(follower.local.calls).not.toContain("createVm");
    // The leader saw a forwarded call (one hop), with the caller's deadline.
    const context = leader.local.contexts.at(-1)!;
    expect(context.method).toBe("Vms/Create");
    expect(context.hops).toBe(1);
    expect(context.deadlineMs).not.toBeNull();

    // A read: the follower answers from its own state (where "fwd-1" does not exist yet).
    const leaderCallsBefore = leader.local.calls.length;
    expect((await apiErrorOf(follower.client.getVm({ name: "fwd-1" }))).code).toBe("NOT_FOUND");
    expect((await follower.client.getVm({ name: "web" })).name).toBe("web");
    expect((await follower.client.clusterStatus()).nodeId).toBe("n2");
    expect(follower.local.calls.slice(-3)).toEqual(["getVm", "getVm", "clusterStatus"]);
    expect(leader.local.calls.length).toBe(leaderCallsBefore);
  });

  it("api forwarding - every write RPC is forwarded, and the leader's refusals come back unchanged", async () => {
    const leader = await startNode("n1", () => true, () => undefined);
    const toLeader = clientOf(leader);
    const follower = await startNode("n2", () => false, () => toLeader);
    const c = follower.client;
    await c.startVm({ name: "db" });
    await c.pauseVm({ name: "db" });
    await c.resumeVm({ name: "db" });
    await c.saveVm({ name: "db", savedState: "s" });
    await c.restoreVm({ name: "db", savedState: "s" });
    await c.stopVm({ name: "db", force: true });
    await c.deleteVm({ name: "db" });
    const { migrationId } = await c.migrate({ vm: "web" });
    leader.local.holdMigrations = true;
    await c.drainNode({ node: "n3" });
    await c.resumeNode({ node: "n3" });
    await c.addMember({ id: "n4", raftAddress: "127.0.0.1:8004" });
    await c.promoteMember({ id: "n4" });
    await c.removeMember({ id: "n4" });
    await c.cancelMigration({ migrationId });
    expect(leader.local.calls).toEqual([
      "startVm", "pauseVm", "resumeVm", "saveVm", "restoreVm", "stopVm", "deleteVm", "migrate", "drainNode", "resumeNode", "addMember",
      "promoteMember", "removeMember", "cancelMigration",
    ]);
    expect(follower.local.calls).toEqual([]);

    const e = await apiErrorOf(c.startVm({ name: "ghost" }));
    expect([e.code, e.message]).toEqual(["NOT_FOUND", "vm ghost not found"]);
    // Validation happens on the follower first: the leader never sees a malformed write.
    const before = leader.local.calls.length;
    expect((await apiErrorOf(c.createVm({ name: "Bad", memoryBytes: 4096, vcpus: 1, image: "i" }))).fields).toEqual(["name"]);
    expect(leader.local.calls.length).toBe(before);
  });

  it("api forwarding - streams are served locally", async () => {
    const leader = await startNode("n1", () => true, () => undefined);
    const toLeader = clientOf(leader);
    const follower = await startNode("n2", () => false, () => toLeader);
    const stream = follower.client.watchVmEvents();
    await vi.waitFor(() => expect(follower.local.streamsOpen).toBe(1));
    expect(leader.local.streamsOpen).toBe(0);
    stream.cancel();
    const console = follower.client.attachConsole("web");
    for await (const chunk of console.output) {
      expect(chunk.history).toBe(true);
      break;
    }
    expect(follower.local.calls).toEqual(["watchVmEvents", "attachConsole"]);
  });

  it("api forwarding - no known leader: UNAVAILABLE, retry", async () => {
    const follower = await startNode("n2", () => false, () => undefined);
    const e = await apiErrorOf(follower.client.createVm({ name: "x", memoryBytes: 4096, vcpus: 1, image: "i" }));
    expect(e.code).toBe("UNAVAILABLE");
    expect(e.message).toMatch(/knows no leader/);
    expect(follower.local.calls).toEqual([]);
  });

  it("api forwarding - a write is forwarded once: a second non-leader refuses instead of forwarding again", async () => {
    const c3 = await startNode("n3", () => true, () => undefined);
    const toC3 = clientOf(c3);
    // n2 believes n3 leads but is itself asked: it would forward to n3 if the call were fresh.
    const b2 = await startNode("n2", () => false, () => toC3);
    const toB2 = clientOf(b2);
    // n1 believes n2 leads (stale view).
    const a1 = await startNode("n1", () => false, () => toB2);
    const e = await apiErrorOf(a1.client.startVm({ name: "db" }));
    expect(e.code).toBe("UNAVAILABLE");
    expect(e.message).toMatch(/^forwarding to the leader at 127\.0\.0\.1:\d+: this node is not the leader and the request was already forwarded 1 time/);
    expect(c3.local.calls).toEqual([]);
    expect(b2.local.calls).toEqual([]);
    // Asked directly, n2 forwards to n3 as usual.
    expect((await b2.client.startVm({ name: "db" })).state).toBe("VM_STATE_RUNNING");
    expect(c3.local.calls).toEqual(["startVm"]);
  });

  it("api forwarding - an unreachable leader: UNAVAILABLE naming it", async () => {
    const leader = await startNode("n1", () => true, () => undefined);
    const toLeader = new ApiClient(leader.server.address, { token: TOKEN, timeoutMs: 2000 });
    clients.push(toLeader);
    await leader.server.close();
    const follower = await startNode("n2", () => false, () => toLeader);
    const e = await apiErrorOf(follower.client.drainNode({ node: "n1" }));
    expect(e.code).toBe("UNAVAILABLE");
    expect(e.message).toContain(`forwarding to the leader at ${leader.server.address}`);
  });

  it("api forwarding - the leader changes: writes follow isLeader() on every call", async () => {
    let leaderIsN1 = true;
    const n1 = await startNode("n1", () => leaderIsN1, () => (leaderIsN1 ? undefined : toN2));
    const toN1 = clientOf(n1);
    const n2 = await startNode("n2", () => !leaderIsN1, () => (leaderIsN1 ? toN1 : undefined));
    const toN2 = clientOf(n2);
    await n2.client.startVm({ name: "db" });
    expect(n1.local.calls).toEqual(["startVm"]);
    leaderIsN1 = false;
    await n1.client.startVm({ name: "db" });
    expect(n2.local.calls).toEqual(["startVm"]);
  });
});
