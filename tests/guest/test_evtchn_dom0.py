"""Dom0 userspace and a domU talk over an event channel, through privcmd's evtchn device."""
from __future__ import annotations

import struct

from tests.guest.a32 import DATA, HVC, boot, load32, mov, reg, shutdown, wait_shutdown
from toolstack.xc import LocalTransport
from toolstack.xenevtchn import Xenevtchn
from xenpy.board.privcmd import Privcmd

BIND = DATA + 0x200      # struct evtchn_bind_interdomain {remote_dom, remote_port, local_port}
SEND = DATA + 0x210      # struct evtchn_send {port}


def program() -> list[int]:
    return [mov(0, 0), *load32(1, BIND), mov(12, 32), HVC, 0xE1A09000,          # bind; r9 = rc
            *load32(1, BIND), 0xE5913008, *load32(2, SEND), 0xE5823000,           # send.port = local
            mov(0, 4), *load32(1, SEND), mov(12, 32), HVC, 0xE1A0A000,           # send; r10 = rc
            *shutdown(DATA + 0x14)]


def test_domu_notifies_a_port_dom0_allocated(hv):
    evt = Xenevtchn(LocalTransport(Privcmd(hv)))
    ports = {}

    def allocate(d):
        ports["dom0"] = evt.bind_unbound_port(d.domid)
        return {BIND: struct.pack("<HHII", 0, 0, ports["dom0"], 0)}

    d = boot(hv, program(), before_start=allocate)
    assert evt.pending(timeout=5) == ports["dom0"]
    wait_shutdown(d)
    assert reg(d, 9) == 0 and reg(d, 10) == 0
    local = struct.unpack("<I", d.vcpus[0].arch.read_phys(BIND + 8, 4))[0]
    assert local != 0
    evt.unmask(ports["dom0"])
    evt.close()


def test_bind_to_a_port_not_offered_to_this_domain_is_einval(hv):
    evt = Xenevtchn(LocalTransport(Privcmd(hv)))
    other = hv.domain_create(0, 1, None, "4.4")
    port = evt.bind_unbound_port(other)          # offered to another domain
    d = boot(hv, program(), data={BIND: struct.pack("<HHII", 0, 0, port, 0)})
    wait_shutdown(d)
    assert reg(d, 9) == (-22) & 0xFFFFFFFF
    assert evt.pending(timeout=0.2) is None
    evt.close()
