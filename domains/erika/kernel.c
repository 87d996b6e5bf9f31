/*
 * The task side of the kernel: ready queue, dispatcher, task services,
 * resources, interrupt services, StartOS/ShutdownOS and the idle loop.
 *
 * Kernel state is guarded by masking IRQs: the domain has one vCPU, and
 * ISRs run with IRQs masked, so a masked section is a critical section.
 *
 * Scheduling points: ActivateTask/ChainTask/TerminateTask/ReleaseResource/
 * Schedule at task level, and the return from an interrupt (os_irq).  At
 * each the dispatcher starts the head of the highest non-empty ready queue
 * while its priority is above the running one: a nested call on the shared
 * stack, so the preempted task resumes when the new one terminates.
 */
#include "ee.h"
#include "kernel.h"

#define READYQ_LEN      16              /* activations queued per priority */

struct readyq {
    uint8_t task[READYQ_LEN];
    uint8_t head, count;
};

struct task_state {
    uint8_t state;
    uint8_t act;                        /* activations: queued + running */
    uint32_t frame;                     /* os_task_run's stack, for TerminateTask */
    int8_t res_top;                     /* last resource taken, -1: none */
};

struct res_state {
    bool taken;
    uint8_t saved_prio;                 /* running priority before GetResource */
    int8_t prev;                        /* resource taken before this one */
};

static struct readyq readyq[OS_MAX_PRIO + 1];
static uint32_t ready_bitmap;           /* bit p: readyq[p] is not empty */
static struct task_state tasks[OS_NR_TASKS_MAX];
static struct res_state resources[OS_NR_RESOURCES_MAX];
static TaskType running = INVALID_TASK;
static uint8_t running_prio;            /* 0: the idle loop */
static uint32_t in_isr;                 /* ISR level: handlers running */
static uint32_t suspend_nesting, suspend_flags, disable_flags;
static uint32_t preemptions;
static AppModeType app_mode;
static bool started;

extern char os_vectors[];
void os_task_run(void (*entry)(void), uint32_t *frame);
__noreturn void os_task_exit(uint32_t frame);
void os_task_returned(void);
void os_irq(void);

static const char *const status_names[] = {
    "E_OK", "E_OS_ACCESS", "E_OS_CALLEVEL", "E_OS_ID", "E_OS_LIMIT",
    "E_OS_NOFUNC", "E_OS_RESOURCE", "E_OS_STATE", "E_OS_VALUE",
};

const char *os_status_name(StatusType s)
{
    return s < ARRAY_SIZE(status_names) ? status_names[s] : "E_OS_?";
}

__attribute__((weak)) void StartupHook(void) {}
__attribute__((weak)) void ShutdownHook(StatusType error) { (void)error; }
__attribute__((weak)) void ErrorHook(StatusType error) { (void)error; }

/* Every failing service reports here once, as OSEK's ErrorHook. */
StatusType os_error(const char *service, unsigned int id, StatusType s)
{
    printk("os: %s(%u): %s\n", service, id, os_status_name(s));
    ErrorHook(s);
    return s;
}

const char *os_task_name(TaskType t)
{
    return t < os_nr_tasks ? os_tasks[t].name : "idle";
}

/* ---- ready queue ------------------------------------------------------------ */

static bool readyq_push(TaskType t)
{
    struct readyq *q = &readyq[os_tasks[t].prio];

    if (q->count == READYQ_LEN)
        return false;
    q->task[(q->head + q->count) % READYQ_LEN] = t;
    q->count++;
    ready_bitmap |= 1U << os_tasks[t].prio;
    return true;
}

static unsigned int top_prio(void)
{
    return ready_bitmap ? 31 - __builtin_clz(ready_bitmap) : 0;
}

static TaskType readyq_pop(unsigned int prio)
{
    struct readyq *q = &readyq[prio];
    TaskType t = q->task[q->head];

    q->head = (q->head + 1) % READYQ_LEN;
    if (!--q->count)
        ready_bitmap &= ~(1U << prio);
    return t;
}

/* Queue one activation of t; IRQs masked. */
static StatusType activate(TaskType t)
{
    if (tasks[t].act >= os_tasks[t].max_act || !readyq_push(t))
        return E_OS_LIMIT;
    if (!tasks[t].act++)
        tasks[t].state = READY;
    return E_OK;
}

