/**
 * Running the built CLI (`services/cli/dist/main.js`, built by `tsc -b`) as an operator would, against
 * a management API server on loopback in front of the fake backend of packages/api.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startApiServer, type ApiServer } from "@hyperfleet/api";
import { FakeBackend } from "../../../packages/api/test/fake-backend.js";

export const CLI = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "main.js");
export const TOKEN = "cli-test-token";

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Extra environment (HYPERFLEET_* are removed from the inherited one first). */
  env?: Record<string, string>;
  /** Working directory; default: an empty temporary one, so no .hyperfleet/cluster.json is found. */
  cwd?: string;
  /** Written to stdin, which is then closed; stdin is /dev/null when absent. */
  input?: string | Buffer;
  timeoutMs?: number;
}

const tempDirs: string[] = [];
let emptyDir: string | undefined;

/** An empty temporary directory, removed by `removeTempDirs`. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "hyperfleet-cli-commands-"));
  tempDirs.push(dir);
  return dir;
}

/** Removes the directories `tempDir` made. */
export function removeTempDirs(): void {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  emptyDir = undefined;
}

function baseEnv(extra: Record<string, string> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("HYPERFLEET_")) env[k] = v;
  return { ...env, ...extra };
}

/** Runs a command to completion; killed after `timeoutMs` (bounded, always). */
export function runProcess(command: string, args: readonly string[], options: RunOptions = {}): Promise<CliResult> {
  if (command === process.execPath && args[0] === CLI && !existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npx tsc -b\` first`);
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? (emptyDir ??= tempDir()),
      env: baseEnv(options.env),
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    if (options.input !== undefined) child.stdin!.end(options.input);
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 30_000);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `hyperfleet <args>` from the built CLI. */
export function hyperfleet(args: readonly string[], options: RunOptions = {}): Promise<CliResult> {
  return runProcess(process.execPath, [CLI, ...args], options);
}

/** A table as `formatTable` prints it: one record per row, keyed by the header. */
export function parseTable(text: string): Record<string, string>[] {
  const lines = text.trimEnd().split("\n");
  const headers = lines[0]!.split(/\s{2,}/);
  return lines.slice(1).map((line) => {
    const cells = line.split(/\s{2,}/);
    if (cells.length !== headers.length) throw new Error(`row "${line}" has ${cells.length} cells, the header ${headers.length}`);
    return Object.fromEntries(headers.map((h, i) => [h, cells[i]!]));
  });
}

/** "Key:  value" lines as a record (up to the first blank line). */
export function parseKeyValue(text: string): Record<string, string> {
  const block = text.split("\n\n")[0]!;
  return Object.fromEntries(
    block.trimEnd().split("\n").map((line) => {
      const m = /^([^:]+):\s+(.*)$/.exec(line);
      if (m === null) throw new Error(`not a key/value line: "${line}"`);
      return [m[1]!, m[2]!];
    }),
  );
}

export interface TestCluster {
  readonly backend: FakeBackend;
  readonly server: ApiServer;
  /** `--api ADDRESS --token TOKEN`. */
  readonly flags: readonly string[];
  close(): Promise<void>;
}

/** A management API server on loopback in front of a fresh fake backend. */
export async function startTestCluster(): Promise<TestCluster> {
  const backend = new FakeBackend();
  const server = await startApiServer({
    backend,
    host: "127.0.0.1",
    port: 0,
    clusterToken: TOKEN,
    logger: { warn: () => undefined, error: () => undefined },
    closeGraceMs: 200,
  });
  return { backend, server, flags: ["--api", server.address, "--token", TOKEN], close: () => server.close() };
}
