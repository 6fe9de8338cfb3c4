"""Adapters between models in process time and denoisers ``D(x, sigma)`` in the EDM convention.

``as_denoiser`` turns a network ``model(x_t, t)`` trained on a process (predicting eps, x0, v,
score or velocity) into the labkit ``Denoiser`` that every sampler uses; ``as_model`` does the
reverse, e.g. to build an exact eps-model in VP time from an exact target. Compare k-diffusion's
``external.VDenoiser`` / ``DiscreteEpsDDPMDenoiser`` and EDM's ``VPPrecond``.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor

from .._checks import check_sigma
from ._inputs import check_batch
from .base import Process, Scalar
from .conversions import _check_kind, prediction_from_x0, x0_from
from .registry import get_process

TIME_INPUTS: tuple[str, ...] = ("t", "sigma")
"""What a model's second argument can be: the process time ``t`` or the noise level ``sigma``."""


def _check_time(time: Any, allow_callable: bool) -> str | Callable[[Tensor], Tensor]:
    if isinstance(time, str) and time in TIME_INPUTS:
        return time
    if allow_callable and callable(time):
        return time
    extra = " or a callable mapping t (n,) to the model's time input" if allow_callable else ""
    raise ValueError(f"time must be one of {', '.join(map(repr, TIME_INPUTS))}{extra}, "
                     f"got {time!r}")


class _ModelDenoiser:
    """``D(x, sigma)`` computed by a process-time model; built by ``as_denoiser``."""

    def __init__(self, model: Callable[[Tensor, Tensor], Tensor], process: Process,
                 prediction: str, time: str | Callable[[Tensor], Tensor]) -> None:
        self.model, self.process, self.prediction, self.time = model, process, prediction, time

    def __call__(self, x: Tensor, sigma: Scalar) -> Tensor:
        x = check_batch(x, "x")
        sigma = check_sigma(sigma, x.shape[0], x)
        noisy = sigma > 0
        if bool(noisy.all()):
            return self._denoise(x, sigma)
        # Without noise there is nothing to remove: D(x, 0) = x, and the model is not called
        # where its time would be an endpoint (t = -inf for VE).
        out = x.clone()
        if bool(noisy.any()):
            out[noisy] = self._denoise(x[noisy], sigma[noisy])
        return out

    def _denoise(self, x: Tensor, sigma: Tensor) -> Tensor:
        x_t, t = self.process.from_edm(x, sigma)
        model_time = t if self.time == "t" else sigma if self.time == "sigma" else self.time(t)
        prediction = self.model(x_t, model_time)
        if not isinstance(prediction, Tensor) or prediction.shape != x_t.shape:
            got = tuple(prediction.shape) if isinstance(prediction, Tensor) else type(prediction)
            raise ValueError(f"model output must be a tensor of the input's shape "
                             f"{tuple(x_t.shape)}, got {got}")
        return x0_from(prediction, self.prediction, x_t, t, self.process)

    def __repr__(self) -> str:
        return (f"as_denoiser({self.model!r}, {self.process!r}, prediction={self.prediction!r}, "
                f"time={self.time!r})")


class _DenoiserModel:
    """``model(x_t, t)`` computed by an EDM denoiser; built by ``as_model``."""

    def __init__(self, denoiser: Callable[[Tensor, Tensor], Tensor], process: Process,
                 prediction: str, time: str) -> None:
        self.denoiser, self.process, self.prediction, self.time = (denoiser, process, prediction,
                                                                   time)

    def __call__(self, x_t: Tensor, t: Scalar) -> Tensor:
        x_t = check_batch(x_t, "x_t")
        if self.time == "sigma":
            t = self.process.t_of_sigma(check_sigma(t, x_t.shape[0], x_t, name="sigma"))
        x_hat, sigma = self.process.to_edm(x_t, t)
        return prediction_from_x0(self.denoiser(x_hat, sigma), self.prediction, x_t, t,
                                  self.process)

    def __repr__(self) -> str:
        return (f"as_model({self.denoiser!r}, {self.process!r}, prediction={self.prediction!r}, "
                f"time={self.time!r})")


