export { NatsTransport, migrationSubject } from "./adapters/nats.js";
export { LocalNatsServer } from "./adapters/nats-server.js";
export { systemTimers } from "./adapters/system-timers.js";
export type { Timers } from "./timers.js";
export * from "./codec/index.js";
export { MigrationDestination } from "./destination.js";
export type { IncomingResult } from "./destination.js";
export {
  decodeFrame, encodeFrame, FrameReader, FrameWriter, HEADER_BYTES, MAX_FRAME_BYTES, MessageType, PROTOCOL_VERSION, ProtocolError,
} from "./protocol.js";
export type { ConfigMessage, Frame, ResumedMessage, StartMessage } from "./protocol.js";
export { MigrationError, MigrationSource } from "./source.js";
export type { MigrationOptions, MigrationProgress, MigrationResult, NoConvergencePolicy, SourceDevices, SourceVm } from "./source.js";
export { memoryLink, TransportError } from "./transport.js";
export type { DirectionFaults, LinkFaults, MigrationTransport } from "./transport.js";
