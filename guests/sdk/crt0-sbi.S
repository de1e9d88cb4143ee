/*
 * crt0-sbi.S - entry points of an S-mode kernel started by SBI firmware.
 *
 * _start: the boot hart, in S-mode, a0 = hart id, a1 = device tree.
 * _secondary_start: a hart started with HSM hart_start(hartid,
 * _secondary_start, opaque), in S-mode, a0 = hart id, a1 = opaque.
 *
 * Both give the hart its own stack (HF_STACK_SIZE per hart id, from
 * __stack_top down), tp = hart id and stvec = hf_sbi_trap_entry, with
 * sie = 0 and sstatus.SIE = 0. Only the boot hart clears .bss. No M-mode
 * CSR is touched anywhere.
 */
#include "hf_sbi.h"

/* sp = __stack_top - a0 * HF_STACK_SIZE; tp = a0; stvec; interrupts off */
.macro hart_setup
    csrw    sie, zero
    csrci   sstatus, SSTATUS_SIE
    la      sp, __stack_top
    li      t1, HF_STACK_SIZE
    mul     t1, t1, a0
    sub     sp, sp, t1
    mv      tp, a0
    la      t0, hf_sbi_trap_entry
    csrw    stvec, t0
.endm

    .section .text.init, "ax", @progbits
    .globl _start
    .type _start, @function
_start:
    li      t0, HF_MAX_HARTS
    bgeu    a0, t0, .Lboot_unusable
    hart_setup

    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sw      zero, 0(t0)
    addi    t0, t0, 4
    j       1b
2:
    mv      s0, a0
    mv      s1, a1
    call    hf_sbi_init             /* (hartid, fdt) */
    mv      a0, s0
    mv      a1, s1
    call    main
    call    hf_sbi_exit             /* does not return */

.Lboot_unusable:
    /* no stack for this hart id: shut down with "system failure" */
    li      a7, SBI_EXT_SRST
    li      a6, 0
    li      a0, SBI_RESET_SHUTDOWN
    li      a1, SBI_REASON_FAILURE
    ecall
    j       .Lhalt
    .size _start, . - _start

    .globl _secondary_start
    .type _secondary_start, @function
    .balign 4
_secondary_start:
    li      t0, HF_MAX_HARTS
    bgeu    a0, t0, .Lstop
    hart_setup
    call    hf_sbi_secondary        /* (hartid, opaque); stops the hart */
.Lstop:
    li      a7, SBI_EXT_HSM
    li      a6, 1                   /* hart_stop */
    ecall
.Lhalt:
    wfi
    j       .Lhalt
    .size _secondary_start, . - _secondary_start

/*
 * hf_sbi_trap_entry: stvec. Saves the registers a C function may clobber
 * on the current stack, calls hf_sbi_trap(scause, sepc, stval), restores
 * them and returns to sepc.
 */
    .text
    .balign 4
    .globl hf_sbi_trap_entry
    .type hf_sbi_trap_entry, @function
hf_sbi_trap_entry:
    addi    sp, sp, -64
    sw      ra, 0(sp)
    sw      t0, 4(sp)
    sw      t1, 8(sp)
    sw      t2, 12(sp)
    sw      t3, 16(sp)
    sw      t4, 20(sp)
    sw      t5, 24(sp)
    sw      t6, 28(sp)
    sw      a0, 32(sp)
    sw      a1, 36(sp)
    sw      a2, 40(sp)
    sw      a3, 44(sp)
    sw      a4, 48(sp)
    sw      a5, 52(sp)
    sw      a6, 56(sp)
    sw      a7, 60(sp)
    csrr    a0, scause
    csrr    a1, sepc
    csrr    a2, stval
    call    hf_sbi_trap
    lw      ra, 0(sp)
    lw      t0, 4(sp)
    lw      t1, 8(sp)
    lw      t2, 12(sp)
    lw      t3, 16(sp)
    lw      t4, 20(sp)
    lw      t5, 24(sp)
    lw      t6, 28(sp)
    lw      a0, 32(sp)
    lw      a1, 36(sp)
    lw      a2, 40(sp)
    lw      a3, 44(sp)
    lw      a4, 48(sp)
    lw      a5, 52(sp)
    lw      a6, 56(sp)
    lw      a7, 60(sp)
    addi    sp, sp, 64
    sret
    .size hf_sbi_trap_entry, . - hf_sbi_trap_entry
