"""First-light benchmarks, measured in one run on this machine.

1. Guest compute speed: the same A32 loop under xenpy (a domU on the scheduler, with its
   preemption ticker) and under bare Unicorn (one emu_start, nothing else). Ratio target >= 0.9.
2. Null hypercall round trip: N x `hvc #0xEA1` (xen_version(XENVER_version)) under xenpy, against
   the bare trap (an invalid-instruction hook that only sets r0 and skips the HVC). Target <= 2.
3. `xl create` to the first console line of the hello guest, in milliseconds (in-process libxl
   call with a running board; the CLI figure adds Python start-up and is reported separately).

    python bench/first_light.py [--json bench/results/first_light.json] [--quick]
"""
from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unicorn import UC_ARCH_ARM, UC_HOOK_INSN_INVALID, UC_MODE_ARM, UC_PROT_ALL, Uc
from unicorn.arm_const import UC_ARM_REG_PC, UC_ARM_REG_R0, UC_CPU_ARM_CORTEX_A7

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import machine, write_result  # noqa: E402
from xenpy.arch.arm.regs import RegBatch, RegWriter  # noqa: E402
from xenpy.arch.arm.vcpu import CpuContext  # noqa: E402
from xenpy.common.hypervisor import Hypervisor, HypervisorConfig  # noqa: E402

RAM = 0x80000000
CODE = RAM + 0x8000
HVC = 0xE140EA71


def movw(rd: int, imm: int) -> int:
    return 0xE3000000 | (imm >> 12) << 16 | rd << 12 | (imm & 0xFFF)


def movt(rd: int, imm: int) -> int:
    return 0xE3400000 | (imm >> 12) << 16 | rd << 12 | (imm & 0xFFF)


def program(body: list[int], n: int) -> bytes:
    """r4 = n; loop: body; subs r4, r4, #1; bne loop; then SCHEDOP_shutdown(poweroff)."""
    words = [movw(4, n & 0xFFFF), movt(4, n >> 16)]
    loop = len(words)
    words += body + [0xE2544001]                        # subs r4, r4, #1
    words.append(0x1A000000 | ((loop - len(words) - 2) & 0xFFFFFF))   # bne loop
    reason = CODE + 0x800
    words += [0xE3A00002, movw(1, reason & 0xFFFF), movt(1, reason >> 16), 0xE3A0C01D, HVC,
              0xEAFFFFFE]                               # sched_op(shutdown, &reason); b .
    return struct.pack(f"<{len(words)}I", *words)


# 8 ALU instructions per iteration besides the loop control: a small integer workload.
COMPUTE = [0xE0811002, 0xE0222001, 0xE1A03181, 0xE0233002,
           0xE2811007, 0xE0020193, 0xE1822003, 0xE0411002]
NULL_HCALL = [0xE3A00000, 0xE3A0C011, HVC]              # r0 = XENVER_version; r12 = 17; hvc


def bare(code: bytes, trap: bool) -> float:
    """Seconds to run `code` on a bare Unicorn until its final HVC (the shutdown)."""
    uc = Uc(UC_ARCH_ARM, UC_MODE_ARM)
    uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_A7)
    buf = ctypes.create_string_buffer(16 << 20)
    uc.mem_map_ptr(RAM, 16 << 20, UC_PROT_ALL, buf)
    uc.mem_write(CODE, code)

    # The cheapest possible trap: the same batched register access xenpy's trap uses.
    regs, write = RegBatch(uc._uch, [UC_ARM_REG_R0, UC_ARM_REG_PC]), RegWriter(uc._uch)

    def on_hvc(uc: Uc, _d: object) -> bool:
        r0, pc = regs.read()
        if r0 == 2:                                 # the shutdown at the end
            uc.emu_stop()
            return True
        write(UC_ARM_REG_R0, 0x40004)
        write(UC_ARM_REG_PC, pc + 4)
        return True
    uc.hook_add(UC_HOOK_INSN_INVALID, on_hvc)
    t0 = time.perf_counter()
    uc.emu_start(CODE, 0xFFFFFFFF)
    return time.perf_counter() - t0


def xenpy(hv: Hypervisor, code: bytes) -> float:
    with hv.big_lock:           # dom0's side of a deterministic board's rounds (else a no-op)
        domid = hv.domain_create(0, 1, None, "4.4")
        d = hv.domains[domid]
        hv.domain_populate(d, 16 << 8)
        d.ram_write(CODE, code)
        d.ram_write(CODE + 0x800, b"\0" * 4)
        d.set_vcpu_context(0, CpuContext(pc=CODE))
        t0 = time.perf_counter()
        hv.domain_unpause(d)
    while not d.is_shutdown:
        time.sleep(0.0005)
    dt = time.perf_counter() - t0
    with hv.big_lock:
        hv.domain_destroy(d)
    return dt


