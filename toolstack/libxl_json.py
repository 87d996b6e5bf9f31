"""libxl_domain_config as libxl writes it in JSON (libxl_json.c, the generated *_gen_json).

libxl's generator leaves out every field still at its default (an integer 0, a NULL string, an
empty array or bitmap, a defbool never set, an enum at its init value) but always writes nested
structs, even empty ones. The text is yajl's beautified form: four-space indent, and an empty
map or array opened and closed on lines of their own ("{", "", "}").

The values are those xl's parse_config_data leaves before libxl fills its defaults (what
`xl create -n` prints); `xl list -l` prints the stored config of a running domain.
"""
from __future__ import annotations

import json
from typing import Any

from toolstack.domcfg import DomainConfig
from toolstack.xlcfg import Cfg

# libxl_action_on_shutdown names (init value DESTROY, which is therefore never printed).
ACTION_NAMES = {
    "destroy": "destroy", "restart": "restart", "rename-restart": "restart_rename",
    "preserve": "preserve", "coredump-destroy": "coredump_destroy",
    "coredump-restart": "coredump_restart", "soft-reset": "soft_reset",
}


def yajl_dumps(obj: Any) -> str:
    """yajl_gen with yajl_gen_beautify and a four-space indent, as libxl_yajl_gen_alloc sets it
    up; ends with the newline yajl adds after the top-level value."""
    return _gen(obj, 0) + "\n"


def _gen(obj: Any, depth: int) -> str:
    pad, inner = "    " * depth, "    " * (depth + 1)
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_gen(v, depth + 1)}"
                 for k, v in obj.items()]
        return "{\n" + (",\n".join(items) if items else "") + "\n" + pad + "}"
    if isinstance(obj, list):
        items = [f"{inner}{_gen(v, depth + 1)}" for v in obj]
        return "[\n" + (",\n".join(items) if items else "") + "\n" + pad + "]"
    if obj is True or obj is False:
        return "true" if obj else "false"
    return json.dumps(obj, ensure_ascii=False)


def _defbool(b: bool) -> str:
    return "True" if b else "False"


def domain_config(cfg: DomainConfig, raw: Cfg | None, uuid: str, nr_cpus: int) -> dict[str, Any]:
    """The libxl_domain_config xl builds from a parsed config: fields in the IDL's order, only
    those xl sets. `raw` (the parsed file) tells what the file set and holds the paths as
    written; nr_cpus is the size of libxl's CPU bitmaps (the host's max_cpu_id + 1)."""
    def given(key: str) -> bool:
        return raw is not None and raw.has(key)

    def as_written(key: str, resolved: str | None) -> str | None:
        if raw is not None and raw.has(key):
            try:
                return raw.get_string(key, True)
            except ValueError:
                return resolved
        return resolved

    c_info: dict[str, Any] = {"type": cfg.type, "name": cfg.name, "uuid": uuid}
    if cfg.pool is not None:
        c_info["pool_name"] = cfg.pool                  # libxl_domain_create_info's order
    c_info["run_hotplug_scripts"] = _defbool(True)
    b: dict[str, Any] = {"max_vcpus": cfg.maxvcpus, "avail_vcpus": list(range(cfg.vcpus))}

    def affinity(aff: list) -> list[list[int]]:
        return [list(range(nr_cpus)) if a is None else sorted(c for c in a if c < nr_cpus)
                for a in aff]
    if given("cpus"):
        b["vcpu_hard_affinity"] = affinity(cfg.cpus)
    if given("cpus_soft"):
        b["vcpu_soft_affinity"] = affinity(cfg.cpus_soft)
    if given("memory") or given("maxmem"):
        b["max_memkb"] = cfg.max_memkb
    if given("memory"):
        b["target_memkb"] = cfg.target_memkb
    if cfg.max_grant_frames is not None:
        b["max_grant_frames"] = cfg.max_grant_frames
    if cfg.max_maptrack_frames is not None:
        b["max_maptrack_frames"] = cfg.max_maptrack_frames
    b["sched_params"] = {}
    if cfg.irqs:
        b["irqs"] = list(cfg.irqs)
    if cfg.iomem:
        # an unset gfn is LIBXL_INVALID_GFN, its init value: not written
        b["iomem"] = [{k: v for k, v in (("start", s or None), ("number", n or None),
                                         ("gfn", g)) if v is not None}
                      for s, n, g in cfg.iomem]
    b["claim_mode"] = _defbool(True)
    if given("max_event_channels") and cfg.max_event_channels:
        b["event_channels"] = cfg.max_event_channels
    for key in ("kernel", "cmdline", "ramdisk", "device_tree"):
        value = getattr(cfg, key) if key == "cmdline" else as_written(key, getattr(cfg, key))
        if value is not None:
            b[key] = value
    b["type.pvh"] = {}
    arm: dict[str, Any] = {}
    if cfg.gic_version != "default":
        arm["gic_version"] = cfg.gic_version
    if cfg.vuart:
        arm["vuart"] = cfg.vuart
    arm["arm_sci"] = {}
    b["arch_arm"] = arm
    b["arch_x86"] = {}
    b["xenstore_quota"] = {}
    out: dict[str, Any] = {"c_info": c_info, "b_info": b}
    if cfg.dtdev:
        out["dtdevs"] = [{"path": p} for p in cfg.dtdev]
    for key in ("on_poweroff", "on_reboot", "on_watchdog", "on_crash", "on_soft_reset"):
        action = ACTION_NAMES[getattr(cfg, key)]
        if action != "destroy":
            out[key] = action
    return out


def printf_info(domid: int | None, config: dict[str, Any]) -> str:
    """xl_info.c's printf_info_one_json: {"domid": ID or null, "config": CONFIG}."""
    return yajl_dumps({"domid": domid, "config": config})
