/**
 * Swarm testing: the seed picks which faults are on and how strong they are, as well as the
 * workload, so that a sweep over seeds covers calm runs, single-fault runs and storms
 * (TigerBeetle's `options_swarm`). Every probability is an integer ratio.
 */
import { SeededRng } from "../rng.js";
import { RATIO_ZERO, ratio, type NetworkOptions, type PartitionMode, type PartitionSymmetry, type Ratio } from "./network.js";

export interface SimOptions {
  readonly seed: number;
  /** Voters at the start. */
  readonly memberCount: number;
  /** Spare nodes that membership changes may add (learner, then voter). */
  readonly spareCount: number;
  readonly clientCount: number;
  /** Keys the clients touch: few keys, much contention. */
  readonly keyCount: number;
  /** A Raft tick every `tickMs` of simulated time (the fault processes run at this period too). */
  readonly tickMs: number;
  /** Each member's tick period is drawn in [tickMs - tickSkewMs, tickMs + tickSkewMs]: clocks drift apart. */
  readonly tickSkewMs: number;
  readonly electionTick: number;
  readonly heartbeatTick: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly network: NetworkOptions;
  /** Per-link delay ranges drawn around the network's range (some links slow, some fast). */
  readonly linkDelaysVary: boolean;
  /** Per member and per fault tick (= tickMs): chance it crashes. */
  readonly crashRatio: Ratio;
  /** A crashed member stays down for a duration drawn in [tickMs, restartDelayMsMax]. */
  readonly restartDelayMsMax: number;
  /** Members down at once, at most (may be all of them). */
  readonly downMax: number;
  /** Per fault tick: chance that the next write, sync, rename or directory sync of one member fails (EIO); the member then crashes. */
  readonly diskFaultRatio: Ratio;
  /** On crash: chance that the unsynced tail of a file is torn rather than dropped whole. */
  readonly tornTailRatio: Ratio;
  /** Take a state machine snapshot and compact the log every this many applied entries; 0: never. */
  readonly snapshotEvery: number;
  /** Per local snapshot: chance of a power loss between the snapshot file and the WAL marker. */
  readonly crashInSnapshotRatio: Ratio;
  /** Per fault tick: chance the driver asks the leader for a membership change. */
  readonly confChangeRatio: Ratio;
  /** Per fault tick: chance the driver asks the leader to transfer leadership. */
  readonly transferRatio: Ratio;
  /** Reads go through ReadIndex (otherwise through the log). */
  readonly readIndexReads: boolean;
  /** Followers that know a leader serve clients too: they forward proposals and ReadIndex requests to it. */
  readonly followersServe: boolean;
  /** A client waits this long for an answer before the operation is indeterminate. */
  readonly clientTimeoutMs: number;
  /** A client pauses in [0, clientThinkMsMax] between operations. */
  readonly clientThinkMsMax: number;
  /** Client ↔ member delay range and loss (clients are never partitioned). */
  readonly clientDelayMsMax: number;
  /** Length of the safety phase (faults on). */
  readonly safetyMs: number;
  /** Budget of the liveness phase (faults off, network healed, a core restarted). */
  readonly livenessMsMax: number;
  /** Members kept down in the liveness phase (at most a minority of the voters). */
  readonly livenessDownCount: number;
}

export interface SwarmLimits {
  readonly safetyMs?: number;
  readonly livenessMsMax?: number;
}

const PARTITION_MODES: readonly PartitionMode[] = ["none", "uniformSize", "uniformPartition", "isolateSingle"];
const SYMMETRIES: readonly PartitionSymmetry[] = ["symmetric", "oneWay"];

/** `numerator` drawn in [0, max] over `denominator`, or zero when the knob is off. */
function knob(rng: SeededRng, on: boolean, max: number, denominator: number): Ratio {
  return on ? ratio(rng.int(max + 1), denominator) : RATIO_ZERO;
}

