import * as nodeFs from "node:fs";
import * as os from "node:os";
import * as nodePath from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NodeFileSystem } from "../src/adapters/node-fs.js";
import { ByteWriter, crc32, writeEntries } from "../src/codec.js";
import { ensureDirDurable, type FileSystem, FsError, joinPath } from "../src/fs.js";
import { SeededRng } from "../src/rng.js";
import { type CrashFaults, SimFileSystem } from "../src/sim-fs.js";
import type { Entry, HardState } from "../src/types.js";
import { Wal, WalCorruptError, WalError, WalInvariantError, type WalReplay } from "../src/wal.js";

const DIR = "/node/wal";
const META = new TextEncoder().encode("n1@cluster-a");
const FIRST_SEGMENT = "0000000000000001-0000000000000001.wal";

function ent(index: number, term: number, sizeBytes = 8): Entry {
  const data = new Uint8Array(sizeBytes);
  for (let i = 0; i < sizeBytes; i++) data[i] = (index * 31 + term * 7 + i) & 0xff;
  return { index, term, type: 0, data };
}

function ents(from: number, to: number, term: number, sizeBytes = 8): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(ent(i, term, sizeBytes));
  return out;
}

function hs(term: number, commit: number, vote = ""): HardState {
  return { term, vote, commit };
}

function createWal(fs: FileSystem, segmentSizeBytes?: number): Wal {
  ensureDirDurable(fs, "/node");
  return Wal.create(fs, DIR, META, segmentSizeBytes === undefined ? {} : { segmentSizeBytes });
}

function reopen(fs: FileSystem, segmentSizeBytes?: number): { wal: Wal; replay: WalReplay } {
  return Wal.open(fs, DIR, segmentSizeBytes === undefined ? {} : { segmentSizeBytes });
}

function lastSegmentPath(fs: FileSystem): string {
  const names = fs.readdir(DIR).filter((n) => n.endsWith(".wal"));
  return joinPath(DIR, names[names.length - 1]!);
}

/** A record framed as the module comment of wal.ts describes, built independently of wal.ts. */
function rawRecord(type: number, body: Uint8Array): Uint8Array {
  const payload = new Uint8Array(1 + body.length);
  payload[0] = type;
  payload.set(body, 1);
  const out = new Uint8Array(8 + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, payload.length, true);
  view.setUint32(4, crc32(payload), true);
  out.set(payload, 8);
  return out;
}

/**
 * A WAL with five synced saves in one segment; returns where each save's records start so tests
 * can damage a chosen record. Deterministic: tests rebuild it for every damage they try.
 */
function fiveSaves(): { fs: SimFileSystem; path: string; starts: number[]; size: number } {
  const fs = new SimFileSystem();
  const wal = createWal(fs);
  const path = joinPath(DIR, FIRST_SEGMENT);
  const starts: number[] = [];
  for (let i = 1; i <= 5; i++) {
    starts.push(fs.size(path));
    wal.save(null, [ent(i, 1, 20)], true);
  }
  wal.close();
  return { fs, path, starts, size: fs.size(path) };
}

