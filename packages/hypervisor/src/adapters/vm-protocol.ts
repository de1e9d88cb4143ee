/**
 * What the root and a VM worker share. Commands that must be quick (pause, resume, stop, dirty-log
 * sync) go through a control block in shared memory, checked by the worker between instruction
 * batches (a fraction of a millisecond apart), so they do not wait for the worker's event loop.
 * Bulk traffic (console bytes, whole snapshots) goes through messages; the vCPU and device state of a
 * migration's switchover goes through a shared state buffer instead, so that pausing and saving (on the
 * source) and restoring (on the destination) are each one command with no message round trip.
 *
 * Control block (Int32Array):
 *   REQUEST   sequence number of the last command the root posted
 *   COMMAND   that command (Command)
 *   ARGUMENT  its argument
 *   ACK       sequence number of the last command the worker finished
 *   STATE     the worker's state (WorkerState)
 *   LENGTH    Freeze: bytes of state written to the state buffer, or minus the bytes needed when it did
 *             not fit (the VM is paused anyway: save() by message then)
 *   RESULT    0 if the last command succeeded, 1 if it failed (Restore with bad state, Restore of a
 *             worker that already has a VM)
 *
 * Stamp (Float64Array, its own buffer): when the worker finished the last command, in ms since the
 * Unix epoch at sub-millisecond resolution (performance.timeOrigin + performance.now(), comparable
 * between the threads of one process): the moment the vCPUs stopped or started running.
 */
import type { EptShared } from "../ept.js";
import type { FramePoolShared } from "../frame-pool.js";
import type { BootMode, ExitCounts, Halt } from "../partition.js";
import type { Offer } from "../synic.js";

export const REQUEST = 0;
export const COMMAND = 1;
export const ARGUMENT = 2;
export const ACK = 3;
export const STATE = 4;
export const LENGTH = 5;
export const RESULT = 6;
/** Console messages the worker has posted so far (the root counts what it received, to wait for the rest). */
export const CONSOLE = 7;
export const CONTROL_WORDS = 8;
/** Bytes of the shared state buffer (vCPU and device state is a few KiB per vCPU). */
export const STATE_BUFFER_BYTES = 512 * 1024;

/**
 * The VMBus words (Int32Array over `VmWorkerData.vmbus`): the guest's signals out, the root's
 * interrupts in, and the channel table the worker keeps for the root (written on every open/close,
 * then GENERATION is bumped and a "vmbus" message posted).
 */
export const VMBUS_SIGNALS = 0; // bit c: the guest signalled channel c (the root takes them)
export const VMBUS_INTERRUPTS = 1; // bit c: the root has news on channel c (the worker takes them)
export const VMBUS_GENERATION = 2;
export const VMBUS_TABLE = 4; // per channel: ring gpa, ring pages (0: closed)
export const VMBUS_WORDS = VMBUS_TABLE + 2 * 32;

export const enum Command {
  None = 0,
  Pause = 1,
  Resume = 2,
  Stop = 3,
  DirtySync = 4,
  DirtyStart = 5,
  DirtyStop = 6,
  /** Argument: percent of wall time the vCPUs sit out (0 to 99); 0 ends throttling. */
  Throttle = 7,
  /**
   * Pause, freeze guest time, take (and clear) the dirty log into `dirtyOut` and write the vCPU and
   * device state to the state buffer (LENGTH says how much): a migration's stop-and-copy in one step.
   */
  Freeze = 8,
  /** Argument: bytes of vCPU and device state in the state buffer, for a worker waiting for its state. */
  Restore = 9,
}

export const enum WorkerState {
  Starting = 0,
  Running = 1,
  Paused = 2,
  Halted = 3,
}

export interface VmWorkerData {
  memoryBytes: number;
  vcpus: number;
  boot: BootMode;
  bootargs: string;
  pool: FramePoolShared;
  ept: EptShared;
  control: SharedArrayBuffer;
  /** Where a dirty-log sync leaves the bitmap it took. */
  dirtyOut: SharedArrayBuffer;
  /** vCPU and device state in either direction (Freeze, Restore); STATE_BUFFER_BYTES long. */
  stateBuffer: SharedArrayBuffer;
  /** One float64: when the worker finished the last command (see Stamp above). */
  stamp: SharedArrayBuffer;
  /**
   * One float64, the fence: a wall-clock time (ms since the epoch, as Date.now()) from which the vCPUs
   * do not run until the root moves it later; 0: no fence. The worker reads it before every batch, so
   * a root that stops renewing it (frozen, cut off from its cluster) cannot leave the guest running.
   */
  fence: SharedArrayBuffer;
  /** VMBUS_WORDS int32s: see VMBUS_SIGNALS. */
  vmbus: SharedArrayBuffer;
  /** The VMBus channels offered to the guest (a snapshot brings its own). */
  offers?: Offer[];
  /** An ELF to boot, or a snapshot to continue. */
  image?: Uint8Array;
  snapshot?: Uint8Array;
  /** Start paused (a restored or incoming VM waits for the root's resume). */
  startPaused?: boolean;
  /** The snapshot has no memory: it is already in the shared EPT (an incoming migration). */
  memoryInPlace?: boolean;
  /**
   * Load, report "ready", then wait for a "restore" message with the vCPU and device state (memory in
   * place, start paused): an incoming migration spawns its worker early, off the downtime path.
   */
  awaitState?: boolean;
  /** Instructions per vCPU per batch. */
  batch?: number;
  /** Pause by itself once guest time reaches this many mtime ticks (then post "paused"). */
  pauseAtTicks?: number;
}

export interface VmStats {
  instructions: number;
  exits: ExitCounts;
  mtimeTicks: number;
  /** Percent of wall time the vCPUs sit out (see VmWorker.throttle). */
  throttlePercent: number;
}

/** Messages from the worker. */
export type WorkerMessage =
  /** A spare worker has loaded its code and waits for its VM's data (see SpareWorkers). */
  | { type: "loaded" }
  | { type: "ready" }
  | { type: "paused"; mtimeTicks: number }
  | { type: "console"; bytes: Uint8Array }
  /** The guest signalled a channel, or opened or closed one: see the VMBus words. */
  | { type: "vmbus" }
  | { type: "halted"; halt: Halt; stats: VmStats }
  | { type: "saved"; id: number; chunks: Uint8Array[] }
  | { type: "stats"; id: number; stats: VmStats }
  | { type: "restored"; id: number }
  | { type: "error"; id?: number; message: string };

/** Messages to the worker. */
export type RootMessage =
  | { type: "input"; bytes: Uint8Array }
  | { type: "save"; id: number; memory: boolean }
  | { type: "stats"; id: number }
  | { type: "restore"; id: number; snapshot: Uint8Array };

/** Atomics.waitAsync (Node 16+, typed in TypeScript's ES2024 lib, which Node 20 does not fully have). */
export const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      array: Int32Array,
      index: number,
      value: number,
      timeoutMs?: number,
    ): { async: false; value: "not-equal" | "timed-out" } | { async: true; value: Promise<"ok" | "timed-out"> };
  }
).waitAsync.bind(Atomics);
