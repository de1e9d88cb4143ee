/**
 * An in-memory `Backend` for the tests: three nodes, two VMs, three Raft members, migrations that
 * report three rounds of progress and then complete (or wait, with `holdMigrations`, until they are
 * cancelled), a console that replays its history and echoes what is typed.
 */
import { ApiError } from "../src/errors.js";
import type {
  AddMemberRequest, Backend, CallContext, CancelMigrationRequest, ClusterStatus, ConsoleOpenRequest, ConsoleOutput, CreateVmRequest,
  DeleteVmRequest, DeleteVmResponse, DrainNodeRequest, GetMigrationRequest, GetVmRequest, ListMigrationsRequest, ListMigrationsResponse,
  ListNodesRequest, ListNodesResponse, ListVmsRequest, ListVmsResponse, Member, MembersResponse, MigrateRequest, MigrateResponse, Migration,
  MigrationProgress, MigrationUpdate, Node, PauseVmRequest, PromoteMemberRequest, RemoveMemberRequest, RemoveMemberResponse,
  RestoreVmRequest, ResumeNodeRequest, ResumeVmRequest, SaveVmRequest, SaveVmResponse, SetVmKvpRequest, StartVmRequest, StopVmRequest, Vm, VmEvent,
  VmEventBody, VmState, WatchEventsRequest, WatchMigrationRequest,
} from "../src/types.js";

const GiB = 1024 * 1024 * 1024;
const MiB = 1024 * 1024;

/** Resolves when `signal` aborts or `wake` is called, whichever comes first. */
function sleepUntil(signal: AbortSignal, register: (wake: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
    register(resolve);
  });
}

interface Subscriber {
  readonly filter: string;
  readonly queue: VmEvent[];
  wake: (() => void) | null;
}

function node(id: string, port: number, state: Node["state"]): Node {
  return {
    id,
    apiAddress: `127.0.0.1:${port}`,
    state,
    capacity: { memoryBytes: GiB, vcpus: 4 },
    usage: { memoryBytes: 0, vcpus: 0, vms: 0, runningVms: 0, incomingMigrations: 0 },
    leaseUntilMs: 1_000_000,
    leaseLive: state !== "NODE_STATE_FAILED",
    labels: { zone: "a" },
  };
}

export class FakeBackend implements Backend {
  /** Backend methods called, in order. */
  readonly calls: string[] = [];
  /** Contexts of the calls, in order. */
  readonly contexts: CallContext[] = [];
  readonly vms = new Map<string, Vm>();
  readonly nodes = new Map<string, Node>();
  readonly members = new Map<string, Member>();
  readonly migrations = new Map<string, Migration>();
  readonly savedStates = new Map<string, number>();
  readonly consoleHistory = new Map<string, string>();
  /** Watch streams (events and migrations) that ended, and how many are open. */
  streamsEnded = 0;
  streamsOpen = 0;
  /** Migrations stop after their third round until cancelled. */
  holdMigrations = false;
  /** This method throws a plain Error (a bug) instead of answering. */
  explodeOn: keyof Backend | null = null;
  /** This method never answers (until its call is cancelled: then it rejects). */
  hangOn: keyof Backend | null = null;
  private readonly subscribers = new Set<Subscriber>();
  private readonly migrationWakers = new Map<string, Set<() => void>>();
  private sequence = 0;
  private nextMigration = 1;
  private nowMs = 1_700_000_000_000;

