"""Write ``diffusers_reference.json``: diffusers' scheduler outputs for labkit's conformance test.

For each pair in ``PAIRS`` (labkit solver name and options <-> diffusers scheduler and config)
this script runs the diffusers scheduler loop (``scale_model_input``, model call, ``step``) with an
eps-prediction (or x0 / v) "model" built from the exact 2-D mixture denoiser of
``make_kdiffusion_reference.py`` (its constants and ``mixture_denoiser``, imported, not copied),
and records the sigma grid diffusers actually integrated over, the initial state, the output, the
number of model calls and the diffusers version.

Converting between diffusers and labkit (``x_t = alpha_t (x0 + sigma eps)``, labkit's state
``x = x_t / alpha_t``, ``alpha_t = 1 / sqrt(1 + sigma^2)``):

- the noise level of model call ``k`` is the scheduler's own: ``scheduler.sigmas[k]`` where the
  scheduler keeps ``sigmas`` (its ``step_index`` equals ``k``; asserted), else
  ``sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t])`` at the integer timestep ``t`` (DDIM,
  DDPM). The timestep ``t`` handed to a real network is only a rounded stand-in for it, so the
  exact model here ignores ``t``;
- the model input is ``x_t`` (VP-state schedulers: DDIM, DDPM, DPM-Solver, UniPC, DEIS) or
  ``scale_model_input(sample) = sample / sqrt(1 + sigma^2)`` (sigma-state "Karras-style"
  schedulers: Euler, Heun, LMS, Euler ancestral, whose ``sample`` already is labkit's ``x``);
  both are ``alpha_k x``, so ``x = x_in sqrt(1 + sigma_k^2)``;
- the model returns ``eps = (x - D(x, sigma_k)) / sigma_k`` (``prediction_type="epsilon"``), or
  ``D`` (``"sample"``) or ``v = alpha_k (eps - sigma_k D)`` (``"v_prediction"``);
- the initial ``sample`` is ``init_noise_sigma * z`` (``z`` seeded ``X_SEED``), as pipelines do;
  labkit starts from ``x = sample / alpha_0`` (sigma-state: ``x = sample``), and the output is
  compared as ``sample_N / alpha_N`` (``alpha_N = 1`` at a final ``sigma = 0``).

Two precisions are recorded for every pair:

- ``"float64"``: diffusers' algorithm in float64. Several schedulers cast the sample to float32
  inside ``step`` (Euler, Euler ancestral, DPM-Solver multistep) and all build their tables in
  float32; here the scheduler modules see a ``torch`` whose ``float32`` is ``float64`` and every
  floating tensor of the scheduler is cast to float64 after ``set_timesteps``. The grid values
  themselves are whatever the scheduler holds (float32-rounded where it builds them with numpy
  ``float32``), and labkit is run on exactly that grid. This isolates the algorithm: the test
  holds labkit to ~1e-12 here;
- ``"native"``: diffusers as shipped, float32 sample (what a pipeline does); the gap to labkit's
  float64 run is float32 round-off, recorded as ``max_abs_diff_vs_float64``.

Stochastic pairs (Euler ancestral, DDPM) pass ``torch.Generator().manual_seed(NOISE_SEED)`` to
``step``; diffusers draws ``randn(model_output.shape, generator, dtype)`` once per step after the
model call (DDPM: not on the last step; Euler ancestral: also on the last step, where it is
multiplied by ``sigma_up = 0``), labkit draws ``randn(x.shape, generator, dtype)`` after the
denoiser call on every step but the one to 0, so the streams coincide and the stochastic samplers
are compared in full, noise included.

Run (diffusers is never a labkit dependency)::

    python3 -m venv /tmp/dvenv && /tmp/dvenv/bin/pip install torch diffusers scipy
    PYTHONPATH=. /tmp/dvenv/bin/python tests/solvers/make_diffusers_reference.py

To add a pair, add one ``Pair(...)`` line to ``PAIRS`` and rerun.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import make_kdiffusion_reference as kd  # noqa: E402  (the exact denoiser and its constants)

FIXTURE = Path(__file__).with_name("diffusers_reference.json")
X_SEED = 2024
NOISE_SEED = 4321
N_POINTS = 6
STEPS = 10
# Stable Diffusion's training schedule (scaled_linear betas): sigma from 0.029 to 14.6.
SD = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
      "beta_schedule": "scaled_linear"}


@dataclass(frozen=True)
class Pair:
    """One conformance case: a labkit solver and the diffusers scheduler that should match it.

    ``state`` is ``"sigma"`` for schedulers whose sample is the unscaled ``x`` (Karras-style) and
    ``"vp"`` for those whose sample is ``x_t = alpha x``. ``sample_kwargs`` go to
    ``labkit.sample`` (e.g. ``denoise_to_zero``).
    """

    key: str
    solver: str
    options: dict = field(default_factory=dict)
    scheduler: str = ""
    config: dict = field(default_factory=dict)
    state: str = "vp"
    prediction: str = "epsilon"
    stochastic: bool = False
    sample_kwargs: dict = field(default_factory=dict)
    expect: str = "match"          # "gap": a documented algorithmic difference, gap recorded
    note: str = ""


PAIRS = [
    Pair("euler", "euler", {}, "EulerDiscreteScheduler", {}, "sigma"),
    Pair("euler_karras_v", "euler", {}, "EulerDiscreteScheduler",
         {"use_karras_sigmas": True, "prediction_type": "v_prediction"}, "sigma", "v_prediction"),
    Pair("heun", "heun", {}, "HeunDiscreteScheduler", {}, "sigma"),
    Pair("heun_karras", "heun", {}, "HeunDiscreteScheduler", {"use_karras_sigmas": True}, "sigma"),
    Pair("lms", "lms", {"order": 4}, "LMSDiscreteScheduler", {}, "sigma"),
    Pair("lms_karras", "lms", {"order": 4}, "LMSDiscreteScheduler", {"use_karras_sigmas": True},
         "sigma"),
    Pair("ddim", "ddim", {}, "DDIMScheduler",
         {"clip_sample": False, "set_alpha_to_one": True}),
    Pair("ddim_trailing_x0", "ddim", {}, "DDIMScheduler",
         {"clip_sample": False, "timestep_spacing": "trailing", "prediction_type": "sample"},
         prediction="sample"),
    Pair("dpmpp_2m", "dpmpp_2m", {"lower_order_final": True}, "DPMSolverMultistepScheduler",
         {"algorithm_type": "dpmsolver++", "solver_order": 2, "final_sigmas_type": "zero"}),
    Pair("dpmpp_2m_karras", "dpmpp_2m", {"lower_order_final": True},
         "DPMSolverMultistepScheduler",
         {"algorithm_type": "dpmsolver++", "solver_order": 2, "final_sigmas_type": "zero",
          "use_karras_sigmas": True}),
    Pair("dpmpp_2m_no_lower_order_final", "dpmpp_2m", {}, "DPMSolverMultistepScheduler",
         {"algorithm_type": "dpmsolver++", "solver_order": 2, "final_sigmas_type": "zero",
          "lower_order_final": False}),
    Pair("unipc_bh2", "unipc", {"order": 2, "variant": "bh2", "lower_order_final": True},
         "UniPCMultistepScheduler", {"solver_order": 2, "solver_type": "bh2"}),
    # bh1 with final_sigmas_type="zero" gives NaN in diffusers (B(h) = -h = -inf times a zero
    # residual on the last step), so this pair ends at sigma_min > 0 instead.
    Pair("unipc_bh1", "unipc", {"order": 2, "variant": "bh1", "lower_order_final": True},
         "UniPCMultistepScheduler", {"solver_order": 2, "solver_type": "bh1",
                                     "final_sigmas_type": "sigma_min",
                                     "timestep_spacing": "trailing"}),
    Pair("unipc_bh2_order3", "unipc", {"order": 3, "variant": "bh2", "lower_order_final": True},
         "UniPCMultistepScheduler", {"solver_order": 3, "solver_type": "bh2"}),
    Pair("deis_order2", "deis", {"order": 2, "variable": "log_rho", "lower_order_final": True},
         "DEISMultistepScheduler", {"solver_order": 2},
         note="diffusers fits eps by a polynomial in log(rho) = log(sigma): labkit's "
              "variable='log_rho' (variable='rho' is k-diffusion's lms, 't' the paper's tAB)"),
    Pair("euler_ancestral", "euler_ancestral", {}, "EulerAncestralDiscreteScheduler", {},
         "sigma", stochastic=True),
    Pair("ddpm", "ddpm", {"variance": "posterior"}, "DDPMScheduler",
         {"clip_sample": False, "variance_type": "fixed_small"}, stochastic=True),
    Pair("ddpm_as_euler_ancestral", "euler_ancestral", {}, "DDPMScheduler",
         {"clip_sample": False, "variance_type": "fixed_small"}, stochastic=True),
]


def load_fixture() -> dict:
    """The stored diffusers outputs (``diffusers_reference.json``) as a dict."""
    return json.loads(FIXTURE.read_text())


def initial_noise(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The standard normal ``z`` of shape ``(N_POINTS, 2)`` every pair starts from."""
    return torch.randn(N_POINTS, len(kd.MEANS[0]), dtype=torch.float64,
                       generator=torch.Generator().manual_seed(X_SEED)).to(dtype)


