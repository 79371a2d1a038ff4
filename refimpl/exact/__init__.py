"""Exact references in one and two dimensions, the ground truth the checks compare with.

For a piecewise-linear scoring function the density ``exp(f) q`` restricted to a line is a
string of truncated Gaussians with closed-form masses and means, so in one and two
dimensions everything a check needs is computable without Monte Carlo:

* :mod:`refimpl.exact.lines`: kinks along a line and the segments' Gaussians;
* :mod:`refimpl.exact.distribution`: ``log Z(w)``, piece masses and means, density, CDF and
  exact samples (:func:`exact_distribution`);
* :mod:`refimpl.exact.likelihood`: the log-likelihood (7.1) and its gradient (7.2).

Host-only (NumPy and SciPy): a model on a device backend is copied to the host first.
"""

from refimpl.exact.distribution import ExactDistribution, default_radius, exact_distribution
from refimpl.exact.likelihood import (
    current_parameters,
    flatten,
    log_likelihood,
    ml_gradient,
    with_flat_parameters,
)
from refimpl.exact.lines import LineModel, Segments, line_segments

__all__ = [
    "ExactDistribution",
    "LineModel",
    "Segments",
    "current_parameters",
    "default_radius",
    "exact_distribution",
    "flatten",
    "line_segments",
    "log_likelihood",
    "ml_gradient",
    "with_flat_parameters",
]
