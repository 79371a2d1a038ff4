"""The exact distribution of a piecewise-linear model in one and two dimensions.

Z(w), piece masses and means, density, CDF and exact samples, from the line integrals of
:mod:`refimpl.exact.lines`.

For a piecewise-linear scoring function ``f`` and ``q = N(0, sigma^2 I)``, restrict the
unnormalised density ``exp(f(I)) q(I)`` to a line ``I = o + t d`` (``|d| = 1``). Between two
kinks (changes of the activation pattern) ``f(o + t d) = c0 + c1 t`` exactly (Eq. (6.8)), so

    exp(f) q  ~  exp(K - (t - mu)^2 / (2 sigma^2)),   mu = sigma^2 c1 - <o, d>,

a Gaussian in ``t`` truncated to the segment: its mass and mean are closed-form (normal
CDFs), with no discretisation error. Kinks are located by bisection on the activation
pattern, to 1e-13 of the line's length. Every piece is convex (see
:mod:`refimpl.convnet.pieces`), so it meets a line in one interval.

* D = 1: one line through 0 is the whole space. ``Z``, the pieces' masses and means, the
  CDF and exact samples follow; the end segments extend to +-infinity, so nothing is cut.
* D = 2: lines along the first axis at each height ``y``; the outer integral over ``y`` is
  adaptive Gauss-Kronrod (``scipy.integrate.quad_vec``) to ``rtol`` (default 1e-10).

Per-piece masses ``P(A)`` and means ``E[I | A]`` give what the checks need:
``E[delta_u I] = sum_A delta_u(A) P(A) E[I | A]``; and since ``df/dw`` is affine in ``I`` on
a piece, ``E[df/dw] = sum_A P(A) df/dw(E[I | A])`` exactly.

Host-only (SciPy), so this module imports NumPy. A model on a device backend (CuPy) is
copied to the host first (:func:`host_model`): the reference is the same model, computed
by SciPy on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate, stats

from refimpl.backend import get_namespace
from refimpl.exact.lines import LineModel, Segments, line_segments, log_diff_ndtr, log_phi


@dataclass
class ExactDistribution:
    """The exact distribution of a piecewise-linear generative model in D = 1 or 2.

    Attributes:
        log_Z: ``log Z(w) = log E_q[exp f(I; w)]``.
        keys: ``(P, units)`` activation patterns of the pieces with positive mass.
        probs: ``(P,)`` piece masses ``P(A)``, summing to 1.
        means: ``(P, D)`` conditional means ``E[I | A]``.
        segments: D = 1 only: the :class:`Segments` of the real line.
        strips: D = 2 only: horizontal strips ``(y0, y1, {piece: (left0, left1, right0, right1)})``
            between consecutive vertex heights; in a strip each piece meets a horizontal
            line in one interval whose ends move linearly with ``y`` (convexity).
    """

    line: LineModel
    log_Z: float
    keys: np.ndarray
    probs: np.ndarray
    means: np.ndarray
    radius: float
    segments: Segments | None = None
    strips: list | None = None

    @property
    def model(self):
        return self.line.model

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def log_density(self, points):
        """``log p(I)`` at flat points ``(M, D)``."""
        return (
            np.asarray(self.model.log_density_unnormalised(self.line.images(points))) - self.log_Z
        )

    def mean(self):
        """``E[I]``, ``(D,)``."""
        return self.probs @ self.means

    def unit_moments(self):
        """``(E[delta_u] (units,), E[delta_u I] (units, D))`` for every unit ``u``."""
        on = self.keys.astype(float)
        return self.probs @ on, (on * self.probs[:, None]).T @ self.means

    def expected_param_grads(self):
        """``E_w[df/dw] = sum_A P(A) df/dw(E[I | A])``, formatted like ``scoring.grad_params``."""
        total = None
        for p, m in zip(self.probs, self.means):
            g = _scale(self.model.scoring.grad_params(self.line.images(m[None])), p)
            total = g if total is None else _add(total, g)
        return total

    def piece_of(self, points):
        """Row index into ``keys`` of each flat point's piece (-1 if not listed)."""
        keys = self.line.keys(points)
        match = (keys[:, None, :] == self.keys[None]).all(axis=2)
        return np.where(match.any(axis=1), match.argmax(axis=1), -1)

    def cdf(self, x):
        """D = 1: ``P(I <= x)`` at points ``x (n,)``, exact (a mixture of truncated normals)."""
        seg = self._one_d()
        a, b = seg.standardised
        weights = np.exp(seg.log_mass - seg.log_mass.max())
        weights /= weights.sum()
        x = np.asarray(x, float)[:, None]
        parts = stats.truncnorm.cdf(x, a, b, loc=seg.mu, scale=seg.sigma)
        return parts @ weights

    def sample(self, n: int, rng, y_nodes: int = 400) -> np.ndarray:
        """``n`` exact draws ``(n, D)``.

        D = 1: pick a segment by its mass, draw its truncated normal. D = 2: pick a piece
        ``A`` by ``P(A)``; on ``A`` the density is ``N(s^2 B_A, s^2 I)`` truncated to ``A``
        (Theorem 1), whose ``y``-marginal within a strip is
        ``phi((y - mu_y)/s) [Phi((r(y) - mu_x)/s) - Phi((l(y) - mu_x)/s)]`` with linear ends
        ``l, r``: draw ``y`` by inverse CDF over ``y_nodes`` nodes per strip (error far below
        sampling noise), then ``x | y`` exactly from the truncated normal on ``[l(y), r(y)]``.
        """
        if self.segments is not None:
            seg = self.segments
            a, b = seg.standardised
            weights = np.exp(seg.log_mass - seg.log_mass.max())
            which = rng.choice(len(weights), size=n, p=weights / weights.sum())
            draws = stats.truncnorm.rvs(
                a[which], b[which], loc=seg.mu[which], scale=seg.sigma, random_state=rng
            )
            return draws[:, None]
        sigma = self.model.sigma
        pieces = rng.choice(len(self.probs), size=n, p=self.probs)
        out = np.empty((n, 2))
        for a in np.unique(pieces):
            rows = np.nonzero(pieces == a)[0]
            _, B = self.line.pieces(self.means[a : a + 1])
            out[rows] = _sample_piece(
                self.strips, int(a), sigma * sigma * B[0], sigma, len(rows), rng, y_nodes
            )
        return out

    def _one_d(self) -> Segments:
        if self.segments is None:
            raise ValueError("defined for D = 1 only")
        return self.segments


