"""Time for Debian's Linux kernel, as a domU, to reach its shell on hvc0.

Boots examples/linux/linux.cfg (kernel and initramfs from examples/linux/fetch.py's cache) with
`xl create -c` on a pty, on a fresh board, and reads the wall time at which each milestone shows on
the console, counted from the start of `xl create`:

  first_line   "Booting Linux": the zImage decompressor has finished and the kernel's earlycon
               (xenboot: console_io) has printed its first buffered line
  init         the initramfs's /init marker: the kernel's boot is done
  shell        the shell's first prompt

The kernel's own clock at the last line before the prompt is recorded too (kernel_s), and the
domain's CPU time. Repeat with --runs; the best run is reported.

For comparison, the zImage's decompressor alone under bare Unicorn (one emu_start, no hooks but
one block hook on the low 4 MiB of RAM, so it knows when the decompressor, which first moves
itself above the kernel's destination, jumps back down into the kernel): decompress_bare_s, and
how many blocks it translated (UC_HOOK_EDGE_GENERATED; none are translated twice).

    python bench/linux_boot.py [--runs N] [--vcpus 1|2] [--json bench/results/linux_boot.json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "linux"))

from benchlib import machine, write_result  # noqa: E402
from fetch import MARKER, cache_dir  # noqa: E402
from tests.ptyconsole import ConsoleClosed, ConsoleTimeout, PtyConsole  # noqa: E402

PROMPT = re.compile(rb"xenpy:[^\n]*# ")
FATAL = re.compile(rb"Kernel panic - not syncing[^\n]*|Internal error: Oops[^\n]*")
KTIME = re.compile(rb"\[\s*(\d+\.\d+)\] [^\n]*\n")


def one_boot(cache: Path, vcpus: int, timeout: float, log: str | None = None) -> dict:
    env = {**os.environ, "XENPY_RUNDIR": tempfile.mkdtemp(prefix="xenpy-bench-"),
           "PYTHONPATH": str(ROOT)}
    py = sys.executable
    subprocess.run([py, "-m", "xenpy", "boot", "--pcpus", "2"], env=env, cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    cfg = ROOT / "examples" / "linux" / ("linux.cfg" if vcpus == 1 else "linux-smp.cfg")
    con = PtyConsole([py, "-m", "toolstack.xl", "create", "-c", str(cfg)], env=env, cwd=cache)
    con.fail = FATAL
    out: dict = {"vcpus": vcpus}
    try:
        for key, pat in (("first_line", b"Booting Linux"), ("init", MARKER.encode()),
                         ("shell", PROMPT)):
            try:
                m = con.expect(pat if isinstance(pat, re.Pattern) else re.compile(re.escape(pat)),
                               timeout - con.time_of(len(con.raw)), key)
            except (ConsoleTimeout, ConsoleClosed) as e:
                out["failed_at"] = key
                out["console_tail"] = str(e).splitlines()[-12:]
                break
            out[key + "_s"] = round(con.time_of(m.start()), 2)
        stamps = KTIME.findall(con.raw)
        if stamps:
            out["kernel_s"] = float(stamps[-1])
        lst = subprocess.run([py, "-m", "toolstack.xl", "list"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60).stdout
        for line in lst.splitlines():
            if line.startswith("linux"):
                out["cpu_s"] = float(line.split()[-1])
    finally:
        if log:
            Path(log).write_text(con.text())
        con.close()
        subprocess.run([py, "-m", "xenpy", "shutdown"], env=env, cwd=ROOT, capture_output=True,
                       timeout=120)
    return out


def bare_decompress(cache: Path) -> dict:
    """Run the zImage under bare Unicorn, as libxl loads it (RAM + 32 KiB, r2 = the DTB), until
    it enters the decompressed kernel."""
    import ctypes
    import mmap

    from unicorn import (UC_ARCH_ARM, UC_HOOK_BLOCK, UC_HOOK_EDGE_GENERATED, UC_MODE_ARM,
                         UC_PROT_ALL, Uc)
    from unicorn.arm_const import (UC_ARM_REG_CP_REG, UC_ARM_REG_CPSR, UC_ARM_REG_PC,
                                   UC_ARM_REG_R0, UC_ARM_REG_R1, UC_ARM_REG_R2,
                                   UC_CPU_ARM_CORTEX_A7)

    from toolstack.libxl_arm import make_guest_dtb
    from xenpy.public.arch_arm import LAYOUTS, PSR_GUEST32_INIT, SCTLR_GUEST_INIT

    ram_base, size, low = 0x40000000, 256 << 20, 4 << 20
    zimage = (cache / "vmlinuz").read_bytes()
    dtb = make_guest_dtb(LAYOUTS["current"], nr_vcpus=1, mem_bytes=size, cmdline="",
                         xen_version=(4, 4))
    mem = mmap.mmap(-1, size)
    mem[0x8000:0x8000 + len(zimage)] = zimage
    mem[128 << 20:(128 << 20) + len(dtb)] = dtb
    uc = Uc(UC_ARCH_ARM, UC_MODE_ARM)
    uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_A7)
    uc.mem_map_ptr(ram_base, size, UC_PROT_ALL, ctypes.addressof(ctypes.c_char.from_buffer(mem)))
    uc.reg_write(UC_ARM_REG_CPSR, PSR_GUEST32_INIT)
    uc.reg_write(UC_ARM_REG_CP_REG, (15, 0, 0, 1, 0, 0, 0, SCTLR_GUEST_INIT))
    for reg, val in ((UC_ARM_REG_R0, 0), (UC_ARM_REG_R1, 0xFFFFFFFF),
                     (UC_ARM_REG_R2, ram_base + (128 << 20))):
        uc.reg_write(reg, val)
    state = {"left": False, "blocks": 0}

    def low_block(uc, addr, _size, _data):
        if state["left"]:
            uc.emu_stop()        # back in the low RAM after running elsewhere: the kernel

    def translated(uc, cur, prev, _data):
        state["blocks"] += 1
        if cur.pc >= ram_base + low:
            state["left"] = True

    hooks = [uc.hook_add(UC_HOOK_BLOCK, low_block, begin=ram_base, end=ram_base + low - 1),
             uc.hook_add(UC_HOOK_EDGE_GENERATED, translated)]
    t = time.perf_counter()
    uc.emu_start(ram_base + 0x8000, 0xFFFFFFFF)
    dt = time.perf_counter() - t
    del hooks
    return {"decompress_bare_s": round(dt, 2), "kernel_entry": hex(uc.reg_read(UC_ARM_REG_PC)),
            "blocks_translated": state["blocks"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--vcpus", type=int, choices=(1, 2), default=1)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--console", help="write the last run's console to this file")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare-Unicorn decompression")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "linux_boot.json"))
    ns = ap.parse_args()
    cache = cache_dir()
    if not (cache / "vmlinuz").exists():
        print(f"linux_boot: no kernel in {cache}; run python examples/linux/fetch.py first",
              file=sys.stderr)
        return 1
    runs = []
    load = os.getloadavg()[0]      # this machine is shared: a figure means little without it
    for n in range(ns.runs):
        t = time.monotonic()
        r = one_boot(cache, ns.vcpus, ns.timeout, ns.console)
        r["wall_s"] = round(time.monotonic() - t, 1)
        print(f"run {n + 1}: {r}", file=sys.stderr)
        runs.append(r)
    bare = {} if ns.no_bare else bare_decompress(cache)
    if bare:
        print(f"bare Unicorn: {bare}", file=sys.stderr)
    done = [r for r in runs if "shell_s" in r]
    best = min(done, key=lambda r: r["shell_s"]) if done else runs[-1]
    kernel = json.loads((cache / "manifest.json").read_text())["kernel"]
    write_result(ns.json, {"benchmark": "linux_boot", **machine(), "kernel": kernel,
                           "load_avg_1min_at_start": round(load, 1), "best": best, "bare": bare, "runs": runs})
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
