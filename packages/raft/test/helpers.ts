/** Small builders shared by the Raft-level tests (paper, raft, log). */
import { MemoryStorage, newBootstrapStorage } from "../src/memory-storage.js";
import { Raft, newMessage, type RaftConfig } from "../src/raft.js";
import { SeededRng } from "../src/rng.js";
import { EntryType, MessageType, NONE } from "../src/types.js";
import type { Entry, HardState, Message, NodeId } from "../src/types.js";

const utf8 = new TextEncoder();

/** Member ids n1..nN. */
export function ids(n: number): NodeId[] {
  return Array.from({ length: n }, (_, i) => `n${i + 1}`);
}

export function ent(term: number, index: number, data = ""): Entry {
  return { term, index, type: EntryType.Normal, data: utf8.encode(data) };
}

/** Entries at indexes 1..n with the given terms. */
export function entsWithTerms(...terms: number[]): Entry[] {
  return terms.map((t, i) => ent(t, i + 1));
}

export function storageWith(voters: readonly NodeId[], entries: readonly Entry[] = [], hardState?: HardState): MemoryStorage {
  const s = voters.length > 0 ? newBootstrapStorage(voters) : new MemoryStorage();
  s.append(entries);
  if (hardState !== undefined) s.setHardState(hardState);
  return s;
}

export interface TestRaftOptions extends Partial<RaftConfig> {
  readonly voters?: readonly NodeId[];
  readonly entries?: readonly Entry[];
  readonly hardState?: HardState;
  readonly seed?: number;
}

/**
 * A Raft member for message-level tests. Like the paper's Raft: no pre-vote and no check-quorum unless
 * asked for; election timeout 10 ticks, heartbeat 1.
 */
export function newRaft(id: NodeId, opts: TestRaftOptions = {}): Raft {
  const voters = opts.voters ?? ids(3);
  const storage = opts.storage ?? storageWith(voters, opts.entries ?? [], opts.hardState);
  return new Raft({
    electionTicks: 10, heartbeatTicks: 1, preVote: false, checkQuorum: false, maxInflightMsgs: 256,
    ...opts, id, storage, rng: opts.rng ?? new SeededRng(opts.seed ?? 7),
  });
}

/** A wire message to `to` (term and fields as given). */
export function msg(fields: Partial<Message> & Pick<Message, "type" | "from" | "to">): Message {
  return newMessage(fields);
}

/** Makes `r` (a fresh follower of a 3+ member cluster) leader of the next term, dropping its messages. */
export function makeLeader(r: Raft): void {
  r.becomeCandidate();
  r.becomeLeader();
  r.readMessages();
}

/** Every follower acknowledges the leader's whole log; the leader's no-op commits and is applied. */
export function commitNoop(r: Raft): void {
  for (const id of r.trk.voters) {
    if (id === r.id) continue;
    r.step(msg({ type: MessageType.AppResp, from: id, to: r.id, term: r.term, index: r.raftLog.lastIndex() }));
  }
  r.readMessages();
  r.raftLog.appliedTo(r.raftLog.committed);
}

export { NONE };
