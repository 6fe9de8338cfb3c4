"""The concrete forward processes: VE, VP, cosine VP, EDM and rectified flow.

Each class is the table row of ``docs/processes.md``: ``s(t)``, ``sigma(t)``, their derivatives and
the exact inverse ``t(sigma)`` in closed form.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._inputs import check_real
from .base import Process


class VE(Process):
    """Variance-exploding process: ``s = 1``, ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``.

    Song's geometric schedule (not EDM Table 1's ``sigma = sqrt(t)``, which is the same process in
    a different clock). ``t`` in ``[0, 1]`` spans exactly ``[sigma_min, sigma_max]``; any real
    ``t`` is valid and ``t(sigma) = log(sigma / sigma_min) / log(sigma_max / sigma_min)``.

    Parameters
    ----------
    sigma_min, sigma_max : float
        Noise levels at ``t = 0`` and ``t = 1``, ``0 < sigma_min < sigma_max``.
    t_min, t_max : float
        Default time range, ``[0, 1]``.

    References
    ----------
    Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole (2021), "Score-Based Generative Modeling
    through Stochastic Differential Equations", arXiv:2011.13456, Sec. 3.4 and App. C.
    """

    name = "ve"
    t_lower = -math.inf

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, *,
                 t_min: float = 0.0, t_max: float = 1.0) -> None:
        lo = check_real(sigma_min, "sigma_min", positive=True)
        hi = check_real(sigma_max, "sigma_max", positive=True)
        if lo >= hi:
            raise ValueError(f"sigma_min must be < sigma_max, got {lo} and {hi}")
        self._sigma_lo, self._sigma_hi, self._log_ratio = lo, hi, math.log(hi / lo)
        super().__init__(t_min=t_min, t_max=t_max)

    def _s(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def _sigma(self, t: Tensor) -> Tensor:
        # This product form is exact at both ends: sigma(0) = sigma_min, sigma(1) = sigma_max.
        return self._sigma_lo ** (1 - t) * self._sigma_hi ** t

    def _ds_dt(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def _dsigma_dt(self, t: Tensor) -> Tensor:
        return self._sigma(t) * self._log_ratio

    def _t_of_sigma(self, sigma: Tensor) -> Tensor:
        if bool((sigma == 0).any()):
            raise ValueError("sigma must be > 0 for VE: sigma = 0 is reached only as t -> -inf")
        return torch.log(sigma / self._sigma_lo) / self._log_ratio

    def _params_repr(self) -> str:
        return f"sigma_min={self._sigma_lo:g}, sigma_max={self._sigma_hi:g}"


class VP(Process):
    """Variance-preserving process with a linear ``beta(t) = beta_min + beta_d t``.

    With ``B(t) = beta_min t + beta_d t^2 / 2`` (``beta_d = beta_max - beta_min``):
    ``s(t) = exp(-B / 2)``, ``sigma(t) = sqrt(exp(B) - 1)``, so ``alpha^2 + sigma_vp^2 = 1`` and
    ``alpha_bar = exp(-B)``. Inverse: ``t = 2 L / (beta_min + sqrt(beta_min^2 + 2 beta_d L))`` with
    ``L = log(1 + sigma^2)`` (the root of ``B(t) = L`` without cancellation).

    Parameters
    ----------
    beta_min, beta_max : float
        ``0 < beta_min <= beta_max``.
    t_min, t_max : float
        Default time range, ``[1e-3, 1]`` (EDM's ``epsilon_s``; sigma in ``[0.01, 152]``).

    References
    ----------
    Song et al. (2021), arXiv:2011.13456, Sec. 3.4; Karras et al. (2022), arXiv:2206.00364,
    Table 1.
    """

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, *,
                 t_min: float = 1e-3, t_max: float = 1.0) -> None:
        self.beta_min = check_real(beta_min, "beta_min", positive=True)
        self.beta_max = check_real(beta_max, "beta_max", positive=True)
        if self.beta_max < self.beta_min:
            raise ValueError(f"beta_max must be >= beta_min, got {beta_max} < {beta_min}")
        self.beta_d = self.beta_max - self.beta_min
        super().__init__(t_min=t_min, t_max=t_max)

    def _exponent(self, t: Tensor) -> Tensor:
        return t * (self.beta_min + 0.5 * self.beta_d * t)

    def _beta(self, t: Tensor) -> Tensor:
        return self.beta_min + self.beta_d * t

    def _s(self, t: Tensor) -> Tensor:
        return torch.exp(-0.5 * self._exponent(t))

    def _sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(torch.expm1(self._exponent(t)))

    def _sigma_vp(self, t: Tensor) -> Tensor:
        # sqrt(1 - alpha_bar) without cancellation at small t.
        return torch.sqrt(-torch.expm1(-self._exponent(t)))

    def _ds_dt(self, t: Tensor) -> Tensor:
        return -0.5 * self._beta(t) * self._s(t)

    def _dsigma_dt(self, t: Tensor) -> Tensor:
        return 0.5 * self._beta(t) * torch.exp(self._exponent(t)) / self._sigma(t)

    def _t_of_sigma(self, sigma: Tensor) -> Tensor:
        log1p_var = torch.log1p(sigma ** 2)
        return 2 * log1p_var / (self.beta_min
                                + torch.sqrt(self.beta_min ** 2 + 2 * self.beta_d * log1p_var))

    def _params_repr(self) -> str:
        return f"beta_min={self.beta_min:g}, beta_max={self.beta_max:g}"


class CosineVP(Process):
    """Cosine-schedule VP process: ``alpha_bar(t) = cos^2(a(t)) / cos^2(a(0))``.

    ``a(t) = (t + s) / (1 + s) * pi / 2``; then ``s(t) = sqrt(alpha_bar) = cos a / cos a0`` and
    ``sigma(t) = sqrt((1 - alpha_bar) / alpha_bar) = sqrt(sin(a - a0) sin(a + a0)) / cos a``
    (``cos^2 a0 - cos^2 a = sin(a - a0) sin(a + a0)`` avoids cancellation at small ``t``). At
    ``t = 1``, ``alpha_bar = 0`` and ``sigma = inf``; the default ``t_max = 1 - 1e-3`` keeps
    ``sigma_max`` finite (about 642), as Nichol & Dhariwal clip ``beta`` near ``t = 1``.
    Inverse: ``tan a = sqrt(sin^2 a0 + sigma^2) / cos a0``, taken as an arctangent difference.

    Parameters
    ----------
    s : float
        Offset ``s > 0`` that keeps ``beta`` from vanishing at ``t = 0`` (0.008 in the paper).
    t_min, t_max : float
        Default time range, ``[1e-3, 1 - 1e-3]`` (sigma in about ``[0.0062, 642]``).

    References
    ----------
    Nichol, Dhariwal (2021), "Improved Denoising Diffusion Probabilistic Models",
    arXiv:2102.09672, Eq. 17.
    """

    name = "cosine"
    t_singular = 1.0

    def __init__(self, s: float = 0.008, *, t_min: float = 1e-3, t_max: float = 1 - 1e-3) -> None:
        self.offset = check_real(s, "s", positive=True)
        self._rate = math.pi / (2 * (1 + self.offset))  # da/dt
        self._a0 = self.offset * self._rate
        self._cos_a0, self._sin_a0 = math.cos(self._a0), math.sin(self._a0)
        super().__init__(t_min=t_min, t_max=t_max)

    def _noise_numerator(self, t: Tensor) -> Tensor:
        """``sqrt(cos^2 a0 - cos^2 a) = sqrt(1 - alpha_bar) cos a0``."""
        return torch.sqrt(torch.sin(self._rate * t) * torch.sin(self._rate * t + 2 * self._a0))

    def _s(self, t: Tensor) -> Tensor:
        return torch.cos(self._a0 + self._rate * t) / self._cos_a0

    def _sigma(self, t: Tensor) -> Tensor:
        return self._noise_numerator(t) / torch.cos(self._a0 + self._rate * t)

    def _sigma_vp(self, t: Tensor) -> Tensor:
        return self._noise_numerator(t) / self._cos_a0

    def _ds_dt(self, t: Tensor) -> Tensor:
        return -self._rate * torch.sin(self._a0 + self._rate * t) / self._cos_a0

    def _dsigma_dt(self, t: Tensor) -> Tensor:
        # From sigma^2 = cos^2 a0 / cos^2 a - 1.
        a = self._a0 + self._rate * t
        return (self._rate * self._cos_a0 ** 2 * torch.sin(a)
                / (torch.cos(a) ** 3 * self._sigma(t)))

    def _t_of_sigma(self, sigma: Tensor) -> Tensor:
        # a - a0 = atan(x) - atan(y) = atan((x - y) / (1 + x y)) with x = tan a, y = tan a0,
        # and x - y written without cancellation for small sigma.
        root = torch.sqrt(self._sin_a0 ** 2 + sigma ** 2)
        x = root / self._cos_a0
        x_minus_y = sigma ** 2 / (self._cos_a0 * (root + self._sin_a0))
        y = self._sin_a0 / self._cos_a0
        return torch.atan(x_minus_y / (1 + x * y)) / self._rate

    def _params_repr(self) -> str:
        return f"s={self.offset:g}"


class EDM(Process):
    """The EDM process: ``s = 1``, ``sigma(t) = t``; time is the noise level itself.

    Parameters
    ----------
    t_min, t_max : float
        Default range ``[0.002, 80]`` (Karras et al. 2022, Table 1).

    References
    ----------
    Karras et al. (2022), arXiv:2206.00364, Sec. 4 and Table 1.
    """

    name = "edm"

    def __init__(self, *, t_min: float = 0.002, t_max: float = 80.0) -> None:
        super().__init__(t_min=t_min, t_max=t_max)

    def _s(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def _sigma(self, t: Tensor) -> Tensor:
        return t.clone()

    def _ds_dt(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def _dsigma_dt(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def _t_of_sigma(self, sigma: Tensor) -> Tensor:
        return sigma.clone()


class RectifiedFlow(Process):
    """Linear interpolant ``x_t = (1 - t) x0 + t eps``: ``s = 1 - t``, ``sigma = t / (1 - t)``.

    Inverse ``t = sigma / (1 + sigma)``. ``t = 1`` is pure noise (``sigma = inf``); the default
    range ``[1e-3, 1 - 1e-3]`` gives sigma in about ``[0.001, 999]``. Its probability-flow
    velocity is ``E[eps - x0 | x_t]``, the flow-matching target.

    Parameters
    ----------
    t_min, t_max : float
        Default time range.

    References
    ----------
    Liu, Gong, Liu (2022), "Flow Straight and Fast", arXiv:2209.03003; Lipman, Chen, Ben-Hamu,
    Nickel, Le (2022), "Flow Matching for Generative Modeling", arXiv:2210.02747.
    """

    name = "rectified_flow"
    t_singular = 1.0

    def __init__(self, *, t_min: float = 1e-3, t_max: float = 1 - 1e-3) -> None:
        super().__init__(t_min=t_min, t_max=t_max)

    def _s(self, t: Tensor) -> Tensor:
        return 1 - t

    def _sigma(self, t: Tensor) -> Tensor:
        return t / (1 - t)

    def _sigma_vp(self, t: Tensor) -> Tensor:
        return t.clone()

    def _ds_dt(self, t: Tensor) -> Tensor:
        return -torch.ones_like(t)

    def _dsigma_dt(self, t: Tensor) -> Tensor:
        return 1 / (1 - t) ** 2

    def _t_of_sigma(self, sigma: Tensor) -> Tensor:
        return sigma / (1 + sigma)
