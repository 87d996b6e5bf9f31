"""HYPERVISOR_memory_op for guests (Xen's common/memory.c, with arch/arm/mm.c's add_to_physmap_one).

What an ARM domU asks: XENMEM_add_to_physmap to place its shared_info page (and, once grant tables
exist, its grant frames), and the reservation queries. The toolstack's populate_physmap goes
through privcmd (xenpy/board/privcmd.py), not through here.

Mapping spaces are looked up in a table, so the grant-table code adds XENMAPSPACE_grant_table with
register_mapspace() instead of editing this file; a space nobody registered answers -ENOSYS, which
is also what ARM answers for gmfn and gmfn_range.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Callable

from xenpy.arch.arm.guestcopy import copy_from_guest
from xenpy.common.event_channel import domain_by_any_id, map_shared_info, xsm_target
from xenpy.common.hypercall import hypercall
from xenpy.public import errno
from xenpy.public.memory import (
    MEMOP_CMD_MASK, XENMAPSPACE_dev_mmio, XENMAPSPACE_gmfn, XENMAPSPACE_gmfn_foreign,
    XENMAPSPACE_gmfn_range, XENMAPSPACE_shared_info, XENMEM_add_to_physmap,
    XENMEM_current_reservation, XENMEM_maximum_ram_page, XENMEM_maximum_reservation,
)
from xenpy.public.xen import HYPERVISOR_memory_op

if TYPE_CHECKING:
    from xenpy.common.domain import Domain, Vcpu
    from xenpy.common.hypervisor import Hypervisor

MEMOP_EXTENT_SHIFT = 6
# struct xen_add_to_physmap (24 bytes): domid u16, size u16, space u32, idx u64, gpfn u64.
XEN_ADD_TO_PHYSMAP = struct.Struct("<HHIQQ")
XEN_MEMORY_DOMAIN = struct.Struct("<H")      # struct xen_memory_domain
INVALID_GFN = (1 << 64) - 1
# Xen errno values (public/errno.h) that xenpy.public.errno does not list yet.
EDOM = 33
EILSEQ = 84
# The board is a Cubieboard2: its DRAM (Allwinner A20) starts at 0x40000000. XENMEM_maximum_ram_page
# is the host's max_page, one past the last machine frame of RAM.
HOST_RAM_BASE = 0x40000000

# space -> handler(d, idx, gpfn) -> 0 or -errno (xenmem_add_to_physmap_one's switch).
MapSpace = Callable[["Domain", int, int], int]
_MAPSPACES: dict[int, MapSpace] = {}


def register_mapspace(space: int, handler: MapSpace) -> None:
    """Add a XENMAPSPACE_* (e.g. the grant table's) to XENMEM_add_to_physmap."""
    assert space not in _MAPSPACES, f"mapspace {space} registered twice"
    _MAPSPACES[space] = handler


def _map_shared_info(d: "Domain", idx: int, gpfn: int) -> int:
    if idx != 0:
        return -errno.EINVAL
    return map_shared_info(d, gpfn)


register_mapspace(XENMAPSPACE_shared_info, _map_shared_info)


def maximum_ram_page(hv: "Hypervisor") -> int:
    return (HOST_RAM_BASE >> 12) + hv.total_pages


def add_to_physmap(cd: "Domain", domid: int, size: int, space: int, idx: int, gpfn: int,
                   start: int = 0) -> int:
    """XENMEM_add_to_physmap on behalf of domain `cd`. Returns 0 or -errno."""
    if space == XENMAPSPACE_gmfn_foreign:
        return -errno.ENOSYS           # foreign mappings only through add_to_physmap_batch
    d = domain_by_any_id(cd, domid)
    if d is None:
        return -errno.ESRCH
    if space == XENMAPSPACE_dev_mmio and (not d.privileged or d is not cd):
        return -errno.EACCES           # only the hardware domain, into itself
    rc = xsm_target(cd, d)
    if rc:
        return rc
    if gpfn == INVALID_GFN:
        return -errno.EINVAL
    if space == XENMAPSPACE_gmfn_range:
        if size < start:
            return -EILSEQ
        if gpfn + size >= 1 << 64 or idx + size >= 1 << 64:
            return -errno.EOVERFLOW
        if size == start:
            return 0                   # nothing left to map
        space = XENMAPSPACE_gmfn       # each frame is a gmfn mapping, which ARM does not have
    handler = _MAPSPACES.get(space)
    if handler is None:
        return -errno.ENOSYS
    return handler(d, idx, gpfn)


@hypercall(HYPERVISOR_memory_op)
def do_memory_op(v: "Vcpu", args: tuple[int, ...]) -> int:
    cmd, arg = args[0], args[1]
    op, start_extent = cmd & MEMOP_CMD_MASK, cmd >> MEMOP_EXTENT_SHIFT
    cd = v.domain
    assert v.arch is not None
    if op == XENMEM_maximum_ram_page:
        return -errno.EINVAL if start_extent else maximum_ram_page(cd.hv)
    if op in (XENMEM_current_reservation, XENMEM_maximum_reservation):
        if start_extent:
            return -errno.EINVAL
        (domid,) = XEN_MEMORY_DOMAIN.unpack(copy_from_guest(v.arch, arg, XEN_MEMORY_DOMAIN.size))
        d = domain_by_any_id(cd, domid)
        if d is None:
            return -errno.ESRCH
        rc = xsm_target(cd, d)
        if rc:
            return rc
        return d.tot_pages if op == XENMEM_current_reservation else d.max_pages
    if op == XENMEM_add_to_physmap:
        if start_extent > 0xFFFF:      # must fit xatp.size, the continuation counter
            return -EDOM
        domid, size, space, idx, gpfn = XEN_ADD_TO_PHYSMAP.unpack(
            copy_from_guest(v.arch, arg, XEN_ADD_TO_PHYSMAP.size))
        return add_to_physmap(cd, domid, size, space, idx, gpfn, start_extent)
    return -errno.ENOSYS
