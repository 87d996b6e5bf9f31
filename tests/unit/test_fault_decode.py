"""Data and prefetch abort reporting checked against the ARMv7-A ARM, for every load/store class.

For each A32 and T32 load/store encoding the table gives, by hand from the instruction's pseudocode
(ARM ARM A8), the bytes it accesses relative to a base value X, its direction, whether it is an
unprivileged (T) form, and the alignment it needs (A3.2.1: "aN" always, "eN" the element size,
checked when SCTLR.A is set).  Each instruction is then placed so that it hits pages with different
attributes, under short descriptors (SCTLR.AFE set, with and without TEX remap) and LPAE, from User
and from SVC mode, and the (DFAR, DFSR, WnR) reported must be what the architecture says: the
status codes below are transcribed from tables B3-23 (short-descriptor FSR) and B3-24 (long-
descriptor FSR), not taken from the code under test.

The encodings were produced by assembling each line with
`python -m ziglang cc -target arm-freestanding-eabi -mcpu=cortex_a15 -c` (.arm / .thumb, with the
neon, mp and sec extensions), then hard-coded so the test needs no toolchain.

Row flags: w write, u unprivileged, s swap (read then write), c cache maintenance by VA,
k privileged-only (UNPREDICTABLE or UNDEFINED in User mode), l literal (PC-relative), h hint.
"""
from __future__ import annotations

import pytest

from xenpy.arch.arm import guest_walk
from xenpy.arch.arm.guest_walk import Stage1Regs

