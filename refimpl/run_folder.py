"""Run folders you can trust: one writer, atomic files, checked checkpoints, clean stops.

Every command that learns something (``synthesize``, ``reconstruct``, and the coming
``classify`` and ``hybrid``) keeps its run in a folder and goes through this module for
everything it writes there or reads back. What the module guarantees (each guarantee is
tested in ``tests/test_run_folder.py``):

* **One writer per folder.** :meth:`RunFolder.create` and :meth:`RunFolder.open` take an
  exclusive ``fcntl.flock`` on ``.lock`` inside the folder and hold it until
  :meth:`RunFolder.close`; a second process gets :class:`FolderInUse`. The lock belongs to
  the kernel and dies with its process, so a killed run never leaves a stale lock. (POSIX
  only: refimpl targets Linux and macOS; ``flock`` is not reliable on some network file
  systems.)
* **Atomic files.** Every file (JSON, ``.npy``, ``.npz`` checkpoint, figure) is written to a
  temporary file beside its destination, flushed, ``fsync``-ed and renamed over it
  (``os.replace``), with SIGINT and SIGTERM held back until the rename is done: an
  interruption leaves the previous version, never a mix. Every file, the checkpoint
  included, gets the permissions ``0666 & ~umask`` (usually 0644). The temporaries that a
  SIGKILL leaves behind (``NAME.XXXXXXXX.tmp``) are removed the next time the folder is
  opened, under the lock.
* **Finite JSON.** :func:`write_json` refuses NaN and infinity (:class:`NonFiniteValue`
  names where they are), so ``summary.json`` and ``config.json`` are valid JSON that any
  tool can read.
* **Checkpoints that are what they claim.** A checkpoint is an ``.npz`` of named arrays
  plus a JSON ``meta`` entry, never a pickle. :func:`read_checkpoint` reports any damage
  (truncation, a flipped byte, random bytes, a missing ``meta``) as :class:`CorruptFile`
  naming the file, and :func:`check_arrays` checks the arrays against what the caller
  expects (names, shapes, dtypes, finite values).
* **Clean stops.** :class:`StopRequests` turns SIGINT and SIGTERM into a request to stop at
  the next iteration boundary; a second signal abandons the iteration in progress by
  raising :class:`Interrupted`. Either way the caller saves the state of the last
  boundary and exits with status 130 (SIGINT) or 143 (SIGTERM).

How a command uses the run folder (``refimpl.learning.runs``, ``refimpl.classify.runs`` and
``refimpl.hybrid.digits`` are the full examples)::

    record = dict(command="classify", config=config.to_dict(), version=__version__)
    with RunFolder.create(out, record) as folder:       # RunFolder.open(out) to resume
        folder.save_checkpoint(*state())                # iteration 0: resumable at once
        run_loop(folder.save_checkpoint, step, state, done, due, stream, on_stop)
        folder.write_json("summary.json", summary)

:func:`run_loop` is the loop every command shares: ``step()`` one iteration (compute
everything, then commit), ``state()`` the ``(arrays, meta)`` of the boundary just reached,
``done()`` and ``due()`` (a periodic checkpoint now?). It saves the last boundary at the
end, on the first signal (after the iteration in progress), on a second signal or any
other exception (the iteration in progress abandoned), and says how to continue.

The state must only be committed by plain assignments after the whole step is computed
(as :meth:`refimpl.learning.Trainer.step` does), and ``state()`` must copy whatever the
step later mutates in place (the history lists), so that ``last`` always holds a boundary.

Host-only: this module reads and writes files, so it imports NumPy.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import secrets
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from refimpl.backend import to_numpy

RECORD = "config.json"
CHECKPOINT = "checkpoint.npz"
LOCK = ".lock"
META = "meta"
SIGNALS = (signal.SIGINT, signal.SIGTERM)
# what atomic_write names its temporaries (and what tempfile.mkstemp-based writers of older
# versions left): NAME.XXXXXXXX.tmp
TEMPORARY = re.compile(r"^.+\.[A-Za-z0-9_]{8}\.tmp$")
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive with members / an empty one


# --- errors -----------------------------------------------------------------------------------


class RunFolderError(Exception):
    """A run folder cannot be used as asked; the message names the folder or file and why."""


class FolderInUse(RunFolderError):
    """Another process holds the folder's lock."""


