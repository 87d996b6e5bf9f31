/*
 * pingpong: two domains bounce event-channel notifications, without
 * XenStore to meet through.  One image, two roles, chosen by bootargs:
 *
 *   role=ping peer=<domid> [rounds=N] [timeout_ms=T] [hcalls=H]
 *   role=pong [peer=<domid>] [scan=D] [timeout_ms=T] [rounds=N]
 *
 * The rendezvous.  Ping knows pong's domid (read it from `xl list`) and
 * offers it a port with EVTCHNOP_alloc_unbound: its lowest free port, as
 * Xen hands them out (1 or 2, after any channel the toolstack made).  Pong
 * needs no address: a domain cannot list who offered it a port, so it
 * tries EVTCHNOP_bind_interdomain on the first few ports of each domid
 * (only the port offered to it binds; the others answer -EINVAL, missing
 * domains -ESRCH), sleeping on its timer between passes until ping exists.
 * With peer= it only tries that domain.
 *
 * The bounce.  Pong discards the event Xen raises on its own end at bind
 * time, then notifies ping once ("ready").  Ping then sends N
 * notifications, each after the previous echo; pong's upcall handler
 * echoes every one from interrupt context.  Both sides sleep in WFI
 * between events (IRQs masked around the check, see wait_event).  Ping
 * times each round trip with CNTVCT and, for scale, a null hypercall.
 *
 * The end.  Ping closes its port, which turns pong's end unbound (Xen does
 * not notify the survivor).  Pong notices on its idle timer: after a quiet
 * interval it asks EVTCHNOP_status and stops once the channel is no longer
 * interdomain.
 */
#include "guest.h"

#define PORT_SCAN           8           /* ports tried per domain */
#define SCAN_RETRY_MS       10
#define IDLE_CHECK_MS       100

static volatile uint32_t events;        /* notifications received on our port */
static volatile uint64_t last_event;    /* CNTVCT when the last one was handled */
static volatile bool timer_fired;
static evtchn_port_t port;
static bool echo;

static void on_timer(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    timer_disarm();
    timer_fired = true;
}

static void on_event(evtchn_port_t p, void *arg)
{
    (void)arg;
    last_event = irq_entry_count();
    events++;
    if (echo) {
        int rc = evtchn_send(p);

        if (rc < 0)
            test_failure("pong: EVTCHNOP_send(%u) returned %d", p, rc);
    }
}

static uint64_t ms_to_ticks(uint32_t ms)
{
    return timer_ns_to_ticks((uint64_t)ms * 1000000);
}

static void timer_after_ms(uint32_t ms)
{
    timer_fired = false;
    timer_arm(timer_count() + ms_to_ticks(ms));
}

static uint32_t ticks_to_us(uint64_t ticks)
{
    return (uint32_t)udiv64(timer_ticks_to_ns(ticks), 1000, NULL);
}

static domid_t parse_domid(const char *key, long v)
{
    if (v < 0 || v >= (long)DOMID_SELF)
        test_failure("%s=%ld is not a domain id", key, v);
    return (domid_t)v;
}

static void setup(void)
{
    platform_init();
    timer_irq_init(on_timer, NULL);
    test_check("evtchn_init", evtchn_init());
}

/* ---- ping -------------------------------------------------------------------- */

static uint32_t null_hypercall_ns(uint32_t n)
{
    uint64_t t0, t1;

    t0 = timer_count();
    for (uint32_t i = 0; i < n; i++)
        HYPERVISOR_xen_version(XENVER_version, NULL);
    t1 = timer_count();
    return (uint32_t)udiv64(timer_ticks_to_ns(t1 - t0), n, NULL);
}

