/**
 * The destination side of a live migration.
 *
 * Receiver states:
 *
 *   Handshake --Config, admitted--> Receiving (pages written straight into the new partition's frames;
 *       |                                    the VM worker starts beside them, then Standby is sent)
 *       | refused (no memory, name taken...)     | State
 *       v                                        v
 *     Failed <--Abandon / bad frame / link---- Prepared (VM worker restored, paused; nothing runs yet)
 *       (the new partition is destroyed:         | Complete (the source passed the commit point)
 *        nothing ran here)                       v
 *                                             Running (Resumed sent)
 *
 * Before Complete the destination never runs a vCPU, so a failure anywhere leaves the VM only on the
 * source. After Complete, the VM is this side's to run.
 */
import { Ept, GuestMemory, MemoryMap, PAGE_SIZE, type ChildPartition, type RootPartition } from "@hyperfleet/hypervisor";
import { applyBatch, decodeBatch } from "./codec/index.js";
import {
  FrameReader, FrameWriter, MessageType, parseJson, ProtocolError, PROTOCOL_VERSION, typeName,
  type ConfigMessage, type Frame, type StartMessage,
} from "./protocol.js";
import { systemTimers } from "./adapters/system-timers.js";
import type { Timers } from "./timers.js";
import type { MigrationTransport } from "./transport.js";

export type IncomingResult =
  | { ok: true; partition: ChildPartition; pagesReceived: number }
  | { ok: false; reason: string };

export class MigrationDestination {
  private readonly writer: FrameWriter;
  private readonly reader: FrameReader;
  private state: "handshake" | "receiving" | "prepared" | "running" | "failed" = "handshake";
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

  /**
   * `peerTimeoutMs`: once the source has started, silence this long before Complete means it died;
   * the half-built partition is torn down (the VM never ran here).
   */
  constructor(
    private readonly root: RootPartition,
    private readonly transport: MigrationTransport,
    session: number,
    peerTimeoutMs = 10_000,
    timers: Timers = systemTimers,
  ) {
    this.lastFrameAt = timers.now();
    this.writer = new FrameWriter(session);
    this.reader = new FrameReader(session);
    this.done = new Promise((resolve) => (this.settle = resolve));
    transport.onFrame((data) => {
      this.lastFrameAt = timers.now();
      // one frame at a time, in arrival order
      this.queue = this.queue.then(() => this.receive(data));
    });
    const watch = (): void => {
      if (this.state !== "handshake" && timers.now() - this.lastFrameAt > peerTimeoutMs) {
        this.queue = this.queue.then(() => this.fail(`the source went silent for ${peerTimeoutMs} ms`, false));
        return;
      }
      this.stopWatchdog = timers.after(Math.min(1000, peerTimeoutMs), watch);
    };
    watch();
    transport.onError((e) => void this.fail(`link failed: ${e.message}`, false));
  }

  private async receive(data: Uint8Array): Promise<void> {
    if (this.state === "failed" || this.state === "running") return;
    let frame: Frame;
    try {
      frame = this.reader.read(data);
      await this.handle(frame);
    } catch (e) {
      await this.fail((e as Error).message, true);
    }
  }

  private async handle(f: Frame): Promise<void> {
    if (f.type === MessageType.Abandon) {
      await this.fail(`the source abandoned: ${parseJson<{ reason: string }>(f, { reason: "string" }).reason}`, false);
      return;
    }
    switch (this.state) {
      case "handshake":
        if (f.type === MessageType.Start) {
          const start = parseJson<StartMessage>(f, { protocol: "number" });
          if (start.protocol !== PROTOCOL_VERSION) throw new ProtocolError(`the source speaks protocol ${start.protocol}, this side ${PROTOCOL_VERSION}`);
          return;
        }
        if (f.type === MessageType.Config) {
          const c = parseJson<ConfigMessage>(f, { name: "string", memoryBytes: "number", vcpus: "number", boot: "string", bootargs: "string" });
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
          const ack = new Uint8Array(4);
          new DataView(ack.buffer).setUint32(0, f.seq, true);
          await this.send(this.writer.frame(MessageType.Ack, ack));
          return;
        }
        if (f.type === MessageType.State) {
          await this.spawning;
          await this.child!.provideState(f.payload);
          this.state = "prepared";
          await this.send(this.writer.frame(MessageType.Prepared));
          return;
        }
        break;
      case "prepared":
        if (f.type === MessageType.Complete) {
          await this.child!.resume();
          this.state = "running";
          await this.send(this.writer.frame(MessageType.Resumed)).catch(() => undefined);
          this.finish({ ok: true, partition: this.child!, pagesReceived: this.pagesReceived });
          return;
        }
        break;
    }
    throw new ProtocolError(`unexpected ${typeName(f.type)} while ${this.state}`);
  }

  /** Ends the migration here: nothing ran on this side, so the new partition goes away. */
  private async fail(reason: string, tellSource: boolean): Promise<void> {
    if (this.state === "failed" || this.state === "running") return;
    this.state = "failed";
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
    this.settle(r);
  }

  private async send(frame: Uint8Array): Promise<void> {
    await this.transport.send(frame);
  }
}
