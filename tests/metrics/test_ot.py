"""Tests of labkit.metrics.ot: exact W2, Sinkhorn divergence, sliced W2."""

import math

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import labkit
from labkit.metrics.ot import (_sinkhorn_dual, _squared_distances, sinkhorn, sliced_wasserstein2,
                               wasserstein2)


def points(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, dtype=torch.float64, generator=g) + shift


def w2(x, y, **kw):
    return wasserstein2(x, y, n_boot=0, **kw).value


def pot_w2(x, y, a=None, b=None):
    a = np.full(len(x), 1 / len(x)) if a is None else a
    b = np.full(len(y), 1 / len(y)) if b is None else b
    return math.sqrt(ot.emd2(a, b, ot.dist(np.asarray(x), np.asarray(y)), numItermax=10 ** 7))


# ---------------------------------------------------------------- exact W2

def test_w2_matches_pot_with_unequal_sizes_and_weights():
    x, y = points(40, 3, 0), points(30, 3, 1, shift=0.7)
    a = np.random.default_rng(0).random(40)
    # Same linear program, same solver: only summation order differs (1e-12 relative).
    np.testing.assert_allclose(w2(x, y, x_weights=a), pot_w2(x, y, a / a.sum()), rtol=1e-12)


@settings(max_examples=10)
@given(st.integers(0, 10 ** 6), st.integers(2, 12), st.integers(1, 3))
def test_w2_metric_axioms(seed, n, d):
    x, y, z = points(n, d, seed), points(n, d, seed + 1), points(n, d, seed + 2, shift=0.5)
    dxy = w2(x, y)
    assert w2(x, x) == 0.0  # exact differences give M_ii = 0 and the identity plan
    np.testing.assert_allclose(dxy, w2(y, x), rtol=1e-12)  # symmetry (transposed LP)
    assert dxy <= w2(x, z) + w2(z, y) + 1e-12  # triangle inequality between empirical measures
    assert dxy > 0  # distinct continuous samples


def test_w2_translation_is_exact():
    x = points(50, 2, 3)
    c = torch.tensor([0.3, -1.2], dtype=torch.float64)
    # Any non-identity coupling costs |c|^2 plus a positive amount: the plan is the identity.
    np.testing.assert_allclose(w2(x, x + c), float(c.norm()), rtol=1e-13)


def test_w2_1d_sorted_closed_form_and_fast_path_against_emd():
    x, y = points(64, 1, 4), points(64, 1, 5, shift=0.4)
    closed = math.sqrt(float((x[:, 0].sort().values - y[:, 0].sort().values).square().mean()))
    np.testing.assert_allclose(w2(x, y), closed, rtol=1e-14)
    np.testing.assert_allclose(w2(x, y), pot_w2(x, y), rtol=1e-10)
    # Unequal sizes and weights go through the merged-quantile coupling; emd is the reference.
    a = np.random.default_rng(1).random(64)
    np.testing.assert_allclose(w2(x, y[:37], x_weights=a),
                               pot_w2(x, y[:37], a / a.sum()), rtol=1e-10)


def diag_gaussian_w2(m1, a, m2, b):
    """Bures-Wasserstein distance of N(m1, diag a) and N(m2, diag b)."""
    return math.sqrt(float((m1 - m2).square().sum() + (a.sqrt() - b.sqrt()).square().sum()))


def test_w2_converges_to_gaussian_closed_form():
    m1, a = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.25])
    m2, b = torch.tensor([1.0, -0.5]), torch.tensor([0.5, 1.0])
    p = labkit.Gaussian(m1.double(), torch.diag(a).double())
    q = labkit.Gaussian(m2.double(), torch.diag(b).double())
    truth = diag_gaussian_w2(m1, a, m2, b)
    errors = []
    for n in (100, 400, 1600):
        # Average over 3 seeds to damp the fluctuation of a single pair.
        vals = [w2(p.sample(n, torch.Generator().manual_seed(s)),
                   q.sample(n, torch.Generator().manual_seed(100 + s))) for s in range(3)]
        errors.append(abs(float(np.mean(vals)) - truth))
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.05 * truth  # 2-D rate ~ n^{-1/2} log n: a few percent at n = 1600


def test_w2_bootstrap_interval_and_method():
    x, y = points(60, 2, 6), points(60, 2, 7, shift=1.0)
    est = wasserstein2(x, y, n_boot=30)
    lo, hi = est.interval
    assert 0 < lo < hi and hi - lo < est.value  # a real, not trivial, interval
    assert "biased upward" in est.method and est.n == 60


def test_w2_non_convergence_names_the_fix():
    x, y = points(100, 2, 8), points(100, 2, 9)
    with pytest.raises(RuntimeError, match=r"num_itermax=5\b.*num_itermax=50\b"):
        wasserstein2(x, y, num_itermax=5, n_boot=0)


