/**
 * The saved-state container: one file (or one migration `State` message) holding a partition's whole
 * state as named sections. Self-describing and versioned independently of package versions:
 *
 *   header   magic "HFSNAP\r\n" (8 bytes), major u16, minor u16, section count u32, body length u64
 *   section  id length u16, id (UTF-8), kind u8 (0 = JSON, 1 = binary), payload length u32,
 *            CRC-32 of the payload u32, payload
 *   trailer  CRC-32 of everything before it, u32
 *
 * All integers little-endian. A reader accepts the same major version and a minor version no newer
 * than its own, and refuses anything else with an error naming what is wrong (bad magic, newer format,
 * truncation, checksum mismatch, a section too big, a missing section).
 */
import { crc32 } from "node:zlib";

export const SNAPSHOT_MAGIC = Uint8Array.from([0x48, 0x46, 0x53, 0x4e, 0x41, 0x50, 0x0d, 0x0a]); // "HFSNAP\r\n"
export const SNAPSHOT_MAJOR = 1;
export const SNAPSHOT_MINOR = 1;
/** Limits that keep a hostile file from making the reader allocate without bound. */
export const MAX_SECTIONS = 4096;
export const MAX_SECTION_BYTES = 2 ** 32 - 1;
const HEADER = 24;

export class SnapshotError extends Error {
  override readonly name = "SnapshotError";
}

export type Section = { id: string; kind: "json"; value: unknown } | { id: string; kind: "binary"; data: Uint8Array };

/** Serializes sections into one buffer (a list of chunks, so big memory sections are not copied). */
export function encodeSnapshot(sections: readonly Section[]): Uint8Array[] {
  if (sections.length > MAX_SECTIONS) throw new SnapshotError(`too many sections: ${sections.length}`);
  const encoder = new TextEncoder();
  const chunks: Uint8Array[] = [];
  let bodyLength = 0;
  for (const s of sections) {
    const id = encoder.encode(s.id);
    if (id.length === 0 || id.length > 255) throw new SnapshotError(`bad section id "${s.id}"`);
    const payload = s.kind === "json" ? encoder.encode(JSON.stringify(s.value)) : s.data;
    if (payload.length > MAX_SECTION_BYTES) throw new SnapshotError(`section ${s.id} is too big (${payload.length} bytes)`);
    const head = new Uint8Array(2 + id.length + 1 + 4 + 4);
    const v = new DataView(head.buffer);
    v.setUint16(0, id.length, true);
    head.set(id, 2);
    v.setUint8(2 + id.length, s.kind === "json" ? 0 : 1);
    v.setUint32(3 + id.length, payload.length, true);
    v.setUint32(7 + id.length, crc32(payload), true);
    chunks.push(head, payload);
    bodyLength += head.length + payload.length;
  }
  const header = new Uint8Array(HEADER);
  const hv = new DataView(header.buffer);
  header.set(SNAPSHOT_MAGIC, 0);
  hv.setUint16(8, SNAPSHOT_MAJOR, true);
  hv.setUint16(10, SNAPSHOT_MINOR, true);
  hv.setUint32(12, sections.length, true);
  hv.setBigUint64(16, BigInt(bodyLength), true);
  let crc = crc32(header);
  for (const c of chunks) crc = crc32(c, crc);
  const trailer = new Uint8Array(4);
  new DataView(trailer.buffer).setUint32(0, crc, true);
  return [header, ...chunks, trailer];
}

