/**
 * fleetd's Prometheus metrics: one prom-client `Registry` per node (no global default registry),
 * served at `/metrics` on the node's HTTP server. Every name is `hyperfleet_<area>_<what>[_<unit>]`;
 * every series carries `node` (the fleetd id). The only unbounded label is `vm` (the VM's name);
 * every other label takes values from a fixed set (see `LABEL_VALUES` below and the README).
 *
 * Counts that are plain gauges (no unit suffix): `hyperfleet_node_vms_running`,
 * `hyperfleet_node_vcpus_assigned`, `hyperfleet_node_cpus_physical`, `hyperfleet_migration_in_flight`,
 * `hyperfleet_raft_term`, `hyperfleet_raft_commit_index`, `hyperfleet_raft_applied_index`,
 * `hyperfleet_raft_is_leader`, `hyperfleet_raft_members`, `hyperfleet_cluster_nodes`, `hyperfleet_vm_vcpus`.
 *
 * Most figures are read when Prometheus scrapes (`text()`): the partitions of the root, the Raft
 * status, the VM workers' `stats()`. Events (migration results, failovers, API calls, proposals) are
 * counted where they happen; leader changes as the Raft log records them: each new leader's first
 * entry (the empty entry that opens its term), when this node applies it.
 */
import type { GrpcStatusName, MigrationProgress as ApiMigrationProgress, MigrationResult as ApiMigrationResult } from "@hyperfleet/api";
import type { ExitCounts, RootPartition } from "@hyperfleet/hypervisor";
import type { RaftNode, RaftNodeStatus } from "@hyperfleet/raft";
import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** VMs whose dirty pages a node keeps counting after they left it (the most recently migrated ones). */
export const DIRTY_PAGES_VMS_KEPT = 256;

/**
 * The values each bounded label may take (`reason` of exits, `state` of VMs, `nodeState` is the
 * `state` label of `hyperfleet_cluster_nodes`); `method` and `code` of the API metrics are the API's
 * fixed set of methods ("Service/Rpc") and the gRPC status names.
 */
export const LABEL_VALUES = {
  result: ["succeeded", "failed", "cancelled"],
  failover: ["placed", "pending"],
  kind: ["live", "quick"],
  reason: ["wfi", "mmio", "hypercall", "write_protect", "ept_violation"],
  state: ["created", "running", "paused", "halted"],
  role: ["leader", "follower", "candidate", "pre_candidate"],
  nodeState: ["active", "draining", "drained", "failed"],
} as const;

/** What the metrics read from the node when scraped. */
export interface MetricsSource {
  readonly node: string;
  /** The CPUs the node offers to guests (`--vcpus`). */
  readonly physicalCpus: number;
  readonly root: RootPartition;
  readonly raft: Pick<RaftNode<unknown>, "status">;
  migrationsInFlight(): number;
  /** Bytes each VM's guest wrote to its virtual disks through this node (optional). */
  diskBytesWritten?(): ReadonlyMap<string, number>;
  /** This node's gateways and their counts since it started (optional). */
  gateways?(): readonly { readonly vm: string; readonly stats: { requests: number; resends: number; timeouts: number } }[];
  /** The cluster's nodes as this node's replica of the state knows them. */
  clusterNodes(): readonly { readonly state: string }[];
}

const EXIT_REASONS: readonly [keyof ExitCounts, string][] = [
  ["wfi", "wfi"], ["mmio", "mmio"], ["hypercall", "hypercall"], ["writeProtect", "write_protect"], ["eptViolation", "ept_violation"],
];

const MIB = 2 ** 20;

/** Raft's `Role` by its value (a const enum, which isolated modules cannot read from another package). */
const ROLE_NAMES = ["follower", "pre_candidate", "candidate", "leader"] as const;

function roleName(role: number): string {
  return ROLE_NAMES[role] ?? "follower";
}

