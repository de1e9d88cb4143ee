import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { ApiClient } from "../src/adapters/client.js";
import { loadApi } from "../src/adapters/proto.js";
import { INVALID_FIELDS_TRAILER_KEY } from "../src/errors.js";
import { methodOf } from "../src/methods.js";
import { GiB, MiB } from "./units.js";
import { FakeBackend } from "./fake-backend.js";
import { apiErrorOf, type Harness, startHarness, TOKEN } from "./helpers.js";
import type { MigrationUpdate, VmEvent } from "../src/types.js";

describe("api server - every RPC through ApiClient", () => {
  let h: Harness;
  let client: ApiClient;
  beforeAll(async () => {
    h = await startHarness();
    client = h.client;
  });
  afterAll(() => h.close());

  it("api server - Vms: create, get, list, set kvp, start, pause, resume, save, restore, stop, delete", async () => {
    const created = await client.createVm({ name: "app-1", memoryBytes: 64 * MiB, vcpus: 2, image: "guests/echo.elf", bootMode: "BOOT_MODE_SBI", bootargs: "console=hvc0" });
    expect(created).toMatchObject({
      name: "app-1",
      state: "VM_STATE_STOPPED",
      desiredState: "VM_DESIRED_STATE_STOPPED",
      owner: "n1",
      epoch: 1,
      spec: {
        memoryBytes: 64 * MiB, vcpus: 2, image: "guests/echo.elf", bootMode: "BOOT_MODE_SBI", bootargs: "console=hvc0", antiAffinityGroup: "",
        priority: "VM_PRIORITY_NORMAL", restartPolicy: "RESTART_POLICY_RESTART",
      },
    });
    // The backend got every field, defaults filled in by the wire.
    expect(h.backend.vms.get("app-1")?.spec.priority).toBe("VM_PRIORITY_NORMAL");
    expect(await client.getVm({ name: "app-1" })).toEqual(created);
    const all = await client.listVms();
    expect(all.vms.map((v) => v.name)).toEqual(["app-1", "db", "web"]);
    const onN2 = await client.listVms({ node: "n2" });
    expect(onN2.vms.map((v) => v.name)).toEqual(["db"]);
    const running = await client.listVms({ state: "VM_STATE_RUNNING" });
    expect(running.vms.map((v) => v.name)).toEqual(["web"]);

    expect((await client.setVmKvp({ name: "app-1", key: "app.port", value: "8080" })).hostKvp).toEqual({ "app.port": "8080" });
    expect((await client.getVm({ name: "app-1" })).hostKvp).toEqual({ "app.port": "8080" });
    expect((await client.setVmKvp({ name: "app-1", key: "app.port", value: "ignored", delete: true })).hostKvp).toEqual({});
    expect((await client.getVm({ name: "app-1" })).hostKvp).toEqual({});

    expect((await client.startVm({ name: "app-1" })).state).toBe("VM_STATE_RUNNING");
    expect((await client.pauseVm({ name: "app-1" })).state).toBe("VM_STATE_PAUSED");
    expect((await client.resumeVm({ name: "app-1" })).state).toBe("VM_STATE_RUNNING");
    const saved = await client.saveVm({ name: "app-1", savedState: "before-upgrade" });
    expect(saved).toMatchObject({ savedState: "before-upgrade", sizeBytes: 64 * MiB + 4096, vm: { state: "VM_STATE_SAVED" } });
    expect((await client.restoreVm({ name: "app-1", savedState: "before-upgrade" })).state).toBe("VM_STATE_RUNNING");
    const stopped = await client.stopVm({ name: "app-1", timeoutMs: 5000 });
    expect(stopped).toMatchObject({ state: "VM_STATE_STOPPED", desiredState: "VM_DESIRED_STATE_STOPPED" });
    expect(await client.deleteVm({ name: "app-1" })).toEqual({});
    expect((await apiErrorOf(client.getVm({ name: "app-1" }))).code).toBe("NOT_FOUND");
  });

  it("api server - Vms: the backend's refusals arrive with their code and message", async () => {
    const exists = await apiErrorOf(client.createVm({ name: "web", memoryBytes: 4096, vcpus: 1, image: "x" }));
    expect([exists.code, exists.message]).toEqual(["ALREADY_EXISTS", "vm web already exists"]);
    const full = await apiErrorOf(client.createVm({ name: "huge", memoryBytes: 2 * GiB, vcpus: 1, image: "x" }));
    expect(full.code).toBe("RESOURCE_EXHAUSTED");
    const running = await apiErrorOf(client.startVm({ name: "web" }));
    expect([running.code, running.message]).toEqual(["FAILED_PRECONDITION", "vm web is already running"]);
  });

  it("api server - Migrations: migrate, watch to the result, get, list", async () => {
    const started = await client.migrate({ vm: "web", targetNode: "n2", downtimeLimitMs: 200, bandwidthLimitBytesPerSecond: 125_000_000 });
    expect(started).toEqual({ migrationId: "m1", targetNode: "n2" });
    const inFlight = await client.getMigration({ migrationId: "m1" });
    expect(inFlight).toMatchObject({
      id: "m1", vm: "web", sourceNode: "n1", targetNode: "n2", result: null,
      options: { kind: "MIGRATION_KIND_LIVE", downtimeLimitMs: 200, bandwidthLimitBytesPerSecond: 125_000_000, maxRounds: 30, policy: "NO_CONVERGENCE_POLICY_AUTO_CONVERGE" },
    });
    const updates: MigrationUpdate[] = [];
    for await (const u of client.watchMigration({ migrationId: "m1" })) updates.push(u);
    expect(updates.map((u) => (u.update === "progress" ? `${u.progress.phase}#${u.progress.round}` : `result ok=${u.result.ok}`))).toEqual([
      "MIGRATION_PHASE_PRECOPY#1", "MIGRATION_PHASE_PRECOPY#2", "MIGRATION_PHASE_STOP_AND_COPY#3", "result ok=true",
    ]);
    const last = updates.at(-1)!;
    expect(last.update === "result" && last.result).toMatchObject({ ok: true, totalMs: 420, downtimeMs: 12, bytesSent: 80 * MiB, rounds: 3, failureReason: "" });
    const done = await client.getMigration({ migrationId: "m1" });
    expect(done.result?.ok).toBe(true);
    expect((await client.getVm({ name: "web" })).owner).toBe("n2");
    expect((await client.listMigrations({ vm: "web" })).migrations.map((m) => m.id)).toEqual(["m1"]);
    expect((await client.listMigrations({ activeOnly: true })).migrations).toEqual([]);
    // Watching an ended migration: only its result.
    const again: MigrationUpdate[] = [];
    for await (const u of client.watchMigration({ migrationId: "m1" })) again.push(u);
    expect(again.map((u) => u.update)).toEqual(["result"]);
  });

  it("api server - Migrations: cancel ends the migration, the watcher sees the cancelled result", async () => {
    h.backend.holdMigrations = true;
    try {
      const { migrationId } = await client.migrate({ vm: "db", kind: "MIGRATION_KIND_QUICK" });
      const stream = client.watchMigration({ migrationId });
      const seen: MigrationUpdate[] = [];
      let cancelled = false;
      for await (const u of stream) {
        seen.push(u);
        if (u.update === "progress" && u.progress.round === 3 && !cancelled) {
          cancelled = true;
          const m = await client.cancelMigration({ migrationId });
          expect(m.result).toMatchObject({ ok: false, cancelled: true, failureReason: "cancelled" });
        }
      }
      const last = seen.at(-1)!;
      expect(last.update === "result" && last.result).toMatchObject({ ok: false, cancelled: true });
      expect((await apiErrorOf(client.cancelMigration({ migrationId }))).code).toBe("FAILED_PRECONDITION");
    } finally {
      h.backend.holdMigrations = false;
    }
  });

  it("api server - Nodes: list, drain, resume", async () => {
    const nodes = await client.listNodes();
    expect(nodes.nodes.map((n) => `${n.id}:${n.state}`)).toEqual(["n1:NODE_STATE_ACTIVE", "n2:NODE_STATE_ACTIVE", "n3:NODE_STATE_DRAINED"]);
    expect(nodes.nodes[0]).toMatchObject({ capacity: { memoryBytes: GiB, vcpus: 4 }, leaseLive: true, labels: { zone: "a" } });
    expect((await client.listNodes({ state: "NODE_STATE_DRAINED" })).nodes.map((n) => n.id)).toEqual(["n3"]);
    expect((await client.resumeNode({ node: "n3" })).state).toBe("NODE_STATE_ACTIVE");
    expect((await client.drainNode({ node: "n3" })).state).toBe("NODE_STATE_DRAINED");
    expect((await apiErrorOf(client.drainNode({ node: "n9" }))).code).toBe("NOT_FOUND");
  });

  it("api server - Cluster: status, members, add, promote, remove", async () => {
    const status = await client.clusterStatus();
    expect(status).toMatchObject({ clusterId: "test-cluster", leaderId: "n1", term: 3, commitIndex: 42, nodeCount: 3 });
    expect(status.members.map((m) => m.role)).toEqual(["MEMBER_ROLE_LEADER", "MEMBER_ROLE_FOLLOWER", "MEMBER_ROLE_FOLLOWER"]);
    expect(status.consolidation.vmsPerNode).toBeGreaterThan(0);
    expect((await client.listMembers()).members.map((m) => m.id)).toEqual(["n1", "n2", "n3"]);
    const learner = await client.addMember({ id: "n4", raftAddress: "127.0.0.1:8004", apiAddress: "127.0.0.1:7004" });
    expect(learner).toMatchObject({ id: "n4", role: "MEMBER_ROLE_LEARNER" });
    expect((await client.promoteMember({ id: "n4" })).role).toBe("MEMBER_ROLE_FOLLOWER");
    expect((await apiErrorOf(client.promoteMember({ id: "n4" }))).code).toBe("FAILED_PRECONDITION");
    expect(await client.removeMember({ id: "n4" })).toEqual({});
    expect((await apiErrorOf(client.removeMember({ id: "n4" }))).code).toBe("NOT_FOUND");
  });
});

