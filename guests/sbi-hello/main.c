/*
 * sbi-hello - an S-mode kernel that exercises the SBI its firmware (the
 * hypervisor, or OpenSBI) provides: BASE, DBCN console, TIME, HSM, IPI
 * and SRST, including two error paths. No M-mode code, no device access:
 * everything goes through `ecall`.
 *
 * The number of harts is found with HSM hart_get_status on ids 0, 1, ...
 * until it fails. Output with 4 harts (with 1 hart the lines about harts
 * 1..3 are absent):
 *
 *   sbi-hello: spec version 2.0, impl 0x4846
 *   sbi-hello: extensions time ipi hsm srst dbcn present
 *   sbi-hello: timer interrupt after >= 10 ms ok
 *   sbi-hello: hart 1 started, opaque 0x1235
 *   sbi-hello: hart 1 stopped
 *   sbi-hello: hart 2 started, opaque 0x1236
 *   sbi-hello: hart 2 stopped
 *   sbi-hello: hart 3 started, opaque 0x1237
 *   sbi-hello: hart 3 stopped
 *   sbi-hello: hart 1 got an IPI
 *   sbi-hello: hart_start(99) = -3
 *   sbi-hello: console_write(bad address) = -3
 *   sbi-hello: PASS
 *
 * then SRST shutdown (reason 0). A failed step prints
 * `sbi-hello: FAIL <what>` and shuts down with reason 1 (system failure).
 * Harts are started and stopped one at a time and every line is a single
 * console_write, so the output is the same on every run.
 */
#include "hf_sbi.h"

#define TIMER_DELAY   (HF_TIMEBASE_HZ / 100)   /* 10 ms */
#define WAIT_LIMIT    (5ull * HF_TIMEBASE_HZ)  /* give up on a hart after 5 s */
#define OPAQUE_BASE   0x1234u
#define BAD_ADDRESS   0x1000u                  /* not RAM */

static volatile uint32_t timer_irqs;
static volatile uint64_t timer_irq_time;
static volatile uint32_t hello_done[HF_MAX_HARTS];
static volatile uint32_t ipi_ready;
static volatile uint32_t ipi_seen;

static __attribute__((noreturn)) void fail(const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    hf_vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    hf_sbi_printf("sbi-hello: FAIL %s\n", what);
    hf_sbi_exit(1);
}

void hf_sbi_trap(uint32_t scause, uint32_t sepc, uint32_t stval)
{
    if (scause == (SCAUSE_INTERRUPT | IRQ_S_TIMER)) {
        if (timer_irqs == 0)
            timer_irq_time = hf_sbi_rdtime();
        timer_irqs++;
        hf_sbi_set_timer(~0ull); /* clears STIP */
        return;
    }
    if (scause == (SCAUSE_INTERRUPT | IRQ_S_SOFT)) {
        hf_csr_clear(sip, SIP_SSIP);
        hf_sbi_printf("sbi-hello: hart %u got an IPI\n", hf_sbi_hartid());
        hf_fence();
        ipi_seen = 1; /* after the line, so that hart 0 prints after it */
        hf_sbi_hart_stop();
        fail("hart %u: hart_stop returned", hf_sbi_hartid());
    }
    hf_sbi_trap_report(scause, sepc, stval);
}

/* ---- BASE ---------------------------------------------------------------- */

static void base_info(void)
{
    struct sbiret spec = hf_sbi_get_spec_version();
    struct sbiret impl = hf_sbi_get_impl_id();
    if (spec.error)
        fail("get_spec_version error %ld", spec.error);
    if (impl.error)
        fail("get_impl_id error %ld", impl.error);
    uint32_t v = (uint32_t)spec.value;
    hf_sbi_printf("sbi-hello: spec version %u.%u, impl 0x%x\n",
                  (v >> 24) & 0x7f, v & 0xffffff, (uint32_t)impl.value);

    static const struct {
        uint32_t id;
        const char *name;
    } exts[] = {
        { SBI_EXT_TIME, "time" }, { SBI_EXT_IPI, "ipi" },
        { SBI_EXT_HSM, "hsm" },   { SBI_EXT_SRST, "srst" },
        { SBI_EXT_DBCN, "dbcn" },
    };
    char line[96];
    int n = hf_snprintf(line, sizeof(line), "sbi-hello: extensions");
    int any = 0;
    for (unsigned i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        struct sbiret r = hf_sbi_probe_extension(exts[i].id);
        if (r.error == 0 && r.value != 0) {
            n += hf_snprintf(line + n, sizeof(line) - (size_t)n, " %s",
                             exts[i].name);
            any = 1;
        }
    }
    hf_snprintf(line + n, sizeof(line) - (size_t)n, "%s present\n",
                any ? "" : " none");
    hf_sbi_puts(line);
}

/* ---- TIME -------------------------------------------------------------- */

