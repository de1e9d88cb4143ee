import { ensureDirDurable, type FileSystem, joinPath } from "./fs.js";
import { type LoadedSnapshot, type SnapshotLoadFailure, SnapshotStore, type SnapshotStoreOptions } from "./snapshot-store.js";
import type { Entry, HardState, Snapshot } from "./types.js";
import { Wal, type WalOptions, type WalRepair, type WalReplay } from "./wal.js";

/**
 * A member's durable state in one directory: `<dir>/wal` (the `Wal`) and `<dir>/snap` (the
 * `SnapshotStore`). `openDiskStorage` returns what a member needs to rebuild its in-memory storage
 * (the newest snapshot, the hard state, the entries after the snapshot) and the two stores, open for
 * writing. `persistReady` and `saveSnapshot` write in the order that keeps the two consistent.
 */

export interface DiskStorageOptions extends WalOptions, SnapshotStoreOptions {
  /** Stored in the WAL when it is created (e.g. the member's id and the cluster's id); default empty. */
  readonly meta?: Uint8Array;
}

export interface DiskState {
  /** The newest valid snapshot, or null if there is none. */
  readonly snapshot: Snapshot | null;
  readonly hardState: HardState;
  /** The log after the snapshot (after index 0 without one), contiguous. */
  readonly entries: Entry[];
  readonly wal: Wal;
  readonly snapshots: SnapshotStore;
  /** The WAL's `meta` (the one given at creation). */
  readonly meta: Uint8Array;
  /** True if the WAL did not exist and was created now. */
  readonly created: boolean;
  /** A torn WAL tail that was cut, if any. */
  readonly walRepair: WalRepair | null;
  /** Newer snapshot files that were corrupt and skipped. */
  readonly skippedSnapshots: readonly SnapshotLoadFailure[];
}

/** The WAL and the snapshots disagree in a way that loses data; nothing was changed. */
export class DiskStorageError extends Error {
  override readonly name = "DiskStorageError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * Opens (creating if needed) the storage in `dir` and rebuilds the state. If the newest snapshot is
 * newer than the WAL's snapshot marker (a crash between writing the snapshot and the marker), the
 * marker is written now, and the logged entries are kept only if they agree with the snapshot
 * (Raft §7). Throws `DiskStorageError` if the WAL starts after a snapshot that is missing.
 */
export function openDiskStorage(fs: FileSystem, dir: string, options: DiskStorageOptions = {}): DiskState {
  ensureDirDurable(fs, dir);
  const snapDir = joinPath(dir, "snap");
  if (!fs.exists(snapDir)) {
    fs.mkdir(snapDir);
    fs.syncDir(dir);
  }
  const walDir = joinPath(dir, "wal");
  const created = !Wal.exists(fs, walDir);
  let wal: Wal;
  let replay: WalReplay;
  if (created) {
    wal = Wal.create(fs, walDir, options.meta ?? new Uint8Array(), options);
    replay = { hardState: wal.hardState, entries: [], snapshot: wal.snapshotMarker, meta: wal.meta, repaired: null };
  } else {
    ({ wal, replay } = Wal.open(fs, walDir, options));
  }
  try {
    const snapshots = new SnapshotStore(fs, snapDir, options);
    const loaded: LoadedSnapshot | null = snapshots.loadNewest();
    const snapshot = loaded?.snapshot ?? null;
    const marker = replay.snapshot;
    let entries = replay.entries;
    if (marker.index > 0 && (snapshot === null || snapshot.metadata.index < marker.index)) {
      throw new DiskStorageError(`the WAL in ${walDir} starts after a snapshot at (index ${marker.index}, term ${marker.term}) but the newest ` +
        `valid snapshot is ${snapshot === null ? "none" : `at index ${snapshot.metadata.index}`}`);
    }
    if (snapshot !== null) {
      const { index, term } = snapshot.metadata;
      if (index === marker.index && term !== marker.term) {
        throw new DiskStorageError(`snapshot at index ${index} has term ${term} but the WAL's marker says term ${marker.term}`);
      }
      if (index > marker.index) {
        const logged = entries.length > 0 && index >= entries[0]!.index && index <= entries[entries.length - 1]!.index
          ? entries[index - entries[0]!.index]!.term
          : undefined;
        entries = logged === term ? entries.slice(index - entries[0]!.index + 1) : [];
        wal.saveSnapshotMarker({ index, term });
      }
    }
    // A snapshot holds only committed state: a crash between the snapshot file and the WAL record of a
    // later commit index (not yet synced) must not leave the commit index behind it.
    let hardState = replay.hardState;
    if (snapshot !== null && hardState.commit < snapshot.metadata.index) {
      hardState = { ...hardState, term: Math.max(hardState.term, snapshot.metadata.term), commit: snapshot.metadata.index };
    }
    return {
      snapshot, hardState, entries, wal, snapshots, meta: replay.meta, created,
      walRepair: replay.repaired, skippedSnapshots: loaded?.skipped ?? [],
    };
  } catch (err) {
    wal.close();
    throw err;
  }
}

/**
 * Persists the durable part of a `Ready` in its contract's order: the snapshot (file, then the WAL
 * marker), then entries and hard state in one WAL write, fsynced when `mustSync`.
 */
export function persistReady(
  disk: { readonly wal: Wal; readonly snapshots: SnapshotStore },
  ready: { readonly snapshot: Snapshot | null; readonly entries: readonly Entry[]; readonly hardState: HardState | null; readonly mustSync: boolean },
): void {
  if (ready.snapshot !== null) {
    disk.snapshots.save(ready.snapshot);
    disk.wal.saveSnapshotMarker(ready.snapshot.metadata);
  }
  disk.wal.save(ready.hardState, ready.entries, ready.mustSync);
}

/**
 * Saves a snapshot the member took of its own state machine (log compaction): the file, then the
 * WAL marker, then releases WAL segments holding only entries at or below the snapshot.
 * Returns the number of segments released.
 */
export function saveSnapshot(disk: { readonly wal: Wal; readonly snapshots: SnapshotStore }, snapshot: Snapshot): number {
  disk.snapshots.save(snapshot);
  disk.wal.saveSnapshotMarker(snapshot.metadata);
  return disk.wal.releaseTo(snapshot.metadata.index + 1);
}
