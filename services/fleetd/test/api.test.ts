/**
 * The management API of fleetd, call by call, against one real 3-node cluster (`LocalCluster`):
 * every RPC of Vms, Migrations, Nodes and Cluster, each success read back through other calls (on
 * nodes that do not lead too) and each refusal with its status code and the field or state it names.
 *
 * Writes go through a follower (forwarded to the leader) and are read back on the other follower.
 * The tests run in order on the shared cluster and remove the VMs they no longer need.
 *
 * The last block ("documented behaviour") checks further promises of the .proto files; a failure
 * there is a fleetd bug, named by the test.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  API_METHODS, API_PACKAGE, ApiClient, ApiError, type ApiErrorCode, type ApiStream, type CreateVmInput, loadApi, type MethodSpec, methodPath,
  type Migration, type MigrationUpdate, type Vm, type VmEvent,
} from "@hyperfleet/api";
import { sleep, startJoiner, until } from "./helpers.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, LocalCluster, stopProcess, type LocalNode } from "../src/local-cluster.js";

const MIB = 2 ** 20;
const UNKNOWN_MIGRATION = "987654321";
const BANNER = "dirtier: rate=20 pages/s, working set 1 MiB (256 pages)";

const dir = mkdtempSync(join(tmpdir(), "fleetd-api-"));
let cluster: LocalCluster | undefined;
const clients: ApiClient[] = [];
const apis = new Map<string, ApiClient>();
const openStreams: { cancel(): void }[] = [];
/** fleetd processes started here besides the cluster's. */
const extraProcesses: ChildProcess[] = [];
let leader: LocalNode;
/** The two nodes that do not lead: writes go through the first, reads come from the second. */
let followers: [LocalNode, LocalNode];

function nodes(): readonly LocalNode[] {
  return cluster!.nodes;
}

function byId(id: string): LocalNode {
  const n = nodes().find((x) => x.id === id);
  if (n === undefined) throw new Error(`no node ${JSON.stringify(id)}`);
  return n;
}

function otherThan(...ids: string[]): LocalNode {
  const n = nodes().find((x) => !ids.includes(x.id));
  if (n === undefined) throw new Error(`no node other than ${ids.join(", ")}`);
  return n;
}

/** The authenticated client of a node (one per node). */
function api(node: LocalNode): ApiClient {
  let c = apis.get(node.id);
  if (c === undefined) {
    c = new ApiClient(node.apiAddress, { token: cluster!.token, timeoutMs: 10_000 });
    clients.push(c);
    apis.set(node.id, c);
  }
  return c;
}

/** A client with the given credentials (none when `token` is undefined). */
function rawClient(address: string, token: string | undefined): ApiClient {
  const c = new ApiClient(address, token === undefined ? { timeoutMs: 5000 } : { token, timeoutMs: 5000 });
  clients.push(c);
  return c;
}

/** Writes: through a follower, which forwards them to the leader. */
function writer(): ApiClient {
  return api(followers[0]);
}

/** Reads: on the other follower. */
function reader(): ApiClient {
  return api(followers[1]);
}

/** A small dirtier guest: 4 MiB, one vCPU, 20 pages/s over 1 MiB, a heartbeat line every second. */
function small(name: string, start: boolean): CreateVmInput {
  return { name, memoryBytes: 4 * MIB, vcpus: 1, image: "dirtier", bootargs: "rate=20 ws=1", start };
}

/**
 * Expects `call` to be refused with `code`, its message matching `mentions`. With `soft`, a
 * mismatch is recorded and the test goes on.
 */
async function refused(call: Promise<unknown>, code: ApiErrorCode, mentions?: string | RegExp, soft = false): Promise<ApiError | undefined> {
  const check = (value: unknown, message?: string) => (soft ? expect.soft(value, message) : expect(value, message));
  const outcome = await call.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));
  if (outcome.ok) {
    check({ succeeded: outcome.value }, `expected a refusal with ${code}`).toBeUndefined();
    return undefined;
  }
  if (!(outcome.error instanceof ApiError)) throw outcome.error;
  const e = outcome.error;
  check({ code: e.code, message: e.message }).toEqual({ code, message: mentions === undefined ? expect.any(String) : expect.stringMatching(mentions) });
  return e;
}

/** Expects a stream to fail with `code` before its first message (bounded). */
async function streamRefused(stream: AsyncIterable<unknown>, cancel: () => void, code: ApiErrorCode, mentions?: string | RegExp, timeoutMs = 5000): Promise<ApiError> {
  const first = stream[Symbol.asyncIterator]().next().then((r) => ({ r, error: undefined }), (error: unknown) => ({ r: undefined, error }));
  const outcome = await Promise.race([first, sleep(timeoutMs).then(() => "late" as const)]);
  cancel();
  if (outcome === "late") throw new Error(`the stream neither failed nor answered within ${timeoutMs} ms (expected ${code})`);
  expect(outcome.r, `expected the stream to fail with ${code}`).toBeUndefined();
  expect(outcome.error).toBeInstanceOf(ApiError);
  const e = outcome.error as ApiError;
  expect({ code: e.code, message: e.message }).toEqual({ code, message: mentions === undefined ? expect.any(String) : expect.stringMatching(mentions) });
  return e;
}

interface Collected<T> {
  readonly items: T[];
  error: unknown;
  ended: boolean;
  readonly done: Promise<void>;
  stop(): void;
}

/** Reads a stream in the background. */
function collect<T>(stream: ApiStream<T>): Collected<T> {
  const items: T[] = [];
  openStreams.push(stream);
  const c: { items: T[]; error: unknown; ended: boolean; done: Promise<void>; stop(): void } = {
    items, error: undefined, ended: false, done: Promise.resolve(), stop: () => stream.cancel(),
  };
  c.done = (async () => {
    try {
      for await (const x of stream) items.push(x);
    } catch (e) {
      c.error = e;
    } finally {
      c.ended = true;
    }
  })();
  return c;
}

/** Waits (bounded) until `ok` holds of the VM as `client`'s node sees it. */
async function vmWhere(client: ApiClient, name: string, what: string, ok: (vm: Vm) => boolean, timeoutMs = 15_000): Promise<Vm> {
  let last: Vm | undefined;
  try {
    return await until(`${name} ${what} (seen by ${client.address})`, timeoutMs, async () => {
      last = await client.getVm({ name });
      return ok(last) ? last : undefined;
    });
  } catch (e) {
    const seen = last === undefined ? "nothing" : JSON.stringify({
      state: last.state, desiredState: last.desiredState, owner: last.owner, epoch: last.epoch, migrationId: last.migrationId, savedState: last.savedState,
    });
    throw new Error(`${(e as Error).message}; last seen: ${seen}`, { cause: e });
  }
}

const isRunning = (vm: Vm): boolean => vm.state === "VM_STATE_RUNNING" && vm.desiredState === "VM_DESIRED_STATE_RUNNING" && vm.migrationId === "";

/** Waits until `client`'s node no longer knows the VM. */
async function gone(client: ApiClient, name: string, timeoutMs = 10_000): Promise<void> {
  await until(`${name} gone (seen by ${client.address})`, timeoutMs, async () => {
    try {
      await client.getVm({ name });
      return undefined;
    } catch (e) {
      return e instanceof ApiError && e.code === "NOT_FOUND" ? true : undefined;
    }
  });
}

/** Instructions retired by `vm` on `node` (from its /metrics), or null when the node has no such partition. */
async function instructions(node: LocalNode, vm: string): Promise<number | null> {
  const res = await fetch(`http://${node.httpAddress}/metrics`, { signal: AbortSignal.timeout(3000) });
  const line = (await res.text()).split("\n").find((l) => l.startsWith("hyperfleet_vm_instructions_total{") && l.includes(`vm="${vm}"`));
  return line === undefined ? null : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** Waits until `vm`'s instruction count grows on `node`; the grown count. */
async function advancing(node: LocalNode, vm: string, timeoutMs = 10_000): Promise<number> {
  const first = await until(`${vm} in the metrics of ${node.id}`, timeoutMs, async () => (await instructions(node, vm)) ?? undefined);
  return until(`${vm} advancing on ${node.id}`, timeoutMs, async () => {
    const n = await instructions(node, vm);
    return n !== null && n > first ? n : undefined;
  });
}

/** Waits until `node` has no partition of `vm`. */
async function noPartition(node: LocalNode, vm: string, timeoutMs = 10_000): Promise<void> {
  await until(`no partition of ${vm} on ${node.id}`, timeoutMs, async () => ((await instructions(node, vm)) === null ? true : undefined));
}

function heartbeats(text: string): number[] {
  return [...text.matchAll(/heartbeat (\d+) \(/g)].map((m) => Number(m[1]));
}

interface ConsoleRead {
  history: string;
  live: string;
  /** A history chunk came after a live one. */
  historyAfterLive: boolean;
}

/** Attaches to `vm`'s console on `node` and reads until `enough(history, live)` (bounded); then detaches. */
async function readConsole(node: LocalNode, vm: string, enough: (history: string, live: string) => boolean, timeoutMs = 8000): Promise<ConsoleRead> {
  const conn = api(node).attachConsole(vm);
  const read: ConsoleRead = { history: "", live: "", historyAfterLive: false };
  const reading = (async () => {
    for await (const chunk of conn.output) {
      const text = Buffer.from(chunk.data).toString("utf8");
      if (chunk.history) {
        if (read.live !== "") read.historyAfterLive = true;
        read.history += text;
      } else {
        read.live += text;
      }
      if (enough(read.history, read.live)) return "enough" as const;
    }
    return "ended" as const;
  })();
  try {
    const outcome = await Promise.race([reading, sleep(timeoutMs).then(() => "late" as const)]);
    if (outcome !== "enough") {
      throw new Error(`console of ${vm} on ${node.id}: ${outcome} before enough was read; history ${JSON.stringify(read.history.slice(-300))}, live ${JSON.stringify(read.live.slice(-300))}`);
    }
    return read;
  } finally {
    conn.cancel();
    await Promise.race([reading.catch(() => undefined), sleep(1000)]);
  }
}

/**
 * Calls the RPC of `spec` through `c`'s method of the same name with an empty request (the console:
 * an empty VM name); a unary call's promise, or a stream and how to cancel it.
 */
function callWithEmptyRequest(c: ApiClient, spec: MethodSpec): { unary: Promise<unknown> } | { stream: AsyncIterable<unknown>; cancel: () => void } {
  if (spec.kind === "bidi") {
    const conn = c.attachConsole("");
    return { stream: conn.output, cancel: () => conn.cancel() };
  }
  const method = (c as unknown as Record<string, unknown>)[spec.backend];
  if (typeof method !== "function") throw new Error(`ApiClient has no method ${String(spec.backend)}`);
  const result = (method as (request: object) => unknown).call(c, {});
  if (spec.kind === "server-stream") {
    const stream = result as ApiStream<unknown>;
    return { stream, cancel: () => stream.cancel() };
  }
  return { unary: result as Promise<unknown> };
}

/** Waits (bounded) for the migration to end as `client`'s node knows it. */
async function migrationEnded(client: ApiClient, migrationId: string, timeoutMs = 20_000): Promise<Migration> {
  return until(`migration ${migrationId} ended (seen by ${client.address})`, timeoutMs, async () => {
    const m = await client.getMigration({ migrationId });
    return m.result !== null ? m : undefined;
  });
}

/** Force-deletes every VM and waits until no node knows or runs one. */
async function removeAllVms(): Promise<void> {
  const w = writer();
  await until("every VM deleted", 30_000, async () => {
    const { vms } = await api(leader).listVms();
    for (const vm of vms) {
      if (vm.migrationId !== "") continue;
      await w.deleteVm({ name: vm.name, force: true }).catch((e: unknown) => {
        if (!(e instanceof ApiError && e.code === "NOT_FOUND")) throw e;
      });
    }
    return vms.length === 0 ? true : undefined;
  });
  for (const n of nodes()) {
    await until(`no VM known to ${n.id}`, 10_000, async () => ((await api(n).listVms()).vms.length === 0 ? true : undefined));
  }
}

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 3, dir, memoryMib: 128 });
  const leaderId = await until("a leader every node agrees on", 15_000, async () => {
    const seen = await Promise.all(nodes().map((n) => api(n).clusterStatus()));
    const id = seen[0]!.leaderId;
    return id !== "" && seen.every((s) => s.leaderId === id) ? id : undefined;
  });
  leader = byId(leaderId);
  const rest = nodes().filter((n) => n !== leader);
  followers = [rest[0]!, rest[1]!];
  for (const n of nodes()) {
    await until(`three live nodes seen by ${n.id}`, 10_000, async () => {
      const listed = (await api(n).listNodes()).nodes;
      return listed.length === 3 && listed.every((x) => x.leaseLive && x.state === "NODE_STATE_ACTIVE") ? true : undefined;
    });
  }
}, 60_000);

