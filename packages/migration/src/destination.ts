/**
 * The destination side of a live migration.
 *
 * Receiver states:
 *
 *   Handshake --Config, admitted--> Receiving (pages written straight into the new partition's frames,
 *       |                                    from every page stream opened at Start; the VM worker
 *       |                                    starts beside them, then Standby is sent)
 *       | refused (no memory, name taken...)     | State (once every stream delivered the batches it
 *       v                                        v        counts, the state is restored, paused)
 *     Failed <--Abandon / bad frame / link---- Committing: `commit()` (the cluster's transfer entry;
 *       (the new partition is destroyed:         |          at once when none is given)
 *        nothing ran here; Abandon tells the     | committed
 *        source unless the commit's outcome      v
 *        stayed unknown)                      Running (vCPUs resumed at once, then Resumed sent with
 *                                                      this side's times for the downtime figure; a
 *                                                      VM paused before the move stays paused)
 *
 * Before the commit point the destination never runs a vCPU, so a failure anywhere leaves the VM only
 * on the source. After it, the VM is this side's to run, whatever becomes of the source or the link:
 * the source, not hearing Resumed, asks the commit's record before it would run the VM again.
 */
import { Ept, GuestMemory, MemoryMap, PAGE_SIZE, type ChildPartition, type RootPartition } from "@hyperfleet/hypervisor";
import { applyBatch, decodeBatch } from "./codec/index.js";
import {
  FrameReader, FrameWriter, MessageType, parseJson, ProtocolError, PROTOCOL_VERSION, typeName,
  type ConfigMessage, type Frame, type ResumedMessage, type StartMessage,
} from "./protocol.js";
import { systemTimers } from "./adapters/system-timers.js";
import type { Timers } from "./timers.js";
import type { MigrationTransport } from "./transport.js";

export type IncomingResult =
  | { ok: true; partition: ChildPartition; pagesReceived: number }
  | { ok: false; reason: string };

/** A page stream as the destination receives it. */
interface InLane {
  transport: MigrationTransport;
  reader: FrameReader;
  writer: FrameWriter;
  /** Its frames, one at a time, in arrival order. */
  queue: Promise<void>;
  /** Pages frames applied from it. */
  pagesFrames: number;
}

function ackPayload(seq: number): Uint8Array {
  const ack = new Uint8Array(4);
  new DataView(ack.buffer).setUint32(0, seq, true);
  return ack;
}

/** State's payload: the Pages frames sent on each stream, then the vCPU and device state. */
function parseState(payload: Uint8Array): { counts: number[]; state: Uint8Array } {
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  if (payload.length < 4) throw new ProtocolError("State: no stream count");
  const n = v.getUint32(0, true);
  if (n < 1 || n > 64 || payload.length < 4 + 4 * n) throw new ProtocolError(`State: bad stream count ${n}`);
  const counts: number[] = [];
  for (let k = 0; k < n; k++) counts.push(v.getUint32(4 + 4 * k, true));
  return { counts, state: payload.subarray(4 + 4 * n) };
}

export class MigrationDestination {
  private readonly writer: FrameWriter;
  private readonly reader: FrameReader;
  private state: "handshake" | "receiving" | "committing" | "running" | "failed" = "handshake";
  private config: ConfigMessage | undefined;
  private child: ChildPartition | undefined;
  private ept: Ept | undefined;
  private guest: GuestMemory | undefined;
  private pagesReceived = 0;
  /** The VM worker, spawned at admission so that the downtime does not pay for it. */
  private spawning: Promise<void> | undefined;
  private settle!: (r: IncomingResult) => void;
  /** Resolves when the migration ends here, either way. */
  readonly done: Promise<IncomingResult>;
  private queue: Promise<void> = Promise.resolve();

  private lastFrameAt: number;
  private stopWatchdog: () => void = () => {};
  /** Page streams 1.. (the first is the control link, whose Pages go through `queue`). */
  private readonly lanes: InLane[] = [];
  /** Pages frames applied from the control link. */
  private controlPagesFrames = 0;
  /** Called whenever a page stream applied a batch or the migration failed (State waits on it). */
  private laneProgress: (() => void) | undefined;

