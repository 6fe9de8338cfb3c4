"""Benchmark: exact counting of linear regions and decision-boundary pieces (``labkit.tropical``)
against width and depth, tropical vs LP, the sampling lower bound, and the largest network
counted within 60 s.

Networks: ``2 -> width (x depth) -> 1`` ReLU MLPs (``torch.nn.Sequential``, PyTorch's default
initialisation under ``torch.manual_seed(0)``, float64), box ``[-2, 2]^2``, with the output bias
shifted by the median of ``f`` on a 64 x 64 grid so that the decision boundary crosses the box
(at PyTorch's initialisation ``f`` often has one sign on the whole box).

* LP enumeration (``method="lp"``): ``count_linear_regions`` and ``count_boundary_pieces``,
  wall time (best of ``--repeats``), LPs solved, and the peak of Python-heap allocations during
  one ``count_boundary_pieces`` call (``tracemalloc``: numpy buffers included, HiGHS' own C++
  heap not).
* Tropical counting (``method="tropical"``) on the same networks where it is affordable (depth 1
  up to width 64, depth 2 up to 16, depth 3 up to 8): time, ratio tropical / LP, and the counts,
  **asserted** equal to the LP counts.
* ``sample_lower_bound`` with ``--samples`` uniform points: time and the gap to the exact counts
  (linear regions, boundary pieces).
* The largest width counted by ``count_boundary_pieces`` (LP) within 60 s at depth 2 and 3:
  widths tried in increasing order until one takes longer than 60 s (or exceeds the default
  ``max_regions``).

Run ``python studies/benchmarks/tropical_counting.py [--quick] [--out PATH]``; the JSON goes to
``results/benchmarks/tropical_counting.json`` by default (written atomically).
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import torch

from labkit.tropical import (ExactCountLimitError, count_boundary_pieces, count_linear_regions,
                             sample_lower_bound)
from _common import write_json

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "results" / "benchmarks" / "tropical_counting.json"
BOX = 2.0
BUDGET_S = 60.0
TROPICAL_MAX_WIDTH = {1: 64, 2: 16, 3: 8}


def make_net(width: int, depth: int, seed: int = 0) -> torch.nn.Sequential:
    """``2 -> width (x depth) -> 1`` ReLU MLP, default init under ``seed``, float64, output
    centred (median of ``f`` on a grid of the box is 0)."""
    layers, d = [], 2
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for _ in range(depth):
            layers += [torch.nn.Linear(d, width), torch.nn.ReLU()]
            d = width
        layers.append(torch.nn.Linear(d, 1))
        net = torch.nn.Sequential(*layers).double()
    axis = torch.linspace(-BOX, BOX, 64, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():  # centre the output so that the decision boundary crosses the box
        net[-1].bias -= net(grid)[:, 0].median()
    return net


def best_time(fn, repeats: int):
    """(result of the last call, best wall time over ``repeats`` calls)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def peak_mib(fn) -> float:
    """Peak Python-heap allocation (tracemalloc) during ``fn()``, MiB."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2 ** 20
    finally:
        tracemalloc.stop()


def grid_row(width: int, depth: int, repeats: int, samples: int) -> dict:
    net = make_net(width, depth)
    rc, t_regions = best_time(lambda: count_linear_regions(net, BOX), repeats)
    bc, t_boundary = best_time(lambda: count_boundary_pieces(net, BOX), repeats)
    row = {"width": width, "depth": depth, "linear_regions": rc.linear_regions,
           "activation_regions": rc.activation_regions, "boundary_pieces": bc.pieces,
           "lps_regions": rc.n_lps, "lps_boundary": bc.n_lps, "lp_regions_s": t_regions,
           "lp_boundary_s": t_boundary,
           "peak_mib_boundary": peak_mib(lambda: count_boundary_pieces(net, BOX))}
    sb = sample_lower_bound(net, BOX, samples, torch.Generator().manual_seed(0))
    row.update(sample_s=sb.seconds, sample_linear_regions=sb.linear_regions,
               sample_boundary_pieces=sb.boundary_pieces,
               sample_gap_regions=rc.linear_regions - sb.linear_regions,
               sample_gap_pieces=bc.pieces - sb.boundary_pieces)
    assert sb.linear_regions <= rc.linear_regions, "sampling bound above the exact count"
    if width <= TROPICAL_MAX_WIDTH.get(depth, 0):
        tb, t_trop = best_time(lambda: count_boundary_pieces(net, BOX, "tropical"), 1)
        assert (tb.pieces, tb.linear_regions) == (bc.pieces, rc.linear_regions), (
            f"tropical and LP counts differ at width {width}, depth {depth}: "
            f"{(tb.pieces, tb.linear_regions)} vs {(bc.pieces, rc.linear_regions)}")
        row.update(tropical_s=t_trop, ratio_tropical_lp=t_trop / t_boundary,
                   tropical_equal=True)
    else:
        row.update(tropical_s=None, ratio_tropical_lp=None, tropical_equal=None)
    return row


def largest_within_budget(depth: int, widths: tuple[int, ...]) -> list[dict]:
    """Widths in increasing order until one takes longer than the budget or hits a limit."""
    rows = []
    for width in widths:
        net = make_net(width, depth)
        t0 = time.perf_counter()
        try:
            bc = count_boundary_pieces(net, BOX)
            row = {"width": width, "depth": depth, "seconds": time.perf_counter() - t0,
                   "linear_regions": bc.linear_regions, "boundary_pieces": bc.pieces,
                   "lps": bc.n_lps, "limit": None}
        except ExactCountLimitError as err:
            row = {"width": width, "depth": depth, "seconds": time.perf_counter() - t0,
                   "linear_regions": None, "boundary_pieces": None, "lps": None,
                   "limit": str(err).split(";")[0]}
        rows.append(row)
        print(f"  depth {depth} width {width}: {row['seconds']:.1f} s, "
              f"{row['linear_regions']} regions, {row['boundary_pieces']} pieces"
              + (f" ({row['limit']})" if row["limit"] else ""), flush=True)
        if row["limit"] or row["seconds"] > BUDGET_S:
            break
    return rows


def fmt(v, spec=".3g") -> str:
    return "-" if v is None else format(v, spec) if isinstance(v, float) else str(v)


def print_table(rows: list[dict]) -> None:
    head = ("width", "depth", "regions", "pieces", "LPs", "LP regions s", "LP boundary s",
            "peak MiB", "tropical s", "trop/LP", "sample s", "gap regions", "gap pieces")
    print(" | ".join(head))
    for r in rows:
        print(" | ".join(fmt(r[k]) for k in (
            "width", "depth", "linear_regions", "boundary_pieces", "lps_boundary",
            "lp_regions_s", "lp_boundary_s", "peak_mib_boundary", "tropical_s",
            "ratio_tropical_lp", "sample_s", "sample_gap_regions", "sample_gap_pieces")),
            flush=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="widths 4, 8 at depths 1, 2; no 60 s search")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    widths, depths = ((4, 8), (1, 2)) if args.quick else ((4, 8, 16, 32, 64), (1, 2, 3))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64, box "
          f"[-{BOX:g}, {BOX:g}]^2")
    rows = []
    for depth in depths:
        for width in widths:
            rows.append(grid_row(width, depth, args.repeats, args.samples))
    print_table(rows)
    search = []
    if not args.quick:
        print(f"largest width counted within {BUDGET_S:g} s (count_boundary_pieces, LP):")
        search += largest_within_budget(2, (64, 80, 96, 112, 128))
        search += largest_within_budget(3, (48, 56, 64, 72, 80))
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(),
              "quick": args.quick, "box": BOX, "samples": args.samples, "rows": rows,
              "budget_s": BUDGET_S, "largest_within_budget": search}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
