"""The cross-check kit: golden vectors, their comparison, hints, statistical sampler checks.

Covers the issue's items: a learning iteration run with given noise is exactly what the
trainer does; golden files are deterministic and self-describing, in NCHW and NHWC;
refimpl passes its own golden set (float64, and float32 with the float32 tolerances);
every hint is recognised on wrong results built here, independently of
:mod:`refimpl.crosscheck.mistakes`; missing or malformed results get clear messages; the
statistical check passes an exact sampler and fails biased ones by a wide margin; and the
two commands. Everything runs on the golden set written once per module (0.2 s).
"""

import json
import zipfile

import numpy as np
import pytest
from scipy import special

from refimpl import conv
from refimpl.backend import make_rng
from refimpl.cli import main
from refimpl.convnet import ConvLayer, ConvNet
from refimpl.crosscheck import (
    CASES,
    FORMAT_VERSION,
    GoldenFormatError,
    GoldenSet,
    assert_matches,
    compare,
    fileformat,
    write_golden,
)
from refimpl.crosscheck.cases import as_float32, compute_case, get_case, network
from refimpl.crosscheck.golden import robust
from refimpl.crosscheck.mistakes import HINTS
from refimpl.exact import exact_distribution
from refimpl.learning import LearningConfig, Trainer, learning_iteration
from refimpl.learning.optimizers import sgd_step
from refimpl.models import GenerativeModel
from refimpl.numerics import (
    CROSSCHECK_FLOAT32,
    CROSSCHECK_FLOAT64,
    CROSSCHECK_HEADROOM,
    DECISION_MARGIN,
    KINK_MARGIN,
)
from refimpl.sampling import langevin, mala

# --- item 1: one learning iteration with given noise is what the trainer does --------------------


def tiny_trainer(method: str) -> Trainer:
    config = LearningConfig(
        spec=[(3, 3, 1, 1), (2, 3, 1, 0)],
        grow=False,
        iterations_per_layer=5,
        chains=3,
        langevin_steps=3,
        step_size=0.3,
        sigma=0.7,
        method=method,
        learning_rate=[1e-2, 1e-3],
        init_std="he",
        clip=5.0,
        seed=4,
    )
    data = np.random.default_rng(8).uniform(-1, 1, (2, 1, 7, 6))
    return Trainer(config, data)


@pytest.mark.parametrize("method", ["ml", "cd"])
def test_trainer_step_is_learning_iteration_plus_sgd_step(method):
    """Trainer.step() = learning_iteration + sgd_step with Trainer.noise(t), bit for bit."""
    trainer = tiny_trainer(method)
    trainer.step()  # leave the initial state: chains and weights have moved
    cfg, net, t = trainer.config, trainer.net, trainer.iteration
    it = learning_iteration(
        net,
        trainer.data,
        trainer.chains,
        trainer.noise(t),
        cfg.sigma,
        cfg.step_size,
        cfg.method,
        cfg.normalise_by_area,
        cfg.clip,
    )
    params = sgd_step(net.parameters(), it.gradient, trainer.layer_rates())
    trainer.step()
    assert np.array_equal(trainer.chains, it.chains)
    for (W, b), (W_t, b_t) in zip(params, trainer.net.parameters()):
        assert np.array_equal(W, W_t) and np.array_equal(b, b_t)
    # negative control: the noise of another iteration gives other chains
    other = learning_iteration(
        net, trainer.data, trainer.chains, trainer.noise(t + 1), cfg.sigma, cfg.step_size, method
    )
    assert not np.array_equal(other.chains, it.chains)


# --- golden sets ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden")
    write_golden(out, seed=0)
    return out


