"""Objective texture statistics: how far a synthesised image is from the training texture.

The model's own diagnostic, the moment mismatch of Eqs. (7.3)-(7.4), measures the
statistics the ConvNet was fitted to, so it cannot tell whether the fit is a good
texture. The distances here are independent of the model and cheap; they compare three
families of statistics that a texture model should reproduce:

* :func:`marginal_distance`: the pixel-intensity histogram (first order);
* :func:`spectrum_distance`: the normalised autocorrelation (second order; the Fourier
  pair of the power spectrum), which keeps orientation and periodicity;
* :func:`filter_response_distance`: histograms of responses to a fixed bank of Gabor and
  Laplacian-of-Gaussian filters (the FRAME statistics, Zhu, Wu & Mumford 1998, that the
  generative ConvNet descends from, with learned filters in place of fixed ones).

:func:`texture_report` averages them over a set of samples and over comparison sets
(white noise of the same mean and standard deviation, other crops of the same texture) so
that a number can be read against a floor and a ceiling.

Conventions, shared by all functions:

* an image is a host array ``(H, W)`` (gray) or ``(C, H, W)``, intensities in ``[0, 255]``
  (nothing is clipped: a sample outside the range is measured as it is);
* colour (``C > 1``): every statistic is computed **per channel** and the distances are
  averaged over channels; both images must have the same number of channels, while their
  heights and widths may differ (all statistics are normalised per pixel);
* everything is deterministic (no randomness except :func:`matched_noise`, which takes a seed).

This module analyses host images, so it is allowed to import NumPy (see tests/test_backend.py).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve
from scipy.stats import wasserstein_distance

MAX_LAG = 16
"""Largest lag (pixels, in each direction) of the autocorrelation in :func:`spectrum_distance`."""

GABOR_SIGMAS = (1.0, 2.0, 4.0)
"""Envelope widths (pixels) of the filter bank: three scales an octave apart."""

ORIENTATIONS = 4
"""Gabor orientations per scale: 0, 45, 90 and 135 degrees."""

EPS = 1e-12


# --- images -----------------------------------------------------------------------------------


def as_channels(image) -> np.ndarray:
    """``(H, W)`` or ``(C, H, W)`` -> float64 ``(C, H, W)``; a clear error for anything else."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"expected an image (H, W) or (C, H, W); got an array of shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("image has NaN or infinite values")
    return array


def as_image_list(images) -> list:
    """A set of images -> a list of ``(C, H, W)`` arrays.

    Accepts a 4-D array ``(M, C, H, W)``, a 3-D array read as ``M`` gray images ``(H, W)``,
    or a list of images ``(H, W)`` / ``(C, H, W)``.
    """
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise ValueError(f"expected images (M, C, H, W) or (M, H, W); got shape {images.shape}")
        return [as_channels(x) for x in images]
    return [as_channels(x) for x in images]


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_channels(a), as_channels(b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"images have {a.shape[0]} and {b.shape[0]} channels; compare like with like")
    return a, b


def matched_noise(image, count: int, seed: int = 0) -> np.ndarray:
    """``count`` Gaussian white-noise images ``(count, C, H, W)`` with ``image``'s per-channel mean and std.

    The floor of the comparison: right marginal mean and variance, no spatial structure.
    Not clipped to ``[0, 255]``.
    """
    x = as_channels(image)
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    rng = np.random.default_rng(seed)
    return mean + std * rng.standard_normal((count, *x.shape))


# --- 1. marginal ------------------------------------------------------------------------------


def marginal_distance(a, b) -> float:
    """1-Wasserstein distance between the pixel-intensity distributions of ``a`` and ``b``.

    .. math::  W_1(p_a, p_b) = \\int |F_a(t) - F_b(t)| \\, dt

    with ``F`` the empirical CDFs of the pixel values (``scipy.stats.wasserstein_distance``),
    i.e. the mean absolute difference between matched quantiles, in intensity units (0..255).
    It ignores where pixels are: shuffling an image's pixels leaves it unchanged. A
    distance, symmetric, 0 for images with the same histogram. Averaged over channels.
    """
    a, b = _pair(a, b)
    return float(np.mean([wasserstein_distance(ca.ravel(), cb.ravel()) for ca, cb in zip(a, b)]))


