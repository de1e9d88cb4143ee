/**
 * The VM worker: one thread per running VM (Hyper-V's VMWP). It owns the partition's vCPUs and
 * devices and runs them in batches, between which it serves the root's commands from the control
 * block. Guest memory, the EPT and the dirty bitmap are shared with the root, which reads guest pages
 * while the vCPUs run.
 */
import { parentPort, workerData } from "node:worker_threads";
import { parseElf } from "@hyperfleet/riscv";
import { TICKS_PER_MS } from "../clock.js";
import { Ept } from "../ept.js";
import { FramePool } from "../frame-pool.js";
import { Partition, type Halt } from "../partition.js";
import { restorePartition, restorePartitionInto, savePartition } from "../saved-state.js";
import { concat } from "../snapshot.js";
import { systemClock } from "./system-clock.js";
import {
  ACK, ARGUMENT, COMMAND, Command, CONSOLE, LENGTH, REQUEST, RESULT, STATE, VMBUS_GENERATION, VMBUS_INTERRUPTS, VMBUS_SIGNALS,
  VMBUS_TABLE, WorkerState,
  type RootMessage, type VmStats, type VmWorkerData, type WorkerMessage,
} from "./vm-protocol.js";

/**
 * A spare's idle time, spent where a VM would otherwise wait: building a partition and saving and
 * restoring its state, on a small throwaway one, so that this code is compiled before the spare
 * becomes a VM (measured on an incoming migration's worker: partition 3.7 ms, five state restores
 * 7.2 ms when cold, all between the destination's admission and its Standby).
 */
function warmUp(): void {
  warmSwitchover(new Partition({ memoryBytes: 2 ** 20, vcpus: 1, boot: "bare", bootargs: "", clock: systemClock }));
}

/** Freezes `p`'s time, then saves its state and restores it into `p` five times (the switchover's paths). */
function warmSwitchover(p: Partition): void {
  p.freezeTime();
  const state = concat(savePartition(p, { memory: false }));
  for (let i = 0; i < 5; i++) restorePartitionInto(p, state, { memoryInPlace: true, paused: true });
}

/** A spare worker (see SpareWorkers) gets its VM's data as its first message. */
const data: VmWorkerData =
  (workerData as { spare?: boolean } | null)?.spare === true
    ? await new Promise<VmWorkerData>((resolve) => {
        parentPort!.once("message", (m: { type: "boot"; data: VmWorkerData }) => resolve(m.data));
        warmUp();
        parentPort!.postMessage({ type: "loaded" } satisfies WorkerMessage);
      })
    : (workerData as VmWorkerData);
const port = parentPort!;
const control = new Int32Array(data.control);
const dirtyOut = new Int32Array(data.dirtyOut);
const stateBytes = new Uint8Array(data.stateBuffer);
const stamp = new Float64Array(data.stamp);
const fence = new Float64Array(data.fence);
const vmbus = new Int32Array(data.vmbus);
/** Past the root's fence: the vCPUs must not run now (the node may have lost its right to run them). */
function fenced(): boolean {
  const until = fence[0]!;
  return until > 0 && Date.now() >= until;
}
/** Milliseconds since the epoch, comparable with the root thread's (see the Stamp in vm-protocol.ts). */
const epochNow = (): number => performance.timeOrigin + performance.now();
const post = (m: WorkerMessage, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);

const pool = new FramePool(data.pool);
const ept = new Ept(data.ept);
const onConsole = (bytes: Uint8Array): void => {
  Atomics.add(control, CONSOLE, 1);
  post({ type: "console", bytes }, [bytes.buffer as ArrayBuffer]);
};
let partition!: Partition;

