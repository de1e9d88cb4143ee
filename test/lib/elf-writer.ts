/** Writes small ELF32 RISC-V executables for tests: one loadable segment and an optional symbol table. */
export interface ElfSpec {
  entry: number;
  address: number;
  code: Uint8Array | number[];
  /** Memory size of the segment (>= code bytes); the rest is zero (bss). */
  memSize?: number;
  symbols?: Record<string, number>;
  machine?: number;
}

export function writeElf(spec: ElfSpec): Uint8Array {
  const code = spec.code instanceof Uint8Array ? spec.code : wordsToBytes(spec.code);
  const symbols = Object.entries(spec.symbols ?? {});
  const strtab: number[] = [0];
  const nameOffsets = symbols.map(([name]) => {
    const off = strtab.length;
    for (const c of new TextEncoder().encode(name)) strtab.push(c);
    strtab.push(0);
    return off;
  });
  const codeOffset = 0x100;
  const symOffset = align(codeOffset + code.length, 4);
  const symSize = (symbols.length + 1) * 16;
  const strOffset = symOffset + symSize;
  const shOffset = align(strOffset + strtab.length, 4);
  const shnum = symbols.length > 0 ? 3 : 0;
  const total = shOffset + shnum * 40;
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1, 0]);
  v.setUint16(16, 2, true); // ET_EXEC
  v.setUint16(18, spec.machine ?? 243, true);
  v.setUint32(20, 1, true);
  v.setUint32(24, spec.entry, true);
  v.setUint32(28, 52, true); // phoff
  v.setUint32(32, shnum ? shOffset : 0, true);
  v.setUint16(40, 52, true);
  v.setUint16(42, 32, true);
  v.setUint16(44, 1, true);
  v.setUint16(46, 40, true);
  v.setUint16(48, shnum, true);
  // program header
  const p = 52;
  v.setUint32(p, 1, true);
  v.setUint32(p + 4, codeOffset, true);
  v.setUint32(p + 8, spec.address, true);
  v.setUint32(p + 12, spec.address, true);
  v.setUint32(p + 16, code.length, true);
  v.setUint32(p + 20, Math.max(spec.memSize ?? code.length, code.length), true);
  v.setUint32(p + 24, 7, true);
  out.set(code, codeOffset);
  if (shnum) {
    symbols.forEach(([, value], i) => {
      const s = symOffset + (i + 1) * 16;
      v.setUint32(s, nameOffsets[i]!, true);
      v.setUint32(s + 4, value, true);
      v.setUint32(s + 8, 8, true);
      out[s + 12] = 0x11; // global object
    });
    out.set(strtab, strOffset);
    const sh = (i: number, type: number, offset: number, size: number, link: number, entsize: number) => {
      const b = shOffset + i * 40;
      v.setUint32(b + 4, type, true);
      v.setUint32(b + 16, offset, true);
      v.setUint32(b + 20, size, true);
      v.setUint32(b + 24, link, true);
      v.setUint32(b + 36, entsize, true);
    };
    sh(1, 2, symOffset, symSize, 2, 16);
    sh(2, 3, strOffset, strtab.length, 0, 0);
  }
  return out;
}

function wordsToBytes(words: number[]): Uint8Array {
  const out = new Uint8Array(words.length * 4);
  const v = new DataView(out.buffer);
  words.forEach((w, i) => v.setUint32(i * 4, w >>> 0, true));
  return out;
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}
