/**
 * The source side of a live migration.
 *
 * Sender states:
 *
 *   Handshake --Admit--> PreCopy (round 0: every non-zero page; rounds 1..n: pages dirtied meanwhile;
 *       |                   |        pages split over the page streams, each with its Ack window)
 *       |                   | stop rule: remaining dirty bytes / measured bandwidth <= downtime limit
 *    Refuse                 |           (or the round/time limit passed and the policy is "force")
 *       v                   v
 *     Failed <------- StopAndCopy (one VM-worker command: vCPUs stopped, last dirty log and vCPU and
 *       ^  Abandon          |      device state taken; then the last dirty pages, then State)
 *       |  (VM resumes      | State sent: the destination decides (restores, passes its commit
 *       |   here)           v point, runs the VM); a cancel is refused from here
 *       +-- <- Abandon -- Handed over
 *                           | <- Resumed {destination's times}: Done (the VM runs only on the
 *                           |    destination; the downtime is computed, see MigrationResult)
 *                           | neither (link failed, silence past the peer timeout): in doubt, and
 *                           v options.decide() (the commit's record) says whether it committed:
 *                        committed: the VM never runs here again | not: it resumes here | no answer:
 *                        it stays paused here (committed: null)
 *
 * Any failure before State goes out (refusal, transport error, bad frame, timeout, cancel) sends
 * Abandon and leaves the VM running on the source.
 */
