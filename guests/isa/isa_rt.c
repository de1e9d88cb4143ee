/*
 * isa_rt.c - C side of the ISA test runtime: start-up, reporting.
 */
#include "isa.h"

extern const char isa_program_name[];
/* programs with a C driver define their own main and may omit isa_body */
extern uint32_t isa_body(void) __attribute__((weak));
extern char isa_mtrap[], isa_strap[];
extern uint32_t isa_mframe[], isa_sframe[];

uint32_t isa_c_checks;

void isa_begin(void)
{
    hf_pmp_allow_all();
    hf_csr_write(mtvec, (uintptr_t)isa_mtrap);
    hf_csr_write(stvec, (uintptr_t)isa_strap);
    hf_csr_write(mscratch, (uintptr_t)isa_mframe);
    hf_csr_write(sscratch, (uintptr_t)isa_sframe);
    hf_csr_write(medeleg, 0);
    hf_csr_write(mideleg, 0);
    hf_csr_write(mie, 0);
    hf_csr_write(satp, 0);
    hf_mtimecmp_disarm(hf_hartid());
    isa_log_count = 0;
    isa_mti_sets_stip = 0;
}

void isa_ok(const char *group)
{
    hf_printf("%s: %s ok\n", isa_program_name, group);
}

void isa_note(const char *fmt, ...)
{
    va_list ap;
    hf_printf("%s: ", isa_program_name);
    va_start(ap, fmt);
    hf_vprintf(fmt, ap);
    va_end(ap);
}

void isa_fail(uint32_t n, uint32_t line, uint32_t got, uint32_t exp)
{
    hf_printf("%s: check %u (line %u): got 0x%08x, expected 0x%08x\n",
              isa_program_name, n, line, got, exp);
    hf_printf("%s: FAIL test %u\n", isa_program_name, n);
    hf_exit((int)n);
}

void isa_pass(uint32_t nchecks)
{
    hf_printf("%s: PASS (%u checks)\n", isa_program_name,
              nchecks + isa_c_checks);
    hf_exit(0);
}

/* C checks are numbered from 1001 upwards in execution order */
void isa_check_at(uint32_t got, uint32_t exp, uint32_t line)
{
    static uint32_t n = 1000;
    n++;
    if (got != exp)
        isa_fail(n, line, got, exp);
    isa_c_checks++;
}

__attribute__((weak)) int main(uint32_t hartid, uintptr_t fdt)
{
    (void)hartid;
    (void)fdt;
    isa_begin();
    isa_pass(isa_body());
}
