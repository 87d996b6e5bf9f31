/*
 * Event channels, 2-level ABI, as an ARM guest uses them.
 *
 * Xen keeps the per-port pending and mask bitmaps in shared_info, which an
 * ARM guest places in its own RAM with XENMEM_add_to_physmap, and the
 * per-vCPU selector word and upcall flag in a vcpu_info each vCPU
 * registers.  An event on an unmasked port sets its pending bit, the
 * selector bit of its 64-bit word in the notified vCPU's vcpu_info, and on
 * the 0->1 edge of evtchn_upcall_pending raises PPI 31 on that vCPU.
 *
 * The upcall handler scans like Linux's evtchn_2l_handle_events: clear the
 * upcall flag, swap the selector to zero, and for every selected word take
 * the bits that are pending, unmasked and bound to this vCPU; each port's
 * pending bit is cleared before its handler runs, so an event raised while
 * the handler runs is seen again.  Repeat while the flag came back.
 *
 * The bitmaps are 64-bit words in little-endian memory, so a port is also
 * bit p % 32 of the 32-bit word p / 32: the guest's atomics (LDREX/STREX)
 * work on 32-bit words, while Xen sets bits in the same memory.
 */
#include "guest.h"

#define WORDS32                 (EVTCHN_NR_PORTS / 32)

_Static_assert(EVTCHN_NR_PORTS % 64 == 0 && EVTCHN_NR_PORTS <= EVTCHN_2L_NR_CHANNELS,
               "EVTCHN_NR_PORTS: whole 64-bit words, at most the 2-level limit");

/* Xen's page lives here once mapped; until then this is plain RAM. */
static uint8_t shared_page[XEN_PAGE_SIZE] __attribute__((aligned(XEN_PAGE_SIZE)));

/* One vcpu_info per vCPU, each on a 64-byte boundary so none crosses a
 * page (VCPUOP_register_vcpu_info refuses that). */
struct vcpu_info_slot {
    struct vcpu_info info;
} __attribute__((aligned(64)));
static struct vcpu_info_slot vcpu_infos[NR_CPUS];

struct port_desc {
    evtchn_handler_t fn;
    void *arg;
};
static struct port_desc ports[EVTCHN_NR_PORTS];
/* Bit p set in cpu_ports[c]: port p notifies vCPU c (Xen's notify_vcpu_id). */
static uint32_t cpu_ports[NR_CPUS][WORDS32];
static uint32_t upcalls[NR_CPUS];
static uint32_t spurious;
static bool shared_mapped;

static struct shared_info *shared(void)
{
    return (struct shared_info *)shared_page;
}

static volatile uint32_t *pending_words(void)
{
    return (volatile uint32_t *)shared()->evtchn_pending;
}

static volatile uint32_t *mask_words(void)
{
    return (volatile uint32_t *)shared()->evtchn_mask;
}

static unsigned int this_cpu(void)
{
    unsigned int cpu = smp_processor_id();

    return cpu < NR_CPUS ? cpu : 0;
}

/* The guest frame behind a pointer: hypercalls that take a frame number
 * want the physical address, which differs from the VA under a remap. */
static uint32_t virt_to_phys(const void *p)
{
    uint32_t va = (uint32_t)(uintptr_t)p, pa = va;

    if (mmu_enabled() && !mmu_translate(va, &pa))
        test_failure("evtchn: %p is not mapped", p);
    return pa;
}

struct shared_info *evtchn_shared_info(void)
{
    return shared_mapped ? shared() : NULL;
}

struct vcpu_info *evtchn_vcpu_info(unsigned int cpu)
{
    return cpu < NR_CPUS ? &vcpu_infos[cpu].info : NULL;
}

/* ---- bit operations on the shared bitmaps -------------------------------- */

static void set_bit32(volatile uint32_t *words, unsigned int nr)
{
    __atomic_fetch_or(&words[nr / 32], 1U << (nr % 32), __ATOMIC_SEQ_CST);
}

static bool test_and_clear_bit32(volatile uint32_t *words, unsigned int nr)
{
    uint32_t bit = 1U << (nr % 32);

    return __atomic_fetch_and(&words[nr / 32], ~bit, __ATOMIC_SEQ_CST) & bit;
}

static bool test_bit32(const volatile uint32_t *words, unsigned int nr)
{
    return (words[nr / 32] >> (nr % 32)) & 1;
}

void evtchn_mask(evtchn_port_t port)
{
    if (port < EVTCHN_2L_NR_CHANNELS)
        set_bit32(mask_words(), port);
}

