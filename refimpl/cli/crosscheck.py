"""``python -m refimpl crosscheck``: another implementation's results against the golden set."""

from __future__ import annotations

from refimpl.cli.golden import case_list
from refimpl.crosscheck import compare
from refimpl.crosscheck.compare import PRECISIONS


def add_parser(commands):
    p = commands.add_parser(
        "crosscheck",
        help="compare your implementation's results with golden vectors (PASS/FAIL per quantity)",
        description=(
            "Read the golden set in GOLDEN_DIR (from `python -m refimpl golden`) and your outputs "
            "in RESULTS_DIR (one CASE.npz per case, arrays named as in the manifest, in the golden "
            "set's layout), and print, per case and quantity, the largest absolute and relative "
            "errors, the tolerance and PASS/FAIL, with a hint where a common mistake explains a "
            "failure (Langevin drift eps^2 instead of eps^2/2, a flipped kernel, NHWC for NCHW, a "
            "forgotten ReLU mask, ...). float32 arrays get the float32 tolerances. Exit status 1 "
            "if anything fails (a missing case or array, a wrong shape, NaN included)."
        ),
    )
    p.add_argument("golden", metavar="GOLDEN_DIR", help="the golden set")
    p.add_argument("results", metavar="RESULTS_DIR", help="your results: CASE.npz per case")
    p.add_argument(
        "--cases",
        type=case_list,
        metavar="A,B,...",
        help="check only these cases (default: every case of the golden set; a missing one fails)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="tolerances to use: auto (by each array's dtype; default), float64 or float32",
    )
    p.set_defaults(run=run)


def run(args) -> int:
    report = compare(args.golden, args.results, args.cases, args.precision)
    print(f"golden: {args.golden} (layout {report.layout})   results: {args.results}\n")
    print(report.table())
    return 0 if report.passed else 1
