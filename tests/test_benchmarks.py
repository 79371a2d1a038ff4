"""Smoke tests of the benchmark scripts ``benchmarks/conv.py``, ``benchmarks/quality.py`` and
``benchmarks/gpu.py``: they run and write their results (the GPU check on the strict CPU
stand-in of CuPy)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from refimpl import texture_stats

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
    assert list(brick["rows"]) == [
        "samples",
        "white noise",
        "phase surrogates",
        "other crops",
        "disjoint crop pairs",
    ]
    for row in brick["rows"].values():
        assert all(row[m] >= 0 for m in texture_stats.METRICS)
    assert brick["rows"]["white noise"]["n"] == brick["rows"]["phase surrogates"]["n"] == 16
    assert "Where the samples sit between the phase surrogates" in text

    # a second call reuses the finished run folder instead of learning again
    again = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(raw.read_text(encoding="utf-8"))["textures"]["brick"]["status"] == "reused"


# --- benchmarks/gpu.py: the device check, its host-only parts and the strict-backend path ------

GPU = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu.py"


def load_gpu_script():
    import importlib.util

    if "gpu_check" not in sys.modules:  # dataclasses need the module registered
        spec = importlib.util.spec_from_file_location("gpu_check", GPU)
        sys.modules["gpu_check"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["gpu_check"])
    return sys.modules["gpu_check"]


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_gpu_check_without_cupy_says_what_to_do_and_writes_nothing(tmp_path):
    command = [sys.executable, str(GPU), "--out", str(tmp_path), "--run-dir", str(tmp_path / "r")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "CuPy is not installed" in done.stderr and "pip install" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_gpu_check_arguments_are_checked():
    gpu = load_gpu_script()
    with pytest.raises(SystemExit):
        gpu.parse_args(["--skip", "warp-drive"])
    with pytest.raises(SystemExit):
        gpu.parse_args(["--iterations", "0"])
    assert gpu.parse_args(["--skip", "verify,preset"]).skip == ["verify", "preset"]


def test_gpu_check_counts_flops_as_documented():
    """Stage 1 of the texture preset, counted by hand: one layer, 32 filters 7x7 stride 2 pad 3
    on 64x64 gray images -> 32x32 outputs, f = 2 * 32 * 1 * 49 * 32 * 32 flops per image and
    kernel. L = 10 Langevin steps of df/dI on 16 chains (forward + adjoint: 10 * 2 * 16 f),
    df/dw of the one data image and the 16 chains (forward + weight gradient: 2 * 17 f),
    the data's reconstruction (forward + adjoint: 2 f): 356 f in all."""
    from refimpl.learning.presets import preset_config

    gpu = load_gpu_script()
    f = 2 * 32 * 1 * 49 * 32 * 32
    assert gpu.iteration_flops(preset_config("texture"), 1, (1, 1, 64, 64), 1) == 356 * f
    # negative control: the count grows with the stage's layers
    assert gpu.iteration_flops(preset_config("texture"), 2, (1, 1, 64, 64), 1) > 356 * f


def test_gpu_report_marks_failures_errors_and_skips():
    gpu = load_gpu_script()
    payload = dict(
        environment=dict(
            date="d", backend="cupy", device="a GPU (80.0 GiB)", device_details={}, host="h",
            numpy="n", torch="t", command="c", quick=False, budget_s=1.0,
        ),
        stages=dict(
            identities=dict(
                checks=[dict(name="an identity", residual=1.0, bound=1e-12, passed=False)],
                seconds=1.0, peak_bytes=2**30,
            ),
            numpy_vs_device=dict(error="RuntimeError: boom", traceback="..."),
            verify={"skipped": "--skip"},
        ),
        seconds=3.0,
        passed=False,
    )  # fmt: skip
    text = gpu.report(payload)
    assert "Device: **a GPU (80.0 GiB)**" in text
    assert "| an identity | 1.00e+00 | 1.0e-12 | FAIL |" in text
    assert "**ERROR**: `RuntimeError: boom`" in text and "Skipped: --skip." in text
    assert "| identities | 1.00 |" in text and "Overall: **FAIL**" in text


