"""Typed domain configuration from an xl config file: the xl_parse.c equivalent for Arm guests.

The keys, defaults and messages are xl's (tools/xl/xl_parse.c) and libxl's defaults
(libxl_create.c, libxl_arm.c).  One difference on purpose: where xl prints a warning about a
value of the wrong type and carries on with a default, xenpy stops with a ConfigError, so a
broken config never starts a half-configured guest.  Every error is one line naming the file, the
line (`xl create FILE KEY=VALUE` arguments are numbered after the file's lines, as xl does) and
the key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from xenpy.public.io.xs_wire import XENSTORE_PAYLOAD_MAX

from .xlcfg import Cfg, CfgParseError, CfgValueError, Value, parse_cfg

DEFAULT_MEMORY_MB = 32          # libxl__domain_build_info_setdefault: max_memkb = 32 MiB
DEFAULT_EVENT_CHANNELS = 1023   # libxl_create.c
GUEST_MAX_VCPUS = 128           # arch-arm.h
XEN_NR_CPUS = 128               # Xen's default NR_CPUS on Arm: the CPU set "all" stands for
MAX_PCPU_ID = 4095              # the largest NR_CPUS Xen can be built with, minus one
INT_MAX = (1 << 31) - 1
UINT32_MAX = (1 << 32) - 1
GIC_FIRST_SPI, GIC_LAST_SPI = 32, 1019   # IDs 0-31 are per-CPU (SGI, PPI), 1020+ special
# The name is written as /vm/<uuid>/name (and /local/domain/<domid>/name): path, NUL and value
# in one XenStore request.
NAME_MAX = XENSTORE_PAYLOAD_MAX - len("/vm/00000000-0000-0000-0000-000000000000/name") - 1
PARSE_FAILED = "Failed to parse config: Invalid argument"  # what xl prints after parse errors

# xl spelling -> libxl_action_on_shutdown value (libxl_types.idl).
SHUTDOWN_ACTIONS = {
    "destroy": 1, "restart": 2, "rename-restart": 3, "preserve": 4,
    "coredump-destroy": 5, "coredump-restart": 6, "soft-reset": 7,
}
# libxl's JSON writes the IDL names in lower case.
_ACTION_JSON = {
    "destroy": "destroy", "restart": "restart", "rename-restart": "restart_rename",
    "preserve": "preserve", "coredump-destroy": "coredump_destroy",
    "coredump-restart": "coredump_restart", "soft-reset": "soft_reset",
}
_ACTION_DEFAULTS = {
    "on_poweroff": "destroy", "on_reboot": "restart", "on_watchdog": "destroy",
    "on_crash": "destroy", "on_soft_reset": "soft-reset",
}
GUEST_LAYOUTS = ("4.4", "current")

# Keys this module turns into DomainConfig fields.
MODELLED_KEYS = frozenset({
    "name", "type", "builder", "uuid", "kernel", "ramdisk", "device_tree", "cmdline", "root",
    "extra", "memory", "maxmem", "vcpus", "maxvcpus", "cpus", "cpus_soft", *_ACTION_DEFAULTS,
    "iomem", "irqs", "dtdev", "max_grant_frames", "max_maptrack_frames", "max_event_channels",
    "gic_version", "vuart", "guest_layout", "pool",
})

# Every other key xl_parse.c reads: accepted, kept in DomainConfig.unsupported, warned about.
XL_KEYS = frozenset("""
acpi acpi_firmware acpi_laptop_slate acpi_s3 acpi_s4 altp2m altp2m_count altp2mhvm apic
arm_sci bios bios_path_override boot bootloader bootloader_args bootloader_restrict
bootloader_user cap channel cpu_weight cpuid device_model device_model_args
device_model_override device_model_stubdomain_override device_model_stubdomain_seclabel
device_model_user device_model_version disk display dm_restrict driver_domain e820_host
extratime firmware firmware_override gfx_passthru hap hdtype hpet hvm_pirq init_seclabel
ioports keymap latency llc_colors localtime max_grant_version mca_caps mmio_hole ms_vm_genid
msr_relaxed nestedhvm nographic nomigrate nr_spis nx oos opengl p9 pae passthrough pci
pci_msitranslate pci_permissive pci_power_mgmt pci_seize period pool pvcalls pvshim
pvshim_cmdline pvshim_extra pvshim_path rdm rdm_mem_boundary rtc_timeoffset sdl seclabel
serial shadow_memory slice smbios smbios_firmware soundhw spice spice_clipboard_sharing
spice_image_compression spice_streaming_video spiceagent_mouse spicedisable_ticketing spicehost
spicepasswd spiceport spicetls_port spiceusbredirection spicevdagent stdvga stubdomain_cmdline
stubdomain_kernel stubdomain_memory stubdomain_ramdisk sve tee timer_mode
trap_unmapped_accesses tsc_mode usb usbctrl usbdev usbdevice usbversion vdispl vendor_device
vfb vga videoram vif vif2 viridian virtio vkb vkb_device vmtrace_buf_kb vnc vncdisplay vnclisten
vncpasswd vncunused vncviewer vnuma vpmu vpt_align vsnd vtpm xauthority xen_platform_pci
xen_platform_pci_bar_uc xend_suspend_evtchn_compat xenstore_feature_mask xenstore_quota
""".split()) - MODELLED_KEYS

_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")

Affinity = list[Optional[frozenset[int]]]   # one entry per vCPU; None = any pCPU


class ConfigError(Exception):
    """A config that cannot be used.  str() is one line; `messages` holds every line to show
    (several for a file with several syntax errors, followed by xl's Python warnings)."""

    def __init__(self, message: str, messages: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.messages = list(messages) if messages else [message]


@dataclass
class DomainConfig:
    name: str
    source: str = ""                      # the config file as named by the user
    type: str = "pvh"
    uuid: str | None = None               # None: the toolstack generates one
    kernel: str | None = None             # absolute paths (relative ones resolved like xl)
    ramdisk: str | None = None
    device_tree: str | None = None
    cmdline: str | None = None
    memory: int = DEFAULT_MEMORY_MB       # MiB at start (libxl target_memkb / 1024)
    maxmem: int = DEFAULT_MEMORY_MB       # MiB (libxl max_memkb / 1024)
    vcpus: int = 1                        # online at start
    maxvcpus: int = 1
    cpus: Affinity = field(default_factory=list)       # hard affinity, len == maxvcpus
    cpus_soft: Affinity = field(default_factory=list)  # soft affinity, len == maxvcpus
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_watchdog: str = "destroy"
    on_crash: str = "destroy"
    on_soft_reset: str = "soft-reset"
    iomem: list[tuple[int, int, int | None]] = field(default_factory=list)  # (mfn, nr, gfn)
    irqs: list[int] = field(default_factory=list)
    dtdev: list[str] = field(default_factory=list)
    max_grant_frames: int | None = None     # None: the hypervisor's default
    max_maptrack_frames: int | None = None
    max_event_channels: int = DEFAULT_EVENT_CHANNELS
    gic_version: str = "default"            # "default", "v2" or "v3"
    vuart: str | None = None                # "sbsa_uart" or None
    guest_layout: str | None = None         # "4.4", "current", or None for the board's default
    pool: str | None = None                 # the cpupool (name or id) to create it in
    unsupported: dict[str, Value] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cpus = self.cpus or [None] * self.maxvcpus
        self.cpus_soft = self.cpus_soft or [None] * self.maxvcpus

    @property
    def max_memkb(self) -> int:
        return self.maxmem * 1024

    @property
    def target_memkb(self) -> int:
        return self.memory * 1024

    def to_json(self, nr_cpus: int | None = None) -> dict[str, Any]:
        """The config shaped like libxl_domain_config's JSON, as `xl list -l` prints it.

        An affinity of "any pCPU" is written as every CPU below nr_cpus (XEN_NR_CPUS if not
        given), like libxl's all-ones bitmap."""
        every = list(range(nr_cpus or XEN_NR_CPUS))

        def affinity(aff: Affinity) -> list[list[int]]:
            return [every if a is None else sorted(a) for a in aff]

        b_info: dict[str, Any] = {
            "max_vcpus": self.maxvcpus,
            "avail_vcpus": list(range(self.vcpus)),
        }
        if any(a is not None for a in self.cpus):
            b_info["vcpu_hard_affinity"] = affinity(self.cpus)
        if any(a is not None for a in self.cpus_soft):
            b_info["vcpu_soft_affinity"] = affinity(self.cpus_soft)
        b_info["max_memkb"] = self.max_memkb
        b_info["target_memkb"] = self.target_memkb
        if self.max_grant_frames is not None:
            b_info["max_grant_frames"] = self.max_grant_frames
        if self.max_maptrack_frames is not None:
            b_info["max_maptrack_frames"] = self.max_maptrack_frames
        if self.irqs:
            b_info["irqs"] = list(self.irqs)
        if self.iomem:
            # libxl fills an unset gfn with the machine frame (1:1 mapping).
            b_info["iomem"] = [{"start": s, "number": n, "gfn": s if g is None else g}
                               for s, n, g in self.iomem]
        b_info["event_channels"] = self.max_event_channels
        for key in ("kernel", "cmdline", "ramdisk", "device_tree"):
            if getattr(self, key) is not None:
                b_info[key] = getattr(self, key)
        b_info["arch_arm"] = {"gic_version": self.gic_version,
                              "vuart": self.vuart or "unknown"}
        b_info["type"] = self.type
        out: dict[str, Any] = {
            "c_info": {"type": self.type, "name": self.name,
                       "uuid": self.uuid or "00000000-0000-0000-0000-000000000000",
                       **({"pool_name": self.pool} if self.pool is not None else {})},
            "b_info": b_info,
        }
        if self.dtdev:
            out["dtdevs"] = [{"path": p} for p in self.dtdev]
        for key in _ACTION_DEFAULTS:
            out[key] = _ACTION_JSON[getattr(self, key)]
        return out


# --------------------------------------------------------------------------------------------


class _Reader:
    """Reads typed values out of a Cfg, turning every problem into a one-line ConfigError."""

    def __init__(self, cfg: Cfg) -> None:
        self.cfg = cfg

    def where(self, key: str) -> str:
        s = self.cfg.setting(key)
        assert s is not None
        return f"{s.source}:{s.lineno}"

    def error(self, key: str, text: str) -> ConfigError:
        return ConfigError(f"{self.where(key)}: {text}")

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except CfgValueError as e:
            raise ConfigError(f"{e.source}:{e.lineno}: {e.text}") from None

    def string(self, key: str) -> str | None:
        return self._call(self.cfg.get_string, key)

    def long(self, key: str, lo: int, hi: int) -> int | None:
        return self._call(self.cfg.get_bounded_long, key, lo, hi)

    def list(self, key: str) -> list[Value] | None:
        return self._call(self.cfg.get_list, key)

    def string_list(self, key: str, what: str) -> list[str] | None:
        items = self.list(key)
        if items is None:
            return None
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.error(key, f"xl: Unable to get element {i} in {what} list")
        return items  # type: ignore[return-value]


def _strtoul(s: str, base: int) -> tuple[int, int, bool]:
    """C strtoul on an LP64 host: (value, characters used, overflowed)."""
    i = 0
    while i < len(s) and s[i] in " \t\n\v\f\r":
        i += 1
    neg = False
    if i < len(s) and s[i] in "+-":
        neg = s[i] == "-"
        i += 1
    if base == 16 and s[i:i + 2].lower() == "0x" and s[i + 2:i + 3] and \
            s[i + 2] in "0123456789abcdefABCDEF":
        i += 2
    digits = "0123456789abcdefABCDEF"[:base if base <= 10 else base + 6]
    start = i
    while i < len(s) and s[i] in digits:
        i += 1
    if i == start:
        return 0, 0, False
    value = int(s[start:i], base)
    if value > (1 << 64) - 1:
        return (1 << 64) - 1, i, True
    return (-value) % (1 << 64) if neg else value, i, False


def parse_iomem(spec: str) -> tuple[int, int, int | None] | None:
    """sscanf(spec, "%x,%x%n@%x%n") as xl uses it; None if xl would reject it."""
    start, used, _ = _strtoul(spec, 16)
    if not used or spec[used:used + 1] != ",":
        return None
    i = used + 1
    number, used, _ = _strtoul(spec[i:], 16)
    if not used:
        return None
    i += used
    if i == len(spec):
        return start, number, None
    if spec[i] != "@":
        return None
    gfn, used, _ = _strtoul(spec[i + 1:], 16)
    if not used or i + 1 + used != len(spec):
        return None
    return start, number, gfn


def parse_cpulist(spec: str, nr_cpus: int | None = None) -> frozenset[int] | None:
    """A CPULIST ("all", "0-3,5,^1") as a set of pCPUs, None meaning all of them.

    Raises ValueError with xl's message.  nr_cpus is what "all" means when CPUs are then
    removed from it ("all,^1")."""
    cur: set[int] | None = set()
    for item in (t for t in spec.split(",") if t):      # strtok skips empty items
        remove = item.startswith("^")
        body = item[1:] if remove else item
        if body.startswith(("node:", "nodes:")):
            raise ValueError(f"NUMA node lists (\"{item}\") are not supported: "
                             "a xenpy board has no NUMA nodes")
        if body == "all":
            if remove:
                raise ValueError("Can't combine \"^\" and \"all\".")
            cur = None
            continue
        a, used, over = _strtoul(body, 10)
        b = a
        if used and not over and body[used:used + 1] == "-":
            b, used2, over = _strtoul(body[used + 1:], 10)
            used = used + 1 + used2 if used2 else 0
            if b < a:
                used = 0
        if not used or over or used != len(body) or a == (1 << 64) - 1 or b == (1 << 64) - 1:
            raise ValueError(f"Invalid pcpu range: {body}.")
        if b > MAX_PCPU_ID:
            raise ValueError(f"pCPU {b} is out of range (at most {MAX_PCPU_ID})")
        ids = set(range(a, b + 1))
        if remove:
            if cur is None:
                cur = set(range(nr_cpus or XEN_NR_CPUS))
            cur -= ids
        elif cur is not None:
            cur |= ids
    if cur is None:
        return None
    if not cur:
        raise ValueError(f"CPU list \"{spec}\" selects no CPU")
    return frozenset(cur)


def _affinity(r: _Reader, key: str, maxvcpus: int, nr_cpus: int | None,
              warnings: list[str]) -> Affinity:
    value = r.cfg.get_string_or_list(key)
    result: Affinity = [None] * maxvcpus
    if value is None:
        return result
    try:
        if isinstance(value, str):          # one CPULIST for every vCPU
            return [parse_cpulist(value, nr_cpus)] * maxvcpus
        if len(value) > maxvcpus:
            warnings.append(f"{r.where(key)}: warning: parameter `{key}' has {len(value)} "
                            f"entries but the domain has {maxvcpus} vCPUs; the extra "
                            "entries are ignored")
        for i, item in enumerate(value[:maxvcpus]):
            if not isinstance(item, str):
                raise ValueError(f"entry {i} is a list but should be a CPULIST string")
            result[i] = parse_cpulist(item, nr_cpus)
    except ValueError as e:
        raise r.error(key, f"parameter `{key}': {e}") from None
    return result


def _resolve(path: str | None, cfg_file: str | None) -> str | None:
    """xl hands the path to libxl, which opens it from xl's working directory. Unlike xl, a
    relative path missing there is also looked for beside the config file, so an example
    directory (a cfg next to its image) works from anywhere."""
    if path is None:
        return None
    here = os.path.abspath(path)
    if os.path.isabs(path) or os.path.exists(here) or not cfg_file:
        return here
    beside = os.path.join(os.path.dirname(os.path.abspath(cfg_file)), path)
    return beside if os.path.exists(beside) else here


def domain_config_from_cfg(cfg: Cfg, nr_cpus: int | None = None
                           ) -> tuple[DomainConfig, list[str]]:
    """Build a DomainConfig from a parsed config, in xl_parse.c's order (so the first problem
    reported is the one xl would report first).  Returns the config and its warning lines."""
    r = _Reader(cfg)
    warnings: list[str] = []

    # type / builder: matched as a prefix of the value, as xl does with strncmp.
    dtype = None
    t = r.string("type")
    if t is not None:
        dtype = next((k for k in ("hvm", "pv", "pvh") if k.startswith(t)), None)
        if dtype is None:
            raise r.error("type", f"Invalid domain type {t}.")
    b = r.string("builder")
    if b is not None:
        btype = "hvm" if "hvm".startswith(b) else "pv" if "generic".startswith(b) else None
        if btype is None:
            raise r.error("builder", f"Invalid domain type {b}.")
        if dtype is not None and dtype != btype:
            raise r.error("builder", "Contradicting \"builder\" and \"type\" options specified.")
        dtype = btype
    if dtype == "hvm":
        raise r.error("builder" if b is not None else "type", "Unsupported Arm guest type hvm")
    if dtype == "pv":   # libxl_arm.c converts, with these three warnings
        warnings += ["Converting PV guest to PVH.", "Arm guest are now PVH.",
                     "Please fix your configuration file/toolstack."]

    name = r.string("name")
    if not name:
        src = cfg.filename if name is None else r.where("name")
        raise ConfigError(f"{src}: Domain name must be specified.")
    if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise r.error("name", f"the name is {len(name.encode('utf-8', 'surrogateescape'))} "
                              f"bytes long; at most {NAME_MAX} fit in XenStore "
                              f"(/vm/<uuid>/name within a {XENSTORE_PAYLOAD_MAX}-byte request)")

    uuid = r.string("uuid")
    if uuid is not None:
        if not _UUID_RE.fullmatch(uuid):
            raise r.error("uuid", f"Failed to parse UUID: {uuid}")
        uuid = uuid.lower()

    memory = r.long("memory", 1, INT_MAX)
    maxmem = r.long("maxmem", 1, INT_MAX)

    vcpus = r.long("vcpus", -(1 << 63), (1 << 63) - 1)
    if vcpus is not None and vcpus < 1:
        # xl quietly starts such a domain with one vCPU; a typo should not pass unnoticed.
        raise r.error("vcpus", f"vcpus = {vcpus}: a domain needs at least one vCPU")
    vcpus = 1 if vcpus is None else vcpus
    maxvcpus = r.long("maxvcpus", -(1 << 63), (1 << 63) - 1)
    vuart = r.string("vuart")
    if vuart is not None:
        if vuart.lower() not in ("sbsa_uart", "unknown"):
            raise r.error("vuart", f"ERROR: invalid value \"{vuart}\" for \"vuart\"")
        vuart = None if vuart.lower() == "unknown" else "sbsa_uart"
    if not maxvcpus:
        maxvcpus = vcpus
    if maxvcpus < vcpus:
        raise r.error("maxvcpus", "xl: maxvcpus < vcpus")
    if maxvcpus > GUEST_MAX_VCPUS:
        key = "maxvcpus" if cfg.has("maxvcpus") else "vcpus"
        raise r.error(key, f"{maxvcpus} vCPUs requested but an Arm guest can have at most "
                           f"{GUEST_MAX_VCPUS}")

    cpus = _affinity(r, "cpus", maxvcpus, nr_cpus, warnings)
    cpus_soft = _affinity(r, "cpus_soft", maxvcpus, nr_cpus, warnings)

    max_grant_frames = r.long("max_grant_frames", 0, INT_MAX)
    max_maptrack_frames = r.long("max_maptrack_frames", 0, INT_MAX)

    actions = {}
    for key, default in _ACTION_DEFAULTS.items():
        v = r.string(key)
        if v is None:
            v = default
        elif v not in SHUTDOWN_ACTIONS:
            raise r.error(key, f"Unknown {key} action \"{v}\" specified")
        actions[key] = v

    dtdev = r.string_list("dtdev", "dtdev") or []

    evtchn = r.long("max_event_channels", 0, UINT32_MAX)
    kernel, ramdisk = r.string("kernel"), r.string("ramdisk")
    device_tree = r.string("device_tree")
    for key, path in (("kernel", kernel), ("ramdisk", ramdisk), ("device_tree", device_tree)):
        if path == "":
            raise r.error(key, f"parameter `{key}' is an empty path")

    cmdline, root, extra = r.string("cmdline"), r.string("root"), r.string("extra")
    if cmdline is not None:
        if root is not None or extra is not None:
            warnings.append("Warning: ignoring root= and extra= in favour of cmdline=")
    elif root is not None:
        cmdline = f"root={root} {extra}" if extra is not None else f"root={root}"
    else:
        cmdline = extra

    irqs: list[int] = []
    for item in r.string_list("irqs", "irq") or []:
        value, used, over = _strtoul(item, 10)
        if not used or used != len(item):
            raise r.error("irqs", f"xl: Invalid argument parsing irq: {item}")
        if over or value >= UINT32_MAX:
            raise r.error("irqs", f"xl: irq {value:x} too big")
        if not GIC_FIRST_SPI <= value <= GIC_LAST_SPI:
            raise r.error("irqs", f"irq {value} is out of range: a domain can be given only "
                                  f"shared peripheral interrupts, {GIC_FIRST_SPI}-{GIC_LAST_SPI} "
                                  f"on an Arm GIC")
        irqs.append(value)

    iomem = []
    for item in r.string_list("iomem", "iomem") or []:
        rng = parse_iomem(item)
        if rng is None:
            raise r.error("iomem", f"xl: Invalid argument parsing iomem: {item}")
        iomem.append(rng)

    gic = r.string("gic_version")
    if gic is not None:
        if gic.lower() not in ("default", "v2", "v3"):
            raise r.error("gic_version", f"Unknown gic_version \"{gic}\" specified")
        gic = gic.lower()

    layout = r.string("guest_layout")
    if layout is not None and layout not in GUEST_LAYOUTS:
        raise r.error("guest_layout", f"Unknown guest_layout \"{layout}\" specified "
                                      "(\"4.4\" or \"current\")")

    pool = r.string("pool")

    # libxl: an unset target follows maxmem, an unset maxmem follows the target.
    if memory is None:
        memory = maxmem if maxmem is not None else DEFAULT_MEMORY_MB
    if maxmem is None:
        maxmem = memory
    if maxmem < memory:
        raise r.error("maxmem", f"maxmem={maxmem} must be equal to or greater than "
                                f"memory={memory}")

    unsupported: dict[str, Value] = {}
    for key in cfg.names():
        if key in MODELLED_KEYS:
            continue
        s = cfg.setting(key)
        assert s is not None
        if key in XL_KEYS:
            unsupported[key] = s.value
            warnings.append(f"{s.source}:{s.lineno}: warning: parameter `{key}' is not "
                            "supported by xenpy and is ignored")
        else:
            warnings.append(f"{s.source}:{s.lineno}: warning: unknown parameter `{key}' "
                            "ignored")

    # Checked as xl does, but nothing in xenpy acts on them: say so rather than ignore silently.
    for key, given, why in (("irqs", irqs, "no physical interrupt is routed to a domU"),
                            ("dtdev", dtdev, "there is no IOMMU to assign a device with")):
        if given:
            warnings.append(f"{r.where(key)}: warning: parameter `{key}' is not supported by "
                            f"xenpy and is ignored ({why})")

    dc = DomainConfig(
        name=name, source=cfg.filename, type="pvh", uuid=uuid,
        kernel=_resolve(kernel, cfg.filename), ramdisk=_resolve(ramdisk, cfg.filename),
        device_tree=_resolve(device_tree, cfg.filename),
        cmdline=cmdline, memory=memory, maxmem=maxmem, vcpus=vcpus, maxvcpus=maxvcpus,
        cpus=cpus, cpus_soft=cpus_soft, iomem=iomem, irqs=irqs, dtdev=dtdev,
        max_grant_frames=max_grant_frames, max_maptrack_frames=max_maptrack_frames,
        max_event_channels=evtchn or DEFAULT_EVENT_CHANNELS, gic_version=gic or "default",
        vuart=vuart, guest_layout=layout, pool=pool, unsupported=unsupported, **actions)
    return dc, warnings


def load_domain_config(path: str, extra: Sequence[str] = (), *, nr_cpus: int | None = None
                       ) -> tuple[DomainConfig, list[str]]:
    """Read and check a domain config file, like the start of `xl create FILE [KEY=VALUE...]`.

    nr_cpus is the host's CPU count, used only when a CPU list removes CPUs from "all".
    Raises ConfigError; returns the config and the warning lines to print."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"Failed to read config file: {path}: "
                          f"{os.strerror(e.errno or 0)}") from None
    text = data.decode("utf-8", "surrogateescape")
    try:
        cfg = parse_cfg(text, path, extra)
    except CfgParseError as e:
        crlf = crlf_message(text, path)
        if crlf:
            raise ConfigError(crlf) from None
        raise ConfigError(e.messages[0], e.messages) from None
    return domain_config_from_cfg(cfg, nr_cpus)


def crlf_message(text: str, path: str) -> str | None:
    """A file that failed to parse because of DOS line endings: xl's lexer stops at each \r,
    several times over; one line naming the first carriage return says why."""
    cr = text.find("\r")
    if cr < 0:
        return None
    line = text.count("\n", 0, cr) + 1
    col = cr - (text.rfind("\n", 0, cr) + 1) + 1
    return (f"{path}:{line}:{col}: carriage return (\\r) in the file: it has DOS/Windows (CRLF) "
            f"line endings, and xl reads only LF (convert it, e.g. with dos2unix)")


__all__ = [
    "ConfigError", "DomainConfig", "load_domain_config", "domain_config_from_cfg",
    "parse_cpulist", "parse_iomem", "SHUTDOWN_ACTIONS", "PARSE_FAILED",
]
