/**
 * Behaviour of the Raft core beyond the paper's §5: pre-vote, check-quorum and the leader lease, flow
 * control, snapshots, membership changes, leadership transfer, ReadIndex; and a randomized multi-member
 * test (drops, reordering, duplicates, partitions, crashes, compaction) checking the safety properties.
 */
import { describe, expect, it } from "vitest";
import { ConfChangeError, ProposalDroppedError, type DropReason } from "../src/errors.js";
import { newMessage } from "../src/raft.js";
import type { RawNodeConfig } from "../src/raw-node.js";
import { ConfChangeType, MessageType, Role } from "../src/types.js";
import type { Message, NodeId } from "../src/types.js";
import { Network, bytes, chaos, type ChaosResult } from "./harness.js";
import { ids } from "./helpers.js";

/** RAFT_CHAOS_SEEDS / RAFT_CHAOS_FIRST_SEED widen the search when hunting a bug; the default run stays fast. */
const CHAOS_FIRST_SEED = Number(process.env.RAFT_CHAOS_FIRST_SEED ?? 1);
const CHAOS_SEEDS = process.env.RAFT_CHAOS_SEEDS === undefined ? null : Number(process.env.RAFT_CHAOS_SEEDS);
/** About 10 ms per run on this machine: allow 20 times that, plus a margin. */
const chaosTimeoutMs = (count: number): number => 30_000 + 200 * count;

