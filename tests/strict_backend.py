"""A strict, CuPy-like array backend that runs on the CPU: it finds host/device leaks without a GPU.

``namespace`` (registered as backend ``"strict"`` by :func:`registered`) plays the part of
the ``cupy`` module, and :class:`StrictArray` the part of ``cupy.ndarray``: the values live
in a private NumPy array, and everything that on a GPU would be an implicit host/device
transfer or a NumPy call on device memory raises ``TypeError``. Code that passes on this
backend calls only what CuPy offers and moves data explicitly. The rules are CuPy's
(CuPy 13, read in its source and documentation):

1. **No implicit conversion to NumPy.** ``numpy.asarray(x)``, ``numpy.array(x)`` and
   everything built on them (SciPy, matplotlib, ``numpy.save``) raise ``TypeError``, as
   ``cupy.ndarray.__array__`` does ("Implicit conversion to a NumPy array is not allowed",
   https://docs.cupy.dev/en/stable/reference/ndarray.html, "Conversion to/from NumPy
   arrays": NumPy functions cannot take ``cupy.ndarray`` inputs).
2. **NumPy functions dispatch or fail.** A NumPy ufunc applied to a strict array runs the
   namespace's ufunc of the same name (``__array_ufunc__``); any other NumPy function runs
   the namespace's function of the same name if it has one, else NumPy raises ``TypeError``
   ("no implementation found"), as with ``cupy.ndarray.__array_function__`` (NEP 18).
3. **No implicit host-to-device transfer.** A NumPy array (``ndim >= 1``) given to a strict
   function, ufunc or operator, or assigned into a strict array, raises ``TypeError``, as
   CuPy's kernels refuse it ("Unsupported type <class 'numpy.ndarray'>") and
   ``cupy.ndarray.__setitem__`` refuses CPU arrays. NumPy index arrays are accepted, as
   CuPy converts them. The explicit transfers work: ``namespace.asarray(host)``
   (``cupy.asarray``), ``namespace.asnumpy(x)`` and ``x.get()`` (``cupy.asnumpy``,
   ``cupy.ndarray.get``).
4. **Scalars sync, explicitly.** ``float(x)``, ``int(x)``, ``bool(x)`` (one element),
   ``x.item()``, ``x.tolist()``, ``repr``, ``str`` and ``format`` work, as on CuPy (each
   is a device-to-host copy). There is no ``__index__`` (``range(x)`` fails on CuPy too).
   Reductions and integer indexing return 0-d strict arrays, never NumPy scalars.
5. **Only CuPy's names.** The namespace holds only functions that ``cupy`` exports (the
   lists below are the intersection of NumPy's names with ``cupy/__init__.py``,
   ``cupy/linalg`` and ``cupy/fft`` at CuPy v13.0.0). ``random.default_rng(seed)`` returns a
   :class:`Generator` with exactly the methods of ``cupy.random.Generator`` (v13:
   ``random, uniform, integers, standard_normal, standard_exponential, exponential, gamma,
   standard_gamma, beta, binomial, chisquare, dirichlet, f, geometric, hypergeometric,
   logseries, poisson, power``): no ``normal``, ``choice``, ``permutation``, ``shuffle``,
   ``spawn`` or exportable state. Its stream (NumPy's Philox) differs from NumPy's default
   generator with the same seed, as CuPy's XORWOW stream does.

What it cannot show: CuPy's own numerical differences (cuBLAS summation order, its
random streams) and performance; ``benchmarks/gpu.py`` measures those on a GPU.
"""

from __future__ import annotations

import contextlib
import types

import numpy as np

from refimpl import backend as refimpl_backend

NAME = "strict"

# --- the names CuPy exports (v13.0.0), split by how they are wrapped ---------------------

