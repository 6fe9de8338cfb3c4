"""Which sample metric detects a dropped mode, wrong mode weights or a wrong covariance, at which n?

Sources: Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter (2017), arXiv:1706.08500, define the
Fréchet distance (FD, "FID") from the first two moments of Gaussian fits; Jayasumana, Ramalingam,
Veit, Glasner, Chakrabarti, Kumar (2024), "Rethinking FID", arXiv:2401.09603, criticise it for
exactly that and propose an MMD instead; Gretton, Borgwardt, Rasch, Schölkopf, Smola (2012), "A
kernel two-sample test", JMLR 13: the MMD with a characteristic kernel detects any difference of
distributions, given enough samples; Kynkäänniemi, Karras, Laine, Lehtinen, Aila (2019),
arXiv:1904.06991: improved *recall* measures coverage of the real support (a dropped mode lowers
it) and improved *precision* measures fidelity (it does not see a dropped mode).

Why the toy setting tests it: the reference ``p`` is a 2-D Gaussian mixture with 6 equal-weight
isotropic modes (variance 0.1) on a hexagon of radius 2, and every defect ``q`` is an exact
mixture too, so nothing but the metrics' sampling noise is measured:

- ``dropped_mode``: one weight set to 0 (the others renormalised to 1/5);
- ``wrong_weights``: weights alternating around the hexagon, ``w = (1 +- delta) / 6``. Alternate
  vertices form two equilateral triangles, each with centroid 0 and isotropic second moment, so
  ``q`` has *exactly* the mean and covariance of ``p`` (the population FD is 0; the first moment
  that differs is the third); every other metric here is consistent against it;
- ``wrong_covariance``: component covariances scaled by ``cov_scale`` (a local change that moves
  the mixture covariance only by ``(cov_scale - 1) * 0.1 * I``);
- ``none``: fresh exact samples of ``p``: the calibration line, where every detector must reject
  at rate ``<= alpha``.

Detection rule, the same for every metric: a Monte-Carlo test calibrated on the null. For each n,
``R0`` replicates of the statistic on (exact sample, independent exact reference sample) form the
null set; a defect replicate (defect sample vs a fresh exact reference) gets the Monte-Carlo
p-value ``(1 + #{null >= stat}) / (R0 + 1)`` and is detected when it is ``<= alpha`` (Davison &
Hinkley 1997, Sec. 4.2.5; the test has level ``<= alpha`` exactly, as the replicates are
exchangeable under ``H0``). Larger is worse for every statistic (precision and recall enter as
``1 - precision``, ``1 - recall``). One-sample statistics use the exact target instead of a
reference sample (mode-weight TV with exact responsibilities; FD to the exact mixture moments).
The permutation MMD test uses its own p-value. Power = fraction of the ``R`` defect replicates
detected. Its 95% interval is the union of the Wilson interval (defect replicates, null set held
fixed) and a percentile bootstrap that resamples the null set and the defect replicates together,
so the noise of the threshold (one null set per n, shared by every defect) is included.

Claims (regions fixed before any run, ``ALPHA = 0.05``): see ``CLAIMS``. Each negative control is
the same power measurement where the claim must fail: a defect FD does see (a dropped mode moves
the mean by 0.4), exact samples (power ~ alpha) for the detection claims, and recall's power for
precision's blindness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import torch

import labkit
from labkit.metrics.gaussian import bures_wasserstein, frechet_distance, frechet_to_gaussian
from labkit.metrics.kernel import energy_distance, mmd
from labkit.metrics.knn import precision_recall
from labkit.metrics.mixture import mode_weight_error
from labkit.metrics.ot import sliced_wasserstein2, wasserstein2
from labkit.metrics.two_sample import two_sample_test
from labkit.progress import progress
from labkit.study import Check, Claim, Measurement, Result, save_figure

NAME = Path(__file__).stem
TITLE = "Metric sensitivity: which metric sees a dropped mode, wrong weights or a wrong covariance"

ALPHA = 0.05  # level of every detection test, fixed before any run
SMALL_N = 100  # the "small n" of the mode-weight claim (in both configs)
DEFECTS = ("none", "dropped_mode", "wrong_weights", "wrong_covariance")

CLAIMS = (
    Claim(id="fd_blind_to_moment_preserving_weights",
          source="Heusel et al. (2017), arXiv:1706.08500, Sec. 4 (FID from the first two "
                 "moments); Jayasumana et al. (2024), arXiv:2401.09603, Sec. 3 (FID's normality "
                 "assumption ignores everything beyond them)",
          statement="The Fréchet distance of Gaussian fits cannot detect a change of mode "
                    "weights that preserves the mean and the covariance.",
          quantity="power of the level-0.05 Monte-Carlo test on the two-sample frechet_distance "
                   "against wrong_weights at the largest n of the run (1600 in FULL), 95% "
                   "interval: Wilson union null-set bootstrap",
          region=(0.0, 0.25)),
    Claim(id="mmd_detects_moment_preserving_weights",
          source="Gretton et al. (2012), JMLR 13, Thm 5 and Sec. 4 (MMD with a characteristic "
                 "kernel is a metric; consistent tests); Jayasumana et al. (2024), "
                 "arXiv:2401.09603 (MMD instead of FID)",
          statement="The MMD (RBF kernel, median-heuristic bandwidth) detects the mode-weight "
                    "change that the Fréchet distance cannot see, at a moderate sample size.",
          quantity="power of the level-0.05 Monte-Carlo test on unbiased MMD^2 against "
                   "wrong_weights at the largest n of the run (1600 in FULL), 95% "
                   "interval: Wilson union null-set bootstrap",
          region=(0.8, 1.0)),
    Claim(id="mode_weight_error_detects_dropped_mode",
          source="labkit.metrics.mode_weight_error (mean exact responsibilities, Bishop 2006 "
                 "eq. 9.13); the claim is labkit's",
          statement="With the exact target's responsibilities, the mode-weight error detects a "
                    "dropped mode (1 of 6) already at n = 100.",
          quantity="power of the level-0.05 Monte-Carlo test on mode_weight_error (TV of mean "
                   "exact responsibilities) against dropped_mode at n = 100, 95% "
                   "interval: Wilson union null-set bootstrap",
          region=(0.8, 1.0)),
    Claim(id="recall_detects_dropped_mode",
          source="Kynkäänniemi et al. (2019), arXiv:1904.06991, Sec. 2 and Fig. 1 (recall: "
                 "fraction of the real support covered by the generated manifold)",
          statement="Improved recall detects a dropped mode.",
          quantity="power of the level-0.05 Monte-Carlo test on 1 - recall (k = 3) against "
                   "dropped_mode at the largest n of the run, 95% "
                   "interval: Wilson union null-set bootstrap",
          region=(0.8, 1.0)),
    Claim(id="precision_blind_to_dropped_mode",
          source="Kynkäänniemi et al. (2019), arXiv:1904.06991, Sec. 2 and Fig. 1 (precision: "
                 "fraction of generated samples on the real manifold; mode dropping leaves it "
                 "unchanged)",
          statement="Improved precision does not detect a dropped mode (the generated samples "
                    "that remain are all realistic).",
          quantity="power of the level-0.05 Monte-Carlo test on 1 - precision (k = 3) against "
                   "dropped_mode at the largest n of the run, 95% "
                   "interval: Wilson union null-set bootstrap",
          region=(0.0, 0.25)),
)


@dataclass(frozen=True)
class Config:
    seed: int = 0
    ns: tuple[int, ...] = (100, 400)  # sample sizes (each set: n defect and n reference samples)
    replicates: int = 20  # R: defect replicates per (n, defect)
    null_replicates: int = 60  # R0: null replicates per n (the Monte-Carlo test's calibration)
    n_boot: int = 1000  # bootstrap resamples of (null set, defect replicates) per power
    radius: float = 2.0  # hexagon radius of the 6 mode means
    component_var: float = 0.1  # isotropic variance of every mode
    delta: float = 0.6  # wrong_weights: w = (1 +- delta) / 6, alternating
    cov_scale: float = 1.5  # wrong_covariance: component covariances times this
    n_permutations: int = 99  # permutation MMD test: p on a grid of 1/100, level exact at 0.05
    n_projections: int = 64  # sliced W2 directions
    scatter_n: int = 600  # points per scatter panel of the figure


QUICK = Config()
FULL = Config(ns=(50, 100, 200, 400, 800, 1600), replicates=60, null_replicates=180)


# ----------------------------------------------------------------------------- targets
def hexagon_mixture(config: Config, weights=None, scale: float = 1.0) -> labkit.GaussianMixture:
    """6 isotropic modes on a hexagon of radius ``config.radius``."""
    angle = torch.arange(6, dtype=torch.float64) * math.pi / 3
    means = config.radius * torch.stack([angle.cos(), angle.sin()], dim=1)
    cov = scale * config.component_var * torch.eye(2, dtype=torch.float64)
    return labkit.GaussianMixture(means, cov.expand(6, 2, 2), weights)


def build_defects(config: Config) -> dict[str, labkit.GaussianMixture]:
    """defect name -> the exact distribution the 'model' samples from (``none`` is ``p``)."""
    p = hexagon_mixture(config)
    alternating = torch.tensor([1.0, -1.0] * 3, dtype=torch.float64)
    return {"none": p,
            "dropped_mode": hexagon_mixture(config, torch.tensor([0.0] + [1.0] * 5,
                                                                 dtype=torch.float64)),
            "wrong_weights": hexagon_mixture(config, (1 + config.delta * alternating) / 6),
            "wrong_covariance": hexagon_mixture(config, scale=config.cov_scale)}


# ----------------------------------------------------------------------------- metrics
# name -> statistic(sample, reference, p, config, generator); larger is worse. A statistic whose
# name is in PVALUE_METRICS returns a p-value instead (detected when <= ALPHA, no calibration).
Statistic = Callable[[torch.Tensor, torch.Tensor, labkit.GaussianMixture, Config,
                      torch.Generator], float]
PVALUE_METRICS = ("MMD permutation test",)


def _precision_recall_badness(y, ref, p, config, g):
    pr = precision_recall(ref, y, k=3)
    return 1.0 - pr.precision.value, 1.0 - pr.recall.value


METRICS: dict[str, Statistic] = {
    "mode-weight TV (exact)": lambda y, ref, p, c, g: mode_weight_error(
        y, p, n_boot=10).value,
    "FD to exact moments": lambda y, ref, p, c, g: frechet_to_gaussian(
        y, p.mean, p.covariance, n_boot=10).value,
    "FD (two-sample)": lambda y, ref, p, c, g: frechet_distance(y, ref, n_boot=10).value,
    "MMD^2 (median h)": lambda y, ref, p, c, g: mmd(y, ref).value,
    "MMD permutation test": lambda y, ref, p, c, g: two_sample_test(
        y, ref, n_permutations=c.n_permutations, generator=g).p_value,
    "energy distance": lambda y, ref, p, c, g: energy_distance(y, ref).value,
    "W2 (exact OT)": lambda y, ref, p, c, g: wasserstein2(y, ref, n_boot=0).value,
    "sliced W2": lambda y, ref, p, c, g: sliced_wasserstein2(
        y, ref, n_projections=c.n_projections,
        generator=torch.Generator().manual_seed(c.seed)).value,
}
PR_METRICS = ("1 - precision", "1 - recall")  # both from one precision_recall call
METRIC_NAMES = tuple(METRICS) + PR_METRICS


def statistics(y, ref, p, config: Config, g: torch.Generator, null: bool) -> dict[str, float]:
    """Every metric's statistic of ``y`` against ``ref`` (p-value tests skipped for the null)."""
    out = {name: stat(y, ref, p, config, g) for name, stat in METRICS.items()
           if not (null and name in PVALUE_METRICS)}
    out["1 - precision"], out["1 - recall"] = _precision_recall_badness(y, ref, p, config, g)
    return out


