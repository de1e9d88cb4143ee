/*
 * isa-amo: the A extension.
 *
 * lr.w/sc.w: success (rd = 0, memory written), failure without a
 * reservation, failure of a second sc after a successful one, failure of
 * an sc to an address outside the reservation set (another page), and an
 * sc that fails after such a failed sc (any sc ends the reservation).
 * Every AMO with rd receiving the old value and memory the result,
 * including signed/unsigned min/max edges, rd = x0, rd = rs2, and the
 * .aq/.rl/.aqrl encodings.
 */
#include "isa.h"

    .data
    .balign 16
word:   .word 0
word2:  .word 0
    .balign 4096
farword: .word 0                    /* a different page */

/* memory = init; op a0, a2, (a1); check a0 == init and memory == result */
#define TEST_AMO(op, init, operand, result) \
    la a1, word; li a3, init; sw a3, 0(a1); li a2, operand; \
    op a0, a2, (a1); CHECKI(a0, init); lw a4, 0(a1); CHECKI(a4, result)

ISA_BEGIN "isa-amo"

    /* ---- lr.w / sc.w ---- */
    la      a1, word
    li      t0, 0x1234
    sw      t0, 0(a1)
    /* an sc without a reservation fails and does not write */
    li      a2, 0x5555
    li      a0, 0
    sc.w    a0, a2, (a1)
    CHECK_NEI(a0, 0)
    lw      a4, 0(a1)
    CHECKI(a4, 0x1234)
    /* lr then sc: succeeds */
    lr.w    a3, (a1)
    CHECKI(a3, 0x1234)
    addi    a3, a3, 1
    sc.w    a0, a3, (a1)
    CHECKI(a0, 0)
    lw      a4, 0(a1)
    CHECKI(a4, 0x1235)
    /* a second sc after a successful one fails */
    li      a2, 0x7777
    sc.w    a0, a2, (a1)
    CHECK_NEI(a0, 0)
    lw      a4, 0(a1)
    CHECKI(a4, 0x1235)
    OK "lr/sc success"

    /* sc to an address in another page than the lr fails */
    la      a1, word
    la      a5, farword
    sw      zero, 0(a5)
    lr.w    a3, (a1)
    li      a2, 0x99
    sc.w    a0, a2, (a5)
    CHECK_NEI(a0, 0)
    lw      a4, 0(a5)
    CHECKI(a4, 0)
    /* ... and that failed sc ended the reservation on `word` too */
    sc.w    a0, a2, (a1)
    CHECK_NEI(a0, 0)
    lw      a4, 0(a1)
    CHECKI(a4, 0x1235)
    /* a fresh lr/sc pair works again; rd = rs2 in sc */
    lr.w    a3, (a1)
    li      a2, 0x4242
    sc.w    a2, a2, (a1)
    CHECKI(a2, 0)
    lw      a4, 0(a1)
    CHECKI(a4, 0x4242)
    /* lr.w rd = rs1 */
    la      a2, word
    lr.w    a2, (a2)
    CHECKI(a2, 0x4242)
    /* sc.w with rd = x0 after lr: writes, result discarded */
    lr.w    a3, (a1)
    li      a2, 0x6543
    sc.w    x0, a2, (a1)
    CHECKI(x0, 0)
    lw      a4, 0(a1)
    CHECKI(a4, 0x6543)
    /* an lr/sc retry loop (the canonical compare-and-swap) */
    li      a6, 0
1:  lr.w    a3, (a1)
    addi    a3, a3, 0x10
    sc.w    a0, a3, (a1)
    addi    a6, a6, 1
    li      t0, 100
    bgeu    a6, t0, 2f              /* give up after 100 tries */
    bnez    a0, 1b
