"""Quality benchmark: do the texture preset's samples have the statistics of the training texture?

What is run
-----------
For each bundled texture (brick, grass, gravel) the script learns the ``texture`` preset
(64 x 64 centre crop of the 512 x 512 image block-averaged by 2; three layers grown one
at a time; 16 chains) into a run folder ``<out>/quality/<texture>/`` with
:func:`refimpl.learning.runs.start_run` / :func:`~refimpl.learning.runs.execute`, as
``python -m refimpl synthesize --image <texture>`` would. A finished run folder (one with
``summary.json``) whose configuration matches is reused; an interrupted one is resumed;
``--force`` deletes the folder and learns again.

What is measured
----------------
:func:`refimpl.texture_stats.texture_report` scores image sets against the training crop with
six model-independent distances (lower = closer to the training texture):

* **marginal W1**: 1-Wasserstein distance between the pixel histograms, intensity units
  (0..255);
* **spectrum**: mean absolute difference of the log10 power in 6 radial bands x 4
  orientation sectors (decades; 0.3 = a factor 2 in power);
* **filter responses**: mean over 27 Gabor / Laplacian-of-Gaussian filters at 3 scales of
  the W1 distance between response histograms, in units of the training crop's response
  std per filter (FRAME statistics);
* **kurtosis**: mean absolute log ratio of the kurtosis of 12 oriented band-pass (Gabor)
  responses: 3 for any Gaussian field, larger for edges and blobs;
* **energy correlations**: mean absolute difference of the correlations of band energies
  across neighbouring orientations and scales (after Portilla & Simoncelli);
* **relative phase**: mean modulus of the difference of the cross-scale phase coherences
  (each band against the band an octave coarser with its phase doubled, after Portilla &
  Simoncelli): ~0 for any Gaussian field, near 1 where edges align the phases of all scales.

A placement table says, per texture and statistic, where the samples sit between the phase
surrogates (0) and another real patch (1, the disjoint crop pairs).

Rows, each the mean +- std over its images of the distance to the training crop:

* **samples**: the run's synthesised images (``samples.npy``, not clipped);
* **white noise**: 16 seeded Gaussian images with the training crop's mean and std, the
  floor: no spatial structure at all;
* **phase surrogates**: 16 seeded phase-randomised surrogates of the training crop
  (:func:`refimpl.texture_stats.phase_randomised`): its power spectrum exactly, random
  phases. What a model that captured only second-order statistics would produce; the
  higher-order statistics below tell it from the real texture;
* **other crops**: the four corner 64 x 64 crops of the same block-averaged image (256 x 256
  at the preset's factor 2: disjoint from the centre, training crop; at a factor where the
  image is smaller they overlap it, and the table gives the overlap);
* **disjoint crop pairs**: the corner crops scored against each other (12 ordered pairs
  of non-overlapping crops, each in turn the reference), the honest measure of how much
  two independent 64 x 64 patches of this texture differ; not a distance to the training
  crop, but on the same scale.

Good samples score far below white noise and approach the crop rows. A sample row *below*
the crop rows means the samples are closer to the training crop than other parts of the
same texture are, i.e. the model has fitted this one crop's statistics (the learned filters
see the whole 64 x 64 image) rather than the texture's; it is not by itself a defect.
The marginal row of white noise is no floor: noise has the training mean and std by
construction, and for gray textures with near-Gaussian histograms (grass, gravel) its W1 can
beat another crop's.

The final moment mismatch per layer ``|H_obs - H_syn| / |H_obs|`` (Eqs. (7.3)-(7.4), the
model's own fit criterion) and the reconstruction error ``|I - sigma^2 B| / |I|`` come from
the run's ``summary.json``.

Outputs
-------
``<out>/quality.md`` (the tables), ``<out>/quality.json`` (everything, with per-image
values) and ``<out>/quality.png`` (per texture: training crop, another crop, white noise and
4 samples, all on the same fixed 0..255 gray scale). ``--quick`` (5 iterations per layer,
4 chains) is a smoke run: it writes ``quality-quick.*`` and runs under ``quality-quick/``,
so it never overwrites the real results, and its output is marked QUICK.

Run ``python benchmarks/quality.py`` (about 3 x 50 s of learning on 2 cores, 159 s in all).
The learning loop runs its own worker threads with single-threaded BLAS
(:mod:`refimpl.threads`), so it shares a busy machine fairly without further settings.
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

from refimpl import plotting, texture_stats
from refimpl.conv import PADDING_MODES
from refimpl.data import TEXTURES, load_texture
from refimpl.learning import runs
from refimpl.learning.presets import PRESETS, preset_config, with_padding
from refimpl.learning.trainer import DivergenceError
from refimpl.threads import keep_freed_memory

PRESET = "texture"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
QUICK_ITERATIONS = 5
QUICK_CHAINS = 4
NOISE_DRAWS = 16
# pixels cut from every side of every image for the border-free kurtosis check: the zero
# padding's lower-contrast frame is 3-6 pixels wide
BORDER = 8
SAMPLES_SHOWN = 4

ROW_LABELS = {
    "samples": "samples",
    "white noise": "white noise (mean, std matched)",
    "phase surrogates": "phase surrogates (spectrum kept)",
    "other crops": "other crops vs train",
    "disjoint crop pairs": "disjoint crop pairs (crop vs crop)",
}


# --- arguments ------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Quality benchmark of the texture preset: learn each bundled texture, then "
        "compare the samples' marginal histogram, oriented power spectrum and Gabor "
        "filter-response histograms with the training crop, against white noise and "
        "other crops of the same texture. Writes quality.{md,json,png} into --out. "
        "About 3 x 50 s of learning on 2 cores."
    )
    parser.add_argument(
        "--textures",
        default=",".join(TEXTURES),
        help=f"comma-separated bundled textures to learn and score (default: {','.join(TEXTURES)})",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=None,
        help=f"learning iterations per layer (default: the preset's, "
        f"{PRESETS[PRESET]['config']['iterations_per_layer']}; {QUICK_ITERATIONS} with --quick)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="learning seed, also seeds the white noise (default: the preset's, 0)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output folder: run folders under quality/, results quality.{md,json,png} "
        "(default: benchmarks/results)",
    )
    parser.add_argument(
        "--padding",
        choices=PADDING_MODES,
        default=None,
        help="how every layer pads its input (default: the preset's, zeros); circular writes "
        "quality-circular.* and its runs under quality-circular/",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="learn again even where a finished run folder exists (deletes it)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_ITERATIONS} iterations per layer, {QUICK_CHAINS} chains; "
        "writes quality-quick.* and marks it QUICK (do not quote the numbers)",
    )
    args = parser.parse_args(argv)
    args.textures = [t.strip() for t in args.textures.split(",") if t.strip()]
    unknown = [t for t in args.textures if t not in TEXTURES]
    if unknown or not args.textures:
        parser.error(f"unknown texture(s) {unknown}; choose from {', '.join(TEXTURES)}")
    if args.quick and args.iterations is None:
        args.iterations = QUICK_ITERATIONS
    if args.iterations is not None and args.iterations < 1:
        parser.error("--iterations must be >= 1")
    return args


def stem(args) -> str:
    circular = "-circular" if args.padding == "circular" else ""
    return "quality" + circular + ("-quick" if args.quick else "")


# --- learning -------------------------------------------------------------------------------


def comparable(config: dict) -> dict:
    """A config dict as stored in config.json, without the fields that do not change the result."""
    config = json.loads(json.dumps(config))
    for key in ("backend", "checkpoint_every"):
        config.pop(key, None)
    return config


def learn(texture: str, args) -> dict:
    """Learn (or reuse, or resume) the run for ``texture``; returns its arrays and summary."""
    overrides = dict(image=texture, iterations_per_layer=args.iterations, seed=args.seed)
    if args.padding is not None:
        overrides["spec"] = with_padding(PRESETS[PRESET]["config"]["spec"], args.padding)
    if args.quick:
        overrides["chains"] = QUICK_CHAINS
    config = preset_config(PRESET, **overrides)
    folder = args.out / stem(args) / texture
    stored = folder / runs.CONFIG
    if folder.exists() and args.force:
        if any(folder.iterdir()) and not stored.is_file():
            raise SystemExit(f"error: {folder} exists and is not a run folder; not deleting it")
        shutil.rmtree(folder)
    status = "learned"
    if stored.is_file():
        record = json.loads(stored.read_text())
        if comparable(record["config"]) != comparable(config.to_dict()):
            raise SystemExit(
                f"error: {folder} holds a run with another configuration "
                "(iterations, seed, chains, padding?); pass --force to replace it, or use "
                "another --out"
            )
        if (folder / "summary.json").is_file():
            status = "reused"
            print(f"{texture}: reusing the finished run in {folder}", file=sys.stderr, flush=True)
        else:
            with runs.resume_run(folder) as run:
                print(
                    f"{texture}: resuming {folder} at iteration {run.trainer.iteration}/"
                    f"{run.config.total_iterations}",
                    file=sys.stderr,
                    flush=True,
                )
                runs.execute(run, progress=True, stream=sys.stderr)
            status = "resumed"
    else:
        with runs.start_run(config, folder, preset=PRESET, command="synthesize") as run:
            print(
                f"{texture}: learning {config.total_iterations} iterations ({config.chains} "
                f"chains) into {folder}",
                file=sys.stderr,
                flush=True,
            )
            runs.execute(run, progress=True, stream=sys.stderr)
    return dict(
        config=config,
        folder=folder,
        status=status,
        summary=json.loads((folder / "summary.json").read_text()),
        train=np.load(folder / "train.npy")[0],
        samples=np.load(folder / "samples.npy"),
        # the persistent chains learning kept, before any torus steps (border contrast and
        # statistics do not depend on the intensity offset these lack)
        kept_chains=np.load(folder / runs.CHECKPOINT)["chains"],
    )


# --- references -----------------------------------------------------------------------------


def overlap(a: tuple, b: tuple, size: int) -> float:
    """Fraction of a ``size x size`` window at ``a = (top, left)`` shared with one at ``b``."""
    rows = max(0, size - abs(a[0] - b[0]))
    cols = max(0, size - abs(a[1] - b[1]))
    return rows * cols / size**2


def corner_crops(config) -> tuple[np.ndarray, list, tuple]:
    """The four corner crops of the block-averaged image, their positions and the training crop's.

    Returns ``(crops, positions, train_at)``: crops ``(4, C, s, s)``, their ``(top, left)``
    corners, and the training crop's ``(top, left)``.
    """
    image = load_texture(config.image, factor=config.factor)
    _, h, w = image.shape
    s = config.size
    train_at = ((h - s) // 2, (w - s) // 2)  # refimpl.data.centre_crop
    positions = [(0, 0), (0, w - s), (h - s, 0), (h - s, w - s)]
    crops = np.stack([image[:, t : t + s, l : l + s] for t, l in positions])
    return crops, positions, train_at


def disjoint_pairs_row(crops: np.ndarray, positions: list, size: int) -> dict:
    """Each crop scored against the others it does not overlap, averaged over ordered pairs."""
    values = {m: [] for m in texture_stats.METRICS}
    for j, reference in enumerate(crops):
        others = [
            crops[i]
            for i in range(len(crops))
            if i != j and overlap(positions[i], positions[j], size) == 0
        ]
        if not others:
            continue
        row = texture_stats.texture_report(reference, others)["samples"]
        for m in texture_stats.METRICS:
            values[m].extend(row[f"{m}_per_image"])
    if not values["marginal"]:
        return None
    row = dict(n=len(values["marginal"]))
    for m in texture_stats.METRICS:
        row[m] = float(np.mean(values[m]))
        row[f"{m}_std"] = float(np.std(values[m]))
        row[f"{m}_per_image"] = values[m]
    return row


def score(run: dict) -> dict:
    """The texture report of a run: samples, white noise, phase surrogates, other crops,
    disjoint crop pairs."""
    config, train, samples = run["config"], run["train"], run["samples"]
    crops, positions, train_at = corner_crops(config)
    expected = load_texture(config.image, config.size, config.factor)
    if expected.shape != train.shape or not np.allclose(expected, train):
        raise RuntimeError(f"{run['folder']}/train.npy is not the centre crop of {config.image}")
    noise = texture_stats.matched_noise(train, NOISE_DRAWS, seed=config.seed)
    surrogates = texture_stats.phase_randomised(train, NOISE_DRAWS, seed=config.seed)
    rows = texture_stats.texture_report(
        train,
        samples,
        {"white noise": noise, "phase surrogates": surrogates, "other crops": crops},
    )
    pairs = disjoint_pairs_row(crops, positions, config.size)
    if pairs is not None:
        rows["disjoint crop pairs"] = pairs
    overlaps = [overlap(p, train_at, config.size) for p in positions]
    kept = run["kept_chains"]
    return dict(
        rows=rows,
        border_free_kurtosis=border_free_kurtosis(train, samples, surrogates, crops),
        border_contrast={
            "samples": float(np.mean([texture_stats.border_contrast(x) for x in samples])),
            "chains": float(np.mean([texture_stats.border_contrast(x) for x in kept])),
            "training crop": texture_stats.border_contrast(train),
            "crops": float(np.mean([texture_stats.border_contrast(x) for x in crops])),
        },
        crops=crops,
        noise=noise,
        surrogates=surrogates,
        crop_positions=[list(p) for p in positions],
        train_position=list(train_at),
        crop_overlap_with_train=overlaps,
        samples_out_of_range=float(np.mean((samples < 0) | (samples > 255))),
    )


def border_free_kurtosis(train, samples, surrogates, crops) -> dict:
    """Mean band-kurtosis distance to the training crop with ``BORDER`` pixels cut from every
    image alike: whether the samples' score owes anything to their border."""
    inner = lambda image: image[..., BORDER:-BORDER, BORDER:-BORDER]
    return {
        name: float(np.mean([texture_stats.kurtosis_distance(inner(x), inner(train)) for x in xs]))
        for name, xs in (("samples", samples), ("phase surrogates", surrogates), ("crops", crops))
    }


