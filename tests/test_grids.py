import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from labkit import grids


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
