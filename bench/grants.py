"""Grant-table benchmarks, measured in one run on this machine (absolute figures are this
machine's; the ratios are the portable part).

1. map+unmap pairs per second of one grant by a domU: through the core functions (what the
   hypercall handler calls: pin, zero-copy p2m mapping into the mapper's vCPU, unpin) and
   through the hypercall table with the op structs in guest memory.
2. The same for dom0's userspace through gntdev (libxengnttab over the in-process privcmd
   transport: map, mmap of the passed descriptor, munmap, unmap).
3. GNTTABOP_copy throughput in MB/s, one page per element, batches of 16, grant -> local frame,
   against a plain Python copy of the same bytes between the same buffers.

    python bench/grants.py [--json bench/results/grants.json] [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import machine, rate, write_result  # noqa: E402
from toolstack.xc import LocalTransport  # noqa: E402
from toolstack.xengnttab import Xengnttab  # noqa: E402
from xenpy.board.privcmd import Privcmd  # noqa: E402
from xenpy.common import grant_table as gt  # noqa: E402
from xenpy.common.hypercall import dispatch  # noqa: E402
from xenpy.common.hypervisor import Hypervisor  # noqa: E402
from xenpy.public.grant_table import (COPY, GNTCOPY_source_gref, GNTMAP_host_map,  # noqa: E402
                                      GNTST_okay, GNTTABOP_copy, GNTTABOP_map_grant_ref,
                                      GNTTABOP_unmap_grant_ref, GTF_permit_access, MAP_GRANT_REF,
                                      UNMAP_GRANT_REF)
from xenpy.public.xen import DOMID_SELF, HYPERVISOR_grant_table_op  # noqa: E402

RAM = 0x80000000
ARG = RAM + 0x20000
HOST_GFN = 0x90000
BATCH = 16




def domu(hv: Hypervisor, pages: int = 256):
    d = hv.domains[hv.domain_create(0, 1, None, "4.4")]
    assert hv.domain_populate(d, pages) == 0
    if getattr(d, "grant_table", None) is None:
        assert gt.gnttab_init(d) == 0
    return d


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=str(ROOT / "bench/results/grants.json"))
    ap.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    ns = ap.parse_args()
    pairs = 2_000 if ns.quick else 20_000
    batches = 500 if ns.quick else 5_000
    repeat = 2 if ns.quick else 3

    hv = Hypervisor()            # not started: nothing competes with the measured thread
    if getattr(hv.domains[0], "grant_table", None) is None:
        assert gt.gnttab_init(hv.domains[0]) == 0
    try:
        a, b = domu(hv), domu(hv)
        a.ram_write(RAM + 0x3000, os.urandom(4096))
        gt.seed_entry(a, 8, b.domid, (RAM >> 12) + 3, GTF_permit_access)
        gt.seed_entry(a, 9, 0, (RAM >> 12) + 3, GTF_permit_access)

        def core_pair() -> None:
            r = gt.map_grant_ref(b, HOST_GFN << 12, GNTMAP_host_map, 8, a.domid)
            assert r.status == GNTST_okay
            assert gt.unmap_grant_ref(b, HOST_GFN << 12, 0, r.handle) == GNTST_okay

        map_op = MAP_GRANT_REF.pack(HOST_GFN << 12, GNTMAP_host_map, 8, a.domid, 0, 0, 0)
        v = b.vcpus[0]

        def hypercall_pair() -> None:
            b.ram_write(ARG, map_op)
            assert dispatch(v, HYPERVISOR_grant_table_op,
                            (GNTTABOP_map_grant_ref, ARG, 1, 0, 0)) == 0
            _, _, _, _, st, handle, _ = MAP_GRANT_REF.unpack(v.arch.read_phys(ARG, 32))
            assert st == GNTST_okay
            b.ram_write(ARG + 64, UNMAP_GRANT_REF.pack(HOST_GFN << 12, 0, handle, 0))
            assert dispatch(v, HYPERVISOR_grant_table_op,
                            (GNTTABOP_unmap_grant_ref, ARG + 64, 1, 0, 0)) == 0

        lib = Xengnttab(LocalTransport(Privcmd(hv)))

        def gntdev_pair() -> None:
            page, handle = lib.map_grant_ref(a.domid, 9)
            page[0]                                          # touch it
            lib.unmap(handle)

        core = rate(core_pair, pairs, repeat)
        hcall = rate(hypercall_pair, pairs, repeat)
        dom0 = rate(gntdev_pair, pairs // 2, repeat)
        lib.close()

        copies = b"".join(COPY.pack(8, a.domid, 0, (RAM >> 12) + 16 + i, DOMID_SELF, 0, 4096,
                                    GNTCOPY_source_gref, 0) for i in range(BATCH))
        b.ram_write(ARG, copies)

        def copy_batch() -> None:
            assert dispatch(v, HYPERVISOR_grant_table_op, (GNTTABOP_copy, ARG, BATCH, 0, 0)) == 0

        copy_rate = rate(copy_batch, batches, repeat) * BATCH * 4096 / 1e6
        assert bytes(b.ram[16 * 4096:17 * 4096]) == bytes(a.ram[3 * 4096:4 * 4096])
        src, dst = a.ram, b.ram

        def plain_batch() -> None:
            for i in range(BATCH):
                dst[(16 + i) * 4096:(17 + i) * 4096] = src[3 * 4096:4 * 4096]

        plain_rate = rate(plain_batch, batches, repeat) * BATCH * 4096 / 1e6
    finally:
        for d in list(hv.domains.values()):
            d.release()

    res = {
        **machine(),
        "map_unmap_pairs_per_s_core": round(core),
        "map_unmap_pairs_per_s_hypercall": round(hcall),
        "map_unmap_pairs_per_s_dom0_gntdev": round(dom0),
        "copy_mb_per_s_hypercall_4k_batch16": round(copy_rate, 1),
        "copy_mb_per_s_plain_python_4k": round(plain_rate, 1),
        "copy_ratio_hypercall_vs_plain": round(copy_rate / plain_rate, 3),
        "hypercall_vs_core_map_unmap_ratio": round(hcall / core, 3),
    }
    print(f"map+unmap (domU, core)      : {core:9.0f} pairs/s")
    print(f"map+unmap (domU, hypercall) : {hcall:9.0f} pairs/s  ({hcall / core:.2f} of core)")
    print(f"map+unmap (dom0 gntdev)     : {dom0:9.0f} pairs/s")
    print(f"GNTTABOP_copy, 4 KiB x {BATCH}   : {copy_rate:9.1f} MB/s  "
          f"({copy_rate / plain_rate:.2f} of a plain Python copy, {plain_rate:.0f} MB/s)")
    write_result(ns.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
