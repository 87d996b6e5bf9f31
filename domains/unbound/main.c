/*
 * unbound: the event-channel idiom of a small RTOS port, which trusts that
 * only ports it bound ever fire.
 *
 * Its upcall takes every pending, unmasked port and calls handlers[port]
 * without looking: a port it never bound has a NULL entry, so an event on
 * it is a jump to address 0 and the guest dies.  It never binds its console
 * port (it prints with console_io) nor its store port, and leaves both
 * unmasked, as such a port does.  So it survives only if dom0's backends
 * never send an event that Xen's would not: xenconsoled none at attach or
 * for an empty ring, xenstored none to a domain that never spoke to it.
 *
 * Meanwhile it sends itself events on an IPI port it did bind, for about
 * `ms=` (default 1500) of its timer, long enough for dom0's backends to
 * have attached, and then checks that neither port was ever pending.
 */
#include "guest.h"

typedef void (*port_handler_t)(evtchn_port_t port);

static port_handler_t handlers[EVTCHN_NR_PORTS];
static volatile uint32_t ticks, upcalls;

static void on_ipi(evtchn_port_t port)
{
    (void)port;
    ticks++;
}

/* The upcall, done the RTOS way: no check of the table. */
static void rtos_upcall(unsigned int irq, void *arg)
{
    struct vcpu_info *vi = evtchn_vcpu_info(0);
    struct shared_info *sh = evtchn_shared_info();
    volatile uint32_t *pending = (volatile uint32_t *)sh->evtchn_pending;
    const volatile uint32_t *mask = (const volatile uint32_t *)sh->evtchn_mask;

    (void)irq;
    (void)arg;
    upcalls++;
    vi->evtchn_upcall_pending = 0;
    dmb();
    for (unsigned int half = 0; half < 2; half++)       /* the selector, 32 bits at a time */
        __atomic_exchange_n(&((volatile uint32_t *)&vi->evtchn_pending_sel)[half], 0,
                            __ATOMIC_SEQ_CST);
    for (unsigned int w = 0; w < EVTCHN_NR_PORTS / 32; w++) {
        uint32_t bits = pending[w] & ~mask[w];

        while (bits) {
            unsigned int port = w * 32 + (unsigned int)__builtin_ctz(bits);

            bits &= bits - 1;
            __atomic_fetch_and(&pending[w], ~(1U << (port % 32)), __ATOMIC_SEQ_CST);
            handlers[port](port);
        }
    }
}

int main(void)
{
    uint64_t console_port, store_port;
    long ms = bootarg_int("ms", 1500);
    uint64_t until;
    int ipi;

    platform_init();
    test_check("evtchn_init", evtchn_init());
    test_check("console port", hvm_param_get(HVM_PARAM_CONSOLE_EVTCHN, &console_port));
    test_check("store port", hvm_param_get(HVM_PARAM_STORE_EVTCHN, &store_port));
    ipi = test_check("bind_ipi", evtchn_bind_ipi(0));
    handlers[ipi] = on_ipi;
    test_check("unmask", evtchn_unmask((evtchn_port_t)ipi));
    irq_set_handler(GUEST_EVTCHN_PPI, rtos_upcall, NULL);
    printk("unbound: console port %u and store port %u left unbound; ipi port %d\n",
           (unsigned int)console_port, (unsigned int)store_port, ipi);

    local_irq_enable();
    until = timer_count() + timer_ns_to_ticks((uint64_t)ms * 1000000U);
    while (timer_count() < until) {
        uint32_t before = ticks;

        test_check("send", evtchn_send((evtchn_port_t)ipi));
        while (ticks == before)
            wfi();
    }
    local_irq_disable();
    if (evtchn_is_pending((evtchn_port_t)console_port) ||
        evtchn_is_pending((evtchn_port_t)store_port))
        test_failure("an unbound port became pending");
    printk("unbound: %u upcalls through the handler table in %ld ms; the console and store "
           "ports never fired\n", upcalls, ms);
    test_success();
}
