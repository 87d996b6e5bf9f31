"""Bad input to `xl create`: one clear line, a non-zero exit and nothing left on the board."""
from __future__ import annotations

import pytest

from tests.daemon import ROOT, rows, xl

HELLO = ROOT / "domains/hello/hello.zImage"


def cfg_bytes(tmp_path, data: bytes):
    path = tmp_path / "bad.cfg"
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("body,expect", [
    (b'name = "a"\nkernel = "K"\nirqs = [ 100000 ]\n', "bad.cfg:3: irq 100000 is out of range"),
    (b'name = "b"\nkernel = "K"\nvcpus = 0\n', "bad.cfg:3: vcpus = 0: a domain needs"),
    (b'name = "' + b"n" * 100_000 + b'"\nkernel = "K"\n', "bad.cfg:1: the name is 100000 bytes"),
    (b'name = "c"\r\nkernel = "K"\r\n', "bad.cfg:1:11: carriage return (\\r) in the file"),
], ids=["irqs", "vcpus0", "long-name", "crlf"])
def test_bad_config_is_one_line_and_leaves_no_domain(board, tmp_path, body, expect):
    before = set(rows(xl("list", env=board).stdout))
    path = cfg_bytes(tmp_path, body.replace(b"K", str(HELLO).encode()))
    r = xl("create", path, env=board)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("Parsing config from")]
    assert len(lines) == 1 and expect in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert set(rows(xl("list", env=board).stdout)) == before


class _RefusingXs:
    """A XenStore client whose writes under a domain's home fail, as a full or hostile store
    would make them fail (any XsError), after createdomain has succeeded."""

    def __init__(self, xs, fail_on: str) -> None:
        self._xs, self._fail_on = xs, fail_on

    def __getattr__(self, name):
        return getattr(self._xs, name)

    def write(self, path, value, *a, **kw):
        from toolstack.xs import XsError
        if self._fail_on in path:
            raise XsError("ENOSPC")
        return self._xs.write(path, value, *a, **kw)


@pytest.mark.parametrize("fail_on", ["/name", "/console/port", "/vm/"])
def test_a_failure_after_createdomain_destroys_the_half_built_domain(board, monkeypatch,
                                                                    fail_on):
    from toolstack.domcfg import load_domain_config
    from toolstack.libxl import CreateError, Libxl
    from toolstack.xc import Xc
    from toolstack.xs import XsClient
    monkeypatch.setenv("XENPY_RUNDIR", board["XENPY_RUNDIR"])
    xs = XsClient()
    lx = Libxl(Xc(), _RefusingXs(xs, fail_on))
    cfg, _ = load_domain_config(str(ROOT / "examples/hello/hello.cfg"), ['name="halfbuilt"'])
    before = [d["domain"] for d in lx.xc.domain_getinfolist()]
    try:
        with pytest.raises(CreateError) as exc:
            lx.create(cfg)
        assert "halfbuilt" in str(exc.value) and "ENOSPC" in str(exc.value)
        assert [d["domain"] for d in lx.xc.domain_getinfolist()] == before
    finally:
        xs.close()
        lx.xc.close()
