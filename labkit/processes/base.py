"""The ``Process`` base class: a forward process in the EDM form ``x_t = s(t) (x0 + sigma(t) eps)``.

Every forward process of diffusion models is a scaling ``s(t)`` and a noise level ``sigma(t)``
(Karras et al. 2022, Sec. 2 and App. B). With ``x_hat = x_t / s(t)`` the process is
``x_hat = x0 + sigma eps``, so one denoiser ``D(x_hat, sigma) = E[x0 | x_hat]`` serves all of them.

Subclasses implement the closed forms as private hooks (``_s``, ``_sigma``, ``_ds_dt``,
``_dsigma_dt``, ``_t_of_sigma`` and, where ``s`` reaches 0, ``_sigma_vp``) on validated tensors;
the public methods validate, then call them.

References
----------
Karras, Aittala, Aila, Laine (2022), "Elucidating the Design Space of Diffusion-Based Generative
Models", arXiv:2206.00364.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

from .._checks import as_float_tensor, check_sigma, per_row
from ._inputs import check_batch, check_real, check_same_shape, per_sample

Scalar = float | Tensor


class Process(ABC):
    """A forward process ``x_t = s(t) (x0 + sigma(t) eps)``, ``eps ~ N(0, I)``.

    Every method takes a Python number or a tensor and follows the tensor's dtype and device
    (a Python number gives a 0-d float64 tensor). Methods on batches take ``x`` of shape
    ``(n, ...)`` and ``t`` (or ``sigma``) as a scalar or a per-sample ``(n,)`` tensor.

    Parameters
    ----------
    t_min, t_max : float
        Default time range, ``t_min < t_max``; ``sigma_min = sigma(t_min)`` and
        ``sigma_max = sigma(t_max)``. Values outside it are still valid inputs of every method.

    Attributes
    ----------
    name : str
        Key of the process in ``labkit.processes.PROCESSES``.
    t_lower : float
        Smallest admissible time (``-inf`` when every real ``t`` is valid).
    t_singular : float
        Time where ``s = 0`` and ``sigma = inf`` (pure noise), ``inf`` if never reached. ``s``,
        ``ds_dt``, ``alpha``, ``sigma_vp`` and ``add_noise`` accept it; the rest need ``t`` below.
    """

    name: ClassVar[str] = ""
    t_lower: ClassVar[float] = 0.0
    t_singular: ClassVar[float] = math.inf

    def __init__(self, *, t_min: float, t_max: float) -> None:
        t_min, t_max = check_real(t_min, "t_min"), check_real(t_max, "t_max")
        if not self.t_lower <= t_min < t_max < self.t_singular:
            raise ValueError(f"t_min and t_max must satisfy {self.t_lower} <= t_min < t_max < "
                             f"{self.t_singular} for {type(self).__name__}, "
                             f"got t_min={t_min}, t_max={t_max}")
        self.t_min, self.t_max = t_min, t_max

    # ------------------------------------------------------------------ closed forms (hooks)
    @abstractmethod
    def _s(self, t: Tensor) -> Tensor:
        """Scaling ``s(t)`` on validated ``t``."""

    @abstractmethod
    def _sigma(self, t: Tensor) -> Tensor:
        """Noise level ``sigma(t)`` on validated ``t < t_singular``."""

    @abstractmethod
    def _ds_dt(self, t: Tensor) -> Tensor:
        """``ds/dt`` in closed form."""

    @abstractmethod
    def _dsigma_dt(self, t: Tensor) -> Tensor:
        """``dsigma/dt`` in closed form."""

    @abstractmethod
    def _t_of_sigma(self, sigma: Tensor) -> Tensor:
        """Exact inverse of ``sigma(t)`` on validated ``sigma``."""

    def _sigma_vp(self, t: Tensor) -> Tensor:
        """``s(t) sigma(t)``; processes with a finite ``t_singular`` override it there."""
        return self._s(t) * self._sigma(t)

    # ------------------------------------------------------------------ schedule
    def s(self, t: Scalar) -> Tensor:
        """Scaling ``s(t)`` of ``x_t = s(t) (x0 + sigma(t) eps)``.

        Parameters
        ----------
        t : float or Tensor of any shape
            Times in ``[t_lower, t_singular]``; the result follows its dtype and device.

        Returns
        -------
        Tensor of the shape of ``t``: ``s(t) >= 0`` (``1`` for VE and EDM; ``0`` at ``t_singular``).
        """
        return self._s(self._time(t, allow_singular=True))

    def sigma(self, t: Scalar) -> Tensor:
        """Noise level ``sigma(t)`` of the unscaled ``x_hat = x_t / s(t) = x0 + sigma eps``.

        Parameters
        ----------
        t : float or Tensor of any shape
            Times in ``[t_lower, t_singular)``; the result follows its dtype and device.

        Returns
        -------
        Tensor of the shape of ``t``: ``sigma(t) >= 0``, increasing in ``t``.
        """
        return self._sigma(self._time(t))

    def ds_dt(self, t: Scalar) -> Tensor:
        """Time derivative ``ds/dt`` of the scaling, in closed form.

        Parameters
        ----------
        t : float or Tensor of any shape
            Times in ``[t_lower, t_singular]``; the result follows its dtype and device.

        Returns
        -------
        Tensor of the shape of ``t``: ``s'(t) <= 0`` (``0`` for VE and EDM).
        """
        return self._ds_dt(self._time(t, allow_singular=True))

    def dsigma_dt(self, t: Scalar) -> Tensor:
        """Time derivative ``dsigma/dt`` of the noise level, in closed form.

        Parameters
        ----------
        t : float or Tensor of any shape
            Times in ``[t_lower, t_singular)``; the result follows its dtype and device.

        Returns
        -------
        Tensor of the shape of ``t``: ``sigma'(t) >= 0``; ``inf`` at ``t = 0`` for VE, where
        ``sigma = sqrt(t)``.
        """
        return self._dsigma_dt(self._time(t))

    def t_of_sigma(self, sigma: Scalar) -> Tensor:
        """Exact inverse ``t(sigma)`` of ``sigma(t)``: ``sigma(t_of_sigma(sigma)) = sigma``.

        A ``sigma`` outside ``[sigma_min, sigma_max]`` is inverted analytically, giving a time
        outside ``[t_min, t_max]``.

        Parameters
        ----------
        sigma : float or Tensor of any shape
            Finite noise levels, ``>= 0`` (``> 0`` for VE); the result follows its dtype and
            device.

        Returns
        -------
        Tensor of the shape of ``sigma``: the times, in ``[t_lower, t_singular)``.
        """
        return self._t_of_sigma(self._noise(as_float_tensor(sigma, "sigma")))

    def alpha(self, t: Scalar) -> Tensor:
        """Signal coefficient of ``x_t = alpha x0 + sigma_vp eps`` (VP notation): ``alpha = s``."""
        return self.s(t)

    def sigma_vp(self, t: Scalar) -> Tensor:
        """Noise coefficient of ``x_t = alpha x0 + sigma_vp eps`` (VP notation): ``s(t) sigma(t)``.

        Parameters
        ----------
        t : float or Tensor of any shape
            Times in ``[t_lower, t_singular]``; the result follows its dtype and device.

        Returns
        -------
        Tensor of the shape of ``t``: ``sigma_vp(t) >= 0``; finite at ``t_singular``, where
        ``s = 0`` and ``sigma = inf`` (there ``sigma_vp = 1`` for cosine and rectified flow).
        """
        return self._sigma_vp(self._time(t, allow_singular=True))

    def log_snr(self, t: Scalar) -> Tensor:
        """Log signal-to-noise ratio ``lambda = log(alpha / sigma_vp) = -log sigma(t)``.

        Parameters
        ----------
        t : float or Tensor of any shape
            Times in ``[t_lower, t_singular)``; the result follows its dtype and device.

        Returns
        -------
        Tensor of the shape of ``t``: ``lambda(t)``, decreasing in ``t``; ``+inf`` where
        ``sigma = 0``.

        References
        ----------
        Kingma et al. (2021), "Variational Diffusion Models", arXiv:2107.00630 (``lambda``).
        """
        return -torch.log(self.sigma(t))

    @property
    def sigma_min(self) -> float:
        """``sigma(t_min)``, the smallest noise level of the default time range."""
        return float(self.sigma(self.t_min))

    @property
    def sigma_max(self) -> float:
        """``sigma(t_max)``, the largest noise level of the default time range."""
        return float(self.sigma(self.t_max))

    # ------------------------------------------------------------------ batches
    def add_noise(self, x0: Tensor, t: Scalar, eps: Tensor) -> Tensor:
        """Noise clean data: ``x_t = s(t) (x0 + sigma(t) eps) = alpha x0 + sigma_vp eps``.

        Parameters
        ----------
        x0 : Tensor of shape ``(n, ...)``
            Clean data; dtype and device of the result follow it.
        t : float or Tensor of shape ``(n,)``
            Time(s); ``t = t_singular`` (pure noise) is allowed.
        eps : Tensor of the shape of ``x0``
            Standard normal noise.

        Returns
        -------
        Tensor of the shape of ``x0``.
        """
        x0 = check_batch(x0, "x0")
        eps = check_same_shape(eps, x0, "eps", "x0")
        t = self._time_for(t, x0, allow_singular=True)
        # The VP form stays finite at t_singular, where s (x0 + sigma eps) is 0 * inf.
        return per_sample(self._s(t), x0) * x0 + per_sample(self._sigma_vp(t), x0) * eps

    def to_edm(self, x_t: Tensor, t: Scalar) -> tuple[Tensor, Tensor]:
        """EDM variables of a process state: ``x_hat = x_t / s(t)`` and ``sigma = sigma(t)``.

        Parameters
        ----------
        x_t : Tensor of shape ``(n, ...)``
        t : float or Tensor of shape ``(n,)``

        Returns
        -------
        x_hat : Tensor of the shape of ``x_t``
        sigma : Tensor of shape ``(n,)``
        """
        x_t = check_batch(x_t, "x_t")
        t = self._time_for(t, x_t)
        return x_t / per_sample(self._s(t), x_t), self._sigma(t)

    def from_edm(self, x_hat: Tensor, sigma: Scalar) -> tuple[Tensor, Tensor]:
        """Process state of EDM variables: ``t = t_of_sigma(sigma)``, ``x_t = s(t) x_hat``.

        Parameters
        ----------
        x_hat : Tensor of shape ``(n, ...)``
        sigma : float or Tensor of shape ``(n,)``

        Returns
        -------
        x_t : Tensor of the shape of ``x_hat``
        t : Tensor of shape ``(n,)``
        """
        x_hat = check_batch(x_hat, "x_hat")
        sigma = self._noise(check_sigma(sigma, x_hat.shape[0], x_hat))
        t = self._t_of_sigma(sigma)
        return per_sample(self._s(t), x_hat) * x_hat, t

    # ------------------------------------------------------------------ validation
    def _time(self, t: Any, name: str = "t", *, allow_singular: bool = False) -> Tensor:
        """``t`` as a finite floating tensor inside the process's domain."""
        t = as_float_tensor(t, name)
        hi = self.t_singular
        if bool((t < self.t_lower).any()) or bool((t > hi).any()) or (
                not allow_singular and bool((t == hi).any())):
            bracket = "]" if allow_singular else ")"
            raise ValueError(f"{name} must lie in [{self.t_lower}, {hi}{bracket} for "
                             f"{type(self).__name__}, got values in "
                             f"[{float(t.min())}, {float(t.max())}]")
        return t

    def _time_for(self, t: Any, x: Tensor, name: str = "t", *,
                  allow_singular: bool = False) -> Tensor:
        """``t`` as an ``(n,)`` tensor in ``x``'s dtype and device, inside the domain."""
        t = as_float_tensor(t, name, dtype=x.dtype, device=x.device)
        t = per_row(t, x.shape[0], name, "the batch")
        return self._time(t, name, allow_singular=allow_singular)

    def _noise(self, sigma: Tensor) -> Tensor:
        """Reject negative noise levels (finiteness is checked by the caller's converter)."""
        if bool((sigma < 0).any()):
            raise ValueError(f"sigma must be >= 0, got minimum {float(sigma.min())}")
        return sigma

    def _params_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        params = self._params_repr()
        sep = ", " if params else ""
        return f"{type(self).__name__}({params}{sep}t_min={self.t_min:g}, t_max={self.t_max:g})"
