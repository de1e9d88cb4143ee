/*
 * isa-sv32: Sv32 virtual memory (page tables built by sv32_main.c).
 *
 * From S-mode: loads/stores through a 4 KiB alias and a 4 MiB superpage
 * alias, page faults (load 13, store 15, fetch 12; delegated to S, so
 * scause/stval/sepc) on invalid, read-only, execute-only (MXR), no-execute,
 * write-only (reserved) and level-0 pointer PTEs and on a misaligned
 * superpage, U pages from S-mode with and without SUM, hardware A/D
 * updates, sfence.vma after changing a PTE. From U-mode: U pages work,
 * S pages fault (load and fetch). From M-mode: MPRV loads through the
 * page tables.
 */
#include "isa.h"
#include "sv32.h"

/* absolute address of a symbol (works from any virtual alias of the code) */
#define LA_ABS(reg, sym) lui reg, %hi(sym); addi reg, reg, %lo(sym)

#define EXPECT_TRAPS(n) LOG_COUNT(t6); CHECKI(t6, n)

ISA_BEGIN "isa-sv32"

    la      t0, sv32_satp
    lw      t0, 0(t0)
    csrw    satp, t0
    sfence.vma
    li      t0, MSTATUS_SUM | MSTATUS_MXR
    csrc    mstatus, t0
    MRET_TO PRV_S, .Ls_start
.Ls_start:
    /* ---- S-mode: 4 KiB alias ---- */
    LOG_RESET
    la      s1, sv32_p0             /* identity (superpage) address */
    li      s2, VA_ALIAS
    li      t0, 0x11111111
    sw      t0, 0(s1)
    lw      a0, 0(s2)
    CHECKI(a0, 0x11111111)
    li      t0, 0x22222222
    sw      t0, 4(s2)
    lw      a0, 4(s1)
    CHECKI(a0, 0x22222222)
    lbu     a0, 7(s2)
    CHECKI(a0, 0x22)
    EXPECT_TRAPS(0)
    OK "4 KiB alias"

    /* ---- S-mode: superpage alias of the program's 4 MiB ---- */
    la      s1, sv32_p0
    li      t0, VA_SUPER_ALIAS - 0x80000000
    add     s2, s1, t0
    lw      a0, 0(s2)
    CHECKI(a0, 0x11111111)
    li      t0, 0x33333333
    sw      t0, 8(s2)
    lw      a0, 8(s1)
    CHECKI(a0, 0x33333333)
    la      s1, isa_program_name    /* the first bytes of "isa-sv32" */
    li      t0, VA_SUPER_ALIAS - 0x80000000
    add     s2, s1, t0
    lbu     a0, 0(s2)
    CHECKI(a0, 'i')
    lbu     a0, 4(s2)
    CHECKI(a0, 's')
    EXPECT_TRAPS(0)
    OK "superpage alias"

    /* ---- S-mode: page faults ---- */
    LOG_RESET
    li      s1, VA_INVALID
    li      a0, 0x77
.Lpf1:
    lw      a0, 0(s1)               /* 0: load, invalid */
    CHECKI(a0, 0x77)
.Lpf2:
    sw      a0, 4(s1)               /* 1: store, invalid */
    addi    t1, s1, 8
.Lpf3:
    jalr    ra, 0(t1)               /* 2: fetch, invalid */
    li      s1, VA_RO
    lw      a0, 4(s1)               /* fine */
    CHECKI(a0, P1_WORD1)
.Lpf4:
    sw      a0, 4(s1)               /* 3: store, read-only */
    li      s1, VA_NOEXEC
.Lpf5:
    jalr    ra, 0(s1)               /* 4: fetch, no X */
    li      s1, VA_WONLY
.Lpf6:
    lw      a0, 0(s1)               /* 5: load, W without R is reserved */
.Lpf7:
    sw      a0, 0(s1)               /* 6: store, same */
    li      s1, VA_L0PTR
.Lpf8:
    lw      a0, 0(s1)               /* 7: load, pointer at the last level */
    li      s1, VA_BAD_SUPER
.Lpf9:
    lw      a0, 16(s1)              /* 8: load, misaligned superpage */
