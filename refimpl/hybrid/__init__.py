"""Hybrid generative-discriminative training (the lecture slides; Bishop & Lasserre 2007).

* :mod:`refimpl.hybrid.toy`: the 2-D toy (true classes, training sets, exact errors) and the
  isotropic Gaussian class model, its scores and their chain rule;
* :mod:`refimpl.hybrid.objectives`: ``L_G``, ``L_D``, the lambda blend, the coupling prior and
  Bishop & Lasserre's hybrid, each with its gradient; the map ``sigma(alpha)``;
* :mod:`refimpl.hybrid.fit`: an L-BFGS maximiser, the closed-form and EM generative fits, and
  the fits of every objective;
* :mod:`refimpl.hybrid.experiment`: the alpha and lambda sweeps, their figures, ``run_toy``.
"""

from refimpl.hybrid import fit, objectives, toy

__all__ = ["fit", "objectives", "toy"]
