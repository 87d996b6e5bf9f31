/*
 * The virtual generic timer (CNTV_*): the counter a domain sees (CNTVCT,
 * which Xen starts near zero per domain through CNTVOFF), its frequency,
 * and the comparator that raises PPI 27 when CNTVCT >= CNTV_CVAL while
 * CNTV_CTL.ENABLE is set and IMASK clear.  The interrupt is level: it stays
 * asserted until the comparator is moved past the counter or disabled.
 */
#include "guest.h"

#define NSEC_PER_SEC    1000000000ULL

uint32_t timer_freq(void)
{
    return READ_CP32(0, c14, c0, 0);    /* CNTFRQ */
}

uint64_t timer_count(void)
{
    uint32_t lo, hi;

    isb();                              /* no read of the counter ahead of program order */
    __asm__ volatile("mrrc p15, 1, %0, %1, c14" : "=r"(lo), "=r"(hi) :: "memory");
    return (uint64_t)hi << 32 | lo;
}

uint64_t timer_get_cval(void)
{
    uint32_t lo, hi;

    __asm__ volatile("mrrc p15, 3, %0, %1, c14" : "=r"(lo), "=r"(hi) :: "memory");
    return (uint64_t)hi << 32 | lo;
}

void timer_set_cval(uint64_t cval)
{
    __asm__ volatile("mcrr p15, 3, %0, %1, c14"
                     :: "r"((uint32_t)cval), "r"((uint32_t)(cval >> 32)) : "memory");
    isb();
}

void timer_set_tval(int32_t tval)
{
    WRITE_CP32((uint32_t)tval, 0, c14, c3, 0);
    isb();
}

uint32_t timer_get_ctl(void)
{
    return READ_CP32(0, c14, c3, 1);
}

void timer_set_ctl(uint32_t ctl)
{
    WRITE_CP32(ctl, 0, c14, c3, 1);
    isb();
}

void timer_arm(uint64_t cval)
{
    /* Comparator first: enabling with a stale CVAL could fire at once. */
    timer_set_cval(cval);
    timer_set_ctl(CNT_CTL_ENABLE);
}

void timer_disarm(void)
{
    timer_set_ctl(0);
}

uint64_t udiv64(uint64_t n, uint64_t d, uint64_t *rem)
{
    uint64_t q = 0, r = 0;

    if (!d)
        test_failure("udiv64: division by zero");
    if (!(n >> 32) && !(d >> 32)) {     /* Cortex-A7 divides 32-bit numbers itself */
        q = (uint32_t)n / (uint32_t)d;
        r = (uint32_t)n - (uint32_t)q * (uint32_t)d;
    } else {
        for (int bit = 63; bit >= 0; bit--) {
            r = (r << 1) | ((n >> bit) & 1);
            if (r >= d) {
                r -= d;
                q |= 1ULL << bit;
            }
        }
    }
    if (rem)
        *rem = r;
    return q;
}

/* Split at whole seconds so the products cannot overflow 64 bits. */
uint64_t timer_ticks_to_ns(uint64_t ticks)
{
    uint64_t rem, secs = udiv64(ticks, timer_freq(), &rem);

    return secs * NSEC_PER_SEC + udiv64(rem * NSEC_PER_SEC, timer_freq(), NULL);
}

uint64_t timer_ns_to_ticks(uint64_t ns)
{
    uint64_t rem, secs = udiv64(ns, NSEC_PER_SEC, &rem);

    return secs * timer_freq() + udiv64(rem * timer_freq(), NSEC_PER_SEC, NULL);
}

void timer_irq_init(irq_handler_t fn, void *arg)
{
    irq_set_handler(GUEST_TIMER_VIRT_PPI, fn, arg);
    gic_enable_irq(GUEST_TIMER_VIRT_PPI);
}
