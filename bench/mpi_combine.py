"""Cost of privcity's cross-rank combination of Accumulators beside mpi4py's Allreduce of the
same buffer (D + 3 float64: the sum, total weight, count and rejections).

Run: mpiexec -n 2 python bench/mpi_combine.py [D] [reps]
(bench/test_aggregate.py::test_mpi_combine launches it and records the medians). Each call is
timed with MPI.Wtime from a Barrier to its end on the slowest rank (osu-style), the two in turn
within each rep; rank 0 prints one JSON line with the medians in seconds and the ratio
anchor / privcity. The anchor passes its result back in as the next input, as combine() does.
"""
from __future__ import annotations

import json
import sys

import numpy as np
from mpi4py import MPI

from privcity.aggregate import Accumulator, combine


def timed(comm: MPI.Comm, fns, reps: int, warmup: int = 3) -> list[float]:
    """Median time of each of fns, run in turn within each rep so that drift hits all alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for fn, t in zip(fns, times):
            comm.Barrier()
            t0 = MPI.Wtime()
            fn()
            t.append(comm.allreduce(MPI.Wtime() - t0, op=MPI.MAX))
    return [float(np.median(t)) for t in times]


def main() -> None:
    d = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    comm = MPI.COMM_WORLD
    rng = np.random.default_rng(comm.Get_rank())
    acc = Accumulator(d)
    for _ in range(4):
        acc.add(rng.standard_normal(d, dtype=np.float32), 1.0)
    # Every call doubles the combined state (2 ranks); 2**(reps + warmup) stays far from overflow.
    bufs = [np.concatenate([acc.weighted_sum(), [acc.total_weight, acc.count, acc.rejected]])]
    bufs.append(np.empty_like(bufs[0]))

    def allreduce() -> None:  # the result becomes the next input, as combine() swaps its buffers
        comm.Allreduce(bufs[0], bufs[1], op=MPI.SUM)
        bufs.reverse()

    anchor, ours = timed(comm, [allreduce, lambda: combine(acc, comm)], reps)
    if comm.Get_rank() == 0:
        print(json.dumps({"ranks": comm.Get_size(), "d": d, "reps": reps,
                          "mpi4py_allreduce_s": anchor, "privcity_combine_s": ours,
                          "ratio": anchor / ours}))


if __name__ == "__main__":
    main()