export class FleetdMetrics {
  readonly registry = new Registry();
  // consolidation
  private readonly vmsRunning: Gauge;
  private readonly vcpusAssigned: Gauge;
  private readonly cpusPhysical: Gauge;
  private readonly memoryAssigned: Gauge;
  private readonly memoryTotal: Gauge;
  // hypervisor, per VM
  private readonly vmInfo: Gauge;
  private readonly vmInstructions: Counter;
  private readonly vmExits: Counter;
  private readonly vmWriteProtect: Counter;
  private readonly vmThrottle: Gauge;
  private readonly vmMemory: Gauge;
  private readonly vmVcpus: Gauge;
  // migration
  private readonly migrations: Counter;
  private readonly migrationDowntime: Histogram;
  private readonly migrationDuration: Histogram;
  private readonly migrationBytes: Histogram;
  private readonly migrationsInFlight: Gauge;
  private readonly vmDiskWritten: Counter;
  private readonly vmDirtyPages: Counter;
  private readonly gatewayRequests: Counter;
  private readonly gatewayResends: Counter;
  private readonly gatewayTimeouts: Counter;
  private readonly migrationRemaining: Gauge;
  private readonly migrationDirtyRate: Gauge;
  // failover
  private readonly failovers: Counter;
  private readonly failoverDuration: Histogram;
  private readonly nodesFailed: Counter;
  // raft
  private readonly raftTerm: Gauge;
  private readonly raftCommit: Gauge;
  private readonly raftApplied: Gauge;
  private readonly raftIsLeader: Gauge;
  private readonly raftRole: Gauge;
  private readonly raftMembers: Gauge;
  private readonly raftLeaderChanges: Counter;
  private readonly raftProposals: Histogram;
  // cluster (this node's replica)
  private readonly clusterNodes: Gauge;
  // api
  private readonly apiRequests: Counter;
  private readonly apiDuration: Histogram;

  /** The newest term whose leader's first entry this node applied (counted once). */
  private leaderTerm: number;
  /** Pages found dirty per VM, in the order last counted (oldest first; at most `DIRTY_PAGES_VMS_KEPT`). */
  private readonly dirtyPages = new Map<string, number>();

