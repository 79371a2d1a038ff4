"""Bad input gets a clear error naming the argument and the shapes, never a quiet wrong number."""

import numpy as np
import pytest

from refimpl import ConvLayer, ConvNet
from refimpl.conv import conv2d, conv2d_adjoint, conv2d_weight_grad


@pytest.fixture
def net():
    return ConvNet.random(3, [(4, 3, 1, 1), (2, 5, 2, 0)], seed=0)


def image(*shape, dtype=np.float64):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


# --- wrong number of dimensions ---------------------------------------------------------


def test_image_wrong_ndim(net):
    with pytest.raises(
        ValueError,
        match=r"I must be a 4-D array \(M, C, H, W\); got 3-D with shape \(3, 9, 9\).*I\[None\]",
    ):
        net.score(image(3, 9, 9))


def test_conv_input_wrong_ndim():
    with pytest.raises(ValueError, match=r"x must be a 4-D array.*shape \(9, 9\)"):
        conv2d(image(9, 9), image(2, 1, 3, 3))


def test_weight_wrong_ndim():
    with pytest.raises(ValueError, match=r"weight must be a 4-D array.*shape \(2, 3, 3\)"):
        ConvLayer(image(2, 3, 3), image(2))


# --- channel mismatch -------------------------------------------------------------------


def test_image_channel_mismatch(net):
    with pytest.raises(
        ValueError,
        match=r"I has 1 channel\(s\) \(shape \(2, 1, 9, 9\)\) "
        r"but the network's first layer expects 3",
    ):
        net.score(image(2, 1, 9, 9))


def test_layers_channel_mismatch():
    a = ConvLayer(image(4, 3, 3, 3), image(4))
    b = ConvLayer(image(2, 5, 3, 3), image(2))
    with pytest.raises(
        ValueError,
        match=r"layer 2 expects 5 input channel\(s\) \(weight \(2, 5, 3, 3\)\) "
        r"but layer 1 produces 4",
    ):
        ConvNet([a, b])


def test_conv_channel_mismatch():
    with pytest.raises(
        ValueError,
        match=r"x has 2 channel\(s\) \(shape \(1, 2, 8, 8\)\) "
        r"but weight expects 3 \(shape \(4, 3, 3, 3\)\)",
    ):
        conv2d(image(1, 2, 8, 8), image(4, 3, 3, 3))


# --- kernel larger than the padded input / empty output ---------------------------------


def test_kernel_larger_than_padded_input(net):
    # 3x3 pad 1 keeps 4x4; layer 2's 5x5 kernel does not fit in 4x4
    with pytest.raises(
        ValueError,
        match=r"layer 2 \(input \(1, 4, 4, 4\)\): kernel 5x5 is larger than the padded input 4x4 "
        r"\(input 4x4, pad 0\)",
    ):
        net.score(image(1, 3, 4, 4))


def test_layer_output_of_size_zero_is_named():
    """A spec whose third layer would get an empty input fails at that layer, saying size 0."""
    deep = ConvNet.random(1, [(2, 3), (2, 3), (2, 3)], seed=0)  # 6 -> 4 -> 2 -> (empty)
    with pytest.raises(ValueError, match=r"layer 3 .*output would be empty \(size 0\)"):
        deep.score(image(1, 1, 6, 6))


def test_conv_kernel_larger_than_padded_input():
    with pytest.raises(
        ValueError, match=r"kernel 7x7 is larger than the padded input 6x6 \(input 4x4, pad 1\)"
    ):
        conv2d(image(1, 1, 4, 4), image(1, 1, 7, 7), pad=1)


def test_empty_image(net):
    with pytest.raises(ValueError, match=r"I is empty: shape \(0, 3, 9, 9\)"):
        net.score(image(0, 3, 9, 9))


# --- non-finite values ------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_image(net, bad):
    I = image(2, 3, 9, 9)
    I[1, 2, 3, 4] = bad
    with pytest.raises(
        ValueError,
        match=r"I contains 1 non-finite value\(s\) \(NaN or inf\) "
        r"in an array of shape \(2, 3, 9, 9\)",
    ):
        net.grad_input(I)


def test_non_finite_weight():
    w = image(2, 1, 3, 3)
    w[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="weight contains 1 non-finite"):
        ConvLayer(w, image(2))


def test_non_finite_conv_input():
    x = image(1, 1, 5, 5)
    x[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="x contains 1 non-finite"):
        conv2d(x, image(1, 1, 3, 3))


