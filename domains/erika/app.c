/*
 * The startup application of the ERIKA-style domU, and its configuration
 * (what an OIL file would generate).
 *
 *   TaskInit       prio 10, autostart: drives PD1 high, starts the heartbeat,
 *                  sends itself an event (an IPI event channel), starts the
 *                  dom0 command server (pin_server.c)
 *   TaskCommand    prio 9: serves one dom0 pin command, activated from its
 *                  event channel's handler
 *   TaskEvent      prio 8: activated by that event's handler (PPI 31, ISR level)
 *   TaskHeartbeat  prio 5: activated by AlarmHeartbeat every period
 *   TaskReport     prio 3: the summary, activated by the N-th heartbeat; it
 *                  runs once the heartbeats queued by then are done
 *   TaskBackground prio 1: computes while the first half of the beats
 *                  preempt it; the rest find the kernel idle in WFI
 *
 * Bootargs (the cfg's extra=): beats=N (default 50), period_ms=P (default
 * 10), deadline_us=D (a heartbeat later than D us is a missed deadline; 0,
 * the default, checks none), exit=1 to power off after the result instead of
 * idling on, and on a failed check; without it a failure (a missed deadline,
 * late heartbeats overflowing their activations) is reported and the RTOS
 * runs on.
 */
#include "ee.h"
#include "gpio.h"
#include "pin_server.h"

enum { TaskInit, TaskCommand, TaskEvent, TaskReport, TaskHeartbeat, TaskBackground };
enum { AlarmHeartbeat };
enum { ResHeartbeat };

TASK(TaskInit);
TASK(TaskCommand);
TASK(TaskEvent);
TASK(TaskReport);
TASK(TaskHeartbeat);
TASK(TaskBackground);

const struct os_task_cfg os_tasks[] = {
    [TaskInit]       = { "TaskInit", FuncTaskInit, 10, 1, true },
    /* one command is in flight at a time; a spare activation absorbs a
     * stray notification */
    [TaskCommand]    = { "TaskCommand", FuncTaskCommand, 9, 2, false },
    [TaskEvent]      = { "TaskEvent", FuncTaskEvent, 8, 1, false },
    [TaskReport]     = { "TaskReport", FuncTaskReport, 3, 1, false },
    /* a few queued activations ride out a host hiccup longer than a period */
    [TaskHeartbeat]  = { "TaskHeartbeat", FuncTaskHeartbeat, 5, 4, false },
    [TaskBackground] = { "TaskBackground", FuncTaskBackground, 1, 1, false },
};
const unsigned int os_nr_tasks = ARRAY_SIZE(os_tasks);

const struct os_alarm_cfg os_alarms[] = {
    [AlarmHeartbeat] = { "AlarmHeartbeat", TaskHeartbeat, NULL },
};
const unsigned int os_nr_alarms = ARRAY_SIZE(os_alarms);

const struct os_resource_cfg os_resources[] = {
    [ResHeartbeat] = { "ResHeartbeat", 5 },     /* TaskHeartbeat, TaskBackground */
};
const unsigned int os_nr_resources = ARRAY_SIZE(os_resources);

static uint32_t nr_beats, period_ms, deadline_us;
static bool exit_after;
static int pd1;

/* The heartbeat: its level toggles with every beat, so level == beats & 1
 * whenever nobody is half way through an update. */
static struct {
    uint32_t beats;
    uint32_t level;
} hb;
static volatile uint32_t beats_seen;
static uint32_t inconsistent, background_loops, errors;
static uint32_t refused;                /* activations refused: the task was still pending */
static bool background_done;
static int event_port;
static volatile uint32_t events_at_isr_level;

void ErrorHook(StatusType error)
{
    errors++;
    if (error == E_OS_LIMIT)
        refused++;
}

/* PPI 31 upcall, ISR level: hand the work to a task, as the dom0 command
 * server will. */
static void event_handler(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;
    if (os_in_isr())
        events_at_isr_level++;
    ActivateTask(TaskEvent);
}

TASK(TaskEvent)
{
    printk("TaskEvent: activated by the upcall of port %d (%u at ISR level)\n", event_port,
           events_at_isr_level);
    TerminateTask();
}

TASK(TaskInit)
{
    int bad = gpio_pin('D', 28);        /* PD0-PD27 only */

    test_check("gpio_output(PD1)", gpio_output(pd1, 1));
    printk("TaskInit: PD1 -> high (read back %d)\n", gpio_read(pd1));
    printk("TaskInit: PD28 refused: %d\n", bad);

    SetRelAlarm(AlarmHeartbeat, period_ms, period_ms);
    printk("TaskInit: AlarmHeartbeat every %u ms, %u beats\n", period_ms, nr_beats);
    ActivateTask(TaskBackground);       /* lower priority: runs after this ends */

    /* TaskEvent (prio 8) waits for this task's end, however soon the
     * upcall comes. */
    event_port = test_check("evtchn_bind_ipi", evtchn_bind_ipi(0));
    test_check("os_evtchn_attach", os_evtchn_attach((evtchn_port_t)event_port, event_handler,
                                                    NULL));
    test_check("evtchn_send", evtchn_send((evtchn_port_t)event_port));
    printk("TaskInit: sent an event on port %d\n", event_port);
    pin_server_start(TaskCommand);      /* the kernel runs on without it */
    TerminateTask();
}