.Lpf10:
    sw      a0, 16(s1)              /* 9: store, misaligned superpage */
    EXPECT_TRAPS(10)
    CHECK_LOG(0, CAUSE_LOAD_PAGE, INFO_S(PRV_S))
    CHECK_LOG_EPC(0, .Lpf1)
    CHECK_LOG_TVAL(0, VA_INVALID)
    CHECK_LOG(1, CAUSE_STORE_PAGE, INFO_S(PRV_S))
    CHECK_LOG_EPC(1, .Lpf2)
    CHECK_LOG_TVAL(1, VA_INVALID + 4)
    CHECK_LOG(2, CAUSE_FETCH_PAGE, INFO_S(PRV_S))
    LOG_GET(t6, 2, LOG_EPC)
    CHECKI(t6, VA_INVALID + 8)
    CHECK_LOG_TVAL(2, VA_INVALID + 8)
    CHECK_LOG(3, CAUSE_STORE_PAGE, INFO_S(PRV_S))
    CHECK_LOG_EPC(3, .Lpf4)
    CHECK_LOG_TVAL(3, VA_RO + 4)
    CHECK_LOG(4, CAUSE_FETCH_PAGE, INFO_S(PRV_S))
    CHECK_LOG_TVAL(4, VA_NOEXEC)
    CHECK_LOG(5, CAUSE_LOAD_PAGE, INFO_S(PRV_S))
    CHECK_LOG_TVAL(5, VA_WONLY)
    CHECK_LOG(6, CAUSE_STORE_PAGE, INFO_S(PRV_S))
    CHECK_LOG_TVAL(6, VA_WONLY)
    CHECK_LOG(7, CAUSE_LOAD_PAGE, INFO_S(PRV_S))
    CHECK_LOG_TVAL(7, VA_L0PTR)
    CHECK_LOG(8, CAUSE_LOAD_PAGE, INFO_S(PRV_S))
    CHECK_LOG_EPC(8, .Lpf9)
    CHECK_LOG_TVAL(8, VA_BAD_SUPER + 16)
    CHECK_LOG(9, CAUSE_STORE_PAGE, INFO_S(PRV_S))
    CHECK_LOG_TVAL(9, VA_BAD_SUPER + 16)
    csrr    a0, scause
    CHECKI(a0, CAUSE_STORE_PAGE)
    csrr    a0, stval
    CHECKI(a0, VA_BAD_SUPER + 16)
    csrr    a0, sepc
    la      a1, .Lpf10 + 4          /* the handler stepped over it */
    CHECK(a0, a1)
    OK "page faults"

    /* ---- S-mode: execute-only page and MXR ---- */
    LOG_RESET
    li      s1, VA_XONLY
    li      a0, 0
    jalr    ra, 0(s1)               /* fetch: "ret" - fine */
    EXPECT_TRAPS(0)
.Lmxr1:
    lw      a0, 0(s1)               /* load without MXR: fault */
    EXPECT_TRAPS(1)
    CHECK_LOG(0, CAUSE_LOAD_PAGE, INFO_S(PRV_S))
    CHECK_LOG_EPC(0, .Lmxr1)
    CHECK_LOG_TVAL(0, VA_XONLY)
    li      t0, MSTATUS_MXR
    csrs    sstatus, t0
    lw      a0, 4(s1)               /* with MXR: readable */
    csrc    sstatus, t0
    EXPECT_TRAPS(1)
    CHECKI(a0, P1_WORD1)
    OK "execute-only and MXR"

    /* ---- S-mode: U pages, SUM ---- */
    LOG_RESET
    li      s1, VA_UPAGE
.Lsum1:
    lw      a0, 0(s1)               /* SUM = 0: fault */
.Lsum2:
    sw      a0, 8(s1)               /* SUM = 0: fault */
    EXPECT_TRAPS(2)
    CHECK_LOG(0, CAUSE_LOAD_PAGE, INFO_S(PRV_S))
    CHECK_LOG_TVAL(0, VA_UPAGE)
    CHECK_LOG(1, CAUSE_STORE_PAGE, INFO_S(PRV_S))
    CHECK_LOG_TVAL(1, VA_UPAGE + 8)
    li      t0, MSTATUS_SUM
    csrs    sstatus, t0
    lw      a0, 0(s1)               /* SUM = 1: fine */
    CHECKI(a0, P2_WORD0)
    li      t0, 0x12121212
    sw      t0, 12(s1)
    lw      a0, 12(s1)
    CHECKI(a0, 0x12121212)
    EXPECT_TRAPS(2)
    li      t1, VA_UCODE
