/**
 * The storage VSP: serves one virtual disk (a DiskImage) to a guest's storage channel.
 *
 *   guest READ  {u64 offset; u32 length}        -> {i32 status; data}
 *   guest WRITE {u64 offset; u32 length; data}  -> {i32 status}     once the data is durable
 *   guest FLUSH {}                              -> {i32 status}
 *   guest INFO  {}                              -> {i32 status; u32 sector; u64 size}
 *
 * Offsets and lengths are multiples of 512 inside the disk; a length is at most STORAGE_MAX_IO.
 * A bad request gets EINVAL, a failed disk EIO (the VM keeps running; the error is reported).
 */
import type { DiskImage } from "./disk-image.js";
import type { Packet } from "./ring.js";
import type { ChannelEnd, Vsp } from "./vmbus.js";

export const StorageOp = { Read: 1, Write: 2, Flush: 3, Info: 4 } as const;
export const STORAGE_SECTOR_BYTES = 512;
export const STORAGE_MAX_IO = 64 * 1024;
export const EIO = -5;
export const EINVAL = -22;

export interface StorageStats {
  reads: number;
  writes: number;
  flushes: number;
  readBytes: number;
  writtenBytes: number;
  errors: number;
}

export class StorageVsp implements Vsp {
  readonly stats: StorageStats = { reads: 0, writes: 0, flushes: 0, readBytes: 0, writtenBytes: 0, errors: 0 };

  constructor(
    private readonly disk: DiskImage,
    private readonly onError: (error: Error) => void = () => {},
  ) {}

  open(): void {}

  close(): void {}

  async packet(p: Packet, channel: ChannelEnd): Promise<void> {
    const v = new DataView(p.payload.buffer, p.payload.byteOffset, p.payload.byteLength);
    const status = (s: number, extra: Uint8Array = new Uint8Array(0)): void => {
      const out = new Uint8Array(4 + extra.length);
      new DataView(out.buffer).setInt32(0, s, true);
      out.set(extra, 4);
      channel.reply(p, out);
    };
    const range = (): { offset: number; length: number } | undefined => {
      if (p.payload.length < 12) return undefined;
      const offset = Number(v.getBigUint64(0, true));
      const length = v.getUint32(8, true);
      const ok = offset % STORAGE_SECTOR_BYTES === 0 && length % STORAGE_SECTOR_BYTES === 0 && length <= STORAGE_MAX_IO && offset + length <= this.disk.sizeBytes;
      return ok ? { offset, length } : undefined;
    };
    try {
      switch (p.type) {
        case StorageOp.Read: {
          const r = range();
          if (r === undefined) return status(EINVAL);
          const data = r.length === 0 ? new Uint8Array(0) : await this.disk.read(r.offset, r.length);
          this.stats.reads++;
          this.stats.readBytes += r.length;
          return status(0, data);
        }
        case StorageOp.Write: {
          const r = range();
          if (r === undefined || p.payload.length !== 12 + r.length) return status(EINVAL);
          if (r.length > 0) await this.disk.write(r.offset, new Uint8Array(p.payload.subarray(12)));
          this.stats.writes++;
          this.stats.writtenBytes += r.length;
          return status(0);
        }
        case StorageOp.Flush:
          await this.disk.flush();
          this.stats.flushes++;
          return status(0);
        case StorageOp.Info: {
          const info = new Uint8Array(12);
          const iv = new DataView(info.buffer);
          iv.setUint32(0, STORAGE_SECTOR_BYTES, true);
          iv.setBigUint64(4, BigInt(this.disk.sizeBytes), true);
          return status(0, info);
        }
      }
      return status(EINVAL);
    } catch (e) {
      this.stats.errors++;
      this.onError(e as Error);
      return status(EIO);
    }
  }
}
