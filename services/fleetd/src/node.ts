/**
 * One Hyperfleet node: the root partition, a Raft member replicating the `ClusterState`, a NATS
 * connection (node-to-node requests and migration traffic), the management API (any node answers;
 * writes go to the leader) and an HTTP server for `/healthz` and `/metrics`.
 *
 * Node-to-node requests over NATS (`hyperfleet.<clusterId>.node.<nodeId>.<what>`):
 *  - `propose`: the leader proposes the encoded cluster command it receives and answers with its
 *    result, so a follower can write (register, renew its lease, report a VM, commit a migration);
 *  - `migrate`: the owner of a VM starts a live migration whose `beginMigration` committed;
 *  - `receive`: the destination of a migration listens for it (a `MigrationDestination`).
 * Migration progress and results are published on `hyperfleet.<clusterId>.migration.<id>`.
 *
 * The reconcile loop (every `RECONCILE_MS`) makes this node run exactly the VMs it owns at their current
 * epoch, in their desired state, while it holds a live lease, and reports what they do.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { isAbsolute, join } from "node:path";
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type {
  ApiServer, MigrateRequest, MigrateResponse, Migration, MigrationProgress as ApiMigrationProgress, MigrationResult as ApiMigrationResult,
  MigrationUpdate,
} from "@hyperfleet/api";
import { ApiClient, ApiError, forwardingBackend, rejectionToApiError, startApiServer, type ForwardTarget } from "@hyperfleet/api";
import type { ClusterCommand, ClusterResult, ClusterSuccess, VmActualState, VmRecord } from "@hyperfleet/cluster";
import { ClusterState, decodeCommand, encodeCommand, LeaderController } from "@hyperfleet/cluster";
import { RootPartition } from "@hyperfleet/hypervisor";
import { MigrationDestination, MigrationSource, NatsTransport, type MigrationProgress } from "@hyperfleet/migration";
import {
  EntryType, GrpcRaftTransport, NotLeaderError, ProposalOutcomeUnknownError, ProposalRejectedError, RaftNode, type Entry, type MemberInfo,
} from "@hyperfleet/raft";
import { NatsFabric } from "@hyperfleet/vmbus";
import { emptyProgress, NodeBackend } from "./backend.js";
import { raftDir, type FleetdConfig } from "./config.js";
import { closeDisks, NodeDevices, offersFor, type GuestShutdown, type GuestView } from "./devices.js";
import { VmEventHub } from "./events.js";
import { NodeGateways } from "./gateways.js";
import { FleetdMetrics } from "./metrics.js";
import { SavedStateError, SavedStateStore } from "./saved-states.js";
import { RunRecorder, runRecordsPath } from "./run-records.js";

export const RECONCILE_MS = 200;
const NATS_REQUEST_TIMEOUT_MS = 5_000;
/** Between attempts to reach nats-server again after the connection dropped (plus up to half as much jitter). */
const NATS_RECONNECT_WAIT_MS = 250;
const FINISHED_MIGRATIONS_KEPT = 100;
const COMMIT_CHECKS_MAX = 50;
const FAILED_STARTS_KEPT = 10_000;
/** Starts of one VM at one epoch before it is left crashed. */
const START_ATTEMPTS_MAX = 3;
const ABORT_ATTEMPTS_MAX = 5;
/** A transfer that reached no leader is proposed again this many times (it surely did not commit). */
const TRANSFER_ATTEMPTS_MAX = 20;
/** Live migrations a draining node sends at once (Hyper-V's default of simultaneous live migrations). */
const DRAIN_PARALLEL = 2;
const DRAIN_RETRY_MS_MAX = 30_000;
/** A pending VM (no node could take it) is tried again this often. */
const PENDING_RETRY_MS = 2000;
/** Failovers proposed per reconcile pass (the rest go in the next passes). */
const FAILOVERS_PER_PASS = 50;
/** The saved state a node writes of the VMs it could not move away when it shuts down. */
export const SHUTDOWN_SAVED_STATE = "host-shutdown";
/** How often every guest's heartbeat is pinged. */
export const HEARTBEAT_MS = 1000;
/** How long GetVm on a node that does not own the VM waits for the owner's view of the guest. */
const GUEST_VIEW_TIMEOUT_MS = 1000;
/** The storage folders of deleted VMs are removed only when untouched for this long. */
const DELETED_STORAGE_AGE_MS = 60_000;

export interface FleetdLogger {
  info(message: string): void;
  warn(message: string): void;
}

/** A node that cannot start (exit 1), or an internal request that failed. */
export class FleetdError extends Error {
  override readonly name = "FleetdError";
}

/** What the API's migration defaults are when a request leaves a field at zero / unspecified. */
export const MIGRATION_DEFAULTS = { downtimeLimitMs: 300, maxRounds: 30, policy: "auto-converge" } as const;

interface MigrateOrder {
  vm: string;
  kind: "live" | "quick";
  policy: "force" | "cancel" | "auto-converge";
  to: string;
  epoch: number;
  migrationId: number;
  downtimeLimitMs: number;
  maxRounds: number;
  bandwidthLimitBytesPerSecond: number;
}

interface KnownMigration {
  migration: Migration;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

function apiPhase(p: MigrationProgress["phase"]): ApiMigrationProgress["phase"] {
  switch (p) {
    case "handshake": return "MIGRATION_PHASE_HANDSHAKE";
    case "precopy": return "MIGRATION_PHASE_PRECOPY";
    case "stop-and-copy": return "MIGRATION_PHASE_STOP_AND_COPY";
    case "commit": return "MIGRATION_PHASE_COMMIT";
    case "done": return "MIGRATION_PHASE_DONE";
    case "failed": return "MIGRATION_PHASE_FAILED";
  }
}

export class FleetdNode {
  readonly id: string;
  readonly state = new ClusterState();
  readonly root: RootPartition;
  readonly raft: RaftNode<ClusterResult | null>;
  private nc!: NatsConnection;
  private api!: ApiServer;
  private http!: Server;
  private readonly subscriptions: Subscription[] = [];
  private readonly clients = new Map<string, ApiClient>();
  private reconcileTimer: NodeJS.Timeout | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  /** This node's gateways (`--gateways`), once NATS is connected. */
  gateways: NodeGateways | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private reconciling = false;
  private closing = false;
  /** VMs this node sends away (the reconcile loop leaves them alone). */
  private readonly outgoing = new Set<string>();
  /**
   * VMs arriving here: the `MigrationDestination` alone runs them (it resumes a VM only once the
   * transfer it proposes has committed) until it is done and this node's state shows the transfer;
   * the reconcile loop leaves them alone until then.
   */
  private readonly incoming = new Map<string, { done: boolean }>();
  /** The epoch at which each local partition came to run here (started, or arrived by migration). */
  private readonly runEpochs = new Map<string, number>();
  /**
   * "vm/epoch" of VMs whose start failed at that epoch: tried again after 1, 2 s, then left crashed
   * until the epoch or the desired state changes (`START_ATTEMPTS_MAX` in all).
   */
  private readonly failedStarts = new Map<string, { count: number; nextAtMs: number }>();
  /** VMs being started or stopped by the reconcile loop now. */
  private readonly busy = new Set<string>();
  private readonly known = new Map<string, KnownMigration>();
  /** Migrations this node sends, by id, and those an operator asked to cancel. */
  private readonly sources = new Map<number, MigrationSource>();
  private readonly cancelled = new Set<number>();
  /** Ids of the migrations this node sends (from the order to the result). */
  private readonly sending = new Set<number>();
  private readonly watchers = new Map<string, Set<(u: MigrationUpdate) => void>>();
  private lastRenewMs = 0;
  /** Whether the NATS connection is up (false from a disconnect until the client reconnected). */
  private natsConnected = true;
  /** Leader only: the HA decisions (failover, drains, rebalance) and their memory (see `leader()`). */
  private leaderController: LeaderController | undefined;
  private drainBusy = false;
  private failoverBusy = false;
  /** When this node last became the leader (null while it is not). */
  private leaderSinceMs: number | null = null;
  /** SIGTERM's last phase: the reconcile loop no longer starts or stops anything. */
  private evacuating = false;
  private shuttingDown = false;
  private reconcileCount = 0;
  readonly saved: SavedStateStore;
  readonly events: VmEventHub;
  readonly metrics: FleetdMetrics;
  /** The synthetic devices (disks, integration services) of the VMs running here. */
  readonly devices: NodeDevices;
  /** When each VM may be running here (`<dataDir>/runs.jsonl`), for the external chaos checker. */
  private readonly runs: RunRecorder;
  apiAddress = "";
  httpAddress = "";

