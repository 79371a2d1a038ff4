"""Smoke test of the benchmark script ``benchmarks/conv.py``: it runs and writes its results."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "conv.py"


def test_conv_benchmark_quick_run(tmp_path):
    command = [
        sys.executable, str(SCRIPT), "--quick", "--no-torch", "--layers", "L3",
        "--dtypes", "float32", "--ops", "forward", "--out", str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr

    markdown, raw = tmp_path / "conv.md", tmp_path / "conv.json"
    assert markdown.is_file() and raw.is_file()
    assert "QUICK RUN" in markdown.read_text(encoding="utf-8")

    payload = json.loads(raw.read_text(encoding="utf-8"))
    assert payload["environment"]["quick"] is True
    [row] = payload["rows"]
    assert (row["layer"], row["dtype"], row["op"]) == ("L3", "float32", "forward")
    assert row["fast"]["gflops_best"] > 0
    assert row["torch"] is None
    assert payload["memory"]["tracemalloc_peak_mb"] > 0
