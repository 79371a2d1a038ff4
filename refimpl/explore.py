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

import json
from dataclasses import dataclass, field
from pathlib import Path

from refimpl.backend import host_rng, to_backend, to_numpy
from refimpl.convnet import ConvNet, basis_functions, piece_from_basis
from refimpl.convnet.pieces import image_in_same_piece, line_through_pieces
from refimpl.data import centre, load_texture

# float64 identities hold to ~1e-15; a real bug shows at 1e-3 or worse.
TOLERANCE = 1e-10
DEFAULT_SPEC = [(8, 5, 2, 2), (8, 3, 1, 1), (4, 3, 1, 0)]


@dataclass
class Check:
    claim: str
    equation: str
    residual: float
    tolerance: float = TOLERANCE

    @property
    def passed(self) -> bool:
        return self.residual <= self.tolerance


@dataclass
class PiecesReport:
    checks: list = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def table(self) -> str:
        rows = [f"{'claim':58s} {'equation':12s} {'residual':>10s} {'tol':>7s}  result"]
        for c in self.checks:
            rows.append(
                f"{c.claim:58s} {c.equation:12s} {c.residual:10.1e} {c.tolerance:7.0e}  "
                f"{'PASS' if c.passed else 'FAIL'}"
            )
        return "\n".join(rows)


def _relative(xp, a, b) -> float:
    scale = max(float(xp.linalg.norm(a)), float(xp.linalg.norm(b)), 1e-300)
    return float(xp.linalg.norm(a - b)) / scale


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
    gap = abs(float(f[0]) - float(alpha[0]) - inner) / (
        abs(float(f[0])) + abs(float(alpha[0])) + float(xp.abs(I * B).sum())
    )
    report.checks.append(Check("f(I) = alpha + <I, B>", "(6.8)", gap))
    report.checks.append(
        Check(
            "B by deconvolution = df/dI by backprop",
            "(6.7),(9.2)",
            _relative(xp, B, net.grad_input(I)),
        )
    )
    report.checks.append(
        Check("B = sum of top-layer basis functions", "(6.14)", _relative(xp, B_b, B))
    )
    report.checks.append(
        Check("alpha = sum of top-layer basis offsets", "(6.14)", _relative(xp, alpha_b, alpha))
    )
    z_gap = max(
        _relative(xp, a + xp.einsum("mkijchw,mchw->mkij", b, I), z)
        for (a, b), z in zip(basis, fwd.pre_activations)
    )
    report.checks.append(Check("z = a + <I, b> at every layer", "(6.12)-(6.13)", z_gap))

    rng = host_rng(seed)
    direction = to_backend(rng.standard_normal(I.shape), xp, net.dtype)
    direction *= float(xp.linalg.norm(I)) / float(xp.linalg.norm(direction))
    J, step = image_in_same_piece(net, I, 0.1 * direction)
    if J is not None:
        alpha_j, B_j = net.linear_piece(J)
        report.checks.append(
            Check(
                "image moved within the piece keeps alpha and B",
                "(6.8)",
                max(_relative(xp, B_j, B), _relative(xp, alpha_j, alpha)),
            )
        )
        report.facts["within_piece_move"] = float(step * 0.1)
    line = line_through_pieces(
        net, I, direction, xp.linspace(-line_length / 2, line_length / 2, line_points)
    )
    report.checks.append(Check("f linear between kinks along I + t d", "(6.8)", line.max_residual))
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
    factor: int = 8,
    seed: int = 0,
    out: str | Path = "runs/pieces",
    spec=None,
    backend=None,
    quiet: bool = False,
) -> PiecesReport:
    """Load the image, build a random ConvNet, run :func:`analyse`, draw, save ``summary.json``."""
    from refimpl import plotting

    out = Path(out)
    pixels = load_texture(image, size=size, factor=factor)[None]  # (1, C, H, W) in [0, 255]
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
        checks=[
            dict(
                claim=c.claim,
                equation=c.equation,
                residual=c.residual,
                tolerance=c.tolerance,
                passed=c.passed,
            )
            for c in report.checks
        ],
        facts=report.facts,
        figures=[str(p) for p in paths],
        passed=report.passed,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if not quiet:
        print(f"ConvNet {[tuple(s) for s in net.spec()]} on {image} ({size}x{size}), seed {seed}")
        print(report.table())
        facts = report.facts
        print(
            f"\nf(I) = {facts['score']:.4f} = alpha {facts['alpha']:.4f} + <I, B> {facts['inner_product']:.4f}"
        )
        print(
            f"a random line through I crosses {facts['pieces_crossed_on_line']} pieces; "
            f"{facts['line_points_in_segments_of_3_or_more']} of its {facts['line_points']} points "
            "lie in pieces sampled 3+ times, where f is exactly linear"
        )
        print(
            f"fraction of units on per layer: {[round(x, 3) for x in facts['active_fraction_per_layer']]}"
        )
        print(f"wrote {', '.join(str(p) for p in paths)} and {out / 'summary.json'}")
    return report
