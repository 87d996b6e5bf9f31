"""xenstored: the XenStore daemon of a board (tree, permissions, transactions,
watches, quotas) with its socket and ring transports."""
from .connection import LocalConnection
from .core import XenStored
from .domain import RingConnection
from .store import Quota, XsErr

__all__ = ["XenStored", "RingConnection", "LocalConnection", "Quota", "XsErr"]
