"""Exact references in one and two dimensions (refimpl.exact), against independent integrals.

Independent references, each with a negative control showing the comparison can fail:

* D = 1 (ReLU prototype): scipy.integrate.quad of the density written out by hand, on the
  intervals between the hyperplanes -b_k / w_k: log Z, mean, piece masses and first
  moments, the CDF and E[df/dw] to ~1e-9; exact samples pass a KS test; d log Z / dw equals
  E_w[df/dw] (the identity behind the maximum-likelihood gradient (5.8)).
* D = 2 (ReLU prototype and a 3-layer ConvNet): randomly shifted square lattices, with the
  density, patterns and df/dw written out by hand (not refimpl's code). For a uniformly
  random shift u, h^2 sum_i g(x_i + u) is an *unbiased* estimate of the integral of g over
  the lattice's box, whatever kinks or jumps g has; S = 64 independent shifts of a 401 x 401
  lattice give a mean and a standard error, and the exact value must lie within 6 standard
  errors (+1e-9 for the exact references' own accuracy). The lattice is seeded, so the test is
  deterministic. Why 64 shifts: for integrands with jumps (E[delta_u], E[df/dw]) the
  per-shift error is skewed -- most shifts err one way, a band of ~20% the other way, more
  strongly -- so 16 shifts can miss the band and underestimate the standard error
  (observed: 7.9 "SE" with 16 shifts, within 2 SE with 64 or more). With 64 shifts the
  largest |z| over all entries, over 30 lattice seeds, was 3.5. Resolutions reached: log Z
  and E[I] ~1e-7, discontinuous integrands ~1e-4.
  Stein's identity E[I] = sigma^2 E[B] (E[d log p / dI] = 0) is checked on every instance.
  For the prototype the kinks along a horizontal line are explicit, which gives a second,
  sharper reference (1e-9): closed-form Gaussian masses between the kinks, with an
  adaptive outer integral broken at the lines' intersections.
"""

import itertools
import math

import numpy as np
import pytest
from checks import EXACT, assert_close
from scipy import integrate, stats

from refimpl.convnet.pieces import as_pattern_list, pattern_keys
from refimpl.exact import exact_distribution
from refimpl.models import GenerativeModel, PrototypeModel
from refimpl.theorems import instances

# the exact references' own accuracy: kinks located by bisection to 1e-13 of the radius and outer
# integral to rtol 1e-10; quad below reaches ~1e-13. 1e-9 leaves an order of magnitude.
QUADRATURE = 1e-9


def prototype_log_u(model, x):
    """log(exp(f) q) of a prototype model, written out from Eqs. (5.1)-(5.2): x (n, D) -> (n,)."""
    W, b, s2 = model.scoring.weight, model.scoring.bias, model.sigma**2
    f = np.maximum(x @ W.T + b, 0).sum(1)
    return f - (x * x).sum(1) / (2 * s2) - 0.5 * x.shape[1] * math.log(2 * math.pi * s2)


# --- D = 1 ----------------------------------------------------------------------------------


class Quad1D:
    """Brute-force quadrature of a 1-D ReLU prototype between its kinks -b_k / w_k."""

    def __init__(self, model):
        self.model = model
        W, b = model.scoring.weight[:, 0], model.scoring.bias
        self.kinks = np.sort(-b / W)
        edges = np.concatenate([[-np.inf], self.kinks, [np.inf]])
        self.intervals = list(zip(edges[:-1], edges[1:]))
        mids = [
            0.5 * (a + c) if np.isfinite(a + c) else (c - 1 if np.isfinite(c) else a + 1)
            for a, c in self.intervals
        ]
        self.keys = (np.outer(mids, W) + b) > 0  # pattern of each interval
        # scale by the largest value of the density (at a kink or a piece mean) to avoid overflow
        candidates = np.concatenate([self.kinks, model.sigma**2 * (self.keys @ W)])
        self.shift = float(prototype_log_u(model, candidates[:, None]).max())
        self.mass = np.array([self.integral(a, c, 0) for a, c in self.intervals])
        self.first = np.array([self.integral(a, c, 1) for a, c in self.intervals])
        self.Z = self.mass.sum()

    def density(self, x, power):
        return x**power * math.exp(prototype_log_u(self.model, np.array([[x]]))[0] - self.shift)

    def integral(self, a, c, power):
        value, _ = integrate.quad(
            self.density, a, c, args=(power,), epsabs=1e-14, epsrel=1e-13, limit=200
        )
        return value

    @property
    def log_Z(self):
        return math.log(self.Z) + self.shift

    def cdf(self, x):
        total = 0.0
        for (a, c), m in zip(self.intervals, self.mass):
            if c <= x:
                total += m
            elif a < x:
                total += self.integral(a, x, 0)
        return total / self.Z


