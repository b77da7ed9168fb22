"""The attack suite of ``privcity simulate``: what each party learns from what it sees, measured.

Run on rank 0 after the three trainings (``--attacks fast``, the default, or ``full``; ``none``
skips it). Each attack is one of :mod:`privcity.attacks`, aimed at the surface a party sees:

- the updates (what the servers see): the updates of the devices that reported in the FL run's
  first round with any report, recomputed on rank 0 with the gateway's own training call and
  seeds (:func:`privcity.fl.rounds.training_seeds`), so bit for bit those the aggregator
  opened. Inverted as each plaintext update (analytically, and by gradient matching for
  devices of at most 16 records), as one secure-aggregation block's sum (a SecAgg server), and
  as that block's sum of clipped updates with DP noise: the block's own devices' noise shares
  under distributed DP (what the servers see), central DP's noise otherwise (what a round's
  release adds; the aggregator itself sees each clipped update).
- the released models: membership inference (loss threshold, difficulty-calibrated, offline
  LiRA with shadow models trained on held-out data of the same population), per record and per
  device, against the centralized, FL and FL + DP models. Members are records of devices that
  took part in a model's training; non-members are records of held-out devices of the same city
  (ids past the population, generated with the same partition and on-device treatment); the
  shadow models train on further held-out devices. A CSV's held-out rows stand in for both (its
  test split is by row, so no device-level attack there).
- the epsilon (:func:`run_audit`): the one-run audit with canary devices, beside the
  accountant's epsilon.

"Breach risk" (the seed paper's figure, defined here) is the best attack's success against what
each design exposes, as this run ran it (:func:`breach_risk`); "leakage reduction" its relative
drop from the centralized design. Intervals at 95%: Wilson's for shares of records, the
Dvoretzky-Kiefer-Wolfowitz band for a membership advantage (a difference of two empirical CDFs),
each widened for the number of attacks the best was picked from. Record-level intervals treat
records as independent, though a device's records are not; the device-level ones do not.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from .. import attacks
from ..dp import GaussianMechanism, clip_l2_rows
from ..fl.rounds import round_cohort, training_seeds
from ..models import MLP
from ..noise import SecureRNG
from .config import SimConfig
from .secure import block_starts, secagg_blocks

__all__ = ["LEVELS", "breach_risk", "run_attacks", "took_part"]

LEVELS = ("none", "fast", "full")
#: (candidate devices per side, shadow models, devices whose updates are inverted at most)
_SIZES = {"fast": (500, 4, 64), "full": (3000, 16, 400)}
#: Devices whose plaintext update the gradient-matching attack optimises over, by level (about
#: 0.1 to 0.2 s each), and the most records a device may hold for it to run: past
#: (F + 1)(C - 1) / F records an update no longer determines them (privcity.attacks.optimize)
OPTIMIZE_DEVICES = {"fast": 8, "full": 64}
OPTIMIZE_MAX_RECORDS = 16
TOLERANCE = 0.05  # relative L2 error under which a record counts as recovered
ROC_POINTS = 400  # points of each stored ROC curve (for the report's plots)
_STREAM = 0x61747461636B  # "attack": the seeded choices of this suite, a stream of their own


def run_attacks(cfg: SimConfig, *, level: str, model: Any, first: tuple[int, np.ndarray] | None,
                population: int, params: dict[str, np.ndarray], rounds_run: dict[str, int],
                baseline: np.ndarray | None, noise_std: float | None, clip: float,
                csv: tuple[Any, Any] | None, say: Callable[[str], None],
                share_std: float | None = None, first_run: str = "fl") -> dict[str, Any]:
    """metrics.json's "attacks" section (without "breach", which :func:`breach_risk` adds).

    first: (round, global parameters) of the first round that any device of run ``first_run``
    ("fl", else "fl_dp") reported in (None: none did); params: the released parameters of "centralized", "fl" and "fl_dp";
    rounds_run: of "fl" and "fl_dp"; baseline: the devices whose records trained the centralized model (None: all);
    noise_std: the standard deviation of central DP's noise on a round's sum (z C; None when
    FL + DP was not run: no noisy view); clip: C;
    share_std: under distributed DP, the standard deviation of one device's noise share (model
    units): a block's sum of k shares has sqrt(k) times it;
    csv: (train FederatedDataset, test with .X and .y) for a CSV task, else None."""
    started = time.perf_counter()
    per_side, shadows, n_inv = _SIZES[level]
    rng = np.random.default_rng([cfg.seed, _STREAM])
    src = _Source(cfg, population, csv)
    if first is None:
        updates = {"tolerance": TOLERANCE, "views": {}, "note": "no device reported an update"}
    else:
        say(f"attacks ({level}): update inversion on round {first[0] + 1}'s updates")
        updates = _inversion(cfg.for_run(first_run, population), src, model, first,
                             population, n_inv, noise_std, clip, share_std,
                             OPTIMIZE_DEVICES[level])
    say(f"attacks ({level}): membership inference on the three models ({shadows} shadow "
        "models)")
    membership = _membership(cfg, src, model, params, rounds_run, baseline, per_side, shadows,
                             rng)
    return {"level": level, "tolerance": TOLERANCE, "updates": updates,
            "membership": membership, "seconds": time.perf_counter() - started}


# --- where the records come from ------------------------------------------------------------------

class _Source:
    """Records of any device of the run (synthetic: regenerated from its id; CSV: the file's)
    and of held-out devices of the same population."""

    def __init__(self, cfg: SimConfig, population: int, csv: tuple[Any, Any] | None) -> None:
        self.cfg, self.population, self.csv = cfg, population, csv

    def devices(self, ids: np.ndarray) -> Any:
        """FederatedDataset of these devices (sorted ids of the run)."""
        if self.csv is not None:
            return self.csv[0].subset(ids)
        from .datasets import city
        return city(self.cfg, ids, self.cfg.devices)

    def held_out(self, count: int, first: int = 0) -> Any:
        """FederatedDataset of ``count`` devices the run never had: ids past the population
        (the same generator, partition and on-device treatment). None for a CSV."""
        if self.csv is not None:
            return None
        from .datasets import city
        start = self.population + first
        return city(self.cfg, np.arange(start, start + count), self.population + first + count)


# --- the updates ----------------------------------------------------------------------------------

def _inversion(cfg: SimConfig, src: _Source, model: Any, first: tuple[int, np.ndarray],
               population: int, n_inv: int, noise_std: float | None, clip: float,
               share_std: float | None, n_opt: int) -> dict[str, Any]:
    from ..models import train_many
    r, init = first
    _, reporting = round_cohort(cfg.seed, r, np.arange(population),
                                sample_rate=cfg.round_rate(r, population), dropout=cfg.dropout)
    # One secure-aggregation block of that round: the block with the most reporting devices.
    starts = block_starts(secagg_blocks(cfg, population), population)
    counts = np.add.reduceat(reporting.astype(np.int64), starts[:-1])
    b = int(np.argmax(counts))
    block = starts[b] + np.flatnonzero(reporting[starts[b]:starts[b + 1]])
    one = block[:n_inv] if block.size >= n_inv else np.flatnonzero(reporting)[:n_inv]
    ids = np.union1d(block, one)
    data = src.devices(ids)
    keep = np.flatnonzero(np.diff(data.offsets) > 0)  # devices with records (a CSV may have none)
    if keep.size == 0:
        return {"tolerance": TOLERANCE, "views": {}, "note": "no device with records reported"}
    with np.errstate(over="ignore", invalid="ignore"):
        ups = train_many(model, init, data.X, data.y, data.offsets, keep,
                         epochs=cfg.local_epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                         seeds=training_seeds(cfg.seed, r, ids[keep]))
    finite = np.isfinite(ups).all(axis=1)
    keep, ups = keep[finite], ups[finite]
    labels = model.task_type == "classification"
    sizes = np.diff(data.offsets)

    def records(devs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        rows = np.concatenate([np.arange(data.offsets[d], data.offsets[d + 1]) for d in devs])
        owner = np.repeat(np.arange(devs.size), sizes[devs])
        return data.X[rows], owner, (data.y[rows].astype(np.int64) if labels else None)

    views: dict[str, Any] = {}
    singles = np.flatnonzero(np.isin(ids[keep], one))
    if singles.size:
        X, owner, y = records(keep[singles])
        views["fl"] = _view(model, X, ups[singles], owner, y, "each device's plaintext update "
                            "(the FedAvg aggregator; also the aggregator of central DP)",
                            singles.size)
        small = singles[sizes[keep[singles]] <= OPTIMIZE_MAX_RECORDS][:n_opt]
        if isinstance(model, MLP):
            optimize_note = "the gradient-matching attack is for linear and softmax models"
        elif small.size == 0:
            optimize_note = (f"the gradient-matching attack was not run: no device held at most "
                             f"{OPTIMIZE_MAX_RECORDS} records (an update no longer determines "
                             "more: privcity.attacks.optimize)")
        else:
            optimize_note = None
            X, owner, y = records(keep[small])
            steps = [cfg.local_epochs * math.ceil(int(n) / cfg.batch_size)
                     for n in sizes[keep[small]]]
            rep = attacks.optimize_report(model, X, ups[small], owners=owner, labels=y,
                                          tol=TOLERANCE, params_before=init, lr=cfg.lr,
                                          steps=steps, seed=cfg.seed)
            views["fl_optimize"] = _report_view(
                rep, f"each device's plaintext update, gradient matching (Geiping et al. "
                     f"2020) on {small.size} devices of at most {OPTIMIZE_MAX_RECORDS} records",
                small.size)
    inblock = np.flatnonzero(np.isin(ids[keep], block))
    if inblock.size >= 2:
        X, _, y = records(keep[inblock])
        owner = np.zeros(X.shape[0], np.int64)
        weights = sizes[keep[inblock]].astype(np.float64)
        total = (ups[inblock] * weights[:, None]).sum(axis=0, keepdims=True)
        views["secagg"] = _view(model, X, total, owner, y, f"one block sum of "
                                f"{inblock.size} devices' updates (a SecAgg server)",
                                inblock.size)
        if noise_std is not None or share_std is not None:  # (None: FL + DP not run)
            clipped, _ = clip_l2_rows(np.ascontiguousarray(ups[inblock], np.float32), clip)
            rng = SecureRNG(cfg.seed.to_bytes(8, "little")
                            + b"privcity-attack-noise".ljust(24, b"\0"))
            if share_std is not None:  # distributed DP: the block's own devices' shares
                std = share_std * math.sqrt(inblock.size)
                label = (f"that block's sum of clipped updates with its {inblock.size} "
                         f"devices' noise shares (std {std:.3g}: what the servers see under "
                         "distributed DP)")
            else:
                std = noise_std
                label = (f"that block's sum of clipped updates plus central DP's noise (std "
                         f"{std:.3g}; under central DP the aggregator sees each update, this is "
                         "what a round's release adds)")
            noisy = GaussianMechanism(sigma=std, sensitivity=clip, rng=rng).release(
                clipped.astype(np.float64).sum(axis=0))
            views["dp_sum"] = _view(model, X, noisy[None, :], owner, y, label, inblock.size)
    out: dict[str, Any] = {"tolerance": TOLERANCE, "views": views}
    if singles.size and optimize_note:
        out["optimize_note"] = optimize_note
    return out


def _view(model: Any, X: np.ndarray, updates: np.ndarray, owner: np.ndarray,
          y: np.ndarray | None, label: str, devices: int) -> dict[str, Any]:
    rep = attacks.inversion_report(model, X, updates, owners=owner, labels=y, tol=TOLERANCE)
    return _report_view(rep, label, devices)


def _report_view(rep: Any, label: str, devices: int) -> dict[str, Any]:
    lo, hi = wilson(rep.recovered, rep.n_records)
    return {"label": label, "devices": int(devices), "n": rep.n_records,
            "recovered": rep.share, "ci": [lo, hi], "median_error": rep.median_error}


# --- the released models --------------------------------------------------------------------------

def _membership(cfg: SimConfig, src: _Source, model: Any, params: dict[str, np.ndarray],
                rounds_run: dict[str, int], baseline: np.ndarray | None, per_side: int,
                shadows: int, rng: np.random.Generator) -> dict[str, Any]:
    pool = np.arange(src.population) if baseline is None else np.asarray(baseline)
    cand = np.sort(rng.choice(pool, size=min(per_side, pool.size), replace=False))
    members = src.devices(cand)
    nonmembers, shadow_X, shadow_y = _held_out(src, per_side, rng)
    if nonmembers.X.shape[0] < 2 or shadow_X.shape[0] < 2:  # a CSV with a handful of test rows
        note = {"note": "too few held-out records to attack (fewer than 2 non-members or "
                        "shadow-training records)"}
        return {"record": {k: note for k in params}, "device": {k: note for k in params},
                "members": int(cand.size), "shadow_models": 0}
    with np.errstate(over="ignore", invalid="ignore"):  # a learning rate that diverges
        refs = attacks.train_reference_models(
            model, shadow_X, shadow_y, n_models=shadows,
            subset_size=max(1, shadow_X.shape[0] // 2), epochs=cfg.centralized_epochs,
            batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed)
    refs = refs[np.isfinite(refs).all(axis=1)]  # a diverged shadow model calibrates nothing
    trained = {"centralized": np.ones(cand.size, bool),
               **{k: took_part(cfg, k, cand, rounds_run.get(k, 0), src.population)
                  for k in ("fl", "fl_dp")}}
    out: dict[str, Any] = {"record": {}, "device": {}, "members": int(cand.size),
                           "shadow_models": int(refs.shape[0])}
    sizes = np.diff(members.offsets)
    for name, p in params.items():
        if not np.isfinite(p).all():
            out["record"][name] = out["device"][name] = {"note": "diverged: not attacked"}
            continue
        devs = np.flatnonzero(trained[name] & (sizes > 0))
        if devs.size == 0:  # e.g. a DP run the budget stopped before its first round
            out["record"][name] = out["device"][name] = {
                "note": "no candidate device took part in its training: not attacked"}
            continue
        rows = np.concatenate([np.arange(members.offsets[d], members.offsets[d + 1])
                               for d in devs])
        mX, my = members.X[rows], members.y[rows]
        nX, ny = nonmembers.X, nonmembers.y
        rec, dev = {}, {}
        for attack, score in _scores(model, p, refs).items():
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                s_in, s_out = _finite_scores(score(mX, my)), _finite_scores(score(nX, ny))
            rec[attack] = _roc(s_in, s_out)
            if cfg.task != "csv":
                d_in = attacks.device_scores(s_in, _offsets(sizes[devs]))
                d_out = attacks.device_scores(s_out, nonmembers.offsets)
                dev[attack] = _roc(d_in, d_out)
        out["record"][name] = rec
        if dev:
            out["device"][name] = dev
    if cfg.task == "csv":
        out["device_note"] = (
            "no device-level attack: the held-out rows come from the test file, which names no "
            "devices (and may differ from the training file in more than membership)"
            if cfg.test_data else "no device-level attack: a CSV's held-out rows come from the "
                                  "training devices (its test split is by row)")
    return out


def _held_out(src: _Source, per_side: int, rng: np.random.Generator) -> tuple[Any, Any, Any]:
    """(non-member candidates as a dataset with offsets, shadow X, shadow y)."""
    if src.csv is None:
        nonmembers = src.held_out(per_side)
        shadow = src.held_out(per_side, first=per_side)
        return nonmembers, shadow.X, shadow.y
    X, y = src.csv[1].X, src.csv[1].y
    order = rng.permutation(X.shape[0])
    half = X.shape[0] // 2
    a, b = np.sort(order[:half]), np.sort(order[half:])
    from types import SimpleNamespace
    nonmembers = SimpleNamespace(X=X[a], y=y[a], offsets=np.array([0, a.size]))
    return nonmembers, X[b], y[b]


def took_part(cfg: SimConfig, run: str, devices: np.ndarray, rounds: int,
              population: int) -> np.ndarray:
    """Which of these devices reported an update in at least one of the first ``rounds`` of
    ``run`` ("fl" or "fl_dp", which may sample differently: SimConfig.for_run)."""
    cfg = cfg.for_run(run, population)
    seen = np.zeros(devices.size, bool)
    for r in range(rounds):
        seen |= round_cohort(cfg.seed, r, devices, sample_rate=cfg.round_rate(r, population),
                             dropout=cfg.dropout)[1]
    return seen


def _offsets(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def _scores(model: Any, p: np.ndarray, refs: np.ndarray) -> dict[str, Callable[..., Any]]:
    few = refs.shape[0] < 64  # Carlini et al.: one variance for all records below ~64 shadows
    out = {"loss": lambda X, y: attacks.loss_threshold_scores(model, p, X, y)}
    if refs.shape[0] >= 1:
        out["calibrated"] = lambda X, y: attacks.calibrated_scores(model, p, refs, X, y)
    if refs.shape[0] >= 2:
        out["lira"] = lambda X, y: attacks.lira_offline_scores(model, p, refs, X, y,
                                                               global_variance=few)
    return out


def _finite_scores(s: np.ndarray) -> np.ndarray:
    """Scores of a model that fits badly can overflow: +-inf keep their rank at the float
    extremes, NaN (no information) goes to the bottom."""
    big = np.finfo(np.float64).max
    return np.nan_to_num(s, nan=-big, posinf=big, neginf=-big)


def _roc(s_in: np.ndarray, s_out: np.ndarray) -> dict[str, Any]:
    r = attacks.evaluate_scores(s_in, s_out)
    lo, hi = dkw_band(r.advantage, r.n_members, r.n_nonmembers)
    idx = np.unique(np.round(np.geomspace(1, r.fpr.size, ROC_POINTS)).astype(np.int64) - 1)
    return {"auc": r.auc, "tpr_at_1pct": _finite(r.tpr_at[0.01]),
            "tpr_at_0.1pct": _finite(r.tpr_at[0.001]), "advantage": r.advantage,
            "advantage_ci": [lo, hi], "auc_null_std": r.auc_null_std,
            "n_members": r.n_members, "n_nonmembers": r.n_nonmembers,
            "roc": {"fpr": [float(x) for x in r.fpr[idx]], "tpr": [float(x) for x in r.tpr[idx]]}}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


# --- the seed paper's figures ---------------------------------------------------------------------

def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's 95% interval of a binomial share."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def dkw_band(advantage: float, n1: int, n0: int, alpha: float = 0.05) -> tuple[float, float]:
    """95% interval of a membership advantage sup(F_out - F_in): each empirical CDF is within
    sqrt(log(4 / alpha) / (2 n)) of its own everywhere with probability 1 - alpha / 2 (DKW with
    Massart's constant), so the sup moves by at most the sum."""
    e = math.sqrt(math.log(4 / alpha) / (2 * n1)) + math.sqrt(math.log(4 / alpha) / (2 * n0))
    return max(0.0, advantage - e), min(1.0, advantage + e)


def breach_risk(results: dict[str, Any]) -> dict[str, Any] | None:
    """metrics.json's attacks.breach: each design's best attack and the leakage reduction.

    The designs as this run ran them: FL's aggregator opens each update (a SecAgg server sees
    block sums under --secure-aggregation); FL + DP's sees each clipped update under central DP,
    the noisy block sums under distributed DP. The best of a design's attacks is picked after
    the fact, so each interval is widened for the number of attacks it was picked from
    (Bonferroni: all of them hold together at 95%). A design whose run released no round, or
    on which nothing could be attacked, gets risk None (not 0: nothing was measured)."""
    att = results.get("attacks")
    if not att:
        return None
    views = att["updates"].get("views", {})
    secure = bool(results["config"].get("secure_aggregation"))

    def best(model: str, view: tuple[str, ...], exposes: str) -> dict[str, Any]:
        if (results.get(model) or {}).get("skipped"):
            return {"risk": None, "ci": [None, None], "attack": "none: not run (--runs)",
                    "exposes": exposes}
        if model != "centralized" and not (results.get(model) or {}).get("rounds_run", 1):
            return {"risk": None, "ci": [None, None], "attack": "none: no round was released",
                    "exposes": exposes}
        cands: list[tuple[float, Callable[[float], list[float]], str]] = []
        for v in (views[name] for name in view if name in views):
            hits = int(round(v["recovered"] * v["n"]))
            cands.append((v["recovered"], lambda a, n=v["n"], k=hits: list(
                wilson(k, n, _z(a))), f"update inversion ({v['label']})"))
        for unit in ("record", "device"):
            for name, r in att["membership"][unit].get(model, {}).items():
                if isinstance(r, dict) and "advantage" in r:
                    cands.append((r["advantage"], lambda a, r=r: list(dkw_band(
                        r["advantage"], r["n_members"], r["n_nonmembers"], a)),
                        f"membership inference, {name}, per {unit}"))
        if model == "centralized":
            cands.append((1.0, lambda a: [1.0, 1.0],
                          "reading the pooled raw records (each one exact)"))
        if not cands:
            return {"risk": None, "ci": [None, None], "attack": "none: nothing to attack",
                    "exposes": exposes}
        risk, band, attack = max(cands, key=lambda c: c[0])
        ci = band(0.05 / len(cands))
        return {"risk": float(risk), "ci": [float(ci[0]), float(ci[1])], "attack": attack,
                "exposes": exposes, "attacks_compared": len(cands),
                "above_chance": bool(ci[0] > 0)}

    plain = ("fl", "fl_optimize")  # what reads a plaintext update: both inversions
    out = {"centralized": best("centralized", (), "the pooled raw records and the model"),
           "fl": best("fl", ("secagg",) if secure else plain,
                      "exact block sums (SecAgg) and the model" if secure else
                      "each device's update and the model"),
           "fl_dp": best("fl_dp", ("dp_sum",) if secure else plain,
                         "noisy block sums (distributed DP) and the model" if secure else
                         "each device's clipped update (central DP: the aggregator adds the "
                         "noise) and the model")}
    base = out["centralized"]
    out["leakage_reduction"] = {k: _reduction(base, out[k]) for k in ("fl", "fl_dp")}
    return out


def _z(alpha: float) -> float:
    """The two-sided normal quantile of level 1 - alpha (Wilson's z)."""
    from statistics import NormalDist
    return NormalDist().inv_cdf(1 - alpha / 2)


def _reduction(base: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """1 - risk / centralized risk, its interval from the two intervals' ends."""
    if base["risk"] is None or other["risk"] is None or base["risk"] <= 0:
        return {"value": None, "ci": [None, None]}
    lo = 1 - other["ci"][1] / max(base["ci"][0], 1e-12)
    hi = 1 - other["ci"][0] / max(base["ci"][1], 1e-12)
    return {"value": 1 - other["risk"] / base["risk"], "ci": [max(lo, -1e9), min(hi, 1.0)]}


# --- the epsilon audit ----------------------------------------------------------------------------

#: Canary devices of the audit by level (each one a coordinate of the audit's model)
AUDIT_CANARIES = {"fast": 1000, "full": 10_000}


def run_audit(cfg: SimConfig, *, level: str, rounds_run: dict[str, int],
              noise_multiplier: float, say: Callable[[str], None],
              ddg_strategy: Any = None) -> dict[str, Any]:
    """metrics.json's "audit": Steinke, Nasr and Jagielski's one-run lower bound on epsilon
    (:func:`privcity.attacks.audit_fedavg`) for the FL run (no DP: only the canaries' number
    limits it) and the FL + DP run, beside the accountant's epsilon after each round. Central
    DP: canary devices in a federation of the run's settings (rate, rounds, clip, noise,
    delta) through the same strategy classes and noise kernels. Distributed DP
    (``ddg_strategy``, the run's DistributedDPFedAvg): the run's own mechanism: its DDGParams,
    population, block floor, rate and dropout, one canary per model coordinate (at most the
    level's number and half the population) and the rest filler devices sending their noise
    shares, so the epsilon tested is the run's users' epsilon."""
    from ..attacks import audit_fedavg
    m = AUDIT_CANARIES[level]
    say(f"epsilon audit: {m:,} canary devices, one run each for FL and FL + DP")
    common = dict(clip=cfg.clip, sample_rate=cfg.sample_rate, delta=cfg.delta, canaries=m,
                  seed=cfg.seed, server_sees="sum")
    out: dict[str, Any] = {"confidence": 0.95, "canaries": m}
    if rounds_run["fl"]:
        fl = audit_fedavg(dp=False, rounds=rounds_run["fl"], **common)
        out["fl"] = {"bound": fl.bound, "bound_per_round": list(fl.bound_per_round),
                     "guesses": fl.guesses, "correct": fl.correct}
    if rounds_run["fl_dp"]:
        if ddg_strategy is not None:
            ddg, n = ddg_strategy.ddg, ddg_strategy.population
            # one canary per coordinate, and at most half the city: each absent canary is a
            # device the run's floor counted on, so more of them would only drop rounds
            k = min(m, ddg.dim, max(2, n // 2))
            if k > n:
                out["fl_dp_note"] = "not run for FL + DP: a city of one device holds no canaries"
                return out
            dp = audit_fedavg(dp=True, rounds=rounds_run["fl_dp"], mechanism="distributed",
                              ddg=ddg, clip=None, sample_rate=cfg.sample_rate, delta=cfg.delta,
                              canaries=k, seed=cfg.seed, population=n,
                              block_floor=ddg_strategy.block_floor, dropout=cfg.dropout)
            out["fl_dp_note"] = (
                f"FL + DP audited on the run's own distributed-DP mechanism: {k:,} canary "
                f"devices (one per model coordinate) among {dp.population:,} devices, the "
                f"others sending zero updates with their noise shares, blocks of floor "
                f"{ddg_strategy.block_floor}; with {k:,} canaries no bound can exceed "
                f"{dp.ceiling:.3f}" + (" (below the accountant's epsilon: no leak, however "
                                       "large, could show here)" if dp.ceiling <= dp.epsilon
                                       else ""))
        else:
            dp = audit_fedavg(dp=True, rounds=rounds_run["fl_dp"],
                              noise_multiplier=noise_multiplier, **common)
        out["fl_dp"] = {"bound": dp.bound, "bound_per_round": list(dp.bound_per_round),
                        "epsilon_per_round": list(dp.epsilon_per_round),
                        "epsilon": dp.epsilon, "exceeded": bool(dp.exceeded),
                        "mechanism": dp.mechanism, "guesses": dp.guesses,
                        "correct": dp.correct, "canaries": dp.canaries,
                        "ceiling": dp.ceiling, "released_rounds": dp.released_rounds}
    return out
