/**
 * A nats-server (Debian's `nats-server`) on a free loopback port, in a directory of its own: for local
 * clusters, tests and benchmarks.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export class LocalNatsServer {
  private constructor(
    readonly url: string,
    private readonly child: ChildProcess,
    private readonly dir: string,
  ) {}

  /**
   * Starts the server and resolves with its URL once it listens (within `timeoutMs`). With `token`,
   * only clients that present it may connect (it goes in a config file of the server's own directory,
   * not on its command line).
   */
  static async start(timeoutMs = 5000, options: { token?: string } = {}): Promise<LocalNatsServer> {
    const dir = mkdtempSync(join(tmpdir(), "hyperfleet-nats-"));
    const args = ["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", dir];
    if (options.token !== undefined) {
      const config = join(dir, "nats.conf");
      writeFileSync(config, `authorization {\n  token: ${JSON.stringify(options.token)}\n}\n`, { mode: 0o600 });
      args.push("-c", config);
    }
    const child = spawn("nats-server", args, { stdio: "ignore" });
    const failed = new Promise<never>((_, reject) =>
      child.once("error", (e) => reject(new Error(`cannot start nats-server: ${e.message} (install Debian's nats-server)`))),
    );
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const file = readdirSync(dir).find((f) => f.endsWith(".ports"));
      // The file may exist before nats-server has finished writing it: read it again until it parses.
      const url = file === undefined ? undefined : natsUrl(readFileSync(join(dir, file), "utf8"));
      if (url !== undefined) return new LocalNatsServer(url, child, dir);
      try {
        await Promise.race([failed, new Promise((r) => setTimeout(r, 20))]);
      } catch (e) {
        rmSync(dir, { recursive: true, force: true });
        throw e;
      }
    }
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`nats-server did not listen within ${timeoutMs} ms`);
  }

  /** kill -9: the server dies at once, as in a crash. */
  kill(): void {
    this.child.kill("SIGKILL");
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once("exit", r));
      this.child.kill("SIGKILL");
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The client URL from a nats-server ports file, or undefined while the file is incomplete. */
function natsUrl(text: string): string | undefined {
  try {
    const url = (JSON.parse(text) as { nats?: unknown }).nats;
    return Array.isArray(url) && typeof url[0] === "string" ? url[0] : undefined;
  } catch {
    return undefined;
  }
}
