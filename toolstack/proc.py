"""`xenpy proc`: dom0's /proc controls that xenpy's drivers offer, read and written like files.

    xenpy proc read erika-xen/pin_state [--pin N] [--json]
    xenpy proc write erika-xen/pin_state VALUE [--pin N] [--domain ID] [--timeout S] [--json]
    xenpy proc list

erika-xen/pin_state is /proc/sys/erika-xen/pin_state of the ERIKA Xen demo (erika_xen.py):
writing 1 or 0 has the RTOS domain drive PD12 high or low and reports its return_value; reading
gives PD12's level as the board's PIO holds it. `cat` prints the value alone, so does `read`.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys

from toolstack.erika_xen import PIN, ErikaXen, ErikaXenError, read_pin
from toolstack.xc import BoardNotRunning
from toolstack.xs import XsError

CONTROLS = {"erika-xen/pin_state": "PD12 of the ERIKA RTOS domain's GPIO (write 1 or 0)"}


def _value(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: write an integer "
                                         f"(1 high, 0 low)") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xenpy proc", description="dom0's driver controls")
    sub = p.add_subparsers(dest="action", required=True)
    for action in ("read", "write"):
        a = sub.add_parser(action)
        a.add_argument("control", metavar="CONTROL", help=", ".join(CONTROLS))
        if action == "write":
            a.add_argument("value", type=_value, metavar="VALUE")
            a.add_argument("--domain", type=int, metavar="ID",
                           help="the RTOS domain (default: the one that published its port)")
            a.add_argument("--timeout", type=float, default=5.0, metavar="S",
                           help="how long to wait for the RTOS's answer (default 5)")
        a.add_argument("--pin", type=int, default=PIN, metavar="N",
                       help=f"the PD pin (default {PIN}, the demo's)")
        a.add_argument("--json", action="store_true", help="one JSON object on stdout")
    sub.add_parser("list")
    return p


def _write(ns: argparse.Namespace) -> int:
    with ErikaXen(ns.domain) as drv:
        answer = drv.write(ns.value, pin=ns.pin, timeout=ns.timeout)
        who = drv.name
    rv = answer.return_value
    if ns.json:
        print(json.dumps({"control": ns.control, "domid": drv.domid, "pin": f"PD{ns.pin}",
                          "value": ns.value, "return_value": rv,
                          "round_trip_us": round(answer.round_trip_s * 1e6)}))
    elif rv == 0:
        print(f"{ns.control}: PD{ns.pin} <- {ns.value} by {who}: return_value 0, "
              f"round trip {answer.round_trip_s * 1e3:.2f} ms")
    if rv != 0:
        reason = os.strerror(-rv) if rv < 0 else "not an errno"
        print(f"xenpy proc: {ns.control}: {who} refused PD{ns.pin} <- {ns.value}: "
              f"return_value {rv} ({reason})", file=sys.stderr)
        return 1
    return 0


def _read(ns: argparse.Namespace) -> int:
    level = read_pin(ns.pin)
    print(json.dumps({"control": ns.control, "pin": f"PD{ns.pin}", "value": level})
          if ns.json else level)
    return 0


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if ns.action == "list":
        for name, what in CONTROLS.items():
            print(f"{name:<24}{what}")
        return 0
    if ns.control not in CONTROLS:
        print(f"xenpy proc: {ns.control}: {os.strerror(errno.ENOENT)} "
              f"(controls: {', '.join(CONTROLS)})", file=sys.stderr)
        return 1
    try:
        return _write(ns) if ns.action == "write" else _read(ns)
    except (ErikaXenError, BoardNotRunning, XsError) as e:
        print(f"xenpy proc: {ns.control}: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1
