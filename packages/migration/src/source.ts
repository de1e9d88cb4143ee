/**
 * The source side of a live migration.
 *
 * Sender states:
 *
 *   Handshake --Admit--> PreCopy (round 0: every non-zero page; rounds 1..n: pages dirtied meanwhile)
 *       |                   | stop rule: remaining dirty bytes / measured bandwidth <= downtime limit
 *    Refuse                 |           (or the round/time limit passed and the policy is "force")
 *       v                   v
 *     Failed <------- StopAndCopy (vCPUs paused: last dirty pages, then vCPU and device state)
 *       ^  Abandon          | <- Prepared
 *       |  (VM resumes      v
 *       |   here)        Commit point: options.commit() (a Raft entry in a cluster; true standalone)
 *       +---- false --------+ true
 *                           v
 *                       Complete -> <- Resumed: Done (the VM runs only on the destination)
 *
 * Any failure before the commit point (refusal, transport error, bad frame, timeout, cancel) sends
 * Abandon and leaves the VM running on the source. After it, the source never resumes the VM.
 */
import type { VmWorker } from "@hyperfleet/hypervisor";
import { concat, dirtyPages, PAGE_SIZE } from "@hyperfleet/hypervisor";
import { BatchBuilder, SentPages, isZeroPage } from "./codec/index.js";
import {
  FrameReader, FrameWriter, HEADER_BYTES, MessageType, parseJson, ProtocolError, PROTOCOL_VERSION, typeName,
  type ConfigMessage, type Frame,
} from "./protocol.js";
import { systemTimers } from "./adapters/system-timers.js";
import type { Timers } from "./timers.js";
import type { MigrationTransport } from "./transport.js";

/**
 * When pre-copy does not converge: "force" stops and copies what is left once the round or time
 * limit passes (a longer pause); "cancel" gives up (the VM stays on the source); "auto-converge"
 * throttles the vCPUs (20 %, then +10 % per round that still does not fit, up to 99 %) so the guest
 * dirties memory more slowly, and forces at the limit.
 */
export type NoConvergencePolicy = "force" | "cancel" | "auto-converge";

export interface MigrationOptions {
  /** Longest acceptable pause of the vCPUs. */
  downtimeLimitMs?: number;
  /** Cap on the bytes sent per second (undefined: as fast as the link goes). */
  bandwidthLimitBytesPerSecond?: number;
  /** Pre-copy rounds before the policy applies. */
  maxRounds?: number;
  /** Pre-copy time before the policy applies. */
  maxPreCopyMs?: number;
  /** What to do when the dirty set never fits the downtime limit. */
  whenNoConvergence?: NoConvergencePolicy;
  /** Whole-migration deadline: past it, the migration is abandoned (before the commit point). */
  timeoutMs?: number;
  /** Page batches in flight without an Ack. */
  window?: number;
  /** Abort when the destination says nothing for this long while an answer is due (a dead peer). */
  peerTimeoutMs?: number;
  /** The commit point; resolves true if the move is decided. */
  commit?: () => Promise<boolean>;
  onProgress?: (progress: MigrationProgress) => void;
  /** Clock and timers (the host's by default). */
  timers?: Timers;
  /** Memory for the last-sent copies that later rounds send deltas against (default: the guest's RAM, up to 1 GiB). */
  deltaCacheBytes?: number;
  /**
   * A cache of last-sent pages that the node keeps across migrations (reserved once, see
   * `SentPages.reserve`); it is forgotten at the start of this migration. Overrides deltaCacheBytes.
   */
  deltaCache?: SentPages;
}

export interface MigrationProgress {
  phase: "handshake" | "precopy" | "stop-and-copy" | "commit" | "done" | "failed";
  round: number;
  pagesRemaining: number;
  dirtyPagesPerSecond: number;
  throughputBytesPerSecond: number;
  expectedDowntimeMs: number;
  etaMs: number;
  /** Percent of wall time the vCPUs sit out (auto-converge); 0 when not throttled. */
  throttlePercent: number;
}

