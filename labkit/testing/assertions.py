"""Assertions that check a user's score, denoiser, sampler or solver against exact identities.

Each ``assert_*`` raises ``AssertionError`` with the worst offending row, the values compared and
the tolerance, and returns a small diagnostics object on success. Statistical checks state their
false-failure rate: a correct implementation fails with at most that probability over the
Monte Carlo or bootstrap randomness (fix the ``generator`` seed and a passing test stays passing).

Identities (``p_sigma = p * N(0, sigma^2 I)``, ``x = x0 + sigma eps``):

- score = autograd of log-density: ``score(x, sigma) = grad_x log p_sigma(x)``;
- Tweedie: ``D(x, sigma) = E[x0 | x] = x + sigma^2 score(x, sigma)``;
- posterior mean: ``D(x, sigma) = E_p[x0 N(x; x0, sigma^2 I)] / E_p[N(x; x0, sigma^2 I)]``;
- semigroup: ``E_eps[p_{s1}(x + s2 eps)] = p_{sqrt(s1^2 + s2^2)}(x)``;
- samples of ``p_sigma`` pass a kernel Stein discrepancy test against ``score(., sigma)``;
- a solver of order ``q`` has global error ``~ C h^q``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from .._checks import check_generator, check_points, check_positive_int, check_sigma
from .goodness_of_fit import KSDResult, ScoreLike, ksd_test

Fn = Callable[[Tensor, Any], Tensor]

_ROW_PREVIEW = 6  # coordinates shown per vector in failure messages


class InsufficientSampleSizeError(RuntimeError):
    """A Monte Carlo check cannot decide: its effective sample size is below the floor.

    Raised instead of passing (the standard error would be meaningless) or failing (the code
    under test may be right). Increase ``n_mc``, raise ``sigma``, or move the query points
    towards the target's support.
    """


@dataclass(frozen=True)
class ToleranceCheck:
    """Diagnostics of a deterministic comparison.

    Attributes
    ----------
    max_violation : float
        ``max |actual - expected| / (atol + rtol * scale)``; the check passed iff ``<= 1``.
    worst_row : int
        Row where it is attained.
    """

    max_violation: float
    worst_row: int


@dataclass(frozen=True)
class MonteCarloCheck:
    """Diagnostics of a Monte Carlo comparison.

    Attributes
    ----------
    max_violation : float
        ``max |estimate - claimed| / (z * stderr + atol)``; the check passed iff ``<= 1``.
    max_abs_z : float
        Largest ``|estimate - claimed| / stderr`` (``inf`` where ``stderr`` is 0 and they differ).
    worst_row : int
        Row of ``max_violation``.
    min_ess : float
        Smallest effective sample size over the rows.
    false_failure_bound : float
        Union (Bonferroni) bound on the probability that a correct implementation fails:
        ``min(1, m * erfc(z / sqrt(2)))`` for ``m`` compared numbers, exact in the large-sample
        normal limit of the estimator.
    """

    max_violation: float
    max_abs_z: float
    worst_row: int
    min_ess: float
    false_failure_bound: float


@dataclass(frozen=True)
class OrderFit:
    """Least-squares fit ``log error = slope * log h + intercept``.

    Attributes
    ----------
    slope : float
        Fitted order.
    intercept : float
        Fitted ``log C``.
    local_slopes : tuple of float
        Slopes between consecutive step sizes (shows where the asymptotic regime starts or where
        round-off takes over).
    step_sizes, errors : tuple of float
        The data, sorted by increasing step size.
    """

    slope: float
    intercept: float
    local_slopes: tuple[float, ...]
    step_sizes: tuple[float, ...]
    errors: tuple[float, ...]


# ---------------------------------------------------------------------------------- helpers
def false_failure_bound(z: float, m: int) -> float:
    """Bonferroni bound ``min(1, m * P(|N(0,1)| > z)) = min(1, m * erfc(z / sqrt 2))``.

    The probability that at least one of ``m`` two-sided ``z``-tests fails when every null
    holds (whatever their dependence). ``z = 4`` gives ``6.3e-5`` per compared number, ``z = 5``
    gives ``5.7e-7``.

    Parameters
    ----------
    z : float
        Allowed standard errors, ``> 0``.
    m : int
        Number of compared numbers (rows times coordinates).

    Returns
    -------
    float in ``[0, 1]``.
    """
    return min(1.0, m * math.erfc(z / math.sqrt(2.0)))


def _fmt(v: Tensor) -> str:
    vals = [f"{float(t):.6g}" for t in v.reshape(-1)[:_ROW_PREVIEW]]
    more = ", ..." if v.numel() > _ROW_PREVIEW else ""
    return "[" + ", ".join(vals) + more + "]"


def _check_tol(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return float(value)


def _check_z(z: Any) -> float:
    z = _check_tol(z, "z")
    if z <= 0:
        raise ValueError(f"z must be > 0, got {z}")
    return z


def _method(obj: Any, name: str, arg: str) -> Callable[..., Tensor]:
    fn = getattr(obj, name, None)
    if not callable(fn):
        raise TypeError(f"{arg} must have a callable .{name}(x, sigma), got {type(obj).__name__}")
    return fn


def _pair(obj: Any, first: str, second: str, arg: str) -> tuple[Callable[..., Tensor],
                                                                 Callable[..., Tensor]]:
    """``(obj.first, obj.second)`` of a target, or the two callables of a pair."""
    if isinstance(obj, (tuple, list)):
        if len(obj) != 2 or not all(callable(f) for f in obj):
            raise TypeError(f"{arg} must be a target or a pair ({first}, {second}) of callables")
        return obj[0], obj[1]
    return _method(obj, first, arg), _method(obj, second, arg)


def _output(value: Any, shape: tuple[int, ...], what: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{what} must return a Tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise AssertionError(f"{what} returned shape {tuple(value.shape)}, expected {shape}")
    return value


def _assert_close(actual: Tensor, expected: Tensor, scale: Tensor, x: Tensor, *, rtol: float,
                  atol: float, title: str, names: tuple[str, str]) -> ToleranceCheck:
    """Elementwise ``|actual - expected| <= atol + rtol * scale``; report the worst row."""
    err = (actual - expected).abs()
    tol = atol + rtol * scale
    with torch.no_grad():
        ratio = _ratio(err, tol)
        per_row = ratio.reshape(ratio.shape[0], -1).amax(dim=1)
        row = int(per_row.argmax())
        worst = float(per_row[row])
    if not worst <= 1.0:
        raise AssertionError(
            f"{title}: row {row} of {x.shape[0]} is off by {worst:.3g} tolerances "
            f"(atol={atol:g}, rtol={rtol:g}, scale of the row {float(scale[row].max()):.3g})\n"
            f"  {f'x[{row}]':<14s} = {_fmt(x[row])}\n"
            f"  {names[0]:<14s} = {_fmt(actual[row])}\n"
            f"  {names[1]:<14s} = {_fmt(expected[row])}\n"
            f"  {'|difference|':<14s} = {_fmt(err[row])}")
    return ToleranceCheck(max_violation=worst, worst_row=row)


def _ratio(err: Tensor, tol: Tensor) -> Tensor:
    """``err / tol`` in tolerance units: ``0/0 = 0``, ``x/0 = inf`` and NaN errors count as inf."""
    ratio = torch.where(tol > 0, err / tol.clamp_min(torch.finfo(err.dtype).tiny),
                        torch.where(err > 0, math.inf, 0.0))
    return torch.where(torch.isnan(err), math.inf, ratio)


def _sigma_rows(sigma: Any, x: Tensor, name: str = "sigma") -> Tensor:
    return check_sigma(sigma, x.shape[0], x, name=name, positive=True)


def _chunk(per_row: int, budget: int = 1 << 22) -> int:
    """Rows per chunk so that ``chunk * per_row`` numbers fit in ``budget`` (bounds memory)."""
    return max(1, budget // max(1, per_row))


def _points(x: Any, target: Any = None) -> Tensor:
    """Validate ``x`` as ``(n, d)``, with ``d = target.dim`` when the target declares one."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (n, d), got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got {tuple(x.shape)}")
    dim = getattr(target, "dim", None)
    return check_points(x, dim if isinstance(dim, int) else x.shape[1])


