"""The backend seam: namespace selection, dtype policy, and no direct NumPy in compute modules."""

import ast
import importlib.util
import pathlib

import numpy as np
import pytest

import refimpl
from refimpl import ConvNet, backend

PACKAGE = pathlib.Path(refimpl.__file__).parent

# Modules allowed to import NumPy, each with its reason. Everything else computes through
# the namespace `xp` that refimpl.backend hands out, so it runs on CuPy unchanged.
HOST_ONLY = {
    "backend.py": "defines the namespace; the one home of `import numpy`",
    "data.py": "reads image and CSV files into host arrays",
    "plotting.py": "draws host arrays with matplotlib",
    "exact/": "exact 1-D/2-D references by SciPy quadrature, on the host",
    "theorems/": "numerical checks on small host instances (SciPy statistics, quadrature)",
    "learning/checkpoint.py": "the checkpoint file format (npz) on the host",
    "learning/runs.py": "run folders: reading images, writing npy/PNG outputs on the host",
    "run_folder.py": "run folders: atomic npz/npy/JSON files, checkpoint checks on the host",
    "texture_stats.py": "texture statistics of host images (SciPy filters and FFTs)",
    "hybrid/": "the exact 2-D toy of hybrid training: thousands of tiny fits (SciPy, plots)",
    "crosscheck/": "golden vectors are host files (npz, JSON); exact references, KS tests (SciPy)",
    "classify/data.py": "reads the bundled digits and textures into host arrays (split, OOD sets)",
    "classify/experiment.py": "writes a classifier run's files (JSON, npz) and figures on the host",
}


def allowed(rel: str) -> bool:
    return any(rel == name or (name.endswith("/") and rel.startswith(name)) for name in HOST_ONLY)


def numpy_imports(source: str) -> list:
    """Line numbers of ``import numpy``/``from numpy ...`` statements in ``source``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(
            a.name.split(".")[0] == "numpy" for a in node.names
        ):
            lines.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "numpy":
            lines.append(node.lineno)
    return lines


def test_no_compute_module_imports_numpy():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if allowed(rel):
            continue
        for line in numpy_imports(path.read_text()):
            offenders.append(f"refimpl/{rel}:{line}")
    assert not offenders, (
        "compute modules must take their array namespace from refimpl.backend, not import "
        f"numpy: {offenders}"
    )


@pytest.mark.parametrize(
    "source",
    [
        "import numpy as np",
        "from numpy import zeros",
        "import numpy.linalg",
        "def f():\n    import numpy\n",
    ],
)
def test_negative_control_numpy_import_is_detected(source):
    assert numpy_imports(source)


def test_numpy_is_default(monkeypatch):
    monkeypatch.delenv(backend.ENV_BACKEND, raising=False)
    assert backend.get_namespace() is np
    assert backend.get_namespace("numpy") is np


def test_environment_variable_selects_backend(monkeypatch):
    monkeypatch.setenv(backend.ENV_BACKEND, "numpy")
    assert backend.get_namespace() is np
    monkeypatch.setenv(backend.ENV_BACKEND, "torch")
    with pytest.raises(
        ValueError, match=r"backend must be one of \('numpy', 'cupy'\); got 'torch'"
    ):
        backend.get_namespace()


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_cupy_without_cupy_is_a_clear_error():
    with pytest.raises(backend.BackendError, match="CuPy is not installed"):
        backend.get_namespace("cupy")
    with pytest.raises(backend.BackendError, match="CuPy is not installed"):
        ConvNet.random(1, [(2, 3)], backend="cupy")


def test_dtype_policy():
    assert backend.resolve_dtype() == np.float64
    assert backend.resolve_dtype("float32") == np.float32
    for bad in ("int32", "float16", bool):
        with pytest.raises(TypeError, match="dtype must be float64 or float32"):
            backend.resolve_dtype(bad)


def test_float32_on_request():
    net = ConvNet.random(1, [(2, 3), (1, 2)], seed=0, dtype="float32")
    I = np.ones((2, 1, 6, 6), dtype=np.float32)
    assert net.dtype == np.float32
    assert net.score(I).dtype == np.float32 and net.grad_input(I).dtype == np.float32
    assert all(dw.dtype == np.float32 for dw, _ in net.grad_params(I))
    # float64 images are cast to the network's dtype (documented), not refused
    assert net.score(I.astype(np.float64)).dtype == np.float32


def test_namespace_of_infers_from_arrays():
    assert backend.namespace_of(np.zeros(2), None, 3.0) is np
    assert backend.namespace_of() is np


def test_same_seed_same_network_and_host_draws():
    a = ConvNet.random(2, [(3, 3), (2, 3)], seed=7)
    b = ConvNet.random(2, [(3, 3), (2, 3)], seed=7)
    c = ConvNet.random(2, [(3, 3), (2, 3)], seed=8)
    for (wa, ba), (wb, bb) in zip(a.parameters(), b.parameters(), strict=True):
        assert np.array_equal(wa, wb) and np.array_equal(ba, bb)
    assert not np.array_equal(a.layers[0].weight, c.layers[0].weight)
