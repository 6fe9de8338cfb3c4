"""Write ``kdiffusion_sde_reference.json``: k-diffusion's stochastic DPM-Solver++ outputs.

Runs k-diffusion 0.1.1.post1's ``sample_dpmpp_2s_ancestral``, ``sample_dpmpp_sde``,
``sample_dpmpp_2m_sde`` and ``sample_dpmpp_3m_sde`` (``SAMPLERS``: each with its defaults and
with other options) on the denoiser, ``x`` and grids of ``make_kdiffusion_reference.py``
(imported, not copied), and records outputs and denoiser-call counts. The noise of each run
(``NOISE``) is one of

- ``global_seed``: k-diffusion's default ``randn_like`` after ``torch.manual_seed(NOISE_SEED)``
  (``sample_dpmpp_2s_ancestral``);
- ``randn_like``: the same stream passed as ``noise_sampler=default_noise_sampler(x)``
  (``sample_dpmpp_2m_sde`` / ``sample_dpmpp_3m_sde``, whose default is a torchsde Brownian tree
  with its own RNG; the steps' increments are disjoint, so the law is the same);
- ``call_order``: :func:`call_order_noise_sampler`, one ``randn`` of a CPU generator seeded
  ``NOISE_SEED`` per call; labkit's test passes the same sampler;
- ``brownian_law``: :func:`brownian_law_noise_sampler`, the law of k-diffusion's
  ``BrownianTreeNoiseSampler`` for ``sample_dpmpp_sde`` written with a seeded generator; labkit's
  default noise (a generator seeded ``NOISE_SEED``) must give the same numbers.

Labkit reproduces the first two with ``generator=torch.Generator().manual_seed(NOISE_SEED)``.
Usage (see ``make_kdiffusion_reference.py`` for getting k-diffusion)::

    python tests/solvers/make_kdiffusion_sde_reference.py /tmp/kd/k_diffusion/sampling.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

import make_kdiffusion_reference as ref

FIXTURE = Path(__file__).with_name("kdiffusion_sde_reference.json")
NOISE_SEED = ref.NOISE_SEED
# key -> (k-diffusion sampler, options, noise). "big_eta" caps sigma_up at sigma_next on the
# steps with sigma_next / sigma <= 0.49, where sigma_down = 0 (the Euler branch); both grids
# have such steps and others.
SAMPLERS = {
    "dpmpp_2s_ancestral": ("sample_dpmpp_2s_ancestral", {}, "global_seed"),
    "dpmpp_2s_ancestral_eta": ("sample_dpmpp_2s_ancestral", {"eta": 0.6, "s_noise": 0.9},
                               "global_seed"),
    "dpmpp_2s_ancestral_big_eta": ("sample_dpmpp_2s_ancestral", {"eta": 1.15}, "global_seed"),
    "dpmpp_sde": ("sample_dpmpp_sde", {}, "call_order"),
    "dpmpp_sde_r": ("sample_dpmpp_sde", {"eta": 0.6, "s_noise": 1.1, "r": 1 / 3}, "call_order"),
    "dpmpp_sde_brownian": ("sample_dpmpp_sde", {}, "brownian_law"),
    "dpmpp_sde_brownian_r": ("sample_dpmpp_sde", {"eta": 0.8, "r": 0.7}, "brownian_law"),
    "dpmpp_2m_sde": ("sample_dpmpp_2m_sde", {}, "randn_like"),
    "dpmpp_2m_sde_heun": ("sample_dpmpp_2m_sde",
                          {"solver_type": "heun", "eta": 0.7, "s_noise": 1.1}, "randn_like"),
    "dpmpp_3m_sde": ("sample_dpmpp_3m_sde", {}, "randn_like"),
    "dpmpp_3m_sde_eta": ("sample_dpmpp_3m_sde", {"eta": 0.5, "s_noise": 0.9}, "randn_like"),
}


def load_fixture() -> dict:
    """The stored outputs (``kdiffusion_sde_reference.json``) as a dict."""
    return json.loads(FIXTURE.read_text())


def call_order_noise_sampler(x: torch.Tensor, seed: int = NOISE_SEED):
    """``noise_sampler(sigma, sigma_next)``: a fresh ``randn`` of ``x``'s shape per call, from a
    CPU generator seeded ``seed`` (the arguments are ignored)."""
    g = torch.Generator().manual_seed(seed)
    return lambda sigma, sigma_next: torch.randn(x.shape, generator=g, dtype=x.dtype)


def brownian_law_noise_sampler(x: torch.Tensor, seed: int = NOISE_SEED):
    """The law of ``BrownianTreeNoiseSampler`` for ``sample_dpmpp_sde``'s two calls per step.

    A call ``(sigma, sigma_mid)`` draws ``z_1``; the next call ``(sigma, sigma_next)`` draws
    ``z_B`` and returns ``sqrt(a / (a + b)) z_1 + sqrt(b / (a + b)) z_B`` with
    ``a = sigma - sigma_mid``, ``b = sigma_mid - sigma_next``: the normalised increment over
    ``[sigma_next, sigma]`` of the Brownian path whose increment over ``[sigma_mid, sigma]`` was
    ``z_1``. Written here without labkit (an independent statement of the documented law).
    """
    g = torch.Generator().manual_seed(seed)
    state: dict = {}

    def sampler(sigma, sigma_next):
        z = torch.randn(x.shape, generator=g, dtype=x.dtype)
        if "first" not in state:
            state["first"] = (sigma, sigma_next, z)
            return z
        sigma0, sigma_mid, z1 = state.pop("first")
        if not torch.equal(torch.as_tensor(sigma0), torch.as_tensor(sigma)):
            raise AssertionError("calls not paired as in sample_dpmpp_sde")
        a, b = sigma - sigma_mid, sigma_mid - sigma_next
        return (a / (a + b)).sqrt() * z1 + (b / (a + b)).sqrt() * z

    return sampler


def noise_option(kind: str, x: torch.Tensor, sampling=None) -> dict:
    """k-diffusion's ``noise_sampler`` keyword for a noise kind (after the global seed is set)."""
    if kind == "global_seed":
        return {}
    if kind == "randn_like":
        return {"noise_sampler": sampling.default_noise_sampler(x)}
    if kind == "call_order":
        return {"noise_sampler": call_order_noise_sampler(x)}
    if kind == "brownian_law":
        return {"noise_sampler": brownian_law_noise_sampler(x)}
    raise ValueError(kind)


