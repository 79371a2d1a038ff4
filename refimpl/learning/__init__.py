"""Learning the generative ConvNet: Algorithm 1, contrastive divergence, layer growing.

* :mod:`refimpl.learning.algorithm`: one learning iteration as pure functions (synthesis,
  moment mismatch, scaled gradient, growing);
* :mod:`refimpl.learning.optimizers`: the ascent steps (plain, Adam), pure;
* :mod:`refimpl.learning.trainer`: :class:`Trainer`, the state of a run that composes them;
* :mod:`refimpl.learning.config`, :mod:`~refimpl.learning.presets`: the settings;
* :mod:`refimpl.learning.checkpoint`: what a checkpoint holds and the checks it must pass;
* :mod:`refimpl.learning.runs`: training images, run folders (through
  :mod:`refimpl.run_folder`: lock, atomic files, stops on signals), outputs, resume.
"""

from refimpl.learning import algorithm, optimizers
from refimpl.learning.algorithm import Iteration, learning_iteration
from refimpl.learning.checkpoint import load_checkpoint, save_checkpoint
from refimpl.learning.config import LearningConfig
from refimpl.learning.trainer import DivergenceError, Trainer

__all__ = [
    "DivergenceError",
    "Iteration",
    "LearningConfig",
    "Trainer",
    "algorithm",
    "learning_iteration",
    "load_checkpoint",
    "optimizers",
    "save_checkpoint",
]
