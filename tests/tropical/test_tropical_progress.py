"""``progress=`` on the exact tropical counts: same results, a bar on stderr only when asked."""

import numpy as np
import pytest

from labkit.tropical.boundary import count_boundary_pieces
from labkit.tropical.counting import count_linear_regions
from labkit.tropical.lipschitz import lipschitz_constant
from labkit.tropical.regions import enumerate_regions


def small_net():
    # A 2-6-4-1 ReLU network with fixed random weights: a few dozen regions, well under 1 s.
    rng = np.random.default_rng(0)
    return [(rng.normal(size=(6, 2)), rng.normal(size=6)),
            (rng.normal(size=(4, 6)), rng.normal(size=4)),
            (rng.normal(size=(1, 4)), rng.normal(size=1))]


def _drop_timing(result):
    return {k: v for k, v in vars(result).items() if k != "seconds"}


@pytest.mark.parametrize("method", ["lp", "tropical"])
def test_counts_identical_and_bar_only_when_asked(method, capfd):
    net = small_net()
    quiet = count_linear_regions(net, 2.0, method, progress=False)
    err_quiet = capfd.readouterr().err
    loud = count_linear_regions(net, 2.0, method, progress=True)
    err_loud = capfd.readouterr().err
    # Exact integers: the bar must not change a single count (only wall time may differ).
    assert _drop_timing(loud) == _drop_timing(quiet)
    assert quiet.linear_regions > 5  # a non-trivial network, so the bar has work to show
    # Negative control: progress=False writes nothing, even though pytest's stderr is no TTY.
    assert err_quiet == ""
    label = "activation regions (lp)" if method == "lp" else "tropical cells (G monomials)"
    assert label in err_loud
    if method == "lp":
        # The counter ends at the number of activation regions found ("<n>region").
        assert f"{quiet.activation_regions}region" in err_loud.replace(" ", "")

    b_quiet = count_boundary_pieces(net, 2.0, method, progress=False)
    assert capfd.readouterr().err == ""
    b_loud = count_boundary_pieces(net, 2.0, method, progress=True)
    assert label in capfd.readouterr().err
    assert _drop_timing(b_loud) == _drop_timing(b_quiet)


def test_lipschitz_and_enumeration_identical_with_progress(capfd):
    net = small_net()
    quiet = lipschitz_constant(net, 2.0, progress=False)
    assert capfd.readouterr().err == ""
    loud = lipschitz_constant(net, 2.0, progress=True)
    assert "activation regions (lp)" in capfd.readouterr().err
    assert loud.value == quiet.value and loud.regions == quiet.regions
    np.testing.assert_array_equal(loud.argmax, quiet.argmax)  # deterministic: exact equality
    e_quiet = enumerate_regions(net, 2.0)  # default is off
    assert capfd.readouterr().err == ""
    e_loud = enumerate_regions(net, 2.0, progress=True)
    assert "region" in capfd.readouterr().err
    np.testing.assert_array_equal(e_loud.labels, e_quiet.labels)
    assert [r.pattern.tobytes() for r in e_loud.regions] == \
        [r.pattern.tobytes() for r in e_quiet.regions]
