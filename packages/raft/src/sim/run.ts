/**
 * One simulation run: a seed in, a verdict and a trace hash out.
 *
 *  1. Safety phase (`safetyMs`): clients run, faults on; the checker runs after every step.
 *  2. Liveness phase: faults off, network healed, a majority core up; the cluster must elect a
 *     leader, apply every committed entry on every live member and finish every client operation
 *     within `livenessMsMax`.
 *  3. The client history must be linearizable.
 *
 * The same seed always produces the same run: the result's `traceHash` covers every delivered
 * packet and every applied entry.
 */
import { HistoryRecorder } from "../check/history.js";
import { kvModel, type KvInput, type KvOutput } from "../check/kv-model.js";
import { checkOperations, describeCheckResult, type CheckVerdict } from "../check/linearizability.js";
import { SimInvariantError } from "./checker.js";
import { RaftCluster } from "./raft-cluster.js";
import { describeOptions, optionsSwarm, type SimOptions, type SwarmLimits } from "./swarm.js";

export type FailureKind = "invariant" | "liveness" | "linearizability" | "error";

export interface RunFailure {
  readonly kind: FailureKind;
  readonly message: string;
  /** Simulated time of the failure. */
  readonly atMs: number;
  readonly phase: "safety" | "liveness" | "check";
}

export interface RunStats {
  readonly simulatedMs: number;
  readonly events: number;
  readonly elections: number;
  readonly committedEntries: number;
  readonly appliedEntries: number;
  readonly faultsInjected: number;
  readonly messagesDelivered: number;
  readonly crashes: number;
  readonly walRepairs: number;
  readonly diskErrors: number;
  readonly commitsRaisedToSnapshot: number;
  readonly snapshotsTaken: number;
  readonly snapshotsInstalled: number;
  readonly confChangesApplied: number;
  readonly transfersRequested: number;
  readonly opsOk: number;
  readonly opsUnknown: number;
  readonly linearizability: CheckVerdict | "skipped";
  /** Search steps the linearizability check took. */
  readonly checkSteps: number;
  /** Operations in the history (indeterminate ones included). */
  readonly historyOps: number;
  readonly livenessMs: number;
}

export interface RunResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly failure: RunFailure | null;
  readonly traceHash: string;
  readonly stats: RunStats;
  readonly options: SimOptions;
}

export interface RunConfig extends SwarmLimits {
  /** Replaces the options drawn from the seed (tests that pin a scenario). */
  readonly options?: SimOptions;
  /** Called with one line per notable event. */
  readonly log?: (line: string) => void;
  /** Called with every line the Raft core logs (very verbose). */
  readonly raftLog?: (line: string) => void;
  /** Search steps for the linearizability check. Default 2,000,000. */
  readonly checkStepsMax?: number;
  /**
   * Resolve indeterminate operations from the replicated log before checking (default true); false
   * checks the raw history, where the search may run out of budget ("unknown").
   */
  readonly patchHistory?: boolean;
  /** Runs a driver that never fsyncs (see `ClusterHooks.unsafeSkipFsync`): the checkers must object. */
  readonly unsafeSkipFsync?: boolean;
  /** Serves reads from local state (see `ClusterHooks.unsafeLocalReads`): the linearizability check must object. */
  readonly unsafeLocalReads?: boolean;
  /** Client operations each client runs in the liveness phase. Default 2. */
  readonly livenessClientOps?: number;
}

