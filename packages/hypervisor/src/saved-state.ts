/**
 * Save and restore of a whole partition: vCPUs, devices, guest time and memory, in the snapshot
 * container (snapshot.ts). Each component has a section of named, plain-data fields:
 *
 *   partition   memory size, vCPU count, boot mode, bootargs, guest time, device tree address, tohost
 *   vcpu/<n>    pc, privilege, x1..x31, every CSR, PMP, counters, LR/SC reservation, pending lines
 *   clint, plic, uart
 *   vmbus       the SynIC (offers, event page, open channels) and the hypercall page's registers
 *               (absent in states saved before VMBus: no channels)
 *   memory      binary: u32 page count, a bitmap of the pages present, then those pages' bytes
 *               (pages never touched or all zero are left out: they restore as zero)
 *
 * This is also the format live migration sends for vCPU and device state.
 */
import { Buffer } from "node:buffer";
import { Priv, type Hart } from "@hyperfleet/riscv";
import type { Clock } from "./clock.js";
import type { ClintState } from "./devices/clint.js";
import type { PlicState } from "./devices/plic.js";
import type { UartState } from "./devices/uart16550.js";
import type { HypercallPageState, SynicState } from "./synic.js";
import type { Ept } from "./ept.js";
import type { FramePool } from "./frame-pool.js";
import { PAGE_SIZE } from "./frame-pool.js";
import { Partition, type BootMode } from "./partition.js";
import { decodeSnapshot, encodeSnapshot, SnapshotError, type Section } from "./snapshot.js";

export interface PartitionInfo {
  memoryBytes: number;
  vcpus: number;
  boot: BootMode;
  bootargs: string;
  mtimeTicks: number;
  fdtAddress: number;
  tohost: number;
  vcpuStates: number[];
}

export interface VcpuState {
  pc: number;
  priv: number;
  x: number[];
  csr: Record<(typeof CSR_FIELDS)[number], number>;
  pmpcfg: number[];
  pmpaddr: number[];
  instret: number;
  cycle: number;
  reservationVa: number;
  reservationValue: number;
  mipSoftware: number;
  mipLines: number;
}

const CSR_FIELDS = [
  "mstatus", "medeleg", "mideleg", "mie", "mtvec", "mcounteren", "mcountinhibit", "mscratch", "mepc", "mcause",
  "mtval", "menvcfg", "stvec", "scounteren", "sscratch", "sepc", "scause", "stval", "satp", "senvcfg",
] as const;

export function saveVcpu(h: Hart): VcpuState {
  const csr = {} as VcpuState["csr"];
  for (const f of CSR_FIELDS) csr[f] = h[f];
  return {
    pc: h.pc,
    priv: h.priv,
    x: [...h.x.subarray(0, 32)],
    csr,
    pmpcfg: [...h.pmpcfg],
    pmpaddr: [...h.pmpaddr],
    instret: h.instret,
    cycle: h.cycle,
    reservationVa: h.reservationVa,
    reservationValue: h.reservationValue,
    mipSoftware: h.mipSoftware,
    mipLines: h.mipLines,
  };
}

export function restoreVcpu(h: Hart, s: VcpuState): void {
  h.reset(s.pc);
  h.x.set(s.x.slice(0, 32));
  h.x[0] = 0;
  for (const f of CSR_FIELDS) if (f !== "mstatus" && f !== "satp") h[f] = s.csr[f] | 0;
  // PMP through the CSR path, addresses before configurations (a lock bit freezes both).
  s.pmpaddr.forEach((v, i) => h.csrWrite(0x3b0 + i, v));
  for (let i = 0; i < 4; i++) {
    const c = s.pmpcfg;
    h.csrWrite(0x3a0 + i, c[4 * i]! | (c[4 * i + 1]! << 8) | (c[4 * i + 2]! << 16) | (c[4 * i + 3]! << 24));
  }
  h.priv = s.priv as Priv;
  h.csrWrite(0x180, s.csr.satp); // satp, flushing translations
  h.csrWrite(0x300, s.csr.mstatus); // mstatus last: it recomputes the translation context
  h.instret = s.instret;
  h.cycle = s.cycle;
  h.reservationVa = s.reservationVa;
  h.reservationValue = s.reservationValue;
  h.mipSoftware = s.mipSoftware;
  h.mipLines = s.mipLines;
}

/**
 * Saves a paused partition. Returns the snapshot as chunks (write them in order). With
 * `memory: false` the memory section is left out: a live migration sends memory on its own.
 */
