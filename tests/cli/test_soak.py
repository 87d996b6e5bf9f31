"""Item 1 of "a board that survives its users": created-and-destroyed domains give back what they
took. Each cycle leaked ~9 MB of board RSS and a grant-table memfd (a destroyed domain's table
stayed reachable from the machine-frame map, xenconsoled kept grant mappings of domains that died
while it attached, and the vCPU/Unicorn reference cycles waited for the collector)."""
from __future__ import annotations

import pytest

from tests.daemon import booted, env_for
from tests.soak import Cycler, board_pid, usage

WARMUP, CYCLES = 20, 200


@pytest.fixture(scope="module")
def soak_board(tmp_path_factory):
    yield from booted(env_for(tmp_path_factory), "--pcpus", "2")


def test_200_create_destroy_cycles_give_back_memory_descriptors_and_threads(soak_board,
                                                                           monkeypatch):
    monkeypatch.setenv("XENPY_RUNDIR", soak_board["XENPY_RUNDIR"])
    pid = board_pid(soak_board["XENPY_RUNDIR"])
    cycler = Cycler()
    try:
        # The first domains load what the board loads once (libxl in the domain watcher,
        # Unicorn's first instance) and fill bounded logs; measure from there.
        cycler.run(WARMUP)
        before = usage(pid)
        cycler.run(CYCLES)
        after = usage(pid)
    finally:
        cycler.close()
    assert after.fds <= before.fds + 2, f"descriptors {before.fds} -> {after.fds}"
    assert after.threads <= before.threads + 1, f"threads {before.threads} -> {after.threads}"
    assert after.rss_kb <= before.rss_kb * 1.10, \
        f"board RSS {before.rss_kb} kB -> {after.rss_kb} kB over {CYCLES} domains"
