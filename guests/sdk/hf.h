/*
 * hf.h - the Hyperfleet guest SDK.
 *
 * A tiny freestanding runtime for RV32IMA guests on the QEMU `virt`
 * memory map: console (16550 UART), printf subset, device tree and boot
 * argument access, CLINT timer, power off and the `tohost` result word.
 *
 * crt0.S enters main(hartid, fdt) on hart 0 in M-mode with interrupts
 * disabled, after clearing .bss, initialising the UART and copying the
 * boot arguments out of the device tree. The other harts park, unless the
 * program defines hf_secondary_main (see below).
 *
 * S-mode kernels started by an SBI firmware use crt0-sbi.S, link-sbi.ld
 * and hf_sbi.h instead of crt0.S, link.ld and the machine-mode core.
 */
#ifndef HF_H
#define HF_H

/* ---- memory map (QEMU virt) ------------------------------------------ */
#define HF_RAM_BASE        0x80000000u
#define HF_RAM_DEFAULT_END 0x88000000u /* assumed when the FDT is unusable */
#define HF_TEST_BASE       0x00100000u /* sifive_test power-off device */
#define HF_CLINT_BASE      0x02000000u
#define HF_CLINT_MSIP      (HF_CLINT_BASE + 0x0000u) /* 4 bytes per hart */
#define HF_CLINT_MTIMECMP  (HF_CLINT_BASE + 0x4000u) /* 8 bytes per hart */
#define HF_CLINT_MTIME     (HF_CLINT_BASE + 0xBFF8u)
#define HF_PLIC_BASE       0x0C000000u
#define HF_UART_BASE       0x10000000u
#define HF_MTIME_HZ        10000000u   /* mtime ticks per second */

/* stacks: keep in step with link.ld */
#define HF_STACK_SIZE      0x4000
#define HF_MAX_HARTS       8

#define HF_TEST_PASS       0x5555u
#define HF_TEST_FAIL       0x3333u     /* | (code << 16) */

/* ---- CSR bits ---------------------------------------------------------- */
#define MSTATUS_SIE   (1u << 1)
#define MSTATUS_MIE   (1u << 3)
#define MSTATUS_SPIE  (1u << 5)
#define MSTATUS_MPIE  (1u << 7)
#define MSTATUS_SPP   (1u << 8)
#define MSTATUS_MPP   (3u << 11)
#define MSTATUS_MPRV  (1u << 17)
#define MSTATUS_SUM   (1u << 18)
#define MSTATUS_MXR   (1u << 19)
#define MSTATUS_TVM   (1u << 20)
#define MSTATUS_TW    (1u << 21)
#define MSTATUS_TSR   (1u << 22)

#define MIP_SSIP      (1u << 1)
#define MIP_MSIP      (1u << 3)
#define MIP_STIP      (1u << 5)
#define MIP_MTIP      (1u << 7)
#define MIP_SEIP      (1u << 9)
#define MIP_MEIP      (1u << 11)

#define MCAUSE_INTERRUPT 0x80000000u

#define SATP_MODE_SV32 0x80000000u

#ifndef __ASSEMBLER__

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* ---- CSR access (the CSR name is pasted into the instruction) -------- */
#define hf_csr_read(csr) ({                                             \
        uint32_t hf_v_;                                                  \
        __asm__ volatile ("csrr %0, " #csr : "=r"(hf_v_) : : "memory");  \
        hf_v_; })
