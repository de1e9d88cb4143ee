/**
 * Typed errors of the Raft core. Each names what went wrong; `cause` carries an underlying error when
 * there is one. Storage errors (`CompactedError`, …) live in `storage.ts` beside the interface whose
 * contract they belong to.
 */

/** Why a proposal (or a read request) was not accepted. */
export type DropReason =
  | "no-leader"
  | "leadership-transfer"
  | "uncommitted-limit"
  | "not-member"
  | "conf-change-pending"
  | "conf-change-invalid";

/**
 * A proposal, conf change or read request was refused by this member. Nothing was appended; the caller
 * may retry later (for instance once a leader is known, or once the pending conf change is applied).
 */
export class ProposalDroppedError extends Error {
  override readonly name = "ProposalDroppedError";
  constructor(readonly reason: DropReason, message: string, options?: ErrorOptions) {
    super(`proposal dropped (${reason}): ${message}`, options);
  }
}

/** The RawNode configuration is invalid: the message names the field and the rule it breaks. */
export class RaftConfigError extends Error {
  override readonly name = "RaftConfigError";
}

/**
 * A message was handed to `RawNode.step` that must never arrive from the wire (Hup, Beat,
 * CheckQuorum, Unreachable, SnapStatus), or that is addressed to another member.
 */
export class InvalidMessageError extends Error {
  override readonly name = "InvalidMessageError";
}

/** A membership change that cannot be decoded or cannot be applied to the membership in force. */
export class ConfChangeError extends Error {
  override readonly name = "ConfChangeError";
}

/** `ready()` was called while a Ready was outstanding, or `advance()` with a Ready not handed out last. */
export class ReadyProtocolError extends Error {
  override readonly name = "ReadyProtocolError";
}

/**
 * An "impossible" state: commit beyond the last index, entries with gaps, a term going backwards, an
 * illegal role transition. Thrown and kept on in production: a member that would continue from a wrong
 * state must crash instead.
 */
export class RaftInvariantError extends Error {
  override readonly name = "RaftInvariantError";
}

/** Throws a `RaftInvariantError` with `message` unless `condition` holds. */
export function invariant(condition: boolean, message: string | (() => string)): asserts condition {
  if (!condition) throw new RaftInvariantError(typeof message === "string" ? message : message());
}
