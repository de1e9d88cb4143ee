/**
 * `hyperfleet up`: a local cluster on loopback. The work is done by fleetd's `up-main` program (a
 * nats-server and N fleetd processes on free ports, `<dir>/cluster.json` for the other commands);
 * this command runs it in the foreground (with `--prometheus`, Prometheus scraping the nodes too), passes SIGINT/SIGTERM on, and exits with its status.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export interface UpCommandOptions {
  readonly nodes: string;
  readonly dir: string;
  readonly memoryMib: string;
  /** Also start Prometheus scraping the nodes (on loopback at `prometheusPort`, default 9090). */
  readonly prometheus?: boolean;
  readonly prometheusPort?: string;
}

/** fleetd's `dist/up-main.js`, next to this package in the workspace (from `src/` or `dist/` alike). */
export function upMainPath(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "fleetd", "dist", "up-main.js");
}

/** Runs the local cluster until it is stopped; resolves with the exit status. */
export function upCommand(options: UpCommandOptions): Promise<number> {
  const program = upMainPath();
  if (!existsSync(program)) {
    process.stderr.write(`hyperfleet up: ${program} is missing: build the workspace first (pnpm build)\n`);
    return Promise.resolve(2);
  }
  const args = [program, "--nodes", options.nodes, "--dir", options.dir, "--memory-mib", options.memoryMib];
  if (options.prometheus === true) args.push("--prometheus");
  if (options.prometheusPort !== undefined) args.push("--prometheus-port", options.prometheusPort);
  const child = spawn(process.execPath, args, {
    stdio: "inherit",
  });
  const forward = (signal: NodeJS.Signals) => (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  const onInt = forward("SIGINT");
  const onTerm = forward("SIGTERM");
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  return new Promise((resolveStatus) => {
    child.once("error", (e) => {
      process.stderr.write(`hyperfleet up: ${e.message}\n`);
      resolveStatus(1);
    });
    child.once("exit", (code, signal) => {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
      resolveStatus(code ?? (signal === "SIGINT" ? 130 : 1));
    });
  });
}