  private constructor(readonly config: FleetdConfig, transport: GrpcRaftTransport, raftAddress: string, private readonly log: FleetdLogger, onFatal: (e: Error) => void) {
    this.id = config.id;
    // two VM worker threads kept started: a failover that restarts two VMs here does not wait to spawn one
    this.root = new RootPartition(config.memoryMib * 2 ** 20, { prefault: true, spareWorkers: 2 });
    this.saved = new SavedStateStore(join(config.dataDir, "saved-states"));
    this.devices = new NodeDevices(config.storageDir, log);
    this.runs = new RunRecorder(runRecordsPath(config.dataDir), config.id);
    const peers: MemberInfo[] = [
      ...config.peers.filter((p) => p.id !== config.id).map((p) => ({ id: p.id, peerAddress: p.raftAddress, clientAddress: "" })),
      { id: config.id, peerAddress: raftAddress, clientAddress: "" },
    ];
    const state = this.state;
    const events = (this.events = new VmEventHub(state));
    mkdirSync(raftDir(config), { recursive: true });
    this.raft = RaftNode.start<ClusterResult | null>({
      id: config.id,
      clusterId: config.clusterId,
      dataDir: raftDir(config),
      transport,
      stateMachine: {
        apply: (entry: Entry) => {
          if (entry.type === EntryType.Normal && entry.data.length > 0) {
            const before = events.before(entry.data);
            const result = state.apply(entry.index, entry.data);
            events.after(before, result);
            return result;
          }
          state.skip(entry.index);
          // a new leader's first entry (empty) opens its term
          if (entry.type === EntryType.Normal) this.metrics.leaderTermBegan(entry.term);
          return null;
        },
        snapshot: () => state.snapshot(),
        restore: (bytes) => state.restore(bytes),
      },
      initialVoters: config.initialVoters,
      peers,
      tickMs: config.tickMs,
      electionTicks: config.electionTicks,
      heartbeatTicks: config.heartbeatTicks,
      logger: { info: (line) => log.info(line), warn: (line) => log.warn(line) },
      onFatal,
    });
    this.metrics = new FleetdMetrics({
      node: config.id, physicalCpus: config.vcpus, root: this.root, raft: this.raft,
      migrationsInFlight: () => this.sending.size, clusterNodes: () => this.state.listNodes(),
      diskBytesWritten: () => this.devices.writtenBytes(),
      gateways: () => this.gateways?.list() ?? [],
    });
    this.metrics.instrumentRaft(this.raft);
  }

  /** Starts every part of the node; resolves once the API and HTTP servers listen. */
  static async start(config: FleetdConfig, log: FleetdLogger, onFatal: (e: Error) => void): Promise<FleetdNode> {
    const transport = new GrpcRaftTransport({ clusterId: config.clusterId, id: config.id, clusterToken: config.clusterToken });
    const raftAddress = await transport.listen(config.listenRaft);
    const node = new FleetdNode(config, transport, raftAddress.address, log, onFatal);
    await node.startServices();
    return node;
  }

  private subject(node: string, what: string): string {
    return `hyperfleet.${this.config.clusterId}.node.${node}.${what}`;
  }

  private migrationSubject(id: string): string {
    return `hyperfleet.${this.config.clusterId}.migration.${id}`;
  }

  private async startServices(): Promise<void> {
    // A node keeps trying to reach nats-server for as long as it runs (the default gives up after ten
    // tries), and soon: node-to-node requests and leases of followers go through it.
    this.nc = await connect({
      servers: this.config.natsUrl, name: `fleetd-${this.id}`, token: this.config.natsToken,
      maxReconnectAttempts: -1, reconnectTimeWait: NATS_RECONNECT_WAIT_MS, reconnectJitter: NATS_RECONNECT_WAIT_MS / 2,
    });
    void (async () => {
      for await (const s of this.nc.status()) {
        if (s.type === "disconnect") this.natsConnected = false;
        else if (s.type === "reconnect") this.natsConnected = true;
      }
    })().catch(() => undefined);
    const fabric = new NatsFabric(this.nc);
    this.devices.useSwitch({ fabric, portPrefix: `${this.id}.${randomBytes(4).toString("hex")}` });
    this.gateways = new NodeGateways(fabric, (vm) => this.state.getVm(vm)?.spec.nics[0]?.mac, this.log);
    await this.gateways.start(this.config.gateways, this.id);
    this.serve("propose", async (data) => {
      if (!this.raft.isLeader()) return { error: "UNAVAILABLE", message: `node ${this.id} is not the leader` };
      // A node removed from the membership (or not added yet) may not (re)register nor keep a lease.
      const command = (() => {
        try {
          return decodeCommand(data);
        } catch {
          return null; // the state machine rejects it with the reason
        }
      })();
      if (command !== null && (command.type === "registerNode" || command.type === "renewLease") && !this.raft.status().members.some((m) => m.id === command.node)) {
        return { error: "FAILED_PRECONDITION", message: `node ${command.node} is not a member of cluster ${this.config.clusterId}` };
      }
      try {
        return { result: await this.raft.propose(data) };
      } catch (e) {
        const err = this.apiError(e);
        return { error: err.code, message: err.message };
      }
    });
    this.serve("migrate", async (data) => {
      const order = JSON.parse(fromUtf8.decode(data)) as MigrateOrder;
      const child = this.root.get(order.vm);
      const vm = this.state.getVm(order.vm);
      // a paused VM moves only by quick migration (it stays paused): a live one needs it running
      const movable = child?.state === "running" || (child?.state === "paused" && order.kind === "quick");
      if (child === undefined || child.worker === undefined || !movable || vm === null || vm.owner !== this.id || this.outgoing.has(order.vm)) {
        return { error: "FAILED_PRECONDITION", message: `vm ${order.vm} does not run on node ${this.id}` };
      }
      this.outgoing.add(order.vm);
      this.sending.add(order.migrationId);
      void this.runSource(order, vm).finally(() => {
        this.outgoing.delete(order.vm);
        this.sending.delete(order.migrationId);
      });
      return { ok: true };
    });
    this.serve("cancel", async (data) => {
      const { migrationId } = JSON.parse(fromUtf8.decode(data)) as { migrationId: number };
      if (!this.sending.has(migrationId)) return { error: "FAILED_PRECONDITION", message: `migration ${migrationId} is not being sent by node ${this.id}` };
      // before its MigrationSource exists, runSource sees `cancelled` and cancels it at creation
      const source = this.sources.get(migrationId);
      if (source !== undefined && !source.cancel("cancelled by the operator")) {
        return { error: "FAILED_PRECONDITION", message: `migration ${migrationId} is past its commit point: it completes` };
      }
      this.cancelled.add(migrationId);
      return { ok: true };
    });
    this.serve("saved-state", async (data) => {
      // verify: read it whole and check it (before a restore); else only its size (just written and synced)
      const { vm, name, verify } = JSON.parse(fromUtf8.decode(data)) as { vm: string; name: string; verify: boolean };
      try {
        return { sizeBytes: verify ? await this.saved.check(vm, name) : await this.saved.size(vm, name) };
      } catch (e) {
        if (e instanceof SavedStateError) return { error: e.code, message: `${e.message} on node ${this.id}` };
        throw e;
      }
    });
    this.serve("guest", async (data) => {
      const { vm } = JSON.parse(fromUtf8.decode(data)) as { vm: string };
      return this.devices.guest(vm);
    });
    this.serve("guest-shutdown", async (data) => {
      const { vm, timeoutMs } = JSON.parse(fromUtf8.decode(data)) as { vm: string; timeoutMs: number };
      return { outcome: await this.shutdownLocalGuest(vm, timeoutMs) };
    });
    this.serve("receive", async (data) => {
      const { vm, session, epoch, migrationId, from } = JSON.parse(fromUtf8.decode(data)) as { vm: string; session: number; epoch: number; migrationId: number; from: string };
      if (this.root.get(vm) !== undefined) return { error: "ALREADY_EXISTS", message: `node ${this.id} already holds a partition ${vm}` };
      const transport = new NatsTransport(this.nc, session, "destination");
      await transport.ready();
      const arrival = { done: false };
      this.incoming.set(vm, arrival);
      // The commit point is the transfer entry, proposed here once the whole VM is here; if its outcome
      // stays unknown the VM does not run here (the source settles it from the cluster state).
      const destination = new MigrationDestination(this.root, transport, session, undefined, undefined, {
        commit: () => this.commitTransfer({ vm, from, to: this.id, epoch, migrationId }),
        beforeResume: () => this.runs.started(vm, epoch + 1, "migration arrival"),
      });
      void destination.done.then(async (result) => {
        await transport.close();
        if (result.ok) {
          // the VM runs here now: serve its devices (what its guest sent meanwhile waits in its rings)
          const child = this.root.get(vm);
          const record = this.state.getVm(vm);
          if (child !== undefined && record !== null) {
            await this.devices.attach(vm, child, record.spec).catch((e: unknown) => this.log.warn(`vm ${vm}: its devices were not attached after it arrived: ${e instanceof Error ? e.message : String(e)}`));
          }
          arrival.done = true;
        } else {
          this.incoming.delete(vm);
          this.log.warn(`incoming migration of ${vm} failed: ${result.reason}`);
        }
        // on success the reconcile loop forgets `vm` from `incoming` once this node's state shows it as the owner
      });
      return { ok: true };
    });
    const all = this.nc.subscribe(`${this.migrationSubject("*")}`, {
      callback: (err, msg) => {
        if (err !== null) return;
        const update = JSON.parse(fromUtf8.decode(msg.data)) as { migration: Migration; update: MigrationUpdate };
        this.remember(update.migration);
        for (const w of this.watchers.get(update.migration.id) ?? []) w(update.update);
      },
    });
    this.subscriptions.push(all);
    await this.nc.flush();

    const local = new NodeBackend(this);
    const backend = forwardingBackend(local, () => this.raft.isLeader(), () => this.leaderClient());
    this.api = await startApiServer({
      backend,
      host: this.config.listenApi.host,
      port: this.config.listenApi.port,
      clusterToken: this.config.clusterToken,
      onRequest: (method, code, ms) => this.metrics.apiRequest(method, code, ms),
      logger: { warn: (f, m) => this.log.warn(`${m} ${JSON.stringify(f)}`), error: (f, m) => this.log.warn(`${m} ${String(f["err"] ?? "")}`) },
    });
    this.apiAddress = this.api.address;
    this.http = createServer((req, res) => {
      if (req.url === "/healthz") {
        const healthy = this.healthy();
        res.writeHead(healthy ? 200 : 503, { "content-type": "text/plain" });
        res.end(healthy ? "ok\n" : "not ready\n");
      } else if (req.url === "/metrics") {
        void this.metrics.text().then((text) => {
          res.writeHead(200, { "content-type": this.metrics.contentType });
          res.end(text);
        });
      } else {
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not found\n");
      }
    });
    await new Promise<void>((resolve, reject) => {
      this.http.once("error", reject);
      this.http.listen(this.config.listenHttp.port, this.config.listenHttp.host, () => resolve());
    });
    const address = this.http.address();
    this.httpAddress = typeof address === "object" && address !== null ? `${this.config.listenHttp.host}:${address.port}` : "";
    this.leaseTimer = setInterval(() => void this.keepLease(), Math.max(200, Math.floor(this.config.leaseMs / 10)));
    this.reconcileTimer = setInterval(() => void this.reconcile(), RECONCILE_MS);
    this.heartbeatTimer = setInterval(() => this.devices.pingAll(Date.now()), HEARTBEAT_MS);
  }