/*
 * Run every ready task whose priority beats the running one, each to its
 * termination; IRQs masked on entry and on return.  Never called at ISR
 * level: os_irq calls it after the handlers have returned.
 */
void os_dispatch(void)
{
    while (top_prio() > running_prio) {
        TaskType prev = running, t = readyq_pop(top_prio());
        uint8_t prev_prio = running_prio;

        if (prev != INVALID_TASK)
            preemptions++;
        running = t;
        running_prio = os_tasks[t].prio;
        tasks[t].state = RUNNING;
        tasks[t].res_top = -1;
        os_task_run(os_tasks[t].entry, &tasks[t].frame);
        /* t terminated (its activation count already dropped) */
        running = prev;
        running_prio = prev_prio;
    }
}

/* The bookkeeping of a task's end; IRQs masked. */
static void task_end(TaskType t)
{
    tasks[t].state = --tasks[t].act ? READY : SUSPENDED;
}

/* os_task_run: a body returned without TerminateTask (an error in OSEK;
 * terminate it anyway so the system goes on). */
void os_task_returned(void)
{
    os_error("TerminateTask", running, E_OS_CALLEVEL);
    printk("os: task %s returned without TerminateTask\n", os_task_name(running));
    task_end(running);
}

/* ---- task services ---------------------------------------------------------- */

StatusType ActivateTask(TaskType t)
{
    uint32_t flags;
    StatusType s;

    if (t >= os_nr_tasks)
        return os_error("ActivateTask", t, E_OS_ID);
    flags = local_irq_save();
    s = activate(t);
    if (s == E_OK && !in_isr && started)
        os_dispatch();
    local_irq_restore(flags);
    return s == E_OK ? E_OK : os_error("ActivateTask", t, s);
}

/* Checks shared by TerminateTask and ChainTask. */
static StatusType may_terminate(void)
{
    if (in_isr || running == INVALID_TASK)
        return E_OS_CALLEVEL;
    if (tasks[running].res_top >= 0)
        return E_OS_RESOURCE;
    return E_OK;
}

StatusType TerminateTask(void)
{
    StatusType s;

    local_irq_disable();
    s = may_terminate();
    if (s != E_OK) {
        local_irq_enable();
        return os_error("TerminateTask", running, s);
    }
    task_end(running);
    os_task_exit(tasks[running].frame);
}

StatusType ChainTask(TaskType t)
{
    StatusType s;
    TaskType self = running;

    if (t >= os_nr_tasks)
        return os_error("ChainTask", t, E_OS_ID);
    local_irq_disable();
    s = may_terminate();
    /* Chaining itself queues the new activation behind this one's end, so
     * it does not count against the limit; chaining another may hit it. */
    if (s == E_OK && t != self && tasks[t].act >= os_tasks[t].max_act)
        s = E_OS_LIMIT;
    if (s != E_OK) {
        local_irq_enable();
        return os_error("ChainTask", t, s);
    }
    task_end(self);
    activate(t);
    os_task_exit(tasks[self].frame);
}

StatusType Schedule(void)
{
    uint32_t flags;

    if (in_isr)
        return os_error("Schedule", 0, E_OS_CALLEVEL);
    if (running != INVALID_TASK && tasks[running].res_top >= 0)
        return os_error("Schedule", running, E_OS_RESOURCE);
    flags = local_irq_save();
    os_dispatch();
    local_irq_restore(flags);
    return E_OK;
}

StatusType GetTaskID(TaskRefType t)
{
    *t = in_isr ? INVALID_TASK : running;
    return E_OK;
}

StatusType GetTaskState(TaskType t, TaskStateRefType st)
{
    if (t >= os_nr_tasks)
        return os_error("GetTaskState", t, E_OS_ID);
    *st = tasks[t].state;
    return E_OK;
}

/* ---- resources: immediate priority ceiling -------------------------------- */

