import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from labkit import grids
from labkit.processes import PROCESSES, VP, get_process


def test_karras_endpoints_and_formula():
    s = grids.karras(10, 0.002, 80.0, rho=7.0)
    assert s.shape == (11,) and s.dtype == torch.float64
    assert float(s[-1]) == 0.0
    # Endpoints are exact up to float64 round-off of x ** (1/7) ** 7.
    torch.testing.assert_close(s[[0, 9]], torch.tensor([80.0, 0.002], dtype=torch.float64),
                               rtol=1e-13, atol=0)
    i = 3
    expected = (80.0 ** (1 / 7) + i / 9 * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    assert math.isclose(float(s[i]), expected, rel_tol=1e-14)


def test_karras_rho_one_is_uniform():
    s = grids.karras(5, 1.0, 5.0, rho=1.0)
    torch.testing.assert_close(s, torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0], dtype=torch.float64))


@given(n=st.integers(2, 200), lo=st.floats(1e-4, 1.0), ratio=st.floats(1.01, 1e6),
       rho=st.floats(0.5, 10.0))
def test_karras_is_a_valid_grid(n, lo, ratio, rho):
    s = grids.karras(n, lo, lo * ratio, rho)
    assert grids.validate(s) is s


@pytest.mark.parametrize("bad, match", [
    (torch.tensor([1.0]), "at least 2"),
    (torch.tensor([[1.0, 0.0]]), "1-D"),
    (torch.tensor([1.0, 2.0, 0.0]), "strictly decreasing"),
    (torch.tensor([1.0, float("nan"), 0.0]), "finite"),
    (torch.tensor([1.0, 0.0, -1.0]), "strictly decreasing|positive"),
    (torch.tensor([1.0, -0.5]), "positive"),
    (torch.tensor([2.0, 0.0, 0.0]), "strictly decreasing"),
])
def test_validate_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        grids.validate(bad)


def test_validate_rejects_non_tensors():
    with pytest.raises(TypeError, match="sigmas"):
        grids.validate([1.0, 0.0])
    with pytest.raises(TypeError, match="floating"):
        grids.validate(torch.tensor([2, 1, 0]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=1, sigma_min=0.1, sigma_max=1.0), "n must be >= 2"),
    (dict(n=4, sigma_min=0.0, sigma_max=1.0), "sigma_min"),
    (dict(n=4, sigma_min=2.0, sigma_max=1.0), "sigma_min must be < sigma_max"),
    (dict(n=4, sigma_min=0.1, sigma_max=float("inf")), "sigma_max"),
    (dict(n=4, sigma_min=0.1, sigma_max=1.0, rho=0.0), "rho"),
])
def test_karras_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        grids.karras(**kwargs)


# ---------------------------------------------------------------------------------- new grids
F64 = torch.float64


def log_ratios(s):
    """``log(sigma_{i+1} / sigma_i)`` over the positive part of a grid."""
    pos = s[:-1]
    return torch.log(pos[1:] / pos[:-1])


def test_loglinear_formula_and_endpoints():
    s = grids.loglinear(9, 0.002, 80.0)
    assert s.shape == (10,) and s.dtype == F64 and float(s[-1]) == 0.0
    # Endpoints are set exactly, not recomputed through exp(log(.)).
    assert float(s[0]) == 80.0 and float(s[8]) == 0.002
    # Independent closed form sigma_max * (sigma_min / sigma_max)^(i / (n-1)); float64
    # round-off of pow and exp on these magnitudes is a few ulp.
    i = torch.arange(9, dtype=F64)
    expected = 80.0 * (0.002 / 80.0) ** (i / 8)
    torch.testing.assert_close(s[:-1], expected, rtol=1e-14, atol=0)


@given(n=st.integers(2, 200), lo=st.floats(1e-4, 1.0), ratio=st.floats(1.01, 1e6))
def test_loglinear_has_equal_log_ratios(n, lo, ratio):
    s = grids.loglinear(n, lo, lo * ratio)
    assert grids.validate(s) is s and s.shape == (n + 1,)
    r = log_ratios(s)
    # Each log-ratio is log(ratio)/(n-1) >= 5e-5 in size, computed from sigmas with relative
    # error ~1e-15, so 1e-9 relative leaves six orders of magnitude of margin.
    torch.testing.assert_close(r, torch.full_like(r, -math.log(ratio) / (n - 1)),
                               rtol=1e-9, atol=0)


