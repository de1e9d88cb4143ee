/**
 * The root partition's management of child partitions (Hyper-V's VID): it owns the node's host memory
 * and is the one API through which child partitions are created, started, paused, resumed, stopped
 * and destroyed. Memory is admitted at creation (a child's RAM must fit in what the pool has not
 * promised to others), mapped as the guest touches it, and given back at destruction.
 */
import type { Ept } from "../ept.js";
import { FramePool } from "../frame-pool.js";
import type { BootMode, Halt } from "../partition.js";
import type { Offer } from "../synic.js";
import { SpareWorkers } from "./spare-workers.js";
import { VmError, VmWorker } from "./vm.js";

export interface ChildSpec {
  name: string;
  memoryBytes: number;
  vcpus?: number;
  boot?: BootMode;
  bootargs?: string;
  /** The VMBus channels offered to the guest (none by default). */
  offers?: readonly Offer[];
}

export type ChildState = "created" | "running" | "paused" | "halted";

export class RootPartitionError extends Error {
  override readonly name = "RootPartitionError";
}

/** Bytes of console output each child keeps for reading back. */
export const CONSOLE_HISTORY_BYTES = 64 * 1024;

export class ChildPartition {
  private vm: VmWorker | undefined;
  private halt: Halt | undefined;
  private paused = false;
  private history = new Uint8Array(0);
  private readonly listeners = new Set<(bytes: Uint8Array) => void>();

  constructor(
    readonly spec: Required<ChildSpec>,
    private readonly pool: FramePool,
    private readonly spares?: SpareWorkers,
  ) {}

  get state(): ChildState {
    if (this.vm === undefined) return "created";
    if (this.halt !== undefined) return "halted";
    return this.paused ? "paused" : "running";
  }

  get worker(): VmWorker | undefined {
    return this.vm;
  }

  /**
   * Boots an ELF, or continues a snapshot, in the child's VM worker. With `ept`, the guest's memory is
   * already mapped there (it arrived by migration) and the snapshot holds only vCPU and device state.
   */
  async start(
    source: { image: Uint8Array } | { snapshot: Uint8Array; ept?: Ept } | { awaitState: true; ept: Ept },
    options: { startPaused?: boolean } = {},
  ): Promise<void> {
    if (this.vm !== undefined) throw new RootPartitionError(`partition ${this.spec.name} was already started`);
    this.paused = options.startPaused === true;
    this.vm = await VmWorker.start({
      pool: this.pool,
      memoryBytes: this.spec.memoryBytes,
      vcpus: this.spec.vcpus,
      boot: this.spec.boot,
      bootargs: this.spec.bootargs,
      offers: this.spec.offers,
      ...source,
      startPaused: options.startPaused,
      onConsole: (bytes) => this.console(bytes),
      spares: this.spares,
    });
    void this.vm.exited.then((h) => (this.halt = h));
  }

  /** Gives a child started with `awaitState` its vCPU and device state (it stays paused). */
  async provideState(snapshot: Uint8Array): Promise<void> {
    if (this.vm === undefined) throw new RootPartitionError(`partition ${this.spec.name} was never started`);
    await this.vm.provideState(snapshot);
  }

  async pause(): Promise<number> {
    const ms = await this.running().pause();
    this.paused = true;
    return ms;
  }

  async resume(): Promise<number> {
    const ms = await this.running().resume();
    this.paused = false;
    return ms;
  }

  async stop(code = 0): Promise<Halt> {
    if (this.vm === undefined) throw new RootPartitionError(`partition ${this.spec.name} was never started`);
    this.halt = await this.vm.stop(code);
    return this.halt;
  }

  /** Console output kept so far (the last CONSOLE_HISTORY_BYTES). */
  consoleHistory(): Uint8Array {
    return this.history.slice();
  }

