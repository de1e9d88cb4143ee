import { MIP_SSIP, MIP_STIP, Priv } from "@hyperfleet/riscv";
import { describe, expect, it } from "vitest";
import { HartState, SBI_IMPL_ID, SBI_SPEC_VERSION, SbiError, SbiExtension } from "../src/hypercalls.js";
import { SBI_KERNEL_BASE } from "../src/partition.js";
import { asm, boot } from "./lib.js";

/** An S-mode kernel that makes the given SBI calls in order, saving (a0, a1) of call i in memory. */
function kernel(calls: { eid: number; fid: number; args?: number[] }[], vcpus = 1) {
  const results = SBI_KERNEL_BASE + 0x1_0000;
  const code: number[] = [...asm.li(20, results)];
  for (const c of calls) {
    (c.args ?? []).forEach((v, i) => code.push(...asm.li(10 + i, v)));
    code.push(...asm.li(17, c.eid), ...asm.li(16, c.fid), asm.ecall(), asm.sw(10, 20, 0), asm.sw(11, 20, 4), asm.addi(20, 20, 8));
  }
  code.push(asm.jal(0, 0));
  const b = boot(code, { memoryBytes: 8 << 20, boot: "sbi", address: SBI_KERNEL_BASE, vcpus, memSize: 0x2_0000 });
  const result = (i: number) => [b.p.guest.readU32(results + 8 * i) | 0, b.p.guest.readU32(results + 8 * i + 4) | 0];
  return { ...b, result };
}

