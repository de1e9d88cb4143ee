/**
 * The same ELF on QEMU `virt -bios none` and on `hyperfleet run` must print the same console output:
 * the instruction-test guests and hello line for line, dirtier and cpubench but for their timing figures.
 * Both run as real processes, as a user would run them.
 */
import { describe, expect, it } from "vitest";
import { guest } from "./lib/paths.js";
import { hyperfleet, qemu, type ProcessResult } from "./lib/processes.js";

export const ISA_GUESTS = [
  "isa-alu", "isa-branch", "isa-mem", "isa-muldiv", "isa-amo", "isa-csr", "isa-trap", "isa-misaligned", "isa-sv32", "isa-irq",
];

function lines(output: string): string[] {
  return output.replace(/\r/g, "").split("\n").filter((l) => l.length > 0);
}

/** Drops the parenthesized timing figures that dirtier prints on its heartbeat lines. */
function withoutTimings(output: string): string[] {
  return lines(output).map((l) => l.replace(/\s*\([^)]*\)/g, ""));
}

async function both(name: string, options: { append?: string; mem?: string; smp?: number } = {}): Promise<[ProcessResult, ProcessResult]> {
  const elf = guest(name);
  const args = ["run", elf, "--timeout", "60", "--smp", String(options.smp ?? 1)];
  if (options.append) args.push("--append", options.append);
  if (options.mem) args.push("--mem", options.mem);
  return Promise.all([qemu(elf, options), hyperfleet(args)]);
}

describe("qemu-compare - same ELF, same console", () => {
  it.each(["hello", ...ISA_GUESTS])("%s prints the same lines and exits 0 on both", async (name) => {
    const [q, h] = await both(name, name === "hello" ? { append: "console=uart quiet=0" } : {});
    expect(q.code, `qemu stdout: ${q.stdout}\nstderr: ${q.stderr}`).toBe(0);
    expect(h.code, `hyperfleet stderr: ${h.stderr}`).toBe(0);
    expect(lines(h.stdout)).toEqual(lines(q.stdout));
    expect(lines(h.stdout).length).toBeGreaterThan(1);
  }, 90_000);

  it("dirtier prints the same heartbeats but for timing figures", async () => {
    const [q, h] = await both("dirtier", { append: "rate=2000 ws=4 seconds=3" });
    expect(q.code).toBe(0);
    expect(h.code, h.stderr).toBe(0);
    const expected = withoutTimings(q.stdout);
    expect(withoutTimings(h.stdout)).toEqual(expected);
    expect(expected).toContain("dirtier: heartbeat 3");
    expect(expected.at(-1)).toBe("dirtier: done");
  }, 90_000);

  it("dirtier at max speed prints the same heartbeats but for timing figures", async () => {
    const [q, h] = await both("dirtier", { append: "rate=max ws=8 seconds=2" });
    expect(q.code).toBe(0);
    expect(h.code, h.stderr).toBe(0);
    expect(withoutTimings(h.stdout)).toEqual(withoutTimings(q.stdout));
  }, 90_000);

  it.each([1, 2, 4])("smp-counter on %i vCPUs: atomics, LR/SC and a lock across harts, IPIs through the CLINT", async (smp) => {
    const [q, h] = await both("smp-counter", { smp, append: "iters=20000" });
    expect(q.code, q.stdout).toBe(0);
    expect(h.code, h.stderr).toBe(0);
    expect(lines(h.stdout)).toEqual(lines(q.stdout));
    expect(lines(h.stdout)).toContain(`smp-counter: amoadd total ${smp * 20000} ok`);
    expect(lines(h.stdout).at(-1)).toBe("smp-counter: PASS");
  }, 90_000);

  it("cpubench computes the same checksum over the same instruction count", async () => {
    const [q, h] = await both("cpubench", { append: "iters=20000" });
    expect(q.code).toBe(0);
    expect(h.code, h.stderr).toBe(0);
    const first = (out: string) => lines(out).find((l) => l.startsWith("cpubench: iters="));
    expect(first(h.stdout)).toBeDefined();
    expect(first(h.stdout)).toBe(first(q.stdout));
  }, 90_000);
});
