"""Learning runs on disk: training images, run folders, checkpoints, outputs, progress, resume.

A run lives in a folder managed by :mod:`refimpl.run_folder` (locked while a process works
in it, every file written atomically). The folder holds:

* ``config.json``: the command, the preset, the :class:`LearningConfig`, the SHA-256 of
  the training images and refimpl's version, written when the run is created;
* ``train.npy``: the training images ``(M, C, H, W)`` in ``[0, 255]``, written when the run
  is created; a resumed run reads its images from here, never again from the image file;
* ``checkpoint.npz``: the state at an iteration boundary (:mod:`refimpl.learning.checkpoint`),
  written at iteration 0, every ``checkpoint_every`` iterations, at the end, and when the
  run is stopped by SIGINT or SIGTERM;
* at the end: ``samples.npy`` (``(M~, C, H, W)``, in the training images' intensity scale),
  ``reconstructions.npy`` (``sigma^2 B_{w,delta(I_obs)}``, the auto-encoding of Propositions
  2-3), ``samples.png``, ``curves.png`` (moment mismatch per layer, Eqs. (7.3)-(7.4); mean
  energies; reconstruction error) and ``summary.json``.

``--resume FOLDER`` continues from the checkpoint and reaches the same parameters, bit for
bit, as an uninterrupted run: the checkpoint and ``config.json`` must agree, and the
checkpoint must be a consistent state of its config, or the run is refused with a message
naming the disagreement.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

import numpy as np
from scipy.ndimage import zoom
from tqdm import tqdm

from refimpl import __version__
from refimpl.backend import derived_seed, make_rng, to_numpy
from refimpl.conv import conv_output_size
from refimpl.conv.geometry import ConvGeometry
from refimpl.convnet import ConvNet
from refimpl.data import (
    block_average,
    centre,
    fit_texture,
    load_digits,
    load_image,
    resolve_image,
)
from refimpl.learning import algorithm
from refimpl.learning.checkpoint import boundary_state, restore
from refimpl.learning.config import LearningConfig
from refimpl.learning.trainer import DivergenceError, Trainer
from refimpl.run_folder import (
    CHECKPOINT,
    RECORD,
    CorruptFile,
    FolderRun,
    Interrupted,
    RunFolder,
    RunFolderError,
    check_arrays,
    run_loop,
    to_json,
)
from refimpl.threads import parallel

CONFIG = RECORD  # the name benchmarks/quality.py and older callers use
TRAIN = "train.npy"
SUMMARY = "summary.json"
# the learning commands and the method each one runs
METHODS = {"synthesize": "ml", "reconstruct": "cd"}
METHOD_NAMES = {"ml": "maximum likelihood (Algorithm 1)", "cd": "contrastive divergence"}
# What the NumPy engine sustains in the learning loop on the 2-core development machine in
# float64, the paper presets' dtype: 59 GFLOP/s at the texture preset's last stage
# (benchmarks/learning.py); 40e9 leaves room for the smaller early stages and other layer
# shapes.
CPU_FLOPS = 40e9


# --- training images --------------------------------------------------------------------------


def _resize(images, size: int):
    """Bilinear resize of ``(M, C, h, w)`` host images to ``size x size``."""
    m, c, h, w = images.shape
    if (h, w) == (size, size):
        return images
    return zoom(images, (1, 1, size / h, size / w), order=1)


def load_training_images(config: LearningConfig):
    """Training images ``(M, C, H, W)`` on the host in ``[0, 255]``, as the config describes.

    Checks, before anything large is allocated, that the run fits in memory
    (:func:`check_memory`).
    """
    if config.dataset in ("texture", "texture-crops"):
        original = load_image(resolve_image(config.image))
        check_memory(config, original.shape[0])
        crop = fit_texture(original, config.image, config.size, config.factor)
        if config.dataset == "texture":
            return crop[None]
        image = block_average(original, config.factor)
        _, h, w = image.shape
        rng = np.random.default_rng(config.seed)
        tops = rng.integers(0, h - config.size + 1, config.images)
        lefts = rng.integers(0, w - config.size + 1, config.images)
        return np.stack(
            [image[:, t : t + config.size, l : l + config.size] for t, l in zip(tops, lefts)]
        )
    check_memory(config, 1)
    images, labels = load_digits()
    if config.dataset == "digits":
        pool = images[labels == config.digit]
        if config.images > len(pool):
            raise ValueError(
                f"images = {config.images} asks for more UCI digits of class {config.digit} "
                f"than there are ({len(pool)})"
            )
        chosen = pool[: config.images]
    else:  # digit-classes: one of each class in turn
        pools = [images[labels == d] for d in range(10)]
        fewest = min(len(p) for p in pools)
        if config.images > 10 * fewest:
            raise ValueError(
                f"images = {config.images} asks for more than the {10 * fewest} UCI digits "
                f"that one of each class in turn gives (the rarest class has {fewest})"
            )
        chosen = np.stack([pools[i % 10][i // 10] for i in range(config.images)])
    return np.clip(_resize(chosen * (255.0 / 16.0), config.size), 0.0, 255.0)


def scale_and_centre(config: LearningConfig, raw):
    """``(data, mean)``: ``raw`` images on the config's scale, per-channel mean removed.

    Refuses images that leave nothing to learn (an image that is 0 after centring, e.g. a
    constant texture, has an undefined relative mismatch and reconstruction error) and a
    ``sigma`` so small that the energies ``|I|^2 / (2 sigma^2)`` overflow the run's dtype.
    """
    scaled = raw / 127.5 - 1.0 if config.scale == "unit" else raw
    data, mean = centre(scaled)
    norms = np.sqrt((data.reshape(len(data), -1) ** 2).sum(axis=1))
    flat = np.nonzero(norms == 0)[0]
    if len(flat):
        value = float(raw[flat[0]].flat[0])
        which = "the training image" if len(data) == 1 else f"training image {flat[0]}"
        raise ValueError(
            f"{which} is constant (every pixel {value:g}): after removing the mean it is 0, so "
            "there is nothing to learn and the relative moment mismatch and reconstruction "
            "error are undefined; use an image with some texture"
        )
    dtype = np.dtype(config.dtype)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        cast = data.astype(dtype)
        energy = (cast.reshape(len(data), -1) ** 2).sum(axis=1) / dtype.type(2 * config.sigma**2)
    if not np.isfinite(energy).all():
        raise ValueError(
            f"sigma {config.sigma:g} is too small for these images: the energy |I|^2 / "
            f"(2 sigma^2) of the training images overflows {config.dtype}. The paper uses "
            f"sigma = 1 on intensities in [0, 255] (scale '0-255')"
        )
    return data, mean


def check_architecture(config: LearningConfig, image_shape):
    """``ValueError`` naming the layer if the final network does not fit images ``(M, C, H, W)``.

    Checked before learning starts: with growing, a deeper layer is built only at its stage.
    """
    ConvNet.random(image_shape[1], config.spec, seed=0).geometries(tuple(image_shape))


def prepare(config: LearningConfig):
    """``(centred data, mean, raw)``: the training images on the config's scale, mean removed.

    ``raw`` is in ``[0, 255]``; :func:`to_raw` maps model-scale images back to it. The final
    network must fit the images (:func:`check_architecture`).
    """
    raw = load_training_images(config)
    data, mean = scale_and_centre(config, raw)
    check_architecture(config, data.shape)
    return data, mean, raw


def to_raw(config: LearningConfig, images, mean):
    """Model-scale images (centred) back to the training images' ``[0, 255]`` intensities."""
    host = to_numpy(images) + mean
    return (host + 1.0) * 127.5 if config.scale == "unit" else host


