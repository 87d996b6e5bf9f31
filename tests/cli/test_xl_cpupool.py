"""xl's cpupool and scheduler commands on a running board, against Xen's tools/xl/xl_cpupool.c,
xl_sched.c, xl_info.c and libxl: each expected text quotes the format string it comes from."""
from __future__ import annotations

import json

import pytest

from tests.cli.test_xl_commands import spin_guest
from tests.daemon import ROOT, booted, env_for, rows, wait_for, xl

HELLO = ROOT / "examples/hello/hello.cfg"


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A default board with 3 pCPUs: Pool-0 keeps pCPU 0, a null pool gets two."""
    yield from booted(env_for(tmp_path_factory), "--pcpus", "3")


@pytest.fixture(scope="module")
def pooled(board, tmp_path_factory):
    """The board with pCPUs 1 and 2 taken from Pool-0 into "rt", a null pool."""
    tmp = tmp_path_factory.mktemp("pool")
    r = xl("cpupool-cpu-remove", "Pool-0", "1-2", env=board)
    assert r.returncode == 0, r.stderr
    cfg = tmp / "rt.cfg"
    cfg.write_text('name = "rt"\nsched = "null"\ncpus = ["1", "2"]\n')
    r = xl("cpupool-create", str(cfg), env=board)
    assert r.returncode == 0, r.stderr
    # printf("Using config file \"%s\"\n", config_src); printf("cpupool name:   %s\n", name);
    # printf("scheduler:      %s\n", ...); printf("number of cpus: %d\n", n_cpus);
    assert r.stdout == (f'Using config file "{cfg}"\ncpupool name:   rt\n'
                        "scheduler:      null\nnumber of cpus: 2\n")
    return {"env": board, "tmp": tmp, "cfg": cfg}


def test_cpupool_list_at_boot(board):
    r = xl("cpupool-list", env=board)
    # printf("%-19s", "Name"); printf("CPUs   Sched     Active   Domain count\n");
    # printf("%-19s", name); printf("%3d %9s       y       %4d", n, sched, n_dom)
    assert r.stdout == ("Name               CPUs   Sched     Active   Domain count\n"
                        "Pool-0               3   credit2       y          1\n")
    r = xl("cpupool-list", "-c", env=board)
    # printf("CPU list\n"); ... if (n && opt_cpus) printf(","); printf("%d", c);
    assert r.stdout == "Name               CPU list\nPool-0             0,1,2\n"
    r = xl("cpupool-list", "nope", env=board)
    # fprintf(stderr, "Pool \'%s\' does not exist\n", pool)
    assert (r.returncode, r.stderr) == (1, "Pool 'nope' does not exist\n")
    info = xl("info", env=board).stdout
    # maybe_printf("xen_scheduler          : %s\n", libxl_scheduler_to_string(sched))
    assert "xen_scheduler          : credit2\n" in info
    assert "free_cpus              : 0\n" in info


def test_cpupool_create_errors(pooled, tmp_path):
    env = pooled["env"]
    r = xl("cpupool-create", str(pooled["cfg"]), env=env)
    # fprintf(stderr, "Pool name \"%s\" already exists\n", name)
    assert (r.returncode, r.stderr) == (1, 'Pool name "rt" already exists\n')
    r = xl("cpupool-create", 'name="other"', 'cpus=["0"]', env=env)
    # fprintf(stderr, "cpu %d illegal or not free\n", i)
    assert (r.returncode, r.stderr) == (1, "cpu 0 illegal or not free\n")
    r = xl("cpupool-create", 'name="other"', 'sched="rtdz"', env=env)
    assert (r.returncode, r.stderr) == (1, "Unknown scheduler\n")
    r = xl("cpupool-create", 'sched="null"', env=env)
    assert (r.returncode, r.stderr) == (1, "Missing cpupool name!\n")
    r = xl("cpupool-create", str(tmp_path / "absent.cfg"), env=env)
    # fprintf(stderr, "Failed to read config file: %s: %s\n", filename, strerror(errno))
    assert r.returncode == 1
    assert r.stderr == f"Failed to read config file: {tmp_path / 'absent.cfg'}: " \
                       "No such file or directory\n"
    # the name defaults to the file's basename; -n (or global -N) creates nothing
    cfg = tmp_path / "spare.cfg"
    cfg.write_text('sched = "credit2"\n')
    r = xl("-N", "cpupool-create", str(cfg), env=env)
    assert r.returncode == 0 and "cpupool name:   spare.cfg\n" in r.stdout
    assert "number of cpus: 0\n" in r.stdout
    assert "spare.cfg" not in xl("cpupool-list", env=env).stdout
    r = xl("cpupool-destroy", "nope", env=env)
    # fprintf(stderr, "unknown cpupool '%s'\n", pool)
    assert (r.returncode, r.stderr) == (1, "unknown cpupool 'nope'\n")
    r = xl("cpupool-cpu-add", "rt", "0", env=env)
    # LOGE(ERROR, "Error moving cpu %d to cpupool", cpu); then xl's
    # fprintf(stderr, "some cpus may not have been added to %s\n", pool), and EXIT_SUCCESS
    assert r.returncode == 0
    assert r.stderr == ("libxl: error: libxl_cpupool.c:302:libxl_cpupool_cpuadd: Error moving "
                        "cpu 0 to cpupool: No such device\n"
                        "some cpus may not have been added to rt\n")


def test_a_domain_in_the_null_pool_runs_on_its_pcpu(pooled):
    env, tmp = pooled["env"], pooled["tmp"]
    r = xl("create", spin_guest(tmp, "rtspin"), 'pool="rt"', env=env)
    assert r.returncode == 0, r.stderr
    r = xl("cpupool-list", env=env)
    assert r.stdout == ("Name               CPUs   Sched     Active   Domain count\n"
                        "Pool-0               1   credit2       y          1\n"
                        "rt                   2      null       y          1\n")
    # xl_info.c: printf("%16s", poolname)
    assert xl("list", "-c", "rtspin", env=env).stdout.splitlines()[1].endswith("              rt")
    # the CPU column: "%5u %5u" then "%5u %3c%c- " (xl_vcpu.c)
    assert wait_for(lambda: xl("vcpu-list", "rtspin", env=env).stdout.splitlines()[1].split()[3:5]
                    == ["1", "r--"], 30), xl("vcpu-list", "rtspin", env=env).stdout
    domid = int(rows(xl("list", env=env).stdout)["rtspin"][0])
    r = xl("sched-null", env=env)
    assert r.stdout.splitlines() == ["Cpupool rt:",
                                     f"{'Name':<33} {'ID':>4} {'VCPU':>4} {'CPU':>4}",
                                     f"{'rtspin':<33} {domid:4d}    0    1"]
    # its pool runs null, not credit2: libxl asks with the wrong scheduler id and Xen says EINVAL
    r = xl("sched-credit2", "-d", "rtspin", env=env)
    # fprintf(stderr, "libxl_domain_sched_params_get returned %s not %s.\n", ...)
    assert r.returncode == 1
    assert r.stderr.endswith("libxl_domain_sched_params_get returned null not credit2.\n")
    r = xl("sched-credit2", "-d", "rtspin", "-w", "512", env=env)
    assert r.returncode == 1
    assert "Getting domain sched credit2: Invalid argument" in r.stderr
    assert r.stderr.endswith("libxl_domain_sched_params_set failed.\n")
    r = xl("cpupool-destroy", "rt", env=env)
    assert (r.returncode, r.stderr) == (1, "Can't destroy cpupool 'rt'\n")
    # cpupool-migrate: back to Pool-0, whose only pCPU is 0
    assert xl("cpupool-migrate", "rtspin", "Pool-0", env=env).returncode == 0
    assert wait_for(lambda: xl("vcpu-list", "rtspin", env=env).stdout.splitlines()[1].split()[3]
                    == "0", 30)
    r = xl("cpupool-migrate", "nobody", "rt", env=env)
    assert (r.returncode, r.stderr) == (1, "unknown domain 'nobody'\n")
    assert xl("destroy", "rtspin", env=env).returncode == 0


def test_hello_runs_to_success_in_the_null_pool(pooled):
    env, tmp = pooled["env"], pooled["tmp"]
    r = xl("create", "-c", str(HELLO), 'pool="rt"', 'on_poweroff="preserve"', env=env,
           timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "Test result: SUCCESS", r.stdout
    # vCPU 0 ran on the pool's first pCPU; vCPU 1 (which started, on the other one, and is
    # offline again: CPU "-") had a pCPU to itself too, or hello could not have succeeded
    cpus = [line.split()[3] for line in xl("vcpu-list", "hello", env=env).stdout.splitlines()[1:]]
    assert cpus == ["1", "-"], cpus
    assert xl("destroy", "hello", env=env).returncode == 0
    # with pCPU 1 taken by another domain, hello's second vCPU waits for a pCPU (null.c's
    # waitqueue) and never starts
    assert xl("create", spin_guest(tmp, "holder"), 'pool="rt"', env=env).returncode == 0
    r = xl("create", "-c", str(HELLO), 'pool="rt"', 'on_poweroff="preserve"', env=env,
           timeout=120)
    assert "Test result: FAILURE (vcpu1 did not start)" in r.stdout, r.stdout
    hello = rows(xl("list", env=env).stdout)["hello"][0]
    assert f"{'hello':<33} {int(hello):4d}    1    -" in xl("sched-null", env=env).stdout
    for name in ("hello", "holder"):
        assert xl("destroy", name, env=env).returncode == 0
    r = xl("create", str(HELLO), 'pool="nowhere"', env=env)
    # LOGD(ERROR, domid, "Illegal pool specified: %s", pool_name) (libxl_create.c)
    assert r.returncode == 1 and "Illegal pool specified: nowhere" in r.stderr


def test_sched_credit2(pooled):
    env, tmp = pooled["env"], pooled["tmp"]
    assert xl("create", spin_guest(tmp, "c2spin"), env=env).returncode == 0
    domid = int(rows(xl("list", env=env).stdout)["c2spin"][0])
    r = xl("sched-credit2", env=env)
    # printf("Cpupool %s: ratelimit=%dus\n", ...); printf("%-33s %4s %6s %4s\n", "Name", "ID",
    # "Weight", "Cap"); printf("%-33s %4d %6d %4d\n", domname, domid, weight, cap)
    assert r.stdout == ("Cpupool Pool-0: ratelimit=1000us\n"
                        "Name                                ID Weight  Cap\n"
                        "Domain-0                             0    256    0\n"
                        f"{'c2spin':<33} {domid:4d}    256    0\n")
    assert xl("sched-credit2", "-d", "c2spin", "-w", "512", "-c", "50", env=env).returncode == 0
    r = xl("sched-credit2", "-d", "c2spin", env=env)
    assert r.stdout.splitlines() == ["Name                                ID Weight  Cap",
                                     f"{'c2spin':<33} {domid:4d}    512   50"]
    r = xl("sched-credit2", "-d", "c2spin", "-c", "101", env=env)
    # LOGD(ERROR, domid, "Cpu cap out of range, valid range is from 0 to %d for specified
    # number of vcpus", ...)
    assert r.returncode == 1
    assert ("Cpu cap out of range, valid range is from 0 to 100 for specified number of vcpus"
            in r.stderr)
    r = xl("sched-credit2", "-w", "5", env=env)
    assert (r.returncode, r.stderr) == (1, "Must specify a domain.\n")
    r = xl("sched-credit2", "-p", "Pool-0", "-d", "c2spin", env=env)
    assert (r.returncode, r.stderr) == (1, "Specifying a cpupool is not allowed with other "
                                           "options.\n")
    r = xl("sched-credit2", "-s", "-r", "50", env=env)
    assert r.returncode == 1
    assert "Ratelimit out of range, valid range is from 100 to 500000" in r.stderr
    assert xl("sched-credit2", "-s", "-r", "2000", env=env).returncode == 0
    assert xl("sched-credit2", "-s", env=env).stdout == "Cpupool Pool-0: ratelimit=2000us\n"
    # -p: only that pool's block; a null pool has none (sched_domain_output skips it)
    assert xl("sched-credit2", "-p", "rt", env=env).stdout == ""
    assert xl("sched-credit2", "-p", "Pool-0", env=env).stdout.splitlines()[0] == \
        "Cpupool Pool-0: ratelimit=2000us"
    assert xl("destroy", "c2spin", env=env).returncode == 0


def test_sched_null_on_the_command_line(tmp_path_factory):
    board = booted(env_for(tmp_path_factory), "--pcpus", "2", "--sched", "null")
    env = next(board)
    try:
        assert "xen_scheduler          : null\n" in xl("info", env=env).stdout
        assert "Pool-0               2      null       y          1\n" in \
            xl("cpupool-list", env=env).stdout
        assert "(XEN) Using scheduler: null Scheduler (null)" in xl("dmesg", env=env).stdout
    finally:
        next(board, None)


def test_sched_from_the_cubieboard2_bootargs(tmp_path_factory, tmp_path):
    """U-Boot's bootargs are Xen's command line (/chosen): sched=null there picks Pool-0's."""
    from tests.cli.test_cubieboard2 import BOOT_CMD, SD
    script = tmp_path / "boot.cmd"
    script.write_text(BOOT_CMD.read_text().replace('dom0_vcpus_pin"', 'dom0_vcpus_pin sched=null"'))
    assert "sched=null" in script.read_text()
    board = booted(env_for(tmp_path_factory), "--sd", str(SD), str(script))
    env = next(board)
    try:
        info = xl("info", env=env).stdout
        assert "xen_scheduler          : null\n" in info
        assert "sched=null" in info.split("xen_commandline        : ", 1)[1].splitlines()[0]
        # dom0's one vCPU (pinned to pCPU 0) owns pCPU 0; pCPU 1 is left for one domU vCPU
        assert xl("sched-null", env=env).stdout.splitlines()[2].split() == ["Domain-0", "0", "0",
                                                                            "0"]
    finally:
        next(board, None)


