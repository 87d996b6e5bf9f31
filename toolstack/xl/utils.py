"""What every xl command shares (xl_utils.c, xl.c): the option parser, the domain argument, the
libxl context, the global flags, help pages and libxl's log lines."""
from __future__ import annotations

import getopt
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from toolstack.xc import BoardNotRunning, Xc

# ERROR_* of libxl_types.idl that xl turns into messages or exit codes.
ERROR_FAIL, ERROR_INVAL, ERROR_DOMAIN_NOTFOUND = -3, -6, -21

# xentoollog levels; xl's default minimum is XTL_PROGRESS, each global -v lowers it by one.
XTL_DEBUG, XTL_VERBOSE, XTL_DETAIL, XTL_PROGRESS, XTL_INFO, XTL_NOTICE, XTL_WARN, XTL_ERROR = \
    range(1, 9)
LEVEL_NAMES = {XTL_DEBUG: "debug", XTL_VERBOSE: "verbose", XTL_DETAIL: "detail",
               XTL_PROGRESS: "progress", XTL_INFO: "info", XTL_NOTICE: "notice",
               XTL_WARN: "warning", XTL_ERROR: "error"}


@dataclass
class Globals:
    """xl's global options (xl.c's main): -v, -N, -f, -t, -T."""
    minmsglevel: int = XTL_PROGRESS
    dryrun_only: bool = False
    force_execution: bool = False
    progress_use_cr: bool = False
    timestamps: bool = False


G = Globals()


class Exit(Exception):
    """Leave the command with this status; the message is already printed."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def err(msg: str) -> None:
    sys.stdout.flush()
    print(msg, file=sys.stderr, flush=True)


def fail(msg: str, code: int = 1) -> Exit:
    err(msg)
    return Exit(code)


def log(level: int, where: str, func: str, msg: str, domid: int | None = None) -> None:
    """A libxl log line as xl's stdiostream logger prints it, when -v lets it through:
    `libxl: LEVEL: FILE:LINE:FUNC: Domain N:MESSAGE`."""
    if level < G.minmsglevel:
        return
    dom = f"Domain {domid}:" if domid is not None else ""
    err(f"libxl: {LEVEL_NAMES[level]}: {where}:{func}: {dom}{msg}")


def log_builder(level: int, func: str, msg: str) -> None:
    """libxenguest's lines through the same logger: `domainbuilder: LEVEL: FUNC: MESSAGE`."""
    if level >= G.minmsglevel:
        err(f"domainbuilder: {LEVEL_NAMES[level]}: {func}: {msg}")


# -- options (def_getopt / SWITCH_FOREACH_OPT) -------------------------------------------------

def getopts(argv: Sequence[str], shortopts: str, longopts: Sequence[str], cmd: str,
            reqargs: int) -> tuple[list[tuple[str, str]], list[str]]:
    """Parse a command's options the way def_getopt does with GNU getopt_long: options may
    follow the arguments, -h/--help prints the command's help and exits 0, an unknown option is
    `option `x' not supported.` with status 2, too few arguments is status 2 with the help."""
    try:
        opts, args = getopt.gnu_getopt(list(argv), "h" + shortopts, [*longopts, "help"])
    except getopt.GetoptError as e:
        if e.opt == "h":
            help_(cmd)
            raise Exit(0) from None
        err(f"option `{e.opt if len(e.opt) == 1 else ''}' not supported.")
        raise Exit(2) from None
    out = []
    for o, a in opts:
        if o in ("-h", "--help"):
            help_(cmd)
            raise Exit(0)
        out.append((o, a))
    if len(args) < reqargs:
        err(f"'xl {cmd}' requires at least {reqargs} argument{'s' if reqargs > 1 else ''}.\n")
        help_(cmd)
        raise Exit(2)
    return out, args


def config_args(args: Sequence[str], filename: str | None, cmd: str
                ) -> tuple[str | None, list[str]]:
    """The arguments of create and cpupool-create: at most one FILE (unless -f named it) and
    any number of KEY=VALUE lines to add to it. Another FILE prints the help; the caller exits."""
    extra: list[str] = []
    for a in args:
        if "=" in a:
            extra.append(a)
        elif filename is None:
            filename = a
        else:
            help_(cmd)
            raise ValueError(a)
    return filename, extra


