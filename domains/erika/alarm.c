/*
 * The system counter and its alarms.
 *
 * The counter is a hardware counter in OSEK terms: its value is derived
 * from CNTVCT (one tick per OS_TICK_NS since StartOS), not incremented by a
 * periodic interrupt.  The virtual timer's comparator is set to the CNTVCT
 * of the earliest armed alarm, so PPI 27 fires only when an alarm is due
 * and the lateness of each expiry is measured against an exact due time.
 * Internally alarm times are 64-bit counter ticks (no wrap); the API's
 * TickType values are those modulo 2^32 (OSMAXALLOWEDVALUE + 1).
 *
 * A cyclic alarm's next due time is its previous due time plus the cycle,
 * so expiries do not drift however late one of them is handled.
 */
#include "ee.h"
#include "kernel.h"

struct alarm_state {
    bool armed;
    uint64_t due;                       /* counter tick of the next expiry */
    uint64_t due_cnt;                   /* ... and its CNTVCT */
    TickType cycle;                     /* 0: single shot */
    /* lateness of past expiries, in CNTVCT ticks */
    uint32_t n;
    uint64_t late_min, late_max, late_sum;
};

static struct alarm_state alarms[OS_NR_ALARMS_MAX];
static uint64_t base;                   /* CNTVCT at counter value 0 */

static uint64_t tick_to_cnt(uint64_t tick)
{
    return base + timer_ns_to_ticks(tick * OS_TICK_NS);
}

/* The counter value now: the last tick whose CNTVCT has been reached (the
 * two conversions round differently, hence the correction). */
static uint64_t now_tick(void)
{
    uint64_t now = timer_count();
    uint64_t t = udiv64(timer_ticks_to_ns(now - base), OS_TICK_NS, NULL);

    while (tick_to_cnt(t + 1) <= now)
        t++;
    return t;
}

/* Comparator at the earliest armed alarm; IRQs masked. */
static void program(void)
{
    uint64_t next = UINT64_MAX;

    for (unsigned int i = 0; i < os_nr_alarms; i++)
        if (alarms[i].armed && alarms[i].due_cnt < next)
            next = alarms[i].due_cnt;
    if (next == UINT64_MAX)
        timer_disarm();
    else
        timer_arm(next);                /* a CVAL in the past fires at once */
}

static void expire(AlarmType id, uint64_t now)
{
    struct alarm_state *a = &alarms[id];
    uint64_t late = now - a->due_cnt;

    if (!a->n || late < a->late_min)
        a->late_min = late;
    if (late > a->late_max)
        a->late_max = late;
    a->late_sum += late;
    a->n++;
    if (a->cycle) {
        a->due += a->cycle;
        a->due_cnt = tick_to_cnt(a->due);
    } else {
        a->armed = false;
    }
    if (os_alarms[id].callback)
        os_alarms[id].callback();
    else
        ActivateTask(os_alarms[id].task);       /* queued: we are at ISR level */
}

/* PPI 27: every alarm due by now expires once; one that is due again
 * already (a cycle shorter than this handler took) re-fires the level
 * interrupt after the EOI instead of looping here. */
static void counter_isr(unsigned int irq, void *arg)
{
    uint64_t now = timer_count();

    (void)irq;
    (void)arg;
    os_isr_enter();
    for (unsigned int i = 0; i < os_nr_alarms; i++)
        if (alarms[i].armed && alarms[i].due_cnt <= now)
            expire((AlarmType)i, now);
    program();
    os_isr_exit();
}

void os_counter_init(void)
{
    timer_disarm();
    base = timer_count();
    timer_irq_init(counter_isr, NULL);
}

void os_counter_stop(void)
{
    timer_disarm();
}