@pytest.fixture(scope="module")
def one_d():
    """A 1-D ReLU prototype, sigma 1.53, whose four pieces have masses 0.10-0.54."""
    model = instances.prototype(np.random.default_rng(5), 1, 3)
    dist = exact_distribution(model)
    ref = Quad1D(model)
    # the tests need every piece to matter: 0.05 of 20000 draws is 1000 per piece at least
    assert len(dist.probs) == 4 and dist.probs.min() > 0.05
    return model, dist, ref


def match_rows(keys, ref_keys):
    """Index ``j`` with ``ref_keys[j] == keys[i]`` for every row ``i`` (each must be found once)."""
    idx = [int(np.flatnonzero((ref_keys == k).all(1))[0]) for k in keys]
    assert sorted(idx) == sorted(set(idx))
    return np.array(idx)


def test_1d_log_Z_mean_and_pieces_match_quadrature(one_d):
    model, dist, ref = one_d
    assert abs(dist.log_Z - ref.log_Z) < QUADRATURE
    assert abs(dist.mean()[0] - ref.first.sum() / ref.Z) < QUADRATURE * model.sigma
    idx = match_rows(dist.keys, ref.keys)
    assert len(idx) == len(ref.intervals)  # every interval has mass, none missing
    assert np.abs(dist.probs - ref.mass[idx] / ref.Z).max() < QUADRATURE
    first = dist.probs * dist.means[:, 0]  # E[I 1_A]: well conditioned even for small P(A)
    assert np.abs(first - ref.first[idx] / ref.Z).max() < QUADRATURE * model.sigma


def test_negative_control_1d_quadrature_catches_untruncated_piece_means(one_d):
    """Taking each piece's mean as its Gaussian's, sigma^2 B (ignoring truncation), is caught."""
    model, dist, ref = one_d
    _, B = model.scoring.linear_piece(dist.means)
    idx = match_rows(dist.keys, ref.keys)
    wrong = dist.probs * model.sigma**2 * B[:, 0]
    assert np.abs(wrong - ref.first[idx] / ref.Z).max() > 1e3 * QUADRATURE * model.sigma


def piece_gaussian_means(model, dist, shape):
    """``sigma^2 B_A`` for each listed piece ``A`` (B at its conditional mean, inside it)."""
    _, B = model.scoring.linear_piece(dist.means.reshape((-1,) + shape))
    return model.sigma**2 * B.reshape(len(B), -1)


@pytest.mark.parametrize("which", ["one_d", "proto_2d", "conv_2d"])
def test_mean_is_sigma_squared_expected_B(which, request):
    """Stein's identity E[d log p / dI] = 0 gives E[I] = sigma^2 E[B] = sum_A P(A) sigma^2 B_A:
    the truncations cancel over the pieces. Exact, so to the exact references' accuracy."""
    fixture = request.getfixturevalue(which)
    model, dist = fixture[0], fixture[1] if which == "one_d" else fixture[2]
    shape = (1,) if which == "one_d" else fixture[1]
    mixture = dist.probs @ piece_gaussian_means(model, dist, shape)
    assert np.abs(dist.mean() - mixture).max() < QUADRATURE * model.sigma
    # negative control: equal masses in place of p's break it
    uniform = np.full(len(dist.probs), 1 / len(dist.probs)) @ piece_gaussian_means(
        model, dist, shape
    )
    assert np.abs(dist.mean() - uniform).max() > 1e3 * QUADRATURE * model.sigma


def test_1d_density_is_normalised(one_d):
    """exp(log_density) integrates to 1; with log Z off by 1e-6 it does not (negative control)."""
    model, dist, ref = one_d
    edges = [iv for iv in ref.intervals]

    def total(offset):
        g = lambda x: math.exp(dist.log_density(np.array([[x]]))[0] - offset)
        return sum(
            integrate.quad(g, a, c, epsabs=1e-14, epsrel=1e-13, limit=200)[0] for a, c in edges
        )

    assert abs(total(0.0) - 1) < QUADRATURE
    assert abs(total(1e-6) - 1) > 100 * QUADRATURE


