/**
 * RaftNode with real parts: members in this process, each with its own data directory on disk
 * (WAL, snapshots) and a GrpcRaftTransport on loopback, replicating a KvStateMachine.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { GrpcRaftTransport } from "../src/adapters/grpc-transport.js";
import { kvReplicatedStateMachine, kvStateCrc } from "../src/adapters/kv-service.js";
import {
  NotLeaderError, ProposalOutcomeUnknownError, ProposalRejectedError, RaftNode, RaftNodeConfigError, type MemberInfo, type RaftNodeOptions,
} from "../src/adapters/raft-node.js";
import { encodeKvCommand, KvStateMachine, type KvApplied } from "../src/kv.js";
import { Role } from "../src/types.js";
import type { NodeId } from "../src/types.js";

const TICK_MS = 20;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `condition` every 20 ms; fails after `timeoutMs` with `what` and the last diagnostic. */
async function waitFor(what: string, condition: () => boolean | string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = condition();
    if (r === true) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${typeof r === "string" ? `: ${r}` : ""}`);
    await sleep(20);
  }
}

interface Member {
  readonly id: NodeId;
  readonly dir: string;
  readonly port: number;
  transport: GrpcRaftTransport;
  node: RaftNode<KvApplied | null>;
  kv: KvStateMachine;
  up: boolean;
}

type Extra = Partial<Omit<RaftNodeOptions<KvApplied | null>, "id" | "clusterId" | "dataDir" | "transport" | "stateMachine" | "peers">>;

class Cluster {
  readonly members = new Map<NodeId, Member>();
  readonly root = mkdtempSync(join(tmpdir(), "raft-node-test-"));
  private readonly infos = new Map<NodeId, MemberInfo>();
  private requestId = 0;

  constructor(private readonly extra: Extra = {}) {}

  /** Listens for `ids` first (their addresses go into everyone's peers), then starts them. */
  async start(ids: readonly NodeId[], initialVoters: readonly NodeId[]): Promise<void> {
    const transports = await Promise.all(ids.map(async (id) => {
      const transport = new GrpcRaftTransport({ clusterId: "test", id, backoffMsMax: 200 });
      const bound = await transport.listen({ host: "127.0.0.1", port: 0 });
      this.infos.set(id, { id, peerAddress: bound.address, clientAddress: `kv-of-${id}` });
      return { id, transport, port: bound.port };
    }));
    for (const { id, transport, port } of transports) {
      const dir = join(this.root, id);
      const kv = new KvStateMachine();
      const node = this.startNode(id, dir, transport, kv, initialVoters);
      this.members.set(id, { id, dir, port, transport, node, kv, up: true });
    }
  }

  private startNode(id: NodeId, dir: string, transport: GrpcRaftTransport, kv: KvStateMachine, initialVoters: readonly NodeId[]): RaftNode<KvApplied | null> {
    return RaftNode.start({
      id, clusterId: "test", dataDir: dir, transport, stateMachine: kvReplicatedStateMachine(kv), initialVoters, peers: [...this.infos.values()],
      tickMs: TICK_MS, electionTicks: 10, proposalTimeoutMs: 3000, readTimeoutMs: 3000, ...this.extra,
    });
  }

  member(id: NodeId): Member {
    const m = this.members.get(id);
    if (m === undefined) throw new Error(`no member ${id}`);
    return m;
  }

  up(): Member[] {
    return [...this.members.values()].filter((m) => m.up);
  }

  leader(): Member | null {
    const leaders = this.up().filter((m) => m.node.isLeader());
    // Two members may both believe they lead for a moment (an old leader not yet told): take the higher term.
    leaders.sort((a, b) => b.node.status().term - a.node.status().term);
    return leaders[0] ?? null;
  }

  async waitLeader(): Promise<Member> {
    await waitFor("a leader", () => this.leader() !== null);
    return this.leader()!;
  }

  /** Stops a member cleanly (its WAL is synced and closed; the directory stays). */
  async stop(id: NodeId): Promise<void> {
    const m = this.member(id);
    m.up = false;
    await m.node.close();
  }

  /** Starts a stopped member again from its directory, on the same port. */
  async restart(id: NodeId, initialVoters: readonly NodeId[]): Promise<Member> {
    const m = this.member(id);
    if (m.up) throw new Error(`${id} is up`);
    const transport = new GrpcRaftTransport({ clusterId: "test", id, backoffMsMax: 200 });
    await transport.listen({ host: "127.0.0.1", port: m.port });
    m.transport = transport;
    m.kv = new KvStateMachine();
    m.node = this.startNode(id, m.dir, transport, m.kv, initialVoters);
    m.up = true;
    return m;
  }

  /** Puts through whoever leads, retrying the same request on a leader change; resolves with the applied index. */
  async put(key: string, value: string): Promise<number> {
    const requestId = ++this.requestId;
    const command = encodeKvCommand({ clientId: "test-client", requestId, input: { op: "put", key, value } });
    const deadline = Date.now() + 15_000;
    let last: unknown = null;
    while (Date.now() < deadline) {
      const leader = this.leader();
      if (leader === null) {
        await sleep(TICK_MS);
        continue;
      }
      try {
        const applied = await leader.node.propose(command);
        if (applied === null || !applied.result.ok) throw new Error(`put ${key} applied no result: ${JSON.stringify(applied)}`);
        return applied.index;
      } catch (e) {
        if (!(e instanceof NotLeaderError || e instanceof ProposalRejectedError || e instanceof ProposalOutcomeUnknownError)) throw e;
        last = e;
        await sleep(TICK_MS);
      }
    }
    throw new Error(`put ${key}=${value} did not succeed within 15 s (last: ${String(last)})`);
  }

  /** Every up member applied the leader's commit index and holds the same state. */
  converged(ids: readonly NodeId[] = this.up().map((m) => m.id)): true | string {
    const leader = this.leader();
    if (leader === null) return "no leader";
    const commit = leader.node.status().commit;
    const crc = kvStateCrc(leader.kv);
    for (const id of ids) {
      const m = this.member(id);
      const s = m.node.status();
      if (s.applied !== commit) return `${id} applied ${s.applied} of ${commit}`;
      if (kvStateCrc(m.kv) !== crc) return `${id} state differs from the leader's at index ${commit}`;
    }
    return true;
  }

  async close(): Promise<void> {
    await Promise.all(this.up().map((m) => m.node.close()));
    for (const m of this.members.values()) m.up = false;
    rmSync(this.root, { recursive: true, force: true });
  }
}

