"""ReLU multilayer perceptrons as float64 weight lists, and their per-region affine maps.

A network is ``x -> W_L relu(... relu(W_1 x + b_1) ...) + b_L``: a ``torch.nn.Sequential`` of
``Linear`` layers separated by single ``ReLU`` layers, or a list of ``(W, b)`` pairs (ReLU
between consecutive pairs, none after the last). Everything in ``labkit.tropical`` works on the
validated, immutable :class:`ReLUNetwork` that :func:`as_network` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class ReLUNetwork:
    """A ReLU MLP with float64 numpy weights (read-only).

    Parameters
    ----------
    weights : tuple of ndarray
        ``W_l`` of shape ``(n_l, n_{l-1})``; ``n_0`` is the input dimension.
    biases : tuple of ndarray
        ``b_l`` of shape ``(n_l,)``.

    Notes
    -----
    Hidden neurons are numbered layer by layer (``0 .. n_hidden-1``); an *activation pattern* is
    a boolean vector over them, ``True`` where the pre-activation is strictly positive.
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    @property
    def input_dim(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def output_dim(self) -> int:
        return int(self.weights[-1].shape[0])

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        return tuple(int(w.shape[0]) for w in self.weights[:-1])

    @property
    def n_hidden(self) -> int:
        return int(sum(self.hidden_widths))

    @property
    def scale(self) -> float:
        """Product over layers of ``max(1, largest |entry| of [W_l, b_l])``: a bound on how
        much a layer-stack can magnify numbers, used to make tolerances relative."""
        s = 1.0
        for w, b in zip(self.weights, self.biases):
            s *= max(1.0, float(np.abs(w).max(initial=0.0)), float(np.abs(b).max(initial=0.0)))
        return s

    def __call__(self, x: Any) -> Any:
        """Network output; a torch tensor in gives a tensor (dtype/device kept), else ndarray."""
        if isinstance(x, torch.Tensor):
            out = x
            for i, (w, b) in enumerate(zip(self.weights, self.biases)):
                wt = torch.tensor(w, dtype=x.dtype, device=x.device)
                bt = torch.tensor(b, dtype=x.dtype, device=x.device)
                out = out @ wt.T + bt
                if i < len(self.weights) - 1:
                    out = torch.relu(out)
            return out
        out = np.asarray(x, dtype=np.float64)
        for z in self.preactivations(out):
            out = np.maximum(z, 0.0)
        return out @ self.weights[-1].T + self.biases[-1]

    def preactivations(self, x: np.ndarray) -> list[np.ndarray]:
        """Hidden pre-activations ``[(n, n_1), ..., (n, n_{L-1})]`` at points ``x`` of shape
        ``(n, d)``."""
        out, zs = np.asarray(x, dtype=np.float64), []
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            z = out @ w.T + b
            zs.append(z)
            out = np.maximum(z, 0.0)
        return zs

    def patterns(self, x: np.ndarray) -> np.ndarray:
        """Activation patterns ``(n, n_hidden)`` (bool, ``z > 0``) at points ``x`` ``(n, d)``."""
        zs = self.preactivations(x)
        if not zs:
            return np.zeros((np.asarray(x).shape[0], 0), dtype=bool)
        return np.concatenate(zs, axis=1) > 0.0

    def canonical_pattern(self, pattern: np.ndarray, atol: float) -> np.ndarray:
        """``pattern`` with every neuron whose pre-activation is identically zero on the region
        (row ``(a_k, c_k)`` of :meth:`region_maps` within ``atol`` of 0) set inactive.

        Such a neuron outputs 0 in either state, so its "on" and "off" patterns describe the
        same polytope and the same output map; without this rule one region could be counted
        twice (the forward pass ``z > 0`` reaches either copy by round-off). Applied layer by
        layer, since forcing a neuron changes the rows downstream.
        """
        d = self.input_dim
        out = np.array(pattern, dtype=bool)
        m, v, start = np.eye(d), np.zeros(d), 0
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            a, c = w @ m, w @ v + b
            stop = start + w.shape[0]
            zero = (np.abs(a).max(axis=1) <= atol) & (np.abs(c) <= atol)
            out[start:stop] &= ~zero
            s = out[start:stop].astype(np.float64)
            m, v, start = s[:, None] * a, s * c, stop
        return out

    def region_maps(self, pattern: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                        np.ndarray]:
        """Affine maps valid on the activation region of ``pattern``.

        Returns ``(A, c, J, o)``: the hidden pre-activations are ``z = A x + c`` (``A`` of
        shape ``(n_hidden, d)``) and the output is ``J x + o`` (``J`` of shape
        ``(output_dim, d)``), wherever the activation pattern equals ``pattern``.
        """
        d = self.input_dim
        m, v = np.eye(d), np.zeros(d)
        rows, offs, start = [], [], 0
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            a, c = w @ m, w @ v + b
            rows.append(a)
            offs.append(c)
            s = pattern[start:start + w.shape[0]].astype(np.float64)
            start += w.shape[0]
            m, v = s[:, None] * a, s * c
        a_all = np.concatenate(rows) if rows else np.zeros((0, d))
        c_all = np.concatenate(offs) if offs else np.zeros(0)
        return a_all, c_all, self.weights[-1] @ m, self.weights[-1] @ v + self.biases[-1]


def _as_matrix(value: Any, name: str, ndim: int) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().to(torch.float64).numpy()
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a real array or tensor, got {type(value).__name__}") \
            from err
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got NaN or inf entries; the exact counts need "
                         "finite weights")
    arr.setflags(write=False)
    return arr


