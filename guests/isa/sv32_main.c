/*
 * isa-sv32: set-up of the page tables (the tests are in sv32.S).
 *
 * Level-1 table:
 *   0x00000000, 0x10000000  identity superpages (test device, UART), RW
 *   0x80000000, 0x80400000  identity superpages (this program), RWX
 *   0xc0000000              superpage alias of 0x80000000, RW
 *   0x40000000              -> level-0 table (see sv32.h)
 *   0x40400000              misaligned superpage (ppn[0] = 1)
 * All PTEs except the A/D test page come with A (and D) already set, so
 * that only that page depends on hardware A/D updates.
 */
#include "isa.h"
#include "sv32.h"

#define PAGE 4096
static uint32_t l1[1024] __attribute__((aligned(PAGE)));
uint32_t sv32_l2[1024] __attribute__((aligned(PAGE)));
uint32_t sv32_p0[1024] __attribute__((aligned(PAGE)));
static uint32_t p1[1024] __attribute__((aligned(PAGE)));
static uint32_t p2[1024] __attribute__((aligned(PAGE)));
static uint32_t p3[1024] __attribute__((aligned(PAGE)));
static uint32_t p4[1024] __attribute__((aligned(PAGE)));
static uint32_t p5[1024] __attribute__((aligned(PAGE)));
static uint32_t l0ptr_target[1024] __attribute__((aligned(PAGE)));

uint32_t sv32_satp, sv32_pte_p4, sv32_pte_p5;
uintptr_t sv32_p2_pa;
extern char __page_text_start[];
uint32_t isa_body(void);
extern const char isa_program_name[];

static uint32_t pte(uintptr_t pa, uint32_t flags)
{
    return (uint32_t)((pa >> 12) << 10) | flags | PTE_V;
}

static void map_super(uintptr_t va, uintptr_t pa, uint32_t flags)
{
    l1[va >> 22] = pte(pa, flags);
}

static void map_page(uintptr_t va, void *pa, uint32_t flags)
{
    sv32_l2[(va >> 12) & 1023] = pte((uintptr_t)pa, flags);
}

int main(uint32_t hartid, uintptr_t fdt)
{
    (void)hartid;
    (void)fdt;
    isa_begin();

    const uint32_t AD = PTE_A | PTE_D;
    map_super(0x00000000, 0x00000000, PTE_R | PTE_W | AD);
    map_super(0x10000000, 0x10000000, PTE_R | PTE_W | AD);
    map_super(0x80000000, 0x80000000, PTE_R | PTE_W | PTE_X | AD);
    map_super(0x80400000, 0x80400000, PTE_R | PTE_W | PTE_X | AD);
    map_super(VA_SUPER_ALIAS, 0x80000000, PTE_R | PTE_W | AD);
    l1[VA_L2 >> 22] = pte((uintptr_t)sv32_l2, 0);
    l1[VA_BAD_SUPER >> 22] = pte(0x80000000 + PAGE, PTE_R | PTE_W | AD);

    map_page(VA_ALIAS, sv32_p0, PTE_R | PTE_W | AD);
    map_page(VA_RO, p1, PTE_R | PTE_A);
    map_page(VA_UPAGE, p2, PTE_U | PTE_R | PTE_W | AD);
    map_page(VA_XONLY, p1, PTE_X | PTE_A);
    map_page(VA_AD, p3, PTE_R | PTE_W);
    map_page(VA_SWITCH, p4, PTE_R | PTE_A);
    map_page(VA_UCODE, __page_text_start, PTE_U | PTE_R | PTE_X | PTE_A);
    map_page(VA_WONLY, sv32_p0, PTE_W | AD);
    map_page(VA_NOEXEC, p1, PTE_R | PTE_W | AD);
    map_page(VA_L0PTR, l0ptr_target, 0); /* V only: a pointer at level 0 */

    p1[0] = P1_WORD0;
    p1[1] = P1_WORD1;
    p2[0] = P2_WORD0;
    p3[0] = P3_WORD0;
    p4[0] = P4_WORD0;
    p5[0] = P5_WORD0;
    sv32_pte_p4 = pte((uintptr_t)p4, PTE_R | PTE_A);
    sv32_pte_p5 = pte((uintptr_t)p5, PTE_R | PTE_A);
    sv32_p2_pa = (uintptr_t)p2;
    sv32_satp = SATP_MODE_SV32 | ((uintptr_t)l1 >> 12);

    /* page faults go to S-mode; everything else stays in M */
    hf_csr_write(medeleg, (1u << CAUSE_FETCH_PAGE) | (1u << CAUSE_LOAD_PAGE) |
                          (1u << CAUSE_STORE_PAGE));
    isa_pass(isa_body());
}