class _Float64Torch(types.ModuleType):
    """``torch`` with ``float32`` meaning ``float64`` (for the float64 run of diffusers)."""

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str) -> Any:
        return torch.float64 if name == "float32" else getattr(torch, name)


@contextlib.contextmanager
def _float64_module(module: types.ModuleType):
    saved = module.torch
    module.torch = _Float64Torch()
    try:
        yield
    finally:
        module.torch = saved


def _scheduler(pair: Pair, float64: bool):
    import diffusers
    cls = getattr(diffusers, pair.scheduler)
    module = importlib.import_module(cls.__module__)
    ctx = _float64_module(module) if float64 else contextlib.nullcontext()
    return cls, module, ctx


def _sigma_of_call(sched, k: int, t) -> torch.Tensor:
    """The noise level (float64 0-d tensor) the scheduler assumes for model call ``k``."""
    if getattr(sched, "sigmas", None) is not None:
        if sched.step_index is not None and sched.step_index != k:
            raise AssertionError(f"step_index {sched.step_index} != loop index {k}")
        return sched.sigmas[k].double()
    a = sched.alphas_cumprod[int(t)].double()
    return ((1 - a) / a).sqrt()


def _grid(sched, pair: Pair) -> torch.Tensor:
    """The sigma grid (float64) the scheduler integrates over, final level included."""
    if getattr(sched, "sigmas", None) is not None:
        s = sched.sigmas.double()
        keep = torch.ones_like(s, dtype=torch.bool)
        keep[1:] = s[1:] != s[:-1]                 # Heun repeats its interior sigmas
        return s[keep]
    a = sched.alphas_cumprod.double()
    ts = [int(t) for t in sched.timesteps]
    if pair.scheduler == "DDIMScheduler":
        step = sched.config.num_train_timesteps // sched.num_inference_steps
        final = sched.final_alpha_cumprod.double()
        prev = [a[t - step] if t - step >= 0 else final for t in ts]
    else:                                            # DDPMScheduler
        prev = [a[int(sched.previous_timestep(t))] if int(sched.previous_timestep(t)) >= 0
                else torch.ones((), dtype=torch.float64) for t in ts]
    levels = [a[t] for t in ts] + [prev[-1]]
    if any(abs(float(p) - float(a_)) > 0 for p, a_ in zip(prev[:-1], levels[1:-1])):
        raise AssertionError("the scheduler's previous timesteps are not its next timesteps")
    acp = torch.stack(levels)
    return ((1 - acp) / acp).sqrt()