StatusType GetResource(ResourceType r)
{
    uint32_t flags;

    if (r >= os_nr_resources)
        return os_error("GetResource", r, E_OS_ID);
    if (in_isr || running == INVALID_TASK)
        return os_error("GetResource", r, E_OS_CALLEVEL);
    flags = local_irq_save();
    if (resources[r].taken || os_resources[r].ceiling < os_tasks[running].prio) {
        local_irq_restore(flags);
        return os_error("GetResource", r, E_OS_ACCESS);
    }
    resources[r].taken = true;
    resources[r].saved_prio = running_prio;
    resources[r].prev = tasks[running].res_top;
    tasks[running].res_top = (int8_t)r;
    if (os_resources[r].ceiling > running_prio)
        running_prio = os_resources[r].ceiling;
    local_irq_restore(flags);
    return E_OK;
}

StatusType ReleaseResource(ResourceType r)
{
    uint32_t flags;

    if (r >= os_nr_resources)
        return os_error("ReleaseResource", r, E_OS_ID);
    if (in_isr || running == INVALID_TASK)
        return os_error("ReleaseResource", r, E_OS_CALLEVEL);
    flags = local_irq_save();
    if (tasks[running].res_top != (int8_t)r) {   /* not held, or not the last taken */
        local_irq_restore(flags);
        return os_error("ReleaseResource", r, E_OS_NOFUNC);
    }
    resources[r].taken = false;
    tasks[running].res_top = resources[r].prev;
    running_prio = resources[r].saved_prio;
    os_dispatch();                      /* what the ceiling held back runs now */
    local_irq_restore(flags);
    return E_OK;
}

/* ---- interrupt services ------------------------------------------------------ */

void DisableAllInterrupts(void)
{
    disable_flags = local_irq_save();
}

void EnableAllInterrupts(void)
{
    local_irq_restore(disable_flags);
}

void SuspendAllInterrupts(void)
{
    uint32_t flags = local_irq_save();

    if (!suspend_nesting++)
        suspend_flags = flags;
}

void ResumeAllInterrupts(void)
{
    if (suspend_nesting && !--suspend_nesting)
        local_irq_restore(suspend_flags);
}

bool os_in_isr(void)
{
    return in_isr != 0;
}

void os_isr_enter(void)
{
    in_isr++;
}

void os_isr_exit(void)
{
    in_isr--;
}

/* From the IRQ vector (and the idle loop), in SVC mode with IRQs masked:
 * the handlers at ISR level, then the tasks they made ready (with IRQs
 * enabled again). */
void os_irq(void)
{
    in_isr++;
    gic_handle_irq();
    in_isr--;
    if (started)
        os_dispatch();
}

/*
 * Handlers attached through the kernel run marked as ISR level whichever
 * way the runtime dispatches them: from os_irq, or from the runtime's
 * wait_event() (irq_wait_masked) in a task that waits for a reply.  In the
 * latter case a task they make ready runs at the next scheduling point.
 */
struct isr_slot {
    union {
        irq_handler_t irq;
        evtchn_handler_t port;
    } fn;
    void *arg;
};

static struct isr_slot isr_slots[GIC_NR_IRQS];
static struct isr_slot port_slots[OS_NR_EVTCHN_HANDLERS];
static evtchn_port_t port_of_slot[OS_NR_EVTCHN_HANDLERS];
static bool evtchn_ready;

static void isr2_entry(unsigned int irq, void *arg)
{
    struct isr_slot *slot = arg;

    in_isr++;
    slot->fn.irq(irq, slot->arg);
    in_isr--;
}

static void evtchn_entry(evtchn_port_t port, void *arg)
{
    struct isr_slot *slot = arg;

    in_isr++;
    slot->fn.port(port, slot->arg);
    in_isr--;
}

int os_isr2_attach(unsigned int irq, irq_handler_t fn, void *arg)
{
    if (irq >= GIC_NR_IRQS || irq == GUEST_TIMER_VIRT_PPI || irq == GUEST_EVTCHN_PPI || !fn)
        return -XEN_EINVAL;             /* the kernel's own lines */
    isr_slots[irq].fn.irq = fn;
    isr_slots[irq].arg = arg;
    irq_set_handler(irq, isr2_entry, &isr_slots[irq]);
    gic_enable_irq(irq);
    return 0;
}

