"""scripts/device_bench.py's smoke run (tiny sizes) in numba's CUDA simulator: the device script
runs end to end and its equality checks pass before a GPU is lent (a few seconds)."""
from __future__ import annotations

import importlib.util

from tests.conftest import PROJECT_ROOT


def test_device_bench_smoke_run(tmp_path):
    spec = importlib.util.spec_from_file_location("device_bench", PROJECT_ROOT / "scripts" / "device_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    section = tmp_path / "section.md"
    assert bench.main(["--smoke", "--parts", "indicators,sweep", "--section", str(section)]) == 0
    text = section.read_text()
    assert "(smoke run)" in text and "numba CUDA simulator" in text
    rows = [line for line in text.splitlines() if line.startswith("| indicator panel 40 × 6, 5 kinds")
            or line.startswith("| SMA sweep 4 combinations")]
    assert len(rows) == 2 and all(row.endswith("| yes |") for row in rows), rows
