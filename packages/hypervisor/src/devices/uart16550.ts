import type { MmioDevice } from "./device.js";

/** Line status register bits. */
const LSR_DR = 0x01; // data ready
const LSR_THRE = 0x20; // transmit holding register empty
const LSR_TEMT = 0x40; // transmitter empty
const IER_RDA = 0x01;
const IER_THRE = 0x02;
const LCR_DLAB = 0x80;

export interface UartState {
  rx: number[];
  ier: number;
  lcr: number;
  mcr: number;
  scr: number;
  dll: number;
  dlm: number;
  fcr: number;
  thrInterrupt: boolean;
}

/**
 * A 16550A UART as on QEMU `virt` (0x1000_0000, PLIC source 10), one byte wide registers.
 * Transmit is immediate: every byte written to THR goes to `onOutput`. Received bytes wait in a
 * bounded FIFO. The interrupt line follows IER and the FIFO state.
 */
export class Uart16550 implements MmioDevice {
  readonly name = "uart";
  readonly size = 0x100;
  private readonly rx: number[] = [];
  private ier = 0;
  private lcr = 0x03;
  private mcr = 0;
  private scr = 0;
  private dll = 0x0c;
  private dlm = 0;
  private fcr = 0;
  /** THRE interrupt pending (cleared by reading IIR or writing THR). */
  private thrInterrupt = false;
  static readonly RX_CAPACITY = 4096;

  constructor(
    readonly base: number,
    private readonly onOutput: (byte: number) => void,
    private readonly onIrq: (level: boolean) => void = () => {},
  ) {}

  /** Queues bytes for the guest to read; drops what does not fit (as a real UART overruns). */
  receive(bytes: Uint8Array): void {
    for (const b of bytes) if (this.rx.length < Uart16550.RX_CAPACITY) this.rx.push(b);
    this.updateIrq();
  }

  load(offset: number, size: 1 | 2 | 4): number | undefined {
    if (size !== 1 || offset > 7) return undefined;
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case 0:
        if (dlab) return this.dll;
        {
          const b = this.rx.shift() ?? 0;
          this.updateIrq();
          return b;
        }
      case 1:
        return dlab ? this.dlm : this.ier;
      case 2: {
        // IIR: FIFOs enabled bits when FCR enabled them; priority: RX data, then THR empty
        const fifo = this.fcr & 1 ? 0xc0 : 0;
        if (this.ier & IER_RDA && this.rx.length > 0) return fifo | 0x04;
        if (this.ier & IER_THRE && this.thrInterrupt) {
          this.thrInterrupt = false;
          this.updateIrq();
          return fifo | 0x02;
        }
        return fifo | 0x01;
      }
      case 3:
        return this.lcr;
      case 4:
        return this.mcr;
      case 5:
        return LSR_THRE | LSR_TEMT | (this.rx.length > 0 ? LSR_DR : 0);
      case 6:
        return 0xb0; // MSR: DCD, DSR, CTS asserted
      default:
        return this.scr;
    }
  }

  store(offset: number, size: 1 | 2 | 4, value: number): boolean {
    if (size !== 1 || offset > 7) return false;
    value &= 0xff;
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case 0:
        if (dlab) this.dll = value;
        else {
          this.onOutput(value);
          this.thrInterrupt = true;
          this.updateIrq();
        }
        break;
      case 1:
        if (dlab) this.dlm = value;
        else {
          this.ier = value & 0x0f;
          if (this.ier & IER_THRE) this.thrInterrupt = true;
          this.updateIrq();
        }
        break;
      case 2:
        this.fcr = value;
        if (value & 0x02) this.rx.length = 0;
        this.updateIrq();
        break;
      case 3:
        this.lcr = value;
        break;
      case 4:
        this.mcr = value & 0x1f;
        break;
      case 7:
        this.scr = value;
        break;
    }
    return true;
  }

  save(): UartState {
    return {
      rx: [...this.rx], ier: this.ier, lcr: this.lcr, mcr: this.mcr, scr: this.scr,
      dll: this.dll, dlm: this.dlm, fcr: this.fcr, thrInterrupt: this.thrInterrupt,
    };
  }

  restore(s: UartState): void {
    this.rx.length = 0;
    this.rx.push(...s.rx.slice(0, Uart16550.RX_CAPACITY));
    ({ ier: this.ier, lcr: this.lcr, mcr: this.mcr, scr: this.scr, dll: this.dll, dlm: this.dlm, fcr: this.fcr } = s);
    this.thrInterrupt = s.thrInterrupt;
    this.updateIrq();
  }

  private updateIrq(): void {
    this.onIrq(((this.ier & IER_RDA) !== 0 && this.rx.length > 0) || ((this.ier & IER_THRE) !== 0 && this.thrInterrupt));
  }
}
