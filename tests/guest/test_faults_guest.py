"""The faults guest: User-mode aborts on LPAE pages, reported as the ARM ARM says.

The guest (domains/faults) checks DFAR/DFSR/IFAR/IFSR itself and ends with "Test result: SUCCESS";
this test also checks the report lines, so a guest that skipped a step cannot pass.
"""
from __future__ import annotations

from tests.daemon import ROOT, xl

CFG = ROOT / "examples" / "faults" / "faults.cfg"

EXPECTED = [
    "data abort at 00010014 (mode 10): DFAR=00013000 DFSR=00000a0f",
    "  ok: str to a read-only page",
    "prefetch abort at 00014000 (mode 10): IFAR=00014000 IFSR=0000020f",
    "  ok: fetch from an execute-never page",
    "data abort at 0001002c (mode 10): DFAR=00012040 DFSR=00000a07",
    "  ok: vst1 to an unmapped page",
    "data abort at 00010038 (mode 10): DFAR=00012000 DFSR=00000207",
    "  ok: ldm across into an unmapped page",
    "data abort at 00010044 (mode 10): DFAR=80008000 DFSR=0000020e",
    "  ok: user read of a PL1-only block",
    "prefetch abort at 00010ffe (mode 10): IFAR=00011000 IFSR=0000020f",
    "  ok: T32 instruction straddling into an execute-never page",
    "user read of a user page: 600df00d, ok",
]


def test_user_mode_aborts_report_the_architectural_far_and_fsr(board):
    r = xl("create", "-c", str(CFG), env=board)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == "Test result: SUCCESS", "\n".join(lines)
    assert lines[0] == "faults: LPAE user pages with PXN, aborts from User mode"
    assert lines[1:1 + len(EXPECTED)] == EXPECTED, "\n".join(lines)
    # The LDRT from SVC mode: refused although an ordinary load of the same page is not.
    assert any(line.startswith("data abort at ") and line.endswith(
        "(mode 13): DFAR=80008000 DFSR=0000020e") for line in lines), "\n".join(lines)
