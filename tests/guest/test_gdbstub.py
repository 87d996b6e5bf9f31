"""gdb against a running guest: `xl gdbserver` and Debian's gdb-multiarch in batch mode.

The gntcmd guest (built with debug info; its ELF comes from the same build as the committed
image) is created paused, gdb attaches, breaks in the event-channel ISR when dom0 sends a
command through the granted page, looks around (bt, registers, shared_info, C variables), steps,
watches a variable the guest writes and one dom0 writes through the grant, and lets the guest run
to `Test result: SUCCESS`.
"""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import threading

import pytest

from tests.daemon import ROOT, TIMEOUT, wait_for, xl
from tests.guest.test_grant_protocol import CMD_ADD, CMD_PING, CMD_STOP, Dom0Side, xs_read
from tests.guest.test_irq_guests import domid_of, state_of

GDB = shutil.which("gdb-multiarch")
pytestmark = [
    pytest.mark.skipif(GDB is None, reason="gdb-multiarch is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("ziglang") is None,
                       reason="ziglang is not installed: cannot build the guest's ELF"),
]


@pytest.fixture(scope="module")
def gntcmd_elf(tmp_path_factory):
    out = tmp_path_factory.mktemp("elf")
    r = subprocess.run([sys.executable, "domains/build.py", "--elf", "--out", str(out), "gntcmd"],
                       cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    # The ELF gdb reads is the one the committed image was made from.
    assert (out / "gntcmd.zImage").read_bytes() == (ROOT / "domains/gntcmd/gntcmd.zImage").read_bytes()
    return out / "gntcmd.elf"


def start_gdbserver(env, domain: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "toolstack.xl", "gdbserver", domain], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.match(r"Listening on 127\.0\.0\.1:(\d+) for gdb \(domain \d+\)", line)
    assert m, line + proc.stderr.read()
    return proc, int(m.group(1))


SCRIPT = """\
set pagination off
set confirm off
directory {domains}
target remote 127.0.0.1:{port}
echo @@attached\\n
info threads
shell {python} -m toolstack.xl list gntcmd
break on_cmd
continue
echo @@isr\\n
bt
info registers
echo @@shared_info\\n
x/4wx &shared_page
echo @@vars\\n
p page.seq
p page.cmd
p notifications
shell {python} -m toolstack.xl list gntcmd
monitor evtchn
monitor grants
monitor vgic
echo @@step\\n
step
step
echo @@watch_own\\n
delete
watch answered
continue
echo @@watch_grant\\n
delete
watch page.seq
continue
echo @@run\\n
delete
continue
echo @@end\\n
"""


def sections(transcript: str) -> dict[str, str]:
    parts = re.split(r"^@@(\w+)$", transcript, flags=re.M)
    return {name: body for name, body in zip(parts[1::2], parts[2::2])}


def test_gdb_debugs_the_gntcmd_guest(board, gntcmd_elf, tmp_path):
    env = board
    console = subprocess.Popen([sys.executable, "-m", "toolstack.xl", "create", "-p", "-c",
                                "examples/gntcmd/gntcmd.cfg"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    gdb = gdbserver = None
    answers: list = []
    try:
        assert wait_for(lambda: domid_of("gntcmd", env) is not None, 30), "gntcmd never appeared"
        domid = domid_of("gntcmd", env)
        assert state_of("gntcmd", env)[2] == "p"            # created paused: nothing ran yet
        gdbserver, port = start_gdbserver(env, "gntcmd")
        script = tmp_path / "session.gdb"
        script.write_text(SCRIPT.format(domains=ROOT / "domains", port=port, python=sys.executable))

        def dom0() -> None:
            """Two commands through the granted page, then the end of the session."""
            if not wait_for(lambda: xs_read(env, f"/local/domain/{domid}/data/cmd-port"), 60):
                answers.append("the guest never published its port")
                return
            d0 = Dom0Side(env, domid)
            try:
                answers.append(d0.call(CMD_PING))
                answers.append(d0.call(CMD_ADD, 40, 2))
                answers.append(d0.call(CMD_STOP))
                d0.unmap()
                d0.evt.notify(d0.port)
            except AssertionError as e:
                answers.append(str(e))
            finally:
                d0.close()

        driver = threading.Thread(target=dom0, daemon=True)
        driver.start()
        gdb = subprocess.run([GDB, "-batch", "-nx", "-x", str(script), str(gntcmd_elf)],
                             cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=2 * TIMEOUT)
        driver.join(TIMEOUT)
        out, _ = console.communicate(timeout=TIMEOUT)
    finally:
        for p in (console, gdbserver):
            if p is not None:
                p.kill()
    transcript = gdb.stdout
    s = sections(transcript)
    assert set(s) >= {"attached", "isr", "shared_info", "vars", "step", "watch_own",
                      "watch_grant", "run", "end"}, transcript + gdb.stderr

    # Attached to the paused domain at its entry point; one thread per vCPU; xl list: paused.
    assert re.search(r"\* 1\s+Thread 1 \(vcpu0 \(paused\)\) _start \(\) at lib/head\.S", s["attached"])
    assert re.search(r"gntcmd\s+\d+\s+32\s+1\s+--p---", s["attached"]), s["attached"]

    # The breakpoint in the event-channel ISR, reached from the IRQ vector through the GIC code.
    assert re.search(r"Breakpoint 1, on_cmd \(.*\) at gntcmd/main\.c:65", s["attached"]), transcript
    frames = re.findall(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\w+) \(", s["isr"], flags=re.M)
    assert frames[0] == "on_cmd" and {"evtchn_upcall", "gic_handle_irq"} <= set(frames), s["isr"]
    assert frames[-1] == "main", s["isr"]
    regs = dict(re.findall(r"^(\w+)\s+(0x[0-9a-f]+)", s["isr"], flags=re.M))
    assert int(regs["cpsr"], 16) & 0x80                         # IRQs masked in the handler
    assert "on_cmd" in re.search(r"^pc .*$", s["isr"], flags=re.M).group(0)

    # shared_info as the guest maps it: evtchn_upcall_pending of vCPU 0 is set (byte 0).
    words = re.findall(r"0x[0-9a-f]{8}", s["shared_info"].split(":", 1)[1])
    assert len(words) == 4 and int(words[0], 16) & 0xFF in (0, 1)

    # C variables: the command dom0 wrote through the grant; the ISR has not counted it yet.
    assert re.search(r"^\$1 = 1$", s["vars"], flags=re.M)      # page.seq
    assert re.search(r"^\$2 = 1$", s["vars"], flags=re.M)      # page.cmd == CMD_PING
    assert re.search(r"^\$3 = 0$", s["vars"], flags=re.M)      # notifications
    # Stopped at a breakpoint, the domain is paused for everyone.
    assert re.search(r"gntcmd\s+\d+\s+32\s+1\s+--p---", s["vars"]), s["vars"]
    # monitor evtchn (gdb writes a monitor command's output to stderr in batch mode): the
    # command port dom0 bound, as pending and masked while the ISR runs.
    assert re.search(r"^port\s+\d+ interdomain\s+dom 0 port \d+\s+vcpu 0", gdb.stderr, flags=re.M), gdb.stderr

    # monitor grants: the command page (ref 2) is mapped by dom0; monitor vgic: PPI 31, the
    # event-channel upcall, is enabled and active while its handler runs.
    assert re.search(r"^ref     2 flags 0x001[89] to dom 0\s+frame 0x8[0-9a-f]{4} mapped by 0$",
                     gdb.stderr, flags=re.M), gdb.stderr
    vgic = re.search(r"^vcpu0: enabled ([\d,]+); pending ([-\d,]+); active ([-\d,]+)$",
                     gdb.stderr, flags=re.M)
    assert vgic and "31" in vgic.group(1).split(",") and "31" in vgic.group(3).split(","), gdb.stderr

    # step: from `notifications++` out of the ISR into the runtime's dispatcher (the closing
    # brace shares its instructions with the increment at -O2, so gdb may not stop on it).
    assert re.search(r"^\w+ \(.*\) at lib/\w+\.[ch]:\d+$", s["step"], flags=re.M), s["step"]

    # A hardware watchpoint on a variable the guest writes (a Unicorn memory hook) ...
    assert re.search(r"Hardware watchpoint \d+: answered\s+Old value = 0\s+New value = 1", s["watch_own"]), s["watch_own"]
    # ... and on the word dom0 writes through the grant: command 2.
    assert re.search(r"Hardware watchpoint \d+: page\.seq\s+Old value = 1\s+New value = 2", s["watch_grant"]), s["watch_grant"]
    assert "exited normally" in s["run"], transcript

    assert answers[:3] == [(0, 0, b""), (0, 42, b""), (0, 0, b"")], answers
    assert out.splitlines()[-1] == "Test result: SUCCESS", out
    assert "gntcmd: #2 ADD(40, 2) -> status 0, result 42" in out
