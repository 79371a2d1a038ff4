"""Learning the generative ConvNet: Algorithm 1, contrastive divergence, layer growing."""

from refimpl.learning.checkpoint import load_checkpoint, save_checkpoint
from refimpl.learning.config import LearningConfig
from refimpl.learning.optimizers import Ascent
from refimpl.learning.trainer import DivergenceError, Trainer

__all__ = [
    "Ascent",
    "DivergenceError",
    "LearningConfig",
    "Trainer",
    "load_checkpoint",
    "save_checkpoint",
]
