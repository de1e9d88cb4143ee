/**
 * A deterministic in-test network of RawNodes: each member has a MemoryStorage and a tiny state
 * machine (the list of applied entries), messages wait in one queue until delivered, and links can be
 * cut or members isolated. No real time: members only move when ticked.
 */
import { decodeConfChange, describeConfChange } from "../src/conf-change.js";
import { MemoryStorage, newBootstrapStorage } from "../src/memory-storage.js";
import { CAMPAIGN_TRANSFER_CONTEXT, messageTypeName, roleName, type RaftLogger } from "../src/raft.js";
import { RawNode, type RawNodeConfig } from "../src/raw-node.js";
import { SeededRng } from "../src/rng.js";
import { ProposalDroppedError } from "../src/errors.js";
import { ConfChangeType, EntryType, MessageType, Role } from "../src/types.js";
import type { ConfChange, ConfState, Entry, Message, NodeId, ReadState } from "../src/types.js";
import { ids } from "./helpers.js";

const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

export function bytes(s: string): Uint8Array {
  return utf8.encode(s);
}

export function text(b: Uint8Array): string {
  return utf8d.decode(b);
}

/** "term/index payload": payload is noop, a conf change, or the data as a JSON string. */
export function describeEntry(e: Entry): string {
  if (e.type === EntryType.ConfChange) {
    try {
      return `${e.term}/${e.index} ${describeConfChange(decodeConfChange(e.data))}`;
    } catch {
      return `${e.term}/${e.index} <bad conf change>`;
    }
  }
  return `${e.term}/${e.index} ${e.data.length === 0 ? "noop" : JSON.stringify(text(e.data))}`;
}

function ctx(b: Uint8Array): string {
  return JSON.stringify(text(b));
}

/** One line per message, e.g. `n1->n2 App term=1 log=1/3 commit=3 entries=[1/4 "x"]`. */
export function describeMessage(m: Message): string {
  let s = `${m.from}->${m.to} ${messageTypeName(m.type)} term=${m.term}`;
  switch (m.type) {
    case MessageType.App:
      s += ` log=${m.logTerm}/${m.index} commit=${m.commit}`;
      if (m.entries.length > 0) s += ` entries=[${m.entries.map(describeEntry).join(", ")}]`;
      break;
    case MessageType.AppResp:
      s += m.reject ? ` rejected index=${m.index} hint=${m.logTerm}/${m.rejectHint}` : ` index=${m.index}`;
      break;
    case MessageType.Vote:
    case MessageType.PreVote:
      s += ` last=${m.logTerm}/${m.index}`;
      if (m.context.length > 0 && text(m.context) === text(CAMPAIGN_TRANSFER_CONTEXT)) s += " transfer";
      break;
    case MessageType.VoteResp:
    case MessageType.PreVoteResp:
      s += m.reject ? " rejected" : " granted";
      break;
    case MessageType.Snap: {
      const md = m.snapshot?.metadata;
      if (md !== undefined) s += ` snapshot=${md.term}/${md.index} voters=[${md.confState.voters.join(",")}] learners=[${md.confState.learners.join(",")}]`;
      break;
    }
    case MessageType.Heartbeat:
      s += ` commit=${m.commit}`;
      if (m.context.length > 0) s += ` ctx=${ctx(m.context)}`;
      break;
    case MessageType.HeartbeatResp:
      if (m.context.length > 0) s += ` ctx=${ctx(m.context)}`;
      break;
    case MessageType.Prop:
      s += ` entries=[${m.entries.map((e) => (e.type === EntryType.ConfChange ? describeConfChange(decodeConfChange(e.data)) : JSON.stringify(text(e.data)))).join(", ")}]`;
      break;
    case MessageType.ReadIndex:
      s += ` ctx=${ctx(m.context)}`;
      break;
    case MessageType.ReadIndexResp:
      s += ` index=${m.index} ctx=${ctx(m.context)}`;
      break;
    default:
      break;
  }
  return s;
}

/** One member: its node, storage and state machine (every applied entry, in index order). */
export interface Member {
  readonly id: NodeId;
  node: RawNode;
  readonly storage: MemoryStorage;
  /** Config overrides of this member (kept across restarts). */
  readonly overrides: Partial<RawNodeConfig>;
  /** `applied[i]` describes the entry at index i + 1 (`term/index/type/data`). */
  applied: string[];
  confState: ConfState;
  readStates: ReadState[];
}