  constructor(readonly nodeId = "n1") {
    for (const [i, id] of ["n1", "n2", "n3"].entries()) this.nodes.set(id, node(id, 7001 + i, id === "n3" ? "NODE_STATE_DRAINED" : "NODE_STATE_ACTIVE"));
    this.vms.set("web", this.newVm({ name: "web", memoryBytes: 256 * MiB, vcpus: 2, image: "echo" }, "n1", "VM_STATE_RUNNING"));
    this.vms.set("db", this.newVm({ name: "db", memoryBytes: 512 * MiB, vcpus: 1, image: "kv" }, "n2", "VM_STATE_STOPPED"));
    this.consoleHistory.set("web", "boot ok\r\n$ ");
    this.members.set("n1", { id: "n1", raftAddress: "127.0.0.1:8001", apiAddress: "127.0.0.1:7001", role: "MEMBER_ROLE_LEADER", matchIndex: 42, reachable: true });
    this.members.set("n2", { id: "n2", raftAddress: "127.0.0.1:8002", apiAddress: "127.0.0.1:7002", role: "MEMBER_ROLE_FOLLOWER", matchIndex: 42, reachable: true });
    this.members.set("n3", { id: "n3", raftAddress: "127.0.0.1:8003", apiAddress: "127.0.0.1:7003", role: "MEMBER_ROLE_FOLLOWER", matchIndex: 41, reachable: true });
  }

  private newVm(r: Pick<CreateVmRequest, "name" | "memoryBytes" | "vcpus" | "image"> & Partial<CreateVmRequest>, owner: string, state: VmState): Vm {
    return {
      name: r.name,
      spec: {
        memoryBytes: r.memoryBytes,
        vcpus: r.vcpus,
        image: r.image,
        bootMode: r.bootMode === undefined || r.bootMode === "BOOT_MODE_UNSPECIFIED" ? "BOOT_MODE_BARE" : r.bootMode,
        bootargs: r.bootargs ?? "",
        antiAffinityGroup: r.antiAffinityGroup ?? "",
        priority: r.priority === undefined || r.priority === "VM_PRIORITY_UNSPECIFIED" ? "VM_PRIORITY_NORMAL" : r.priority,
        restartPolicy: r.restartPolicy === undefined || r.restartPolicy === "RESTART_POLICY_UNSPECIFIED" ? "RESTART_POLICY_RESTART" : r.restartPolicy,
        diskBytes: [...(r.diskBytes ?? [])],
        noIntegration: r.noIntegration ?? false,
        nicMacs: r.nicMacs !== undefined && r.nicMacs.length > 0 ? [...r.nicMacs]
          : Array.from({ length: r.nics ?? 0 }, (_, i) => `02:48:00:00:${(this.vms.size & 0xff).toString(16).padStart(2, "0")}:${i.toString(16).padStart(2, "0")}`),
      },
      desiredState: state === "VM_STATE_RUNNING" ? "VM_DESIRED_STATE_RUNNING" : "VM_DESIRED_STATE_STOPPED",
      state,
      owner,
      epoch: 1,
      pendingReason: "",
      migrationId: "",
      createdAtMs: this.nowMs,
      savedState: "",
      guestHealth: "unknown",
      guestKvp: {},
      hostKvp: {},
    };
  }

  private enter(method: keyof Backend, context: CallContext): Promise<void> {
    this.calls.push(method);
    this.contexts.push(context);
    if (this.explodeOn === method) throw new Error("database password hunter2 rejected by the disk");
    if (this.hangOn === method) {
      return new Promise((_resolve, reject) => {
        context.signal.addEventListener("abort", () => reject(new ApiError("CANCELLED", "cancelled")), { once: true });
      });
    }
    return Promise.resolve();
  }

  private vm(name: string): Vm {
    const vm = this.vms.get(name);
    if (vm === undefined) throw new ApiError("NOT_FOUND", `vm ${name} not found`);
    return vm;
  }

  private publish(vm: string, body: VmEventBody): void {
    this.nowMs += 10;
    const event = { sequence: ++this.sequence, atMs: this.nowMs, vm, ...body } as VmEvent;
    for (const s of this.subscribers) {
      if (s.filter !== "" && s.filter !== vm) continue;
      s.queue.push(event);
      s.wake?.();
    }
  }

