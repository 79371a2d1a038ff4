"""Classifier benchmark: every model and training mode on the digits, over several seeds.

What is run
-----------
For each row (model, training mode, variant) and each seed, the default configuration of
:func:`refimpl.classify.training.default_config` is trained and evaluated by
:func:`refimpl.classify.experiment.run_experiment`, as ``python -m refimpl classify`` runs it,
into a run folder ``<runs>/<row>-s<seed>/`` (``metrics.json``, ``predictions.npz``, the three
figures, and ``history.json``, the training record of every iteration). A run folder that
already holds ``metrics.json`` for the same configuration is reused; ``--force`` trains again.

Rows: the softmax ConvNet trained discriminatively and generatively (Dai, Lu & Wu's batch
gradient, and with Langevin expectations of Xie et al.'s Eq. (3.1)); GMMC trained
discriminatively, generatively (staged and noise-injected sampling) and jointly; JEM from the
start and jointly (after discriminative pre-training), as in Yang et al. (GMMC) section 4.

What is measured
----------------
Per run: test accuracy, ECE (20 bins, a fraction; GMMC Eq. (12)), AUROC of each OOD set
(noise, texture, interp, inverted; see :mod:`refimpl.classify.data`) for each score function
(``log p(x)``, ``max_y p(y|x)``, ``-|d log p(x)/dx|``; GMMC section 4.3), accuracy under
L-infinity PGD-40 at 4, 8, 16, 32 / 255 of the intensity range (GMMC Table 5), training time,
and for the modes with samples how far the energies ran away (:func:`energy_excursion`,
GMMC section 4.5 and appendix E). A
run that diverges (:class:`~refimpl.classify.training.DivergenceError`) is counted and left
out of the means. Tables give mean +- standard deviation over the seeds that finished.

Outputs
-------
``<out>/classifiers.md`` (tables), ``<out>/classifiers.json`` (every run's numbers) and, with
``--figures DIR``, the figures of the seed-0 runs (``classify_*.png``). ``--quick`` is a smoke
run (a few iterations, a small evaluation): it writes ``classifiers-quick.*`` under
``<runs>-quick`` and is marked QUICK.

Run ``OPENBLAS_NUM_THREADS=1 python benchmarks/classifiers.py --figures docs/figures``
(9 rows x 3 seeds, about 30-50 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from common import machine  # benchmarks/common.py: the header every benchmark reports

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from refimpl.classify.data import OOD_NAMES  # noqa: E402
from refimpl.classify.experiment import (  # noqa: E402
    SCORES,
    Evaluation,
    make_trainer,
    run_experiment,
)
from refimpl.classify.training import (  # noqa: E402
    DivergenceError,
    default_config,
    excursion_start,
)

# name: (model, training, overrides of the default configuration, label)
ROWS = {
    "softmax-discriminative": ("softmax", "discriminative", {}, "softmax, discriminative"),
    "softmax-generative": ("softmax", "generative", {}, "softmax, generative (batch, DLW)"),
    "softmax-generative-langevin": (
        "softmax",
        "generative",
        {"expectation": "langevin", "learning_rate": 3e-4},
        "softmax, generative (Langevin)",
    ),
    "gmmc-discriminative": ("gmmc", "discriminative", {}, "GMMC (Dis)"),
    "gmmc-generative": ("gmmc", "generative", {}, "GMMC (Gen), staged"),
    # noise-injected sampling with the authors' target spread 0.001 is staged sampling to three
    # digits (the injected noise is 1000 times smaller than the drift); 0.5 is about the gamma
    # that GMMC estimates on the digits (section 3.4), so that the noise matters
    "gmmc-generative-noise": (
        "gmmc",
        "generative",
        {"sampler": "noise", "sampler_gamma": 0.5},
        "GMMC (Gen), noise-inj. (gamma 0.5)",
    ),
    "gmmc-joint": ("gmmc", "joint", {}, "GMMC (joint)"),
    "jem-generative": ("jem", "generative", {}, "JEM"),
    "jem-joint": ("jem", "joint", {}, "JEM (joint)"),
}
QUICK_CONFIG = dict(iterations=4, sampler_steps=2, langevin_steps=2, chains=16, buffer_size=640)
QUICK_EVALUATION = Evaluation(
    pgd_steps=2, samples_per_class=2, sample_steps=2, samples_shown=2, epsilons=(8 / 255,)
)
# docs figure name: (row, file, which seed of --seeds). JEM's first seed exploded at the end
# of its run (see classify_joint.png); its calibration, OOD and sample figures are from the
# second seed, a run that finished normally.
FIGURES = {
    "classify_samples_softmax.png": ("softmax-discriminative", "samples.png", 0),
    "classify_samples_softmax_generative.png": ("softmax-generative-langevin", "samples.png", 0),
    "classify_samples_gmmc.png": ("gmmc-generative", "samples.png", 0),
    "classify_samples_jem.png": ("jem-generative", "samples.png", 1),
    "classify_reliability_softmax.png": ("softmax-discriminative", "reliability.png", 0),
    "classify_reliability_gmmc.png": ("gmmc-generative", "reliability.png", 0),
    "classify_reliability_jem.png": ("jem-generative", "reliability.png", 1),
    "classify_ood_softmax.png": ("softmax-discriminative", "ood.png", 0),
    "classify_ood_gmmc.png": ("gmmc-generative", "ood.png", 0),
    "classify_ood_jem.png": ("jem-generative", "ood.png", 1),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--rows", nargs="+", choices=sorted(ROWS), default=list(ROWS), help="rows to run"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "benchmarks" / "classifiers")
    parser.add_argument("--figures", type=Path, help="copy the seed-0 figures here")
    parser.add_argument("--force", action="store_true", help="train again, ignore finished runs")
    parser.add_argument("--quick", action="store_true", help="smoke run (tiny), marked QUICK")
    return parser.parse_args(argv)


def configuration(row: str, seed: int, quick: bool):
    model, training, overrides, _ = ROWS[row]
    values = dict(overrides, **(QUICK_CONFIG if quick else {}))
    if quick and training == "joint":
        values["pretrain_iterations"] = 2
    return default_config(model, training, seed, **values)


def energy_excursion(history: dict, config) -> float | None:
    """How far the energies of a run with samples ran away (GMMC section 4.5, appendix E).

    ``max_t max(|E_data(t)|, |E_samples(t)|) / median_t |E_data(t)|`` over the generative phase:
    from the switch on for a joint run (the explosion GMMC's Table 10 shows for JEM happens
    right there), from 10% of the iterations on otherwise (after the transient from the
    random start; :func:`refimpl.classify.training.excursion_start`, where the relative
    divergence check's band starts too). About 1-3 for a run whose energies stay put; the JEM
    explosions of the paper are 1e5 and more. None for runs without samples.
    """
    if config.training == "discriminative" or (
        config.model == "softmax" and config.expectation == "batch"
    ):
        return None
    start = excursion_start(config)
    data = [abs(v) for v in history["energy_data"][start:]]
    both = data + [abs(v) for v in history["energy_samples"][start:] if v is not None]
    if not data:
        return None
    return max(both) / max(float(np.median(data)), 1e-12)


def run_one(row: str, seed: int, args) -> dict:
    config = configuration(row, seed, args.quick)
    folder = args.runs / f"{row}-s{seed}"
    done = folder / "metrics.json"
    if done.is_file() and not args.force:
        stored = json.loads(done.read_text())
        if stored.get("config") == config.to_dict():
            print(f"{row} seed {seed}: reused {folder}", flush=True)
            history = json.loads((folder / "history.json").read_text())
            stored["energy_excursion"] = energy_excursion(history, config)
            stored["reused"] = True
            return stored
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    trainer = make_trainer(config.model, config.training, seed, config)
    evaluation = QUICK_EVALUATION if args.quick else Evaluation()
    start = time.perf_counter()
    try:
        result = run_experiment(
            config.model, trainer=trainer, out=folder, progress=False, evaluation=evaluation
        )
    except DivergenceError as exc:
        result = dict(
            model=config.model,
            training=config.training,
            seed=seed,
            diverged=str(exc),
            diverged_at=trainer.iteration + 1,
            config=config.to_dict(),
        )
    result["row"] = row
    result["energy_excursion"] = energy_excursion(trainer.history, config)
    (folder / "history.json").write_text(json.dumps(trainer.history))
    (folder / "metrics.json").write_text(json.dumps(result, indent=2))
    state = "diverged" if "diverged" in result else f"accuracy {result['accuracy']:.3f}"
    print(f"{row} seed {seed}: {state} ({time.perf_counter() - start:.0f} s)", flush=True)
    return result


def summarise(runs: list) -> dict:
    """Mean and standard deviation (over the seeds that finished) of every number."""
    ok = [r for r in runs if "diverged" not in r]
    out = dict(n=len(runs), finished=len(ok), diverged=[r["seed"] for r in runs if r not in ok])
    if not ok:
        return out

    def stat(values):
        values = np.asarray(values, dtype=float)
        return dict(
            mean=float(values.mean()), std=float(values.std(ddof=1)) if len(values) > 1 else 0.0
        )

    out["accuracy"] = stat([r["accuracy"] for r in ok])
    out["ece"] = stat([r["ece"] for r in ok])
    out["train_seconds"] = stat([r["train_seconds"] for r in ok])
    out["pgd"] = [
        stat([r["pgd"]["accuracy"][i] for r in ok]) for i in range(len(ok[0]["pgd"]["accuracy"]))
    ]
    out["epsilon_fraction"] = ok[0]["pgd"]["epsilon_fraction_of_range"]
    out["auroc"] = {
        name: {s: stat([r["auroc"][name][s] for r in ok]) for s in SCORES} for name in OOD_NAMES
    }
    excursions = [r["energy_excursion"] for r in runs if r.get("energy_excursion") is not None]
    out["energy_excursion"] = excursions or None
    return out


def cell(s: dict, digits: int = 3, scale: float = 1.0) -> str:
    return f"{scale * s['mean']:.{digits}f} ± {scale * s['std']:.{digits}f}"


def markdown(summary: dict, env: dict, quick: bool) -> str:
    lines = [
        "# Classifier benchmark" + (" (QUICK RUN: smoke test, do not quote)" if quick else ""),
        "",
        f"Digits split 1346 / 451, seeds {env['seeds']}; mean ± std over the seeds that finished. "
        f"{env['date']}, {env['cpu_count']} CPUs, load {env['load_average_at_start']} at start, "
        f"refimpl {env['refimpl']}. Command: `{env['command']}`.",
    ]
    if env.get("reused"):
        lines.append(
            f"{env['reused']} of the runs were reused from an earlier invocation (their training "
            "times were measured then, on the same machine)."
        )
    lines.append("")
    any_row = next((s for s in summary.values() if "accuracy" in s), None)
    eps = any_row["epsilon_fraction"] if any_row else []
    head = ["model, training", "finished", "accuracy", "ECE (fraction)"]
    head += [f"PGD {round(255 * e)}/255" for e in eps] + ["train s", "energy excursion per seed"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, s in summary.items():
        label = ROWS[row][3]
        if "accuracy" not in s:
            lines.append(f"| {label} | 0 / {s['n']} (diverged) |" + " |" * (len(head) - 2))
            continue
        excursion = s["energy_excursion"]
        energy = "" if excursion is None else ", ".join(f"{e:.3g}" for e in excursion)
        cells = [label, f"{s['finished']} / {s['n']}", cell(s["accuracy"]), cell(s["ece"], 4)]
        cells += [cell(p) for p in s["pgd"]] + [cell(s["train_seconds"], 0), energy]
        lines.append("| " + " | ".join(cells) + " |")
    titles = {
        "log_px": "input density log p(x)",
        "max_prob": "max_y p(y | x)",
        "neg_grad_norm": "approximate mass -|d log p(x)/dx|",
    }
    for score in SCORES:
        lines += ["", f"AUROC, score {titles[score]}:", ""]
        lines += ["| model, training | " + " | ".join(OOD_NAMES) + " |", "|---" * 5 + "|"]
        for row, s in summary.items():
            if "auroc" in s:
                cells = [cell(s["auroc"][name][score]) for name in OOD_NAMES]
                lines.append(f"| {ROWS[row][3]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def environment(args) -> dict:
    return {**machine(), "quick": args.quick, "seeds": args.seeds}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.runs = args.runs.with_name(args.runs.name + "-quick")
    env = environment(args)
    runs = {row: [run_one(row, seed, args) for seed in args.seeds] for row in args.rows}
    summary = {row: summarise(r) for row, r in runs.items()}
    env["reused"] = sum(bool(r.get("reused")) for rs in runs.values() for r in rs)
    stem = "classifiers-quick" if args.quick else "classifiers"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.md").write_text(markdown(summary, env, args.quick))
    payload = dict(environment=env, summary=summary, runs=runs)
    (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=2))
    if args.figures is not None:
        args.figures.mkdir(parents=True, exist_ok=True)
        for name, (row, file, which) in FIGURES.items():
            seed = args.seeds[min(which, len(args.seeds) - 1)]
            source = args.runs / f"{row}-s{seed}" / file
            if row in args.rows and source.is_file():
                shutil.copy(source, args.figures / name)
        from refimpl import plotting

        plotting.save(joint_figure(args), args.figures / "classify_joint.png")
    print(f"wrote {args.out / stem}.md and .json")
    return 0


def joint_figure(args):
    """Mean energies of data and samples per iteration: the joint runs and JEM, first seed."""
    from refimpl import plotting

    rows = ("gmmc-joint", "jem-joint", "jem-generative")
    fig, axes = plotting.figure(1, len(rows), figsize=(5.2 * len(rows), 3.8))
    for ax, row in zip(axes, rows, strict=True):
        path = args.runs / f"{row}-s{args.seeds[0]}" / "history.json"
        if not path.is_file():
            ax.set_axis_off()
            continue
        history = json.loads(path.read_text())
        its = history["iteration"]
        for key, label in (("energy_data", "data"), ("energy_samples", "samples")):
            values = [np.nan if v is None else v for v in history[key]]
            ax.plot(its, values, lw=0.8, label=label)
        config = configuration(row, args.seeds[0], args.quick)
        if config.training == "joint":
            ax.axvline(config.pretrain_iterations, color="0.5", ls=":", lw=1, label="switch")
        title = f"{ROWS[row][3]}, seed {args.seeds[0]}"
        ax.set(xlabel="iteration", ylabel="mean energy (symlog)", title=title)
        ax.set_yscale("symlog")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(main())
