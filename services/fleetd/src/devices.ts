/**
 * The synthetic devices (VMBus) of the VMs that run on this node: for each running child, its
 * virtual disks (image files on cluster storage, `<storage-dir>/<vm>/disk<i>.hfdisk`, shared by every
 * node), its NICs (ports on the virtual switch, which carries frames over NATS by MAC, so a VM keeps
 * its address wherever it runs) and its integration services (heartbeat, shutdown, time sync, KVP),
 * served by one `VmBus`.
 *
 * The node attaches a VM's devices wherever the VM comes to run here (a boot, a start from a saved
 * state, an arrived migration, a failover restart) and detaches them wherever it stops running here
 * (stopped, destroyed, saved, moved away). A disk is created the first time its VM starts anywhere;
 * afterwards every node opens the same file. Only one node serves a VM at a time: a migration's
 * source suspends its VMBus before the stop-and-copy, and the destination attaches only once the
 * VM runs there. A NIC's port on the source keeps what arrives for the VM during the switchover and
 * hands it to the destination's port as soon as that one announces it listens (or after
 * `HANDOVER_WAIT_MS`), so frames sent meanwhile are delivered there, not dropped.
 */
import { mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { VmSpec } from "@hyperfleet/cluster";
import type { ChildPartition, Offer } from "@hyperfleet/hypervisor";
import { buildOffers, DiskImage, DiskImageError, VmDeviceSet, type GuestHealth, type NetworkVsp, type SwitchFabric, type VmBus } from "@hyperfleet/vmbus";
import type { FleetdLogger } from "./node.js";

/** A VM's devices could not be set up (no storage directory, a disk that cannot be opened). */
export class DeviceError extends Error {
  override readonly name = "DeviceError";
}

/** What a guest's devices say of it: the heartbeat's health, or "unknown" when it does not run here. */
export type GuestView = { health: GuestHealth | "unknown"; kvp: Record<string, string> };

/** How the shutdown request of a graceful stop ended. */
export type GuestShutdown = "off" | "not-connected" | "refused" | "timeout";

export const DISK_FILE_SUFFIX = ".hfdisk";
/** How long a moved VM's old NIC port waits for the new one to announce itself before it hands over anyway. */
export const HANDOVER_WAIT_MS = 5000;

/** The offers of a VM with this spec (integration services on channels 1-4, disks from 8, NICs from 16). */
export function offersFor(spec: Pick<VmSpec, "disks" | "integration" | "nics">): Offer[] {
  return buildOffers({ disks: spec.disks.length, integration: spec.integration, nics: spec.nics.map((n) => macParam(n.mac)) });
}

/** A NIC offer's param: the MAC's last four bytes ("02:48:" is implied). */
export function macParam(mac: string): number {
  return parseInt(mac.slice(6).replaceAll(":", ""), 16) >>> 0;
}

/** Where a node's NIC ports are: the switch fabric and a prefix unique to this node process. */
export interface NodeSwitch {
  readonly fabric: SwitchFabric;
  /** Unique among all node processes ever (the node id and a random part): prefixes the ports' frame ids. */
  readonly portPrefix: string;
}

/** The devices of one VM running here. */
class Attached extends VmDeviceSet {
  constructor(
    readonly vm: string,
    readonly child: ChildPartition,
    spec: Pick<VmSpec, "disks" | "integration" | "nics">,
    readonly disks: DiskImage[],
    net: NodeSwitch | null,
    generation: number,
    log: FleetdLogger,
  ) {
    if (spec.nics.length > 0 && net === null) throw new DeviceError(`vm ${vm} has NICs but this node has no switch (no NATS connection yet)`);
    super(child.worker!, offersFor(spec), {
      disks,
      ...(net !== null ? { network: { fabric: net.fabric, senderId: `${net.portPrefix}.${vm}.${generation}` } } : {}),
      unixMs: () => Date.now(),
      onError: (where, e) => log.warn(`vm ${vm} ${where}: ${e.message}`),
    });
  }
}

export class NodeDevices {
  private readonly attached = new Map<string, Attached>();
  /** Per VM, the bytes its guest wrote to its disks on this node, from earlier attachments (for the metric). */
  private readonly writtenBefore = new Map<string, number>();
  /** NIC ports of VMs that moved away, holding what arrives until the VM's new ports announce themselves. */
  private readonly leaving = new Set<NetworkVsp>();
  private readonly leaveTimers = new Set<NodeJS.Timeout>();
  private net: NodeSwitch | null = null;
  private generation = 0;

  /** `storageDir`: the cluster storage folder (every node the same); null: VMs with disks cannot run here. */
  constructor(
    readonly storageDir: string | null,
    private readonly log: FleetdLogger,
  ) {}

  /** The virtual switch for the VMs' NICs (the node's NATS connection), once it is connected. */
  useSwitch(net: NodeSwitch): void {
    this.net = net;
  }

  /** `<storage-dir>/<vm>`: the folder of a VM's disks. */
  vmDir(vm: string): string {
    if (this.storageDir === null) throw new DeviceError(`vm ${vm} has disks but this node has no --storage-dir`);
    return join(this.storageDir, vm);
  }

  diskPath(vm: string, index: number): string {
    return join(this.vmDir(vm), `disk${index}${DISK_FILE_SUFFIX}`);
  }

  /**
   * Opens (the first time anywhere: creates) the disks of a VM about to run here. The caller passes
   * them to `attach` once the VM runs, or closes them with `closeDisks` if it does not start.
   */
  async openDisks(vm: string, spec: Pick<VmSpec, "disks">): Promise<DiskImage[]> {
    if (spec.disks.length === 0) return [];
    await mkdir(this.vmDir(vm), { recursive: true });
    const out: DiskImage[] = [];
    try {
      for (const [i, d] of spec.disks.entries()) {
        const path = this.diskPath(vm, i);
        let disk: DiskImage;
        try {
          disk = await DiskImage.open(path);
        } catch (e) {
          if (!(e instanceof DiskImageError && e.kind === "not-found")) throw e;
          try {
            disk = await DiskImage.create(path, { sizeBytes: d.sizeBytes });
            this.log.info(`vm ${vm}: created disk${i} (${d.sizeBytes} bytes) at ${path}`);
          } catch (c) {
            // another node created it just now
            if (!(c instanceof DiskImageError && c.kind === "exists")) throw c;
            disk = await DiskImage.open(path);
          }
        }
        out.push(disk);
      }
    } catch (e) {
      await closeDisks(out);
      throw new DeviceError(`vm ${vm}: cannot open its disks: ${e instanceof Error ? e.message : String(e)}`);
    }
    return out;
  }

  /**
   * Starts serving the devices of a VM that runs here now (its worker exists). `disks`: from
   * `openDisks` (opened here when absent). Replaces an earlier attachment of the same VM.
   */
  async attach(vm: string, child: ChildPartition, spec: Pick<VmSpec, "disks" | "integration" | "nics">, disks?: DiskImage[]): Promise<void> {
    const images = disks ?? (await this.openDisks(vm, spec));
    if (child.worker === undefined || this.attached.get(vm)?.child === child) {
      await closeDisks(images);
      if (child.worker === undefined) throw new DeviceError(`vm ${vm} does not run: nothing to attach its devices to`);
      return;
    }
    await this.detach(vm);
    let a: Attached;
    try {
      a = new Attached(vm, child, spec, images, this.net, ++this.generation, this.log);
    } catch (e) {
      await closeDisks(images);
      throw e;
    }
    this.attached.set(vm, a);
    a.attach();
  }

  /** The VMBus of a VM running here (a migration's source suspends it before the stop-and-copy). */
  bus(vm: string): VmBus | undefined {
    return this.attached.get(vm)?.bus;
  }

  /** Whether the devices of `vm` are served here. */
  has(vm: string): boolean {
    return this.attached.has(vm);
  }

  /**
   * Stops serving a VM's devices and closes its disks (nothing when none are attached). `movedAway`:
   * the VM runs on another node now (a migration committed): its NIC ports keep what arrives until
   * the new ports announce themselves, then hand it over; otherwise they stop listening.
   */
  async detach(vm: string, movedAway = false): Promise<void> {
    const a = this.attached.get(vm);
    if (a === undefined) return;
    this.attached.delete(vm);
    this.writtenBefore.set(vm, (this.writtenBefore.get(vm) ?? 0) + a.storage.reduce((n, s) => n + s.stats.writtenBytes, 0));
    try {
      a.bus.close();
    } finally {
      for (const nic of a.nics) {
        if (movedAway) this.leave(nic);
        else nic.shutdown();
      }
      await closeDisks(a.disks);
    }
  }

  private leave(nic: NetworkVsp): void {
    this.leaving.add(nic);
    const timer = setTimeout(() => nic.handOver(), HANDOVER_WAIT_MS);
    this.leaveTimers.add(timer);
    nic.leave(() => {
      clearTimeout(timer);
      this.leaveTimers.delete(timer);
      this.leaving.delete(nic);
    });
  }

  /** NIC ports of VMs that moved away still waiting to hand over (for tests and the shutdown). */
  leavingPorts(): number {
    return this.leaving.size;
  }

  /**
   * Makes the host KVP values offered to `vm`'s guest equal `values` (the cluster state's): new and
   * changed ones are sent, removed ones taken back. Nothing when its devices are not served here.
   */
  syncHostKvp(vm: string, values: Readonly<Record<string, string>>): void {
    const kvp = this.attached.get(vm)?.kvp;
    if (kvp === undefined) return;
    for (const key of [...kvp.hostValues.keys()]) if (!(key in values)) kvp.delete(key);
    for (const [key, value] of Object.entries(values)) if (kvp.hostValues.get(key) !== value) kvp.set(key, value);
  }

  /** Heartbeat: one PING to every guest served here (the node calls it every second). */
  pingAll(nowMs: number): void {
    for (const a of this.attached.values()) a.heartbeat.ping(nowMs);
  }

  /** The guest's health and published KVP values, as this node's devices know them. */
  guest(vm: string): GuestView {
    const a = this.attached.get(vm);
    if (a === undefined || a.child.state === "halted") return { health: "unknown", kvp: {} };
    return { health: a.heartbeat.health, kvp: Object.fromEntries([...a.kvp.guestValues].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) };
  }

  /** Bytes written by each VM's guest to its disks through this node (since the node started). */
  writtenBytes(): Map<string, number> {
    const out = new Map(this.writtenBefore);
    for (const a of this.attached.values()) out.set(a.vm, (out.get(a.vm) ?? 0) + a.storage.reduce((n, s) => n + s.stats.writtenBytes, 0));
    return out;
  }

  /**
   * Graceful stop: asks the guest to shut down through its shutdown channel and waits, at most
   * `timeoutMs`, for it to power off. "not-connected": the guest has no shutdown channel open (it was
   * not asked); "refused": it answered with an error status; "timeout": it did not power off in time.
   */
  async requestShutdown(vm: string, reason: string, timeoutMs: number): Promise<GuestShutdown> {
    const a = this.attached.get(vm);
    if (a === undefined || !a.shutdown.connected) return "not-connected";
    const child = a.child;
    const off = (): boolean => child.state === "halted";
    if (off()) return "off";
    const deadline = Date.now() + timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)));
    try {
      const status = await Promise.race([a.shutdown.request(reason).catch(() => -1), late]);
      if (status === "timeout") return "timeout";
      if (status !== 0) return "refused";
      while (!off() && Date.now() < deadline) await sleep(20);
      return off() ? "off" : "timeout";
    } finally {
      clearTimeout(timer);
    }
  }

  /** Removes a deleted VM's disks from cluster storage. */
  async deleteDisks(vm: string): Promise<void> {
    if (this.storageDir === null) return;
    await this.detach(vm);
    this.writtenBefore.delete(vm);
    await rm(this.vmDir(vm), { recursive: true, force: true });
  }

  /**
   * Removes the storage folders of VMs that no longer exist (`exists` says which do) and were last
   * changed more than `minAgeMs` ago (a folder of a VM just created is never taken for a leftover).
   */
  async forgetDeleted(exists: (vm: string) => boolean, names: readonly string[], minAgeMs: number): Promise<void> {
    if (this.storageDir === null) return;
    for (const vm of names) {
      if (exists(vm) || this.attached.has(vm)) continue;
      const dir = this.vmDir(vm);
      const info = await stat(dir).catch(() => null);
      if (info === null || !info.isDirectory() || Date.now() - info.mtimeMs < minAgeMs) continue;
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      this.log.info(`removed the disks of deleted vm ${vm} from ${dir}`);
    }
  }

  /** Detaches every VM (the node closes); ports still handing over do it now. */
  async closeAll(): Promise<void> {
    for (const vm of [...this.attached.keys()]) await this.detach(vm).catch(() => undefined);
    for (const nic of [...this.leaving]) nic.handOver();
    for (const t of this.leaveTimers) clearTimeout(t);
    this.leaveTimers.clear();
  }
}

export async function closeDisks(disks: readonly DiskImage[]): Promise<void> {
  await Promise.allSettled(disks.map((d) => d.close()));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
