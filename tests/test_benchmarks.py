"""The benchmark scripts run at their smallest size, so they cannot rot."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(
    "script,tables",
    [("speed.py", ["speed.csv", "speed.md"]), ("accuracy.py", ["accuracy.csv", "accuracy.md", "accuracy.png"])],
)
def test_benchmark_runs_quick_and_writes_its_tables(tmp_path, script, tables):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in tables:
        assert (tmp_path / name).stat().st_size > 0, name
    table = pd.read_csv(tmp_path / tables[0])
    assert len(table) and table.notna().any(axis=None)
    assert "Wrote" in result.stdout
