"""copy_from_guest / copy_to_guest (Xen's arch/arm/guestcopy.c).

The only way the hypervisor reads or writes memory a guest names in a hypercall. The pointer is a
guest virtual address: it is translated through the guest's own stage-1 tables (from the calling
vCPU's SCTLR/TTBCR/TTBRs), page by page, and every resulting guest-physical range must lie inside the
domain's RAM. Anything else is -EFAULT, never an exception out of the handler.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.arch.arm import guest_walk

if TYPE_CHECKING:
    from xenpy.arch.arm.vcpu import ArmVcpu


class GuestFault(Exception):
    """A guest buffer could not be reached: the handler answers -EFAULT."""


def _translate(vcpu: "ArmVcpu", va: int, length: int, write: bool) -> list[tuple[int, int]]:
    if length < 0 or va < 0 or va + length > 1 << 32:
        raise GuestFault(f"bad guest buffer {va:#x}+{length}")
    try:
        return guest_walk.translate_range(vcpu.stage1(), va, length, write=write,
                                          read_phys=vcpu.read_phys, cache=vcpu.walks)
    except guest_walk.GuestFault as f:
        raise GuestFault(f"guest address {va:#x}: {f.kind} fault") from None


def _outside(va: int) -> GuestFault:
    return GuestFault(f"guest address {va:#x} maps outside the domain's memory")


def copy_from_guest(vcpu: "ArmVcpu", va: int, length: int) -> bytes:
    if length == 0:
        return b""
    read = vcpu.read_phys
    parts = [read(ipa, n) for ipa, n in _translate(vcpu, va, length, False)]
    if None in parts:
        raise _outside(va)
    return parts[0] if len(parts) == 1 else b"".join(parts)  # type: ignore[return-value,arg-type]


def copy_to_guest(vcpu: "ArmVcpu", va: int, data: bytes) -> None:
    if not data:
        return
    pos = 0
    chunks = _translate(vcpu, va, len(data), True)   # check everything before writing anything
    for ipa, n in chunks:
        if vcpu.read_phys(ipa, 1) is None or vcpu.read_phys(ipa + n - 1, 1) is None:
            raise _outside(va)
    for ipa, n in chunks:
        if not vcpu.write_phys(ipa, data[pos:pos + n]):
            raise GuestFault(f"guest address {va:#x} is not writable")
        pos += n
