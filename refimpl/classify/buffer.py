"""The replay buffer of persistent sampling chains (Yang et al. (GMMC), Algorithm 1; JEM).

Training an energy-based model needs samples of the current model at every iteration. Rather
than start every chain afresh, the chains' end points are kept in a buffer and each iteration
continues some of them for a few steps (a persistent chain, as in Xie et al.'s Algorithm 1),
except that a fraction ``rho`` of the draws restarts from noise ``U(low, high)`` so that the
buffer keeps exploring (the "reinitialisation frequency" of GMMC Algorithm 1, line 3).

Labels: the buffer holds ``n_classes`` equal blocks, slot ``i`` belongs to class
``i // (N / n_classes)``. A draw of uniformly random slots then has uniformly random labels,
``y' ~ p(y') = 1 / C``, which is exactly Algorithm 1's law both for a kept chain and for a
reinitialised one; a class-conditional draw (Dai, Lu & Wu's chains of ``p(I | c)``) picks
slots within the requested classes. An unconditional model (JEM's ``p(x)``) uses one class.

The images are the only state (they go into checkpoints); draws take an explicit generator
(:func:`refimpl.backend.make_rng`), or their randomness as arrays (:meth:`ReplayBuffer.take`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from refimpl.backend import namespace_of, resolve_dtype, uniform
from refimpl.models.discriminative import check_labels
from refimpl.validation import check_finite, check_float_array, check_ndim, shape_str

__all__ = ["Draw", "ReplayBuffer"]


@dataclass
class Draw:
    """A draw from the buffer.

    ``indices (K,)`` the slots, ``images (K, C, H, W)`` the chains' starts, ``labels (K,)``, and
    ``reinit (K,)``, True where the chain restarts from noise.
    """

    indices: object
    images: object
    labels: object
    reinit: object


class ReplayBuffer:
    """``N`` chain states in ``n_classes`` equal label blocks, with reinitialisation rate ``rho``.

    Args:
        images: ``(N, C, H, W)`` float array (NumPy or CuPy); held, and updated by :meth:`write`.
        n_classes: number of label blocks (``N`` must be a multiple of it).
        reinit_rate: ``rho`` in ``[0, 1]``.
        low, high: the box ``U(low, high)`` that reinitialised chains are drawn from.
    """

    def __init__(self, images, n_classes: int, reinit_rate: float, low=-1.0, high=1.0):
        check_float_array(images, "images")
        check_ndim(images, 4, "images", "(N, C, H, W)")
        check_finite(images, "images")
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
            raise ValueError(f"n_classes must be a positive integer; got {n_classes!r}")
        if images.shape[0] % n_classes:
            raise ValueError(
                f"the buffer size {images.shape[0]} must be a multiple of n_classes = {n_classes} "
                "(one equal block of slots per class)"
            )
        rho = float(reinit_rate)
        if not (0.0 <= rho <= 1.0):
            raise ValueError(f"reinit_rate must lie in [0, 1]; got {reinit_rate!r}")
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"need finite low < high for the noise box; got ({low}, {high})")
        self.images = images
        self.n_classes = n_classes
        self.reinit_rate = rho
        self.low, self.high = float(low), float(high)

    @classmethod
    def uniform(
        cls,
        size: int,
        image_shape,
        n_classes: int,
        reinit_rate: float,
        rng,
        low=-1.0,
        high=1.0,
        dtype=None,
    ) -> ReplayBuffer:
        """A buffer of ``size`` chains drawn from ``U(low, high)`` with generator ``rng``."""
        shape = (int(size),) + tuple(int(s) for s in image_shape)
        images = low + (high - low) * uniform(rng, shape, resolve_dtype(dtype))
        return cls(images, n_classes, reinit_rate, low, high)

    @property
    def xp(self):
        return namespace_of(self.images)

    @property
    def size(self) -> int:
        return self.images.shape[0]

    @property
    def per_class(self) -> int:
        return self.size // self.n_classes

    @property
    def labels(self):
        """``(N,)`` the label of every slot: ``i // (N / n_classes)``."""
        return self.xp.arange(self.size) // self.per_class

    def draw(self, rng, batch: int | None = None, labels=None) -> Draw:
        """``batch`` distinct uniformly random slots, or one slot of each requested label.

        Every drawn chain restarts from ``U(low, high)`` with probability ``rho``.

        Args:
            rng: a generator from :func:`refimpl.backend.make_rng` (``random`` is all it needs).
            batch: how many slots (unconditional draw, ``<= N``);
            labels: or ``(K,)`` integer labels, each answered by a distinct slot of its class
                (at most ``N / n_classes`` of one class).
        """
        xp = self.xp
        if (batch is None) == (labels is None):
            raise ValueError("draw takes either batch (unconditional) or labels (conditional)")
        if labels is None:
            if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= self.size:
                raise ValueError(f"batch must be an integer in [1, {self.size}]; got {batch!r}")
            # distinct slots: the first `batch` of a uniformly random permutation
            indices = xp.argsort(uniform(rng, (self.size,)))[:batch]
        else:
            indices = self._slots_for(rng, labels)
        n = int(indices.shape[0])
        reinit = uniform(rng, (n,)) < self.reinit_rate
        fresh = self.low + (self.high - self.low) * uniform(
            rng, (n,) + tuple(self.images.shape[1:]), self.images.dtype
        )
        return self.take(indices, reinit, fresh)

    def _slots_for(self, rng, labels):
        xp = self.xp
        if getattr(labels, "ndim", None) != 1:
            raise TypeError("labels must be a 1-D integer array")
        check_labels(labels, labels.shape[0], self.n_classes)
        counts = xp.bincount(labels, minlength=self.n_classes)
        if int(counts.max()) > self.per_class:
            raise ValueError(
                f"a class was asked for {int(counts.max())} chains but holds "
                f"{self.per_class} slots; enlarge the buffer"
            )
        # a random permutation of every class block; the requests for class c take the first
        # slots of c's permutation, so the slots drawn are distinct
        offsets = xp.argsort(uniform(rng, (self.n_classes, self.per_class)), axis=1)
        indices = xp.empty_like(labels)
        for c in range(self.n_classes):
            where = xp.nonzero(labels == c)[0]
            indices[where] = c * self.per_class + offsets[c, : where.shape[0]]
        return indices

    def take(self, indices, reinit, fresh) -> Draw:
        """The draw with its randomness given: ``x0 = fresh where reinit, else images[indices]``.

        Args:
            indices: ``(K,)`` distinct slots; reinit: ``(K,)`` bool; fresh: ``(K, C, H, W)``.
        """
        xp = self.xp
        indices = xp.asarray(indices)
        outside = indices.size and (int(indices.min()) < 0 or int(indices.max()) >= self.size)
        if indices.ndim != 1 or outside:
            raise ValueError(f"indices must be a 1-D array of slots in [0, {self.size})")
        if int(xp.unique(indices).shape[0]) != indices.shape[0]:
            raise ValueError("indices must be distinct (a slot is one chain)")
        shape = (indices.shape[0],) + tuple(self.images.shape[1:])
        if tuple(fresh.shape) != shape or tuple(reinit.shape) != shape[:1]:
            raise ValueError(
                f"fresh must have shape {shape_str(shape)} and reinit ({shape[0]},); got "
                f"{shape_str(fresh.shape)} and {shape_str(reinit.shape)}"
            )
        mask = reinit.reshape((-1, 1, 1, 1))
        images = xp.where(mask, fresh.astype(self.images.dtype), self.images[indices])
        return Draw(indices, images, indices // self.per_class, reinit)

    def write(self, indices, images):
        """Store the chains' new states ``images (K, C, H, W)`` in their slots ``indices (K,)``.

        Copy on write: :attr:`images` becomes a new array and the old one is left as it was,
        so that a state taken before (a checkpoint's arrays) stays the state of its boundary.
        """
        check_float_array(images, "images")
        check_finite(images, "images")
        if tuple(images.shape) != (indices.shape[0],) + tuple(self.images.shape[1:]):
            expected = (indices.shape[0],) + tuple(self.images.shape[1:])
            raise ValueError(
                f"images must have shape {shape_str(expected)}; got {shape_str(images.shape)}"
            )
        updated = self.images.copy()
        updated[indices] = images
        self.images = updated
