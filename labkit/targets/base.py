"""The Target protocol: an exact distribution with its noised density, score and denoiser.

A target ``p`` on R^d is known in closed form at every noise level: with ``x = x0 + sigma * eps``,
``x0 ~ p`` and ``eps ~ N(0, I)``, the noised density is ``p_sigma = p * N(0, sigma^2 I)``, its score
is ``grad log p_sigma`` and the optimal denoiser is ``D(x, sigma) = E[x0 | x]``. Tweedie's formula
ties the two together, ``D(x, sigma) = x + sigma^2 * score(x, sigma)``, so a subclass implements
whichever is natural and inherits the other.

Subclasses implement the private hooks ``_sample``, ``_log_prob`` and ``_score`` and/or
``_denoise`` on already-validated inputs: ``x`` of shape ``(m, dim)`` and ``sigma`` of shape
``(m,)`` in ``x``'s dtype and device. The public methods validate, split the batch into chunks of
``chunk_size`` rows (so memory is bounded by the chunk, not by ``n``) and handle ``sigma = 0``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

import torch
from torch import Tensor

from .._checks import (DEFAULT_DTYPE, check_generator, check_points, check_positive_int,
                       check_sigma)


def map_rows(fn: Callable[..., Tensor], chunk: int, *rows: Tensor) -> Tensor:
    """``fn`` applied to aligned blocks of at most ``chunk`` rows of ``rows``, stacked in order.

    The results are written into one preallocated output, so peak memory is the output plus one
    block's intermediates (not twice the output); slice assignment is differentiable, so the
    result stays differentiable in the inputs.
    """
    n, c = rows[0].shape[0], max(1, int(chunk))
    first = fn(*(r[:c] for r in rows))
    if n <= c:
        return first
    out = first.new_empty((n,) + first.shape[1:])
    out[:c] = first
    for i in range(c, n, c):
        out[i:i + c] = fn(*(r[i:i + c] for r in rows))
    return out


class Target(ABC):
    """Base class of exact targets (see the module docstring for the protocol).

    Attributes
    ----------
    dim : int
        Dimension ``d`` of the space the target lives in.
    has_density : bool
        Whether the clean distribution (``sigma = 0``) has a density on R^d. Singular targets
        (spheres, curves, point clouds, low-rank Gaussians) set this to ``False``; their
        ``log_prob`` and ``score`` then require ``sigma > 0``.
    chunk_size : int
        Number of rows processed at once by the public methods.
    """

    dim: int
    has_density: bool = True
    chunk_size: int = 1 << 15

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}
        self._cast_cache: dict[tuple[torch.dtype, torch.device], dict[str, Tensor]] = {}

    # ------------------------------------------------------------------ parameters
    def _register(self, **tensors: Tensor) -> None:
        """Store float64 parameter tensors; ``_params(like)`` returns them cast to ``like``."""
        self._buffers.update(tensors)
        self._cast_cache.clear()

    def _params(self, like: Tensor) -> dict[str, Tensor]:
        """The registered parameters in ``like``'s dtype and device (cast once, then cached)."""
        key = (like.dtype, like.device)
        if key not in self._cast_cache:
            self._cast_cache[key] = {k: v.to(dtype=like.dtype if v.is_floating_point() else v.dtype,
                                             device=like.device)
                                     for k, v in self._buffers.items()}
        return self._cast_cache[key]

    @property
    def device(self) -> torch.device:
        """Device where the parameters live (CPU unless they were given elsewhere)."""
        for v in self._buffers.values():
            return v.device
        return torch.device("cpu")

    # ------------------------------------------------------------------ public API
    def sample(self, n: int, generator: torch.Generator | None = None, *,
               dtype: torch.dtype = DEFAULT_DTYPE,
               device: torch.device | str | None = None) -> Tensor:
        """Draw ``n`` exact samples of the clean distribution.

        Parameters
        ----------
        n : int
            Number of samples, ``n >= 1``.
        generator : torch.Generator, optional
            Source of randomness; the same seed gives the same samples. Its device must match
            ``device`` (CPU by default).
        dtype, device : optional
            Of the returned tensor (float64 on the parameters' device by default).

        Returns
        -------
        Tensor of shape ``(n, dim)``.
        """
        n = check_positive_int(n, "n")
        check_generator(generator)
        device = torch.device(device) if device is not None else self.device
        like = torch.empty(0, dtype=DEFAULT_DTYPE, device=device)
        return self._sample(n, generator, like).to(dtype)

    def sample_noised(self, n: int, sigma: float, generator: torch.Generator | None = None, *,
                      dtype: torch.dtype = DEFAULT_DTYPE,
                      device: torch.device | str | None = None) -> Tensor:
        """Draw ``n`` samples of ``p_sigma``: ``x0 + sigma * eps`` with ``x0 ~ p``, ``eps ~ N(0, I)``.

        Parameters
        ----------
        n : int
            Number of samples, ``n >= 1``.
        sigma : float or Tensor of shape ``(n,)``
            Noise level(s), ``>= 0``.
        generator : torch.Generator, optional
            Source of randomness for both ``x0`` and ``eps``.
        dtype, device : optional
            As in ``sample``.

        Returns
        -------
        Tensor of shape ``(n, dim)``.
        """
        x0 = self.sample(n, generator, dtype=dtype, device=device)
        s = check_sigma(sigma, n, x0)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        return x0 + s[:, None] * eps

    def log_prob(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """Log-density of ``p_sigma = p * N(0, sigma^2 I)`` at ``x``.

        Parameters
        ----------
        x : Tensor of shape ``(n, dim)``
            Points; dtype and device of the result follow ``x``. Differentiable in ``x``.
        sigma : float or Tensor of shape ``(n,)``
            Noise level(s), ``>= 0``; ``0`` (the default) is the clean density, which requires
            ``has_density``.

        Returns
        -------
        Tensor of shape ``(n,)``.
        """
        x, s = self._validate(x, sigma, need_density=True, what="log_prob")
        return self._chunked(self._log_prob, x, s)

    def score(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """Score ``grad_x log p_sigma(x)`` of the noised density.

        Parameters
        ----------
        x : Tensor of shape ``(n, dim)``
            Points; dtype and device of the result follow ``x``.
        sigma : float or Tensor of shape ``(n,)``
            Noise level(s), ``>= 0``; ``0`` requires ``has_density``.

        Returns
        -------
        Tensor of shape ``(n, dim)``.
        """
        x, s = self._validate(x, sigma, need_density=True, what="score")
        return self._chunked(self._score, x, s)

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """Optimal denoiser ``D(x, sigma) = E[x0 | x0 + sigma * eps = x] = x + sigma^2 score``.

        Parameters
        ----------
        x : Tensor of shape ``(n, dim)``
            Noisy points; dtype and device of the result follow ``x``.
        sigma : float or Tensor of shape ``(n,)``
            Noise level(s), ``>= 0``. At ``sigma = 0`` there is no noise and ``D(x, 0) = x``.

        Returns
        -------
        Tensor of shape ``(n, dim)``.
        """
        x, s = self._validate(x, sigma, need_density=False, what="denoise")
        zero = s == 0
        if not bool(zero.any()):
            return self._chunked(self._denoise, x, s)
        out = x.clone()
        keep = ~zero
        if bool(keep.any()):
            out[keep] = self._chunked(self._denoise, x[keep], s[keep])
        return out

    def __call__(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """A target is a denoiser: ``target(x, sigma)`` is ``target.denoise(x, sigma)``.

        This is the ``Denoiser`` protocol ``D(x, sigma)`` that every sampler accepts.
        """
        return self.denoise(x, sigma)

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _sample(self, n: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
        """``n`` clean samples as a ``(n, dim)`` tensor in ``like``'s dtype and device."""

    @abstractmethod
    def _log_prob(self, x: Tensor, sigma: Tensor) -> Tensor:
        """Log-density on validated inputs (``sigma`` of shape ``(m,)``)."""

    def _score(self, x: Tensor, sigma: Tensor) -> Tensor:
        """Score on validated inputs; by default from the denoiser through Tweedie's formula."""
        if type(self)._denoise is Target._denoise:
            raise NotImplementedError(f"{type(self).__name__} implements neither _score nor _denoise")
        return (self._denoise(x, sigma) - x) / sigma[:, None] ** 2

    def _denoise(self, x: Tensor, sigma: Tensor) -> Tensor:
        """Denoiser on validated inputs with ``sigma > 0``; by default Tweedie's formula."""
        if type(self)._score is Target._score:
            raise NotImplementedError(f"{type(self).__name__} implements neither _score nor _denoise")
        return x + sigma[:, None] ** 2 * self._score(x, sigma)

    # ------------------------------------------------------------------ helpers
    def _validate(self, x: Any, sigma: Any, *, need_density: bool, what: str) -> tuple[Tensor, Tensor]:
        x = check_points(x, self.dim)
        s = check_sigma(sigma, x.shape[0], x)
        if need_density and not self.has_density and bool((s == 0).any()):
            raise ValueError(f"sigma must be > 0 for {type(self).__name__}.{what}: the clean "
                             f"distribution is singular (it has no density on R^{self.dim})")
        return x, s

    def _chunked(self, fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, s: Tensor) -> Tensor:
        return map_rows(fn, self.chunk_size, x, s)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"