  private setState(vm: Vm, state: VmState, desired: Vm["desiredState"], reason: string): Vm {
    const previous = vm.state;
    // the guest answers while it runs (fleetd: the owner's heartbeat and KVP)
    const guest: Pick<Vm, "guestHealth" | "guestKvp"> = state === "VM_STATE_RUNNING" && !vm.spec.noIntegration
      ? { guestHealth: "ok", guestKvp: { "probe.status": "ready" } }
      : { guestHealth: "unknown", guestKvp: {} };
    const next: Vm = { ...vm, ...guest, state, desiredState: desired };
    this.vms.set(vm.name, next);
    this.publish(vm.name, { event: "stateChanged", stateChanged: { desiredState: desired, previousState: previous, state, reason } });
    return next;
  }

  // Vms -----------------------------------------------------------------------------------------

  async createVm(r: CreateVmRequest, c: CallContext): Promise<Vm> {
    await this.enter("createVm", c);
    if (this.vms.has(r.name)) throw new ApiError("ALREADY_EXISTS", `vm ${r.name} already exists`);
    const owner = [...this.nodes.values()].find((n) => n.state === "NODE_STATE_ACTIVE" && n.capacity.memoryBytes - this.usage(n).usage.memoryBytes >= r.memoryBytes);
    if (owner === undefined) throw new ApiError("RESOURCE_EXHAUSTED", `no node has ${r.memoryBytes} bytes free`);
    let vm = this.newVm(r, owner.id, "VM_STATE_STOPPED");
    this.vms.set(r.name, vm);
    this.publish(r.name, { event: "created", created: { vm } });
    if (r.start) vm = this.setState(vm, "VM_STATE_RUNNING", "VM_DESIRED_STATE_RUNNING", "created with start");
    return vm;
  }

  async startVm(r: StartVmRequest, c: CallContext): Promise<Vm> {
    await this.enter("startVm", c);
    const vm = this.vm(r.name);
    if (vm.state === "VM_STATE_RUNNING" || vm.state === "VM_STATE_PAUSED") throw new ApiError("FAILED_PRECONDITION", `vm ${r.name} is already running`);
    return this.setState(vm, "VM_STATE_RUNNING", "VM_DESIRED_STATE_RUNNING", "start requested");
  }

  async stopVm(r: StopVmRequest, c: CallContext): Promise<Vm> {
    await this.enter("stopVm", c);
    const vm = this.vm(r.name);
    if (vm.state === "VM_STATE_STOPPED") return vm;
    return this.setState(vm, "VM_STATE_STOPPED", "VM_DESIRED_STATE_STOPPED", r.force ? "turned off" : "guest shut down");
  }

  async pauseVm(r: PauseVmRequest, c: CallContext): Promise<Vm> {
    await this.enter("pauseVm", c);
    const vm = this.vm(r.name);
    if (vm.state !== "VM_STATE_RUNNING") throw new ApiError("FAILED_PRECONDITION", `vm ${r.name} is not running`);
    return this.setState(vm, "VM_STATE_PAUSED", "VM_DESIRED_STATE_PAUSED", "pause requested");
  }

  async resumeVm(r: ResumeVmRequest, c: CallContext): Promise<Vm> {
    await this.enter("resumeVm", c);
    const vm = this.vm(r.name);
    if (vm.state !== "VM_STATE_PAUSED") throw new ApiError("FAILED_PRECONDITION", `vm ${r.name} is not paused`);
    return this.setState(vm, "VM_STATE_RUNNING", "VM_DESIRED_STATE_RUNNING", "resume requested");
  }

  async saveVm(r: SaveVmRequest, c: CallContext): Promise<SaveVmResponse> {
    await this.enter("saveVm", c);
    const vm = this.vm(r.name);
    if (vm.state !== "VM_STATE_RUNNING" && vm.state !== "VM_STATE_PAUSED") throw new ApiError("FAILED_PRECONDITION", `vm ${r.name} is not running`);
    const sizeBytes = vm.spec.memoryBytes + 4096;
    this.savedStates.set(`${r.name}/${r.savedState}`, sizeBytes);
    const saved = this.setState(vm, "VM_STATE_SAVED", "VM_DESIRED_STATE_STOPPED", `saved to ${r.savedState}`);
    return { vm: saved, savedState: r.savedState, sizeBytes };
  }

