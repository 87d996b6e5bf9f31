/*
 * An OSEK/VDX-style kernel for a Xen domU: the API an application sees.
 *
 * Conformance class BCC1-like: basic tasks with fixed priorities (1 is the
 * lowest; 0 is the idle loop), multiple activations, FIFO order within a
 * priority, full preemption.  Basic tasks never wait, so every task runs
 * on the one SVC stack: a preempting task is a nested call (the monostack
 * model of ERIKA's FP kernel).  Resources use the immediate priority
 * ceiling protocol.  One counter, driven by the virtual timer, counts
 * milliseconds; alarms on it activate a task or call a callback.
 *
 * The application provides the configuration an OIL file would generate:
 * the tables os_tasks[], os_alarms[], os_resources[] and their sizes.
 */
#ifndef EE_H
#define EE_H

#include "guest.h"

/* ---- types and status codes (OSEK OS 2.2.3, 13.1) ---------------------- */

typedef uint8_t StatusType;
typedef uint8_t TaskType;
typedef uint8_t TaskStateType;
typedef uint8_t AlarmType;
typedef uint8_t ResourceType;
typedef uint8_t AppModeType;
typedef uint32_t TickType;
typedef TaskType *TaskRefType;
typedef TaskStateType *TaskStateRefType;
typedef TickType *TickRefType;

#define E_OK                0
#define E_OS_ACCESS         1
#define E_OS_CALLEVEL       2
#define E_OS_ID             3
#define E_OS_LIMIT          4
#define E_OS_NOFUNC         5
#define E_OS_RESOURCE       6
#define E_OS_STATE          7
#define E_OS_VALUE          8

#define SUSPENDED           0
#define READY               1
#define RUNNING             2
#define INVALID_TASK        0xFF

#define OSDEFAULTAPPMODE    0
#define OS_MAX_PRIO         31          /* task priorities 1..31 */
#define OS_NR_TASKS_MAX     16
#define OS_NR_ALARMS_MAX    8
#define OS_NR_RESOURCES_MAX 8

/* The system counter: one tick per millisecond, wrapping at 2^32. */
#define OS_TICK_NS          1000000U
#define OSMAXALLOWEDVALUE   0xFFFFFFFFU
#define OSTICKSPERBASE      1U
#define OSMINCYCLE          1U

#define TASK(name)          void Func##name(void)
#define ALARMCALLBACK(name) void name(void)

/* ---- configuration (the application's tables) -------------------------- */

struct os_task_cfg {
    const char *name;
    void (*entry)(void);
    uint8_t prio;                       /* 1..OS_MAX_PRIO */
    uint8_t max_act;                    /* queued activations allowed, >= 1 */
    bool autostart;                     /* activated by StartOS */
};

struct os_alarm_cfg {
    const char *name;
    TaskType task;                      /* action: ActivateTask(task) ... */
    void (*callback)(void);             /* ... or, when set, this (ISR level) */
};

struct os_resource_cfg {
    const char *name;
    uint8_t ceiling;                    /* highest priority of its users */
};

extern const struct os_task_cfg os_tasks[];
extern const unsigned int os_nr_tasks;
extern const struct os_alarm_cfg os_alarms[];
extern const unsigned int os_nr_alarms;
extern const struct os_resource_cfg os_resources[];
extern const unsigned int os_nr_resources;

/* ---- OS services ----------------------------------------------------------- */

void StartOS(AppModeType mode) __noreturn;
void ShutdownOS(StatusType error) __noreturn;
AppModeType GetActiveApplicationMode(void);

StatusType ActivateTask(TaskType task);
StatusType TerminateTask(void);         /* returns only on error */
StatusType ChainTask(TaskType task);    /* returns only on error */
StatusType Schedule(void);
StatusType GetTaskID(TaskRefType task);
StatusType GetTaskState(TaskType task, TaskStateRefType state);

StatusType GetResource(ResourceType res);
StatusType ReleaseResource(ResourceType res);

void DisableAllInterrupts(void);
void EnableAllInterrupts(void);
void SuspendAllInterrupts(void);        /* nestable */
void ResumeAllInterrupts(void);

StatusType GetCounterValue(TickRefType value);
StatusType GetElapsedValue(TickRefType value, TickRefType elapsed);
StatusType GetAlarm(AlarmType alarm, TickRefType remaining);
StatusType SetRelAlarm(AlarmType alarm, TickType increment, TickType cycle);
StatusType SetAbsAlarm(AlarmType alarm, TickType start, TickType cycle);
StatusType CancelAlarm(AlarmType alarm);

/* Hooks: weak no-ops in the kernel, an application may define them. */
void StartupHook(void);
void ShutdownHook(StatusType error);
void ErrorHook(StatusType error);

const char *os_status_name(StatusType s);

/* ---- category-2 ISRs ------------------------------------------------------- */

/* A handler for INTID `irq`, run with interrupts masked at ISR level: it may
 * call ActivateTask, SetRelAlarm, ...; a task it activates preempts when the
 * interrupt returns.  The kernel owns PPI 27 (its counter); PPI 31 is the
 * event-channel upcall, whose ports are attached one by one below. */
int os_isr2_attach(unsigned int irq, irq_handler_t fn, void *arg);
/* A handler for one event-channel port, run at ISR level from the PPI 31
 * upcall (pending bit already cleared); the port is unmasked.  Up to
 * OS_NR_EVTCHN_HANDLERS ports; -ENOSYS without event channels. */
#define OS_NR_EVTCHN_HANDLERS   16
int os_evtchn_attach(evtchn_port_t port, evtchn_handler_t fn, void *arg);
/* Mask the port and free its slot (call before closing it). */
void os_evtchn_detach(evtchn_port_t port);
bool os_in_isr(void);

/* ---- measurements ----------------------------------------------------------- */

/* Lateness of an alarm's expiries: CNTVCT when the kernel performed the
 * action minus the CNTVCT the expiry was due at. */
struct os_jitter {
    uint32_t n;                         /* expiries measured */
    uint32_t min_ns, max_ns, avg_ns;
};

StatusType GetAlarmJitter(AlarmType alarm, struct os_jitter *j);
/* "alarm jitter: min X us, max Y us, avg Z us over N expiries" */
void os_print_alarm_jitter(AlarmType alarm);
/* Times a task was started on top of another one (preemptions). */
uint32_t os_preemptions(void);

#endif /* EE_H */
