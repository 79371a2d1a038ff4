"""Texture statistics (refimpl.texture_stats): zero on identical images, symmetry, a real texture
crop closer than white noise, and a negative control that only the spatial statistics catch.

Distances computed twice from the same numbers (swapped, reshaped, shuffled, averaged another
way) differ only by the rounding of their sums: EXACT, relative (or absolute for a distance of
0, whose terms are O(1) to O(100) intensity units times 1.1e-16).
"""

import numpy as np
import pytest
from checks import EXACT, assert_close
from scipy.signal import fftconvolve

from refimpl import texture_stats as ev
from refimpl.data import load_texture

DISTANCES = {
    "marginal": ev.marginal_distance,
    "spectrum": ev.spectrum_distance,
    "filters": ev.filter_response_distance,
}


@pytest.fixture(scope="module")
def brick():
    """Two disjoint (1, 64, 64) crops, top-left and bottom-right, of the x4 block-averaged brick."""
    full = load_texture("brick", factor=4)
    assert full.shape == (1, 128, 128)
    return full[:, :64, :64], full[:, 64:, 64:]


@pytest.fixture(scope="module")
def shuffled(brick):
    """The second crop with its pixels permuted: same histogram, no spatial structure."""
    _, b = brick
    return np.random.default_rng(0).permutation(b.ravel()).reshape(b.shape)


@pytest.mark.parametrize("name", DISTANCES)
def test_zero_for_identical_images(brick, name):
    a, _ = brick
    assert DISTANCES[name](a, a.copy()) == pytest.approx(0.0, abs=EXACT)


@pytest.mark.parametrize("name", ["marginal", "spectrum"])
def test_symmetric(brick, name):
    a, b = brick
    assert DISTANCES[name](a, b) == pytest.approx(DISTANCES[name](b, a), rel=EXACT)


def test_filter_distance_symmetric_for_a_fixed_reference(brick):
    a, b = brick
    noise = ev.matched_noise(b, 1, seed=3)[0]
    assert ev.filter_response_distance(a, noise, reference=b) == pytest.approx(
        ev.filter_response_distance(noise, a, reference=b), rel=EXACT
    )
    # the default reference is the second argument (the training image)
    assert ev.filter_response_distance(a, b) == ev.filter_response_distance(a, b, reference=b)


@pytest.mark.parametrize("name", DISTANCES)
def test_white_noise_farther_than_another_crop(brick, name):
    a, b = brick
    crop = DISTANCES[name](a, b)
    noise = [DISTANCES[name](n, b) for n in ev.matched_noise(b, 4, seed=1)]
    assert crop > 0
    assert min(noise) > 1.5 * crop, (crop, noise)


def test_negative_control_shuffled_pixels(brick, shuffled):
    """Shuffling keeps the histogram (marginal distance exactly 0) and destroys the texture."""
    a, b = brick
    assert ev.marginal_distance(shuffled, b) == pytest.approx(0.0, abs=EXACT)
    assert ev.spectrum_distance(shuffled, b) > 1.5 * ev.spectrum_distance(a, b)
    assert ev.filter_response_distance(shuffled, b) > 1.5 * ev.filter_response_distance(a, b)


def test_marginal_is_in_intensity_units():
    x = np.random.default_rng(0).uniform(0, 255, (32, 32))
    assert ev.marginal_distance(x + 7.0, x) == pytest.approx(7.0, rel=EXACT)


def test_gray_shapes_and_channel_averaging(brick):
    a, b = brick
    for f in DISTANCES.values():
        assert f(a[0], b[0]) == pytest.approx(f(a, b), rel=EXACT)  # (H, W) == (1, H, W)
    colour_a = np.concatenate([a, b, a[:, ::-1]])
    colour_b = np.concatenate([b, a, b[:, ::-1]])
    for f in DISTANCES.values():
        per_channel = [f(x, y) for x, y in zip(colour_a, colour_b)]
        assert f(colour_a, colour_b) == pytest.approx(np.mean(per_channel), rel=EXACT)


def test_errors(brick):
    a, _ = brick
    with pytest.raises(ValueError, match="channels"):
        ev.marginal_distance(a, np.concatenate([a, a, a]))
    with pytest.raises(ValueError, match="expected an image"):
        ev.spectrum_distance(a[None], a[None])
    with pytest.raises(ValueError, match="NaN"):
        ev.marginal_distance(np.full((8, 8), np.nan), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="at least"):
        ev.filter_response_distance(np.zeros((16, 16)), np.zeros((16, 16)))


