/**
 * The page codec of live migration: zero-page detection, page deltas against the last-sent copy,
 * LZ4 block compression, the sender's bounded memory of sent pages, and the wire format of a batch of
 * pages. Pure functions and classes, no I/O.
 */
export { CodecError } from "./errors.js";
export { isZeroPage } from "./zero.js";
export { decodeDelta, encodeDelta, encodeDeltaInto, validateDelta } from "./delta.js";
export { compressIfWorthIt, lz4Codec, LZ4_SIZE_MAX } from "./lz4.js";
export type { Codec } from "./lz4.js";
export { SentPages, SENT_PAGES_BUDGET_BYTES_DEFAULT } from "./sent-pages.js";
export type { SentPagesOptions, SentPagesStats } from "./sent-pages.js";
export {
  applyBatch,
  BATCH_FLAG_LZ4,
  BATCH_HEADER_BYTES,
  BATCH_MAX_BYTES_DEFAULT,
  BATCH_MAX_BYTES_LIMIT,
  BATCH_VERSION,
  BatchBuilder,
  decodeBatch,
  encodeBatch,
  GPN_MAX,
  PAGE_SIZE_DEFAULT,
  pageChecksum,
} from "./page-batch.js";
export type { BatchBuilderStats, BatchEntry, BatchOptions, PageKind } from "./page-batch.js";
export { codecBench } from "./bench.js";
export { warmCodec } from "./warm.js";
export type { CodecBenchOptions, CodecBenchResult } from "./bench.js";
