/**
 * The RawNode API: configuration checks, the Ready/advance protocol and its persist-before-send
 * contract, input validation, status, restart.
 */
import { describe, expect, it } from "vitest";
import { InvalidMessageError, ProposalDroppedError, RaftConfigError, ReadyProtocolError, RaftInvariantError } from "../src/errors.js";
import { newBootstrapStorage, type MemoryStorage } from "../src/memory-storage.js";
import { newMessage } from "../src/raft.js";
import { RawNode, type RawNodeConfig } from "../src/raw-node.js";
import { SeededRng } from "../src/rng.js";
import { EntryType, MessageType, Role } from "../src/types.js";
import type { Ready } from "../src/types.js";
import { Network, bytes, describeMessage } from "./harness.js";
import { ids } from "./helpers.js";

function config(overrides: Partial<RawNodeConfig> = {}): RawNodeConfig {
  return { id: "n1", storage: newBootstrapStorage(ids(3)), rng: new SeededRng(1), ...overrides };
}

/** Persists a Ready into `storage` as the contract says and advances. */
function persistAndAdvance(node: RawNode, storage: MemoryStorage, rd: Ready): void {
  if (rd.snapshot !== null) storage.applySnapshot(rd.snapshot);
  storage.append(rd.entries);
  if (rd.hardState !== null) storage.setHardState(rd.hardState);
  node.advance(rd);
}

describe("raw-node - configuration", () => {
  it("raw-node - an invalid configuration is refused with an error naming the field", () => {
    const cases: Array<[Partial<RawNodeConfig>, RegExp]> = [
      [{ id: "" }, /id must be a non-empty string/],
      [{ electionTicks: 1, heartbeatTicks: 1 }, /electionTicks \(1\) must be greater than heartbeatTicks \(1\)/],
      [{ electionTicks: 2.5 }, /electionTicks must be a positive integer/],
      [{ heartbeatTicks: 0 }, /heartbeatTicks must be a positive integer/],
      [{ maxInflightMsgs: 0 }, /maxInflightMsgs must be a positive integer/],
      [{ maxSizePerMsgBytes: -1 }, /maxSizePerMsgBytes must be a non-negative integer/],
      [{ maxUncommittedEntriesBytes: 0 }, /maxUncommittedEntriesBytes must be a positive integer/],
      [{ maxCommittedBytesPerReady: Number.NaN }, /maxCommittedBytesPerReady/],
      [{ applied: -1 }, /applied must be a non-negative integer/],
      [{ applied: 5 }, /applied \(5\) is beyond the commit index 0/],
      [{ storage: {} as MemoryStorage }, /storage must implement Storage/],
      [{ rng: {} as SeededRng }, /rng must be an Rng/],
      [{ preVote: "yes" as unknown as boolean }, /preVote must be a boolean/],
    ];
    for (const [overrides, message] of cases) {
      expect(() => new RawNode(config(overrides))).toThrow(RaftConfigError);
      expect(() => new RawNode(config(overrides))).toThrow(message);
    }
  });

  it("raw-node - defaults: election 10 ticks, heartbeat 1, pre-vote and check-quorum on", () => {
    const node = new RawNode(config({ storage: newBootstrapStorage(["n1"]) }));
    // A single voter with the default timeout campaigns within [10, 20) ticks.
    let ticks = 0;
    while (node.status().role !== Role.Leader && ticks < 30) {
      node.tick();
      ticks++;
    }
    expect(ticks).toBeGreaterThanOrEqual(10);
    expect(ticks).toBeLessThan(20);
  });

  it("raw-node - newBootstrapStorage refuses an empty or repeated set of founding voters", () => {
    expect(() => newBootstrapStorage([])).toThrow(RaftInvariantError);
    expect(() => newBootstrapStorage(["a", "a"])).toThrow(RaftInvariantError);
    expect(newBootstrapStorage(["b", "a"]).snapshot().metadata).toEqual({ index: 0, term: 0, confState: { voters: ["a", "b"], learners: [] } });
  });
});

describe("raw-node - inputs", () => {
  it("raw-node - local message types from the wire and misaddressed messages are refused", () => {
    const node = new RawNode(config());
    for (const type of [MessageType.Hup, MessageType.Beat, MessageType.CheckQuorum, MessageType.Unreachable, MessageType.SnapStatus]) {
      expect(() => node.step(newMessage({ type, from: "n2", to: "n1" }))).toThrow(InvalidMessageError);
    }
    expect(() => node.step(newMessage({ type: MessageType.App, from: "n2", to: "n3", term: 1 }))).toThrow(/addressed to "n3", not to n1/);
    expect(() => node.step(newMessage({ type: MessageType.App, to: "n1", term: 1 }))).toThrow(/has no sender/);
    expect(() => node.step(newMessage({ type: MessageType.App, from: "n2", to: "n1" }))).toThrow(/has no term/);
  });

  it("raw-node - empty proposals, empty read contexts and empty transferees are refused", () => {
    const node = new RawNode(config());
    expect(() => node.propose(new Uint8Array())).toThrow(RangeError);
    expect(() => node.readIndex(new Uint8Array())).toThrow(RangeError);
    expect(() => node.transferLeader("")).toThrow(RangeError);
  });

  it("raw-node - a forwarded proposal this member cannot serve is dropped silently; a local one throws", () => {
    const node = new RawNode(config());
    const forwarded = newMessage({ type: MessageType.Prop, from: "n2", to: "n1", entries: [{ term: 0, index: 0, type: EntryType.Normal, data: bytes("x") }] });
    expect(() => node.step(forwarded)).not.toThrow();
    expect(() => node.propose(bytes("x"))).toThrow(ProposalDroppedError);
  });
});

