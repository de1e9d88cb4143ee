import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { apiErrorOf } from "../src/adapters/client.js";
import {
  API_ERROR_CODES, ApiError, apiCodeOfGrpcStatus, GRPC_STATUS, grpcStatusName, grpcStatusOf, INVALID_FIELDS_TRAILER_KEY, isApiErrorCode,
  REJECTION_API_CODES, rejectionToApiError,
} from "../src/errors.js";

function serviceError(code: number, details: string, trailer?: [string, string]): grpc.ServiceError {
  const metadata = new grpc.Metadata();
  if (trailer !== undefined) metadata.set(trailer[0], trailer[1]);
  return Object.assign(new Error(`${code} ${details}`), { code, details, metadata });
}

describe("api errors", () => {
  it("api errors - each code is the gRPC status of the same name, and back", () => {
    for (const code of API_ERROR_CODES) {
      const status = grpcStatusOf(code);
      expect(status).toBe(grpc.status[code]);
      expect(grpcStatusName(status)).toBe(code);
      expect(apiCodeOfGrpcStatus(status)).toBe(code);
    }
    expect(GRPC_STATUS.RESOURCE_EXHAUSTED).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(GRPC_STATUS.UNAUTHENTICATED).toBe(grpc.status.UNAUTHENTICATED);
  });

  it("api errors - statuses outside the closed set are INTERNAL, keeping the original", () => {
    for (const status of [grpc.status.UNKNOWN, grpc.status.UNIMPLEMENTED, grpc.status.OUT_OF_RANGE, grpc.status.DATA_LOSS]) {
      expect(apiCodeOfGrpcStatus(status)).toBe("INTERNAL");
    }
    const e = apiErrorOf(serviceError(grpc.status.UNIMPLEMENTED, "unknown method"));
    expect(e).toBeInstanceOf(ApiError);
    expect([e.code, e.grpcCode, e.message]).toEqual(["INTERNAL", grpc.status.UNIMPLEMENTED, "UNIMPLEMENTED: unknown method"]);
    expect(grpcStatusName(99)).toBe("UNKNOWN");
  });

  it("api errors - a client reads the invalid fields from the trailer", () => {
    const e = apiErrorOf(serviceError(grpc.status.INVALID_ARGUMENT, "name: is required; vcpus: ...", [INVALID_FIELDS_TRAILER_KEY, "name,vcpus"]));
    expect([e.code, e.message, e.fields]).toEqual(["INVALID_ARGUMENT", "name: is required; vcpus: ...", ["name", "vcpus"]]);
    expect(e.cause).toBeInstanceOf(Error);
  });

  it("api errors - ApiError is a typed Error with name, code and cause", () => {
    const cause = new Error("raft said no");
    const e = new ApiError("ABORTED", "epoch moved", { cause });
    expect(e).toBeInstanceOf(Error);
    expect([e.name, e.code, e.grpcCode, e.cause]).toEqual(["ApiError", "ABORTED", 10, cause]);
    expect(e.fields).toEqual([]);
    expect(isApiErrorCode("NOT_FOUND")).toBe(true);
    expect(isApiErrorCode("NO_CAPACITY")).toBe(false);
  });

  it("api errors - cluster rejections map to API codes (NO_CAPACITY: RESOURCE_EXHAUSTED, STALE_EPOCH: ABORTED)", () => {
    expect(REJECTION_API_CODES).toEqual({
      NOT_FOUND: "NOT_FOUND", ALREADY_EXISTS: "ALREADY_EXISTS", NO_CAPACITY: "RESOURCE_EXHAUSTED", INVALID_ARGUMENT: "INVALID_ARGUMENT",
      FAILED_PRECONDITION: "FAILED_PRECONDITION", STALE_EPOCH: "ABORTED",
    });
    const e = rejectionToApiError("NO_CAPACITY", "no node has 2 GiB free");
    expect([e.code, e.message]).toEqual(["RESOURCE_EXHAUSTED", "no node has 2 GiB free"]);
    expect(rejectionToApiError("SOMETHING_NEW", "x").code).toBe("INTERNAL");
    expect(rejectionToApiError("toString", "x").code).toBe("INTERNAL");
  });
});
