"""The city simulator (``privcity simulate``): the only package that imports mpi4py.

Usage::

    privcity simulate                           # one process, the built-in defaults
    privcity simulate --config city.toml --devices 5000 --rounds 30 --out runs/a
    mpiexec -n 4 privcity simulate --devices 100000 --sample-rate 0.01
    privcity simulate --resume runs/a           # an interrupted run, on to its end (any P)

Rank 0 aggregates; ranks 1..P-1 host contiguous blocks of devices (see
:mod:`privcity.sim.runner`). For a fixed seed the results do not depend on P.
"""
from .checkpoint import CheckpointError as CheckpointError
from .config import SimConfig as SimConfig
from .config import load_config as load_config
from .control import Interrupted as Interrupted
from .control import RankFailure as RankFailure
from .runner import calibrate_noise_multiplier as calibrate_noise_multiplier
from .runner import resume_config as resume_config
from .runner import simulate as simulate
from .runner import summary_table as summary_table

__all__ = ["CheckpointError", "Interrupted", "RankFailure", "SimConfig",
           "calibrate_noise_multiplier", "load_config", "resume_config", "simulate",
           "summary_table"]


def mpi_world():
    """The MPI world communicator when this process runs under mpiexec with 2+ ranks, else
    None (mpi4py is imported only then: one process needs no MPI)."""
    import os
    markers = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS",
               "HYDI_CONTROL_FD")
    if not any(m in os.environ for m in markers):
        return None
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None