  warn(message: string): void {
    this.log.warn(message);
  }

  /** The owner's view of a VM's guest (health, KVP); "unknown" when the owner does not answer in time. */
  async guestOf(owner: string, vm: string): Promise<GuestView> {
    if (owner === this.id) return this.devices.guest(vm);
    try {
      const answer = await this.request(owner, "guest", utf8.encode(JSON.stringify({ vm })), GUEST_VIEW_TIMEOUT_MS);
      const health = answer["health"];
      const kvp = answer["kvp"];
      if (typeof health !== "string" || typeof kvp !== "object" || kvp === null) return { health: "unknown", kvp: {} };
      const known = ["ok", "unhealthy", "no-contact", "not-connected", "unknown"] as const;
      const h = known.find((k) => k === health) ?? "unknown";
      return { health: h, kvp: Object.fromEntries(Object.entries(kvp).filter((e): e is [string, string] => typeof e[1] === "string")) };
    } catch {
      return { health: "unknown", kvp: {} };
    }
  }

  /**
   * A graceful stop's first step, on the owner (asked over NATS when it is another node): the guest is
   * asked to shut down and given `timeoutMs` to power off. A node that does not answer in time is
   * treated like a guest that did not power off.
   */
  async shutdownGuest(owner: string, vm: string, timeoutMs: number): Promise<GuestShutdown> {
    if (owner === this.id) return this.shutdownLocalGuest(vm, timeoutMs);
    try {
      const answer = await this.request(owner, "guest-shutdown", utf8.encode(JSON.stringify({ vm, timeoutMs })), timeoutMs + NATS_REQUEST_TIMEOUT_MS);
      const outcome = answer["outcome"];
      return outcome === "off" || outcome === "not-connected" || outcome === "refused" ? outcome : "timeout";
    } catch (e) {
      this.log.warn(`vm ${vm}: graceful stop on ${owner}: ${e instanceof Error ? e.message : String(e)}; turning it off`);
      return "timeout";
    }
  }

  private async shutdownLocalGuest(vm: string, timeoutMs: number): Promise<GuestShutdown> {
    const outcome = await this.devices.requestShutdown(vm, "stop requested", timeoutMs);
    if (outcome === "off") this.log.info(`vm ${vm}: the guest shut down`);
    else if (outcome !== "not-connected") this.log.warn(`vm ${vm}: the guest did not shut down (${outcome}): turning it off`);
    return outcome;
  }

  private serve(what: string, handler: (data: Uint8Array) => Promise<object>): void {
    const sub = this.nc.subscribe(this.subject(this.id, what), {
      callback: (err, msg) => {
        if (err !== null) return;
        void handler(msg.data)
          .catch((e: unknown) => ({ error: "INTERNAL", message: e instanceof Error ? e.message : String(e) }))
          .then((answer) => msg.respond(utf8.encode(JSON.stringify(answer))));
      },
    });
    this.subscriptions.push(sub);
  }

  async request(node: string, what: string, body: Uint8Array, timeoutMs = NATS_REQUEST_TIMEOUT_MS): Promise<Record<string, unknown>> {
    let reply;
    try {
      reply = await this.nc.request(this.subject(node, what), body, { timeout: timeoutMs });
    } catch (e) {
      throw new ApiError("UNAVAILABLE", `node ${node} did not answer ${what}: ${e instanceof Error ? e.message : String(e)}`);
    }
    const answer = JSON.parse(fromUtf8.decode(reply.data)) as Record<string, unknown>;
    if (typeof answer["error"] === "string") {
      const code = answer["error"];
      const known = code === "UNAVAILABLE" || code === "FAILED_PRECONDITION" || code === "ALREADY_EXISTS" || code === "DEADLINE_EXCEEDED" || code === "NOT_FOUND";
      throw new ApiError(known ? code : "INTERNAL", String(answer["message"]));
    }
    return answer;
  }

  /** /healthz: a leader is known, this node is registered, and it reaches nats-server. */
  healthy(): boolean {
    return this.raft.leader() !== null && this.state.getNode(this.id) !== null && this.natsConnected;
  }

  private leaderClient(): ForwardTarget | undefined {
    const leader = this.raft.leader();
    if (leader === null) return undefined;
    const address = this.state.getNode(leader.id)?.apiAddress;
    if (address === undefined || address === "") return undefined;
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new ApiClient(address, { token: this.config.clusterToken });
      this.clients.set(address, client);
    }
    return client;
  }

  /** The API error for a failure of a Raft call (NotLeader → UNAVAILABLE, outcome unknown → DEADLINE_EXCEEDED). */
  apiError(e: unknown): ApiError {
    if (e instanceof ApiError) return e;
    if (e instanceof NotLeaderError || e instanceof ProposalRejectedError) return new ApiError("UNAVAILABLE", `${e.message}: retry`);
    if (e instanceof ProposalOutcomeUnknownError) return new ApiError("DEADLINE_EXCEEDED", e.message);
    return new ApiError("INTERNAL", e instanceof Error ? e.message : String(e));
  }

  /** Proposes a command (through the leader when this node does not lead) and resolves with its result. */
  async propose(command: ClusterCommand): Promise<ClusterResult> {
    const bytes = encodeCommand(command);
    if (this.raft.isLeader()) {
      try {
        const result = await this.raft.propose(bytes);
        if (result === null) throw new ApiError("INTERNAL", "a proposed command applied without a result");
        return result;
      } catch (e) {
        throw this.apiError(e);
      }
    }
    const leader = this.raft.leader();
    if (leader === null) throw new ApiError("UNAVAILABLE", "no leader is known (an election is under way): retry");
    const answer = await this.request(leader.id, "propose", bytes);
    return answer["result"] as ClusterResult;
  }

