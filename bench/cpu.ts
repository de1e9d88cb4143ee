/**
 * `pnpm bench cpu`: guest MIPS of the cpubench guest on Hyperfleet and on QEMU (TCG) in the same run.
 *
 * Both run the same ELF. The guest times its own kernel with mtime (10 MHz on both machines) and prints
 * the exact instruction count of the kernel, so both figures are measured the same way and exclude boot.
 * Runs alternate between the two machines so that noise from the other core falls on both.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Partition, runPartition, systemClock } from "@hyperfleet/hypervisor";
import { parseElf } from "@hyperfleet/riscv";
import { median, option, round, table } from "./stats.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const ELF = join(ROOT, "guests", "build", "cpubench.elf");
const TARGET_RATIO = 0.03;

interface Sample {
  insns: number;
  ticks: number;
  mips: number;
  checksum: string;
}

function parseOutput(output: string, who: string): Sample {
  const head = /cpubench: iters=\d+ insns=(\d+) checksum=(0x[0-9a-f]+)/.exec(output);
  const time = /cpubench: ticks=(\d+)/.exec(output);
  if (head === null || time === null) throw new Error(`${who}: unexpected cpubench output: ${JSON.stringify(output.slice(0, 300))}`);
  const insns = Number(head[1]);
  const ticks = Number(time[1]);
  return { insns, ticks, mips: insns / (ticks / 10_000_000) / 1e6, checksum: head[2]! };
}

async function runHyperfleet(iters: number): Promise<Sample> {
  const image = parseElf(await readFile(ELF));
  let out = "";
  const machine = new Partition({
    memoryBytes: 128 << 20,
    bootargs: `iters=${iters}`,
    clock: systemClock,
    onConsole: (b) => (out += new TextDecoder().decode(b)),
  });
  machine.load(image);
  const halt = await runPartition(machine, { timeoutMs: 300_000 });
  if (halt.code !== 0) throw new Error(`hyperfleet: ${halt.reason}`);
  return parseOutput(out, "hyperfleet");
}

function runQemu(iters: number): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const args = ["-M", "virt", "-bios", "none", "-display", "none", "-serial", "stdio", "-monitor", "none"];
    args.push("-m", "128M", "-kernel", ELF, "-append", `iters=${iters}`);
    const child = spawn("qemu-system-riscv32", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 300_000);
    child.on("error", (e) => reject(new Error(`qemu-system-riscv32: ${e.message}`)));
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`qemu exited with ${code}: ${err.trim()}`));
      else {
        try {
          resolve(parseOutput(out, "qemu"));
        } catch (e) {
          reject(e as Error);
        }
      }
    });
  });
}



export async function cpuBench(args: string[]): Promise<{ table: string; json: unknown }> {
  if (!existsSync(ELF)) throw new Error(`${ELF} is missing: build the guests (make -C guests)`);
  const reps = option(args, "--reps", 3);
  const iters = option(args, "--iters", 2_000_000);
  // QEMU runs the same kernel tens of times faster: give it more iterations so that its run is as long.
  const qemuIters = option(args, "--qemu-iters", iters * 20);
  const ours: Sample[] = [];
  const theirs: Sample[] = [];
  for (let i = 0; i < reps; i++) {
    ours.push(await runHyperfleet(iters));
    theirs.push(await runQemu(qemuIters));
  }
  const checksums = new Set(ours.map((s) => s.checksum));
  if (checksums.size !== 1) throw new Error(`hyperfleet gave different checksums run to run: ${[...checksums].join(", ")}`);
  const hyperfleetMips = median(ours.map((s) => s.mips));
  const qemuMips = median(theirs.map((s) => s.mips));
  const ratio = hyperfleetMips / qemuMips;
  const json = {
    bench: "cpu",
    guest: "cpubench",
    reps,
    hyperfleet: {
      mips: round(hyperfleetMips),
      itersPerRun: iters,
      instructionsPerRun: ours[0]!.insns,
      secondsPerRun: round(median(ours.map((s) => s.ticks / 1e7)), 3),
      samplesMips: ours.map((s) => round(s.mips)),
    },
    qemu: {
      mips: round(qemuMips),
      itersPerRun: qemuIters,
      instructionsPerRun: theirs[0]!.insns,
      secondsPerRun: round(median(theirs.map((s) => s.ticks / 1e7)), 3),
      samplesMips: theirs.map((s) => round(s.mips)),
    },
    ratio: round(ratio, 4),
    targetRatio: TARGET_RATIO,
    meetsTarget: ratio >= TARGET_RATIO,
  };
  const rows = [
    ["machine", "guest MIPS (median)", "samples", "instructions/run", "s/run"],
    ["hyperfleet", hyperfleetMips.toFixed(1), json.hyperfleet.samplesMips.join(" / "), String(json.hyperfleet.instructionsPerRun), String(json.hyperfleet.secondsPerRun)],
    ["qemu (TCG)", qemuMips.toFixed(1), json.qemu.samplesMips.join(" / "), String(json.qemu.instructionsPerRun), String(json.qemu.secondsPerRun)],
  ];
  const text =
    `${table(rows)}\n\n` +
    `ratio hyperfleet / qemu: ${ratio.toFixed(4)} (target >= ${TARGET_RATIO}: ${json.meetsTarget ? "met" : "NOT met"})\n`;
  return { table: text, json };
}


