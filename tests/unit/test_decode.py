"""Address recovery for faulting loads/stores.

The encodings were produced by assembling each line with
`python -m ziglang cc -target arm-freestanding-eabi -mcpu=cortex_a15 -c`
(ARM and Thumb-2), then hard-coded so the test needs no toolchain.
"""
from __future__ import annotations

import pytest

from xenpy.arch.arm.decode import DataAccess, decode_data_abort

ARM_PC = 0x40000100
ARM_REGS = {0: 0x80001000, 1: 0x80002000, 2: 0x10, 3: 0x33, 4: 0x80004000,
            5: 0x20, 6: 0x80006000, 13: 0x80008000, 14: 0x1234}

# (source, word, va, write, size, rt, sign_extend, writeback)
ARM_CASES = [
    ("ldr r0, [r1, #4]", 0xE5910004, 0x80002004, False, 4, 0, False, None),
    ("ldr r0, [r1, #-4]", 0xE5110004, 0x80001FFC, False, 4, 0, False, None),
    ("ldr r0, [r1, #4]!", 0xE5B10004, 0x80002004, False, 4, 0, False, 0x80002004),
    ("ldr r0, [r1], #4", 0xE4910004, 0x80002000, False, 4, 0, False, 0x80002004),
    ("ldr r0, [r1, r2]", 0xE7910002, 0x80002010, False, 4, 0, False, None),
    ("ldr r0, [r1, -r2]", 0xE7110002, 0x80001FF0, False, 4, 0, False, None),
    ("ldr r0, [r1, r2, lsl #2]!", 0xE7B10102, 0x80002040, False, 4, 0, False, 0x80002040),
    ("ldr r0, [r1], r2, lsr #1", 0xE69100A2, 0x80002000, False, 4, 0, False, 0x80002008),
    ("ldr r0, [r1, r2, asr #32]", 0xE7910042, 0x80002000, False, 4, 0, False, None),
    ("ldr r0, [r1, r2, ror #8]", 0xE7910462, 0x90002000, False, 4, 0, False, None),
    ("str r3, [r4, #0x100]", 0xE5843100, 0x80004100, True, 4, 3, False, None),
    ("strb r3, [r4, #1]", 0xE5C43001, 0x80004001, True, 1, 3, False, None),
    ("ldrb r3, [r4], #-1", 0xE4543001, 0x80004000, False, 1, 3, False, 0x80003FFF),
    ("ldrt r5, [r6], #8", 0xE4B65008, 0x80006000, False, 4, 5, False, 0x80006008),
    ("ldr r0, [pc, #16]", 0xE59F0010, 0x40000118, False, 4, 0, False, None),
    ("ldr r0, [pc, #-16]", 0xE51F0010, 0x400000F8, False, 4, 0, False, None),
    ("ldrh r3, [r4, #6]", 0xE1D430B6, 0x80004006, False, 2, 3, False, None),
    ("strh r3, [r4, #-6]!", 0xE16430B6, 0x80003FFA, True, 2, 3, False, 0x80003FFA),
    ("ldrh r3, [r4], r5", 0xE09430B5, 0x80004000, False, 2, 3, False, 0x80004020),
    ("ldrsb r3, [r4, r5]", 0xE19430D5, 0x80004020, False, 1, 3, True, None),
    ("ldrsh r3, [r4, #-2]", 0xE15430F2, 0x80003FFE, False, 2, 3, True, None),
    ("ldrd r2, r3, [r4, #8]", 0xE1C420D8, 0x80004008, False, 8, 2, False, None),
    ("strd r2, r3, [r4, #-8]!", 0xE16420F8, 0x80003FF8, True, 8, 2, False, 0x80003FF8),
    ("ldrd r2, r3, [r4], r5", 0xE08420D5, 0x80004000, False, 8, 2, False, 0x80004020),
    ("strd r2, r3, [r4, r5]", 0xE18420F5, 0x80004020, True, 8, 2, False, None),
    ("ldrh r0, [pc, #4]", 0xE1DF00B4, 0x4000010C, False, 2, 0, False, None),
    ("ldrheq r3, [r4, #6]", 0x01D430B6, 0x80004006, False, 2, 3, False, None),
    ("ldrex r0, [r1]", 0xE1910F9F, 0x80002000, False, 4, 0, False, None),
    ("strex r2, r0, [r1]", 0xE1812F90, 0x80002000, True, 4, 0, False, None),
    ("ldrexb r0, [r1]", 0xE1D10F9F, 0x80002000, False, 1, 0, False, None),
    ("strexb r2, r0, [r1]", 0xE1C12F90, 0x80002000, True, 1, 0, False, None),
    ("ldrexh r0, [r1]", 0xE1F10F9F, 0x80002000, False, 2, 0, False, None),
    ("strexh r2, r0, [r1]", 0xE1E12F90, 0x80002000, True, 2, 0, False, None),
    ("ldrexd r0, r1, [r2]", 0xE1B20F9F, 0x00000010, False, 8, 0, False, None),
    ("strexd r3, r0, r1, [r2]", 0xE1A23F90, 0x00000010, True, 8, 0, False, None),
    ("ldmia r0, {r1, r2, r3}", 0xE890000E, 0x80001000, False, 12, 1, False, None),
    ("ldmib r0!, {r1, r2, r3}", 0xE9B0000E, 0x80001004, False, 12, 1, False, 0x8000100C),
    ("stmda r0, {r1, r2, r3}", 0xE800000E, 0x80000FF8, True, 12, 1, False, None),
    ("stmdb r0!, {r1, r2, r3}", 0xE920000E, 0x80000FF4, True, 12, 1, False, 0x80000FF4),
    ("push {r4, lr}", 0xE92D4010, 0x80007FF8, True, 8, 4, False, 0x80007FF8),
    ("pop {r4, pc}", 0xE8BD8010, 0x80008000, False, 8, 4, False, 0x80008008),
    ("vldr d0, [r1, #8]", 0xED910B02, 0x80002008, False, 8, 0, False, None),
    ("vstr s3, [r1, #-4]", 0xED411A01, 0x80001FFC, True, 4, 3, False, None),
    ("vldr d17, [pc, #8]", 0xEDDF1B02, 0x40000110, False, 8, 17, False, None),
    ("vpush {d8-d9}", 0xED2D8B04, 0x80007FF0, True, 16, 8, False, 0x80007FF0),
    ("vldmia r0!, {s0-s3}", 0xECB00A04, 0x80001000, False, 16, 0, False, 0x80001010),
]

