import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import {
  FramePool, PAGE_SIZE, PartitionConfigError, SnapshotError, VmError, VmWorker, WorkerState, snapshotInfo, type Halt,
} from "@hyperfleet/hypervisor";
import { ElfError, parseElf } from "@hyperfleet/riscv";
import { parseSize } from "./size.js";

export interface RunCommandOptions {
  mem: string;
  smp: string;
  append: string;
  sbi?: boolean;
  timeout?: string;
  stats?: boolean;
  save?: string;
  saveAfter?: string;
  restore?: string;
}

/** A problem with what the user asked for: printed as one line, exit status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

const MiB = 1024 * 1024;

function readInput(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(`cannot read ${path}: ${code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : String(e)}`);
  }
}

/** Writes a file so that a crash leaves either the old file or the whole new one. */
function writeFileAtomically(path: string, chunks: readonly Uint8Array[]): number {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w");
  let bytes = 0;
  try {
    for (const c of chunks) {
      let off = 0;
      while (off < c.length) off += writeSync(fd, c, off, c.length - off);
      bytes += c.length;
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(dirname(path), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
  return bytes;
}

/**
 * `hyperfleet run <elf>`: boots a bare-metal ELF (or an SBI kernel) in a VM worker, console on stdout;
 * or continues a saved VM with --restore. With --save, the VM is saved after --save-after ms of guest
 * time or on SIGUSR1, and the command exits.
 */
export async function runCommand(elfPath: string | undefined, options: RunCommandOptions): Promise<number> {
  if (options.restore !== undefined && elfPath !== undefined) throw new UsageError("give either an ELF or --restore FILE, not both");
  if (options.restore === undefined && elfPath === undefined) throw new UsageError("missing the ELF to run (or --restore FILE)");
  if (options.saveAfter !== undefined && options.save === undefined) throw new UsageError("--save-after needs --save FILE");
  let memoryBytes: number;
  try {
    memoryBytes = parseSize(options.mem);
  } catch (e) {
    throw new UsageError(`--mem: ${(e as Error).message}`);
  }
  const vcpus = Number(options.smp);
  let timeoutMs: number | undefined;
  if (options.timeout !== undefined) {
    timeoutMs = Number(options.timeout) * 1000;
    if (!(timeoutMs > 0)) throw new UsageError(`--timeout: "${options.timeout}" is not a positive number of seconds`);
  }
  let saveAfterMs: number | undefined;
  if (options.saveAfter !== undefined) {
    saveAfterMs = Number(options.saveAfter);
    if (!(saveAfterMs >= 0)) throw new UsageError(`--save-after: "${options.saveAfter}" is not a number of milliseconds`);
  }

  let image: Uint8Array | undefined;
  let snapshot: Uint8Array | undefined;
  if (options.restore !== undefined) {
    snapshot = readInput(options.restore);
    try {
      // header and first section only: the VM worker verifies the whole file as it restores it
      const info = snapshotInfo(snapshot);
      if (info.kind === "json" && info.id === "partition") memoryBytes = (info.value as { memoryBytes: number }).memoryBytes;
    } catch (e) {
      if (e instanceof SnapshotError) throw new UsageError(`${options.restore}: ${e.message}`);
      throw e;
    }
  } else {
    image = readInput(elfPath!);
    try {
      parseElf(image);
    } catch (e) {
      if (e instanceof ElfError) throw new UsageError(`${elfPath}: ${e.message}`);
      throw e;
    }
  }

  // Host memory for this one VM: its RAM (frames are taken as the guest touches pages) and frame 0.
  let pool: FramePool;
  try {
    pool = new FramePool(Math.min(memoryBytes + PAGE_SIZE, 2048 * MiB));
  } catch {
    throw new UsageError(`memory size ${memoryBytes} bytes: must be a multiple of 4 KiB from 1 MiB to 2 GiB`);
  }

  let vm: VmWorker;
  let saveRequested: (() => void) | undefined;
  const saveWanted = new Promise<void>((resolve) => (saveRequested = resolve));
  try {
    vm = await VmWorker.start({
      pool,
      memoryBytes,
      vcpus,
      boot: options.sbi ? "sbi" : "bare",
      bootargs: options.append,
      image,
      snapshot,
      onConsole: (bytes) => process.stdout.write(bytes),
      pauseAtGuestMs: options.save !== undefined ? saveAfterMs : undefined,
      onPaused: () => saveRequested!(),
    });
  } catch (e) {
    if (e instanceof VmError || e instanceof PartitionConfigError) throw new UsageError(`${elfPath ?? options.restore}: ${e.message}`);
    throw e;
  }

  const started = performance.now();
  const onSigint = (): void => void vm.stop(130);
  const onSigusr1 = (): void => saveRequested!();
  process.on("SIGINT", onSigint);
  if (options.save !== undefined) process.on("SIGUSR1", onSigusr1);
  const input = (data: Buffer): void => vm.input(data);
  if (!process.stdin.isTTY) process.stdin.on("data", input);
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => void vm.stop(124), timeoutMs);

  let halt: Halt;
  let savedNote: string | undefined;
  try {
    const outcome = await Promise.race([vm.exited.then((h) => ({ halt: h })), saveWanted.then(() => ({ save: true as const }))]);
    if ("halt" in outcome) {
      halt = outcome.halt;
      if (options.save !== undefined) savedNote = "the guest halted before it was saved";
    } else {
      if (vm.state !== WorkerState.Paused) await vm.pause();
      const stats = await vm.stats();
      const chunks = await vm.save();
      const bytes = writeFileAtomically(options.save!, chunks);
      await vm.stop(0);
      await vm.exited;
      halt = { code: 0, reason: "saved" };
      savedNote = `saved the VM to ${options.save} (${(bytes / MiB).toFixed(1)} MiB) at ${(stats.mtimeTicks / 10_000).toFixed(0)} ms of guest time`;
    }
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    process.off("SIGINT", onSigint);
    process.off("SIGUSR1", onSigusr1);
    process.stdin.off("data", input);
    process.stdin.pause();
  }
  if (halt.code === 124) halt = { code: 124, reason: `timed out after ${options.timeout} s` };
  if (halt.code === 130) halt = { code: 130, reason: "interrupted" };
  const seconds = (performance.now() - started) / 1000;
  if (savedNote !== undefined) process.stderr.write(`hyperfleet: ${savedNote}\n`);
  else if (halt.code !== 0 || options.stats) process.stderr.write(`hyperfleet: ${halt.reason}\n`);
  if (options.stats) {
    const n = vm.finalStats?.instructions ?? 0;
    const exits = vm.finalStats?.exits;
    process.stderr.write(`hyperfleet: ${n} instructions in ${seconds.toFixed(3)} s (${(n / seconds / 1e6).toFixed(1)} MIPS)\n`);
    if (exits) process.stderr.write(`hyperfleet: exits: ${Object.entries(exits).map(([k, v]) => `${k} ${v}`).join(", ")}\n`);
  }
  return halt.code;
}
