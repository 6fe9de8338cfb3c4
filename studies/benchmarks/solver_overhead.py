"""Benchmark: per-step overhead of labkit's solvers against k-diffusion and diffusers, and the
best error each reaches at 10 denoiser calls.

Part 1, overhead. The same algorithm (``euler``, ``heun``, ``lms``, ``dpmpp_2m``,
``euler_ancestral``) run by labkit (``labkit.sample``), by k-diffusion (``sample_*``, its
``sampling.py`` loaded by path from ``KDIFFUSION_SAMPLING`` as the conformance tests do) and by
diffusers (the scheduler loop: ``scale_model_input``, model, ``step``, with the eps conversion a
pipeline needs), side by side in one process, on identical inputs (float64, 10 steps):

* a trivially cheap exact denoiser (``N(0, I)``: ``D = x / (1 + sigma^2)``), so that the solver's
  own work dominates;
* the exact 2-D mixture denoiser of ``tests/solvers/make_kdiffusion_reference.py`` (d = 2 only);

batch sizes 1 and 4096 (d = 2) and 1 and 64 (3x64x64). Time is the best of ``--repeats`` runs after a
warm-up, reported per step and as the ratio labkit / peer (goal <= 1.0). Peak memory is the peak
of torch CPU tensor bytes during one run (torch profiler, as ``mixture_score.py``).

Part 2, best error at 10 NFE. On the 2-D mixture and a 64-D mixture (8 isotropic components),
256 start points ``x = sigma_max z``: every deterministic labkit solver on Karras (rho = 7) and
log-linear grids from 14.6 (Stable Diffusion's sigma_max) to 0.03, ending in 0, with the most
steps that stay within 10 denoiser calls; k-diffusion's ODE samplers on the same grids;
diffusers' schedulers on their own grids (SD's scaled-linear schedule, 10 calls). Error: the
mean over points of ``|x_N - x_ref|``, ``x_ref`` the DOP853 reference flow
(``labkit.solvers.reference.reference_flow``, rtol 1e-10) from the run's first sigma to 1e-5,
then ``D(., 1e-5)`` (the remaining gap to sigma = 0 is below 1e-9 here).

Peers that are not importable are reported as "not installed". Run
``KDIFFUSION_SAMPLING=/tmp/kd/k_diffusion/sampling.py python studies/benchmarks/solver_overhead.py
[--quick] [--out results.json]`` (with diffusers installed for the diffusers columns).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

import labkit
from labkit import grids
from labkit.solvers import SOLVERS
from labkit.solvers.reference import reference_flow
from _common import load_module, write_json

ROOT = Path(__file__).resolve().parents[2]
STEPS = 10
SIGMA_MAX, SIGMA_MIN = 14.614641, 0.0292
SD = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
      "beta_schedule": "scaled_linear"}
ALGOS = {  # labkit name: (k-diffusion sampler, diffusers scheduler, its config)
    "euler": ("sample_euler", "EulerDiscreteScheduler", {}),
    "heun": ("sample_heun", "HeunDiscreteScheduler", {}),
    "lms": ("sample_lms", "LMSDiscreteScheduler", {}),
    "dpmpp_2m": ("sample_dpmpp_2m", "DPMSolverMultistepScheduler",
                 {"algorithm_type": "dpmsolver++", "solver_order": 2,
                  "final_sigmas_type": "zero"}),
    "euler_ancestral": ("sample_euler_ancestral", "EulerAncestralDiscreteScheduler", {}),
}
SIGMA_STATE = {"EulerDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler",
               "EulerAncestralDiscreteScheduler"}
_MB = 2.0 ** 20


KD_REF = load_module("_kd_reference", ROOT / "tests/solvers/make_kdiffusion_reference.py")
MIXTURE_SCORE = load_module("_mixture_score", Path(__file__).with_name("mixture_score.py"))


def load_peers() -> tuple[object | None, object | None]:
    """(k-diffusion sampling module or None, diffusers module or None)."""
    kd = None
    path = os.environ.get("KDIFFUSION_SAMPLING")
    if path and Path(path).is_file():
        kd = KD_REF.load_sampling(path)
    try:
        import diffusers
        diffusers.utils.logging.set_verbosity_error()
    except Exception:  # noqa: BLE001  (absent or broken: reported as not installed)
        diffusers = None
    return kd, diffusers


def cheap_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Exact denoiser of N(0, I): ``x / (1 + sigma^2)``, sigma per row."""
    return x / (1 + sigma.reshape(-1, *[1] * (x.ndim - 1)) ** 2)


def mixture_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return KD_REF.mixture_denoiser(x, sigma)


# ---------------------------------------------------------------- runners (one full sampling run)

def run_labkit(name, denoiser, x, sigmas, seed=0):
    gen = torch.Generator().manual_seed(seed) if SOLVERS[name].stochastic else None
    return labkit.sample(denoiser, x, sigmas, solver=name, generator=gen)[0]


def run_kdiffusion(kd, name, denoiser, x, sigmas, seed=0):
    torch.manual_seed(seed)
    return getattr(kd, ALGOS[name][0])(denoiser, x, sigmas, disable=True)


