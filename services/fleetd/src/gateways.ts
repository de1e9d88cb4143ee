/**
 * This node's gateways: each a TCP port (`--gateways [HOST:]PORT=VM`) whose line protocol
 * (`GET k`, `SET k v`, `DEL k`, `PING`) reaches the request/response service of a VM through its first
 * NIC, over the virtual switch. The VM is looked up by name for every request, so the gateway follows
 * it through migrations and failovers, and answers `ERR` while the VM has no NIC or does not exist.
 */
import { randomBytes } from "node:crypto";
import { Gateway, type GatewayStats, type SwitchFabric } from "@hyperfleet/vmbus";
import type { GatewayConfig } from "./config.js";
import type { FleetdLogger } from "./node.js";

export interface RunningGateway {
  readonly vm: string;
  /** "host:port" it listens on. */
  readonly address: string;
  readonly stats: GatewayStats;
}

export class NodeGateways {
  private readonly gateways: { vm: string; address: string; gateway: Gateway }[] = [];

  constructor(
    private readonly fabric: SwitchFabric,
    /** The MAC of a VM's first NIC now (undefined: no such VM, or it has no NIC). */
    private readonly macOf: (vm: string) => string | undefined,
    private readonly log: FleetdLogger,
  ) {}

  /** Starts one gateway per entry; a port that cannot be opened fails the whole start (and closes the rest). */
  async start(configs: readonly GatewayConfig[], nodeId: string): Promise<void> {
    try {
      for (const [i, c] of configs.entries()) {
        // its own MAC on the switch, where the guests' replies come: 02:48:ff and three random bytes
        const mac = `02:48:ff:${[...randomBytes(3)].map((b) => b.toString(16).padStart(2, "0")).join(":")}`;
        const gateway = new Gateway({ fabric: this.fabric, mac, target: () => this.macOf(c.vm), senderId: `${nodeId}.gw${i}.${randomBytes(4).toString("hex")}` });
        const port = await gateway.listen(c.listen.port, c.listen.host).catch((e: unknown) => {
          throw new Error(`gateway for vm ${c.vm} on ${c.listen.host}:${c.listen.port}: ${e instanceof Error ? e.message : String(e)}`);
        });
        const address = `${c.listen.host.includes(":") ? `[${c.listen.host}]` : c.listen.host}:${port}`;
        this.gateways.push({ vm: c.vm, address, gateway });
        this.log.info(`gateway ${address} reaches vm ${c.vm}`);
      }
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  list(): RunningGateway[] {
    return this.gateways.map((g) => ({ vm: g.vm, address: g.address, stats: g.gateway.stats }));
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.gateways.splice(0).map((g) => g.gateway.close()));
  }
}