describe("api server - errors", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h.close());
  afterEach(() => {
    h.backend.explodeOn = null;
    h.backend.hangOn = null;
  });

  it("api server - an unknown VM is NOT_FOUND for every call that names one", async () => {
    const c = h.client;
    const calls: Promise<unknown>[] = [
      c.getVm({ name: "ghost" }), c.startVm({ name: "ghost" }), c.stopVm({ name: "ghost" }), c.pauseVm({ name: "ghost" }),
      c.resumeVm({ name: "ghost" }), c.saveVm({ name: "ghost", savedState: "s" }), c.restoreVm({ name: "ghost", savedState: "s" }),
      c.deleteVm({ name: "ghost" }), c.setVmKvp({ name: "ghost", key: "k", value: "v" }), c.migrate({ vm: "ghost" }),
    ];
    for (const call of calls) {
      const e = await apiErrorOf(call);
      expect(e.code).toBe("NOT_FOUND");
      expect(e.message).toBe("vm ghost not found");
    }
  });

  it("api server - a plain Error from the backend becomes INTERNAL without its message, and is logged", async () => {
    h.backend.explodeOn = "listVms";
    const e = await apiErrorOf(h.client.listVms());
    expect(e.code).toBe("INTERNAL");
    expect(e.message).not.toContain("hunter2");
    expect(e.message).toMatch(/internal error/);
    const logged = h.logger.entries.find((x) => x.level === "error" && x.fields.method === "Vms/List");
    expect((logged?.fields.err as Error).message).toContain("hunter2");
  });

  it("api server - a backend method that throws synchronously is INTERNAL too", async () => {
    const backend = new FakeBackend();
    backend.clusterStatus = () => {
      throw new TypeError("cannot read hidden.field");
    };
    const other = await startHarness({ backend });
    try {
      const e = await apiErrorOf(other.client.clusterStatus());
      expect(e.code).toBe("INTERNAL");
      expect(e.message).not.toContain("hidden");
    } finally {
      await other.close();
    }
  });

  it("api server - the call's deadline ends a hanging backend call and aborts its signal", async () => {
    h.backend.hangOn = "getVm";
    const before = h.backend.contexts.length;
    const e = await apiErrorOf(h.client.getVm({ name: "web" }, { timeoutMs: 100 }));
    expect(e.code).toBe("DEADLINE_EXCEEDED");
    const context = h.backend.contexts[before]!;
    expect(context.deadlineMs).not.toBeNull();
    await vi.waitFor(() => expect(context.signal.aborted).toBe(true));
  });

  it("api server - an aborted signal cancels the call: CANCELLED, and the backend's signal aborts", async () => {
    h.backend.hangOn = "listNodes";
    const before = h.backend.contexts.length;
    const controller = new AbortController();
    const pending = h.client.listNodes({}, { signal: controller.signal });
    await vi.waitFor(() => expect(h.backend.contexts.length).toBe(before + 1));
    controller.abort();
    expect((await apiErrorOf(pending)).code).toBe("CANCELLED");
    await vi.waitFor(() => expect(h.backend.contexts[before]!.signal.aborted).toBe(true));
  });

  it("api server - onRequest counts every call by method and code, with its duration", async () => {
    h.requests.length = 0;
    await h.client.getVm({ name: "web" });
    await apiErrorOf(h.client.getVm({ name: "nope" }));
    await apiErrorOf(h.client.getVm({ name: "Bad Name" }));
    await apiErrorOf(h.connect({ token: "wrong" }).getVm({ name: "web" }));
    expect(h.requests.map((r) => `${r.method} ${r.code}`)).toEqual([
      "Vms/Get OK", "Vms/Get NOT_FOUND", "Vms/Get INVALID_ARGUMENT", "Vms/Get UNAUTHENTICATED",
    ]);
    for (const r of h.requests) expect(r.durationMs).toBeGreaterThanOrEqual(0);
  });

  it("api server - a throwing onRequest hook is logged and does not break the call", async () => {
    const other = await startHarness({
      server: {
        onRequest: () => {
          throw new Error("metrics down");
        },
      },
    });
    try {
      expect((await other.client.getVm({ name: "web" })).name).toBe("web");
      expect(other.logger.entries.some((x) => x.level === "warn" && x.message.includes("onRequest"))).toBe(true);
    } finally {
      await other.close();
    }
  });
});