def test_1d_cdf_matches_quadrature(one_d):
    model, dist, ref = one_d
    s = model.sigma
    xs = np.concatenate([ref.kinks, ref.kinks + 1e-3 * s, dist.mean() + s * np.linspace(-4, 4, 9)])
    expected = np.array([ref.cdf(x) for x in xs])
    assert np.abs(dist.cdf(xs) - expected).max() < QUADRATURE
    assert np.all(np.diff(dist.cdf(np.sort(xs))) >= 0)
    # 1000 sigma out the tails are below 1e-300: what is left is the rounding of a sum of
    # four masses of size <= 1 (a few units of 1.1e-16)
    assert (
        abs(dist.cdf(np.array([-1e3 * s]))[0]) < 1e-15
        and abs(dist.cdf(np.array([1e3 * s]))[0] - 1) < 1e-15
    )
    # negative control: the CDF of q (untilted) is far from it, 1e7 times QUADRATURE
    assert np.abs(stats.norm.cdf(xs, scale=s) - expected).max() > 1e-2


def test_1d_samples_pass_a_ks_test(one_d):
    model, dist, _ = one_d
    draws = dist.sample(20000, np.random.default_rng(0))
    assert draws.shape == (20000, 1)
    # p > 1e-4: a correct sampler fails with probability 1e-4 (and the generator is seeded).
    assert stats.kstest(draws[:, 0], dist.cdf).pvalue > 1e-4
    # negative controls: a shift of a tenth of sigma, or draws from q, are rejected
    assert stats.kstest(draws[:, 0] + 0.1 * model.sigma, dist.cdf).pvalue < 1e-4
    q_draws = model.sigma * np.random.default_rng(1).standard_normal(20000)
    assert stats.kstest(q_draws, dist.cdf).pvalue < 1e-4


def test_1d_expected_param_grads_match_quadrature(one_d):
    """E[delta_k I] and E[delta_k], Eq. (5.8), by quadrature over the intervals with delta_k = 1."""
    model, dist, ref = one_d
    dW, db = dist.expected_param_grads()
    on = ref.keys.astype(float)  # (intervals, K)
    assert_close(db, on.T @ ref.mass / ref.Z, QUADRATURE, "E[delta_k]")
    assert_close(dW[:, 0], on.T @ ref.first / ref.Z, QUADRATURE, "E[delta_k I]")
    E, EI = dist.unit_moments()
    assert_close(E, db, EXACT, "unit_moments vs expected_param_grads")
    assert_close(EI, dW, EXACT, "unit_moments vs expected_param_grads")
    with pytest.raises(AssertionError, match="E\\[delta_k\\]"):  # negative control: E_q, not E_p
        q_on = stats.norm.sf(-model.scoring.bias / model.scoring.weight[:, 0] / model.sigma)
        q_on = np.where(model.scoring.weight[:, 0] > 0, q_on, 1 - q_on)
        assert_close(q_on, on.T @ ref.mass / ref.Z, QUADRATURE, "E[delta_k]")


def log_Z_gradient(model, event_shape=None, h=1e-5):
    """Central differences of exact log Z in every parameter of a prototype model."""
    proto = model.scoring
    out = []
    for array in (proto.weight, proto.bias):
        grad = np.zeros(array.size)
        for p in range(array.size):
            values = []
            for step in (h, -h):
                W, b = proto.weight.copy(), proto.bias.copy()
                (W if array is proto.weight else b).reshape(-1)[p] += step
                shifted = GenerativeModel(PrototypeModel(W, b), model.sigma)
                values.append(exact_distribution(shifted, event_shape).log_Z)
            grad[p] = (values[0] - values[1]) / (2 * h)
        out.append(grad.reshape(array.shape))
    return out


def test_1d_log_Z_gradient_is_expected_param_grad(one_d):
    """d log Z / dw = E_w[df/dw] (the model term of (5.8)), by differences of exact log Z.

    log Z is smooth in w; central differences with h = 1e-5 carry h^2 |d^3 log Z| / 6 ~ 1e-11
    truncation and ~1e-13 / h = 1e-8 from log Z's own error: 1e-6 relative leaves margin.
    """
    model, dist, _ = one_d
    fd_W, fd_b = log_Z_gradient(model)
    dW, db = dist.expected_param_grads()
    assert_close(dW, fd_W, 1e-6, "E[df/dW] vs d log Z / dW")
    assert_close(db, fd_b, 1e-6, "E[df/db] vs d log Z / db")
    with pytest.raises(AssertionError, match="d log Z / dW"):  # negative control: delta ignored
        assert_close(np.tile(dist.mean(), (3, 1)), fd_W, 1e-6, "E[df/dW] vs d log Z / dW")


