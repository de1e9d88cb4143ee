/**
 * The network VSP's port on the virtual switch, with an in-memory fabric: a guest sends only as its
 * own MAC, frames wait for a guest that is not connected or suspended, and around a move the old
 * port hands its waiting frames over so that each is delivered exactly once.
 */
import { describe, expect, it } from "vitest";
import type { Offer } from "@hyperfleet/hypervisor";
import { decodeFabricFrame, encodeFabricFrame, macBytes, NetworkVsp, nicMac, type ChannelEnd, type FabricFrame, type Packet, type SwitchFabric } from "../src/index.js";

class MemoryFabric implements SwitchFabric {
  readonly listeners = new Map<string, Set<(f: FabricFrame) => void>>();
  readonly published: { mac: string; f: FabricFrame }[] = [];
  publish(mac: string, f: FabricFrame): void {
    this.published.push({ mac, f });
    for (const l of this.listeners.get(mac) ?? []) l(f);
  }
  listen(mac: string, handler: (f: FabricFrame) => void): () => void {
    const set = this.listeners.get(mac) ?? new Set();
    this.listeners.set(mac, set);
    set.add(handler);
    return () => set.delete(handler);
  }
}

/** A channel end that records what the VSP sends to the guest. */
function guestEnd(): ChannelEnd & { got: Packet[] } {
  const got: Packet[] = [];
  const offer: Offer = { channel: 16, type: 2, instance: 0, param: 0x0a0b0c0d };
  return { offer, got, send: (p) => got.push(p), reply: () => undefined };
}

function frame(dst: string, src: string, body: string): Uint8Array {
  const data = new TextEncoder().encode(body);
  const out = new Uint8Array(14 + data.length);
  out.set(macBytes(dst), 0);
  out.set(macBytes(src), 6);
  out[12] = 0x88;
  out[13] = 0xb5;
  out.set(data, 14);
  return out;
}
const body = (p: Packet): string => new TextDecoder().decode(p.payload.subarray(14));

const VM = nicMac(0x0a0b0c0d);
const PEER = "02:48:00:00:00:99";

