"""The gdb stub at the protocol level: a remote-serial-protocol client of our own against a
running guest, while a timer guest keeps its deadlines on the same board."""
from __future__ import annotations

import re
import socket
import subprocess
import sys

from tests.daemon import ROOT, TIMEOUT, rows, wait_for, xl
from tests.guest.test_gdbstub import start_gdbserver

TIMER = "examples/timer/timer.cfg"


class Rsp:
    """Just enough of gdb's side of the protocol: packets with checksums, acks, Ctrl-C."""

    def __init__(self, port: int) -> None:
        self.s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""

    def send(self, body: str) -> None:
        self.send_raw(body.encode("latin-1"))

    def send_raw(self, data: bytes) -> None:
        self.s.sendall(b"$" + data + b"#" + f"{sum(data) & 0xFF:02x}".encode())

    def recv(self) -> str:
        while True:
            start = self.buf.find(b"$")
            end = self.buf.find(b"#", start)
            if start >= 0 and end >= 0 and len(self.buf) >= end + 3:
                body, csum = self.buf[start + 1:end], self.buf[end + 1:end + 3]
                self.buf = self.buf[end + 3:]
                assert int(csum, 16) == sum(body) & 0xFF, (body, csum)
                self.s.sendall(b"+")
                return body.decode("latin-1")
            chunk = self.s.recv(65536)
            assert chunk, "the stub closed the connection"
            self.buf += chunk

    def ask(self, body: str) -> str:
        self.send(body)
        return self.recv()

    def close(self) -> None:
        self.s.close()


def state(env, name: str) -> str | None:
    row = rows(xl("list", env=env).stdout).get(name)
    return row[3] if row else None


def test_stop_step_interrupt_detach_and_kill(board):
    env = board
    # A pong waiting for a ping that never comes: it polls on its timer and minds no pause.
    r = xl("create", "examples/pingpong/pong.cfg", 'name="dbg"',
           'extra="role=pong timeout_ms=600000"', env=env)
    assert r.returncode == 0, r.stderr
    stub, port = start_gdbserver(env, "dbg")
    gdb = Rsp(port)
    try:
        assert "qXfer:features:read+" in gdb.ask("qSupported:multiprocess+;xmlRegisters=arm")
        xml = gdb.ask("qXfer:features:read:target.xml:0,3fff")
        assert xml.startswith("l") and 'name="org.gnu.gdb.arm.vfp"' in xml and '<reg name="d31"' in xml
        stop = gdb.ask("?")
        assert re.fullmatch(r"T05thread:1;", stop), stop
        assert gdb.ask("qfThreadInfo") == "m1" and gdb.ask("qsThreadInfo") == "l"
        assert gdb.ask("qC") == "QC1"
        regs = gdb.ask("g")
        assert len(regs) == 2 * (17 * 4 + 32 * 8 + 4)          # r0-pc, cpsr, d0-d31, fpscr
        pc = int.from_bytes(bytes.fromhex(regs[15 * 8:16 * 8]), "little")
        assert gdb.ask("pf") == regs[15 * 8:16 * 8]
        assert 0x80008000 <= pc < 0x80400000
        assert gdb.ask("m0,4") == "E14"                         # nothing mapped at VA 0
        code = gdb.ask(f"m{pc:x},4")
        assert re.fullmatch(r"[0-9a-f]{8}", code)
        assert state(env, "dbg")[2] == "p"                      # stopped for gdb: paused
        # Memory writes (M hex, X binary with gdb's escapes) reach the guest's RAM through
        # its page tables: below its stack pointer, put back afterwards.
        sp = int.from_bytes(bytes.fromhex(gdb.ask("pd")), "little")
        spot = sp - 64
        saved = gdb.ask(f"m{spot:x},4")
        assert gdb.ask(f"M{spot:x},4:11223344") == "OK" and gdb.ask(f"m{spot:x},4") == "11223344"
        data = bytes.fromhex("7d23232a")                    # }, #, #, *: all escaped by gdb
        escaped = b"".join(bytes((0x7D, b ^ 0x20)) if b in b"}#$*" else bytes((b,)) for b in data)
        gdb.send_raw(b"X" + f"{spot:x},4:".encode() + escaped)
        assert gdb.recv() == "OK"
        assert gdb.ask(f"m{spot:x},4") == "7d23232a"
        assert gdb.ask(f"M{spot:x},4:{saved}") == "OK"

        # Another domain keeps every tick on time while this one is stopped.
        other = xl("create", "-c", TIMER, 'name="other"', 'extra="ticks=300 period_us=1000"',
                   env=env)
        assert other.stdout.splitlines()[-1] == "Test result: SUCCESS", other.stdout
        assert state(env, "dbg")[2] == "p"

        # continue, then Ctrl-C: SIGINT with the thread.
        gdb.send("vCont;c")
        assert wait_for(lambda: state(env, "dbg")[2] != "p", 30), "the domain never resumed"
        gdb.s.sendall(b"\x03")
        stop = gdb.recv()
        assert re.fullmatch(r"T02thread:1;", stop), stop
        assert state(env, "dbg")[2] == "p"

        # A single step runs one instruction of this vCPU; the domain stays stopped.
        pc_word = lambda: int.from_bytes(bytes.fromhex(gdb.ask("pf")), "little")  # noqa: E731
        before = pc_word()
        step = gdb.ask("vCont;s:1;c")
        assert re.fullmatch(r"T05thread:1;", step), step
        assert pc_word() != before
        assert state(env, "dbg")[2] == "p"

        # A hardware breakpoint where the guest was (its wait loop comes back there): continue
        # stops on it, not executed. pong waits with IRQs masked and polls its GIC after WFI.
        assert gdb.ask(f"Z1,{before:x},4") == "OK"
        stop = gdb.ask("c")
        assert re.fullmatch(r"T05thread:1;", stop), stop
        assert pc_word() == before
        assert gdb.ask(f"z1,{before:x},4") == "OK"
        cp15 = bytes.fromhex(gdb.ask("qRcmd," + b"cp15".hex())).decode()
        assert re.search(r"^VBAR\s+0x8[0-9a-f]{7}$", cp15, flags=re.M), cp15
        assert gdb.ask("Z9,0,0") == ""                          # not a kind gdb has

        assert gdb.ask("D") == "OK"
        out, _ = stub.communicate(timeout=TIMEOUT)
        assert "gdb session ended" in out
        assert wait_for(lambda: state(env, "dbg")[2] != "p", 30), "detach left the domain paused"
    finally:
        gdb.close()
        stub.kill()

    # A second session kills the domain.
    stub, port = start_gdbserver(env, "dbg")
    gdb = Rsp(port)
    try:
        assert gdb.ask("?").startswith("T05")
        gdb.send("k")
        assert wait_for(lambda: state(env, "dbg") is None, 30), "k left the domain alive"
        out, _ = stub.communicate(timeout=TIMEOUT)
        assert "gdb session ended" in out
    finally:
        gdb.close()
        stub.kill()


