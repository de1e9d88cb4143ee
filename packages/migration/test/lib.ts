import { RootPartition, type ChildPartition } from "@hyperfleet/hypervisor";
export { LocalNatsServer as NatsServer } from "../src/adapters/nats-server.js";
export { guestElf as guest } from "../../hypervisor/test/guests.js";
import { guestElf as guest } from "../../hypervisor/test/guests.js";

export const MiB = 2 ** 20;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Two nodes' root partitions and a running dirtier on the first. */
export async function twoNodes(bootargs: string, memoryBytes = 32 * MiB): Promise<{ a: RootPartition; b: RootPartition; vm: ChildPartition; console: string[] }> {
  const a = new RootPartition(96 * MiB);
  const b = new RootPartition(96 * MiB);
  const vm = a.create({ name: "vm1", memoryBytes, bootargs });
  const console: string[] = [];
  vm.onConsole((bytes) => console.push(new TextDecoder().decode(bytes)));
  await vm.start({ image: guest("dirtier") });
  return { a, b, vm, console };
}

/** Appends a VM's console to `console`: what it printed so far, then everything it prints from now on. */
export function follow(vm: ChildPartition, console: string[]): void {
  console.push(new TextDecoder().decode(vm.consoleHistory()));
  vm.onConsole((bytes) => console.push(new TextDecoder().decode(bytes)));
}

/** Heartbeat counters the dirtier printed, in order. */
export function heartbeats(console: string[]): number[] {
  return [...console.join("").matchAll(/dirtier: heartbeat (\d+)/g)].map((m) => Number(m[1]));
}