import type { VmWorker } from "@hyperfleet/hypervisor";
import { concat, dirtyPages, PAGE_SIZE } from "@hyperfleet/hypervisor";
import { BatchBuilder, SentPages, isZeroPage } from "./codec/index.js";
import {
  FrameReader, FrameWriter, HEADER_BYTES, MessageType, parseJson, ProtocolError, PROTOCOL_VERSION, typeName,
  type ConfigMessage, type Frame, type ResumedMessage, type StartMessage,
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
  /**
   * The VM is paused (an operator paused it; a quick migration moves it as it is): it is not resumed
   * on the source when the migration fails, nor on the destination when it completes.
   */
  keepPaused?: boolean;
  /** Whole-migration deadline: past it, the migration is abandoned (before the commit point). */
  timeoutMs?: number;
  /** Page batches in flight without an Ack, per stream. */
  window?: number;
  /**
   * Page streams (default 1, see DEFAULT_STREAMS for the measurements): pages are split among this
   * many links (the transport's `stream()`), each with its own Ack window; a page always travels on
   * the same stream, so its deltas stay in order. Control messages use the first.
   */
  streams?: number;
  /** Abort when the destination says nothing for this long while an answer is due (a dead peer). */
  peerTimeoutMs?: number;
  /**
   * After State, when the destination's word (Resumed or Abandon) does not come — the link failed,
   * or it was silent past the peer timeout — whether the switchover committed there: true if it did
   * (the VM is the destination's: it never runs here again), false if it did not and never will (e.g.
   * the cluster committed an abort first: the VM resumes here). Without it, or if it rejects, the
   * migration ends in doubt: `committed: null`, the VM paused here.
   */
  decide?: () => Promise<boolean>;
  /** Called once the vCPUs stopped, just before State goes out: from then on the destination may run the VM. */
  beforeHandover?: () => void;
  /** Called before the VM runs here again (or stays here, paused) after `beforeHandover`: the switchover did not commit. */
  onTakeBack?: () => void;
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
      /**
       * From the vCPUs stopping on the source to the vCPUs running on the destination. Each side
       * times its part on its own clock, and the hop between them is estimated, so no clock needs to
       * agree with the other:
       *
       *   downtime = (State sent - vCPUs stopped)                  source's clock (the VM worker's
       *                                                            stamp for the stop)
       *            + one-way time of State                         estimated NTP-style: (round trip
       *                                                            State -> Resumed - destination's
       *                                                            time between them) / 2
       *            + (State received -> vCPUs running)             destination's clock, sent in Resumed
       *
       * Resumed's trip back is not downtime (the VM already runs); see `switchoverMs` for the
       * end-to-end figure that includes it.
       */
      downtimeMs: number;
      /**
       * Where the downtime went (the parts add up to it): sync, the vCPUs stopped to the last dirty log
       * and the state in hand (one VM-worker command); pages and state, sending them; transit, State's
       * one-way time (estimated); then the destination's own: restore (the last pages applied, the
       * state restored), commit (its commit point), resume (the vCPUs running).
       */
      downtimeBreakdownMs: Record<"sync" | "pages" | "state" | "transit" | "restore" | "commit" | "resume", number>;
      /** From the vCPUs stopping here to Resumed arriving back (>= downtimeMs: the answer's trip is in it). */
      switchoverMs: number;
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
  | {
      ok: false;
      reason: string;
      /**
       * false: the VM is the source's (running here again, or paused if it was). true: the switchover
       * committed although the destination's word was lost: the VM is the destination's, never to run
       * here again. null: in doubt (no `decide`, or it had no answer): the VM stays paused here until
       * the commit's record says which side has it.
       */
      committed: boolean | null;
      totalMs: number;
      bytesSent: number;
    };

export class MigrationError extends Error {
  override readonly name = "MigrationError";
}

class Cancelled extends Error {}

const ZERO_PAGE = new Uint8Array(PAGE_SIZE);
/**
 * A final copy expected to take at most this long ends pre-copy (under the limit, rounds go on while
 * they shrink the set). The estimate comes from the last round's time per page, which can be off by
 * 2x for the stop-and-copy's pages (measured: ram1024-moderate-1g stopped at an estimated 9.4 ms and
 * its last pages took 4-20 ms); one more round of a set that halves costs the guest nothing.
 */
const QUICK_FINAL_COPY_MS = 4;
/**
 * Pages per batch at most in the stop-and-copy round (besides the batch's byte limit). A batch of
 * one-word deltas holds ~14,000 pages in its 256 KiB, so the destination would start applying only
 * after the source encoded them all; smaller batches let both sides work at once while the vCPUs
 * stand still (a guest that rewrites its whole 64 MiB working set: 16,384 pages went out in ~100 ms
 * and were applied ~60 ms later in one lump). In pre-copy the running guest keeps the CPUs busy
 * anyway, and large batches cost fewer messages.
 */
const FINAL_PAGES_PER_BATCH = 2048;

/**
 * Page streams by default. Measured with `pnpm bench migration --streams N` on the 2-core host the
 * project is benchmarked on, NATS on loopback, runs of 1, 2 and 3 streams interleaved, three each,
 * medians (downtime / total ms): ram256-heavy-unl 21 / 2057, 27 / 2004, 43 / 1560; ram256-max-unl
 * 180 / 1316, 185 / 1187, 197 / 1324. The spread between runs of one setting was larger than the
 * differences: both ends encode and apply pages on one thread each and the two cores are the limit,
 * not one link. So one stream (no extra connections) stays the default; more remain an option for
 * hosts with cores to spare or links that are slow per connection.
 */
const DEFAULT_STREAMS = 1;
/** Most sending time a paced link may catch up at once after it sat idle (see `pace`). */
const PACE_BURST_MS = 10;
const MAX_STREAMS = 16;
/** Pages go to streams in runs of this many consecutive pages (a page always on the same stream). */
const STREAM_CHUNK_PAGES = 64;

/** A page stream as the source drives it. */
interface Lane {
  /** 0 for the control link. */
  index: number;
  transport: MigrationTransport;
  writer: FrameWriter;
  builder: BatchBuilder;
  /** Sequence numbers of Pages frames not acknowledged yet, oldest first. */
  unacked: number[];
  /** Frames received on it (the first stream's: every control frame). */
  inbox: Frame[];
  /** Pages frames sent on it. */
  pagesFrames: number;
}

/** The VM being moved, and what the destination needs to build it. */
/** The VM's synthetic devices on this side (its VMBus): quiet during the stop-and-copy. */
export interface SourceDevices {
  /** Stops touching guest memory; resolves once requests in flight are done. */
  suspend(): Promise<void>;
  /** Serves again (the migration failed before its commit point: the VM runs on here). */
  resume(): void;
}

export interface SourceVm {
  /** Suspended before the vCPUs stop, so the last pages hold no half-done device exchange. */
  devices?: SourceDevices;
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
  private readonly options: Required<Omit<MigrationOptions, "bandwidthLimitBytesPerSecond" | "onProgress" | "decide" | "beforeHandover" | "onTakeBack" | "timers" | "deltaCacheBytes" | "deltaCache">> &
    Pick<MigrationOptions, "bandwidthLimitBytesPerSecond" | "onProgress" | "decide" | "beforeHandover" | "onTakeBack">;
  private readonly sent: SentPages;
  private readonly timers: Timers;
  private readonly builder: BatchBuilder;
  private readonly inbox: Frame[] = [];
  private waiter: (() => void) | undefined;
  private failure: Error | undefined;
  private bytesSent = 0;
  private readonly unacked: number[] = [];
  /** The page streams; the first is the control link itself. */
  private readonly lanes: Lane[];
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
      streams: options.streams ?? DEFAULT_STREAMS,
      peerTimeoutMs: options.peerTimeoutMs ?? 5000,
      bandwidthLimitBytesPerSecond: options.bandwidthLimitBytesPerSecond,
      onProgress: options.onProgress,
      decide: options.decide,
      beforeHandover: options.beforeHandover,
      onTakeBack: options.onTakeBack,
      keepPaused: options.keepPaused === true,
    };
    if (options.deltaCache !== undefined) options.deltaCache.forget();
    this.sent = options.deltaCache ?? new SentPages({ budgetBytes: options.deltaCacheBytes ?? Math.min(source.memoryBytes, 1024 * 2 ** 20) });
    const streams = this.options.streams;
    if (!Number.isInteger(streams) || streams < 1 || streams > MAX_STREAMS) throw new MigrationError(`streams must be an integer from 1 to ${MAX_STREAMS}, got ${streams}`);
    // LZ4 costs CPU time at a few hundred MB/s: it pays only when the link is slower than that.
    this.builder = new BatchBuilder(options.bandwidthLimitBytesPerSecond !== undefined ? {} : { codec: null });
    this.lanes = [{ index: 0, transport, writer: this.writer, builder: this.builder, unacked: this.unacked, inbox: this.inbox, pagesFrames: 0 }];
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

  /**
   * Stops the migration at the next step; the VM stays (or goes back to running) on the source.
   * Refused (false) once State is on its way: from there the destination decides (it completes the
   * migration, or fails it if its commit is refused), so a cancel can never undo a switchover that
   * committed.
   */
  cancel(reason = "cancelled"): boolean {
    if (this.handedOver) return false;
    this.failure ??= new Cancelled(reason);
    this.wake();
    return true;
  }

  /** Set as State goes out: the point after which `cancel()` is refused and the destination decides. */
  private handedOver = false;

  async run(): Promise<MigrationResult> {
    const now = (): number => this.timers.now();
    const started = now();
    const deadline = started + this.options.timeoutMs;
    const cancelTimer = this.timers.after(this.options.timeoutMs, () => this.cancel(`timed out after ${this.options.timeoutMs} ms`));
    const { vm } = this.source;
    let paused = false;
    let devicesSuspended = false;
    let throttle = 0;
    let throttleMax = 0;
    let logging = false;
    const pagesPerRound: number[] = [];
    const roundMs: number[] = [];
    let handshakeMs: number;
    try {
      // Handshake and admission (page streams beyond the first are opened first: their Acks must find us listening)
      await this.openLanes();
      await this.send(MessageType.Start, json({ protocol: PROTOCOL_VERSION, capabilities: ["delta", "lz4"], streams: this.lanes.length } satisfies StartMessage));
      const config: ConfigMessage = {
        name: this.source.name, memoryBytes: this.source.memoryBytes, vcpus: this.source.vcpus, boot: this.source.boot, bootargs: this.source.bootargs,
        ...(this.options.keepPaused === true ? { keepPaused: true } : {}),
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
      let previousDirty = -1; // round 0's "dirty set" is every page it sent
      const preCopyStart = now();
      for (;;) {
        this.progress.round = round;
        const roundStart = now();
        const sentBefore = this.bytesSent;
        pagesPerRound.push(await this.sendPages(round, toSend));
        await this.drain(0);
        const tookMs = Math.max(1, now() - roundStart);
        roundMs.push(tookMs);
        // (a round that fits in one batch goes out in one burst: its rate says how fast we encode, not
        // how fast the link goes, which is never above the limit)
        const bandwidth = Math.min(((this.bytesSent - sentBefore) / tookMs) * 1000 || 1, this.options.bandwidthLimitBytesPerSecond ?? Infinity);
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
        if (previousDirty < 0) previousDirty = sentPages;
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
      // One command stops the vCPUs, freezes guest time, takes the last dirty log and saves the vCPU
      // and device state (they no longer change); the last pages and the state then go out back to
      // back (State counts the batches of each stream: the destination restores once all landed).
      // The downtime starts when the vCPUs stopped (the worker's stamp), not when we asked.
      if (this.source.devices !== undefined) {
        devicesSuspended = true;
        await this.source.devices.suspend();
      }
      paused = true;
      const frozen = await vm.freeze();
      const stoppedAt = pausedAt + Math.min(frozen.stoppedAfterMs, now() - pausedAt);
      mark = stoppedAt;
      const last = frozen.dirty;
      const state = frozen.state;
      const syncMs = lap();
      const final = new Set(toSend);
      for (const g of dirtyPages(last)) final.add(g);
      // The control link's last batch waits to leave together with State (one write, one wake-up of
      // the server and of the destination, instead of one each).
      pagesPerRound.push(await this.sendPages(round, [...final].sort((a, b) => a - b), FINAL_PAGES_PER_BATCH, true));
      const lastBatch = this.lanes[0]!.builder.count > 0 ? await this.pagesBody(this.lanes[0]!, round) : undefined;
      round++;
      const pagesMs = lap();
      const counts = new Uint8Array(4 + 4 * this.lanes.length);
      const cv = new DataView(counts.buffer);
      cv.setUint32(0, this.lanes.length, true);
      this.lanes.forEach((l, k) => cv.setUint32(4 + 4 * k, l.pagesFrames + (k === 0 && lastBatch !== undefined ? 1 : 0), true));

      // The hand-over: once State is on its way the destination decides (it restores, passes its
      // commit point and runs the VM, or says Abandon), so a cancel is refused from here, and the
      // VM's run here ends before State leaves.
      this.check();
      this.handedOver = true;
      this.options.beforeHandover?.();
      this.phase("commit");
      const word = await this.handOver(concat([counts, state]), lastBatch);
      const stateSentAt = word.sentAt;
      const stateMs = stateSentAt - mark; // mark: the last pages encoded
      if (word.outcome === "aborted") {
        throw new MigrationError(word.reason);
      }
      if (word.outcome === "in doubt") {
        // The destination's word was lost: the commit's own record says which side has the VM.
        const decided = this.options.decide === undefined ? null : await this.options.decide().catch(() => null);
        if (decided === false) throw new MigrationError(`${word.reason}; the switchover did not commit`);
        this.phase("failed");
        if (logging) await vm.stopDirtyLog().catch(() => undefined);
        return {
          ok: false,
          reason: decided ? `${word.reason}; the switchover committed: the VM is the destination's` : `${word.reason}; whether the switchover committed is unknown: the VM stays paused here`,
          committed: decided, totalMs: now() - started, bytesSent: this.bytesSent,
        };
      }
      const resumed = word.resumed;
      const resumedAt = now();
      // State's one-way time, NTP-style: the round trip less the destination's own time, halved.
      const roundTrip = resumedAt - stateSentAt;
      const clamp = (v: number, hi: number): number => Math.min(Math.max(0, v), hi);
      const answeredAfterMs = clamp(resumed.answeredAfterMs, roundTrip);
      const runningAfterMs = clamp(resumed.runningAfterMs, answeredAfterMs);
      const committedAfterMs = clamp(resumed.committedAfterMs, runningAfterMs);
      const restoredAfterMs = clamp(resumed.restoredAfterMs, committedAfterMs);
      const transitMs = (roundTrip - answeredAfterMs) / 2;
      const downtimeMs = stateSentAt - stoppedAt + transitMs + runningAfterMs;
      this.phase("done");
      const result: MigrationResult = {
        ok: true,
        totalMs: now() - started,
        downtimeMs,
        switchoverMs: resumedAt - stoppedAt,
        downtimeBreakdownMs: {
          sync: syncMs, pages: pagesMs, state: stateMs, transit: transitMs, restore: restoredAfterMs, commit: committedAfterMs - restoredAfterMs,
          resume: runningAfterMs - committedAfterMs,
        },
        bytesSent: this.bytesSent,
        rounds: round,
        pagesPerRound,
        handshakeMs,
        roundMs,
        throttlePercentMax: throttleMax,
      };
      // The stopped copy hands over all it printed before its owner reads its console or ends it
      await vm.consoleSettled();
      return result;
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      this.phase("failed");
      // Not committed (before the hand-over, or the destination said Abandon, or the commit's record
      // says it did not commit): the source owns the VM. Tell the peer, keep (or resume) the VM here.
      // (straight to the transport: send() refuses once the migration has failed)
      if (!this.handedOver) await this.transport.send(this.writer.json(MessageType.Abandon, { reason })).catch(() => undefined);
      if (this.handedOver) this.options.onTakeBack?.();
      if (logging) await vm.stopDirtyLog().catch(() => undefined);
      if (throttle > 0) await vm.throttle(0).catch(() => undefined);
      if (paused && this.options.keepPaused !== true) await vm.resume().catch(() => undefined);
      if (devicesSuspended) this.source.devices?.resume();
      return { ok: false, reason, committed: false, totalMs: now() - started, bytesSent: this.bytesSent };
    } finally {
      cancelTimer();
      for (const lane of this.lanes.slice(1)) await lane.transport.close().catch(() => undefined);
    }
  }

  /**
   * Sends State (after `lastBatch`, the body of the control link's last Pages frame, if any: both in
   * one go) and waits for the destination's word: Resumed (it committed and runs the VM), Abandon (it did not
   * commit), or neither — the link failed, a frame came wrong, or it was silent past the peer timeout —
   * which leaves the outcome in doubt. Acks of the last pages are taken on the way.
   */
  private async handOver(state: Uint8Array, lastBatch?: Uint8Array): Promise<
    | { outcome: "committed"; sentAt: number; resumed: ResumedMessage }
    | { outcome: "aborted"; sentAt: number; reason: string }
    | { outcome: "in doubt"; sentAt: number; reason: string }
  > {
    const lane = this.lanes[0]!;
    let sentAt = this.timers.now();
    try {
      // Straight to the transport (no pacing, no failure check first). A send that fails may still
      // have gone out (a transport's rejection does not say it did not), so that is doubt as well.
      // Both frames are handed over before either send is awaited (the transport keeps call order).
      const sends = lastBatch === undefined ? [] : [lane.transport.send(this.pagesFrame(lane, lastBatch))];
      const frame = lane.writer.frame(MessageType.State, state);
      sends.push(lane.transport.send(frame));
      await Promise.all(sends);
      this.bytesSent += frame.length;
      sentAt = this.timers.now();
      for (;;) {
        if (this.failure !== undefined) throw this.failure;
        const f = this.inbox.shift();
        if (f === undefined) {
          await this.waitForFrame("the destination's word on the switchover");
          continue;
        }
        if (f.type === MessageType.Ack) continue;
        if (f.type === MessageType.Abandon) return { sentAt, outcome: "aborted", reason: abandoned(f).message };
        if (f.type !== MessageType.Resumed) throw new ProtocolError(`unexpected ${typeName(f.type)} from the destination`);
        const resumed = parseJson<ResumedMessage>(f, { restoredAfterMs: "number", committedAfterMs: "number", runningAfterMs: "number", answeredAfterMs: "number" });
        return { sentAt, outcome: "committed", resumed };
      }
    } catch (e) {
      return { sentAt, outcome: "in doubt", reason: `no word from the destination after State: ${(e as Error).message}` };
    }
  }

  /** Opens page streams 1.. of the transport (see MigrationOptions.streams). */
  private async openLanes(): Promise<void> {
    for (let k = 1; k < this.options.streams; k++) {
      if (this.transport.stream === undefined) throw new MigrationError(`${this.options.streams} page streams asked, but the transport carries one`);
      const transport = await this.transport.stream(k);
      const lane: Lane = {
        index: k,
        transport,
        writer: new FrameWriter(this.writer.session),
        builder: new BatchBuilder(this.options.bandwidthLimitBytesPerSecond !== undefined ? {} : { codec: null }),
        unacked: [],
        inbox: [],
        pagesFrames: 0,
      };
      const reader = new FrameReader(this.writer.session);
      // Once State is out a page stream has nothing left to carry (the destination restores only once
      // each delivered what State counts): its failure then no longer matters.
      transport.onFrame((data) => {
        try {
          const frame = reader.read(data);
          if (frame.type !== MessageType.Ack) throw new ProtocolError(`unexpected ${typeName(frame.type)} on page stream ${k}`);
          lane.inbox.push(frame);
        } catch (e) {
          if (!this.handedOver) this.failure ??= e as Error;
        }
        this.wake();
      });
      transport.onError((e) => {
        if (!this.handedOver) this.failure ??= new MigrationError(`page stream ${k}: ${e.message}`);
        this.wake();
      });
      this.lanes.push(lane);
    }
  }

  /**
   * Sends the given pages as batches, within each stream's window and the bandwidth limit. Returns
   * how many. Page `gpn` goes on stream floor(gpn / STREAM_CHUNK_PAGES) mod streams, always the same.
   * `final`: the stop-and-copy round (the VM stands still; the control link's last batch is left in
   * its builder for the hand-over to send with State).
   */
  private async sendPages(round: number, gpns: readonly number[], pagesPerBatch = Infinity, final = false): Promise<number> {
    const { vm } = this.source;
    const lanes = this.lanes;
    let count = 0;
    const flush = async (lane: Lane): Promise<void> => {
      if (lane.builder.count === 0) return;
      const body = await this.pagesBody(lane, round);
      await this.sendFrame(lane, this.pagesFrame(lane, body));
    };
    // The builder copies the page (the vCPUs may write it meanwhile), picks ZERO, DELTA against what
    // was sent before, or FULL, and records what it sent in `this.sent` for later deltas.
    // A page never sent is a delta against zero: the destination's fresh page is zero (and each delta
    // carries the CRC of the page it makes, so a wrong base is caught, never applied).
    // The vCPUs may be writing the page while we read it: the builder takes one copy, and exactly
    // that copy is both encoded and recorded, or the next round's delta would start from bytes the
    // destination never got.
    // In the stop-and-copy (`final`) nothing writes guest memory: pages are encoded where they lie.
    const add = (builder: BatchBuilder, gpn: number, page: Uint8Array): boolean => {
      if (this.sent.has(gpn)) return builder.addPage(gpn, page, this.sent, final);
      if (!builder.addPage(gpn, page, ZERO_PAGE, final)) return false;
      this.sent.set(gpn, builder.lastPage);
      return true;
    };
    for (const gpn of gpns) {
      this.check();
      const page = vm.guest.page(gpn) ?? ZERO_PAGE;
      // The destination's fresh memory is zero: a page that is zero and was never sent needs nothing.
      if (!this.sent.has(gpn) && isZeroPage(page)) continue;
      const lane = lanes.length === 1 ? lanes[0]! : lanes[Math.floor(gpn / STREAM_CHUNK_PAGES) % lanes.length]!;
      if (!add(lane.builder, gpn, page)) {
        await flush(lane);
        if (!add(lane.builder, gpn, page)) throw new MigrationError(`page ${gpn} does not fit an empty batch`);
      }
      count++;
      // Small batches of small deltas: the destination applies one while the next is encoded.
      if (lane.builder.count >= pagesPerBatch) await flush(lane);
    }
    // the stop-and-copy leaves the control link's last batch to go out with State
    for (const lane of lanes) if (!(final && lane.index === 0)) await flush(lane);
    return count;
  }

  /**
   * The payload of a Pages frame for `lane`'s batch in progress, once the stream's window and the
   * bandwidth limit let it go.
   */
  private async pagesBody(lane: Lane, round: number): Promise<Uint8Array> {
    const payload = lane.builder.finish();
    const header = new Uint8Array(4);
    new DataView(header.buffer).setUint32(0, round, true);
    await this.drainLane(lane, this.options.window - 1);
    const body = concat([header, payload]);
    const limit = this.options.bandwidthLimitBytesPerSecond;
    if (limit !== undefined) await this.pace(HEADER_BYTES + body.length, limit);
    this.check();
    return body;
  }

  /** The Pages frame of `body`, numbered and counted as sent: the caller hands it to the transport at once. */
  private pagesFrame(lane: Lane, body: Uint8Array): Uint8Array {
    const frame = lane.writer.frame(MessageType.Pages, body);
    lane.unacked.push(lane.writer.lastSeq);
    lane.pagesFrames++;
    this.bytesSent += frame.length;
    return frame;
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

  /** Waits until at most `max` page batches are unacknowledged on every stream. */
  private async drain(max: number): Promise<void> {
    for (const lane of this.lanes) await this.drainLane(lane, max);
  }

  /** Waits until at most `max` page batches are unacknowledged on `lane`. */
  private async drainLane(lane: Lane, max: number): Promise<void> {
    while (lane.unacked.length > max) {
      const f = lane === this.lanes[0] ? await this.expect([MessageType.Ack]) : await this.nextAck(lane);
      if (f.payload.length < 4) throw new ProtocolError("Ack: no frame number");
      const acked = new DataView(f.payload.buffer, f.payload.byteOffset, f.payload.byteLength).getUint32(0, true);
      if (acked !== lane.unacked[0]) throw new ProtocolError(`Ack for frame ${acked}, expected ${lane.unacked[0]}`);
      lane.unacked.shift();
    }
  }

  /** The next Ack of page stream `lane` (not the first), within the peer timeout. */
  private async nextAck(lane: Lane): Promise<Frame> {
    for (;;) {
      this.check();
      const f = lane.inbox.shift();
      if (f !== undefined) return f;
      // The destination may give up meanwhile: its Abandon comes on the control stream.
      const abandon = this.inbox.find((c) => c.type === MessageType.Abandon);
      if (abandon !== undefined) throw abandoned(abandon);
      await this.waitForFrame("an Ack on a page stream");
    }
  }

  /** Numbers and sends one control frame (a frame is numbered only if it goes out, so the sequence has no gaps). */
  private async send(type: MessageType, payload?: Uint8Array): Promise<void> {
    await this.sendOn(this.lanes[0]!, type, payload);
  }

  private async sendOn(lane: Lane, type: MessageType, payload?: Uint8Array): Promise<void> {
    this.check();
    const limit = this.options.bandwidthLimitBytesPerSecond;
    const size = HEADER_BYTES + (payload?.length ?? 0);
    if (limit !== undefined) await this.pace(size, limit);
    this.check();
    await this.sendFrame(lane, lane.writer.frame(type, payload));
    this.bytesSent += size;
  }

  /** Hands a numbered frame to `lane`'s transport (a page stream's failure is named as such). */
  private async sendFrame(lane: Lane, frame: Uint8Array): Promise<void> {
    if (lane.index === 0) await lane.transport.send(frame);
    else {
      await lane.transport.send(frame).catch((e: unknown) => {
        throw new MigrationError(`page stream ${lane.index}: ${(e as Error).message}`);
      });
    }
  }

  /** When the bytes paced so far have gone out at the limit. */
  private paceDueAt = -Infinity;

  /**
   * Keeps the send rate under `limit` bytes per second: each send waits until the bytes before it and
   * its own would have gone out at that rate. Time spent not sending (syncing the dirty log, waiting
   * for Acks) earns at most PACE_BURST_MS of credit, so a round after a pause cannot burst far above
   * the limit (and the round's measured bandwidth stays the link's).
   */
  private async pace(bytes: number, limit: number): Promise<void> {
    const now = this.timers.now();
    this.paceDueAt = Math.max(this.paceDueAt, now - PACE_BURST_MS) + (bytes / limit) * 1000;
    const wait = this.paceDueAt - now;
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
      await this.waitForFrame(types.map(typeName).join(" or "));
    }
  }

  /** Waits for any frame or failure; throws if nothing comes within the peer timeout. */
  private async waitForFrame(what: string): Promise<void> {
    const waitedFrom = this.timers.now();
    let cancel = (): void => {};
    let woken = false;
    await new Promise<void>((resolve) => {
      this.waiter = () => {
        woken = true;
        resolve();
      };
      cancel = this.timers.after(this.options.peerTimeoutMs, resolve);
    });
    cancel();
    if (!woken && this.failure === undefined && this.timers.now() - waitedFrom >= this.options.peerTimeoutMs) {
      throw new MigrationError(`the destination stopped answering (nothing for ${this.options.peerTimeoutMs} ms while waiting for ${what})`);
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


