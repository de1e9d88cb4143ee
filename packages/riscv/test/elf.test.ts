import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { decode, Op } from "../src/decode.js";
import { ElfError, parseElf } from "../src/elf.js";
import { buildElf } from "./elf-writer.js";

describe("elf - valid files", () => {
  it("gives the entry, the loadable segments (at p_paddr) and the symbols", () => {
    const text = Uint8Array.of(0x13, 0, 0, 0, 0x73, 0, 0, 0);
    const data = Uint8Array.of(1, 2, 3);
    const file = buildElf({
      entry: 0x8000_0004,
      segments: [
        { paddr: 0x8000_0000, vaddr: 0xc000_0000, data: text, flags: 5 },
        { type: 0x7000_0003, paddr: 0, data: Uint8Array.of(9, 9) }, // RISCV_ATTRIBUTES: not loaded
        { paddr: 0x8000_1000, data, memSize: 0x100, flags: 6 },
      ],
      symbols: { _start: 0x8000_0000, tohost: 0x8000_1000, fromhost: 0x8000_1008 },
    });
    const image = parseElf(file);
    expect(image.entry).toBe(0x8000_0004);
    expect(image.segments).toHaveLength(2);
    expect(image.segments[0]!.address).toBe(0x8000_0000);
    expect([...image.segments[0]!.data]).toEqual([...text]);
    expect(image.segments[0]!.memSize).toBe(8);
    expect(image.segments[0]!.flags).toBe(5);
    expect(image.segments[1]!.address).toBe(0x8000_1000);
    expect([...image.segments[1]!.data]).toEqual([1, 2, 3]);
    expect(image.segments[1]!.memSize).toBe(0x100);
    expect(image.segments[1]!.flags).toBe(6);
    expect(image.symbols.get("tohost")).toBe(0x8000_1000);
    expect(image.symbols.get("fromhost")).toBe(0x8000_1008);
    expect(image.symbols.get("_start")).toBe(0x8000_0000);
  });

  it("a file without a symbol table has no symbols", () => {
    const image = parseElf(buildElf());
    expect(image.symbols.size).toBe(0);
    expect(image.segments).toHaveLength(1);
  });

  it("a file inside a larger buffer (non-zero byteOffset) parses the same", () => {
    const file = buildElf({ symbols: { tohost: 0x8000_0040 } });
    const outer = new Uint8Array(file.length + 8);
    outer.set(file, 8);
    const image = parseElf(outer.subarray(8));
    expect(image.symbols.get("tohost")).toBe(0x8000_0040);
    expect(image.entry).toBe(0x8000_0000);
  });
});

describe("elf - invalid files", () => {
  const bad = (mutate: (f: Uint8Array) => Uint8Array) => () => parseElf(mutate(buildElf({ symbols: { tohost: 0x8000_0000 } })));

  it("rejects a file without the ELF magic", () => {
    expect(bad((f) => { f[1] = 0x46; return f; })).toThrow(/not an ELF file/);
    expect(() => parseElf(new Uint8Array(0))).toThrow(ElfError);
    expect(() => parseElf(new TextEncoder().encode("#!/bin/sh\necho hi\n"))).toThrow(/not an ELF file/);
  });

  it("rejects a truncated header", () => {
    expect(bad((f) => f.subarray(0, 30))).toThrow(/truncated ELF: 30 bytes.*52-byte/);
  });

  it("rejects truncated program headers", () => {
    expect(bad((f) => f.subarray(0, 60))).toThrow(/truncated ELF: program headers end at byte 84, the file has 60/);
  });

  it("rejects truncated segment data", () => {
    const file = buildElf({ segments: [{ paddr: 0x8000_0000, data: new Uint8Array(64) }] });
    expect(() => parseElf(file.subarray(0, 84 + 10))).toThrow(/truncated ELF: segment 0 needs bytes 84\.\.148, the file has 94/);
  });

  it("rejects ELF64", () => {
    expect(bad((f) => { f[4] = 2; return f; })).toThrow(/ELF64/);
  });

  it("rejects big-endian files", () => {
    expect(bad((f) => { f[5] = 2; return f; })).toThrow(/big-endian/);
  });

  it("rejects a non-RISC-V machine and names it", () => {
    expect(() => parseElf(buildElf({ machine: 62 }))).toThrow(/not a RISC-V ELF: machine 62 \(x86-64\)/);
    expect(() => parseElf(buildElf({ machine: 183 }))).toThrow(/AArch64/);
    expect(() => parseElf(buildElf({ machine: 9999 }))).toThrow(/machine 9999/);
  });

  it("rejects files that are not executables", () => {
    expect(() => parseElf(buildElf({ type: 1 }))).toThrow(/not an executable ELF \(e_type 1/);
    expect(() => parseElf(buildElf({ type: 3 }))).toThrow(/not an executable ELF \(e_type 3/);
  });

  it("rejects a file with nothing to load", () => {
    expect(() => parseElf(buildElf({ segments: [] }))).toThrow(/no program headers/);
    expect(() => parseElf(buildElf({ segments: [{ type: 4, paddr: 0, data: new Uint8Array(4) }] }))).toThrow(/no loadable segment/);
  });

  it("errors are ElfError with name ElfError", () => {
    try {
      parseElf(new Uint8Array(4));
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ElfError);
      expect((e as Error).name).toBe("ElfError");
    }
  });
});

const HELLO = fileURLToPath(new URL("../../../guests/build/hello.elf", import.meta.url));

describe("elf - real guest binary", () => {
  it("parses guests/build/hello.elf", () => {
    if (!existsSync(HELLO)) throw new Error(`${HELLO} is missing: build the guests (make -C guests)`);
    const image = parseElf(new Uint8Array(readFileSync(HELLO)));
    expect(image.segments.length).toBeGreaterThan(0);
    const inSegment = (addr: number) => image.segments.some((s) => addr >= s.address && addr < s.address + s.memSize);
    expect(image.symbols.get("_start")).toBe(image.entry);
    expect(inSegment(image.entry)).toBe(true);
    const tohost = image.symbols.get("tohost");
    expect(tohost).toBeDefined();
    expect(inSegment(tohost!)).toBe(true);
    for (const s of image.segments) expect(s.data.length).toBeLessThanOrEqual(s.memSize);
    // the first instruction at the entry point decodes to something legal
    const seg = image.segments.find((s) => image.entry >= s.address && image.entry + 4 <= s.address + s.data.length)!;
    const o = image.entry - seg.address;
    const word = seg.data[o]! | (seg.data[o + 1]! << 8) | (seg.data[o + 2]! << 16) | (seg.data[o + 3]! << 24);
    expect(decode(word).op).not.toBe(Op.Illegal);
  });
});
