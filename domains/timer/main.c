/*
 * timer: a periodic tick from the virtual timer, taken as PPI 27 through
 * the vGIC, and how late each tick is: CNTVCT at handler entry minus the
 * CNTV_CVAL it was programmed for.  The first half of the ticks arrive
 * while the guest sleeps in WFI, the second half while it computes with
 * IRQs enabled (so they come through the IRQ vector).  Like Jailhouse's
 * gic-demo it ends with a jitter summary.
 *
 * Bootargs: ticks=N (default 200), period_us=P (default 1000),
 * every=K (print every K-th tick; default ticks / 10).
 *
 * Each deadline is the previous one plus the period (no drift), and every
 * deadline gets its interrupt even when the previous one was handled late.
 * A tick that never comes is caught by a watchdog on the physical timer
 * (PPI 30); a tick before its deadline is a failure too.
 */
#include "guest.h"

#define MAX_TICKS           20000
#define WATCHDOG_PERIODS    200         /* a tick this late counts as lost */
#define WATCHDOG_MIN_MS     2000

static uint32_t late_ns[MAX_TICKS];
static volatile uint32_t ticks_seen;
static uint32_t nr_ticks;
static uint64_t period, deadline, first_deadline, last_entry, watchdog_ticks;
static uint32_t overruns, early;
static uint64_t earliest_by;            /* ticks before its deadline, worst case */

/* CNTP_TVAL / CNTP_CTL: the physical timer, used only as a watchdog. */
static void watchdog_kick(void)
{
    WRITE_CP32((uint32_t)watchdog_ticks, 0, c14, c2, 0);
    WRITE_CP32(CNT_CTL_ENABLE, 0, c14, c2, 1);
    isb();
}

static void watchdog_stop(void)
{
    WRITE_CP32(0, 0, c14, c2, 1);
    isb();
}

static void watchdog_fired(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    watchdog_stop();
    test_failure("tick %u lost: no PPI 27 %u ms after its deadline",
                 ticks_seen + 1, (uint32_t)udiv64(timer_ticks_to_ns(watchdog_ticks), 1000000, NULL));
}

static void tick(unsigned int irq, void *arg)
{
    uint64_t now = irq_entry_count();
    uint32_t n = ticks_seen;
    uint64_t late;

    (void)irq;
    (void)arg;
    if (now < deadline) {
        early++;
        if (deadline - now > earliest_by)
            earliest_by = deadline - now;
        late = 0;
    } else {
        late = timer_ticks_to_ns(now - deadline);
        if (now - deadline >= period)
            overruns++;
    }
    late_ns[n] = late > 0xFFFFFFFFU ? 0xFFFFFFFFU : (uint32_t)late;
    last_entry = now;
    n++;
    if (n < nr_ticks) {
        deadline += period;
        timer_set_cval(deadline);       /* drops the level-triggered line */
        watchdog_kick();
    } else {
        timer_disarm();
        watchdog_stop();
    }
    ticks_seen = n;
}

struct stats {
    uint32_t min, max;
    uint64_t sum;
    uint32_t n;
};

static struct stats stats_of(uint32_t from, uint32_t to)
{
    struct stats s = { .min = 0xFFFFFFFFU, .max = 0, .sum = 0, .n = to - from };

    for (uint32_t i = from; i < to; i++) {
        s.min = late_ns[i] < s.min ? late_ns[i] : s.min;
        s.max = late_ns[i] > s.max ? late_ns[i] : s.max;
        s.sum += late_ns[i];
    }
    if (!s.n)
        s.min = 0;
    return s;
}

static void print_stats(const char *what, struct stats s)
{
    printk("%s: min %u ns, max %u ns, avg %u ns over %u ticks\n", what, s.min, s.max,
           s.n ? (uint32_t)udiv64(s.sum, s.n, NULL) : 0, s.n);
}

/* Shell sort (Ciura's gaps): no recursion, fine for a few thousand values. */
static void sort_u32(uint32_t *a, uint32_t n)
{
    static const uint32_t gaps[] = { 1750, 701, 301, 132, 57, 23, 10, 4, 1 };

    for (unsigned int g = 0; g < ARRAY_SIZE(gaps); g++) {
        uint32_t gap = gaps[g];

        for (uint32_t i = gap; i < n; i++) {
            uint32_t v = a[i], j = i;

            for (; j >= gap && a[j - gap] > v; j -= gap)
                a[j] = a[j - gap];
            a[j] = v;
        }
    }
}

/* Nearest-rank percentile of a sorted array. */
static uint32_t percentile(const uint32_t *sorted, uint32_t n, uint32_t p)
{
    uint32_t rank = (p * n + 99) / 100;

    return sorted[rank ? rank - 1 : 0];
}

