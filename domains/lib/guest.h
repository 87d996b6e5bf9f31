/*
 * The xenpy guest runtime: boot (head.S), console, MMU, SMP/PSCI and the
 * Test-result convention shared by the guests in domains/.
 *
 * Included by C and by assembly (head.S), so the constants come first.
 */
#ifndef GUEST_H
#define GUEST_H

#include "xen.h"

/* vCPUs the runtime can host; a guest may raise it with cflags: -DNR_CPUS=n. */
#ifndef NR_CPUS
#define NR_CPUS                 4
#endif

/* Per-vCPU stacks, as shifts so head.S can index them with one add. */
#define SVC_STACK_SHIFT         13      /* 8 KiB: main() and C code */
#define IRQ_STACK_SHIFT         11      /* 2 KiB: irq_handler() */
#define EXC_STACK_SHIFT         10      /* 1 KiB each: undef, abort, fiq (crash report only) */

/* CPSR */
#define PSR_MODE_FIQ            0x11
#define PSR_MODE_IRQ            0x12
#define PSR_MODE_SVC            0x13
#define PSR_MODE_ABT            0x17
#define PSR_MODE_UND            0x1b
#define PSR_T                   (1U << 5)
#define PSR_F                   (1U << 6)
#define PSR_I                   (1U << 7)
#define PSR_A                   (1U << 8)

/* Exception kinds passed from the vectors to exception_crash(). */
#define EXC_UNUSED              0
#define EXC_UNDEF               1
#define EXC_SVC                 2
#define EXC_PABT                3
#define EXC_DABT                4
#define EXC_IRQ                 5
#define EXC_FIQ                 6

#ifndef __ASSEMBLER__
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define __noreturn      __attribute__((noreturn))
#define __printf(a, b)  __attribute__((format(printf, a, b)))
#define ARRAY_SIZE(a)   (sizeof(a) / sizeof((a)[0]))

/* ---- barriers, interrupts, CP15 ---------------------------------------- */

static inline void dmb(void) { __asm__ volatile("dmb ish" ::: "memory"); }
static inline void dsb(void) { __asm__ volatile("dsb sy" ::: "memory"); }
static inline void isb(void) { __asm__ volatile("isb" ::: "memory"); }
static inline void wfi(void) { __asm__ volatile("wfi" ::: "memory"); }
static inline void wfe(void) { __asm__ volatile("wfe" ::: "memory"); }
static inline void sev(void) { __asm__ volatile("sev" ::: "memory"); }

static inline void local_irq_enable(void) { __asm__ volatile("cpsie i" ::: "memory"); }
static inline void local_irq_disable(void) { __asm__ volatile("cpsid i" ::: "memory"); }

static inline uint32_t local_irq_save(void)
{
    uint32_t flags;
    __asm__ volatile("mrs %0, cpsr\n\tcpsid i" : "=r"(flags) :: "memory");
    return flags;
}

static inline void local_irq_restore(uint32_t flags)
{
    __asm__ volatile("msr cpsr_c, %0" :: "r"(flags) : "memory");
}

#define READ_CP32(op1, crn, crm, op2) ({                                    \
    uint32_t v_;                                                            \
    __asm__ volatile("mrc p15, " #op1 ", %0, " #crn ", " #crm ", " #op2     \
                     : "=r"(v_) :: "memory");                               \
    v_; })
#define WRITE_CP32(v, op1, crn, crm, op2)                                   \
    __asm__ volatile("mcr p15, " #op1 ", %0, " #crn ", " #crm ", " #op2     \
                     :: "r"((uint32_t)(v)) : "memory")

#define read_mpidr()    READ_CP32(0, c0, c0, 5)
#define read_sctlr()    READ_CP32(0, c1, c0, 0)
#define read_dfsr()     READ_CP32(0, c5, c0, 0)
#define read_ifsr()     READ_CP32(0, c5, c0, 1)
#define read_dfar()     READ_CP32(0, c6, c0, 0)
#define read_ifar()     READ_CP32(0, c6, c0, 2)

/* head.S keeps the vCPU index in TPIDRPRW: it does not depend on how the
 * hypervisor numbers MPIDR, and Xen context-switches it per vCPU. */
static inline unsigned int smp_processor_id(void)
{
    return READ_CP32(0, c13, c0, 4);
}

/* Clean a range of the data cache to the point of coherency, for data that
 * a vCPU running with its caches still off will read. */
