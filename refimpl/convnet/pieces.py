"""Pieces of image space: comparing activation patterns, walking inside a piece, crossing pieces.

For a ReLU ConvNet the piece ``A(delta; w) = {I : delta(I; w) = delta}`` (section 6) is a
convex polyhedron: given the patterns of the layers below, each unit's pre-activation is
affine in ``I``, so "unit on" / "unit off" is a half-space and the piece is their
intersection. Two consequences used here:

* if two images share a pattern, the whole segment between them lies in the piece, so
  ``f`` is affine along it with slope ``<J - I, B_{w,delta}>`` (Eq. (6.8));
* along a line ``I + t d`` the pattern changes at finitely many kinks, between which ``f``
  is exactly linear.
"""

from __future__ import annotations

from dataclasses import dataclass

from refimpl.backend import namespace_of


def as_pattern_list(pattern) -> list:
    """A ConvNet returns one pattern array per layer, the prototype model a single array."""
    return pattern if isinstance(pattern, list) else [pattern]


def pattern_keys(pattern) -> object:
    """Flatten a pattern ``[(M, N_l, H_l, W_l), ...]`` into one bool array ``(M, units)``."""
    xp = namespace_of(pattern[0])
    return xp.concatenate([(d > 0).reshape(d.shape[0], -1) for d in pattern], axis=1)


def same_pattern(p, q) -> bool:
    """True if two activation patterns (lists of arrays of equal shapes) are identical."""
    return all(bool((a == b).all()) for a, b in zip(p, q))


def image_in_same_piece(net, I, direction, max_step: float = 1.0, min_step: float = 1e-4):
    """An image ``J = I + t d`` with ``I``'s activation pattern, ``t`` as large as halving allows.

    Starting at ``t = max_step``, halve ``t`` until ``delta(I + t d) = delta(I)``. Pieces are
    convex, so then the whole segment from ``I`` to ``J`` lies in ``I``'s piece.

    Args:
        net: a piecewise-linear :class:`~refimpl.ConvNet`.
        I: one image ``(1, C, H, W)``.
        direction: ``(1, C, H, W)``, the direction ``d``.

    Returns:
        ``(J, t)``, or ``(None, None)`` if no ``t >= min_step`` keeps the pattern.
    """
    base = net.activation_pattern(I)
    step = max_step
    while step >= min_step:
        J = I + step * direction
        if same_pattern(net.activation_pattern(J), base):
            return J, step
        step /= 2
    return None, None


@dataclass
class LineThroughPieces:
    """``f`` along ``I + t d``: scores, kinks, and how exactly ``f`` is linear between kinks.

    ``kinks[i]`` is True where the pattern at ``ts[i]`` differs from that at ``ts[i-1]``;
    ``segments`` lists ``(start, stop)`` index ranges of constant pattern; ``slopes`` the
    predicted slope ``<d, B_{w,delta}>`` of each; ``max_residual`` the largest relative
    deviation of ``f`` from the line through the segment's first point with that slope.
    """

    ts: object
    scores: object
    kinks: object
    segments: list
    slopes: list
    max_residual: float

    @property
    def pieces_crossed(self) -> int:
        return len(self.segments)

    @property
    def points_tested(self) -> int:
        """Points in segments of 3 or more points, where linearity is a real constraint."""
        return sum(stop - start for start, stop in self.segments if stop - start >= 3)


def line_through_pieces(net, I, direction, ts) -> LineThroughPieces:
    """Walk ``I + t d`` for ``t`` in ``ts`` and check Eq. (6.8) segment by segment.

    Args:
        net: a piecewise-linear ConvNet.
        I, direction: ``(1, C, H, W)`` each.
        ts: increasing 1-D array of ``t`` values.

    Within a segment of constant pattern, ``f(I + t d) = f(I + t_0 d) + (t - t_0) <d, B>``
    exactly, with ``B`` from the segment's first point; the residual measures this.
    """
    xp = net.xp
    ts = xp.asarray(ts, dtype=net.dtype)
    points = I + ts[:, None, None, None] * direction
    scores = net.score(points)
    keys = pattern_keys(net.activation_pattern(points))
    kinks = xp.concatenate([xp.zeros(1, dtype=bool), (keys[1:] != keys[:-1]).any(axis=1)])
    starts = [0] + [int(i) for i in xp.nonzero(kinks)[0]]
    stops = starts[1:] + [len(ts)]
    segments, slopes, worst = [], [], 0.0
    for start, stop in zip(starts, stops):
        _, B = net.linear_piece(points[start : start + 1])
        slope = float((direction * B).sum())
        predicted = scores[start] + (ts[start:stop] - ts[start]) * slope
        scale = (
            float(xp.abs(scores[start:stop]).max()) + abs(slope) * float(xp.abs(ts).max()) + 1e-300
        )
        worst = max(worst, float(xp.abs(scores[start:stop] - predicted).max()) / scale)
        segments.append((start, stop))
        slopes.append(slope)
    return LineThroughPieces(ts, scores, kinks, segments, slopes, worst)
