import { decodedImm, decodeWord } from "./decode.js";

/** One host frame's decoded instructions: slot i holds the instruction at byte offset 4 * i. */
export interface DecodedPage {
  /** packed op words (see decode.ts); 0 = not decoded yet */
  readonly ops: Int32Array;
  readonly imms: Int32Array;
}

/** Something that caches writable translations to host frames and must hear when a frame holds code. */
export interface CodeFrameListener {
  /** Frame `frameBase` now has decoded code: writes to it must go through the code-write path. */
  onCodeFrame(frameBase: number): void;
}

const WORDS_PER_PAGE = 1024;

/**
 * The decode cache of one partition, shared by its harts (they run in one thread). Decoded pages are
 * keyed by host frame, so a page mapped at several guest addresses is decoded once.
 *
 * Coherence: a hart's store into a frame that holds decoded code takes the code-write path (its TLB
 * marks such frames), which forgets the decoded words it overwrites. Writes made by anything else (the
 * root, a device) must call `invalidate`; FENCE.I forgets everything, which also covers writes the cache
 * could not see.
 */
export class DecodeCache {
  private readonly pages: (DecodedPage | undefined)[];
  /** The pages created so far, densely (flush walks these, not the sparse per-frame array). */
  private readonly created: DecodedPage[] = [];
  /** 1 where the frame has a decoded page */
  readonly codeFrames: Uint8Array;
  private readonly listeners: CodeFrameListener[] = [];
  private readonly words: Int32Array;
  private decodedCount = 0;

  constructor(memory: Uint8Array) {
    const frames = memory.byteLength >>> 12;
    this.pages = new Array<DecodedPage | undefined>(frames);
    this.codeFrames = new Uint8Array(frames);
    this.words = new Int32Array(memory.buffer, memory.byteOffset, memory.byteLength >>> 2);
  }

  addListener(listener: CodeFrameListener): void {
    this.listeners.push(listener);
  }

  /** The decoded page of the frame at host byte offset `frameBase`, created (empty) on first use. */
  page(frameBase: number): DecodedPage {
    const frame = frameBase >>> 12;
    let page = this.pages[frame];
    if (page === undefined) {
      page = { ops: new Int32Array(WORDS_PER_PAGE), imms: new Int32Array(WORDS_PER_PAGE) };
      this.pages[frame] = page;
      this.created.push(page);
    }
    if (this.codeFrames[frame] === 0) {
      this.codeFrames[frame] = 1;
      for (const listener of this.listeners) listener.onCodeFrame(frameBase);
    }
    return page;
  }

  /** Decodes slot `index` of `page` (frame at `frameBase`) and returns its packed word. */
  fill(page: DecodedPage, frameBase: number, index: number): number {
    const word = decodeWord(this.words[(frameBase >>> 2) + index]!);
    page.ops[index] = word;
    page.imms[index] = decodedImm[0]!;
    this.decodedCount++;
    return word;
  }

  /** Forgets decoded instructions overlapping host bytes [hostAddress, hostAddress + length). */
  invalidate(hostAddress: number, length: number): void {
    if (length <= 0) return;
    const first = hostAddress >>> 2;
    const last = (hostAddress + length - 1) >>> 2;
    for (let w = first; w <= last; w++) {
      const frame = w >>> 10;
      if (this.codeFrames[frame] === 0) {
        w |= 1023; // skip the rest of a frame without code
        continue;
      }
      this.pages[frame]!.ops[w & 1023] = 0;
    }
  }

  /** Forgets every decoded instruction (FENCE.I, or a write the cache could not observe). */
  flush(): void {
    for (const page of this.created) page.ops.fill(0);
  }

  /** Instructions decoded so far (a decode-cache miss counter). */
  get decodes(): number {
    return this.decodedCount;
  }
}