# --- D = 2: randomly shifted lattices ---------------------------------------------------------

N_SHIFTS = 64
LATTICE = 401
T_SE = 6.0  # P(|t_63| > 6) = 1e-7 for a normal mean; see the module docstring
FLOOR = 1e-9  # the exact references' accuracy (QUADRATURE) and rounding, where the lattice SE is ~0


def support_radius(model, event_shape):
    """Half-width of a box holding all but e^-40 of the mass: sigma^2 max|B| + 9 sigma.

    max |B| is taken over a polar probe out to 100 sigma (every unbounded piece shows on it);
    the lattice itself confirms that the density is negligible on the box's edge.
    """
    angles = np.linspace(0, 2 * np.pi, 361)[:-1]
    rays = np.stack([np.cos(angles), np.sin(angles)], 1)
    radii = model.sigma * np.array([0, 0.25, 0.5, 1, 2, 3, 5, 10, 100])
    points = (radii[:, None, None] * rays).reshape((-1,) + event_shape)
    B = model.scoring.grad_input(points).reshape(len(points), -1)
    return model.sigma**2 * float(np.linalg.norm(B, axis=1).max()) + 9 * model.sigma


def _dot(a, b):
    """``a @ b`` for the lattices' tall, skinny products, by einsum's own loops: multithreaded
    BLAS is ~10x slower on these shapes when the machine's cores are busy."""
    return np.einsum("ij,jk->ik", a, b)


class HandPrototype:
    """A 2-D prototype model written out from Eqs. (5.1)-(5.5), independently of refimpl."""

    def __init__(self, model):
        self.W, self.b, self.sigma = model.scoring.weight, model.scoring.bias, model.sigma

    def evaluate(self, P):
        """``log(exp(f) q) (N,)`` and the activation pattern ``(N, K)`` at points ``P (N, 2)``."""
        r = _dot(P, self.W.T) + self.b
        s2 = self.sigma**2
        log_u = np.maximum(r, 0).sum(1) - (P * P).sum(1) / (2 * s2) - math.log(2 * math.pi * s2)
        return log_u, r > 0

    def weighted_grads(self, P, w):
        """``sum_m w_m df/dw(P_m)``: ``(sum_m w_m delta_m P_m^T, sum_m w_m delta_m)``, flat."""
        on = ((_dot(P, self.W.T) + self.b) > 0) * w[:, None]
        return flat_grads((_dot(on.T, P), on.sum(0)))


class HandMLP:
    """A ConvNet of 1x1 kernels on 2-channel 1x1 images is an MLP: x -> h(W x + b) per layer
    with W = weight[:, :, 0, 0]. Forward pass, patterns and the backprop of sum_m w_m f(I_m)
    (Eqs. (7.2)-(7.4) in matrix form), written out independently of refimpl."""

    def __init__(self, model):
        self.layers = [(l.weight[:, :, 0, 0], l.bias, l.relu) for l in model.scoring.layers]
        self.sigma = model.sigma

    def _forward(self, P):
        xs, zs, x = [P], [], P
        for W, b, relu in self.layers:
            z = _dot(x, W.T) + b
            x = np.maximum(z, 0) if relu else z
            zs.append(z)
            xs.append(x)
        return xs, zs

    def evaluate(self, P):
        xs, zs = self._forward(P)
        s2 = self.sigma**2
        log_u = xs[-1].sum(1) - (P * P).sum(1) / (2 * s2) - math.log(2 * math.pi * s2)
        keys = np.concatenate(
            [z > 0 if relu else np.ones(z.shape, bool) for z, (_, _, relu) in zip(zs, self.layers)],
            axis=1,
        )
        return log_u, keys

    def weighted_grads(self, P, w):
        xs, zs = self._forward(P)
        g, out = np.tile(w[:, None], (1, self.layers[-1][0].shape[0])), []
        for l in reversed(range(len(self.layers))):
            W, _, relu = self.layers[l]
            gz = g * (zs[l] > 0) if relu else g
            out.append((_dot(gz.T, xs[l])[:, :, None, None], gz.sum(0)))
            g = _dot(gz, W)
        return flat_grads(out[::-1])


