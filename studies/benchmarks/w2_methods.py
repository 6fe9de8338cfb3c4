"""Benchmark: exact W2 (network simplex) vs debiased Sinkhorn (two epsilons) vs sliced W2.

Pairs of sample sets: ``x`` from a Gaussian mixture (8 isotropic components, seed 7) and ``y``
from the same mixture shifted by 1 along the first axis, n points each, in 2-D and 16-D. For each
pair, in one run:

* exact: ``labkit.metrics.ot.wasserstein2(x, y, n_boot=0)`` (POT ``ot.emd2`` on the float64 cost
  matrix) -- the reference value ``W2^2`` of that same pair;
* Sinkhorn: ``sinkhorn(x, y, epsilon=c * median(M), n_boot=0, stop_threshold=1e-3)`` for ``c``
  in {0.1, 0.01} (three solves each; only for n <= ``--max-sinkhorn-n``, 2000 by default,
  because its iterations over the n x n matrix dominate the run beyond that);
* sliced: ``sliced_wasserstein2(x, y, n_projections=256)``.

Reported per method: time (median of ``--repeats`` calls, 1 call for Sinkhorn and for exact at
n >= 5000; no warm-up: each call builds its own cost matrix) and its ratio to the exact time (the headline: the machine is shared, absolute
seconds are noisy); peak memory = peak bytes of torch CPU tensors alive during one call (torch
profiler, as ``mixture_score.py``) plus the peak of Python/numpy allocations (``tracemalloc``,
which sees numpy arrays such as POT's transport plan but not torch's); the error
``value - W2^2`` relative to ``W2^2`` of the pair (Sinkhorn's ``S_eps`` and ``SW2^2`` are compared
as squared distances; ``SW2^2`` is expected near ``W2^2 / d`` at best, so its "error" mostly
shows that it is a different quantity, not an approximation).

Run ``python studies/benchmarks/w2_methods.py [--quick] [--out results/benchmarks/w2_methods.json]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import torch

import labkit
from labkit.metrics.ot import sinkhorn, sliced_wasserstein2, wasserstein2
from _common import load_module, write_json

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "results" / "benchmarks" / "w2_methods.json"
EPS_FRACTIONS = (0.1, 0.01)
STOP = 1e-3  # Sinkhorn's L1 marginal violation: 1e-5 took 2-4x more iterations here
_MB = 2.0 ** 20


MIXTURE_SCORE = load_module("_mixture_score", Path(__file__).with_name("mixture_score.py"))


def mixture(d: int) -> labkit.GaussianMixture:
    g = torch.Generator().manual_seed(7)
    means = 2.0 * torch.randn(8, d, dtype=torch.float64, generator=g)
    variances = 0.05 + 0.3 * torch.rand(8, dtype=torch.float64, generator=g)
    return labkit.GaussianMixture(means, variances)


def sample_pair(d: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    mix = mixture(d)
    x = mix.sample(n, torch.Generator().manual_seed(1))
    shift = torch.zeros(d, dtype=torch.float64)
    shift[0] = 1.0
    return x, mix.sample(n, torch.Generator().manual_seed(2)) + shift


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def peak_mb(fn) -> float:
    """Peak torch tensor bytes (profiler) plus peak traced Python/numpy bytes, over one call."""
    numpy_peak = []

    def traced():  # tracemalloc spans fn only, not the profiler's trace export and parsing
        tracemalloc.start()
        try:
            fn()
            numpy_peak.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()

    torch_bytes = MIXTURE_SCORE.peak_tensor_bytes(traced)
    return (torch_bytes + numpy_peak[0]) / _MB


def methods(x: torch.Tensor, y: torch.Tensor) -> dict:
    median_cost = float(torch.cdist(x[:1000], y[:1000]).square().median())
    out = {"exact": lambda: wasserstein2(x, y, n_boot=0, num_itermax=10 ** 9).value ** 2}
    for c in EPS_FRACTIONS:
        out[f"sinkhorn_{c:g}"] = (lambda eps=c * median_cost:
                                  sinkhorn(x, y, epsilon=eps, n_boot=0, stop_threshold=STOP,
                                           num_itermax=100_000).value)
    out["sliced"] = lambda: sliced_wasserstein2(x, y, n_projections=256).value ** 2
    return out


def run(dims_sizes: dict, repeats: int, max_sinkhorn_n: int) -> list[dict]:
    rows = []
    for d, sizes in dims_sizes.items():
        for n in sizes:
            x, y = sample_pair(d, n)
            row = {"d": d, "n": n}
            for name, fn in methods(x, y).items():
                if name.startswith("sinkhorn") and n > max_sinkhorn_n:
                    row[name] = None  # not run: see --max-sinkhorn-n
                    continue
                slow = name.startswith("sinkhorn") or (name == "exact" and n >= 5000)
                reps = 1 if slow else repeats
                seconds, value = median_time(fn, reps)
                row[name] = {"seconds": seconds, "repeats": reps, "value_sq": value,
                             "peak_mb": peak_mb(fn)}
            exact = row["exact"]["value_sq"]
            for name in row:
                if isinstance(row[name], dict):
                    row[name]["rel_error"] = (row[name]["value_sq"] - exact) / exact
                    row[name]["time_ratio"] = row[name]["seconds"] / row["exact"]["seconds"]
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


def format_row(row: dict) -> str:
    cells = []
    for name in ["exact", *[f"sinkhorn_{c:g}" for c in EPS_FRACTIONS], "sliced"]:
        r = row[name]
        cells.append(f"{name}: not run" if r is None else
                     f"{name}: {r['seconds']:.3g} s (x{r['time_ratio']:.3g}), "
                     f"{r['peak_mb']:.0f} MB, rel err {r['rel_error']:+.2e}")
    return f"d={row['d']:>2} n={row['n']:>5} W2^2={row['exact']['value_sq']:.4f} | " \
        + " | ".join(cells)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="n = 200 (2-D) and 100 (16-D), 1 repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-sinkhorn-n", type=int, default=2000,
                        help="largest n for Sinkhorn (its n x n iterations dominate the run)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.quick:
        dims_sizes, repeats, args.max_sinkhorn_n = {2: (200,), 16: (100,)}, 1, 200
    else:
        dims_sizes, repeats = {2: (1000, 2000, 5000, 10000), 16: (1000, 2000)}, args.repeats
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64")
    rows = run(dims_sizes, repeats, args.max_sinkhorn_n)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(),
              "quick": args.quick, "eps_fractions_of_median_cost": list(EPS_FRACTIONS),
              "rows": rows}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
