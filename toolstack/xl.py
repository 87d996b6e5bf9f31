"""`xl`: the domain management command, with xl's options, output formats and messages.

It talks to the board through privcmd (toolstack/xc.py) and to xenstored through the XenStore
protocol (toolstack/xs.py), like the real xl through libxl. When no board runs, it starts one.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import sys
import termios
import time
import tty
from typing import Callable

from toolstack.xc import BoardNotRunning, Xc, XcError

COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str, str]] = {}
ESCAPE = 0x1D   # Ctrl-]


class XlError(Exception):
    """A message for stderr and exit status 1."""


def command(name: str, usage: str, help_: str):
    def register(fn):
        COMMANDS[name] = (fn, usage, help_)
        return fn
    return register


def err(msg: str) -> None:
    print(msg, file=sys.stderr)


# -- connecting -------------------------------------------------------------------------------------

def connect(start: bool = True) -> tuple[Xc, object]:
    from toolstack.xs import XsClient
    try:
        xc = Xc()
    except BoardNotRunning:
        if not start:
            raise XlError("xl: no board is running (start one with 'xenpy boot')") from None
        from xenpy.cli import start_background
        err("xl: no board is running; starting one (xenpy boot)")
        try:
            start_background([])
        except RuntimeError as e:
            raise XlError(f"xl: {e}") from None
        xc = Xc()
    try:
        xs = XsClient()
    except Exception as e:  # noqa: BLE001
        raise XlError(f"xl: cannot connect to xenstored: {e}") from None
    return xc, xs


def libxl():
    from toolstack.libxl import Libxl
    xc, xs = connect()
    return Libxl(xc, xs)


def find_domain(lx, spec: str) -> int:
    try:
        return lx.lookup(spec)
    except LookupError as e:
        raise XlError(str(e)) from None


# -- create -----------------------------------------------------------------------------------------

@command("create", "[options] <ConfigFile> [options] [vars]", "Create a domain from config file <filename>.")
def cmd_create(ns: argparse.Namespace) -> int:
    from toolstack.domcfg import ConfigError, load_domain_config
    from toolstack.libxl import CreateError
    err(f"Parsing config from {ns.config}")
    try:
        cfg, warnings = load_domain_config(ns.config, ns.vars)
    except ConfigError as e:
        raise XlError("\n".join(e.messages)) from None   # one line per error in the file
    for w in warnings:
        err(w)
    if ns.dry_run:
        print(json.dumps(cfg.to_json(), indent=4))
        return 0
    lx = libxl()
    try:
        domid = lx.create(cfg, paused=ns.paused, extra=ns.vars)
    except CreateError as e:
        raise XlError(f"xl: {e}") from None
    if ns.console:
        return console_loop(lx.xc, domid)
    return 0


# -- list -------------------------------------------------------------------------------------------

@command("list", "[options] [Domain]", "List information about all/some domains.")
def cmd_list(ns: argparse.Namespace) -> int:
    lx = libxl()
    infos = lx.list_domains()
    if ns.domains:
        wanted = []
        for spec in ns.domains:
            try:
                domid = lx.lookup(spec)
            except LookupError:
                raise XlError(f"Error: Domain '{spec}' does not exist.") from None
            wanted.append(domid)
        infos = [i for i in infos if i.domid in wanted]
    if ns.long:
        print(json.dumps([long_entry(i) for i in infos], indent=4))
        return 0
    print("Name                                        ID   Mem VCPUs\tState\tTime(s)")
    for i in infos:
        print(f"{i.name:<40} {i.domid:5d} {i.mem_kb // 1024:5d} {i.vcpus:5d}     {i.state}  "
              f"{i.cpu_time:8.1f}")
    return 0


def long_entry(info) -> dict:
    from toolstack.libxl import userdata_path
    try:
        saved = json.loads(userdata_path(info.domid).read_text())
        config = saved["config"]
    except (OSError, ValueError, KeyError):
        config = {"c_info": {"type": "pvh", "name": info.name, "uuid": info.uuid},
                  "b_info": {"max_vcpus": info.max_vcpu_id + 1, "max_memkb": info.mem_kb,
                             "target_memkb": info.mem_kb}}
    return {"domid": info.domid, "config": config}


# -- vcpu-list --------------------------------------------------------------------------------------

def cpulist(cpus: list[int], nr: int) -> str:
    if len(cpus) >= nr:
        return "all"
    if not cpus:
        return "none"
    out, start = [], None
    cpus = sorted(cpus)
    for k, c in enumerate(cpus):
        if start is None:
            start = c
        if k + 1 == len(cpus) or cpus[k + 1] != c + 1:
            out.append(str(start) if start == c else f"{start}-{c}")
            start = None
    return ",".join(out)


@command("vcpu-list", "[Domain, ...]", "List the VCPUs for all/some domains.")
def cmd_vcpu_list(ns: argparse.Namespace) -> int:
    lx = libxl()
    nr = lx.xc.physinfo()["nr_cpus"]
    infos = lx.list_domains()
    if ns.domains:
        ids = [find_domain(lx, s) for s in ns.domains]
        infos = [i for i in infos if i.domid in ids]
    print(f"{'Name':<32} {'ID':>5} {'VCPU':>5} {'CPU':>5} {'State':>5} {'Time(s)':>9} "
          "Affinity (Hard / Soft)")
    for i in infos:
        for n in range(i.max_vcpu_id + 1):
            v = lx.xc.vcpu_getinfo(i.domid, n)
            aff = lx.xc.vcpu_getaffinity(i.domid, n)
            row = f"{i.name:<32} {i.domid:5d} {n:5d} "
            if v["online"]:
                row += f"{v['cpu']:5d} {'r' if v['running'] else '-':>3}{'b' if v['blocked'] else '-'}- "
            else:
                row += f"{'-':>5} {'-':>3}-p "
            row += f"{v['cpu_time'] / 1e9:9.1f}  {cpulist(aff['cpumap_hard'], nr)} / " \
                   f"{cpulist(aff['cpumap_soft'], nr)}"
            print(row)
    return 0


# -- destroy, pause, unpause, shutdown ------------------------------------------------------------

@command("destroy", "[options] <Domain>", "Terminate a domain immediately.")
def cmd_destroy(ns: argparse.Namespace) -> int:
    lx = libxl()
    domid = find_domain(lx, ns.domain)
    if domid == 0 and not ns.force:
        raise XlError("Not destroying domain 0; use -f to force.\n"
                      "This can only be done when using a disaggregated hardware domain and toolstack.")
    try:
        lx.destroy(domid)
    except XcError as e:
        raise XlError(f"destroy failed (rc={-e.errno})") from None
    return 0


@command("pause", "<Domain>", "Pause execution of a domain.")
def cmd_pause(ns: argparse.Namespace) -> int:
    lx = libxl()
    try:
        lx.xc.domain_pause(find_domain(lx, ns.domain))
    except XcError as e:
        raise XlError(f"xl: pause failed: {e}") from None
    return 0


@command("unpause", "<Domain>", "Unpause a paused domain.")
def cmd_unpause(ns: argparse.Namespace) -> int:
    lx = libxl()
    try:
        lx.xc.domain_unpause(find_domain(lx, ns.domain))
    except XcError as e:
        raise XlError(f"xl: unpause failed: {e}") from None
    return 0


PV_GRACE_S = 10.0      # with -F: how long a PV guest gets before the hard fallback


def _pv_shutdown(ns: argparse.Namespace, what: str, verb: str, reason: int) -> int:
    """Ask through ~/control/shutdown (a guest that watches it shuts itself down); with -F fall
    back to the hard action when the guest has no PV control or ignores the request."""
    lx = libxl()
    domid = find_domain(lx, ns.domain)
    err(f"{verb} domain {domid}")
    try:      # the guest announces PV control by writing "1" to the node libxl made for it
        has_pv = lx.xs.read(f"/local/domain/{domid}/control/feature-{what}") == b"1"
    except Exception:  # noqa: BLE001 - no such node: nothing announced
        has_pv = False
    if not has_pv and not ns.fallback:
        raise XlError("PV control interface not available: external graceful shutdown not possible.\n"
                      'Use "-F" to fallback to ACPI power event.')

    def is_down() -> bool:
        info = lx.xc.domain_getinfo(domid)
        return info is None or bool(info["flags"] & (1 << 2))

    if has_pv:
        lx.xs.write(f"/local/domain/{domid}/control/shutdown", what)
    if ns.fallback:
        deadline = time.monotonic() + (PV_GRACE_S if has_pv else 0)
        while not is_down() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not is_down():
            lx.xc.domain_shutdown(domid, reason)
    if ns.wait:
        while not is_down():
            time.sleep(0.05)
        err(f"Domain {domid} has been shut down, reason code {reason}")
    return 0


@command("shutdown", "[options] <-a|Domain>", "Issue a shutdown signal to a domain.")
def cmd_shutdown(ns: argparse.Namespace) -> int:
    return _pv_shutdown(ns, "poweroff", "Shutting down", 0)


@command("reboot", "[options] <-a|Domain>", "Issue a reboot signal to a domain.")
def cmd_reboot(ns: argparse.Namespace) -> int:
    return _pv_shutdown(ns, "reboot", "Rebooting", 1)


# -- console ---------------------------------------------------------------------------------------

@command("console", "[options] <Domain>", "Attach to domain's console.")
def cmd_console(ns: argparse.Namespace) -> int:
    lx = libxl()
    return console_loop(lx.xc, find_domain(lx, ns.domain))


def console_loop(xc: Xc, domid: int) -> int:
    """Show a domain's console from its first byte; Ctrl-] detaches. Ends when the domain stops."""
    interactive = sys.stdin.isatty()
    saved = None
    if interactive:
        saved = termios.tcgetattr(sys.stdin.fileno())
        tty.setraw(sys.stdin.fileno())
    out = sys.stdout.buffer
    offset = 0
    try:
        while True:
            try:
                r = xc.console_read(domid, offset, 0.1 if interactive else 0.5)
            except XcError:
                return 0      # the domain is gone
            data = r["data"].encode("latin-1")
            if data:
                out.write(data.replace(b"\n", b"\r\n") if interactive else data)
                out.flush()
            offset = r["offset"]
            if (r["dying"] or r["shutdown"]) and not data:
                return 0
            if interactive and select.select([sys.stdin], [], [], 0)[0]:
                typed = os.read(sys.stdin.fileno(), 1024)
                if ESCAPE in typed:
                    return 0
                xc.console_write(domid, typed)
    finally:
        if saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)


