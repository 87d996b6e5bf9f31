"""Debian's Linux kernel (linux-image-*-armmp-lpae) as a domU, to a busybox shell on hvc0.

The kernel and the initramfs come from examples/linux/fetch.py's cache: $XENPY_LINUX_CACHE (which
.ci/run sets after fetching), else the default cache directory. Without either the tests skip,
saying how to fetch; with $XENPY_LINUX_CACHE set, a cache without the files is a failure.

The console is driven as a person does: `xl create -c` on a pseudo-terminal, commands typed at
the shell, the domain powered off from inside.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

from tests.daemon import ROOT, booted, env_for, rows, wait_for, xl
from tests.ptyconsole import PtyConsole, Shell

sys.path.insert(0, str(ROOT / "examples" / "linux"))
from fetch import MARKER, cache_dir  # noqa: E402

BOOT_TIMEOUT = 240      # create to the shell, on a loaded machine (about 30 s on an idle one)
CMD_TIMEOUT = 60
PROMPT = re.compile(rb"xenpy:[^\n]*# ")
# Nothing good comes after these: fail at once, with the console.
FATAL = re.compile(rb"Kernel panic - not syncing[^\n]*|Internal error: Oops[^\n]*|"
                   rb"Unable to handle kernel [^\n]*|BUG: [^\n]*")



def linux_cache() -> Path:
    explicit = os.environ.get("XENPY_LINUX_CACHE")
    d = cache_dir()
    missing = [f for f in ("vmlinuz", "initrd.cpio") if not (d / f).exists()]
    if missing and not explicit:
        pytest.skip(f"no Debian kernel in {d} (run: python examples/linux/fetch.py; "
                    f"or set XENPY_LINUX_CACHE)")
    assert not missing, f"XENPY_LINUX_CACHE={explicit} has no {', '.join(missing)}: " \
                        f"run python examples/linux/fetch.py"
    return d


@pytest.fixture(scope="module")
def cache() -> Path:
    return linux_cache()


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    yield from booted(env_for(tmp_path_factory), "--pcpus", "2")


def boot_to_shell(board, cache: Path, cfg: str, name: str) -> tuple[PtyConsole, Shell]:
    con = PtyConsole([sys.executable, "-m", "toolstack.xl", "create", "-c",
                      str(ROOT / "examples" / "linux" / cfg), 'on_poweroff="preserve"'],
                     env={**board, "PYTHONPATH": str(ROOT)}, cwd=cache)
    con.fail = FATAL
    deadline = time.monotonic() + BOOT_TIMEOUT
    try:
        for pattern, what in (("Booting Linux", "the kernel's first line"),
                              (MARKER, "the initramfs's /init marker"),
                              (PROMPT, "the shell's prompt")):
            con.expect(pattern, deadline - time.monotonic(), what)
    except AssertionError:
        con.close()
        xl("destroy", name, env=board)
        raise
    return con, Shell(con, PROMPT)


def power_off(board, con: PtyConsole, name: str) -> None:
    """`poweroff` at the shell: busybox init stops, the kernel asks Xen to power the domain off
    (SCHEDOP_shutdown), xl's console ends, and the domain is shut down, not crashed."""
    con.send("poweroff\r")
    con.expect("reboot: Power down", CMD_TIMEOUT * 2, "the kernel's power-down line")
    assert con.wait_closed(CMD_TIMEOUT, "xl's console after the power-off") == 0
    state = rows(xl("list", env=board).stdout)[name][3]
    assert state == "---s--", f"{name} is {state} after poweroff, not shut down (---s--)"
    xl("destroy", name, env=board)
    assert wait_for(lambda: name not in rows(xl("list", env=board).stdout), CMD_TIMEOUT)


def interrupt_count(table: str, hwirq: int, name: str) -> int:
    """The total count on a /proc/interrupts line such as `18: 1234 GIC-0 27 Level arch_timer`."""
    for line in table.splitlines():
        fields = line.split()
        if fields and fields[-1] == name and str(hwirq) in fields:
            counts = fields[1:fields.index(str(hwirq)) - 1]
            return sum(int(c) for c in counts if c.isdigit())
    raise AssertionError(f"no {name} (hwirq {hwirq}) line in /proc/interrupts:\n{table}")


def test_shell_on_hvc0(board, cache):
    con, sh = boot_to_shell(board, cache, "linux.cfg", "linux")
    try:
        rc, out = sh.run("uname -a", CMD_TIMEOUT)
        assert rc == 0 and re.search(r"^Linux xenpy 6\.\d+\.\d+-\S*armmp-lpae .* armv7l", out,
                                     re.M), out
        rc, before = sh.run("cat /proc/interrupts", CMD_TIMEOUT)
        assert rc == 0, before
        ticks = interrupt_count(before, 27, "arch_timer")     # the virtual timer PPI
        events = interrupt_count(before, 31, "events")        # the event-channel upcall PPI
        assert ticks > 0 and events > 0, before
        assert "xen-dyn" in before and "hvc_console" in before, before  # its event channel
        rc, again = sh.run("sleep 1; cat /proc/interrupts", CMD_TIMEOUT)
        assert interrupt_count(again, 27, "arch_timer") > ticks, again   # still ticking
        # At the idle shell the kernel waits in WFI: the domain blocks and uses next to no
        # host CPU (when the WFI went unseen it stayed r----- and used a core).
        assert wait_for(lambda: rows(xl("list", env=board).stdout)["linux"][3] == "-b----",
                        CMD_TIMEOUT), f"linux never blocked at the idle shell:\n{con.tail()}"
        cpu_before = float(rows(xl("list", env=board).stdout)["linux"][4])
        time.sleep(3)
        used = float(rows(xl("list", env=board).stdout)["linux"][4]) - cpu_before
        assert used < 1.0, f"the idle kernel used {used:.1f} s of CPU in 3 s"
        # xenbus is up: the bus exists, and the guest reads XenStore (its own /vm path).
        rc, devs = sh.run("ls /sys/bus/xen/devices", CMD_TIMEOUT)
        assert rc == 0, devs
        rc, uuid = sh.run("cat /sys/hypervisor/type /sys/hypervisor/uuid", CMD_TIMEOUT)
        assert rc == 0 and re.match(r"xen\n[0-9a-f]{8}-[0-9a-f]{4}-", uuid), uuid
        want = xl("list", "-l", "linux", env=board).stdout
        assert uuid.split()[1] in want
        power_off(board, con, "linux")
    finally:
        con.close()


def test_second_vcpu_comes_up(board, cache):
    con, sh = boot_to_shell(board, cache, "linux-smp.cfg", "linux-smp")
    try:
        up = re.search(rb"\[ *(\d+\.\d+)\] smp: Brought up 1 node, 2 CPUs", con.raw)
        asked = re.search(rb"\[ *(\d+\.\d+)\] smp: Bringing up secondary CPUs", con.raw)
        assert up and asked, con.tail()
        # The kernel's own clock: CPU1 comes up in a fraction of a second. It took 14 s when
        # the boot CPU, in credit debt from booting alone, waited behind its sibling.
        took = float(up[1]) - float(asked[1])
        assert took < 5, f"the second CPU took {took:.1f} s of guest time to come up"
        for cmd in ("nproc", "grep -c ^processor /proc/cpuinfo"):
            rc, out = sh.run(cmd, CMD_TIMEOUT)
            assert rc == 0 and out.strip() == "2", f"{cmd}: status {rc}, {out!r}\n{con.tail()}"
        power_off(board, con, "linux-smp")
    finally:
        con.close()
