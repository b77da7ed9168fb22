"""Cross-rank combination of Accumulators against one process, under MPI.

Run: mpiexec -n 3 python tests/mpi/combine_ranks.py
(tests/test_aggregate_mpi.py launches it). Every rank makes the same seeded updates, accumulates
its contiguous block of them (hostile ones included: each rank refuses its own) and combines with
privcity.aggregate.combine, once by Allreduce and once by Reduce to rank 0. Rank 0 accumulates
all the updates alone and prints, as JSON, what the test asserts on: exact equality for updates
whose sums are exact in float64 (dyadic values), the distance in float64 and float32 ulps for
Gaussian ones, counts and weights, and whether every rank holds the same result.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
from mpi4py import MPI

import privcity
from privcity.aggregate import Accumulator, combine

K, D = 30, 50_001
HOSTILE = {4: np.nan, 17: np.inf, 25: -np.inf}  # one in each rank's block for 3 ranks


def updates(kind: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)  # the same on every rank
    if kind == "dyadic":  # multiples of 2**-8 below 16, integer weights: float64 sums are exact
        x = (rng.integers(-(2**12), 2**12, (K, D)) / 2**8).astype(np.float32)
        w = rng.integers(1, 100, K).astype(np.float64)
    else:  # full-precision weights: the order of the float64 additions shows
        x = (rng.standard_normal((K, D)) * rng.uniform(0.1, 100, (K, 1))).astype(np.float32)
        w = rng.uniform(0.5, 50.0, K)
    for row, value in HOSTILE.items():
        x[row, row * 997] = value
    return x, w


def accumulate(x: np.ndarray, w: np.ndarray, rows: range) -> Accumulator:
    acc = Accumulator(D, threads=1)
    for i in rows:
        try:
            acc.add(x[i], w[i])
        except privcity.InvalidUpdate:
            pass  # counted in acc.rejected
    return acc


def ulps(a: np.ndarray, b: np.ndarray) -> int:
    """Largest |a - b| in float32 units in the last place of the larger magnitude."""
    unit = np.spacing(np.maximum(np.abs(a), np.abs(b))).astype(np.float64)
    return int(np.ceil((np.abs(a.astype(np.float64) - b) / unit).max()))


def state(acc: Accumulator) -> str:
    digest = hashlib.sha256(acc.weighted_sum().tobytes()).hexdigest()[:16]
    return f"{digest} {acc.count} {acc.total_weight!r} {acc.rejected}"


def main() -> None:
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    mine = range(rank * K // size, (rank + 1) * K // size)
    report: dict = {"size": size}
    for kind in ("dyadic", "gaussian"):
        x, w = updates(kind)
        everyone = combine(accumulate(x, w, mine), comm)  # Allreduce
        same_everywhere = comm.gather(state(everyone), root=0)
        partial = accumulate(x, w, mine)
        partial_state = state(partial)
        at_root = combine(partial, comm, root=0)  # Reduce
        others_kept = comm.gather(state(at_root) == partial_state, root=0)
        if rank != 0:
            continue
        single = accumulate(x, w, range(K))
        s1, sm = single.weighted_sum(), everyone.weighted_sum()
        spread = (np.abs(w[:, None] * x.astype(np.float64))[[i for i in range(K) if i not in HOSTILE]]
                  ).sum(axis=0)
        m1, mm, mr = single.mean(), everyone.mean(), at_root.mean()
        report[kind] = {
            "mean_equal": bool(np.array_equal(m1, mm)),
            "reduce_mean_equal": bool(np.array_equal(m1, mr)),
            "sum_equal": bool(np.array_equal(s1, sm)),
            "sum_error_over_spread": float((np.abs(s1 - sm) / spread).max()),
            "mean_max_ulps": ulps(m1, mm),
            "reduce_mean_max_ulps": ulps(m1, mr),
            "count": [single.count, everyone.count, at_root.count],
            "total_weight": [single.total_weight, everyone.total_weight, at_root.total_weight],
            "rejected": [single.rejected, everyone.rejected, at_root.rejected],
            "ranks_identical": len(set(same_everywhere)) == 1,
            "non_roots_kept_partial_state": all(others_kept[1:]),
        }
    if rank == 0:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
