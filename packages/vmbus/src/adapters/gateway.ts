/**
 * The gateway: lets an outside client reach a guest's request/response service. It listens on a TCP
 * port of the node and speaks a line protocol to the client; to the guest it speaks HFRPC datagrams
 * (guests/sdk/hf_rpc.h) through the virtual switch, addressed to the guest's MAC, so it reaches the
 * VM wherever it runs.
 *
 *   client: GET <key> | SET <key> <value> | DEL <key> | PING      (one per line, UTF-8)
 *   reply:  OK [<value>] | NOTFOUND | ERR <reason>
 *
 * A datagram can be lost (a switchover, a full queue): the gateway sends a request again every
 * `attemptMs` until the guest answers or `deadlineMs` passes (then ERR timeout). Requests are safe
 * to repeat by the service's contract; every resend is counted.
 */
import { createServer, type Server, type Socket } from "node:net";
import { macBytes, macString, type FabricFrame, type SwitchFabric } from "../network.js";

export const ETHERTYPE_RPC = 0x88b5;
export const RPC_MAGIC = 0x50524648;
export const RPC_HEADER_BYTES = 20;
export const RpcOp = { Get: 1, Set: 2, Delete: 3, Ping: 4 } as const;
export const RpcStatus = { Ok: 0, NotFound: 1, Error: 2, Bad: 3 } as const;
export const RPC_REPLY = 0x80;
export const RPC_KEY_MAX = 64;
export const RPC_VALUE_MAX = 256;
const LINE_MAX = 4096;

export interface RpcMessage {
  flow: number;
  id: number;
  op: number;
  status: number;
  key: Uint8Array;
  value: Uint8Array;
}

export function encodeRpc(dst: string, src: string, m: RpcMessage): Uint8Array {
  const out = new Uint8Array(14 + RPC_HEADER_BYTES + m.key.length + m.value.length);
  out.set(macBytes(dst), 0);
  out.set(macBytes(src), 6);
  const v = new DataView(out.buffer);
  v.setUint16(12, ETHERTYPE_RPC, false);
  v.setUint32(14, RPC_MAGIC, true);
  v.setUint32(18, m.flow >>> 0, true);
  v.setUint32(22, m.id >>> 0, true);
  v.setUint8(26, m.op);
  v.setUint8(27, m.status);
  v.setUint16(28, m.key.length, true);
  v.setUint32(30, m.value.length, true);
  out.set(m.key, 34);
  out.set(m.value, 34 + m.key.length);
  return out;
}

/** The HFRPC message in a frame, or undefined when the frame is not one. */
export function decodeRpc(frame: Uint8Array): (RpcMessage & { src: string; dst: string }) | undefined {
  if (frame.length < 14 + RPC_HEADER_BYTES) return undefined;
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (v.getUint16(12, false) !== ETHERTYPE_RPC || v.getUint32(14, true) !== RPC_MAGIC) return undefined;
  const keyLength = v.getUint16(28, true);
  const valueLength = v.getUint32(30, true);
  if (34 + keyLength + valueLength !== frame.length) return undefined;
  return {
    dst: macString(frame, 0),
    src: macString(frame, 6),
    flow: v.getUint32(18, true),
    id: v.getUint32(22, true),
    op: v.getUint8(26),
    status: v.getUint8(27),
    key: frame.slice(34, 34 + keyLength),
    value: frame.slice(34 + keyLength),
  };
}

export interface GatewayOptions {
  fabric: SwitchFabric;
  /** The gateway's own MAC on the switch (replies come to it). */
  mac: string;
  /** The MAC of the guest service, looked up per request (undefined: no such VM now). */
  target: () => string | undefined;
  /** Resend a request after this long without an answer. */
  attemptMs?: number;
  /** Give up on a request (ERR timeout) after this long. */
  deadlineMs?: number;
  /** Unique among the gateways of a cluster: prefixes the ids of the frames this one sends. */
  senderId: string;
}

export interface GatewayStats {
  requests: number;
  resends: number;
  timeouts: number;
  connections: number;
}

interface Pending {
  resolve: (m: RpcMessage) => void;
}

export class Gateway {
  readonly stats: GatewayStats = { requests: 0, resends: 0, timeouts: 0, connections: 0 };
  private server: Server | undefined;
  private readonly pending = new Map<string, Pending>();
  private readonly sockets = new Set<Socket>();
  private stopListening: (() => void) | undefined;
  private nextFlow = 1;
  private frameSeq = 0;
  private readonly attemptMs: number;
  private readonly deadlineMs: number;

