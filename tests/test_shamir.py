"""Shamir's scheme over GF(2^128) on the native core (_core.gf128_mul, shamir_eval,
shamir_interpolate0) against an independent implementation: pycryptodome's
Crypto.Protocol.SecretSharing (its field element _Element and Shamir.split / combine), whose
field and share format the kernels follow. Every multiplication path (PCLMULQDQ on x86-64 or
PMULL on aarch64 where the CPU has it, and the constant-time portable product) is forced through
the AES cap and restored afterwards."""
from __future__ import annotations

import os

import numpy as np
import pytest
from Crypto.Protocol.SecretSharing import Shamir, _Element

import privcity
from privcity import _core
from privcity.aggregate import secure

# The carry-less multiplication of this architecture, selected by any cap above none.
if _core.ISA_ARCH == "aarch64":
    CLMUL, HAS_CLMUL = "pmull", privcity.cpu_features().get("arm_pmull", False)
else:
    CLMUL, HAS_CLMUL = "clmul", "aesni" in privcity.aes_implementations()
PATHS = {CLMUL: _core.AES_ISA_AESNI, "portable": _core.AES_ISA_NONE}


@pytest.fixture(params=list(PATHS))
def path(request):
    """Forces one multiplication path for the test, then restores the cap."""
    name = request.param
    if name == CLMUL and not HAS_CLMUL:
        pytest.skip(f"this CPU has no {CLMUL} path (AES-NI + PCLMULQDQ, or PMULL on aarch64)")
    before = _core.aes_isa_cap()
    _core.set_aes_isa_cap(PATHS[name])
    try:
        yield name
    finally:
        _core.set_aes_isa_cap(before)


def ref_mul(a: bytes, b: bytes) -> bytes:
    return (_Element(a) * _Element(b)).encode()


def ref_eval(coeffs: list[bytes], x: int) -> bytes:
    """pycryptodome's Horner evaluation, highest degree first, with its own elements."""
    y = _Element(0)
    for c in coeffs:
        y = _Element(x) * y + _Element(c)
    return y.encode()


EDGES = [bytes(16), bytes(15) + b"\x01", b"\xff" * 16, b"\x80" + bytes(15),
         bytes(15) + b"\x87", b"\x80" + bytes(14) + b"\x01", bytes(8) + b"\xff" * 8,
         b"\xff" * 8 + bytes(8)]


def test_multiplication_equals_pycryptodome(path):
    # Prepare: random elements, and the edges of the reduction (top bits set, the polynomial)
    rng = np.random.default_rng(1)
    pairs = [(rng.bytes(16), rng.bytes(16)) for _ in range(3000)]
    pairs += [(a, b) for a in EDGES for b in EDGES]

    # Execute
    got = [_core.gf128_mul(a, b) for a, b in pairs]

    # Assert
    assert got == [ref_mul(a, b) for a, b in pairs]


def test_field_laws_hold(path):
    rng = np.random.default_rng(2)
    one = bytes(15) + b"\x01"
    for _ in range(200):
        a, b, c = rng.bytes(16), rng.bytes(16), rng.bytes(16)
        assert _core.gf128_mul(a, one) == a
        assert _core.gf128_mul(a, b) == _core.gf128_mul(b, a)
        left = _core.gf128_mul(_core.gf128_mul(a, b), c)
        assert left == _core.gf128_mul(a, _core.gf128_mul(b, c))
        b_plus_c = bytes(x ^ y for x, y in zip(b, c))
        ab, ac = _core.gf128_mul(a, b), _core.gf128_mul(a, c)
        assert _core.gf128_mul(a, b_plus_c) == bytes(x ^ y for x, y in zip(ab, ac))


@pytest.mark.parametrize("t,n", [(1, 1), (1, 5), (2, 3), (3, 10), (33, 64), (65, 129)])
def test_shares_are_pycryptodomes_polynomial(path, t, n):
    # Prepare: the same coefficients on both sides
    rng = np.random.default_rng(t * 1000 + n)
    coeffs = [rng.bytes(16) for _ in range(t)]

    # Execute
    got = _core.shamir_eval(np.frombuffer(b"".join(coeffs), np.uint8),
                            np.arange(1, n + 1, dtype=np.uint32))

    # Assert
    assert got.shape == (n, 16) and got.dtype == np.uint8
    assert [row.tobytes() for row in got] == [ref_eval(coeffs, x) for x in range(1, n + 1)]


@pytest.mark.parametrize("t,n", [(1, 3), (2, 2), (3, 7), (9, 16), (33, 64)])
def test_our_shares_recombine_in_pycryptodome_and_theirs_in_ours(path, t, n):
    rng = np.random.default_rng(t + 7 * n)
    for trial in range(5):
        secret = os.urandom(16)
        pick = sorted(rng.choice(n, t, replace=False).tolist())

        ours = secure._split(secret, t, n)
        theirs = Shamir.split(t, n, secret)

        assert Shamir.combine([(i + 1, ours[i]) for i in pick]) == secret
        assert secure._combine([theirs[i] for i in pick]) == secret
        # any t shares, in any order
        shuffled = [theirs[i] for i in rng.permutation(pick).tolist()]
        assert secure._combine(shuffled) == secret