def _scale(grads, p):
    if isinstance(grads, list):
        return [_scale(g, p) for g in grads]
    return tuple(p * np.asarray(x) for x in grads)


def _add(a, b):
    if isinstance(a, list):
        return [_add(x, y) for x, y in zip(a, b)]
    return tuple(x + y for x, y in zip(a, b))


def default_radius(line: LineModel, dim: int, sigma: float) -> float:
    """A radius beyond which the density is negligible: ``sigma^2 L + 15 sigma``.

    ``L = max |df/dI| = max |B|``. ``B`` takes finitely many values; the unbounded pieces
    show on a circle of large radius, the bounded ones near the origin, so probing rays
    densely out to 30 sigma and then at 100 and 1000 sigma finds ``L``. Beyond
    ``sigma^2 L + 15 sigma`` the density is below ``e^-100`` of its peak.
    """
    if dim == 1:
        rays = np.array([[-1.0], [1.0]])
    else:
        angles = np.linspace(0, 2 * np.pi, 721)[:-1]
        rays = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    radii = np.concatenate([np.linspace(0, 30, 151), [100, 1000]]) * sigma
    points = (radii[:, None, None] * rays[None]).reshape(-1, dim)
    _, B = line.pieces(points)
    return sigma * sigma * float(np.linalg.norm(B, axis=1).max()) + 15 * sigma


def host_model(model):
    """``model`` itself on the NumPy backend, else a copy of it there (the explicit transfer)."""
    return model if model.xp is np else model.to(get_namespace("numpy"))


