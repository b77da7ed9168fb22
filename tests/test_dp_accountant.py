"""privcity.dp.Accountant against dp-accounting called directly; budget refusals record nothing."""
from __future__ import annotations

import math
import pickle

import pytest
from dp_accounting import dp_event, pld, rdp

import privcity
from privcity.dp import Accountant, GaussianMechanism, LaplaceMechanism
from privcity.noise import SecureRNG

DELTA = 1e-5


def direct(method: str, event: dp_event.DpEvent, delta: float = DELTA) -> float:
    acc = rdp.RdpAccountant() if method == "rdp" else pld.PLDAccountant()
    acc.compose(event)
    return acc.get_epsilon(delta)


def fedavg_rounds(q: float, z: float, n: int) -> dp_event.DpEvent:
    return dp_event.SelfComposedDpEvent(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(z)), n)


def test_rdp_reference_value():
    # Prepare
    acc = Accountant(epsilon_budget=10.0, delta=1e-5, method="rdp")

    # Execute
    eps = acc.record_rounds(q=0.01, z=1.1, n=1000)

    # Assert
    assert eps == pytest.approx(1.71, abs=0.01)
    assert acc.epsilon() == eps == direct("rdp", fedavg_rounds(0.01, 1.1, 1000))
    assert acc.rounds == 1000 and len(acc.events) == 1


def test_pld_matches_dp_accounting():
    # Prepare
    acc = Accountant(epsilon_budget=10.0, delta=1e-5, method="pld")

    # Execute
    eps = acc.record_rounds(q=0.01, z=1.1, n=1000)

    # Assert: the same number dp-accounting gives, tighter than RDP
    assert eps == pytest.approx(direct("pld", fedavg_rounds(0.01, 1.1, 1000)), rel=1e-12)
    assert 1.0 < eps < direct("rdp", fedavg_rounds(0.01, 1.1, 1000))


@pytest.mark.parametrize("method", ["rdp", "pld"])
def test_rounds_one_by_one_equal_rounds_at_once(method):
    # Prepare
    one_by_one = Accountant(epsilon_budget=10.0, delta=DELTA, method=method)
    at_once = Accountant(epsilon_budget=10.0, delta=DELTA, method=method)

    # Execute
    for _ in range(3):
        one_by_one.record_round(q=0.02, z=0.9)
    at_once.record_rounds(q=0.02, z=0.9, n=2)
    at_once.record_rounds(q=0.02, z=0.9, n=1)

    # Assert
    assert one_by_one.epsilon() == pytest.approx(at_once.epsilon(), rel=1e-12)
    assert one_by_one.epsilon() == pytest.approx(direct(method, fedavg_rounds(0.02, 0.9, 3)), rel=1e-12)
    assert one_by_one.rounds == at_once.rounds == 3
    assert len(one_by_one.history()) == 3 and len(at_once.history()) == 2
    assert one_by_one.history()[-1] == one_by_one.epsilon()


@pytest.mark.parametrize("method", ["rdp", "pld"])
def test_gaussian_and_laplace_releases_compose(method):
    # Prepare
    acc = Accountant(epsilon_budget=50.0, delta=DELTA, method=method)
    expected = dp_event.ComposedDpEvent([
        fedavg_rounds(0.01, 1.1, 100),
        dp_event.GaussianDpEvent(2.5),
        dp_event.LaplaceDpEvent(10.0),
    ])

    # Execute
    acc.record_rounds(q=0.01, z=1.1, n=100)
    acc.record_gaussian(sigma=5.0, sensitivity=2.0)
    acc.record_laplace(scale=10.0)

    # Assert
    assert acc.epsilon() == pytest.approx(direct(method, expected), rel=1e-9)
    history = acc.history()
    assert len(history) == 3 and history[0] < history[1] < history[2] == acc.epsilon()
    assert acc.events[1] == dp_event.GaussianDpEvent(2.5)
    assert acc.rounds == 100