/** Runs one seed to completion. Never throws for a failure of the system under test: it is returned. */
export function runSeed(seed: number, config: RunConfig = {}): RunResult {
  const options = config.options ?? optionsSwarm(seed, config);
  const log = config.log;
  log?.(`seed ${seed}\n${describeOptions(options)}`);
  let cluster: RaftCluster | null = null;
  let failure: RunFailure | null = null;
  let linearizability: CheckVerdict | "skipped" = "skipped";
  let livenessMs = 0;
  let checkSteps = 0;
  let phase: RunFailure["phase"] = "safety";
  const history = new HistoryRecorder<KvInput, KvOutput>({ now: () => cluster?.clock.nowMs() ?? 0 });
  try {
    cluster = new RaftCluster(options, history, { ...(log === undefined ? {} : { log }), unsafeSkipFsync: config.unsafeSkipFsync ?? false, unsafeLocalReads: config.unsafeLocalReads ?? false, ...(config.raftLog !== undefined ? { raftLog: config.raftLog } : {}) });
    const clock = cluster.clock;
    cluster.start();
    clock.runUntil(options.safetyMs);
    phase = "liveness";
    const livenessStartMs = clock.nowMs();
    cluster.enterLiveness(config.livenessClientOps ?? 2);
    const deadlineMs = livenessStartMs + options.livenessMsMax;
    let why = cluster.convergence();
    while (why !== null && clock.nowMs() < deadlineMs) {
      clock.runUntil(Math.min(deadlineMs, clock.nowMs() + options.tickMs));
      why = cluster.convergence();
    }
    livenessMs = clock.nowMs() - livenessStartMs;
    if (why !== null) {
      failure = { kind: "liveness", message: `no convergence within ${options.livenessMsMax} ms: ${why}`, atMs: clock.nowMs(), phase };
    } else {
      phase = "check";
      const operations = config.patchHistory === false ? history.operations() : cluster.patchHistory(history.operations());
      const result = checkOperations(kvModel, operations, { maxSteps: config.checkStepsMax ?? 2_000_000 });
      linearizability = result.result;
      checkSteps = result.steps;
      if (result.result === "illegal") {
        failure = { kind: "linearizability", message: describeCheckResult(result), atMs: clock.nowMs(), phase };
      }
    }
  } catch (e) {
    const atMs = cluster?.clock.nowMs() ?? 0;
    if (e instanceof SimInvariantError) failure = { kind: "invariant", message: e.message, atMs, phase };
    else failure = { kind: "error", message: e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ""}` : String(e), atMs, phase };
  }
  if (failure !== null) log?.(`FAIL seed ${seed}: ${failure.kind} at ${failure.atMs} ms (${failure.phase}): ${failure.message}`);
  return { seed, ok: failure === null, failure, traceHash: cluster?.trace.hex() ?? "", stats: collectStats(cluster, linearizability, livenessMs, checkSteps, history.operations().length), options };
}

function collectStats(cluster: RaftCluster | null, linearizability: CheckVerdict | "skipped", livenessMs: number, checkSteps: number, historyOps: number): RunStats {
  if (cluster === null) {
    return {
      simulatedMs: 0, events: 0, elections: 0, committedEntries: 0, appliedEntries: 0, faultsInjected: 0, messagesDelivered: 0, crashes: 0,
      walRepairs: 0, diskErrors: 0, commitsRaisedToSnapshot: 0, snapshotsTaken: 0, snapshotsInstalled: 0, confChangesApplied: 0, transfersRequested: 0, opsOk: 0, opsUnknown: 0, linearizability, checkSteps, historyOps, livenessMs,
    };
  }
  const net = cluster.network.stats;
  const s = cluster.stats;
  const checker = cluster.checker.stats();
  let opsOk = 0;
  let opsUnknown = 0;
  for (const c of cluster.clients) {
    opsOk += c.stats.ok;
    opsUnknown += c.stats.unknown;
  }
  return {
    simulatedMs: cluster.clock.nowMs(),
    events: cluster.clock.fired,
    elections: checker.leaderTerms,
    committedEntries: checker.committedIndex,
    appliedEntries: s.appliedEntries,
    faultsInjected: net.droppedLoss + net.duplicated + net.droppedCapacity + net.partitions + net.clogs + s.crashes + s.confChangesProposed + s.transfersRequested,
    messagesDelivered: net.delivered,
    crashes: s.crashes,
    walRepairs: s.walRepairs,
    diskErrors: s.diskErrors,
    commitsRaisedToSnapshot: s.commitsRaisedToSnapshot,
    snapshotsTaken: s.snapshotsTaken,
    snapshotsInstalled: s.snapshotsInstalled,
    confChangesApplied: s.confChangesApplied,
    transfersRequested: s.transfersRequested,
    opsOk,
    opsUnknown,
    linearizability,
    checkSteps,
    historyOps,
    livenessMs,
  };
}
