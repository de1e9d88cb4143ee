/*
 * hf_sbi.h - S-mode kernels on an SBI firmware (crt0-sbi.S, sbi.c,
 * link-sbi.ld).
 *
 * The firmware loads the kernel at 0x80200000 and enters _start in S-mode
 * on the boot hart with a0 = hart id, a1 = device tree; the other harts
 * wait for an HSM hart_start. Such a kernel must not touch M-mode CSRs or
 * the machine's devices directly: the console, timer, IPIs, harts and
 * power off all go through `ecall` (SBI v2.0 calling convention: a7 =
 * extension id, a6 = function id, a0..a5 = arguments; returns a0 = error,
 * a1 = value).
 *
 * crt0-sbi.S: the boot hart sets its stack (HF_STACK_SIZE per hart, by
 * hart id), tp = hart id, stvec = hf_sbi_trap_entry, clears .bss once,
 * calls hf_sbi_init() and main(hartid, fdt); a returning main shuts the
 * machine down (0: shutdown, else shutdown with reason "system failure").
 * hf_sbi_start_hart(hart, fn, opaque) starts another hart at the same
 * kind of entry (_secondary_start: own stack, tp, stvec), which calls
 * fn(hartid, opaque) in S-mode with interrupts disabled; if fn returns the
 * hart calls hart_stop.
 *
 * From hf.h only the types, CSR macros (S-mode CSRs only!), the printf
 * formatter (hf_snprintf/hf_vsnprintf) and the string helpers apply.
 */
#ifndef HF_SBI_H
#define HF_SBI_H

/* The constants below are also used by crt0-sbi.S: no C suffixes. */

#include "hf.h"

#define HF_SBI_KERNEL_BASE 0x80200000u
#define HF_TIMEBASE_HZ     10000000u   /* virt's timebase-frequency */

/* S-mode CSR bits */
#define SSTATUS_SIE   (1 << 1)
#define SSTATUS_SPIE  (1 << 5)
#define SSTATUS_SPP   (1 << 8)
#define SIE_SSIE      (1 << 1)
#define SIE_STIE      (1 << 5)
#define SIE_SEIE      (1 << 9)
#define SIP_SSIP      SIE_SSIE
#define SIP_STIP      SIE_STIE
#define SCAUSE_INTERRUPT 0x80000000u
#define IRQ_S_SOFT    1u
#define IRQ_S_TIMER   5u
#define IRQ_S_EXT     9u

/* SBI extension ids */
#define SBI_EXT_LEGACY_PUTCHAR 0x01
#define SBI_EXT_LEGACY_SHUTDOWN 0x08
#define SBI_EXT_BASE  0x10
#define SBI_EXT_TIME  0x54494D45   /* "TIME" */
#define SBI_EXT_IPI   0x00735049   /* "sPI" */
#define SBI_EXT_RFNC  0x52464E43   /* "RFNC" */
#define SBI_EXT_HSM   0x0048534D   /* "HSM" */
#define SBI_EXT_SRST  0x53525354   /* "SRST" */
#define SBI_EXT_DBCN  0x4442434E   /* "DBCN" */

/* SBI error codes */
#define SBI_SUCCESS                0
#define SBI_ERR_FAILED            -1
#define SBI_ERR_NOT_SUPPORTED     -2
#define SBI_ERR_INVALID_PARAM     -3
#define SBI_ERR_DENIED            -4
#define SBI_ERR_INVALID_ADDRESS   -5
#define SBI_ERR_ALREADY_AVAILABLE -6
#define SBI_ERR_ALREADY_STARTED   -7
#define SBI_ERR_ALREADY_STOPPED   -8

/* HSM hart states */
#define SBI_HSM_STARTED       0
#define SBI_HSM_STOPPED       1
#define SBI_HSM_START_PENDING 2
#define SBI_HSM_STOP_PENDING  3

