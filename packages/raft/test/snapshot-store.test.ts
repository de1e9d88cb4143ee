import * as nodeFs from "node:fs";
import * as os from "node:os";
import * as nodePath from "node:path";
import { describe, expect, it } from "vitest";
import { NodeFileSystem } from "../src/adapters/node-fs.js";
import { DiskStorageError, openDiskStorage, persistReady, saveSnapshot } from "../src/disk-storage.js";
import { ensureDirDurable, joinPath } from "../src/fs.js";
import { SeededRng } from "../src/rng.js";
import { SimFileSystem } from "../src/sim-fs.js";
import { decodeSnapshotFile, encodeSnapshotFile, SnapshotCorruptError, SnapshotStore } from "../src/snapshot-store.js";
import type { Entry, HardState, Snapshot } from "../src/types.js";

const DIR = "/node/snap";

function snap(index: number, term: number, sizeBytes = 32): Snapshot {
  const data = new Uint8Array(sizeBytes);
  for (let i = 0; i < sizeBytes; i++) data[i] = (index + i * 3) & 0xff;
  return { metadata: { index, term, confState: { voters: ["n1", "n2", "n3"], learners: ["n4"] } }, data };
}

function ent(index: number, term: number): Entry {
  return { index, term, type: 0, data: Uint8Array.of(index & 0xff, term & 0xff) };
}

function ents(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(ent(i, term));
  return out;
}

function hs(term: number, commit: number, vote = ""): HardState {
  return { term, vote, commit };
}

function store(fs: SimFileSystem, retain?: number): SnapshotStore {
  ensureDirDurable(fs, DIR);
  return new SnapshotStore(fs, DIR, retain === undefined ? {} : { retain });
}

const NAME_7_3 = "0000000000000003-0000000000000007.snap";

