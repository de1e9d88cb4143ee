/** The operator commands (`vm`, `node`, `cluster`), which talk to a cluster's management API. */
import type { Command } from "commander";
import { registerClusterCommands } from "./cluster.js";
import { registerNodeCommands } from "./node.js";
import { registerVmCommands } from "./vm.js";

/**
 * Adds `vm`, `node` and `cluster` to `program`. Their subcommands inherit its settings (exitOverride),
 * so a usage error reaches the caller of `parseAsync` as a CommanderError.
 */
export function registerOperatorCommands(program: Command): void {
  registerVmCommands(program);
  registerNodeCommands(program);
  registerClusterCommands(program);
}