# ---------------------------------------------------------------------------------- exact
def assert_score_matches_log_prob(target_or_fns: Any, x: Tensor, sigma: float | Tensor = 0.0, *,
                                  rtol: float = 1e-6, atol: float = 1e-8) -> ToleranceCheck:
    """Assert ``score(x, sigma) = grad_x log_prob(x, sigma)`` (autograd) elementwise.

    Passes iff ``|score - grad| <= atol + rtol * |grad|`` for every entry. In float64 the
    defaults leave room for the round-off of a log-sum-exp over a few components and a Cholesky
    solve (about ``1e-12`` relative) by six orders of magnitude; for float32 use
    ``rtol ~ 1e-3``.

    Parameters
    ----------
    target_or_fns : Target or (log_prob, score) pair
        Anything with ``.log_prob(x, sigma) -> (n,)`` and ``.score(x, sigma) -> (n, d)``, or the
        two callables. ``log_prob`` must be differentiable in ``x`` with torch autograd.
    x : Tensor of shape ``(n, d)``
        Query points (floating; dtype and device are kept).
    sigma : float or Tensor of shape ``(n,)``
        Noise level(s) passed through unchanged.
    rtol, atol : float
        Relative and absolute tolerances.

    Returns
    -------
    ToleranceCheck
        The largest error in tolerance units and its row.

    Raises
    ------
    AssertionError
        With the worst row: ``x``, the score, the autograd gradient and their difference.
    """
    log_prob, score = _pair(target_or_fns, "log_prob", "score", "target_or_fns")
    x = _points(x, target_or_fns)
    rtol, atol = _check_tol(rtol, "rtol"), _check_tol(atol, "atol")
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        lp = log_prob(xg, sigma)
        lp = _output(lp, (x.shape[0],), "log_prob")
        if not lp.requires_grad:
            raise TypeError("log_prob must be differentiable in x with torch autograd "
                            "(its output does not require grad)")
        (grad,) = torch.autograd.grad(lp.sum(), xg)
    s = _output(score(x, sigma), tuple(x.shape), "score").detach()
    return _assert_close(s, grad, grad.abs(), x, rtol=rtol, atol=atol,
                         title="score does not match autograd of log_prob",
                         names=("score", "grad log_prob"))