# --- integer or bool dtype --------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, bool])
def test_integer_or_bool_image(net, dtype):
    I = np.ones((1, 3, 9, 9), dtype=dtype)
    with pytest.raises(
        TypeError,
        match=r"I must have a floating dtype \(float64 or float32\); "
        rf"got dtype {np.dtype(dtype)} with shape \(1, 3, 9, 9\)",
    ):
        net.score(I)


def test_integer_weight():
    with pytest.raises(TypeError, match="weight must have a floating dtype"):
        ConvLayer(np.ones((2, 1, 3, 3), dtype=np.int32), image(2))


def test_complex_image(net):
    with pytest.raises(TypeError, match="floating dtype"):
        net.score(np.ones((1, 3, 9, 9), dtype=complex))


def test_list_instead_of_array(net):
    with pytest.raises(TypeError, match="I must be a NumPy or CuPy array; got list"):
        net.score([[1.0]])


def test_mixed_dtypes_in_conv():
    with pytest.raises(
        TypeError, match="arrays must share one dtype; got x: float32, weight: float64"
    ):
        conv2d(image(1, 1, 5, 5, dtype=np.float32), image(1, 1, 3, 3))


# --- weight / bias shapes ---------------------------------------------------------------


def test_bias_shape_mismatch():
    with pytest.raises(
        ValueError, match=r"bias must have shape \(4,\) to match weight \(4, 3, 3, 3\); got \(3,\)"
    ):
        ConvLayer(image(4, 3, 3, 3), image(3))


def test_bias_dtype_mismatch():
    with pytest.raises(TypeError, match="bias dtype float32 differs from weight dtype float64"):
        ConvLayer(image(4, 3, 3, 3), image(4, dtype=np.float32))


def test_non_square_kernel():
    with pytest.raises(
        ValueError, match=r"weight must have a square kernel; got shape \(4, 3, 3, 5\)"
    ):
        ConvLayer(image(4, 3, 3, 5), image(4))


def test_conv_bias_shape_mismatch():
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        conv2d(image(1, 1, 5, 5), image(2, 1, 3, 3), image(5))


def test_adjoint_output_shape_mismatch():
    with pytest.raises(ValueError, match=r"y must have shape \(1, 2, 3, 3\).*got \(1, 2, 4, 4\)"):
        conv2d_adjoint(image(1, 2, 4, 4), image(2, 1, 3, 3), (5, 5))


def test_weight_grad_shape_mismatch():
    with pytest.raises(ValueError, match=r"y must have shape \(1, 2, 3, 3\)"):
        conv2d_weight_grad(image(1, 1, 5, 5), image(1, 2, 4, 4), 3)


# --- stride, padding and other arguments ------------------------------------------------


