/**
 * A nats-server (Debian's `nats-server`) on a free loopback port, in a directory of its own: for local
 * clusters, tests and benchmarks.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export class LocalNatsServer {
  private constructor(
    readonly url: string,
    private readonly child: ChildProcess,
    private readonly dir: string,
  ) {}

  /** Starts the server and resolves with its URL once it listens (within `timeoutMs`). */
  static async start(timeoutMs = 5000): Promise<LocalNatsServer> {
    const dir = mkdtempSync(join(tmpdir(), "hyperfleet-nats-"));
    const child = spawn("nats-server", ["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", dir], { stdio: "ignore" });
    const failed = new Promise<never>((_, reject) =>
      child.once("error", (e) => reject(new Error(`cannot start nats-server: ${e.message} (install Debian's nats-server)`))),
    );
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const file = readdirSync(dir).find((f) => f.endsWith(".ports"));
      if (file !== undefined) {
        const ports = JSON.parse(readFileSync(join(dir, file), "utf8")) as { nats: string[] };
        return new LocalNatsServer(ports.nats[0]!, child, dir);
      }
      await Promise.race([failed, new Promise((r) => setTimeout(r, 20))]);
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
