/*
 * isa_trap.S - trap handlers and failure path shared by the ISA tests.
 *
 * isa_mtrap (M-mode, mtvec) and isa_strap (S-mode, stvec) save every
 * register in a frame found through m/sscratch, append the trap to the
 * shared log (isa_log) and then:
 *
 *   ecall with a7 == ISA_MAGIC_TO_M  M: continue in M-mode at a0.
 *                                    S: forward to M with an ecall.
 *   fetch faults (cause 1, 12)       resume at ra (reach such addresses
 *                                    with jalr ra, ...)
 *   other exceptions                 skip the 4-byte instruction
 *   interrupts                       silence the source and return:
 *     M timer    mtimecmp = all ones (and set mip.STIP when
 *                isa_mti_sets_stip != 0)
 *     M soft     msip = 0
 *     S timer    clear sie.STIE  (S handler)
 *     S soft     clear sip.SSIP  (S handler)
 *     others     clear the enable bit
 */
#include "isa.h"

#define FRAME_WORDS 32
#define R(n) ((n) * 4)

    .bss
    .balign 16
    .globl isa_mframe, isa_sframe
isa_mframe: .space FRAME_WORDS * 4
isa_sframe: .space FRAME_WORDS * 4

    .globl isa_log_count, isa_log, isa_mti_sets_stip
isa_log_count:      .word 0
isa_mti_sets_stip:  .word 0
    .balign 16
isa_log:            .space LOG_MAX * LOG_SIZE

    .text

/* save x1, x3..x31 into the frame at sp; x2 is saved by the caller */
.macro SAVE_REGS
    sw x1, R(1)(sp)
    sw x3, R(3)(sp)
    sw x4, R(4)(sp)
    sw x5, R(5)(sp)
    sw x6, R(6)(sp)
    sw x7, R(7)(sp)
    sw x8, R(8)(sp)
    sw x9, R(9)(sp)
    sw x10, R(10)(sp)
    sw x11, R(11)(sp)
    sw x12, R(12)(sp)
    sw x13, R(13)(sp)
    sw x14, R(14)(sp)
    sw x15, R(15)(sp)
    sw x16, R(16)(sp)
    sw x17, R(17)(sp)
    sw x18, R(18)(sp)
    sw x19, R(19)(sp)
    sw x20, R(20)(sp)
    sw x21, R(21)(sp)
    sw x22, R(22)(sp)
    sw x23, R(23)(sp)
    sw x24, R(24)(sp)
    sw x25, R(25)(sp)
    sw x26, R(26)(sp)
    sw x27, R(27)(sp)
    sw x28, R(28)(sp)
    sw x29, R(29)(sp)
    sw x30, R(30)(sp)
    sw x31, R(31)(sp)
.endm

/* restore x1, x3..x31 and finally x2 from the frame at sp */
.macro RESTORE_REGS
    lw x1, R(1)(sp)
    lw x3, R(3)(sp)
    lw x4, R(4)(sp)
    lw x5, R(5)(sp)
    lw x6, R(6)(sp)
    lw x7, R(7)(sp)
    lw x8, R(8)(sp)
    lw x9, R(9)(sp)
    lw x10, R(10)(sp)
    lw x11, R(11)(sp)
    lw x12, R(12)(sp)
    lw x13, R(13)(sp)
    lw x14, R(14)(sp)
    lw x15, R(15)(sp)
    lw x16, R(16)(sp)
    lw x17, R(17)(sp)
    lw x18, R(18)(sp)
    lw x19, R(19)(sp)
    lw x20, R(20)(sp)
    lw x21, R(21)(sp)
    lw x22, R(22)(sp)
    lw x23, R(23)(sp)
    lw x24, R(24)(sp)
    lw x25, R(25)(sp)
    lw x26, R(26)(sp)
    lw x27, R(27)(sp)
    lw x28, R(28)(sp)
    lw x29, R(29)(sp)
    lw x30, R(30)(sp)
    lw x31, R(31)(sp)
    lw x2, R(2)(sp)
.endm

/* append (s0 cause, s1 epc, s2 tval, s3 info) to the log; clobbers t0-t2 */
.macro LOG_APPEND
    la      t0, isa_log_count
    lw      t1, 0(t0)
    addi    t2, t1, 1
    sw      t2, 0(t0)
    li      t2, LOG_MAX
    bgeu    t1, t2, .Lfull\@
    slli    t1, t1, 4
    la      t0, isa_log
    add     t0, t0, t1
    sw      s0, LOG_CAUSE(t0)
    sw      s1, LOG_EPC(t0)
    sw      s2, LOG_TVAL(t0)
    sw      s3, LOG_INFO(t0)
.Lfull\@:
.endm

/* ---------------------------------------------------------------------- */

    .balign 64
    .globl isa_mtrap
    .type isa_mtrap, @function
