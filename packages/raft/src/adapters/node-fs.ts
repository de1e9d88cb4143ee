import * as nodeFs from "node:fs";
import { type Fd, type FileSystem, FsError, type FsErrorCode } from "../fs.js";

const KNOWN_CODES: ReadonlySet<string> = new Set(["ENOENT", "EEXIST", "ENOTDIR", "EISDIR", "ENOTEMPTY", "EBADF", "EINVAL", "EXDEV", "EIO"]);

function wrap<T>(op: string, path: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const known: FsErrorCode = typeof code === "string" && KNOWN_CODES.has(code) ? (code as FsErrorCode) : "EOTHER";
    throw new FsError(known, op, path, { cause: err, detail: known === "EOTHER" ? String(code) : undefined });
  }
}

/**
 * `FileSystem` over node:fs with synchronous calls: `sync` is fdatasync, `syncDir` opens the
 * directory and fsyncs it. Errors become `FsError` with the POSIX code (EOTHER for others, the
 * original error as `cause`).
 */
export class NodeFileSystem implements FileSystem {
  private readonly paths = new Map<Fd, string>();

  openAppend(path: string, options?: { create?: boolean }): Fd {
    const flags = options?.create === false
      ? nodeFs.constants.O_WRONLY | nodeFs.constants.O_APPEND
      : nodeFs.constants.O_WRONLY | nodeFs.constants.O_APPEND | nodeFs.constants.O_CREAT;
    const fd = wrap("openAppend", path, () => nodeFs.openSync(path, flags, 0o644));
    this.paths.set(fd, path);
    return fd;
  }

  write(fd: Fd, data: Uint8Array): void {
    const path = this.pathOf(fd);
    wrap("write", path, () => {
      let done = 0;
      // Bounded: each successful writeSync makes progress; a zero-byte write is an error.
      while (done < data.length) {
        const n = nodeFs.writeSync(fd, data, done, data.length - done);
        if (n <= 0) throw Object.assign(new Error("writeSync wrote nothing"), { code: "EIO" });
        done += n;
      }
    });
  }

  sync(fd: Fd): void {
    wrap("sync", this.pathOf(fd), () => nodeFs.fdatasyncSync(fd));
  }

  truncate(fd: Fd, sizeBytes: number): void {
    wrap("truncate", this.pathOf(fd), () => nodeFs.ftruncateSync(fd, sizeBytes));
  }

  close(fd: Fd): void {
    const path = this.pathOf(fd);
    this.paths.delete(fd);
    wrap("close", path, () => nodeFs.closeSync(fd));
  }

  readFile(path: string): Uint8Array {
    const b = wrap("readFile", path, () => nodeFs.readFileSync(path));
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }

  readdir(path: string): string[] {
    return wrap("readdir", path, () => nodeFs.readdirSync(path)).sort();
  }

  mkdir(path: string): void {
    wrap("mkdir", path, () => nodeFs.mkdirSync(path));
  }

  rename(from: string, to: string): void {
    wrap("rename", `${from} -> ${to}`, () => nodeFs.renameSync(from, to));
  }

  remove(path: string): void {
    wrap("remove", path, () => {
      if (nodeFs.lstatSync(path).isDirectory()) nodeFs.rmdirSync(path);
      else nodeFs.unlinkSync(path);
    });
  }

  syncDir(path: string): void {
    wrap("syncDir", path, () => {
      const fd = nodeFs.openSync(path, nodeFs.constants.O_RDONLY);
      try {
        nodeFs.fsyncSync(fd);
      } finally {
        nodeFs.closeSync(fd);
      }
    });
  }

  exists(path: string): boolean {
    return nodeFs.existsSync(path);
  }

  size(path: string): number {
    return wrap("size", path, () => nodeFs.statSync(path).size);
  }

  private pathOf(fd: Fd): string {
    const p = this.paths.get(fd);
    if (p === undefined) throw new FsError("EBADF", "fd", `fd ${fd}`);
    return p;
  }
}
