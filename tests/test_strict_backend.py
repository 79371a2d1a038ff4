"""The GPU path without a GPU: refimpl on the strict, CuPy-like backend of ``strict_backend``.

Three parts:

1. the strict backend itself behaves as CuPy does where it matters (implicit conversions
   refused, explicit transfers and scalar conversions allowed, NumPy functions dispatched
   or refused, CuPy's random API only), and ``refimpl.backend``'s registry handles it;
2. negative controls: a deliberate NumPy call on a device array, and host noise fed to
   device chains, are caught;
3. refimpl runs on it: the engine, the samplers, one iteration of each learning method,
   ``verify --quick``, a short ``synthesize`` and ``reconstruct``, ``pieces``, the exact
   references and the texture statistics; and where NumPy computes the same thing from the
   same inputs and noise, the results agree.

Tolerances for "the same as NumPy": the strict backend runs NumPy's own kernels, but the
convolution's batch chunks are sized for a device (``refimpl.conv.plan.CHUNK_ELEMENTS``),
so sums over chunks may be ordered differently: the float64 rounding bound ``EXACT`` of
``refimpl.numerics`` applies (``FLOAT32`` in float32). Measured: identical to the last bit
on every instance here (the problems are smaller than one chunk either way).
"""

from __future__ import annotations

import importlib.util
import io
import json

import numpy as np
import pytest
import scipy.ndimage
import scipy.special
import strict_backend
from checks import EXACT, FLOAT32, assert_close
from strict_backend import ImplicitTransferError, StrictArray

from refimpl import ConvLayer, ConvNet, backend, conv
from refimpl.cli import main
from refimpl.convnet import basis_functions, piece_from_basis
from refimpl.exact import exact_distribution, ml_gradient
from refimpl.learning import Trainer, load_checkpoint, save_checkpoint
from refimpl.learning.presets import preset_config
from refimpl.models import GenerativeModel, PrototypeModel
from refimpl.sampling import draw_langevin_noise, fixed_point, grade, langevin, mala
from refimpl.texture_stats import texture_report

xp = strict_backend.namespace

# The methods of cupy.random.Generator in CuPy v13 (cupy/random/_generator_api.pyx; also
# https://docs.cupy.dev/en/stable/reference/generated/cupy.random.Generator.html): CuPy's
# list, written out independently of strict_backend.
CUPY_GENERATOR_METHODS = {
    "beta",
    "binomial",
    "chisquare",
    "dirichlet",
    "exponential",
    "f",
    "gamma",
    "geometric",
    "hypergeometric",
    "integers",
    "logseries",
    "poisson",
    "power",
    "random",
    "standard_exponential",
    "standard_gamma",
    "standard_normal",
    "uniform",
}


@pytest.fixture(scope="module", autouse=True)
def strict():
    """Backend "strict" is registered for this module's tests only."""
    with strict_backend.registered() as namespace:
        yield namespace


def device(a):
    return backend.to_backend(a, "strict")


def host(a):
    return backend.to_numpy(a)


# --- 1. the strict backend behaves as CuPy does -----------------------------------------------


def test_implicit_conversion_to_numpy_is_refused():
    x = device(np.arange(6.0).reshape(2, 3))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(x)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.array(x)
    with pytest.raises(TypeError, match="Implicit conversion"):
        scipy.ndimage.zoom(x, 2)  # SciPy converts with np.asarray
    with pytest.raises(TypeError, match="Implicit conversion"):
        scipy.special.logsumexp(x)
    with pytest.raises(TypeError, match="no implementation found for 'numpy.save'"):
        np.save(io.BytesIO(), x)


def test_explicit_transfers_round_trip_and_copy():
    values = np.random.default_rng(0).standard_normal((3, 4))
    x = device(values)
    assert isinstance(x, StrictArray) and backend.namespace_of(x) is xp
    for back in (host(x), x.get(), xp.asnumpy(x)):
        assert type(back) is np.ndarray and np.array_equal(back, values)
    back = host(x)
    back[0, 0] = 99.0  # a copy: the device array keeps its value
    assert float(x[0, 0]) == values[0, 0]
    values[1, 1] = -5.0  # and the upload was a copy too
    assert float(x[1, 1]) != -5.0