def test_laplace_alone_is_pure_dp():
    # Prepare
    acc = Accountant(epsilon_budget=5.0, delta=DELTA, method="pld")

    # Execute
    eps = acc.record_laplace(scale=4.0, sensitivity=2.0)

    # Assert: epsilon = D / b = 0.5 at delta = 0, a little less at delta > 0
    assert eps == pytest.approx(direct("pld", dp_event.LaplaceDpEvent(2.0)), rel=1e-12)
    assert 0.45 < eps <= 0.5 + 1e-4


def test_mechanism_events_spend_like_records():
    # Prepare
    by_mech = Accountant(epsilon_budget=10.0, delta=DELTA)
    by_record = Accountant(epsilon_budget=10.0, delta=DELTA)
    gauss = GaussianMechanism(epsilon=1.0, delta=1e-6, sensitivity=3.0, rng=SecureRNG(1))
    lap = LaplaceMechanism(epsilon=0.3, sensitivity=2.0, rng=SecureRNG(1))

    # Execute
    by_mech.spend(gauss.dp_event())
    by_mech.spend(lap.dp_event())
    by_record.record_gaussian(gauss.sigma, sensitivity=3.0)
    by_record.record_laplace(lap.scale, sensitivity=2.0)

    # Assert
    assert by_mech.epsilon() == by_record.epsilon() > 0
    assert by_mech.events == by_record.events


@pytest.mark.parametrize("method", ["rdp", "pld"])
def test_refusal_at_the_budget_records_nothing(method):
    # Prepare: a budget just above 1000 rounds
    after_1000 = direct(method, fedavg_rounds(0.01, 1.1, 1000))
    acc = Accountant(epsilon_budget=after_1000 * 1.0001, delta=DELTA, method=method)
    acc.record_rounds(q=0.01, z=1.1, n=1000)
    before = (acc.epsilon(), acc.events, acc.history(), acc.rounds, acc.remaining())

    # Execute
    with pytest.raises(privcity.PrivacyBudgetExceeded) as info:
        acc.record_rounds(q=0.01, z=1.1, n=10)

    # Assert
    assert (acc.epsilon(), acc.events, acc.history(), acc.rounds, acc.remaining()) == before
    err = info.value
    assert isinstance(err, privcity.PrivcityError)
    assert err.epsilon_spent == before[0] and err.epsilon_budget == acc.epsilon_budget
    assert err.epsilon_after > err.epsilon_budget
    assert err.event == fedavg_rounds(0.01, 1.1, 10)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.epsilon_after, copy.event, str(copy)) == (err.epsilon_after, err.event, str(err))


def test_refusal_of_a_single_round_then_a_smaller_release_fits():
    # Prepare: 1000 rounds take about 1.71; a budget of 1.72 leaves about 0.01
    acc = Accountant(epsilon_budget=1.72, delta=DELTA)
    acc.record_rounds(q=0.01, z=1.1, n=1000)

    # Execute
    with pytest.raises(privcity.PrivacyBudgetExceeded):
        acc.record_gaussian(sigma=1.0)
    eps = acc.record_gaussian(sigma=200.0)

    # Assert
    assert acc.epsilon() == eps <= 1.72
    assert len(acc.events) == 2


def test_spending_exactly_the_budget_is_allowed():
    # Prepare
    exact = direct("rdp", fedavg_rounds(0.01, 1.1, 1000))
    acc = Accountant(epsilon_budget=exact, delta=DELTA)

    # Execute
    eps = acc.record_rounds(q=0.01, z=1.1, n=1000)

    # Assert
    assert eps == exact and acc.remaining() == 0.0


def test_fresh_accountant():
    # Execute
    acc = Accountant(epsilon_budget=2.0, delta=DELTA)

    # Assert
    assert acc.epsilon() == 0.0 and acc.remaining() == 2.0
    assert acc.events == () and acc.history() == [] and acc.rounds == 0


def test_epsilon_with_records_nothing():
    # Prepare
    acc = Accountant(epsilon_budget=2.0, delta=DELTA)

    # Execute
    preview = acc.epsilon_with(dp_event.GaussianDpEvent(3.0))

    # Assert
    assert preview == pytest.approx(direct("rdp", dp_event.GaussianDpEvent(3.0)))
    assert acc.events == () and acc.epsilon() == 0.0