def flat_grads(grads):
    """Parameter gradients (a prototype's pair or a ConvNet's list of pairs) as one flat vector."""
    return np.concatenate(
        [np.ravel(g) for pair in (grads if isinstance(grads, list) else [grads]) for g in pair]
    )


class Lattice:
    """Estimates of log Z, E[I], E[delta_u], E[delta_u I], E[df/dw] from randomly shifted lattices.

    ``values[name]`` has a leading axis of ``N_SHIFTS`` independent estimates, one per
    uniformly random shift of an ``n x n`` lattice over ``[-R, R]^2``; everything is computed
    by ``hand`` (:class:`HandPrototype`, :class:`HandMLP`), not by refimpl.
    """

    def __init__(self, hand, R, n, seed):
        rng = np.random.default_rng(seed)
        h = 2 * R / n
        rows = {k: [] for k in ("log_Z", "mean", "E_delta", "E_delta_I", "grads")}
        self.edge = 0.0
        for _ in range(N_SHIFTS):
            u = rng.random(2)
            xs, ys = -R + (np.arange(n) + u[0]) * h, -R + (np.arange(n) + u[1]) * h
            P = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)
            log_u, keys = hand.evaluate(P)
            top = log_u.max()
            w = np.exp(log_u - top)
            ring = w.reshape(n, n)
            self.edge = max(
                self.edge, ring[0].max(), ring[-1].max(), ring[:, 0].max(), ring[:, -1].max()
            )
            Z = w.sum()
            w = w / Z
            on = keys * w[:, None]
            rows["log_Z"].append(math.log(Z * h * h) + top)
            rows["mean"].append(w @ P)
            rows["E_delta"].append(on.sum(0))
            rows["E_delta_I"].append(_dot(on.T, P))
            rows["grads"].append(hand.weighted_grads(P, w))
        self.values = {k: np.array(v) for k, v in rows.items()}

    def z_scores(self, name, exact):
        v = self.values[name]
        est, se = v.mean(0), v.std(0, ddof=1) / math.sqrt(len(v))
        return np.abs(est - np.asarray(exact)) / (se + FLOOR / T_SE)

    def assert_agrees(self, name, exact, what=None):
        """``|lattice mean - exact| <= 6 SE + 1e-9`` for every entry."""
        z = self.z_scores(name, exact)
        assert z.max() <= T_SE, f"{what or name}: off by {z.max():.1f} lattice standard errors"


@pytest.fixture(scope="module")
def proto_2d():
    """A 2-D ReLU prototype (3 filters, sigma 1.02; piece masses 0.59, 0.29, 0.05, ...)."""
    model = instances.prototype(np.random.default_rng(1), 2, 3)
    dist = exact_distribution(model)
    lattice = Lattice(HandPrototype(model), support_radius(model, (2,)), LATTICE, seed=20)
    return model, (2,), dist, lattice


@pytest.fixture(scope="module")
def conv_2d():
    """A 3-layer ConvNet (widths 4, 3, linear top) on 2-channel 1x1 images: 18 pieces."""
    model, shape = instances.lowdim_convnet(np.random.default_rng(5), 2)
    dist = exact_distribution(model, shape)
    lattice = Lattice(HandMLP(model), support_radius(model, shape), LATTICE, seed=21)
    return model, shape, dist, lattice


@pytest.fixture(params=["prototype", "convnet"])
def two_d(request):
    return request.getfixturevalue({"prototype": "proto_2d", "convnet": "conv_2d"}[request.param])


def test_2d_pieces_are_a_distribution(two_d):
    model, shape, dist, lattice = two_d
    assert lattice.edge < 1e-15  # the box holds the mass to rounding (see support_radius)
    assert np.all(dist.probs > 0) and abs(dist.probs.sum() - 1) < EXACT
    assert len({k.tobytes() for k in dist.keys}) == len(dist.keys)  # each piece listed once
    # each piece is convex, so its conditional mean lies in it -- for the tiniest pieces too
    # (1e-15 here), whose means are ratios of small integrals; sample() takes B from them
    assert np.array_equal(dist.piece_of(dist.means), np.arange(len(dist.probs)))


