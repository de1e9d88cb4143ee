import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ApiClient } from "../src/adapters/client.js";
import type { CallContext, VmEvent, WatchEventsRequest } from "../src/types.js";
import { FakeBackend } from "./fake-backend.js";
import { apiErrorOf, type Harness, startHarness, TOKEN } from "./helpers.js";

/** A backend whose event stream never runs dry, counting what it produced. */
class FloodBackend extends FakeBackend {
  produced = 0;
  flowEnded = false;
  override watchVmEvents(_r: WatchEventsRequest, c: CallContext): AsyncIterable<VmEvent> {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    return (async function* flood(): AsyncGenerator<VmEvent> {
      try {
        // Bounded by the consumer: it cancels after a few reads.
        for (let i = 1; i <= 1_000_000 && !c.signal.aborted; i++) {
          self.produced = i;
          yield { sequence: i, atMs: i, vm: "web", event: "deleted", deleted: {} };
        }
      } finally {
        self.flowEnded = true;
      }
    })();
  }
}

describe("api client", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h.close());

  it("api client - a closed client refuses calls with UNAVAILABLE, streams included", async () => {
    const c = new ApiClient(h.server.address, { token: TOKEN });
    c.close();
    expect((await apiErrorOf(c.getVm({ name: "web" }))).code).toBe("UNAVAILABLE");
    const stream = apiErrorOf((async () => {
      for await (const _ of c.watchVmEvents()) break;
    })());
    expect((await stream).message).toBe("the client is closed");
    const console = c.attachConsole("web");
    expect((await apiErrorOf((async () => {
      for await (const _ of console.output) break;
    })())).code).toBe("UNAVAILABLE");
  });

  it("api client - an unreachable server is UNAVAILABLE", async () => {
    const c = new ApiClient("127.0.0.1:1", { token: TOKEN, timeoutMs: 2000 });
    try {
      expect((await apiErrorOf(c.listNodes())).code).toBe("UNAVAILABLE");
    } finally {
      c.close();
    }
  });

  it("api client - a signal aborted before the call sends nothing", async () => {
    const before = h.backend.calls.length;
    const e = await apiErrorOf(h.client.getVm({ name: "web" }, { signal: AbortSignal.abort() }));
    expect(e.code).toBe("CANCELLED");
    expect(h.backend.calls.length).toBe(before);
  });

  it("api client - rejects a non-positive default timeout", () => {
    expect(() => new ApiClient(h.server.address, { timeoutMs: 0 })).toThrow(/timeoutMs/);
  });

  it("api client - a stream can be iterated only once", async () => {
    const stream = h.client.watchVmEvents();
    const iterator = stream[Symbol.asyncIterator]();
    const pending = iterator.next();
    await expect((async () => {
      for await (const _ of stream) break;
    })()).rejects.toThrow(/only once/);
    stream.cancel();
    expect((await pending).done).toBe(true);
  });

  it("api client - stream ends are counted: OK when the stream ends, CANCELLED when the client leaves", async () => {
    h.requests.length = 0;
    const { migrationId } = await h.client.migrate({ vm: "web" });
    for await (const _ of h.client.watchMigration({ migrationId })) {
      // to the end
    }
    for await (const _ of h.client.watchMigration({ migrationId })) break;
    await vi.waitFor(() => expect(h.requests.map((r) => `${r.method} ${r.code}`)).toEqual([
      "Migrations/Migrate OK", "Migrations/Watch OK", "Migrations/Watch OK",
    ]));
    const stream = h.client.watchVmEvents();
    await vi.waitFor(() => expect(h.backend.streamsOpen).toBe(1));
    stream.cancel();
    await vi.waitFor(() => expect(h.requests.at(-1)).toMatchObject({ method: "Vms/WatchEvents", code: "CANCELLED" }));
  });

  it("api client - a slow reader slows the producer (the server follows gRPC flow control)", async () => {
    const backend = new FloodBackend();
    const flood = await startHarness({ backend });
    try {
      const stream = flood.client.watchVmEvents();
      let read = 0;
      for await (const e of stream) {
        read++;
        expect(e.sequence).toBe(read);
        if (read === 10) break;
        if (read === 5) await new Promise((resolve) => setTimeout(resolve, 300));
      }
      // 300 ms is time enough to produce far more than 1,000,000 small events if nothing held it back.
      expect(backend.produced).toBeLessThan(50_000);
      await vi.waitFor(() => expect(backend.flowEnded).toBe(true));
    } finally {
      await flood.close();
    }
  });
});
