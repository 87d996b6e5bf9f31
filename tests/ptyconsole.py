"""Driving an interactive console through a pseudo-terminal, as a person at a terminal would.

`xl create -c` runs with its standard input and output on the slave side of a pty (so xl sees a
terminal: raw mode, typed bytes go to the guest); the test reads and types on the master side.
Every wait has a timeout whose message ends with the console so far.
"""
from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time
from collections.abc import Sequence


class ConsoleTimeout(AssertionError):
    """A wait ran out; the message carries the console's tail."""


class ConsoleClosed(AssertionError):
    """The program on the console exited before what was waited for appeared."""


class PtyConsole:
    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None, tail: int = 6000) -> None:
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave,
                                     env=env, cwd=cwd, start_new_session=True, close_fds=True)
        os.close(slave)
        self.fd = master
        self.raw = bytearray()        # everything read, \r removed
        self.stamps: list[tuple[float, int]] = []   # (monotonic time, len(raw) after the read)
        self.pos = 0                  # where the next expect() starts looking
        self.started = time.monotonic()
        self.closed = False
        self._tail = tail
        self.fail: re.Pattern[bytes] | None = None   # see expect()

    # -- reading -------------------------------------------------------------------------------

    def _read(self, timeout: float) -> bool:
        """Read what is there within `timeout`; False once the other side has closed."""
        if self.closed:
            return False
        r, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not r:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:       # EIO: every holder of the slave side has closed it
            data = b""
        if not data:
            self.closed = True
            return False
        self.raw += data.replace(b"\r", b"")
        self.stamps.append((time.monotonic(), len(self.raw)))
        return True

    def text(self, start: int = 0) -> str:
        return self.raw[start:].decode("utf-8", "replace")

    def tail(self) -> str:
        t = self.text()
        return t if len(t) <= self._tail else "..." + t[-self._tail:]

    def expect(self, pattern: str | re.Pattern[bytes] | bytes, timeout: float,
               what: str | None = None) -> re.Match[bytes]:
        """Wait for `pattern` after the last match; move past it and return the match.

        If `self.fail` (a pattern) shows first, the wait ends at once: no use waiting for a
        prompt after a kernel panic."""
        rx = pattern if isinstance(pattern, re.Pattern) else re.compile(
            re.escape(pattern.encode() if isinstance(pattern, str) else pattern))
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.raw, self.pos)
            if m:
                self.pos = m.end()
                return m
            bad = self.fail.search(self.raw, self.pos) if self.fail is not None else None
            if bad:
                self._read(1.0)       # the lines after it say why
                raise ConsoleTimeout(f"{bad.group().decode(errors='replace')!r} on the console "
                                     f"while waiting for {what or repr(rx.pattern)}; the console "
                                     f"so far:\n{self.tail()}")
            left = deadline - time.monotonic()
            desc = what or repr(rx.pattern)
            if left <= 0:
                raise ConsoleTimeout(f"no {desc} on the console within {timeout:.0f} s; "
                                     f"the console so far:\n{self.tail()}")
            if not self._read(min(left, 0.5)):
                m = rx.search(self.raw, self.pos)
                if m:
                    self.pos = m.end()
                    return m
                raise ConsoleClosed(f"the console closed (exit status {self.proc.poll()}) "
                                    f"before {desc}; the console so far:\n{self.tail()}")

    def time_of(self, offset: int) -> float:
        """When the byte at `offset` arrived, in seconds since the console started."""
        for t, end in self.stamps:
            if end > offset:
                return t - self.started
        return time.monotonic() - self.started

    # -- typing ---------------------------------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        os.write(self.fd, data.encode() if isinstance(data, str) else data)

    def wait_closed(self, timeout: float, what: str = "the console to close") -> int:
        """Wait for the program to exit, reading its output; its exit status."""
        deadline = time.monotonic() + timeout
        while self._read(min(0.5, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                raise ConsoleTimeout(f"no end of {what} within {timeout:.0f} s; the console "
                                     f"so far:\n{self.tail()}")
        try:
            return self.proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise ConsoleTimeout(f"the console closed but its program did not exit within "
                                 f"{timeout:.0f} s; the console so far:\n{self.tail()}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        if not self.closed:
            self.closed = True
        try:
            os.close(self.fd)
        except OSError:
            pass


class Shell:
    """A shell on a PtyConsole: run a command, get its output and exit status.

    Commands are typed only once the prompt is back, as a person does. Typed ahead, a line
    reaches the tty while it is still in cooked mode (the previous command's settings): the
    kernel echoes it, and the shell's line editor, which switches to raw mode before it prints
    its prompt, echoes it again; on two vCPUs the two echoes and the command's output can come
    in any order. busybox's line editor prints the prompt after switching."""

    END = re.compile(rb"@@rc=(\d+)@@\n")

    def __init__(self, con: PtyConsole, prompt: re.Pattern[bytes]) -> None:
        """`con` has just shown `prompt`."""
        self.con = con
        self.prompt = prompt

    def run(self, cmd: str, timeout: float) -> tuple[int, str]:
        """Type `cmd`, wait for it to finish and for the next prompt; (status, what it printed
        after its echo).

        The end marker is printed by `echo @@rc=$?@@`, which the echoed command line does not
        match (it shows `$?`, not a number)."""
        self.con.send(f"{cmd}; echo @@rc=$?@@\r")
        echo = self.con.expect(f"{cmd}; echo @@rc=$?@@\n", timeout, f"the echo of {cmd!r}")
        m = self.con.expect(self.END, timeout, f"the end of {cmd!r}")
        self.con.expect(self.prompt, timeout, f"the prompt after {cmd!r}")
        return int(m.group(1)), self.con.raw[echo.end():m.start()].decode("utf-8", "replace")
