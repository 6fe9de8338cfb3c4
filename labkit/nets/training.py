"""Training EDM-preconditioned denoisers: loss, EMA, atomic checkpoints, resume, DDP.

The loss (Karras et al. 2022, arXiv:2206.00364, Eq. 2 and Table 1; NVlabs/edm
``training/loss.py::EDMLoss``) is, for ``x0`` from the data, ``eps ~ N(0, I)`` and a random
noise level ``sigma``::

    L = E_{x0, sigma, eps} [ lambda(sigma) * mean_dims (D(x0 + sigma eps, sigma) - x0)^2 ]

with ``sigma ~ exp(N(p_mean, p_std^2))`` ("lognormal", EDM) or ``log sigma ~ U[log sigma_min,
log sigma_max]`` ("loguniform"), and weights

=========== ================================== ==============================================
weighting   lambda(sigma)                       meaning
=========== ================================== ==============================================
"edm"       (sigma^2 + sd^2) / (sigma sd)^2     = 1 / c_out^2: unit-variance network target
"uniform"   1                                   plain denoiser MSE (over-weights large sigma)
"score"     1 / sigma^2                         denoising score matching on ``(D - x)/sigma^2``
                                                with Song's lambda = sigma^2 (arXiv:2011.13456)
=========== ================================== ==============================================

(``sd`` = the model's ``sigma_data``). ``"score"``: ``||s_theta - s||^2 sigma^2 =
||D - x0||^2 / sigma^2`` with ``s = (x0 - x) / sigma^2`` the DSM target (Vincent 2011).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .._checks import check_bool, check_choice, check_generator, check_positive_int
from ..progress import progress as progress_bar
from ..targets.base import Target
from .fp_penalty import fp_penalty
from .precond import EDMPrecond

__all__ = ["TrainConfig", "TrainResult", "train", "load_checkpoint", "edm_loss",
           "loss_weight", "sample_sigma"]

WEIGHTINGS = ("edm", "uniform", "score")
SIGMA_DISTRIBUTIONS = ("lognormal", "loguniform")
CHECKPOINT_FORMAT = "labkit.nets.training/1"
# Config fields that may change between a checkpoint and its resumption: they do not alter the
# sequence of updates (steps only extends it; compile changes kernels, not the maths).
RESUMABLE_FIELDS = ("steps", "checkpoint_every", "log_every", "compile")
# Largest data dimension for which TrainConfig.fp_weight > 0 is accepted (d + 2 passes).
FP_MAX_DIM = 16


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train` (validated on construction).

    Attributes
    ----------
    steps : int
        Total number of optimiser steps (a resumed run continues up to this count).
    batch_size : int
        Minibatch size per process (per rank under DDP).
    lr : float
        Adam learning rate (``betas=(0.9, 0.999)``, ``eps=1e-8``).
    lr_warmup : int
        Linear warm-up: ``lr_t = lr * min(1, (t + 1) / lr_warmup)``; 0 disables it.
    sigma_distribution : str
        ``"lognormal"`` (``log sigma ~ N(p_mean, p_std^2)``) or ``"loguniform"``
        (``log sigma ~ U[log sigma_min, log sigma_max]``).
    p_mean, p_std : float
        Log-normal parameters (EDM: -1.2, 1.2).
    sigma_min, sigma_max : float
        Log-uniform range.
    weighting : str
        ``"edm"``, ``"uniform"`` or ``"score"`` (see the module docstring).
    ema_decay : float
        EMA ``theta_ema <- decay theta_ema + (1 - decay) theta`` after every step, in [0, 1).
    grad_clip : float or None
        Clip the global gradient 2-norm to this value.
    seed : int
        Seeds the minibatch (data) and noise (sigma, eps) generators; rank ``r`` uses ``seed + r``.
    checkpoint_every : int
        Write a checkpoint every this many steps (and always at the end).
    autocast : str or None
        ``"bf16"``: the network forward runs under ``torch.autocast(device, torch.bfloat16)``.
    compile : bool or str
        ``True`` wraps the network with ``torch.compile`` (default backend), a string names the
        backend (``"eager"``, ``"inductor"``, ...).
    log_every : int
        Call ``callback`` and refresh the progress bar's loss every this many steps. Losses are
        copied to the host (one device synchronisation) and checked for NaN/inf every
        ``log_every`` steps, at checkpoints and at the end; with the default 1 a non-finite
        loss stops training before its update is applied, with a larger value up to
        ``log_every - 1`` updates may run first (set it to ~100 on a GPU, where a sync per
        step costs time).
    fp_weight : float
        ``lambda >= 0``: the loss of every step becomes ``edm_loss + lambda * fp_penalty``
        (:func:`labkit.nets.fp_penalty.fp_penalty`, the scale-free squared score
        Fokker-Planck residual ``mean sigma^4 |r|^2 / d``; Lai et al. arXiv:2210.04296, Deveney
        et al. arXiv:2311.15996). ``0`` (default) leaves training bit-for-bit unchanged.
        ``> 0`` needs vector data ``(N, d)`` with ``d <= 16`` and cannot be combined with
        ``autocast``, ``compile`` or DDP (double backward is not supported there).
    fp_rows : int
        The penalty is evaluated on the first ``min(fp_rows, batch_size)`` rows of each
        minibatch's noised points (the same ``x0 + sigma eps`` and ``sigma`` as the denoising
        loss): it costs ``d + 2`` double-backward passes, so it is kept to a subset.
    """

    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    lr_warmup: int = 0
    sigma_distribution: str = "lognormal"
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    weighting: str = "edm"
    ema_decay: float = 0.999
    grad_clip: float | None = None
    seed: int = 0
    checkpoint_every: int = 500
    autocast: str | None = None
    compile: bool | str = False
    log_every: int = 1
    fp_weight: float = 0.0
    fp_rows: int = 32

    def __post_init__(self) -> None:
        check_positive_int(self.steps, "TrainConfig.steps")
        check_positive_int(self.batch_size, "TrainConfig.batch_size")
        check_positive_int(self.lr_warmup, "TrainConfig.lr_warmup", minimum=0)
        check_positive_int(self.seed, "TrainConfig.seed", minimum=0)
        check_positive_int(self.checkpoint_every, "TrainConfig.checkpoint_every")
        check_positive_int(self.log_every, "TrainConfig.log_every")
        _check_float(self.lr, "TrainConfig.lr", positive=True)
        _check_float(self.p_mean, "TrainConfig.p_mean")
        _check_float(self.p_std, "TrainConfig.p_std", positive=True)
        _check_float(self.sigma_min, "TrainConfig.sigma_min", positive=True)
        _check_float(self.sigma_max, "TrainConfig.sigma_max", positive=True)
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"TrainConfig.sigma_min must be < sigma_max, got "
                             f"{self.sigma_min} >= {self.sigma_max}")
        check_choice(self.sigma_distribution, "TrainConfig.sigma_distribution",
                     SIGMA_DISTRIBUTIONS)
        check_choice(self.weighting, "TrainConfig.weighting", WEIGHTINGS)
        _check_float(self.ema_decay, "TrainConfig.ema_decay")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"TrainConfig.ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.grad_clip is not None:
            _check_float(self.grad_clip, "TrainConfig.grad_clip", positive=True)
        if self.autocast is not None:
            check_choice(self.autocast, "TrainConfig.autocast", ("bf16",))
        if not isinstance(self.compile, (bool, str)) or self.compile == "":
            raise TypeError("TrainConfig.compile must be a bool or a torch.compile backend "
                            f"name such as 'eager' or 'inductor', got {self.compile!r}")
        _check_float(self.fp_weight, "TrainConfig.fp_weight")
        if self.fp_weight < 0:
            raise ValueError(f"TrainConfig.fp_weight must be >= 0, got {self.fp_weight}")
        check_positive_int(self.fp_rows, "TrainConfig.fp_rows")
        if self.fp_weight > 0 and (self.compile is not False or self.autocast is not None):
            raise ValueError("TrainConfig.fp_weight > 0 (the Fokker-Planck penalty needs double "
                             "backward) cannot be combined with TrainConfig.compile or "
                             "TrainConfig.autocast; set fp_weight=0 or compile=False, "
                             "autocast=None")


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : EDMPrecond
        The trained model (the object passed in, trained in place).
    ema : EDMPrecond
        A copy with the exponential-moving-average weights (usually the better sampler).
    losses : Tensor of shape ``(steps,)``
        Minibatch loss at every step (averaged over ranks under DDP), float32 on the CPU;
        includes the steps of the run that a resumed call continued. With
        ``config.fp_weight > 0`` it is the total ``edm_loss + fp_weight * fp_penalty``.
    steps : int
        Steps done in total.
    wall_s : float
        Wall-clock seconds of this call.
    fp_losses : Tensor of shape ``(steps,)`` or None
        The Fokker-Planck penalty (unweighted, before ``fp_weight``) at every step, float32 on
        the CPU (kept in checkpoints, so a resumed run has all steps); ``None`` when
        ``config.fp_weight == 0``.
    """

    model: EDMPrecond
    ema: EDMPrecond
    losses: Tensor
    steps: int
    wall_s: float
    fp_losses: Tensor | None = None


def _check_float(value: Any, name: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be finite{' and > 0' if positive else ''}, got {value}")
    return float(value)


def loss_weight(sigma: Tensor, weighting: str, sigma_data: float) -> Tensor:
    """``lambda(sigma)`` of the weighting (``"edm"``, ``"uniform"`` or ``"score"``)."""
    check_choice(weighting, "weighting", WEIGHTINGS)
    if weighting == "edm":
        return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    if weighting == "score":
        return sigma**-2
    return torch.ones_like(sigma)


def sample_sigma(n: int, config: TrainConfig, generator: torch.Generator | None = None, *,
                 device: torch.device | str = "cpu") -> Tensor:
    """``n`` float32 noise levels from ``config.sigma_distribution`` (whatever torch's default
    dtype: the random stream, and so training, does not depend on it)."""
    u = torch.randn(n, generator=generator, device=device, dtype=torch.float32) \
        if config.sigma_distribution == "lognormal" \
        else torch.rand(n, generator=generator, device=device, dtype=torch.float32)
    if config.sigma_distribution == "lognormal":
        return (u * config.p_std + config.p_mean).exp()
    lo, hi = math.log(config.sigma_min), math.log(config.sigma_max)
    return (lo + (hi - lo) * u).exp()


def edm_loss(model: nn.Module, x0: Tensor, sigma: Tensor, weighting: str = "edm", *,
             sigma_data: float | None = None, noise: Tensor | None = None,
             generator: torch.Generator | None = None,
             class_labels: Tensor | None = None) -> Tensor:
    """The weighted denoising loss ``mean_{batch, dims} lambda(sigma) (D(x0 + sigma eps) - x0)^2``.

    Parameters
    ----------
    model : nn.Module
        A denoiser ``model(x, sigma, class_labels)`` (an :class:`EDMPrecond`, possibly wrapped by
        DDP).
    x0 : Tensor of shape ``(n, ...)``
        Clean data.
    sigma : Tensor of shape ``(n,)``
        Noise level of each row, ``> 0``.
    weighting : str
        ``"edm"``, ``"uniform"`` or ``"score"``.
    sigma_data : float, optional
        For ``"edm"``; default ``model.sigma_data``.
    noise : Tensor, optional
        ``eps`` of ``x0``'s shape; drawn from ``generator`` if omitted.
    generator : torch.Generator, optional
    class_labels : Tensor, optional
        Passed to the model.

    Returns
    -------
    Tensor
        Scalar loss (differentiable in the model's parameters).
    """
    check_choice(weighting, "weighting", WEIGHTINGS)
    check_generator(generator)
    if not isinstance(x0, Tensor) or not x0.is_floating_point() or x0.ndim < 2:
        raise TypeError("x0 must be a floating tensor of shape (n, ...)")
    if not isinstance(sigma, Tensor) or sigma.shape != (x0.shape[0],):
        raise ValueError(f"sigma must be a tensor of shape ({x0.shape[0]},), "
                         f"got {tuple(getattr(sigma, 'shape', ()))}")
    if sigma_data is None:
        sigma_data = getattr(getattr(model, "module", model), "sigma_data", None)
        if sigma_data is None:
            raise ValueError("sigma_data must be given for a model without .sigma_data")
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    elif noise.shape != x0.shape:
        raise ValueError(f"noise must have x0's shape {tuple(x0.shape)}, "
                         f"got {tuple(noise.shape)}")
    shape = (-1,) + (1,) * (x0.ndim - 1)
    denoised = model(x0 + sigma.reshape(shape) * noise, sigma, class_labels)
    per_row = (denoised - x0).square().flatten(1).mean(1)
    return (loss_weight(sigma, weighting, sigma_data) * per_row).mean()


# ---------------------------------------------------------------------------------- helpers
def _dist_info() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` without an initialised process group."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _check_data(data: Any, labels: Any, model: EDMPrecond, device: torch.device):
    """Validate ``data``/``labels``; return (data on device or Target, labels on device)."""
    net_dim = getattr(model.net, "dim", None)
    if isinstance(data, Target):
        if net_dim is not None and data.dim != net_dim:
            raise ValueError(f"data is a Target of dim {data.dim} but the model's network "
                             f"takes dim {net_dim}")
        if labels is not None:
            raise ValueError("labels are only supported with a Tensor data set, not a Target")
        return data, None
    if not isinstance(data, Tensor) or not data.is_floating_point() or data.ndim < 2:
        raise TypeError("data must be a labkit Target or a floating Tensor of shape (N, ...), "
                        f"got {getattr(data, 'shape', type(data).__name__)}")
    if net_dim is not None and (data.ndim != 2 or data.shape[1] != net_dim):
        raise ValueError(f"data must have shape (N, {net_dim}) for this model, "
                         f"got {tuple(data.shape)}")
    if not bool(torch.isfinite(data).all()):
        raise ValueError("data must be finite, got NaN or inf entries")
    if labels is not None:
        if not isinstance(labels, Tensor) or labels.dtype != torch.long \
                or labels.shape != (data.shape[0],):
            raise ValueError(f"labels must be an int64 tensor of shape ({data.shape[0]},) "
                             f"(one per data row), got {getattr(labels, 'dtype', None)} "
                             f"{tuple(getattr(labels, 'shape', ()))}")
        labels = labels.to(device)
    return data.to(device=device, dtype=torch.float32), labels


def _atomic_save(obj: dict, path: Path) -> None:
    """``torch.save`` to a temporary file in ``path``'s directory, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | Path, model: EDMPrecond, *,
                    map_location: Any = "cpu") -> dict[str, Any]:
    """Load a :func:`train` checkpoint into ``model`` (in place) and return the whole record.

    The record holds ``model``, ``ema`` (state dicts), ``optimizer``, ``step``, ``rng`` (one
    ``(data, noise)`` generator-state pair per rank), ``config`` (a dict of
    :class:`TrainConfig` fields), ``losses``, ``world_size`` and, when ``config.fp_weight > 0``,
    ``fp_losses``. To get the EMA model:
    ``ema = copy.deepcopy(model); ema.load_state_dict(record["ema"])``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    record = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(record, dict) or record.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a labkit training checkpoint "
                         f"(format {CHECKPOINT_FORMAT})")
    model.load_state_dict(record["model"])
    return record


def _check_resumable(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    for field in dataclasses.fields(TrainConfig):
        name = field.name
        if name in RESUMABLE_FIELDS:
            continue
        if name == "fp_rows" and saved.get("fp_weight", 0.0) == 0 and config.fp_weight == 0:
            continue  # without the penalty fp_rows changes nothing
        # A field missing from an older checkpoint did not exist then: that run used the
        # behaviour of its default (e.g. fp_weight=0).
        was = saved.get(name, field.default)
        if was != getattr(config, name):
            raise ValueError(f"checkpoint {str(path)!r} was written with config.{name}="
                             f"{was!r} but this call has {getattr(config, name)!r}; "
                             "use the same value, another checkpoint path, or resume=False "
                             "(labkit train: --no-resume)")


def _check_fp_setting(data: Tensor | Target, model: EDMPrecond, world: int) -> None:
    """Refuse ``fp_weight > 0`` where the penalty is unsupported or hopeless."""
    if world > 1:
        raise ValueError(f"TrainConfig.fp_weight > 0 is not supported under DDP (world size "
                         f"{world}): the penalty's double backward is untested with "
                         "DistributedDataParallel; train in one process or set fp_weight=0")
    if model.autocast is not None:
        raise ValueError(f"TrainConfig.fp_weight > 0 cannot be used with a model built with "
                         f"autocast={model.autocast} (the penalty's second derivatives need "
                         "full precision); build the EDMPrecond with autocast=None")
    dim = data.dim if isinstance(data, Target) else (data.shape[1] if data.ndim == 2 else None)
    if dim is None or dim > FP_MAX_DIM:
        raise ValueError(f"TrainConfig.fp_weight > 0 needs vector data of shape (N, d) with "
                         f"d <= {FP_MAX_DIM} (the Fokker-Planck penalty costs d + 2 double-"
                         f"backward passes), got data of shape "
                         f"{tuple(data.shape) if isinstance(data, Tensor) else ('N', dim)}; "
                         "set fp_weight=0")


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    ema_p = [p for p in ema.parameters()]
    cur_p = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_p, cur_p, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


# ---------------------------------------------------------------------------------- train
def train(model: EDMPrecond, data: Tensor | Target, config: TrainConfig, *,
          labels: Tensor | None = None, checkpoint: str | Path | None = None,
          resume: bool = True, progress: bool | None = None,
          callback: Callable[[dict[str, Any]], None] | None = None,
          device: torch.device | str | None = None) -> TrainResult:
    """Train an EDM-preconditioned denoiser with Adam on the loss of :func:`edm_loss`.

    Parameters
    ----------
    model : EDMPrecond
        Trained in place (parameters moved to ``device``); e.g. :func:`labkit.nets.mlp_denoiser`.
    data : Tensor or Target
        A fixed training set ``(N, ...)`` (minibatches drawn with replacement by a generator
        seeded with ``config.seed``; cast to float32) or a labkit ``Target`` (fresh
        ``target.sample(batch_size, generator)`` each step, cast to float32).
    config : TrainConfig
    labels : Tensor of int64, shape ``(N,)``, optional
        Class labels of a Tensor data set, passed to the network with each minibatch.
    checkpoint : str or Path, optional
        File written atomically (temporary file + ``os.replace``) every
        ``config.checkpoint_every`` steps and at the end, by rank 0 only.
    resume : bool
        If ``checkpoint`` exists, continue from it (``True``) or start over and overwrite it.
        A resumed run reproduces the uninterrupted one exactly (same weights, same losses).
    progress : bool or None
        Progress bar (showing the loss); ``None`` = automatic (see :mod:`labkit.progress`).
    callback : callable, optional
        Called every ``config.log_every`` steps with ``dict(step, loss, model, ema)``
        (``step`` counts completed steps; plus ``fp_loss``, the unweighted penalty, when
        ``config.fp_weight > 0``).
    device : torch.device or str, optional
        Where to train; default the model's device.

    Returns
    -------
    TrainResult

    Notes
    -----
    Under ``torch.distributed`` (e.g. ``torchrun --nproc_per_node=K script.py`` after
    ``init_process_group``) the preconditioned model is wrapped in ``DistributedDataParallel``:
    rank ``r`` draws its own minibatches and noise from ``seed + r``, DDP averages gradients
    (so the effective batch is ``K * batch_size``), and since every rank then applies the same
    Adam update the weights and the EMA stay identical; rank 0 writes checkpoints.

    Raises
    ------
    FloatingPointError
        If the loss becomes NaN or inf (the message names the step and the learning rate).
    ValueError
        With ``config.fp_weight > 0``: under DDP, for a model built with ``autocast``, or for
        data that are not vectors ``(N, d)`` with ``d <= 16``.
    """
    if not isinstance(model, EDMPrecond):
        raise TypeError(f"model must be a labkit.nets.EDMPrecond, got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    check_bool(resume, "resume")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable or None")
    if device is None:
        device = next(model.parameters()).device if any(True for _ in model.parameters()) \
            else torch.device("cpu")
    device = torch.device(device)
    rank, world = _dist_info()
    data, labels = _check_data(data, labels, model, device)
    use_fp = config.fp_weight > 0
    if use_fp:
        _check_fp_setting(data, model, world)

    start = time.perf_counter()
    model.to(device=device, dtype=torch.float32)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    # Two streams per rank: the data stream lives where the data are (CPU for a Target's default
    # generator), the noise stream (sigma, eps) on the training device.
    data_device = data.device
    data_gen = torch.Generator(device=data_device).manual_seed(config.seed + rank)
    noise_gen = torch.Generator(device=device).manual_seed(config.seed + rank + (1 << 32))
    losses = torch.zeros(config.steps, dtype=torch.float32)
    fp_losses = torch.zeros(config.steps, dtype=torch.float32) if use_fp else None
    step = 0

    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and resume and path.exists():
        record = load_checkpoint(path, model, map_location=device)
        _check_resumable(record["config"], config, path)
        if record["world_size"] != world:
            raise ValueError(f"checkpoint {str(path)!r} was written by {record['world_size']} "
                             f"processes, this run has {world}; resume with the same world size")
        step = int(record["step"])
        if step > config.steps:
            raise ValueError(f"checkpoint {str(path)!r} is at step {step} > config.steps="
                             f"{config.steps}; raise config.steps or use resume=False "
                             "(labkit train: --no-resume)")
        ema.load_state_dict(record["ema"])
        optimizer.load_state_dict(record["optimizer"])
        data_state, noise_state = record["rng"][rank]
        data_gen.set_state(data_state.cpu())
        noise_gen.set_state(noise_state.cpu())
        losses[:step] = record["losses"][:step].float().cpu()
        if use_fp:
            fp_losses[:step] = record["fp_losses"][:step].float().cpu()

    train_net = model.net
    if config.compile is not False:
        backend = config.compile if isinstance(config.compile, str) else "inductor"
        train_net = torch.compile(model.net, backend=backend)
    autocast = torch.bfloat16 if config.autocast == "bf16" else model.autocast
    forward: nn.Module = EDMPrecond(train_net, model.sigma_data, autocast=autocast)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        forward = DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None)
        if step == 0:  # DDP broadcast rank 0's initial weights into model (shared parameters)
            ema.load_state_dict(model.state_dict())

    def save(at: int) -> None:
        states = (data_gen.get_state(), noise_gen.get_state())
        all_states = [states]
        if world > 1:
            all_states = [None] * world
            torch.distributed.all_gather_object(all_states, states)
        if rank == 0:
            _atomic_save({"format": CHECKPOINT_FORMAT, "model": model.state_dict(),
                          "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                          "step": at, "rng": all_states,
                          "config": dataclasses.asdict(config), "losses": losses[:at].clone(),
                          "world_size": world,
                          **({"fp_losses": fp_losses[:at].clone()} if use_fp else {})}, path)
        if world > 1:
            torch.distributed.barrier()

    # Losses wait on the device and are copied (one host sync) every log_every steps, at
    # checkpoints and at the end; a non-finite loss is reported then, naming its step.
    # Row 0 holds the losses, row 1 (with the penalty on) the Fokker-Planck penalties: one
    # device-to-host copy per flush for both.
    pending = torch.empty(2 if use_fp else 1, config.log_every, dtype=torch.float32,
                          device=device)
    flushed = step

    def flush(upto: int, start: int) -> int:
        both = pending[:, :upto - start].cpu()
        chunk = both[0]
        bad = (~torch.isfinite(chunk)).nonzero()
        if len(bad):
            at = start + int(bad[0])
            fp_hint = ""
            if use_fp and not bool(torch.isfinite(both[1, int(bad[0])])):
                fp_hint = (f" (the Fokker-Planck penalty was {float(both[1, int(bad[0])])}: "
                           f"lower TrainConfig.fp_weight={config.fp_weight}, or keep sigma "
                           "away from 0 with TrainConfig.sigma_min or p_mean)")
            raise FloatingPointError(
                f"training loss became {float(chunk[int(bad[0])])} at step {at}{fp_hint} "
                f"(lr={config.lr}); lower TrainConfig.lr, set TrainConfig.grad_clip or "
                "lr_warmup, or check the data")
        losses[start:upto] = chunk
        if use_fp:
            fp_losses[start:upto] = both[1]
        return upto

    bar = progress_bar(range(step, config.steps), total=config.steps, initial=step,
                       desc="train", enable=progress, unit="step")
    forward.train()
    for i in bar:
        if isinstance(data, Tensor):
            idx = torch.randint(data.shape[0], (config.batch_size,), generator=data_gen,
                                device=data_device)
            x0 = data[idx]
            batch_labels = labels[idx] if labels is not None else None
        else:
            x0 = data.sample(config.batch_size, data_gen).to(device=device, dtype=torch.float32)
            batch_labels = None
        sigma = sample_sigma(x0.shape[0], config, noise_gen, device=device)
        eps = torch.randn(x0.shape, generator=noise_gen, device=device, dtype=x0.dtype)
        if config.lr_warmup:
            for group in optimizer.param_groups:
                group["lr"] = config.lr * min(1.0, (i + 1) / config.lr_warmup)
        loss = edm_loss(forward, x0, sigma, config.weighting, sigma_data=model.sigma_data,
                        noise=eps, class_labels=batch_labels)
        if use_fp:  # on the first fp_rows noised points of this very minibatch
            m = min(config.fp_rows, x0.shape[0])
            penalty = fp_penalty(forward, x0[:m] + sigma[:m, None] * eps[:m], sigma[:m],
                                 class_labels=None if batch_labels is None
                                 else batch_labels[:m])
            pending[1, i - flushed] = penalty.detach()
            loss = loss + config.fp_weight * penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        reported = loss.detach()
        if world > 1:
            reported = reported.clone()
            torch.distributed.all_reduce(reported)
            reported /= world
        pending[0, i - flushed] = reported  # stays on the device: no host sync per step
        if config.log_every == 1:
            flushed = flush(i + 1, flushed)  # checked before the update, as documented
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        _ema_update(ema, model, config.ema_decay)
        done = i + 1
        at_checkpoint = path is not None and done % config.checkpoint_every == 0
        if done % config.log_every == 0 or done == config.steps or at_checkpoint:
            flushed = flush(done, flushed)
            value = float(losses[i])
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{value:.4g}", refresh=False)
            if callback is not None and (done % config.log_every == 0 or done == config.steps):
                info = {"step": done, "loss": value, "model": model, "ema": ema}
                if use_fp:
                    info["fp_loss"] = float(fp_losses[i])
                callback(info)
        if at_checkpoint and done != config.steps:
            save(done)
    if path is not None:
        save(config.steps)
    model.eval()
    ema.eval()
    return TrainResult(model=model, ema=ema, losses=losses, steps=config.steps,
                       wall_s=time.perf_counter() - start, fp_losses=fp_losses)