UFUNCS = """
abs absolute add arccos arccosh arcsin arcsinh arctan arctan2 arctanh bitwise_and bitwise_not
bitwise_or bitwise_xor cbrt ceil conj conjugate copysign cos cosh deg2rad degrees divide divmod
equal exp exp2 expm1 fabs float_power floor floor_divide fmax fmin fmod frexp gcd greater
greater_equal heaviside hypot invert isfinite isinf isnan lcm ldexp left_shift less less_equal
log log10 log1p log2 logaddexp logaddexp2 logical_and logical_not logical_or logical_xor matmul
maximum minimum mod modf multiply negative nextafter not_equal positive power rad2deg radians
reciprocal remainder right_shift rint sign signbit sin sinh sqrt square subtract tan tanh
true_divide trunc
""".split()

FUNCTIONS = """
all allclose amax amin angle any append apply_along_axis arange argmax argmin argpartition
argsort argwhere around array_equal array_equiv array_split ascontiguousarray asfortranarray
atleast_1d atleast_2d atleast_3d average bincount broadcast_arrays broadcast_to choose clip
column_stack compress concatenate convolve copy copyto corrcoef correlate count_nonzero cov
cross cumprod cumsum delete diag diag_indices diagflat diagonal diff digitize dot dsplit dstack
ediff1d einsum empty empty_like expand_dims extract eye fill_diagonal fix flatnonzero flip
fliplr flipud full full_like gradient hamming hanning histogram histogram2d histogramdd hsplit
hstack identity imag indices inner interp intersect1d isclose iscomplex iscomplexobj isin
isneginf isposinf isreal isrealobj kron lexsort linspace logspace max may_share_memory mean
median meshgrid min moveaxis nan_to_num nanargmax nanargmin nancumprod nancumsum nanmax nanmean
nanmedian nanmin nanprod nanstd nansum nanvar ndim nonzero ones ones_like outer pad partition
percentile place prod ptp put putmask quantile ravel ravel_multi_index real repeat reshape
resize roll rollaxis rot90 round searchsorted select setdiff1d setxor1d shape shares_memory
sinc size sort split squeeze stack std sum swapaxes take take_along_axis tensordot tile trace
transpose tri tril triu union1d unique unravel_index vdot vsplit vstack where zeros zeros_like
""".split()

# dtypes, constants and helpers that CuPy re-exports from NumPy unchanged
NUMPY_ATTRIBUTES = """
bool_ byte complex128 complex64 complexfloating double dtype e finfo float16 float32 float64
floating generic iinfo inexact inf int16 int32 int64 int8 int_ intc integer intp isscalar
issubdtype nan ndindex newaxis number pi promote_types result_type can_cast signedinteger
single uint uint16 uint32 uint64 uint8 unsignedinteger
""".split()

LINALG = (
    "cholesky det eigh eigvalsh inv lstsq matrix_power matrix_rank norm pinv qr slogdet solve "
    "svd tensorinv tensorsolve"
).split()

FFT = (
    "fft fft2 fftfreq fftn fftshift hfft ifft ifft2 ifftn ifftshift ihfft irfft irfft2 irfftn "
    "rfft rfft2 rfftfreq rfftn"
).split()


class ImplicitTransferError(TypeError):
    """A host/device mix-up that CuPy would refuse (a ``TypeError``, as CuPy raises)."""


# --- the array ---------------------------------------------------------------------------


def _refuse_host(a, where: str):
    raise ImplicitTransferError(
        f"{where}: a NumPy array of shape {a.shape} was mixed with strict (device) arrays; "
        "CuPy refuses implicit host-to-device transfers. Move it explicitly with "
        "xp.asarray(a) (refimpl.backend.to_backend)."
    )


def _unwrap(obj, where: str):
    """Strict arrays -> their NumPy data; a NumPy array (ndim >= 1) -> ImplicitTransferError."""
    if type(obj) is StrictArray:
        return obj._data
    if isinstance(obj, np.ndarray):
        if obj.ndim == 0:
            return obj
        _refuse_host(obj, where)
    if type(obj) in (list, tuple):
        return type(obj)(_unwrap(o, where) for o in obj)
    return obj