export interface NetworkOptions {
  /** Overrides for every member's config (ids, storage, rng and logger are set by the network). */
  readonly config?: Partial<RawNodeConfig>;
  /** Seed of the members' election jitter. */
  readonly seed?: number;
  /** Collect a trace of decisions, deliveries and applied entries in `trace`. */
  readonly trace?: boolean;
}

function entryKey(e: Entry): string {
  return `${e.term}/${e.index}/${e.type}/${text(e.data)}`;
}

/** Raised by the network's own checks (committed entries differ, two leaders in a term). */
export class SafetyViolation extends Error {
  override readonly name = "SafetyViolation";
}

export class Network {
  readonly members = new Map<NodeId, Member>();
  /** Messages sent and not yet delivered, in send order. */
  queue: Message[] = [];
  readonly isolated = new Set<NodeId>();
  /** Directed cut links "a->b". */
  readonly cuts = new Set<string>();
  readonly trace: string[] = [];
  /** Messages stepped into a member, by type. */
  readonly deliveredByType = new Map<MessageType, number>();
  /** Drops every message for which it returns true (on top of cuts and isolation). */
  dropIf: ((m: Message) => boolean) | null = null;
  /** Every committed entry seen applied anywhere, by index: all members must agree. */
  readonly committed: string[] = [];
  /** The leader seen at each term. */
  readonly leaders = new Map<number, NodeId>();
  private readonly tracing: boolean;
  private readonly rng: SeededRng;

  constructor(voters: readonly NodeId[], readonly options: NetworkOptions = {}) {
    this.tracing = options.trace ?? false;
    this.rng = new SeededRng(options.seed ?? 1);
    for (const id of voters) this.addMember(id, newBootstrapStorage(voters));
  }

  /** Adds a member with `storage` (a fresh `new MemoryStorage()` for a member joining later). */
  addMember(id: NodeId, storage: MemoryStorage = new MemoryStorage(), overrides: Partial<RawNodeConfig> = {}): Member {
    if (this.members.has(id)) throw new Error(`member ${id} exists`);
    const node = this.newNode(id, storage, 0, overrides);
    const member: Member = { id, node, storage, overrides, applied: [], confState: storage.initialState().confState, readStates: [] };
    this.members.set(id, member);
    return member;
  }

  private newNode(id: NodeId, storage: MemoryStorage, applied: number, overrides: Partial<RawNodeConfig>): RawNode {
    const logger: RaftLogger = this.tracing
      ? { info: (msg) => this.trace.push(msg), warn: (msg) => this.trace.push(`WARN ${msg}`) }
      : { info: () => {}, warn: () => {} };
    return new RawNode({
      electionTicks: 10, heartbeatTicks: 1, maxSizePerMsgBytes: 1024 * 1024, maxInflightMsgs: 256,
      ...this.options.config, ...overrides,
      id, storage, applied, logger, rng: overrides.rng ?? this.rng.fork(),
    });
  }

  /**
   * Restarts member `id` from its storage, as after a crash: unsent messages and unpersisted state are
   * lost; the state machine restarts from the storage snapshot and re-applies the committed entries.
   */
  restart(id: NodeId): void {
    const m = this.get(id);
    for (const msg of this.queue) {
      // A snapshot lost with the crash of its recipient is reported by the transport.
      if (msg.type === MessageType.Snap && msg.to === id && msg.from !== id) this.members.get(msg.from)?.node.reportSnapshot(id, false);
    }
    this.queue = this.queue.filter((msg) => msg.from !== id && msg.to !== id);
    const snap = m.storage.snapshot();
    m.applied = snap.data.length > 0 ? (JSON.parse(text(snap.data)) as string[]) : [];
    m.confState = snap.metadata.confState;
    m.readStates = [];
    m.node = this.newNode(id, m.storage, 0, m.overrides);
    this.note(`${id} restarted`);
  }

  get(id: NodeId): Member {
    const m = this.members.get(id);
    if (m === undefined) throw new Error(`no member ${id}`);
    return m;
  }

  ids(): NodeId[] {
    return [...this.members.keys()].sort();
  }

  note(line: string): void {
    if (this.tracing) this.trace.push(line);
  }

