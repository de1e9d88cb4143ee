/**
 * VM worker threads started ahead of need. Starting a worker thread loads and compiles the whole
 * hypervisor (~150-200 ms here); a spare has done that already and becomes a VM as soon as it gets
 * the VM's data, so a VM start or an incoming migration does not wait for it. After each `take()`
 * a new spare starts in the background once `refillDelayMs` have passed: the start-up takes a core
 * for that long, and at once it would compete with the VM that was just given its worker (an incoming
 * migration's switchover comes a few ms after the take: measured, its restore waited 1-8 ms behind
 * the new thread's start-up on two cores). A take that finds no spare starts a thread itself.
 * A spare counts as ready once its thread says it has loaded its code and run the partition build and
 * state save and restore paths once over (compiled before a VM needs them); a take prefers those.
 * Spares do not keep the process alive.
 */
import { Worker } from "node:worker_threads";
import type { WorkerMessage } from "./vm-protocol.js";

/** What a spare worker's `workerData` says; its first message then carries the VmWorkerData. */
export interface SpareWorkerData {
  spare: true;
}

const WORKER_URL = new URL("./vm-worker.js", import.meta.url);
/** Default wait from a take to its replacement's start (see the class). */
export const REFILL_DELAY_MS = 1000;

export class SpareWorkers {
  private readonly idle: Worker[] = [];
  /** The idle spares whose code has loaded (the rest are still starting). */
  private readonly loaded = new Set<Worker>();
  private readonly refills = new Set<NodeJS.Timeout>();
  private closed = false;

  /**
   * `count`: spares kept ready (0 turns the pool off: every take starts a thread then).
   * `refillDelayMs`: how long after a take its replacement starts.
   */
  constructor(
    readonly count = 1,
    readonly refillDelayMs = REFILL_DELAY_MS,
  ) {
    if (!Number.isInteger(count) || count < 0 || count > 16) throw new RangeError(`spare VM workers: count must be 0 to 16, got ${count}`);
    if (!Number.isFinite(refillDelayMs) || refillDelayMs < 0) throw new RangeError(`spare VM workers: refill delay must be 0 ms or more, got ${refillDelayMs}`);
    for (let i = 0; i < count; i++) this.spawn();
  }

  /** Spares ready now (their code loaded). */
  get ready(): number {
    return this.loaded.size;
  }

  /**
   * A started worker waiting for its VM's data (its first message), ref'd again for its owner: a
   * loaded spare if there is one, else one still starting, else a new thread.
   */
  take(): Worker {
    const i = this.idle.findIndex((w) => this.loaded.has(w));
    const worker = (i >= 0 ? this.idle.splice(i, 1)[0] : this.idle.shift()) ?? this.start();
    this.loaded.delete(worker);
    worker.removeAllListeners("exit");
    worker.removeAllListeners("error");
    worker.removeAllListeners("message");
    worker.ref();
    if (!this.closed) {
      const timer = setTimeout(() => {
        this.refills.delete(timer);
        if (!this.closed && this.idle.length < this.count) this.spawn();
      }, this.refillDelayMs);
      timer.unref();
      this.refills.add(timer);
    }
    return worker;
  }

  /** Stops the spares (a taken worker belongs to its VM and is not affected). */
  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.refills) clearTimeout(timer);
    this.refills.clear();
    const spares = this.idle.splice(0);
    this.loaded.clear();
    await Promise.all(spares.map((w) => w.terminate()));
  }

  private start(): Worker {
    const data: SpareWorkerData = { spare: true };
    return new Worker(WORKER_URL, { workerData: data });
  }

  private spawn(): void {
    const worker = this.start();
    worker.unref();
    // A spare that dies before use is dropped (and replaced once, on the next take).
    const drop = (): void => {
      const i = this.idle.indexOf(worker);
      if (i >= 0) this.idle.splice(i, 1);
      this.loaded.delete(worker);
    };
    worker.once("exit", drop);
    worker.once("error", drop);
    worker.once("message", (m: WorkerMessage) => {
      if (m.type === "loaded" && this.idle.includes(worker)) this.loaded.add(worker);
    });
    this.idle.push(worker);
  }
}