  async restoreVm(r: RestoreVmRequest, c: CallContext): Promise<Vm> {
    await this.enter("restoreVm", c);
    const vm = this.vm(r.name);
    if (!this.savedStates.has(`${r.name}/${r.savedState}`)) throw new ApiError("NOT_FOUND", `vm ${r.name} has no saved state ${r.savedState}`);
    if (vm.state === "VM_STATE_RUNNING") throw new ApiError("FAILED_PRECONDITION", `vm ${r.name} is running`);
    return this.setState(vm, "VM_STATE_RUNNING", "VM_DESIRED_STATE_RUNNING", `restored from ${r.savedState}`);
  }

  async deleteVm(r: DeleteVmRequest, c: CallContext): Promise<DeleteVmResponse> {
    await this.enter("deleteVm", c);
    const vm = this.vm(r.name);
    if (!r.force && vm.state !== "VM_STATE_STOPPED" && vm.state !== "VM_STATE_SAVED") {
      throw new ApiError("FAILED_PRECONDITION", `vm ${r.name} is not stopped`);
    }
    this.vms.delete(r.name);
    this.publish(r.name, { event: "deleted", deleted: {} });
    return {};
  }

  async setVmKvp(r: SetVmKvpRequest, c: CallContext): Promise<Vm> {
    await this.enter("setVmKvp", c);
    const vm = this.vm(r.name);
    const hostKvp = { ...vm.hostKvp };
    if (r.delete) delete hostKvp[r.key];
    else hostKvp[r.key] = r.value ?? "";
    const next = { ...vm, hostKvp };
    this.vms.set(r.name, next);
    return next;
  }

  async getVm(r: GetVmRequest, c: CallContext): Promise<Vm> {
    await this.enter("getVm", c);
    return this.vm(r.name);
  }

  async listVms(r: ListVmsRequest, c: CallContext): Promise<ListVmsResponse> {
    await this.enter("listVms", c);
    const vms = [...this.vms.values()]
      .filter((vm) => (r.node === "" || vm.owner === r.node) && (r.state === "VM_STATE_UNSPECIFIED" || vm.state === r.state))
      .sort((a, b) => a.name.localeCompare(b.name));
    return { vms };
  }

  watchVmEvents(r: WatchEventsRequest, c: CallContext): AsyncIterable<VmEvent> {
    this.calls.push("watchVmEvents");
    this.contexts.push(c);
    // Subscribed now, not at the first next(): nothing published after the call is missed.
    const subscriber: Subscriber = { filter: r.vm, queue: [], wake: null };
    this.subscribers.add(subscriber);
    this.streamsOpen++;
    const subscribers = this.subscribers;
    const ended = (): void => {
      subscribers.delete(subscriber);
      this.streamsOpen--;
      this.streamsEnded++;
    };
    return (async function* events(): AsyncGenerator<VmEvent> {
      try {
        for (;;) {
          while (subscriber.queue.length > 0) yield subscriber.queue.shift()!;
          if (c.signal.aborted) return;
          await sleepUntil(c.signal, (wake) => { subscriber.wake = wake; });
          subscriber.wake = null;
        }
      } finally {
        ended();
      }
    })();
  }

  attachConsole(r: ConsoleOpenRequest, input: AsyncIterable<Uint8Array>, c: CallContext): AsyncIterable<ConsoleOutput> {
    this.calls.push("attachConsole");
    this.contexts.push(c);
    const history = this.consoleHistory.get(r.vm);
    return (async function* consoleOutput(): AsyncGenerator<ConsoleOutput> {
      if (history === undefined) throw new ApiError("NOT_FOUND", `vm ${r.vm} not found`);
      yield { data: Buffer.from(history, "utf8"), history: true };
      for await (const chunk of input) yield { data: Buffer.from(chunk), history: false };
    })();
  }

