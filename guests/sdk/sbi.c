/*
 * sbi.c - SBI calls, console and hart start-up for S-mode kernels
 * (see hf_sbi.h).
 */
#include "hf_sbi.h"

struct sbiret hf_sbi_call(uint32_t ext, uint32_t fid, uint32_t a0,
                          uint32_t a1, uint32_t a2, uint32_t a3,
                          uint32_t a4, uint32_t a5)
{
    register uint32_t r_a0 __asm__("a0") = a0;
    register uint32_t r_a1 __asm__("a1") = a1;
    register uint32_t r_a2 __asm__("a2") = a2;
    register uint32_t r_a3 __asm__("a3") = a3;
    register uint32_t r_a4 __asm__("a4") = a4;
    register uint32_t r_a5 __asm__("a5") = a5;
    register uint32_t r_a6 __asm__("a6") = fid;
    register uint32_t r_a7 __asm__("a7") = ext;
    __asm__ volatile ("ecall"
                      : "+r"(r_a0), "+r"(r_a1)
                      : "r"(r_a2), "r"(r_a3), "r"(r_a4), "r"(r_a5),
                        "r"(r_a6), "r"(r_a7)
                      : "memory");
    struct sbiret r = { (long)r_a0, (long)r_a1 };
    return r;
}

#define CALL0(ext, fid) hf_sbi_call(ext, fid, 0, 0, 0, 0, 0, 0)

/* ---- BASE ---------------------------------------------------------------- */

struct sbiret hf_sbi_get_spec_version(void) { return CALL0(SBI_EXT_BASE, 0); }
struct sbiret hf_sbi_get_impl_id(void) { return CALL0(SBI_EXT_BASE, 1); }
struct sbiret hf_sbi_get_impl_version(void) { return CALL0(SBI_EXT_BASE, 2); }

struct sbiret hf_sbi_probe_extension(uint32_t ext)
{
    return hf_sbi_call(SBI_EXT_BASE, 3, ext, 0, 0, 0, 0, 0);
}

/* ---- TIME ------------------------------------------------------------------ */

struct sbiret hf_sbi_set_timer(uint64_t when)
{
    return hf_sbi_call(SBI_EXT_TIME, 0, (uint32_t)when,
                       (uint32_t)(when >> 32), 0, 0, 0, 0);
}

uint64_t hf_sbi_rdtime(void)
{
    uint32_t hi, lo, again;
    do {
        __asm__ volatile ("rdtimeh %0" : "=r"(hi));
        __asm__ volatile ("rdtime %0" : "=r"(lo));
        __asm__ volatile ("rdtimeh %0" : "=r"(again));
    } while (hi != again);
    return ((uint64_t)hi << 32) | lo;
}

/* ---- IPI, HSM, SRST, DBCN ----------------------------------------------- */

struct sbiret hf_sbi_send_ipi(uint32_t hart_mask, uint32_t hart_mask_base)
{
    return hf_sbi_call(SBI_EXT_IPI, 0, hart_mask, hart_mask_base, 0, 0, 0, 0);
}

struct sbiret hf_sbi_hart_start(uint32_t hartid, uintptr_t start,
                                uint32_t opaque)
{
    return hf_sbi_call(SBI_EXT_HSM, 0, hartid, start, opaque, 0, 0, 0);
}

struct sbiret hf_sbi_hart_stop(void) { return CALL0(SBI_EXT_HSM, 1); }

struct sbiret hf_sbi_hart_get_status(uint32_t hartid)
{
    return hf_sbi_call(SBI_EXT_HSM, 2, hartid, 0, 0, 0, 0, 0);
}

struct sbiret hf_sbi_system_reset(uint32_t type, uint32_t reason)
{
    return hf_sbi_call(SBI_EXT_SRST, 0, type, reason, 0, 0, 0, 0);
}

struct sbiret hf_sbi_console_write(const void *buf, uint32_t len)
{
    /* physical address = virtual address: the kernel runs with satp = 0 */
    return hf_sbi_call(SBI_EXT_DBCN, 0, len, (uint32_t)(uintptr_t)buf, 0,
                       0, 0, 0);
}

/* ---- console --------------------------------------------------------------- */

static int have_dbcn;

static void console_write(const char *s, uint32_t len)
{
    if (!have_dbcn) {
        for (uint32_t i = 0; i < len; i++)
            hf_sbi_call(SBI_EXT_LEGACY_PUTCHAR, 0, (uint8_t)s[i], 0, 0, 0,
                        0, 0);
        return;
    }
    /* the firmware may write fewer bytes than asked: go on from there */
    while (len) {
        struct sbiret r = hf_sbi_console_write(s, len);
        if (r.error || r.value <= 0 || (uint32_t)r.value > len)
            return;
        s += r.value;
        len -= (uint32_t)r.value;
    }
}

void hf_sbi_puts(const char *s)
{
    console_write(s, (uint32_t)hf_strlen(s));
}

int hf_sbi_printf(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = hf_vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    console_write(buf, n < (int)sizeof(buf) ? (uint32_t)n : sizeof(buf) - 1);
    return n;
}

/* printf.c's console sink needs hf_putc; S-mode kernels print through
 * hf_sbi_printf, but hf_printf works too (one firmware call a byte). */
void hf_putc(int c)
{
    char ch = (char)c;
    console_write(&ch, 1);
}

/* ---- start-up, harts, traps, stopping ------------------------------------ */

void hf_sbi_init(uint32_t hartid, uintptr_t fdt)
{
    (void)hartid;
    (void)fdt;
    have_dbcn = hf_sbi_probe_extension(SBI_EXT_DBCN).value != 0;
}

/* what each started hart runs (written before its hart_start) */
static hf_sbi_entry_fn volatile entry_fn[HF_MAX_HARTS];

long hf_sbi_start_hart(uint32_t hart, hf_sbi_entry_fn fn, uint32_t opaque)
{
    if (hart >= HF_MAX_HARTS)
        return SBI_ERR_INVALID_PARAM; /* no stack for it */
    entry_fn[hart] = fn;
    hf_fence();
    return hf_sbi_hart_start(hart, (uintptr_t)_secondary_start, opaque).error;
}

void hf_sbi_secondary(uint32_t hartid, uint32_t opaque)
{
    hf_fence();
    hf_sbi_entry_fn fn = entry_fn[hartid];
    if (fn)
        fn(hartid, opaque);
    hf_sbi_hart_stop();
}

__attribute__((noreturn)) void hf_sbi_exit(int code)
{
    hf_sbi_system_reset(SBI_RESET_SHUTDOWN,
                        code ? SBI_REASON_FAILURE : SBI_REASON_NONE);
    /* SRST missing or refused: the legacy shutdown, then give up */
    hf_sbi_call(SBI_EXT_LEGACY_SHUTDOWN, 0, 0, 0, 0, 0, 0, 0);
    for (;;)
        hf_wfi();
}

__attribute__((noreturn)) void hf_sbi_trap_report(uint32_t scause,
                                                  uint32_t sepc,
                                                  uint32_t stval)
{
    hf_sbi_printf("hf: hart %u: unexpected trap scause=0x%08x sepc=0x%08x "
                  "stval=0x%08x\n", hf_sbi_hartid(), scause, sepc, stval);
    hf_sbi_exit(1);
}

__attribute__((weak)) void hf_sbi_trap(uint32_t scause, uint32_t sepc,
                                       uint32_t stval)
{
    hf_sbi_trap_report(scause, sepc, stval);
}
