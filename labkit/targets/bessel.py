"""Modified Bessel functions of the first kind for spheres: a stable log and a stable ratio.

The noised uniform distribution on a sphere (see ``Sphere``) needs, for real order ``nu >= 0`` and
every ``z`` from 0 to beyond 1e12,

* ``log_bessel_iv_scaled(nu, z) = log(z^(-nu) e^(-z) I_nu(z))``, finite and smooth on
  ``[0, inf)`` (both scalings remove the overflow of ``I_nu`` at large ``z`` and its zero of order
  ``nu`` at ``z = 0``), and
* ``bessel_ratio(nu, z) = I_(nu+1)(z) / I_nu(z)``, which rises from ``z / (2 nu + 2)`` at ``z = 0``
  to ``1 - (2 nu + 1) / (2 z)`` as ``z -> inf``.

Both are torch functions that follow the dtype and device of ``z`` and are differentiable (twice)
in ``z``, with derivatives from the identities

``d/dz log(z^-nu e^-z I_nu(z)) = R_nu(z) - 1`` and ``R_nu'(z) = 1 - R_nu^2 - (2 nu + 1) R_nu / z``,

where ``R_nu = I_(nu+1) / I_nu`` (from ``I_nu' = I_(nu+1) + (nu / z) I_nu`` and
``I_(nu+1)' = I_nu - ((nu + 1) / z) I_(nu+1)``, DLMF 10.29.2).

Method. The values are computed in float64 on the CPU and cast back to ``z``'s dtype and device.
We chose ``scipy.special.ive`` (Amos 1986: series, Miller recurrence, uniform asymptotics) over a
pure-torch method because a torch version accurate to float64 round-off would have to reimplement
all of those regimes for real order; the cost is one host round trip per call on a GPU. Where
``ive`` cannot serve we switch method:

* ``z <= 2`` or ``ive`` below 1e-290 (small ``z`` at high order, where it underflows): the power
  series ``I_nu(z) = (z/2)^nu / Gamma(nu + 1) * sum_k (z^2/4)^k / (k! (nu + 1)_k)`` (DLMF 10.25.2),
  whose terms are all positive, so it is accurate to a few ulps per term;
* ``z > 1e9`` (Amos' routines return NaN beyond about 1.07e9): Hankel's expansion
  ``e^-z sqrt(2 pi z) I_nu(z) ~ sum_k (-1)^k a_k(nu) z^-k`` with
  ``a_k = prod_(j<=k) (4 nu^2 - (2j - 1)^2) / (k! 8^k)`` (DLMF 10.40.1), whose consecutive terms
  shrink by at least ``4 nu^2 / (8 z) <= 5e-4`` for ``nu <= 1000``.

Orders are limited to ``0 <= nu <= 1000``: beyond that the series region reaches ``z^2/4`` of
order 1e6 and its sum overflows.

References
----------
D. E. Amos, "Algorithm 644: A portable package for Bessel functions of a complex argument and
nonnegative order", ACM TOMS 12(3), 1986.
NIST Digital Library of Mathematical Functions (DLMF), sections 10.25, 10.29, 10.40.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.special
import torch
from torch import Tensor

from .._checks import as_float_tensor

MAX_ORDER = 1000.0
_TINY_IVE = 1e-290        # below this ive() is near underflow: use the power series instead
_SERIES_Z = 2.0           # at z <= 2 the series needs <= 20 terms and avoids log(ive) - nu log z
_HANKEL_Z = 1e9           # Amos' ive returns NaN above about 1.07e9
_SERIES_TERMS = 2000      # enough for nu <= 1000 (the underflow region then has z^2/4 < 2e5)
_HANKEL_TERMS = 12        # terms shrink by >= 2000x each at z > 1e9 and nu <= 1000


# ---------------------------------------------------------------------------- float64 kernels
def _power_series(nu: float, y: np.ndarray) -> np.ndarray:
    """``sum_k y^k / (k! (nu + 1)_k)``, the power series of ``Gamma(nu+1) (z/2)^-nu I_nu(z)``."""
    term = np.ones_like(y)
    total = np.ones_like(y)
    for k in range(1, _SERIES_TERMS):
        term = term * y / (k * (nu + k))
        total = total + term
        if bool(np.all(term <= 1e-17 * total)):
            return total
    raise AssertionError("Bessel power series did not converge; nu is outside the supported range")


def _hankel_series(nu: float, z: np.ndarray) -> np.ndarray:
    """``sum_k (-1)^k a_k(nu) z^-k``, the asymptotic series of ``e^-z sqrt(2 pi z) I_nu(z)``."""
    mu = 4.0 * nu * nu
    term = np.ones_like(z)
    total = np.ones_like(z)
    for k in range(1, _HANKEL_TERMS):
        term = -term * (mu - (2 * k - 1) ** 2) / (8.0 * k * z)
        total = total + term
    return total


def _split_regions(nu: float, z: np.ndarray, orders: tuple[float, ...]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Masks (series, hankel, amos) and ``ive(order, z)`` for each order on the Amos region.

    The series takes over where the highest order's ``ive`` nears underflow.
    """
    hankel = z > _HANKEL_Z
    zm = np.where(hankel, 1.0, z)
    ives = [scipy.special.ive(order, zm) for order in orders]
    series = ~hankel & ((z <= _SERIES_Z) | (ives[-1] < _TINY_IVE))
    return series, hankel, ~(series | hankel), ives