def diffusers_scheduler(diffusers, name, steps=STEPS, config=None):
    cls = getattr(diffusers, ALGOS[name][1] if config is None else name)
    sched = cls(**{**SD, **(ALGOS[name][2] if config is None else config)})
    sched.set_timesteps(steps)
    return sched


def run_diffusers(diffusers, name, denoiser, z, steps=STEPS, config=None, seed=0):
    """diffusers' loop from ``sample = init_noise_sigma z``; returns the final labkit state."""
    sched = diffusers_scheduler(diffusers, name, steps, config)
    cls_name = type(sched).__name__
    sample = z * float(sched.init_noise_sigma)
    gen = torch.Generator().manual_seed(seed)
    sigmas = getattr(sched, "sigmas", None)
    for k, t in enumerate(sched.timesteps):
        model_in = sched.scale_model_input(sample, t)
        if sigmas is not None:
            sigma = sigmas[k].to(z.dtype)
        else:
            a = sched.alphas_cumprod[int(t)].to(z.dtype)
            sigma = ((1 - a) / a).sqrt()
        x = model_in * (1 + sigma ** 2).sqrt()
        eps = (x - denoiser(x, sigma.expand(x.shape[0]))) / sigma
        kwargs = {"generator": gen} if "Ancestral" in cls_name or "DDPM" in cls_name else {}
        sample = sched.step(eps, t, sample, **kwargs).prev_sample
    return sample   # the final sigma is 0 for every scheduler used here (alpha = 1)


# ---------------------------------------------------------------- part 1: overhead

def best_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def overhead(kd, diffusers, repeats: int, quick: bool) -> list[dict]:
    # Large batches: 4096 points in 2-D; 64 images of 3x64x64 (786k numbers, 6.3 MB per float64
    # state: enough for the arithmetic to dominate; 4096 images would be 400 MB per state).
    shapes = {"d=2": (2,), "3x64x64": (3, 64, 64)}
    large = {"d=2": 64 if quick else 4096, "3x64x64": 16 if quick else 64}
    sigmas = grids.karras(STEPS, SIGMA_MIN, SIGMA_MAX)
    rows = []
    for shape_name, shape in shapes.items():
        for n in (1, large[shape_name]):
            z = torch.randn(n, *shape, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(0))
            x = SIGMA_MAX * z
            dens = {"cheap": cheap_denoiser}
            if shape == (2,):
                dens["mixture"] = mixture_denoiser
            for den_name, den in dens.items():
                for name in ALGOS:
                    runs = {"labkit": lambda: run_labkit(name, den, x, sigmas)}
                    if kd is not None:
                        runs["k-diffusion"] = lambda: run_kdiffusion(kd, name, den, x, sigmas)
                    if diffusers is not None:
                        runs["diffusers"] = lambda: run_diffusers(diffusers, name, den, z)
                    row = {"shape": shape_name, "n": n, "denoiser": den_name, "solver": name}
                    for peer, fn in runs.items():
                        row[f"{peer}_ms_per_step"] = 1e3 * best_time(fn, repeats) / STEPS
                        row[f"{peer}_peak_mb"] = MIXTURE_SCORE.peak_tensor_bytes(fn) / _MB
                    for peer in ("k-diffusion", "diffusers"):
                        key = f"{peer}_ms_per_step"
                        row[f"ratio_vs_{peer}"] = (row["labkit_ms_per_step"] / row[key]
                                                   if key in row else None)
                    rows.append(row)
                    print(_fmt_overhead(row), flush=True)
    return rows


def _fmt_overhead(r: dict) -> str:
    def ratio(p):
        v = r[f"ratio_vs_{p}"]
        return "not installed" if v is None else f"{v:.2f}"
    return (f"{r['shape']:>8} n={r['n']:<5} {r['denoiser']:>7} {r['solver']:>16}: "
            f"labkit {r['labkit_ms_per_step']:.3f} ms/step, {r['labkit_peak_mb']:.1f} MB; "
            f"ratio vs k-diffusion {ratio('k-diffusion')}, vs diffusers {ratio('diffusers')}"
            + "".join(f"; {p} peak {r[p + '_peak_mb']:.1f} MB"
                      for p in ("k-diffusion", "diffusers") if p + "_peak_mb" in r))


# ---------------------------------------------------------------- part 2: best error at 10 NFE

def mixture_64d() -> labkit.GaussianMixture:
    g = torch.Generator().manual_seed(7)
    means = 2.0 * torch.randn(8, 64, dtype=torch.float64, generator=g)
    variances = 0.05 + 0.3 * torch.rand(8, dtype=torch.float64, generator=g)
    return labkit.GaussianMixture(means, variances)


def reference(den, x, sigma_from):
    flow = reference_flow(den, x, float(sigma_from), 1e-5, rtol=1e-10, atol=1e-10)
    return den(flow.x, torch.full((x.shape[0],), 1e-5, dtype=x.dtype))


def error(out, ref) -> float:
    return float((out - ref).flatten(1).norm(dim=1).mean())