export type MigrationResult =
  | {
      ok: true;
      totalMs: number;
      downtimeMs: number;
      /**
       * Where the downtime went: pause; the last dirty log and the state save (fetched together); the
       * last pages and the state sent; the destination applying them (prepare); commit; resume.
       */
      downtimeBreakdownMs: Record<"pause" | "sync" | "pages" | "state" | "prepare" | "commit" | "resume", number>;
      bytesSent: number;
      rounds: number;
      pagesPerRound: number[];
      /** Start to admission (the destination reserved memory and readied its VM worker). */
      handshakeMs: number;
      /** How long each pre-copy round took (the stop-and-copy round is in the downtime). */
      roundMs: number[];
      /** The most the vCPUs were throttled (auto-converge), in percent; 0 if never. */
      throttlePercentMax: number;
    }
  | { ok: false; reason: string; committed: boolean; totalMs: number; bytesSent: number };

export class MigrationError extends Error {
  override readonly name = "MigrationError";
}

class Cancelled extends Error {}

const ZERO_PAGE = new Uint8Array(PAGE_SIZE);
/** A final copy expected to take at most this long ends pre-copy (under the limit, rounds go on while they shrink the set). */
const QUICK_FINAL_COPY_MS = 10;

/** The VM being moved, and what the destination needs to build it. */
export interface SourceVm {
  vm: VmWorker;
  name: string;
  memoryBytes: number;
  vcpus: number;
  boot: "bare" | "sbi";
  bootargs: string;
}

export class MigrationSource {
  private readonly writer: FrameWriter;
  private readonly reader: FrameReader;
  private readonly options: Required<Omit<MigrationOptions, "bandwidthLimitBytesPerSecond" | "onProgress" | "commit" | "timers" | "deltaCacheBytes" | "deltaCache">> &
    Pick<MigrationOptions, "bandwidthLimitBytesPerSecond" | "onProgress" | "commit">;
  private readonly sent: SentPages;
  private readonly timers: Timers;
  private readonly builder: BatchBuilder;
  private readonly scratch = new Uint8Array(PAGE_SIZE);
  private inbox: Frame[] = [];
  private waiter: (() => void) | undefined;
  private failure: Error | undefined;
  private bytesSent = 0;
  private unacked: number[] = [];
  /** The destination's VM worker is ready for the state (Standby came). */
  private standby = false;
  private progress: MigrationProgress = {
    phase: "handshake", round: 0, pagesRemaining: 0, dirtyPagesPerSecond: 0, throughputBytesPerSecond: 0, expectedDowntimeMs: 0, etaMs: 0,
    throttlePercent: 0,
  };

  constructor(
    private readonly source: SourceVm,
    private readonly transport: MigrationTransport,
    session: number,
    options: MigrationOptions = {},
  ) {
    this.writer = new FrameWriter(session);
    this.reader = new FrameReader(session);
    this.options = {
      downtimeLimitMs: options.downtimeLimitMs ?? 300,
      maxRounds: options.maxRounds ?? 30,
      maxPreCopyMs: options.maxPreCopyMs ?? 60_000,
      whenNoConvergence: options.whenNoConvergence ?? "force",
      timeoutMs: options.timeoutMs ?? 300_000,
      window: options.window ?? 16,
      peerTimeoutMs: options.peerTimeoutMs ?? 5000,
      bandwidthLimitBytesPerSecond: options.bandwidthLimitBytesPerSecond,
      onProgress: options.onProgress,
      commit: options.commit,
    };
    if (options.deltaCache !== undefined) options.deltaCache.forget();
    this.sent = options.deltaCache ?? new SentPages({ budgetBytes: options.deltaCacheBytes ?? Math.min(source.memoryBytes, 1024 * 2 ** 20) });
    // LZ4 costs CPU time at a few hundred MB/s: it pays only when the link is slower than that.
    this.builder = new BatchBuilder(options.bandwidthLimitBytesPerSecond !== undefined ? {} : { codec: null });
    this.timers = options.timers ?? systemTimers;
    transport.onFrame((data) => {
      try {
        const frame = this.reader.read(data);
        if (frame.type === MessageType.Standby) this.standby = true;
        else this.inbox.push(frame);
      } catch (e) {
        this.failure ??= e as Error;
      }
      this.wake();
    });
    transport.onError((e) => {
      this.failure ??= e;
      this.wake();
    });
  }

  /** Stops the migration at the next step; the VM stays (or goes back to running) on the source. */
  cancel(reason = "cancelled"): void {
    this.failure ??= new Cancelled(reason);
    this.wake();
  }