void dcache_clean_range(const void *p, size_t size);

/* ---- boot (head.S) ----------------------------------------------------- */

int main(void);
extern uint32_t boot_dtb_addr;          /* r2 at boot: the guest's device tree */
extern char _start[], _edata[], __bss_start[], __bss_end[], _end[];
void secondary_entry(void);             /* PSCI CPU_ON entry point, r0 = vCPU index */

/* ---- console (console.c) ----------------------------------------------- */

/* printk: %s %c %d %i %u %x %X %p %%, flags '-' '0', a width, and the
 * length modifiers l, ll, z.  Output is kept per vCPU until '\n' (or a full
 * line buffer) and then written with one CONSOLEIO_write. */
void printk(const char *fmt, ...) __printf(1, 2);
void vprintk(const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __printf(3, 4);
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
/* Write out this vCPU's partial line, ending it with '\n'. */
void console_flush(void);
/* One CONSOLEIO_write of exactly these bytes; returns the hypercall result. */
int console_write(const char *buf, size_t len);

/* ---- results and shutdown (result.c) ----------------------------------- */

/* The Xen Test Framework convention: one "Test result: ..." line, then
 * SCHEDOP_shutdown(SHUTDOWN_poweroff). */
__noreturn void test_success(void);
__noreturn void test_failure(const char *fmt, ...) __printf(1, 2);
/* test_failure("<what> returned <rc>") when rc is negative; returns rc. */
int test_check(const char *what, int rc);
/* SCHEDOP_shutdown(reason); never returns. */
__noreturn void guest_shutdown(unsigned int reason);
/* "Test result: CRASH (<what>) at <pc>", then SHUTDOWN_crash. */
__noreturn void crash(const char *what, uint32_t pc);
/* Park this vCPU for good. */
__noreturn void halt(void);

/* ---- exceptions (traps.c) ---------------------------------------------- */

/* Called from the IRQ vector with IRQs masked, on the IRQ-mode stack;
 * pc is where the interrupted code resumes.  The default crashes; a guest
 * that takes interrupts defines its own. */
void irq_handler(uint32_t pc);
__noreturn void exception_crash(uint32_t kind, uint32_t lr, uint32_t spsr);

/* ---- MMU (mmu.c) ------------------------------------------------------- */

enum mmu_type {
    MMU_NORMAL,         /* write-back cacheable, shareable, executable */
    MMU_DEVICE,         /* shareable device, execute-never */
};

#define SECTION_SHIFT   20
#define SECTION_SIZE    (1U << SECTION_SHIFT)

/* Map every 1 MiB section that [va, va + size) touches, the first one to
 * the section holding pa.  Safe both before and after mmu_enable(). */
void mmu_map(uint32_t va, uint32_t pa, uint32_t size, enum mmu_type type);
static inline void mmu_identity_map(uint32_t pa, uint32_t size, enum mmu_type type)
{
    mmu_map(pa, pa, size, type);
}
void mmu_unmap(uint32_t va, uint32_t size);
/* Turn the calling vCPU's MMU and caches on with the shared table. */
void mmu_enable(void);
bool mmu_enabled(void);
/* Walk the table in software; returns false if va is not mapped. */
bool mmu_translate(uint32_t va, uint32_t *pa);

/* ---- SMP and PSCI (psci.c) --------------------------------------------- */

int psci_version(void);
int psci_cpu_on(uint32_t target_mpidr, uint32_t entry, uint32_t context_id);
int psci_cpu_off(void);
int psci_affinity_info(uint32_t target_mpidr, uint32_t level);
__noreturn void psci_system_off(void);

/* The MPIDR affinity Xen gives vCPU n (Aff0 = n % 16, Aff1 = n / 16). */
static inline uint32_t vcpu_mpidr(unsigned int vcpu)
{
    return ((vcpu >> 4) & 0xffU) << 8 | (vcpu & 0xfU);
}

/* Start vCPU `cpu` (1..NR_CPUS-1) with PSCI CPU_ON: it gets its own stacks
 * and vectors, runs fn(arg) with its MMU still off, then calls CPU_OFF.
 * Returns the PSCI result. */
int smp_start_cpu(unsigned int cpu, void (*fn)(void *), void *arg);
__noreturn void secondary_start(unsigned int cpu);

/* ---- string.c ---------------------------------------------------------- */

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strncpy(char *d, const char *s, size_t n);


/* ---- GIC and interrupt dispatch (gic.c) -------------------------------- */

/* INTIDs the runtime has handler slots for: SGIs, PPIs and the first SPIs. */
#define GIC_NR_IRQS             64
#define GIC_NR_SGIS             16
#define GIC_SPURIOUS            1023

typedef void (*irq_handler_t)(unsigned int irq, void *arg);

/* Bootargs read, 64 MiB of RAM identity-mapped, the vGIC mapped, MMU on, GIC up (platform.c). */
void platform_init(void);
/* Map the vGIC's MMIO as device memory in the shared table (before mmu_enable). */
void gic_map(void);
/* Enable the distributor (once per domain, boot vCPU) and this vCPU's CPU
 * interface; a secondary vCPU calls gic_cpu_init() alone. */
void gic_init(void);
void gic_cpu_init(void);
/* Enable, disable or set the priority of an INTID; SGIs and PPIs are banked,
 * so these act on the calling vCPU's copy of them. */
void gic_enable_irq(unsigned int irq);
void gic_disable_irq(unsigned int irq);
void gic_set_priority(unsigned int irq, uint8_t prio);
/* GICC_IAR (acknowledge) and GICC_EOIR (priority drop + deactivate). */
uint32_t gic_ack(void);
void gic_eoi(uint32_t iar);
/* SGI `sgi` to the vCPUs in `cpu_mask` (GICD_SGIR target-list filter). */
void gic_send_sgi(unsigned int sgi, uint32_t cpu_mask);
void gic_send_sgi_self(unsigned int sgi);

/* One handler per INTID, shared by every vCPU (a handler of a banked
 * interrupt runs on the vCPU that took it: smp_processor_id() says which). */
void irq_set_handler(unsigned int irq, irq_handler_t fn, void *arg);
/* Acknowledge and dispatch everything the GIC signals, EOI each: the body of
 * the IRQ vector (irq_handler() in gic.c; without gic.c the runtime's weak
 * irq_handler crashes, so a guest built without interrupts notices one). */
void gic_handle_irq(void);
/* CNTVCT right after this vCPU acknowledged the interrupt being handled:
 * the "handler entry" time for latency measurements. */
uint64_t irq_entry_count(void);
/* Interrupts dispatched on `cpu` for `irq` since boot. */
uint32_t irq_count(unsigned int cpu, unsigned int irq);

/* Sleep until an interrupt is pending and dispatch it, with IRQs masked
 * throughout: an interrupt that arrives after the caller's last look at its
 * condition still ends the WFI, so no wake-up is lost.  Call with IRQs
 * masked; wait_event() is the loop around it. */
void irq_wait_masked(void);
#define wait_event(cond) do {                                               \
    uint32_t wf_ = local_irq_save();                                        \
    while (!(cond))                                                         \
        irq_wait_masked();                                                  \
    local_irq_restore(wf_);                                                 \
} while (0)