def test_gdbserver_errors(board):
    env = board
    r = xl("gdbserver", "nosuch", env=env)
    assert r.returncode == 1 and r.stderr.strip() == "nosuch is an invalid domain identifier (rc=-6)", r.stderr
    r = xl("gdbserver", "Domain-0", env=env)
    assert r.returncode == 1
    assert r.stderr.strip() == ("xl gdbserver: domain 0: it runs no guest code (Domain-0, or no "
                                "memory yet)"), r.stderr
    r = xl("gdbserver", "--listen", "no.such.host.invalid:1234", "Domain-0", env=env)
    assert r.returncode == 1 and "it runs no guest code" in r.stderr
    r = xl("gdbserver", "--listen", "nohost", "x", env=env)
    assert r.returncode == 1 and "is not HOST:PORT" in r.stderr
    r = subprocess.run([sys.executable, "-m", "toolstack.xl", "gdbserver", "--help"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0 and "target remote" in r.stdout and "--listen HOST:PORT" in r.stdout


def test_each_vcpu_is_a_thread(board):
    """A two-vCPU guest, paused before it ran: two threads, each with its own registers; the
    secondary vCPU is offline until the guest starts it with PSCI CPU_ON."""
    env = board
    r = xl("create", "-p", "examples/hello/hello.cfg", 'name="two"', 'on_poweroff="preserve"',
           env=env)
    assert r.returncode == 0, r.stderr
    stub, port = start_gdbserver(env, "two")
    gdb = Rsp(port)
    try:
        assert gdb.ask("qfThreadInfo") == "m1,2"
        assert bytes.fromhex(gdb.ask("qThreadExtraInfo,1")).decode() == "vcpu0 (paused)"
        assert bytes.fromhex(gdb.ask("qThreadExtraInfo,2")).decode() == "vcpu1 (offline)"
        assert gdb.ask("T2") == "OK" and gdb.ask("T3") == "E02"
        assert gdb.ask("Hg1") == "OK"
        pc0 = int.from_bytes(bytes.fromhex(gdb.ask("pf")), "little")
        assert pc0 == 0x80008000                                  # the kernel's entry
        assert gdb.ask("Hg2") == "OK" and gdb.ask("qC") == "QC2"
        assert int.from_bytes(bytes.fromhex(gdb.ask("pf")), "little") == 0
        assert gdb.ask("Hg3") == "E02"
        # Registers written through gdb are the vCPU's: r0 of vCPU 1, not of vCPU 0.
        assert gdb.ask("P0=78563412") == "OK"
        assert gdb.ask("p0") == "78563412"
        assert gdb.ask("Hg1") == "OK" and gdb.ask("p0") == "00000000"
        # Run to the end: the guest starts vCPU 1, prints SUCCESS and shuts down.
        assert gdb.ask("c") == "W00"
    finally:
        gdb.close()
        stub.kill()
    out = xl("console", "two", env=env).stdout
    xl("destroy", "two", env=env)
    assert "Test result: SUCCESS" in out, out