# -- dmesg, info ----------------------------------------------------------------------------------------

@command("dmesg", "[-c]", "Read and/or clear dmesg buffer.")
def cmd_dmesg(ns: argparse.Namespace) -> int:
    xc, _ = connect()
    for line in xc.readconsole(clear=ns.clear):
        print(line)
    return 0


@command("debug-keys", "<Keys>", "Send debug keys to Xen.")
def cmd_debug_keys(ns: argparse.Namespace) -> int:
    xc, _ = connect()
    try:
        xc.debug_keys(ns.keys)
    except XcError:
        raise XlError("cannot send debug keys: " + ns.keys) from None
    return 0


@command("info", "[-n] [name]", "Get information about Xen host.")
def cmd_info(ns: argparse.Namespace) -> int:
    import platform
    xc, xs = connect()
    p, v = xc.physinfo(), xc.version()
    uname = platform.uname()
    fields = [
        ("host", uname.node), ("release", uname.release), ("version", uname.version),
        ("machine", "armv7l"), ("nr_cpus", p["nr_cpus"]), ("max_cpu_id", p["max_cpu_id"]),
        ("nr_nodes", p["nr_nodes"]), ("cores_per_socket", p["cores_per_socket"]),
        ("threads_per_core", p["threads_per_core"]),
        ("cpu_mhz", f"{p['cpu_khz'] // 1000}.{p['cpu_khz'] % 1000:03d}"),
        ("hw_caps", ":".join(f"{c:08x}" for c in p["hw_cap"])),
        ("virt_caps", "".join(f" {c}" for c in p["capabilities"])),
        ("total_memory", p["total_pages"] >> 8), ("free_memory", p["free_pages"] >> 8),
        ("sharing_freed_memory", 0), ("sharing_used_memory", 0), ("outstanding_claims", 0),
        ("free_cpus", 0), ("xen_major", v["major"]), ("xen_minor", v["minor"]),
        ("xen_extra", v["extra"]), ("xen_version", f"{v['major']}.{v['minor']}{v['extra']}"),
        ("xen_caps", v["capabilities"].strip()), ("xen_scheduler", "credit"),
        ("xen_pagesize", 4096), ("platform_params", "virt_start=0x0"),
        ("xen_changeset", v["changeset"]), ("xen_commandline", v["commandline"]),
        ("cc_compiler", v["compiler"]), ("cc_compile_by", v["compile_by"]),
        ("cc_compile_domain", v["compile_domain"]), ("cc_compile_date", v["compile_date"]),
        ("build_id", ""), ("xend_config_format", 4)]
    if ns.name:
        for k, val in fields:
            if k == ns.name:
                print(val)
                return 0
        raise XlError(f"xl: unknown info field `{ns.name}'")
    for k, val in fields:
        print(f"{k:<23}: {val}")
    return 0


