/*
 * The unmask guest's exception vectors: the runtime's IRQ path and crash
 * reports, plus an SVC handler that returns to its caller with CPSR.I
 * cleared, in one of three ways chosen by the SVC immediate:
 *
 *   svc #SVC_SUBS   subs pc, lr, #0          (SPSR -> CPSR)
 *   svc #SVC_RFE    rfeia sp!                (PC and CPSR from the stack)
 *   svc #SVC_LDM    ldmia sp!, {..., pc}^    (SPSR -> CPSR)
 *
 * The caller runs in SVC mode with IRQs masked; the handler shares its
 * stack (below the caller's frame) and preserves every register but lr.
 */
#include "guest.h"
#include "asm.h"
#include "unmask.h"

    .syntax unified
    .arch armv7-a
    .arm
    .text

    .align  5                       @ VBAR needs 32-byte alignment
    .global unmask_vectors
unmask_vectors:
    b       uvec_unused             @ 0x00 reset
    b       uvec_undef              @ 0x04
    b       uvec_svc                @ 0x08
    b       uvec_pabt               @ 0x0c
    b       uvec_dabt               @ 0x10
    b       uvec_unused             @ 0x14 hyp trap
    b       uvec_irq                @ 0x18
    b       uvec_fiq                @ 0x1c

    crash_vector uvec_unused, EXC_UNUSED
    crash_vector uvec_undef, EXC_UNDEF
    crash_vector uvec_pabt, EXC_PABT
    crash_vector uvec_dabt, EXC_DABT
    crash_vector uvec_fiq, EXC_FIQ

/* As the runtime's IRQ vector (head.S). */
uvec_irq:
    sub     lr, lr, #4
    push    {r0-r3, r12, lr}
    mov     r0, lr
    bl      irq_handler
    ldm     sp!, {r0-r3, r12, pc}^

/* Frame: r0-r3, r12, lr (the return address), then a word for the SPSR. */
uvec_svc:
    sub     sp, sp, #4
    push    {r0-r3, r12, lr}
    mrs     r1, spsr
    bic     r1, r1, #PSR_I          @ the return unmasks IRQs
    str     r1, [sp, #24]
    msr     spsr_cxsf, r1
    ldr     r0, [lr, #-4]           @ the SVC instruction (A32)
    and     r0, r0, #0xff           @ its immediate
    cmp     r0, #SVC_RFE
    beq     1f
    cmp     r0, #SVC_LDM
    beq     2f
    cmp     r0, #SVC_SUBS
    bne     uvec_undef_svc
    pop     {r0-r3, r12, lr}
    add     sp, sp, #4
    subs    pc, lr, #0
1:  pop     {r0-r3, r12}
    rfeia   sp!                     @ PC = [sp] (the return address), CPSR = [sp + 4]
2:  ldr     r0, [sp, #20]           @ return address into the SPSR word's place
    str     r0, [sp, #24]
    ldmia   sp!, {r0-r3, r12, lr, pc}^

/* An SVC immediate nobody asked for: report it as the runtime does. */
uvec_undef_svc:
    pop     {r0-r3, r12, lr}
    add     sp, sp, #4
    mov     r0, #EXC_SVC
    mov     r1, lr
    mrs     r2, spsr
    b       exception_crash
