/*
 * isa-alu: RV32I integer computational instructions.
 *
 * lui/auipc, register-register and register-immediate arithmetic, logic,
 * shifts (register shift amounts use only their low 5 bits), set-less-than
 * with signed/unsigned edge values, x0 as destination (stays zero) and as
 * source (reads zero), and source registers equal to the destination.
 */
#include "isa.h"

ISA_BEGIN "isa-alu"

    /* ---- lui / auipc ---- */
    lui     a0, 0x12345
    CHECKI(a0, 0x12345000)
    lui     a0, 0xfffff
    CHECKI(a0, 0xfffff000)
    lui     a0, 0x80000
    CHECKI(a0, 0x80000000)
    lui     a0, 0
    CHECKI(a0, 0)
.Lauipc0:
    auipc   a0, 0
    la      a1, .Lauipc0
    CHECK(a0, a1)
.Lauipc1:
    auipc   a0, 0x12345
    la      a1, .Lauipc1
    li      a2, 0x12345000
    add     a1, a1, a2
    CHECK(a0, a1)
.Lauipc2:
    auipc   a0, 0xfffff             /* pc - 4096 */
    la      a1, .Lauipc2
    addi    a1, a1, -2048
    addi    a1, a1, -2048
    CHECK(a0, a1)
    OK "lui/auipc"

    /* ---- add / sub ---- */
    TEST_RR(add, 3, 1, 2)
    TEST_RR(add, 0, 0, 0)
    TEST_RR(add, 0, -1, 1)
    TEST_RR(add, 0xfffffffe, -1, -1)
    TEST_RR(add, 0x80000000, 0x7fffffff, 1)          /* signed overflow wraps */
    TEST_RR(add, 0x00000000, 0x80000000, 0x80000000) /* carry out discarded */
    TEST_RR(add, 0x7fffffff, 0x80000000, -1)
    TEST_RR(sub, 1, 3, 2)
    TEST_RR(sub, 0xffffffff, 0, 1)
    TEST_RR(sub, 0x7fffffff, 0x80000000, 1)
    TEST_RR(sub, 0x80000000, 0x7fffffff, -1)
    TEST_RR(sub, 0, 0x80000000, 0x80000000)
    TEST_RR(sub, 0x80000000, 0, 0x80000000)
    OK "add/sub"

    /* ---- addi ---- */
    TEST_RI(addi, 0x00000800, 1, 2047)
    TEST_RI(addi, 0xfffff801, 1, -2048)
    TEST_RI(addi, 0x00000000, 1, -1)
    TEST_RI(addi, 0x80000000, 0x7fffffff, 1)
    TEST_RI(addi, 0x7fffffff, 0x80000000, -1)
    TEST_RI(addi, 0x000007ff, 0, 2047)
    TEST_RI(addi, 0xfffff800, 0, -2048)
    OK "addi"

    /* ---- logic ---- */
    TEST_RR(and, 0x0f000f00, 0xff00ff00, 0x0f0f0f0f)
    TEST_RR(or,  0xff0fff0f, 0xff00ff00, 0x0f0f0f0f)
    TEST_RR(xor, 0xf00ff00f, 0xff00ff00, 0x0f0f0f0f)
    TEST_RR(and, 0x00000000, 0xaaaaaaaa, 0x55555555)
    TEST_RR(or,  0xffffffff, 0xaaaaaaaa, 0x55555555)
    TEST_RR(xor, 0x00000000, 0x12345678, 0x12345678)
    TEST_RI(andi, 0x00000700, 0xff00ff00, 0x70f)     /* positive imm */
    TEST_RI(andi, 0xff00ff00, 0xff00ff00, -1)        /* sign-extended imm */
    TEST_RI(andi, 0xff00f800, 0xff00ff00, -2048)
    TEST_RI(ori,  0xff00ff0f, 0xff00ff00, 0x00f)
    TEST_RI(ori,  0xfffff80f, 0x0000000f, -2048)
    TEST_RI(xori, 0xff00f80f, 0xff00ff00, 0x70f)
    TEST_RI(xori, 0x00ff00ff, 0xff00ff00, -1)        /* not */
    TEST_RI(xori, 0xfffff8f0, 0x0000000f, -1793)          /* imm 0xfffff8ff */
    OK "logic"

    /* ---- shifts by register: low 5 bits of rs2 only ---- */
    TEST_RR(sll, 0x00000001, 1, 0)
    TEST_RR(sll, 0x00000002, 1, 1)
    TEST_RR(sll, 0x80000000, 1, 31)
    TEST_RR(sll, 0x00000001, 1, 32)                  /* 32 -> 0 */
    TEST_RR(sll, 0x00000002, 1, 33)                  /* 33 -> 1 */
    TEST_RR(sll, 0x80000000, 1, 0xffffffff)          /* -1 -> 31 */
    TEST_RR(sll, 0x48d159e0, 0x12345678, 0xffffffe2) /* -> 2 */
    TEST_RR(srl, 0x7fffffff, 0xffffffff, 1)
    TEST_RR(srl, 0x00000001, 0x80000000, 31)
    TEST_RR(srl, 0x80000000, 0x80000000, 32)         /* 32 -> 0 */
    TEST_RR(srl, 0x40000000, 0x80000000, 0x21)       /* 33 -> 1 */
    TEST_RR(srl, 0x00000001, 0x80000000, 0xffffffff)
    TEST_RR(sra, 0xc0000000, 0x80000000, 1)
    TEST_RR(sra, 0xffffffff, 0x80000000, 31)
    TEST_RR(sra, 0x80000000, 0x80000000, 64)         /* 64 -> 0 */
    TEST_RR(sra, 0xffffffff, 0x80000000, 63)         /* 63 -> 31 */
    TEST_RR(sra, 0x3fffffff, 0x7fffffff, 1)
    TEST_RR(sra, 0x00000000, 0x7fffffff, 31)
    TEST_RR(sra, 0xfedcba98, 0xfedcba98, 0xffffffe0) /* -> 0 */
    OK "shift by register"

    /* ---- shifts by immediate ---- */
    TEST_RI(slli, 0x12345678, 0x12345678, 0)
    TEST_RI(slli, 0x91a2b3c0, 0x12345678, 3)
    TEST_RI(slli, 0x00000000, 0x12345678, 31)
    TEST_RI(slli, 0x80000000, 0x12345679, 31)
    TEST_RI(srli, 0x01234567, 0x12345678, 4)
    TEST_RI(srli, 0x00000001, 0xffffffff, 31)
    TEST_RI(srli, 0xffffffff, 0xffffffff, 0)
    TEST_RI(srai, 0xf8000000, 0x80000000, 4)
    TEST_RI(srai, 0xffffffff, 0x80000001, 31)
    TEST_RI(srai, 0x07ffffff, 0x7fffffff, 4)
    TEST_RI(srai, 0x00000000, 0x7fffffff, 31)
    OK "shift by immediate"

    /* ---- slt / sltu / slti / sltiu ---- */
    TEST_RR(slt, 0, 0, 0)
    TEST_RR(slt, 1, 0, 1)
    TEST_RR(slt, 0, 1, 0)
    TEST_RR(slt, 1, -1, 0)                           /* signed: -1 < 0 */
    TEST_RR(slt, 0, 0, -1)
    TEST_RR(slt, 1, 0x80000000, 0x7fffffff)          /* INT_MIN < INT_MAX */
    TEST_RR(slt, 0, 0x7fffffff, 0x80000000)
    TEST_RR(slt, 1, 0x80000000, 0x80000001)
    TEST_RR(slt, 0, 0x80000000, 0x80000000)
    TEST_RR(sltu, 0, 0, 0)
    TEST_RR(sltu, 1, 0, 1)
    TEST_RR(sltu, 0, -1, 0)                          /* unsigned: max > 0 */
    TEST_RR(sltu, 1, 0, -1)
    TEST_RR(sltu, 0, 0x80000000, 0x7fffffff)
    TEST_RR(sltu, 1, 0x7fffffff, 0x80000000)
    TEST_RR(sltu, 1, 0xfffffffe, 0xffffffff)
    TEST_RR(sltu, 0, 0xffffffff, 0xffffffff)
    TEST_RI(slti, 1, -1, 0)
    TEST_RI(slti, 0, 0, -1)
    TEST_RI(slti, 1, 0x80000000, -2048)
    TEST_RI(slti, 0, 0x7fffffff, 2047)
    TEST_RI(slti, 1, 2046, 2047)
    TEST_RI(slti, 0, -2048, -2048)
    TEST_RI(sltiu, 1, 0, 1)
    TEST_RI(sltiu, 1, 0x7fffffff, -1)                /* imm -1 is 0xffffffff */
    TEST_RI(sltiu, 0, 0xffffffff, -1)
    TEST_RI(sltiu, 1, 0xfffff7ff, -2048)             /* imm is 0xfffff800 */
    TEST_RI(sltiu, 0, 0xfffff800, -2048)
    TEST_RI(sltiu, 0, 0x80000000, 2047)
    TEST_RI(sltiu, 1, 0, -2048)
    TEST_RI(sltiu, 0, 1, 1)
    OK "slt"

    /* ---- x0 as destination: writes are discarded ---- */
    li      a1, 0x12345678
    li      a2, 0x11111111
    add     x0, a1, a2
    CHECKI(x0, 0)
    addi    x0, a1, 5
    CHECKI(x0, 0)
    lui     x0, 0x12345
    CHECKI(x0, 0)
    auipc   x0, 0x1
    CHECKI(x0, 0)
    xori    x0, x0, -1
    CHECKI(x0, 0)
    sll     x0, a1, a2
    CHECKI(x0, 0)
    slti    x0, x0, 1
    CHECKI(x0, 0)
    mv      a0, x0
    CHECKI(a0, 0)
    OK "x0 destination"

    /* ---- x0 as source: reads zero ---- */
    li      a1, 0x12345678
    add     a0, x0, a1
    CHECKI(a0, 0x12345678)
    sub     a0, x0, a1
    CHECKI(a0, 0xedcba988)
    sub     a0, a1, x0
    CHECKI(a0, 0x12345678)
    or      a0, x0, x0
    CHECKI(a0, 0)
    sltu    a0, x0, a1                              /* snez */
    CHECKI(a0, 1)
    sltu    a0, x0, x0
    CHECKI(a0, 0)
    slt     a0, a1, x0                              /* sltz */
    CHECKI(a0, 0)
    sltiu   a0, x0, 1                               /* seqz of zero */
    CHECKI(a0, 1)
    addi    a0, x0, -1
    CHECKI(a0, 0xffffffff)
    sll     a0, a1, x0
    CHECKI(a0, 0x12345678)
    sra     a0, x0, a1
    CHECKI(a0, 0)
    OK "x0 source"

    /* ---- source registers that are also the destination ---- */
    li      a1, 13
    li      a2, 11
    add     a1, a1, a2
    CHECKI(a1, 24)
    li      a1, 13
    li      a2, 11
    sub     a2, a1, a2
    CHECKI(a2, 2)
    li      a1, 13
    add     a1, a1, a1
    CHECKI(a1, 26)
    li      a1, 0x0f0f
    xor     a1, a1, a1
    CHECKI(a1, 0)
    li      a1, 3
    sll     a1, a1, a1
    CHECKI(a1, 24)
    li      a1, -5
    slt     a1, a1, a1
    CHECKI(a1, 0)
    li      a1, 0x7ff
    addi    a1, a1, 1
    CHECKI(a1, 0x800)
    li      a1, 0x10
    srai    a1, a1, 4
    CHECKI(a1, 1)
    /* every register x1..x31 (bar sp, s9, s11) holds its value */
    li      x1, 1
    li      x3, 3
    li      x4, 4
    li      x5, 5
    li      x6, 6
    li      x7, 7
    li      x8, 8
    li      x9, 9
    li      x10, 10
    li      x11, 11
    li      x12, 12
    li      x13, 13
    li      x14, 14
    li      x15, 15
    li      x16, 16
    li      x17, 17
    li      x18, 18
    li      x19, 19
    li      x20, 20
    li      x21, 21
    li      x22, 22
    li      x23, 23
    li      x24, 24
    li      x26, 26
    li      x28, 28
    li      x29, 29
    li      x30, 30
    li      x31, 31
    add     x31, x31, x1                            /* 32 */
    add     x31, x31, x3                            /* 35 */
    add     x31, x31, x4
    add     x31, x31, x5
    add     x31, x31, x6
    add     x31, x31, x7
    add     x31, x31, x8
    add     x31, x31, x9
    add     x31, x31, x10
    add     x31, x31, x11
    add     x31, x31, x12
    add     x31, x31, x13
    add     x31, x31, x14
    add     x31, x31, x15
    add     x31, x31, x16
    add     x31, x31, x17
    add     x31, x31, x18
    add     x31, x31, x19
    add     x31, x31, x20
    add     x31, x31, x21
    add     x31, x31, x22
    add     x31, x31, x23
    add     x31, x31, x24
    add     x31, x31, x26
    add     x31, x31, x28
    add     x31, x31, x29
    add     x31, x31, x30
    /* 31 + (1..31 except 2, 25, 27, 31) = 31 + 496 - 2 - 25 - 27 - 31 */
    CHECKI(x31, 442)
    OK "register file"

ISA_END
