/*
 * isa-csr: Zicsr instructions and the machine/supervisor CSRs.
 *
 * csrrw/csrrs/csrrc and their immediate forms (old value to rd, new value
 * written), the forms that must not write (csrrs/csrrc with rs1 = x0,
 * csrrsi/csrrci with uimm = 0) and do not trap on read-only CSRs, rd = x0
 * forms, writes to read-only CSRs and accesses to a non-existent CSR
 * (illegal instruction), misa (RV32 with I, M, A, S, U), mhartid, the
 * writable mstatus fields and the sstatus view, mie/mip, delegation
 * registers, counters (cycle/instret advance, minstret is writable),
 * mtvec/stvec/mepc/sepc and the other trap CSRs.
 */
#include "isa.h"

/* the previous instruction must have raised exactly one illegal-instruction
 * trap (the handler skips it) */
#define EXPECT_ILLEGAL \
    LOG_COUNT(t6); CHECKI(t6, 1); LOG_GET(t6, 0, LOG_CAUSE); CHECKI(t6, CAUSE_ILLEGAL); LOG_RESET
/* no trap since the last LOG_RESET */
#define EXPECT_NO_TRAP LOG_COUNT(t6); CHECKI(t6, 0)

ISA_BEGIN "isa-csr"

    /* ---- csrrw / csrrs / csrrc on mscratch ---- */
    csrr    s0, mscratch            /* the runtime's trap frame: restore later */
    li      a1, 0x12345678
    csrw    mscratch, a1
    li      a2, 0xcafef00d
    csrrw   a0, mscratch, a2
    CHECKI(a0, 0x12345678)
    csrr    a0, mscratch
    CHECKI(a0, 0xcafef00d)
    li      a2, 0x0000ff00
    csrrs   a0, mscratch, a2
    CHECKI(a0, 0xcafef00d)
    csrr    a0, mscratch
    CHECKI(a0, 0xcafeff0d)
    li      a2, 0xf000000f
    csrrc   a0, mscratch, a2
    CHECKI(a0, 0xcafeff0d)
    csrr    a0, mscratch
    CHECKI(a0, 0x0afeff00)
    /* rd == rs1 */
    li      a1, 0x11111111
    csrrw   a1, mscratch, a1
    CHECKI(a1, 0x0afeff00)
    csrr    a0, mscratch
    CHECKI(a0, 0x11111111)
    OK "csrrw/csrrs/csrrc"

    /* ---- immediate forms (5-bit zero-extended uimm) ---- */
    csrwi   mscratch, 0
    csrrwi  a0, mscratch, 31
    CHECKI(a0, 0)
    csrr    a0, mscratch
    CHECKI(a0, 31)
    li      a1, 0xffff0000
    csrw    mscratch, a1
    csrrsi  a0, mscratch, 0x15
    CHECKI(a0, 0xffff0000)
    csrr    a0, mscratch
    CHECKI(a0, 0xffff0015)
    csrrci  a0, mscratch, 0x11
    CHECKI(a0, 0xffff0015)
    csrr    a0, mscratch
    CHECKI(a0, 0xffff0004)
    csrrwi  a0, mscratch, 0x10      /* uimm is not sign-extended */
    csrr    a0, mscratch
    CHECKI(a0, 0x10)
    OK "immediate forms"

    /* ---- x0 forms ---- */
    li      a1, 0x5a5a5a5a
    csrw    mscratch, a1            /* csrrw x0: write only */
    csrrs   a0, mscratch, x0        /* read only */
    CHECKI(a0, 0x5a5a5a5a)
    csrrc   a0, mscratch, x0
    CHECKI(a0, 0x5a5a5a5a)
    csrrsi  a0, mscratch, 0
    CHECKI(a0, 0x5a5a5a5a)
    csrrci  a0, mscratch, 0
    CHECKI(a0, 0x5a5a5a5a)
    csrrs   x0, mscratch, x0
    CHECKI(x0, 0)
    csrrw   x0, mscratch, x0        /* writes zero */
    csrr    a0, mscratch
    CHECKI(a0, 0)
    csrw    mscratch, s0
    OK "x0 forms"

    /* ---- read-only and non-existent CSRs ---- */
    LOG_RESET
    csrr    a0, mhartid             /* csrrs rs1 = x0: no write, no trap */
    csrrsi  a1, mhartid, 0
    csrrc   a2, mhartid, x0
    csrr    a3, mvendorid
    csrr    a3, marchid
    csrr    a3, mimpid
    csrr    a3, cycle
    csrrci  a3, instret, 0
    EXPECT_NO_TRAP
    CHECKI(a0, 0)                   /* we run on hart 0 */
    CHECKI(a1, 0)
    CHECKI(a2, 0)
    li      a4, 1
    csrw    mhartid, a4             /* write to a read-only CSR */
    EXPECT_ILLEGAL
    csrr    a0, mhartid
    CHECKI(a0, 0)
    csrrs   a0, mhartid, a4         /* rs1 != x0: a write, even if no bit changes */
    EXPECT_ILLEGAL
    csrrwi  a0, mvendorid, 0        /* csrrw always writes */
    EXPECT_ILLEGAL
    csrrsi  a0, cycle, 1
    EXPECT_ILLEGAL
    csrw    instret, x0
    EXPECT_ILLEGAL
    csrr    a0, 0x0ff               /* no such CSR */
    EXPECT_ILLEGAL
    csrw    0x0ff, a4
    EXPECT_ILLEGAL
    OK "read-only and missing CSRs"

    /* ---- misa ---- */
    csrr    a0, misa
    srli    a1, a0, 30
    CHECKI(a1, 1)                   /* MXL = 1: RV32 */
    CHECK_MASK(a0, 1 << ('I' - 'A'), 1 << ('I' - 'A'))
    CHECK_MASK(a0, 1 << ('M' - 'A'), 1 << ('M' - 'A'))
    CHECK_MASK(a0, 1 << ('A' - 'A'), 1 << ('A' - 'A'))
    CHECK_MASK(a0, 1 << ('S' - 'A'), 1 << ('S' - 'A'))
    CHECK_MASK(a0, 1 << ('U' - 'A'), 1 << ('U' - 'A'))
    CHECK_MASK(a0, 1 << ('E' - 'A'), 0)
    OK "misa"

    /* ---- mstatus: writable fields, one at a time ---- */
    csrr    s1, mstatus
    li      s2, MSTATUS_MPP
    csrs    mstatus, s2             /* MPP = M while playing with MPRV */
    .irp bit, 1, 3, 5, 7, 8, 17, 18, 19, 20, 21, 22
    li      a1, 1 << \bit
    csrs    mstatus, a1
    csrr    a0, mstatus
    and     a0, a0, a1
    CHECK(a0, a1)
    csrc    mstatus, a1
    csrr    a0, mstatus
    and     a0, a0, a1
    CHECKI(a0, 0)
    .endr
    /* MPP holds every implemented mode: U, S, M */
    .irp mode, PRV_U, PRV_S, PRV_M
    csrc    mstatus, s2
    li      a1, (\mode) << 11
    csrs    mstatus, a1
    csrr    a0, mstatus
    and     a0, a0, s2
    CHECK(a0, a1)
    .endr
    OK "mstatus fields"

    /* ---- sstatus is a view of mstatus ---- */
    li      a1, MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_SUM | MSTATUS_MXR
    csrc    mstatus, a1
    li      a1, MSTATUS_SIE | MSTATUS_SPP
    csrs    sstatus, a1
    csrr    a0, mstatus
    and     a0, a0, a1
    CHECK(a0, a1)
    li      a1, MSTATUS_SPIE | MSTATUS_SUM | MSTATUS_MXR
    csrs    mstatus, a1
    csrr    a0, sstatus
    and     a0, a0, a1
    CHECK(a0, a1)
    /* machine-only fields are invisible through sstatus */
    li      a1, MSTATUS_MIE | MSTATUS_MPIE
    csrs    mstatus, a1
    csrr    a0, sstatus
    li      a2, MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP | MSTATUS_MPRV | MSTATUS_TVM | MSTATUS_TW | MSTATUS_TSR
    and     a0, a0, a2
    CHECKI(a0, 0)
    csrc    mstatus, a1             /* MIE back off */
    /* writing sstatus leaves machine fields alone */
    csrr    a3, mstatus
    csrw    sstatus, zero
    csrr    a0, mstatus
    and     a0, a0, s2
    and     a3, a3, s2
    CHECK(a0, a3)
    li      a1, MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_SUM | MSTATUS_MXR
    csrr    a0, mstatus
    and     a0, a0, a1
    CHECKI(a0, 0)
    csrw    mstatus, s1
    OK "sstatus view"

    /* ---- mie / mip ---- */
    li      a1, MIP_SSIP | MIP_MSIP | MIP_STIP | MIP_MTIP | MIP_SEIP | MIP_MEIP
    csrw    mie, a1
    csrr    a0, mie
    and     a0, a0, a1
    CHECK(a0, a1)
    csrw    mie, zero
    csrr    a0, mie
    CHECKI(a0, 0)
    /* mip.SSIP and mip.STIP are writable from M-mode ... */
    li      a1, MIP_SSIP | MIP_STIP
    csrs    mip, a1
    csrr    a0, mip
    and     a0, a0, a1
    CHECK(a0, a1)
    csrc    mip, a1
    csrr    a0, mip
    and     a0, a0, a1
    CHECKI(a0, 0)
    /* ... mip.MTIP and mip.MSIP are not (they mirror the CLINT) */
    li      a1, MIP_MTIP | MIP_MSIP
    csrs    mip, a1
    csrr    a0, mip
    and     a0, a0, a1
    CHECKI(a0, 0)
    OK "mie/mip"

    /* ---- delegation registers ---- */
    li      a1, (1 << CAUSE_ECALL_U) | (1 << CAUSE_FETCH_PAGE) | (1 << CAUSE_LOAD_PAGE) | (1 << CAUSE_STORE_PAGE) | (1 << CAUSE_ILLEGAL) | (1 << CAUSE_BREAKPOINT)
    csrw    medeleg, a1
    csrr    a0, medeleg
    and     a0, a0, a1
    CHECK(a0, a1)
    csrw    medeleg, zero
    csrr    a0, medeleg
    CHECKI(a0, 0)
    li      a1, MIP_SSIP | MIP_STIP | MIP_SEIP
    csrw    mideleg, a1
    csrr    a0, mideleg
    and     a0, a0, a1
    CHECK(a0, a1)
    csrw    mideleg, zero
    csrr    a0, mideleg
    and     a0, a0, a1              /* only the S bits: others may be fixed */
    CHECKI(a0, 0)
    OK "medeleg/mideleg"

    /* ---- counters ---- */
    csrr    a1, minstret
    nop
    nop
    nop
    csrr    a2, minstret
    sub     a0, a2, a1
    CHECK_NEI(a0, 0)
    srli    a0, a0, 31              /* moved forward, not backward */
    CHECKI(a0, 0)
    csrr    a1, instret
    nop
    csrr    a2, instret
    sub     a0, a2, a1
    CHECK_NEI(a0, 0)
    srli    a0, a0, 31
    CHECKI(a0, 0)
    csrr    a1, mcycle
    li      t0, 100
