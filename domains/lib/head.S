/*
 * Boot code of the xenpy guests: the arm32 zImage header, the entry points
 * of the boot vCPU and of secondary vCPUs, per-vCPU stacks and the
 * exception vectors.
 *
 * Boot state (Xen's domU builder): SVC mode with A, I, F masked, MMU and
 * caches off, r0 = 0, r1 = 0xffffffff, r2 = guest device tree address.
 * The image is linked where the toolstack loads it (RAM base + 0x8000),
 * so absolute addresses are valid from the first instruction.
 */
#include "guest.h"
#include "asm.h"

    .syntax unified
    .arch armv7-a
    .arch_extension virt           @ hvc
    .arm

/* ---- zImage header: the layout Linux and ERIKA use ---------------------- */

    .section .head, "ax"
    .global _start
_start:
#ifdef ZIMAGE_END_IS_SIZE
    zimage_header reset, _start, _image_size    @ as some RTOS ports: the end word is a size
#else
    zimage_header reset, _start, _edata
#endif
    .word   0x04030201              @ 0x30: endianness flag (little-endian)

/* ---- boot vCPU ----------------------------------------------------------- */

    .text
reset:
    cpsid   aif, #PSR_MODE_SVC
    mov     r4, r2                  @ the DTB address survives the bss clear

    /* With the MMU off memory is strongly ordered: word stores only, and
     * the linker script keeps both ends of .bss word aligned. */
    ldr     r0, =__bss_start
    ldr     r1, =__bss_end
    mov     r2, #0
1:  cmp     r0, r1
    strlo   r2, [r0], #4
    blo     1b

    ldr     r0, =boot_dtb_addr
    str     r4, [r0]

    mov     r0, #0
    bl      cpu_setup
    bl      main
    b       guest_exit              @ r0 = main's return value

/* ---- secondary vCPUs: PSCI CPU_ON entry, r0 = context id = vCPU index --- */

    .global secondary_entry
secondary_entry:
    cpsid   aif, #PSR_MODE_SVC
    cmp     r0, #0                  @ index 0 is the boot vCPU's stack
    beq     park
    cmp     r0, #NR_CPUS
    bhs     park
    mov     r4, r0
    bl      cpu_setup
    mov     r0, r4
    b       secondary_start

/* A vCPU started with a context id we cannot host: it has no stack, so
 * it turns itself off without touching memory. */
park:
    ldr     r0, =PSCI_0_2_FN_CPU_OFF
    hvc     #0                      @ PSCI CPU_OFF
2:  wfi
    b       2b

/*
 * cpu_setup(r0 = vCPU index): vectors, TPIDRPRW and a stack in every mode
 * the vectors use.  Clobbers r1-r2.  Runs in SVC mode; lr_svc is banked,
 * so it survives the trips through the other modes.
 */
cpu_setup:
    mcr     p15, 0, r0, c13, c0, 4  @ TPIDRPRW = vCPU index
    ldr     r1, =vectors
    mcr     p15, 0, r1, c12, c0, 0  @ VBAR (SCTLR.V is 0 at boot)
    add     r1, r0, #1              @ stacks grow down from the end of slot r0
    ldr     r2, =und_stacks
    cps     #PSR_MODE_UND
    add     sp, r2, r1, lsl #EXC_STACK_SHIFT
    ldr     r2, =abt_stacks
    cps     #PSR_MODE_ABT
    add     sp, r2, r1, lsl #EXC_STACK_SHIFT
    ldr     r2, =fiq_stacks
    cps     #PSR_MODE_FIQ
    add     sp, r2, r1, lsl #EXC_STACK_SHIFT
    ldr     r2, =irq_stacks
    cps     #PSR_MODE_IRQ
    add     sp, r2, r1, lsl #IRQ_STACK_SHIFT
    ldr     r2, =svc_stacks
    cps     #PSR_MODE_SVC
    add     sp, r2, r1, lsl #SVC_STACK_SHIFT
    isb
    bx      lr

/* main() returned: power off with its value ignored, as a process exit. */
guest_exit:
    mov     r0, #SHUTDOWN_poweroff
    b       guest_shutdown

/* ---- exception vectors --------------------------------------------------- */

    .align  5                       @ VBAR needs 32-byte alignment
vectors:
    b       vec_unused              @ 0x00 reset: not taken through VBAR
    b       vec_undef               @ 0x04
    b       vec_svc                 @ 0x08
    b       vec_pabt                @ 0x0c
    b       vec_dabt                @ 0x10
    b       vec_unused              @ 0x14 hyp trap: only in Hyp mode
    b       vec_irq                 @ 0x18
    b       vec_fiq                 @ 0x1c

/* Every vector but IRQ is fatal (traps.c works out the faulting pc). */
    crash_vector vec_unused, EXC_UNUSED
    crash_vector vec_undef, EXC_UNDEF
    crash_vector vec_svc, EXC_SVC
    crash_vector vec_pabt, EXC_PABT
    crash_vector vec_dabt, EXC_DABT
    crash_vector vec_fiq, EXC_FIQ

/* IRQ: save the AAPCS caller-saved registers (6 words keep sp 8-byte
 * aligned), call irq_handler(resume pc), return restoring CPSR from SPSR.
 * IRQs stay masked throughout, so no nesting. */
vec_irq:
    sub     lr, lr, #4
    push    {r0-r3, r12, lr}
    mov     r0, lr
    bl      irq_handler
    ldm     sp!, {r0-r3, r12, pc}^

    .ltorg

/* ---- per-vCPU stacks ---------------------------------------------------- */

    .section .bss.stacks, "aw", %nobits
    .align  3
svc_stacks: .space  NR_CPUS << SVC_STACK_SHIFT
irq_stacks: .space  NR_CPUS << IRQ_STACK_SHIFT
und_stacks: .space  NR_CPUS << EXC_STACK_SHIFT
abt_stacks: .space  NR_CPUS << EXC_STACK_SHIFT
fiq_stacks: .space  NR_CPUS << EXC_STACK_SHIFT

    .section .bss, "aw", %nobits
    .align  2
    .global boot_dtb_addr
boot_dtb_addr:
    .space  4
