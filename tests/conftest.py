import pytest

from tests.daemon import booted, env_for


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A default board daemon (2 pCPUs) for the module's tests; modules may define their own."""
    yield from booted(env_for(tmp_path_factory), "--pcpus", "2")


@pytest.fixture(scope="module")
def det_board(tmp_path_factory):
    """A deterministic board daemon (2 pCPUs in lock step, the instruction clock): for tests whose
    guests measure time, so what they measure does not depend on how loaded the host is."""
    yield from booted(env_for(tmp_path_factory), "--pcpus", "2", "--deterministic")