def test_spectrum_orientation_convention():
    """Vertical stripes (variation along x) put all their power in sector 0."""
    stripes = np.tile(np.sin(2 * np.pi * np.arange(64) / 8), (64, 1))
    table = ev.oriented_spectrum(stripes)
    assert table.shape == (ev.RADIAL_BANDS, ev.SECTORS)
    assert np.all(table[:, 0] > table[:, 1:].max() + 5)
    rotated = ev.oriented_spectrum(stripes.T)  # horizontal stripes: sector 2 (90 degrees)
    assert np.all(rotated[:, 2] > np.delete(rotated, 2, axis=1).max() + 5)


def test_periodic_component_of_a_ramp_has_no_border_jump():
    ramp = np.tile(np.arange(64.0), (64, 1))
    p = ev.periodic_component(ramp)
    assert p.mean() == pytest.approx(ramp.mean())
    assert abs(p[:, 0] - p[:, -1]).max() < 2.0  # the raw ramp jumps by 63


def test_matched_noise_is_seeded_and_matched(brick):
    _, b = brick
    n1, n2 = ev.matched_noise(b, 16, seed=5), ev.matched_noise(b, 16, seed=5)
    assert n1.shape == (16, 1, 64, 64) and np.array_equal(n1, n2)
    # 5 standard errors of the n = 16 * 64 * 64 normal draws (P = 5.7e-7 each; seeded):
    # the mean's is std / sqrt(n), the standard deviation's relative one sqrt(1 / (2 n))
    n = n1.size
    assert abs(n1.mean() - b.mean()) < 5 * b.std() / np.sqrt(n)
    assert abs(n1.std() / b.std() - 1) < 5 * np.sqrt(1 / (2 * n))


def test_texture_report(brick, shuffled):
    a, b = brick
    samples = np.stack([b, b])  # perfect "samples": the training image itself
    noise = ev.matched_noise(b, 3, seed=2)
    report = ev.texture_report(
        b, samples, {"white noise": noise, "other crop": [a[0]], "shuffled": [shuffled]}
    )
    assert list(report) == ["samples", "white noise", "other crop", "shuffled"]
    assert report["samples"]["n"] == 2 and report["white noise"]["n"] == 3
    for metric in ev.METRICS:
        assert report["samples"][metric] == pytest.approx(0.0, abs=EXACT)
        assert report["white noise"][metric] > report["other crop"][metric]
        assert len(report["white noise"][f"{metric}_per_image"]) == 3
    # the report's rows are the pairwise distances to the training image, averaged
    assert report["other crop"]["marginal"] == pytest.approx(ev.marginal_distance(a, b), rel=EXACT)
    assert report["other crop"]["spectrum"] == pytest.approx(ev.spectrum_distance(a, b), rel=EXACT)
    assert report["other crop"]["filters"] == pytest.approx(
        ev.filter_response_distance(a, b), rel=EXACT
    )
    assert report["white noise"]["filters"] == pytest.approx(
        np.mean([ev.filter_response_distance(n, b) for n in noise]), rel=EXACT
    )
    assert report["shuffled"]["marginal"] == pytest.approx(0.0, abs=EXACT)
    # deterministic
    again = ev.texture_report(
        b, samples, {"white noise": noise, "other crop": [a[0]], "shuffled": [shuffled]}
    )
    assert again == report


# --- beyond the spectrum: surrogates and higher-order statistics -----------------------------

N_SE = 5  # 5 standard errors: a correct statistic fails with probability 5.7e-7 per check


@pytest.fixture(scope="module")
def brick128():
    """The whole x4 block-averaged brick, (1, 128, 128)."""
    return load_texture("brick", factor=4)


def test_phase_randomised_keeps_the_power_spectrum_exactly(brick128):
    train = brick128[:, :64, :64]
    surrogates = ev.phase_randomised(train, 3, seed=4)
    assert surrogates.shape == (3, 1, 64, 64) and np.isrealobj(surrogates)
    periodic = ev.periodic_component(train[0])
    target = np.abs(np.fft.fft2(periodic - periodic.mean()))
    for s in surrogates:
        got = np.abs(np.fft.fft2(s[0] - s[0].mean()))
        # a forward and an inverse FFT of 4096 points: rounding ~ log2(4096) eps relative
        assert np.abs(got - target).max() <= 1e-12 * target.max()
        assert abs(s[0].mean() - periodic.mean()) <= 1e-12 * abs(periodic.mean())
    # seeded, and the phases really change: the surrogates differ from each other and the crop
    assert np.array_equal(ev.phase_randomised(train, 3, seed=4), surrogates)
    assert np.abs(surrogates[0] - surrogates[1]).max() > 10
    assert np.abs(surrogates[0, 0] - periodic).max() > 10


