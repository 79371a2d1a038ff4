"""Objective texture statistics: how far a synthesised image is from the training texture.

The model's own diagnostic, the moment mismatch of Eqs. (7.3)-(7.4), measures the
statistics the ConvNet was fitted to, so it cannot tell whether the fit is a good
texture. The distances here are independent of the model and cheap; they compare three
families of statistics that a texture model should reproduce:

* :func:`marginal_distance`: the pixel-intensity histogram (first order);
* :func:`spectrum_distance`: the power spectrum in log-spaced frequency bands and
  orientation sectors (second order), which keeps scale and orientation;
* :func:`filter_response_distance`: histograms of responses to a fixed bank of Gabor and
  Laplacian-of-Gaussian filters (the FRAME statistics, Zhu, Wu & Mumford 1998, that the
  generative ConvNet descends from, with learned filters in place of fixed ones);
* :func:`kurtosis_distance`, :func:`energy_correlation_distance` and
  :func:`relative_phase_distance`: higher-order statistics (the kurtosis of oriented
  band-pass responses, the correlations of band energies across orientation and scale, and
  the coherence of phases across scales, after Portilla & Simoncelli 2000) that a field
  with the right power spectrum and random phases (:func:`phase_randomised`) does not
  have: the baseline that tells "captures the spectrum" from "captures the texture".

:func:`texture_report` averages them over a set of samples and over comparison sets
(white noise of the same mean and standard deviation, other crops of the same texture) so
that a number can be read against a floor and a ceiling.

Conventions, shared by all functions:

* an image is an array ``(H, W)`` (gray) or ``(C, H, W)``, intensities in ``[0, 255]``
  (nothing is clipped: a sample outside the range is measured as it is); arrays of a
  device backend (CuPy) are copied to the host first;
* colour (``C > 1``): every statistic is computed **per channel** and the distances are
  averaged over channels; both images must have the same number of channels, while their
  heights and widths may differ (all statistics are normalised per pixel);
* everything is deterministic (no randomness except :func:`matched_noise` and
  :func:`phase_randomised`, which take a seed).

This module analyses host images, so it is allowed to import NumPy (see tests/test_backend.py).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve
from scipy.stats import wasserstein_distance

from refimpl.backend import to_numpy

GABOR_SIGMAS = (1.0, 2.0, 4.0)
"""Envelope widths (pixels) of the filter bank: three scales an octave apart."""

ORIENTATIONS = 4
"""Gabor orientations per scale: 0, 45, 90 and 135 degrees."""

EPS = 1e-12


# --- images -----------------------------------------------------------------------------------


def as_channels(image) -> np.ndarray:
    """``(H, W)`` or ``(C, H, W)`` -> float64 ``(C, H, W)``; a clear error for anything else."""
    array = np.asarray(to_numpy(image), dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(
            f"expected an image (H, W) or (C, H, W); got an array of shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("image has NaN or infinite values")
    return array


def as_image_list(images) -> list:
    """A set of images -> a list of ``(C, H, W)`` arrays.

    Accepts a 4-D array ``(M, C, H, W)``, a 3-D array read as ``M`` gray images ``(H, W)``,
    or a list of images ``(H, W)`` / ``(C, H, W)``.
    """
    if not isinstance(images, (list, tuple)):
        images = to_numpy(images)  # one transfer for a device batch, not one per image
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise ValueError(f"expected images (M, C, H, W) or (M, H, W); got shape {images.shape}")
        return [as_channels(x) for x in images]
    return [as_channels(x) for x in images]


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_channels(a), as_channels(b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"images have {a.shape[0]} and {b.shape[0]} channels; compare like with like"
        )
    return a, b


def matched_noise(image, count: int, seed: int = 0) -> np.ndarray:
    """Gaussian white noise ``(count, C, H, W)`` with ``image``'s per-channel mean and std.

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


# --- 2. second order: the oriented power spectrum ------------------------------------------------

RADIAL_BANDS = 6
"""Log-spaced radial frequency bands of :func:`spectrum_distance`, 1.5 cycles/image to Nyquist."""

SECTORS = 4
"""Orientation sectors of :func:`spectrum_distance`, centred at 0, 45, 90 and 135 degrees."""


