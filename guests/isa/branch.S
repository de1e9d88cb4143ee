/*
 * isa-branch: conditional branches, jal and jalr.
 *
 * Every branch is run with operands that make it taken and not taken,
 * including the signed/unsigned edges (-1 vs 0, INT_MIN vs INT_MAX, equal
 * operands), forward and backward. jal/jalr: link value, x0 as link,
 * jalr offsets (negative too), jalr clearing bit 0 of the target, and
 * jalr whose link register is also rs1 (the target uses the old value).
 */
#include "isa.h"

/* branch must be taken: a0 ends 1, fall-through would leave 2 */
.macro BR_TAKEN_AT op:req, v1:req, v2:req, line:req
    li      a1, \v1
    li      a2, \v2
    li      a0, 0
    \op     a1, a2, .Lt\@
    li      a0, 2
    j       .Le\@
.Lt\@:
    addi    a0, a0, 1
.Le\@:
    li      XS, 1
    CHECK_AT a0, XS, \line
.endm

/* branch must not be taken: a0 ends 2, taking it would leave 1 */
.macro BR_NOT_AT op:req, v1:req, v2:req, line:req
    li      a1, \v1
    li      a2, \v2
    li      a0, 0
    \op     a1, a2, .Lt\@
    li      a0, 2
    j       .Le\@
.Lt\@:
    li      a0, 1
.Le\@:
    li      XS, 2
    CHECK_AT a0, XS, \line
.endm

/* backward taken branch: taken three times, then a separate exit */
.macro BR_BACK_AT op:req, v1:req, v2:req, line:req
    li      a0, 0
    j       .Lf\@
.Lb\@:
    addi    a0, a0, 1
    li      a3, 3
    beq     a0, a3, .Ld\@
.Lf\@:
    li      a1, \v1
    li      a2, \v2
    \op     a1, a2, .Lb\@
    li      a0, 99                  /* not taken: wrong */
.Ld\@:
    li      XS, 3
    CHECK_AT a0, XS, \line
.endm

#define TAKEN(op, v1, v2) BR_TAKEN_AT op, v1, v2, __LINE__
#define NOT_TAKEN(op, v1, v2) BR_NOT_AT op, v1, v2, __LINE__
#define BACKWARD(op, v1, v2) BR_BACK_AT op, v1, v2, __LINE__

ISA_BEGIN "isa-branch"

    TAKEN(beq, 0, 0)
    TAKEN(beq, -1, -1)
    TAKEN(beq, 0x80000000, 0x80000000)
    NOT_TAKEN(beq, 0, 1)
    NOT_TAKEN(beq, 1, 0)
    NOT_TAKEN(beq, 0x80000000, 0)
    NOT_TAKEN(beq, -1, 0x7fffffff)
    BACKWARD(beq, 5, 5)
    OK "beq"

    TAKEN(bne, 0, 1)
    TAKEN(bne, 1, 0)
    TAKEN(bne, 0x80000000, 0)
    TAKEN(bne, -1, 0x7fffffff)
    NOT_TAKEN(bne, 0, 0)
    NOT_TAKEN(bne, -1, -1)
    NOT_TAKEN(bne, 0x80000000, 0x80000000)
    BACKWARD(bne, 1, 2)
    OK "bne"

    TAKEN(blt, 0, 1)
    TAKEN(blt, -1, 0)
    TAKEN(blt, -2, -1)
    TAKEN(blt, 0x80000000, 0x7fffffff)
    TAKEN(blt, 0x80000000, -1)
    NOT_TAKEN(blt, 1, 0)
    NOT_TAKEN(blt, 0, -1)
    NOT_TAKEN(blt, 0x7fffffff, 0x80000000)
    NOT_TAKEN(blt, 5, 5)
    NOT_TAKEN(blt, 0x80000000, 0x80000000)
    BACKWARD(blt, -1, 1)
    OK "blt"

    TAKEN(bge, 1, 0)
    TAKEN(bge, 0, -1)
    TAKEN(bge, 5, 5)
    TAKEN(bge, -1, -1)
    TAKEN(bge, 0x7fffffff, 0x80000000)
    TAKEN(bge, 0x80000000, 0x80000000)
    NOT_TAKEN(bge, 0, 1)
    NOT_TAKEN(bge, -1, 0)
    NOT_TAKEN(bge, 0x80000000, 0x7fffffff)
    NOT_TAKEN(bge, 0x80000000, 0x80000001)
    BACKWARD(bge, 1, -1)
    OK "bge"

    TAKEN(bltu, 0, 1)
    TAKEN(bltu, 0, -1)
    TAKEN(bltu, 0x7fffffff, 0x80000000)
    TAKEN(bltu, 0xfffffffe, 0xffffffff)
    NOT_TAKEN(bltu, 1, 0)
    NOT_TAKEN(bltu, -1, 0)
    NOT_TAKEN(bltu, 0x80000000, 0x7fffffff)
    NOT_TAKEN(bltu, 7, 7)
    NOT_TAKEN(bltu, 0xffffffff, 0xffffffff)
    BACKWARD(bltu, 1, -1)
    OK "bltu"

    TAKEN(bgeu, 1, 0)
    TAKEN(bgeu, -1, 0)
    TAKEN(bgeu, 0x80000000, 0x7fffffff)
    TAKEN(bgeu, 7, 7)
    TAKEN(bgeu, 0, 0)
    TAKEN(bgeu, 0xffffffff, 0xfffffffe)
    NOT_TAKEN(bgeu, 0, 1)
    NOT_TAKEN(bgeu, 0, -1)
    NOT_TAKEN(bgeu, 0x7fffffff, 0x80000000)
    BACKWARD(bgeu, -1, 1)
    OK "bgeu"

    /* ---- branches comparing a register with itself and with x0 ---- */
    li      a1, 0x80000000
    li      a0, 0
    beq     a1, a1, 1f
    li      a0, 9
