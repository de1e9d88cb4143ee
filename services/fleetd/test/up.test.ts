import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { CLUSTER_FILE, httpStatus, stopProcess, type ClusterFile } from "../src/local-cluster.js";
import { parseUpArgs, UpUsageError } from "../src/up-main.js";

const CLI_MAIN = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "cli", "dist", "main.js");
const dir = mkdtempSync(join(tmpdir(), "fleetd-up-"));
const started: ChildProcess[] = [];
const nodePids: number[] = [];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

afterAll(async () => {
  for (const child of started) await stopProcess(child, 8000);
  for (const pid of nodePids) if (alive(pid)) process.kill(pid, "SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe("up", () => {
  it("up - parses its options and names a bad one", () => {
    expect(parseUpArgs([])).toEqual({ nodes: 3, dir: ".hyperfleet", memoryMib: 512 });
    expect(parseUpArgs(["--nodes", "1", "--dir=x", "--memory-mib", "64"])).toEqual({ nodes: 1, dir: "x", memoryMib: 64 });
    expect(() => parseUpArgs(["--nodes", "0"])).toThrow(UpUsageError);
    expect(() => parseUpArgs(["--nodes", "0"])).toThrow("--nodes must be an integer from 1 to 9");
    expect(() => parseUpArgs(["--memory-mib", "lots"])).toThrow("--memory-mib must be an integer from 16 to 2047");
    expect(() => parseUpArgs(["--colour", "1"])).toThrow('unknown option "--colour"');
  });

  it("up - hyperfleet up starts a healthy cluster, writes cluster.json and stops it all on SIGINT", async () => {
    expect(existsSync(CLI_MAIN)).toBe(true);
    const child = spawn(process.execPath, [CLI_MAIN, "up", "--nodes", "1", "--dir", dir, "--memory-mib", "64"], { stdio: ["ignore", "pipe", "pipe"] });
    started.push(child);
    let out = "";
    let err = "";
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    const ready = new Promise<void>((resolveReady, reject) => {
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("Ctrl-C stops the cluster.")) resolveReady();
      });
      child.once("exit", (code) => reject(new Error(`hyperfleet up exited ${code}: ${err}`)));
    });
    await Promise.race([ready, new Promise((_, reject) => setTimeout(() => reject(new Error(`not up within 30 s: ${out} ${err}`)), 30_000))]);
    for (const m of out.matchAll(/pid (\d+)/g)) nodePids.push(Number(m[1]));
    expect(nodePids).toHaveLength(1);
    const file = JSON.parse(readFileSync(join(dir, CLUSTER_FILE), "utf8")) as ClusterFile;
    expect(file.apiAddresses).toHaveLength(1);
    expect(file.natsUrl).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    const http = /http http:\/\/(\S+)/.exec(out)![1]!;
    expect(await httpStatus(http, "/healthz")).toBe(200);

    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill("SIGINT");
    expect(await exited).toBe(0);
    expect(alive(nodePids[0]!)).toBe(false);
    expect(await httpStatus(http, "/healthz")).toBe(0);
  });
});