def assert_tweedie(target_or_fns: Any, x: Tensor, sigma: float | Tensor, *, rtol: float = 1e-6,
                   atol: float = 1e-8) -> ToleranceCheck:
    """Assert Tweedie's formula ``D(x, sigma) = x + sigma^2 score(x, sigma)`` elementwise.

    Passes iff ``|D - (x + sigma^2 s)| <= atol + rtol * (|x| + sigma^2 |s|)``: the scale is that
    of the two terms, since far from the support they nearly cancel and their sum carries an
    absolute round-off of ``eps * |x|``.

    Parameters
    ----------
    target_or_fns : Target or (denoise, score) pair
        Anything with ``.denoise(x, sigma)`` and ``.score(x, sigma)``, both ``(n, d)``, or the two
        callables.
    x : Tensor of shape ``(n, d)``
    sigma : float or Tensor of shape ``(n,)``
        Noise level(s), ``> 0``.
    rtol, atol : float
        Tolerances (defaults as in :func:`assert_score_matches_log_prob`).

    Returns
    -------
    ToleranceCheck

    Raises
    ------
    AssertionError
        With the worst row: ``x``, ``D`` and ``x + sigma^2 score``.
    """
    denoise, score = _pair(target_or_fns, "denoise", "score", "target_or_fns")
    x = _points(x, target_or_fns)
    rtol, atol = _check_tol(rtol, "rtol"), _check_tol(atol, "atol")
    s2 = _sigma_rows(sigma, x)[:, None] ** 2
    with torch.no_grad():
        d = _output(denoise(x, sigma), tuple(x.shape), "denoise")
        s = _output(score(x, sigma), tuple(x.shape), "score")
        expected = x + s2 * s
        scale = x.abs() + s2 * s.abs()
    return _assert_close(d, expected, scale, x, rtol=rtol, atol=atol,
                         title="denoiser violates Tweedie's formula D = x + sigma^2 score",
                         names=("D(x, sigma)", "x + s^2 score"))


def assert_finite(tensor: Any, name: str = "tensor") -> None:
    """Assert that every entry of ``tensor`` is finite (no NaN, no inf).

    Parameters
    ----------
    tensor : Tensor or array_like
        Any shape; integer and boolean tensors are always finite.
    name : str
        How the message refers to it (e.g. ``"my_denoiser(x, sigma)"``).

    Raises
    ------
    AssertionError
        Naming ``name``, the number of non-finite entries and the first one's index and value.
    TypeError
        If ``tensor`` is not a tensor or array of numbers.
    """
    if not isinstance(tensor, Tensor):
        try:
            tensor = torch.as_tensor(tensor)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"tensor must be a tensor or array of numbers, "
                            f"got {type(tensor).__name__}") from err
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return  # integers and booleans are always finite
    bad = ~torch.isfinite(tensor)
    count = int(bad.sum())
    if count:
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise AssertionError(f"{name} has {count} non-finite entr{'y' if count == 1 else 'ies'} "
                             f"of {tensor.numel()}; first at index {first}: "
                             f"{tensor[first].item()}")


# ---------------------------------------------------------------------------------- Monte Carlo
def _weights_summary(logw: Tensor) -> tuple[Tensor, Tensor]:
    """Normalised weights ``softmax(logw)`` along the last axis and ``ESS = 1 / sum w^2``."""
    w = torch.softmax(logw, dim=-1)
    return w, 1.0 / (w * w).sum(dim=-1)


