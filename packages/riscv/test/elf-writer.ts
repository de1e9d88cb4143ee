/** ELF32 files for tests: any header fields, several segments, an optional symbol table. */

export interface SegmentSpec {
  type?: number;
  paddr: number;
  vaddr?: number;
  data: Uint8Array;
  memSize?: number;
  flags?: number;
}

export interface ElfSpec {
  entry?: number;
  segments?: SegmentSpec[];
  symbols?: Record<string, number>;
  elfClass?: number;
  dataEncoding?: number;
  machine?: number;
  type?: number;
}

/** Builds an ELF32 file: header, program headers, segment bytes, then (optional) .symtab/.strtab sections. */
export function buildElf(spec: ElfSpec = {}): Uint8Array {
  const segments = spec.segments ?? [{ paddr: 0x8000_0000, data: Uint8Array.of(0x13, 0, 0, 0), flags: 5 }];
  const symbols = Object.entries(spec.symbols ?? {});
  const phoff = 52;
  let offset = phoff + 32 * segments.length;
  const segOffsets = segments.map((s) => {
    const o = offset;
    offset += s.data.length;
    return o;
  });
  // string table: "\0name1\0name2\0"
  const names = symbols.map(([n]) => n);
  const strtab: number[] = [0];
  const nameOffsets = names.map((n) => {
    const o = strtab.length;
    for (const c of n) strtab.push(c.charCodeAt(0));
    strtab.push(0);
    return o;
  });
  const strOffset = offset;
  offset += strtab.length;
  offset = (offset + 3) & ~3;
  const symOffset = offset;
  const symSize = 16 * (symbols.length + 1); // entry 0 is the null symbol
  offset += symSize;
  const shoff = symbols.length > 0 ? offset : 0;
  const shnum = symbols.length > 0 ? 3 : 0;
  const size = offset + 40 * shnum;

  const file = new Uint8Array(size);
  const v = new DataView(file.buffer);
  file.set([0x7f, 0x45, 0x4c, 0x46, spec.elfClass ?? 1, spec.dataEncoding ?? 1, 1], 0);
  v.setUint16(16, spec.type ?? 2, true);
  v.setUint16(18, spec.machine ?? 243, true);
  v.setUint32(20, 1, true);
  v.setUint32(24, spec.entry ?? 0x8000_0000, true);
  v.setUint32(28, phoff, true);
  v.setUint32(32, shoff, true);
  v.setUint16(40, 52, true);
  v.setUint16(42, 32, true);
  v.setUint16(44, segments.length, true);
  v.setUint16(46, 40, true);
  v.setUint16(48, shnum, true);
  segments.forEach((s, i) => {
    const p = phoff + 32 * i;
    v.setUint32(p, s.type ?? 1, true);
    v.setUint32(p + 4, segOffsets[i]!, true);
    v.setUint32(p + 8, s.vaddr ?? s.paddr, true);
    v.setUint32(p + 12, s.paddr, true);
    v.setUint32(p + 16, s.data.length, true);
    v.setUint32(p + 20, s.memSize ?? s.data.length, true);
    v.setUint32(p + 24, s.flags ?? 7, true);
    v.setUint32(p + 28, 0x1000, true);
    file.set(s.data, segOffsets[i]!);
  });
  if (shnum > 0) {
    file.set(strtab, strOffset);
    symbols.forEach(([, value], i) => {
      const o = symOffset + 16 * (i + 1);
      v.setUint32(o, nameOffsets[i]!, true);
      v.setUint32(o + 4, value, true);
    });
    // section 1: .symtab (type 2, link 2), section 2: .strtab (type 3)
    const sym = shoff + 40;
    v.setUint32(sym + 4, 2, true);
    v.setUint32(sym + 16, symOffset, true);
    v.setUint32(sym + 20, symSize, true);
    v.setUint32(sym + 24, 2, true);
    v.setUint32(sym + 36, 16, true);
    const str = shoff + 80;
    v.setUint32(str + 4, 3, true);
    v.setUint32(str + 16, strOffset, true);
    v.setUint32(str + 20, strtab.length, true);
  }
  return file;
}

/** The common case: one RWX segment of instruction words (or bytes) at `address`, entry `entry`. */
export function writeElf(spec: {
  entry: number;
  address: number;
  code: number[] | Uint8Array;
  /** Memory size of the segment (>= code bytes); the rest is zero (bss). */
  memSize?: number;
  symbols?: Record<string, number>;
  machine?: number;
}): Uint8Array {
  const data = spec.code instanceof Uint8Array ? spec.code : new Uint8Array(Uint32Array.from(spec.code, (w) => w >>> 0).buffer);
  return buildElf({
    entry: spec.entry,
    segments: [{ paddr: spec.address, data, memSize: Math.max(spec.memSize ?? data.length, data.length) }],
    symbols: spec.symbols,
    machine: spec.machine,
  });
}
