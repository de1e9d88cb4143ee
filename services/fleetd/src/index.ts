export { CONFIG_FLAGS, defaultImageDir, envName, FleetdConfigError, parseConfig, parseHostPort, parsePeers } from "./config.js";
export type { ConfigFlag, FleetdConfig, HostPort, PeerConfig } from "./config.js";
export { FleetdError, FleetdNode, RECONCILE_MS } from "./node.js";
export type { FleetdLogger } from "./node.js";
export {
  CLUSTER_FILE, fleetdMainPath, freePort, httpStatus, LocalCluster, LocalClusterError, NODES_MAX, stopProcess,
} from "./local-cluster.js";
export type { ClusterFile, LocalClusterOptions, LocalNode } from "./local-cluster.js";