def _wrap(result):
    """NumPy results -> strict arrays (NumPy scalars become 0-d arrays, as CuPy returns)."""
    if isinstance(result, np.ndarray):
        return StrictArray(result)
    if isinstance(result, np.generic):
        return StrictArray(np.asarray(result))
    if type(result) is tuple or (isinstance(result, tuple) and hasattr(result, "_fields")):
        return tuple(_wrap(r) for r in result)
    if type(result) is list:
        return [_wrap(r) for r in result]
    return result


def _unwrap_key(key):
    """Index keys may hold strict arrays, NumPy index arrays (CuPy converts them), slices."""
    if type(key) is StrictArray:
        return key._data
    if type(key) is tuple:
        return tuple(_unwrap_key(k) for k in key)
    if type(key) is list:
        return [_unwrap_key(k) for k in key]
    return key


class StrictArray:
    """A device array of the strict backend (``cupy.ndarray``'s part); see the module docstring.

    Holds a NumPy array (possibly a view, so writes through views reach the base, as on
    CuPy). Only the attributes and methods of ``cupy.ndarray`` are provided.
    """

    __slots__ = ("_data",)
    __hash__ = None

    def __init__(self, data):
        if not isinstance(data, np.ndarray):
            raise TypeError(f"StrictArray wraps a NumPy array; got {type(data).__name__}")
        self._data = data

    # rule 1: no implicit conversion (NumPy 2 passes copy=)
    def __array__(self, dtype=None, copy=None):
        raise ImplicitTransferError(
            "Implicit conversion to a NumPy array is not allowed (strict backend, as CuPy). "
            "Use refimpl.backend.to_numpy(x), xp.asnumpy(x) or x.get() explicitly."
        )

    # rule 2: NumPy ufuncs and functions dispatch to the namespace or fail
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        mine = getattr(namespace, ufunc.__name__, None)
        if not isinstance(mine, StrictUfunc):
            return NotImplemented
        if "out" in kwargs:
            (kwargs["out"],) = kwargs["out"]
        return getattr(mine, method)(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        module = namespace
        for part in func.__module__.split(".")[1:]:
            module = getattr(module, part, None)
        mine = getattr(module, func.__name__, None) if module is not None else None
        if mine is None or mine is func:
            return NotImplemented
        return mine(*args, **kwargs)

    # explicit transfer
    def get(self) -> np.ndarray:
        """A NumPy copy of the values (``cupy.ndarray.get``)."""
        return self._data.copy()

    def set(self, host):
        """Copy a NumPy array of the same shape into this array (``cupy.ndarray.set``)."""
        self._data[...] = np.asarray(host)

    # rule 4: scalar conversions sync explicitly
    def __float__(self):
        return float(self._data)

    def __int__(self):
        return int(self._data)

    def __complex__(self):
        return complex(self._data)

    def __bool__(self):
        if self._data.size != 1:
            raise ValueError(
                "The truth value of an array with more than one element is ambiguous. "
                "Use a.any() or a.all()"
            )
        return bool(self._data)

    def item(self):
        return self._data.item()

    def tolist(self):
        return self._data.tolist()

    def __repr__(self):
        return f"strict({self._data!r})"

    def __str__(self):
        return str(self._data)

    def __format__(self, spec):
        return format(self._data.item() if self._data.ndim == 0 else self._data, spec)

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of unsized object")
        return len(self._data)

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._data)))

    # attributes of cupy.ndarray
    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)
    strides = property(lambda self: self._data.strides)
    itemsize = property(lambda self: self._data.itemsize)
    nbytes = property(lambda self: self._data.nbytes)
    flags = property(lambda self: self._data.flags)
    T = property(lambda self: StrictArray(self._data.T))
    mT = property(lambda self: StrictArray(self._data.mT))
    real = property(lambda self: StrictArray(self._data.real))
    imag = property(lambda self: StrictArray(self._data.imag))

    def __getitem__(self, key):
        return _wrap(self._data[_unwrap_key(key)])

    def __setitem__(self, key, value):
        self._data[_unwrap_key(key)] = _unwrap(value, "assignment into a strict array")

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        return StrictArray(self._data.astype(dtype, order=order, copy=copy))

    def copy(self, order="C"):
        return StrictArray(self._data.copy(order=order))

    def view(self, dtype=None):
        return StrictArray(self._data.view() if dtype is None else self._data.view(dtype))

    def fill(self, value):
        self._data.fill(_unwrap(value, "fill"))

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()


