/*
 * ipi: interrupts between the two vCPUs of one domain.
 *
 * vCPU 0 binds one event-channel IPI port per vCPU (EVTCHNOP_bind_ipi: a
 * send on the port raises it on the vCPU it was bound for) and starts
 * vCPU 1 with PSCI CPU_ON.  vCPU 1 registers its own vcpu_info, enables
 * the upcall PPI and SGI 1 on its CPU interface, and says it is ready with
 * an IPI to vCPU 0.  Then, from vCPU 0:
 *
 *   1. N event-channel round trips: IPI to vCPU 1, whose handler answers
 *      with an IPI to vCPU 0;
 *   2. N SGI round trips through GICD_SGIR (target list), answered the
 *      same way;
 *   3. a burst of self-SGIs (GICD_SGIR "this CPU" filter), one at a time,
 *      to see how many interrupts a second a vCPU can take: first waiting
 *      in WFI with IRQs masked and reading the GIC after it (wait_event),
 *   4. then spinning with IRQs unmasked, so that each one is taken as an
 *      IRQ exception in the middle of the loop, as a kernel takes them.
 *
 * Every handler checks it runs on the vCPU the interrupt was meant for.
 * Otherwise both vCPUs wait in WFI between interrupts (see wait_event).
 *
 * Bootargs: rounds=N (default 100), self=M (default 1000).
 */
#include "guest.h"

#define SGI_PING        1
#define SGI_SELF        2

static evtchn_port_t ipi_port[2];
static volatile uint32_t evt_count[2], sgi_count[2], self_count;
static volatile uint32_t wrong_cpu;
static volatile bool vcpu1_done;
static volatile int vcpu1_error;

static uint32_t ticks_to_ns32(uint64_t ticks)
{
    return (uint32_t)timer_ticks_to_ns(ticks);
}

static void report_rate(const char *what, long n, uint64_t ticks)
{
    uint64_t ns = timer_ticks_to_ns(ticks);

    if (n > 0)
        printk("%s: %ld interrupts in %u us: %u per second\n", what, n,
               (uint32_t)udiv64(ns, 1000, NULL),
               ns ? (uint32_t)udiv64((uint64_t)n * 1000000000ULL, ns, NULL) : 0);
}

/* Port ipi_port[n] is vCPU n's: count it, and vCPU 1 answers vCPU 0. */
static void on_ipi(evtchn_port_t port, void *arg)
{
    unsigned int want = (unsigned int)(uintptr_t)arg, cpu = smp_processor_id();

    (void)port;
    if (cpu != want)
        wrong_cpu++;
    evt_count[cpu & 1]++;
    if (cpu == 1 && !vcpu1_done) {
        int rc = evtchn_send(ipi_port[0]);

        if (rc < 0)
            vcpu1_error = rc;
    }
}

static void on_sgi(unsigned int irq, void *arg)
{
    unsigned int cpu = smp_processor_id();

    (void)irq;
    (void)arg;
    sgi_count[cpu & 1]++;
    if (cpu == 1)
        gic_send_sgi(SGI_PING, 1U << 0);
}

static void on_self(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    if (smp_processor_id() != 0)
        wrong_cpu++;
    self_count++;
}

static void vcpu1_main(void *arg)
{
    int rc;

    (void)arg;
    mmu_enable();
    gic_cpu_init();
    gic_enable_irq(SGI_PING);
    rc = evtchn_cpu_init();
    if (rc < 0) {
        vcpu1_error = rc;
        return;
    }
    printk("vcpu1: up, vcpu_info registered\n");
    rc = evtchn_send(ipi_port[0]);      /* ready */
    if (rc < 0) {
        vcpu1_error = rc;
        return;
    }
    wait_event(vcpu1_done);
    printk("vcpu1: took %u event-channel IPIs and %u SGIs\n", evt_count[1], sgi_count[1]);
    dmb();
    evtchn_send(ipi_port[0]);           /* leaving: vCPU 0 may stop waiting */
    /* returning makes the runtime call PSCI CPU_OFF */
}

