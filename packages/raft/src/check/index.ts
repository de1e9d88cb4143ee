export { fromEvents, HistoryError, HistoryRecorder, isIndeterminate, toEvents, validateHistory } from "./history.js";
export type { HistoryEvent, Operation, OperationHandle } from "./history.js";
export { fromNondeterministic, hashString, ModelError, partitionByKey } from "./model.js";
export type { Model, NondeterministicModel, StepResult } from "./model.js";
export { checkEvents, checkOperations, describeCheckResult } from "./linearizability.js";
export type { CheckOptions, CheckResult, CheckVerdict, PartitionResult } from "./linearizability.js";
export { kvModel } from "./kv-model.js";
export type { KvInput, KvOutput, KvState } from "./kv-model.js";
