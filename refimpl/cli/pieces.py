"""``python -m refimpl pieces``: the piecewise-linear structure of a ConvNet, shown on a real image.

A random ReLU ConvNet is applied to a bundled texture (intensities in [0, 255] minus the
mean, as in section 8). The run checks, on that image, the identities of section 6:

* ``f(I) = alpha + <I, B>``                                   Eq. (6.8)
* ``B`` by top-down deconvolution equals ``df/dI`` by backprop  Eqs. (6.7), (9.2)
* ``B`` and ``alpha`` as sums of basis functions                Eqs. (6.13)-(6.14)
* ``z^(l) = a^(l) + <I, b^(l)>`` at every layer                 Eq. (6.12)
* an image moved inside the piece keeps ``alpha`` and ``B``
* along a line ``I + t d`` the score is exactly linear between the kinks where the
  activation pattern changes, with slope ``<d, B>`` (the pieces crossed are counted)

and draws the image, its reconstruction ``B`` (the mean of its Gaussian piece, Theorem 1),
the activation maps, the score along the line, and basis images ``b^(l)_{k,x}`` of every
layer. Outputs ``pieces.png``, ``basis.png`` and ``summary.json`` in the output folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from refimpl.backend import available_backends, host_rng, to_backend, to_numpy
from refimpl.cli.options import positive_int
from refimpl.convnet import ConvNet, basis_functions, piece_from_basis
from refimpl.convnet.pieces import image_in_same_piece, line_through_pieces
from refimpl.data import TEXTURES, centre, default_factor, fit_texture, load_image, resolve_image
from refimpl.numerics import EXACT, piece_residual, relative_error
from refimpl.run_folder import write_json
from refimpl.theorems.result import CheckResult, format_table

DEFAULT_SPEC = [(8, 5, 2, 2), (8, 3, 1, 1), (4, 3, 1, 0)]


def _check(name: str, claim: str, equation: str, residual: float) -> CheckResult:
    """A float64 identity on one image: exact to rounding (:data:`refimpl.numerics.EXACT`)."""
    return CheckResult(name, claim, equation, residual, EXACT)


@dataclass
class PiecesReport:
    """The identities checked on the image, and the facts worth printing."""

    checks: list = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def table(self) -> str:
        return format_table(self.checks)


def analyse(
    net: ConvNet, I, seed=0, line_points: int = 2001, line_length: float = 0.1
) -> tuple[PiecesReport, dict]:
    """Run every check on one image ``I (1, C, H, W)``; returns the report and arrays to plot.

    The line is ``I + t d`` with ``||d|| = ||I||`` and ``|t| <= line_length / 2``: short
    enough that most segments between kinks hold many sample points.
    """
    xp = net.xp
    report = PiecesReport()
    f = net.score(I)
    alpha, B = net.linear_piece(I)
    fwd = net.forward(I)
    pattern = net.activation_pattern(I)
    basis = basis_functions(net, I)
    alpha_b, B_b = piece_from_basis(basis[-1], pattern[-1])
    inner = float((I * B).sum())
    checks = report.checks
    checks.append(
        _check("piece-identity", "f(I) = alpha + <I, B>", "(6.8)", piece_residual(f, alpha, B, I))
    )
    checks.append(
        _check(
            "deconvolution-is-backprop",
            "B by deconvolution = df/dI by backprop",
            "(6.7),(9.2)",
            relative_error(B, net.grad_input(I)),
        )
    )
    checks.append(
        _check(
            "basis-sum",
            "B = sum of top-layer basis functions",
            "(6.14)",
            relative_error(B_b, B),
        )
    )
    checks.append(
        _check(
            "basis-offsets",
            "alpha = sum of top-layer basis offsets",
            "(6.14)",
            relative_error(alpha_b, alpha),
        )
    )
    z_gap = max(
        relative_error(a + xp.einsum("mkijchw,mchw->mkij", b, I), z)
        for (a, b), z in zip(basis, fwd.pre_activations)
    )
    checks.append(_check("layer-pieces", "z = a + <I, b> at every layer", "(6.12)-(6.13)", z_gap))

    rng = host_rng(seed)
    direction = to_backend(rng.standard_normal(I.shape), xp, net.dtype)
    direction *= float(xp.linalg.norm(I)) / float(xp.linalg.norm(direction))
    J, step = image_in_same_piece(net, I, 0.1 * direction)
    if J is not None:
        alpha_j, B_j = net.linear_piece(J)
        checks.append(
            _check(
                "same-piece",
                "image moved within the piece keeps alpha and B",
                "(6.8)",
                max(relative_error(B_j, B), relative_error(alpha_j, alpha)),
            )
        )
        report.facts["within_piece_move"] = float(step * 0.1)
    line = line_through_pieces(
        net, I, direction, xp.linspace(-line_length / 2, line_length / 2, line_points)
    )
    checks.append(
        _check(
            "linear-between-kinks",
            "f linear between kinks along I + t d",
            "(6.8)",
            line.max_residual,
        )
    )
    report.facts.update(
        score=float(f[0]),
        alpha=float(alpha[0]),
        inner_product=inner,
        pieces_crossed_on_line=line.pieces_crossed,
        line_points=line_points,
        line_points_in_segments_of_3_or_more=line.points_tested,
        active_fraction_per_layer=[float(d.mean()) for d in pattern],
        units_per_layer=[int(d.size) for d in pattern],
    )
    arrays = dict(I=I[0], B=B[0], pattern=pattern, basis=basis, line=line)
    return report, arrays


def draw(arrays, report: PiecesReport, out: Path, plotting) -> list:
    """Write ``pieces.png`` and ``basis.png``; returns their paths."""
    fig, axes = plotting.figure(2, 3, figsize=(12, 7.5))
    plotting.show_image(axes[0, 0], arrays["I"], "image I (in [0,255] minus mean)")
    plotting.show_image(
        axes[0, 1], arrays["B"], "B = df/dI: mean of I's Gaussian piece (sigma=1)", signed=True
    )
    fractions = report.facts["active_fraction_per_layer"]
    axes[0, 2].bar(range(1, len(fractions) + 1), fractions, color="tab:blue")
    axes[0, 2].set(
        xlabel="layer l",
        ylabel="fraction of units on",
        ylim=(0, 1),
        title="activation pattern delta (6.4)",
    )
    axes[0, 2].set_xticks(range(1, len(fractions) + 1))
    line = arrays["line"]
    ts, scores = to_numpy(line.ts), to_numpy(line.scores)
    wide = plotting.plt.subplot2grid((2, 3), (1, 0), colspan=3, fig=fig)
    for ax in axes[1]:
        ax.remove()
    wide.plot(ts, scores, color="black", lw=1)
    for t in ts[to_numpy(line.kinks)]:
        wide.axvline(t, color="tab:red", lw=0.3, alpha=0.5)
    wide.set(
        xlabel="t",
        ylabel="f(I + t d)",
        title=f"score along a random line: {line.pieces_crossed} linear pieces (kinks in red), "
        f"linearity residual {line.max_residual:.1e}",
    )
    fig.tight_layout()
    paths = [plotting.save(fig, out / "pieces.png")]

    images, titles = [], []
    for l, (_, b) in enumerate(arrays["basis"], start=1):
        b = to_numpy(b)[0]  # (N_l, H_l, W_l, C, H, W)
        n_l, h_l, w_l = b.shape[:3]
        for k in range(min(n_l, 6)):
            images.append(b[k, h_l // 2, w_l // 2])
            titles.append(f"b^({l})_k={k}, x=centre")
        images.extend([None] * (6 - min(n_l, 6)))
        titles.extend([""] * (6 - min(n_l, 6)))
    fig = plotting.image_grid(images, titles, columns=6, signed=True)
    fig.suptitle("basis images b^(l)_{k,x} (6.13): composed bottom-up, gated by delta", fontsize=10)
    fig.tight_layout()
    paths.append(plotting.save(fig, out / "basis.png"))
    return paths


def run(
    image: str = "brick",
    size: int = 32,
    factor: int | None = None,
    seed: int = 0,
    out: str | Path = "runs/pieces",
    spec=None,
    backend=None,
    quiet: bool = False,
) -> PiecesReport:
    """Load the image, build a random ConvNet, run :func:`analyse`, draw, save ``summary.json``.

    ``factor`` None: :func:`refimpl.data.default_factor` (8 for the bundled 512 x 512
    textures at the default size 32).
    """
    from refimpl import plotting  # matplotlib is imported only by the commands that draw

    out = Path(out)
    original = load_image(resolve_image(image))
    factor = default_factor(original.shape, size) if factor is None else factor
    pixels = fit_texture(original, image, size, factor)[None]  # (1, C, H, W) in [0, 255]
    centred, _ = centre(pixels)
    spec = spec or DEFAULT_SPEC
    net = ConvNet.random(centred.shape[1], spec, seed=seed, backend=backend)
    I = to_backend(centred, net.xp, net.dtype)
    report, arrays = analyse(net, I, seed=seed)
    paths = draw(arrays, report, out, plotting)
    summary = dict(
        image=image,
        size=size,
        factor=factor,
        seed=seed,
        architecture=[list(s) for s in net.spec()],
        checks=[c.as_dict() for c in report.checks],
        facts=report.facts,
        figures=[str(p) for p in paths],
        passed=report.passed,
    )
    write_json(out / "summary.json", summary)
    if not quiet:
        print(f"ConvNet {[tuple(s) for s in net.spec()]} on {image} ({size}x{size}), seed {seed}")
        print(report.table())
        facts = report.facts
        print(
            f"\nf(I) = {facts['score']:.4f} = alpha {facts['alpha']:.4f} "
            f"+ <I, B> {facts['inner_product']:.4f}"
        )
        print(
            f"a random line through I crosses {facts['pieces_crossed_on_line']} pieces; "
            f"{facts['line_points_in_segments_of_3_or_more']} of its {facts['line_points']} points "
            "lie in pieces sampled 3+ times, where f is exactly linear"
        )
        print(
            "fraction of units on per layer: "
            f"{[round(x, 3) for x in facts['active_fraction_per_layer']]}"
        )
        print(f"wrote {', '.join(str(p) for p in paths)} and {out / 'summary.json'}")
    return report


def add_parser(commands):
    p = commands.add_parser(
        "pieces",
        help="show and check the piecewise-linear structure of a ConvNet on an image",
        description=(
            "Apply a random 3-layer ReLU ConvNet to an image (intensities in [0,255] minus the "
            "mean) and check Eqs. (6.7)-(6.14) on it: f = alpha + <I, B>, B by deconvolution = "
            "df/dI by backprop = sum of basis functions, z = a + <I, b> per layer, and that f is "
            "exactly linear between the kinks of a line through image space. Writes pieces.png, "
            "basis.png and summary.json; exits 1 if any check fails."
        ),
    )
    p.add_argument(
        "--image",
        default="brick",
        help=f"a bundled texture ({', '.join(TEXTURES)}) or a path to an image file "
        "(default: brick)",
    )
    p.add_argument(
        "--size",
        type=positive_int,
        default=32,
        help="side of the centre crop, in pixels after downsampling (default: 32)",
    )
    p.add_argument(
        "--factor",
        type=positive_int,
        default=None,
        help="downsample by averaging factor x factor blocks first (default: the largest "
        "factor that keeps the image's shorter side at least twice --size; 8 for the bundled "
        "textures at size 32, 1 for an image smaller than that)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the random network and line (default: 0)"
    )
    p.add_argument("--out", default="runs/pieces", help="output folder (default: runs/pieces)")
    p.add_argument(
        "--backend",
        choices=available_backends(),
        default=None,
        help="array backend (default: $REFIMPL_BACKEND or numpy)",
    )
    p.set_defaults(run=command)


def command(args) -> int:
    """Run the ``pieces`` command; exit status 1 if a check fails."""
    report = run(
        image=args.image,
        size=args.size,
        factor=args.factor,
        seed=args.seed,
        out=args.out,
        backend=args.backend,
    )
    return 0 if report.passed else 1
