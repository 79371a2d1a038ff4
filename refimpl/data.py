"""Bundled data and image files: loading, cropping, downsampling, and the paper's intensity scale.

The clone ships small, openly licensed data in ``data/`` (see ``data/PROVENANCE.md``):

* ``data/textures/{brick,grass,gravel}.png``: 512 x 512 grayscale textures (CC0);
* ``data/digits/digits.csv.gz``: 1797 UCI handwritten digits, 8 x 8, values 0..16 (CC BY 4.0).

Images are returned as host (NumPy) float64 arrays ``(C, H, W)`` in ``[0, 255]``. The paper
(section 8) trains on intensities in ``[0, 255]`` minus the mean; :func:`centre` does that
and returns the mean so that samples can be mapped back for display.

This module reads files into host memory, so it is one of the few allowed to import NumPy.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
TEXTURES = ("brick", "grass", "gravel")


def data_dir() -> Path:
    """The bundled ``data/`` folder of the clone; a clear error if it is missing."""
    if not DATA_DIR.is_dir():
        raise FileNotFoundError(
            f"the bundled data folder {DATA_DIR} is missing. refimpl reads its data from the "
            "clone: install it with `pip install -e .` from a clone of the repository, or pass "
            "your own image with --image PATH."
        )
    return DATA_DIR


def load_image(path) -> np.ndarray:
    """Read an image file as float64 ``(C, H, W)`` in ``[0, 255]`` (C = 1 gray, 3 colour).

    PNG is read natively; other formats (JPEG, ...) through Pillow. An alpha channel is
    dropped; an RGB image whose channels are all equal is returned as gray.
    """
    import matplotlib.image as mpimg

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"image file not found: {path} (give an image file, or one of the bundled "
            f"textures: {', '.join(TEXTURES)})"
        )
    try:
        pixels = np.asarray(mpimg.imread(path))
    except Exception as exc:  # matplotlib/Pillow raise a variety of errors on bad files
        raise ValueError(f"could not read {path} as an image: {exc}") from exc
    if pixels.dtype.kind in "ui":  # JPEG via Pillow gives uint8
        pixels = pixels.astype(np.float64)
    else:  # PNG gives floats in [0, 1]
        pixels = pixels.astype(np.float64) * 255.0
    if pixels.ndim == 2:
        return pixels[None]
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(
            f"{path}: expected a gray or RGB(A) image; got array of shape {pixels.shape}"
        )
    rgb = pixels[:, :, :3]
    if np.all(rgb == rgb[:, :, :1]):
        return rgb[:, :, 0][None]
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def texture_path(name: str) -> Path:
    """Path of a bundled texture (``brick``, ``grass`` or ``gravel``)."""
    if name not in TEXTURES:
        raise ValueError(f"unknown texture {name!r}; the bundled ones are {TEXTURES}")
    return data_dir() / "textures" / f"{name}.png"


def resolve_image(name_or_path: str) -> Path:
    """A bundled texture name or a file path -> the file path."""
    return texture_path(name_or_path) if name_or_path in TEXTURES else Path(name_or_path)


def centre_crop(image: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
    """The central ``height x width`` window of ``image (C, H, W)``."""
    width = height if width is None else width
    _, h, w = image.shape
    if height > h or width > w:
        raise ValueError(f"cannot crop {height}x{width} from an image of {h}x{w}")
    top, left = (h - height) // 2, (w - width) // 2
    return image[:, top : top + height, left : left + width]


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` blocks of ``image (C, H, W)`` (H, W divisible by factor)."""
    c, h, w = image.shape
    if factor < 1 or h % factor or w % factor:
        raise ValueError(f"image {h}x{w} cannot be downsampled by {factor}")
    return image.reshape(c, h // factor, factor, w // factor, factor).mean(axis=(2, 4))


def default_factor(shape, size: int, span: int = 2) -> int:
    """The block-averaging factor for an image file of ``shape (C, H, W)`` and crop ``size``.

    The rule: the largest factor that keeps the image's shorter side at least ``span`` times
    ``size`` (and 1 if even the full image is shorter than that). The ``pieces`` command
    uses ``span = 2`` (8 for the bundled 512 x 512 textures at its size 32: a crop that sees
    much of the image); learning uses ``span = 4`` (2 for them at the preset's size 64, the
    ``texture`` preset's factor): block-averaging by more smooths the edges away, and the
    crop's band-pass responses become nearly Gaussian, which a model cannot be told apart by
    (``benchmarks/quality.py``).
    """
    if int(span) < 1:
        raise ValueError(f"span must be >= 1; got {span!r}")
    return max(1, min(int(shape[-2]), int(shape[-1])) // (int(span) * int(size)))


def block_average(image: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` blocks of ``image (C, H, W)``, dropping the rows and columns
    that do not fill a whole block."""
    if factor <= 1:
        return image
    usable = (np.array(image.shape[1:]) // factor) * factor
    return downsample(image[:, : usable[0], : usable[1]], factor)


def load_texture(
    name_or_path: str = "brick", size: int | None = None, factor: int = 1
) -> np.ndarray:
    """A texture, downsampled by ``factor`` and then centre-cropped, as ``(C, size, size)``.

    Values are in ``[0, 255]``. With the defaults the whole image is returned. E.g.
    ``load_texture("brick", 64, 4)`` averages 4 x 4 blocks of the 512 x 512 brick (keeping
    whole bricks in view) and crops the central 64 x 64. See :func:`fit_texture`.
    """
    return fit_texture(load_image(resolve_image(name_or_path)), name_or_path, size, factor)


def fit_texture(image: np.ndarray, name: str, size: int | None, factor: int) -> np.ndarray:
    """``image (C, H, W)`` block-averaged by ``factor``, then its central ``size x size``.

    An image too small for ``size`` after downsampling is a ``ValueError`` that names the
    image (``name``), the factor and the size, and says which factor would fit.
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an integer >= 1; got {factor!r}")
    averaged = block_average(image, factor)
    if size is None:
        return averaged
    if size > min(averaged.shape[1:]):
        _, H, W = image.shape
        _, h, w = averaged.shape
        if min(H, W) < size:
            advice = f"lower the size to at most {min(H, W)}"
        else:
            advice = f"lower the factor (at most {min(H, W) // size} fits) or the size"
        raise ValueError(
            f"image {name!r} is {H}x{W}"
            + (f", {h}x{w} after block-averaging by factor {factor}" if factor > 1 else "")
            + f": smaller than the requested size {size}x{size}; {advice}"
        )
    return centre_crop(averaged, size)


def load_digits(digit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """UCI handwritten digits: ``images (M, 1, 8, 8)`` in ``[0, 16]`` and ``labels (M,)``.

    ``digit`` keeps one class (one "aligned object category" for experiment 2).
    """
    path = data_dir() / "digits" / "digits.csv.gz"
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",")
    images, labels = table[:, :64].reshape(-1, 1, 8, 8), table[:, 64].astype(int)
    if digit is not None:
        if digit not in range(10):
            raise ValueError(f"digit must be 0..9; got {digit}")
        images, labels = images[labels == digit], labels[labels == digit]
    return images, labels


def centre(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the per-channel mean over all images and pixels (section 8's preprocessing).

    ``images (M, C, H, W)`` -> ``(centred, mean (1, C, 1, 1))``; add ``mean`` back to display.
    """
    mean = images.mean(axis=(0, 2, 3), keepdims=True)
    return images - mean, mean
