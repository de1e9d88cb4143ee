/*
 * hello - the smallest guest: greets, shows the boot arguments, powers off.
 */
#include "hf.h"

int main(uint32_t hartid, uintptr_t fdt)
{
    (void)fdt;
    hf_printf("Hello from a Hyperfleet guest!\n");
    hf_printf("hart %u, bootargs: \"%s\"\n", hartid, hf_bootargs());
    return 0;
}
