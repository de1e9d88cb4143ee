/**
 * The management API (`Backend`) of one node over the replicated cluster state. Reads come from this
 * node's applied copy of the state; writes propose a cluster command and answer with its result
 * (a rejection becomes the matching `ApiError`). The node wraps it in `forwardingBackend`, so writes
 * reach this code only on the leader.
 */
import { randomBytes } from "node:crypto";
import type {
  AddMemberRequest, Backend, CallContext, CancelMigrationRequest, ClusterStatus, ConsoleOpenRequest, ConsoleOutput, CreateVmRequest,
  DeleteVmRequest, DeleteVmResponse, GetMigrationRequest, GetVmRequest, ListMigrationsRequest, ListMigrationsResponse, ListNodesRequest,
  ListNodesResponse, ListVmsRequest, ListVmsResponse, Member, MembersResponse, MigrateRequest, MigrateResponse, Migration, MigrationUpdate,
  Node, PromoteMemberRequest, RemoveMemberRequest, RemoveMemberResponse, RestoreVmRequest, ResumeNodeRequest, SaveVmRequest, SaveVmResponse, SetVmKvpRequest, StopVmRequest, Vm,
  VmEvent, VmState, WatchEventsRequest, DrainNodeRequest,
} from "@hyperfleet/api";
import { ApiError } from "@hyperfleet/api";
import type { ClusterCommand, ClusterSuccess, MigrationRecord, NodeView, VmRecord } from "@hyperfleet/cluster";
import type { GuestView } from "./devices.js";
import type { FleetdNode } from "./node.js";

export function vmState(vm: VmRecord): VmState {
  if (vm.owner === null) return "VM_STATE_PENDING";
  if (vm.actual === null || vm.actual.epoch !== vm.epoch) {
    return vm.desiredState === "running" ? "VM_STATE_STARTING" : vm.desiredState === "saved" ? "VM_STATE_SAVED" : "VM_STATE_STOPPED";
  }
  switch (vm.actual.state) {
    case "starting": return "VM_STATE_STARTING";
    case "running": return "VM_STATE_RUNNING";
    case "paused": return "VM_STATE_PAUSED";
    case "stopping": return "VM_STATE_STOPPING";
    case "stopped": return "VM_STATE_STOPPED";
    case "crashed": return "VM_STATE_CRASHED";
    case "saved": return "VM_STATE_SAVED";
  }
}

function apiDesiredState(d: VmRecord["desiredState"]): Vm["desiredState"] {
  switch (d) {
    case "running": return "VM_DESIRED_STATE_RUNNING";
    case "paused": return "VM_DESIRED_STATE_PAUSED";
    case "saved": return "VM_DESIRED_STATE_SAVED";
    case "stopped": return "VM_DESIRED_STATE_STOPPED";
  }
}

/**
 * The API's view of a VM. `guest`: what the owner's devices say of the guest (health and KVP);
 * "unknown" and no values when not given.
 */
export function toApiVm(vm: VmRecord, migration: MigrationRecord | null, guest: GuestView = UNKNOWN_GUEST): Vm {
  return {
    name: vm.id,
    spec: {
      memoryBytes: vm.spec.memoryBytes,
      vcpus: vm.spec.vcpus,
      image: vm.spec.image,
      bootMode: vm.spec.bootMode === "sbi" ? "BOOT_MODE_SBI" : "BOOT_MODE_BARE",
      bootargs: vm.spec.bootargs,
      antiAffinityGroup: vm.spec.antiAffinityGroup ?? "",
      priority: vm.spec.priority === "high" ? "VM_PRIORITY_HIGH" : vm.spec.priority === "low" ? "VM_PRIORITY_LOW" : "VM_PRIORITY_NORMAL",
      restartPolicy: vm.spec.restartPolicy === "do-not-restart" ? "RESTART_POLICY_DO_NOT_RESTART" : "RESTART_POLICY_RESTART",
      diskBytes: vm.spec.disks.map((d) => d.sizeBytes),
      noIntegration: !vm.spec.integration,
      nicMacs: vm.spec.nics.map((n) => n.mac),
    },
    desiredState: apiDesiredState(vm.desiredState),
    state: vmState(vm),
    owner: vm.owner ?? "",
    epoch: vm.epoch,
    pendingReason: vm.pendingReason ?? "",
    migrationId: migration === null ? "" : String(migration.migrationId),
    createdAtMs: vm.createdAtMs,
    savedState: vm.savedState ?? "",
    guestHealth: guest.health,
    guestKvp: { ...guest.kvp },
    hostKvp: { ...vm.hostKvp },
  };
}