.Lsum3:
    jalr    ra, 0(t1)               /* S never executes U pages, SUM or not */
    li      t0, MSTATUS_SUM
    csrc    sstatus, t0
    EXPECT_TRAPS(3)
    CHECK_LOG(2, CAUSE_FETCH_PAGE, INFO_S(PRV_S))
    CHECK_LOG_TVAL(2, VA_UCODE)
    OK "U pages and SUM"

    /* ---- S-mode: accessed and dirty bits set by the hardware ---- */
    LOG_RESET
    la      s1, sv32_l2
    lw      a0, IDX_AD * 4(s1)
    CHECK_MASK(a0, PTE_A | PTE_D, 0)
    li      s2, VA_AD
    lw      a1, 0(s2)               /* a load sets A */
    CHECKI(a1, P3_WORD0)
    lw      a0, IDX_AD * 4(s1)
    CHECK_MASK(a0, PTE_A | PTE_D, PTE_A)
    li      t0, 0x3333aaaa
    sw      t0, 4(s2)               /* a store sets D */
    lw      a0, IDX_AD * 4(s1)
    CHECK_MASK(a0, PTE_A | PTE_D, PTE_A | PTE_D)
    lw      a1, 4(s2)
    CHECKI(a1, 0x3333aaaa)
    EXPECT_TRAPS(0)
    OK "A/D bits"

    /* ---- S-mode: sfence.vma after changing a PTE ---- */
    la      s1, sv32_l2
    li      s2, VA_SWITCH
    lw      a0, 0(s2)
    CHECKI(a0, P4_WORD0)
    la      t0, sv32_pte_p5
    lw      t0, 0(t0)
    sw      t0, IDX_SWITCH * 4(s1)
    sfence.vma                      /* everything */
    lw      a0, 0(s2)
    CHECKI(a0, P5_WORD0)
    la      t0, sv32_pte_p4
    lw      t0, 0(t0)
    sw      t0, IDX_SWITCH * 4(s1)
    sfence.vma s2, zero             /* just this address */
    lw      a0, 0(s2)
    CHECKI(a0, P4_WORD0)
    /* invalidate the PTE: the next access faults */
    LOG_RESET
    sw      zero, IDX_SWITCH * 4(s1)
    sfence.vma s2, zero
    li      a0, 0x66
    lw      a0, 0(s2)
    CHECKI(a0, 0x66)
    EXPECT_TRAPS(1)
    CHECK_LOG(0, CAUSE_LOAD_PAGE, INFO_S(PRV_S))
    la      t0, sv32_pte_p4
    lw      t0, 0(t0)
    sw      t0, IDX_SWITCH * 4(s1)
    sfence.vma
    OK "sfence.vma"

    /* ---- U-mode (entered with sret from S) ---- */
    LOG_RESET
    li      t0, MSTATUS_SPP
    csrc    sstatus, t0
    li      t0, VA_UCODE
    csrw    sepc, t0
    sret
sv32_user_back:                     /* M-mode, from the user code's ecall */
    EXPECT_TRAPS(3)
    CHECK_LOG(0, CAUSE_LOAD_PAGE, INFO_S(PRV_U))
    LOG_GET(t6, 0, LOG_EPC)
    LA_ABS(t5, .Lu_load)            /* its address in the VA_UCODE page */
    LA_ABS(t4, sv32_user_code)
    sub     t5, t5, t4
    li      t4, VA_UCODE
    add     t5, t5, t4
    CHECK(t6, t5)
    CHECK_LOG_TVAL(0, VA_ALIAS)
    CHECK_LOG(1, CAUSE_FETCH_PAGE, INFO_S(PRV_U))
    LOG_GET(t6, 1, LOG_TVAL)
    LA_ABS(t5, isa_body)
    CHECK(t6, t5)
    CHECK_LOG(2, CAUSE_ECALL_U, INFO_M(PRV_U))
    /* what the user code stored in its page */
    la      t0, sv32_p2_pa
    lw      s1, 0(t0)
    lw      a0, 4(s1)
    CHECKI(a0, P2_WORD0)
    lw      a0, 8(s1)
    CHECKI(a0, 0x77)
    lw      a0, 16(s1)
    CHECKI(a0, 0x99)
    OK "U-mode"

    /* ---- M-mode with MPRV: data accesses translated as S / U ---- */
    LOG_RESET
    li      t0, MSTATUS_MPP
    csrc    mstatus, t0
    li      t0, PRV_S << 11
    csrs    mstatus, t0
    li      s2, VA_ALIAS
    li      t1, MSTATUS_MPRV
    csrs    mstatus, t1
    lw      a0, 0(s2)               /* as S: through the alias */
    csrc    mstatus, t1
    CHECKI(a0, 0x11111111)
    li      t0, MSTATUS_MPP
    csrc    mstatus, t0             /* MPP = U */
    li      a0, 0x88
    csrs    mstatus, t1
.Lmprv_fault:
    lw      a0, 0(s2)               /* as U: not a U page */
    csrc    mstatus, t1             /* (the trap left MPP = M) */
    CHECKI(a0, 0x88)
    EXPECT_TRAPS(1)
    CHECK_LOG(0, CAUSE_LOAD_PAGE, INFO_M(PRV_M))   /* never delegated from M */
    CHECK_LOG_EPC(0, .Lmprv_fault)
    CHECK_LOG_TVAL(0, VA_ALIAS)
    li      t0, MSTATUS_MPP
    csrs    mstatus, t0
    csrw    satp, zero
    sfence.vma
    OK "MPRV"

ISA_END

/*
 * User code: its own page, run at VA_UCODE (U, R, X). Only pc-relative
 * branches and absolute addresses are used here.
 */
    .section .page_text, "ax", @progbits
    .balign 4096
sv32_user_code:
    li      s1, VA_UPAGE
    lw      a2, 0(s1)               /* U page: fine */
    sw      a2, 4(s1)
    li      s2, VA_ALIAS
    li      a4, 0x77
.Lu_load:
    lw      a4, 0(s2)               /* S page: load page fault */
    sw      a4, 8(s1)               /* still 0x77 */
    LA_ABS(t1, isa_body)
    jalr    ra, 0(t1)               /* S page: fetch page fault, back at ra */
    li      t0, 0x99
    sw      t0, 16(s1)
    LA_ABS(a0, sv32_user_back)
    li      a7, ISA_MAGIC_TO_M
    ecall
1:  j       1b