def _method(name):
    def method(self, *args, **kwargs):
        where = f"StrictArray.{name}"
        args = _unwrap(args, where)
        kwargs = {k: _unwrap(v, where) for k, v in kwargs.items()}
        return _wrap(getattr(self._data, name)(*args, **kwargs))

    method.__name__ = name
    return method


# methods of cupy.ndarray that compute (see cupy/_core/core.pyx); each returns strict arrays
for _name in (
    "all any argmax argmin argpartition argsort choose clip compress conj conjugate cumprod "
    "cumsum diagonal dot flatten max mean min nonzero partition prod ptp put ravel repeat "
    "reshape round searchsorted sort squeeze std sum swapaxes take trace transpose var"
).split():
    setattr(StrictArray, _name, _method(_name))


# --- ufuncs and functions ----------------------------------------------------------------


def _check_out(out, where: str):
    if out is not None and type(out) is not StrictArray:
        raise ImplicitTransferError(
            f"{where}: out must be a strict (device) array, got {type(out).__name__}; CuPy "
            "writes results into device arrays only (no implicit device-to-host transfer)"
        )


def _finish(result, out_given, out_data):
    """Return the caller's ``out`` object itself when the result was written into it."""
    if out_given is not None and result is out_data:
        return out_given
    return _wrap(result)


class StrictUfunc:
    """A ufunc of the namespace (``cupy.ufunc``'s part): strict arrays in, strict arrays out."""

    def __init__(self, ufunc):
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__
        self.nin, self.nout = ufunc.nin, ufunc.nout

    def _run(self, method, args, kwargs):
        where = f"{self.__name__}"
        out = kwargs.get("out")
        _check_out(out, where)
        args = _unwrap(args, where)
        kwargs = {k: _unwrap(v, where) for k, v in kwargs.items()}
        result = (
            getattr(self._ufunc, method)(*args, **kwargs)
            if method
            else self._ufunc(*args, **kwargs)
        )
        return _finish(result, out, kwargs.get("out"))

    def __call__(self, *args, **kwargs):
        return self._run(None, args, kwargs)

    def reduce(self, *args, **kwargs):
        return self._run("reduce", args, kwargs)

    def accumulate(self, *args, **kwargs):
        return self._run("accumulate", args, kwargs)

    def outer(self, *args, **kwargs):
        return self._run("outer", args, kwargs)

    def at(self, *args, **kwargs):
        return self._run("at", args, kwargs)

    def __repr__(self):
        return f"<strict ufunc {self.__name__}>"


def _function(name, fn):
    """A namespace function: unwraps strict arguments, refuses NumPy arrays, wraps results."""

    def call(*args, **kwargs):
        out = kwargs.get("out")
        _check_out(out, name)
        args = _unwrap(args, name)
        kwargs = {k: _unwrap(v, name) for k, v in kwargs.items()}
        return _finish(fn(*args, **kwargs), out, kwargs.get("out"))

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"strict backend: numpy.{name} on device arrays (cupy.{name})."
    return call


