import { describe, expect, it } from "vitest";
import { buildFdt, parseFdt } from "../src/fdt.js";

const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b).replace(/\0$/, "");
const cells = (b: Uint8Array | undefined) => {
  const v = new DataView(b!.buffer, b!.byteOffset, b!.byteLength);
  return Array.from({ length: b!.byteLength / 4 }, (_, i) => v.getUint32(i * 4));
};

describe("fdt - device tree blobs", () => {
  it("round-trips nodes, strings, cells, string lists and empty properties", () => {
    const blob = buildFdt({
      name: "",
      props: { "#address-cells": 2, model: "m" },
      children: [
        { name: "chosen", props: { bootargs: "rate=5000 ws=64" } },
        { name: "dev@10", props: { reg: [0, 0x10, 0, 0x100], compatible: ["a,b", "c"], "interrupt-controller": true } },
      ],
    });
    const root = parseFdt(blob);
    expect(cells(root.props["#address-cells"])).toEqual([2]);
    expect(text(root.props.model)).toBe("m");
    const [chosen, dev] = root.children as ReturnType<typeof parseFdt>[];
    expect(text(chosen!.props.bootargs)).toBe("rate=5000 ws=64");
    expect(dev!.name).toBe("dev@10");
    expect(cells(dev!.props.reg)).toEqual([0, 0x10, 0, 0x100]);
    expect(text(dev!.props.compatible)).toBe("a,b\0c");
    expect(dev!.props["interrupt-controller"]!.byteLength).toBe(0);
  });

  it("writes a valid header: magic, total size, version 17, aligned blocks", () => {
    const blob = buildFdt({ name: "", props: { x: 1 } });
    const v = new DataView(blob.buffer);
    expect(v.getUint32(0)).toBe(0xd00dfeed);
    expect(v.getUint32(4)).toBe(blob.byteLength);
    expect(v.getUint32(20)).toBe(17);
    expect(v.getUint32(8) % 4).toBe(0);
    expect(blob.byteLength % 8).toBe(0);
  });

  it("refuses a blob without the magic", () => {
    expect(() => parseFdt(new Uint8Array(64))).toThrow(/bad magic/);
  });
});
