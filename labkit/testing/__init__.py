"""Property-testing tools for people who write diffusion solvers, denoisers and samplers.

Apply them to your own code, with labkit's exact targets as ground truth:

- strategies (hypothesis): :func:`gaussian_mixtures`, :func:`gaussians`,
  :func:`embedded_spheres`, :func:`sigmas`, :func:`sigma_grids`, :func:`points`;
- exact identities: :func:`assert_score_matches_log_prob`, :func:`assert_tweedie`,
  :func:`assert_finite`;
- Monte Carlo identities with a stated false-failure rate:
  :func:`assert_denoiser_matches_monte_carlo`, :func:`assert_semigroup`, built on the
  estimator :func:`monte_carlo_posterior_mean`;
- goodness of fit (kernel Stein discrepancy): :func:`ksd_test`,
  :func:`assert_samples_match_score`, :func:`assert_noised_samples_match`;
- solver order: :func:`fit_order`, :func:`assert_order`.

The strategies need ``hypothesis`` (``pip install labkit[test]``); the assertions need only
torch. See ``docs/testing.md`` for the math and copyable examples.
"""

from __future__ import annotations

from typing import Any

from .assertions import (InsufficientSampleSizeError, MonteCarloCheck, OrderFit,
                         PosteriorMeanEstimate, ToleranceCheck,
                         assert_denoiser_matches_monte_carlo, assert_finite,
                         assert_noised_samples_match, assert_order, assert_samples_match_score,
                         assert_score_matches_log_prob, assert_semigroup, assert_tweedie,
                         false_failure_bound, fit_order, monte_carlo_posterior_mean)
from .goodness_of_fit import KSDResult, ksd_test
from .convergence import ConvergenceOrder, convergence_order

_STRATEGIES = ("gaussian_mixtures", "gaussians", "embedded_spheres", "sigmas", "sigma_grids",
               "points")

__all__ = ["assert_score_matches_log_prob", "assert_tweedie", "assert_finite",
           "assert_denoiser_matches_monte_carlo", "assert_semigroup",
           "assert_samples_match_score", "assert_noised_samples_match", "assert_order",
           "fit_order", "false_failure_bound", "monte_carlo_posterior_mean",
           "PosteriorMeanEstimate", "ksd_test", "KSDResult", "ToleranceCheck",
           "MonteCarloCheck", "OrderFit", "InsufficientSampleSizeError", "convergence_order",
           "ConvergenceOrder", *_STRATEGIES]


def __getattr__(name: str) -> Any:
    """Import the hypothesis strategies on first use, so the assertions work without hypothesis."""
    if name in _STRATEGIES:
        try:
            from . import strategies
        except ModuleNotFoundError as err:
            if err.name != "hypothesis":
                raise
            raise ImportError(f"labkit.testing.{name} needs hypothesis: "
                              f"pip install 'labkit[test]'") from err
        return getattr(strategies, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
