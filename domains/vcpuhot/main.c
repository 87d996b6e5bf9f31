/*
 * vcpuhot: vCPU hotplug as the toolstack asks for it, the way Linux's Xen guests do it.
 *
 * `xl vcpu-set DOMAIN N` writes ~/cpu/<n>/availability "online" or "offline" (libxl); the guest
 * watches vCPU 1's node. "offline": vCPU 1 leaves its work loop and the runtime stops it with
 * PSCI CPU_OFF; vCPU 0 waits until PSCI AFFINITY_INFO says it is off. "online": vCPU 0 starts it
 * again with PSCI CPU_ON. After one offline and one online it prints SUCCESS and powers off.
 */
#include "guest.h"

#define YIELD_LIMIT     200000
#define AFFINITY_OFF    1          /* PSCI AFFINITY_INFO: 0 on, 1 off, 2 on pending */

static volatile int vcpu1_running, vcpu1_stop;

static void check(const char *what, int rc)
{
    if (rc < 0)
        test_failure("%s: %s (%d)", what, xenbus_errname(rc), rc);
}

static void vcpu1_main(void *arg)
{
    (void)arg;
    vcpu1_running = 1;
    dsb();
    while (!vcpu1_stop)
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    vcpu1_running = 0;
    dsb();
    /* returning makes the runtime call PSCI CPU_OFF */
}

static void bring_up(void)
{
    vcpu1_stop = 0;
    dsb();
    test_check("PSCI CPU_ON", smp_start_cpu(1, vcpu1_main, NULL));
    for (int i = 0; !vcpu1_running; i++) {
        if (i == YIELD_LIMIT)
            test_failure("vcpu1 did not start");
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }
}

static void take_down(void)
{
    vcpu1_stop = 1;
    dsb();
    for (int i = 0; psci_affinity_info(vcpu_mpidr(1), 0) != AFFINITY_OFF; i++) {
        if (i == YIELD_LIMIT)
            test_failure("vcpu1 did not stop");
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }
}

int main(void)
{
    char path[64], token[16], state[16];
    int online = 1, offs = 0, ons = 0;

    platform_init();
    test_check("evtchn_init", evtchn_init());
    test_check("xenbus_init", xenbus_init());
    bring_up();
    check("watch", xenbus_watch("cpu/1/availability", "vcpu1"));
    printk("vcpuhot: vcpu1 online, watching cpu/1/availability\n");
    for (;;) {
        check("read watch", xenbus_read_watch(path, sizeof(path), token, sizeof(token)));
        if (xenbus_read(XBT_NIL, "cpu/1/availability", state, sizeof(state)) < 0)
            continue;
        if (online && !strcmp(state, "offline")) {
            take_down();
            online = 0;
            offs++;
            printk("vcpuhot: vcpu1 offline (PSCI CPU_OFF)\n");
        } else if (!online && !strcmp(state, "online")) {
            bring_up();
            online = 1;
            ons++;
            printk("vcpuhot: vcpu1 online (PSCI CPU_ON)\n");
        }
        if (offs && ons)
            test_success();
    }
}