def _check_ess(ess: Tensor, min_ess: float, x: Tensor, what: str) -> None:
    row = int(ess.argmin())
    if float(ess[row]) < min_ess:
        raise InsufficientSampleSizeError(
            f"{what}: effective sample size {float(ess[row]):.1f} < min_ess={min_ess:g} at row "
            f"{row} (x = {_fmt(x[row])}), so the Monte Carlo standard error means nothing. "
            f"Increase n_mc, raise sigma, or move the point towards the target's support.")


def _mc_verdict(diff: Tensor, se: Tensor, z: float, atol: float, ess: Tensor, x: Tensor,
                title: str, detail: Callable[[int], str]) -> MonteCarloCheck:
    """Fail iff some ``|diff| > z * se + atol``; ``diff`` and ``se`` are ``(n, k)``."""
    err = diff.abs()
    ratio = _ratio(err, z * se + atol)
    per_row = ratio.amax(dim=1)
    row = int(per_row.argmax())
    zs = _ratio(err, se)
    check = MonteCarloCheck(max_violation=float(per_row[row]), max_abs_z=float(zs.max()),
                            worst_row=row, min_ess=float(ess.min()),
                            false_failure_bound=false_failure_bound(z, diff.numel()))
    if not check.max_violation <= 1.0:
        raise AssertionError(
            f"{title}: row {row} of {x.shape[0]} is {float(zs[row].max()):.3g} standard errors "
            f"off (allowed z={z:g}, atol={atol:g}; ESS {float(ess[row]):.0f}; a correct "
            f"implementation fails with probability <= {check.false_failure_bound:.2g})\n"
            f"  {f'x[{row}]':<14s} = {_fmt(x[row])}\n{detail(row)}")
    return check


@dataclass(frozen=True)
class PosteriorMeanEstimate:
    """Self-normalised importance-sampling estimate of ``E[x0 | x0 + sigma eps = x]``.

    Attributes
    ----------
    mean : Tensor of shape ``(n, d)``
        The estimate ``mu = sum_j w_j x0_j``.
    stderr : Tensor of shape ``(n, d)``
        Delta-method standard error per coordinate, ``sqrt(sum_j w_j^2 (x0_j - mu)^2)``.
    ess : Tensor of shape ``(n,)``
        Effective sample size ``1 / sum_j w_j^2`` of each row.
    x : Tensor of shape ``(n, d)``
        The validated query points.
    sigma : Tensor of shape ``(n,)``
        The noise level of each row.
    """

    mean: Tensor
    stderr: Tensor
    ess: Tensor
    x: Tensor
    sigma: Tensor


def monte_carlo_posterior_mean(target: Any, x: Tensor, sigma: float | Tensor, *,
                               n_mc: int = 20_000, independent: bool = False,
                               generator: torch.Generator | None = None
                               ) -> PosteriorMeanEstimate:
    """Monte Carlo posterior mean ``E[x0 | x]`` with the prior as proposal, and its error.

    ``x0_j ~ target.sample`` (``j = 1..M``), ``log w_j = -|x - x0_j|^2 / (2 sigma^2)``
    normalised in log space (softmax), ``mu = sum_j w_j x0_j``; standard error per coordinate by
    the delta method for a ratio estimator, ``se^2 = sum_j w_j^2 (x0_j - mu)^2``; effective
    sample size ``ESS = 1 / sum_j w_j^2``. The estimate is asymptotically normal as ESS grows;
    with a small ESS its standard error is unreliable (check ``ess``).

    Parameters
    ----------
    target : Target
        Supplies exact prior samples through ``sample(n, generator, dtype=, device=)``.
    x : Tensor of shape ``(n, d)``
        Query points; the computation follows their dtype and device.
    sigma : float or Tensor of shape ``(n,)``
        Noise level(s), ``> 0``.
    n_mc : int
        Number of prior samples ``M`` per row.
    independent : bool
        ``False`` (default): all rows share one set of ``M`` prior samples (cheap; the rows'
        errors are then correlated). ``True``: every row gets its own ``M`` samples, so the
        rows' errors are independent — needed when statistics are pooled over rows (e.g. an
        RMS z-score with a bootstrap interval over rows). Costs ``n * M`` prior samples.
    generator : torch.Generator, optional
        Source of the prior samples.

    Returns
    -------
    PosteriorMeanEstimate
    """
    sample = _method(target, "sample", "target")
    x = _points(x, target)
    n_mc = check_positive_int(n_mc, "n_mc", minimum=2)
    if not isinstance(independent, bool):
        raise TypeError(f"independent must be a bool, got {type(independent).__name__}")
    check_generator(generator)
    s = _sigma_rows(sigma, x)
    d = x.shape[1]
    with torch.no_grad():
        if not independent:
            shared = sample(n_mc, generator, dtype=x.dtype, device=x.device)[None]  # (1, M, d)
        mus, ses, esss = [], [], []
        c = _chunk(n_mc * d)
        for i in range(0, x.shape[0], c):
            xc, sc = x[i:i + c], s[i:i + c]
            x0 = shared if not independent else sample(
                xc.shape[0] * n_mc, generator, dtype=x.dtype, device=x.device
            ).reshape(xc.shape[0], n_mc, d)  # (c or 1, M, d)
            logw = -(xc[:, None, :] - x0).square().sum(-1) / (2.0 * sc[:, None] ** 2)  # (c, M)
            w, ess = _weights_summary(logw)
            mu = torch.einsum("cm,cmd->cd", w, x0.expand(xc.shape[0], -1, -1))
            # Delta method for a ratio estimator: Var(mu) ~ sum_j w_j^2 (x0_j - mu)^2.
            var = torch.einsum("cm,cmd->cd", w * w, (x0 - mu[:, None]).square())
            mus.append(mu), ses.append(var.sqrt()), esss.append(ess)
    return PosteriorMeanEstimate(torch.cat(mus), torch.cat(ses), torch.cat(esss), x, s)


