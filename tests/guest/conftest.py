import pytest

from xenpy.common.hypervisor import Hypervisor, HypervisorConfig


@pytest.fixture
def hv():
    """An in-process hypervisor with two pCPUs, shut down after the test."""
    h = Hypervisor(HypervisorConfig(nr_pcpus=2), sink=None)
    h.start()
    yield h
    h.shutdown()
