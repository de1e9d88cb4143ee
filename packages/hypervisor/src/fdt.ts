/**
 * A flattened device tree (DTB) writer, devicetree specification v0.4 chapter 5: header, memory
 * reservation block, structure block, strings block, all big-endian.
 */

export type FdtValue = string | string[] | number | number[] | Uint8Array | true;

export interface FdtNode {
  name: string;
  props?: Record<string, FdtValue>;
  children?: FdtNode[];
}

const FDT_MAGIC = 0xd00dfeed;
const FDT_BEGIN_NODE = 1;
const FDT_END_NODE = 2;
const FDT_PROP = 3;
const FDT_END = 9;

/** Serializes a tree. Numbers are 32-bit cells; arrays of numbers are cell lists; true is an empty property. */
export function buildFdt(root: FdtNode, bootCpu = 0): Uint8Array {
  const struct: number[] = [];
  const strings: number[] = [];
  const stringOffsets = new Map<string, number>();
  const encoder = new TextEncoder();

  const u32 = (v: number): void => {
    struct.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  };
  const bytes = (b: Uint8Array): void => {
    for (const x of b) struct.push(x);
    while (struct.length % 4 !== 0) struct.push(0);
  };
  const stringOffset = (name: string): number => {
    let off = stringOffsets.get(name);
    if (off === undefined) {
      off = strings.length;
      stringOffsets.set(name, off);
      for (const x of encoder.encode(name)) strings.push(x);
      strings.push(0);
    }
    return off;
  };
  const encodeValue = (value: FdtValue): Uint8Array => {
    if (value === true) return new Uint8Array(0);
    if (typeof value === "string") return encoder.encode(`${value}\0`);
    if (typeof value === "number") value = [value];
    if (value instanceof Uint8Array) return value;
    if (value.length > 0 && typeof value[0] === "string") return encoder.encode((value as string[]).map((s) => `${s}\0`).join(""));
    const cells = value as number[];
    const out = new Uint8Array(cells.length * 4);
    const view = new DataView(out.buffer);
    cells.forEach((c, i) => view.setUint32(i * 4, c >>> 0));
    return out;
  };
  const node = (n: FdtNode): void => {
    u32(FDT_BEGIN_NODE);
    bytes(encoder.encode(`${n.name}\0`));
    for (const [name, value] of Object.entries(n.props ?? {})) {
      const data = encodeValue(value);
      u32(FDT_PROP);
      u32(data.length);
      u32(stringOffset(name));
      bytes(data);
    }
    for (const child of n.children ?? []) node(child);
    u32(FDT_END_NODE);
  };
  node(root);
  u32(FDT_END);

  const headerSize = 40;
  const rsvmapOffset = headerSize;
  const rsvmapSize = 16; // one terminating entry
  const structOffset = rsvmapOffset + rsvmapSize;
  const stringsOffset = structOffset + struct.length;
  const total = stringsOffset + strings.length;
  const out = new Uint8Array((total + 7) & ~7);
  const view = new DataView(out.buffer);
  const header = [FDT_MAGIC, out.length, structOffset, stringsOffset, rsvmapOffset, 17, 16, bootCpu, strings.length, struct.length];
  header.forEach((v, i) => view.setUint32(i * 4, v));
  out.set(struct, structOffset);
  out.set(strings, stringsOffset);
  return out;
}

/** Reads a DTB back into a tree (for tests and tools). Throws on a malformed blob. */
export function parseFdt(blob: Uint8Array): FdtNode & { props: Record<string, Uint8Array> } {
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  if (blob.byteLength < 40 || view.getUint32(0) !== FDT_MAGIC) throw new Error("not a device tree blob (bad magic)");
  const structOffset = view.getUint32(8);
  const stringsOffset = view.getUint32(12);
  const decoder = new TextDecoder();
  const cString = (at: number): [string, number] => {
    let end = at;
    while (end < blob.length && blob[end] !== 0) end++;
    return [decoder.decode(blob.subarray(at, end)), end + 1];
  };
  type Parsed = FdtNode & { props: Record<string, Uint8Array>; children: Parsed[] };
  const stack: Parsed[] = [];
  let root: Parsed | undefined;
  let p = structOffset;
  for (;;) {
    if (p + 4 > blob.length) throw new Error("device tree blob truncated");
    const token = view.getUint32(p);
    p += 4;
    if (token === FDT_BEGIN_NODE) {
      const [name, next] = cString(p);
      p = (next + 3) & ~3;
      const n: Parsed = { name, props: {}, children: [] };
      if (stack.length > 0) stack[stack.length - 1]!.children.push(n);
      else root = n;
      stack.push(n);
    } else if (token === FDT_PROP) {
      const len = view.getUint32(p);
      const nameOff = view.getUint32(p + 4);
      const [name] = cString(stringsOffset + nameOff);
      stack[stack.length - 1]!.props[name] = blob.slice(p + 8, p + 8 + len);
      p = (p + 8 + len + 3) & ~3;
    } else if (token === FDT_END_NODE) {
      stack.pop();
    } else if (token === FDT_END) {
      break;
    } else if (token !== 4) {
      throw new Error(`bad device tree token ${token}`);
    }
  }
  if (root === undefined) throw new Error("device tree has no root node");
  return root;
}
