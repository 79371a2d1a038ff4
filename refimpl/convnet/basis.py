"""Basis functions of the generative ConvNet, Eqs. (6.12)-(6.14): the bottom-up composition view.

On the piece ``A(delta; w)`` every pre-activation is linear in the image (Eq. (6.12)):

    z^(l)_{k,x}(I) = a^(l)_{k,x} + <I, b^(l)_{k,x}>,

where the basis image ``b^(l)_{k,x}`` (same shape as ``I``) and the offset ``a^(l)_{k,x}`` obey

    b^(l)_{k,x} = sum_{i,y} w^(l,k)_{i,y} delta^(l-1)_{i,x+y} b^(l-1)_{i,x+y}          (6.13)
    a^(l)_{k,x} = sum_{i,y} w^(l,k)_{i,y} delta^(l-1)_{i,x+y} a^(l-1)_{i,x+y} + b_{l,k}

starting from the delta functions ``b^(0)_{c,x} = e_{c,x}``, ``a^(0) = 0``, ``delta^(0) = 1``.
The recursion is a convolution applied to the gated basis images, one per input pixel; this
is forward-mode differentiation, independent of backprop and of the top-down pass (6.7).
Then (Eq. (6.14)) ``B_{w,delta} = sum_{k,x} delta^(L)_{k,x} b^(L)_{k,x}`` and
``alpha_{w,delta} = sum_{k,x} delta^(L)_{k,x} a^(L)_{k,x}``.

Basis functions are image-sized, so this is for small images (``MAX_ELEMENTS`` bounds it).
"""

from __future__ import annotations

from refimpl.validation import shape_str

# Largest basis array (elements) one call may build; ~0.4 GB in float64.
MAX_ELEMENTS = 5 * 10**7


def basis_functions(net, I) -> list:
    """Offsets ``a^(l)`` and basis images ``b^(l)`` of every layer, Eqs. (6.12)-(6.13).

    Args:
        net: a :class:`refimpl.ConvNet`.
        I: images ``(M, C, H, W)``; each gets the basis of its own piece ``delta(I_m)``.

    Returns:
        ``[(a_l, b_l), ...]`` with ``a_l (M, N_l, H_l, W_l)`` and
        ``b_l (M, N_l, H_l, W_l, C, H, W)``: ``b_l[m, k, i, j]`` is the image
        ``b^(l)_{k,(i,j)}`` of image ``m``'s piece.
    """
    I = net.prepare_images(I)
    xp = net.xp
    batch, channels, height, width = I.shape
    pixels = channels * height * width
    geoms = net.geometries(I.shape)
    largest = max(pixels * g.out_channels * g.out_height * g.out_width for g in geoms) * batch
    if largest > MAX_ELEMENTS:
        raise ValueError(
            f"basis functions for I of shape {shape_str(I.shape)} need {largest} elements "
            f"(limit {MAX_ELEMENTS}); they are image-sized, so use fewer or smaller images"
        )
    pattern = net.activation_pattern(I)
    per_image = [
        _basis_of_one_image(net, [d[m : m + 1] for d in pattern], I.shape[1:]) for m in range(batch)
    ]
    return [
        (
            xp.concatenate([img[l][0] for img in per_image]),
            xp.concatenate([img[l][1] for img in per_image]),
        )
        for l in range(net.depth)
    ]


def _basis_of_one_image(net, pattern, image_shape) -> list:
    """Eq. (6.13) for one image: ``pattern`` is ``[(1, N_l, H_l, W_l), ...]``."""
    xp = net.xp
    channels, height, width = image_shape
    pixels = channels * height * width
    # Row p of `basis` is the map of d z / d I_p: a batch of `pixels` "images" per layer.
    basis = xp.eye(pixels, dtype=net.dtype).reshape(pixels, channels, height, width)
    offset = xp.zeros((1, channels, height, width), dtype=net.dtype)
    gate = None  # delta^(0) = 1
    result = []
    for layer, delta in zip(net.layers, pattern):
        if gate is not None:
            basis = basis * gate
            offset = offset * gate
        basis = net.conv.forward(layer.geometry(basis.shape, "basis"), basis, layer.weight)
        offset = net.conv.forward(
            layer.geometry(offset.shape, "offset"), offset, layer.weight, layer.bias
        )
        n_l, h_l, w_l = basis.shape[1:]
        as_images = basis.reshape(pixels, n_l * h_l * w_l).T.reshape(
            1, n_l, h_l, w_l, channels, height, width
        )
        result.append((offset, xp.ascontiguousarray(as_images)))
        gate = delta
    return result


def piece_from_basis(top_basis, top_pattern):
    """``(alpha, B)`` from the top layer's basis, Eq. (6.14).

    ``B = sum_{k,x} delta^(L)_{k,x} b^(L)_{k,x}`` and
    ``alpha = sum_{k,x} delta^(L)_{k,x} a^(L)_{k,x}``.

    Args:
        top_basis: ``(a_L (M, N_L, H_L, W_L), b_L (M, N_L, H_L, W_L, C, H, W))``.
        top_pattern: ``delta^(L)`` ``(M, N_L, H_L, W_L)``.

    Returns:
        ``alpha (M,)`` and ``B (M, C, H, W)``.
    """
    offsets, images = top_basis
    batch = images.shape[0]
    gate = top_pattern.reshape(batch, -1).astype(images.dtype)
    B = (gate[:, :, None] * images.reshape(batch, gate.shape[1], -1)).sum(axis=1)
    alpha = (gate * offsets.reshape(batch, -1)).sum(axis=1)
    return alpha, B.reshape((batch,) + images.shape[4:])
