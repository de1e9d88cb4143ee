import { ApiClient, type ApiClientOptions } from "../src/adapters/client.js";
import { type ApiServer, type ApiServerOptions, startApiServer } from "../src/adapters/server.js";
import { ApiError } from "../src/errors.js";
import type { ApiLogger, Backend } from "../src/types.js";
import { FakeBackend } from "./fake-backend.js";

export const TOKEN = "s3cret-cluster-token";

/** Keeps what the server logs. */
export class RecordingLogger implements ApiLogger {
  readonly entries: { level: "warn" | "error"; fields: Record<string, unknown>; message: string }[] = [];
  warn(fields: Record<string, unknown>, message: string): void {
    this.entries.push({ level: "warn", fields, message });
  }
  error(fields: Record<string, unknown>, message: string): void {
    this.entries.push({ level: "error", fields, message });
  }
}

export interface Harness {
  readonly backend: FakeBackend;
  readonly server: ApiServer;
  readonly client: ApiClient;
  readonly logger: RecordingLogger;
  readonly requests: { method: string; code: string; durationMs: number }[];
  /** Another client of the same server. */
  connect(options?: ApiClientOptions): ApiClient;
  close(): Promise<void>;
}

/** A server on loopback (port 0) in front of `backend`, and a client with the right token. */
export async function startHarness(options: { backend?: Backend; server?: Partial<ApiServerOptions> } = {}): Promise<Harness> {
  const backend = options.backend ?? new FakeBackend();
  const logger = new RecordingLogger();
  const requests: Harness["requests"] = [];
  const server = await startApiServer({
    backend,
    port: 0,
    clusterToken: TOKEN,
    logger,
    onRequest: (method, code, durationMs) => requests.push({ method, code, durationMs }),
    closeGraceMs: 200,
    ...options.server,
  });
  const clients: ApiClient[] = [];
  const connect = (clientOptions: ApiClientOptions = { token: TOKEN, timeoutMs: 5000 }): ApiClient => {
    const c = new ApiClient(server.address, clientOptions);
    clients.push(c);
    return c;
  };
  const client = connect();
  return {
    backend: backend as FakeBackend,
    server,
    client,
    logger,
    requests,
    connect,
    async close() {
      for (const c of clients) c.close();
      await server.close();
    },
  };
}

/** The ApiError a promise rejects with (fails the test if it resolves or rejects otherwise). */
export async function apiErrorOf(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw new Error(`expected an ApiError, got ${String(e)}`, { cause: e });
  }
  throw new Error("expected an ApiError, but the call succeeded");
}
