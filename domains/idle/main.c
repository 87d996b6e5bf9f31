/*
 * idle: a domain that idles the way Mini-OS does, woken only by event
 * channel notifications from domain 0.
 *
 * Mini-OS's scheduler runs with IRQs masked; when no thread is runnable it
 * calls block_domain(), which sleeps in WFI with IRQs still masked and
 * then opens a one-instruction window for the interrupt that woke it:
 *
 *     local_irq_disable();
 *     if (!work_pending)
 *         wfi();
 *     local_irq_enable();
 *     local_irq_disable();
 *
 * Whether there is work is the guest's own business (here: the event
 * handler ran), not the upcall flag, so as long as the pending interrupt
 * is not taken in that window the loop keeps coming back to WFI, which
 * falls straight through.  The architecture takes the interrupt right
 * after `cpsie i`; an engine that only injects when it resumes a vCPU may
 * never do so.
 *
 * The domain offers domain 0 an unbound port, prints it, and counts the
 * notifications that arrive on it, printing each; after `events` of them
 * it powers off with the count checked.  It also counts the windows in
 * which the upcall flag was already set as the window opened but no
 * interrupt was taken: the architecture allows none, bar one per
 * notification for the instant between Xen setting the flag and raising
 * the interrupt.  An engine that misses the window spins here, in and out
 * of WFI, and misses it thousands of times.
 *
 * Bootargs: events=N (default 3).
 */
#include "guest.h"

static volatile uint32_t taken;         /* notifications the handler saw */
static uint32_t windows;                /* times the idle loop unmasked */
static uint32_t missed;                 /* ... with the upcall flag set, and no upcall */

static void on_event(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;
    taken++;
}

/* Mini-OS's block_domain, without its wake-up timer: only events end it.
 * The upcall flag is sampled just before the window, for the count. */
static void block_domain(uint32_t seen)
{
    const volatile uint8_t *flag = &evtchn_vcpu_info(0)->evtchn_upcall_pending;
    uint32_t before;
    bool pending;

    local_irq_disable();
    if (taken == seen)
        wfi();
    pending = *flag;
    before = evtchn_upcalls(0);
    local_irq_enable();
    local_irq_disable();
    windows++;
    if (pending && evtchn_upcalls(0) == before)
        missed++;
}

int main(void)
{
    long n = bootarg_int("events", 3);
    uint32_t seen = 0;
    int port;

    if (n < 1 || n > 100000)
        test_failure("events must be 1..100000");
    platform_init();
    test_check("evtchn_init", evtchn_init());
    port = test_check("EVTCHNOP_alloc_unbound", evtchn_alloc_unbound(0));
    test_check("evtchn_bind", evtchn_bind((evtchn_port_t)port, on_event, NULL));
    printk("idle: waiting for %ld events on port %d from domain 0\n", n, port);

    local_irq_disable();                /* the scheduler's loop runs masked */
    while (seen < (uint32_t)n) {
        block_domain(seen);
        while (seen < taken)
            printk("idle: event %u\n", ++seen);
    }
    printk("idle: took %u events in %u idle windows, %u missed with an upcall pending\n",
           taken, windows, missed);
    if (taken != (uint32_t)n)
        test_failure("took %u events, expected %ld", taken, n);
    if (missed > (uint32_t)n)
        test_failure("%u windows opened with an upcall pending and took no interrupt "
                     "(%ld events)", missed, n);
    test_success();
}
