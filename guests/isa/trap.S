/*
 * isa-trap: synchronous exceptions, privilege changes and delegation.
 *
 * ecall from M/S/U (causes 11/9/8), ebreak, illegal instructions (mtval is
 * the instruction bits or 0: printed), a misaligned jump target, load/
 * store/fetch access faults on an unmapped address, mstatus updates on
 * trap entry and on mret, mret to U and S mode, privileged instructions
 * and CSRs from lower modes (including TSR and TVM), and delegation of
 * exceptions to S-mode through medeleg with scause/sepc/stval and sret.
 */
#include "isa.h"

/* an address with nothing behind it on the virt machine */
#define UNMAPPED 0x00020000

/* print a note "<name>: <fmt>" with one or three values */
.macro NOTE fmt:req, r1=zero, r2=zero, r3=zero
    .pushsection .rodata.isa_str, "a", @progbits
.Lnote\@:
    .asciz "\fmt"
    .popsection
    mv      a1, \r1
    mv      a2, \r2
    mv      a3, \r3
    la      a0, .Lnote\@
    call    isa_note
.endm

/* exactly n traps logged since LOG_RESET */
#define EXPECT_TRAPS(n) LOG_COUNT(t6); CHECKI(t6, n)

    .bss
    .balign 4
cap_mstatus:    .word 0
cap_mepc:       .word 0

ISA_BEGIN "isa-trap"

    /* ---- ecall from M ---- */
    LOG_RESET
    li      a7, 0                   /* not the "to M" request */
.Lecall_m:
    ecall
    EXPECT_TRAPS(1)
    CHECK_LOG(0, CAUSE_ECALL_M, INFO_M(PRV_M))
    CHECK_LOG_EPC(0, .Lecall_m)
    CHECK_LOG_TVAL(0, 0)
    csrr    a0, mcause
    CHECKI(a0, CAUSE_ECALL_M)
    csrr    a0, mepc                /* the handler advanced it */
    la      a1, .Lecall_m + 4
    CHECK(a0, a1)
    OK "ecall from M"

    /* ---- ebreak ---- */
    LOG_RESET
.Lebreak:
    ebreak
    EXPECT_TRAPS(1)
    CHECK_LOG(0, CAUSE_BREAKPOINT, INFO_M(PRV_M))
    CHECK_LOG_EPC(0, .Lebreak)
    LOG_GET(s1, 0, LOG_TVAL)
    beqz    s1, 1f
    la      a1, .Lebreak            /* nonzero mtval must be the pc */
    CHECK(s1, a1)
    NOTE    "ebreak ok (mtval = pc)\n"
    j       2f
1:  NOTE    "ebreak ok (mtval = 0)\n"
2:

    /* ---- illegal instructions ---- */
    LOG_RESET
.Lill1:
    unimp                           /* csrrw x0, cycle, x0: read-only CSR */
.Lill2:
    .word   0x00000000              /* all zeros: defined illegal */
.Lill3:
    .word   0xfe000033              /* OP with funct7 = 0x7f: reserved */
    EXPECT_TRAPS(3)
    CHECK_LOG(0, CAUSE_ILLEGAL, INFO_M(PRV_M))
    CHECK_LOG(1, CAUSE_ILLEGAL, INFO_M(PRV_M))
    CHECK_LOG(2, CAUSE_ILLEGAL, INFO_M(PRV_M))
    CHECK_LOG_EPC(0, .Lill1)
    CHECK_LOG_EPC(1, .Lill2)
    CHECK_LOG_EPC(2, .Lill3)
    /* mtval: the instruction bits, or 0 */
    LOG_GET(s1, 0, LOG_TVAL)
    LOG_GET(s2, 1, LOG_TVAL)
    LOG_GET(s3, 2, LOG_TVAL)
    beqz    s1, 1f
    CHECKI(s1, 0xc0001073)
1:  CHECKI(s2, 0)
    beqz    s3, 1f
    CHECKI(s3, 0xfe000033)
