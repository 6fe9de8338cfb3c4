"""Write ``kdiffusion_adaptive_reference.json``: k-diffusion's ``sample_dpm_adaptive`` outputs.

Reuses the denoiser, seeded ``x`` and loader of ``make_kdiffusion_reference.py`` (a closed-form
2-component Gaussian mixture in 2-D, float64) and runs k-diffusion 0.1.1.post1's
``sample_dpm_adaptive(model, x, sigma_min, sigma_max, order=..., return_info=True, ...)`` for
each case in ``CASES``, recording the output, the number of denoiser calls and k-diffusion's
``info`` (trial steps, nfe, accepted, rejected). labkit's ``DPMAdaptive`` reproduces a case on
the grid ``[sigma_max, sigma_min]``.

``sigma_min``, ``sigma_max``, ``rtol`` and ``atol`` are passed as float64 0-d tensors:
k-diffusion wraps them in ``torch.tensor(...)``, which turns a Python float into float32, so
with plain floats its ``lambda_`` range and tolerances are rounded to float32 (outputs then
differ from the float64 computation by ~1e-9 on this problem). Run as::

    python tests/solvers/make_kdiffusion_adaptive_reference.py /tmp/kd/k_diffusion/sampling.py

(or with ``KDIFFUSION_SAMPLING`` set; see ``make_kdiffusion_reference.py`` for the wheel).
"""

from __future__ import annotations

import json
import os
import sys
import types
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import make_kdiffusion_reference as base  # noqa: E402  (sibling script)

FIXTURE = Path(__file__).with_name("kdiffusion_adaptive_reference.json")
SIGMA_MIN, SIGMA_MAX = 0.05, base.SIGMA_SCALE
# key -> sample_dpm_adaptive options: k-diffusion's defaults, tight tolerances (many steps,
# rejections), and a full PID controller with a large first step and a strict acceptance.
DEFAULT_RTOL, DEFAULT_ATOL = 0.05, 0.0078           # sample_dpm_adaptive's defaults
CASES = {
    "order3_default": {"order": 3},
    "order2_default": {"order": 2},
    "order3_tight": {"order": 3, "rtol": 1e-4, "atol": 1e-5},
    "order2_tight": {"order": 2, "rtol": 1e-3, "atol": 1e-4},
    "order3_pid": {"order": 3, "rtol": 0.01, "atol": 0.001, "h_init": 0.5, "pcoeff": 0.3,
                   "icoeff": 0.5, "dcoeff": 0.1, "accept_safety": 0.95},
    "order2_pid": {"order": 2, "rtol": 0.02, "atol": 0.002, "h_init": 0.01, "pcoeff": 0.2,
                   "icoeff": 0.6, "dcoeff": 0.05, "accept_safety": 0.7},
}


def load_fixture() -> dict:
    """The stored outputs (``kdiffusion_adaptive_reference.json``) as a dict."""
    return json.loads(FIXTURE.read_text())


def run_reference(sampling: types.ModuleType, x: torch.Tensor) -> dict:
    """k-diffusion's output, denoiser calls and ``info`` for every case."""
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    out = {}
    for key, options in CASES.items():
        calls = []

        def model(x_, sigma_):
            calls.append(1)
            return base.mixture_denoiser(x_, sigma_)

        options = {"rtol": DEFAULT_RTOL, "atol": DEFAULT_ATOL, **options}
        kwargs = {k: (f64(v) if k in ("rtol", "atol") else v) for k, v in options.items()}
        result, info = sampling.sample_dpm_adaptive(model, x.clone(), f64(SIGMA_MIN),
                                                    f64(SIGMA_MAX), disable=True,
                                                    return_info=True, **kwargs)
        out[key] = {"x": result.tolist(), "nfe": len(calls), "info": dict(info)}
    return out


def main(argv: list[str]) -> None:
    path = argv[1] if len(argv) > 1 else os.environ.get("KDIFFUSION_SAMPLING")
    if not path:
        raise SystemExit(__doc__)
    sampling = base.load_sampling(path)
    x = base.inputs()["x"]
    # torch.tensor(tensor) inside k-diffusion warns about copy-constructing; harmless here.
    warnings.filterwarnings("ignore", message="To copy construct from a tensor")
    record = {
        "k_diffusion_version": sampling.__version__,
        "torch_version": torch.__version__,
        "denoiser": {"means": base.MEANS, "variances": base.VARIANCES, "weights": base.WEIGHTS},
        "x_seed": base.X_SEED,
        "x": x.tolist(),
        "sigma_min": SIGMA_MIN,
        "sigma_max": SIGMA_MAX,
        "cases": CASES,
        "outputs": run_reference(sampling, x),
    }
    FIXTURE.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {FIXTURE} (k-diffusion {record['k_diffusion_version']})")


if __name__ == "__main__":
    main(sys.argv)