def test_scalar_conversions_work_and_arrays_are_not_indices():
    x = device(np.array([[1.5, 2.0], [3.0, 4.0]]))
    total = x.sum()
    assert isinstance(total, StrictArray) and total.ndim == 0  # CuPy returns 0-d arrays
    assert isinstance(x[0, 0], StrictArray)
    assert float(total) == 10.5 and int(x[1, 1]) == 4 and bool(x[0, 0] > 1)
    assert x[0, 0].item() == 1.5 and x.tolist() == [[1.5, 2.0], [3.0, 4.0]]
    assert f"{total:.2f}" == "10.50"
    with pytest.raises(ValueError, match="more than one element is ambiguous"):
        bool(x > 0)
    with pytest.raises(TypeError):
        range(xp.asarray(3))  # no __index__ on CuPy arrays


def test_numpy_functions_dispatch_to_the_namespace_or_fail():
    values = np.random.default_rng(1).standard_normal((4, 5))
    x = device(values)
    for result, expected in (
        (np.exp(x), np.exp(values)),  # a ufunc: __array_ufunc__
        (np.sum(x, axis=0), values.sum(axis=0)),  # a function CuPy has: __array_function__
        (np.linalg.norm(x), np.linalg.norm(values)),
        (np.maximum(x, 0.0), np.maximum(values, 0.0)),
    ):
        assert isinstance(result, StrictArray)
        assert np.array_equal(host(result), expected)
    with pytest.raises(TypeError, match="no implementation found for 'numpy.einsum_path'"):
        np.einsum_path("ij->i", x)  # not in CuPy
    with pytest.raises(TypeError):
        np.spacing(x)  # a NumPy ufunc CuPy lacks
    with pytest.raises(AttributeError):
        xp.errstate  # noqa: B018  (NumPy's, not CuPy's)


def test_host_arrays_are_not_moved_implicitly():
    x = device(np.ones((2, 3)))
    h = np.ones((2, 3))
    for leak in (
        lambda: x + h,
        lambda: h + x,
        lambda: h * x,
        lambda: xp.concatenate([x, h]),
        lambda: xp.where(x > 0, h, x),
        lambda: x.__setitem__(slice(None), h),
        lambda: xp.exp(x, out=np.empty((2, 3))),
        lambda: xp.matmul(x, h.T),
    ):
        with pytest.raises(ImplicitTransferError, match="implicit (host-to-device|device-to-host)"):
            leak()
    # what CuPy accepts: scalars, 0-d host arrays, host index arrays, explicit uploads
    y = x * np.float64(2.0) + 1 + np.array(0.5)
    assert float(y[0, 0]) == 3.5
    assert host(x[np.array([1, 0])]).shape == (2, 3)
    assert float((x + xp.asarray(h)).sum()) == 12.0


def test_random_api_is_cupys():
    rng = backend.make_rng(0, "strict")
    assert isinstance(rng, strict_backend.Generator)
    public = {name for name in dir(rng) if not name.startswith("_")}
    assert public == CUPY_GENERATOR_METHODS
    for missing in ("normal", "choice", "permutation", "shuffle", "spawn", "bit_generator"):
        assert not hasattr(rng, missing)
    draws = backend.standard_normal(rng, (1000,), "float32")
    assert isinstance(draws, StrictArray) and draws.dtype == np.float32
    with pytest.raises(TypeError, match="Unsupported dtype"):
        rng.standard_normal(3, dtype=np.int64)
    # same seed, another stream than NumPy's (as CuPy's), and reproducible
    a = host(backend.make_rng(7, "strict").standard_normal(100))
    assert not np.allclose(a, np.random.default_rng(7).standard_normal(100))
    assert np.array_equal(a, host(backend.make_rng(7, "strict").standard_normal(100)))


