"""SecureRNG refuses bad input with the documented exception, naming the parameter, before it
consumes any keystream."""
from __future__ import annotations

import math

import numpy as np
import pytest

from privcity.noise import SecureRNG

BAD_POSITIVE = [0.0, -1.0, -0.0, math.nan, math.inf, -math.inf]
_IDS = ["zero", "negative", "minus-zero", "nan", "inf", "-inf"]

SCALED = {
    "gaussian_f32": ("sigma", lambda r, v: r.gaussian(10, v)),
    "gaussian_f64": ("sigma", lambda r, v: r.gaussian(10, v, dtype=np.float64)),
    "add_gaussian_": ("sigma", lambda r, v: r.add_gaussian_(np.zeros(10, np.float32), v)),
    "laplace": ("scale", lambda r, v: r.laplace(10, v)),
    "discrete_gaussian": ("sigma", lambda r, v: r.discrete_gaussian(10, v)),
    "discrete_laplace": ("scale", lambda r, v: r.discrete_laplace(10, v)),
}

COUNTED = {
    "random_bytes": lambda r, n: r.random_bytes(n),
    "uniform": lambda r, n: r.uniform(n),
    "bernoulli": lambda r, n: r.bernoulli(n, 0.5),
    "gaussian_f32": lambda r, n: r.gaussian(n, 1.0),
    "gaussian_f64": lambda r, n: r.gaussian(n, 1.0, dtype=np.float64),
    "laplace": lambda r, n: r.laplace(n, 1.0),
    "discrete_gaussian": lambda r, n: r.discrete_gaussian(n, 1.0),
    "discrete_laplace": lambda r, n: r.discrete_laplace(n, 1.0),
}


@pytest.mark.parametrize("value", BAD_POSITIVE, ids=_IDS)
@pytest.mark.parametrize("kind", sorted(SCALED))
def test_bad_sigma_or_scale_is_a_value_error_naming_it(kind, value):
    # Prepare
    name, draw = SCALED[kind]
    rng = SecureRNG(1)

    # Execute / Assert
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        draw(rng, value)
    assert rng.position == 0


@pytest.mark.parametrize("value", [1e39, 1e-46], ids=["overflows-float32", "underflows-float32"])
def test_float32_sigma_that_does_not_fit_is_refused(value):
    # Prepare: finite as a double, but inf or 0 once narrowed to float32
    rng = SecureRNG(1)

    # Execute / Assert
    with pytest.raises(ValueError, match="sigma"):
        rng.gaussian(10, value)
    assert rng.position == 0


@pytest.mark.parametrize("value", ["abc", None, [1.0]], ids=["str", "None", "list"])
@pytest.mark.parametrize("kind", sorted(SCALED))
def test_non_numeric_sigma_or_scale_is_a_type_error(kind, value):
    # Prepare
    name, draw = SCALED[kind]

    # Execute / Assert
    with pytest.raises(TypeError, match=name):
        draw(SecureRNG(1), value)


@pytest.mark.parametrize("n", [-1, -(2**40), np.int64(-3)], ids=["-1", "-2**40", "np.int64"])
@pytest.mark.parametrize("kind", sorted(COUNTED))
def test_negative_n_is_a_value_error(kind, n):
    # Prepare
    rng = SecureRNG(1)

    # Execute / Assert
    with pytest.raises(ValueError, match="n must be >= 0"):
        COUNTED[kind](rng, n)
    assert rng.position == 0


@pytest.mark.parametrize("n", [2.0, "3", None, True], ids=["float", "str", "None", "bool"])
@pytest.mark.parametrize("kind", sorted(COUNTED))
def test_non_integer_n_is_a_type_error(kind, n):
    # Execute / Assert
    with pytest.raises(TypeError, match="n must be an int"):
        COUNTED[kind](SecureRNG(1), n)


@pytest.mark.parametrize("kind", sorted(COUNTED))
def test_numpy_integer_n_is_accepted(kind):
    # Execute
    out = COUNTED[kind](SecureRNG(1), np.int32(5))

    # Assert
    assert len(out) == 5


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.complex64, np.uint8])
def test_add_gaussian_refuses_other_dtypes(dtype):
    # Prepare
    x = np.zeros(10, dtype)
    rng = SecureRNG(1)

    # Execute / Assert
    with pytest.raises(TypeError, match="float32 or float64"):
        rng.add_gaussian_(x, 1.0)
    assert np.array_equal(x, np.zeros(10, dtype))
    assert rng.position == 0


