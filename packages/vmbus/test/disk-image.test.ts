import fc from "fast-check";
import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 as zlibCrc32 } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { DiskImageErrorKind } from "../src/disk-image.js";
import { DiskImage, DiskImageError, diskImageCrc32 } from "../src/disk-image.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const SECTOR = 512;

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "hfdisk-"));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function pattern(lengthBytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(lengthBytes);
  for (let i = 0; i < lengthBytes; i++) out[i] = (seed * 31 + i * 7 + (i >> 9)) & 0xff;
  return out;
}

async function expectDiskError(promise: Promise<unknown>, kind: DiskImageErrorKind, message: RegExp | string): Promise<DiskImageError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(DiskImageError);
  const err = caught as DiskImageError;
  expect(err.name).toBe("DiskImageError");
  expect(err.kind).toBe(kind);
  if (typeof message === "string") expect(err.message).toContain(message);
  else expect(err.message).toMatch(message);
  return err;
}

/** Rewrites header bytes with `edit`, then fixes the header CRC so only the edit is seen. */
async function editHeader(path: string, edit: (view: DataView) => void): Promise<void> {
  const file = await readFile(path);
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  edit(view);
  view.setUint32(508, diskImageCrc32(file.subarray(0, 508)), true);
  await writeFile(path, file);
}

async function flipByte(path: string, offsetBytes: number): Promise<void> {
  const file = await readFile(path);
  file[offsetBytes] = file[offsetBytes]! ^ 0x40;
  await writeFile(path, file);
}

/** Makes a closed 4-block image (64 KiB blocks) with blocks 0, 1 and 2 written, in that order. */
async function imageWithThreeBlocks(): Promise<{ path: string; dataOffsetBytes: number }> {
  const path = join(dir, "three.hfd");
  const image = await DiskImage.create(path, { sizeBytes: 256 * KiB, blockSizeBytes: 64 * KiB });
  for (let block = 0; block < 3; block++) await image.write(block * 64 * KiB, pattern(SECTOR, block));
  await image.close();
  const info = await DiskImage.info(path);
  return { path, dataOffsetBytes: info.dataOffsetBytes };
}

