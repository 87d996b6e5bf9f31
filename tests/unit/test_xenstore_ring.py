"""The shared-page ring transport, driven from the guest's side of a bytearray page."""
from __future__ import annotations

import struct
import threading

from xenpy.public.io.xs_wire import (
    XENSTORE_CONNECTED,
    XENSTORE_ERROR_NONE,
    XENSTORE_ERROR_PROTO,
    XENSTORE_ERROR_RINGIDX,
    XENSTORE_RECONNECT,
    XS_RING_CONNECTION_OFF,
    XS_RING_ERROR_OFF,
    XS_RING_REQ_CONS_OFF,
    XS_RING_REQ_PROD_OFF,
    XS_RING_RSP_CONS_OFF,
    XS_RING_RSP_PROD_OFF,
    XS_RING_SERVER_FEATURES_OFF,
    XSD_SOCKMSG,
    XsType,
    pack_msg,
)
from xenpy.xenstore import XenStored


def z(*parts: str) -> bytes:
    return b"".join(p.encode() + b"\0" for p in parts)


def u32(page: bytearray, off: int) -> int:
    return struct.unpack_from("<I", page, off)[0]


def set32(page: bytearray, off: int, v: int) -> None:
    struct.pack_into("<I", page, off, v & 0xFFFFFFFF)


class Guest:
    """What a guest's xenbus driver does with the page."""

    def __init__(self, page: bytearray) -> None:
        self.page = page
        self.rx = bytearray()

    def put(self, data: bytes) -> int:
        """Produce as much as fits into the request ring; returns bytes written."""
        cons, prod = u32(self.page, XS_RING_REQ_CONS_OFF), u32(self.page, XS_RING_REQ_PROD_OFF)
        n = min(len(data), 1024 - ((prod - cons) & 0xFFFFFFFF))
        for i in range(n):
            self.page[(prod + i) & 1023] = data[i]
        set32(self.page, XS_RING_REQ_PROD_OFF, prod + n)
        return n

    def get(self) -> list[tuple[int, int, bytes]]:
        cons, prod = u32(self.page, XS_RING_RSP_CONS_OFF), u32(self.page, XS_RING_RSP_PROD_OFF)
        for i in range((prod - cons) & 0xFFFFFFFF):
            self.rx.append(self.page[1024 + ((cons + i) & 1023)])
        set32(self.page, XS_RING_RSP_CONS_OFF, prod)
        msgs = []
        while len(self.rx) >= 16:
            t, req_id, _, length = XSD_SOCKMSG.unpack_from(self.rx)
            if len(self.rx) < 16 + length:
                break
            msgs.append((t, req_id, bytes(self.rx[16:16 + length])))
            del self.rx[:16 + length]
        return msgs


def setup(domid: int = 2, page_size: int = 4096, start_index: int = 0):
    xs = XenStored(None, log=lambda s: None)
    d0 = xs.connect_local()
    d0.request(XsType.MKDIR, z(f"/local/domain/{domid}"))
    d0.request(XsType.SET_PERMS, z(f"/local/domain/{domid}", f"n{domid}"))
    page = bytearray(page_size)
    for off in (XS_RING_REQ_CONS_OFF, XS_RING_REQ_PROD_OFF, XS_RING_RSP_CONS_OFF, XS_RING_RSP_PROD_OFF):
        set32(page, off, start_index)  # indexes need not start at 0
    notified = []
    ring = xs.connect_ring(domid, memoryview(page), lambda: notified.append(1))
    return xs, d0, ring, Guest(page), page, notified


def test_requests_and_replies_through_the_page():
    xs, d0, ring, g, page, notified = setup(start_index=0xFFFFFF00)  # indexes wrap past 2^32
    assert u32(page, XS_RING_SERVER_FEATURES_OFF) == 15
    g.put(pack_msg(XsType.WRITE, 1, 0, z("name") + b"guest"))
    g.put(pack_msg(XsType.READ, 2, 0, z("name")))
    ring.kick()
    assert notified
    assert g.get() == [(XsType.WRITE, 1, b"OK\0"), (XsType.READ, 2, b"guest")]
    assert d0.request(XsType.READ, z("/local/domain/2/name")) == (XsType.READ, b"guest")


def test_many_requests_wrap_the_ring_and_split_across_kicks():
    xs, d0, ring, g, page, notified = setup()
    stream = b"".join(pack_msg(XsType.WRITE, i, 0, z(f"k{i % 7}") + b"v" * 50) for i in range(100))
    replies = []
    while stream:
        n = g.put(stream[:300])  # a guest may hand over partial messages
        stream = stream[n:]
        ring.kick()
        replies += g.get()
    assert [r[1] for r in replies] == list(range(100))
    assert all(r == (XsType.WRITE, i, b"OK\0") for i, r in enumerate(replies))


def test_replies_wait_for_room_in_the_response_ring():
    xs, d0, ring, g, page, notified = setup()
    d0.request(XsType.WRITE, z("/local/domain/2/big") + b"x" * 3000)
    d0.request(XsType.SET_PERMS, z("/local/domain/2/big", "n2"))
    g.put(pack_msg(XsType.READ, 9, 0, z("big")))
    ring.kick()
    got = g.get()
    for _ in range(4):
        ring.kick()  # the guest took what fitted and signals
        got += g.get()
    assert got == [(XsType.READ, 9, b"x" * 3000)]


