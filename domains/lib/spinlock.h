/*
 * Exclusive-monitor primitives the way Linux's arm32 kernel writes them: an
 * LDREX/STREX atomic increment and a ticket spinlock whose waiters sleep in
 * WFE and whose owner wakes them with DSB + SEV on unlock (arch_spin_lock,
 * arch_spin_unlock).  Header only: a guest that includes it gets inline
 * code, the runtime's objects do not change.
 */
#ifndef SPINLOCK_H
#define SPINLOCK_H

#include "guest.h"

/* *p += 1 with LDREX/STREX, retried until the store-exclusive succeeds. */
static inline void atomic_inc(volatile uint32_t *p)
{
    uint32_t val, fail;

    __asm__ volatile("1: ldrex   %0, [%2]\n"
                     "   add     %0, %0, #1\n"
                     "   strex   %1, %0, [%2]\n"
                     "   teq     %1, #0\n"
                     "   bne     1b"
                     : "=&r"(val), "=&r"(fail) : "r"(p) : "cc", "memory");
}

/* *p += 1 with one plain load and one plain store (no atomicity: the caller
 * owns the word, or holds a lock). */
static inline void plain_inc(volatile uint32_t *p)
{
    uint32_t val;

    __asm__ volatile("ldr     %0, [%1]\n"
                     "add     %0, %0, #1\n"
                     "str     %0, [%1]"
                     : "=&r"(val) : "r"(p) : "memory");
}

/* Halfword `next` (high) is the next ticket to hand out, `owner` (low) the
 * ticket being served: the lock is free when they are equal. */
typedef struct {
    volatile uint32_t slock;
} spinlock_t;

#define SPINLOCK_INIT           { 0 }
#define TICKET_SHIFT            16

static inline uint16_t spin_owner(const spinlock_t *lock)
{
    return *(const volatile uint16_t *)&lock->slock;
}

/* Take a ticket (next += 1 with LDREX/STREX), then wait in WFE until it is
 * served; every re-check after a WFE runs the same instructions at the same
 * addresses, as Linux's loop does. */
static inline void spin_lock(spinlock_t *lock)
{
    uint32_t old, newval, fail;
    uint16_t ticket, owner;

    __asm__ volatile("1: ldrex   %0, [%3]\n"
                     "   add     %1, %0, %4\n"
                     "   strex   %2, %1, [%3]\n"
                     "   teq     %2, #0\n"
                     "   bne     1b"
                     : "=&r"(old), "=&r"(newval), "=&r"(fail)
                     : "r"(&lock->slock), "I"(1 << TICKET_SHIFT) : "cc", "memory");
    ticket = (uint16_t)(old >> TICKET_SHIFT);
    owner = (uint16_t)old;
    while (ticket != owner) {
        wfe();
        owner = spin_owner(lock);
    }
    dmb();                              /* the critical section after the lock */
}

/* owner += 1 with a plain halfword store (only the holder writes it), then
 * DSB so the store is visible before SEV wakes the waiters. */
static inline void spin_unlock(spinlock_t *lock)
{
    volatile uint16_t *owner = (volatile uint16_t *)&lock->slock;

    dmb();                              /* the critical section before the release */
    *owner = (uint16_t)(*owner + 1);
    dsb();
    sev();
}

#endif /* SPINLOCK_H */
