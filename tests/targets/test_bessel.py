"""Tests of the stable Bessel log and ratio (labkit.targets.bessel).

References are independent of scipy: mpmath at 40 digits, closed forms of order 1/2, torch's own
Cephes-based i0e/i1e for order 0, and the three-term recurrence.
"""

import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from labkit.targets.bessel import bessel_ratio, log_bessel_iv, log_bessel_iv_scaled

# Relative error of the ratio: Amos' ive is accurate to a few ulps at low order and loses about
# one digit per decade of order (a 2,000-point sweep against mpmath gave at most 1.2e-14 for
# nu <= 20, 1.3e-13 for nu <= 100, 3.1e-13 for nu <= 1000); 1e-12 leaves a 3x margin.
RATIO_RTOL = 1e-12
# The log is accurate to round-off relative to its size (sweep: 4e-16 relative, 6e-17 absolute
# near 0), so 1e-14 * (1 + |log|) is a 20x margin.
LOG_TOL = 1e-14

ORDERS = [0.0, 0.5, 1.0, 2.5, 10.0, 49.5, 100.0, 1000.0]
# Extremes and every switch of method: the series (z <= 2 or ive < 1e-290), Amos, Hankel (> 1e9).
ARGUMENTS = [1e-300, 1e-30, 1e-8, 1e-3, 0.1, 1.0, 2.0, 2.0000001, 5.0, 20.0, 100.0, 669.0,
             671.0, 1e3, 1e5, 1e7, 1e9, 1.0000001e9, 1e10, 1e12, 1e15]

mpmath.mp.dps = 40


def mpmath_reference(nu, z):
    """``log(z^-nu e^-z I_nu(z))`` and ``I_(nu+1)/I_nu`` at 40 digits."""
    nu, z = mpmath.mpf(nu), mpmath.mpf(z)
    i0, i1 = mpmath.besseli(nu, z), mpmath.besseli(nu + 1, z)
    return float(mpmath.log(i0) - z - nu * mpmath.log(z)), float(i1 / i0)


def assert_matches_mpmath(nu, zs, ratio_fn=bessel_ratio, log_fn=log_bessel_iv_scaled):
    z = torch.tensor(zs, dtype=torch.float64)
    ref = np.array([mpmath_reference(nu, zi) for zi in zs])
    log_ref, ratio_ref = ref[:, 0], ref[:, 1]
    got_log = log_fn(nu, z).numpy()
    np.testing.assert_array_less(np.abs(got_log - log_ref), LOG_TOL * (1 + np.abs(log_ref)))
    np.testing.assert_allclose(ratio_fn(nu, z).numpy(), ratio_ref, rtol=RATIO_RTOL, atol=0)


def assert_recurrence(nu, z, ratio_fn=bessel_ratio):
    """``I_(nu-1) - I_(nu+1) = (2 nu / z) I_nu``, i.e. ``R_(nu-1) (2 nu / z + R_nu) = 1``."""
    residual = ratio_fn(nu - 1, z) * (2 * nu / z + ratio_fn(nu, z)) - 1
    # Two ratios at RATIO_RTOL each, plus a few ulps for the products.
    torch.testing.assert_close(residual, torch.zeros_like(residual), rtol=0, atol=3 * RATIO_RTOL)


@pytest.mark.parametrize("nu", ORDERS)
def test_matches_mpmath_on_extremes_and_region_switches(nu):
    assert_matches_mpmath(nu, ARGUMENTS)


@given(nu=st.floats(0.0, 100.0), log10_z=st.lists(st.floats(-6.0, 13.0), min_size=1, max_size=5))
def test_matches_mpmath_at_random_orders_and_arguments(nu, log10_z):
    assert_matches_mpmath(nu, [10.0 ** e for e in log10_z])


def test_perturbed_ratio_fails_the_mpmath_check():
    # Negative control: an error of 1e-11 relative, 10x the tolerance, must be caught.
    with pytest.raises(AssertionError):
        assert_matches_mpmath(10.0, ARGUMENTS,
                              ratio_fn=lambda nu, z: bessel_ratio(nu, z) * (1 + 1e-11))


@pytest.mark.parametrize("nu", ORDERS)
def test_limit_at_zero(nu):
    # At z = 0: log(z^-nu I_nu) = -nu log 2 - lgamma(nu + 1), and the ratio vanishes.
    zero = torch.zeros(2, dtype=torch.float64)
    expected = -nu * math.log(2) - math.lgamma(nu + 1)
    torch.testing.assert_close(log_bessel_iv_scaled(nu, zero), torch.full_like(zero, expected),
                               rtol=1e-15, atol=0)
    assert torch.equal(bessel_ratio(nu, zero), zero)