def as_denoiser(model: Callable[[Tensor, Tensor], Tensor], process: str | Process,
                prediction: str = "eps",
                time: str | Callable[[Tensor], Tensor] = "t") -> Callable[[Tensor, Scalar], Tensor]:
    """Wrap a process-time model ``model(x_t, t)`` into a denoiser ``D(x, sigma) = E[x0 | x]``.

    ``D(x, sigma)``: ``t = t_of_sigma(sigma)``, ``x_t = s(t) x``, then the model's output is
    converted to ``x0`` with ``x0_from``. Rows with ``sigma = 0`` return ``x`` unchanged.

    Parameters
    ----------
    model : callable
        ``model(x_t, time)`` with ``x_t`` of shape ``(n, ...)`` and ``time`` of shape ``(n,)``,
        returning a prediction of ``x_t``'s shape.
    process : str or Process
        The process the model was trained on (a ``PROCESSES`` name or an instance).
    prediction : {"eps", "x0", "score", "v", "velocity"}
        What the model predicts (see ``labkit.processes.PREDICTIONS``).
    time : {"t", "sigma"} or callable
        The model's time input: the process time, the EDM noise level, or a function of ``t``
        (e.g. ``lambda t: 999 * t`` for a DDPM network indexed by step).

    Returns
    -------
    callable
        ``D(x, sigma)`` with ``x`` of shape ``(n, ...)`` (unscaled, ``x = x_t / s``) and
        ``sigma >= 0`` a scalar or ``(n,)`` tensor; dtype and device follow ``x``.

    References
    ----------
    Karras et al. (2022), arXiv:2206.00364, App. B (``VPPrecond``).

    Examples
    --------
    >>> import torch
    >>> vp = get_process("vp")
    >>> eps_model = lambda x_t, t: vp.sigma_vp(t)[:, None] * x_t  # exact for x0 ~ N(0, I)
    >>> D = as_denoiser(eps_model, vp, prediction="eps")
    >>> D(torch.ones(1, 1, dtype=torch.float64), 1.0)  # E[x0 | x] = x / (1 + sigma^2)
    tensor([[0.5000]], dtype=torch.float64)
    """
    if not callable(model):
        raise TypeError(f"model must be callable as model(x_t, t), got {type(model).__name__}")
    return _ModelDenoiser(model, get_process(process), _check_kind(prediction, "prediction"),
                          _check_time(time, allow_callable=True))


def as_model(denoiser: Callable[[Tensor, Tensor], Tensor], process: str | Process,
             prediction: str = "eps", time: str = "t") -> Callable[[Tensor, Scalar], Tensor]:
    """Wrap a denoiser ``D(x, sigma)`` into a process-time model ``model(x_t, t)``.

    ``model(x_t, t) = prediction_from_x0(D(x_t / s(t), sigma(t)), prediction, x_t, t)``; the
    inverse of ``as_denoiser``, e.g. for an exact eps-model in VP time from an exact target.

    Parameters
    ----------
    denoiser : callable
        ``D(x, sigma)`` in the EDM convention (a labkit target is one).
    process : str or Process
        The process whose time and scaling the model uses.
    prediction : {"eps", "x0", "score", "v", "velocity"}
        What the model returns.
    time : {"t", "sigma"}
        The model's second argument: the process time or the EDM noise level.

    Returns
    -------
    callable
        ``model(x_t, t)`` with ``x_t`` of shape ``(n, ...)`` and ``t`` a scalar or ``(n,)``
        tensor with ``sigma(t) > 0`` (any ``t`` for ``prediction="x0"``).
    """
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as D(x, sigma), got {type(denoiser).__name__}")
    return _DenoiserModel(denoiser, get_process(process), _check_kind(prediction, "prediction"),
                          _check_time(time, allow_callable=False))
