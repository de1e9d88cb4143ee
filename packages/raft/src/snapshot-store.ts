import { ByteReader, ByteWriter, CodecError, crc32, readSnapshot, writeSnapshot } from "./codec.js";
import { type FileSystem, joinPath } from "./fs.js";
import type { Snapshot } from "./types.js";

/**
 * Snapshots on disk, one file each, in one directory.
 *
 * A file is named `<term>-<index>.snap` (16-digit zero-padded decimals) and holds a 20-byte header —
 * magic "HFSN" (u32), format major (u8) and minor (u8), reserved u16 (0), body length (u64), CRC-32
 * of the body (u32), little-endian — followed by the body, `writeSnapshot` of the codec.
 *
 * `save` is atomic and durable when it returns: the file is written as `<name>.tmp`, synced, renamed
 * to `<name>` and the directory synced, so a crash leaves either no snapshot or a whole one (a stray
 * `.tmp` file is removed later). Readers accept the same major and a minor up to theirs.
 */

export const SNAPSHOT_FORMAT_MAJOR = 1;
export const SNAPSHOT_FORMAT_MINOR = 0;
/** "HFSN" */
const SNAPSHOT_MAGIC = 0x4e53_4648;
const HEADER_BYTES = 20;
export const SNAPSHOTS_RETAINED_DEFAULT = 3;

const SNAPSHOT_NAME = /^(\d{16})-(\d{16})\.snap$/;
const TMP_SUFFIX = ".tmp";

export class SnapshotError extends Error {
  override readonly name: string = "SnapshotError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A snapshot file is damaged or does not match its name. */
export class SnapshotCorruptError extends SnapshotError {
  override readonly name = "SnapshotCorruptError";
  constructor(readonly file: string, readonly reason: string, options?: { cause?: unknown }) {
    super(`snapshot ${file} is corrupt: ${reason}`, options);
  }
}

export interface SnapshotStoreOptions {
  /** How many snapshot files `save` keeps (the newest ones). At least 1; default 3. */
  readonly retain?: number;
}

/** A snapshot file that could not be used. */
export interface SnapshotLoadFailure {
  readonly file: string;
  readonly error: SnapshotCorruptError;
}

export interface LoadedSnapshot {
  readonly snapshot: Snapshot;
  readonly file: string;
  /** Newer snapshot files that were corrupt and skipped, newest first. */
  readonly skipped: readonly SnapshotLoadFailure[];
}

function snapshotFileName(term: number, index: number): string {
  return `${String(term).padStart(16, "0")}-${String(index).padStart(16, "0")}.snap`;
}

/** Encodes a snapshot file: header then body. */
export function encodeSnapshotFile(snapshot: Snapshot): Uint8Array {
  const body = new ByteWriter(64 + snapshot.data.length);
  writeSnapshot(body, snapshot);
  const bodyBytes = body.finish();
  const w = new ByteWriter(HEADER_BYTES + bodyBytes.length);
  w.u32(SNAPSHOT_MAGIC, "magic");
  w.u8(SNAPSHOT_FORMAT_MAJOR, "major");
  w.u8(SNAPSHOT_FORMAT_MINOR, "minor");
  w.u8(0, "reserved");
  w.u8(0, "reserved");
  w.u64(bodyBytes.length, "length");
  w.u32(crc32(bodyBytes), "crc");
  w.raw(bodyBytes);
  return w.finish();
}

/** Decodes a snapshot file; throws `SnapshotCorruptError` naming `file` and what is wrong. */
export function decodeSnapshotFile(bytes: Uint8Array, file: string): Snapshot {
  try {
    const r = new ByteReader(bytes, "snapshot file");
    const magic = r.u32("magic");
    if (magic !== SNAPSHOT_MAGIC) throw new SnapshotCorruptError(file, `bad magic 0x${magic.toString(16)}`);
    const major = r.u8("major");
    const minor = r.u8("minor");
    if (major !== SNAPSHOT_FORMAT_MAJOR || minor > SNAPSHOT_FORMAT_MINOR) {
      throw new SnapshotCorruptError(file, `format ${major}.${minor} is not readable by format ${SNAPSHOT_FORMAT_MAJOR}.${SNAPSHOT_FORMAT_MINOR}`);
    }
    r.u8("reserved");
    r.u8("reserved");
    const length = r.u64("length");
    const crc = r.u32("crc");
    if (length !== r.remainingBytes) throw new SnapshotCorruptError(file, `header says ${length} body bytes, the file has ${r.remainingBytes}`);
    const body = r.rawView(length, "body");
    const actual = crc32(body);
    if (actual !== crc) throw new SnapshotCorruptError(file, `CRC mismatch (stored 0x${crc.toString(16)}, computed 0x${actual.toString(16)})`);
    const br = new ByteReader(body, "snapshot body");
    const snapshot = readSnapshot(br);
    br.end();
    return snapshot;
  } catch (err) {
    if (err instanceof CodecError) throw new SnapshotCorruptError(file, err.message, { cause: err });
    throw err;
  }
}

export class SnapshotStore {
  private readonly retain: number;