class FolderHoldsRun(RunFolderError):
    """A new run was asked for in a folder that already holds a run (or other files)."""


class NotARunFolder(RunFolderError):
    """The folder to resume does not exist or has no ``config.json``."""


class CorruptFile(RunFolderError):
    """A file of the run folder is unreadable or inconsistent with the run."""

    def __init__(self, path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


class NonFiniteValue(RunFolderError):
    """A JSON file would hold NaN or infinity."""


# --- signals ----------------------------------------------------------------------------------


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM back until the block ends, then deliver them in order.

    Used around every write, so that no signal handler runs (and no ``KeyboardInterrupt``
    is raised) between creating a temporary file and renaming it. Outside the main thread
    (where Python never runs signal handlers) it does nothing.
    """
    if not _main_thread():
        yield
        return
    pending: list = []
    previous = {}
    for signum in SIGNALS:
        handler = signal.getsignal(signum)
        if handler is None:  # installed outside Python: cannot be restored, leave it alone
            continue
        previous[signum] = handler
        signal.signal(signum, lambda number, frame: pending.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in pending:
            signal.raise_signal(signum)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; ``exit_status`` is ``128 + signal number``.

    A subclass of ``KeyboardInterrupt``, so that ``except Exception`` blocks let it through.
    """

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(self.signal_name)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


class StopRequests:
    """SIGINT and SIGTERM as requests to stop, inside a ``with`` block (main thread only).

    * The first signal sets :attr:`requested`; the loop finishes the current iteration,
      saves, and raises :meth:`interrupted`.
    * A second signal raises :class:`Interrupted` wherever the loop is: the iteration in
      progress is abandoned and the loop saves the state of the last boundary.
    * Once the run is stopping (after :meth:`interrupted` or the second signal), further
      signals are ignored, so nothing cuts the emergency save short.

    Args:
        stream: where to say what happens (default ``sys.stderr``).
    """

    def __init__(self, stream=None):
        self.stream = stream
        self.signum: int | None = None
        self.stopping = False
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def interrupted(self) -> Interrupted:
        """The exception to raise after saving, for the first signal received."""
        self.stopping = True
        return Interrupted(self.signum if self.signum is not None else signal.SIGINT)

    def __enter__(self) -> StopRequests:
        if _main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> bool:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}
        return False

    def _handle(self, signum, frame):
        if self.stopping:
            return
        name = signal.Signals(signum).name
        if self.signum is None:
            self.signum = signum
            self._say(
                f"\n{name}: stopping after the current iteration, with a checkpoint "
                "(send it again to stop at once)\n"
            )
            return
        self.stopping = True
        self._say(f"\n{name}: abandoning the current iteration\n")
        raise Interrupted(self.signum)

    def _say(self, text: str):
        """Write from the handler: straight to the file descriptor where there is one.

        The handler may run while the loop is inside a buffered write to the same stream
        (a progress line), and re-entering that write raises ``RuntimeError``.
        """
        stream = self.stream or sys.stderr
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # StringIO, pytest's capture
            fd = None
        try:
            if fd is not None:
                os.write(fd, text.encode())
            else:
                stream.write(text)
                stream.flush()
        except (OSError, RuntimeError, ValueError):
            pass  # a message lost is better than a run stopped by its own message


