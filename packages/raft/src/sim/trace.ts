/**
 * A running 64-bit hash (two independent 32-bit lanes) over everything a simulation did: every
 * delivered message and every applied entry. Two runs of one seed must end with the same hash.
 */
export class TraceHash {
  private a = 0x811c9dc5 | 0;
  private b = 0x9747b28c | 0;
  private countValue = 0;

  /** Items mixed in so far. */
  get count(): number {
    return this.countValue;
  }

  /** Mixes in a 32-bit integer (larger safe integers are mixed in as two halves). */
  int(x: number): this {
    if (x > 0xffffffff || x < -0x80000000) {
      this.word(Math.floor(x / 0x1_0000_0000) | 0);
      this.word(x >>> 0);
    } else {
      this.word(x | 0);
    }
    return this;
  }

  string(s: string): this {
    this.word(s.length);
    for (let i = 0; i < s.length; i++) this.word(s.charCodeAt(i));
    return this;
  }

  bytes(data: Uint8Array): this {
    this.word(data.length);
    for (let i = 0; i < data.length; i++) this.word(data[i]!);
    return this;
  }

  /** Marks the end of one traced item (so [1,2][3] and [1][2,3] differ). */
  end(): this {
    this.word(0x5bd1e995);
    this.countValue++;
    return this;
  }

  hex(): string {
    return (this.a >>> 0).toString(16).padStart(8, "0") + (this.b >>> 0).toString(16).padStart(8, "0");
  }

  private word(x: number): void {
    this.a = Math.imul(this.a ^ (x & 0xffff), 0x01000193);
    this.a = Math.imul(this.a ^ (x >>> 16), 0x01000193);
    let k = Math.imul(x | 0, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    this.b ^= k;
    this.b = (this.b << 13) | (this.b >>> 19);
    this.b = (Math.imul(this.b, 5) + 0xe6546b64) | 0;
  }
}
