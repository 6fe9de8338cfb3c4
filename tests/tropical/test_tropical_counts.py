"""Exact region / boundary counts: closed forms, degenerate geometry, LP vs tropical, bounds."""

from math import comb

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from labkit.tropical._geometry import ExactCountLimitError
from labkit.tropical.boundary import count_boundary_pieces
from labkit.tropical.counting import count_linear_regions
from labkit.tropical.lipschitz import lipschitz_constant
from labkit.tropical.sampling import sample_lower_bound


def one_layer(w, b, out=None):
    w, b = np.asarray(w, float), np.asarray(b, float)
    out = np.ones((1, w.shape[0])) if out is None else np.asarray(out, float)[None, :]
    return [(w, b), (out, np.zeros(1))]


def both_region_counts(layers, box):
    lp = count_linear_regions(layers, box, "lp")
    tr = count_linear_regions(layers, box, "tropical")
    return lp, tr


@pytest.mark.parametrize("m", [1, 2, 3, 5, 7])
def test_line_arrangement_in_general_position(m):
    # m random lines through the unit disc; a box of half-width 1e3 holds every intersection
    # (checked below), so the arrangement has exactly 1 + m + C(m, 2) regions (Zaslavsky).
    rng = np.random.default_rng(m)
    ang = rng.uniform(0, np.pi, m)
    w = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    b = rng.uniform(-1, 1, m)
    for i in range(m):
        for j in range(i + 1, m):
            assert np.abs(np.linalg.solve(w[[i, j]], -b[[i, j]])).max() < 1e3
    out = rng.uniform(0.5, 2.0, m) * rng.choice([-1, 1], m)
    lp, tr = both_region_counts(one_layer(w, b, out), 1e3)
    assert lp.linear_regions == tr.linear_regions == 1 + m + comb(m, 2)
    assert lp.activation_regions == 1 + m + comb(m, 2)


def test_parallel_and_coincident_lines():
    # Lines x=0, x=1 (parallel), y=0, and a duplicate neuron of y=0 (coincident): the regions are
    # those of 3 lines with one parallel pair: 1 + 3 + (3 - 1) = 6.
    w = [[1, 0], [1, 0], [0, 1], [0, 2]]
    b = [0, -1, 0, 0]
    lp, tr = both_region_counts(one_layer(w, b, [1, -2, 1, 1]), 5.0)
    assert lp.linear_regions == tr.linear_regions == 6
    assert lp.activation_regions == 6  # the duplicate flips together with its twin


def test_dead_zero_and_silent_neurons():
    # neuron 0: zero weights and negative bias (dead); neuron 1: zero weights, positive bias
    # (always on, a constant); neuron 2: x=0 line with zero outgoing weight (silent);
    # neuron 3: y=0 line. Activation regions: 4 (x and y lines); linear regions: 2 (only y).
    w = [[0, 0], [0, 0], [1, 0], [0, 1]]
    b = [-1, 1, 0, 0]
    lp, tr = both_region_counts(one_layer(w, b, [1, 1, 0, 1]), 2.0)
    assert lp.activation_regions == 4
    assert lp.linear_regions == tr.linear_regions == 2
    # Negative control: with a non-zero outgoing weight the x=0 line is a real kink again.
    lp2 = count_linear_regions(one_layer(w, b, [1, 1, 0.5, 1]), 2.0)
    assert lp2.linear_regions == 4


def abs_net(cx, cy):
    """f = cx |x| + cy |y| as a ReLU net: relu(x) + relu(-x), relu(y) + relu(-y)."""
    w = [[1, 0], [-1, 0], [0, 1], [0, -1]]
    return one_layer(w, [0, 0, 0, 0], [cx, cx, cy, cy])


def test_boundary_closed_forms_and_degenerate_cases():
    for method in ("lp", "tropical"):
        # |x| - |y| = 0: two lines crossing at a vertex of the region structure -> 2 pieces
        # (each line straight through the vertex is one affine piece), in 4 regions.
        cross = count_boundary_pieces(abs_net(1, -1), 2.0, method)
        assert (cross.pieces, cross.region_pieces, cross.linear_regions) == (2, 4, 4)
        # relu(x) - relu(-x) = x: one straight line, split by the silent y neuron -> 1 piece.
        line = count_boundary_pieces(one_layer([[1, 0], [-1, 0], [0, 1]], [0, 0, 0],
                                               [1, -1, 0]), 2.0, method)
        assert line.pieces == 1
        # |x| = 0: the boundary runs along the edge between two regions (seen from both).
        edge = count_boundary_pieces(abs_net(1, 0), 2.0, method)
        assert edge.pieces == 1
        # |x| + |y| - 1 = 0: a diamond of 4 segments.
        layers = abs_net(1, 1)
        layers[1] = (layers[1][0], np.array([-1.0]))
        diamond = count_boundary_pieces(layers, 2.0, method)
        assert diamond.pieces == 4
        # Negative control: shifting the diamond out of the box removes every piece.
        layers[1] = (layers[1][0], np.array([-10.0]))
        assert count_boundary_pieces(layers, 2.0, method).pieces == 0
    # f = x is affine everywhere (1 linear region) but has 4 activation regions, each with an
    # edge on x = 0: 4 raw pieces (2 halves seen from both sides) merge into 1.
    raw = count_boundary_pieces(one_layer([[1, 0], [-1, 0], [0, 1]], [0, 0, 0], [1, -1, 0]),
                                2.0, "lp")
    assert (raw.region_pieces, raw.pieces, raw.linear_regions) == (4, 1, 1)