def test_kurtosis_of_a_single_impulse_is_the_kernels():
    """An impulse far from the borders: each band's responses are its kernel's values (then
    zeros), so the kurtosis follows from the kernel alone, computed here with NumPy."""
    image = np.zeros((80, 80))
    image[40, 40] = 1.0
    got = ev.response_kurtosis(image)
    for i, (_, kernel) in enumerate(ev._COMPLEX_BANK):
        n_valid = (80 - kernel.shape[0] + 1) ** 2
        r = np.concatenate([kernel.real.ravel(), np.zeros(n_valid - kernel.size)])
        r = r - r.mean()
        expected = (r**4).mean() / (r**2).mean() ** 2
        assert abs(got.flat[i] - expected) <= 1e-10 * expected


def _draws(make, count=24, size=96, seed=0):
    rng = np.random.default_rng(seed)
    return [make(rng, (size, size)) for _ in range(count)]


def test_kurtosis_of_filtered_laplace_noise_follows_the_cumulants():
    """Independent pixels of excess kurtosis k: a filter output has excess kurtosis
    k sum g^4 / (sum g^2)^2 (fourth cumulants add). Laplace noise has k = 3; the mean over
    24 images is compared with it within 5 standard errors estimated from the same draws."""
    values = np.array([ev.response_kurtosis(x) for x in _draws(lambda r, s: r.laplace(size=s))])
    mean, se = values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(len(values))
    predicted = np.array(
        [3 + 3 * (k.real**4).sum() / ((k.real**2).sum() ** 2) for _, k in ev._COMPLEX_BANK]
    ).reshape(mean.shape)
    assert np.all(np.abs(mean - predicted) <= N_SE * se + 0.01)  # + O(1/n) estimator bias
    # negative control: the Gaussian answer, 3, is rejected at the finest scale
    assert np.all(np.abs(mean[0] - 3.0) > N_SE * se[0])


def _gaussian_energy_correlation(a, b):
    """Isserlis for real white noise: cov(|a|^2, |b|^2) = 2 sum_{u,v} <g_a,u, g_b,v>^2."""

    def centred(kernel, size):
        pad = (size - kernel.shape[0]) // 2
        return np.pad(kernel, pad)

    ka, kb = dict(ev._COMPLEX_BANK)[a], dict(ev._COMPLEX_BANK)[b]
    size = max(ka.shape[0], kb.shape[0])
    ka, kb = centred(ka, size), centred(kb, size)
    parts = lambda k: (k.real, k.imag)
    cov = lambda p, q: 2 * sum((u * v).sum() ** 2 for u in parts(p) for v in parts(q))
    return cov(ka, kb) / np.sqrt(cov(ka, ka) * cov(kb, kb))


def test_energy_correlations_of_gaussian_noise_follow_isserlis():
    values = np.array(
        [ev.energy_correlations(x) for x in _draws(lambda r, s: r.standard_normal(s), seed=1)]
    )
    mean, se = values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(len(values))
    names = [key for key, _ in ev._COMPLEX_BANK]
    index = {(s, o): names[s * ev.ORIENTATIONS + o] for s in range(3) for o in range(4)}
    predicted = np.array(
        [_gaussian_energy_correlation(index[a], index[b]) for a, b in ev.ENERGY_PAIRS]
    )
    assert np.all(np.abs(mean - predicted) <= N_SE * se + 0.01)  # + O(1/n) estimator bias
    # negative control: a wrong pairing rule (covariances not squared) is rejected
    wrong = np.array(
        [np.sqrt(abs(_gaussian_energy_correlation(index[a], index[b]))) for a, b in ev.ENERGY_PAIRS]
    )
    assert np.any(np.abs(mean - wrong) > N_SE * se + 0.01)


def test_brick_is_told_from_its_phase_randomised_surrogates(brick128):
    """The point of the new statistics: on the brick (oriented edges) the surrogates, which
    have the crop's power spectrum, are far in band kurtosis where another crop is near, while
    the spectrum distance cannot tell them apart (it is below another crop's)."""
    train, other = brick128[:, 32:96, 32:96], brick128[:, :64, :64]
    surrogates = ev.phase_randomised(train, 4, seed=3)
    kurt_sur = np.mean([ev.kurtosis_distance(s, train) for s in surrogates])
    spec_sur = np.mean([ev.spectrum_distance(s, train) for s in surrogates])
    assert kurt_sur > 2 * ev.kurtosis_distance(other, train)
    assert spec_sur < ev.spectrum_distance(other, train)


