"""The classification data: a fixed split of the bundled UCI digits and out-of-distribution sets.

**Digits.** The 1797 UCI handwritten digits (``data/digits``, CC BY 4.0), 8 x 8, counts 0..16
(each pixel counts the inked pixels of a 4 x 4 block of a 32 x 32 bitmap). Kept at their
native 8 x 8: a larger resize would add no information and cost the sampler and PGD
``(side / 8)^2`` times more per step, which the 3-minute budget of a run cannot afford.
Intensities are mapped linearly to ``[-1, 1]`` (``x / 8 - 1``): the lab code's scale, and the
box ``U(-1, 1)`` that GMMC's and JEM's samplers start from and clip to.

**The split** (:func:`digits_split`) is stratified and fixed: with ``SPLIT_SEED``, in every
class a random quarter (rounded to nearest) of its examples is the test set, the rest the
training set: 1347 training and 450 test images, about 135 and 45 per class. Every run, test
and lesson uses this split.

**Out-of-distribution sets** (:func:`ood_sets`), each the size of the test set, made from what
the project ships, with ``OOD_SEED``:

* ``noise``: Gaussian noise with the training digits' per-pixel mean and standard deviation,
  clipped to ``[-1, 1]`` (the digits' range) so that range alone does not give it away;
* ``texture``: 32 x 32 crops of the bundled brick, grass and gravel textures (a third each)
  averaged over 4 x 4 blocks to 8 x 8, as the digits were, intensities ``[0, 255] -> [-1, 1]``;
* ``interp``: pixel-wise midpoints ``(x_a + x_b) / 2`` of two test digits of different classes
  (GMMC's "CIFAR10 Interp": images near the data that belong to no class);
* ``inverted``: test digits with ink and paper swapped, ``x -> -x`` (16 - count).

This module reads files and draws host arrays, so it imports NumPy (a host-only module).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from refimpl.data import TEXTURES, downsample, load_digits, load_texture

SPLIT_SEED = 0
OOD_SEED = 1
TEST_FRACTION = 0.25
N_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)
OOD_NAMES = ("noise", "texture", "interp", "inverted")


def to_model_scale(counts):
    """UCI counts ``[0, 16]`` -> ``[-1, 1]``: ``x / 8 - 1``."""
    return np.asarray(counts, dtype=np.float64) / 8.0 - 1.0


def to_counts(images):
    """``[-1, 1]`` -> UCI counts ``[0, 16]`` (for display)."""
    return (np.asarray(images, dtype=np.float64) + 1.0) * 8.0


@dataclass(frozen=True)
class DigitsSplit:
    """The fixed split: images ``(N, 1, 8, 8)`` in ``[-1, 1]``, labels ``(N,)``, and which rows
    of the bundled file each came from (``train_index``, ``test_index``)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray


@lru_cache(maxsize=1)
def _split() -> DigitsSplit:
    counts, labels = load_digits()
    rng = np.random.default_rng(SPLIT_SEED)
    test = []
    for c in range(N_CLASSES):
        rows = np.flatnonzero(labels == c)
        n_test = int(np.floor(TEST_FRACTION * len(rows) + 0.5))
        test.extend(rng.permutation(rows)[:n_test])
    test = np.sort(np.array(test))
    train = np.setdiff1d(np.arange(len(labels)), test)
    images = to_model_scale(counts)
    arrays = (images[train], labels[train], images[test], labels[test], train, test)
    for a in arrays:
        a.setflags(write=False)  # shared by every caller: nobody may change it in place
    return DigitsSplit(*arrays)


def digits_split() -> DigitsSplit:
    """The fixed stratified train/test split of the bundled digits (see the module docstring)."""
    return _split()


def texture_crops(n: int, rng, size: int = 32, factor: int = 4) -> np.ndarray:
    """``n`` crops ``size x size`` of the bundled textures, ``factor``-block averages, in [-1, 1].

    The textures take turns (brick, grass, gravel, brick, ...); positions are uniform.
    """
    out = []
    images = [load_texture(name) for name in TEXTURES]
    for i in range(n):
        image = images[i % len(images)]
        _, h, w = image.shape
        top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        crop = image[:, top : top + size, left : left + size]
        out.append(downsample(crop, factor) / 127.5 - 1.0)
    return np.stack(out)


@lru_cache(maxsize=1)
def _ood() -> dict:
    split = _split()
    rng = np.random.default_rng(OOD_SEED)
    n = len(split.test_labels)
    mean = split.train_images.mean(axis=0)
    std = split.train_images.std(axis=0)
    noise = np.clip(mean + std * rng.standard_normal((n,) + IMAGE_SHAPE), -1.0, 1.0)
    texture = texture_crops(n, rng)
    first = rng.integers(0, n, n)
    second = np.empty(n, dtype=int)
    for i, a in enumerate(first):  # a partner of another class
        others = np.flatnonzero(split.test_labels != split.test_labels[a])
        second[i] = others[rng.integers(0, len(others))]
    interp = 0.5 * (split.test_images[first] + split.test_images[second])
    inverted = -split.test_images
    sets = dict(noise=noise, texture=texture, interp=interp, inverted=inverted)
    for a in sets.values():
        a.setflags(write=False)
    return sets


def ood_sets() -> dict:
    """``{name: images (451, 1, 8, 8)}`` for the names in ``OOD_NAMES`` (see the module doc)."""
    return dict(_ood())
