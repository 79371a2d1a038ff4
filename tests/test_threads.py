"""Worker threads over batch chunks (refimpl.threads): same numbers, bit for bit, whatever the
number of threads; BLAS single-threaded inside; errors surface; bad settings refused."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from refimpl import threads
from refimpl.conv import conv2d, conv2d_adjoint, conv2d_weight_grad
from refimpl.learning import LearningConfig, Trainer


def problem(seed=0, batch=9):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, 13, 13))
    w = rng.standard_normal((4, 3, 5, 5))
    y = rng.standard_normal((batch, 4, 6, 6))  # (13 + 2 - 5) // 2 + 1 = 6
    return x, w, y


def kernels(x, w, y):
    return (
        conv2d(x, w, stride=2, pad=1),
        conv2d_adjoint(y, w, x.shape[2:], stride=2, pad=1),
        conv2d_weight_grad(x, y, 5, stride=2, pad=1),
    )


@pytest.mark.parametrize("n_workers", [2, 3])
def test_kernels_give_the_same_bits_on_any_number_of_threads(n_workers):
    """A batch of 9 is split into chunks that do not depend on the threads; the weight
    gradient adds the per-chunk sums in chunk order. So: exactly equal, not just close."""
    x, w, y = problem()
    sequential = kernels(x, w, y)
    with threads.parallel(n_workers):
        assert threads.workers() == n_workers
        threaded = kernels(x, w, y)
    for a, b in zip(sequential, threaded):
        assert np.array_equal(a, b)


def test_negative_control_another_chunking_changes_the_weight_gradient_bits():
    """Why the chunking is fixed: summing the batch in another grouping changes the last bits
    of the weight gradient (so a test of bitwise equality can fail)."""
    x, w, y = problem(seed=1, batch=16)
    whole = conv2d_weight_grad(x, y, 5, stride=2, pad=1)
    halves = conv2d_weight_grad(x[:8], y[:8], 5, stride=2, pad=1) + conv2d_weight_grad(
        x[8:], y[8:], 5, stride=2, pad=1
    )
    assert np.allclose(whole, halves, rtol=1e-12) and not np.array_equal(whole, halves)


def tiny_trainer():
    config = LearningConfig(
        spec=[(4, 3, 1, 1), (3, 3, 2, 0)],
        grow=False,
        chains=8,
        langevin_steps=2,
        iterations_per_layer=3,
        init_std="he",
        seed=3,
    )
    data = np.random.default_rng(4).standard_normal((2, 1, 12, 12)) * 50
    return Trainer(config, data)


def test_learning_is_the_same_on_one_and_on_two_threads():
    runs = []
    for n in (1, 2):
        trainer = tiny_trainer()
        with threads.parallel(n):  # the trainer's own parallel() nests inside and keeps n
            trainer.run()
        runs.append(trainer)
    a, b = runs
    assert np.array_equal(a.chains, b.chains)
    for (Wa, ba), (Wb, bb) in zip(a.net.parameters(), b.net.parameters()):
        assert np.array_equal(Wa, Wb) and np.array_equal(ba, bb)


def test_blas_is_single_threaded_inside_and_restored_outside():
    before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    with threads.parallel(2):
        inside = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert inside and all(n == 1 for n in inside)
    assert after == before
    assert threads.workers() == 1  # sequential again outside


def test_an_error_in_a_chunk_reaches_the_caller():
    def fail_on_second(n0, n1):
        if n0 > 0:
            raise RuntimeError(f"chunk {n0}:{n1} failed")
        return n0

    with threads.parallel(2), pytest.raises(RuntimeError, match="chunk 2:4 failed"):
        threads.map_chunks(fail_on_second, [(0, 2), (2, 4)])
    assert threads.map_chunks(lambda n0, n1: n1 - n0, [(0, 2), (2, 5)]) == [2, 3]


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_a_bad_thread_count_is_refused(monkeypatch, value):
    monkeypatch.setenv(threads.ENV_THREADS, value)
    with pytest.raises(ValueError, match="REFIMPL_THREADS must be a positive integer"):
        threads.default_workers()
    monkeypatch.setenv(threads.ENV_THREADS, "3")
    assert threads.default_workers() == 3  # the control: a valid value is taken


def test_keeping_freed_memory_is_asked_of_glibc_in_a_child_process():
    """In a fresh interpreter (the setting is process-wide): True on glibc, and arrays still
    compute the same; False where there is no mallopt (the call is then a no-op)."""
    import subprocess
    import sys

    code = (
        "import numpy as np; from refimpl.threads import keep_freed_memory; "
        "ok = keep_freed_memory(); a = np.ones((2000, 2000)); print(ok, float((a @ a)[0, 0]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    ok, value = done.stdout.split()
    assert value == "2000.0"
    import ctypes.util

    assert (ok == "True") == (ctypes.util.find_library("c") is not None and sys.platform == "linux")