def assert_denoiser_matches_monte_carlo(denoiser: Fn, target: Any, x: Tensor,
                                        sigma: float | Tensor, *, n_mc: int = 20_000,
                                        z: float = 4.0, min_ess: float = 100.0,
                                        atol: float = 1e-8,
                                        generator: torch.Generator | None = None
                                        ) -> MonteCarloCheck:
    """Assert ``denoiser(x, sigma) = E[x0 | x0 + sigma eps = x]`` within Monte Carlo error.

    The posterior mean is estimated by self-normalised importance sampling with the prior as
    proposal: ``x0_j ~ target.sample`` (``j = 1..M``), ``log w_j = -|x - x0_j|^2 / (2 sigma^2)``
    normalised in log space (softmax), ``mu = sum_j w_j x0_j``. Its standard error per coordinate
    is the delta-method estimate ``se^2 = sum_j w_j^2 (x0_j - mu)^2``, and the effective sample
    size is ``ESS = 1 / sum_j w_j^2``. Each coordinate must satisfy
    ``|D - mu| <= z * se + atol`` (``atol`` absorbs round-off where the posterior is a point
    mass along a coordinate, e.g. directions orthogonal to an embedded sphere).

    **False-failure rate.** In the normal limit a correct denoiser fails a single coordinate with
    probability ``erfc(z / sqrt 2)`` (``6.3e-5`` at ``z = 4``); over ``n`` rows and ``d``
    coordinates the union bound gives at most ``n d erfc(z / sqrt 2)`` (``8.1e-3`` for 32 x 4 at
    ``z = 4``; use ``z = 5`` for ``7.3e-5``). The bound is returned as
    ``MonteCarloCheck.false_failure_bound``. The normal limit needs a reasonable ESS: rows with
    ``ESS < min_ess`` raise :class:`InsufficientSampleSizeError` rather than pass or fail.

    Parameters
    ----------
    denoiser : callable ``(x, sigma) -> (n, d)``
        The denoiser under test (a Target is one).
    target : Target
        Exact target supplying ``sample(n, generator, dtype=, device=)``.
    x : Tensor of shape ``(n, d)``
        Query points; the Monte Carlo runs in their dtype and device (float64 recommended).
    sigma : float or Tensor of shape ``(n,)``
        Noise level(s), ``> 0``; passed unchanged to ``denoiser``.
    n_mc : int
        Number of prior samples ``M``; the error shrinks like ``1 / sqrt(ESS)``.
    z : float
        Allowed standard errors per coordinate.
    min_ess : float
        Floor on the effective sample size of every row.
    atol : float
        Absolute slack added to ``z * se``.
    generator : torch.Generator, optional
        Source of the prior samples (same device as ``x``).

    Returns
    -------
    MonteCarloCheck

    Raises
    ------
    AssertionError
        With the worst row: the denoiser's output, the estimate and the standard errors.
    InsufficientSampleSizeError
        If some row's ESS is below ``min_ess``.
    """
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as denoiser(x, sigma), "
                        f"got {type(denoiser).__name__}")
    z, atol = _check_z(z), _check_tol(atol, "atol")
    min_ess = _check_tol(min_ess, "min_ess")
    estimate = monte_carlo_posterior_mean(target, x, sigma, n_mc=n_mc, generator=generator)
    x, s = estimate.x, estimate.sigma
    mu, se, ess = estimate.mean, estimate.stderr, estimate.ess
    with torch.no_grad():
        d_out = _output(denoiser(x, sigma), tuple(x.shape), "denoiser").to(x.dtype)
    _check_ess(ess, min_ess, x, "assert_denoiser_matches_monte_carlo")
    return _mc_verdict(
        d_out - mu, se, z, atol, ess, x,
        title="denoiser differs from the Monte Carlo posterior mean E[x0 | x]",
        detail=lambda r: (f"  sigma          = {float(s[r]):.6g}\n"
                          f"  denoiser       = {_fmt(d_out[r])}\n"
                          f"  MC E[x0 | x]   = {_fmt(mu[r])}\n"
                          f"  MC stderr      = {_fmt(se[r])}"))