@pytest.mark.parametrize(
    "name", ["kurtosis_distance", "energy_correlation_distance", "relative_phase_distance"]
)
def test_higher_order_distances_are_zero_on_identical_images_and_symmetric(brick128, name):
    a, b = brick128[:, :64, :64], brick128[:, 64:128, 64:128]
    distance = getattr(ev, name)
    assert distance(a, a) == 0.0
    assert distance(a, b) == distance(b, a) > 0


def _parts(rho):
    return np.stack([rho.real, rho.imag])


def test_relative_phase_is_odd_in_the_image_and_blind_to_contrast(brick128):
    """rho(-I) = -rho(I): the fine band flips sign and the doubled coarse band does not; and
    rho(a I + b) = rho(I) for a > 0 (zero-mean kernels, normalised correlation). Both are
    the same sums computed again: EXACT."""
    x = brick128[0, :64, :64]
    rho = ev.relative_phases(x)
    assert np.abs(rho).max() > 0.5  # the bright mortar lines align the phases of all scales
    assert_close(_parts(ev.relative_phases(-x)), _parts(-rho))
    assert_close(_parts(ev.relative_phases(3 * x + 40)), _parts(rho))


def test_relative_phase_of_a_bright_line_is_real_and_positive_and_a_dark_one_negative():
    """A line across a band's direction: the fine response and the doubled coarse one turn
    together (both phases advance by 2 pi u / (3 sigma_fine) with the distance u from the line),
    so rho is real and positive, and a dark line (the negative image) gives -rho."""
    image = np.zeros((64, 64))
    image[:, 32] = 255.0  # a vertical line: the 0-degree bands vary along x, across it
    rho = ev.relative_phases(image).reshape(len(ev.GABOR_SIGMAS) - 1, ev.ORIENTATIONS)[:, 0]
    assert np.all(rho.real > 0.5) and np.all(np.abs(rho.imag) < 0.05 * rho.real)
    dark = ev.relative_phases(-image).reshape(len(ev.GABOR_SIGMAS) - 1, ev.ORIENTATIONS)[:, 0]
    assert np.all(dark.real < -0.5)


def test_relative_phase_of_gaussian_fields_is_zero():
    """A Gaussian field is as likely as its negative, so E[rho] = 0 whatever its spectrum:
    white noise and a smoothed (correlated) field, 24 draws each, within N_SE standard errors
    estimated from the same draws."""
    white = _draws(lambda r, s: r.standard_normal(s), seed=2)
    kernel = np.outer(*2 * [np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)])
    smooth = [
        fftconvolve(x, kernel, mode="same")
        for x in _draws(lambda r, s: r.standard_normal(s), seed=3)
    ]
    for draws in (white, smooth):
        values = np.array([_parts(ev.relative_phases(x)) for x in draws])
        mean, se = values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(len(values))
        assert np.all(np.abs(mean) <= N_SE * se)
    # negative control: bright lines on noise (not sign-symmetric) are rejected as Gaussian
    lines = [x + 6.0 * (np.arange(96) % 12 == 0)[None, :] for x in white]
    values = np.array([_parts(ev.relative_phases(x)) for x in lines])
    mean, se = values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(len(values))
    assert np.any(np.abs(mean) > N_SE * se)


def test_border_contrast_of_noise_and_of_a_damped_frame():
    """White noise is stationary: the 4-pixel ring's std over the inside's is 1 up to sampling
    error (ring 960 and inside 3136 pixels: relative std errors sqrt(1/(2 n)), 2.3% and 1.3%,
    so 5 standard errors of the ratio is 0.13). Damping the ring by 1/2 halves it exactly."""
    x = np.random.default_rng(4).standard_normal((64, 64))
    assert abs(ev.border_contrast(x) - 1) < 0.13
    damped = x.copy()
    ring = np.ones((64, 64), dtype=bool)
    ring[4:60, 4:60] = False
    damped[ring] *= 0.5
    assert abs(ev.border_contrast(damped) - 0.5 * ev.border_contrast(x)) < 1e-12
    with pytest.raises(ValueError, match="larger than 9 pixels"):
        ev.border_contrast(np.zeros((9, 9)))
