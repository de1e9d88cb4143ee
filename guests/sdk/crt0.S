/*
 * crt0.S - guest entry point.
 *
 * Entered in M-mode at the ELF entry with a0 = hart id and a1 = physical
 * address of the flattened device tree (0 or garbage is tolerated).
 * Hart 0 clears .bss, sets up its stack and the default trap vector,
 * initialises the SDK and calls main(hartid, fdt). If main returns, its
 * value is the result: 0 powers off with success, anything else with
 * failure.
 *
 * Every other hart gets its own stack and the default trap vector. If the
 * program defines hf_secondary_main(hartid, fdt), the hart waits until
 * hart 0 has cleared .bss and initialised the SDK (just before main) and
 * then calls it; otherwise (the weak default below) it parks at once.
 * A returning hf_secondary_main parks the hart as well. Parked harts sit
 * in a WFI loop with mie = 0 and mstatus.MIE = 0.
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

    la      t0, hf_trap_default
    csrw    mtvec, t0

    bnez    a0, .Lsecondary

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

    /* let the secondary harts in: .bss and the SDK are ready */
    fence   rw, rw
    la      t0, hf_boot_ready
    li      t1, 1
    sw      t1, 0(t0)

    mv      a0, s0
    mv      a1, s1
    call    main
    call    hf_exit                 /* does not return */
    j       .Lpark

.Lsecondary:
    /* no hf_secondary_main in the program: park right away */
    la      t0, hf_secondary_main
    la      t1, hf_secondary_default
    beq     t0, t1, .Lpark
    la      t0, hf_boot_ready
3:  lw      t1, 0(t0)
    beqz    t1, 3b
    fence   r, rw
    call    hf_secondary_main       /* (hartid, fdt): a0, a1 untouched */
    j       .Lpark

.Lpark_nostack:
    li      sp, 0
.Lpark:
    csrw    mie, zero
4:  wfi
    j       4b
    .size _start, . - _start

/*
 * The weak default of hf_secondary_main. crt0 compares the resolved
 * address with this label to tell whether the program supplied its own.
 */
    .text
    .weak hf_secondary_main
    .type hf_secondary_main, @function
hf_secondary_main:
hf_secondary_default:
    ret
    .size hf_secondary_main, . - hf_secondary_main

/* Set by hart 0 once .bss is clear and the SDK initialised. In .data, so
 * it reads 0 from the image before hart 0 gets there. */
    .data
    .balign 4
hf_boot_ready:
    .word   0
