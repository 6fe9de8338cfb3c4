"""Write ``kdiffusion_reference.json``: k-diffusion's own outputs for labkit's conformance test.

Runs k-diffusion's ``sample_euler``, ``sample_heun``, ``sample_dpm_2``, ``sample_lms`` (orders
1-4) and ``sample_dpmpp_2m``, and the stochastic ``sample_euler`` / ``sample_heun`` with EDM
churn and ``sample_euler_ancestral`` (``STOCHASTIC``, each run right after
``torch.manual_seed(NOISE_SEED)``) on a closed-form denoiser (a 2-component isotropic Gaussian
mixture in 2-D, written inline below in float64 so that no labkit code is involved on the reference
side), a seeded ``x`` and two grids: k-diffusion's own Karras grid (8 steps, ending in 0) and a
short custom grid without a final 0 and with uneven step ratios. It records the outputs, the
number of denoiser calls, the inputs (seed, ``x`` and grids as exact float64 values) and
k-diffusion's version.

k-diffusion is never a labkit dependency. Only its ``k_diffusion/sampling.py`` is needed, loaded
by path with stand-ins for what it imports (``utils``, ``torchsde``, ``torchdiffeq``,
``tqdm``)::

    pip download k-diffusion==0.1.1.post1 --no-deps -d /tmp/kd
    cd /tmp/kd && unzip -o k_diffusion-0.1.1.post1-py3-none-any.whl
    python tests/solvers/make_kdiffusion_reference.py /tmp/kd/k_diffusion/sampling.py

(or set ``KDIFFUSION_SAMPLING=/tmp/kd/k_diffusion/sampling.py`` and give no argument). The
same environment variable enables the live test in ``test_kdiffusion_conformance.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import types
from pathlib import Path

import torch

FIXTURE = Path(__file__).with_name("kdiffusion_reference.json")
X_SEED = 1234
N_POINTS, DIM = 6, 2
SIGMA_SCALE = 10.0                        # x = SIGMA_SCALE * randn, the Karras grid's sigma_max
MEANS = [[-1.0, 0.5], [1.5, -0.25]]
VARIANCES = [0.3, 0.1]                     # isotropic component variances s_k^2
WEIGHTS = [0.35, 0.65]
CUSTOM_GRID = [6.0, 3.0, 2.2, 0.9, 0.5, 0.12]
LMS_ORDERS = (1, 2, 3, 4)
# Stochastic samplers: key -> (k-diffusion sampler, options). The window case churns only on
# part of the grid (noise is still drawn at every step there) and hits the sqrt(2) - 1 cap.
NOISE_SEED = 4321
STOCHASTIC = {
    "euler_churn": ("sample_euler", {"s_churn": 2.0}),
    "euler_churn_window": ("sample_euler",
                           {"s_churn": 40.0, "s_tmin": 0.3, "s_tmax": 3.0, "s_noise": 1.007}),
    "heun_churn": ("sample_heun", {"s_churn": 2.0}),
    "heun_churn_window": ("sample_heun",
                          {"s_churn": 40.0, "s_tmin": 0.3, "s_tmax": 3.0, "s_noise": 1.007}),
    "euler_ancestral": ("sample_euler_ancestral", {}),
    "euler_ancestral_eta": ("sample_euler_ancestral", {"eta": 0.6, "s_noise": 0.9}),
}


def live_sampling():
    """k-diffusion's sampling module for a live comparison, or skip the calling test.

    From ``KDIFFUSION_SAMPLING`` (a path to ``k_diffusion/sampling.py``) if set, else from a full
    k-diffusion install.
    """
    import pytest
    path = os.environ.get("KDIFFUSION_SAMPLING")
    if path:
        return load_sampling(path)
    try:
        from k_diffusion import sampling   # a full k-diffusion install
    except Exception:  # noqa: BLE001  (absent, or present with missing optional deps)
        pytest.skip("k-diffusion not available: set KDIFFUSION_SAMPLING=.../sampling.py")
    return sampling


def load_fixture() -> dict:
    """The stored k-diffusion outputs (``kdiffusion_reference.json``) as a dict."""
    return json.loads(FIXTURE.read_text())


def mixture_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Exact ``E[x0 | x0 + sigma eps = x]`` of ``sum_k w_k N(mu_k, s_k^2 I)``, sigma per row.

    ``E[x0 | x] = sum_k r_k(x) (mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k))`` with posterior
    weights ``r_k`` proportional to ``w_k N(x; mu_k, (s_k^2 + sigma^2) I)``.
    """
    mu = torch.tensor(MEANS, dtype=x.dtype, device=x.device)             # (K, d)
    s2 = torch.tensor(VARIANCES, dtype=x.dtype, device=x.device)         # (K,)
    w = torch.tensor(WEIGHTS, dtype=x.dtype, device=x.device)
    v = s2 + sigma.reshape(-1, 1) ** 2                                    # (n, K)
    diff = x[:, None, :] - mu                                             # (n, K, d)
    logr = w.log() - (diff ** 2).sum(-1) / (2 * v) - x.shape[1] / 2 * v.log()
    r = torch.softmax(logr, dim=1)
    means = mu + (s2 / v)[..., None] * diff
    return (r[..., None] * means).sum(1)