A32_CASES = [
    ('ldr r0, [r1]', 0xe5910000, 'r1=X', 0, 4, 'e4'),
    ('ldr r0, [r1, #4]', 0xe5910004, 'r1=X', 4, 4, 'e4'),
    ('ldr r0, [r1, #-4]!', 0xe5310004, 'r1=X', -4, 4, 'e4'),
    ('ldr r0, [r1], #4', 0xe4910004, 'r1=X', 0, 4, 'e4'),
    ('ldr r0, [r1, r2]', 0xe7910002, 'r1=X r2=8', 8, 4, 'e4'),
    ('ldr r0, [r1, -r2, lsl #2]', 0xe7110102, 'r1=X r2=2', -8, 4, 'e4'),
    ('ldr r0, [r1, r2, lsl #2]!', 0xe7b10102, 'r1=X r2=2', 8, 4, 'e4'),
    ('ldr r0, [r1], -r2', 0xe6110002, 'r1=X r2=8', 0, 4, 'e4'),
    ('ldr r0, [pc, #8]', 0xe59f0008, 'pc=X-16', 0, 4, 'e4 l'),
    ('str r0, [r1, #8]', 0xe5810008, 'r1=X', 8, 4, 'w e4'),
    ('str r0, [r1, r2, lsr #1]!', 0xe7a100a2, 'r1=X r2=16', 8, 4, 'w e4'),
    ('strb r0, [r1, #3]', 0xe5c10003, 'r1=X', 3, 1, 'w'),
    ('ldrb r0, [r1, r2]', 0xe7d10002, 'r1=X r2=8', 8, 1, ''),
    ('ldrt r0, [r1], #4', 0xe4b10004, 'r1=X', 0, 4, 'u e4'),
    ('strt r0, [r1], r2', 0xe6a10002, 'r1=X r2=8', 0, 4, 'w u e4'),
    ('ldrbt r0, [r1], #1', 0xe4f10001, 'r1=X', 0, 1, 'u'),
    ('strbt r0, [r1], #-1', 0xe4610001, 'r1=X', 0, 1, 'w u'),
    ('ldrh r0, [r1, #2]', 0xe1d100b2, 'r1=X', 2, 2, 'e2'),
    ('strh r0, [r1, #-2]!', 0xe16100b2, 'r1=X', -2, 2, 'w e2'),
    ('ldrsh r0, [r1], r2', 0xe09100f2, 'r1=X r2=8', 0, 2, 'e2'),
    ('ldrsb r0, [r1, #1]', 0xe1d100d1, 'r1=X', 1, 1, ''),
    ('ldrh r0, [pc, #4]', 0xe1df00b4, 'pc=X-12', 0, 2, 'e2 l'),
    ('ldrht r0, [r1], #2', 0xe0f100b2, 'r1=X', 0, 2, 'u e2'),
    ('strht r0, [r1], #2', 0xe0e100b2, 'r1=X', 0, 2, 'w u e2'),
    ('ldrsbt r0, [r1], #1', 0xe0f100d1, 'r1=X', 0, 1, 'u'),
    ('ldrsht r0, [r1], r2', 0xe0b100f2, 'r1=X r2=2', 0, 2, 'u e2'),
    ('ldrd r2, r3, [r1, #8]', 0xe1c120d8, 'r1=X', 8, 8, 'a4 e4'),
    ('strd r2, r3, [r1, #-8]!', 0xe16120f8, 'r1=X', -8, 8, 'w a4 e4'),
    ('ldrd r2, r3, [r1], r4', 0xe08120d4, 'r1=X r4=8', 0, 8, 'a4 e4'),
    ('strd r2, r3, [r1, -r4]', 0xe10120f4, 'r1=X r4=8', -8, 8, 'w a4 e4'),
    ('ldrd r2, r3, [pc, #8]', 0xe1cf20d8, 'pc=X-16', 0, 8, 'a4 e4 l'),
    ('ldrex r0, [r1]', 0xe1910f9f, 'r1=X', 0, 4, 'a4 e4'),
    ('strex r2, r0, [r1]', 0xe1812f90, 'r1=X', 0, 4, 'w a4 e4'),
    ('ldrexb r0, [r1]', 0xe1d10f9f, 'r1=X', 0, 1, ''),
    ('strexh r2, r0, [r1]', 0xe1e12f90, 'r1=X', 0, 2, 'w a2 e2'),
    ('ldrexd r2, r3, [r1]', 0xe1b12f9f, 'r1=X', 0, 8, 'a8 e8'),
    ('strexd r0, r2, r3, [r1]', 0xe1a10f92, 'r1=X', 0, 8, 'w a8 e8'),
    ('ldm r1, {r2-r5}', 0xe891003c, 'r1=X', 0, 16, 'a4 e4'),
    ('ldmib r1!, {r2-r5}', 0xe9b1003c, 'r1=X', 4, 16, 'a4 e4'),
    ('ldmda r1, {r2-r5}', 0xe811003c, 'r1=X', -12, 16, 'a4 e4'),
    ('ldmdb r1!, {r2-r5}', 0xe931003c, 'r1=X', -16, 16, 'a4 e4'),
    ('stm r1, {r2, r3}', 0xe881000c, 'r1=X', 0, 8, 'w a4 e4'),
    ('stmib r1, {r2, r3}', 0xe981000c, 'r1=X', 4, 8, 'w a4 e4'),
    ('stmda r1!, {r2, r3}', 0xe821000c, 'r1=X', -4, 8, 'w a4 e4'),
    ('stmdb r1, {r2, r3}', 0xe901000c, 'r1=X', -8, 8, 'w a4 e4'),
    ('push {r4-r7, lr}', 0xe92d40f0, 'sp=X', -20, 20, 'w a4 e4'),
    ('pop {r4-r7, pc}', 0xe8bd80f0, 'sp=X', 0, 20, 'a4 e4'),
    ('ldm r1, {r2, r3}^', 0xe8d1000c, 'r1=X', 0, 8, 'a4 e4 k'),
    ('stmdb r1, {r2, r3}^', 0xe941000c, 'r1=X', -8, 8, 'w a4 e4 k'),
    ('ldm r1!, {r2, pc}^', 0xe8f18004, 'r1=X', 0, 8, 'a4 e4 k'),
    ('swp r0, r2, [r1]', 0xe1010092, 'r1=X', 0, 4, 'w s a4 e4'),
    ('swpb r0, r2, [r1]', 0xe1410092, 'r1=X', 0, 1, 'w s'),
    ('pld [r1, #4]', 0xf5d1f004, 'r1=X', 4, 1, 'h'),
    ('pldw [r1]', 0xf591f000, 'r1=X', 0, 1, 'h'),
    ('pli [r1, -r2]', 0xf651f002, 'r1=X r2=8', -8, 1, 'h'),
    ('vldr d0, [r1, #8]', 0xed910b02, 'r1=X', 8, 8, 'a4 e4'),
    ('vstr s1, [r1, #-4]', 0xed410a01, 'r1=X', -4, 4, 'w a4 e4'),
    ('vldr d1, [pc, #-8]', 0xed1f1b02, 'pc=X', 0, 8, 'a4 e4 l'),
    ('vldmia r1!, {d0-d3}', 0xecb10b08, 'r1=X', 0, 32, 'a4 e4'),
    ('vstmdb r1!, {s0-s3}', 0xed210a04, 'r1=X', -16, 16, 'w a4 e4'),
    ('vstmia r1, {d4-d5}', 0xec814b04, 'r1=X', 0, 16, 'w a4 e4'),
    ('vpush {d8-d9}', 0xed2d8b04, 'sp=X', -16, 16, 'w a4 e4'),
    ('vpop {d8-d9}', 0xecbd8b04, 'sp=X', 0, 16, 'a4 e4'),
    ('vld1.8 {d0}, [r1]', 0xf421070f, 'r1=X', 0, 8, 'e1'),
    ('vld1.32 {d0-d1}, [r1:128]!', 0xf4210aad, 'r1=X', 0, 16, 'a16 e4'),
    ('vst1.8 {d0-d3}, [r1]!', 0xf401020d, 'r1=X', 0, 32, 'w e1'),
    ('vst1.64 {d0, d1}, [r1:128], r2', 0xf4010ae2, 'r1=X r2=16', 0, 16, 'w a16 e8'),
    ('vld1.16 {d0-d2}, [r1:64]', 0xf421065f, 'r1=X', 0, 24, 'a8 e2'),
    ('vld2.16 {d0-d1}, [r1]', 0xf421084f, 'r1=X', 0, 16, 'e2'),
    ('vld2.8 {d0-d3}, [r1:256]', 0xf421033f, 'r1=X', 0, 32, 'a32 e1'),
    ('vst2.32 {d0, d2}, [r1:128]!', 0xf40109ad, 'r1=X', 0, 16, 'w a16 e4'),
    ('vst3.32 {d0, d1, d2}, [r1]!', 0xf401048d, 'r1=X', 0, 24, 'w e4'),
    ('vld3.16 {d0, d2, d4}, [r1:64], r2', 0xf4210552, 'r1=X r2=8', 0, 24, 'a8 e2'),
    ('vld4.8 {d0-d3}, [r1:64]', 0xf421001f, 'r1=X', 0, 32, 'a8 e1'),
    ('vst4.16 {d0, d2, d4, d6}, [r1:256]', 0xf401017f, 'r1=X', 0, 32, 'w a32 e2'),
    ('vld1.32 {d0[1]}, [r1:32]', 0xf4a108bf, 'r1=X', 0, 4, 'a4 e4'),
    ('vst1.16 {d0[2]}, [r1], r2', 0xf4810482, 'r1=X r2=8', 0, 2, 'w e2'),
    ('vld1.8 {d0[7]}, [r1]!', 0xf4a100ed, 'r1=X', 0, 1, 'e1'),
    ('vld2.8 {d0[3], d1[3]}, [r1:16]', 0xf4a1017f, 'r1=X', 0, 2, 'a2 e1'),
    ('vst2.32 {d0[1], d2[1]}, [r1:64]', 0xf48109df, 'r1=X', 0, 8, 'w a8 e4'),
    ('vld3.32 {d0[0], d1[0], d2[0]}, [r1]', 0xf4a10a0f, 'r1=X', 0, 12, 'e4'),
    ('vst3.8 {d0[1], d1[1], d2[1]}, [r1]!', 0xf481022d, 'r1=X', 0, 3, 'w e1'),
    ('vst4.16 {d0[1], d1[1], d2[1], d3[1]}, [r1:64]', 0xf481075f, 'r1=X', 0, 8, 'w a8 e2'),
    ('vld4.32 {d0[1], d1[1], d2[1], d3[1]}, [r1:128]', 0xf4a10baf, 'r1=X', 0, 16, 'a16 e4'),
    ('vld1.32 {d0[]}, [r1:32]', 0xf4a10c9f, 'r1=X', 0, 4, 'a4 e4'),
    ('vld1.8 {d0[], d1[]}, [r1]!', 0xf4a10c2d, 'r1=X', 0, 1, 'e1'),
    ('vld2.16 {d0[], d1[]}, [r1:32]!', 0xf4a10d5d, 'r1=X', 0, 4, 'a4 e2'),
    ('vld3.8 {d0[], d1[], d2[]}, [r1]', 0xf4a10e0f, 'r1=X', 0, 3, 'e1'),
    ('vld4.32 {d0[], d1[], d2[], d3[]}, [r1:64]', 0xf4a10f9f, 'r1=X', 0, 16, 'a8 e4'),
    ('vld4.16 {d0[], d1[], d2[], d3[]}, [r1:64]', 0xf4a10f5f, 'r1=X', 0, 8, 'a8 e2'),
    ('srsdb sp!, #19', 0xf96d0513, 'sp=X', -8, 8, 'w a4 e4 k'),
    ('srsia sp, #19', 0xf8cd0513, 'sp=X', 0, 8, 'w a4 e4 k'),
    ('srsda sp, #19', 0xf84d0513, 'sp=X', -4, 8, 'w a4 e4 k'),
    ('srsib sp!, #19', 0xf9ed0513, 'sp=X', 4, 8, 'w a4 e4 k'),
    ('srsdb sp, #23', 0xf94d0517, 'spb=X', -8, 8, 'w a4 e4 k'),
    ('rfeia r1', 0xf8910a00, 'r1=X', 0, 8, 'a4 e4 k'),
    ('rfedb r1!', 0xf9310a00, 'r1=X', -8, 8, 'a4 e4 k'),
    ('rfeib r1', 0xf9910a00, 'r1=X', 4, 8, 'a4 e4 k'),
    ('rfeda r1!', 0xf8310a00, 'r1=X', -4, 8, 'a4 e4 k'),
    ('mcr p15, 0, r1, c7, c10, 1', 0xee071f3a, 'r1=X', 0, 1, 'c k'),
    ('mcr p15, 0, r1, c7, c14, 1', 0xee071f3e, 'r1=X', 0, 1, 'c k'),
    ('mcr p15, 0, r1, c7, c6, 1', 0xee071f36, 'r1=X', 0, 1, 'c k'),
    ('mcr p15, 0, r1, c7, c11, 1', 0xee071f3b, 'r1=X', 0, 1, 'c k'),
    ('mcr p15, 0, r1, c7, c5, 1', 0xee071f35, 'r1=X', 0, 1, 'c k'),
    ('push {r0}', 0xe52d0004, 'sp=X', -4, 4, 'w e4'),
    ('pop {r0}', 0xe49d0004, 'sp=X', 0, 4, 'e4'),
    ('ldr r0, [r1, r2, rrx]', 0xe7910062, 'r1=X r2=16', 8, 4, 'e4'),
    ('ldr r0, [r1, r2, asr #1]', 0xe79100c2, 'r1=X r2=-16', -8, 4, 'e4'),
    ('strb r0, [r1, -r2, ror #4]', 0xe7410262, 'r1=X r2=0x80', -8, 1, 'w'),
    ('ldrsb r0, [pc, #-4]', 0xe15f00d4, 'pc=X-4', 0, 1, 'l'),
    ('ldrsht r0, [r1], #-2', 0xe07100f2, 'r1=X', 0, 2, 'u e2'),
    ('ldmdaeq r1, {r2}', 0x08110004, 'r1=X', 0, 4, 'a4 e4'),
    ('stmib r1!, {r0-r12, lr}', 0xe9a15fff, 'r1=X', 4, 56, 'w a4 e4'),
    ('vldmdb r1!, {d0-d15}', 0xed310b20, 'r1=X', -128, 128, 'a4 e4'),
    ('vldr s2, [pc, #16]', 0xed9f1a04, 'pc=X-24', 0, 4, 'a4 e4 l'),
    ('vst1.64 {d0-d3}, [r1:256]', 0xf40102ff, 'r1=X', 0, 32, 'w a32 e8'),
    ('vld1.16 {d0[1]}, [r1:16], r2', 0xf4a10452, 'r1=X r2=2', 0, 2, 'a2 e2'),
    ('vst4.8 {d0[5], d1[5], d2[5], d3[5]}, [r1:32]!', 0xf48103bd, 'r1=X', 0, 4, 'w a4 e1'),
]

