"""xl's own output and semantics, command by command, against Xen's tools/xl sources. Each check
quotes the format string of xl (or libxl) that the expected text comes from."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from tests.daemon import ROOT, env_for, rows, run, wait_for, xl
from tests.guest.a32 import B_SELF, CODE, DATA, load32, zimage

HELLO = ROOT / "examples/hello/hello.cfg"


def xs(env, *args):
    return run("toolstack.xenstore_cli", *args, env=env)


def spin_guest(tmp_path, name: str, vcpus: int = 1) -> str:
    """r5 = 0x12345678, the word 0xCAFEF00D at DATA, then `b .` at SPIN_PC forever."""
    prog = [*load32(5, 0x12345678), *load32(6, 0xCAFEF00D), *load32(7, DATA),
            0xE5876000, B_SELF]                                   # str r6, [r7]; b .
    kernel = tmp_path / f"{name}.zImage"
    kernel.write_bytes(zimage(prog))
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(f'name = "{name}"\nkernel = "{kernel}"\nmemory = 16\nvcpus = {vcpus}\n')
    return str(cfg)


SPIN_PC = CODE + 0x30 + 4 * 7


# -- no board needed ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def noboard(tmp_path_factory):
    return env_for(tmp_path_factory)


def test_help_pages_and_command_list(noboard):
    r = xl("help", env=noboard)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[:4] == ["Usage xl [-vfNtT] <subcommand> [args]", "",
                         "xl full list of subcommands:", ""]
    # help(): printf(" %-19s ", cmd_name); printf("%s\n", cmd_desc);
    assert " vcpu-pin            Set which CPUs a VCPU can use" in lines
    assert " list                List information about all/some domains" in lines
    # "Usage: xl [-vtT%s%s] %s %s\n\n%s.\n\n" then "Options:\n\n%s\n"
    page = xl("help", "vcpu-pin", env=noboard).stdout
    assert page.startswith("Usage: xl [-vtTfN] vcpu-pin [option] <Domain> <VCPU|all> "
                           "<Hard affinity|-|all> <Soft affinity|-|all>\n\n"
                           "Set which CPUs a VCPU can use.\n\nOptions:\n\n-f, --force ")
    assert xl("mem-set", "-h", env=noboard).stdout == (
        "Usage: xl [-vtTf] mem-set <Domain> <MemMB['b'[bytes]|'k'[KB]|'m'[MB]|'g'[GB]|'t'[TB]]>"
        "\n\nSet the current memory usage for a domain.\n\n")
    # printf("command \"%s\" not implemented\n", command)
    assert xl("help", "frobnicate", env=noboard).stdout == 'command "frobnicate" not implemented\n'
    # a unique prefix is the command (cmdtable_lookup)
    assert xl("help", "vcpu-p", env=noboard).stdout == page


def test_global_and_command_option_errors(noboard):
    # glibc's getopt, then "unknown global option\n", exit(EXIT_FAILURE)
    r = xl("-h", env=noboard)
    assert (r.returncode, r.stderr) == (1, "xl: invalid option -- 'h'\nunknown global option\n")
    # "command not implemented\n"
    r = xl("frobnicate", env=noboard)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "command not implemented\n")
    # def_getopt: "option `%c' not supported.\n", exit(2)
    r = xl("list", "-q", env=noboard)
    assert (r.returncode, r.stderr) == (2, "option `q' not supported.\n")
    # "'xl %s' requires at least %d argument%s.\n\n" and the help, exit(2)
    r = xl("rename", "x", env=noboard)
    assert r.returncode == 2 and r.stderr == "'xl rename' requires at least 2 arguments.\n\n"
    assert r.stdout.startswith("Usage: xl [-vtTf] rename <Domain> <NewDomainName>")
    # "command does not implement -N (dryrun) option\n"
    r = xl("-N", "list", env=noboard)
    assert (r.returncode, r.stderr) == (1, "command does not implement -N (dryrun) option\n")
    r = xl("-N", "vcpu-pin", "x", "all", "1", env=noboard)    # needs a board, starts none
    assert r.returncode == 1 and "a dry run (-N) starts none" in r.stderr
    assert not (ROOT / noboard["XENPY_RUNDIR"] / "board.log").exists()   # nothing started


def test_create_dry_run_prints_libxl_domain_config_json(noboard, tmp_path):
    cfg = tmp_path / "d.cfg"
    cfg.write_text('name = "dry"\nkernel = "some/where.zImage"\nmemory = 24\nvcpus = 2\n'
                   'cpus = "1"\non_crash = "preserve"\n')
    for args in (["-N", "create", str(cfg)], ["create", "-n", str(cfg)]):
        r = xl(*args, env=noboard)
        assert r.returncode == 0, r.stderr
        assert r.stderr == f"Parsing config from {cfg}\n"
        doc = json.loads(r.stdout)
        uuid.UUID(doc["c_info"]["uuid"])               # libxl_uuid_generate, never zeros
        assert doc["c_info"]["uuid"] != "00000000-0000-0000-0000-000000000000"
        assert doc["c_info"] == {"type": "pvh", "name": "dry", "uuid": doc["c_info"]["uuid"],
                                 "run_hotplug_scripts": "True"}
        b = doc["b_info"]
        assert list(b) == ["max_vcpus", "avail_vcpus", "vcpu_hard_affinity", "max_memkb",
                           "target_memkb", "sched_params", "claim_mode", "kernel", "type.pvh",
                           "arch_arm", "arch_x86", "xenstore_quota"]
        assert b["kernel"] == "some/where.zImage"       # as written, not resolved
        assert b["avail_vcpus"] == [0, 1] and b["target_memkb"] == 24 * 1024
        assert b["vcpu_hard_affinity"][0] == [1]
        # on_poweroff/on_watchdog "destroy" are the enum's init value: libxl leaves them out
        assert [k for k in doc if k.startswith("on_")] == ["on_reboot", "on_crash",
                                                          "on_soft_reset"]
        # yajl_gen_map_open/close with yajl_gen_beautify: "{\n" then "\n" + indent + "}"
        assert '        "sched_params": {\n\n        },\n' in r.stdout
        assert '        "arch_arm": {\n            "arm_sci": {\n\n            }\n        },' \
            in r.stdout
        assert r.stdout.endswith("}\n")
    assert not (ROOT / noboard["XENPY_RUNDIR"] / "board.log").exists()   # creates nothing


def test_create_without_or_with_an_unreadable_file(noboard, tmp_path):
    # "Config file not specified and none in save file\n", return ERROR_INVAL (exit 6)
    r = xl("create", env=noboard)
    assert (r.returncode, r.stderr) == (6, "Config file not specified and none in save file\n")
    # "Failed to read config file: %s: %s\n", return ERROR_FAIL (exit 3), before any parsing
    missing = tmp_path / "nope.cfg"
    r = xl("create", str(missing), env=noboard)
    assert (r.returncode, r.stderr) == (
        3, f"Failed to read config file: {missing}: No such file or directory\n")


def test_errors_in_key_value_extras_are_numbered_after_the_file(noboard):
    # create_domain appends "\n%s\n" (the KEY=VALUE lines) to the file's text and
    # parse_config_data reads it under the file's name
    n = HELLO.read_text().count("\n")
    r = xl("-N", "create", str(HELLO), "vcpus=1", "memory=[", env=noboard)
    assert r.returncode == 1
    assert re.search(rf"^{re.escape(str(HELLO))}:{n + 3}: config parsing error near", r.stderr,
                     re.M), r.stderr


# -- against a board --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spun(board, tmp_path_factory):
    """Two spinning domains: "spin" (2 vCPUs) and "twirl"."""
    tmp = tmp_path_factory.mktemp("spin")
    for name, n in (("spin", 2), ("twirl", 1)):
        r = xl("create", spin_guest(tmp, name, n), env=board)
        assert r.returncode == 0, r.stderr
    ids = rows(xl("list", env=board).stdout)
    yield {"spin": int(ids["spin"][0]), "twirl": int(ids["twirl"][0])}
    for name in ("spin", "twirl", "spun"):
        xl("destroy", name, env=board)


def test_list_one_domain_verbose_and_long(board, spun):
    r = xl("list", "spin", "twirl", env=board)        # one domain at most: help, EXIT_FAILURE
    assert r.returncode == 1 and r.stdout.startswith("Usage: xl [-vtT] list")
    out = xl("list", "-v", "spin", env=board).stdout.splitlines()
    assert out[0] == ("Name                                        ID   Mem VCPUs\tState\tTime(s)"
                      "   UUID                            Reason-Code\tSecurity Label")
    handle = xs(board, "read", f"/local/domain/{spun['spin']}/vm").stdout.strip()[4:]
    # "%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f" then " " UUID, " %8s" "-", " %16s" "-"
    assert re.fullmatch(rf"spin {{36}} +{spun['spin']} +16 +1 +[-r][-b]---- +\d+\.\d "
                        rf"{handle} +- +-", out[1]), out[1]
    doc = json.loads(xl("list", "-l", env=board).stdout)
    mine = {d["config"]["c_info"]["name"]: d for d in doc}
    assert "Domain-0" not in mine                      # dom0 has no stored config
    assert mine["spin"]["domid"] == spun["spin"]
    assert mine["spin"]["config"]["c_info"]["uuid"] == handle     # the real one
    assert xl("list", "-c", env=board).stdout.splitlines()[0].endswith("         Cpupool")
    assert xl("list", "-n", env=board).stdout.splitlines()[0].endswith(" NODE Affinity")


def test_vcpu_list_columns_and_argument_order(board, spun):
    out = xl("vcpu-list", "twirl", "spin", env=board).stdout.splitlines()
    # "%-32s %5s %5s %5s %5s %9s %s\n"
    assert out[0] == ("Name                                ID  VCPU   CPU State   Time(s) "
                      "Affinity (Hard / Soft)")
    assert [l.split()[0] for l in out[1:]] == ["twirl", "spin", "spin"]
    # "%-32s %5u %5u" + "%5u %3c%c- " + "%9.1f  ": VCPU and CPU columns touch
    assert re.fullmatch(r"twirl {27} +\d+ {5}0 {4}[01] {3}[-r][-b]- +\d+\.\d  all / all", out[1]), \
        out[1]
    r = xl("vcpu-list", "nosuch", env=board)
    assert r.returncode == 1 and r.stderr == "nosuch is an invalid domain identifier (rc=-6)\n"


def test_info_by_name_numa_and_xenstore(board):
    full = xl("info", env=board).stdout
    # "arm_sve_vector_length  : %u\n" (an arm32 board has no SVE)
    assert re.search(r"^arm_sve_vector_length  : 0$", full, re.M)
    assert full.index("virt_caps") < full.index("arm_sve_vector_length") < full.index("total_memory")
    # maybe_printf: the values of every line starting with the name, nothing else
    assert xl("info", "nr_cpus", env=board).stdout == "2\n"
    assert xl("info", "xen_v", env=board).stdout.startswith("4.4")
    assert xl("info", "cc_compile", env=board).stdout.count("\n") == 4
    r = xl("info", "nomatch", env=board)
    assert (r.returncode, r.stdout) == (0, "")
    numa = xl("info", "-n", env=board).stdout
    assert "cpu_topology           :\ncpu:    core    socket     node\n" in numa
    assert "numa_info              :\nnode:    memsize    memfree    distances\n" in numa
    assert re.search(r"^xenstore_features      : 0x[0-9a-f]{8}$", xl("info", "-x", env=board).stdout,
                     re.M)


def test_vcpu_pin_and_its_dry_run(board, spun):
    # dry run: fprintf(stdout, "cpumap: "), print_bitmap(hard) or "-", " " soft
    r = xl("-N", "vcpu-pin", "spin", "all", "1", "0", env=board)
    assert (r.returncode, r.stdout) == (0, "cpumap: 1 0\n")
    assert all(l.endswith("all / all") for l in
               xl("vcpu-list", "spin", env=board).stdout.splitlines()[1:])
    assert xl("vcpu-pin", "spin", "1", "1", "-", env=board).returncode == 0
    vl = xl("vcpu-list", "spin", env=board).stdout.splitlines()[1:]
    assert vl[0].endswith("all / all") and vl[1].endswith("1 / all")
    assert xl("vcpu-pin", "spin", "all", "-", "0", env=board).returncode == 0
    vl = xl("vcpu-list", "spin", env=board).stdout.splitlines()[1:]
    assert vl[0].endswith("all / 0") and vl[1].endswith("1 / 0")
    # "Error: Invalid argument %s as VCPU.\n"
    r = xl("vcpu-pin", "spin", "x", "1", env=board)
    assert (r.returncode, r.stderr) == (1, "Error: Invalid argument x as VCPU.\n")
    # "Could not set affinity for vcpu `%ld'.\n" (vCPU 7 does not exist)
    r = xl("vcpu-pin", "spin", "7", "1", env=board)
    assert r.returncode == 1 and r.stderr.endswith("Could not set affinity for vcpu `7'.\n")
    xl("vcpu-pin", "spin", "all", "all", "all", env=board)


def test_vcpu_set_writes_availability(board, spun):
    d = spun["spin"]
    assert xl("vcpu-set", "spin", "1", env=board).returncode == 0
    assert xs(board, "read", f"/local/domain/{d}/cpu/0/availability",
              f"/local/domain/{d}/cpu/1/availability").stdout == "online\noffline\n"
    # "You are overcommmitting! You have %d physical CPUs and want %ld vCPUs! Aborting, ..."
    r = xl("vcpu-set", "spin", "3", env=board)
    assert r.returncode == 1 and r.stderr.startswith("You are overcommmitting! You have 2 "
                                                     "physical CPUs and want 3 vCPUs!")
    # libxl: "Requested %d VCPUs, however maxcpus is %d!"; xl: "libxl_set_vcpuonline failed
    # domid=%u max_vcpus=%ld, rc: %d\n"
    r = xl("vcpu-set", "-i", "spin", "3", env=board)
    assert r.returncode == 1 and "Requested 3 VCPUs, however maxcpus is 2!" in r.stderr
    assert r.stderr.endswith(f"libxl_set_vcpuonline failed domid={d} max_vcpus=3, rc: -3\n")
    assert xl("vcpu-set", "spin", "2", env=board).returncode == 0
    assert xs(board, "read", f"/local/domain/{d}/cpu/1/availability").stdout == "online\n"


def _max_pages(board, domid: int) -> int:
    xl("debug-keys", "q", env=board)
    text = xl("dmesg", env=board).stdout
    blocks = text.split(f"General information for domain {domid}:")
    return int(re.search(r"max_pages=(\d+)", blocks[-1]).group(1))


def test_mem_set_and_mem_max(board, spun):
    d = spun["twirl"]
    assert xl("mem-set", "twirl", "12m", env=board).returncode == 0
    assert xs(board, "read", f"/local/domain/{d}/memory/target").stdout == f"{12 * 1024}\n"
    assert _max_pages(board, d) == (12 * 1024 + 1024) // 4     # + LIBXL_MAXMEM_CONSTANT
    # "cannot set domid %u dynamic max memory to : %s\n"
    r = xl("mem-set", "twirl", "1g", env=board)
    assert r.returncode == 1 and r.stderr.endswith(
        f"cannot set domid {d} dynamic max memory to : 1g\n")
    assert "memory_dynamic_max must be less than or equal to memory_static_max" in r.stderr
    assert xl("mem-max", "twirl", "20", env=board).returncode == 0
    assert xs(board, "read", f"/local/domain/{d}/memory/static-max").stdout == f"{20 * 1024}\n"
    assert _max_pages(board, d) == (20 * 1024 + 1024) // 4
    # "invalid memory size: %s\n"
    r = xl("mem-max", "twirl", "12q", env=board)
    assert (r.returncode, r.stderr) == (1, "invalid memory size: 12q\n")
    r = xl("mem-max", "twirl", "4", env=board)               # below the target
    assert r.returncode == 1 and r.stderr.endswith(f"cannot set domid {d} static max memory to : 4\n")
    xl("mem-set", "twirl", "16", env=board)


def test_domid_domname_uptime(board, spun):
    assert xl("domid", "twirl", env=board).stdout == f"{spun['twirl']}\n"
    # "Can't get domid of domain name '%s', maybe this domain does not exist.\n"
    r = xl("domid", "nosuch", env=board)
    assert (r.returncode, r.stderr) == (
        1, "Can't get domid of domain name 'nosuch', maybe this domain does not exist.\n")
    assert xl("domname", "0", env=board).stdout == "Domain-0\n"
    r = xl("domname", "x", env=board)          # "Invalid domain id.\n\n"
    assert (r.returncode, r.stderr) == (1, "Invalid domain id.\n\n")
    r = xl("domname", "999", env=board)
    assert r.returncode == 1 and r.stderr.startswith("Can't get domain name of domain id '999'")
    out = xl("uptime", env=board).stdout.splitlines()
    assert out[0] == "Name                                ID Uptime"     # "%-33s %4s %s\n"
    assert re.fullmatch(r"Domain-0 {26} {3}0 [ \d]\d:\d\d:\d\d", out[1]), out[1]
    assert any(l.startswith("twirl ") for l in out)
    short = xl("uptime", "-s", "twirl", env=board).stdout
    # " %s up %s, %s (%d)\n" with "%2d:%02d"
    assert re.fullmatch(rf" \d\d:\d\d:\d\d up [ \d]\d:\d\d, twirl \({spun['twirl']}\)\n", short)


def test_rename_sysrq_trigger(board, spun):
    d = spun["twirl"]
    vm = xs(board, "read", f"/local/domain/{d}/vm").stdout.strip()
    assert xl("rename", "twirl", "spun", env=board).returncode == 0
    assert "spun" in rows(xl("list", env=board).stdout)
    assert xs(board, "read", f"{vm}/name").stdout == "spun\n"
    # libxl: "Domain with name \"%s\" already exists."; xl: "Can't rename domain '%s'.\n"
    r = xl("rename", "spun", "spin", env=board)
    assert r.returncode == 1 and r.stderr.endswith("Can't rename domain 'spun'.\n")
    assert 'Domain with name "spin" already exists.' in r.stderr
    assert xl("rename", "spun", "twirl", env=board).returncode == 0
    # libxl_send_sysrq: ~/control/sysrq; "Invalid sysrq.\n\n" and the help
    assert xl("sysrq", "twirl", "s", env=board).returncode == 0
    assert xs(board, "read", f"/local/domain/{d}/control/sysrq").stdout == "s\n"
    r = xl("sysrq", "twirl", "ss", env=board)
    assert r.returncode == 1 and r.stderr == "Invalid sysrq.\n\n"
    # Arm Xen has no XEN_DOMCTL_sendtrigger: libxl logs "Send trigger '%s' failed", xl exits 0
    r = xl("trigger", "twirl", "nmi", env=board)
    assert r.returncode == 0
    assert r.stderr.endswith(f"Domain {d}:Send trigger 'nmi' failed: Function not implemented\n")
    r = xl("trigger", "twirl", "bogus", env=board)       # "Invalid trigger \"%s\"\n"
    assert (r.returncode, r.stderr) == (1, 'Invalid trigger "bogus"\n')


def test_dump_core_opens_in_gdb(board, spun, tmp_path):
    gdb = shutil.which("gdb-multiarch")
    if gdb is None:
        pytest.skip("gdb-multiarch is not installed")
    core = tmp_path / "spin.core"

    def dumped() -> str:
        """Dump and read back; the guest may not have reached its loop yet on a busy host."""
        r = xl("dump-core", "spin", str(core), env=board)
        assert r.returncode == 0, r.stderr
        g = subprocess.run([gdb, "-batch", "-nx", "-ex", f"core-file {core}",
                            "-ex", f"x/wx {DATA:#x}", "-ex", "p/x $r5", "-ex", "p/x $pc",
                            "-ex", "info threads"], capture_output=True, text=True, timeout=60)
        return g.stdout + g.stderr
    seen = [""]

    def at_loop() -> bool:
        seen[0] = dumped()
        return f"$2 = {SPIN_PC:#x}" in seen[0]
    assert wait_for(at_loop), seen[0]
    out = seen[0]
    assert f"{DATA:#x}:\t0xcafef00d" in out, out
    assert "$1 = 0x12345678" in out
    assert "* 1    LWP 1 " in out                      # a thread per vCPU, vCPU 0 first
    assert "spin" in rows(xl("list", env=board).stdout)    # still there, unpaused
    assert rows(xl("list", env=board).stdout)["spin"][3][2] == "-"


def test_console_types(board, spun):
    # "console type supported are: %s\n"
    r = xl("console", "-t", "hdmi", "twirl", env=board)
    assert (r.returncode, r.stderr) == (1, "console type supported are: pv, serial, vuart\n")
    r = xl("console", "-t", "pv", "-n", "1", "twirl", env=board)
    assert r.returncode == 1 and r.stderr.endswith("Unable to attach console\n")


# -- where the board is ---------------------------------------------------------------------------

def test_a_dead_board_is_reported_and_a_fresh_directory_gets_one(tmp_path_factory):
    env = env_for(tmp_path_factory)
    rundir = env["XENPY_RUNDIR"]
    r = xl("list", env=env)
    try:
        assert r.returncode == 0, r.stderr
        assert r.stderr.startswith(f"xl: no board has run in {rundir}; starting the default one")
        assert "Domain-0" in r.stdout
        pid = int(open(os.path.join(rundir, "board.pid")).read())
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
                        open(f"/proc/{pid}/stat").read().split()[2] == "Z", timeout=20)
        r = xl("list", env=env)
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr == (f"xl: the board (pid {pid}) died without shutting down; its last "
                            f"words are in {rundir}/board.log; 'xenpy boot' starts a new one\n")
        assert int(open(os.path.join(rundir, "board.pid")).read()) == pid    # none started
    finally:
        run("xenpy", "shutdown", env=env)


COMPLETE = """XL="$1"; source "$2"
t() { COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _xl; echo "${COMPREPLY[*]}"; }
t xl vcpu-
t xl -v list -
t xl pause tw
t xl vcpu-list spin t
"""


def _complete(env) -> list[str]:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    r = subprocess.run([bash, "-c", COMPLETE, "complete", f"{os.sys.executable} -m toolstack.xl",
                        str(ROOT / "toolstack/xl/bash-completion")], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_bash_completion(board, spun):
    lines = _complete(board)
    assert lines[0] == "vcpu-list vcpu-pin vcpu-set"
    assert set(lines[1].split()) == {"-l", "--long", "-v", "--verbose", "-Z", "--context", "-c",
                                     "--cpupool", "-n", "--numa", "-h", "--help"}
    assert lines[2] == "twirl" and lines[3] == "twirl"


def test_bash_completion_never_starts_a_board(noboard):
    lines = _complete(noboard)
    assert lines[0] == "vcpu-list vcpu-pin vcpu-set"
    assert "twirl" not in lines[2]
    assert not (ROOT / noboard["XENPY_RUNDIR"] / "board.log").exists()


def test_vcpu_set_takes_a_guest_vcpu_off_and_on_with_psci(board):
    # libxl__set_vcpuonline_xenstore: "%s/cpu/%u/availability" = "online" | "offline"; the
    # vcpuhot guest watches it and stops vCPU 1 with PSCI CPU_OFF, restarts it with CPU_ON
    r = xl("create", str(ROOT / "examples/vcpuhot/vcpuhot.cfg"), 'on_poweroff="preserve"',
           env=board)
    assert r.returncode == 0, r.stderr
    try:
        assert wait_for(lambda: "watching cpu/1/availability" in _console(board))
        assert xl("vcpu-set", "vcpuhot", "1", env=board).returncode == 0
        assert wait_for(lambda: "vcpu1 offline (PSCI CPU_OFF)" in _console(board))
        vl = xl("vcpu-list", "vcpuhot", env=board).stdout.splitlines()
        assert re.search(r"\s1\s+-\s+--p\s", vl[2]), vl[2]        # "%5c %3c%cp " offline
        assert rows(xl("list", env=board).stdout)["vcpuhot"][2] == "1"   # VCPUs online
        assert xl("vcpu-set", "vcpuhot", "2", env=board).returncode == 0
        assert wait_for(lambda: "Test result: SUCCESS" in _console(board))
        assert "vcpu1 online (PSCI CPU_ON)" in _console(board)
    finally:
        xl("destroy", "vcpuhot", env=board)


def _console(env) -> str:
    """What the guest printed so far: the console ring read through privcmd (no tty)."""
    from pathlib import Path

    from toolstack.xc import SocketTransport, Xc
    ids = rows(xl("list", env=env).stdout)
    if "vcpuhot" not in ids:
        return ""
    xc = Xc(SocketTransport(Path(env["XENPY_RUNDIR"]) / "privcmd"))
    try:
        return xc.console_read(int(ids["vcpuhot"][0]), 0, 0.0)["data"]
    finally:
        xc.close()


def test_verbose_adds_libxl_and_domainbuilder_lines(board, tmp_path):
    # xentoollog: the default minimum level is XTL_PROGRESS; each global -v lowers it by one,
    # so -v lets XTL_DETAIL through ("libxl: detail: ...", "domainbuilder: detail: ...")
    cfg = spin_guest(tmp_path, "loud")
    quiet = xl("create", "-p", cfg, env=board)
    assert quiet.returncode == 0 and quiet.stderr == f"Parsing config from {cfg}\n"
    xl("destroy", "loud", env=board)
    loud = xl("-v", "create", "-p", cfg, env=board)
    try:
        assert loud.returncode == 0, loud.stderr
        lines = loud.stderr.splitlines()
        assert lines[0] == f"Parsing config from {cfg}"
        assert f'domainbuilder: detail: xc_dom_kernel_file: filename="{tmp_path}/loud.zImage"' \
            in lines
        assert any(l.startswith("domainbuilder: detail: xc_dom_build_image: kernel at 0x80008000")
                   for l in lines)
        assert re.search(r"^libxl: detail: .*Domain \d+:created \(paused\)$", loud.stderr, re.M)
    finally:
        xl("destroy", "loud", env=board)