export function savePartition(p: Partition, options: { memory?: boolean } = {}): Uint8Array[] {
  const info: PartitionInfo = {
    memoryBytes: p.memoryBytes,
    vcpus: p.harts.length,
    boot: p.boot,
    bootargs: p.bootargs,
    mtimeTicks: p.mtime(),
    fdtAddress: p.fdtAddress,
    tohost: p.loadedImage.tohost,
    vcpuStates: p.vcpuStates,
  };
  const sections: Section[] = [{ id: "partition", kind: "json", value: info }];
  p.harts.forEach((h, i) => sections.push({ id: `vcpu/${i}`, kind: "json", value: saveVcpu(h) }));
  sections.push({ id: "clint", kind: "json", value: p.clint.save() });
  sections.push({ id: "plic", kind: "json", value: p.plic.save() });
  sections.push({ id: "uart", kind: "json", value: p.uart.save() });
  sections.push({ id: "vmbus", kind: "json", value: { synic: p.synic.save(), hypercallPage: p.hypercallPage.save() } satisfies VmBusState });
  if (options.memory !== false) sections.push({ id: "memory", kind: "binary", data: saveMemory(p) });
  return encodeSnapshot(sections);
}

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);

function saveMemory(p: Partition): Uint8Array {
  const pages = p.ept.pages;
  const bitmapBytes = Math.ceil(pages / 8);
  const present: number[] = [];
  for (let gpn = 0; gpn < pages; gpn++) {
    const page = p.guest.page(gpn);
    if (page !== undefined && !ZERO_PAGE.equals(page)) present.push(gpn);
  }
  const out = new Uint8Array(4 + bitmapBytes + present.length * PAGE_SIZE);
  new DataView(out.buffer).setUint32(0, pages, true);
  let offset = 4 + bitmapBytes;
  for (const gpn of present) {
    out[4 + (gpn >>> 3)]! |= 1 << (gpn & 7);
    out.set(p.guest.page(gpn)!, offset);
    offset += PAGE_SIZE;
  }
  return out;
}

export interface RestoreOptions {
  clock: Clock;
  pool?: FramePool;
  /** The EPT to map the restored memory into (a VM worker's shared one); must be empty unless memoryInPlace. */
  ept?: Ept;
  /** The guest's memory is already in `ept` (a migration delivered it): the snapshot carries none. */
  memoryInPlace?: boolean;
  /** Restore paused: guest time stands exactly at the saved instant until the partition is thawed. */
  paused?: boolean;
  onConsole?: (bytes: Uint8Array) => void;
}

/** Rebuilds a partition from a snapshot; it continues exactly where it was saved. */
export function restorePartition(file: Uint8Array, options: RestoreOptions): Partition {
  const sections = decodeSnapshot(file);
  const info = partitionInfo(sections);
  const p = new Partition({
    memoryBytes: info.memoryBytes,
    vcpus: info.vcpus,
    boot: info.boot,
    bootargs: info.bootargs,
    clock: options.clock,
    pool: options.pool,
    ept: options.ept,
    onConsole: options.onConsole,
  });
  applyState(p, sections, info, options);
  return p;
}

/**
 * Restores a snapshot into `p`, a partition built beforehand with the same memory size, vCPUs, boot
 * mode and bootargs that has not run (an incoming migration builds it while pre-copy goes on, so the
 * switchover pays only for this). A snapshot of another shape is refused.
 */
export function restorePartitionInto(p: Partition, file: Uint8Array, options: Omit<RestoreOptions, "clock" | "pool" | "onConsole">): void {
  const sections = decodeSnapshot(file);
  const info = partitionInfo(sections);
  const mismatch =
    info.memoryBytes !== p.memoryBytes ? `memory ${info.memoryBytes} bytes, the partition has ${p.memoryBytes}`
    : info.vcpus !== p.harts.length ? `${info.vcpus} vCPUs, the partition has ${p.harts.length}`
    : info.boot !== p.boot ? `boot mode ${info.boot}, the partition has ${p.boot}`
    : info.bootargs !== p.bootargs ? "other bootargs than the partition's"
    : undefined;
  if (mismatch !== undefined) throw new SnapshotError(`snapshot does not fit the partition: ${mismatch}`);
  if (options.ept !== undefined && options.ept !== p.ept) throw new SnapshotError("memory in place must be in the partition's own EPT");
  applyState(p, sections, info, { ...options, ept: p.ept });
}

function partitionInfo(sections: Map<string, Section>): PartitionInfo {
  const info = json<PartitionInfo>(sections, "partition", {
    memoryBytes: "number", vcpus: "number", boot: "string", bootargs: "string", mtimeTicks: "number",
    fdtAddress: "number", tohost: "number", vcpuStates: "array",
  });
  if (info.boot !== "bare" && info.boot !== "sbi") throw new SnapshotError(`section partition: unknown boot mode "${info.boot}"`);
  return info;
}

