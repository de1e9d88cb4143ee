/**
 * The external checker of the chaos suite: pure functions over what the harness collected — every
 * node's run records, when each fleetd process died, the cluster's view of its VMs and what the
 * probe guests printed about their disks. It never trusts fleetd's own claims about safety:
 *
 *  1. no-overlap: no VM ran on two nodes at once. A run lasts from its `start` record to the earliest
 *     of its `stop`, its last fence (`max(atMs, untilMs)` of the last `fence` record) and the death of
 *     the process that wrote it (its exit as the harness saw it, else the next `boot` on that node,
 *     else "now": it may still run).
 *  2. accepted: every VM the cluster accepted still exists and is running on its owner, or pending
 *     (no owner) with a reason; a running VM has a run open on its owner at its epoch, and no other
 *     node has a run of it open.
 *  3. disk: a probe guest's disk keeps what it had written: after a restart its boot check verifies
 *     records up to at least the last record it printed before the fault, all of them present
 *     (count = min(2000, last)), and nothing it prints says CORRUPT or a disk error.
 */
import type { RunRecord } from "../../services/fleetd/src/run-records.js";

export interface RunInterval {
  readonly vm: string;
  readonly epoch: number;
  readonly node: string;
  readonly pid: number;
  readonly startMs: number;
  readonly endMs: number;
  /** True when nothing bounds the run yet: it may still be going on. */
  readonly open: boolean;
  readonly why: string;
  readonly endWhy: string;
}

export interface Violation {
  readonly rule: "no-overlap" | "accepted" | "disk";
  readonly vm: string;
  readonly message: string;
}

/** The runs the records describe; `deaths` maps a pid to when its process was seen gone. */
export function runIntervals(records: readonly RunRecord[], deaths: ReadonlyMap<number, number>, nowMs: number): RunInterval[] {
  const out: RunInterval[] = [];
  const byNode = new Map<string, RunRecord[]>();
  for (const r of records) {
    let list = byNode.get(r.node);
    if (list === undefined) byNode.set(r.node, (list = []));
    list.push(r);
  }
  for (const [node, list] of byNode) {
    type Open = { vm: string; epoch: number; pid: number; startMs: number; why: string; fenceBoundMs: number };
    let open = new Map<string, Open>();
    const close = (o: Open, endMs: number, endWhy: string, stillOpen: boolean): void => {
      const bounded = Math.min(endMs, o.fenceBoundMs);
      out.push({
        vm: o.vm, epoch: o.epoch, node, pid: o.pid, startMs: o.startMs, endMs: Math.max(o.startMs, bounded), open: stillOpen && o.fenceBoundMs >= endMs,
        why: o.why, endWhy: bounded < endMs ? "fence" : endWhy,
      });
    };
    const endProcess = (pid: number, nextBootMs: number | null): void => {
      const died = deaths.get(pid);
      for (const o of open.values()) {
        if (o.pid !== pid) continue;
        if (died !== undefined) close(o, died, "process died", false);
        else if (nextBootMs !== null) close(o, nextBootMs, "node restarted", false);
        else close(o, nowMs, "open", true);
      }
      open = new Map([...open].filter(([, o]) => o.pid !== pid));
    };
    let pid: number | null = null;
    for (const r of list) {
      if (r.t === "boot") {
        if (pid !== null) endProcess(pid, r.atMs);
        pid = r.pid;
        continue;
      }
      if (r.t === "start") {
        const was = open.get(r.vm);
        if (was !== undefined) close(was, r.atMs, "restarted", false);
        open.set(r.vm, { vm: r.vm, epoch: r.epoch, pid: r.pid, startMs: r.atMs, why: r.why, fenceBoundMs: Infinity });
      } else if (r.t === "fence") {
        const o = open.get(r.vm);
        if (o !== undefined) o.fenceBoundMs = Math.max(r.atMs, r.untilMs);
      } else {
        const o = open.get(r.vm);
        if (o !== undefined) {
          close(o, r.atMs, r.why, false);
          open.delete(r.vm);
        }
      }
    }
    if (pid !== null) endProcess(pid, null);
    for (const o of open.values()) close(o, deaths.get(o.pid) ?? nowMs, deaths.has(o.pid) ? "process died" : "open", !deaths.has(o.pid));
  }
  return out;
}

function span(r: RunInterval): string {
  return `${r.node} (pid ${r.pid}, epoch ${r.epoch}, ${r.why}) from ${new Date(r.startMs).toISOString()} for ${r.endMs - r.startMs} ms (${r.endWhy})`;
}

/** Rule 1: pairs of runs of one VM, by different processes, that overlap in time. */
export function checkNoOverlap(runs: readonly RunInterval[]): Violation[] {
  const byVm = new Map<string, RunInterval[]>();
  for (const r of runs) {
    let list = byVm.get(r.vm);
    if (list === undefined) byVm.set(r.vm, (list = []));
    list.push(r);
  }
  const out: Violation[] = [];
  for (const [vm, list] of byVm) {
    list.sort((a, b) => a.startMs - b.startMs);
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length && list[j]!.startMs < list[i]!.endMs; j++) {
        const a = list[i]!;
        const b = list[j]!;
        if (a.node === b.node && a.pid === b.pid) continue;
        const overlapMs = Math.min(a.endMs, b.endMs) - b.startMs;
        if (overlapMs <= 0) continue;
        out.push({ rule: "no-overlap", vm, message: `vm ${vm} ran on two nodes at once for ${overlapMs} ms: ${span(a)} and ${span(b)}` });
      }
    }
  }
  return out;
}

