import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RootPartition, type ChildPartition } from "@hyperfleet/hypervisor";

const GUESTS = join(import.meta.dirname, "..", "..", "..", "guests", "build");
export const MiB = 2 ** 20;

export function guest(name: string): Uint8Array {
  const path = join(GUESTS, `${name}.elf`);
  if (!existsSync(path)) throw new Error(`${path} is missing: build the guests (make -C guests)`);
  return readFileSync(path);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Two nodes' root partitions and a running dirtier on the first. */
export async function twoNodes(bootargs: string, memoryBytes = 32 * MiB): Promise<{ a: RootPartition; b: RootPartition; vm: ChildPartition; console: string[] }> {
  const a = new RootPartition(96 * MiB);
  const b = new RootPartition(96 * MiB);
  const vm = a.create({ name: "vm1", memoryBytes, bootargs });
  const console: string[] = [];
  vm.onConsole((bytes) => console.push(new TextDecoder().decode(bytes)));
  await vm.start({ image: guest("dirtier") });
  return { a, b, vm, console };
}

/** A nats-server on a free loopback port, in a directory of its own. */
export class NatsServer {
  private constructor(
    readonly url: string,
    private readonly process: ChildProcess,
    private readonly dir: string,
  ) {}

  static async start(): Promise<NatsServer> {
    const dir = mkdtempSync(join(tmpdir(), "hyperfleet-nats-"));
    const child = spawn("nats-server", ["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", dir], { stdio: "ignore" });
    for (let i = 0; i < 200; i++) {
      const file = readdirSync(dir).find((f) => f.endsWith(".ports"));
      if (file !== undefined) {
        const ports = JSON.parse(readFileSync(join(dir, file), "utf8")) as { nats: string[] };
        return new NatsServer(ports.nats[0]!, child, dir);
      }
      await sleep(25);
    }
    child.kill("SIGKILL");
    throw new Error("nats-server did not start within 5 s (is it installed?)");
  }

  kill(): void {
    this.process.kill("SIGKILL");
  }

  async stop(): Promise<void> {
    if (this.process.exitCode === null && this.process.signalCode === null) {
      const exited = new Promise((r) => this.process.once("exit", r));
      this.process.kill("SIGKILL");
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Heartbeat counters the dirtier printed, in order. */
export function heartbeats(console: string[]): number[] {
  return [...console.join("").matchAll(/dirtier: heartbeat (\d+)/g)].map((m) => Number(m[1]));
}