@contextmanager
def signals_raise():
    """Inside the block, SIGINT and SIGTERM raise :class:`Interrupted` at once (main thread only).

    For work with no iteration boundary to wait for (evaluating a trained model, a sweep
    that is quicker to redo than to resume): the caller catches the exception, says what is
    saved, and exits with its status (130 or 143). Writes in the block stay atomic
    (:func:`signals_deferred` holds the signal until the rename is done).
    """
    if not _main_thread():
        yield
        return

    def handle(signum, frame):
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handle) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def run_loop(save, step, state, done, due, stream=None, on_stop=None, unsaved=()):
    """Step until ``done()``, with checkpoints, and stop cleanly on SIGINT and SIGTERM.

    Args:
        save: ``save(arrays, meta)`` writes a checkpoint (e.g. ``RunFolder.save_checkpoint``).
        step: one iteration; it commits its state only once everything is computed.
        state: ``() -> (arrays, meta)``, the state of the boundary just reached.
        done: ``() -> bool``, the loop's end; due: ``() -> bool``, a periodic checkpoint now?
        stream: where :class:`StopRequests` says what happens (default ``sys.stderr``).
        on_stop: ``on_stop(exc, meta)`` after the emergency save (tell the user how to resume).
        unsaved: exception types that propagate without a save, e.g. divergence, so that the
            last good checkpoint stays rather than the state that led to it.

    Returns:
        The ``(arrays, meta)`` of the last boundary, saved. Raises :class:`Interrupted` (exit
        status 128 + signal) after the first signal, once the iteration in progress is done
        and saved; a second signal abandons it and saves the boundary before it.
    """
    with StopRequests(stream) as stop:
        last = state()
        try:
            while not done() and not stop.requested:
                step()
                last = state()
                if due():
                    save(*last)
            stop.stopping = stop.requested  # stopping: no later signal cuts the save short
            save(*last)
        except unsaved:
            raise
        except KeyboardInterrupt as exc:  # a second signal (Interrupted), or a plain Ctrl-C
            stop.stopping = True
            save(*last)
            if on_stop is not None:
                on_stop(exc, last[1])
            raise
        except Exception:
            save(*last)
            raise
        if stop.requested:
            exc = stop.interrupted()
            if on_stop is not None:
                on_stop(exc, last[1])
            raise exc
    return last


# --- atomic files -----------------------------------------------------------------------------


def _temporary(path: Path) -> tuple[int, Path]:
    """A new temporary file beside ``path``, created with mode ``0666 & ~umask``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        temp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:  # 2^-32 per try
            continue


def _fsync_folder(folder: Path):
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write) -> Path:
    """Write a file by ``write(stream)`` (binary) so that it appears complete or not at all.

    The bytes go to ``NAME.XXXXXXXX.tmp`` beside ``path``, are flushed and synced, and the
    temporary file is renamed over ``path``; SIGINT and SIGTERM wait until then
    (:func:`signals_deferred`). On an exception the temporary file is removed and the
    previous ``path`` is left as it was. The file's mode is ``0666 & ~umask``.
    """
    path = Path(path)
    with signals_deferred():
        fd, temp = _temporary(path)
        try:
            with os.fdopen(fd, "wb") as stream:
                write(stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_folder(path.parent)
    return path


def remove_temporaries(folder) -> list:
    """Delete the temporaries of interrupted writes in ``folder``; returns their paths.

    Only safe while holding the folder's lock (another writer's temporary is not stale).
    """
    removed = []
    for entry in Path(folder).iterdir():
        if entry.is_file() and TEMPORARY.match(entry.name):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


# --- JSON ---------------------------------------------------------------------------------------


def find_non_finite(value, where: str = "") -> tuple[str, float] | None:
    """``(location, value)`` of the first NaN or infinity in a JSON-like value, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "(top level)", value
    if isinstance(value, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for location, item in items:
        found = find_non_finite(item, location)
        if found is not None:
            return found
    return None


def to_json(value, name: str) -> str:
    """``value`` as indented JSON; :class:`NonFiniteValue` (naming ``name``, where) on NaN/inf."""
    try:
        return json.dumps(value, indent=2, allow_nan=False)
    except ValueError:
        found = find_non_finite(value)
        if found is None:
            raise
        where, number = found
        raise NonFiniteValue(
            f"{name} would hold the non-finite number {number} at {where}; refusing to write "
            "it (JSON has no NaN or infinity, and a result that is not a number is not a result)"
        ) from None


def write_json(path, value) -> Path:
    """Write ``value`` as JSON, atomically; NaN and infinity are refused (:func:`to_json`)."""
    path = Path(path)
    text = to_json(value, str(path))
    return atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))