/**
 * The closest hand-over: the least time between the end of a VM's run on one node and the start of
 * its next run on another, over runs that start from `sinceMs` on (null when there was none). A
 * measure of the safety margin left, not a rule.
 */
export function closestHandoverMs(runs: readonly RunInterval[], sinceMs: number): number | null {
  let best: number | null = null;
  const byVm = new Map<string, RunInterval[]>();
  for (const r of runs) byVm.set(r.vm, [...(byVm.get(r.vm) ?? []), r]);
  for (const list of byVm.values()) {
    list.sort((a, b) => a.startMs - b.startMs);
    for (let i = 1; i < list.length; i++) {
      const b = list[i]!;
      if (b.startMs < sinceMs) continue;
      // the latest-ending earlier run on another node
      const ends = list.slice(0, i).filter((a) => a.node !== b.node).map((a) => a.endMs);
      if (ends.length === 0) continue;
      const gap = b.startMs - Math.max(...ends);
      if (best === null || gap < best) best = gap;
    }
  }
  return best;
}

/** What the cluster says of one VM (the API's view, reduced). */
export interface VmView {
  readonly name: string;
  readonly state: string;
  readonly owner: string;
  readonly epoch: number;
  readonly pendingReason: string;
}

/** Rule 2: `accepted` VMs exist and are running on their owner, or pending with a reason. */
export function checkAccepted(accepted: readonly string[], views: readonly VmView[], runs: readonly RunInterval[]): Violation[] {
  const out: Violation[] = [];
  for (const name of accepted) {
    const v = views.find((x) => x.name === name);
    if (v === undefined) {
      out.push({ rule: "accepted", vm: name, message: `vm ${name} was accepted but the cluster no longer knows it (lost)` });
      continue;
    }
    const openRuns = runs.filter((r) => r.vm === name && r.open);
    if (v.owner === "") {
      if (v.pendingReason === "") out.push({ rule: "accepted", vm: name, message: `vm ${name} has no owner and no pending reason (lost)` });
    } else if (v.state !== "VM_STATE_RUNNING") {
      out.push({ rule: "accepted", vm: name, message: `vm ${name} is ${v.state} on ${v.owner} (epoch ${v.epoch}), neither running nor pending` });
    } else if (!openRuns.some((r) => r.node === v.owner && r.epoch === v.epoch)) {
      out.push({ rule: "accepted", vm: name, message: `vm ${name} is reported running on ${v.owner} at epoch ${v.epoch}, but no run is open there` });
    }
    for (const r of openRuns) {
      if (r.node !== v.owner || r.epoch !== v.epoch) out.push({ rule: "accepted", vm: name, message: `vm ${name} belongs to ${v.owner || "no node"} (epoch ${v.epoch}) but may still run on ${span(r)}` });
    }
  }
  return out;
}

/** What one look at a probe guest's console (the history of its current run) showed. */
export interface DiskView {
  /** `disk: verified <count> records up to <last>` of the boot in this history, if any. */
  readonly verified: { readonly count: number; readonly upTo: number } | null;
  /** The last `disk: record <n>` in this history, if any. */
  readonly lastRecord: number | null;
  readonly corrupt: boolean;
}

/** The probe's disk lines in a console text. */
export function parseDiskView(text: string): DiskView {
  const verified = [...text.matchAll(/disk: verified (\d+) records up to (\d+)/g)].at(-1);
  const records = [...text.matchAll(/disk: record (\d+)/g)].map((m) => Number(m[1]));
  return {
    verified: verified === undefined ? null : { count: Number(verified[1]), upTo: Number(verified[2]) },
    lastRecord: records.length === 0 ? null : Math.max(...records),
    corrupt: /CORRUPT|disk: error/.test(text),
  };
}

/** Records a probe keeps on its disk (the ring of record sectors). */
export const PROBE_RECORDS_KEPT = 2000;

/** Rule 3: `floor` is the last record the probe printed before the fault (durable by then). */
export function checkDisk(vm: string, floor: number, view: DiskView): Violation[] {
  const out: Violation[] = [];
  if (view.corrupt) out.push({ rule: "disk", vm, message: `vm ${vm}: the probe reports a corrupt disk or a disk error` });
  if (view.verified !== null) {
    if (view.verified.upTo < floor) out.push({ rule: "disk", vm, message: `vm ${vm}: after the restart the disk holds records up to ${view.verified.upTo}, but ${floor} was written before the fault` });
    if (view.verified.count !== Math.min(PROBE_RECORDS_KEPT, view.verified.upTo)) {
      out.push({ rule: "disk", vm, message: `vm ${vm}: the boot check verified ${view.verified.count} records up to ${view.verified.upTo}: some are missing` });
    }
  } else if (view.lastRecord !== null && view.lastRecord < floor) {
    out.push({ rule: "disk", vm, message: `vm ${vm}: it writes record ${view.lastRecord} again, below ${floor} written before the fault` });
  }
  return out;
}