@pytest.fixture(scope="module")
def golden_nhwc(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden_nhwc")
    write_golden(out, seed=0, layout="nhwc")
    return out


def manifest_of(directory) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def stored(directory, case: str) -> dict:
    with np.load(directory / f"{case}.npz") as data:
        return {k: data[k] for k in data.files}


def refimpl_results(directory, float32: bool = False, seed: int = 0) -> dict:
    """refimpl's own results on a golden set's inputs, as read back from the files.

    The statistical cases are run with refimpl's MALA from the given exact start points.
    """
    golden = GoldenSet(directory)
    results = {}
    for name in golden.case_names:
        case, settings = get_case(name), golden.entry(name)["settings"]
        inputs = golden.canonical_inputs(name)
        if case.statistical:
            model = GenerativeModel(network(settings, inputs), settings["sigma"])
            samples = mala(
                model, inputs["start"], settings["n_steps"], settings["step_size"], make_rng(seed)
            ).samples
            outputs = dict(samples=samples)
        else:
            outputs, _ = compute_case(case, settings, as_float32(inputs) if float32 else inputs)
        results[name] = {
            k: fileformat.to_layout(np.asarray(v), case.spec(k).axes, golden.layout)
            for k, v in outputs.items()
        }
    return results


def test_same_seed_gives_byte_identical_files(golden, tmp_path):
    again = tmp_path / "again"
    write_golden(again, seed=0)
    names = sorted(p.name for p in golden.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    assert len(names) == len(CASES) + 1  # one file per case and the manifest
    for name in names:
        assert (golden / name).read_bytes() == (again / name).read_bytes(), name
    # negative control: another seed, other bytes
    other = tmp_path / "other"
    write_golden(other, seed=1, cases=["conv"])
    assert (other / "conv.npz").read_bytes() != (golden / "conv.npz").read_bytes()


def test_npz_files_are_plain_zips_with_fixed_dates(golden):
    with zipfile.ZipFile(golden / "langevin.npz") as archive:
        infos = archive.infolist()
    assert {i.date_time for i in infos} == {fileformat.ZIP_DATE}
    assert all(i.compress_type == zipfile.ZIP_STORED and i.filename.endswith(".npy") for i in infos)
    assert set(stored(golden, "langevin")) == {i.filename[:-4] for i in infos}


def test_the_cases_the_issue_asks_for(golden):
    manifest = manifest_of(golden)
    assert set(manifest["cases"]) == {
        "conv",
        "convnet",
        "pieces",
        "langevin",
        "mala",
        "grade",
        "learning_ml",
        "learning_cd",
        "softmax",
        "sampler_1d",
        "sampler_2d",
    }
    cases = manifest["cases"]
    assert cases["conv"]["settings"]["stride"] > 1 and cases["conv"]["settings"]["pad"] > 0
    outputs = {
        name: [k for k, v in c["arrays"].items() if v["role"] == "output"]
        for name, c in cases.items()
    }
    assert {"score", "class_scores", "grad_I", "grad_W1", "grad_b3"} <= set(outputs["convnet"])
    assert {"pattern1", "alpha", "B", "basis_b2"} <= set(outputs["pieces"])
    assert {"synthesized", "mismatch_W1", "W3_next"} <= set(outputs["learning_ml"])
    assert {"posterior", "log_likelihood_generative"} <= set(outputs["softmax"])
    assert cases["grade"]["arrays"]["converged"]["compare"] == "exact"
    assert all(stored(golden, "grade")["converged"])  # GRADE ran to convergence
    assert 0 < stored(golden, "mala")["acceptance"].mean() < 1  # accepts and rejects


def test_manifest_describes_every_array(golden):
    manifest = manifest_of(golden)
    assert manifest["format_version"] == FORMAT_VERSION and manifest["layout"] == "nchw"
    assert manifest["comparison"]["rtol"] == {
        "float64": CROSSCHECK_FLOAT64,
        "float32": CROSSCHECK_FLOAT32,
    }
    for name, entry in manifest["cases"].items():
        arrays = stored(golden, name)
        assert entry["computes"] and "Eq" in entry["equation"]
        for array, info in entry["arrays"].items():
            if info["compare" if info["role"] == "output" else "role"] == "ks":
                assert list(info["shape"]) == list(arrays["start"].shape)
                continue
            assert list(arrays[array].shape) == info["shape"], (name, array)
            assert str(arrays[array].dtype) == info["dtype"], (name, array)
            assert len(info["axes"]) == arrays[array].ndim, (name, array)
            if info.get("compare") == "close":
                for precision, rtol in manifest["comparison"]["rtol"].items():
                    tol = info["tolerance"][precision]
                    assert tol == {"rtol": rtol, "atol": rtol * info["scale"]}
        if "noise" in entry["arrays"]:  # the Langevin update written out, sigma and scale given
            assert "(eps**2 / 2)" in entry["update"] and "sigma**2" in entry["update"]
            assert entry["settings"]["sigma"] != 1 and "image_scale" in entry["settings"]


def test_manifest_formula_is_what_the_file_holds(golden):
    """The Langevin update and the parameter update as the manifest writes them out."""
    entry = manifest_of(golden)["cases"]["langevin"]
    data, s = stored(golden, "langevin"), entry["settings"]
    net = network(s, data)
    eps, sigma, I = s["step_size"], s["sigma"], data["I0"]
    for Z in data["noise"]:
        I = I + (eps**2 / 2) * (net.grad_input(I) - I / sigma**2) + eps * Z
    assert np.abs(I - data["samples"]).max() <= 1e-12 * np.abs(I).max()
    learn = stored(golden, "learning_ml")
    rate = manifest_of(golden)["cases"]["learning_ml"]["settings"]["learning_rate"]
    for l in (1, 2, 3):
        W_next = learn[f"W{l}"] + rate * learn[f"mismatch_W{l}"]
        assert np.array_equal(W_next, learn[f"W{l}_next"])
    # the conv case: the fast kernels' golden values against the loops of refimpl.conv.naive
    c = stored(golden, "conv")
    loops = conv.conv2d(c["x"], c["weight"], c["bias"], stride=2, pad=1, impl="naive")
    assert np.abs(loops - c["y"]).max() <= 1e-12 * np.abs(c["y"]).max()


def test_golden_instances_are_robust(golden):
    for name, entry in manifest_of(golden)["cases"].items():
        if get_case(name).statistical:
            continue
        facts = entry["robustness"]
        assert facts["float32_deviation"] <= CROSSCHECK_FLOAT32 / CROSSCHECK_HEADROOM, name
        assert facts.get("kink_margin", 1.0) >= KINK_MARGIN, name


def test_negative_control_robustness_rejects_small_margins():
    assert robust(dict(kink=2 * KINK_MARGIN, decisions_robust=True, mixed=True))
    assert not robust(dict(kink=KINK_MARGIN / 2))
    assert not robust(dict(kink=1.0, decisions_robust=False))
    assert not robust(dict(kink=1.0, mixed=False))
    assert DECISION_MARGIN > 0


def test_nhwc_golden_holds_the_same_values_transposed(golden, golden_nhwc):
    """NHWC images, HWIO filters, TNHWC noise; vectors unchanged."""
    nchw, nhwc = stored(golden, "learning_ml"), stored(golden_nhwc, "learning_ml")
    assert np.array_equal(nhwc["data"], nchw["data"].transpose(0, 2, 3, 1))
    assert np.array_equal(nhwc["W1"], nchw["W1"].transpose(2, 3, 1, 0))
    assert np.array_equal(nhwc["noise"], nchw["noise"].transpose(0, 1, 3, 4, 2))
    assert np.array_equal(nhwc["b1"], nchw["b1"])
    basis = stored(golden, "pieces")["basis_b1"]  # (N, C_l, H_l, W_l, C, H, W)
    assert np.array_equal(
        stored(golden_nhwc, "pieces")["basis_b1"], basis.transpose(0, 2, 3, 1, 5, 6, 4)
    )
    arrays = manifest_of(golden_nhwc)["cases"]["learning_ml"]["arrays"]
    assert (arrays["data"]["axes"], arrays["W1"]["axes"], arrays["noise"]["axes"]) == (
        "NHWC",
        "HWIO",
        "TNHWC",
    )


# --- compare: refimpl against its own golden set --------------------------------------------------


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_refimpl_passes_its_own_golden_set(golden, golden_nhwc, layout):
    directory = golden if layout == "nchw" else golden_nhwc
    report = compare(directory, refimpl_results(directory))
    assert report.passed, report.table()
    assert len(report.rows) == sum(
        v["role"] == "output"
        for c in manifest_of(directory)["cases"].values()
        for v in c["arrays"].values()
    )


def test_negative_control_a_perturbation_of_1e_8_fails_in_float64(golden):
    results = refimpl_results(golden)
    results["langevin"]["samples"] = results["langevin"]["samples"] * (1 + 1e-8)
    report = compare(golden, results, cases=["langevin", "conv"])
    assert [(r.case, r.quantity) for r in report.failures] == [("langevin", "samples")]
    assert "langevin" in report.table() and "FAIL" in report.table()


def test_float32_results_pass_with_the_float32_tolerances(golden):
    names = [c.name for c in CASES if not c.statistical]
    results = refimpl_results(golden, float32=True)
    assert results["convnet"]["score"].dtype == np.float32
    report = compare(golden, results, cases=names)
    assert report.passed, report.table()
    assert max(r.max_rel for r in report.rows if r.kind == "close") < CROSSCHECK_FLOAT32 / 10
    # negative control: held to the float64 tolerances they fail, with the precision hint
    strict = compare(golden, results, cases=["convnet"], precision="float64")
    assert not strict.passed
    assert any("float32 accuracy" in h for r in strict.failures for h in r.hints)


def test_in_memory_results_and_assert_matches(golden):
    softmax = refimpl_results(golden)["softmax"]
    assert assert_matches(golden, {"softmax": softmax}, cases=["softmax"]).passed
    softmax["posterior"] = softmax["posterior"][:, ::-1]
    with pytest.raises(AssertionError, match="softmax"):
        assert_matches(golden, {"softmax": softmax}, cases=["softmax"])


# --- hints: wrong results built here, each with one classic mistake -------------------------------


def failing_hints(golden, case: str, results: dict) -> dict:
    """``{quantity: hints}`` of the failing quantities of ``case``."""
    report = compare(golden, {case: results}, cases=[case])
    return {r.quantity: r.hints for r in report.failures}


@pytest.mark.parametrize(
    "mistake, drift, noise_scale, sigma_one",
    [
        ("drift-eps2", lambda eps: eps**2, lambda eps: eps, False),
        ("drift-eps", lambda eps: eps, lambda eps: eps, False),
        ("drift-one", lambda eps: 1.0, lambda eps: eps, False),
        ("noise-unscaled", lambda eps: eps**2 / 2, lambda eps: 1.0, False),
        ("sigma-one", lambda eps: eps**2 / 2, lambda eps: eps, True),
    ],
)
def test_langevin_hints(golden, mistake, drift, noise_scale, sigma_one):
    data, s = stored(golden, "langevin"), manifest_of(golden)["cases"]["langevin"]["settings"]
    net, eps = network(s, data), s["step_size"]
    sigma = 1.0 if sigma_one else s["sigma"]
    I = data["I0"]
    for Z in data["noise"]:
        I = I + drift(eps) * (net.grad_input(I) - I / sigma**2) + noise_scale(eps) * Z
    assert failing_hints(golden, "langevin", {"samples": I}) == {"samples": [HINTS[mistake]]}


def test_flipped_kernel_hint(golden):
    c = stored(golden, "conv")
    flipped = np.ascontiguousarray(c["weight"][..., ::-1, ::-1])
    results = dict(
        y=conv.conv2d(c["x"], flipped, c["bias"], 2, 1),
        x_grad=conv.conv2d_adjoint(c["y_grad"], flipped, c["x"].shape[2:], 2, 1),
        weight_grad=conv.conv2d_weight_grad(c["x"], c["y_grad"], 3, 2, 1)[..., ::-1, ::-1],
        bias_grad=c["bias_grad"],
    )
    hints = failing_hints(golden, "conv", results)
    assert set(hints) == {"y", "x_grad", "weight_grad"}
    assert all(h == [HINTS["flip"]] for h in hints.values())


def test_forgotten_relu_mask_hint(golden):
    """Without the masks, df/dI is the gradient of the same filters with no ReLU at all."""
    data = stored(golden, "convnet")
    s = manifest_of(golden)["cases"]["convnet"]["settings"]
    linear = ConvNet(
        [
            ConvLayer(data[f"W{l}"], data[f"b{l}"], layer["stride"], layer["pad"], "linear")
            for l, layer in enumerate(s["layers"], start=1)
        ]
    )
    results = {k: data[k] for k in manifest_of(golden)["cases"]["convnet"]["arrays"]}
    results["grad_I"] = linear.grad_input(data["I"])
    assert failing_hints(golden, "convnet", results) == {"grad_I": [HINTS["relu-mask"]]}


def test_batch_mean_hint(golden):
    data = stored(golden, "convnet")
    results = dict(data, grad_W2=data["grad_W2"] / len(data["I"]))
    assert failing_hints(golden, "convnet", results) == {"grad_W2": [HINTS["batch-mean"]]}


def test_layout_hints(golden):
    samples = stored(golden, "langevin")["samples"]  # (N, C, H, W)
    for wrong, words in [
        (samples.transpose(0, 2, 3, 1), "order NHWC instead of the golden set's NCHW"),
        (samples.transpose(0, 1, 3, 2), "height and width swapped"),
    ]:
        (hint,) = failing_hints(golden, "langevin", {"samples": wrong})["samples"]
        assert words in hint
    (hint,) = failing_hints(golden, "langevin", {"samples": samples.transpose(0, 2, 3, 1)})[
        "samples"
    ]
    assert "--layout nhwc" in hint
    reshaped = samples.transpose(0, 2, 3, 1).reshape(samples.shape)
    (hint,) = failing_hints(golden, "langevin", {"samples": reshaped})["samples"]
    assert "not a reshape" in hint


def test_filter_layout_hint(golden):
    data = stored(golden, "convnet")
    results = dict(data, grad_W1=data["grad_W1"].transpose(2, 3, 1, 0))
    (hint,) = failing_hints(golden, "convnet", results)["grad_W1"]
    assert "HWIO instead of the golden set's OIHW" in hint


def test_learning_hints(golden):
    data = stored(golden, "learning_ml")
    rate = manifest_of(golden)["cases"]["learning_ml"]["settings"]["learning_rate"]
    outputs = [
        k
        for k, v in manifest_of(golden)["cases"]["learning_ml"]["arrays"].items()
        if v["role"] == "output"
    ]
    areas = {1: 4 * 4, 2: 4 * 4, 3: 3 * 3}  # output areas of the three layers on 8 x 7 images
    descent, area = {k: data[k] for k in outputs}, {k: data[k] for k in outputs}
    for l in (1, 2, 3):
        for p in ("W", "b"):
            descent[f"{p}{l}_next"] = data[f"{p}{l}"] - rate * data[f"mismatch_{p}{l}"]
            area[f"{p}{l}_next"] = data[f"{p}{l}"] + rate * data[f"mismatch_{p}{l}"] / areas[l]
    hints = failing_hints(golden, "learning_ml", descent)
    assert set(hints) == {f"{p}{l}_next" for p in "Wb" for l in (1, 2, 3)}
    assert all(h == [HINTS["descent"]] for h in hints.values())
    hints = failing_hints(golden, "learning_ml", area)
    assert all(h == [HINTS["area"]] for h in hints.values()) and len(hints) == 6


def test_softmax_hints(golden):
    data = stored(golden, "softmax")
    swapped = dict(
        data,
        log_likelihood_discriminative=data["log_likelihood_generative"],
        log_likelihood_generative=data["log_likelihood_discriminative"],
    )
    hints = failing_hints(golden, "softmax", swapped)
    assert hints == {
        "log_likelihood_discriminative": [HINTS["softmax-axis"]],
        "log_likelihood_generative": [HINTS["softmax-axis"]],
    }
    no_bias = dict(data, posterior=special.softmax(data["scores"], axis=1))
    assert failing_hints(golden, "softmax", no_bias) == {"posterior": [HINTS["no-bias"]]}


def test_no_metropolis_hint(golden):
    data, s = stored(golden, "mala"), manifest_of(golden)["cases"]["mala"]["settings"]
    model = GenerativeModel(network(s, data), s["sigma"])
    ula = langevin(model, data["I0"], s["n_steps"], s["step_size"], noise=data["noise"]).samples
    hints = failing_hints(golden, "mala", {"samples": ula, "acceptance": np.ones(len(ula))})
    assert hints["samples"] == [HINTS["no-metropolis"]]


# --- clear messages -------------------------------------------------------------------------------


def test_missing_wrong_shaped_and_nan_results_are_named(golden, tmp_path):
    results = refimpl_results(golden)
    out = tmp_path / "results"
    out.mkdir()
    conv_arrays = dict(results["conv"])
    del conv_arrays["y"]
    np.savez(out / "conv.npz", **conv_arrays)
    convnet = dict(results["convnet"], grad_I=np.zeros((3, 2, 7, 7)))
    np.savez(out / "convnet.npz", **convnet)
    samples = results["langevin"]["samples"].copy()
    samples[0, 0, 0, :3] = np.nan
    np.savez(out / "langevin.npz", samples=samples)
    (out / "mala.npz").write_text("not a zip")
    report = compare(golden, out, cases=["conv", "convnet", "langevin", "mala", "grade"])
    failed = {(r.case, r.quantity): r.message for r in report.failures}
    assert "missing: no array 'y'" in failed[("conv", "y")]
    assert "shape (3, 2, 7, 7), expected (3, 2, 8, 7)" in failed[("convnet", "grad_I")]
    assert "3 of 448 entries are NaN or inf" in failed[("langevin", "samples")]
    assert "could not read" in failed[("mala", "(file)")]
    assert "no results for this case" in failed[("grade", "(case)")]
    assert len(report.failures) == 5


def test_exact_quantities(golden):
    data = stored(golden, "pieces")
    outputs = [
        k
        for k, v in manifest_of(golden)["cases"]["pieces"]["arrays"].items()
        if v["role"] == "output"
    ]
    results = {k: data[k] for k in outputs}
    results["pattern2"] = data["pattern2"].astype(np.float64)  # 0/1 numbers are accepted
    assert compare(golden, {"pieces": results}, cases=["pieces"]).passed
    flipped = data["pattern2"].copy()
    flipped.flat[5] = not flipped.flat[5]
    results["pattern2"] = flipped
    (row,) = compare(golden, {"pieces": results}, cases=["pieces"]).failures
    assert row.quantity == "pattern2" and row.message == f"1 of {flipped.size} entries differ"


def test_other_format_versions_and_non_golden_directories_are_refused(golden, tmp_path):
    copy = tmp_path / "old"
    copy.mkdir()
    manifest = manifest_of(golden)
    manifest["format_version"] = FORMAT_VERSION + 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GoldenFormatError, match=f"format version {FORMAT_VERSION + 1}"):
        compare(copy, tmp_path)
    with pytest.raises(FileNotFoundError, match="not a golden directory"):
        compare(tmp_path, tmp_path)
    with pytest.raises(ValueError, match="no case.*nope"):
        compare(golden, tmp_path, cases=["nope"])
    with pytest.raises(FileNotFoundError, match="results directory not found"):
        compare(golden, tmp_path / "missing")


# --- samplers without shared noise ----------------------------------------------------------------


@pytest.mark.parametrize("case", ["sampler_1d", "sampler_2d"])
def test_statistical_check_passes_an_exact_sampler_and_fails_biased_ones(golden, case):
    """MALA passes (as a correct sampler does with probability 1 - alpha = 0.999); unadjusted
    Langevin at the case's step fails by more than 3 critical values, with the eps^2 drift
    by more than 10 (measured on seeds 0-3: 7-17 and 25-29)."""
    golden_set = GoldenSet(golden)
    s, inputs = golden_set.entry(case)["settings"], golden_set.canonical_inputs(case)
    model = GenerativeModel(network(s, inputs), s["sigma"])
    eps, n = s["step_size"], s["n_steps"]

    def verdict(samples):
        (row,) = compare(golden, {case: {"samples": samples}}, cases=[case]).rows
        assert row.critical == pytest.approx(s["critical_value"])
        return row

    assert verdict(mala(model, inputs["start"], n, eps, make_rng(3)).samples).passed
    ula = verdict(langevin(model, inputs["start"], n, eps, make_rng(3)).samples)
    assert not ula.passed and ula.distance > 3 * ula.critical
    assert "Metropolis" in ula.hints[0]
    I, rng = inputs["start"], make_rng(3)
    for _ in range(n):  # the eps^2 drift, unadjusted
        I = I + eps**2 * model.grad_log_density(I) + eps * rng.standard_normal(I.shape)
    drift = verdict(I)
    assert not drift.passed and drift.distance > 10 * drift.critical


def test_tabulated_cdf_and_quantiles_are_exact(golden):
    """Linear interpolation of the table is within 1e-6 of the exact CDF (refimpl.exact)."""
    golden_set = GoldenSet(golden)
    s, inputs = (
        golden_set.entry("sampler_1d")["settings"],
        golden_set.canonical_inputs("sampler_1d"),
    )
    dist = exact_distribution(GenerativeModel(network(s, inputs), s["sigma"]), (1, 1, 1))
    x = inputs["cdf_x"]
    midpoints = 0.5 * (x[1:] + x[:-1])
    interpolated = np.interp(midpoints, x, inputs["cdf"][0])
    assert np.abs(interpolated - dist.cdf(midpoints)).max() < 1e-6
    for F, q in zip(inputs["cdf"], inputs["quantiles"]):
        assert np.abs(np.interp(q, x, F) - inputs["quantile_levels"]).max() < 1e-6


# --- the commands ---------------------------------------------------------------------------------


def test_golden_and_crosscheck_commands(tmp_path, capsys):
    out, results = tmp_path / "golden", tmp_path / "results"
    assert main(["golden", "--out", str(out), "--cases", "conv,softmax", "--layout", "nhwc"]) == 0
    assert "conv.npz" in capsys.readouterr().out
    results.mkdir()
    for case, arrays in refimpl_results(out).items():
        np.savez(results / f"{case}.npz", **arrays)
    assert main(["crosscheck", str(out), str(results)]) == 0
    text = capsys.readouterr().out
    assert "PASS" in text and "FAIL" not in text and "layout nhwc" in text
    c = stored(out, "conv")
    np.savez(results / "conv.npz", **dict(refimpl_results(out)["conv"], y=-c["y"]))
    assert main(["crosscheck", str(out), str(results)]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert main(["crosscheck", str(out), str(tmp_path / "nope")]) == 2
    assert "results directory not found" in capsys.readouterr().err
    assert main(["crosscheck", str(out), str(results), "--cases", "mala"]) == 2
    assert "no case(s) mala" in capsys.readouterr().err


def test_help_names_both_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "golden" in text and "crosscheck" in text