  /** Persists, sends and applies one Ready of `id`, following the Ready contract. Returns whether there was one. */
  processReady(id: NodeId): boolean {
    const m = this.get(id);
    if (!m.node.hasReady()) return false;
    const rd = m.node.ready();
    if (rd.snapshot !== null) m.storage.applySnapshot(rd.snapshot);
    m.storage.append(rd.entries);
    if (rd.hardState !== null) m.storage.setHardState(rd.hardState);
    for (const msg of rd.messages) this.queue.push(msg);
    if (rd.snapshot !== null) {
      const snap = rd.snapshot;
      const restored = snap.data.length > 0 ? (JSON.parse(text(snap.data)) as string[]) : [];
      this.check(restored.length === snap.metadata.index, `${id}: snapshot at ${snap.metadata.index} holds ${restored.length} entries`);
      for (let i = 0; i < restored.length; i++) this.recordCommitted(id, i + 1, restored[i]);
      m.applied = restored;
      m.confState = snap.metadata.confState;
      this.note(`${id} applied snapshot ${snap.metadata.term}/${snap.metadata.index}`);
    }
    if (rd.committedEntries.length > 0) {
      for (const e of rd.committedEntries) {
        this.check(e.index === m.applied.length + 1, `${id}: applying ${e.index} after ${m.applied.length}`);
        const key = entryKey(e);
        this.recordCommitted(id, e.index, key);
        m.applied.push(key);
        if (e.type === EntryType.ConfChange) {
          const cc = decodeConfChange(e.data);
          m.confState = m.node.applyConfChange(cc);
        }
      }
      this.note(`${id} applied [${rd.committedEntries.map(describeEntry).join(", ")}]`);
    }
    for (const rs of rd.readStates) {
      m.readStates.push(rs);
      this.note(`${id} read-state index=${rs.index} ctx=${ctx(rs.requestCtx)}`);
    }
    m.node.advance(rd);
    this.checkLeaders();
    return true;
  }

  private recordCommitted(id: NodeId, index: number, key: string): void {
    const prev = this.committed[index - 1];
    if (prev === undefined) {
      this.check(index === this.committed.length + 1 || this.committed.length >= index, `${id}: committed ${index} with a gap`);
      this.committed[index - 1] = key;
    } else {
      this.check(prev === key, `${id} applied ${key} at ${index}, another member applied ${prev}`);
    }
  }

  private check(condition: boolean, message: string): void {
    if (!condition) throw new SafetyViolation(message);
  }

  /** At most one leader per term, ever. */
  checkLeaders(): void {
    for (const m of this.members.values()) {
      const st = m.node.status();
      if (st.role !== Role.Leader) continue;
      const seen = this.leaders.get(st.term);
      if (seen === undefined) this.leaders.set(st.term, m.id);
      else this.check(seen === m.id, `two leaders at term ${st.term}: ${seen} and ${m.id}`);
    }
  }

  /** Processes every member's Ready (sorted order) until none has one. */
  processAll(maxRounds = 100): void {
    for (let round = 0; round < maxRounds; round++) {
      let any = false;
      for (const id of this.ids()) if (this.processReady(id)) any = true;
      if (!any) return;
    }
    throw new Error(`processAll did not settle in ${maxRounds} rounds`);
  }

  /** Whether a message from `from` to `to` would be dropped by a cut or an isolation. */
  blocked(from: NodeId, to: NodeId): boolean {
    return this.isolated.has(from) || this.isolated.has(to) || this.cuts.has(`${from}->${to}`);
  }

  /** Steps one message into its recipient (dropped when blocked or when the recipient is unknown). */
  deliver(msg: Message): void {
    const to = this.members.get(msg.to);
    if (to === undefined || this.blocked(msg.from, msg.to) || (this.dropIf !== null && this.dropIf(msg))) {
      this.note(`dropped: ${describeMessage(msg)}`);
      // The transport tells the leader that a snapshot did not arrive, so it retries later.
      if (msg.type === MessageType.Snap) this.members.get(msg.from)?.node.reportSnapshot(msg.to, false);
      return;
    }
    this.note(describeMessage(msg));
    this.deliveredByType.set(msg.type, (this.deliveredByType.get(msg.type) ?? 0) + 1);
    to.node.step(msg);
    if (msg.type === MessageType.Snap) this.members.get(msg.from)?.node.reportSnapshot(msg.to, true);
    this.checkLeaders();
  }

  /** Delivers messages and processes Readies until nothing is left to do (bounded). Returns the messages delivered. */
  stabilize(maxMessages = 10_000): number {
    let delivered = 0;
    for (;;) {
      this.processAll();
      if (this.queue.length === 0) return delivered;
      const batch = this.queue;
      this.queue = [];
      for (const msg of batch) {
        if (delivered++ >= maxMessages) throw new Error(`stabilize: more than ${maxMessages} messages`);
        this.deliver(msg);
      }
    }
  }

