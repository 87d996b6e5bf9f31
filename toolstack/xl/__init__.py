"""`xl`: the domain management command, shaped like Xen's tools/xl.

xl.c's main (this file) takes the global options and dispatches through the command table
(cmdtable.py); each family of commands has its module, named after Xen's: vmcontrol (create,
destroy, pause, shutdown...), info (list, info, uptime...), vcpu, mem, console, misc. They talk
to the board through privcmd (toolstack/xc.py) and to xenstored (toolstack/xs.py), through the
libxl of toolstack/libxl.py, as xl does through libxl.
"""
from __future__ import annotations

import os
import sys

from toolstack.xc import BoardNotRunning, XcError
from toolstack.xs import XsError
from toolstack.xl.utils import G, Exit, err, help_

GLOBAL_OPTS = "vftTN"


def _global_options(argv: list[str]) -> tuple[list[str], int | None]:
    """getopt(argc, argv, "+vftTN"): stops at the first non-option. An unknown option gets
    glibc's complaint and xl's `unknown global option`, status 1."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
        for ch in a[1:]:
            if ch not in GLOBAL_OPTS:
                err(f"xl: invalid option -- '{ch}'")
                err("unknown global option")
                return [], 1
            if ch == "v":
                G.minmsglevel = max(G.minmsglevel - 1, 1)
            elif ch == "N":
                G.dryrun_only = True
            elif ch == "f":
                G.force_execution = True
            elif ch == "t":
                G.progress_use_cr = True
            else:
                G.timestamps = True
        i += 1
    return argv[i:], None


def main(argv: list[str] | None = None) -> int:
    from toolstack.xl.cmdtable import lookup
    argv = sys.argv[1:] if argv is None else list(argv)
    rest, rc = _global_options(argv)
    if rc is not None:
        return rc
    if not rest:
        help_(None)
        return 1
    cmd = rest[0]
    spec = lookup(cmd)
    try:
        if spec is not None:
            if G.dryrun_only and not spec.can_dryrun:
                err("command does not implement -N (dryrun) option")
                return 1
            return spec.handler()(rest)
        if cmd == "help":
            help_(rest[1] if len(rest) > 1 else None)
            return 0
        err("command not implemented")
        return 1
    except Exit as e:
        return e.code
    except BoardNotRunning as e:
        err(f"xl: {e}")
        return 1
    except XcError as e:       # a hypercall failed where xl would have printed libxl's error
        err(f"xl: {e}")
        return 1
    except XsError as e:       # likewise a XenStore request
        err(f"xl: xenstore: {e}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        sys.stdout.flush()
