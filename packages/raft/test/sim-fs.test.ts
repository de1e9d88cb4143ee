import { describe, expect, it } from "vitest";
import { ensureDirDurable, FsError, joinPath, parentPath } from "../src/fs.js";
import { SeededRng } from "../src/rng.js";
import { SimFileSystem } from "../src/sim-fs.js";

const bytes = (...xs: number[]): Uint8Array => Uint8Array.from(xs);
const range = (from: number, n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);

/** Every file and directory, as "path" → content (hex) or "dir". */
function tree(fs: SimFileSystem, dir = "/", out = new Map<string, string>()): Map<string, string> {
  for (const name of fs.readdir(dir)) {
    const p = joinPath(dir, name);
    try {
      out.set(p, Buffer.from(fs.readFile(p)).toString("hex"));
    } catch (err) {
      if (!(err instanceof FsError) || err.code !== "EISDIR") throw err;
      out.set(p, "dir");
      tree(fs, p, out);
    }
  }
  return out;
}

function fileWithSyncedName(path = "/f"): { fs: SimFileSystem; fd: number } {
  const fs = new SimFileSystem();
  const fd = fs.openAppend(path);
  fs.syncDir(parentPath(path));
  return { fs, fd };
}

describe("sim-fs", () => {
  it("sim-fs - a crash keeps synced bytes and loses unsynced ones when no prefix is kept", () => {
    const { fs, fd } = fileWithSyncedName();
    fs.write(fd, bytes(1, 2, 3));
    fs.sync(fd);
    fs.write(fd, bytes(4, 5));
    expect(fs.readFile("/f")).toEqual(bytes(1, 2, 3, 4, 5));
    const report = fs.crash(new SeededRng(1), { keepUnsyncedPrefix: [0, 1] });
    expect(fs.readFile("/f")).toEqual(bytes(1, 2, 3));
    expect(report.lostBytes).toBe(2);
  });

  it("sim-fs - a torn write keeps a prefix of the unsynced tail, and every prefix length occurs over seeds", () => {
    const seen = new Set<number>();
    for (let seed = 0; seed < 200; seed++) {
      const { fs, fd } = fileWithSyncedName();
      fs.write(fd, range(0, 4));
      fs.sync(fd);
      fs.write(fd, range(4, 6));
      fs.crash(new SeededRng(seed), { keepUnsyncedPrefix: [1, 1] });
      const after = fs.readFile("/f");
      expect(after.length).toBeGreaterThanOrEqual(4);
      expect(after).toEqual(range(0, after.length));
      seen.add(after.length);
    }
    expect([...seen].sort((a, b) => a - b)).toEqual([4, 5, 6, 7, 8, 9, 10]);
  });

  it("sim-fs - corruption only touches the surviving unsynced bytes", () => {
    let corrupted = 0;
    for (let seed = 0; seed < 100; seed++) {
      const { fs, fd } = fileWithSyncedName();
      fs.write(fd, range(0, 50));
      fs.sync(fd);
      fs.write(fd, range(50, 50));
      const report = fs.crash(new SeededRng(seed), { keepUnsyncedPrefix: [1, 1], corruptTorn: [1, 1] });
      const after = fs.readFile("/f");
      expect(after.subarray(0, 50)).toEqual(range(0, 50));
      if (!Buffer.from(after).equals(Buffer.from(range(0, after.length)))) corrupted++;
      if (after.length === 50) expect(report.corruptedBytes).toBe(0);
    }
    expect(corrupted).toBeGreaterThan(50);
  });

  it("sim-fs - a created file vanishes in a crash unless its directory was synced", () => {
    const fs = new SimFileSystem();
    fs.mkdir("/d");
    fs.syncDir("/");
    const fd = fs.openAppend("/d/a");
    fs.write(fd, bytes(7));
    fs.sync(fd);
    fs.crash(new SeededRng(3), { keepUnsyncedMetadata: [0, 1] });
    expect(fs.exists("/d/a")).toBe(false);
    expect(fs.exists("/d")).toBe(true);

    const fd2 = fs.openAppend("/d/b");
    fs.write(fd2, bytes(8));
    fs.sync(fd2);
    fs.syncDir("/d");
    fs.crash(new SeededRng(3), { keepUnsyncedMetadata: [0, 1] });
    expect(fs.readFile("/d/b")).toEqual(bytes(8));
  });

  it("sim-fs - a rename is durable only after syncing its directory", () => {
    const { fs, fd } = fileWithSyncedName("/a");
    fs.write(fd, bytes(1));
    fs.sync(fd);
    fs.rename("/a", "/b");
    fs.crash(new SeededRng(5), { keepUnsyncedMetadata: [0, 1] });
    expect(fs.readdir("/")).toEqual(["a"]);
    fs.rename("/a", "/b");
    fs.syncDir("/");
    fs.crash(new SeededRng(5), { keepUnsyncedMetadata: [0, 1] });
    expect(fs.readdir("/")).toEqual(["b"]);
    expect(fs.readFile("/b")).toEqual(bytes(1));
  });

  it("sim-fs - unsynced directory changes survive as a prefix in the order they were made", () => {
    const outcomes = new Set<string>();
    for (let seed = 0; seed < 100; seed++) {
      const fs = new SimFileSystem();
      fs.close(fs.openAppend("/x"));
      fs.rename("/x", "/y");
      fs.close(fs.openAppend("/z"));
      fs.remove("/y");
      fs.crash(new SeededRng(seed), { keepUnsyncedMetadata: [1, 1] });
      outcomes.add(fs.readdir("/").join(","));
    }
    // Prefixes of [create x, rename x→y, create z, remove y].
    expect([...outcomes].sort()).toEqual(["", "x", "y", "y,z", "z"]);
  });

  it("sim-fs - an unsynced truncation may be undone by a crash, a synced one may not", () => {
    const outcomes = new Set<string>();
    for (let seed = 0; seed < 50; seed++) {
      const { fs, fd } = fileWithSyncedName();
      fs.write(fd, range(0, 8));
      fs.sync(fd);
      fs.truncate(fd, 3);
      fs.write(fd, bytes(0xaa));
      fs.crash(new SeededRng(seed), { keepUnsyncedPrefix: [1, 2] });
      outcomes.add(Buffer.from(fs.readFile("/f")).toString("hex"));
    }
    expect([...outcomes].sort()).toEqual(["000102", "0001020304050607", "000102aa"]);

    const { fs, fd } = fileWithSyncedName();
    fs.write(fd, range(0, 8));
    fs.truncate(fd, 3);
    fs.sync(fd);
    fs.crash(new SeededRng(1), { keepUnsyncedPrefix: [0, 1] });
    expect(fs.readFile("/f")).toEqual(range(0, 3));
  });

  it("sim-fs - truncate extends with zeros", () => {
    const { fs, fd } = fileWithSyncedName();
    fs.write(fd, bytes(1, 2));
    fs.truncate(fd, 1);
    fs.truncate(fd, 4);
    expect(fs.readFile("/f")).toEqual(bytes(1, 0, 0, 0));
  });

  it("sim-fs - the same seed gives the same disk after a crash, different seeds differ", () => {
    const run = (seed: number): string => {
      const fs = new SimFileSystem();
      const rng = new SeededRng(seed);
      fs.mkdir("/d");
      fs.syncDir("/");
      const fds = [0, 1, 2, 3].map((i) => fs.openAppend(`/d/f${i}`));
      for (let step = 0; step < 40; step++) {
        const fd = fds[rng.int(fds.length)]!;
        fs.write(fd, range(rng.int(256), 1 + rng.int(20)));
        if (rng.chance(1, 3)) fs.sync(fd);
        if (rng.chance(1, 10)) fs.syncDir("/d");
      }
      fs.crash(rng, { keepUnsyncedPrefix: [1, 2], corruptTorn: [1, 4], keepUnsyncedMetadata: [1, 2] });
      return JSON.stringify([...tree(fs)]);
    };
    expect(run(42)).toBe(run(42));
    const distinct = new Set([1, 2, 3, 4, 5, 6].map(run));
    expect(distinct.size).toBeGreaterThan(1);
  });

  it("sim-fs - file descriptors do not survive a crash", () => {
    const { fs, fd } = fileWithSyncedName();
    fs.crash(new SeededRng(1));
    expect(() => fs.write(fd, bytes(1))).toThrow(expect.objectContaining({ name: "FsError", code: "EBADF" }));
  });

  it("sim-fs - injected media damage: flipBit and truncateFile change current and durable content", () => {
    const { fs, fd } = fileWithSyncedName();
    fs.write(fd, bytes(0, 0, 0, 0));
    fs.sync(fd);
    fs.flipBit("/f", 9);
    expect(fs.readFile("/f")).toEqual(bytes(0, 2, 0, 0));
    expect(fs.durableContent("/f")).toEqual(bytes(0, 2, 0, 0));
    fs.truncateFile("/f", 3);
    fs.crash(new SeededRng(1), { keepUnsyncedPrefix: [0, 1] });
    expect(fs.readFile("/f")).toEqual(bytes(0, 2, 0));
    expect(() => fs.flipBit("/f", 24)).toThrow(/outside a 3-byte file/);
  });

  it("sim-fs - failNext makes one matching operation fail with EIO and change nothing", () => {
    const { fs, fd } = fileWithSyncedName("/wal-1");
    fs.failNext("write", "wal");
    expect(() => fs.write(fd, bytes(1))).toThrow(expect.objectContaining({ code: "EIO" }));
    expect(fs.size("/wal-1")).toBe(0);
    fs.write(fd, bytes(1));
    fs.failNext("sync");
    expect(() => fs.sync(fd)).toThrow(/EIO/);
    expect(fs.hasUnsyncedData("/wal-1")).toBe(true);
    fs.sync(fd);
    expect(fs.hasUnsyncedData("/wal-1")).toBe(false);
    expect(fs.stats.syncs).toBe(1);
  });

  it("sim-fs - haltAfter lets N mutating operations through, then fails every one until a crash", () => {
    const { fs, fd } = fileWithSyncedName();
    fs.haltAfter(2);
    fs.write(fd, bytes(1));
    fs.sync(fd);
    expect(() => fs.write(fd, bytes(2))).toThrow(/halted/);
    expect(() => fs.syncDir("/")).toThrow(/halted/);
    expect(fs.readFile("/f")).toEqual(bytes(1));
    fs.crash(new SeededRng(1));
    const fd2 = fs.openAppend("/f");
    fs.write(fd2, bytes(3));
    expect(fs.readFile("/f")).toEqual(bytes(1, 3));
  });

  it("sim-fs - file system errors carry POSIX codes", () => {
    const fs = new SimFileSystem();
    const code = (f: () => unknown): string => {
      try {
        f();
      } catch (err) {
        if (err instanceof FsError) return err.code;
        throw err;
      }
      return "none";
    };
    expect(code(() => fs.readFile("/nope"))).toBe("ENOENT");
    expect(code(() => fs.openAppend("/nope", { create: false }))).toBe("ENOENT");
    fs.mkdir("/d");
    expect(code(() => fs.mkdir("/d"))).toBe("EEXIST");
    expect(code(() => fs.mkdir("/x/y"))).toBe("ENOENT");
    fs.close(fs.openAppend("/d/f"));
    expect(code(() => fs.remove("/d"))).toBe("ENOTEMPTY");
    expect(code(() => fs.rename("/d/f", "/g"))).toBe("EXDEV");
    expect(code(() => fs.readFile("/d"))).toBe("EISDIR");
    expect(code(() => fs.readdir("/d/f"))).toBe("ENOTDIR");
    expect(code(() => fs.readFile("/d/../d/f"))).toBe("EINVAL");
    fs.remove("/d/f");
    fs.remove("/d");
    expect(fs.readdir("/")).toEqual([]);
  });

  it("sim-fs - ensureDirDurable makes every created ancestor survive a crash", () => {
    const fs = new SimFileSystem();
    ensureDirDurable(fs, "/a/b/c");
    ensureDirDurable(fs, "/a/b/c");
    fs.crash(new SeededRng(9), { keepUnsyncedMetadata: [0, 1] });
    expect(fs.exists("/a/b/c")).toBe(true);
    expect(parentPath("/a")).toBe("/");
    expect(parentPath("a")).toBe(".");
    expect(joinPath("/", "x")).toBe("/x");
  });
});