  /** Ticks members `ids` `count` times each, round-robin, without delivering anything. */
  tick(ids: readonly NodeId[], count: number): void {
    for (let k = 0; k < count; k++) for (const id of ids) this.get(id).node.tick();
  }

  isolate(id: NodeId): void {
    this.isolated.add(id);
  }

  cut(a: NodeId, b: NodeId): void {
    this.cuts.add(`${a}->${b}`);
    this.cuts.add(`${b}->${a}`);
  }

  recover(): void {
    this.isolated.clear();
    this.cuts.clear();
  }

  /** The members that currently believe they lead, by highest term. */
  leader(): NodeId | null {
    let best: { id: NodeId; term: number } | null = null;
    for (const m of this.members.values()) {
      const st = m.node.status();
      if (st.role === Role.Leader && (best === null || st.term > best.term)) best = { id: m.id, term: st.term };
    }
    return best?.id ?? null;
  }

  /** Snapshots member `id`'s state machine at its applied index and compacts its log there. */
  compact(id: NodeId): number {
    const m = this.get(id);
    const index = m.applied.length;
    if (index <= m.storage.snapshot().metadata.index) return 0;
    m.storage.createSnapshot(index, m.confState, bytes(JSON.stringify(m.applied)));
    m.storage.compact(index);
    return index;
  }

  /** Proposes a conf change on `via`. */
  proposeConfChange(via: NodeId, cc: ConfChange): void {
    this.get(via).node.proposeConfChange(cc);
  }

  describeStatus(id: NodeId): string {
    const st = this.get(id).node.status();
    let s = `${id}: ${roleName(st.role)} term=${st.term} vote=${st.vote || "none"} lead=${st.lead || "none"} ` +
      `commit=${st.commit} applied=${st.applied} voters=[${st.confState.voters.join(",")}] learners=[${st.confState.learners.join(",")}]`;
    if (st.leadTransferee) s += ` transferee=${st.leadTransferee}`;
    if (st.progress !== null) {
      for (const [pid, pr] of Object.entries(st.progress)) {
        s += `\n  ${pid}: ${pr.state} match=${pr.match} next=${pr.next}${pr.isLearner ? " learner" : ""}` +
          `${pr.state === "snapshot" ? ` pendingSnap=${pr.pendingSnapshot}` : ""}${pr.paused ? " paused" : ""}`;
      }
    }
    return s;
  }
}

export interface ChaosResult {
  readonly leaders: number;
  readonly committed: number;
  readonly snapshots: number;
  readonly confChanges: number;
  readonly convergedAfterRounds: number;
  /** Everything observable of the run: the trace (when traced), committed entries and leaders by term. */
  readonly fingerprint: string;
}

export function pick<T>(rng: SeededRng, xs: readonly T[]): T {
  return xs[rng.int(xs.length)];
}

/**
 * A seeded run: a faulty phase (random ticks, deliveries out of order, drops, duplicates, partitions,
 * crash-restarts, compactions, proposals, reads, transfers), then a healed phase that must converge:
 * one leader, and a final proposal applied by every member. The network checks safety at every step
 * (at most one leader per term, every member applies the same entry at each index).
 */
