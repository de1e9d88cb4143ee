import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../src/adapters/client.js";
import { startApiServer } from "../src/adapters/server.js";
import { FakeBackend } from "./fake-backend.js";
import { apiErrorOf, TOKEN } from "./helpers.js";

function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

interface Pki {
  ca: Buffer;
  serverKey: Buffer;
  serverCert: Buffer;
  clientKey: Buffer;
  clientCert: Buffer;
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate (EC keys: fast to make). */
function makePki(dir: string): Pki {
  const run = (...args: string[]): void => {
    execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  run("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=hyperfleet-test-ca");
  writeFileSync(join(dir, "server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  run("req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost");
  run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext");
  run("req", ...ec, "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=operator");
  run("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "client.crt", "-days", "2");
  const read = (f: string): Buffer => readFileSync(join(dir, f));
  return { ca: read("ca.crt"), serverKey: read("server.key"), serverCert: read("server.crt"), clientKey: read("client.key"), clientCert: read("client.crt") };
}

describe.skipIf(!hasOpenssl())("api tls", () => {
  let dir: string;
  let pki: Pki;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "hyperfleet-api-tls-"));
    pki = makePki(dir);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("api tls - TLS with a token: a client trusting the CA gets through; plaintext does not", async () => {
    const server = await startApiServer({ backend: new FakeBackend(), port: 0, clusterToken: TOKEN, tls: { certChain: pki.serverCert, privateKey: pki.serverKey } });
    const good = new ApiClient(server.address, { token: TOKEN, tls: { rootCerts: pki.ca, serverNameOverride: "localhost" } });
    const plain = new ApiClient(server.address, { token: TOKEN, timeoutMs: 2000 });
    const noToken = new ApiClient(server.address, { tls: { rootCerts: pki.ca, serverNameOverride: "localhost" } });
    try {
      expect((await good.getVm({ name: "web" })).name).toBe("web");
      expect((await apiErrorOf(plain.getVm({ name: "web" }))).code).toBe("UNAVAILABLE");
      expect((await apiErrorOf(noToken.getVm({ name: "web" }))).code).toBe("UNAUTHENTICATED");
    } finally {
      good.close();
      plain.close();
      noToken.close();
      await server.close();
    }
  });

  it("api tls - mutual TLS without a token: the client certificate authenticates", async () => {
    const server = await startApiServer({
      backend: new FakeBackend(), port: 0, tls: { certChain: pki.serverCert, privateKey: pki.serverKey, clientCa: pki.ca },
    });
    const withCert = new ApiClient(server.address, { tls: { rootCerts: pki.ca, privateKey: pki.clientKey, certChain: pki.clientCert, serverNameOverride: "localhost" } });
    const withoutCert = new ApiClient(server.address, { timeoutMs: 2000, tls: { rootCerts: pki.ca, serverNameOverride: "localhost" } });
    try {
      expect((await withCert.listNodes()).nodes.length).toBe(3);
      expect((await apiErrorOf(withoutCert.listNodes())).code).toBe("UNAVAILABLE");
    } finally {
      withCert.close();
      withoutCert.close();
      await server.close();
    }
  });
});
