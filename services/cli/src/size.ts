/** Parses a memory size like QEMU's -m: a number with an optional K/M/G suffix; no suffix means MiB. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?$/i.exec(text.trim());
  if (m === null) throw new Error(`bad size "${text}": use a number with an optional K, M or G suffix (e.g. 128M)`);
  const unit = { "": 2 ** 20, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[m[2]!.toUpperCase()]!;
  const bytes = Math.round(Number(m[1]) * unit);
  return bytes;
}