T32_CASES = [
    ('ldr r0, [r1]', 0x00006808, 'r1=X', 0, 4, 'e4'),
    ('ldr r0, [r1, #4]', 0x00006848, 'r1=X', 4, 4, 'e4'),
    ('str r0, [r1, r2]', 0x00005088, 'r1=X r2=8', 8, 4, 'w e4'),
    ('strb r0, [r1, #3]', 0x000070c8, 'r1=X', 3, 1, 'w'),
    ('ldrb r0, [r1, r2]', 0x00005c88, 'r1=X r2=8', 8, 1, ''),
    ('ldrh r0, [r1, #2]', 0x00008848, 'r1=X', 2, 2, 'e2'),
    ('strh r0, [r1, r2]', 0x00005288, 'r1=X r2=8', 8, 2, 'w e2'),
    ('ldrsb r0, [r1, r2]', 0x00005688, 'r1=X r2=8', 8, 1, ''),
    ('ldrsh r0, [r1, r2]', 0x00005e88, 'r1=X r2=8', 8, 2, 'e2'),
    ('ldr r0, [sp, #8]', 0x00009802, 'sp=X', 8, 4, 'e4'),
    ('str r0, [sp, #4]', 0x00009001, 'sp=X', 4, 4, 'w e4'),
    ('ldr r0, [pc, #4]', 0x00004801, 'pc=X-8', 0, 4, 'e4 l'),
    ('push {r4, r5, lr}', 0x0000b530, 'sp=X', -12, 12, 'w a4 e4'),
    ('pop {r4, r5, pc}', 0x0000bd30, 'sp=X', 0, 12, 'a4 e4'),
    ('stmia r1!, {r2, r3}', 0x0000c10c, 'r1=X', 0, 8, 'w a4 e4'),
    ('ldmia r1, {r1, r2}', 0x0000c906, 'r1=X', 0, 8, 'a4 e4'),
    ('ldr.w r0, [r1, #8]', 0xf8d10008, 'r1=X', 8, 4, 'e4'),
    ('ldr r0, [r1, #-8]', 0xf8510c08, 'r1=X', -8, 4, 'e4'),
    ('ldr r0, [r1, #4]!', 0xf8510f04, 'r1=X', 4, 4, 'e4'),
    ('ldr r0, [r1], #-4', 0xf8510904, 'r1=X', 0, 4, 'e4'),
    ('ldr.w r0, [r1, r2, lsl #2]', 0xf8510022, 'r1=X r2=2', 8, 4, 'e4'),
    ('str.w r0, [r1, #4]', 0xf8c10004, 'r1=X', 4, 4, 'w e4'),
    ('strb.w r0, [r1, #-1]', 0xf8010c01, 'r1=X', -1, 1, 'w'),
    ('ldrsh.w r0, [r1, #2]', 0xf9b10002, 'r1=X', 2, 2, 'e2'),
    ('ldrsb.w r0, [r1, r2]', 0xf9110002, 'r1=X r2=8', 8, 1, ''),
    ('strh.w r0, [r1, #2]!', 0xf8210f02, 'r1=X', 2, 2, 'w e2'),
    ('ldrt r0, [r1, #4]', 0xf8510e04, 'r1=X', 4, 4, 'u e4'),
    ('strt r0, [r1, #4]', 0xf8410e04, 'r1=X', 4, 4, 'w u e4'),
    ('ldrbt r0, [r1, #1]', 0xf8110e01, 'r1=X', 1, 1, 'u'),
    ('strht r0, [r1, #2]', 0xf8210e02, 'r1=X', 2, 2, 'w u e2'),
    ('ldrsbt r0, [r1]', 0xf9110e00, 'r1=X', 0, 1, 'u'),
    ('ldrsht r0, [r1]', 0xf9310e00, 'r1=X', 0, 2, 'u e2'),
    ('ldr.w r0, [pc, #8]', 0xf8df0008, 'pc=X-12', 0, 4, 'e4 l'),
    ('ldrd r2, r3, [r1, #8]', 0xe9d12302, 'r1=X', 8, 8, 'a4 e4'),
    ('strd r2, r3, [r1, #-8]!', 0xe9612302, 'r1=X', -8, 8, 'w a4 e4'),
    ('ldrd r2, r3, [r1], #8', 0xe8f12302, 'r1=X', 0, 8, 'a4 e4'),
    ('ldrd r2, r3, [pc, #8]', 0xe9df2302, 'pc=X-12', 0, 8, 'a4 e4 l'),
    ('ldrex r0, [r1, #4]', 0xe8510f01, 'r1=X', 4, 4, 'a4 e4'),
    ('strex r2, r0, [r1]', 0xe8410200, 'r1=X', 0, 4, 'w a4 e4'),
    ('ldrexh r0, [r1]', 0xe8d10f5f, 'r1=X', 0, 2, 'a2 e2'),
    ('strexb r2, r0, [r1]', 0xe8c10f42, 'r1=X', 0, 1, 'w'),
    ('ldrexd r2, r3, [r1]', 0xe8d1237f, 'r1=X', 0, 8, 'a8 e8'),
    ('strexd r0, r2, r3, [r1]', 0xe8c12370, 'r1=X', 0, 8, 'w a8 e8'),
    ('ldmia.w r1!, {r2-r5}', 0xe8b1003c, 'r1=X', 0, 16, 'a4 e4'),
    ('ldmdb r1, {r2-r5}', 0xe911003c, 'r1=X', -16, 16, 'a4 e4'),
    ('stmia.w r1, {r2, r3}', 0xe881000c, 'r1=X', 0, 8, 'w a4 e4'),
    ('stmdb r1!, {r2, r3}', 0xe921000c, 'r1=X', -8, 8, 'w a4 e4'),
    ('push.w {r4-r8, lr}', 0xe92d41f0, 'sp=X', -24, 24, 'w a4 e4'),
    ('pop.w {r4-r8, pc}', 0xe8bd81f0, 'sp=X', 0, 24, 'a4 e4'),
    ('pld [r1]', 0xf891f000, 'r1=X', 0, 1, 'h'),
    ('pldw [r1, #8]', 0xf8b1f008, 'r1=X', 8, 1, 'h'),
    ('pli [r1, r2]', 0xf911f002, 'r1=X r2=8', 8, 1, 'h'),
    ('vldr d0, [r1, #8]', 0xed910b02, 'r1=X', 8, 8, 'a4 e4'),
    ('vstmdb r1!, {d0-d1}', 0xed210b04, 'r1=X', -16, 16, 'w a4 e4'),
    ('vpush {d8}', 0xed2d8b02, 'sp=X', -8, 8, 'w a4 e4'),
    ('vld1.8 {d0-d1}, [r1]!', 0xf9210a0d, 'r1=X', 0, 16, 'e1'),
    ('vst1.64 {d0, d1}, [r1:128]!', 0xf9010aed, 'r1=X', 0, 16, 'w a16 e8'),
    ('vst1.32 {d0[1]}, [r1]', 0xf981088f, 'r1=X', 0, 4, 'w e4'),
    ('vld4.8 {d0[], d1[], d2[], d3[]}, [r1:32]', 0xf9a10f1f, 'r1=X', 0, 4, 'a4 e1'),
    ('vld2.16 {d0, d1}, [r1], r2', 0xf9210842, 'r1=X r2=8', 0, 16, 'e2'),
    ('srsdb sp!, #19', 0xe82dc013, 'sp=X', -8, 8, 'w a4 e4 k'),
    ('srsia sp, #19', 0xe98dc013, 'sp=X', 0, 8, 'w a4 e4 k'),
    ('rfeia r1', 0xe991c000, 'r1=X', 0, 8, 'a4 e4 k'),
    ('rfedb r1!', 0xe831c000, 'r1=X', -8, 8, 'a4 e4 k'),
    ('mcr p15, 0, r1, c7, c6, 1', 0xee071f36, 'r1=X', 0, 1, 'c k'),
    ('ldrb r0, [r1, #31]', 0x00007fc8, 'r1=X', 31, 1, ''),
    ('strh r0, [r1, #62]', 0x000087c8, 'r1=X', 62, 2, 'w e2'),
    ('ldmia r1!, {r2, r3, r4}', 0x0000c91c, 'r1=X', 0, 12, 'a4 e4'),
    ('ldrsb.w r0, [pc, #-4]', 0xf91f0004, 'pc=X', 0, 1, 'l'),
    ('ldrh.w r0, [pc, #4]', 0xf8bf0004, 'pc=X-8', 0, 2, 'e2 l'),
    ('ldrb r0, [r1], #1', 0xf8110b01, 'r1=X', 0, 1, ''),
    ('ldrsh r0, [r1, #-2]!', 0xf9310d02, 'r1=X', -2, 2, 'e2'),
    ('str.w r0, [sp, #-4]!', 0xf84d0d04, 'sp=X', -4, 4, 'w e4'),
    ('strd r2, r3, [r1], #-16', 0xe8612304, 'r1=X', 0, 8, 'w a4 e4'),
    ('ldrexb r0, [r1]', 0xe8d10f4f, 'r1=X', 0, 1, ''),
    ('strexh r2, r0, [r1]', 0xe8c10f52, 'r1=X', 0, 2, 'w a2 e2'),
    ('vldr d0, [pc, #8]', 0xed9f0b02, 'pc=X-12', 0, 8, 'a4 e4 l'),
    ('vpop {d8-d9}', 0xecbd8b04, 'sp=X', 0, 16, 'a4 e4'),
    ('vldmia r1!, {s0-s7}', 0xecb10a08, 'r1=X', 0, 32, 'a4 e4'),
    ('vstr s5, [r1, #-8]', 0xed412a02, 'r1=X', -8, 4, 'w a4 e4'),
    ('vld1.32 {d0[]}, [r1:32]!', 0xf9a10c9d, 'r1=X', 0, 4, 'a4 e4'),
    ('vst3.8 {d0-d2}, [r1]', 0xf901040f, 'r1=X', 0, 24, 'w e1'),
    ('vld2.32 {d0[1], d1[1]}, [r1:64], r2', 0xf9a10992, 'r1=X r2=8', 0, 8, 'a8 e4'),
    ('srsia sp!, #23', 0xe9adc017, 'spb=X', 0, 8, 'w a4 e4 k'),
    ('rfedb r1', 0xe811c000, 'r1=X', -8, 8, 'a4 e4 k'),
    ('mcr p15, 0, r1, c7, c10, 1', 0xee071f3a, 'r1=X', 0, 1, 'c k'),
]

