"""privcity.aggregate.combine: the cross-rank reduction under a real `mpiexec -n 3` (3 ranks on
however many cores, oversubscribed) against one process, and its contract with any comm object
without MPI. privcity.aggregate itself never imports mpi4py.

Stated tolerance for updates whose float64 sums round (MPI picks the order of the P partial
sums): weighted sums within (K + P) 2**-53 of sum |w x|, total weight within (K + P) 2**-53
relative, float32 means within 1 ulp. Updates with exact float64 sums give equal bits.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import privcity
from privcity.aggregate import Accumulator, combine

SCRIPT = Path(__file__).parent / "mpi" / "combine_ranks.py"
RANKS, K = 3, 30


def find_mpiexec() -> str | None:
    """The mpiexec beside this interpreter (pip's mpich puts it there, matching mpi4py's MPI),
    else the first on PATH."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = Path(folder) / "mpiexec"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("mpiexec")


@pytest.fixture(scope="module")
def mpi_report() -> dict:
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install '.[test]')")
    mpiexec = find_mpiexec()
    if mpiexec is None:
        pytest.skip("no mpiexec found beside Python or on PATH (pip install mpich)")
    env = dict(os.environ)
    env.pop("PRIVCITY_ISA", None)
    # More ranks than cores, as root: MPICH needs nothing; Open MPI needs these.
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", PRTE_MCA_rmaps_default_mapping_policy=":oversubscribe")
    proc = subprocess.run([mpiexec, "-n", str(RANKS), sys.executable, str(SCRIPT)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{mpiexec} failed:\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, f"expected one JSON line from rank 0:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[0])


def test_mpiexec_started_ranks_of_one_world(mpi_report):
    # Assert (a mismatch of mpiexec and mpi4py's MPI gives three worlds of size 1)
    assert mpi_report["size"] == RANKS


def test_combined_exact_sums_equal_one_process_bit_for_bit(mpi_report):
    # Prepare
    r = mpi_report["dyadic"]

    # Assert
    assert r["sum_equal"] and r["mean_equal"] and r["reduce_mean_equal"]
    assert len(set(r["total_weight"])) == 1


@pytest.mark.parametrize("kind", ["dyadic", "gaussian"])
def test_combined_result_is_within_tolerance_of_one_process(mpi_report, kind):
    # Prepare
    r = mpi_report[kind]
    single, allreduced, reduced = r["total_weight"]

    # Assert
    assert r["sum_error_over_spread"] <= (K + RANKS) * 2.0**-53
    assert r["mean_max_ulps"] <= 1 and r["reduce_mean_max_ulps"] <= 1
    assert abs(allreduced - single) <= (K + RANKS) * 2.0**-53 * single
    assert abs(reduced - single) <= (K + RANKS) * 2.0**-53 * single


@pytest.mark.parametrize("kind", ["dyadic", "gaussian"])
def test_combined_counts_rejections_and_copies(mpi_report, kind):
    # Prepare
    r = mpi_report[kind]

    # Assert: 3 hostile updates, one per rank, refused there and counted
    assert r["count"] == [K - 3] * 3
    assert r["rejected"] == [3] * 3
    assert r["ranks_identical"]
    assert r["non_roots_kept_partial_state"]


# --- the contract with a communicator, without MPI ------------------------------------------------

class LoopbackComm:
    """Two 'ranks' in one process: rank 0's buffer is summed with a fixed peer buffer."""

    def __init__(self, peer: np.ndarray, rank: int = 0) -> None:
        self.peer, self.rank, self.calls = peer, rank, []

    def Get_rank(self) -> int:  # noqa: N802 - mpi4py's names
        return self.rank

    def Allreduce(self, sendbuf, recvbuf, **kw):  # noqa: N802
        self.calls.append(("Allreduce", sendbuf.dtype, sendbuf.shape, kw))
        np.add(sendbuf, self.peer, out=recvbuf)

    def Reduce(self, sendbuf, recvbuf, root=0, **kw):  # noqa: N802
        self.calls.append(("Reduce", sendbuf.dtype, sendbuf.shape, dict(kw, root=root)))
        if recvbuf is not None:
            np.add(sendbuf, self.peer, out=recvbuf)


def two_halves() -> tuple[np.ndarray, np.ndarray, Accumulator, Accumulator]:
    rng = np.random.default_rng(3)
    x = (rng.integers(-1000, 1000, (6, 101)) / 64).astype(np.float32)  # exact float64 sums
    w = rng.integers(1, 9, 6).astype(np.float64)
    a, b = Accumulator(101), Accumulator(101)
    for i in range(3):
        a.add(x[i], w[i])
        b.add(x[i + 3], w[i + 3])
    with pytest.raises(privcity.InvalidUpdate):
        b.add(x[0] * np.inf)
    return x, w, a, b


def peer_buffer(acc: Accumulator) -> np.ndarray:
    return np.concatenate([acc.weighted_sum(), [acc.total_weight, acc.count, acc.rejected]])


def test_allreduce_of_one_float64_buffer_combines_everything():
    # Prepare
    x, w, a, b = two_halves()
    comm = LoopbackComm(peer_buffer(b))
    whole = Accumulator(101)
    for row, wi in zip(x, w):
        whole.add(row, wi)

    # Execute
    out = combine(a, comm)

    # Assert
    assert out is a
    assert comm.calls == [("Allreduce", np.float64, (101 + 3,), {})]
    assert (a.count, a.total_weight, a.rejected) == (6, float(w.sum()), 1)
    assert np.array_equal(a.mean(), whole.mean())


def test_reduce_changes_only_the_root_and_passes_the_op():
    # Prepare
    _, _, a, b = two_halves()
    before = (a.weighted_sum(), a.count)
    op = object()

    # Execute
    combine(a, LoopbackComm(peer_buffer(b), rank=1), root=0, op=op)
    at_root = combine(b, comm := LoopbackComm(peer_buffer(a), rank=0), root=0, op=op)

    # Assert
    assert np.array_equal(a.weighted_sum(), before[0]) and a.count == before[1]
    assert at_root.count == 6 and comm.calls[0][3] == {"op": op, "root": 0}


def test_combine_refuses_what_is_not_an_accumulator():
    # Execute / Assert
    with pytest.raises(TypeError, match="Accumulator"):
        combine(np.zeros(3), LoopbackComm(np.zeros(3)))


def test_aggregate_imports_no_mpi(run_python):
    # Prepare
    code = "import sys, privcity.aggregate; print('mpi4py' in sys.modules)"

    # Execute
    proc = run_python(code)

    # Assert
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
