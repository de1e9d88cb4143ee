/** The built guest programs, for tests that boot them. */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

const GUESTS = join(import.meta.dirname, "..", "..", "..", "guests", "build");

/** The bytes of guests/build/<name>.elf; fails the test with the fix if the guests were not built. */
export function guestElf(name: string): Uint8Array {
  const path = join(GUESTS, `${name}.elf`);
  if (!existsSync(path)) throw new Error(`${path} is missing: build the guests (make -C guests)`);
  return readFileSync(path);
}