function build(): void {
  if (data.awaitState === true) {
    // The state comes later (an incoming migration's switchover): build the partition now and warm
    // the restore path on it, so that the switchover only applies vCPU and device state.
    partition = new Partition({
      memoryBytes: data.memoryBytes, vcpus: data.vcpus, boot: data.boot, bootargs: data.bootargs, clock: systemClock, pool, ept, onConsole,
      offers: data.offers,
    });
    warmSwitchover(partition);
  } else if (data.snapshot !== undefined) {
    partition = restorePartition(data.snapshot, {
      clock: systemClock, pool, ept, onConsole, memoryInPlace: data.memoryInPlace, paused: data.startPaused === true,
    });
  } else {
    partition = new Partition({
      memoryBytes: data.memoryBytes,
      vcpus: data.vcpus,
      boot: data.boot,
      bootargs: data.bootargs,
      clock: systemClock,
      pool,
      ept,
      onConsole,
      offers: data.offers,
    });
    partition.load(parseElf(data.image!));
  }
}

/** With awaitState: the "restore" message's state, once it comes (the Restore command is the other way). */
let stateMessage: { id: number; snapshot: Uint8Array } | undefined;
let awaiting = data.awaitState === true;

try {
  build();
} catch (e) {
  post({ type: "error", message: (e as Error).message });
  process.exit(1);
}

/** The channel table for the root, then a word to say it changed. */
function publishChannels(): void {
  const open = new Map(partition.synic.channels.map((c) => [c.channel, c]));
  Atomics.add(vmbus, VMBUS_GENERATION, 1); // odd while the table is being written
  for (let c = 0; c < 32; c++) {
    const o = open.get(c);
    Atomics.store(vmbus, VMBUS_TABLE + 2 * c, o === undefined ? 0 : o.ringGpa | 0);
    Atomics.store(vmbus, VMBUS_TABLE + 2 * c + 1, o === undefined ? 0 : o.ringPages);
  }
  Atomics.add(vmbus, VMBUS_GENERATION, 1);
  post({ type: "vmbus" });
}
partition.synic.onChannels = publishChannels;
partition.synic.onSignal = (channel) => {
  // one message for any number of signals until the root takes them
  if (Atomics.or(vmbus, VMBUS_SIGNALS, 1 << channel) === 0) post({ type: "vmbus" });
};
if (partition.synic.channels.length > 0) publishChannels();
/** Brings the root's VMBus interrupts into the guest (between batches). */
function deliverInterrupts(): void {
  if (Atomics.load(vmbus, VMBUS_INTERRUPTS) === 0) return;
  partition.synic.interrupt(Atomics.exchange(vmbus, VMBUS_INTERRUPTS, 0));
}

const batch = data.batch ?? 20_000;
let pauseAtTicks = data.pauseAtTicks;

/** The guest reached `pauseAtTicks`: pause as if the root had asked, and say so. */
function pauseItself(): void {
  pauseAtTicks = undefined;
  paused = true;
  partition.freezeTime();
  Atomics.store(control, STATE, WorkerState.Paused);
  Atomics.notify(control, STATE);
  post({ type: "paused", mtimeTicks: partition.mtime() });
}
let paused = data.startPaused === true;
/** Percent of wall time the vCPUs sit out (auto-converge of a migration that cannot keep up). */
let throttlePercent = 0;
let halt: Halt | undefined;

function stats(): VmStats {
  return { instructions: partition.instructions, exits: { ...partition.exits }, mtimeTicks: partition.mtime(), throttlePercent };
}

/** Writes the vCPU and device state to the state buffer; returns its length, or minus the length needed. */
function saveToBuffer(): number {
  const chunks = savePartition(partition, { memory: false });
  let n = 0;
  for (const c of chunks) n += c.length;
  if (n > stateBytes.length) return -n;
  let o = 0;
  for (const c of chunks) {
    stateBytes.set(c, o);
    o += c.length;
  }
  return n;
}

/** A command failed: its reason goes to the state buffer (LENGTH bytes of UTF-8) for the root to read. */
function failure(reason: string): number {
  const { written } = new TextEncoder().encodeInto(reason, stateBytes);
  Atomics.store(control, LENGTH, written);
  return 1;
}