/* ---- generic timer (timer.c) ------------------------------------------- */

#define CNT_CTL_ENABLE          (1U << 0)
#define CNT_CTL_IMASK           (1U << 1)
#define CNT_CTL_ISTATUS         (1U << 2)

uint32_t timer_freq(void);                  /* CNTFRQ, ticks per second */
uint64_t timer_count(void);                 /* CNTVCT */
uint64_t timer_get_cval(void);              /* CNTV_CVAL */
void timer_set_cval(uint64_t cval);
void timer_set_tval(int32_t tval);          /* CVAL = CNTVCT + tval */
uint32_t timer_get_ctl(void);               /* CNTV_CTL */
void timer_set_ctl(uint32_t ctl);
/* Fire PPI 27 at absolute count `cval` (enables the timer, unmasked). */
void timer_arm(uint64_t cval);
void timer_disarm(void);
/* 64-bit unsigned division without the compiler runtime (no libgcc here):
 * returns n / d, and n % d in *rem unless rem is NULL. */
uint64_t udiv64(uint64_t n, uint64_t d, uint64_t *rem);
/* Counter ticks <-> time, at CNTFRQ. */
uint64_t timer_ns_to_ticks(uint64_t ns);
uint64_t timer_ticks_to_ns(uint64_t ticks);
/* Route PPI 27 to `fn` and enable it at the GIC on this vCPU. */
void timer_irq_init(irq_handler_t fn, void *arg);

/* ---- event channels (evtchn.c) ----------------------------------------- */

