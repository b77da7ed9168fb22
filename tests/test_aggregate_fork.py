"""The reduction kernels' worker pool survives fork: a child makes its own."""
from __future__ import annotations

import os
import select
import signal

import numpy as np
import pytest

from privcity.aggregate import weighted_mean


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_weighted_mean_works_in_a_forked_child_after_the_parent_used_threads():
    # Prepare: the parent runs a multi-threaded reduction first, so its pool exists
    x = np.random.default_rng(3).standard_normal((8, 300_000), dtype=np.float32)
    w = np.arange(1.0, 9.0)
    expected = weighted_mean(x, w, threads=2)
    r, wfd = os.pipe()

    # Execute
    pid = os.fork()
    if pid == 0:
        try:
            os.write(wfd, weighted_mean(x, w, threads=2).tobytes())
        finally:
            os._exit(0)
    os.close(wfd)
    chunks = []
    while True:
        ready, _, _ = select.select([r], [], [], 20.0)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            break
        chunk = os.read(r, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.waitpid(pid, 0)
    os.close(r)

    # Assert
    got = np.frombuffer(b"".join(chunks), np.float32)
    assert got.shape == expected.shape, "the child hung or failed"
    np.testing.assert_array_equal(got, expected)