def read_json(path) -> dict:
    """A JSON object from ``path``; :class:`CorruptFile` if it is unreadable or not an object."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CorruptFile(path, "is not a text file (not UTF-8)") from None
    except OSError as exc:
        raise CorruptFile(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptFile(
            path, f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(value, dict):
        raise CorruptFile(path, f"must hold a JSON object; it holds a {type(value).__name__}")
    return value


# --- arrays and checkpoints -------------------------------------------------------------------


def write_npy(path, array) -> Path:
    """Write one array (NumPy or CuPy) as ``.npy``, atomically."""
    host = to_numpy(array)
    return atomic_write(path, lambda stream: np.save(stream, host, allow_pickle=False))


def read_npy(path):
    """One array from a ``.npy`` file; :class:`CorruptFile` if it cannot be read."""
    path = Path(path)
    try:
        value = np.load(path, allow_pickle=False)
    except Exception as exc:  # a damaged file can fail in many ways inside NumPy
        raise CorruptFile(path, _unreadable(exc, ".npy array")) from None
    if not isinstance(value, np.ndarray):
        raise CorruptFile(path, "is not a .npy array")
    return value


def write_checkpoint(path, arrays: dict, meta: dict) -> Path:
    """Write ``arrays`` (name -> NumPy or CuPy array) and ``meta`` (a JSON object) as ``.npz``.

    Atomically (:func:`atomic_write`). ``meta`` is stored as the JSON text of entry
    ``"meta"``; it may hold infinities (e.g. a relative mismatch whose reference vanished),
    which Python's JSON reads back.
    """
    if META in arrays:
        raise ValueError(f"an array may not be called {META!r} (the name of the JSON entry)")
    payload = {name: to_numpy(a) for name, a in arrays.items()}
    payload[META] = np.array(json.dumps(meta))
    return atomic_write(path, lambda stream: np.savez(stream, **payload))


def _unreadable(exc: BaseException, what: str) -> str:
    text = str(exc)
    if "pickle" in text:  # NumPy's words for object arrays; refimpl never writes them
        return (
            f"holds Python objects (pickled data), which refimpl never writes in a {what} "
            "and does not load"
        )
    return f"is not a readable {what}: it is truncated or damaged ({type(exc).__name__}: {text})"


def read_checkpoint(path) -> tuple[dict, dict]:
    """``(arrays, meta)`` from a file written by :func:`write_checkpoint`.

    Raises ``FileNotFoundError`` if there is no file, and :class:`CorruptFile` (naming the
    file and the damage) if it is not a zip archive, fails its CRC checks, is truncated,
    holds pickled objects, or lacks a JSON object ``meta``. Never unpickles anything.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    what = "refimpl checkpoint (.npz)"
    try:
        with open(path, "rb") as stream:
            head = stream.read(4)
        if head not in ZIP_MAGIC:
            raise CorruptFile(path, f"is not a {what}: it does not start like a zip archive")
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files if name != META}
            if META not in stored.files:
                raise CorruptFile(path, f"has no '{META}' entry: not a {what}")
            meta_array = stored[META]
    except CorruptFile:
        raise
    except Exception as exc:  # zipfile, zlib, NumPy's header parser: many ways to fail
        raise CorruptFile(path, _unreadable(exc, what)) from None
    for name, value in {**arrays, META: meta_array}.items():
        if not isinstance(value, np.ndarray):  # a member that is not an .npy array
            raise CorruptFile(path, f"its entry '{name}' is not an array: not a {what}")
    if meta_array.shape != () or meta_array.dtype.kind != "U":
        raise CorruptFile(path, f"its '{META}' entry is not a JSON text")
    try:
        meta = json.loads(str(meta_array))
    except json.JSONDecodeError as exc:
        raise CorruptFile(path, f"its '{META}' entry is not valid JSON ({exc.msg})") from None
    if not isinstance(meta, dict):
        raise CorruptFile(path, f"its '{META}' entry must be a JSON object")
    return arrays, meta


def check_arrays(path, arrays: dict, expected: dict):
    """Check ``arrays`` against ``expected`` (name -> ``(shape, dtype)``); :class:`CorruptFile`.

    Every expected name must be there and no other, each with exactly that shape and
    dtype (nothing is cast: an integer or complex array where floats belong is refused),
    and floating arrays must be finite.
    """
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise CorruptFile(path, f"arrays missing: {', '.join(missing)}")
    extra = sorted(set(arrays) - set(expected))
    if extra:
        raise CorruptFile(path, f"unexpected arrays: {', '.join(extra)}")
    for name, (shape, dtype) in expected.items():
        a = arrays[name]
        if a.dtype != np.dtype(dtype):
            raise CorruptFile(path, f"array '{name}' has dtype {a.dtype}; expected {dtype}")
        if tuple(a.shape) != tuple(shape):
            raise CorruptFile(
                path, f"array '{name}' has shape {tuple(a.shape)}; expected {tuple(shape)}"
            )
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise CorruptFile(path, f"array '{name}' holds NaN or infinite values")