def test_equal_log_ratio_check_flags_a_wrong_spacing():
    """Negative control: a grid uniform in sigma (karras, rho=1) fails the log-ratio check."""
    s = grids.karras(10, 0.01, 10.0, rho=1.0)
    r = log_ratios(s)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(r, torch.full_like(r, -math.log(1000.0) / 9),
                                   rtol=1e-9, atol=0)


def test_polyexponential_formula_and_rho_one_is_loglinear():
    n, lo, hi, rho = 7, 0.03, 50.0, 2.5
    s = grids.polyexponential(n, lo, hi, rho)
    assert float(s[0]) == hi and float(s[n - 1]) == lo and float(s[-1]) == 0.0
    # k-diffusion's get_sigmas_polyexponential, written out independently in numpy.
    ramp = np.linspace(1, 0, n) ** rho
    expected = np.exp(ramp * (np.log(hi) - np.log(lo)) + np.log(lo))
    np.testing.assert_allclose(s[:-1].numpy(), expected, rtol=1e-14, atol=0)
    # rho = 1 is the log-linear grid (same core; identical to the last bit).
    assert torch.equal(grids.polyexponential(n, lo, hi, 1.0), grids.loglinear(n, lo, hi))


@given(n=st.integers(2, 200), lo=st.floats(1e-4, 1.0), ratio=st.floats(1.01, 1e6),
       rho=st.floats(0.25, 4.0))
def test_polyexponential_is_a_valid_grid_polynomial_in_log_sigma(n, lo, ratio, rho):
    s = grids.polyexponential(n, lo, lo * ratio, rho)
    assert grids.validate(s) is s and s.shape == (n + 1,)
    # Invert the definition: ((log sigma - log lo) / log ratio)^(1/rho) is the uniform ramp.
    ramp = (torch.log(s[:-1] / lo) / math.log(ratio)).clamp_min(0) ** (1 / rho)
    # A relative round-off ~1e-15 in sigma is ~1e-15 / log(1.01) ~ 1e-13 in ramp^rho; taking the
    # (1/rho)-th power turns an error e near 0 into at most e^(1/rho) <= (1e-13)^(1/4) ~ 6e-4.
    torch.testing.assert_close(ramp, torch.linspace(1, 0, n, dtype=F64), rtol=0, atol=1e-3)


def test_polyexponential_collapse_is_reported():
    # (1/199)^40 * log(100) underflows exp to 1: the last two sigmas coincide in float64.
    with pytest.raises(ValueError, match="not representable"):
        grids.polyexponential(200, 0.01, 1.0, rho=40.0)


PROCESS_NAMES = sorted(PROCESSES)


@pytest.mark.parametrize("name", PROCESS_NAMES)
def test_uniform_t_inverts_to_equally_spaced_times(name):
    proc = get_process(name)
    n = 12
    s = grids.uniform_t(n, proc)
    assert grids.validate(s) is s and s.shape == (n + 1,) and float(s[-1]) == 0.0
    # Endpoints: exactly sigma(t_max) and sigma(t_min) (the same float64 evaluation).
    assert float(s[0]) == proc.sigma_max and float(s[n - 1]) == proc.sigma_min
    t = proc.t_of_sigma(s[:-1])
    expected = torch.linspace(proc.t_max, proc.t_min, n, dtype=F64)
    # t_of_sigma is the exact inverse; its round-off through sigma ~ 1e3 (cosine, rectified
    # flow near t_singular) stays below 1e-12 in t, for times of size <= 80 (EDM).
    torch.testing.assert_close(t, expected, rtol=1e-12, atol=1e-12)


def test_uniform_t_vp_matches_k_diffusion_get_sigmas_vp():
    n, beta_d, beta_min, eps_s = 10, 19.9, 0.1, 1e-3
    t = np.linspace(1, eps_s, n)
    expected = np.sqrt(np.exp(beta_d * t ** 2 / 2 + beta_min * t) - 1)
    s = grids.uniform_t(n, VP(beta_min=0.1, beta_max=20.0), t_min=eps_s, t_max=1.0)
    # labkit uses expm1; exp(.) - 1 differs by round-off relative to sigma^2 >= 1e-4, i.e. at
    # most ~1e-12 relative in sigma.
    np.testing.assert_allclose(s[:-1].numpy(), expected, rtol=1e-10, atol=0)