describe("api server - authentication", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h.close());

  it("api server - a call without a token is UNAUTHENTICATED, saying what to send", async () => {
    const anonymous = h.connect({});
    const e = await apiErrorOf(anonymous.listVms());
    expect(e.code).toBe("UNAUTHENTICATED");
    expect(e.message).toMatch(/missing credentials.*authorization: Bearer/);
    const stream = await apiErrorOf((async () => {
      for await (const _ of anonymous.watchVmEvents()) break;
    })());
    expect(stream.code).toBe("UNAUTHENTICATED");
    const console = anonymous.attachConsole("web");
    const consoleError = await apiErrorOf((async () => {
      for await (const _ of console.output) break;
    })());
    expect(consoleError.code).toBe("UNAUTHENTICATED");
  });

  it("api server - a wrong token is UNAUTHENTICATED, and the backend never sees the call", async () => {
    const before = h.backend.calls.length;
    const e = await apiErrorOf(h.connect({ token: `${TOKEN}x` }).createVm({ name: "x", memoryBytes: 4096, vcpus: 1, image: "i" }));
    expect(e.code).toBe("UNAUTHENTICATED");
    expect(e.message).toBe("wrong cluster token");
    const stream = h.connect({ token: "nope" }).watchMigration({ migrationId: "m1" });
    expect((await apiErrorOf((async () => {
      for await (const _ of stream) break;
    })())).code).toBe("UNAUTHENTICATED");
    expect(h.backend.calls.length).toBe(before);
  });

  it("api server - an authorization value that is not 'Bearer <token>' is UNAUTHENTICATED, saying so", async () => {
    const m = loadApi().method(methodOf("listNodes"));
    const raw = new grpc.Client(h.server.address, grpc.credentials.createInsecure());
    const call = (value: string): Promise<grpc.ServiceError | null> => new Promise((resolve) => {
      const metadata = new grpc.Metadata();
      metadata.set("authorization", value);
      raw.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, {}, metadata, {}, (error) => resolve(error));
    });
    try {
      const basic = await call(`Basic ${TOKEN}`);
      expect([basic?.code, basic?.details]).toEqual([grpc.status.UNAUTHENTICATED, "the 'authorization' metadata must be 'Bearer <cluster token>'"]);
      expect((await call(`bearer ${TOKEN}`))).toBeNull();
      expect((await call("Bearer"))?.code).toBe(grpc.status.UNAUTHENTICATED);
    } finally {
      raw.close();
    }
  });

  it("api server - refuses to start without a way to authenticate callers", async () => {
    const { startApiServer } = await import("../src/adapters/server.js");
    await expect(startApiServer({ backend: new FakeBackend() })).rejects.toThrow(/clusterToken/);
    await expect(startApiServer({ backend: new FakeBackend(), clusterToken: "" })).rejects.toThrow(/non-empty string without whitespace/);
    await expect(startApiServer({ backend: new FakeBackend(), clusterToken: "two words" })).rejects.toThrow(/whitespace/);
  });
});

