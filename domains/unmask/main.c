/*
 * unmask: an interrupt that is pending while IRQs are masked must be taken
 * as soon as CPSR.I is cleared, before the next instruction runs.
 *
 * Each round masks IRQs, makes an interrupt pending and checks that it is
 * (an event-channel send to a port bound to this vCPU: Xen sets the upcall
 * flag and raises PPI 31; or the virtual timer armed a few microseconds
 * ahead and polled until CNTV_CTL.ISTATUS says it fired, PPI 27), then
 * unmasks in one of five ways and at once writes a marker line:
 *
 *   cpsie   cpsie i
 *   msr     msr cpsr_c, rX            (CPSR.I clear in rX)
 *   subs    svc -> subs pc, lr, #0    (the SVC handler clears SPSR.I)
 *   rfe     svc -> rfeia sp!          (CPSR from the stack, I clear)
 *   ldm     svc -> ldmia sp!, {..., pc}^
 *
 * The interrupt handler prints its own line, so the console shows, for
 * every round, "isr SOURCE HOW N" before "marker SOURCE HOW N".  The guest
 * also counts the rounds whose handler had not run when the marker was
 * written, and fails if there is any.
 *
 * Bootargs: how=all|cpsie|msr|subs|rfe|ldm (default all), source=both|
 * evtchn|timer (default both), rounds=N (default 20).
 */
#include "guest.h"
#include "unmask.h"

extern char unmask_vectors[];

enum how { HOW_CPSIE, HOW_MSR, HOW_SUBS, HOW_RFE, HOW_LDM, NR_HOWS };
enum source { SRC_EVTCHN, SRC_TIMER, NR_SOURCES };

static const char *const how_names[NR_HOWS] = { "cpsie", "msr", "subs", "rfe", "ldm" };
static const char *const source_names[NR_SOURCES] = { "evtchn", "timer" };

static evtchn_port_t self_port;
static volatile uint32_t taken;
static const char *cur_source = "warm-up", *cur_how = "";
static uint32_t cur_round;
static bool quiet = true;

static void isr_line(void)
{
    taken++;
    if (!quiet)
        printk("isr %s %s %u\n", cur_source, cur_how, cur_round);
}

static void on_event(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;
    isr_line();
}

static void on_timer(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    timer_disarm();                     /* drops the level-triggered line */
    isr_line();
}

/* With IRQs masked: make the source's interrupt pending, and check it is. */
static void make_pending(enum source src)
{
    if (src == SRC_EVTCHN) {
        test_check("EVTCHNOP_send", evtchn_send(self_port));
        if (!evtchn_vcpu_info(0)->evtchn_upcall_pending)
            test_failure("the send to port %u left no upcall pending", self_port);
        return;
    }
    timer_arm(timer_count() + timer_ns_to_ticks(20000));
    for (uint32_t spins = 0; !(timer_get_ctl() & CNT_CTL_ISTATUS); spins++)
        if (spins > 100000000)
            test_failure("the timer armed 20 us ahead never set ISTATUS");
}

/* Clear CPSR.I the chosen way; the caller's next statement is the marker. */
static inline __attribute__((always_inline)) void unmask(enum how how)
{
    uint32_t cpsr;

    switch (how) {
    case HOW_CPSIE:
        __asm__ volatile("cpsie i" ::: "memory");
        break;
    case HOW_MSR:
        __asm__ volatile("mrs %0, cpsr" : "=r"(cpsr));
        __asm__ volatile("msr cpsr_c, %0" :: "r"(cpsr & ~PSR_I) : "memory");
        break;
    case HOW_SUBS:
        __asm__ volatile("svc %0" :: "i"(SVC_SUBS) : "lr", "cc", "memory");
        break;
    case HOW_RFE:
        __asm__ volatile("svc %0" :: "i"(SVC_RFE) : "lr", "cc", "memory");
        break;
    case HOW_LDM:
        __asm__ volatile("svc %0" :: "i"(SVC_LDM) : "lr", "cc", "memory");
        break;
    default:
        break;
    }
}