def test_watch_events_reach_the_guest_with_a_notification():
    xs, d0, ring, g, page, notified = setup()
    g.put(pack_msg(XsType.WATCH, 1, 0, z("control/shutdown", "tok")))
    ring.kick()
    assert g.get() == [(XsType.WATCH, 1, b"OK\0"), (XsType.WATCH_EVENT, 0, z("control/shutdown", "tok"))]
    notified.clear()
    d0.request(XsType.WRITE, z("/local/domain/2/control/shutdown") + b"poweroff")
    assert notified  # events produced by another connection signal the guest
    assert g.get() == [(XsType.WATCH_EVENT, 0, z("control/shutdown", "tok"))]


def test_garbage_indexes_stop_only_that_ring():
    xs, d0, ring, g, page, notified = setup()
    d0.request(XsType.MKDIR, z("/local/domain/4"))
    page4 = bytearray(4096)
    ring4 = xs.connect_ring(4, memoryview(page4), lambda: None)
    set32(page, XS_RING_REQ_PROD_OFF, 5000)  # more than a ring's worth outstanding
    ring.kick()
    assert u32(page, XS_RING_ERROR_OFF) == XENSTORE_ERROR_RINGIDX
    assert ring.ignored
    g4 = Guest(page4)
    g4.put(pack_msg(XsType.GET_DOMAIN_PATH, 3, 0, z("4")))
    ring4.kick()
    assert g4.get() == [(XsType.GET_DOMAIN_PATH, 3, z("/local/domain/4"))]
    assert d0.request(XsType.READ, z("/tool/xenstored"))[0] == XsType.READ
    # Reconnection (feature bit 0) gives the guest a clean ring again.
    set32(page, XS_RING_CONNECTION_OFF, XENSTORE_RECONNECT)
    notified.clear()
    ring.kick()
    assert u32(page, XS_RING_CONNECTION_OFF) == XENSTORE_CONNECTED
    assert u32(page, XS_RING_ERROR_OFF) == XENSTORE_ERROR_NONE
    assert notified and u32(page, XS_RING_REQ_PROD_OFF) == 0
    g.put(pack_msg(XsType.GET_DOMAIN_PATH, 4, 0, z("2")))
    ring.kick()
    assert g.get() == [(XsType.GET_DOMAIN_PATH, 4, z("/local/domain/2"))]


def test_garbage_response_indexes_and_overlong_messages():
    xs, d0, ring, g, page, notified = setup()
    set32(page, XS_RING_RSP_CONS_OFF, 0x80000000)
    g.put(pack_msg(XsType.READ, 1, 0, z("x")))
    ring.kick()
    assert u32(page, XS_RING_ERROR_OFF) == XENSTORE_ERROR_RINGIDX
    xs2, d02, ring2, g2, page2, _ = setup()
    g2.put(struct.pack("<IIII", XsType.READ, 1, 0, 4097))
    ring2.kick()
    assert u32(page2, XS_RING_ERROR_OFF) == XENSTORE_ERROR_PROTO
    g2.put(pack_msg(XsType.READ, 2, 0, z("x")))
    ring2.kick()
    assert g2.get() == []  # stopped until it reconnects


def test_xen_4_4_pages_have_no_feature_fields():
    xs, d0, ring, g, page, notified = setup(page_size=2064)
    g.put(pack_msg(XsType.GET_DOMAIN_PATH, 1, 0, z("2")))
    ring.kick()
    assert g.get() == [(XsType.GET_DOMAIN_PATH, 1, z("/local/domain/2"))]


def test_introduce_asks_the_board_for_the_ring():
    calls = []
    pages: dict[int, bytearray] = {}

    def on_introduce(domid: int, gfn: int, port: int):
        calls.append((domid, gfn, port))
        # The board must not be blocked by xenstored's lock here.
        assert threading.current_thread() is threading.main_thread()
        pages[domid] = bytearray(4096)
        set32(pages[domid], XS_RING_REQ_PROD_OFF, 77)  # stale data the reset discards
        return xs.connect_ring(domid, memoryview(pages[domid]), lambda: None)

    xs = XenStored(None, on_introduce=on_introduce, log=lambda s: None)
    d0 = xs.connect_local()
    d0.request(XsType.WATCH, z("@introduceDomain", "t"))
    d0.poll_events()
    assert d0.request(XsType.INTRODUCE, z("6", "233473", "3")) == (XsType.INTRODUCE, b"OK\0")
    assert calls == [(6, 233473, 3)]
    assert d0.poll_events() == [("@introduceDomain", "t")]
    assert u32(pages[6], XS_RING_REQ_PROD_OFF) == 0
    assert xs.is_domain_introduced(6)
    assert d0.request(XsType.INTRODUCE, z("6", "1", "0")) == (XsType.ERROR, b"EINVAL\0")


def test_introduce_failure_in_the_board_is_an_error_reply():
    def on_introduce(domid: int, gfn: int, port: int):
        raise OSError(2, "no such domain")

    xs = XenStored(None, on_introduce=on_introduce, log=lambda s: None)
    d0 = xs.connect_local()
    assert d0.request(XsType.INTRODUCE, z("6", "1", "3")) == (XsType.ERROR, b"ENOENT\0")
    assert not xs.is_domain_introduced(6)


def test_no_event_at_connect_nor_for_kicks_of_an_empty_ring():
    # xenstored signals only after it consumed requests or produced replies (readchn/writechn):
    # a guest that never spoke gets nothing, and one that notifies on every poll gets no storm.
    xs, d0, ring, g, page, notified = setup()
    assert notified == []
    for _ in range(1000):
        ring.kick()
    assert notified == []
    g.put(pack_msg(XsType.READ, 1, 0, z("/local")))
    ring.kick()
    assert notified                          # request taken, reply written
    notified.clear()
    g.get()
    for _ in range(100):
        ring.kick()
    assert notified == []