ARM_NOT_MEMORY = [
    ("add r0, r1, r2", 0xE0810002),
    ("mul r0, r1, r2", 0xE0000291),
    ("pld [r1, #4]", 0xF5D1F004),
]

THUMB_PC = 0x00100102          # not word aligned: literal loads must Align(PC, 4)
THUMB_REGS = {0: 0x20001000, 1: 0x20002000, 2: 0x20003000, 3: 0x8, 4: 0x44,
              8: 0x88, 13: 0x20008000, 14: 0x1235}

THUMB_CASES = [
    # 16-bit encodings
    ("ldr r0, [pc, #8]", 0x4802, 0x0010010C, False, 4, 0, False, None),
    ("ldr r1, [r2, r3]", 0x58D1, 0x20003008, False, 4, 1, False, None),
    ("strh r1, [r2, r3]", 0x52D1, 0x20003008, True, 2, 1, False, None),
    ("ldrsb r1, [r2, r3]", 0x56D1, 0x20003008, False, 1, 1, True, None),
    ("ldrsh r1, [r2, r3]", 0x5ED1, 0x20003008, False, 2, 1, True, None),
    ("str r1, [r2, #4]", 0x6051, 0x20003004, True, 4, 1, False, None),
    ("ldrb r1, [r2, #31]", 0x7FD1, 0x2000301F, False, 1, 1, False, None),
    ("ldrh r1, [r2, #62]", 0x8FD1, 0x2000303E, False, 2, 1, False, None),
    ("str r1, [sp, #1020]", 0x91FF, 0x200083FC, True, 4, 1, False, None),
    ("ldr r1, [sp, #4]", 0x9901, 0x20008004, False, 4, 1, False, None),
    ("push {r4, r5, lr}", 0xB530, 0x20007FF4, True, 12, 4, False, 0x20007FF4),
    ("pop {r4, pc}", 0xBD10, 0x20008000, False, 8, 4, False, 0x20008008),
    ("stmia r0!, {r1, r2}", 0xC006, 0x20001000, True, 8, 1, False, 0x20001008),
    ("ldmia r0!, {r1, r2}", 0xC806, 0x20001000, False, 8, 1, False, 0x20001008),
    ("ldmia r0, {r0, r1}", 0xC803, 0x20001000, False, 8, 0, False, None),
    # 32-bit encodings
    ("ldr.w r1, [r2, #4095]", 0xF8D21FFF, 0x20003FFF, False, 4, 1, False, None),
    ("ldr r1, [r2, #-255]", 0xF8521CFF, 0x20002F01, False, 4, 1, False, None),
    ("ldr r1, [r2, #4]!", 0xF8521F04, 0x20003004, False, 4, 1, False, 0x20003004),
    ("ldr r1, [r2], #-4", 0xF8521904, 0x20003000, False, 4, 1, False, 0x20002FFC),
    ("ldrt r1, [r2, #8]", 0xF8521E08, 0x20003008, False, 4, 1, False, None),
    ("ldr.w r1, [r2, r3, lsl #3]", 0xF8521033, 0x20003040, False, 4, 1, False, None),
    ("strb.w r1, [r2, #7]", 0xF8821007, 0x20003007, True, 1, 1, False, None),
    ("ldrsh.w r1, [r2, #-2]", 0xF9321C02, 0x20002FFE, False, 2, 1, True, None),
    ("ldrsb.w r1, [r2, r3]", 0xF9121003, 0x20003008, False, 1, 1, True, None),
    ("strh.w r1, [r2, #2]!", 0xF8221F02, 0x20003002, True, 2, 1, False, 0x20003002),
    ("ldr.w r1, [pc, #-12]", 0xF85F100C, 0x001000F8, False, 4, 1, False, None),
    ("ldr.w r1, [pc, #12]", 0xF8DF100C, 0x00100110, False, 4, 1, False, None),
    ("ldrd r0, r1, [r2, #8]", 0xE9D20102, 0x20003008, False, 8, 0, False, None),
    ("strd r0, r1, [r2, #-8]!", 0xE9620102, 0x20002FF8, True, 8, 0, False, 0x20002FF8),
    ("ldrd r0, r1, [r2], #16", 0xE8F20104, 0x20003000, False, 8, 0, False, 0x20003010),
    ("ldrd r0, r1, [pc, #8]", 0xE9DF0102, 0x0010010C, False, 8, 0, False, None),
    ("ldrex r0, [r1, #8]", 0xE8510F02, 0x20002008, False, 4, 0, False, None),
    ("strex r2, r0, [r1]", 0xE8410200, 0x20002000, True, 4, 0, False, None),
    ("ldrexb r0, [r1]", 0xE8D10F4F, 0x20002000, False, 1, 0, False, None),
    ("strexh r2, r0, [r1]", 0xE8C10F52, 0x20002000, True, 2, 0, False, None),
    ("ldrexd r0, r1, [r2]", 0xE8D2017F, 0x20003000, False, 8, 0, False, None),
    ("strexd r3, r0, r1, [r2]", 0xE8C20173, 0x20003000, True, 8, 0, False, None),
    ("ldmia.w r0!, {r1, r2, r8}", 0xE8B00106, 0x20001000, False, 12, 1, False, 0x2000100C),
    ("stmdb r0, {r1, r2, r8}", 0xE9000106, 0x20000FF4, True, 12, 1, False, None),
    ("push.w {r4-r11, lr}", 0xE92D4FF0, 0x20007FDC, True, 36, 4, False, 0x20007FDC),
    ("pop.w {r4-r11, pc}", 0xE8BD8FF0, 0x20008000, False, 36, 4, False, 0x20008024),
    ("vldr d0, [r1, #8]", 0xED910B02, 0x20002008, False, 8, 0, False, None),
    ("vstr s3, [r1, #-4]", 0xED411A01, 0x20001FFC, True, 4, 3, False, None),
    ("vldr s2, [pc, #8]", 0xED9F1A02, 0x0010010C, False, 4, 2, False, None),
    ("vpush {d8-d9}", 0xED2D8B04, 0x20007FF0, True, 16, 8, False, 0x20007FF0),
]