/* SRST */
#define SBI_RESET_SHUTDOWN    0
#define SBI_RESET_COLD        1
#define SBI_RESET_WARM        2
#define SBI_REASON_NONE       0
#define SBI_REASON_FAILURE    1

#ifndef __ASSEMBLER__

struct sbiret {
    long error;
    long value;
};

/* The raw call: a7 = ext, a6 = fid, a0..a5 = args. */
struct sbiret hf_sbi_call(uint32_t ext, uint32_t fid, uint32_t a0,
                          uint32_t a1, uint32_t a2, uint32_t a3,
                          uint32_t a4, uint32_t a5);

/* BASE */
struct sbiret hf_sbi_get_spec_version(void);
struct sbiret hf_sbi_get_impl_id(void);
struct sbiret hf_sbi_get_impl_version(void);
struct sbiret hf_sbi_probe_extension(uint32_t ext);

/* TIME: absolute time in timebase ticks; all ones disarms. */
struct sbiret hf_sbi_set_timer(uint64_t when);
uint64_t hf_sbi_rdtime(void);       /* the `time` CSR, 64 bits */

/* IPI: harts hart_mask_base + bit i for every bit i set in hart_mask;
 * base = all ones (-1) means every hart. */
struct sbiret hf_sbi_send_ipi(uint32_t hart_mask, uint32_t hart_mask_base);

/* HSM */
struct sbiret hf_sbi_hart_start(uint32_t hartid, uintptr_t start,
                                uint32_t opaque);
struct sbiret hf_sbi_hart_stop(void);   /* returns only on failure */
struct sbiret hf_sbi_hart_get_status(uint32_t hartid);

/* SRST: returns only on failure. */
struct sbiret hf_sbi_system_reset(uint32_t type, uint32_t reason);

/* DBCN: write bytes at a physical address (we run with satp = 0). */
struct sbiret hf_sbi_console_write(const void *buf, uint32_t len);

/* Console on DBCN (legacy putchar when DBCN is absent): each call is
 * written with as few firmware calls as possible, so lines from different
 * harts do not interleave. Output longer than 256 bytes is cut. */
void hf_sbi_puts(const char *s);
int hf_sbi_printf(const char *fmt, ...);

/* Starts `hart` (< HF_MAX_HARTS) at _secondary_start, which calls
 * fn(hartid, opaque) on its own stack. Returns the SBI error. */
typedef void (*hf_sbi_entry_fn)(uint32_t hartid, uint32_t opaque);
long hf_sbi_start_hart(uint32_t hart, hf_sbi_entry_fn fn, uint32_t opaque);
extern char _secondary_start[];

/* This hart's id (kept in tp by crt0-sbi.S). */
static inline uint32_t hf_sbi_hartid(void)
{
    uint32_t id;
    __asm__ volatile ("mv %0, tp" : "=r"(id));
    return id;
}

/* Shuts down: reason 0 (code 0) or "system failure" (code != 0). */
__attribute__((noreturn)) void hf_sbi_exit(int code);

/*
 * S-mode traps land in hf_sbi_trap_entry (crt0-sbi.S), which saves the
 * caller-saved registers, calls hf_sbi_trap(scause, sepc, stval) and
 * returns with sret. The SDK's weak hf_sbi_trap reports the trap and
 * fails; a kernel that takes interrupts defines its own and passes what
 * it does not handle to hf_sbi_trap_report.
 */
void hf_sbi_trap(uint32_t scause, uint32_t sepc, uint32_t stval);
__attribute__((noreturn)) void hf_sbi_trap_report(uint32_t scause,
                                                  uint32_t sepc,
                                                  uint32_t stval);

/* internal: called by crt0-sbi.S before main */
void hf_sbi_init(uint32_t hartid, uintptr_t fdt);
void hf_sbi_secondary(uint32_t hartid, uint32_t opaque);

#endif /* !__ASSEMBLER__ */
#endif /* HF_SBI_H */
