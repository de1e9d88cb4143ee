/*
 * cpubench - an integer workload with an exactly known instruction count.
 *
 * Boot arguments:
 *   iters=<N>    kernel iterations (default CPUBENCH_DEFAULT_ITERS = 5,000,000,
 *                i.e. 205,000,013 instructions: a fraction of a second on
 *                QEMU TCG, about 2 s on a 100 MIPS interpreter)
 *   instret=1    also print the kernel's instruction count as measured with
 *                minstret (exact only where minstret counts instructions,
 *                e.g. QEMU with -icount)
 *
 * Output:
 *   cpubench: iters=<N> insns=<count> checksum=<0x%08x>   (machine independent)
 *   cpubench: ticks=<mtime ticks spent in the kernel>     (timing)
 *
 * insns = CPUBENCH_INSNS_ENTRY + N * CPUBENCH_INSNS_PER_ITER
 *         + CPUBENCH_INSNS_EXIT (see kernel.S / cpubench.h).
 */
#include "hf.h"
#include "cpubench.h"

uint32_t cpubench_kernel(uint32_t iters, uint32_t *buf);
uint32_t cpubench_measure(uint32_t iters, uint32_t *buf, uint32_t *insns);

static uint32_t buf[CPUBENCH_BUF_WORDS];

int main(uint32_t hartid, uintptr_t fdt)
{
    (void)hartid;
    (void)fdt;
    long arg = hf_arg_int("iters", CPUBENCH_DEFAULT_ITERS);
    uint32_t iters = arg < 0 ? 0 : (uint32_t)arg;
    int want_instret = hf_arg_int("instret", 0) != 0;

    /* deterministic initial contents */
    for (uint32_t i = 0; i < CPUBENCH_BUF_WORDS; i++)
        buf[i] = i * 0x9e3779b9u + 0x7f4a7c15u;

    uint64_t insns = (uint64_t)iters * CPUBENCH_INSNS_PER_ITER +
                     CPUBENCH_INSNS_OVERHEAD;
    uint32_t measured = 0, sum;

    uint64_t t0 = hf_mtime();
    if (want_instret)
        sum = cpubench_measure(iters, buf, &measured);
    else
        sum = cpubench_kernel(iters, buf);
    uint64_t t1 = hf_mtime();

    hf_printf("cpubench: iters=%u insns=%llu checksum=0x%08x\n", iters, insns,
              sum);
    hf_printf("cpubench: ticks=%llu\n", t1 - t0);
    if (want_instret)
        hf_printf("cpubench: instret=%u (expected %u)\n", measured,
                  (uint32_t)insns);
    return 0;
}
