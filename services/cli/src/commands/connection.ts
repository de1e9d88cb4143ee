/**
 * Where the operator commands find the cluster, and how their failures reach the user.
 *
 * Connection, each of the address list and the token taken from the first source that has it:
 *  1. `--api HOST:PORT[,HOST:PORT...]` and `--token TOKEN`;
 *  2. the environment: `HYPERFLEET_API` (same syntax) and `HYPERFLEET_TOKEN`;
 *  3. `<dir>/cluster.json` as `hyperfleet up` writes it (`--dir`, default `.hyperfleet`):
 *     `{ "apiAddresses": ["127.0.0.1:port", ...], "token": "..." }`.
 * The addresses are tried in order: a call that finds an address unreachable (UNAVAILABLE) is made
 * again at the next one; every other answer, good or bad, is the answer.
 *
 * Exit statuses: 1 when the cluster refused or failed a call (the server's message is printed),
 * 2 for a usage error (bad option value, no connection configured). One line on stderr either way.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ApiClient, ApiError, type CallOptions } from "@hyperfleet/api";
import type { Command } from "commander";
import { UsageError } from "../run.js";

/** The options every operator command takes. */
export interface CommonOptions {
  api?: string;
  token?: string;
  dir: string;
  json?: boolean;
}

export interface Connection {
  readonly addresses: readonly string[];
  readonly token: string;
  /** Where the addresses came from, for messages ("--api", "HYPERFLEET_API", a file's path). */
  readonly source: string;
}

export const DEFAULT_DIR = ".hyperfleet";
const CLUSTER_FILE = "cluster.json";
const HOW_TO_CONNECT =
  "give --api HOST:PORT and --token TOKEN, set HYPERFLEET_API and HYPERFLEET_TOKEN, or run `hyperfleet up` to start a cluster (it writes .hyperfleet/cluster.json)";

/** Deadline of one unary call. */
const CALL_TIMEOUT_MS = 10_000;

function splitAddresses(text: string, source: string): string[] {
  const addresses = text.split(",").map((a) => a.trim()).filter((a) => a !== "");
  if (addresses.length === 0) throw new UsageError(`${source}: no address given (expected HOST:PORT)`);
  for (const a of addresses) {
    if (!/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/.test(a)) throw new UsageError(`${source}: "${a}" is not HOST:PORT`);
  }
  return addresses;
}

interface ClusterFile {
  readonly addresses: string[];
  readonly token: string | undefined;
}

function readClusterFile(path: string): ClusterFile | null {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new UsageError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UsageError(`${path} is not valid JSON; run \`hyperfleet up\` again or give --api and --token`);
  }
  const file = value as { apiAddresses?: unknown; token?: unknown };
  if (typeof value !== "object" || value === null || !Array.isArray(file.apiAddresses) || !file.apiAddresses.every((a) => typeof a === "string")) {
    throw new UsageError(`${path}: expected { "apiAddresses": ["host:port", ...], "token": "..." }`);
  }
  return {
    addresses: splitAddresses((file.apiAddresses as string[]).join(","), path),
    token: typeof file.token === "string" && file.token !== "" ? file.token : undefined,
  };
}

/** The connection the options, the environment and the cluster file give; UsageError when none does. */
export function resolveConnection(options: CommonOptions, env: NodeJS.ProcessEnv = process.env): Connection {
  const path = join(options.dir, CLUSTER_FILE);
  let file: ClusterFile | null | undefined;
  const fromFile = (): ClusterFile | null => (file === undefined ? (file = readClusterFile(path)) : file);

  let addresses: string[];
  let source: string;
  if (options.api !== undefined) {
    addresses = splitAddresses(options.api, "--api");
    source = "--api";
  } else if (env.HYPERFLEET_API !== undefined && env.HYPERFLEET_API !== "") {
    addresses = splitAddresses(env.HYPERFLEET_API, "HYPERFLEET_API");
    source = "HYPERFLEET_API";
  } else {
    const f = fromFile();
    if (f === null) throw new UsageError(`no cluster to talk to (no --api, no HYPERFLEET_API, no ${path}): ${HOW_TO_CONNECT}`);
    addresses = f.addresses;
    source = path;
  }

  let token: string | undefined = options.token;
  if (token === undefined && env.HYPERFLEET_TOKEN !== undefined && env.HYPERFLEET_TOKEN !== "") token = env.HYPERFLEET_TOKEN;
  if (token === undefined) token = fromFile()?.token;
  if (token === undefined || token === "") {
    throw new UsageError(`no cluster token (no --token, no HYPERFLEET_TOKEN, none in ${path}): give --token TOKEN or set HYPERFLEET_TOKEN`);
  }
  return { addresses, token, source };
}