1:  NOTE    "illegal instruction ok (mtval 0x%08x 0x%08x 0x%08x)\n", s1, s2, s3

    /* ---- misaligned jump target ---- */
    csrr    s4, misa
    andi    s4, s4, 1 << ('C' - 'A')
    LOG_RESET
    la      t0, .Lmis_target + 2
    li      a0, 0
    li      ra, 0x1234
.Lmis_jump:
    jalr    ra, 0(t0)
    /* IALIGN = 32: trapped on the jalr (rd unchanged), handler skipped it */
    bnez    s4, .Lmis_fail          /* with C the jump must not come here */
    EXPECT_TRAPS(1)
    CHECK_LOG(0, CAUSE_MISALIGNED_FETCH, INFO_M(PRV_M))
    CHECK_LOG_EPC(0, .Lmis_jump)
    LOG_GET(t6, 0, LOG_TVAL)
    la      t5, .Lmis_target + 2
    CHECK(t6, t5)
    CHECKI(ra, 0x1234)
    CHECKI(a0, 0)
    j       .Lmis_done
    .balign 4
.Lmis_target:
    .half   0x0001                  /* c.nop (never executed) */
    .half   0x0505                  /* c.addi a0, 1: reached with C only */
    j       .Lmis_c
.Lmis_fail:
    li      t6, 0
    CHECKI(t6, 1)                   /* always fails */
.Lmis_c:
    /* IALIGN = 16 (C present): a 2-byte aligned target is legal */
    EXPECT_TRAPS(0)
    CHECKI(a0, 1)
    la      t5, .Lmis_jump + 4
    CHECK(ra, t5)
    /* count as many checks as the IALIGN = 32 path (7), so that the PASS
       line is the same on machines with and without C */
    addi    NPASS, NPASS, 4
.Lmis_done:
    OK "misaligned jump"

    /* ---- access faults on an unmapped address ---- */
    LOG_RESET
    li      a1, UNMAPPED
    li      a0, 0x77
.Lacc_load:
    lw      a0, 0(a1)
    CHECKI(a0, 0x77)                /* destination not written */
.Lacc_store:
    sw      a0, 4(a1)
    la      t0, .Lacc_ret
    li      t1, UNMAPPED + 8
.Lacc_fetch:
    jalr    ra, 0(t1)               /* handler resumes at ra */
.Lacc_ret:
    EXPECT_TRAPS(3)
    CHECK_LOG(0, CAUSE_LOAD_ACCESS, INFO_M(PRV_M))
    CHECK_LOG_EPC(0, .Lacc_load)
    CHECK_LOG_TVAL(0, UNMAPPED)
    CHECK_LOG(1, CAUSE_STORE_ACCESS, INFO_M(PRV_M))
    CHECK_LOG_EPC(1, .Lacc_store)
    CHECK_LOG_TVAL(1, UNMAPPED + 4)
    CHECK_LOG(2, CAUSE_FETCH_ACCESS, INFO_M(PRV_M))
    LOG_GET(t6, 2, LOG_EPC)
    CHECKI(t6, UNMAPPED + 8)
    CHECK_LOG_TVAL(2, UNMAPPED + 8)
    OK "access faults"

    /* ---- mstatus on trap entry and on mret ---- */
    la      t0, .Lcapture
    csrw    mtvec, t0
    li      t0, MSTATUS_MPP | MSTATUS_MPIE
    csrc    mstatus, t0             /* MPP = U, MPIE = 0 */
    csrsi   mstatus, MSTATUS_MIE    /* MIE = 1 (mie = 0: nothing fires) */
    li      a7, 0
    ecall                           /* entry: MPIE <- MIE, MIE <- 0, MPP <- M */
    csrr    s1, mstatus             /* mret: MIE <- MPIE, MPIE <- 1, MPP <- U */
    csrci   mstatus, MSTATUS_MIE
    la      t0, isa_mtrap
    csrw    mtvec, t0
    la      t0, cap_mstatus
    lw      s2, 0(t0)
    CHECK_MASK(s2, MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP, MSTATUS_MPIE | MSTATUS_MPP)
    CHECK_MASK(s1, MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP, MSTATUS_MIE | MSTATUS_MPIE)
    /* mret to M-mode with MPIE = 0: MIE <- 0, MPIE <- 1, MPP <- U */
    li      t0, MSTATUS_MPP
    csrs    mstatus, t0
    li      t0, MSTATUS_MPIE
    csrc    mstatus, t0
    csrsi   mstatus, MSTATUS_MIE
    la      t0, 1f
    csrw    mepc, t0
    mret
