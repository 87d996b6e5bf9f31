/*
 * The vCPU's exit point: a Unicorn block hook in C, run at the start of every translation block.
 *
 * Why it exists: in Unicorn 2.1 an emu_stop() from another thread is honoured by an exit check
 * that QEMU emits after every guest load and store, not only at block starts, and that check
 * restores the PC to the start of the instruction whose access already happened.  The instruction
 * then runs again on resume: a completed STREX fails the second time and the guest's
 * ldrex/add/strex loop increments twice; a store or a device access is repeated.
 *
 * So no thread ever calls uc_emu_stop() while guest code runs.  A thread that wants the vCPU back
 * (preemption, a wake-up, a stage-2 update) sets `stop`; the vGIC sets `irq` while an interrupt
 * is deliverable.  This hook runs before the block's first instruction and before Unicorn's own
 * exit check for the block, so when it calls uc_emu_stop() the vCPU leaves with the PC exactly
 * on an instruction boundary that nothing has executed past.
 *
 * Interrupts: every instruction that can clear CPSR.I (CPS, MSR to CPSR, exception returns)
 * ends its translation block in QEMU, so checking CPSR.I here takes an interrupt before the
 * instruction after the one that unmasks, as the architecture requires.  CPSR is read only while
 * `irq` is set.
 *
 * Timers: `deadline_ns` is the running vCPU's next armed timer deadline (CLOCK_MONOTONIC, the
 * clock behind the guest's counter).  The hook reads the clock every CLOCK_EVERY blocks and stops
 * once it has passed, so a running guest's tick is noticed on its own thread, within a few
 * hundred instructions, without another thread waking to tell it (a thread hand-off costs tens
 * of microseconds on a host whose idle cores halt).
 *
 * Deterministic mode: `budget` counts guest code bytes left in the quantum; virtual time is
 * `executed` (code bytes run).  Both are advanced only for blocks that start running.
 *
 * idle_poll(): an idle pCPU's last stretch before a timer deadline, spent polling the clock and
 * its kick word instead of sleeping in the kernel, whose timed wake-up is 70-130 us late on such
 * a host (KVM's halt polling, for the same reason).  Called through ctypes, which releases the
 * interpreter lock for it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <time.h>

typedef struct uc_struct uc_engine;

struct tb_ctl {
    volatile uint32_t stop;    /* any thread: leave at the next block start */
    volatile uint32_t irq;     /* an interrupt is deliverable to this vCPU */
    uint32_t metered;          /* deterministic mode: `budget` is in force */
    uint32_t reason;           /* why the hook stopped the vCPU (STOP_*) */
    int64_t budget;            /* code bytes left in this quantum */
    uint64_t executed;         /* code bytes executed, all time */
    uint64_t blocks;           /* translation blocks entered, all time */
    uint64_t stop_pc;          /* the block start it stopped at */
    uint64_t last_pc;          /* the last block start that ran */
    int (*emu_stop)(uc_engine *uc);
    int (*reg_read)(uc_engine *uc, int regid, void *value);
    int32_t cpsr_regid;
    int32_t countdown;         /* blocks until the hook next reads the clock */
    uint64_t deadline_ns;      /* next timer deadline, CLOCK_MONOTONIC ns (0: none) */
};

enum { STOP_NONE, STOP_REQUESTED, STOP_IRQ, STOP_BUDGET, STOP_TIMER };
#define PSR_I (1u << 7)
#define CLOCK_EVERY 32         /* a clock read costs about 25 blocks' worth of this hook */

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define cpu_relax() __asm__ volatile("yield")
#else
#define cpu_relax() do { } while (0)
#endif

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Until CLOCK_MONOTONIC reaches `until_ns` (returns 0) or *kick becomes non-zero (returns 1). */
static int xenpy_idle_poll(uint64_t until_ns, volatile uint32_t *kick)
{
    while (!*kick) {
        if (now_ns() >= until_ns)
            return 0;
        cpu_relax();
    }
    return 1;
}

static void xenpy_block_hook(uc_engine *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct tb_ctl *c = user_data;

    if (c->stop) {
        c->reason = STOP_REQUESTED;
        goto stop;
    }
    if (c->irq) {
        uint32_t cpsr = PSR_I;
        c->reg_read(uc, c->cpsr_regid, &cpsr);
        if (!(cpsr & PSR_I)) {
            c->reason = STOP_IRQ;
            goto stop;
        }
    }
    if (c->deadline_ns && --c->countdown <= 0) {
        c->countdown = CLOCK_EVERY;
        if (now_ns() >= c->deadline_ns) {
            c->reason = STOP_TIMER;
            goto stop;
        }
    }
    if (c->metered) {
        if (c->budget <= 0) {
            c->reason = STOP_BUDGET;
            goto stop;
        }
        c->budget -= size;
    }
    c->executed += size;
    c->blocks++;
    c->last_pc = address;
    return;
stop:
    c->stop_pc = address;
    c->emu_stop(uc);
}

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_tbhook",
    "The vCPU's block hook in C (see tbhook.c): BLOCK_HOOK is its address, CTL_SIZE the size of "
    "its control block, IDLE_POLL the address of the idle pCPU's poll.", -1, NULL,
};

PyMODINIT_FUNC PyInit__tbhook(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObject(m, "BLOCK_HOOK", PyLong_FromVoidPtr((void *)xenpy_block_hook)) < 0 ||
        PyModule_AddObject(m, "IDLE_POLL", PyLong_FromVoidPtr((void *)xenpy_idle_poll)) < 0 ||
        PyModule_AddIntConstant(m, "CTL_SIZE", sizeof(struct tb_ctl)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
