/*
 * smp-counter - shared counters incremented by every hart at once: proves
 * that AMOs, LR/SC and an AMO-built spin lock are atomic across harts, and
 * that CLINT software interrupts (IPIs) reach the other harts.
 *
 * The number of harts N comes from the device tree (/cpus/cpu@N nodes;
 * the `harts=N` boot argument is used only when there is no device tree).
 * Boot argument `iters=K` (default 100000) sets the increments per hart.
 *
 * Hart 0 prints the plan, then wakes each other hart with an IPI (CLINT
 * msip). Those harts wait for it in WFI with mie.MSIE = 1 and
 * mstatus.MIE = 0 (so no trap is taken), clear their own msip and join.
 * Every hart then does K increments of counter A with amoadd.w, K of
 * counter B with an lr.w/sc.w retry loop and K of counter C (plain load,
 * add, store) under a spin lock taken with amoswap.w.aq and released
 * with amoswap.w.rl, and arrives at a barrier (amoadd on an arrival
 * count, spin until it reaches N). Hart 0 then checks A = B = C = N * K:
 *
 *   smp-counter: 4 harts, 100000 iterations each
 *   smp-counter: amoadd total 400000 ok
 *   smp-counter: lr/sc total 400000 ok
 *   smp-counter: lock total 400000 ok
 *   smp-counter: PASS
 *
 * A wrong total prints `smp-counter: <what> total <got> FAIL (expected
 * <N*K>)` and `smp-counter: FAIL`, and fails (tohost = 3). The harts other
 * than 0 park after the barrier; hart 0 powers the machine off.
 */
#include "hf.h"

#define DEFAULT_ITERS 100000

/* each shared word in its own 64-byte line */
struct shared {
    volatile uint32_t word;
    uint32_t pad[15];
};

static struct shared amo_total __attribute__((aligned(64)));
static struct shared lrsc_total __attribute__((aligned(64)));
static struct shared lock_total __attribute__((aligned(64)));
static struct shared lock __attribute__((aligned(64)));
static struct shared arrived __attribute__((aligned(64)));

/* published by hart 0 before it sends the IPIs */
static volatile uint32_t iters;
static volatile uint32_t nharts;

static inline void amo_increment(volatile uint32_t *p)
{
    __asm__ volatile ("amoadd.w zero, %1, %0"
                      : "+A"(*p) : "r"(1u) : "memory");
}

static inline void lrsc_increment(volatile uint32_t *p)
{
    uint32_t v, failed;
    __asm__ volatile ("1: lr.w   %0, %2\n"
                      "   addi   %0, %0, 1\n"
                      "   sc.w   %1, %0, %2\n"
                      "   bnez   %1, 1b\n"
                      : "=&r"(v), "=&r"(failed), "+A"(*p)
                      :
                      : "memory");
}

static inline void lock_acquire(volatile uint32_t *l)
{
    uint32_t old;
    for (;;) {
        __asm__ volatile ("amoswap.w.aq %0, %2, %1"
                          : "=r"(old), "+A"(*l) : "r"(1u) : "memory");
        if (old == 0)
            return;
        while (*l) /* wait with plain loads until it looks free */
            ;
    }
}

static inline void lock_release(volatile uint32_t *l)
{
    __asm__ volatile ("amoswap.w.rl zero, zero, %0"
                      : "+A"(*l) : : "memory");
}

static void barrier(uint32_t n)
{
    __asm__ volatile ("amoadd.w.aqrl zero, %1, %0"
                      : "+A"(arrived.word) : "r"(1u) : "memory");
    while (arrived.word < n)
        ;
    hf_fence();
}

static void work(uint32_t k, uint32_t n)
{
    for (uint32_t i = 0; i < k; i++)
        amo_increment(&amo_total.word);
    for (uint32_t i = 0; i < k; i++)
        lrsc_increment(&lrsc_total.word);
    for (uint32_t i = 0; i < k; i++) {
        lock_acquire(&lock.word);
        lock_total.word = lock_total.word + 1;
        lock_release(&lock.word);
    }
    barrier(n);
}

void hf_secondary_main(uint32_t hartid, uintptr_t fdt)
{
    (void)fdt;
    /* sleep until hart 0's IPI: MSIE on, MIE off, so WFI just returns */
    hf_csr_set(mie, MIP_MSIP);
    while (!(hf_csr_read(mip) & MIP_MSIP))
        hf_wfi();
    hf_msip_set(hartid, 0);
    while (hf_csr_read(mip) & MIP_MSIP)
        ;
    hf_csr_write(mie, 0);
    hf_fence();

    if (hartid < nharts)
        work(iters, nharts);
}

static int check(const char *what, uint32_t got, uint32_t expected)
{
    if (got == expected) {
        hf_printf("smp-counter: %s total %u ok\n", what, got);
        return 0;
    }
    hf_printf("smp-counter: %s total %u FAIL (expected %u)\n", what, got,
              expected);
    return 1;
}

int main(uint32_t hartid, uintptr_t fdt)
{
    (void)hartid;
    (void)fdt;

    uint32_t n = hf_fdt_hart_count();
    if (n == 0) {
        long h = hf_arg_int("harts", 1);
        n = h < 1 ? 1 : (uint32_t)h;
    }
    if (n > HF_MAX_HARTS)
        n = HF_MAX_HARTS;
    long k_arg = hf_arg_int("iters", DEFAULT_ITERS);
    uint32_t k = k_arg < 0 ? DEFAULT_ITERS : (uint32_t)k_arg;

    iters = k;
    nharts = n;
    hf_printf("smp-counter: %u harts, %u iterations each\n", n, k);

    hf_fence(); /* iters and nharts before the IPIs */
    for (uint32_t h = 1; h < n; h++)
        hf_msip_set(h, 1);

    work(k, n);

    uint32_t expected = n * k;
    int bad = 0;
    bad += check("amoadd", amo_total.word, expected);
    bad += check("lr/sc", lrsc_total.word, expected);
    bad += check("lock", lock_total.word, expected);
    hf_printf("smp-counter: %s\n", bad ? "FAIL" : "PASS");
    return bad ? 1 : 0;
}
