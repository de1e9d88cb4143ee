/**
 * One test per claim of the Raft paper, §5 (Ongaro & Ousterhout, "In Search of an Understandable
 * Consensus Algorithm"). Each test names the section, sets up the situation the sentence describes,
 * and checks what the paper says must happen. The paper's Raft has neither pre-vote nor check-quorum:
 * both are off here unless a test says otherwise.
 */
import { describe, expect, it } from "vitest";
import type { Raft } from "../src/raft.js";
import { newBootstrapStorage } from "../src/memory-storage.js";
import { SeededRng } from "../src/rng.js";
import { MessageType as MT, NONE, Role } from "../src/types.js";
import type { MemoryStorage } from "../src/memory-storage.js";
import type { Entry, HardState, Rng } from "../src/types.js";
import { Network, bytes, describeMessage } from "./harness.js";
import { commitNoop, ent, entsWithTerms, ids, makeLeader, msg, newRaft } from "./helpers.js";

function logOf(r: Raft): Array<[number, number]> {
  return r.raftLog.allEntries().map((e) => [e.term, e.index]);
}

function termsOf(entries: readonly Entry[]): number[] {
  return entries.map((e) => e.term);
}

describe("paper §5.1 - terms", () => {
  it("paper §5.1 - a member that sees a higher term in a message adopts it and becomes follower", () => {
    for (const role of [Role.Follower, Role.Candidate, Role.Leader]) {
      const r = newRaft("n1");
      if (role === Role.Follower) r.becomeFollower(1, "n2");
      if (role === Role.Candidate) r.becomeCandidate();
      if (role === Role.Leader) makeLeader(r);
      expect(r.term).toBe(1);
      r.step(msg({ type: MT.App, from: "n2", to: "n1", term: 2 }));
      expect(r.term).toBe(2);
      expect(r.role).toBe(Role.Follower);
      expect(r.lead).toBe("n2");
    }
  });

  it("paper §5.1 - a message with a stale term is rejected: no vote, no append, term unchanged", () => {
    const r = newRaft("n1", { entries: entsWithTerms(1), hardState: { term: 2, vote: NONE, commit: 0 } });
    expect(r.term).toBe(2);
    r.step(msg({ type: MT.App, from: "n2", to: "n1", term: 1, index: 1, logTerm: 1, entries: [ent(1, 2, "stale")] }));
    r.step(msg({ type: MT.Vote, from: "n3", to: "n1", term: 1, index: 5, logTerm: 1 }));
    expect(r.term).toBe(2);
    expect(r.vote).toBe(NONE);
    expect(logOf(r)).toEqual([[1, 1]]);
    // The stale vote request is refused with our term (so the candidate learns it); nothing else is sent.
    expect(r.readMessages().map(describeMessage)).toEqual(["n1->n3 VoteResp term=2 rejected"]);
  });

  it("paper §5.1 - the sender of a stale-term message learns the current term from the answer and steps down", () => {
    // With check-quorum (or pre-vote) on, a stale append is answered with our term so a deposed leader
    // returning from a partition steps down instead of staying stuck.
    const follower = newRaft("n1", { checkQuorum: true, hardState: { term: 2, vote: NONE, commit: 0 } });
    follower.step(msg({ type: MT.App, from: "n2", to: "n1", term: 1 }));
    const answer = follower.readMessages();
    expect(answer.map(describeMessage)).toEqual(["n1->n2 AppResp term=2 index=0"]);

    const staleLeader = newRaft("n2", { checkQuorum: true });
    makeLeader(staleLeader);
    expect(staleLeader.term).toBe(1);
    staleLeader.step(answer[0]);
    expect(staleLeader.role).toBe(Role.Follower);
    expect(staleLeader.term).toBe(2);
  });
});

