/*
 * isa.h - macros for the Hyperfleet ISA test programs.
 *
 * A test program is an assembly file:
 *
 *     #include "isa.h"
 *     ISA_BEGIN "isa-alu"
 *         TEST_RR(add, 3, 1, 2)          // one check
 *         OK "add"                       // prints "isa-alu: add ok"
 *     ISA_END
 *
 * ISA_BEGIN defines isa_body(), called by the runtime (isa_rt.c) in M-mode
 * after it has installed the trap handlers; isa_body returns the number
 * of checks that passed and the runtime prints "<name>: PASS (N checks)",
 * writes tohost = 1 and powers off with success.
 *
 * Every check has a static number (1, 2, ... in source order). A failed
 * check prints its number, source line and the two values, then
 * "<name>: FAIL test <n>", writes tohost = (n << 1) | 1 and powers off with
 * failure. A check may fail in any privilege mode: the runtime first
 * returns to M-mode through an ecall (see ISA_MAGIC_TO_M).
 *
 * Register conventions inside test bodies:
 *   s11  number of passed checks (never touch)
 *   s9   scratch for expected values of CHECKI and friends
 *   sp   the stack (the failure path uses it)
 * Everything else is free, but CHECK_MASK clobbers a7, the LOG_* and
 * CHECK_LOG* helpers t5/t6, and OK (like any call to C) the caller-saved
 * registers.
 */
#ifndef ISA_H
#define ISA_H

#include "hf.h"

#define NPASS s11
#define XS    s9

/* ecall with a7 = ISA_MAGIC_TO_M from any mode continues in M-mode at the
 * address in a0 (the handlers honour it; other registers are preserved). */
#define ISA_MAGIC_TO_M 0x48460001

/* trap log (isa_log): one 16-byte entry per trap taken, M or S handler */
#define LOG_CAUSE 0
#define LOG_EPC   4
#define LOG_TVAL  8
#define LOG_INFO  12      /* (handler privilege << 8) | previous privilege */
#define LOG_SIZE  16
#define LOG_MAX   32

#define PRV_U 0
#define PRV_S 1
#define PRV_M 3
#define INFO_M(prev) ((PRV_M << 8) | (prev))
#define INFO_S(prev) ((PRV_S << 8) | (prev))

#define CAUSE_MISALIGNED_FETCH 0
#define CAUSE_FETCH_ACCESS     1
#define CAUSE_ILLEGAL          2
#define CAUSE_BREAKPOINT       3
#define CAUSE_MISALIGNED_LOAD  4
#define CAUSE_LOAD_ACCESS      5
#define CAUSE_MISALIGNED_STORE 6
#define CAUSE_STORE_ACCESS     7
#define CAUSE_ECALL_U          8
#define CAUSE_ECALL_S          9
#define CAUSE_ECALL_M          11
#define CAUSE_FETCH_PAGE       12
#define CAUSE_LOAD_PAGE        13
#define CAUSE_STORE_PAGE       15

#define IRQ_S_SOFT  (MCAUSE_INTERRUPT | 1)
#define IRQ_M_SOFT  (MCAUSE_INTERRUPT | 3)
#define IRQ_S_TIMER (MCAUSE_INTERRUPT | 5)
#define IRQ_M_TIMER (MCAUSE_INTERRUPT | 7)

#ifdef __ASSEMBLER__

.set isa_tn, 0

/* ---- program frame ------------------------------------------------------ */

.macro ISA_BEGIN name:req
    .pushsection .rodata.isa_name, "a", @progbits
    .globl isa_program_name
isa_program_name:
    .asciz "\name"
    .popsection
    .text
    .globl isa_body
    .type isa_body, @function
    .balign 4
isa_body:
    addi    sp, sp, -64
    sw      ra, 60(sp)
    sw      s0, 56(sp)
    sw      s1, 52(sp)
    sw      s2, 48(sp)
    sw      s3, 44(sp)
    sw      s4, 40(sp)
    sw      s5, 36(sp)
    sw      s6, 32(sp)
    sw      s7, 28(sp)
    sw      s8, 24(sp)
    sw      s9, 20(sp)
    sw      s10, 16(sp)
    sw      s11, 12(sp)
    li      NPASS, 0
.endm

.macro ISA_END
    mv      a0, NPASS
    lw      ra, 60(sp)
    lw      s0, 56(sp)
    lw      s1, 52(sp)
    lw      s2, 48(sp)
    lw      s3, 44(sp)
    lw      s4, 40(sp)
    lw      s5, 36(sp)
    lw      s6, 32(sp)
    lw      s7, 28(sp)
    lw      s8, 24(sp)
    lw      s9, 20(sp)
    lw      s10, 16(sp)
    lw      s11, 12(sp)
    addi    sp, sp, 64
    ret
    .size isa_body, . - isa_body
.endm

/* ---- checks ------------------------------------------------------------------ */

