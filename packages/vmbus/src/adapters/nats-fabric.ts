/**
 * The virtual switch's fabric over NATS: frames for MAC m go to subject `hyperfleet.net.<m>` (the MAC
 * without colons), prefixed by their id (u8 length, UTF-8 id). Core NATS delivers at most once,
 * in order per publisher; the ports above drop repeats by id.
 */
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { NetworkError, type FabricFrame, type SwitchFabric } from "../network.js";

export function netSubject(mac: string): string {
  return `hyperfleet.net.${mac.replaceAll(":", "")}`;
}

export function encodeFabricFrame(f: FabricFrame): Uint8Array {
  const id = new TextEncoder().encode(f.id);
  if (id.length > 255) throw new NetworkError(`frame id of ${id.length} bytes, at most 255`);
  const out = new Uint8Array(1 + id.length + f.frame.length);
  out[0] = id.length;
  out.set(id, 1);
  out.set(f.frame, 1 + id.length);
  return out;
}

export function decodeFabricFrame(data: Uint8Array): FabricFrame {
  if (data.length < 1 || data.length < 1 + data[0]!) throw new NetworkError(`a fabric message of ${data.length} bytes is shorter than its id`);
  const n = data[0]!;
  return { id: new TextDecoder().decode(data.subarray(1, 1 + n)), frame: data.slice(1 + n) };
}

export class NatsFabric implements SwitchFabric {
  /** Messages that were not frames (counted, dropped). */
  malformed = 0;

  constructor(private readonly nc: NatsConnection) {}

  publish(dstMac: string, f: FabricFrame): void {
    if (this.nc.isClosed()) return; // a switch without its fabric drops, as a cut cable does
    this.nc.publish(netSubject(dstMac), encodeFabricFrame(f));
  }

  listen(mac: string, handler: (f: FabricFrame) => void): () => void {
    const sub: Subscription = this.nc.subscribe(netSubject(mac), {
      callback: (err, msg) => {
        if (err) return;
        let f: FabricFrame;
        try {
          f = decodeFabricFrame(msg.data);
        } catch {
          this.malformed++;
          return;
        }
        handler(f);
      },
    });
    return () => sub.unsubscribe();
  }

  /** Resolves once the server has every subscription and publication so far. */
  async flush(): Promise<void> {
    await this.nc.flush();
  }
}