def run_diffusers(pair: Pair, float64: bool = True) -> dict:
    """Run one pair's scheduler loop; return grid, initial/final labkit state and NFE."""
    cls, module, ctx = _scheduler(pair, float64)
    dtype = torch.float64 if float64 else torch.float32
    with ctx, torch.no_grad():
        sched = cls(**{**SD, **pair.config})
        sched.set_timesteps(STEPS)
        if float64:
            for name, value in list(vars(sched).items()):
                if isinstance(value, torch.Tensor) and value.is_floating_point() \
                        and name != "timesteps":
                    setattr(sched, name, value.double())
        grid = _grid(sched, pair)
        sample = (initial_noise() * float(sched.init_noise_sigma)).to(dtype)
        alpha0 = 1.0 if pair.state == "sigma" else (1 + grid[0] ** 2).rsqrt()
        x_init = sample.double() / alpha0
        generator = torch.Generator().manual_seed(NOISE_SEED) if pair.stochastic else None
        calls = 0
        for k, t in enumerate(sched.timesteps):
            model_in = sched.scale_model_input(sample, t)
            sigma = _sigma_of_call(sched, k, t)
            x = model_in.double() * (1 + sigma ** 2).sqrt()
            den = kd.mixture_denoiser(x, sigma.expand(x.shape[0]))
            calls += 1
            eps = (x - den) / sigma
            out = {"epsilon": eps, "sample": den,
                   "v_prediction": (eps - sigma * den) * (1 + sigma ** 2).rsqrt()}[pair.prediction]
            kwargs = {"generator": generator} if pair.stochastic else {}
            sample = sched.step(out.to(dtype), t, sample, **kwargs).prev_sample
        alpha_n = 1.0 if pair.state == "sigma" else (1 + grid[-1] ** 2).rsqrt()
        x_out = sample.double() / alpha_n
    return {"grid": grid.tolist(), "x_init": x_init.tolist(), "x": x_out.tolist(), "nfe": calls,
            "sample_dtype": str(dtype).replace("torch.", "")}


