"""What xl shows about a domain's resources: pages against max_pages (`xl debug-keys q`), and
Domain-0's CPU time, which is its own and not that of domains destroyed before."""
from __future__ import annotations

import re
import time

from tests.daemon import dmesg, rows, wait_for, xl
from tests.guest.a32 import B_SELF, zimage


def spinner(tmp_path, name: str) -> str:
    kernel = tmp_path / f"{name}.zImage"
    kernel.write_bytes(zimage([B_SELF]))
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(f'name = "{name}"\nkernel = "{kernel}"\nmemory = 16\n')
    return str(cfg)


def test_debug_keys_q_pages_within_max_pages(board, tmp_path):
    assert xl("create", spinner(tmp_path, "pages"), env=board).returncode == 0
    try:
        domid = rows(xl("list", env=board).stdout)["pages"][0]
        assert xl("debug-keys", "q", env=board).returncode == 0
        lines = dmesg(board)
        at = max(i for i, l in enumerate(lines) if l.endswith(f"General information for domain {domid}:"))
        m = re.search(r"nr_pages=(\d+) xenheap_pages=0 dirty_cpus=\{\} max_pages=(\d+)", lines[at + 2])
        assert m, lines[at:at + 4]
        nr, max_pages = int(m[1]), int(m[2])
        # 16 MiB of RAM plus the magic pages, within libxl's target + 1 MiB.
        assert nr > 16 << 8 and max_pages == (16 << 8) + 256 and nr <= max_pages
        assert re.search(r"handle=[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12} "
                         r"vm_assist=00000000", lines[at + 3])
    finally:
        xl("destroy", "pages", env=board)


def test_domain0_time_does_not_take_over_a_destroyed_domains_time(board, tmp_path):
    assert xl("create", spinner(tmp_path, "burner"), env=board).returncode == 0
    try:
        assert wait_for(lambda: float(rows(xl("list", env=board).stdout)["burner"][4]) >= 2.0, 60)
    finally:
        before = rows(xl("list", env=board).stdout)
        assert xl("destroy", "burner", env=board).returncode == 0
    after = rows(xl("list", env=board).stdout)
    guest = float(before["burner"][4])
    grew = float(after["Domain-0"][4]) - float(before["Domain-0"][4])
    assert "burner" not in after
    assert grew < guest / 2, (before, after)
