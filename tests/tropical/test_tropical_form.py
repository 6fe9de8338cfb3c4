"""The tropical rational form F - G equals the network; max-plus pruning is exact."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from labkit.tropical.network import as_network
from labkit.tropical.polynomial import MaxPlusPolynomial
from labkit.tropical.rational import tropical_form


def random_layers(seed, widths, d=2):
    rng = np.random.default_rng(seed)
    dims = (d,) + tuple(widths) + (1,)
    return [(rng.normal(size=(dims[i + 1], dims[i])), rng.normal(size=dims[i + 1]))
            for i in range(len(dims) - 1)]


@settings(max_examples=10)
@given(seed=st.integers(0, 10_000), widths=st.lists(st.integers(2, 6), min_size=1, max_size=3))
def test_form_evaluates_to_network_inside_box(seed, widths):
    layers = random_layers(seed, widths)
    net = as_network(layers)
    form = tropical_form(layers, box=2.0)
    x = np.random.default_rng(seed + 1).uniform(-2, 2, size=(500, 2))
    # float64 sums of a few hundred O(net.scale) terms: 1e-10 * scale is ~1e4 ulps of margin.
    np.testing.assert_allclose(form.evaluate(x), net(x)[:, 0], rtol=0, atol=1e-10 * net.scale)


def test_form_without_box_is_exact_everywhere_and_tensor_in_tensor_out():
    layers = random_layers(3, (4, 3), d=3)
    form = tropical_form(layers)  # pruned on all of R^3 (LP per monomial)
    x = torch.randn(300, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 50
    out = form.evaluate(x)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    ref = as_network(layers)(x)[:, 0]
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-9)


def test_negative_control_swapped_parts_do_not_match():
    layers = random_layers(5, (5,))
    form = tropical_form(layers, box=2.0)
    x = np.random.default_rng(0).uniform(-2, 2, size=(200, 2))
    wrong = form.G.evaluate(x) - form.F.evaluate(x)
    assert np.abs(wrong - as_network(layers)(x)[:, 0]).max() > 1e-3


def test_pruning_drops_exactly_the_never_maximal_monomials():
    # max(x, -x, 0.5*0 - 1, 2 + 0x): the constant -1 is dominated by 2; |x| wins only for |x|>2.
    p = MaxPlusPolynomial(np.array([0.0, 0.0, -1.0, 2.0]),
                          np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]))
    full = p.pruned()
    assert full.n_monomials == 3
    in_box = p.pruned(as_box_2(1.5))  # inside [-1.5, 1.5]^2 only the constant 2 is maximal
    assert in_box.n_monomials == 1 and in_box.coefficients[0] == 2.0
    x = np.random.default_rng(0).uniform(-1.5, 1.5, size=(100, 2))
    np.testing.assert_array_equal(in_box.evaluate(x), p.evaluate(x))
    # Duplicate exponents keep the larger coefficient (exact).
    dup = MaxPlusPolynomial(np.array([1.0, 3.0]), np.array([[1.0, 1.0], [1.0, 1.0]]))
    assert dup.deduplicated().coefficients.tolist() == [3.0]


def as_box_2(r):
    from labkit.tropical._geometry import as_box
    return as_box(r, 2)


def test_two_output_network_gives_logit_difference():
    rng = np.random.default_rng(0)
    layers = [(rng.normal(size=(4, 2)), rng.normal(size=4)), (rng.normal(size=(2, 4)),
                                                              rng.normal(size=2))]
    form = tropical_form(layers, box=1.0)
    x = rng.uniform(-1, 1, size=(50, 2))
    out = as_network(layers)(x)
    np.testing.assert_allclose(form.evaluate(x), out[:, 1] - out[:, 0], atol=1e-12)


def test_sequential_module_is_accepted():
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(2, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1))
    form = tropical_form(seq, box=1.0)
    x = torch.rand(64, 2, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        ref = seq.double()(x)[:, 0]
    torch.testing.assert_close(form.evaluate(x), ref, rtol=1e-12, atol=1e-12)


def test_bad_networks_raise_clear_errors():
    with pytest.raises(TypeError, match="Tanh"):
        as_network(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(),
                                       torch.nn.Linear(3, 1)))
    with pytest.raises(TypeError, match="trailing ReLU"):
        as_network(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU()))
    with pytest.raises(ValueError, match="finite"):
        as_network([(np.array([[np.nan, 1.0]]), np.zeros(1))])
    with pytest.raises(ValueError, match="columns"):
        as_network([(np.ones((3, 2)), np.zeros(3)), (np.ones((1, 4)), np.zeros(1))])
    with pytest.raises(ValueError, match="logit"):
        tropical_form([(np.ones((3, 2)), np.zeros(3))], box=1.0)


def test_box_forms_are_unambiguous():
    """A (dim, 2) array is rows [low, high] even in 2-D; a tuple is (low, high)."""
    from labkit.tropical._geometry import as_box
    rows = as_box(np.array([[0.0, 1.0], [2.0, 3.0]]), 2)      # x in [0, 1], y in [2, 3]
    np.testing.assert_array_equal(rows.low, [0.0, 2.0])
    np.testing.assert_array_equal(rows.high, [1.0, 3.0])
    pair = as_box((np.array([0.0, 2.0]), np.array([1.0, 3.0])), 2)
    np.testing.assert_array_equal(pair.low, rows.low)
    np.testing.assert_array_equal(pair.high, rows.high)
    scalars = as_box((-1.0, 2.0), 3)
    np.testing.assert_array_equal(scalars.low, [-1.0] * 3)
    with pytest.raises(ValueError, match="shape"):
        as_box(np.zeros((2, 3)), 3)   # (2, dim) arrays are not guessed
    with pytest.raises(ValueError, match="low < high"):
        as_box(np.array([[1.0, 0.0], [2.0, 3.0]]), 2)
