import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { GrpcRaftTransport } from "../src/adapters/grpc-transport.js";
import type { GrpcRaftTransportOptions } from "../src/adapters/grpc-transport.js";
import {
  ClusterMismatchError, MessageDecodeError, MessageTooLargeError, PeerRefusedError, PeerUnreachableError,
} from "../src/transport.js";
import type { RaftTransportError, RaftTransportHandler, SnapshotStatus } from "../src/transport.js";
import { EntryType, MessageType } from "../src/types.js";
import type { Message, NodeId } from "../src/types.js";

/** Records every callback, in order. */
class Recorder implements RaftTransportHandler {
  readonly received: Message[] = [];
  readonly unreachable: NodeId[] = [];
  readonly snapshots: [NodeId, SnapshotStatus][] = [];
  readonly errors: RaftTransportError[] = [];

  receive(message: Message): void {
    this.received.push(message);
  }
  reportUnreachable(id: NodeId): void {
    this.unreachable.push(id);
  }
  reportSnapshot(id: NodeId, status: SnapshotStatus): void {
    this.snapshots.push([id, status]);
  }
  reportError(error: RaftTransportError): void {
    this.errors.push(error);
  }

  from(id: NodeId): Message[] {
    return this.received.filter((m) => m.from === id);
  }
}

function appMessage(from: NodeId, to: NodeId, index: number, dataBytes = 0): Message {
  return {
    type: MessageType.App,
    from,
    to,
    term: 1,
    logTerm: 1,
    index,
    entries: dataBytes > 0 ? [{ term: 1, index: index + 1, type: EntryType.Normal, data: new Uint8Array(dataBytes).fill(7) }] : [],
    commit: 0,
    snapshot: null,
    reject: false,
    rejectHint: 0,
    context: new Uint8Array(0),
  };
}

