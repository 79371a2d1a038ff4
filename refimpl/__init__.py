"""refimpl: a reference NumPy implementation of the generative ConvNet (Xie, Lu, Zhu, Wu).

Equation numbers refer to "A Theory of Generative ConvNet" (long version). The stable API:

* :class:`ConvLayer`, :class:`ConvNet` (``score``, ``grad_input``, ``grad_params``,
  ``activation_pattern``, ``linear_piece``, ...), :class:`LayerSpec`;
* :mod:`refimpl.conv` for the convolution kernels; :mod:`refimpl.backend` for NumPy/CuPy.
"""

from refimpl import backend, conv
from refimpl.convnet import (
    ConvLayer,
    ConvNet,
    LayerSpec,
    basis_functions,
    piece_from_basis,
)

__version__ = "0.1.0"

__all__ = [
    "ConvLayer",
    "ConvNet",
    "LayerSpec",
    "backend",
    "basis_functions",
    "conv",
    "piece_from_basis",
]