def check_meta_keys(path, meta: dict, keys):
    """:class:`CorruptFile` unless the checkpoint's ``meta`` holds exactly ``keys``."""
    missing = [k for k in keys if k not in meta]
    if missing:
        raise CorruptFile(path, f"meta is missing {', '.join(missing)}")
    extra = sorted(set(meta) - set(keys))
    if extra:
        raise CorruptFile(path, f"meta has unexpected entries {', '.join(extra)}")


def check_seconds(path, seconds) -> float:
    """A checkpoint's training time: a non-negative finite number, else :class:`CorruptFile`."""
    if isinstance(seconds, bool) or not (
        isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0
    ):
        raise CorruptFile(path, f"meta 'seconds' must be a non-negative number; got {seconds!r}")
    return float(seconds)


def check_history(path, history, keys, iteration: int):
    """:class:`CorruptFile` unless a checkpoint's ``history`` holds exactly ``keys``, each a list
    of one entry per iteration done, and its ``"iteration"`` entry counts them: 1, 2, ..."""
    if not isinstance(history, dict) or set(history) != set(keys):
        raise CorruptFile(path, f"meta 'history' must hold exactly {', '.join(keys)}")
    for key in keys:
        if not isinstance(history[key], list) or len(history[key]) != iteration:
            raise CorruptFile(
                path, f"history '{key}' must list one entry per iteration ({iteration})"
            )
    if history["iteration"] != list(range(1, iteration + 1)):
        raise CorruptFile(path, "history's iteration entries do not count the iterations done")


# --- the lock -----------------------------------------------------------------------------------


class _Lock:
    """An exclusive ``flock`` on ``folder/.lock``, holding this process's id and command."""

    def __init__(self, folder: Path):
        path = folder / LOCK
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            self.fd = os.open(path, flags, 0o666)
        except PermissionError:
            message = f"cannot write in the run folder {folder}: it is read-only"
            raise RunFolderError(message) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self.fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            try:
                holder = path.read_text().strip() or "unknown process"
            except OSError:
                holder = "unknown process"
            raise FolderInUse(
                f"{folder} is in use by another process ({holder}); wait for it to finish "
                "or stop it (it saves a checkpoint), or choose another folder"
            ) from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"pid {os.getpid()}: {' '.join(sys.argv)}\n".encode())

    def release(self):
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None


# --- the folder -------------------------------------------------------------------------------


def _check_path(path) -> Path:
    if path is None or not str(path).strip():
        raise RunFolderError("the run folder path is empty; give a folder name")
    return Path(path)


