"""XenStore wire protocol: xen/include/public/io/xs_wire.h.

Message types, the 16-byte xsd_sockmsg header, the errno names xenstored sends in
XS_ERROR replies (in the header's table order), and the layout of the
xenstore_domain_interface ring page. Everything is little-endian, as on ARM.
"""
from __future__ import annotations

import struct
from enum import IntEnum


class XsType(IntEnum):
    """enum xsd_sockmsg_type."""

    CONTROL = 0  # XS_DEBUG is an alias
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    # 20 was XS_RESTRICT: removed, the value is invalid.
    RESET_WATCHES = 21
    DIRECTORY_PART = 22
    GET_FEATURE = 23
    SET_FEATURE = 24
    GET_QUOTA = 25
    SET_QUOTA = 26


XS_DEBUG = XsType.CONTROL
XS_TYPE_COUNT = 27
XS_INVALID = 0xFFFF

# struct xsd_errors xsd_errors[]: (errno, name) in the header's order. Errors not
# in this table are sent as EINVAL by xenstored.
XSD_ERRORS: tuple[tuple[int, str], ...] = (
    (22, "EINVAL"),
    (13, "EACCES"),
    (17, "EEXIST"),
    (21, "EISDIR"),
    (2, "ENOENT"),
    (12, "ENOMEM"),
    (28, "ENOSPC"),
    (5, "EIO"),
    (39, "ENOTEMPTY"),
    (38, "ENOSYS"),
    (30, "EROFS"),
    (16, "EBUSY"),
    (11, "EAGAIN"),
    (106, "EISCONN"),
    (7, "E2BIG"),
    (1, "EPERM"),
)
ERRNO_OF_NAME: dict[str, int] = {name: num for num, name in XSD_ERRORS}
NAME_OF_ERRNO: dict[int, str] = {num: name for num, name in XSD_ERRORS}

# struct xsd_sockmsg { uint32_t type, req_id, tx_id, len; }
XSD_SOCKMSG = struct.Struct("<IIII")
XSD_SOCKMSG_SIZE = XSD_SOCKMSG.size  # 16

# enum xs_watch_type: index of the fields of a WATCH_EVENT payload.
XS_WATCH_PATH = 0
XS_WATCH_TOKEN = 1

XENSTORE_PAYLOAD_MAX = 4096
XENSTORE_ABS_PATH_MAX = 3072
XENSTORE_REL_PATH_MAX = 2048

# struct xenstore_domain_interface
XENSTORE_RING_SIZE = 1024


def MASK_XENSTORE_IDX(idx: int) -> int:
    return idx & (XENSTORE_RING_SIZE - 1)


XS_RING_REQ_OFF = 0
XS_RING_RSP_OFF = 1024
XS_RING_REQ_CONS_OFF = 2048
XS_RING_REQ_PROD_OFF = 2052
XS_RING_RSP_CONS_OFF = 2056
XS_RING_RSP_PROD_OFF = 2060
XS_RING_SERVER_FEATURES_OFF = 2064  # absent in Xen 4.4's struct
XS_RING_CONNECTION_OFF = 2068
XS_RING_ERROR_OFF = 2072
XS_RING_EVTCHN_PORT_OFF = 2076
XS_RING_LEGACY_SIZE = 2064  # Xen 4.4: rings and the four indexes only
XS_RING_INTERFACE_SIZE = 2080

XENSTORE_SERVER_FEATURE_RECONNECTION = 1
XENSTORE_SERVER_FEATURE_ERROR = 2
XENSTORE_SERVER_FEATURE_WATCHDEPTH = 4
XENSTORE_SERVER_FEATURE_DOMID_ANY = 8

XENSTORE_CONNECTED = 0
XENSTORE_RECONNECT = 1

XENSTORE_ERROR_NONE = 0
XENSTORE_ERROR_COMM = 1
XENSTORE_ERROR_RINGIDX = 2
XENSTORE_ERROR_PROTO = 3


def pack_msg(type_: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    """One wire message: header then payload."""
    return XSD_SOCKMSG.pack(type_, req_id, tx_id, len(payload)) + payload
