/**
 * `pnpm bench hypervisor`, in one run:
 * - guest MIPS with dirty logging off and on (logging on: the log is synced every 100 ms, as a migration
 *   round would), for cpubench (compute) and dirtier at full speed (a write to a new page every few
 *   instructions, the worst case for write-protection); target: logging costs at most 10 %;
 * - write-protect faults per second during the dirtier run;
 * - pause and resume latency of a VM worker running dirtier (200 of each); target p99 under 1 ms;
 * - save and restore time of a 1 GiB guest with 256 MiB touched.
 * Off and on alternate, median of `--reps` each, so machine noise falls on both.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  concat, FramePool, PAGE_SIZE, Partition, restorePartition, savePartition, systemClock, VmWorker,
} from "@hyperfleet/hypervisor";
import { parseElf } from "@hyperfleet/riscv";
import { median, option, percentile, round, table } from "./stats.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const guestPath = (name: string) => join(ROOT, "guests", "build", `${name}.elf`);
const MiB = 1024 * 1024;
const now = () => performance.now();

interface LoggingSample {
  mips: number;
  wpFaultsPerSecond: number;
}

/** Runs a guest in-process for `seconds` of host time, syncing the dirty log every 100 ms if asked. */
function runFor(elf: string, bootargs: string, seconds: number, logging: boolean): LoggingSample {
  const p = new Partition({ memoryBytes: 256 * MiB, bootargs, clock: systemClock });
  p.load(parseElf(readFileSync(guestPath(elf))));
  // warm up: page in the working set and let the JIT settle
  const warmEnd = now() + 300;
  while (now() < warmEnd) p.step(50_000);
  if (logging) {
    p.startDirtyLog();
    p.getAndClearDirtyLog();
  }
  const start = now();
  const insns0 = p.instructions;
  const faults0 = p.exits.writeProtect;
  let nextSync = start + 100;
  const end = start + seconds * 1000;
  while (now() < end && p.halted === undefined) {
    p.step(50_000);
    if (logging && now() >= nextSync) {
      p.getAndClearDirtyLog();
      nextSync += 100;
    }
  }
  const elapsed = (now() - start) / 1000;
  if (p.halted !== undefined) throw new Error(`${elf} halted during the run: ${p.halted.reason}`);
  return { mips: (p.instructions - insns0) / elapsed / 1e6, wpFaultsPerSecond: (p.exits.writeProtect - faults0) / elapsed };
}