def _log_iv_scaled_f64(nu: float, z: np.ndarray) -> np.ndarray:
    series, hankel, amos, (ive0,) = _split_regions(nu, z, (nu,))
    out = np.empty_like(z)
    zs = z[series]
    out[series] = (np.log(_power_series(nu, zs * zs / 4.0)) - nu * math.log(2.0)
                   - math.lgamma(nu + 1.0) - zs)
    zh = z[hankel]
    out[hankel] = (np.log(_hankel_series(nu, zh)) - 0.5 * np.log(2.0 * math.pi * zh)
                   - nu * np.log(zh))
    out[amos] = np.log(ive0[amos]) - nu * np.log(z[amos])
    assert np.all(np.isfinite(out)), "log Bessel kernel produced a non-finite value"
    return out


def _ratio_f64(nu: float, z: np.ndarray) -> np.ndarray:
    series, hankel, amos, (ive0, ive1) = _split_regions(nu, z, (nu, nu + 1.0))
    out = np.empty_like(z)
    zs = z[series]
    ys = zs * zs / 4.0
    out[series] = zs / (2.0 * nu + 2.0) * _power_series(nu + 1.0, ys) / _power_series(nu, ys)
    zh = z[hankel]
    out[hankel] = _hankel_series(nu + 1.0, zh) / _hankel_series(nu, zh)
    out[amos] = ive1[amos] / ive0[amos]
    assert np.all(np.isfinite(out)), "Bessel ratio kernel produced a non-finite value"
    return out


def _apply_f64(kernel, nu: float, z: Tensor) -> Tensor:
    """Run a float64 numpy kernel on a CPU copy of ``z``; return it in ``z``'s dtype/device."""
    z64 = z.detach().to(device="cpu", dtype=torch.float64).contiguous()
    out = kernel(nu, z64.numpy().reshape(-1)).reshape(z64.shape)
    return torch.from_numpy(out).to(device=z.device, dtype=z.dtype)


# ---------------------------------------------------------------------------- autograd
class _LogIvScaled(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor, nu: float) -> Tensor:
        ctx.nu = nu
        ctx.save_for_backward(z)
        return _apply_f64(_log_iv_scaled_f64, nu, z)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (z,) = ctx.saved_tensors
        # R - 1 is formed in float64: in float32 R rounds to 1 for z > 1e7 and the slope is lost.
        slope = (_BesselRatio.apply(z.to(torch.float64), ctx.nu) - 1.0).to(z.dtype)
        return grad * slope, None


class _BesselRatio(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor, nu: float) -> Tensor:
        ctx.nu = nu
        ctx.save_for_backward(z)
        return _apply_f64(_ratio_f64, nu, z)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (z,) = ctx.saved_tensors
        nu = ctx.nu
        ratio = _BesselRatio.apply(z, nu)
        # R / z -> 1 / (2 nu + 2) at z = 0; the safe denominator keeps NaN out of double backward.
        positive = z > 0
        ratio_over_z = torch.where(positive, ratio / torch.where(positive, z, torch.ones_like(z)),
                                   torch.full_like(z, 1.0 / (2.0 * nu + 2.0)))
        return grad * (1.0 - ratio * ratio - (2.0 * nu + 1.0) * ratio_over_z), None