def periodic_component(channel) -> np.ndarray:
    """The periodic component of one channel ``(H, W)`` (Moisan's periodic + smooth decomposition).

    An image is not periodic, and its discrete Fourier transform sees the jumps between
    opposite borders as edges: a cross of spurious power along the frequency axes. Moisan
    (2011) writes ``I = P + S`` with ``S`` the smooth image whose Laplacian is the border
    jump image ``V`` (``V = I(opposite border) - I(border)`` on the border pixels, 0 inside):

    .. math::  \\hat S(q, r) = \\frac{\\hat V(q, r)}{2\\cos(2\\pi q / H) + 2\\cos(2\\pi r / W) - 4},
               \\qquad \\hat S(0, 0) = 0

    and ``P = I - S`` is periodic (no border jumps) with the same mean and the same texture.
    Unlike a window, it does not blur the spectrum.
    """
    u = np.asarray(channel, dtype=np.float64)
    h, w = u.shape
    v = np.zeros_like(u)
    v[0, :] += u[-1, :] - u[0, :]
    v[-1, :] += u[0, :] - u[-1, :]
    v[:, 0] += u[:, -1] - u[:, 0]
    v[:, -1] += u[:, 0] - u[:, -1]
    denominator = (
        2 * np.cos(2 * np.pi * np.fft.fftfreq(h))[:, None]
        + 2 * np.cos(2 * np.pi * np.fft.fftfreq(w))[None, :]
        - 4
    )
    denominator[0, 0] = 1.0
    smooth = np.fft.fft2(v) / denominator
    smooth[0, 0] = 0.0
    return u - np.real(np.fft.ifft2(smooth))


def oriented_spectrum(channel) -> np.ndarray:
    """``log10`` of the fraction of power in each radial band x orientation sector.

    Returns ``(RADIAL_BANDS, SECTORS)``. With ``P`` the :func:`periodic_component` of the channel
    minus its mean and ``|F P(f)|^2`` its power spectrum at frequency ``f = (f_y, f_x)`` in cycles
    per pixel:

    .. math::

        s(j, k) = \\log_{10} \\frac{\\operatorname{mean}_{f \\in B_j \\cap O_k}
                                  |\\mathcal F P(f)|^2}{\\sum_f |\\mathcal F P(f)|^2}

    where the bands ``B_j`` split ``1.5 / n <= |f| < 0.5`` (``n = min(H, W)``; from 1.5 cycles
    per image to Nyquist) into :data:`RADIAL_BANDS` log-spaced rings (factor ~1.66 each, for
    ``n = 64``) and the sectors ``O_k`` split the orientation ``atan2(f_y, f_x) mod 180``
    into :data:`SECTORS` sectors centred at 0, 45, 90, 135 degrees (sector 0, ``f`` along
    x, holds the power of vertical structures). Dividing by the total power (the variance,
    up to a constant) makes it contrast-free. A constant image gives a flat ``s``.
    """
    x = np.asarray(channel, dtype=np.float64)
    h, w = x.shape
    n = min(h, w)
    if n < 16:
        raise ValueError(f"the oriented spectrum needs images of at least 16x16; got {h}x{w}")
    power = np.abs(np.fft.fft2(periodic_component(x - x.mean()))) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    radius = np.hypot(fy, fx)
    angle = np.mod(np.arctan2(fy, fx), np.pi)
    sector = np.floor(np.mod(angle + np.pi / (2 * SECTORS), np.pi) / (np.pi / SECTORS)).astype(int)
    band = np.searchsorted(np.geomspace(1.5 / n, 0.5, RADIAL_BANDS + 1), radius, side="right") - 1
    total = power.sum()
    if total <= EPS:
        return np.zeros((RADIAL_BANDS, SECTORS))
    table = np.empty((RADIAL_BANDS, SECTORS))
    for j in range(RADIAL_BANDS):
        for k in range(SECTORS):
            table[j, k] = power[(band == j) & (sector == k)].mean() / total
    return np.log10(np.maximum(table, EPS))


