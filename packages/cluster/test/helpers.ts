import { expect } from "vitest";
import type { ClusterCommand, RegisterNodeCommand, VmSpecInput } from "../src/commands.js";
import { encodeCommand } from "../src/commands.js";
import { checkInvariants, checkTransition } from "../src/invariants.js";
import type { ClusterRejection, ClusterResult, ClusterStateOptions, ClusterSuccess } from "../src/state.js";
import { ClusterState } from "../src/state.js";
import type { ClusterData, RejectionCode } from "../src/types.js";

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** A registerNode command with a lease of 10 s from `atMs`. */
export function nodeCommand(id: string, memoryBytes: number, vcpus: number, atMs = 0, extra: Partial<RegisterNodeCommand> = {}): RegisterNodeCommand {
  return {
    type: "registerNode", atMs, node: id, apiAddress: `127.0.0.1:${7000 + id.length}`, migrationAddress: `nats://127.0.0.1:4222/${id}`,
    capacity: { memoryBytes, vcpus }, leaseUntilMs: atMs + 10_000, ...extra,
  };
}

export function spec(memoryBytes: number, vcpus = 1, extra: Partial<VmSpecInput> = {}): VmSpecInput {
  return { memoryBytes, vcpus, image: "guests/build/hello.elf", bootMode: "bare", ...extra };
}

type SuccessOf<T extends ClusterSuccess["type"]> = Extract<ClusterSuccess, { type: T }>;

/**
 * A state machine driven by typed commands: each command is encoded, applied at the next index, and
 * followed by the invariant checker and the transition checker against the previous state.
 */
export class Harness {
  readonly state: ClusterState;
  private previous: ClusterData;

  constructor(options: ClusterStateOptions = {}) {
    this.state = new ClusterState({ checkInvariantsOnApply: true, ...options });
    this.previous = this.state.toData();
  }

  run(command: ClusterCommand): ClusterResult {
    const result = this.state.apply(this.state.appliedIndex + 1, encodeCommand(command));
    const data = this.state.toData();
    expect(checkInvariants(data, this.state.usageByNode())).toEqual([]);
    expect(checkTransition(this.previous, data)).toEqual([]);
    if (!result.ok) {
      // A rejection changes nothing but the applied index.
      expect({ ...data, appliedIndex: this.previous.appliedIndex }).toEqual(this.previous);
    }
    this.previous = data;
    return result;
  }

  ok<C extends ClusterCommand>(command: C): SuccessOf<C["type"]> {
    const result = this.run(command);
    if (!result.ok) throw new Error(`expected ${command.type} to succeed, got ${result.code}: ${result.message}`);
    expect(result.type).toBe(command.type);
    return result as SuccessOf<C["type"]>;
  }

  rejected(command: ClusterCommand, code: RejectionCode, message: RegExp | string): ClusterRejection {
    const result = this.run(command);
    if (result.ok) throw new Error(`expected ${command.type} to be refused with ${code}, got ${JSON.stringify(result)}`);
    expect(result.code).toBe(code);
    expect(result.command).toBe(command.type);
    if (typeof message === "string") expect(result.message).toBe(message);
    else expect(result.message).toMatch(message);
    return result;
  }
}