1:  addi    t0, t0, -1
    bnez    t0, 1b
    csrr    a2, mcycle
    sub     a0, a2, a1
    CHECK_NEI(a0, 0)
    srli    a0, a0, 31
    CHECKI(a0, 0)
    csrr    a1, cycle
    li      t0, 100
1:  addi    t0, t0, -1
    bnez    t0, 1b
    csrr    a2, cycle
    sub     a0, a2, a1
    CHECK_NEI(a0, 0)
    srli    a0, a0, 31
    CHECKI(a0, 0)
    LOG_RESET
    csrr    a0, cycleh
    csrr    a0, instreth
    csrr    a0, mcycleh
    csrr    a0, minstreth
    EXPECT_NO_TRAP
    /* minstret is writable: it continues from the written value */
    li      a1, 0x00100000
    csrw    minstret, a1
    csrr    a2, minstret
    sub     a0, a2, a1
    srli    a0, a0, 20              /* advanced by less than 2^20 */
    CHECKI(a0, 0)
    OK "counters"

    /* ---- trap setup CSRs ---- */
    csrr    s1, mtvec
    la      a1, .Lsome_vector
    csrw    mtvec, a1
    csrr    a0, mtvec
    CHECK(a0, a1)
    csrw    mtvec, s1
    csrr    a0, mtvec
    CHECK(a0, s1)
    csrr    s1, stvec
    la      a1, .Lsome_vector
    csrw    stvec, a1
    csrr    a0, stvec
    CHECK(a0, a1)
    csrw    stvec, s1
    li      a1, 0x80001234
    csrw    mepc, a1
    csrr    a0, mepc
    CHECK(a0, a1)
    csrw    sepc, a1
    csrr    a0, sepc
    CHECK(a0, a1)
    /* (mepc[0]/sepc[0] should read 0 after writing an odd value, but
       QEMU 7.2 keeps the bit, so that is not checked here) */
    li      a1, CAUSE_STORE_PAGE
    csrw    mcause, a1
    csrr    a0, mcause
    CHECK(a0, a1)
    li      a1, IRQ_M_TIMER
    csrw    mcause, a1
    csrr    a0, mcause
    CHECK(a0, a1)
    li      a1, CAUSE_LOAD_PAGE
    csrw    scause, a1
    csrr    a0, scause
    CHECK(a0, a1)
    li      a1, 0x80000000
    csrw    mtval, a1
    csrr    a0, mtval
    CHECK(a0, a1)
    csrw    stval, a1
    csrr    a0, stval
    CHECK(a0, a1)
    csrr    s1, sscratch
    li      a1, 0xa5a5a5a5
    csrw    sscratch, a1
    csrr    a0, sscratch
    CHECK(a0, a1)
    csrw    sscratch, s1
    /* satp: Sv32 mode bit and a PPN (translation stays off in M-mode) */
    li      a1, SATP_MODE_SV32 | 0x80123
    csrw    satp, a1
    csrr    a0, satp
    li      a2, SATP_MODE_SV32 | 0x3fffff
    and     a0, a0, a2
    CHECK(a0, a1)
    csrw    satp, zero
    csrr    a0, satp
    CHECKI(a0, 0)
    OK "trap CSRs"

ISA_END

    .text
    .balign 64
.Lsome_vector:
    j       .Lsome_vector