describe("paper §5.2 - leader election", () => {
  it("paper §5.2 - members start as followers", () => {
    const r = newRaft("n1");
    expect(r.role).toBe(Role.Follower);
    expect(r.term).toBe(0);
  });

  it("paper §5.2 - a leader sends heartbeats (empty appends) every heartbeat timeout", () => {
    const r = newRaft("n1", { heartbeatTicks: 1 });
    makeLeader(r);
    r.tick();
    expect(r.readMessages().map(describeMessage)).toEqual([
      "n1->n2 Heartbeat term=1 commit=0",
      "n1->n3 Heartbeat term=1 commit=0",
    ]);
    const slow = newRaft("n1", { heartbeatTicks: 3 });
    makeLeader(slow);
    slow.tick();
    slow.tick();
    expect(slow.readMessages()).toEqual([]);
    slow.tick();
    expect(slow.readMessages().map((m) => m.type)).toEqual([MT.Heartbeat, MT.Heartbeat]);
  });

  it("paper §5.2 - a follower that hears nothing for an election timeout increments its term, votes for itself and asks every voter", () => {
    for (const startAsCandidate of [false, true]) {
      const r = newRaft("n1");
      if (startAsCandidate) r.becomeCandidate();
      else r.becomeFollower(1, "n2");
      r.readMessages();
      for (let i = 0; i < 2 * r.electionTimeout; i++) r.tick();
      expect(r.role).toBe(Role.Candidate);
      expect(r.term).toBe(2);
      expect(r.vote).toBe("n1");
      expect(r.readMessages().map(describeMessage)).toEqual([
        "n1->n2 Vote term=2 last=0/0",
        "n1->n3 Vote term=2 last=0/0",
      ]);
    }
  });

  it("paper §5.2 - a candidate wins with votes from a majority, loses on a majority of rejections, else keeps waiting", () => {
    const cases: Array<{ size: number; votes: Record<string, boolean>; want: Role }> = [
      { size: 1, votes: {}, want: Role.Leader },
      { size: 3, votes: { n2: true, n3: true }, want: Role.Leader },
      { size: 3, votes: { n2: true }, want: Role.Leader },
      { size: 5, votes: { n2: true, n3: true, n4: true, n5: true }, want: Role.Leader },
      { size: 5, votes: { n2: true, n3: true }, want: Role.Leader },
      { size: 3, votes: {}, want: Role.Candidate },
      { size: 5, votes: { n2: true }, want: Role.Candidate },
      { size: 5, votes: { n2: false, n3: false }, want: Role.Candidate },
      { size: 3, votes: { n2: false, n3: false }, want: Role.Follower },
      { size: 5, votes: { n2: false, n3: false, n4: false }, want: Role.Follower },
      { size: 5, votes: { n2: true, n3: false, n4: false, n5: false }, want: Role.Follower },
    ];
    for (const c of cases) {
      const r = newRaft("n1", { voters: ids(c.size) });
      r.step(msg({ type: MT.Hup, from: "n1", to: "n1" }));
      for (const [id, granted] of Object.entries(c.votes)) {
        r.step(msg({ type: MT.VoteResp, from: id, to: "n1", term: r.term, reject: !granted }));
      }
      expect({ ...c, role: r.role }).toEqual({ ...c, role: c.want });
      expect(r.term).toBe(1);
    }
  });

  it("paper §5.2 - a follower votes for at most one candidate per term, first come first served", () => {
    const cases: Array<{ vote: string; from: string; reject: boolean }> = [
      { vote: NONE, from: "n2", reject: false },
      { vote: NONE, from: "n3", reject: false },
      { vote: "n2", from: "n2", reject: false },
      { vote: "n3", from: "n3", reject: false },
      { vote: "n2", from: "n3", reject: true },
      { vote: "n3", from: "n2", reject: true },
    ];
    for (const c of cases) {
      const r = newRaft("n1", { hardState: { term: 1, vote: c.vote, commit: 0 } });
      r.step(msg({ type: MT.Vote, from: c.from, to: "n1", term: 1 }));
      const out = r.readMessages();
      expect(out.map(describeMessage)).toEqual([`n1->${c.from} VoteResp term=1 ${c.reject ? "rejected" : "granted"}`]);
      expect(r.vote).toBe(c.vote === NONE ? c.from : c.vote);
    }
  });

  it("paper §5.2 - a candidate that hears from a leader of its term or a newer one returns to follower", () => {
    for (const term of [1, 2]) {
      const r = newRaft("n1");
      r.becomeCandidate();
      r.step(msg({ type: MT.App, from: "n2", to: "n1", term }));
      expect(r.role).toBe(Role.Follower);
      expect(r.term).toBe(term);
      expect(r.lead).toBe("n2");
    }
  });

  it("paper §5.2 - election timeouts are chosen at random from [T, 2T)", () => {
    const r = newRaft("n1", { rng: new SeededRng(11) });
    const seen = new Set<number>();
    for (let round = 0; round < 300; round++) {
      r.becomeFollower(r.term + 1, NONE);
      let ticks = 0;
      while (r.role === Role.Follower && ticks < 100) {
        r.tick();
        ticks++;
      }
      seen.add(ticks);
    }
    const want = Array.from({ length: r.electionTimeout }, (_, k) => r.electionTimeout + k);
    expect([...seen].sort((a, b) => a - b)).toEqual(want);
  });

  it("paper §5.2 - randomized timeouts rarely fire together, so split votes are rare", () => {
    const members = ids(5).map((id, k) => newRaft(id, { voters: ids(5), rng: new SeededRng(100 + k) }));
    let conflicts = 0;
    const rounds = 1000;
    for (let round = 0; round < rounds; round++) {
      for (const r of members) r.becomeFollower(r.term + 1, NONE);
      let fired = 0;
      for (let t = 0; t < 100 && fired === 0; t++) {
        for (const r of members) {
          r.tick();
          if (r.role !== Role.Follower) fired++;
        }
      }
      if (fired > 1) conflicts++;
    }
    expect(conflicts / rounds).toBeLessThan(0.3);
  });

  it("paper §5.2 - randomized timeouts end split votes, identical timeouts split forever", () => {
    const constant: Rng = { int: () => 0 };
    const run = (rngFor: (k: number) => Rng, seed: number): number => {
      const net = new Network([], { seed });
      const voters = ids(4);
      voters.forEach((id, k) => net.addMember(id, newBootstrapStorage(voters), { rng: rngFor(k), preVote: false, checkQuorum: false }));
      // Every member ticks in lockstep and messages are delivered between ticks.
      for (let tick = 1; tick <= 400; tick++) {
        net.tick(voters, 1);
        net.stabilize();
        if (net.leader() !== null) return tick;
      }
      return -1;
    };
    expect(run(() => constant, 1)).toBe(-1);
    for (let seed = 1; seed <= 20; seed++) {
      const rngs = ids(4).map((_, k) => new SeededRng(seed * 31 + k));
      const ticks = run((k) => rngs[k], seed);
      expect(ticks).toBeGreaterThan(0);
      expect(ticks).toBeLessThanOrEqual(100);
    }
  });
});

