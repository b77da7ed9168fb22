"""Hypothesis strategies for the fuzz tests of envelopes and the aggregator: what an attacker
does to real sealed bytes (bit flips, cuts, extensions, header fields rewritten) and tensor
payloads with crafted shapes and dtypes."""
from __future__ import annotations

import struct

from hypothesis import strategies as st

# Dimensions at the edges of numpy's and the codec's limits.
EDGE_DIMS = [0, 1, 2, 3, 7, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63,
             2**64 - 1]

# Item size of each dtype code of the tensor codec.
_ITEMSIZE = {1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 4, 8: 8, 9: 8, 10: 2, 11: 4, 12: 8}


def split(wire: bytes) -> dict:
    """The fields of a well-formed envelope (no checks: the input is a real one)."""
    s = wire[8]
    r = wire[9 + s]
    end = 10 + s + r
    epoch, counter, body = struct.unpack_from(">QQI", wire, end)
    return {"magic": wire[:4], "version": wire[4], "suite": wire[5], "ctype": wire[6],
            "reserved": wire[7], "sender": wire[9:9 + s], "receiver": wire[10 + s:end],
            "epoch": epoch, "counter": counter, "body_length": body, "body": wire[end + 20:]}


def _splittable(wire: bytes) -> bool:
    """Whether :func:`split` can read the header fields of ``wire``."""
    n = len(wire)
    return n > 9 and n > 9 + wire[8] and n >= 30 + wire[8] + wire[9 + wire[8]]


def assemble(f: dict) -> bytes:
    """Envelope bytes from fields, whatever their values (id lengths are taken mod 256)."""
    return (f["magic"] + bytes((f["version"], f["suite"], f["ctype"], f["reserved"],
                                len(f["sender"]) % 256)) + f["sender"]
            + bytes((len(f["receiver"]) % 256,)) + f["receiver"]
            + struct.pack(">QQI", f["epoch"], f["counter"], f["body_length"]) + f["body"])


_FIELDS = {
    "magic": st.binary(min_size=4, max_size=4),
    "version": st.integers(0, 255), "suite": st.integers(0, 255), "ctype": st.integers(0, 255),
    "reserved": st.integers(0, 255),
    "sender": st.one_of(st.sampled_from([b"dev-0", b"dev-1", b"dev-2", b"dev-5", b"dev-999",
                                         b"aggregator", b"gw-1", b"\xff\xfe"]),
                        st.binary(max_size=70)),
    "receiver": st.one_of(st.sampled_from([b"aggregator", b"gw-1", b"gw-2", b"dev-1"]),
                          st.binary(max_size=70)),
    "epoch": st.one_of(st.integers(0, 20), st.integers(0, 2**64 - 1)),
    "counter": st.one_of(st.integers(0, 50), st.integers(0, 2**64 - 1)),
    "body_length": st.one_of(st.integers(0, 600), st.integers(0, 2**32 - 1)),
}


@st.composite
def mutated(draw, wire: bytes) -> bytes:
    """``wire`` after one to three of: bit flips, a cut, an extension, rewritten header fields
    (ids, epoch, counter, lengths, version bytes), a run of bytes overwritten."""
    out = wire
    for _ in range(draw(st.integers(1, 3))):
        # Flips and field edits keep the length, so they reach the tag check more often.
        how = draw(st.sampled_from(["flip", "flip", "flip", "field", "field", "cut", "extend",
                                    "overwrite"]))
        if how == "flip" and out:
            b = bytearray(out)
            for pos, bit in draw(st.lists(st.tuples(st.integers(0, len(b) - 1),
                                                    st.integers(0, 7)), min_size=1, max_size=4)):
                b[pos] ^= 1 << bit
            out = bytes(b)
        elif how == "cut":
            out = out[:draw(st.integers(0, max(len(out) - 1, 0)))]
        elif how == "extend":
            out = out + draw(st.binary(min_size=1, max_size=40))
        elif how == "field" and _splittable(out):
            fields = split(out)
            name = draw(st.sampled_from(sorted(_FIELDS)))
            fields[name] = draw(_FIELDS[name])
            out = assemble(fields)
        elif out:  # overwrite a run of bytes in place
            at = draw(st.integers(0, len(out) - 1))
            block = draw(st.binary(min_size=1, max_size=16))[:len(out) - at]
            out = out[:at] + block + out[at + len(block):]
    return out


@st.composite
def tensor_payloads(draw) -> bytes:
    """Tensor codec bytes with crafted heads: any dtype code, any ndim, edge dimensions (a zero
    beside 2**63 ...), the shape cut short, and data of the right or a wrong length."""
    code = draw(st.one_of(st.integers(1, 12), st.integers(0, 255)))
    ndim = draw(st.one_of(st.integers(0, 8), st.integers(0, 255)))
    dims = draw(st.lists(st.one_of(st.sampled_from(EDGE_DIMS), st.integers(0, 2**64 - 1)),
                         min_size=min(ndim, 9), max_size=min(ndim, 9)))
    if draw(st.booleans()):
        dims = dims[:draw(st.integers(0, len(dims)))]  # shape cut short
    head = bytes((code, ndim)) + b"".join(struct.pack(">Q", d) for d in dims)
    count = 1
    for d in dims:
        count *= d
    if count * 8 <= 256 and draw(st.booleans()):
        size = count * _ITEMSIZE.get(code, 1)  # the exact length the head asks for
        data = draw(st.binary(min_size=size, max_size=size))
    else:
        data = draw(st.binary(max_size=64))
    return head + data