1:  CHECKI(a0, 0)
    li      a0, 0
    bltz    a1, 1f                  /* blt a1, x0 */
    li      a0, 9
1:  CHECKI(a0, 0)
    li      a0, 0
    bltu    x0, a1, 1f              /* a1 != 0 */
    li      a0, 9
1:  CHECKI(a0, 0)
    li      a0, 0
    bne     x0, x0, 1f
    j       2f
1:  li      a0, 9
2:  CHECKI(a0, 0)
    li      a0, 0
    bgeu    x0, x0, 1f
    li      a0, 9
1:  CHECKI(a0, 0)
    OK "register and x0 operands"

    /* ---- jal ---- */
    li      ra, 0
    jal     ra, .Ljal1
.Ljal1_ret:
    j       .Ljal1_done
.Ljal1:
    la      a1, .Ljal1_ret
    CHECK(ra, a1)
    jalr    x0, 0(ra)               /* back to .Ljal1_ret */
.Ljal1_done:
    /* jal with another link register */
    jal     t3, .Ljal2
.Ljal2_ret:
    li      a0, 9                   /* skipped */
.Ljal2:
    la      a1, .Ljal2_ret
    CHECK(t3, a1)
    /* jal x0 (j): no link written anywhere, x0 stays 0 */
    li      a0, 0
    jal     x0, .Ljal3
    li      a0, 9
.Ljal3:
    CHECKI(a0, 0)
    CHECKI(x0, 0)
    /* backward jal */
    li      a0, 0
    j       .Ljal4_fwd
.Ljal4_back:
    addi    a0, a0, 1
    jalr    x0, 0(t4)
.Ljal4_fwd:
    jal     t4, .Ljal4_back
    CHECKI(a0, 1)
    /* far jal (beyond the +-4 KiB branch range) */
    li      a0, 0
    jal     t4, .Lfar
.Lfar_ret:
    CHECKI(a0, 0x77)
    OK "jal"

    /* ---- jalr ---- */
    la      t0, .Ljr1
    jalr    t1, 0(t0)
.Ljr1_ret:
    j       .Ljr1_done
.Ljr1:
    la      a1, .Ljr1_ret
    CHECK(t1, a1)
    jr      t1
.Ljr1_done:
    /* positive and negative offsets */
    la      t0, .Ljr2 - 16
    li      a0, 0
    jalr    t1, 16(t0)
    li      a0, 9
.Ljr2:
    CHECKI(a0, 0)
    la      t0, .Ljr3 + 2044
    jalr    t1, -2044(t0)
    li      a0, 9
.Ljr3:
    CHECKI(a0, 0)
    /* bit 0 of the target is cleared: target | 1 */
    la      t0, .Ljr4
    addi    t0, t0, 1
    jalr    t1, 0(t0)
    li      a0, 9
.Ljr4:
    CHECKI(a0, 0)
    /* bit 0 produced by the offset */
    la      t0, .Ljr5
    jalr    t1, 1(t0)
    li      a0, 9
.Ljr5:
    CHECKI(a0, 0)
    /* link register equal to rs1: jumps to the old value, links pc+4 */
    la      ra, .Ljr7
    li      a0, 0
    jalr    ra, 0(ra)
.Ljr7_ret:
    li      a0, 9
.Ljr7:
    CHECKI(a0, 0)
    la      a1, .Ljr7_ret
    CHECK(ra, a1)
    /* same with an offset and bit 0 */
    la      t2, .Ljr8 - 7
    li      a0, 0
    jalr    t2, 8(t2)               /* .Ljr8 + 1 -> .Ljr8 */
.Ljr8_ret:
    li      a0, 9
.Ljr8:
    CHECKI(a0, 0)
    la      a1, .Ljr8_ret
    CHECK(t2, a1)
    /* jalr with x0 link and x0 base + offset is not usable here (low RAM
       is not ours); jalr x0 through a register: */
    la      t0, .Ljr9
    li      a0, 0
    jalr    x0, 0(t0)
    li      a0, 9
.Ljr9:
    CHECKI(a0, 0)
    CHECKI(x0, 0)
    OK "jalr"

ISA_END

/* far target for the jal test: 8 KiB away */
    .text
    .balign 4
    .space 8192
.Lfar:
    li      a0, 0x77
    jalr    x0, 0(t4)
