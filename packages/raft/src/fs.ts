/**
 * The file system as the WAL and the snapshot store see it: synchronous, so that a simulated
 * implementation (`SimFileSystem`) runs deterministically inside the simulator and a real one
 * (`NodeFileSystem`, in adapters/) runs the same code in production.
 *
 * Durability contract — what survives a crash (power loss, kill -9 of the machine):
 *  - File contents: only bytes covered by a completed `sync(fd)` are guaranteed. Bytes written
 *    after the last sync may be lost entirely, or partly (a prefix of them may survive: a torn
 *    write), and the surviving unsynced part may even be corrupt. An unsynced `truncate` may be
 *    undone.
 *  - Names: creating a file, `mkdir`, `rename` and `remove` change a directory; the change is
 *    durable only after `syncDir` of that directory. Until then a crash may undo it (a synced file
 *    whose creation was not made durable can vanish with all its content).
 *  - Errors: a failed `write` or `sync` leaves the file in an unknown state; callers must stop
 *    using what they wrote (after a failed fsync, data may be lost even though a later fsync succeeds).
 *
 * Paths are POSIX-style strings joined with "/". Every method throws `FsError` on failure.
 */
export interface FileSystem {
  /**
   * Opens `path` for appending, creating an empty file if it does not exist (`create: true`, the
   * default) or failing with ENOENT otherwise. Every `write` goes to the current end of the file.
   */
  openAppend(path: string, options?: { create?: boolean }): Fd;
  /** Appends all of `data` at the end of the file. Not durable until `sync(fd)`. */
  write(fd: Fd, data: Uint8Array): void;
  /** fdatasync: makes every byte written (and a truncation done) through this file durable. */
  sync(fd: Fd): void;
  /** Sets the file's length to `sizeBytes` (shrinks it, or extends it with zeros). Not durable until `sync(fd)`. */
  truncate(fd: Fd, sizeBytes: number): void;
  /** Releases `fd`. Does not sync. */
  close(fd: Fd): void;
  /** The whole current content of a file (including unsynced writes). */
  readFile(path: string): Uint8Array;
  /** Names (not paths) of the entries of a directory, sorted. */
  readdir(path: string): string[];
  /** Creates one directory; its parent must exist. EEXIST if the name is taken. Durable after `syncDir(parent)`. */
  mkdir(path: string): void;
  /** Atomically replaces `to` with `from` (both in the same directory). Durable after `syncDir` of that directory. */
  rename(from: string, to: string): void;
  /** Removes a file or an empty directory. Durable after `syncDir(parent)`. */
  remove(path: string): void;
  /** fsync of a directory: makes the creations, renames and removals in it durable. */
  syncDir(path: string): void;
  exists(path: string): boolean;
  /** Current length of a file in bytes (including unsynced writes). */
  size(path: string): number;
}

/** An open file handle. */
export type Fd = number;

export type FsErrorCode = "ENOENT" | "EEXIST" | "ENOTDIR" | "EISDIR" | "ENOTEMPTY" | "EBADF" | "EINVAL" | "EXDEV" | "EIO" | "EOTHER";

/** A file system operation failed; `code` is the POSIX error name, `path` the file it concerned. */
export class FsError extends Error {
  override readonly name = "FsError";
  constructor(readonly code: FsErrorCode, readonly op: string, readonly path: string, options?: { cause?: unknown; detail?: string }) {
    super(`${op} ${path}: ${code}${options?.detail !== undefined ? ` (${options.detail})` : ""}`, options);
  }
}

/** `dir + "/" + name`, without doubling the separator. */
export function joinPath(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** The directory containing `path` ("/" for a top-level entry, "." for a bare relative name). */
export function parentPath(path: string): string {
  const trimmed = path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
  const i = trimmed.lastIndexOf("/");
  if (i < 0) return ".";
  if (i === 0) return "/";
  return trimmed.slice(0, i);
}

/**
 * Creates `path` and any missing ancestors, making each creation durable (syncDir of its parent),
 * then syncs `path` itself. Idempotent: a directory that exists is left as is.
 */
export function ensureDirDurable(fs: FileSystem, path: string): void {
  const missing: string[] = [];
  let p = path;
  // Bounded: each step removes one path component.
  for (let depth = 0; depth < 256 && !fs.exists(p); depth++) {
    missing.push(p);
    const parent = parentPath(p);
    if (parent === p) break;
    p = parent;
  }
  for (let i = missing.length - 1; i >= 0; i--) {
    const dir = missing[i]!;
    fs.mkdir(dir);
    fs.syncDir(parentPath(dir));
  }
  fs.syncDir(path);
}
