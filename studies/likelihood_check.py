"""Probability-flow ODE likelihoods are exact with the exact score; Hutchinson's estimator is
unbiased with the variance of its formula.

Sources: Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole (2021), arXiv:2011.13456, Sec. 4.3
and App. D.2: the probability-flow ODE gives exact likelihoods through the instantaneous change
of variables ``log p_0(x) = log p_T(x(T)) + int div f dt`` (Chen et al. 2018, arXiv:1806.07366);
Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud (2019), FFJORD, arXiv:1810.01367, Sec. 3.1:
Hutchinson's ``eps^T J eps`` is an unbiased estimate of ``div f``; Hutchinson (1990): its
variance is ``2 (||J_s||_F^2 - sum_i J_ii^2)`` for Rademacher probes, ``J_s = (J + J^T) / 2``.

Why the toy setting tests it: on Gaussian mixtures ``log p_sigma`` is known in closed form at
every noise level, so the flow's log-density at ``sigma_min`` can be compared with the truth
directly, with the exact prior ``p_sigma_max`` as the boundary term. The only other error is
RK4's, which Richardson extrapolation estimates per point (``labkit.likelihood.flow``); at the
worst point the actual error is close to that estimate, and both are far below the claimed
tolerance (at round-off-sized points the ratio scatters more; the table reports it). For the
estimator, the exact divergence and the full Jacobian come from ``d`` reverse passes, so bias
and variance are compared with exact values. The variance claim is measured on the 8-D
Gaussian only: in d = 2 a Rademacher estimate misses ``tr J`` by exactly ``+-(J_12 + J_21)``,
so its squared error equals the formula draw by draw and the 2-D target is an identity (kept in
the estimator table as a sanity check), not a test.

Negative controls: (1) the flow of a perturbed denoiser (mixture means shifted by 0.3, Gaussian
covariance scaled by 1.2) must miss the truth by more than the tolerance; (2) probes scaled by
1.1 (a wrong normalisation, ``E[eps eps^T] = 1.21 I``) must show a bias; (3) Gaussian probes
judged against the Rademacher variance formula must show a variance ratio away from 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import labkit
from labkit.likelihood.divergence import (draw_probes, exact_divergence, hutchinson_divergence,
                                          hutchinson_variance)
from labkit.likelihood.flow import flow_log_prob
from labkit.study import Check, Claim, Measurement, Result, normal_interval, save_figure

NAME = Path(__file__).stem
TITLE = "Likelihoods: the exact PF-ODE gives exact log-densities; Hutchinson is unbiased"

TOL = 1e-3  # nats: claimed region [0, TOL] for the worst point's likelihood error
BIAS_BAND = 0.02  # claimed region [-BIAS_BAND, BIAS_BAND] for Hutchinson's relative bias
VAR_BAND = (0.9, 1.1)  # claimed region for empirical / formula variance
# Targets whose draws measure the variance claim: in d = 2 it holds draw by draw (an identity).
VARIANCE_TARGETS = ("gaussian_8d",)

CLAIMS = (
    Claim(id="pf_ode_exact_likelihood",
          source="Song et al. (2021), arXiv:2011.13456, Sec. 4.3, Eq. 39, App. D.2; Chen et al. "
                 "(2018), arXiv:1806.07366 (instantaneous change of variables)",
          statement="With the exact score, the probability-flow ODE's log-likelihood equals the "
                    "log-density of the noised data distribution.",
          quantity="max over points and targets of |flow_log_prob - log p_sigma_min(x)| (nats), "
                   "interval widened by 2x each point's RK4 Richardson error estimate",
          region=(0.0, TOL)),
    Claim(id="hutchinson_unbiased",
          source="Grathwohl et al. (2019), FFJORD, arXiv:1810.01367, Sec. 3.1; Hutchinson (1990)",
          statement="Hutchinson's estimator eps^T J eps with E[eps eps^T] = I is an unbiased "
                    "estimate of div f = tr J.",
          quantity="relative bias sum(estimate - tr J) / sum(tr J) over points x probes "
                   "(PF-ODE field x - D(x, sigma)), normal 95% interval",
          region=(-BIAS_BAND, BIAS_BAND)),
    Claim(id="hutchinson_variance",
          source="Hutchinson (1990); Avron & Toledo (2011), J. ACM 58(2); FFJORD (2019)",
          statement="With Rademacher probes the variance of eps^T J eps is "
                    "2 (||J_s||_F^2 - sum_i J_ii^2).",
          quantity="ratio mean((estimate - tr J)^2) / mean(formula variance) over points x "
                   "probes of the 8-D Gaussian (in d = 2 the ratio is 1 draw by draw), normal "
                   "95% interval (delta method)",
          region=VAR_BAND),
)


@dataclass(frozen=True)
class Config:
    seed: int = 0
    n_points: int = 24  # likelihood points per target
    n_steps: int = 64  # RK4 steps in log sigma
    sigma_min: float = 0.01
    sigma_max: float = 10.0
    n_estimates: int = 1 << 15  # Hutchinson draws per target (one probe per row)
    estimator_sigmas: tuple[float, ...] = (0.05, 0.3, 1.0)
    shift: float = 0.3  # control: mixture means shifted by this much
    cov_scale: float = 1.2  # control: Gaussian covariance scaled by this
    probe_scale: float = 1.1  # control: misnormalised probes


QUICK = Config()
FULL = Config(n_points=256, n_steps=128, n_estimates=1 << 18)


# ----------------------------------------------------------------------------- targets
def build_targets(config: Config, g: torch.Generator) -> dict[str, tuple[labkit.GaussianMixture,
                                                        labkit.GaussianMixture]]:
    """name -> (target, perturbed denoiser for the control)."""
    f64 = torch.float64
    a = torch.randn(3, 2, 2, generator=g, dtype=f64)
    covs = 0.1 * a @ a.transpose(1, 2) + 0.05 * torch.eye(2, dtype=f64)
    means = 1.5 * torch.randn(3, 2, generator=g, dtype=f64)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=f64)
    mixture = labkit.GaussianMixture(means, covs, weights)
    b = torch.randn(8, 8, generator=g, dtype=f64)
    cov8 = b @ b.T / 8 + 0.1 * torch.eye(8, dtype=f64)
    mean8 = torch.randn(8, generator=g, dtype=f64)
    return {"mixture_2d": (mixture, labkit.GaussianMixture(means + config.shift, covs, weights)),
            "gaussian_8d": (labkit.Gaussian(mean8, cov8), labkit.Gaussian(mean8, config.cov_scale * cov8))}


# ----------------------------------------------------------------------------- claim 1
def likelihood_errors(denoiser, target, x, config: Config):
    """Per-point flow log-prob, exact log-prob and Richardson estimate (exact prior)."""
    res = flow_log_prob(denoiser, x, sigma_min=config.sigma_min, sigma_max=config.sigma_max,
                        n_steps=config.n_steps,
                        prior_log_prob=lambda z: target.log_prob(z, config.sigma_max))
    return res.log_prob, target.log_prob(x, config.sigma_min), res.error_estimate, res.nfe


def worst_error(rows: list[tuple]) -> Measurement:
    """Max |flow - exact| over all points, with the band |diff| +- 2 x Richardson estimate."""
    diff = torch.cat([(flow - exact).abs() for flow, exact, _ in rows])
    est = torch.cat([e for _, _, e in rows])
    lo = float((diff - 2 * est).clamp_min(0).max())
    hi = float((diff + 2 * est).max())
    return Measurement(float(diff.max()), (min(lo, float(diff.max())), hi), int(diff.numel()),
                       "max over points of |flow_log_prob - log p_sigma_min|; interval: max over "
                       "points of |diff| -+ 2 x RK4 Richardson error estimate (deterministic)")


# ----------------------------------------------------------------------------- claims 2, 3
def field(target, sigma: float):
    """PF-ODE field in t = log sigma: g(x) = x - D(x, sigma)."""
    return lambda y: y - target(y, sigma * y.new_ones(y.shape[0]))


def jacobians(f, x: torch.Tensor) -> torch.Tensor:
    """Row-wise Jacobians (n, d, d) from d reverse passes."""
    with torch.enable_grad():
        y = x.detach().requires_grad_(True)
        out = f(y)
        rows = [torch.autograd.grad(out[:, i].sum(), y, retain_graph=True)[0]
                for i in range(x.shape[1])]
    return torch.stack(rows, dim=1)


def estimator_draws(target, config: Config, g: torch.Generator, probe: str, scale: float):
    """Per-row (estimate, exact divergence, formula variance) on points from p_sigma."""
    per = config.n_estimates // len(config.estimator_sigmas)
    est, exact, theory = [], [], []
    for sigma in config.estimator_sigmas:
        f = field(target, sigma)
        x = target.sample_noised(per, sigma, g)
        noise = scale * draw_probes(1, tuple(x.shape), probe=probe, generator=g)
        _, e, _ = hutchinson_divergence(f, x, noise=noise)
        _, tr = exact_divergence(f, x)
        est.append(e)
        exact.append(tr)
        theory.append(hutchinson_variance(jacobians(f, x), "rademacher"))
    return torch.cat(est), torch.cat(exact), torch.cat(theory)


def relative_bias(est, exact) -> Measurement:
    diff = (est - exact).numpy()
    total = float(exact.sum())
    value = float(diff.sum()) / total
    stderr = float(diff.std(ddof=1)) * math.sqrt(diff.size) / abs(total)
    return Measurement(value, normal_interval(value, stderr), int(diff.size),
                       "sum(est - tr J) / sum(tr J); normal 95% interval, stderr = sd(est - tr J) "
                       "sqrt(N) / |sum tr J| (points held fixed)")


def variance_ratio(est, exact, theory) -> Measurement:
    sq = ((est - exact) ** 2).numpy()
    th = theory.numpy()
    ratio = float(sq.mean() / th.mean())
    stderr = float((sq - ratio * th).std(ddof=1)) / math.sqrt(sq.size) / float(th.mean())
    return Measurement(ratio, normal_interval(ratio, stderr), int(sq.size),
                       "mean((est - tr J)^2) / mean(2 (||J_s||_F^2 - sum J_ii^2)); normal 95% "
                       "interval by the delta method for a ratio of means")


# ----------------------------------------------------------------------------- study
def run(config: Config, out_dir: Path) -> Result:
    g = torch.Generator().manual_seed(config.seed)
    targets = build_targets(config, g)

    rows, ctrl_rows, scatter = [], [], {}
    table = [["target", "d", "points", "RK4 steps", "nfe", "max |error|", "max Richardson est",
              "error / estimate at worst point", "min error / estimate",
              "max error / estimate", "points with error > 2 x estimate",
              "max |error| among those", "control max |error|", "control median |error|"]]
    for name, (target, wrong) in targets.items():
        x = target.sample_noised(config.n_points, config.sigma_min, g)
        flow, exact, est, nfe = likelihood_errors(target, target, x, config)
        c_flow, _, c_est, _ = likelihood_errors(wrong, target, x, config)
        rows.append((flow, exact, est))
        ctrl_rows.append((c_flow, exact, c_est))
        scatter[name] = (exact, flow, c_flow)
        c_err = (c_flow - exact).abs()
        err = (flow - exact).abs()
        ratio = err / est.clamp_min(torch.finfo(est.dtype).tiny)
        outside = err > 2 * est
        table.append([name, target.dim, config.n_points, config.n_steps, nfe,
                      float(err.max()), float(est.max()), float(ratio[err.argmax()]),
                      float(ratio.min()), float(ratio.max()), int(outside.sum()),
                      float(err[outside].max()) if bool(outside.any()) else 0.0,
                      float(c_err.max()), float(c_err.median())])
    checks = [Check.evaluate(
        CLAIMS[0], worst_error(rows),
        f"flows of perturbed denoisers: mixture means shifted by {config.shift:g}, Gaussian "
        f"covariance scaled by {config.cov_scale:g}", worst_error(ctrl_rows))]

    draws = {name: (estimator_draws(t, config, g, "rademacher", 1.0),
                    estimator_draws(t, config, g, "rademacher", config.probe_scale),
                    estimator_draws(t, config, g, "gaussian", 1.0))
             for name, (t, _) in targets.items()}
    cat = [tuple(torch.cat([draws[n][k][j] for n in draws]) for j in range(3))
           for k in range(3)]
    var_cat = [tuple(torch.cat([draws[n][k][j] for n in VARIANCE_TARGETS]) for j in range(3))
               for k in range(3)]
    checks.append(Check.evaluate(
        CLAIMS[1], relative_bias(*cat[0][:2]),
        f"Rademacher probes scaled by {config.probe_scale:g} (E[eps eps^T] = "
        f"{config.probe_scale ** 2:.2f} I)", relative_bias(*cat[1][:2])))
    checks.append(Check.evaluate(
        CLAIMS[2], variance_ratio(*var_cat[0]),
        f"Gaussian probes judged against the Rademacher variance formula "
        f"({', '.join(VARIANCE_TARGETS)})", variance_ratio(*var_cat[2])))

    est_table = [["target", "probes", "draws", "relative bias", "variance ratio (Rademacher "
                  "formula)"]]
    for name, triples in draws.items():
        for label, (e, tr, th) in zip(("rademacher", f"rademacher x {config.probe_scale:g}",
                                       "gaussian"), triples):
            est_table.append([name, label, int(e.numel()), relative_bias(e, tr).value,
                              variance_ratio(e, tr, th).value])
    figure = plot(scatter, cat, checks, config, out_dir)
    return Result(study=NAME, title=TITLE, checks=checks,
                  tables={"likelihood": table, "estimator": est_table}, figures=[figure])


def plot(scatter, cat, checks, config: Config, out_dir: Path) -> str:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for j, (name, (exact, flow, c_flow)) in enumerate(scatter.items()):
        ax1.scatter(exact, flow, s=14, color=f"C{j}", label=f"{name}: exact denoiser")
        ax1.scatter(exact, c_flow, s=14, color=f"C{j}", marker="x", alpha=0.7,
                    label=f"{name}: perturbed (control)")
    lims = np.array(ax1.get_xlim())
    ax1.plot(lims, lims, "k-", lw=0.8, label="y = x")
    m = checks[0].measured
    ax1.set(xlabel=f"exact log p_sigma(x) at sigma = {config.sigma_min:g} (nats)",
            ylabel="PF-ODE flow_log_prob (nats)",
            title=f"max |error| {m.value:.1e} (claimed <= {TOL:g}): {checks[0].verdict}; "
                  f"control {checks[0].control.verdict}")
    ax1.title.set_fontsize(9)
    ax1.legend(fontsize=7)
    for (e, tr, th), label, style in ((cat[0], "Rademacher", "C0"),
                                      (cat[1], f"Rademacher x {config.probe_scale:g} (control)",
                                       "C3")):
        z = ((e - tr) / tr.abs().clamp_min(1e-12)).numpy()
        z = z[np.isfinite(z) & (np.abs(z) < 5)]
        ax2.hist(z, bins=80, histtype="step", color=style, density=True, label=label)
    b = checks[1].measured
    ax2.axvline(0, color="k", lw=0.8)
    ax2.set(xlabel="relative error (estimate - tr J) / |tr J| per draw (|.| < 5 shown)",
            ylabel="density",
            title=f"Hutchinson: relative bias {b.value:+.4f} [{b.interval[0]:+.4f}, "
                  f"{b.interval[1]:+.4f}]: {checks[1].verdict}; control "
                  f"{checks[1].control.measured.value:+.3f} {checks[1].control.verdict}")
    ax2.title.set_fontsize(9)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out_dir, NAME)
