/**
 * A node's first live migration used to be its slowest: the page codec (delta encoding, batch
 * building, decoding, applying, the delta checksums) runs cold, and a guest that rewrites its whole
 * working set sends every page in the stop-and-copy round while V8 is still compiling that code
 * (measured: ram256-max-unl's downtime 138, 123, 115, 86 ms on the first four migrations of one pair of
 * nodes). `warmCodec` runs both ends of that path on a few thousand synthetic pages, the way a
 * migration would (pages sent in full, then resent as one-word deltas and as zero pages), so a node
 * can pay for the compilation when it starts instead of inside a VM's downtime. Pure computation, ~50
 * ms; no I/O.
 */
import { CodecError } from "./errors.js";
import { applyBatch, BatchBuilder, decodeBatch } from "./page-batch.js";
import { SentPages } from "./sent-pages.js";

/**
 * Runs the sender's and the receiver's page paths over `pages` synthetic 4 KiB pages for `rounds`
 * rounds, and checks that the receiver's pages came out equal to the sender's (a self-test of the
 * codec on this host: a CodecError if not). Returns the pages carried.
 */
export function warmCodec(pages = 512, rounds = 4): number {
  const PAGE = 4096;
  const source = new Uint8Array(pages * PAGE);
  const target = new Uint8Array(pages * PAGE);
  const sent = new SentPages({ budgetBytes: pages * PAGE });
  const builder = new BatchBuilder({ codec: null });
  const apply = (batch: Uint8Array): void => {
    applyBatch(decodeBatch(batch, { codec: null }), (gpn) => target.subarray(gpn * PAGE, (gpn + 1) * PAGE));
  };
  for (let round = 0; round < rounds; round++) {
    for (let gpn = 0; gpn < pages; gpn++) {
      // program-like content in round 0, then one word changed per page, now and then a page zeroed
      const page = source.subarray(gpn * PAGE, (gpn + 1) * PAGE);
      if (round === 0) for (let i = 0; i < PAGE; i += 64) page[i] = (gpn + i) & 0xff;
      else if (gpn % 61 === 0) page.fill(0);
      else page[((gpn * 52 + round * 4) % PAGE) & ~3] = round;
      // the last round as a stop-and-copy sends it: the pages encoded where they lie
      const stable = round === rounds - 1;
      if (!builder.addPage(gpn, page, sent, stable)) {
        apply(builder.finish());
        builder.addPage(gpn, page, sent, stable);
      }
    }
    apply(builder.finish());
  }
  if (Buffer.compare(source, target) !== 0) throw new CodecError("codec self-test: the receiver's pages differ from the sender's");
  return pages * rounds;
}