/** Serves a pending command, if any. Returns after acknowledging it. */
function serveCommand(): void {
  const request = Atomics.load(control, REQUEST);
  if (request === Atomics.load(control, ACK)) return;
  const command = Atomics.load(control, COMMAND) as Command;
  let result = 0;
  let at = 0;
  switch (command) {
    case Command.Pause:
      at = epochNow(); // the vCPUs stand still from here
      paused = true;
      partition.freezeTime();
      Atomics.store(control, STATE, WorkerState.Paused);
      break;
    case Command.Freeze:
      at = epochNow();
      paused = true;
      partition.freezeTime();
      Atomics.store(control, STATE, WorkerState.Paused);
      dirtyOut.set(partition.getAndClearDirtyLog());
      try {
        Atomics.store(control, LENGTH, saveToBuffer());
      } catch (e) {
        result = failure(`saving the state failed: ${(e as Error).message}`);
      }
      break;
    case Command.Restore:
      result = failure("the VM worker already has its VM");
      break;
    case Command.Resume:
      paused = false;
      partition.thawTime();
      Atomics.store(control, STATE, WorkerState.Running);
      at = epochNow(); // running from here
      break;
    case Command.Stop:
      partition.stop({ code: Atomics.load(control, ARGUMENT), reason: "stopped by the root" });
      break;
    case Command.DirtySync: {
      const bitmap = partition.getAndClearDirtyLog();
      dirtyOut.set(bitmap);
      break;
    }
    case Command.DirtyStart:
      partition.startDirtyLog();
      // A migration begins: run the save path a few times now, so that its stop-and-copy (Freeze)
      // does not pay for compiling it while the vCPUs stand still.
      for (let i = 0; i < 5; i++) savePartition(partition, { memory: false });
      break;
    case Command.DirtyStop:
      partition.stopDirtyLog();
      break;
    case Command.Throttle:
      throttlePercent = Math.max(0, Math.min(99, Atomics.load(control, ARGUMENT)));
      break;
  }
  stamp[0] = at !== 0 ? at : epochNow();
  Atomics.store(control, RESULT, result);
  Atomics.store(control, ACK, request);
  Atomics.notify(control, ACK);
}

port.on("message", (m: RootMessage) => {
  if (m.type === "restore") {
    if (awaiting) stateMessage = m;
    else post({ type: "error", id: m.id, message: "the VM worker already has its VM" });
    return;
  }
  if (partition === undefined) {
    if ("id" in m) post({ type: "error", id: m.id, message: "the VM has no state yet" });
    return;
  }
  switch (m.type) {
    case "input":
      partition.consoleInput(m.bytes);
      break;
    case "save":
      if (!paused) {
        post({ type: "error", id: m.id, message: "save needs a paused VM" });
        break;
      }
      try {
        const chunks = savePartition(partition, { memory: m.memory });
        post({ type: "saved", id: m.id, chunks }, chunks.map((c) => c.buffer as ArrayBuffer).filter(uniqueBuffers()));
      } catch (e) {
        post({ type: "error", id: m.id, message: (e as Error).message });
      }
      break;
    case "stats":
      post({ type: "stats", id: m.id, stats: stats() });
      break;
  }
});

function uniqueBuffers(): (b: ArrayBuffer) => boolean {
  const seen = new Set<ArrayBuffer>();
  return (b) => {
    if (seen.has(b) || b instanceof SharedArrayBuffer) return false;
    seen.add(b);
    return true;
  };
}

let lastTick = 0;
/** A turn of the event loop (messages from the root come in then). */
const tick = (): Promise<void> => {
  lastTick = performance.now();
  return new Promise((resolve) => setImmediate(resolve));
};

/**
 * Waits until the root posts a command or `ms` pass. The wait blocks the thread (a futex wait, woken
 * by the root's notify: the quickest way for a command to reach an idle or paused VM); messages get
 * their turn when it times out, so at most `ms` later.
 */
