/*
 * stress: counting under preemption, to prove that no guest instruction
 * is ever run twice or skipped when a vCPU is stopped and resumed.
 *
 * Every vCPU the domain has (vCPU 0 starts the others with PSCI CPU_ON,
 * until CPU_ON says there is no such vCPU) does `iters` iterations of:
 *
 *   - an LDREX/ADD/STREX increment of a counter all vCPUs share;
 *   - a plain LDR/ADD/STR increment of its own private counter;
 *   - a plain LDR/ADD/STR increment of a second shared counter inside a
 *     ticket spinlock (LDREX/STREX to take a ticket, WFE while waiting,
 *     DSB + SEV on unlock, as Linux's arch_spin_lock).
 *
 * An increment that runs twice makes a count too high; a store that runs
 * again later overwrites another vCPU's increment and makes one too low.
 * Meanwhile the vCPUs are stopped as often as the board allows: each arms
 * its virtual timer every `tick_us` (the scheduler stops a running vCPU at
 * each deadline) and every `kick` iterations sends an event-channel IPI to
 * the next vCPU (a wake-up stops it if it is running), on top of the time
 * slices ending when there are more vCPUs than pCPUs.  At the end vCPU 0
 * prints every count and checks each is exact.
 *
 * Bootargs: iters=N per vCPU (default 100000), tick_us=T (default 500,
 * 0: no timer), kick=K (default 64, 0: no IPIs).
 */
#include "guest.h"
#include "spinlock.h"

struct percpu {
    volatile uint32_t priv;             /* the private counter */
    volatile uint32_t ipis;             /* IPIs taken */
    volatile uint32_t ticks;            /* timer interrupts taken */
    volatile uint32_t done;
    int error;
} __attribute__((aligned(64)));

static struct percpu percpu[NR_CPUS];
static volatile uint32_t shared_count;  /* LDREX/STREX increments */
static volatile uint32_t locked_count;  /* plain increments under `lock` */
static spinlock_t lock = SPINLOCK_INIT;
static evtchn_port_t ipi_port[NR_CPUS];
static unsigned int nr_cpus = 1;
static uint32_t iters, kick;
static uint64_t tick_period;
static volatile uint32_t ready, go;

#define STALL_S                 30
static uint32_t watched, stalled_s;

/* CNTP_TVAL / CNTP_CTL: the physical timer, a one-second watchdog tick. */
static void watchdog_kick(void)
{
    WRITE_CP32(timer_freq(), 0, c14, c2, 0);
    WRITE_CP32(CNT_CTL_ENABLE, 0, c14, c2, 1);
    isb();
}

static void watchdog_tick(unsigned int irq, void *arg)
{
    uint32_t now = shared_count + locked_count;

    (void)irq;
    (void)arg;
    stalled_s = now == watched ? stalled_s + 1 : 0;
    watched = now;
    if (stalled_s >= STALL_S)
        test_failure("no progress for %u s: shared %u, locked %u, lock word %08x", stalled_s,
                     shared_count, locked_count, lock.slock);
    watchdog_kick();
}

static void on_ipi(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;
    percpu[smp_processor_id()].ipis++;
}

static void on_tick(unsigned int irq, void *arg)
{
    struct percpu *me = &percpu[smp_processor_id()];

    (void)irq;
    (void)arg;
    me->ticks++;
    if (me->done)
        timer_disarm();
    else
        timer_set_cval(timer_count() + tick_period);    /* drops the level line */
}

static void count(unsigned int cpu)
{
    struct percpu *me = &percpu[cpu];
    evtchn_port_t next = ipi_port[(cpu + 1) % nr_cpus];

    if (tick_period)
        timer_arm(timer_count() + tick_period);
    for (uint32_t i = 1; i <= iters; i++) {
        atomic_inc(&shared_count);
        plain_inc(&me->priv);
        spin_lock(&lock);
        plain_inc(&locked_count);
        spin_unlock(&lock);
        if (kick && i % kick == 0) {
            int rc = evtchn_send(next);

            if (rc < 0 && !me->error)
                me->error = rc;
        }
    }
    me->done = 1;
    timer_disarm();
    dmb();
}

