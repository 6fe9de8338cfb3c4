"""Regressions from an independent review: duplicate regions of identically-zero neurons,
early limits on too-large networks, one counted map for both methods, argument validation."""


import numpy as np
import pytest

from labkit.tropical._geometry import ExactCountLimitError
from labkit.tropical.boundary import count_boundary_pieces
from labkit.tropical.counting import count_linear_regions
from labkit.tropical.network import as_network
from labkit.tropical.regions import enumerate_regions


def as_layers(spec):
    return [(np.array(w, float), np.array(b, float)) for w, b in spec]


# Neuron 0 of layer 1 sees (x + 2y + 1) and neuron 1 sees (x + 2y); several layer-2 and
# layer-3 neurons are identically zero on full-dimensional regions, where the forward pass
# returns z = +-0 and (before the fix) both states of such a neuron passed the LP: 5 regions.
ZERO_ROW_NET = as_layers([
    ([[1, 2], [1, 2]], [1, 0]),
    ([[2, 2], [-1, -2], [-2, -2], [0, -2], [-1, -1], [1, -1]], [1, -1, 1, 0, -1, -1]),
    ([[-1, 0, -2, -2, -2, 1], [-2, -2, 0, -1, 0, 2], [2, 0, 1, 2, 0, 1], [-1, 1, -1, -2, 1, 0],
      [-1, -2, -1, 2, 0, 2], [2, 2, -2, -2, 0, -1]], [1, -1, -1, -1, -1, 0]),
    ([[-2, 1, -1, -1, 1, 2]], [0]),
])
# The review's case 14 (integer weights): LP counted 49, the tropical form and a 400k-point
# sample map 47.
CASE_14 = as_layers([
    ([[1, -1], [-1, -2], [-2, 2], [0, -2], [-1, 1], [-1, -1]], [0, 0, 0, 0, 0, 1]),
    ([[1, -2, 2, -2, 0, 1], [-1, -1, 2, -1, -2, 2], [-1, -1, 2, 1, 1, 2], [-2, 1, 1, 1, 0, 1],
      [1, 2, -1, -1, 0, 1]], [0, 1, 1, 1, 0]),
    ([[2, 0, 2, 1, -2], [-1, -1, 1, 0, -1], [2, 2, 0, -1, -1], [-1, -2, 0, -1, 1],
      [1, -1, -2, 0, -2], [1, -1, 2, 0, 1]], [0, 0, 1, 0, -1, -1]),
    ([[0, 2, 1, -2, 2, 1]], [1]),
])


@pytest.mark.parametrize("layers, expected", [(ZERO_ROW_NET, 4), (CASE_14, 47)])
def test_identically_zero_neurons_do_not_duplicate_regions(layers, expected):
    lp = count_linear_regions(layers, 2.0, "lp")
    tr = count_linear_regions(layers, 2.0, "tropical")
    assert lp.linear_regions == tr.linear_regions == expected
    enum = enumerate_regions(layers, 2.0)
    # No two regions share a polytope: their Chebyshev centres are distinct points (a duplicate
    # would have the identical LP and centre); exact float comparison of distinct LP solutions.
    centres = np.array([r.center for r in enum.regions])
    assert np.unique(centres.round(9), axis=0).shape[0] == len(enum.regions)
    net = as_network(layers)
    for r in enum.regions:  # every stored pattern is canonical
        np.testing.assert_array_equal(net.canonical_pattern(r.pattern, 1e-9), r.pattern)
    if layers is ZERO_ROW_NET:
        assert lp.activation_regions == 4  # the true activation count (review's map)


def test_canonical_pattern_forces_zero_rows_inactive():
    # Neuron 1 = relu(0 x + 0): identically zero, so "on" is rewritten to "off"; neuron 0 (x)
    # keeps its state. Negative control: a non-zero bias keeps the neuron's "on" state.
    net = as_network([(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([0.0, 0.0])),
                      (np.ones((1, 2)), np.zeros(1))])
    np.testing.assert_array_equal(net.canonical_pattern(np.array([True, True]), 1e-9),
                                  [True, False])
    net2 = as_network([(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([0.0, 0.5])),
                       (np.ones((1, 2)), np.zeros(1))])
    np.testing.assert_array_equal(net2.canonical_pattern(np.array([True, True]), 1e-9),
                                  [True, True])


