"""xenstore-read, -write, -rm, -exists, -list, -ls, -chmod, -watch
(tools/xs-clients/xenstore_client.c) and xenstore-control (xenstore_control.c): same flags,
output, escaping, messages and exit codes.

Like Xen's single binary, the program picks its mode from the name it was run under
(argv[0]): `xenstore-<mode> ...`, or `xenstore <mode> ...` for any other name. Messages start
with that name's last component (errx) and usage lines show argv[0] as invoked. Several keys
given to read, write, rm, exists, list or chmod are handled in one transaction, retried from
scratch when xenstored answers EAGAIN.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from toolstack.xs import XBT_NULL, XsClient, XsConnectError, XsError

MODES = ("chmod", "exists", "list", "ls", "read", "rm", "write", "watch")
_SHORT = "hfspturn:Rd:"
_LONG = {"help": "h", "flat": "f", "prefix": "p", "tidy": "t", "upto": "u", "recurse": "r",
         "number": "n", "raw": "R", "depth": "d"}
_WITH_ARG = {"n", "d"}
_TAG_LEN = len(' = "..."')
_STRING_MAX = 3072 + 1024  # XENSTORE_ABS_PATH_MAX + 1024: longer paths are not read
_INT_MAX = 2**31 - 1


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


# -- escaping -------------------------------------------------------------------------
def sanitise(value: bytes) -> str:
    """Printable form of a value: \\t \\n \\r \\\\, \\ooo below 010, \\xHH otherwise."""
    out = []
    for c in value:
        if 0x20 <= c <= 0x7E and c != 0x5C:
            out.append(chr(c))
        elif c == 0x09:
            out.append("\\t")
        elif c == 0x0A:
            out.append("\\n")
        elif c == 0x0D:
            out.append("\\r")
        elif c == 0x5C:
            out.append("\\\\")
        elif c < 0o10:
            out.append(f"\\{c:03o}")
        else:
            out.append(f"\\x{c:02x}")
    return "".join(out)


def unsanitise(text: bytes) -> bytes:
    """Inverse of sanitise(), as the C tool does it: \\x takes up to 2 hex digits,
    \\0-\\7 up to 3 octal digits, any other escaped character stands for itself
    and a lone trailing backslash gives a NUL byte."""
    out = bytearray()
    i, n = 0, len(text)
    hexdigits, octdigits = b"0123456789abcdefABCDEF", b"01234567"
    while i < n:
        c = text[i]
        i += 1
        if c != 0x5C:
            out.append(c)
            continue
        if i >= n:
            out.append(0)
            break
        c = text[i]
        i += 1
        simple = {ord("t"): 9, ord("n"): 10, ord("r"): 13, 0x5C: 0x5C}
        if c in simple:
            out.append(simple[c])
        elif c == ord("x"):
            j = i
            while j < n and j - i < 2 and text[j] in hexdigits:
                j += 1
            out.append(int(text[i:j], 16) if j > i else c)
            i = j
        elif c in octdigits[:8]:
            j = i - 1
            while j < n and j - (i - 1) < 3 and text[j] in octdigits:
                j += 1
            out.append(int(text[i - 1:j], 8) & 0xFF)
            i = j
        else:
            out.append(c)
    return bytes(out)


def _atoi(text: str) -> int:
    text = text.lstrip(" \t\n\v\f\r")
    sign, digits = 1, ""
    if text[:1] in "+-" and text:
        sign, text = (-1 if text[0] == "-" else 1), text[1:]
    for ch in text:
        if not ch.isdigit():
            break
        digits += ch
    return sign * int(digits) if digits else 0


# -- command state --------------------------------------------------------------------
@dataclass
class _Cli:
    prog: str  # prefix of every message: argv[0]'s last component ("xenstore-read")
    mode: str
    incl_mode: bool  # invoked as `xenstore <mode>`
    invoked: str = ""  # argv[0] as invoked, for the usage line
    prefix: bool = False
    tidy: bool = False
    upto: bool = False
    recurse: bool = False
    raw: bool = False
    nr_watches: int = -1
    depth: int = -1
    max_width: int = 80
    desired_width: int = 60
    whole_path: bool = False
    output: list[bytes] = field(default_factory=list)  # buffered until the transaction ends

    def warn(self, msg: str) -> None:
        sys.stdout.flush()
        print(f"{self.prog}: {msg}", file=sys.stderr)

    def fail(self, msg: str, code: int = 1) -> _Exit:
        self.warn(msg)
        return _Exit(code)

    def usage(self, code: int) -> _Exit:
        m = f"{self.mode} " if self.incl_mode else ""
        text = {
            "read": f"{m}[-h] [-p] [-R] key [...]",
            "write": f"{m}[-h] [-R] key value [...]",
            "rm": f"{m}[-h] [-t] key [...]",
            "exists": f"{m}[-h] key",
            "list": f"{m}[-h] [-p] key [...]",
            "ls": f"{m}[-h] [-f] [-p] [path]",
            "chmod": f"{m}[-h] [-u] [-r] key <mode [modes...]>",
            "watch": f"{m}[-h] [-n NR] key",
        }[self.mode]
        return self.fail(f"Usage: {self.invoked or self.prog} {text}", code)

    def out(self, data: str | bytes) -> None:
        self.output.append(data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data)


def _write_stdout(data: str | bytes) -> None:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    sys.stdout.flush()
    buf = getattr(sys.stdout, "buffer", None)
    if buf is not None:
        buf.write(data)
        buf.flush()
    else:
        sys.stdout.write(data.decode("utf-8", "surrogateescape"))
        sys.stdout.flush()


def _getopt(cli: _Cli, args: Sequence[str], optprog: str) -> tuple[list[tuple[str, str | None]], list[str]]:
    """GNU getopt_long with argument permutation; bad options are reported and skipped."""
    opts: list[tuple[str, str | None]] = []
    rest: list[str] = []
    i = 0

    def bad(msg: str) -> None:
        sys.stdout.flush()
        print(f"{optprog}: {msg}", file=sys.stderr)

    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            rest.extend(args[i:])
            break
        if a.startswith("--"):
            name, eq, val = a[2:].partition("=")
            hits = [n for n in _LONG if n == name] or [n for n in _LONG if n.startswith(name)]
            if not hits:
                bad(f"unrecognized option '--{name}'")
                continue
            if len(hits) > 1:
                bad(f"option '--{name}' is ambiguous; possibilities: " + " ".join(f"'--{h}'" for h in hits))
                continue
            ch = _LONG[hits[0]]
            if ch in _WITH_ARG:
                if not eq:
                    if i >= len(args):
                        bad(f"option '--{hits[0]}' requires an argument")
                        continue
                    val = args[i]
                    i += 1
                opts.append((ch, val))
            elif eq:
                bad(f"option '--{hits[0]}' doesn't allow an argument")
            else:
                opts.append((ch, None))
            continue
        if a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                ch = a[j]
                j += 1
                if ch not in _SHORT.replace(":", ""):
                    bad(f"invalid option -- '{ch}'")
                    continue
                if ch in _WITH_ARG:
                    if j < len(a):
                        opts.append((ch, a[j:]))
                    elif i < len(args):
                        opts.append((ch, args[i]))
                        i += 1
                    else:
                        bad(f"option requires an argument -- '{ch}'")
                    break
                opts.append((ch, None))
            continue
        rest.append(a)
    return opts, rest


# -- the modes ------------------------------------------------------------------------
def _do_ls(cli: _Cli, xs: XsClient, path: str, depth: int) -> None:
    try:
        entries = xs.directory(path)
    except XsError as err:
        if depth and err.errno_name == "ENOENT":
            return  # a node vanished while we walked the tree
        raise cli.fail(f"xs_directory ({path}): {err.strerror}")
    for name in entries:
        newpath = f"{path}{'' if path.endswith('/') else '/'}{name}"
        line: list[str] = []
        linewid = 0
        if cli.whole_path:
            line.append(newpath)
        else:
            line.append(" " * depth)
            linewid = depth
            prec = cli.max_width - _TAG_LEN - linewid
            shown = name if prec < 0 else name[:prec]
            line.append(shown)
            linewid += len(shown)
        val: bytes | None = None
        if len(newpath) < _STRING_MAX:
            try:
                val = xs.read(newpath)
            except XsError:
                val = None
        if val is None:
            line.append(":\n")
        else:
            text = sanitise(val)
            if cli.max_width < linewid + len(val) + _TAG_LEN:
                prec = cli.max_width - _TAG_LEN - linewid
                line.append(f' = "{text if prec < 0 else text[:prec]}\\..."')
            else:
                part = f' = "{text}"'
                line.append(part)
                linewid += len(part)
                if cli.prefix:
                    line.append(" ")
                    linewid += 1
                    while linewid < min(cli.desired_width, cli.max_width):
                        line.append("." if linewid & 1 else " ")
                        linewid += 1
        if cli.prefix:
            try:
                perms = xs.get_perms(newpath)
            except XsError as err:
                _write_stdout("".join(line))
                line = []
                cli.warn(f"\ncould not access permissions for {name}: {err.strerror}")
            else:
                line.append("  (" + ",".join(perms) + ")")
        line.append("\n")
        _write_stdout("".join(line))
        _do_ls(cli, xs, newpath, depth + 1)


def _do_chmod(cli: _Cli, xs: XsClient, tx: int, path: str, perms: list[str], upto: bool, recurse: bool) -> None:
    if not path:
        return
    try:
        xs.set_perms(path, perms, tx)
    except XsError as err:
        raise cli.fail(f"Error occurred setting permissions on '{path}': {err.strerror}")
    if upto:
        sep = path.rfind("/")
        if sep < 0:
            raise cli.fail(f"Unable to locate path separator '/' in '{path}'")
        _do_chmod(cli, xs, tx, path[:sep], perms, True, False)
    if recurse:
        try:
            children = xs.directory(path, tx)
        except XsError:
            children = []
        for child in children:
            sub = f"/{child}" if path == "/" else f"{path}/{child}"
            _do_chmod(cli, xs, tx, sub, perms, False, True)


def _parse_perms(cli: _Cli, specs: Sequence[str]) -> list[str]:
    perms = []
    for spec in specs:
        letter = spec[:1]
        if letter not in ("n", "r", "w", "b"):
            raise cli.fail(f"Invalid permission specification: '{letter}'")
        perms.append(f"{letter}{_atoi(spec[1:])}")
    return perms


def _rm(cli: _Cli, xs: XsClient, tx: int, path: str) -> bool:
    try:
        xs.rm(path, tx)
        return True
    except XsError:
        cli.warn(f"could not remove path {path}")
        return False


def _perform(cli: _Cli, xs: XsClient, tx: int, args: list[str]) -> int:
    mode = cli.mode
    if mode == "read":
        for key in args:
            try:
                val = xs.read(key, tx)
            except XsError:
                cli.warn(f"couldn't read path {key}")
                return 1
            if cli.prefix:
                cli.out(f"{key}: ")
            cli.out(val if cli.raw else sanitise(val) + "\n")
    elif mode == "write":
        for key, spec in zip(args[::2], args[1::2]):
            raw = os.fsencode(spec)
            try:
                xs.write(key, raw if cli.raw else unsanitise(raw), tx)
            except XsError:
                cli.warn(f"could not write path {key}")
                return 1
    elif mode == "rm":
        for key in args:
            if not _rm(cli, xs, tx, key):
                return 1
            if cli.tidy:
                # Also remove parents left empty: no value and no children.
                path = key
                while "/" in path:
                    path = path[:path.rfind("/")]
                    try:
                        if xs.read(path, tx) != b"" or xs.directory(path, tx):
                            break
                    except XsError:
                        break
                    if not _rm(cli, xs, tx, path):
                        return 1
    elif mode == "exists":
        for key in args:
            try:
                xs.read(key, tx)
            except XsError:
                return 1
    elif mode == "list":
        for key in args:
            try:
                names = xs.directory(key, tx)
            except XsError:
                cli.warn(f"could not list path {key}")
                return 1
            pref = "" if key == "/" else key
            for name in names:
                cli.out(f"{pref}/{name}\n" if cli.prefix else f"{name}\n")
    elif mode == "ls":
        for key in args or ["/"]:
            _do_ls(cli, xs, key, 0)
    elif mode == "chmod":
        path, specs = args[0], args[1:]
        _do_chmod(cli, xs, tx, path, _parse_perms(cli, specs), cli.upto, cli.recurse)
    elif mode == "watch":
        return _watch(cli, xs, args)
    return 0


def _watch(cli: _Cli, xs: XsClient, keys: list[str]) -> int:
    for key in keys:
        try:
            if cli.depth >= 0:
                if not xs.get_features() & 4:  # XENSTORE_SERVER_FEATURE_WATCHDEPTH
                    raise XsError("EINVAL")
                xs.watch(key, key, cli.depth)
            else:
                xs.watch(key, key)
        except XsError:
            if cli.depth >= 0:
                raise cli.fail(f"Unable to add watch on {key} with depth {cli.depth}")
            raise cli.fail(f"Unable to add watch on {key}")
    count = 0
    while cli.nr_watches == -1 or count < cli.nr_watches:
        try:
            event = xs.read_watch()
        except XsError as err:
            raise cli.fail(str(err))
        if event is None:
            continue
        _write_stdout(f"{event[0]}\n")
        count += 1
    return 0


# -- entry points ---------------------------------------------------------------------
def _run(prog: str, mode: str, args: Sequence[str], incl_mode: bool, invoked: str = "") -> int:
    cli = _Cli(prog, mode, incl_mode, invoked or prog)
    try:
        # getopt_long's complaints name the vector's argv[0]: the mode word, or the program
        opts, rest = _getopt(cli, args, mode if incl_mode else cli.invoked)
        for ch, val in opts:
            allowed = {"h": MODES, "f": ("ls",), "p": ("read", "list", "ls"), "t": ("rm",), "u": ("chmod",),
                       "r": ("chmod",), "n": ("watch",), "R": ("read", "write"), "d": ("watch",), "s": MODES}[ch]
            if ch == "h":
                raise cli.usage(0)
            if mode not in allowed:
                raise cli.usage(1)
            if ch == "f":
                cli.max_width, cli.desired_width, cli.whole_path = _INT_MAX // 2, 0, True
            elif ch == "p":
                cli.prefix = True
            elif ch == "t":
                cli.tidy = True
            elif ch == "u":
                cli.upto = True
            elif ch == "r":
                cli.recurse = True
            elif ch == "n":
                cli.nr_watches = _atoi(val or "")
            elif ch == "R":
                cli.raw = True
            elif ch == "d":
                cli.depth = _atoi(val or "")
        if mode == "write" and len(rest) % 2 == 1:
            raise cli.usage(1)
        if mode != "ls" and not rest:
            raise cli.usage(1)
        transaction = {"read": len(rest) > 1, "write": len(rest) > 2, "ls": False, "watch": False}.get(mode, True)
        if mode == "ls" and not cli.whole_path:
            try:
                cli.max_width = os.get_terminal_size(sys.stdout.fileno()).columns - 2
            except (OSError, ValueError, AttributeError):
                pass  # not a terminal: keep 80
        try:
            xs = XsClient()
        except XsConnectError as err:      # err(1, "xs_open")
            from xenpy.rundir import board_died_message
            died = board_died_message()
            if died:                       # why xenstored is gone, after Xen's own line
                cli.warn(f"xs_open: {os.strerror(err.reason.errno or 0)}")
                raise cli.fail(died)
            raise cli.fail(f"xs_open: {os.strerror(err.reason.errno or 0)}")
        try:
            while True:
                tx = XBT_NULL
                if transaction:
                    try:
                        tx = xs.transaction_start()
                    except XsError:
                        raise cli.fail("couldn't start transaction")
                cli.output.clear()
                ret = _perform(cli, xs, tx, list(rest))
                if transaction:
                    try:
                        xs.transaction_end(tx, abort=ret != 0)
                    except XsError as err:
                        if ret == 0 and err.errno_name == "EAGAIN":
                            continue
                        raise cli.fail("couldn't end transaction")
                break
        finally:
            xs.close()
        if cli.output:
            _write_stdout(b"".join(cli.output))
        return ret
    except _Exit as ex:
        return ex.code
    except XsError as err:  # anything the C tool would not even have reported
        print(f"{prog}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`xenstore-ls | head`): stop quietly, like the C tool on SIGPIPE.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """`xenstore <mode> args...`; argv are the arguments after the program's name. Run as a
    program (argv None), the mode comes from the name it was run under, as in Xen."""
    if argv is None:
        return dispatch(sys.argv)
    return dispatch(["xenstore", *argv])


def dispatch(argv: Sequence[str]) -> int:
    """xenstore_client.c's main: argv[0] `xenstore-MODE` is MODE, any other name takes the
    mode from argv[1]. `python -m toolstack.xenstore_cli` counts as `xenstore`."""
    invoked = argv[0] if argv else "xenstore"
    if os.path.basename(invoked) in ("xenstore_cli.py", "__main__.py", "-c", ""):
        invoked = "xenstore"
    prog = os.path.basename(invoked)
    if prog == "xenstore-control":
        return control(invoked, list(argv[1:]))
    if prog.startswith("xenstore-"):
        return _dispatch(prog, prog[len("xenstore-"):], argv[1:], False, invoked)
    if len(argv) < 2:
        print(f"{prog}: Usage: {invoked} <mode> [-h] [...]", file=sys.stderr)
        return 1
    return _dispatch(prog, argv[1], argv[2:], True, invoked)


def _dispatch(prog: str, mode: str, args: Sequence[str], incl_mode: bool,
              invoked: str = "") -> int:
    if mode not in MODES:
        # errx(1, "unknown mode %s\n", m): errx adds its own newline after the message's
        print(f"{prog}: unknown mode {mode}\n", file=sys.stderr)
        return 1
    return _run(prog, mode, args, incl_mode, invoked)


def _entry(mode: str):
    def entry(argv: Sequence[str] | None = None) -> int:
        if argv is None:
            return dispatch(sys.argv)
        return dispatch([f"xenstore-{mode}", *argv])
    entry.__name__ = f"main_{mode}"
    entry.__doc__ = f"xenstore-{mode}"
    return entry


main_read = _entry("read")
main_write = _entry("write")
main_ls = _entry("ls")
main_list = _entry("list")
main_rm = _entry("rm")
main_exists = _entry("exists")
main_chmod = _entry("chmod")
main_watch = _entry("watch")


# -- xenstore-control (xenstore_control.c) ----------------------------------------------
def control(invoked: str, args: list[str]) -> int:
    """XS_CONTROL COMMAND ARGS...: a reply is printed, an unknown command gets xenstored's
    `help`. live-update is the client's own sequence of XS_CONTROL requests."""
    if not args:
        print(f"Usage:\n{invoked} <command> [<arg>...]", file=sys.stderr)
        return 2
    try:
        xs = XsClient()
    except XsConnectError:
        print("Failed to contact Xenstored.", file=sys.stderr)
        return 1
    try:
        if args[0] == "live-update":
            return _live_update(xs, args[1:])
        try:
            reply = xs.control(*args)
        except XsError as err:
            if err.errno_name == "EINVAL":
                try:
                    valid = xs.control("help")
                except XsError:
                    print("Error when executing command.", file=sys.stderr)
                else:
                    print(f"Command not supported. Valid commands are:\n{valid}",
                          file=sys.stderr)
            else:
                print(f"Error {err.errno} when trying to execute command.", file=sys.stderr)
            return 3
        if reply:
            _write_stdout(reply + "\n")
        return 0
    finally:
        xs.close()


def _live_update(xs: XsClient, args: list[str]) -> int:
    """live_update(): parse -c/-t/-F/-v BINARY, then the daemon's sequence (-f BINARY first).
    A xenstored built without live update answers EINVAL, reported as xenstore-control does."""
    binary = None
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-c", "-t", "-v"):
            i += 1
            if i == len(args):
                print({"-c": "Missing command line value", "-t": "Missing timeout value",
                       "-v": "Missing version value"}[a], file=sys.stderr)
                return 2
        elif a != "-F":
            binary = a
        i += 1
    if binary is None:
        print("Missing binary specification", file=sys.stderr)
        return 2
    try:
        reply = xs.control("live-update", "-f", binary)
    except XsError as err:
        reply = None
        why = err.strerror
    if reply != "OK":
        print(f"Setting update binary failed:\n{reply if reply is not None else why}",
              file=sys.stderr)
        return 3
    return 0


def main_control(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        return dispatch(sys.argv)
    return control("xenstore-control", list(argv))


if __name__ == "__main__":
    sys.exit(main())