def test_uniform_t_special_cases_match_other_grids():
    # VE: sigma(t) = sigma_min (sigma_max/sigma_min)^t, so uniform t is uniform log sigma;
    # EDM: sigma = t, so uniform t is karras with rho = 1. VE agrees up to pow/exp round-off
    # (relative); both linear ramps carry an absolute round-off ~ 80 * eps ~ 2e-14 at 0.002.
    torch.testing.assert_close(grids.uniform_t(8, "ve"), grids.loglinear(8, 0.002, 80.0),
                               rtol=1e-13, atol=0)
    torch.testing.assert_close(grids.uniform_t(8, "edm"), grids.karras(8, 0.002, 80.0, rho=1.0),
                               rtol=0, atol=1e-13)


@given(name=st.sampled_from(PROCESS_NAMES), n=st.integers(2, 300), a=st.floats(0.0, 1.0),
       b=st.floats(0.0, 1.0))
def test_uniform_t_is_a_valid_grid_on_any_subrange(name, n, a, b):
    proc = get_process(name)
    lo, hi = sorted((a, b))
    span = proc.t_max - proc.t_min
    t_min, t_max = proc.t_min + lo * span, proc.t_min + max(hi, lo + 0.01) * span
    if t_max > proc.t_max:
        t_min, t_max = proc.t_max - 0.01 * span, proc.t_max
    s = grids.uniform_t(n, proc, t_min=t_min, t_max=t_max)
    assert grids.validate(s) is s and s.shape == (n + 1,)


@pytest.mark.parametrize("fn", ["loglinear", "polyexponential"])
def test_dtype_and_float32(fn):
    s = getattr(grids, fn)(16, 0.01, 10.0, dtype=torch.float32)
    assert s.dtype == torch.float32
    assert grids.validate(s) is s
    # float32 grid equals the float64 one to float32 resolution (a few ulp of 1.2e-7).
    torch.testing.assert_close(s.double(), getattr(grids, fn)(16, 0.01, 10.0),
                               rtol=1e-6, atol=0)
    u = grids.uniform_t(16, "cosine", dtype=torch.float32)
    assert u.dtype == torch.float32 and grids.validate(u) is u


@pytest.mark.parametrize("call, err, match", [
    (lambda: grids.loglinear(1, 0.1, 1.0), ValueError, "n must be >= 2"),
    (lambda: grids.loglinear(2.0, 0.1, 1.0), TypeError, "n must be an int"),
    (lambda: grids.loglinear(4, 0.0, 1.0), ValueError, "sigma_min"),
    (lambda: grids.loglinear(4, 1.0, 1.0), ValueError, "sigma_min must be < sigma_max"),
    (lambda: grids.loglinear(4, 0.1, float("nan")), ValueError, "sigma_max"),
    (lambda: grids.loglinear(4, "0.1", 1.0), TypeError, "sigma_min"),
    (lambda: grids.loglinear(4, 0.1, 1.0, dtype=torch.int64), TypeError, "dtype"),
    (lambda: grids.polyexponential(4, 0.1, 1.0, rho=0.0), ValueError, "rho"),
    (lambda: grids.polyexponential(4, 0.1, 1.0, rho=float("inf")), ValueError, "rho"),
    (lambda: grids.polyexponential(4, 0.1, 1.0, rho=None), TypeError, "rho"),
    (lambda: grids.uniform_t(1, "vp"), ValueError, "n must be >= 2"),
    (lambda: grids.uniform_t(4, "nope"), ValueError, "unknown process"),
    (lambda: grids.uniform_t(4, 3), TypeError, "process must be"),
    (lambda: grids.uniform_t(4, "vp", t_min=0.5, t_max=0.5), ValueError, "t_min and t_max"),
    (lambda: grids.uniform_t(4, "cosine", t_max=1.0), ValueError, "t_min and t_max"),
    (lambda: grids.uniform_t(4, "vp", t_min=0.0), ValueError, r"sigma\(t_min\) > 0"),
    (lambda: grids.uniform_t(4, "vp", t_min=float("nan")), ValueError, "t_min must be finite"),
    (lambda: grids.uniform_t(4, "vp", t_max="1"), TypeError, "t_max"),
])
def test_new_grids_reject_bad_input(call, err, match):
    with pytest.raises(err, match=match):
        call()
