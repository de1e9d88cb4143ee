/** `hyperfleet cluster status`: leader, term, members and how densely the VMs are packed. */
import type { Command } from "commander";
import type { ClusterStatus } from "@hyperfleet/api";
import { enumText, formatKeyValue, formatPercent, formatTable, printJson, printLine } from "../output.js";
import { commandGroup, runOperatorCommand, withCommonOptions, type CommonOptions } from "./connection.js";

/** The status as key/value lines, then a table of the Raft members. */
export function clusterStatusText(s: ClusterStatus): string {
  const summary = formatKeyValue([
    ["Cluster", s.clusterId],
    ["Leader", s.leaderId === "" ? "none (no quorum?)" : `${s.leaderId} (${s.leaderApiAddress || "address unknown"})`],
    ["Term", String(s.term)],
    ["Commit index", String(s.commitIndex)],
    ["Applied index", String(s.appliedIndex)],
    ["Answered by", s.nodeId],
    ["Nodes", String(s.nodeCount)],
    ["VMs", `${s.vmCount} (${s.runningVmCount} running)`],
    ["Migrations in flight", String(s.migrationsInFlight)],
    ["VMs per node", s.consolidation.vmsPerNode.toFixed(2)],
    ["vCPUs per pCPU", s.consolidation.vcpusPerPcpu.toFixed(2)],
    ["Memory committed", formatPercent(s.consolidation.memoryCommittedRatio)],
  ]);
  const members = formatTable(
    ["MEMBER", "ROLE", "RAFT", "API", "MATCH", "REACHABLE"],
    s.members.map((m) => [m.id, enumText(m.role, "MEMBER_ROLE_"), m.raftAddress, m.apiAddress, String(m.matchIndex), m.reachable ? "yes" : "no"]),
  );
  return `${summary}\n\n${members}`;
}

/** Adds the `cluster` command and its subcommands to `program`. */
export function registerClusterCommands(parent: Command): void {
  const cluster = commandGroup(parent, "cluster").description("the cluster as a whole");

  withCommonOptions(cluster.command("status"))
    .description("show the leader, the term, the members and the consolidation ratios")
    .action((options: CommonOptions) =>
      runOperatorCommand(options, async (c) => {
        const status = await c.call((client, o) => client.clusterStatus({}, o));
        if (options.json) printJson(status);
        else printLine(clusterStatusText(status));
      }),
    );
}