1:  csrr    s1, mstatus
    CHECK_MASK(s1, MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP, MSTATUS_MPIE)
    OK "mstatus on trap and mret"

    /* ---- mret to U-mode, ecall from U ---- */
    LOG_RESET
    li      a7, 0
    MRET_TO PRV_U, .Luser1
.Luser1:
    li      s1, 0x5a
.Lecall_u:
    ecall                           /* handled in M, back to U */
    addi    s1, s1, 1
    TO_M    .Luser1_back
.Luser1_back:
    CHECKI(s1, 0x5b)
    EXPECT_TRAPS(2)
    CHECK_LOG(0, CAUSE_ECALL_U, INFO_M(PRV_U))
    CHECK_LOG_EPC(0, .Lecall_u)
    CHECK_LOG_TVAL(0, 0)
    CHECK_LOG(1, CAUSE_ECALL_U, INFO_M(PRV_U))
    OK "mret to U and ecall from U"

    /* ---- mret to S-mode, ecall from S ---- */
    LOG_RESET
    li      a7, 0
    MRET_TO PRV_S, .Lsuper1
.Lsuper1:
    csrr    s1, sscratch            /* S CSRs are fine in S-mode */
.Lecall_s:
    ecall
    TO_M    .Lsuper1_back
.Lsuper1_back:
    EXPECT_TRAPS(2)
    CHECK_LOG(0, CAUSE_ECALL_S, INFO_M(PRV_S))
    CHECK_LOG_EPC(0, .Lecall_s)
    CHECK_LOG(1, CAUSE_ECALL_S, INFO_M(PRV_S))
    OK "mret to S and ecall from S"

    /* ---- privileged instructions and CSRs from U-mode ---- */
    LOG_RESET
    MRET_TO PRV_U, .Luser2
.Luser2:
    csrr    a0, mscratch            /* M CSR */
    csrr    a0, sstatus             /* S CSR */
    csrw    sscratch, a0
    mret
    sret
    sfence.vma
    csrr    a0, cycle               /* mcounteren = 0: not available to U */
    TO_M    .Luser2_back
.Luser2_back:
    EXPECT_TRAPS(8)
    .irp i, 0, 1, 2, 3, 4, 5, 6
    CHECK_LOG(\i, CAUSE_ILLEGAL, INFO_M(PRV_U))
    .endr
    OK "privilege checks in U"

    /* ---- privileged instructions and CSRs from S-mode ---- */
    LOG_RESET
    li      t0, MSTATUS_TSR | MSTATUS_TVM
    csrc    mstatus, t0
    MRET_TO PRV_S, .Lsuper2
.Lsuper2:
    csrr    a0, mscratch            /* M CSR: illegal */
    mret                            /* illegal in S */
    csrr    a0, satp                /* fine while TVM = 0 */
    sfence.vma                      /* fine while TVM = 0 */
    TO_M    1f
1:  li      t0, MSTATUS_TSR | MSTATUS_TVM
    csrs    mstatus, t0
    MRET_TO PRV_S, .Lsuper3
.Lsuper3:
    csrr    a0, satp                /* TVM: illegal */
    sfence.vma                      /* TVM: illegal */
    sret                            /* TSR: illegal */
    TO_M    1f
