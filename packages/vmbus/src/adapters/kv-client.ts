/**
 * A client of a guest key-value service behind a gateway (adapters/gateway.ts): one TCP connection,
 * one request at a time. A request that times out or loses its connection is tried again (on a new
 * connection) until `timeoutMs` has passed since it was first asked; every retry is counted.
 * SET and DEL are safe to repeat by the service's contract, so a retry never does harm.
 */
import { connect, type Socket } from "node:net";

export class KvClientError extends Error {
  override readonly name = "KvClientError";
}

export interface KvClientOptions {
  host?: string;
  port: number;
  /** The whole budget of one request, retries included. */
  timeoutMs?: number;
}

export class KvClient {
  /** Requests tried again (after ERR timeout or a lost connection). */
  retries = 0;
  private socket: Socket | undefined;
  private buffered = "";
  private waiter: ((line: string | Error) => void) | undefined;
  private readonly timeoutMs: number;

  constructor(private readonly options: KvClientOptions) {
    this.timeoutMs = options.timeoutMs ?? 5000;
  }

  async get(key: string): Promise<string | undefined> {
    const r = await this.call(`GET ${key}`);
    if (r === "NOTFOUND") return undefined;
    if (r.startsWith("OK ")) return r.slice(3);
    if (r === "OK") return "";
    throw new KvClientError(`GET ${key}: ${r}`);
  }

  async set(key: string, value: string): Promise<void> {
    const r = await this.call(`SET ${key} ${value}`);
    if (r !== "OK") throw new KvClientError(`SET ${key}: ${r}`);
  }

  async delete(key: string): Promise<boolean> {
    const r = await this.call(`DEL ${key}`);
    if (r === "OK") return true;
    if (r === "NOTFOUND") return false;
    throw new KvClientError(`DEL ${key}: ${r}`);
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  /** Sends one line, returns the reply line; retries a timeout or a broken connection within the budget. */
  private async call(line: string): Promise<string> {
    if (line.includes("\n")) throw new KvClientError("a key or value cannot contain a newline");
    const deadline = Date.now() + this.timeoutMs;
    let last = "no attempt";
    for (let attempt = 0; Date.now() < deadline; attempt++) {
      if (attempt > 0) this.retries++;
      try {
        const reply = await this.once(line, deadline - Date.now());
        if (reply !== "ERR timeout" && reply !== "ERR no such service now") return reply;
        last = reply;
      } catch (e) {
        last = (e as Error).message;
        this.close();
        await new Promise((r) => setTimeout(r, Math.min(50, Math.max(0, deadline - Date.now()))));
      }
    }
    throw new KvClientError(`${line.split(" ")[0]} gave up after ${this.timeoutMs} ms: ${last}`);
  }

  private async once(line: string, budgetMs: number): Promise<string> {
    const socket = await this.connection();
    let timer: NodeJS.Timeout | undefined;
    try {
      return await new Promise<string>((resolve, reject) => {
        this.waiter = (r) => (r instanceof Error ? reject(r) : resolve(r));
        timer = setTimeout(() => reject(new KvClientError("no reply in time")), budgetMs);
        socket.write(`${line}\n`);
      });
    } finally {
      clearTimeout(timer);
      this.waiter = undefined;
    }
  }

  private async connection(): Promise<Socket> {
    if (this.socket !== undefined && !this.socket.destroyed) return this.socket;
    const socket = connect({ host: this.options.host ?? "127.0.0.1", port: this.options.port });
    socket.setNoDelay(true);
    this.buffered = "";
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => resolve());
      socket.once("error", reject);
    });
    socket.on("data", (chunk: Buffer) => {
      this.buffered += chunk.toString("utf8");
      for (let nl = this.buffered.indexOf("\n"); nl >= 0; nl = this.buffered.indexOf("\n")) {
        const reply = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        this.waiter?.(reply);
      }
    });
    const broken = (): void => this.waiter?.(new KvClientError("the connection closed"));
    socket.on("error", broken);
    socket.on("close", broken);
    this.socket = socket;
    return socket;
  }
}
