"""Privacy accounting with a budget, on Google's dp-accounting (RDP or PLD).

The mathematics is dp-accounting's; this module keeps the list of what was released and
refuses, before the release, anything that would take epsilon past the budget.

Example
-------
>>> from privcity.dp import Accountant
>>> acc = Accountant(epsilon_budget=3.0, delta=1e-5)
>>> round(acc.record_rounds(q=0.01, z=1.1, n=1000), 2)     # 1000 DP-FedAvg rounds
1.71
>>> acc.record_rounds(q=0.01, z=1.1, n=5000)               # would exceed 3.0: nothing recorded
Traceback (most recent call last):
privcity.errors.PrivacyBudgetExceeded: refused: epsilon would reach ...
>>> acc.rounds
1000
"""
from __future__ import annotations

import copy
import functools
import logging
import math
from types import ModuleType
from typing import Any

from ..errors import PrivacyBudgetExceeded
from . import _checks

__all__ = ["Accountant", "load_dp_accounting"]

_METHODS = ("rdp", "pld")


@functools.lru_cache(maxsize=1)
def load_dp_accounting() -> ModuleType:
    """The dp_accounting package, imported on first use (it pulls in scipy: about a second)."""
    try:
        import dp_accounting as module
        from dp_accounting import dp_event, pld, rdp  # noqa: F401  (submodules used as attributes)
    except ImportError as exc:
        raise ImportError("privcity.dp's accounting needs Google's dp-accounting: "
                          "pip install 'dp-accounting>=0.4'") from exc
    logging.getLogger("absl").addFilter(_drop_unconverged_order)
    return module


def _drop_unconverged_order(record: logging.LogRecord) -> bool:
    """Drops dp-accounting's warning that an RDP order's series did not converge. The order is
    left out of the minimum over orders, so the epsilon reported is still an upper bound; the
    warning says nothing the caller can act on, and a run of a few rounds printed dozens.
    Every other absl record passes."""
    return not str(record.msg).startswith("_compute_log_a_frac failed to converge")


def _grouped(events: list[Any]) -> list[tuple[Any, int]]:
    """Equal events grouped as (event, count), in order of first appearance. Composition is
    commutative, and dp-accounting composes a count in one step: the cost of an epsilon grows
    with the number of distinct events, not with the number of rounds."""
    self_composed = load_dp_accounting().dp_event.SelfComposedDpEvent
    groups: list[list[Any]] = []
    for ev in events:
        n = 1
        while isinstance(ev, self_composed):  # record_rounds(q, z, n) is n record_round(q, z)
            ev, n = ev.event, n * ev.count
        for group in groups:
            if group[0] == ev:
                group[1] += n
                break
        else:
            groups.append([ev, n])
    return [(ev, n) for ev, n in groups]


def _rounds_in(event: Any) -> int:
    """Number of Poisson-sampled rounds an event stands for (0 for a plain release)."""
    dpe = load_dp_accounting().dp_event
    if isinstance(event, dpe.PoissonSampledDpEvent):
        return 1
    if isinstance(event, dpe.SelfComposedDpEvent):
        return event.count * _rounds_in(event.event)
    if isinstance(event, dpe.ComposedDpEvent):
        return sum(_rounds_in(e) for e in event.events)
    return 0


