/**
 * Everything the root serves one VM over VMBus: its integration services, a storage VSP per disk, a
 * network VSP per NIC (a port on the switch, by the MAC its offer names) and the `VmBus` that routes
 * each offered channel to its provider. A node makes one wherever the VM comes to run.
 */
import { ChannelType, type Offer } from "@hyperfleet/hypervisor";
import type { DiskImage } from "./disk-image.js";
import { IntegrationServices } from "./integration.js";
import { NetworkVsp, nicMac, type SwitchFabric } from "./network.js";
import { StorageVsp } from "./storage.js";
import { VmBus, type VmBusPort, type Vsp } from "./vmbus.js";

export interface VmDeviceSetOptions {
  /** The VM's disks, in instance order. */
  readonly disks: readonly DiskImage[];
  /**
   * The switch for the VM's NICs, and a sender id unique among all ports ever (NIC instance i's port
   * uses `<senderId>.<i>`). Required when the offers name NICs.
   */
  readonly network?: { readonly fabric: SwitchFabric; readonly senderId: string };
  /** The host's wall clock, for time sync. */
  readonly unixMs: () => number;
  /** A provider's failure: `where` is "disk<i>" or "channel <c>". */
  readonly onError: (where: string, error: Error) => void;
}

export class VmDeviceSet {
  private readonly ics: IntegrationServices;
  readonly storage: StorageVsp[];
  readonly nics: NetworkVsp[];
  readonly bus: VmBus;

  constructor(port: VmBusPort, offers: readonly Offer[], options: VmDeviceSetOptions) {
    this.ics = new IntegrationServices(options.unixMs);
    this.storage = options.disks.map((d, i) => new StorageVsp(d, (e) => options.onError(`disk${i}`, e)));
    const nicOffers = offers.filter((o) => o.type === ChannelType.Network);
    const network = options.network;
    if (nicOffers.length > 0 && network === undefined) throw new RangeError(`${nicOffers.length} NICs offered, but no switch to connect them to`);
    this.nics = nicOffers.map((o) => new NetworkVsp(nicMac(o.param), network!.fabric, `${network!.senderId}.${o.instance}`));
    const provider = (o: Offer): Vsp | undefined =>
      o.type === ChannelType.Storage ? this.storage[o.instance] : o.type === ChannelType.Network ? this.nics[o.instance] : this.ics.provider(o);
    this.bus = new VmBus(port, offers, { provider, onError: (o, e) => options.onError(`channel ${o.channel}`, e) });
  }

  get heartbeat(): IntegrationServices["heartbeat"] {
    return this.ics.heartbeat;
  }

  get shutdown(): IntegrationServices["shutdown"] {
    return this.ics.shutdown;
  }

  get timeSync(): IntegrationServices["timeSync"] {
    return this.ics.timeSync;
  }

  get kvp(): IntegrationServices["kvp"] {
    return this.ics.kvp;
  }

  /**
   * Starts serving: the NICs' ports listen, then tell the port the VM left behind (if it moved here)
   * to hand over what it held, then the VMBus serves the guest.
   */
  attach(): void {
    for (const nic of this.nics) {
      nic.listen();
      nic.announce();
    }
    this.bus.attach();
  }

  /** Stops serving the VM here; its NICs stop listening and drop what waited for it. */
  close(): void {
    this.bus.close();
    for (const nic of this.nics) nic.shutdown();
  }
}
