/**
 * HFDISK: the sparse virtual disk image format served to guests as block devices.
 *
 * A file holds a 512-byte header, a block allocation table (BAT) and data blocks.
 * The BAT maps each virtual block to a file offset, or to 0 when the block has never
 * been written (it then reads as zeros). Blocks are appended to the end of the file
 * the first time any byte of them is written. The layout is documented in
 * DISK-FORMAT.md next to this package.
 *
 * Crash safety: a new block's data is written and synced before the BAT entry that
 * points at it, so a BAT entry never points at garbage. Every BAT entry carries its
 * own CRC-32, so one entry can be updated with a single 16-byte write.
 */
import type { FileHandle } from "node:fs/promises";
import { link, open, unlink } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname } from "node:path";

/** Major version of the on-disk format; readers refuse any other major version. */
export const DISK_FORMAT_VERSION_MAJOR = 1;
/** Minor version of the on-disk format; readers accept this minor version and older ones. */
export const DISK_FORMAT_VERSION_MINOR = 0;
/** Sector size: offsets, lengths and the virtual size are multiples of this. */
export const DISK_SECTOR_SIZE_BYTES = 512;
/** Block size used when `create` is not given one (1 MiB). */
export const DEFAULT_DISK_BLOCK_SIZE_BYTES = 1024 * 1024;
/** Smallest allowed block size (64 KiB). */
export const MIN_DISK_BLOCK_SIZE_BYTES = 64 * 1024;
/** Largest allowed block size (16 MiB). */
export const MAX_DISK_BLOCK_SIZE_BYTES = 16 * 1024 * 1024;
/** Largest number of blocks an image may have (bounds the in-memory BAT to 64 MiB). */
export const MAX_DISK_BLOCK_COUNT = 4 * 1024 * 1024;

const MAGIC = new Uint8Array([0x48, 0x46, 0x44, 0x49, 0x53, 0x4b, 0x00, 0x00]); // "HFDISK\0\0"
const HEADER_SIZE_BYTES = 512;
const HEADER_CRC_OFFSET_BYTES = HEADER_SIZE_BYTES - 4;
const BAT_OFFSET_BYTES = HEADER_SIZE_BYTES;
const BAT_ENTRY_SIZE_BYTES = 16;
const DATA_ALIGNMENT_BYTES = 4096;

/** What kind of failure a {@link DiskImageError} reports. */
export type DiskImageErrorKind =
  | "exists" // create refused to overwrite a file
  | "not-found" // the image file does not exist
  | "truncated" // the file is shorter than its header, BAT or blocks need
  | "corrupt" // a checksum, magic number or header field is wrong
  | "version" // the format version is not readable by this code
  | "invalid-argument" // bad size, block size, offset or length
  | "read-only" // a write to an image opened read-only
  | "closed" // the image was closed
  | "io"; // the operating system reported an error

/** Error raised by every operation on a disk image; the message names the file. */
export class DiskImageError extends Error {
  override readonly name = "DiskImageError";

  /**
   * @param kind what went wrong, for programmatic handling
   * @param path the image file
   * @param detail what was wrong, without the file name
   * @param cause the underlying error, if any
   */
  constructor(
    readonly kind: DiskImageErrorKind,
    readonly path: string,
    readonly detail: string,
    cause?: unknown,
  ) {
    super(`disk image ${path}: ${detail}`, cause === undefined ? undefined : { cause });
  }
}

/** Options for {@link DiskImage.create}. */
export interface CreateDiskImageOptions {
  /** Virtual disk size seen by the guest; a positive multiple of 512. */
  sizeBytes: number;
  /** Allocation unit; a power of two from 64 KiB to 16 MiB. Defaults to 1 MiB. */
  blockSizeBytes?: number;
}

/** Options for {@link DiskImage.open}. */
export interface OpenDiskImageOptions {
  /** Open without write access; `write` then fails. Defaults to false. */
  readOnly?: boolean;
}

/** Header fields and allocation summary of an image, for operator tooling. */
export interface DiskImageInfo {
  path: string;
  formatVersionMajor: number;
  formatVersionMinor: number;
  sizeBytes: number;
  blockSizeBytes: number;
  blockCount: number;
  allocatedBlocks: number;
  /** Bytes of guest data the allocated blocks can hold (allocatedBlocks × blockSizeBytes). */
  allocatedBytes: number;
  /** Length of the image file itself. */
  fileSizeBytes: number;
  batOffsetBytes: number;
  dataOffsetBytes: number;
}