@pytest.mark.parametrize(
    "stride,pad,message",
    [
        (0, 0, "stride must be >= 1; got 0"),
        (1, -1, "pad must be >= 0; got -1"),
        (1.5, 0, "stride must be an integer; got 1.5"),
    ],
)
def test_bad_stride_or_pad(stride, pad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ConvLayer(image(1, 1, 3, 3), image(1), stride=stride, pad=pad)


def test_unknown_activation():
    with pytest.raises(ValueError, match="activation must be one of"):
        ConvLayer(image(1, 1, 3, 3), image(1), activation="tanh")


def test_empty_network():
    with pytest.raises(ValueError, match="at least one layer"):
        ConvNet([])


def test_bad_spec():
    with pytest.raises(TypeError, match="each layer spec must be"):
        ConvNet.random(1, ["3x3"])


def test_pattern_shape_mismatch(net):
    pattern = net.activation_pattern(image(1, 3, 9, 9))
    with pytest.raises(
        ValueError, match=r"pattern\[1\] must have shape \(1, 2, 3, 3\) \(layer 2\)"
    ):
        net.piece_from_pattern([pattern[0], pattern[1][:, :, :2]], (3, 9, 9))


def test_class_weights_shape(net):
    with pytest.raises(
        ValueError, match=r"class_weights must have shape \(n_classes, 2\); got \(3, 4\)"
    ):
        net.class_scores(image(1, 3, 9, 9), image(3, 4))


# --- values that used to give a quiet wrong number -------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_conv_non_finite_weight_or_bias(bad):
    w, b = image(2, 1, 3, 3), image(2)
    w[1, 0, 2, 2] = bad
    with pytest.raises(ValueError, match=r"weight contains 1 non-finite value"):
        conv2d(image(1, 1, 5, 5), w)
    with pytest.raises(ValueError, match=r"weight contains 1 non-finite value"):
        conv2d_adjoint(image(1, 2, 3, 3), w, (5, 5))
    b[0] = bad
    with pytest.raises(ValueError, match=r"bias contains 1 non-finite value"):
        conv2d(image(1, 1, 5, 5), image(2, 1, 3, 3), b)


@pytest.mark.parametrize("kernel_size", [2.7, "3", None])
def test_weight_grad_kernel_size_must_be_an_integer(kernel_size):
    with pytest.raises(TypeError, match=f"kernel_size must be an integer; got {kernel_size!r}"):
        conv2d_weight_grad(image(1, 1, 5, 5), image(1, 2, 3, 3), kernel_size)
    assert conv2d_weight_grad(image(1, 1, 5, 5), image(1, 2, 3, 3), 3.0).shape == (2, 1, 3, 3)


@pytest.mark.parametrize("in_channels", [0, -1])
def test_random_network_needs_input_channels(in_channels):
    with pytest.raises(ValueError, match=f"in_channels must be >= 1; got {in_channels}"):
        ConvNet.random(in_channels, [(2, 3)])


@pytest.mark.parametrize("value", [0.5, 2.0, -1.0, np.nan])
def test_piece_from_pattern_refuses_non_binary_patterns(net, value):
    pattern = net.activation_pattern(image(1, 3, 9, 9))
    bad = [pattern[0].astype(float), pattern[1]]
    bad[0][0, 1, 2, 3] = value
    with pytest.raises(ValueError, match=r"pattern\[0\] \(layer 1, relu\) must hold values 0 or 1"):
        net.piece_from_pattern(bad, (3, 9, 9))
    # negative control: the same pattern as 0/1 floats is a pattern, and gives the same piece
    as_float = [p.astype(float) for p in pattern]
    for got, want in zip(
        net.piece_from_pattern(as_float, (3, 9, 9)), net.linear_piece(image(1, 3, 9, 9))
    ):
        assert np.array_equal(got, want)


def test_softplus_pattern_must_lie_in_the_unit_interval():
    smooth = ConvNet.random(1, [(2, 3, 1, 0, "softplus")], seed=0)
    pattern = smooth.activation_pattern(image(1, 1, 5, 5))
    smooth.piece_from_pattern(pattern, (1, 5, 5))  # h'(z) in (0, 1): fine
    pattern[0][0, 0, 0, 0] = 1.5
    with pytest.raises(ValueError, match=r"layer 1, softplus\) must hold values in \[0, 1\]"):
        smooth.piece_from_pattern(pattern, (1, 5, 5))


@pytest.mark.parametrize("tol", [np.nan, np.inf, -1e-3, "1e-6"])
def test_grade_tolerance_is_checked(tol):
    from refimpl.models import GenerativeModel
    from refimpl.sampling import grade

    model = GenerativeModel(ConvNet.random(1, [(2, 3)], seed=0), 1.0)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        grade(model, image(1, 1, 5, 5), 5, 0.5, tol=tol)
    assert grade(model, image(1, 1, 5, 5), 5, 0.5, tol=0.0).steps == 5  # negative control


def prototype(W, b, sigma=1.0):
    from refimpl.models import GenerativeModel, PrototypeModel

    return GenerativeModel(PrototypeModel(np.array(W, float), np.array(b, float)), sigma)


def test_exact_distribution_radius_must_hold_the_mass():
    from refimpl.exact import exact_distribution

    rng = np.random.default_rng(0)
    model = prototype(rng.standard_normal((3, 2)), rng.standard_normal(3))
    full = exact_distribution(model)
    # before: radius 1 gave log Z 2.17 instead of 2.56, silently (the mass outside was lost)
    with pytest.raises(ValueError, match=r"radius 1 is too small to hold the mass"):
        exact_distribution(model, radius=1.0)
    for radius in (-1.0, 0.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="radius must be a positive finite number"):
            exact_distribution(model, radius=radius)
    wider = exact_distribution(model, radius=2 * full.radius)  # negative control: larger is fine
    assert abs(wider.log_Z - full.log_Z) < 1e-9


@pytest.mark.parametrize(
    "W, b, message",
    [
        ([[1.0], [1.0]], [1e308, 1e308], r"log Z\(w\) is not finite"),
        ([[1e155]], [0.0], "slopes |B| overflow"),
    ],
)
def test_exact_distribution_overflow_is_an_error(W, b, message):
    from refimpl.exact import exact_distribution

    with np.errstate(all="ignore"), pytest.raises(ValueError, match=message):
        exact_distribution(prototype(W, b))
