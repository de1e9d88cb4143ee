/**
 * Block compression of page batches. `Codec` is the small interface the batch format needs; `lz4Codec`
 * implements it with lz4-napi's block functions.
 *
 * lz4-napi's block format is an LZ4 block preceded by the uncompressed length as a little-endian u32.
 * Since the caller always knows the size it expects, `decompress` refuses a block whose prefix declares
 * another size before decoding (so a corrupt prefix cannot make it allocate gigabytes), and checks the
 * decoded length afterwards (a corrupt block can decode to fewer bytes without an error).
 */
import { compressSync, uncompressSync } from "lz4-napi";
import { CodecError } from "./errors.js";

export interface Codec {
  /** Short lowercase name, for metrics and logs ("lz4"). */
  readonly name: string;
  /** Compresses `data` (any length, possibly a view of a SharedArrayBuffer). */
  compress(data: Uint8Array): Uint8Array;
  /**
   * Decompresses `data`, which must decode to exactly `size` bytes. Throws CodecError on corrupt or
   * truncated input or any other length; never returns a partial result.
   */
  decompress(data: Uint8Array, size: number): Uint8Array;
}

/** Largest `size` decompress accepts: a batch is at most a few hundred KiB; this only bounds mistakes. */
export const LZ4_SIZE_MAX = 64 * 1024 * 1024;
const PREFIX = 4;

export const lz4Codec: Codec = {
  name: "lz4",
  compress(data: Uint8Array): Uint8Array {
    return compressSync(asBuffer(data));
  },
  decompress(data: Uint8Array, size: number): Uint8Array {
    if (!Number.isInteger(size) || size < 0 || size > LZ4_SIZE_MAX) throw new CodecError(`lz4: bad expected size ${size}`);
    if (data.length < PREFIX + 1) throw new CodecError(`lz4: block truncated (${data.length} bytes)`);
    const declared = (data[0]! | (data[1]! << 8) | (data[2]! << 16) | (data[3]! << 24)) >>> 0;
    if (declared !== size) throw new CodecError(`lz4: block declares ${declared} bytes, expected ${size}`);
    let out: Uint8Array;
    try {
      out = uncompressSync(asBuffer(data));
    } catch (e) {
      throw new CodecError(`lz4: corrupt block: ${(e as Error).message}`, { cause: e });
    }
    if (out.length !== size) throw new CodecError(`lz4: block decodes to ${out.length} bytes, expected ${size}`);
    return out;
  },
};

/** Keeps the compressed form only if it is at most `ratio` × the original length. */
export function compressIfWorthIt(codec: Codec, data: Uint8Array, ratio = 0.875): { compressed: boolean; data: Uint8Array } {
  if (!(ratio > 0 && ratio <= 1)) throw new CodecError(`compression ratio must be in (0, 1], got ${ratio}`);
  if (data.length === 0) return { compressed: false, data };
  const packed = codec.compress(data);
  return packed.length <= ratio * data.length ? { compressed: true, data: packed } : { compressed: false, data };
}

/** A Buffer over the same memory (no copy): the native functions take Buffers. */
function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
