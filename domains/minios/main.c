/*
 * minios: the console of a Mini-OS-style guest, which prints every line
 * twice: with HYPERVISOR_console_io (the hypervisor's log, `xl dmesg`) and
 * into its PV console ring (what `xl console` shows), as Mini-OS's printk
 * does in a debug build.
 *
 * Then the console "poll" of such ports: it notifies xenconsoled on every
 * poll, `polls=` times (default 2000), with nothing in the ring.  A backend
 * answers only when it moved data, so no event comes back: the guest counts
 * the upcalls on its console port and expects none from the polls.
 */
#include "guest.h"

#define LINES       3

static void say(const char *fmt, ...) __printf(1, 2);

static void say(const char *fmt, ...)
{
    char line[160];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(line) - 1)
        n = (int)sizeof(line) - 1;
    printk("%s", line);                             /* console_io */
    console_flush();
    if (xencons_write(line, (size_t)n) != n)        /* and the ring */
        test_failure("console ring full");
}

/* Give the pCPU away for a while (the idle loop of such ports): a yield,
 * not a WFI, so that no interrupt is needed to come back. */
static void nap(void)
{
    HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
}

/* Until xenconsoled has taken everything (bounded by the timer). */
static void wait_drained(void)
{
    uint64_t until = timer_count() + timer_ns_to_ticks(10000000000ULL);

    while (!xencons_drained()) {
        if (timer_count() > until)
            test_failure("xenconsoled did not take the console output");
        wfi();                  /* its notification, after it took the bytes, wakes us */
    }
}

int main(void)
{
    long polls = bootarg_int("polls", 2000);
    uint32_t before;
    uint64_t until;

    platform_init();
    test_check("evtchn_init", evtchn_init());
    test_check("xencons_init", xencons_init(true));
    local_irq_enable();
    for (int i = 1; i <= LINES; i++)
        say("minios: line %d of %d, on console_io and the ring\n", i, LINES);
    wait_drained();

    before = xencons_upcalls();
    for (long i = 0; i < polls; i++)
        test_check("notify", xencons_notify());
    until = timer_count() + timer_ns_to_ticks(500000000ULL);    /* 0.5 s for stray answers */
    while (timer_count() < until)
        nap();
    if (xencons_upcalls() != before)
        test_failure("%u events came back for %ld notifications of an empty ring",
                     xencons_upcalls() - before, polls);
    say("minios: %ld polls of an empty ring, no event back\n", polls);
    say("Test result: SUCCESS\n");
    wait_drained();
    guest_shutdown(SHUTDOWN_poweroff);
}