# ---- the guest's memory and page tables --------------------------------------------------------

# Virtual layout, the same in both formats.  The first MiB holds user pages that are
# privileged-execute-never (as Linux maps user memory), the second plain ones.
URW = 0x00100000        # read/write at PL0 and PL1, PXN
GAP = 0x00101000        # not mapped
UXN = 0x00102000        # read/write at PL0 and PL1, XN and PXN
NOAF = 0x00103000       # Access flag clear
RO = 0x00200000         # read-only at PL0 and PL1
KRW = 0x00201000        # read/write at PL1 only
DOM1, DOM2 = 3, 5       # the short-descriptor domains of the two MiBs

USR, SVC, ABT = 0x10, 0x13, 0x17

SCTLR_M, SCTLR_A, SCTLR_TRE, SCTLR_AFE = 1, 1 << 1, 1 << 28, 1 << 29
TTBCR_EAE = 1 << 31


class Ram:
    """Sparse guest RAM at 0x80000000; anything else reads as unbacked (None)."""

    def __init__(self) -> None:
        self.mem: dict[int, int] = {}

    def write(self, pa: int, data: bytes) -> None:
        for i, b in enumerate(data):
            self.mem[pa + i] = b

    def read(self, pa: int, size: int) -> bytes | None:
        if not 0x80000000 <= pa <= 0x84000000 - size:
            return None
        return bytes(self.mem.get(pa + i, 0) for i in range(size))


