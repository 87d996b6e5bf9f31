"""xen/include/public/io/console.h: the PV console ring page (struct xencons_interface)."""

IN_OFFSET, IN_SIZE = 0, 1024
OUT_OFFSET, OUT_SIZE = 1024, 2048
IN_CONS, IN_PROD, OUT_CONS, OUT_PROD = 3072, 3076, 3080, 3084
CONNECTION = 3088                 # u8: XENCONSOLE_CONNECTED 0, _DISCONNECTED 1 (newer Xen only)


def mask_in(i: int) -> int:
    return i & (IN_SIZE - 1)


def mask_out(i: int) -> int:
    return i & (OUT_SIZE - 1)