function applyState(p: Partition, sections: Map<string, Section>, info: PartitionInfo, options: Pick<RestoreOptions, "ept" | "memoryInPlace" | "paused">): void {
  p.fdtAddress = info.fdtAddress;
  p.tohostAddress = info.tohost;
  p.vcpuStates = info.vcpuStates;
  for (let i = 0; i < info.vcpus; i++) {
    const s = json<VcpuState>(sections, `vcpu/${i}`, {
      pc: "number", priv: "number", x: "array", csr: "object", pmpcfg: "array", pmpaddr: "array", instret: "number",
      cycle: "number", reservationVa: "number", reservationValue: "number", mipSoftware: "number", mipLines: "number",
    });
    if (s.x.length !== 32 || s.pmpcfg.length !== 16 || s.pmpaddr.length !== 16) throw new SnapshotError(`section vcpu/${i}: wrong register count`);
    if (![Priv.U, Priv.S, Priv.M].includes(s.priv)) throw new SnapshotError(`section vcpu/${i}: bad privilege ${s.priv}`);
    restoreVcpu(p.harts[i]!, s);
  }
  p.clint.restore(json<ClintState>(sections, "clint", { mtimecmp: "array", msip: "array" }));
  p.plic.restore(json<PlicState>(sections, "plic", { priority: "array", pending: "array", claimed: "array", levels: "array", enable: "array", threshold: "array" }));
  p.uart.restore(json<UartState>(sections, "uart", { rx: "array", ier: "number", lcr: "number", thrInterrupt: "boolean" }));
  if (sections.has("vmbus")) {
    const vmbus = json<VmBusState>(sections, "vmbus", { synic: "object", hypercallPage: "object" });
    const { synic, hypercallPage } = vmbus;
    if (!Array.isArray(synic.offers) || !Array.isArray(synic.channels) || typeof synic.eventPage !== "number") throw new SnapshotError("section vmbus: bad synic fields");
    if (!Array.isArray(hypercallPage.args)) throw new SnapshotError("section vmbus: bad hypercall page fields");
    try {
      p.synic.restore(synic);
      p.hypercallPage.restore(hypercallPage);
    } catch (e) {
      throw new SnapshotError(`section vmbus: ${(e as Error).message}`);
    }
  }
  if (options.memoryInPlace) {
    if (options.ept === undefined) throw new SnapshotError("memory in place needs the EPT that holds it");
    if (sections.has("memory")) throw new SnapshotError("snapshot carries memory, but the memory is already in place");
  } else restoreMemory(p, sections.get("memory"));
  if (options.paused) p.freezeTime();
  p.setTime(info.mtimeTicks);
  for (const h of p.harts) h.flushTlb();
  p.decodeCache.flush();
}

function restoreMemory(p: Partition, section: Section | undefined): void {
  if (section === undefined || section.kind !== "binary") throw new SnapshotError("snapshot has no memory section");
  const data = section.data;
  const pages = data.length >= 4 ? new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0, true) : -1;
  if (pages !== p.ept.pages) throw new SnapshotError(`section memory: ${pages} pages, the partition has ${p.ept.pages}`);
  const bitmapBytes = Math.ceil(pages / 8);
  let offset = 4 + bitmapBytes;
  for (let gpn = 0; gpn < pages; gpn++) {
    if ((data[4 + (gpn >>> 3)]! & (1 << (gpn & 7))) === 0) continue;
    if (offset + PAGE_SIZE > data.length) throw new SnapshotError("section memory: shorter than its bitmap says");
    const frame = p.guest.frameFor(gpn);
    p.memory.set(data.subarray(offset, offset + PAGE_SIZE), frame * PAGE_SIZE);
    offset += PAGE_SIZE;
  }
  if (offset !== data.length) throw new SnapshotError("section memory: longer than its bitmap says");
}

interface VmBusState {
  synic: SynicState;
  hypercallPage: HypercallPageState;
}

type FieldType = "number" | "string" | "boolean" | "array" | "object";

function json<T>(sections: Map<string, Section>, id: string, fields: Record<string, FieldType>): T {
  const s = sections.get(id);
  if (s === undefined) throw new SnapshotError(`snapshot has no ${id} section`);
  if (s.kind !== "json" || typeof s.value !== "object" || s.value === null) throw new SnapshotError(`section ${id} is not a record`);
  const v = s.value as Record<string, unknown>;
  for (const [name, type] of Object.entries(fields)) {
    const got = v[name];
    const ok = type === "array" ? Array.isArray(got) : type === "object" ? typeof got === "object" && got !== null : typeof got === type;
    if (!ok) throw new SnapshotError(`section ${id}: field ${name} is missing or not a ${type}`);
  }
  return v as T;
}