describe("network - a NIC's port on the switch", () => {
  it("the MAC comes from the offer; a bad MAC is refused by name", () => {
    expect(VM).toBe("02:48:0a:0b:0c:0d");
    expect(() => macBytes("02:48:0a:0b:0c")).toThrow(/bad MAC address "02:48:0a:0b:0c"/);
  });

  it("the guest's frames go out to their destination MAC; frames claiming another source are dropped", () => {
    const fabric = new MemoryFabric();
    const nic = new NetworkVsp(VM, fabric, "n1");
    nic.open(guestEnd());
    nic.packet({ type: 1, flags: 0, txid: 0, payload: frame(PEER, VM, "hello") });
    nic.packet({ type: 1, flags: 0, txid: 0, payload: frame(PEER, "02:48:66:66:66:66", "spoof") });
    nic.packet({ type: 1, flags: 0, txid: 0, payload: new Uint8Array(10) });
    expect(fabric.published.map((p) => p.mac)).toEqual([PEER]);
    expect(nic.stats).toMatchObject({ framesOut: 1, spoofed: 1, dropped: 1 });
  });

  it("frames wait for a guest that has not connected, or whose VMBus is suspended, and then arrive in order", () => {
    const fabric = new MemoryFabric();
    const nic = new NetworkVsp(VM, fabric, "n1");
    nic.listen();
    fabric.publish(VM, { id: "p-1", frame: frame(VM, PEER, "one") });
    const end = guestEnd();
    nic.open(end);
    nic.suspend();
    fabric.publish(VM, { id: "p-2", frame: frame(VM, PEER, "two") });
    expect(end.got.map(body)).toEqual(["one"]);
    nic.resume();
    expect(end.got.map(body)).toEqual(["one", "two"]);
  });

  it("around a move every frame reaches the guest once: the old port hands over what waited, the new one drops what it already delivered", () => {
    const fabric = new MemoryFabric();
    const before = new NetworkVsp(VM, fabric, "a");
    const beforeEnd = guestEnd();
    before.open(beforeEnd);
    fabric.publish(VM, { id: "p-1", frame: frame(VM, PEER, "1") }); // delivered on the source
    before.suspend(); // the VM is frozen
    fabric.publish(VM, { id: "p-2", frame: frame(VM, PEER, "2") }); // waits on the source
    const after = new NetworkVsp(VM, fabric, "b");
    const afterEnd = guestEnd();
    after.open(afterEnd); // the VM runs on the destination: both listen for a moment
    fabric.publish(VM, { id: "p-3", frame: frame(VM, PEER, "3") }); // reaches both
    before.handOver();
    fabric.publish(VM, { id: "p-4", frame: frame(VM, PEER, "4") });
    expect(beforeEnd.got.map(body)).toEqual(["1"]);
    expect(afterEnd.got.map(body).sort()).toEqual(["2", "3", "4"]);
    expect(after.stats.duplicates).toBe(1);
    expect(fabric.listeners.get(VM)?.size).toBe(1);
  });

  it("a port that left holds what arrives until the VM's new port announces itself, then hands it over; its own announcement does not count", () => {
    const fabric = new MemoryFabric();
    const before = new NetworkVsp(VM, fabric, "a");
    const beforeEnd = guestEnd();
    before.open(beforeEnd);
    before.announce(); // its own announcement: nothing to hand over, nothing delivered
    fabric.publish(VM, { id: "p-1", frame: frame(VM, PEER, "1") });
    before.suspend();
    let handed = 0;
    before.leave(() => handed++); // the migration committed: the VM resumes elsewhere
    before.announce();
    fabric.publish(VM, { id: "p-2", frame: frame(VM, PEER, "2") }); // nobody serves the VM yet: held here
    expect(handed).toBe(0);
    const after = new NetworkVsp(VM, fabric, "a-1"); // a sender id that "a" prefixes, but not "a-"
    const afterEnd = guestEnd();
    after.open(afterEnd);
    fabric.publish(VM, { id: "p-3", frame: frame(VM, PEER, "3") }); // reaches both; the old one holds it
    expect(handed).toBe(0);
    after.announce();
    expect(handed).toBe(1);
    fabric.publish(VM, { id: "p-4", frame: frame(VM, PEER, "4") });
    expect(beforeEnd.got.map(body)).toEqual(["1"]);
    expect(afterEnd.got.map(body).sort()).toEqual(["2", "3", "4"]);
    expect(after.stats).toMatchObject({ framesIn: 3, duplicates: 1 });
    expect(fabric.listeners.get(VM)?.size).toBe(1);
    before.announce();
    expect(afterEnd.got).toHaveLength(3); // announcements never reach a guest
  });

  it("a new port that announced itself before the old one left: the old one hands over as it leaves, not after a wait", () => {
    const fabric = new MemoryFabric();
    const before = new NetworkVsp(VM, fabric, "a");
    before.open(guestEnd());
    before.suspend(); // the VM is frozen for the switchover
    fabric.publish(VM, { id: "p-1", frame: frame(VM, PEER, "1") }); // held on the source
    const after = new NetworkVsp(VM, fabric, "b");
    const afterEnd = guestEnd();
    after.open(afterEnd);
    after.announce(); // heard by the source while it is still only suspended
    expect(afterEnd.got).toEqual([]);
    let handed = 0;
    before.leave(() => handed++);
    expect(handed).toBe(1);
    expect(afterEnd.got.map(body)).toEqual(["1"]);
    // a migration that failed instead: the source resumes, and a later announcement is not taken as the hand-over's
    const c = new NetworkVsp(VM, fabric, "c");
    c.open(guestEnd());
    c.suspend();
    new NetworkVsp(VM, fabric, "d").announce();
    c.resume();
    let cHanded = 0;
    c.suspend();
    c.leave(() => cHanded++);
    expect(cHanded).toBe(0);
  });

  it("fabric messages carry the frame's id; a message shorter than its id is refused", () => {
    const f = { id: "node-7-42", frame: frame(VM, PEER, "x") };
    expect(decodeFabricFrame(encodeFabricFrame(f))).toEqual(f);
    expect(() => decodeFabricFrame(Uint8Array.of(9, 1, 2))).toThrow(/shorter than its id/);
  });
});
