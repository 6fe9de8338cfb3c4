"""Noise for stochastic solvers: one generator for the batch, or one generator per sample.

Every stochastic solver draws its standard normal noise through :func:`standard_normal`, so
that ``labkit.sample(..., generator=...)`` accepts

- ``None``: the global torch RNG;
- a ``torch.Generator``: one stream for the whole batch (on CPU, a generator seeded ``s`` gives
  the same numbers as k-diffusion's ``torch.manual_seed(s)`` + ``randn_like``);
- a list or tuple of ``n`` generators, one per sample (as diffusers' pipelines accept): sample
  ``j`` draws its noise from ``generator[j]`` only, so its trajectory does not depend on the
  other samples in the batch or on the batch size;
- a :class:`FixedNoise`: every draw returns one fixed value (used by
  ``labkit.likelihood.sde_chain`` to read off a step's mean and noise scale).
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor


class FixedNoise:
    """A stand-in for a generator whose every draw is the constant ``value``.

    A step that is affine in its one Gaussian draw, ``x' = m(x) + s(x) z``, gives ``m(x)`` when
    run with ``FixedNoise(0.0)`` and ``m(x) + s(x)`` with ``FixedNoise(1.0)``. ``draws`` counts
    the calls, so a caller can check how many draws a step makes.
    """

    def __init__(self, value: float) -> None:
        self.value = float(value)
        self.draws = 0

    def draw(self, x: Tensor) -> Tensor:
        self.draws += 1
        return torch.full(x.shape, self.value, dtype=x.dtype, device=x.device)


Generators = Union[None, torch.Generator, Sequence[torch.Generator], FixedNoise]


def check_generators(generator: object, x: Tensor | None = None) -> None:
    """Validate ``generator`` (None, a Generator, or one Generator per sample of ``x``).

    Raises ``TypeError`` for anything else, ``ValueError`` when a list's length is not the
    batch size or when a generator's device type differs from ``x``'s (torch cannot draw on
    one device with a generator of another).
    """
    if generator is None or isinstance(generator, FixedNoise):
        return
    if isinstance(generator, torch.Generator):
        gens: Sequence[torch.Generator] = [generator]
    elif isinstance(generator, (list, tuple)):
        if not all(isinstance(g, torch.Generator) for g in generator):
            raise TypeError("generator must be a torch.Generator, a list of torch.Generator "
                            "(one per sample) or None; the list holds other objects")
        gens = generator
        if x is not None and len(gens) != x.shape[0]:
            raise ValueError(f"generator list must have one generator per sample, got "
                             f"{len(gens)} generators for a batch of {x.shape[0]}")
    else:
        raise TypeError(f"generator must be a torch.Generator, a list of torch.Generator "
                        f"(one per sample) or None, got {type(generator).__name__}")
    if x is not None:
        for g in gens:
            if g.device.type != x.device.type:
                raise ValueError(f"generator is on device {g.device.type!r} but x is on "
                                 f"{x.device.type!r}; create the generator with "
                                 f"torch.Generator(device={str(x.device)!r})")


def standard_normal(x: Tensor, generator: Generators) -> Tensor:
    """A standard normal tensor of ``x``'s shape, dtype and device, drawn from ``generator``.

    With a list of generators, row ``j`` is ``torch.randn(x.shape[1:], generator=generator[j])``
    (one draw per generator: this is the only per-sample loop in the solvers, and it runs only
    when per-sample seeds are asked for).
    """
    if isinstance(generator, FixedNoise):
        return generator.draw(x)
    if isinstance(generator, (list, tuple)):
        return torch.stack([torch.randn(x.shape[1:], generator=g, dtype=x.dtype,
                                        device=x.device) for g in generator])
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
