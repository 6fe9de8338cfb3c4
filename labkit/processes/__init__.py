"""Forward processes in the EDM form ``x_t = s(t) (x0 + sigma(t) eps)`` and their adapters.

- ``Process`` and the concrete ``VE``, ``VP``, ``CosineVP``, ``EDM``, ``RectifiedFlow`` (registry
  ``PROCESSES``, lookup ``get_process``): scaling, noise level, derivatives, exact ``t(sigma)``.
- ``prediction_from_x0``, ``x0_from``, ``convert``: the prediction kinds ``PREDICTIONS`` (x0,
  eps, score, v, velocity) at a point.
- ``as_denoiser`` / ``as_model``: process-time models <-> EDM denoisers ``D(x, sigma)``.

See ``docs/processes.md`` for the formulas and their derivations.
"""

from .base import Process
from .conversions import PREDICTIONS, convert, prediction_from_x0, x0_from
from .registry import PROCESSES, get_process
from .schedules import EDM, VE, VP, CosineVP, RectifiedFlow
from .wrappers import TIME_INPUTS, as_denoiser, as_model

__all__ = ["Process", "VE", "VP", "CosineVP", "EDM", "RectifiedFlow", "PROCESSES", "get_process",
           "PREDICTIONS", "prediction_from_x0", "x0_from", "convert", "TIME_INPUTS",
           "as_denoiser", "as_model"]