describe("api server - streams", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h.close());

  it("api server - WatchEvents delivers events in commit order and ends on cancel", async () => {
    const openBefore = h.backend.streamsOpen;
    const endedBefore = h.backend.streamsEnded;
    const stream = h.client.watchVmEvents();
    await vi.waitFor(() => expect(h.backend.streamsOpen).toBe(openBefore + 1));
    await h.client.createVm({ name: "w1", memoryBytes: 4096, vcpus: 1, image: "i", start: true });
    await h.client.pauseVm({ name: "w1" });
    await h.client.stopVm({ name: "w1", force: true });
    await h.client.deleteVm({ name: "w1" });
    const events: VmEvent[] = [];
    for await (const e of stream) {
      events.push(e);
      if (events.length === 5) break;
    }
    expect(events.map((e) => (e.event === "stateChanged" ? `${e.vm} ${e.stateChanged.state}` : `${e.vm} ${e.event}`))).toEqual([
      "w1 created", "w1 VM_STATE_RUNNING", "w1 VM_STATE_PAUSED", "w1 VM_STATE_STOPPED", "w1 deleted",
    ]);
    const sequences = events.map((e) => e.sequence);
    expect(sequences).toEqual([...sequences].sort((a, b) => a - b));
    const created = events[0]!;
    expect(created.event === "created" && created.created.vm.name).toBe("w1");
    // Leaving the loop cancelled the call: the backend's iterable ended.
    await vi.waitFor(() => expect(h.backend.streamsEnded).toBe(endedBefore + 1));
    expect(h.backend.streamsOpen).toBe(openBefore);
    const context = h.backend.contexts.findLast((c) => c.method === "Vms/WatchEvents")!;
    expect(context.signal.aborted).toBe(true);
  });

  it("api server - WatchEvents filtered by VM, ended by cancel() while waiting", async () => {
    const endedBefore = h.backend.streamsEnded;
    const openBefore = h.backend.streamsOpen;
    const stream = h.client.watchVmEvents({ vm: "db" });
    await vi.waitFor(() => expect(h.backend.streamsOpen).toBe(openBefore + 1));
    await h.client.startVm({ name: "db" });
    await h.client.createVm({ name: "other", memoryBytes: 4096, vcpus: 1, image: "i" });
    await h.client.stopVm({ name: "db" });
    const seen: string[] = [];
    const reading = (async () => {
      for await (const e of stream) {
        seen.push(e.event === "stateChanged" ? e.stateChanged.state : e.event);
      }
    })();
    await vi.waitFor(() => expect(seen).toEqual(["VM_STATE_RUNNING", "VM_STATE_STOPPED"]));
    stream.cancel();
    await reading; // ends without an error
    await vi.waitFor(() => expect(h.backend.streamsEnded).toBe(endedBefore + 1));
  });

  it("api server - a migration Watch delivers its updates in order and ends on cancel", async () => {
    h.backend.holdMigrations = true;
    try {
      const endedBefore = h.backend.streamsEnded;
      const { migrationId } = await h.client.migrate({ vm: "web", targetNode: "n2" });
      const rounds: number[] = [];
      for await (const u of h.client.watchMigration({ migrationId })) {
        if (u.update === "progress") rounds.push(u.progress.round);
        if (rounds.length === 3) break;
      }
      expect(rounds).toEqual([1, 2, 3]);
      await vi.waitFor(() => expect(h.backend.streamsEnded).toBe(endedBefore + 1));
      // The migration itself goes on: only the watch ended.
      expect((await h.client.getMigration({ migrationId })).result).toBeNull();
      await h.client.cancelMigration({ migrationId });
    } finally {
      h.backend.holdMigrations = false;
    }
  });

  it("api server - a stream's refusal before its first message arrives as the error (NOT_FOUND)", async () => {
    const e = await apiErrorOf((async () => {
      for await (const _ of h.client.watchMigration({ migrationId: "m404" })) break;
    })());
    expect([e.code, e.message]).toEqual(["NOT_FOUND", "migration m404 not found"]);
  });

  it("api server - Console replays the history first, then echoes what is typed", async () => {
    const console = h.client.attachConsole("web");
    const output = console.output[Symbol.asyncIterator]();
    const first = await output.next();
    expect(first.done).toBe(false);
    expect(first.value).toMatchObject({ history: true });
    expect(Buffer.from(first.value!.data).toString()).toBe("boot ok\r\n$ ");
    console.write("ls\r");
    const echo = await output.next();
    expect(echo.value).toMatchObject({ history: false });
    expect(Buffer.from(echo.value!.data).toString()).toBe("ls\r");
    console.write(new Uint8Array([0x03]));
    expect([...(await output.next()).value!.data]).toEqual([0x03]);
    // Half-closing the input ends the fake's echo loop, which ends the call cleanly.
    console.end();
    expect((await output.next()).done).toBe(true);
    const context = h.backend.contexts.findLast((c) => c.method === "Vms/Console")!;
    expect(context.method).toBe("Vms/Console");
  });

  it("api server - Console: an unknown VM is NOT_FOUND, a missing VM name INVALID_ARGUMENT", async () => {
    const unknown = h.client.attachConsole("ghost");
    const e = await apiErrorOf((async () => {
      for await (const _ of unknown.output) break;
    })());
    expect(e.code).toBe("NOT_FOUND");
    const unnamed = h.client.attachConsole("");
    const invalid = await apiErrorOf((async () => {
      for await (const _ of unnamed.output) break;
    })());
    expect(invalid.code).toBe("INVALID_ARGUMENT");
    expect(invalid.fields).toEqual(["vm"]);
  });

  it("api server - Console: input naming another VM ends the call with INVALID_ARGUMENT", async () => {
    // The client never sends this: speak to the server directly.
    const spec = methodOf("attachConsole");
    const m = loadApi().method(spec);
    const raw = new grpc.Client(h.server.address, grpc.credentials.createInsecure());
    try {
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${TOKEN}`);
      const call = raw.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, metadata, {});
      const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
      call.on("error", () => undefined);
      call.on("data", () => undefined);
      call.write({ vm: "web", data: Buffer.alloc(0) });
      call.write({ vm: "db", data: Buffer.from("x") });
      const s = await status;
      expect(s.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(s.details).toMatch(/^vm: must be empty or "web"/);
      expect(s.metadata.get(INVALID_FIELDS_TRAILER_KEY)).toEqual(["vm"]);
    } finally {
      raw.close();
    }
  });

  it("api server - detaching a console cancels the call and ends the backend's output", async () => {
    const console = h.client.attachConsole("web");
    const output = console.output[Symbol.asyncIterator]();
    await output.next();
    console.cancel();
    expect((await output.next()).done).toBe(true);
  });

  it("api server - close() ends open streams with UNAVAILABLE", async () => {
    const other = await startHarness();
    const stream = other.client.watchVmEvents();
    await vi.waitFor(() => expect(other.backend.streamsOpen).toBe(1));
    const reading = apiErrorOf((async () => {
      for await (const _ of stream) {
        // nothing is published
      }
    })());
    await other.server.close();
    const e = await reading;
    expect(e.code).toBe("UNAVAILABLE");
    expect(e.message).toMatch(/shutting down/);
    await vi.waitFor(() => expect(other.backend.streamsEnded).toBe(1));
    await other.close();
  });
});