  async run(): Promise<MigrationResult> {
    const now = (): number => this.timers.now();
    const started = now();
    const deadline = started + this.options.timeoutMs;
    const cancelTimer = this.timers.after(this.options.timeoutMs, () => this.cancel(`timed out after ${this.options.timeoutMs} ms`));
    const { vm } = this.source;
    let paused = false;
    let throttle = 0;
    let throttleMax = 0;
    let committed = false;
    let logging = false;
    const pagesPerRound: number[] = [];
    const roundMs: number[] = [];
    let handshakeMs: number;
    try {
      // Handshake and admission
      await this.send(MessageType.Start, json({ protocol: PROTOCOL_VERSION, capabilities: ["delta", "lz4"] }));
      const config: ConfigMessage = {
        name: this.source.name, memoryBytes: this.source.memoryBytes, vcpus: this.source.vcpus, boot: this.source.boot, bootargs: this.source.bootargs,
      };
      await this.send(MessageType.Config, json(config));
      const answer = await this.expect([MessageType.Admit, MessageType.Refuse]);
      if (answer.type === MessageType.Refuse) {
        throw new MigrationError(`the destination refused: ${parseJson<{ reason: string }>(answer, { reason: "string" }).reason}`);
      }

      handshakeMs = now() - started;

      // Pre-copy
      await vm.startDirtyLog();
      logging = true;
      await vm.getAndClearDirtyLog();
      const pages = vm.ept.pages;
      this.phase("precopy");
      let round = 0;
      let toSend: number[] = [];
      for (let g = 0; g < pages; g++) if (vm.ept.frame(g) >= 0) toSend.push(g);
      let lastSync = now();
      let previousDirty = Infinity;
      const preCopyStart = now();
      for (;;) {
        this.progress.round = round;
        const roundStart = now();
        const sentBefore = this.bytesSent;
        pagesPerRound.push(await this.sendPages(round, toSend));
        await this.drain(0);
        const tookMs = Math.max(1, now() - roundStart);
        roundMs.push(tookMs);
        const bandwidth = ((this.bytesSent - sentBefore) / tookMs) * 1000 || 1;
        this.progress.throughputBytesPerSecond = bandwidth;
        const bitmap = await vm.getAndClearDirtyLog();
        const syncedAt = now();
        toSend = dirtyPages(bitmap);
        this.progress.dirtyPagesPerSecond = (toSend.length / Math.max(1, syncedAt - lastSync)) * 1000;
        lastSync = syncedAt;
        round++;
        // The stop rule, from this round's measurements: sending a page took roundMs / pages (CPU,
        // encoding and network together), and the wire carried `bandwidth` bytes/s.
        const sentPages = pagesPerRound[round - 1]!;
        const msPerPage = sentPages > 0 ? tookMs / sentPages : 0;
        const bytesPerPage = sentPages > 0 ? (this.bytesSent - sentBefore) / sentPages : PAGE_SIZE;
        const expectedMs = Math.max(toSend.length * msPerPage, ((toSend.length * bytesPerPage) / bandwidth) * 1000);
        this.progress.expectedDowntimeMs = expectedMs;
        this.progress.pagesRemaining = toSend.length;
        this.progress.etaMs = expectedMs;
        this.report();
        // Under the limit, another round still pays while it shrinks the dirty set well: stop once
        // the rest is quick to copy or the set no longer shrinks.
        const shrinking = toSend.length < previousDirty * 0.5;
        const stalled = toSend.length > previousDirty * 0.8;
        previousDirty = toSend.length;
        if (expectedMs <= this.options.downtimeLimitMs && (expectedMs <= QUICK_FINAL_COPY_MS || !shrinking)) {
          if (this.standby) break;
          // The destination's worker is still starting: wait for it (the VM keeps running), then
          // another round sends what was dirtied meanwhile.
          await this.awaitStandby();
          continue;
        }
        const overRounds = round >= this.options.maxRounds;
        const overTime = now() - preCopyStart >= this.options.maxPreCopyMs || now() >= deadline;
        if (overRounds || overTime) {
          if (this.options.whenNoConvergence === "cancel") {
            throw new MigrationError(`did not converge: ${toSend.length} dirty pages need ~${Math.round(expectedMs)} ms, the limit is ${this.options.downtimeLimitMs} ms`);
          }
          await this.awaitStandby();
          break; // force (auto-converge too, at the limit): stop and copy what is left
        }
        if (this.options.whenNoConvergence === "auto-converge" && round >= 2 && stalled && throttle < 99) {
          // The guest dirties memory about as fast as it goes out: slow its vCPUs down, more each round.
          throttle = throttle === 0 ? 20 : Math.min(99, throttle + 10);
          await vm.throttle(throttle);
          this.progress.throttlePercent = throttle;
          throttleMax = Math.max(throttleMax, throttle);
        }
      }

      // Stop-and-copy
      this.phase("stop-and-copy");
      const pausedAt = now();
      let mark = pausedAt;
      const lap = (): number => {
        const t = now();
        const d = t - mark;
        mark = t;
        return d;
      };
      await vm.pause();
      paused = true;
      const pauseMs = lap();
      // The vCPUs are stopped: the last dirty log and the vCPU and device state no longer change, so
      // both are fetched at once; the last pages and the state then go out back to back (the
      // destination applies frames in order, so Prepared also says every page landed).
      const [last, stateChunks] = await Promise.all([vm.getAndClearDirtyLog(), vm.save({ memory: false })]);
      const state = concat(stateChunks);
      const syncMs = lap();
      const final = new Set(toSend);
      for (const g of dirtyPages(last)) final.add(g);
      pagesPerRound.push(await this.sendPages(round, [...final].sort((a, b) => a - b)));
      round++;
      const pagesMs = lap();
      await this.send(MessageType.State, state);
      const stateMs = lap();
      await this.drain(0);
      await this.expect([MessageType.Prepared]);
      const prepareMs = lap();

      // The commit point
      this.phase("commit");
      committed = (await (this.options.commit?.() ?? Promise.resolve(true))) === true;
      if (!committed) throw new MigrationError("the commit was refused");
      const commitMs = lap();
      await this.send(MessageType.Complete);
      await this.expect([MessageType.Resumed]);
      const resumeMs = lap();
      const downtimeMs = now() - pausedAt;
      this.phase("done");
      return {
        ok: true,
        totalMs: now() - started,
        downtimeMs,
        downtimeBreakdownMs: { pause: pauseMs, sync: syncMs, pages: pagesMs, state: stateMs, prepare: prepareMs, commit: commitMs, resume: resumeMs },
        bytesSent: this.bytesSent,
        rounds: round,
        pagesPerRound,
        handshakeMs,
        roundMs,
        throttlePercentMax: throttleMax,
      };
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      this.phase("failed");
      if (!committed) {
        // Before the commit point the source owns the VM: tell the peer, keep (or resume) the VM here.
        // (straight to the transport: send() refuses once the migration has failed)
        await this.transport.send(this.writer.json(MessageType.Abandon, { reason })).catch(() => undefined);
        if (logging) await vm.stopDirtyLog().catch(() => undefined);
        if (throttle > 0) await vm.throttle(0).catch(() => undefined);
        if (paused) await vm.resume().catch(() => undefined);
      }
      return { ok: false, reason, committed, totalMs: now() - started, bytesSent: this.bytesSent };
    } finally {
      cancelTimer();
    }
  }

