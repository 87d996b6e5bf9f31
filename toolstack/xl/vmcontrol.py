"""xl create, destroy, pause, unpause, shutdown, reboot (xl_vmcontrol.c)."""
from __future__ import annotations

import os
import time
import uuid as uuidlib

from toolstack.xc import XcError
from toolstack.xl.utils import (ERROR_FAIL, ERROR_INVAL, XTL_DETAIL, G, config_args, ctx, err,
                                fail, find_domain, getopts, log, log_builder)

DOMINF_shutdown = 1 << 2
ERROR_NOPARAVIRT = -10
PV_ACK_S = 60.0        # libxl__domain_pvcontrol: how long the guest has to acknowledge
PV_GRACE_S = 5.0       # with -F: how long before the hard fallback


# -- create ------------------------------------------------------------------------------------

def main_create(argv: list[str]) -> int:
    config_file = None
    if len(argv) > 1 and not argv[1].startswith("-") and "=" not in argv[1]:
        config_file = argv[1]
        argv = argv[1:]
    opts, args = getopts(argv[1:], "AFVcdef:inpq", ["defconfig=", "dryrun",
                                                    "ignore-global-affinity-masks", "quiet",
                                                    "vncviewer", "vncviewer-autopass"],
                         "create", 0)
    console = paused = quiet = debug = False
    for o, a in opts:
        if o == "-c":
            console = True
        elif o == "-p":
            paused = True
        elif o in ("-n", "--dryrun"):
            G.dryrun_only = True
        elif o in ("-f", "--defconfig"):
            config_file = a
        elif o in ("-q", "--quiet"):
            quiet = True
        elif o == "-d":
            debug = True
        # -A -V (VNC), -F -e (the monitoring daemon), -i (xl.conf masks): nothing to do here
    try:
        config_file, extra = config_args(args, config_file, "create")
    except ValueError:
        return 2
    return create_domain(config_file, extra, console=console, paused=paused, quiet=quiet,
                         debug=debug)


def create_domain(config_file: str | None, extra: list[str], *, console: bool, paused: bool,
                  quiet: bool, debug: bool) -> int:
    from toolstack.domcfg import ConfigError, crlf_message, domain_config_from_cfg
    from toolstack.libxl import CreateError
    from toolstack.libxl_json import domain_config, yajl_dumps
    from toolstack.xlcfg import CfgParseError, parse_cfg
    if config_file is None:            # xl then looks in the restore file; there is none
        err("Config file not specified and none in save file")
        return -ERROR_INVAL
    try:
        with open(config_file, "rb") as f:
            data = f.read()
    except OSError as e:
        err(f"Failed to read config file: {config_file}: {os.strerror(e.errno or 0)}")
        return -ERROR_FAIL
    if not quiet:
        err(f"Parsing config from {config_file}")
    text = data.decode("utf-8", "surrogateescape")
    try:
        raw = parse_cfg(text, config_file, extra)
        cfg, warnings = domain_config_from_cfg(raw)
    except CfgParseError as e:
        err(crlf_message(text, config_file) or "\n".join(e.messages))
        return 1
    except ConfigError as e:
        err("\n".join(e.messages))     # one line per error in the file
        return 1
    for w in warnings:
        err(w)
    if cfg.uuid is None:               # parse_config_data: libxl_uuid_generate
        cfg.uuid = str(uuidlib.uuid4())
    if debug or G.dryrun_only:
        nr_cpus = ctx().xc.physinfo()["max_cpu_id"] + 1 if not G.dryrun_only else _nr_cpus()
        text = yajl_dumps(domain_config(cfg, raw, cfg.uuid, nr_cpus))
        if debug and not G.dryrun_only:
            err(text.rstrip("\n"))
        else:
            print(text, end="")
    if G.dryrun_only:
        return 0
    lx = ctx()
    lx.detail = lambda func, msg: log_builder(XTL_DETAIL, func, msg)
    log(XTL_DETAIL, "libxl_create.c", "do_domain_create", f"creating \"{cfg.name}\" from "
        f"{config_file}: {cfg.maxvcpus} vCPU(s), {cfg.memory} MB")
    try:
        domid = lx.create(cfg, paused=paused, extra=extra,
                          config_json=domain_config(cfg, raw, cfg.uuid,
                                                    lx.xc.physinfo()["max_cpu_id"] + 1))
    except CreateError as e:
        err(f"xl: {e}")
        return 1
    log(XTL_DETAIL, "libxl_create.c", "domcreate_complete",
        f"created{' (paused)' if paused else ''}", domid)
    if console:
        from toolstack.xl.console import console_loop
        return console_loop(lx.xc, domid)
    return 0


