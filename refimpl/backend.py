"""The array backend: which namespace ``xp`` the compute modules use, and the dtype policy.

Every compute module obtains its array namespace here and never imports NumPy itself
(``tests/test_backend.py`` enforces this), so the same code runs on NumPy (the default,
on the CPU) and on CuPy (on an NVIDIA GPU) when asked:

* by argument, e.g. ``ConvNet.random(..., backend="cupy")``;
* or for the whole process with the environment variable ``REFIMPL_BACKEND=cupy``.

Functions that receive arrays infer the namespace from them (:func:`namespace_of`), so a
network whose weights live on the GPU computes on the GPU without further ceremony.

Dtype policy: float64 unless float32 is asked for. A reference must be exact to ~1e-12,
which only float64 gives; float32 is there for speed.

Random numbers: parameters are always drawn on the host with NumPy's ``Generator`` and
then moved, so one seed gives the same network on every backend.
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy

BACKENDS = ("numpy", "cupy")
DTYPES = ("float64", "float32")
ENV_BACKEND = "REFIMPL_BACKEND"


class BackendError(RuntimeError):
    """Raised when the requested backend cannot be used (e.g. CuPy without a GPU)."""


def _import_cupy() -> ModuleType:
    try:
        import cupy
    except ImportError as exc:  # the common case on a laptop
        raise BackendError(
            "backend 'cupy' was requested but CuPy is not installed. Install the GPU extra "
            "(pip install -e '.[gpu]', which needs an NVIDIA GPU and CUDA 12), or use "
            f"backend='numpy' / unset {ENV_BACKEND}."
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # cupy raises CUDARuntimeError when no driver is present
        raise BackendError(
            f"backend 'cupy' was requested but no usable CUDA GPU was found ({exc}). "
            f"Use backend='numpy' or unset {ENV_BACKEND}."
        ) from exc
    if count < 1:
        raise BackendError("backend 'cupy' was requested but CUDA reports 0 GPUs.")
    return cupy


def get_namespace(name: str | None = None) -> ModuleType:
    """Return the array namespace ``xp`` for backend ``name``.

    ``name`` is ``"numpy"``, ``"cupy"`` or None; None means ``$REFIMPL_BACKEND`` if set,
    else NumPy. Raises ``ValueError`` for an unknown name and :class:`BackendError` when
    CuPy is asked for but unavailable.
    """
    if name is None:
        name = os.environ.get(ENV_BACKEND, "numpy") or "numpy"
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {name!r}")
    return numpy if name.lower() == "numpy" else _import_cupy()


def backend_name(xp: ModuleType) -> str:
    """``"numpy"`` or ``"cupy"`` for a namespace returned by :func:`get_namespace`."""
    return "numpy" if xp is numpy else "cupy"


def namespace_of(*arrays) -> ModuleType:
    """The namespace the given arrays live in (NumPy or CuPy); all must agree.

    Non-array arguments (None, Python scalars) are ignored. Raises ``TypeError`` when
    NumPy and CuPy arrays are mixed, which would otherwise fail deep inside a kernel.
    """
    found = None
    for a in arrays:
        if a is None or isinstance(a, (int, float, bool)):
            continue
        xp = numpy if isinstance(a, numpy.ndarray) else _cupy_module_of(a)
        if xp is None:
            continue
        if found is not None and xp is not found:
            raise TypeError(
                "arrays from different backends were mixed (numpy and cupy); move them to "
                "one backend first, e.g. with refimpl.backend.to_backend(a, 'cupy')"
            )
        found = xp
    return numpy if found is None else found


def _cupy_module_of(a):
    module = type(a).__module__
    if module.startswith("cupy"):
        import cupy

        return cupy
    return None


def resolve_dtype(dtype=None):
    """The floating dtype to compute in: float64 by default, float32 when asked.

    Accepts None, ``"float64"``, ``"float32"`` or the NumPy dtype objects; anything else
    raises ``TypeError`` (integer dtypes would silently truncate images and gradients).
    """
    if dtype is None:
        return numpy.dtype("float64")
    resolved = numpy.dtype(dtype)
    if resolved.name not in DTYPES:
        raise TypeError(f"dtype must be float64 or float32; got {resolved.name}")
    return resolved


def is_float_dtype(dtype) -> bool:
    """True for float32/float64 (the dtypes refimpl computes in)."""
    return numpy.dtype(dtype).name in DTYPES


def to_backend(a, backend: str | ModuleType | None = None, dtype=None):
    """Copy or move array ``a`` to ``backend`` (a name or a namespace), optionally casting."""
    xp = backend if isinstance(backend, ModuleType) else get_namespace(backend)
    if xp is numpy:
        a = to_numpy(a)
        return a if dtype is None else a.astype(dtype, copy=False)
    return xp.asarray(a, dtype=dtype)


def to_numpy(a):
    """A NumPy array holding the values of ``a`` (a NumPy or CuPy array, or array-like)."""
    if isinstance(a, numpy.ndarray):
        return a
    get = getattr(a, "get", None)
    if callable(get) and type(a).__module__.startswith("cupy"):
        return get()
    return numpy.asarray(a)


def host_rng(seed=None) -> numpy.random.Generator:
    """A NumPy ``Generator``; ``seed`` may be an int, None or an existing Generator."""
    if isinstance(seed, numpy.random.Generator):
        return seed
    return numpy.random.default_rng(seed)


def random_normal(shape, std: float, rng, xp: ModuleType, dtype) -> object:
    """Normal(0, std^2) array of ``shape`` drawn on the host from ``rng``, placed on ``xp``.

    Drawing on the host makes a seed mean the same numbers on every backend.
    """
    values = host_rng(rng).standard_normal(shape) * std
    return to_backend(values, xp, dtype=resolve_dtype(dtype))


def make_rng(seed=None, backend=None):
    """A random generator on ``backend`` for sampling (noise of Langevin chains, MALA).

    NumPy: ``numpy.random.Generator``; CuPy: ``cupy.random.Generator``. ``seed`` may be an
    int, None, or an existing generator (returned as is). Unlike parameter draws these
    streams differ between backends: sampling noise is drawn where the chains live.
    """
    if seed is not None and not isinstance(seed, (int, numpy.integer)):
        return seed  # already a generator
    xp = backend if isinstance(backend, ModuleType) else get_namespace(backend)
    return numpy.random.default_rng(seed) if xp is numpy else xp.random.default_rng(seed)


def derived_seed(*entropy) -> int:
    """A 32-bit seed from integers (e.g. ``(seed, iteration)``), the same on every backend."""
    return int(numpy.random.SeedSequence([int(e) for e in entropy]).generate_state(1)[0])


def standard_normal(rng, shape, dtype=None):
    """Standard normal draws of ``shape`` from generator ``rng``, in ``dtype`` (default float64)."""
    return rng.standard_normal(shape, dtype=resolve_dtype(dtype))


def uniform(rng, shape, dtype=None):
    """Uniform [0, 1) draws of ``shape`` from generator ``rng``."""
    return rng.random(shape, dtype=resolve_dtype(dtype))