def test_2d_log_Z_and_mean_match_the_lattice(two_d):
    model, shape, dist, lattice = two_d
    lattice.assert_agrees("log_Z", dist.log_Z)
    lattice.assert_agrees("mean", dist.mean())
    # the lattice's resolution (its standard errors), so that the agreement means something:
    # below the 1e-5 errors the negative control below plants
    assert lattice.values["log_Z"].std(ddof=1) / math.sqrt(N_SHIFTS) < 1e-6
    assert lattice.values["mean"].std(0, ddof=1).max() / math.sqrt(N_SHIFTS) < 1e-6 * model.sigma


def test_negative_control_2d_lattice_catches_small_errors(two_d):
    """log Z off by 1e-5 (the density then integrates to 1 - 1e-5), or a mean off by 1e-5 sigma,
    are caught (the lattice's standard errors are ~1e-7 to 5e-7)."""
    model, shape, dist, lattice = two_d
    with pytest.raises(AssertionError, match="standard errors"):
        lattice.assert_agrees("log_Z", dist.log_Z + 1e-5)
    with pytest.raises(AssertionError, match="standard errors"):
        lattice.assert_agrees("mean", dist.mean() + 1e-5 * model.sigma)


def test_2d_unit_moments_match_the_lattice(two_d):
    model, shape, dist, lattice = two_d
    E, EI = dist.unit_moments()
    assert E.shape == (dist.keys.shape[1],) and EI.shape == (dist.keys.shape[1], 2)
    lattice.assert_agrees("E_delta", E)
    lattice.assert_agrees("E_delta_I", EI)
    # negative control: E[delta_u I] = E[delta_u] E[I] (independence) is wrong
    with pytest.raises(AssertionError, match="standard errors"):
        lattice.assert_agrees("E_delta_I", np.outer(E, dist.mean()))


def test_2d_expected_param_grads_match_the_lattice(two_d):
    model, shape, dist, lattice = two_d
    expected = dist.expected_param_grads()
    lattice.assert_agrees("grads", flat_grads(expected))
    # negative control: df/dw at E[I] (Jensen's mistake; df/dw is not affine across pieces)
    at_mean = model.scoring.grad_params(dist.mean().reshape((1,) + shape))
    with pytest.raises(AssertionError, match="standard errors"):
        lattice.assert_agrees("grads", flat_grads(at_mean))


@pytest.mark.parametrize("which", ["proto_2d", "conv_2d"])
def test_hand_models_agree_with_refimpl(which, request):
    """The lattice's hand-written density, patterns and weighted df/dw are refimpl's."""
    model, shape, _, _ = request.getfixturevalue(which)
    hand = (HandPrototype if which == "proto_2d" else HandMLP)(model)
    P = 2 * model.sigma * np.random.default_rng(22).standard_normal((6, 2))
    w = np.random.default_rng(23).random(6)
    images = P.reshape((-1,) + shape)
    log_u, keys = hand.evaluate(P)
    assert_close(log_u, model.log_density_unnormalised(images), EXACT, "log(exp(f) q)")
    assert np.array_equal(
        keys, pattern_keys(as_pattern_list(model.scoring.activation_pattern(images)))
    )
    summed = sum(wi * flat_grads(model.scoring.grad_params(im[None])) for wi, im in zip(w, images))
    assert_close(hand.weighted_grads(P, w), summed, EXACT, "weighted df/dw")
    with pytest.raises(AssertionError, match="weighted df/dw"):  # negative control: weights dropped
        assert_close(hand.weighted_grads(P, np.ones(6)), summed, EXACT, "weighted df/dw")


def test_2d_samples_match_mean_and_piece_masses(two_d):
    model, shape, dist, _ = two_d
    n = 20000
    draws = dist.sample(n, np.random.default_rng(24))
    assert draws.shape == (n, 2)
    assert np.all(dist.piece_of(draws) >= 0)  # every draw lies in a listed piece
    # the mean: independent draws, standard error std / sqrt(n); 5 SE (P = 5.7e-7 per coordinate)
    se = draws.std(0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(draws.mean(0) - dist.mean()) < 5 * se)
    # piece frequencies: chi-square (pieces with fewer than 5 expected draws pooled);
    # p > 1e-4 fails a correct sampler with probability 1e-4 (seeded here)
    assert chi2_pvalue(draws, dist) > 1e-4
    # negative controls: draws of q fail both checks
    q_draws = model.sigma * np.random.default_rng(25).standard_normal((n, 2))
    assert np.any(np.abs(q_draws.mean(0) - dist.mean()) > 5 * se)
    assert chi2_pvalue(q_draws, dist) < 1e-4


