import { readFileSync } from "node:fs";
import { Partition, PartitionConfigError, runPartition, systemClock, type Halt } from "@hyperfleet/hypervisor";
import { ElfError, parseElf } from "@hyperfleet/riscv";
import { parseSize } from "./size.js";

export interface RunCommandOptions {
  mem: string;
  smp: string;
  append: string;
  timeout?: string;
  stats?: boolean;
}

/** A problem with what the user asked for: printed as one line, exit status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** `hyperfleet run <elf>`: boots a bare-metal ELF on a `virt`-like machine, console on stdout. */
export async function runCommand(elfPath: string, options: RunCommandOptions): Promise<number> {
  let file: Uint8Array;
  try {
    file = readFileSync(elfPath);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(`cannot read ${elfPath}: ${code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : String(e)}`);
  }
  let memoryBytes: number;
  try {
    memoryBytes = parseSize(options.mem);
  } catch (e) {
    throw new UsageError(`--mem: ${(e as Error).message}`);
  }
  const harts = Number(options.smp);
  let timeoutMs: number | undefined;
  if (options.timeout !== undefined) {
    timeoutMs = Number(options.timeout) * 1000;
    if (!(timeoutMs > 0)) throw new UsageError(`--timeout: "${options.timeout}" is not a positive number of seconds`);
  }

  let machine: Partition;
  try {
    const image = parseElf(file);
    machine = new Partition({
      memoryBytes,
      vcpus: harts,
      bootargs: options.append,
      clock: systemClock,
      onConsole: (bytes) => process.stdout.write(bytes),
    });
    machine.load(image);
  } catch (e) {
    if (e instanceof ElfError) throw new UsageError(`${elfPath}: ${e.message}`);
    if (e instanceof PartitionConfigError) throw new UsageError(e.message);
    throw e;
  }

  const abort = new AbortController();
  const onSigint = (): void => abort.abort();
  process.on("SIGINT", onSigint);
  const input = (data: Buffer): void => machine.consoleInput(data);
  if (!process.stdin.isTTY) process.stdin.on("data", input);
  const started = performance.now();
  let halt: Halt;
  try {
    halt = await runPartition(machine, { timeoutMs, signal: abort.signal });
  } finally {
    process.off("SIGINT", onSigint);
    process.stdin.off("data", input);
    process.stdin.pause();
  }
  const seconds = (performance.now() - started) / 1000;
  if (halt.code !== 0 || options.stats) {
    process.stderr.write(`hyperfleet: ${halt.reason}\n`);
  }
  if (options.stats) {
    const n = machine.instructions;
    process.stderr.write(`hyperfleet: ${n} instructions in ${seconds.toFixed(3)} s (${(n / seconds / 1e6).toFixed(1)} MIPS)\n`);
  }
  return halt.code;
}