/** The options of one run, drawn from its seed alone. */
export function optionsSwarm(seed: number, limits: SwarmLimits = {}): SimOptions {
  const rng = new SeededRng(seed ^ 0x5eed5eed);
  const memberCount = [1, 3, 3, 3, 5, 5][rng.int(6)]!;
  const tickMs = 10;
  const electionTick = 10;
  const heartbeatTick = 1 + rng.int(3);
  const partitionMode = memberCount > 1 && rng.chance(2, 3) ? PARTITION_MODES[1 + rng.int(3)]! : "none";
  const delayMsMin = rng.int(5);
  const delayMsMax = delayMsMin + [0, 5, 15, 40][rng.int(4)]!;
  const network: NetworkOptions = {
    delayMsMin,
    delayMsMax,
    lossRatio: knob(rng, rng.chance(1, 2), 20, 100),
    duplicateRatio: knob(rng, rng.chance(1, 3), 10, 100),
    // Not below 16: a slow link full of heartbeats would drop every append, every time.
    linkCapacityMax: [16, 32, 64, 256][rng.int(4)]!,
    partitionMode,
    partitionSymmetry: SYMMETRIES[rng.int(2)]!,
    partitionRatio: ratio(1 + rng.int(10), 100),
    unpartitionRatio: ratio(1 + rng.int(20), 100),
    partitionStabilityMs: tickMs * (5 + rng.int(60)),
    unpartitionStabilityMs: tickMs * (5 + rng.int(60)),
    clogRatio: knob(rng, rng.chance(1, 4), 5, 1000),
    clogDurationMsMax: tickMs * (1 + rng.int(30)),
    faultTickMs: tickMs,
  };
  const crashOn = rng.chance(1, 2);
  const preVote = rng.chance(1, 2);
  const changesOn = memberCount > 1 && rng.chance(1, 3);
  return {
    seed,
    memberCount,
    spareCount: changesOn ? 1 + rng.int(2) : 0,
    clientCount: 1 + rng.int(4),
    keyCount: 1 + rng.int(3),
    tickMs,
    // Only with pre-vote, and at most 10%: without pre-vote, a member with a stale log and a faster
    // clock keeps disrupting elections (Raft's own liveness limit, thesis §9.6).
    tickSkewMs: preVote ? rng.int(2) : 0,
    electionTick,
    heartbeatTick,
    preVote,
    checkQuorum: rng.chance(1, 2),
    network,
    linkDelaysVary: rng.chance(1, 3),
    crashRatio: knob(rng, crashOn, 5, 1000),
    restartDelayMsMax: tickMs * (1 + rng.int(100)),
    downMax: rng.chance(1, 4) ? memberCount : 1 + rng.int(Math.max(1, memberCount >> 1)),
    diskFaultRatio: knob(rng, rng.chance(1, 4), 5, 1000),
    tornTailRatio: ratio(rng.int(3), 2),
    snapshotEvery: rng.chance(1, 3) ? 5 + rng.int(40) : 0,
    crashInSnapshotRatio: knob(rng, crashOn && rng.chance(1, 2), 10, 100),
    confChangeRatio: changesOn ? ratio(1 + rng.int(20), 1000) : RATIO_ZERO,
    transferRatio: memberCount > 1 && rng.chance(1, 3) ? ratio(1 + rng.int(20), 1000) : RATIO_ZERO,
    readIndexReads: rng.chance(1, 2),
    followersServe: memberCount > 1 && rng.chance(1, 3),
    clientTimeoutMs: tickMs * electionTick * (2 + rng.int(4)),
    clientThinkMsMax: rng.int(4) * tickMs,
    clientDelayMsMax: 1 + rng.int(10),
    safetyMs: limits.safetyMs ?? 3_000,
    livenessMsMax: limits.livenessMsMax ?? 10_000,
    livenessDownCount: memberCount >= 3 && rng.chance(1, 4) ? rng.int((memberCount - 1) >> 1) + 1 : 0,
  };
}

function ratioText(r: Ratio): string {
  return r.numerator === 0 ? "0" : `${r.numerator}/${r.denominator}`;
}

/** One line per knob group, for `--verbose` and failure reports. */
export function describeOptions(o: SimOptions): string {
  const n = o.network;
  return [
    `members=${o.memberCount} spares=${o.spareCount} clients=${o.clientCount} keys=${o.keyCount} tickMs=${o.tickMs}±${o.tickSkewMs} electionTick=${o.electionTick} heartbeatTick=${o.heartbeatTick} preVote=${o.preVote} checkQuorum=${o.checkQuorum}`,
    `network delayMs=[${n.delayMsMin},${n.delayMsMax}] varies=${o.linkDelaysVary} loss=${ratioText(n.lossRatio)} dup=${ratioText(n.duplicateRatio)} capacity=${n.linkCapacityMax} partition=${n.partitionMode}/${n.partitionSymmetry} p=${ratioText(n.partitionRatio)} unp=${ratioText(n.unpartitionRatio)} stabilityMs=${n.partitionStabilityMs}/${n.unpartitionStabilityMs} clog=${ratioText(n.clogRatio)} clogMsMax=${n.clogDurationMsMax}`,
    `crash=${ratioText(o.crashRatio)} diskFault=${ratioText(o.diskFaultRatio)} restartMsMax=${o.restartDelayMsMax} downMax=${o.downMax} torn=${ratioText(o.tornTailRatio)} snapshotEvery=${o.snapshotEvery} crashInSnapshot=${ratioText(o.crashInSnapshotRatio)} confChange=${ratioText(o.confChangeRatio)} transfer=${ratioText(o.transferRatio)} readIndex=${o.readIndexReads} followersServe=${o.followersServe}`,
    `clientTimeoutMs=${o.clientTimeoutMs} thinkMsMax=${o.clientThinkMsMax} clientDelayMsMax=${o.clientDelayMsMax} safetyMs=${o.safetyMs} livenessMsMax=${o.livenessMsMax} livenessDown=${o.livenessDownCount}`,
  ].join("\n");
}
