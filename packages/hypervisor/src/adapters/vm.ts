/**
 * The root's handle on a running VM: starts its VM worker thread and drives it (pause, resume, stop,
 * dirty logging, save), while guest memory stays readable from the root through the shared EPT.
 */
import { Worker } from "node:worker_threads";
import { TICKS_PER_MS } from "../clock.js";
import { Ept } from "../ept.js";
import type { FramePool } from "../frame-pool.js";
import type { SpareWorkers } from "./spare-workers.js";
import { GuestMemory } from "../guest-memory.js";
import { MemoryMap, type BootMode, type Halt } from "../partition.js";
import { concat, snapshotInfo } from "../snapshot.js";
import { MAX_CHANNELS, type Offer, type OpenChannel } from "../synic.js";
import {
  ACK, ARGUMENT, COMMAND, Command, CONSOLE, CONTROL_WORDS, LENGTH, REQUEST, RESULT, STATE, STATE_BUFFER_BYTES, VMBUS_GENERATION,
  VMBUS_INTERRUPTS, VMBUS_SIGNALS, VMBUS_TABLE, VMBUS_WORDS, waitAsync,
  type RootMessage, type VmStats, type VmWorkerData, type WorkerMessage, WorkerState,
} from "./vm-protocol.js";

export interface VmOptions {
  pool: FramePool;
  memoryBytes: number;
  vcpus?: number;
  boot?: BootMode;
  bootargs?: string;
  /** ELF bytes to boot, or a snapshot to continue (then memory size, vCPUs and boot come from it). */
  image?: Uint8Array;
  snapshot?: Uint8Array;
  /**
   * An EPT that already maps the guest's memory (frames of `pool`), for a VM whose memory arrived by
   * migration; `snapshot` then holds only vCPU and device state.
   */
  ept?: Ept;
  /**
   * Start the worker now, without a VM: it waits for `provideState()` (vCPU and device state; memory
   * already in `ept`). An incoming migration spawns its worker this way, before the downtime.
   */
  awaitState?: boolean;
  startPaused?: boolean;
  onConsole?: (bytes: Uint8Array) => void;
  /** The VMBus channels offered to the guest. */
  offers?: readonly Offer[];
  /** Instructions per vCPU per batch (smaller: quicker commands, more overhead). */
  batch?: number;
  /** Take an already started worker thread from these (saves its start-up). */
  spares?: SpareWorkers;
  /** Pause by itself once guest time reaches this (ms); `onPaused` hears of it. */
  pauseAtGuestMs?: number;
  onPaused?: (guestMs: number) => void;
}

/** How long a switchover command (freeze, restore, resume) may block the caller's thread before it waits on the event loop. */
const SWITCHOVER_SYNC_WAIT_MS = 5;

export class VmError extends Error {
  override readonly name = "VmError";
}

const now = (): number => performance.now();
/** Milliseconds since the epoch, comparable with the worker thread's stamp (see vm-protocol.ts). */
const epochNow = (): number => performance.timeOrigin + performance.now();

/** What `freeze()` took from the stopped VM. */
export interface FrozenVm {
  /** The dirty bitmap since the last sync (cleared). */
  dirty: Int32Array;
  /** The vCPU and device state (a snapshot without memory, as `save({ memory: false })` gives). */
  state: Uint8Array;
  /** From the call to the vCPUs standing still (the worker's own clock). */
  stoppedAfterMs: number;
}