# --- report ---------------------------------------------------------------------------------


def environment(args) -> dict:
    return {
        **machine(),
        "quick": args.quick,
        "preset": PRESET,
        "padding": args.padding or "zeros (the preset's)",
        "textures": args.textures,
        "noise_draws": NOISE_DRAWS,
    }


def cell(row: dict, metric: str, digits: int) -> str:
    return f"{row[metric]:.{digits}f} ± {row[metric + '_std']:.{digits}f}"


def markdown(env: dict, results: dict, total: float) -> str:
    quick = env["quick"]
    lines = [
        "# Texture quality benchmark" + (" (QUICK RUN: smoke test, do not quote)" if quick else ""),
        "",
    ]
    lines += [
        f"- date: {env['date']}",
        f"- command: `{env['command']}`",
        f"- refimpl {env['refimpl']}, python {env['python']}, numpy {env['numpy']}, "
        f"scipy {env['scipy']}, "
        f"{env['cpu_count']} CPUs, load average (1 min) at start: {env['load_average_at_start']}, "
        f"thread settings {env['thread_settings']}",
        f"- preset `{env['preset']}`, padding {env['padding']}; total wall time {total:.0f} s",
        "",
    ]
    lines += [
        "Distances to the training crop, mean ± std over the row's images (lower = closer). "
        "marginal W1: pixel histograms, intensity units 0..255; spectrum: log10 power in 6 radial "
        "bands x 4 orientations, decades; filter responses: W1 of 27 Gabor/LoG response histograms "
        "in units of the training crop's response std; kurtosis: mean |log ratio| of the kurtosis "
        "of 12 oriented band-pass responses; energy corr.: mean |difference| of the correlations "
        "of band energies across orientation and scale; relative phase: mean |difference| of the "
        "complex cross-scale phase coherences (0 for any Gaussian field). See "
        "`benchmarks/quality.py` for the rows.",
        "",
    ]
    lines += [
        "| texture | comparison | n | marginal W1 | spectrum | filter responses | kurtosis "
        "| energy corr. | relative phase |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for texture, result in results.items():
        if "error" in result:
            lines.append(f"| {texture} | FAILED: {result['error']} | | | | | | | |")
            continue
        for name, row in result["rows"].items():
            label = ROW_LABELS.get(name, name)
            if name == "other crops":
                share = sorted(set(round(100 * o) for o in result["crop_overlap_with_train"]))
                label += f" ({'/'.join(map(str, share))}% overlap)"
            lines.append(
                f"| {texture} | {label} | {row['n']} | {cell(row, 'marginal', 2)} | "
                f"{cell(row, 'spectrum', 3)} | {cell(row, 'filters', 3)} | "
                f"{cell(row, 'kurtosis', 3)} | {cell(row, 'energy', 3)} | "
                f"{cell(row, 'phase', 3)} |"
            )
    lines += ["", *placement_lines(results)]
    lines += ["", *border_free_lines(results)]
    depth = max(
        (len(r["summary"]["final_mismatch"] or []) for r in results.values() if "summary" in r),
        default=0,
    )
    lines += [
        "",
        "Final moment mismatch per layer `|H_obs - H_syn| / |H_obs|` (Eqs. (7.3)-(7.4)) and "
        "reconstruction error `|I - sigma^2 B| / |I|`, from each run's summary.json.",
        "",
    ]
    lines += [
        "| texture | run | iterations | chains | learning time (s) | "
        + " | ".join(f"mismatch layer {l + 1}" for l in range(depth))
        + " | reconstruction error | samples outside [0, 255] |",
        "|---|---|---|---|---|" + "---|" * depth + "---|---|",
    ]
    for texture, result in results.items():
        if "error" in result:
            continue
        s = result["summary"]
        mismatch = list(s["final_mismatch"] or []) + [None] * depth
        lines.append(
            f"| {texture} | {result['status']} | {s['iterations']} | {result['chains']} | "
            f"{s['seconds']:.0f} | "
            + " | ".join("" if m is None else f"{m:.4f}" for m in mismatch[:depth])
            + f" | {s['final_reconstruction_error']:.4f} | "
            f"{100 * result['samples_out_of_range']:.2f}% |"
        )
    lines += [
        "",
        "Run folders: " + ", ".join(f"`{r['folder']}`" for r in results.values() if "folder" in r),
        "",
    ]
    return "\n".join(lines)


PLACED = ("spectrum", "filters", "kurtosis", "energy", "phase")


def placement(rows: dict, metric: str) -> dict | None:
    """Where the samples sit between the phase surrogates (0) and another real patch (1).

    ``p = (d_sur - d_samples) / (d_sur - d_crop)`` with ``d`` each row's mean distance to
    the training crop and ``d_crop`` that of the disjoint crop pairs (another independent
    patch of the texture). ``p > 0.5`` means the samples are closer to where real patches
    sit than to where the surrogates sit; ``z`` is ``d_sur - d_samples`` in standard errors.
    None when the surrogates are not farther than the crops (the metric cannot separate them).
    """
    crop = rows.get("disjoint crop pairs") or rows.get("other crops")
    sur, samples = rows.get("phase surrogates"), rows.get("samples")
    if crop is None or sur is None or samples is None:
        return None
    gap = sur[metric] - crop[metric]
    if gap <= 0:
        return dict(position=None, separable=False)
    se = np.hypot(
        sur[f"{metric}_std"] / np.sqrt(sur["n"]), samples[f"{metric}_std"] / np.sqrt(samples["n"])
    )
    return dict(
        position=float((sur[metric] - samples[metric]) / gap),
        z=float((sur[metric] - samples[metric]) / se) if se > 0 else None,
        separable=True,
    )


def placement_lines(results: dict) -> list:
    lines = [
        "Where the samples sit between the phase surrogates (0: as far from the training crop as "
        "a field with its power spectrum and random phases) and another real patch (1: as far as "
        "a disjoint crop of the same texture); z: how many standard errors the samples are closer "
        "than the surrogates. '-': the surrogates are not farther than another patch on that "
        "statistic, which then cannot tell them apart.",
        "",
        "| texture | " + " | ".join(PLACED) + " |",
        "|---|" + "---|" * len(PLACED),
    ]
    for texture, result in results.items():
        if "error" in result:
            continue
        cells = []
        for metric in PLACED:
            p = placement(result["rows"], metric)
            if p is None or not p["separable"]:
                cells.append("-")
            else:
                z = "" if p["z"] is None else f" (z {p['z']:.1f})"
                cells.append(f"{p['position']:.2f}{z}")
        lines.append(f"| {texture} | " + " | ".join(cells) + " |")
    return lines


def summary_table(results: dict, key: str, columns: list, digits: int) -> list:
    """A markdown table of ``result[key][name]`` per texture, ``columns`` = ``[(label, name)]``."""
    lines = [
        "| texture | " + " | ".join(label for label, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for texture, result in results.items():
        if "error" not in result:
            cells = [f"{result[key][name]:.{digits}f}" for _, name in columns]
            lines.append(f"| {texture} | " + " | ".join(cells) + " |")
    return lines


def border_free_lines(results: dict) -> list:
    kurtosis = [(n, n) for n in ("samples", "phase surrogates")] + [("other crops", "crops")]
    contrast = [(n, n) for n in ("samples", "chains", "training crop")] + [("other crops", "crops")]
    return [
        f"Band kurtosis distance with a {BORDER}-pixel border cut from every image alike (the "
        "training crop, samples, surrogates and other crops): what the samples score without "
        "their border.",
        "",
        *summary_table(results, "border_free_kurtosis", kurtosis, 3),
        "",
        "Border contrast: the standard deviation of each image's 4-pixel frame over that of its "
        "inside (`texture_stats.border_contrast`), mean over the images: about 1 for a "
        "stationary texture, below 1 for a flat, lower-contrast frame. 'chains': the persistent "
        "chains learning kept, before the preset's torus steps (`torus_steps`).",
        "",
        *summary_table(results, "border_contrast", contrast, 2),
    ]


def display(ax, image, title: str):
    """One image on the fixed 0..255 gray scale (``plotting.image_grid`` stretches each image
    to its own range, which would hide the contrast differences this figure is about)."""
    image = np.clip(np.asarray(image, dtype=float), 0, 255)
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(image.transpose(1, 2, 0) / 255.0, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def figure(results: dict, quick: bool, path: Path):
    done = {t: r for t, r in results.items() if "error" not in r}
    if not done:
        return None
    columns = 4 + SAMPLES_SHOWN
    fig, axes = plotting.figure(
        len(done), columns, figsize=(1.9 * columns, 2.1 * len(done) + 0.4), squeeze=False
    )
    for axes_row, (texture, r) in zip(axes, done.items()):
        images = [
            r["train"],
            r["crops"][0],
            r["noise"][0],
            r["surrogates"][0],
            *r["samples"][:SAMPLES_SHOWN],
        ]
        titles = [
            f"{texture}: training crop",
            "other crop (corner)",
            "white noise",
            "phase surrogate",
        ] + [f"sample {i}" for i in range(len(images) - 4)]
        for ax, image, title in zip(axes_row, images, titles):
            display(ax, image, title)
        for ax in axes_row[len(images) :]:
            ax.axis("off")
    fig.suptitle(
        "texture preset: training crop, another crop, white noise, a phase-randomised "
        "surrogate, samples (gray 0..255, clipped)" + ("  [QUICK RUN]" if quick else ""),
        fontsize=9,
    )
    fig.tight_layout()
    return plotting.save(fig, path)


def jsonable(result: dict) -> dict:
    skip = ("config", "train", "samples", "kept_chains", "crops", "noise", "surrogates")
    out = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.items() if k not in skip}
    if "config" in result:
        out["config"] = result["config"].to_dict()
    return out


# --- main -----------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    keep_freed_memory()  # as `python -m refimpl synthesize` does: the same learning speed
    start = time.perf_counter()
    env = environment(args)
    results, failed = {}, False
    for texture in args.textures:
        try:
            run = learn(texture, args)
        except DivergenceError as exc:
            print(f"{texture}: learning diverged: {exc}", file=sys.stderr)
            results[texture], failed = dict(error=f"learning diverged: {exc}"), True
            continue
        t0 = time.perf_counter()
        scored = score(run)
        results[texture] = dict(
            run, **scored, chains=run["config"].chains, evaluation_seconds=time.perf_counter() - t0
        )
        print(
            f"{texture}: scored in {results[texture]['evaluation_seconds']:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    total = time.perf_counter() - start
    text = markdown(env, results, total)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    name = stem(args)
    (args.out / f"{name}.md").write_text(text, encoding="utf-8")
    payload = dict(
        environment=env, total_seconds=total, textures={t: jsonable(r) for t, r in results.items()}
    )
    (args.out / f"{name}.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    png = figure(results, args.quick, args.out / f"{name}.png")
    print(
        f"wrote {args.out / (name + '.md')}, {name}.json" + (f", {name}.png" if png else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