static __noreturn void ping(void)
{
    domid_t peer;
    long rounds = bootarg_int("rounds", 100);
    long timeout_ms = bootarg_int("timeout_ms", 60000);
    long hcalls = bootarg_int("hcalls", 1000);
    uint64_t deadline, sum = 0, max = 0, min = ~0ULL;
    uint32_t null_ns, every;
    int rc;

    if (!bootarg_str("peer", NULL, 0))
        test_failure("ping needs peer=<domid of pong>");
    peer = parse_domid("peer", bootarg_int("peer", -1));
    if (rounds < 1 || hcalls < 1 || timeout_ms < 1)
        test_failure("rounds, hcalls and timeout_ms must be positive");
    every = rounds >= 10 ? (uint32_t)rounds / 10 : 1;

    null_ns = null_hypercall_ns((uint32_t)hcalls);
    printk("ping: null hypercall (xen_version) %u ns, average of %ld\n", null_ns, hcalls);

    rc = test_check("EVTCHNOP_alloc_unbound", evtchn_alloc_unbound(peer));
    port = (evtchn_port_t)rc;
    test_check("evtchn_bind", evtchn_bind(port, on_event, NULL));
    printk("ping: offered port %u to domain %u, waiting for pong\n", port, peer);

    deadline = timer_count() + ms_to_ticks((uint32_t)timeout_ms);
    timer_arm(deadline);                /* one overall watchdog for the whole exchange */
    wait_event(events >= 1 || timer_fired);
    if (events < 1)
        test_failure("no notification from domain %u within %ld ms", peer, timeout_ms);
    printk("ping: pong is ready\n");

    for (uint32_t r = 1; r <= (uint32_t)rounds; r++) {
        uint64_t t0 = timer_count(), rtt;

        test_check("EVTCHNOP_send", evtchn_send(port));
        wait_event(events > r || timer_fired);
        if (events <= r)
            test_failure("round %u: no echo within the %ld ms timeout", r, timeout_ms);
        rtt = last_event - t0;
        sum += rtt;
        max = rtt > max ? rtt : max;
        min = rtt < min ? rtt : min;
        if (r % every == 0)
            printk("ping: round %u: %u us\n", r, ticks_to_us(rtt));
    }
    timer_disarm();
    if (events != (uint32_t)rounds + 1)
        test_failure("%u notifications for %ld rounds", events, rounds);

    {
        uint32_t avg_us = ticks_to_us(udiv64(sum, (uint64_t)rounds, NULL));
        uint32_t avg_ns = (uint32_t)udiv64(timer_ticks_to_ns(sum), (uint64_t)rounds, NULL);

        printk("ping: %ld round trips: avg %u us, min %u us, max %u us\n", rounds, avg_us,
               ticks_to_us(min), ticks_to_us(max));
        printk("ping: round trip = %u null hypercalls\n", null_ns ? avg_ns / null_ns : 0);
    }
    test_check("EVTCHNOP_close", evtchn_close(port));
    printk("ping: closed port %u\n", port);
    test_success();
}

/* ---- pong -------------------------------------------------------------------- */

/* One pass over the candidates; returns the bound local port or 0. */
static evtchn_port_t try_bind(domid_t first, domid_t last, domid_t *found, evtchn_port_t *rport)
{
    for (uint32_t d = first; d <= last; d++) {
        for (evtchn_port_t p = 1; p <= PORT_SCAN; p++) {
            int rc = evtchn_bind_interdomain((domid_t)d, p);

            if (rc > 0) {
                *found = (domid_t)d;
                *rport = p;
                return (evtchn_port_t)rc;
            }
            if (rc == -XEN_ESRCH)
                break;                  /* no such domain: next one */
            if (rc != -XEN_EINVAL)
                test_failure("EVTCHNOP_bind_interdomain(%u, %u) returned %d", d, p, rc);
        }
    }
    return 0;
}

static __noreturn void pong(void)
{
    long timeout_ms = bootarg_int("timeout_ms", 60000);
    long rounds = bootarg_int("rounds", -1);
    domid_t first = 1, last = (domid_t)bootarg_int("scan", 64), peer = 0;
    evtchn_port_t rport = 0;
    uint64_t give_up;
    uint32_t seen;
    struct evtchn_status st;

    if (bootarg_str("peer", NULL, 0))
        first = last = parse_domid("peer", bootarg_int("peer", -1));
    else if (bootarg_int("scan", 64) < 1 || bootarg_int("scan", 64) >= (long)DOMID_SELF)
        test_failure("scan=%ld: must be 1..%u", bootarg_int("scan", 64), DOMID_SELF - 1);
    if (first == last)
        printk("pong: waiting for a port offered by domain %u\n", first);
    else
        printk("pong: looking for a port offered by domains %u..%u\n", first, last);

    give_up = timer_count() + ms_to_ticks((uint32_t)timeout_ms);
    while (!(port = try_bind(first, last, &peer, &rport))) {
        if (timer_count() >= give_up)
            test_failure("no domain offered a port within %ld ms", timeout_ms);
        timer_after_ms(SCAN_RETRY_MS);
        wait_event(timer_fired);
    }
    printk("pong: bound local port %u to domain %u port %u\n", port, peer, rport);

    /* Xen raised our end at bind time (events sent while it was unbound
     * were dropped): that one is not from ping. */
    evtchn_clear(port);
    echo = true;
    test_check("evtchn_bind", evtchn_bind(port, on_event, NULL));
    test_check("EVTCHNOP_send (ready)", evtchn_send(port));

    for (;;) {
        seen = events;
        timer_after_ms(IDLE_CHECK_MS);
        wait_event(events != seen || timer_fired);
        if (events != seen)
            continue;
        test_check("EVTCHNOP_status", evtchn_status(DOMID_SELF, port, &st));
        if (st.status != EVTCHNSTAT_interdomain)
            break;
    }
    timer_disarm();
    printk("pong: echoed %u notifications; domain %u closed the channel (status %u)\n", events,
           peer, st.status);
    if (rounds >= 0 && events != (uint32_t)rounds)
        test_failure("echoed %u notifications, expected %ld", events, rounds);
    test_check("EVTCHNOP_close", evtchn_close(port));
    test_success();
}

int main(void)
{
    char role[8];

    setup();
    if (!bootarg_str("role", role, sizeof(role)))
        test_failure("bootargs need role=ping or role=pong (got \"%s\")", bootargs());
    if (!strcmp(role, "ping"))
        ping();
    if (!strcmp(role, "pong"))
        pong();
    test_failure("role=%s: expected ping or pong", role);
}