export class VmWorker {
  readonly ept: Ept;
  readonly guest: GuestMemory;
  /** Resolves when the guest halts (power-off, reset failure, stop) or the worker dies. */
  readonly exited: Promise<Halt>;
  /** Statistics the worker sent with its halt. */
  finalStats: VmStats | undefined;
  private readonly worker: Worker;
  private readonly control: Int32Array;
  private readonly dirtyOut: Int32Array;
  private readonly stateBytes: Uint8Array;
  private readonly stamp: Float64Array;
  private readonly fenceAt: Float64Array;
  private readonly vmbus: Int32Array;
  private vmbusListener: () => void = () => {};
  private readonly pending = new Map<number, { resolve: (m: WorkerMessage) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private sequence = 0;
  /** Console messages received from the worker (it counts those it posted in the CONSOLE word). */
  private consoleReceived = 0;
  private consoleWaiters: (() => void)[] = [];
  private halted: Halt | undefined;
  /** Started with awaitState and given no state yet: no VM runs, the worker serves no commands. */
  private awaitingState: boolean;

  private constructor(options: VmOptions, memoryBytes: number, ready: (error?: Error) => void) {
    this.awaitingState = options.awaitState === true;
    const pages = memoryBytes / 4096;
    this.ept = options.ept ?? new Ept(pages);
    if (this.ept.pages !== pages) throw new VmError(`the EPT maps ${this.ept.pages} pages; the VM has ${pages}`);
    this.guest = new GuestMemory(options.pool, this.ept, MemoryMap.ram);
    this.control = new Int32Array(new SharedArrayBuffer(CONTROL_WORDS * 4));
    const dirtyShared = new SharedArrayBuffer(this.ept.dirty.byteLength);
    this.dirtyOut = new Int32Array(dirtyShared);
    this.stateBytes = new Uint8Array(new SharedArrayBuffer(STATE_BUFFER_BYTES));
    this.stamp = new Float64Array(new SharedArrayBuffer(8));
    this.fenceAt = new Float64Array(new SharedArrayBuffer(8));
    this.vmbus = new Int32Array(new SharedArrayBuffer(VMBUS_WORDS * 4));
    const data: VmWorkerData = {
      memoryBytes,
      vcpus: options.vcpus ?? 1,
      boot: options.boot ?? "bare",
      bootargs: options.bootargs ?? "",
      pool: options.pool.shared,
      ept: this.ept.shared,
      control: this.control.buffer as SharedArrayBuffer,
      dirtyOut: dirtyShared,
      stateBuffer: this.stateBytes.buffer as SharedArrayBuffer,
      stamp: this.stamp.buffer as SharedArrayBuffer,
      fence: this.fenceAt.buffer as SharedArrayBuffer,
      vmbus: this.vmbus.buffer as SharedArrayBuffer,
      offers: options.offers?.map((o) => ({ ...o })),
      image: options.image,
      snapshot: options.snapshot,
      memoryInPlace: options.ept !== undefined && options.snapshot !== undefined,
      awaitState: options.awaitState,
      startPaused: options.startPaused,
      batch: options.batch,
      pauseAtTicks: options.pauseAtGuestMs === undefined ? undefined : options.pauseAtGuestMs * TICKS_PER_MS,
    };
    if (options.spares !== undefined) {
      this.worker = options.spares.take();
      this.worker.postMessage({ type: "boot", data });
    } else {
      this.worker = new Worker(new URL("./vm-worker.js", import.meta.url), { workerData: data });
    }
    const onConsole = options.onConsole ?? (() => {});
    let settle: ((h: Halt) => void) | undefined;
    this.exited = new Promise<Halt>((resolve) => (settle = resolve));
    let started = false;
    this.worker.on("message", (m: WorkerMessage) => {
      switch (m.type) {
        case "loaded": // a spare taken before it had loaded says so on its way
          break;
        case "ready":
          started = true;
          ready();
          break;
        case "console":
          this.consoleReceived++;
          onConsole(m.bytes);
          if (this.consoleDelivered()) for (const w of this.consoleWaiters.splice(0)) w();
          break;
        case "vmbus":
          this.vmbusListener();
          break;
        case "paused":
          options.onPaused?.(m.mtimeTicks / TICKS_PER_MS);
          break;
        case "halted":
          this.halted = m.halt;
          this.finalStats = m.stats;
          break;
        case "error":
          if (m.id !== undefined) this.settle(m.id, undefined, new VmError(m.message));
          else if (!started) ready(new VmError(m.message));
          else this.halted ??= { code: 1, reason: `VM worker failed: ${m.message}` };
          break;
        default:
          this.settle(m.id, m);
      }
    });
    this.worker.on("error", (e) => {
      if (!started) ready(new VmError(e.message));
      this.halted ??= { code: 1, reason: `VM worker failed: ${e.message}` };
    });
    this.worker.on("exit", (code) => {
      const halt = this.halted ?? { code: code || 1, reason: `VM worker exited (${code})` };
      this.halted = halt;
      for (const p of this.pending.values()) p.reject(new VmError("the VM worker exited"));
      this.pending.clear();
      settle!(halt);
    });
  }

  /** Starts a VM worker; resolves once the VM is loaded and running (or paused, if asked). */
  static async start(options: VmOptions): Promise<VmWorker> {
    const memoryBytes = options.snapshot !== undefined ? snapshotMemoryBytes(options.snapshot) : options.memoryBytes;
    let vm!: VmWorker;
    await new Promise<void>((resolve, reject) => {
      vm = new VmWorker(options, memoryBytes, (error) => (error ? reject(error) : resolve()));
    });
    return vm;
  }

  get state(): WorkerState {
    return Atomics.load(this.control, STATE) as WorkerState;
  }

  /**
   * Stops every vCPU; resolves when they have all stopped. Returns how long after the call they
   * stopped (the worker's own clock; the return to the caller comes on top).
   */
  async pause(): Promise<number> {
    return (await this.command(Command.Pause)).servedAfterMs;
  }

  /**
   * Lets the vCPUs run again. Returns how long after the call they were running (the worker's own
   * clock); the wait is short and blocks the caller's thread for up to a few ms, so that a
   * migration's switchover does not wait for this thread's event loop as well.
   */
  async resume(): Promise<number> {
    return (await this.command(Command.Resume, 0, SWITCHOVER_SYNC_WAIT_MS)).servedAfterMs;
  }

  /**
   * A migration's stop-and-copy in one command: pauses the vCPUs, freezes guest time, takes and
   * clears the dirty log and saves the vCPU and device state, all in the worker at once, handed over
   * in shared memory (no message round trip). The dirty log must have been started.
   */
  async freeze(): Promise<FrozenVm> {
    const { servedAfterMs } = await this.command(Command.Freeze, 0, SWITCHOVER_SYNC_WAIT_MS);
    const dirty = this.dirtyOut.slice();
    const length = Atomics.load(this.control, LENGTH);
    // State bigger than the shared buffer: the VM is paused, so the message path gives the same state.
    const state = length >= 0 ? this.stateBytes.slice(0, length) : concat(await this.save({ memory: false }));
    return { dirty, state, stoppedAfterMs: servedAfterMs };
  }

  /**
   * Slows the vCPUs down: they sit out `percent` (0 to 99) of wall time, so a guest dirties memory
   * more slowly (a migration's auto-converge). 0 lets them run at full speed again.
   */
  async throttle(percent: number): Promise<void> {
    if (!Number.isInteger(percent) || percent < 0 || percent > 99) throw new VmError(`throttle: percent must be an integer from 0 to 99, got ${percent}`);
    await this.command(Command.Throttle, percent);
  }

  /**
   * VMBus: `listener` hears when the guest signalled a channel or opened or closed one (read them
   * with takeSignals and channels). One listener: the root's VMBus for this VM.
   */
  onVmBus(listener: () => void): void {
    this.vmbusListener = listener;
  }

  /** The channels the guest signalled since the last call (bit c = channel c), cleared. */
  takeSignals(): number {
    return Atomics.exchange(this.vmbus, VMBUS_SIGNALS, 0);
  }

  /** The open channels and where their rings are, as the worker last published them. */
  channels(): { generation: number; channels: OpenChannel[] } {
    for (;;) {
      const generation = Atomics.load(this.vmbus, VMBUS_GENERATION);
      if (generation & 1) continue; // the worker is writing it: a few stores
      const channels: OpenChannel[] = [];
      for (let c = 1; c < MAX_CHANNELS; c++) {
        const ringPages = Atomics.load(this.vmbus, VMBUS_TABLE + 2 * c + 1);
        if (ringPages !== 0) channels.push({ channel: c, ringGpa: Atomics.load(this.vmbus, VMBUS_TABLE + 2 * c) >>> 0, ringPages });
      }
      if (Atomics.load(this.vmbus, VMBUS_GENERATION) === generation) return { generation, channels };
    }
  }

  /** Tells the guest that channels in `mask` have news: event flags and the VMBus interrupt, between two batches. */
  interruptGuest(mask: number): void {
    if (mask === 0) return;
    Atomics.or(this.vmbus, VMBUS_INTERRUPTS, mask);
    Atomics.notify(this.control, REQUEST); // wakes an idle worker (a guest in WFI)
  }

  /** Halts the guest (exit code `code`) and waits for the worker to end. */
  async stop(code = 0): Promise<Halt> {
    if (this.awaitingState && this.halted === undefined) {
      // nothing runs yet: end the thread
      this.halted = { code, reason: "stopped before it had a VM" };
      await this.worker.terminate();
    } else if (this.halted === undefined) {
      // What a paused guest printed reaches the root before its thread ends
      if (this.state === WorkerState.Paused) await this.consoleSettled();
      await this.command(Command.Stop, code).catch(() => 0);
    }
    return this.exited;
  }

  /**
   * Resolves once every console message the worker has posted so far has reached `onConsole` (they
   * travel by message, behind the shared-memory commands), or after `timeoutMs`; returns whether
   * they all came. A migration's source calls it after the switchover, so the copy that stopped
   * has handed over all it printed.
   */
  async consoleSettled(timeoutMs = 500): Promise<boolean> {
    if (this.consoleDelivered()) return true;
    return new Promise<boolean>((resolve) => {
      const waiter = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.consoleWaiters = this.consoleWaiters.filter((w) => w !== waiter);
        resolve(this.consoleDelivered());
      }, timeoutMs);
      this.consoleWaiters.push(waiter);
    });
  }

  private consoleDelivered(): boolean {
    return this.consoleReceived >= Atomics.load(this.control, CONSOLE);
  }

  async startDirtyLog(): Promise<void> {
    await this.command(Command.DirtyStart);
  }

  async stopDirtyLog(): Promise<void> {
    await this.command(Command.DirtyStop);
  }

  /**
   * The pages dirtied since the last call (or since startDirtyLog), taken at a batch boundary of the
   * VM worker and cleared there. See Ept for the contract.
   */
  async getAndClearDirtyLog(): Promise<Int32Array> {
    await this.command(Command.DirtySync);
    return this.dirtyOut.slice();
  }

  /**
   * Saves the whole VM (it must be paused). Returns the snapshot as chunks to write in order. With
   * `memory: false`, only vCPU and device state (what a migration's State message carries).
   */
  async save(options: { memory?: boolean } = {}): Promise<Uint8Array[]> {
    const m = await this.request({ type: "save", id: this.nextId++, memory: options.memory !== false });
    if (m.type !== "saved") throw new VmError("unexpected reply to save");
    return m.chunks;
  }

  /**
   * Gives a worker started with `awaitState` its vCPU and device state; resolves once restored
   * (paused). State that fits the shared state buffer goes through it (one command); more by message.
   */
  async provideState(snapshot: Uint8Array): Promise<void> {
    if (snapshot.length <= this.stateBytes.length) {
      this.stateBytes.set(snapshot);
      await this.command(Command.Restore, snapshot.length, SWITCHOVER_SYNC_WAIT_MS);
    } else {
      const m = await this.request({ type: "restore", id: this.nextId++, snapshot });
      if (m.type !== "restored") throw new VmError("unexpected reply to restore");
    }
    this.awaitingState = false;
  }

  async stats(): Promise<VmStats> {
    const m = await this.request({ type: "stats", id: this.nextId++ });
    if (m.type !== "stats") throw new VmError("unexpected reply to stats");
    return m.stats;
  }

  /**
   * Fences the vCPUs at `untilMs` (wall clock, ms since the epoch): from then on they do not run until
   * the fence moves later again; `null` lifts it. A node sets it to the end of its lease (less a margin)
   * and moves it on each renewal, so a VM stops by itself when its node loses the right to run it, even
   * if the node's main thread is stuck. The worker checks it before every batch of instructions.
   */
  fence(untilMs: number | null): void {
    this.fenceAt[0] = untilMs ?? 0;
  }

  input(bytes: Uint8Array): void {
    this.post({ type: "input", bytes });
  }

  /**
   * Posts a control-block command and waits until the worker has done it: first blocking this thread
   * for up to `syncWaitMs` (a futex wait: the quickest wake-up), then on the event loop. Returns the
   * wait, and how long after posting the worker did the command (by its stamp). Throws VmError if the
   * worker says the command failed.
   */
  private async command(command: Command, argument = 0, syncWaitMs = 0): Promise<{ waitedMs: number; servedAfterMs: number }> {
    if (this.halted !== undefined) throw new VmError(`the VM has halted (${this.halted.reason})`);
    const started = now();
    const postedAt = epochNow();
    const seq = ++this.sequence;
    const done = (): { waitedMs: number; servedAfterMs: number } => {
      if (Atomics.load(this.control, RESULT) !== 0) {
        const length = Math.max(0, Math.min(Atomics.load(this.control, LENGTH), this.stateBytes.length));
        throw new VmError(new TextDecoder().decode(this.stateBytes.slice(0, length)) || "the VM worker refused the command");
      }
      return { waitedMs: now() - started, servedAfterMs: Math.max(0, this.stamp[0]! - postedAt) };
    };
    Atomics.store(this.control, COMMAND, command);
    Atomics.store(this.control, ARGUMENT, argument);
    Atomics.store(this.control, REQUEST, seq);
    Atomics.notify(this.control, REQUEST);
    const syncUntil = started + syncWaitMs;
    for (let left = syncWaitMs; left > 0; left = syncUntil - now()) {
      const ack = Atomics.load(this.control, ACK);
      if (ack === seq) return done();
      Atomics.wait(this.control, ACK, ack, left);
    }
    for (;;) {
      const ack = Atomics.load(this.control, ACK);
      if (ack === seq) return done();
      const halted = this.halted as Halt | undefined; // set by the worker's messages while we wait
      if (halted !== undefined) throw new VmError(`the VM halted (${halted.reason})`);
      const r = waitAsync(this.control, ACK, ack, 100);
      if (r.async) await r.value;
    }
  }

  private post(m: RootMessage): void {
    this.worker.postMessage(m);
  }

  private request(m: Extract<RootMessage, { id: number }>): Promise<WorkerMessage> {
    return new Promise((resolve, reject) => {
      this.pending.set(m.id, { resolve, reject });
      this.post(m);
    });
  }

  private settle(id: number, m: WorkerMessage | undefined, error?: Error): void {
    const p = this.pending.get(id);
    if (p === undefined) return;
    this.pending.delete(id);
    if (error) p.reject(error);
    else p.resolve(m!);
  }
}

/** The memory size from a snapshot's partition section (the worker verifies the whole file). */
function snapshotMemoryBytes(file: Uint8Array): number {
  const info = snapshotInfo(file);
  const bytes = info.kind === "json" && info.id === "partition" ? (info.value as { memoryBytes?: unknown }).memoryBytes : undefined;
  if (typeof bytes !== "number") throw new VmError("snapshot does not start with a partition section giving the memory size");
  return bytes;
}