TASK(TaskCommand)
{
    pin_server_serve();
    TerminateTask();
}

TASK(TaskHeartbeat)
{
    uint32_t n, level;
    uint32_t every = nr_beats >= 5 ? nr_beats / 5 : 1;

    GetResource(ResHeartbeat);
    hb.level ^= 1;
    n = ++hb.beats;
    level = hb.level;
    ReleaseResource(ResHeartbeat);
    beats_seen = n;

    if (n % every == 0)
        printk("heartbeat %u/%u: %s\n", n, nr_beats, level ? "on" : "off");
    if (n == nr_beats) {
        /* An expiry that came before this cancel has its heartbeat queued
         * already: it still runs, and counts. */
        CancelAlarm(AlarmHeartbeat);
        ActivateTask(TaskReport);
    }
    TerminateTask();
}

/* Some integer work to be preempted in. */
static uint32_t compute(uint32_t x)
{
    for (int i = 0; i < 1000; i++)
        x = x * 1103515245U + 12345U;
    return x;
}

static volatile uint32_t work;         /* keeps the work from being optimised out */

TASK(TaskBackground)
{
    uint32_t x = 1;

    while (beats_seen < nr_beats / 2) {
        x = compute(x);
        background_loops++;
        GetResource(ResHeartbeat);      /* a heartbeat cannot land in between */
        if (hb.level != (hb.beats & 1))
            inconsistent++;
        ReleaseResource(ResHeartbeat);
    }
    work = x;
    background_done = true;
    printk("TaskBackground: %u loops, preempted by %u beats\n", background_loops, beats_seen);
    TerminateTask();
}

/* A check of the summary failed. With exit=1 that ends the run, as a test ends; otherwise the
 * RTOS says so and runs on, as an RTOS under a hypervisor would: a heartbeat that came late
 * (the host was busy, the domain was paused) is worth reporting, not a reason to stop serving
 * its pins. */
static void report_failure(const char *fmt, ...)
{
    va_list ap;

    console_flush();
    printk("Test result: FAILURE (");
    va_start(ap, fmt);
    vprintk(fmt, ap);
    va_end(ap);
    printk(")\n");
    if (exit_after)
        guest_shutdown(SHUTDOWN_poweroff);
}

TASK(TaskReport)
{
    struct os_jitter j;
    TaskType self;

    GetTaskID(&self);
    GetAlarmJitter(AlarmHeartbeat, &j);
    printk("TaskReport: %u beats, heartbeat %s, %u preemptions, %u kernel errors\n",
           hb.beats, hb.level ? "on" : "off", os_preemptions(), errors);
    os_print_alarm_jitter(AlarmHeartbeat);

    if (self != TaskReport)
        report_failure("GetTaskID says %u", self);
    /* Each expiry ran a heartbeat, or found the last one still pending (a heartbeat late by
     * a period, on a busy host): the kernel refused that activation and said so. */
    else if (hb.beats < nr_beats || j.n != hb.beats + refused)
        report_failure("%u beats, %u refused activations and %u alarm expiries for %u",
                       hb.beats, refused, j.n, nr_beats);
    else if (events_at_isr_level != 1)
        report_failure("%u event-channel upcalls at ISR level", events_at_isr_level);
    else if (!background_done || inconsistent)
        report_failure("TaskBackground: done %d, %u inconsistent heartbeats",
                       background_done, inconsistent);
    else if (gpio_read(pd1) != 1)
        report_failure("PD1 reads %d", gpio_read(pd1));
    else if (errors)
        report_failure("%u kernel service errors (heartbeats late by up to %u us)", errors,
                       j.max_ns / 1000);
    else if (deadline_us && j.max_ns / 1000 > deadline_us)
        report_failure("a heartbeat %u us late, its deadline is %u us", j.max_ns / 1000,
                       deadline_us);
    else
        printk("Test result: SUCCESS\n");
    if (exit_after)
        ShutdownOS(E_OK);
    printk("ERIKA: running, idle until an event\n");
    TerminateTask();
}

int main(void)
{
    long beats = bootarg_int("beats", 50);
    long period = bootarg_int("period_ms", 10);

    long deadline = bootarg_int("deadline_us", 0);

    exit_after = bootarg_int("exit", 0) != 0;
    if (deadline < 0 || deadline > 10000000)
        test_failure("deadline_us=%ld: must be 0..10000000", deadline);
    deadline_us = (uint32_t)deadline;
    if (beats < 2 || beats > 100000)
        test_failure("beats=%ld: must be 2..100000", beats);
    if (period < 1 || period > 10000)
        test_failure("period_ms=%ld: must be 1..10000", period);
    nr_beats = (uint32_t)beats;
    period_ms = (uint32_t)period;
    pd1 = gpio_pin('D', 1);

    /* Cacheable RAM (the image, its bss and stacks), the GIC and the PIO. */
    mmu_identity_map(GUEST_RAM_BASE, 64U << 20, MMU_NORMAL);
    gic_map();
    gpio_init();
    mmu_enable();

    printk("ERIKA Enterprise-style OSEK kernel on Xen (xenpy domU)\n");
    StartOS(OSDEFAULTAPPMODE);
}
