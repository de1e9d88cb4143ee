import type { NodeId } from "./types.js";

/** Outcome of a vote (or of any quorum question) over a majority configuration. */
export type VoteResult = "pending" | "lost" | "won";

/**
 * The largest index that a majority of `voters` has matched: sort the voters' match indexes in
 * decreasing order and take the one at position `floor(n / 2)`. A voter without a match counts as 0.
 * With no voters the answer is 0 (nothing can commit).
 */
export function committedIndex(voters: readonly NodeId[], matchOf: (id: NodeId) => number | undefined): number {
  const n = voters.length;
  if (n === 0) return 0;
  if (n === 1) return matchOf(voters[0]) ?? 0;
  const matched = new Array<number>(n);
  for (let i = 0; i < n; i++) matched[i] = matchOf(voters[i]) ?? 0;
  matched.sort((a, b) => b - a);
  return matched[Math.floor(n / 2)];
}

/**
 * Won when a majority of `voters` granted, lost when a majority can no longer be reached, pending
 * otherwise. Votes of non-voters are ignored. With no voters the vote is won (nothing to ask).
 */
export function voteResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const n = voters.length;
  if (n === 0) return "won";
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) granted++;
  }
  const q = Math.floor(n / 2) + 1;
  if (granted >= q) return "won";
  if (granted + missing >= q) return "pending";
  return "lost";
}

/** The number of votes a majority of `voterCount` voters needs. */
export function majority(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}
