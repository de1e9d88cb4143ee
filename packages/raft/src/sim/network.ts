/**
 * A simulated packet network between named endpoints, delivering through a `SimClock`.
 *
 * Faults, each drawn from the injected seeded PRNG with integer-ratio probabilities:
 *  - delay: uniform in [delayMsMin, delayMsMax] per link (per-link overrides), which also reorders
 *    packets on one link when the range is wider than zero;
 *  - loss and duplication (the duplicate takes its own delay);
 *  - capacity: a link holds at most `linkCapacityMax` packets in flight, the rest are dropped;
 *  - partitions, symmetric or one-way, in several shapes, each lasting at least
 *    `partitionStabilityMs` and each healed period lasting at least `unpartitionStabilityMs`;
 *  - clogging: a link holds back everything sent on it until the clog ends.
 * Packets to an endpoint that is down are dropped at delivery; a down endpoint sends nothing.
 * Partitions and clogs only involve endpoints added as `partitionable` (the cluster's members,
 * not its clients).
 *
 * Nothing here reads a real clock or a global random source: the same seed, the same calls, the
 * same deliveries.
 */
import type { SeededRng } from "../rng.js";
import type { Clock, TimerId } from "./clock.js";

export type EndpointId = string;

/** A probability numerator/denominator, integers, 0 ≤ numerator ≤ denominator, denominator ≥ 1. */
export interface Ratio {
  readonly numerator: number;
  readonly denominator: number;
}

export function ratio(numerator: number, denominator: number): Ratio {
  if (!Number.isSafeInteger(numerator) || !Number.isSafeInteger(denominator) || denominator < 1 || numerator < 0 || numerator > denominator) {
    throw new RangeError(`ratio: need integers 0 ≤ ${numerator} ≤ ${denominator}, denominator ≥ 1`);
  }
  return { numerator, denominator };
}

export const RATIO_ZERO: Ratio = { numerator: 0, denominator: 1 };

/** How a partition splits the partitionable endpoints. */
export type PartitionMode =
  /** Never partition on its own. */
  | "none"
  /** One side has a size drawn uniformly in [1, n-1]; members drawn at random. */
  | "uniformSize"
  /** Each endpoint goes to either side with equal chance (both sides non-empty). */
  | "uniformPartition"
  /** One endpoint alone against the rest. */
  | "isolateSingle";

/** Symmetric: nothing crosses. One-way: packets from side A to side B are lost, B to A pass. */
export type PartitionSymmetry = "symmetric" | "oneWay";

export interface NetworkOptions {
  readonly delayMsMin: number;
  readonly delayMsMax: number;
  readonly lossRatio: Ratio;
  readonly duplicateRatio: Ratio;
  /** Packets in flight per directed link; more are dropped. */
  readonly linkCapacityMax: number;
  readonly partitionMode: PartitionMode;
  readonly partitionSymmetry: PartitionSymmetry;
  /** Per fault tick, once healed for `unpartitionStabilityMs`: chance a partition starts. */
  readonly partitionRatio: Ratio;
  /** Per fault tick, once partitioned for `partitionStabilityMs`: chance it heals. */
  readonly unpartitionRatio: Ratio;
  readonly partitionStabilityMs: number;
  readonly unpartitionStabilityMs: number;
  /** Per fault tick and per directed link between partitionable endpoints: chance it clogs. */
  readonly clogRatio: Ratio;
  /** A clog lasts a duration drawn uniformly in [1, clogDurationMsMax]. */
  readonly clogDurationMsMax: number;
  /** Period of the fault process (partitions and clogs). */
  readonly faultTickMs: number;
}

/** A fault-free network with a fixed 1..5 ms delay: a base to override. */
export const NETWORK_OPTIONS_CALM: NetworkOptions = {
  delayMsMin: 1,
  delayMsMax: 5,
  lossRatio: RATIO_ZERO,
  duplicateRatio: RATIO_ZERO,
  linkCapacityMax: 1024,
  partitionMode: "none",
  partitionSymmetry: "symmetric",
  partitionRatio: RATIO_ZERO,
  unpartitionRatio: RATIO_ZERO,
  partitionStabilityMs: 0,
  unpartitionStabilityMs: 0,
  clogRatio: RATIO_ZERO,
  clogDurationMsMax: 1,
  faultTickMs: 10,
};