# -- argument parsing ------------------------------------------------------------------------------

def build_parser(name: str) -> argparse.ArgumentParser:
    fn, usage, help_ = COMMANDS[name]
    p = argparse.ArgumentParser(prog=f"xl {name}", description=help_, add_help=True)
    if name in PARSERS:
        PARSERS[name](p)
    elif name == "create":
        p.add_argument("-c", dest="console", action="store_true", help="connect to the console after creation")
        p.add_argument("-p", dest="paused", action="store_true", help="leave the domain paused after creation")
        p.add_argument("-n", "--dry-run", dest="dry_run", action="store_true", help="parse the config only")
        p.add_argument("-F", "-q", "-e", "-V", dest="ignored", action="count", help=argparse.SUPPRESS)
        p.add_argument("config")
        p.add_argument("vars", nargs="*", help="KEY=VALUE settings appended to the config")
    elif name in ("list", "vcpu-list"):
        if name == "list":
            p.add_argument("-l", "--long", action="store_true", help="JSON output")
        p.add_argument("domains", nargs="*")
    elif name == "destroy":
        p.add_argument("-f", dest="force", action="store_true")
        p.add_argument("domain")
    elif name in ("shutdown", "reboot"):
        p.add_argument("-w", "--wait", action="store_true")
        p.add_argument("-F", dest="fallback", action="store_true")
        p.add_argument("domain")
    elif name == "dmesg":
        p.add_argument("-c", dest="clear", action="store_true")
    elif name == "debug-keys":
        p.add_argument("keys")
    elif name == "info":
        p.add_argument("-n", dest="numa", action="store_true")
        p.add_argument("name", nargs="?")
    else:
        p.add_argument("domain")
    p.set_defaults(func=fn)
    return p


# -- commands in modules of their own: NAME, USAGE, HELP, add_arguments(parser), run(ns, libxl) --

from toolstack import xl_gdbserver, xl_top  # noqa: E402

PARSERS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}
for _mod in (xl_gdbserver, xl_top):
    COMMANDS[_mod.NAME] = (lambda ns, m=_mod: m.run(ns, libxl), _mod.USAGE, _mod.HELP)
    PARSERS[_mod.NAME] = _mod.add_arguments


def usage() -> str:
    lines = ["Usage xl [-vfNtT] <subcommand> [args]", "", "xl full list of subcommands:", ""]
    lines += [f" {name:<18}{h}" for name, (_, _, h) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    while argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = argv[1:]       # global flags (-v, -f, -N, -t, -T) are accepted and ignored
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 1
    name = argv[0]
    if name not in COMMANDS:
        err(f"command not implemented")
        print(usage(), file=sys.stderr)
        return 1
    parser = build_parser(name)
    try:
        ns = parser.parse_args(argv[1:])
    except SystemExit as e:
        return int(e.code or 0) and 1
    try:
        return ns.func(ns)
    except XlError as e:
        err(str(e))
        return 1
    except BoardNotRunning as e:
        err(f"xl: {e}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