  constructor(private readonly source: MetricsSource) {
    const r = [this.registry];
    this.registry.setDefaultLabels({ node: source.node });
    const gauge = (name: string, help: string, labelNames: string[] = []): Gauge => new Gauge({ name, help, labelNames, registers: r });
    const counter = (name: string, help: string, labelNames: string[] = []): Counter => new Counter({ name, help, labelNames, registers: r });
    const histogram = (name: string, help: string, buckets: number[], labelNames: string[] = []): Histogram =>
      new Histogram({ name, help, buckets, labelNames, registers: r });

    new Gauge({ name: "hyperfleet_fleetd_build_info", help: "Always 1: the fleetd node and its Node.js version.", labelNames: ["nodejs"], registers: r })
      .set({ nodejs: process.versions.node }, 1);
    this.vmsRunning = gauge("hyperfleet_node_vms_running", "VMs running on this node (count).");
    this.vcpusAssigned = gauge("hyperfleet_node_vcpus_assigned", "vCPUs of the VMs this node holds, running, paused or created (count).");
    this.cpusPhysical = gauge("hyperfleet_node_cpus_physical", "CPUs this node offers to guests (--vcpus) (count).");
    this.memoryAssigned = gauge("hyperfleet_node_memory_assigned_bytes", "Guest memory promised to the VMs this node holds.");
    this.memoryTotal = gauge("hyperfleet_node_memory_total_bytes", "Guest memory this node can promise in all (--memory-mib).");

    this.vmInfo = gauge("hyperfleet_vm_info", "Always 1 per VM held by this node, with its state.", ["vm", "state"]);
    this.vmInstructions = counter("hyperfleet_vm_instructions_total", "Guest instructions retired by the VM's vCPUs on this node.", ["vm"]);
    this.vmExits = counter("hyperfleet_vm_exits_total", "VM exits by reason on this node.", ["vm", "reason"]);
    this.vmWriteProtect = counter("hyperfleet_vm_write_protect_faults_total", "Write-protect faults (dirty page tracking) of the VM on this node.", ["vm"]);
    this.vmThrottle = gauge("hyperfleet_vm_throttle_ratio", "Share of wall time the VM's vCPUs sit out (migration auto-converge), 0 to 1.", ["vm"]);
    this.vmMemory = gauge("hyperfleet_vm_memory_bytes", "Guest memory of the VM.", ["vm"]);
    this.vmVcpus = gauge("hyperfleet_vm_vcpus", "vCPUs of the VM (count).", ["vm"]);
    this.vmDiskWritten = counter("hyperfleet_vm_disk_bytes_written_total", "Bytes the VM's guest wrote to its virtual disks through this node.", ["vm"]);
    this.vmDirtyPages = counter("hyperfleet_vm_dirty_pages_total",
      "Pages the dirty log (EPT write protection) found written during the migrations of the VM this node sent and completed.", ["vm"]);
    // per VM, not per listening address: several gateways of one VM on a node add up
    this.gatewayRequests = counter("hyperfleet_gateway_requests_total", "Requests this node's gateways passed to the VM's service.", ["vm"]);
    this.gatewayResends = counter("hyperfleet_gateway_resends_total", "Requests this node's gateways sent again (no answer in time, e.g. during a switchover).", ["vm"]);
    this.gatewayTimeouts = counter("hyperfleet_gateway_timeouts_total", "Requests this node's gateways gave up on (the client was answered ERR timeout).", ["vm"]);

    this.migrations = counter("hyperfleet_migration_finished_total", "Migrations this node sent, by result and kind.", ["result", "kind"]);
    this.migrationDowntime = histogram("hyperfleet_migration_downtime_seconds", "Downtime of the successful migrations this node sent.",
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], ["kind"]);
    this.migrationDuration = histogram("hyperfleet_migration_duration_seconds", "Total time of the migrations this node sent, from start to result.",
      [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300], ["result", "kind"]);
    this.migrationBytes = histogram("hyperfleet_migration_sent_bytes", "Bytes sent by each migration this node sent.",
      [MIB, 4 * MIB, 16 * MIB, 64 * MIB, 256 * MIB, 1024 * MIB, 4096 * MIB], ["result", "kind"]);
    this.migrationsInFlight = gauge("hyperfleet_migration_in_flight", "Migrations this node is sending now (count).");
    this.migrationRemaining = gauge("hyperfleet_migration_remaining_pages", "Pages left to copy in the current round of a migration in flight.", ["vm"]);
    this.migrationDirtyRate = gauge("hyperfleet_migration_dirtied_pages_per_second", "Pages the guest dirties per second during a migration in flight.", ["vm"]);

    this.failovers = counter("hyperfleet_failover_vms_total", "VMs of failed nodes (or pending ones) this node, as leader, placed again, by result.", ["result"]);
    this.failoverDuration = histogram("hyperfleet_failover_duration_seconds", "From the failed owner's lease end to the VM's failover commit.",
      [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300]);
    this.nodesFailed = counter("hyperfleet_failover_nodes_failed_total", "Nodes this node, as leader, declared failed.");

