/*
 * isa-muldiv: the M extension.
 *
 * mul/mulh/mulhsu/mulhu over sign combinations and extremes; div/divu/
 * rem/remu with all sign combinations (truncating toward zero, remainder
 * takes the dividend's sign), division by zero (quotient -1 / all ones,
 * remainder = dividend) and the overflow case INT_MIN / -1 (quotient
 * INT_MIN, remainder 0); destination equal to a source.
 */
#include "isa.h"

ISA_BEGIN "isa-muldiv"

    /* ---- mul (low 32 bits) ---- */
    TEST_RR(mul, 0x00000000, 0, 0)
    TEST_RR(mul, 0x00000006, 2, 3)
    TEST_RR(mul, 0xfffffffa, -2, 3)
    TEST_RR(mul, 0x00000006, -2, -3)
    TEST_RR(mul, 0x00000001, 0x7fffffff, 0x7fffffff)
    TEST_RR(mul, 0x00000000, 0x80000000, 0x80000000)
    TEST_RR(mul, 0x80000000, 0x80000000, -1)
    TEST_RR(mul, 0x00000001, -1, -1)
    TEST_RR(mul, 0x366176f8, 0x12345678, 0x9abcdef1)
    TEST_RR(mul, 0x0001ffff, 0x0000ffff, 0xffff0001)
    OK "mul"

    /* ---- mulh (signed x signed, high) ---- */
    TEST_RR(mulh, 0x00000000, 2, 3)
    TEST_RR(mulh, 0xffffffff, -2, 3)
    TEST_RR(mulh, 0x00000000, -2, -3)
    TEST_RR(mulh, 0x3fffffff, 0x7fffffff, 0x7fffffff)
    TEST_RR(mulh, 0x40000000, 0x80000000, 0x80000000)
    TEST_RR(mulh, 0x00000000, 0x80000000, -1)
    TEST_RR(mulh, 0xc0000000, 0x80000000, 0x7fffffff)
    TEST_RR(mulh, 0x00000000, -1, -1)
    TEST_RR(mulh, 0xf8cc93d6, 0x12345678, 0x9abcdef1)
    OK "mulh"

    /* ---- mulhsu (signed rs1 x unsigned rs2, high) ---- */
    TEST_RR(mulhsu, 0x00000000, 2, 3)
    TEST_RR(mulhsu, 0xffffffff, -2, 3)
    TEST_RR(mulhsu, 0xffffffff, -1, 0xffffffff)
    TEST_RR(mulhsu, 0x00000000, 1, 0xffffffff)
    TEST_RR(mulhsu, 0x80000000, 0x80000000, 0xffffffff)
    TEST_RR(mulhsu, 0x7ffffffe, 0x7fffffff, 0xffffffff)
    TEST_RR(mulhsu, 0xc0000000, 0x80000000, 0x80000000)
    TEST_RR(mulhsu, 0x0b00ea4e, 0x12345678, 0x9abcdef1)
    TEST_RR(mulhsu, 0xf8cc93d6, 0x9abcdef1, 0x12345678)
    OK "mulhsu"

    /* ---- mulhu (unsigned x unsigned, high) ---- */
    TEST_RR(mulhu, 0x00000000, 2, 3)
    TEST_RR(mulhu, 0x00000002, -2, 3)
    TEST_RR(mulhu, 0xfffffffe, 0xffffffff, 0xffffffff)
    TEST_RR(mulhu, 0x40000000, 0x80000000, 0x80000000)
    TEST_RR(mulhu, 0x7fffffff, 0x80000000, 0xffffffff)
    TEST_RR(mulhu, 0x0b00ea4e, 0x12345678, 0x9abcdef1)
    OK "mulhu"

    /* ---- div ---- */
    TEST_RR(div, 3, 7, 2)
    TEST_RR(div, -3, -7, 2)
    TEST_RR(div, -3, 7, -2)
    TEST_RR(div, 3, -7, -2)
    TEST_RR(div, 0, 1, 2)
    TEST_RR(div, 0, -1, 2)
    TEST_RR(div, 0x80000000, 0x80000000, 1)
    TEST_RR(div, 0xc0000000, 0x80000000, 2)
    TEST_RR(div, 0x80000001, 0x7fffffff, -1)
    TEST_RR(div, 0x80000000, 0x80000000, -1)      /* overflow */
    TEST_RR(div, 0xffffffff, 0, 0)                /* by zero */
    TEST_RR(div, 0xffffffff, 7, 0)
    TEST_RR(div, 0xffffffff, -7, 0)
    TEST_RR(div, 0xffffffff, 0x80000000, 0)
    OK "div"

    /* ---- divu ---- */
    TEST_RR(divu, 3, 7, 2)
    TEST_RR(divu, 0x7ffffffc, -7, 2)
    TEST_RR(divu, 0, 7, -2)
    TEST_RR(divu, 1, -2, -2)
    TEST_RR(divu, 0, -7, -2)
    TEST_RR(divu, 0x80000000, 0x80000000, 1)
    TEST_RR(divu, 0, 0x80000000, -1)
    TEST_RR(divu, 0x0000ffff, 0xffffffff, 0x10001)
    TEST_RR(divu, 0xffffffff, 0, 0)               /* by zero */
    TEST_RR(divu, 0xffffffff, 7, 0)
    TEST_RR(divu, 0xffffffff, 0xffffffff, 0)
    OK "divu"

    /* ---- rem (sign of the dividend) ---- */
    TEST_RR(rem, 1, 7, 2)
    TEST_RR(rem, -1, -7, 2)
    TEST_RR(rem, 1, 7, -2)
    TEST_RR(rem, -1, -7, -2)
    TEST_RR(rem, 0, 6, -3)
    TEST_RR(rem, 0, 0x80000000, 2)
    TEST_RR(rem, 0xffffffff, 0x80000001, 2)
    TEST_RR(rem, 0, 0x80000000, -1)               /* overflow: remainder 0 */
    TEST_RR(rem, 0, 0, 0)                         /* by zero: dividend */
    TEST_RR(rem, 7, 7, 0)
    TEST_RR(rem, -7, -7, 0)
    TEST_RR(rem, 0x80000000, 0x80000000, 0)
    OK "rem"

    /* ---- remu ---- */
    TEST_RR(remu, 1, 7, 2)
    TEST_RR(remu, 1, -7, 2)
    TEST_RR(remu, 7, 7, -2)
    TEST_RR(remu, 0xfffffff9, -7, -2)
    TEST_RR(remu, 0, 0x80000000, 2)
    TEST_RR(remu, 0x80000000, 0x80000000, -1)
    TEST_RR(remu, 0, 0xffffffff, 0x10001)
    TEST_RR(remu, 0, 0, 0)                        /* by zero: dividend */
    TEST_RR(remu, 7, 7, 0)
    TEST_RR(remu, 0xffffffff, 0xffffffff, 0)
    OK "remu"

    /* ---- destination equal to a source ---- */
    li      a1, 1000
    li      a2, 7
    mul     a1, a1, a2
    CHECKI(a1, 7000)
    div     a2, a1, a2
    CHECKI(a2, 1000)
    li      a1, 0x10000
    mulhu   a1, a1, a1
    CHECKI(a1, 1)
    li      a1, -9
    rem     a1, a1, a1
    CHECKI(a1, 0)
    li      a1, 0
    divu    a1, a1, a1
    CHECKI(a1, 0xffffffff)
    li      a1, 5
    mul     x0, a1, a1
    CHECKI(x0, 0)
    OK "register overlap"

ISA_END