def spectrum_distance(a, b) -> float:
    """Mean absolute difference of the :func:`oriented_spectrum` of ``a`` and ``b``, in decades.

    .. math::  D_2(a, b) = \\frac{1}{J K} \\sum_{j, k} |s_a(j, k) - s_b(j, k)|

    over ``J = 6`` radial bands and ``K = 4`` orientation sectors; 0.3 means the power in a
    band is off by a factor ``10^0.3 = 2`` on average. Second-order statistics only (the
    power spectrum is the Fourier transform of the autocorrelation); contrast is left to
    :func:`marginal_distance`.

    Why this form (measured on the bundled textures at the preset's scale, 64 x 64 crops of
    the x4 block-averaged images; "ratio" = distance of matched white noise to the centre
    crop / mean distance between disjoint quadrants, brick, grass, gravel):

    * the normalised autocorrelation over lags up to 16 px separates nothing (ratios
      1.0, 0.9, 1.0): grass and gravel decorrelate within a few pixels, so most lags
      carry only estimation noise, which dominates the mean;
    * the radially averaged log power spectrum separates grass and gravel (~4-5) but not
      brick (1.2-1.3): radial averaging discards orientation, and brick is above all
      oriented (vertical bricks whose tilt changes across the image);
    * log-spaced bands weight every scale alike (linear bins put most weight on the
      highest frequencies), and orientation sectors keep anisotropy: ratios 2.3, 3.3, 3.5;
    * the periodic + smooth decomposition removes the border cross without a window's blur.

    Symmetric, 0 for identical images; blind to the phases (where structures are), not to
    shuffling pixels (which whitens the spectrum). Averaged over channels.
    """
    a, b = _pair(a, b)
    return float(
        np.mean(
            [np.mean(np.abs(oriented_spectrum(ca) - oriented_spectrum(cb))) for ca, cb in zip(a, b)]
        )
    )


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
            bank.append(
                (f"gabor-cos s{sigma:g} {degrees}", _zero_mean_unit_norm(envelope * np.cos(phase)))
            )
            bank.append(
                (f"gabor-sin s{sigma:g} {degrees}", _zero_mean_unit_norm(envelope * np.sin(phase)))
            )
        r2 = x * x + y * y
        log = (r2 - 2 * sigma * sigma) / sigma**4 * np.exp(-r2 / (2 * sigma * sigma))
        bank.append((f"LoG s{sigma:g}", _zero_mean_unit_norm(log)))
    return bank


_BANK = filter_bank()


def filter_responses(channel) -> list:
    """Responses of one channel ``(H, W)`` to each filter of :func:`filter_bank`, as 1-D arrays.

    ``R_k = (I * g_k)`` restricted to the "valid" positions where the kernel lies inside the
    image (no padding, so the border adds no artificial edges); the largest kernel is 25 x 25,
    so a 64 x 64 image gives 40 x 40 responses at the coarsest scale.
    """
    x = np.asarray(channel, dtype=np.float64)
    largest = max(k.shape[0] for _, k in _BANK)
    if min(x.shape) < largest:
        raise ValueError(
            f"filter responses need images of at least {largest}x{largest}; got {x.shape}"
        )
    return [fftconvolve(x, kernel, mode="valid").ravel() for _, kernel in _BANK]


def _filter_distance(resp_a: list, resp_b: list, scales) -> float:
    return float(
        np.mean(
            [
                wasserstein_distance(ra, rb) / max(s, EPS)
                for ra, rb, s in zip(resp_a, resp_b, scales)
            ]
        )
    )


