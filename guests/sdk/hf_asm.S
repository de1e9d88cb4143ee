/*
 * hf_asm.S - machine-mode helpers that need precise control of traps.
 */
#include "hf.h"

    .text

/*
 * hf_skip_trap: temporary trap vector used by the probing helpers below.
 * It steps over the trapping (4-byte) instruction and sets t1 = 1 so the
 * caller can tell that the access failed. Only t1 is modified.
 */
    .balign 64
    .globl hf_skip_trap
hf_skip_trap:
    csrr    t1, mepc
    addi    t1, t1, 4
    csrw    mepc, t1
    li      t1, 1
    mret

/* int hf_try_read32(uintptr_t addr, uint32_t *out) */
    .globl hf_try_read32
    .type hf_try_read32, @function
hf_try_read32:
    la      t0, hf_skip_trap
    csrrw   t2, mtvec, t0
    li      t1, 0
    lw      t3, 0(a0)
    csrw    mtvec, t2
    bnez    t1, 1f
    sw      t3, 0(a1)
    li      a0, 0
    ret
1:  li      a0, -1
    ret
    .size hf_try_read32, . - hf_try_read32

/*
 * void hf_pmp_allow_all(void)
 * PMP entry 0 = NAPOT over the whole 34-bit physical space with R/W/X, so
 * that S and U modes may access memory (with PMP present and no entry
 * matching, the privileged spec denies S/U accesses). Machines without
 * PMP either ignore the writes or trap; a trap is stepped over.
 */
    .globl hf_pmp_allow_all
    .type hf_pmp_allow_all, @function
hf_pmp_allow_all:
    la      t0, hf_skip_trap
    csrrw   t2, mtvec, t0
    li      t0, -1
    csrw    pmpaddr0, t0
    li      t0, 0x1f                /* A=NAPOT, X, W, R, not locked */
    csrw    pmpcfg0, t0
    sfence.vma                      /* PMP changes: flush cached translations */
    csrw    mtvec, t2
    ret
    .size hf_pmp_allow_all, . - hf_pmp_allow_all

/*
 * hf_trap_default: installed by crt0 on every hart. An unexpected trap is
 * a bug in the guest (or the machine): report it and power off with
 * failure. It runs on the top of the trapping hart's own stack.
 */
    .balign 64
    .globl hf_trap_default
    .type hf_trap_default, @function
hf_trap_default:
    csrr    t0, mhartid
    li      t1, HF_MAX_HARTS
    bltu    t0, t1, 2f
    li      t0, 0
2:  la      sp, __stack_top
    li      t1, HF_STACK_SIZE
    mul     t1, t1, t0
    sub     sp, sp, t1
    csrr    a0, mcause
    csrr    a1, mepc
    csrr    a2, mtval
    call    hf_trap_report
1:  j       1b
    .size hf_trap_default, . - hf_trap_default
