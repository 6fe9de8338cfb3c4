"""Measure a sampler against its exact target: a distance, a test, mode weights and an exact KL.

Ten Heun steps driven by the exact denoiser of a two-mode mixture, measured four ways (see
docs/metrics.md and docs/likelihood.md). Run: ``python docs/examples/measure_a_sampler.py``.
"""

import torch, labkit
from labkit.likelihood import sampler_kl
from labkit.metrics import mode_weight_error, two_sample_test, wasserstein2

mix = labkit.GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), covs=0.25)
g = torch.Generator().manual_seed(0)
sigmas = labkit.grids.karras(10, sigma_min=0.002, sigma_max=80.0)
z = 80.0 * torch.randn(1000, 2, generator=g, dtype=torch.float64)
x, _ = labkit.sample(mix, z, sigmas, solver="heun")             # 10 Heun steps
exact = mix.sample(1000, generator=g)
print(wasserstein2(x, exact, n_boot=20))                         # plug-in W2, bootstrap interval
print(two_sample_test(x, exact).p_value)                         # permutation test of q = p
print(mode_weight_error(x, mix))                                 # exact responsibilities
print(sampler_kl(mix, mix, sigmas, "heun", n=200, generator=g))  # exact-integrand KL(q || p)
