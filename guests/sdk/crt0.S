/*
 * crt0.S - guest entry point.
 *
 * Entered in M-mode at the ELF entry with a0 = hart id and a1 = physical
 * address of the flattened device tree (0 or garbage is tolerated).
 * Hart 0 clears .bss, sets up its stack and the default trap vector,
 * initialises the SDK and calls main(hartid, fdt). If main returns, its
 * value is the result: 0 powers off with success, anything else with
 * failure. Every other hart gets its own stack and parks in a WFI loop.
 */
#include "hf.h"

    .section .text.init, "ax", @progbits
    .globl _start
    .type _start, @function
_start:
    csrw    mie, zero               /* no interrupt sources */
    csrci   mstatus, MSTATUS_MIE    /* and globally disabled */

    /* sp = __stack_top - hartid * HF_STACK_SIZE (hartid < HF_MAX_HARTS) */
    li      t0, HF_MAX_HARTS
    bgeu    a0, t0, .Lpark_nostack
    la      sp, __stack_top
    li      t1, HF_STACK_SIZE
    mul     t1, t1, a0
    sub     sp, sp, t1

    bnez    a0, .Lpark

    la      t0, hf_trap_default
    csrw    mtvec, t0

    /* clear .bss (word aligned by the linker script) */
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sw      zero, 0(t0)
    addi    t0, t0, 4
    j       1b
2:
    mv      s0, a0                  /* hart id */
    mv      s1, a1                  /* fdt */
    call    hf_sdk_init             /* (hartid, fdt) */
    mv      a0, s0
    mv      a1, s1
    call    main
    call    hf_exit                 /* does not return */
    j       .Lpark

.Lpark_nostack:
    li      sp, 0
.Lpark:
    csrw    mie, zero
3:  wfi
    j       3b
    .size _start, . - _start