static void secondary(void *arg)
{
    unsigned int cpu = (unsigned int)(uintptr_t)arg;
    int rc;

    mmu_enable();
    gic_cpu_init();
    rc = evtchn_cpu_init();
    if (rc < 0) {
        percpu[cpu].error = rc;
        percpu[cpu].done = 1;
        atomic_inc(&ready);
        evtchn_send(ipi_port[0]);
        return;
    }
    timer_irq_init(on_tick, NULL);
    atomic_inc(&ready);
    evtchn_send(ipi_port[0]);           /* vCPU 0 waits in WFI for everyone */
    local_irq_enable();
    while (!go)
        ;                               /* a plain spin: WFE is the lock's business */
    count(cpu);
    local_irq_disable();
    evtchn_send(ipi_port[0]);           /* vCPU 0 may be waiting for this */
    /* returning makes the runtime call PSCI CPU_OFF */
}

int main(void)
{
    long n = bootarg_int("iters", 100000);
    long tick_us = bootarg_int("tick_us", 500);
    long k = bootarg_int("kick", 64);
    uint32_t expect, bad = 0;
    int rc;

    if (n < 1 || n > 100000000 || tick_us < 0 || k < 0)
        test_failure("iters must be 1..10^8, tick_us and kick non-negative");
    iters = (uint32_t)n;
    kick = (uint32_t)k;
    platform_init();
    test_check("evtchn_init", evtchn_init());
    tick_period = timer_ns_to_ticks((uint64_t)tick_us * 1000);
    timer_irq_init(on_tick, NULL);

    /* A port per possible vCPU: binding one for a vCPU the domain lacks fails. */
    for (unsigned int cpu = 0; cpu < NR_CPUS; cpu++) {
        rc = evtchn_bind_ipi(cpu);
        if (rc < 0)
            break;
        ipi_port[cpu] = (evtchn_port_t)rc;
        test_check("evtchn_bind", evtchn_bind(ipi_port[cpu], on_ipi, NULL));
    }
    for (unsigned int cpu = 1; cpu < NR_CPUS; cpu++) {
        rc = smp_start_cpu(cpu, secondary, (void *)(uintptr_t)cpu);
        if (rc == PSCI_INVALID_PARAMETERS)
            break;                      /* the domain has no such vCPU */
        if (rc != 0)
            test_failure("PSCI CPU_ON vcpu %u returned %d", cpu, rc);
        if (!ipi_port[cpu])
            test_failure("no IPI port for vcpu %u", cpu);
        nr_cpus++;
    }
    wait_event(ready == nr_cpus - 1);
    for (unsigned int cpu = 1; cpu < nr_cpus; cpu++)
        if (percpu[cpu].error)
            test_failure("vcpu%u: evtchn_cpu_init returned %d", cpu, percpu[cpu].error);
    printk("stress: %u vcpus x %u iterations, timer every %ld us, an IPI every %u\n",
           nr_cpus, iters, tick_us, kick);

    irq_set_handler(GUEST_TIMER_PHYS_NS_PPI, watchdog_tick, NULL);
    gic_enable_irq(GUEST_TIMER_PHYS_NS_PPI);
    watchdog_kick();
    go = 1;
    dsb();
    local_irq_enable();
    count(0);
    local_irq_disable();
    for (unsigned int cpu = 1; cpu < nr_cpus; cpu++)
        wait_event(percpu[cpu].done);       /* the watchdog ticks in here too */
    WRITE_CP32(0, 0, c14, c2, 1);           /* watchdog off */
    isb();
    dmb();

    expect = nr_cpus * iters;
    printk("stress: shared (ldrex/strex) %u, expected %u\n", shared_count, expect);
    printk("stress: locked (ticket lock) %u, expected %u\n", locked_count, expect);
    bad += shared_count != expect;
    bad += locked_count != expect;
    for (unsigned int cpu = 0; cpu < nr_cpus; cpu++) {
        struct percpu *p = &percpu[cpu];

        printk("stress: vcpu%u private %u, expected %u; took %u IPIs, %u timer ticks\n",
               cpu, p->priv, iters, p->ipis, p->ticks);
        bad += p->priv != iters;
        if (p->error)
            test_failure("vcpu%u: EVTCHNOP_send returned %d", cpu, p->error);
    }
    if (bad)
        test_failure("%u of %u counts are wrong", bad, nr_cpus + 2);
    test_success();
}