# --- 2. second order: autocorrelation -----------------------------------------------------------


def autocorrelation(channel, max_lag: int = MAX_LAG) -> np.ndarray:
    """Normalised autocorrelation ``rho(dy, dx)`` of one channel ``(H, W)`` for ``|dy|, |dx| <= max_lag``.

    .. math::  \\rho(d) = \\frac{1}{N_d \\, v} \\sum_{x:\\, x, x+d \\in \\Omega}
               (I(x) - \\bar I)(I(x + d) - \\bar I), \\qquad
               v = \\frac{1}{|\\Omega|} \\sum_x (I(x) - \\bar I)^2

    where ``N_d = (H - |dy|)(W - |dx|)`` counts the pixel pairs at lag ``d`` inside the image
    (no periodic wrap-around: the sum is computed by FFT on a zero-padded copy). Returns an
    array ``(2 max_lag + 1, 2 max_lag + 1)`` with lag 0 in the centre, where ``rho = 1``. By
    Wiener-Khinchin it is the Fourier pair of the power spectrum divided by the variance:
    the same second-order information, contrast removed. A constant image gives ``rho = 0``
    off lag 0.
    """
    x = np.asarray(channel, dtype=np.float64)
    h, w = x.shape
    if max_lag >= min(h, w):
        raise ValueError(f"max_lag {max_lag} needs images larger than {max_lag} pixels; got {h}x{w}")
    x = x - x.mean()
    var = float(np.mean(x * x))
    lags = np.arange(-max_lag, max_lag + 1)
    rho = np.zeros((lags.size, lags.size))
    if var <= EPS:
        rho[max_lag, max_lag] = 1.0
        return rho
    shape = (h + max_lag, w + max_lag)
    spectrum = np.fft.rfft2(x, shape)
    sums = np.fft.irfft2(spectrum * spectrum.conj(), shape)  # sums[dy, dx] = sum_x x(p) x(p + d)
    sums = sums[np.ix_(lags % shape[0], lags % shape[1])]
    counts = np.outer(h - np.abs(lags), w - np.abs(lags))
    return sums / (counts * var)