def chi2_pvalue(draws, dist):
    """Chi-square test of the draws' piece frequencies against ``dist.probs``; draws outside
    the listed pieces form one more bin of expected count 0 (which fails the test outright)."""
    n = len(draws)
    which = dist.piece_of(draws)
    if np.any(which < 0):
        return 0.0
    counts = np.bincount(which, minlength=len(dist.probs))
    small = n * dist.probs < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(n * dist.probs[~small], n * dist.probs[small].sum())
    keep = exp > 0
    return stats.chisquare(obs[keep], exp[keep] * obs[keep].sum() / exp[keep].sum()).pvalue


@pytest.fixture(scope="module")
def ridge():
    """f(I) = -5 relu(I_1) (a ConvNet with a concave kink): on the piece I_1 > 0 the density is
    N((-5, 0), 1) restricted to I_1 > 0 -- mass 0.13 of p, but only Phi(-5) = 2.9e-7 of its
    own Gaussian lies in the piece."""
    from refimpl import ConvLayer, ConvNet

    net = ConvNet(
        [
            ConvLayer(np.array([5.0, 0.0]).reshape(1, 2, 1, 1), np.zeros(1)),
            ConvLayer(-np.ones((1, 1, 1, 1)), np.zeros(1), activation="linear"),
        ]
    )
    model = GenerativeModel(net, 1.0)
    return model, exact_distribution(model, (2, 1, 1))


def test_ridge_model_exact_masses(ridge):
    """The ridge model's pieces by hand: P(I_1 > 0) = e^12.5 Phi(-5) / (1/2 + e^12.5 Phi(-5))."""
    model, dist = ridge
    right = math.exp(12.5) * stats.norm.cdf(-5)
    on = dist.keys[:, 0]
    assert abs(dist.probs[on][0] - right / (0.5 + right)) < QUADRATURE
    assert abs(dist.log_Z - math.log(0.5 + right)) < QUADRATURE


def test_2d_sample_handles_a_piece_whose_gaussian_lies_outside_it(ridge):
    """The piece I_1 > 0 holds 0.13 of p but only 2.9e-7 of its own Gaussian: rejection from
    that Gaussian would stall; the strip sampler draws it directly (y by inverse CDF, x | y
    exactly), so 2000 draws are quick and pass the chi-square test against the exact masses."""
    model, dist = ridge
    draws = dist.sample(2000, np.random.default_rng(0))
    assert chi2_pvalue(draws, dist) > 1e-4


# --- D = 2 prototype: explicit kinks, a sharper independent reference --------------------------


def nested_prototype_moments(model, R):
    """log Z, E[I], E[delta_k], E[delta_k I] of a 2-D prototype by explicit line integrals.

    On the horizontal line at height y the kinks are x_k(y) = -(w_k2 y + b_k) / w_k1; between
    two of them f = alpha + B1 x + B2 y, so exp(f) q is a Gaussian in x with mean sigma^2 B1
    whose mass and first moment are normal CDFs (scipy.stats.norm). The outer integral over
    y is adaptive, broken at the heights of the lines' intersections.
    """
    W, b, s = model.scoring.weight, model.scoring.bias, model.sigma
    K = len(b)
    vertex_y = []
    for j, k in itertools.combinations(range(K), 2):
        try:
            vertex_y.append(np.linalg.solve(W[[j, k]], -b[[j, k]])[1])
        except np.linalg.LinAlgError:
            pass
    centre = float(prototype_log_u(model, (s**2 * W.sum(0))[None]).max())

    def line(y):
        xs = np.sort(-(W[:, 1] * y + b) / W[:, 0])
        edges = np.concatenate([[-np.inf], xs, [np.inf]])
        out = np.zeros(3 + 3 * K)
        for a, c in zip(edges[:-1], edges[1:]):
            x_mid = 0.5 * (a + c) if np.isfinite(a + c) else (c - 1 if np.isfinite(c) else a + 1)
            delta = W @ np.array([x_mid, y]) + b > 0
            alpha, B = delta @ b, delta @ W
            mu = s * s * B[0]
            za, zc = (a - mu) / s, (c - mu) / s
            P = (
                stats.norm.cdf(zc) - stats.norm.cdf(za)
                if zc < 0
                else stats.norm.sf(za) - stats.norm.sf(zc)
            )
            if P <= 0:
                continue
            log_c = alpha + B[1] * y - y * y / (2 * s * s) + mu * mu / (2 * s * s) - centre
            mass = math.exp(log_c) * s * math.sqrt(2 * math.pi) * P
            mean_x = mu + s * (stats.norm.pdf(za) - stats.norm.pdf(zc)) / P
            row = np.array([mass, mass * mean_x, mass * y])
            out[:3] += row
            out[3:] += np.outer(delta, row).ravel()
        return out

    res, err = integrate.quad_vec(
        line, -R, R, points=sorted(vertex_y), epsabs=1e-15, epsrel=1e-13, norm="max", limit=10000
    )
    Z = res[0]
    log_Z = math.log(Z) + centre - math.log(2 * math.pi * s * s)
    per_unit = res[3:].reshape(K, 3) / Z
    return log_Z, res[1:3] / Z, per_unit[:, 0], per_unit[:, 1:]


