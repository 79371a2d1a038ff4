"""Atomic checkpoints: one ``.npz`` of arrays plus a JSON ``meta`` entry, written via a temp file.

A checkpoint is first written next to its destination and then moved over it with
``os.replace``, which is atomic on POSIX and Windows: an interrupted save (Ctrl-C, a full
disk, a crash) leaves the previous checkpoint intact, never a half-written one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from refimpl.backend import to_numpy


def save_checkpoint(path, arrays: dict, meta: dict) -> Path:
    """Write ``arrays`` (name -> array, any backend) and ``meta`` (JSON-able) to ``path``.

    Atomically: a temporary file in the same folder, synced, then renamed onto ``path``.
    """
    import numpy as np  # host-side file format

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {name: to_numpy(a) for name, a in arrays.items()}
    payload["meta"] = np.array(json.dumps(meta))
    handle, temp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path) -> tuple[dict, dict]:
    """``(arrays, meta)`` from a checkpoint written by :func:`save_checkpoint`."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files if name != "meta"}
            meta = json.loads(str(stored["meta"]))
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path} is not a readable refimpl checkpoint: {exc}") from exc
    return arrays, meta
