import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CLI = join(ROOT, "services", "cli", "dist", "main.js");
export const GUEST_DIR = join(ROOT, "guests", "build");

/** The path of a built guest; throws (failing the test) if the guests were not built. */
export function guest(name: string): string {
  const path = join(GUEST_DIR, `${name}.elf`);
  if (!existsSync(path)) throw new Error(`${path} is missing: build the guests first (make -C guests, or npm test)`);
  return path;
}
