"""Figures (matplotlib, Agg backend, PNG files). Host-only: arrays are moved to NumPy first.

One home for how refimpl draws images, grids of images and curves, so that the CLI, the
lessons and the benchmarks look alike.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from refimpl.backend import to_numpy  # noqa: E402
from refimpl.run_folder import atomic_write  # noqa: E402


def as_display(image) -> np.ndarray:
    """``(C, H, W)`` -> what ``imshow`` takes: ``(H, W)`` gray or ``(H, W, 3)`` colour in [0, 1]."""
    image = np.asarray(to_numpy(image), dtype=float)
    if image.ndim == 2:
        image = image[None]
    lo, hi = image.min(), image.max()
    scaled = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    return scaled[0] if scaled.shape[0] == 1 else scaled.transpose(1, 2, 0)


def show_image(ax, image, title: str = "", signed: bool = False):
    """Draw one ``(C, H, W)`` image; ``signed`` uses a diverging map centred at 0 (gray only)."""
    image = np.asarray(to_numpy(image), dtype=float)
    if signed and image.shape[0] == 1:
        bound = float(np.abs(image).max()) or 1.0
        ax.imshow(image[0], cmap="RdBu_r", vmin=-bound, vmax=bound)
    else:
        ax.imshow(as_display(image), cmap="gray", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid(images, titles=None, columns: int = 4, signed: bool = False, scale: float = 2.2):
    """A figure showing ``images`` (a sequence of ``(C, H, W)``, None = blank) in a grid."""
    images = list(images)
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(scale * columns, scale * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < len(images) and images[i] is not None:
            show_image(ax, images[i], titles[i] if titles else "", signed=signed)
        else:
            ax.axis("off")
    fig.tight_layout()
    return fig


def save(fig, path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG to ``path`` (creating folders), atomically, and close it.

    Atomically (:func:`refimpl.run_folder.atomic_write`): a run stopped while a figure is
    being written leaves the previous figure or none, never half a PNG.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda stream: fig.savefig(stream, format="png", dpi=dpi))
    finally:
        plt.close(fig)
    return path


def figure(*args, **kwargs):
    """``plt.subplots`` re-exported, so callers need not import pyplot."""
    return plt.subplots(*args, **kwargs)