/* got == exp (registers), else fail with this check's number */
.macro CHECK_AT got:req, exp:req, line:req
    .set isa_tn, isa_tn + 1
    beq     \got, \exp, .Lck_ok\@
    addi    sp, sp, -16
    sw      \got, 0(sp)
    sw      \exp, 4(sp)
    li      a0, isa_tn
    li      a1, \line
    j       isa_fail_stack
.Lck_ok\@:
    addi    NPASS, NPASS, 1
.endm

/* got != bad (registers) */
.macro CHECK_NE_AT got:req, bad:req, line:req
    .set isa_tn, isa_tn + 1
    bne     \got, \bad, .Lck_ok\@
    addi    sp, sp, -16
    sw      \got, 0(sp)
    sw      \bad, 4(sp)
    li      a0, isa_tn
    li      a1, \line
    j       isa_fail_stack
.Lck_ok\@:
    addi    NPASS, NPASS, 1
.endm

#define CHECK(got, exp)     CHECK_AT got, exp, __LINE__
#define CHECKI(got, imm)    li XS, imm; CHECK_AT got, XS, __LINE__
#define CHECK_NE(got, bad)  CHECK_NE_AT got, bad, __LINE__
#define CHECK_NEI(got, imm) li XS, imm; CHECK_NE_AT got, XS, __LINE__
/* (got & mask) == imm (clobbers a7) */
#define CHECK_MASK(got, mask, imm) li XS, mask; and XS, XS, got; \
                                   li a7, imm; CHECK_AT XS, a7, __LINE__
/* memory word at symbol == imm (clobbers t6) */
#define CHECK_MEM(sym, imm) la t6, sym; lw t6, 0(t6); CHECKI(t6, imm)

/* print "<name>: <group> ok" (clobbers caller-saved registers) */
.macro OK group:req
    .pushsection .rodata.isa_str, "a", @progbits
.Lok_str\@:
    .asciz "\group"
    .popsection
    la      a0, .Lok_str\@
    call    isa_ok
.endm

/* ---- common test shapes -------------------------------------------------------- */

/* register-register op: op a0, a1, a2 */
#define TEST_RR(op, exp, v1, v2) \
    li a1, v1; li a2, v2; op a0, a1, a2; CHECKI(a0, exp)
/* register-immediate op: op a0, a1, imm */
#define TEST_RI(op, exp, v1, imm) \
    li a1, v1; op a0, a1, imm; CHECKI(a0, exp)

/* ---- trap log ------------------------------------------------------------------ */

/* forget every logged trap */
#define LOG_RESET   la t6, isa_log_count; sw zero, 0(t6)
/* reg = number of traps logged since LOG_RESET */
#define LOG_COUNT(reg) la reg, isa_log_count; lw reg, 0(reg)
/* reg = field of log entry idx */
#define LOG_GET(reg, idx, field) la reg, isa_log; lw reg, ((idx) * LOG_SIZE + (field))(reg)
/* check a whole log entry (cause, info) */
#define CHECK_LOG(idx, cause, info) \
    LOG_GET(t6, idx, LOG_CAUSE); CHECKI(t6, cause); \
    LOG_GET(t6, idx, LOG_INFO); CHECKI(t6, info)
/* check the epc of log entry idx against a label */
#define CHECK_LOG_EPC(idx, label) \
    LOG_GET(t6, idx, LOG_EPC); la t5, label; CHECK(t6, t5)
/* check the tval of log entry idx against a value */
#define CHECK_LOG_TVAL(idx, val) \
    LOG_GET(t6, idx, LOG_TVAL); CHECKI(t6, val)

/* ---- privilege changes (from M-mode) ------------------------------------------ */

/* continue at label in mode prv (PRV_U / PRV_S / PRV_M) via mret;
 * clobbers t0 */
.macro MRET_TO prv:req, label:req
    li      t0, MSTATUS_MPP
    csrc    mstatus, t0
    li      t0, (\prv) << 11
    csrs    mstatus, t0
    la      t0, \label
    csrw    mepc, t0
    mret
.endm

/* from any mode: continue at label in M-mode (clobbers a0, a7) */
.macro TO_M label:req
    la      a0, \label
    li      a7, ISA_MAGIC_TO_M
    ecall
.endm

#else /* C */

#include <stdint.h>

extern volatile uint32_t isa_log_count;
extern volatile uint32_t isa_log[LOG_MAX * 4];
extern volatile uint32_t isa_mti_sets_stip;

void isa_begin(void);
void isa_ok(const char *group);
void isa_note(const char *fmt, ...);
__attribute__((noreturn)) void isa_fail(uint32_t n, uint32_t line,
                                        uint32_t got, uint32_t exp);
__attribute__((noreturn)) void isa_pass(uint32_t nchecks);
/* C-side check; counts toward the PASS total */
void isa_check_at(uint32_t got, uint32_t exp, uint32_t line);
#define ISA_CHECK(got, exp) isa_check_at((uint32_t)(got), (uint32_t)(exp), __LINE__)
extern uint32_t isa_c_checks;

#endif /* __ASSEMBLER__ */
#endif /* ISA_H */