afterAll(async () => {
  for (const s of openStreams) s.cancel();
  for (const c of clients) c.close();
  await Promise.all(extraProcesses.map((p) => stopProcess(p, 2000, "SIGINT")));
  await cluster?.stop(3000);
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe("Vms", () => {
  it("Vms.Create - refuses a missing name or memory (INVALID_ARGUMENT), too much memory (RESOURCE_EXHAUSTED), a taken name (ALREADY_EXISTS); a created VM is seen on every node", async () => {
    const w = writer();
    const r = reader();
    let e = await refused(w.createVm({ ...small("", false) }), "INVALID_ARGUMENT", /^name: /);
    expect(e?.fields).toEqual(["name"]);
    e = await refused(w.createVm({ name: "api-nomem", vcpus: 1, image: "dirtier" } as CreateVmInput), "INVALID_ARGUMENT", /^memory_bytes: /);
    expect(e?.fields).toEqual(["memory_bytes"]);
    e = await refused(w.createVm({ ...small("api-odd", false), memoryBytes: 4 * MIB + 1 }), "INVALID_ARGUMENT", /memory_bytes/);
    expect(e?.fields).toEqual(["memory_bytes"]);
    // 256 MiB: below the 2 GiB limit, more than any node (128 MiB each) offers
    await refused(w.createVm({ ...small("api-huge", true), memoryBytes: 256 * MIB }), "RESOURCE_EXHAUSTED", /api-huge/);

    const created = await w.createVm(small("api-idle", false));
    expect(created).toMatchObject({
      name: "api-idle",
      spec: {
        memoryBytes: 4 * MIB, vcpus: 1, image: "dirtier", bootMode: "BOOT_MODE_BARE", bootargs: "rate=20 ws=1", antiAffinityGroup: "",
        priority: "VM_PRIORITY_NORMAL", restartPolicy: "RESTART_POLICY_RESTART",
      },
      desiredState: "VM_DESIRED_STATE_STOPPED", epoch: 1, pendingReason: "", migrationId: "", savedState: "",
    });
    expect(nodes().map((n) => n.id)).toContain(created.owner);
    expect(created.createdAtMs).toBeGreaterThan(0);
    for (const n of [followers[1], leader]) {
      const seen = await vmWhere(api(n), "api-idle", "stopped", (vm) => vm.state === "VM_STATE_STOPPED");
      expect({ owner: seen.owner, epoch: seen.epoch, createdAtMs: seen.createdAtMs, spec: seen.spec }).toEqual({
        owner: created.owner, epoch: 1, createdAtMs: created.createdAtMs, spec: created.spec,
      });
    }
    await refused(r.createVm(small("api-idle", true)), "ALREADY_EXISTS", /api-idle/);
    // the refused creations left nothing behind, the duplicate changed nothing
    for (const name of ["api-nomem", "api-odd", "api-huge"]) await refused(r.getVm({ name }), "NOT_FOUND", name);
    const after = await r.getVm({ name: "api-idle" });
    expect({ desiredState: after.desiredState, owner: after.owner, epoch: after.epoch }).toEqual({ desiredState: "VM_DESIRED_STATE_STOPPED", owner: created.owner, epoch: 1 });
    expect((await r.listVms()).vms.map((v) => v.name)).toEqual(["api-idle"]);
  });

  it("Vms.Start runs a VM on its owner, Vms.Stop turns it off, Vms.List filters by node and state", async () => {
    const w = writer();
    const r = reader();
    await w.createVm(small("api-run", false));
    const started = await w.startVm({ name: "api-run" });
    expect(started.desiredState).toBe("VM_DESIRED_STATE_RUNNING");
    const running = await vmWhere(r, "api-run", "running", isRunning);
    const owner = byId(running.owner);
    await advancing(owner, "api-run");
    for (const n of nodes().filter((x) => x !== owner)) expect(await instructions(n, "api-run")).toBeNull();

    const elsewhere = otherThan(owner.id);
    expect((await r.listVms({ node: owner.id })).vms.map((v) => v.name)).toContain("api-run");
    expect((await r.listVms({ node: elsewhere.id })).vms.map((v) => v.name)).not.toContain("api-run");
    const runningVms = (await r.listVms({ state: "VM_STATE_RUNNING" })).vms;
    expect(runningVms.map((v) => v.name)).toEqual(["api-run"]);
    const stoppedVms = (await r.listVms({ state: "VM_STATE_STOPPED" })).vms;
    expect(stoppedVms.map((v) => v.name)).toEqual(["api-idle"]);
    const both = (await r.listVms({ node: owner.id, state: "VM_STATE_RUNNING" })).vms;
    expect(both.map((v) => v.name)).toEqual(["api-run"]);
    expect((await r.listVms({ node: elsewhere.id, state: "VM_STATE_RUNNING" })).vms).toEqual([]);
    expect((await r.listVms()).vms.map((v) => v.name)).toEqual(["api-idle", "api-run"]);

    await refused(w.stopVm({ name: "api-run", force: true, timeoutMs: 1000 }), "INVALID_ARGUMENT", /^timeout_ms: /);
    const stopping = await w.stopVm({ name: "api-run" });
    expect(stopping.desiredState).toBe("VM_DESIRED_STATE_STOPPED");
    const stopped = await vmWhere(r, "api-run", "stopped", (vm) => vm.state === "VM_STATE_STOPPED");
    expect({ owner: stopped.owner, epoch: stopped.epoch }).toEqual({ owner: running.owner, epoch: running.epoch });
    await noPartition(owner, "api-run");
    // stopping a stopped VM succeeds and changes nothing
    const again = await w.stopVm({ name: "api-run", force: true });
    expect({ state: again.state, desiredState: again.desiredState, owner: again.owner, epoch: again.epoch }).toEqual({
      state: "VM_STATE_STOPPED", desiredState: "VM_DESIRED_STATE_STOPPED", owner: running.owner, epoch: running.epoch,
    });
    // a forced stop of a running VM
    await w.startVm({ name: "api-run" });
    await vmWhere(r, "api-run", "running again", isRunning);
    await advancing(owner, "api-run");
    await w.stopVm({ name: "api-run", force: true });
    await vmWhere(r, "api-run", "stopped by force", (vm) => vm.state === "VM_STATE_STOPPED");
    await noPartition(owner, "api-run");

    await refused(w.startVm({ name: "api-none" }), "NOT_FOUND", /api-none/);
    await refused(w.stopVm({ name: "api-none" }), "NOT_FOUND", /api-none/);
    await refused(r.getVm({ name: "api-none" }), "NOT_FOUND", /api-none/);
    await w.deleteVm({ name: "api-run" });
  });

  it("Vms.Pause stops the vCPUs and Vms.Resume runs them again; both refuse a stopped VM (FAILED_PRECONDITION)", async () => {
    const w = writer();
    const r = reader();
    await w.createVm(small("api-pause", true));
    const vm = await vmWhere(r, "api-pause", "running", isRunning);
    const owner = byId(vm.owner);
    await advancing(owner, "api-pause");

    const paused = await w.pauseVm({ name: "api-pause" });
    expect(paused.desiredState).toBe("VM_DESIRED_STATE_PAUSED");
    await vmWhere(r, "api-pause", "paused", (v) => v.state === "VM_STATE_PAUSED");
    const frozen = await instructions(owner, "api-pause");
    expect(frozen).not.toBeNull();
    await sleep(400);
    expect(await instructions(owner, "api-pause")).toBe(frozen);

    const resumed = await w.resumeVm({ name: "api-pause" });
    expect(resumed.desiredState).toBe("VM_DESIRED_STATE_RUNNING");
    const back = await vmWhere(r, "api-pause", "running again", isRunning);
    expect({ owner: back.owner, epoch: back.epoch }).toEqual({ owner: vm.owner, epoch: vm.epoch });
    expect(await advancing(owner, "api-pause")).toBeGreaterThan(frozen!);

    await refused(w.pauseVm({ name: "api-idle" }), "FAILED_PRECONDITION", /api-idle/);
    await refused(w.resumeVm({ name: "api-idle" }), "FAILED_PRECONDITION", /api-idle/);
    const idle = await r.getVm({ name: "api-idle" });
    expect({ state: idle.state, desiredState: idle.desiredState }).toEqual({ state: "VM_STATE_STOPPED", desiredState: "VM_DESIRED_STATE_STOPPED" });
    await refused(w.pauseVm({ name: "api-none" }), "NOT_FOUND", /api-none/);
    await refused(w.resumeVm({ name: "api-none" }), "NOT_FOUND", /api-none/);
    await w.deleteVm({ name: "api-pause", force: true });
  });

  it("Vms.Save writes a saved state and turns the VM off; Vms.Restore and Vms.Start run it again from there; the refusals", async () => {
    const w = writer();
    const r = reader();
    const name = "api-save";
    await w.createVm(small(name, true));
    const vm = await vmWhere(r, name, "running", isRunning);
    const owner = byId(vm.owner);
    await advancing(owner, name);
    const beforeSave = await readConsole(owner, name, (h, l) => heartbeats(h + l).length > 0);
    const lastBeat = Math.max(...heartbeats(beforeSave.history + beforeSave.live));
    const countBefore = (await instructions(owner, name))!;

    await refused(w.saveVm({ name: "api-idle", savedState: "never" }), "FAILED_PRECONDITION", /api-idle/);
    await refused(w.saveVm({ name: "api-none", savedState: "never" }), "NOT_FOUND", /api-none/);
    await refused(w.saveVm({ name, savedState: "Bad Name" }), "INVALID_ARGUMENT", /^saved_state: /);

    const saved = await w.saveVm({ name, savedState: "first" }, { timeoutMs: 30_000 });
    expect(saved.savedState).toBe("first");
    expect(saved.sizeBytes).toBeGreaterThan(0);
    expect({ state: saved.vm.state, desiredState: saved.vm.desiredState, savedState: saved.vm.savedState, owner: saved.vm.owner }).toEqual({
      state: "VM_STATE_SAVED", desiredState: "VM_DESIRED_STATE_SAVED", savedState: "first", owner: vm.owner,
    });
    const seen = await vmWhere(r, name, "saved", (v) => v.state === "VM_STATE_SAVED");
    expect({ desiredState: seen.desiredState, savedState: seen.savedState, owner: seen.owner, epoch: seen.epoch }).toEqual({
      desiredState: "VM_DESIRED_STATE_SAVED", savedState: "first", owner: vm.owner, epoch: vm.epoch,
    });
    expect((await r.listVms({ state: "VM_STATE_SAVED" })).vms.map((v) => v.name)).toEqual([name]);
    await noPartition(owner, name);
    expect(statSync(join(dir, owner.id, "saved-states", name, "first.hfsave")).size).toBe(saved.sizeBytes);

    await refused(w.restoreVm({ name, savedState: "missing" }), "NOT_FOUND", /missing/);
    await refused(w.restoreVm({ name: "api-none", savedState: "first" }), "NOT_FOUND", /api-none/);
    expect((await r.getVm({ name })).state).toBe("VM_STATE_SAVED");

    const restored = await w.restoreVm({ name, savedState: "first" }, { timeoutMs: 30_000 });
    expect({ state: restored.state, desiredState: restored.desiredState, owner: restored.owner }).toEqual({
      state: "VM_STATE_RUNNING", desiredState: "VM_DESIRED_STATE_RUNNING", owner: vm.owner,
    });
    await vmWhere(r, name, "running after the restore", (v) => isRunning(v) && v.owner === vm.owner);
    // it goes on from the saved state: its retired-instruction count and its heartbeats continue
    expect(await advancing(owner, name)).toBeGreaterThan(countBefore);
    const afterRestore = await readConsole(owner, name, (_h, l) => heartbeats(l).length > 0);
    expect(afterRestore.history + afterRestore.live).not.toContain(BANNER);
    expect(Math.min(...heartbeats(afterRestore.history + afterRestore.live))).toBeGreaterThan(lastBeat);

    await refused(w.restoreVm({ name, savedState: "first" }), "FAILED_PRECONDITION", /api-save/);
    expect(isRunning(await api(leader).getVm({ name }))).toBe(true);

    // Start of a saved VM restores it
    const lastBeat2 = Math.max(...heartbeats(afterRestore.history + afterRestore.live));
    const countBefore2 = (await instructions(owner, name))!;
    const saved2 = await w.saveVm({ name, savedState: "second" }, { timeoutMs: 30_000 });
    expect(saved2.sizeBytes).toBeGreaterThan(0);
    await vmWhere(r, name, "saved again", (v) => v.state === "VM_STATE_SAVED" && v.savedState === "second");
    await noPartition(owner, name);
    const startedAgain = await w.startVm({ name });
    expect(startedAgain.desiredState).toBe("VM_DESIRED_STATE_RUNNING");
    await vmWhere(r, name, "running after Start", (v) => isRunning(v) && v.owner === vm.owner);
    expect(await advancing(owner, name)).toBeGreaterThan(countBefore2);
    const afterStart = await readConsole(owner, name, (_h, l) => heartbeats(l).length > 0);
    expect(afterStart.history + afterStart.live).not.toContain(BANNER);
    expect(Math.min(...heartbeats(afterStart.history + afterStart.live))).toBeGreaterThan(lastBeat2);
    await w.deleteVm({ name, force: true });
  });

  it("Vms.Delete refuses a running VM without force (FAILED_PRECONDITION), removes it with force, refuses an unknown one (NOT_FOUND)", async () => {
    const w = writer();
    const r = reader();
    await w.createVm(small("api-del", true));
    const vm = await vmWhere(r, "api-del", "running", isRunning);
    const owner = byId(vm.owner);
    await advancing(owner, "api-del");

    await refused(w.deleteVm({ name: "api-del" }), "FAILED_PRECONDITION", /api-del/);
    expect(isRunning(await r.getVm({ name: "api-del" }))).toBe(true);
    await advancing(owner, "api-del");

    expect(await w.deleteVm({ name: "api-del", force: true })).toEqual({});
    await gone(r, "api-del");
    await gone(api(leader), "api-del");
    await noPartition(owner, "api-del");
    expect((await r.listVms()).vms.map((v) => v.name)).not.toContain("api-del");
    await refused(w.deleteVm({ name: "api-del" }), "NOT_FOUND", /api-del/);
    await refused(w.deleteVm({ name: "api-none", force: true }), "NOT_FOUND", /api-none/);

    // a stopped VM needs no force
    await w.createVm(small("api-del2", false));
    await w.deleteVm({ name: "api-del2" });
    await gone(r, "api-del2");
  });

  it("Vms.WatchEvents streams creation, placement, state changes, a migration and deletion, filtered by VM; an unknown VM is NOT_FOUND", async () => {
    const w = writer();
    const r = reader();
    const unknown = r.watchVmEvents({ vm: "api-none" });
    await streamRefused(unknown, () => unknown.cancel(), "NOT_FOUND", /api-none/);

    const all = collect(r.watchVmEvents({}));
    await sleep(500);
    await w.createVm(small("api-watch", true));
    const vm = await vmWhere(r, "api-watch", "running", isRunning);
    const one = collect(api(leader).watchVmEvents({ vm: "api-watch" }));
    await sleep(500);
    await w.createVm(small("api-noise", false));
    const target = otherThan(vm.owner);
    const started = await w.migrate({ vm: "api-watch", targetNode: target.id });
    await vmWhere(r, "api-watch", "moved", (v) => isRunning(v) && v.owner === target.id && v.epoch === 2);
    await w.stopVm({ name: "api-watch" });
    await vmWhere(r, "api-watch", "stopped", (v) => v.state === "VM_STATE_STOPPED");
    await w.deleteVm({ name: "api-watch" });
    await w.deleteVm({ name: "api-noise" });
    const deleted = (c: Collected<VmEvent>): boolean => c.items.some((e) => e.vm === "api-watch" && e.event === "deleted");
    await until("the deletion seen by both watchers", 10_000, async () => (deleted(all) && deleted(one) ? true : undefined));
    all.stop();
    one.stop();
    expect(all.error).toBeUndefined();
    expect(one.error).toBeUndefined();

    const sequences = all.items.map((e) => e.sequence);
    expect(sequences).toEqual([...sequences].sort((a, b) => a - b));
    expect(new Set(sequences).size).toBe(sequences.length);
    for (const e of all.items) expect(e.atMs).toBeGreaterThan(0);
    expect(all.items.some((e) => e.vm === "api-noise" && e.event === "created")).toBe(true);

    const mine = all.items.filter((e) => e.vm === "api-watch");
    const at = (p: (e: VmEvent) => boolean, what: string): number => {
      const i = mine.findIndex(p);
      expect(i, `${what} in ${JSON.stringify(mine)}`).toBeGreaterThanOrEqual(0);
      return i;
    };
    const created = at((e) => e.event === "created" && e.created.vm.name === "api-watch" && e.created.vm.spec.image === "dirtier", "created");
    const placed = at((e) => e.event === "ownerChanged" && e.ownerChanged.owner === vm.owner && e.ownerChanged.epoch === 1
      && e.ownerChanged.reason === "OWNER_CHANGE_REASON_PLACEMENT", "placed");
    const ran = at((e) => e.event === "stateChanged" && e.stateChanged.state === "VM_STATE_RUNNING", "running");
    const begun = at((e) => e.event === "migration" && e.migration.kind === "VM_MIGRATION_EVENT_KIND_STARTED" && e.migration.migrationId === started.migrationId
      && e.migration.sourceNode === vm.owner && e.migration.targetNode === target.id, "migration started");
    const completed = at((e) => e.event === "migration" && e.migration.kind === "VM_MIGRATION_EVENT_KIND_COMPLETED" && e.migration.migrationId === started.migrationId, "migration completed");
    const moved = at((e) => e.event === "ownerChanged" && e.ownerChanged.previousOwner === vm.owner && e.ownerChanged.owner === target.id
      && e.ownerChanged.epoch === 2 && e.ownerChanged.reason === "OWNER_CHANGE_REASON_MIGRATION", "owner changed by the migration");
    const stopped = at((e) => e.event === "stateChanged" && e.stateChanged.desiredState === "VM_DESIRED_STATE_STOPPED" && e.stateChanged.state === "VM_STATE_STOPPED", "stopped");
    const gone_ = at((e) => e.event === "deleted", "deleted");
    expect(created).toBeLessThanOrEqual(placed);
    expect(placed).toBeLessThan(ran);
    expect(ran).toBeLessThan(begun);
    expect(begun).toBeLessThan(completed);
    expect(begun).toBeLessThan(moved);
    expect(Math.max(completed, moved)).toBeLessThan(stopped);
    expect(stopped).toBeLessThan(gone_);

    // the filtered stream: this VM's events only, from when it was opened
    expect(one.items.length).toBeGreaterThan(0);
    expect(one.items.every((e) => e.vm === "api-watch")).toBe(true);
    const kinds = one.items.map((e) => (e.event === "migration" ? `migration:${e.migration.kind}` : e.event));
    expect(kinds).toEqual(expect.arrayContaining(["migration:VM_MIGRATION_EVENT_KIND_STARTED", "migration:VM_MIGRATION_EVENT_KIND_COMPLETED", "ownerChanged", "stateChanged", "deleted"]));
    expect(kinds).not.toContain("created");
  });

  it("Vms.Console replays the history, then streams live output; another node answers FAILED_PRECONDITION", async () => {
    const w = writer();
    const r = reader();
    await w.createVm(small("api-console", true));
    const vm = await vmWhere(r, "api-console", "running", isRunning);
    const owner = byId(vm.owner);
    const elsewhere = otherThan(owner.id);
    const conn = api(elsewhere).attachConsole("api-console");
    await streamRefused(conn.output, () => conn.cancel(), "FAILED_PRECONDITION", /api-console/);

    // the first heartbeat is printed about a second after the banner
    const first = await readConsole(owner, "api-console", (h, l) => heartbeats(h + l).length > 0);
    expect(first.history + first.live).toContain(BANNER);
    const second = await readConsole(owner, "api-console", (_h, l) => heartbeats(l).length > 0);
    expect(second.historyAfterLive).toBe(false);
    expect(second.history).toContain(BANNER);
    expect(second.history).toContain("dirtier: heartbeat 1 (");
    expect(Math.min(...heartbeats(second.live))).toBeGreaterThan(Math.max(...heartbeats(second.history)));
    await w.deleteVm({ name: "api-console", force: true });
  });

  it("Vms.SetKvp sets, replaces and deletes a host KVP value that every node reads back; refuses an unknown VM (NOT_FOUND), a bad key or value (INVALID_ARGUMENT naming it) and a caller without the token (UNAUTHENTICATED)", async () => {
    const w = writer();
    const r = reader();
    const name = "api-kvp";
    await w.createVm(small(name, false));
    const hostKvpOn = async (client: ApiClient, expected: Record<string, string>): Promise<void> => {
      await vmWhere(client, name, `host KVP ${JSON.stringify(expected)}`, (v) => JSON.stringify(v.hostKvp) === JSON.stringify(expected), 10_000);
    };

    const set = await w.setVmKvp({ name, key: "app.port", value: "8080" });
    expect(set.hostKvp).toEqual({ "app.port": "8080" });
    // the limits exactly: a 63-byte key (two-byte characters count twice) and a 255-byte value
    const longKey = `${"é".repeat(31)}k`;
    const longValue = "v".repeat(255);
    expect((await w.setVmKvp({ name, key: longKey, value: longValue })).hostKvp).toEqual({ "app.port": "8080", [longKey]: longValue });
    for (const n of [followers[1], leader]) await hostKvpOn(api(n), { "app.port": "8080", [longKey]: longValue });
    // a new value replaces the old one; an empty value is a value
    await w.setVmKvp({ name, key: "app.port", value: "9090" });
    await w.setVmKvp({ name, key: "app.empty", value: "" });
    await hostKvpOn(r, { "app.empty": "", "app.port": "9090", [longKey]: longValue });
    // delete removes the key (its value is ignored); deleting a key that is not set changes nothing
    const deleted = await w.setVmKvp({ name, key: longKey, value: "ignored", delete: true });
    expect(deleted.hostKvp).toEqual({ "app.empty": "", "app.port": "9090" });
    await w.setVmKvp({ name, key: "never.set", delete: true });
    await hostKvpOn(r, { "app.empty": "", "app.port": "9090" });
    await hostKvpOn(api(leader), { "app.empty": "", "app.port": "9090" });

    await refused(w.setVmKvp({ name: "api-none", key: "k", value: "v" }), "NOT_FOUND", /api-none/);
    await refused(r.getVm({ name: "api-none" }), "NOT_FOUND", /api-none/);
    const badKeys: [string, string][] = [["a=b", "a '='"], ["", "empty"], ["k".repeat(64), "64 bytes"], ["é".repeat(32), "64 bytes of UTF-8"], ["a\tb", "a control character"]];
    for (const [key, why] of badKeys) {
      const e = await refused(w.setVmKvp({ name, key, value: "v" }), "INVALID_ARGUMENT", /^key: must be 1 to 63 bytes/);
      expect(e?.fields, `a key with ${why}`).toEqual(["key"]);
    }
    for (const value of ["v".repeat(256), "é".repeat(128), "a\nb"]) {
      const e = await refused(w.setVmKvp({ name, key: "app.port", value }), "INVALID_ARGUMENT", /^value: must be at most 255 bytes/);
      expect(e?.fields).toEqual(["value"]);
    }
    const both = await refused(w.setVmKvp({ name: "Bad Name", key: "x=y", value: "v".repeat(300) }), "INVALID_ARGUMENT", /^name: .*; key: .*; value: /);
    expect(both?.fields).toEqual(["name", "key", "value"]);
    for (const token of [undefined, "not-the-token"]) {
      await refused(rawClient(followers[0].apiAddress, token).setVmKvp({ name, key: "app.port", value: "1" }), "UNAUTHENTICATED", token === undefined ? /credentials|authorization/ : /token/);
    }
    // none of the refusals changed anything, on any node
    for (const n of nodes()) expect((await api(n).getVm({ name })).hostKvp, `host KVP on ${n.id}`).toEqual({ "app.empty": "", "app.port": "9090" });
    await w.deleteVm({ name });
    await gone(r, name);
  });
});

/** Kept for the checks of the documented behaviour. */
let liveMigration: Migration | undefined;
let cancelEvents: VmEvent[] = [];
let cancelledMigrationId = "";

describe("Migrations", () => {
  it("Migrations.Migrate refuses the owner as target (INVALID_ARGUMENT), an unknown node or VM (NOT_FOUND); Cancel, Get and Watch refuse an unknown id (NOT_FOUND)", async () => {
    const w = writer();
    const r = reader();
    // 200 pages/s over 2 MiB: by the time it moves, megabytes to copy (the pages never written are not sent)
    await w.createVm({ ...small("api-mig", true), memoryBytes: 8 * MIB, bootargs: "rate=200 ws=2" });
    const vm = await vmWhere(r, "api-mig", "running", isRunning);
    await refused(w.migrate({ vm: "api-mig", targetNode: vm.owner }), "INVALID_ARGUMENT", /^target_node: /);
    await refused(w.migrate({ vm: "api-mig", targetNode: "n9" }), "NOT_FOUND", /n9/);
    await refused(w.migrate({ vm: "api-none" }), "NOT_FOUND", /api-none/);
    await refused(w.migrate({ vm: "api-mig", kind: "MIGRATION_KIND_QUICK", maxRounds: 3 }), "INVALID_ARGUMENT", /^max_rounds: /);
    await refused(w.cancelMigration({ migrationId: UNKNOWN_MIGRATION }), "NOT_FOUND", UNKNOWN_MIGRATION);
    await refused(w.cancelMigration({ migrationId: "not an id" }), "INVALID_ARGUMENT", /^migration_id: /);
    for (const n of nodes()) await refused(api(n).getMigration({ migrationId: UNKNOWN_MIGRATION }), "NOT_FOUND", UNKNOWN_MIGRATION);
    const watch = r.watchMigration({ migrationId: UNKNOWN_MIGRATION });
    await streamRefused(watch, () => watch.cancel(), "NOT_FOUND", UNKNOWN_MIGRATION);
    // nothing moved
    const after = await r.getVm({ name: "api-mig" });
    expect({ owner: after.owner, epoch: after.epoch, migrationId: after.migrationId }).toEqual({ owner: vm.owner, epoch: 1, migrationId: "" });
    expect((await r.listMigrations({ vm: "api-mig" })).migrations).toEqual([]);
  });

  it("Migrations.Migrate (live) moves a running VM; Watch shows progress then the result; Get and List report it on every node", async () => {
    const w = writer();
    const r = reader();
    const before = await vmWhere(r, "api-mig", "running", isRunning);
    const source = byId(before.owner);
    const target = otherThan(source.id);
    // 2 MiB/s: the copy lasts long enough for progress updates to be seen
    const bandwidth = 2 * MIB;
    const started = await w.migrate({ vm: "api-mig", targetNode: target.id, bandwidthLimitBytesPerSecond: bandwidth });
    expect(started.targetNode).toBe(target.id);
    expect(started.migrationId).not.toBe("");
    const watch = collect(api(otherThan(source.id, target.id)).watchMigration({ migrationId: started.migrationId }));
    await Promise.race([watch.done, sleep(30_000)]);
    expect(watch.ended, "the Watch stream ended after the result").toBe(true);
    expect(watch.error).toBeUndefined();
    const updates: MigrationUpdate[] = watch.items;
    expect(updates.every((u) => u.migrationId === started.migrationId)).toBe(true);
    expect(updates.filter((u) => u.update === "result")).toHaveLength(1);
    expect(updates.at(-1)?.update).toBe("result");
    expect(updates.filter((u) => u.update === "progress").length, JSON.stringify(updates)).toBeGreaterThan(0);
    const last = updates.at(-1);
    if (last?.update === "result") {
      expect(last.result).toMatchObject({ ok: true, failureReason: "", cancelled: false });
      expect(last.result.bytesSent).toBeGreaterThan(0);
      expect(last.result.rounds).toBeGreaterThan(0);
    }

    const after = await vmWhere(r, "api-mig", "on the target", (v) => isRunning(v) && v.owner === target.id);
    expect(after.epoch).toBe(before.epoch + 1);
    await advancing(target, "api-mig");
    await noPartition(source, "api-mig");

    for (const n of nodes()) {
      const m = await migrationEnded(api(n), started.migrationId);
      expect({ id: m.id, vm: m.vm, sourceNode: m.sourceNode, targetNode: m.targetNode, ok: m.result?.ok }).toEqual({
        id: started.migrationId, vm: "api-mig", sourceNode: source.id, targetNode: target.id, ok: true,
      });
      expect(m.options.kind).toBe("MIGRATION_KIND_LIVE");
      expect(m.options.bandwidthLimitBytesPerSecond).toBe(bandwidth);
      expect(m.progress.phase).toBe("MIGRATION_PHASE_DONE");
      expect(m.startedAtMs).toBeGreaterThan(0);
      expect(m.finishedAtMs).toBeGreaterThanOrEqual(m.startedAtMs);
      if (n === leader) liveMigration = m;
    }
    const listed = (await r.listMigrations({ vm: "api-mig" })).migrations;
    expect(listed.map((m) => m.id)).toEqual([started.migrationId]);
    expect((await r.listMigrations({ vm: "api-idle" })).migrations).toEqual([]);
    expect((await r.listMigrations({ activeOnly: true })).migrations.map((m) => m.id)).not.toContain(started.migrationId);
    expect((await r.listMigrations({})).migrations.map((m) => m.id)).toContain(started.migrationId);

    // an ended migration: Watch answers only the result; Cancel is refused
    const again = collect(r.watchMigration({ migrationId: started.migrationId }));
    await Promise.race([again.done, sleep(5000)]);
    expect(again.ended).toBe(true);
    expect(again.items.map((u) => u.update)).toEqual(["result"]);
    await refused(w.cancelMigration({ migrationId: started.migrationId }), "FAILED_PRECONDITION", started.migrationId);
  });

  it("Migrations.Migrate (quick, target chosen by the cluster) moves a running VM, which runs on the target", async () => {
    const w = writer();
    const r = reader();
    const before = await vmWhere(r, "api-mig", "running", isRunning);
    const source = byId(before.owner);
    const started = await w.migrate({ vm: "api-mig", kind: "MIGRATION_KIND_QUICK" });
    expect(started.targetNode).not.toBe(source.id);
    const target = byId(started.targetNode);
    const watch = collect(api(leader).watchMigration({ migrationId: started.migrationId }));
    await Promise.race([watch.done, sleep(30_000)]);
    const last = watch.items.at(-1);
    expect(last?.update).toBe("result");
    if (last?.update === "result") expect(last.result.ok, last.result.failureReason).toBe(true);
    const after = await vmWhere(r, "api-mig", "on the chosen target", (v) => isRunning(v) && v.owner === target.id);
    expect(after.epoch).toBe(before.epoch + 1);
    await advancing(target, "api-mig");
    await noPartition(source, "api-mig");
    const m = await migrationEnded(r, started.migrationId);
    expect({ kind: m.options.kind, sourceNode: m.sourceNode, targetNode: m.targetNode, ok: m.result?.ok }).toEqual({
      kind: "MIGRATION_KIND_QUICK", sourceNode: source.id, targetNode: target.id, ok: true,
    });
  });

  it("Migrations.Migrate of a stopped VM moves only its ownership; it then starts on the target", async () => {
    const w = writer();
    const r = reader();
    await w.createVm(small("api-cold", false));
    const before = await vmWhere(r, "api-cold", "stopped", (v) => v.state === "VM_STATE_STOPPED");
    const target = otherThan(before.owner);
    const started = await w.migrate({ vm: "api-cold", targetNode: target.id });
    expect(started.targetNode).toBe(target.id);
    const after = await vmWhere(r, "api-cold", "owned by the target", (v) => v.owner === target.id && v.migrationId === "");
    expect({ epoch: after.epoch, state: after.state, desiredState: after.desiredState }).toEqual({
      epoch: before.epoch + 1, state: "VM_STATE_STOPPED", desiredState: "VM_DESIRED_STATE_STOPPED",
    });
    const m = await migrationEnded(r, started.migrationId);
    expect({ ok: m.result?.ok, sourceNode: m.sourceNode, targetNode: m.targetNode }).toEqual({ ok: true, sourceNode: before.owner, targetNode: target.id });
    for (const n of nodes()) expect(await instructions(n, "api-cold")).toBeNull();
    await w.startVm({ name: "api-cold" });
    await vmWhere(r, "api-cold", "running on the target", (v) => isRunning(v) && v.owner === target.id);
    await advancing(target, "api-cold");
    await w.deleteVm({ name: "api-cold", force: true });
  });

  it("Migrations.Migrate refuses a target without room, and any target when no node has room (RESOURCE_EXHAUSTED)", async () => {
    const w = writer();
    const r = reader();
    // stopped VMs hold their memory on their node all the same: 110 MiB leaves no node room for a second one
    const big = (name: string): CreateVmInput => ({ ...small(name, false), memoryBytes: 110 * MIB });
    const owners: string[] = [];
    try {
      for (const name of ["api-big1", "api-big2", "api-big3"]) owners.push((await w.createVm(big(name))).owner);
      expect([...owners].sort()).toEqual(["n1", "n2", "n3"]);
      await refused(w.migrate({ vm: "api-big1", targetNode: owners[1]! }), "RESOURCE_EXHAUSTED", /api-big1/);
      await refused(w.migrate({ vm: "api-big1" }), "RESOURCE_EXHAUSTED", /api-big1/);
      await refused(w.createVm(big("api-big4")), "RESOURCE_EXHAUSTED", /api-big4/);
      const vm = await r.getVm({ name: "api-big1" });
      expect({ owner: vm.owner, epoch: vm.epoch, migrationId: vm.migrationId }).toEqual({ owner: owners[0], epoch: 1, migrationId: "" });
      // once a node has room again, the cluster chooses it
      await w.deleteVm({ name: "api-big3" });
      const moved = await w.migrate({ vm: "api-big1" });
      expect(moved.targetNode).toBe(owners[2]);
      await vmWhere(r, "api-big1", "moved", (v) => v.owner === owners[2] && v.migrationId === "" && v.epoch === 2);
    } finally {
      for (const name of ["api-big1", "api-big2", "api-big3"]) await w.deleteVm({ name, force: true }).catch(() => undefined);
    }
  });

  it("Migrations.Cancel stops a migration in flight: it ends not ok and cancelled, the VM keeps running on its source", async () => {
    const w = writer();
    const r = reader();
    const before = await vmWhere(r, "api-mig", "running", isRunning);
    const source = byId(before.owner);
    const target = otherThan(source.id);
    const events = collect(r.watchVmEvents({ vm: "api-mig" }));
    await sleep(300);
    // 8 KiB/s (its pages are mostly zeros, they go out compressed): the cancel lands in pre-copy
    const started = await w.migrate({ vm: "api-mig", targetNode: target.id, bandwidthLimitBytesPerSecond: 8 * 1024 });
    const watch = collect(api(source).watchMigration({ migrationId: started.migrationId }));
    await vmWhere(r, "api-mig", "migrating", (v) => v.migrationId === started.migrationId, 10_000);
    // in flight: Get and List show it without a result; a second migration or a save of the VM is refused
    const flying = await r.getMigration({ migrationId: started.migrationId });
    expect({ vm: flying.vm, sourceNode: flying.sourceNode, targetNode: flying.targetNode, result: flying.result, finishedAtMs: flying.finishedAtMs }).toEqual({
      vm: "api-mig", sourceNode: source.id, targetNode: target.id, result: null, finishedAtMs: 0,
    });
    expect((await r.listMigrations({ activeOnly: true })).migrations.map((m) => m.id)).toEqual([started.migrationId]);
    expect((await r.clusterStatus()).migrationsInFlight).toBe(1);
    await refused(w.migrate({ vm: "api-mig", targetNode: target.id }), "FAILED_PRECONDITION", /api-mig/);
    await refused(w.saveVm({ name: "api-mig", savedState: "midway" }), "FAILED_PRECONDITION", /api-mig/);
    const answer = await w.cancelMigration({ migrationId: started.migrationId });
    expect({ id: answer.id, vm: answer.vm, sourceNode: answer.sourceNode, targetNode: answer.targetNode }).toEqual({
      id: started.migrationId, vm: "api-mig", sourceNode: source.id, targetNode: target.id,
    });
    await Promise.race([watch.done, sleep(15_000)]);
    const last = watch.items.at(-1);
    expect(last?.update).toBe("result");
    if (last?.update === "result") expect({ ok: last.result.ok, cancelled: last.result.cancelled }).toEqual({ ok: false, cancelled: true });
    const after = await vmWhere(r, "api-mig", "back to no migration", (v) => v.migrationId === "");
    expect({ owner: after.owner, epoch: after.epoch, state: after.state }).toEqual({ owner: source.id, epoch: before.epoch, state: "VM_STATE_RUNNING" });
    await advancing(source, "api-mig");
    await noPartition(target, "api-mig");
    const m = await migrationEnded(api(leader), started.migrationId);
    expect({ ok: m.result?.ok, cancelled: m.result?.cancelled }).toEqual({ ok: false, cancelled: true });
    await until("the migration's end among the VM's events", 5000, async () =>
      events.items.some((e) => e.event === "migration" && e.migration.migrationId === started.migrationId && e.migration.kind !== "VM_MIGRATION_EVENT_KIND_STARTED") ? true : undefined);
    events.stop();
    cancelEvents = events.items;
    cancelledMigrationId = started.migrationId;

    // the list, oldest first, holds every migration of this VM; none is active
    const all = (await r.listMigrations({ vm: "api-mig" })).migrations;
    expect(all).toHaveLength(3);
    expect(all.at(-1)?.id).toBe(started.migrationId);
    const startedAt = all.map((x) => x.startedAtMs);
    expect(startedAt).toEqual([...startedAt].sort((a, b) => a - b));
    expect((await r.listMigrations({ activeOnly: true })).migrations).toEqual([]);
    await w.deleteVm({ name: "api-mig", force: true });
  });
});

describe("Nodes", () => {
  it("Nodes.List reports every node, sorted, with its usage, and filters by state", async () => {
    const w = writer();
    await w.createVm(small("api-usage", true));
    await vmWhere(reader(), "api-usage", "running", isRunning);
    for (const n of [leader, followers[1]]) {
      const c = api(n);
      await until(`usage consistent on ${n.id}`, 10_000, async () => {
        const listed = (await c.listNodes()).nodes;
        const { vms } = await c.listVms();
        expect(listed.map((x) => x.id)).toEqual(["n1", "n2", "n3"]);
        for (const node of listed) {
          const local = byId(node.id);
          expect(node.apiAddress).toBe(local.apiAddress);
          expect(node.state).toBe("NODE_STATE_ACTIVE");
          expect(node.leaseLive).toBe(true);
          expect(node.leaseUntilMs).toBeGreaterThan(Date.now() - 1000);
          expect(node.capacity.memoryBytes).toBeGreaterThan(120 * MIB);
          expect(node.capacity.memoryBytes).toBeLessThanOrEqual(128 * MIB);
          expect(node.capacity.vcpus).toBeGreaterThan(0);
        }
        const usage = listed.map((x) => [x.id, x.usage.vms, x.usage.memoryBytes, x.usage.runningVms]);
        const expected = listed.map((x) => {
          const owned = vms.filter((v) => v.owner === x.id);
          return [x.id, owned.length, owned.reduce((s, v) => s + v.spec.memoryBytes, 0), owned.filter((v) => v.state === "VM_STATE_RUNNING").length];
        });
        return JSON.stringify(usage) === JSON.stringify(expected) ? true : undefined;
      });
    }
    expect((await reader().listNodes({ state: "NODE_STATE_ACTIVE" })).nodes).toHaveLength(3);
    expect((await reader().listNodes({ state: "NODE_STATE_DRAINED" })).nodes).toEqual([]);
    await w.deleteVm({ name: "api-usage", force: true });
  });

  it("Nodes.Drain moves the VMs off a node, which ends DRAINED and takes no new VM; Nodes.Resume makes it ACTIVE again; an unknown node is NOT_FOUND", async () => {
    await removeAllVms();
    const w = writer();
    const r = reader();
    const drained = followers[0];
    // a running and a stopped VM on the node to drain
    await w.createVm(small("api-d-run", true));
    await w.createVm(small("api-d-off", false));
    for (const name of ["api-d-run", "api-d-off"]) {
      const vm = await vmWhere(r, name, "settled", (v) => v.migrationId === "" && (v.state === "VM_STATE_RUNNING" || v.state === "VM_STATE_STOPPED"));
      if (vm.owner !== drained.id) await w.migrate({ vm: name, targetNode: drained.id });
    }
    await vmWhere(r, "api-d-run", `running on ${drained.id}`, (v) => isRunning(v) && v.owner === drained.id, 20_000);
    await vmWhere(r, "api-d-off", `owned by ${drained.id}`, (v) => v.owner === drained.id && v.migrationId === "" && v.state === "VM_STATE_STOPPED");
    await advancing(drained, "api-d-run");
    const runEpoch = (await r.getVm({ name: "api-d-run" })).epoch;

    await refused(r.drainNode({ node: "n9" }), "NOT_FOUND", /n9/);
    await refused(r.resumeNode({ node: "n9" }), "NOT_FOUND", /n9/);
    try {
      await drainAndResume(drained, runEpoch);
    } finally {
      // whatever failed above, the node takes VMs again for the tests that follow
      await w.resumeNode({ node: drained.id }).catch(() => undefined);
    }
    await removeAllVms();
  });
});

/** Nodes.Drain of `drained`, which owns api-d-run (running, at `runEpoch`) and api-d-off (stopped); then Nodes.Resume. */
async function drainAndResume(drained: LocalNode, runEpoch: number): Promise<void> {
  const w = writer();
  const r = reader();
  const answer = await r.drainNode({ node: drained.id });
  expect(answer.id).toBe(drained.id);
  expect(["NODE_STATE_DRAINING", "NODE_STATE_DRAINED"]).toContain(answer.state);
  const node = await until(`${drained.id} drained`, 30_000, async () => {
    const n = (await api(drained).listNodes()).nodes.find((x) => x.id === drained.id);
    return n?.state === "NODE_STATE_DRAINED" ? n : undefined;
  });
  expect(node.usage.vms).toBe(0);
  expect((await r.listVms({ node: drained.id })).vms).toEqual([]);
  const run = await vmWhere(r, "api-d-run", "running elsewhere", (v) => isRunning(v) && v.owner !== drained.id);
  expect(run.epoch).toBe(runEpoch + 1);
  await advancing(byId(run.owner), "api-d-run");
  await noPartition(drained, "api-d-run");
  const off = await vmWhere(r, "api-d-off", "owned elsewhere", (v) => v.owner !== drained.id && v.migrationId === "");
  expect(off.state).toBe("VM_STATE_STOPPED");
  expect((await r.listNodes({ state: "NODE_STATE_DRAINED" })).nodes.map((x) => x.id)).toEqual([drained.id]);

  // draining a drained node succeeds and changes nothing
  const redrained = await w.drainNode({ node: drained.id }).then((n) => n.state, (e: unknown) => (e instanceof ApiError ? `${e.code}: ${e.message}` : e));
  expect.soft(redrained, "Drain of a drained node").toBe("NODE_STATE_DRAINED");
  // no new VM goes there, by placement or by migration
  for (const name of ["api-d-new1", "api-d-new2", "api-d-new3"]) expect((await w.createVm(small(name, false))).owner).not.toBe(drained.id);
  await refused(w.migrate({ vm: "api-d-off", targetNode: drained.id }), "FAILED_PRECONDITION", new RegExp(drained.id));

  const resumed = await w.resumeNode({ node: drained.id });
  expect({ id: resumed.id, state: resumed.state }).toEqual({ id: drained.id, state: "NODE_STATE_ACTIVE" });
  for (const n of [drained, followers[1], leader]) {
    await until(`${drained.id} active as ${n.id} sees it`, 5000, async () =>
      (await api(n).listNodes()).nodes.find((x) => x.id === drained.id)?.state === "NODE_STATE_ACTIVE" ? true : undefined);
  }
  // resuming an active node succeeds and changes nothing; VMs do not move back by themselves
  expect((await r.resumeNode({ node: drained.id })).state).toBe("NODE_STATE_ACTIVE");
  expect((await r.getVm({ name: "api-d-run" })).owner).toBe(run.owner);
  // it takes VMs again
  await w.migrate({ vm: "api-d-off", targetNode: drained.id });
  await vmWhere(r, "api-d-off", `back on ${drained.id}`, (v) => v.owner === drained.id && v.migrationId === "");
}

describe("Cluster", () => {
  it("Cluster.Status: every node answers with the same leader, the totals and its own id", async () => {
    await removeAllVms();
    const w = writer();
    await w.createVm(small("api-status", true));
    await w.createVm(small("api-status2", false));
    await vmWhere(api(leader), "api-status", "running", isRunning);
    for (const n of nodes()) {
      const s = await until(`totals on ${n.id}`, 10_000, async () => {
        const st = await api(n).clusterStatus();
        return st.vmCount === 2 && st.runningVmCount === 1 ? st : undefined;
      });
      expect({ clusterId: s.clusterId, nodeId: s.nodeId, leaderId: s.leaderId, leaderApiAddress: s.leaderApiAddress, nodeCount: s.nodeCount, migrationsInFlight: s.migrationsInFlight }).toEqual({
        clusterId: "local", nodeId: n.id, leaderId: leader.id, leaderApiAddress: leader.apiAddress, nodeCount: 3, migrationsInFlight: 0,
      });
      expect(s.term).toBeGreaterThan(0);
      expect(s.appliedIndex).toBeGreaterThan(0);
      expect(s.appliedIndex).toBeLessThanOrEqual(s.commitIndex);
      expect(s.members.map((m) => m.id)).toEqual(["n1", "n2", "n3"]);
      expect(s.consolidation.memoryCommittedRatio).toBeGreaterThan(0);
      expect(s.consolidation.memoryCommittedRatio).toBeLessThan(1);
      expect(s.consolidation.vcpusPerPcpu).toBeGreaterThan(0);
    }
    const before = (await api(followers[1]).clusterStatus()).commitIndex;
    await w.stopVm({ name: "api-status2" });
    await until("the commit index grows", 5000, async () => ((await api(followers[1]).clusterStatus()).commitIndex > before ? true : undefined));
  });

  it("Cluster.Members lists the Raft members, sorted, with their roles and addresses, on every node", async () => {
    for (const n of nodes()) {
      const { members } = await api(n).listMembers();
      expect(members.map((m) => m.id)).toEqual(["n1", "n2", "n3"]);
      for (const m of members) {
        const local = byId(m.id);
        expect({ raftAddress: m.raftAddress, apiAddress: m.apiAddress, role: m.role }).toEqual({
          raftAddress: local.raftAddress, apiAddress: local.apiAddress, role: m.id === leader.id ? "MEMBER_ROLE_LEADER" : "MEMBER_ROLE_FOLLOWER",
        });
      }
    }
  });

  it("Cluster.AddMember, PromoteMember, RemoveMember refuse an existing id (ALREADY_EXISTS), a voter (FAILED_PRECONDITION), an unknown id (NOT_FOUND), a node that owns VMs (FAILED_PRECONDITION)", async () => {
    const w = writer();
    const [f1, f2] = followers;
    await refused(w.addMember({ id: f2.id, raftAddress: f2.raftAddress }), "ALREADY_EXISTS", new RegExp(f2.id));
    await refused(w.addMember({ id: leader.id, raftAddress: "127.0.0.1:1" }), "ALREADY_EXISTS", new RegExp(leader.id));
    await refused(w.addMember({ id: "n7", raftAddress: "nowhere" }), "INVALID_ARGUMENT", /^raft_address: /);
    await refused(w.promoteMember({ id: f2.id }), "FAILED_PRECONDITION", new RegExp(f2.id));
    await refused(w.promoteMember({ id: leader.id }), "FAILED_PRECONDITION", new RegExp(leader.id));
    await refused(w.promoteMember({ id: "n9" }), "NOT_FOUND", /n9/);
    await refused(w.removeMember({ id: "n9" }), "NOT_FOUND", /n9/);
    const owner = (await api(f1).getVm({ name: "api-status" })).owner;
    await refused(w.removeMember({ id: owner }), "FAILED_PRECONDITION", new RegExp(owner));
    for (const n of nodes()) {
      expect((await api(n).listMembers()).members.map((m) => `${m.id}:${m.role}`).sort()).toEqual(
        ["n1", "n2", "n3"].map((id) => `${id}:${id === leader.id ? "MEMBER_ROLE_LEADER" : "MEMBER_ROLE_FOLLOWER"}`),
      );
      expect((await api(n).listNodes()).nodes.map((x) => x.id)).toEqual(["n1", "n2", "n3"]);
    }
  });

  it("Cluster.AddMember adds a learner (here one nobody listens for) that every node lists; RemoveMember removes it; the cluster goes on committing", async () => {
    const w = writer();
    const raftAddress = `127.0.0.1:${await freePort()}`;
    const added = await w.addMember({ id: "n7", raftAddress });
    expect({ id: added.id, raftAddress: added.raftAddress, role: added.role }).toEqual({ id: "n7", raftAddress, role: "MEMBER_ROLE_LEARNER" });
    for (const n of nodes()) {
      const m = await until(`n7 listed by ${n.id}`, 5000, async () => (await api(n).listMembers()).members.find((x) => x.id === "n7"));
      expect({ raftAddress: m.raftAddress, role: m.role }).toEqual({ raftAddress, role: "MEMBER_ROLE_LEARNER" });
      expect((await api(n).listMembers()).members.map((x) => x.id)).toEqual(["n1", "n2", "n3", "n7"]);
    }
    await refused(w.addMember({ id: "n7", raftAddress }), "ALREADY_EXISTS", /n7/);
    // a learner does not count for the quorum: writes still commit
    await w.startVm({ name: "api-status2" });
    await vmWhere(reader(), "api-status2", "running", isRunning);

    expect(await w.removeMember({ id: "n7" })).toEqual({});
    for (const n of nodes()) {
      await until(`n7 no longer listed by ${n.id}`, 5000, async () => ((await api(n).listMembers()).members.some((x) => x.id === "n7") ? undefined : true));
      expect((await api(n).clusterStatus()).members.map((x) => x.id)).toEqual(["n1", "n2", "n3"]);
    }
    await refused(w.removeMember({ id: "n7" }), "NOT_FOUND", /n7/);
    await w.stopVm({ name: "api-status2" });
    await vmWhere(reader(), "api-status2", "stopped", (v) => v.state === "VM_STATE_STOPPED");
  });
});

describe("Cluster (a real node joining)", () => {
  it("Cluster.AddMember of a fresh fleetd: it catches up and serves the cluster's state; PromoteMember makes it a voter; RemoveMember takes it out", async () => {
    const w = writer();
    const joiner = await startJoiner(cluster!, dir, 64);
    extraProcesses.push(joiner.process);
    try {
      const added = await w.addMember({ id: "n4", raftAddress: joiner.raftAddress, apiAddress: joiner.apiAddress });
      expect({ id: added.id, raftAddress: added.raftAddress, role: added.role }).toEqual({ id: "n4", raftAddress: joiner.raftAddress, role: "MEMBER_ROLE_LEARNER" });
      const n4 = rawClient(joiner.apiAddress, cluster!.token);
      // caught up: it answers reads from its own copy of the state, the same as the others'
      const expected = (await api(leader).listVms()).vms.map((v) => v.name);
      expect(expected.length).toBeGreaterThan(0);
      await until("n4 serving the cluster's VMs", 30_000, async () => (JSON.stringify((await n4.listVms()).vms.map((v) => v.name)) === JSON.stringify(expected) ? true : undefined));
      expect((await n4.clusterStatus()).leaderId).toBe(leader.id);
      await until("n4 registered as a live node", 10_000, async () => ((await reader().listNodes()).nodes.some((n) => n.id === "n4" && n.leaseLive) ? true : undefined));
      for (const n of nodes()) {
        await until(`n4 a learner for ${n.id}`, 5000, async () =>
          (await api(n).listMembers()).members.find((m) => m.id === "n4" && m.role === "MEMBER_ROLE_LEARNER" && m.apiAddress === joiner.apiAddress));
      }

      const promoted = await w.promoteMember({ id: "n4" });
      expect({ id: promoted.id, role: promoted.role }).toEqual({ id: "n4", role: "MEMBER_ROLE_FOLLOWER" });
      for (const c of [...nodes().map((n) => api(n)), n4]) {
        await until(`n4 a voter for ${c.address}`, 5000, async () => {
          const { members } = await c.listMembers();
          return members.map((m) => m.id).join() === "n1,n2,n3,n4" && members.find((m) => m.id === "n4")?.role === "MEMBER_ROLE_FOLLOWER" ? true : undefined;
        });
      }
      // a write through the new member reaches the leader
      await n4.createVm(small("api-joined", false));
      await vmWhere(reader(), "api-joined", "known", () => true);
      await n4.deleteVm({ name: "api-joined" });
      await gone(reader(), "api-joined");

      expect(await w.removeMember({ id: "n4" })).toEqual({});
      for (const n of nodes()) {
        await until(`n4 gone from ${n.id}'s members and nodes`, 10_000, async () => {
          const members = (await api(n).listMembers()).members.map((m) => m.id);
          const registered = (await api(n).listNodes()).nodes.map((x) => x.id);
          return members.join() === "n1,n2,n3" && registered.join() === "n1,n2,n3" ? true : undefined;
        });
      }
      // a write still commits with the three voters left
      await w.createVm(small("api-after-n4", false));
      await vmWhere(reader(), "api-after-n4", "known", () => true);
      await w.deleteVm({ name: "api-after-n4" });
    } finally {
      await stopProcess(joiner.process, 3000, "SIGINT");
    }
    // stays out once stopped
    expect((await reader().listNodes()).nodes.map((x) => x.id)).toEqual(["n1", "n2", "n3"]);
  });
});

describe("authentication", () => {
  it("a call without the token or with a wrong one is refused (UNAUTHENTICATED), reads and writes alike, and changes nothing", async () => {
    for (const token of [undefined, "not-the-token"]) {
      for (const n of [leader, followers[0]]) {
        const c = rawClient(n.apiAddress, token);
        const why = token === undefined ? /credentials|authorization/ : /token/;
        await refused(c.listVms(), "UNAUTHENTICATED", why);
        await refused(c.getVm({ name: "api-status" }), "UNAUTHENTICATED", why);
        await refused(c.clusterStatus(), "UNAUTHENTICATED", why);
        await refused(c.createVm(small("api-intruder", true)), "UNAUTHENTICATED", why);
        await refused(c.drainNode({ node: followers[1].id }), "UNAUTHENTICATED", why);
        await refused(c.deleteVm({ name: "api-status", force: true }), "UNAUTHENTICATED", why);
        const events = c.watchVmEvents({});
        await streamRefused(events, () => events.cancel(), "UNAUTHENTICATED", why);
        const conn = c.attachConsole("api-status");
        await streamRefused(conn.output, () => conn.cancel(), "UNAUTHENTICATED", why);
      }
    }
    const r = reader();
    await refused(r.getVm({ name: "api-intruder" }), "NOT_FOUND", /api-intruder/);
    expect(isRunning(await r.getVm({ name: "api-status" }))).toBe(true);
    expect((await r.listNodes()).nodes.map((x) => x.state)).toEqual(["NODE_STATE_ACTIVE", "NODE_STATE_ACTIVE", "NODE_STATE_ACTIVE"]);
  });

  it("every RPC of the .proto services, on every node, called without the token or with a wrong one, is refused (UNAUTHENTICATED) before its request is read, and changes nothing", async () => {
    // the RPCs as the loaded .proto files define them (every service of the package), each matched to its entry in the method table
    const rpcs = Object.entries(loadApi().packageDefinition)
      .filter(([name, def]) => name.startsWith(`${API_PACKAGE}.`) && !("format" in def))
      .flatMap(([, def]) => Object.values(def as Record<string, { path: string; requestStream: boolean; responseStream: boolean }>));
    expect(rpcs.length).toBeGreaterThanOrEqual(26);
    const specs = rpcs.map((m) => {
      const spec = API_METHODS.find((s) => methodPath(s) === m.path);
      expect(spec, `the method table's entry for ${m.path}`).toBeDefined();
      expect({ path: m.path, kind: spec!.kind }).toEqual({ path: m.path, kind: m.requestStream ? "bidi" : m.responseStream ? "server-stream" : "unary" });
      return spec!;
    });
    expect(specs.map(methodPath).sort()).toEqual(API_METHODS.map(methodPath).sort());
    const before = {
      vms: (await reader().listVms()).vms.map((v) => ({ name: v.name, owner: v.owner, epoch: v.epoch, desiredState: v.desiredState })),
      nodes: (await reader().listNodes()).nodes.map((n) => ({ id: n.id, state: n.state })),
      members: (await reader().listMembers()).members.map((m) => ({ id: m.id, role: m.role })),
      migrations: (await reader().listMigrations()).migrations.length,
    };

    const refusedBy: string[] = [];
    for (const token of [undefined, "not-the-token"]) {
      const why = token === undefined ? /credentials|authorization/ : /token/;
      for (const n of nodes()) {
        const c = rawClient(n.apiAddress, token);
        for (const spec of specs) {
          // an empty request: a server that read it before the credentials would answer INVALID_ARGUMENT or NOT_FOUND
          const call = callWithEmptyRequest(c, spec);
          const what = `${methodPath(spec)} on ${n.id} ${token === undefined ? "without a token" : "with a wrong token"}`;
          const e = "unary" in call
            ? await refused(call.unary, "UNAUTHENTICATED", why)
            : await streamRefused(call.stream, call.cancel, "UNAUTHENTICATED", why);
          expect(e?.code, what).toBe("UNAUTHENTICATED");
          refusedBy.push(`${methodPath(spec)} ${n.id}`);
        }
      }
    }
    expect(refusedBy).toHaveLength(2 * nodes().length * specs.length);
    const after = {
      vms: (await reader().listVms()).vms.map((v) => ({ name: v.name, owner: v.owner, epoch: v.epoch, desiredState: v.desiredState })),
      nodes: (await reader().listNodes()).nodes.map((n) => ({ id: n.id, state: n.state })),
      members: (await reader().listMembers()).members.map((m) => ({ id: m.id, role: m.role })),
      migrations: (await reader().listMigrations()).migrations.length,
    };
    expect(after).toEqual(before);
  });
});

describe("documented behaviour", () => {
  it("Vms.Start of a running VM, Vms.Resume of a running VM and Vms.Pause of a paused VM are refused (FAILED_PRECONDITION)", async () => {
    const w = writer();
    const r = reader();
    await vmWhere(r, "api-status", "running", isRunning);
    await refused(w.startVm({ name: "api-status" }), "FAILED_PRECONDITION", /api-status/, true);
    await refused(w.resumeVm({ name: "api-status" }), "FAILED_PRECONDITION", /api-status/, true);
    await w.pauseVm({ name: "api-status" });
    await vmWhere(r, "api-status", "paused", (v) => v.state === "VM_STATE_PAUSED");
    await refused(w.pauseVm({ name: "api-status" }), "FAILED_PRECONDITION", /api-status/, true);
    await w.resumeVm({ name: "api-status" });
    await vmWhere(r, "api-status", "running again", isRunning);
  });

  it("Cluster.Status: consolidation.vms_per_node counts the running VMs per active node", async () => {
    // api-status runs, api-status2 is stopped: one running VM over three active nodes
    await vmWhere(reader(), "api-status", "running", isRunning);
    await vmWhere(reader(), "api-status2", "stopped", (v) => v.state === "VM_STATE_STOPPED");
    for (const n of nodes()) {
      const s = await api(n).clusterStatus();
      expect({ node: n.id, vmCount: s.vmCount, runningVmCount: s.runningVmCount }).toEqual({ node: n.id, vmCount: 2, runningVmCount: 1 });
      expect.soft(s.consolidation.vmsPerNode, `vms_per_node on ${n.id}`).toBeCloseTo(1 / 3, 5);
    }
  });

  it("Vms.Console of a VM that does not exist is NOT_FOUND", async () => {
    for (const n of nodes()) {
      const conn = api(n).attachConsole("api-none");
      await streamRefused(conn.output, () => conn.cancel(), "NOT_FOUND", /api-none/);
    }
  });

  it("Migration.options are the request's with the defaults filled in (live: downtime 300 ms, 30 rounds, AUTO_CONVERGE)", async () => {
    expect(liveMigration, "the live migration test ran").toBeDefined();
    expect.soft(liveMigration?.options).toEqual({
      kind: "MIGRATION_KIND_LIVE", downtimeLimitMs: 300, bandwidthLimitBytesPerSecond: 2 * MIB, maxRounds: 30, policy: "NO_CONVERGENCE_POLICY_AUTO_CONVERGE",
    });
    const w = writer();
    const vm = await vmWhere(reader(), "api-status", "running", isRunning);
    const started = await w.migrate({
      vm: "api-status", targetNode: otherThan(vm.owner).id, downtimeLimitMs: 1000, maxRounds: 7, policy: "NO_CONVERGENCE_POLICY_CANCEL",
    });
    const m = await migrationEnded(api(leader), started.migrationId);
    expect(m.result?.ok).toBe(true);
    expect.soft(m.options).toEqual({
      kind: "MIGRATION_KIND_LIVE", downtimeLimitMs: 1000, bandwidthLimitBytesPerSecond: 0, maxRounds: 7, policy: "NO_CONVERGENCE_POLICY_CANCEL",
    });
    await vmWhere(reader(), "api-status", "running on the target", (v) => isRunning(v) && v.owner === started.targetNode);
  });

  it("Migrations.Migrate: a live migration with policy CANCEL that does not converge within max_rounds fails and the VM stays on its source", async () => {
    const w = writer();
    const r = reader();
    // rate=max rewrites its whole 1 MiB working set continuously: no round gets under 1 ms
    await w.createVm({ ...small("api-busy", true), bootargs: "rate=max ws=1" });
    const vm = await vmWhere(r, "api-busy", "running", isRunning);
    const source = byId(vm.owner);
    await advancing(source, "api-busy");
    try {
      const started = await w.migrate({ vm: "api-busy", targetNode: otherThan(vm.owner).id, downtimeLimitMs: 1, maxRounds: 2, policy: "NO_CONVERGENCE_POLICY_CANCEL" });
      const m = await migrationEnded(api(leader), started.migrationId, 30_000);
      expect({ ok: m.result?.ok, cancelled: m.result?.cancelled }, `result ${JSON.stringify(m.result)}`).toEqual({ ok: false, cancelled: false });
      expect(m.result?.failureReason).toMatch(/converge/);
      const after = await vmWhere(r, "api-busy", "settled", (v) => v.migrationId === "");
      expect({ owner: after.owner, epoch: after.epoch, state: after.state }).toEqual({ owner: source.id, epoch: vm.epoch, state: "VM_STATE_RUNNING" });
    } finally {
      await w.deleteVm({ name: "api-busy", force: true }).catch(() => undefined);
    }
  });

  it("Migrations.Cancel arriving while the switchover commits: the result agrees with where the VM runs, and the guest keeps its state", async () => {
    const w = writer();
    const r = reader();
    await w.createVm({ ...small("api-race", true), memoryBytes: 8 * MIB, bootargs: "rate=200 ws=2" });
    const vm = await vmWhere(r, "api-race", "running", isRunning);
    const source = byId(vm.owner);
    const target = otherThan(vm.owner);
    try {
      const seen = await readConsole(source, "api-race", (h, l) => heartbeats(h + l).length > 0);
      const lastBeat = Math.max(...heartbeats(seen.history + seen.live));
      const started = await w.migrate({ vm: "api-race", targetNode: target.id });
      const stream = api(source).watchMigration({ migrationId: started.migrationId });
      const updates: MigrationUpdate[] = [];
      let cancelled: Promise<unknown> | undefined;
      const watched = (async () => {
        for await (const u of stream) {
          updates.push(u);
          if (cancelled === undefined && u.update === "progress" && u.progress.phase === "MIGRATION_PHASE_COMMIT") {
            cancelled = w.cancelMigration({ migrationId: started.migrationId }).catch((e: unknown) => e);
          }
        }
      })();
      await Promise.race([watched, sleep(20_000)]);
      stream.cancel();
      expect(cancelled, `a COMMIT progress update among ${JSON.stringify(updates.map((u) => (u.update === "progress" ? u.progress.phase : "result")))}`).toBeDefined();
      await cancelled;
      const last = updates.at(-1);
      expect(last?.update).toBe("result");
      const ok = last?.update === "result" && last.result.ok;
      const settled = await vmWhere(r, "api-race", "settled", (v) => v.migrationId === "" && v.state !== "VM_STATE_STARTING", 20_000);
      const result = last?.update === "result" ? last.result : null;
      expect.soft({ owner: settled.owner, epoch: settled.epoch, state: settled.state }, `where the VM runs after the result ${JSON.stringify(result)}`).toEqual({
        owner: ok ? target.id : source.id, epoch: ok ? vm.epoch + 1 : vm.epoch, state: "VM_STATE_RUNNING",
      });
      // not restarted from its image: no new banner, and the heartbeats go on from where they were
      const after = await readConsole(byId(settled.owner), "api-race", (_h, l) => heartbeats(l).length > 0);
      expect(after.history + after.live).not.toMatch(/dirtier: rate=/);
      expect(Math.min(...heartbeats(after.history + after.live))).toBeGreaterThan(lastBeat);
    } finally {
      await w.deleteVm({ name: "api-race", force: true }).catch(() => undefined);
    }
  });

  it("Vms.WatchEvents reports a cancelled migration with kind VM_MIGRATION_EVENT_KIND_CANCELLED", async () => {
    expect(cancelledMigrationId, "the cancel test ran").not.toBe("");
    const ends = cancelEvents.filter((e) => e.event === "migration" && e.migration.migrationId === cancelledMigrationId && e.migration.kind !== "VM_MIGRATION_EVENT_KIND_STARTED");
    expect(ends.map((e) => (e.event === "migration" ? e.migration.kind : e.event))).toEqual(["VM_MIGRATION_EVENT_KIND_CANCELLED"]);
  });

  it("Migrations.Migrate (quick) moves a paused VM", async () => {
    const w = writer();
    const r = reader();
    const vm = await vmWhere(r, "api-status", "running", isRunning);
    await w.pauseVm({ name: "api-status" });
    await vmWhere(r, "api-status", "paused", (v) => v.state === "VM_STATE_PAUSED");
    const target = otherThan(vm.owner);
    try {
      const started = await w.migrate({ vm: "api-status", targetNode: target.id, kind: "MIGRATION_KIND_QUICK" });
      const m = await migrationEnded(api(leader), started.migrationId);
      expect(m.result?.ok, m.result?.failureReason).toBe(true);
      await vmWhere(r, "api-status", "paused on the target", (v) => v.owner === target.id && v.state === "VM_STATE_PAUSED" && v.migrationId === "");
    } finally {
      await w.resumeVm({ name: "api-status" }).catch(() => undefined);
    }
  });

  it("Cluster.Members: the leader reports its followers' match index and a learner it cannot reach as unreachable; PromoteMember refuses that learner (FAILED_PRECONDITION)", async () => {
    const w = writer();
    const { members } = await api(leader).listMembers();
    const commit = (await api(leader).clusterStatus()).commitIndex;
    for (const m of members.filter((x) => x.id !== leader.id)) {
      expect.soft(m.matchIndex, `match index of ${m.id} (commit ${commit})`).toBeGreaterThan(0);
      expect.soft(m.reachable, `${m.id} reachable`).toBe(true);
    }
    await w.addMember({ id: "n8", raftAddress: `127.0.0.1:${await freePort()}` });
    try {
      await sleep(1500);
      const learner = (await api(leader).listMembers()).members.find((x) => x.id === "n8");
      expect(learner?.role).toBe("MEMBER_ROLE_LEARNER");
      expect.soft(learner?.reachable, "a learner nobody listens for is reachable").toBe(false);
      expect.soft(learner?.matchIndex, "match index of a learner that never answered").toBe(0);
      await refused(w.promoteMember({ id: "n8" }, { timeoutMs: 8000 }), "FAILED_PRECONDITION", /n8/, true);
    } finally {
      await w.removeMember({ id: "n8" });
    }
    await until("n8 removed", 5000, async () => ((await api(leader).listMembers()).members.some((x) => x.id === "n8") ? undefined : true));
  });
});
