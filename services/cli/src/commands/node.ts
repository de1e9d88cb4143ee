/** `hyperfleet node list|drain|resume`: the cluster's nodes, their capacity and usage. */
import type { Command } from "commander";
import { ApiError, type Node } from "@hyperfleet/api";
import { enumText, formatBytes, formatKeyValue, formatPercent, formatTable, printJson, printLine } from "../output.js";
import { commandGroup, runOperatorCommand, withCommonOptions, type CommonOptions } from "./connection.js";
import { integerOf } from "./values.js";

function ratio(used: number, capacity: number): number {
  return capacity === 0 ? 0 : used / capacity;
}

/** The rows of `node list`, one per node: usage against capacity. */
export function nodeTable(nodes: readonly Node[]): string {
  const headers = ["NODE", "STATE", "ADDRESS", "VMS", "RUNNING", "VCPUS", "MEMORY", "MEM%", "LEASE", "LABELS"];
  const rows = nodes.map((n) => [
    n.id,
    enumText(n.state, "NODE_STATE_"),
    n.apiAddress,
    String(n.usage.vms),
    String(n.usage.runningVms),
    `${n.usage.vcpus}/${n.capacity.vcpus}`,
    `${formatBytes(n.usage.memoryBytes)}/${formatBytes(n.capacity.memoryBytes)}`,
    formatPercent(ratio(n.usage.memoryBytes, n.capacity.memoryBytes)),
    n.leaseLive ? "live" : "expired",
    Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(",") || "-",
  ]);
  return formatTable(headers, rows);
}

/** One node as key/value lines. */
export function nodeDetails(n: Node): string {
  return formatKeyValue([
    ["Node", n.id],
    ["State", enumText(n.state, "NODE_STATE_")],
    ["Address", n.apiAddress],
    ["VMs", `${n.usage.vms} (${n.usage.runningVms} running, ${n.usage.incomingMigrations} arriving)`],
    ["vCPUs", `${n.usage.vcpus}/${n.capacity.vcpus}`],
    ["Memory", `${formatBytes(n.usage.memoryBytes)}/${formatBytes(n.capacity.memoryBytes)} (${formatPercent(ratio(n.usage.memoryBytes, n.capacity.memoryBytes))})`],
    ["Lease", n.leaseLive ? "live" : "expired"],
  ]);
}

/** Adds the `node` command and its subcommands to `program`. */
export function registerNodeCommands(parent: Command): void {
  const node = commandGroup(parent, "node").description("list nodes, drain them for maintenance and bring them back");

  withCommonOptions(node.command("list"))
    .description("list the nodes with their capacity and usage")
    .action((options: CommonOptions) =>
      runOperatorCommand(options, async (cluster) => {
        const { nodes } = await cluster.call((c, o) => c.listNodes({}, o));
        if (options.json) printJson(nodes);
        else printLine(nodeTable(nodes));
      }),
    );

  withCommonOptions(node.command("drain").argument("<node>", "the node"))
    .description("move every VM off a node and place no new ones on it (maintenance mode): running VMs live-migrate, stopped ones change owner")
    .option("--wait", "follow the drain until the node is drained (a line each time its VM count changes)")
    .option("--timeout <seconds>", "with --wait: give up after this long", "600")
    .action((id: string, options: CommonOptions & { wait?: boolean; timeout: string }) =>
      runOperatorCommand(options, async (cluster) => {
        let n = await cluster.call((c, o) => c.drainNode({ node: id }, o));
        if (options.wait === true) {
          const deadline = Date.now() + integerOf("--timeout", options.timeout, 1, 86_400) * 1000;
          let last = -1;
          while (n.state === "NODE_STATE_DRAINING" && Date.now() < deadline) {
            if (n.usage.vms !== last && !options.json) printLine(`draining ${n.id}: ${n.usage.vms} VM(s) left`);
            last = n.usage.vms;
            await new Promise((r) => setTimeout(r, 250));
            const { nodes } = await cluster.call((c, o) => c.listNodes({}, o));
            n = nodes.find((x) => x.id === id) ?? n;
          }
          if (n.state === "NODE_STATE_DRAINING") {
            throw new ApiError("DEADLINE_EXCEEDED", `${id} still holds ${n.usage.vms} VM(s) after ${options.timeout} s; \`hyperfleet vm list --node ${id}\` shows them`);
          }
        }
        if (options.json) printJson(n);
        else if (n.state === "NODE_STATE_DRAINING") printLine(`draining ${n.id}: ${n.usage.vms} VM(s) to move; \`hyperfleet node list\` shows when it is drained`);
        else printLine(`${n.id} is ${enumText(n.state, "NODE_STATE_")}`);
      }),
    );

  withCommonOptions(node.command("resume").argument("<node>", "the node"))
    .description("let a drained node take VMs again")
    .action((id: string, options: CommonOptions) =>
      runOperatorCommand(options, async (cluster) => {
        const n = await cluster.call((c, o) => c.resumeNode({ node: id }, o));
        if (options.json) printJson(n);
        else printLine(`${n.id} is ${enumText(n.state, "NODE_STATE_")}`);
      }),
    );
}
