"""HYPERVISOR_memory_op from a guest: XENMEM_add_to_physmap (shared_info, the mapspace hook, the
spaces ARM refuses) and the reservation queries, with every errno, through the hypercall table."""
from __future__ import annotations

import struct

import pytest

from xenpy.common import event_channel as ev
from xenpy.common import memory
from xenpy.common.hypercall import dispatch
from xenpy.common.hypervisor import Hypervisor
from xenpy.public import errno
from xenpy.public.memory import (
    XENMAPSPACE_dev_mmio, XENMAPSPACE_gmfn, XENMAPSPACE_gmfn_foreign, XENMAPSPACE_gmfn_range,
    XENMAPSPACE_grant_table, XENMAPSPACE_shared_info, XENMEM_add_to_physmap,
    XENMEM_current_reservation, XENMEM_maximum_ram_page, XENMEM_maximum_reservation,
)
from xenpy.public.xen import DOMID_SELF, HYPERVISOR_memory_op

RAM = 0x80000000
ARG = RAM + 0x3000
PAGES = 64


@pytest.fixture
def hv():
    h = Hypervisor()
    h.vcpu_mark_events_pending = lambda v: None     # type: ignore[attr-defined]
    if getattr(h.domains[0], "evtchn", None) is None:
        ev.evtchn_init(h.domains[0], ev.MAX_PORT_UNLIMITED)
    yield h
    for d in list(h.domains.values()):
        d.release()


def domu(hv: Hypervisor):
    d = hv.domains[hv.domain_create(0, 1, None, "4.4")]
    assert hv.domain_populate(d, PAGES) == 0
    if getattr(d, "evtchn", None) is None:
        ev.evtchn_init(d)
    return d


def memop(d, cmd: int, payload: bytes) -> int:
    d.ram_write(ARG, payload)
    return dispatch(d.vcpus[0], HYPERVISOR_memory_op, (cmd, ARG, 0, 0, 0))


def xatp(domid: int = DOMID_SELF, space: int = XENMAPSPACE_shared_info, idx: int = 0,
         gpfn: int = (RAM >> 12) + 8, size: int = 0) -> bytes:
    return struct.pack("<HHIQQ", domid, size, space, idx, gpfn)


def test_map_shared_info_where_the_guest_chooses(hv):
    d = domu(hv)
    port = ev.bind_ipi(d, 0)
    ev.send(d, port)                                     # before the mapping: kept by Xen
    gfn = (RAM >> 12) + 8
    assert memop(d, XENMEM_add_to_physmap, xatp(gpfn=gfn)) == 0
    assert d.shared_info_gfn == gfn
    off = (gfn << 12) - RAM
    assert d.ram[off + 48] == 1 << port                  # evtchn_pending word 0
    assert d.ram[off] == 1                               # vcpu_info[0].evtchn_upcall_pending
    # Mapping it again elsewhere moves it.
    assert memop(d, XENMEM_add_to_physmap, xatp(gpfn=gfn + 1)) == 0
    assert d.shared_info_gfn == gfn + 1 and d.ram[off + 4096 + 48] == 1 << port


def test_shared_info_errors(hv):
    d = domu(hv)
    assert memop(d, XENMEM_add_to_physmap, xatp(idx=1)) == -errno.EINVAL
    assert memop(d, XENMEM_add_to_physmap, xatp(gpfn=(1 << 64) - 1)) == -errno.EINVAL
    assert memop(d, XENMEM_add_to_physmap, xatp(gpfn=(RAM >> 12) + PAGES)) == -errno.EINVAL
    assert memop(d, XENMEM_add_to_physmap, xatp(gpfn=0x39000)) == -errno.EINVAL  # not RAM here
    assert d.shared_info_gfn is None


def test_other_domains(hv):
    a, b = domu(hv), domu(hv)
    assert memop(a, XENMEM_add_to_physmap, xatp(domid=b.domid)) == -errno.EPERM
    assert memop(a, XENMEM_add_to_physmap, xatp(domid=0x6000)) == -errno.ESRCH
    assert memop(a, XENMEM_add_to_physmap, xatp(domid=a.domid)) == 0      # its own id is fine
    assert b.shared_info_gfn is None
    # The control domain may map into a domU (the path dom0's privcmd can expose).
    assert memory.add_to_physmap(hv.domains[0], b.domid, 0, XENMAPSPACE_shared_info, 0,
                                 (RAM >> 12) + 3) == 0
    assert b.shared_info_gfn == (RAM >> 12) + 3