def n_images(config: LearningConfig) -> int:
    """How many training images the config describes (a texture is one)."""
    return 1 if config.dataset == "texture" else config.images


# --- resources --------------------------------------------------------------------------------


def _layer_shapes(config: LearningConfig, channels: int, stage: int) -> list:
    """``[(in_channels, out_channels, kernel, out_side), ...]`` of the network at ``stage``.

    Stops at the first layer that does not fit (the trainer then says which one).
    """
    shapes, side = [], config.size
    for spec in config.spec[: algorithm.active_conv_layers(config, stage)]:
        out = conv_output_size(side, spec.kernel_size, spec.stride, spec.pad)
        if out < 1:
            return shapes
        shapes.append((channels, spec.out_channels, spec.kernel_size, out))
        channels, side = spec.out_channels, out
    if config.top_filter:
        shapes.append((channels, 1, side, 1))
    return shapes


def memory_estimate(config: LearningConfig, channels: int) -> int:
    """Bytes a run needs at the least, from sizes alone (nothing is allocated).

    The training images three times on the host in float64 (raw, scaled, centred); on the
    backend the data, the chains twice (old and new), the Langevin noise of one iteration
    ``(L, M~, C, H, W)``; and for one forward and backward pass over the larger batch,
    four arrays per layer of its feature-map size (pre-activations, outputs, pattern,
    gradient) plus the largest lowered-input (im2col) buffer.
    """
    item = np.dtype(config.dtype).itemsize
    pixels = channels * config.size**2
    data = n_images(config)
    chains = data if config.method == "cd" else config.chains
    total = 3 * data * pixels * 8
    total += (data + 2 * chains + config.langevin_steps * chains) * pixels * item
    batch = max(data, chains)
    shapes = _layer_shapes(config, channels, config.stages)
    total += sum(4 * batch * out_c * side**2 * item for _, out_c, _, side in shapes)
    total += max((batch * in_c * k**2 * side**2 * item for in_c, _, k, side in shapes), default=0)
    return total


