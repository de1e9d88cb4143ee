export { SimClock, SimClockError } from "./clock.js";
export type { Clock, TimerId } from "./clock.js";
export { NETWORK_OPTIONS_CALM, RATIO_ZERO, SimNetwork, SimNetworkError, ratio } from "./network.js";
export type {
  DeliverHandler, EndpointId, NetworkOptions, NetworkStats, OutcomeHandler, PartitionMode, PartitionSymmetry, Ratio, SendOutcome,
} from "./network.js";
export { MemberDisk } from "./disk.js";
export type { DiskRecovery, MemberDiskOptions } from "./disk.js";
export { SafetyChecker, SimInvariantError, entryDataHash } from "./checker.js";
export type { CheckerStats, LogView } from "./checker.js";
export { SimClient } from "./client.js";
export type { ClientOptions, ClientReply, ClientRequest, ClientResponse, ClientStats } from "./client.js";
export { RaftCluster, SimDriverError } from "./raft-cluster.js";
export type { ClusterHooks, ClusterPhase, ClusterStats, Packet, SimMember } from "./raft-cluster.js";
export { describeOptions, optionsSwarm } from "./swarm.js";
export type { SimOptions, SwarmLimits } from "./swarm.js";
export { runSeed } from "./run.js";
export type { FailureKind, RunConfig, RunFailure, RunResult, RunStats } from "./run.js";
export { TraceHash } from "./trace.js";