  /** Sends the given pages as batches, within the window and the bandwidth limit. Returns how many. */
  private async sendPages(round: number, gpns: readonly number[]): Promise<number> {
    const { vm } = this.source;
    const builder = this.builder;
    let count = 0;
    const flush = async (): Promise<void> => {
      if (builder.count === 0) return;
      const payload = builder.finish();
      const header = new Uint8Array(4);
      new DataView(header.buffer).setUint32(0, round, true);
      await this.drain(this.options.window - 1);
      await this.send(MessageType.Pages, concat([header, payload]));
      this.unacked.push(this.writer.lastSeq);
    };
    // The builder copies the page (the vCPUs may write it meanwhile), picks ZERO, DELTA against what
    // was sent before, or FULL, and records what it sent in `this.sent` for later deltas.
    // A page never sent is a delta against zero: the destination's fresh page is zero (and each delta
    // carries the CRC of the page it makes, so a wrong base is caught, never applied).
    // The vCPUs may be writing the page while we read it: take one copy and both encode and record
    // exactly that copy, or the next round's delta would start from bytes the destination never got.
    const image = this.scratch;
    const add = (gpn: number): boolean => {
      image.set(vm.guest.page(gpn) ?? ZERO_PAGE);
      if (this.sent.has(gpn)) return builder.addPage(gpn, image, this.sent);
      if (!builder.addPage(gpn, image, ZERO_PAGE)) return false;
      this.sent.set(gpn, image);
      return true;
    };
    for (const gpn of gpns) {
      this.check();
      const page = vm.guest.page(gpn);
      // The destination's fresh memory is zero: a page that is zero and was never sent needs nothing.
      if ((page === undefined || isZeroPage(page)) && !this.sent.has(gpn)) continue;
      if (!add(gpn)) {
        await flush();
        if (!add(gpn)) throw new MigrationError(`page ${gpn} does not fit an empty batch`);
      }
      count++;
    }
    await flush();
    return count;
  }

