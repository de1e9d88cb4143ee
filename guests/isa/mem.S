/*
 * isa-mem: loads and stores.
 *
 * lb/lbu/lh/lhu/lw at every (naturally aligned) offset with sign and zero
 * extension, negative and positive offsets, sb/sh/sw replacing exactly
 * their bytes (little-endian), store-then-load at the same and
 * overlapping addresses, x0 as store data and as load destination, and
 * a load whose destination is its base register.
 */
#include "isa.h"

    .data
    .balign 16
src:
    .word 0x80ff7f01                /* bytes 01 7f ff 80 */
    .word 0x7fff8000                /* bytes 00 80 ff 7f */
    .word 0xdeadbeef
    .word 0x00000000
dst:
    .space 32

/* load op a0, off(base) and compare with exp */
#define TEST_LD(op, exp, sym, off) la a1, sym; op a0, off(a1); CHECKI(a0, exp)

/* fill the 8 bytes at dst with a pattern: clobbers t0, t1 */
#define FILL_DST li t0, 0x11223344; la t1, dst; sw t0, 0(t1); sw t0, 4(t1)

ISA_BEGIN "isa-mem"

    /* ---- lb / lbu ---- */
    TEST_LD(lb, 0x00000001, src, 0)
    TEST_LD(lb, 0x0000007f, src, 1)
    TEST_LD(lb, 0xffffffff, src, 2)
    TEST_LD(lb, 0xffffff80, src, 3)
    TEST_LD(lb, 0x00000000, src, 4)
    TEST_LD(lbu, 0x00000001, src, 0)
    TEST_LD(lbu, 0x0000007f, src, 1)
    TEST_LD(lbu, 0x000000ff, src, 2)
    TEST_LD(lbu, 0x00000080, src, 3)
    TEST_LD(lbu, 0x00000080, src, 5)
    OK "lb/lbu"

    /* ---- lh / lhu ---- */
    TEST_LD(lh, 0x00007f01, src, 0)
    TEST_LD(lh, 0xffff80ff, src, 2)
    TEST_LD(lh, 0xffff8000, src, 4)
    TEST_LD(lh, 0x00007fff, src, 6)
    TEST_LD(lhu, 0x00007f01, src, 0)
    TEST_LD(lhu, 0x000080ff, src, 2)
    TEST_LD(lhu, 0x00008000, src, 4)
    TEST_LD(lhu, 0x00007fff, src, 6)
    OK "lh/lhu"

    /* ---- lw ---- */
    TEST_LD(lw, 0x80ff7f01, src, 0)
    TEST_LD(lw, 0x7fff8000, src, 4)
    TEST_LD(lw, 0xdeadbeef, src, 8)
    TEST_LD(lw, 0x00000000, src, 12)
    OK "lw"

    /* ---- negative and large offsets ---- */
    TEST_LD(lw, 0x80ff7f01, src + 8, -8)
    TEST_LD(lw, 0xdeadbeef, src + 12, -4)
    TEST_LD(lb, 0xffffff80, src + 4, -1)
    TEST_LD(lhu, 0x000080ff, src + 4, -2)
    TEST_LD(lh, 0xffff80ff, src + 4, -2)
    TEST_LD(lw, 0x80ff7f01, src + 2048, -2048)
    TEST_LD(lw, 0xdeadbeef, src - 2039, 2047)
    TEST_LD(lbu, 0x000000ef, src - 2039, 2047)
    OK "offsets"

    /* ---- sb: exactly one byte ---- */
    FILL_DST
    la      a1, dst
    li      a2, 0xaabbccdd
    sb      a2, 0(a1)
    lw      a0, 0(a1)
    CHECKI(a0, 0x112233dd)
    sb      a2, 1(a1)
    lw      a0, 0(a1)
    CHECKI(a0, 0x1122dddd)
    sb      a2, 3(a1)
    lw      a0, 0(a1)
    CHECKI(a0, 0xdd22dddd)
    lw      a0, 4(a1)
    CHECKI(a0, 0x11223344)          /* neighbour untouched */
    li      a2, 0x80
    sb      a2, 2(a1)
    lb      a0, 2(a1)
    CHECKI(a0, 0xffffff80)
    lbu     a0, 2(a1)
    CHECKI(a0, 0x00000080)
    OK "sb"

    /* ---- sh: exactly two bytes ---- */
    FILL_DST
    la      a1, dst
    li      a2, 0xaabbccdd
    sh      a2, 0(a1)
    lw      a0, 0(a1)
    CHECKI(a0, 0x1122ccdd)
    sh      a2, 2(a1)
    lw      a0, 0(a1)
    CHECKI(a0, 0xccddccdd)
    lw      a0, 4(a1)
    CHECKI(a0, 0x11223344)
    lh      a0, 2(a1)
    CHECKI(a0, 0xffffccdd)
    lhu     a0, 2(a1)
    CHECKI(a0, 0x0000ccdd)
    lbu     a0, 3(a1)
    CHECKI(a0, 0x000000cc)
    OK "sh"

    /* ---- sw ---- */
    FILL_DST
    la      a1, dst
    li      a2, 0xcafef00d
    sw      a2, 4(a1)
    lw      a0, 4(a1)
    CHECKI(a0, 0xcafef00d)
    lw      a0, 0(a1)
    CHECKI(a0, 0x11223344)
    lbu     a0, 4(a1)
    CHECKI(a0, 0x0d)
    lbu     a0, 7(a1)
    CHECKI(a0, 0xca)
    lh      a0, 6(a1)
    CHECKI(a0, 0xffffcafe)
    OK "sw"

    /* ---- store with negative offsets, then load back ---- */
    FILL_DST
    la      a1, dst + 16
    li      a2, 0x5a5a5a5a
    sw      a2, -16(a1)
    li      a2, 0x77
    sb      a2, -9(a1)
    li      a2, 0x1234
    sh      a2, -12(a1)
    la      a1, dst
    lw      a0, 0(a1)
    CHECKI(a0, 0x5a5a5a5a)
    lw      a0, 4(a1)
    CHECKI(a0, 0x77221234)
    OK "negative store offsets"

    /* ---- x0 as store data and load destination; rd == rs1 ---- */
    FILL_DST
    la      a1, dst
    sw      x0, 0(a1)
    lw      a0, 0(a1)
    CHECKI(a0, 0)
    sb      x0, 5(a1)
    lw      a0, 4(a1)
    CHECKI(a0, 0x11220044)
    la      a1, src
    lw      x0, 0(a1)
    CHECKI(x0, 0)
    lbu     x0, 2(a1)
    CHECKI(x0, 0)
    la      a1, src + 4
    lw      a1, -4(a1)              /* destination is the base */
    CHECKI(a1, 0x80ff7f01)
    /* store data register equal to the base register */
    la      a1, dst
    sw      a1, 8(a1)
    lw      a0, 8(a1)
    CHECK(a0, a1)
    OK "x0 and register overlap"

    /* ---- back-to-back store/load forwarding with mixed widths ---- */
    la      a1, dst + 16
    li      a2, 0x01020304
    sw      a2, 0(a1)
    lbu     a0, 0(a1)
    CHECKI(a0, 0x04)
    sb      a0, 3(a1)
    lw      a0, 0(a1)
    CHECKI(a0, 0x04020304)
    sh      a0, 2(a1)
    lw      a0, 0(a1)
    CHECKI(a0, 0x03040304)
    lhu     a3, 0(a1)
    CHECKI(a3, 0x0304)
    OK "store-load sequences"

ISA_END
