/**
 * Typed errors of the cluster state machine. A command that is wrong (malformed, stale, impossible in
 * the current state) is never an exception: it is a rejection result, the same on every member. The
 * errors below are for the caller's own mistakes and for "impossible" states.
 */

/** A command that cannot be encoded, or bytes that do not decode to a command. */
export class ClusterCommandError extends Error {
  override readonly name = "ClusterCommandError";
}

/** A snapshot that cannot be restored: bad magic or version, checksum mismatch, truncated, inconsistent. */
export class ClusterSnapshotError extends Error {
  override readonly name = "ClusterSnapshotError";
}

/** Misuse of the state machine by its caller: entries applied out of order, invalid options. */
export class ClusterStateError extends Error {
  override readonly name = "ClusterStateError";
}

/**
 * An "impossible" state: usage going negative, an owner that is not registered, a reservation without
 * a migration. Kept on in production: a member that would continue from a wrong state must stop.
 */
export class ClusterInvariantError extends Error {
  override readonly name = "ClusterInvariantError";
}

/** Throws a `ClusterInvariantError` with `message` unless `condition` holds. */
export function invariant(condition: boolean, message: string | (() => string)): asserts condition {
  if (!condition) throw new ClusterInvariantError(typeof message === "string" ? message : message());
}
