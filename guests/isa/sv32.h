/*
 * sv32.h - the virtual address layout used by isa-sv32 (shared by the C
 * set-up code and the assembly tests).
 */
#ifndef SV32_H
#define SV32_H

/* PTE bits */
#define PTE_V 0x001
#define PTE_R 0x002
#define PTE_W 0x004
#define PTE_X 0x008
#define PTE_U 0x010
#define PTE_G 0x020
#define PTE_A 0x040
#define PTE_D 0x080

/* 4 KiB pages of one level-0 table at 0x40000000 (index in comments) */
#define VA_L2      0x40000000
#define VA_ALIAS   (VA_L2 + 0x0000) /*  0: P0, RW            */
#define VA_RO      (VA_L2 + 0x1000) /*  1: P1, R             */
#define VA_INVALID (VA_L2 + 0x2000) /*  2: V = 0             */
#define VA_UPAGE   (VA_L2 + 0x3000) /*  3: P2, U RW          */
#define VA_XONLY   (VA_L2 + 0x4000) /*  4: P1, X             */
#define VA_AD      (VA_L2 + 0x5000) /*  5: P3, RW, A = D = 0 */
#define VA_SWITCH  (VA_L2 + 0x6000) /*  6: P4, R (then P5)   */
#define VA_UCODE   (VA_L2 + 0x7000) /*  7: user code, U RX   */
#define VA_WONLY   (VA_L2 + 0x8000) /*  8: P0, W only (reserved) */
#define VA_NOEXEC  (VA_L2 + 0x9000) /*  9: P1, RW (no X)     */
#define VA_L0PTR   (VA_L2 + 0xa000) /* 10: pointer PTE at level 0 */
#define IDX_AD     5
#define IDX_SWITCH 6

/* 4 MiB superpages */
#define VA_SUPER_ALIAS 0xc0000000   /* -> PA 0x80000000, RW */
#define VA_BAD_SUPER   0x40400000   /* leaf with ppn[0] != 0 */

/* contents of the data pages */
#define P1_WORD0 0x00008067         /* "ret": P1 is also executed */
#define P1_WORD1 0x11110001
#define P2_WORD0 0x22220002
#define P3_WORD0 0x33330003
#define P4_WORD0 0x44440004
#define P5_WORD0 0x55550005

#endif