def load_sampling(path: str | os.PathLike) -> types.ModuleType:
    """Load k-diffusion's ``sampling.py`` by path, with minimal stand-ins for its imports."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"k-diffusion sampling.py not found at {path}")
    pkg = types.ModuleType("_kd_ref")
    pkg.__path__ = []
    utils = types.ModuleType("_kd_ref.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    utils.append_zero = lambda x: torch.cat([x, x.new_zeros([1])])
    stubs = {"_kd_ref": pkg, "_kd_ref.utils": utils}
    for name in ("torchsde", "torchdiffeq"):      # only BrownianTree / log_likelihood use them
        if importlib.util.find_spec(name) is None:
            stub = types.ModuleType(name)
            stub.odeint = stub.BrownianInterval = None
            stubs[name] = stub
    if importlib.util.find_spec("tqdm") is None:
        tqdm = types.ModuleType("tqdm")
        tqdm.auto = types.ModuleType("tqdm.auto")
        tqdm.auto.trange = lambda *a, disable=None, **k: range(*a)
        tqdm.auto.tqdm = lambda it, *a, **k: it
        stubs.update({"tqdm": tqdm, "tqdm.auto": tqdm.auto})
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location("_kd_ref.sampling", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    module.__version__ = _version_near(path)
    return module


def _version_near(path: Path) -> str:
    """k-diffusion's version from the wheel's ``*.dist-info`` or the sdist's ``PKG-INFO``."""
    for meta in [*path.parent.parent.glob("k_diffusion-*.dist-info/METADATA"),
                 path.parent.parent / "PKG-INFO", path.parent.parent / "setup.cfg"]:
        if meta.is_file():
            m = re.search(r"^[Vv]ersion\s*[:=]\s*(\S+)", meta.read_text(), re.M)
            if m:
                return m.group(1)
    return "unknown"


def inputs(sampling: types.ModuleType | None = None) -> dict:
    """The seeded ``x`` and the two grids (the Karras grid from k-diffusion if given)."""
    x = SIGMA_SCALE * torch.randn(N_POINTS, DIM, dtype=torch.float64,
                                  generator=torch.Generator().manual_seed(X_SEED))
    grids = {"custom": torch.tensor(CUSTOM_GRID, dtype=torch.float64)}
    if sampling is not None:
        grids["karras"] = sampling.get_sigmas_karras(8, 0.02, SIGMA_SCALE).double()
    return {"x": x, "grids": grids}


def run_reference(sampling: types.ModuleType, x: torch.Tensor, sigmas: torch.Tensor) -> dict:
    """k-diffusion's outputs and NFE for every sampler on one grid."""
    samplers = {"euler": (sampling.sample_euler, {}), "heun": (sampling.sample_heun, {}),
                "dpm_2": (sampling.sample_dpm_2, {}), "dpmpp_2m": (sampling.sample_dpmpp_2m, {})}
    samplers.update({f"lms_order{q}": (sampling.sample_lms, {"order": q}) for q in LMS_ORDERS})
    out = {}
    for key, (fn, kwargs) in samplers.items():
        calls = []

        def model(x_, sigma_):
            calls.append(1)
            return mixture_denoiser(x_, sigma_)

        result = fn(model, x.clone(), sigmas, disable=True, **kwargs)
        out[key] = {"x": result.tolist(), "nfe": len(calls)}
    return out


def run_stochastic_reference(sampling: types.ModuleType, x: torch.Tensor,
                             sigmas: torch.Tensor) -> dict:
    """k-diffusion's outputs and NFE for the stochastic samplers, noise from the global CPU RNG
    seeded ``NOISE_SEED`` right before each run (``torch.randn_like`` in k-diffusion)."""
    out = {}
    for key, (fn_name, kwargs) in STOCHASTIC.items():
        calls = []

        def model(x_, sigma_):
            calls.append(1)
            return mixture_denoiser(x_, sigma_)

        torch.manual_seed(NOISE_SEED)
        result = getattr(sampling, fn_name)(model, x.clone(), sigmas, disable=True, **kwargs)
        out[key] = {"x": result.tolist(), "nfe": len(calls)}
    return out


def main(argv: list[str]) -> None:
    path = argv[1] if len(argv) > 1 else os.environ.get("KDIFFUSION_SAMPLING")
    if not path:
        raise SystemExit(__doc__)
    sampling = load_sampling(path)
    data = inputs(sampling)
    record = {
        "k_diffusion_version": sampling.__version__,
        "torch_version": torch.__version__,
        "denoiser": {"means": MEANS, "variances": VARIANCES, "weights": WEIGHTS},
        "x_seed": X_SEED,
        "x": data["x"].tolist(),
        "grids": {k: v.tolist() for k, v in data["grids"].items()},
        "outputs": {k: run_reference(sampling, data["x"], v) for k, v in data["grids"].items()},
        "stochastic": {
            "noise_seed": NOISE_SEED,
            "samplers": {k: {"sampler": fn, "options": kw} for k, (fn, kw) in STOCHASTIC.items()},
            "outputs": {k: run_stochastic_reference(sampling, data["x"], v)
                        for k, v in data["grids"].items()},
        },
    }
    FIXTURE.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {FIXTURE} (k-diffusion {record['k_diffusion_version']})")


if __name__ == "__main__":
    main(sys.argv)