@pytest.mark.parametrize("make", [
    lambda: np.zeros(20, np.float32)[::2],
    lambda: np.asfortranarray(np.zeros((4, 5), np.float64)),
    lambda: np.zeros((5, 4), np.float32).T,
], ids=["strided", "fortran", "transposed"])
def test_add_gaussian_refuses_non_contiguous_arrays(make):
    # Prepare
    x = make()
    rng = SecureRNG(1)

    # Execute / Assert
    with pytest.raises(ValueError, match="C-contiguous"):
        rng.add_gaussian_(x, 1.0)
    assert not x.any()
    assert rng.position == 0


def test_add_gaussian_refuses_read_only_arrays():
    # Prepare
    x = np.zeros(10, np.float32)
    x.flags.writeable = False

    # Execute / Assert
    with pytest.raises(ValueError, match="writable"):
        SecureRNG(1).add_gaussian_(x, 1.0)


@pytest.mark.parametrize("x", [[0.0, 1.0], (0.0,), 3.0], ids=["list", "tuple", "float"])
def test_add_gaussian_refuses_non_arrays(x):
    # Execute / Assert
    with pytest.raises(TypeError, match="numpy array"):
        SecureRNG(1).add_gaussian_(x, 1.0)


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.complex128, "int64"])
def test_gaussian_refuses_other_dtypes(dtype):
    # Prepare
    rng = SecureRNG(1)

    # Execute / Assert
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        rng.gaussian(3, 1.0, dtype=dtype)
    assert rng.position == 0


@pytest.mark.parametrize("p", [-0.1, 1.1, math.nan, math.inf], ids=["negative", "above-one", "nan", "inf"])
def test_bernoulli_refuses_p_outside_0_1(p):
    # Prepare
    rng = SecureRNG(1)

    # Execute / Assert
    with pytest.raises(ValueError, match=r"^p must be in \[0, 1\]"):
        rng.bernoulli(10, p)
    assert rng.position == 0


def test_stream_without_seed_is_a_value_error():
    # Execute / Assert
    with pytest.raises(ValueError, match="give a seed"):
        SecureRNG(stream=1)


@pytest.mark.parametrize("stream", [-1, 2**64], ids=["negative", "2**64"])
def test_stream_out_of_range_is_a_value_error(stream):
    # Execute / Assert
    with pytest.raises(ValueError, match="stream must be in"):
        SecureRNG(b"seed", stream=stream)


@pytest.mark.parametrize("stream", [1.0, "1", True, None], ids=["float", "str", "bool", "None"])
def test_non_integer_stream_is_a_type_error(stream):
    # Execute / Assert
    with pytest.raises(TypeError, match="stream must be an int"):
        SecureRNG(b"seed", stream=stream)


@pytest.mark.parametrize("seed,error", [
    (-1, ValueError), (True, TypeError), (1.5, TypeError), ("seed", TypeError), ([1, 2], TypeError),
], ids=["negative-int", "bool", "float", "str", "list"])
def test_bad_seeds_are_refused(seed, error):
    # Execute / Assert
    with pytest.raises(error, match="seed must be"):
        SecureRNG(seed)


def test_numpy_integer_seed_is_the_same_seed_as_the_python_int():
    # Prepare
    from privcity.noise import SecureRNG

    # Execute
    a = SecureRNG(np.int64(5)).random_bytes(64)
    b = SecureRNG(5).random_bytes(64)

    # Assert
    assert a == b


def test_discrete_laplace_refuses_scales_beyond_two_to_the_56():
    # Prepare: beyond 2**56 the values the sampler cannot represent (|x| >= 2**62) stop being
    # negligible, so the draw would no longer be exact
    from privcity.noise import SecureRNG

    # Execute / Assert
    with pytest.raises(ValueError, match="scale"):
        SecureRNG(1).discrete_laplace(4, 2.0**57)
    assert SecureRNG(1).discrete_laplace(4, 2.0**56).shape == (4,)
