/*
 * hf.c - SDK core: start-up state, boot arguments, timer, stopping,
 * freestanding string helpers.
 */
#include "hf.h"

void hf_fdt_scan(uintptr_t addr);

/* riscv-tests style result word, in its own section (see link.ld). */
__attribute__((section(".tohost"), aligned(8), used))
volatile uint32_t tohost[2];

static uint32_t boot_hartid;
static uintptr_t boot_fdt;

#define BOOTARGS_MAX 1024
static char bootargs[BOOTARGS_MAX];

void hf_sdk_init(uint32_t hartid, uintptr_t fdt)
{
    boot_hartid = hartid;
    boot_fdt = fdt;
    hf_uart_init();
    hf_fdt_scan(fdt);

    /* copy the boot arguments out of the FDT, tabs/newlines as spaces */
    size_t len = 0;
    const char *src = hf_fdt_bootargs(fdt, &len);
    if (len >= BOOTARGS_MAX)
        len = BOOTARGS_MAX - 1;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        bootargs[i] = (c == '\t' || c == '\n' || c == '\r') ? ' ' : c;
    }
    bootargs[len] = '\0';
}

uint32_t hf_hartid(void) { return boot_hartid; }
uintptr_t hf_fdt_addr(void) { return boot_fdt; }
const char *hf_bootargs(void) { return bootargs; }

/* ---- boot arguments ------------------------------------------------------ */

int hf_arg_find(const char *key, const char **val, size_t *len)
{
    size_t klen = hf_strlen(key);
    const char *p = bootargs;

    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *w = p;
        while (*p && *p != ' ')
            p++;
        size_t wlen = (size_t)(p - w);
        if (wlen >= klen && hf_strncmp(w, key, klen) == 0 &&
            (wlen == klen || w[klen] == '=')) {
            if (val)
                *val = wlen == klen ? w + wlen : w + klen + 1;
            if (len)
                *len = wlen == klen ? 0 : wlen - klen - 1;
            return 1;
        }
    }
    return 0;
}

static int parse_long(const char *s, size_t n, long *out)
{
    int neg = 0;
    unsigned base = 10;
    unsigned long v = 0;
    size_t i = 0;

    if (i < n && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    if (i + 1 < n && s[i] == '0' &&
        (s[i + 1] == 'x' || s[i + 1] == 'X')) {
        base = 16;
        i += 2;
    }
    if (i >= n)
        return -1;
    for (; i < n; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (base == 16 && c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return -1;
        v = v * base + d;
    }
    *out = neg ? -(long)v : (long)v;
    return 0;
}

long hf_arg_int(const char *key, long def)
{
    const char *v;
    size_t n;
    long out;
    if (!hf_arg_find(key, &v, &n) || parse_long(v, n, &out))
        return def;
    return out;
}

int hf_arg_is(const char *key, const char *s)
{
    const char *v;
    size_t n;
    return hf_arg_find(key, &v, &n) && n == hf_strlen(s) &&
           hf_strncmp(v, s, n) == 0;
}

int hf_arg_str(const char *key, char *buf, size_t size)
{
    const char *v;
    size_t n;
    if (!hf_arg_find(key, &v, &n))
        return 0;
    if (size) {
        if (n >= size)
            n = size - 1;
        memcpy(buf, v, n);
        buf[n] = '\0';
    }
    return 1;
}

/* ---- timer ---------------------------------------------------------------- */

uint64_t hf_mtime(void)
{
    /* RV32: read hi, lo, hi again until hi is stable */
    volatile uint32_t *mt = (volatile uint32_t *)HF_CLINT_MTIME;
    uint32_t hi, lo;
    do {
        hi = mt[1];
        lo = mt[0];
    } while (mt[1] != hi);
    return ((uint64_t)hi << 32) | lo;
}

void hf_mtimecmp_set(uint32_t hart, uint64_t when)
{
    volatile uint32_t *cmp = (volatile uint32_t *)(HF_CLINT_MTIMECMP + 8u * hart);
    /* never let the compare pass through a value below `when` */
    cmp[0] = 0xffffffffu;
    cmp[1] = (uint32_t)(when >> 32);
    cmp[0] = (uint32_t)when;
}

void hf_mtimecmp_disarm(uint32_t hart)
{
    volatile uint32_t *cmp = (volatile uint32_t *)(HF_CLINT_MTIMECMP + 8u * hart);
    cmp[0] = 0xffffffffu;
    cmp[1] = 0xffffffffu;
}

void hf_msip_set(uint32_t hart, uint32_t v)
{
    hf_mmio_write32(HF_CLINT_MSIP + 4u * hart, v);
}

void hf_delay_ticks(uint64_t ticks)
{
    uint64_t end = hf_mtime() + ticks;
    while (hf_mtime() < end)
        ;
}

/* ---- stopping ----------------------------------------------------------- */

void hf_tohost_write(uint32_t v)
{
    /* a single 32-bit store of the low word (the high word stays 0) */
    hf_fence();
    tohost[0] = v;
    hf_fence();
}

void hf_poweroff_success(void)
{
    hf_mmio_write32(HF_TEST_BASE, HF_TEST_PASS);
    for (;;)
        hf_wfi();
}

void hf_poweroff_failure(uint32_t code)
{
    if (code == 0 || code > 0xffffu)
        code = 1;
    hf_mmio_write32(HF_TEST_BASE, (code << 16) | HF_TEST_FAIL);
    for (;;)
        hf_wfi();
}

void hf_exit(int code)
{
    if (code == 0) {
        hf_tohost_write(1);
        hf_poweroff_success();
    }
    hf_tohost_write(((uint32_t)code << 1) | 1u);
    hf_poweroff_failure(1);
}

__attribute__((noreturn)) void hf_trap_report(uint32_t cause, uint32_t epc,
                                              uint32_t tval)
{
    hf_printf("hf: unexpected trap mcause=0x%08x mepc=0x%08x mtval=0x%08x\n",
              cause, epc, tval);
    hf_exit(1);
}
