"""Typed domain configuration (toolstack.domcfg), the xl_parse.c equivalent for Arm guests."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from toolstack.domcfg import (DEFAULT_MEMORY_MB, SHUTDOWN_ACTIONS, ConfigError, DomainConfig,
                              load_domain_config, parse_cpulist, parse_iomem)

CFG_DIR = Path(__file__).parent / "cfg"


@pytest.fixture
def cfgdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(text: str, *extra: str, nr_cpus: int | None = None
         ) -> tuple[DomainConfig, list[str]]:
    Path("vm.cfg").write_text(text)
    return load_domain_config("vm.cfg", extra, nr_cpus=nr_cpus)


def fails(text: str, *extra: str) -> str:
    Path("vm.cfg").write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_domain_config("vm.cfg", extra)
    assert "\n" not in str(exc.value)
    return str(exc.value)


NAME = 'name = "vm"\n'


# ---- golden files


@pytest.mark.parametrize("name", ["erika", "pinned", "full_arm"])
def test_good_golden(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CFG_DIR)
    dc, warnings = load_domain_config(f"{name}.cfg")
    assert dc.to_json(nr_cpus=4) == json.loads((CFG_DIR / f"{name}.json").read_text())
    wfile = CFG_DIR / f"{name}.warnings"
    assert warnings == (wfile.read_text().splitlines() if wfile.exists() else [])


@pytest.mark.parametrize("name", ["bad_memory_list", "bad_action", "bad_iomem", "bad_noname",
                                  "bad_multi", "bad_python"])
def test_bad_golden(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CFG_DIR)
    with pytest.raises(ConfigError) as exc:
        load_domain_config(f"{name}.cfg")
    expected = (CFG_DIR / f"{name}.err").read_text().splitlines()
    assert exc.value.messages == expected
    assert str(exc.value) == expected[0]


def test_flagship_erika(cfgdir: Path) -> None:
    dc, warnings = load('kernel = "/root/erika.bin"\nmemory = 512\nname = "ERIKA_Enterprise"\n'
                        "vcpus = 1\non_crash = 'destroy'\niomem = [\"1c20,2\"]\n")
    assert warnings == []
    assert (dc.name, dc.kernel, dc.memory, dc.maxmem, dc.vcpus) == (
        "ERIKA_Enterprise", "/root/erika.bin", 512, 512, 1)
    assert dc.iomem == [(0x1c20, 2, None)] and dc.on_crash == "destroy"


# ---- files


def test_missing_and_unreadable_files(cfgdir: Path) -> None:
    with pytest.raises(ConfigError, match="^Failed to read config file: nope.cfg: No such file"
                                          " or directory$"):
        load_domain_config("nope.cfg")
    (cfgdir / "dir.cfg").mkdir()
    with pytest.raises(ConfigError, match="^Failed to read config file: dir.cfg: Is a"
                                          " directory$"):
        load_domain_config("dir.cfg")


def test_parse_errors_keep_every_line(cfgdir: Path) -> None:
    Path("vm.cfg").write_text("a = = 1\nb = 2\nc = d\n")
    with pytest.raises(ConfigError) as exc:
        load_domain_config("vm.cfg")
    assert len(exc.value.messages) == 2
    assert str(exc.value) == exc.value.messages[0]


# ---- defaults


def test_defaults(cfgdir: Path) -> None:
    dc, warnings = load(NAME)
    assert warnings == []
    assert dc.type == "pvh" and dc.uuid is None
    assert (dc.memory, dc.maxmem) == (DEFAULT_MEMORY_MB, DEFAULT_MEMORY_MB) == (32, 32)
    assert (dc.vcpus, dc.maxvcpus, dc.cpus, dc.cpus_soft) == (1, 1, [None], [None])
    assert (dc.on_poweroff, dc.on_reboot, dc.on_watchdog, dc.on_crash, dc.on_soft_reset) == (
        "destroy", "restart", "destroy", "destroy", "soft-reset")
    assert dc.max_event_channels == 1023
    assert dc.max_grant_frames is None and dc.max_maptrack_frames is None
    assert (dc.gic_version, dc.vuart, dc.guest_layout) == ("default", None, None)
    assert (dc.kernel, dc.cmdline, dc.iomem, dc.irqs, dc.dtdev) == (None, None, [], [], [])


# ---- name, type, uuid


def test_name_is_mandatory(cfgdir: Path) -> None:
    assert fails("memory = 64\n") == "vm.cfg: Domain name must be specified."
    assert fails('memory = 64\nname = ""\n') == "vm.cfg:2: Domain name must be specified."
    assert fails("name = ['a']\n") == ("vm.cfg:1: parameter `name' is a list but should be a"
                                       " single value")


def test_pv_is_converted_to_pvh_with_warnings(cfgdir: Path) -> None:
    for t in ('type = "pv"\n', 'type = "p"\n', 'builder = "generic"\n'):
        dc, warnings = load(NAME + t)
        assert dc.type == "pvh"
        assert warnings == ["Converting PV guest to PVH.", "Arm guest are now PVH.",
                            "Please fix your configuration file/toolstack."]
    assert load(NAME + 'type = "pvh"\n') == load(NAME)


def test_bad_types(cfgdir: Path) -> None:
    assert fails(NAME + 'type = "xen"\n') == "vm.cfg:2: Invalid domain type xen."
    assert fails(NAME + 'type = "hvm"\n') == "vm.cfg:2: Unsupported Arm guest type hvm"
    assert fails(NAME + 'builder = "linux"\n') == "vm.cfg:2: Invalid domain type linux."
    assert fails(NAME + 'type = "pvh"\nbuilder = "generic"\n') == (
        'vm.cfg:3: Contradicting "builder" and "type" options specified.')


def test_uuid(cfgdir: Path) -> None:
    dc, _ = load(NAME + 'uuid = "6F2C3D0A-11B2-4C3E-9D4F-00AABBCCDDEE"\n')
    assert dc.uuid == "6f2c3d0a-11b2-4c3e-9d4f-00aabbccddee"
    assert fails(NAME + 'uuid = "6f2c3d0a11b24c3e9d4f00aabbccddee"\n') == (
        "vm.cfg:2: Failed to parse UUID: 6f2c3d0a11b24c3e9d4f00aabbccddee")


# ---- kernel, cmdline


def test_relative_paths_resolve_against_the_current_directory(cfgdir: Path) -> None:
    (cfgdir / "sub").mkdir()
    Path("sub/vm.cfg").write_text(NAME + 'kernel = "img/zImage"\nramdisk = "/abs/initrd"\n'
                                  'device_tree = "../p.dtb"\n')
    dc, _ = load_domain_config("sub/vm.cfg")
    assert dc.kernel == str(cfgdir / "img" / "zImage")
    assert dc.ramdisk == "/abs/initrd"
    assert dc.device_tree == os.path.normpath(cfgdir / ".." / "p.dtb")
    assert fails(NAME + 'kernel = ""\n') == "vm.cfg:2: parameter `kernel' is an empty path"


@pytest.mark.parametrize("lines,cmdline,warned", [
    ('cmdline = "console=hvc0"\n', "console=hvc0", False),
    ('cmdline = "c"\nroot = "/dev/xvda"\n', "c", True),
    ('cmdline = "c"\nextra = "e"\n', "c", True),
    ('root = "/dev/xvda"\nextra = "ro quiet"\n', "root=/dev/xvda ro quiet", False),
    ('root = "/dev/xvda"\n', "root=/dev/xvda", False),
    ('extra = "quiet"\n', "quiet", False),
])
def test_cmdline(cfgdir: Path, lines: str, cmdline: str, warned: bool) -> None:
    dc, warnings = load(NAME + lines)
    assert dc.cmdline == cmdline
    assert warnings == (["Warning: ignoring root= and extra= in favour of cmdline="]
                        if warned else [])


# ---- memory and vCPUs


def test_memory_and_maxmem(cfgdir: Path) -> None:
    dc, _ = load(NAME + "memory = 256\n")
    assert (dc.memory, dc.maxmem, dc.target_memkb, dc.max_memkb) == (256, 256, 262144, 262144)
    dc, _ = load(NAME + "maxmem = 512\n")           # libxl: the target follows maxmem
    assert (dc.memory, dc.maxmem) == (512, 512)
    dc, _ = load(NAME + "memory = 256\nmaxmem = 0x200\n")
    assert (dc.memory, dc.maxmem) == (256, 512)
    assert fails(NAME + "memory = 512\nmaxmem = 256\n") == (
        "vm.cfg:3: maxmem=256 must be equal to or greater than memory=512")


@pytest.mark.parametrize("lines,msg", [
    ("memory = [512]\n", "vm.cfg:2: parameter `memory' is a list but should be a single value"),
    ('memory = "lots"\n', "vm.cfg:2: parameter `memory' is not a valid number"),
    ("memory = 12abc\n", "vm.cfg:2: parameter `memory' is not a valid number"),
    ("memory = 0\n", "vm.cfg:2: value `0' is smaller than minimum bound '1'"),
    ("memory = 99999999999999999999\n", "vm.cfg:2: parameter `memory' could not be parsed as"
                                        " a number: Numerical result out of range"),
    ("memory = 1\nmemory += 2\n", "vm.cfg:3: can't use += with numbers for parameter `memory'"),
    ("vcpus = [2]\n", "vm.cfg:2: parameter `vcpus' is a list but should be a single value"),
    ("max_grant_frames = \"-1\"\n", "vm.cfg:2: value `-1' is smaller than minimum bound '0'"),
    ("max_event_channels = 0x100000000\n",
     "vm.cfg:2: value `4294967296' is greater than maximum bound '4294967295'"),
])
def test_type_errors_are_fatal(cfgdir: Path, lines: str, msg: str) -> None:
    assert fails(NAME + lines) == msg


def test_vcpus(cfgdir: Path) -> None:
    # xl would quietly give such a domain one vCPU; xenpy says the value is wrong.
    assert fails(NAME + "vcpus = 0\n") == "vm.cfg:2: vcpus = 0: a domain needs at least one vCPU"
    assert fails(NAME + 'vcpus = "-3"\n') == "vm.cfg:2: vcpus = -3: a domain needs at least one vCPU"
    assert load(NAME)[0].vcpus == 1
    dc, _ = load(NAME + "vcpus = 2\nmaxvcpus = 4\n")
    assert (dc.vcpus, dc.maxvcpus, len(dc.cpus)) == (2, 4, 4)
    assert load(NAME + "vcpus = 3\nmaxvcpus = 0\n")[0].maxvcpus == 3
    assert fails(NAME + "vcpus = 4\nmaxvcpus = 2\n") == "vm.cfg:3: xl: maxvcpus < vcpus"
    assert fails(NAME + "vcpus = 129\n") == (
        "vm.cfg:2: 129 vCPUs requested but an Arm guest can have at most 128")


# ---- CPU affinity


def test_cpus_string_applies_to_every_vcpu(cfgdir: Path) -> None:
    dc, _ = load(NAME + 'vcpus = 3\ncpus = "0-3,5,^1"\ncpus_soft = "all"\n')
    assert dc.cpus == [frozenset({0, 2, 3, 5})] * 3
    assert dc.cpus_soft == [None] * 3


def test_cpus_list_is_per_vcpu(cfgdir: Path) -> None:
    dc, warnings = load(NAME + 'vcpus = 2\ncpus = ["1", "2"]\n')
    assert dc.cpus == [frozenset({1}), frozenset({2})] and warnings == []
    dc, _ = load(NAME + 'vcpus = 3\ncpus = ["2", "3-8,^5"]\n')
    assert dc.cpus == [frozenset({2}), frozenset({3, 4, 6, 7, 8}), None]
    dc, warnings = load(NAME + 'cpus = ["1", "2"]\n')
    assert dc.cpus == [frozenset({1})]
    assert warnings == ["vm.cfg:2: warning: parameter `cpus' has 2 entries but the domain"
                        " has 1 vCPUs; the extra entries are ignored"]


def test_cpus_all_minus_some_uses_the_host_cpu_count(cfgdir: Path) -> None:
    dc, _ = load(NAME + 'cpus = "all,^1"\n', nr_cpus=4)
    assert dc.cpus == [frozenset({0, 2, 3})]
    assert parse_cpulist("all") is None
    assert parse_cpulist("1,all") is None
    assert parse_cpulist("1,,2") == frozenset({1, 2})


@pytest.mark.parametrize("spec,msg", [
    ('"3-1"', "parameter `cpus': Invalid pcpu range: 3-1."),
    ('"x"', "parameter `cpus': Invalid pcpu range: x."),
    ('"1-"', "parameter `cpus': Invalid pcpu range: 1-."),
    ('"^all"', "parameter `cpus': Can't combine \"^\" and \"all\"."),
    ('"nodes:0-1"', "parameter `cpus': NUMA node lists (\"nodes:0-1\") are not supported:"
                    " a xenpy board has no NUMA nodes"),
    ('"0-5000"', "parameter `cpus': pCPU 5000 is out of range (at most 4095)"),
    ('"^1"', "parameter `cpus': CPU list \"^1\" selects no CPU"),
    ('[["1"]]', "parameter `cpus': entry 0 is a list but should be a CPULIST string"),
])
def test_bad_cpus(cfgdir: Path, spec: str, msg: str) -> None:
    assert fails(NAME + f"cpus = {spec}\n") == f"vm.cfg:2: {msg}"


# ---- shutdown actions


@pytest.mark.parametrize("key", ["on_poweroff", "on_reboot", "on_watchdog", "on_crash",
                                 "on_soft_reset"])
def test_actions(cfgdir: Path, key: str) -> None:
    for action in SHUTDOWN_ACTIONS:
        assert getattr(load(NAME + f'{key} = "{action}"\n')[0], key) == action
    assert fails(NAME + f'{key} = "halt"\n') == f'vm.cfg:2: Unknown {key} action "halt" specified'


def test_action_numbers_are_libxl_values() -> None:
    assert SHUTDOWN_ACTIONS["destroy"] == 1 and SHUTDOWN_ACTIONS["soft-reset"] == 7


# ---- passthrough: iomem, irqs, dtdev


def test_iomem(cfgdir: Path) -> None:
    dc, _ = load(NAME + 'iomem = ["1c20,2", "0x1c28,1@3f000", " 10, 1"]\n')
    assert dc.iomem == [(0x1c20, 2, None), (0x1c28, 1, 0x3f000), (0x10, 1, None)]
    assert parse_iomem("1c20,2@") is None and parse_iomem("1c20 ,2") is None
    assert parse_iomem("1c20,2x") is None and parse_iomem(",2") is None


@pytest.mark.parametrize("lines,msg", [
    ('iomem = "1c20,2"\n', "vm.cfg:2: parameter `iomem' is a single value but should be a list"),
    ('iomem = ["1c20"]\n', "vm.cfg:2: xl: Invalid argument parsing iomem: 1c20"),
    ('iomem = ["g,1"]\n', "vm.cfg:2: xl: Invalid argument parsing iomem: g,1"),
    ('iomem = [["1,1"]]\n', "vm.cfg:2: xl: Unable to get element 0 in iomem list"),
    ('irqs = ["0x20"]\n', "vm.cfg:2: xl: Invalid argument parsing irq: 0x20"),
    ('irqs = [4294967295]\n', "vm.cfg:2: xl: irq ffffffff too big"),
    ('irqs = [32, [33]]\n', "vm.cfg:2: xl: Unable to get element 1 in irq list"),
    ('irqs = [100000]\n', "vm.cfg:2: irq 100000 is out of range: a domain can be given only "
                          "shared peripheral interrupts, 32-1019 on an Arm GIC"),
    ('irqs = [27]\n', "vm.cfg:2: irq 27 is out of range: a domain can be given only "
                      "shared peripheral interrupts, 32-1019 on an Arm GIC"),
    ('dtdev = ["/a", ["/b"]]\n', "vm.cfg:2: xl: Unable to get element 1 in dtdev list"),
])
def test_bad_passthrough(cfgdir: Path, lines: str, msg: str) -> None:
    assert fails(NAME + lines) == msg


def test_irqs_and_dtdev(cfgdir: Path) -> None:
    dc, _ = load(NAME + 'irqs = [32, "33"]\ndtdev = ["/soc/uart@1c28000"]\n')
    assert dc.irqs == [32, 33] and dc.dtdev == ["/soc/uart@1c28000"]


# ---- limits and Arm options


def test_grant_and_event_channel_limits(cfgdir: Path) -> None:
    dc, _ = load(NAME + "max_grant_frames = 64\nmax_maptrack_frames = 0\n"
                        "max_event_channels = 4095\n")
    assert (dc.max_grant_frames, dc.max_maptrack_frames, dc.max_event_channels) == (64, 0, 4095)
    assert load(NAME + "max_event_channels = 0\n")[0].max_event_channels == 1023


def test_gic_vuart_layout(cfgdir: Path) -> None:
    dc, _ = load(NAME + 'gic_version = "V3"\nvuart = "sbsa_uart"\nguest_layout = "4.4"\n')
    assert (dc.gic_version, dc.vuart, dc.guest_layout) == ("v3", "sbsa_uart", "4.4")
    assert load(NAME + 'guest_layout = "current"\n')[0].guest_layout == "current"
    assert fails(NAME + 'gic_version = "v4"\n') == 'vm.cfg:2: Unknown gic_version "v4" specified'
    assert fails(NAME + 'vuart = "pl011"\n') == 'vm.cfg:2: ERROR: invalid value "pl011" for "vuart"'
    assert fails(NAME + 'guest_layout = "4.5"\n') == (
        'vm.cfg:2: Unknown guest_layout "4.5" specified ("4.4" or "current")')


# ---- other keys


def test_unsupported_and_unknown_keys_warn(cfgdir: Path) -> None:
    dc, warnings = load(NAME + "vif = ['bridge=xenbr0']\ndisk = []\nfrobnicate = 1\n")
    assert dc.unsupported == {"vif": ["bridge=xenbr0"], "disk": []}
    assert warnings == [
        "vm.cfg:2: warning: parameter `vif' is not supported by xenpy and is ignored",
        "vm.cfg:3: warning: parameter `disk' is not supported by xenpy and is ignored",
        "vm.cfg:4: warning: unknown parameter `frobnicate' ignored"]


# ---- command line KEY=VALUE


def test_extra_overrides_and_errors_are_numbered_after_the_file(cfgdir: Path) -> None:
    dc, _ = load(NAME + "memory = 128\n", "memory=256", 'name="other"')
    assert (dc.memory, dc.name) == (256, "other")
    assert fails(NAME, "vcpus=2", "memory=[1]") == (
        "vm.cfg:4: parameter `memory' is a list but should be a single value")


# ---- JSON for `xl list -l`


def test_to_json_shape(cfgdir: Path) -> None:
    dc, _ = load(NAME + 'vcpus = 2\nmaxvcpus = 3\ncpus = ["1"]\nmemory = 64\n'
                        'on_reboot = "rename-restart"\nkernel = "/k"\n')
    j = dc.to_json(nr_cpus=2)
    assert j["c_info"] == {"type": "pvh", "name": "vm",
                           "uuid": "00000000-0000-0000-0000-000000000000"}
    b = j["b_info"]
    assert (b["max_vcpus"], b["avail_vcpus"]) == (3, [0, 1])
    assert b["vcpu_hard_affinity"] == [[1], [0, 1], [0, 1]]
    assert "vcpu_soft_affinity" not in b
    assert (b["max_memkb"], b["target_memkb"], b["kernel"]) == (65536, 65536, "/k")
    assert b["arch_arm"] == {"gic_version": "default", "vuart": "unknown"}
    assert j["on_reboot"] == "restart_rename" and j["on_soft_reset"] == "soft_reset"
    json.dumps(j)


def test_a_relative_kernel_is_found_from_the_working_directory_or_beside_the_cfg(tmp_path,
                                                                                 monkeypatch):
    (tmp_path / "guest").mkdir()
    (tmp_path / "guest" / "k.zImage").write_bytes(b"x")
    cfg = tmp_path / "guest" / "g.cfg"
    cfg.write_text('name = "g"\nkernel = "k.zImage"\nmemory = 16\n')
    monkeypatch.chdir(tmp_path / "guest")                   # as xl finds it
    assert load_domain_config("g.cfg")[0].kernel == str(tmp_path / "guest" / "k.zImage")
    monkeypatch.chdir(tmp_path)                             # and from elsewhere, beside the cfg
    assert load_domain_config("guest/g.cfg")[0].kernel == str(tmp_path / "guest" / "k.zImage")
    (tmp_path / "k.zImage").write_bytes(b"y")               # the working directory wins
    assert load_domain_config("guest/g.cfg")[0].kernel == str(tmp_path / "k.zImage")
    cfg.write_text('name = "g"\nkernel = "none.zImage"\nmemory = 16\n')
    assert load_domain_config("guest/g.cfg")[0].kernel == str(tmp_path / "none.zImage")


# ---- bad input a user makes: one line naming the place


def test_a_name_that_cannot_fit_in_xenstore_is_refused(cfgdir: Path) -> None:
    msg = fails('name = "' + "x" * 100_000 + '"\n')
    assert msg.startswith("vm.cfg:1: the name is 100000 bytes long; at most 4050 fit in XenStore")
    assert load('name = "' + "x" * 4050 + '"\n')[0].name == "x" * 4050


def test_crlf_line_endings_are_named_with_line_and_column(cfgdir: Path) -> None:
    Path("vm.cfg").write_bytes(b'name = "vm"\r\nmemory = 16\r\n')
    with pytest.raises(ConfigError) as exc:
        load_domain_config("vm.cfg")
    assert exc.value.messages == [str(exc.value)]          # one line, not one per line
    assert str(exc.value).startswith("vm.cfg:1:12: carriage return (\\r) in the file: it has "
                                     "DOS/Windows (CRLF) line endings")
