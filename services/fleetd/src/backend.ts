/**
 * The management API (`Backend`) of one node over the replicated cluster state. Reads come from this
 * node's applied copy of the state; writes propose a cluster command and answer with its result
 * (a rejection becomes the matching `ApiError`). The node wraps it in `forwardingBackend`, so writes
 * reach this code only on the leader.
 */
import type {
  AddMemberRequest, Backend, CallContext, CancelMigrationRequest, ClusterStatus, ConsoleOpenRequest, ConsoleOutput, CreateVmRequest,
  DeleteVmRequest, DeleteVmResponse, GetMigrationRequest, GetVmRequest, ListMigrationsRequest, ListMigrationsResponse, ListNodesRequest,
  ListNodesResponse, ListVmsRequest, ListVmsResponse, Member, MembersResponse, MigrateRequest, MigrateResponse, Migration, MigrationUpdate,
  Node, RemoveMemberResponse, SaveVmResponse, Vm, VmEvent, VmState,
} from "@hyperfleet/api";
import { ApiError } from "@hyperfleet/api";
import type { ClusterCommand, ClusterSuccess, MigrationRecord, NodeView, VmRecord } from "@hyperfleet/cluster";
import type { FleetdNode } from "./node.js";

export function vmState(vm: VmRecord): VmState {
  if (vm.owner === null) return "VM_STATE_PENDING";
  if (vm.actual === null || vm.actual.epoch !== vm.epoch) return vm.desiredState === "running" ? "VM_STATE_STARTING" : "VM_STATE_STOPPED";
  switch (vm.actual.state) {
    case "starting": return "VM_STATE_STARTING";
    case "running": return "VM_STATE_RUNNING";
    case "paused": return "VM_STATE_PAUSED";
    case "stopping": return "VM_STATE_STOPPING";
    case "stopped": return "VM_STATE_STOPPED";
    case "crashed": return "VM_STATE_CRASHED";
  }
}

export function toApiVm(vm: VmRecord, migration: MigrationRecord | null): Vm {
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
    },
    desiredState: vm.desiredState === "running" ? "VM_DESIRED_STATE_RUNNING" : vm.desiredState === "paused" ? "VM_DESIRED_STATE_PAUSED" : "VM_DESIRED_STATE_STOPPED",
    state: vmState(vm),
    owner: vm.owner ?? "",
    epoch: vm.epoch,
    pendingReason: vm.pendingReason ?? "",
    migrationId: migration === null ? "" : String(migration.migrationId),
    createdAtMs: vm.createdAtMs,
  };
}

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

function unimplemented(what: string): ApiError {
  return new ApiError("FAILED_PRECONDITION", `${what} is not available in this version of fleetd`);
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
    return toApiVm(this.vmOrThrow(name), this.node.state.getMigration(name));
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
      },
      desiredState: r.start ? "running" : "stopped",
    });
    return this.view(r.name);
  }

  private async desire(name: string, desiredState: "running" | "stopped" | "paused"): Promise<Vm> {
    await this.command({ type: "setDesiredState", atMs: Date.now(), vm: name, desiredState });
    return this.view(name);
  }

  startVm(r: { name: string }): Promise<Vm> {
    return this.desire(r.name, "running");
  }

  stopVm(r: { name: string }): Promise<Vm> {
    return this.desire(r.name, "stopped");
  }

  pauseVm(r: { name: string }): Promise<Vm> {
    return this.desire(r.name, "paused");
  }

  resumeVm(r: { name: string }): Promise<Vm> {
    return this.desire(r.name, "running");
  }

  saveVm(): Promise<SaveVmResponse> {
    return Promise.reject(unimplemented("SaveVm"));
  }

  restoreVm(): Promise<Vm> {
    return Promise.reject(unimplemented("RestoreVm"));
  }

  async deleteVm(r: DeleteVmRequest): Promise<DeleteVmResponse> {
    await this.command({ type: "deleteVm", atMs: Date.now(), vm: r.name });
    return {};
  }

  async getVm(r: GetVmRequest): Promise<Vm> {
    return this.view(r.name);
  }

  async listVms(r: ListVmsRequest): Promise<ListVmsResponse> {
    const records = this.node.state.listVms(r.node === "" ? {} : { node: r.node });
    const vms = records.map((vm) => toApiVm(vm, this.node.state.getMigration(vm.id)))
      .filter((vm) => r.state === "VM_STATE_UNSPECIFIED" || vm.state === r.state);
    return { vms };
  }

  // eslint-disable-next-line require-yield
  async *watchVmEvents(): AsyncIterable<VmEvent> {
    throw unimplemented("WatchEvents");
  }

  async *attachConsole(r: ConsoleOpenRequest, _input: AsyncIterable<Uint8Array>, context: CallContext): AsyncIterable<ConsoleOutput> {
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

  drainNode(): Promise<Node> {
    return Promise.reject(unimplemented("DrainNode"));
  }

  resumeNode(): Promise<Node> {
    return Promise.reject(unimplemented("ResumeNode"));
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
      consolidation: { vmsPerNode: figures.vmsPerNode, vcpusPerPcpu: figures.vcpusPerPcpu, memoryCommittedRatio: figures.memoryCommittedRatio },
    };
  }

  private members(): Member[] {
    const status = this.node.raft.status();
    const leader = this.node.raft.leader();
    const learners = new Set(status.confState.learners);
    return status.members.map((m) => ({
      id: m.id,
      raftAddress: m.peerAddress,
      apiAddress: this.node.state.getNode(m.id)?.apiAddress ?? "",
      role: leader?.id === m.id ? "MEMBER_ROLE_LEADER" : learners.has(m.id) ? "MEMBER_ROLE_LEARNER" : "MEMBER_ROLE_FOLLOWER",
      matchIndex: 0,
      reachable: true,
    }));
  }

  async listMembers(): Promise<MembersResponse> {
    return { members: this.members() };
  }

  addMember(_r: AddMemberRequest): Promise<Member> {
    return Promise.reject(unimplemented("AddMember"));
  }

  promoteMember(): Promise<Member> {
    return Promise.reject(unimplemented("PromoteMember"));
  }

  removeMember(): Promise<RemoveMemberResponse> {
    return Promise.reject(unimplemented("RemoveMember"));
  }
}
