/*
 * The dom0 zImage of the Cubieboard2 SD card: Linux's arm32 zImage header (see sources.txt),
 * then a marker. If a CPU ever ran it, it would park.
 */
#include "asm.h"

    .syntax unified
    .arch armv7-a
    .arm

    .section .head, "ax"
    .global _start
_start:
    zimage_header park, 0, _end - _start
    .word   0x04030201              @ 0x30: endianness flag (little-endian)

    .ascii  "XENPYD0\0"
    .asciz  "xenpy dom0 kernel stand-in: Domain-0's work is done by the host's Python"
    .balign 4

park:
    wfi
    b       park
