import { FsError, type Fd, type FileSystem } from "./fs.js";
import type { SeededRng } from "./rng.js";

/** A probability as an integer ratio: `[numerator, denominator]` (no floats, so runs replay exactly). */
export type Ratio = readonly [numerator: number, denominator: number];

/** The knobs of a simulated power loss. Every decision is drawn from the rng passed to `crash`. */
export interface CrashFaults {
  /**
   * For each file with unsynced changes: the chance that it keeps a random prefix (possibly empty,
   * possibly all) of its unsynced bytes — a torn write — rather than falling back to exactly its
   * synced content. An unsynced truncation is kept only in the first case. Default 1/2.
   */
  readonly keepUnsyncedPrefix?: Ratio;
  /** Chance that a kept unsynced prefix has 1 to 3 of its bytes corrupted. Default 0. */
  readonly corruptTorn?: Ratio;
  /**
   * For each directory with unsynced changes (creations, renames, removals): the chance that a random
   * prefix of them (in the order they were made) survives, rather than none. Default 1/2.
   */
  readonly keepUnsyncedMetadata?: Ratio;
}

/** What a crash did, for traces and assertions. */
export interface CrashReport {
  /** Files whose unsynced content was not fully lost nor fully kept, or that were reverted. */
  readonly filesChanged: number;
  /** Unsynced bytes that did not survive, over all files. */
  readonly lostBytes: number;
  /** Bytes corrupted in surviving unsynced prefixes. */
  readonly corruptedBytes: number;
  /** Unsynced directory operations that did not survive. */
  readonly lostDirOps: number;
}

export type SimFsOp = "openAppend" | "write" | "sync" | "truncate" | "mkdir" | "rename" | "remove" | "syncDir";

export interface SimFsStats {
  writes: number;
  bytesWritten: number;
  syncs: number;
  syncDirs: number;
}

interface FileNode {
  readonly kind: "file";
  buf: Uint8Array;
  len: number;
  /** The durable content is `durableCopy` if set (after an unsynced shrink), else `buf[0, durableLen)`. */
  durableLen: number;
  durableCopy: Uint8Array | null;
}

type DirOp =
  | { readonly kind: "link"; readonly name: string; readonly node: Node }
  | { readonly kind: "unlink"; readonly name: string }
  | { readonly kind: "rename"; readonly from: string; readonly to: string; readonly node: Node };

interface DirNode {
  readonly kind: "dir";
  entries: Map<string, Node>;
  durable: Map<string, Node>;
  /** Changes to `entries` since the last syncDir, oldest first. */
  pending: DirOp[];
}

type Node = FileNode | DirNode;

interface PendingFault {
  readonly op: SimFsOp;
  readonly pathIncludes: string;
}

/**
 * An in-memory `FileSystem` that knows, for every file, which bytes are durable and which are still
 * volatile, and for every directory, which changes were made durable by `syncDir`. `crash(rng, faults)`
 * simulates a power loss following the contract of `FileSystem`; all randomness comes from the rng,
 * so the same seed gives the same surviving disk.
 *
 * Limits of the model: renames must stay within one directory (EXDEV otherwise); sync(fd) makes
 * the file's content durable but never its name; a failed operation (see `failNext`) changes nothing.
 */
export class SimFileSystem implements FileSystem {
  private readonly root: DirNode = { kind: "dir", entries: new Map(), durable: new Map(), pending: [] };
  /** Every node created and still reachable after the last crash, in creation order. */
  private nodes: Node[] = [this.root];
  private readonly fds = new Map<Fd, { node: FileNode; path: string }>();
  private nextFd: Fd = 3;
  private faults: PendingFault[] = [];
  /** Mutating operations left before the machine halts (null: never); `halted` until the next crash. */
  private haltCountdown: number | null = null;
  private halted = false;
  readonly stats: SimFsStats = { writes: 0, bytesWritten: 0, syncs: 0, syncDirs: 0 };

  // --- FileSystem ----------------------------------------------------------------------------

  openAppend(path: string, options?: { create?: boolean }): Fd {
    this.maybeFail("openAppend", path);
    const { dir, name } = this.parentOf(path, "openAppend");
    let node = dir.entries.get(name);
    if (node === undefined) {
      if (options?.create === false) throw new FsError("ENOENT", "openAppend", path);
      node = { kind: "file", buf: new Uint8Array(64), len: 0, durableLen: 0, durableCopy: null };
      this.link(dir, name, node);
    }
    if (node.kind !== "file") throw new FsError("EISDIR", "openAppend", path);
    const fd = this.nextFd++;
    this.fds.set(fd, { node, path });
    return fd;
  }