describe("snapshot-store", () => {
  it("snapshot-store - an empty directory has no snapshot", () => {
    expect(store(new SimFileSystem()).loadNewest()).toBeNull();
  });

  it("snapshot-store - save writes <term>-<index>.snap durably, and loadNewest returns it", () => {
    const fs = new SimFileSystem();
    const s = store(fs);
    expect(s.save(snap(7, 3))).toBe(NAME_7_3);
    expect(fs.readdir(DIR)).toEqual([NAME_7_3]);
    fs.crash(new SeededRng(1), { keepUnsyncedPrefix: [0, 1], keepUnsyncedMetadata: [0, 1] });
    const loaded = new SnapshotStore(fs, DIR).loadNewest();
    expect(loaded).toEqual({ snapshot: snap(7, 3), file: NAME_7_3, skipped: [] });
  });

  it("snapshot-store - the file is a header (magic, version, length, crc) then the body", () => {
    const bytes = encodeSnapshotFile(snap(7, 3));
    expect(Buffer.from(bytes.subarray(0, 4)).toString("latin1")).toBe("HFSN");
    expect([bytes[4], bytes[5]]).toEqual([1, 0]);
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    expect(view.getUint32(8, true)).toBe(bytes.length - 20);
    expect(decodeSnapshotFile(bytes, "x")).toEqual(snap(7, 3));
    const newerMajor = bytes.slice();
    newerMajor[4] = 2;
    expect(() => decodeSnapshotFile(newerMajor, "x")).toThrow(/format 2.0 is not readable by format 1.0/);
    const newerMinor = bytes.slice();
    newerMinor[5] = 1;
    expect(() => decodeSnapshotFile(newerMinor, "x")).toThrow(/format 1.1 is not readable/);
  });

  it("snapshot-store - a save cut short by a crash leaves no snapshot and its temporary file is cleaned up", () => {
    const fs = new SimFileSystem();
    const s = store(fs);
    s.save(snap(5, 2));
    fs.failNext("rename");
    expect(() => s.save(snap(9, 2))).toThrow(/EIO/);
    fs.crash(new SeededRng(4), { keepUnsyncedPrefix: [1, 1], keepUnsyncedMetadata: [1, 1] });
    const reopened = new SnapshotStore(fs, DIR);
    expect(fs.readdir(DIR).some((n) => n.endsWith(".tmp"))).toBe(false);
    expect(reopened.loadNewest()?.snapshot).toEqual(snap(5, 2));
  });

  it("snapshot-store - a corrupt newer snapshot is skipped and reported when an older valid one exists", () => {
    const fs = new SimFileSystem();
    const s = store(fs);
    s.save(snap(5, 2));
    const newer = s.save(snap(9, 3));
    fs.flipBit(joinPath(DIR, newer), 8 * 30);
    const loaded = s.loadNewest()!;
    expect(loaded.snapshot).toEqual(snap(5, 2));
    expect(loaded.skipped).toHaveLength(1);
    expect(loaded.skipped[0]!.file).toBe(newer);
    expect(loaded.skipped[0]!.error.reason).toMatch(/CRC mismatch/);
  });

  it("snapshot-store - when every snapshot is corrupt, loadNewest throws naming each", () => {
    const fs = new SimFileSystem();
    const s = store(fs);
    const a = s.save(snap(5, 2));
    const b = s.save(snap(9, 3));
    fs.truncateFile(joinPath(DIR, a), 30);
    fs.truncateFile(joinPath(DIR, b), 10);
    let error: unknown = null;
    try {
      s.loadNewest();
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(SnapshotCorruptError);
    expect(String(error)).toContain(`${b}: snapshot file: truncated at length`);
    expect(String(error)).toContain(`${a}: header says`);
  });

  it("snapshot-store - a file whose content does not match its name is corrupt", () => {
    const fs = new SimFileSystem();
    const s = store(fs);
    const name = s.save(snap(5, 2));
    fs.rename(joinPath(DIR, name), joinPath(DIR, NAME_7_3));
    expect(() => s.load(NAME_7_3)).toThrow(/holds \(term 2, index 5\), not what its name says/);
  });

  it("snapshot-store - old snapshots are pruned to the newest N", () => {
    const fs = new SimFileSystem();
    const s = store(fs, 2);
    for (const [index, term] of [[3, 1], [10, 2], [7, 2], [12, 3]] as const) s.save(snap(index, term));
    expect(s.list()).toEqual(["0000000000000003-0000000000000012.snap", "0000000000000002-0000000000000010.snap"]);
    expect(() => store(fs, 0)).toThrow(/retain must be an integer ≥ 1/);
  });

  it("snapshot-store - on a real disk (NodeFileSystem): save, reload, and skip a truncated newer file", () => {
    const root = nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "hyperfleet-snap-"));
    try {
      const fs = new NodeFileSystem();
      const s = new SnapshotStore(fs, root, { retain: 3 });
      s.save(snap(5, 2, 10_000));
      const newer = s.save(snap(9, 3, 10_000));
      expect(nodeFs.readdirSync(root).sort()).toEqual(["0000000000000002-0000000000000005.snap", newer]);
      nodeFs.truncateSync(nodePath.join(root, newer), 5000);
      const loaded = new SnapshotStore(fs, root).loadNewest()!;
      expect(loaded.snapshot).toEqual(snap(5, 2, 10_000));
      expect(loaded.skipped.map((f) => f.file)).toEqual([newer]);
    } finally {
      nodeFs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("disk-storage", () => {
  it("disk-storage - a new directory opens empty and what is persisted comes back", () => {
    const fs = new SimFileSystem();
    const first = openDiskStorage(fs, "/data/n1", { meta: Uint8Array.of(1, 2) });
    expect(first).toMatchObject({ snapshot: null, hardState: hs(0, 0), entries: [], created: true, walRepair: null });
    persistReady(first, { snapshot: null, entries: ents(1, 3, 1), hardState: hs(1, 2, "n1"), mustSync: true });
    fs.crash(new SeededRng(3), { keepUnsyncedPrefix: [0, 1], keepUnsyncedMetadata: [0, 1] });
    const again = openDiskStorage(fs, "/data/n1");
    expect(again).toMatchObject({ snapshot: null, hardState: hs(1, 2, "n1"), entries: ents(1, 3, 1), created: false });
    expect(again.meta).toEqual(Uint8Array.of(1, 2));
    again.wal.close();
  });

  it("disk-storage - a Ready with a snapshot persists the snapshot, its marker, then entries", () => {
    const fs = new SimFileSystem();
    const d = openDiskStorage(fs, "/n1");
    persistReady(d, { snapshot: null, entries: ents(1, 4, 1), hardState: hs(1, 1), mustSync: true });
    persistReady(d, { snapshot: snap(20, 2), entries: ents(21, 22, 2), hardState: hs(2, 20), mustSync: true });
    d.wal.close();
    const r = openDiskStorage(fs, "/n1");
    expect(r.snapshot).toEqual(snap(20, 2));
    expect(r.entries).toEqual(ents(21, 22, 2));
    expect(r.hardState).toEqual(hs(2, 20));
    r.wal.close();
  });

  it("disk-storage - a crash between the snapshot file and the WAL marker is completed on open", () => {
    const fs = new SimFileSystem();
    const d = openDiskStorage(fs, "/n1");
    persistReady(d, { snapshot: null, entries: [...ents(1, 5, 1), ...ents(6, 8, 2)], hardState: hs(2, 3), mustSync: true });
    d.snapshots.save(snap(6, 2)); // agrees with the log: entries after 6 stay
    fs.crash(new SeededRng(5));
    let r = openDiskStorage(fs, "/n1");
    expect(r.snapshot?.metadata.index).toBe(6);
    expect(r.entries).toEqual(ents(7, 8, 2));
    expect(r.wal.snapshotMarker).toEqual({ index: 6, term: 2 });
    r.snapshots.save(snap(10, 3)); // from a leader, beyond the log: the log goes
    fs.crash(new SeededRng(6));
    r = openDiskStorage(fs, "/n1");
    expect(r.snapshot?.metadata.index).toBe(10);
    expect(r.entries).toEqual([]);
    persistReady(r, { snapshot: null, entries: ents(11, 11, 3), hardState: null, mustSync: true });
    r.wal.close();
    expect(openDiskStorage(fs, "/n1").entries).toEqual(ents(11, 11, 3));
  });

  it("disk-storage - a snapshot adopted on open raises a commit index that was left behind it", () => {
    const fs = new SimFileSystem();
    const d = openDiskStorage(fs, "/n1");
    persistReady(d, { snapshot: null, entries: ents(1, 2, 1), hardState: hs(1, 1), mustSync: true });
    persistReady(d, { snapshot: null, entries: [], hardState: hs(1, 2), mustSync: false }); // commit 2, not synced
    d.snapshots.save(snap(2, 1));
    fs.crash(new SeededRng(9), { keepUnsyncedPrefix: [0, 1] });
    const r = openDiskStorage(fs, "/n1");
    expect(r.snapshot?.metadata.index).toBe(2);
    expect(r.hardState.commit).toBe(2); // the snapshot is committed state
    expect(r.hardState.term).toBe(1);
  });

  it("disk-storage - a WAL that starts after a snapshot that is gone is refused", () => {
    const fs = new SimFileSystem();
    const d = openDiskStorage(fs, "/n1");
    persistReady(d, { snapshot: snap(4, 1), entries: ents(5, 6, 1), hardState: hs(1, 4), mustSync: true });
    d.wal.close();
    for (const name of fs.readdir("/n1/snap")) fs.remove(joinPath("/n1/snap", name));
    expect(() => openDiskStorage(fs, "/n1")).toThrow(DiskStorageError);
    expect(() => openDiskStorage(fs, "/n1")).toThrow(/starts after a snapshot at \(index 4, term 1\) but the newest valid snapshot is none/);
  });

  it("disk-storage - saveSnapshot compacts: old WAL segments are released and restart still works", () => {
    const fs = new SimFileSystem();
    const d = openDiskStorage(fs, "/n1", { segmentSizeBytes: 200 });
    for (let i = 1; i <= 30; i++) persistReady(d, { snapshot: null, entries: [ent(i, 1)], hardState: hs(1, i), mustSync: true });
    const before = d.wal.segmentNames();
    const released = saveSnapshot(d, snap(25, 1));
    expect(released).toBeGreaterThan(0);
    // The released ones are the oldest; writing the marker may have started one more segment.
    expect(d.wal.segmentNames().slice(0, before.length - released)).toEqual(before.slice(released));
    expect(fs.readdir("/n1/wal")).toEqual(d.wal.segmentNames());
    d.wal.close();
    const r = openDiskStorage(fs, "/n1", { segmentSizeBytes: 200 });
    expect(r.snapshot?.metadata).toMatchObject({ index: 25, term: 1 });
    expect(r.entries).toEqual(ents(26, 30, 1));
    expect(r.hardState).toEqual(hs(1, 30));
    r.wal.close();
  });
});
