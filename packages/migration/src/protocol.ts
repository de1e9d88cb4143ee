/**
 * The live-migration wire protocol between a source and a destination hypervisor.
 *
 * Every message is one frame (little-endian):
 *
 *   0  magic u16 0x4648 ("HF")     2  protocol version u8     3  type u8
 *   4  session id u32              8  sequence number u32     12 payload length u32
 *   16 CRC-32 of bytes 0..15 and the payload, u32             20 payload
 *
 * Each direction numbers its frames from 1 without gaps. A receiver that sees a bad magic, another
 * version, another session, a checksum mismatch, a length that disagrees with the frame, or a
 * sequence number other than the next one refuses the frame, and the migration aborts cleanly: a lost,
 * duplicated, reordered, truncated or corrupted message is detected, never applied.
 *
 * Conversation (source -> destination unless marked <-):
 *   Start {protocol, capabilities, streams}   Config {memory, vCPUs, boot}
 *   <- Admit | <- Refuse {reason}       (the destination reserves the memory, opens page streams 1..
 *                                        streams-1 of the transport, or says why not)
 *   Pages {round, batch} ...            <- Ack {seq} for each Pages (the flow-control window). With
 *                                          several page streams, each carries its own Pages and Acks,
 *                                          numbered on their own (frames of every stream start at 1);
 *                                          a given page always travels on the same stream
 *                                       <- Standby, once, among the Acks: the destination's VM worker is
 *                                          built and waits for state; the source stops the VM only after it
 *   State {u32 streams, u32 Pages frames sent on each stream, saved vCPU and device state}
 *                                       (the source's vCPUs stand still; the destination decides now)
 *                                       <- Resumed {restoredAfterMs, committedAfterMs, runningAfterMs,
 *                                          answeredAfterMs}: every stream's pages applied, the state
 *                                          restored, the commit point passed (the destination's commit:
 *                                          a Raft entry in a cluster), the vCPUs running there; its own
 *                                          times from State's arrival, for the source's downtime figure
 *                                       <- Abandon {reason}: it did not commit and never will (the
 *                                          commit was refused, or the state did not restore): the
 *                                          source resumes the VM
 *   Abandon {reason}, from the source at any time before State; from the destination at any time
 *   before its commit point. The source keeps (or resumes) the VM.
 *
 * The switchover costs one trip: State goes out and the destination restores, commits and runs at
 * once (protocol 3 had the source commit after a Prepared and tell the destination with Complete:
 * two trips more while the vCPUs stood still). A source that hears neither Resumed nor Abandon after
 * State (the link or the destination failed) is in doubt: only the commit's own record (`decide`, the
 * cluster state) tells whether it may run the VM again.
 */
import { crc32 } from "node:zlib";

export const PROTOCOL_VERSION = 4;
const MAGIC = 0x4648;
export const HEADER_BYTES = 20;
/** A frame must fit NATS's default max_payload (1 MiB) with room to spare. */
export const MAX_FRAME_BYTES = 1024 * 1024 - 4096;

export const enum MessageType {
  Start = 1,
  Config = 2,
  Admit = 3,
  Refuse = 4,
  Pages = 5,
  Ack = 6,
  State = 7,
  // 8 and 9 were Prepared and Complete (protocol 3)
  Resumed = 10,
  Abandon = 11,
  Standby = 12,
}

const TYPE_NAMES: Record<number, string> = {
  1: "Start", 2: "Config", 3: "Admit", 4: "Refuse", 5: "Pages", 6: "Ack", 7: "State", 10: "Resumed", 11: "Abandon",
  12: "Standby",
};

export function typeName(type: number): string {
  return TYPE_NAMES[type] ?? `type ${type}`;
}

export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
}

export interface Frame {
  type: MessageType;
  session: number;
  seq: number;
  payload: Uint8Array;
}

export function encodeFrame(frame: Frame): Uint8Array {
  const length = HEADER_BYTES + frame.payload.length;
  if (length > MAX_FRAME_BYTES) throw new ProtocolError(`${typeName(frame.type)} frame of ${length} bytes exceeds ${MAX_FRAME_BYTES}`);
  const out = new Uint8Array(length);
  const v = new DataView(out.buffer);
  v.setUint16(0, MAGIC, true);
  v.setUint8(2, PROTOCOL_VERSION);
  v.setUint8(3, frame.type);
  v.setUint32(4, frame.session >>> 0, true);
  v.setUint32(8, frame.seq >>> 0, true);
  v.setUint32(12, frame.payload.length, true);
  out.set(frame.payload, HEADER_BYTES);
  v.setUint32(16, crc32(out.subarray(HEADER_BYTES), crc32(out.subarray(0, 16))), true);
  return out;
}