describe("paper §5.3 - log replication", () => {
  it("paper §5.3 - the leader appends a proposal to its log and sends it to every follower", () => {
    const r = newRaft("n1");
    makeLeader(r);
    commitNoop(r);
    const li = r.raftLog.lastIndex();
    r.step(msg({ type: MT.Prop, from: "n1", to: "n1", entries: [ent(0, 0, "some data")] }));
    expect(r.raftLog.lastIndex()).toBe(li + 1);
    expect(r.raftLog.committed).toBe(li);
    expect(r.readMessages().map(describeMessage)).toEqual([
      `n1->n2 App term=1 log=1/${li} commit=${li} entries=[1/${li + 1} "some data"]`,
      `n1->n3 App term=1 log=1/${li} commit=${li} entries=[1/${li + 1} "some data"]`,
    ]);
    expect(r.raftLog.unstableEntries().at(-1)).toMatchObject({ term: 1, index: li + 1 });
  });

  it("paper §5.3 - the leader commits an entry once a majority stores it, and tells followers in later appends", () => {
    const r = newRaft("n1");
    makeLeader(r);
    commitNoop(r);
    const li = r.raftLog.lastIndex();
    r.step(msg({ type: MT.Prop, from: "n1", to: "n1", entries: [ent(0, 0, "some data")] }));
    const apps = r.readMessages();
    r.step(msg({ type: MT.AppResp, from: apps[0].to, to: "n1", term: 1, index: apps[0].index + apps[0].entries.length }));
    expect(r.raftLog.committed).toBe(li + 1);
    expect(r.raftLog.nextCommittedEntries().map((e) => [e.index, new TextDecoder().decode(e.data)])).toEqual([[li + 1, "some data"]]);
    // The next appends carry the new commit index.
    const next = r.readMessages();
    expect(next.length).toBeGreaterThan(0);
    for (const m of next) {
      expect(m.type).toBe(MT.App);
      expect(m.commit).toBe(li + 1);
    }
  });

  it("paper §5.3 - an entry commits once the leader and a majority have it, whatever the cluster size", () => {
    const cases: Array<{ size: number; acceptors: string[]; committed: boolean }> = [
      { size: 1, acceptors: [], committed: true },
      { size: 3, acceptors: [], committed: false },
      { size: 3, acceptors: ["n2"], committed: true },
      { size: 3, acceptors: ["n2", "n3"], committed: true },
      { size: 5, acceptors: [], committed: false },
      { size: 5, acceptors: ["n2"], committed: false },
      { size: 5, acceptors: ["n2", "n3"], committed: true },
      { size: 5, acceptors: ["n2", "n3", "n4"], committed: true },
      { size: 5, acceptors: ["n2", "n3", "n4", "n5"], committed: true },
    ];
    for (const c of cases) {
      const r = newRaft("n1", { voters: ids(c.size) });
      r.step(msg({ type: MT.Hup, from: "n1", to: "n1" }));
      for (const id of ids(c.size).slice(1)) r.step(msg({ type: MT.VoteResp, from: id, to: "n1", term: 1 }));
      commitNoop(r);
      const li = r.raftLog.lastIndex();
      r.step(msg({ type: MT.Prop, from: "n1", to: "n1", entries: [ent(0, 0, "some data")] }));
      for (const m of r.readMessages()) {
        if (c.acceptors.includes(m.to)) r.step(msg({ type: MT.AppResp, from: m.to, to: "n1", term: 1, index: m.index + m.entries.length }));
      }
      expect({ ...c, got: r.raftLog.committed > li }).toEqual({ ...c, got: c.committed });
    }
  });

  it("paper §5.3 - committing an entry commits every preceding entry, including those of earlier leaders", () => {
    const cases: Entry[][] = [[], [ent(2, 1)], [ent(1, 1), ent(2, 2)], [ent(1, 1)]];
    for (const prior of cases) {
      const r = newRaft("n1", { entries: prior, hardState: { term: 2, vote: NONE, commit: 0 } });
      makeLeader(r);
      r.step(msg({ type: MT.Prop, from: "n1", to: "n1", entries: [ent(0, 0, "some data")] }));
      // Each follower matches the leader up to its last index after a successful probe.
      for (const id of ["n2", "n3"]) r.step(msg({ type: MT.AppResp, from: id, to: "n1", term: 3, index: r.raftLog.lastIndex() }));
      const li = prior.length;
      expect(r.raftLog.nextCommittedEntries().map((e) => [e.term, e.index])).toEqual([
        ...prior.map((e) => [e.term, e.index]), [3, li + 1], [3, li + 2],
      ]);
    }
  });

  it("paper §5.3 - a follower applies committed entries in log order once it learns the commit index", () => {
    const cases: Array<{ ents: Entry[]; commit: number }> = [
      { ents: [ent(1, 1, "some data")], commit: 1 },
      { ents: [ent(1, 1, "some data"), ent(1, 2, "some data2")], commit: 2 },
      { ents: [ent(1, 1, "some data2"), ent(1, 2, "some data")], commit: 2 },
      { ents: [ent(1, 1, "some data"), ent(1, 2, "some data2")], commit: 1 },
    ];
    for (const c of cases) {
      const r = newRaft("n1");
      r.becomeFollower(1, "n2");
      r.step(msg({ type: MT.App, from: "n2", to: "n1", term: 1, entries: c.ents, commit: c.commit }));
      expect(r.raftLog.committed).toBe(c.commit);
      expect(r.raftLog.nextCommittedEntries()).toEqual(c.ents.slice(0, c.commit));
    }
  });

  it("paper §5.3 - a follower refuses an append whose preceding entry it does not hold (consistency check)", () => {
    const stored = [ent(1, 1), ent(2, 2)];
    const cases = [
      { term: 0, index: 0, want: "n1->n2 AppResp term=2 index=1" },
      { term: 1, index: 1, want: "n1->n2 AppResp term=2 index=1" },
      { term: 2, index: 2, want: "n1->n2 AppResp term=2 index=2" },
      { term: 1, index: 2, want: "n1->n2 AppResp term=2 rejected index=2 hint=1/1" },
      { term: 3, index: 3, want: "n1->n2 AppResp term=2 rejected index=3 hint=2/2" },
    ];
    for (const c of cases) {
      const r = newRaft("n1", { entries: stored, hardState: { term: 0, vote: NONE, commit: 1 } });
      r.becomeFollower(2, "n2");
      r.step(msg({ type: MT.App, from: "n2", to: "n1", term: 2, logTerm: c.term, index: c.index }));
      expect(r.readMessages().map(describeMessage)).toEqual([c.want]);
    }
  });

  it("paper §5.3 - a follower deletes a conflicting entry and all that follow it, then appends the leader's", () => {
    const cases: Array<{ index: number; term: number; ents: Entry[]; want: Array<[number, number]>; unstable: Array<[number, number]> }> = [
      { index: 2, term: 2, ents: [ent(3, 3)], want: [[1, 1], [2, 2], [3, 3]], unstable: [[3, 3]] },
      { index: 1, term: 1, ents: [ent(3, 2), ent(4, 3)], want: [[1, 1], [3, 2], [4, 3]], unstable: [[3, 2], [4, 3]] },
      { index: 0, term: 0, ents: [ent(1, 1)], want: [[1, 1], [2, 2]], unstable: [] },
      { index: 0, term: 0, ents: [ent(3, 1)], want: [[3, 1]], unstable: [[3, 1]] },
    ];
    for (const c of cases) {
      const r = newRaft("n1", { entries: [ent(1, 1), ent(2, 2)] });
      r.becomeFollower(2, "n2");
      r.step(msg({ type: MT.App, from: "n2", to: "n1", term: 2, logTerm: c.term, index: c.index, entries: c.ents }));
      expect(logOf(r)).toEqual(c.want);
      expect(r.raftLog.unstableEntries().map((e) => [e.term, e.index])).toEqual(c.unstable);
    }
  });

  it("paper §5.3 - the leader brings every follower log of Figure 7 into consistency with its own, and never changes its own", () => {
    const leaderTerms = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    const followers: number[][] = [
      [1, 1, 1, 4, 4, 5, 5, 6, 6], // (a) missing entries
      [1, 1, 1, 4], // (b)
      [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6], // (c) extra uncommitted entry
      [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], // (d) extra entries of a later term
      [1, 1, 1, 4, 4, 4, 4], // (e) conflicting entries
      [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], // (f) both
    ];
    for (const followerTerms of followers) {
      const net = new Network([], { config: { preVote: false, checkQuorum: false } });
      const voters = ids(3);
      const leaderStorage = newBootstrapWith(voters, leaderTerms, { term: 8, vote: NONE, commit: leaderTerms.length });
      net.addMember("n1", leaderStorage);
      net.addMember("n2", newBootstrapWith(voters, followerTerms, { term: 7, vote: NONE, commit: 0 }));
      net.addMember("n3", newBootstrapWith(voters, [], undefined));
      net.isolate("n3"); // n3 is down; its vote is granted by hand below.
      const leader = net.get("n1").node;
      leader.campaign();
      net.processAll();
      leader.step(msg({ type: MT.VoteResp, from: "n3", to: "n1", term: 9 }));
      net.stabilize();
      expect(leader.status().role).toBe(Role.Leader);
      leader.propose(bytes("after sync"));
      net.stabilize();
      const leaderLog = net.get("n1").storage.entries(1, net.get("n1").storage.lastIndex() + 1, Infinity);
      const followerLog = net.get("n2").storage.entries(1, net.get("n2").storage.lastIndex() + 1, Infinity);
      expect(termsOf(followerLog)).toEqual(termsOf(leaderLog));
      // Leader append-only: its own entries are untouched, only the new term's entries follow them.
      expect(termsOf(leaderLog)).toEqual([...leaderTerms, 9, 9]);
    }
  });

  it("paper §5.3 - a leader never overwrites or deletes its own entries, whatever it receives", () => {
    const r = newRaft("n1", { entries: entsWithTerms(1, 1, 2), hardState: { term: 2, vote: NONE, commit: 1 } });
    makeLeader(r);
    const before = logOf(r);
    // Rejections, stale appends from an older leader, stale acknowledgements: the log stays the same.
    r.step(msg({ type: MT.AppResp, from: "n2", to: "n1", term: 3, index: 3, reject: true, rejectHint: 1, logTerm: 1 }));
    r.step(msg({ type: MT.App, from: "n3", to: "n1", term: 2, index: 1, logTerm: 1, entries: [ent(2, 2, "x")] }));
    r.step(msg({ type: MT.AppResp, from: "n3", to: "n1", term: 3, index: 1 }));
    r.step(msg({ type: MT.Heartbeat, from: "n3", to: "n1", term: 2, commit: 3 }));
    expect(r.role).toBe(Role.Leader);
    expect(logOf(r)).toEqual(before);
  });
});

