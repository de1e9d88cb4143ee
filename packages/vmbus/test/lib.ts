/** A VM running the vmbus-probe guest with its VMBus served by the root, as a node does. */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { ChildPartition, Offer, RootPartition } from "@hyperfleet/hypervisor";
import { VmDeviceSet, type DiskImage, type SwitchFabric } from "../src/index.js";

export const MiB = 1024 * 1024;
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const GUESTS = join(import.meta.dirname, "..", "..", "..", "guests", "build");

export function guestElf(name: string): Uint8Array {
  const path = join(GUESTS, `${name}.elf`);
  if (!existsSync(path)) throw new Error(`${path} is missing: build the guests (make -C guests)`);
  return readFileSync(path);
}

/** The root's providers for one VM and its VmBus, serving from construction; provider failures are collected. */
export class Served extends VmDeviceSet {
  readonly errors: string[];

  /** `network`: the switch fabric for the VM's NICs, and this node's unique sender id on it. */
  constructor(child: ChildPartition, offers: readonly Offer[], disks: DiskImage[], network?: { fabric: SwitchFabric; senderId: string }) {
    const errors: string[] = [];
    super(child.worker!, offers, { disks, ...(network !== undefined ? { network } : {}), unixMs: () => Date.now(), onError: (where, e) => errors.push(`${where}: ${e.message}`) });
    this.errors = errors;
    this.attach();
  }

  /** The VM runs elsewhere now: stop serving it, and hand the frames that waited here to the fabric. */
  handOver(): void {
    this.bus.close();
    for (const n of this.nics) n.handOver();
  }
}

/** Console text of a child, collected from now on (and what it printed before). */
export function consoleOf(child: ChildPartition): { text: () => string } {
  const chunks = [new TextDecoder().decode(child.consoleHistory())];
  child.onConsole((b) => chunks.push(new TextDecoder().decode(b)));
  return { text: () => chunks.join("") };
}

/** Waits until `f` holds, for at most `timeoutMs` (polling every 20 ms); fails naming `what`. */
export async function until(what: string, f: () => boolean | Promise<boolean>, timeoutMs = 10_000, detail: () => string = () => ""): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await f()) return;
    await sleep(20);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail() ? `\n${detail()}` : ""}`);
}

export async function startProbe(root: RootPartition, name: string, offers: readonly Offer[], bootargs = "rate=50"): Promise<ChildPartition> {
  const child = root.create({ name, memoryBytes: 16 * MiB, bootargs, offers });
  await child.start({ image: guestElf("vmbus-probe") });
  return child;
}