const UNKNOWN_GUEST: GuestView = Object.freeze({ health: "unknown", kvp: Object.freeze({}) });

function toApiNode(n: NodeView, nowMs: number, runningVms: number): Node {
  return {
    id: n.id,
    apiAddress: n.apiAddress,
    state: n.state === "active" ? "NODE_STATE_ACTIVE" : n.state === "draining" ? "NODE_STATE_DRAINING" : n.state === "drained" ? "NODE_STATE_DRAINED" : "NODE_STATE_FAILED",
    capacity: { memoryBytes: n.capacity.memoryBytes, vcpus: n.capacity.vcpus },
    usage: { memoryBytes: n.usage.memoryBytes, vcpus: n.usage.vcpus, vms: n.usage.vms, runningVms, incomingMigrations: n.usage.incoming },
    leaseUntilMs: n.leaseUntilMs,
    leaseLive: n.leaseUntilMs > nowMs,
    labels: { ...n.labels },
  };
}

/** How long Save waits for the owner to write the saved state; Restore, for the VM to run again. */
const SAVE_TIMEOUT_MS = 120_000;
const RESTORE_TIMEOUT_MS = 60_000;
const POLL_MS = 50;
/** A graceful stop leaves this much of the call's deadline for turning the VM off. */
const STOP_DEADLINE_MARGIN_MS = 2000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
/** A learner at most this many entries behind the commit index may be promoted. */
const PROMOTE_LAG_MAX = 100;

function runningVmsPerActiveNode(vms: readonly VmRecord[], nodes: readonly NodeView[]): number {
  const active = nodes.filter((n) => n.state === "active").length;
  return active === 0 ? 0 : vms.filter((vm) => vmState(vm) === "VM_STATE_RUNNING").length / active;
}

export function emptyProgress(): Migration["progress"] {
  return {
    phase: "MIGRATION_PHASE_HANDSHAKE", round: 0, pagesRemaining: 0, dirtyPagesPerSecond: 0, throughputBytesPerSecond: 0, expectedDowntimeMs: 0, etaMs: 0,
    throttlePercent: 0,
  };
}

export class NodeBackend implements Backend {
  constructor(private readonly node: FleetdNode) {}

  private vmOrThrow(name: string): VmRecord {
    const vm = this.node.state.getVm(name);
    if (vm === null) throw new ApiError("NOT_FOUND", `vm ${name} does not exist`);
    return vm;
  }

  private view(name: string): Vm {
    const vm = this.vmOrThrow(name);
    return toApiVm(vm, this.node.state.getMigration(name), vm.owner === this.node.id ? this.node.devices.guest(name) : UNKNOWN_GUEST);
  }

  private async command<T extends ClusterSuccess["type"]>(command: ClusterCommand & { type: T }): Promise<Extract<ClusterSuccess, { type: T }>> {
    return (await this.node.write(command)) as Extract<ClusterSuccess, { type: T }>;
  }

