export { CLUSTER_SIM_DEFAULTS, ClusterSim, ClusterSimError, findDoubleRuns, replayCommand, runClusterSim } from "./cluster-sim.js";
export type { ClusterSimFailureKind, ClusterSimOptions, ClusterSimResult, ClusterSimStats, RunRecord } from "./cluster-sim.js";