describe("paper §5.4 - safety", () => {
  it("paper §5.4.1 - a voter denies its vote to a candidate whose log is less up to date than its own", () => {
    const cases: Array<{ ents: Entry[]; logTerm: number; index: number; reject: boolean }> = [
      // Same last term: the longer log wins.
      { ents: [ent(1, 1)], logTerm: 1, index: 1, reject: false },
      { ents: [ent(1, 1)], logTerm: 1, index: 2, reject: false },
      { ents: [ent(1, 1), ent(1, 2)], logTerm: 1, index: 1, reject: true },
      // The candidate's last term is higher.
      { ents: [ent(1, 1)], logTerm: 2, index: 1, reject: false },
      { ents: [ent(1, 1)], logTerm: 2, index: 2, reject: false },
      { ents: [ent(1, 1), ent(1, 2)], logTerm: 2, index: 1, reject: false },
      // The voter's last term is higher.
      { ents: [ent(2, 1)], logTerm: 1, index: 1, reject: true },
      { ents: [ent(2, 1)], logTerm: 1, index: 2, reject: true },
      { ents: [ent(1, 1), ent(2, 2)], logTerm: 1, index: 3, reject: true },
    ];
    for (const c of cases) {
      const r = newRaft("n1", { entries: c.ents });
      r.step(msg({ type: MT.Vote, from: "n2", to: "n1", term: 3, logTerm: c.logTerm, index: c.index }));
      const out = r.readMessages();
      expect(out).toHaveLength(1);
      expect({ ...c, reject: out[0].reject }).toEqual(c);
      expect(out[0].type).toBe(MT.VoteResp);
    }
  });

  it("paper §5.4.2 - a leader commits by counting replicas only entries of its own term", () => {
    const cases = [
      { index: 1, committed: 0 },
      { index: 2, committed: 0 },
      { index: 3, committed: 3 },
    ];
    for (const c of cases) {
      const r = newRaft("n1", { entries: entsWithTerms(1, 2), hardState: { term: 2, vote: NONE, commit: 0 } });
      makeLeader(r); // term 3, no-op at index 3
      r.step(msg({ type: MT.AppResp, from: "n2", to: "n1", term: r.term, index: c.index }));
      expect({ ...c, got: r.raftLog.committed }).toEqual({ ...c, got: c.committed });
    }
  });

  /**
   * Figure 8: an entry of an earlier term stored on a majority can still be overwritten by a future
   * leader, so a leader must not count replicas of it; once an entry of its own term is on a majority,
   * everything before it is committed and no stale member can win an election any more.
   */
  function figure8Setup(): Network {
    const voters = ["s1", "s2", "s3", "s4", "s5"];
    // One entry per append, so the leader can be stopped between two entries.
    const net = new Network(voters, { config: { preVote: false, checkQuorum: false, maxSizePerMsgBytes: 0 } });
    net.get("s1").node.campaign();
    net.stabilize();
    // (a) s1 leads term 1 and replicates "A" at index 2 only to s2.
    for (const id of ["s3", "s4", "s5"]) net.isolate(id);
    net.get("s1").node.propose(bytes("A"));
    net.stabilize();
    expect(net.get("s1").node.status().commit).toBe(1);
    // (b) s1 is cut off; s5 wins term 2 with the votes of s3 and s4 and writes its no-op at index 2, alone.
    net.recover();
    net.isolate("s1");
    net.isolate("s2");
    net.dropIf = (m) => m.from === "s5" && m.type === MT.App;
    net.get("s5").node.campaign();
    net.stabilize();
    expect(net.get("s5").node.status()).toMatchObject({ role: Role.Leader, term: 2 });
    net.dropIf = null;
    net.recover();
    net.isolate("s5");
    // (c) s5 is cut off; s1 restarts (it crashed) and wins term 3: its log is the most up to date of s1..s4.
    net.restart("s1");
    // Nothing that would place s1's term-3 entries (index >= 3) on another member gets through; appends
    // the recipient rejects anyway (its log lacks index 2) do, so s1 can find where logs match.
    const holdsA = (id: string): boolean => net.get(id).storage.lastIndex() >= 2 && net.get(id).storage.term(2) === 1;
    net.dropIf = (m) => m.from === "s1" && m.type === MT.App && m.entries.some((e) => e.index >= 3) && holdsA(m.to);
    net.get("s1").node.campaign();
    net.stabilize();
    if (net.get("s1").node.status().role !== Role.Leader) {
      net.get("s1").node.campaign();
      net.stabilize();
    }
    return net;
  }

  it("paper §5.4.2 - Figure 8: an old-term entry on a majority is not committed, and may be overwritten", () => {
    const net = figure8Setup();
    // s1 leads term 3 but its own no-op (index 3) never reaches anyone: only "A" (term 1) is replicated.
    expect(net.get("s1").node.status()).toMatchObject({ role: Role.Leader, term: 3 });
    const hasA = (id: string): boolean => net.get(id).storage.lastIndex() >= 2 && net.get(id).storage.term(2) === 1;
    expect(["s1", "s2", "s3", "s4"].filter(hasA).length).toBeGreaterThanOrEqual(3);
    expect(net.get("s1").node.status().commit).toBe(1);
    expect(net.committed.length).toBe(1);
    // (d) s1 crashes before its term-3 entry spreads; s5 (last log term 2) wins and overwrites index 2 everywhere.
    // s5, down since (b), restarts as a follower.
    net.isolate("s1");
    net.isolated.delete("s5");
    net.restart("s5");
    for (let round = 0; round < 3 && net.get("s5").node.status().role !== Role.Leader; round++) {
      net.get("s5").node.campaign(); // the first try, at term 3, meets voters that voted for s1 in term 3
      net.stabilize();
    }
    expect(net.get("s5").node.status()).toMatchObject({ role: Role.Leader, term: 4 });
    for (const id of ["s2", "s3", "s4", "s5"]) {
      expect(net.get(id).applied[1]).toBe("2/2/0/");
      expect(net.get(id).applied.some((e) => e.endsWith("/A"))).toBe(false);
    }
  });

  it("paper §5.4.2 - Figure 8 (e): once the leader's own-term entry is on a majority, earlier entries are committed and s5 cannot win", () => {
    const voters = ["s1", "s2", "s3", "s4", "s5"];
    const net = figure8Setup();
    expect(net.get("s1").node.status().commit).toBe(1);
    // This time s1's term-3 entries are delivered too: index 3 (term 3) reaches a majority.
    net.dropIf = null;
    net.get("s1").node.propose(bytes("B"));
    net.tick(["s1"], 1);
    net.stabilize();
    const st = net.get("s1").node.status();
    expect(st.commit).toBeGreaterThanOrEqual(3);
    expect(net.committed[1]).toBe("1/2/0/A");
    net.isolate("s1");
    net.isolated.delete("s5");
    net.restart("s5");
    for (let round = 0; round < 5; round++) {
      net.get("s5").node.campaign();
      net.stabilize();
      expect(net.get("s5").node.status().role).not.toBe(Role.Leader);
    }
    // Any of the others can win instead, and "A" stays committed.
    net.get("s2").node.campaign();
    net.stabilize();
    expect(net.get("s2").node.status().role).toBe(Role.Leader);
    for (const id of voters.filter((v) => v !== "s1")) expect(net.get(id).applied[1]).toBe("1/2/0/A");
  });
});

