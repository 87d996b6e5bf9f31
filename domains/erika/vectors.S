/*
 * The kernel's exception vectors and task frames.
 *
 * The runtime's IRQ vector keeps the interrupted state on the IRQ stack
 * and returns straight to it; a kernel that preempts must instead run the
 * newly ready task before returning, with interrupts enabled again.  So
 * this IRQ entry moves the whole frame (SRS) onto the SVC stack the tasks
 * share, handles the interrupt in SVC mode (os_irq: dispatch, then run any
 * task of higher priority than the interrupted one) and returns with RFE.
 * A second interrupt while that task runs stacks a new frame on top: the
 * IRQ-mode lr and spsr are never live across the handler.
 */
#include "guest.h"
#include "asm.h"

    .syntax unified
    .arch armv7-a
    .arm

    .text
    .align  5                       @ VBAR: 32-byte aligned
    .global os_vectors
os_vectors:
    b       os_vec_unused           @ 0x00 reset
    b       os_vec_undef            @ 0x04
    b       os_vec_svc              @ 0x08
    b       os_vec_pabt             @ 0x0c
    b       os_vec_dabt             @ 0x10
    b       os_vec_unused           @ 0x14 hyp trap
    b       os_vec_irq              @ 0x18
    b       os_vec_fiq              @ 0x1c

/* Fatal exceptions: the runtime's report (traps.c) on this mode's stack. */

    crash_vector os_vec_unused, EXC_UNUSED
    crash_vector os_vec_undef, EXC_UNDEF
    crash_vector os_vec_svc, EXC_SVC
    crash_vector os_vec_pabt, EXC_PABT
    crash_vector os_vec_dabt, EXC_DABT
    crash_vector os_vec_fiq, EXC_FIQ

os_vec_irq:
    sub     lr, lr, #4              @ the interrupted instruction
    srsdb   sp!, #PSR_MODE_SVC      @ push {lr_irq, spsr_irq} on the SVC stack
    cps     #PSR_MODE_SVC
    push    {r0-r3, r12, lr}        @ caller-saved registers and lr_svc
    and     r1, sp, #4              @ AAPCS: 8-byte aligned stack for C
    sub     sp, sp, r1
    push    {r1, r2}
    bl      os_irq                  @ returns with IRQs masked
    pop     {r1, r2}
    add     sp, sp, r1
    pop     {r0-r3, r12, lr}
    rfeia   sp!                     @ pc and cpsr of the interrupted code

/*
 * void os_task_run(void (*entry)(void), uint32_t *frame)
 *
 * Run a task's body with IRQs enabled.  The callee-saved registers and the
 * return address go on the stack and the stack pointer into *frame, so
 * TerminateTask can leave the task from any depth: os_task_exit(*frame)
 * returns from this call as if the body had returned.  Called and returns
 * with IRQs masked.
 */
    .global os_task_run
os_task_run:
    push    {r3-r11, lr}            @ ten words keep the 8-byte alignment
    str     sp, [r1]
    cpsie   i
    blx     r0
    cpsid   i                       @ the body returned without TerminateTask
    bl      os_task_returned
    pop     {r3-r11, pc}

/* void os_task_exit(uint32_t frame): back into os_task_run's caller. */
    .global os_task_exit
os_task_exit:
    mov     sp, r0
    pop     {r3-r11, pc}