/* Ports the runtime tracks (a handler and a vCPU each); higher ports stay
 * masked.  Xen's default limit for a domU is 1023. */
#ifndef EVTCHN_NR_PORTS
#define EVTCHN_NR_PORTS         1024
#endif

typedef void (*evtchn_handler_t)(evtchn_port_t port, void *arg);

/* Boot vCPU: map shared_info, mask every port, route PPI 31 to the upcall
 * handler; then as evtchn_cpu_init().  Returns 0 or a negative errno. */
int evtchn_init(void);
/* Each vCPU (the boot one included, via evtchn_init): register its
 * vcpu_info and enable PPI 31 on its CPU interface. */
int evtchn_cpu_init(void);
struct shared_info *evtchn_shared_info(void);
struct vcpu_info *evtchn_vcpu_info(unsigned int cpu);

/* The EVTCHNOP_ calls: each returns the port (or 0) or a negative errno.
 * A new port starts masked with no handler; evtchn_bind() sets both. */
int evtchn_alloc_unbound(domid_t remote_dom);
int evtchn_bind_interdomain(domid_t remote_dom, evtchn_port_t remote_port);
int evtchn_bind_ipi(unsigned int vcpu);
int evtchn_bind_virq(unsigned int virq, unsigned int vcpu);
int evtchn_bind_vcpu(evtchn_port_t port, unsigned int vcpu);
int evtchn_send(evtchn_port_t port);
int evtchn_close(evtchn_port_t port);
int evtchn_status(domid_t dom, evtchn_port_t port, struct evtchn_status *st);
/* Unmask through EVTCHNOP_unmask, so an event that arrived while masked is
 * delivered; mask and clear are the guest's own bit operations. */
int evtchn_unmask(evtchn_port_t port);
void evtchn_mask(evtchn_port_t port);
void evtchn_clear(evtchn_port_t port);
bool evtchn_is_pending(evtchn_port_t port);
/* Handler for `port` (called in interrupt context, pending bit already
 * cleared), then unmask it.  Returns evtchn_unmask()'s result. */
int evtchn_bind(evtchn_port_t port, evtchn_handler_t fn, void *arg);
/* Upcalls handled on `cpu`, and events with no handler (masked and dropped). */
uint32_t evtchn_upcalls(unsigned int cpu);
uint32_t evtchn_spurious(void);

/* ---- boot arguments (fdt.c) -------------------------------------------- */

/* /chosen/bootargs of the device tree at boot_dtb_addr ("" if none).  The
 * first call copies it, so make it before the MMU hides the tree. */
const char *bootargs(void);
/* The integer value of `key=` in bootargs (decimal, or 0x hex, optional
 * sign), or `def` when absent; a malformed value is a test failure. */
long bootarg_int(const char *key, long def);
/* Copy the value of `key=` (up to the next space) into buf; false if absent. */
bool bootarg_str(const char *key, char *buf, size_t size);

/* ---- XenBus over the store ring (xenbus.c) ------------------------------ */

/* A transaction id; XBT_NIL is "no transaction". */
typedef uint32_t xenbus_transaction_t;
#define XBT_NIL                 0U

/* Read HVM_PARAM_STORE_PFN / STORE_EVTCHN, map the ring page and bind the
 * store port.  Needs evtchn_init() first.  Returns 0 or a negative errno. */
int xenbus_init(void);
/* Each call below sends one request and sleeps (WFI, woken by the store
 * port's upcall) until its reply; watch events that arrive meanwhile are
 * queued for xenbus_read_watch().  Errors are the negated errno that
 * xenstored named (-XEN_ENOENT, -XEN_EACCES, -XEN_EAGAIN, ...).  Paths
 * without a leading '/' are relative to the domain's home, as xenstored
 * resolves them.  Main context only: never from an interrupt handler. */
/* Value into buf (NUL-terminated); returns its length, or -XEN_E2BIG. */
int xenbus_read(xenbus_transaction_t t, const char *path, char *buf, size_t size);
int xenbus_write(xenbus_transaction_t t, const char *path, const char *value);
int xenbus_mkdir(xenbus_transaction_t t, const char *path);
int xenbus_rm(xenbus_transaction_t t, const char *path);
/* Child names, each NUL-terminated, packed into buf; returns how many. */
int xenbus_directory(xenbus_transaction_t t, const char *path, char *buf, size_t size);
/* perms: n entries such as "n0", "r5"; the first names the owner. */
int xenbus_set_perms(xenbus_transaction_t t, const char *path, const char *const *perms,
                     unsigned int n);