@settings(max_examples=10)  # each example: two exact counts (~0.3-2 s)
@given(seed=st.integers(0, 100_000), widths=st.lists(st.integers(2, 8), min_size=1, max_size=3),
       lattice=st.booleans())
def test_tropical_counts_equal_lp_counts(seed, widths, lattice):
    # lattice=True: half-integer weights in [-2, 2] and biases in [-1, 1], so degenerate geometry
    # (coincident lines, neurons identically zero on a region, dead layers) is common.
    rng = np.random.default_rng(seed)
    dims = (2,) + tuple(widths) + (1,)
    if lattice:
        layers = [(rng.integers(-4, 5, (dims[i + 1], dims[i])) / 2.0,
                   rng.integers(-2, 3, dims[i + 1]) / 2.0) for i in range(len(dims) - 1)]
    else:
        layers = [(rng.normal(size=(dims[i + 1], dims[i])), rng.normal(size=dims[i + 1]))
                  for i in range(len(dims) - 1)]
    lp = count_boundary_pieces(layers, 2.0, "lp", max_regions=3000)
    tr = count_boundary_pieces(layers, 2.0, "tropical", max_regions=3000)
    assert lp.linear_regions == tr.linear_regions
    assert lp.pieces == tr.pieces


def test_sampling_is_a_lower_bound_that_reaches_easy_counts():
    rng = np.random.default_rng(4)
    layers = [(rng.normal(size=(6, 2)), rng.normal(size=6)), (rng.normal(size=(5, 6)),
              rng.normal(size=5)), (rng.normal(size=(1, 5)), rng.normal(size=1))]
    exact = count_boundary_pieces(layers, 2.0)
    regions = count_linear_regions(layers, 2.0)
    gen = torch.Generator().manual_seed(0)
    few = sample_lower_bound(layers, 2.0, 200, gen)
    assert few.activation_regions <= regions.activation_regions
    assert few.linear_regions <= regions.linear_regions and few.boundary_pieces <= exact.pieces
    # Three lines through the origin region of a small box: every region is wide, so 20000
    # points hit all 7 (a region of area >= 0.05 of 16 is missed with prob < (1-0.003)^20000).
    easy = [(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), np.array([0.0, 0.0, -1.0])),
            (np.array([[1.0, -1.0, 1.0]]), np.array([0.2]))]
    hit = sample_lower_bound(easy, 2.0, 20000, torch.Generator().manual_seed(1))
    assert hit.activation_regions == count_linear_regions(easy, 2.0).activation_regions == 7
    assert hit.boundary_pieces == count_boundary_pieces(easy, 2.0).pieces


def test_lipschitz_constant_closed_forms():
    w = np.array([[2.0, -1.0], [0.5, 3.0]])
    lin = [(w, np.array([0.3, -0.2]))]
    np.testing.assert_allclose(lipschitz_constant(lin, 1.0, 2).value,
                               np.linalg.svd(w, compute_uv=False)[0], rtol=1e-12)
    np.testing.assert_allclose(lipschitz_constant(lin, 1.0, "inf").value, 3.5, rtol=1e-12)
    np.testing.assert_allclose(lipschitz_constant(lin, 1.0, 1).value, 4.0, rtol=1e-12)
    # relu(x) + 2 relu(y) on [-1, 1]^2: the gradient (1, 2) on the quadrant x, y > 0.
    toy = one_layer([[1, 0], [0, 1]], [0, 0], [1, 2])
    np.testing.assert_allclose(lipschitz_constant(toy, 1.0).value, np.sqrt(5), rtol=1e-12)
    np.testing.assert_allclose(lipschitz_constant(toy, 1.0, "inf").value, 3.0, rtol=1e-12)
    # Negative control: on a box where y < 0 throughout, the y neuron is off: constant 1.
    off = lipschitz_constant(toy, ((0.5, -2.0), (1.0, -1.0)))
    np.testing.assert_allclose(off.value, 1.0, rtol=1e-12)


def test_higher_dimension_lp_count_of_a_plane_arrangement():
    # 4 generic planes in R^3: sum_{k<=3} C(4, k) = 15 regions in a large box.
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3))
    count = count_linear_regions(one_layer(w, rng.uniform(-0.5, 0.5, 4)), 100.0)
    assert count.linear_regions == count.activation_regions == 15


def test_limits_and_bad_input():
    rng = np.random.default_rng(0)
    layers = [(rng.normal(size=(8, 2)), rng.normal(size=8)), (rng.normal(size=(1, 8)),
                                                               rng.normal(size=1))]
    with pytest.raises(ExactCountLimitError, match="max_regions=5.*sample_lower_bound"):
        count_linear_regions(layers, 3.0, max_regions=5)
    with pytest.raises(ExactCountLimitError, match="max_lps=3"):
        count_linear_regions(layers, 3.0, max_lps=3)
    with pytest.raises(ExactCountLimitError, match="max_monomials=2"):
        count_linear_regions(layers, 3.0, "tropical", max_monomials=2)
    with pytest.raises(ValueError, match="method"):
        count_linear_regions(layers, 3.0, method="mip")
    with pytest.raises(ValueError, match="box"):
        count_linear_regions(layers, -1.0)
    with pytest.raises(ValueError, match="box"):
        count_linear_regions(layers, ((1.0, 1.0), (0.0, 2.0)))
    with pytest.raises(ValueError, match="dimension 2"):
        count_linear_regions([(np.ones((2, 3)), np.zeros(2)), (np.ones((1, 2)), np.zeros(1))],
                             1.0, "tropical")
    with pytest.raises(ValueError, match="norm"):
        lipschitz_constant(layers, 1.0, norm=3)
