"""Tests of the shared argument checks in ``labkit._checks``."""

from __future__ import annotations

import math
import re

import pytest
import torch

from labkit import Empirical, Gaussian, Sphere
from labkit._checks import check_sigma, sigma_range

F32, F64 = torch.float32, torch.float64


@pytest.mark.parametrize("dtype, sigma", [
    (F32, 1e-25), (F32, 1e-20), (F32, 2e19), (F32, 1e30),
    (F64, 1e-160), (F64, 1e-155), (F64, 1e155), (F64, 1e160),
])
@pytest.mark.parametrize("form", ["float", "tensor", "per_row"])
def test_sigma_whose_square_is_not_normal_is_rejected(dtype, sigma, form):
    """``sigma^2`` below ``finfo.tiny`` (subnormal or 0) or above ``finfo.max`` (inf)."""
    like = torch.zeros(3, 2, dtype=dtype)
    value = {"float": sigma, "tensor": torch.tensor(sigma, dtype=F64),
             "per_row": torch.tensor([1.0, sigma, 0.0], dtype=F64)}[form]
    lo, hi = sigma_range(dtype)
    with pytest.raises(ValueError, match="sigma must be 0 or .* " + re.escape(f"{lo:.3g} <= sigma <= {hi:.3g}")):
        check_sigma(value, 3, like)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_ordinary_and_zero_sigma_are_accepted(dtype):
    like = torch.zeros(1, 2, dtype=dtype)
    for sigma in [0.0, *torch.logspace(-4, 3, 29, dtype=F64).tolist()]:
        for value in (sigma, torch.tensor(sigma, dtype=dtype)):
            s = check_sigma(value, 1, like)
            assert s.dtype == dtype
            # The cast to dtype is the only change: relative error <= unit round-off.
            assert abs(float(s[0]) - sigma) <= torch.finfo(dtype).eps / 2 * sigma


@pytest.mark.parametrize("dtype", [F32, F64])
def test_sigma_range_edges(dtype):
    """Just inside the range is accepted, just outside is not (1% steps)."""
    lo, hi = sigma_range(dtype)
    info = torch.finfo(dtype)
    assert lo * lo >= info.tiny * (1 - 1e-12) and hi * hi <= info.max * (1 + 1e-12)
    like = torch.zeros(1, 1, dtype=dtype)
    for ok in (1.01 * lo, 0.99 * hi):
        assert float(check_sigma(ok, 1, like)[0]) > 0
    for bad in (0.99 * lo, 1.01 * hi):
        with pytest.raises(ValueError, match="sigma"):
            check_sigma(bad, 1, like)


@pytest.mark.parametrize("make, dtype, sigma", [
    (lambda: Sphere(2, 4), F32, 1e-25),  # used to name the internal "z"
    (lambda: Gaussian(torch.zeros(3), torch.tensor([1.0, 1.0, 0.0])), F32, 1e-25),  # was NaN
    (lambda: Empirical(torch.eye(3, dtype=F64)), F32, 1e-25),  # was NaN/inf
    (lambda: Gaussian(torch.zeros(3), 1.0), F64, 1e160),  # was OverflowError
    (lambda: Sphere(2, 4), F64, 1e160),
    (lambda: Empirical(torch.eye(3, dtype=F64)), F64, 1e160),
])
@pytest.mark.parametrize("method", ["log_prob", "score", "denoise"])
def test_targets_reject_unrepresentable_sigma(make, dtype, sigma, method):
    target = make()
    x = torch.full((2, target.dim), 0.5, dtype=dtype)
    with pytest.raises(ValueError, match="sigma must be 0 or"):
        getattr(target, method)(x, sigma)


def test_extreme_but_representable_sigma_gives_finite_results():
    """At the edges of the range every target still returns finite values (or a clean error)."""
    for dtype, sigma in ((F32, 1e-4), (F32, 1e3), (F64, 1e-4), (F64, 1e3)):
        for target in (Sphere(2, 4), Empirical(torch.eye(3, dtype=F64)),
                       Gaussian(torch.zeros(3), torch.tensor([1.0, 1.0, 0.0]))):
            x = torch.full((2, target.dim), 0.5, dtype=dtype)
            for method in ("log_prob", "score", "denoise"):
                out = getattr(target, method)(x, sigma)
                assert bool(torch.isfinite(out).all()), (type(target).__name__, dtype, sigma)
                assert not math.isnan(float(out.sum()))
