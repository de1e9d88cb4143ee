import { spawn } from "node:child_process";
import { CLI } from "./paths.js";

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, killing it after `timeoutMs` (bounded, always). */
export function runProcess(command: string, args: string[], timeoutMs: number): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** `hyperfleet <args>` from the built CLI. */
export function hyperfleet(args: string[], timeoutMs = 60_000): Promise<ProcessResult> {
  return runProcess(process.execPath, [CLI, ...args], timeoutMs);
}

/** The same ELF on QEMU's `virt` board with -bios none, console on stdout. */
export function qemu(elf: string, options: { append?: string; mem?: string; smp?: number } = {}, timeoutMs = 60_000): Promise<ProcessResult> {
  const args = ["-M", "virt", "-bios", "none", "-display", "none", "-serial", "stdio", "-monitor", "none"];
  args.push("-m", options.mem ?? "128M", "-smp", String(options.smp ?? 1), "-kernel", elf);
  if (options.append) args.push("-append", options.append);
  return runProcess("qemu-system-riscv32", args, timeoutMs);
}