describe("raft - randomized network", () => {
  const count = CHAOS_SEEDS ?? 300;
  it("raft - at most one leader per term and identical committed prefixes under drops, reordering, duplicates, partitions and crashes", { timeout: chaosTimeoutMs(count) }, () => {
    let elections = 0;
    let committed = 0;
    let snapshots = 0;
    for (let seed = CHAOS_FIRST_SEED; seed < CHAOS_FIRST_SEED + count; seed++) {
      let result: ChaosResult;
      try {
        result = chaos(seed, 600);
      } catch (e) {
        throw new Error(`seed ${seed} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      elections += result.leaders;
      committed += result.committed;
      snapshots += result.snapshots;
    }
    // The runs did exercise elections, commits and snapshots.
    expect(elections).toBeGreaterThan(count);
    expect(committed).toBeGreaterThan(5 * count);
    expect(snapshots).toBeGreaterThan(count / 20);
  });

  const membershipCount = CHAOS_SEEDS ?? 200;
  it("raft - safety and convergence hold with membership changes (add learner, promote, remove) under faults", { timeout: chaosTimeoutMs(membershipCount) }, () => {
    let confChanges = 0;
    for (let seed = CHAOS_FIRST_SEED; seed < CHAOS_FIRST_SEED + membershipCount; seed++) {
      try {
        confChanges += chaos(seed, 600, true).confChanges;
      } catch (e) {
        throw new Error(`seed ${seed} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
    }
    expect(confChanges).toBeGreaterThan(membershipCount);
  });

  it("raft - a seeded run replays identically, trace included", () => {
    const a = chaos(42, 600, true, true);
    const b = chaos(42, 600, true, true);
    expect(a.fingerprint.length).toBeGreaterThan(10_000);
    expect(b).toEqual(a);
    expect(chaos(43, 600, true, true).fingerprint).not.toBe(a.fingerprint);
  });
});

/** A 3-member cluster (or `voters`) whose first member leads, with the no-op committed everywhere. */
function cluster(voters: readonly NodeId[] = ids(3), config: Partial<RawNodeConfig> = {}): Network {
  const net = new Network(voters, { config });
  net.get(voters[0]).node.campaign();
  net.stabilize();
  expect(net.leader()).toBe(voters[0]);
  return net;
}

function expectDropped(fn: () => void, reason: DropReason): void {
  let error: unknown = null;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(ProposalDroppedError);
  expect((error as ProposalDroppedError).reason).toBe(reason);
}

/** The data of the application entries `id` applied (no-ops and conf changes left out). */
function appliedData(net: Network, id: NodeId): string[] {
  return net.get(id).applied.map((a) => a.split("/")).filter((f) => f[2] === "0" && f[3] !== "").map((f) => f.slice(3).join("/"));
}

describe("raft - pre-vote and check-quorum", () => {
  it("raft - pre-vote keeps a member back from a partition from disrupting the leader", () => {
    const net = cluster(ids(3), { preVote: true, checkQuorum: false });
    net.isolate("n3");
    net.tick(["n3"], 100);
    net.stabilize();
    // Its pre-votes went nowhere: its term did not move.
    expect(net.get("n3").node.status()).toMatchObject({ term: 1, role: Role.PreCandidate });
    net.recover();
    net.tick(["n1"], 1);
    net.stabilize();
    expect(net.get("n1").node.status()).toMatchObject({ role: Role.Leader, term: 1 });
    expect(net.get("n3").node.status()).toMatchObject({ role: Role.Follower, term: 1, lead: "n1" });
  });

  it("raft - without pre-vote nor check-quorum, the rejoining member's higher term deposes the leader", () => {
    const net = cluster(ids(3), { preVote: false, checkQuorum: false });
    net.isolate("n3");
    net.tick(["n3"], 100);
    net.stabilize();
    const term3 = net.get("n3").node.status().term;
    expect(term3).toBeGreaterThan(2);
    net.recover();
    for (let i = 0; i < 30 && net.get("n1").node.status().role === Role.Leader; i++) {
      net.tick(["n1", "n3"], 1);
      net.stabilize();
    }
    expect(net.get("n1").node.status().role).not.toBe(Role.Leader);
    expect(net.get("n1").node.status().term).toBeGreaterThan(term3);
  });

  it("raft - check-quorum: a leader that hears from no quorum for an election timeout steps down", () => {
    const net = cluster(ids(3), { checkQuorum: true });
    net.isolate("n1");
    net.tick(["n1"], 9);
    net.stabilize();
    expect(net.get("n1").node.status().role).toBe(Role.Leader);
    net.tick(["n1"], 11);
    net.stabilize();
    expect(net.get("n1").node.status()).toMatchObject({ role: Role.Follower, term: 1, lead: "" });
    expect(() => net.get("n1").node.propose(bytes("x"))).toThrow(ProposalDroppedError);
  });

  it("raft - check-quorum: a follower that heard from its leader within the election timeout ignores votes (leader lease)", () => {
    const net = cluster(ids(3), { checkQuorum: true, preVote: false });
    const n2 = net.get("n2").node;
    n2.step(newMessage({ type: MessageType.Vote, from: "n3", to: "n2", term: 5, logTerm: 9, index: 9 }));
    net.processAll();
    expect(n2.status()).toMatchObject({ term: 1, vote: "n1", lead: "n1" });
    expect(net.queue.filter((m) => m.from === "n2")).toEqual([]);
    // Once the lease ran out (no heartbeat for an election timeout) it votes.
    net.tick(["n2"], 10);
    net.queue = [];
    n2.step(newMessage({ type: MessageType.Vote, from: "n3", to: "n2", term: 5, logTerm: 9, index: 9 }));
    expect(n2.status()).toMatchObject({ term: 5, vote: "n3" });
  });

  it("raft - learners never campaign, members outside the membership never campaign", () => {
    const net = cluster();
    net.addMember("n4");
    net.proposeConfChange("n1", { type: ConfChangeType.AddLearner, node: "n4", context: new Uint8Array() });
    net.stabilize();
    net.isolate("n1");
    net.tick(["n4"], 100);
    net.stabilize();
    expect(net.get("n4").node.status()).toMatchObject({ role: Role.Follower, term: 1 });
    const outsider = new Network([]).addMember("x9");
    for (let i = 0; i < 100; i++) outsider.node.tick();
    outsider.node.campaign();
    expect(outsider.node.status()).toMatchObject({ role: Role.Follower, term: 0 });
    expect(outsider.node.hasReady()).toBe(false);
  });
});

describe("raft - replication and flow control", () => {
  it("raft - followers forward proposals to the leader; without a leader a proposal is dropped", () => {
    const net = new Network(ids(3));
    expectDropped(() => net.get("n2").node.propose(bytes("early")), "no-leader");
    net.get("n1").node.campaign();
    net.stabilize();
    net.get("n2").node.propose(bytes("via n2"));
    net.stabilize();
    for (const id of ids(3)) expect(appliedData(net, id)).toEqual(["via n2"]);
  });

  it("raft - in replicate state the leader pipelines at most maxInflightMsgs appends to a silent follower", () => {
    const net = cluster(ids(3), { maxInflightMsgs: 2, maxSizePerMsgBytes: 0 });
    net.isolate("n3");
    for (let i = 0; i < 6; i++) net.get("n1").node.propose(bytes(`e${i}`));
    net.processAll();
    const toN3 = net.queue.filter((m) => m.to === "n3" && m.type === MessageType.App);
    expect(toN3.map((m) => m.entries.length)).toEqual([1, 1]);
    expect(net.get("n1").node.status().progress?.n3).toMatchObject({ state: "replicate", inflight: 2, paused: true });
    net.recover();
    net.stabilize();
    for (const id of ids(3)) expect(appliedData(net, id)).toEqual(["e0", "e1", "e2", "e3", "e4", "e5"]);
  });

  it("raft - after a rejection the leader probes one append at a time and backtracks a whole term per round trip", () => {
    const net = cluster(ids(3), { maxSizePerMsgBytes: 0 });
    // n3 misses 5 entries of term 1 while partitioned.
    net.isolate("n3");
    for (let i = 0; i < 5; i++) net.get("n1").node.propose(bytes(`e${i}`));
    net.stabilize();
    net.recover();
    net.tick(["n1"], 1);
    net.stabilize();
    const appResps = net.deliveredByType.get(MessageType.AppResp) ?? 0;
    expect(appResps).toBeGreaterThan(0);
    expect(appliedData(net, "n3")).toEqual(["e0", "e1", "e2", "e3", "e4"]);
    expect(net.get("n1").node.status().progress?.n3).toMatchObject({ state: "replicate", match: 6 });
  });

  it("raft - the leader refuses proposals beyond maxUncommittedEntriesBytes until entries commit", () => {
    const net = cluster(ids(3), { maxUncommittedEntriesBytes: 10 });
    net.isolate("n2");
    net.isolate("n3");
    const leader = net.get("n1").node;
    leader.propose(bytes("123456"));
    expectDropped(() => leader.propose(bytes("abcdef")), "uncommitted-limit");
    net.recover();
    net.tick(["n1"], 1);
    net.stabilize();
    leader.propose(bytes("abcdef"));
    net.stabilize();
    expect(appliedData(net, "n2")).toEqual(["123456", "abcdef"]);
  });

  it("raft - a Ready hands out at most maxCommittedBytesPerReady of committed entries (at least one)", () => {
    const net = cluster(ids(1), { maxCommittedBytesPerReady: 1 });
    const node = net.get("n1").node;
    node.propose(bytes("a"));
    node.propose(bytes("b"));
    const rd = node.ready();
    expect(rd.committedEntries.map((e) => e.index)).toEqual([2]);
    net.get("n1").storage.append(rd.entries);
    node.advance(rd);
    expect(node.ready().committedEntries.map((e) => e.index)).toEqual([3]);
  });
});

describe("raft - snapshots", () => {
  it("raft - a follower that needs compacted entries gets the leader's snapshot, then the rest of the log", () => {
    const net = cluster();
    net.isolate("n3");
    for (let i = 0; i < 5; i++) net.get("n1").node.propose(bytes(`e${i}`));
    net.stabilize();
    expect(net.compact("n1")).toBe(6);
    net.get("n1").node.propose(bytes("after"));
    net.stabilize();
    net.recover();
    net.tick(["n1"], 1);
    net.stabilize();
    expect(net.deliveredByType.get(MessageType.Snap)).toBe(1);
    expect(appliedData(net, "n3")).toEqual(["e0", "e1", "e2", "e3", "e4", "after"]);
    expect(net.get("n3").storage.snapshot().metadata.index).toBe(6);
    expect(net.get("n1").node.status().progress?.n3).toMatchObject({ state: "replicate", match: 7 });
  });

  it("raft - a snapshot reported as failed is sent again; an unreported one is retried after two election timeouts", () => {
    const net = cluster();
    net.isolate("n3");
    for (let i = 0; i < 3; i++) net.get("n1").node.propose(bytes(`e${i}`));
    net.stabilize();
    net.compact("n1");
    net.recover();
    // The snapshot is lost and nobody reports it.
    net.dropIf = (m) => m.type === MessageType.Snap;
    const lost: Message[] = [];
    const deliver = net.deliver.bind(net);
    net.deliver = (m) => {
      if (m.type === MessageType.Snap) lost.push(m);
      else deliver(m);
    };
    net.tick(["n1"], 1);
    net.stabilize();
    expect(lost).toHaveLength(1);
    expect(net.get("n1").node.status().progress?.n3.state).toBe("snapshot");
    net.dropIf = null;
    net.deliver = deliver;
    for (let i = 0; i < 25; i++) {
      net.tick(["n1", "n2", "n3"], 1);
      net.stabilize();
    }
    expect(appliedData(net, "n3")).toEqual(["e0", "e1", "e2"]);
    // A failure report puts the follower back to probing at once.
    net.isolate("n2");
    net.get("n1").node.reportSnapshot("n2", false);
    expect(net.get("n1").node.status().progress?.n2.state).toBe("replicate");
  });

  it("raft - a stale snapshot (at or below the commit index) is ignored", () => {
    const net = cluster();
    net.get("n1").node.propose(bytes("x"));
    net.stabilize();
    net.compact("n1");
    const snap = net.get("n1").storage.snapshot();
    const before = net.get("n2").node.status();
    net.get("n2").node.step(newMessage({ type: MessageType.Snap, from: "n1", to: "n2", term: 1, snapshot: snap }));
    net.stabilize();
    expect(net.get("n2").node.status().commit).toBe(before.commit);
    expect(net.get("n2").storage.snapshot().metadata.index).toBe(0);
  });
});

describe("raft - membership changes", () => {
  const none = new Uint8Array();

  it("raft - a learner added later receives the log but neither votes nor counts for the commit", () => {
    const net = cluster();
    net.addMember("n4");
    net.get("n1").node.propose(bytes("before"));
    net.stabilize();
    net.proposeConfChange("n1", { type: ConfChangeType.AddLearner, node: "n4", context: bytes("addr-n4") });
    net.stabilize();
    expect(net.get("n4").confState).toEqual({ voters: ["n1", "n2", "n3"], learners: ["n4"] });
    expect(appliedData(net, "n4")).toEqual(["before"]);
    // With n2 and n3 down, the learner's acknowledgement does not make a quorum.
    net.isolate("n2");
    net.isolate("n3");
    net.get("n1").node.propose(bytes("x"));
    net.stabilize();
    expect(appliedData(net, "n1")).toEqual(["before"]);
    expect(net.get("n1").node.status().progress?.n4.match).toBe(net.get("n1").storage.lastIndex());
    // An election asks only voters.
    let votesAsked = 0;
    net.dropIf = (m) => {
      if (m.to === "n4" && (m.type === MessageType.Vote || m.type === MessageType.PreVote)) votesAsked++;
      return false;
    };
    net.recover();
    net.get("n1").node.transferLeader("n2");
    net.stabilize();
    expect(net.leader()).toBe("n2");
    expect(votesAsked).toBe(0);
  });

  it("raft - promoting a learner makes it a voter that counts for the quorum", () => {
    const net = cluster();
    net.addMember("n4");
    net.proposeConfChange("n1", { type: ConfChangeType.AddLearner, node: "n4", context: none });
    net.stabilize();
    net.proposeConfChange("n1", { type: ConfChangeType.AddVoter, node: "n4", context: none });
    net.stabilize();
    for (const id of ids(4)) expect(net.get(id).confState).toEqual({ voters: ids(4), learners: [] });
    // 4 voters: a quorum is 3, so n1 + n4 alone cannot commit, n1 + n2 + n4 can.
    net.isolate("n2");
    net.isolate("n3");
    net.get("n1").node.propose(bytes("x"));
    net.stabilize();
    expect(appliedData(net, "n1")).toEqual([]);
    net.isolated.delete("n2");
    net.tick(["n1"], 1);
    net.stabilize();
    expect(appliedData(net, "n1")).toEqual(["x"]);
    expect(appliedData(net, "n4")).toEqual(["x"]);
  });

  it("raft - a removed follower stops counting; a removed leader steps down and the rest elect a new one", () => {
    const net = cluster(ids(3));
    net.proposeConfChange("n1", { type: ConfChangeType.Remove, node: "n3", context: none });
    net.stabilize();
    expect(net.get("n1").confState).toEqual({ voters: ["n1", "n2"], learners: [] });
    net.proposeConfChange("n1", { type: ConfChangeType.Remove, node: "n1", context: none });
    net.stabilize();
    expect(net.get("n1").node.status()).toMatchObject({ role: Role.Follower, confState: { voters: ["n2"], learners: [] } });
    for (let i = 0; i < 40 && net.leader() !== "n2"; i++) {
      net.tick(["n1", "n2", "n3"], 1);
      net.stabilize();
    }
    expect(net.leader()).toBe("n2");
    net.get("n2").node.propose(bytes("after"));
    net.stabilize();
    expect(appliedData(net, "n2")).toEqual(["after"]);
    // The removed members never campaign again.
    net.tick(["n1", "n3"], 100);
    net.stabilize();
    expect(net.leader()).toBe("n2");
  });

  it("raft - at most one conf change is pending: the leader refuses a second until the first is applied", () => {
    const net = cluster();
    net.addMember("n4");
    net.addMember("n5");
    const leader = net.get("n1").node;
    leader.proposeConfChange({ type: ConfChangeType.AddLearner, node: "n4", context: none });
    expectDropped(() => leader.proposeConfChange({ type: ConfChangeType.AddLearner, node: "n5", context: none }), "conf-change-pending");
    // Forwarded from a follower, the refused change becomes a no-op entry.
    net.processAll();
    net.get("n2").node.proposeConfChange({ type: ConfChangeType.AddLearner, node: "n5", context: none });
    net.stabilize();
    expect(net.get("n1").confState.learners).toEqual(["n4"]);
    // Once applied, the next one is accepted.
    leader.proposeConfChange({ type: ConfChangeType.AddLearner, node: "n5", context: none });
    net.stabilize();
    expect(net.get("n1").confState.learners).toEqual(["n4", "n5"]);
  });

  it("raft - a conf change that does not apply to the membership is refused", () => {
    const net = cluster();
    const leader = net.get("n1").node;
    expectDropped(() => leader.proposeConfChange({ type: ConfChangeType.Remove, node: "n9", context: none }), "conf-change-invalid");
    expectDropped(() => leader.proposeConfChange({ type: ConfChangeType.AddVoter, node: "n2", context: none }), "conf-change-invalid");
    expectDropped(() => leader.proposeConfChange({ type: ConfChangeType.AddLearner, node: "n2", context: none }), "conf-change-invalid");
    expect(() => leader.applyConfChange({ type: ConfChangeType.Remove, node: "n9", context: none })).toThrow(ConfChangeError);
  });

  it("raft - a member joining with an empty membership waits, then catches up by snapshot once added", () => {
    const net = cluster();
    for (let i = 0; i < 3; i++) net.get("n1").node.propose(bytes(`e${i}`));
    net.stabilize();
    for (const id of ids(3)) net.compact(id);
    const joiner = net.addMember("n4");
    net.tick(["n4"], 100);
    expect(joiner.node.status()).toMatchObject({ role: Role.Follower, term: 0, lead: "" });
    net.proposeConfChange("n1", { type: ConfChangeType.AddLearner, node: "n4", context: none });
    net.stabilize();
    expect(net.deliveredByType.get(MessageType.Snap)).toBe(1);
    expect(appliedData(net, "n4")).toEqual(["e0", "e1", "e2"]);
    expect(joiner.node.status().confState).toEqual({ voters: ids(3), learners: ["n4"] });
  });
});

describe("raft - leadership transfer", () => {
  it("raft - transfer to an up-to-date follower: TimeoutNow, it wins the next term, the old leader follows", () => {
    const net = cluster();
    net.get("n1").node.transferLeader("n2");
    net.stabilize();
    expect(net.leader()).toBe("n2");
    expect(net.get("n2").node.status().term).toBe(2);
    expect(net.get("n1").node.status()).toMatchObject({ role: Role.Follower, lead: "n2" });
    expect(net.deliveredByType.get(MessageType.TimeoutNow)).toBe(1);
  });

  it("raft - transfer to a lagging follower catches it up first; proposals are dropped meanwhile", () => {
    const net = cluster();
    net.isolate("n3");
    net.get("n1").node.propose(bytes("x"));
    net.stabilize();
    net.recover();
    net.get("n1").node.transferLeader("n3");
    expectDropped(() => net.get("n1").node.propose(bytes("y")), "leadership-transfer");
    net.stabilize();
    expect(net.leader()).toBe("n3");
    expect(appliedData(net, "n3")).toEqual(["x"]);
  });

  it("raft - a transfer that cannot complete is aborted after an election timeout and proposals resume", () => {
    const net = cluster();
    net.isolate("n3");
    net.get("n1").node.transferLeader("n3");
    net.stabilize();
    expect(net.get("n1").node.status().leadTransferee).toBe("n3");
    for (let i = 0; i < 10; i++) {
      net.tick(["n1"], 1);
      net.stabilize();
    }
    expect(net.get("n1").node.status()).toMatchObject({ role: Role.Leader, leadTransferee: "" });
    net.get("n1").node.propose(bytes("resumed"));
    net.stabilize();
    expect(appliedData(net, "n2")).toEqual(["resumed"]);
  });

  it("raft - a transfer to a learner or to the leader itself is ignored; a follower forwards the request", () => {
    const net = cluster();
    net.addMember("n4");
    net.proposeConfChange("n1", { type: ConfChangeType.AddLearner, node: "n4", context: new Uint8Array() });
    net.stabilize();
    net.get("n1").node.transferLeader("n4");
    net.get("n1").node.transferLeader("n1");
    net.stabilize();
    expect(net.leader()).toBe("n1");
    expect(net.get("n1").node.status().leadTransferee).toBe("");
    net.get("n2").node.transferLeader("n3");
    net.stabilize();
    expect(net.leader()).toBe("n3");
  });
});

describe("raft - ReadIndex", () => {
  it("raft - on the leader, a read is released at the commit index after a heartbeat round confirms leadership", () => {
    const net = cluster();
    net.get("n1").node.propose(bytes("x"));
    net.stabilize();
    const commit = net.get("n1").node.status().commit;
    net.get("n1").node.readIndex(bytes("r1"));
    net.processAll();
    expect(net.get("n1").readStates).toEqual([]);
    expect(net.queue.map((m) => m.type)).toEqual([MessageType.Heartbeat, MessageType.Heartbeat]);
    net.stabilize();
    expect(net.get("n1").readStates).toEqual([{ index: commit, requestCtx: bytes("r1") }]);
  });

  it("raft - on a follower, the read is forwarded and the read state comes out of the follower's Ready", () => {
    const net = cluster();
    net.get("n1").node.propose(bytes("x"));
    net.stabilize();
    net.get("n3").node.readIndex(bytes("from n3"));
    net.stabilize();
    expect(net.get("n3").readStates).toEqual([{ index: net.get("n1").node.status().commit, requestCtx: bytes("from n3") }]);
    expect(net.get("n1").readStates).toEqual([]);
  });

  it("raft - a leader without a quorum never answers a read; one without a commit in its term waits for it", () => {
    const net = cluster();
    net.isolate("n2");
    net.isolate("n3");
    net.get("n1").node.readIndex(bytes("r"));
    net.stabilize();
    net.tick(["n1"], 3);
    net.stabilize();
    expect(net.get("n1").readStates).toEqual([]);

    const fresh = new Network(ids(3));
    fresh.dropIf = (m) => m.type === MessageType.App && m.entries.length > 0;
    fresh.get("n1").node.campaign();
    fresh.stabilize();
    fresh.get("n1").node.readIndex(bytes("early"));
    fresh.stabilize();
    expect(fresh.get("n1").readStates).toEqual([]);
    fresh.dropIf = null;
    fresh.tick(["n1"], 1);
    fresh.stabilize();
    expect(fresh.get("n1").readStates).toEqual([{ index: 1, requestCtx: bytes("early") }]);
  });

  it("raft - a single-member cluster answers a read at once; a follower without a leader refuses it", () => {
    const net = cluster(ids(1));
    net.get("n1").node.readIndex(bytes("solo"));
    net.processAll();
    expect(net.get("n1").readStates).toEqual([{ index: 1, requestCtx: bytes("solo") }]);
    const leaderless = new Network(ids(3));
    expectDropped(() => leaderless.get("n2").node.readIndex(bytes("r")), "no-leader");
  });
});
