"""Smoke tests of the benchmark scripts ``benchmarks/conv.py`` and ``benchmarks/quality.py``:
they run and write their results."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "conv.py"
QUALITY = Path(__file__).resolve().parent.parent / "benchmarks" / "quality.py"


def test_conv_benchmark_quick_run(tmp_path):
    command = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        "--no-torch",
        "--layers",
        "L3",
        "--dtypes",
        "float32",
        "--ops",
        "forward",
        "--out",
        str(tmp_path),
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


def test_quality_benchmark_quick(tmp_path):
    # One BLAS thread: on a busy 2-core machine a threaded OpenBLAS slows these tiny
    # convolutions down by ~15x (threads spinning against other processes).
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        str(QUALITY),
        "--quick",
        "--textures",
        "brick",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert done.returncode == 0, done.stderr

    markdown, raw, png = (tmp_path / f"quality-quick.{ext}" for ext in ("md", "json", "png"))
    assert markdown.is_file() and raw.is_file() and png.is_file() and png.stat().st_size > 0
    text = markdown.read_text(encoding="utf-8")
    assert "QUICK RUN" in text and "| brick | samples | 4 |" in text
    assert (tmp_path / "quality-quick" / "brick" / "summary.json").is_file()

    payload = json.loads(raw.read_text(encoding="utf-8"))
    assert payload["environment"]["quick"] is True
    brick = payload["textures"]["brick"]
    assert brick["status"] == "learned" and brick["chains"] == 4
    assert brick["summary"]["iterations"] == 15 and len(brick["summary"]["final_mismatch"]) == 3
    assert list(brick["rows"]) == ["samples", "white noise", "other crops", "disjoint crop pairs"]
    for row in brick["rows"].values():
        assert all(row[m] >= 0 for m in ("marginal", "spectrum", "filters"))
    assert brick["rows"]["white noise"]["n"] == 16

    # a second call reuses the finished run folder instead of learning again
    again = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(raw.read_text(encoding="utf-8"))["textures"]["brick"]["status"] == "reused"


CLASSIFIERS = Path(__file__).resolve().parent.parent / "benchmarks" / "classifiers.py"


def test_classifier_benchmark_quick(tmp_path):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        str(CLASSIFIERS),
        "--quick",
        "--rows",
        "gmmc-joint",
        "jem-generative",
        "--seeds",
        "0",
        "1",
        "--out",
        str(tmp_path),
        "--runs",
        str(tmp_path / "runs"),
        "--figures",
        str(tmp_path / "figures"),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "classifiers-quick.md").read_text(encoding="utf-8")
    assert "QUICK RUN" in text and "| GMMC (joint) | 2 / 2 |" in text and "| JEM | 2 / 2 |" in text
    payload = json.loads((tmp_path / "classifiers-quick.json").read_text(encoding="utf-8"))
    summary = payload["summary"]["gmmc-joint"]
    assert summary["finished"] == 2 and 0 <= summary["ece"]["mean"] <= 1
    assert len(summary["energy_excursion"]) == 2 and min(summary["energy_excursion"]) >= 1
    assert len(payload["summary"]["jem-generative"]["energy_excursion"]) == 2
    assert set(summary["auroc"]) == {"noise", "texture", "interp", "inverted"}
    for name in ("classify_joint.png", "classify_samples_jem.png", "classify_ood_jem.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 0
    again = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert again.returncode == 0 and "reused" in again.stdout
