/*
 * wfe: two vCPUs contend for a ticket spinlock whose waiter sleeps in WFE,
 * the way Linux's arch_spin_lock does: the waiter re-reads the lock after
 * each WFE and goes back to WFE at the same address while it is still
 * held; the holder releases with a store, DSB and SEV.
 *
 * The vCPUs take turns: in round r the holder (vCPU r % 2) takes the lock,
 * waits until the other vCPU has drawn its ticket (and so is in its WFE
 * loop), keeps the lock for `hold_us` more and releases it.  The waiter
 * then gets the lock, checks that nobody else is inside, and releases it.
 * WFE may end early (the waiter just looks again), but it is never an
 * undefined instruction, however many times it runs at one address.
 *
 * Bootargs: rounds=N (default 20), hold_us=H (default 2000).
 */
#include "guest.h"
#include "spinlock.h"

static spinlock_t lock = SPINLOCK_INIT;
static volatile uint32_t inside;        /* vCPUs in the critical section */
static volatile uint32_t round_done;    /* the last round both vCPUs finished */
static volatile uint32_t waiter_done;   /* the last round whose waiter got the lock */
static volatile uint32_t overlaps;
static volatile bool vcpu1_up;
static uint32_t rounds;
static uint64_t hold_ticks;

/* Tickets drawn but not yet served: 1 while only the holder has one. */
static uint32_t queued(void)
{
    uint32_t v = lock.slock;

    return (uint16_t)((v >> TICKET_SHIFT) - (v & 0xFFFFU));
}

static void enter(void)
{
    if (__atomic_add_fetch(&inside, 1, __ATOMIC_SEQ_CST) != 1)
        overlaps++;
}

static void leave(void)
{
    __atomic_sub_fetch(&inside, 1, __ATOMIC_SEQ_CST);
}

static void hold(uint32_t r)
{
    uint64_t until;

    spin_lock(&lock);
    enter();
    while (queued() < 2)                /* the waiter has drawn its ticket */
        ;
    until = timer_count() + hold_ticks;
    while (timer_count() < until)
        ;
    leave();
    spin_unlock(&lock);
    while (waiter_done != r)
        ;
}

static void wait_turn(uint32_t r)
{
    while (queued() == 0)               /* the holder has the lock */
        ;
    spin_lock(&lock);                   /* WFE until the holder's SEV */
    enter();
    leave();
    spin_unlock(&lock);
    waiter_done = r;
    dsb();
}

/* Both vCPUs: the rounds, in step (round_done is the barrier). */
static void play(unsigned int cpu)
{
    for (uint32_t r = 1; r <= rounds; r++) {
        while (round_done != r - 1)
            ;
        if (r % 2 == cpu)
            hold(r);
        else
            wait_turn(r);
        if (cpu == 0) {
            while (waiter_done != r)
                ;
            round_done = r;
            dsb();
        }
    }
}

static void vcpu1_main(void *arg)
{
    (void)arg;
    mmu_enable();
    vcpu1_up = true;
    dsb();
    play(1);
}

int main(void)
{
    long n = bootarg_int("rounds", 20);
    long hold_us = bootarg_int("hold_us", 2000);

    if (n < 1 || n > 100000 || hold_us < 0 || hold_us > 1000000)
        test_failure("rounds must be 1..100000 and hold_us 0..1000000");
    rounds = (uint32_t)n;
    platform_init();
    hold_ticks = timer_ns_to_ticks((uint64_t)hold_us * 1000);
    test_check("PSCI CPU_ON", smp_start_cpu(1, vcpu1_main, NULL));
    while (!vcpu1_up)
        ;
    printk("wfe: %u rounds, the holder keeps the lock %ld us after the waiter queues\n",
           rounds, hold_us);
    play(0);
    printk("wfe: %u rounds, lock now %08x, %u overlaps\n", round_done, lock.slock, overlaps);
    if (overlaps)
        test_failure("two vCPUs were inside the lock at once %u times", overlaps);
    if (lock.slock != (2 * rounds << TICKET_SHIFT | 2 * rounds))
        test_failure("lock word %08x after %u rounds", lock.slock, rounds);
    test_success();
}