def test_spaces_arm_does_not_offer(hv):
    d = domu(hv)
    assert memop(d, XENMEM_add_to_physmap, xatp(space=XENMAPSPACE_gmfn)) == -errno.ENOSYS
    assert memop(d, XENMEM_add_to_physmap, xatp(space=XENMAPSPACE_gmfn_foreign)) == -errno.ENOSYS
    assert memop(d, XENMEM_add_to_physmap, xatp(space=9)) == -errno.ENOSYS
    assert memop(d, XENMEM_add_to_physmap, xatp(space=XENMAPSPACE_dev_mmio)) == -errno.EACCES
    # gmfn_foreign is refused before the domain is even looked up.
    assert memop(d, XENMEM_add_to_physmap,
                 xatp(domid=0x6000, space=XENMAPSPACE_gmfn_foreign)) == -errno.ENOSYS


def test_gmfn_range(hv):
    d = domu(hv)
    rng = XENMAPSPACE_gmfn_range
    assert memop(d, XENMEM_add_to_physmap, xatp(space=rng, size=0)) == 0
    assert memop(d, XENMEM_add_to_physmap, xatp(space=rng, size=4)) == -errno.ENOSYS
    assert memop(d, XENMEM_add_to_physmap | 5 << 6, xatp(space=rng, size=4)) == -memory.EILSEQ
    assert memop(d, XENMEM_add_to_physmap | 4 << 6, xatp(space=rng, size=4)) == 0
    assert memop(d, XENMEM_add_to_physmap,
                 xatp(space=rng, size=2, gpfn=(1 << 64) - 2)) == -errno.EOVERFLOW
    assert memop(d, XENMEM_add_to_physmap,
                 xatp(space=rng, size=2, idx=(1 << 64) - 1)) == -errno.EOVERFLOW
    assert memop(d, XENMEM_add_to_physmap | 0x10000 << 6, xatp()) == -memory.EDOM


def test_grant_table_space_is_a_hook(hv, monkeypatch):
    d = domu(hv)
    # Without a registered handler (grant_table.py registers one) the space is not there.
    monkeypatch.delitem(memory._MAPSPACES, XENMAPSPACE_grant_table, raising=False)
    assert memop(d, XENMEM_add_to_physmap, xatp(space=XENMAPSPACE_grant_table)) == -errno.ENOSYS
    seen: list[tuple[int, int, int]] = []

    def fake(dom, idx, gpfn):
        seen.append((dom.domid, idx, gpfn))
        return -errno.EINVAL if idx > 3 else 0

    monkeypatch.setitem(memory._MAPSPACES, XENMAPSPACE_grant_table, fake)
    with pytest.raises(AssertionError):
        memory.register_mapspace(XENMAPSPACE_grant_table, fake)
    assert memop(d, XENMEM_add_to_physmap,
                 xatp(space=XENMAPSPACE_grant_table, idx=2, gpfn=0xB0002)) == 0
    assert memop(d, XENMEM_add_to_physmap,
                 xatp(space=XENMAPSPACE_grant_table, idx=4, gpfn=0xB0004)) == -errno.EINVAL
    assert seen == [(d.domid, 2, 0xB0002), (d.domid, 4, 0xB0004)]


def test_reservations(hv):
    d = domu(hv)
    d.max_pages = 100
    assert memop(d, XENMEM_current_reservation, struct.pack("<H", DOMID_SELF)) == PAGES
    assert memop(d, XENMEM_maximum_reservation, struct.pack("<H", d.domid)) == 100
    other = domu(hv)
    assert memop(d, XENMEM_current_reservation, struct.pack("<H", other.domid)) == -errno.EPERM
    assert memop(d, XENMEM_maximum_reservation, struct.pack("<H", 0x6000)) == -errno.ESRCH
    assert memop(d, XENMEM_current_reservation | 1 << 6,
                 struct.pack("<H", DOMID_SELF)) == -errno.EINVAL
    assert memory.maximum_ram_page(hv) == 0x40000 + hv.total_pages
    assert memop(d, XENMEM_maximum_ram_page, b"") == 0x40000 + hv.total_pages
    assert memop(d, XENMEM_maximum_ram_page | 1 << 6, b"") == -errno.EINVAL


def test_bad_pointers_and_unknown_ops(hv):
    d = domu(hv)
    for cmd in (XENMEM_add_to_physmap, XENMEM_current_reservation):
        assert dispatch(d.vcpus[0], HYPERVISOR_memory_op, (cmd, 0x1000, 0, 0, 0)) == -errno.EFAULT
    assert dispatch(d.vcpus[0], HYPERVISOR_memory_op,
                    (XENMEM_add_to_physmap, RAM + PAGES * 4096 - 8, 0, 0, 0)) == -errno.EFAULT
    assert memop(d, 40, b"") == -errno.ENOSYS
