"""What the benchmarks share: describing the machine, timing a rate, recording the result."""
from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, str]:
    return {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "python": f"{platform.python_implementation()} {platform.python_version()}"}


def rate(fn: Callable[[], None], n: int, repeat: int) -> float:
    """Best of `repeat` runs of n calls: calls per second."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def write_result(path: str | Path, result: dict) -> None:
    """The JSON that bench/report.py turns into the README's tables."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {path}")
