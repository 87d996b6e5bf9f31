/*
 * The PV console ring, as Mini-OS's console/xencons_ring.c drives it.
 *
 * The toolstack gives a domU one page (HVM_PARAM_CONSOLE_PFN) shared with
 * xenconsoled in dom0, and an event channel to it (HVM_PARAM_CONSOLE_EVTCHN).
 * The guest produces into `out` and notifies; xenconsoled consumes and
 * notifies back (and produces typed input into `in`).  Indexes are
 * free-running; only the guest writes out_prod and in_cons.
 */
#include "guest.h"

static volatile struct xencons_interface *intf;
static evtchn_port_t cons_port;
static uint32_t cons_pfn;
static uint32_t cons_upcalls;

int hvm_param_get(uint32_t index, uint64_t *value)
{
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = index };
    int rc = HYPERVISOR_hvm_op(HVMOP_get_param, &p);

    if (rc == 0)
        *value = p.value;
    return rc;
}

static void on_console_event(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;
    cons_upcalls++;
}

int xencons_init(bool bind)
{
    uint64_t pfn, port;
    int rc;

    if ((rc = hvm_param_get(HVM_PARAM_CONSOLE_PFN, &pfn)) < 0 ||
        (rc = hvm_param_get(HVM_PARAM_CONSOLE_EVTCHN, &port)) < 0)
        return rc;
    if (pfn == 0 || pfn >= (1ULL << (32 - XEN_PAGE_SHIFT)) || port == 0)
        return -XEN_ENODEV;
    /* After RAM in the 4.4 layout: map it like RAM. */
    mmu_identity_map((uint32_t)pfn << XEN_PAGE_SHIFT, XEN_PAGE_SIZE, MMU_NORMAL);
    intf = (volatile struct xencons_interface *)((uintptr_t)pfn << XEN_PAGE_SHIFT);
    cons_pfn = (uint32_t)pfn;
    cons_port = (evtchn_port_t)port;
    if (!bind)
        return 0;
    rc = evtchn_bind_vcpu(cons_port, 0);
    return rc < 0 ? rc : evtchn_bind(cons_port, on_console_event, NULL);
}

int xencons_notify(void)
{
    return evtchn_send(cons_port);
}

int xencons_write(const char *buf, size_t len)
{
    uint32_t cons, prod;
    size_t sent = 0;

    if (!intf)
        return -XEN_ENODEV;
    cons = intf->out_cons;
    prod = intf->out_prod;
    dmb();
    while (sent < len && prod - cons < sizeof(intf->out))
        intf->out[MASK_XENCONS_IDX(prod++, intf->out)] = buf[sent++];
    dmb();                      /* the bytes before the index that publishes them */
    intf->out_prod = prod;
    xencons_notify();
    return (int)sent;
}

bool xencons_drained(void)
{
    return intf && intf->out_cons == intf->out_prod;
}

evtchn_port_t xencons_port(void) { return cons_port; }
uint32_t xencons_pfn(void) { return cons_pfn; }
uint32_t xencons_upcalls(void) { return cons_upcalls; }
