"""Conversions between the prediction kinds of a diffusion model at one point ``(x_t, t)``.

Every kind is affine in the denoiser output ``D = E[x0 | x_t]`` (the ``"x0"`` prediction):
``pred = a * x_hat + b * D`` with ``x_hat = x_t / s(t)`` and per-sample coefficients ``(a, b)``
read from ``_AFFINE``. Writing each kind once as a row of that table gives both directions,
``prediction_from_x0`` and ``x0_from``, for every process. On the EDM variables
``(x_hat, sigma)`` pass ``process="edm"`` (there ``x_t = x_hat`` and ``t = sigma``).
Derivations are in ``docs/processes.md``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from ._inputs import check_batch, check_same_shape, per_sample
from .base import Process, Scalar
from .registry import get_process

PREDICTIONS: tuple[str, ...] = ("x0", "eps", "score", "v", "velocity")
"""Prediction kinds: the denoiser ``x0``, the noise ``eps``, the score of ``p_t`` at ``x_t``,
the VP-normalised ``v`` and the probability-flow ODE velocity ``dx_t/dt``."""

# (s, sigma, ds/dt, dsigma/dt) -> (a, b) with pred = a * x_hat + b * D.
_AFFINE: dict[str, Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]] = {
    # eps = (x_hat - D) / sigma, from x_hat = x0 + sigma eps.
    "eps": lambda s, sig, ds, dsig: (1 / sig, -1 / sig),
    # grad log p_t(x_t) = grad log p_sigma(x_hat) / s = (D - x_hat) / (s sigma^2) (Tweedie).
    "score": lambda s, sig, ds, dsig: (-1 / (s * sig ** 2), 1 / (s * sig ** 2)),
    # v = (eps - sigma D) / sqrt(1 + sigma^2): Salimans & Ho's alpha eps - sigma_vp x0 of the VP
    # process with this sigma, whatever the process's own scaling.
    "v": lambda s, sig, ds, dsig: (1 / (sig * torch.sqrt(1 + sig ** 2)),
                                   -torch.sqrt(1 + sig ** 2) / sig),
    # dx_t/dt = s' x_hat + s sigma' (x_hat - D) / sigma (PF-ODE; docs/processes.md).
    "velocity": lambda s, sig, ds, dsig: (ds + s * dsig / sig, -s * dsig / sig),
}


def _check_kind(kind: Any, name: str) -> str:
    if not isinstance(kind, str) or kind not in PREDICTIONS:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, PREDICTIONS))}, "
                         f"got {kind!r}")
    return kind


def _coefficients(kind: str, process: Process, x_t: Tensor,
                  t: Scalar) -> tuple[Tensor, Tensor, Tensor]:
    """``x_hat`` and the broadcastable ``(a, b)`` of ``kind`` at the samples' times."""
    t = process._time_for(t, x_t)
    s, sigma = process._s(t), process._sigma(t)
    if bool((sigma <= 0).any()):
        raise ValueError(f"t must give sigma(t) > 0 to convert {kind!r} predictions: at sigma = 0 "
                         f"the eps, score, v and velocity kinds are undefined; got "
                         f"t = {float(t[sigma <= 0][0])} for {process!r}")
    a, b = _AFFINE[kind](s, sigma, process._ds_dt(t), process._dsigma_dt(t))
    return x_t / per_sample(s, x_t), per_sample(a, x_t), per_sample(b, x_t)


def _prepare(value: Any, name: str, kind: str, x_t: Any, t: Scalar,
             process: str | Process) -> tuple[Tensor, Tensor, Tensor] | None:
    """Validate a conversion's inputs; ``None`` for kind "x0" (the identity), else
    ``(x_hat, a, b)`` with ``prediction = a x_hat + b x0``."""
    process = get_process(process)
    kind = _check_kind(kind, "kind")
    x_t = check_batch(x_t, "x_t")
    check_same_shape(value, x_t, name, "x_t")
    if kind == "x0":
        process._time_for(t, x_t)
        return None
    return _coefficients(kind, process, x_t, t)