def best_at_budget(kd, diffusers, budget: int, n_points: int) -> dict:
    targets = {"mixture_2d": (mixture_denoiser, 2),
               "mixture_64d": (mixture_64d(), 64)}
    grid_fns = {"karras": lambda n: grids.karras(n, SIGMA_MIN, SIGMA_MAX),
                "loglinear": lambda n: grids.loglinear(n, SIGMA_MIN, SIGMA_MAX)}
    out = {}
    for tname, (den, d) in targets.items():
        z = torch.randn(n_points, d, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(3))
        refs = {}

        def ref_at(s0):
            key = round(float(s0), 12)
            if key not in refs:
                refs[key] = reference(den, z * float(s0), s0)
            return refs[key]

        results = {"labkit": [], "k-diffusion": [], "diffusers": []}
        for gname, gfn in grid_fns.items():
            for name, cls in SOLVERS.items():
                if cls.stochastic:
                    continue
                best = None
                for n in range(2, budget + 1):
                    try:
                        res, info = labkit.sample(den, SIGMA_MAX * z, gfn(n), solver=name)
                    except Exception:  # noqa: BLE001  (solvers that need other options)
                        break
                    if info.nfe > budget:
                        break
                    best = (error(res, ref_at(SIGMA_MAX)), n, info.nfe)
                if best:
                    results["labkit"].append({"solver": name, "grid": gname, "error": best[0],
                                              "steps": best[1], "nfe": best[2]})
            if kd is not None:
                for name in ("euler", "heun", "lms", "dpmpp_2m", "dpm_2"):
                    fn = getattr(kd, f"sample_{name}")
                    best = None
                    for n in range(2, budget + 1):
                        calls = []

                        def model(x_, s_):
                            calls.append(1)
                            return den(x_, s_)
                        res = fn(model, SIGMA_MAX * z, gfn(n), disable=True)
                        if len(calls) > budget:
                            break
                        best = (error(res, ref_at(SIGMA_MAX)), n, len(calls))
                    results["k-diffusion"].append({"solver": f"sample_{name}", "grid": gname,
                                                   "error": best[0], "steps": best[1],
                                                   "nfe": best[2]})
        if diffusers is not None:
            for sched, config, per_step in [
                    ("EulerDiscreteScheduler", {}, 1),
                    ("EulerDiscreteScheduler", {"use_karras_sigmas": True}, 1),
                    ("HeunDiscreteScheduler", {"use_karras_sigmas": True}, 2),
                    ("LMSDiscreteScheduler", {"use_karras_sigmas": True}, 1),
                    ("DDIMScheduler", {"clip_sample": False}, 1),
                    ("DPMSolverMultistepScheduler", {"final_sigmas_type": "zero"}, 1),
                    ("DPMSolverMultistepScheduler", {"final_sigmas_type": "zero",
                                                     "use_karras_sigmas": True}, 1),
                    ("UniPCMultistepScheduler", {}, 1),
                    ("UniPCMultistepScheduler", {"use_karras_sigmas": True}, 1),
                    ("DEISMultistepScheduler", {}, 1)]:
                steps = (budget + per_step - 1) // per_step  # NFE = per_step steps - (per_step - 1)
                s = diffusers_scheduler(diffusers, sched, steps, config)
                sig = getattr(s, "sigmas", None)
                if sig is not None:
                    s0 = float(sig[0])
                else:
                    a = float(s.alphas_cumprod[int(s.timesteps[0])])
                    s0 = math.sqrt((1 - a) / a)
                alpha0 = 1.0 if sched in SIGMA_STATE else 1 / math.sqrt(1 + s0 ** 2)
                # Start at labkit's x = s0 z, i.e. sample = alpha_0 s0 z.
                z_in = z * (alpha0 * s0 / float(s.init_noise_sigma))
                res_x = run_diffusers(diffusers, sched, den, z_in, steps, config)
                results["diffusers"].append({"solver": sched, "grid": json.dumps(config),
                                             "error": error(res_x, ref_at(s0)),
                                             "steps": steps, "nfe": steps * per_step
                                             - (per_step - 1), "sigma_max": s0})
        out[tname] = results
        for peer, rows in results.items():
            if rows:
                b = min(rows, key=lambda r: r["error"])
                print(f"{tname}: best {peer}: {b['solver']} on {b['grid']} "
                      f"({b['steps']} steps, {b['nfe']} NFE): mean error {b['error']:.3e}")
            else:
                print(f"{tname}: {peer}: not installed")
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches (64 points, 16 images)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=int, default=10)
    parser.add_argument("--out", help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    kd, diffusers = load_peers()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64; "
          f"k-diffusion: {'not installed' if kd is None else kd.__version__}; "
          f"diffusers: {'not installed' if diffusers is None else diffusers.__version__}")
    rows = overhead(kd, diffusers, 1 if args.quick else args.repeats, args.quick)
    best = best_at_budget(kd, diffusers, args.budget, 64 if args.quick else 256)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(),
              "k_diffusion": None if kd is None else kd.__version__,
              "diffusers": None if diffusers is None else diffusers.__version__,
              "quick": args.quick, "overhead": rows, "best_at_budget": best}
    if args.out:
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