  // Migrations ----------------------------------------------------------------------------------

  async migrate(r: MigrateRequest, c: CallContext): Promise<MigrateResponse> {
    await this.enter("migrate", c);
    const vm = this.vm(r.vm);
    if (vm.migrationId !== "") throw new ApiError("FAILED_PRECONDITION", `vm ${r.vm} is already migrating (${vm.migrationId})`);
    let target = r.targetNode;
    if (target === "") {
      target = [...this.nodes.values()].find((n) => n.id !== vm.owner && n.state === "NODE_STATE_ACTIVE")?.id ?? "";
      if (target === "") throw new ApiError("RESOURCE_EXHAUSTED", "no other node can take the vm");
    } else if (!this.nodes.has(target)) {
      throw new ApiError("NOT_FOUND", `node ${target} not found`);
    }
    const id = `m${this.nextMigration++}`;
    const live = r.kind !== "MIGRATION_KIND_QUICK";
    this.migrations.set(id, {
      id,
      vm: r.vm,
      sourceNode: vm.owner,
      targetNode: target,
      options: {
        kind: live ? "MIGRATION_KIND_LIVE" : "MIGRATION_KIND_QUICK",
        downtimeLimitMs: r.downtimeLimitMs === 0 ? 300 : r.downtimeLimitMs,
        bandwidthLimitBytesPerSecond: r.bandwidthLimitBytesPerSecond,
        maxRounds: r.maxRounds === 0 ? 30 : r.maxRounds,
        policy: r.policy === "NO_CONVERGENCE_POLICY_UNSPECIFIED" ? "NO_CONVERGENCE_POLICY_AUTO_CONVERGE" : r.policy,
      },
      progress: this.progress("MIGRATION_PHASE_HANDSHAKE", 0),
      result: null,
      startedAtMs: this.nowMs,
      finishedAtMs: 0,
    });
    this.vms.set(r.vm, { ...vm, migrationId: id });
    this.publish(r.vm, { event: "migration", migration: { migrationId: id, kind: "VM_MIGRATION_EVENT_KIND_STARTED", sourceNode: vm.owner, targetNode: target, reason: "" } });
    return { migrationId: id, targetNode: target };
  }

  private progress(phase: MigrationProgress["phase"], round: number): MigrationProgress {
    return {
      phase,
      round,
      pagesRemaining: round === 0 ? 65536 : Math.floor(65536 / 8 ** round),
      dirtyPagesPerSecond: 5000,
      throughputBytesPerSecond: 1e9,
      expectedDowntimeMs: 100 / (round + 1),
      etaMs: 300 - 100 * round,
      throttlePercent: 0,
    };
  }

  private migration(id: string): Migration {
    const m = this.migrations.get(id);
    if (m === undefined) throw new ApiError("NOT_FOUND", `migration ${id} not found`);
    return m;
  }

  private finishMigration(id: string, ok: boolean, reason: string, cancelled: boolean): Migration {
    const m = this.migration(id);
    const done: Migration = {
      ...m,
      progress: { ...m.progress, phase: ok ? "MIGRATION_PHASE_DONE" : "MIGRATION_PHASE_FAILED" },
      result: { ok, totalMs: 420, downtimeMs: ok ? 12 : 0, bytesSent: 80 * MiB, rounds: 3, throttlePercentMax: 0, failureReason: reason, cancelled },
      finishedAtMs: this.nowMs + 420,
    };
    this.migrations.set(id, done);
    const vm = this.vms.get(m.vm);
    if (vm !== undefined) {
      this.vms.set(m.vm, { ...vm, migrationId: "", owner: ok ? m.targetNode : vm.owner, epoch: ok ? vm.epoch + 1 : vm.epoch });
    }
    for (const wake of this.migrationWakers.get(id) ?? []) wake();
    return done;
  }

