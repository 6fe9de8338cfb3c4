"""Euler-Maruyama on the EDM family of reverse SDEs in sigma."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._churn import _real
from ._noise import standard_normal
from .base import CountingDenoiser, Solver, ode_derivative


class EulerMaruyama(Solver):
    """Euler-Maruyama on the reverse SDE with Langevin weight ``langevin`` (EDM eq. 6).

    Karras et al. (2022), eq. 6, with ``sigma(t) = t`` and ``beta(sigma) = langevin / sigma``,
    run from large to small ``sigma`` (``dsigma < 0``, ``dW`` a Brownian motion in reverse
    time), with ``score = (D(x, sigma) - x) / sigma^2``:

    ``dx = -(1 + langevin) sigma score dsigma + sqrt(2 langevin sigma) dW``
    ``   = (1 + langevin) d(x, sigma) dsigma + sqrt(2 langevin sigma) dW``,
    ``d(x, sigma) = (x - D(x, sigma)) / sigma``.

    ``langevin = 0`` is the probability-flow ODE; ``langevin = 1`` the reverse VE SDE of Song
    et al. (2021), ``dx = -d[sigma^2]/dsigma score dsigma + sqrt(d[sigma^2]/dsigma) dW``. Every
    ``langevin >= 0`` has the marginals ``p(x; sigma)``. The discretisation, with
    ``h_i = sigma_{i+1} - sigma_i < 0`` and ``z_i ~ N(0, I)``:

    ``x_{i+1} = x_i + (1 + langevin) h_i d(x_i, sigma_i) + sqrt(2 langevin sigma_i |h_i|) z_i``.

    The step to ``sigma_{i+1} = 0`` is the ODE (Euler) step ``x_N = D(x_{N-1}, sigma_{N-1})``
    and draws no noise: ``beta = langevin / sigma`` blows up at ``sigma = 0``, and the full
    drift over that last step would overshoot the denoised point. ``langevin = 0`` gives the
    same numbers as ``euler`` (no noise is drawn; ``self.stochastic`` is then ``False``,
    overriding the class attribute).

    Weak order 1 (measured 1.0 on a Gaussian target, see ``docs/solvers.md``); strong order
    1/2. One denoiser call per step.

    Parameters
    ----------
    langevin : float
        Weight ``>= 0`` of the Langevin part (``beta(sigma) sigma = langevin``).

    References
    ----------
    Karras, Aittala, Aila, Laine (2022), arXiv:2206.00364, eq. 6; Song, Sohl-Dickstein, Kingma,
    Kumar, Ermon, Poole, "Score-Based Generative Modeling through Stochastic Differential
    Equations", ICLR 2021, arXiv:2011.13456; Kloeden, Platen, "Numerical Solution of Stochastic
    Differential Equations", Springer 1992, Sec. 14.1 (weak order 1 of Euler-Maruyama).
    """

    name = "euler_maruyama"
    order = 1.0
    stochastic = True
    nfe_per_step = 1

    def __init__(self, langevin: float = 1.0, **options: Any) -> None:
        super().__init__(**options)
        self.langevin = _real(langevin, "langevin")
        self.stochastic = self.langevin > 0  # type: ignore[misc]  # langevin = 0 is the ODE

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        d = ode_derivative(x, sigma, denoiser(x, sigma))
        h = sigma_next - sigma
        if float(sigma_next) == 0 or not self.stochastic:
            return x + d * h
        x = x + d * ((1 + self.langevin) * h)
        noise = standard_normal(x, generator)
        return x + noise * (2 * self.langevin * sigma * -h) ** 0.5
