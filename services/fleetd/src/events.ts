/**
 * VM events (`Vms.WatchEvents`) from the replicated cluster state: every member applies every
 * committed command, so any node can tell what each one changed for its VM — created, deleted, desired
 * or reported state, owner and epoch, a migration begun or ended — and any node can serve the stream.
 * Events are computed only while someone watches; a watcher that falls `QUEUE_MAX` events behind is
 * cut off with an error rather than buffered without bound.
 */
import type { OwnerChangeReason, VmEvent, VmEventBody, VmMigrationEventKind } from "@hyperfleet/api";
import { ApiError } from "@hyperfleet/api";
import type { ClusterResult, ClusterState, DecodedCommand, MigrationRecord, VmRecord } from "@hyperfleet/cluster";
import { decodeCommand } from "@hyperfleet/cluster";
import { toApiVm, vmState } from "./backend.js";

const QUEUE_MAX = 10_000;

type Listener = (e: Omit<VmEvent, "sequence">) => void;

interface Before {
  command: DecodedCommand;
  vm: VmRecord | null;
  migration: MigrationRecord | null;
}

export class VmEventHub {
  private readonly listeners = new Set<Listener>();

  constructor(private readonly state: ClusterState) {}

  /** Call before applying a committed command; hand what it returns to `after`. */
  before(data: Uint8Array): Before | null {
    if (this.listeners.size === 0) return null;
    let command: DecodedCommand;
    try {
      command = decodeCommand(data);
    } catch {
      return null; // the state machine reports a bad command itself
    }
    if (!("vm" in command)) return null;
    return { command, vm: this.state.getVm(command.vm), migration: this.state.getMigration(command.vm) };
  }

  /** Call after applying it: emits what changed for its VM. */
  after(b: Before | null, result: ClusterResult | null): void {
    if (b === null || result === null || !result.ok) return;
    const id = (b.command as { vm: string }).vm;
    const vm = this.state.getVm(id);
    const migration = this.state.getMigration(id);
    const atMs = b.command.atMs;
    const emit = (body: VmEventBody): void => {
      for (const l of this.listeners) l({ atMs, vm: id, ...body });
    };
    if (b.vm === null && vm !== null) {
      emit({ event: "created", created: { vm: toApiVm(vm, migration) } });
      if (vm.owner !== null) emit({ event: "ownerChanged", ownerChanged: { previousOwner: "", owner: vm.owner, epoch: vm.epoch, reason: "OWNER_CHANGE_REASON_PLACEMENT" } });
      return;
    }
    if (b.vm !== null && vm === null) {
      emit({ event: "deleted", deleted: {} });
      return;
    }
    if (b.vm === null || vm === null) return;
    if (b.migration === null && migration !== null) {
      emit({ event: "migration", migration: { migrationId: String(migration.migrationId), kind: "VM_MIGRATION_EVENT_KIND_STARTED", sourceNode: migration.from, targetNode: migration.to, reason: migration.kind } });
    }
    if (b.migration !== null && migration === null) {
      const cancelled = b.command.type === "abortMigration" && b.command.cancelled;
      const kind: VmMigrationEventKind = b.command.type === "transfer" ? "VM_MIGRATION_EVENT_KIND_COMPLETED"
        : cancelled ? "VM_MIGRATION_EVENT_KIND_CANCELLED" : "VM_MIGRATION_EVENT_KIND_FAILED";
      const reason = b.command.type === "transfer" ? "" : b.command.type === "failover" ? "its source failed" : cancelled ? "cancelled by the operator" : "aborted";
      emit({ event: "migration", migration: { migrationId: String(b.migration.migrationId), kind, sourceNode: b.migration.from, targetNode: b.migration.to, reason } });
    }
    if (b.vm.owner !== vm.owner || b.vm.epoch !== vm.epoch) {
      const reason: OwnerChangeReason = b.command.type === "transfer" ? "OWNER_CHANGE_REASON_MIGRATION" : b.command.type === "failover" ? "OWNER_CHANGE_REASON_FAILOVER" : "OWNER_CHANGE_REASON_UNSPECIFIED";
      emit({ event: "ownerChanged", ownerChanged: { previousOwner: b.vm.owner ?? "", owner: vm.owner ?? "", epoch: vm.epoch, reason } });
    }
    const previousState = vmState(b.vm);
    const state = vmState(vm);
    if (previousState !== state || b.vm.desiredState !== vm.desiredState) {
      emit({ event: "stateChanged", stateChanged: { desiredState: toApiVm(vm, migration).desiredState, previousState, state, reason: b.command.type } });
    }
  }

  /** Events from now on (of one VM, or all when `vm` is ""), until `signal` aborts. */
  async *watch(vm: string, signal: AbortSignal): AsyncIterable<VmEvent> {
    const queue: Omit<VmEvent, "sequence">[] = [];
    let overflow = false;
    let wake: (() => void) | undefined;
    const listener: Listener = (e) => {
      if (vm !== "" && e.vm !== vm) return;
      if (queue.length >= QUEUE_MAX) overflow = true;
      else queue.push(e);
      wake?.();
    };
    this.listeners.add(listener);
    const aborted = new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    let sequence = 0;
    try {
      while (!signal.aborted) {
        if (overflow) throw new ApiError("RESOURCE_EXHAUSTED", `the watcher fell ${QUEUE_MAX} events behind: watch again`);
        const next = queue.shift();
        if (next !== undefined) {
          yield { ...next, sequence: ++sequence } as VmEvent;
          continue;
        }
        await Promise.race([new Promise<void>((resolve) => (wake = resolve)), aborted]);
      }
    } finally {
      this.listeners.delete(listener);
    }
  }
}