def available_memory() -> int | None:
    """Bytes of memory available now (Linux: MemAvailable), else physical memory, else None."""
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(config: LearningConfig, channels: int):
    """``ValueError`` if :func:`memory_estimate` exceeds :func:`available_memory` (host)."""
    needed, available = memory_estimate(config, channels), available_memory()
    if available is not None and needed > available:
        raise ValueError(
            f"a run at size {config.size} needs at least {needed / 1e9:.3g} GB of memory "
            f"(training images, {config.chains} chains, Langevin noise and one pass through the "
            f"network) but {available / 1e9:.3g} GB are available; lower the size"
        )


def stage_geometries(config: LearningConfig, stage: int, image_shape) -> list:
    """The :class:`~refimpl.conv.ConvGeometry` of every layer at growing ``stage`` on
    ``image_shape (N, C, H, W)`` (with the top filter, if the config has one)."""
    geoms, (n, c, h, w) = [], tuple(int(v) for v in image_shape)
    for spec in config.spec[: algorithm.active_conv_layers(config, stage)]:
        g = ConvGeometry(
            n,
            c,
            h,
            w,
            spec.out_channels,
            spec.kernel_size,
            spec.stride,
            spec.pad,
            spec.padding_mode,
        )
        geoms.append(g)
        n, c, h, w = g.output_shape
    if config.top_filter:  # experiment 2's fully connected linear top, Eq. (4.2)
        geoms.append(ConvGeometry(n, c, h, w, 1, h, 1, 0))
    return geoms


def iteration_flops(config: LearningConfig, stage: int, image_shape, n_obs: int) -> int:
    """FLOPs of one learning iteration (Algorithm 1 or CD) at ``stage``, 2 per multiply-add.

    Per layer, forward = adjoint = weight gradient = ``2 N O C k^2 H_out W_out``; with
    ``F(n)`` the forward pass of ``n`` images and ``f1(n)`` the first layer's share:
    ``L`` Langevin steps of df/dI (forward + adjoint: ``2 F(M~)``), df/dw of the data and of
    the chains (forward + weight gradient + adjoint above layer 1: ``3 F - f1``), and the
    data's reconstruction ``sigma^2 B`` (pattern + top-down pass: ``2 F(M)``). Element-wise
    work (non-linearities, updates) is not counted. Exact: ``tests/test_benchmarks.py``
    checks it against every convolution one iteration calls.
    """
    n_chains = n_obs if config.method == "cd" else config.chains
    _, c, h, w = image_shape

    def forward(n):
        return sum(g.flops for g in stage_geometries(config, stage, (n, c, h, w)))

    def first(n):
        return stage_geometries(config, stage, (n, c, h, w))[0].flops

    langevin = config.langevin_steps * 2 * forward(n_chains)
    grads = 3 * forward(n_obs) - first(n_obs) + 3 * forward(n_chains) - first(n_chains)
    return langevin + grads + 2 * forward(n_obs)


def run_flops(config: LearningConfig, channels: int = 1) -> float:
    """Floating-point operations of the whole run (every stage, ``T`` iterations each)."""
    shape, n_obs = (1, channels, config.size, config.size), n_images(config)
    return sum(
        config.iterations_per_layer * iteration_flops(config, stage, shape, n_obs)
        for stage in range(1, config.stages + 1)
    )


def cpu_seconds(config: LearningConfig, channels: int = 1) -> float:
    """Rough learning time with NumPy on a 2-core CPU (:data:`CPU_FLOPS`)."""
    return run_flops(config, channels) / CPU_FLOPS


