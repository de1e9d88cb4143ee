/** The chaos checker on hand-made run records: it must see every kind of violation it claims to. */
import { describe, expect, it } from "vitest";
import type { RunRecord } from "../../services/fleetd/src/run-records.js";
import { checkAccepted, checkDisk, checkNoOverlap, closestHandoverMs, parseDiskView, runIntervals, type VmView } from "./checker.js";

const boot = (node: string, pid: number, atMs: number): RunRecord => ({ t: "boot", node, pid, atMs });
const start = (node: string, pid: number, atMs: number, vm: string, epoch: number): RunRecord => ({ t: "start", node, pid, atMs, vm, epoch, why: "boot" });
const fence = (node: string, pid: number, atMs: number, vm: string, untilMs: number): RunRecord => ({ t: "fence", node, pid, atMs, vm, untilMs });
const stop = (node: string, pid: number, atMs: number, vm: string): RunRecord => ({ t: "stop", node, pid, atMs, vm, why: "destroyed" });
const running = (name: string, owner: string, epoch: number): VmView => ({ name, state: "VM_STATE_RUNNING", owner, epoch, pendingReason: "" });

describe("chaos checker", () => {
  it("chaos checker - a clean failover (killed node, fenced run, restart elsewhere) has no violation", () => {
    const records = [
      boot("n1", 10, 0), start("n1", 10, 100, "a", 1), fence("n1", 10, 200, "a", 2500),
      boot("n2", 20, 0), start("n2", 20, 2900, "a", 2), fence("n2", 20, 3000, "a", 9000),
      boot("n3", 30, 0), start("n3", 30, 50, "b", 1), fence("n3", 30, 60, "b", 1500), // cut off: fenced at 1500
      start("n2", 20, 1900, "b", 2),
    ];
    const runs = runIntervals(records, new Map([[10, 2000]]), 5000);
    expect(checkNoOverlap(runs)).toEqual([]);
    expect(checkAccepted(["a", "b"], [running("a", "n2", 2), running("b", "n2", 2)], runs)).toEqual([]);
    // b: fenced on n3 at 1500, started on n2 at 1900
    expect(closestHandoverMs(runs, 0)).toBe(400);
    expect(closestHandoverMs(runs, 2000)).toBe(900);
  });

  it("chaos checker - reports a VM that ran on two nodes at once", () => {
    // n1 was killed at 3000, but n2 started the VM at 2900: 100 ms on both
    const records = [boot("n1", 10, 0), start("n1", 10, 100, "a", 1), boot("n2", 20, 0), start("n2", 20, 2900, "a", 2), stop("n2", 20, 4000, "a")];
    const v = checkNoOverlap(runIntervals(records, new Map([[10, 3000]]), 5000));
    expect(v).toHaveLength(1);
    expect(v[0]!.rule).toBe("no-overlap");
    expect(v[0]!.message).toMatch(/vm a ran on two nodes at once for 100 ms/);
  });

  it("chaos checker - a fence bounds a run, a later fence extends it, a restarted node ends its old process's runs", () => {
    const records = [
      boot("n1", 10, 0), start("n1", 10, 100, "a", 1), fence("n1", 10, 150, "a", 1000), fence("n1", 10, 900, "a", 3000),
      boot("n1", 11, 5000), // no death known for pid 10: its runs end when the node booted again
      boot("n2", 20, 0), start("n2", 20, 2000, "a", 2), stop("n2", 20, 2500, "a"),
    ];
    const v = checkNoOverlap(runIntervals(records, new Map(), 6000));
    expect(v.map((x) => x.message)).toEqual([expect.stringMatching(/for 500 ms/)]);
  });

  it("chaos checker - reports a lost VM, a VM neither running nor pending, and a copy that may still run", () => {
    const records = [boot("n1", 10, 0), start("n1", 10, 100, "b", 1), boot("n2", 20, 0), start("n2", 20, 200, "b", 2), start("n2", 20, 300, "c", 1)];
    const runs = runIntervals(records, new Map(), 1000);
    const views: VmView[] = [
      running("b", "n2", 2),
      { name: "c", state: "VM_STATE_STOPPED", owner: "n2", epoch: 1, pendingReason: "" },
      { name: "d", state: "VM_STATE_STOPPED", owner: "", epoch: 3, pendingReason: "" },
      { name: "e", state: "VM_STATE_STOPPED", owner: "", epoch: 3, pendingReason: "no node has 16 MiB free" },
      running("f", "n1", 4),
    ];
    const messages = checkAccepted(["a", "b", "c", "d", "e", "f"], views, runs).map((x) => x.message);
    expect(messages).toEqual([
      "vm a was accepted but the cluster no longer knows it (lost)",
      expect.stringMatching(/^vm b belongs to n2 \(epoch 2\) but may still run on n1/),
      "vm c is VM_STATE_STOPPED on n2 (epoch 1), neither running nor pending",
      "vm d has no owner and no pending reason (lost)",
      "vm f is reported running on n1 at epoch 4, but no run is open there",
    ]);
  });

  it("chaos checker - reports lost disk records, a missing record and a corrupt disk", () => {
    const fine = parseDiskView("disk: verified 140 records up to 140\ndisk: boot 2\ndisk: record 160\n");
    expect(checkDisk("p", 140, fine)).toEqual([]);
    const lost = parseDiskView("disk: verified 100 records up to 100\ndisk: boot 2\n");
    expect(checkDisk("p", 140, lost).map((v) => v.message)).toEqual([expect.stringMatching(/records up to 100, but 140 was written before the fault/)]);
    const holes = parseDiskView("disk: verified 139 records up to 140\n");
    expect(checkDisk("p", 140, holes).map((v) => v.message)).toEqual([expect.stringMatching(/some are missing/)]);
    const corrupt = parseDiskView("disk: CORRUPT record 17\ndisk: record 180\n");
    expect(checkDisk("p", 140, corrupt).map((v) => v.rule)).toEqual(["disk"]);
    const rewound = parseDiskView("disk: record 60\ndisk: record 80\n");
    expect(checkDisk("p", 140, rewound).map((v) => v.message)).toEqual([expect.stringMatching(/writes record 80 again, below 140/)]);
  });
});
