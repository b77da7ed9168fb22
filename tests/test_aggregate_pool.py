"""The reduction kernels' worker pool: jobs handed over while the workers spin, after they have
gone to sleep, and from several Python threads at once all give the single-threaded result."""
from __future__ import annotations

import threading
import time

import numpy as np

from privcity.aggregate import Accumulator, weighted_mean

D = 300_000  # at least two 65,536-column tiles: the kernels split columns among threads


def _updates(seed: int, k: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((k, D), dtype=np.float32), rng.uniform(0.5, 3.0, k)


def _stream(x: np.ndarray, w: np.ndarray, threads: int, pause_s: float = 0.0) -> np.ndarray:
    acc = Accumulator(D, threads=threads)
    for row, wi in zip(x, w):
        acc.add(row, wi)
        if pause_s:
            time.sleep(pause_s)
    return acc.mean()


def test_calls_during_and_after_the_workers_spin_match_one_thread():
    # Prepare
    x, w = _updates(1)
    expected = _stream(x, w, threads=1)

    # Execute: back to back (workers still spinning), 50 us, and 5 ms apart (workers asleep)
    got = [_stream(x, w, threads=2, pause_s=p) for p in (0.0, 5e-5, 5e-3)]

    # Assert
    for g in got:
        np.testing.assert_array_equal(g, expected)


def test_several_python_threads_share_the_pool_and_get_their_own_results():
    # Prepare
    inputs = [_updates(seed) for seed in range(4)]
    expected = [weighted_mean(x, w, threads=1) for x, w in inputs]
    results: dict[int, list[np.ndarray]] = {}

    def work(i: int) -> None:
        x, w = inputs[i]
        results[i] = [_stream(x, w, threads=2) for _ in range(20)]
        results[i].append(weighted_mean(x, w, threads=2))

    # Execute
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    # Assert
    assert not any(t.is_alive() for t in threads)
    for i, exp in enumerate(expected):
        assert len(results[i]) == 21
        for r in results[i]:
            np.testing.assert_array_equal(r, exp)