static StatusType arm(AlarmType id, uint64_t due, TickType cycle, const char *service)
{
    uint32_t flags;

    if (cycle && cycle < OSMINCYCLE)
        return os_error(service, id, E_OS_VALUE);
    flags = local_irq_save();
    if (alarms[id].armed) {
        local_irq_restore(flags);
        return os_error(service, id, E_OS_STATE);
    }
    alarms[id].armed = true;
    alarms[id].due = due;
    alarms[id].due_cnt = tick_to_cnt(due);
    alarms[id].cycle = cycle;
    program();
    local_irq_restore(flags);
    return E_OK;
}

StatusType SetRelAlarm(AlarmType id, TickType increment, TickType cycle)
{
    if (id >= os_nr_alarms)
        return os_error("SetRelAlarm", id, E_OS_ID);
    if (!increment)
        return os_error("SetRelAlarm", id, E_OS_VALUE);
    return arm(id, now_tick() + increment, cycle, "SetRelAlarm");
}

StatusType SetAbsAlarm(AlarmType id, TickType start, TickType cycle)
{
    uint64_t now, due;

    if (id >= os_nr_alarms)
        return os_error("SetAbsAlarm", id, E_OS_ID);
    /* The next time the counter reads `start`: this lap or the next one. */
    now = now_tick();
    due = (now & ~(uint64_t)OSMAXALLOWEDVALUE) | start;
    if (due <= now)
        due += (uint64_t)OSMAXALLOWEDVALUE + 1;
    return arm(id, due, cycle, "SetAbsAlarm");
}

StatusType CancelAlarm(AlarmType id)
{
    uint32_t flags;

    if (id >= os_nr_alarms)
        return os_error("CancelAlarm", id, E_OS_ID);
    flags = local_irq_save();
    if (!alarms[id].armed) {
        local_irq_restore(flags);
        return os_error("CancelAlarm", id, E_OS_NOFUNC);
    }
    alarms[id].armed = false;
    program();
    local_irq_restore(flags);
    return E_OK;
}

StatusType GetAlarm(AlarmType id, TickRefType remaining)
{
    uint32_t flags;
    uint64_t now;

    if (id >= os_nr_alarms)
        return os_error("GetAlarm", id, E_OS_ID);
    flags = local_irq_save();
    if (!alarms[id].armed) {
        local_irq_restore(flags);
        return os_error("GetAlarm", id, E_OS_NOFUNC);
    }
    now = now_tick();
    *remaining = alarms[id].due > now ? (TickType)(alarms[id].due - now) : 0;
    local_irq_restore(flags);
    return E_OK;
}

StatusType GetCounterValue(TickRefType value)
{
    *value = (TickType)now_tick();
    return E_OK;
}

StatusType GetElapsedValue(TickRefType value, TickRefType elapsed)
{
    TickType now = (TickType)now_tick();

    *elapsed = now - *value;            /* modulo the counter's range */
    *value = now;
    return E_OK;
}

/* ---- jitter -------------------------------------------------------------------- */

/* Saturating: a lateness beyond 4.29 s reads as 4.29 s. */
static uint32_t ticks_to_ns32(uint64_t ticks)
{
    uint64_t ns = timer_ticks_to_ns(ticks);

    return ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

StatusType GetAlarmJitter(AlarmType id, struct os_jitter *j)
{
    struct alarm_state a;
    uint32_t flags;

    if (id >= os_nr_alarms)
        return os_error("GetAlarmJitter", id, E_OS_ID);
    flags = local_irq_save();
    a = alarms[id];
    local_irq_restore(flags);
    j->n = a.n;
    j->min_ns = a.n ? ticks_to_ns32(a.late_min) : 0;
    j->max_ns = a.n ? ticks_to_ns32(a.late_max) : 0;
    j->avg_ns = a.n ? ticks_to_ns32(udiv64(a.late_sum, a.n, NULL)) : 0;
    return E_OK;
}

void os_print_alarm_jitter(AlarmType id)
{
    struct os_jitter j;

    if (GetAlarmJitter(id, &j) != E_OK)
        return;
    printk("alarm jitter: min %u us, max %u us, avg %u us over %u expiries\n",
           j.min_ns / 1000, j.max_ns / 1000, j.avg_ns / 1000, j.n);
}