THUMB_NOT_MEMORY = [
    ("add r0, r1", 0x4408),
    ("adds r0, r1, r2", 0x1888),
    ("add.w r0, r1, r2", 0xEB010002),
    ("pld [r1, #4]", 0xF891F004),
    ("tbb [r0, r1]", 0xE8D0F001),
    ("first half of ldr.w alone", 0xF8D2),
]


def _core(a: DataAccess | None) -> tuple | None:
    """The address-generation fields; the fault-status ones are in test_fault_decode."""
    return None if a is None else (a.va, a.write, a.size, a.rt, a.sign_extend, a.writeback)


def _reader(regs: dict[int, int]):
    def reg(n: int) -> int:
        assert 0 <= n <= 14, f"decoder must not read r{n} directly"
        return regs.get(n, 0)
    return reg


@pytest.mark.parametrize("src,word,va,write,size,rt,sx,wb", ARM_CASES,
                         ids=[c[0] for c in ARM_CASES])
def test_arm(src, word, va, write, size, rt, sx, wb):
    got = decode_data_abort(word, False, _reader(ARM_REGS), ARM_PC)
    assert _core(got) == (va, write, size, rt, sx, wb)


@pytest.mark.parametrize("src,word,va,write,size,rt,sx,wb", THUMB_CASES,
                         ids=[c[0] for c in THUMB_CASES])
