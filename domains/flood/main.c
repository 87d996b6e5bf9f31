/*
 * flood: a hostile guest for the hypervisor's interrupt paths.  Run it
 * beside another domain to check that domain keeps its share of the board.
 *
 * vCPU 1 sends EVTCHNOP_send on bad ports for the whole run.  vCPU 0 goes
 * through phases of `ms` milliseconds each (bootarg, default 500):
 *
 *   badport  EVTCHNOP_send / EVTCHNOP_unmask on ports that are reserved,
 *            free or out of range: every one must fail with -EINVAL;
 *   masked   every port masked, 1000 sends on a bound IPI port: the
 *            event stays pending and no upcall may come;
 *   storm    CNTV_CVAL = 0: the level-triggered timer interrupt never
 *            drops, and the handler only acknowledges it;
 *   never    CNTV_CVAL = 2^64 - 1: no interrupt may come;
 *   negtval  CNTV_TVAL = -1000000: the deadline is in the past, so the
 *            interrupt comes at once (ISTATUS reads 1);
 *   tvalmin  CNTV_TVAL = INT32_MIN: in the past once the count passed 2^31,
 *            otherwise CVAL wraps to near 2^64 and nothing may come.
 *
 * The phases spin on CNTVCT with IRQs enabled; nothing here sleeps.
 */
#include "guest.h"

#define BAD_PORT_VALID_FREE     60          /* inside Xen's first bucket, never allocated */

static volatile uint32_t storm_irqs;
static volatile bool vcpu1_stop;
static volatile uint32_t vcpu1_sends, vcpu1_bad;
static volatile bool vcpu1_done;
static uint64_t phase_ticks, phase_end;

/* Acknowledge only, so the level-triggered line stays up and the GIC
 * signals it again at once: the storm lasts until the phase is over. */
static void on_timer(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    storm_irqs++;
    if (timer_count() >= phase_end)
        timer_disarm();
}

static void spin_phase(void)
{
    local_irq_enable();
    while (timer_count() < phase_end)
        ;
    local_irq_disable();
}

static void vcpu1_main(void *arg)
{
    (void)arg;
    mmu_enable();
    while (!vcpu1_stop) {
        int rc = evtchn_send(4096 + (vcpu1_sends & 0xFF));

        vcpu1_sends++;
        if (rc != -XEN_EINVAL)
            vcpu1_bad++;
    }
    vcpu1_done = true;
}

static void expect_einval(const char *what, evtchn_port_t port, int rc, uint32_t *bad)
{
    if (rc != -XEN_EINVAL) {
        if (!*bad)
            printk("flood: %s(%u) returned %d, not -EINVAL\n", what, port, rc);
        (*bad)++;
    }
}

static void badport_phase(void)
{
    static const evtchn_port_t ports[] = {
        0, BAD_PORT_VALID_FREE, 1023, 4095, 4096, 5000, 0x7FFFFFFF, 0xFFFFFFFF,
    };
    uint64_t end = timer_count() + phase_ticks;
    uint32_t calls = 0, bad = 0;
    struct evtchn_unmask um;

    while (timer_count() < end) {
        for (unsigned int i = 0; i < ARRAY_SIZE(ports); i++, calls++)
            expect_einval("EVTCHNOP_send", ports[i], evtchn_send(ports[i]), &bad);
        um.port = 5000;
        expect_einval("EVTCHNOP_unmask", um.port,
                      HYPERVISOR_event_channel_op(EVTCHNOP_unmask, &um), &bad);
        calls++;
    }
    printk("flood: badport: %u calls, %u without -EINVAL\n", calls, bad);
    if (bad)
        test_failure("%u bad-port calls did not return -EINVAL", bad);
}

static void masked_phase(void)
{
    uint32_t before = evtchn_upcalls(0);
    int port = test_check("EVTCHNOP_bind_ipi", evtchn_bind_ipi(0));

    /* Bound but left masked: Xen may only set the pending bit. */
    for (int i = 0; i < 1000; i++)
        test_check("EVTCHNOP_send", evtchn_send((evtchn_port_t)port));
    phase_end = timer_count() + phase_ticks;
    spin_phase();
    printk("flood: masked: port %d pending %d, upcalls during the phase %u\n", port,
           evtchn_is_pending((evtchn_port_t)port), evtchn_upcalls(0) - before);
    if (!evtchn_is_pending((evtchn_port_t)port))
        test_failure("masked port %d is not pending after 1000 sends", port);
    if (evtchn_upcalls(0) != before)
        test_failure("%u upcalls for a masked port", evtchn_upcalls(0) - before);
    test_check("EVTCHNOP_close", evtchn_close((evtchn_port_t)port));
}

static void timer_phase(const char *name, void (*program)(void), bool expect_irqs)
{
    uint32_t before = storm_irqs, ctl, n;

    phase_end = timer_count() + phase_ticks;
    program();
    ctl = timer_get_ctl();
    spin_phase();
    n = storm_irqs - before;
    printk("flood: %s: %u timer interrupts, ISTATUS %u\n", name, n,
           (ctl & CNT_CTL_ISTATUS) ? 1 : 0);
    timer_disarm();
    if (expect_irqs && !n)
        test_failure("%s: no timer interrupt for a deadline in the past", name);
    if (!expect_irqs && n)
        test_failure("%s: %u timer interrupts for a deadline that never comes", name, n);
}

static void cval_zero(void)
{
    timer_arm(0);
}

static void cval_max(void)
{
    timer_arm(~0ULL);
}

static void tval_negative(void)
{
    timer_set_tval(-1000000);
    timer_set_ctl(CNT_CTL_ENABLE);
}

/* CVAL = CNTVCT + TVAL modulo 2^64 and the compare is unsigned: while the
 * count is below 2^31 the sum wraps to near 2^64 and never fires. */
static void tval_min(void)
{
    timer_set_tval(INT32_MIN);
    timer_set_ctl(CNT_CTL_ENABLE);
}

int main(void)
{
    long ms = bootarg_int("ms", 500);
    uint64_t t0;

    if (ms < 1)
        test_failure("ms=%ld: must be positive", ms);
    platform_init();
    test_check("evtchn_init", evtchn_init());
    gic_handle_irq();       /* the upcall Xen raises when vcpu_info moves: not the phases' */
    timer_irq_init(on_timer, NULL);
    phase_ticks = timer_ns_to_ticks((uint64_t)ms * 1000000);
    printk("flood: %ld ms per phase; vcpu1 floods EVTCHNOP_send on bad ports\n", ms);

    test_check("PSCI CPU_ON", smp_start_cpu(1, vcpu1_main, NULL));
    t0 = timer_count();
    badport_phase();
    masked_phase();
    timer_phase("storm (CVAL=0)", cval_zero, true);
    timer_phase("never (CVAL=2^64-1)", cval_max, false);
    timer_phase("negtval (TVAL=-1000000)", tval_negative, true);
    timer_phase("tvalmin (TVAL=INT32_MIN)", tval_min, timer_count() >= 0x80000000ULL);

    vcpu1_stop = true;
    dsb();
    while (!vcpu1_done)
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    printk("flood: vcpu1: %u sends on bad ports, %u without -EINVAL\n", vcpu1_sends, vcpu1_bad);
    printk("flood: done in %u ms\n",
           (uint32_t)udiv64(timer_ticks_to_ns(timer_count() - t0), 1000000, NULL));
    if (vcpu1_bad)
        test_failure("vcpu1: %u sends did not return -EINVAL", vcpu1_bad);
    test_success();
}