  async cancelMigration(r: CancelMigrationRequest, c: CallContext): Promise<Migration> {
    await this.enter("cancelMigration", c);
    const m = this.migration(r.migrationId);
    if (m.result !== null) throw new ApiError("FAILED_PRECONDITION", `migration ${m.id} already ended`);
    return this.finishMigration(m.id, false, "cancelled", true);
  }

  watchMigration(r: WatchMigrationRequest, c: CallContext): AsyncIterable<MigrationUpdate> {
    this.calls.push("watchMigration");
    this.contexts.push(c);
    this.streamsOpen++;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    return (async function* updates(): AsyncGenerator<MigrationUpdate> {
      try {
        const id = r.migrationId;
        let m = self.migration(id);
        if (m.result === null) {
          const phases: MigrationProgress["phase"][] = ["MIGRATION_PHASE_PRECOPY", "MIGRATION_PHASE_PRECOPY", "MIGRATION_PHASE_STOP_AND_COPY"];
          for (const [i, phase] of phases.entries()) {
            const progress = self.progress(phase, i + 1);
            self.migrations.set(id, { ...self.migration(id), progress });
            yield { migrationId: id, update: "progress", progress };
            if (self.migration(id).result !== null) break;
          }
          if (self.holdMigrations) {
            // Bounded: ends on cancellation of the call or of the migration.
            while (self.migration(id).result === null && !c.signal.aborted) {
              await sleepUntil(c.signal, (wake) => {
                let set = self.migrationWakers.get(id);
                if (set === undefined) self.migrationWakers.set(id, (set = new Set()));
                set.add(wake);
              });
            }
            if (c.signal.aborted) return;
          }
          m = self.migration(id);
          if (m.result === null) m = self.finishMigration(id, true, "", false);
        }
        yield { migrationId: id, update: "result", result: m.result! };
      } finally {
        self.streamsOpen--;
        self.streamsEnded++;
      }
    })();
  }

  async getMigration(r: GetMigrationRequest, c: CallContext): Promise<Migration> {
    await this.enter("getMigration", c);
    return this.migration(r.migrationId);
  }

  async listMigrations(r: ListMigrationsRequest, c: CallContext): Promise<ListMigrationsResponse> {
    await this.enter("listMigrations", c);
    const migrations = [...this.migrations.values()].filter((m) => (r.vm === "" || m.vm === r.vm) && (!r.activeOnly || m.result === null));
    return { migrations };
  }

  // Nodes ---------------------------------------------------------------------------------------

  private usage(n: Node): Node {
    const owned = [...this.vms.values()].filter((vm) => vm.owner === n.id);
    return {
      ...n,
      usage: {
        memoryBytes: owned.reduce((s, vm) => s + vm.spec.memoryBytes, 0),
        vcpus: owned.reduce((s, vm) => s + vm.spec.vcpus, 0),
        vms: owned.length,
        runningVms: owned.filter((vm) => vm.state === "VM_STATE_RUNNING").length,
        incomingMigrations: [...this.migrations.values()].filter((m) => m.targetNode === n.id && m.result === null).length,
      },
    };
  }

  private node(id: string): Node {
    const n = this.nodes.get(id);
    if (n === undefined) throw new ApiError("NOT_FOUND", `node ${id} not found`);
    return n;
  }

  async listNodes(r: ListNodesRequest, c: CallContext): Promise<ListNodesResponse> {
    await this.enter("listNodes", c);
    return { nodes: [...this.nodes.values()].filter((n) => r.state === "NODE_STATE_UNSPECIFIED" || n.state === r.state).map((n) => this.usage(n)) };
  }

