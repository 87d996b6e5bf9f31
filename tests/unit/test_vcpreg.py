"""The trapped cache maintenance: which instructions it recognises, and what each vCPU drops.

Each vCPU's Unicorn instance keeps its own TLB and translated code; p2m.py applies the domain's
broadcast maintenance to the other vCPUs when they are next switched in.
"""
from types import SimpleNamespace

from xenpy.arch.arm.p2m import P2M
from xenpy.arch.arm.vcpreg import decode_mcr

A32 = {
    0xEE070F11: "ICIALLUIS",        # mcr p15, 0, r0, c7, c1, 0
    0xEE070F15: "ICIALLU",          # mcr p15, 0, r0, c7, c5, 0
    0xEE073F35: "ICIMVAU",          # mcr p15, 0, r3, c7, c5, 1
    0xEE072F3B: "DCCMVAU",          # mcr p15, 0, r2, c7, c11, 1
    0xEE071F3E: "DCCIMVAC",         # mcr p15, 0, r1, c7, c14, 1
    0xEE074F5A: "DCCSW",            # mcr p15, 0, r4, c7, c10, 2
}


def test_the_cache_maintenance_it_traps_and_nothing_else():
    for insn, name in A32.items():
        dec = P2M.decode_cache_op(insn, False)
        assert dec is not None and dec[0] == name and dec[3] == 0xE, hex(insn)
        assert dec[1] == (insn >> 12) & 0xF
    assert P2M.decode_cache_op(0x1E070F11, False)[3] == 0x1           # NE: its condition
    assert P2M.decode_cache_op(0xEE070F11, True)[0] == "ICIALLUIS"    # T32: the same halfwords
    for other in (0xEE080F13,       # TLBIALLIS (c8): the switch-in flush covers it, no trap
                  0xEE170F11,       # MRC, not MCR
                  0xEE270F11,       # opc1 1
                  0xEE076F36,       # DCIMVAC: invalidate only, publishes nothing
                  0xFE070F11,       # the unconditional space (MCR2)
                  0xEE070E11):      # coprocessor 14
        assert P2M.decode_cache_op(other, False) is None, hex(other)
    assert decode_mcr(0xEE0E3F33, False, 14, {(0, 3, 1): "CNTV_CTL"}) == ("CNTV_CTL", 3, None, 0xE)


class FakeArch:
    def __init__(self):
        self.tlb = self.dropped_now = self.dropped_later = 0
        self.uc = SimpleNamespace(ctl_flush_tb=self._later)

    def flush_tlb(self):
        self.tlb += 1

    def flush_translations(self):
        self.dropped_now += 1

    def _later(self):
        self.dropped_later += 1


def domain(n):
    d = SimpleNamespace(vcpus=[])
    d.vcpus = [SimpleNamespace(vcpu_id=i, arch=FakeArch(), p2m_pending=[]) for i in range(n)]
    return d, P2M(d)


def op(p2m, v, name):
    p2m.cache_op(v, (name, 0, None, 0xE), 0)


def test_a_vcpus_tlb_goes_when_another_vcpu_ran_since_it_did():
    d, p2m = domain(2)
    a, b = d.vcpus
    for v in (a, a, b, b, a, b):
        p2m.restore_state(v)
    assert (a.arch.tlb, b.arch.tlb) == (1, 2)


def test_translated_code_goes_after_another_vcpus_clean_and_a_broadcast_invalidate():
    d, p2m = domain(3)
    a, b, c = d.vcpus
    for v in d.vcpus:
        p2m.restore_state(v)
    op(p2m, a, "ICIALLUIS")             # nothing was cleaned: nothing can be stale
    p2m.restore_state(b)
    assert b.arch.dropped_later == 0
    p2m.restore_state(a)
    op(p2m, a, "DCCMVAU")               # a publishes code ...
    op(p2m, a, "ICIMVAU")               # ... and invalidates everyone's instruction cache
    assert a.arch.dropped_now == 0      # a's own writes reached its own translations
    p2m.restore_state(b)
    p2m.restore_state(c)
    p2m.restore_state(b)
    assert (b.arch.dropped_later, c.arch.dropped_later) == (1, 1)


def test_a_local_invalidate_drops_only_the_vcpu_that_runs_it():
    d, p2m = domain(2)
    a, b = d.vcpus
    p2m.restore_state(a)
    op(p2m, a, "DCCSW")                 # a cleans what it wrote
    p2m.restore_state(b)
    op(p2m, b, "ICIALLU")               # b invalidates its own instruction cache
    assert b.arch.dropped_now == 1
    op(p2m, b, "ICIALLU")
    assert b.arch.dropped_now == 1      # nothing new since
    p2m.restore_state(a)
    assert a.arch.dropped_later == 0