1:  li      t0, MSTATUS_TSR | MSTATUS_TVM
    csrc    mstatus, t0
    EXPECT_TRAPS(7)
    CHECK_LOG(0, CAUSE_ILLEGAL, INFO_M(PRV_S))
    CHECK_LOG(1, CAUSE_ILLEGAL, INFO_M(PRV_S))
    CHECK_LOG(2, CAUSE_ECALL_S, INFO_M(PRV_S))
    CHECK_LOG(3, CAUSE_ILLEGAL, INFO_M(PRV_S))
    CHECK_LOG(4, CAUSE_ILLEGAL, INFO_M(PRV_S))
    CHECK_LOG(5, CAUSE_ILLEGAL, INFO_M(PRV_S))
    CHECK_LOG(6, CAUSE_ECALL_S, INFO_M(PRV_S))
    OK "privilege checks in S"

    /* ---- delegation of U ecalls (and S illegal instructions) to S ---- */
    LOG_RESET
    li      t0, (1 << CAUSE_ECALL_U) | (1 << CAUSE_ILLEGAL)
    csrw    medeleg, t0
    csrw    scause, zero
    csrw    sepc, zero
    li      a7, 0
    li      s1, 0
    MRET_TO PRV_U, .Luser3
.Luser3:
.Ldeleg_ecall:
    ecall                           /* -> S handler, sret back to U */
    li      s1, 0x55
    csrr    a0, mscratch            /* illegal from U: delegated too */
    TO_M    .Luser3_back            /* S handler forwards to M */
.Luser3_back:
    csrr    s2, scause
    csrr    s3, sepc
    csrr    s4, stval
    csrr    s5, sstatus
    csrw    medeleg, zero
    CHECKI(s1, 0x55)
    EXPECT_TRAPS(4)
    CHECK_LOG(0, CAUSE_ECALL_U, INFO_S(PRV_U))
    CHECK_LOG_EPC(0, .Ldeleg_ecall)
    CHECK_LOG_TVAL(0, 0)
    CHECK_LOG(1, CAUSE_ILLEGAL, INFO_S(PRV_U))
    CHECK_LOG(2, CAUSE_ECALL_U, INFO_S(PRV_U))
    CHECK_LOG(3, CAUSE_ECALL_S, INFO_M(PRV_S))
    CHECKI(s2, CAUSE_ECALL_U)       /* S CSRs hold the last delegated trap */
    LOG_GET(t6, 2, LOG_EPC)
    CHECK(s3, t6)
    CHECKI(s4, 0)
    CHECK_MASK(s5, MSTATUS_SPP, 0)  /* came from U */
    /* a delegated trap taken in S-mode itself: SPP = 1 */
    LOG_RESET
    li      t0, 1 << CAUSE_ILLEGAL
    csrw    medeleg, t0
    MRET_TO PRV_S, .Lsuper4
.Lsuper4:
.Lsill:
    unimp
    TO_M    1f
1:  csrr    s5, sstatus
    csrw    medeleg, zero
    EXPECT_TRAPS(2)
    CHECK_LOG(0, CAUSE_ILLEGAL, INFO_S(PRV_S))
    CHECK_LOG_EPC(0, .Lsill)
    CHECK_LOG(1, CAUSE_ECALL_S, INFO_M(PRV_S))
    CHECK_MASK(s5, MSTATUS_SPP, 0)  /* sret set SPP back to U */
    /* a trap from M-mode is never delegated */
    LOG_RESET
    li      t0, 1 << CAUSE_ILLEGAL
    csrw    medeleg, t0
    unimp
    csrw    medeleg, zero
    EXPECT_TRAPS(1)
    CHECK_LOG(0, CAUSE_ILLEGAL, INFO_M(PRV_M))
    OK "delegation to S"

ISA_END

/* trap vector recording mstatus at entry; steps over the instruction.
 * Clobbers t5 and t6. */
    .text
    .balign 64
.Lcapture:
    csrr    t6, mstatus
    la      t5, cap_mstatus
    sw      t6, 0(t5)
    csrr    t6, mepc
    la      t5, cap_mepc
    sw      t6, 0(t5)
    addi    t6, t6, 4
    csrw    mepc, t6
    mret