def pa_of(va: int) -> int:
    return 0x80100000 + (va & 0x00FFF000)


# Short descriptors (B3.5.1), simplified access model (AFE=1: AP[0] is the Access flag):
# AP[2:1] 00 PL1 RW, 01 RW, 10 PL1 RO, 11 RO.
SHORT_PAGES = {URW: (0b01, True, False), UXN: (0b01, True, True), NOAF: (0b01, False, False),
               RO: (0b11, True, False), KRW: (0b00, True, False)}     # (AP[2:1], AF, XN)
LPAE_PAGES = {URW: (0b01, True, False, True), UXN: (0b01, True, True, True),
              NOAF: (0b01, False, False, True), RO: (0b11, True, False, False),
              KRW: (0b00, True, False, False)}                         # (AP[2:1], AF, XN, PXN)

S_L1, S_L2A, S_L2B = 0x80004000, 0x80008000, 0x80008400


def short_small_page(pa: int, ap: int, xn: bool, tex_cb: bool) -> int:
    # small page: [31:12] base, [11] nG, [10] S, [9] AP[2], [8:6] TEX, [5:4] AP[1:0], C B, 1, XN
    attrs = (0b001 << 6) | 0b1100 if tex_cb else 0
    return pa | ((ap >> 2) << 9) | ((ap & 3) << 4) | attrs | 0b10 | int(xn)


def build_short(ram: Ram, *, tre: bool = False) -> None:
    ram.write(S_L1 + (URW >> 20) * 4, (S_L2A | (DOM1 << 5) | (1 << 2) | 0b01).to_bytes(4, "little"))
    ram.write(S_L1 + (RO >> 20) * 4, (S_L2B | (DOM2 << 5) | 0b01).to_bytes(4, "little"))
    for va, (ap21, af, xn) in SHORT_PAGES.items():
        table = S_L2A if va >> 20 == URW >> 20 else S_L2B
        desc = short_small_page(pa_of(va), (ap21 << 1) | int(af), xn, tre)
        ram.write(table + ((va >> 12) & 0xFF) * 4, desc.to_bytes(4, "little"))


def short_regs(*, tre: bool = False, a: bool = False, dacr: int | None = None) -> Stage1Regs:
    sctlr = SCTLR_M | SCTLR_AFE | (SCTLR_TRE if tre else 0) | (SCTLR_A if a else 0)
    if dacr is None:
        dacr = (1 << 2 * DOM1) | (1 << 2 * DOM2)          # both client
    return Stage1Regs(sctlr=sctlr, ttbcr=0, ttbr0=S_L1 | 0x59, ttbr1=0, dacr=dacr)


L_L1, L_L2, L_L3A, L_L3B = 0x80010000, 0x80011000, 0x80012000, 0x80013000


def lpae_page(pa: int, ap21: int, af: bool, xn: bool, pxn: bool) -> int:
    # level-3 page (B3.6.2): [1:0]=11, AttrIndx[4:2], AP[2:1] [7:6], SH [9:8], AF [10], PXN 53, XN 54
    return (pa | 0b11 | (1 << 2) | (ap21 << 6) | (0b11 << 8) | (int(af) << 10)
            | (int(pxn) << 53) | (int(xn) << 54))


def w64(ram: Ram, pa: int, v: int) -> None:
    ram.write(pa, v.to_bytes(8, "little"))


def build_lpae(ram: Ram) -> None:
    w64(ram, L_L1, L_L2 | 0b11)                             # VA 0-1 GiB: a level-2 table
    w64(ram, L_L2 + 0 * 8, L_L3A | 0b11)                    # VA 0-2 MiB
    w64(ram, L_L2 + 1 * 8, L_L3B | 0b11)                    # VA 2-4 MiB
    for va, (ap21, af, xn, pxn) in LPAE_PAGES.items():
        table = L_L3A if va < 0x00200000 else L_L3B
        w64(ram, table + ((va >> 12) & 0x1FF) * 8, lpae_page(pa_of(va), ap21, af, xn, pxn))


def lpae_regs(*, a: bool = False) -> Stage1Regs:
    return Stage1Regs(sctlr=SCTLR_M | (SCTLR_A if a else 0), ttbcr=TTBCR_EAE,
                      ttbr0=L_L1 | (0x12 << 48), ttbr1=0, dacr=0)


# ---- the architecture's fault status encodings --------------------------------------------------

# Table B3-23: short-descriptor FS[4:0] by (fault, level); level 1 = section, 2 = page.
SHORT_FS = {("alignment", 0): 0b00001, ("debug", 0): 0b00010,
            ("access", 1): 0b00011, ("access", 2): 0b00110,
            ("translation", 1): 0b00101, ("translation", 2): 0b00111,
            ("domain", 1): 0b01001, ("domain", 2): 0b01011,
            ("permission", 1): 0b01101, ("permission", 2): 0b01111}
# Table B3-24: long-descriptor STATUS[5:0]; the walk level is in STATUS[1:0].
LONG_STATUS = {"translation": 0b000100, "access": 0b001000, "permission": 0b001100,
               "alignment": 0b100001, "debug": 0b100010}
# The DFSR.Domain field is valid only for these (table B3-23); elsewhere it is UNKNOWN, and so
# for a Permission fault on a core with the Large Physical Address Extension (DFSR, B4.1.52), as
# the Cortex-A7 xenpy models has.
DOMAIN_VALID = {("access", 1), ("access", 2), ("translation", 2), ("domain", 1), ("domain", 2)}


