"""The commands a user types, against a real board daemon in a temporary run directory."""
from __future__ import annotations

import re
import struct

import pytest

from tests.daemon import ROOT, rows, wait_for, xl

HELLO = ROOT / "examples/hello/hello.cfg"


def test_create_console_shows_the_guest_and_success(board):
    r = xl("create", "-c", str(HELLO), env=board)
    assert r.returncode == 0, r.stderr
    assert "Parsing config from" in r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "Hello from xenpy guest"
    assert "vcpu1: up" in lines and "mmu: on" in lines
    assert lines[-1] == "Test result: SUCCESS"
    # on_poweroff = "destroy": the watcher removes it
    assert wait_for(lambda: "hello" not in xl("list", env=board).stdout)


def test_list_vcpu_list_preserve_and_destroy(board):
    r = xl("create", str(HELLO), 'on_poweroff="preserve"', 'name="keep"', env=board)
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: rows(xl("list", env=board).stdout).get("keep", [""] * 4)[3] == "---s--")
    out = xl("list", env=board).stdout
    header, *_ = out.splitlines()
    assert header == "Name                                        ID   Mem VCPUs\tState\tTime(s)"
    table = rows(out)
    assert table["Domain-0"][:2] == ["0", "512"]
    domid, mem, _vcpus, state, _t = table["keep"]
    assert mem == "32" and state == "---s--"
    assert re.search(r"^keep\s+\d+\s+32\s+\d+\s+---s--\s+\d+\.\d$", out, re.M)
    vl = xl("vcpu-list", "keep", env=board).stdout.splitlines()
    assert vl[0].split() == ["Name", "ID", "VCPU", "CPU", "State", "Time(s)", "Affinity", "(Hard",
                             "/", "Soft)"]
    assert [l.split()[2] for l in vl[1:]] == ["0", "1"]
    assert xl("destroy", "keep", env=board).returncode == 0
    assert "keep" not in xl("list", env=board).stdout


def test_paused_create_pinning_and_unpause(board):
    r = xl("create", "-p", str(HELLO), 'name="pinned"', 'cpus="1"', 'on_poweroff="preserve"',
           env=board)
    assert r.returncode == 0, r.stderr
    assert rows(xl("list", env=board).stdout)["pinned"][3] == "--p---"
    vl = [l.split() for l in xl("vcpu-list", "pinned", env=board).stdout.splitlines()[1:]]
    assert all(row[-3:] == ["1", "/", "all"] for row in vl)
    assert xl("unpause", "pinned", env=board).returncode == 0
    assert wait_for(lambda: any(l.split()[3] == "1" for l in
                                xl("vcpu-list", "pinned", env=board).stdout.splitlines()[1:2]))
    assert wait_for(lambda: rows(xl("list", env=board).stdout)["pinned"][3] == "---s--")
    out = xl("console", "pinned", env=board).stdout
    assert out.splitlines()[-1] == "Test result: SUCCESS"
    xl("destroy", "pinned", env=board)


def test_domain_arguments_and_errors(board):
    r = xl("destroy", "nosuch", env=board)
    assert r.returncode == 1 and r.stderr.strip() == "nosuch is an invalid domain identifier (rc=-6)"
    # find_domain: "%s is an invalid domain identifier (rc=%d)\n"
    r = xl("list", "nosuch", env=board)
    assert r.returncode == 1 and r.stderr == "nosuch is an invalid domain identifier (rc=-6)\n"
    # main_list: "Error: Domain \'%s\' does not exist.\n" (an id is not checked by find_domain)
    r = xl("list", "77", env=board)
    assert r.returncode == 1 and r.stderr == "Error: Domain '77' does not exist.\n"
    r = xl("destroy", "0", env=board)
    assert r.returncode == 1 and r.stderr.startswith("Not destroying domain 0; use -f to force.")
    info = xl("info", env=board).stdout
    assert re.search(r"^nr_cpus\s+: 2$", info, re.M) and re.search(r"^xen_version\s+: 4\.4", info, re.M)
    assert "(d" in xl("dmesg", env=board).stdout or "(XEN)" in xl("dmesg", env=board).stdout


BAD = {
    "syntax": ('name = "x"\nmemory = 32\nkernel = vm1\n', r"bad\.cfg:3: config parsing error near `vm1'"),
    "nokernel": ('name = "x"\nmemory = 32\nkernel = "does/not/exist.zImage"\n', r"does/not/exist\.zImage"),
    "small": ('name = "x"\nmemory = 1\nkernel = "{big}"\n',
              r"kernel \(2048 KiB\) is larger than the domain.s memory \(1024 KiB\)"),
    "gicv3": ('name = "x"\nmemory = 32\nkernel = "{big}"\ngic_version = "v3"\n',
              r'x: gic_version "v3" is not supported: this board.s GIC is a GICv2'),
    "type": ('name = "x"\nmemory = [32]\nkernel = "domains/hello/hello.zImage"\n',
             r"bad\.cfg:2: .*memory"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_configs_give_one_clear_line(board, tmp_path, case):
    text, pattern = BAD[case]
    big = tmp_path / "big.zImage"          # a valid zImage of 2 MiB, linked at RAM + 0x8000
    size = 2 << 20
    big.write_bytes(b"\0" * 0x24 + struct.pack("<III", 0x016F2818, 0x80008000, 0x80008000 + size)
                    + b"\0" * (size - 0x30))
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(text.replace("{big}", str(big)))
    r = xl("create", str(cfg), env=board)
    assert r.returncode == 1
    errors = [l for l in r.stderr.splitlines() if not l.startswith("Parsing config")]
    assert len(errors) == 1, r.stderr
    assert re.search(pattern, errors[0]), errors[0]
    assert "Traceback" not in r.stderr
    assert "x " not in xl("list", env=board).stdout