@pytest.mark.parametrize("bad, err, match", [
    ((torch.zeros(4, 2), torch.zeros(4, 3)), ValueError, "same dimension"),
    ((torch.zeros(0, 2), torch.zeros(4, 2)), ValueError, "at least 1"),
    ((torch.tensor([[0.0, float("nan")]]), torch.zeros(4, 2)), ValueError, "finite"),
    ((torch.zeros(4), torch.zeros(4)), ValueError, "reshape"),
])
@pytest.mark.parametrize("fn", [
    lambda x, y: wasserstein2(x, y, n_boot=0), lambda x, y: sinkhorn(x, y, epsilon=1.0, n_boot=0),
    lambda x, y: sliced_wasserstein2(x, y)])
def test_bad_input(fn, bad, err, match):
    with pytest.raises(err, match=match):
        fn(*bad)


def test_bad_weights_and_options():
    x = points(5, 2, 0)
    with pytest.raises(ValueError, match="x_weights must have shape"):
        wasserstein2(x, x, x_weights=[1.0, 2.0], n_boot=0)
    with pytest.raises(ValueError, match="x_weights must be finite, >= 0"):
        wasserstein2(x, x, x_weights=[1.0, -1.0, 1.0, 1.0, 1.0], n_boot=0)
    with pytest.raises(ValueError, match="epsilon must be finite and > 0"):
        sinkhorn(x, x, epsilon=0.0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        sliced_wasserstein2(x, x, generator=3)


def test_float32_input_gives_the_float64_answer():
    x, y = points(50, 2, 10).float(), points(50, 2, 11, shift=0.3).float()
    # Computed in float64 on the float32 values: identical to the float64 call on them.
    assert w2(x, y) == w2(x.double(), y.double())
    assert sliced_wasserstein2(x, y).value == sliced_wasserstein2(x.double(), y.double()).value


# ---------------------------------------------------------------- Sinkhorn

def pot_entropic_cost(x, y, eps):
    """<P, M> + eps KL(P | a b^T) at POT's plan (standard Sinkhorn: safe for max(M)/eps ~ 40)."""
    M = ot.dist(x.numpy(), y.numpy())
    a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    P = ot.sinkhorn(a, b, M, eps, stopThr=1e-13, numItermax=100000)
    kl = np.sum(P * np.log(P / np.outer(a, b)))
    return float(np.sum(P * M) + eps * kl)


def test_sinkhorn_biased_cost_matches_pot():
    x, y = points(60, 2, 12), points(50, 2, 13, shift=1.0)
    value = sinkhorn(x, y, epsilon=1.0, debiased=False, n_boot=0, stop_threshold=1e-10).value
    # Both solved to marginal violation <= 1e-10; the costs agree to ~1e-9 relative.
    np.testing.assert_allclose(value, pot_entropic_cost(x, y, 1.0), rtol=1e-8)


def test_sinkhorn_divergence_tends_to_w2_squared():
    x, y = points(60, 2, 14), points(60, 2, 15, shift=1.0)
    exact = w2(x, y) ** 2
    gaps = [abs(sinkhorn(x, y, epsilon=eps, n_boot=0).value - exact) for eps in (1.0, 0.1, 0.02)]
    assert gaps[0] > gaps[1] > gaps[2], gaps
    # The debiasing cancels the O(eps log 1/eps) entropic term: the divergence's error is O(eps^2)
    # for densities (Chizat et al. 2020, arXiv:2006.08172) and, between discrete measures, the
    # entropic plan converges exponentially fast once eps is below the cost gaps (Cominetti &
    # San Martin 1994); at eps = 0.02 (~1% of the median cost) a 2% error is generous.
    assert gaps[2] < 0.02 * exact


def test_sinkhorn_identical_sets_debiased_zero_biased_not():
    x = points(50, 2, 16)
    debiased = sinkhorn(x, x, epsilon=0.1, n_boot=0).value
    biased = sinkhorn(x, x, epsilon=0.1, debiased=False, n_boot=0).value
    assert abs(debiased) < 1e-12  # the three terms are the same solve
    assert biased > 0.05  # negative control: the entropic bias is of order eps log n


def test_sinkhorn_divergence_of_a_copy_runs_the_general_solver():
    """``sinkhorn(x, x)`` shares one solve; a copy and a nearby cloud go through the x-y solver.

    The dual value of a solve stopped at an L1 marginal violation ``delta`` errs by at most
    ``delta * (max f + max g) <= delta * max M`` (the potentials lie within the cost's range),
    so ``|S_eps(x, copy)| <= 2 * delta * max M``; for a cloud moved by ``1e-3 * noise`` the
    divergence adds at most ``W2^2 <= 2e-6``."""
    x = points(50, 2, 16)
    stop = 1e-5
    bound = 2 * stop * float(torch.cdist(x, x).square().max())
    copy = sinkhorn(x, x.clone(), epsilon=0.1, n_boot=0, stop_threshold=stop).value
    assert abs(copy) <= bound
    near = x + 1e-3 * points(50, 2, 17)
    assert abs(sinkhorn(x, near, epsilon=0.1, n_boot=0, stop_threshold=stop).value) <= bound + 2e-6
    far = sinkhorn(x, x + 0.5, epsilon=0.1, n_boot=0, stop_threshold=stop).value
    assert far > 10 * bound  # control: a shifted copy is far outside the same bound


def test_sinkhorn_non_convergence_names_the_fix():
    x, y = points(80, 2, 17), points(80, 2, 18, shift=1.0)
    with pytest.raises(RuntimeError, match=r"stop_threshold.*num_itermax=2\b.*epsilon=0\.001"):
        sinkhorn(x, y, epsilon=1e-3, num_itermax=2, n_boot=0)


def test_sinkhorn_bootstrap_interval():
    x, y = points(40, 2, 19), points(40, 2, 20, shift=1.0)
    est = sinkhorn(x, y, epsilon=0.5, n_boot=20)
    assert est.interval[0] < est.interval[1] < math.inf and "Sinkhorn divergence" in est.method


def test_sinkhorn_epsilon_scaling_same_value_fewer_iterations():
    x, y = points(200, 2, 30), points(150, 2, 31, shift=1.0)
    M = _squared_distances(x, y)
    a = torch.full((200,), 1 / 200, dtype=torch.float64)
    b = torch.full((150,), 1 / 150, dtype=torch.float64)
    eps = 0.01 * float(M.median())  # the benchmark's small epsilon: slow plain convergence

    def solve(epsilon, scaling):
        return _sinkhorn_dual(a, b, M, epsilon, 100_000, 1e-9, False, scaling=scaling)

    plain, scaled = solve(eps, None), solve(eps, 0.5)
    # Same fixed point, both stopped at L1 marginal violation 1e-9: the dual values agree to
    # ~1e-9 relative (measured: identical to the last digit).
    np.testing.assert_allclose(scaled.value, plain.value, rtol=1e-8)
    assert plain.stages == 0 and scaled.stages > 5
    # The warm start saves iterations at the target epsilon (measured 885 vs 1152).
    assert scaled.iterations < 0.85 * plain.iterations, (scaled, plain)
    # Negative control: the same tolerance flags a 0.1% change of epsilon.
    assert abs(solve(1.001 * eps, 0.5).value - plain.value) > 1e-8 * plain.value


def test_sinkhorn_scaling_does_not_change_the_public_value():
    x, y = points(80, 3, 32), points(70, 3, 33, shift=0.5)
    values = [sinkhorn(x, y, epsilon=0.05, n_boot=0, stop_threshold=1e-10, scaling=s).value
              for s in (0.2, 0.5, 0.9)]
    # Each solve is stopped at marginal violation 1e-10: agreement to ~1e-9 relative.
    np.testing.assert_allclose(values, values[1], rtol=1e-8)
    with pytest.raises(ValueError, match=r"scaling must be in \(0, 1\)"):
        sinkhorn(x, y, epsilon=0.05, scaling=1.0)


# ---------------------------------------------------------------- sliced W2

def test_sliced_below_w2_with_the_1_over_d_constant():
    x, y = points(80, 3, 21), points(80, 3, 22, shift=0.8)
    est = sliced_wasserstein2(x, y, n_projections=512)
    M = ot.dist(x.numpy(), y.numpy())
    plan = ot.emd(np.full(80, 1 / 80), np.full(80, 1 / 80), M)
    # Per direction theta, W2^2(projections) <= theta^T C theta with C the second moment of
    # (x - y) under the optimal plan; E[theta theta^T] = I/d gives E <= W2^2 / d.
    diff = x.numpy()[:, None, :] - y.numpy()[None, :, :]
    C = np.einsum("ij,ijk,ijl->kl", plan, diff, diff)
    w2sq = np.trace(C)
    assert est.value <= math.sqrt(w2sq)  # every projection is 1-Lipschitz
    assert est.value ** 2 <= w2sq / 3 + 3 * 2 * est.value * est.stderr  # E-bound, 3 MC stderr
    assert est.value ** 2 > 0.5 * w2sq / 3  # not vacuous


def test_sliced_equals_w2_in_1d():
    x, y = points(70, 1, 23), points(70, 1, 24, shift=0.5)
    np.testing.assert_allclose(sliced_wasserstein2(x, y).value, w2(x, y), rtol=1e-14)


def test_sliced_unequal_sizes_exact_quantile_coupling():
    # In 1-D the projection is x itself: the merged-quantile coupling must match emd exactly.
    x, y = points(50, 1, 25), points(33, 1, 26, shift=0.2)
    np.testing.assert_allclose(sliced_wasserstein2(x, y).value, pot_w2(x, y), rtol=1e-10)


def test_sliced_matches_pot_within_direction_noise():
    x, y = points(200, 2, 27), points(200, 2, 28, shift=1.0)
    est = sliced_wasserstein2(x, y, n_projections=256, generator=torch.Generator().manual_seed(1))
    ref = ot.sliced_wasserstein_distance(x.numpy(), y.numpy(), n_projections=4000, seed=0)
    # POT's 4000 directions are ~4x more precise than our 256: allow 4 of our standard errors.
    assert abs(est.value - ref) < 4 * est.stderr, (est, ref)
    # Negative control: the same check flags a pair shifted by 0.1 more.
    shifted = ot.sliced_wasserstein_distance(x.numpy(), y.numpy() + 0.1, n_projections=4000,
                                             seed=0)
    assert abs(est.value - shifted) > 4 * est.stderr
    assert "sample variability not included" in est.method
