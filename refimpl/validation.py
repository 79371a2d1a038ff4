"""Input checks shared by every public function: one home for the error messages.

Each check raises ``TypeError`` (wrong kind of array: integer, bool, complex) or
``ValueError`` (wrong shape, non-finite values) with a message that names the argument
and its shape, so that a bad call fails at the door instead of corrupting a result.
"""

from __future__ import annotations

from refimpl.backend import is_float_dtype, namespace_of


def shape_str(shape) -> str:
    """``(2, 3, 8, 8)``-style text for a shape tuple."""
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_float_array(a, name: str):
    """Raise ``TypeError`` unless ``a`` is a NumPy/CuPy array of dtype float32 or float64."""
    if not hasattr(a, "dtype") or not hasattr(a, "shape"):
        raise TypeError(f"{name} must be a NumPy or CuPy array; got {type(a).__name__}")
    if not is_float_dtype(a.dtype):
        raise TypeError(
            f"{name} must have a floating dtype (float64 or float32); got dtype {a.dtype} "
            f"with shape {shape_str(a.shape)}. Convert explicitly, e.g. {name}.astype(float), "
            "after scaling integer images to the range you intend."
        )


def check_ndim(a, ndim: int, name: str, layout: str):
    """Raise ``ValueError`` unless ``a.ndim == ndim``; ``layout`` names axes, e.g. (M, C, H, W)."""
    if a.ndim != ndim:
        hint = f" Add a batch axis with {name}[None]." if a.ndim == ndim - 1 else ""
        raise ValueError(
            f"{name} must be a {ndim}-D array {layout}; got {a.ndim}-D with shape "
            f"{shape_str(a.shape)}.{hint}"
        )


def check_finite(a, name: str):
    """Raise ``ValueError`` if ``a`` holds NaN or inf (which would poison every later step)."""
    xp = namespace_of(a)
    finite = xp.isfinite(a)
    if not bool(finite.all()):
        bad = int(a.size - int(finite.sum()))
        raise ValueError(
            f"{name} contains {bad} non-finite value(s) (NaN or inf) in an array of shape "
            f"{shape_str(a.shape)}"
        )


def check_array(a, name: str, ndim: int, layout: str):
    """Check an array argument: float dtype, ``ndim`` axes (``layout`` names them), finite."""
    check_float_array(a, name)
    check_ndim(a, ndim, name, layout)
    check_finite(a, name)


def check_images(a, name: str = "I", channels: int | None = None):
    """Check a batch of images: float dtype, 4-D ``(M, C, H, W)``, finite, non-empty.

    If ``channels`` is given the channel axis must match it.
    """
    check_float_array(a, name)
    check_ndim(a, 4, name, "(M, C, H, W)")
    if min(a.shape) == 0:
        raise ValueError(f"{name} is empty: shape {shape_str(a.shape)}")
    if channels is not None and a.shape[1] != channels:
        raise ValueError(
            f"{name} has {a.shape[1]} channel(s) (shape {shape_str(a.shape)}) but the network's "
            f"first layer expects {channels}"
        )
    check_finite(a, name)


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as int, raising ``ValueError`` unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_int = int(value)
        except (TypeError, ValueError):
            as_int = None
        if as_int is None or as_int != value:
            raise TypeError(f"{name} must be an integer; got {value!r}")
        value = as_int
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return value
