"""The boundary-piece count of a ReLU classifier: independent of other complexity measures,
negatively correlated with robustness, reduced by robust training.

Source: Piwek, Klukowski & Hu, "Exact count of boundary pieces of ReLU classifiers: towards the
proper complexity measure for classification", UAI 2023, arXiv:2306.08805 (abstract and Sec. 5):
"the boundary piece count appears largely independent of other measures, e.g., total piece
count, and l2 norm of weights, during the training process", "the boundary piece count is
negatively correlated with robustness", and "popular robust training techniques, e.g.,
adversarial training or random noise injection, are found to reduce the number of boundary
pieces".

Why the toy setting tests it: in 2-D both counts are *exact* (``labkit.tropical``: LP
enumeration of activation regions; the tropical method cross-checks one trained net), so the
only randomness left is the training (seeds), which the intervals bootstrap over. Robustness is
exact too: inside a box the decision boundary is the union of the segments
``{x in R : g_R.x + h_R = 0}`` over the enumerated activation regions ``R``, and the l2 distance
of a test point to it is a minimum over segments. That distance ``u`` is an upper bound of the
distance to the whole boundary, and it is exact once the ball of radius ``u`` around the point
lies in the box; the box is enlarged to contain every test point's ball (half-width
``max |x|_inf + u``) and the segments recomputed, so every distance is exact (``certified`` = 1
is recorded and tested).

Setting: 2-D datasets (two moons, circles, a 4-mode labelled Gaussian mixture with alternating
labels: XOR), standardised; one-logit MLPs ``2 -> width -> ... -> 1`` in float64; full-batch
Adam on the logistic loss with three training modes: ``standard``, ``noise`` (Gaussian input
noise of std ``noise_std`` redrawn every step) and ``adversarial`` (PGD in l2, radius
``adv_eps``, ``adv_steps`` steps of size ``2.5 adv_eps / adv_steps``, trained on the perturbed
points only); plus ``label_noise`` (standard training with a fraction ``label_noise`` of the
training labels flipped), which exists only as a negative control. Same data and same
initialisation for all modes of one seed. Counting box ``[-box, box]^2``.

Claims and regions, fixed before any run:

* ``independent_of_linear_regions`` / ``independent_of_weight_norm``: "largely independent" is
  read as *at most a moderate* rank correlation: the mean over training runs of the Spearman
  correlation across checkpoints between boundary pieces and linear regions (resp. the l2 norm
  of all weights) lies in ``[-0.5, 0.5]`` (|rho| <= 0.5: under a quarter of shared rank
  variance). Controls: the same per-run correlation with boundary pieces replaced by a quantity
  dependent on the partner by construction (the sampling lower bound of the linear-region count
  from ``sample_lower_bound``; the product of the layers' spectral norms).
* ``negative_with_robustness``: the mean over datasets of the Spearman correlation across
  models (seeds x the three modes) between the final boundary-piece count and robustness lies
  in ``[-1, -0.3]`` (at least a moderate negative correlation; a region reaching 0 would admit
  "no correlation"). Robustness = mean over test points of the exact l2 distance to the
  decision boundary, counted as 0 for misclassified points (the expected smallest l2
  perturbation that makes the model wrong). Control: robustness re-paired comonotonically: the
  measured robustness values reassigned to the models of each dataset in increasing order of
  their piece count, a synthetic robustness that increases
  with the count by construction (its rho is near +1, so it must be refuted; a statistic biased
  towards negative values would put it inside the region). (The first version used a shuffled
  pairing, which a review found could not fail in the claim's direction.)
* ``adversarial_reduces_pieces`` / ``noise_reduces_pieces``: the mean over (dataset, seed) of
  ``log((1 + P_mode) / (1 + P_standard))`` (final counts, same seed) lies in
  ``(-inf, -log 1.05]``: at least a 5% reduction. (The first version used ``(-inf, 0]``, which
  a review found admitted "no change"; the region was tightened, never loosened.) Control: the
  same log-ratio for label-noise training against standard training, a training built to need a
  more complex boundary.

Intervals: percentile bootstrap (2000 resamples) over (dataset, seed) clusters, the unit that
shares data and initialisation: for claim (a) the clusters' runs are resampled together, for
claim (b) the seeds within each dataset (stratified), for claim (c) the pairs.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from scipy.stats import rankdata
from sklearn.datasets import make_circles, make_moons

import labkit
from labkit.progress import progress
from labkit.study import Check, Claim, Measurement, Result, save_figure
from labkit.tropical import (count_boundary_pieces, count_linear_regions, enumerate_regions,
                             sample_lower_bound)

NAME = Path(__file__).stem
TITLE = ("Boundary pieces of ReLU classifiers: independent of other measures, anti-correlated "
         "with robustness, reduced by robust training")

SOURCE = ("Piwek, Klukowski & Hu (2023), UAI, arXiv:2306.08805, abstract and Sec. 5 "
          "(experiments)")
INDEPENDENCE = 0.5  # claimed |mean Spearman rho| <= 0.5 ("largely independent")
NEGATIVE = -0.3  # claimed Spearman rho in [-1, -0.3] ("negatively correlated")
# claimed mean log-ratio <= -log(1.05) ("reduces": at least 5% fewer pieces; at the ~25-35
# pieces of these nets that is 1-2 pieces, the smallest change a count can show).
REDUCTION = math.log(1.05)
MODES = ("standard", "noise", "adversarial")
CONTROL_MODE = "label_noise"

CLAIMS = (
    Claim(id="independent_of_linear_regions", source=SOURCE,
          statement="During training, the boundary-piece count is largely independent of the "
                    "total number of linear pieces.",
          quantity="mean over training runs of the Spearman rho across checkpoints between exact "
                   "boundary pieces and exact linear regions (box [-b, b]^2)",
          region=(-INDEPENDENCE, INDEPENDENCE)),
    Claim(id="independent_of_weight_norm", source=SOURCE,
          statement="During training, the boundary-piece count is largely independent of the "
                    "l2 norm of the weights.",
          quantity="mean over training runs of the Spearman rho across checkpoints between exact "
                   "boundary pieces and the l2 norm of all weight matrices (biases excluded)",
          region=(-INDEPENDENCE, INDEPENDENCE)),
    Claim(id="negative_with_robustness", source=SOURCE,
          statement="The boundary-piece count is negatively correlated with robustness.",
          quantity="mean over datasets of the Spearman rho across models (seeds x {standard, "
                   "noise, adversarial}) between final boundary pieces and robustness (mean "
                   "exact l2 distance of test points to the boundary, 0 if misclassified)",
          region=(-1.0, NEGATIVE)),
    Claim(id="adversarial_reduces_pieces", source=SOURCE,
          statement="Adversarial training reduces the number of boundary pieces.",
          quantity="mean over (dataset, seed) of log((1 + P_adversarial) / (1 + P_standard)), "
                   "final exact boundary-piece counts, same data and initialisation",
          region=(-math.inf, -REDUCTION)),
    Claim(id="noise_reduces_pieces", source=SOURCE,
          statement="Random noise injection reduces the number of boundary pieces.",
          quantity="mean over (dataset, seed) of log((1 + P_noise) / (1 + P_standard)), final "
                   "exact boundary-piece counts, same data and initialisation",
          region=(-math.inf, -REDUCTION)),
)


@dataclass(frozen=True)
class Config:
    seed: int = 0
    datasets: tuple[str, ...] = ("moons",)
    n_seeds: int = 3
    width: int = 8
    depth: int = 2
    n_train: int = 200
    n_test: int = 400
    epochs: int = 200
    checkpoints: tuple[int, ...] = (0, 10, 30, 80, 200)
    lr: float = 0.01
    noise_std: float = 0.2  # input noise (standardised units)
    adv_eps: float = 0.25  # PGD l2 radius (standardised units)
    adv_steps: int = 5
    label_noise: float = 0.25  # control: fraction of training labels flipped
    box: float = 2.5  # counting box [-box, box]^2 (standardised data lie well inside)
    n_boot: int = 2000
    n_samples_bound: int = 10000  # control of claim a: sampling lower bound of linear regions
    crosscheck_width: int = 8  # LP vs tropical on a trained net of this width


QUICK = Config()
FULL = Config(datasets=("moons", "circles", "xor_mixture"), n_seeds=5, width=16,
              epochs=500, checkpoints=(0, 10, 30, 80, 200, 500), n_samples_bound=20000)


# ----------------------------------------------------------------------------- data
def make_data(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: ``n`` labelled 2-D points (float64, labels 0/1), seeded, no download."""
    if name == "moons":
        x, y = make_moons(n, noise=0.15, random_state=seed)
    elif name == "circles":
        x, y = make_circles(n, noise=0.08, factor=0.5, random_state=seed)
    elif name == "xor_mixture":
        means = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
        mix = labkit.GaussianMixture(means, 0.35 ** 2, labels=[0, 1, 0, 1])
        g = torch.Generator().manual_seed(seed)
        half = [n // 2, n - n // 2]
        x = torch.cat([mix.conditional(c).sample(half[c], g) for c in (0, 1)]).numpy()
        y = np.repeat([0, 1], half)
    else:
        raise ValueError(f"dataset must be 'moons', 'circles' or 'xor_mixture', got {name!r}")
    return np.asarray(x, np.float64), np.asarray(y, np.float64)


def datasets(name: str, seed: int, config: Config):
    """Standardised (by the training set) train and test sets as float64 tensors."""
    xtr, ytr = make_data(name, config.n_train, 1000 * seed + 1)
    xte, yte = make_data(name, config.n_test, 1000 * seed + 2)
    mu, sd = xtr.mean(0), xtr.std(0)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return t((xtr - mu) / sd), t(ytr), t((xte - mu) / sd), t(yte)


# ----------------------------------------------------------------------------- training
def make_net(config: Config, seed: int) -> torch.nn.Sequential:
    """``2 -> width (x depth) -> 1`` ReLU MLP, PyTorch default init under ``seed``, float64."""
    layers, d = [], 2
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for _ in range(config.depth):
            layers += [torch.nn.Linear(d, config.width), torch.nn.ReLU()]
            d = config.width
        layers.append(torch.nn.Linear(d, 1))
        return torch.nn.Sequential(*layers).double()


def pgd_l2(net, x, y, eps: float, steps: int) -> torch.Tensor:
    """PGD in l2 (Madry et al. 2018, arXiv:1706.06083): normalised-gradient ascent steps of
    size ``2.5 eps / steps`` on the logistic loss, projected onto the ``eps``-ball."""
    alpha = 2.5 * eps / steps
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x + delta)[:, 0], y)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = delta + alpha * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
            norm = delta.norm(dim=1, keepdim=True)
            delta = delta * torch.clamp(eps / norm.clamp_min(1e-12), max=1.0)
    return (x + delta).detach()