static void timer_test(void)
{
    uint64_t start = hf_sbi_rdtime();
    struct sbiret r = hf_sbi_set_timer(start + TIMER_DELAY);
    if (r.error)
        fail("set_timer error %ld", r.error);
    hf_csr_set(sie, SIE_STIE);
    hf_csr_set(sstatus, SSTATUS_SIE);
    while (timer_irqs == 0)
        hf_wfi();
    hf_csr_clear(sstatus, SSTATUS_SIE);
    hf_csr_clear(sie, SIE_STIE);

    uint64_t elapsed = timer_irq_time - start;
    if (timer_irqs != 1)
        fail("%u timer interrupts for one set_timer", timer_irqs);
    if (hf_csr_read(sip) & SIP_STIP)
        fail("sip.STIP still set after set_timer(-1)");
    if (elapsed < TIMER_DELAY)
        fail("timer interrupt after %llu ticks, expected >= %u", elapsed,
             TIMER_DELAY);
    hf_sbi_printf("sbi-hello: timer interrupt after >= 10 ms ok\n");
}

/* ---- HSM --------------------------------------------------------------- */

static long hart_status(uint32_t hart)
{
    struct sbiret r = hf_sbi_hart_get_status(hart);
    if (r.error)
        fail("hart_get_status(%u) error %ld", hart, r.error);
    return r.value;
}

static uint32_t count_harts(void)
{
    uint32_t n = 0;
    while (n < HF_MAX_HARTS && hf_sbi_hart_get_status(n).error == 0)
        n++;
    return n;
}

static void wait_stopped(uint32_t hart)
{
    uint64_t t0 = hf_sbi_rdtime();
    while (hart_status(hart) != SBI_HSM_STOPPED)
        if (hf_sbi_rdtime() - t0 > WAIT_LIMIT)
            fail("hart %u did not stop", hart);
}

static void hello_entry(uint32_t hartid, uint32_t opaque)
{
    hf_sbi_printf("sbi-hello: hart %u started, opaque 0x%x\n", hartid,
                  opaque);
    hf_fence();
    hello_done[hartid] = 1;
    /* returning makes _secondary_start call hart_stop */
}

static void hsm_test(uint32_t nharts)
{
    for (uint32_t h = 1; h < nharts; h++) {
        if (hart_status(h) != SBI_HSM_STOPPED)
            fail("hart %u not stopped before hart_start", h);
        long err = hf_sbi_start_hart(h, hello_entry, OPAQUE_BASE + h);
        if (err)
            fail("hart_start(%u) = %ld", h, err);
        uint64_t t0 = hf_sbi_rdtime();
        for (;;) {
            long st = hart_status(h);
            if (hello_done[h])
                break;
            if (st == SBI_HSM_STOPPED)
                fail("hart %u stopped before it printed", h);
            if (hf_sbi_rdtime() - t0 > WAIT_LIMIT)
                fail("hart %u did not start (status %ld)", h, st);
        }
        wait_stopped(h);
        hf_sbi_printf("sbi-hello: hart %u stopped\n", h);
    }
}

/* ---- IPI ------------------------------------------------------------------ */

static void ipi_entry(uint32_t hartid, uint32_t opaque)
{
    (void)hartid;
    (void)opaque;
    hf_csr_set(sie, SIE_SSIE);
    hf_fence();
    ipi_ready = 1;
    hf_csr_set(sstatus, SSTATUS_SIE);
    for (;;)
        hf_wfi(); /* the handler prints and stops the hart */
}

static void ipi_test(void)
{
    long err = hf_sbi_start_hart(1, ipi_entry, 0);
    if (err)
        fail("hart_start(1) for the IPI = %ld", err);
    uint64_t t0 = hf_sbi_rdtime();
    while (!ipi_ready)
        if (hf_sbi_rdtime() - t0 > WAIT_LIMIT)
            fail("hart 1 did not get ready for the IPI");
    struct sbiret r = hf_sbi_send_ipi(1u << 1, 0);
    if (r.error)
        fail("send_ipi error %ld", r.error);
    t0 = hf_sbi_rdtime();
    while (!ipi_seen)
        if (hf_sbi_rdtime() - t0 > WAIT_LIMIT)
            fail("hart 1 got no IPI");
    wait_stopped(1);
}

/* ---- error paths ------------------------------------------------------- */

static void error_paths(void)
{
    struct sbiret r = hf_sbi_hart_start(99, (uintptr_t)_secondary_start, 0);
    hf_sbi_printf("sbi-hello: hart_start(99) = %ld\n", r.error);
    if (r.error != SBI_ERR_INVALID_PARAM)
        fail("hart_start(99) should be SBI_ERR_INVALID_PARAM (-3)");

    r = hf_sbi_call(SBI_EXT_DBCN, 0, 4, BAD_ADDRESS, 0, 0, 0, 0);
    hf_sbi_printf("sbi-hello: console_write(bad address) = %ld\n", r.error);
    if (r.error >= 0)
        fail("console_write(bad address) did not fail");
}

int main(uint32_t hartid, uintptr_t fdt)
{
    (void)fdt;
    if (hartid != 0)
        fail("booted on hart %u, expected hart 0", hartid);

    base_info();
    timer_test();
    uint32_t nharts = count_harts();
    if (nharts == 0)
        fail("hart_get_status(0) failed");
    hsm_test(nharts);
    if (nharts > 1)
        ipi_test();
    error_paths();
    hf_sbi_printf("sbi-hello: PASS\n");
    return 0;
}