def dfsr(lpae: bool, kind: str, level: int, wnr: bool, domain: int = 0, cm: bool = False,
         ifsr: bool = False) -> int:
    if lpae:
        v = (1 << 9) | LONG_STATUS[kind] | (level if kind in ("translation", "access",
                                                                "permission") else 0)
    else:
        fs = SHORT_FS[(kind, level)]
        v = (fs & 0xF) | ((fs >> 4) << 10)
        if not ifsr and (kind, level) in DOMAIN_VALID:
            v |= domain << 4
    return v | (int(wnr) << 11) | (int(cm) << 13)


def fsr_mask(lpae: bool, kind: str, level: int) -> int:
    """Bits of the FSR the architecture defines for this fault (UNKNOWN fields masked out)."""
    if lpae or (kind, level) in DOMAIN_VALID:
        return 0xFFFFFFFF
    return ~0xF0 & 0xFFFFFFFF


# ---- running a row -----------------------------------------------------------------------------

class Row:
    def __init__(self, src: str, insn: int, regs: str, off: int, n: int, flags: str,
                 thumb: bool) -> None:
        self.src, self.insn, self.regs, self.off, self.n, self.thumb = src, insn, regs, off, n, thumb
        f = flags.split()
        self.write, self.unpriv, self.swap, self.cache = "w" in f, "u" in f, "s" in f, "c" in f
        self.kernel_only, self.literal, self.hint = "k" in f, "l" in f, "h" in f
        self.align = next((int(x[1:]) for x in f if x[0] == "a"), 1)
        self.elem = next((int(x[1:]) for x in f if x[0] == "e"), 1)

    def run(self, regs: Stage1Regs, ram: Ram, x: int, mode: int):
        values, pc, banked = {}, 0x00100800, None
        for item in self.regs.split():
            name, expr = item.split("=")
            v = eval(expr, {"X": x}) & 0xFFFFFFFF         # noqa: S307 - the table's own text
            if name == "pc":
                pc = v
            elif name == "sp":
                values[13] = v
            elif name == "spb":
                banked = v
            else:
                values[int(name[1:])] = v

        def reg(n: int) -> int:
            assert 0 <= n <= 14, f"{self.src}: r{n} read directly"
            return values.get(n, 0xDEAD0000 + 4 * n)

        def banked_sp(m: int) -> int:
            assert banked is not None and m == ABT, f"{self.src}: banked SP of mode {m:#x}"
            return banked

        cpsr = mode | (0x20 if self.thumb else 0)
        return guest_walk.data_abort(regs, self.insn, self.thumb, reg, pc, cpsr, ram.read,
                                     banked_sp=banked_sp)


ROWS = ([Row(*c, thumb=False) for c in A32_CASES]
        + [Row(*c, thumb=True) for c in T32_CASES])
FORMATS = ["short", "short-tre", "lpae"]


def setup(fmt: str, *, a: bool = False) -> tuple[Stage1Regs, Ram, bool]:
    ram = Ram()
    if fmt == "lpae":
        build_lpae(ram)
        return lpae_regs(a=a), ram, True
    build_short(ram, tre=fmt == "short-tre")
    return short_regs(tre=fmt == "short-tre", a=a), ram, False


def expectations(row: Row, lpae: bool):
    """(placement, X, sctlr.A, privilege) -> expected (DFAR, DFSR, WnR, FSR mask) or None.

    Worked out from the rules: the access is the bytes [lo, lo + n); an alignment fault comes
    first; then the lowest byte in a page that refuses the access, with the page's status.
    """
    page_level = 3 if lpae else 2
    # WnR: cache maintenance reports 1; SWP reports its first (read) access unless only the
    # write is refused.
    wnr = (row.write or row.cache) and not row.swap

    def fault(kind: str, far: int, w: bool, domain: int = 0, level: int = page_level):
        lv = 0 if kind == "alignment" else level
        return (far, dfsr(lpae, kind, lv, w, domain, row.cache), w, fsr_mask(lpae, kind, lv))

    def ok(lo: int):
        return (lo, dfsr(lpae, "debug", 0, wnr), wnr, 0xFFFFFFFF)

    out = []
    for priv in ("user", "kernel"):
        if priv == "user" and row.kernel_only:
            continue
        pl0 = priv == "user" or row.unpriv
        # Entirely inside the unmapped page: a translation fault at the first byte.
        x = GAP + 0x100
        lo = x + row.off
        out.append(("gap", x, False, priv, fault("translation", lo, wnr, DOM1)))
        # Starting on an allowed page and running into the unmapped one: the fault is at the
        # unmapped page's first byte when the access reaches it.
        step = max(row.align, row.elem, 4)
        lo = GAP - step
        x = lo - row.off
        out.append(("cross", x, False, priv,
                    fault("translation", GAP, wnr, DOM1) if row.n > step else ok(lo)))
        # Read-only page: writes (and SWP's write half) are refused; cache maintenance never
        # takes a permission fault.
        x = RO + 0x100
        lo = x + row.off
        refused = (row.write or row.swap) and not row.cache
        out.append(("ro", x, False, priv, fault("permission", lo, True, DOM2) if refused else ok(lo)))
        # PL1-only page: refused to User mode and to the unprivileged forms.
        x = KRW + 0x100
        lo = x + row.off
        out.append(("krw", x, False, priv,
                    fault("permission", lo, wnr, DOM2) if pl0 and not row.cache else ok(lo)))
        # Access flag clear: an Access flag fault whatever the access.
        x = NOAF + 0x100
        lo = x + row.off
        out.append(("noaf", x, False, priv, fault("access", lo, wnr, DOM1)))
        if row.literal:
            continue
        # Misaligned by one byte, on an allowed page: only the always-checked alignment with
        # SCTLR.A clear, the element size too with SCTLR.A set.
        x = URW + 0x101
        lo = x + row.off
        for a, need in ((False, row.align), (True, max(row.align, row.elem))):
            aligned_fault = need > 1 and not row.cache
            out.append(("align" + ("-A" if a else ""), x, a, priv,
                        fault("alignment", lo, wnr) if aligned_fault else ok(lo)))
            if need > 2 and not row.cache:
                # Aligned to half the requirement: still a fault; aligned to it exactly
                # (and to nothing larger): none.
                half, exact = URW + 0x100 + need // 2, URW + 0x200 + need
                out.append((f"align{need // 2}" + ("-A" if a else ""), half - row.off, a, priv,
                            fault("alignment", half, wnr)))
                out.append((f"align{need}" + ("-A" if a else ""), exact - row.off, a, priv,
                            ok(exact)))
    return out


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("row", ROWS, ids=[("T32 " if r.thumb else "A32 ") + r.src for r in ROWS])
def test_data_abort_reports_the_architectural_fault(row: Row, fmt: str):
    for place, x, a, priv, want in expectations(row, fmt == "lpae"):
        regs, ram, _ = setup(fmt, a=a)
        got = row.run(regs, ram, x, USR if priv == "user" else SVC)
        where = f"{row.src} [{fmt}, {priv}, {place}]"
        if row.hint:
            assert got is None, f"{where}: a hint never aborts, got {got}"
            continue
        assert got is not None, f"{where}: not decoded"
        far, fsr, wnr, mask = want
        assert (got[0], got[1] & mask, got[2]) == (far, fsr & mask, wnr), \
            f"{where}: got DFAR {got[0]:#x} DFSR {got[1]:#x} WnR {got[2]}, " \
            f"want {far:#x} {fsr:#x} {wnr}"