@pytest.mark.parametrize("nu", [0.0, 0.5, 100.0, 1000.0])
def test_small_argument_series(nu):
    # R ~ z / (2 nu + 2) (1 - z^2 / (4 (nu + 1)(nu + 2)) ...): the correction is < 1e-16 here.
    z = torch.tensor([1e-300, 1e-100, 1e-20, 1e-9], dtype=torch.float64)
    torch.testing.assert_close(bessel_ratio(nu, z) / z, torch.full_like(z, 1 / (2 * nu + 2)),
                               rtol=4e-16, atol=0)


def test_half_order_closed_forms():
    # I_(1/2)(z) = sqrt(2 / (pi z)) sinh z and I_(3/2)/I_(1/2) = coth z - 1/z (DLMF 10.49).
    zs = list(np.logspace(-8, 12, 81))
    z = torch.tensor(zs, dtype=torch.float64)
    z_np = np.array(zs)
    log_closed = 0.5 * np.log(2 / np.pi) + np.log(-np.expm1(-2 * z_np) / (2 * z_np))
    # mpmath evaluates coth z - 1/z without the cancellation float64 would suffer near 0.
    ratio_closed = np.array([float(mpmath.coth(mpmath.mpf(v)) - 1 / mpmath.mpf(v)) for v in zs])
    np.testing.assert_allclose(log_bessel_iv_scaled(0.5, z).numpy(), log_closed,
                               rtol=LOG_TOL, atol=LOG_TOL)
    np.testing.assert_allclose(bessel_ratio(0.5, z).numpy(), ratio_closed, rtol=RATIO_RTOL)


def test_order_zero_matches_torch_special():
    # torch's i0e/i1e (Cephes Chebyshev fits, ~1e-15 relative) are independent of scipy's Amos.
    z = torch.logspace(-6, 8, 200, dtype=torch.float64)
    torch.testing.assert_close(bessel_ratio(0.0, z), torch.special.i1e(z) / torch.special.i0e(z),
                               rtol=1e-14, atol=0)
    torch.testing.assert_close(log_bessel_iv_scaled(0.0, z), torch.log(torch.special.i0e(z)),
                               rtol=1e-14, atol=1e-15)


@given(nu=st.floats(1.0, 100.0), log10_z=st.floats(-4.0, 12.0))
def test_three_term_recurrence(nu, log10_z):
    z = torch.tensor([10.0 ** log10_z], dtype=torch.float64)
    assert_recurrence(nu, z)


def test_recurrence_detects_a_shifted_order():
    # Negative control: order nu + 1/2 in place of nu violates the recurrence by O(1e-1) at z = 3.
    with pytest.raises(AssertionError):
        assert_recurrence(3.0, torch.tensor([3.0], dtype=torch.float64),
                          ratio_fn=lambda nu, z: bessel_ratio(nu + 0.5, z))


@given(nu=st.floats(0.0, 100.0), log10_z=st.floats(-4.0, 12.0))
def test_log_and_ratio_are_consistent(nu, log10_z):
    # (z^-(nu+1) I_(nu+1)) / (z^-nu I_nu) = R_nu / z; both sides carry ~1e-14 relative error.
    z = torch.tensor([10.0 ** log10_z], dtype=torch.float64)
    lhs = log_bessel_iv_scaled(nu + 1, z) - log_bessel_iv_scaled(nu, z)
    rhs = torch.log(bessel_ratio(nu, z) / z)
    torch.testing.assert_close(lhs, rhs, rtol=0, atol=LOG_TOL * (1 + float(rhs.abs())) * 4)


@pytest.mark.parametrize("nu", [0.0, 0.5, 7.5, 100.0])
def test_gradients_against_finite_differences(nu):
    # Points in the series, Amos and high-order-underflow regions; gradcheck's central
    # differences (eps 1e-6) in float64 resolve derivatives to ~1e-9 relative.
    z = torch.tensor([1e-3, 0.7, 1.9, 2.1, 9.0, 150.0, 4e3], dtype=torch.float64,
                     requires_grad=True)
    for fn in (log_bessel_iv_scaled, bessel_ratio):
        assert torch.autograd.gradcheck(lambda t: fn(nu, t), (z,))
        assert torch.autograd.gradgradcheck(lambda t: fn(nu, t), (z,))


