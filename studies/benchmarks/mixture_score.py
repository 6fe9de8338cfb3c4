"""Benchmark: exact Gaussian-mixture score against autograd and against one matrix product.

Cases (float64, K = 16 components with full covariances, one sigma for all rows):

* d = 2, n = 10^6 and d = 64, n = 10^5: ``GaussianMixture.score`` against the obvious baseline,
  autograd through ``MixtureSameFamily(Categorical, MultivariateNormal).log_prob`` with
  covariances ``S_k + sigma^2 I`` (goal at d = 2: at least 5x its throughput);
* d = 64: against the physical limit, the single product ``x @ [P_1 ... P_K]`` of shape
  ``(n, d) @ (d, K d)`` with the precision matrices ``P_k`` (goal: within 2.5x of its time);
* memory: the score at n and 4n, to show that its working memory is set by ``chunk_size``.

Every (method, d, n) runs in its own fresh subprocess. Time is the best of ``--repeats`` calls
after a warm-up (best-of, because the machine may be shared). Memory is the peak of the bytes held
by torch CPU tensors allocated during one call, read from the torch profiler's memory events
(``profile_memory=True``, the ``Total Allocated`` counter of the exported trace). That is what
scales with n; ``tracemalloc`` cannot see torch's ``malloc`` blocks, and on the shared reference
machine peak RSS (``VmHWM``) varied 4x between identical runs, because the kernel reclaims and
refaults file-backed pages and glibc keeps freed blocks. labkit's peak includes the ``(n, d)``
output once (``Target`` writes each chunk's result into one preallocated output) plus one chunk's
intermediates, so the table also shows the memory beyond the output.

Run ``python studies/benchmarks/mixture_score.py [--quick] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile

import labkit
from _common import write_json

K = 16
SIGMA = 0.5
_MB = 2.0 ** 20


def make_mixture(d: int, seed: int = 0) -> labkit.GaussianMixture:
    """K random full-covariance components in R^d (well separated, condition number ~ 10)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(K, d, d, generator=g, dtype=torch.float64) / d ** 0.5
    covs = a @ a.transpose(1, 2) + 0.1 * torch.eye(d, dtype=torch.float64)
    means = 3.0 * torch.randn(K, d, generator=g, dtype=torch.float64)
    weights = torch.rand(K, generator=g, dtype=torch.float64) + 0.5
    return labkit.GaussianMixture(means, covs, weights)


def make_points(mix: labkit.GaussianMixture, n: int, seed: int = 1) -> torch.Tensor:
    """``n`` points of the noised mixture, where the score is evaluated."""
    return mix.sample_noised(n, SIGMA, torch.Generator().manual_seed(seed))


