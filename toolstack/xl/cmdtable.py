"""xl's command table (xl_cmdtable.c): name, handler, description, usage and option help, and
whether the command honours the global -N (dry run) and modifies state (may take -f).

The texts are xl's, so `xl help CMD` and `xl CMD -h` print xl's own page. A handler is named
"module.function" in this package and imported when its command runs.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Cmd:
    name: str
    impl: str
    can_dryrun: int
    modifies: int
    desc: str
    usage: str
    options: str = ""

    def handler(self) -> Callable[[list[str]], int]:
        module, fn = self.impl.split(".")
        return getattr(importlib.import_module(f"toolstack.xl.{module}"), fn)


CMD_TABLE: tuple[Cmd, ...] = (
    Cmd('create', "vmcontrol.main_create", can_dryrun=1, modifies=1,
        desc='Create a domain from config file <filename>',
        usage='<ConfigFile> [options] [vars]',
        options=('-c                      Connect to the console after the domain is created.\n'
                 '-d                      Enable debug messages.\n'
                 '-e                      Do not wait in the background for the death of the domain.\n'
                 '-F                      Run in foreground until death of the domain.\n'
                 '-f FILE, --defconfig=FILE\n'
                 '                     Use the given configuration file.\n'
                 '-h                      Print this help.\n'
                 '-n, --dryrun            Dry run - prints the resulting configuration\n'
                 '                         (deprecated in favour of global -N option).\n'
                 '-p                      Leave the domain paused after it is created.\n'
                 '-q, --quiet             Quiet.\n'
                 '-V, --vncviewer         Connect to the VNC display after the domain is created.\n'
                 '-A, --vncviewer-autopass\n'
                 '                        Pass VNC password to viewer via stdin.\n'
                 '--ignore-global-affinity-masks Ignore global masks in xl.conf.')),
    Cmd('list', "info.main_list", can_dryrun=0, modifies=0,
        desc='List information about all/some domains',
        usage='[options] [Domain]\n',
        options=('-l, --long              Output all VM details\n'
                 '-v, --verbose           Prints out UUIDs and security context\n'
                 '-Z, --context           Prints out security context\n'
                 '-c, --cpupool           Prints the cpupool the domain is in\n'
                 '-n, --numa              Prints out NUMA node affinity')),
    Cmd('destroy', "vmcontrol.main_destroy", can_dryrun=0, modifies=1,
        desc='Terminate a domain immediately',
        usage='[options] <Domain>\n',
        options=('-f                      Permit destroying domain 0, which will only succeed\n'
                 '                        when run from disaggregated toolstack domain with a\n'
                 '                        hardware domain distinct from domain 0.')),
    Cmd('shutdown', "vmcontrol.main_shutdown", can_dryrun=0, modifies=1,
        desc='Issue a shutdown signal to a domain',
        usage='[options] <-a|Domain>',
        options=('-a, --all               Shutdown all guest domains.\n'
                 '-h                      Print this help.\n'
                 '-F                      Fallback to ACPI power event for HVM guests with\n'
                 '                        no PV drivers.\n'
                 '-w, --wait              Wait for guest(s) to shutdown.\n')),
    Cmd('reboot', "vmcontrol.main_reboot", can_dryrun=0, modifies=1,
        desc='Issue a reboot signal to a domain',
        usage='[options] <-a|Domain>',
        options=('-a, --all               Shutdown all guest domains.\n'
                 '-h                      Print this help.\n'
                 '-F                      Fallback to ACPI reset event for HVM guests with\n'
                 '                        no PV drivers.\n'
                 '-w, --wait              Wait for guest(s) to reboot.\n')),
    Cmd('pause', "vmcontrol.main_pause", can_dryrun=0, modifies=1,
        desc='Pause execution of a domain',
        usage='<Domain>'),
    Cmd('unpause', "vmcontrol.main_unpause", can_dryrun=0, modifies=1,
        desc='Unpause a paused domain',
        usage='<Domain>'),
    Cmd('console', "console.main_console", can_dryrun=0, modifies=0,
        desc="Attach to domain's console",
        usage=('[options] <Domain>\n'
               '-t <type>       console type, pv , serial or vuart\n'
               '-n <number>     console number\n'
               '-e <escape>     escape character')),
    Cmd('dump-core', "misc.main_dump_core", can_dryrun=0, modifies=1,
        desc='Core dump a domain',
        usage='<Domain> <filename>'),
    Cmd('mem-max', "mem.main_mem_max", can_dryrun=0, modifies=1,
        desc='Set the maximum amount reservation for a domain',
        usage="<Domain> <MemMB['b'[bytes]|'k'[KB]|'m'[MB]|'g'[GB]|'t'[TB]]>"),
    Cmd('mem-set', "mem.main_mem_set", can_dryrun=0, modifies=1,
        desc='Set the current memory usage for a domain',
        usage="<Domain> <MemMB['b'[bytes]|'k'[KB]|'m'[MB]|'g'[GB]|'t'[TB]]>"),
    Cmd('vcpu-list', "vcpu.main_vcpu_list", can_dryrun=0, modifies=0,
        desc='List the VCPUs for all/some domains',
        usage='[Domain, ...]'),
    Cmd('vcpu-pin', "vcpu.main_vcpu_pin", can_dryrun=1, modifies=1,
        desc='Set which CPUs a VCPU can use',
        usage='[option] <Domain> <VCPU|all> <Hard affinity|-|all> <Soft affinity|-|all>',
        options=('-f, --force        undo an override pinning done by the kernel\n'
                 '--ignore-global-affinity-masks Ignore global masks in xl.conf')),
    Cmd('vcpu-set', "vcpu.main_vcpu_set", can_dryrun=0, modifies=1,
        desc='Set the number of active VCPUs allowed for the domain',
        usage='[option] <Domain> <vCPUs>',
        options="-i, --ignore-host  Don't limit the vCPU based on the host CPU count"),
    Cmd('vm-list', "info.main_vm_list", can_dryrun=0, modifies=0,
        desc='List guest domains, excluding dom0, stubdoms, etc.',
        usage=''),
    Cmd('info', "info.main_info", can_dryrun=0, modifies=0,
        desc='Get information about Xen host',
        usage='-n, --numa         List host NUMA topology information'),
    Cmd('sched-credit2', "sched.main_sched_credit2", can_dryrun=0, modifies=1,
        desc='Get/set credit2 scheduler parameters',
        usage='[-d <Domain> [-w[=WEIGHT]]] [-p CPUPOOL]',
        options=('-d DOMAIN, --domain=DOMAIN     Domain to modify\n'
                 '-w WEIGHT, --weight=WEIGHT     Weight (int)\n'
                 '-c CAP,    --cap=CAP           Cap (int)\n'
                 '-s         --schedparam        Query / modify scheduler parameters\n'
                 '-r RLIMIT, --ratelimit_us=RLIMIT Set the scheduling rate limit, in microseconds\n'
                 '-p CPUPOOL, --cpupool=CPUPOOL  Restrict output to CPUPOOL')),
    Cmd('domid', "info.main_domid", can_dryrun=0, modifies=0,
        desc='Convert a domain name to domain id',
        usage='<DomainName>'),
    Cmd('domname', "info.main_domname", can_dryrun=0, modifies=0,
        desc='Convert a domain id to domain name',
        usage='<DomainId>'),
    Cmd('rename', "misc.main_rename", can_dryrun=0, modifies=1,
        desc='Rename a domain',
        usage='<Domain> <NewDomainName>'),
    Cmd('trigger', "misc.main_trigger", can_dryrun=0, modifies=1,
        desc='Send a trigger to a domain',
        usage='<Domain> <nmi|reset|init|power|sleep|s3resume> [<VCPU>]'),
    Cmd('sysrq', "misc.main_sysrq", can_dryrun=0, modifies=1,
        desc='Send a sysrq to a domain',
        usage='<Domain> <letter>'),
    Cmd('debug-keys', "misc.main_debug_keys", can_dryrun=0, modifies=1,
        desc='Send debug keys to Xen',
        usage='<Keys>'),
    Cmd('dmesg', "info.main_dmesg", can_dryrun=0, modifies=0,
        desc='Read and/or clear dmesg buffer',
        usage='[-c]',
        options='  -c                        Clear dmesg buffer as well as printing it'),
    Cmd('uptime', "info.main_uptime", can_dryrun=0, modifies=0,
        desc='Print uptime for all/some domains',
        usage='[-s] [Domain]'),
    Cmd('cpupool-create', "cpupool.main_cpupoolcreate", can_dryrun=1, modifies=1,
        desc='Create a new CPU pool',
        usage='[options] [<ConfigFile>] [Variable=value ...]',
        options=('-h, --help                   Print this help.\n'
                 '-f FILE, --defconfig=FILE    Use the given configuration file.\n'
                 '-n, --dryrun                 Dry run - prints the resulting configuration.\n'
                 '                              (deprecated in favour of global -N option).\n'
                 '\nSee the xlcpupool.cfg(5) manpage for more information.')),
    Cmd('cpupool-list', "cpupool.main_cpupoollist", can_dryrun=0, modifies=0,
        desc='List CPU pools on host',
        usage='[-c|--cpus] [<CPU Pool>]',
        options='-c, --cpus                     Output list of CPUs used by a pool'),
    Cmd('cpupool-destroy', "cpupool.main_cpupooldestroy", can_dryrun=0, modifies=1,
        desc='Deactivates a CPU pool',
        usage='<CPU Pool>'),
    Cmd('cpupool-rename', "cpupool.main_cpupoolrename", can_dryrun=0, modifies=1,
        desc='Renames a CPU pool',
        usage='<CPU Pool> <new name>'),
    Cmd('cpupool-cpu-add', "cpupool.main_cpupoolcpuadd", can_dryrun=0, modifies=1,
        desc='Adds a CPU to a CPU pool',
        usage='<CPU Pool> <CPU nr>|node:<node nr>'),
    Cmd('cpupool-cpu-remove', "cpupool.main_cpupoolcpuremove", can_dryrun=0, modifies=1,
        desc='Removes a CPU from a CPU pool',
        usage='<CPU Pool> <CPU nr>|node:<node nr>'),
    Cmd('cpupool-migrate', "cpupool.main_cpupoolmigrate", can_dryrun=0, modifies=1,
        desc='Moves a domain into a CPU pool',
        usage='<Domain> <CPU Pool>'),
    Cmd('cpupool-numa-split', "cpupool.main_cpupoolnumasplit", can_dryrun=0, modifies=1,
        desc='Splits up the machine into one CPU pool per NUMA node',
        usage=''),
    # xenpy's own (xentop's view with the hypervisor's counters; gdbsx for Arm)
    Cmd('top', "top.main", can_dryrun=0, modifies=0,
        desc="Monitor domains: CPU, memory and the hypervisor's per-vCPU event counters",
        usage='[-b] [-i N] [-d SEC] [--json]'),
    Cmd('gdbserver', "gdbserver.main", can_dryrun=0, modifies=0,
        desc='Serve the GDB remote protocol for a domain',
        usage='[--port N | --listen HOST:PORT] <Domain>'),
    Cmd('sched-null', "sched.main_sched_null", can_dryrun=0, modifies=0,
        desc="Show the null scheduler's pCPU assignments (a vCPU waiting for one: -)",
        usage='[-p CPUPOOL]',
        options='-p CPUPOOL, --cpupool=CPUPOOL  Restrict output to CPUPOOL'),
)


def lookup(s: str | None) -> Cmd | None:
    """cmdtable_lookup: an exact name, or a prefix of exactly one command."""
    if not s:
        return None
    found = [c for c in CMD_TABLE if c.name.startswith(s)]
    for c in found:
        if c.name == s:
            return c
    return found[0] if len(found) == 1 else None