const CRC32_TABLE: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE 802.3, reflected, as in zlib), continuing from `previous`. */
export function diskImageCrc32(data: Uint8Array, previous = 0): number {
  let crc = ~previous >>> 0;
  for (let i = 0; i < data.length; i++) {
    crc = CRC32_TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  }
  return ~crc >>> 0;
}

interface Header {
  versionMajor: number;
  versionMinor: number;
  sizeBytes: number;
  blockSizeBytes: number;
  blockCount: number;
  batOffsetBytes: number;
  dataOffsetBytes: number;
}

/** One contiguous piece of an I/O request that falls inside a single block. */
interface Segment {
  blockIndex: number;
  inBlockOffsetBytes: number;
  lengthBytes: number;
  /** Offset of this piece within the caller's buffer. */
  bufferOffsetBytes: number;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

function errnoCode(err: unknown): string | undefined {
  if (typeof err === "object" && err !== null && "code" in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === "string" ? code : undefined;
  }
  return undefined;
}

function describeCause(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function batBytesFor(blockCount: number): number {
  return blockCount * BAT_ENTRY_SIZE_BYTES;
}

function layoutFor(sizeBytes: number, blockSizeBytes: number): Header {
  const blockCount = Math.ceil(sizeBytes / blockSizeBytes);
  return {
    versionMajor: DISK_FORMAT_VERSION_MAJOR,
    versionMinor: DISK_FORMAT_VERSION_MINOR,
    sizeBytes,
    blockSizeBytes,
    blockCount,
    batOffsetBytes: BAT_OFFSET_BYTES,
    dataOffsetBytes: alignUp(BAT_OFFSET_BYTES + batBytesFor(blockCount), DATA_ALIGNMENT_BYTES),
  };
}

function encodeHeader(h: Header): Uint8Array {
  const buf = new Uint8Array(HEADER_SIZE_BYTES);
  const view = new DataView(buf.buffer);
  buf.set(MAGIC, 0);
  view.setUint16(8, h.versionMajor, true);
  view.setUint16(10, h.versionMinor, true);
  view.setUint32(12, HEADER_SIZE_BYTES, true);
  view.setBigUint64(16, BigInt(h.sizeBytes), true);
  view.setUint32(24, h.blockSizeBytes, true);
  view.setUint32(28, h.blockCount, true);
  view.setBigUint64(32, BigInt(h.batOffsetBytes), true);
  view.setBigUint64(40, BigInt(h.dataOffsetBytes), true);
  view.setUint32(HEADER_CRC_OFFSET_BYTES, diskImageCrc32(buf.subarray(0, HEADER_CRC_OFFSET_BYTES)), true);
  return buf;
}

function readU64(view: DataView, offsetBytes: number): number {
  const value = view.getBigUint64(offsetBytes, true);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.NaN : Number(value);
}

/** Decodes and validates a header; `fail` raises the error for the file being read. */
function decodeHeader(buf: Uint8Array, fail: (kind: DiskImageErrorKind, detail: string) => never): Header {
  for (let i = 0; i < MAGIC.length; i++) {
    if (buf[i] !== MAGIC[i]) fail("corrupt", "not an HFDISK image (bad magic number)");
  }
  const view = new DataView(buf.buffer, buf.byteOffset, HEADER_SIZE_BYTES);
  const versionMajor = view.getUint16(8, true);
  const versionMinor = view.getUint16(10, true);
  if (versionMajor !== DISK_FORMAT_VERSION_MAJOR || versionMinor > DISK_FORMAT_VERSION_MINOR) {
    fail(
      "version",
      `unsupported format version ${versionMajor}.${versionMinor}: this reader supports version ` +
        `${DISK_FORMAT_VERSION_MAJOR}.${DISK_FORMAT_VERSION_MINOR} and older minor versions of major ${DISK_FORMAT_VERSION_MAJOR}`,
    );
  }
  const storedCrc = view.getUint32(HEADER_CRC_OFFSET_BYTES, true);
  const actualCrc = diskImageCrc32(buf.subarray(0, HEADER_CRC_OFFSET_BYTES));
  if (storedCrc !== actualCrc) {
    fail(
      "corrupt",
      `header checksum mismatch (stored 0x${storedCrc.toString(16).padStart(8, "0")}, ` +
        `computed 0x${actualCrc.toString(16).padStart(8, "0")})`,
    );
  }
  const headerSizeBytes = view.getUint32(12, true);
  const h: Header = {
    versionMajor,
    versionMinor,
    sizeBytes: readU64(view, 16),
    blockSizeBytes: view.getUint32(24, true),
    blockCount: view.getUint32(28, true),
    batOffsetBytes: readU64(view, 32),
    dataOffsetBytes: readU64(view, 40),
  };
  if (headerSizeBytes !== HEADER_SIZE_BYTES) fail("corrupt", `header size is ${headerSizeBytes}, expected ${HEADER_SIZE_BYTES}`);
  const sizeProblem = checkGeometry(h.sizeBytes, h.blockSizeBytes);
  if (sizeProblem !== undefined) fail("corrupt", `header: ${sizeProblem}`);
  const expected = layoutFor(h.sizeBytes, h.blockSizeBytes);
  if (h.blockCount !== expected.blockCount) {
    fail("corrupt", `header block count is ${h.blockCount}, expected ${expected.blockCount} for the virtual size`);
  }
  if (h.batOffsetBytes !== BAT_OFFSET_BYTES) {
    fail("corrupt", `header BAT offset is ${h.batOffsetBytes}, expected ${BAT_OFFSET_BYTES}`);
  }
  if (
    !Number.isSafeInteger(h.dataOffsetBytes) ||
    h.dataOffsetBytes < h.batOffsetBytes + batBytesFor(h.blockCount) ||
    h.dataOffsetBytes % DISK_SECTOR_SIZE_BYTES !== 0
  ) {
    fail("corrupt", `header data offset ${h.dataOffsetBytes} overlaps the BAT or is not sector aligned`);
  }
  return h;
}

/** Returns why a size/block size pair is not acceptable, or undefined when it is. */
function checkGeometry(sizeBytes: number, blockSizeBytes: number): string | undefined {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % DISK_SECTOR_SIZE_BYTES !== 0) {
    return `virtual size ${sizeBytes} is not a positive multiple of ${DISK_SECTOR_SIZE_BYTES} bytes`;
  }
  if (!isPowerOfTwo(blockSizeBytes) || blockSizeBytes < MIN_DISK_BLOCK_SIZE_BYTES || blockSizeBytes > MAX_DISK_BLOCK_SIZE_BYTES) {
    return `block size ${blockSizeBytes} is not a power of two from ${MIN_DISK_BLOCK_SIZE_BYTES} to ${MAX_DISK_BLOCK_SIZE_BYTES} bytes`;
  }
  const blockCount = Math.ceil(sizeBytes / blockSizeBytes);
  if (blockCount > MAX_DISK_BLOCK_COUNT) {
    return `virtual size ${sizeBytes} needs ${blockCount} blocks of ${blockSizeBytes} bytes, more than the limit of ${MAX_DISK_BLOCK_COUNT}; use a larger block size`;
  }
  return undefined;
}

function encodeBatEntry(blockIndex: number, fileOffsetBytes: number): Uint8Array {
  const entry = new Uint8Array(BAT_ENTRY_SIZE_BYTES);
  const view = new DataView(entry.buffer);
  view.setBigUint64(0, BigInt(fileOffsetBytes), true);
  view.setUint32(8, blockIndex, true);
  view.setUint32(12, diskImageCrc32(entry.subarray(0, 12)), true);
  return entry;
}

/** Fills `into` from `positionBytes`, stopping early only at end of file; returns the bytes read. */
async function readFully(handle: FileHandle, into: Uint8Array, positionBytes: number): Promise<number> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await handle.read(into, done, into.length - done, positionBytes + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

async function writeFully(handle: FileHandle, data: Uint8Array, positionBytes: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, positionBytes + done);
    done += bytesWritten;
  }
}