# ---- short descriptors: the full AP[2:0] model, domains, sections ---------------------------------

LDR, STR = 0xE5910000, 0xE5810000            # ldr r0, [r1] / str r0, [r1]
LDRT, STRT = 0xE4B10000, 0xE4A10000          # ldrt r0, [r1], #0 / strt r0, [r1], #0
SECTION_BASE = 0x00400000


def short_sections(ram: Ram, aps: dict[int, int], domain: int = 7, xn: bool = False) -> None:
    """Sections at SECTION_BASE + i MiB with AP[2:0] = aps[i]."""
    for i, ap in aps.items():
        desc = (0x80000000 | ((ap >> 2) << 15) | ((ap & 3) << 10) | (domain << 5)
                | (int(xn) << 4) | 0b10)
        ram.write(S_L1 + ((SECTION_BASE >> 20) + i) * 4, desc.to_bytes(4, "little"))


def abort(regs: Stage1Regs, ram: Ram, insn: int, va: int, mode: int = SVC, thumb: bool = False):
    return guest_walk.data_abort(regs, insn, thumb, lambda n: va if n == 1 else 0, 0x00100800,
                                 mode, ram.read)


# Table B3-8 (AFE=0): AP[2:0] -> (PL1 read, PL1 write, PL0 read, PL0 write); 100 is reserved.
AP_FULL = {0b000: "----", 0b001: "rw--", 0b010: "rwr-", 0b011: "rwrw",
           0b101: "r---", 0b110: "r-r-", 0b111: "r-r-"}


@pytest.mark.parametrize("ap", sorted(AP_FULL))
def test_short_full_access_permission_model(ap):
    ram = Ram()
    short_sections(ram, {0: ap})
    regs = Stage1Regs(sctlr=SCTLR_M, ttbcr=0, ttbr0=S_L1, ttbr1=0, dacr=1 << 14)  # domain 7 client
    va = SECTION_BASE + 0x1230
    rights = AP_FULL[ap]
    for insn, mode, allowed in ((LDR, SVC, rights[0]), (STR, SVC, rights[1]),
                                (LDR, USR, rights[2]), (STR, USR, rights[3]),
                                (LDRT, SVC, rights[2]), (STRT, SVC, rights[3])):
        write = insn in (STR, STRT)
        got = abort(regs, ram, insn, va, mode)
        if allowed != "-":
            assert got == (va, dfsr(False, "debug", 0, write), write), (ap, hex(insn), mode)
        else:
            # A section permission fault (its Domain field UNKNOWN).
            mask = fsr_mask(False, "permission", 1)
            assert (got[0], got[1] & mask, got[2]) == \
                (va, dfsr(False, "permission", 1, write) & mask, write), (ap, hex(insn), mode)


def test_short_domains_no_access_reserved_manager():
    ram = Ram()
    short_sections(ram, {0: 0b000}, domain=7, xn=True)        # no access at all, XN
    build_short(ram)
    va = SECTION_BASE + 0x40

    def short_regs(dacr: int) -> Stage1Regs:       # AFE=0: the section's AP 000 is no access
        return Stage1Regs(sctlr=SCTLR_M, ttbcr=0, ttbr0=S_L1, ttbr1=0, dacr=dacr)

    for dom, want in ((0b00, "domain"), (0b10, "domain"), (0b01, "permission"), (0b11, None)):
        regs = short_regs(dacr=(dom << 14) | (1 << 2 * DOM1) | (1 << 2 * DOM2))
        for insn, mode in ((LDR, USR), (STR, SVC)):
            write = insn == STR
            got = abort(regs, ram, insn, va, mode)
            if want is None:
                # Manager: neither AP nor XN is checked.
                assert got == (va, dfsr(False, "debug", 0, write), write)
                assert guest_walk.prefetch_abort(regs, va, False, mode, ram.read) == \
                    (va, dfsr(False, "debug", 0, False))
            else:
                mask = fsr_mask(False, want, 1)
                assert (got[0], got[1] & mask, got[2]) == \
                    (va, dfsr(False, want, 1, write, 7) & mask, write), (dom, mode)
    # A page's domain comes from its level-1 descriptor: a page-level domain fault.
    regs = short_regs(dacr=1 << 2 * DOM2)                     # DOM1 no access
    assert abort(regs, ram, STR, URW + 4, USR) == (URW + 4, dfsr(False, "domain", 2, True, DOM1),
                                                   True)
    # Manager domain on the pages: a PL1-only page is writable from User mode.
    regs = short_regs(dacr=(3 << 2 * DOM2) | (1 << 2 * DOM1))
    assert abort(regs, ram, STR, KRW, USR) == (KRW, dfsr(False, "debug", 0, True), True)


def test_short_access_flag_outranks_domain():
    ram = Ram()
    build_short(ram)
    regs = short_regs(dacr=1 << 2 * DOM2)                     # NOAF's domain is no access
    got = abort(regs, ram, LDR, NOAF + 8, USR)
    assert got == (NOAF + 8, dfsr(False, "access", 2, False, DOM1), False)


def test_short_section_translation_fault_level_1():
    ram = Ram()
    build_short(ram)
    got = abort(short_regs(), ram, STR, 0x00900000, SVC)
    assert got[0] == 0x00900000 and got[2] is True
    assert got[1] & ~0xF0 == dfsr(False, "translation", 1, True)   # domain field UNKNOWN


# ---- LPAE levels and table attributes -----------------------------------------------------------

