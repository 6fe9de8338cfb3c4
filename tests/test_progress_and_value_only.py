"""Progress bars leave results unchanged; ``n_boot=0`` gives the value alone.

Covers the ``progress`` keyword of ``flow_log_prob``, ``sampler_log_prob`` and
``chain_marginal_1d`` (bit-identical results with the bar on or off, and a bar actually drawn
on stderr only when asked), and the value-only mode ``n_boot=0`` of ``frechet_distance``,
``frechet_to_gaussian`` and ``mode_weight_error`` (same value as with the bootstrap, the
documented trivial interval, and a ``ValueError`` naming ``n_boot`` for ``1 <= n_boot < 10``).
"""

import math

import pytest
import torch

import labkit
from labkit.likelihood.flow import flow_log_prob
from labkit.likelihood.sampler import sampler_log_prob
from labkit.likelihood.sde_chain import chain_marginal_1d, level_grids
from labkit.metrics.gaussian import frechet_distance, frechet_to_gaussian
from labkit.metrics.mixture import mode_weight_error

F64 = torch.float64


def _mixture_2d():
    return labkit.GaussianMixture(torch.tensor([[-1.0, 0.0], [1.5, 0.5]], dtype=F64),
                                  torch.tensor([[0.3, 0.2], [0.5, 0.4]], dtype=F64),
                                  torch.tensor([0.4, 0.6], dtype=F64))


def _assert_bar(capsys, shown):
    """A tqdm bar writes its rate (it/s or s/it) to stderr when enabled and nothing when disabled."""
    err = capsys.readouterr().err
    assert ("it/s" in err or "s/it" in err) is shown, err


def test_flow_log_prob_progress_is_bit_identical(capsys):
    target = _mixture_2d()
    x = target.sample(10, generator=torch.Generator().manual_seed(0))
    kw = dict(sigma_min=0.05, sigma_max=5.0, n_steps=8, method="rk4")
    off = flow_log_prob(target, x, progress=False, **kw)
    _assert_bar(capsys, False)
    on = flow_log_prob(target, x, progress=True, **kw)
    _assert_bar(capsys, True)
    # Bit-identical: the bar only wraps the step loop, so rtol = atol = 0.
    for name in ("log_prob", "prior_log_prob", "delta_log_prob", "x_final", "error_estimate"):
        torch.testing.assert_close(getattr(on, name), getattr(off, name), rtol=0, atol=0)
    assert on.nfe == off.nfe
    # Negative control: the same zero-tolerance check flags a different run (n_steps=6).
    other = flow_log_prob(target, x, sigma_min=0.05, sigma_max=5.0, n_steps=6)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(other.log_prob, off.log_prob, rtol=0, atol=0)


def test_sampler_log_prob_progress_is_bit_identical(capsys):
    target = _mixture_2d()
    sigmas = labkit.grids.karras(6, 0.01, 10.0)
    z = 10.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    off = sampler_log_prob(target, z, sigmas, "heun", progress=False)
    _assert_bar(capsys, False)
    on = sampler_log_prob(target, z, sigmas, "heun", progress=True)
    _assert_bar(capsys, True)
    for name in ("y", "log_prob", "log_abs_det", "jacobian"):
        torch.testing.assert_close(getattr(on, name), getattr(off, name), rtol=0, atol=0)
    assert on.nfe == off.nfe


def test_chain_marginal_1d_progress_is_bit_identical(capsys):
    target = labkit.Gaussian(torch.tensor([0.5], dtype=F64), torch.tensor([[0.64]], dtype=F64))
    sigmas = labkit.grids.karras(5, 0.2, 5.0)
    grid = level_grids(sigmas, 101, -3.0, 3.0)  # every kernel resolved: no warning
    off = chain_marginal_1d(target, sigmas, "ddpm", grid=grid, progress=False)
    _assert_bar(capsys, False)
    on = chain_marginal_1d(target, sigmas, "ddpm", grid=grid, progress=True)
    _assert_bar(capsys, True)
    for name in ("grids", "densities", "mass", "noise_scales"):
        torch.testing.assert_close(getattr(on, name), getattr(off, name), rtol=0, atol=0)
    assert on.unresolved == off.unresolved


def _fd_pair():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(200, 3, generator=g, dtype=F64)
    return x, 1.2 * torch.randn(200, 3, generator=g, dtype=F64) + 0.3


@pytest.mark.parametrize("debias", [False, True])
def test_frechet_distance_value_only(debias):
    x, y = _fd_pair()
    full = frechet_distance(x, y, n_boot=10, generator=0, debias=debias)
    alone = frechet_distance(x, y, n_boot=0, generator=0, debias=debias)
    # The value is computed before (and independently of) the resamples: exactly equal.
    assert alone.value == full.value
    assert alone.interval == (0.0, math.inf)
    assert "no interval (n_boot=0)" in alone.method
    assert alone.n == 200
    # Negative control: with resamples the interval is a real, finite one.
    assert math.isfinite(full.interval[1])


def test_frechet_to_gaussian_value_only():
    x, _ = _fd_pair()
    full = frechet_to_gaussian(x, torch.zeros(3), torch.eye(3), n_boot=10)
    alone = frechet_to_gaussian(x, torch.zeros(3), torch.eye(3), n_boot=0)
    assert alone.value == full.value
    assert alone.interval == (0.0, math.inf)
    assert "no interval (n_boot=0)" in alone.method


def test_mode_weight_error_value_only():
    mix = labkit.GaussianMixture(torch.tensor([[-4.0], [4.0]], dtype=F64), 1.0,
                                 weights=[0.3, 0.7])
    wrong = labkit.GaussianMixture(mix.means, 1.0, weights=[0.5, 0.5])
    x = wrong.sample(500, generator=torch.Generator().manual_seed(3))
    full = mode_weight_error(x, mix)
    alone = mode_weight_error(x, mix, n_boot=0)
    assert alone.value == full.value
    assert alone.interval == (0.0, 1.0)
    assert "no interval (n_boot=0)" in alone.method
    assert alone.n == 500
    assert full.interval != (0.0, 1.0)  # negative control: the bootstrap gives a real interval


@pytest.mark.parametrize("call", [
    lambda x: frechet_distance(x, x + 1.0, n_boot=5),
    lambda x: frechet_to_gaussian(x, torch.zeros(2), torch.eye(2), n_boot=5),
    lambda x: mode_weight_error(x, labkit.GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]),
                                                          1.0), n_boot=5),
])
def test_too_few_resamples_raise(call):
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    with pytest.raises(ValueError, match=r"n_boot must be >= 10.*or 0.*got 5"):
        call(x)


@pytest.mark.parametrize("bad", [-1, True, 2.0])
def test_bad_n_boot_types_and_signs(bad):
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    with pytest.raises((ValueError, TypeError), match="n_boot"):
        frechet_distance(x, x, n_boot=bad)