# ----------------------------------------------------------------------------- power
def wilson(hits: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score 95% interval of a binomial proportion (Wilson 1927)."""
    phat = hits / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n))
    return (0.0 if hits == 0 else max(0.0, centre - half),
            1.0 if hits == n else min(1.0, centre + half))


def detections(name: str, null: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Which replicates are detected: Monte-Carlo p-value ``(1 + #{null >= v}) / (R0 + 1)``.

    ``null`` is ``(R0,)`` or a batch ``(B, R0)`` of null sets, ``values`` ``(R,)`` or ``(B, R)``.
    ``p <= ALPHA`` iff at most ``k = floor(ALPHA (R0 + 1)) - 1`` null values are ``>= v``, i.e.
    iff ``v`` exceeds the ``(k + 1)``-th largest null value.
    """
    if name in PVALUE_METRICS:
        return values <= ALPHA
    r0 = null.shape[-1]
    k = math.floor(ALPHA * (r0 + 1) + 1e-9) - 1
    if k < 0:  # too few null replicates for a level-ALPHA Monte-Carlo test
        return np.zeros(values.shape, dtype=bool)
    threshold = np.sort(null, axis=-1)[..., r0 - 1 - k]
    return values > np.expand_dims(threshold, -1)


def power(name: str, defect: str, n: int, stats: dict, config: Config) -> Measurement:
    null, values = stats.get((name, "null", n)), stats[(name, defect, n)]
    hits = detections(name, null, values)
    k, r = int(hits.sum()), int(hits.size)
    # Bootstrap: resample the defect replicates and (for calibrated metrics) the null set.
    rng = np.random.default_rng(config.seed)
    boot_values = values[rng.integers(0, r, (config.n_boot, r))]
    boot_null = None if null is None else null[rng.integers(0, null.size,
                                                            (config.n_boot, null.size))]
    boot = detections(name, boot_null, boot_values).mean(axis=1)
    b_lo, b_hi = np.quantile(boot, [0.025, 0.975])
    w_lo, w_hi = wilson(k, r)
    how = ("its own permutation p-value <= 0.05" if name in PVALUE_METRICS else
           f"Monte-Carlo p-value (1 + #{{null >= stat}}) / ({null.size} + 1) <= 0.05 against "
           f"{null.size} null replicates (exact vs independent exact samples)")
    return Measurement(k / r, (min(w_lo, float(b_lo)), max(w_hi, float(b_hi))), r,
                       f"fraction of {r} {defect} replicates at n = {n} detected by {how}; 95% "
                       f"interval: union of the Wilson interval and a percentile bootstrap "
                       f"({config.n_boot} resamples of the null set and the defect replicates)")


def simulate(config: Config, defects: dict[str, labkit.GaussianMixture]) -> dict:
    """(metric, 'null' or defect, n) -> statistics of the replicates, shape (R0,) or (R,)."""
    g = torch.Generator().manual_seed(config.seed)
    g_test = torch.Generator().manual_seed(config.seed + 1)  # permutation-test relabellings
    p = defects["none"]
    stats: dict = {}
    for n in progress(config.ns, desc="n"):
        rows = {key: [] for key in ("null",) + DEFECTS}
        for _ in range(config.null_replicates):  # loops over replicates; metrics are vectorised
            ref, exact = p.sample(n, g), p.sample(n, g)
            rows["null"].append(statistics(exact, ref, p, config, g_test, null=True))
        for _ in range(config.replicates):
            ref = p.sample(n, g)
            for defect, q in defects.items():
                rows[defect].append(statistics(q.sample(n, g), ref, p, config, g_test,
                                               null=False))
        for key, values in rows.items():
            for name in values[0]:
                stats[(name, key, n)] = np.array([v[name] for v in values])
    return stats


# ----------------------------------------------------------------------------- study
def population_table(defects: dict[str, labkit.GaussianMixture]) -> list[list]:
    """Exact differences of each defect from ``p``: weights TV, moments, population FD."""
    p = defects["none"]
    table = [["defect", "TV of mode weights", "|mean - mean_p|", "max |cov - cov_p|",
              "population FD (Gaussian fits)"]]
    for name, q in defects.items():
        fd = bures_wasserstein(q.mean, q.covariance, p.mean, p.covariance).value ** 2
        table.append([name, float(0.5 * (q.weights - p.weights).abs().sum()),
                      float((q.mean - p.mean).norm()),
                      float((q.covariance - p.covariance).abs().max()), fd])
    return table


def run(config: Config, out_dir: Path) -> Result:
    defects = build_defects(config)
    stats = simulate(config, defects)
    n_max = max(config.ns)
    if SMALL_N not in config.ns:
        raise ValueError(f"config.ns must contain n = {SMALL_N} (the mode-weight claim's n), "
                         f"got {config.ns}")

    grid = {(name, defect, n): power(name, defect, n, stats, config)
            for name in METRIC_NAMES for defect in DEFECTS for n in config.ns}
    claims = {c.id: c for c in CLAIMS}
    checks = [
        Check.evaluate(claims["fd_blind_to_moment_preserving_weights"],
                       grid[("FD (two-sample)", "wrong_weights", n_max)],
                       f"the same FD test against dropped_mode (mean moves by 0.4) at n = {n_max}",
                       grid[("FD (two-sample)", "dropped_mode", n_max)]),
        Check.evaluate(claims["mmd_detects_moment_preserving_weights"],
                       grid[("MMD^2 (median h)", "wrong_weights", n_max)],
                       f"the same MMD test on exact samples (no defect) at n = {n_max}",
                       grid[("MMD^2 (median h)", "none", n_max)]),
        Check.evaluate(claims["mode_weight_error_detects_dropped_mode"],
                       grid[("mode-weight TV (exact)", "dropped_mode", SMALL_N)],
                       f"the same test on exact samples (no defect) at n = {SMALL_N}",
                       grid[("mode-weight TV (exact)", "none", SMALL_N)]),
        Check.evaluate(claims["recall_detects_dropped_mode"],
                       grid[("1 - recall", "dropped_mode", n_max)],
                       f"the same recall test on exact samples (no defect) at n = {n_max}",
                       grid[("1 - recall", "none", n_max)]),
        Check.evaluate(claims["precision_blind_to_dropped_mode"],
                       grid[("1 - precision", "dropped_mode", n_max)],
                       f"the recall half of the same precision_recall call against dropped_mode "
                       f"at n = {n_max}",
                       grid[("1 - recall", "dropped_mode", n_max)]),
    ]

    power_table = [["metric", "defect", "n", "replicates", "power", "95% lo", "95% hi"]]
    for (name, defect, n), m in grid.items():
        power_table.append([name, defect, n, m.n, m.value, *m.interval])
    first_n = [["metric"] + [f"{d}: smallest n with power >= 0.8" for d in DEFECTS[1:]]]
    for name in METRIC_NAMES:
        row = [name]
        for defect in DEFECTS[1:]:
            hit = [n for n in config.ns if grid[(name, defect, n)].value >= 0.8]
            row.append(str(min(hit)) if hit else f"not reached (n <= {n_max})")
        first_n.append(row)
    figure = plot(config, defects, grid, checks, out_dir)
    return Result(study=NAME, title=TITLE, checks=checks,
                  tables={"power": power_table, "smallest_n_power_0.8": first_n,
                          "defects": population_table(defects)},
                  figures=[figure])


# ----------------------------------------------------------------------------- figure
STYLES = {"mode-weight TV (exact)": ("C0", "o", "-"), "FD to exact moments": ("C1", "s", "--"),
          "FD (two-sample)": ("C1", "s", "-"), "MMD^2 (median h)": ("C2", "^", "-"),
          "MMD permutation test": ("C2", "^", "--"), "energy distance": ("C3", "v", "-"),
          "W2 (exact OT)": ("C4", "D", "-"), "sliced W2": ("C4", "D", "--"),
          "1 - precision": ("C5", "x", "--"), "1 - recall": ("C5", "P", "-")}
TITLES = {"none": "no defect (calibration)", "dropped_mode": "dropped mode (1 of 6)",
          "wrong_weights": "alternating weights (same mean, cov)",
          "wrong_covariance": "component covariance x {scale:g}"}


def plot(config: Config, defects, grid, checks, out_dir: Path) -> str:
    fig, axes = plt.subplots(2, 4, figsize=(17, 10), gridspec_kw={"height_ratios": [1, 1.5]})
    g = torch.Generator().manual_seed(config.seed + 2)
    for ax, (defect, q) in zip(axes[0], defects.items()):
        x = q.sample(config.scatter_n, g).numpy()
        ax.scatter(x[:, 0], x[:, 1], s=3, alpha=0.5, color="k")
        ax.set(aspect="equal", xlim=(-3.2, 3.2), ylim=(-3.2, 3.2), xlabel="x1", ylabel="x2",
               title=f"{TITLES[defect].format(scale=config.cov_scale)}: {config.scatter_n} "
                     f"samples")
        ax.title.set_fontsize(9)
    ns = np.array(config.ns, dtype=float)
    for j, (ax, defect) in enumerate(zip(axes[1], DEFECTS)):
        for k, name in enumerate(METRIC_NAMES):
            colour, marker, line = STYLES[name]
            ms = [grid[(name, defect, n)] for n in config.ns]
            values = np.array([m.value for m in ms])
            err = np.abs(np.array([m.interval for m in ms]).T - values)
            jitter = ns * 1.025 ** (k - len(METRIC_NAMES) / 2)  # keep error bars apart
            ax.errorbar(jitter, values, yerr=err, color=colour, marker=marker, ls=line, ms=4,
                        lw=1.1, capsize=2, label=name)
        ax.axhline(ALPHA, color="grey", ls=":", lw=1, label=f"alpha = {ALPHA:g}")
        ax.axhline(0.8, color="grey", ls="--", lw=1, label="power 0.8")
        ax.set(xscale="log", ylim=(-0.03, 1.03), xlabel="n (samples per set)",
               ylabel="power (rejection rate)" if j == 0 else None,
               title=TITLES[defect].format(scale=config.cov_scale))
        ax.set_xticks(ns, [str(n) for n in config.ns])
        ax.minorticks_off()
    axes[1][0].legend(fontsize=7, loc="upper left")
    verdicts = "\n".join(f"{c.claim.id}: power {c.measured.value:.2f} "
                          f"[{c.measured.interval[0]:.2f}, {c.measured.interval[1]:.2f}], claimed "
                          f"[{c.claim.region[0]:g}, {c.claim.region[1]:g}]: {c.verdict} (control "
                          f"{c.control.measured.value:.2f}: {c.control.verdict})" for c in checks)
    fig.suptitle(f"Power of level-{ALPHA:g} tests, {config.replicates} replicates per point, "
                 f"{config.null_replicates} null replicates per n, 95% bars (Wilson and "
                 f"bootstrap)\n{verdicts}", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_dir, NAME)
