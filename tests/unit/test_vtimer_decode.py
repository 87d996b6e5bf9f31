"""Recognising the guest's writes to the generic-timer registers (the instructions xenpy traps)."""
from xenpy.arch.arm.vcpreg import cond_passed
from xenpy.arch.arm.vtimer import decode_timer_write


def test_a32_mcr_and_mcrr_timer_writes_are_recognised():
    assert decode_timer_write(0xEE0E3F33, False) == ("CNTV_CTL", 3, None, 0xE)   # mcr p15,0,r3,c14,c3,1
    assert decode_timer_write(0xEE0E1F13, False) == ("CNTV_TVAL", 1, None, 0xE)  # mcr p15,0,r1,c14,c3,0
    assert decode_timer_write(0xEE0E2F32, False) == ("CNTP_CTL", 2, None, 0xE)   # mcr p15,0,r2,c14,c2,1
    assert decode_timer_write(0xEC410F3E, False) == ("CNTV_CVAL", 0, 1, 0xE)     # mcrr p15,3,r0,r1,c14
    assert decode_timer_write(0xEC454F2E, False) == ("CNTP_CVAL", 4, 5, 0xE)     # mcrr p15,2,r4,r5,c14
    assert decode_timer_write(0x0E0E3F33, False)[3] == 0x0                       # mcreq


def test_reads_and_other_coprocessor_writes_are_not_timer_writes():
    assert decode_timer_write(0xEE1E4F33, False) is None    # mrc: a read
    assert decode_timer_write(0xEC510F1E, False) is None    # mrrc CNTVCT: a read
    assert decode_timer_write(0xEE0E3F11, False) is None    # mcr CNTKCTL
    assert decode_timer_write(0xEE0D3F50, False) is None    # mcr TPIDRURW
    assert decode_timer_write(0xEC410F4E, False) is None    # mcrr p15,4 (CNTVOFF, EL2 only)
    assert decode_timer_write(0xFE0E3F33, False) is None    # unconditional space (mcr2)
    assert decode_timer_write(0xE3A00001, False) is None


def test_t32_forms():
    assert decode_timer_write(0xEE0E3F33, True) == ("CNTV_CTL", 3, None, 0xE)
    assert decode_timer_write(0xEC410F3E, True) == ("CNTV_CVAL", 0, 1, 0xE)


def test_condition_codes():
    Z, C, N, V = 1 << 30, 1 << 29, 1 << 31, 1 << 28
    assert cond_passed(0x0, Z) and not cond_passed(0x0, 0)          # EQ
    assert cond_passed(0x1, 0) and not cond_passed(0x1, Z)          # NE
    assert cond_passed(0x8, C) and not cond_passed(0x8, C | Z)      # HI
    assert cond_passed(0xA, N | V) and not cond_passed(0xA, N)      # GE
    assert cond_passed(0xD, Z) and cond_passed(0xD, N) and not cond_passed(0xD, 0)   # LE
    assert cond_passed(0xE, 0)                                      # AL
