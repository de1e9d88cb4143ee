/**
 * Benchmarks: `pnpm bench <name> [--json] [options]`. Each prints a table, or one JSON document with
 * --json (keys carry their unit). Peers are measured in the same run: this machine is shared and noisy.
 */
import { codecBenchCommand } from "./codec.js";
import { cpuBench } from "./cpu.js";
import { hypervisorBench } from "./hypervisor.js";
import { migrationBench } from "./migration.js";

const benches: Record<string, (args: string[]) => Promise<{ table: string; json: unknown }>> = {
  codec: codecBenchCommand,
  cpu: cpuBench,
  hypervisor: hypervisorBench,
  failover: (args) => import("./failover.js").then((m) => m.failoverBench(args)),
  migration: migrationBench,
  raft: (args) => import("./raft.js").then((m) => m.raftBench(args)),
};

const [name, ...rest] = process.argv.slice(2);
const bench = name === undefined ? undefined : benches[name];
if (bench === undefined) {
  process.stderr.write(`bench: ${name === undefined ? "name a benchmark" : `unknown benchmark "${name}"`}; one of: ${Object.keys(benches).join(", ")}\n`);
  process.exit(2);
}
const json = rest.includes("--json");
try {
  const result = await bench(rest.filter((a) => a !== "--json"));
  process.stdout.write(json ? `${JSON.stringify(result.json, null, 2)}\n` : result.table);
} catch (e) {
  process.stderr.write(`bench ${name}: ${(e as Error).message}\n`);
  process.exit(1);
}