def test_2d_prototype_matches_explicit_line_integrals(proto_2d):
    model, shape, dist, _ = proto_2d
    log_Z, mean, E, EI = nested_prototype_moments(model, support_radius(model, shape))
    assert abs(dist.log_Z - log_Z) < QUADRATURE
    assert np.abs(dist.mean() - mean).max() < QUADRATURE * model.sigma
    got_E, got_EI = dist.unit_moments()
    assert np.abs(got_E - E).max() < QUADRATURE
    assert np.abs(got_EI - EI).max() < QUADRATURE * model.sigma
    dW, db = dist.expected_param_grads()
    assert np.abs(db - E).max() < QUADRATURE and np.abs(dW - EI).max() < QUADRATURE * model.sigma
    # negative control: one filter's bias off by 1e-6 changes log Z by E[delta_k] 1e-6
    W, b = model.scoring.weight, model.scoring.bias.copy()
    b[np.argmax(E)] += 1e-6
    moved = GenerativeModel(PrototypeModel(W, b), model.sigma)
    assert (
        abs(nested_prototype_moments(moved, support_radius(model, shape))[0] - dist.log_Z)
        > 10 * QUADRATURE
    )


@pytest.mark.slow
def test_2d_prototype_log_Z_gradient_is_expected_param_grad(proto_2d):
    """d log Z / dw = E_w[df/dw] in 2-D (18 exact distributions: slow)."""
    model, shape, dist, _ = proto_2d
    fd_W, fd_b = log_Z_gradient(model)
    dW, db = dist.expected_param_grads()
    # log Z to ~1e-11 (outer rtol 1e-10 of a sum of O(1) masses): noise 1e-11 / 1e-5 = 1e-6
    assert_close(dW, fd_W, 1e-5, "E[df/dW] vs d log Z / dW")
    assert_close(db, fd_b, 1e-5, "E[df/db] vs d log Z / db")


# --- errors --------------------------------------------------------------------------------------


def test_three_dimensions_are_refused():
    model = instances.prototype(np.random.default_rng(0), 3, 2)
    with pytest.raises(ValueError, match="D = 1 or 2.*D = 3"):
        exact_distribution(model)
    net, _ = instances.lowdim_convnet(np.random.default_rng(0), 3)
    with pytest.raises(ValueError, match="D = 3"):
        exact_distribution(net, (3, 1, 1))


def test_smooth_models_are_refused():
    proto = PrototypeModel.random(3, 2, seed=0, activation="softplus")
    with pytest.raises(ValueError, match="piecewise-linear"):
        exact_distribution(GenerativeModel(proto, 1.0))


def test_cdf_is_one_dimensional(proto_2d):
    with pytest.raises(ValueError, match="D = 1"):
        proto_2d[2].cdf(np.zeros(3))


def test_negative_control_linear_models_are_accepted():
    """The counterpart of the refusals: a linear prototype in D = 2 is N(sigma^2 w, sigma^2 I)."""
    W = np.array([[0.5, -1.0], [0.25, 0.5]])
    model = GenerativeModel(PrototypeModel(W, np.array([0.1, 0.2]), activation="linear"), 0.8)
    dist = exact_distribution(model)
    # log Z = log E_q[exp(<I, w> + sum b)] = sum b + sigma^2 |w|^2 / 2 with w = sum_k w_k
    w = W.sum(0)
    assert abs(dist.log_Z - (0.3 + 0.64 * (w @ w) / 2)) < QUADRATURE
    assert np.abs(dist.mean() - 0.64 * w).max() < QUADRATURE
