/*
 * isa-irq: interrupts from the CLINT and through mip.
 *
 * mip.MTIP/MSIP follow mtimecmp/msip; a machine timer interrupt and a
 * machine software interrupt are taken (mcause, handler silences them);
 * WFI wakes up on an interrupt that is pending and enabled in mie while
 * mstatus.MIE = 0, without taking it; several pending interrupts are
 * taken in priority order (MSI before MTI); an M-mode timer handler
 * raises mip.STIP and S-mode takes the delegated supervisor timer
 * interrupt (mideleg); S-mode takes a delegated supervisor software
 * interrupt that it raised itself through sip.
 *
 * Waiting loops are bounded by mtime (one second), so a machine that
 * never delivers fails a check instead of hanging.
 */
#include "isa.h"

#define TIMEOUT (HF_MTIME_HZ)       /* one second of mtime */

/* reg = low word of mtime */
#define MTIME_LO(reg) li reg, HF_CLINT_MTIME; lw reg, 0(reg)

/* wait until at least n traps are logged or the timeout passes;
 * clobbers t0-t3 */
.macro WAIT_TRAPS n:req
    MTIME_LO(t2)
.Lw\@:
    LOG_COUNT(t0)
    li      t1, \n
    bgeu    t0, t1, .Ld\@
    MTIME_LO(t3)
    sub     t3, t3, t2
    li      t1, TIMEOUT
    bltu    t3, t1, .Lw\@
.Ld\@:
.endm

/* mtimecmp(hart 0) = mtime + delta (delta < 2^31); clobbers t0-t3 */
.macro ARM_TIMER delta:req
    li      t0, HF_CLINT_MTIME
1:  lw      t2, 4(t0)
    lw      t1, 0(t0)
    lw      t3, 4(t0)
    bne     t2, t3, 1b
    li      t3, \delta
    add     t3, t1, t3
    sltu    t1, t3, t1              /* carry */
    add     t2, t2, t1
    li      t0, HF_CLINT_MTIMECMP
    li      t1, -1
    sw      t1, 0(t0)
    sw      t2, 4(t0)
    sw      t3, 0(t0)
.endm

#define DISARM_TIMER li t0, HF_CLINT_MTIMECMP; li t1, -1; sw t1, 4(t0); sw t1, 0(t0)
#define SET_MSIP(v) li t0, HF_CLINT_MSIP; li t1, v; sw t1, 0(t0)

#define EXPECT_TRAPS(n) LOG_COUNT(t6); CHECKI(t6, n)

ISA_BEGIN "isa-irq"

    csrci   mstatus, MSTATUS_MIE
    csrw    mie, zero

    /* ---- mip mirrors the CLINT ---- */
    li      t0, HF_CLINT_MTIMECMP
    sw      zero, 0(t0)
    sw      zero, 4(t0)             /* compare 0: due */
    csrr    a0, mip
    CHECK_MASK(a0, MIP_MTIP, MIP_MTIP)
    DISARM_TIMER
    csrr    a0, mip
    CHECK_MASK(a0, MIP_MTIP, 0)
    SET_MSIP(1)
    csrr    a0, mip
    CHECK_MASK(a0, MIP_MSIP, MIP_MSIP)
    li      t0, HF_CLINT_MSIP
    lw      a0, 0(t0)
    CHECKI(a0, 1)
    SET_MSIP(0)
    csrr    a0, mip
    CHECK_MASK(a0, MIP_MSIP, 0)
    OK "mip follows the CLINT"

    /* ---- machine timer interrupt ---- */
    LOG_RESET
    li      t0, MIP_MTIP
    csrw    mie, t0
    ARM_TIMER 1000                  /* 100 us */
    EXPECT_TRAPS(0)                 /* not yet: MIE = 0 */
    csrsi   mstatus, MSTATUS_MIE
    WAIT_TRAPS 1
    csrci   mstatus, MSTATUS_MIE
    csrw    mie, zero
    EXPECT_TRAPS(1)
    CHECK_LOG(0, IRQ_M_TIMER, INFO_M(PRV_M))
    csrr    a0, mip                 /* the handler pushed mtimecmp away */
    CHECK_MASK(a0, MIP_MTIP, 0)
    csrr    a0, mcause
    CHECKI(a0, IRQ_M_TIMER)
    OK "machine timer interrupt"

    /* ---- machine software interrupt ---- */
    LOG_RESET
    li      t0, MIP_MSIP
    csrw    mie, t0
    csrsi   mstatus, MSTATUS_MIE
    SET_MSIP(1)
    WAIT_TRAPS 1
    csrci   mstatus, MSTATUS_MIE
    csrw    mie, zero
    EXPECT_TRAPS(1)
    CHECK_LOG(0, IRQ_M_SOFT, INFO_M(PRV_M))
    li      t0, HF_CLINT_MSIP       /* the handler cleared msip */
    lw      a0, 0(t0)
    CHECKI(a0, 0)
    OK "machine software interrupt"

    /* ---- WFI wakes on pending-but-disabled interrupts ---- */
    LOG_RESET
    li      t0, MIP_MTIP
    csrw    mie, t0                 /* enabled in mie, MIE = 0 */
    MTIME_LO(s2)                    /* before arming: the compare is >= s2 + 1 ms */
    ARM_TIMER 10000                 /* 1 ms */