def train(mode: str, xtr, ytr, seed: int, config: Config):
    """Full-batch Adam; yields ``(epoch, net copy)`` at each checkpoint."""
    net = make_net(config, seed)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    g = torch.Generator().manual_seed(10_000 + seed)
    y = ytr
    if mode == CONTROL_MODE:
        flip = torch.rand(len(ytr), generator=g, dtype=torch.float64) < config.label_noise
        y = torch.where(flip, 1 - ytr, ytr)
    for epoch in range(config.epochs + 1):
        if epoch in config.checkpoints:
            yield epoch, copy.deepcopy(net)
        if epoch == config.epochs:
            break
        x = xtr
        if mode == "noise":
            x = xtr + config.noise_std * torch.randn(xtr.shape, generator=g, dtype=xtr.dtype)
        elif mode == "adversarial":
            x = pgd_l2(net, xtr, y, config.adv_eps, config.adv_steps)
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(net(x)[:, 0], y).backward()
        opt.step()


# ----------------------------------------------------------------------------- measurements
def weight_norms(net) -> tuple[float, float]:
    """(l2 norm of all weight matrices, product of the layers' spectral norms)."""
    ws = [m.weight.detach() for m in net if isinstance(m, torch.nn.Linear)]
    l2 = float(torch.sqrt(sum((w ** 2).sum() for w in ws)))
    spec = float(np.prod([float(torch.linalg.matrix_norm(w, 2)) for w in ws]))
    return l2, spec