def assert_semigroup(target: Any, x: Tensor, sigma1: float | Tensor, sigma2: float | Tensor, *,
                     n_mc: int = 20_000, z: float = 4.0, min_ess: float = 100.0,
                     atol: float = 1e-10, generator: torch.Generator | None = None
                     ) -> MonteCarloCheck:
    """Assert the semigroup identity ``E_eps[p_{s1}(x + s2 eps)] = p_{sqrt(s1^2+s2^2)}(x)``.

    Noising by ``s1`` then by ``s2`` is noising by ``sqrt(s1^2 + s2^2)``. The left side is
    estimated in log space: ``L_j = target.log_prob(x + s2 eps_j, s1)``,
    ``log mean = logsumexp_j L_j - log M``, with delta-method standard error
    ``se = sqrt(sum_j w_j^2 - 1/M)`` where ``w = softmax(L)`` (the relative standard error of the
    mean of ``exp(L_j)``), and ``ESS = 1 / sum_j w_j^2``. Each row must satisfy
    ``|log mean - log_prob(x, sqrt(s1^2+s2^2))| <= z * se + atol``.

    **False-failure rate.** At most ``n erfc(z / sqrt 2)`` over ``n`` rows in the normal limit
    (``2.0e-3`` for 32 rows at ``z = 4``). The log of a mean is biased low by about
    ``se^2 / 2``, negligible against ``z * se`` once ``ESS >= min_ess``. Rows with a smaller ESS
    (``s1`` much smaller than ``s2``, or ``x`` far out) raise :class:`InsufficientSampleSizeError`.

    Parameters
    ----------
    target : Target
        Anything with ``.log_prob(x, sigma) -> (n,)`` and ``.dim``.
    x : Tensor of shape ``(n, d)``
    sigma1, sigma2 : float or Tensor of shape ``(n,)``
        Noise levels, ``> 0``.
    n_mc : int
        Number of ``eps`` draws ``M`` (shared by all rows).
    z, min_ess, atol : float
        Allowed standard errors, ESS floor, and absolute slack in log units.
    generator : torch.Generator, optional
        Source of ``eps`` (same device as ``x``).

    Returns
    -------
    MonteCarloCheck

    Raises
    ------
    AssertionError
        With the worst row: both log-densities and the standard error.
    InsufficientSampleSizeError
        If some row's ESS is below ``min_ess``.
    """
    log_prob = _method(target, "log_prob", "target")
    x = _points(x, target)
    n_mc = check_positive_int(n_mc, "n_mc", minimum=2)
    z, atol = _check_z(z), _check_tol(atol, "atol")
    min_ess = _check_tol(min_ess, "min_ess")
    check_generator(generator)
    n, d = x.shape
    s1, s2 = _sigma_rows(sigma1, x, "sigma1"), _sigma_rows(sigma2, x, "sigma2")
    with torch.no_grad():
        eps = torch.randn((n_mc, d), generator=generator, dtype=x.dtype, device=x.device)
        rhs = _output(log_prob(x, torch.sqrt(s1 ** 2 + s2 ** 2)), (n,), "log_prob")
        lhs, ses, esss = [], [], []
        c = _chunk(n_mc * d)
        for i in range(0, n, c):
            xc, s1c, s2c = x[i:i + c], s1[i:i + c], s2[i:i + c]
            y = (xc[:, None, :] + s2c[:, None, None] * eps[None]).reshape(-1, d)  # (c*M, d)
            L = _output(log_prob(y, s1c.repeat_interleave(n_mc)), (y.shape[0],), "log_prob")
            L = L.reshape(xc.shape[0], n_mc)
            w, ess = _weights_summary(L)
            lhs.append(torch.logsumexp(L, dim=1) - math.log(n_mc))
            ses.append(((w * w).sum(dim=1) - 1.0 / n_mc).clamp_min(0.0).sqrt())
            esss.append(ess)
        lhs_t, se, ess = torch.cat(lhs), torch.cat(ses), torch.cat(esss)
    _check_ess(ess, min_ess, x, "assert_semigroup")
    return _mc_verdict(
        (lhs_t - rhs)[:, None], se[:, None], z, atol, ess, x,
        title="semigroup identity E[p_s1(x + s2 eps)] = p_sqrt(s1^2+s2^2)(x) fails",
        detail=lambda r: (f"  sigma1, sigma2 = {float(s1[r]):.6g}, {float(s2[r]):.6g}\n"
                          f"  log E[p_s1(x + s2 eps)] (MC) = {float(lhs_t[r]):.8g}\n"
                          f"  log p_sqrt(s1^2+s2^2)(x)     = {float(rhs[r]):.8g}\n"
                          f"  MC stderr (log units)        = {float(se[r]):.3g}"))


