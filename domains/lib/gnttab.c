/*
 * Grant tables, version 1, from the granting and the mapping side.
 *
 * An ARM guest has no machine frames to ask for: it places its grant
 * table frames in its own physical map with XENMEM_add_to_physmap
 * (XENMAPSPACE_grant_table), at the region the /hypervisor node names
 * (Xen 4.4: GUEST_GNTTAB_BASE), and then writes grant_entry_v1 records
 * there directly.  The hypervisor reads an entry when another domain maps
 * or copies through it, and sets GTF_reading / GTF_writing in it while a
 * mapping exists, so the granter must update the flags word atomically.
 */
#include "guest.h"

#define GNTTAB_FRAMES           1

static volatile struct grant_entry_v1 *table;
static unsigned int nr_entries;

uint32_t virt_to_gfn(const void *p)
{
    uint32_t va = (uint32_t)(uintptr_t)p, pa = va;

    if (mmu_enabled() && !mmu_translate(va, &pa))
        test_failure("gnttab: %p is not mapped", p);
    return pa >> XEN_PAGE_SHIFT;
}

int gnttab_init(void)
{
    struct gnttab_query_size q = { .dom = DOMID_SELF };
    int rc = HYPERVISOR_grant_table_op(GNTTABOP_query_size, &q, 1);

    if (rc < 0)
        return rc;
    if (q.status != GNTST_okay)
        return -XEN_EINVAL;
    if (q.max_nr_frames < GNTTAB_FRAMES)
        return -XEN_ENOSPC;
    for (unsigned int i = 0; i < GNTTAB_FRAMES; i++) {
        struct xen_add_to_physmap xatp = {
            .domid = DOMID_SELF,
            .space = XENMAPSPACE_grant_table,
            .idx = i,
            .gpfn = (GUEST_GNTTAB_BASE >> XEN_PAGE_SHIFT) + i,
        };

        rc = HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp);
        if (rc < 0)
            return rc;
    }
    /* Normal memory, as Linux maps its grant frames: entries are plain
     * loads and stores plus exclusive accesses on the flags. */
    mmu_identity_map(GUEST_GNTTAB_BASE, GNTTAB_FRAMES * XEN_PAGE_SIZE, MMU_NORMAL);
    table = (volatile struct grant_entry_v1 *)GUEST_GNTTAB_BASE;
    nr_entries = GNTTAB_FRAMES * XEN_PAGE_SIZE / sizeof(struct grant_entry_v1);
    return 0;
}

unsigned int gnttab_nr_entries(void)
{
    return nr_entries;
}

/* The two entries the domain builder fills (console, xenstore ring) stay
 * its own; the other reserved refs are free for protocols that fix a ref
 * number in advance, as the ERIKA port does with ref 2. */
static bool ref_ok(grant_ref_t ref)
{
    return table && ref < nr_entries && ref != GNTTAB_RESERVED_CONSOLE &&
           ref != GNTTAB_RESERVED_XENSTORE;
}

int gnttab_grant_access(grant_ref_t ref, domid_t domid, uint32_t gfn, bool readonly)
{
    if (!ref_ok(ref))
        return -XEN_EINVAL;
    if (table[ref].flags & GTF_type_mask)
        return -XEN_EBUSY;              /* still granted: end_access first */
    table[ref].frame = gfn;
    table[ref].domid = domid;
    dmb();                              /* frame and domid before the flags make them valid */
    table[ref].flags = (uint16_t)(GTF_permit_access | (readonly ? GTF_readonly : 0));
    dsb();
    return 0;
}

int gnttab_end_access(grant_ref_t ref)
{
    uint16_t flags;

    if (!ref_ok(ref))
        return -XEN_EINVAL;
    flags = table[ref].flags;
    do {
        /* A mapping in use: the hypervisor would set the flag again behind
         * a plain store, so only an exchange that saw it clear counts. */
        if (flags & (GTF_reading | GTF_writing))
            return -XEN_EBUSY;
    } while (!__atomic_compare_exchange_n((uint16_t *)&table[ref].flags, &flags, 0, false,
                                          __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    return 0;
}

uint16_t gnttab_flags(grant_ref_t ref)
{
    return table && ref < nr_entries ? table[ref].flags : 0;
}

int gnttab_map(domid_t domid, grant_ref_t ref, uint32_t gpa, bool readonly,
               grant_handle_t *handle)
{
    struct gnttab_map_grant_ref op = {
        .host_addr = gpa,               /* a guest-physical address on ARM */
        .flags = GNTMAP_host_map | (readonly ? GNTMAP_readonly : 0),
        .ref = ref,
        .dom = domid,
    };
    int rc = HYPERVISOR_grant_table_op(GNTTABOP_map_grant_ref, &op, 1);

    if (rc < 0)
        return rc;
    if (op.status == GNTST_okay)
        *handle = op.handle;
    return op.status;
}

int gnttab_unmap(uint32_t gpa, grant_handle_t handle)
{
    struct gnttab_unmap_grant_ref op = { .host_addr = gpa, .handle = handle };
    int rc = HYPERVISOR_grant_table_op(GNTTABOP_unmap_grant_ref, &op, 1);

    return rc < 0 ? rc : op.status;
}