def prediction_from_x0(x0: Tensor, kind: str, x_t: Tensor, t: Scalar,
                       process: str | Process) -> Tensor:
    """Express a denoiser output ``D = E[x0 | x_t]`` as a prediction of another kind.

    ``eps = (x_hat - D) / sigma``, ``score = (D - x_hat) / (s sigma^2)``,
    ``v = (eps - sigma D) / sqrt(1 + sigma^2)``, ``velocity = s' x_hat + s sigma' eps``,
    with ``x_hat = x_t / s(t)``.

    Parameters
    ----------
    x0 : Tensor of shape ``(n, ...)``
        Denoiser output at ``(x_t, t)``.
    kind : {"x0", "eps", "score", "v", "velocity"}
        Prediction kind to return (see ``PREDICTIONS``).
    x_t : Tensor of the shape of ``x0``
        Process state.
    t : float or Tensor of shape ``(n,)``
        Process time; ``sigma(t)`` must be ``> 0`` unless ``kind == "x0"``.
    process : str or Process
        The forward process (a ``PROCESSES`` name or an instance).

    Returns
    -------
    Tensor of the shape of ``x_t``.

    References
    ----------
    Karras et al. (2022), arXiv:2206.00364, Eq. 3-4; Salimans, Ho (2022), "Progressive
    Distillation for Fast Sampling of Diffusion Models", arXiv:2202.00512, Sec. 4 (``v``).
    """
    coefficients = _prepare(x0, "x0", kind, x_t, t, process)
    if coefficients is None:
        return x0
    x_hat, a, b = coefficients
    return a * x_hat + b * x0


def x0_from(prediction: Tensor, kind: str, x_t: Tensor, t: Scalar,
            process: str | Process) -> Tensor:
    """Recover the denoiser output ``D = E[x0 | x_t]`` from a prediction of the given kind.

    The inverse of ``prediction_from_x0``: ``D = (prediction - a x_hat) / b`` with the kind's
    coefficients, e.g. ``D = x_hat - sigma eps`` or ``D = x_hat + s sigma^2 score``.

    Parameters
    ----------
    prediction : Tensor of shape ``(n, ...)``
        Model output of kind ``kind`` at ``(x_t, t)``.
    kind : {"x0", "eps", "score", "v", "velocity"}
        What ``prediction`` is.
    x_t, t, process
        As in ``prediction_from_x0``.

    Returns
    -------
    Tensor of the shape of ``x_t``.
    """
    coefficients = _prepare(prediction, "prediction", kind, x_t, t, process)
    if coefficients is None:
        return prediction
    x_hat, a, b = coefficients
    return (prediction - a * x_hat) / b


def convert(prediction: Tensor, *, from_: str, to: str, x_t: Tensor, t: Scalar,
            process: str | Process) -> Tensor:
    """Convert a prediction of kind ``from_`` at ``(x_t, t)`` into kind ``to``.

    Goes through the denoiser: ``prediction_from_x0(x0_from(prediction, from_), to)``.

    Parameters
    ----------
    prediction : Tensor of shape ``(n, ...)``
    from_, to : {"x0", "eps", "score", "v", "velocity"}
    x_t, t, process
        As in ``prediction_from_x0``.

    Returns
    -------
    Tensor of the shape of ``x_t``.

    Examples
    --------
    >>> import torch
    >>> x0, eps = torch.zeros(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    >>> x_t = get_process("rectified_flow").add_noise(x0, 0.5, eps)
    >>> convert(eps, from_="eps", to="velocity", x_t=x_t, t=0.5, process="rectified_flow")
    tensor([[1., 1.]], dtype=torch.float64)
    """
    from_, to = _check_kind(from_, "from_"), _check_kind(to, "to")
    x0 = x0_from(prediction, from_, x_t, t, process)
    return prediction_from_x0(x0, to, x_t, t, process)
