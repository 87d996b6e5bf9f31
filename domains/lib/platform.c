/*
 * The start most guests share: read the bootargs while the device tree is still reachable with
 * the MMU off, identity-map the first 64 MiB of RAM, map the vGIC, turn the MMU on and bring up
 * this vCPU's GIC interface.
 */
#include "guest.h"

void platform_init(void)
{
    (void)bootargs();
    mmu_identity_map(GUEST_RAM_BASE, 64U << 20, MMU_NORMAL);
    gic_map();
    mmu_enable();
    gic_init();
}