def test_cpupool_rename_and_create_dry_run_json(pooled, tmp_path):
    env = pooled["env"]
    assert xl("cpupool-rename", "rt", "rtos", env=env).returncode == 0
    assert "rtos                 2      null       y" in xl("cpupool-list", env=env).stdout
    r = xl("cpupool-rename", "nope", "x", env=env)
    assert (r.returncode, r.stderr) == (1, "unknown cpupool 'nope'\n")
    assert xl("cpupool-rename", "rtos", "rt", env=env).returncode == 0
    # xl create -n: libxl_domain_create_info's pool_name, between uuid and run_hotplug_scripts
    r = xl("create", "-n", str(HELLO), 'pool="rt"', env=env)
    assert r.returncode == 0, r.stderr
    c_info = list(json.loads(r.stdout)["c_info"])
    assert c_info[c_info.index("uuid") + 1:c_info.index("uuid") + 3] == ["pool_name",
                                                                        "run_hotplug_scripts"]


def test_cpupool_numa_split(tmp_path_factory):
    board = booted(env_for(tmp_path_factory), "--pcpus", "2")
    env = next(board)
    try:
        assert xl("cpupool-cpu-remove", "Pool-0", "1", env=env).returncode == 0
        assert xl("cpupool-create", 'name="x"', env=env).returncode == 0
        r = xl("cpupool-numa-split", env=env)
        # fprintf(stderr, "splitting not possible, already cpupools in use\n")
        assert (r.returncode, r.stderr) == (1, "splitting not possible, already cpupools in "
                                               "use\n")
        assert xl("cpupool-destroy", "x", env=env).returncode == 0
        assert xl("cpupool-numa-split", env=env).returncode == 0
        # one node: Pool-0 takes the free pCPU back and is named after its node
        assert xl("cpupool-list", "-c", env=env).stdout == ("Name               CPU list\n"
                                                            "Pool-node0         0,1\n")
    finally:
        next(board, None)
