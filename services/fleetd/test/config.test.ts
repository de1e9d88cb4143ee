import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FleetdConfigError, parseConfig } from "../src/config.js";

const GOOD: Record<string, string> = {
  HYPERFLEET_ID: "n1",
  HYPERFLEET_CLUSTER_ID: "c1",
  HYPERFLEET_CLUSTER_TOKEN: "secret",
  HYPERFLEET_DATA_DIR: "/tmp/fleetd-n1",
  HYPERFLEET_LISTEN_API: "127.0.0.1:7001",
  HYPERFLEET_LISTEN_RAFT: "127.0.0.1:7101",
  HYPERFLEET_LISTEN_HTTP: "127.0.0.1:7201",
  HYPERFLEET_PEERS: "n1=127.0.0.1:7101,n2=127.0.0.1:7102",
  HYPERFLEET_NATS_URL: "nats://127.0.0.1:4222",
};

const dir = mkdtempSync(join(tmpdir(), "fleetd-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function message(argv: string[], env: Record<string, string | undefined>): string {
  try {
    parseConfig(argv, env);
  } catch (e) {
    expect(e).toBeInstanceOf(FleetdConfigError);
    return (e as Error).message;
  }
  throw new Error("the configuration was accepted");
}

describe("config", () => {
  it("config - reads the environment with defaults", () => {
    const c = parseConfig([], GOOD);
    expect(c.id).toBe("n1");
    expect(c.listenApi).toEqual({ host: "127.0.0.1", port: 7001 });
    expect(c.peers).toEqual([{ id: "n1", raftAddress: "127.0.0.1:7101" }, { id: "n2", raftAddress: "127.0.0.1:7102" }]);
    expect(c.initialVoters).toEqual(["n1", "n2"]);
    expect(c.memoryMib).toBe(512);
    expect(c.imageDir.endsWith(join("guests", "build"))).toBe(true);
    expect(c.tickMs).toBe(10);
  });

  it("config - flags win over the environment, which wins over the file", () => {
    const file = join(dir, "fleetd.json");
    writeFileSync(file, JSON.stringify({ memoryMib: 100, vcpus: 2, "tick-ms": 20, id: "from-file" }));
    const c = parseConfig(["--config", file, "--memory-mib=300"], { ...GOOD, HYPERFLEET_MEMORY_MIB: "200", HYPERFLEET_VCPUS: "3" });
    expect(c.memoryMib).toBe(300);
    expect(c.vcpus).toBe(3);
    expect(c.tickMs).toBe(20);
    expect(c.id).toBe("n1");
    const onlyFile = parseConfig(["--config", file], { ...GOOD, HYPERFLEET_ID: undefined });
    expect(onlyFile.id).toBe("from-file");
  });

  it("config - names each bad field in one message", () => {
    const cases: [Record<string, string | undefined>, string[], RegExp][] = [
      [{ HYPERFLEET_ID: undefined }, [], /--id \(or HYPERFLEET_ID\) is required/],
      [{ HYPERFLEET_ID: "bad id" }, [], /--id: use 1-63 letters/],
      [{ HYPERFLEET_CLUSTER_ID: "" }, [], /--cluster-id \(or HYPERFLEET_CLUSTER_ID\) is required/],
      [{ HYPERFLEET_CLUSTER_TOKEN: undefined }, [], /--cluster-token \(or HYPERFLEET_CLUSTER_TOKEN\) is required/],
      [{ HYPERFLEET_CLUSTER_TOKEN: "a b" }, [], /--cluster-token must not contain whitespace/],
      [{ HYPERFLEET_DATA_DIR: undefined }, [], /--data-dir .* is required/],
      [{ HYPERFLEET_LISTEN_API: "localhost" }, [], /--listen-api: expected HOST:PORT/],
      [{ HYPERFLEET_LISTEN_RAFT: "127.0.0.1:70000" }, [], /--listen-raft: port must be 0 to 65535/],
      [{ HYPERFLEET_LISTEN_HTTP: undefined }, [], /--listen-http .* is required/],
      [{ HYPERFLEET_PEERS: "n1" }, [], /--peers: expected id=HOST:PORT/],
      [{ HYPERFLEET_PEERS: "n1=127.0.0.1:1,n1=127.0.0.1:2" }, [], /--peers: node n1 is listed twice/],
      [{ HYPERFLEET_INITIAL_VOTERS: " , " }, [], /--initial-voters: no founding voters/],
      [{ HYPERFLEET_NATS_URL: "127.0.0.1:4222" }, [], /--nats-url: expected nats:\/\/HOST:PORT/],
      [{}, ["--memory-mib", "0"], /--memory-mib must be an integer from 1 to 2047, got "0"/],
      [{}, ["--vcpus", "two"], /--vcpus must be an integer from 1 to 1024/],
      [{}, ["--tick-ms", "1.5"], /--tick-ms must be an integer/],
      [{}, ["--election-ticks", "4", "--heartbeat-ticks", "4"], /--heartbeat-ticks \(4\) must be less than --election-ticks \(4\)/],
      [{}, ["--lease-ms", "10"], /--lease-ms must be an integer from 1000 to 60000/],
      [{}, ["--bogus", "1"], /unknown flag --bogus/],
      [{}, ["--id"], /--id needs a value/],
      [{}, ["stray"], /unexpected argument "stray"/],
      [{}, ["--config", join(dir, "missing.json")], /--config .*missing\.json/],
    ];
    for (const [env, argv, expected] of cases) {
      expect(message(argv, { ...GOOD, ...env })).toMatch(expected);
    }
  });

  it("config - gateways: [HOST:]PORT=VM entries, the host defaulting to the API's; a bad entry is named", () => {
    expect(parseConfig([], GOOD).gateways).toEqual([]);
    expect(parseConfig(["--gateways", "7300=kv, 0.0.0.0:7301=web-1"], GOOD).gateways).toEqual([
      { listen: { host: "127.0.0.1", port: 7300 }, vm: "kv" },
      { listen: { host: "0.0.0.0", port: 7301 }, vm: "web-1" },
    ]);
    expect(message(["--gateways", "7300"], GOOD)).toBe('--gateways: expected [HOST:]PORT=VM, got "7300"');
    expect(message(["--gateways", "7300=KV"], GOOD)).toBe('--gateways: bad VM name "KV" in "7300=KV"');
    expect(message(["--gateways", "70000=kv"], GOOD)).toMatch(/^--gateways kv: port must be 0 to 65535/);
    expect(message(["--gateways", "7300=kv,127.0.0.1:7300=web"], GOOD)).toBe("--gateways: 127.0.0.1:7300 is listed twice");
  });

  it("config - refuses unknown fields in the file", () => {
    const file = join(dir, "unknown.json");
    writeFileSync(file, JSON.stringify({ colour: "blue" }));
    expect(message(["--config", file], GOOD)).toMatch(/unknown field "colour"/);
  });

  it("config - the program exits 2 with one line naming the field", async () => {
    const { spawnSync } = await import("node:child_process");
    const { fleetdMainPath } = await import("../src/local-cluster.js");
    const r = spawnSync(process.execPath, [fleetdMainPath(), "--memory-mib", "x"], { env: { ...process.env, ...GOOD }, encoding: "utf8", timeout: 20_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual(['fleetd: --memory-mib must be an integer from 1 to 2047, got "x"']);
  });
});
