"""The random-hypercall guest (tests/guest/test_hostile.py) run to a hypercall count beside the
ERIKA RTOS on the Cubieboard2, as a partitioned board is used: the RTOS alone on pCPU 1, the
hostile domains on pCPU 0. A hostile domain that ends (it powered off, or wrecked itself through
a wild pointer) is replaced by a new one with another seed until the count is reached. Shared by
tests/guest/test_hostile.py (10^5 calls) and bench/hostile.py (10^6)."""
from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SD = ROOT / "examples/cubieboard2/sd"
ERIKA_CFG = ROOT / "examples/erika/erika.cfg"
JITTER = re.compile(r"alarm jitter: min (\d+) us, max (\d+) us, avg (\d+) us over (\d+) expiries")
BATCH = 20_000          # hypercalls one hostile domain is asked to make


def soak(total_calls: int, timeout: float, beats: int, period_ms: int = 10,
         hostile: int = 2) -> dict:
    """Hostile domains until `total_calls` hypercalls are made and the RTOS (`beats` heartbeats
    of `period_ms`) has printed its summary; its alarm lateness is the kernel's own figure."""
    from tests.guest.a32 import boot
    from tests.guest.test_hostile import hostile_program
    from toolstack.domcfg import load_domain_config
    from toolstack.libxl import Libxl
    from toolstack.xc import LocalTransport, Xc
    from toolstack.xs import XsClient
    from xenpy.board.board import Board
    from xenpy.board.cubieboard2 import Cubieboard2

    saved = os.environ.get("XENPY_RUNDIR")
    os.environ["XENPY_RUNDIR"] = tempfile.mkdtemp(prefix="xenpy-hostile-")
    sd_board = Cubieboard2()
    power = sd_board.power_on(SD)
    board = Board(power.config)
    sd_board.attach(board.hv.log)
    board.start()
    hv = board.hv
    lx = Libxl(Xc(LocalTransport(board.privcmd)), XsClient())
    try:
        cfg, _ = load_domain_config(str(ERIKA_CFG), [
            f'extra="beats={beats} period_ms={period_ms}"', 'cpus="1"'])
        rtos = hv.domains[lx.create(cfg)]
        calls, domains, crashed, seed = 0, 0, 0, 1
        t0 = time.monotonic()
        live: list = []

        def reported() -> bool:
            # Its verdict is printed after the jitter summary: wait for both.
            text = bytes(rtos.console.data).decode("latin-1")
            return JITTER.search(text) is not None and "Test result:" in text

        while calls < total_calls or not reported():
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"{calls} hypercalls in {timeout:.0f} s ({total_calls} "
                                     f"asked), RTOS reported: {reported()}")
            while len(live) < hostile:
                seed = (seed * 1103515245 + 12345) & 0xFFFFFFFF
                d = boot(hv, hostile_program(BATCH, seed), mem_mb=16)
                for v in d.vcpus:
                    v.hard_affinity = frozenset({0})
                live.append(d)
                domains += 1
            time.sleep(0.05)
            for d in list(live):
                if d.is_shutdown:
                    live.remove(d)
                    crashed += d.shutdown_code != 0
                    calls += d.vcpus[0].arch.hypercalls
                    hv.domain_destroy(d)
            if rtos.is_shutdown:
                raise AssertionError("the RTOS went down: " + bytes(rtos.console.data)[-300:]
                                     .decode("latin-1"))
        for d in live:
            hv.domain_pause(d)
            calls += d.vcpus[0].arch.hypercalls
        seconds = time.monotonic() - t0
        text = bytes(rtos.console.data).decode("latin-1")
        m = JITTER.search(text)
        return {"hypercalls": calls, "hostile_domains": domains, "hostile_crashed": crashed,
                "seconds": round(seconds, 1), "hypercalls_per_s": round(calls / seconds),
                "rtos_beats": beats, "rtos_period_ms": period_ms,
                "rtos_result": next((ln for ln in text.splitlines()
                                     if ln.startswith("Test result:")), ""),
                "rtos_late_min_us": int(m[1]), "rtos_late_max_us": int(m[2]),
                "rtos_late_avg_us": int(m[3]), "rtos_expiries": int(m[4]),
                "rtos_running": not rtos.is_shutdown,
                "board_errors": [ln for ln in hv.dmesg
                                 if "internal error" in ln or " raised " in ln]}
    finally:
        lx.xs.close()
        board.stop()
        if saved is None:
            os.environ.pop("XENPY_RUNDIR", None)
        else:
            os.environ["XENPY_RUNDIR"] = saved
