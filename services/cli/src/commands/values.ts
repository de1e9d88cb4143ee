/**
 * Option values of the operator commands, checked before anything is sent: a value that cannot be
 * read is a usage error (exit status 2) naming the option. Range checks the server also makes are
 * repeated here only where the CLI must convert the value first (sizes, rates, seconds).
 */
import {
  BANDWIDTH_LIMIT_BYTES_PER_SECOND_MAX, DISK_BYTES_MAX, DISK_SECTOR_BYTES, DOWNTIME_LIMIT_MS_MAX, GUEST_PAGE_BYTES, STOP_TIMEOUT_MS_MAX, VM_MEMORY_BYTES_MAX, VM_VCPUS_MAX,
  VM_VCPUS_MIN,
} from "@hyperfleet/api";
import { UsageError } from "../run.js";
import { parseSize } from "../size.js";

/** `--memory 256M`: a size as `run --mem` takes it, a whole number of guest pages, at most 2 GiB. */
export function memoryBytesOf(option: string, text: string): number {
  let bytes: number;
  try {
    bytes = parseSize(text);
  } catch (e) {
    throw new UsageError(`${option}: ${(e as Error).message}`);
  }
  if (bytes <= 0 || bytes % GUEST_PAGE_BYTES !== 0) throw new UsageError(`${option}: ${text} is not a positive multiple of 4K`);
  if (bytes > VM_MEMORY_BYTES_MAX) throw new UsageError(`${option}: ${text} is more than the 2G a VM can have`);
  return bytes;
}

/** A virtual disk size (`--disk 64M`): a positive multiple of 512 bytes, at most 64G. */
export function diskBytesOf(option: string, text: string): number {
  let bytes: number;
  try {
    bytes = parseSize(text);
  } catch (e) {
    throw new UsageError(`${option}: ${(e as Error).message}`);
  }
  if (bytes <= 0 || bytes % DISK_SECTOR_BYTES !== 0) throw new UsageError(`${option}: ${text} is not a positive multiple of 512 bytes`);
  if (bytes > DISK_BYTES_MAX) throw new UsageError(`${option}: ${text} is more than the 64G a disk can have`);
  return bytes;
}

/** An integer option within [min, max]. */
export function integerOf(option: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${option}: "${text}" is not an integer from ${min} to ${max}`);
  return n;
}

export function vcpusOf(text: string): number {
  return integerOf("--vcpus", text, VM_VCPUS_MIN, VM_VCPUS_MAX);
}

/** `--timeout 30`: seconds (fractions allowed), as milliseconds. */
export function stopTimeoutMsOf(text: string): number {
  const seconds = Number(text);
  const ms = Math.round(seconds * 1000);
  if (text.trim() === "" || !Number.isFinite(seconds) || ms <= 0 || ms > STOP_TIMEOUT_MS_MAX) {
    throw new UsageError(`--timeout: "${text}" is not a number of seconds from 0.001 to ${STOP_TIMEOUT_MS_MAX / 1000}`);
  }
  return ms;
}

/** `--downtime-limit 300` (milliseconds; a trailing "ms" is accepted). */
export function downtimeLimitMsOf(text: string): number {
  return integerOf("--downtime-limit", text.replace(/\s*ms$/i, ""), 1, DOWNTIME_LIMIT_MS_MAX);
}

const DECIMAL_UNITS: Record<string, number> = { "": 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12 };
const BINARY_UNITS: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/**
 * `--bandwidth-limit`: a link rate in bits per second as network links are given (`1G`, `500M`,
 * `10Gbit`, `100Mbps`), or bytes per second with a `B/s` unit (`125MB/s`, `100MiB/s`). 1G and
 * 125MB/s are the same limit. Returns bytes per second.
 */
export function bandwidthBytesPerSecondOf(text: string): number {
  const hint = "use a link rate such as 1G, 500M or 10Gbit (bits per second) or a byte rate such as 125MB/s or 100MiB/s";
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?)(bits?\/s|bit|bps|b\/s|b|B\/s|Bps|B)?$/.exec(text.trim());
  if (m === null) throw new UsageError(`--bandwidth-limit: bad rate "${text}": ${hint}`);
  const number = Number(m[1]);
  const prefix = m[2]!.toUpperCase();
  const binary = m[3] === "i";
  const unit = m[4];
  if (prefix === "" && (unit === undefined || binary)) throw new UsageError(`--bandwidth-limit: "${text}" needs a unit: ${hint}`);
  const bytes = unit !== undefined && unit.startsWith("B");
  const scale = binary ? BINARY_UNITS[prefix]! : DECIMAL_UNITS[prefix]!;
  const bytesPerSecond = Math.floor((number * scale) / (bytes ? 1 : 8));
  if (bytesPerSecond < 1) throw new UsageError(`--bandwidth-limit: "${text}" is less than 1 byte per second`);
  if (bytesPerSecond > BANDWIDTH_LIMIT_BYTES_PER_SECOND_MAX) throw new UsageError(`--bandwidth-limit: "${text}" is more than 1TB/s`);
  return bytesPerSecond;
}
