/**
 * Drives a Partition in real time on the Node event loop: batches of instructions, a yield to I/O every
 * few milliseconds, and real sleeps while every hart waits in WFI. The only place here that uses timers.
 */
import { TICKS_PER_MS } from "../clock.js";
import type { Halt, Partition } from "../partition.js";

export interface RunOptions {
  /** Instructions per hart per batch. */
  batch?: number;
  /** Give the event loop a turn at least this often (ms of host time). */
  sliceMs?: number;
  /** Stop with code 124 after this much host time (ms). */
  timeoutMs?: number;
  /** Stop early when this signal aborts (code 130). */
  signal?: AbortSignal;
}

const now = (): number => performance.now();
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs until the guest halts (poweroff, tohost) or the timeout/signal stops it. */
export async function runPartition(partition: Partition, options: RunOptions = {}): Promise<Halt> {
  const batch = options.batch ?? 50_000;
  const sliceMs = options.sliceMs ?? 8;
  const deadline = options.timeoutMs === undefined ? Infinity : now() + options.timeoutMs;
  for (;;) {
    const sliceEnd = now() + sliceMs;
    let result = partition.step(batch);
    while (!result.idle && partition.halted === undefined && now() < sliceEnd) result = partition.step(batch);
    const { idle, wakeAtTicks } = result;
    const halt = partition.halted;
    if (halt !== undefined) return halt;
    if (options.signal?.aborted) {
      partition.stop({ code: 130, reason: "interrupted" });
      return partition.halted!;
    }
    if (now() >= deadline) {
      partition.stop({ code: 124, reason: `timed out after ${options.timeoutMs} ms` });
      return partition.halted!;
    }
    if (idle) {
      // Every hart waits for an interrupt: sleep until the next timer compare, in short naps so that
      // console input and signals are seen.
      const waitMs = (wakeAtTicks - partition.mtime()) / TICKS_PER_MS;
      await sleep(Math.max(0, Math.min(waitMs, 10)));
    } else {
      await tick();
    }
  }
}
