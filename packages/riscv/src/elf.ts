/** ELF32 little-endian RISC-V executables: validation, loadable segments and symbols. */

export class ElfError extends Error {
  override readonly name = "ElfError";
}

export interface ElfSegment {
  /** Physical load address (p_paddr), where QEMU loads it too. */
  readonly address: number;
  /** The bytes from the file (p_filesz); the rest up to `memSize` is zero. */
  readonly data: Uint8Array;
  readonly memSize: number;
  /** PF_R / PF_W / PF_X bits. */
  readonly flags: number;
}

export interface ElfImage {
  readonly entry: number;
  readonly segments: readonly ElfSegment[];
  /** Symbol name -> value, from the symbol table when the file has one. */
  readonly symbols: ReadonlyMap<string, number>;
}

const EM_RISCV = 243;
const PT_LOAD = 1;
const SHT_SYMTAB = 2;
const MACHINES: Record<number, string> = { 3: "x86", 8: "MIPS", 20: "PowerPC", 40: "ARM", 62: "x86-64", 183: "AArch64" };

/** Parses an ELF32 RISC-V executable. Throws ElfError naming what is wrong with the file. */
export function parseElf(file: Uint8Array): ElfImage {
  const size = file.byteLength;
  if (size < 4 || file[0] !== 0x7f || file[1] !== 0x45 || file[2] !== 0x4c || file[3] !== 0x46) {
    throw new ElfError("not an ELF file (no \\x7fELF magic)");
  }
  if (size < 52) throw new ElfError(`truncated ELF: ${size} bytes, shorter than the 52-byte ELF32 header`);
  if (file[4] === 2) throw new ElfError("ELF64 file: this hart runs RV32 (build with -march=rv32ima -mabi=ilp32)");
  if (file[4] !== 1) throw new ElfError(`bad ELF class ${file[4]}`);
  if (file[5] !== 1) throw new ElfError("big-endian ELF: RISC-V is little-endian");
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const u16 = (o: number): number => view.getUint16(o, true);
  const u32 = (o: number): number => view.getUint32(o, true);
  const type = u16(16);
  const machine = u16(18);
  if (machine !== EM_RISCV) {
    const name = MACHINES[machine];
    throw new ElfError(`not a RISC-V ELF: machine ${machine}${name ? ` (${name})` : ""}`);
  }
  if (type !== 2) throw new ElfError(`not an executable ELF (e_type ${type}; expected 2, ET_EXEC)`);
  const entry = u32(24);
  const phoff = u32(28);
  const shoff = u32(32);
  const phentsize = u16(42);
  const phnum = u16(44);
  const shentsize = u16(46);
  const shnum = u16(48);
  if (phnum === 0) throw new ElfError("ELF has no program headers: nothing to load");
  if (phentsize < 32) throw new ElfError(`bad program header size ${phentsize}`);
  const phEnd = phoff + phnum * phentsize;
  if (phEnd > size) throw new ElfError(`truncated ELF: program headers end at byte ${phEnd}, the file has ${size}`);

  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    if (u32(p) !== PT_LOAD) continue;
    const offset = u32(p + 4);
    const address = u32(p + 12);
    const fileSize = u32(p + 16);
    const memSize = u32(p + 20);
    const flags = u32(p + 24);
    if (memSize === 0) continue;
    if (offset + fileSize > size) {
      throw new ElfError(`truncated ELF: segment ${i} needs bytes ${offset}..${offset + fileSize}, the file has ${size}`);
    }
    if (fileSize > memSize) throw new ElfError(`bad ELF: segment ${i} has more file bytes than memory bytes`);
    if (address + memSize > 2 ** 32) throw new ElfError(`bad ELF: segment ${i} runs past the 32-bit address space`);
    segments.push({ address, data: file.subarray(offset, offset + fileSize), memSize, flags });
  }
  if (segments.length === 0) throw new ElfError("ELF has no loadable segment");

  const symbols = new Map<string, number>();
  if (shoff !== 0 && shnum > 0 && shentsize >= 40) {
    const shEnd = shoff + shnum * shentsize;
    if (shEnd > size) throw new ElfError(`truncated ELF: section headers end at byte ${shEnd}, the file has ${size}`);
    for (let i = 0; i < shnum; i++) {
      const s = shoff + i * shentsize;
      if (u32(s + 4) !== SHT_SYMTAB) continue;
      const symOffset = u32(s + 16);
      const symSize = u32(s + 20);
      const link = u32(s + 24);
      const entSize = u32(s + 36) || 16;
      if (link >= shnum) throw new ElfError("bad ELF: symbol table links to a missing string table");
      const str = shoff + link * shentsize;
      const strOffset = u32(str + 16);
      const strSize = u32(str + 20);
      if (symOffset + symSize > size || strOffset + strSize > size) {
        throw new ElfError("truncated ELF: the symbol table runs past the end of the file");
      }
      for (let o = symOffset; o + 16 <= symOffset + symSize; o += entSize) {
        const nameOffset = u32(o);
        if (nameOffset === 0 || nameOffset >= strSize) continue;
        let end = strOffset + nameOffset;
        while (end < strOffset + strSize && file[end] !== 0) end++;
        const name = new TextDecoder().decode(file.subarray(strOffset + nameOffset, end));
        if (!symbols.has(name)) symbols.set(name, u32(o + 4));
      }
    }
  }
  return { entry, segments, symbols };
}