  /** Proposes a command and resolves with its success, or throws the `ApiError` of its rejection. */
  async write(command: ClusterCommand): Promise<ClusterSuccess> {
    const result = await this.propose(command);
    if (!result.ok) throw rejectionToApiError(result.code, result.message);
    return result;
  }

  // ---- lease ----

  private async keepLease(): Promise<void> {
    if (this.closing || this.raft.leader() === null) return;
    const now = Date.now();
    const me = this.state.getNode(this.id);
    try {
      if (me === null || me.apiAddress !== this.apiAddress) {
        await this.write({
          type: "registerNode", atMs: now, node: this.id, apiAddress: this.apiAddress, migrationAddress: this.subject(this.id, "receive"),
          capacity: { memoryBytes: this.config.memoryMib * 2 ** 20 - 4096, vcpus: this.config.vcpus }, leaseUntilMs: now + this.config.leaseMs,
        });
        this.lastRenewMs = now;
      } else if (now - this.lastRenewMs >= this.config.leaseMs / 4) {
        await this.write({ type: "renewLease", atMs: now, node: this.id, untilMs: now + this.config.leaseMs });
        this.lastRenewMs = now;
      }
      // Declared failed while it could not renew (a crash, a cut link): with a live lease again, it is back.
      if (me !== null && me.state === "failed" && !this.shuttingDown) {
        await this.write({ type: "setNodeState", atMs: now, node: this.id, state: "active" });
        this.log.info(`${this.id} is active again after being declared failed`);
      }
      // Back from a shutdown that drained this node: take VMs again (an operator's drain stays).
      const marker = this.shutdownMarker();
      if (!this.shuttingDown && me !== null && existsSync(marker)) {
        if (me.state === "draining" || me.state === "drained") await this.write({ type: "setNodeState", atMs: now, node: this.id, state: "active" });
        rmSync(marker, { force: true });
      }
    } catch (e) {
      this.log.warn(`lease: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /**
   * Whether this node may run VMs now: its lease (as committed in the cluster state) ends more than
   * `fenceMarginMs` from now. A node cut off from the leader cannot renew it, so it stops its VMs
   * `fenceMarginMs` before the lease ends; the leader restarts them elsewhere only `failoverMarginMs`
   * after it ends, so the two never overlap (self-fencing).
   */
  private leaseLive(): boolean {
    const me = this.state.getNode(this.id);
    return me !== null && me.state !== "failed" && me.leaseUntilMs - this.config.fenceMarginMs > Date.now();
  }

  // ---- the reconcile loop ----

  private imagePath(image: string): string {
    const file = image.endsWith(".elf") ? image : `${image}.elf`;
    return isAbsolute(file) ? file : join(this.config.imageDir, file);
  }

  private async reconcile(): Promise<void> {
    if (this.reconciling || this.closing || this.evacuating) return;
    this.reconciling = true;
    try {
      const live = this.leaseLive();
      for (const vm of this.state.listVms({ node: this.id })) {
        if (this.incoming.get(vm.id)?.done === true) {
          this.incoming.delete(vm.id);
          this.runEpochs.set(vm.id, vm.epoch);
        }
        if (this.incoming.has(vm.id) || this.outgoing.has(vm.id) || this.busy.has(vm.id)) continue;
        this.devices.syncHostKvp(vm.id, vm.hostKvp);
        this.busy.add(vm.id);
        void this.converge(vm, live).catch((e: unknown) => this.log.warn(`vm ${vm.id}: ${e instanceof Error ? e.message : String(e)}`))
          .finally(() => this.busy.delete(vm.id));
      }
      // The fence: every local VM's vCPUs stop by themselves where this node's right to run them ends
      // (its committed lease less the fence margin), even if this thread is stuck or cut off; each
      // pass moves it on as the lease is renewed. An arriving VM is the migration's until it is done.
      const me = this.state.getNode(this.id);
      const fenceAt = me === null || me.state === "failed" ? Date.now() : me.leaseUntilMs - this.config.fenceMarginMs;
      for (const child of this.root.list()) {
        const name = child.spec.name;
        if (this.incoming.has(name) || child.worker === undefined) continue;
        // a copy the cluster gave to another node (this one was cut off, then came back) never runs
        // again here, not even until the loop below has destroyed it
        const owned = this.state.getVm(name)?.owner === this.id;
        const until = owned ? fenceAt : Math.min(fenceAt, Date.now());
        if (child.state === "halted") this.runs.stopped(name, "halted");
        else this.runs.fenced(name, until);
        child.worker.fence(until);
      }
      // Never run a VM this node does not own at the current epoch.
      for (const child of this.root.list()) {
        const name = child.spec.name;
        if (this.incoming.has(name) || this.outgoing.has(name) || this.busy.has(name)) continue;
        const vm = this.state.getVm(name);
        if (vm !== null && vm.owner === this.id && this.runEpochs.get(name) === vm.epoch) continue;
        this.runEpochs.delete(name);
        this.busy.add(name);
        void this.destroyChild(name).catch((e: unknown) => this.log.warn(`destroying ${name}: ${e instanceof Error ? e.message : String(e)}`))
          .finally(() => this.busy.delete(name));
      }
      const leading = this.raft.isLeader();
      if (leading && this.leaderSinceMs === null) this.leaderSinceMs = Date.now();
      if (!leading) this.leaderSinceMs = null;
      if (leading) {
        void this.driveDrains().catch((e: unknown) => this.log.warn(`drain: ${e instanceof Error ? e.message : String(e)}`));
        void this.driveFailovers().catch((e: unknown) => this.log.warn(`failover: ${e instanceof Error ? e.message : String(e)}`));
        this.driveRebalance();
      }
      // Now and then: saved states of VMs that no longer exist go away.
      if (++this.reconcileCount % 50 === 0) {
        void this.forgetDeletedSavedStates();
        if (leading) void this.forgetDeletedDisks();
      }
    } finally {
      this.reconciling = false;
    }
  }

  /** Leader only: the disks of VMs that no longer exist go from cluster storage (a delete whose removal failed). */
  private async forgetDeletedDisks(): Promise<void> {
    const dir = this.config.storageDir;
    if (dir === null) return;
    const names = await readdir(dir).catch(() => [] as string[]);
    await this.devices.forgetDeleted((vm) => this.state.getVm(vm) !== null || this.root.get(vm) !== undefined, names, DELETED_STORAGE_AGE_MS)
      .catch((e: unknown) => this.log.warn(`storage: ${e instanceof Error ? e.message : String(e)}`));
  }

  private async forgetDeletedSavedStates(): Promise<void> {
    for (const vm of await this.saved.vms()) {
      if (this.state.getVm(vm) === null && this.root.get(vm) === undefined) await this.saved.removeVm(vm).catch(() => undefined);
    }
  }

  // ---- drains ----

  /**
   * Leader only, from the reconcile loop: moves the VMs of draining nodes away (running ones by live
   * migration, `DRAIN_PARALLEL` at a time per node; stopped ones by moving their ownership), to where
   * the placement policy puts them; a node whose VMs are all gone becomes drained. A VM that cannot
   * move now (no room, a failed migration) is tried again later with a growing delay; a paused VM or
   * one with a saved state (which stays on its node) keeps the node draining until it is resumed,
   * stopped or restored. A new leader picks the drain up where the old one left it: it reads it all
   * from the cluster state.
   */
  private async driveDrains(): Promise<void> {
    if (this.drainBusy) return;
    this.drainBusy = true;
    try {
      const now = Date.now();
      const leader = this.leader();
      // The steps read the state lazily: each one sees what the previous ones committed.
      for (const step of leader.drainSteps(this.state, now)) {
        if (step.kind === "drained") {
          await this.write({ type: "setNodeState", atMs: now, node: step.node, state: "drained" });
          this.log.info(`node ${step.node} is drained`);
        } else if (step.kind === "deferred") {
          if (step.changed) this.log.warn(`drain: vm ${step.vm} stays for now (${step.reason}); trying again in ${step.delayMs} ms`);
        } else if (step.live) {
          void this.startMigration({
            vm: step.vm, targetNode: step.to, kind: "MIGRATION_KIND_LIVE", downtimeLimitMs: 0, bandwidthLimitBytesPerSecond: 0, maxRounds: 0,
            policy: "NO_CONVERGENCE_POLICY_UNSPECIFIED",
          }).then(
            () => leader.drainDone(step.vm),
            (e: unknown) => this.drainFailed(step.vm, Date.now(), e instanceof Error ? e.message : String(e)),
          );
        } else {
          // Nothing runs: only the ownership moves (begin and transfer at once, no data to copy).
          try {
            const begun = await this.write({ type: "beginMigration", atMs: now, vm: step.vm, from: step.from, to: step.to, kind: "quick" });
            if (begun.type !== "beginMigration") continue;
            await this.transferIdle(step.vm, step.from, step.to, begun);
            leader.drainDone(step.vm);
            this.log.info(`drain of ${step.from}: vm ${step.vm} (not running) now belongs to ${step.to}`);
          } catch (e) {
            this.drainFailed(step.vm, now, e instanceof Error ? e.message : String(e));
          }
        }
      }
    } finally {
      this.drainBusy = false;
    }
  }

  // ---- failure detection and failover ----

  /**
   * Leader only, from the reconcile loop: a node whose lease ended more than `failoverMarginMs` ago is
   * declared failed, and the VMs it owned are restarted elsewhere by the placement policy, high
   * priority first (`failover`: epoch + 1, so the dead node can never run them again even if it comes
   * back; "do-not-restart" VMs are placed but left stopped). VMs no node can take stay pending with the
   * reason and are tried again every `PENDING_RETRY_MS`. The decisions are `LeaderController`'s.
   */
  private async driveFailovers(): Promise<void> {
    // A new leader first gives every node half a lease to renew with it (after a restart of the whole
    // cluster, every lease in the state has long ended).
    if (this.failoverBusy || !this.leader().failoversAllowed(Date.now(), this.leaderSinceMs)) return;
    this.failoverBusy = true;
    try {
      const now = Date.now();
      const leader = this.leader();
      for (const failure of leader.nodesToFail(this.state, now)) {
        await this.write({ type: "setNodeState", atMs: now, node: failure.node, state: "failed" });
        this.log.warn(`node ${failure.node} failed: its lease ended ${failure.leaseEndedAgoMs} ms ago`);
        this.metrics.nodeFailed();
      }
      for (const vm of leader.failoverOrder(this.state, now)) {
        const result = await this.propose({ type: "failover", atMs: now, vm: vm.id, epoch: vm.epoch });
        leader.failoverDone(vm, result, now);
        if (!result.ok) continue;
        if (result.type === "failover") {
          if (vm.owner !== null || result.owner !== null) this.metrics.failover(result.owner !== null, vm.owner === null ? null : Date.now() - (this.state.getNode(vm.owner)?.leaseUntilMs ?? Date.now()));
          if (result.owner === null) {
            if (vm.owner !== null) this.log.warn(`failover: vm ${vm.id} of ${vm.owner} is pending: ${result.pendingReason ?? ""}`);
          } else {
            this.log.info(`failover: vm ${vm.id} of ${vm.owner ?? "no node"} now belongs to ${result.owner} (epoch ${result.epoch})`);
          }
        }
      }
    } finally {
      this.failoverBusy = false;
    }
  }

  // ---- rebalancing ----

  /**
   * Leader only, every `rebalanceIntervalMs`: when the most and least loaded active nodes differ by
   * more than the threshold, live-migrates the one VM that best evens them out (`planRebalance`: a
   * move never flips the imbalance, so no pass undoes another). Quiet while any migration is in flight
   * or a node drains; a VM moved by it is left alone for five intervals.
   */
  private driveRebalance(): void {
    const now = Date.now();
    const plan = this.leader().planRebalance(this.state, now);
    if (plan === null) return;
    this.log.info(`rebalance: vm ${plan.vm} from ${plan.from} to ${plan.to} (load gap ${plan.gapBefore.toFixed(2)} -> ${plan.gapAfter.toFixed(2)})`);
    void this.startMigration({
      vm: plan.vm, targetNode: plan.to, kind: "MIGRATION_KIND_LIVE", downtimeLimitMs: 0, bandwidthLimitBytesPerSecond: 0, maxRounds: 0,
      policy: "NO_CONVERGENCE_POLICY_UNSPECIFIED",
    }).catch((e: unknown) => this.log.warn(`rebalance: vm ${plan.vm}: ${e instanceof Error ? e.message : String(e)}`));
  }

  /** The leader's decisions and their memory, made on first use (the memory stays across terms, as the cluster state does). */
  private leader(): LeaderController {
    this.leaderController ??= new LeaderController({
      leaseMs: this.config.leaseMs, failoverMarginMs: this.config.failoverMarginMs, rebalanceIntervalMs: this.config.rebalanceIntervalMs,
      rebalanceThresholdPercent: this.config.rebalanceThresholdPercent, drainParallel: DRAIN_PARALLEL, drainRetryMsMax: DRAIN_RETRY_MS_MAX,
      pendingRetryMs: PENDING_RETRY_MS, failoversPerPass: FAILOVERS_PER_PASS, memoryEntriesMax: FAILED_STARTS_KEPT,
    });
    return this.leaderController;
  }

  private drainFailed(vm: string, now: number, reason: string): void {
    const backoff = this.leader().drainFailed(vm, now, reason);
    if (backoff.changed) this.log.warn(`drain: vm ${vm} stays for now (${reason}); trying again in ${backoff.delayMs} ms`);
  }

  /** Why the VMs of a draining node that have not moved are still there (leader only). */
  drainBlockers(node: string): string[] {
    return this.leader().drainBlockers(this.state, node);
  }

  /** `movedAway`: it runs on another node now (see `NodeDevices.detach`). */
  private async destroyLocal(name: string, movedAway = false): Promise<void> {
    this.runEpochs.delete(name);
    await this.destroyChild(name, movedAway);
  }

  /** Stops serving a local VM's devices (its disks closed) and destroys its partition. */
  private async destroyChild(name: string, movedAway = false): Promise<void> {
    try {
      await this.devices.detach(name, movedAway);
    } finally {
      await this.root.destroy(name);
      this.runs.stopped(name, "destroyed");
    }
  }

  private async converge(vm: VmRecord, leaseLive: boolean): Promise<void> {
    let child = this.root.get(vm.id);
    if (child !== undefined && this.runEpochs.get(vm.id) !== vm.epoch) {
      // it came to run here at another epoch: it is not the instance the cluster means now
      await this.destroyLocal(vm.id);
      child = undefined;
    }
    const wantRunning = leaseLive && vm.desiredState === "running";
    if (vm.desiredState !== "running") this.failedStarts.delete(`${vm.id}/${vm.epoch}`);
    if (this.failedStarts.size > FAILED_STARTS_KEPT) this.failedStarts.clear();
    if (wantRunning) {
      if (child === undefined) {
        const attempt = `${vm.id}/${vm.epoch}`;
        const failed = this.failedStarts.get(attempt);
        if (failed !== undefined && (failed.count >= START_ATTEMPTS_MAX || Date.now() < failed.nextAtMs)) return;
        // Only once the cluster has taken "starting" from this node at this epoch: a VM whose epoch
        // moved on meanwhile (a drain gave the stopped VM to another node) must not start here too.
        if (!(await this.report(vm, "starting"))) return;
        // What to start from: the saved state the cluster names, else the one this node wrote of the
        // VM when it last shut down (at this same epoch; after it failed once, the image instead),
        // else the image.
        const shutdownSave = failed === undefined && (await this.shutdownSaveEpoch(vm.id)) === vm.epoch;
        const from = vm.savedState ?? (shutdownSave ? SHUTDOWN_SAVED_STATE : null);
        let disks: Awaited<ReturnType<NodeDevices["openDisks"]>> = [];
        try {
          const spec = {
            name: vm.id, memoryBytes: vm.spec.memoryBytes, vcpus: vm.spec.vcpus, boot: vm.spec.bootMode, bootargs: vm.spec.bootargs, offers: offersFor(vm.spec),
          };
          // its disks on cluster storage (created the first time it starts anywhere), before it runs
          disks = await this.devices.openDisks(vm.id, vm.spec);
          if (from !== null) {
            const snapshot = await this.saved.read(vm.id, from);
            child = this.root.create(spec);
            this.runs.started(vm.id, vm.epoch, `restore ${from}`);
            await child.start({ snapshot });
          } else {
            const image = readFileSync(this.imagePath(vm.spec.image));
            child = this.root.create(spec);
            this.runs.started(vm.id, vm.epoch, "boot");
            await child.start({ image });
          }
          const opened = disks;
          disks = [];
          await this.devices.attach(vm.id, child, vm.spec, opened);
          this.runEpochs.set(vm.id, vm.epoch);
        } catch (e) {
          await closeDisks(disks);
          if (this.root.get(vm.id) !== undefined) await this.destroyLocal(vm.id);
          const count = (failed?.count ?? 0) + 1;
          this.failedStarts.set(attempt, { count, nextAtMs: Date.now() + 1000 * 2 ** (count - 1) });
          this.log.warn(`vm ${vm.id} did not start${from === null ? "" : ` from saved state ${from}`} (attempt ${count} of ${START_ATTEMPTS_MAX}): ` +
            `${e instanceof Error ? e.message : String(e)}`);
          await this.report(vm, "crashed");
          return;
        }
        this.failedStarts.delete(attempt);
        if (from === SHUTDOWN_SAVED_STATE && vm.savedState === null) await this.saved.remove(vm.id, SHUTDOWN_SAVED_STATE).catch(() => undefined);
        this.log.info(`vm ${vm.id} ${from === null ? "started" : `restored from saved state ${from}`} (epoch ${vm.epoch})`);
      } else if (child.state === "paused") {
        this.runs.started(vm.id, vm.epoch, "resume");
        await child.resume();
      }
    } else if (leaseLive && vm.desiredState === "paused") {
      if (child?.state === "running") {
        await child.pause();
        this.runs.stopped(vm.id, "pause");
      }
    } else if (leaseLive && vm.desiredState === "saved" && vm.savedState !== null) {
      if (child !== undefined) {
        const size = await this.saveLocal(vm.id, vm.savedState);
        this.log.info(`vm ${vm.id} saved to ${vm.savedState} (${size} bytes) and turned off`);
        await this.report(vm, "saved");
        return;
      }
      const has = await this.saved.size(vm.id, vm.savedState).then(() => true, () => false);
      await this.report(vm, has ? "saved" : "stopped");
      return;
    } else if (child !== undefined) {
      await this.destroyLocal(vm.id);
      this.log.info(`vm ${vm.id} stopped`);
      child = undefined;
    }
    const actual: VmActualState = child === undefined ? "stopped" : child.state === "halted" ? "stopped" : child.state === "paused" ? "paused"
      : child.state === "running" ? "running" : "starting";
    await this.report(vm, actual);
  }

  /** Pauses a local VM, writes its whole state as saved state `name`, and destroys the partition. */
  private async saveLocal(vm: string, name: string, epoch?: number): Promise<number> {
    const child = this.root.get(vm);
    if (child === undefined || child.worker === undefined) throw new FleetdError(`vm ${vm} does not run on node ${this.id}`);
    // its devices go quiet first, so the saved memory holds no half-done exchange (what the guest
    // sends meanwhile waits in its rings for whoever serves it next)
    const bus = this.devices.bus(vm);
    await bus?.suspend();
    let size: number;
    try {
      if (child.state === "running") await child.pause();
      if (child.state !== "paused") throw new FleetdError(`vm ${vm} is ${child.state}: nothing to save`);
      size = await this.saved.write(vm, name, await child.worker.save({ memory: true }), epoch);
    } catch (e) {
      bus?.resume();
      throw e;
    }
    await this.destroyLocal(vm);
    return size;
  }

  /** The epoch recorded with the VM's shutdown saved state, if this node has one. */
  private async shutdownSaveEpoch(vm: string): Promise<number | null> {
    return this.saved.epochOf(vm, SHUTDOWN_SAVED_STATE);
  }

  /**
   * Reports what a local VM does, unless the cluster state has it already; false when the cluster
   * refused it (this node no longer owns the VM at that epoch, or it may not start now). Compared with
   * the state as it is now, not with `vm`: that copy may predate a report made since (a VM that was
   * fenced, reported "starting" and runs again must still report "running").
   */
  private async report(vm: VmRecord, actual: VmActualState): Promise<boolean> {
    const now = this.state.getVm(vm.id);
    if (now !== null && now.epoch === vm.epoch && now.actual !== null && now.actual.epoch === vm.epoch && now.actual.state === actual) return true;
    const result = await this.propose({ type: "reportActual", atMs: Date.now(), vm: vm.id, node: this.id, epoch: vm.epoch, actual });
    return result.ok;
  }

  // ---- migration ----

  /** On the leader: begins the migration in the cluster state and hands it to the VM's owner. */
  async startMigration(r: MigrateRequest): Promise<MigrateResponse> {
    const vm = this.state.getVm(r.vm);
    if (vm === null) throw new ApiError("NOT_FOUND", `vm ${r.vm} does not exist`);
    if (vm.owner === null) throw new ApiError("FAILED_PRECONDITION", `vm ${r.vm} has no owner (pending)`);
    const now = Date.now();
    let to = r.targetNode;
    if (to === vm.owner) throw new ApiError("INVALID_ARGUMENT", `target_node: vm ${r.vm} already runs on node ${to}`);
    if (to !== "" && this.state.getNode(to) === null) throw new ApiError("NOT_FOUND", `target_node: node ${to} is not registered`);
    if (to === "") {
      const candidates = this.state.listNodes()
        .filter((n) => n.id !== vm.owner && n.state === "active" && n.leaseUntilMs > now && n.freeMemoryBytes >= vm.spec.memoryBytes)
        .sort((a, b) => b.freeMemoryBytes - a.freeMemoryBytes || (a.id < b.id ? -1 : 1));
      if (candidates.length === 0) throw new ApiError("RESOURCE_EXHAUSTED", `no node other than ${vm.owner} has room for vm ${r.vm}`);
      to = candidates[0]!.id;
    }
    const kind = r.kind === "MIGRATION_KIND_QUICK" ? "quick" : "live";
    const reported = vm.actual !== null && vm.actual.epoch === vm.epoch ? vm.actual.state : null;
    const off = vm.desiredState === "stopped" && reported !== "running" && reported !== "paused" && reported !== "starting";
    const begun = await this.write({ type: "beginMigration", atMs: now, vm: r.vm, from: vm.owner, to, kind });
    if (begun.type !== "beginMigration") throw new ApiError("INTERNAL", `beginMigration answered ${begun.type}`);
    const order: MigrateOrder = {
      vm: r.vm, kind, to, epoch: begun.epoch, migrationId: begun.migrationId,
      downtimeLimitMs: r.downtimeLimitMs > 0 ? r.downtimeLimitMs : MIGRATION_DEFAULTS.downtimeLimitMs,
      maxRounds: r.maxRounds > 0 ? r.maxRounds : MIGRATION_DEFAULTS.maxRounds,
      bandwidthLimitBytesPerSecond: r.bandwidthLimitBytesPerSecond,
      policy: r.policy === "NO_CONVERGENCE_POLICY_FORCE" ? "force" : r.policy === "NO_CONVERGENCE_POLICY_CANCEL" ? "cancel" : MIGRATION_DEFAULTS.policy,
    };
    this.remember(this.describe(order, vm.owner, null, emptyProgress()));
    if (off) {
      // A VM that is off has nothing to copy: its ownership moves at once.
      const started = Date.now();
      await this.transferIdle(r.vm, vm.owner, to, begun);
      const result: ApiMigrationResult = {
        ok: true, totalMs: Date.now() - started, downtimeMs: 0, bytesSent: 0, rounds: 0, throttlePercentMax: 0, failureReason: "", cancelled: false,
      };
      const m = this.describe(order, vm.owner, result, { ...emptyProgress(), phase: "MIGRATION_PHASE_DONE" });
      this.publish(m, { migrationId: m.id, update: "result", result });
      return { migrationId: String(begun.migrationId), targetNode: to };
    }
    try {
      await this.request(vm.owner, "migrate", utf8.encode(JSON.stringify(order)));
    } catch (e) {
      await this.propose({ type: "abortMigration", atMs: Date.now(), vm: r.vm, epoch: begun.epoch, migrationId: begun.migrationId }).catch(() => undefined);
      throw e;
    }
    return { migrationId: String(begun.migrationId), targetNode: to };
  }

  /**
   * The transfer of migration `begun` of a VM that runs nowhere (nothing to copy): its ownership moves
   * at once. If the transfer fails, the migration is aborted (its reservation released) and the error
   * goes on to the caller.
   */
  private async transferIdle(vm: string, from: string, to: string, begun: { epoch: number; migrationId: number }): Promise<void> {
    try {
      // Its owner may have started it just before the move began (once it began, it cannot): then it
      // is no longer idle and only a live or quick migration may move it.
      const record = this.state.getVm(vm);
      const reported = record !== null && record.actual !== null && record.actual.epoch === begun.epoch ? record.actual.state : null;
      if (reported === "starting" || reported === "running" || reported === "paused" || reported === "stopping") {
        throw new FleetdError(`vm ${vm} is ${reported} on ${from}: it is no longer idle`);
      }
      await this.write({ type: "transfer", atMs: Date.now(), vm, from, to, epoch: begun.epoch, migrationId: begun.migrationId });
    } catch (e) {
      await this.propose({ type: "abortMigration", atMs: Date.now(), vm, epoch: begun.epoch, migrationId: begun.migrationId }).catch(() => undefined);
      throw e;
    }
  }

  private describe(order: MigrateOrder, from: string, result: ApiMigrationResult | null, progress: ApiMigrationProgress): Migration {
    const previous = this.known.get(String(order.migrationId))?.migration;
    return {
      id: String(order.migrationId),
      vm: order.vm,
      sourceNode: from,
      targetNode: order.to,
      options: {
        kind: order.kind === "quick" ? "MIGRATION_KIND_QUICK" : "MIGRATION_KIND_LIVE", downtimeLimitMs: order.downtimeLimitMs, bandwidthLimitBytesPerSecond: order.bandwidthLimitBytesPerSecond,
        maxRounds: order.maxRounds,
        policy: order.policy === "force" ? "NO_CONVERGENCE_POLICY_FORCE" : order.policy === "cancel" ? "NO_CONVERGENCE_POLICY_CANCEL" : "NO_CONVERGENCE_POLICY_AUTO_CONVERGE",
      },
      progress,
      result,
      startedAtMs: previous?.startedAtMs ?? Date.now(),
      finishedAtMs: result === null ? 0 : Date.now(),
    };
  }

  private remember(m: Migration): void {
    this.known.delete(m.id);
    this.known.set(m.id, { migration: m });
    while (this.known.size > FINISHED_MIGRATIONS_KEPT) {
      const oldest = this.known.keys().next().value;
      if (oldest === undefined) break;
      this.known.delete(oldest);
    }
  }

  private publish(migration: Migration, update: MigrationUpdate): void {
    this.remember(migration);
    if (!this.nc.isClosed()) this.nc.publish(this.migrationSubject(migration.id), utf8.encode(JSON.stringify({ migration, update })));
  }

  /** On the owner: runs the source side; the transfer entry is the commit point. */
  private async runSource(order: MigrateOrder, vm: VmRecord): Promise<void> {
    const child = this.root.get(order.vm)!;
    const session = order.migrationId >>> 0;
    let progress = emptyProgress();
    const finish = (result: ApiMigrationResult, dirtyPages = 0): void => {
      this.metrics.migrationFinished(order.vm, order.kind, result, dirtyPages);
      const m = this.describe(order, this.id, result, { ...progress, phase: result.ok ? "MIGRATION_PHASE_DONE" : "MIGRATION_PHASE_FAILED" });
      this.publish(m, { migrationId: m.id, update: "result", result });
    };
    const failed = (reason: string): ApiMigrationResult => ({
      ok: false, totalMs: 0, downtimeMs: 0, bytesSent: 0, rounds: 0, throttlePercentMax: 0, failureReason: reason, cancelled: false,
    });
    const abort = async (): Promise<void> => {
      // Bounded retries across a leader change; a rejection (already ended) is final.
      for (let attempt = 1; attempt <= ABORT_ATTEMPTS_MAX; attempt++) {
        try {
          await this.propose({
            type: "abortMigration", atMs: Date.now(), vm: order.vm, epoch: order.epoch, migrationId: order.migrationId,
            cancelled: this.cancelled.has(order.migrationId),
          });
          return;
        } catch (e) {
          this.log.warn(`abort of migration ${order.migrationId} (attempt ${attempt}): ${e instanceof Error ? e.message : String(e)}`);
          await sleep(200 * attempt);
        }
      }
    };
    let transport: NatsTransport | undefined;
    // Quick migration (Hyper-V's first kind): the VM is paused before anything is copied and resumes
    // only on the destination, so it is down for the whole move; the copy itself is the same protocol
    // (every page goes in one round, then the state, the commit and the resume there).
    let quickPausedAt: number | null = null;
    let handedEpoch: number | undefined;
    // an operator paused it: it moves paused and stays paused on whichever side keeps it
    const keepPaused = child.state === "paused";
    const resumeIfQuick = async (): Promise<void> => {
      if (quickPausedAt !== null && this.root.get(order.vm) === child && child.state === "paused") await child.resume().catch(() => undefined);
    };
    try {
      if (order.kind === "quick" && child.state === "running") {
        await child.pause();
        quickPausedAt = Date.now();
      }
      transport = new NatsTransport(this.nc, session, "source");
      await transport.ready();
      await this.request(order.to, "receive", utf8.encode(JSON.stringify({ vm: order.vm, session, epoch: order.epoch, migrationId: order.migrationId, from: this.id })));
      const source = new MigrationSource(
        {
          vm: child.worker!, name: order.vm, memoryBytes: vm.spec.memoryBytes, vcpus: vm.spec.vcpus, boot: vm.spec.bootMode, bootargs: vm.spec.bootargs,
          // its VMBus: quiet during the stop-and-copy; resumed by the source itself if the migration fails
          ...(this.devices.bus(order.vm) !== undefined ? { devices: this.devices.bus(order.vm)! } : {}),
        },
        transport,
        session,
        {
          ...(order.downtimeLimitMs > 0 ? { downtimeLimitMs: order.downtimeLimitMs } : {}),
          ...(order.maxRounds > 0 ? { maxRounds: order.maxRounds } : {}),
          whenNoConvergence: order.policy ?? MIGRATION_DEFAULTS.policy,
          keepPaused,
          ...(order.bandwidthLimitBytesPerSecond > 0 ? { bandwidthLimitBytesPerSecond: order.bandwidthLimitBytesPerSecond } : {}),
          // the destination proposes the transfer; the run here ends as State leaves, and starts
          // again (same epoch) if the VM is taken back
          beforeHandover: () => {
            handedEpoch = this.runs.handOver(order.vm);
          },
          onTakeBack: () => {
            if (handedEpoch !== undefined) this.runs.started(order.vm, handedEpoch, "switchover refused");
          },
          // the destination's word lost: the cluster state decides (an abort that commits first wins)
          decide: async () => {
            const decided = await this.decideTransfer(order.vm, order.epoch, order.migrationId, order.to);
            if (decided === null) throw new FleetdError(`the transfer of ${order.vm} stayed undecided`);
            return decided;
          },
          onProgress: (p) => {
            this.metrics.migrationProgress(order.vm, p);
            progress = { ...p, phase: apiPhase(p.phase) };
            const m = this.describe(order, this.id, null, progress);
            this.publish(m, { migrationId: m.id, update: "progress", progress });
          },
        },
      );
      this.sources.set(order.migrationId, source);
      if (this.cancelled.has(order.migrationId)) source.cancel("cancelled by the operator");
      const result = await source.run().finally(() => this.sources.delete(order.migrationId));
      if (result.ok) {
        this.log.info(`vm ${order.vm} moved to ${order.to} in ${result.totalMs} ms (downtime ${result.downtimeMs} ms)`);
        await this.destroyLocal(order.vm, true);
        finish({
          ok: true, totalMs: result.totalMs, downtimeMs: quickPausedAt === null ? result.downtimeMs : Date.now() - quickPausedAt, bytesSent: result.bytesSent, rounds: result.rounds,
          throttlePercentMax: result.throttlePercentMax, failureReason: "", cancelled: false,
        }, result.pagesPerRound.slice(1).reduce((n, pages) => n + pages, 0));
      } else {
        if (result.committed === false) {
          await abort();
          await resumeIfQuick();
        } else if (result.committed) await this.destroyLocal(order.vm, true).catch(() => undefined);
        // in doubt (the cluster state could not say): the VM stays paused here, run by neither side
        else this.log.warn(`vm ${order.vm}: ${result.reason}`);
        finish({ ...failed(result.reason), totalMs: result.totalMs, bytesSent: result.bytesSent, cancelled: this.cancelled.delete(order.migrationId) });
      }
    } catch (e) {
      await abort();
      await resumeIfQuick();
      finish(failed(e instanceof Error ? e.message : String(e)));
    } finally {
      this.cancelled.delete(order.migrationId);
      await transport?.close();
    }
  }

  /**
   * Proposes the transfer and resolves true only if it committed with an ok result. When its outcome
   * is unknown (the leader changed), reads the cluster state until the migration is decided.
   */
  private async commitTransfer(order: { vm: string; from: string; to: string; epoch: number; migrationId: number }): Promise<boolean> {
    const transfer: ClusterCommand = { type: "transfer", atMs: Date.now(), vm: order.vm, from: order.from, to: order.to, epoch: order.epoch, migrationId: order.migrationId };
    const moved = (): boolean => {
      const vm = this.state.getVm(order.vm);
      return vm !== null && vm.owner === order.to && vm.epoch === order.epoch + 1;
    };
    for (let attempt = 1; attempt <= TRANSFER_ATTEMPTS_MAX; attempt++) {
      try {
        const result = await this.propose({ ...transfer, atMs: Date.now() });
        // a retry after an earlier attempt committed unseen is refused as stale: the state tells
        return result.ok || moved();
      } catch (e) {
        // UNAVAILABLE: no leader took the proposal (none known, or it was not the leader), so it did not
        // commit; propose it again once a leader is there. Anything else: the outcome is unknown.
        if (e instanceof ApiError && e.code === "UNAVAILABLE" && attempt < TRANSFER_ATTEMPTS_MAX) {
          await sleep(Math.min(1000, 50 * attempt));
          continue;
        }
        this.log.warn(`transfer of ${order.vm}: ${e instanceof Error ? e.message : String(e)}; reading the outcome from the cluster state`);
        break;
      }
    }
    const decided = await this.decideTransfer(order.vm, order.epoch, order.migrationId, order.to);
    // Undecided: never resume on either side; the VM stays paused here until an operator acts.
    if (decided === null) throw new FleetdError(`the transfer of ${order.vm} stayed undecided`);
    return decided;
  }

  /**
   * Whether the transfer of `vm` (at `epoch`, migration `migrationId`) to `to` committed. While the
   * migration is still in flight, an abort decides it (if the abort commits, the transfer never will).
   * Null when it stays undecided after `COMMIT_CHECKS_MAX` tries.
   */
  private async decideTransfer(vm: string, epoch: number, migrationId: number, to: string): Promise<boolean | null> {
    for (let i = 0; i < COMMIT_CHECKS_MAX; i++) {
      const record = this.state.getVm(vm);
      if (record !== null && record.owner === to && record.epoch === epoch + 1) return true;
      const flight = this.state.getMigration(vm);
      if (flight === null || flight.migrationId !== migrationId) return false;
      const aborted = await this.propose({ type: "abortMigration", atMs: Date.now(), vm, epoch, migrationId }).catch(() => null);
      if (aborted !== null && aborted.ok) return false;
      await sleep(100);
    }
    return null;
  }

  /** On the leader: asks the source node to cancel a migration in flight (it rolls back unless past its commit point). */
  async cancelMigration(id: string): Promise<Migration> {
    const m = this.migrations().find((x) => x.id === id);
    if (m === undefined) throw new ApiError("NOT_FOUND", `migration ${id} is not known`);
    if (m.result !== null) throw new ApiError("FAILED_PRECONDITION", `migration ${id} already ended (${m.result.ok ? "completed" : "failed"})`);
    await this.request(m.sourceNode, "cancel", utf8.encode(JSON.stringify({ migrationId: Number(id) })));
    return m;
  }

  /** Migrations this node knows of: finished ones it heard of and those in flight in the cluster state. */
  migrations(): Migration[] {
    const out = new Map<string, Migration>();
    for (const [id, k] of this.known) out.set(id, k.migration);
    for (const f of this.state.listMigrations()) {
      const id = String(f.migrationId);
      if (!out.has(id)) {
        out.set(id, {
          id, vm: f.vm, sourceNode: f.from, targetNode: f.to,
          options: { kind: f.kind === "quick" ? "MIGRATION_KIND_QUICK" : "MIGRATION_KIND_LIVE", downtimeLimitMs: 0, bandwidthLimitBytesPerSecond: 0, maxRounds: 0, policy: "NO_CONVERGENCE_POLICY_UNSPECIFIED" },
          progress: emptyProgress(), result: null, startedAtMs: f.startedAtMs, finishedAtMs: 0,
        });
      }
    }
    return [...out.values()];
  }

  async *watchMigration(id: string, signal: AbortSignal): AsyncIterable<MigrationUpdate> {
    const queue: MigrationUpdate[] = [];
    let wake: (() => void) | undefined;
    const listener = (u: MigrationUpdate): void => {
      if (queue.length < 10_000) queue.push(u);
      wake?.();
    };
    let set = this.watchers.get(id);
    if (set === undefined) this.watchers.set(id, (set = new Set()));
    set.add(listener);
    const aborted = new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    try {
      const known = this.migrations().find((m) => m.id === id);
      if (known === undefined) throw new ApiError("NOT_FOUND", `migration ${id} is not known to node ${this.id}`);
      if (known.result !== null) {
        yield { migrationId: id, update: "result", result: known.result };
        return;
      }
      while (!signal.aborted) {
        const next = queue.shift();
        if (next !== undefined) {
          yield next;
          if (next.update === "result") return;
          continue;
        }
        await Promise.race([new Promise<void>((resolve) => (wake = resolve)), aborted]);
      }
    } finally {
      set.delete(listener);
      if (set.size === 0) this.watchers.delete(id);
    }
  }

  private shutdownMarker(): string {
    return join(this.config.dataDir, "drained-for-shutdown");
  }

  /**
   * SIGTERM: this node drains itself (the leader live-migrates its running VMs to where placement puts
   * them), waits up to `shutdownTimeoutMs` while VMs still move or could, then saves every VM still
   * here (saved state `host-shutdown`, restored when the node starts again at the same epoch) and
   * closes. It stays a cluster member; back up, it takes VMs again. With `evacuate: false` (the whole
   * cluster stops), nothing moves: every VM here is saved at once.
   */
  async shutdown(options: { evacuate: boolean } = { evacuate: true }): Promise<void> {
    this.shuttingDown = true;
    const started = Date.now();
    const deadline = started + this.config.shutdownTimeoutMs;
    const me = this.state.getNode(this.id);
    let draining = options.evacuate && me?.state === "draining";
    if (options.evacuate && me !== null && me.state === "active" && this.config.shutdownTimeoutMs > 0) {
      try {
        writeFileSync(this.shutdownMarker(), `${started}\n`);
        await Promise.race([
          this.write({ type: "setNodeState", atMs: started, node: this.id, state: "draining" }),
          sleep(3000).then(() => Promise.reject(new FleetdError("no leader answered within 3 s"))),
        ]);
        draining = true;
      } catch (e) {
        this.log.warn(`shutdown: could not drain ${this.id} (${e instanceof Error ? e.message : String(e)}): saving its VMs`);
      }
    }
    let stuckSince = Date.now();
    for (let i = 0; draining && Date.now() < deadline && i < 1_000_000; i++) {
      const here = this.root.list().filter((c) => c.state === "running" || c.state === "paused");
      if (here.length === 0) break;
      const moving = this.outgoing.size > 0 || this.state.listMigrations().some((m) => m.from === this.id);
      const movable = here.some((c) => this.state.getVm(c.spec.name)?.desiredState === "running" && this.state.placeAway(c.spec.name, Date.now()).ok);
      if (moving || movable) stuckSince = Date.now();
      else if (Date.now() - stuckSince >= 1000) break;
      await sleep(100);
    }
    this.evacuating = true;
    for (const source of this.sources.values()) source.cancel("the node is shutting down");
    for (let i = 0; i < 100 && this.outgoing.size > 0; i++) await sleep(50);
    for (const child of this.root.list()) {
      const name = child.spec.name;
      const vm = this.state.getVm(name);
      if (vm === null || vm.owner !== this.id || this.runEpochs.get(name) !== vm.epoch || this.outgoing.has(name)) continue;
      if (child.state !== "running" && child.state !== "paused") continue;
      try {
        const size = await this.saveLocal(name, SHUTDOWN_SAVED_STATE, vm.epoch);
        this.log.info(`shutdown: vm ${name} saved (${size} bytes); it is restored when ${this.id} starts again`);
        await Promise.race([this.report(vm, "saved"), sleep(1000)]).catch(() => undefined);
      } catch (e) {
        this.log.warn(`shutdown: vm ${name} could not be saved: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    this.log.info(`shutdown took ${Date.now() - started} ms`);
    await this.close();
  }

  /** Stops serving, stops the VMs, closes the Raft member (the WAL is synced) and the NATS connection. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.reconcileTimer);
    clearInterval(this.leaseTimer);
    clearInterval(this.heartbeatTimer);
    this.metrics.close();
    await this.api.close().catch(() => undefined);
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
    for (const c of this.clients.values()) c.close();
    for (const child of this.root.list()) await this.destroyChild(child.spec.name).catch(() => undefined);
    await this.devices.closeAll();
    await this.root.close();
    await this.raft.close();
    await this.gateways?.close();
    for (const s of this.subscriptions) s.unsubscribe();
    await this.nc.drain().catch(() => undefined);
  }
}
