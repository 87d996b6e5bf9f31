"""The faults guest: User-mode aborts reported as the ARM ARM says, with LPAE and short descriptors.

The guest (domains/faults) checks DFAR/DFSR/IFAR/IFSR itself and ends with "Test result: SUCCESS";
this test checks its report lines as well, so a guest that skipped a step cannot pass.
"""
from __future__ import annotations

import re

from tests.daemon import ROOT, xl

CFG = ROOT / "examples" / "faults" / "faults.cfg"

STEPS = ["str to a read-only page", "fetch from an execute-never page", "vst1 to an unmapped page",
         "ldm across into an unmapped page", "user read of PL1-only memory",
         "ldrex at an address that is not word aligned", "T32 instruction straddling into an execute-never page",
         "ldrt from SVC mode of PL1-only memory"]

# (abort, faulting pc or None for the SVC-mode LDRT, mode, FAR) of each step, the same in both rounds.
WHERE = [("data", 0x00010014, 0x10, 0x00013000), ("prefetch", 0x00014000, 0x10, 0x00014000),
         ("data", 0x0001002C, 0x10, 0x00012040), ("data", 0x00010038, 0x10, 0x00012000),
         ("data", 0x00010044, 0x10, 0x80008000), ("data", 0x0001004C, 0x10, 0x00011002),
         ("prefetch", 0x00010FFE, 0x10, 0x00011000),
         ("data", None, 0x13, 0x80008000)]

# The FSR of each step.  LPAE (B4.1.52 long-descriptor format): bit 9, STATUS = type | level
# (alignment 0x21), WnR.  Short descriptors (table B3-23): FS, the Domain field (valid for the
# translation faults, UNKNOWN for alignment and, on an LPAE core, permission faults), WnR; the
# IFSR has neither.
LPAE_FSR = [(0xA0F, 0xFFF), (0x20F, 0xFFF), (0xA07, 0xFFF), (0x207, 0xFFF), (0x20E, 0xFFF),
            (0x221, 0xFFF), (0x20F, 0xFFF), (0x20E, 0xFFF)]
SHORT_FSR = [(0x80F, 0xF0F), (0x00F, 0xFFF), (0x817, 0xFFF), (0x017, 0xFFF), (0x00D, 0xF0F),
             (0x001, 0xF0F), (0x00F, 0xFFF), (0x00D, 0xF0F)]

ABORT = re.compile(r"(data|prefetch) abort at ([0-9a-f]{8}) \(mode ([0-9a-f]{2})\): "
                   r"[DI]FAR=([0-9a-f]{8}) [DI]FSR=([0-9a-f]{8})")


def check_round(lines: list[str], fsrs: list[tuple[int, int]]) -> None:
    aborts = [ABORT.fullmatch(line) for line in lines if "abort at" in line]
    assert [line[len("  ok: "):] for line in lines if line.startswith("  ok: ")] == STEPS
    assert len(aborts) == len(STEPS) and all(aborts)
    for m, (kind, pc, mode, far), (fsr, mask) in zip(aborts, WHERE, fsrs):
        assert m.group(1) == kind and int(m.group(3), 16) == mode, m.group(0)
        assert pc is None or int(m.group(2), 16) == pc, m.group(0)
        assert int(m.group(4), 16) == far, m.group(0)
        assert int(m.group(5), 16) & mask == fsr, m.group(0)
    assert "user read of a user page: 600df00d, ok" in lines


def test_user_mode_aborts_report_the_architectural_far_and_fsr(board):
    r = xl("create", "-c", str(CFG), env=board)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    text = "\n".join(lines)
    assert lines[-1] == "Test result: SUCCESS", text
    lpae = lines.index("faults: LPAE user pages with PXN, aborts from User mode")
    short = lines.index("faults: short-descriptor user pages with PXN, aborts from User mode")
    assert lpae < short, text
    check_round(lines[lpae + 1:short], LPAE_FSR)
    check_round(lines[short + 1:-1], SHORT_FSR)