describe("wal", () => {
  it("wal - a new WAL has one segment and replays empty", () => {
    const fs = new SimFileSystem();
    createWal(fs).close();
    expect(fs.readdir(DIR)).toEqual([FIRST_SEGMENT]);
    const { wal, replay } = reopen(fs);
    expect(replay).toEqual({ hardState: hs(0, 0), entries: [], snapshot: { index: 0, term: 0 }, meta: META, repaired: null });
    expect(() => Wal.create(fs, DIR, META)).toThrow(/already exists/);
    wal.close();
  });

  it("wal - creation is atomic: a crash during it leaves no WAL, and a retry succeeds", () => {
    const fs = new SimFileSystem();
    ensureDirDurable(fs, "/node");
    fs.failNext("rename");
    expect(() => Wal.create(fs, DIR, META)).toThrow(/EIO/);
    fs.crash(new SeededRng(1));
    expect(Wal.exists(fs, DIR)).toBe(false);
    createWal(fs).close();
    expect(reopen(fs).replay.entries).toEqual([]);
  });

  it("wal - saves replay in order: entries, hard state, meta", () => {
    const fs = new SimFileSystem();
    const wal = createWal(fs);
    wal.save(hs(1, 0, "n1"), ents(1, 3, 1), true);
    wal.save(hs(1, 2, "n1"), ents(4, 4, 1), false);
    wal.save(hs(2, 3), [], true);
    wal.close();
    const { replay } = reopen(fs);
    expect(replay.entries).toEqual(ents(1, 4, 1));
    expect(replay.hardState).toEqual(hs(2, 3));
    expect(replay.meta).toEqual(META);
    expect(replay.repaired).toBeNull();
  });

  it("wal - later appends replace a conflicting suffix, as Raft does", () => {
    const fs = new SimFileSystem();
    const wal = createWal(fs);
    wal.save(null, ents(1, 5, 1), true);
    wal.save(null, ents(3, 4, 2), true);
    expect(wal.lastIndex).toBe(4);
    wal.save(null, ents(5, 6, 2), true);
    wal.close();
    expect(reopen(fs).replay.entries).toEqual([...ents(1, 2, 1), ...ents(3, 6, 2)]);
  });

  it("wal - one fsync per synced save, whatever the batch size, and none for an unsynced one", () => {
    const fs = new SimFileSystem();
    const wal = createWal(fs);
    const before = fs.stats.syncs;
    wal.save(hs(1, 0), ents(1, 64, 1, 100), true);
    expect(fs.stats.syncs - before).toBe(1);
    wal.save(null, ents(65, 65, 1), false);
    expect(fs.stats.syncs - before).toBe(1);
    wal.save(null, [], true); // flushes the unsynced save
    expect(fs.stats.syncs - before).toBe(2);
    wal.save(null, [], true); // nothing to flush
    expect(fs.stats.syncs - before).toBe(2);
    wal.close();
  });

  it("wal - segments roll over at the size limit, named by sequence and first index, and replay across them", () => {
    const fs = new SimFileSystem();
    const wal = createWal(fs, 400);
    for (let i = 1; i <= 30; i++) wal.save(hs(1, Math.min(i - 1, 15)), [ent(i, 1, 40)], true);
    wal.save(null, ents(20, 22, 2), true); // a rewrite of uncommitted entries, crossing segments
    wal.close();
    const names = wal.segmentNames();
    expect(names.length).toBeGreaterThan(4);
    expect(fs.readdir(DIR)).toEqual(names);
    names.forEach((n, i) => expect(n.startsWith(String(i + 1).padStart(16, "0"))).toBe(true));
    const { wal: w2, replay } = reopen(fs, 400);
    expect(replay.entries).toEqual([...ents(1, 19, 1, 40), ...ents(20, 22, 2)]);
    expect(replay.hardState).toEqual(hs(1, 15));
    // The first index in a name is the last index + 1 when the segment started.
    const firstIndexes = names.map((n) => Number(n.slice(17, 33)));
    expect(firstIndexes[0]).toBe(1);
    for (let i = 1; i < firstIndexes.length; i++) expect(firstIndexes[i]).toBeGreaterThan(firstIndexes[i - 1]!);
    w2.close();
  });

  it("wal - truncated at every byte offset of the last record: recovered, prior records kept", () => {
    const { starts, size } = fiveSaves();
    const lastStart = starts[4]!;
    for (let cut = lastStart; cut < size; cut++) {
      const { fs, path } = fiveSaves();
      fs.truncateFile(path, cut);
      const { wal, replay } = reopen(fs);
      expect(replay.entries).toEqual([1, 2, 3, 4].map((i) => ent(i, 1, 20)));
      if (cut === lastStart) {
        expect(replay.repaired).toBeNull();
      } else {
        expect(replay.repaired).toMatchObject({ segment: FIRST_SEGMENT, offsetBytes: lastStart, truncatedBytes: cut - lastStart, removedSegment: false });
      }
      expect(fs.size(path)).toBe(lastStart);
      expect(fs.hasUnsyncedData(path)).toBe(false);
      // The repaired WAL takes appends and replays them.
      wal.save(null, [ent(5, 2, 3)], true);
      wal.close();
      expect(reopen(fs).replay.entries.map((e) => [e.index, e.term])).toEqual([[1, 1], [2, 1], [3, 1], [4, 1], [5, 2]]);
    }
  });

  it("wal - a flipped bit anywhere in the last record: the record is cut", () => {
    const { starts, size } = fiveSaves();
    const lastStart = starts[4]!;
    for (let bit = lastStart * 8; bit < size * 8; bit++) {
      const { fs, path } = fiveSaves();
      fs.flipBit(path, bit);
      const { wal, replay } = reopen(fs);
      expect(replay.entries).toEqual([1, 2, 3, 4].map((i) => ent(i, 1, 20)));
      expect(replay.repaired).toMatchObject({ offsetBytes: lastStart, truncatedBytes: size - lastStart });
      wal.close();
    }
  });

  it("wal - a flipped bit anywhere in a middle record: WalCorruptError naming segment and offset", () => {
    const { starts } = fiveSaves();
    const [from, to] = [starts[2]!, starts[3]!];
    for (let bit = from * 8; bit < to * 8; bit++) {
      const { fs, path } = fiveSaves();
      fs.flipBit(path, bit);
      let error: unknown = null;
      try {
        reopen(fs);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(WalCorruptError);
      expect(error).toMatchObject({ segment: FIRST_SEGMENT, offsetBytes: from });
      expect(String(error)).toMatch(new RegExp(`segment ${FIRST_SEGMENT} corrupt at offset ${from}: .*a valid record follows at offset ${to}`));
      // Nothing was cut.
      expect(fs.size(path)).toBe(starts[4]! + (to - from));
    }
  });

  it("wal - damage in a segment that is not the last is never repaired", () => {
    const fs = new SimFileSystem();
    const wal = createWal(fs, 200);
    for (let i = 1; i <= 12; i++) wal.save(null, [ent(i, 1, 40)], true);
    wal.close();
    const names = wal.segmentNames();
    expect(names.length).toBeGreaterThan(2);
    const second = joinPath(DIR, names[1]!);
    fs.truncateFile(second, fs.size(second) - 1);
    expect(() => reopen(fs, 200)).toThrow(new RegExp(`${names[1]} corrupt at offset \\d+: .*not the last`));
  });

  it("wal - trailing zeros (preallocation) after the last record are cut", () => {
    const fs = new SimFileSystem();
    const wal = createWal(fs);
    wal.save(hs(1, 1), ents(1, 2, 1), true);
    wal.close();
    const path = joinPath(DIR, FIRST_SEGMENT);
    const size = fs.size(path);
    const fd = fs.openAppend(path);
    fs.write(fd, new Uint8Array(4096));
    fs.sync(fd);
    fs.close(fd);
    const { replay } = reopen(fs);
    expect(replay.entries).toEqual(ents(1, 2, 1));
    expect(replay.repaired).toMatchObject({ offsetBytes: size, truncatedBytes: 4096, reason: "zero record length" });
  });

  it("wal - a torn last batch (crash mid-write) is cut; what was synced before survives", () => {
    const outcomes = new Set<string>();
    for (let seed = 0; seed < 60; seed++) {
      const fs = new SimFileSystem();
      const wal = createWal(fs);
      wal.save(hs(1, 2), ents(1, 3, 1, 30), true);
      wal.save(hs(2, 3), ents(4, 6, 2, 30), false);
      fs.crash(new SeededRng(seed), { keepUnsyncedPrefix: [1, 1] });
      const { replay } = reopen(fs);
      const last = replay.entries[replay.entries.length - 1]!.index;
      // Either the whole entries record survived or none of it; the hard state only after it.
      expect([3, 6]).toContain(last);
      expect(replay.entries).toEqual([...ents(1, 3, 1, 30), ...ents(4, 6, 2, 30)].slice(0, last));
      if (last === 3) expect(replay.hardState).toEqual(hs(1, 2));
      outcomes.add(`${last}/${replay.hardState.term}/${replay.repaired === null ? "clean" : "cut"}`);
    }
    // Torn inside the entries record, or inside the hard state record (clean cuts are rare here).
    expect(outcomes.has("3/1/cut") && outcomes.has("6/1/cut")).toBe(true);
    for (const o of outcomes) expect(["3/1/clean", "3/1/cut", "6/1/cut", "6/2/clean"]).toContain(o);
  });

  it("wal - a crash between write and fsync loses the unsynced batch; everything synced is intact", () => {
    const fs = new SimFileSystem();
    const wal = createWal(fs);
    wal.save(hs(1, 0, "n1"), ents(1, 10, 1), true);
    wal.save(hs(1, 10, "n1"), ents(11, 20, 1), false);
    fs.crash(new SeededRng(7), { keepUnsyncedPrefix: [0, 1] });
    expect(() => wal.save(null, [ent(21, 1)], true)).toThrow(WalError);
    const { wal: w2, replay } = reopen(fs);
    expect(replay.entries).toEqual(ents(1, 10, 1));
    expect(replay.hardState).toEqual(hs(1, 0, "n1"));
    expect(replay.repaired).toBeNull();
    w2.close();
  });

  it("wal - a segment whose header was torn while it was being started is removed", () => {
    const fs = new SimFileSystem();
    const wal = createWal(fs, 150);
    for (let i = 1; i <= 4; i++) wal.save(hs(1, i), [ent(i, 1, 40)], true);
    const names = wal.segmentNames();
    wal.close();
    expect(names.length).toBeGreaterThan(1);
    const last = joinPath(DIR, names[names.length - 1]!);
    // Keep only the torn start of the last segment's header: the save that followed is lost with it.
    const saves = Wal.open(fs, DIR, { segmentSizeBytes: 150 }).replay.entries.length;
    fs.truncateFile(last, 5);
    const { wal: w2, replay } = reopen(fs, 150);
    expect(replay.repaired).toMatchObject({ segment: names[names.length - 1], offsetBytes: 0, truncatedBytes: 5, removedSegment: true });
    expect(fs.readdir(DIR)).toEqual(names.slice(0, -1));
    expect(replay.entries.length).toBeLessThanOrEqual(saves);
    const n = replay.entries.length;
    w2.save(null, [ent(n + 1, 1)], true);
    w2.close();
    expect(reopen(fs, 150).replay.entries.length).toBe(n + 1);
  });

  it("wal - an empty last segment (created, then a crash before its header) is removed", () => {
    const fs = new SimFileSystem();
    const wal = createWal(fs);
    wal.save(hs(1, 1), ents(1, 2, 1), true);
    wal.close();
    const empty = "0000000000000002-0000000000000003.wal";
    fs.close(fs.openAppend(joinPath(DIR, empty)));
    const { wal: w2, replay } = reopen(fs);
    expect(replay.entries).toEqual(ents(1, 2, 1));
    expect(replay.repaired).toMatchObject({ segment: empty, removedSegment: true, reason: "empty segment" });
    expect(fs.readdir(DIR)).toEqual([FIRST_SEGMENT]);
    w2.close();
  });

  it("wal - writes that break the log's invariants are refused and write nothing", () => {
    const fs = new SimFileSystem();
    const wal = createWal(fs);
    wal.save(hs(2, 3, "n2"), ents(1, 5, 2), true);
    const size = fs.size(lastSegmentPath(fs));
    const refused: [string, () => void][] = [
      ["gap", () => wal.save(null, [ent(7, 2)], true)],
      ["not contiguous", () => wal.save(null, [ent(6, 2), ent(8, 2)], true)],
      ["below the previous entry's term", () => wal.save(null, [ent(6, 1)], true)],
      ["terms decrease", () => wal.save(null, [ent(6, 3), ent(7, 2)], true)],
      ["term goes back", () => wal.save(hs(1, 3), [], true)],
      ["vote changes within term 2", () => wal.save(hs(2, 3, "n3"), [], true)],
      ["commit goes back", () => wal.save(hs(2, 2, "n2"), [], true)],
      ["commit 6 is beyond the last index 5", () => wal.save(hs(2, 6, "n2"), [], true)],
      ["not non-negative safe integers", () => wal.save(null, [ent(0, 1)], true)],
      ["would replace committed entry 3 (commit 3)", () => wal.save(null, [ent(3, 3)], true)],
    ];
    for (const [why, f] of refused) {
      expect(f).toThrow(WalInvariantError);
      expect(f).toThrow(why);
    }
    wal.saveSnapshotMarker({ index: 3, term: 2 });
    expect(() => wal.save(null, [ent(3, 2)], true)).toThrow(/at or below the snapshot marker 3/);
    expect(() => wal.saveSnapshotMarker({ index: 2, term: 2 })).toThrow(/below the previous marker/);
    expect(() => wal.saveSnapshotMarker({ index: 3, term: 3 })).toThrow(/contradicts the previous marker/);
    expect(() => wal.releaseTo(5)).toThrow(/only entries up to the snapshot marker 3/);
    expect(fs.size(lastSegmentPath(fs))).toBeGreaterThan(size); // only the marker was added
    wal.save(hs(3, 5, ""), [ent(6, 3)], true); // a vote may change with the term
    wal.close();
    expect(reopen(fs).replay.entries.map((e) => e.index)).toEqual([4, 5, 6]);
  });

  it("wal - replay checks the same invariants: a logged gap is WalCorruptError", () => {
    const fs = new SimFileSystem();
    const wal = createWal(fs);
    wal.save(null, ents(1, 3, 1), true);
    wal.close();
    const body = new ByteWriter();
    writeEntries(body, [ent(9, 1)]);
    const path = joinPath(DIR, FIRST_SEGMENT);
    const at = fs.size(path);
    const fd = fs.openAppend(path);
    fs.write(fd, rawRecord(2, body.finish()));
    fs.sync(fd);
    fs.close(fd);
    expect(() => reopen(fs)).toThrow(new RegExp(`corrupt at offset ${at}: gap: entry 9 follows last index 3`));
  });

  it("wal - a record that passes its CRC but does not decode is corruption, not a torn tail", () => {
    const fs = new SimFileSystem();
    createWal(fs).close();
    const path = joinPath(DIR, FIRST_SEGMENT);
    const fd = fs.openAppend(path);
    fs.write(fd, rawRecord(2, Uint8Array.of(1, 0, 0, 0, 9)));
    fs.write(fd, rawRecord(9, new Uint8Array(4)));
    fs.close(fd);
    expect(() => reopen(fs)).toThrow(/passes its CRC but does not decode/);
  });

  it("wal - a snapshot marker keeps the entries after it when the log agrees, else drops the log", () => {
    const fs = new SimFileSystem();
    const wal = createWal(fs);
    wal.save(hs(2, 4), [...ents(1, 5, 1), ...ents(6, 10, 2)], true);
    wal.saveSnapshotMarker({ index: 4, term: 1 });
    wal.close();
    let r = reopen(fs);
    expect(r.replay.snapshot).toEqual({ index: 4, term: 1 });
    expect(r.replay.entries).toEqual([...ents(5, 5, 1), ...ents(6, 10, 2)]);
    // A snapshot from a leader whose log disagrees at index 8: the whole log goes.
    r.wal.saveSnapshotMarker({ index: 8, term: 3 });
    expect(r.wal.lastIndex).toBe(8);
    r.wal.save(hs(3, 8), ents(9, 9, 3), true);
    r.wal.close();
    r = reopen(fs);
    expect(r.replay.snapshot).toEqual({ index: 8, term: 3 });
    expect(r.replay.entries).toEqual(ents(9, 9, 3));
    // A snapshot beyond the log drops it too.
    r.wal.saveSnapshotMarker({ index: 20, term: 3 });
    r.wal.close();
    r = reopen(fs);
    expect(r.replay.entries).toEqual([]);
    expect(r.wal.lastIndex).toBe(20);
    r.wal.close();
  });

  it("wal - releaseTo deletes only whole old segments covered by the snapshot marker", () => {
    const fs = new SimFileSystem();
    const wal = createWal(fs, 300);
    for (let i = 1; i <= 40; i++) wal.save(hs(1, i - 1, "n1"), [ent(i, 1, 30)], true);
    const before = wal.segmentNames();
    expect(wal.releaseTo(1)).toBe(0);
    wal.saveSnapshotMarker({ index: 25, term: 1 });
    const removed = wal.releaseTo(26);
    expect(removed).toBeGreaterThan(0);
    const after = wal.segmentNames();
    expect(after).toEqual(before.slice(removed));
    expect(fs.readdir(DIR)).toEqual(after);
    // The oldest kept segment may start below 26, but none before it could hold 26 or above.
    expect(Number(after[0]!.slice(17, 33))).toBeLessThanOrEqual(26);
    wal.save(hs(2, 40, "n2"), ents(41, 41, 2), true);
    wal.close();
    const { wal: w2, replay } = reopen(fs, 300);
    expect(replay.snapshot).toEqual({ index: 25, term: 1 });
    expect(replay.entries).toEqual([...ents(26, 40, 1, 30), ...ents(41, 41, 2)]);
    expect(replay.hardState).toEqual(hs(2, 40, "n2"));
    // Releasing everything the marker covers keeps at least the segment being written.
    w2.saveSnapshotMarker({ index: 41, term: 2 });
    w2.releaseTo(42);
    expect(w2.segmentNames().length).toBeGreaterThanOrEqual(1);
    w2.close();
    const r3 = reopen(fs, 300);
    expect(r3.replay.entries).toEqual([]);
    expect(r3.replay.snapshot).toEqual({ index: 41, term: 2 });
    expect(r3.replay.hardState).toEqual(hs(2, 40, "n2"));
    r3.wal.close();
  });

  it("wal - a missing segment in the middle is WalCorruptError", () => {
    const fs = new SimFileSystem();
    const wal = createWal(fs, 200);
    for (let i = 1; i <= 12; i++) wal.save(null, [ent(i, 1, 40)], true);
    wal.close();
    const names = wal.segmentNames();
    fs.remove(joinPath(DIR, names[1]!));
    expect(() => reopen(fs, 200)).toThrow(/segment 2 is missing before it/);
  });

  it("wal - after an I/O failure the WAL refuses further use; reopening recovers", () => {
    const fs = new SimFileSystem();
    const wal = createWal(fs);
    wal.save(null, ents(1, 2, 1), true);
    fs.failNext("sync");
    expect(() => wal.save(null, ents(3, 3, 1), true)).toThrow(/I\/O failure/);
    expect(() => wal.save(null, ents(4, 4, 1), true)).toThrow(/unusable after an I\/O failure/);
    wal.close();
    fs.crash(new SeededRng(2), { keepUnsyncedPrefix: [0, 1] });
    const { wal: w2, replay } = reopen(fs);
    expect(replay.entries).toEqual(ents(1, 2, 1));
    w2.close();
    expect(() => w2.save(null, [], false)).toThrow(/closed/);
  });

  describe("property", () => {
    interface ModelState {
      hardState: HardState;
      markerIndex: number;
      markerTerm: number;
      /** log[i] is the entry at index i + 1 (entries at or below the marker are kept only to look up terms). */
      log: (Entry | undefined)[];
    }

    const key = (s: { hardState: HardState; markerIndex: number; markerTerm: number; entries: readonly Entry[] }): string =>
      JSON.stringify([s.hardState, s.markerIndex, s.markerTerm, s.entries.map((e) => [e.index, e.term, e.type, Buffer.from(e.data).toString("hex")])]);
    const modelKey = (m: ModelState): string =>
      key({ ...m, entries: m.log.slice(m.markerIndex).filter((e): e is Entry => e !== undefined) });
    const replayKey = (r: WalReplay): string =>
      key({ hardState: r.hardState, markerIndex: r.snapshot.index, markerTerm: r.snapshot.term, entries: r.entries });
    const termAt = (m: ModelState, i: number): number | undefined => (i === m.markerIndex ? m.markerTerm : m.log[i - 1]?.term);
    const lastIndex = (m: ModelState): number => Math.max(m.markerIndex, m.log.length);

    type Op =
      | { kind: "save"; count: number; back: number; bump: boolean; withHs: boolean; vote: number; sync: boolean; sizeBytes: number }
      | { kind: "marker"; mode: number; pick: number }
      | { kind: "release" }
      | { kind: "crash"; seed: number }
      | { kind: "halt"; after: number; seed: number }
      | { kind: "reopen" };

    const opArb: fc.Arbitrary<Op> = fc.oneof(
      { weight: 8, arbitrary: fc.record({
        kind: fc.constant("save" as const), count: fc.integer({ min: 0, max: 6 }), back: fc.integer({ min: 0, max: 4 }),
        bump: fc.boolean(), withHs: fc.boolean(), vote: fc.integer({ min: 0, max: 2 }), sync: fc.boolean(), sizeBytes: fc.integer({ min: 0, max: 60 }),
      }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("marker" as const), mode: fc.integer({ min: 0, max: 2 }), pick: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("release" as const) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant("crash" as const), seed: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("halt" as const), after: fc.integer({ min: 0, max: 6 }), seed: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("reopen" as const) }) },
    );

    /**
     * Runs `ops` against a WAL and a naive model. After every reopen the replay must equal one of the
     * states the model passed through since the last sync (record by record): everything a synced
     * save acknowledged is there, and nothing appears that was never written. A "halt" op makes the
     * machine lose power a few file operations later, possibly in the middle of a save, a segment
     * roll-over, a release or a recovery.
     */
    function run(ops: Op[], faults: CrashFaults, allowCorruptError: boolean): void {
      const segmentSizeBytes = 256;
      const fs = new SimFileSystem();
      let wal = createWal(fs, segmentSizeBytes);
      let model: ModelState = { hardState: hs(0, 0), markerIndex: 0, markerTerm: 0, log: [] };
      /** States a crash may leave, oldest (the last synced one) first. */
      let candidates: string[] = [modelKey(model)];
      /** Seed of the crash that follows a halt armed by a "halt" op, null when none is armed. */
      let haltSeed: number | null = null;
      const advance = (sync: boolean): void => {
        candidates = sync ? [modelKey(model)] : [...candidates, modelKey(model)];
      };
      const check = (replay: WalReplay, possible: string[]): void => {
        expect(possible).toContain(replayKey(replay));
        // Rebuild the model from what survived: it is all durable now.
        const log: (Entry | undefined)[] = new Array<Entry | undefined>(replay.snapshot.index).fill(undefined);
        model = { hardState: replay.hardState, markerIndex: replay.snapshot.index, markerTerm: replay.snapshot.term, log: [...log, ...replay.entries] };
        candidates = [modelKey(model)];
      };
      /** Power loss, then reopen; false if recovery detected corruption (allowed only with corrupt faults). */
      const crashAndReopen = (seed: number): boolean => {
        const possible = candidates;
        fs.crash(new SeededRng(seed), faults);
        haltSeed = null;
        try {
          const r = reopen(fs, segmentSizeBytes);
          wal = r.wal;
          check(r.replay, possible);
          return true;
        } catch (err) {
          if (!(allowCorruptError && err instanceof WalCorruptError)) throw err;
          return false; // Detected, not silently wrong.
        }
      };
      /** Runs one WAL call; false if it was cut short by an armed halt (the machine is going down). */
      const attempt = (f: () => void): boolean => {
        try {
          f();
          return true;
        } catch (err) {
          if (haltSeed === null || !(err instanceof WalError || err instanceof FsError)) throw err;
          return false;
        }
      };

      for (const op of ops) {
        let completed = true;
        switch (op.kind) {
          case "save": {
            const last = lastIndex(model);
            const floor = Math.max(model.markerIndex, model.hardState.commit);
            const first = Math.max(floor + 1, last + 1 - op.back);
            const prevTerm = termAt(model, first - 1) ?? 0;
            const term = Math.max(prevTerm, model.hardState.term, 1) + (op.bump ? 1 : 0);
            const batch = op.count === 0 ? [] : ents(first, first + op.count - 1, term, op.sizeBytes);
            const newLast = batch.length > 0 ? first + op.count - 1 : last;
            let hardState: HardState | null = null;
            if (op.withHs) {
              const hsTerm = Math.max(model.hardState.term, term);
              const vote = hsTerm === model.hardState.term && model.hardState.vote !== "" ? model.hardState.vote : ["", "n1", "n2"][op.vote]!;
              hardState = hs(hsTerm, Math.max(model.hardState.commit, Math.min(newLast, model.hardState.commit + 2)), vote);
            }
            completed = attempt(() => wal.save(hardState, batch, op.sync));
            // A save cut short acknowledged nothing, but may have written any prefix of its records.
            const acknowledged = completed && op.sync;
            if (batch.length > 0) {
              model.log.length = first - 1;
              model.log.push(...batch);
              if (hardState !== null) advance(false); // the entries record alone may survive
            }
            if (hardState !== null) model.hardState = hardState;
            if (batch.length > 0 || hardState !== null || op.sync) advance(acknowledged);
            break;
          }
          case "marker": {
            const last = lastIndex(model);
            let index: number;
            let term: number;
            if (op.mode === 0) {
              // Local compaction: a snapshot of a prefix the log has.
              index = model.markerIndex + (op.pick % (last - model.markerIndex + 1));
              term = termAt(model, index)!;
            } else if (op.mode === 1) {
              // From a leader, beyond the log.
              index = last + 1 + (op.pick % 3);
              term = Math.max(termAt(model, last) ?? 0, model.markerTerm) + 1;
            } else {
              // From a leader that disagrees with an uncommitted entry.
              const low = Math.max(model.markerIndex, model.hardState.commit) + 1;
              if (low > last) break;
              index = low + (op.pick % (last - low + 1));
              term = Math.max(termAt(model, last)!, model.markerTerm) + 1;
            }
            completed = attempt(() => wal.saveSnapshotMarker({ index, term }));
            if (termAt(model, index) === term) {
              for (let i = model.markerIndex; i < index; i++) model.log[i] = undefined;
            } else {
              model.log = new Array<Entry | undefined>(index).fill(undefined);
            }
            model.markerIndex = index;
            model.markerTerm = term;
            advance(completed);
            break;
          }
          case "release":
            completed = attempt(() => wal.releaseTo(model.markerIndex + 1));
            break;
          case "halt":
            if (haltSeed === null) {
              haltSeed = op.seed;
              fs.haltAfter(op.after);
            }
            break;
          case "crash":
            if (!crashAndReopen(op.seed)) return;
            break;
          case "reopen": {
            completed = attempt(() => {
              wal.close();
              const r = reopen(fs, segmentSizeBytes);
              wal = r.wal;
              check(r.replay, [modelKey(model)]);
            });
            break;
          }
        }
        if (!completed && !crashAndReopen(haltSeed!)) return;
      }
      if (haltSeed !== null && !crashAndReopen(haltSeed)) return;
      wal.close();
      const r = reopen(fs, segmentSizeBytes);
      check(r.replay, [modelKey(model)]);
      r.wal.close();
    }

    it("wal - random save/sync/crash/reopen sequences keep everything acknowledged and invent nothing", () => {
      fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), fc.integer({ min: 0, max: 3 }), (ops, knob) => {
        const faults: CrashFaults = {
          keepUnsyncedPrefix: [knob, 3],
          keepUnsyncedMetadata: [1, 2],
        };
        run(ops, faults, false);
      }), { numRuns: 250 });
    });

    it("wal - with torn bytes corrupted too, recovery is either right or a WalCorruptError, never wrong", () => {
      fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => {
        run(ops, { keepUnsyncedPrefix: [2, 3], corruptTorn: [1, 2], keepUnsyncedMetadata: [1, 2] }, true);
      }), { numRuns: 150 });
    });
  });

  it("wal - on a real disk (NodeFileSystem): save, reopen, and recover a truncated file", () => {
    const root = nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "hyperfleet-wal-"));
    try {
      const fs = new NodeFileSystem();
      const dir = nodePath.join(root, "wal");
      const wal = Wal.create(fs, dir, META, { segmentSizeBytes: 4096 });
      for (let i = 1; i <= 60; i++) wal.save(hs(1, i - 1, "n1"), [ent(i, 1, 100)], i % 7 === 0);
      wal.close();
      const names = nodeFs.readdirSync(dir).sort();
      expect(names.length).toBeGreaterThan(1);
      expect(names[0]).toBe(FIRST_SEGMENT);
      const last = nodePath.join(dir, names[names.length - 1]!);
      const size = nodeFs.statSync(last).size;
      nodeFs.truncateSync(last, size - 10); // tears the last save (entries then hard state: the hard state record)
      const { wal: w2, replay } = Wal.open(fs, dir, { segmentSizeBytes: 4096 });
      expect(replay.entries).toEqual(ents(1, 60, 1, 100));
      expect(replay.hardState).toEqual(hs(1, 58, "n1"));
      const repairedSize = nodeFs.statSync(last).size;
      expect(replay.repaired).toMatchObject({ segment: names[names.length - 1], offsetBytes: repairedSize, truncatedBytes: size - 10 - repairedSize });
      w2.save(hs(2, 60, "n2"), [ent(61, 2)], true);
      w2.close();
      const r3 = Wal.open(fs, dir, { segmentSizeBytes: 4096 });
      expect(r3.replay.entries.length).toBe(61);
      expect(r3.replay.hardState).toEqual(hs(2, 60, "n2"));
      expect(r3.replay.repaired).toBeNull();
      r3.wal.close();
    } finally {
      nodeFs.rmSync(root, { recursive: true, force: true });
    }
  });
});