def filter_response_distance(a, b, reference=None) -> float:
    """FRAME-style distance: the mean normalised W1 distance of the filter-response histograms.

    .. math::  D_F(a, b) = \\frac{1}{K} \\sum_{k=1}^{K}
               \\frac{W_1\\big(\\mathrm{hist}(a * g_k), \\mathrm{hist}(b * g_k)\\big)}
                    {\\mathrm{std}(r * g_k)}

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


# --- 4. beyond the spectrum: phase-randomised surrogates and higher-order statistics ---------


def phase_randomised(image, count: int, seed: int = 0) -> np.ndarray:
    """``count`` surrogates of ``image``: its power spectrum, random phases. ``(count, C, H, W)``.

    Per channel, with ``P`` the :func:`periodic_component`, ``m`` its mean, ``F`` the 2-D DFT
    and ``Z`` a white-noise image drawn from ``seed``::

        S = m + F^-1( |F(P - m)| * FZ / |FZ| )

    The phases of a real white-noise image are Hermitian-symmetric, so ``S`` is real, and
    ``|F(S - m)| = |F(P - m)|`` exactly: the surrogate has the texture's power spectrum (and
    so its autocorrelation) and nothing else; it is close to a Gaussian field with that
    spectrum. A texture model that captures only second-order statistics produces images
    like these; the statistics below tell them from the real texture.
    """
    x = as_channels(image)
    rng = np.random.default_rng(seed)
    out = np.empty((int(count), *x.shape))
    amplitude = []
    for c in x:
        p = periodic_component(c)
        amplitude.append((p.mean(), np.abs(np.fft.fft2(p - p.mean()))))
    for n in range(int(count)):
        for k, (mean, amp) in enumerate(amplitude):
            noise = np.fft.fft2(rng.standard_normal(amp.shape))
            phase = noise / np.maximum(np.abs(noise), EPS)
            out[n, k] = mean + np.real(np.fft.ifft2(amp * phase))
    return out


def _complex_bank() -> list:
    """``[((sigma, degrees), kernel), ...]``: the Gabor pairs of :func:`filter_bank` as complex
    kernels ``g_cos + i g_sin`` (scale-major, then orientation)."""
    named = dict(_BANK)
    bank = []
    for sigma in GABOR_SIGMAS:
        for k in range(ORIENTATIONS):
            degrees = round(180 * k / ORIENTATIONS)
            even, odd = (
                named[f"gabor-cos s{sigma:g} {degrees}"],
                named[f"gabor-sin s{sigma:g} {degrees}"],
            )
            bank.append(((sigma, degrees), even + 1j * odd))
    return bank


_COMPLEX_BANK = _complex_bank()


def complex_bands(channel) -> np.ndarray:
    """Complex Gabor responses ``z = I * (g_cos + i g_sin)`` of every band on one grid.

    Returns ``(scales, orientations, h, w)`` complex.

    All bands on one common grid: the positions where the largest kernel lies inside the
    image (the finer bands are cropped to the same centred window), so that responses of
    different bands at one index belong to the same image position.
    """
    x = np.asarray(channel, dtype=np.float64)
    largest = max(k.shape[0] for _, k in _COMPLEX_BANK)
    if min(x.shape) < largest:
        raise ValueError(
            f"band statistics need images of at least {largest}x{largest}; got {x.shape}"
        )
    h, w = x.shape[0] - largest + 1, x.shape[1] - largest + 1
    out = np.empty((len(GABOR_SIGMAS), ORIENTATIONS, h, w), dtype=np.complex128)
    for i, (_, kernel) in enumerate(_COMPLEX_BANK):
        full = fftconvolve(x, kernel, mode="valid")
        top, left = (full.shape[0] - h) // 2, (full.shape[1] - w) // 2
        out[i // ORIENTATIONS, i % ORIENTATIONS] = full[top : top + h, left : left + w]
    return out


def band_energies(channel) -> np.ndarray:
    """Local energies ``|I * g_{s,o}|^2`` of the complex Gabor bands (:func:`complex_bands`).

    Returns ``(scales, orientations, h, w)``.
    """
    return np.abs(complex_bands(channel)) ** 2


def relative_phases(channel) -> np.ndarray:
    """Cross-scale phase coherence of each orientation: ``(scales - 1) * orientations`` complex.

    For a band ``z_f`` and the band an octave coarser at the same orientation, ``z_c``, whose
    phase advances half as fast, the coarse response with its phase doubled,
    ``d = z_c^2 / |z_c|``, oscillates like ``z_f``, and

        rho = E[z_f conj(d)] / sqrt(E|z_f|^2 E|d|^2)

    (Portilla & Simoncelli 2000, their relative-phase statistics) is near 1 in modulus where
    edges and lines align the phases of all scales, and 0 for a Gaussian field whatever its
    spectrum: flipping the sign of the image flips ``z_f`` and not ``d``, so ``rho(-I) =
    -rho(I)``, and a Gaussian field is as likely as its negative. A phase-randomised
    surrogate therefore has ``rho ~ 0`` (up to sampling error) while a texture of edges
    does not.
    """
    z = complex_bands(channel)
    out = np.empty((len(GABOR_SIGMAS) - 1, ORIENTATIONS), dtype=np.complex128)
    for s in range(len(GABOR_SIGMAS) - 1):
        for o in range(ORIENTATIONS):
            fine, coarse = z[s, o], z[s + 1, o]
            modulus = np.abs(coarse)
            doubled = np.where(modulus > EPS, coarse * coarse / np.maximum(modulus, EPS), 0)
            norm = np.sqrt(np.mean(np.abs(fine) ** 2) * np.mean(np.abs(doubled) ** 2))
            out[s, o] = np.mean(fine * np.conj(doubled)) / norm if norm > EPS else 0.0
    return out.ravel()


def response_kurtosis(channel) -> np.ndarray:
    """Kurtosis ``E[(r - m)^4] / var(r)^2`` of the even Gabor responses ``r``.

    Returns ``(scales, orientations)``.

    3 for a Gaussian field (whatever its spectrum), more for a texture made of edges and
    blobs (sparse, heavy-tailed responses). A linear filter of independent pixels with
    excess kurtosis ``k`` has excess kurtosis ``k sum g^4 / (sum g^2)^2`` (fourth cumulants
    add), which the tests use as a known answer. Responses at the "valid" positions.
    """
    x = np.asarray(channel, dtype=np.float64)
    out = np.empty((len(GABOR_SIGMAS), ORIENTATIONS))
    for i, (_, kernel) in enumerate(_COMPLEX_BANK):
        r = fftconvolve(x, kernel.real, mode="valid").ravel()
        r = r - r.mean()
        var = (r * r).mean()
        out[i // ORIENTATIONS, i % ORIENTATIONS] = (r**4).mean() / var**2 if var > EPS else 3.0
    return out


ENERGY_PAIRS = tuple(
    [
        ((s, o), (s, (o + 1) % ORIENTATIONS))
        for s in range(len(GABOR_SIGMAS))
        for o in range(ORIENTATIONS)
    ]
    + [((s, o), (s + 1, o)) for s in range(len(GABOR_SIGMAS) - 1) for o in range(ORIENTATIONS)]
)
"""Band pairs whose energies are correlated: neighbouring orientations at one scale, and one
orientation at neighbouring scales (the joint statistics of Portilla & Simoncelli, 2000)."""


def energy_correlations(channel) -> np.ndarray:
    """Correlation over positions of the energies of the :data:`ENERGY_PAIRS` bands: ``(pairs,)``.

    For a Gaussian field it is fixed by the filters' overlap alone (Isserlis: with
    ``a = a_r + i a_i``, ``cov(|a|^2, |b|^2) = 2 sum_{u, v in r, i} cov(a_u, b_v)^2``); an edge
    excites neighbouring orientations and scales together, so real textures correlate more.
    """
    energy = band_energies(channel)
    out = np.empty(len(ENERGY_PAIRS))
    for n, (a, b) in enumerate(ENERGY_PAIRS):
        ea, eb = energy[a].ravel(), energy[b].ravel()
        ea, eb = ea - ea.mean(), eb - eb.mean()
        denom = np.sqrt((ea * ea).sum() * (eb * eb).sum())
        out[n] = (ea * eb).sum() / denom if denom > EPS else 0.0
    return out


def kurtosis_distance(a, b) -> float:
    """Mean over the 12 Gabor bands of ``|log k_a - log k_b|`` (:func:`response_kurtosis`).

    Logarithms, because kurtosis is a ratio (3 for a Gaussian, 10 and more for sparse
    responses); 0.1 means the kurtoses differ by about 10 %. Averaged over channels.
    """
    a, b = _pair(a, b)
    return float(
        np.mean(
            [
                np.mean(np.abs(np.log(response_kurtosis(ca)) - np.log(response_kurtosis(cb))))
                for ca, cb in zip(a, b)
            ]
        )
    )


def relative_phase_distance(a, b) -> float:
    """Mean over band pairs of ``|rho_a - rho_b|`` (:func:`relative_phases`, complex modulus);
    averaged over channels. ``|rho| <= 1``; a Gaussian field has ``rho ~ 0``."""
    a, b = _pair(a, b)
    return float(
        np.mean(
            [np.mean(np.abs(relative_phases(ca) - relative_phases(cb))) for ca, cb in zip(a, b)]
        )
    )


def energy_correlation_distance(a, b) -> float:
    """Mean over :data:`ENERGY_PAIRS` of ``|c_a - c_b|`` (:func:`energy_correlations`); averaged
    over channels. Correlations are in [-1, 1]; 0.1 is a tenth of their range."""
    a, b = _pair(a, b)
    return float(
        np.mean(
            [
                np.mean(np.abs(energy_correlations(ca) - energy_correlations(cb)))
                for ca, cb in zip(a, b)
            ]
        )
    )


def border_contrast(image, width: int = 4) -> float:
    """``std(ring) / std(inside)``: the contrast of the ``width``-pixel frame against the rest.

    About 1 for a stationary texture (every position alike); below 1 where the border is
    flatter than the inside, as in samples of a zero-padded model. Averaged over channels.
    """
    x = as_channels(image)
    h, w = x.shape[1:]
    if min(h, w) <= 2 * width + 1:
        raise ValueError(f"border_contrast needs images larger than {2 * width + 1} pixels a side")
    ring = np.ones((h, w), dtype=bool)
    ring[width : h - width, width : w - width] = False
    ratios = [c[ring].std() / c[~ring].std() if c[~ring].std() > EPS else 1.0 for c in x]
    return float(np.mean(ratios))


# --- the report ---------------------------------------------------------------------------------

METRICS = ("marginal", "spectrum", "filters", "kurtosis", "energy", "phase")
"""Keys of the distances in :func:`texture_report`: marginal W1 (intensity units), oriented
log-spectrum distance (decades), filter-response distance (training response stds), and the
three higher-order distances that phase-randomised surrogates fail: band kurtosis (log
ratio), band-energy correlations (correlation units) and cross-scale relative phase
(modulus of a complex correlation)."""


class _Reference:
    """The training image's statistics, computed once for many comparisons."""

    def __init__(self, image):
        self.image = as_channels(image)
        self.spectra = [oriented_spectrum(c) for c in self.image]
        self.responses = [filter_responses(c) for c in self.image]
        self.scales = [[resp.std() for resp in channel] for channel in self.responses]
        self.kurtosis = [np.log(response_kurtosis(c)) for c in self.image]
        self.energy = [energy_correlations(c) for c in self.image]
        self.phase = [relative_phases(c) for c in self.image]

    def distances(self, image) -> dict:
        x, _ = _pair(image, self.image)
        marginal = [wasserstein_distance(c.ravel(), t.ravel()) for c, t in zip(x, self.image)]
        spectrum = [np.mean(np.abs(oriented_spectrum(c) - s)) for c, s in zip(x, self.spectra)]
        filters = [
            _filter_distance(filter_responses(c), resp, scales)
            for c, resp, scales in zip(x, self.responses, self.scales)
        ]
        kurtosis = [
            np.mean(np.abs(np.log(response_kurtosis(c)) - k)) for c, k in zip(x, self.kurtosis)
        ]
        energy = [np.mean(np.abs(energy_correlations(c) - e)) for c, e in zip(x, self.energy)]
        phase = [np.mean(np.abs(relative_phases(c) - r)) for c, r in zip(x, self.phase)]
        return dict(
            marginal=float(np.mean(marginal)),
            spectrum=float(np.mean(spectrum)),
            filters=float(np.mean(filters)),
            kurtosis=float(np.mean(kurtosis)),
            energy=float(np.mean(energy)),
            phase=float(np.mean(phase)),
        )


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


def texture_report(train, samples, references=None) -> dict:
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
    reference = _Reference(train)
    rows = {"samples": _row(reference, samples)}
    for name, images in (references or {}).items():
        if name in rows:
            raise ValueError(f"comparison name {name!r} is taken")
        rows[name] = _row(reference, images)
    return rows
