/*
 * GICv2 driver and interrupt dispatch for the guests.
 *
 * Xen gives a domU a virtual GICv2: the distributor is emulated, the CPU
 * interface is the hardware's virtual one (GICV).  Every interrupt is
 * Group 0 and priorities have 5 significant bits.  SGIs and PPIs (INTIDs
 * 0-31) are banked: each vCPU enables its own copy through the same
 * GICD_ISENABLER0 address.
 */
#include "guest.h"

#define GICD_CTLR               0x000
#define GICD_ISENABLER(n)       (0x100 + 4 * (n))
#define GICD_ICENABLER(n)       (0x180 + 4 * (n))
#define GICD_IPRIORITYR         0x400
#define GICD_SGIR               0xF00

#define GICC_CTLR               0x00
#define GICC_PMR                0x04
#define GICC_BPR                0x08
#define GICC_IAR                0x0C
#define GICC_EOIR               0x10

#define GICD_CTLR_ENABLE        1U
#define GICC_CTLR_ENABLE_GRP0   1U
#define GICC_IAR_INTID          0x3FFU

#define SGIR_FILTER_LIST        (0U << 24)
#define SGIR_FILTER_SELF        (2U << 24)
#define SGIR_TARGETS(mask)      (((mask) & 0xFFU) << 16)

struct irq_desc {
    irq_handler_t fn;
    void *arg;
};

static struct irq_desc irq_descs[GIC_NR_IRQS];
static uint32_t irq_counts[NR_CPUS][GIC_NR_IRQS];
static uint64_t entry_counts[NR_CPUS];

static inline volatile uint32_t *gicd(uint32_t off)
{
    return (volatile uint32_t *)(uintptr_t)(GUEST_GICD_BASE + off);
}

static inline volatile uint32_t *gicc(uint32_t off)
{
    return (volatile uint32_t *)(uintptr_t)(GUEST_GICC_BASE + off);
}

static unsigned int this_cpu(void)
{
    unsigned int cpu = smp_processor_id();

    return cpu < NR_CPUS ? cpu : 0;
}

void gic_map(void)
{
    /* GICD and GICC share one 1 MiB section in both guest layouts. */
    mmu_identity_map(GUEST_GICD_BASE, GUEST_GICC_BASE + 0x2000 - GUEST_GICD_BASE, MMU_DEVICE);
}

void gic_cpu_init(void)
{
    *gicc(GICC_PMR) = 0xFF;             /* every priority passes */
    *gicc(GICC_BPR) = 0;                /* no subpriority: one group priority each */
    *gicc(GICC_CTLR) = GICC_CTLR_ENABLE_GRP0;
    dsb();
}

void gic_init(void)
{
    *gicd(GICD_CTLR) = GICD_CTLR_ENABLE;
    gic_cpu_init();
}

void gic_enable_irq(unsigned int irq)
{
    *gicd(GICD_ISENABLER(irq / 32)) = 1U << (irq % 32);
    dsb();
}

void gic_disable_irq(unsigned int irq)
{
    *gicd(GICD_ICENABLER(irq / 32)) = 1U << (irq % 32);
    dsb();
}

void gic_set_priority(unsigned int irq, uint8_t prio)
{
    /* IPRIORITYR takes byte accesses: no read-modify-write of neighbours. */
    ((volatile uint8_t *)gicd(GICD_IPRIORITYR))[irq] = prio;
    dsb();
}

uint32_t gic_ack(void)
{
    return *gicc(GICC_IAR);
}

void gic_eoi(uint32_t iar)
{
    *gicc(GICC_EOIR) = iar;
}

void gic_send_sgi(unsigned int sgi, uint32_t cpu_mask)
{
    dsb();                              /* data for the target before its interrupt */
    *gicd(GICD_SGIR) = SGIR_FILTER_LIST | SGIR_TARGETS(cpu_mask) | (sgi & 0xF);
}

void gic_send_sgi_self(unsigned int sgi)
{
    dsb();
    *gicd(GICD_SGIR) = SGIR_FILTER_SELF | (sgi & 0xF);
}

void irq_set_handler(unsigned int irq, irq_handler_t fn, void *arg)
{
    uint32_t flags;

    if (irq >= GIC_NR_IRQS)
        test_failure("irq_set_handler: INTID %u is beyond the runtime's %u", irq, GIC_NR_IRQS);
    flags = local_irq_save();
    irq_descs[irq].arg = arg;
    irq_descs[irq].fn = fn;
    local_irq_restore(flags);
}

void gic_handle_irq(void)
{
    unsigned int cpu = this_cpu();

    for (;;) {
        uint32_t iar = gic_ack();
        unsigned int irq = iar & GICC_IAR_INTID;

        if (irq >= 1020)                /* spurious: nothing (more) is signalled */
            break;
        /* After the acknowledge: the interrupt was certainly pending by then,
         * so a timer handler comparing this with its deadline never sees a
         * tick "before" the comparator fired. */
        entry_counts[cpu] = timer_count();
        if (irq < GIC_NR_IRQS && irq_descs[irq].fn) {
            irq_counts[cpu][irq]++;
            irq_descs[irq].fn(irq, irq_descs[irq].arg);
        } else {
            /* Nobody asked for it: keep it from coming back, as Linux does
             * with an interrupt that has no action. */
            printk("irq %u on vcpu %u has no handler: disabled\n", irq, cpu);
            gic_disable_irq(irq);
        }
        gic_eoi(iar);
    }
}

/* The IRQ vector's body (head.S), over the runtime's weak crash (traps.c). */
void irq_handler(uint32_t pc)
{
    (void)pc;
    gic_handle_irq();
}

uint64_t irq_entry_count(void)
{
    return entry_counts[this_cpu()];
}

uint32_t irq_count(unsigned int cpu, unsigned int irq)
{
    return cpu < NR_CPUS && irq < GIC_NR_IRQS ? irq_counts[cpu][irq] : 0;
}

void irq_wait_masked(void)
{
    dsb();
    wfi();
    gic_handle_irq();
}
