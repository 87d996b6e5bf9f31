"""libxl for xenpy: build, list and tear down domains with hypercalls and XenStore only.

The create flow is libxl's and libxenguest's for an ARM domU: createdomain (paused), max_mem,
populate the RAM bank, map the new domain's memory through privcmd, place the kernel and the
generated device tree, set vCPU 0's boot registers, pin vCPUs, write the domain's XenStore nodes,
record the config for the shutdown watcher, unpause.
"""
from __future__ import annotations

import errno
import json
import os
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolstack.xc import SocketTransport, Xc, XcError
from toolstack.xs import XsError
from xenpy.public.grant_table import GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE
from xenpy.public.arch_arm import LAYOUTS, SCTLR_GUEST_INIT, callback_irq_ppi
from xenpy.public.hvm.params import (HVM_PARAM_CALLBACK_IRQ, HVM_PARAM_CONSOLE_EVTCHN,
                                     HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN,
                                     HVM_PARAM_STORE_PFN)
from xenpy.rundir import run_dir

if TYPE_CHECKING:       # the cfg parser (lark) is for create only: `xl list` must start fast
    from toolstack.domcfg import DomainConfig


LIBXL_MAXMEM_CONSTANT = 1024   # KiB (libxl_internal.h)


class CreateError(Exception):
    """One line for the user; the half-built domain has been destroyed."""


@dataclass
class DomainInfo:
    domid: int
    name: str
    uuid: str
    mem_kb: int
    vcpus: int
    max_vcpu_id: int
    state: str
    cpu_time: float
    shutdown_reason: int
    raw: dict[str, Any]


STATE_FLAGS = [("r", 1 << 5), ("b", 1 << 4), ("p", 1 << 3), ("s", 1 << 2)]


def state_string(flags: int) -> str:
    """xl list's six State letters from getdomaininfo's flags (xl_info.c's logic)."""
    s = "".join(ch if flags & bit else "-" for ch, bit in STATE_FLAGS)
    shutdown = flags & (1 << 2)
    reason = (flags >> 16) & 0xFF
    s += ("-rscwS"[reason] if reason < 6 else "?") if shutdown else "-"
    return s + ("d" if flags & 1 else "-")


def userdata_path(domid: int) -> Path:
    """Where libxl keeps a domain's config (its `userdata-d<ID>...libxl-json` file)."""
    return run_dir() / "userdata" / f"d{domid}.libxl-json"