/** gRPC's "No connection established. Last error: Error: connect ECONNREFUSED ... Resolution note: " made short. */
function transportMessage(message: string): string {
  return message.replace(/\s*Resolution note:\s*$/, "").replace(/^No connection established\. Last error: (Error: )?/, "").replace(/\.$/, "");
}

/**
 * The cluster as the commands use it: unary calls that move on to the next address while one is
 * unreachable, and the client of the address that last answered for streams.
 */
export class Cluster {
  private readonly options: CommonOptions;
  private resolved: Connection | undefined;
  private clients: (ApiClient | undefined)[] = [];
  private current = 0;

  /** Nothing is read or checked until the first call, so a bad option value is reported first. */
  constructor(options: CommonOptions) {
    this.options = options;
  }

  /** Where the commands connect (a UsageError when nothing says). */
  get connection(): Connection {
    if (this.resolved === undefined) {
      this.resolved = resolveConnection(this.options);
      this.clients = this.resolved.addresses.map(() => undefined);
    }
    return this.resolved;
  }

  /** The client of the address in use (the one that last answered). */
  get client(): ApiClient {
    const connection = this.connection;
    let c = this.clients[this.current];
    if (c === undefined) {
      c = new ApiClient(connection.addresses[this.current]!, { token: connection.token, timeoutMs: CALL_TIMEOUT_MS });
      this.clients[this.current] = c;
    }
    return c;
  }

  /**
   * Makes a unary call, at each address in turn while the address is unreachable. Bounded: at most
   * one attempt per address.
   */
  async call<T>(make: (client: ApiClient, options: CallOptions) => Promise<T>, options: CallOptions = {}): Promise<T> {
    const failures: string[] = [];
    for (let attempt = 0; attempt < this.connection.addresses.length; attempt++) {
      try {
        return await make(this.client, options);
      } catch (e) {
        if (!(e instanceof ApiError) || e.code !== "UNAVAILABLE") throw e;
        failures.push(`${this.connection.addresses[this.current]}: ${transportMessage(e.message)}`);
        if (attempt + 1 < this.connection.addresses.length) this.current = (this.current + 1) % this.connection.addresses.length;
      }
    }
    throw new ApiError("UNAVAILABLE", `the cluster API is unavailable (addresses from ${this.connection.source}): ${failures.join("; ")}`);
  }

  close(): void {
    for (const c of this.clients) c?.close();
  }
}

/** An `ApiError` as the one line the user reads. */
export function messageOfApiError(e: ApiError): string {
  if (e.code === "UNAUTHENTICATED") return `authentication failed: ${e.message} (check --token, HYPERFLEET_TOKEN or the cluster file)`;
  if (e.code === "PERMISSION_DENIED") return `permission denied: ${e.message}`;
  if (e.code === "DEADLINE_EXCEEDED") return `no answer in time: ${e.message} (the outcome of a change is unknown; check with \`vm show\`)`;
  return e.message;
}

/**
 * A command group (`vm`, `node`, `cluster`) under `parent`, whose usage errors are one line,
 * "hyperfleet: unknown option '--bogus'", instead of commander's "error: ...". Set before the
 * subcommands are added: they copy it.
 */
export function commandGroup(parent: Command, name: string): Command {
  return parent.command(name).configureOutput({
    outputError: (text, write) => write(`hyperfleet: ${text.replace(/^error: /, "").trimEnd()}\n`),
  });
}

/** Adds --api, --token, --dir and --json to a command. */
export function withCommonOptions(command: Command): Command {
  return command
    .option("--api <addresses>", "management API address(es), HOST:PORT[,HOST:PORT...] (default: HYPERFLEET_API, else the cluster file)")
    .option("--token <token>", "cluster token (default: HYPERFLEET_TOKEN, else the cluster file)")
    .option("--dir <dir>", "directory holding cluster.json, written by `hyperfleet up`", DEFAULT_DIR)
    .option("--json", "print one JSON document on stdout instead of text");
}

/**
 * Runs an operator command: connects, calls `body`, closes, and turns failures into one line on
 * stderr and the exit status (1: the cluster refused or failed; 2: usage).
 */
export async function runOperatorCommand(options: CommonOptions, body: (cluster: Cluster) => Promise<number | void>): Promise<void> {
  let cluster: Cluster | undefined;
  try {
    cluster = new Cluster(options);
    const code = await body(cluster);
    process.exitCode = code ?? 0;
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`hyperfleet: ${e.message}\n`);
      process.exitCode = 2;
    } else if (e instanceof ApiError) {
      process.stderr.write(`hyperfleet: ${messageOfApiError(e)}\n`);
      process.exitCode = 1;
    } else {
      throw e;
    }
  } finally {
    cluster?.close();
  }
}