describe("paper §5.5 - follower and candidate crashes", () => {
  it("paper §5.5 - a retried append is idempotent: same log, same answer", () => {
    const r = newRaft("n1");
    r.becomeFollower(1, "n2");
    const append = msg({ type: MT.App, from: "n2", to: "n1", term: 1, index: 0, logTerm: 0, entries: [ent(1, 1, "a"), ent(1, 2, "b")], commit: 0 });
    r.step(append);
    const first = r.readMessages().map(describeMessage);
    const log = logOf(r);
    r.step(append);
    expect(r.readMessages().map(describeMessage)).toEqual(first);
    expect(logOf(r)).toEqual(log);
    expect(first).toEqual(["n1->n2 AppResp term=1 index=2"]);
    // A stale duplicate of an older, shorter append does not truncate the newer entries.
    r.step(msg({ type: MT.App, from: "n2", to: "n1", term: 1, index: 0, logTerm: 0, entries: [ent(1, 1, "a")], commit: 0 }));
    expect(logOf(r)).toEqual(log);
    expect(r.readMessages().map(describeMessage)).toEqual(["n1->n2 AppResp term=1 index=1"]);
  });

  it("paper §5.5 - a retried vote request gets the same vote, and a duplicated grant counts once", () => {
    const voter = newRaft("n1");
    const request = msg({ type: MT.Vote, from: "n2", to: "n1", term: 1 });
    voter.step(request);
    const first = voter.readMessages().map(describeMessage);
    voter.step(request);
    expect(voter.readMessages().map(describeMessage)).toEqual(first);
    expect(first).toEqual(["n1->n2 VoteResp term=1 granted"]);

    const candidate = newRaft("n1", { voters: ids(5) });
    candidate.step(msg({ type: MT.Hup, from: "n1", to: "n1" }));
    const grant = msg({ type: MT.VoteResp, from: "n2", to: "n1", term: 1 });
    candidate.step(grant);
    candidate.step(grant);
    expect(candidate.role).toBe(Role.Candidate);
  });

  it("paper §5.5 - duplicated acknowledgements do not move the leader's view of a follower backwards", () => {
    const r = newRaft("n1");
    makeLeader(r);
    commitNoop(r);
    r.step(msg({ type: MT.Prop, from: "n1", to: "n1", entries: [ent(0, 0, "x")] }));
    r.readMessages();
    r.step(msg({ type: MT.AppResp, from: "n2", to: "n1", term: 1, index: 2 }));
    const match = r.trk.progress.get("n2")?.match;
    r.step(msg({ type: MT.AppResp, from: "n2", to: "n1", term: 1, index: 1 }));
    r.step(msg({ type: MT.AppResp, from: "n2", to: "n1", term: 1, index: 1, reject: true, rejectHint: 0 }));
    expect(r.trk.progress.get("n2")?.match).toBe(match);
    expect(r.raftLog.committed).toBe(2);
  });

  it("paper §5.5 - a member restarted from its storage keeps its term, vote and log", () => {
    const net = new Network(ids(3), { config: { preVote: false } });
    net.get("n1").node.campaign();
    net.stabilize();
    net.get("n1").node.propose(bytes("x"));
    net.stabilize();
    const before = net.get("n2").node.status();
    net.restart("n2");
    const after = net.get("n2").node.status();
    expect({ term: after.term, vote: after.vote, commit: after.commit }).toEqual({ term: before.term, vote: before.vote, commit: before.commit });
    // It still refuses a second vote in the same term.
    net.get("n2").node.step(msg({ type: MT.Vote, from: "n3", to: "n2", term: before.term, logTerm: 1, index: 99 }));
    net.processAll();
    expect(net.queue.map(describeMessage)).toContain(`n2->n3 VoteResp term=${before.term} rejected`);
    // And it catches up with the log after the restart.
    net.queue = [];
    net.get("n1").node.propose(bytes("y"));
    net.stabilize();
    expect(net.get("n2").applied).toEqual(net.get("n1").applied);
  });
});

function newBootstrapWith(voters: string[], terms: number[], hardState: HardState | undefined): MemoryStorage {
  const s = newBootstrapStorage(voters);
  s.append(entsWithTerms(...terms));
  if (hardState !== undefined) s.setHardState(hardState);
  return s;
}
