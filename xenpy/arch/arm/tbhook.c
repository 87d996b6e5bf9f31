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
 * instruction after the one that unmasks, as the architecture requires.  `line` points at the
 * vGIC's own level for this vCPU (kept under the vGIC's lock, so it drops as soon as the guest
 * acknowledges); CPSR is read only while it is high.  The hook enters the IRQ exception itself,
 * as a CPU takes a virtual IRQ from its GIC's list registers without a trap to Xen: the same
 * entry as ArmVcpu.inject (banked SPSR and LR, mode, masks, SCTLR.TE/EE, VBAR or high vectors).
 * The PC goes last, with uc_reg_write: it makes Unicorn leave this block before it starts and go
 * on at the vector (only that call sets skip_sync_pc_on_exit; after uc_reg_write_batch the
 * block's exit check would put the PC back and run the block in the new mode).  It does so
 * only at a vector the hypervisor has entered once itself (`irq_vector`), so the vector's first
 * block is translated, and scanned for timer accesses, on the hypervisor's side; elsewhere it
 * stops and the hypervisor enters it.
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

/* Unicorn's uc_arm_cp_reg. */
struct cp_reg {
    uint32_t cp, is64, sec, crn, crm, opc1, opc2;
    uint64_t val;
};

struct tb_ctl {
    volatile uint32_t stop;    /* any thread: leave at the next block start */
    volatile uint32_t irq;     /* the line when no vGIC drives it (set_irq) */
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
    volatile uint32_t *line;   /* an interrupt is deliverable to this vCPU (default: &irq) */
    int (*reg_read_batch)(uc_engine *uc, int *regs, void **vals, int count);
    int (*reg_write_batch)(uc_engine *uc, int *regs, void *const *vals, int count);
    int (*reg_write)(uc_engine *uc, int regid, const void *value);
    int32_t cp_regid;          /* UC_ARM_REG_CP_REG */
    int32_t entry_ids[4];      /* CPSR, SPSR, LR, PC: written in this order */
    struct cp_reg sctlr, vbar; /* selectors set by tbhook.py */
    uint64_t irq_vector;       /* the IRQ vector the hypervisor has entered (0: none yet) */
    int64_t entry_cost;        /* deterministic mode: an exception entry's cost in code bytes */
    uint64_t irqs;             /* IRQ exceptions this hook entered */
};

enum { STOP_NONE, STOP_REQUESTED, STOP_IRQ, STOP_BUDGET, STOP_TIMER };
#define PSR_T (1u << 5)
#define PSR_I (1u << 7)
#define PSR_A (1u << 8)
#define PSR_E (1u << 9)
#define PSR_J (1u << 24)
#define PSR_IT 0x0600FC00u
#define MODE_MASK 0x1Fu
#define MODE_IRQ 0x12u
#define SCTLR_V (1u << 13)
#define SCTLR_EE (1u << 25)
#define SCTLR_TE (1u << 30)
#define VECTOR_IRQ 0x18u
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

/* ARM ARM B1.8.3: the IRQ exception, taken before the instruction at `pc`.  1 if entered. */
static int take_irq(uc_engine *uc, struct tb_ctl *c, uint64_t pc, uint32_t cpsr)
{
    int ids[2] = {c->cp_regid, c->cp_regid};
    void *cells[2] = {&c->sctlr, &c->vbar};
    uint32_t sctlr, vector, new, vals[4];
    void *wcells[3] = {&vals[0], &vals[1], &vals[2]};

    if (c->reg_read_batch(uc, ids, cells, 2))
        return 0;
    sctlr = (uint32_t)c->sctlr.val;
    vector = ((sctlr & SCTLR_V) ? 0xFFFF0000u : (uint32_t)c->vbar.val) + VECTOR_IRQ;
    if (vector != c->irq_vector)
        return 0;
    new = (cpsr & ~(MODE_MASK | PSR_T | PSR_J | PSR_IT | PSR_E)) | MODE_IRQ | PSR_I | PSR_A;
    if (sctlr & SCTLR_TE)
        new |= PSR_T;
    if (sctlr & SCTLR_EE)
        new |= PSR_E;
    vals[0] = new;                              /* switches the banked SPSR and LR ... */
    vals[1] = cpsr;
    vals[2] = (uint32_t)pc + 4;                 /* IRQ: preferred return + 4, ARM or Thumb */
    vals[3] = vector | ((new & PSR_T) ? 1 : 0);
    if (c->reg_write_batch(uc, c->entry_ids, wcells, 3) ||
        c->reg_write(uc, c->entry_ids[3], &vals[3]))
        return 0;
    if (c->metered) {
        c->executed += c->entry_cost;
        c->budget -= c->entry_cost;
    }
    c->irqs++;
    return 1;
}

static void xenpy_block_hook(uc_engine *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct tb_ctl *c = user_data;

    if (c->stop) {
        c->reason = STOP_REQUESTED;
        goto stop;
    }
    if (*c->line) {
        uint32_t cpsr = PSR_I;
        c->reg_read(uc, c->cpsr_regid, &cpsr);
        if (!(cpsr & PSR_I)) {
            if (take_irq(uc, c, address, cpsr))
                return;         /* Unicorn goes on at the vector; this block does not start */
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
