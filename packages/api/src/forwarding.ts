/**
 * Any node answers; writes go to the leader.
 *
 * `forwardingBackend(local, isLeader, leaderClient)` wraps a node's own backend: reads (Get, List,
 * Watch*, Console, Status, Members) are served by `local` on every node, from its copy of the
 * cluster state; writes (`WRITE_METHODS`) are served by `local` on the leader and, on any other
 * node, sent to the leader's API through `leaderClient()` and answered with the leader's answer
 * (its errors included, unchanged but for transport failures, which say which leader failed).
 *
 * Forwarding happens at most once (`FORWARD_HOPS_MAX`): a forwarded call carries the metadata
 * `hyperfleet-forwarded-hops`, and a node that receives a forwarded write while it is not the leader
 * (two nodes disagree about who leads, during an election) answers UNAVAILABLE instead of forwarding
 * it again, so a request never travels in circles; the client retries. The forwarded call keeps the
 * caller's deadline and is cancelled with it.
 *
 * A write whose forwarded call fails in transit (UNAVAILABLE after it was sent, DEADLINE_EXCEEDED)
 * may or may not have been applied by the leader, exactly as if the client had called the leader.
 */
import { ApiError } from "./errors.js";
import type { WriteMethodName } from "./methods.js";
import type { Backend, CallContext, RequestOf, ResponseOf } from "./types.js";

/** Metadata key carrying how many nodes forwarded the call so far. */
export const FORWARDED_HOPS_METADATA_KEY = "hyperfleet-forwarded-hops";

/** How many times a call may be forwarded. */
export const FORWARD_HOPS_MAX = 1;

/** What a forwarded call passes on to the leader (a subset of `ApiClient`'s call options). */
export interface ForwardCallOptions {
  readonly signal?: AbortSignal;
  /** Unix time (ms) past which the caller stops waiting. */
  readonly deadlineMs?: number;
  /** Sent as `hyperfleet-forwarded-hops`. */
  readonly hops?: number;
}

/** The leader's API as the wrapper calls it; `ApiClient` is one. */
export type ForwardTarget = { readonly address: string } & {
  readonly [K in WriteMethodName]: (request: RequestOf<K>, options?: ForwardCallOptions) => Promise<ResponseOf<K>>;
};

/**
 * A backend that serves reads from `local` and sends writes to the leader when this node is not it.
 *
 * @param local this node's backend (serves everything on the leader, reads elsewhere)
 * @param isLeader whether this node leads now (asked on every write)
 * @param leaderClient a client of the current leader's API, or undefined when no leader is known
 *   (writes then fail with UNAVAILABLE); the caller owns and closes the clients it returns
 */
export function forwardingBackend(local: Backend, isLeader: () => boolean, leaderClient: () => ForwardTarget | undefined): Backend {
  function write<K extends WriteMethodName>(name: K): (request: RequestOf<K>, context: CallContext) => Promise<ResponseOf<K>> {
    return async (request, context) => {
      if (isLeader()) {
        const serve = local[name] as (r: RequestOf<K>, c: CallContext) => Promise<ResponseOf<K>>;
        return serve.call(local, request, context);
      }
      if (context.hops >= FORWARD_HOPS_MAX) {
        throw new ApiError(
          "UNAVAILABLE",
          `this node is not the leader and the request was already forwarded ${context.hops} time(s); a leader change is under way: retry`,
        );
      }
      const leader = leaderClient();
      if (leader === undefined) throw new ApiError("UNAVAILABLE", "this node is not the leader and knows no leader (an election is under way): retry");
      const options: ForwardCallOptions = context.deadlineMs === null
        ? { signal: context.signal, hops: context.hops + 1 }
        : { signal: context.signal, hops: context.hops + 1, deadlineMs: context.deadlineMs };
      const forward = leader[name] as (r: RequestOf<K>, o: ForwardCallOptions) => Promise<ResponseOf<K>>;
      try {
        return await forward.call(leader, request, options);
      } catch (e) {
        if (e instanceof ApiError && (e.code === "UNAVAILABLE" || e.code === "DEADLINE_EXCEEDED" || e.code === "CANCELLED")) {
          throw new ApiError(e.code, `forwarding to the leader at ${leader.address}: ${e.message}`, { cause: e });
        }
        throw e;
      }
    };
  }
  return {
    createVm: write("createVm"),
    startVm: write("startVm"),
    stopVm: write("stopVm"),
    pauseVm: write("pauseVm"),
    resumeVm: write("resumeVm"),
    saveVm: write("saveVm"),
    restoreVm: write("restoreVm"),
    deleteVm: write("deleteVm"),
    setVmKvp: write("setVmKvp"),
    getVm: (request, context) => local.getVm(request, context),
    listVms: (request, context) => local.listVms(request, context),
    watchVmEvents: (request, context) => local.watchVmEvents(request, context),
    attachConsole: (request, input, context) => local.attachConsole(request, input, context),
    migrate: write("migrate"),
    cancelMigration: write("cancelMigration"),
    watchMigration: (request, context) => local.watchMigration(request, context),
    getMigration: (request, context) => local.getMigration(request, context),
    listMigrations: (request, context) => local.listMigrations(request, context),
    listNodes: (request, context) => local.listNodes(request, context),
    drainNode: write("drainNode"),
    resumeNode: write("resumeNode"),
    clusterStatus: (request, context) => local.clusterStatus(request, context),
    listMembers: (request, context) => local.listMembers(request, context),
    addMember: write("addMember"),
    promoteMember: write("promoteMember"),
    removeMember: write("removeMember"),
  };
}
