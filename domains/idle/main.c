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
 * it powers off with the count checked.  It also counts the windows it
 * opened: one per notification and one for the upcall Xen raises when
 * vcpu_info is registered, plus, per notification, at most one WFI ended
 * by a wake-up already in flight and one window opened between Xen
 * setting the upcall flag and raising the interrupt.  More than that
 * means an interrupt that was pending when a window opened was not taken
 * in it (an engine that misses the window spins here, in and out of WFI).
 *
 * Bootargs: events=N (default 3).
 */
#include "guest.h"

static volatile uint32_t taken;         /* notifications the handler saw */
static uint32_t windows;                /* times the idle loop unmasked */

static void on_event(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;
    taken++;
}

/* Mini-OS's block_domain, without its wake-up timer: only events end it. */
static void block_domain(uint32_t seen)
{
    local_irq_disable();
    if (taken == seen)
        wfi();
    local_irq_enable();
    local_irq_disable();
    windows++;
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
    printk("idle: took %u events in %u idle windows\n", taken, windows);
    if (taken != (uint32_t)n)
        test_failure("took %u events, expected %ld", taken, n);
    if (windows > 3 * (uint32_t)n + 1)
        test_failure("%u idle windows for %ld events: a pending interrupt was not taken "
                     "when IRQs were unmasked", windows, n);
    test_success();
}
