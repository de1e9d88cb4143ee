export { SeededRng } from "./rng.js";
export { ConfChangeType, EMPTY_HARD_STATE, EntryType, MessageType, NONE, Role } from "./types.js";
export type {
  ConfChange, ConfState, Entry, HardState, Message, NodeId, ReadState, Ready, Rng, Snapshot, SnapshotMetadata, SoftState,
} from "./types.js";
export * from "./check/index.js";
export {
  decodeKvCommand, encodeKvCommand, KV_COMMAND_VERSION, KV_DEFAULT_MAX_CLIENTS, KV_MAX_CLIENT_ID_BYTES, KV_MAX_KEY_BYTES, KV_MAX_VALUE_BYTES,
  KV_SNAPSHOT_MAGIC, KV_SNAPSHOT_VERSION, KvCommandError, KvSnapshotError, KvStateError, KvStateMachine,
} from "./kv.js";
export type { KvApplied, KvCommand, KvErrorCode, KvResult } from "./kv.js";
export {
  CodecError, crc32, decodeConfState, decodeEntries, decodeEntry, decodeHardState, decodeMessage, decodeSnapshot, decodeSnapshotMetadata,
  encodeConfState, encodeEntries, encodeEntry, encodeHardState, encodeMessage, encodeSnapshot, encodeSnapshotMetadata, MESSAGE_FORMAT_VERSION,
} from "./codec.js";
export {
  ClusterMismatchError, MessageDecodeError, MessageTooLargeError, PeerRefusedError, PeerUnreachableError, RaftTransportError,
} from "./transport.js";
export type { RaftTransport, RaftTransportHandler, RefusalReason, SnapshotStatus } from "./transport.js";
export { CLUSTER_TOKEN_METADATA_KEY, defaultRaftMessageCodec, GrpcRaftTransport } from "./adapters/grpc-transport.js";
export type {
  GrpcRaftTransportOptions, GrpcTransportStats, ListenAddress, ListenOptions, PeerLinkState, PeerTransportStats, RaftMessageCodec,
} from "./adapters/grpc-transport.js";
export { RawNode } from "./raw-node.js";
export type { RawNodeConfig, RaftStatus, ProgressStatus } from "./raw-node.js";
export { newMessage, messageTypeName, roleName, isLocalMessageType, CAMPAIGN_TRANSFER_CONTEXT } from "./raft.js";
export type { RaftConfig, RaftLogger, MessageFields } from "./raft.js";
export { MemoryStorage, newBootstrapStorage } from "./memory-storage.js";
export {
  CompactedError, UnavailableError, SnapshotOutOfDateError, SnapshotTemporarilyUnavailableError,
  ENTRY_OVERHEAD_BYTES, entrySizeBytes, payloadSizeBytes, limitSize,
} from "./storage.js";
export type { Storage, InitialState } from "./storage.js";
export {
  encodeConfChange, decodeConfChange, applyConfChangeToConfState, describeConfChange, CONF_CHANGE_FORMAT_VERSION,
} from "./conf-change.js";
export {
  ProposalDroppedError, RaftConfigError, InvalidMessageError, ConfChangeError, ReadyProtocolError, RaftInvariantError,
} from "./errors.js";
export type { DropReason } from "./errors.js";
export { committedIndex, voteResult } from "./quorum.js";
export type { VoteResult } from "./quorum.js";
export type { ProgressState } from "./progress.js";
export { ensureDirDurable, FsError, joinPath, parentPath } from "./fs.js";
export type { Fd, FileSystem, FsErrorCode } from "./fs.js";
export { SimFileSystem } from "./sim-fs.js";
export type { CrashFaults, CrashReport, Ratio, SimFsOp, SimFsStats } from "./sim-fs.js";
export { NodeFileSystem } from "./adapters/node-fs.js";
export {
  Wal, WAL_FORMAT_MAJOR, WAL_FORMAT_MINOR, WAL_RECORD_BYTES_MAX, WAL_SEGMENT_SIZE_BYTES_DEFAULT, WalCorruptError, WalError, WalInvariantError,
} from "./wal.js";
export type { WalOptions, WalRepair, WalReplay, WalSnapshotMarker } from "./wal.js";
export {
  decodeSnapshotFile, encodeSnapshotFile, SNAPSHOT_FORMAT_MAJOR, SNAPSHOT_FORMAT_MINOR, SnapshotCorruptError, SnapshotError, SnapshotStore,
  SNAPSHOTS_RETAINED_DEFAULT,
} from "./snapshot-store.js";
export type { LoadedSnapshot, SnapshotLoadFailure, SnapshotStoreOptions } from "./snapshot-store.js";
export { DiskStorageError, openDiskStorage, persistReady, saveSnapshot } from "./disk-storage.js";
export type { DiskState, DiskStorageOptions } from "./disk-storage.js";
export * as sim from "./sim/index.js";
export {
  NotLeaderError, ProposalOutcomeUnknownError, ProposalRejectedError, RaftNode, RaftNodeConfigError, RaftNodeError, RaftNodeFailedError,
} from "./adapters/raft-node.js";
export type {
  MemberInfo, OutcomeUnknownReason, ProposalRejection, ProposeOptions, RaftNodeLogger, RaftNodeOptions, RaftNodeStats, RaftNodeStatus,
  ReplicatedStateMachine,
} from "./adapters/raft-node.js";
export { KV_BATCH_OPS_MAX, KvService, KvServiceError, kvReplicatedStateMachine, kvStateCrc, loadKvApi } from "./adapters/kv-service.js";
export type {
  KvApi, KvBatchOp, KvBatchRequest, KvBatchResponse, KvCasRequest, KvGetRequest, KvMethod, KvPutRequest, KvResponse, KvServiceOptions, KvStatus,
  KvStatusRequest, KvStatusResponse,
} from "./adapters/kv-service.js";
export {
  callKv, KvClient, KvClientError, KvConnections, kvMemberStatus, KvOutcomeUnknownError, KvRejectedError, KvUnavailableError,
} from "./adapters/kv-client.js";
export type { Attempt, KvClientOptions, KvClientStats } from "./adapters/kv-client.js";