  write(fd: Fd, data: Uint8Array): void {
    const f = this.fd(fd, "write");
    this.maybeFail("write", f.path);
    appendTo(f.node, data);
    this.stats.writes++;
    this.stats.bytesWritten += data.length;
  }

  sync(fd: Fd): void {
    const f = this.fd(fd, "sync");
    this.maybeFail("sync", f.path);
    f.node.durableLen = f.node.len;
    f.node.durableCopy = null;
    this.stats.syncs++;
  }

  truncate(fd: Fd, sizeBytes: number): void {
    const f = this.fd(fd, "truncate");
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw new FsError("EINVAL", "truncate", f.path, { detail: `size ${sizeBytes}` });
    this.maybeFail("truncate", f.path);
    const n = f.node;
    if (sizeBytes < n.durableLen && n.durableCopy === null) n.durableCopy = n.buf.slice(0, n.durableLen);
    if (sizeBytes > n.len) {
      appendTo(n, new Uint8Array(sizeBytes - n.len));
    } else {
      n.len = sizeBytes;
    }
  }

  close(fd: Fd): void {
    this.fd(fd, "close");
    this.fds.delete(fd);
  }

  readFile(path: string): Uint8Array {
    const n = this.file(path, "readFile");
    return n.buf.slice(0, n.len);
  }

  readdir(path: string): string[] {
    return [...this.dir(path, "readdir").entries.keys()].sort();
  }

  mkdir(path: string): void {
    this.maybeFail("mkdir", path);
    const { dir, name } = this.parentOf(path, "mkdir");
    if (dir.entries.has(name)) throw new FsError("EEXIST", "mkdir", path);
    this.link(dir, name, { kind: "dir", entries: new Map(), durable: new Map(), pending: [] });
  }

  rename(from: string, to: string): void {
    this.maybeFail("rename", from);
    const src = this.parentOf(from, "rename");
    const dst = this.parentOf(to, "rename");
    if (src.dir !== dst.dir) throw new FsError("EXDEV", "rename", `${from} -> ${to}`, { detail: "SimFileSystem renames within one directory only" });
    const node = src.dir.entries.get(src.name);
    if (node === undefined) throw new FsError("ENOENT", "rename", from);
    if (src.name === dst.name) return;
    const target = dst.dir.entries.get(dst.name);
    if (target !== undefined) {
      if (target.kind !== node.kind) throw new FsError(node.kind === "dir" ? "ENOTDIR" : "EISDIR", "rename", to);
      if (target.kind === "dir" && target.entries.size > 0) throw new FsError("ENOTEMPTY", "rename", to);
    }
    src.dir.entries.delete(src.name);
    src.dir.entries.set(dst.name, node);
    src.dir.pending.push({ kind: "rename", from: src.name, to: dst.name, node });
  }

  remove(path: string): void {
    this.maybeFail("remove", path);
    const { dir, name } = this.parentOf(path, "remove");
    const node = dir.entries.get(name);
    if (node === undefined) throw new FsError("ENOENT", "remove", path);
    if (node.kind === "dir" && node.entries.size > 0) throw new FsError("ENOTEMPTY", "remove", path);
    dir.entries.delete(name);
    dir.pending.push({ kind: "unlink", name });
  }

  syncDir(path: string): void {
    const dir = this.dir(path, "syncDir");
    this.maybeFail("syncDir", path);
    dir.durable = new Map(dir.entries);
    dir.pending = [];
    this.stats.syncDirs++;
  }

  exists(path: string): boolean {
    return this.lookup(path) !== undefined;
  }

  size(path: string): number {
    return this.file(path, "size").len;
  }

  // --- Simulation controls ---------------------------------------------------------------------

