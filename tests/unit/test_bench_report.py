"""The README's performance tables are the benchmarks' recorded results (bench/report.py), not
numbers typed by hand: this fails when a JSON in bench/results changes without the README."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_tables_are_rendered_from_bench_results():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench/report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    readme = (ROOT / "README.md").read_text()
    block = readme.split(report.BEGIN, 1)[1].split(report.END, 1)[0]
    assert block.strip() == report.tables().strip(), \
        "README.md's tables differ from bench/results: run python bench/report.py --readme"
    assert "| A32 integer loop, 1G instructions |" in block