def exact_distribution(
    model, event_shape=None, radius: float | None = None, rtol: float = 1e-10
) -> ExactDistribution:
    """Pieces, masses, means and ``log Z`` of a piecewise-linear model in D = 1 or 2.

    Args:
        model: a :class:`~refimpl.models.GenerativeModel` with a piecewise-linear scoring
            function (ReLU/linear layers); on a device backend it is copied to the host,
            and the result's ``model`` is that host copy.
        event_shape: one image's shape for the scoring function: ``(D,)`` for a prototype
            model (the default, from ``model.scoring.dim``), ``(2, 1, 1)`` for a ConvNet on
            2-channel 1x1 images, etc.
        radius: integration radius (default :func:`default_radius`); a smaller one would
            cut off mass and is refused, as is a non-positive or non-finite one.
        rtol: relative tolerance of the outer adaptive integral (D = 2).
    """
    if not getattr(model.scoring, "piecewise_linear", True):
        raise ValueError(
            "exact_distribution needs a piecewise-linear scoring function (ReLU/linear)"
        )
    event_shape = tuple(event_shape) if event_shape is not None else (model.scoring.dim,)
    dim = int(np.prod(event_shape))
    if dim not in (1, 2):
        raise ValueError(
            f"exact references exist for D = 1 or 2; event_shape {event_shape} has D = {dim}"
        )
    line = LineModel(host_model(model), event_shape)
    sigma = model.sigma
    needed = default_radius(line, dim, sigma)
    if not math.isfinite(needed):
        raise ValueError(
            "the scoring function's slopes |B| overflow: the density has no finite support "
            "radius in float64; scale the weights down"
        )
    if radius is None:
        radius = needed
    else:
        radius = float(radius)
        if not (math.isfinite(radius) and radius > 0):
            raise ValueError(f"radius must be a positive finite number; got {radius!r}")
        if radius < needed:
            raise ValueError(
                f"radius {radius:g} is too small to hold the mass: the density is negligible "
                f"only beyond sigma^2 max|B| + 15 sigma = {needed:g} (default_radius); the mass "
                "outside would be lost and log Z, the pieces and the samples would be wrong. "
                "Leave radius=None or pass at least that"
            )
    log_q_const = -0.5 * dim * math.log(2 * math.pi * sigma * sigma)
    if dim == 1:
        seg = line_segments(line, np.zeros(1), np.ones(1), radius, sigma)
        shift = seg.log_mass.max()
        mass = np.exp(seg.log_mass - shift)
        keys, masses, firsts, segments, strips = (
            seg.keys,
            mass,
            (mass * seg.mean_t())[:, None],
            seg,
            None,
        )
    else:
        shift, keys, masses, firsts, strips = _integrate_plane(line, radius, sigma, rtol)
        segments = None
    total = masses.sum()
    log_Z = float(math.log(total) + shift + log_q_const) if total > 0 else math.nan
    if not (math.isfinite(log_Z) and np.isfinite(masses).all() and np.isfinite(firsts).all()):
        raise ValueError(
            f"log Z(w) is not finite in float64 (got {log_Z}): the scoring function's offsets "
            "or slopes are too large for exp(f) to be integrated; scale the weights down"
        )
    keep = masses > 0
    if strips is not None:  # re-index the strips' pieces after dropping massless ones
        new_row = {old: new for new, old in enumerate(np.nonzero(keep)[0])}
        strips = [
            (y0, y1, {new_row[a]: e for a, e in ends.items() if a in new_row})
            for y0, y1, ends in strips
        ]
    return ExactDistribution(
        line=line,
        log_Z=log_Z,
        keys=keys[keep],
        probs=masses[keep] / total,
        means=firsts[keep] / masses[keep, None],
        radius=radius,
        segments=segments,
        strips=strips,
    )


def _sample_piece(strips, piece: int, mean, sigma: float, n: int, rng, y_nodes: int) -> np.ndarray:
    """``n`` draws of ``N(mean, sigma^2 I)`` truncated to piece ``piece``.

    See ExactDistribution.sample.
    """
    ys, left, right = [], [], []
    for y0, y1, ends in strips:
        if piece not in ends:
            continue
        l0, l1, r0, r1 = ends[piece]
        u = np.linspace(0.0, 1.0, y_nodes)
        ys.append(y0 + u * (y1 - y0))
        left.append(l0 + u * (l1 - l0))
        right.append(r0 + u * (r1 - r0))
    y, l, r = (np.concatenate(v) for v in (ys, left, right))
    log_g = log_phi((y - mean[1]) / sigma) + log_diff_ndtr(
        (l - mean[0]) / sigma, (r - mean[0]) / sigma
    )
    g = np.exp(log_g - log_g.max())
    # trapezoid CDF along the concatenated nodes (strips are disjoint and ordered in y)
    width = np.diff(y)
    cell = 0.5 * (g[1:] + g[:-1]) * np.where(width > 0, width, 0.0)
    cdf = np.concatenate([[0.0], np.cumsum(cell)])
    cdf /= cdf[-1]
    u = rng.random(n)
    k = np.clip(np.searchsorted(cdf, u, side="right") - 1, 0, len(y) - 2)
    frac = (u - cdf[k]) / np.where(cdf[k + 1] > cdf[k], cdf[k + 1] - cdf[k], 1.0)
    y_draw = y[k] + frac * (y[k + 1] - y[k])
    lo = l[k] + frac * (l[k + 1] - l[k])
    hi = r[k] + frac * (r[k + 1] - r[k])
    a, b = (lo - mean[0]) / sigma, (np.maximum(hi, lo) - mean[0]) / sigma
    x_draw = stats.truncnorm.rvs(a, b, loc=mean[0], scale=sigma, size=n, random_state=rng)
    return np.stack([x_draw, y_draw], axis=1)


def _piece_ends(seg: Segments, index: dict, radius: float) -> dict:
    """``{piece row: (left, right)}`` of one line's finite segments (ends clipped to +-radius)."""
    out = {}
    for key, lo, hi in zip(seg.keys, seg.bounds[:-1], seg.bounds[1:]):
        row = index.get(key.tobytes())
        if row is not None:
            out[row] = (max(lo, -radius), min(hi, radius))
    return out


