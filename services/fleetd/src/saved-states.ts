/**
 * Saved states on this node's disk: `<data-dir>/saved-states/<vm>/<name>.hfsave`, each one whole
 * partition snapshot (memory, vCPUs, devices) in the hypervisor's self-checking format. A save goes to
 * a temporary file that is synced and then renamed, so a crash mid-save leaves the previous saved state
 * of that name (or none), never a torn one; a file that is torn anyway (a disk fault) is refused when
 * read, with the reason.
 */
import { mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { decodeSnapshot } from "@hyperfleet/hypervisor";

const SUFFIX = ".hfsave";
const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/;

/** A saved state that does not exist or cannot be used; `code` says which. */
export class SavedStateError extends Error {
  override readonly name = "SavedStateError";
  constructor(readonly code: "NOT_FOUND" | "FAILED_PRECONDITION", message: string) {
    super(message);
  }
}

export class SavedStateStore {
  constructor(readonly dir: string) {}

  private file(vm: string, name: string): string {
    if (!NAME_PATTERN.test(vm) || !NAME_PATTERN.test(name)) throw new SavedStateError("FAILED_PRECONDITION", `bad saved state name ${vm}/${name}`);
    return join(this.dir, vm, `${name}${SUFFIX}`);
  }

  /**
   * Writes a snapshot (its chunks in order) as `name` of `vm`, durably; resolves with its size. With
   * `epoch`, records the VM's epoch beside it (a node's shutdown save is used only at that epoch).
   */
  async write(vm: string, name: string, chunks: readonly Uint8Array[], epoch?: number): Promise<number> {
    const path = this.file(vm, name);
    await rm(`${path}.epoch`, { force: true });
    const dir = join(this.dir, vm);
    await mkdir(dir, { recursive: true });
    const tmp = `${path}.tmp`;
    const handle = await open(tmp, "w");
    let size = 0;
    try {
      for (const c of chunks) {
        await handle.write(c);
        size += c.byteLength;
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
    if (epoch !== undefined) {
      const h = await open(`${path}.epoch`, "w");
      try {
        await h.write(`${epoch}\n`);
        await h.sync();
      } finally {
        await h.close();
      }
    }
    const d = await open(dir, "r");
    try {
      await d.sync();
    } finally {
      await d.close();
    }
    return size;
  }

  /** Reads and verifies a saved state; throws `SavedStateError` naming what is missing or wrong. */
  async read(vm: string, name: string): Promise<Uint8Array> {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(this.file(vm, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new SavedStateError("NOT_FOUND", `vm ${vm} has no saved state ${name}`);
      throw e;
    }
    try {
      decodeSnapshot(bytes);
    } catch (e) {
      throw new SavedStateError("FAILED_PRECONDITION", `saved state ${name} of vm ${vm} cannot be used: ${(e as Error).message}`);
    }
    return bytes;
  }

  /** The size of a saved state that exists and verifies. */
  async check(vm: string, name: string): Promise<number> {
    return (await this.read(vm, name)).byteLength;
  }

  async size(vm: string, name: string): Promise<number> {
    try {
      return (await stat(this.file(vm, name))).size;
    } catch {
      throw new SavedStateError("NOT_FOUND", `vm ${vm} has no saved state ${name}`);
    }
  }

  /** The epoch recorded with a saved state; null when there is none (or no such saved state). */
  async epochOf(vm: string, name: string): Promise<number | null> {
    try {
      await stat(this.file(vm, name));
      const n = Number((await readFile(`${this.file(vm, name)}.epoch`, "utf8")).trim());
      return Number.isSafeInteger(n) && n > 0 ? n : null;
    } catch {
      return null;
    }
  }

  async remove(vm: string, name: string): Promise<void> {
    await rm(this.file(vm, name), { force: true });
    await rm(`${this.file(vm, name)}.epoch`, { force: true });
  }

  /** The VMs that have saved states here. */
  async vms(): Promise<string[]> {
    try {
      return (await readdir(this.dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch {
      return [];
    }
  }

  /** Removes every saved state of `vm` (the VM was deleted). */
  async removeVm(vm: string): Promise<void> {
    if (!NAME_PATTERN.test(vm)) return;
    await rm(join(this.dir, vm), { recursive: true, force: true });
  }
}
