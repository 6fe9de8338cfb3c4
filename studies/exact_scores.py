"""The closed forms are exact: scores, denoisers and noised samples of every target family agree.

Source: the identities every score-based method rests on — the score is the gradient of the
log-density (Hyvärinen 2005, JMLR 6), and Tweedie's formula makes the optimal denoiser the
posterior mean ``D(x, sigma) = E[x0 | x0 + sigma eps = x] = x + sigma^2 grad log p_sigma(x)``
(Efron 2011, JASA 106; Karras et al. 2022, arXiv:2206.00364, Eq. 3). labkit's targets claim these
hold *exactly* at every noise level for each family (mixtures with low-rank components, embedded
spheres through Bessel ratios, products, point clouds, curves by quadrature).

Why the toy setting tests it: three measurements that each use a *different* route to the truth.
(1) ``score`` against automatic differentiation of ``log_prob`` (exact up to round-off and, for
curves, the stated quadrature tolerance); (2) ``denoise`` against a self-normalised Monte-Carlo
posterior mean from the target's own exact sampler, in units of its standard error; (3) samples
from ``sample_noised`` against the score by a kernel Stein discrepancy goodness-of-fit test
(Liu, Lee & Jordan 2016, arXiv:1602.03253), which needs no density normaliser.

Negative controls, one planted transcription error per route: for (1) and (2), a sphere whose
score and denoiser use the wrong Bessel order (``I_{nu+2} / I_{nu+1}`` instead of
``I_{nu+1} / I_nu``) while its ``log_prob`` and sampler stay right; for (3), a sphere whose
``sample_noised`` adds ``sigma**2 * eps`` instead of ``sigma * eps`` (variance for standard
deviation). The KSD test cannot see the wrong Bessel order at these sample sizes (the score error
it causes is ~1/r against a score scale of ~1/sigma; measured and documented in
docs/studies/exact_scores.md), which is why (3) has a control of its own. Because the
variance-for-std bug vanishes at sigma = 1, the KSD noise levels avoid 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import labkit
from labkit.progress import progress
from labkit.study import Check, Claim, Measurement, Result, bootstrap_interval, save_figure
from labkit.targets.bessel import bessel_ratio
from labkit.testing import ksd_test, monte_carlo_posterior_mean

NAME = Path(__file__).stem
TITLE = "Exact scores: score = grad log p, denoiser = posterior mean, samples match the density"

SCORE_TOL_LOG10 = -6.0
FAMILYWISE_LEVEL = 0.05  # the level at which "every family" is judged (Bonferroni)
CLAIMS = (
    Claim(id="score_is_grad_log_prob", source="Hyvärinen (2005), JMLR 6; labkit targets",
          statement="For every target family and noise level, score(x, sigma) equals the "
                    "autograd gradient of log_prob(x, sigma) to within 1e-6 relative error.",
          quantity="log10 of the worst relative error |score - grad log_prob| / "
                   "max(|grad log_prob|, 1/sigma) over families, sigmas and points",
          region=(-math.inf, SCORE_TOL_LOG10)),
    Claim(id="denoiser_is_posterior_mean", source="Tweedie / Efron (2011), JASA 106; "
                                                  "Karras et al. (2022), arXiv:2206.00364",
          statement="For every target family, denoise(x, sigma) equals the Monte-Carlo "
                    "posterior mean E[x0 | x] within its standard error: the z-scores have unit "
                    "root-mean-square.",
          quantity="RMS z-score (denoise - MC mean) / MC stderr of each family; reported: the "
                   "hull of the per-family Bonferroni intervals, or a family lying entirely "
                   "outside the region if there is one",
          region=(0.75, 1.33)),
    Claim(id="noised_samples_match_density", source="Liu, Lee & Jordan (2016), "
                                                    "arXiv:1602.03253 (KSD test)",
          statement="For every target family and noise level, samples from "
                    "sample_noised(n, sigma) follow the density whose score is score(., sigma): "
                    "no KSD test rejects at family-wise level 0.05.",
          quantity="Bonferroni-adjusted smallest KSD p-value over families x sigmas "
                   "(m * min p, capped at 1)",
          region=(FAMILYWISE_LEVEL, 1.0)),
)


@dataclass(frozen=True)
class Config:
    seed: int = 0
    families: tuple[str, ...] = ("mixture_full", "mixture_low_rank", "circle", "sphere_s2_r5",
                                 "torus", "point_cloud", "embedded_mixture", "helix")
    score_sigmas: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
    score_points: int = 32
    mc_sigmas: tuple[float, ...] = (0.5, 1.0)
    mc_points: int = 48
    n_mc: int = 20_000
    ksd_sigmas: tuple[float, ...] = (0.3, 2.0)
    ksd_samples: int = 300
    ksd_bootstrap: int = 2000


QUICK = Config()
FULL = Config(score_points=256, mc_sigmas=(0.3, 0.5, 1.0, 2.0), mc_points=128, n_mc=100_000,
              ksd_sigmas=(0.2, 0.5, 2.0, 3.0), ksd_samples=600, ksd_bootstrap=4000)


# ----------------------------------------------------------------------------- targets
def build_family(name: str, generator: torch.Generator) -> labkit.Target:
    """One target of each family, unit scale, parameters drawn from ``generator``."""
    if name == "mixture_full":
        a = torch.randn(3, 2, 2, generator=generator, dtype=torch.float64)
        covs = 0.1 * a @ a.transpose(1, 2) + 0.05 * torch.eye(2, dtype=torch.float64)
        means = 1.5 * torch.randn(3, 2, generator=generator, dtype=torch.float64)
        return labkit.GaussianMixture(means, covs, weights=torch.tensor([0.5, 0.3, 0.2]))
    if name == "mixture_low_rank":
        a = torch.randn(4, 5, 2, generator=generator, dtype=torch.float64)  # rank-2 in R^5
        means = torch.randn(4, 5, generator=generator, dtype=torch.float64)
        return labkit.GaussianMixture(means, 0.3 * a @ a.transpose(1, 2))
    if name == "circle":
        return labkit.Sphere(1, 2)
    if name == "sphere_s2_r5":
        return labkit.Sphere.random_subspace(2, 5, generator=generator)
    if name == "torus":
        return labkit.Product(labkit.Sphere(1, 2), labkit.Sphere(1, 2, radius=0.5))
    if name == "point_cloud":
        return labkit.Empirical(torch.randn(50, 3, generator=generator, dtype=torch.float64))
    if name == "embedded_mixture":
        inner = labkit.GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), 0.2)
        return labkit.Embedded.random(inner, 4, generator=generator)
    if name == "helix":
        return labkit.Curve.helix()
    raise ValueError(f"unknown family {name!r}")


class WrongBesselSphere(labkit.Target):
    """Planted defect: a sphere whose score and denoiser use ``I_{nu+2}/I_{nu+1}``.

    ``log_prob`` and ``sample`` are the true sphere's, so only a check that compares the score or
    denoiser with an independent route to the truth can notice.
    """

    has_density = False

    def __init__(self, sphere: labkit.Sphere) -> None:
        super().__init__()
        self.sphere, self.dim = sphere, sphere.dim
        self.nu_wrong = (sphere.k - 1) / 2 + 1

    def _sample(self, n, generator, like):
        return self.sphere._sample(n, generator, like)

    def _log_prob(self, x, sigma):
        return self.sphere._log_prob(x, sigma)

    def _denoise(self, x, sigma):
        q = self.sphere.basis.to(x)
        y = x @ q
        r = y.norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)
        ratio = bessel_ratio(self.nu_wrong, self.sphere.radius * r / sigma ** 2)
        return (self.sphere.radius * ratio / r)[:, None] * y @ q.T


class VarianceForStdSampler(labkit.Target):
    """Planted defect: ``sample_noised`` adds ``sigma**2 * eps`` instead of ``sigma * eps``.

    Everything else is the wrapped target's, so only the samples-vs-score check can notice.
    """

    def __init__(self, target: labkit.Target) -> None:
        super().__init__()
        self.target, self.dim, self.has_density = target, target.dim, target.has_density

    def sample_noised(self, n, sigma, generator=None, **kwargs):
        return self.target.sample_noised(n, sigma ** 2, generator, **kwargs)

    def _sample(self, n, generator, like):
        return self.target._sample(n, generator, like)

    def _log_prob(self, x, sigma):
        return self.target._log_prob(x, sigma)

    def _score(self, x, sigma):
        return self.target._score(x, sigma)


# ----------------------------------------------------------------------------- measurements
def score_error(target: labkit.Target, sigmas, n: int, generator: torch.Generator) -> float:
    """Worst relative error of ``score`` against autograd of ``log_prob`` (see CLAIMS[0])."""
    worst = 0.0
    for sigma in sigmas:
        x = target.sample_noised(n, sigma, generator).requires_grad_(True)
        (grad,) = torch.autograd.grad(target.log_prob(x, sigma).sum(), x)
        score = target.score(x.detach(), sigma)
        scale = grad.norm(dim=1).clamp_min(1.0 / sigma)
        worst = max(worst, float(((score - grad).norm(dim=1) / scale).max()))
    return worst


def denoiser_z_scores(target: labkit.Target, sigmas, n: int, n_mc: int,
                      generator: torch.Generator) -> np.ndarray:
    """Per-point mean squared z-score of ``denoise`` against the Monte-Carlo posterior mean.

    Coordinates where the posterior is a point mass (MC standard error ~ 0, e.g. directions
    orthogonal to an embedded sphere) carry no statistical information and are left out.
    """
    rows = []
    for sigma in sigmas:
        x = target.sample_noised(n, sigma, generator)
        mc = monte_carlo_posterior_mean(target, x, sigma, n_mc=n_mc, independent=True,
                                        generator=generator)
        z2 = ((target.denoise(x, sigma) - mc.mean) / mc.stderr).square()
        informative = mc.stderr > 1e-9 * (1.0 + mc.mean.abs())
        rows.append((torch.where(informative, z2, 0.0).sum(1) / informative.sum(1)).numpy())
    return np.concatenate(rows)


def ksd_p_values(target: labkit.Target, score_target: labkit.Target, sigmas, config: Config,
                 generator: torch.Generator) -> list[float]:
    """One KSD-test p-value per sigma: ``target.sample_noised`` against ``score_target.score``."""
    out = []
    for sigma in sigmas:
        x = target.sample_noised(config.ksd_samples, sigma, generator)
        res = ksd_test(x, lambda y, s=sigma: score_target.score(y, s),
                       n_bootstrap=config.ksd_bootstrap, generator=generator)
        out.append(res.p_value)
    return out


def rms(values: np.ndarray, axis=None) -> np.ndarray:
    """Root of the mean of per-point mean squared z-scores."""
    return np.sqrt(np.mean(values, axis=axis))


def deterministic(value: float, n: int, what: str) -> Measurement:
    return Measurement(value, (value, value), n, f"deterministic worst case over {n} {what} "
                                                 f"(no sampling error; interval is the point)")


def every_family(intervals: dict[str, Measurement], region: tuple[float, float],
                 level: float) -> Measurement:
    """Combine per-family measurements for a claim about *every* family.

    Each family's interval has Bonferroni level ``1 - (1 - level) / F``, so all F cover their
    true values jointly with probability >= ``level``. If some family's interval lies entirely
    outside the region, that family (the one farthest out) is reported — the claim is then
    refuted. Otherwise the hull of all intervals is reported: inside the region (every family
    supported) or overlapping its edge (inconclusive).
    """
    lo, hi = region
    centre = (lo + hi) / 2

    def distance_outside(m: Measurement) -> float:
        return max(lo - m.interval[1], m.interval[0] - hi)

    worst = max(intervals, key=lambda f: distance_outside(intervals[f]))
    n = sum(m.n for m in intervals.values())
    if distance_outside(intervals[worst]) > 0:
        m = intervals[worst]
        return Measurement(m.value, m.interval, n, f"family {worst!r} lies outside the region: "
                                                   f"{m.method}, Bonferroni over "
                                                   f"{len(intervals)} families")
    farthest = max(intervals, key=lambda f: abs(intervals[f].value - centre))
    hull = (min(m.interval[0] for m in intervals.values()),
            max(m.interval[1] for m in intervals.values()))
    return Measurement(intervals[farthest].value, hull, n,
                       f"hull of {len(intervals)} per-family percentile-bootstrap intervals "
                       f"(each at level {1 - (1 - level) / len(intervals):.4f}, Bonferroni); "
                       f"value: the family farthest from the centre, {farthest!r}")


def bonferroni_min_p(p_values: list[float], n_bootstrap: int) -> Measurement:
    """``m * min p`` (capped at 1) with a 95% interval for the Monte-Carlo error of the p-value.

    The wild-bootstrap p-value of ``B`` resamples is a binomial proportion; its normal interval
    ``p +- 1.96 sqrt(p (1 - p) / B)`` (floored at the resolution ``1 / (B + 1)``) is scaled by m.
    """
    m, p = len(p_values), min(p_values)
    half = 1.96 * math.sqrt(p * (1 - p) / n_bootstrap)
    lo, hi = max(p - half, 1 / (n_bootstrap + 1)), min(p + half, 1.0)
    return Measurement(min(1.0, m * p), (min(1.0, m * lo), min(1.0, m * hi)), m,
                       f"Bonferroni: {m} x smallest of {m} KSD p-values; interval: Monte-Carlo "
                       f"error of the p-value ({n_bootstrap} wild-bootstrap resamples)")


# ----------------------------------------------------------------------------- study
def run(config: Config, out_dir: Path) -> Result:
    g = torch.Generator().manual_seed(config.seed)
    targets = {name: build_family(name, g) for name in config.families}
    control = WrongBesselSphere(labkit.Sphere.random_subspace(2, 5, generator=g))
    sampler_control = VarianceForStdSampler(control.sphere)
    n_score = config.score_points * len(config.score_sigmas)
    family_level = 1 - (1 - 0.95) / len(targets)

    rows, z_by_family, p_by_family = [], {}, {}
    for name, target in progress(targets.items(), desc=NAME):
        err = score_error(target, config.score_sigmas, config.score_points, g)
        z = denoiser_z_scores(target, config.mc_sigmas, config.mc_points, config.n_mc, g)
        z_by_family[name] = bootstrap_interval(z, stat=rms, level=family_level,
                                               generator=config.seed)
        p_by_family[name] = ksd_p_values(target, target, config.ksd_sigmas, config, g)
        rows.append([name, target.dim, math.log10(max(err, 1e-300)), float(rms(z)),
                     *z_by_family[name].interval, min(p_by_family[name])])
    c_err = score_error(control, config.score_sigmas, config.score_points, g)
    c_z = bootstrap_interval(denoiser_z_scores(control, config.mc_sigmas, config.mc_points,
                                               config.n_mc, g), stat=rms, generator=config.seed)
    c_p = ksd_p_values(sampler_control, control.sphere, config.ksd_sigmas, config, g)
    c_bessel_p = ksd_p_values(control.sphere, control, config.ksd_sigmas, config, g)
    rows.append(["control: wrong Bessel order", control.dim, math.log10(c_err), c_z.value,
                 *c_z.interval, min(c_bessel_p)])
    rows.append(["control: sigma^2 for sigma in sample_noised", control.dim, None, None, None,
                 None, min(c_p)])

    worst = max(r[2] for r in rows[:-2])
    bessel = "the same measurement on a sphere whose score/denoiser use I_{nu+2}/I_{nu+1}"
    variance = ("the same measurement on sphere samples noised with sigma**2 * eps instead of "
                "sigma * eps, against the true score")
    all_p = [p for ps in p_by_family.values() for p in ps]
    checks = [
        Check.evaluate(CLAIMS[0], deterministic(worst, n_score * len(targets), "points"),
                       bessel, deterministic(math.log10(c_err), n_score, "points")),
        Check.evaluate(CLAIMS[1], every_family(z_by_family, CLAIMS[1].region, 0.95),
                       bessel, c_z),
        Check.evaluate(CLAIMS[2], bonferroni_min_p(all_p, config.ksd_bootstrap),
                       variance, bonferroni_min_p(c_p, config.ksd_bootstrap)),
    ]
    figure = plot(rows, z_by_family, c_z, p_by_family, c_p, len(all_p), config, out_dir)
    header = ["family", "dim", "log10 score error", "RMS z (denoiser)", "RMS z lower",
              "RMS z upper", "smallest KSD p-value"]
    return Result(study=NAME, title=TITLE, checks=checks, tables={"families": [header, *rows]},
                  figures=[figure])


def plot(rows, z_by_family, c_z, p_by_family, c_p, m, config, out_dir: Path) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    names = [r[0] for r in rows[:-1]]
    ax = axes[0]
    ax.barh(names, [r[2] for r in rows[:-1]],
            color=["tab:blue"] * (len(names) - 1) + ["tab:red"])
    ax.axvline(SCORE_TOL_LOG10, color="k", ls="--", label="claimed bound 1e-6")
    ax.set(xlabel="log10 worst relative error, score vs autograd", title="(1) score = grad log p")
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[1]
    fams = list(z_by_family)
    for j, (label, m_) in enumerate([*z_by_family.items(), ("control", c_z)]):
        colour = "tab:red" if label == "control" else "tab:blue"
        ax.errorbar([m_.value], [j], xerr=[[m_.value - m_.interval[0]],
                                          [m_.interval[1] - m_.value]],
                    fmt="s" if label == "control" else "o", color=colour, capsize=3)
    ax.set_yticks(range(len(fams) + 1), [*fams, "control: wrong Bessel order"])
    ax.axvspan(*CLAIMS[1].region, color="k", alpha=0.1, label="claimed region")
    ax.set_xscale("log")
    ax.set(xlabel="RMS z-score of denoise vs MC posterior mean (Bonferroni 95% intervals)",
           title="(2) denoiser = posterior mean")
    ax.legend(loc="lower right", fontsize=8)

    ax = axes[2]
    width = 0.8 / len(config.ksd_sigmas)
    for k, sigma in enumerate(config.ksd_sigmas):
        ys = np.arange(len(fams) + 1) + (k - (len(config.ksd_sigmas) - 1) / 2) * width
        ps = [p_by_family[f][k] for f in fams] + [c_p[k]]
        ax.barh(ys, -np.log10(ps), height=width, label=f"sigma = {sigma}",
                color=[f"C{k}"] * len(fams) + ["tab:red"])
    ax.axvline(-math.log10(FAMILYWISE_LEVEL / m), color="k", ls="--",
               label=f"Bonferroni threshold ({FAMILYWISE_LEVEL}/{m})")
    ax.set_yticks(range(len(fams) + 1), [*fams, "control: sigma^2 for sigma"])
    ax.set(xlabel="-log10 KSD p-value (right of the line = rejected)",
           title="(3) noised samples match the score")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_dir, NAME)
