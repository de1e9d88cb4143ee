import type { Message, NodeId } from "./types.js";

/** A pending linearizable read on the leader: the commit index when it arrived and who confirmed since. */
export interface ReadIndexStatus {
  readonly req: Message;
  readonly index: number;
  readonly acks: Set<NodeId>;
}

/**
 * ReadIndex on the leader (thesis §6.4): a read request records the current commit index, and becomes
 * safe to serve once a quorum answered a heartbeat round carrying the request's context, which proves
 * that this leader was still the leader when the request arrived. Requests resolve in arrival order: a
 * quorum acknowledging a later context confirms every earlier one too.
 */
export class ReadOnly {
  private readonly pending = new Map<string, ReadIndexStatus>();
  private queue: string[] = [];

  /** Records request `req` (its `context` is the key) at commit index `index`; duplicates are ignored. */
  addRequest(index: number, req: Message): void {
    const key = contextKey(req.context);
    if (this.pending.has(key)) return;
    this.pending.set(key, { req, index, acks: new Set() });
    this.queue.push(key);
  }

  /** Records a heartbeat answer from `id` carrying `context`; returns the acknowledgers so far, or null for an unknown context. */
  recvAck(id: NodeId, context: Uint8Array): ReadonlySet<NodeId> | null {
    const rs = this.pending.get(contextKey(context));
    if (rs === undefined) return null;
    rs.acks.add(id);
    return rs.acks;
  }

  /** Removes and returns the requests up to and including the one with `context`, in arrival order. */
  advance(context: Uint8Array): ReadIndexStatus[] {
    const key = contextKey(context);
    const i = this.queue.indexOf(key);
    if (i < 0) return [];
    const done = this.queue.slice(0, i + 1);
    this.queue = this.queue.slice(i + 1);
    const out: ReadIndexStatus[] = [];
    for (const k of done) {
      const rs = this.pending.get(k);
      if (rs !== undefined) out.push(rs);
      this.pending.delete(k);
    }
    return out;
  }

  /** The context of the latest pending request (heartbeats carry it), or null. */
  lastPendingRequestContext(): Uint8Array | null {
    if (this.queue.length === 0) return null;
    return this.pending.get(this.queue[this.queue.length - 1])?.req.context ?? null;
  }

  pendingCount(): number {
    return this.queue.length;
  }
}

function contextKey(context: Uint8Array): string {
  let s = "";
  for (let i = 0; i < context.length; i++) s += context[i].toString(16).padStart(2, "0");
  return s;
}