describe("raw-node - Ready and advance", () => {
  it("raw-node - a single voter campaigns and its first Ready carries the new role, the vote, the no-op and its commit", () => {
    const storage = newBootstrapStorage(["n1"]);
    const node = new RawNode(config({ storage }));
    expect(node.hasReady()).toBe(false);
    node.campaign();
    expect(node.hasReady()).toBe(true);
    const rd = node.ready();
    expect(rd.softState).toEqual({ lead: "n1", role: Role.Leader });
    expect(rd.hardState).toEqual({ term: 1, vote: "n1", commit: 1 });
    expect(rd.entries.map((e) => [e.term, e.index, e.data.length])).toEqual([[1, 1, 0]]);
    expect(rd.committedEntries.map((e) => e.index)).toEqual([1]);
    expect(rd.messages).toEqual([]);
    expect(rd.mustSync).toBe(true);
    persistAndAdvance(node, storage, rd);
    expect(node.hasReady()).toBe(false);
    expect(node.status()).toMatchObject({ commit: 1, applied: 1, role: Role.Leader });
  });

  it("raw-node - one Ready at a time: ready() throws until advance(), hasReady() is false meanwhile, inputs go to the next Ready", () => {
    const storage = newBootstrapStorage(["n1"]);
    const node = new RawNode(config({ storage }));
    node.campaign();
    const rd = node.ready();
    expect(node.hasReady()).toBe(false);
    expect(() => node.ready()).toThrow(ReadyProtocolError);
    node.propose(bytes("during"));
    expect(() => node.advance({ ...rd })).toThrow(ReadyProtocolError);
    persistAndAdvance(node, storage, rd);
    expect(() => node.advance(rd)).toThrow(ReadyProtocolError);
    expect(node.hasReady()).toBe(true);
    const next = node.ready();
    expect(next.entries.map((e) => e.index)).toEqual([2]);
    expect(next.committedEntries.map((e) => e.index)).toEqual([2]);
    expect(next.softState).toBeNull();
    expect(next.hardState).toEqual({ term: 1, vote: "n1", commit: 2 });
  });

  it("raw-node - persist before send: a vote and an acknowledged append leave in the same Ready as the state they depend on", () => {
    const storage = newBootstrapStorage(ids(3));
    const node = new RawNode(config({ id: "n2", storage, preVote: false }));
    node.step(newMessage({ type: MessageType.Vote, from: "n1", to: "n2", term: 1, logTerm: 0, index: 0 }));
    const voted = node.ready();
    expect(voted.hardState).toEqual({ term: 1, vote: "n1", commit: 0 });
    expect(voted.mustSync).toBe(true);
    expect(voted.messages.map(describeMessage)).toEqual(["n2->n1 VoteResp term=1 granted"]);
    persistAndAdvance(node, storage, voted);
    node.step(newMessage({
      type: MessageType.App, from: "n1", to: "n2", term: 1, index: 0, logTerm: 0, commit: 0,
      entries: [{ term: 1, index: 1, type: EntryType.Normal, data: new Uint8Array() }],
    }));
    const appended = node.ready();
    expect(appended.entries.map((e) => e.index)).toEqual([1]);
    expect(appended.mustSync).toBe(true);
    expect(appended.messages.map(describeMessage)).toEqual(["n2->n1 AppResp term=1 index=1"]);
    persistAndAdvance(node, storage, appended);
    // A heartbeat changes only the commit index: no sync needed.
    node.step(newMessage({ type: MessageType.Heartbeat, from: "n1", to: "n2", term: 1, commit: 1 }));
    const beat = node.ready();
    expect(beat.hardState).toEqual({ term: 1, vote: "n1", commit: 1 });
    expect(beat.mustSync).toBe(false);
    expect(beat.committedEntries.map((e) => e.index)).toEqual([1]);
  });

  it("raw-node - after a restart, entries up to the configured applied index are not handed out again", () => {
    const net = new Network(ids(1));
    net.get("n1").node.campaign();
    net.stabilize();
    for (const x of ["a", "b", "c"]) net.get("n1").node.propose(bytes(x));
    net.stabilize();
    const storage = net.get("n1").storage;
    const again = new RawNode(config({ storage, applied: 2 }));
    const rd = again.ready();
    expect(rd.committedEntries.map((e) => e.index)).toEqual([3, 4]);
    const fromScratch = new RawNode(config({ storage }));
    expect(fromScratch.ready().committedEntries.map((e) => e.index)).toEqual([1, 2, 3, 4]);
  });
});

describe("raw-node - status and reports", () => {
  it("raw-node - status reports role, term, commit and, on the leader only, every member's progress", () => {
    const net = new Network(ids(3));
    net.get("n1").node.campaign();
    net.stabilize();
    const st = net.get("n1").node.status();
    expect(st).toMatchObject({ id: "n1", term: 1, vote: "n1", lead: "n1", role: Role.Leader, commit: 1, applied: 1, confState: { voters: ids(3), learners: [] } });
    expect(Object.keys(st.progress ?? {})).toEqual(ids(3));
    expect(st.progress?.n2).toMatchObject({ state: "replicate", match: 1, next: 2, isLearner: false });
    expect(net.get("n2").node.status().progress).toBeNull();
  });

  it("raw-node - reportUnreachable sends a replicating follower back to probing", () => {
    const net = new Network(ids(3));
    net.get("n1").node.campaign();
    net.stabilize();
    net.get("n1").node.reportUnreachable("n2");
    expect(net.get("n1").node.status().progress?.n2.state).toBe("probe");
    net.tick(["n1"], 1);
    net.stabilize();
    expect(net.get("n1").node.status().progress?.n2.state).toBe("replicate");
  });
});