def test_lpae_fault_levels_and_table_attributes():
    ram = Ram()
    build_lpae(ram)
    regs = lpae_regs()
    # Level 1 entry 1 (1-2 GiB) is invalid: a level-1 translation fault.
    assert abort(regs, ram, LDR, 0x40000010) == (0x40000010, dfsr(True, "translation", 1, False),
                                                 False)
    # Level 2 entry 3 (6-8 MiB) is invalid: level 2.
    assert abort(regs, ram, STR, 0x00600000) == (0x00600000, dfsr(True, "translation", 2, True),
                                                 True)
    # A 2 MiB read-only block at level 2 (8-10 MiB), and one with the Access flag clear.
    w64(ram, L_L2 + 4 * 8, 0x80200000 | 0b01 | (0b11 << 6) | (1 << 10))
    w64(ram, L_L2 + 5 * 8, 0x80400000 | 0b01 | (0b01 << 6))
    assert abort(regs, ram, STR, 0x00812344) == (0x00812344, dfsr(True, "permission", 2, True),
                                                 True)
    assert abort(regs, ram, LDR, 0x00812344) == (0x00812344, dfsr(True, "debug", 0, False), False)
    assert abort(regs, ram, LDR, 0x00A00000, USR) == (0x00A00000, dfsr(True, "access", 2, False),
                                                      False)
    # APTable[0] on the table of 12-14 MiB: no PL0 access below it, whatever the page says.
    table = 0x80014000
    w64(ram, L_L2 + 6 * 8, table | 0b11 | (1 << 61))
    w64(ram, table, lpae_page(0x80500000, 0b01, True, False, False))
    assert abort(regs, ram, LDR, 0x00C00000, USR) == (0x00C00000, dfsr(True, "permission", 3,
                                                                       False), False)
    assert abort(regs, ram, LDRT, 0x00C00000, SVC)[1] == dfsr(True, "permission", 3, False)
    assert abort(regs, ram, LDR, 0x00C00000, SVC)[1] == dfsr(True, "debug", 0, False)


# ---- prefetch aborts ---------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_prefetch_abort_privilege_and_execute_never(fmt):
    regs, ram, lpae = setup(fmt)
    level = 3 if lpae else 2

    def pabt(pc, mode, thumb=False):
        return guest_walk.prefetch_abort(regs, pc, thumb, mode | (0x20 if thumb else 0), ram.read)

    perm = dfsr(lpae, "permission", level, False, ifsr=True)
    ok = dfsr(lpae, "debug", 0, False)
    assert pabt(URW + 0x40, USR) == (URW + 0x40, ok)           # user code on a PXN page
    assert pabt(URW + 0x40, SVC) == (URW + 0x40, perm)         # ... is never run at PL1
    assert pabt(UXN + 0x40, USR) == (UXN + 0x40, perm)
    assert pabt(UXN + 0x40, SVC) == (UXN + 0x40, perm)
    assert pabt(KRW + 0x40, USR) == (KRW + 0x40, perm)         # fetching needs read permission
    assert pabt(KRW + 0x40, SVC) == (KRW + 0x40, ok)
    assert pabt(GAP + 0x40, USR) == (GAP + 0x40, dfsr(lpae, "translation", level, False,
                                                      ifsr=True))
    assert pabt(NOAF, SVC) == (NOAF, dfsr(lpae, "access", level, False, ifsr=True))
    # The IFSR has no domain field and no WnR.
    if not lpae:
        assert perm == 0x00F


@pytest.mark.parametrize("fmt", FORMATS)
def test_prefetch_abort_on_the_second_halfword_of_a_t32_instruction(fmt):
    regs, ram, lpae = setup(fmt)
    level = 3 if lpae else 2
    last = URW + 0xFFE
    ram.write(pa_of(URW) + 0xFFE, (0xF8D1).to_bytes(2, "little"))     # ldr.w: 32-bit
    cpsr = USR | 0x20
    assert guest_walk.prefetch_abort(regs, last, True, cpsr, ram.read) == \
        (GAP, dfsr(lpae, "translation", level, False, ifsr=True))
    ram.write(pa_of(URW) + 0xFFE, (0x6808).to_bytes(2, "little"))     # ldr r0, [r1]: 16-bit
    assert guest_walk.prefetch_abort(regs, last, True, cpsr, ram.read) == \
        (last, dfsr(lpae, "debug", 0, False))


@pytest.mark.parametrize("fmt", FORMATS)
def test_user_instruction_on_a_pxn_page_is_fetched_to_decode_its_fault(fmt):
    # The case that broke /init: user code lives on PXN pages, so fetching the faulting
    # instruction with PL1 rights fails and the abort was reported at address 0.
    regs, ram, lpae = setup(fmt)
    pc = URW + 0x800
    ram.write(pa_of(URW) + 0x800, LDR.to_bytes(4, "little"))
    assert guest_walk.fetch_insn(regs, pc, False, USR, ram.read) == LDR
    assert guest_walk.fetch_insn(regs, pc, False, SVC, ram.read) is None
    insn = guest_walk.fetch_insn(regs, pc, False, USR, ram.read)
    got = guest_walk.data_abort(regs, insn, False, lambda n: GAP + 0x10 if n == 1 else 0, pc,
                                USR, ram.read)
    assert got == (GAP + 0x10, dfsr(lpae, "translation", 3 if lpae else 2, False, DOM1), False)
    # A T32 instruction straddling two pages is fetched in its two halves.
    ram.write(pa_of(URW) + 0xFFE, (0xF8D1).to_bytes(2, "little"))
    w64(ram, L_L3A + ((GAP >> 12) & 0x1FF) * 8, lpae_page(pa_of(GAP), 0b01, True, False, True))
    ram.write(S_L2A + ((GAP >> 12) & 0xFF) * 4,
              short_small_page(pa_of(GAP), 0b011, False, False).to_bytes(4, "little"))
    ram.write(pa_of(GAP), (0x0008).to_bytes(2, "little"))
    assert guest_walk.fetch_insn(regs, URW + 0xFFE, True, USR | 0x20, ram.read) == 0xF8D10008


def test_random_instructions_and_registers_never_raise():
    """A hostile guest's abort is any word with any registers: an answer or None, never an error."""
    import random
    rnd = random.Random(10)
    setups = [setup(fmt, a=a) for fmt in FORMATS for a in (False, True)]
    for _ in range(4000):
        regs, ram, _ = rnd.choice(setups)
        values = [rnd.choice((URW, GAP, RO, KRW, NOAF, 0xFFFFFFF0, rnd.getrandbits(32)))
                  + rnd.randrange(-64, 64) for _ in range(15)]
        thumb = rnd.random() < 0.5
        insn = rnd.getrandbits(32 if not thumb or rnd.random() < 0.5 else 16)
        cpsr = rnd.choice((USR, SVC, ABT)) | (0x20 if thumb else 0) | (rnd.getrandbits(4) << 28)
        got = guest_walk.data_abort(regs, insn, thumb, lambda n: values[n] & 0xFFFFFFFF,
                                    rnd.getrandbits(32) & ~1, cpsr, ram.read,
                                    banked_sp=lambda m: values[13] & 0xFFFFFFFF)
        if got is not None:
            far, fsr, wnr = got
            assert 0 <= far <= 0xFFFFFFFF and 0 <= fsr <= 0xFFFFFFFF
            assert bool(fsr & (1 << 11)) == wnr
        pc = rnd.getrandbits(32) & ~1
        ifar, ifsr = guest_walk.prefetch_abort(regs, pc, thumb, cpsr, ram.read)
        assert ifar in (pc & ~(1 if thumb else 3), ((pc & ~1) + 2) & 0xFFFFFFFF)
        assert not ifsr & (1 << 11)
