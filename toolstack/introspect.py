"""`xenpy evtchn|gnttab|vcpu`: look inside a running guest from dom0, without gdb.

    xenpy evtchn list [DOMAIN] [--json]      ports: type, remote end, pending, masked, vCPU
    xenpy evtchn inject DOMAIN PORT          raise a bound port, as if its remote end sent
    xenpy gnttab list DOMAIN [--json]        grant entries: flags, granted to, mapped by
    xenpy vcpu dump DOMAIN [VCPU] [--json]   registers, mode, banked registers, CP15 state

As QEMU's Xen emulation has xen-event-list / xen-event-inject. Through privcmd only:
EVTCHNOP_status (per port), an inject request, GNTTABOP_dump_table's entries as data, and
XEN_DOMCTL_getvcpucontext.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from toolstack.subcommand import Failure, dispatch
from xenpy.public.event_channel import (EVTCHNSTAT_closed, EVTCHNSTAT_interdomain, EVTCHNSTAT_ipi,
                                        EVTCHNSTAT_pirq, EVTCHNSTAT_unbound, EVTCHNSTAT_virq)
from xenpy.public.grant_table import (GTF_PAT, GTF_PCD, GTF_PWT, GTF_readonly, GTF_reading,
                                      GTF_sub_page, GTF_type_mask, GTF_writing)

TYPES = {EVTCHNSTAT_unbound: "unbound", EVTCHNSTAT_interdomain: "interdomain",
         EVTCHNSTAT_pirq: "pirq", EVTCHNSTAT_virq: "virq", EVTCHNSTAT_ipi: "ipi"}
MAX_SCAN = 4096          # ports looked at per domain at most (Xen's 2-level ABI has 1024 on arm32)


def _connect():
    from toolstack.libxl import Libxl
    from toolstack.xc import BoardNotRunning, Xc
    from toolstack.xs import XsClient
    try:
        xc = Xc()
    except BoardNotRunning as e:
        raise Failure(f"xenpy: {e}") from None
    return Libxl(xc, XsClient())


def _domid(lx, spec: str) -> int:
    try:
        return lx.lookup(spec)
    except LookupError as e:
        raise Failure(str(e)) from None


def _names(lx) -> dict[int, str]:
    return {i.domid: i.name for i in lx.list_domains()}


# -- evtchn --------------------------------------------------------------------------------------

def evtchn_ports(xc, domid: int) -> list[dict[str, Any]]:
    from toolstack.xc import XcError
    rows = []
    for port in range(1, MAX_SCAN):
        try:
            st = xc.evtchn_status(domid, port)
        except XcError:
            break                   # -EINVAL: past the domain's last allocated bucket
        if st["status"] == EVTCHNSTAT_closed:
            continue
        row: dict[str, Any] = {"domid": domid, "port": port,
                               "type": TYPES.get(st["status"], str(st["status"])),
                               "vcpu": st["vcpu"], "pending": bool(st["pending"]),
                               "masked": bool(st["masked"])}
        if st["status"] == EVTCHNSTAT_unbound:
            row["remote_domid"] = st["dom"]
        elif st["status"] == EVTCHNSTAT_interdomain:
            row["remote_domid"], row["remote_port"] = st["dom"], st["port"]
        elif st["status"] == EVTCHNSTAT_virq:
            row["virq"] = st["virq"]
        rows.append(row)
    return rows


def _remote(r: dict[str, Any]) -> str:
    if r["type"] == "interdomain":
        return f"dom {r['remote_domid']} port {r['remote_port']}"
    if r["type"] == "unbound":
        return f"dom {r['remote_domid']} may bind"
    if r["type"] == "virq":
        return f"VIRQ {r['virq']}"
    return "-"


def cmd_evtchn_list(ns) -> int:
    lx = _connect()
    names = _names(lx)
    ids = [_domid(lx, ns.domain)] if ns.domain else sorted(names)
    rows = [r for d in ids for r in evtchn_ports(lx.xc, d)]
    for r in rows:
        r["name"] = names.get(r["domid"], "")
    if ns.json:
        print(json.dumps(rows, indent=4))
        return 0
    print(f"{'Name':<20} {'ID':>5} {'Port':>5}  {'Type':<12} {'Remote':<22} {'VCPU':>4}  "
          f"{'Pending':<7}  Masked")
    for r in rows:
        print(f"{r['name']:<20} {r['domid']:5d} {r['port']:5d}  {r['type']:<12} "
              f"{_remote(r):<22} {r['vcpu']:4d}  {'yes' if r['pending'] else 'no':<7}  "
              f"{'yes' if r['masked'] else 'no'}")
    return 0


def cmd_evtchn_inject(ns) -> int:
    from toolstack.xc import XcError
    lx = _connect()
    domid = _domid(lx, ns.domain)
    try:
        lx.xc.evtchn_inject(domid, ns.port)
    except XcError:
        raise Failure(f"xenpy evtchn inject: domain {domid} has no port {ns.port} in use") from None
    return 0


# -- gnttab --------------------------------------------------------------------------------------

def gtf_names(flags: int) -> str:
    kind = {0: "invalid", 1: "permit_access", 2: "accept_transfer", 3: "transitive"}
    out = [kind[flags & GTF_type_mask]]
    for bit, name in ((GTF_readonly, "readonly"), (GTF_reading, "reading"),
                      (GTF_writing, "writing"), (GTF_PWT, "PWT"), (GTF_PCD, "PCD"),
                      (GTF_PAT, "PAT"), (GTF_sub_page, "sub_page")):
        if flags & bit:
            out.append(name)
    return "|".join(out)


def cmd_gnttab_list(ns) -> int:
    from toolstack.xc import XcError
    lx = _connect()
    domid = _domid(lx, ns.domain)
    try:
        rows = lx.xc.gnttab_dump(domid)
    except XcError as e:
        raise Failure(f"xenpy gnttab list: domain {domid}: {e}") from None
    if ns.json:
        print(json.dumps(rows, indent=4))
        return 0
    print(f"{'Ref':>5}  {'Flags':<34} {'Granted to':>10}  {'Frame':>8}  Mapped by")
    for r in rows:
        maps = ", ".join(f"dom {m['domid']}{' (ro)' if m['readonly'] else ''}"
                         for m in r["mapped_by"]) or "-"
        flags = f"{r['flags']:#06x} {gtf_names(r['flags'])}"
        print(f"{r['ref']:5d}  {flags:<34} "
              f"{r['domid']:10d}  {r['frame']:#8x}  {maps}")
    return 0


# -- vcpu ----------------------------------------------------------------------------------------

def _psr(v: int) -> str:
    flags = "".join(c if v >> b & 1 else c.lower() for c, b in (("N", 31), ("Z", 30), ("C", 29),
                                                              ("V", 28)))
    bits = " ".join(n for n, b in (("A", 8), ("I", 7), ("F", 6), ("T", 5)) if v >> b & 1)
    return f"{v:#010x} [{flags} {bits}]".replace(" ]", "]")


def dump_text(name: str, domid: int, out: dict[str, Any]) -> str:
    ctx, regs, extra = out["ctxt"], out["ctxt"]["user_regs"], out["xenpy"]
    state = "online" if extra["online"] else "offline"
    if extra["online"] and extra["blocked"]:
        state += ", blocked"
    lines = [f"{name} ({domid}) vCPU {out['vcpu']}: {state}, mode {extra['mode'].upper()}"]
    mode = extra["mode"]
    cur = [regs[f"r{n}_fiq"] if mode == "fiq" and n >= 8 else regs[f"r{n}_usr"]
           for n in range(13)]
    bank = mode if mode in ("irq", "svc", "abt", "und", "fiq") else "usr"
    cur += [regs[f"sp_{bank}"], regs[f"lr_{bank}"], regs["pc32"]]
    names = [f"R{n:02d}" for n in range(13)] + ["SP", "LR", "PC"]
    for k in range(0, 16, 4):
        lines.append("  " + "  ".join(f"{names[i]:>3}=0x{cur[i]:08x}" for i in range(k, k + 4)))
    lines.append(f"  CPSR={_psr(regs['cpsr'])}")
    lines.append("  Banked:")
    lines.append(f"    USR  SP=0x{regs['sp_usr']:08x}  LR=0x{regs['lr_usr']:08x}")
    for m in ("svc", "irq", "abt", "und", "fiq"):
        lines.append(f"    {m.upper()}  SP=0x{regs[f'sp_{m}']:08x}  LR=0x{regs[f'lr_{m}']:08x}"
                     f"  SPSR={_psr(regs[f'spsr_{m}'])}")
    lines.append("    FIQ bank " + "  ".join(f"R{n:02d}=0x{regs[f'r{n}_fiq']:08x}" for n in range(8, 13)))
    lines.append("  CP15:")
    cp = extra["cp15"]
    items = list(cp.items())
    for k in range(0, len(items), 3):
        lines.append("    " + "  ".join(f"{n:<9}=0x{v:0{16 if v >> 32 else 8}x}"
                                        for n, v in items[k:k + 3]))
    return "\n".join(lines)


def cmd_vcpu_dump(ns) -> int:
    from toolstack.xc import XcError
    lx = _connect()
    domid = _domid(lx, ns.domain)
    info = lx.xc.domain_getinfo(domid)
    nr = (info["max_vcpu_id"] + 1) if info else 0
    which = [ns.vcpu] if ns.vcpu is not None else list(range(nr))
    dumps = []
    for n in which:
        try:
            dumps.append(lx.xc.vcpu_getcontext(domid, n))
        except XcError as e:
            raise Failure(f"xenpy vcpu dump: domain {domid} vCPU {n}: "
                          f"{'no such vCPU' if n >= nr else e}") from None
    if ns.json:
        print(json.dumps(dumps, indent=4))
        return 0
    name = _names(lx).get(domid, str(domid))
    print("\n\n".join(dump_text(name, domid, d) for d in dumps))
    return 0


# -- parsing ---------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xenpy", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="group", required=True)
    ev = sub.add_parser("evtchn", help="a domain's event channels").add_subparsers(
        dest="cmd", required=True)
    e = ev.add_parser("list", help="ports in use: type, remote end, vCPU, pending, masked",
                      description="List the event channels in use of one domain or all: port, "
                                  "type, remote end, vCPU notified, pending and masked bits.")
    e.add_argument("domain", nargs="?", help="domain name or ID (default: every domain)")
    e.add_argument("--json", action="store_true", help="one JSON list of ports")
    e.set_defaults(func=cmd_evtchn_list)
    e = ev.add_parser("inject", help="set a port pending, as if its remote end sent",
                      description="Raise a bound event channel of a domain: the guest takes "
                                  "the upcall as if the remote end had notified.")
    e.add_argument("domain", help="domain name or ID")
    e.add_argument("port", type=int)
    e.set_defaults(func=cmd_evtchn_inject)
    gt = sub.add_parser("gnttab", help="a domain's grant table").add_subparsers(
        dest="cmd", required=True)
    g = gt.add_parser("list", help="grant entries in use: flags, granted to, mapped by",
                      description="List a domain's grant entries in use: reference, flags, the "
                                  "domain granted access, the frame, and who maps it now.")
    g.add_argument("domain", help="domain name or ID")
    g.add_argument("--json", action="store_true", help="one JSON list of entries")
    g.set_defaults(func=cmd_gnttab_list)
    vc = sub.add_parser("vcpu", help="a domain's vCPU state").add_subparsers(
        dest="cmd", required=True)
    v = vc.add_parser("dump", help="registers, mode, banked registers, CP15 state",
                      description="Dump a vCPU's registers (every mode's banks) and CP15 state, "
                                  "read while it is held off its pCPU for an instant.")
    v.add_argument("domain", help="domain name or ID")
    v.add_argument("vcpu", nargs="?", type=int, help="vCPU number (default: all)")
    v.add_argument("--json", action="store_true", help="XEN_DOMCTL_getvcpucontext's reply, as JSON")
    v.set_defaults(func=cmd_vcpu_dump)
    return p


def main(argv: list[str]) -> int:
    return dispatch(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
