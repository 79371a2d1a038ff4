"""Generative classifiers on the engine: the softmax ConvNet (Xie et al., Eqs. (2.2)-(2.3)) trained
discriminatively or generatively (Dai, Lu & Wu), GMMC trained three ways (Yang et al.), JEM, and
what they are measured by.

* :mod:`refimpl.classify.heads`: top features, the softmax head, :class:`SoftmaxClassifier`;
* :mod:`refimpl.classify.gmmc`: max-Mahalanobis centres, energies, losses, :class:`GMMC`;
* :mod:`refimpl.classify.jem`: JEM's energy and loss;
* :mod:`refimpl.classify.buffer`: the replay buffer;
* :mod:`refimpl.classify.sampling`: staged and noise-injected sampling, SGLD, class-node Langevin;
* :mod:`refimpl.classify.metrics`: accuracy, ECE, AUROC, OOD scores, PGD;
* :mod:`refimpl.classify.training`: configurations and the resumable trainer;
* :mod:`refimpl.classify.data` (host): the fixed digits split and the OOD sets;
* :mod:`refimpl.classify.experiment` (host): a whole run, its files and figures.
"""

from refimpl.classify.gmmc import GMMC, mmc_centres
from refimpl.classify.heads import SoftmaxClassifier
from refimpl.classify.training import (
    MODES,
    ClassifierConfig,
    ClassifierTrainer,
    DivergenceError,
    default_config,
)

__all__ = [
    "GMMC",
    "MODES",
    "ClassifierConfig",
    "ClassifierTrainer",
    "DivergenceError",
    "SoftmaxClassifier",
    "default_config",
    "mmc_centres",
]