int os_evtchn_attach(evtchn_port_t port, evtchn_handler_t fn, void *arg)
{
    unsigned int i, free = OS_NR_EVTCHN_HANDLERS;
    uint32_t flags;
    int rc;

    if (!evtchn_ready)
        return -XEN_ENOSYS;
    if (!fn)
        return -XEN_EINVAL;
    flags = local_irq_save();
    for (i = 0; i < OS_NR_EVTCHN_HANDLERS; i++) {
        if (port_slots[i].fn.port && port_of_slot[i] == port)
            break;                      /* a new handler for the same port */
        if (!port_slots[i].fn.port && free == OS_NR_EVTCHN_HANDLERS)
            free = i;
    }
    if (i == OS_NR_EVTCHN_HANDLERS)
        i = free;
    if (i == OS_NR_EVTCHN_HANDLERS) {
        local_irq_restore(flags);
        return -XEN_ENOSPC;
    }
    port_slots[i].fn.port = fn;
    port_slots[i].arg = arg;
    port_of_slot[i] = port;
    local_irq_restore(flags);
    rc = evtchn_bind(port, evtchn_entry, &port_slots[i]);
    if (rc < 0)
        port_slots[i].fn.port = NULL;
    return rc;
}

/* The port is closed (or about to be): its handler slot is free again. */
void os_evtchn_detach(evtchn_port_t port)
{
    uint32_t flags = local_irq_save();

    evtchn_mask(port);
    for (unsigned int i = 0; i < OS_NR_EVTCHN_HANDLERS; i++)
        if (port_slots[i].fn.port && port_of_slot[i] == port)
            port_slots[i].fn.port = NULL;
    local_irq_restore(flags);
}

/* ---- StartOS / ShutdownOS ---------------------------------------------------- */

AppModeType GetActiveApplicationMode(void)
{
    return app_mode;
}

static void check_config(void)
{
    if (os_nr_tasks > OS_NR_TASKS_MAX || os_nr_alarms > OS_NR_ALARMS_MAX ||
        os_nr_resources > OS_NR_RESOURCES_MAX)
        test_failure("os: configuration larger than the kernel's tables");
    for (unsigned int i = 0; i < os_nr_tasks; i++)
        if (!os_tasks[i].prio || os_tasks[i].prio > OS_MAX_PRIO || !os_tasks[i].max_act ||
            os_tasks[i].max_act > READYQ_LEN || !os_tasks[i].entry)
            test_failure("os: task %s: bad priority, activation limit or entry",
                         os_tasks[i].name);
    for (unsigned int i = 0; i < os_nr_alarms; i++)
        if (!os_alarms[i].callback && os_alarms[i].task >= os_nr_tasks)
            test_failure("os: alarm %s activates no task", os_alarms[i].name);
}

__noreturn void StartOS(AppModeType mode)
{
    int rc;

    local_irq_disable();
    check_config();
    app_mode = mode;
    WRITE_CP32((uint32_t)(uintptr_t)os_vectors, 0, c12, c0, 0);     /* VBAR */
    isb();
    gic_init();
    rc = evtchn_init();
    evtchn_ready = rc == 0;
    if (rc < 0)
        printk("os: no event channels (evtchn_init: %d)\n", rc);
    os_counter_init();
    printk("os: StartOS(%u): %u tasks, %u alarms, %u resources, counter tick %u us, "
           "CNTFRQ %u Hz\n", mode, os_nr_tasks, os_nr_alarms, os_nr_resources,
           OS_TICK_NS / 1000, timer_freq());

    StartupHook();
    for (unsigned int i = 0; i < os_nr_tasks; i++)
        if (os_tasks[i].autostart)
            activate((TaskType)i);
    started = true;

    /* The idle loop, priority 0.  WFI with IRQs masked still wakes on a
     * pending interrupt, which is then handled right here as the vector
     * would: no window where one could be lost, and no reliance on the
     * exception being taken in the few instructions IRQs would be open. */
    for (;;) {
        os_dispatch();
        dsb();
        wfi();
        os_irq();
    }
}

__noreturn void ShutdownOS(StatusType error)
{
    local_irq_disable();
    os_counter_stop();
    ShutdownHook(error);
    if (error != E_OK)
        printk("os: ShutdownOS(%s)\n", os_status_name(error));
    console_flush();
    guest_shutdown(error == E_OK ? SHUTDOWN_poweroff : SHUTDOWN_crash);
}

uint32_t os_preemptions(void)
{
    return preemptions;
}