describe("sbi - boot", () => {
  it("starts hart 0 in S-mode at the kernel with a0 = hart id and a1 = device tree; others stopped", () => {
    const { p } = kernel([], 3);
    const [h0, h1] = p.harts;
    expect(h0!.priv).toBe(Priv.S);
    expect(h0!.pc >>> 0).toBe(SBI_KERNEL_BASE);
    expect(h0!.x[11]! >>> 0).toBe(p.fdtAddress);
    expect(p.hartState(1)).toBe(HartState.Stopped);
    expect(h1!.instret).toBe(0);
    p.step(1000);
    expect(h1!.instret).toBe(0);
  });

  it("refuses an SBI kernel linked below 0x80200000", () => {
    expect(() => boot([asm.jal(0, 0)], { boot: "sbi" })).toThrow(/SBI kernels load at 0x80200000/);
  });

  it("a trap the kernel did not delegate away ends the VM with a reason, not a hang", () => {
    // Everything but ecall-from-S is delegated; undo that, then run an MRET, illegal in S-mode.
    const { p } = kernel([]);
    p.harts[0]!.medeleg = 0;
    p.guest.write(SBI_KERNEL_BASE + 8, Uint8Array.of(0x73, 0x00, 0x20, 0x30)); // mret
    p.step(100);
    expect(p.halted?.reason).toMatch(/trap to M-mode, which the hypervisor owns \(mcause 0x2, mepc 0x80200008/);
  });
});

describe("sbi - calls", () => {
  it("BASE answers version, implementation and probes", () => {
    const { p, result } = kernel([
      { eid: SbiExtension.Base, fid: 0 },
      { eid: SbiExtension.Base, fid: 1 },
      { eid: SbiExtension.Base, fid: 3, args: [SbiExtension.Hsm] },
      { eid: SbiExtension.Base, fid: 3, args: [0x12345] },
      { eid: 0x0a000000, fid: 0 },
    ]);
    p.step(2000);
    expect(result(0)).toEqual([0, SBI_SPEC_VERSION]);
    expect(result(1)).toEqual([0, SBI_IMPL_ID]);
    expect(result(2)).toEqual([0, 1]);
    expect(result(3)).toEqual([0, 0]);
    expect(result(4)[0]).toBe(SbiError.NotSupported);
  });

  it("TIME set_timer raises STIP at the compare and a later set clears it", () => {
    const { p, clock } = kernel([{ eid: SbiExtension.Time, fid: 0, args: [50_000, 0] }]);
    p.step(100);
    expect(p.harts[0]!.mip & MIP_STIP).toBe(0);
    clock.advance(5); // 50,000 ticks
    p.step(10);
    expect(p.harts[0]!.mip & MIP_STIP).toBe(MIP_STIP);
    p.setTimer(0, 2 ** 64);
    expect(p.harts[0]!.mip & MIP_STIP).toBe(0);
  });

  it("IPI send_ipi sets SSIP on the named harts only", () => {
    const { p, result } = kernel([{ eid: SbiExtension.Ipi, fid: 0, args: [0b101, 0] }], 3);
    p.step(200);
    expect(result(0)[0]).toBe(SbiError.Success);
    expect(p.harts.map((h) => (h.mipSoftware & MIP_SSIP) !== 0)).toEqual([true, false, true]);
  });

  it("IPI with a hart mask naming a missing hart is an invalid parameter", () => {
    const { p, result } = kernel([{ eid: SbiExtension.Ipi, fid: 0, args: [0b100, 0] }], 2);
    p.step(200);
    expect(result(0)[0]).toBe(SbiError.InvalidParam);
  });

  it("HSM starts a hart in S-mode at the given address with a0 = id and a1 = opaque", () => {
    const entry = SBI_KERNEL_BASE + 0x8000;
    const { p, result } = kernel(
      [
        { eid: SbiExtension.Hsm, fid: 2, args: [1] },
        { eid: SbiExtension.Hsm, fid: 0, args: [1, entry, 0x1234] },
        { eid: SbiExtension.Hsm, fid: 2, args: [1] },
        { eid: SbiExtension.Hsm, fid: 0, args: [1, entry, 0] },
      ],
      2,
    );
    p.guest.write(entry, Uint8Array.of(0x6f, 0, 0, 0)); // j .
    p.step(2000);
    expect(result(0)).toEqual([0, HartState.Stopped]);
    expect(result(1)[0]).toBe(SbiError.Success);
    expect(result(2)).toEqual([0, HartState.Started]);
    expect(result(3)[0]).toBe(SbiError.AlreadyAvailable);
    const h1 = p.harts[1]!;
    expect(h1.priv).toBe(Priv.S);
    expect(h1.x[10]).toBe(1);
    expect(h1.x[11]).toBe(0x1234);
    expect(h1.pc >>> 0).toBe(entry);
  });

  it("SRST shutdown ends the VM with the reason's status", () => {
    const ok = kernel([{ eid: SbiExtension.Srst, fid: 0, args: [0, 0] }]);
    ok.p.step(100);
    expect(ok.p.halted).toEqual({ code: 0, reason: "SBI shutdown" });
    const failed = kernel([{ eid: SbiExtension.Srst, fid: 0, args: [0, 1] }]);
    failed.p.step(100);
    expect(failed.p.halted?.code).toBe(1);
  });

  it("DBCN write_byte and the legacy putchar reach the console", () => {
    const { p, console } = kernel([
      { eid: SbiExtension.Dbcn, fid: 2, args: [0x41] },
      { eid: SbiExtension.LegacyConsolePutchar, fid: 0, args: [0x42] },
    ]);
    p.step(200);
    expect(console()).toBe("AB");
  });

  it("counts every call by extension", () => {
    const { p } = kernel([{ eid: SbiExtension.Base, fid: 0 }, { eid: SbiExtension.Base, fid: 1 }]);
    p.step(200);
    expect(p.exits.hypercall).toBe(2);
  });
});

describe("sbi - console input", () => {
  const buffer = SBI_KERNEL_BASE + 0x1_8000;

  it("DBCN console_read takes at most num_bytes into the caller's buffer", () => {
    const { p, result } = kernel([{ eid: SbiExtension.Dbcn, fid: 1, args: [2, buffer, 0] }]);
    p.consoleInput(new TextEncoder().encode("xyz"));
    p.step(200);
    expect(result(0)).toEqual([0, 2]);
    expect(new TextDecoder().decode(p.guest.read(buffer, 2))).toBe("xy");
    expect(p.consoleRead()).toBe("z".charCodeAt(0)); // the rest is still there
  });

  it("a bad buffer or a zero count consumes no input", () => {
    const { p, result } = kernel([
      { eid: SbiExtension.Dbcn, fid: 1, args: [4, 0x1000, 0] },
      { eid: SbiExtension.Dbcn, fid: 1, args: [0, buffer, 0] },
    ]);
    p.consoleInput(new TextEncoder().encode("q"));
    p.step(400);
    expect(result(0)[0]).toBe(SbiError.InvalidParam);
    expect(result(1)).toEqual([0, 0]);
    expect(p.consoleRead()).toBe("q".charCodeAt(0));
  });
});
