"""The solver protocol and the sampling loop shared by every solver.

A solver is one step rule over a sigma grid in the EDM convention (Karras et al. 2022): the state
``x`` is the unscaled variable ``x_hat = x0 + sigma * eps`` and the model is a denoiser
``D(x, sigma) -> E[x0 | x]``. The probability-flow ODE is ``dx/dsigma = (x - D(x, sigma)) / sigma``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor

from .._checks import all_finite

Denoiser = Callable[[Tensor, Tensor], Tensor]


def ode_derivative(x: Tensor, sigma: Tensor, denoised: Tensor) -> Tensor:
    """Probability-flow ODE derivative ``dx/dsigma = (x - D(x, sigma)) / sigma``.

    ``sigma`` is a 0-d tensor (one level for the whole batch); ``x`` and ``denoised`` have the
    batch shape ``(n, ...)``.
    """
    return (x - denoised) / sigma


def check_denoiser_and_state(denoiser: object, x: object) -> None:
    """Validate a denoiser (callable) and a sampler state (finite floating ``(n, ...)`` tensor)."""
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as denoiser(x, sigma), "
                        f"got {type(denoiser).__name__}")
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 1:
        raise TypeError("x must be a floating torch.Tensor of shape (n, ...)")
    if not all_finite(x):
        raise ValueError("x must be finite, got NaN or inf entries")


class CountingDenoiser:
    """Wraps a denoiser, calls it with a per-sample sigma of shape ``(n,)`` and counts calls.

    Every call is one function evaluation (NFE) for the whole batch, as in k-diffusion
    (``model(x, sigma * s_in)``).
    """

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser = denoiser
        self.nfe = 0

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        self.nfe += 1
        out = self.denoiser(x, sigma * x.new_ones(x.shape[0]))
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"denoiser must return a tensor of the input's shape "
                             f"{tuple(x.shape)}, got {got}")
        return out


class Solver(ABC):
    """One step rule of a sampler over a sigma grid.

    Class attributes declare the properties that the tests verify: ``order`` (the global order
    of convergence of the deterministic error, ``None`` if not defined), ``stochastic`` (whether
    a step draws noise) and ``nfe_per_step`` (denoiser calls per step, before any lower-order
    final step).

    A solver instance is created per sampling run; multistep solvers keep their history on the
    instance. ``order`` may be overridden per instance when it depends on an option (e.g. LMS).
    """

    name: ClassVar[str]
    order: ClassVar[float | None]
    stochastic: ClassVar[bool] = False
    nfe_per_step: ClassVar[int] = 1

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"solver {self.name!r} got unknown options: {sorted(options)}")

    @abstractmethod
    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        """Advance ``x`` from ``sigmas[i]`` to ``sigmas[i + 1]``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(order={self.order}, stochastic={self.stochastic})"


@dataclass
class SampleInfo:
    """What a sampling run did.

    Attributes
    ----------
    nfe : int
        Number of denoiser evaluations (each on the whole batch).
    sigmas : Tensor
        The grid that was integrated over.
    solver : str
        The solver's name.
    trajectory : list of Tensor
        ``x`` at every grid point (``trajectory[0]`` is the input) if ``record_trajectory`` was
        set, else empty.
    """

    nfe: int
    sigmas: Tensor
    solver: str
    trajectory: list[Tensor] = field(default_factory=list)


def multistep_order(order: int, history: int, i: int, n_steps: int,
                    lower_order_final: bool) -> int:
    """The order a multistep solver may use at step ``i`` of ``n_steps``.

    ``min(order, history + 1)`` where ``history`` is the number of consecutive previous
    denoiser outputs kept (the warm-up), further capped by ``n_steps - i`` (the number of steps
    left, this one included) when ``lower_order_final`` is set: the last steps of a short grid
    then use lower orders, as diffusers' ``lower_order_final`` does, which stabilises multistep
    solvers at very few steps. The step to ``sigma = 0`` is handled by each solver.
    """
    q = min(order, history + 1)
    if lower_order_final:
        q = min(q, n_steps - i)
    return max(q, 1)


class StepHistory:
    """The last ``maxlen`` per-step values of a multistep solver, newest first.

    ``start(i)`` begins step ``i``: the history is kept only if the previous step was
    ``i - 1`` of the same run, else cleared (a new run starts at ``i = 0``, and steps out of
    sequence cannot reuse it). ``push(value)`` then records the step's value. Iterating yields
    the values newest first.
    """

    def __init__(self, maxlen: int) -> None:
        self._items: deque[Any] = deque(maxlen=maxlen)
        self._last_i: int | None = None

    def consecutive(self, i: int) -> int:
        """How many values step ``i`` may use (0 unless the last step was ``i - 1``)."""
        return len(self._items) if self._last_i == i - 1 else 0

    def start(self, i: int) -> None:
        """Begin step ``i``: clear the history unless the last step was ``i - 1``."""
        if self._last_i != i - 1:
            self._items.clear()
        self._last_i = i

    def push(self, value: Any) -> None:
        self._items.appendleft(value)

    def __getitem__(self, k: int) -> Any:
        return self._items[k]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(self._items)