# ---------------------------------------------------------------------------------- distribution
def assert_samples_match_score(samples: Tensor, score_fn: ScoreLike, *, alpha: float = 1e-3,
                               kernel: str = "imq", n_bootstrap: int = 4000,
                               generator: torch.Generator | None = None) -> KSDResult:
    """Assert that ``samples`` are distributed as the density whose score is ``score_fn``.

    Runs :func:`labkit.testing.goodness_of_fit.ksd_test` and fails iff its p-value is
    ``< alpha``. **False-failure rate**: about ``alpha`` (``1e-3`` by default) for independent
    exact samples, since the wild-bootstrap p-value is asymptotically uniform under the null.
    Use it on a sampler's output with the exact score of the target (at ``sigma = 0``, or at a
    small ``sigma`` for singular targets, after adding that much noise to the samples).

    Parameters
    ----------
    samples : Tensor of shape ``(n, d)``
        Independent samples, ``n >= 2`` (a few hundred to a few thousand).
    score_fn : callable ``(n, d) -> (n, d)`` or Tensor of shape ``(n, d)``
        The claimed score.
    alpha : float
        Level in ``(0, 1)``; ``n_bootstrap`` must be at least ``2 / alpha`` so that the test
        can reject at all.
    kernel : {"imq", "rbf"}
    n_bootstrap : int
        Wild-bootstrap replicates.
    generator : torch.Generator, optional
        Source of the bootstrap weights.

    Returns
    -------
    KSDResult

    Raises
    ------
    AssertionError
        With the statistic, p-value, alpha and ``n``.
    """
    alpha = _check_tol(alpha, "alpha")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    n_bootstrap = check_positive_int(n_bootstrap, "n_bootstrap")
    if (n_bootstrap + 1) * alpha < 2.0:
        raise ValueError(f"n_bootstrap must be >= {math.ceil(2.0 / alpha - 1.0)} for "
                         f"alpha={alpha:g}: the smallest p-value is 1 / (1 + n_bootstrap)")
    result = ksd_test(samples, score_fn, kernel=kernel, n_bootstrap=n_bootstrap,
                      generator=generator)
    if result.p_value < alpha:
        raise AssertionError(
            f"samples do not match the score (kernel Stein discrepancy test): p = "
            f"{result.p_value:.3g} < alpha = {alpha:g} with n = {result.n} samples "
            f"(KSD^2 = {result.statistic:.4g}, {result.kernel} kernel, bandwidth "
            f"{result.bandwidth:.3g}); a correct sampler fails with probability about {alpha:g}")
    return result


def assert_noised_samples_match(target: Any, sigma: float, n: int = 500, *, alpha: float = 1e-3,
                                kernel: str = "imq", n_bootstrap: int = 4000,
                                generator: torch.Generator | None = None,
                                dtype: torch.dtype = torch.float64,
                                device: torch.device | str | None = None) -> KSDResult:
    """Assert that ``target.sample_noised(n, sigma)`` is distributed as ``exp`` of the log-density
    whose gradient is ``target.score(., sigma)``.

    Draws ``n`` samples of ``p_sigma`` with ``target.sample_noised`` and applies
    :func:`assert_samples_match_score` with ``score_fn = target.score(., sigma)``: a sampler and
    a score that disagree (wrong responsibilities, wrong covariance, wrong radius...) fail.
    **False-failure rate** about ``alpha``.

    Parameters
    ----------
    target : Target
        Anything with ``.sample_noised(n, sigma, generator, dtype=)`` and ``.score(x, sigma)``.
    sigma : float
        Noise level (``> 0`` for singular targets).
    n : int
        Number of samples; power grows with ``n``, cost as ``n^2``.
    alpha : float
        Level; the test fails iff ``p < alpha``.
    kernel : {"imq", "rbf"}
    n_bootstrap : int
        Wild-bootstrap replicates, ``>= 2 / alpha - 1``.
    generator : torch.Generator, optional
        Source of the samples and the bootstrap weights.
    dtype, device : optional
        Of the samples (float64 on the target's device by default); the generator must live on
        that device.

    Returns
    -------
    KSDResult

    Raises
    ------
    AssertionError
        With the statistic, p-value, alpha and ``n``.
    """
    n = check_positive_int(n, "n", minimum=2)
    sample_noised = _method(target, "sample_noised", "target")
    score = _method(target, "score", "target")
    check_generator(generator)
    x = sample_noised(n, sigma, generator, dtype=dtype, device=device)
    return assert_samples_match_score(x, lambda y: score(y, sigma), alpha=alpha, kernel=kernel,
                                      n_bootstrap=n_bootstrap, generator=generator)