def test_registry_handles_the_strict_backend():
    assert "strict" in backend.available_backends()
    assert backend.available_backends()[:2] == ("numpy", "cupy")  # CuPy: the same path
    assert backend.get_namespace("strict") is xp and backend.backend_name(xp) == "strict"
    assert backend.is_device(xp) and not backend.is_device(np)
    x = device(np.zeros(3))
    assert backend.namespace_of(x, None, 2.0) is xp
    with pytest.raises(TypeError, match=r"different backends were mixed \(strict and numpy\)"):
        backend.namespace_of(x, np.zeros(3))
    assert type(backend.to_backend(x, "numpy", "float32")) is np.ndarray


def test_unregistered_backend_is_refused_with_the_registered_names():
    backend.register_backend("strict2", xp, strict_backend.is_strict_array, xp.asnumpy)
    assert backend.get_namespace("strict2") is xp
    backend.unregister_backend("strict2")
    with pytest.raises(ValueError, match=r"backend must be one of \(.*'strict'\); got 'strict2'"):
        backend.get_namespace("strict2")
    with pytest.raises(TypeError, match="namespace must be a module"):
        backend.register_backend("bad", object(), bool, np.asarray)
    with pytest.raises(ValueError, match="cannot be unregistered"):
        backend.unregister_backend("numpy")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
@pytest.mark.parametrize("command", [["synthesize"], ["pieces"], ["verify", "--quick"]])
def test_commands_without_cupy_exit_2_with_the_install_hint(command, tmp_path, capsys):
    argv = (
        command + ["--backend", "cupy"] + ([] if "verify" in command else ["--out", str(tmp_path)])
    )
    assert main(argv) == 2
    assert "CuPy is not installed" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


# --- 2. negative controls: the backend catches leaks ------------------------------------------


def _net(backend_name="numpy", dtype=None, activation="relu"):
    net = ConvNet.random(
        2,
        [(4, 3, 2, 1, activation), (3, 3, 1, 1, activation), (2, 2, 1, 0, "linear")],
        seed=5,
        bias_std=0.3,
        dtype=dtype,
        backend=backend_name,
    )
    images = np.random.default_rng(6).standard_normal((3, 2, 9, 9))
    return net, images


def test_negative_control_a_numpy_call_on_a_device_array_is_caught(monkeypatch):
    """A leaky ``bias_grad`` (np.asarray on its input) passes on NumPy, fails on strict."""
    from refimpl.conv import fast

    def leaky_bias_grad(y):
        return np.asarray(y).sum(axis=(0, 2, 3))

    monkeypatch.setattr(fast, "bias_grad", leaky_bias_grad)
    net, images = _net()
    net.grad_params(images)  # NumPy: nothing to notice
    strict_net, _ = _net("strict")
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        strict_net.grad_params(device(images))


def test_negative_control_host_noise_into_device_chains_is_caught():
    """Device chains with a NumPy generator (what ``verify`` did before) mix host into device."""
    net, images = _net("strict")
    model = GenerativeModel(net, sigma=1.0)
    with pytest.raises(ImplicitTransferError, match="implicit host-to-device"):
        langevin(model, device(images), 2, 0.3, backend.make_rng(0, "numpy"))
    langevin(model, device(images), 2, 0.3, backend.make_rng(0, "strict"))  # the fix


# --- 3. refimpl on the strict backend, against NumPy --------------------------------------------


@pytest.mark.parametrize(("dtype", "tol"), [("float64", EXACT), ("float32", FLOAT32)])
@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_engine_on_strict_equals_numpy(dtype, tol, activation):
    net, images = _net(dtype=dtype, activation=activation)
    images = images.astype(dtype)
    dnet, dimages = net.to(xp), device(images)
    pairs = [
        (net.score(images), dnet.score(dimages)),
        (net.grad_input(images), dnet.grad_input(dimages)),
        *zip(
            [g for pair in net.grad_params(images) for g in pair],
            [g for pair in dnet.grad_params(dimages) for g in pair],
        ),
        *zip(net.linear_piece(images), dnet.linear_piece(dimages)),
        *zip(net.activation_pattern(images), dnet.activation_pattern(dimages)),
        *zip(net.forward(images).outputs, dnet.forward(dimages).outputs),
    ]
    weights = np.random.default_rng(2).standard_normal((4, 2))
    pairs.append((net.class_scores(images, weights), dnet.class_scores(dimages, device(weights))))
    for ours, theirs in pairs:
        assert isinstance(theirs, StrictArray)
        assert_close(host(theirs), ours, tol, what="strict vs NumPy")
    if activation == "relu" and dtype == "float64":
        top = dnet.activation_pattern(dimages)[-1]
        alpha, B = piece_from_basis(basis_functions(dnet, dimages)[-1], top)
        assert_close(host(B), net.grad_input(images), EXACT, what="basis vs backprop")
        naive_net = ConvNet(dnet.layers, conv_impl="naive")
        assert_close(host(naive_net.score(dimages)), net.score(images), EXACT, what="naive")