def test_gpu_check_end_to_end_on_the_strict_backend(tmp_path):
    """The whole script on the CPU stand-in of CuPy (tests/strict_backend.py), shrunken shapes;
    verify --quick on that backend is tested in tests/test_strict_backend.py, so skipped here."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    command = [
        sys.executable, str(GPU), "--backend", "strict", "--quick", "--iterations", "1",
        "--skip", "verify", "--out", str(tmp_path), "--run-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[4/6] texture-paper, timed" in done.stdout
    text = (tmp_path / "gpu-quick.md").read_text(encoding="utf-8")
    assert "QUICK RUN" in text and "strict backend: CuPy stand-in" in text
    payload = json.loads((tmp_path / "gpu-quick.json").read_text(encoding="utf-8"))
    assert payload["passed"] and payload["environment"]["backend"] == "strict"
    stages = payload["stages"]
    assert (
        len(stages["identities"]["checks"]) == 5 and len(stages["numpy_vs_device"]["checks"]) == 7
    )
    assert {r["dtype"] for r in stages["conv_throughput"]["rows"]} == {"float32", "float64"}
    assert all(r["gflops"] > 0 for r in stages["iteration_throughput"]["rows"])
    preset = stages["preset"]
    assert [s["stage"] for s in preset["stages"]] == [1, 2, 3] and preset["projected_full_s"] > 0
    assert (tmp_path / "run" / "samples.png").is_file()


def test_gpu_check_negative_control_a_device_off_by_1e_9_fails(monkeypatch):
    """Stage 2 rejects a device whose bias gradient is off by one part in 1e9 (bound ~1e-12),
    while the same stage with the correct kernels passes."""
    import strict_backend

    from refimpl.conv import fast

    gpu = load_gpu_script()
    correct = fast.bias_grad
    with strict_backend.registered() as namespace:
        device = gpu.Device("strict", namespace, "strict", None)
        assert all(c.passed for c in gpu.stage_numpy_vs_device(device, quick=True))

        def off_on_the_device(y):
            scale = 1 + 1e-9 if strict_backend.is_strict_array(y) else 1.0
            return correct(y) * scale

        monkeypatch.setattr(fast, "bias_grad", off_on_the_device)
        checks = {c.name: c for c in gpu.stage_numpy_vs_device(device, quick=True)}
    assert not checks["df/dw"].passed and checks["df/dI"].passed


# --- benchmarks/learning.py and the FLOP count of one iteration --------------------------------

LEARNING = Path(__file__).resolve().parent.parent / "benchmarks" / "learning.py"


def load_benchmark_common():
    """``benchmarks/common.py`` as the scripts import it (their folder on ``sys.path``)."""
    import importlib

    if str(LEARNING.parent) not in sys.path:
        sys.path.insert(0, str(LEARNING.parent))
    return importlib.import_module("common")


def test_the_flop_formula_equals_the_flops_the_iteration_runs():
    """``iteration_flops`` (derived per layer from the algorithm) against every convolution one
    ``Trainer.compute_step`` actually calls, counted as it runs: equal, for ML and CD, with
    and without the top filter. The negative control: one Langevin step fewer is caught."""
    import numpy as np

    from refimpl.learning import LearningConfig, Trainer

    common = load_benchmark_common()
    base = dict(spec=[(3, 3, 2, 1), (4, 3, 1, 1)], grow=False, chains=3, langevin_steps=2)
    for overrides in (dict(), dict(method="cd"), dict(top_filter=True)):
        config = LearningConfig(**base, init_std="he", seed=1, **overrides)
        data = np.random.default_rng(0).standard_normal((2, 1, 10, 10))
        trainer = Trainer(config, data)
        counted, calls = common.counted_flops(trainer)
        formula = common.iteration_flops(config, trainer.stage, data.shape, len(data))
        assert calls > 0 and counted == formula, overrides
        fewer = LearningConfig(**{**config.to_dict(), "langevin_steps": 1})
        assert common.iteration_flops(fewer, trainer.stage, data.shape, len(data)) != counted


def test_learning_benchmark_quick_run(tmp_path):
    command = [
        sys.executable,
        str(LEARNING),
        "--quick",
        "--no-torch",
        "--dtypes",
        "float32",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    payload = json.loads((tmp_path / "learning-quick.json").read_text(encoding="utf-8"))
    [row] = payload["rows"]
    assert row["preset"] == "object" and row["dtype"] == "float32" and row["refimpl_gflops"] > 0
    assert "QUICK RUN" in (tmp_path / "learning-quick.md").read_text(encoding="utf-8")


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
