"""``python -m refimpl golden``: write golden test vectors for checking another implementation."""

from __future__ import annotations

from refimpl.crosscheck import CASES, write_golden
from refimpl.crosscheck.fileformat import LAYOUTS


def case_list(text: str) -> list:
    """``--cases a,b,c`` as a list of names (checked against the cases by the command)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def add_parser(commands):
    p = commands.add_parser(
        "golden",
        help="write golden test vectors (npz + manifest.json) to check another implementation",
        description=(
            "Write one CASE.npz per case (inputs, parameters, pre-drawn noise, expected outputs) "
            "and manifest.json (what each case computes, its equation, every array's shape, "
            "dtype and axes, sigma, the Langevin update written out, float64 and float32 "
            "tolerances). Run your implementation on the inputs, save its outputs under the same "
            "names in RESULTS/CASE.npz, then `python -m refimpl crosscheck DIR RESULTS`. The same "
            f"seed gives byte-identical files. Cases: {', '.join(c.name for c in CASES)}."
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write (created)")
    p.add_argument("--seed", type=int, default=0, help="seed of every case (default: 0)")
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="nchw",
        help="nchw: NCHW images, OIHW filters (refimpl, PyTorch; default); nhwc: NHWC images, "
        "HWIO filters (TensorFlow, JAX)",
    )
    p.add_argument(
        "--cases", type=case_list, metavar="A,B,...", help="write only these cases (default: all)"
    )
    p.set_defaults(run=run)


def run(args) -> int:
    manifest = write_golden(args.out, args.seed, args.layout, args.cases)
    names = list(manifest["cases"])
    print(
        f"wrote {len(names)} golden cases ({args.layout}, seed {args.seed}) and manifest.json "
        f"to {args.out}:"
    )
    for name in names:
        entry = manifest["cases"][name]
        outputs = [k for k, v in entry["arrays"].items() if v["role"] == "output"]
        print(f"  {entry['file']:<18} {', '.join(outputs)}")
    print(
        f"\nnext: compute the outputs with your implementation, save them as RESULTS/CASE.npz "
        f"under the same names, and run\n  python -m refimpl crosscheck {args.out} RESULTS"
    )
    return 0