/** Parses and checks one frame (not its order: see FrameReader). Throws ProtocolError naming the fault. */
export function decodeFrame(data: Uint8Array): Frame {
  if (data.length < HEADER_BYTES) throw new ProtocolError(`truncated frame: ${data.length} bytes, the header alone is ${HEADER_BYTES}`);
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (v.getUint16(0, true) !== MAGIC) throw new ProtocolError("not a migration frame (bad magic)");
  const version = v.getUint8(2);
  if (version !== PROTOCOL_VERSION) throw new ProtocolError(`protocol version ${version}; this build speaks ${PROTOCOL_VERSION}`);
  const length = v.getUint32(12, true);
  if (HEADER_BYTES + length !== data.length) {
    throw new ProtocolError(`${length + HEADER_BYTES > data.length ? "truncated" : "oversized"} frame: header says ${length} payload bytes, frame has ${data.length - HEADER_BYTES}`);
  }
  const payload = data.subarray(HEADER_BYTES);
  if (crc32(payload, crc32(data.subarray(0, 16))) !== v.getUint32(16, true)) throw new ProtocolError("corrupt frame: checksum mismatch");
  const type = v.getUint8(3);
  if (TYPE_NAMES[type] === undefined) throw new ProtocolError(`unknown message type ${type}`);
  return { type, session: v.getUint32(4, true), seq: v.getUint32(8, true), payload };
}

/** Numbers outgoing frames of one direction. */
export class FrameWriter {
  private seq = 0;
  constructor(readonly session: number) {}

  frame(type: MessageType, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
    return encodeFrame({ type, session: this.session, seq: ++this.seq, payload });
  }

  json(type: MessageType, value: unknown): Uint8Array {
    return this.frame(type, new TextEncoder().encode(JSON.stringify(value)));
  }

  get lastSeq(): number {
    return this.seq;
  }
}

/** Checks incoming frames of one direction: right session, each sequence number exactly once, in order. */
export class FrameReader {
  private expected = 1;
  constructor(readonly session: number) {}

  read(data: Uint8Array): Frame {
    const f = decodeFrame(data);
    if (f.session !== this.session) throw new ProtocolError(`frame of session ${f.session}, expected ${this.session}`);
    if (f.seq !== this.expected) {
      throw new ProtocolError(
        f.seq < this.expected
          ? `duplicated ${typeName(f.type)} frame ${f.seq} (expected ${this.expected})`
          : `out-of-order ${typeName(f.type)} frame ${f.seq} (expected ${this.expected}): a frame was lost or reordered`,
      );
    }
    this.expected++;
    return f;
  }
}

export function parseJson<T>(frame: Frame, fields: Record<string, "number" | "string" | "boolean" | "object">): T {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(frame.payload));
  } catch {
    throw new ProtocolError(`${typeName(frame.type)}: payload is not JSON`);
  }
  if (typeof value !== "object" || value === null) throw new ProtocolError(`${typeName(frame.type)}: payload is not a record`);
  for (const [name, type] of Object.entries(fields)) {
    if (typeof (value as Record<string, unknown>)[name] !== type) throw new ProtocolError(`${typeName(frame.type)}: field ${name} is missing or not a ${type}`);
  }
  return value as T;
}

export interface StartMessage {
  protocol: number;
  capabilities: string[];
  /** Page streams (1 when absent): the source has opened streams 1.. of the transport before Start. */
  streams?: number;
}

/**
 * The destination's word that the switchover committed and the VM runs there: its own times, in ms
 * from State's arrival (each later than the one before).
 */
export interface ResumedMessage {
  /** Until the last pages were applied and the state restored (paused). */
  restoredAfterMs: number;
  /** Until the commit point passed. */
  committedAfterMs: number;
  /** Until the vCPUs ran (equal to committedAfterMs for a VM that stays paused). */
  runningAfterMs: number;
  /** Until Resumed was sent. */
  answeredAfterMs: number;
}

export interface ConfigMessage {
  name: string;
  memoryBytes: number;
  vcpus: number;
  boot: "bare" | "sbi";
  bootargs: string;
  /** The VM was paused before the migration: it stays paused on whichever side ends up with it. */
  keepPaused?: boolean;
}