  /** `dir` must exist. Stray `.tmp` files (a save cut short by a crash) are removed. */
  constructor(private readonly fs: FileSystem, readonly dir: string, options: SnapshotStoreOptions = {}) {
    this.retain = options.retain ?? SNAPSHOTS_RETAINED_DEFAULT;
    if (!Number.isSafeInteger(this.retain) || this.retain < 1) throw new SnapshotError(`retain must be an integer ≥ 1, got ${this.retain}`);
    this.removeTemporaries();
  }

  /** Names of the snapshot files, newest (highest index, then term) first. */
  list(): string[] {
    const found: { name: string; term: number; index: number }[] = [];
    for (const name of this.fs.readdir(this.dir)) {
      const m = SNAPSHOT_NAME.exec(name);
      if (m !== null) found.push({ name, term: Number(m[1]), index: Number(m[2]) });
    }
    found.sort((a, b) => b.index - a.index || b.term - a.term);
    return found.map((f) => f.name);
  }

  /**
   * Writes `snapshot` durably (see the module comment), then deletes all but the newest `retain`
   * snapshot files. Returns the file name.
   */
  save(snapshot: Snapshot): string {
    const name = snapshotFileName(snapshot.metadata.term, snapshot.metadata.index);
    const path = joinPath(this.dir, name);
    const tmp = path + TMP_SUFFIX;
    const bytes = encodeSnapshotFile(snapshot);
    if (this.fs.exists(tmp)) this.fs.remove(tmp);
    const fd = this.fs.openAppend(tmp);
    try {
      this.fs.write(fd, bytes);
      this.fs.sync(fd);
    } finally {
      this.fs.close(fd);
    }
    this.fs.rename(tmp, path);
    this.fs.syncDir(this.dir);
    this.prune();
    return name;
  }

  /** Reads and checks one snapshot file; throws `SnapshotCorruptError` if it is damaged or misnamed. */
  load(name: string): Snapshot {
    const m = SNAPSHOT_NAME.exec(name);
    if (m === null) throw new SnapshotError(`${name} is not a snapshot file name`);
    const snapshot = decodeSnapshotFile(this.fs.readFile(joinPath(this.dir, name)), name);
    const term = Number(m[1]);
    const index = Number(m[2]);
    if (snapshot.metadata.term !== term || snapshot.metadata.index !== index) {
      throw new SnapshotCorruptError(name, `holds (term ${snapshot.metadata.term}, index ${snapshot.metadata.index}), not what its name says`);
    }
    return snapshot;
  }

  /**
   * The newest valid snapshot, or null if there is no snapshot file. A corrupt newer file is
   * skipped (and reported in `skipped`) when an older valid one exists; if every file is corrupt,
   * throws `SnapshotCorruptError` for the newest one, with the others in its message.
   */
  loadNewest(): LoadedSnapshot | null {
    const names = this.list();
    const skipped: SnapshotLoadFailure[] = [];
    for (const file of names) {
      try {
        return { snapshot: this.load(file), file, skipped };
      } catch (err) {
        if (!(err instanceof SnapshotCorruptError)) throw err;
        skipped.push({ file, error: err });
      }
    }
    if (skipped.length === 0) return null;
    const first = skipped[0]!;
    throw new SnapshotCorruptError(first.file,
      `no valid snapshot in ${this.dir}: ${skipped.map((s) => `${s.file}: ${s.error.reason}`).join("; ")}`, { cause: first.error });
  }

  /** Deletes all but the newest `retain` snapshot files, then syncs the directory if anything went. */
  prune(): number {
    const names = this.list();
    let removed = 0;
    for (const name of names.slice(this.retain)) {
      this.fs.remove(joinPath(this.dir, name));
      removed++;
    }
    if (removed > 0) this.fs.syncDir(this.dir);
    return removed;
  }

  private removeTemporaries(): void {
    let removed = 0;
    for (const name of this.fs.readdir(this.dir)) {
      if (name.endsWith(TMP_SUFFIX)) {
        this.fs.remove(joinPath(this.dir, name));
        removed++;
      }
    }
    if (removed > 0) this.fs.syncDir(this.dir);
  }
}
