/**
 * VM worker threads started ahead of need. Starting a worker thread loads and compiles the whole
 * hypervisor (~150-200 ms here); a spare has done that already and becomes a VM as soon as it gets
 * the VM's data, so a VM start or an incoming migration does not wait for it. After each `take()`
 * a new spare starts in the background. Spares do not keep the process alive.
 */
import { Worker } from "node:worker_threads";

/** What a spare worker's `workerData` says; its first message then carries the VmWorkerData. */
export interface SpareWorkerData {
  spare: true;
}

const WORKER_URL = new URL("./vm-worker.js", import.meta.url);

export class SpareWorkers {
  private readonly idle: Worker[] = [];
  private closed = false;

  /** `count`: spares kept ready (0 turns the pool off: every take starts a thread then). */
  constructor(readonly count = 1) {
    if (!Number.isInteger(count) || count < 0 || count > 16) throw new RangeError(`spare VM workers: count must be 0 to 16, got ${count}`);
    for (let i = 0; i < count; i++) this.spawn();
  }

  /** Spares ready now. */
  get ready(): number {
    return this.idle.length;
  }

  /** A started worker waiting for its VM's data (its first message), ref'd again for its owner. */
  take(): Worker {
    const worker = this.idle.shift() ?? this.start();
    worker.removeAllListeners("exit");
    worker.removeAllListeners("error");
    worker.ref();
    if (!this.closed) this.spawn();
    return worker;
  }

  /** Stops the spares (a taken worker belongs to its VM and is not affected). */
  async close(): Promise<void> {
    this.closed = true;
    const spares = this.idle.splice(0);
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
    };
    worker.once("exit", drop);
    worker.once("error", drop);
    this.idle.push(worker);
  }
}