  /** Streams console output from now on; returns the unsubscribe function. */
  onConsole(listener: (bytes: Uint8Array) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private console(bytes: Uint8Array): void {
    const joined = new Uint8Array(this.history.length + bytes.length);
    joined.set(this.history);
    joined.set(bytes, this.history.length);
    this.history = joined.length > CONSOLE_HISTORY_BYTES ? joined.slice(joined.length - CONSOLE_HISTORY_BYTES) : joined;
    for (const l of this.listeners) l(bytes);
  }

  private running(): VmWorker {
    if (this.vm === undefined || this.halt !== undefined) throw new RootPartitionError(`partition ${this.spec.name} is ${this.state}`);
    return this.vm;
  }
}

export class RootPartition {
  readonly pool: FramePool;
  private readonly children = new Map<string, ChildPartition>();

  private readonly spares: SpareWorkers | undefined;

  /**
   * `hostMemoryBytes`: the node's memory for guests (a multiple of 4 KiB, at most 2 GiB).
   * `prefault`: commit that memory now rather than page by page as guests first touch it.
   * `spareWorkers`: VM worker threads kept started, so that a VM start or an incoming migration
   * does not wait for one (0, the default: each VM starts its own); `spareRefillDelayMs`: how long
   * after one is taken its replacement starts (see SpareWorkers).
   */
  constructor(hostMemoryBytes: number, options: { prefault?: boolean; spareWorkers?: number; spareRefillDelayMs?: number } = {}) {
    this.pool = new FramePool(hostMemoryBytes);
    if (options.prefault === true) this.pool.prefault();
    this.spares = options.spareWorkers !== undefined && options.spareWorkers > 0 ? new SpareWorkers(options.spareWorkers, options.spareRefillDelayMs) : undefined;
  }

  /** Spare VM workers started and waiting for a VM. */
  get spareWorkersReady(): number {
    return this.spares?.ready ?? 0;
  }

  /** Stops the spare VM workers (running VMs are not affected). */
  async close(): Promise<void> {
    await this.spares?.close();
  }

  /** Guest RAM promised to children that exist. */
  get committedBytes(): number {
    let n = 0;
    for (const c of this.children.values()) n += c.spec.memoryBytes;
    return n;
  }

  /** Guest RAM that may still be promised. */
  get availableBytes(): number {
    return (this.pool.frames - 1) * 4096 - this.committedBytes;
  }

  /** Creates a child partition (not running yet). Refuses a duplicate name or RAM the node cannot promise. */
  create(spec: ChildSpec): ChildPartition {
    if (!/^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/.test(spec.name)) {
      throw new RootPartitionError(`partition name "${spec.name}": use 1-63 letters, digits, dot, dash or underscore`);
    }
    if (this.children.has(spec.name)) throw new RootPartitionError(`a partition named ${spec.name} exists`);
    if (spec.memoryBytes > this.availableBytes) {
      throw new RootPartitionError(
        `partition ${spec.name} needs ${spec.memoryBytes / 2 ** 20} MiB; the node can promise ${Math.floor(this.availableBytes / 2 ** 20)} MiB more`,
      );
    }
    const child = new ChildPartition(
      { name: spec.name, memoryBytes: spec.memoryBytes, vcpus: spec.vcpus ?? 1, boot: spec.boot ?? "bare", bootargs: spec.bootargs ?? "", offers: spec.offers ?? [] },
      this.pool,
      this.spares,
    );
    this.children.set(spec.name, child);
    return child;
  }

  get(name: string): ChildPartition | undefined {
    return this.children.get(name);
  }

  list(): ChildPartition[] {
    return [...this.children.values()];
  }

  /** Stops a child if it runs, gives its frames back and forgets it. */
  async destroy(name: string): Promise<void> {
    const child = this.children.get(name);
    if (child === undefined) throw new RootPartitionError(`no partition named ${name}`);
    const vm = child.worker;
    if (vm !== undefined) {
      if (child.state !== "halted") await vm.stop().catch((e: unknown) => {
        if (!(e instanceof VmError)) throw e;
      });
      await vm.exited;
      vm.guest.releaseAll();
    }
    this.children.delete(name);
  }
}
