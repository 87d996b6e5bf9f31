/* Assembler macros shared by the guests' .S files. */
#ifndef ASM_H
#define ASM_H

#include "xen.h"

/* 0x00-0x2f of an arm32 zImage, as Linux (and Xen's own head.S) lay it out:
 * eight no-ops, a branch to `entry`, the magic, then start and end (start 0
 * means position independent, and end is then the size). */
.macro zimage_header entry, start, end
    .rept 8
    mov     r0, r0                  @ 0x00-0x1c: no-ops, as in Linux
    .endr
    b       \entry                  @ 0x20
    .word   ZIMAGE_MAGIC            @ 0x24: magic
    .word   \start                  @ 0x28: load (and run) address, or 0
    .word   \end                    @ 0x2c: end of the loaded image
.endm

/* A fatal exception vector: the runtime's report (traps.c) of `kind`, the
 * banked lr and the spsr, on the current mode's own stack. */
.macro crash_vector name, kind
\name:
    mov     r0, #\kind
    mov     r1, lr
    mrs     r2, spsr
    b       exception_crash
.endm

#endif /* ASM_H */