/* /local/domain/<domid> from xenstored itself. */
int xenbus_get_domain_path(domid_t domid, char *buf, size_t size);
int xenbus_read_int(xenbus_transaction_t t, const char *path, long *value);
int xenbus_printf(xenbus_transaction_t t, const char *path, const char *fmt, ...)
    __printf(3, 4);
int xenbus_watch(const char *path, const char *token);
int xenbus_unwatch(const char *path, const char *token);
/* The next watch event (sleeping until one comes): the path that changed
 * and the watch's token.  Returns 0, or -XEN_E2BIG if a buffer is short. */
int xenbus_read_watch(char *path, size_t psize, char *token, size_t tsize);
/* Watch events queued or waiting in the ring, without sleeping. */
bool xenbus_watch_pending(void);
int xenbus_transaction_start(xenbus_transaction_t *t);
/* Commit (abort = false) or abort; a commit that lost a race is -XEN_EAGAIN. */
int xenbus_transaction_end(xenbus_transaction_t t, bool abort);
/* "ENOENT" for -XEN_ENOENT and so on: the name xenstored sent. */
const char *xenbus_errname(int err);
/* Requests answered, and store-port upcalls taken, since xenbus_init. */
uint32_t xenbus_requests(void);
uint32_t xenbus_upcalls(void);
/* Domain id, as xenstored knows it (read from ~/domid at init). */
domid_t xenbus_domid(void);

/* ---- grant tables, v1 (gnttab.c) -------------------------------------------- */

/* Map frame 0 of this domain's grant table at GUEST_GNTTAB_BASE with
 * XENMEM_add_to_physmap (512 entries).  Returns 0 or a negative errno. */
int gnttab_init(void);
/* Entries the mapped frames hold.  Refs 0 and 1 (console, xenstore) are
 * the domain builder's and refused; 2..7 are free for fixed protocols. */
unsigned int gnttab_nr_entries(void);
/* Let `domid` map frame `gfn` through `ref`: frame and domid first, then
 * the flags, so the hypervisor never sees a half-written entry. */
int gnttab_grant_access(grant_ref_t ref, domid_t domid, uint32_t gfn, bool readonly);
/* Revoke `ref`; -XEN_EBUSY while the grantee still maps it. */
int gnttab_end_access(grant_ref_t ref);
/* Current GTF_* flags of `ref` (GTF_reading / GTF_writing while mapped). */
uint16_t gnttab_flags(grant_ref_t ref);
/* GNTTABOP_map_grant_ref of (domid, ref) at guest-physical `gpa`: returns
 * the GNTST_* status (or a negative errno from the hypercall), the handle
 * in *handle. */
int gnttab_map(domid_t domid, grant_ref_t ref, uint32_t gpa, bool readonly,
               grant_handle_t *handle);
int gnttab_unmap(uint32_t gpa, grant_handle_t handle);
/* The guest frame of a pointer (through the guest's own page table). */
uint32_t virt_to_gfn(const void *p);

/* ---- the PV console ring (xencons.c) --------------------------------------- */

/* HVMOP_get_param of this domain. */
int hvm_param_get(uint32_t index, uint64_t *value);
/* Read HVM_PARAM_CONSOLE_PFN / CONSOLE_EVTCHN and map the ring page; with
 * `bind`, the port's upcalls are taken (and counted).  Needs evtchn_init()
 * first when binding.  Returns 0 or a negative errno. */
int xencons_init(bool bind);
/* Put up to len bytes in the `out` ring and notify; returns how many fit. */
int xencons_write(const char *buf, size_t len);
int xencons_notify(void);
/* xenconsoled has taken everything written so far. */
bool xencons_drained(void);
evtchn_port_t xencons_port(void);
uint32_t xencons_pfn(void);
uint32_t xencons_upcalls(void);

/* ---- the device tree (fdt.c) ------------------------------------------------ */

/* Copy up to `size` bytes of property `prop` of the top-level node `node`
 * (e.g. "hypervisor") of the boot device tree; returns the property's
 * length, or -1 if there is no such node or property. */
int fdt_node_prop(const char *node, const char *prop, void *buf, size_t size);

#endif /* __ASSEMBLER__ */
#endif /* GUEST_H */
