#!/usr/bin/env node
/**
 * fleetd: one Hyperfleet node. Configuration: `config.ts` (a `--config` JSON file, `HYPERFLEET_*`
 * environment variables, flags; flags win). Once the API and HTTP servers listen it prints one line
 * on stdout:
 *   {"ready":true,"id":"n1","apiAddress":"127.0.0.1:7001","httpAddress":"127.0.0.1:9001","pid":1234}
 * Log lines (JSON) go to stderr. SIGTERM (a service manager stopping the node): the node drains
 * itself (its running VMs are live-migrated to other nodes), saves the VMs that could not go, stops
 * the servers, closes the Raft member, exits 0. SIGINT (Ctrl-C, or the whole cluster stopping): the
 * same without moving anything: every VM is saved where it is (`FleetdNode.shutdown`). A bad configuration exits 2 with one line naming the field; a failure to start or
 * an error the member cannot continue from exits 1.
 */
import { realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { warmCodec } from "@hyperfleet/migration";
import { FleetdConfigError, parseConfig, type FleetdConfig } from "./config.js";
import { FleetdNode } from "./node.js";

function log(level: "info" | "warn" | "error", msg: string): void {
  process.stderr.write(`${JSON.stringify({ timeMs: Date.now(), level, msg })}\n`);
}

async function main(): Promise<void> {
  let config: FleetdConfig;
  try {
    config = parseConfig(process.argv.slice(2), process.env);
  } catch (e) {
    if (!(e instanceof FleetdConfigError)) throw e;
    process.stderr.write(`fleetd: ${e.message}\n`);
    process.exit(2);
  }
  // the page codec compiled now, not inside the first incoming or outgoing migration's downtime
  warmCodec();
  const node = await FleetdNode.start(config, { info: (m) => log("info", m), warn: (m) => log("warn", m) }, (error) => {
    log("error", `${error.name}: ${error.message}`);
    process.exit(1);
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log("info", `${config.id}: ${signal}, shutting down`);
    node.shutdown({ evacuate: signal === "SIGTERM" }).then(() => process.exit(0), (e: unknown) => {
      log("error", `shutdown failed: ${e instanceof Error ? e.message : String(e)}`);
      process.exit(1);
    });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  process.stdout.write(`${JSON.stringify({ ready: true, id: config.id, apiAddress: node.apiAddress, httpAddress: node.httpAddress, pid: process.pid })}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  main().catch((e: unknown) => {
    log("error", e instanceof Error ? `${e.name}: ${e.message}` : String(e));
    process.exit(1);
  });
}
