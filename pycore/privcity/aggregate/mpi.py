"""Combining :class:`Accumulator` partial sums across MPI ranks (edge gateways -> server).

This module imports nothing of mpi4py (only ``privcity.sim`` does, per the architecture): the
caller passes its communicator, and any object with mpi4py's buffer methods works. Each
Accumulator keeps its sum, total weight, count and rejections in one float64 buffer, so the
combination is one ``Allreduce`` (every rank gets the result) or one ``Reduce`` (the root does)
of that buffer, with no copy or allocation:

    from mpi4py import MPI
    from privcity.aggregate import Accumulator, combine

    acc = Accumulator(dim)
    for update, weight in my_devices():      # this rank's block of devices
        acc.add(update, weight)
    combine(acc, MPI.COMM_WORLD)             # now every rank holds the total
    global_mean = acc.mean()

Run with ``mpiexec -n 4 python script.py``. The operation is MPI's sum, mpi4py's default for
``Allreduce``/``Reduce``, so no MPI constant is needed here; ``op`` lets a caller pass one
(e.g. ``MPI.SUM``) explicitly. The datatype (MPI_DOUBLE) is inferred by mpi4py from the numpy
buffer.

Floating point: MPI adds the P partial sums in an order of its choosing, so the combined float64
sum can differ from a one-process sum of the same updates by rounding (relative error at most
about P * 2**-53 of the sum of absolute values); the float32 mean almost always rounds to the same
value. Sums of values with few significant bits (e.g. quantized updates) are exact, hence equal.
"""
from __future__ import annotations

from typing import Any

from .mean import Accumulator

__all__ = ["combine"]


def combine(acc: Accumulator, comm: Any, *, root: int | None = None, op: Any = None) -> Accumulator:
    """Adds up the Accumulators of every rank of ``comm`` (a collective: every rank calls it).

    Parameters
    ----------
    acc : Accumulator
        This rank's partial state; every rank's must have the same dim.
    comm : mpi4py.MPI.Comm or compatible
        Needs ``Allreduce(sendbuf, recvbuf[, op=])`` (root None) or
        ``Reduce(sendbuf, recvbuf, [op=,] root=)`` and ``Get_rank()`` (root given), with numpy
        float64 buffers, summing by default as mpi4py does.
    root : int, optional
        None (default): Allreduce, every rank's ``acc`` becomes the combined one. A rank
        number: Reduce, only that rank's ``acc`` becomes the combined one; the others keep
        their partial state.
    op : MPI.Op, optional
        Reduction operation passed to the communicator; default its own default (sum).

    Returns
    -------
    Accumulator
        ``acc`` itself: sum, total_weight, count and rejected are the totals over the ranks
        (on every rank, or on the root only).
    """
    if not isinstance(acc, Accumulator):
        raise TypeError(f"acc must be an Accumulator, not {type(acc).__name__}")
    d = acc._dim
    send = acc._acc
    send[d:] = (acc._total, float(acc._count), float(acc._rejected))
    kw = {} if op is None else {"op": op}
    here = root is None or comm.Get_rank() == root
    recv = acc._spare if here else None
    if root is None:
        comm.Allreduce(send, recv, **kw)
    else:
        comm.Reduce(send, recv, root=root, **kw)
    if here:
        acc._acc, acc._spare = recv, send
        acc._total = float(recv[d])
        acc._count = int(recv[d + 1])
        acc._rejected = int(recv[d + 2])
    return acc
