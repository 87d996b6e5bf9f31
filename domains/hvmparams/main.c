/*
 * hvmparams: how a small port finds what the toolstack set up, without
 * compiled-in addresses:
 *
 *   - its store and console pages and ports from the HVM params
 *     (HVMOP_get_param: STORE_PFN, STORE_EVTCHN, CONSOLE_PFN, CONSOLE_EVTCHN);
 *   - where to map its grant table from the device tree: region 0 of the
 *     /hypervisor node's reg, mapped with XENMEM_add_to_physmap;
 *
 * then checks that the two reserved grant entries the domain builder seeded
 * (GNTTAB_RESERVED_CONSOLE and _XENSTORE) grant exactly those pages to dom0,
 * and says hello through the console ring it found.
 */
#include "guest.h"

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void check_entry(volatile struct grant_entry_v1 *e, grant_ref_t ref, uint64_t pfn,
                        const char *what)
{
    printk("hvmparams: grant ref %u: flags 0x%x domid %u frame 0x%x (%s page 0x%llx)\n",
           ref, e->flags, e->domid, e->frame, what, (unsigned long long)pfn);
    if (!(e->flags & GTF_permit_access) || e->domid != 0 || e->frame != pfn)
        test_failure("grant ref %u does not grant the %s page to dom0", ref, what);
}

int main(void)
{
    uint64_t store_pfn, store_port, cons_pfn, cons_port, base, size;
    uint8_t reg[16];
    char line[96];
    int n;

    platform_init();
    test_check("evtchn_init", evtchn_init());
    test_check("STORE_PFN", hvm_param_get(HVM_PARAM_STORE_PFN, &store_pfn));
    test_check("STORE_EVTCHN", hvm_param_get(HVM_PARAM_STORE_EVTCHN, &store_port));
    test_check("CONSOLE_PFN", hvm_param_get(HVM_PARAM_CONSOLE_PFN, &cons_pfn));
    test_check("CONSOLE_EVTCHN", hvm_param_get(HVM_PARAM_CONSOLE_EVTCHN, &cons_port));
    printk("hvmparams: store pfn 0x%llx port %u, console pfn 0x%llx port %u\n",
           (unsigned long long)store_pfn, (unsigned int)store_port,
           (unsigned long long)cons_pfn, (unsigned int)cons_port);

    /* /hypervisor reg: #address-cells = #size-cells = 2 at the root. */
    if (fdt_node_prop("hypervisor", "reg", reg, sizeof(reg)) < (int)sizeof(reg))
        test_failure("no /hypervisor reg in the device tree");
    base = be64(reg);
    size = be64(reg + 8);
    printk("hvmparams: /hypervisor region 0 at 0x%llx, 0x%llx bytes\n",
           (unsigned long long)base, (unsigned long long)size);
    if (base >= (1ULL << 32) || size < XEN_PAGE_SIZE)
        test_failure("the grant-table region is not usable by a 32-bit guest");

    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF, .space = XENMAPSPACE_grant_table, .idx = 0,
        .gpfn = (xen_pfn_t)(base >> XEN_PAGE_SHIFT),
    };
    test_check("add_to_physmap(grant_table)", HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp));
    mmu_identity_map((uint32_t)base, XEN_PAGE_SIZE, MMU_NORMAL);
    volatile struct grant_entry_v1 *table = (volatile struct grant_entry_v1 *)(uintptr_t)base;
    check_entry(&table[GNTTAB_RESERVED_CONSOLE], GNTTAB_RESERVED_CONSOLE, cons_pfn, "console");
    check_entry(&table[GNTTAB_RESERVED_XENSTORE], GNTTAB_RESERVED_XENSTORE, store_pfn, "store");

    test_check("xencons_init", xencons_init(false));
    if (xencons_pfn() != cons_pfn || xencons_port() != cons_port)
        test_failure("the console ring is not where the params say");
    n = snprintf(line, sizeof(line), "hvmparams: hello through the ring at pfn 0x%llx\n",
                 (unsigned long long)cons_pfn);
    if (xencons_write(line, (size_t)n) != n)
        test_failure("console ring full");
    test_success();
}
