"""One vote per block at the aggregator under secure aggregation (issue 14): Aggregator.admit_blocks
admits a block's sum once, only from the gateway that hosts the block, only with survivors that
are distinct sampled devices of the block and a sum of the round's width and dtype; everything
else is refused alone and counted, and nothing a gateway sends makes it raise."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privcity.fl import Aggregator, FedAvg

WIDTH = 8  # words of each block sum
WORD = np.dtype(np.uint32)
BLOCKS, POPULATION = 4, 40  # blocks of ten devices: [0, 10), [10, 20), [20, 30), [30, 40)
GATEWAYS = {1: range(0, 20), 2: range(20, 40)}  # gateway 1 hosts blocks 0 and 1, gateway 2 2, 3
COHORT = np.array([d for d in range(POPULATION) if d % 3])  # the server's sample: not 0, 3, 6..
KINDS = {"malformed", "wrong_gateway", "not_sampled", "duplicate"}


def make_aggregator(gateways: dict[int, object] = GATEWAYS) -> Aggregator:
    agg = Aggregator(strategy=FedAvg(), n_params=WIDTH, weights_of=lambda d: 1.0)
    for g, ids in gateways.items():
        agg.assign(g, np.asarray(list(ids)))
    return agg


def home(block: int) -> int:
    return 1 if block < 2 else 2


def block_devices(block: int) -> list[int]:
    return list(range(block * 10, block * 10 + 10))


def honest(block: int, survivors: list[int] | None = None, seed: int = 0) -> tuple:
    """A well-formed report of ``block``: random ring words, sampled survivors of the block
    (three by default, in descending order: the aggregator sorts them)."""
    total = np.random.default_rng([block, seed]).integers(0, 2**32, WIDTH, dtype=np.uint64)
    if survivors is None:
        survivors = [d for d in block_devices(block) if d in set(COHORT.tolist())][:3][::-1]
    return block, total.astype(WORD), survivors


def admit(agg: Aggregator, relayed: dict, cohort=COHORT):
    return agg.admit_blocks(relayed, blocks=BLOCKS, population=POPULATION, cohort=cohort,
                            width=WIDTH, dtype=WORD)


def test_honest_blocks_are_admitted_once_each_in_block_order_with_sorted_survivors():
    # Prepare: each gateway reports its blocks, out of order
    agg = make_aggregator()
    entries = {b: honest(b) for b in range(BLOCKS)}
    relayed = {2: [entries[3], entries[2]], 1: [entries[1], entries[0]]}

    # Execute
    admitted, refusals = admit(agg, relayed)

    # Assert
    assert refusals == {}
    assert [b for b, _, _ in admitted] == [0, 1, 2, 3]
    for b, total, survivors in admitted:
        assert np.array_equal(total, entries[b][1]) and total.dtype == WORD
        assert survivors.tolist() == sorted(entries[b][2]) and survivors.dtype == np.int64


def test_a_block_reported_twice_by_its_gateway_counts_once_the_first_copy():
    # Prepare
    agg = make_aggregator()
    first, second = honest(1, seed=1), honest(1, seed=2)

    # Execute
    admitted, refusals = admit(agg, {1: [first, second, first]})

    # Assert
    assert refusals == {"duplicate": 2}
    assert len(admitted) == 1 and np.array_equal(admitted[0][1], first[1])


def test_a_block_from_a_gateway_that_does_not_host_it_is_refused_even_before_its_own_copy():
    # Prepare: gateway 1 (lower id: read first) reports gateway 2's block 2; gateway 3 hosts
    # nothing; gateway 2 reports its own block afterwards
    agg = make_aggregator()
    forged, own = honest(2, seed=7), honest(2, seed=8)

    # Execute
    admitted, refusals = admit(agg, {1: [forged], 2: [own], 3: [honest(0)]})

    # Assert
    assert refusals == {"wrong_gateway": 2}
    assert len(admitted) == 1 and np.array_equal(admitted[0][1], own[1])


def test_a_block_split_between_two_gateways_is_taken_from_neither():
    # Prepare: block 1 ([10, 20)) is cut at 15 between the gateways
    agg = make_aggregator({1: range(0, 15), 2: range(15, 40)})

    # Execute
    admitted, refusals = admit(agg, {1: [honest(1, [10, 11])], 2: [honest(1, [17, 19])]})

    # Assert
    assert admitted == [] and refusals == {"wrong_gateway": 2}


@pytest.mark.parametrize("survivors, kind", [
    ([1, 2, 10], "malformed"),          # 10 is in block 1
    ([1, 2, -1], "malformed"),          # no device
    ([2, 2, 4], "malformed"),           # one device counted twice
    ([], "malformed"),                  # a sum of nobody
    ([[1, 2], [4, 5]], "malformed"),    # not a list of ids
    ([1.0, 2.0], "malformed"),          # not integers
    (["1", "2"], "malformed"),
    (np.array([True, False]), "malformed"),
    (np.array([1, 2**63 + 5], np.uint64), "malformed"),
    ([1, 2**70], "malformed"),          # beyond int64
    (None, "malformed"),
    ({1, 2}, "malformed"),
    ([1, 2, 3], "not_sampled"),         # 3 was not sampled
    ([0], "not_sampled"),
], ids=repr)
def test_survivors_that_are_not_distinct_sampled_devices_of_the_block_are_refused(survivors,
                                                                                  kind):
    # Prepare
    agg = make_aggregator()
    _, total, _ = honest(0)

    # Execute
    admitted, refusals = admit(agg, {1: [(0, total, survivors), honest(1)]})

    # Assert: refused alone, the other block admitted
    assert refusals == {kind: 1}
    assert [b for b, _, _ in admitted] == [1]


@pytest.mark.parametrize("total", [
    np.zeros(WIDTH, np.uint64), np.zeros(WIDTH, np.int32), np.zeros(WIDTH, np.float32),
    np.zeros(WIDTH, ">u4"), np.zeros(WIDTH - 1, np.uint32), np.zeros(WIDTH + 1, np.uint32),
    np.zeros((1, WIDTH), np.uint32), np.zeros((WIDTH, 1), np.uint32), np.zeros(0, np.uint32),
    np.uint32(0), [0] * WIDTH, bytes(4 * WIDTH), None,
], ids=lambda t: f"{type(t).__name__}-{getattr(t, 'dtype', '')}-{getattr(t, 'shape', '')}")
def test_a_sum_of_the_wrong_dtype_shape_or_width_is_malformed(total):
    # Prepare
    agg = make_aggregator()

    # Execute
    admitted, refusals = admit(agg, {1: [(0, total, [1, 2]), honest(1)]})

    # Assert
    assert refusals == {"malformed": 1}
    assert [b for b, _, _ in admitted] == [1]


@pytest.mark.parametrize("entry", [
    None, 0, "abc", b"xyz", 1.5, (), (0,), (0, np.zeros(WIDTH, np.uint32)),
    (0, np.zeros(WIDTH, np.uint32), [1], "extra"), {"block": 0}, object(),
    (-1, np.zeros(WIDTH, np.uint32), [1]), (BLOCKS, np.zeros(WIDTH, np.uint32), [1]),
    (2**64, np.zeros(WIDTH, np.uint32), [1]), (True, np.zeros(WIDTH, np.uint32), [1]),
    (0.0, np.zeros(WIDTH, np.uint32), [1]), ("0", np.zeros(WIDTH, np.uint32), [1]),
    (None, np.zeros(WIDTH, np.uint32), [1]),
], ids=repr)
def test_garbage_is_refused_as_malformed_and_never_raises(entry):
    # Prepare
    agg = make_aggregator()

    # Execute
    admitted, refusals = admit(agg, {1: [entry, honest(0)], 2: [honest(3)]})

    # Assert
    assert refusals == {"malformed": 1}
    assert [b for b, _, _ in admitted] == [0, 3]


def test_numpy_block_ids_and_survivor_arrays_are_admitted_like_python_ints():
    # Prepare
    agg = make_aggregator()
    _, total, _ = honest(2)

    # Execute
    admitted, refusals = admit(agg, {2: [(np.int64(2), total, np.array([22, 20], np.int32))]})

    # Assert
    assert refusals == {}
    assert admitted[0][0] == 2 and admitted[0][2].tolist() == [20, 22]


def test_honest_blocks_mixed_with_every_refusal_are_admitted_in_block_order():
    # Prepare
    agg = make_aggregator()
    good = {b: honest(b) for b in range(BLOCKS)}
    _, total, _ = honest(0)
    relayed = {
        1: [None, (0, total, [1, 1]), good[1], (0, total, [3]), good[0], good[0],
            (0, total.astype(np.uint64), [1]), honest(2)],
        2: [(3, total[:-1], [31]), good[3], "garbage", good[2], (1, total, [10])],
    }

    # Execute
    admitted, refusals = admit(agg, relayed)

    # Assert: each entry counted once; the honest blocks in block order
    assert [b for b, _, _ in admitted] == [0, 1, 2, 3]
    assert refusals == {"malformed": 5, "not_sampled": 1, "duplicate": 1, "wrong_gateway": 2}
    assert len(admitted) + sum(refusals.values()) == sum(len(v) for v in relayed.values())
    for b, total_, _ in admitted:
        assert np.array_equal(total_, good[b][1])


# --- hypothesis: mutated honest entries -------------------------------------------------------

_GARBAGE = st.one_of(st.none(), st.integers(), st.binary(max_size=16), st.text(max_size=4),
                     st.floats(), st.lists(st.integers(-5, 50), max_size=4).map(tuple),
                     st.tuples(st.integers(-2, 6), st.none(), st.integers()))


@st.composite
def reported_entry(draw) -> tuple[int, object, bool]:
    """(gateway, entry, valid): an honest entry of a random block from its gateway, or one
    mutated so that it must be refused (valid False)."""
    block = draw(st.integers(0, BLOCKS - 1))
    sampled = [d for d in block_devices(block) if d % 3]
    survivors = draw(st.lists(st.sampled_from(sampled), min_size=1, unique=True))
    _, total, _ = honest(block, seed=draw(st.integers(0, 3)))
    how = draw(st.sampled_from(["honest", "gateway", "block", "dtype", "width", "ndim",
                                "outside", "twice", "not_sampled", "empty", "float_ids",
                                "garbage"]))
    gateway, entry = home(block), (block, total, survivors)
    if how == "gateway":
        gateway = draw(st.sampled_from([g for g in (1, 2, 3) if g != home(block)]))
    elif how == "block":  # another index: the survivors are then outside it, or out of range
        entry = (draw(st.sampled_from([b for b in (-1, 0, 1, 2, 3, BLOCKS, 2**63) if b != block]
                                      + [True, 1.0])), total, survivors)
    elif how == "dtype":
        entry = (block, total.astype(draw(st.sampled_from(
            [np.uint64, np.int32, np.int64, np.float64, ">u4"]))), survivors)
    elif how == "width":
        n = draw(st.sampled_from([0, 1, WIDTH - 1, WIDTH + 1, 2 * WIDTH]))
        entry = (block, np.resize(total, n), survivors)
    elif how == "ndim":
        entry = (block, total.reshape(draw(st.sampled_from([(1, WIDTH), (2, WIDTH // 2)]))),
                 survivors)
    elif how == "outside":
        stranger = draw(st.integers(-3, POPULATION + 3).filter(
            lambda d: d not in block_devices(block)))
        entry = (block, total, draw(st.permutations(survivors + [stranger])))
    elif how == "twice":
        entry = (block, total, survivors + [draw(st.sampled_from(survivors))])
    elif how == "not_sampled":
        entry = (block, total, survivors + [draw(st.sampled_from(
            [d for d in block_devices(block) if d % 3 == 0]))])
    elif how == "empty":
        entry = (block, total, [])
    elif how == "float_ids":
        entry = (block, total, [float(d) for d in survivors])
    elif how == "garbage":
        entry = draw(_GARBAGE)
    return gateway, entry, how == "honest"


@settings(max_examples=150, deadline=None)
@given(reports=st.lists(reported_entry(), max_size=12))
def test_mutated_entries_never_raise_and_each_is_admitted_or_refused_once(reports):
    # Prepare: the aggregator reads gateways in id order, each gateway's entries in order
    agg = make_aggregator()
    relayed: dict[int, list] = {}
    for gateway, entry, _ in reports:
        relayed.setdefault(gateway, []).append(entry)
    expected: dict[int, tuple] = {}  # the first honest entry of each block, in reading order
    for gateway, entry, valid in sorted(reports, key=lambda r: r[0]):  # stable: list order kept
        if valid and entry[0] not in expected:
            expected[entry[0]] = entry

    # Execute
    admitted, refusals = admit(agg, relayed)

    # Assert
    assert len(admitted) + sum(refusals.values()) == len(reports)
    assert set(refusals) <= KINDS and all(v > 0 for v in refusals.values())
    assert [b for b, _, _ in admitted] == sorted(expected)
    for b, total, survivors in admitted:
        assert total.dtype == WORD and np.array_equal(total, expected[b][1])
        assert survivors.tolist() == sorted(expected[b][2])


# --- found while writing these tests ---------------------------------------------------------------

def test_a_block_counts_only_from_a_gateway_that_hosts_its_survivors():
    # Prepare: gateway 1 hosts devices 0 and 9, the ends of block 0, and gateway 2 everything
    # between (a city may provision devices in any pattern)
    agg = make_aggregator({1: [0, 9, *range(10, 20)], 2: [*range(1, 9), *range(20, 40)]})
    _, total, _ = honest(0)

    # Execute: gateway 1 reports a sum of gateway 2's devices 1, 2 and 4
    admitted, refusals = admit(agg, {1: [(0, total, [1, 2, 4])]})

    # Assert
    assert admitted == [] and refusals == {"wrong_gateway": 1}


@pytest.mark.parametrize("garbage", [None, 5, "blocks", {1: honest(0)}, b"\x00" * 8])
def test_what_a_gateway_relays_that_is_no_list_counts_once_as_malformed_and_raises_nothing(
        garbage):
    # Prepare: under MPI a gateway's report arrives unpickled from its rank, whatever it holds
    agg = make_aggregator()

    # Execute: the block sums, the envelopes and the enrolment requests of one gateway
    admitted, refusals = admit(agg, {1: garbage, 2: [honest(2)]})
    opened = agg.open({1: garbage}, epoch=0, cohort=COHORT)
    enrolled = agg.enrol(garbage, gateway=1)

    # Assert: the honest gateway's block still counts
    assert [b for b, _, _ in admitted] == [2] and refusals == {"malformed": 1}
    assert opened.refusals == {"malformed": 1} and opened.device_ids.size == 0
    assert enrolled == {"malformed": 1}


@pytest.mark.parametrize("field, value", [
    ("envelopes", None), ("secure_blocks", {}), ("sampled", -1), ("sampled", 2.5),
    ("secure_refusals", ["x"]), ("train_seconds", ["1"]), ("secure_lost", True)])
def test_a_gateway_report_whose_fields_are_not_of_their_kind_is_refused_whole(field, value):
    from collections import Counter

    from privcity.fl import GatewayReport
    from privcity.sim import runner

    # Prepare
    report = GatewayReport(sampled=3, secure_blocks=[honest(0)])
    setattr(report, field, value)
    refusals: Counter[str] = Counter()

    # Execute
    checked = runner._checked_report(report, refusals)

    # Assert: an empty report in its place, counted; an honest one passes as it is
    assert checked == GatewayReport() and refusals == {"malformed_report": 1}
    honest_report = GatewayReport(sampled=3, secure_blocks=[honest(0)])
    assert runner._checked_report(honest_report, refusals) is honest_report
    assert runner._checked_report("not a report", refusals) == GatewayReport()
    assert refusals == {"malformed_report": 2}
