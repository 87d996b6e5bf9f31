"""A dom0 service of the board that raises (a bug, a domain dying under it) says so once, with
where, and goes on serving: here xenconsoled, fed a failure in the middle of moving a guest's
console bytes, still serves the next guest's console."""
from __future__ import annotations

import re
import struct
import time

from tests.cli.test_pv_console import PARAM, program
from tests.guest.a32 import zimage


def pv_console_kernel(tmp_path) -> str:
    img = zimage(program())
    img += b"\0" * (PARAM - 0x80008000 - len(img))
    img += struct.pack("<HHIQ", 0x7FF0, 0, 18, 0) + b"\0" * 16 + struct.pack("<I", 0)
    end = 0x80008000 + len(img)
    kernel = tmp_path / "pvcons.zImage"
    kernel.write_bytes(img[:0x2C] + struct.pack("<I", end) + img[0x30:])
    return str(kernel)


def test_xenconsoled_outlives_a_failure_and_says_where_once(tmp_path, monkeypatch):
    monkeypatch.setenv("XENPY_RUNDIR", str(tmp_path / "run"))
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    from toolstack.domcfg import load_domain_config
    from toolstack.libxl import Libxl
    from toolstack.xc import LocalTransport, Xc
    from toolstack.xs import XsClient
    from xenpy.board.board import Board
    from xenpy.common.hypervisor import HypervisorConfig
    lines: list[str] = []
    board = Board(HypervisorConfig(nr_pcpus=2), echo=lines.append)
    board.start()
    real_drain, calls = board.consoled._drain, []

    def drain(c):
        calls.append(c.domid)
        if len(calls) <= 2:        # the attach's first drain and the guest's notification
            raise RuntimeError("a bug in the backend")
        real_drain(c)
    board.consoled._drain = drain
    lx = Libxl(Xc(LocalTransport(board.privcmd)), XsClient())
    try:
        cfg = tmp_path / "pvcons.cfg"
        cfg.write_text(f'name = "pvcons"\nkernel = "{pv_console_kernel(tmp_path)}"\n'
                       'memory = 16\non_poweroff = "preserve"\n')
        config, _ = load_domain_config(str(cfg))
        first = lx.create(config)
        deadline = time.monotonic() + 30
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        lx.destroy(first)
        second = lx.create(config)
        deadline = time.monotonic() + 30
        while b"pv console" not in bytes(board.hv.domains[second].console.data) and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        assert b"pv console" in bytes(board.hv.domains[second].console.data)
        raised = [ln for ln in lines if "xenconsoled:" in ln and "raised" in ln]
        assert len(raised) == 1, raised
        # Attaching drains what was written before; then notifications drain: either may be
        # the turn that failed, and the same failure is logged once wherever it comes from.
        assert re.search(r"xenconsoled: (attaching consoles|moving console bytes) raised "
                         r"RuntimeError: a bug in the backend \(at test_dom0_service_faults\.py:"
                         r"\d+ in drain\)", raised[0]), raised[0]
        assert raised[0].endswith("the service carries on (logged once)")
    finally:
        lx.xs.close()
        board.stop()