/** Checks the header: magic, version, and that the file is as long as it says. Returns (count, body length). */
function checkHeader(file: Uint8Array): { count: number; bodyLength: number; view: DataView } {
  if (file.length < 8 || !SNAPSHOT_MAGIC.every((b, i) => file[i] === b)) {
    throw new SnapshotError("not a Hyperfleet snapshot (bad magic)");
  }
  if (file.length < HEADER + 4) throw new SnapshotError(`snapshot truncated: ${file.length} bytes, shorter than its header`);
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const major = view.getUint16(8, true);
  const minor = view.getUint16(10, true);
  if (major !== SNAPSHOT_MAJOR || minor > SNAPSHOT_MINOR) {
    throw new SnapshotError(`snapshot format ${major}.${minor} is not readable by this build (reads ${SNAPSHOT_MAJOR}.0 to ${SNAPSHOT_MAJOR}.${SNAPSHOT_MINOR})`);
  }
  const count = view.getUint32(12, true);
  const bodyLength = Number(view.getBigUint64(16, true));
  if (count > MAX_SECTIONS) throw new SnapshotError(`snapshot corrupt: ${count} sections`);
  const expected = HEADER + bodyLength + 4;
  if (file.length < expected) throw new SnapshotError(`snapshot truncated: ${file.length} of ${expected} bytes`);
  if (file.length > expected) throw new SnapshotError(`snapshot corrupt: ${file.length - expected} bytes after its end`);
  return { count, bodyLength, view };
}

/**
 * Reads only the header and the first section (checked against its own CRC) without reading the rest:
 * for a caller that needs, say, the memory size before handing the file to the code that restores it
 * (which verifies the whole file).
 */
export function snapshotInfo(file: Uint8Array): Section {
  const { count, bodyLength } = checkHeader(file);
  if (count === 0) throw new SnapshotError("snapshot has no sections");
  return readSections(file, 1, HEADER + bodyLength).sections.values().next().value!;
}

/** Parses and verifies a snapshot. Returns its sections by id. */
export function decodeSnapshot(file: Uint8Array): Map<string, Section> {
  const { count, bodyLength, view } = checkHeader(file);
  const expected = HEADER + bodyLength + 4;
  const trailer = view.getUint32(expected - 4, true);
  if (crc32(file.subarray(0, expected - 4)) !== trailer) throw new SnapshotError("snapshot corrupt: checksum mismatch");
  const { sections, end } = readSections(file, count, HEADER + bodyLength);
  if (end !== HEADER + bodyLength) throw new SnapshotError("snapshot corrupt: sections do not fill the body");
  return sections;
}

/** Reads the first `count` sections (each checked against its CRC) of a body ending at `end`; says where they stop. */
function readSections(file: Uint8Array, count: number, end: number): { sections: Map<string, Section>; end: number } {
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const decoder = new TextDecoder();
  const sections = new Map<string, Section>();
  let p = HEADER;
  for (let i = 0; i < count; i++) {
    if (p + 2 > end) throw new SnapshotError(`snapshot corrupt: section ${i} header runs past the end`);
    const idLength = v.getUint16(p, true);
    if (p + 2 + idLength + 9 > end) throw new SnapshotError(`snapshot corrupt: section ${i} header runs past the end`);
    const id = decoder.decode(file.subarray(p + 2, p + 2 + idLength));
    const kind = v.getUint8(p + 2 + idLength);
    const length = v.getUint32(p + 3 + idLength, true);
    const crc = v.getUint32(p + 7 + idLength, true);
    const start = p + 11 + idLength;
    if (start + length > end) throw new SnapshotError(`snapshot corrupt: section ${id} runs past the end`);
    const payload = file.subarray(start, start + length);
    if (crc32(payload) !== crc) throw new SnapshotError(`snapshot corrupt: section ${id} checksum mismatch`);
    if (kind === 0) {
      let value: unknown;
      try {
        value = JSON.parse(decoder.decode(payload));
      } catch {
        throw new SnapshotError(`snapshot corrupt: section ${id} is not valid JSON`);
      }
      sections.set(id, { id, kind: "json", value });
    } else if (kind === 1) {
      sections.set(id, { id, kind: "binary", data: payload });
    } else {
      throw new SnapshotError(`snapshot corrupt: section ${id} has unknown kind ${kind}`);
    }
    p = start + length;
  }
  return { sections, end: p };
}

/** Concatenates chunks (for callers that need one buffer). */
export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let p = 0;
  for (const c of chunks) {
    out.set(c, p);
    p += c.length;
  }
  return out;
}