describe("disk-image", () => {
  it("disk-image - crc32 matches zlib", () => {
    const data = new TextEncoder().encode("123456789");
    expect(diskImageCrc32(data)).toBe(0xcbf43926);
    const big = pattern(10_000, 3);
    expect(diskImageCrc32(big)).toBe(zlibCrc32(big));
    expect(diskImageCrc32(big.subarray(5000), diskImageCrc32(big.subarray(0, 5000)))).toBe(zlibCrc32(big));
  });

  it("disk-image - create/open round trip keeps the geometry", async () => {
    const path = join(dir, "disk.hfd");
    const created = await DiskImage.create(path, { sizeBytes: 10 * MiB + 3 * SECTOR, blockSizeBytes: 256 * KiB });
    expect(created.path).toBe(path);
    expect(created.sizeBytes).toBe(10 * MiB + 3 * SECTOR);
    expect(created.blockSizeBytes).toBe(256 * KiB);
    expect(created.blockCount).toBe(41);
    expect(created.allocatedBlocks).toBe(0);
    await created.close();

    const opened = await DiskImage.open(path);
    expect(opened.sizeBytes).toBe(10 * MiB + 3 * SECTOR);
    expect(opened.blockSizeBytes).toBe(256 * KiB);
    expect(opened.allocatedBlocks).toBe(0);
    expect(opened.readOnly).toBe(false);
    await opened.close();

    const info = await DiskImage.info(path);
    expect(info).toMatchObject({
      path,
      formatVersionMajor: 1,
      formatVersionMinor: 0,
      sizeBytes: 10 * MiB + 3 * SECTOR,
      blockSizeBytes: 256 * KiB,
      blockCount: 41,
      allocatedBlocks: 0,
      allocatedBytes: 0,
      batOffsetBytes: 512,
    });
    expect(info.dataOffsetBytes).toBeGreaterThanOrEqual(512 + 41 * 16);
    expect(info.fileSizeBytes).toBe(info.dataOffsetBytes);
  });

  it("disk-image - default block size is 1 MiB", async () => {
    const image = await DiskImage.create(join(dir, "d.hfd"), { sizeBytes: 4 * MiB });
    expect(image.blockSizeBytes).toBe(MiB);
    expect(image.blockCount).toBe(4);
    await image.close();
  });

  it("disk-image - sparse image reads zeros and the file stays small", async () => {
    const path = join(dir, "sparse.hfd");
    const image = await DiskImage.create(path, { sizeBytes: GiB });
    await image.write(0, pattern(SECTOR, 1));
    await image.write(512 * MiB + 7 * SECTOR, pattern(SECTOR, 2));
    expect(image.allocatedBlocks).toBe(2);
    expect(await image.read(SECTOR, 4 * SECTOR)).toEqual(new Uint8Array(4 * SECTOR));
    expect(await image.read(700 * MiB, 64 * KiB)).toEqual(new Uint8Array(64 * KiB));
    expect(await image.read(GiB - SECTOR, SECTOR)).toEqual(new Uint8Array(SECTOR));
    // The rest of an allocated block was zero-filled.
    expect(await image.read(512 * MiB, 7 * SECTOR)).toEqual(new Uint8Array(7 * SECTOR));
    expect(await image.read(0, SECTOR)).toEqual(pattern(SECTOR, 1));
    expect(await image.read(512 * MiB + 7 * SECTOR, SECTOR)).toEqual(pattern(SECTOR, 2));
    await image.close();
    expect((await stat(path)).size).toBeLessThan(4 * MiB);
    const info = await DiskImage.info(path);
    expect(info.allocatedBlocks).toBe(2);
    expect(info.allocatedBytes).toBe(2 * MiB);
  });

  it("disk-image - data survives close and reopen", async () => {
    const path = join(dir, "persist.hfd");
    const image = await DiskImage.create(path, { sizeBytes: 8 * MiB, blockSizeBytes: 64 * KiB });
    await image.write(3 * MiB, pattern(8 * KiB, 9));
    await image.write(3 * MiB + 2 * KiB, pattern(SECTOR, 10)); // overwrite inside an allocated block
    await image.flush();
    await image.close();

    const reopened = await DiskImage.open(path);
    expect(reopened.allocatedBlocks).toBe(1);
    const expected = pattern(8 * KiB, 9);
    expected.set(pattern(SECTOR, 10), 2 * KiB);
    expect(await reopened.read(3 * MiB, 8 * KiB)).toEqual(expected);
    await reopened.write(0, pattern(SECTOR, 11));
    await reopened.close();

    const readOnly = await DiskImage.open(path, { readOnly: true });
    expect(readOnly.readOnly).toBe(true);
    expect(readOnly.allocatedBlocks).toBe(2);
    expect(await readOnly.read(0, SECTOR)).toEqual(pattern(SECTOR, 11));
    expect(await readOnly.read(3 * MiB, 8 * KiB)).toEqual(expected);
    await readOnly.close();
  });

  it("disk-image - a write spanning two blocks lands in both", async () => {
    const path = join(dir, "span.hfd");
    const image = await DiskImage.create(path, { sizeBytes: MiB, blockSizeBytes: 64 * KiB });
    const data = pattern(16 * KiB, 5);
    const offsetBytes = 64 * KiB - 4 * KiB; // 4 KiB in block 0, 12 KiB in block 1
    await image.write(offsetBytes, data);
    expect(image.allocatedBlocks).toBe(2);
    expect(await image.read(offsetBytes, data.length)).toEqual(data);
    // A read spanning an allocated block and an unallocated one.
    const tail = await image.read(64 * KiB, 128 * KiB);
    expect(tail.subarray(0, 12 * KiB)).toEqual(data.subarray(4 * KiB));
    expect(tail.subarray(12 * KiB)).toEqual(new Uint8Array(128 * KiB - 12 * KiB));
    await image.close();

    const reopened = await DiskImage.open(path);
    expect(await reopened.read(offsetBytes, data.length)).toEqual(data);
    await reopened.close();
  });

  it("disk-image - random writes and reads match an in-memory oracle", async () => {
    const blockSizeBytes = 64 * KiB;
    const sizeBytes = 4 * blockSizeBytes + 3 * SECTOR; // the last block is only partly inside the disk
    const sectors = sizeBytes / SECTOR;
    const op = fc.oneof(
      fc.record({
        kind: fc.constant("write" as const),
        sector: fc.integer({ min: 0, max: sectors - 1 }),
        count: fc.integer({ min: 1, max: 300 }),
        seed: fc.integer({ min: 0, max: 255 }),
      }),
      fc.record({
        kind: fc.constant("read" as const),
        sector: fc.integer({ min: 0, max: sectors - 1 }),
        count: fc.integer({ min: 1, max: 300 }),
      }),
      fc.record({ kind: fc.constant("reopen" as const) }),
    );
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
        const path = join(dir, `oracle-${run++}.hfd`);
        const oracle = Buffer.alloc(sizeBytes);
        let image = await DiskImage.create(path, { sizeBytes, blockSizeBytes });
        try {
          for (const o of ops) {
            if (o.kind === "reopen") {
              await image.close();
              image = await DiskImage.open(path);
              continue;
            }
            const count = Math.min(o.count, sectors - o.sector);
            const offsetBytes = o.sector * SECTOR;
            if (o.kind === "write") {
              const data = pattern(count * SECTOR, o.seed);
              await image.write(offsetBytes, data);
              oracle.set(data, offsetBytes);
            } else {
              const got = await image.read(offsetBytes, count * SECTOR);
              expect(Buffer.from(got).equals(oracle.subarray(offsetBytes, offsetBytes + count * SECTOR))).toBe(true);
            }
          }
          expect(Buffer.from(await image.read(0, sizeBytes)).equals(oracle)).toBe(true);
        } finally {
          await image.close();
        }
        const reopened = await DiskImage.open(path, { readOnly: true });
        expect(Buffer.from(await reopened.read(0, sizeBytes)).equals(oracle)).toBe(true);
        await reopened.close();
        await rm(path);
      }),
      { numRuns: 30, seed: 0x5eed },
    );
  });

  it("disk-image - concurrent writes to different blocks all land", async () => {
    const path = join(dir, "concurrent.hfd");
    const blockSizeBytes = 64 * KiB;
    const image = await DiskImage.create(path, { sizeBytes: 32 * blockSizeBytes, blockSizeBytes });
    const writes: Promise<void>[] = [];
    for (let block = 0; block < 16; block++) {
      writes.push(image.write(block * blockSizeBytes + 2 * SECTOR, pattern(SECTOR, block)));
    }
    // Several writers racing to allocate the same block, each to its own sector.
    for (let sector = 0; sector < 8; sector++) {
      writes.push(image.write(20 * blockSizeBytes + sector * SECTOR, pattern(SECTOR, 100 + sector)));
    }
    const reads = [image.read(0, 4 * blockSizeBytes), image.read(20 * blockSizeBytes, blockSizeBytes)];
    await Promise.all([...writes, ...reads]);
    expect(image.allocatedBlocks).toBe(17);
    await image.close();

    const reopened = await DiskImage.open(path);
    expect(reopened.allocatedBlocks).toBe(17);
    for (let block = 0; block < 16; block++) {
      expect(await reopened.read(block * blockSizeBytes + 2 * SECTOR, SECTOR)).toEqual(pattern(SECTOR, block));
    }
    for (let sector = 0; sector < 8; sector++) {
      expect(await reopened.read(20 * blockSizeBytes + sector * SECTOR, SECTOR)).toEqual(pattern(SECTOR, 100 + sector));
    }
    await reopened.close();
  });

  it("disk-image - close waits for writes already started and later calls are refused", async () => {
    const path = join(dir, "close.hfd");
    const image = await DiskImage.create(path, { sizeBytes: MiB, blockSizeBytes: 64 * KiB });
    const pending = image.write(0, pattern(SECTOR, 1));
    await image.close();
    await pending;
    await image.close(); // a second close is harmless
    await expectDiskError(image.read(0, SECTOR), "closed", `disk image ${path}: the image is closed`);
    await expectDiskError(image.write(0, pattern(SECTOR, 2)), "closed", "the image is closed");
    const reopened = await DiskImage.open(path, { readOnly: true });
    expect(await reopened.read(0, SECTOR)).toEqual(pattern(SECTOR, 1));
    await reopened.close();
  });

  it("disk-image - refuses a truncated last block", async () => {
    const { path, dataOffsetBytes } = await imageWithThreeBlocks();
    const fullSizeBytes = (await stat(path)).size;
    expect(fullSizeBytes).toBe(dataOffsetBytes + 3 * 64 * KiB);
    await truncate(path, fullSizeBytes - 1000);
    await expectDiskError(
      DiskImage.open(path),
      "truncated",
      `disk image ${path}: truncated: block 2 at offset ${dataOffsetBytes + 2 * 64 * KiB} needs 65536 bytes, ` +
        `the file has ${fullSizeBytes - 1000}`,
    );
    await expectDiskError(DiskImage.info(path), "truncated", "truncated: block 2");
  });

  it("disk-image - refuses a truncated header and a truncated BAT", async () => {
    const { path } = await imageWithThreeBlocks();
    await truncate(path, 560);
    await expectDiskError(DiskImage.open(path), "truncated", "truncated: BAT at offset 512 needs 64 bytes, the file has 560");
    await truncate(path, 100);
    await expectDiskError(DiskImage.open(path), "truncated", `disk image ${path}: truncated: header needs 512 bytes, the file has 100`);
    await truncate(path, 0);
    await expectDiskError(DiskImage.open(path), "truncated", "the file has 0");
  });

  it("disk-image - refuses a flipped byte in the header", async () => {
    const { path } = await imageWithThreeBlocks();
    await flipByte(path, 20); // inside the virtual size field
    await expectDiskError(DiskImage.open(path), "corrupt", /disk image .*three\.hfd: header checksum mismatch \(stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\)/);
    await flipByte(path, 20);
    await flipByte(path, 300); // inside the reserved area, still covered by the checksum
    await expectDiskError(DiskImage.open(path), "corrupt", "header checksum mismatch");
    await flipByte(path, 300);
    await flipByte(path, 2); // the magic number
    await expectDiskError(DiskImage.open(path), "corrupt", "not an HFDISK image (bad magic number)");
  });

  it("disk-image - refuses a flipped byte in the BAT", async () => {
    const { path } = await imageWithThreeBlocks();
    const entry = (block: number): number => 512 + block * 16;
    await flipByte(path, entry(1) + 1); // the offset of an allocated block
    await expectDiskError(DiskImage.open(path), "corrupt", `disk image ${path}: BAT entry for block 1 is corrupt (checksum mismatch)`);
    await flipByte(path, entry(1) + 1);
    await flipByte(path, entry(3) + 5); // an unallocated entry
    await expectDiskError(DiskImage.open(path), "corrupt", "BAT entry for block 3 is corrupt (checksum mismatch)");
    await flipByte(path, entry(3) + 5);
    const image = await DiskImage.open(path);
    expect(image.allocatedBlocks).toBe(3);
    await image.close();
  });

  it("disk-image - refuses two blocks at the same offset", async () => {
    const { path, dataOffsetBytes } = await imageWithThreeBlocks();
    const file = await readFile(path);
    const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
    const at = 512 + 2 * 16;
    view.setBigUint64(at, BigInt(dataOffsetBytes), true); // block 2 now claims block 0's storage
    view.setUint32(at + 12, diskImageCrc32(file.subarray(at, at + 12)), true);
    await writeFile(path, file);
    await expectDiskError(DiskImage.open(path), "corrupt", /blocks 0 and 2 overlap|blocks 2 and 0 overlap/);
  });

  it("disk-image - refuses a newer major or minor version and names both versions", async () => {
    const { path } = await imageWithThreeBlocks();
    await editHeader(path, (view) => view.setUint16(8, 2, true));
    await expectDiskError(
      DiskImage.open(path),
      "version",
      `disk image ${path}: unsupported format version 2.0: this reader supports version 1.0 and older minor versions of major 1`,
    );
    await editHeader(path, (view) => {
      view.setUint16(8, 1, true);
      view.setUint16(10, 1, true);
    });
    await expectDiskError(DiskImage.open(path), "version", "unsupported format version 1.1");
    await editHeader(path, (view) => view.setUint16(10, 0, true));
    const image = await DiskImage.open(path);
    await image.close();
  });

  it("disk-image - refuses unaligned or out-of-range reads and writes", async () => {
    const path = join(dir, "range.hfd");
    const image = await DiskImage.create(path, { sizeBytes: MiB, blockSizeBytes: 64 * KiB });
    await expectDiskError(image.read(100, SECTOR), "invalid-argument", `disk image ${path}: cannot read: offset 100 is not a non-negative multiple of 512`);
    await expectDiskError(image.read(0, 1000), "invalid-argument", "cannot read: length 1000 is not a multiple of 512");
    await expectDiskError(image.read(-512, SECTOR), "invalid-argument", "cannot read: offset -512");
    await expectDiskError(image.read(MiB, SECTOR), "invalid-argument", "cannot read: range 1048576..1049088 is outside the virtual size of 1048576 bytes");
    await expectDiskError(image.read(MiB - SECTOR, 2 * SECTOR), "invalid-argument", "outside the virtual size of 1048576 bytes");
    await expectDiskError(image.write(SECTOR + 1, pattern(SECTOR, 0)), "invalid-argument", "cannot write: offset 513 is not a non-negative multiple of 512");
    await expectDiskError(image.write(0, pattern(100, 0)), "invalid-argument", "cannot write: length 100 is not a multiple of 512");
    await expectDiskError(image.write(MiB, pattern(SECTOR, 0)), "invalid-argument", "cannot write: range 1048576..1049088 is outside the virtual size of 1048576 bytes");
    expect(image.allocatedBlocks).toBe(0);
    expect(await image.read(0, 0)).toEqual(new Uint8Array(0));
    await image.close();

    const readOnly = await DiskImage.open(path, { readOnly: true });
    await expectDiskError(readOnly.write(0, pattern(SECTOR, 0)), "read-only", "cannot write: the image is open read-only");
    await readOnly.close();
  });

  it("disk-image - create refuses an existing file and leaves it untouched", async () => {
    const path = join(dir, "precious.hfd");
    await writeFile(path, "do not overwrite");
    await expectDiskError(
      DiskImage.create(path, { sizeBytes: MiB }),
      "exists",
      `disk image ${path}: cannot create: file already exists (refusing to overwrite)`,
    );
    expect(await readFile(path, "utf8")).toBe("do not overwrite");

    const imagePath = join(dir, "image.hfd");
    const image = await DiskImage.create(imagePath, { sizeBytes: MiB, blockSizeBytes: 64 * KiB });
    await image.write(0, pattern(SECTOR, 4));
    await image.close();
    await expectDiskError(DiskImage.create(imagePath, { sizeBytes: 2 * MiB }), "exists", "already exists");
    const reopened = await DiskImage.open(imagePath);
    expect(reopened.sizeBytes).toBe(MiB);
    expect(await reopened.read(0, SECTOR)).toEqual(pattern(SECTOR, 4));
    await reopened.close();
  });

  it("disk-image - of two racing creators one wins and no temporary file is left; the leftover of a creation that died does not block a new one", async () => {
    const path = join(dir, "raced.hfd");
    const results = await Promise.allSettled([DiskImage.create(path, { sizeBytes: MiB }), DiskImage.create(path, { sizeBytes: 2 * MiB })]);
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.filter((r) => r.status === "rejected");
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect((lost[0] as PromiseRejectedResult).reason).toMatchObject({ kind: "exists" });
    const winner = (won[0] as PromiseFulfilledResult<DiskImage>).value;
    await winner.write(0, pattern(SECTOR, 9));
    await winner.close();
    expect(await readdir(dir)).toEqual(["raced.hfd"]);
    const reopened = await DiskImage.open(path);
    expect(await reopened.read(0, SECTOR)).toEqual(pattern(SECTOR, 9));
    await reopened.close();
    // a creation that died half-way left only its temporary file behind: the image can still be made
    await writeFile(join(dir, "fresh.hfd.creating.elsewhere.1.1"), "half");
    await (await DiskImage.create(join(dir, "fresh.hfd"), { sizeBytes: MiB })).close();
    await (await DiskImage.open(join(dir, "fresh.hfd"))).close();
  });

  it("disk-image - create refuses bad geometry and open names a missing or foreign file", async () => {
    const path = join(dir, "bad.hfd");
    await expectDiskError(DiskImage.create(path, { sizeBytes: 1000 }), "invalid-argument", "virtual size 1000 is not a positive multiple of 512 bytes");
    await expectDiskError(DiskImage.create(path, { sizeBytes: 0 }), "invalid-argument", "virtual size 0");
    await expectDiskError(
      DiskImage.create(path, { sizeBytes: MiB, blockSizeBytes: 100 * KiB }),
      "invalid-argument",
      "block size 102400 is not a power of two from 65536 to 16777216 bytes",
    );
    await expectDiskError(DiskImage.create(path, { sizeBytes: MiB, blockSizeBytes: 32 * KiB }), "invalid-argument", "block size 32768");
    await expectDiskError(DiskImage.create(path, { sizeBytes: MiB, blockSizeBytes: 32 * MiB }), "invalid-argument", "block size 33554432");
    await expectDiskError(DiskImage.create(path, { sizeBytes: 1024 * GiB, blockSizeBytes: 64 * KiB }), "invalid-argument", "use a larger block size");
    await expect(stat(path)).rejects.toThrow(/ENOENT/);

    await expectDiskError(DiskImage.open(join(dir, "missing.hfd")), "not-found", `disk image ${join(dir, "missing.hfd")}: cannot open`);
    const foreign = join(dir, "foreign.bin");
    await writeFile(foreign, Buffer.alloc(4096, 7));
    await expectDiskError(DiskImage.open(foreign), "corrupt", "not an HFDISK image");
  });
});