  async createVm(r: CreateVmRequest): Promise<Vm> {
    await this.command({
      type: "createVm",
      atMs: Date.now(),
      vm: r.name,
      spec: {
        memoryBytes: r.memoryBytes,
        vcpus: r.vcpus === 0 ? 1 : r.vcpus,
        image: r.image,
        bootMode: r.bootMode === "BOOT_MODE_SBI" ? "sbi" : "bare",
        bootargs: r.bootargs,
        antiAffinityGroup: r.antiAffinityGroup === "" ? null : r.antiAffinityGroup,
        priority: r.priority === "VM_PRIORITY_HIGH" ? "high" : r.priority === "VM_PRIORITY_LOW" ? "low" : "normal",
        restartPolicy: r.restartPolicy === "RESTART_POLICY_DO_NOT_RESTART" ? "do-not-restart" : "restart",
        disks: (r.diskBytes ?? []).map((sizeBytes) => ({ sizeBytes })),
        integration: r.noIntegration !== true,
        nics: (r.nicMacs !== undefined && r.nicMacs.length > 0 ? r.nicMacs : this.assignMacs(r.nics ?? 0)).map((mac) => ({ mac })),
      },
      desiredState: r.start ? "running" : "stopped",
    });
    return this.view(r.name);
  }

  /**
   * `count` MACs for new NICs: "02:48:", then four random bytes, the first below 0xff (02:48:ff:... are
   * the gateways'), none in use in the cluster now. A collision with a VM created meanwhile is refused
   * by the cluster state (ALREADY_EXISTS, naming the MAC).
   */
  private assignMacs(count: number): string[] {
    const taken = new Set(this.node.state.listVms().flatMap((vm) => vm.spec.nics.map((n) => n.mac)));
    const out: string[] = [];
    for (let attempt = 0; out.length < count; attempt++) {
      if (attempt >= 1000) throw new ApiError("RESOURCE_EXHAUSTED", `no free NIC MAC found in ${attempt} tries`);
      const b = randomBytes(4);
      if (b[0] === 0xff) continue;
      const mac = `02:48:${[...b].map((x) => x.toString(16).padStart(2, "0")).join(":")}`;
      if (!taken.has(mac)) {
        taken.add(mac);
        out.push(mac);
      }
    }
    return out;
  }

  private async desire(name: string, desiredState: "running" | "stopped" | "paused", savedState: string | null = null): Promise<Vm> {
    await this.command({ type: "setDesiredState", atMs: Date.now(), vm: name, desiredState, savedState });
    return this.view(name);
  }

