/**
 * The root partition's host memory: a pool of 4 KiB frames in one SharedArrayBuffer, handed to child
 * partitions one frame at a time as their guests touch memory. The buffer is shared with every VM
 * worker; a partition reaches only the frames its EPT maps (the isolation boundary).
 *
 * The free list lives in shared memory too and is guarded by a spin lock word, so frames can be
 * allocated from a VM worker (on first touch) and freed from the root.
 */

export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;

/** Most frames one pool can hold: the hart indexes host memory with int32 offsets (2 GiB). */
export const MAX_POOL_FRAMES = 0x8000_0000 / PAGE_SIZE;

export class FramePoolError extends Error {
  override readonly name = "FramePoolError";
}

/** The shared state of a pool, as passed to a worker. */
export interface FramePoolShared {
  memory: SharedArrayBuffer;
  /** [lock, free count, free stack...] */
  control: SharedArrayBuffer;
}

const LOCK = 0;
const FREE_COUNT = 1;
const STACK = 2;

export class FramePool {
  readonly memory: Uint8Array;
  readonly frames: number;
  private readonly control: Int32Array;

  /** Creates a pool of `bytes` (a multiple of 4 KiB), or attaches to a shared one. */
  constructor(bytesOrShared: number | FramePoolShared) {
    if (typeof bytesOrShared === "number") {
      const bytes = bytesOrShared;
      if (!Number.isInteger(bytes) || bytes <= 0 || bytes % PAGE_SIZE !== 0 || bytes / PAGE_SIZE > MAX_POOL_FRAMES) {
        throw new FramePoolError(`host memory of ${bytes} bytes: must be a multiple of 4 KiB, at most 2 GiB`);
      }
      this.frames = bytes / PAGE_SIZE;
      this.memory = new Uint8Array(new SharedArrayBuffer(bytes));
      this.control = new Int32Array(new SharedArrayBuffer((STACK + this.frames) * 4));
      // Frame 0 is never handed out: an EPT entry of 0 means "not present".
      let n = 0;
      for (let f = this.frames - 1; f >= 1; f--) this.control[STACK + n++] = f;
      this.control[FREE_COUNT] = n;
    } else {
      this.memory = new Uint8Array(bytesOrShared.memory);
      this.frames = this.memory.byteLength / PAGE_SIZE;
      this.control = new Int32Array(bytesOrShared.control);
    }
  }

  /**
   * Commits every frame's host memory now (the OS otherwise maps a page on its first touch, ~13 µs
   * per 4 KiB on a virtual machine host): a node that reserves its VM memory up front, as Hyper-V's
   * root does and QEMU's -mem-prealloc, pays this once at start instead of during a migration.
   * Only touches free frames' first byte with the zero they already hold.
   */
  prefault(): void {
    const m = this.memory;
    for (let offset = 0; offset < m.length; offset += PAGE_SIZE) Atomics.add(m, offset, 0);
  }

  get shared(): FramePoolShared {
    return { memory: this.memory.buffer as SharedArrayBuffer, control: this.control.buffer as SharedArrayBuffer };
  }

  /** Frames not handed out. */
  get free(): number {
    return Atomics.load(this.control, FREE_COUNT);
  }

  /** Frames in use (frame 0 is reserved and counts as neither). */
  get used(): number {
    return this.frames - 1 - this.free;
  }

  /** Takes a zero-filled frame; -1 when the pool is exhausted. */
  allocate(): number {
    this.lock();
    try {
      const n = this.control[FREE_COUNT]!;
      if (n === 0) return -1;
      const frame = this.control[STACK + n - 1]!;
      this.control[FREE_COUNT] = n - 1;
      return frame;
    } finally {
      this.unlock();
    }
  }

  /** Returns a frame; it is zeroed so that the next owner sees no data of the last. */
  release(frame: number): void {
    if (!Number.isInteger(frame) || frame < 1 || frame >= this.frames) throw new FramePoolError(`bad frame ${frame}`);
    this.memory.fill(0, frame * PAGE_SIZE, (frame + 1) * PAGE_SIZE);
    this.lock();
    try {
      const n = this.control[FREE_COUNT]!;
      if (n >= this.frames - 1) throw new FramePoolError(`frame ${frame} released twice`);
      this.control[STACK + n] = frame;
      this.control[FREE_COUNT] = n + 1;
    } finally {
      this.unlock();
    }
  }

  private lock(): void {
    // Held for a handful of instructions; contention is rare (one worker per VM plus the root).
    while (Atomics.compareExchange(this.control, LOCK, 0, 1) !== 0) Atomics.wait(this.control, LOCK, 1, 1);
  }

  private unlock(): void {
    Atomics.store(this.control, LOCK, 0);
    Atomics.notify(this.control, LOCK, 1);
  }
}
