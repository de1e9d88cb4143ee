/*
 * dirtier - dirties memory pages at a controlled rate (a live-migration
 * workload).
 *
 * Writes one 32-bit word into P distinct 4 KiB pages per second over a
 * working set of W MiB that starts at the first page after the image
 * (_end). Pages are visited in order and the walk wraps around the
 * working set; the word written (at offset 0 of the page) is the running
 * sequence number of the write, starting at 1. After n writes, page i
 * therefore holds the largest s <= n with (s - 1) % pages == i (or 0 if
 * never written), which lets a checker prove that no write was lost.
 *
 * Boot arguments (all optional):
 *   rate=<P>      pages per second (default 5000); rate=max: as fast as
 *                 possible (mtime is looked at every 4096 writes)
 *   ws=<W>        working set in MiB (default 64)
 *   seconds=<N>   stop after N heartbeats and power off with success
 *                 (default 0: run forever)
 *
 * Pacing: the number of pages due by now is computed from mtime
 * (10 MHz) and the loop writes up to it; when caught up it sleeps with
 * WFI until the CLINT compare (about 1 ms ahead, or the next heartbeat if
 * sooner) with mie.MTIE = 1 and mstatus.MIE = 0, so the timer wakes WFI
 * without an interrupt being taken; the compare is disarmed on waking.
 *
 * Output ("(...)" holds timing figures, which vary between machines):
 *   dirtier: rate=5000 pages/s, working set 64 MiB (16384 pages)
 *   dirtier: heartbeat 1 (pages 5000, 4999 pages/s)
 *   ...
 *   dirtier: done
 */
#include "hf.h"

#define PAGE_SIZE     4096u
#define MAX_BATCH     4096u     /* writes between two looks at mtime */
#define SLEEP_TICKS   (HF_MTIME_HZ / 1000u)   /* ~1 ms */

static uint32_t hart;

/* Pages due t ticks after the start at `rate` pages per second. */
static uint64_t pages_due(uint64_t t, uint32_t rate)
{
    uint64_t sec = t / HF_MTIME_HZ;
    uint64_t rem = t % HF_MTIME_HZ;
    return sec * rate + rem * rate / HF_MTIME_HZ;
}

static void sleep_until(uint64_t when)
{
    hf_mtimecmp_set(hart, when);
    hf_csr_set(mie, MIP_MTIP);
    while (!(hf_csr_read(mip) & MIP_MTIP) && hf_mtime() < when)
        hf_wfi();
    hf_mtimecmp_disarm(hart);
    hf_csr_clear(mie, MIP_MTIP);
}

int main(uint32_t hartid, uintptr_t fdt)
{
    (void)fdt;
    hart = hartid;

    int max_mode = hf_arg_is("rate", "max");
    long rate_arg = max_mode ? 0 : hf_arg_int("rate", 5000);
    long ws_arg = hf_arg_int("ws", 64);
    long seconds_arg = hf_arg_int("seconds", 0);
    uint32_t rate = rate_arg < 0 ? 0 : (uint32_t)rate_arg;
    uint32_t seconds = seconds_arg < 0 ? 0 : (uint32_t)seconds_arg;

    /* working set: page aligned, from _end up to the FDT / end of RAM */
    uintptr_t base = ((uintptr_t)_end + PAGE_SIZE - 1) & ~(uintptr_t)(PAGE_SIZE - 1);
    uintptr_t limit = hf_mem_limit();
    uint64_t avail = limit > base ? (uint64_t)(limit - base) : 0;
    if (ws_arg <= 0 || (uint64_t)ws_arg * 1024u * 1024u > avail) {
        hf_printf("dirtier: working set of %d MiB does not fit in RAM\n",
                  (int)ws_arg);
        return 1;
    }
    uint32_t ws_mib = (uint32_t)ws_arg;
    uint32_t npages = ws_mib * (1024u * 1024u / PAGE_SIZE);

    if (max_mode)
        hf_printf("dirtier: rate=max, working set %u MiB (%u pages)\n", ws_mib,
                  npages);
    else
        hf_printf("dirtier: rate=%u pages/s, working set %u MiB (%u pages)\n",
                  rate, ws_mib, npages);

    hf_csr_clear(mstatus, MSTATUS_MIE);   /* WFI wakes, nothing is taken */
    hf_mtimecmp_disarm(hart);

    uint32_t seq = 0;          /* writes done (low 32 bits), last value */
    uint64_t written = 0;      /* writes done */
    uint32_t page = 0;         /* next page index */
    uint32_t beat = 0;
    uint64_t last_written = 0;
    const uint64_t start = hf_mtime();
    uint64_t last_beat_time = start;
    uint64_t next_beat = start + HF_MTIME_HZ;

    for (;;) {
        uint64_t now = hf_mtime();

        /* how many writes are due (capped at the next heartbeat) */
        uint64_t due;
        uint64_t upto = now < next_beat ? now : next_beat;
        if (max_mode)
            due = written + MAX_BATCH;
        else
            due = pages_due(upto - start, rate);

        uint64_t todo = due > written ? due - written : 0;
        if (todo > MAX_BATCH)
            todo = MAX_BATCH;
        for (uint32_t n = (uint32_t)todo; n; n--) {
            volatile uint32_t *p = (volatile uint32_t *)(base + (uintptr_t)page * PAGE_SIZE);
            *p = ++seq;
            if (++page == npages)
                page = 0;
        }
        written += todo;

        if (now >= next_beat && (max_mode || written >= due)) {
            /* heartbeat: all writes due at the boundary are done */
            beat++;
            uint64_t dt = now - last_beat_time;
            uint64_t dp = written - last_written;
            uint32_t measured = dt ? (uint32_t)(dp * HF_MTIME_HZ / dt) : 0;
            hf_printf("dirtier: heartbeat %u (pages %llu, %u pages/s)\n", beat,
                      written, measured);
            last_beat_time = now;
            last_written = written;
            next_beat += HF_MTIME_HZ;
            if (seconds && beat >= seconds) {
                hf_printf("dirtier: done\n");
                return 0;
            }
            continue;
        }

        if (!max_mode && todo == 0) {
            /* caught up: sleep until the next page is due (~1 ms steps) */
            uint64_t wake = now + SLEEP_TICKS;
            if (wake > next_beat)
                wake = next_beat;
            sleep_until(wake);
        }
    }
}
