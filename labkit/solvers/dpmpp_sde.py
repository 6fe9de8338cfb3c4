"""Stochastic DPM-Solver++ samplers: ``dpmpp_sde``, ``dpmpp_2m_sde``, ``dpmpp_3m_sde``.

All three integrate the reverse-time SDE family (in ``lambda_ = -log sigma``, data prediction)

``dx = (1 + eta) (D(x, sigma) - x) dlambda_ + sigma sqrt(2 eta) dW``,

whose ``eta = 0`` member is the PF-ODE and whose every member has the marginals ``p_sigma``
(it is Karras et al.'s eq. 6 with ``langevin = eta``). With ``D`` held constant over a step
``h = lambda_{i+1} - lambda_i`` its solution is

``x_{i+1} = (sigma_{i+1} / sigma_i) e^{-eta h} x_i + (1 - e^{-(1 + eta) h}) D_i
+ sigma_{i+1} sqrt(1 - e^{-2 eta h}) z_i``,  ``z_i ~ N(0, I)``.

``dpmpp_2m_sde`` and ``dpmpp_3m_sde`` use this ``eta``; the ancestral samplers
(``dpmpp_sde``, ``dpmpp_2s_ancestral``) use k-diffusion's ancestral ``eta``, whose noise
``sigma_up^2 ~ 2 eta^2 sigma^2 h`` per step is this family's member ``eta^2``. The samplers
differ in how they correct for ``D`` changing along the step. They reproduce k-diffusion
0.1.1.post1's ``sample_dpmpp_sde``, ``sample_dpmpp_2m_sde`` and ``sample_dpmpp_3m_sde``.
"""

from __future__ import annotations

from numbers import Real
from typing import Any, Callable

import torch
from torch import Tensor

from ._churn import _real
from ._exponential import lambda_, phi, sigma_of_lambda
from ._noise import Generators, standard_normal
from .._checks import check_bool, check_choice
from .base import CountingDenoiser, Solver, StepHistory, multistep_order, ode_derivative
from .dpmpp_3m import multistep_3m_terms
from .euler_ancestral import ancestral_step

NoiseSampler = Callable[[Tensor, Tensor], Tensor]


class StochasticOptions:
    """The ``eta``, ``s_noise`` and ``noise_sampler`` options shared by the stochastic
    DPM-Solver++ samplers (a mixin placed before ``Solver``).

    ``self.stochastic`` is ``eta > 0`` per instance (``eta = 0`` draws nothing). Noise comes
    from ``noise_sampler(sigma, sigma_next)`` when one is given (k-diffusion's signature: a
    standard normal tensor of ``x``'s shape), else from
    ``labkit.solvers._noise.standard_normal(x, generator)``.
    """

    eta: float
    s_noise: float
    noise_sampler: NoiseSampler | None

    def _set_noise_options(self, eta: float, s_noise: float,
                           noise_sampler: NoiseSampler | None) -> None:
        self.eta = _real(eta, "eta")
        self.s_noise = _real(s_noise, "s_noise")
        if noise_sampler is not None and not callable(noise_sampler):
            raise TypeError(f"noise_sampler must be callable as noise_sampler(sigma, "
                            f"sigma_next) or None, got {type(noise_sampler).__name__}")
        self.noise_sampler = noise_sampler
        self.stochastic = self.eta > 0  # type: ignore[misc]  # eta = 0 is the ODE

    def _noise(self, x: Tensor, sigma: Tensor, sigma_next: Tensor,
               generator: Generators) -> Tensor:
        """A standard normal tensor of ``x``'s shape for the step ``sigma -> sigma_next``."""
        if self.noise_sampler is None:
            return standard_normal(x, generator)
        z = self.noise_sampler(sigma, sigma_next)
        if not isinstance(z, Tensor) or z.shape != x.shape:
            got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"noise_sampler must return a tensor of x's shape "
                             f"{tuple(x.shape)}, got {got}")
        return z.to(dtype=x.dtype, device=x.device)