  /**
   * `peerTimeoutMs`: silence this long before State (counted from this side's creation until Start
   * comes: a source that asked for a destination and died before it started is gone too) means the
   * source died; the half-built partition is torn down (the VM never ran here). From State on the
   * source has nothing more to say: this side decides.
   */
  constructor(
    private readonly root: RootPartition,
    private readonly transport: MigrationTransport,
    private readonly session: number,
    private readonly peerTimeoutMs = 10_000,
    private readonly timers: Timers = systemTimers,
    private readonly options: {
      /**
       * The commit point, asked once the whole VM is here (pages applied, state restored, paused):
       * resolves true if the switchover committed (this side runs the VM from now on), false if it did
       * not and never will (the VM stays the source's: this side tears down and says Abandon). A
       * rejection means the outcome is unknown: this side tears down and stays silent, so the source
       * settles it from the commit's own record. Default: committed at once (two nodes, no cluster).
       */
      commit?: () => Promise<boolean>;
      /** Called just before the vCPUs first run here (e.g. to record that the VM may run on this node from now on). */
      beforeResume?: () => void;
    } = {},
  ) {
    this.lastFrameAt = timers.now();
    this.writer = new FrameWriter(session);
    this.reader = new FrameReader(session);
    this.done = new Promise((resolve) => (this.settle = resolve));
    transport.onFrame((data) => {
      const at = timers.now();
      this.lastFrameAt = at;
      // one frame at a time, in arrival order
      this.queue = this.queue.then(() => this.receive(data, at));
    });
    const watch = (): void => {
      if (this.state !== "handshake" && this.state !== "receiving") return; // State came: the source has no more to say
      if (timers.now() - this.lastFrameAt > peerTimeoutMs) {
        const what = this.state === "handshake" ? "did not start within" : "went silent for";
        this.queue = this.queue.then(() => this.fail(`the source ${what} ${peerTimeoutMs} ms`, false));
        return;
      }
      this.stopWatchdog = timers.after(Math.min(1000, peerTimeoutMs), watch);
    };
    watch();
    transport.onError((e) => {
      this.queue = this.queue.then(() => this.fail(`link failed: ${e.message}`, false));
    });
  }

  private resumeHere(): Promise<number> {
    this.options.beforeResume?.();
    return this.child!.resume();
  }

  private async receive(data: Uint8Array, receivedAt: number): Promise<void> {
    if (this.state === "failed" || this.state === "running") return;
    let frame: Frame;
    try {
      frame = this.reader.read(data);
      await this.handle(frame, receivedAt);
    } catch (e) {
      await this.fail((e as Error).message, true);
    }
  }

