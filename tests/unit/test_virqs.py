"""VIRQ_DEBUG on the 'q' debug key and VIRQ_CONSOLE for input to dom0's console."""
from xenpy.board.evtchn_dev import EvtchnDevice
from xenpy.board.privcmd import Privcmd
from xenpy.common import event_channel as ev
from xenpy.common.hypervisor import Hypervisor
from xenpy.public.event_channel import VIRQ_CONSOLE, VIRQ_DEBUG
from xenpy.public.sysctl import XEN_SYSCTL_INTERFACE_VERSION, XEN_SYSCTL_debug_keys


def sysctl_keys(pc: Privcmd, keys: str) -> int:
    return pc.call({"op": "sysctl", "cmd": XEN_SYSCTL_debug_keys,
                    "interface_version": XEN_SYSCTL_INTERFACE_VERSION, "u": {"keys": keys}})[0]["ret"]


def test_debug_key_q_dumps_domains_and_raises_virq_debug():
    hv = Hypervisor()
    domid = hv.domain_create(0, 2, None, "4.4")
    d = hv.domains[domid]
    hv.domain_populate(d, 16 << 8)
    assert ev.map_shared_info(d, (0x80000000 >> 12) + 0x100) == 0
    ports = [ev.bind_virq(d, VIRQ_DEBUG, n) for n in range(2)]
    assert all(p > 0 for p in ports)
    pc = Privcmd(hv)
    assert sysctl_keys(pc, "q") == 0
    assert all(ev.is_pending(d, p) for p in ports)
    assert any(f"General information for domain {domid}:" in line for line in hv.dmesg)
    assert sysctl_keys(pc, "!") == -22


def test_input_to_dom0_console_raises_virq_console():
    hv = Hypervisor()
    dev = EvtchnDevice(hv)
    port = dev.bind_virq(VIRQ_CONSOLE)
    Privcmd(hv).call({"op": "console_write", "domid": 0, "data": "x"})
    assert dev.pending(1.0) == port
    dev.close()


def test_destroying_a_domain_notifies_the_remote_end_of_its_channels():
    from xenpy.public.event_channel import EVTCHNSTAT_unbound
    hv = Hypervisor()
    domid = hv.domain_create(0, 1, None, "4.4")
    d = hv.domains[domid]
    hv.domain_populate(d, 16 << 8)
    dev = EvtchnDevice(hv)
    local = dev.bind_unbound(domid)
    assert ev.bind_interdomain(d, 0, local) > 0
    assert dev.pending(0.1) is None             # nothing for dom0 yet
    assert hv.domain_destroy(d) == 0
    assert dev.pending(1.0) == local            # the peer learns of it
    st = ev.status(hv.domains[0], 0x7FF0, local)
    assert st.status == EVTCHNSTAT_unbound
    dev.close()