class DPMppSDE(StochasticOptions, Solver):
    """Stochastic DPM-Solver++ with an intermediate stage, as k-diffusion's ``sample_dpmpp_sde``.

    With ``lambda_ = -log sigma``, ``h = lambda_{i+1} - lambda_i``, ``s = lambda_i + r h``,
    ``fac = 1 / (2 r)`` and ``(d_s, u_s) = ancestral_step(sigma_i, sigma_s, eta)``,
    ``(d, u) = ancestral_step(sigma_i, sigma_{i+1}, eta)``:

    ``x_s = (d_s / sigma_i) x_i - (d_s / sigma_i - 1) D_i + s_noise u_s z_1``,
    ``D' = (1 - fac) D_i + fac D(x_s, sigma_s)``,
    ``x_{i+1} = (d / sigma_i) x_i - (d / sigma_i - 1) D' + s_noise u z_2``

    (each stage an ancestral DPM-Solver++(1) step, ``d / sigma_i = e^{-(lambda_(d) - lambda_i)}``).
    The step to ``sigma_{i+1} = 0`` is the Euler step, ``x_{i+1} = D_i``.

    **Brownian noise.** ``z_1`` and ``z_2`` are the normalised increments of ONE Brownian
    path ``W`` in ``sigma`` over ``[sigma_s, sigma_i]`` and ``[sigma_{i+1}, sigma_i]``, as
    k-diffusion's default ``BrownianTreeNoiseSampler`` gives: with ``a = sigma_i - sigma_s``,
    ``b = sigma_s - sigma_{i+1}`` and ``z_1, z_B`` independent standard normals drawn from the
    generator in that order (``z_B`` the increment over ``[sigma_{i+1}, sigma_s]``),

    ``z_2 = sqrt(a / (a + b)) z_1 + sqrt(b / (a + b)) z_B``,

    so ``corr(z_1, z_2) = sqrt(a / (a + b))`` and the steps' noises are independent. (Same law
    as torchsde's tree; not the same numbers, which come from torchsde's own RNG.) With a
    ``noise_sampler``, ``z_1 = noise_sampler(sigma_i, sigma_s)`` and
    ``z_2 = noise_sampler(sigma_i, sigma_{i+1})``, as in k-diffusion: then the sampler is
    responsible for the consistency.

    **Weak order 2** measured on a Gaussian target (a linear SDE: the test checks mean and
    covariance, ``docs/solvers.md``); ``eta = 0`` is DPM-Solver++(2S) with stage ``r`` (Lu et
    al. 2022, Algorithm 1), order 2, equal to ``dpmpp_2s`` to round-off at ``r = 1/2``
    (k-diffusion's arithmetic differs in the last bits). Two denoiser calls per step, one on
    the step to 0.

    Parameters
    ----------
    eta : float
        Ancestral noise fraction, ``>= 0``.
    s_noise : float
        Scale of the added noise, ``>= 0``.
    noise_sampler : callable, optional
        ``noise_sampler(sigma, sigma_next) -> Tensor`` of ``x``'s shape, standard normal.
    r : float
        Position of the intermediate stage in ``lambda_``, ``0 < r <= 1`` (k-diffusion's
        default ``1/2``).

    References
    ----------
    Lu, Zhou, Bao, Chen, Li, Zhu (2022), arXiv:2211.01095, Algorithm 1 (the ``r`` stage);
    Crowson, k-diffusion ``sample_dpmpp_sde`` and ``BrownianTreeNoiseSampler``; Li, Chen,
    Chen, Lyons, "Scalable Gradients for Stochastic Differential Equations", 2020,
    arXiv:2001.01328 (the Brownian tree of torchsde).
    """

    name = "dpmpp_sde"
    order = 2.0
    stochastic = True
    nfe_per_step = 2

    def __init__(self, eta: float = 1.0, s_noise: float = 1.0,
                 noise_sampler: NoiseSampler | None = None, r: float = 1 / 2,
                 **options: Any) -> None:
        super().__init__(**options)
        self._set_noise_options(eta, s_noise, noise_sampler)
        if isinstance(r, bool) or not isinstance(r, Real):
            raise TypeError(f"r must be a real number, got {type(r).__name__}")
        if not 0 < float(r) <= 1:
            raise ValueError(f"r must be in (0, 1], got {r}")
        self.r = float(r)
        self._z1: Tensor | None = None

    def _brownian(self, x: Tensor, sigma: Tensor, sigma_mid: Tensor, sigma_next: Tensor,
                  generator: Generators, first: bool) -> Tensor:
        """``z_1`` (``first``) or ``z_2`` of the docstring."""
        if self.noise_sampler is not None:
            return self._noise(x, sigma, sigma_mid if first else sigma_next, generator)
        if first:
            self._z1 = standard_normal(x, generator)
            return self._z1
        a, b = sigma - sigma_mid, sigma_mid - sigma_next
        z_b = standard_normal(x, generator)
        return (a / (a + b)).sqrt() * self._z1 + (b / (a + b)).sqrt() * z_b

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        if float(sigma_next) == 0:
            # Euler method.
            return x + ode_derivative(x, sigma, denoised) * (sigma_next - sigma)
        t, t_next = lambda_(sigma), lambda_(sigma_next)
        h = t_next - t
        s = t + h * self.r
        fac = 1 / (2 * self.r)
        sigma_t, sigma_s = sigma_of_lambda(t), sigma_of_lambda(s)
        sigma_tn = sigma_of_lambda(t_next)

        # Step 1: ancestral DPM-Solver++(1) to the stage s.
        sd, su = ancestral_step(sigma_t, sigma_s, self.eta)
        s_ = lambda_(sd)
        x_2 = (sigma_of_lambda(s_) / sigma_t) * x - (t - s_).expm1() * denoised
        if self.eta:
            z = self._brownian(x, sigma_t, sigma_s, sigma_tn, generator, first=True)
            x_2 = x_2 + z * self.s_noise * su
        denoised_2 = denoiser(x_2, sigma_s)

        # Step 2: ancestral step to t_next with the corrected denoiser.
        sd, su = ancestral_step(sigma_t, sigma_tn, self.eta)
        t_next_ = lambda_(sd)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (sigma_of_lambda(t_next_) / sigma_t) * x - (t - t_next_).expm1() * denoised_d
        if self.eta:
            z = self._brownian(x, sigma_t, sigma_s, sigma_tn, generator, first=False)
            x = x + z * self.s_noise * su
        self._z1 = None
        return x