def test_gradient_at_large_argument_matches_mpmath():
    # d/dz log(z^-nu e^-z I_nu) = R - 1, which finite differences cannot resolve at z = 1e12;
    # it is formed as R - 1 in float64, so it is accurate to a few ulps of 1 (absolute).
    nu, zs = 3.5, [1e6, 1e9, 1e12]
    z = torch.tensor(zs, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(log_bessel_iv_scaled(nu, z).sum(), z)
    expected = [mpmath_reference(nu, v)[1] - 1 for v in zs]
    np.testing.assert_allclose(grad.numpy(), expected, rtol=0, atol=1e-15)


def test_wrong_backward_fails_gradcheck():
    # Negative control: a slope of R (forgetting the -1 of the e^-z scaling) is caught.
    class WrongSlope(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            return log_bessel_iv_scaled(2.0, z.detach())

        @staticmethod
        def backward(ctx, grad):
            return grad * bessel_ratio(2.0, ctx.saved_tensors[0])

    z = torch.tensor([0.5, 3.0], dtype=torch.float64, requires_grad=True)
    assert not torch.autograd.gradcheck(WrongSlope.apply, (z,), raise_exception=False)


def test_no_overflow_at_extreme_order_and_argument():
    z = torch.tensor([0.0, 1e-300, 1e-5, 1.0, 1e3, 1e9, 1e12, 1e300], dtype=torch.float64)
    for nu in (0.0, 1000.0):
        ratio = bessel_ratio(nu, z)
        assert bool(torch.isfinite(log_bessel_iv_scaled(nu, z)).all())
        # 1 - R ~ (2 nu + 1) / (2 z) is below half an ulp of 1 at z = 1e300: R rounds to 1.
        assert bool(((ratio >= 0) & (ratio <= 1)).all())


def test_log_bessel_iv_unscaled():
    # log I_nu = scaled + z + nu log z, with log I_0(0) = 0 and log I_nu(0) = -inf for nu > 0.
    z = torch.tensor([0.0, 0.3, 40.0], dtype=torch.float64)
    ref = [0.0] + [float(mpmath.log(mpmath.besseli(2.5, v))) for v in (0.3, 40.0)]
    expected = torch.tensor(ref[1:], dtype=torch.float64)
    torch.testing.assert_close(log_bessel_iv(2.5, z)[1:], expected, rtol=LOG_TOL, atol=LOG_TOL)
    assert log_bessel_iv(2.5, z)[0] == -math.inf
    assert log_bessel_iv(0.0, z)[0] == 0.0


def test_float32_follows_input_and_equals_rounded_float64():
    # The kernel runs in float64 on the float32 values (exactly representable), so the float32
    # result is the float64 result rounded once: equality, not closeness.
    z32 = torch.logspace(-5, 11, 50, dtype=torch.float32).reshape(5, 10)
    for fn in (log_bessel_iv_scaled, bessel_ratio):
        out = fn(4.5, z32)
        assert out.dtype == torch.float32 and out.shape == z32.shape
        assert torch.equal(out, fn(4.5, z32.double()).float())
    z = z32.clone().requires_grad_()
    (grad,) = torch.autograd.grad(log_bessel_iv_scaled(4.5, z).sum(), z)
    assert grad.dtype == torch.float32 and bool(torch.isfinite(grad).all())


def test_python_number_argument():
    out = bessel_ratio(1.0, 2.0)
    assert out.dtype == torch.float64 and out.ndim == 0


@pytest.mark.parametrize("nu, z, error, match", [
    (-0.5, 1.0, ValueError, "nu"),
    (1000.5, 1.0, ValueError, "nu"),
    (True, 1.0, TypeError, "nu"),
    ("1", 1.0, TypeError, "nu"),
    (1.0, -1e-3, ValueError, "z must be >= 0"),
    (1.0, float("nan"), ValueError, "z must be finite"),
    (1.0, float("inf"), ValueError, "z must be finite"),
    (1.0, "a", TypeError, "z"),
])
def test_bad_input(nu, z, error, match):
    for fn in (log_bessel_iv_scaled, bessel_ratio, log_bessel_iv):
        with pytest.raises(error, match=match):
            fn(nu, torch.tensor(z, dtype=torch.float64) if isinstance(z, float) else z)
