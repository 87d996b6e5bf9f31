/*
 * Ending a guest: the "Test result: ..." line of the Xen Test Framework
 * convention, then SCHEDOP_shutdown.  Like XTF, every result powers the
 * domain off; only a crash uses SHUTDOWN_crash.
 */
#include "guest.h"

__noreturn void halt(void)
{
    local_irq_disable();
    for (;;)
        wfi();
}

__noreturn void guest_shutdown(unsigned int reason)
{
    struct sched_shutdown arg = { .reason = reason };
    int rc = HYPERVISOR_sched_op(SCHEDOP_shutdown, &arg);

    /* Xen does not return to a vCPU of a domain that shut down. */
    if (rc < 0)
        printk("Test result: FAILURE (sched_op(SCHEDOP_shutdown) returned %d)\n", rc);
    halt();
}

__noreturn void test_success(void)
{
    printk("Test result: SUCCESS\n");
    guest_shutdown(SHUTDOWN_poweroff);
}

__noreturn void test_failure(const char *fmt, ...)
{
    va_list ap;

    console_flush();
    printk("Test result: FAILURE (");
    va_start(ap, fmt);
    vprintk(fmt, ap);
    va_end(ap);
    printk(")\n");
    guest_shutdown(SHUTDOWN_poweroff);
}

int test_check(const char *what, int rc)
{
    if (rc < 0)
        test_failure("%s returned %d", what, rc);
    return rc;
}

__noreturn void crash(const char *what, uint32_t pc)
{
    console_flush();
    printk("Test result: CRASH (%s) at %p\n", what, (void *)pc);
    guest_shutdown(SHUTDOWN_crash);
}
