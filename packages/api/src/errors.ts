/**
 * Errors of the management API and their gRPC status codes.
 *
 * A backend reports a refusal by throwing `ApiError(code, message)`: the client receives exactly that
 * code and message. The server turns anything else into INTERNAL with a generic message (the
 * original goes to the server's log, never to the caller).
 */

/** gRPC status codes (the numbers are fixed by the gRPC specification). */
export const GRPC_STATUS = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type GrpcStatusName = keyof typeof GRPC_STATUS;

/**
 * The closed set of codes an `ApiError` carries, each the gRPC status of the same name:
 *  - INVALID_ARGUMENT     a malformed request (validation, or a backend check of the same kind);
 *  - NOT_FOUND            the named VM / node / migration / member / saved state does not exist;
 *  - ALREADY_EXISTS       the name is taken;
 *  - FAILED_PRECONDITION  the object's state forbids the call (start a running VM);
 *  - RESOURCE_EXHAUSTED   no capacity: no node can take the VM;
 *  - ABORTED              a concurrent change won (stale owner or epoch): retry;
 *  - UNAVAILABLE          no leader, leader unreachable, shutting down: retry;
 *  - DEADLINE_EXCEEDED    the deadline passed (a write's outcome is then unknown);
 *  - UNAUTHENTICATED      no or wrong credentials;  PERMISSION_DENIED  refused for this caller;
 *  - CANCELLED            the call was cancelled (by the caller: a client sees it after `cancel()`);
 *  - INTERNAL             a bug; also what a client reports for a status outside this set
 *                         (UNKNOWN, UNIMPLEMENTED, ...), keeping the original in `grpcCode`.
 */
export const API_ERROR_CODES = [
  "INVALID_ARGUMENT",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "FAILED_PRECONDITION",
  "RESOURCE_EXHAUSTED",
  "UNAVAILABLE",
  "UNAUTHENTICATED",
  "PERMISSION_DENIED",
  "ABORTED",
  "DEADLINE_EXCEEDED",
  "INTERNAL",
  "CANCELLED",
] as const;
export type ApiErrorCode = (typeof API_ERROR_CODES)[number];

/** Trailer metadata listing the request fields at fault, comma-separated (INVALID_ARGUMENT only). */
export const INVALID_FIELDS_TRAILER_KEY = "hyperfleet-invalid-fields";

export interface ApiErrorOptions extends ErrorOptions {
  /** INVALID_ARGUMENT: the proto field names at fault ("memory_bytes"). */
  readonly fields?: readonly string[];
  /** The gRPC status received, when it differs from `code`'s (a client mapping UNIMPLEMENTED). */
  readonly grpcCode?: number;
}

/** A refusal of the management API, carried over gRPC as a status code and message. */
export class ApiError extends Error {
  override readonly name = "ApiError";
  readonly code: ApiErrorCode;
  /** INVALID_ARGUMENT: the fields at fault; empty otherwise. */
  readonly fields: readonly string[];
  /** The gRPC status code on the wire. */
  readonly grpcCode: number;

  constructor(code: ApiErrorCode, message: string, options?: ApiErrorOptions) {
    super(message, options);
    this.code = code;
    this.fields = options?.fields ?? [];
    this.grpcCode = options?.grpcCode ?? GRPC_STATUS[code];
  }
}

/** Raised by the helpers of this package on a misuse (bad server options, a closed client). */
export class ApiConfigError extends Error {
  override readonly name = "ApiConfigError";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

export function isApiErrorCode(value: unknown): value is ApiErrorCode {
  return typeof value === "string" && (API_ERROR_CODES as readonly string[]).includes(value);
}

/** The gRPC status of an API error code. */
export function grpcStatusOf(code: ApiErrorCode): number {
  return GRPC_STATUS[code];
}

/** The name of a gRPC status number ("NOT_FOUND"); `"UNKNOWN"` for numbers outside the spec. */
export function grpcStatusName(status: number): GrpcStatusName {
  for (const [name, value] of Object.entries(GRPC_STATUS)) if (value === status) return name as GrpcStatusName;
  return "UNKNOWN";
}

/**
 * The API code a client reports for a gRPC status: the code of the same name when it is in the
 * closed set, INTERNAL otherwise. Never called with OK.
 */
export function apiCodeOfGrpcStatus(status: number): ApiErrorCode {
  const name = grpcStatusName(status);
  return isApiErrorCode(name) ? name : "INTERNAL";
}

/**
 * How the cluster state machine's rejection codes (`@hyperfleet/cluster`, REJECTION_CODES) map to
 * API codes, for the backend to throw `rejectionToApiError(rejection.code, rejection.message)`.
 * STALE_EPOCH means another change of the VM's owner committed first: ABORTED (retry).
 */
export const REJECTION_API_CODES = {
  NOT_FOUND: "NOT_FOUND",
  ALREADY_EXISTS: "ALREADY_EXISTS",
  NO_CAPACITY: "RESOURCE_EXHAUSTED",
  INVALID_ARGUMENT: "INVALID_ARGUMENT",
  FAILED_PRECONDITION: "FAILED_PRECONDITION",
  STALE_EPOCH: "ABORTED",
} as const satisfies Record<string, ApiErrorCode>;

export type RejectionCode = keyof typeof REJECTION_API_CODES;

/** An `ApiError` for a cluster rejection; a code outside `REJECTION_API_CODES` becomes INTERNAL. */
export function rejectionToApiError(code: string, message: string, options?: ErrorOptions): ApiError {
  const apiCode: ApiErrorCode = Object.hasOwn(REJECTION_API_CODES, code) ? REJECTION_API_CODES[code as RejectionCode] : "INTERNAL";
  return new ApiError(apiCode, message, options);
}
