"""The array backend: which namespace ``xp`` the compute modules use, and the dtype policy.

Every compute module obtains its array namespace here and never imports NumPy itself
(``tests/test_backend.py`` enforces this), so the same code runs on NumPy (the default,
on the CPU) and on CuPy (on an NVIDIA GPU) when asked:

* by argument, e.g. ``ConvNet.random(..., backend="cupy")``;
* or for the whole process with the environment variable ``REFIMPL_BACKEND=cupy``.

Backends are registered by name (:func:`register_backend`): NumPy and CuPy are, and so can
be another NumPy-like namespace (the test suite registers a strict CuPy look-alike that
runs on the CPU and refuses every implicit host/device conversion, see
``tests/strict_backend.py``).

Functions that receive arrays infer the namespace from them (:func:`namespace_of`), so a
network whose weights live on the GPU computes on the GPU without further ceremony.

Dtype policy: float64 unless float32 is asked for. A reference must be exact to ~1e-12,
which only float64 gives; float32 is there for speed.

Random numbers: parameters are always drawn on the host with NumPy's ``Generator`` and
then moved, so one seed gives the same network on every backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy

BACKENDS = ("numpy", "cupy")  # built in; available_backends() lists all registered ones
DTYPES = ("float64", "float32")
ENV_BACKEND = "REFIMPL_BACKEND"


class BackendError(RuntimeError):
    """Raised when the requested backend cannot be used (e.g. CuPy without a GPU)."""


@dataclass(frozen=True)
class Backend:
    """A registered array backend: a NumPy-like namespace and how to recognise its arrays.

    ``load()`` returns the namespace (called on first use, so CuPy is only imported when
    asked for); ``is_array(a)`` says whether ``a`` is one of its arrays, and must not import
    anything; ``to_host(a)`` copies such an array into a NumPy array (the one explicit
    device-to-host transfer); ``device`` is False only for NumPy itself.
    """

    name: str
    load: Callable[[], ModuleType]
    is_array: Callable[[object], bool]
    to_host: Callable[[object], numpy.ndarray]
    device: bool = True


_REGISTRY: dict[str, Backend] = {}
_LOADED: dict[str, ModuleType] = {}


def register_backend(name: str, namespace, is_array, to_host, device: bool = True) -> Backend:
    """Make ``name`` usable wherever a backend is named (``backend=...``, ``$REFIMPL_BACKEND``).

    Args:
        name: the backend's name, e.g. ``"cupy"``.
        namespace: its array namespace (a module with ``zeros``, ``matmul``, ``random``, ...),
            or a function of no arguments that returns it (imported on first use).
        is_array: ``is_array(a) -> bool``, True for the backend's arrays; cheap, no imports.
        to_host: ``to_host(a) -> numpy.ndarray``, the explicit device-to-host copy.
        device: False for a backend whose arrays are NumPy arrays (only NumPy itself).

    Re-registering a name replaces it. CuPy is registered through this function too.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"backend name must be a non-empty string; got {name!r}")
    load = namespace if callable(namespace) and not isinstance(namespace, ModuleType) else None
    if load is None:
        if not isinstance(namespace, ModuleType):
            raise TypeError(
                f"namespace must be a module (or a function returning one); got "
                f"{type(namespace).__name__}"
            )
        module = namespace

        def load():
            return module

    backend = Backend(name.lower(), load, is_array, to_host, device)
    _REGISTRY[backend.name] = backend
    _LOADED.pop(backend.name, None)
    return backend


def unregister_backend(name: str) -> None:
    """Remove a backend registered with :func:`register_backend` (NumPy cannot be removed)."""
    name = name.lower()
    if name == "numpy":
        raise ValueError("the numpy backend cannot be unregistered")
    _REGISTRY.pop(name, None)
    _LOADED.pop(name, None)


def available_backends() -> tuple:
    """Names of the registered backends (``("numpy", "cupy")`` unless more were registered)."""
    return tuple(_REGISTRY)


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


def _is_cupy_array(a) -> bool:
    return type(a).__module__.startswith("cupy")


def _cupy_to_host(a) -> numpy.ndarray:
    return a.get()


register_backend("numpy", numpy, lambda a: isinstance(a, numpy.ndarray), numpy.asarray, False)
register_backend("cupy", _import_cupy, _is_cupy_array, _cupy_to_host)


def _load(backend: Backend) -> ModuleType:
    if backend.name not in _LOADED:
        _LOADED[backend.name] = backend.load()
    return _LOADED[backend.name]


def get_namespace(name: str | None = None) -> ModuleType:
    """Return the array namespace ``xp`` for backend ``name``.

    ``name`` is ``"numpy"``, ``"cupy"`` (or another registered backend) or None; None means
    ``$REFIMPL_BACKEND`` if set, else NumPy. Raises ``ValueError`` for an unknown name and
    :class:`BackendError` when CuPy is asked for but unavailable.
    """
    if name is None:
        name = os.environ.get(ENV_BACKEND, "numpy") or "numpy"
    if not isinstance(name, str) or name.lower() not in _REGISTRY:
        raise ValueError(f"backend must be one of {available_backends()}; got {name!r}")
    return _load(_REGISTRY[name.lower()])


def _backend_of_namespace(xp) -> Backend:
    for name, module in _LOADED.items():
        if module is xp:
            return _REGISTRY[name]
    raise ValueError(f"{xp!r} is not the namespace of a registered backend")


def backend_name(xp: ModuleType) -> str:
    """The registered name (``"numpy"``, ``"cupy"``, ...) of a namespace ``xp``."""
    return "numpy" if xp is numpy else _backend_of_namespace(xp).name


def is_device(xp: ModuleType) -> bool:
    """True when ``xp``'s arrays live on an accelerator (every backend but NumPy)."""
    return xp is not numpy and _backend_of_namespace(xp).device


def _backend_of_array(a) -> Backend | None:
    if isinstance(a, numpy.ndarray):
        return _REGISTRY["numpy"]
    for backend in _REGISTRY.values():
        if backend.device and backend.is_array(a):
            return backend
    return None


def namespace_of(*arrays) -> ModuleType:
    """The namespace the given arrays live in (NumPy, CuPy, ...); all must agree.

    Non-array arguments (None, Python scalars) are ignored. Raises ``TypeError`` when
    arrays of different backends are mixed, which would otherwise fail deep inside a kernel.
    """
    found = None
    for a in arrays:
        if a is None or isinstance(a, (int, float, bool)):
            continue
        backend = _backend_of_array(a)
        if backend is None:
            continue
        if found is not None and backend is not found:
            raise TypeError(
                f"arrays from different backends were mixed ({found.name} and {backend.name}); "
                f"move them to one backend first, e.g. with "
                f"refimpl.backend.to_backend(a, {backend.name!r})"
            )
        found = backend
    return numpy if found is None else _load(found)


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
    """A NumPy array holding the values of ``a`` (an array of any backend, or array-like).

    The explicit device-to-host transfer: host-only code (SciPy, plotting, files) calls this
    on everything that may come from a device.
    """
    if isinstance(a, numpy.ndarray):
        return a
    backend = _backend_of_array(a)
    if backend is not None:
        return backend.to_host(a)
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