def test_thumb(src, word, va, write, size, rt, sx, wb):
    got = decode_data_abort(word, True, _reader(THUMB_REGS), THUMB_PC)
    assert _core(got) == (va, write, size, rt, sx, wb)


@pytest.mark.parametrize("src,word", ARM_NOT_MEMORY, ids=[c[0] for c in ARM_NOT_MEMORY])
def test_arm_non_memory_is_none(src, word):
    assert decode_data_abort(word, False, _reader(ARM_REGS), ARM_PC) is None


@pytest.mark.parametrize("src,word", THUMB_NOT_MEMORY, ids=[c[0] for c in THUMB_NOT_MEMORY])
def test_thumb_non_memory_is_none(src, word):
    assert decode_data_abort(word, True, _reader(THUMB_REGS), THUMB_PC) is None


def test_asr_32_of_negative_offset_is_minus_one():
    regs = {**ARM_REGS, 2: 0x80000000}
    # ldr r0, [r1, r2, asr #32]
    got = decode_data_abort(0xE7910042, False, _reader(regs), ARM_PC)
    assert got is not None and got.va == 0x80001FFF


def test_rrx_needs_carry():
    # ldr r0, [r1, r2, rrx]: offset = C:r2[31:1]
    word = 0xE7910062
    assert decode_data_abort(word, False, _reader(ARM_REGS), ARM_PC) is None
    got = decode_data_abort(word, False, _reader(ARM_REGS), ARM_PC, carry=True)
    assert got is not None and got.va == (0x80002000 + 0x80000008) & 0xFFFFFFFF
    got = decode_data_abort(word, False, _reader(ARM_REGS), ARM_PC, carry=False)
    assert got is not None and got.va == 0x80002008


def test_address_wraps_at_4g():
    regs = {1: 0xFFFFFFFC}
    # ldr r0, [r1, #4]
    assert decode_data_abort(0xE5910004, False, _reader(regs), 0).va == 0


def test_random_words_never_raise():
    import random
    rnd = random.Random(1234)
    reg = _reader({n: rnd.getrandbits(32) for n in range(15)})
    for _ in range(20000):
        word = rnd.getrandbits(32)
        for thumb in (False, True):
            got = decode_data_abort(word if not thumb or rnd.random() < 0.5 else word & 0xFFFF,
                                    thumb, reg, rnd.getrandbits(32) & ~1)
            if got is not None:
                assert 0 <= got.va <= 0xFFFFFFFF
                assert got.size > 0