  private async handle(f: Frame, receivedAt: number): Promise<void> {
    if (f.type === MessageType.Abandon) {
      await this.fail(`the source abandoned: ${parseJson<{ reason: string }>(f, { reason: "string" }).reason}`, false);
      return;
    }
    switch (this.state) {
      case "handshake":
        if (f.type === MessageType.Start) {
          const start = parseJson<StartMessage>(f, { protocol: "number" });
          if (start.protocol !== PROTOCOL_VERSION) throw new ProtocolError(`the source speaks protocol ${start.protocol}, this side ${PROTOCOL_VERSION}`);
          const streams = start.streams ?? 1;
          if (!Number.isInteger(streams) || streams < 1 || streams > 64) throw new ProtocolError(`Start: bad stream count ${String(streams)}`);
          for (let k = 1; k < streams; k++) await this.openLane(k);
          return;
        }
        if (f.type === MessageType.Config) {
          const c = parseJson<ConfigMessage>(f, { name: "string", memoryBytes: "number", vcpus: "number", boot: "string", bootargs: "string" });
          if (c.keepPaused !== undefined && typeof c.keepPaused !== "boolean") throw new ProtocolError(`Config.keepPaused must be true or false, got ${JSON.stringify(c.keepPaused)}`);
          try {
            this.child = this.root.create({ name: c.name, memoryBytes: c.memoryBytes, vcpus: c.vcpus, boot: c.boot, bootargs: c.bootargs });
          } catch (e) {
            await this.send(this.writer.json(MessageType.Refuse, { reason: (e as Error).message }));
            this.finish({ ok: false, reason: `refused: ${(e as Error).message}` });
            return;
          }
          this.config = c;
          this.ept = new Ept(c.memoryBytes / PAGE_SIZE);
          this.guest = new GuestMemory(this.root.pool, this.ept, MemoryMap.ram);
          this.state = "receiving";
          // Pre-copy starts at once; the VM worker starts beside it (its start-up takes tens to hundreds
          // of ms) and says Standby when ready. The source stops the VM only after Standby, so worker
          // start-up counts in neither the downtime nor, unless pre-copy is quicker, the total time.
          await this.send(this.writer.frame(MessageType.Admit));
          this.spawning = this.child.start({ awaitState: true, ept: this.ept }, { startPaused: true });
          this.spawning.then(
            () => {
              if (this.state === "receiving") void this.send(this.writer.frame(MessageType.Standby)).catch(() => undefined);
            },
            (e: unknown) => {
              this.queue = this.queue.then(() => this.fail(`the VM worker did not start: ${(e as Error).message}`, true));
            },
          );
          return;
        }
        break;
      case "receiving":
        if (f.type === MessageType.Pages) {
          this.applyPages(f);
          this.controlPagesFrames++;
          await this.send(this.writer.frame(MessageType.Ack, ackPayload(f.seq)));
          return;
        }
        if (f.type === MessageType.State) {
          const { counts, state } = parseState(f.payload);
          if (counts.length !== this.lanes.length + 1) throw new ProtocolError(`State: ${counts.length} page streams, this side has ${this.lanes.length + 1}`);
          if (counts[0] !== this.controlPagesFrames) throw new ProtocolError(`State: ${counts[0]} page batches sent on the control link, ${this.controlPagesFrames} arrived`);
          await this.lanesDelivered(counts);
          await this.spawning;
          await this.child!.provideState(state);
          const restoredAt = this.timers.now();
          await this.switchover(receivedAt, restoredAt);
          return;
        }
        break;
    }
    throw new ProtocolError(`unexpected ${typeName(f.type)} while ${this.state}`);
  }

  /**
   * The whole VM is here, paused: pass the commit point, run it, tell the source (see the states
   * above). Failures before the commit point are thrown (the caller tears down and says Abandon).
   */
  private async switchover(stateAt: number, restoredAt: number): Promise<void> {
    if (this.state !== "receiving") return; // failed meanwhile (a page stream broke): torn down already
    this.state = "committing";
    this.stopWatchdog();
    let committed: boolean;
    try {
      committed = this.options.commit === undefined ? true : await this.options.commit();
    } catch (e) {
      // outcome unknown: never run it here; silence sends the source to the commit's record
      await this.fail(`the commit's outcome is unknown: ${(e as Error).message}`, false);
      return;
    }
    if (!committed) {
      await this.fail("the switchover did not commit", true);
      return;
    }
    const committedAt = this.timers.now();
    // a VM that was paused before the move stays paused here
    const runningAfterCall = this.config?.keepPaused === true ? 0 : await this.resumeHere();
    this.state = "running";
    const answer: ResumedMessage = {
      restoredAfterMs: restoredAt - stateAt,
      committedAfterMs: committedAt - stateAt,
      runningAfterMs: committedAt - stateAt + runningAfterCall,
      answeredAfterMs: this.timers.now() - stateAt,
    };
    await this.send(this.writer.json(MessageType.Resumed, answer)).catch(() => undefined);
    this.finish({ ok: true, partition: this.child!, pagesReceived: this.pagesReceived });
  }

  /** Writes a Pages frame's batch into the new partition's memory. */
  private applyPages(f: Frame): void {
    if (f.payload.length < 4) throw new ProtocolError("Pages: no round number");
    const guest = this.guest!;
    const entries = decodeBatch(f.payload.subarray(4));
    for (const e of entries) {
      if (e.gpn >= this.ept!.pages) throw new ProtocolError(`Pages: guest page ${e.gpn} beyond the VM's ${this.ept!.pages}`);
    }
    applyBatch(entries, (gpn) => {
      const frame = guest.frameFor(gpn);
      return this.root.pool.memory.subarray(frame * PAGE_SIZE, (frame + 1) * PAGE_SIZE);
    });
    this.pagesReceived += entries.length;
  }