def _pairs_from_sequential(net: torch.nn.Sequential) -> list[tuple[Any, Any]]:
    layers = list(net)
    pairs, expect_linear = [], True
    for i, layer in enumerate(layers):
        kind = type(layer).__name__
        if expect_linear and isinstance(layer, torch.nn.Linear):
            bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
            pairs.append((layer.weight, bias))
            expect_linear = False
        elif not expect_linear and isinstance(layer, torch.nn.ReLU):
            expect_linear = True
        else:
            expected = "Linear" if expect_linear else "ReLU"
            raise TypeError(f"net[{i}] is {kind}; labkit.tropical supports torch.nn.Sequential "
                            f"of Linear layers separated by single ReLU layers (expected "
                            f"{expected} here)")
    if expect_linear:
        raise TypeError("net must end with a Linear layer (a trailing ReLU or an empty "
                        "Sequential is not supported)")
    return pairs


def as_network(net: Any) -> ReLUNetwork:
    """Validate a ReLU MLP and return it as a :class:`ReLUNetwork` (float64 copies).

    Parameters
    ----------
    net : torch.nn.Sequential, ReLUNetwork or sequence of (W, b)
        ``Sequential(Linear, ReLU, Linear, ..., Linear)`` or ``[(W_1, b_1), ..., (W_L, b_L)]``
        with ``W_l`` of shape ``(n_l, n_{l-1})`` and ``b_l`` of shape ``(n_l,)``.

    Raises
    ------
    TypeError
        For unsupported layers (anything but ``Linear`` and ``ReLU``, two ``Linear`` or two
        ``ReLU`` in a row, a trailing ``ReLU``) or non-numeric weights.
    ValueError
        For non-finite weights or mismatched shapes.
    """
    if isinstance(net, ReLUNetwork):
        return net
    if isinstance(net, torch.nn.Sequential):
        pairs = _pairs_from_sequential(net)
    elif isinstance(net, torch.nn.Module):
        raise TypeError(f"net must be a torch.nn.Sequential of Linear/ReLU layers or a list of "
                        f"(W, b) pairs, got the module {type(net).__name__}")
    elif isinstance(net, Sequence) and not isinstance(net, (str, bytes)) and len(net) > 0:
        pairs = list(net)
    else:
        raise TypeError(f"net must be a torch.nn.Sequential of Linear/ReLU layers or a "
                        f"non-empty list of (W, b) pairs, got {type(net).__name__}")
    weights, biases = [], []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"net[{i}] must be a (W, b) pair, got {type(pair).__name__}")
        w = _as_matrix(pair[0], f"W[{i}]", 2)
        b = _as_matrix(pair[1], f"b[{i}]", 1)
        if b.shape[0] != w.shape[0]:
            raise ValueError(f"b[{i}] must have shape ({w.shape[0]},) to match W[{i}] of shape "
                             f"{w.shape}, got {b.shape}")
        if weights and w.shape[1] != weights[-1].shape[0]:
            raise ValueError(f"W[{i}] must have {weights[-1].shape[0]} columns (the width of "
                             f"layer {i - 1}), got shape {w.shape}")
        if w.shape[0] == 0 or w.shape[1] == 0:
            raise ValueError(f"W[{i}] must have non-zero shape, got {w.shape}")
        weights.append(w)
        biases.append(b)
    return ReLUNetwork(tuple(weights), tuple(biases))


def binary_network(net: Any, logit: Any = None) -> ReLUNetwork:
    """The scalar classifier logit ``f`` whose zero set is the decision boundary.

    Parameters
    ----------
    net : network accepted by :func:`as_network`
    logit : None, int or pair of int
        ``None``: a 1-output network is used as is (class 1 where ``f > 0``) and a 2-output
        network gives ``f = out[1] - out[0]``; an int ``k`` picks ``out[k]``; a pair ``(i, j)``
        gives ``f = out[j] - out[i]``. The difference is folded into the last layer, so ``f`` is
        again a ReLU network.
    """
    net = as_network(net)
    k = net.output_dim
    if logit is None:
        if k == 1:
            return net
        if k != 2:
            raise ValueError(f"net has {k} outputs; pass logit=k or logit=(i, j) to choose the "
                             "binary decision function")
        logit = (0, 1)
    if isinstance(logit, (int, np.integer)) and not isinstance(logit, bool):
        coef = np.zeros(k)
        if not 0 <= logit < k:
            raise ValueError(f"logit must be in [0, {k}), got {logit}")
        coef[logit] = 1.0
    elif isinstance(logit, (tuple, list)) and len(logit) == 2:
        i, j = (int(v) for v in logit)
        if not (0 <= i < k and 0 <= j < k) or i == j:
            raise ValueError(f"logit must be a pair of distinct outputs in [0, {k}), got {logit}")
        coef = np.zeros(k)
        coef[j], coef[i] = 1.0, -1.0
    else:
        raise TypeError(f"logit must be None, an int or a pair (i, j), got {logit!r}")
    w_last = coef[None, :] @ net.weights[-1]
    b_last = coef[None, :] @ net.biases[-1]
    return as_network(list(zip(net.weights[:-1], net.biases[:-1])) + [(w_last, b_last)])