2:  CHECKI(a0, 0)
    lw      a4, 0(a1)
    CHECKI(a4, 0x6553)
    OK "lr/sc failure"

    /* ---- AMOs ---- */
    TEST_AMO(amoswap.w, 0x11111111, 0x22222222, 0x22222222)
    TEST_AMO(amoswap.w, 0x80000000, 0, 0)
    OK "amoswap"
    TEST_AMO(amoadd.w, 5, 7, 12)
    TEST_AMO(amoadd.w, 0xffffffff, 1, 0)
    TEST_AMO(amoadd.w, 0x7fffffff, 1, 0x80000000)
    OK "amoadd"
    TEST_AMO(amoxor.w, 0xff00ff00, 0x0ff00ff0, 0xf0f0f0f0)
    TEST_AMO(amoxor.w, 0x12345678, 0x12345678, 0)
    OK "amoxor"
    TEST_AMO(amoand.w, 0xff00ff00, 0x0ff00ff0, 0x0f000f00)
    TEST_AMO(amoand.w, 0xffffffff, 0x80000001, 0x80000001)
    OK "amoand"
    TEST_AMO(amoor.w, 0xff00ff00, 0x0ff00ff0, 0xfff0fff0)
    TEST_AMO(amoor.w, 0, 0, 0)
    OK "amoor"
    TEST_AMO(amomin.w, 5, 7, 5)
    TEST_AMO(amomin.w, 7, 5, 5)
    TEST_AMO(amomin.w, -1, 1, -1)
    TEST_AMO(amomin.w, 1, -1, -1)
    TEST_AMO(amomin.w, 0x80000000, 0x7fffffff, 0x80000000)
    TEST_AMO(amomin.w, 0x7fffffff, 0x80000000, 0x80000000)
    OK "amomin"
    TEST_AMO(amomax.w, 5, 7, 7)
    TEST_AMO(amomax.w, 7, 5, 7)
    TEST_AMO(amomax.w, -1, 1, 1)
    TEST_AMO(amomax.w, 1, -1, 1)
    TEST_AMO(amomax.w, 0x80000000, 0x7fffffff, 0x7fffffff)
    TEST_AMO(amomax.w, -5, -3, -3)
    OK "amomax"
    TEST_AMO(amominu.w, 5, 7, 5)
    TEST_AMO(amominu.w, -1, 1, 1)
    TEST_AMO(amominu.w, 1, -1, 1)
    TEST_AMO(amominu.w, 0x80000000, 0x7fffffff, 0x7fffffff)
    TEST_AMO(amominu.w, 0, 0xffffffff, 0)
    OK "amominu"
    TEST_AMO(amomaxu.w, 5, 7, 7)
    TEST_AMO(amomaxu.w, -1, 1, -1)
    TEST_AMO(amomaxu.w, 1, -1, -1)
    TEST_AMO(amomaxu.w, 0x80000000, 0x7fffffff, 0x80000000)
    TEST_AMO(amomaxu.w, 0xfffffffe, 0xffffffff, 0xffffffff)
    OK "amomaxu"

    /* ---- rd = x0, rd = rs2, and the neighbour word is untouched ---- */
    la      a1, word
    li      t0, 100
    sw      t0, 0(a1)
    li      t0, 0x5a5a5a5a
    sw      t0, 4(a1)
    li      a2, 23
    amoadd.w x0, a2, (a1)
    CHECKI(x0, 0)
    lw      a4, 0(a1)
    CHECKI(a4, 123)
    li      a2, 77
    amoswap.w a2, a2, (a1)          /* old value to a2, memory gets 77 */
    CHECKI(a2, 123)
    lw      a4, 0(a1)
    CHECKI(a4, 77)
    li      a2, 3
    amoor.w a2, a2, (a1)
    CHECKI(a2, 77)
    lw      a4, 0(a1)
    CHECKI(a4, 79)
    lw      a4, 4(a1)
    CHECKI(a4, 0x5a5a5a5a)
    OK "register overlap"

    /* ---- ordering bits: same results with .aq / .rl / .aqrl ---- */
    TEST_AMO(amoswap.w.aq, 1, 2, 2)
    TEST_AMO(amoadd.w.rl, 1, 2, 3)
    TEST_AMO(amoxor.w.aqrl, 1, 3, 2)
    TEST_AMO(amoand.w.aq, 6, 3, 2)
    TEST_AMO(amoor.w.rl, 4, 3, 7)
    TEST_AMO(amomin.w.aqrl, -4, 3, -4)
    TEST_AMO(amomax.w.aq, -4, 3, 3)
    TEST_AMO(amominu.w.rl, -4, 3, 3)
    TEST_AMO(amomaxu.w.aqrl, -4, 3, -4)
    la      a1, word
    li      t0, 9
    sw      t0, 0(a1)
    lr.w.aq a3, (a1)
    addi    a3, a3, 1
    sc.w.rl a0, a3, (a1)
    CHECKI(a0, 0)
    lr.w.aqrl a3, (a1)
    CHECKI(a3, 10)
    addi    a3, a3, 1
    sc.w.aqrl a0, a3, (a1)
    CHECKI(a0, 0)
    lw      a4, 0(a1)
    CHECKI(a4, 11)
    /* check the encodings themselves: aq = bit 26, rl = bit 25 */
    la      a1, .Lenc
    lw      a0, 0(a1)
    li      t0, 0x06000000
    and     a0, a0, t0
    CHECKI(a0, 0x04000000)
    lw      a0, 4(a1)
    and     a0, a0, t0
    CHECKI(a0, 0x02000000)
    lw      a0, 8(a1)
    and     a0, a0, t0
    CHECKI(a0, 0x06000000)
    lw      a0, 12(a1)
    and     a0, a0, t0
    CHECKI(a0, 0)
    OK "aq/rl"

ISA_END

    .section .rodata
    .balign 4
.Lenc:                                  /* never executed: only inspected */
    amoadd.w.aq   x0, x0, (x0)
    amoadd.w.rl   x0, x0, (x0)
    amoadd.w.aqrl x0, x0, (x0)
    amoadd.w      x0, x0, (x0)
