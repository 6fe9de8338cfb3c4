"""Float32 samples far from the origin give the float64 answer of their (float32) values.

Distances are translation invariant; ``torch.cdist``'s matrix-product path is not, in float32:
before centring, an offset of 100 moved k-NN precision by 0.005 and an offset of 1e4 the energy
distance by 45% (review probe). The metrics centre in float64, so the result must equal the
float64 call on the same values shifted back to the origin, up to float64 round-off.
"""

import numpy as np
import pytest
import torch

from labkit.metrics.kernel import energy_distance, mmd
from labkit.metrics.knn import precision_recall
from labkit.metrics.two_sample import two_sample_test


def _pair(offset: float):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, generator=g, dtype=torch.float64)
    y = torch.randn(400, 2, generator=g, dtype=torch.float64) + 0.3
    x32, y32 = (x + offset).float(), (y + offset).float()   # what a float32 user holds
    shift = torch.full((2,), offset, dtype=torch.float64)
    return x32, y32, x32.double() - shift, y32.double() - shift


@pytest.mark.parametrize("offset", [1e2, 1e4])
def test_float32_far_from_origin_equals_float64_at_origin(offset):
    x32, y32, x64, y64 = _pair(offset)
    # The reference subtracts the offset exactly in float64 (both are representable), so the
    # only difference is float64 round-off in the centring: relative 1e-9 is ample.
    for f in (lambda a, b: mmd(a, b, bandwidth=0.5).value,
              lambda a, b: energy_distance(a, b).value,
              lambda a, b: two_sample_test(a, b, n_permutations=19).statistic):
        np.testing.assert_allclose(f(x32, y32), f(x64, y64), rtol=1e-9, atol=1e-12)
    pr32, pr64 = precision_recall(x32, y32), precision_recall(x64, y64)
    assert (pr32.precision.value, pr32.recall.value) == (pr64.precision.value, pr64.recall.value)


def test_uncentred_float32_distances_do_drift():
    """Negative control: the cancellation the centring removes is real at this offset."""
    x32, y32, x64, y64 = _pair(1e4)
    raw = torch.cdist(x32, y32)                      # float32 fast path, as before the fix
    exact = torch.cdist(x64, y64, compute_mode="donot_use_mm_for_euclid_dist")
    assert float((raw.double() - exact).abs().max()) > 1e-2