# ---------------------------------------------------------------------------- public API
def _check_order(nu: Any) -> float:
    if isinstance(nu, bool) or not isinstance(nu, (int, float)):
        raise TypeError(f"nu must be a real number in [0, {MAX_ORDER:g}], got {type(nu).__name__}")
    nu = float(nu)
    if not (0.0 <= nu <= MAX_ORDER):
        raise ValueError(f"nu must be a real number in [0, {MAX_ORDER:g}], got {nu}")
    return nu


def _check_argument(z: Any) -> Tensor:
    z = as_float_tensor(z, "z")
    if bool((z < 0).any()):
        raise ValueError(f"z must be >= 0, got minimum {float(z.min())}")
    return z


def log_bessel_iv_scaled(nu: float, z: Tensor) -> Tensor:
    """Doubly scaled log Bessel function ``log(z^(-nu) e^(-z) I_nu(z))``.

    At ``z = 0`` it equals ``-nu log 2 - log Gamma(nu + 1)``; as ``z -> inf`` it behaves like
    ``-(nu + 1/2) log z - log(2 pi) / 2``. Its derivative is ``I_(nu+1)(z) / I_nu(z) - 1``.

    Parameters
    ----------
    nu : float
        Order, ``0 <= nu <= 1000`` (half-integers ``nu = (k - 1) / 2`` arise for the k-sphere).
    z : Tensor of any shape
        Arguments, finite and ``>= 0``; the result follows its dtype and device and is
        differentiable (twice) in ``z``.

    Returns
    -------
    Tensor of the shape of ``z``.

    References
    ----------
    DLMF 10.25.2 (series), 10.40.1 (Hankel expansion); D. E. Amos, ACM TOMS 12(3), 1986.
    """
    nu = _check_order(nu)
    return _LogIvScaled.apply(_check_argument(z), nu)


def log_bessel_iv(nu: float, z: Tensor) -> Tensor:
    """Log modified Bessel function ``log I_nu(z) = log_bessel_iv_scaled(nu, z) + z + nu log z``.

    Free of overflow: ``I_nu(z) ~ e^z / sqrt(2 pi z)`` is never formed (DLMF 10.40.1).

    Parameters
    ----------
    nu : float
        Order, ``0 <= nu <= 1000``.
    z : Tensor of any shape
        Arguments, finite and ``>= 0``; the result follows its dtype and device and is
        differentiable (twice) in ``z``, with ``d/dz log I_nu(z) = I_(nu+1)(z) / I_nu(z) + nu / z``.

    Returns
    -------
    Tensor of the shape of ``z``: ``log I_nu(z)``; at ``z = 0``, ``0`` for ``nu = 0`` and
    ``-inf`` for ``nu > 0``.
    """
    nu = _check_order(nu)
    z = _check_argument(z)
    power = torch.xlogy(torch.full_like(z, nu), z) if nu > 0 else torch.zeros_like(z)
    return _LogIvScaled.apply(z, nu) + z + power


def bessel_ratio(nu: float, z: Tensor) -> Tensor:
    """Ratio ``I_(nu+1)(z) / I_nu(z)`` of modified Bessel functions, in ``[0, 1)``.

    Near 0 it is ``z / (2 nu + 2) + O(z^3)``; for large ``z`` it is ``1 - (2 nu + 1) / (2 z) +
    O(z^-2)``. Its derivative is ``1 - R^2 - (2 nu + 1) R / z``.

    Parameters
    ----------
    nu : float
        Order, ``0 <= nu <= 1000``.
    z : Tensor of any shape
        Arguments, finite and ``>= 0``; the result follows its dtype and device and is
        differentiable (twice) in ``z``.

    Returns
    -------
    Tensor of the shape of ``z``.

    References
    ----------
    DLMF 10.29.2; D. E. Amos, "Computation of modified Bessel functions and their ratios",
    Math. Comp. 28(125), 1974.
    """
    nu = _check_order(nu)
    return _BesselRatio.apply(_check_argument(z), nu)