static void mmu_on(void)
{
    mmu_identity_map(GUEST_RAM_BASE, 64U << 20, MMU_NORMAL);
    gic_map();
    mmu_enable();
}

/* Some integer work to be interrupted in. */
static volatile uint32_t work;

static void compute(void)
{
    uint32_t x = work;

    for (int i = 0; i < 1000; i++)
        x = x * 1103515245U + 12345U;
    work = x;
}

/* A line for every every-th tick seen since the last call. */
static void print_progress(long every, uint32_t *printed)
{
    if (every > 0 && ticks_seen / (uint32_t)every > *printed) {
        *printed = ticks_seen / (uint32_t)every;
        printk("tick %u: %u ns late\n", ticks_seen, late_ns[ticks_seen - 1]);
    }
}

int main(void)
{
    long n = bootarg_int("ticks", 200);
    long period_us = bootarg_int("period_us", 1000);
    long every;
    uint32_t idle_ticks, printed = 0;
    uint64_t wd_min;

    if (n < 1 || n > MAX_TICKS)
        test_failure("ticks=%ld: must be 1..%u", n, MAX_TICKS);
    if (period_us < 1)
        test_failure("period_us=%ld: must be positive", period_us);
    nr_ticks = (uint32_t)n;
    every = bootarg_int("every", n >= 10 ? n / 10 : 1);
    idle_ticks = nr_ticks / 2;

    mmu_on();
    gic_init();
    period = timer_ns_to_ticks((uint64_t)period_us * 1000);
    if (!period)
        test_failure("period_us=%ld is below one counter tick", period_us);
    wd_min = timer_ns_to_ticks((uint64_t)WATCHDOG_MIN_MS * 1000000);
    watchdog_ticks = period * WATCHDOG_PERIODS > wd_min ? period * WATCHDOG_PERIODS : wd_min;
    if (watchdog_ticks > 0x7FFFFFFF)
        watchdog_ticks = 0x7FFFFFFF;    /* CNTP_TVAL is a signed 32-bit count */

    printk("timer: CNTFRQ %u Hz, period %ld us (%u counter ticks), %u ticks "
           "(%u in WFI, then %u while computing)\n", timer_freq(), period_us,
           (uint32_t)period, nr_ticks, idle_ticks, nr_ticks - idle_ticks);

    irq_set_handler(GUEST_TIMER_PHYS_NS_PPI, watchdog_fired, NULL);
    gic_enable_irq(GUEST_TIMER_PHYS_NS_PPI);
    timer_irq_init(tick, NULL);

    deadline = first_deadline = timer_count() + period;
    watchdog_kick();
    timer_arm(deadline);

    /* Sleeping: each wake-up dispatches the tick in place (IRQs masked). */
    while (ticks_seen < idle_ticks) {
        uint32_t seen = ticks_seen;

        wait_event(ticks_seen != seen);
        print_progress(every, &printed);
    }
    /* Computing: the ticks interrupt the loop through the IRQ vector.  The last tick may come
     * between the print check and the loop's test: the check runs once more after the loop. */
    local_irq_enable();
    while (ticks_seen < nr_ticks) {
        compute();
        print_progress(every, &printed);
    }
    local_irq_disable();
    print_progress(every, &printed);

    print_stats("idle", stats_of(0, idle_ticks));
    print_stats("busy", stats_of(idle_ticks, nr_ticks));
    print_stats("jitter", stats_of(0, nr_ticks));
    sort_u32(late_ns, nr_ticks);
    printk("percentiles: p50 %u ns, p90 %u ns, p99 %u ns\n", percentile(late_ns, nr_ticks, 50),
           percentile(late_ns, nr_ticks, 90), percentile(late_ns, nr_ticks, 99));
    printk("late by a period or more: %u of %u ticks\n", overruns, nr_ticks);
    if (last_entry > first_deadline) {
        uint64_t ns = timer_ticks_to_ns(last_entry - first_deadline);

        printk("%u ticks in %u us from the first deadline: %u interrupts per second\n",
               nr_ticks, (uint32_t)udiv64(ns, 1000, NULL),
               (uint32_t)udiv64((uint64_t)nr_ticks * 1000000000ULL, ns, NULL));
    }
    printk("vcpu0 took %u timer interrupts\n", irq_count(0, GUEST_TIMER_VIRT_PPI));

    if (early)
        test_failure("%u ticks arrived before their deadline (up to %u ns early)", early,
                     (uint32_t)timer_ticks_to_ns(earliest_by));
    if (irq_count(0, GUEST_TIMER_VIRT_PPI) != nr_ticks)
        test_failure("%u timer interrupts for %u ticks", irq_count(0, GUEST_TIMER_VIRT_PPI),
                     nr_ticks);
    test_success();
}