def _make_folder(path: Path):
    """Create ``path`` (and parents) or say clearly why it cannot be."""
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"cannot use {path} as a run folder: it is a file, not a folder")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RunFolderError(f"cannot create the run folder {path}: {ancestor} is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise RunFolderError(
            f"cannot create the run folder {path}: no permission to write in {ancestor}"
        ) from None
    except OSError as exc:
        raise RunFolderError(
            f"cannot create the run folder {path}: {exc.strerror or exc}"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunFolderError(f"cannot write in the run folder {path}: it is read-only")


class RunFolder:
    """A run folder, locked by this process until :meth:`close` (a context manager).

    Make one with :meth:`create` (a new run) or :meth:`open` (resume). ``record`` is the
    content of ``config.json``: the command, its configuration, anything needed to
    continue the run.
    """

    def __init__(self, path: Path, record: dict, lock: _Lock):
        self.path, self.record, self._lock = Path(path), record, lock

    @classmethod
    def create(cls, path, record: dict, fresh_name: bool = False) -> RunFolder:
        """A new run folder at ``path`` holding ``record`` as ``config.json``.

        Refuses (:class:`FolderHoldsRun`) a folder that holds a run or any other files, so
        that runs never mix; with ``fresh_name`` it takes the first free one of ``path``,
        ``path-2``, ``path-3``, ... instead. Raises :class:`FolderInUse` if another process
        holds the folder and :class:`RunFolderError` if it cannot be created or written.
        """
        path = _check_path(path)
        candidates = [path] + (
            [path.with_name(f"{path.name}-{i}") for i in range(2, 1000)] if fresh_name else []
        )
        for candidate in candidates:
            try:
                return cls._create_one(candidate, record)
            except (FolderHoldsRun, FolderInUse):
                if candidate == candidates[-1]:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def start(
        cls, path, record: dict, checkpoint, fresh_name: bool = False, npy: dict | None = None
    ) -> RunFolder:
        """:meth:`create`, then what a run writes before it learns: the arrays ``npy``
        (name -> array, e.g. the training images) and the checkpoint of iteration 0
        (``checkpoint = (arrays, meta)``), so that a run killed in its first seconds can be
        resumed. If any of that fails the folder is unlocked and the error raised."""
        folder = cls.create(path, record, fresh_name)
        try:
            for name, array in (npy or {}).items():
                folder.write_npy(name, array)
            folder.save_checkpoint(*checkpoint)
        except BaseException:
            folder.close()
            raise
        return folder

    @classmethod
    def _create_one(cls, path: Path, record: dict) -> RunFolder:
        _make_folder(path)
        lock = _Lock(path)
        try:
            remove_temporaries(path)
            held = sorted(p.name for p in path.iterdir() if p.name != LOCK)
            if RECORD in held or CHECKPOINT in held:
                raise FolderHoldsRun(
                    f"{path} already holds a run; continue it with --resume {path}, or choose "
                    "another folder (or delete this one)"
                )
            if held:
                raise FolderHoldsRun(
                    f"{path} already holds other files ({', '.join(held[:5])}"
                    f"{', ...' if len(held) > 5 else ''}); a run folder must be new or empty, "
                    "so that no file of another run can be mistaken for this run's"
                )
            folder = cls(path, record, lock)
            folder.write_json(RECORD, record)
        except BaseException:
            lock.release()
            raise
        return folder

    @classmethod
    def open(cls, path) -> RunFolder:
        """The existing run folder ``path``, locked, with its ``config.json`` read.

        Raises :class:`NotARunFolder` if there is no such folder or no ``config.json``,
        :class:`FolderInUse` if another process holds it, and :class:`CorruptFile` if
        ``config.json`` is not a JSON object. Removes temporaries of interrupted writes.
        """
        path = _check_path(path)
        if not path.exists():
            raise NotARunFolder(f"{path} does not exist")
        if not path.is_dir():
            raise NotARunFolder(f"{path} is a file, not a run folder")
        if not (path / RECORD).is_file():
            raise NotARunFolder(f"{path} is not a run folder (no {RECORD})")
        lock = _Lock(path)
        try:
            record = read_json(path / RECORD)
            remove_temporaries(path)
        except BaseException:
            lock.release()
            raise
        return cls(path, record, lock)

    # --- files ---------------------------------------------------------------------------

    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return self.file(name).is_file()

    def write_json(self, name: str, value) -> Path:
        return write_json(self.file(name), value)

    def write_npy(self, name: str, array) -> Path:
        return write_npy(self.file(name), array)

    def read_npy(self, name: str):
        return read_npy(self.file(name))

    def write_figure(self, name: str, fig, dpi: int = 110) -> Path:
        """Save a matplotlib figure as PNG, atomically, and close it."""
        from refimpl import plotting  # only commands that draw pay for matplotlib

        return plotting.save(fig, self.file(name), dpi)

    def save_checkpoint(self, arrays: dict, meta: dict, name: str = CHECKPOINT) -> Path:
        return write_checkpoint(self.file(name), arrays, meta)

    def read_checkpoint(self, name: str = CHECKPOINT) -> tuple[dict, dict]:
        return read_checkpoint(self.file(name))

    def update_record(self, record: dict):
        """Rewrite ``config.json`` (e.g. a run extended to more iterations)."""
        self.write_json(RECORD, record)
        self.record = record

    # --- the lock ------------------------------------------------------------------------

    def close(self):
        """Release the lock (also done by the kernel if the process dies)."""
        self._lock.release()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"


class FolderRun:
    """A run of some command in its :class:`RunFolder`, which this process holds locked until
    :meth:`close` (a context manager). Each command's run (learning, classifier, sweep) adds
    what it trains."""

    def __init__(self, folder: RunFolder):
        self.folder = folder

    @property
    def out(self) -> Path:
        return self.folder.path

    def close(self):
        self.folder.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False
