/*
 * hello: the first xenpy guest.  It checks the basic guest ABI end to end:
 * console output, xen_version, a hypercall pointer that only makes sense
 * through the guest's own page tables, and a second vCPU started with PSCI.
 */
#include "guest.h"

/* An alias of the first MiB of RAM: a VA with no RAM behind it in the
 * guest physical map, so only a stage-1 walk finds the buffer. */
#define ALIAS_VA            0x40000000U
#define IDENTITY_SIZE       (64U << 20)

/* vCPU 1 may take a while to be scheduled: bound the wait in yields (the
 * guest has no trusted clock yet).  At ~50 us per yield in a Python
 * hypervisor this gives up after about 10 s. */
#define YIELD_LIMIT         200000

static volatile uint32_t vcpu1_reported;

static char mmu_msg[] = "mmu: on\n";

static void show_version(void)
{
    static xen_extraversion_t extra;
    static xen_capabilities_info_t caps;
    static struct xen_compile_info info;
    struct xen_feature_info fi = { .submap_idx = 0 };
    int ver;

    ver = test_check("xen_version(XENVER_version)",
                     HYPERVISOR_xen_version(XENVER_version, NULL));
    test_check("xen_version(XENVER_extraversion)",
               HYPERVISOR_xen_version(XENVER_extraversion, extra));
    extra[sizeof(extra) - 1] = '\0';
    printk("Xen version %d.%d%s\n", ver >> 16, ver & 0xffff, extra);

    test_check("xen_version(XENVER_capabilities)",
               HYPERVISOR_xen_version(XENVER_capabilities, caps));
    caps[sizeof(caps) - 1] = '\0';
    printk("caps: %s\n", caps);

    test_check("xen_version(XENVER_get_features)",
               HYPERVISOR_xen_version(XENVER_get_features, &fi));
    printk("features: %08x\n", fi.submap);

    test_check("xen_version(XENVER_compile_info)",
               HYPERVISOR_xen_version(XENVER_compile_info, &info));
    info.compile_by[sizeof(info.compile_by) - 1] = '\0';
    printk("compiled by %s\n", info.compile_by);
}

static void mmu_on(void)
{
    uint32_t off = (uint32_t)(uintptr_t)mmu_msg - GUEST_RAM_BASE;

    if (off + sizeof(mmu_msg) > SECTION_SIZE)
        test_failure("mmu_msg at %p is outside the aliased MiB", (void *)mmu_msg);

    mmu_identity_map(GUEST_RAM_BASE, IDENTITY_SIZE, MMU_NORMAL);
    mmu_map(ALIAS_VA, GUEST_RAM_BASE, SECTION_SIZE, MMU_NORMAL);
    mmu_enable();

    /* Same bytes, seen through the alias: the hypervisor must translate
     * ALIAS_VA + off through our table to find them. */
    test_check("console_io(CONSOLEIO_write) through the alias",
               console_write((const char *)(uintptr_t)(ALIAS_VA + off),
                             sizeof(mmu_msg) - 1));
}

static void vcpu1_main(void *arg)
{
    (void)arg;
    mmu_enable();
    printk("vcpu1: up\n");
    dmb();                      /* the line is out before the flag is seen */
    vcpu1_reported = 1;
    dsb();
    /* returning makes the runtime call PSCI CPU_OFF */
}

static void start_vcpu1(void)
{
    test_check("PSCI CPU_ON", smp_start_cpu(1, vcpu1_main, NULL));
    for (int i = 0; !vcpu1_reported; i++) {
        if (i == YIELD_LIMIT)
            test_failure("vcpu1 did not start");
        test_check("sched_op(SCHEDOP_yield)", HYPERVISOR_sched_op(SCHEDOP_yield, NULL));
    }
    dmb();
    printk("vcpu0: vcpu1 reported\n");
}

int main(void)
{
    printk("Hello from xenpy guest\n");
    show_version();
    mmu_on();
    start_vcpu1();
    test_success();
}
