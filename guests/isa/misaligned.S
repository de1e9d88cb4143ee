/*
 * isa-misaligned: accessors for the C driver (misaligned_main.c).
 *
 * Each helper performs exactly one access so that a trap taken by the
 * runtime's handler (which steps over the instruction) is attributed to
 * it. A helper whose access traps returns whatever was in a0 before.
 */
#include "isa.h"

    .text
    .balign 4

    .globl mis_lw, mis_lh, mis_lhu, mis_sw, mis_sh
    .globl mis_lr, mis_sc, mis_lr_sc, mis_amoadd, mis_amoswap

mis_lw:         /* uint32_t mis_lw(addr) */
    lw      a0, 0(a0)
    ret
mis_lh:
    lh      a0, 0(a0)
    ret
mis_lhu:
    lhu     a0, 0(a0)
    ret
mis_sw:         /* void mis_sw(addr, value) */
    sw      a1, 0(a0)
    ret
mis_sh:
    sh      a1, 0(a0)
    ret
mis_lr:         /* uint32_t mis_lr(addr) */
    lr.w    a0, (a0)
    ret
mis_sc:         /* uint32_t mis_sc(addr, value): rd, 0xdead if it trapped */
    li      t0, 0xdead
    sc.w    t0, a1, (a0)
    mv      a0, t0
    ret
mis_lr_sc:      /* uint32_t mis_lr_sc(aligned, addr, value): lr on aligned, sc on addr */
    lr.w    t1, (a0)
    li      t0, 0xdead
    sc.w    t0, a2, (a1)
    mv      a0, t0
    ret
mis_amoadd:     /* uint32_t mis_amoadd(addr, value): old value */
    amoadd.w a0, a1, (a0)
    ret
mis_amoswap:
    amoswap.w a0, a1, (a0)
    ret