#define hf_csr_write(csr, val) ({                                       \
        uint32_t hf_v_ = (uint32_t)(val);                               \
        __asm__ volatile ("csrw " #csr ", %0" : : "r"(hf_v_) : "memory"); })
#define hf_csr_set(csr, bits) ({                                        \
        uint32_t hf_v_ = (uint32_t)(bits);                              \
        __asm__ volatile ("csrs " #csr ", %0" : : "r"(hf_v_) : "memory"); })
#define hf_csr_clear(csr, bits) ({                                      \
        uint32_t hf_v_ = (uint32_t)(bits);                              \
        __asm__ volatile ("csrc " #csr ", %0" : : "r"(hf_v_) : "memory"); })
#define hf_csr_swap(csr, val) ({                                        \
        uint32_t hf_o_, hf_v_ = (uint32_t)(val);                        \
        __asm__ volatile ("csrrw %0, " #csr ", %1"                      \
                          : "=r"(hf_o_) : "r"(hf_v_) : "memory");       \
        hf_o_; })

static inline void hf_wfi(void) { __asm__ volatile ("wfi" : : : "memory"); }
static inline void hf_fence(void) { __asm__ volatile ("fence" : : : "memory"); }

/* ---- MMIO --------------------------------------------------------------- */
static inline void hf_mmio_write8(uintptr_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline uint8_t hf_mmio_read8(uintptr_t a) { return *(volatile uint8_t *)a; }
static inline void hf_mmio_write32(uintptr_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline uint32_t hf_mmio_read32(uintptr_t a) { return *(volatile uint32_t *)a; }

/* ---- boot state ------------------------------------------------------ */
extern char _end[];                 /* first byte after the image (page aligned) */
uint32_t hf_hartid(void);           /* a0 at entry */
uintptr_t hf_fdt_addr(void);        /* a1 at entry (0 if none) */
int hf_fdt_valid(void);             /* 1 if a1 pointed at a sane FDT */
/* Highest usable address + 1: the lower of the FDT start and the end of
 * RAM (from the FDT /memory node, or HF_RAM_DEFAULT_END without one). */
uintptr_t hf_mem_limit(void);
/* Number of harts described by the FDT (/cpus/cpu@N nodes); 0 without a
 * usable FDT. */
uint32_t hf_fdt_hart_count(void);

/*
 * Optional second entry point. Defined by the program, it is called on
 * every hart other than 0 (hart id < HF_MAX_HARTS), in M-mode with mie = 0
 * and mstatus.MIE = 0, on the hart's own stack, once hart 0 has cleared
 * .bss and initialised the SDK (hart 0 is then about to enter main, or in
 * it). When it returns, the hart parks in a WFI loop with mie = 0.
 * Without a definition (the SDK's weak default) those harts park at once.
 */
void hf_secondary_main(uint32_t hartid, uintptr_t fdt);

/* ---- console -------------------------------------------------------
 * printf subset (see printf.c): %d %i %u %x %X take 32-bit values (int and
 * uint32_t alike, 'l' changes nothing); %lld %llu %llx take 64-bit ones. */
void hf_uart_init(void);
void hf_putc(int c);
void hf_puts(const char *s);        /* no newline added */
int hf_printf(const char *fmt, ...);
int hf_vprintf(const char *fmt, va_list ap);
int hf_snprintf(char *buf, size_t size, const char *fmt, ...);
int hf_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);

/* ---- boot arguments (/chosen/bootargs, "key=value" words) ---------- */
const char *hf_bootargs(void);      /* never NULL; "" when absent */
/* Find word "key=value" (or bare "key"): returns 1 and the value span. */
int hf_arg_find(const char *key, const char **val, size_t *len);
/* Decimal or 0x-hex value of key; def when absent or not a number. */
long hf_arg_int(const char *key, long def);
/* 1 if key is present and its value equals s exactly. */
int hf_arg_is(const char *key, const char *s);
/* Copy the value of key into buf (NUL terminated); returns 1 if present. */
int hf_arg_str(const char *key, char *buf, size_t size);

/* ---- timer (CLINT) ------------------------------------------------- */
uint64_t hf_mtime(void);
void hf_mtimecmp_set(uint32_t hart, uint64_t when);
void hf_mtimecmp_disarm(uint32_t hart);   /* compare = all ones */
void hf_msip_set(uint32_t hart, uint32_t v);
/* Busy-wait for the given number of mtime ticks. */
void hf_delay_ticks(uint64_t ticks);

/* ---- stopping -------------------------------------------------------- */
/* tohost convention: 1 = pass, (n << 1) | 1 = fail test n. */
extern volatile uint32_t tohost[2];
void hf_tohost_write(uint32_t v);
__attribute__((noreturn)) void hf_poweroff_success(void);
__attribute__((noreturn)) void hf_poweroff_failure(uint32_t code);
/* Write tohost (pass, or fail test `code`) then power off accordingly. */
__attribute__((noreturn)) void hf_exit(int code);

/* ---- machine-mode helpers (hf_asm.S) ---------------------------------- */
/* Read a word; returns 0 on success, -1 if the access trapped. */
int hf_try_read32(uintptr_t addr, uint32_t *out);
/* Grant S/U-mode access to all memory through PMP entry 0 (no-op, and
 * harmless, on a machine without PMP). */
void hf_pmp_allow_all(void);
/* Default machine trap handler: reports and fails. */
void hf_trap_default(void);

/* ---- freestanding helpers ------------------------------------------- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t hf_strlen(const char *s);
int hf_strcmp(const char *a, const char *b);
int hf_strncmp(const char *a, const char *b, size_t n);

/* internal: called by crt0 before main */
void hf_sdk_init(uint32_t hartid, uintptr_t fdt);
const char *hf_fdt_bootargs(uintptr_t fdt, size_t *len);

#endif /* !__ASSEMBLER__ */
#endif /* HF_H */