/* One round: returns true if the handler ran before the marker was written. */
static bool round_once(enum source src, enum how how, uint32_t r)
{
    char marker[64];
    int len;
    uint32_t want = taken + 1;
    bool in_time;

    cur_source = source_names[src];
    cur_how = how_names[how];
    cur_round = r;
    len = snprintf(marker, sizeof(marker), "marker %s %s %u\n", cur_source, cur_how, r);
    local_irq_disable();
    make_pending(src);
    switch (how) {                      /* a constant per case: the marker follows inline */
    case HOW_CPSIE: unmask(HOW_CPSIE); break;
    case HOW_MSR: unmask(HOW_MSR); break;
    case HOW_SUBS: unmask(HOW_SUBS); break;
    case HOW_RFE: unmask(HOW_RFE); break;
    default: unmask(HOW_LDM); break;
    }
    in_time = taken >= want;
    console_write(marker, (size_t)len);
    if (!in_time)
        wait_event(taken >= want);      /* a masked WFI dispatches it at the latest */
    if (taken != want)
        test_failure("%s %s round %u: %u interrupts taken, expected 1", cur_source, cur_how, r,
                     taken - want + 1);
    return in_time;
}

static bool pick(const char *key, const char *const *names, unsigned int n, unsigned int *out)
{
    char buf[16];

    if (!bootarg_str(key, buf, sizeof(buf)) || !strcmp(buf, key[0] == 'h' ? "all" : "both"))
        return false;
    for (unsigned int i = 0; i < n; i++)
        if (!strcmp(buf, names[i])) {
            *out = i;
            return true;
        }
    test_failure("bootargs: %s=%s is not one of the choices", key, buf);
}

int main(void)
{
    long rounds = bootarg_int("rounds", 20);
    unsigned int how_lo = 0, how_hi = NR_HOWS - 1, src_lo = 0, src_hi = NR_SOURCES - 1, one;
    uint32_t late = 0, total = 0;

    if (rounds < 1 || rounds > 100000)
        test_failure("rounds must be 1..100000");
    if (pick("how", how_names, NR_HOWS, &one))
        how_lo = how_hi = one;
    if (pick("source", source_names, NR_SOURCES, &one))
        src_lo = src_hi = one;
    platform_init();
    WRITE_CP32((uint32_t)(uintptr_t)unmask_vectors, 0, c12, c0, 0);     /* VBAR */
    isb();
    test_check("evtchn_init", evtchn_init());
    self_port = (evtchn_port_t)test_check("EVTCHNOP_bind_ipi", evtchn_bind_ipi(0));
    test_check("evtchn_bind", evtchn_bind(self_port, on_event, NULL));
    timer_irq_init(on_timer, NULL);

    /* Take what registering vcpu_info left pending, and one event, before counting. */
    local_irq_disable();
    test_check("EVTCHNOP_send", evtchn_send(self_port));
    wait_event(taken >= 1);
    taken = 0;
    quiet = false;
    printk("unmask: %ld rounds of %s x %s\n", rounds,
           src_lo == src_hi ? source_names[src_lo] : "evtchn,timer",
           how_lo == how_hi ? how_names[how_lo] : "cpsie,msr,subs,rfe,ldm");

    for (uint32_t r = 1; r <= (uint32_t)rounds; r++)
        for (unsigned int s = src_lo; s <= src_hi; s++)
            for (unsigned int h = how_lo; h <= how_hi; h++) {
                total++;
                late += !round_once((enum source)s, (enum how)h, r);
            }
    local_irq_disable();
    printk("unmask: %u interrupts, %u taken after the marker\n", total, late);
    if (late)
        test_failure("%u of %u interrupts were not taken when IRQs were unmasked", late, total);
    test_success();
}