def wide_net(width=40, depth=2, seed=0):
    rng = np.random.default_rng(seed)
    dims = (2,) + (width,) * depth + (1,)
    return [(rng.normal(size=(dims[i + 1], dims[i])), rng.normal(size=dims[i + 1]))
            for i in range(len(dims) - 1)]


@pytest.mark.parametrize("method", ["lp", "tropical"])
def test_too_large_networks_fail_up_front(method):
    # A 2-40-40-1 net has hundreds of regions in [-2, 2]^2; 1e5 samples see > 50 patterns, so
    # the up-front check raises before any LP or tropical product (the message says so).
    with pytest.raises(ExactCountLimitError,
                       match=r"samples already show \d+ .*max_regions=50.*sample_lower_bound"):
        count_linear_regions(wide_net(), 2.0, method, max_regions=50)
    with pytest.raises(ExactCountLimitError, match="max_regions=50"):
        count_boundary_pieces(wide_net(), 2.0, method, max_regions=50)


def test_tropical_work_budget():
    # The tropical construction of a 2-12-12-1 net needs thousands of polygon clips; a budget
    # of 500 stops it. Negative control: the default budget finishes and agrees with LP.
    layers = wide_net(12, 2, seed=1)
    with pytest.raises(ExactCountLimitError, match="max_clips=500.*sample_lower_bound"):
        count_linear_regions(layers, 2.0, "tropical", max_clips=500)
    assert (count_linear_regions(layers, 2.0, "tropical").linear_regions
            == count_linear_regions(layers, 2.0, "lp").linear_regions)


def test_both_methods_count_the_same_scalar_map():
    # out0 = relu(x), out1 = relu(x) + relu(y) - relu(-y) = relu(x) + y: f = out1 - out0 = y
    # is affine (1 region); the output vector has 2 regions (the kink of relu(x)).
    w1 = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    w2 = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, -1.0]])
    layers = [(w1, np.zeros(3)), (w2, np.zeros(2))]
    for method in ("lp", "tropical"):
        assert count_linear_regions(layers, 2.0, method).linear_regions == 1
        assert count_linear_regions(layers, 2.0, method, logit=0).linear_regions == 2
    # Three outputs without logit: LP counts the vector map (2), tropical refuses.
    three = [(w1, np.zeros(3)), (np.vstack([w2, [[0.0, 0.0, 0.0]]]), np.zeros(3))]
    assert count_linear_regions(three, 2.0, "lp").linear_regions == 2
    with pytest.raises(ValueError, match="logit"):
        count_linear_regions(three, 2.0, "tropical")


@pytest.mark.parametrize("name", ["max_regions", "max_lps", "max_monomials", "max_clips"])
@pytest.mark.parametrize("value", [0, -3])
def test_limits_must_be_positive(name, value):
    with pytest.raises(ValueError, match=name):
        count_linear_regions(wide_net(4, 1), 2.0, "tropical" if name in ("max_monomials",
                                                                          "max_clips") else "lp",
                             **{name: value})


def test_tol_accepts_real_numbers_and_rejects_others():
    layers = wide_net(4, 1)
    ref = count_linear_regions(layers, 2.0, tol=1e-3).linear_regions
    assert count_linear_regions(layers, 2.0, tol=np.float32(1e-3)).linear_regions == ref
    assert count_linear_regions(layers, 2.0, "tropical", tol=np.float64(1e-3)).tol == 1e-3
    with pytest.raises(TypeError, match="tol"):
        count_linear_regions(layers, 2.0, tol="1e-3")
    for bad in (0.0, -1e-3, float("nan")):
        with pytest.raises(ValueError, match="tol"):
            count_linear_regions(layers, 2.0, tol=bad)


def test_flat_regions_count_linear_regions_and_zero_sets_without_sign_change():
    # f = relu(x) - 1 ... shifted: f = relu(x - 1) vanishes on x < 1 (one linear region) which
    # the silent y neuron splits into 2 activation regions: flat_regions counts 1 (linear).
    layers = [(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([-1.0, 0.0])),
              (np.array([[1.0, 0.0]]), np.zeros(1))]
    for method in ("lp", "tropical"):
        res = count_boundary_pieces(layers, 2.0, method)
        assert res.flat_regions == 1 and res.linear_regions == 2
        # f = |x| never changes sign, yet its zero set x = 0 is one counted piece.
        absx = [(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.zeros(2)),
                (np.array([[1.0, 1.0]]), np.zeros(1))]
        assert count_boundary_pieces(absx, 2.0, method).pieces == 1