/** Temporary files of images being created get distinct names within this process. */
let creations = 0;

async function syncDirectory(path: string): Promise<void> {
  const dir = await open(dirname(path), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/**
 * An open HFDISK image.
 *
 * Reads and writes address the virtual disk in bytes; both must be sector aligned.
 * Any number of reads and writes may be in flight at once: block allocation is
 * serialized internally, and `close` waits for operations already started.
 */
export class DiskImage {
  /** File offset of each block's data, 0 when unallocated. */
  readonly #bat: Float64Array;
  #allocatedBlocks: number;
  /** Where the next new block will be placed. */
  #nextBlockOffsetBytes: number;
  /** Tail of the allocation lock's promise chain. */
  #allocationTail: Promise<void> = Promise.resolve();
  readonly #inFlight = new Set<Promise<unknown>>();
  #closed = false;

  readonly #handle: FileHandle;
  readonly #path: string;
  readonly #header: Header;
  readonly #readOnly: boolean;

  private constructor(handle: FileHandle, path: string, header: Header, bat: Float64Array, readOnly: boolean) {
    this.#handle = handle;
    this.#path = path;
    this.#header = header;
    this.#readOnly = readOnly;
    this.#bat = bat;
    let allocated = 0;
    let end = header.dataOffsetBytes;
    for (const offsetBytes of bat) {
      if (offsetBytes === 0) continue;
      allocated++;
      end = Math.max(end, offsetBytes + header.blockSizeBytes);
    }
    this.#allocatedBlocks = allocated;
    this.#nextBlockOffsetBytes = alignUp(end, DATA_ALIGNMENT_BYTES);
  }

  /**
   * Creates a new, empty image at `path` and opens it for reading and writing.
   * Fails with kind "exists" if anything is already at `path`. The header and BAT
   * are synced, and so is the directory entry, before this resolves.
   */
  static async create(path: string, options: CreateDiskImageOptions): Promise<DiskImage> {
    const blockSizeBytes = options.blockSizeBytes ?? DEFAULT_DISK_BLOCK_SIZE_BYTES;
    const problem = checkGeometry(options.sizeBytes, blockSizeBytes);
    if (problem !== undefined) throw new DiskImageError("invalid-argument", path, `cannot create: ${problem}`);
    const header = layoutFor(options.sizeBytes, blockSizeBytes);

    // Written whole and synced under a temporary name, then linked to `path` (which fails if it
    // exists): a crash while creating never leaves a half-written image at `path`, and of two nodes
    // creating the same disk at once exactly one succeeds.
    const temporary = `${path}.creating.${hostname()}.${process.pid}.${++creations}`;
    let handle: FileHandle;
    try {
      handle = await open(temporary, "wx+", 0o644);
    } catch (err) {
      throw new DiskImageError("io", path, `cannot create: ${describeCause(err)}`, err);
    }
    try {
      // The BAT starts out all zeros (every block unallocated); extending the file provides them.
      await handle.truncate(header.dataOffsetBytes);
      await writeFully(handle, encodeHeader(header), 0);
      await handle.sync();
      await link(temporary, path);
    } catch (err) {
      await handle.close().catch(() => undefined);
      await unlink(temporary).catch(() => undefined);
      if (errnoCode(err) === "EEXIST") {
        throw new DiskImageError("exists", path, "cannot create: file already exists (refusing to overwrite)", err);
      }
      throw new DiskImageError("io", path, `cannot create: ${describeCause(err)}`, err);
    }
    try {
      await unlink(temporary);
      await syncDirectory(path);
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw new DiskImageError("io", path, `cannot create: ${describeCause(err)}`, err);
    }
    return new DiskImage(handle, path, header, new Float64Array(header.blockCount), false);
  }

  /**
   * Opens an existing image after checking its magic number, version, header
   * checksum, every BAT entry's checksum, that each allocated block lies wholly
   * inside the file and that no two blocks overlap.
   */
  static async open(path: string, options: OpenDiskImageOptions = {}): Promise<DiskImage> {
    const readOnly = options.readOnly ?? false;
    let handle: FileHandle;
    try {
      handle = await open(path, readOnly ? "r" : "r+");
    } catch (err) {
      const kind: DiskImageErrorKind = errnoCode(err) === "ENOENT" ? "not-found" : "io";
      throw new DiskImageError(kind, path, `cannot open: ${describeCause(err)}`, err);
    }
    try {
      const { header, bat } = await DiskImage.#load(handle, path);
      return new DiskImage(handle, path, header, bat, readOnly);
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err;
    }
  }

  /** Reads and validates an image's header and BAT, then returns its header fields. */
  static async info(path: string): Promise<DiskImageInfo> {
    const image = await DiskImage.open(path, { readOnly: true });
    try {
      const h = image.#header;
      const fileSizeBytes = (await image.#handle.stat()).size;
      return {
        path,
        formatVersionMajor: h.versionMajor,
        formatVersionMinor: h.versionMinor,
        sizeBytes: h.sizeBytes,
        blockSizeBytes: h.blockSizeBytes,
        blockCount: h.blockCount,
        allocatedBlocks: image.#allocatedBlocks,
        allocatedBytes: image.#allocatedBlocks * h.blockSizeBytes,
        fileSizeBytes,
        batOffsetBytes: h.batOffsetBytes,
        dataOffsetBytes: h.dataOffsetBytes,
      };
    } finally {
      await image.close();
    }
  }

  static async #load(handle: FileHandle, path: string): Promise<{ header: Header; bat: Float64Array }> {
    const fail = (kind: DiskImageErrorKind, detail: string): never => {
      throw new DiskImageError(kind, path, detail);
    };
    let fileSizeBytes: number;
    try {
      fileSizeBytes = (await handle.stat()).size;
    } catch (err) {
      throw new DiskImageError("io", path, `cannot stat: ${describeCause(err)}`, err);
    }
    if (fileSizeBytes < HEADER_SIZE_BYTES) {
      fail("truncated", `truncated: header needs ${HEADER_SIZE_BYTES} bytes, the file has ${fileSizeBytes}`);
    }
    const headerBuf = new Uint8Array(HEADER_SIZE_BYTES);
    await DiskImage.#readOrFail(handle, path, headerBuf, 0, "header");
    const header = decodeHeader(headerBuf, fail);

    const batBytes = batBytesFor(header.blockCount);
    const batEndBytes = header.batOffsetBytes + batBytes;
    if (fileSizeBytes < batEndBytes) {
      fail(
        "truncated",
        `truncated: BAT at offset ${header.batOffsetBytes} needs ${batBytes} bytes, the file has ${fileSizeBytes}`,
      );
    }
    const batBuf = new Uint8Array(batBytes);
    await DiskImage.#readOrFail(handle, path, batBuf, header.batOffsetBytes, "BAT");
    const view = new DataView(batBuf.buffer);
    const bat = new Float64Array(header.blockCount);
    const allocated: { blockIndex: number; offsetBytes: number }[] = [];
    for (let blockIndex = 0; blockIndex < header.blockCount; blockIndex++) {
      const at = blockIndex * BAT_ENTRY_SIZE_BYTES;
      const entry = batBuf.subarray(at, at + BAT_ENTRY_SIZE_BYTES);
      if (entry.every((b) => b === 0)) continue;
      const storedCrc = view.getUint32(at + 12, true);
      if (storedCrc !== diskImageCrc32(entry.subarray(0, 12))) {
        fail("corrupt", `BAT entry for block ${blockIndex} is corrupt (checksum mismatch)`);
      }
      const entryIndex = view.getUint32(at + 8, true);
      if (entryIndex !== blockIndex) {
        fail("corrupt", `BAT entry for block ${blockIndex} names block ${entryIndex}`);
      }
      const offsetBytes = readU64(view, at);
      if (
        !Number.isSafeInteger(offsetBytes) ||
        offsetBytes < header.dataOffsetBytes ||
        offsetBytes % DISK_SECTOR_SIZE_BYTES !== 0
      ) {
        fail(
          "corrupt",
          `BAT entry for block ${blockIndex} points at offset ${offsetBytes}, outside the data area ` +
            `(which starts at ${header.dataOffsetBytes}) or not sector aligned`,
        );
      }
      if (offsetBytes + header.blockSizeBytes > fileSizeBytes) {
        fail(
          "truncated",
          `truncated: block ${blockIndex} at offset ${offsetBytes} needs ${header.blockSizeBytes} bytes, ` +
            `the file has ${fileSizeBytes}`,
        );
      }
      bat[blockIndex] = offsetBytes;
      allocated.push({ blockIndex, offsetBytes });
    }
    allocated.sort((a, b) => a.offsetBytes - b.offsetBytes);
    for (let i = 1; i < allocated.length; i++) {
      const prev = allocated[i - 1]!;
      const cur = allocated[i]!;
      if (prev.offsetBytes + header.blockSizeBytes > cur.offsetBytes) {
        fail(
          "corrupt",
          `blocks ${prev.blockIndex} and ${cur.blockIndex} overlap (offsets ${prev.offsetBytes} and ${cur.offsetBytes})`,
        );
      }
    }
    return { header, bat };
  }

  static async #readOrFail(
    handle: FileHandle,
    path: string,
    into: Uint8Array,
    positionBytes: number,
    what: string,
  ): Promise<void> {
    let got: number;
    try {
      got = await readFully(handle, into, positionBytes);
    } catch (err) {
      throw new DiskImageError("io", path, `cannot read ${what}: ${describeCause(err)}`, err);
    }
    if (got < into.length) {
      throw new DiskImageError(
        "truncated",
        path,
        `truncated: ${what} at offset ${positionBytes} needs ${into.length} bytes, the file has ${positionBytes + got}`,
      );
    }
  }

  /** The image file's path. */
  get path(): string {
    return this.#path;
  }

  /** Virtual disk size in bytes. */
  get sizeBytes(): number {
    return this.#header.sizeBytes;
  }

  /** Allocation unit in bytes. */
  get blockSizeBytes(): number {
    return this.#header.blockSizeBytes;
  }

  /** Number of virtual blocks (the last one may extend past the virtual size). */
  get blockCount(): number {
    return this.#header.blockCount;
  }

  /** Number of blocks that have storage in the file. */
  get allocatedBlocks(): number {
    return this.#allocatedBlocks;
  }

  /** Whether the image was opened read-only. */
  get readOnly(): boolean {
    return this.#readOnly;
  }

  /**
   * Reads `lengthBytes` of the virtual disk starting at `offsetBytes`. Both must be
   * multiples of 512 and the range must lie inside the virtual size. Unallocated
   * blocks read as zeros.
   */
  read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    return this.#track(async () => {
      this.#checkRange("read", offsetBytes, lengthBytes);
      const out = new Uint8Array(lengthBytes);
      await Promise.all(
        this.#segments(offsetBytes, lengthBytes).map(async (seg) => {
          const blockOffsetBytes = this.#bat[seg.blockIndex]!;
          if (blockOffsetBytes === 0) return; // already zeros
          const target = out.subarray(seg.bufferOffsetBytes, seg.bufferOffsetBytes + seg.lengthBytes);
          await DiskImage.#readOrFail(
            this.#handle,
            this.#path,
            target,
            blockOffsetBytes + seg.inBlockOffsetBytes,
            `block ${seg.blockIndex}`,
          );
        }),
      );
      return out;
    });
  }

  /**
   * Writes `data` to the virtual disk at `offsetBytes`. Offset and length must be
   * multiples of 512 and the range must lie inside the virtual size. Resolves once
   * the data is durable: written and synced, and for newly allocated blocks the
   * block is synced before its BAT entry is written and synced.
   */
  write(offsetBytes: number, data: Uint8Array): Promise<void> {
    return this.#track(async () => {
      if (this.#readOnly) throw new DiskImageError("read-only", this.#path, "cannot write: the image is open read-only");
      this.#checkRange("write", offsetBytes, data.length);
      if (data.length === 0) return;
      const segments = this.#segments(offsetBytes, data.length);
      const existing = segments.filter((s) => this.#bat[s.blockIndex] !== 0);
      const fresh = segments.filter((s) => this.#bat[s.blockIndex] === 0);
      await this.#io("write", async () => {
        for (const seg of existing) await this.#writeIntoBlock(seg, data);
      });
      if (fresh.length > 0) {
        // Allocation (and its two-step data-then-BAT commit) is serialized; the sync inside covers `existing` too.
        await this.#withAllocationLock(() => this.#allocateAndWrite(fresh, data));
      } else {
        await this.#io("sync", () => this.#handle.datasync());
      }
    });
  }

  /** Syncs the image file. Writes are already durable when they resolve; this is for callers that want a barrier. */
  flush(): Promise<void> {
    return this.#track(async () => {
      if (this.#readOnly) return;
      await this.#io("flush", () => this.#handle.sync());
    });
  }

  /** Waits for operations already started, then closes the file. Closing twice is harmless. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#inFlight]);
    await this.#io("close", () => this.#handle.close());
  }

  async #allocateAndWrite(segments: Segment[], data: Uint8Array): Promise<void> {
    const blockSizeBytes = this.#header.blockSizeBytes;
    const newEntries: { blockIndex: number; offsetBytes: number }[] = [];
    await this.#io("write", async () => {
      for (const seg of segments) {
        if (this.#bat[seg.blockIndex] !== 0) {
          // Another write allocated this block while this one waited for the lock.
          await this.#writeIntoBlock(seg, data);
          continue;
        }
        const offsetBytes = this.#nextBlockOffsetBytes;
        this.#nextBlockOffsetBytes += blockSizeBytes;
        const block = new Uint8Array(blockSizeBytes);
        block.set(
          data.subarray(seg.bufferOffsetBytes, seg.bufferOffsetBytes + seg.lengthBytes),
          seg.inBlockOffsetBytes,
        );
        await writeFully(this.#handle, block, offsetBytes);
        newEntries.push({ blockIndex: seg.blockIndex, offsetBytes });
      }
    });
    // Data first: the blocks must be on disk before any BAT entry points at them.
    await this.#io("sync", () => this.#handle.datasync());
    if (newEntries.length === 0) return;
    await this.#io("write BAT", async () => {
      for (const { blockIndex, offsetBytes } of newEntries) {
        const entryOffsetBytes = this.#header.batOffsetBytes + blockIndex * BAT_ENTRY_SIZE_BYTES;
        await writeFully(this.#handle, encodeBatEntry(blockIndex, offsetBytes), entryOffsetBytes);
      }
    });
    await this.#io("sync", () => this.#handle.datasync());
    for (const { blockIndex, offsetBytes } of newEntries) {
      this.#bat[blockIndex] = offsetBytes;
      this.#allocatedBlocks++;
    }
  }

  async #writeIntoBlock(seg: Segment, data: Uint8Array): Promise<void> {
    await writeFully(
      this.#handle,
      data.subarray(seg.bufferOffsetBytes, seg.bufferOffsetBytes + seg.lengthBytes),
      this.#bat[seg.blockIndex]! + seg.inBlockOffsetBytes,
    );
  }

  #withAllocationLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#allocationTail.then(fn);
    this.#allocationTail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** Runs an operation unless the image is closed, and lets `close` wait for it. */
  #track<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) {
      return Promise.reject(new DiskImageError("closed", this.#path, "the image is closed"));
    }
    const run = fn();
    this.#inFlight.add(run);
    const forget = (): void => {
      this.#inFlight.delete(run);
    };
    run.then(forget, forget);
    return run;
  }

  async #io<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof DiskImageError) throw err;
      throw new DiskImageError("io", this.#path, `${what} failed: ${describeCause(err)}`, err);
    }
  }

  #checkRange(op: "read" | "write", offsetBytes: number, lengthBytes: number): void {
    const bad = (detail: string): never => {
      throw new DiskImageError("invalid-argument", this.#path, `cannot ${op}: ${detail}`);
    };
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || offsetBytes % DISK_SECTOR_SIZE_BYTES !== 0) {
      bad(`offset ${offsetBytes} is not a non-negative multiple of ${DISK_SECTOR_SIZE_BYTES}`);
    }
    if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0 || lengthBytes % DISK_SECTOR_SIZE_BYTES !== 0) {
      bad(`length ${lengthBytes} is not a multiple of ${DISK_SECTOR_SIZE_BYTES}`);
    }
    if (offsetBytes + lengthBytes > this.#header.sizeBytes) {
      bad(
        `range ${offsetBytes}..${offsetBytes + lengthBytes} is outside the virtual size of ${this.#header.sizeBytes} bytes`,
      );
    }
  }

  #segments(offsetBytes: number, lengthBytes: number): Segment[] {
    const blockSizeBytes = this.#header.blockSizeBytes;
    const segments: Segment[] = [];
    let done = 0;
    while (done < lengthBytes) {
      const virtualBytes = offsetBytes + done;
      const blockIndex = Math.floor(virtualBytes / blockSizeBytes);
      const inBlockOffsetBytes = virtualBytes - blockIndex * blockSizeBytes;
      const length = Math.min(blockSizeBytes - inBlockOffsetBytes, lengthBytes - done);
      segments.push({ blockIndex, inBlockOffsetBytes, lengthBytes: length, bufferOffsetBytes: done });
      done += length;
    }
    return segments;
  }
}