void evtchn_clear(evtchn_port_t port)
{
    if (port < EVTCHN_2L_NR_CHANNELS)
        test_and_clear_bit32(pending_words(), port);
}

bool evtchn_is_pending(evtchn_port_t port)
{
    return port < EVTCHN_2L_NR_CHANNELS && test_bit32(pending_words(), port);
}

/* ---- per-port bookkeeping ------------------------------------------------- */

static void port_set_cpu(evtchn_port_t port, unsigned int cpu)
{
    uint32_t flags;

    if (port >= EVTCHN_NR_PORTS || cpu >= NR_CPUS)
        return;
    flags = local_irq_save();
    for (unsigned int c = 0; c < NR_CPUS; c++)
        __atomic_fetch_and(&cpu_ports[c][port / 32], ~(1U << (port % 32)), __ATOMIC_SEQ_CST);
    __atomic_fetch_or(&cpu_ports[cpu][port / 32], 1U << (port % 32), __ATOMIC_SEQ_CST);
    local_irq_restore(flags);
}

/* A port Xen just gave us: masked (a closed port was masked on close, and
 * evtchn_init masked every port), no handler yet, notifying `cpu`. */
static int port_new(int rc, unsigned int cpu)
{
    if (rc <= 0)
        return rc;
    if ((unsigned int)rc >= EVTCHN_NR_PORTS) {
        /* Beyond what the runtime tracks: give it back rather than leave an
         * event source nobody will ever see. */
        evtchn_close((evtchn_port_t)rc);
        return -XEN_ENOSPC;
    }
    evtchn_mask((evtchn_port_t)rc);
    ports[rc].fn = NULL;
    port_set_cpu((evtchn_port_t)rc, cpu);
    return rc;
}

/* ---- the upcall ------------------------------------------------------------ */

static void handle_port(unsigned int port)
{
    struct port_desc *d = &ports[port];

    if (d->fn) {
        d->fn(port, d->arg);
    } else {
        evtchn_mask(port);          /* unclaimed: silence it */
        spurious++;
    }
}

/* Handle the selected 32-bit half `i` of the bitmaps for this vCPU. */
static void scan_word(unsigned int cpu, unsigned int i)
{
    volatile uint32_t *pend = pending_words(), *mask = mask_words();
    uint32_t bits;

    while ((bits = pend[i] & ~mask[i] & cpu_ports[cpu][i]) != 0) {
        unsigned int b = (unsigned int)__builtin_ctz(bits);
        unsigned int port = i * 32 + b;

        if (test_and_clear_bit32(pend, port))
            handle_port(port);
    }
}

static void evtchn_upcall(unsigned int irq, void *arg)
{
    unsigned int cpu = this_cpu();
    struct vcpu_info *vi = &vcpu_infos[cpu].info;
    volatile uint8_t *upcall_pending = &vi->evtchn_upcall_pending;
    volatile uint32_t *sel = (volatile uint32_t *)&vi->evtchn_pending_sel;

    (void)irq;
    (void)arg;
    upcalls[cpu]++;
    do {
        /* Clear the flag before reading the selector: an event after this
         * point sets the flag again and the loop comes back for it. */
        *upcall_pending = 0;
        dmb();
        for (unsigned int half = 0; half < 2; half++) {
            uint32_t words = __atomic_exchange_n(&sel[half], 0, __ATOMIC_SEQ_CST);

            while (words) {
                unsigned int w = half * 32 + (unsigned int)__builtin_ctz(words);   /* 64-bit word */

                words &= words - 1;
                if (2 * w < WORDS32) {
                    scan_word(cpu, 2 * w);
                    scan_word(cpu, 2 * w + 1);
                }
            }
        }
    } while (*upcall_pending);
}

uint32_t evtchn_upcalls(unsigned int cpu)
{
    return cpu < NR_CPUS ? upcalls[cpu] : 0;
}

uint32_t evtchn_spurious(void)
{
    return spurious;
}

/* ---- setup ------------------------------------------------------------------- */

int evtchn_cpu_init(void)
{
    unsigned int cpu = this_cpu();
    uint32_t pa = virt_to_phys(&vcpu_infos[cpu]);
    struct vcpu_register_vcpu_info reg = {
        .mfn = pa >> XEN_PAGE_SHIFT,
        .offset = pa & (XEN_PAGE_SIZE - 1),
    };
    int rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, cpu, &reg);

    if (rc < 0)
        return rc;
    /* Xen marks the vCPU pending after the move (an event may have been
     * raised on the old area): the first upcall may find nothing. */
    gic_enable_irq(GUEST_EVTCHN_PPI);
    return 0;
}

