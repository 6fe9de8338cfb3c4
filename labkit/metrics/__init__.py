"""Sample- and density-based distances with uncertainty.

Every metric returns an :class:`Estimate` ``(value, interval, n, method, stderr)``:

- optimal transport: :func:`wasserstein2` (exact, network simplex), :func:`sinkhorn`
  (entropic and debiased Sinkhorn divergence), :func:`sliced_wasserstein2`;
- kernels: :func:`mmd` (unbiased MMD^2, RBF), :func:`energy_distance`, and the permutation
  :func:`two_sample_test`;
- Gaussian closed forms and fits: :func:`bures_wasserstein`, :func:`gaussian_kl`,
  :func:`frechet_distance`, :func:`frechet_to_gaussian`;
- mixtures: :func:`mode_weights`, :func:`mode_weight_error` (exact responsibilities);
- support coverage: :func:`precision_recall` (k-NN manifolds).

See ``docs/metrics.md``.
"""

from .estimate import Estimate
from .gaussian import (bures_wasserstein, bures_wasserstein_between, frechet_distance,
                       frechet_to_gaussian, gaussian_kl)
from .kernel import energy_distance, median_bandwidth, mmd
from .knn import PrecisionRecall, precision_recall
from .mixture import mode_weight_error, mode_weight_error_null, mode_weights
from .ot import sinkhorn, sliced_wasserstein2, wasserstein2
from .two_sample import TwoSampleResult, two_sample_test

__all__ = ["Estimate", "wasserstein2", "sinkhorn", "sliced_wasserstein2", "bures_wasserstein", "bures_wasserstein_between", "gaussian_kl",
           "frechet_distance", "frechet_to_gaussian", "mmd", "energy_distance",
           "median_bandwidth", "two_sample_test", "TwoSampleResult", "precision_recall",
           "PrecisionRecall", "mode_weights", "mode_weight_error", "mode_weight_error_null"]