def _autocorrelation_distance(rho_a: np.ndarray, rho_b: np.ndarray) -> float:
    off = np.ones(rho_a.shape, dtype=bool)
    off[rho_a.shape[0] // 2, rho_a.shape[1] // 2] = False  # lag 0 is 1 for every image
    return float(np.mean(np.abs(rho_a - rho_b)[off]))


def spectrum_distance(a, b, max_lag: int = MAX_LAG) -> float:
    """Mean absolute difference of the normalised autocorrelations, over lags ``0 < |d|_inf <= max_lag``.

    .. math::  D_2(a, b) = \\frac{1}{(2L+1)^2 - 1} \\sum_{0 < \\|d\\|_\\infty \\le L}
               |\\rho_a(d) - \\rho_b(d)|

    (see :func:`autocorrelation`; ``L = max_lag = 16`` by default, a quarter of a 64-pixel
    image and more than a brick of the bundled brick texture at the preset's scale).

    Why the autocorrelation rather than a radially averaged power spectrum: (1) it keeps
    orientation and periodicity (bricks are horizontal rows with a period; radial
    averaging discards exactly that); (2) it is computed in space over the pairs of pixels
    inside the image, so there is no leakage from the non-periodic image border and no
    window to choose; (3) it is bounded (``|rho| <= 1`` up to finite-sample effects) and
    dimensionless, so 0.1 reads as "correlations off by 0.1 on average"; (4) dividing by
    the variance makes it contrast-free, leaving contrast to :func:`marginal_distance`.
    Symmetric, 0 for identical images; white noise has ``rho ~ 0`` off lag 0, so its distance to a
    texture is about the texture's mean ``|rho|``. Averaged over channels.
    """
    a, b = _pair(a, b)
    return float(np.mean([_autocorrelation_distance(autocorrelation(ca, max_lag), autocorrelation(cb, max_lag))
                          for ca, cb in zip(a, b)]))


# --- 3. filter responses (FRAME) ----------------------------------------------------------------


def _grid(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    radius = int(np.ceil(3 * sigma))
    r = np.arange(-radius, radius + 1, dtype=np.float64)
    return np.meshgrid(r, r, indexing="ij")


def _zero_mean_unit_norm(kernel: np.ndarray) -> np.ndarray:
    kernel = kernel - kernel.mean()
    return kernel / np.linalg.norm(kernel)


def filter_bank() -> list:
    """The fixed filter bank: ``[(name, kernel), ...]``, 27 zero-mean unit-norm kernels.

    For each scale ``sigma`` in :data:`GABOR_SIGMAS` (1, 2, 4 px; kernels ``(6 sigma + 1)^2``):

    * Gabor pairs at :data:`ORIENTATIONS` orientations ``theta = 0, 45, 90, 135`` degrees,
      wavelength ``lambda = 3 sigma``, even (cos) and odd (sin) phase:
      ``g(y, x) = exp(-(x^2 + y^2) / (2 sigma^2)) cos|sin(2 pi u / lambda)``,
      ``u = x cos(theta) + y sin(theta)``;
    * a Laplacian of Gaussian ``(r^2 - 2 sigma^2) / sigma^4 exp(-r^2 / (2 sigma^2))`` (blobs).

    Every kernel has its mean subtracted (so a constant image responds 0 and the even
    Gabors do not see the mean intensity) and unit L2 norm (so that white noise of std
    ``s`` gives responses of std ``s`` for every filter).
    """
    bank = []
    for sigma in GABOR_SIGMAS:
        y, x = _grid(sigma)
        envelope = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
        for k in range(ORIENTATIONS):
            theta = np.pi * k / ORIENTATIONS
            u = x * np.cos(theta) + y * np.sin(theta)
            phase = 2 * np.pi * u / (3 * sigma)
            degrees = round(np.degrees(theta))
            bank.append((f"gabor-cos s{sigma:g} {degrees}", _zero_mean_unit_norm(envelope * np.cos(phase))))
            bank.append((f"gabor-sin s{sigma:g} {degrees}", _zero_mean_unit_norm(envelope * np.sin(phase))))
        r2 = x * x + y * y
        log = (r2 - 2 * sigma * sigma) / sigma**4 * np.exp(-r2 / (2 * sigma * sigma))
        bank.append((f"LoG s{sigma:g}", _zero_mean_unit_norm(log)))
    return bank


_BANK = filter_bank()


def filter_responses(channel) -> list:
    """Responses of one channel ``(H, W)`` to every filter of :func:`filter_bank`: a list of 1-D arrays.

    ``R_k = (I * g_k)`` restricted to the "valid" positions where the kernel lies inside the
    image (no padding, so the border adds no artificial edges); the largest kernel is 25 x 25,
    so a 64 x 64 image gives 40 x 40 responses at the coarsest scale.
    """
    x = np.asarray(channel, dtype=np.float64)
    largest = max(k.shape[0] for _, k in _BANK)
    if min(x.shape) < largest:
        raise ValueError(f"filter responses need images of at least {largest}x{largest}; got {x.shape}")
    return [fftconvolve(x, kernel, mode="valid").ravel() for _, kernel in _BANK]


def _filter_distance(resp_a: list, resp_b: list, scales) -> float:
    return float(np.mean([wasserstein_distance(ra, rb) / max(s, EPS)
                          for ra, rb, s in zip(resp_a, resp_b, scales)]))


def filter_response_distance(a, b, reference=None) -> float:
    """FRAME-style distance: mean over filters of the normalised W1 distance of the response histograms.

    .. math::  D_F(a, b) = \\frac{1}{K} \\sum_{k=1}^{K}
               \\frac{W_1\\big(\\mathrm{hist}(a * g_k), \\mathrm{hist}(b * g_k)\\big)}{\\mathrm{std}(r * g_k)}

    over the ``K = 27`` filters ``g_k`` of :func:`filter_bank` (Gabor pairs at 4 orientations and
    a Laplacian of Gaussian, at 3 scales), with ``r = reference``: the image whose response
    spread sets each filter's unit, by default ``b`` (call it as ``(sample, train)`` so that
    the unit is the training image's). A value of 0.1 means the response distributions are
    off by a tenth of the training image's response std on average. The FRAME model (Zhu,
    Wu, Mumford) matches exactly these marginal histograms of filter responses; the generative
    ConvNet matches the means of (rectified) responses of learned filters.

    Symmetric in ``a, b`` for a fixed ``reference`` (not under the default, which normalises
    by ``b``); 0 for identical images. Averaged over channels.
    """
    a, b = _pair(a, b)
    r = b if reference is None else _pair(a, reference)[1]
    values = []
    for ca, cb, cr in zip(a, b, r):
        scales = [resp.std() for resp in filter_responses(cr)]
        values.append(_filter_distance(filter_responses(ca), filter_responses(cb), scales))
    return float(np.mean(values))


# --- the report ---------------------------------------------------------------------------------

METRICS = ("marginal", "spectrum", "filters")
"""Keys of the three distances in :func:`texture_report`: marginal W1 (intensity units),
autocorrelation distance (dimensionless), filter-response distance (training response stds)."""


class _Reference:
    """The training image's statistics, computed once for many comparisons."""

    def __init__(self, image, max_lag: int):
        self.image = as_channels(image)
        self.max_lag = max_lag
        self.rho = [autocorrelation(c, max_lag) for c in self.image]
        self.responses = [filter_responses(c) for c in self.image]
        self.scales = [[resp.std() for resp in channel] for channel in self.responses]

    def distances(self, image) -> dict:
        x, _ = _pair(image, self.image)
        marginal = [wasserstein_distance(c.ravel(), t.ravel()) for c, t in zip(x, self.image)]
        spectrum = [_autocorrelation_distance(autocorrelation(c, self.max_lag), rho) for c, rho in zip(x, self.rho)]
        filters = [_filter_distance(filter_responses(c), resp, scales)
                   for c, resp, scales in zip(x, self.responses, self.scales)]
        return dict(marginal=float(np.mean(marginal)), spectrum=float(np.mean(spectrum)),
                    filters=float(np.mean(filters)))


def _row(reference: _Reference, images) -> dict:
    per_image = [reference.distances(x) for x in as_image_list(images)]
    if not per_image:
        raise ValueError("a comparison set has no images")
    row = dict(n=len(per_image))
    for metric in METRICS:
        values = np.array([d[metric] for d in per_image])
        row[metric] = float(values.mean())
        row[f"{metric}_std"] = float(values.std())
        row[f"{metric}_per_image"] = values.tolist()
    return row


def texture_report(train, samples, references=None, max_lag: int = MAX_LAG) -> dict:
    """Distances of ``samples`` and of each comparison set in ``references`` to the training image.

    Args:
        train: the training image ``(H, W)`` or ``(C, H, W)``.
        samples: the synthesised images (``(M, C, H, W)``, ``(M, H, W)`` gray, or a list).
        references: ``{name: images}``, comparison sets scored the same way, e.g.
            ``{"white noise": matched_noise(train, 16), "other crop": crops}``.

    Returns:
        ``{"samples": row, name: row, ...}`` (samples first, then ``references`` in order),
        where a row holds ``n`` (the number of images) and, for each metric in
        :data:`METRICS` (``marginal``: :func:`marginal_distance`; ``spectrum``:
        :func:`spectrum_distance`; ``filters``: :func:`filter_response_distance` normalised
        by ``train``), the mean over the row's images of their distance to ``train``, its
        standard deviation (``<metric>_std``) and the per-image values
        (``<metric>_per_image``). Lower is closer to the training texture.
    """
    reference = _Reference(train, max_lag)
    rows = {"samples": _row(reference, samples)}
    for name, images in (references or {}).items():
        if name in rows:
            raise ValueError(f"comparison name {name!r} is taken")
        rows[name] = _row(reference, images)
    return rows