async function pauseResume(cycles: number): Promise<{ pause: number[]; resume: number[] }> {
  const pool = new FramePool(128 * MiB);
  const vm = await VmWorker.start({ pool, memoryBytes: 64 * MiB, image: readFileSync(guestPath("dirtier")), bootargs: "rate=max ws=16" });
  const pause: number[] = [];
  const resume: number[] = [];
  try {
    await new Promise((r) => setTimeout(r, 200));
    for (let i = 0; i < cycles; i++) {
      pause.push(await vm.pause());
      resume.push(await vm.resume());
      await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    await vm.stop();
  }
  return { pause, resume };
}

function saveRestore(): { touchedMiB: number; saveSeconds: number; writeSeconds: number; readSeconds: number; restoreSeconds: number; fileMiB: number } {
  const memoryBytes = 1024 * MiB;
  const touched = 256 * MiB;
  const p = new Partition({ memoryBytes, clock: systemClock });
  p.load(parseElf(readFileSync(guestPath("hello"))));
  // Touch 256 MiB with distinct, non-zero pages (spread over the whole GiB: every third page).
  const page = new Uint8Array(PAGE_SIZE);
  const words = new Uint32Array(page.buffer);
  const pages = touched / PAGE_SIZE;
  for (let i = 0; i < pages; i++) {
    words.fill(i * 2654435761);
    words[0] = i + 1;
    p.guest.write(p.guest.base + 0x10_0000 + i * 3 * PAGE_SIZE, page);
  }
  const dir = mkdtempSync(join(tmpdir(), "hyperfleet-bench-"));
  try {
    const file = join(dir, "vm.snap");
    let t = now();
    const chunks = savePartition(p);
    const saveSeconds = (now() - t) / 1000;
    t = now();
    const bytes = concat(chunks);
    writeFileSync(file, bytes);
    const writeSeconds = (now() - t) / 1000;
    t = now();
    const back = readFileSync(file);
    const readSeconds = (now() - t) / 1000;
    t = now();
    const restored = restorePartition(back, { clock: systemClock });
    const restoreSeconds = (now() - t) / 1000;
    // spot-check: the restored memory is the saved memory
    for (const i of [0, pages >> 1, pages - 1]) {
      const gpa = p.guest.base + 0x10_0000 + i * 3 * PAGE_SIZE;
      if (restored.guest.readU32(gpa) !== i + 1) throw new Error(`restored page ${i} differs`);
    }
    return { touchedMiB: touched / MiB, saveSeconds, writeSeconds, readSeconds, restoreSeconds, fileMiB: bytes.length / MiB };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}



export async function hypervisorBench(args: string[]): Promise<{ table: string; json: unknown }> {
  const reps = option(args, "--reps", 3);
  const seconds = option(args, "--seconds", 1.5);
  const workloads = [
    { name: "cpubench", elf: "cpubench", bootargs: "iters=1000000000" },
    { name: "dirtier max, 64 MiB", elf: "dirtier", bootargs: "rate=max ws=64" },
  ];
  const logging: Record<string, unknown>[] = [];
  const rows: string[][] = [["workload", "MIPS logging off", "MIPS logging on", "cost %", "WP faults/s"]];
  for (const w of workloads) {
    const off: LoggingSample[] = [];
    const on: LoggingSample[] = [];
    for (let i = 0; i < reps; i++) {
      off.push(runFor(w.elf, w.bootargs, seconds, false));
      on.push(runFor(w.elf, w.bootargs, seconds, true));
    }
    const offMips = median(off.map((s) => s.mips));
    const onMips = median(on.map((s) => s.mips));
    const costPercent = (1 - onMips / offMips) * 100;
    const faults = median(on.map((s) => s.wpFaultsPerSecond));
    logging.push({
      workload: w.name,
      mipsLoggingOff: round(offMips),
      mipsLoggingOn: round(onMips),
      loggingCostPercent: round(costPercent),
      writeProtectFaultsPerSecond: Math.round(faults),
      meetsTarget: costPercent <= 10,
    });
    rows.push([w.name, round(offMips).toString(), round(onMips).toString(), round(costPercent).toString(), Math.round(faults).toString()]);
  }
  const pr = await pauseResume(200);
  const latency = {
    pauseMsP50: round(percentile(pr.pause, 50), 3),
    pauseMsP99: round(percentile(pr.pause, 99), 3),
    pauseMsMax: round(Math.max(...pr.pause), 3),
    resumeMsP50: round(percentile(pr.resume, 50), 3),
    resumeMsP99: round(percentile(pr.resume, 99), 3),
    resumeMsMax: round(Math.max(...pr.resume), 3),
    meetsTarget: percentile(pr.pause, 99) < 1 && percentile(pr.resume, 99) < 1,
  };
  const sr = saveRestore();
  const saveRestoreJson = {
    guestMiB: 1024,
    touchedMiB: sr.touchedMiB,
    fileMiB: round(sr.fileMiB),
    saveMs: Math.round(sr.saveSeconds * 1000),
    writeFileMs: Math.round(sr.writeSeconds * 1000),
    readFileMs: Math.round(sr.readSeconds * 1000),
    restoreMs: Math.round(sr.restoreSeconds * 1000),
  };
  const json = { bench: "hypervisor", reps, secondsPerRun: seconds, dirtyLogging: logging, pauseResume: latency, saveRestore: saveRestoreJson };
  const text =
    `${table(rows)}\n(target: logging costs at most 10 %; the log is synced every 100 ms)\n\n` +
    table([
      ["VM worker, 200 cycles", "p50 ms", "p99 ms", "max ms"],
      ["pause", String(latency.pauseMsP50), String(latency.pauseMsP99), String(latency.pauseMsMax)],
      ["resume", String(latency.resumeMsP50), String(latency.resumeMsP99), String(latency.resumeMsMax)],
    ]) +
    `\n(target: p99 under 1 ms: ${latency.meetsTarget ? "met" : "NOT met"})\n\n` +
    table([
      ["1 GiB guest, 256 MiB touched", "ms"],
      ["save (state + memory)", String(saveRestoreJson.saveMs)],
      [`write file (${saveRestoreJson.fileMiB} MiB)`, String(saveRestoreJson.writeFileMs)],
      ["read file", String(saveRestoreJson.readFileMs)],
      ["restore", String(saveRestoreJson.restoreMs)],
    ]) +
    "\n";
  return { table: text, json };
}
