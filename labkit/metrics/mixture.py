"""Mode weights of a sample set under an exact Gaussian mixture, and their distance to the truth.

The weight of component ``k`` in samples ``x_1..x_n`` is estimated by the mean *exact*
responsibility ``w_hat_k = (1/n) sum_i r_k(x_i)``, ``r_k(x) = w_k N(x; m_k, S_k) / p(x)``
(:meth:`labkit.GaussianMixture.responsibilities`). For exact samples of the mixture it is unbiased,
``E[r_k(X)] = w_k``, and needs no clustering; a sampler that drops or re-weights modes moves it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_generator, check_positive_int
from .._intervals import _check_level, mc_mean, wilson_interval
from ._bootstrap import as_rng, check_n_boot, value_only
from ..targets.gaussian import GaussianMixture
from ._samples import as_samples
from .estimate import Estimate

_BOOT_ENTRIES = 1 << 22  # resample-count entries (resamples x n) held in memory at once
_NULL_ROWS = 1 << 20  # exact samples drawn at once by mode_weight_error_null


def _check_mixture(mixture: Any) -> GaussianMixture:
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"mixture must be a labkit.GaussianMixture (or labkit.Gaussian), "
                        f"got {type(mixture).__name__}")
    return mixture


def _responsibilities(samples: Any, mixture: Any, sigma: Any) -> tuple[Tensor, GaussianMixture]:
    """Exact ``r_k(x_i)`` as a float64 ``(n, K)`` tensor, after validating both arguments."""
    mixture = _check_mixture(mixture)
    x = as_samples(samples, "samples")
    if x.shape[1] != mixture.dim:
        raise ValueError(f"samples must have shape (n, {mixture.dim}) to match the mixture's "
                         f"dimension, got {tuple(x.shape)}")
    return mixture.responsibilities(x, sigma).to(torch.float64), mixture


def _total_variation(w_hat: Tensor, w: Tensor) -> Tensor:
    """``0.5 * sum_k |w_hat_k - w_k|`` over the last dimension."""
    return 0.5 * (w_hat - w).abs().sum(dim=-1)


def mode_weights(samples: Any, mixture: GaussianMixture, *, level: float = 0.95,
                 sigma: float = 0.0) -> tuple[Estimate, ...]:
    r"""Estimated weight of each mixture component in ``samples``: the mean exact responsibility.

    .. math::
        \hat w_k = \frac1n \sum_{i=1}^n r_k(x_i), \qquad
        r_k(x) = \frac{w_k \, \mathcal N(x; m_k, S_k + \sigma^2 I)}{p_\sigma(x)}.

    Parameters
    ----------
    samples : Tensor or array_like of shape ``(n, d)``
    mixture : labkit.GaussianMixture
        The exact target whose components define the modes (a ``labkit.Gaussian`` has one).
    level : float, optional
        Interval coverage.
    sigma : float, optional
        Noise level of ``samples`` (0 for clean samples; ``> 0`` needed when a component is
        singular, since ``r_k`` then needs a density).

    Returns
    -------
    tuple of Estimate
        One per component, in the mixture's order: ``value = w_hat_k``, a Wilson score interval,
        ``stderr = sd(r_k) / sqrt(n)``.

    Notes
    -----
    Unbiased for exact samples. The interval is the Wilson score interval with the Bernoulli
    variance ``w(1 - w)``, which bounds ``Var r_k(X) = E[r_k^2] - w_k^2 <= w_k - w_k^2`` because
    ``0 <= r_k <= 1``: near-nominal (Wilson) coverage for well-separated modes (hard responsibilities),
    conservative for overlapping ones, and never zero-width when no sample lands in a mode (a
    sampler that never visits a mode of weight 0.1 gives ``[0, 3.8 / n]`` at 95%). The CLT
    standard error is reported in ``stderr``.

    References
    ----------
    Wilson, "Probable inference, the law of succession, and statistical inference", JASA 22
    (1927). Responsibilities: Bishop, "Pattern Recognition and Machine Learning" (2006), eq. 9.13.

    Examples
    --------
    >>> import labkit
    >>> mix = labkit.GaussianMixture(torch.tensor([[-4.0], [4.0]]), 1.0, weights=[0.3, 0.7])
    >>> x = mix.sample(10000, generator=torch.Generator().manual_seed(0))
    >>> [round(e.value, 2) for e in mode_weights(x, mix)]
    [0.3, 0.7]
    """
    level = _check_level(level)
    r, _ = _responsibilities(samples, mixture, sigma)
    n = r.shape[0]
    means = r.mean(dim=0).tolist()
    sds = (r.std(dim=0) if n > 1 else torch.zeros(r.shape[1], dtype=r.dtype)).tolist()
    method = (f"mean exact responsibility over {n} samples, Wilson score interval "
              f"(Bernoulli variance bound)")
    return tuple(Estimate(min(max(p, 0.0), 1.0), wilson_interval(p, n, level), n, method,
                          sd / math.sqrt(n))
                 for p, sd in zip(means, sds))


def mode_weight_error(samples: Any, mixture: GaussianMixture, *, level: float = 0.95,
                      n_boot: int = 200, generator: Any = None, sigma: float = 0.0) -> Estimate:
    r"""Total-variation distance between estimated and true mode weights.

    .. math::
        \mathrm{TV} = \tfrac12 \sum_k \lvert \hat w_k - w_k \rvert,

    with ``w_hat_k`` the mean exact responsibility (:func:`mode_weights`) and ``w_k`` the
    mixture's weights. 0 for perfect weights, 1 when all samples sit in modes of zero weight.

    Parameters
    ----------
    samples : Tensor or array_like of shape ``(n, d)``
    mixture : labkit.GaussianMixture
    level : float, optional
        Interval coverage.
    n_boot : int, optional
        Bootstrap resamples (``>= 10``); ``0`` for the value alone, with the trivial interval
        ``(0, 1)`` (the range of the TV).
    generator : torch.Generator, numpy.random.Generator, int or None, optional
        Bootstrap randomness; ``None`` is seed 0.
    sigma : float, optional
        Noise level of ``samples``, as in :func:`mode_weights`.

    Returns
    -------
    Estimate
        The plug-in TV, a percentile bootstrap interval over resampled rows, ``n``.

    Notes
    -----
    **Bias.** The plug-in TV is biased upwards: for exact samples ``w_hat - w`` is about
    ``N(0, Sigma / n)`` and ``E[TV] ~ 0.5 sum_k sqrt(2 Var r_k(X) / (pi n))
    <= 0.5 sum_k sqrt(2 w_k (1 - w_k) / (pi n)) = O(sqrt(K / n))``, not 0, and the bootstrap
    interval need not contain 0. Compare with :func:`mode_weight_error_null`, the same
    statistic for exact samples at the same ``n``: a value well above that reference means
    wrong weights.

    Examples
    --------
    >>> import labkit
    >>> mix = labkit.GaussianMixture(torch.tensor([[-4.0], [4.0]]), 1.0, weights=[0.3, 0.7])
    >>> wrong = labkit.GaussianMixture(mix.means, 1.0, weights=[0.5, 0.5])
    >>> x = wrong.sample(10000, generator=torch.Generator().manual_seed(0))
    >>> round(mode_weight_error(x, mix).value, 2)      # |0.5 - 0.3| = 0.2
    0.2
    """
    level = _check_level(level)
    n_boot = check_n_boot(n_boot)
    rng = as_rng(generator)
    r, mixture = _responsibilities(samples, mixture, sigma)
    n = r.shape[0]
    w = mixture.weights.to(r)
    value = float(_total_variation(r.mean(dim=0), w))
    what = "total variation of mean exact responsibilities vs true weights"
    if n_boot == 0:
        return Estimate.from_interval(value_only(value, n, (0.0, 1.0), what))
    boot = np.empty(n_boot)
    chunk = max(1, _BOOT_ENTRIES // n)
    for start in range(0, n_boot, chunk):  # a loop over chunks of resamples, not samples
        stop = min(n_boot, start + chunk)
        # Resampling rows with replacement = multinomial counts per row; w_hat_b = counts @ r / n.
        counts = torch.as_tensor(rng.multinomial(n, np.full(n, 1.0 / n), size=stop - start),
                                 dtype=r.dtype, device=r.device)
        boot[start:stop] = _total_variation(counts @ r / n, w).cpu().numpy()
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    return Estimate(value, (float(lo), float(hi)), n,
                    f"{what}, percentile bootstrap ({n_boot} resamples of {n} rows)")


def mode_weight_error_null(mixture: GaussianMixture, n: int, *, reps: int = 200,
                           level: float = 0.95, generator: torch.Generator | None = None,
                           sigma: float = 0.0) -> Estimate:
    """Expected :func:`mode_weight_error` of ``n`` exact samples: the reference its bias sets.

    Draws ``reps`` independent sets of ``n`` exact samples of ``mixture`` (noised by ``sigma``)
    and averages their TV distance to the true weights.

    Parameters
    ----------
    mixture : labkit.GaussianMixture
    n : int
        Sample-set size (that of the samples being judged).
    reps : int, optional
        Monte Carlo replicates (``>= 2``).
    level : float, optional
        Coverage of the Student-t interval on the mean.
    generator : torch.Generator or None, optional
        Randomness of the exact samples; ``None`` is a generator seeded with 0.
    sigma : float, optional
        Noise level, as in :func:`mode_weights`.

    Returns
    -------
    Estimate
        Mean TV of exact samples with its Student-t interval and ``stderr``; ``n`` is ``reps``.
    """
    mixture = _check_mixture(mixture)
    n = check_positive_int(n, "n")
    reps = check_positive_int(reps, "reps", minimum=2)
    level = _check_level(level)
    generator = check_generator(generator) or torch.Generator().manual_seed(0)
    per_chunk = max(1, _NULL_ROWS // n)
    tv = []
    for start in range(0, reps, per_chunk):  # a loop over chunks of replicates
        m = min(reps, start + per_chunk) - start
        x = mixture.sample_noised(m * n, sigma, generator)
        r = mixture.responsibilities(x, sigma).reshape(m, n, -1)  # (replicate, sample, K)
        tv.append(_total_variation(r.mean(dim=1), mixture.weights.to(r)))
    tv = torch.cat(tv).cpu().numpy()
    result = mc_mean(tv, level)
    return Estimate(result.value, result.interval, result.n,
                    f"mean TV of {reps} exact sample sets of size {n}, Student-t interval",
                    float(tv.std(ddof=1)) / math.sqrt(reps))


__all__ = ["mode_weights", "mode_weight_error", "mode_weight_error_null"]
