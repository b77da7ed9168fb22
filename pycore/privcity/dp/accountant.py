"""Privacy accounting with a budget, on Google's dp-accounting (RDP or PLD).

The mathematics is dp-accounting's; this module keeps the list of what was released and
refuses, before the release, anything that would take epsilon past the budget. The one bound
dp-accounting lacks, the Renyi DP of a round of the distributed discrete Gaussian (Kairouz, Liu,
Steinke 2021), is here (:func:`ddg_round_rdp`), as an event (:class:`DdgRoundEvent`) that the
RDP accountant composes with dp-accounting's own; dp-accounting converts RDP to epsilon.

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
import importlib.util
import logging
import math
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import PrivacyBudgetExceeded
from . import _checks

__all__ = ["Accountant", "ddg_round_rdp", "ddg_tau", "load_dp_accounting"]

_METHODS = ("rdp", "pld")


def _installed() -> bool:
    """Whether dp_accounting can be imported, without importing it."""
    try:
        return importlib.util.find_spec("dp_accounting") is not None
    except (ImportError, ValueError):  # ValueError: a None entry in sys.modules
        return False


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


# --- the distributed discrete Gaussian (Kairouz, Liu, Steinke 2021) -------------------------------

def ddg_tau(sigma: float, n: int) -> float:
    """tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k + 1)): how far the sum of n discrete
    Gaussian shares of parameter sigma (integer units) is from one discrete Gaussian (Theorem 1
    of the paper). 0 for n = 1; below 1e-30 for sigma >= 2, exactly 0 from sigma = 10."""
    if n <= 1 or sigma >= 10.0:  # past 10 each term is below exp(-987): 0 in float64
        return 0.0
    k = np.arange(1, n, dtype=np.float64)
    return 10.0 * float(np.exp(-2.0 * math.pi ** 2 * sigma ** 2 * k / (k + 1.0)).sum())


def _ddg_plain_rdp(alphas: np.ndarray, l2_scale: float, l1_scale: float, tau: float,
                   dim: int) -> np.ndarray:
    """RDP of one unsampled round at orders alphas (Proposition 14 of the paper): the minimum of
    alpha/2 l2^2 + tau d, alpha/2 (l2^2 + 2 l1 tau + tau^2 d) and alpha/2 (l2 + sqrt(d) tau)^2."""
    t1 = alphas / 2.0 * l2_scale ** 2 + tau * dim
    t2 = alphas / 2.0 * (l2_scale ** 2 + 2.0 * l1_scale * tau + tau ** 2 * dim)
    t3 = alphas / 2.0 * (l2_scale + math.sqrt(dim) * tau) ** 2
    return np.minimum(np.minimum(t1, t2), t3)


def _ddg_presence_rdp(alphas: np.ndarray, l2_bound: float, sigma: float, n: int, tau: float,
                      dim: int) -> np.ndarray:
    """RDP of one round for add-or-remove of a device whose own noise share comes and goes with
    it: a sum of n shares (the device's among them) against the n - 1 others' sum, shifted by at
    most l2_bound. Per coordinate the two are Gaussians of variances n sigma^2 and
    (n - 1) sigma^2 (the discrete shares' distance to them is KLS's tau, counted below as a
    max-divergence); Renyi divergence of Gaussians with unequal variances, the larger of the
    two directions:

        D_a(N(m1, s1^2) || N(m2, s2^2)) = a (m1 - m2)^2 / (2 s_a^2) + ln(s2 / s1)
                                          + ln(s2^2 / s_a^2) / (2 (a - 1)),
        s_a^2 = a s2^2 + (1 - a) s1^2   (infinite when s_a^2 <= 0),

    the log terms once per coordinate (dim of them), the shift term once for the whole vector.
    The variance terms do not shrink with sigma: about dim a / (4 n^2) per round, which matters
    for large models and few shares (Proposition 14 alone, with the device's share in both
    sums, leaves them out)."""
    if n < 2:
        return np.full(np.shape(alphas), np.inf)
    a = np.asarray(alphas, dtype=np.float64)
    shift = (l2_bound / sigma) ** 2  # the variances below are in units of sigma^2
    out = np.empty_like(a)
    for i, ai in enumerate(a):
        if ai <= 1.0:  # (orders 0 and 1 only index the subsampling formula's table)
            out[i] = 0.0
            continue
        worst = -np.inf
        # (s1^2, s2^2): with the device against without it, and the reverse
        for v1, v2 in ((float(n), n - 1.0), (n - 1.0, float(n))):
            va = ai * v2 + (1.0 - ai) * v1
            if va <= 0:
                worst = np.inf
                break
            logs = 0.5 * math.log(v2 / v1) + math.log(v2 / va) / (2.0 * (ai - 1.0))
            worst = max(worst, ai * shift / (2.0 * va) + dim * logs)
        # tau: how far each coordinate of a sum of discrete shares is from a discrete Gaussian
        # (KLS Theorem 1), taken through both densities as a max-divergence: (2a - 1)/(a - 1)
        # tau per coordinate (0 in practice: tau underflows to 0 from sigma = 10)
        out[i] = worst + tau * dim * (2.0 * ai - 1.0) / (ai - 1.0)
    return out


def _poisson_subsampled_rdp(alphas: np.ndarray, q: float, eps: np.ndarray) -> np.ndarray:
    """Zhu and Wang 2019, Theorem 5: RDP at the integer orders alphas (each >= 2) of a mechanism
    with RDP eps[l] at each integer order l (eps indexed by l, up to max(alphas)) run on a
    Poisson sample at rate q < 1, for add-or-remove neighbours:

        1/(a-1) log( (1-q)^(a-1) (1 + (a-1) q) + C(a,2) q^2 (1-q)^(a-2) e^eps(2)
                     + 3 sum_{l=3..a} C(a,l) q^l (1-q)^(a-l) e^((l-1) eps(l)) ),

    in logs (no term overflows), every order at once."""
    from scipy.special import gammaln, logsumexp

    a = np.asarray(alphas, dtype=np.float64)[:, None]
    l = np.arange(3, eps.size, dtype=np.float64)[None, :]
    log_q, log_1q = math.log(q), math.log1p(-q)
    with np.errstate(invalid="ignore"):  # l > a: masked below
        terms = (math.log(3.0) + gammaln(a + 1.0) - gammaln(l + 1.0) - gammaln(a - l + 1.0)
                 + l * log_q + (a - l) * log_1q + (l - 1.0) * eps[None, 3:])
    terms = np.where(l <= a, terms, -np.inf)
    head = np.concatenate((
        (a - 1.0) * log_1q + np.log1p((a - 1.0) * q),  # l = 0 and 1 together
        np.log(a * (a - 1.0) / 2.0) + 2.0 * log_q + (a - 2.0) * log_1q + eps[2]), axis=1)
    return logsumexp(np.concatenate((head, terms), axis=1), axis=1) / (a[:, 0] - 1.0)


def ddg_round_rdp(orders: Any, *, l2_bound: float, l1_bound: float, sigma: float, n: int,
                  dim: int, q: float = 1.0, presence: bool = False) -> np.ndarray:
    """Renyi DP, at each of ``orders``, of one round of the distributed discrete Gaussian.

    The released sum holds ``n`` noise shares, each an exact discrete Gaussian of parameter
    ``sigma`` over Z^dim (integer units); one device changes it by a vector of L2 norm at most
    ``l2_bound`` and L1 norm at most ``l1_bound`` (Proposition 14 / Theorem 1 of Kairouz, Liu,
    Steinke 2021, with l2_scale = l2_bound / (sqrt(n) sigma), l1_scale likewise and
    tau = :func:`ddg_tau`). With ``q < 1`` the devices took part by Poisson sampling at rate q:
    the general Poisson-subsampled bound (Zhu and Wang 2019, Theorem 5) at integer orders, and
    between two integers a < alpha < a + 1 the chord of (alpha - 1) RDP(alpha), which is convex
    in alpha (a log moment-generating function; it is 0 at alpha = 1); at each order the
    smaller of that and the unsampled value.

    ``presence=False``: the neighbouring sums hold the same n shares (the device replaced by
    one sending zeros, its share kept: Proposition 14), which is the case for observers who see
    the device take part. ``presence=True``: add-or-remove, the device's share leaving with it
    (:func:`_ddg_presence_rdp`), which Poisson amplification (Zhu and Wang's add-or-remove
    theorem) needs.
    """
    alphas = np.asarray(orders, dtype=np.float64)
    if not np.all(alphas > 1.0):
        raise ValueError("RDP orders must all be > 1")
    root = math.sqrt(n) * sigma
    l2_scale, l1_scale, tau = l2_bound / root, l1_bound / root, ddg_tau(sigma, n)

    def base(orders_: np.ndarray) -> np.ndarray:
        if presence:
            return _ddg_presence_rdp(orders_, l2_bound, sigma, n, tau, dim)
        return _ddg_plain_rdp(orders_, l2_scale, l1_scale, tau, dim)

    plain = base(alphas)
    if q >= 1.0:
        return plain
    top = max(2, int(math.ceil(alphas.max())))
    eps = base(np.arange(top + 1, dtype=np.float64))
    needed = np.array(sorted({b for a in alphas for b in (math.floor(a), math.ceil(a)) if b >= 2}))
    sub = np.minimum(_poisson_subsampled_rdp(needed, q, eps), eps[needed])
    cgf = {1: 0.0, **{int(b): (b - 1) * r for b, r in zip(needed, sub)}}  # (alpha - 1) RDP
    out = np.empty_like(alphas)
    for i, a in enumerate(alphas):
        lo, hi = math.floor(a), math.ceil(a)
        theta = a - lo
        chord = cgf[hi] if lo == hi else (1 - theta) * cgf[lo] + theta * cgf[hi]
        out[i] = min(plain[i], chord / (a - 1))
    return out


@functools.lru_cache(maxsize=1)
def _ddg_types() -> tuple[type, type]:
    """DdgRoundEvent and the RDP accountant that composes it, made on first use (dp-accounting
    is imported lazily). Both are reachable as attributes of this module (pickle finds them)."""
    import attr

    dpa = load_dp_accounting()

    @attr.s(frozen=True, slots=True, auto_attribs=True)
    class DdgRoundEvent(dpa.dp_event.DpEvent):
        """One round of the distributed discrete Gaussian (see :func:`ddg_round_rdp`): devices
        Poisson-sampled at rate ``sampling_probability`` (1.0: no amplification counted), a sum
        of ``n`` noise shares of parameter ``sigma`` over Z^``dim``, one device's contribution
        of L2 norm at most ``l2_bound`` and L1 norm at most ``l1_bound`` (integer units)."""

        sampling_probability: float
        l2_bound: float
        l1_bound: float
        sigma: float
        n: int
        dim: int
        presence: bool = False

    class DdgRdpAccountant(dpa.rdp.RdpAccountant):
        """dp-accounting's RdpAccountant, which also composes DdgRoundEvent (the orders and the
        conversion to epsilon stay dp-accounting's)."""

        def _maybe_compose(self, event: Any, count: int, do_compose: bool) -> Any:
            if isinstance(event, DdgRoundEvent):
                if do_compose:
                    self._rdp += count * _ddg_event_rdp(event, tuple(self._orders))
                return None
            rdp = _sampled_gaussian_rdp_of(event, self)
            if rdp is not None:  # a DP-FedAvg round, as dp-accounting computes it, cached
                if do_compose:
                    self._rdp += count * rdp
                return None
            return super()._maybe_compose(event, count, do_compose)

    for cls in (DdgRoundEvent, DdgRdpAccountant):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    return DdgRoundEvent, DdgRdpAccountant


@functools.lru_cache(maxsize=256)
def _ddg_event_rdp(event: Any, orders: tuple[float, ...]) -> np.ndarray:
    rdp = ddg_round_rdp(orders, l2_bound=event.l2_bound, l1_bound=event.l1_bound,
                        sigma=event.sigma, n=event.n, dim=event.dim, q=event.sampling_probability,
                        presence=event.presence)
    rdp.flags.writeable = False  # shared by every accountant that composes this event
    return rdp


def _sampled_gaussian_rdp_of(event: Any, acc: Any) -> np.ndarray | None:
    """The RDP of ``PoissonSampledDpEvent(q, GaussianDpEvent(z))`` under add-or-remove (the
    DP-FedAvg round), or None for any other event or relation (dp-accounting composes those).
    dp-accounting recomputes it on every composition (about 0.1 to 0.3 s here), and an
    accountant recomposes its whole history for each epsilon: cached, a run's rounds and an
    audit's cost that once."""
    dpa = load_dp_accounting()
    dpe = dpa.dp_event
    if type(event) is not dpe.PoissonSampledDpEvent or type(event.event) is not dpe.GaussianDpEvent:
        return None
    rel = dpa.privacy_accountant.NeighboringRelation.ADD_OR_REMOVE_ONE
    if getattr(acc, "_neighboring_relation", None) != rel:
        return None
    return _sampled_gaussian_rdp(float(event.sampling_probability),
                                 float(event.event.noise_multiplier), tuple(acc._orders))


@functools.lru_cache(maxsize=256)
def _sampled_gaussian_rdp(q: float, z: float, orders: tuple[float, ...]) -> np.ndarray:
    from dp_accounting.rdp import rdp_privacy_accountant as rdp_module
    rdp = np.asarray(rdp_module._compute_rdp_poisson_subsampled_gaussian(
        q=q, noise_multiplier=z, orders=np.asarray(orders)), dtype=np.float64)
    rdp.flags.writeable = False  # shared by every accountant that composes this event
    return rdp


def __getattr__(name: str) -> Any:  # PEP 562: the lazily made classes, for pickle and imports
    if name == "DdgRoundEvent":
        return _ddg_types()[0]
    if name == "DdgRdpAccountant":
        return _ddg_types()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    if isinstance(event, (dpe.PoissonSampledDpEvent, _ddg_types()[0])):
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
        # Fail here, not at the first round, if it is missing; import it at the first epsilon
        # (scipy makes that 1 to 3 s, which a run that computes none need not pay).
        if not _installed():
            load_dp_accounting()  # raises the ImportError that says what to install
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
            return _ddg_types()[1]()  # dp-accounting's RdpAccountant, plus DDG rounds
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

    def record_ddg_round(self, params: Any, n: int, *, sampled: bool = True) -> float:
        """One round of the distributed discrete Gaussian (:mod:`privcity.dp.distributed`):
        ``n`` noise shares in the sum (the survivors), parameters ``params`` (a DDGParams).

        ``sampled=True`` counts the amplification of Poisson sampling at params.sample_rate:
        the epsilon against whoever sees only the released model. ``sampled=False`` counts none:
        the epsilon against the servers, who learn which devices took part. Needs method="rdp".
        """
        self._needs_rdp()
        return self.spend(self.ddg_round_event(params, n, sampled=sampled))

    def record_ddg_rounds(self, params: Any, n: int, count: int, *, sampled: bool = True) -> float:
        """``count`` equal DDG rounds at once (see :meth:`record_ddg_round`); all or none."""
        count = _checks.count(count, "count", minimum=1)
        self._needs_rdp()
        dpe = load_dp_accounting().dp_event
        return self.spend(dpe.SelfComposedDpEvent(self.ddg_round_event(params, n, sampled=sampled),
                                                  count))

    def _needs_rdp(self) -> None:
        if self._method != "rdp":
            raise ValueError("DDG rounds are accounted in Renyi DP: use Accountant(method='rdp'), "
                             f"not {self._method!r}")

    @staticmethod
    def ddg_round_event(params: Any, n: int, *, sampled: bool = True) -> Any:
        """The :class:`DdgRoundEvent` of one DDG round with ``n`` noise shares (see
        :meth:`record_ddg_round`); composable only by the RDP method."""
        from .distributed import DDGParams

        if not isinstance(params, DDGParams):
            raise TypeError(f"params must be a privcity.dp.DDGParams, not {type(params).__name__}")
        n = _checks.count(n, "n", minimum=1)
        return _ddg_types()[0](
            sampling_probability=params.sample_rate if sampled else 1.0,
            l2_bound=params.l2_bound, l1_bound=params.l1_bound, sigma=params.sigma_local, n=n,
            dim=params.padded_dim, presence=sampled)

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
