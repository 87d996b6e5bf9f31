"""xl cpupool-create, -list, -destroy, -rename, -cpu-add, -cpu-remove, -migrate (xl_cpupool.c)."""
from __future__ import annotations

import os
import uuid as uuidlib

from toolstack.libxl_cpupool import Cpupools, scheduler_from_string, scheduler_to_string
from toolstack.xl.utils import (XTL_ERROR, G, config_args, ctx, domid_to_name, err, getopts,
                                log, parse_cpurange)
from toolstack.xlcfg import COMMAND_LINE, CfgParseError, CfgValueError, parse_cfg


def pools() -> Cpupools:
    lx = ctx()
    return Cpupools(lx.xc, lx.xs,
                    lambda where, func, msg, domid: log(XTL_ERROR, where, func, msg, domid))


def _nr_cpus() -> int:
    return ctx().xc.physinfo()["max_cpu_id"] + 1


def _poolid(p: Cpupools, pool: str) -> int | None:
    """libxl_cpupool_qualifier_to_cpupoolid + libxl_cpupoolid_is_valid."""
    poolid = p.qualifier_to_cpupoolid(pool)
    return poolid if poolid is not None and p.cpupoolid_is_valid(poolid) else None


def main_cpupoolcreate(argv: list[str]) -> int:
    opts, args = getopts(argv[1:], "nf:", ["defconfig=", "dryrun"], "cpupool-create", 0)
    filename = None
    for o, a in opts:
        if o in ("-f", "--defconfig"):
            filename = a
        elif o in ("-n", "--dryrun"):
            G.dryrun_only = True
    try:
        filename, extra = config_args(args, filename, "cpupool-create")
    except ValueError:
        return 1
    text = ""
    if filename is not None:
        try:
            with open(filename, "rb") as f:
                text = f.read().decode("utf-8", "surrogateescape")
        except OSError as e:
            err(f"Failed to read config file: {filename}: {os.strerror(e.errno or 0)}")
            return 1
    source = filename if filename is not None else COMMAND_LINE
    try:
        cfg = parse_cfg(text, source, extra)
    except CfgParseError as e:
        for m in e.messages:
            err(m)
        err(f"Failed to parse config file: {os.strerror(22)}")
        return 1
    try:
        return _create(cfg, filename, source)
    except CfgValueError as e:
        err(str(e))
        return 1


def _create(cfg, filename: str | None, source: str) -> int:
    p = pools()
    name = cfg.get_string("name", dont_warn=True)
    if name is None:
        if filename is None:
            err("Missing cpupool name!")
            return 1
        name = os.path.basename(filename)          # libxl_basename
    if p.name_to_cpupoolid(name) is not None:
        err(f'Pool name "{name}" already exists')
        return 1
    sched_name = cfg.get_string("sched", dont_warn=True)
    if sched_name is not None:
        sched = scheduler_from_string(sched_name)
        if sched is None:
            err("Unknown scheduler")
            return 1
    else:
        sched = ctx().xc.sched_id()
    free = p.get_freecpus()
    nr = _nr_cpus()
    cpus: set[int] = set()
    nodes = cfg.get_list_as_string_list("nodes", dont_warn=True)
    cpu_list = cfg.get_list_as_string_list("cpus", dont_warn=True)
    if nodes is not None:
        for item in nodes:                       # one NUMA node (0) holds every pCPU here
            if item is not None and _atoi(item) == 0:
                cpus |= free
        if not cpus:
            err("no free cpu found")
            return 1
    elif cpu_list is not None:
        for item in cpu_list:
            if item is None:
                break                            # xlu_cfg_get_listitem ends at a non-string
            i = _atoi(item)
            if i < 0 or i not in free:
                err(f"cpu {i} illegal or not free")
                return 1
            cpus.add(i)
    elif (text := cfg.get_string("cpus", dont_warn=True)) is not None:
        parsed = parse_cpurange(text, nr)
        if parsed is None:
            return 1
        for i in sorted(parsed):
            if i not in free:
                err(f"cpu {i} illegal or not free")
                return 1
        cpus = parsed
    print(f'Using config file "{source}"')
    print(f"cpupool name:   {name}")
    print(f"scheduler:      {scheduler_to_string(sched)}")
    print(f"number of cpus: {len(cpus)}", flush=True)
    if not G.dryrun_only:
        if p.create(name, sched, cpus, uuidlib.uuid4()) is None:
            err("error on creating cpupool")
            return 1
    return 0


def _atoi(text: str) -> int:
    import re
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0