def _strips(along, index: dict, radius: float, breaks, tol: float = 1e-7, depth: int = 12) -> list:
    """Horizontal strips between break heights in which every piece's ends move linearly in y.

    Each strip is checked at its midpoint (the ends there must be the average of the ends at
    the strip's edges, to ``tol * radius``); a strip that fails holds a vertex the scan missed
    and is split in two, up to ``depth`` times.
    """
    edge = 1e-9 * radius
    heights = sorted(set([-radius] + [b for b in breaks if -radius < b < radius] + [radius]))
    todo = [(y0, y1, 0) for y0, y1 in zip(heights[:-1], heights[1:]) if y1 - y0 > 4 * edge]
    strips = []
    while todo:
        y0, y1, level = todo.pop()
        low = _piece_ends(along(y0 + edge), index, radius)
        high = _piece_ends(along(y1 - edge), index, radius)
        mid = _piece_ends(along(0.5 * (y0 + y1)), index, radius)
        linear = set(low) == set(high) == set(mid) and all(
            abs(0.5 * (low[a][i] + high[a][i]) - mid[a][i]) <= tol * radius
            for a in mid
            for i in (0, 1)
        )
        if linear or level >= depth:
            strips.append(
                (
                    y0,
                    y1,
                    {
                        a: (low[a][0], high[a][0], low[a][1], high[a][1])
                        for a in mid
                        if a in low and a in high
                    },
                )
            )
        else:
            half = 0.5 * (y0 + y1)
            todo += [(y0, half, level + 1), (half, y1, level + 1)]
    return sorted(strips, key=lambda s: s[0])


def _signature(seg: Segments) -> bytes:
    """The sequence of pieces a line crosses; it changes only where the line meets a vertex."""
    return seg.keys.tobytes()


def _vertex_heights(along, ys, scan, radius: float, tol: float = 1e-9) -> list:
    """Heights ``y`` where the pieces met by the horizontal line change (polygon vertices).

    Between two scan lines whose signatures differ, bisect on ``y`` for the first change,
    then go on from there; heights are located to ``tol * radius``. Vertices of a piece that
    lies wholly between two scan lines are not found; the adaptive integral still resolves them.
    """
    heights = []
    sigs = [_signature(seg) for seg in scan]
    for i in range(len(ys) - 1):
        lo, sig_lo, hi, sig_end = ys[i], sigs[i], ys[i + 1], sigs[i + 1]
        while sig_lo != sig_end:
            a, b, sig_b = lo, hi, sig_end
            while b - a > tol * radius:
                mid = 0.5 * (a + b)
                sig_mid = _signature(along(mid))
                if sig_mid == sig_lo:
                    a = mid
                else:
                    b, sig_b = mid, sig_mid
            heights.append(0.5 * (a + b))
            lo, sig_lo = b, sig_b
    return heights


def _integrate_plane(line: LineModel, radius: float, sigma: float, rtol: float):
    """D = 2: per-piece masses and first moments (scaled by ``exp(-shift)``), outer integral over y.

    The per-piece line masses are analytic in ``y`` between the heights of the pieces'
    vertices, so those heights are handed to the adaptive integrator as break points.
    """
    direction = np.array([1.0, 0.0])

    def along(y: float) -> Segments:
        return line_segments(line, np.array([0.0, y]), direction, radius, sigma)

    ys = np.linspace(-radius, radius, 65)
    scan = [along(y) for y in ys]
    shift = max(float(s.log_mass.max()) for s in scan)
    breaks = _vertex_heights(along, ys, scan, radius)
    table = {}
    for seg in scan:
        for key in seg.keys:
            table.setdefault(key.tobytes(), key)
    while True:
        index = {k: i for i, k in enumerate(table)}
        unlisted = {}

        def integrand(y, index=index, unlisted=unlisted):
            seg = along(float(y))
            mass = np.exp(seg.log_mass - shift)
            out = np.zeros((len(index) + 1, 3))
            for key, m, t in zip(seg.keys, mass, seg.mean_t()):
                row = index.get(key.tobytes())
                if row is None:
                    unlisted[key.tobytes()] = key
                    row = len(index)
                out[row] += (m, m * t, m * y)
            return out.ravel()

        result, _ = integrate.quad_vec(
            integrand, -radius, radius, epsrel=rtol, epsabs=0.0, limit=4000, points=breaks or None
        )
        result = result.reshape(-1, 3)
        if not unlisted:
            break
        table.update(unlisted)  # pieces the scan missed: integrate again with a row each
    keys = np.stack(list(table.values()))
    strips = _strips(along, {k: i for i, k in enumerate(table)}, radius, breaks)
    return shift, keys, result[:-1, 0], result[:-1, 1:], strips