# ---------------------------------------------------------------------------------- solvers
def fit_order(errors: Sequence[float] | Tensor, step_sizes: Sequence[float] | Tensor) -> OrderFit:
    """Least-squares fit of ``log error = slope * log h + intercept``.

    Parameters
    ----------
    errors : sequence of float or 1-D Tensor, length ``m >= 2``
        Positive, finite global errors.
    step_sizes : sequence of float or 1-D Tensor, length ``m``
        Positive, finite, distinct step sizes ``h`` (or ``1 / steps``).

    Returns
    -------
    OrderFit
    """
    e = _positive_vector(errors, "errors")
    h = _positive_vector(step_sizes, "step_sizes")
    if e.shape != h.shape:
        raise ValueError(f"errors and step_sizes must have the same length, got {e.numel()} "
                         f"and {h.numel()}")
    if e.numel() < 2:
        raise ValueError("errors must have at least 2 entries to fit a slope")
    order = torch.argsort(h)
    lh, le = h[order].log(), e[order].log()
    if bool((lh[1:] == lh[:-1]).any()):
        raise ValueError("step_sizes must be distinct")
    a = torch.stack([lh, torch.ones_like(lh)], dim=1)
    slope, intercept = torch.linalg.lstsq(a, le[:, None]).solution[:, 0].tolist()
    local = ((le[1:] - le[:-1]) / (lh[1:] - lh[:-1])).tolist()
    return OrderFit(slope=slope, intercept=intercept, local_slopes=tuple(local),
                    step_sizes=tuple(h[order].tolist()), errors=tuple(e[order].tolist()))


def assert_order(errors: Sequence[float] | Tensor, step_sizes: Sequence[float] | Tensor,
                 expected_order: float, tol: float = 0.25) -> OrderFit:
    """Assert that errors decay like ``h^expected_order``: ``|slope - expected| <= tol``.

    The slope is the least-squares fit of ``log error`` against ``log h`` (diffrax's order
    tests). Choose step sizes in the asymptotic regime (above round-off, below the
    pre-asymptotic range); the failure message lists the local slopes to show where that
    regime is. ``tol = 0.25`` separates neighbouring integer orders with room for the
    higher-order terms of a short sequence.

    Parameters
    ----------
    errors : sequence of float or 1-D Tensor, length ``m >= 2``
        Positive, finite global errors.
    step_sizes : sequence of float or 1-D Tensor, length ``m``
        Positive, finite, distinct step sizes.
    expected_order : float
        Declared order ``q > 0``.
    tol : float
        Allowed ``|slope - q|``.

    Returns
    -------
    OrderFit

    Raises
    ------
    AssertionError
        With the fitted slope, the declared order, the tolerance and a table of ``(h, error,
        local slope)``.
    """
    expected_order = _check_tol(expected_order, "expected_order")
    tol = _check_tol(tol, "tol")
    fit = fit_order(errors, step_sizes)
    if not abs(fit.slope - expected_order) <= tol:
        slopes = [f"  slope to next={t:.3f}" for t in fit.local_slopes] + [""]
        rows = [f"    h={h:.4g}  error={e:.4g}{t}"
                for h, e, t in zip(fit.step_sizes, fit.errors, slopes)]
        raise AssertionError(
            f"observed order {fit.slope:.3f} differs from the declared order "
            f"{expected_order:g} by more than tol={tol:g} (least-squares log-log slope over "
            f"{len(rows)} step sizes)\n" + "\n".join(rows))
    return fit


def _positive_vector(values: Any, name: str) -> Tensor:
    try:
        v = torch.as_tensor(values, dtype=torch.float64).detach().cpu().reshape(-1)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a sequence of floats or a 1-D tensor, "
                        f"got {type(values).__name__}") from err
    if not bool(torch.isfinite(v).all()) or bool((v <= 0).any()):
        raise ValueError(f"{name} must be finite and > 0 (an exact zero error cannot show an "
                         f"order), got {v.tolist()}")
    return v
