/*
 * The User-mode half of the faults guest, and its exception vectors.
 *
 * user_code is one page, mapped read-only and privileged-execute-never at
 * USER_CODE_VA (as Linux maps a process's text): it must be position
 * independent, and it reaches every address through movw/movt.  Each
 * access that aborts is labelled, so the handlers can check the faulting
 * instruction; a data abort resumes at the next instruction, a prefetch
 * abort at the user_resume_* label after its branch.
 */
#include "guest.h"
#include "asm.h"
#include "faults.h"

    .syntax unified
    .arch armv7-a
    .fpu neon-vfpv4
    .arm

.macro movaddr reg, value
    movw    \reg, #:lower16:\value
    movt    \reg, #:upper16:\value
.endm

    .section .text.user, "ax"
    .p2align 12
    .global user_code, user_str, user_fetch, user_resume_fetch, user_vst1, user_ldm
    .global user_kread, user_ldrex, user_straddle, user_resume_straddle
user_code:
    movaddr r5, USER_DATA_VA
    ldr     r4, [r5]                @ 1. an allowed read of a user page
    movaddr r6, USER_RO_VA
user_str:
    str     r4, [r6]                @ 2. a write to a read-only page
    movaddr r7, USER_XN_VA
user_fetch:
    blx     r7                      @ 3. a fetch from an execute-never page
user_resume_fetch:
    movaddr r8, USER_GAP_VA + 0x40
user_vst1:
    vst1.8  {d0-d1}, [r8]!          @ 4. vst1 to an unmapped page
    movaddr r9, USER_DATA_VA + 0xff8
user_ldm:
    ldm     r9, {r0-r3}             @ 5. an ldm running from a user page into an unmapped one
    movaddr r10, KERNEL_PROBE_VA
user_kread:
    ldr     r0, [r10]               @ 6. a user read of kernel memory
    add     r11, r5, #2
user_ldrex:
    ldrex   r0, [r11]               @ 7. an exclusive load that is not word aligned
    movaddr r11, USER_CODE_VA + 0xffe + 1
    blx     r11                     @ 8. a T32 instruction whose second half is on an XN page
user_resume_straddle:
    mov     r0, r4
    svc     #0                      @ done: the kernel checks what the read returned
    b       .

/* The last halfword of the page starts a 32-bit Thumb instruction; its
 * second halfword is fetched from USER_DATA_VA, which is execute-never. */
    .org    user_code + 0xffe
    .thumb
user_straddle:
    ldr.w   r0, [r1]
    .arm

/* ---- vectors -------------------------------------------------------------- */

    .text
    .align  5
    .global fault_vectors
fault_vectors:
    b       fvec_unused             @ 0x00
    b       fvec_undef              @ 0x04
    b       fvec_svc                @ 0x08
    b       fvec_pabt               @ 0x0c
    b       fvec_dabt               @ 0x10
    b       fvec_unused             @ 0x14
    b       fvec_unused             @ 0x18 (no interrupts are enabled)
    b       fvec_unused             @ 0x1c

    crash_vector fvec_unused, EXC_UNUSED
    crash_vector fvec_undef, EXC_UNDEF

/* Aborts: on_dabt/on_pabt(faulting pc, spsr) check the fault and return
 * where to resume; the caller-saved registers are preserved around them. */
fvec_dabt:
    sub     lr, lr, #8
    push    {r0-r3, r12, lr}
    mov     r0, lr
    mrs     r1, spsr
    bl      on_dabt
    str     r0, [sp, #20]
    ldm     sp!, {r0-r3, r12, pc}^

/* on_pabt's resume address has bit 0 set to resume in Thumb state. */
fvec_pabt:
    sub     lr, lr, #4
    push    {r0-r3, r12, lr}
    mov     r0, lr
    mrs     r1, spsr
    bl      on_pabt
    mrs     r1, spsr
    bic     r1, r1, #PSR_T
    tst     r0, #1
    orrne   r1, r1, #PSR_T
    msr     spsr_cxsf, r1
    bic     r0, r0, #1
    str     r0, [sp, #20]
    ldm     sp!, {r0-r3, r12, pc}^

/* SVC from user_code: r0 is the value the allowed read returned. */
fvec_svc:
    mrs     r1, spsr
    b       on_svc

/* enter_user(pc): drop to User mode (IRQs, FIQs and aborts masked) at pc. */
    .global enter_user
enter_user:
    mov     lr, r0
    mov     r1, #(PSR_MODE_USR | PSR_I | PSR_F | PSR_A)
    msr     spsr_cxsf, r1
    movs    pc, lr

/* The FPU and Advanced SIMD for PL0 and PL1: CPACR cp10/cp11 full access,
 * then FPEXC.EN. */
    .global vfp_enable
vfp_enable:
    mrc     p15, 0, r0, c1, c0, 2
    orr     r0, r0, #(0xf << 20)
    mcr     p15, 0, r0, c1, c0, 2
    isb
    mov     r0, #(1 << 30)
    vmsr    fpexc, r0
    bx      lr

/* ldrt_probe(va): an unprivileged load from SVC mode. */
    .global ldrt_probe, ldrt_insn
ldrt_probe:
ldrt_insn:
    ldrt    r1, [r0]
    mov     r0, r1
    bx      lr