  async drainNode(r: DrainNodeRequest, c: CallContext): Promise<Node> {
    await this.enter("drainNode", c);
    const n = this.node(r.node);
    if (n.state === "NODE_STATE_FAILED") throw new ApiError("FAILED_PRECONDITION", `node ${r.node} failed`);
    const hasVms = [...this.vms.values()].some((vm) => vm.owner === n.id);
    const drained: Node = { ...n, state: hasVms ? "NODE_STATE_DRAINING" : "NODE_STATE_DRAINED" };
    this.nodes.set(n.id, drained);
    return this.usage(drained);
  }

  async resumeNode(r: ResumeNodeRequest, c: CallContext): Promise<Node> {
    await this.enter("resumeNode", c);
    const n = this.node(r.node);
    if (n.state === "NODE_STATE_FAILED") throw new ApiError("FAILED_PRECONDITION", `node ${r.node} failed`);
    const active: Node = { ...n, state: "NODE_STATE_ACTIVE" };
    this.nodes.set(n.id, active);
    return this.usage(active);
  }

  // Cluster -------------------------------------------------------------------------------------

  async clusterStatus(_r: Record<string, never>, c: CallContext): Promise<ClusterStatus> {
    await this.enter("clusterStatus", c);
    const vms = [...this.vms.values()];
    const running = vms.filter((vm) => vm.state === "VM_STATE_RUNNING").length;
    const active = [...this.nodes.values()].filter((n) => n.state === "NODE_STATE_ACTIVE");
    const pcpus = active.reduce((s, n) => s + n.capacity.vcpus, 0);
    const memory = active.reduce((s, n) => s + n.capacity.memoryBytes, 0);
    return {
      clusterId: "test-cluster",
      nodeId: this.nodeId,
      leaderId: "n1",
      leaderApiAddress: "127.0.0.1:7001",
      term: 3,
      commitIndex: 42,
      appliedIndex: 42,
      members: [...this.members.values()],
      nodeCount: this.nodes.size,
      vmCount: vms.length,
      runningVmCount: running,
      migrationsInFlight: [...this.migrations.values()].filter((m) => m.result === null).length,
      consolidation: {
        vmsPerNode: running / active.length,
        vcpusPerPcpu: vms.reduce((s, vm) => s + vm.spec.vcpus, 0) / pcpus,
        memoryCommittedRatio: vms.reduce((s, vm) => s + vm.spec.memoryBytes, 0) / memory,
      },
    };
  }

  async listMembers(_r: Record<string, never>, c: CallContext): Promise<MembersResponse> {
    await this.enter("listMembers", c);
    return { members: [...this.members.values()].sort((a, b) => a.id.localeCompare(b.id)) };
  }

  async addMember(r: AddMemberRequest, c: CallContext): Promise<Member> {
    await this.enter("addMember", c);
    if (this.members.has(r.id)) throw new ApiError("ALREADY_EXISTS", `member ${r.id} already exists`);
    const member: Member = { id: r.id, raftAddress: r.raftAddress, apiAddress: r.apiAddress, role: "MEMBER_ROLE_LEARNER", matchIndex: 0, reachable: true };
    this.members.set(r.id, member);
    return member;
  }

  async promoteMember(r: PromoteMemberRequest, c: CallContext): Promise<Member> {
    await this.enter("promoteMember", c);
    const m = this.members.get(r.id);
    if (m === undefined) throw new ApiError("NOT_FOUND", `member ${r.id} not found`);
    if (m.role !== "MEMBER_ROLE_LEARNER") throw new ApiError("FAILED_PRECONDITION", `member ${r.id} is not a learner`);
    const promoted: Member = { ...m, role: "MEMBER_ROLE_FOLLOWER", matchIndex: 42 };
    this.members.set(r.id, promoted);
    return promoted;
  }

  async removeMember(r: RemoveMemberRequest, c: CallContext): Promise<RemoveMemberResponse> {
    await this.enter("removeMember", c);
    if (!this.members.delete(r.id)) throw new ApiError("NOT_FOUND", `member ${r.id} not found`);
    return {};
  }
}