def help_(command: str | None) -> None:
    """xl.c's help(): the command list, or one command's usage page."""
    from toolstack.xl.cmdtable import CMD_TABLE, lookup
    out = sys.stdout
    if not command or command == "help":
        out.write("Usage xl [-vfNtT] <subcommand> [args]\n\n")
        out.write("xl full list of subcommands:\n\n")
        for c in CMD_TABLE:
            out.write(f" {c.name:<19} ")
            if len(c.name) > 19:
                out.write(f"\n {'':<19} ")
            out.write(f"{c.desc}\n")
        return
    c = lookup(command)
    if c is None:
        out.write(f'command "{command}" not implemented\n')
        return
    out.write(f"Usage: xl [-vtT{'f' if c.modifies else ''}{'N' if c.can_dryrun else ''}] "
              f"{c.name} {c.usage}\n\n{c.desc}.\n\n")
    if c.options:
        out.write(f"Options:\n\n{c.options}\n")
    out.flush()


# -- the libxl context -------------------------------------------------------------------------

_CTX: Any = None


def ctx():
    """The one libxl context every command uses (xl.c's `ctx`), connected on first use."""
    global _CTX
    if _CTX is None:
        from toolstack.libxl import Libxl
        from toolstack.xl.board import connect
        xc, xs = connect()
        _CTX = Libxl(xc, xs)
    return _CTX


def find_domain(spec: str) -> int:
    """libxl_domain_qualifier_to_domid: all digits is an id (not checked), else a name."""
    if spec.isdigit():
        return int(spec)
    for info in ctx().list_domains():
        if info.name == spec:
            return info.domid
    raise fail(f"{spec} is an invalid domain identifier (rc={ERROR_INVAL})")


def domain_info(domid: int) -> dict[str, Any] | None:
    return ctx().xc.domain_getinfo(domid)


def domid_to_name(domid: int) -> str | None:
    try:
        return ctx().xs.read(f"/local/domain/{domid}/name").decode()
    except Exception:  # noqa: BLE001 - no such node
        return None


def domids_to_names(domids: Sequence[int]) -> dict[int, str | None]:
    """domid_to_name of many domains in one XenStore round trip (a list of every domain)."""
    names: dict[int, str | None] = {}
    for d, v in zip(domids, ctx().xs.read_many(f"/local/domain/{d}/name" for d in domids)):
        try:
            names[d] = v.decode() if isinstance(v, bytes) else None
        except UnicodeDecodeError:
            names[d] = None
    return names


# -- formats -----------------------------------------------------------------------------------

def print_bitmap(cpus: set[int] | Sequence[int], nr: int) -> str:
    """xl_utils.c's print_bitmap: ranges of the set bits below nr, "all" when every bit from 0
    to nr-1 is set, "none" when none is."""
    bits = [i in set(cpus) for i in range(nr)]
    if not any(bits):
        return "none"
    if all(bits):
        return "all"
    out, i = [], 0
    while i < nr:
        if bits[i]:
            j = i
            while j + 1 < nr and bits[j + 1]:
                j += 1
            out.append(str(i) if i == j else f"{i}-{j}")
            i = j + 1
        else:
            i += 1
    return ",".join(out)


def parse_cpurange(text: str, nr_cpus: int) -> set[int] | None:
    """xl_parse.c's parse_cpurange ("all", "N", "N-M", "^N", comma separated): the CPUs below
    nr_cpus (libxl's bitmap has that size); None after xl's message when it does not parse."""
    from toolstack.domcfg import parse_cpulist
    try:
        cpus = parse_cpulist(text, nr_cpus)
    except ValueError as e:
        err(str(e))
        return None
    return set(range(nr_cpus)) if cpus is None else {c for c in cpus if c < nr_cpus}


def parse_mem_size_kb(text: str) -> int:
    """xl_parse.c's parse_mem_size_kb: strtoll, then at most one suffix b/k/m/g/t (none: MiB);
    -1 when it does not parse."""
    import re
    m = re.match(r"[ \t\n\v\f\r]*([+-]?\d*)(.*)", text, re.S)
    digits, rest = m.group(1), m.group(2)
    if not digits.lstrip("+-"):
        digits, rest = "", text          # no conversion: endptr is the whole string
    kb = int(digits) if digits else 0
    if len(rest) > 1:
        return -1
    shift = {"t": 30, "g": 20, "": 10, "m": 10, "k": 0}.get(rest.lower())
    if shift is not None:
        return kb << shift
    if rest.lower() == "b":
        return kb >> 10
    return -1


Handler = Callable[[list[str]], int]


def xc() -> Xc:
    return ctx().xc


__all__ = ["BoardNotRunning", "Exit", "G", "ctx", "err", "fail", "find_domain", "getopts",
           "help_", "log", "log_builder", "print_bitmap", "parse_cpurange", "parse_mem_size_kb",
           "xc"]