  /** Polls this node's copy of the state until `done(vm)` or the time is up; the VM as it then is. */
  private async waitFor(name: string, done: (vm: VmRecord) => boolean, timeoutMs: number): Promise<VmRecord> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const vm = this.vmOrThrow(name);
      if (done(vm) || Date.now() >= until) return vm;
      await sleep(POLL_MS);
    }
  }

  startVm(r: { name: string }): Promise<Vm> {
    const vm = this.vmOrThrow(r.name);
    if (vm.desiredState === "running" || vm.desiredState === "paused") {
      const hint = vm.actual?.state === "crashed" && vm.actual.epoch === vm.epoch ? ": it crashed at start; stop it, then start it again" : "";
      throw new ApiError("FAILED_PRECONDITION", `vm ${r.name} is already ${vm.desiredState === "paused" ? "paused (resume it)" : "running"}${hint}`);
    }
    return this.desire(r.name, "running");
  }

  /**
   * Stop: unless `force`, the guest of a running VM is first asked to shut down through its shutdown
   * integration service (when it has the channel open) and given `timeoutMs` (0: this node's
   * --guest-shutdown-timeout-ms, cut short by the call's deadline) to power off; then the desired
   * state becomes stopped and the owner turns the VM off, as a forced stop does at once.
   */
  async stopVm(r: StopVmRequest, context?: CallContext): Promise<Vm> {
    const vm = this.vmOrThrow(r.name);
    if (r.force !== true && vm.owner !== null && vm.desiredState === "running" && vm.actual?.epoch === vm.epoch && vm.actual.state === "running") {
      let timeoutMs = r.timeoutMs > 0 ? r.timeoutMs : this.node.config.guestShutdownTimeoutMs;
      const deadlineMs = context?.deadlineMs ?? null;
      if (deadlineMs !== null) timeoutMs = Math.min(timeoutMs, Math.max(0, deadlineMs - Date.now() - STOP_DEADLINE_MARGIN_MS));
      if (timeoutMs > 0) await this.node.shutdownGuest(vm.owner, r.name, timeoutMs);
    }
    return this.desire(r.name, "stopped");
  }

  pauseVm(r: { name: string }): Promise<Vm> {
    const vm = this.vmOrThrow(r.name);
    if (vm.desiredState !== "running") throw new ApiError("FAILED_PRECONDITION", `vm ${r.name} is ${vm.desiredState}: only a running VM can be paused`);
    return this.desire(r.name, "paused");
  }

  resumeVm(r: { name: string }): Promise<Vm> {
    const vm = this.vmOrThrow(r.name);
    if (vm.desiredState !== "paused") {
      throw new ApiError("FAILED_PRECONDITION", `vm ${r.name} is ${vm.desiredState}, not paused${vm.desiredState === "running" ? "" : ": start it instead"}`);
    }
    return this.desire(r.name, "running");
  }

  async saveVm(r: SaveVmRequest): Promise<SaveVmResponse> {
    const vm = this.vmOrThrow(r.name);
    if (vm.owner === null) throw new ApiError("FAILED_PRECONDITION", `vm ${r.name} has no owner (pending): nothing runs to save`);
    const flight = this.node.state.getMigration(r.name);
    if (flight !== null) throw new ApiError("FAILED_PRECONDITION", `vm ${r.name} has a migration in flight (id ${flight.migrationId}): wait for it or cancel it`);
    await this.command({ type: "setDesiredState", atMs: Date.now(), vm: r.name, desiredState: "saved", savedState: r.savedState });
    const { epoch, owner } = vm;
    const after = await this.waitFor(r.name, (v) => v.epoch !== epoch || v.desiredState !== "saved" || (v.actual !== null && v.actual.epoch === epoch && v.actual.state !== "running" && v.actual.state !== "paused" && v.actual.state !== "starting"), SAVE_TIMEOUT_MS);
    if (after.epoch !== epoch || after.actual?.state !== "saved" || after.actual.epoch !== epoch) {
      throw new ApiError("ABORTED", `vm ${r.name} was not saved: it is ${vmState(after)} (desired ${after.desiredState}) on ${after.owner ?? "no node"}`);
    }
    const answer = await this.node.request(owner, "saved-state", new TextEncoder().encode(JSON.stringify({ vm: r.name, name: r.savedState, verify: false })));
    return { vm: this.view(r.name), savedState: r.savedState, sizeBytes: Number(answer["sizeBytes"]) };
  }

  async restoreVm(r: RestoreVmRequest): Promise<Vm> {
    const vm = this.vmOrThrow(r.name);
    if (vm.owner === null) throw new ApiError("FAILED_PRECONDITION", `vm ${r.name} has no owner (pending)`);
    if (vm.desiredState === "running" || vm.desiredState === "paused") {
      throw new ApiError("FAILED_PRECONDITION", `vm ${r.name} is ${vm.desiredState}: stop or save it before restoring a saved state`);
    }
    // The owner holds the saved states: it says whether this one exists and is whole.
    await this.node.request(vm.owner, "saved-state", new TextEncoder().encode(JSON.stringify({ vm: r.name, name: r.savedState, verify: true })));
    await this.command({ type: "setDesiredState", atMs: Date.now(), vm: r.name, desiredState: "running", savedState: r.savedState });
    const { epoch } = vm;
    const after = await this.waitFor(r.name, (v) => v.epoch !== epoch || v.desiredState !== "running" || (v.actual !== null && v.actual.epoch === epoch && (v.actual.state === "running" || v.actual.state === "crashed")), RESTORE_TIMEOUT_MS);
    if (after.epoch === epoch && after.actual?.state === "crashed") {
      throw new ApiError("FAILED_PRECONDITION", `vm ${r.name} did not start from saved state ${r.savedState} on ${vm.owner} (its log says why)`);
    }
    return this.view(r.name);
  }

  /** A host KVP value for the guest: committed in the cluster state; the node that runs the VM sends it on. */
  async setVmKvp(r: SetVmKvpRequest): Promise<Vm> {
    await this.command({ type: "setVmKvp", atMs: Date.now(), vm: r.name, key: r.key, value: r.delete ? null : (r.value ?? "") });
    return this.view(r.name);
  }

  async deleteVm(r: DeleteVmRequest): Promise<DeleteVmResponse> {
    const vm = this.vmOrThrow(r.name);
    if (!r.force && (vm.desiredState === "running" || vm.desiredState === "paused")) {
      throw new ApiError("FAILED_PRECONDITION", `vm ${r.name} is ${vm.desiredState}: stop it first, or delete it with force`);
    }
    await this.command({ type: "deleteVm", atMs: Date.now(), vm: r.name });
    // its disks go from cluster storage (a node that still runs it closes them as it turns it off)
    if (vm.spec.disks.length > 0) await this.node.devices.deleteDisks(r.name).catch((e: unknown) => this.node.warn(`vm ${r.name}: its disks were not removed: ${e instanceof Error ? e.message : String(e)}`));
    return {};
  }

  /**
   * The VM; its guest health and KVP values come from its owner's devices: this node's own when it
   * owns the VM, else asked of the owner (within 1 s; "unknown" if it does not answer).
   */
  async getVm(r: GetVmRequest): Promise<Vm> {
    const vm = this.vmOrThrow(r.name);
    if (vm.owner === null || vm.owner === this.node.id) return this.view(r.name);
    const guest = await this.node.guestOf(vm.owner, r.name);
    return toApiVm(this.vmOrThrow(r.name), this.node.state.getMigration(r.name), guest);
  }

  async listVms(r: ListVmsRequest): Promise<ListVmsResponse> {
    const records = this.node.state.listVms(r.node === "" ? {} : { node: r.node });
    // guest health and KVP of the VMs this node owns; "unknown" for the others (GetVm asks their owner)
    const vms = records.map((vm) => toApiVm(vm, this.node.state.getMigration(vm.id), vm.owner === this.node.id ? this.node.devices.guest(vm.id) : UNKNOWN_GUEST))
      .filter((vm) => r.state === "VM_STATE_UNSPECIFIED" || vm.state === r.state);
    return { vms };
  }

  watchVmEvents(r: WatchEventsRequest, context: CallContext): AsyncIterable<VmEvent> {
    if (r.vm !== "") this.vmOrThrow(r.vm);
    return this.node.events.watch(r.vm, context.signal);
  }

  async *attachConsole(r: ConsoleOpenRequest, _input: AsyncIterable<Uint8Array>, context: CallContext): AsyncIterable<ConsoleOutput> {
    this.vmOrThrow(r.vm);
    const child = this.node.root.get(r.vm);
    if (child === undefined) throw new ApiError("FAILED_PRECONDITION", `vm ${r.vm} does not run on node ${this.node.id}: attach to its owner`);
    yield { data: child.consoleHistory(), history: true };
    const queue: Uint8Array[] = [];
    let wake: (() => void) | undefined;
    const off = child.onConsole((bytes) => {
      if (queue.length < 1024) queue.push(bytes);
      wake?.();
    });
    const aborted = new Promise<void>((resolve) => context.signal.addEventListener("abort", () => resolve(), { once: true }));
    try {
      while (!context.signal.aborted) {
        const next = queue.shift();
        if (next !== undefined) {
          yield { data: next, history: false };
          continue;
        }
        await Promise.race([new Promise<void>((resolve) => (wake = resolve)), aborted]);
      }
    } finally {
      off();
    }
  }

  async migrate(r: MigrateRequest): Promise<MigrateResponse> {
    return this.node.startMigration(r);
  }

  cancelMigration(r: CancelMigrationRequest): Promise<Migration> {
    return this.node.cancelMigration(r.migrationId);
  }

  watchMigration(r: { migrationId: string }, context: CallContext): AsyncIterable<MigrationUpdate> {
    return this.node.watchMigration(r.migrationId, context.signal);
  }

  async getMigration(r: GetMigrationRequest): Promise<Migration> {
    const found = this.node.migrations().find((m) => m.id === r.migrationId);
    if (found === undefined) throw new ApiError("NOT_FOUND", `migration ${r.migrationId} is not known to node ${this.node.id}`);
    return found;
  }

  async listMigrations(r: ListMigrationsRequest): Promise<ListMigrationsResponse> {
    return { migrations: this.node.migrations().filter((m) => (r.vm === "" || m.vm === r.vm) && (!r.activeOnly || m.result === null)) };
  }

  async listNodes(r: ListNodesRequest): Promise<ListNodesResponse> {
    const now = Date.now();
    const running = new Map<string, number>();
    for (const vm of this.node.state.listVms()) {
      if (vm.owner !== null && vmState(vm) === "VM_STATE_RUNNING") running.set(vm.owner, (running.get(vm.owner) ?? 0) + 1);
    }
    const nodes = this.node.state.listNodes().map((n) => toApiNode(n, now, running.get(n.id) ?? 0))
      .filter((n) => r.state === "NODE_STATE_UNSPECIFIED" || n.state === r.state);
    return { nodes };
  }

  private nodeView(id: string): Node {
    const n = this.node.state.listNodes().find((x) => x.id === id);
    if (n === undefined) throw new ApiError("NOT_FOUND", `node ${id} is not registered`);
    const running = this.node.state.listVms({ node: id }).filter((vm) => vmState(vm) === "VM_STATE_RUNNING").length;
    return toApiNode(n, Date.now(), running);
  }

  async drainNode(r: DrainNodeRequest): Promise<Node> {
    const before = this.nodeView(r.node);
    if (before.state === "NODE_STATE_DRAINING" || before.state === "NODE_STATE_DRAINED") return before;
    await this.command({ type: "setNodeState", atMs: Date.now(), node: r.node, state: "draining" });
    return this.nodeView(r.node);
  }

  async resumeNode(r: ResumeNodeRequest): Promise<Node> {
    this.nodeView(r.node);
    await this.command({ type: "setNodeState", atMs: Date.now(), node: r.node, state: "active" });
    return this.nodeView(r.node);
  }

  async clusterStatus(): Promise<ClusterStatus> {
    const status = this.node.raft.status();
    const figures = this.node.state.consolidation();
    const leader = this.node.raft.leader();
    const leaderNode = leader === null ? null : this.node.state.getNode(leader.id);
    const vms = this.node.state.listVms();
    return {
      clusterId: this.node.config.clusterId,
      nodeId: this.node.id,
      leaderId: leader?.id ?? "",
      leaderApiAddress: leaderNode?.apiAddress ?? "",
      term: status.term,
      commitIndex: status.commit,
      appliedIndex: status.applied,
      members: this.members(),
      nodeCount: figures.nodeCount,
      vmCount: figures.vmCount,
      runningVmCount: vms.filter((vm) => vmState(vm) === "VM_STATE_RUNNING").length,
      migrationsInFlight: figures.migrationsInFlight,
      // running VMs per active node (the state machine's figure counts every placed VM)
      consolidation: { vmsPerNode: runningVmsPerActiveNode(vms, this.node.state.listNodes()), vcpusPerPcpu: figures.vcpusPerPcpu, memoryCommittedRatio: figures.memoryCommittedRatio },
    };
  }

  /**
   * The members with their roles. On the leader, `matchIndex` and `reachable` are what it knows of
   * each member's replication (heard from within an election timeout); another node reports its own
   * and the leader's as reachable, and match index 0 for the others, which it cannot know.
   */
  private members(): Member[] {
    const status = this.node.raft.status();
    const leader = this.node.raft.leader();
    const learners = new Set(status.confState.learners);
    return status.members.map((m) => {
      const progress = status.progress?.[m.id];
      return {
        id: m.id,
        raftAddress: m.peerAddress,
        apiAddress: this.node.state.getNode(m.id)?.apiAddress ?? "",
        role: leader?.id === m.id ? "MEMBER_ROLE_LEADER" : learners.has(m.id) ? "MEMBER_ROLE_LEARNER" : "MEMBER_ROLE_FOLLOWER",
        matchIndex: progress?.match ?? (m.id === status.id ? status.lastIndex : 0),
        reachable: progress !== undefined ? m.id === status.id || progress.recentActive : m.id === status.id || m.id === leader?.id,
      };
    });
  }

  async listMembers(): Promise<MembersResponse> {
    return { members: this.members() };
  }

  private member(id: string): Member {
    const m = this.members().find((x) => x.id === id);
    if (m === undefined) throw new ApiError("NOT_FOUND", `${id} is not a member of cluster ${this.node.config.clusterId}`);
    return m;
  }

  /** Adds a learner: it receives the log (a snapshot first) but does not vote until promoted. */
  async addMember(r: AddMemberRequest): Promise<Member> {
    if (this.members().some((m) => m.id === r.id)) throw new ApiError("ALREADY_EXISTS", `${r.id} is already a member of cluster ${this.node.config.clusterId}`);
    try {
      await this.node.raft.addLearner({ id: r.id, peerAddress: r.raftAddress, clientAddress: r.apiAddress });
    } catch (e) {
      throw this.node.apiError(e);
    }
    return this.member(r.id);
  }

  /** Makes a learner a voter (once it has caught up: the leader refuses a learner far behind). */
  async promoteMember(r: PromoteMemberRequest): Promise<Member> {
    const m = this.member(r.id);
    if (m.role !== "MEMBER_ROLE_LEARNER") throw new ApiError("FAILED_PRECONDITION", `${r.id} already votes`);
    // A voter that cannot keep up would weaken the quorum: promote only a learner that caught up.
    const status = this.node.raft.status();
    const progress = status.progress?.[r.id];
    if (progress === undefined || !progress.recentActive || progress.match + PROMOTE_LAG_MAX < status.commit) {
      throw new ApiError("FAILED_PRECONDITION", `${r.id} has not caught up (it holds the log to index ${progress?.match ?? 0}, the cluster committed ${status.commit}${progress?.recentActive === false ? "; not heard from lately" : ""}): promote it once it has`);
    }
    try {
      await this.node.raft.promote(r.id);
    } catch (e) {
      throw this.node.apiError(e);
    }
    return this.member(r.id);
  }

  /**
   * Removes a member from Raft and its node from the cluster state. Refused while the node owns VMs
   * (drain it first) and for the last voter.
   */
  async removeMember(r: RemoveMemberRequest): Promise<RemoveMemberResponse> {
    const m = this.member(r.id);
    const owned = this.node.state.listVms({ node: r.id });
    if (owned.length > 0) throw new ApiError("FAILED_PRECONDITION", `node ${r.id} still owns ${owned.length} VM(s): drain it first`);
    const voters = this.members().filter((x) => x.role !== "MEMBER_ROLE_LEARNER");
    if (m.role !== "MEMBER_ROLE_LEARNER" && voters.length <= 1) throw new ApiError("FAILED_PRECONDITION", `${r.id} is the last voter`);
    try {
      await this.node.raft.remove(r.id);
    } catch (e) {
      throw this.node.apiError(e);
    }
    if (this.node.state.getNode(r.id) !== null) await this.command({ type: "removeNode", atMs: Date.now(), node: r.id });
    return {};
  }
}
