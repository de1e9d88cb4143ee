/**
 * A fault-injecting TCP proxy on loopback: it forwards every connection it accepts to its target.
 * `cut()` resets every connection it carries and refuses new ones (the link is down, as when a cable
 * is pulled and the kernel answers with resets); `heal()` lets connections through again. The chaos
 * harness puts one between each node and the nats-server and one on each direction of each Raft link.
 */
import { createServer, connect, type Server, type Socket } from "node:net";

export class FaultProxyError extends Error {
  override readonly name = "FaultProxyError";
}

export class FaultProxy {
  private readonly sockets = new Set<Socket>();
  private down = false;
  private closed = false;

  private constructor(private readonly server: Server, readonly port: number, private targetPort: number, readonly label: string) {
    server.on("connection", (client) => this.accept(client));
  }

  /** Listens on 127.0.0.1:`port` (0: a free one) and forwards to 127.0.0.1:`targetPort`. */
  static async start(label: string, targetPort: number, port = 0): Promise<FaultProxy> {
    const server = createServer({ noDelay: true });
    const bound = await new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        const a = server.address();
        if (typeof a !== "object" || a === null) reject(new FaultProxyError(`proxy ${label}: no address`));
        else resolve(a.port);
      });
    });
    return new FaultProxy(server, bound, targetPort, label);
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get isCut(): boolean {
    return this.down;
  }

  /** Resets every connection and refuses new ones until `heal()`. */
  cut(): void {
    this.down = true;
    for (const s of this.sockets) s.resetAndDestroy();
    this.sockets.clear();
  }

  heal(): void {
    this.down = false;
  }

  /** Points new connections at another port (connections already open are reset). */
  retarget(targetPort: number): void {
    this.targetPort = targetPort;
    for (const s of this.sockets) s.resetAndDestroy();
    this.sockets.clear();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    if (this.down || this.closed) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect({ host: "127.0.0.1", port: this.targetPort, noDelay: true });
    const pair = [client, upstream];
    for (const s of pair) {
      this.sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => {
        this.sockets.delete(s);
        for (const o of pair) if (o !== s && !o.destroyed) o.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
