"""The ConvNet engine: layers, scoring function, backprop, activation patterns, linear pieces.

See :mod:`refimpl.convnet.network` for the notation and :mod:`refimpl.convnet.basis` for the
basis functions of Eq. (6.13).
"""

from refimpl.activations import ACTIVATIONS, Activation
from refimpl.convnet.basis import basis_functions, piece_from_basis
from refimpl.convnet.layer import ConvLayer, LayerSpec
from refimpl.convnet.network import ConvNet, Forward

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "ConvLayer",
    "ConvNet",
    "Forward",
    "LayerSpec",
    "basis_functions",
    "piece_from_basis",
]