  /** Listens on page stream `k`: its Pages are applied in its own order and acknowledged on it. */
  private async openLane(k: number): Promise<void> {
    if (this.transport.stream === undefined) throw new ProtocolError(`the source asks for page streams, this side's transport carries one`);
    const transport = await this.transport.stream(k);
    const lane: InLane = {
      transport, reader: new FrameReader(this.session), writer: new FrameWriter(this.session), queue: Promise.resolve(), pagesFrames: 0,
    };
    this.lanes.push(lane);
    transport.onFrame((data) => {
      this.lastFrameAt = this.timers.now();
      lane.queue = lane.queue.then(() => this.receiveOnLane(lane, k, data));
    });
    transport.onError((e) => void this.laneFailed(`page stream ${k} failed: ${e.message}`));
  }

  private async receiveOnLane(lane: InLane, k: number, data: Uint8Array): Promise<void> {
    if (this.state === "failed" || this.state === "running") return;
    try {
      const f = lane.reader.read(data);
      if (f.type !== MessageType.Pages) throw new ProtocolError(`unexpected ${typeName(f.type)} on page stream ${k}`);
      if (this.state !== "receiving") throw new ProtocolError(`Pages on page stream ${k} while ${this.state}`);
      this.applyPages(f);
      lane.pagesFrames++;
      this.laneProgress?.();
      await lane.transport.send(lane.writer.frame(MessageType.Ack, ackPayload(f.seq)));
    } catch (e) {
      await this.laneFailed(`page stream ${k}: ${(e as Error).message}`);
    }
  }

  /**
   * A page stream failed or broke the protocol. Before State that ends the migration here; once State
   * came, every stream had delivered what it counts and the commit may be under way: nothing of
   * theirs matters any more, and tearing down now could lose a VM whose switchover commits.
   */
  private async laneFailed(reason: string): Promise<void> {
    if (this.state !== "handshake" && this.state !== "receiving") return;
    await this.fail(reason, true);
  }

  /** Resolves once every page stream has applied the batches State counts (within the peer timeout). */
  private lanesDelivered(counts: number[]): Promise<void> {
    const behind = (): boolean => this.lanes.some((l, i) => l.pagesFrames < counts[i + 1]!);
    if (!behind()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const stop = this.timers.after(this.peerTimeoutMs, () => {
        this.laneProgress = undefined;
        reject(new ProtocolError(`the page streams did not deliver what State counts within ${this.peerTimeoutMs} ms`));
      });
      this.laneProgress = () => {
        if (this.state === "failed") {
          stop();
          this.laneProgress = undefined;
          reject(new ProtocolError("the migration failed while the page streams were finishing"));
        } else if (!behind()) {
          stop();
          this.laneProgress = undefined;
          resolve();
        }
      };
    });
  }

  /** Ends the migration here: nothing ran on this side, so the new partition goes away. */
  private async fail(reason: string, tellSource: boolean): Promise<void> {
    if (this.state === "failed" || this.state === "running") return;
    this.state = "failed";
    this.laneProgress?.();
    if (tellSource) await this.send(this.writer.json(MessageType.Abandon, { reason })).catch(() => undefined);
    if (this.child !== undefined) {
      await this.spawning?.catch(() => undefined);
      const name = this.config!.name;
      if (this.child.worker === undefined) this.guest?.releaseAll();
      await this.root.destroy(name).catch(() => undefined);
    }
    this.finish({ ok: false, reason });
  }

  private finish(r: IncomingResult): void {
    this.stopWatchdog();
    for (const lane of this.lanes) void lane.transport.close().catch(() => undefined);
    this.settle(r);
  }

  private async send(frame: Uint8Array): Promise<void> {
    await this.transport.send(frame);
  }
}
