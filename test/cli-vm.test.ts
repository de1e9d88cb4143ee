/** `hyperfleet run` features of a VM: SBI firmware mode, save and restore. */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { guest, ROOT } from "./lib/paths.js";
import { hyperfleet } from "./lib/processes.js";

const dir = mkdtempSync(join(tmpdir(), "hyperfleet-vm-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const expected = (name: string) => readFileSync(join(ROOT, "guests", "expected", `${name}.out`), "utf8").replace(/\nexit \d+\n?$/, "\n");

describe("cli-vm - SBI mode", () => {
  it.each([1, 4])("an S-mode kernel on the hypervisor's SBI, %i vCPUs: base, timer, HSM, IPI, console, reset", async (smp) => {
    const r = await hyperfleet(["run", "--sbi", "--smp", String(smp), guest("sbi-hello"), "--timeout", "60"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(expected(`sbi-hello-${smp}`));
  }, 90_000);

  it("a bare-metal ELF linked at 0x80000000 is refused in SBI mode with the reason", async () => {
    const r = await hyperfleet(["run", "--sbi", guest("hello")]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/SBI kernels load at 0x80200000/);
  });
});

describe("cli-vm - save and restore", () => {
  it("--save-after saves after that much guest time; --restore continues the console where it stopped", async () => {
    const file = join(dir, "dirtier.snap");
    const first = await hyperfleet(["run", guest("dirtier"), "--append", "rate=3000 ws=4 seconds=3", "--save", file, "--save-after", "1500"]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/saved the VM to .*dirtier\.snap \([\d.]+ MiB\) at 1\d{3} ms of guest time/);
    expect(first.stdout).toContain("dirtier: heartbeat 1");
    expect(first.stdout).not.toContain("heartbeat 2");
    expect(statSync(file).size).toBeGreaterThan(4 << 20); // the 4 MiB working set is in it
    const second = await hyperfleet(["run", "--restore", file, "--timeout", "60"]);
    expect(second.code, second.stderr).toBe(0);
    const all = (first.stdout + second.stdout).split("\n").filter((l) => l.startsWith("dirtier:"));
    expect(all.map((l) => l.replace(/ \(.*\)/, ""))).toEqual([
      "dirtier: rate=3000 pages/s, working set 4 MiB",
      "dirtier: heartbeat 1",
      "dirtier: heartbeat 2",
      "dirtier: heartbeat 3",
      "dirtier: done",
    ]);
  }, 90_000);

  it("SIGUSR1 saves the VM and exits", async () => {
    const file = join(dir, "usr1.snap");
    const { spawn } = await import("node:child_process");
    const child = spawn(process.execPath, [join(ROOT, "services/cli/dist/main.js"), "run", guest("dirtier"), "--append", "rate=1000 ws=1", "--save", file]);
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d));
    const out = await new Promise<number | null>((resolve) => {
      child.stdout.once("data", () => setTimeout(() => child.kill("SIGUSR1"), 200));
      const guard = setTimeout(() => child.kill("SIGKILL"), 30_000);
      child.on("close", (code) => {
        clearTimeout(guard);
        resolve(code);
      });
    });
    expect(out, err).toBe(0);
    expect(err).toMatch(/saved the VM/);
    expect(statSync(file).size).toBeGreaterThan(0);
  }, 60_000);

  it("a corrupt, truncated or foreign snapshot is refused with one line naming the problem", async () => {
    const file = join(dir, "base.snap");
    const made = await hyperfleet(["run", guest("dirtier"), "--append", "rate=1000 ws=1", "--save", file, "--save-after", "100"]);
    expect(made.code, made.stderr).toBe(0);
    const bytes = readFileSync(file);
    const cases: [string, Uint8Array, RegExp][] = [
      ["truncated", bytes.subarray(0, bytes.length - 5000), /truncated/],
      ["flipped", (() => { const b = Buffer.from(bytes); b[b.length >> 1]! ^= 1; return b; })(), /checksum mismatch/],
      ["newer", (() => { const b = Buffer.from(bytes); b.writeUInt16LE(9, 8); b.writeUInt16LE(0, 10); return b; })(), /format 9\.0 is not readable/],
      ["foreign", readFileSync(guest("hello")), /not a Hyperfleet snapshot/],
    ];
    for (const [name, data, message] of cases) {
      const path = join(dir, `${name}.snap`);
      writeFileSync(path, data);
      const r = await hyperfleet(["run", "--restore", path]);
      expect(r.code, name).toBe(2);
      expect(r.stderr.trim().split("\n"), name).toHaveLength(1);
      expect(r.stderr, name).toMatch(message);
    }
  }, 60_000);

  it("--save-after without --save, and an ELF with --restore, are usage errors", async () => {
    const a = await hyperfleet(["run", guest("hello"), "--save-after", "10"]);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/--save-after needs --save FILE/);
    const b = await hyperfleet(["run", guest("hello"), "--restore", "x.snap"]);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/either an ELF or --restore/);
  });
});