def test_fewer_shares_than_the_threshold_do_not_give_the_secret(path):
    # With t - 1 shares the interpolation is of the wrong degree: the result is another element
    # (equal to the secret with probability 2^-128).
    secret = os.urandom(16)
    shares = secure._split(secret, 5, 8)
    assert secure._combine([(i + 1, shares[i]) for i in range(4)]) != secret
    assert secure._combine([(i + 1, shares[i]) for i in range(5)]) == secret


def test_coefficients_are_fresh_each_split():
    secret = os.urandom(16)
    a, b = secure._split(secret, 3, 4), secure._split(secret, 3, 4)
    assert a != b  # same secret, new random polynomial
    assert secure._combine([(1, a[0]), (2, a[1]), (3, a[2])]) == secret
    assert secure._combine([(2, b[1]), (3, b[2]), (4, b[3])]) == secret


def test_bad_indexes_and_shapes_are_refused():
    ys = np.zeros(32, np.uint8)
    with pytest.raises(ValueError, match="nonzero and distinct"):
        _core.shamir_interpolate0(np.array([1, 1], np.uint32), ys)
    with pytest.raises(ValueError, match="nonzero and distinct"):
        _core.shamir_interpolate0(np.array([0, 2], np.uint32), ys)
    with pytest.raises(ValueError, match="nonzero and distinct"):
        _core.shamir_interpolate0(np.zeros(0, np.uint32), np.zeros(0, np.uint8))
    with pytest.raises(ValueError, match="one 16-byte share per index"):
        _core.shamir_interpolate0(np.array([1, 2], np.uint32), np.zeros(31, np.uint8))
    with pytest.raises(ValueError, match="16-byte elements"):
        _core.shamir_eval(np.zeros(15, np.uint8), np.arange(1, 3, dtype=np.uint32))
    with pytest.raises(ValueError, match="16 bytes"):
        _core.gf128_mul(b"\x01" * 15, bytes(16))


def test_misshapen_arrays_and_index_zero_are_refused():
    coeffs = np.frombuffer(os.urandom(48), np.uint8)
    shares = _core.shamir_eval(coeffs, np.arange(1, 4, dtype=np.uint32))
    with pytest.raises(ValueError, match="nonzero"):  # p(0) would be the secret itself
        _core.shamir_eval(coeffs, np.array([1, 0], np.uint32))
    with pytest.raises(ValueError, match="1-D"):
        _core.shamir_eval(coeffs, np.arange(1, 5, dtype=np.uint32).reshape(2, 2))
    xs = np.arange(1, 4, dtype=np.uint32)
    with pytest.raises(ValueError, match=r"shape \(t, 16\)"):  # the right bytes, transposed
        _core.shamir_interpolate0(xs, np.ascontiguousarray(shares.T))
    with pytest.raises(ValueError, match="1-D"):
        _core.shamir_interpolate0(xs.reshape(3, 1), shares)
    assert _core.shamir_interpolate0(xs, shares) == coeffs[32:].tobytes()
    assert _core.shamir_interpolate0(xs, shares.ravel()) == coeffs[32:].tobytes()


@pytest.mark.parametrize("shares,match", [
    ([(1, bytes(15)), (2, bytes(17)), (3, bytes(16))], "16 bytes"),  # lengths add up to 48
    ([(1.0, bytes(16)), (2, bytes(16))], "integer"),
    ([(True, bytes(16)), (2, bytes(16))], "integer"),
    ([(0, bytes(16)), (2, bytes(16))], r"\[1, 2\*\*32\)"),
    ([(2**32, bytes(16)), (2, bytes(16))], r"\[1, 2\*\*32\)"),
    ([(-1, bytes(16)), (2, bytes(16))], r"\[1, 2\*\*32\)"),
    ([(1, bytes(16)), (1, bytes(16))], "distinct"),
    ([], "at least one"),
])
def test_combine_refuses_malformed_shares(shares, match):
    with pytest.raises(ValueError, match=match):
        secure._combine(shares)


@pytest.mark.parametrize("secret,t,n,match", [
    (bytes(32), 2, 3, "16 bytes"), (b"", 2, 3, "16 bytes"), (bytes(15), 2, 3, "16 bytes"),
    (bytes(16), 0, 3, "threshold"), (bytes(16), 4, 3, "threshold"),
])
def test_split_refuses_bad_secrets_and_thresholds(secret, t, n, match):
    with pytest.raises(ValueError, match=match):
        secure._split(secret, t, n)
