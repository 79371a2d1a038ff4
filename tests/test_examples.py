"""The two consumers: the PyTorch and JAX examples pass ``crosscheck``; their broken variants fail.

Each example is run in this process on a golden set (PyTorch on NCHW, JAX on NHWC, its own
layouts, and each on the other layout too), and its results are compared as
``python -m refimpl crosscheck`` compares them. Skipped when PyTorch or JAX is absent
(``pip install -e ".[torch,jax]"`` installs them; CI has neither).
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from refimpl.crosscheck import compare, write_golden
from refimpl.crosscheck.mistakes import HINTS
from refimpl.numerics import CROSSCHECK_FLOAT32

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LIBRARIES = {"torch": "torch_generative_convnet.py", "jax": "jax_generative_convnet.py"}
NATIVE_LAYOUT = {"torch": "nchw", "jax": "nhwc"}

# The hint each broken variant must get (every failing quantity carries it).
BROKEN = {
    "drift": HINTS["drift-eps2"],
    "flip": HINTS["flip"],
    "mask": HINTS["relu-mask"],
    "nhwc": "(the other layout: transpose your array",
}


def example(library: str):
    """The example module for ``library`` (skips the test when the library is not installed)."""
    pytest.importorskip(library)
    path = EXAMPLES / LIBRARIES[library]
    spec = importlib.util.spec_from_file_location(f"example_{library}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def goldens(tmp_path_factory):
    """Golden sets of the cases the examples compute, in both layouts."""
    cases = ["conv", "convnet", "langevin", "learning_ml", "learning_cd"]
    out = {}
    for layout in ("nchw", "nhwc"):
        out[layout] = tmp_path_factory.mktemp(layout)
        write_golden(out[layout], seed=0, layout=layout, cases=cases)
    return out


def run(library, golden, out, *flags):
    module = example(library)
    if library == "torch":
        # the cases are tiny: a second intra-op thread only waits for a core (on a shared
        # 2-core machine a float64 conv2d took 31 ms with 2 threads and 6 us with 1)
        threads = module.torch.get_num_threads()
        module.torch.set_num_threads(1)
    try:
        module.main([str(golden), str(out), *flags])
    finally:
        if library == "torch":
            module.torch.set_num_threads(threads)
    return compare(golden, out, cases=list(module.CASES))


@pytest.mark.parametrize("library", sorted(LIBRARIES))
@pytest.mark.parametrize("float32", [False, True])
def test_example_passes_in_its_layout(library, float32, goldens, tmp_path):
    golden = goldens[NATIVE_LAYOUT[library]]
    report = run(library, golden, tmp_path, *(["--float32"] if float32 else []))
    assert report.passed, report.table()
    precision = "float32" if float32 else "float64"
    assert {r.precision for r in report.rows if r.kind == "close"} == {precision}
    with np.load(tmp_path / "langevin.npz") as results:
        assert results["samples"].dtype == np.dtype(precision)
    if float32:  # measured 1.8e-7 (PyTorch) and 1.6e-7 (JAX): well inside the tolerance
        assert max(r.max_rel for r in report.rows) < CROSSCHECK_FLOAT32 / 10


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_example_passes_in_the_other_layout(library, goldens, tmp_path):
    other = "nhwc" if NATIVE_LAYOUT[library] == "nchw" else "nchw"
    report = run(library, goldens[other], tmp_path)
    assert report.passed, report.table()


@pytest.mark.parametrize("library", sorted(LIBRARIES))
@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_broken_variant_fails_with_the_right_hint(library, broken, goldens, tmp_path):
    report = run(library, goldens[NATIVE_LAYOUT[library]], tmp_path, "--broken", broken)
    assert not report.passed
    for row in report.failures:
        assert any(BROKEN[broken] in hint for hint in row.hints), (row.case, row.quantity)
    # the mistake is only where it should be: convolution alone is free of Langevin mistakes
    conv_failures = [r for r in report.failures if r.case == "conv"]
    assert bool(conv_failures) == (broken in ("flip", "nhwc"))
