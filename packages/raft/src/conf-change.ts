import { ConfChangeError } from "./errors.js";
import { ConfChangeType } from "./types.js";
import type { ConfChange, ConfState, NodeId } from "./types.js";

/**
 * Binary form of a ConfChange, the `data` of a ConfChange log entry:
 *
 *   u8  format version (1)
 *   u8  type (ConfChangeType)
 *   u16 length of the node id in UTF-8 bytes, big-endian, then the bytes
 *   u32 length of the context, big-endian, then the bytes
 *
 * Nothing may follow. Decoding rejects anything else with a `ConfChangeError`.
 */
export const CONF_CHANGE_FORMAT_VERSION = 1;

const MAX_NODE_ID_BYTES = 0xffff;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

export function encodeConfChange(cc: ConfChange): Uint8Array {
  checkType(cc.type);
  const node = utf8Encoder.encode(cc.node);
  if (node.length === 0) throw new ConfChangeError("conf change node id is empty");
  if (node.length > MAX_NODE_ID_BYTES) throw new ConfChangeError(`conf change node id is ${node.length} bytes, more than ${MAX_NODE_ID_BYTES}`);
  const out = new Uint8Array(2 + 2 + node.length + 4 + cc.context.length);
  const view = new DataView(out.buffer);
  out[0] = CONF_CHANGE_FORMAT_VERSION;
  out[1] = cc.type;
  view.setUint16(2, node.length);
  out.set(node, 4);
  view.setUint32(4 + node.length, cc.context.length);
  out.set(cc.context, 8 + node.length);
  return out;
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  if (data.length < 8) throw new ConfChangeError(`conf change is ${data.length} bytes, shorter than the 8-byte minimum`);
  if (data[0] !== CONF_CHANGE_FORMAT_VERSION) {
    throw new ConfChangeError(`conf change format version ${data[0]} is not supported (expected ${CONF_CHANGE_FORMAT_VERSION})`);
  }
  const type = data[1];
  checkType(type);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const nodeLength = view.getUint16(2);
  if (nodeLength === 0) throw new ConfChangeError("conf change node id is empty");
  if (4 + nodeLength + 4 > data.length) throw new ConfChangeError(`conf change truncated in its node id (${data.length} bytes)`);
  let node: NodeId;
  try {
    node = utf8Decoder.decode(data.subarray(4, 4 + nodeLength));
  } catch (e) {
    throw new ConfChangeError("conf change node id is not valid UTF-8", { cause: e });
  }
  const contextLength = view.getUint32(4 + nodeLength);
  const end = 8 + nodeLength + contextLength;
  if (end !== data.length) {
    throw new ConfChangeError(`conf change length mismatch: header says ${end} bytes, got ${data.length}`);
  }
  return { type: type as ConfChangeType, node, context: data.slice(8 + nodeLength, end) };
}

/**
 * The membership after applying the single-server change `cc` to `cs` (thesis §4.1). Throws a
 * `ConfChangeError` (and changes nothing) when the change does not apply:
 *  - AddVoter of a voter (a learner is promoted instead);
 *  - AddLearner of a member (demoting a voter is not supported);
 *  - Remove of a non-member, or of the last voter.
 * Voters and learners come out sorted.
 */
export function applyConfChangeToConfState(cs: ConfState, cc: ConfChange): ConfState {
  checkType(cc.type);
  if (cc.node.length === 0) throw new ConfChangeError("conf change node id is empty");
  const voters = new Set(cs.voters);
  const learners = new Set(cs.learners);
  const id = cc.node;
  switch (cc.type) {
    case ConfChangeType.AddVoter:
      if (voters.has(id)) throw new ConfChangeError(`cannot add voter ${id}: already a voter`);
      learners.delete(id);
      voters.add(id);
      break;
    case ConfChangeType.AddLearner:
      if (voters.has(id)) throw new ConfChangeError(`cannot add learner ${id}: it is a voter (demotion is not supported)`);
      if (learners.has(id)) throw new ConfChangeError(`cannot add learner ${id}: already a learner`);
      learners.add(id);
      break;
    case ConfChangeType.Remove:
      if (!voters.has(id) && !learners.has(id)) throw new ConfChangeError(`cannot remove ${id}: not a member`);
      if (voters.has(id) && voters.size === 1) throw new ConfChangeError(`cannot remove ${id}: it is the last voter`);
      voters.delete(id);
      learners.delete(id);
      break;
  }
  return { voters: [...voters].sort(), learners: [...learners].sort() };
}

/** A one-line description, e.g. "AddLearner n4". */
export function describeConfChange(cc: ConfChange): string {
  const name = cc.type === ConfChangeType.AddVoter ? "AddVoter" : cc.type === ConfChangeType.AddLearner ? "AddLearner" : "Remove";
  return `${name} ${cc.node}`;
}

function checkType(type: number): void {
  if (type !== ConfChangeType.AddVoter && type !== ConfChangeType.AddLearner && type !== ConfChangeType.Remove) {
    throw new ConfChangeError(`unknown conf change type ${type}`);
  }
}
