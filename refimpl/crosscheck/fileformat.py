"""The golden-vector files: deterministic ``.npz`` archives, ``manifest.json``, and layouts.

A golden directory holds one ``CASE.npz`` per case and a ``manifest.json`` that describes
every case (see ``docs/crosscheck.md`` for the full format):

* an ``.npz`` is a plain zip of ``NAME.npy`` files (NumPy's format, readable from any
  language); the writer fixes every zip timestamp and the entry order, so the same seed
  gives byte-identical files;
* each array has an ``axes`` string naming its axes in the file's layout. refimpl computes
  in NCHW with OIHW filters (Xie et al., Eq. (2.1) written for arrays); ``--layout nhwc``
  writes images channels-last (NHWC) and filters HWIO, as TensorFlow and JAX use them.

Axes letters: ``N`` batch (images, chains), ``C`` channels, ``H`` and ``W`` height and width,
``T`` Langevin step, ``O``/``I`` a filter's output/input channels, ``K`` class; lower-case
``c h w`` are the image axes of a basis function (an image-shaped array per unit).

Host-only: reads and writes files with NumPy.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

FORMAT = "refimpl-golden"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LAYOUTS = ("nchw", "nhwc")

# Canonical (NCHW-world) axes -> their order in the NHWC world, as a permutation of the axes.
NHWC_PERMUTATION = {
    "NCHW": (0, 2, 3, 1),
    "TNCHW": (0, 1, 3, 4, 2),
    "OIHW": (2, 3, 1, 0),
    "NCHWchw": (0, 2, 3, 1, 5, 6, 4),
}

# A fixed date for every zip entry (the zip format's earliest), so that files do not
# depend on when they were written.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class GoldenFormatError(ValueError):
    """A golden directory or a results file that cannot be read as the kit's format."""


def check_layout(layout: str) -> str:
    """``layout`` lower-cased, or ``ValueError`` naming the choices."""
    value = str(layout).lower()
    if value not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    return value


def file_axes(axes: str, layout: str) -> str:
    """The axes string of canonical ``axes`` as stored in ``layout``."""
    perm = NHWC_PERMUTATION.get(axes) if check_layout(layout) == "nhwc" else None
    return axes if perm is None else "".join(axes[i] for i in perm)


def layout_shape(shape, axes: str, layout: str) -> tuple:
    """The shape of a canonical array of ``shape`` as stored in ``layout``."""
    perm = NHWC_PERMUTATION.get(axes) if check_layout(layout) == "nhwc" else None
    return tuple(shape) if perm is None else tuple(shape[i] for i in perm)


def to_layout(array, axes: str, layout: str):
    """A canonical (NCHW/OIHW) array rearranged for a file in ``layout``."""
    perm = NHWC_PERMUTATION.get(axes) if check_layout(layout) == "nhwc" else None
    return array if perm is None else np.ascontiguousarray(np.transpose(array, perm))


def from_layout(array, axes: str, layout: str):
    """An array read from a file in ``layout`` rearranged to the canonical NCHW/OIHW order."""
    perm = NHWC_PERMUTATION.get(axes) if check_layout(layout) == "nhwc" else None
    return array if perm is None else np.ascontiguousarray(np.transpose(array, np.argsort(perm)))


def _npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    # asarray(order='C'), not ascontiguousarray, which makes a 0-d array (a scalar) 1-d
    np.lib.format.write_array(buffer, np.asarray(array, order="C"), allow_pickle=False)
    return buffer.getvalue()


def write_npz(path, arrays: dict):
    """Write ``arrays`` (name -> array) as an uncompressed ``.npz``, byte for byte reproducibly.

    ``numpy.savez`` stamps each entry with the current time; here every entry gets
    :data:`ZIP_DATE`, Unix permissions 0644 and the order of ``arrays``. The file is written
    to a temporary name and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            info.create_system = 3  # Unix, on every platform
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, _npy_bytes(array))
    os.replace(tmp, path)


def read_npz(path, what: str = "file") -> dict:
    """The arrays of an ``.npz`` as a dict; ``GoldenFormatError`` naming ``path`` if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise GoldenFormatError(
            f"could not read {what} {path} as an .npz archive of .npy arrays ({exc})"
        ) from exc


# A JSON list or object that holds no list or object (a shape, a layer's settings).
_FLAT = {
    "[": re.compile(r"\[\s*\n\s*([^\[\]{}]*?)\s*\n\s*\]"),
    "{": re.compile(r"\{\s*\n\s*([^\[\]{}]*?)\s*\n\s*\}"),
}
_CLOSE = {"[": "]", "{": "}"}


def manifest_text(manifest: dict) -> str:
    """``manifest`` as JSON: 2-space indent, keys in the order given, and every list, and every
    object of scalars that fits in 80 characters, on one line."""
    text = json.dumps(manifest, indent=2)
    for bracket, pattern in _FLAT.items():

        def join(match, bracket=bracket):
            one_line = bracket + re.sub(r",\s*\n\s*", ", ", match.group(1)) + _CLOSE[bracket]
            return one_line if bracket == "[" or len(one_line) <= 80 else match.group(0)

        text = pattern.sub(join, text)
    return text + "\n"


def write_manifest(directory, manifest: dict):
    """Write ``DIR/manifest.json`` (:func:`manifest_text`), atomically."""
    path = Path(directory) / MANIFEST
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(manifest_text(manifest))
    os.replace(tmp, path)


def read_manifest(directory) -> dict:
    """Read and check ``DIR/manifest.json``: the kit's format and this version of it.

    Raises ``FileNotFoundError`` (no manifest: not a golden directory) or
    :class:`GoldenFormatError` (not JSON, another format, another format version).
    """
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"no {MANIFEST} in {directory}: not a golden directory (write one with "
            "`python -m refimpl golden --out DIR`)"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GoldenFormatError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GoldenFormatError(f"{path} is not a refimpl golden manifest (no format {FORMAT!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise GoldenFormatError(
            f"{path} has format version {version!r}, but this refimpl reads version "
            f"{FORMAT_VERSION}: write the golden set again with this refimpl "
            "(`python -m refimpl golden --out DIR`), or use the refimpl that wrote it"
        )
    return manifest
