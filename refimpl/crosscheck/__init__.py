"""Checking a faster implementation against refimpl: golden vectors and their comparison.

The kit has three parts (``docs/crosscheck.md`` is the user's guide):

* :func:`write_golden` (``python -m refimpl golden --out DIR``): one ``CASE.npz`` per case
  (inputs, parameters, pre-drawn noise, expected outputs) and ``manifest.json`` (what each
  case computes, its equation and update formula, every array's shape, dtype and axes,
  sigma and the image scale, and the float64 and float32 tolerances);
* :func:`compare` (``python -m refimpl crosscheck GOLDEN RESULTS``): a verdict per case and
  quantity, with hints for the common mistakes it recognises; :func:`assert_matches` and
  :func:`check_case` for a user's own test suite;
* statistical checks of samplers whose random numbers cannot be injected
  (:mod:`refimpl.crosscheck.statistical`).

Modules: :mod:`~refimpl.crosscheck.fileformat` (files, layouts), :mod:`~.cases` (what is
computed), :mod:`~.mistakes` (the common mistakes, as deliberately wrong variants),
:mod:`~.golden` (the writer), :mod:`~.compare`, :mod:`~.statistical`.

Host-only: golden vectors are files on the host; the statistical checks use SciPy.
"""

from refimpl.crosscheck.cases import CASES, get_case
from refimpl.crosscheck.compare import (
    GoldenSet,
    Report,
    Row,
    assert_matches,
    check_case,
    compare,
    load_case,
)
from refimpl.crosscheck.fileformat import FORMAT_VERSION, GoldenFormatError, read_manifest
from refimpl.crosscheck.golden import write_golden

__all__ = [
    "CASES",
    "FORMAT_VERSION",
    "GoldenFormatError",
    "GoldenSet",
    "Report",
    "Row",
    "assert_matches",
    "check_case",
    "compare",
    "get_case",
    "load_case",
    "read_manifest",
    "write_golden",
]
