"""Passthrough I/O memory (XEN_DOMCTL_iomem_permission / memory_mapping) on the Cubieboard2's
devices: a guest reaches the emulated PIO through its mapping, and nothing else."""
from __future__ import annotations

import pytest

from tests.guest.a32 import DATA, boot, load32, reg, shutdown, wait_shutdown
from toolstack.xc import LocalTransport, Xc
from xenpy.board.cubieboard2 import Cubieboard2
from xenpy.board.privcmd import Privcmd
from xenpy.common.domctl import do_domctl, iomem_state
from xenpy.common.hypervisor import Hypervisor, HypervisorConfig, MmioDevice
from xenpy.public import domctl as D
from xenpy.public import errno

PD_CFG1, PD_DAT = 0x01C20800 + 0x6C + 0x04, 0x01C20800 + 0x6C + 0x10
STR_R1_R0, LDR_R5_R0, LDR_R6_R0 = 0xE5801000, 0xE5905000, 0xE5906000


@pytest.fixture
def board():
    cb = Cubieboard2()
    log: list[str] = []
    hv = Hypervisor(HypervisorConfig(nr_pcpus=2, devices=cb.devices(xen_uart=True)),
                    sink=log.append)
    cb.attach(hv.log)
    hv.start()
    yield hv, cb, log
    hv.shutdown()


def domctl(hv, cmd: int, domid: int, **u) -> int:
    return do_domctl(hv, hv.domains[0], {"cmd": cmd, "domain": domid, "u": u,
                                         "interface_version": D.XEN_DOMCTL_INTERFACE_VERSION})[0]


def permit(hv, domid: int, mfn: int, nr: int, allow: int = 1) -> int:
    return domctl(hv, D.XEN_DOMCTL_iomem_permission, domid, first_mfn=mfn, nr_mfns=nr,
                  allow_access=allow)


def mapping(hv, domid: int, gfn: int, mfn: int, nr: int, add: int = 1) -> int:
    return domctl(hv, D.XEN_DOMCTL_memory_mapping, domid, first_gfn=gfn, first_mfn=mfn,
                  nr_mfns=nr, add_mapping=add, padding=0)


def pio_guest(base: int = 0x01C20000) -> list[int]:
    """PD12 as an output driven high, DAT read back into r5, then a read of the page after the
    two granted ones into r6 (a data abort: r8 = 0x10)."""
    off = base - 0x01C20000
    return [*load32(0, PD_CFG1 + off), *load32(1, 1 << 16), STR_R1_R0,
            *load32(0, PD_DAT + off), *load32(1, 1 << 12), STR_R1_R0, LDR_R5_R0,
            *load32(0, base + 0x2000), LDR_R6_R0, *shutdown(DATA + 0x14)]


def granted(hv, gfn: int = 0x1C20):
    def grant(d):
        assert permit(hv, d.domid, 0x1C20, 2) == 0
        assert mapping(hv, d.domid, gfn, 0x1C20, 2) == 0
    return grant


def test_a_guest_drives_a_pin_and_a_stray_access_aborts(board):
    hv, cb, log = board
    d = boot(hv, pio_guest(), before_start=granted(hv))
    wait_shutdown(d)
    assert reg(d, 5) == 1 << 12 and cb.pio.level("PD12") == 1
    assert reg(d, 8) == 0x10 and d.vcpus[0].arch.cp15("DFAR") == 0x01C22000
    assert f"(XEN) a20-pio: PD12 -> high (d{d.domid})" in log


def test_a_mapping_at_another_guest_frame(board):
    hv, cb, _ = board
    d = boot(hv, pio_guest(0x10000000), before_start=granted(hv, gfn=0x10000))
    wait_shutdown(d)
    assert reg(d, 5) == 1 << 12 and cb.pio.level("PD12") == 1
    assert d.vcpus[0].arch.cp15("DFAR") == 0x10002000


def test_without_a_mapping_the_pio_is_not_there(board):
    hv, cb, _ = board

    def grant_then_unmap(d):
        granted(hv)(d)
        assert mapping(hv, d.domid, 0x1C20, 0x1C20, 2, add=0) == 0
        assert iomem_state(d).mapped == {}

    d = boot(hv, pio_guest(), before_start=grant_then_unmap)
    wait_shutdown(d)
    assert reg(d, 8) == 0x10 and d.vcpus[0].arch.cp15("DFAR") == PD_CFG1
    assert cb.pio.function("PD12") == "gpio_in"


def test_xen_checks(board):
    hv, _, log = board
    domid = hv.domain_create(0, 1, None, "4.4")
    d = hv.domains[domid]
    assert hv.domain_populate(d, 16 << 8) == 0
    assert mapping(hv, domid, 0x1C20, 0x1C20, 2) == -errno.EPERM     # no permission yet
    assert permit(hv, domid, 0x10000, 2) == -errno.EPERM             # not a device of the board
    assert permit(hv, domid, 0x1C28, 1) == -errno.EPERM              # Xen's console UART
    assert permit(hv, domid, 0x1C20, 0) == -errno.EINVAL
    assert any("iomem_permission for d%d mfn 10000-10001 refused" % domid in line for line in log)
    assert permit(hv, domid, 0x1C20, 2) == 0
    assert mapping(hv, domid, 0x1C20, 0x1C20, 65) == -errno.E2BIG
    assert mapping(hv, domid, 0x80000, 0x1C20, 1) == -errno.EBUSY    # over guest RAM
    assert mapping(hv, domid, 0x1C20, 0x1C20, 2) == 0
    assert mapping(hv, domid, 0x1C21, 0x1C21, 1) == -errno.EBUSY     # mapped already
    assert permit(hv, domid, 0x1C21, 1, allow=0) == 0
    assert mapping(hv, domid, 0x2000, 0x1C21, 1) == -errno.EPERM     # permission withdrawn


def test_libxenctrl_splits_a_big_mapping_on_e2big(board):
    hv, _, _ = board
    big = MmioDevice("big", 0x20000000, 100 << 12, lambda *_: 0, lambda *_: None)
    hv.config.devices = hv.config.devices + (big,)
    domid = hv.domain_create(0, 1, None, "4.4")
    assert hv.domain_populate(hv.domains[domid], 16 << 8) == 0
    xc = Xc(LocalTransport(Privcmd(hv)))
    xc.domain_iomem_permission(domid, 0x20000, 100, True)
    xc.domain_memory_mapping(domid, 0x30000, 0x20000, 100, True)
    assert iomem_state(hv.domains[domid]).mapped == {0x30000 + i: 0x20000 + i for i in range(100)}
    xc.domain_memory_mapping(domid, 0x30000, 0x20000, 100, False)
    assert iomem_state(hv.domains[domid]).mapped == {}
