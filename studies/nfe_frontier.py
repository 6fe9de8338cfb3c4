"""Error against NFE for every deterministic solver and grid, and the published rankings at 10-20 NFE.

Sources of the rankings checked (each a ``Claim`` below): Karras, Aittala, Aila, Laine (2022),
arXiv:2206.00364 (Heun beats Euler at equal NFE; the Karras grid beats the VP grid); Lu, Zhou,
Bao, Chen, Li, Zhu (2022), arXiv:2211.01095 (DPM-Solver++(2M) beats DDIM and Heun at 10-20 NFE);
Zhao, Bai, Rao, Zhou, Lu (2023), arXiv:2302.04867 (UniPC beats DPM-Solver++(2M) at <= 10 NFE);
Zhang & Chen (2023), arXiv:2204.13902 (third-order DEIS beats DDIM at 10 NFE). The papers make
these claims with FID on image models; the claim in one sentence is "at equal NFE in the
few-step regime, solver A lands closer to the sampler's target than solver B".

Why the toy setting tests it: on targets with closed-form denoisers the probability-flow ODE has
an exact solution, computed once per start point with DOP853 (``reference_flow``, rtol 1e-10 and
an a-posteriori error estimate) from ``sigma_max = 80`` to ``1e-5`` and then denoised,
``x(0) = D(x(1e-5), 1e-5)`` (error ``O(1e-10 / l)`` for a component variance ``l``). So the error
of a sampler is known per sample, with no network error and no FID proxy in between. The panel:
a 3-component 2-D Gaussian mixture with full covariances, an 8-component mixture in R^64 whose
components have rank 4 (anisotropic spectra 0.1..1, so the data lie on a union of 4-D affine
pieces), and the uniform 2-sphere embedded in R^32 (``labkit.Sphere(2, 32)``). Every solver runs
on ``karras`` (rho 7), ``loglinear`` and ``uniform_t("vp")`` grids from 80 to 0.002, ending at 0,
with the largest step count whose ``info.nfe`` fits each budget (5-50).

Measured quantity per claim: on each (target, grid) cell, the geometric mean over the claim's
budgets of the ratio ``rms_err(A) / rms_err(B)`` of root-mean-square per-sample global errors,
with a paired percentile-bootstrap interval over start points at the Bonferroni level
``1 - 0.05 / cells``. A ranking claim holds for every cell it names: it is refuted if one cell's
interval lies above 1, supported if all lie below 1, inconclusive otherwise. Wasserstein-2
distances to independent exact-target samples (POT ``ot.emd2``) are reported beside it with
their finite-sample floor; they are too coarse to rank solvers beyond ~10 NFE in 32-64-D at the
sample sizes that fit the time budget (see docs/studies/nfe_frontier.md).

Solvers: every deterministic solver in ``labkit.solvers.SOLVERS`` that can be built with its
default options (``OPTIONS`` fixes the few the claims name, e.g. DEIS at order 3) and whose NFE
is set by the grid. Tolerance-driven adaptive solvers (an ``adaptive`` attribute or an ``rtol``
option) are left out: their NFE is not a budget one can set. A claim that names a solver not
registered yet is ``inconclusive`` with that reason.

Negative control, per claim: solver B made wasteful (one extra, discarded denoiser call per
step, so at each budget it runs about half as many steps) posing as A. It is B at a coarser grid,
so it is strictly worse than B wherever B converges, and the same measurement must refute the
claim that it beats B.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import ot
import torch

import labkit
from labkit import grids
from labkit.processes import get_process
from labkit.progress import progress
from labkit.solvers import SOLVERS, Solver, sample
from labkit.solvers.reference import reference_flow
from labkit.study import Check, Claim, Measurement, Result, save_figure

NAME = Path(__file__).stem
TITLE = "NFE frontier: error vs NFE for every solver and grid, and the published rankings"

SIGMA_MAX, SIGMA_MIN = 80.0, 0.002
GRIDS = ("karras", "loglinear", "uniform_t_vp")
LEVEL = 0.95
REGION = (0.0, 1.0)  # error ratio A / B; "A beats B" means the ratio is below 1
# A budget enters a cell's ratio only if both solvers' RMS errors exceed FLOOR_MARGIN times the
# target's error floor (truncation at SIGMA_MIN + reference error): below it, the ratio compares
# how the floor mixes with a solver's error, not the solvers (as solver_order excludes points
# near its reference's error).
FLOOR_MARGIN = 10.0

# options the claims name; used only when the solver's constructor accepts them
OPTIONS: dict[str, dict] = {"deis": {"order": 3}}


@dataclass(frozen=True)
class RankingClaim:
    claim: Claim
    a: tuple[str, str | None]      # (solver, grid or None = every grid)
    b: tuple[str, str | None]
    budgets: tuple[int, int]       # inclusive NFE range


def _ranking(id_, source, statement, a, b, budgets, where) -> RankingClaim:
    lo, hi = budgets
    quantity = (f"geometric mean over NFE budgets {lo}-{hi} of rms_err({a[0]}"
                f"{'@' + a[1] if a[1] else ''}) / rms_err({b[0]}{'@' + b[1] if b[1] else ''}) "
                f"(per-sample global error vs the exact flow at sigma = 0), per (target, grid) "
                f"cell over {where}; reported: a cell lying entirely above 1 if there is one, "
                f"else the hull of the cells' Bonferroni intervals")
    return RankingClaim(Claim(id=id_, source=source, statement=statement, quantity=quantity,
                              region=REGION), a, b, budgets)


RANKINGS = (
    _ranking("heun_beats_euler_karras",
             "Karras et al. (2022), arXiv:2206.00364, Sec. 3 and Fig. 2",
             "At equal NFE (10-30) on the Karras grid, Heun's 2nd-order method has a lower error "
             "than Euler's method.", ("heun", "karras"), ("euler", "karras"), (10, 30),
             "every target, Karras grid"),
    _ranking("dpmpp_2m_beats_ddim",
             "Lu et al. (2022), arXiv:2211.01095, Sec. 6 and Fig. 4 (DPM-Solver++(2M) vs DDIM)",
             "At 10-20 NFE, DPM-Solver++(2M) has a lower error than DDIM.",
             ("dpmpp_2m", None), ("ddim", None), (10, 20), "every target and grid"),
    _ranking("dpmpp_2m_beats_heun",
             "Lu et al. (2022), arXiv:2211.01095, Sec. 6 and Fig. 4 (DPM-Solver++(2M) vs EDM's "
             "Heun)", "At 10-20 NFE, DPM-Solver++(2M) has a lower error than Heun's method.",
             ("dpmpp_2m", None), ("heun", None), (10, 20), "every target and grid"),
    _ranking("unipc_beats_dpmpp_2m",
             "Zhao et al. (2023), arXiv:2302.04867, Sec. 4 and Fig. 3 (UniPC vs DPM-Solver++)",
             "At <= 10 NFE, UniPC has a lower error than DPM-Solver++(2M).",
             ("unipc", None), ("dpmpp_2m", None), (5, 10), "every target and grid"),
    _ranking("deis_beats_ddim",
             "Zhang & Chen (2023), arXiv:2204.13902, Sec. 5 and Table 2 (3rd-order DEIS vs DDIM)",
             "At 10 NFE, third-order DEIS has a lower error than DDIM.",
             ("deis", None), ("ddim", None), (10, 10), "every target and grid"),
    _ranking("karras_grid_beats_vp_grid_heun",
             "Karras et al. (2022), arXiv:2206.00364, Sec. 3 and Fig. 2 (their time steps vs "
             "the VP ones)",
             "At equal NFE (10-50), Heun on the Karras grid (rho = 7) has a lower error than Heun "
             "on the VP uniform-time grid.", ("heun", "karras"), ("heun", "uniform_t_vp"),
             (10, 50), "every target"),
)
CLAIMS = tuple(r.claim for r in RANKINGS)


@dataclass(frozen=True)
class Config:
    seed: int = 0
    targets: tuple[str, ...] = ("mixture_2d", "mixture_64d_rank4", "sphere_s2_r32")
    budgets: tuple[int, ...] = (5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)
    n: int = 1000           # samples per run (W2)
    n_ref: int = 200        # of which this many get the exact reference flow
    n_floor: int = 5        # repeats of the exact-vs-exact W2 floor
    n_boot: int = 4000
    reference_rtol: float = 1e-10
    sigma_tiny: float = 1e-5  # reference integrated to here, then denoised


QUICK = Config(targets=("mixture_2d",), budgets=(5, 10, 20), n=256, n_ref=64, n_floor=3,
               n_boot=1000)
FULL = Config(n=500)


# ----------------------------------------------------------------------------- targets
def build_target(name: str, g: torch.Generator) -> labkit.Target:
    if name == "mixture_2d":
        a = torch.randn(3, 2, 2, generator=g, dtype=torch.float64)
        covs = 0.1 * a @ a.transpose(1, 2) + 0.05 * torch.eye(2, dtype=torch.float64)
        means = 1.5 * torch.randn(3, 2, generator=g, dtype=torch.float64)
        return labkit.GaussianMixture(means, covs, weights=torch.tensor([0.5, 0.3, 0.2]))
    if name == "mixture_64d_rank4":
        k, d, r = 8, 64, 4
        means = 0.5 * torch.randn(k, d, generator=g, dtype=torch.float64)
        scales = torch.linspace(0.1, 1.0, r, dtype=torch.float64).sqrt() / math.sqrt(d)
        a = torch.randn(k, d, r, generator=g, dtype=torch.float64) * scales
        return labkit.GaussianMixture(means, a @ a.transpose(1, 2))
    if name == "sphere_s2_r32":
        return labkit.Sphere(2, 32)
    raise ValueError(f"unknown target {name!r}")


def make_grid(kind: str, steps: int) -> torch.Tensor:
    """``steps`` steps from SIGMA_MAX to SIGMA_MIN, then to 0 (``steps >= 2``)."""
    if kind == "karras":
        return grids.karras(steps, SIGMA_MIN, SIGMA_MAX, rho=7.0)
    if kind == "loglinear":
        return grids.loglinear(steps, SIGMA_MIN, SIGMA_MAX)
    if kind == "uniform_t_vp":
        vp = get_process("vp")
        t_lo, t_hi = (float(vp.t_of_sigma(torch.tensor(s, dtype=torch.float64)))
                      for s in (SIGMA_MIN, SIGMA_MAX))
        return grids.uniform_t(steps, vp, t_min=t_lo, t_max=t_hi)
    raise ValueError(f"unknown grid {kind!r}")


# ----------------------------------------------------------------------------- solvers
class Wasteful(Solver):
    """Planted control: ``inner`` plus one discarded denoiser call per step (NFE + 1 per step)."""

    order = None
    stochastic = False

    def __init__(self, inner: Solver) -> None:
        super().__init__()
        self.inner = inner
        self.name = f"wasteful_{inner.name}"  # type: ignore[misc]
        self.nfe_per_step = inner.nfe_per_step + 1  # type: ignore[misc]

    def step(self, denoiser, x, i, sigmas, generator):
        denoiser(x, sigmas[i])
        return self.inner.step(denoiser, x, i, sigmas, generator)


def solver_factories() -> tuple[dict[str, tuple], list[list]]:
    """``{name: (factory, options)}`` for the usable deterministic solvers, and the left-out ones."""
    usable, skipped = {}, []
    for name, cls in SOLVERS.items():
        if cls.stochastic:
            skipped.append([name, "stochastic (this study measures ODE solvers)"])
            continue
        params = inspect.signature(cls.__init__).parameters
        if getattr(cls, "adaptive", False) or "rtol" in params:
            skipped.append([name, "adaptive (tolerance-driven): its NFE is not set by the grid, "
                                  "so it has no place on a fixed-budget frontier"])
            continue
        opts = {k: v for k, v in OPTIONS.get(name, {}).items() if k in params}
        try:
            cls(**opts)
        except (TypeError, ValueError) as err:
            skipped.append([name, f"cannot be built with options {opts}: {err}"])
            continue
        usable[name] = (lambda c=cls, o=opts: c(**o), opts)
    return usable, skipped


def _probe_denoiser(x, sigma):
    return 0.5 * x  # any smooth denoiser: only the number of calls matters here


def budget_steps(factory, kind: str, budgets) -> dict[int, tuple[int, int]]:
    """``{budget: (steps, nfe)}``: the most steps (>= 2) whose ``info.nfe`` fits each budget.

    NFE is counted by running the solver on the grid with a cheap stand-in denoiser (the count
    does not depend on the denoiser for non-adaptive solvers; the real runs check it again).
    """
    x = SIGMA_MAX * torch.ones(1, 2, dtype=torch.float64)
    cache: dict[int, int] = {}

    def nfe(steps: int) -> int:
        if steps not in cache:
            _, info = sample(_probe_denoiser, x, make_grid(kind, steps), solver=factory())
            cache[steps] = info.nfe
        return cache[steps]

    out = {}
    per_step = max(int(getattr(factory(), "nfe_per_step", 1)), 1)
    for b in budgets:
        s = max(2, b // per_step + 1)
        while s > 2 and nfe(s) > b:
            s -= 1
        if nfe(s) > b:
            continue
        while nfe(s + 1) <= b:
            s += 1
        out[b] = (s, nfe(s))
    return out


# ----------------------------------------------------------------------------- measurement
def w2(x: np.ndarray, y: np.ndarray) -> float:
    """Exact W2 between two equal-size empirical measures (POT network simplex, float64)."""
    n = x.shape[0]
    w = np.full(n, 1.0 / n)
    cost = ot.dist(x, y, metric="sqeuclidean")
    return math.sqrt(max(ot.emd2(w, w, cost, numItermax=10 ** 7), 0.0))


def reference(target, x0: torch.Tensor, config: Config):
    """Exact flow to sigma = 0 and, for the docs, the truncation floor of stopping at SIGMA_MIN."""
    tol = config.reference_rtol
    r1 = reference_flow(target, x0, SIGMA_MAX, SIGMA_MIN, rtol=tol, atol=tol)
    r2 = reference_flow(target, r1.x, SIGMA_MIN, config.sigma_tiny, rtol=tol, atol=tol)
    tiny = torch.full((x0.shape[0],), config.sigma_tiny, dtype=x0.dtype)
    exact = target.denoise(r2.x, tiny)
    at_min = target.denoise(r1.x, torch.full_like(tiny, SIGMA_MIN))
    floor = float((at_min - exact).square().sum(1).mean().sqrt())
    return exact, r1.error_bound + r2.error_bound, floor


def ratio_interval(sq_a: np.ndarray, sq_b: np.ndarray, level: float, n_boot: int,
                   rng: np.random.Generator) -> tuple[float, float, float]:
    """Geometric mean over budgets of RMS ratio A/B; paired percentile bootstrap over points.

    ``sq_a``, ``sq_b``: squared per-point errors, shape ``(budgets, points)``.
    """
    def stat(ma, mb):
        return np.exp(np.mean(0.5 * (np.log(ma) - np.log(mb)), axis=0))
    value = float(stat(sq_a.mean(1), sq_b.mean(1)))
    idx = rng.integers(0, sq_a.shape[1], size=(n_boot, sq_a.shape[1]))
    boot = stat(sq_a[:, idx].mean(-1), sq_b[:, idx].mean(-1))
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return value, float(lo), float(hi)


def combine_cells(cells: dict[str, tuple[float, float, float]], n: int, what: str,
                  level: float) -> Measurement:
    """Every-cell rule: a cell entirely above the region refutes; else the hull of the cells."""
    lo_r, hi_r = REGION
    outside = {c: v for c, v in cells.items() if v[1] > hi_r or v[2] < lo_r}
    if outside:
        cell = max(outside, key=lambda c: outside[c][1])
        v, lo, hi = outside[cell]
        return Measurement(v, (lo, hi), n, f"{what}: cell {cell} lies outside the region "
                                           f"(paired percentile bootstrap over {n} start points "
                                           f"at level {level:.4f}, Bonferroni over "
                                           f"{len(cells)} cells)")
    worst = max(cells, key=lambda c: cells[c][0])
    hull = (min(v[1] for v in cells.values()), max(v[2] for v in cells.values()))
    return Measurement(cells[worst][0], hull, n,
                       f"{what}: hull of {len(cells)} per-cell paired percentile-bootstrap "
                       f"intervals over {n} start points (each at level {level:.4f}, "
                       f"Bonferroni); value: the largest ratio, cell {worst}")


def not_measured(reason: str) -> Measurement:
    return Measurement(1.0, (0.0, math.inf), 1, f"not measured: {reason}; the interval is the "
                                                f"whole range (no information)")


# ----------------------------------------------------------------------------- study
def run(config: Config, out_dir: Path) -> Result:
    if not 2 <= config.n_ref <= config.n:
        raise ValueError(f"config.n_ref must be in [2, n], got {config.n_ref}")
    g = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    usable, skipped = solver_factories()
    factories = {name: f for name, (f, _) in usable.items()}
    # controls: wasteful version of every B a claim names
    for r in RANKINGS:
        name = r.b[0]
        if name in factories and f"wasteful_{name}" not in factories:
            factories[f"wasteful_{name}"] = (lambda f=factories[name]: Wasteful(f()))
    frontier_solvers = list(usable)

    steps = {(name, kind): budget_steps(factory, kind, config.budgets)
             for name, factory in factories.items() for kind in GRIDS}

    sq = {}     # (target, grid, solver, budget) -> squared per-point errors (n_ref,)
    nfe = {}    # (grid, solver, budget) -> actual nfe
    w2s = {}    # (target, grid, solver, budget) -> W2
    failures, floors, refs, err_floor = [], {}, [], {}
    for tname in progress(config.targets, desc=NAME):
        target = build_target(tname, g)
        x0 = target.sample_noised(config.n, SIGMA_MAX, g)
        exact, ref_err, trunc = reference(target, x0[: config.n_ref], config)
        y = target.sample(config.n, g).numpy()
        fl = [w2(target.sample(config.n, g).numpy(), y) for _ in range(config.n_floor)]
        floors[tname] = (float(np.mean(fl)), float(np.std(fl, ddof=1)) if len(fl) > 1 else 0.0)
        err_floor[tname] = trunc + ref_err
        refs.append([tname, target.dim, ref_err, trunc, FLOOR_MARGIN * err_floor[tname],
                     floors[tname][0], floors[tname][1]])
        for name, factory in factories.items():
            for kind in GRIDS:
                for b, (s, expected_nfe) in steps[name, kind].items():
                    try:
                        x, info = sample(target, x0, make_grid(kind, s), solver=factory())
                    except FloatingPointError as err:
                        failures.append([tname, kind, name, b, str(err)])
                        continue
                    if info.nfe != expected_nfe:
                        raise RuntimeError(f"{name}: NFE {info.nfe} at {s} steps on {tname}, "
                                           f"probe said {expected_nfe}")
                    nfe[kind, name, b] = info.nfe
                    sq[tname, kind, name, b] = (x[: config.n_ref] - exact).square().sum(1).numpy()
                    if not name.startswith("wasteful_"):
                        w2s[tname, kind, name, b] = w2(x.numpy(), y)

    checks, skipped_cells, cell_rows = [], [], [["claim", "target", "grid", "budgets used", "ratio A/B", "lo",
                              "hi", "cell verdict", "control ratio", "control lo",
                              "control hi", "control cell verdict"]]
    from labkit.study import verdict as judge
    for r in RANKINGS:
        (a, ga), (b, gb) = r.a, r.b
        budgets = [u for u in config.budgets if r.budgets[0] <= u <= r.budgets[1]]
        missing = [s for s in (a, b) if s not in factories]
        grid_pairs = [(ga, gb)] if ga else [(k, k) for k in GRIDS]
        cells_m = {(t, p) for t in config.targets for p in grid_pairs}
        level = 1 - (1 - LEVEL) / max(len(cells_m), 1)
        ctrl = f"wasteful_{b}"
        ctrl_statement = (f"{b} with one extra, discarded denoiser call per step (about half the "
                          f"steps at each budget) posing as {a}")

        def cells_for(name_a: str) -> dict[str, tuple[float, float, float]]:
            out = {}
            for t in config.targets:
                for ka, kb in grid_pairs:
                    cut = FLOOR_MARGIN * err_floor[t]
                    used = [u for u in budgets if (t, ka, name_a, u) in sq and (t, kb, b, u) in sq
                            and min(_rms(sq[t, ka, name_a, u]), _rms(sq[t, kb, b, u])) > cut]
                    if not used:
                        skipped_cells.append([r.claim.id, name_a, t, ka, kb])
                        continue
                    sa = np.stack([sq[t, ka, name_a, u] for u in used])
                    sb = np.stack([sq[t, kb, b, u] for u in used])
                    key = f"{t}/{ka}" if ka == kb else f"{t}/{ka}-vs-{kb}"
                    out[key] = (*ratio_interval(sa, sb, level, config.n_boot, rng), used)
            return out

        if b not in factories:
            c_meas = not_measured(f"solver {b!r} is not registered in labkit.solvers.SOLVERS "
                                  f"(or is left out: see the 'left_out' table)")
            ctrl_cells = {}
        else:
            ctrl_cells = cells_for(ctrl)
            c_meas = (combine_cells({k: v[:3] for k, v in ctrl_cells.items()}, config.n_ref,
                                    "control", level) if ctrl_cells else
                      not_measured("no budget in range fits the control with errors above the floor"))
        if missing:
            meas = not_measured(f"solver(s) {missing} not registered in labkit.solvers.SOLVERS "
                                f"(or left out: see the 'left_out' table)")
            cells = {}
        else:
            cells = cells_for(a)
            meas = (combine_cells({k: v[:3] for k, v in cells.items()}, config.n_ref,
                                  f"{a} vs {b}", level) if cells else
                    not_measured(f"no budget in {r.budgets} fits both solvers with errors above "
                                 f"{FLOOR_MARGIN:g} x the floor on any cell"))
        checks.append(Check.evaluate(r.claim, meas, ctrl_statement, c_meas))
        for key in sorted(set(cells) | set(ctrl_cells)):
            t, k = key.split("/", 1)
            row = [r.claim.id, t, k]
            v = cells.get(key)
            cv = ctrl_cells.get(key)
            row.append(" ".join(map(str, (v or cv)[3])))
            row += ([v[0], v[1], v[2], judge(REGION, v[1:3])] if v else [None] * 4)
            row += ([cv[0], cv[1], cv[2], judge(REGION, cv[1:3])] if cv else [None] * 4)
            cell_rows.append(row)

    err_rows = [["target", "grid", "solver", "options", *[f"nfe<={u}" for u in config.budgets]]]
    nfe_rows = [["grid", "solver", *[f"nfe<={u}" for u in config.budgets]]]
    w2_rows = [["target", "grid", "solver", *[f"nfe<={u}" for u in config.budgets]]]
    for name in frontier_solvers:
        for kind in GRIDS:
            nfe_rows.append([kind, name, *[nfe.get((kind, name, u)) for u in config.budgets]])
            for t in config.targets:
                err_rows.append([t, kind, name, str(usable[name][1] or ""),
                                 *[_rms(sq.get((t, kind, name, u))) for u in config.budgets]])
                w2_rows.append([t, kind, name,
                                *[w2s.get((t, kind, name, u)) for u in config.budgets]])
    tables = {
        "rms_error": err_rows, "actual_nfe": nfe_rows, "w2": w2_rows, "claim_cells": cell_rows,
        "references": [["target", "dim", "reference error estimate (max abs)",
                        "rms truncation floor of stopping at sigma_min",
                        "errors below this are at the floor (not compared)", "W2 floor (mean)",
                        "W2 floor (sd)"], *refs],
        "cells_at_floor": [["claim", "solver A (or control)", "target", "grid A", "grid B"],
                           *skipped_cells],
        "left_out": [["solver", "reason"], *skipped],
        "failures": [["target", "grid", "solver", "budget", "error"], *failures],
    }
    figure = plot(tables, checks, config.targets, config.budgets, config.n, out_dir)
    return Result(study=NAME, title=TITLE, checks=checks, tables=tables, figures=[figure])


def _rms(v):
    return None if v is None else float(np.sqrt(v.mean()))


def plot(tables: dict, checks, targets, budgets, n: int, out_dir: Path) -> str:
    """The figure, drawn from the record's tables only (so it can be redrawn from a record)."""
    nfe = {(r[0], r[1]): r[2:] for r in tables["actual_nfe"][1:]}
    solvers = list(dict.fromkeys(r[1] for r in tables["actual_nfe"][1:]))
    floors = {r[0]: (r[5], r[6]) for r in tables["references"][1:]}
    short = {"mixture_2d": "mix2d", "mixture_64d_rank4": "mix64d", "sphere_s2_r32": "sphere",
             "karras": "karras", "loglinear": "loglin", "uniform_t_vp": "vp",
             "karras-vs-uniform_t_vp": "karras/vp"}
    nt = len(targets)
    fig = plt.figure(figsize=(21, 4.2 * nt + 5))
    gs = fig.add_gridspec(nt + 1, len(GRIDS) + 1, height_ratios=[1] * nt + [1.2])
    colour = {s: plt.get_cmap("tab10")(j % 10) for j, s in enumerate(solvers)}
    style = {s: ("-" if j < 10 else "--") for j, s in enumerate(solvers)}
    marker = {s: "os^vD<>ph*"[(j // 10) % 10] for j, s in enumerate(solvers)}

    def curve(ax, row, first):  # row: target, grid, solver, ..., values from column `first`
        pts = [(u, e) for u, e in zip(nfe[row[1], row[2]], row[first:])
               if u is not None and e is not None]
        if pts:
            ax.loglog(*zip(*pts), marker=marker[row[2]], ms=3, color=colour[row[2]],
                      ls=style[row[2]], label=row[2] + (" (= euler)" if row[2] == "ddim" else ""))

    for i, t in enumerate(targets):
        for j, kind in enumerate(GRIDS):
            ax = fig.add_subplot(gs[i, j])
            for row in tables["rms_error"][1:]:
                if row[0] == t and row[1] == kind:
                    curve(ax, row, 4)
            ax.axvspan(10, 20, color="k", alpha=0.06)
            ax.set(xlabel="NFE (info.nfe)", ylabel="RMS global error vs exact flow at sigma=0",
                   title=f"{t}: {kind} grid")
            if i == 0 and j == 0:
                ax.legend(fontsize=7, ncol=2)
        ax = fig.add_subplot(gs[i, len(GRIDS)])
        for row in tables["w2"][1:]:
            if row[0] == t and row[1] == "karras":
                curve(ax, row, 3)
        m, sd = floors[t]
        band = ax.axhspan(max(m - 2 * sd, 1e-12), m + 2 * sd, color="tab:red", alpha=0.2,
                          label=f"exact-vs-exact W2 floor (n={n}), mean +- 2 sd")
        ax.set(xlabel="NFE", ylabel="W2 to exact-target samples", title=f"{t}: W2, karras grid")
        ax.legend(handles=[band], fontsize=7)

    ax = fig.add_subplot(gs[nt, :])
    x, ticks, values = 0.0, [], []
    for c in checks:
        rows = [r for r in tables["claim_cells"][1:] if r[0] == c.claim.id]
        start = x
        for r in rows:
            if r[4] is not None:
                ax.errorbar([x], [r[4]], yerr=[[r[4] - r[5]], [r[6] - r[4]]], fmt="o",
                            color="tab:blue", capsize=2)
                values += [r[5], r[6]]
            if r[8] is not None:
                ax.errorbar([x + 0.3], [r[8]], yerr=[[r[8] - r[9]], [r[10] - r[8]]], fmt="s",
                            mfc="none", color="tab:red", capsize=2)
                values += [r[9], r[10]]
            ticks.append((x + 0.15, f"{short.get(r[1], r[1])}/{short.get(r[2], r[2])}"))
            x += 1
        if not rows:
            ticks.append((x, "not measured"))
            x += 1
        ax.text((start + x - 1) / 2 + 0.15, 1.01, f"{c.claim.id}\n{c.verdict}",
                transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)
        ax.axvline(x - 0.35, color="grey", lw=0.5)
        x += 0.3
    ax.set_yscale("log")
    lo = min([v for v in values if v > 0] + [0.5]) / 2
    hi = max(values + [2.0]) * 2
    ax.set_ylim(lo, hi)
    ax.axhspan(lo, 1.0, color="tab:green", alpha=0.08, label="claimed region: ratio < 1")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xlim(-0.7, x - 0.3)
    ax.set_xticks([p for p, _ in ticks], [lbl for _, lbl in ticks], rotation=60, fontsize=7,
                  ha="right")
    ax.set_ylabel("error ratio A / B\n(geometric mean over the claim's budgets)")
    ax.plot([], [], "o", color="tab:blue", label="claim: A / B, Bonferroni 95% paired bootstrap")
    ax.plot([], [], "s", mfc="none", color="tab:red", label="control: wasteful B / B")
    ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("Top rows: RMS per-sample error vs NFE per target and grid (grey band: 10-20 "
                 "NFE), and W2 to exact samples with its finite-sample floor. Bottom: the "
                 "ranking claims per (target, grid) cell", y=0.995)
    fig.subplots_adjust(left=0.05, right=0.98, top=0.955, bottom=0.07, hspace=0.42, wspace=0.25)
    return save_figure(fig, out_dir, NAME)


def replot(record: str | Path, out_dir: str | Path) -> str:
    """Redraw the figure of a written record (``NAME.json``) into ``out_dir``."""
    from labkit.study import load_record
    res = load_record(Path(record))
    return plot(res.tables, res.checks, res.config["targets"], res.config["budgets"],
                res.config["n"], Path(out_dir))