def asarray(a, dtype=None, order=None, copy=None):
    """``cupy.asarray``: the explicit host-to-device transfer (or a no-op for strict arrays)."""
    if type(a) is StrictArray:
        data = a._data if dtype is None else a._data.astype(dtype, copy=False)
        return a if data is a._data else StrictArray(data)
    return StrictArray(np.array(_unwrap_key(a), dtype=dtype, order=order or "K", copy=True))


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    """``cupy.array``: a new device array from host data or a strict array."""
    data = a._data if type(a) is StrictArray else _unwrap_key(a)
    return StrictArray(np.array(data, dtype=dtype, copy=True, order=order, ndmin=ndmin))


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    """``cupy.asnumpy``: the explicit device-to-host copy."""
    if type(a) is StrictArray:
        return a.get()
    return np.asarray(a)


def get_array_module(*args):
    """``cupy.get_array_module``: the strict namespace if any argument is a strict array."""
    return namespace if any(type(a) is StrictArray for a in args) else np


# --- random: cupy.random.Generator ---------------------------------------------------------


class Generator:
    """``cupy.random.Generator`` (v13): only its methods; draws are strict arrays.

    Backed by NumPy's Philox bit generator, so a seed gives a stream different from NumPy's
    default generator with that seed (as CuPy's XORWOW does).
    """

    def __init__(self, seed=None):
        self._rng = np.random.Generator(np.random.Philox(np.random.SeedSequence(seed)))

    def _draw(self, method, *args, **kwargs):
        where = f"Generator.{method}"
        args = _unwrap(args, where)
        kwargs = {k: _unwrap(v, where) for k, v in kwargs.items()}
        return StrictArray(np.asarray(getattr(self._rng, method)(*args, **kwargs)))

    def random(self, size=None, dtype=np.float64, out=None):
        return self._filled(self._draw("random", size, dtype=dtype), out)

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        if np.dtype(dtype).char not in "fd":
            raise TypeError(f"Unsupported dtype {np.dtype(dtype).name} for standard_normal")
        return self._filled(self._draw("standard_normal", size, dtype=dtype), out)

    def standard_exponential(self, size=None, dtype=np.float64, method="inv", out=None):
        if method == "zig":
            raise NotImplementedError("Ziggurat method is not supported")
        return self._filled(self._draw("standard_exponential", size, dtype=dtype), out)

    def _filled(self, drawn, out):
        if out is None:
            return drawn
        out[...] = drawn
        return out

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        return self._draw("uniform", low, high, size).astype(dtype, copy=False)

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        return self._draw("integers", low, high, size, dtype=dtype, endpoint=endpoint)

    def exponential(self, scale=1.0, size=None):
        return self._draw("exponential", scale, size)

    def gamma(self, shape, scale=1.0, size=None):
        return self._draw("gamma", shape, scale, size)

    def standard_gamma(self, shape, size=None, dtype=np.float64, out=None):
        return self._filled(self._draw("standard_gamma", shape, size, dtype=dtype), out)

    def beta(self, a, b, size=None, dtype=np.float64):
        return self._draw("beta", a, b, size).astype(dtype, copy=False)

    def binomial(self, n, p, size=None):
        return self._draw("binomial", n, p, size)

    def chisquare(self, df, size=None):
        return self._draw("chisquare", df, size)

    def dirichlet(self, alpha, size=None):
        return self._draw("dirichlet", alpha, size)

    def f(self, dfnum, dfden, size=None):
        return self._draw("f", dfnum, dfden, size)

    def geometric(self, p, size=None):
        return self._draw("geometric", p, size)

    def hypergeometric(self, ngood, nbad, nsample, size=None):
        return self._draw("hypergeometric", ngood, nbad, nsample, size)

    def logseries(self, p, size=None):
        return self._draw("logseries", p, size)

    def poisson(self, lam=1.0, size=None):
        return self._draw("poisson", lam, size)

    def power(self, a, size=None):
        return self._draw("power", a, size)


def default_rng(seed=None):
    """``cupy.random.default_rng``: a :class:`Generator`; a Generator is returned as is."""
    if isinstance(seed, Generator):
        return seed
    if isinstance(seed, np.random.Generator):
        raise TypeError(
            "a NumPy Generator cannot seed a device generator (cupy.random.default_rng takes "
            "None, an int, ints or a SeedSequence)"
        )
    return Generator(seed)


