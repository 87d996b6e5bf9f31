/*
 * PSCI calls and secondary vCPU start-up.
 *
 * CPU_ON enters secondary_entry (head.S) in SVC mode with the MMU off and
 * r0 = context id, which is the vCPU index: head.S picks that vCPU's stacks
 * from it and then calls secondary_start() here.
 */
#include "guest.h"

struct cpu_boot {
    void (*fn)(void *);
    void *arg;
};

static struct cpu_boot cpu_boot[NR_CPUS];

int psci_version(void)
{
    return psci_call(PSCI_0_2_FN_PSCI_VERSION, 0, 0, 0);
}

int psci_cpu_on(uint32_t target_mpidr, uint32_t entry, uint32_t context_id)
{
    return psci_call(PSCI_0_2_FN_CPU_ON, target_mpidr, entry, context_id);
}

int psci_cpu_off(void)
{
    return psci_call(PSCI_0_2_FN_CPU_OFF, 0, 0, 0);
}

int psci_affinity_info(uint32_t target_mpidr, uint32_t level)
{
    return psci_call(PSCI_0_2_FN_AFFINITY_INFO, target_mpidr, level, 0);
}

__noreturn void psci_system_off(void)
{
    int rc = psci_call(PSCI_0_2_FN_SYSTEM_OFF, 0, 0, 0);

    printk("Test result: FAILURE (PSCI SYSTEM_OFF returned %d)\n", rc);
    halt();
}

int smp_start_cpu(unsigned int cpu, void (*fn)(void *), void *arg)
{
    if (cpu == 0 || cpu >= NR_CPUS || !fn)
        return PSCI_INVALID_PARAMETERS;
    cpu_boot[cpu].fn = fn;
    cpu_boot[cpu].arg = arg;
    /* The new vCPU reads this with its caches off, so it must be in memory,
     * not only in this vCPU's data cache. */
    dcache_clean_range(&cpu_boot[cpu], sizeof(cpu_boot[cpu]));
    return psci_cpu_on(vcpu_mpidr(cpu), (uint32_t)(uintptr_t)secondary_entry, cpu);
}

__noreturn void secondary_start(unsigned int cpu)
{
    struct cpu_boot b = cpu_boot[cpu];
    int rc;

    b.fn(b.arg);
    rc = psci_cpu_off();
    printk("Test result: FAILURE (PSCI CPU_OFF returned %d)\n", rc);
    halt();
}
