"""examples/erika/README.md, run as a user types it: every `$ command` of its `console` blocks,
in order, in a shell at the repository root, with a fresh run directory. What the README shows
under a command is what it must print (stdout and stderr together): `...` alone on a line stands
for any lines, within a line for any text, and runs of blanks compare equal. A command must
succeed unless its comment says it fails."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig

from tests.daemon import ROOT

README = ROOT / "examples/erika/README.md"


def steps(markdown: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of each `$ ` line in ```console blocks."""
    out: list[tuple[str, list[str]]] = []
    for block in re.findall(r"^```console\n(.*?)^```$", markdown, re.M | re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                out.append((line[2:], []))
            else:
                out[-1][1].append(line)
    return out


def _norm(line: str) -> str:
    return re.sub(r"\s+", " ", line).strip()


def pattern(expected: list[str]) -> re.Pattern[str]:
    parts = []
    for line in expected:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*".join(map(re.escape, _norm(line).split("..."))) + r"\n")
    return re.compile("".join(parts))


def test_the_readme_has_the_whole_story():
    commands = [c for c, _ in steps(README.read_text())]
    assert commands[0].startswith("xenpy boot --sd examples/cubieboard2/sd")
    for must in ("xenstore-chmod -r /local b", "xl create examples/erika/erika.cfg",
                 "xenpy proc write erika-xen/pin_state 1", "xenpy proc read erika-xen/pin_state",
                 "xl destroy ERIKA_Enterprise", "xenpy shutdown"):
        assert must in commands, must


def test_the_walkthrough_runs_as_written(tmp_path):
    env = {**os.environ, "XENPY_RUNDIR": str(tmp_path / "run"),
           # the installed commands, even when this Python's environment is not activated
           "PATH": os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])}
    env.pop("XENSTORED_PATH", None)
    try:
        for command, expected in steps(README.read_text()):
            r = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
            fails = "# fails" in command
            assert (r.returncode != 0) == fails, f"$ {command}\n{r.stdout}"
            got = "".join(_norm(line) + "\n" for line in r.stdout.splitlines())
            assert pattern(expected).fullmatch(got), \
                f"$ {command}\n--- printed:\n{r.stdout}--- README:\n" + "\n".join(expected)
    finally:
        subprocess.run(["bash", "-c", "xenpy shutdown"], cwd=ROOT, env=env, capture_output=True,
                       timeout=60)


def test_the_quickstart_demo_shows_the_rtos_next_to_xl_list(tmp_path):
    """README's quickstart command (its plain-text form, as without a terminal)."""
    env = {**os.environ, "XENPY_RUNDIR": str(tmp_path / "run")}
    r = subprocess.run([sys.executable, "examples/erika/demo.py", "--toggles", "2"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert "Starting kernel ..." in out
    listed = out[out.index("--- ERIKA_Enterprise's console ---") - 4:]
    assert listed[0] == "$ xl list" and listed[3].split()[:4] == ["ERIKA_Enterprise", "1", "512",
                                                                "1"]
    console = out[out.index("--- ERIKA_Enterprise's console ---") + 1:out.index(
        "$ xl destroy ERIKA_Enterprise")]
    assert "Test result: SUCCESS" in console
    assert [line.split(",")[0] for line in console if line.startswith("pin server: PD12")] == \
        ["pin server: PD12 -> high", "pin server: PD12 -> low"]
    assert out[out.index("$ xenpy proc read erika-xen/pin_state") + 1] == "1"
    assert out[-2:] == ["$ xenpy shutdown", "xenpy: board stopped"]