static uint64_t round_trips(const char *what, uint32_t rounds, volatile uint32_t *count,
                            void (*kick)(void))
{
    uint64_t sum = 0, max = 0;

    for (uint32_t r = 1; r <= rounds; r++) {
        uint32_t want = *count + 1;
        uint64_t t0 = timer_count(), dt;

        kick();
        wait_event(*count >= want || vcpu1_error);
        if (vcpu1_error)
            test_failure("vcpu1: a hypercall returned %d", vcpu1_error);
        dt = irq_entry_count() - t0;
        sum += dt;
        max = dt > max ? dt : max;
    }
    printk("%s: %u round trips, avg %u ns, max %u ns\n", what, rounds,
           (uint32_t)udiv64(timer_ticks_to_ns(sum), rounds, NULL), ticks_to_ns32(max));
    return sum;
}

static void kick_evtchn(void)
{
    test_check("EVTCHNOP_send", evtchn_send(ipi_port[1]));
}

static void kick_sgi(void)
{
    gic_send_sgi(SGI_PING, 1U << 1);
}

int main(void)
{
    long rounds = bootarg_int("rounds", 100);
    long self = bootarg_int("self", 1000);
    uint64_t t0, dt;
    int rc;

    if (rounds < 1 || self < 0)
        test_failure("rounds must be positive and self non-negative");
    platform_init();
    test_check("evtchn_init", evtchn_init());
    irq_set_handler(SGI_PING, on_sgi, NULL);
    irq_set_handler(SGI_SELF, on_self, NULL);
    gic_enable_irq(SGI_PING);
    gic_enable_irq(SGI_SELF);

    for (unsigned int cpu = 0; cpu < 2; cpu++) {
        rc = test_check("EVTCHNOP_bind_ipi", evtchn_bind_ipi(cpu));
        ipi_port[cpu] = (evtchn_port_t)rc;
        test_check("evtchn_bind", evtchn_bind(ipi_port[cpu], on_ipi, (void *)(uintptr_t)cpu));
    }
    printk("vcpu0: IPI ports %u (vcpu0) and %u (vcpu1)\n", ipi_port[0], ipi_port[1]);

    test_check("PSCI CPU_ON", smp_start_cpu(1, vcpu1_main, NULL));
    wait_event(evt_count[0] >= 1 || vcpu1_error);
    if (vcpu1_error)
        test_failure("vcpu1: setup returned %d", vcpu1_error);
    printk("vcpu0: vcpu1 is ready\n");

    round_trips("evtchn ipi", (uint32_t)rounds, &evt_count[0], kick_evtchn);
    round_trips("sgi", (uint32_t)rounds, &sgi_count[0], kick_sgi);

    t0 = timer_count();
    for (uint32_t i = 1; i <= (uint32_t)self; i++) {
        gic_send_sgi_self(SGI_SELF);
        wait_event(self_count >= i);
    }
    dt = timer_count() - t0;
    report_rate("self-sgi", self, dt);

    t0 = timer_count();
    local_irq_enable();
    for (uint32_t i = 1; i <= (uint32_t)self; i++) {
        gic_send_sgi_self(SGI_SELF);
        while (self_count < (uint32_t)self + i)
            ;
    }
    local_irq_disable();
    dt = timer_count() - t0;
    report_rate("self-sgi as exceptions", self, dt);

    vcpu1_done = true;
    dsb();
    test_check("EVTCHNOP_send", evtchn_send(ipi_port[1]));      /* wake vCPU 1 to leave */
    wait_event(evt_count[0] >= (uint32_t)rounds + 2 || vcpu1_error);

    printk("vcpu0: took %u event-channel IPIs, %u SGIs from vcpu1, %u self-SGIs\n",
           evt_count[0], sgi_count[0], self_count);
    printk("upcalls: vcpu0 %u, vcpu1 %u; handlers on the wrong vcpu: %u\n", evtchn_upcalls(0),
           evtchn_upcalls(1), wrong_cpu);
    if (wrong_cpu)
        test_failure("%u interrupts were handled on the wrong vCPU", wrong_cpu);
    if (evt_count[0] != (uint32_t)rounds + 2 || evt_count[1] != (uint32_t)rounds + 1)
        test_failure("event-channel IPIs: vcpu0 took %u (expected %ld), vcpu1 %u (expected %ld)",
                     evt_count[0], rounds + 2, evt_count[1], rounds + 1);
    if (sgi_count[0] != (uint32_t)rounds || sgi_count[1] != (uint32_t)rounds)
        test_failure("SGIs: vcpu0 took %u, vcpu1 %u, expected %ld each", sgi_count[0],
                     sgi_count[1], rounds);
    if (self_count != 2 * (uint32_t)self)
        test_failure("self-SGIs: took %u of %ld", self_count, 2 * self);
    test_success();
}