function snapshotMessage(from: NodeId, to: NodeId, dataBytes: number): Message {
  return {
    ...appMessage(from, to, 0),
    type: MessageType.Snap,
    snapshot: { metadata: { index: 100, term: 3, confState: { voters: ["n1", "n2", "n3"], learners: [] } }, data: new Uint8Array(dataBytes).fill(9) },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `condition` every 10 ms; fails after `timeoutMs`. */
async function waitFor(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** A loopback port that nothing listens on (bound by the OS, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

const open: GrpcRaftTransport[] = [];

afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

interface Member {
  readonly transport: GrpcRaftTransport;
  readonly recorder: Recorder;
  readonly address: string;
  readonly port: number;
}

async function member(id: NodeId, options: Partial<GrpcRaftTransportOptions> = {}, port = 0): Promise<Member> {
  const recorder = new Recorder();
  const transport = new GrpcRaftTransport({ clusterId: "hf-test", id, handler: recorder, ...options });
  open.push(transport);
  const bound = await transport.listen({ host: "127.0.0.1", port });
  return { transport, recorder, address: bound.address, port: bound.port };
}

describe("grpc-transport", () => {
  it("grpc-transport - three members exchange messages in order per peer", async () => {
    const ids = ["n1", "n2", "n3"];
    const members = await Promise.all(ids.map((id) => member(id)));
    for (const [i, m] of members.entries()) {
      for (const [j, other] of members.entries()) if (i !== j) m.transport.addPeer(ids[j] as NodeId, other.address);
    }
    const perPeer = 300;
    // Batches interleave destinations, as a leader's Ready does.
    for (let batch = 0; batch < perPeer / 10; batch++) {
      for (const [i, m] of members.entries()) {
        const messages: Message[] = [];
        for (let k = 1; k <= 10; k++) {
          for (const [j, to] of ids.entries()) if (i !== j) messages.push(appMessage(ids[i] as NodeId, to, batch * 10 + k, k === 5 ? 2000 : 0));
        }
        m.transport.send(messages);
      }
      if (batch % 10 === 0) await sleep(1);
    }
    await waitFor("every message", () => members.every((m) => m.recorder.received.length === 2 * perPeer));
    const expected = Array.from({ length: perPeer }, (_, k) => k + 1);
    for (const [i, m] of members.entries()) {
      for (const [j, from] of ids.entries()) {
        if (i === j) continue;
        const got = m.recorder.from(from);
        expect(got.map((x) => x.index)).toEqual(expected);
        expect(got.every((x) => x.to === ids[i])).toBe(true);
      }
      // Every tenth message carried a 2000-byte entry, which arrives intact.
      const withEntry = m.recorder.received.filter((x) => x.index % 10 === 5);
      expect(withEntry.every((x) => x.entries[0]?.data.length === 2000 && x.entries[0].data.every((b) => b === 7))).toBe(true);
      expect(m.recorder.errors).toEqual([]);
      expect(m.recorder.unreachable).toEqual([]);
      expect(m.transport.stats().messagesReceivedTotal).toBe(2 * perPeer);
    }
    const stats = members[0]?.transport.peerStats("n2");
    expect(stats).toMatchObject({ state: "open", queuedMessages: 0, messagesSentTotal: perPeer, streamsOpenedTotal: 1 });
  });

  it("grpc-transport - a peer restarted on the same port gets messages again after reconnect", async () => {
    const a = await member("n1");
    const b = await member("n2");
    a.transport.addPeer("n2", b.address);
    a.transport.send([appMessage("n1", "n2", 1)]);
    await waitFor("first message", () => b.recorder.received.length === 1);

    await b.transport.close();
    const b2 = await member("n2", {}, b.port);
    // Keep sending, as Raft's heartbeats do, until the restarted peer hears us (bounded).
    let index = 2;
    const deadline = Date.now() + 5000;
    while (b2.recorder.received.length === 0 && Date.now() < deadline) {
      a.transport.send([appMessage("n1", "n2", index++)]);
      await sleep(20);
    }
    expect(b2.recorder.received.length).toBeGreaterThan(0);
    // Messages lost meanwhile were reported, and the outage logged once.
    expect(a.recorder.unreachable).toContain("n2");
    expect(a.recorder.errors.filter((e) => e instanceof PeerUnreachableError)).toHaveLength(1);
    const stats = a.transport.peerStats("n2");
    expect(stats?.streamsOpenedTotal).toBe(2);
    expect(stats?.state).toBe("open");
    // Ordered again on the new stream.
    const last = index;
    a.transport.send([appMessage("n1", "n2", last), appMessage("n1", "n2", last + 1)]);
    await waitFor("later messages", () => b2.recorder.received.some((m) => m.index === last + 1));
    const indexes = b2.recorder.received.map((m) => m.index);
    expect(indexes).toEqual([...indexes].sort((x, y) => x - y));
  });

  it("grpc-transport - a member of another cluster is refused with a clear error and no hot retry", async () => {
    const a = await member("n1", { clusterId: "alpha" });
    const b = await member("n2", { clusterId: "beta" });
    a.transport.addPeer("n2", b.address);
    a.transport.send([appMessage("n1", "n2", 1)]);
    await waitFor("the refusal", () => a.recorder.errors.length > 0 && b.recorder.errors.length > 0);

    const [sent] = a.recorder.errors;
    expect(sent).toBeInstanceOf(ClusterMismatchError);
    expect(sent).toMatchObject({ name: "ClusterMismatchError", reason: "cluster-mismatch", peer: "n2", localClusterId: "alpha", remoteClusterId: "beta" });
    expect(sent?.message).toContain('"alpha"');
    expect(sent?.message).toContain('"beta"');
    expect(String((sent?.cause as Error).message)).toContain("FAILED_PRECONDITION");
    const [seen] = b.recorder.errors;
    expect(seen).toMatchObject({ name: "ClusterMismatchError", peer: "n1", localClusterId: "beta", remoteClusterId: "alpha" });
    expect(b.recorder.received).toEqual([]);

    // Sends while refused are dropped and reported, and the peer is not dialled again soon.
    a.transport.send([appMessage("n1", "n2", 2)]);
    await sleep(400);
    expect(a.recorder.unreachable).toContain("n2");
    expect(a.transport.peerStats("n2")).toMatchObject({ state: "refused", streamAttemptsTotal: 1 });
    expect(a.recorder.errors).toHaveLength(1);
    expect(b.transport.stats().streamsRefusedTotal).toBe(1);
  });

  it("grpc-transport - a wrong cluster token or destination is refused, the right ones accepted", async () => {
    const b = await member("n2", { clusterToken: "s3cret" });
    const intruder = await member("n1", { clusterToken: "guess" });
    const lost = await member("n3", { clusterToken: "s3cret" });
    const friend = await member("n4", { clusterToken: "s3cret" });
    intruder.transport.addPeer("n2", b.address);
    lost.transport.addPeer("n5", b.address); // n2 listens there, not n5
    friend.transport.addPeer("n2", b.address);
    intruder.transport.send([appMessage("n1", "n2", 1)]);
    lost.transport.send([appMessage("n3", "n5", 1)]);
    friend.transport.send([appMessage("n4", "n2", 1)]);
    await waitFor("refusals and delivery", () =>
      intruder.recorder.errors.length > 0 && lost.recorder.errors.length > 0 && b.recorder.received.length === 1);

    expect(intruder.recorder.errors[0]).toBeInstanceOf(PeerRefusedError);
    expect(intruder.recorder.errors[0]).toMatchObject({ reason: "unauthenticated", peer: "n2" });
    expect(lost.recorder.errors[0]).toMatchObject({ reason: "member-mismatch", peer: "n5" });
    expect(lost.recorder.errors[0]?.message).toContain("this is member n2");
    expect(b.recorder.received.map((m) => m.from)).toEqual(["n4"]);
    await waitFor("the receiver's reports", () => b.recorder.errors.length === 2);
    expect(b.recorder.errors.map((e) => (e as PeerRefusedError).reason).sort()).toEqual(["member-mismatch", "unauthenticated"]);
  });

  it("grpc-transport - an oversize message is dropped and reported while later messages still flow", async () => {
    const limits = { messageBytesMax: 4096 };
    const a = await member("n1", limits);
    const b = await member("n2", limits);
    a.transport.addPeer("n2", b.address);
    a.transport.send([appMessage("n1", "n2", 1), appMessage("n1", "n2", 2, 10_000), appMessage("n1", "n2", 3)]);
    a.transport.send([appMessage("n1", "n2", 4, 3000)]);
    await waitFor("the later messages", () => b.recorder.received.length === 3);

    expect(b.recorder.received.map((m) => m.index)).toEqual([1, 3, 4]);
    const tooLarge = a.recorder.errors.filter((e) => e instanceof MessageTooLargeError);
    expect(tooLarge).toHaveLength(1);
    expect(tooLarge[0]).toMatchObject({ name: "MessageTooLargeError", peer: "n2", limitBytes: 4096 });
    expect((tooLarge[0] as MessageTooLargeError).sizeBytes).toBeGreaterThan(10_000);
    expect(tooLarge[0]?.message).toContain("over the limit of 4096 bytes");
    expect(a.recorder.unreachable).toEqual(["n2"]);
    expect(a.transport.peerStats("n2")).toMatchObject({ state: "open", messagesDroppedTooLargeTotal: 1, messagesSentTotal: 3, streamsOpenedTotal: 1 });
  });

  it("grpc-transport - a down peer makes send neither throw nor block, and is reported unreachable", async () => {
    const port = await closedPort();
    const a = await member("n1", { queueLengthMax: 64 });
    a.transport.addPeer("n2", `127.0.0.1:${port}`);
    const started = performance.now();
    for (let i = 0; i < 200; i++) {
      const batch = Array.from({ length: 50 }, (_, k) => appMessage("n1", "n2", i * 50 + k + 1));
      expect(() => a.transport.send(batch)).not.toThrow();
    }
    const elapsedMs = performance.now() - started;
    expect(elapsedMs).toBeLessThan(1000);
    // Bounded: at most a queue's worth waits while the first dial is in progress.
    expect(a.transport.peerStats("n2")?.queuedMessages).toBeLessThanOrEqual(64);

    await waitFor("the unreachable report", () => a.recorder.errors.some((e) => e instanceof PeerUnreachableError));
    expect(a.recorder.unreachable).toContain("n2");
    const unreachableError = a.recorder.errors.find((e) => e instanceof PeerUnreachableError);
    expect(unreachableError?.message).toContain(`127.0.0.1:${port}`);

    // Once the peer is known to be down, sends are dropped at once and each send() reports.
    const reportsBefore = a.recorder.unreachable.length;
    await waitFor("backoff", () => a.transport.peerStats("n2")?.state !== "connecting");
    a.transport.send([appMessage("n1", "n2", 1), appMessage("n1", "n2", 2)]);
    await sleep(0);
    expect(a.recorder.unreachable.length).toBeGreaterThan(reportsBefore);
    const stats = a.transport.peerStats("n2");
    expect(stats?.messagesSentTotal).toBe(0);
    expect((stats?.messagesDroppedQueueFullTotal ?? 0) + (stats?.messagesDroppedUnreachableTotal ?? 0)).toBeGreaterThan(9000);

    // Unknown peers too.
    a.transport.send([appMessage("n1", "n9", 1)]);
    await sleep(0);
    expect(a.recorder.unreachable).toContain("n9");
    expect(a.transport.stats().messagesDroppedUnknownPeerTotal).toBe(1);
  });

  it("grpc-transport - callbacks never run inside send", async () => {
    const a = await member("n1");
    let inSend = false;
    let reentered = false;
    a.transport.setHandler({
      receive: () => undefined,
      reportUnreachable: () => {
        if (inSend) reentered = true;
      },
      reportSnapshot: () => undefined,
      reportError: () => undefined,
    });
    inSend = true;
    a.transport.send([appMessage("n1", "n7", 1)]);
    inSend = false;
    await sleep(0);
    expect(reentered).toBe(false);
  });

  it("grpc-transport - snapshots travel by their own call beside the stream and are reported", async () => {
    const a = await member("n1", { messageBytesMax: 64 * 1024 });
    const b = await member("n2", { messageBytesMax: 64 * 1024 });
    a.transport.addPeer("n2", b.address);
    a.transport.send([appMessage("n1", "n2", 1), snapshotMessage("n1", "n2", 2 * 1024 * 1024), appMessage("n1", "n2", 2)]);
    await waitFor("the snapshot report", () => a.recorder.snapshots.length === 1 && b.recorder.received.length === 3);
    expect(a.recorder.snapshots).toEqual([["n2", "finish"]]);
    const snap = b.recorder.received.find((m) => m.type === MessageType.Snap);
    expect(snap?.snapshot?.data.length).toBe(2 * 1024 * 1024);
    expect(snap?.snapshot?.metadata).toEqual({ index: 100, term: 3, confState: { voters: ["n1", "n2", "n3"], learners: [] } });
    expect(b.recorder.from("n1").filter((m) => m.type === MessageType.App).map((m) => m.index)).toEqual([1, 2]);
    expect(a.transport.peerStats("n2")).toMatchObject({ snapshotsSentTotal: 1, messagesSentTotal: 2 });

    // A snapshot over its own limit, and one to a down peer, both fail and are reported.
    const small = await member("n3", { snapshotBytesMax: 1024 });
    small.transport.addPeer("n2", b.address);
    small.transport.addPeer("n4", `127.0.0.1:${await closedPort()}`);
    small.transport.send([snapshotMessage("n3", "n2", 4096), snapshotMessage("n3", "n4", 10)]);
    await waitFor("both failures", () => small.recorder.snapshots.length === 2);
    expect(small.recorder.snapshots.sort()).toEqual([["n2", "failure"], ["n4", "failure"]]);
    expect(small.recorder.errors.some((e) => e instanceof MessageTooLargeError && e.limitBytes === 1024)).toBe(true);
  });

  it("grpc-transport - undecodable bytes are dropped and reported by the receiver", async () => {
    const garbage = { encode: (): Uint8Array => new Uint8Array([0xff, 1, 2]), decode: (): Message => appMessage("n1", "n2", 1) };
    const a = await member("n1", { codec: garbage });
    const b = await member("n2");
    a.transport.addPeer("n2", b.address);
    a.transport.send([appMessage("n1", "n2", 1)]);
    await waitFor("the decode report", () => b.recorder.errors.length === 1);
    expect(b.recorder.errors[0]).toBeInstanceOf(MessageDecodeError);
    expect(b.recorder.errors[0]?.peer).toBe("n1");
    expect(b.recorder.received).toEqual([]);
  });

  it("grpc-transport - removePeer and close stop everything, and later calls are harmless", async () => {
    const a = await member("n1");
    const b = await member("n2");
    a.transport.addPeer("n2", b.address);
    a.transport.addPeer("n2", b.address); // same address: no new stream
    a.transport.send([appMessage("n1", "n2", 1)]);
    await waitFor("delivery", () => b.recorder.received.length === 1);
    expect(a.transport.peerStats("n2")?.streamAttemptsTotal).toBe(1);
    // Another address: the old stream goes, a new one is dialled there.
    const b2 = await member("n2");
    a.transport.addPeer("n2", b2.address);
    a.transport.send([appMessage("n1", "n2", 2)]);
    await waitFor("delivery at the new address", () => b2.recorder.received.length === 1);
    expect(a.transport.peerStats("n2")).toMatchObject({ address: b2.address, streamAttemptsTotal: 1, messagesSentTotal: 1 });
    expect(b.recorder.received).toHaveLength(1);
    a.transport.removePeer("n2");
    expect(a.transport.peerStats("n2")).toBeUndefined();
    a.transport.removePeer("n2");
    await a.transport.close();
    await a.transport.close();
    expect(() => a.transport.send([appMessage("n1", "n2", 2)])).not.toThrow();
    a.transport.addPeer("n2", b.address);
    expect(a.transport.peerStats("n2")).toBeUndefined();
    await expect(a.transport.listen({ host: "127.0.0.1", port: 0 })).rejects.toThrow("closed");
    await sleep(50);
    expect(a.recorder.unreachable).toEqual([]);
    expect(a.recorder.errors).toEqual([]);
  });

  it("grpc-transport - listen reports a taken port and can then listen elsewhere", async () => {
    const a = await member("n1");
    const b = new GrpcRaftTransport({ clusterId: "hf-test", id: "n2" });
    open.push(b);
    await expect(b.listen({ host: "127.0.0.1", port: a.port })).rejects.toThrow(/cannot listen on 127\.0\.0\.1:\d+/);
    const bound = await b.listen({ host: "127.0.0.1", port: 0 });
    expect(bound.port).toBeGreaterThan(0);
    expect(bound.address).toBe(`127.0.0.1:${bound.port}`);
    expect(b.address).toEqual(bound);
    await expect(b.listen({ host: "127.0.0.1", port: 0 })).rejects.toThrow("already listening");
    expect(() => new GrpcRaftTransport({ clusterId: "hf-test", id: "n3", backoffMsMin: 0 })).toThrow(RangeError);
  });

  it("grpc-transport - close releases every handle, so the process exits on its own", async () => {
    const adapter = fileURLToPath(new URL("../src/adapters/grpc-transport.ts", import.meta.url));
    const root = fileURLToPath(new URL("../../../", import.meta.url));
    const downPort = await closedPort();
    // Three members with streams, a snapshot, a peer in backoff; then close() and nothing else:
    // the process must end by itself. A diagnostic timer (unref'd) lists what is left if it does not.
    const script = `
      import { GrpcRaftTransport } from ${JSON.stringify(adapter)};
      const ids = ["n1", "n2", "n3"];
      let received = 0;
      const handler = { receive() { received++; }, reportUnreachable() {}, reportSnapshot() {}, reportError() {} };
      const ts = ids.map((id) => new GrpcRaftTransport({ clusterId: "exit", id, handler }));
      const addrs = await Promise.all(ts.map((t) => t.listen({ host: "127.0.0.1", port: 0 })));
      ts.forEach((t, i) => ids.forEach((id, j) => { if (i !== j) t.addPeer(id, addrs[j].address); }));
      ts[0].addPeer("n4", "127.0.0.1:${downPort}");
      const m = (from, to, index, type = 4, snapshot = null) => ({ type, from, to, term: 1, logTerm: 1, index, entries: [], commit: 0,
        snapshot, reject: false, rejectHint: 0, context: new Uint8Array(0) });
      const snap = { metadata: { index: 1, term: 1, confState: { voters: ids, learners: [] } }, data: new Uint8Array(1 << 20) };
      ts.forEach((t, i) => t.send(ids.filter((id) => id !== ids[i]).flatMap((to) => [m(ids[i], to, 1), m(ids[i], to, 2)])));
      ts[0].send([m("n1", "n4", 1), m("n1", "n2", 0, 10, snap)]);
      for (let i = 0; i < 500 && received < 13; i++) await new Promise((r) => setTimeout(r, 10));
      await Promise.all(ts.map((t) => t.close()));
      setTimeout(() => { console.error("still alive:", process.getActiveResourcesInfo()); }, 3000).unref();
      console.log("closed after receiving " + received);
    `;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | string>((resolve) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        resolve("did not exit within 15 s");
      }, 15_000);
      child.on("exit", (exitCode, signal) => {
        clearTimeout(timer);
        resolve(exitCode ?? String(signal));
      });
    });
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    expect(stdout.trim()).toBe("closed after receiving 13");
  }, 20_000);
});