export interface NetworkStats {
  sent: number;
  delivered: number;
  duplicated: number;
  droppedLoss: number;
  droppedPartition: number;
  droppedCapacity: number;
  droppedDown: number;
  partitions: number;
  clogs: number;
}

export type DeliverHandler<P> = (from: EndpointId, payload: P) => void;

/**
 * What became of one copy of a packet, as a transport would report it: `delivered`, `lost` (random
 * loss or a full link: nobody notices at once), or `unreachable` (the peer is down or cut off: the
 * connection breaks). Never reported from inside `send`: always from a later clock event.
 */
export type SendOutcome = "delivered" | "lost" | "unreachable";
export type OutcomeHandler = (outcome: SendOutcome) => void;

export class SimNetworkError extends Error {
  override readonly name = "SimNetworkError";
}

interface Endpoint<P> {
  readonly id: EndpointId;
  readonly handler: DeliverHandler<P>;
  readonly partitionable: boolean;
  up: boolean;
}

interface LinkDelay {
  readonly delayMsMin: number;
  readonly delayMsMax: number;
}

function linkKey(from: EndpointId, to: EndpointId): string {
  return `${from}\u0000${to}`;
}

function validateOptions(options: NetworkOptions): void {
  const { delayMsMin, delayMsMax } = options;
  if (!Number.isSafeInteger(delayMsMin) || delayMsMin < 0 || !Number.isSafeInteger(delayMsMax) || delayMsMax < delayMsMin) {
    throw new SimNetworkError(`delay range [${delayMsMin}, ${delayMsMax}] is not a valid integer range`);
  }
  if (!Number.isSafeInteger(options.linkCapacityMax) || options.linkCapacityMax < 1) throw new SimNetworkError("linkCapacityMax must be ≥ 1");
  if (!Number.isSafeInteger(options.faultTickMs) || options.faultTickMs < 1) throw new SimNetworkError("faultTickMs must be ≥ 1");
  if (!Number.isSafeInteger(options.clogDurationMsMax) || options.clogDurationMsMax < 1) throw new SimNetworkError("clogDurationMsMax must be ≥ 1");
  for (const r of [options.lossRatio, options.duplicateRatio, options.partitionRatio, options.unpartitionRatio, options.clogRatio]) ratio(r.numerator, r.denominator);
}

export class SimNetwork<P> {
  private readonly endpoints = new Map<EndpointId, Endpoint<P>>();
  private readonly linkDelays = new Map<string, LinkDelay>();
  private readonly inFlight = new Map<string, number>();
  /** Directed links cut by the current partition. */
  private readonly cut = new Set<string>();
  /** Directed link → time its clog ends. */
  private readonly clogUntilMs = new Map<string, number>();
  private partitioned = false;
  private partitionChangedMs = 0;
  private faultTimer: TimerId | null = null;
  private optionsNow: NetworkOptions;
  readonly stats: NetworkStats = {
    sent: 0, delivered: 0, duplicated: 0, droppedLoss: 0, droppedPartition: 0, droppedCapacity: 0, droppedDown: 0, partitions: 0, clogs: 0,
  };

  constructor(
    private readonly clock: Clock,
    private readonly rng: SeededRng,
    options: NetworkOptions,
  ) {
    validateOptions(options);
    this.optionsNow = options;
  }

  get options(): NetworkOptions {
    return this.optionsNow;
  }

  /** Registers an endpoint (up). Partitionable endpoints take part in partitions and clogs. */
  addEndpoint(id: EndpointId, handler: DeliverHandler<P>, partitionable: boolean): void {
    if (this.endpoints.has(id)) throw new SimNetworkError(`endpoint ${id} already exists`);
    this.endpoints.set(id, { id, handler, partitionable, up: true });
  }

  /** A down endpoint sends nothing and receives nothing (packets in flight to it are lost). */
  setUp(id: EndpointId, up: boolean): void {
    this.endpoint(id).up = up;
  }

  isUp(id: EndpointId): boolean {
    return this.endpoint(id).up;
  }

  /** Overrides the delay range of the directed link from → to. */
  setLinkDelay(from: EndpointId, to: EndpointId, delayMsMin: number, delayMsMax: number): void {
    if (!Number.isSafeInteger(delayMsMin) || delayMsMin < 0 || !Number.isSafeInteger(delayMsMax) || delayMsMax < delayMsMin) {
      throw new SimNetworkError(`link delay [${delayMsMin}, ${delayMsMax}] is not a valid integer range`);
    }
    this.linkDelays.set(linkKey(from, to), { delayMsMin, delayMsMax });
  }