  /** Waits for the destination's Standby (its VM worker is ready), within the peer timeout. */
  private async awaitStandby(): Promise<void> {
    const since = this.timers.now();
    while (!this.standby) {
      this.check();
      // The destination may give up meanwhile (its Abandon waits in the inbox behind any Acks).
      const abandon = this.inbox.find((f) => f.type === MessageType.Abandon);
      if (abandon !== undefined) throw abandoned(abandon);
      if (this.timers.now() - since >= this.options.peerTimeoutMs) {
        throw new MigrationError(`the destination's VM worker was not ready after ${this.options.peerTimeoutMs} ms`);
      }
      let cancel = (): void => {};
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        cancel = this.timers.after(this.options.peerTimeoutMs, resolve);
      });
      cancel();
    }
  }

  /** Waits until at most `max` page batches are unacknowledged. */
  private async drain(max: number): Promise<void> {
    while (this.unacked.length > max) {
      const f = await this.expect([MessageType.Ack]);
      const acked = new DataView(f.payload.buffer, f.payload.byteOffset, f.payload.byteLength).getUint32(0, true);
      if (acked !== this.unacked[0]) throw new ProtocolError(`Ack for frame ${acked}, expected ${this.unacked[0]}`);
      this.unacked.shift();
    }
  }

  /** Numbers and sends one frame (a frame is numbered only if it goes out, so the sequence has no gaps). */
  private async send(type: MessageType, payload?: Uint8Array): Promise<void> {
    this.check();
    const limit = this.options.bandwidthLimitBytesPerSecond;
    const size = HEADER_BYTES + (payload?.length ?? 0);
    if (limit !== undefined) await this.pace(size, limit);
    this.check();
    await this.transport.send(this.writer.frame(type, payload));
    this.bytesSent += size;
  }

  private paceStart = 0;
  private paceBytes = 0;

  /** Keeps the average send rate under `limit` bytes per second. */
  private async pace(bytes: number, limit: number): Promise<void> {
    if (this.paceStart === 0) this.paceStart = this.timers.now();
    this.paceBytes += bytes;
    const dueAt = this.paceStart + (this.paceBytes / limit) * 1000;
    const wait = dueAt - this.timers.now();
    if (wait > 1) await this.timers.sleep(wait);
  }

  /** The next frame, which must be one of `types` (an Abandon from the peer fails the migration). */
  private async expect(types: MessageType[]): Promise<Frame> {
    for (;;) {
      this.check();
      const f = this.inbox.shift();
      if (f !== undefined) {
        if (f.type === MessageType.Abandon) throw abandoned(f);
        if (!types.includes(f.type)) throw new ProtocolError(`unexpected ${typeName(f.type)} from the destination`);
        return f;
      }
      const waitedFrom = this.timers.now();
      let cancel = (): void => {};
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        cancel = this.timers.after(this.options.peerTimeoutMs, resolve);
      });
      cancel();
      if (this.inbox.length === 0 && this.failure === undefined && this.timers.now() - waitedFrom >= this.options.peerTimeoutMs) {
        throw new MigrationError(`the destination stopped answering (nothing for ${this.options.peerTimeoutMs} ms while waiting for ${types.map(typeName).join(" or ")})`);
      }
    }
  }

  private check(): void {
    if (this.failure !== undefined) throw this.failure instanceof Cancelled ? new MigrationError(this.failure.message) : this.failure;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private phase(phase: MigrationProgress["phase"]): void {
    this.progress.phase = phase;
    this.report();
  }

  private report(): void {
    this.options.onProgress?.({ ...this.progress });
  }
}

function abandoned(f: Frame): MigrationError {
  return new MigrationError(`the destination abandoned: ${parseJson<{ reason: string }>(f, { reason: "string" }).reason}`);
}

function json(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}


