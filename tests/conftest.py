import pytest

from tests.daemon import booted, env_for


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A default board daemon (2 pCPUs) for the module's tests; modules may define their own."""
    yield from booted(env_for(tmp_path_factory), "--pcpus", "2")