export function chaos(seed: number, steps: number, membership = false, trace = false): ChaosResult {
  const rng = new SeededRng(seed);
  const size = membership ? 3 : pick(rng, [1, 3, 3, 5]);
  const founders = ids(size);
  // With membership changes, n4 and n5 exist from the start as joiners with an empty membership.
  const members = membership ? ids(5) : founders;
  const net = new Network(founders, {
    seed,
    trace,
    config: {
      preVote: rng.chance(3, 4),
      checkQuorum: rng.chance(3, 4),
      maxSizePerMsgBytes: pick(rng, [0, 64, 1 << 20]),
      maxInflightMsgs: 1 + rng.int(4),
      electionTicks: pick(rng, [5, 10]),
    },
  });
  for (const id of members) if (!founders.includes(id)) net.addMember(id);
  let proposals = 0;
  let reads = 0;
  const tryDrop = (fn: () => void): void => {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
    }
  };
  for (let step = 0; step < steps; step++) {
    const r = rng.int(100);
    const id: NodeId = pick(rng, members);
    if (r < 8) {
      net.tick(members, 1); // the clock moves for everyone
    } else if (r < 13) {
      net.get(id).node.tick(); // or for one member (clock skew)
    } else if (r < 17) {
      net.stabilize(); // a calm moment: everything in flight arrives (partitions still apply)
    } else if (r < 48) {
      if (net.queue.length === 0) continue;
      const k = rng.int(net.queue.length);
      const m: Message = net.queue[k];
      const fate = rng.int(20);
      if (fate === 0) {
        net.queue.splice(k, 1); // lost
        if (m.type === MessageType.Snap) net.members.get(m.from)?.node.reportSnapshot(m.to, false);
      } else if (fate === 1) {
        net.deliver(m); // duplicated: it stays queued
      } else {
        net.queue.splice(k, 1);
        net.deliver(m);
      }
    } else if (r < 62) {
      net.processReady(id);
    } else if (r < 72) {
      tryDrop(() => net.get(id).node.propose(bytes(`v${seed}.${proposals++}`)));
    } else if (r < 75) {
      if (rng.chance(1, 3)) net.isolate(id);
      else net.recover();
    } else if (r < 77) {
      if (rng.chance(1, 3)) net.cut(id, pick(rng, members));
      else net.recover();
    } else if (r < 80) {
      for (const m of members) net.compact(m);
    } else if (r < 82) {
      net.restart(id);
    } else if (r < 85) {
      tryDrop(() => net.get(id).node.readIndex(bytes(`r${reads++}`)));
    } else if (r < 86) {
      net.get(id).node.transferLeader(pick(rng, members));
    } else if (membership && r < 93) {
      // A change that applies to the membership the proposer knows (mostly; it may be stale).
      const cs = net.get(id).confState;
      const outside = members.filter((m) => !cs.voters.includes(m) && !cs.learners.includes(m));
      const choices: Array<[ConfChangeType, readonly NodeId[]]> = [];
      if (outside.length > 0) choices.push([ConfChangeType.AddLearner, outside]);
      if (cs.learners.length > 0) choices.push([ConfChangeType.AddVoter, cs.learners], [ConfChangeType.Remove, cs.learners]);
      if (cs.voters.length > 2) choices.push([ConfChangeType.Remove, cs.voters]);
      if (choices.length > 0) {
        const [type, candidates] = pick(rng, choices);
        tryDrop(() => net.get(id).node.proposeConfChange({ type, node: pick(rng, candidates), context: new Uint8Array() }));
      }
    } else {
      net.get(id).node.reportUnreachable(pick(rng, members));
    }
  }
  // Heal and converge.
  net.recover();
  const marker = `final-${seed}`;
  let proposed = false;
  for (let round = 1; round <= 300; round++) {
    for (const m of members) net.get(m).node.tick();
    net.stabilize();
    const lead = net.leader();
    // A proposal can be lost when leadership changes before it commits: propose again now and then.
    if (proposed && round % 30 === 0 && !net.committed.some((k) => k.endsWith(`/${marker}`))) proposed = false;
    if (lead !== null && !proposed) {
      try {
        net.get(lead).node.propose(bytes(marker));
        proposed = true;
      } catch (e) {
        if (!(e instanceof ProposalDroppedError)) throw e;
      }
      net.stabilize();
    }
    const inConfig = lead === null ? [] : [...net.get(lead).confState.voters, ...net.get(lead).confState.learners];
    if (proposed && lead !== null && inConfig.every((m) => net.get(m).applied.some((a) => a.endsWith(`/${marker}`)))) {
      const applied = inConfig.map((m) => net.get(m).applied.length);
      if (new Set(applied).size !== 1) throw new SafetyViolation(`seed ${seed}: members applied different lengths ${applied.join(",")}`);
      return {
        leaders: net.leaders.size, committed: net.committed.length, convergedAfterRounds: round,
        snapshots: net.deliveredByType.get(MessageType.Snap) ?? 0,
        confChanges: net.committed.filter((k) => k.split("/")[2] === "1").length,
        fingerprint: [...net.trace, ...net.committed, ...[...net.leaders].map(([t, id]) => `${t}:${id}`)].join("\n"),
      };
    }
  }
  throw new Error(`seed ${seed}: did not converge after healing; leader ${net.leader()}; ` +
    members.map((m) => net.describeStatus(m)).join("\n") + (trace ? `\n${net.trace.slice(-150).join("\n")}` : ""));
}