  /**
   * A power loss. Every open fd becomes invalid (EBADF). Each file keeps its synced content and,
   * with `keepUnsyncedPrefix`, a random prefix of its unsynced bytes (optionally corrupted); each
   * directory keeps its synced entries and, with `keepUnsyncedMetadata`, a random prefix of its
   * unsynced changes. Afterwards everything on the disk is durable.
   */
  crash(rng: SeededRng, faults: CrashFaults = {}): CrashReport {
    const keepPrefix = faults.keepUnsyncedPrefix ?? [1, 2];
    const corrupt = faults.corruptTorn ?? [0, 1];
    const keepMeta = faults.keepUnsyncedMetadata ?? [1, 2];
    let filesChanged = 0;
    let lostBytes = 0;
    let corruptedBytes = 0;
    let lostDirOps = 0;
    this.fds.clear();
    this.faults = [];
    this.haltCountdown = null;
    this.halted = false;
    for (const node of this.nodes) {
      if (node.kind === "file") {
        const clean = node.durableCopy === null && node.durableLen === node.len;
        if (clean) continue;
        const durable = node.durableCopy ?? node.buf.subarray(0, node.durableLen);
        const common = node.durableCopy === null ? node.durableLen : commonPrefixLength(durable, node.buf.subarray(0, node.len));
        let next: Uint8Array;
        if (rng.chance(keepPrefix[0], keepPrefix[1])) {
          const kept = rng.int(node.len - common + 1);
          next = node.buf.slice(0, common + kept);
          if (kept > 0 && rng.chance(corrupt[0], corrupt[1])) {
            const n = 1 + rng.int(3);
            for (let i = 0; i < n; i++) next[common + rng.int(kept)]! ^= 1 + rng.int(255);
            corruptedBytes += n;
          }
        } else {
          next = durable.slice();
        }
        lostBytes += Math.max(0, node.len - next.length);
        filesChanged++;
        node.buf = next.length > 0 ? next : new Uint8Array(64);
        node.len = next.length;
        node.durableLen = next.length;
        node.durableCopy = null;
      } else if (node.pending.length > 0) {
        const kept = rng.chance(keepMeta[0], keepMeta[1]) ? rng.int(node.pending.length + 1) : 0;
        const entries = new Map(node.durable);
        for (let i = 0; i < kept; i++) applyDirOp(entries, node.pending[i]!);
        lostDirOps += node.pending.length - kept;
        node.entries = entries;
        node.durable = new Map(entries);
        node.pending = [];
      }
    }
    this.nodes = this.reachable();
    return { filesChanged, lostBytes, corruptedBytes, lostDirOps };
  }

  /** Media damage: flips one bit of a file, in its current and its durable content. */
  flipBit(path: string, bitOffset: number): void {
    const n = this.file(path, "flipBit");
    const byte = Math.floor(bitOffset / 8);
    if (!Number.isSafeInteger(bitOffset) || bitOffset < 0 || byte >= n.len) {
      throw new FsError("EINVAL", "flipBit", path, { detail: `bit ${bitOffset} outside a ${n.len}-byte file` });
    }
    const mask = 1 << (bitOffset % 8);
    n.buf[byte]! ^= mask;
    if (n.durableCopy !== null && byte < n.durableCopy.length) n.durableCopy[byte]! ^= mask;
  }