class Accountant:
    """Tracks the epsilon spent at a fixed delta and refuses releases that would exceed a budget.

    Parameters
    ----------
    epsilon_budget : float
        Total epsilon allowed, > 0 and finite.
    delta : float
        The delta at which epsilon is reported, in (0, 1).
    method : {"rdp", "pld"}
        dp-accounting's RdpAccountant (Renyi DP, default orders: fast, slightly loose) or
        PLDAccountant (privacy loss distributions, default discretization 1e-4: tighter,
        slower). Both with the add-or-remove-one neighbouring relation.

    Notes
    -----
    Every epsilon is computed by a fresh dp-accounting accountant over all recorded events, equal
    events composed together with their count (composition is commutative), so the figure is
    what dp-accounting reports for that composition: n rounds recorded one by one and
    ``record_rounds(q, z, n)`` give the same epsilon. The cost of a ``spend`` grows with the
    number of distinct events: about 25 ms each with RDP, 0.3 s each with PLD (building the
    privacy loss distribution of a sampled Gaussian); the epsilons of :meth:`history` are cached.
    """

    __slots__ = ("_budget", "_delta", "_method", "_events", "_history", "_rounds", "_memo")

    def __init__(self, epsilon_budget: float, delta: float, *, method: str = "rdp") -> None:
        self._budget = _checks.positive(epsilon_budget, "epsilon_budget")
        self._delta = _checks.open_unit(delta, "delta")
        if method not in _METHODS:
            raise ValueError(f"method must be 'rdp' or 'pld', got {method!r}")
        self._method = method
        load_dp_accounting()  # fail here, not at the first round, if it is missing
        self._events: list[Any] = []
        self._history: list[float] = []
        self._rounds = 0
        # The last epsilon_with: (number of events recorded then, event, epsilon). A spend
        # right after a check of the same event (the usual "check, run, record" of a round)
        # reuses it instead of composing everything again.
        self._memo: tuple[int, Any, float] | None = None

    # --- state --------------------------------------------------------------------------------
    @property
    def epsilon_budget(self) -> float:
        return self._budget

    @property
    def delta(self) -> float:
        return self._delta

    @property
    def method(self) -> str:
        return self._method

    @property
    def events(self) -> tuple[Any, ...]:
        """The recorded dp_accounting events, oldest first."""
        return tuple(self._events)

    @property
    def rounds(self) -> int:
        """Number of Poisson-sampled (DP-FedAvg) rounds recorded."""
        return self._rounds

    def epsilon(self) -> float:
        """Epsilon spent so far at :attr:`delta` (0.0 before anything is recorded)."""
        return self._history[-1] if self._history else 0.0

    def remaining(self) -> float:
        """epsilon_budget - epsilon(), never below 0."""
        return max(0.0, self._budget - self.epsilon())

    def history(self) -> list[float]:
        """Epsilon after each recorded event (cached when the event was recorded)."""
        return list(self._history)

    def __repr__(self) -> str:
        return (f"Accountant(method={self._method!r}, epsilon={self.epsilon():.6g} of "
                f"{self._budget!r} at delta={self._delta!r}, events={len(self._events)}, "
                f"rounds={self._rounds})")

    # --- accounting ---------------------------------------------------------------------------
    def _new_accountant(self) -> Any:
        dpa = load_dp_accounting()
        if self._method == "rdp":
            return dpa.rdp.RdpAccountant()
        return dpa.pld.PLDAccountant()

    def epsilon_with(self, event: Any) -> float:
        """Epsilon that recording ``event`` would bring the total to (records nothing).

        Raises
        ------
        TypeError
            event is not a dp_accounting DpEvent.
        ValueError
            The accountant's method cannot account for this event.
        """
        dpe = load_dp_accounting().dp_event
        if not isinstance(event, dpe.DpEvent):
            raise TypeError(f"event must be a dp_accounting DpEvent, not {type(event).__name__}")
        memo = self._memo
        if memo is not None and memo[0] == len(self._events) and memo[1] == event:
            return memo[2]  # memo[1] is a deep copy: a mutated event no longer equals it
        acc = self._new_accountant()
        if not acc.supports(event):
            raise ValueError(f"the {self._method!r} accountant cannot account for {event!r}")
        for ev, count in _grouped(self._events + [event]):
            acc.compose(ev, count)
        eps = float(acc.get_epsilon(self._delta))
        eps = eps if not math.isnan(eps) else math.inf
        self._memo = (len(self._events), copy.deepcopy(event), eps)
        return eps

    def spend(self, event: Any) -> float:
        """Records ``event`` if the total epsilon stays within the budget; returns the new total.

        Call it before the release it accounts for: on refusal nothing is recorded.

        Raises
        ------
        privcity.PrivacyBudgetExceeded
            The event would take epsilon past ``epsilon_budget``.
        """
        after = self.epsilon_with(event)
        if after > self._budget:
            spent = self.epsilon()
            raise PrivacyBudgetExceeded(
                f"refused: epsilon would reach {after:.6g} > budget {self._budget:.6g} "
                f"(spent {spent:.6g}, delta={self._delta:g}) with {event!r}",
                epsilon_spent=spent, epsilon_after=after, epsilon_budget=self._budget, event=event)
        self._events.append(event)
        self._history.append(after)
        self._rounds += _rounds_in(event)
        return after

    def record_round(self, q: float, z: float) -> float:
        """One DP-FedAvg round: Poisson sampling at rate q, Gaussian noise multiplier z
        (noise std / clip). ``PoissonSampledDpEvent(q, GaussianDpEvent(z))``."""
        return self.spend(self._round_event(q, z))

    def record_rounds(self, q: float, z: float, n: int) -> float:
        """n equal DP-FedAvg rounds at once, as ``SelfComposedDpEvent(round, n)``; all or none
        are recorded."""
        n = _checks.count(n, "n", minimum=1)
        dpe = load_dp_accounting().dp_event
        return self.spend(dpe.SelfComposedDpEvent(self._round_event(q, z), n))

    def record_gaussian(self, sigma: float, sensitivity: float = 1.0) -> float:
        """One Gaussian release: ``GaussianDpEvent(sigma / sensitivity)`` (L2 sensitivity)."""
        sigma = _checks.positive(sigma, "sigma")
        sensitivity = _checks.positive(sensitivity, "sensitivity")
        return self.spend(load_dp_accounting().dp_event.GaussianDpEvent(sigma / sensitivity))

    def record_laplace(self, scale: float, sensitivity: float = 1.0) -> float:
        """One Laplace release: ``LaplaceDpEvent(scale / sensitivity)`` (L1 sensitivity)."""
        scale = _checks.positive(scale, "scale")
        sensitivity = _checks.positive(sensitivity, "sensitivity")
        return self.spend(load_dp_accounting().dp_event.LaplaceDpEvent(scale / sensitivity))

    @staticmethod
    def round_event(q: float, z: float) -> Any:
        """The dp_accounting event of one DP-FedAvg round (see :meth:`record_round`)."""
        return Accountant._round_event(q, z)

    @staticmethod
    def _round_event(q: float, z: float) -> Any:
        q = _checks.real(q, "q")
        if not 0 < q <= 1:
            raise ValueError(f"q must be in (0, 1], got {q!r}")
        z = _checks.positive(z, "z")
        dpe = load_dp_accounting().dp_event
        return dpe.PoissonSampledDpEvent(q, dpe.GaussianDpEvent(z))