# --- the namespace -------------------------------------------------------------------------


def _build_namespace() -> types.ModuleType:
    ns = types.ModuleType(
        NAME, "A strict, CuPy-like array namespace for tests (see strict_backend)."
    )
    for name in UFUNCS:
        setattr(ns, name, StrictUfunc(getattr(np, name)))
    for name in FUNCTIONS:
        setattr(ns, name, _function(name, getattr(np, name)))
    for name in NUMPY_ATTRIBUTES:
        setattr(ns, name, getattr(np, name))
    for name, fn in (
        ("asarray", asarray),
        ("array", array),
        ("asnumpy", asnumpy),
        ("get_array_module", get_array_module),
    ):
        setattr(ns, name, fn)
    ns.ndarray = StrictArray
    ns.linalg = types.ModuleType(f"{NAME}.linalg")
    for name in LINALG:
        setattr(ns.linalg, name, _function(f"linalg.{name}", getattr(np.linalg, name)))
    ns.linalg.LinAlgError = np.linalg.LinAlgError
    ns.fft = types.ModuleType(f"{NAME}.fft")
    for name in FFT:
        setattr(ns.fft, name, _function(f"fft.{name}", getattr(np.fft, name)))
    ns.random = types.ModuleType(f"{NAME}.random")
    ns.random.Generator = Generator
    ns.random.default_rng = default_rng
    return ns


namespace = _build_namespace()


def _operator(ufunc_name, reflected=False):
    def op(self, other):
        ufunc = getattr(namespace, ufunc_name)
        return ufunc(other, self) if reflected else ufunc(self, other)

    return op


def _inplace(ufunc_name):
    def op(self, other):
        getattr(namespace, ufunc_name)(self, other, out=self)
        return self

    return op


for _dunder, _ufunc in (
    ("add", "add"),
    ("sub", "subtract"),
    ("mul", "multiply"),
    ("truediv", "true_divide"),
    ("floordiv", "floor_divide"),
    ("mod", "remainder"),
    ("pow", "power"),
    ("matmul", "matmul"),
    ("and", "bitwise_and"),
    ("or", "bitwise_or"),
    ("xor", "bitwise_xor"),
    ("lshift", "left_shift"),
    ("rshift", "right_shift"),
):
    setattr(StrictArray, f"__{_dunder}__", _operator(_ufunc))
    setattr(StrictArray, f"__r{_dunder}__", _operator(_ufunc, reflected=True))
    setattr(StrictArray, f"__i{_dunder}__", _inplace(_ufunc))

for _dunder, _ufunc in (
    ("eq", "equal"),
    ("ne", "not_equal"),
    ("lt", "less"),
    ("le", "less_equal"),
    ("gt", "greater"),
    ("ge", "greater_equal"),
):
    setattr(StrictArray, f"__{_dunder}__", _operator(_ufunc))

StrictArray.__neg__ = lambda self: namespace.negative(self)
StrictArray.__pos__ = lambda self: namespace.positive(self)
StrictArray.__abs__ = lambda self: namespace.absolute(self)
StrictArray.__invert__ = lambda self: namespace.invert(self)
StrictArray.__divmod__ = lambda self, other: namespace.divmod(self, other)


# --- registration ----------------------------------------------------------------------------


def is_strict_array(a) -> bool:
    return type(a) is StrictArray


def register():
    """Register the namespace as refimpl backend ``"strict"``."""
    return refimpl_backend.register_backend(NAME, namespace, is_strict_array, asnumpy)


def unregister():
    refimpl_backend.unregister_backend(NAME)


@contextlib.contextmanager
def registered():
    """``with registered(): ...`` runs with backend ``"strict"`` available, then removes it."""
    register()
    try:
        yield namespace
    finally:
        unregister()