1:  wfi                             /* may also return early: loop */
    csrr    a0, mip
    andi    a0, a0, MIP_MTIP
    bnez    a0, 2f
    MTIME_LO(t3)
    sub     t3, t3, s2
    li      t1, TIMEOUT
    bltu    t3, t1, 1b
2:  CHECKI(a0, MIP_MTIP)
    MTIME_LO(t3)                    /* at least 1 ms went by */
    sub     t3, t3, s2
    li      t1, 10000 - 1
    sltu    a0, t1, t3
    CHECKI(a0, 1)
    EXPECT_TRAPS(0)                 /* woken, but nothing taken */
    DISARM_TIMER
    csrr    a0, mip
    CHECK_MASK(a0, MIP_MTIP, 0)
    li      t0, MIP_MSIP            /* already pending: WFI returns */
    csrw    mie, t0
    SET_MSIP(1)
    wfi
    SET_MSIP(0)
    csrw    mie, zero
    EXPECT_TRAPS(0)
    OK "wfi wake-up"

    /* ---- priority: MSI before MTI ----
     * (the spec also puts every M-level interrupt before the S-level ones;
     * QEMU 7.2 without AIA takes the lowest-numbered pending one first,
     * e.g. SSI before MSI, so that part is not tested) */
    LOG_RESET
    SET_MSIP(1)
    li      t0, HF_CLINT_MTIMECMP
    sw      zero, 0(t0)
    sw      zero, 4(t0)
    li      t0, MIP_MTIP | MIP_MSIP
    csrw    mie, t0
    csrsi   mstatus, MSTATUS_MIE    /* both pending at once */
    WAIT_TRAPS 2
    csrci   mstatus, MSTATUS_MIE
    csrw    mie, zero
    EXPECT_TRAPS(2)
    CHECK_LOG(0, IRQ_M_SOFT, INFO_M(PRV_M))
    CHECK_LOG(1, IRQ_M_TIMER, INFO_M(PRV_M))
    OK "priority"

    /* ---- supervisor timer interrupt raised by the M timer handler ---- */
    LOG_RESET
    li      t0, MIP_STIP | MIP_SSIP
    csrw    mideleg, t0
    la      t0, isa_mti_sets_stip
    li      t1, 1
    sw      t1, 0(t0)
    li      t0, MIP_MTIP | MIP_STIP | MIP_SSIP
    csrw    mie, t0
    csrsi   mstatus, MSTATUS_SIE
    ARM_TIMER 1000
    MRET_TO PRV_S, .Lsuper
.Lsuper:
    WAIT_TRAPS 2                    /* M timer, then S timer */
    /* S software interrupt, raised by S-mode itself */
    li      t0, MIP_SSIP
    csrs    sip, t0
    WAIT_TRAPS 3
    TO_M    .Lsuper_back
.Lsuper_back:
    csrr    s1, scause
    csrr    s2, mie
    csrr    s3, mip
    csrw    mie, zero
    li      t0, MIP_STIP | MIP_SSIP
    csrc    mip, t0
    csrw    mideleg, zero
    csrci   mstatus, MSTATUS_SIE
    la      t0, isa_mti_sets_stip
    sw      zero, 0(t0)
    EXPECT_TRAPS(4)
    CHECK_LOG(0, IRQ_M_TIMER, INFO_M(PRV_S))
    CHECK_LOG(1, IRQ_S_TIMER, INFO_S(PRV_S))
    CHECK_LOG(2, IRQ_S_SOFT, INFO_S(PRV_S))
    CHECK_LOG(3, CAUSE_ECALL_S, INFO_M(PRV_S))
    CHECKI(s1, IRQ_S_SOFT)
    CHECK_MASK(s2, MIP_STIP, 0)     /* the S handler masked STIE */
    CHECK_MASK(s3, MIP_STIP | MIP_SSIP, MIP_STIP) /* STIP stays until M clears it */
    OK "delegated supervisor interrupts"

ISA_END