  /** Media damage: cuts a file to `sizeBytes`, durably (as if the tail had never been written). */
  truncateFile(path: string, sizeBytes: number): void {
    const n = this.file(path, "truncateFile");
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || sizeBytes > n.len) {
      throw new FsError("EINVAL", "truncateFile", path, { detail: `size ${sizeBytes} outside 0..${n.len}` });
    }
    n.len = sizeBytes;
    n.durableLen = Math.min(n.durableLen, sizeBytes);
    if (n.durableCopy !== null) n.durableCopy = n.durableCopy.slice(0, Math.min(n.durableCopy.length, sizeBytes));
  }

  /**
   * Makes the next `op` on a path containing `pathIncludes` (any path if omitted) throw EIO and
   * change nothing. Faults not yet triggered are dropped by a crash.
   */
  failNext(op: SimFsOp, pathIncludes = ""): void {
    this.faults.push({ op, pathIncludes });
  }

  /**
   * Lets the next `operations` mutating operations (open, write, sync, truncate, mkdir, rename,
   * remove, syncDir) succeed, then fails that one and every later one with EIO until `crash`: the
   * machine lost power in the middle of whatever its caller was doing. Call `crash` next.
   */
  haltAfter(operations: number): void {
    if (!Number.isSafeInteger(operations) || operations < 0) throw new RangeError(`haltAfter: ${operations} is not a count`);
    this.haltCountdown = operations;
  }

  /** The bytes of a file that would survive any crash now. */
  durableContent(path: string): Uint8Array {
    const n = this.file(path, "durableContent");
    return (n.durableCopy ?? n.buf.subarray(0, n.durableLen)).slice();
  }

  /** Whether a file has writes or a truncation not yet made durable. */
  hasUnsyncedData(path: string): boolean {
    const n = this.file(path, "hasUnsyncedData");
    return n.durableCopy !== null || n.durableLen !== n.len;
  }

  // --- internals -------------------------------------------------------------------------------

  private maybeFail(op: SimFsOp, path: string): void {
    if (this.haltCountdown !== null) {
      if (this.haltCountdown === 0) this.halted = true;
      else this.haltCountdown--;
    }
    if (this.halted) throw new FsError("EIO", op, path, { detail: "halted: the machine is going down" });
    const i = this.faults.findIndex((f) => f.op === op && path.includes(f.pathIncludes));
    if (i < 0) return;
    this.faults.splice(i, 1);
    throw new FsError("EIO", op, path, { detail: "injected fault" });
  }

  private link(dir: DirNode, name: string, node: Node): void {
    dir.entries.set(name, node);
    dir.pending.push({ kind: "link", name, node });
    this.nodes.push(node);
  }

  private fd(fd: Fd, op: string): { node: FileNode; path: string } {
    const f = this.fds.get(fd);
    if (f === undefined) throw new FsError("EBADF", op, `fd ${fd}`);
    return f;
  }

  private lookup(path: string): Node | undefined {
    let node: Node = this.root;
    for (const part of splitPath(path, "lookup")) {
      if (node.kind !== "dir") return undefined;
      const next: Node | undefined = node.entries.get(part);
      if (next === undefined) return undefined;
      node = next;
    }
    return node;
  }

  private file(path: string, op: string): FileNode {
    const n = this.lookup(path);
    if (n === undefined) throw new FsError("ENOENT", op, path);
    if (n.kind !== "file") throw new FsError("EISDIR", op, path);
    return n;
  }

  private dir(path: string, op: string): DirNode {
    const n = this.lookup(path);
    if (n === undefined) throw new FsError("ENOENT", op, path);
    if (n.kind !== "dir") throw new FsError("ENOTDIR", op, path);
    return n;
  }

  private parentOf(path: string, op: string): { dir: DirNode; name: string } {
    const parts = splitPath(path, op);
    const name = parts.pop();
    if (name === undefined) throw new FsError("EINVAL", op, path, { detail: "the root has no parent" });
    let node: Node = this.root;
    for (const part of parts) {
      if (node.kind !== "dir") throw new FsError("ENOTDIR", op, path);
      const next: Node | undefined = node.entries.get(part);
      if (next === undefined) throw new FsError("ENOENT", op, path);
      node = next;
    }
    if (node.kind !== "dir") throw new FsError("ENOTDIR", op, path);
    return { dir: node, name };
  }

  /** Nodes reachable from the root, preserving creation order (so crashes stay deterministic). */
  private reachable(): Node[] {
    const seen = new Set<Node>([this.root]);
    const stack: DirNode[] = [this.root];
    while (stack.length > 0) {
      const d = stack.pop()!;
      for (const child of d.entries.values()) {
        if (seen.has(child)) continue;
        seen.add(child);
        if (child.kind === "dir") stack.push(child);
      }
    }
    return this.nodes.filter((n) => seen.has(n));
  }
}

function splitPath(path: string, op: string): string[] {
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new FsError("EINVAL", op, path, { detail: "'..' is not supported" });
  return parts;
}

function appendTo(n: FileNode, data: Uint8Array): void {
  const need = n.len + data.length;
  if (need > n.buf.length) {
    let cap = Math.max(64, n.buf.length * 2);
    while (cap < need) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(n.buf.subarray(0, n.len));
    n.buf = next;
  }
  n.buf.set(data, n.len);
  n.len = need;
}

function commonPrefixLength(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

function applyDirOp(entries: Map<string, Node>, op: DirOp): void {
  switch (op.kind) {
    case "link":
      entries.set(op.name, op.node);
      return;
    case "unlink":
      entries.delete(op.name);
      return;
    case "rename":
      entries.delete(op.from);
      entries.set(op.to, op.node);
      return;
  }
}
