import type { MmioDevice } from "./device.js";

/** What the guest asked of the `virt` test device (sifive_test). */
export type PowerRequest = { kind: "poweroff"; code: number } | { kind: "reset" };

/**
 * QEMU `virt`'s test device at 0x0010_0000: writing 0x5555 powers off with success, (code << 16) | 0x3333
 * powers off with failure `code`, 0x7777 resets.
 */
export class TestDevice implements MmioDevice {
  readonly name = "test";
  readonly size = 0x1000;

  constructor(
    readonly base: number,
    private readonly onRequest: (request: PowerRequest) => void,
  ) {}

  load(offset: number, size: 1 | 2 | 4): number | undefined {
    return offset === 0 && size === 4 ? 0 : undefined;
  }

  store(offset: number, size: 1 | 2 | 4, value: number): boolean {
    if (offset !== 0 || size !== 4) return false;
    const status = value & 0xffff;
    if (status === 0x5555) this.onRequest({ kind: "poweroff", code: 0 });
    else if (status === 0x3333) this.onRequest({ kind: "poweroff", code: (value >>> 16) & 0xffff });
    else if (status === 0x7777) this.onRequest({ kind: "reset" });
    return true;
  }
}
