"""privcity.models._shuffle: the training kernels' copy of numpy's
``np.random.default_rng(seed).permutation`` stream, checked bit for bit against numpy, and
local training visiting rows in exactly that order."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privcity.models import LinearRegression, train_local, train_many
from privcity.models._shuffle import new_rng, permutation, seed_words


def kernel_permutations(seed: int, sizes: list[int]) -> list[np.ndarray]:
    rng = new_rng(seed_words(np.array([seed], np.uint64))[0])
    out = []
    for n in sizes:
        perm = np.empty(n, np.int64)
        permutation(rng, perm)
        out.append(perm)
    return out


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**64 - 1),
       sizes=st.lists(st.integers(0, 300), min_size=1, max_size=4))
def test_successive_permutations_match_numpy_for_any_seed(seed, sizes):
    # Prepare
    numpy_rng = np.random.default_rng(seed)

    # Execute
    ours = kernel_permutations(seed, sizes)

    # Assert: the same draws, including the buffered half of a 64-bit draw carried over
    # from one permutation to the next
    for n, perm in zip(sizes, ours):
        assert np.array_equal(perm, numpy_rng.permutation(n))


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1])
def test_permutations_match_numpy_at_the_seed_word_boundaries(seed):
    # Prepare: a seed below 2**32 is hashed as one 32-bit word, above as two
    sizes = [1, 2, 60, 61, 100_000]

    # Execute
    ours = kernel_permutations(seed, sizes)

    # Assert
    numpy_rng = np.random.default_rng(seed)
    assert all(np.array_equal(p, numpy_rng.permutation(n)) for n, p in zip(sizes, ours))


def test_seed_words_count_one_word_below_two_to_the_32():
    # Prepare / Execute
    words = seed_words(np.array([0, 2**32 - 1, 2**32, 2**64 - 1], np.uint64))

    # Assert
    assert words[:, 2].tolist() == [1, 1, 2, 2]
    assert words[3, :2].tolist() == [2**32 - 1, 2**32 - 1]


def sgd_on_one_hot_rows(n: int, epochs: int, lr: float, seed: int) -> np.ndarray:
    """Reference SGD (batch 1) of a linear regression on the rows of the n x n identity: every
    dot product has one non-zero term, so float32 rounding does not depend on how it is summed
    and only the order of the rows (numpy's permutation) shapes the bits."""
    y = np.linspace(-1.0, 1.0, n).astype(np.float32)
    w, b = np.zeros(n, np.float32), np.float32(0.0)
    rng, lr32 = np.random.default_rng(seed), np.float32(lr)
    for _ in range(epochs):
        for r in rng.permutation(n):
            d = (w[r] + b) - y[r]
            w[r] = w[r] - lr32 * d
            b = b - lr32 * d
    return np.append(w, b)


def test_training_visits_rows_in_numpys_permutation_order_epoch_after_epoch():
    # Prepare
    n, epochs, lr, seed = 40, 3, 0.3, 2**40 + 7
    model = LinearRegression(n_features=n)
    X, y = np.eye(n, dtype=np.float32), np.linspace(-1.0, 1.0, n).astype(np.float32)
    expected = sgd_on_one_hot_rows(n, epochs, lr, seed)

    # Execute
    local = train_local(model, model.init_params(0), X, y, epochs=epochs, batch_size=1, lr=lr,
                        seed=seed)
    many = train_many(model, model.init_params(0), X, y, [0, n], [0], epochs=epochs,
                      batch_size=1, lr=lr, seeds=[seed])

    # Assert: bit for bit; another seed's order gives other bits (the check can fail)
    assert np.array_equal(local, expected) and np.array_equal(many[0], expected)
    assert not np.array_equal(local, sgd_on_one_hot_rows(n, epochs, lr, seed + 1))