def test_conv_and_pool_functions_on_strict_equal_numpy():
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 3)), np.ones(4)
    y = conv.conv2d(x, w, b, stride=2, pad=1)
    g = rng.standard_normal(y.shape)
    assert_close(host(conv.conv2d(device(x), device(w), device(b), 2, 1)), y)
    assert_close(
        host(conv.conv2d_adjoint(device(g), device(w), (9, 8), 2, 1)),
        conv.conv2d_adjoint(g, w, (9, 8), 2, 1),
    )
    assert_close(
        host(conv.conv2d_weight_grad(device(x), device(g), 3, 2, 1)),
        conv.conv2d_weight_grad(x, g, 3, 2, 1),
    )
    assert_close(host(conv.conv2d_bias_grad(device(g))), conv.conv2d_bias_grad(g))
    circular = dict(stride=2, pad=1, padding_mode="circular")  # wrap padding and its fold
    assert_close(
        host(conv.conv2d(device(x), device(w), device(b), **circular)),
        conv.conv2d(x, w, b, **circular),
    )
    assert_close(
        host(conv.conv2d_adjoint(device(g), device(w), (9, 8), **circular)),
        conv.conv2d_adjoint(g, w, (9, 8), **circular),
    )
    assert_close(
        host(conv.conv2d_weight_grad(device(x), device(g), 3, **circular)),
        conv.conv2d_weight_grad(x, g, 3, **circular),
    )
    pooled, winners = conv.max_pool2d(x, 2)
    d_pooled, d_winners = conv.max_pool2d(device(x), 2)
    assert np.array_equal(host(d_pooled), pooled) and np.array_equal(host(d_winners), winners)
    back = conv.max_pool2d_adjoint(device(pooled), d_winners, x.shape)
    assert np.array_equal(host(back), conv.max_pool2d_adjoint(pooled, winners, x.shape))


def test_samplers_on_strict_equal_numpy_with_injected_noise():
    net, images = _net()
    model, dmodel = GenerativeModel(net, 0.8), GenerativeModel(net.to(xp), 0.8)
    rng = np.random.default_rng(4)
    noise, uniforms = rng.standard_normal((5,) + images.shape), rng.random((5, len(images)))
    runs = [
        (
            langevin(model, images, 5, 0.3, noise=noise),
            langevin(dmodel, device(images), 5, 0.3, noise=device(noise)),
        ),
        (
            mala(model, images, 5, 0.5, noise=noise, uniforms=uniforms),
            mala(dmodel, device(images), 5, 0.5, noise=device(noise), uniforms=device(uniforms)),
        ),
        (grade(model, images, 50, 0.3), grade(dmodel, device(images), 50, 0.3)),
        (fixed_point(model, images, 20), fixed_point(dmodel, device(images), 20)),
    ]
    for ours, theirs in runs:
        assert ours.steps == theirs.steps
        assert_close(host(theirs.samples), ours.samples, EXACT, what="chains")
        for name in ("acceptance", "converged", "chain_steps"):
            if getattr(ours, name) is not None:
                assert np.array_equal(host(getattr(theirs, name)), getattr(ours, name)), name
    # with a device generator: device draws, device chains
    drawn = draw_langevin_noise(backend.make_rng(1, "strict"), 3, images.shape)
    assert isinstance(drawn, StrictArray)
    result = mala(dmodel, device(images), 3, 0.3, backend.make_rng(2, "strict"))
    assert isinstance(result.samples, StrictArray) and isinstance(result.acceptance, StrictArray)