isa_mtrap:
    csrrw   sp, mscratch, sp
    SAVE_REGS
    csrr    t0, mscratch
    sw      t0, R(2)(sp)
    csrw    mscratch, sp

    csrr    s0, mcause
    csrr    s1, mepc
    csrr    s2, mtval
    csrr    s3, mstatus
    srli    s3, s3, 11
    andi    s3, s3, 3
    ori     s3, s3, PRV_M << 8
    LOG_APPEND

    bltz    s0, .Lm_irq
    li      t0, CAUSE_ECALL_U
    beq     s0, t0, .Lm_ecall
    li      t0, CAUSE_ECALL_S
    beq     s0, t0, .Lm_ecall
    li      t0, CAUSE_ECALL_M
    beq     s0, t0, .Lm_ecall
    li      t0, CAUSE_FETCH_ACCESS
    beq     s0, t0, .Lm_fetch
    li      t0, CAUSE_FETCH_PAGE
    beq     s0, t0, .Lm_fetch
.Lm_skip:
    addi    s1, s1, 4
    csrw    mepc, s1
    j       .Lm_out
.Lm_ecall:
    lw      t0, R(17)(sp)           /* a7 */
    li      t1, ISA_MAGIC_TO_M
    bne     t0, t1, .Lm_skip
    lw      t0, R(10)(sp)           /* a0: where to go */
    csrw    mepc, t0
    li      t0, MSTATUS_MPP
    csrs    mstatus, t0
    j       .Lm_out
.Lm_fetch:
    lw      t0, R(1)(sp)            /* ra */
    csrw    mepc, t0
    j       .Lm_out

.Lm_irq:
    andi    t0, s0, 31
    li      t1, 7
    beq     t0, t1, .Lm_timer
    li      t1, 3
    beq     t0, t1, .Lm_soft
    li      t1, 1
    sll     t1, t1, t0
    csrc    mie, t1
    j       .Lm_out
.Lm_timer:
    csrr    t0, mhartid
    slli    t0, t0, 3
    li      t1, HF_CLINT_MTIMECMP
    add     t0, t0, t1
    li      t1, -1
    sw      t1, 0(t0)
    sw      t1, 4(t0)
    la      t0, isa_mti_sets_stip
    lw      t0, 0(t0)
    beqz    t0, .Lm_out
    li      t0, MIP_STIP
    csrs    mip, t0
    j       .Lm_out
.Lm_soft:
    csrr    t0, mhartid
    slli    t0, t0, 2
    li      t1, HF_CLINT_MSIP
    add     t0, t0, t1
    sw      zero, 0(t0)
.Lm_out:
    RESTORE_REGS
    mret
    .size isa_mtrap, . - isa_mtrap

/* ---------------------------------------------------------------------- */

    .balign 64
    .globl isa_strap
    .type isa_strap, @function
isa_strap:
    csrrw   sp, sscratch, sp
    SAVE_REGS
    csrr    t0, sscratch
    sw      t0, R(2)(sp)
    csrw    sscratch, sp

    csrr    s0, scause
    csrr    s1, sepc
    csrr    s2, stval
    csrr    s3, sstatus
    srli    s3, s3, 8
    andi    s3, s3, 1
    ori     s3, s3, PRV_S << 8
    LOG_APPEND

    bltz    s0, .Ls_irq
    li      t0, CAUSE_ECALL_U
    beq     s0, t0, .Ls_ecall
    li      t0, CAUSE_FETCH_ACCESS
    beq     s0, t0, .Ls_fetch
    li      t0, CAUSE_FETCH_PAGE
    beq     s0, t0, .Ls_fetch
.Ls_skip:
    addi    s1, s1, 4
    csrw    sepc, s1
    j       .Ls_out
.Ls_ecall:
    lw      t0, R(17)(sp)
    li      t1, ISA_MAGIC_TO_M
    bne     t0, t1, .Ls_skip
    /* forward to M-mode: restore everything and ecall from S */
    RESTORE_REGS
    ecall
1:  j       1b                      /* not reached */
.Ls_fetch:
    lw      t0, R(1)(sp)
    csrw    sepc, t0
    j       .Ls_out

.Ls_irq:
    andi    t0, s0, 31
    li      t1, 5
    beq     t0, t1, .Ls_timer
    li      t1, 1
    beq     t0, t1, .Ls_soft
    li      t1, 1
    sll     t1, t1, t0
    csrc    sie, t1
    j       .Ls_out
.Ls_timer:
    li      t0, MIP_STIP
    csrc    sie, t0
    j       .Ls_out
.Ls_soft:
    li      t0, MIP_SSIP
    csrc    sip, t0
.Ls_out:
    RESTORE_REGS
    sret
    .size isa_strap, . - isa_strap

/* ---------------------------------------------------------------------- */

/*
 * Failure path of the CHECK macros: a0 = check number, a1 = source line,
 * got at 0(sp), expected at 4(sp). Return to M-mode first (the check may
 * have run in S or U mode), then report.
 */
    .globl isa_fail_stack
isa_fail_stack:
    mv      s0, a0
    mv      s1, a1
    lw      s2, 0(sp)
    lw      s3, 4(sp)
    TO_M    1f
1:  csrw    satp, zero
    sfence.vma
    li      t0, MSTATUS_MPRV
    csrc    mstatus, t0
    mv      a0, s0
    mv      a1, s1
    mv      a2, s2
    mv      a3, s3
    call    isa_fail
2:  j       2b
