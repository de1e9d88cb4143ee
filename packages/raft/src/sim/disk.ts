/**
 * A simulated member's disk: the production `disk-storage` (WAL + snapshot store) on the member's
 * own `SimFileSystem`, and the rebuild of a `MemoryStorage` from it after a crash.
 *
 * The WAL's `meta` holds the founding membership (`encodeConfState`): a member without a snapshot
 * starts its log from that membership.
 */
import { decodeConfState, encodeConfState } from "../codec.js";
import { openDiskStorage, persistReady, saveSnapshot, type DiskState } from "../disk-storage.js";
import { MemoryStorage } from "../memory-storage.js";
import type { SimFileSystem } from "../sim-fs.js";
import type { ConfState, HardState, Ready, Snapshot } from "../types.js";
import type { WalRepair } from "../wal.js";

/** What a restart rebuilt from the disk. */
export interface DiskRecovery {
  readonly storage: MemoryStorage;
  /** The snapshot the log starts after (null: the log starts at index 1). */
  readonly snapshot: Snapshot | null;
  readonly hardState: HardState;
  readonly repaired: WalRepair | null;
  /** The replayed commit index was below the snapshot's index and was raised to it (see `open`). */
  readonly commitRaised: boolean;
}

export interface MemberDiskOptions {
  readonly segmentSizeBytes: number;
  /** Snapshot files kept. */
  readonly retain: number;
}

export class MemberDisk {
  private constructor(private readonly state: DiskState) {}

  /** Formats a fresh disk (an empty WAL whose meta is the founding membership). */
  static create(fs: SimFileSystem, root: string, founding: ConfState, options: MemberDiskOptions): void {
    const state = openDiskStorage(fs, root, { segmentSizeBytes: options.segmentSizeBytes, retain: options.retain, meta: encodeConfState(founding) });
    state.wal.close();
  }

  /**
   * Replays the disk after a crash (or at boot) into a new `MemoryStorage`. Throws what the disk
   * layer throws for damage that is not a crash trace (`WalCorruptError`, `DiskStorageError`, …).
   */
  static open(fs: SimFileSystem, root: string, options: MemberDiskOptions): { disk: MemberDisk; recovery: DiskRecovery } {
    const state = openDiskStorage(fs, root, { segmentSizeBytes: options.segmentSizeBytes, retain: options.retain });
    let storage: MemoryStorage;
    if (state.snapshot !== null) {
      storage = new MemoryStorage();
      storage.applySnapshot(state.snapshot);
    } else {
      storage = new MemoryStorage(decodeConfState(state.meta));
    }
    storage.append(state.entries);
    // openDiskStorage adopts a snapshot file that is newer than the WAL's marker (a crash between
    // the two writes) but returns the WAL's hard state as is, whose commit may be below the
    // snapshot when the last commit record was not synced; RawNode then refuses to start
    // ("state.commit is out of range"). A snapshot only covers committed entries, so its index is
    // a lower bound of the commit index.
    let hardState = state.hardState;
    const snapshotIndex = state.snapshot?.metadata.index ?? 0;
    const commitRaised = hardState.commit < snapshotIndex;
    if (commitRaised) hardState = { ...hardState, commit: snapshotIndex };
    storage.setHardState(hardState);
    const recovery: DiskRecovery = { storage, snapshot: state.snapshot, hardState, repaired: state.walRepair, commitRaised };
    return { disk: new MemberDisk(state), recovery };
  }

  /** Step 1 of the Ready contract: snapshot (file, then WAL marker), entries, hard state; fsynced when `sync`. */
  persist(ready: Pick<Ready, "snapshot" | "entries" | "hardState">, sync: boolean): void {
    persistReady(this.state, { snapshot: ready.snapshot, entries: ready.entries, hardState: ready.hardState, mustSync: sync });
  }

  /** A snapshot of the member's own state machine: file, WAL marker, release of covered WAL segments. */
  saveSnapshot(snapshot: Snapshot): void {
    saveSnapshot(this.state, snapshot);
  }

  /** Only the snapshot file, as if the machine lost power before the WAL marker was written. */
  saveSnapshotFileOnly(snapshot: Snapshot): void {
    this.state.snapshots.save(snapshot);
  }
}