  constructor(private readonly options: GatewayOptions) {
    macBytes(options.mac);
    this.attemptMs = options.attemptMs ?? 200;
    this.deadlineMs = options.deadlineMs ?? 2000;
  }

  /** Listens on `port` (0: any free one) of `host`; resolves with the port. */
  async listen(port: number, host = "127.0.0.1"): Promise<number> {
    this.stopListening = this.options.fabric.listen(this.options.mac, (f) => this.arrive(f));
    const server = createServer((socket) => this.serve(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    const address = server.address();
    return typeof address === "object" && address !== null ? address.port : port;
  }

  async close(): Promise<void> {
    this.stopListening?.();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server === undefined ? resolve() : this.server.close(() => resolve())));
  }

  /** Sends one request to the guest and waits for its answer, resending until the deadline. */
  async request(flow: number, id: number, op: number, key: Uint8Array, value: Uint8Array): Promise<RpcMessage | undefined> {
    this.stats.requests++;
    const tag = `${flow}/${id}`;
    const answer = new Promise<RpcMessage>((resolve) => this.pending.set(tag, { resolve }));
    const deadline = Date.now() + this.deadlineMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      for (let attempt = 0; ; attempt++) {
        const target = this.options.target();
        if (target !== undefined) {
          if (attempt > 0) this.stats.resends++;
          const frame = encodeRpc(target, this.options.mac, { flow, id, op, status: 0, key, value });
          this.options.fabric.publish(target, { id: `${this.options.senderId}-${++this.frameSeq}`, frame });
        }
        const waitMs = Math.min(this.attemptMs, deadline - Date.now());
        if (waitMs <= 0) break;
        const got = await Promise.race([answer, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), waitMs)))]);
        clearTimeout(timer);
        if (got !== undefined) return got;
      }
      this.stats.timeouts++;
      return undefined;
    } finally {
      this.pending.delete(tag);
    }
  }

  private arrive(f: FabricFrame): void {
    const m = decodeRpc(f.frame);
    if (m === undefined || (m.op & RPC_REPLY) === 0) return;
    this.pending.get(`${m.flow}/${m.id}`)?.resolve(m);
  }

  private serve(socket: Socket): void {
    this.stats.connections++;
    this.sockets.add(socket);
    const flow = this.nextFlow++;
    let nextId = 1;
    let buffered = "";
    let chain = Promise.resolve();
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      if (buffered.length > LINE_MAX && !buffered.includes("\n")) {
        socket.end("ERR line too long\n");
        return;
      }
      for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
        const line = buffered.slice(0, nl).replace(/\r$/, "");
        buffered = buffered.slice(nl + 1);
        const id = nextId++;
        chain = chain.then(async () => {
          const reply = await this.answer(flow, id, line);
          if (!socket.destroyed) socket.write(`${reply}\n`);
        });
      }
    });
    socket.on("error", () => undefined);
    socket.on("close", () => this.sockets.delete(socket));
  }

  /** One client line to its reply line. */
  private async answer(flow: number, id: number, line: string): Promise<string> {
    const m = /^(GET|SET|DEL|PING)(?: (\S+))?(?: (.*))?$/.exec(line);
    if (m === null) return `ERR bad request: expected GET <key>, SET <key> <value>, DEL <key> or PING`;
    const [, verb, key = "", value = ""] = m;
    const op = verb === "GET" ? RpcOp.Get : verb === "SET" ? RpcOp.Set : verb === "DEL" ? RpcOp.Delete : RpcOp.Ping;
    if (op !== RpcOp.Ping && key === "") return `ERR bad request: ${verb} needs a key`;
    if (op !== RpcOp.Set && value !== "") return `ERR bad request: ${verb} takes no value`;
    const keyBytes = new TextEncoder().encode(key);
    const valueBytes = new TextEncoder().encode(value);
    if (keyBytes.length > RPC_KEY_MAX) return `ERR bad request: key of ${keyBytes.length} bytes, at most ${RPC_KEY_MAX}`;
    if (valueBytes.length > RPC_VALUE_MAX) return `ERR bad request: value of ${valueBytes.length} bytes, at most ${RPC_VALUE_MAX}`;
    if (this.options.target() === undefined) return "ERR no such service now";
    const r = await this.request(flow, id, op, keyBytes, valueBytes);
    if (r === undefined) return "ERR timeout";
    switch (r.status) {
      case RpcStatus.Ok: return op === RpcOp.Get ? `OK ${new TextDecoder().decode(r.value)}` : "OK";
      case RpcStatus.NotFound: return "NOTFOUND";
      case RpcStatus.Bad: return "ERR the service refused the request";
      default: return "ERR the service failed";
    }
  }
}
