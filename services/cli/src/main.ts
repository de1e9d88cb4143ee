#!/usr/bin/env node
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { runCommand, UsageError } from "./run.js";
import { registerOperatorCommands } from "./commands/index.js";

function integer(name: string, min: number, max: number) {
  return (value: string): string => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}.`);
    return value;
  };
}

const program = new Command()
  .name("hyperfleet")
  .description("Hyperfleet: a cluster-aware virtualization platform for RISC-V guests")
  .exitOverride();

program
  .command("run")
  .description("boot a bare-metal RV32 ELF (built for QEMU virt -bios none) in a VM, console on stdout")
  .argument("[elf]", "the guest program (omit with --restore)")
  .option("-m, --mem <size>", "RAM size (K/M/G suffix; no suffix means MiB)", "128M")
  .option("--smp <vcpus>", "number of virtual processors (1-4)", integer("--smp", 1, 4), "1")
  .option("--append <bootargs>", "kernel command line, in the device tree's /chosen/bootargs", "")
  .option("--sbi", "be the SBI firmware: start the kernel in S-mode at 0x80200000")
  .option("--timeout <seconds>", "stop the guest after this long (exit status 124)")
  .option("--save <file>", "save the whole VM to this file on SIGUSR1 (or --save-after), then exit")
  .option("--save-after <ms>", "with --save: save after this many milliseconds of guest time")
  .option("--restore <file>", "continue a VM saved with --save")
  .option("--stats", "print instructions retired, MIPS and exits on stderr at exit")
  .action(async (elf: string | undefined, options) => {
    process.exitCode = await runCommand(elf, options);
  });

registerOperatorCommands(program);

program
  .command("up")
  .description("start a local cluster: a nats-server and N fleetd nodes on loopback (Ctrl-C stops it)")
  .option("--nodes <n>", "number of nodes (1-9)", integer("--nodes", 1, 9), "3")
  .option("--dir <dir>", "data, logs and cluster.json", ".hyperfleet")
  .option("--memory-mib <mib>", "guest memory per node, MiB", integer("--memory-mib", 16, 2047), "512")
  .option("--prometheus", "also start Prometheus scraping every node (Debian's prometheus package)")
  .option("--prometheus-port <port>", "Prometheus's loopback port (implies --prometheus; 0: a free port)", integer("--prometheus-port", 0, 65535))
  .action(async (options: { nodes: string; dir: string; memoryMib: string; prometheus?: boolean; prometheusPort?: string }) => {
    process.exitCode = await (await import("./up.js")).upCommand(options);
  });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    // commander already printed its one-line message
    process.exitCode = e.exitCode === 0 ? 0 : 2;
  } else if (e instanceof UsageError) {
    process.stderr.write(`hyperfleet: ${e.message}\n`);
    process.exitCode = 2;
  } else {
    throw e;
  }
}
