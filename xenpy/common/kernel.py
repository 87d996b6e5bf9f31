"""HYPERVISOR_xen_version (Xen's common/kernel.c) and HYPERVISOR_vm_assist (common/domain.c)."""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from xenpy.arch.arm.guestcopy import copy_from_guest, copy_to_guest
from xenpy.common.hypercall import hypercall
from xenpy.public import errno, version as V
from xenpy.public.xen import (HYPERVISOR_vm_assist, HYPERVISOR_xen_version, PAGE_SIZE,
                              VMASST_CMD_disable, VMASST_CMD_enable,
                              VMASST_TYPE_runstate_update_flag)

if TYPE_CHECKING:
    from xenpy.common.domain import Domain, Vcpu


def _cstr(text: str, size: int) -> bytes:
    raw = text.encode()[: size - 1]
    return raw + b"\0" * (size - len(raw))


def features(d: "Domain") -> int:
    bits = (1 << V.XENFEAT_writable_page_tables | 1 << V.XENFEAT_auto_translated_physmap
            | 1 << V.XENFEAT_memory_op_vnode_supported | 1 << V.XENFEAT_ARM_SMCCC_supported
            | 1 << V.XENFEAT_not_direct_mapped)
    return bits | (1 << V.XENFEAT_dom0 if d.privileged else 0)


@hypercall(HYPERVISOR_xen_version)
def do_xen_version(v: "Vcpu", args: tuple[int, ...]) -> int:
    cmd, arg = args[0], args[1]
    hv = v.domain.hv
    assert v.arch is not None
    put = lambda data: copy_to_guest(v.arch, arg, data)   # noqa: E731
    if cmd == V.XENVER_version:
        return hv.version[0] << 16 | hv.version[1]
    if cmd == V.XENVER_extraversion:
        put(_cstr(hv.extraversion, V.XEN_EXTRAVERSION_LEN))
    elif cmd == V.XENVER_compile_info:
        info = hv.compile_info
        put(b"".join(_cstr(info[name], size) for name, size in V.COMPILE_INFO_FIELDS))
    elif cmd == V.XENVER_capabilities:
        put(_cstr(hv.capabilities, V.XEN_CAPABILITIES_INFO_LEN))
    elif cmd == V.XENVER_changeset:
        put(_cstr(hv.changeset, V.XEN_CHANGESET_INFO_LEN))
    elif cmd == V.XENVER_platform_parameters:
        put(struct.pack("<Q", 0))        # virt_start: 0 for ARM guests
    elif cmd == V.XENVER_get_features:
        idx = int.from_bytes(copy_from_guest(v.arch, arg, 4), "little")
        if idx != 0:
            return -errno.EINVAL
        put(struct.pack("<II", idx, features(v.domain)))
    elif cmd == V.XENVER_pagesize:
        return PAGE_SIZE if arg == 0 else -errno.EINVAL
    elif cmd == V.XENVER_guest_handle:
        put(v.domain.handle)
    elif cmd == V.XENVER_commandline:
        put(_cstr(hv.cmdline if v.domain.privileged else "", V.XEN_COMMANDLINE_LEN))
    else:
        return -errno.ENOSYS
    return 0


# arch_vm_assist_valid_mask() on ARM: the runstate update flag is the only assist.
ARM_VM_ASSIST_VALID = 1 << VMASST_TYPE_runstate_update_flag


@hypercall(HYPERVISOR_vm_assist)
def do_vm_assist(v: "Vcpu", args: tuple[int, ...]) -> int:
    """The x86 PV assists (4gb_segments, writable_pagetables, ...) are -EINVAL on ARM."""
    cmd, type_ = args[0] & 0xFFFFFFFF, args[1] & 0xFFFFFFFF
    if type_ >= 64 or not ARM_VM_ASSIST_VALID >> type_ & 1:
        return -errno.EINVAL
    d = v.domain
    if cmd == VMASST_CMD_enable:
        d.vm_assist |= 1 << type_
        return 0
    if cmd == VMASST_CMD_disable:
        d.vm_assist &= ~(1 << type_)
        return 0
    return -errno.ENOSYS
