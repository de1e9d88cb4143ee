/**
 * Loads `proto/hyperfleet/v1/*.proto` with `@grpc/proto-loader`, once per process, for the server and
 * the client. The options (`PROTO_LOADER_OPTIONS`) decide the shapes documented in `types.ts`.
 */
import { fileURLToPath } from "node:url";
import type * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ApiConfigError } from "../errors.js";
import { API_METHODS, API_PACKAGE, API_PROTO_FILES, API_SERVICES, type ApiServiceName, type MethodSpec } from "../methods.js";

/** The proto root, found from `src/adapters/` (tests, tsx) and `dist/adapters/` (built code) alike. */
export const API_PROTO_ROOT = fileURLToPath(new URL("../../proto", import.meta.url));

/** How this package loads the protos; see `types.ts` for what each option means for the shapes. */
export const PROTO_LOADER_OPTIONS: Readonly<protoLoader.Options> = Object.freeze({
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [API_PROTO_ROOT],
});

/** One method as proto-loader describes it (serializers included). */
export interface LoadedMethod {
  readonly path: string;
  readonly requestSerialize: (value: unknown) => Buffer;
  readonly requestDeserialize: (bytes: Buffer) => unknown;
  readonly responseSerialize: (value: unknown) => Buffer;
  readonly responseDeserialize: (bytes: Buffer) => unknown;
}

export interface LoadedApi {
  readonly packageDefinition: protoLoader.PackageDefinition;
  readonly services: Readonly<Record<ApiServiceName, grpc.ServiceDefinition>>;
  /** The loaded method of a table entry. */
  method(spec: Pick<MethodSpec, "service" | "rpc">): LoadedMethod;
  /**
   * The enum fields of a message (camelCase field name → the enum's value names), e.g. for
   * "CreateVmRequest": bootMode, priority, restartPolicy.
   */
  enumFields(messageType: string): ReadonlyMap<string, readonly string[]>;
}

interface FieldDescriptor {
  readonly name: string;
  readonly type: string;
  readonly typeName: string;
}

let loaded: LoadedApi | null = null;

/** Loads the protos (first call) and returns the services; throws `ApiConfigError` if malformed. */
export function loadApi(): LoadedApi {
  if (loaded !== null) return loaded;
  const packageDefinition = protoLoader.loadSync([...API_PROTO_FILES], PROTO_LOADER_OPTIONS);
  const services = {} as Record<ApiServiceName, grpc.ServiceDefinition>;
  for (const service of API_SERVICES) {
    const definition = packageDefinition[`${API_PACKAGE}.${service}`] as unknown as grpc.ServiceDefinition | undefined;
    if (definition === undefined || typeof definition !== "object" || "format" in definition) {
      throw new ApiConfigError(`${API_PROTO_ROOT}: no service ${API_PACKAGE}.${service}`);
    }
    services[service] = definition;
  }
  for (const spec of API_METHODS) {
    const m = services[spec.service][spec.rpc];
    if (m === undefined) throw new ApiConfigError(`${API_PROTO_ROOT}: ${API_PACKAGE}.${spec.service} has no rpc ${spec.rpc}`);
  }
  const enumCache = new Map<string, ReadonlyMap<string, readonly string[]>>();
  const enumValues = (typeName: string): readonly string[] => {
    const full = typeName.startsWith(".") ? typeName.slice(1) : typeName.includes(".") ? typeName : `${API_PACKAGE}.${typeName}`;
    const def = packageDefinition[full] as { type?: { value?: { name: string }[] } } | undefined;
    const values = def?.type?.value;
    if (values === undefined) throw new ApiConfigError(`${API_PROTO_ROOT}: no enum ${full}`);
    return values.map((v) => v.name);
  };
  loaded = {
    packageDefinition,
    services,
    method(spec) {
      const m = services[spec.service][spec.rpc];
      if (m === undefined) throw new ApiConfigError(`no rpc ${spec.service}/${spec.rpc}`);
      return m as unknown as LoadedMethod;
    },
    enumFields(messageType) {
      const cached = enumCache.get(messageType);
      if (cached !== undefined) return cached;
      const def = packageDefinition[`${API_PACKAGE}.${messageType}`] as { type?: { field?: FieldDescriptor[] } } | undefined;
      const fields = def?.type?.field;
      if (fields === undefined) throw new ApiConfigError(`${API_PROTO_ROOT}: no message ${API_PACKAGE}.${messageType}`);
      const result = new Map<string, readonly string[]>();
      for (const f of fields) if (f.type === "TYPE_ENUM") result.set(f.name, enumValues(f.typeName));
      enumCache.set(messageType, result);
      return result;
    },
  };
  return loaded;
}