def _nr_cpus() -> int:
    """libxl_get_max_cpus for a dry run: the board's, if one answers; a dry run never starts
    a board."""
    from toolstack.xc import BoardNotRunning, Xc
    try:
        xc = Xc()
    except BoardNotRunning:
        from toolstack.domcfg import XEN_NR_CPUS
        return XEN_NR_CPUS
    try:
        return xc.physinfo()["max_cpu_id"] + 1
    finally:
        xc.close()


# -- destroy, pause, unpause -------------------------------------------------------------------

def main_destroy(argv: list[str]) -> int:
    opts, args = getopts(argv[1:], "f", [], "destroy", 1)
    force = any(o == "-f" for o, _ in opts) or G.force_execution
    domid = find_domain(args[0])
    if domid == 0 and not force:
        err("Not destroying domain 0; use -f to force.\n"
            "This can only be done when using a disaggregated hardware domain and toolstack.")
        return 1
    try:
        ctx().destroy(domid)
    except XcError as e:           # libxl: a domain that is gone is ERROR_DOMAIN_NOTFOUND
        if e.errno == 3:
            log(8, "libxl_domain.c", "libxl__destroy_domid", "Non-existant domain", domid)
        raise fail(f"destroy failed (rc={ERROR_FAIL if e.errno != 3 else -21})") from None
    return 0


def _pause_op(argv: list[str], name: str, op: str) -> int:
    _, args = getopts(argv[1:], "", [], name, 1)
    domid = find_domain(args[0])
    try:
        getattr(ctx().xc, op)(domid)
    except XcError as e:
        log(8, "libxl_domain.c", f"libxl_domain_{name}", f"{name}ing domain: "
            f"{os.strerror(e.errno)}", domid)
        return 1
    return 0


def main_pause(argv: list[str]) -> int:
    return _pause_op(argv, "pause", "domain_pause")


def main_unpause(argv: list[str]) -> int:
    return _pause_op(argv, "unpause", "domain_unpause")


# -- shutdown, reboot --------------------------------------------------------------------------

def _is_down(domid: int) -> bool:
    info = ctx().xc.domain_getinfo(domid)
    return info is None or bool(info["flags"] & DOMINF_shutdown)


def _signal(domid: int, what: str, verb: str, reason: int, fallback: bool) -> None:
    """libxl_domain_shutdown/reboot: a guest that is not HVM (every ARM guest) has PV control
    (libxl__domain_pvcontrol_available), so ~/control/shutdown is written and xl waits for the
    guest to acknowledge by emptying it (or for the domain to go down). With -F a guest that
    has not acknowledged within PV_GRACE_S is shut down directly (ARM has no ACPI button)."""
    lx = ctx()
    err(f"{verb} domain {domid}")
    path = f"/local/domain/{domid}/control/shutdown"

    def acked() -> bool:
        try:
            state = lx.xs.read(path)
        except Exception:  # noqa: BLE001 - the node went with the domain
            return True
        return state == b"" or _is_down(domid)

    lx.xs.write(path, what)
    deadline = time.monotonic() + (PV_GRACE_S if fallback else PV_ACK_S)
    while not acked() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not acked():
        if not fallback:
            err("guest didn't acknowledge control request: -9")
            raise fail(f"{'shutdown' if what == 'poweroff' else 'reboot'} failed (rc=-9)")
        lx.xc.domain_shutdown(domid, reason)


def _shutdown_or_reboot(argv: list[str], do_reboot: bool) -> int:
    what = "reboot" if do_reboot else "shutdown"
    opts, args = getopts(argv[1:], "awF", ["all", "wait"], what, 0)
    flags = [o for o, _ in opts]
    every = "-a" in flags or "--all" in flags
    wait = sum(o in ("-w", "--wait") for o in flags)
    fallback = "-F" in flags
    if not args and not every:
        err("You must specify -a or a domain id.\n")
        return 1
    if every:
        domids = [i.domid for i in ctx().list_domains() if i.domid != 0]
    else:
        domids = [find_domain(args[0])]
    reason = 1 if do_reboot else 0
    for d in domids:
        _signal(d, "reboot" if do_reboot else "poweroff",
                "Rebooting" if do_reboot else "Shutting down", reason, fallback)
    if wait:
        err(f"Waiting for {len(domids)} domains")
        for d in domids:
            while not _is_down(d):
                time.sleep(0.05)
            info = ctx().xc.domain_getinfo(d)
            if info is None:
                err(f"Domain {d} has been destroyed")
            else:
                err(f"Domain {d} has been shut down, reason code {info['shutdown_reason']}")
    return 0


def main_shutdown(argv: list[str]) -> int:
    return _shutdown_or_reboot(argv, False)


def main_reboot(argv: list[str]) -> int:
    return _shutdown_or_reboot(argv, True)