async function waitForCommand(ms: number): Promise<void> {
  const seen = Atomics.load(control, REQUEST);
  if (seen !== Atomics.load(control, ACK)) return;
  // Woken by a command: serve it first, unless messages have waited long (commands in a row)
  if (ms > 0 && Atomics.wait(control, REQUEST, seen, ms) !== "timed-out" && performance.now() - lastTick < 10) return;
  await tick(); // let messages in too
}

/**
 * An incoming migration's worker: waits for its vCPU and device state, by the Restore command (the
 * state buffer) or a "restore" message (state too big for the buffer), restores it paused and says so.
 */
async function awaitState(): Promise<void> {
  // paused with its state, before the root hears of it
  const restored = (): void => {
    paused = true;
    partition.freezeTime();
    Atomics.store(control, STATE, WorkerState.Paused);
  };
  for (;;) {
    const request = Atomics.load(control, REQUEST);
    if (request !== Atomics.load(control, ACK)) {
      const command = Atomics.load(control, COMMAND) as Command;
      let result = 0;
      if (command === Command.Restore) {
        const length = Atomics.load(control, ARGUMENT);
        try {
          restorePartitionInto(partition, stateBytes.slice(0, length), { memoryInPlace: true, paused: true });
          restored();
        } catch (e) {
          result = failure(`restoring the state failed: ${(e as Error).message}`);
        }
      } else {
        result = failure("the VM has no state yet");
      }
      stamp[0] = epochNow();
      Atomics.store(control, RESULT, result);
      Atomics.store(control, ACK, request);
      Atomics.notify(control, ACK);
      if (result === 0 && command === Command.Restore) {
        awaiting = false;
        return;
      }
      continue;
    }
    const m = stateMessage;
    if (m !== undefined) {
      stateMessage = undefined;
      try {
        restorePartitionInto(partition, m.snapshot, { memoryInPlace: true, paused: true });
        restored();
      } catch (e) {
        post({ type: "error", id: m.id, message: (e as Error).message });
        continue;
      }
      awaiting = false;
      post({ type: "restored", id: m.id });
      return;
    }
    await waitForCommand(20);
  }
}

async function main(): Promise<void> {
  if (data.awaitState === true) {
    post({ type: "ready" });
    await awaitState();
  } else {
    Atomics.store(control, STATE, paused ? WorkerState.Paused : WorkerState.Running);
    if (paused) partition.freezeTime();
    post({ type: "ready" });
  }
  const sliceMs = 4;
  for (;;) {
    serveCommand();
    if (partition.halted !== undefined) break;
    if (paused || fenced()) {
      await waitForCommand(10);
      continue;
    }
    const sliceEnd = performance.now() + sliceMs;
    deliverInterrupts();
    let result = partition.step(batch);
    for (;;) {
      serveCommand();
      if (pauseAtTicks !== undefined && partition.mtime() >= pauseAtTicks) pauseItself();
      if (paused || result.idle || partition.halted !== undefined || performance.now() >= sliceEnd || fenced()) break;
      deliverInterrupts();
      result = partition.step(batch);
    }
    if (partition.halted !== undefined) break;
    if (!paused && result.idle) {
      const wakeAt = Math.min(result.wakeAtTicks, pauseAtTicks ?? Infinity);
      const waitMs = (wakeAt - partition.mtime()) / TICKS_PER_MS;
      await waitForCommand(Math.max(0, Math.min(waitMs, 10)));
    } else if (!paused && throttlePercent > 0) {
      // Throttled: sit out so that running takes (100 - t)% of wall time; commands still wake us.
      await waitForCommand((sliceMs * throttlePercent) / (100 - throttlePercent));
    } else {
      await tick();
    }
  }
  halt = partition.halted!;
  partition.flushConsole();
  Atomics.store(control, STATE, WorkerState.Halted);
  Atomics.notify(control, STATE);
  post({ type: "halted", halt, stats: stats() });
  port.close(); // nothing more to say or hear: the thread ends once the message is out
}

main().catch((e: unknown) => {
  post({ type: "error", message: (e as Error).stack ?? String(e) });
  process.exit(1);
});