def best(fn, repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def create_to_first_line(repeat: int) -> dict[str, float]:
    """Board in-process; libxl create of the hello guest; time until its first console byte."""
    from toolstack.domcfg import load_domain_config
    from toolstack.libxl import Libxl
    from toolstack.xc import LocalTransport, Xc
    from toolstack.xs import XsClient
    from xenpy.board.board import Board
    rundir = tempfile.mkdtemp(prefix="xenpy-bench-")
    os.environ["XENPY_RUNDIR"] = rundir
    board = Board(HypervisorConfig())
    board.start()
    lx = Libxl(Xc(LocalTransport(board.privcmd)), XsClient())
    samples = []
    try:
        for _ in range(repeat):
            cfg, _w = load_domain_config(str(ROOT / "examples/hello/hello.cfg"))
            t0 = time.perf_counter()
            domid = lx.create(cfg)
            while not lx.xc.console_read(domid, 0, 2.0)["data"]:
                pass
            samples.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.3)
            if lx.xc.domain_getinfo(domid) is not None:
                lx.destroy(domid)
        env = dict(os.environ)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "toolstack.xl", "create", "-c",
                        str(ROOT / "examples/hello/hello.cfg")], env=env, cwd=ROOT,
                       capture_output=True, timeout=60)
        cli_ms = (time.perf_counter() - t0) * 1000
    finally:
        board.stop()
    return {"create_to_first_line_ms": statistics.median(samples), "create_min_ms": min(samples),
            "xl_create_c_cli_total_ms": cli_ms}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=str(ROOT / "bench/results/first_light.json"))
    ap.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    ns = ap.parse_args()
    loops = 5_000_000 if ns.quick else 100_000_000
    calls = 20_000 if ns.quick else 200_000
    repeat = 2 if ns.quick else 3
    hv = Hypervisor(HypervisorConfig(nr_pcpus=2))
    hv.start()
    try:
        loop_code = program(COMPUTE, loops)
        t_bare = best(lambda: bare(loop_code, False), repeat)
        t_xen = best(lambda: xenpy(hv, loop_code), repeat)
        insns = loops * (len(COMPUTE) + 2)
        hcall_code = program(NULL_HCALL, calls)
        h_bare = best(lambda: bare(hcall_code, True), repeat)
        h_xen = best(lambda: xenpy(hv, hcall_code), repeat)
    finally:
        hv.shutdown()
    # The deterministic board runs the same loop in quanta of virtual time, one host thread for
    # every pCPU: what the exact repeatability costs.
    det = Hypervisor(HypervisorConfig(nr_pcpus=2, deterministic=True))
    det.start()
    try:
        t_det = best(lambda: xenpy(det, loop_code), repeat)
    finally:
        det.shutdown()
    res = {
        **machine(),
        "compute_mips_bare": insns / t_bare / 1e6,
        "compute_mips_xenpy": insns / t_xen / 1e6,
        "compute_ratio": t_bare / t_xen,
        "hypercall_us_bare_trap": h_bare / calls * 1e6,
        "hypercall_us_xenpy": h_xen / calls * 1e6,
        "hypercall_ratio": h_xen / h_bare,
        "compute_mips_deterministic": insns / t_det / 1e6,
        "deterministic_ratio": t_xen / t_det,
    }
    if (ROOT / "examples/hello/hello.cfg").exists():
        res.update(create_to_first_line(3 if ns.quick else 5))
    print(f"compute loop   : bare {res['compute_mips_bare']:7.1f} MIPS, xenpy "
          f"{res['compute_mips_xenpy']:7.1f} MIPS, ratio {res['compute_ratio']:.2f} (target >= 0.9)")
    print(f"deterministic  : {res['compute_mips_deterministic']:7.1f} MIPS, "
          f"{res['deterministic_ratio']:.2f} of free running (target >= 0.25)")
    print(f"null hypercall : bare trap {res['hypercall_us_bare_trap']:6.2f} us, xenpy "
          f"{res['hypercall_us_xenpy']:6.2f} us, ratio {res['hypercall_ratio']:.2f} (target <= 2)")
    if "create_to_first_line_ms" in res:
        print(f"xl create -> first console line: {res['create_to_first_line_ms']:.1f} ms "
              f"(in-process, median); `xl create -c` CLI end to end {res['xl_create_c_cli_total_ms']:.0f} ms")
    write_result(ns.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
