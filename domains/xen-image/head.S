/*
 * The xen image of the Cubieboard2 SD card: a zImage header as Xen's arm32 head.S lays it out,
 * then the xenpy hypervisor record (see sources.txt). If a CPU ever ran it, it would park.
 */
#include "asm.h"

    .syntax unified
    .arch armv7-a
    .arm

    .section .head, "ax"
    .global _start
_start:
    zimage_header park, 0, _end - _start

/* 0x30: the record common/bootfdt.py reads (XENPY_XEN_MAGIC, version, banner) */
    .ascii  "XENPYHV\0"
    .word   1
    .asciz  "Xen 4.4.0-xenpy (the hypervisor is modelled in Python; this image identifies it)"
    .balign 4

park:
    wfi
    b       park
