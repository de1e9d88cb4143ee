/**
 * The channels a VM is offered, from its devices: integration services on channels 1 to 4, disks
 * from 8, NICs from 16 (a guest finds them by type and instance, not by number).
 */
import { ChannelType, MAX_CHANNELS, type Offer } from "@hyperfleet/hypervisor";

export interface VmDevices {
  /** Virtual disks, in order (instance n = the n-th). */
  disks?: number;
  /** NICs, by the low 4 bytes of their MAC (02:48 first). */
  nics?: number[];
  /** Heartbeat, shutdown, time sync and KVP (default on). */
  integration?: boolean;
}

export const FIRST_DISK_CHANNEL = 8;
export const FIRST_NIC_CHANNEL = 16;
export const MAX_DISKS = FIRST_NIC_CHANNEL - FIRST_DISK_CHANNEL;
export const MAX_NICS = MAX_CHANNELS - FIRST_NIC_CHANNEL;

export function buildOffers(devices: VmDevices): Offer[] {
  const disks = devices.disks ?? 0;
  const nics = devices.nics ?? [];
  if (!Number.isInteger(disks) || disks < 0 || disks > MAX_DISKS) throw new RangeError(`${disks} disks: a VM has 0 to ${MAX_DISKS}`);
  if (nics.length > MAX_NICS) throw new RangeError(`${nics.length} NICs: a VM has at most ${MAX_NICS}`);
  const offers: Offer[] = [];
  if (devices.integration !== false) {
    offers.push({ channel: 1, type: ChannelType.Heartbeat, instance: 0, param: 0 });
    offers.push({ channel: 2, type: ChannelType.Shutdown, instance: 0, param: 0 });
    offers.push({ channel: 3, type: ChannelType.TimeSync, instance: 0, param: 0 });
    offers.push({ channel: 4, type: ChannelType.Kvp, instance: 0, param: 0 });
  }
  for (let i = 0; i < disks; i++) offers.push({ channel: FIRST_DISK_CHANNEL + i, type: ChannelType.Storage, instance: i, param: 0 });
  nics.forEach((mac, i) => offers.push({ channel: FIRST_NIC_CHANNEL + i, type: ChannelType.Network, instance: i, param: mac >>> 0 }));
  return offers;
}