def boundary_segments(net, box: float) -> np.ndarray:
    """Exact decision-boundary segments ``(m, 2, 2)`` in ``[-box, box]^2``: on each activation
    region ``{A x <= b}`` with map ``g.x + h``, the line ``g.x + h = 0`` clipped to the polygon."""
    enum = enumerate_regions(net, box)
    segs = []
    for reg in enum.regions:
        g, h = reg.jacobian[0], float(reg.offset[0])
        gn = float(np.linalg.norm(g))
        if gn <= 1e-12:
            if abs(h) <= 1e-12:
                raise ValueError("the network is identically 0 on an activation region: its "
                                 "decision boundary has a 2-D part, which boundary_segments "
                                 "does not handle")
            continue
        x0, u = -h * g / gn ** 2, np.array([-g[1], g[0]]) / gn
        au, slack = reg.A @ u, reg.b - reg.A @ x0
        if np.any((np.abs(au) <= 1e-12) & (slack < -enum.tol)):
            continue
        pos, neg = au > 1e-12, au < -1e-12
        t_hi = np.min(slack[pos] / au[pos]) if pos.any() else np.inf
        t_lo = np.max(slack[neg] / au[neg]) if neg.any() else -np.inf
        if t_hi - t_lo > enum.tol:
            segs.append([x0 + t_lo * u, x0 + t_hi * u])
    return np.array(segs).reshape(-1, 2, 2)


