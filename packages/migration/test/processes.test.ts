/**
 * Two hypervisor hosts in separate processes and a real nats-server: a migration, and kill -9 of the
 * destination in the middle of one.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { NatsServer, sleep } from "./lib.js";

const NODE = join(import.meta.dirname, "fixtures", "node.ts");
const ROOT = join(import.meta.dirname, "..", "..", "..");

interface Host {
  process: ChildProcess;
  events: Record<string, unknown>[];
  next(event: string, where?: (e: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

function host(args: string[]): Host {
  // tsx as a loader inside this one process (its CLI would put the host in a child process of its own,
  // out of reach of the kill -9 below)
  const child = spawn(process.execPath, ["--import", "tsx", NODE, ...args], { cwd: ROOT, stdio: ["pipe", "pipe", "inherit"] });
  const events: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: child.stdout! }).on("line", (line) => {
    try {
      events.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      return;
    }
    for (const w of waiters.splice(0)) w();
  });
  const next = async (event: string, where: (e: Record<string, unknown>) => boolean = () => true, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = events.find((e) => e.event === event && where(e));
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no ${event} event within ${timeoutMs} ms`);
      await Promise.race([new Promise<void>((r) => waiters.push(r)), sleep(200)]);
    }
  };
  return { process: child, events, next };
}

const hosts: ChildProcess[] = [];
let server: NatsServer | undefined;
afterEach(async () => {
  for (const h of hosts.splice(0)) h.kill("SIGKILL");
  await server?.stop();
  server = undefined;
});

const text = (h: Host) => h.events.filter((e) => e.event === "console").map((e) => e.text as string).join("");
const beats = (s: string) => [...s.matchAll(/dirtier: heartbeat (\d+)/g)].map((m) => Number(m[1]));

describe("migration between processes", () => {
  it("a VM moves from one host process to another over nats-server and goes on counting", async () => {
    server = await NatsServer.start();
    const src = host(["source", server.url, "41", "rate=20000 ws=8"]);
    const dst = host(["destination", server.url, "41"]);
    hosts.push(src.process, dst.process);
    await Promise.all([src.next("ready"), dst.next("ready")]);
    await src.next("console", (e) => String(e.text).includes("heartbeat 1"));
    src.process.stdin!.write("migrate\n");
    const result = await src.next("result");
    expect(result.ok, JSON.stringify(result)).toBe(true);
    expect((await dst.next("result")).ok).toBe(true);
    await dst.next("console", (e) => /heartbeat \d+/.test(String(e.text)));
    const all = beats(text(src) + text(dst));
    all.forEach((n, i) => expect(n).toBe(i + 1));
  }, 60_000);

  it("kill -9 of the destination mid-migration: the source aborts and its VM keeps running", async () => {
    server = await NatsServer.start();
    const src = host(["source", server.url, "42", "rate=20000 ws=24"]);
    const dst = host(["destination", server.url, "42"]);
    hosts.push(src.process, dst.process);
    await Promise.all([src.next("ready"), dst.next("ready")]);
    src.process.stdin!.write("migrate\n");
    await src.next("progress", (e) => e.phase === "precopy");
    dst.process.kill("SIGKILL");
    const result = await src.next("result", () => true, 40_000);
    expect(result.ok).toBe(false);
    expect(result.committed).toBe(false);
    // the VM goes on running on the source: its instruction count keeps rising after the abort
    const stats = () => src.events.filter((e) => e.event === "stats").map((e) => Number(e.instructions));
    const atAbort = stats().at(-1)!;
    await sleep(500);
    expect(stats().at(-1)!).toBeGreaterThan(atAbort);
    expect(src.events.some((e) => e.event === "console" && /heartbeat/.test(String(e.text)))).toBe(true);
  }, 60_000);
});