def run_sde_reference(sampling, x: torch.Tensor, sigmas: torch.Tensor) -> dict:
    """k-diffusion's outputs and NFE for every entry of ``SAMPLERS`` on one grid."""
    out = {}
    for key, (fn_name, kwargs, noise) in SAMPLERS.items():
        calls = []

        def model(x_, sigma_):
            calls.append(1)
            return ref.mixture_denoiser(x_, sigma_)

        torch.manual_seed(NOISE_SEED)
        result = getattr(sampling, fn_name)(model, x.clone(), sigmas, disable=True, **kwargs,
                                            **noise_option(noise, x, sampling))
        out[key] = {"x": result.tolist(), "nfe": len(calls)}
    return out


def main(argv: list[str]) -> None:
    path = argv[1] if len(argv) > 1 else os.environ.get("KDIFFUSION_SAMPLING")
    if not path:
        raise SystemExit(__doc__)
    sampling = ref.load_sampling(path)
    data = ref.inputs(sampling)
    record = {
        "k_diffusion_version": sampling.__version__,
        "torch_version": torch.__version__,
        "noise_seed": NOISE_SEED,
        "x": data["x"].tolist(),
        "grids": {k: v.tolist() for k, v in data["grids"].items()},
        "samplers": {k: {"sampler": fn, "options": kw, "noise": noise}
                     for k, (fn, kw, noise) in SAMPLERS.items()},
        "outputs": {k: run_sde_reference(sampling, data["x"], v)
                    for k, v in data["grids"].items()},
    }
    FIXTURE.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {FIXTURE} (k-diffusion {record['k_diffusion_version']})")


if __name__ == "__main__":
    main(sys.argv)