let cluster: Cluster | null = null;

afterEach(async () => {
  const c = cluster;
  cluster = null;
  await c?.close();
});

const FOUNDERS = ["n1", "n2", "n3"];

describe("raft-node", () => {
  it("raft-node - three members elect a leader, replicate writes and serve linearizable reads", async () => {
    cluster = new Cluster();
    await cluster.start(FOUNDERS, FOUNDERS);
    const leader = await cluster.waitLeader();
    for (let i = 0; i < 30; i++) await cluster.put(`k${i % 5}`, `v${i}`);
    await waitFor("every member to apply every write", () => cluster!.converged());
    for (const m of cluster.up()) expect(m.kv.read("k4")).toBe("v29");

    // A read barrier on the leader, and on a follower (forwarded to the leader).
    const current = cluster.leader()!;
    const readIndex = await current.node.readIndex();
    expect(readIndex).toBeGreaterThanOrEqual(30);
    expect(current.node.status().applied).toBeGreaterThanOrEqual(readIndex);
    const follower = cluster.up().find((m) => m !== current)!;
    expect(await follower.node.readIndex()).toBeGreaterThanOrEqual(readIndex);

    // A follower refuses proposals and names the leader with its addresses.
    const refusal = await follower.node.propose(new Uint8Array([1])).catch((e: unknown) => e);
    expect(refusal).toBeInstanceOf(NotLeaderError);
    const notLeader = refusal as NotLeaderError;
    if (follower.node.status().lead === current.id) {
      expect(notLeader.leaderId).toBe(current.id);
      expect(notLeader.leader?.clientAddress).toBe(`kv-of-${current.id}`);
    }
    // Many proposals in one turn share fsyncs: the leader persisted more entries than it made fsyncs.
    const writes = await Promise.all(Array.from({ length: 64 }, (_, i) => cluster!.put(`batch${i}`, `b${i}`)));
    expect(new Set(writes).size).toBe(64);
    const stats = cluster.leader()!.node.status().stats;
    expect(stats.entriesPersistedTotal).toBeGreaterThan(stats.fsyncTotal);
    expect(leader.node.status().confState.voters).toEqual(FOUNDERS);
  }, 30_000);

  it("raft-node - a stopped member restarts from its data directory and catches up", async () => {
    cluster = new Cluster();
    await cluster.start(FOUNDERS, FOUNDERS);
    await cluster.waitLeader();
    for (let i = 0; i < 20; i++) await cluster.put(`a${i}`, `x${i}`);
    await waitFor("convergence", () => cluster!.converged());
    const victim = cluster.up().find((m) => !m.node.isLeader())!;
    const before = victim.node.status();
    await cluster.stop(victim.id);
    for (let i = 0; i < 20; i++) await cluster.put(`b${i}`, `y${i}`);

    const restarted = await cluster.restart(victim.id, FOUNDERS);
    // Right after the restart, before hearing from anyone: term, vote and log came back from disk,
    // and the state machine is rebuilt up to the commit index as the log is applied again.
    const after = restarted.node.status();
    expect(after.term).toBeGreaterThanOrEqual(before.term);
    expect(after.lastIndex).toBeGreaterThanOrEqual(before.lastIndex);
    expect(after.commit).toBeGreaterThanOrEqual(before.commit);
    await waitFor("the restarted member to catch up", () => cluster!.converged());
    expect(restarted.kv.read("a7")).toBe("x7");
    expect(restarted.kv.read("b19")).toBe("y19");

    // The whole cluster restarts from disk and keeps every write.
    for (const m of cluster.up()) await cluster.stop(m.id);
    for (const id of FOUNDERS) await cluster.restart(id, FOUNDERS);
    await cluster.waitLeader();
    await cluster.put("c", "after-full-restart");
    await waitFor("convergence after a full restart", () => cluster!.converged());
    for (const m of cluster.up()) {
      expect(m.kv.read("a0")).toBe("x0");
      expect(m.kv.read("b19")).toBe("y19");
      expect(m.kv.read("c")).toBe("after-full-restart");
    }
  }, 40_000);

  it("raft-node - a member that fell behind the leader's compaction installs a snapshot", async () => {
    cluster = new Cluster({ snapshotEveryEntries: 20, compactKeepEntries: 5, walSegmentSizeBytes: 2048 });
    await cluster.start(FOUNDERS, FOUNDERS);
    await cluster.waitLeader();
    await cluster.put("early", "1");
    await waitFor("convergence", () => cluster!.converged());
    const victim = cluster.up().find((m) => !m.node.isLeader())!;
    const victimLast = victim.node.status().lastIndex;
    await cluster.stop(victim.id);
    for (let i = 0; i < 80; i++) await cluster.put(`s${i % 7}`, `value-${i}`);
    const leader = cluster.leader()!;
    await waitFor("the leader to compact past the stopped member's log", () => leader.node.status().firstIndex > victimLast + 1);
    const leaderStats = leader.node.status().stats;
    expect(leaderStats.snapshotsTakenTotal).toBeGreaterThan(0);
    expect(leaderStats.walSegmentsReleasedTotal).toBeGreaterThan(0);

    const restarted = await cluster.restart(victim.id, FOUNDERS);
    await waitFor("the lagging member to install a snapshot and converge", () => {
      if (restarted.node.status().stats.snapshotsInstalledTotal === 0) return "no snapshot installed yet";
      return cluster!.converged();
    }, 15_000);
    expect(restarted.node.status().snapshotIndex).toBeGreaterThan(victimLast);
    expect(restarted.kv.read("early")).toBe("1");
    expect(restarted.kv.read("s2")).toBe(leader.kv.read("s2"));

    // It restarts again from its own snapshot file, not from the leader.
    await cluster.stop(victim.id);
    const again = await cluster.restart(victim.id, FOUNDERS);
    expect(again.node.status().snapshotIndex).toBeGreaterThan(victimLast);
    expect(again.kv.read("early")).toBe("1");
    await cluster.put("late", "2");
    await waitFor("convergence after the second restart", () => cluster!.converged());
  }, 40_000);

  it("raft-node - a learner joins, catches up, is promoted and counts in the quorum", async () => {
    cluster = new Cluster({ snapshotEveryEntries: 1000 });
    await cluster.start(FOUNDERS, FOUNDERS);
    await cluster.waitLeader();
    for (let i = 0; i < 15; i++) await cluster.put(`j${i}`, `w${i}`);
    // The joiner starts with an empty log: it is not among the founding voters and cannot campaign.
    await cluster.start(["n4"], FOUNDERS);
    const joiner = cluster.member("n4");
    expect(joiner.node.status().lastIndex).toBe(0);
    const info: MemberInfo = { id: "n4", peerAddress: cluster.member("n4").transport.address!.address, clientAddress: "kv-of-n4" };
    let confState = await proposeOnLeader(cluster, (leader) => leader.node.addLearner(info));
    expect(confState.learners).toEqual(["n4"]);
    await waitFor("the learner to catch up", () => cluster!.converged());
    expect(joiner.kv.read("j14")).toBe("w14");
    expect(joiner.node.status().role).toBe(Role.Follower);

    confState = await proposeOnLeader(cluster, (leader) => leader.node.promote("n4"));
    expect(confState.voters).toEqual(["n1", "n2", "n3", "n4"]);
    expect(confState.learners).toEqual([]);
    await waitFor("every member to see n4 as a voter", () =>
      cluster!.up().every((m) => m.node.status().confState.voters.includes("n4")) || "not yet");
    // Every member learned the joiner's addresses from the log.
    for (const m of cluster.up()) expect(m.node.status().members.find((x) => x.id === "n4")?.clientAddress).toBe("kv-of-n4");

    // With one founder down, three of the four voters remain: the leader needs n4 to commit.
    const leader = cluster.leader()!;
    const downs = FOUNDERS.filter((id) => id !== leader.id).slice(0, 1);
    for (const id of downs) await cluster.stop(id);
    await cluster.put("after-promotion", "ok");
    await waitFor("convergence with n4 voting", () => cluster!.converged());
    expect(joiner.kv.read("after-promotion")).toBe("ok");

    // The stopped founder is removed: three voters again, and every member forgets its address.
    confState = await proposeOnLeader(cluster, (l) => l.node.remove(downs[0]!));
    expect(confState.voters).toEqual(["n1", "n2", "n3", "n4"].filter((id) => id !== downs[0]));
    await cluster.put("after-removal", "ok");
    await waitFor("convergence after the removal", () => cluster!.converged());
    for (const m of cluster.up()) expect(m.node.status().members.some((x) => x.id === downs[0])).toBe(false);
  }, 40_000);

  it("raft-node - leadership moves to the member it is transferred to", async () => {
    cluster = new Cluster();
    await cluster.start(FOUNDERS, FOUNDERS);
    const leader = await cluster.waitLeader();
    await cluster.put("t", "1");
    await waitFor("convergence", () => cluster!.converged());
    const target = cluster.up().find((m) => m !== leader)!;
    await leader.node.transferLeadership(target.id);
    await waitFor("the target to lead", () => target.node.isLeader());
    await cluster.put("t", "2");
    await waitFor("convergence", () => cluster!.converged());
    expect(target.kv.read("t")).toBe("2");
  }, 30_000);

  it("raft-node - a data directory of another member or cluster is refused", async () => {
    cluster = new Cluster();
    await cluster.start(["n1"], ["n1"]);
    await cluster.waitLeader();
    await cluster.put("solo", "1");
    await cluster.stop("n1");
    const dir = cluster.member("n1").dir;
    const transport = new GrpcRaftTransport({ clusterId: "other", id: "n9" });
    try {
      const start = (id: NodeId, clusterId: string) => RaftNode.start({
        id, clusterId, dataDir: dir, transport, stateMachine: kvReplicatedStateMachine(new KvStateMachine()), initialVoters: ["n1"], peers: [],
      });
      expect(() => start("n9", "test")).toThrow(RaftNodeConfigError);
      expect(() => start("n1", "other")).toThrow(RaftNodeConfigError);
    } finally {
      await transport.close();
    }
    // The rightful member still opens it, as the only voter it elects itself and keeps its data.
    const m = await cluster.restart("n1", ["n1"]);
    await cluster.waitLeader();
    expect(m.kv.read("solo")).toBe("1");
  }, 20_000);
});

/** Runs `f` on the leader, again on a new leader if leadership moved before it was proposed. */
async function proposeOnLeader<T>(c: Cluster, f: (leader: Member) => Promise<T>): Promise<T> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const leader = await c.waitLeader();
    try {
      return await f(leader);
    } catch (e) {
      if (!(e instanceof NotLeaderError || e instanceof ProposalRejectedError)) throw e;
      await sleep(TICK_MS * 5);
    }
  }
  throw new Error("no leader accepted the proposal");
}
