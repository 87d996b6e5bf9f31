"""Dom0's services in the board process (xenconsoled, the store's event pump) are loops on
their own threads. One bad turn (a bug, a domain dying under them) must not end the loop, and
must not go unnoticed: it is logged once per place it happened, with where, and the loop goes on.
"""
from __future__ import annotations

import traceback
from typing import Callable


class Guard:
    def __init__(self, service: str, log: Callable[[str], None]) -> None:
        self.service, self._log = service, log
        self._seen: set[tuple[str, str]] = set()

    def report(self, e: BaseException, doing: str = "") -> None:
        tb = traceback.extract_tb(e.__traceback__)
        where = f"{tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno} in {tb[-1].name}" if tb \
            else "?"
        key = (type(e).__name__, where)
        if key in self._seen:
            return
        self._seen.add(key)
        self._log(f"{self.service}: {doing + ' ' if doing else ''}raised {type(e).__name__}: "
                  f"{e} (at {where}); the service carries on (logged once)")