def distances_to_segments(x: np.ndarray, segs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact l2 distance of each point to the union of segments, and the nearest point."""
    if len(segs) == 0:
        return np.full(len(x), np.inf), np.full_like(x, np.nan)
    a, b = segs[:, 0], segs[:, 1]  # (m, 2)
    ab = b - a
    t = np.einsum("nmk,mk->nm", x[:, None, :] - a[None], ab) / np.einsum("mk,mk->m", ab, ab)
    p = a[None] + np.clip(t, 0, 1)[..., None] * ab[None]  # (n, m, 2)
    dist = np.linalg.norm(x[:, None, :] - p, axis=2)
    k = dist.argmin(1)
    return dist[np.arange(len(x)), k], p[np.arange(len(x)), k]


def exact_distances(net, x: np.ndarray, box: float, max_rounds: int = 8) -> dict:
    """Exact l2 distance of each point to the whole decision boundary (not only its part in
    the counting box).

    The distance ``u`` to the boundary segments inside ``[-r, r]^2`` is attained at a boundary
    point, so it bounds the true distance from above; a closer boundary point would lie in the
    ball of radius ``u``, so ``u`` is exact once ``u <= r - |x|_inf`` (ball inside the box).
    Starting from ``r = box``, the box is enlarged to ``r = max (|x|_inf + u)`` (doubled while a
    point sees no boundary at all) and the segments recomputed, until every point is certified.
    """
    reach = np.abs(x).max(1)
    half, first = float(box), None
    for rounds in range(1, max_rounds + 1):
        segs = boundary_segments(net, half)
        first = segs if first is None else first
        dist, nearest = distances_to_segments(x, segs)
        certified = dist <= half - reach
        if certified.all():
            break
        finite = np.isfinite(dist)
        need = float(np.max(reach[finite] + dist[finite])) if finite.any() else 0.0
        half = max(need * (1 + 1e-9), 2 * half if not finite.all() else half)
    return {"distance": dist, "nearest": nearest, "certified": certified, "half_width": half,
            "rounds": rounds, "segments": first}


def robustness(net, xte, yte, box: float) -> dict:
    """Mean exact l2 distance to the boundary over test points, 0 where misclassified."""
    x = xte.numpy()
    ex = exact_distances(net, x, box)
    dist, nearest = ex["distance"], ex["nearest"]
    with torch.no_grad():
        f = net(xte)[:, 0]
        correct = ((f > 0).double() == yte).numpy()
        f_near = (net(torch.as_tensor(nearest))[:, 0].abs().max().item()
                  if np.isfinite(dist).all() else math.inf)
    return {"robustness": float(np.mean(np.where(correct > 0, dist, 0.0))),
            "accuracy": float(correct.mean()), "certified": float(ex["certified"].mean()),
            "max_f_at_nearest": float(f_near), "distance_box": ex["half_width"],
            "segments": ex["segments"]}


def measure(net, xte, yte, config: Config, g: torch.Generator) -> dict:
    """Exact counts (LP method), weight norms, test accuracy and the sampling bound."""
    bc = count_boundary_pieces(net, config.box)
    l2, spec = weight_norms(net)
    sb = sample_lower_bound(net, config.box, config.n_samples_bound, g)
    with torch.no_grad():
        acc = float((((net(xte)[:, 0] > 0).double()) == yte).double().mean())
    return {"pieces": bc.pieces, "linear_regions": bc.linear_regions, "l2": l2, "spec": spec,
            "sampled_regions": sb.linear_regions, "accuracy": acc, "seconds": bc.seconds}


# ----------------------------------------------------------------------------- statistics
def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Spearman rho of ``(k, n)`` arrays (average ranks for ties; NaN if constant)."""
    ra, rb = rankdata(a, axis=-1), rankdata(b, axis=-1)
    ra, rb = ra - ra.mean(-1, keepdims=True), rb - rb.mean(-1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(-1) * (rb ** 2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(-1) / den, np.nan)


def bootstrap_mean(values: np.ndarray, config: Config, what: str,
                   clusters: list | None = None) -> Measurement:
    """Mean with a percentile bootstrap interval; with ``clusters`` (one label per value) whole
    clusters are resampled and the statistic is the mean of the values they hold."""
    values = np.asarray(values, float)
    labels = np.arange(len(values)) if clusters is None else np.asarray(clusters, dtype=object)
    _, inverse = np.unique(labels.astype(str), return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    sizes = np.bincount(inverse).astype(float)
    rng = np.random.default_rng(config.seed)
    idx = rng.integers(0, len(sums), (config.n_boot, len(sums)))
    boot = sums[idx].sum(1) / sizes[idx].sum(1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    unit = "them" if clusters is None else f"their {len(sums)} (dataset, seed) clusters"
    return Measurement(float(values.mean()), (float(lo), float(hi)), len(values),
                       f"mean of {len(values)} {what}; percentile bootstrap over {unit} "
                       f"({config.n_boot} resamples)")


def trajectory_correlation(runs: list[dict], key_a: str, key_b: str, config: Config,
                           what: str) -> tuple[Measurement, int]:
    """Mean over runs of the Spearman rho across checkpoints; runs where either series is
    constant (rho undefined) are left out and counted."""
    rho = np.array([spearman_rows(np.array([c[key_a] for c in r["trajectory"]]),
                                  np.array([c[key_b] for c in r["trajectory"]])) for r in runs])
    ok = np.isfinite(rho)
    left_out = int((~ok).sum())
    clusters = [f"{r['dataset']}/{r['seed']}" for r, keep in zip(runs, ok) if keep]
    measured = bootstrap_mean(rho[ok], config, f"per-run Spearman rho ({what}; {left_out} "
                                                f"constant runs left out)", clusters)
    return measured, left_out


def comonotone(count: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` reassigned so that they increase with ``count`` (the ``k``-th smallest value
    goes to the model with the ``k``-th smallest count; ties in the count share the mean of
    their values): a pairing whose Spearman rho is as positive as the ties allow."""
    ranks = rankdata(count, method="ordinal") - 1
    out = np.sort(values)[ranks]
    groups = np.unique(count, return_inverse=True)[1]
    return (np.bincount(groups, weights=out) / np.bincount(groups))[groups]


def stratified_rho(groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]], config: Config,
                   what: str = "") -> Measurement:
    """Mean over groups (datasets) of Spearman(count, robustness) across the group's models;
    ``groups`` holds ``(count, robustness, seed)`` arrays. The bootstrap resamples whole seeds
    within each group (the models of one seed share data and initialisation), stratified."""
    rng = np.random.default_rng(config.seed + 1)

    def stat(samples):  # samples: list of (k, n) model-index arrays, one per group
        out = 0.0
        for (c, r, _), idx in zip(groups, samples):
            out = out + np.nan_to_num(spearman_rows(c[idx], r[idx]))
        return out / len(groups)

    point = float(stat([np.arange(len(c))[None] for c, _, _ in groups])[0])
    samples = []
    for _, _, seed in groups:
        ids = np.unique(seed)
        members = np.stack([np.nonzero(seed == i)[0] for i in ids])  # (seeds, modes)
        pick = rng.integers(0, len(ids), (config.n_boot, len(ids)))
        samples.append(members[pick].reshape(config.n_boot, -1))
    boot = stat(samples)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    n = sum(len(c) for c, _, _ in groups)
    return Measurement(point, (float(lo), float(hi)), n,
                       f"{what}mean over {len(groups)} dataset(s) of the Spearman rho across "
                       f"models; percentile bootstrap over seeds, stratified by dataset "
                       f"({config.n_boot} resamples; a constant resample counts as rho = 0)")


# ----------------------------------------------------------------------------- study
def run(config: Config, out_dir: Path) -> Result:
    g = torch.Generator().manual_seed(config.seed)
    runs, example = [], None
    jobs = [(ds, s, mode) for ds in config.datasets for s in range(config.n_seeds)
            for mode in (*MODES, CONTROL_MODE)]
    data_cache = {}
    for ds, s, mode in progress(jobs, desc=NAME):
        seed = config.seed * 1000 + s
        if (ds, s) not in data_cache:
            data_cache[ds, s] = datasets(ds, seed, config)
        xtr, ytr, xte, yte = data_cache[ds, s]
        trajectory, net = [], None
        for epoch, net in train(mode, xtr, ytr, seed, config):
            if mode != CONTROL_MODE or epoch == config.epochs:  # the control: final only
                trajectory.append({"epoch": epoch, **measure(net, xte, yte, config, g)})
        rob = robustness(net, xte, yte, config.box)
        runs.append({"dataset": ds, "seed": s, "mode": mode, "trajectory": trajectory,
                     "final": trajectory[-1], **{k: v for k, v in rob.items()
                                                 if k != "segments"}})
        if example is None and mode == "standard":
            example = (net, xtr.numpy(), ytr.numpy(), rob["segments"], ds)

    main = [r for r in runs if r["mode"] in MODES]
    checks, notes = [], {}
    m, notes["regions"] = trajectory_correlation(main, "pieces", "linear_regions", config,
                                                 "boundary pieces vs linear regions")
    c, _ = trajectory_correlation(main, "sampled_regions", "linear_regions", config,
                                  "sampling lower bound of linear regions vs linear regions")
    checks.append(Check.evaluate(
        CLAIMS[0], m, f"boundary pieces replaced by the sampling lower bound of the linear-region "
        f"count ({config.n_samples_bound} uniform points), dependent on it by construction", c))
    m, notes["norm"] = trajectory_correlation(main, "pieces", "l2", config,
                                              "boundary pieces vs weight l2 norm")
    c, _ = trajectory_correlation(main, "spec", "l2", config,
                                  "product of spectral norms vs weight l2 norm")
    checks.append(Check.evaluate(
        CLAIMS[1], m, "boundary pieces replaced by the product of the layers' spectral norms, "
        "dependent on the weight norm by construction", c))

    groups = [tuple(np.array([x for r, x in zip(main, col) if r["dataset"] == ds])
                    for col in ([r["final"]["pieces"] for r in main],
                                [r["robustness"] for r in main], [r["seed"] for r in main]))
              for ds in config.datasets]
    synthetic = [(c, comonotone(c, r), s) for c, r, s in groups]
    checks.append(Check.evaluate(
        CLAIMS[2], stratified_rho(groups, config),
        "synthetic robustness increasing with the count by construction: each dataset's measured "
        "robustness values reassigned to its models in increasing order of their piece count",
        stratified_rho(synthetic, config, "robustness re-paired comonotonically with the count; ")))

    final = {(r["dataset"], r["seed"], r["mode"]): r["final"]["pieces"] for r in runs}
    keys = [(ds, s) for ds in config.datasets for s in range(config.n_seeds)]

    def log_ratio(mode):
        return np.array([math.log((1 + final[ds, s, mode]) / (1 + final[ds, s, "standard"]))
                         for ds, s in keys])
    control = bootstrap_mean(log_ratio(CONTROL_MODE), config,
                             "log((1 + P_label_noise) / (1 + P_standard))")
    ctrl_text = (f"label-noise training ({config.label_noise:g} of the labels flipped) against "
                 f"standard training, a training that needs a more complex boundary")
    for claim, mode in ((CLAIMS[3], "adversarial"), (CLAIMS[4], "noise")):
        checks.append(Check.evaluate(
            claim, bootstrap_mean(log_ratio(mode), config,
                                  f"log((1 + P_{mode}) / (1 + P_standard))"),
            ctrl_text, control))

    tables = {
        "models": [["dataset", "seed", "mode", "boundary pieces", "linear regions",
                    "weight l2 norm", "spectral product", "test accuracy", "robustness",
                    "certified fraction", "max |f| at nearest boundary point",
                    "distance box half-width"]]
        + [[r["dataset"], r["seed"], r["mode"], r["final"]["pieces"],
            r["final"]["linear_regions"], r["final"]["l2"], r["final"]["spec"], r["accuracy"],
            r["robustness"], r["certified"], r["max_f_at_nearest"], r["distance_box"]]
           for r in runs],
        "trajectories": [["dataset", "seed", "mode", "epoch", "boundary pieces",
                          "linear regions", "sampled regions (lower bound)", "weight l2 norm",
                          "spectral product", "test accuracy", "count seconds"]]
        + [[r["dataset"], r["seed"], r["mode"], t["epoch"], t["pieces"], t["linear_regions"],
            t["sampled_regions"], t["l2"], t["spec"], t["accuracy"], t["seconds"]]
           for r in runs for t in r["trajectory"]],
        "constant_runs_left_out": [["claim", "runs left out (constant series)", "runs"],
                                   ["independent_of_linear_regions", notes["regions"],
                                    len(main)],
                                   ["independent_of_weight_norm", notes["norm"], len(main)]],
        "exactness": crosscheck(config, data_cache[config.datasets[0], 0]),
    }
    figure = plot(runs, groups, checks, example, config, out_dir)
    return Result(study=NAME, title=TITLE, checks=checks, tables=tables, figures=[figure])


def crosscheck(config: Config, data) -> list[list]:
    """LP vs tropical counts on a trained net (standard mode, first dataset, seed 0) of width
    ``crosscheck_width`` (the tropical method is the slow one)."""
    small = dataclasses.replace(config, width=config.crosscheck_width,
                                checkpoints=(config.epochs,))
    xtr, ytr = data[0], data[1]
    _, net = next(iter(train("standard", xtr, ytr, config.seed * 1000, small)))
    rows = [["network", "method", "boundary pieces", "linear regions (boundary count)",
             "linear regions (region count)", "seconds"]]
    for method in ("lp", "tropical"):
        bc = count_boundary_pieces(net, config.box, method)
        rc = count_linear_regions(net, config.box, method)
        rows.append([f"{config.crosscheck_width} x {config.depth}, trained (standard)", method,
                     bc.pieces, bc.linear_regions, rc.linear_regions, bc.seconds + rc.seconds])
    return rows


# ----------------------------------------------------------------------------- figure
def plot(runs, groups, checks, example, config: Config, out_dir: Path) -> str:
    fig, axes = plt.subplots(2, 2, figsize=(12, 10))
    ax = axes[0, 0]
    for j, mode in enumerate(MODES):
        sel = [r for r in runs if r["mode"] == mode]
        ep = [t["epoch"] + 1 for t in sel[0]["trajectory"]]
        for key, ls in (("pieces", "-"), ("linear_regions", "--")):
            vals = np.array([[t[key] for t in r["trajectory"]] for r in sel], float)
            ax.plot(ep, vals.mean(0), ls, color=f"C{j}", marker="o", ms=3,
                    label=f"{mode}: {'boundary pieces' if key == 'pieces' else 'linear regions'}")
            ax.fill_between(ep, vals.min(0), vals.max(0), color=f"C{j}", alpha=0.08)
    ax.set(yscale="log", xscale="log", xlabel="epoch + 1 (full-batch Adam)",
           ylabel="exact count in the box (mean over runs; band: min-max)",
           title=f"(a) counts over training; rho(pieces, regions) = "
                 f"{checks[0].measured.value:+.2f} {checks[0].verdict},\nrho(pieces, l2) = "
                 f"{checks[1].measured.value:+.2f} {checks[1].verdict}")
    ax.legend(fontsize=7, ncol=2)

    ax = axes[0, 1]
    for j, (ds, (cnt, rob, _)) in enumerate(zip(config.datasets, groups)):
        ax.scatter(cnt, rob, color=f"C{j}", s=22, label=f"{ds}")
        ax.scatter(cnt, comonotone(cnt, rob), color="0.6", marker="x", s=16,
                   label="comonotone re-pairing (control)" if j == 0 else None)
        if np.ptp(cnt) > 0:
            k, b = np.polyfit(cnt, rob, 1)
            xs = np.linspace(cnt.min(), cnt.max(), 10)
            ax.plot(xs, k * xs + b, color=f"C{j}", lw=1)
    m, c = checks[2].measured, checks[2].control.measured
    ax.set(xlabel="final boundary pieces", ylabel="robustness: mean exact l2 distance to the "
           "boundary\n(0 if misclassified)",
           title=f"(b) rho = {m.value:+.2f} [{m.interval[0]:+.2f}, {m.interval[1]:+.2f}] "
                 f"(claimed <= {NEGATIVE}): {checks[2].verdict};\ncomonotone {c.value:+.2f} "
                 f"{checks[2].control.verdict}")
    ax.legend(fontsize=7)

    ax = axes[1, 0]
    net, xtr, ytr, segs, ds = example
    n = 300
    grid = np.linspace(-config.box, config.box, n)
    xx, yy = np.meshgrid(grid, grid)
    pts = np.stack([xx.ravel(), yy.ravel()], 1)
    with torch.no_grad():
        h, acts = torch.as_tensor(pts), []
        for layer in net:
            h = layer(h)
            if isinstance(layer, torch.nn.Linear) and len(acts) < config.depth:
                acts.append(h > 0)
    pattern = torch.cat(acts, 1).numpy()
    _, ids = np.unique(pattern, axis=0, return_inverse=True)
    colours = np.random.default_rng(1).permutation(ids.max() + 1)
    ax.imshow(colours[ids.ravel()].reshape(n, n), origin="lower", cmap=ListedColormap(
        plt.cm.tab20(np.linspace(0, 1, 20))), extent=(-config.box, config.box) * 2,
        interpolation="nearest", alpha=0.55)
    for a, b in segs:
        ax.plot([a[0], b[0]], [a[1], b[1]], "k-", lw=1.6)
    ax.scatter(xtr[:, 0], xtr[:, 1], c=ytr, cmap="coolwarm", s=6, edgecolors="none")
    ax.set(xlim=(-config.box, config.box), ylim=(-config.box, config.box),
           title=f"(c) {ds}, standard, seed 0: activation regions (colours)\nand the exact "
                 f"decision boundary ({len(segs)} region segments, black)", xlabel="x1 (standardised)",
           ylabel="x2")
    ax.title.set_fontsize(9)

    ax = axes[1, 1]
    labels = ["adversarial / standard", "noise / standard", "label noise / standard (control)"]
    for j, chk in enumerate([checks[3], checks[4], checks[3].control]):
        mm = chk.measured
        ax.errorbar([j], [mm.value], yerr=[[mm.value - mm.interval[0]], [mm.interval[1] -
                    mm.value]], fmt="o", color="C3" if j == 2 else "C0", capsize=4)
    ax.axhspan(-10, -REDUCTION, color="C2", alpha=0.1,
               label=f"claimed region (<= -log 1.05 = {-REDUCTION:.3f})")
    ax.axhline(0, color="k", lw=0.8)
    lo = min(ch.interval[0] for ch in (checks[3].measured, checks[4].measured,
                                       checks[3].control.measured))
    hi = max(ch.interval[1] for ch in (checks[3].measured, checks[4].measured,
                                       checks[3].control.measured))
    ax.set(xticks=range(3), xticklabels=labels, ylim=(min(lo, 0) - 0.2, max(hi, 0) + 0.2),
           ylabel="mean log((1 + P_mode) / (1 + P_standard)), 95% bootstrap",
           title=f"(d) adversarial: {checks[3].verdict}; noise: {checks[4].verdict}; control: "
                 f"{checks[3].control.verdict}")
    ax.legend(fontsize=7)
    for a in axes.flat:
        a.title.set_fontsize(9)
    fig.tight_layout()
    return save_figure(fig, out_dir, NAME)
