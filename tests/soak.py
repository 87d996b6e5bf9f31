"""Create/destroy cycles against a board daemon, with the board's RSS, descriptors and threads
read from /proc: shared by the soak test (tests/cli/test_soak.py) and bench/soak.py."""
from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELLO = ROOT / "examples/hello/hello.cfg"


@dataclass(frozen=True)
class Usage:
    rss_kb: int
    fds: int
    threads: int


def usage(pid: int) -> Usage:
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return Usage(rss_kb=int(fields["VmRSS"].split()[0]), fds=len(os.listdir(f"/proc/{pid}/fd")),
                 threads=int(fields["Threads"]))


def cpu_seconds(pid: int) -> float:
    """Host CPU time (user + system) of the whole process, all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def board_pid(rundir: str | Path) -> int:
    return int((Path(rundir) / "board.pid").read_text())


class Cycler:
    """Creates the hello guest (two vCPUs that print, start each other and power off), lets it
    run until it is shut down (kept by on_poweroff=preserve), then destroys it: the whole life
    of a domain, through libxl over the board's sockets as xl does it."""

    def __init__(self, memory_mb: int = 16) -> None:
        from toolstack.domcfg import load_domain_config
        from toolstack.libxl import Libxl
        from toolstack.xc import Xc
        from toolstack.xs import XsClient
        self.lx = Libxl(Xc(), XsClient())
        self.cfg, _ = load_domain_config(str(HELLO), [f"memory={memory_mb}", "name=\"soak\"",
                                                      "on_poweroff=\"preserve\""])

    def cycle(self, timeout: float = 30.0) -> None:
        from toolstack.xc import XcError
        domid = self.lx.create(self.cfg)
        deadline = time.monotonic() + timeout
        while True:
            info = self.lx.xc.domain_getinfo(domid)
            if info is None or info["domain"] != domid or info["flags"] & (1 << 2):
                break                        # gone, or shut down (XEN_DOMINF_shutdown)
            if time.monotonic() > deadline:
                raise AssertionError(f"domain {domid} still running after {timeout:.0f} s")
            time.sleep(0.002)
        try:
            self.lx.destroy(domid)
        except XcError as e:
            if e.errno != errno.ESRCH:
                raise

    def run(self, n: int, each: Callable[[int], None] | None = None) -> None:
        for i in range(n):
            self.cycle()
            if each is not None:
                each(i)

    def close(self) -> None:
        self.lx.xs.close()
        self.lx.xc.close()