  /** Replaces the options in force (e.g. with no faults for the liveness phase). */
  setOptions(options: NetworkOptions): void {
    validateOptions(options);
    this.optionsNow = options;
  }

  /**
   * Sends one packet; it is delivered (maybe twice, maybe never) through the clock. `onOutcome`, if
   * given, hears what became of each copy.
   */
  send(from: EndpointId, to: EndpointId, payload: P, onOutcome?: OutcomeHandler): void {
    const source = this.endpoint(from);
    this.endpoint(to);
    this.stats.sent++;
    if (!source.up) {
      this.stats.droppedDown++;
      this.report(onOutcome, "unreachable");
      return;
    }
    const key = linkKey(from, to);
    if (this.cut.has(key)) {
      this.stats.droppedPartition++;
      this.report(onOutcome, "unreachable");
      return;
    }
    const options = this.optionsNow;
    if (this.rng.chance(options.lossRatio.numerator, options.lossRatio.denominator)) {
      this.stats.droppedLoss++;
      this.report(onOutcome, "lost");
      return;
    }
    this.schedule(from, to, key, payload, onOutcome);
    if (this.rng.chance(options.duplicateRatio.numerator, options.duplicateRatio.denominator)) {
      this.stats.duplicated++;
      this.schedule(from, to, key, payload, onOutcome);
    }
  }

  /** Reports a drop decided at send time one delay later, as a transport would notice it. */
  private report(onOutcome: OutcomeHandler | undefined, outcome: SendOutcome): void {
    if (onOutcome === undefined) return;
    const options = this.optionsNow;
    this.clock.setTimer(Math.max(1, options.delayMsMin + this.rng.int(options.delayMsMax - options.delayMsMin + 1)), () => onOutcome(outcome));
  }

  /** Cuts every link between `sideA` and `sideB` (only A → B when one-way). Replaces any partition. */
  partition(sideA: readonly EndpointId[], sideB: readonly EndpointId[], symmetry: PartitionSymmetry = "symmetric"): void {
    this.cut.clear();
    for (const a of sideA) {
      for (const b of sideB) {
        if (a === b) throw new SimNetworkError(`endpoint ${a} is on both sides of a partition`);
        this.cut.add(linkKey(a, b));
        if (symmetry === "symmetric") this.cut.add(linkKey(b, a));
      }
    }
    this.partitioned = this.cut.size > 0;
    this.partitionChangedMs = this.clock.nowMs();
    if (this.partitioned) this.stats.partitions++;
  }

  /** Cuts one directed link (added to the current partition). */
  cutLink(from: EndpointId, to: EndpointId): void {
    this.cut.add(linkKey(from, to));
    this.partitioned = true;
    this.partitionChangedMs = this.clock.nowMs();
  }

  isCut(from: EndpointId, to: EndpointId): boolean {
    return this.cut.has(linkKey(from, to));
  }

  /** Holds back every packet sent on from → to until `durationMs` from now. */
  clog(from: EndpointId, to: EndpointId, durationMs: number): void {
    const untilMs = this.clock.nowMs() + durationMs;
    const key = linkKey(from, to);
    if ((this.clogUntilMs.get(key) ?? 0) < untilMs) this.clogUntilMs.set(key, untilMs);
    this.stats.clogs++;
  }

  /** Removes every partition and clog. */
  heal(): void {
    this.cut.clear();
    this.clogUntilMs.clear();
    if (this.partitioned) this.partitionChangedMs = this.clock.nowMs();
    this.partitioned = false;
  }

  get isPartitioned(): boolean {
    return this.partitioned;
  }

  /** Starts the periodic fault process (partitions and clogs drawn from the options). */
  startFaults(): void {
    if (this.faultTimer !== null) return;
    const fire = (): void => {
      this.faultTimer = this.clock.setTimer(this.optionsNow.faultTickMs, fire);
      this.faultTick();
    };
    this.faultTimer = this.clock.setTimer(this.optionsNow.faultTickMs, fire);
  }

  stopFaults(): void {
    if (this.faultTimer !== null) this.clock.cancel(this.faultTimer);
    this.faultTimer = null;
  }

  /** Packets in flight, over all links. */
  get inFlightCount(): number {
    let n = 0;
    for (const count of this.inFlight.values()) n += count;
    return n;
  }

