"""xl rename, trigger, sysrq, debug-keys, dump-core (xl_misc.c)."""
from __future__ import annotations

import os
import uuid as uuidlib

from toolstack.xc import XcError
from toolstack.xl.utils import (ERROR_FAIL, ERROR_INVAL, XTL_ERROR, ctx, err, find_domain,
                                getopts, help_, log)

# libxl_trigger names (libxl_types.idl) -> XEN_DOMCTL_SENDTRIGGER_* (s3resume goes to QEMU).
TRIGGERS = {"power": 3, "sleep": 4, "nmi": 0, "init": 2, "reset": 1, "s3resume": None}


def main_rename(argv: list[str]) -> int:
    _, args = getopts(argv[1:], "", [], "rename", 2)
    dom, new_name = args[0], args[1]
    domid = find_domain(dom)
    if domain_rename(domid, new_name):
        err(f"Can't rename domain '{dom}'.")
        return 1
    return 0


def domain_rename(domid: int, new_name: str) -> int:
    """libxl__domain_rename: a non-empty name must be unique; ~/name and the VM record
    /vm/UUID/name (UUID from the hypervisor's domain info) change in one transaction."""
    lx = ctx()
    if new_name:
        for i in lx.list_domains():
            if i.name == new_name and i.domid != domid:
                log(XTL_ERROR, "libxl_domain.c", "libxl__domain_rename",
                    f"Domain with name \"{new_name}\" already exists.", domid)
                return ERROR_INVAL
    info = lx.xc.domain_getinfo(domid)
    if info is None:
        return ERROR_FAIL
    vm = f"/vm/{uuidlib.UUID(info['handle'])}"

    def write(tx: int) -> None:
        lx.xs.write(f"/local/domain/{domid}/name", new_name, tx)
        lx.xs.write(f"{vm}/name", new_name, tx)
    lx.xs.transact(write)
    return 0


def main_trigger(argv: list[str]) -> int:
    _, args = getopts(argv[1:], "", [], "trigger", 2)
    domid = find_domain(args[0])
    name = args[1]
    if name not in TRIGGERS:
        err(f'Invalid trigger "{name}"')
        return 1
    vcpu = 0
    if len(args) > 2:
        try:
            vcpu = int(args[2])
        except ValueError:
            err("Invalid vcpuid, using default vcpuid=0.\n")
    send_trigger(domid, name, vcpu)
    return 0          # xl does not look at libxl's answer


def send_trigger(domid: int, name: str, vcpu: int) -> int:
    """libxl_send_trigger: XEN_DOMCTL_sendtrigger, which Xen implements on x86 only (an Arm
    hypervisor answers -ENOSYS); s3resume is a QEMU command, refused for a PVH domain."""
    code = TRIGGERS[name]
    if code is None:
        log(XTL_ERROR, "libxl_domain.c", "domain_s3_resume_done",
            f"Send trigger '{name}' failed, rc={ERROR_INVAL}", domid)
        return ERROR_INVAL
    try:
        ctx().xc.domain_send_trigger(domid, code, vcpu)
    except XcError as e:
        log(XTL_ERROR, "libxl_domain.c", "libxl_send_trigger",
            f"Send trigger '{name}' failed: {os.strerror(e.errno)}", domid)
        return ERROR_FAIL
    return 0


def main_sysrq(argv: list[str]) -> int:
    _, args = getopts(argv[1:], "", [], "sysrq", 2)
    domid = find_domain(args[0])
    key = args[1]
    if len(key) != 1:
        err("Invalid sysrq.\n")
        help_("sysrq")
        return 1
    # libxl_send_sysrq: the guest's sysrq handler watches ~/control/sysrq
    ctx().xs.write(f"/local/domain/{domid}/control/sysrq", key)
    return 0


def main_debug_keys(argv: list[str]) -> int:
    _, args = getopts(argv[1:], "", [], "debug-keys", 1)
    try:
        ctx().xc.debug_keys(args[0])
    except XcError:
        err(f"cannot send debug keys: {args[0]}")
        return 1
    return 0


def main_dump_core(argv: list[str]) -> int:
    _, args = getopts(argv[1:], "", [], "dump-core", 2)
    domid = find_domain(args[0])
    from toolstack.xl.coredump import domain_core_dump
    rc = domain_core_dump(domid, args[1])
    if rc:
        err(f"core dump failed (rc={rc})")
        return 1
    return 0
