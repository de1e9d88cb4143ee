/** `hyperfleet run` as a user meets it: exit statuses, the tohost convention and one-line errors. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import * as asm from "../packages/riscv/test/asm.js";
import { writeElf } from "../packages/riscv/test/elf-writer.js";
import { guest } from "./lib/paths.js";
import { hyperfleet } from "./lib/processes.js";

const dir = mkdtempSync(join(tmpdir(), "hyperfleet-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

const RAM = 0x8000_0000;
const TOHOST = RAM + 0x1000;

/** A program that writes `value` to tohost and then spins. */
function tohostProgram(value: number): Uint8Array {
  return writeElf({
    entry: RAM,
    address: RAM,
    code: [...asm.li(5, TOHOST), ...asm.li(6, value), asm.sw(6, 5, 0), asm.jal(0, 0)],
    memSize: 0x1008,
    symbols: { tohost: TOHOST },
  });
}

function oneLine(stderr: string): string {
  const l = stderr.trim().split("\n");
  expect(l).toHaveLength(1);
  return l[0]!;
}

describe("cli-run - exit status", () => {
  it("tohost = 1 ends the run with status 0", async () => {
    const r = await hyperfleet(["run", file("pass.elf", tohostProgram(1)), "--timeout", "20"]);
    expect(r.code).toBe(0);
  });

  it("an odd tohost value ends the run with status 1 and names the failed test", async () => {
    const r = await hyperfleet(["run", file("fail.elf", tohostProgram((21 << 1) | 1)), "--timeout", "20"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("test 21 failed");
  });

  it("the test device's failure code becomes the exit status", async () => {
    const code = [...asm.li(5, 0x0010_0000), ...asm.li(6, (7 << 16) | 0x3333), asm.sw(6, 5, 0), asm.jal(0, 0)];
    const r = await hyperfleet(["run", file("poweroff.elf", writeElf({ entry: RAM, address: RAM, code })), "--timeout", "20"]);
    expect(r.code).toBe(7);
  });

  it("--timeout stops a guest that never ends, with status 124", async () => {
    const spin = writeElf({ entry: RAM, address: RAM, code: [asm.jal(0, 0)] });
    const r = await hyperfleet(["run", file("spin.elf", spin), "--timeout", "0.5"]);
    expect(r.code).toBe(124);
    expect(r.stderr).toContain("timed out");
  });

  it("--stats reports instructions and MIPS", async () => {
    const r = await hyperfleet(["run", guest("hello"), "--stats"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/\d+ instructions in [\d.]+ s \([\d.]+ MIPS\)/);
  });
});

describe("cli-run - bad input gets one line naming the problem and a non-zero exit", () => {
  const hello = () => guest("hello");

  it("a truncated ELF", async () => {
    const bytes = new Uint8Array(await import("node:fs").then((fs) => fs.readFileSync(hello())));
    const r = await hyperfleet(["run", file("truncated.elf", bytes.subarray(0, 100))]);
    expect(r.code).not.toBe(0);
    expect(oneLine(r.stderr)).toMatch(/truncated/);
  });

  it("a file that is not an ELF", async () => {
    const r = await hyperfleet(["run", file("text.elf", new TextEncoder().encode("hello, world\n"))]);
    expect(r.code).not.toBe(0);
    expect(oneLine(r.stderr)).toMatch(/not an ELF/);
  });

  it("an ELF for another machine", async () => {
    const x86 = writeElf({ entry: RAM, address: RAM, code: [0], machine: 3 });
    const r = await hyperfleet(["run", file("x86.elf", x86)]);
    expect(r.code).not.toBe(0);
    expect(oneLine(r.stderr)).toMatch(/not a RISC-V ELF: machine 3 \(x86\)/);
  });

  it("a 64-bit ELF (the node binary itself)", async () => {
    const r = await hyperfleet(["run", process.execPath]);
    expect(r.code).not.toBe(0);
    expect(oneLine(r.stderr)).toMatch(/ELF64/);
  });

  it("an ELF that does not fit in RAM", async () => {
    const big = writeElf({ entry: RAM, address: RAM, code: [asm.jal(0, 0)], memSize: 200 * 2 ** 20 });
    const r = await hyperfleet(["run", file("big.elf", big), "--mem", "128M"]);
    expect(r.code).not.toBe(0);
    expect(oneLine(r.stderr)).toMatch(/does not fit in RAM .*128 MiB/);
  });

  it("an ELF loaded outside RAM", async () => {
    const low = writeElf({ entry: 0x1000, address: 0x1000, code: [asm.jal(0, 0)] });
    const r = await hyperfleet(["run", file("low.elf", low)]);
    expect(r.code).not.toBe(0);
    expect(oneLine(r.stderr)).toMatch(/does not fit in RAM/);
  });

  it("a missing file", async () => {
    const r = await hyperfleet(["run", join(dir, "nope.elf")]);
    expect(r.code).not.toBe(0);
    expect(oneLine(r.stderr)).toMatch(/cannot read .*nope\.elf: no such file/);
  });

  it("an unknown option", async () => {
    const r = await hyperfleet(["run", hello(), "--bogus"]);
    expect(r.code).not.toBe(0);
    expect(oneLine(r.stderr)).toMatch(/unknown option '--bogus'/);
  });

  it("an unknown command", async () => {
    const r = await hyperfleet(["fly"]);
    expect(r.code).not.toBe(0);
    expect(oneLine(r.stderr)).toMatch(/unknown command 'fly'/);
  });

  it("a bad memory size", async () => {
    const r = await hyperfleet(["run", hello(), "--mem", "lots"]);
    expect(r.code).not.toBe(0);
    expect(oneLine(r.stderr)).toMatch(/--mem: bad size "lots"/);
  });

  it("a memory size out of range", async () => {
    const r = await hyperfleet(["run", hello(), "--mem", "8G"]);
    expect(r.code).not.toBe(0);
    expect(oneLine(r.stderr)).toMatch(/memory size .* 1 MiB to 2 GiB/);
  });

  it("a bad hart count", async () => {
    const r = await hyperfleet(["run", hello(), "--smp", "9"]);
    expect(r.code).not.toBe(0);
    expect(oneLine(r.stderr)).toMatch(/--smp must be an integer from 1 to 4/);
  });
});