class DPMpp2MSDE(StochasticOptions, Solver):
    """DPM-Solver++(2M) SDE, as k-diffusion's ``sample_dpmpp_2m_sde``.

    With ``h = lambda_{i+1} - lambda_i``, ``H = (1 + eta) h``, ``r = h_{i-1} / h`` and
    ``D_i = D(x_i, sigma_i)``:

    ``x_{i+1} = (sigma_{i+1} / sigma_i) e^{-eta h} x_i + (1 - e^{-H}) D_i
    + c(H) (D_i - D_{i-1}) / r + s_noise sigma_{i+1} sqrt(1 - e^{-2 eta h}) z_i``,

    ``c(H) = (1 - e^{-H}) / 2`` for ``solver_type = "midpoint"`` and
    ``c(H) = 1 - (1 - e^{-H}) / H = H phi_2(-H)`` for ``"heun"`` (the exact weight of a
    linear-in-``lambda_`` ``D``). The first step (and every step with
    ``lower_order_final`` capping the order at 1) has no ``D_{i-1}`` term; the step to
    ``sigma = 0`` returns ``D_i``.

    **Order 2.** ``eta = 0`` is a second-order ODE solver (``"midpoint"`` is DPM-Solver++(2M),
    equal to ``dpmpp_2m`` to round-off but not bit for bit: k-diffusion groups the terms
    differently; ``"heun"`` is the ``phi_2``-weighted 2M, another second-order method). With
    ``eta > 0`` the measured weak order on a Gaussian target is 2 for both types, as published
    (``docs/solvers.md``); that target makes the SDE linear, so it checks the mean and
    covariance recursion, not the weak order for nonlinear denoisers. One denoiser call per step.

    Parameters
    ----------
    eta : float
        Noise fraction, ``>= 0`` (1: the reverse SDE of Song et al.; 0: the PF-ODE).
    s_noise : float
        Scale of the added noise, ``>= 0``.
    noise_sampler : callable, optional
        ``noise_sampler(sigma, sigma_next) -> Tensor`` of ``x``'s shape, standard normal.
        k-diffusion's default (a Brownian tree) has the same law as the generator's draws
        here, since the steps' increments are disjoint; a generator seeded ``s`` gives the
        numbers of k-diffusion with ``noise_sampler=lambda *_: torch.randn_like(x)`` after
        ``torch.manual_seed(s)``.
    solver_type : {"midpoint", "heun"}
    lower_order_final : bool
        Use first order on the last step of a grid (``multistep_order``).

    References
    ----------
    Lu, Zhou, Bao, Chen, Li, Zhu (2022), arXiv:2211.01095 (DPM-Solver++(2M)); Crowson,
    k-diffusion ``sample_dpmpp_2m_sde``; diffusers ``DPMSolverMultistepScheduler``
    (``algorithm_type="sde-dpmsolver++"``).
    """

    name = "dpmpp_2m_sde"
    order = 2.0
    stochastic = True
    nfe_per_step = 1

    def __init__(self, eta: float = 1.0, s_noise: float = 1.0,
                 noise_sampler: NoiseSampler | None = None, solver_type: str = "midpoint",
                 lower_order_final: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self._set_noise_options(eta, s_noise, noise_sampler)
        check_choice(solver_type, "solver_type", ("midpoint", "heun"))
        check_bool(lower_order_final, "lower_order_final")
        self.solver_type = solver_type
        self.lower_order_final = lower_order_final
        self._history = StepHistory(1)   # (h_{i-1}, D_{i-1})

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        self._history.start(i)
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        if float(sigma_next) == 0:
            # Denoising step.
            return denoised
        t, s = lambda_(sigma), lambda_(sigma_next)
        h = s - t
        eta_h = self.eta * h
        past = list(self._history)
        self._history.push((h, denoised))
        x = sigma_next / sigma * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
        q = multistep_order(2, len(past), i, len(sigmas) - 1, self.lower_order_final)
        if q == 2:
            h_1, den_1 = past[0]
            r = h_1 / h
            if self.solver_type == "heun":
                big_h = h + eta_h
                x = x + big_h * phi(2, -big_h) * (1 / r) * (denoised - den_1)
            else:
                x = x + 0.5 * (-h - eta_h).expm1().neg() * (1 / r) * (denoised - den_1)
        if self.eta:
            noise = self._noise(x, sigma, sigma_next, generator)
            x = x + noise * sigma_next * (-2 * eta_h).expm1().neg().sqrt() * self.s_noise
        return x


class DPMpp3MSDE(StochasticOptions, Solver):
    """DPM-Solver++(3M) SDE, as k-diffusion's ``sample_dpmpp_3m_sde``.

    With ``h = lambda_{i+1} - lambda_i``, ``H = (1 + eta) h``, ``d1``, ``d2`` the divided
    differences of ``dpmpp_3m`` (``DPMpp3M``) and ``phi_k`` as in ``_exponential``:

    ``x_{i+1} = e^{-H} x_i + (1 - e^{-H}) D_i + H phi_2(-H) d1 + H phi_3(-H) d2
    + s_noise sigma_{i+1} sqrt(1 - e^{-2 eta h}) z_i``

    (k-diffusion's ``phi_2 d1 - phi_3 d2``). Warm-up as ``dpmpp_3m``: first order on the first
    step, ``H phi_2(-H) (D_i - D_{i-1}) / r0`` on the second; the step to ``sigma = 0`` returns
    ``D_i``. ``eta = 0`` is exactly ``dpmpp_3m`` (same numbers; nothing drawn), which is second
    order (``DPMpp3M`` explains why not third).

    **Weak order 2** with ``eta > 0`` measured on a Gaussian target (a linear SDE,
    ``docs/solvers.md``), the order of ``dpmpp_3m``, whose ``d2`` defect this sampler shares.
    One denoiser call per step.

    Parameters
    ----------
    eta, s_noise, noise_sampler
        As in ``DPMpp2MSDE`` (same noise conventions).
    lower_order_final : bool
        Cap the order by the number of steps left (``multistep_order``).

    References
    ----------
    Lu, Zhou, Bao, Chen, Li, Zhu (2022), arXiv:2211.01095; Crowson, k-diffusion
    ``sample_dpmpp_3m_sde``.
    """

    name = "dpmpp_3m_sde"
    order = 2.0
    stochastic = True
    nfe_per_step = 1

    def __init__(self, eta: float = 1.0, s_noise: float = 1.0,
                 noise_sampler: NoiseSampler | None = None, lower_order_final: bool = False,
                 **options: Any) -> None:
        super().__init__(**options)
        self._set_noise_options(eta, s_noise, noise_sampler)
        self.lower_order_final = check_bool(lower_order_final, "lower_order_final")
        self._history = StepHistory(2)   # (h_j, D_j) of the last steps, newest first

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        self._history.start(i)
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        if float(sigma_next) == 0:
            # Denoising step.
            return denoised
        t, t_next = lambda_(sigma), lambda_(sigma_next)
        h = t_next - t
        h_eta = h * (self.eta + 1)
        past = list(self._history)
        self._history.push((h, denoised))
        x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
        q = multistep_order(3, len(past), i, len(sigmas) - 1, self.lower_order_final)
        correction = multistep_3m_terms(denoised, past[:q - 1], h, h_eta)
        if correction is not None:
            x = x + correction
        if self.eta:
            noise = self._noise(x, sigma, sigma_next, generator)
            x = x + noise * sigma_next * (-2 * h * self.eta).expm1().neg().sqrt() * self.s_noise
        return x


__all__ = ["DPMppSDE", "DPMpp2MSDE", "DPMpp3MSDE", "StochasticOptions", "NoiseSampler"]
