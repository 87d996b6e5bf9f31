/*
 * The dom0 zImage of the Cubieboard2 SD card: Linux's arm32 zImage header (see sources.txt),
 * then a marker. If a CPU ever ran it, it would park.
 */
    .syntax unified
    .arch armv7-a
    .arm

    .section .head, "ax"
    .global _start
_start:
    .rept 8
    mov     r0, r0                  @ 0x00-0x1c: no-ops, as in Linux
    .endr
    b       park                    @ 0x20
    .word   0x016f2818              @ 0x24: zImage magic
    .word   0                       @ 0x28: start: position independent, as Linux's zImage
    .word   _end - _start           @ 0x2c: end (= size)
    .word   0x04030201              @ 0x30: endianness flag (little-endian)

    .ascii  "XENPYD0\0"
    .asciz  "xenpy dom0 kernel stand-in: Domain-0's work is done by the host's Python"
    .balign 4

park:
    wfi
    b       park