class Libxl:
    def __init__(self, xc: Xc, xs: Any) -> None:
        self.xc = xc
        self.xs = xs
        # libxenguest's "domainbuilder: detail:" lines, for the caller to show (xl -v)
        self.detail: Any = lambda func, msg: None

    # -- names -------------------------------------------------------------------------------

    def domain_name(self, domid: int) -> str:
        try:
            return self.xs.read(f"/local/domain/{domid}/name").decode()
        except Exception:  # noqa: BLE001 - a domain without a name node is shown as xl does
            return "(null)"

    def domain_names(self, domids: list[int]) -> dict[int, str]:
        """domain_name() of many domains, their reads in one XenStore round trip."""
        try:
            values = self.xs.read_many(f"/local/domain/{d}/name" for d in domids)
        except Exception:  # noqa: BLE001 - as domain_name(): no name is "(null)"
            return {d: "(null)" for d in domids}
        names = {}
        for d, v in zip(domids, values):
            try:
                names[d] = v.decode() if isinstance(v, bytes) else "(null)"
            except UnicodeDecodeError:
                names[d] = "(null)"
        return names

    def list_domains(self) -> list[DomainInfo]:
        out = []
        infos = self.xc.domain_getinfolist()
        names = self.domain_names([raw["domain"] for raw in infos])
        for raw in infos:
            d = raw["domain"]
            out.append(DomainInfo(domid=d, name=names[d], uuid=str(uuidlib.UUID(raw["handle"])),
                                  mem_kb=raw["tot_pages"] * 4, vcpus=raw["nr_online_vcpus"],
                                  max_vcpu_id=raw["max_vcpu_id"], state=state_string(raw["flags"]),
                                  cpu_time=raw["cpu_time"] / 1e9,
                                  shutdown_reason=raw.get("shutdown_reason", -1), raw=raw))
        return out

    def lookup(self, spec: str) -> int:
        """A domain argument: all digits is an id, anything else a name (xl_utils.c)."""
        if spec.isdigit():
            if self.xc.domain_getinfo(int(spec)) is None:
                raise LookupError(f"{spec} is an invalid domain identifier (rc=-6)")
            return int(spec)
        for info in self.list_domains():
            if info.name == spec:
                return info.domid
        raise LookupError(f"{spec} is an invalid domain identifier (rc=-6)")

    # -- create ----------------------------------------------------------------------------------

    def create(self, cfg: DomainConfig, *, paused: bool = False, extra: list[str] | tuple = (),
               config_json: dict[str, Any] | None = None) -> int:
        """config_json: the libxl_domain_config to store for `xl list -l` (default: cfg's)."""
        from xenpy.loader.kernel import LoaderError, load_kernel   # the builder, for create only
        if any(info.name == cfg.name for info in self.list_domains()):
            raise CreateError(f"domain with name \"{cfg.name}\" already exists.")
        self.detail("xc_dom_allocate", f'cmdline="{cfg.cmdline or ""}", features=""')
        self.detail("xc_dom_kernel_file", f'filename="{cfg.kernel}"')
        if cfg.gic_version == "v3":     # Xen refuses a vGIC the hardware's GIC cannot back
            raise CreateError(f"{cfg.name}: gic_version \"v3\" is not supported: this board's "
                              f"GIC is a GICv2, so a domU has a vGICv2 (gic_version = \"v2\")")
        try:
            image = load_kernel(cfg.kernel, max_size=cfg.memory << 20)
        except LoaderError as e:
            raise CreateError(str(e)) from None
        self.detail("xc_dom_find_loader", f"trying {image.format} ({image.arch}) loader ... loader probe OK")
        handle = uuidlib.UUID(cfg.uuid) if cfg.uuid else uuidlib.uuid4()
        mem_bytes = cfg.memory << 20
        poolid = self._poolid(cfg)
        try:
            domid = self.xc.domain_create(
                max_vcpus=cfg.maxvcpus, handle=handle.bytes, layout=cfg.guest_layout,
                max_evtchn_port=cfg.max_event_channels,
                max_grant_frames=-1 if cfg.max_grant_frames is None else cfg.max_grant_frames,
                max_maptrack_frames=-1 if cfg.max_maptrack_frames is None else cfg.max_maptrack_frames,
                cpupool_id=poolid)
        except XcError as e:
            raise CreateError(f"cannot create domain {cfg.name}: {e}") from None
        try:
            self._build(domid, cfg, image, mem_bytes, handle, list(extra), config_json)
            if not paused:
                self.xc.domain_unpause(domid)
        except BaseException as e:
            # Whatever raised (xenstored refusing a write, a lost connection, ^C, a bug), the
            # half-built domain goes, as libxl's domcreate_complete destroys it on failure.
            self._destroy_half_built(domid, fresh=not isinstance(e, Exception))
            if isinstance(e, XsError):
                raise CreateError(f"cannot create domain {cfg.name}: xenstored: {e}") from None
            if isinstance(e, (CreateError, LoaderError, XcError, OSError)):
                raise CreateError(str(e)) from None
            raise
        return domid

    def _poolid(self, cfg: DomainConfig) -> int:
        """initiate_domain_create: pool= (a name or an id) must name a pool libxl knows."""
        from toolstack.libxl_cpupool import Cpupools
        pools = Cpupools(self.xc, self.xs, lambda *_: None)
        poolid = 0 if cfg.pool is None else pools.qualifier_to_cpupoolid(cfg.pool)
        if poolid is None or not pools.cpupoolid_is_valid(poolid):
            raise CreateError(f"Illegal pool specified: {cfg.pool}")
        return poolid

    def _destroy_half_built(self, domid: int, fresh: bool = False) -> None:
        """`fresh`: the build was interrupted (^C) maybe between a request and its reply, so
        the privcmd connection may be out of step: destroy over a new one."""
        lx = self
        if fresh and isinstance(getattr(self.xc, "t", None), SocketTransport):
            try:
                lx = Libxl(Xc(SocketTransport(self.xc.t.path)), self.xs)
            except Exception:  # noqa: BLE001 - no board to talk to: nothing to clean
                return
        try:
            lx.destroy(domid)
        except Exception:  # noqa: BLE001 - keep the first failure; try the hypercall alone
            try:
                lx.xc.domain_destroy(domid)
            except Exception:  # noqa: BLE001
                pass

    def _build(self, domid: int, cfg: DomainConfig, image: Any, mem_bytes: int,
               handle: uuidlib.UUID, extra: list[str],
               config_json: dict[str, Any] | None = None) -> None:
        from toolstack.libxl_arm import RNG_SEED_SIZE, make_guest_dtb
        from xenpy.loader.kernel import place_domu, read_image_file
        layout = LAYOUTS[cfg.guest_layout or self.board_layout(domid)]
        version = self.xc.version()
        info = self.xc.domain_getinfo(domid) or {}
        partial = (read_image_file(cfg.device_tree, "device tree", mem_bytes)
                   if cfg.device_tree else None)
        ramdisk = self._read_ramdisk(cfg)
        seed = os.urandom(RNG_SEED_SIZE)

        def dtb_for(initrd: tuple[int, int] | None) -> bytes:
            return make_guest_dtb(layout, nr_vcpus=cfg.maxvcpus, mem_bytes=mem_bytes,
                                  cmdline=cfg.cmdline, initrd=initrd, rng_seed=seed,
                                  xen_version=(version["major"], version["minor"]),
                                  clock_frequency=info.get("arch_config", {}).get("clock_frequency"),
                                  gpaddr_bits=info.get("gpaddr_bits"), vuart=cfg.vuart,
                                  iomem=[(start if gfn is None else gfn, number)
                                         for start, number, gfn in cfg.iomem],
                                  partial_fdt=partial, partial_name=str(cfg.device_tree))
        try:
            # libxl sizes the tree with placeholder initrd bounds and fills them in once
            # libxenguest has placed the ramdisk (libxl__arch_domain_finalise_hw_description).
            # libxl 4.4 loaded a ramdisk but did not describe it in the tree.
            described = ramdisk is not None and layout.magic_base is not None
            dtb = dtb_for((0, 0) if described else None)
            placement = place_domu(image, layout, mem_bytes, dtb_size=len(dtb),
                                   ramdisk_size=len(ramdisk or b""))
            if described:
                assert placement.ramdisk_addr is not None
                # vend is the segment's start plus the file's size (xc_dom_alloc_segment).
                dtb = dtb_for((placement.ramdisk_addr, placement.ramdisk_addr + len(ramdisk)))
        except ValueError as e:
            msg = str(e)
            raise CreateError(msg if cfg.device_tree and msg.startswith(f"{cfg.device_tree}:")
                              else f"{cfg.name}: {msg}") from None
        self.detail("xc_dom_mem_init", f"mem {mem_bytes >> 20} MB, pages 0x{mem_bytes >> 12:x} "
                    f"pages, 4k each (guest layout {layout.name})")
        self.detail("xc_dom_build_image", f"kernel at 0x{placement.load_addr:x}, device tree "
                    f"({len(dtb)} bytes) at 0x{placement.dtb_addr:x}, entry 0x{placement.entry:x}")
        # libxl__build_pre: the target plus libxl__arch_extra_memory (LIBXL_MAXMEM_CONSTANT,
        # room for the magic pages), so nr_pages stays within max_pages.
        self.xc.domain_setmaxmem(domid, (cfg.maxmem << 10) + LIBXL_MAXMEM_CONSTANT)
        try:
            self.xc.populate_physmap(domid, layout.ram_base >> 12, mem_bytes >> 12)
        except XcError as e:
            free = self.xc.physinfo()["free_pages"] >> 8
            raise CreateError(f"not enough memory for {cfg.name}: {cfg.memory} MB asked, "
                              f"{free} MB free ({e})") from None
        ram, base = self.xc.map_foreign_ram(domid)
        try:
            ram[placement.load_addr - base:placement.load_addr - base + len(placement.image)] = \
                placement.image
            ram[placement.dtb_addr - base:placement.dtb_addr - base + len(dtb)] = dtb
            if ramdisk is not None and placement.ramdisk_addr is not None:
                off = placement.ramdisk_addr - base
                ram[off:off + len(ramdisk)] = ramdisk
        finally:
            ram.close()
        self.xc.vcpu_setcontext(domid, 0, pc=placement.entry, r0=0, r1=0xFFFFFFFF,
                                r2=placement.dtb_addr, cpsr=layout.psr_guest32_init, sctlr=SCTLR_GUEST_INIT)
        for n in range(cfg.maxvcpus):
            hard = cfg.cpus[n] if n < len(cfg.cpus) else None
            soft = cfg.cpus_soft[n] if n < len(cfg.cpus_soft) else None
            if hard is not None or soft is not None:
                try:
                    self.xc.vcpu_setaffinity(domid, n, sorted(hard) if hard is not None else None,
                                             sorted(soft) if soft is not None else None)
                except XcError as e:
                    nr = self.xc.physinfo()["nr_cpus"]
                    raise CreateError(f"setting affinity failed on vcpu `{n}': "
                                      f"{os.strerror(e.errno)} (this host has pCPUs "
                                      f"0-{nr - 1})") from None
        self._iomem(domid, cfg)
        # The event-channel upcall: PPI 31, level, active low, as libxl sets it for ARM guests.
        self.xc.hvm_param_set(domid, HVM_PARAM_CALLBACK_IRQ, callback_irq_ppi())
        # The magic pages and the store ring: xenstored (in dom0) is the remote end.
        self.xc.populate_magic(domid, layout.magic_pfns(mem_bytes))
        store_pfn = layout.store_pfn(mem_bytes)
        store_port = self.xc.evtchn_alloc_unbound(domid, 0)
        self.xc.hvm_param_set(domid, HVM_PARAM_STORE_PFN, store_pfn)
        self.xc.hvm_param_set(domid, HVM_PARAM_STORE_EVTCHN, store_port)
        self.xc.gnttab_seed(domid, GNTTAB_RESERVED_XENSTORE, store_pfn, backend=0)
        self._write_xenstore(domid, cfg, handle, mem_bytes)
        self.xs.write(f"/local/domain/{domid}/store/port", str(store_port))
        self.xs.write(f"/local/domain/{domid}/store/ring-ref", str(store_pfn))
        # The PV console ring, served by xenconsoled in dom0.
        console_pfn = layout.console_pfn(mem_bytes)
        console_port = self.xc.evtchn_alloc_unbound(domid, 0)
        self.xc.hvm_param_set(domid, HVM_PARAM_CONSOLE_PFN, console_pfn)
        self.xc.hvm_param_set(domid, HVM_PARAM_CONSOLE_EVTCHN, console_port)
        self.xc.gnttab_seed(domid, GNTTAB_RESERVED_CONSOLE, console_pfn, backend=0)
        for key, value in (("port", console_port), ("ring-ref", console_pfn),
                           ("type", "xenconsoled"), ("limit", 1048576), ("backend-id", 0)):
            self.xs.write(f"/local/domain/{domid}/console/{key}", str(value))
        if cfg.vuart == "sbsa_uart":
            self._vuart(domid, layout.vuart_pfn(mem_bytes))
        self.xs.introduce(domid, store_pfn, store_port)
        path = userdata_path(domid)
        path.parent.mkdir(parents=True, exist_ok=True)
        if config_json is None:
            config_json = cfg.to_json()
            config_json["c_info"]["uuid"] = str(handle)  # the domain's, generated if the cfg has none
        path.write_text(json.dumps({"domid": domid, "config": config_json,
                                    "source": {"path": os.path.abspath(cfg.source), "extra": extra}},
                                   indent=4))

    def _vuart(self, domid: int, gfn: int | None) -> None:
        """libxl__arch_build_dom_finish + libxl__device_vuart_add: the vPL011 backed by
        xenconsoled, its ring in the VUART magic page, its nodes under ~/vuart/0."""
        assert gfn is not None          # the DT step refused a vuart on a layout without one
        port = self.xc.vuart_init(domid, gfn, 0)
        front, back = f"/local/domain/{domid}/vuart/0", f"/local/domain/0/backend/vuart/{domid}/0"
        for key, value in (("frontend-id", domid), ("online", 1), ("state", 1),
                           ("protocol", "vt100"), ("frontend", front)):
            self.xs.write(f"{back}/{key}", str(value))
        self.xs.set_perms(back, ["n0", f"r{domid}"])
        for key, value in (("backend", back), ("backend-id", 0), ("port", port),
                           ("ring-ref", gfn), ("limit", 1048576), ("type", "xenconsoled")):
            self.xs.write(f"{front}/{key}", str(value))
        self.xs.set_perms(front, ["n0", f"r{domid}"])

    @staticmethod
    def _read_ramdisk(cfg: DomainConfig) -> bytes | None:
        """The ramdisk file as it is: on ARM libxenguest places it itself, so never unzips it."""
        if cfg.ramdisk is None:
            return None
        try:
            with open(cfg.ramdisk, "rb") as f:
                return f.read()
        except OSError as e:
            raise CreateError(f"{cfg.ramdisk}: cannot read ramdisk ({e.strerror})") from None

    def _iomem(self, domid: int, cfg: DomainConfig) -> None:
        """iomem = ["START,NUM[@GFN]"]: give the domain the machine pages, then map them at GFN
        (default START: the 1:1 mapping the ERIKA port expects), as domcreate_launch_dm does."""
        for start, number, gfn in cfg.iomem:
            end = start + number - 1
            gfn = start if gfn is None else gfn
            try:
                self.xc.domain_iomem_permission(domid, start, number, True)
            except XcError as e:
                hint = (" (the board has no device there that dom0 may pass through; "
                        "see xl dmesg)" if e.errno == errno.EPERM else "")
                raise CreateError(f"failed give domain access to iomem range {start:x}-{end:x}: "
                                  f"{os.strerror(e.errno)}{hint}") from None
            try:
                self.xc.domain_memory_mapping(domid, gfn, start, number, True)
            except XcError as e:
                raise CreateError(f"failed to map to domain iomem range {start:x}-{end:x} to "
                                  f"guest address {gfn:x}: {os.strerror(e.errno)} "
                                  f"(see xl dmesg)") from None

    def board_layout(self, domid: int) -> str:
        info = self.xc.domain_getinfo(domid)
        assert info is not None
        return info.get("arch_config", {}).get("xenpy_layout", "4.4")

    def _write_xenstore(self, domid: int, cfg: DomainConfig, handle: uuidlib.UUID,
                        mem_bytes: int) -> None:
        dom = f"/local/domain/{domid}"
        vm = f"/vm/{handle}"
        xs = self.xs
        xs.mkdir(dom)
        xs.set_perms(dom, ["n0", f"r{domid}"])     # children inherit: dom0 owns, the guest reads
        xs.write(f"{dom}/name", cfg.name)
        entries = {"domid": str(domid), "vm": vm, "memory/static-max": str(cfg.maxmem << 10),
                   "memory/target": str(mem_bytes >> 10), "control/shutdown": "",
                   "control/platform-feature-multiprocessor-suspend": "1",
                   "control/platform-feature-xs_reset_watches": "1"}
        for n in range(cfg.maxvcpus):
            entries[f"cpu/{n}/availability"] = "online" if n < cfg.vcpus else "offline"
        for key, value in entries.items():
            xs.write(f"{dom}/{key}", value)
        # libxl__domain_make: cpu, memory, device and control read-only to the guest; the
        # suspend event channel, control nodes and data dirs owned by it (rwperm).
        xs.write(f"{dom}/device", "")      # cpu, memory and control exist by now
        rw_nodes = ("device/suspend/event-channel", "control/shutdown", "control/feature-poweroff",
                    "control/feature-reboot", "control/feature-suspend", "control/sysrq",
                    "data", "drivers", "feature", "attr", "error")
        for rw in rw_nodes:
            if rw != "control/shutdown":
                xs.write(f"{dom}/{rw}", "")
            xs.set_perms(f"{dom}/{rw}", [f"n{domid}"])    # owned by the domain: it may write
        xs.write(f"{vm}/name", cfg.name)
        xs.write(f"{vm}/uuid", str(handle))
        now = time.time()       # libxl's "%lu.%02d" of tv_sec and tv_usec / 10000
        xs.write(f"{vm}/start_time", f"{int(now)}.{int(now * 100) % 100:02d}")
        xs.write(f"/libxl/{domid}/device", "")
        xs.set_perms(f"/libxl/{domid}", ["n0"])
        xs.set_perms(f"/libxl/{domid}/device", ["n0"])
        xs.write(f"/libxl/{domid}/type", "pvh")

    # -- destroy ---------------------------------------------------------------------------------

    def destroy(self, domid: int) -> None:
        vm = None
        try:
            vm = self.xs.read(f"/local/domain/{domid}/vm").decode()
        except Exception:  # noqa: BLE001
            pass
        self.xc.domain_destroy(domid)
        for path in (f"/local/domain/{domid}", f"/libxl/{domid}", vm):
            if path:
                try:
                    self.xs.rm(path)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        userdata_path(domid).unlink(missing_ok=True)

    def rename(self, domid: int, new_name: str) -> None:
        self.xs.write(f"/local/domain/{domid}/name", new_name)