    this.raftTerm = gauge("hyperfleet_raft_term", "Current Raft term.");
    this.raftCommit = gauge("hyperfleet_raft_commit_index", "Raft commit index.");
    this.raftApplied = gauge("hyperfleet_raft_applied_index", "Raft index applied to the cluster state.");
    this.raftIsLeader = gauge("hyperfleet_raft_is_leader", "1 when this node leads the Raft group.");
    this.raftRole = gauge("hyperfleet_raft_role_info", "Always 1, with this node's Raft role.", ["role"]);
    this.raftMembers = gauge("hyperfleet_raft_members", "Members of the Raft group (count).");
    this.raftLeaderChanges = counter("hyperfleet_raft_leader_changes_total", "Leader changes this node saw: terms whose leader's first entry it applied.");
    this.raftProposals = histogram("hyperfleet_raft_proposal_duration_seconds", "From proposal to applied result, for proposals made on this node.",
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]);

    this.clusterNodes = gauge("hyperfleet_cluster_nodes", "Nodes of the cluster by state, as this node's replica knows them (count).", ["state"]);

    this.apiRequests = counter("hyperfleet_api_requests_total", "Management API calls this node answered, by method and gRPC code.", ["method", "code"]);
    this.apiDuration = histogram("hyperfleet_api_request_duration_seconds", "Management API call duration.",
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], ["method"]);

    // every series of a bounded label set exists from the start (so rate() and increase() see the first event)
    for (const kind of LABEL_VALUES.kind) {
      this.migrationDowntime.zero({ kind });
      for (const result of LABEL_VALUES.result) {
        this.migrations.inc({ result, kind }, 0);
        this.migrationDuration.zero({ result, kind });
        this.migrationBytes.zero({ result, kind });
      }
    }
    for (const result of LABEL_VALUES.failover) this.failovers.inc({ result }, 0);

    // the terms in the log now were counted by the process that saw them (a restart replays them)
    this.leaderTerm = source.raft.status().term;
  }

  /** The exposition text, sampled now. */
  async text(): Promise<string> {
    await this.sample();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  close(): void {
    // nothing runs between scrapes
  }

  /** Times every proposal of `raft` (wraps its `propose`). */
  instrumentRaft<R>(raft: RaftNode<R>): void {
    const propose = raft.propose.bind(raft);
    raft.propose = (...args: Parameters<RaftNode<R>["propose"]>): Promise<R> => {
      const end = this.raftProposals.startTimer();
      return propose(...args).finally(() => end());
    };
  }

  apiRequest(method: string, code: GrpcStatusName, durationMs: number): void {
    this.apiRequests.inc({ method, code });
    this.apiDuration.observe({ method }, durationMs / 1000);
  }

  migrationProgress(vm: string, progress: Pick<ApiMigrationProgress, "pagesRemaining" | "dirtyPagesPerSecond">): void {
    this.migrationRemaining.set({ vm }, progress.pagesRemaining);
    this.migrationDirtyRate.set({ vm }, progress.dirtyPagesPerSecond);
  }

  /**
   * A migration this node sent has ended. `dirtyPages`: the pages its dirty log found written, i.e.
   * those of every round after the first (the first sends every page).
   */
  migrationFinished(vm: string, kind: "live" | "quick", result: ApiMigrationResult, dirtyPages = 0): void {
    const outcome = result.ok ? "succeeded" : result.cancelled ? "cancelled" : "failed";
    if (dirtyPages > 0) {
      // the VM has left this node: its count stays here (re-inserted as the newest), for the last VMs only
      const count = (this.dirtyPages.get(vm) ?? 0) + dirtyPages;
      this.dirtyPages.delete(vm);
      this.dirtyPages.set(vm, count);
      for (const oldest of this.dirtyPages.keys()) {
        if (this.dirtyPages.size <= DIRTY_PAGES_VMS_KEPT) break;
        this.dirtyPages.delete(oldest);
      }
    }
    this.migrations.inc({ result: outcome, kind });
    if (result.ok) this.migrationDowntime.observe({ kind }, result.downtimeMs / 1000);
    if (result.totalMs > 0) this.migrationDuration.observe({ result: outcome, kind }, result.totalMs / 1000);
    if (result.bytesSent > 0) this.migrationBytes.observe({ result: outcome, kind }, result.bytesSent);
    this.migrationRemaining.remove({ vm });
    this.migrationDirtyRate.remove({ vm });
  }

  /** A failover proposal's result: placed on a node (`sinceLeaseEndMs` after its owner's lease ended) or left pending. */
  failover(placed: boolean, sinceLeaseEndMs: number | null): void {
    this.failovers.inc({ result: placed ? "placed" : "pending" });
    if (placed && sinceLeaseEndMs !== null) this.failoverDuration.observe(Math.max(0, sinceLeaseEndMs) / 1000);
  }

  nodeFailed(): void {
    this.nodesFailed.inc();
  }

  /**
   * This node applied the empty entry a leader appends as its term begins: a leader change (the first
   * of a term counts; the terms replayed after a restart do not).
   */
  leaderTermBegan(term: number): void {
    if (term <= this.leaderTerm) return;
    this.leaderTerm = term;
    this.raftLeaderChanges.inc();
  }

  private async sample(): Promise<void> {
    const { root } = this.source;
    // the workers' stats first; then every gauge is set in one synchronous pass, so a scrape that
    // runs alongside another never sees a series missing
    const children = root.list();
    const stats = await Promise.all(children.map((c) =>
      c.worker === undefined || c.state === "halted" ? Promise.resolve(null) : c.worker.stats().catch(() => null)));
    this.vmsRunning.set(children.filter((c) => c.state === "running").length);
    this.vcpusAssigned.set(children.reduce((n, c) => n + c.spec.vcpus, 0));
    this.cpusPhysical.set(this.source.physicalCpus);
    this.memoryAssigned.set(root.committedBytes);
    this.memoryTotal.set(root.committedBytes + root.availableBytes);
    this.migrationsInFlight.set(this.source.migrationsInFlight());

    for (const m of [this.vmInfo, this.vmInstructions, this.vmExits, this.vmWriteProtect, this.vmThrottle, this.vmMemory, this.vmVcpus, this.vmDiskWritten, this.vmDirtyPages]) m.reset();
    for (const [vm, bytes] of this.source.diskBytesWritten?.() ?? []) this.vmDiskWritten.inc({ vm }, bytes);
    for (const [vm, pages] of this.dirtyPages) this.vmDirtyPages.inc({ vm }, pages);
    for (const m of [this.gatewayRequests, this.gatewayResends, this.gatewayTimeouts]) m.reset();
    for (const g of this.source.gateways?.() ?? []) {
      this.gatewayRequests.inc({ vm: g.vm }, g.stats.requests);
      this.gatewayResends.inc({ vm: g.vm }, g.stats.resends);
      this.gatewayTimeouts.inc({ vm: g.vm }, g.stats.timeouts);
    }
    children.forEach((c, i) => {
      const vm = c.spec.name;
      this.vmInfo.set({ vm, state: c.state }, 1);
      this.vmMemory.set({ vm }, c.spec.memoryBytes);
      this.vmVcpus.set({ vm }, c.spec.vcpus);
      const s = stats[i];
      if (s === null || s === undefined) return;
      this.vmInstructions.inc({ vm }, s.instructions);
      for (const [field, reason] of EXIT_REASONS) this.vmExits.inc({ vm, reason }, s.exits[field]);
      this.vmWriteProtect.inc({ vm }, s.exits.writeProtect);
      this.vmThrottle.set({ vm }, s.throttlePercent / 100);
    });

    const raft: RaftNodeStatus = this.source.raft.status();
    this.raftTerm.set(raft.term);
    this.raftCommit.set(raft.commit);
    this.raftApplied.set(raft.applied);
    this.raftIsLeader.set(roleName(raft.role) === "leader" && raft.state === "running" ? 1 : 0);
    this.raftRole.reset();
    this.raftRole.set({ role: roleName(raft.role) }, 1);
    this.raftMembers.set(raft.confState.voters.length + raft.confState.learners.length);

    this.clusterNodes.reset();
    const byState = new Map<string, number>(LABEL_VALUES.nodeState.map((s) => [s, 0]));
    for (const n of this.source.clusterNodes()) byState.set(n.state, (byState.get(n.state) ?? 0) + 1);
    for (const [state, count] of byState) this.clusterNodes.set({ state }, count);
  }
}