@pytest.mark.parametrize(
    ("preset", "optimizer"), [("texture", "sgd"), ("texture", "adam"), ("reconstruct", "sgd")]
)
def test_one_learning_iteration_on_strict_equals_numpy(preset, optimizer, tmp_path):
    """One iteration of Algorithm 1 (``texture``: ML) and of contrastive divergence
    (``reconstruct``), both growing stages' worth of state: same noise, same result."""
    from refimpl.learning.runs import prepare

    config = preset_config(preset, size=12, iterations_per_layer=1, optimizer=optimizer)
    config.chains = 3
    data, _, _ = prepare(config)
    ours = Trainer(config, data)
    config_strict = preset_config(preset, size=12, iterations_per_layer=1, optimizer=optimizer)
    config_strict.chains, config_strict.backend = 3, "strict"
    theirs = Trainer(config_strict, data)
    assert isinstance(theirs.data, StrictArray)
    for t in range(2):  # the second iteration runs in the next growing stage (ML)
        noise = np.random.default_rng(t).standard_normal(ours.noise().shape)
        record, record_strict = ours.step(noise), theirs.step(device(noise))
        assert np.allclose(record_strict["mismatch"], record["mismatch"], rtol=EXACT, atol=0)
        assert_close(host(theirs.chains), ours.chains, EXACT, what="chains")
        for (w, b), (dw, db) in zip(ours.net.parameters(), theirs.net.parameters()):
            assert_close(host(dw), w, EXACT, what="weights")
            assert_close(host(db), b, EXACT, what="biases")
    # a device run's checkpoint is host data, and resumes on the device
    arrays, meta = theirs.state()
    save_checkpoint(tmp_path / "c.npz", arrays, meta)
    resumed = Trainer.from_state(*load_checkpoint(tmp_path / "c.npz"), data)
    assert isinstance(resumed.chains, StrictArray)
    assert np.array_equal(host(resumed.chains), host(theirs.chains))


def test_quick_verify_on_strict(tmp_path, capsys):
    out = tmp_path / "verify.json"
    assert main(["verify", "--quick", "--backend", "strict", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["backend"] == "strict" and payload["passed"]
    assert len(payload["results"]) >= 20
    capsys.readouterr()


@pytest.mark.parametrize(
    "command",
    [
        ["synthesize", "--iterations", "1", "--size", "8"],
        ["reconstruct", "--iterations", "2", "--size", "8"],
    ],
)
def test_short_learning_commands_on_strict(command, tmp_path, capsys):
    out = tmp_path / "run"
    argv = command + ["--backend", "strict", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterations"] >= 1 and all(np.isfinite(summary["final_mismatch"]))
    for name in ("samples.npy", "reconstructions.npy", "samples.png", "checkpoint.npz"):
        assert (out / name).is_file(), name
    assert main(command[:1] + ["--resume", str(out), "--no-progress"]) == 0  # already finished
    capsys.readouterr()


def test_pieces_on_strict(tmp_path, capsys):
    assert main(["pieces", "--backend", "strict", "--size", "16", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["passed"]
    capsys.readouterr()


def test_exact_references_take_device_models():
    """The host-only exact references copy a device model to the host explicitly."""
    proto = PrototypeModel.random(3, 1, seed=2, scale=2.0)
    model, dmodel = GenerativeModel(proto, 0.7), GenerativeModel(proto.to(xp), 0.7)
    assert exact_distribution(dmodel).log_Z == exact_distribution(model).log_Z
    data = np.random.default_rng(0).standard_normal((4, 1))
    expected = ml_gradient(model, data, (1,))
    assert np.array_equal(ml_gradient(dmodel, device(data), (1,)), expected)


def test_texture_statistics_take_device_images():
    rng = np.random.default_rng(0)
    train, samples = 255 * rng.random((1, 64, 64)), 255 * rng.random((2, 1, 64, 64))
    expected = texture_report(train, samples)
    assert texture_report(device(train), device(samples)) == expected


def test_a_layer_refuses_mixed_backends():
    w, b = device(np.ones((1, 1, 2, 2))), np.zeros(1)
    with pytest.raises(TypeError, match="different backends were mixed"):
        ConvLayer(w, b)