  /** One step of the fault process: maybe start or heal a partition, maybe clog some links. */
  faultTick(): void {
    const options = this.optionsNow;
    const nowMs = this.clock.nowMs();
    const members = [...this.endpoints.values()].filter((e) => e.partitionable).map((e) => e.id);
    if (members.length < 2) return;
    if (this.partitioned) {
      if (nowMs - this.partitionChangedMs >= options.partitionStabilityMs && this.rng.chance(options.unpartitionRatio.numerator, options.unpartitionRatio.denominator)) {
        this.cut.clear();
        this.partitioned = false;
        this.partitionChangedMs = nowMs;
      }
    } else if (options.partitionMode !== "none" && nowMs - this.partitionChangedMs >= options.unpartitionStabilityMs) {
      if (this.rng.chance(options.partitionRatio.numerator, options.partitionRatio.denominator)) {
        const sideA = this.drawSide(members, options.partitionMode);
        const sideB = members.filter((m) => !sideA.includes(m));
        if (options.partitionSymmetry === "symmetric" || this.rng.chance(1, 2)) this.partition(sideA, sideB, options.partitionSymmetry);
        else this.partition(sideB, sideA, options.partitionSymmetry);
      }
    }
    if (options.clogRatio.numerator > 0) {
      for (const from of members) {
        for (const to of members) {
          if (from === to) continue;
          if (this.rng.chance(options.clogRatio.numerator, options.clogRatio.denominator)) this.clog(from, to, 1 + this.rng.int(options.clogDurationMsMax));
        }
      }
    }
  }

  /** A non-empty proper subset of `members`, shaped by the partition mode. */
  private drawSide(members: readonly EndpointId[], mode: PartitionMode): EndpointId[] {
    const n = members.length;
    if (mode === "isolateSingle") return [members[this.rng.int(n)]!];
    if (mode === "uniformSize") {
      const size = 1 + this.rng.int(n - 1);
      const pool = [...members];
      // Partial Fisher-Yates: the first `size` slots become a uniform random subset.
      for (let i = 0; i < size; i++) {
        const j = i + this.rng.int(n - i);
        const t = pool[i]!;
        pool[i] = pool[j]!;
        pool[j] = t;
      }
      return pool.slice(0, size);
    }
    const side = members.filter(() => this.rng.chance(1, 2));
    if (side.length === 0) return [members[this.rng.int(n)]!];
    if (side.length === n) return side.slice(0, n - 1);
    return side;
  }

  private schedule(from: EndpointId, to: EndpointId, key: string, payload: P, onOutcome: OutcomeHandler | undefined): void {
    const options = this.optionsNow;
    const count = this.inFlight.get(key) ?? 0;
    if (count >= options.linkCapacityMax) {
      this.stats.droppedCapacity++;
      this.report(onOutcome, "lost");
      return;
    }
    const range = this.linkDelays.get(key) ?? options;
    const nowMs = this.clock.nowMs();
    let dueMs = nowMs + range.delayMsMin + this.rng.int(range.delayMsMax - range.delayMsMin + 1);
    const clogUntilMs = this.clogUntilMs.get(key);
    if (clogUntilMs !== undefined) {
      if (clogUntilMs <= nowMs) this.clogUntilMs.delete(key);
      else if (dueMs < clogUntilMs) dueMs = clogUntilMs;
    }
    this.inFlight.set(key, count + 1);
    this.clock.setTimer(dueMs - nowMs, () => this.deliver(from, to, key, payload, onOutcome));
  }

  private deliver(from: EndpointId, to: EndpointId, key: string, payload: P, onOutcome: OutcomeHandler | undefined): void {
    const count = this.inFlight.get(key) ?? 0;
    if (count <= 1) this.inFlight.delete(key);
    else this.inFlight.set(key, count - 1);
    const target = this.endpoint(to);
    if (!target.up) {
      this.stats.droppedDown++;
      onOutcome?.("unreachable");
      return;
    }
    if (this.cut.has(key)) {
      this.stats.droppedPartition++;
      onOutcome?.("unreachable");
      return;
    }
    this.stats.delivered++;
    target.handler(from, payload);
    onOutcome?.("delivered");
  }

  private endpoint(id: EndpointId): Endpoint<P> {
    const endpoint = this.endpoints.get(id);
    if (endpoint === undefined) throw new SimNetworkError(`unknown endpoint ${id}`);
    return endpoint;
  }
}
