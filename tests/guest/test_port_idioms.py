"""Guests written the way small ports are (domains/rtos, unbound, minios, hvmparams): each boots
unmodified, as on Xen, and ends with `Test result: SUCCESS`."""
from __future__ import annotations

import struct

from tests.daemon import ROOT, dmesg, wait_for, xl
from tests.guest.test_irq_guests import domid_of, state_of


def create_c(env, name: str, *extra: str) -> list[str]:
    r = xl("create", "-c", str(ROOT / f"examples/{name}/{name}.cfg"), *extra, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_rtos_header_whose_end_word_is_the_size(board):
    image = (ROOT / "domains/rtos/rtos.zImage").read_bytes()
    start, end = struct.unpack_from("<II", image, 0x28)
    assert end == len(image) < start                  # not an end address
    lines = create_c(board, "rtos")
    assert lines[-1] == "Test result: SUCCESS", lines
    assert f"rtos: zImage magic 016f2818 start {start:08x} end word {end:08x} " \
           f"(image {len(image)} bytes)" in lines
    assert "rtos: 5 ticks of 10 ms" in lines


def test_upcalls_through_a_handler_table_with_unbound_console_and_store_ports(board):
    # A NULL entry for any port xenconsoled or xenstored signalled would crash it.
    lines = create_c(board, "unbound")
    assert lines[-1] == "Test result: SUCCESS", lines
    assert any(l.startswith("unbound: ") and l.endswith("the console and store ports never "
                                                        "fired") for l in lines), lines
    assert not [l for l in dmesg(board) if "abort" in l]


def test_minios_console_shows_the_ring_once_and_console_io_in_dmesg(board):
    r = xl("create", str(ROOT / "examples/minios/minios.cfg"), 'on_poweroff="preserve"', env=board)
    assert r.returncode == 0, r.stderr
    try:
        assert wait_for(lambda: state_of("minios", board) == "---s--")
        domid = domid_of("minios", board)
        ring = [f"minios: line {i} of 3, on console_io and the ring" for i in (1, 2, 3)] + [
            "minios: 2000 polls of an empty ring, no event back", "Test result: SUCCESS"]
        # xl console: the PV ring, each line once (no console_io copy).
        assert xl("console", "minios", env=board).stdout.splitlines() == ring
        # xl dmesg: the console_io copy, as Xen's serial line has it.
        log = dmesg(board)
        assert all(f"(d{domid}) {line}" in log for line in ring), log[-10:]
    finally:
        xl("destroy", "minios", env=board)


def test_hvm_params_and_the_grant_table_at_the_hypervisor_region(board):
    r = xl("create", str(ROOT / "examples/hvmparams/hvmparams.cfg"), 'on_poweroff="preserve"',
           env=board)
    assert r.returncode == 0, r.stderr
    try:
        assert wait_for(lambda: state_of("hvmparams", board) == "---s--")
        domid = domid_of("hvmparams", board)
        log = [l[len(f"(d{domid}) "):] for l in dmesg(board) if l.startswith(f"(d{domid}) ")]
        assert log[-1] == "Test result: SUCCESS", log
        # 32 MiB of RAM from 0x80000000 (4.4 layout): the console page follows it, then the store.
        assert "hvmparams: store pfn 0x82001 port 1, console pfn 0x82000 port 2" in log
        assert "hvmparams: /hypervisor region 0 at 0xb0000000, 0x20000 bytes" in log
        assert any(l.startswith("hvmparams: grant ref 0: ") and "domid 0 frame 0x82000" in l
                   for l in log), log
        # What it wrote to the ring it found is on the PV console.
        assert xl("console", "hvmparams", env=board).stdout == \
            "hvmparams: hello through the ring at pfn 0x82000\n"
    finally:
        xl("destroy", "hvmparams", env=board)
