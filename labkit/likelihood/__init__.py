"""Exact log-densities of diffusion samplers.

- Probability-flow ODE log-densities with the exact divergence (autograd trace) or Hutchinson's
  estimator: :func:`flow_log_prob`, :func:`exact_divergence`, :func:`hutchinson_divergence`,
  :func:`hutchinson_variance`.
- Discretised deterministic samplers: the exact log-density of the output through the log-
  determinant of the whole sampler map, hence an exact-integrand Monte-Carlo ``KL(q || p)``:
  :func:`sampler_log_prob`, :func:`sampler_kl`.
- One-dimensional stochastic samplers: the exact marginal of the discretised chain on a grid and
  its KL to the target: :func:`chain_marginal_1d`, :func:`chain_kl_1d`.

See ``docs/likelihood.md``.
"""

from .divergence import (HutchinsonDivergence, draw_probes, exact_divergence,
                         hutchinson_divergence, hutchinson_variance, probe_estimates)
from .flow import FlowLogProb, flow_log_prob, gaussian_prior_log_prob
from .sampler import SamplerLogProb, sampler_kl, sampler_log_prob
from .sde_chain import ChainMarginal1D, chain_kl_1d, chain_marginal_1d, level_grids

__all__ = ["exact_divergence", "hutchinson_divergence", "hutchinson_variance", "draw_probes",
           "probe_estimates", "HutchinsonDivergence", "flow_log_prob", "FlowLogProb",
           "gaussian_prior_log_prob", "SamplerLogProb", "sampler_log_prob", "sampler_kl",
           "ChainMarginal1D", "chain_marginal_1d", "chain_kl_1d", "level_grids"]
