/*
 * Exception reports.  The vectors (head.S) pass the banked lr and the spsr
 * of the exception mode; the preferred return address, and so the
 * faulting instruction, sits at a per-exception offset from lr (ARM ARM,
 * "Exception entry"): undef and SVC point past the instruction (4 bytes in
 * ARM state, 2 in Thumb), prefetch abort is lr - 4, data abort lr - 8.
 */
#include "guest.h"

static const char *const exception_names[] = {
    [EXC_UNUSED] = "unused vector",
    [EXC_UNDEF] = "undef",
    [EXC_SVC] = "svc",
    [EXC_PABT] = "prefetch abort",
    [EXC_DABT] = "data abort",
    [EXC_IRQ] = "irq",
    [EXC_FIQ] = "fiq",
};

__noreturn void exception_crash(uint32_t kind, uint32_t lr, uint32_t spsr)
{
    uint32_t pc;

    switch (kind) {
    case EXC_UNDEF:
    case EXC_SVC:
        pc = lr - ((spsr & PSR_T) ? 2 : 4);
        break;
    case EXC_PABT:
    case EXC_FIQ:
        pc = lr - 4;
        break;
    case EXC_DABT:
        pc = lr - 8;
        break;
    default:
        kind = EXC_UNUSED;
        pc = lr;
        break;
    }

    console_flush();
    if (kind == EXC_DABT)
        printk("data abort: dfsr=%08x dfar=%08x spsr=%08x\n",
               read_dfsr(), read_dfar(), spsr);
    else if (kind == EXC_PABT)
        printk("prefetch abort: ifsr=%08x ifar=%08x spsr=%08x\n",
               read_ifsr(), read_ifar(), spsr);
    crash(exception_names[kind], pc);
}

/* No guest interrupt is expected unless the guest links gic.c, whose
 * irq_handler dispatches through the GIC. */
__attribute__((weak)) void irq_handler(uint32_t pc)
{
    crash("irq", pc);
}