def labkit_solver_class(name: str):
    """The labkit solver class named ``name``: from the registry, else (for a solver whose
    module exists but is not registered yet) from ``labkit.solvers.<name>``; None if neither."""
    from labkit.solvers import SOLVERS, Solver
    if name in SOLVERS:
        return SOLVERS[name]
    try:
        module = importlib.import_module(f"labkit.solvers.{name}")
    except ImportError:
        return None
    found = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, Solver)
             and getattr(c, "name", None) == name]
    return found[0] if found else None


def run_labkit(pair: Pair, grid, x_init) -> tuple[torch.Tensor, int] | None:
    """labkit's output and NFE on the same grid and start (None if the solver is unknown)."""
    from labkit.solvers import sample
    cls = labkit_solver_class(pair.solver)
    if cls is None:
        return None
    gen = torch.Generator().manual_seed(NOISE_SEED) if pair.stochastic else None
    out, info = sample(kd.mixture_denoiser, torch.tensor(x_init, dtype=torch.float64),
                       torch.tensor(grid, dtype=torch.float64), solver=cls(**pair.options),
                       generator=gen, **pair.sample_kwargs)
    return out, info.nfe


def main() -> None:
    import diffusers
    record = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "denoiser": {"means": kd.MEANS, "variances": kd.VARIANCES, "weights": kd.WEIGHTS},
        "x_seed": X_SEED, "noise_seed": NOISE_SEED, "steps": STEPS, "train_schedule": SD,
        "pairs": {},
    }
    for pair in PAIRS:
        entry = {"solver": pair.solver, "options": pair.options, "scheduler": pair.scheduler,
                 "config": pair.config, "state": pair.state, "prediction": pair.prediction,
                 "stochastic": pair.stochastic, "sample_kwargs": pair.sample_kwargs,
                 "expect": pair.expect, "note": pair.note}
        ref64 = run_diffusers(pair, float64=True)
        native = run_diffusers(pair, float64=False)
        entry["float64"] = ref64
        entry["native"] = native
        lab = run_labkit(pair, ref64["grid"], ref64["x_init"])
        from labkit.solvers import SOLVERS
        entry["labkit_registered_when_written"] = pair.solver in SOLVERS
        if lab is not None:
            expected = torch.tensor(ref64["x"], dtype=torch.float64)
            entry["max_abs_diff_labkit_vs_float64"] = float((lab[0] - expected).abs().max())
            entry["labkit_nfe"] = lab[1]
            lab_n = run_labkit(pair, native["grid"], native["x_init"])
            entry["max_abs_diff_labkit_vs_native"] = float(
                (lab_n[0] - torch.tensor(native["x"], dtype=torch.float64)).abs().max())
        record["pairs"][pair.key] = entry
        gap = entry.get("max_abs_diff_labkit_vs_float64", "labkit solver not registered")
        print(f"{pair.key:32s} nfe={ref64['nfe']:3d} labkit-vs-diffusers(float64)={gap}"
              f"  vs native={entry.get('max_abs_diff_labkit_vs_native', '-')}")
    FIXTURE.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {FIXTURE} (diffusers {record['diffusers_version']})")


if __name__ == "__main__":
    main()