@pytest.mark.parametrize("budget", [0.0, -1.0, math.nan, math.inf])
def test_bad_budget(budget):
    with pytest.raises(ValueError, match="epsilon_budget"):
        Accountant(epsilon_budget=budget, delta=DELTA)


@pytest.mark.parametrize("delta", [0.0, 1.0, -0.5, 2.0, math.nan])
def test_bad_delta(delta):
    with pytest.raises(ValueError, match="delta"):
        Accountant(epsilon_budget=1.0, delta=delta)


def test_bad_method_and_events():
    # Prepare
    acc = Accountant(epsilon_budget=1.0, delta=DELTA)

    # Execute / Assert
    with pytest.raises(ValueError, match="method"):
        Accountant(epsilon_budget=1.0, delta=DELTA, method="moments")
    with pytest.raises(TypeError, match="DpEvent"):
        acc.spend("a round")
    with pytest.raises(ValueError, match="cannot account"):
        acc.spend(dp_event.UnsupportedDpEvent())
    with pytest.raises(privcity.PrivacyBudgetExceeded) as info:
        acc.spend(dp_event.NonPrivateDpEvent())
    assert info.value.epsilon_after == math.inf
    with pytest.raises(ValueError, match="q"):
        acc.record_round(q=0.0, z=1.0)
    with pytest.raises(ValueError, match="q"):
        acc.record_round(q=1.5, z=1.0)
    with pytest.raises(ValueError, match="z"):
        acc.record_round(q=0.1, z=0.0)
    with pytest.raises(ValueError, match="n"):
        acc.record_rounds(q=0.1, z=1.0, n=0)
    with pytest.raises(ValueError, match="sigma"):
        acc.record_gaussian(sigma=-1.0)
    with pytest.raises(ValueError, match="scale"):
        acc.record_laplace(scale=math.inf)
    assert acc.events == ()


def test_dp_accounting_and_scipy_are_imported_lazily(run_python):
    # Prepare
    code = ("import sys, privcity, privcity.dp\n"
            "m = privcity.dp.GaussianMechanism(sigma=1.0)\n"
            "m.release([1.0]); m.perturb([1.0]); privcity.dp.clip_l2([3.0, 4.0], 1.0)\n"
            "print('dp_accounting' in sys.modules, 'scipy' in sys.modules)")

    # Execute
    proc = run_python(code)

    # Assert
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_missing_dp_accounting_gives_a_clear_import_error(run_python):
    # Prepare: a None entry in sys.modules makes the import fail
    code = ("import sys; sys.modules['dp_accounting'] = None\n"
            "import privcity.dp\n"
            "privcity.dp.Accountant(epsilon_budget=1.0, delta=1e-5)")

    # Execute
    proc = run_python(code)

    # Assert
    assert proc.returncode != 0
    assert "ImportError: privcity.dp's accounting needs Google's dp-accounting" in proc.stderr
    assert "pip install 'dp-accounting>=0.4'" in proc.stderr


def test_cached_round_rdp_equals_dp_accounting_for_mixed_rounds_one_by_one():
    # Prepare: rounds of different (q, z) interleaved: the per-(q, z) cache must not mix them
    plan = [(0.1, 1.17), (0.01, 0.8), (0.1, 1.17), (1.0, 5.0), (0.01, 0.8), (0.1, 1.2)] * 5
    acc = Accountant(epsilon_budget=1e9, delta=DELTA)

    # Execute
    for q, z in plan:
        acc.record_round(q, z)

    # Assert: what dp-accounting computes composing the same events itself (to the last bits:
    # the accountant groups equal rounds, count x RDP, where this adds them one at a time)
    ref = rdp.RdpAccountant()
    for q, z in plan:
        ref.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(z)))
    assert acc.epsilon() == pytest.approx(ref.get_epsilon(DELTA), rel=1e-12)
