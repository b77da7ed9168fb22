"""Aggregation of model updates: FedAvg means at memory bandwidth, robust aggregators, modular
sums for secure aggregation, and the cross-rank combination of partial sums.

- :func:`weighted_mean` (batch) and :class:`Accumulator` (streaming, one update at a time, no
  K x D matrix) sum in float64 and return float32; the two agree bit for bit.
- :func:`median`, :func:`trimmed_mean`, :func:`krum` (and multi-Krum), :func:`clip_norms`.
- :func:`modular_sum`: exact wrap-around sums of uint32/uint64 (or int32/int64) updates.
- :mod:`privcity.aggregate.secure`: secure aggregation (Bonawitz et al. 2017, the variant
  against an active server): the server learns only the sum of the clients' integer vectors,
  with dropouts recovered; :class:`DeviceVerifier` checks the devices' certificates and
  signatures against the city CA.
- :func:`combine`: one MPI Allreduce/Reduce of Accumulators; takes the caller's communicator
  and imports no MPI itself.

Hostile input: an update with NaN or Inf, the wrong length, shape or dtype, or a negative or
non-finite weight is rejected alone. ``Accumulator.add`` raises :class:`privcity.InvalidUpdate`
and leaves the sum as it was; the batch functions raise it naming every bad update
(``on_invalid="raise"``, the default) or leave those out (``on_invalid="skip"``) and, with
``report=True``, return an :class:`AggregateResult` saying which were skipped and why.

dtypes: the kernels work on float32 (updates) with float64 sums. float32 C-contiguous updates
are read in place; float64 (or float16) updates are rounded to float32 first, which costs a copy
and an error of at most 2**-24 relative per value, no more than the float32 result's own
rounding. Threads: every function takes ``threads=`` (0, the default, is one per available
core); results never depend on it.
"""
from __future__ import annotations

from .mean import Accumulator as Accumulator
from .mean import modular_sum as modular_sum
from .mean import weighted_mean as weighted_mean
from .mpi import combine as combine
from .result import AggregateResult as AggregateResult
from .robust import clip_norms as clip_norms
from .robust import krum as krum
from .robust import median as median
from .robust import trimmed_mean as trimmed_mean
from .secure import SecAggClient as SecAggClient
from .secure import SecureSumReport as SecureSumReport
from .secure import SecAggServer as SecAggServer
from .secure import collusion_threshold as collusion_threshold
from .secure import neighbors_for as neighbors_for
from .secure import secure_sum as secure_sum
from .verifier import DeviceVerifier as DeviceVerifier

__all__ = [
    "Accumulator",
    "AggregateResult",
    "DeviceVerifier",
    "SecAggClient",
    "SecAggServer",
    "SecureSumReport",
    "clip_norms",
    "collusion_threshold",
    "combine",
    "krum",
    "median",
    "modular_sum",
    "neighbors_for",
    "secure_sum",
    "trimmed_mean",
    "weighted_mean",
]
