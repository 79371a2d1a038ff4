"""Every claim of Xie et al. (A Theory of Generative ConvNet) as a numerical check.

Each check returns its residual and tolerance. ``python -m refimpl verify`` runs them all
(:func:`refimpl.theorems.registry.run_all`); the tests run the same check functions on
Hypothesis-drawn instances and on deliberately broken implementations (negative controls).

==============  =====================================================  =========================
module          claims                                                 equations
==============  =====================================================  =========================
structure       f = alpha + <I,B>; B three ways; prototype = ConvNet;  (6.8), (6.7), (6.13),
                Theorem 1 (exact and 2-D); Proposition 2 (GRADE,       (5.5), (6.9), (5.7),
                fixed point)                                           (6.11)
langevin        Langevin/MALA vs exact densities in 1-D and 2-D        (5.6), (6.10)
learning        ML gradient vs exact log-likelihood; Proposition 3     (5.8), (7.2), (7.5)-(7.9)
discriminative  Proposition 1 (a) and (b)                              (2.3), (3.1)-(3.3)
smooth          section 9: softplus                                    (9.1), (9.2)
==============  =====================================================  =========================
"""

from refimpl.theorems.registry import GROUPS, run_all
from refimpl.theorems.result import CheckResult, format_table

__all__ = ["CheckResult", "GROUPS", "format_table", "run_all"]