def baseline_score(mix: labkit.GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """Autograd through ``MixtureSameFamily(...).log_prob`` (the obvious implementation)."""
    dist = torch.distributions
    eye = torch.eye(mix.dim, dtype=x.dtype)
    noised = dist.MixtureSameFamily(
        dist.Categorical(probs=mix.weights),
        dist.MultivariateNormal(mix.means, covariance_matrix=mix.covs + SIGMA ** 2 * eye))
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(noised.log_prob(x).sum(), x)
    return grad


def precision_matrices(mix: labkit.GaussianMixture) -> torch.Tensor:
    """``[P_1 ... P_K]`` of shape ``(d, K d)`` with ``P_k = (S_k + sigma^2 I)^{-1}``."""
    eye = torch.eye(mix.dim, dtype=torch.float64)
    prec = torch.linalg.inv(mix.covs + SIGMA ** 2 * eye)
    return prec.permute(1, 0, 2).reshape(mix.dim, K * mix.dim)


# How many (n, d) outputs a method holds at its peak (labkit: the preallocated output, which the
# chunks are written into; one chunk's result and intermediates come on top of it).
OUTPUT_COPIES = {"labkit": 1, "labkit_denoise": 1, "baseline": 1, "matmul": 1}
METHODS = {
    "labkit": lambda mix, x, extra: mix.score(x, SIGMA),
    "labkit_denoise": lambda mix, x, extra: mix.denoise(x, SIGMA),
    "baseline": lambda mix, x, extra: baseline_score(mix, x),
    "matmul": lambda mix, x, extra: x @ extra,
}


def peak_tensor_bytes(call) -> int:
    """Peak bytes of torch CPU tensors allocated and still alive at some point during ``call()``."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = [e["args"] for e in json.load(f)["traceEvents"] if e.get("name") == "[memory]"]
    if not events:
        return 0
    start = events[0]["Total Allocated"] - events[0]["Bytes"]
    return max(e["Total Allocated"] for e in events) - start


def run_case(method: str, d: int, n: int, repeats: int) -> dict:
    """Time and peak memory of one method in this (fresh) process."""
    mix = make_mixture(d)
    x = make_points(mix, n)
    extra = precision_matrices(mix) if method == "matmul" else None
    fn = METHODS[method]
    out = fn(mix, x, extra)  # warm-up
    output_bytes = out.numel() * out.element_size()
    del out
    peak = peak_tensor_bytes(lambda: fn(mix, x, extra))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(mix, x, extra)
        times.append(time.perf_counter() - start)
    return {"method": method, "d": d, "n": n, "seconds": min(times),
            "peak_mb": peak / _MB, "output_mb": output_bytes / _MB,
            "chunk_size": mix.chunk_size}


def run_in_subprocess(method: str, d: int, n: int, repeats: int) -> dict:
    """``run_case`` in a fresh interpreter, so that peak RSS belongs to this case alone."""
    cmd = [sys.executable, __file__, "--case", json.dumps([method, d, n, repeats])]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_agreement(d: int) -> float:
    """Max relative difference between the labkit score and the baseline on 2000 points."""
    mix = make_mixture(d)
    x = make_points(mix, 2000)
    ours, ref = mix.score(x, SIGMA), baseline_score(mix, x)
    err = float(((ours - ref).norm(dim=1) / ref.norm(dim=1)).max())
    if err > 1e-8:
        raise RuntimeError(f"labkit score disagrees with the baseline at d={d}: {err:.2e}")
    return err


def main(argv: list[str] | None = None) -> dict:
    """Run every case, print a table and optionally write JSON (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small n, one repeat (smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="write the results as JSON to this file")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(*json.loads(args.case))))
        return {}

    scale, repeats = (50, 1) if args.quick else (1, args.repeats)
    n2, n64 = 10 ** 6 // scale, 10 ** 5 // scale
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64, K={K}, "
          f"sigma={SIGMA}")
    agreement = {d: check_agreement(d) for d in (2, 64)}
    plan = [("labkit", 2, n2), ("labkit_denoise", 2, n2), ("baseline", 2, n2),
            ("labkit", 2, 4 * n2),
            ("labkit", 64, n64), ("labkit_denoise", 64, n64), ("baseline", 64, n64),
            ("matmul", 64, n64), ("labkit", 64, 4 * n64)]
    rows = [run_in_subprocess(m, d, n, repeats) for m, d, n in plan]

    def seconds(method: str, d: int, n: int) -> float:
        return next(r["seconds"] for r in rows
                    if (r["method"], r["d"], r["n"]) == (method, d, n))

    summary = {
        "throughput_vs_baseline_d2": seconds("baseline", 2, n2) / seconds("labkit", 2, n2),
        "throughput_vs_baseline_d64": seconds("baseline", 64, n64) / seconds("labkit", 64, n64),
        "time_vs_matmul_d64": seconds("labkit", 64, n64) / seconds("matmul", 64, n64),
        "max_rel_diff_vs_baseline": max(agreement.values()),
    }
    print(f"{'method':>15} {'d':>3} {'n':>8} {'seconds':>9} {'Mpts/s':>8} {'peak MB':>8} "
          f"{'output MB':>9} {'beyond out':>10} {'chunk':>6}")
    for r in rows:
        print(f"{r['method']:>15} {r['d']:>3} {r['n']:>8} {r['seconds']:>9.4f} "
              f"{r['n'] / r['seconds'] / 1e6:>8.2f} {r['peak_mb']:>8.1f} {r['output_mb']:>9.1f} "
              f"{r['peak_mb'] - OUTPUT_COPIES[r['method']] * r['output_mb']:>10.1f} "
              f"{r['chunk_size']:>6}")
    print(f"d=2:  labkit score throughput = {summary['throughput_vs_baseline_d2']:.1f}x "
          f"the autograd baseline (goal >= 5x)")
    print(f"d=64: labkit score throughput = {summary['throughput_vs_baseline_d64']:.1f}x "
          f"the autograd baseline")
    print(f"d=64: labkit score time = {summary['time_vs_matmul_d64']:.2f}x one matmul "
          f"x @ [P_1..P_K] (goal <= 2.5x)")
    print(f"agreement with the baseline: max relative difference "
          f"{summary['max_rel_diff_vs_baseline']:.1e}")
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__, "K": K,
              "sigma": SIGMA, "quick": args.quick, "rows": rows, "summary": summary}
    if args.out:
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