int evtchn_init(void)
{
    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF,
        .space = XENMAPSPACE_shared_info,
        .idx = 0,
        .gpfn = virt_to_phys(shared_page) >> XEN_PAGE_SHIFT,
    };
    int rc = HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp);

    if (rc < 0)
        return rc;
    shared_mapped = true;
    /* Every port masked until a handler claims it, as Linux starts. */
    for (unsigned int i = 0; i < EVTCHN_2L_NR_CHANNELS / 32; i++)
        mask_words()[i] = ~0U;
    dsb();
    irq_set_handler(GUEST_EVTCHN_PPI, evtchn_upcall, NULL);
    return evtchn_cpu_init();
}

/* ---- EVTCHNOP_* -------------------------------------------------------------- */

int evtchn_alloc_unbound(domid_t remote_dom)
{
    struct evtchn_alloc_unbound op = { .dom = DOMID_SELF, .remote_dom = remote_dom };
    int rc = HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound, &op);

    return port_new(rc < 0 ? rc : (int)op.port, 0);
}

int evtchn_bind_interdomain(domid_t remote_dom, evtchn_port_t remote_port)
{
    struct evtchn_bind_interdomain op = { .remote_dom = remote_dom, .remote_port = remote_port };
    int rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_interdomain, &op);

    return port_new(rc < 0 ? rc : (int)op.local_port, 0);
}

int evtchn_bind_ipi(unsigned int vcpu)
{
    struct evtchn_bind_ipi op = { .vcpu = vcpu };
    int rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_ipi, &op);

    return port_new(rc < 0 ? rc : (int)op.port, vcpu);
}

int evtchn_bind_virq(unsigned int virq, unsigned int vcpu)
{
    struct evtchn_bind_virq op = { .virq = virq, .vcpu = vcpu };
    int rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_virq, &op);

    return port_new(rc < 0 ? rc : (int)op.port, vcpu);
}

int evtchn_bind_vcpu(evtchn_port_t port, unsigned int vcpu)
{
    struct evtchn_bind_vcpu op = { .port = port, .vcpu = vcpu };
    int rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_vcpu, &op);

    if (rc == 0)
        port_set_cpu(port, vcpu);
    return rc;
}

int evtchn_send(evtchn_port_t port)
{
    struct evtchn_send op = { .port = port };

    return HYPERVISOR_event_channel_op(EVTCHNOP_send, &op);
}

int evtchn_close(evtchn_port_t port)
{
    struct evtchn_close op = { .port = port };

    /* Masked before it is freed: the next owner of the number starts masked. */
    evtchn_mask(port);
    if (port < EVTCHN_NR_PORTS)
        ports[port].fn = NULL;
    return HYPERVISOR_event_channel_op(EVTCHNOP_close, &op);
}

int evtchn_status(domid_t dom, evtchn_port_t port, struct evtchn_status *st)
{
    memset(st, 0, sizeof(*st));
    st->dom = dom;
    st->port = port;
    return HYPERVISOR_event_channel_op(EVTCHNOP_status, st);
}

int evtchn_unmask(evtchn_port_t port)
{
    /* Xen clears the mask bit and, if the port is pending, raises the
     * upcall; clearing it here first would make Xen see nothing to do. */
    struct evtchn_unmask op = { .port = port };

    return HYPERVISOR_event_channel_op(EVTCHNOP_unmask, &op);
}

static bool port_has_cpu(evtchn_port_t port)
{
    for (unsigned int c = 0; c < NR_CPUS; c++)
        if (cpu_ports[c][port / 32] & (1U << (port % 32)))
            return true;
    return false;
}

int evtchn_bind(evtchn_port_t port, evtchn_handler_t fn, void *arg)
{
    uint32_t flags;

    if (port == 0 || port >= EVTCHN_NR_PORTS)
        return -XEN_EINVAL;
    /* A port this runtime did not allocate (the store or console port the toolstack made)
     * notifies vCPU 0, as every new channel does on Xen, until someone moves it. */
    if (!port_has_cpu(port))
        port_set_cpu(port, 0);
    flags = local_irq_save();
    ports[port].arg = arg;
    ports[port].fn = fn;
    local_irq_restore(flags);
    return evtchn_unmask(port);
}