# --- progress ---------------------------------------------------------------------------------


def describe_learning(record: dict) -> str:
    """The progress text of one learning iteration: stage, mismatch per layer, energies."""
    return (
        f"stage {record['stage']}, mismatch {', '.join(f'{m:.3f}' for m in record['mismatch'])}, "
        f"energy data/samples {record['energy_data']:.3g}/{record['energy_samples']:.3g}"
    )


class Progress:
    """A tqdm bar with an ETA on a terminal; plain progress lines otherwise (logs, CI).

    ``describe(record) -> str`` turns an iteration's record (with an ``"iteration"`` entry)
    into the text shown beside the bar; the default is the learning runs'.
    """

    def __init__(
        self,
        total: int,
        start: int,
        label: str,
        stream=None,
        every: int | None = None,
        describe=describe_learning,
    ):
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.done, self.label = total, start, label
        self.describe = describe
        self.every = every or max(1, total // 20)
        self.bar = None
        self.t0 = time.perf_counter()
        if getattr(self.stream, "isatty", lambda: False)():
            self.bar = tqdm(total=total, initial=start, desc=label, file=self.stream, unit="it")

    def update(self, record: dict):
        self.done = record["iteration"]
        text = self.describe(record)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(text, refresh=False)
        elif self.done % self.every == 0 or self.done == self.total:
            elapsed = time.perf_counter() - self.t0
            print(
                f"{self.label}: iteration {self.done}/{self.total} ({elapsed:.0f} s): {text}",
                file=self.stream,
                flush=True,
            )

    def close(self):
        if self.bar is not None:
            self.bar.close()


# --- the run ----------------------------------------------------------------------------------


class LearningRun(FolderRun):
    """A learning run in its run folder, which this process holds locked until :meth:`close`.

    Attributes:
        trainer: the :class:`Trainer`; mean, raw: the training images' mean and ``[0, 255]``
            images (:func:`prepare`); folder: the :class:`~refimpl.run_folder.RunFolder`;
        command: ``"synthesize"`` or ``"reconstruct"``; seconds: learning time of the
            earlier sessions (the checkpoint's), so that ``summary.json`` has the total.
    """

    def __init__(self, trainer: Trainer, mean, raw, folder: RunFolder, command: str, seconds=0.0):
        super().__init__(folder)
        self.trainer, self.mean, self.raw = trainer, mean, raw
        self.command, self.seconds = command, float(seconds)

    @property
    def config(self) -> LearningConfig:
        return self.trainer.config

    def save(self, state: tuple[dict, dict]):
        """Write a checkpoint of ``state``, an ``(arrays, meta)`` from :func:`boundary_state`."""
        self.folder.save_checkpoint(*state)


def check_method(command: str, config: LearningConfig, preset: str | None = None):
    """``ValueError`` unless ``command`` runs ``config``'s method (see METHODS)."""
    if METHODS.get(command) == config.method:
        return
    other = next(c for c, m in METHODS.items() if m == config.method)
    what = f"preset {preset!r}" if preset else "this config"
    raise ValueError(
        f"{what} learns by {METHOD_NAMES[config.method]}, which is what "
        f"`python -m refimpl {other}` does, not `{command}` ({METHOD_NAMES[METHODS[command]]}); "
        f"use `python -m refimpl {other}`"
    )


def start_run(
    config: LearningConfig,
    out,
    preset: str | None = None,
    command: str = "synthesize",
    fresh_name: bool = False,
) -> LearningRun:
    """A new run: images prepared and checked, then the folder created and locked.

    Writes ``config.json``, ``train.npy`` and the checkpoint of iteration 0 (so that a run
    killed in its first seconds can be resumed). Everything that can be wrong with the
    settings or the images is reported before the folder is touched. ``fresh_name``: if
    ``out`` holds a run, use ``out-2``, ``out-3``, ... (see :meth:`RunFolder.create`).
    """
    check_method(command, config, preset)
    data, mean, raw = prepare(config)
    trainer = Trainer(config, data)
    record = dict(
        command=command,
        preset=preset,
        config=config.to_dict(),
        train=fingerprint(raw),
        version=__version__,
    )
    state = boundary_state(trainer, 0.0)
    folder = RunFolder.start(out, record, state, fresh_name=fresh_name, npy={TRAIN: raw})
    return LearningRun(trainer, mean, raw, folder, command)


def _record_config(folder: RunFolder) -> tuple[str, LearningConfig]:
    """The command and config that ``config.json`` records, checked."""
    path, record = folder.file(RECORD), folder.record
    command = record.get("command")
    if command not in METHODS:
        raise CorruptFile(path, f"'command' must be one of {', '.join(METHODS)}; got {command!r}")
    if not isinstance(record.get("preset"), (str, type(None))):
        raise CorruptFile(path, f"'preset' must be a name or null; got {record['preset']!r}")
    if not isinstance(record.get("train"), str):
        raise CorruptFile(path, "'train' must hold the SHA-256 of the training images")
    try:
        config = LearningConfig.from_dict(record.get("config"))
    except (TypeError, ValueError) as exc:
        raise CorruptFile(path, f"its config is invalid: {exc}") from None
    try:
        check_method(command, config, record.get("preset"))
    except ValueError as exc:
        raise CorruptFile(path, str(exc)) from None
    return command, config


def fingerprint(raw) -> str:
    """SHA-256 of the training images' bytes (``config.json`` keeps it; resume compares it)."""
    return hashlib.sha256(np.ascontiguousarray(raw, dtype=np.float64).tobytes()).hexdigest()


def _training_images(folder: RunFolder, config: LearningConfig):
    """The run's ``raw`` training images: ``train.npy``, checked against ``config.json``.

    A folder whose creation was stopped before ``train.npy`` was written (and so before any
    checkpoint) prepares them again from the config, which gives the same images unless
    the image file changed, and that the fingerprint tells.
    """
    path = folder.file(TRAIN)
    if folder.has(TRAIN):
        raw = folder.read_npy(TRAIN)
        channels = raw.shape[1] if raw.ndim == 4 else 0
        shape = (n_images(config), channels, config.size, config.size)
        check_arrays(path, {"train": raw}, {"train": (shape, "float64")})
    elif folder.has(CHECKPOINT):
        raise CorruptFile(path, "is missing: the run's training images are gone")
    else:
        raw = load_training_images(config)
    if fingerprint(raw) != folder.record.get("train"):
        source = f"{config.image!r}" if "texture" in config.dataset else "the bundled digits"
        raise CorruptFile(
            path,
            "the training images differ from those the run was started with (their SHA-256 is "
            f"in {RECORD}): "
            + ("the file was changed" if folder.has(TRAIN) else f"{source} changed since")
            + "; a run continues only on its own images: start a new run",
        )
    if not folder.has(TRAIN):
        folder.write_npy(TRAIN, raw)
    return raw


def _disagreement(folder: RunFolder, config: LearningConfig, meta: dict):
    """``RunFolderError`` if the checkpoint was made with other settings than ``config.json``'s."""
    if not isinstance(meta.get("config"), dict):
        return  # check_checkpoint reports it
    try:
        saved = LearningConfig.from_dict(meta["config"])
    except (TypeError, ValueError):
        return
    differences = config.differences(saved)
    if differences:
        listed = "; ".join(
            f"{k}: {RECORD} {a!r}, {CHECKPOINT} {b!r}" for k, (a, b) in differences.items()
        )
        raise RunFolderError(
            f"{folder.path}: {RECORD} and {CHECKPOINT} disagree ({listed}). A run continues "
            f"only with the settings it was started with: undo the change to {RECORD}, or "
            "start a new run with the new settings"
        )


def resume_run(folder_path, command: str | None = None) -> LearningRun:
    """Continue the run in ``folder_path``, locked, checked, from its last checkpoint.

    ``command``, if given, must be the command the run was started with. The training
    images come from ``train.npy``; a folder whose creation was interrupted before its first
    checkpoint restarts from iteration 0, which is exactly where it was.
    """
    folder = RunFolder.open(folder_path)
    try:
        recorded, config = _record_config(folder)
        if command is not None and command != recorded:
            raise RunFolderError(
                f"{folder.path} holds a {recorded} run; continue it with "
                f"`python -m refimpl {recorded} --resume {folder.path}`"
            )
        raw = _training_images(folder, config)
        data, mean = scale_and_centre(config, raw)
        if folder.has(CHECKPOINT):
            arrays, meta = folder.read_checkpoint()
            _disagreement(folder, config, meta)
            trainer = restore(folder.file(CHECKPOINT), arrays, meta, data)
            seconds = meta["seconds"]
        else:
            trainer, seconds = Trainer(config, data), 0.0
        return LearningRun(trainer, mean, raw, folder, recorded, seconds)
    except BaseException:
        folder.close()
        raise


def extend(run: LearningRun, iterations_per_layer: int):
    """Continue ``run`` with ``iterations_per_layer`` iterations per layer instead.

    Allowed when the run so far is also the beginning of a run with the new count (the
    layers were grown at the same iterations) and it has not passed the new end: then
    continuing gives exactly the run that had the new count from the start. Otherwise a
    ``ValueError`` says why. ``config.json`` and the checkpoint are updated.
    """
    old, done = run.config, run.trainer.iteration
    if iterations_per_layer == old.iterations_per_layer:
        return
    new = LearningConfig.from_dict(dict(old.to_dict(), iterations_per_layer=iterations_per_layer))
    if done > new.total_iterations:
        raise ValueError(
            f"the run in {run.out} has done {done} iterations, more than the "
            f"{new.total_iterations} of {iterations_per_layer} per layer"
        )
    moved = [t for t in range(done + 1) if old.stage_after(t) != new.stage_after(t)]
    if moved:
        raise ValueError(
            f"the run in {run.out} cannot continue with {iterations_per_layer} iterations per "
            f"layer: it grew its layers every {old.iterations_per_layer} iterations, and after "
            f"{moved[0]} iterations it was in stage {old.stage_after(moved[0])}, where a run "
            f"with {iterations_per_layer} per layer is in stage {new.stage_after(moved[0])}. "
            "Start a new run, or resume without changing the iterations"
        )
    run.trainer.config = new
    run.save(boundary_state(run.trainer, run.seconds))
    run.folder.update_record(dict(run.folder.record, config=new.to_dict()))


def _say_stopped(run: LearningRun, exc: KeyboardInterrupt, iteration: int, stream, bar):
    if bar is not None:  # the bar first, so that the message is not drawn over
        bar.close()
    name = exc.signal_name if isinstance(exc, Interrupted) else "interrupted"
    print(
        f"\n{name}: stopped; checkpoint of iteration {iteration} saved in {run.out}. "
        f"Continue with:\n  python -m refimpl {run.command} --resume {run.out}",
        file=stream,
        flush=True,
    )


def execute(
    run: LearningRun, progress: bool = True, stream=None, stop_after: int | None = None
) -> dict:
    """Learn to the end with checkpoints, progress, stops on signals, and the outputs.

    SIGINT and SIGTERM (:class:`~refimpl.run_folder.StopRequests`): the first stops after
    the current iteration, a second abandons it; either way the state of the last
    iteration boundary is saved and :class:`~refimpl.run_folder.Interrupted` is raised
    (exit status 130 or 143). Any other exception but divergence also saves the last
    boundary first. :class:`DivergenceError` writes nothing: the last good checkpoint stays.

    ``stop_after`` stops early after that many more iterations (with a checkpoint), e.g. to
    test resuming. Returns the summary (:func:`write_outputs`).
    """
    trainer, config = run.trainer, run.config
    stream = stream if stream is not None else sys.stderr
    bar = (
        Progress(config.total_iterations, trainer.iteration, run.command, stream)
        if progress
        else None
    )
    target = (
        config.total_iterations
        if stop_after is None
        else min(config.total_iterations, trainer.iteration + stop_after)
    )
    start = time.perf_counter()

    def state():
        return boundary_state(trainer, run.seconds + time.perf_counter() - start)

    def step():
        record = trainer.step()
        if bar is not None:
            bar.update(record)

    def stopped(exc, meta):
        _say_stopped(run, exc, meta["iteration"], stream, bar)

    try:
        last = run_loop(
            lambda arrays, meta: run.save((arrays, meta)),
            step,
            state,
            done=lambda: trainer.iteration >= target,
            due=lambda: trainer.iteration % config.checkpoint_every == 0,
            stream=stream,
            on_stop=stopped,
            unsaved=(DivergenceError,),
        )
    finally:
        if bar is not None:
            bar.close()
    run.seconds = last[1]["seconds"]
    return write_outputs(run)


# --- outputs ----------------------------------------------------------------------------------


# the generator of the torus steps is seeded by (seed, TORUS_STREAM, iteration): no layer index
# (the other 3-entry seeds, (seed, layer, stage)) comes near it
TORUS_STREAM = 2**31 - 1


def final_samples(trainer: Trainer):
    """The samples a run writes: the chains, continued for ``config.torus_steps`` Langevin
    steps on the torus (:func:`algorithm.torus_samples`) when that is positive."""
    config = trainer.config
    if not config.torus_steps:
        return trainer.chains
    rng = make_rng(derived_seed(config.seed, TORUS_STREAM, trainer.iteration), trainer.xp)
    with parallel():
        return algorithm.torus_samples(
            trainer.net, config.sigma, trainer.chains, config.torus_steps, config.step_size, rng
        )


def write_outputs(run: LearningRun) -> dict:
    """Samples, reconstructions, figures and ``summary.json`` of the run as it is now.

    The summary is checked first: if it would hold a non-finite number, nothing is written
    and :class:`~refimpl.run_folder.NonFiniteValue` names the entry.
    """
    # lazy: importing matplotlib costs about half a second of start-up, which only a run that
    # has something to draw should pay (e.g. not `--help`, not a refused resume)
    from refimpl import plotting

    trainer, folder, config, raw = run.trainer, run.folder, run.config, run.raw
    history = trainer.history

    def last(key):
        return history[key][-1] if history[key] else None

    summary = dict(
        command=run.command,
        iterations=trainer.iteration,
        stages=trainer.stage,
        seconds=run.seconds,
        final_mismatch=last("mismatch"),
        final_energy_data=last("energy_data"),
        final_energy_samples=last("energy_samples"),
        final_reconstruction_error=last("reconstruction_error"),
        architecture=[list(s) for s in trainer.net.spec()],
        version=__version__,
    )
    to_json(summary, str(folder.file(SUMMARY)))  # refuses NaN and infinity before any write
    samples = to_raw(config, final_samples(trainer), run.mean)
    recon = to_raw(config, trainer.model().piece_mean(trainer.data), run.mean)
    folder.write_npy("samples.npy", samples)
    folder.write_npy("reconstructions.npy", recon)
    clip = lambda a: np.clip(a, 0, 255)
    if run.command == "reconstruct":
        n = min(len(raw), 10)
        images = [clip(x) for x in raw[:n]] + [clip(x) for x in recon[:n]]
        titles = [f"train {i}" for i in range(n)] + [f"reconstruction {i}" for i in range(n)]
        columns = n
    else:
        shown_train = list(raw[: min(len(raw), 4)])
        images = [clip(x) for x in shown_train] + [
            clip(x) for x in samples[: max(4, 8 - len(shown_train))]
        ]
        titles = [f"train {i}" for i in range(len(shown_train))] + [
            f"sample {i}" for i in range(len(images) - len(shown_train))
        ]
        columns = 4
    folder.write_figure("samples.png", plotting.image_grid(images, titles, columns=columns))
    folder.write_figure("curves.png", curves_figure(trainer.history, plotting))
    folder.write_json(SUMMARY, summary)
    return summary


def curves_figure(history: dict, plotting):
    """Curves of moment mismatch per layer (7.3)-(7.4), mean energies and reconstruction error."""
    fig, axes = plotting.figure(1, 3, figsize=(15, 4))
    its = history["iteration"]
    depth = max((len(m) for m in history["mismatch"]), default=0)
    for l in range(depth):
        xs = [i for i, m in zip(its, history["mismatch"]) if len(m) > l]
        ys = [m[l] for m in history["mismatch"] if len(m) > l]
        axes[0].semilogy(xs, ys, lw=1, label=f"layer {l + 1}")
    axes[0].set(
        xlabel="iteration",
        ylabel="|H_obs - H_syn| / |H_obs|",
        title="moment mismatch per layer, Eqs. (7.3)-(7.4)",
    )
    axes[0].legend(fontsize=8)
    axes[1].plot(its, history["energy_data"], lw=1, label="data")
    axes[1].plot(its, history["energy_samples"], lw=1, label="samples")
    axes[1].set(xlabel="iteration", ylabel="mean energy -f + |I|^2/(2 sigma^2)", title="energy")
    axes[1].legend(fontsize=8)
    axes[2].plot(its, history["reconstruction_error"], lw=1)
    axes[2].set(
        xlabel="iteration", ylabel="|I - sigma^2 B| / |I|", title="reconstruction error of the data"
    )
    stages = [i for i, (a, b) in enumerate(zip(history["stage"], history["stage"][1:])) if a != b]
    for ax in axes:
        for s in stages:
            ax.axvline(its[s], color="gray", lw=0.5, ls=":")
    fig.tight_layout()
    return fig