def main_cpupoollist(argv: list[str]) -> int:
    opts, args = getopts(argv[1:], "c", ["cpus"], "cpupool-list", 0)
    opt_cpus = bool(opts)
    p = pools()
    poolid = None
    if args:
        poolid = p.name_to_cpupoolid(args[0])
        if poolid is None:
            err(f"Pool '{args[0]}' does not exist")
            return 1
    info = p.list_cpupool()
    out = [f"{'Name':<19}" + ("CPU list" if opt_cpus else
                              "CPUs   Sched     Active   Domain count")]
    for pool in info:
        if poolid is not None and pool.poolid != poolid:
            continue
        row = f"{pool.pool_name:<19}"
        if opt_cpus:
            row += ",".join(str(c) for c in pool.cpumap)
        else:
            #      "%3d %9s       y       %4d"
            row += f"{len(pool.cpumap):3d} {scheduler_to_string(pool.sched):>9}       y       " \
                   f"{pool.n_dom:4d}"
        out.append(row)
    print("\n".join(out))
    return 0


def main_cpupooldestroy(argv: list[str]) -> int:
    _, args = getopts(argv[1:], "", [], "cpupool-destroy", 1)
    pool = args[0]
    p = pools()
    poolid = _poolid(p, pool)
    if poolid is None:
        err(f"unknown cpupool '{pool}'")
        return 1
    if p.destroy(poolid):
        err(f"Can't destroy cpupool '{pool}'")
        return 1
    return 0


def main_cpupoolrename(argv: list[str]) -> int:
    _, args = getopts(argv[1:], "", [], "cpupool-rename", 2)
    pool, new_name = args[0], args[1]
    p = pools()
    poolid = _poolid(p, pool)
    if poolid is None:
        err(f"unknown cpupool '{pool}'")
        return 1
    if p.rename(new_name, poolid):
        err(f"Can't rename cpupool '{pool}'")
        return 1
    return 0


def _pool_and_cpus(argv: list[str], cmd: str):
    """POOL CPUS of cpupool-cpu-add/-remove: (the pools, the pool's id, its name, the cpus),
    or None once the error is said."""
    _, args = getopts(argv[1:], "", [], cmd, 2)
    pool = args[0]
    cpus = parse_cpurange(args[1], _nr_cpus())
    if cpus is None:
        return None
    p = pools()
    poolid = _poolid(p, pool)
    if poolid is None:
        err(f"unknown cpupool '{pool}'")
        return None
    return p, poolid, pool, cpus


def main_cpupoolcpuadd(argv: list[str]) -> int:
    got = _pool_and_cpus(argv, "cpupool-cpu-add")
    if got is None:
        return 1
    p, poolid, pool, cpus = got
    if p.cpuadd_cpumap(poolid, cpus):
        err(f"some cpus may not have been added to {pool}")
    return 0


def main_cpupoolcpuremove(argv: list[str]) -> int:
    got = _pool_and_cpus(argv, "cpupool-cpu-remove")
    if got is None:
        return 1
    p, poolid, pool, cpus = got
    if p.cpuremove_cpumap(poolid, cpus):
        err(f"Some cpus may have not or only partially been removed from '{pool}'.")
        err(f"If a cpu can't be added to another cpupool, add it to '{pool}' again and retry.")
    return 0


def main_cpupoolmigrate(argv: list[str]) -> int:
    _, args = getopts(argv[1:], "", [], "cpupool-migrate", 2)
    dom, pool = args[0], args[1]
    lx = ctx()
    if dom.isdigit():                           # libxl_domain_qualifier_to_domid
        domid: int | None = int(dom)
    else:
        domid = next((i.domid for i in lx.list_domains() if i.name == dom), None)
    if domid is None or domid_to_name(domid) is None:
        err(f"unknown domain '{dom}'")
        return 1
    p = pools()
    poolid = _poolid(p, pool)
    if poolid is None:
        err(f"unknown cpupool '{pool}'")
        return 1
    return 1 if p.movedomain(poolid, domid) else 0


def main_cpupoolnumasplit(argv: list[str]) -> int:
    """One pool per NUMA node. A xenpy board is one node: Pool-0 takes every free pCPU and
    becomes "Pool-node0", as xl leaves a one-node machine."""
    getopts(argv[1:], "", [], "cpupool-numa-split", 0)
    p = pools()
    info = p.list_cpupool()
    if not info:
        err("error getting cpupool info")
        return 1
    if len(info) > 1:
        err("splitting not possible, already cpupools in use")
        return 1
    phys = ctx().xc.physinfo()
    if phys.get("nr_nodes", 1) != 1:
        err("libxl_get_topologyinfo failed")     # only one node's topology is modelled
        return 1
    p.cpuadd_cpumap(info[0].poolid, p.get_freecpus())      # libxl_cpupool_cpuadd_node
    if p.rename("Pool-node0", info[0].poolid):
        err("error on renaming Pool 0")
        return 1
    return 0
