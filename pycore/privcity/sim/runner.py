"""The simulation runner behind ``privcity simulate``.

One process by default: the aggregator and one gateway hosting every device run side by side.
Under ``mpiexec -n P`` (P >= 2) rank 0 is the aggregator and ranks 1..P-1 are gateways, each
hosting a contiguous block of devices; every round rank 0 broadcasts the model, each gateway
trains, clips and seals its reporting devices' updates, and the sealed envelopes (real
AES-256-GCM bytes) travel to rank 0, which enrols new devices with the city CA, opens the
envelopes and aggregates. Only rank 0 prints and writes files.

Determinism: for a fixed seed the models and every non-timing metric are the same for every P,
bit for bit: the data of device d, whether it is sampled or drops out and its training seed
depend only on (seed, d, round); rank 0 reduces updates in device order; the server's DP noise
comes from a seeded SecureRNG (a simulation: the run says so; a deployment keys it from the
OS). Timings (CPU, latency, aggregation time) are measured, so they vary between runs.
Bit-identity assumes the ranks share one numpy build on one kind of CPU (the synthetic city uses
numpy's vectorised log/exp/cos, whose last bit may differ between CPUs); across a mixed cluster
the data, and hence the models, agree to float32 rounding instead.

The device-side privacy pipeline is clip + seal: DP-FedAvg adds its Gaussian noise once, on the
server, to the sum of clipped updates (central DP: the aggregator is trusted with the noise);
with ``field_epsilon`` devices also noise their sensitive fields before training.

Each run trains three models on the same city: (a) centralized, on the pooled raw data;
(b) federated without DP; (c) federated with DP-FedAvg at the configured budget.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..crypto.envelope import build_header
from ..crypto.pki import verify_certificate
from ..dp import Accountant, AdaptiveClipping
from ..errors import PrivacyBudgetExceeded, PrivcityError
from ..fl import Aggregator, DistributedDPFedAvg, DPFedAvg, FedAvg, Gateway, GatewayReport
from ..fl.rounds import AGGREGATOR_ID, sampled_devices, secure_scale_bits, secure_value_limit
from ..noise import SecureRNG
from .checkpoint import (Checkpointer, CheckpointError, TrackedFeedback, read_config,
                         replay_server, server_entry, strategy_check, write_atomic)
from .config import SECURE_FAILURE_WARN, SimConfig
from .control import RANK_TIMEOUT, Interrupted, Interrupts, RankFailure, claim_out
from .datasets import city
from .secure import (DDG_BITS, DDG_FLOOR_FAILURE, block_starts, ddg_floor_miss,
                     distributed_strategy, failure_warning, rotation_seed, secagg_blocks,
                     secure_step, secure_summary)

__all__ = ["calibrate_noise_multiplier", "resume_config", "simulate", "summary_table"]

TEST_DEVICES = 500  # pseudo-devices of the held-out test population
TEST_SAMPLES_MAX = 200  # records per test pseudo-device at most: the test set stays <= 100,000


# --- setting up ------------------------------------------------------------------------------------

def _csv(cfg: SimConfig, keep: Any = None, test_set: bool = True) -> tuple[Any, Any]:
    """(train FederatedDataset, test set or None) of the CSV: the training rows of the devices
    ``keep`` (given the number of devices, a range of them; None: all) picks, every device's
    row count in ``train.population`` whatever it kept; the test set of the hashed split, or
    the rows of ``cfg.test_data`` (load_csv refuses it empty)."""
    from .. import data
    train, test = data.load_csv(
        cfg.data, target=cfg.target, device_column=cfg.device_column or None,
        devices=None if cfg.device_column else cfg.devices, seed=cfg.seed,
        test_fraction=cfg.test_fraction, keep=keep, test_set=test_set,
        test_data=cfg.test_data or None,
        task=None if cfg.target_type == "auto" else cfg.target_type)
    if test is None:
        return train, None
    if not len(test[1]):
        raise ValueError(f"{cfg.data}: none of its {int(train.population[1].sum()):,} usable rows "
                         f"fell in the test split (about {cfg.test_fraction:.0%} of the rows): "
                         "it needs more rows or a larger --test-fraction")
    return train, SimpleNamespace(X=test[0], y=test[1])


def _dataset(cfg: SimConfig, devices: range | None) -> tuple[Any, Any]:
    """(train FederatedDataset for ``devices`` (None: all), test set) for the configured task."""
    from .. import data
    if cfg.task == "csv":
        return _csv(cfg, None if devices is None else (lambda n: devices))
    train = city(cfg, devices, cfg.devices)
    # A held-out population of pseudo-devices, the same whatever the city's size or split.
    test = data.make_test_set(cfg.task, n_devices=TEST_DEVICES,
                              samples_per_device=min(cfg.samples_per_device, TEST_SAMPLES_MAX),
                              seed=cfg.seed,
                              n_districts=cfg.districts)
    return train, test


def _model(cfg: SimConfig, train: Any) -> Any:
    from .. import models
    n_features = train.X.shape[1]
    if cfg.model == "mlp":
        n_out = train.n_classes if train.task_type == "classification" else 1
        return models.MLP(n_features=n_features, hidden=cfg.hidden, n_outputs=n_out,
                          task_type=train.task_type)
    if train.task_type == "classification":
        if cfg.model == "linear":
            raise ValueError("config field 'model': linear is for regression tasks; use "
                             "softmax or mlp")
        return models.SoftmaxRegression(n_features=n_features, n_classes=train.n_classes)
    if cfg.model == "softmax":
        raise ValueError("config field 'model': softmax is for classification tasks; use "
                         "linear or mlp")
    return models.LinearRegression(n_features=n_features)


def auto_lr(model: Any) -> float:
    """The local learning rate ``lr = 0`` stands for: 0.5 for softmax regression, 0.3 for a
    classifying MLP, 0.05 for regression (linear or MLP: squared loss on standardised features
    diverges under FedAvg's 5 local epochs from about 0.1)."""
    from .. import models
    if model.task_type == "regression":
        return 0.05
    return 0.3 if isinstance(model, models.MLP) else 0.5


def _seeded_rng(cfg: SimConfig, stream: int) -> SecureRNG:
    key = hashlib.sha256(f"privcity-simulate-{cfg.seed}".encode()).digest()
    return SecureRNG(key, stream=stream)


def calibrate_noise_multiplier(*, epsilon: float, delta: float, sample_rate: float,
                               rounds: int) -> float:
    """The smallest noise multiplier z, within 1%, with which ``rounds`` DP-FedAvg rounds at
    rate q stay within (epsilon, delta), by dp-accounting's RDP. Each evaluation is one
    dp-accounting computation (0.2 to 0.4 s): log epsilon is smooth and close to linear in log
    z, so a bracketing secant (Illinois) in log-log space needs 4 to 7 of them where
    bisection took 10; the answer is always a z whose epsilon was computed and fits."""
    def gap(log_z: float) -> float:  # log eps(z) - log epsilon: <= 0 where z fits
        eps = Accountant(epsilon_budget=1e300, delta=delta).record_rounds(
            q=sample_rate, z=math.exp(log_z), n=rounds)
        return math.log(eps) - math.log(epsilon) if eps > 0 else -math.inf

    # A bracket [lo, hi] on log z: gap(lo) > 0 (too little noise), gap(hi) <= 0 (fits)
    lo, hi = math.log(0.5), 0.0
    g_lo, g_hi = gap(lo), gap(hi)
    while g_hi > 0:
        lo, g_lo, hi = hi, g_hi, hi + math.log(2.0)
        if hi > math.log(1e4):
            raise ValueError(f"no noise multiplier up to 1e4 fits epsilon={epsilon} in "
                             f"{rounds} rounds at sample_rate={sample_rate}")
        g_hi = gap(hi)
    while g_lo <= 0:
        hi, g_hi, lo = lo, g_lo, lo - math.log(2.0)
        if lo < math.log(1e-3):
            return math.exp(hi)
        g_lo = gap(lo)
    side = 0  # Illinois: halve the weight of an end kept twice in a row
    while hi - lo > math.log(1.01):
        mid = hi - g_hi * (hi - lo) / (g_hi - g_lo) if math.isfinite(g_lo + g_hi) \
            else (lo + hi) / 2
        # Aim just past the estimate, towards the end that moves least: a good estimate then
        # closes the bracket within 1% in one more step.
        pad = 0.3 * math.log(1.01)
        mid = min(max(mid + (pad if side <= 0 else -pad), lo + 0.1 * (hi - lo)),
                  hi - 0.1 * (hi - lo))
        g = gap(mid)
        if g > 0:
            lo, g_lo = mid, g
            if side == -1:
                g_hi /= 2
            side = -1
        else:
            hi, g_hi = mid, g
            if side == 1:
                g_lo /= 2
            side = 1
    return math.exp(hi)


def _compression_summary(cfg: SimConfig, n_params: int, census: _Census) -> dict[str, Any]:
    """metrics.json's bandwidth.compression: the --compress codec and, under secure
    aggregation, the ring FedAvg's quantized integers are summed in (FL + DP's distributed DP
    sends its own integers, not compressed further)."""
    codec = cfg.compression()
    out = codec.describe(n_params)
    if cfg.secure_aggregation and codec.active:
        from ..fl.compress_secure import SecureQuantizer
        out["fl_secure"] = SecureQuantizer(codec, n_params, float(cfg.clip),
                                           max(1, int(census.counts.sum()))).describe()
        out["fl_dp_secure"] = f"distributed DP's own integers ({DDG_BITS}-bit ring), as without"
    return out


def _raw_upload_bytes(census: _Census) -> int:
    """Bytes the devices would send to upload their raw records (features and target as one
    float32 tensor per device) sealed the same way: header + tensor codec + tag, per device."""
    width = census.n_features + 1
    ids = census.device_ids.astype(np.int64)
    # The header holds sender id "dev-<id>": one byte per character of the id's decimal form.
    base = len(build_header(sender_id="dev-", receiver_id=AGGREGATOR_ID, epoch=0, counter=0,
                            plaintext_length=0, content_type=1))
    digits = np.char.str_len(ids.astype("U21")).astype(np.int64)  # "-" included
    per_device = base + digits + 2 + 16 + 4 * census.counts.astype(np.int64) * width + 16
    return int(per_device.sum())


# --- transports ----------------------------------------------------------------------------------

class _Local:
    """One process: the aggregator calls the single gateway directly."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.ranks = 1
        self.requests: list[str] = []  # (only gateway ranks' signals travel: none here)
        self.finished = False

    def round(self, msg: dict[str, Any]) -> list[GatewayReport]:
        return [_gateway_round(self.gateway, msg)]

    def enrolments(self, round_index: int, sample_rate: float) -> list[list[Any]]:
        return [self.gateway.enrolments(round_index, sample_rate=sample_rate)]

    def feedback(self) -> tuple[np.ndarray, np.ndarray]:
        """Top-k residuals that changed since the last call, for the checkpoint."""
        return self.gateway.feedback.take_changed()

    def restore_feedback(self, ids: np.ndarray, rows: np.ndarray) -> None:
        self.gateway.feedback.load(ids, rows, keep=lambda d: True)

    def finish(self) -> None:
        """Nothing to tell: the gateway lives in this process and simply goes unused."""
        self.finished = True

    def stop(self) -> None:
        """Nothing to tell (see finish)."""


class _Deadline:
    """When rank 0 stops waiting for a gateway rank's answer: --rank-timeout after it asked.
    (Gateways wait for rank 0 without one: its centralized baseline may take long.)"""

    def __init__(self, timeout: float) -> None:
        self.timeout, self.at = timeout, time.monotonic() + timeout

    def check(self, rank: int) -> None:
        if time.monotonic() > self.at:
            raise RankFailure(f"rank {rank} did not answer within {self.timeout:g} s "
                              "(--rank-timeout): it died or hangs", rank=rank)


def _wait(comm: Any, source: int, tag: int, deadline: _Deadline | None = None) -> None:
    """Sleeps until a message from ``source`` with ``tag`` has arrived: MPICH's blocking calls
    spin, and a waiting rank must not take the CPU of a working one when ranks outnumber cores."""
    delay = 1e-5
    while not comm.Iprobe(source=source, tag=tag):
        if deadline is not None:
            deadline.check(source)
        time.sleep(delay)
        delay = min(delay * 2, 2e-3)


def _recv_patiently(comm: Any, source: int, deadline: _Deadline | None = None) -> Any:
    """Small metadata (pickled, lowercase recv)."""
    _wait(comm, source, _TAG, deadline)
    return comm.recv(source=source, tag=_TAG)


def _recv_buffer(comm: Any, source: int, out: np.ndarray,
                 deadline: _Deadline | None = None) -> np.ndarray:
    """A numpy buffer (float32 or uint8) through the uppercase Recv, into ``out``."""
    from mpi4py import MPI
    _wait(comm, source, _TAG_BUF, deadline)
    comm.Recv([out, MPI.FLOAT if out.dtype == np.float32 else MPI.BYTE], source=source,
              tag=_TAG_BUF)
    return out


def _send_buffer(comm: Any, dest: int, buf: np.ndarray) -> None:
    from mpi4py import MPI
    comm.Send([buf, MPI.FLOAT if buf.dtype == np.float32 else MPI.BYTE], dest=dest,
              tag=_TAG_BUF)


def _send_patiently(comm: Any, dest: int, message: Any, deadline: _Deadline) -> None:
    """Rank 0's send to a gateway rank (a numpy buffer through Isend, else pickled through
    isend), given up at ``deadline``: a large message waits for the receiver, which may hang."""
    from mpi4py import MPI
    if isinstance(message, np.ndarray):
        req = comm.Isend([message, MPI.FLOAT if message.dtype == np.float32 else MPI.BYTE],
                         dest=dest, tag=_TAG_BUF)
    else:
        req = comm.isend(message, dest=dest, tag=_TAG)
    delay = 1e-5
    while not req.Test():
        deadline.check(dest)
        time.sleep(delay)
        delay = min(delay * 2, 2e-3)


_TAG = 71      # metadata: pickled dicts and reports without their envelopes
_TAG_BUF = 72  # buffers: the model parameters (float32), a report's envelopes (bytes)


class _MPI:
    """Rank 0's side of the MPI exchange (the gateways run :func:`_gateway_loop`): the round's
    message goes to each gateway, each gateway's report comes back (point to point, so a rank
    that waits can sleep). Metadata travels pickled; the parameters and the sealed envelopes
    travel as buffers (one float32 array, one byte string per report)."""

    def __init__(self, comm: Any, timeout: float = RANK_TIMEOUT) -> None:
        self.comm = comm
        self.ranks = comm.Get_size()
        self.timeout = timeout
        self.requests: list[str] = []  # signals gateway ranks got ("rank 2 got SIGTERM")
        self.finished = False  # the gateways left this run's loop

    def round(self, msg: dict[str, Any]) -> list[GatewayReport]:
        params = msg["params"]
        if params.dtype != np.float32:
            raise TypeError(f"model parameters must be float32, not {params.dtype}")
        params = np.ascontiguousarray(params)
        meta = {k: v for k, v in msg.items() if k != "params"}
        meta["n_params"] = int(params.shape[0])
        deadline = _Deadline(self.timeout)
        for dest in range(1, self.ranks):
            with _link(dest):
                _send_patiently(self.comm, dest, meta, deadline)
                _send_patiently(self.comm, dest, params, deadline)
        return [self._report(src, deadline) for src in range(1, self.ranks)]

    def enrolments(self, round_index: int, sample_rate: float) -> list[list[Any]]:
        """Each gateway's enrolment requests for the round's sampled devices (in rank order)."""
        return self._ask({"phase": "enrol", "round": round_index, "sample_rate": sample_rate})

    def _ask(self, question: dict[str, Any]) -> list[Any]:
        """Each gateway's answer to ``question`` (in rank order)."""
        deadline = _Deadline(self.timeout)
        for dest in range(1, self.ranks):
            with _link(dest):
                _send_patiently(self.comm, dest, question, deadline)
        out = []
        for src in range(1, self.ranks):
            with _link(src):
                out.append(_recv_patiently(self.comm, src, deadline))
        return out

    def feedback(self) -> tuple[np.ndarray, np.ndarray]:
        """Top-k residuals that changed on any gateway since the last call (by device id)."""
        parts = [p for p in self._ask({"phase": "feedback"}) if p[0].size]
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def restore_feedback(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Each gateway keeps the residuals of its own devices (a resumed run's split may
        differ from the checkpointed one's)."""
        deadline = _Deadline(self.timeout)
        for dest in range(1, self.ranks):
            with _link(dest):
                _send_patiently(self.comm, dest, {"phase": "restore_feedback", "ids": ids,
                                                  "rows": rows}, deadline)

    def _report(self, src: int, deadline: _Deadline) -> GatewayReport:
        # Gateway ranks run this package's code and send pickled metadata: a rank is trusted
        # code (unpickling runs what it sends). What its logic reports is checked by the
        # aggregator (_checked_report, admit_blocks, open); a message out of this protocol
        # breaks the exchange with that rank, so it stops the run with its rank named.
        with _link(src):
            message = _recv_patiently(self.comm, src, deadline)
        try:
            report, lengths, signalled = message
            ok = isinstance(lengths, list) and all(
                isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**31
                for n in lengths) and sum(lengths) < 2**34 \
                and (signalled is None or isinstance(signalled, str))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise RuntimeError(f"rank {src} sent a report outside the protocol; stopping")
        if signalled:
            self.requests.append(f"rank {src} got {signalled}")
        total = int(sum(lengths))
        if total:
            with _link(src):
                buf = _recv_buffer(self.comm, src, np.empty(total, np.uint8), deadline)
            ends = np.cumsum(lengths).tolist()
            report.envelopes = [buf[e - n:e].tobytes() for e, n in zip(ends, lengths)]
        return report

    def finish(self, message: Any = None) -> None:
        """Ends the gateways' loop of this run (None), or every loop ({"phase": "stop"})."""
        deadline = _Deadline(self.timeout)
        for dest in range(1, self.ranks):
            with _link(dest):
                _send_patiently(self.comm, dest, message, deadline)
        self.finished = True

    def stop(self) -> None:
        """Tells every gateway rank to stop now (an interrupted run): they leave their
        loops and the job ends together."""
        self.finish({"phase": "stop"})


@contextlib.contextmanager
def _link(rank: int) -> Any:
    """An MPI error talking to ``rank`` (its process gone) as a RankFailure naming it."""
    from mpi4py import MPI
    try:
        yield
    except MPI.Exception as exc:
        raise RankFailure(f"the link to rank {rank} failed ({exc.Get_error_string()})",
                          rank=rank) from None


def _gateway_round(gateway: Gateway, msg: dict[str, Any]) -> GatewayReport:
    if msg.get("certificates"):
        gateway.take_certificates(msg["certificates"])
    return gateway.run_round(msg["params"], msg["round"], sample_rate=msg["sample_rate"],
                             dropout=msg["dropout"], clip=msg["clip"],
                             adaptive_bit=msg["adaptive_bit"], epoch=msg["epoch"],
                             secure=msg.get("secure"))


def _gateway_loop(comm: Any, gateway: Gateway, control: Interrupts,
                  devices: range | None = None) -> bool:
    """Serves rank 0 for one run; True when rank 0 stopped the whole job ({"phase": "stop"})."""
    while True:
        meta = _recv_patiently(comm, 0)
        if meta is None:
            return False
        phase = meta.get("phase")
        if phase == "stop":
            return True
        if phase == "enrol":
            comm.send(gateway.enrolments(meta["round"], sample_rate=meta["sample_rate"]), dest=0,
                      tag=_TAG)
            continue
        if phase == "feedback":
            comm.send(gateway.feedback.take_changed(), dest=0, tag=_TAG)
            continue
        if phase == "restore_feedback":
            mine = devices if devices is not None else range(0)
            gateway.feedback.load(meta["ids"], meta["rows"], keep=mine.__contains__)
            continue
        params = _recv_buffer(comm, 0, np.empty(meta.pop("n_params"), np.float32))
        report = _gateway_round(gateway, {**meta, "params": params})
        envelopes, report.envelopes = report.envelopes, []
        comm.send((report, [len(e) for e in envelopes], control.requested), dest=0, tag=_TAG)
        if envelopes:
            _send_buffer(comm, 0, np.frombuffer(b"".join(envelopes), np.uint8))


def _make_gateway(cfg: SimConfig, train: Any, model: Any, devices: range,
                  aggregator_cert: Any, trust_anchor: Any, crl: Any,
                  threads: int | None = None) -> Gateway:
    from ..models import load_kernels
    load_kernels(model)  # part of the setup, not of the first round
    gateway = Gateway(model=model, data=train, devices=np.arange(devices.start, devices.stop),
                      seed=cfg.seed, aggregator_certificate=aggregator_cert,
                      epochs=cfg.local_epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                      trust_anchor=trust_anchor, crl=crl, compression=cfg.compression(),
                      threads=threads)
    gateway.feedback = TrackedFeedback()  # top-k residuals: each checkpoint takes the changed
    return gateway


def _threads_per_rank(comm: Any) -> int:
    """Training threads of each rank: the CPUs of its node shared among the node's ranks (a
    collective call). Each rank taking every CPU would run ranks x CPUs threads on the CPUs.
    The split changes no result: any thread count gives the same bits."""
    from mpi4py import MPI
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return max(1, len(os.sched_getaffinity(0)) // node.Get_size())
    finally:
        node.Free()


# --- one federated run ----------------------------------------------------------------------------

class _Setup:
    """Progress lines of the phases before the rounds (rank 0 only), with elapsed wall time."""

    def __init__(self, enabled: bool, started: float) -> None:
        self.enabled, self.started = enabled, started

    def __call__(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(f"[setup ] {time.perf_counter() - self.started:7.1f} s  {text}\n")
            sys.stderr.flush()


class _Progress:
    def __init__(self, label: str, total: int, enabled: bool) -> None:
        self.label, self.total, self.enabled = label, total, enabled
        self.tty = enabled and sys.stderr.isatty()

    def update(self, done: int, metric: str, value: float | None, epsilon: float | None,
               note: str = "") -> None:
        if not self.enabled:
            return
        width = 20
        fill = int(width * done / self.total)
        eps = f"  eps {epsilon:.3f}" if epsilon is not None else ""
        line = (f"[{self.label:<6}] round {done:>3}/{self.total} |{'#' * fill}{' ' * (width - fill)}|"
                + (f"  {metric} {value:.4f}" if value is not None else "") + eps
                + (f"  ({note})" if note else ""))
        sys.stderr.write(("\r" + line) if self.tty else line + "\n")
        if self.tty and done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _rank_devices(cfg: SimConfig, population: int, gateways: int) -> list[np.ndarray]:
    """The device ids of each gateway rank: contiguous, as even as can be; under secure
    aggregation made of whole blocks, so that no block's round is split between ranks."""
    if not cfg.secure_aggregation:
        return np.array_split(np.arange(population), gateways)
    starts = block_starts(secagg_blocks(cfg, population), population)
    parts = np.array_split(np.arange(len(starts) - 1), gateways)
    return [np.arange(int(starts[p[0]]), int(starts[p[-1] + 1])) if p.size else np.arange(0)
            for p in parts]


def _federated(cfg: SimConfig, *, dp: bool, transport: Any, aggregator: Aggregator,
               model: Any, test: Any, init: np.ndarray, progress: bool,
               population: int, records: int, keeper: Checkpointer | None = None,
               control: Interrupts | None = None) -> dict[str, Any]:
    name = "fl_dp" if dp else "fl"
    params = init.copy()
    run_started = time.perf_counter()
    strategy = aggregator.strategy
    metric = "accuracy" if model.task_type == "classification" else "r2"
    rounds: list[dict[str, Any]] = []
    stopped = None
    first = None  # (round, global parameters) of the first round any device reported in
    log: list[dict[str, Any]] = []  # what the server gave the strategy (the checkpoint's)
    bar = _Progress("fl+dp" if dp else "fl", cfg.rounds, progress)
    every = cfg.eval_every or auto_eval_every(cfg, test.X.shape[0], records, population)
    distributed = isinstance(strategy, DistributedDPFedAvg)
    floor = strategy.block_floor if distributed else None  # each block sum's fewest shares
    t_eval = time.perf_counter()
    evaluate = model.evaluator(test.X, test.y)  # the test set checked once, not at every pass
    evaluation = time.perf_counter() - t_eval  # seconds evaluating the test set
    reading = 0.0  # and reading the epsilon
    saved = keeper.saved_run(name) if keeper is not None else None
    if saved is not None:  # a resumed run: the rounds done, the strategy replayed to them
        params, rounds, log, first = saved.params.copy(), saved.rounds, saved.log, saved.first

        def cohort_of(r: int) -> np.ndarray:  # the server's sample of round r (as below)
            return sampled_devices(cfg.seed, r, np.arange(population),
                                   sample_rate=cfg.round_rate(r, population))

        replay_server(strategy, log, n_params=aggregator.n_params, check=saved.check,
                      cohort_of=cohort_of)
        if saved.feedback is not None:
            transport.restore_feedback(*saved.feedback)
        run_started -= saved.timers["wall"]
        evaluation += saved.timers["evaluation"]
        reading += saved.timers["epsilon"]
        bar.update(len(rounds), metric, rounds[-1]["score"], rounds[-1]["epsilon"], "resumed")
    topk = aggregator.compression.kind == "topk"
    for r in range(len(rounds), cfg.rounds):
        try:
            strategy.check_budget()
        except PrivacyBudgetExceeded as exc:
            stopped = str(exc)
            break
        if control is not None:
            control.hold()  # a signal now stops the run after this round, once it is saved
        events = len(strategy.accountant.events) if dp else 0
        clip = strategy.clip_norm()
        secure = None
        if cfg.secure_aggregation:
            secure = {"weighted": not dp, "blocks": secagg_blocks(cfg, population),
                      "population": population,
                      "neighbors": cfg.secagg_neighbors, "dropout": cfg.dropout,
                      "scale_bits": secure_scale_bits(clip, aggregator.n_params),
                      "limit": secure_value_limit(population),
                      # --compress q<b>: FedAvg's quantized integers summed in a smaller ring
                      "quantizer": None if dp else aggregator.secure_quantizer(cfg.clip,
                                                                               population)}
            if distributed:
                secure.update(ddg=strategy.ddg, rotation_seed=rotation_seed(cfg, r),
                              min_survivors=floor)
        rate = cfg.round_rate(r, population)  # Poisson at q, or exactly clients_per_round
        msg = {"params": params, "round": r, "sample_rate": rate,
               "dropout": cfg.dropout, "clip": clip,
               "adaptive_bit": aggregator.adaptive_bit, "epoch": 2 * r + (1 if dp else 0),
               "secure": secure}
        # The server's own cohort: the aggregator admits only these devices' updates, whatever
        # a gateway reports (seeded Poisson sampling, the gateways' round_cohort decision).
        cohort = sampled_devices(cfg.seed, r, np.arange(population), sample_rate=rate)
        gateways = _gateway_ids(transport)  # the rank each report came from, not its claim
        refusals: Counter[str] = Counter()
        if secure is not None:
            # The round's sampled devices sign their SecAgg messages: the city CA certifies the
            # new ones before the round starts.
            t0 = time.perf_counter()
            issued: dict[int, bytes] = {}
            for g, asks in zip(gateways, transport.enrolments(r, rate)):
                refusals.update(aggregator.enrol(asks, gateway=g, issued=issued))
            msg["certificates"] = issued
            enrol_seconds = time.perf_counter() - t0
        reports = [_checked_report(rep, refusals) for rep in transport.round(msg)]
        before = params  # (the step below makes a new array)
        t0 = time.perf_counter()
        for g, rep in zip(gateways, reports):
            refusals.update(aggregator.enrol(rep.enrolments, gateway=g))
            refusals.update(rep.secure_refusals)
        t1 = time.perf_counter()
        if secure is None:
            opened = aggregator.open({g: rep.envelopes for g, rep in zip(gateways, reports)},
                                     epoch=msg["epoch"], cohort=cohort)
            refusals.update(opened.refusals)
            # Keys and replay windows of this round's epoch are done with: a late or replayed
            # envelope of it is refused from now on, and memory stays flat over the rounds.
            aggregator.receiver.discard_before(msg["epoch"] + 1)
            params = aggregator.step(params, opened.device_ids, opened.updates, opened.bits, r)
            reported, lost = int(opened.device_ids.size), 0
            unclipped = int(np.count_nonzero(opened.bits == 1))
            sent = int(sum(len(e) for rep in reports for e in rep.envelopes))
        else:
            params, reported, dropped = secure_step(aggregator, params, r, secure, cohort,
                                                    dict(zip(gateways, reports)), refusals)
            lost = sum(rep.secure_lost for rep in reports)
            sent = sum(rep.secure_bytes for rep in reports)
            unclipped = 0
        t2 = time.perf_counter()
        step_accounting = strategy.last_accounting_seconds if dp else 0.0
        # One evaluation (the score is one of its metrics), every eval_every rounds and last
        t3 = time.perf_counter()
        scores = evaluate(params) if (r + 1) % every == 0 or r + 1 == cfg.rounds else None
        t4 = time.perf_counter()
        eps = strategy.accountant.epsilon() if dp else None
        reading += time.perf_counter() - t4  # the epsilon of the rounds so far (memoised)
        evaluation += t4 - t3
        extra = {}
        if distributed:
            extra = {"epsilon_servers": strategy.epsilon_servers(), "dropped": dropped}
        rounds.append({
            "round": r + 1,
            "sampled": sum(rep.sampled for rep in reports),
            "reported": reported,
            "refused": sum(refusals.values()),  # enrolments and envelopes refused
            "refusals": {k: v for k, v in sorted(refusals.items()) if v},  # by kind
            "lost": lost,  # secure aggregation: updates of blocks whose round failed
            "diverged": sum(rep.diverged for rep in reports),
            "bytes_sent": int(sent),
            "score": None if scores is None else float(scores[metric]),
            "metrics": {} if scores is None else {k: float(v) for k, v in scores.items()},
            "epsilon": eps,
            "clip": clip,
            "enrol_seconds": t1 - t0 + (enrol_seconds if secure is not None else 0.0),
            # first-time devices' keys on the gateways (their CPU, summed) and certificates
            "provision_seconds": sum(rep.provision_seconds for rep in reports)
            + t1 - t0 + (enrol_seconds if secure is not None else 0.0),
            "aggregation_seconds": t2 - t1 - step_accounting,  # open + reduce + noise
            "accounting_seconds": step_accounting,
            "train_cpu_seconds": [float(x) for rep in reports for x in rep.train_seconds],
            "privacy_seconds": [float(x) for rep in reports for x in rep.privacy_seconds],
            **extra,
        })
        if first is None and reported:  # the attack suite inverts this round's updates
            first = (r, before)
        bar.update(r + 1, metric, rounds[-1]["score"], eps,
                   "dropped: too few noise shares" if extra.get("dropped") else "")
        log.append(server_entry(strategy, r, events, reported=reported, unclipped=unclipped))
        if keeper is not None:
            keeper.round_done(name, params=params, record=rounds[-1], entry=log[-1],
                              check=strategy_check(strategy), first=first,
                              feedback=transport.feedback() if topk else None,
                              timers={"wall": time.perf_counter() - run_started,
                                      "evaluation": evaluation, "epsilon": reading})
        if control is not None:
            for request in transport.requests:
                control.request(request)
            control.release()  # (raises Interrupted if a stop was asked for meanwhile)
    bar.close()
    if rounds and rounds[-1]["score"] is None:  # stopped by the budget between evaluations
        t3 = time.perf_counter()
        scores = evaluate(params)
        evaluation += time.perf_counter() - t3
        rounds[-1].update(score=float(scores[metric]),
                          metrics={k: float(v) for k, v in scores.items()})
    return {"params": params, "rounds": rounds, "stopped": stopped, "first": first,
            "strategy": strategy.describe(), "wall_seconds": time.perf_counter() - run_started,
            "evaluation_seconds": evaluation, "epsilon_seconds": reading}


# A pass over the test set costs about what training as many rows costs (issue 16's workload,
# Zen 3: 16-24 ms for 15,112 rows, 47 MB of float32 read by a narrow GEMM, against 7.7-9.5 ms
# for the 6,000 rows trained a round); evaluating every EVAL_SPACING x (test rows / trained
# rows) rounds keeps it near a tenth of a round, whose sealing and opening double training.
EVAL_SPACING = 4


def auto_eval_every(cfg: SimConfig, test_rows: int, records: int, population: int) -> int:
    """The k of ``eval_every = 0``: at most about 50 evaluations a run (every rounds // 50),
    fewer when the test set is large beside what a round trains (q x records x epochs rows):
    every EVAL_SPACING x test_rows / trained rounds, so that evaluating stays a small share of
    the run. The last round is always evaluated."""
    rate = cfg.clients_per_round / max(population, 1) if cfg.clients_per_round \
        else cfg.sample_rate
    trained = max(rate * records * cfg.local_epochs, 1.0)
    return min(cfg.rounds, max(1, cfg.rounds // 50, math.ceil(EVAL_SPACING * test_rows / trained)))


def _checked_report(rep: Any, refusals: Counter[str]) -> GatewayReport:
    """A gateway's report as the aggregator may use it: under MPI it arrives unpickled from
    another rank, so a report whose fields are not of their kind is refused whole ("malformed")
    and counts as an empty one; the contents are checked where they are used."""
    ok = isinstance(rep, GatewayReport) and all(
        isinstance(getattr(rep, name), (list, tuple)) for name in
        ("envelopes", "enrolments", "train_seconds", "privacy_seconds", "secure_blocks")) \
        and all(isinstance(getattr(rep, name), int) and not isinstance(getattr(rep, name), bool)
                and getattr(rep, name) >= 0 for name in
                ("sampled", "diverged", "secure_count", "secure_bytes", "secure_lost")) \
        and isinstance(rep.secure_refusals, dict) \
        and all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for k, v in rep.secure_refusals.items()) \
        and all(isinstance(x, float) for x in [*rep.train_seconds, *rep.privacy_seconds]) \
        and isinstance(rep.provision_seconds, float) and 0 <= rep.provision_seconds < math.inf
    if ok:
        return rep
    refusals["malformed_report"] += 1
    return GatewayReport()


def _gateway_ids(transport: Any) -> list[int]:
    """The gateway (rank) behind each report of ``transport.round``: 0 in one process."""
    return [0] if transport.ranks == 1 else list(range(1, transport.ranks))


def _assign_gateways(cfg: SimConfig, aggregators: tuple[Aggregator, ...], population: int,
                     size: int) -> None:
    """Tell each aggregator which devices each gateway rank hosts (only it may enrol them)."""
    blocks = [np.arange(population)] if size == 1 else _rank_devices(cfg, population, size - 1)
    for g, block in enumerate(blocks, start=0 if size == 1 else 1):
        for aggregator in aggregators:
            aggregator.assign(g, block)


def _strategy(cfg: SimConfig, dp: bool, population: int, n_params: int,
              holders: np.ndarray | None = None) -> tuple[Any, bool]:
    if not dp:
        return FedAvg(server_lr=cfg.server_lr, aggregator=cfg.aggregator), False
    if "fl_dp" not in cfg.run_set():  # not run (--runs): no noise to calibrate (z is unused)
        return DPFedAvg(inner=FedAvg(server_lr=cfg.server_lr), clip=cfg.clip,
                        noise_multiplier=cfg.noise_multiplier or 1.0,
                        sample_rate=cfg.sample_rate,
                        population=population,
                        accountant=Accountant(epsilon_budget=cfg.epsilon, delta=cfg.delta),
                        rng=_seeded_rng(cfg, 1)), False
    if cfg.secure_aggregation:
        return distributed_strategy(cfg, population, n_params, holders), False
    z = cfg.noise_multiplier or calibrate_noise_multiplier(
        epsilon=cfg.epsilon, delta=cfg.delta, sample_rate=cfg.sample_rate, rounds=cfg.rounds)
    adaptive = None
    if cfg.adaptive_clip:
        expected = cfg.sample_rate * population
        # Andrew et al. suggest sigma_b = m / 20; it must also exceed z / 2 for the updates'
        # noise multiplier to exist (small cities): take at least z.
        adaptive = AdaptiveClipping(initial_clip=cfg.clip,
                                    count_noise_std=max(expected / 20, z),
                                    rng=_seeded_rng(cfg, 2))
    strategy = DPFedAvg(inner=FedAvg(server_lr=cfg.server_lr), clip=cfg.clip,
                        noise_multiplier=z, sample_rate=cfg.sample_rate, population=population,
                        accountant=Accountant(epsilon_budget=cfg.epsilon, delta=cfg.delta),
                        adaptive=adaptive, rng=_seeded_rng(cfg, 1))
    return strategy, adaptive is not None


#: FL + DP's noise against an update at the clip norm (z sqrt(d) / (q N), per coordinate) above
#: which the run warns that its devices per round cannot carry the noise: on vega_datasets'
#: cars (13 parameters, z 1.17) r2 falls from 0.65 to -0.9 at 0.85, to 0.34 at 0.42, and stays
#: within 0.05 of FL's at 0.1, the ratio the advice aims at.
NOISE_WARN, NOISE_AIM = 0.5, 0.1


def _round_warnings(cfg: SimConfig, population: int, n_params: int, dp_strategy: Any) -> list[str]:
    """What makes a run not worth its time, said before training with the numbers: fewer than
    one device expected a round, or FL + DP's central noise beyond what q N devices carry."""
    out = []
    q, runs = cfg.sample_rate, cfg.run_set()
    expected = q * population
    if expected < 1 and (("fl" in runs and not cfg.clients_per_round) or "fl_dp" in runs):
        out.append(f"{_plural(population, 'device')} x --sample-rate {q:g} = {expected:.2g} "
                   "expected a round: most rounds train no device (raise --sample-rate, or "
                   "give more devices)")
    if "fl_dp" not in runs or cfg.secure_aggregation or not isinstance(dp_strategy, DPFedAvg):
        return out  # (distributed DP calibrates, and refuses, its own noise)
    z, clip = float(dp_strategy.noise_multiplier), float(cfg.clip)
    sigma, share = z * clip / expected, clip / math.sqrt(n_params)
    ratio = sigma / share
    if ratio > NOISE_WARN:
        more = ("a larger --sample-rate, or more devices: --devices, or a --device-column with "
                "more values" if cfg.task == "csv" else "a larger --sample-rate or --devices")
        out.append(
            f"FL + DP: {expected:.3g} devices expected a round (--sample-rate {q:g} x "
            f"{_plural(population, 'device')}) cannot carry the DP noise: its std per "
            "coordinate of the "
            f"averaged update is z x clip / (q N) = {z:.3g} x {clip:g} / {expected:.3g} = "
            f"{sigma:.3g}, against {share:.3g} a coordinate for an update at the clip norm "
            f"{clip:g} spread over the model's {n_params:,} parameters ({ratio:.2g} times as "
            "large): the model will learn mostly noise, whatever --lr. What would help: about "
            f"{math.ceil(z * math.sqrt(n_params) / NOISE_AIM):,} devices a round ({more}); a "
            f"larger --epsilon, or fewer --rounds (each lowers z = {z:.3g})")
    return out


def _plural(n: int, noun: str) -> str:
    """'1 device', '2,000 devices'."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


# --- the whole simulation -------------------------------------------------------------------------

def _percentiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"p50": 0.0, "p99": 0.0, "mean": 0.0}
    a = np.asarray(xs)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "mean": float(a.mean())}


def simulate(cfg: SimConfig, *, comm: Any = None, progress: bool = True,
             shared: dict[str, Any] | None = None, resume: bool = False,
             overwrite: bool = False, rank_timeout: float = RANK_TIMEOUT,
             checkpoint: bool = True) -> dict[str, Any] | None:
    """Run the simulation; rank 0 (or the only process) returns the results dict and writes
    ``cfg.out``/metrics.json; other ranks return None. ``comm``: an mpi4py communicator with
    at least 2 ranks, or None for one process. ``shared``: a dict that the first run fills with
    its centralized and FL runs and later runs take them from (a sweep over epsilon: only the
    DP run changes); the caller keeps every setting but the DP ones equal.

    After every round the run checkpoints itself in ``cfg.out`` (:mod:`privcity.sim.checkpoint`)
    and appends the round to ``cfg.out``/rounds.jsonl. ``resume``: continue the run whose
    checkpoint ``cfg.out`` holds (``cfg`` from :func:`resume_config`), on any number of ranks,
    to the results of an uninterrupted run. A directory holding another run is refused
    (ValueError) unless ``overwrite``; a lock keeps two runs out of one directory.
    SIGINT/SIGTERM stop the run after the round in progress (:class:`Interrupted`);
    ``rank_timeout``: seconds rank 0 waits for a gateway rank before it stops the run
    (:class:`RankFailure`). ``checkpoint=False`` writes neither checkpoints nor rounds.jsonl (a
    run that cannot be resumed; the sweep's runs, which share their first runs, write none)."""
    cfg.validate()
    if not (isinstance(rank_timeout, (int, float)) and math.isfinite(rank_timeout)
            and rank_timeout > 0):
        raise ValueError(f"rank_timeout must be a finite number of seconds > 0, not "
                         f"{rank_timeout!r}")
    if resume and (shared is not None or not checkpoint):
        raise ValueError("resume needs the run's checkpoint (not a sweep's run, not "
                         "checkpoint=False)")
    rank = 0 if comm is None else comm.Get_rank()
    size = 1 if comm is None else comm.Get_size()
    lock, keeper, error = None, None, None
    control = Interrupts(gateway=rank > 0, mpi=size > 1)
    try:
        with control:
            control.hold()  # the claim and the setup: collective calls on every rank
            if rank == 0:  # fail now, not after the whole run
                try:
                    lock, keeper = _claim(cfg, shared, resume=resume, overwrite=overwrite,
                                          checkpoint=checkpoint)
                except (ValueError, PrivcityError) as exc:
                    error = exc
            if size > 1 and comm.bcast(error is not None, root=0) and rank:
                return None  # rank 0 refused the run and says why
            if error is not None:
                raise error
            if comm is None or size == 1:
                return _simulate(cfg, None, 0, 1, progress, shared, keeper, control)
            try:
                return _simulate(cfg, comm, rank, size, progress, shared, keeper, control,
                                 rank_timeout)
            except (Interrupted, RankFailure, CheckpointError):
                raise  # rank 0 stops the gateways, or leaves without them (abandon)
            except BaseException as exc:
                # The other ranks would wait for this one forever: report and take the job down.
                sys.stderr.write(f"privcity simulate: rank {rank} failed: {exc!r}\n")
                sys.stderr.flush()
                comm.Abort(1)
                raise
    except (Interrupted, RankFailure, CheckpointError) as exc:
        if not getattr(exc, "abandon", False):
            control.stop_gateways()
        if keeper is not None:
            exc.hint = f"{keeper.progress()}; continue with: privcity simulate --resume {cfg.out}"
        raise
    except BaseException:
        if keeper is not None and not resume:
            keeper.discard_if_empty()  # a run that failed in its setup leaves no files
        raise
    finally:
        if lock is not None:
            lock.release()


def _claim(cfg: SimConfig, shared: dict[str, Any] | None, *, resume: bool, overwrite: bool,
           checkpoint: bool) -> tuple[Any, Checkpointer | None]:
    """Rank 0's hold on cfg.out: (its lock, the checkpoint writer) or (None, None) for a
    sweep's run (the sweep owns the directory; it only checks that it can write there)."""
    if shared is not None:
        try:
            os.makedirs(cfg.out, exist_ok=True)
            probe = os.path.join(cfg.out, ".privcity-write-test")
            open(probe, "w").close()  # an empty file: can we create one here?
            os.unlink(probe)
        except OSError as exc:
            raise ValueError(f"config field 'out': cannot write to {cfg.out!r} ({exc})") from None
        return None, None
    lock, note = claim_out(cfg.out, resume=resume, overwrite=overwrite)
    try:
        if note:
            sys.stderr.write(f"privcity simulate: note: {note}\n")
        if not checkpoint:
            return lock, None
        keeper = Checkpointer.resume(cfg.out) if resume else \
            Checkpointer.start(cfg.out, cfg.to_dict())
    except BaseException:
        lock.release()
        raise
    return lock, keeper


def resume_config(out: str, comm: Any = None) -> SimConfig | None:
    """The settings of the run whose checkpoint ``out`` holds (rank 0 reads it and tells the
    other ranks), its ``out`` set to ``out``. Rank 0 raises CheckpointError if there is nothing
    to resume; the other ranks then get None."""
    rank = 0 if comm is None else comm.Get_rank()
    got: Any = None
    if rank == 0:
        try:
            got = read_config(out)
        except CheckpointError as exc:
            got = exc
    if comm is not None and comm.Get_size() > 1:
        told = comm.bcast(None if isinstance(got, Exception) else got, root=0)
        if rank:
            got = told
    if isinstance(got, Exception):
        raise got
    if got is None:
        return None
    try:
        cfg = SimConfig(**{**got, "out": out})
    except TypeError as exc:
        raise CheckpointError(f"{out}: the checkpoint's settings do not fit ({exc})",
                              kind="mismatch") from None
    return cfg.validate()


def _baseline_sample(cfg: SimConfig, population: int) -> np.ndarray | None:
    """Sorted device indices whose pooled records train the centralized baseline: a seeded
    uniform sample of ``cfg.baseline_devices``, or None for every device."""
    n = cfg.baseline_devices
    if n == 0 or n >= population:
        return None
    rng = np.random.default_rng([cfg.seed, 0x62617365])  # "base": a stream of its own
    return np.sort(rng.choice(population, size=n, replace=False))


class _Census:
    """What rank 0 needs to know of every device (ids and record counts), which need not be the
    devices whose records it holds (a sampled baseline)."""

    def __init__(self, device_ids: np.ndarray, counts: np.ndarray, n_features: int,
                 notes: tuple[str, ...] = ()) -> None:
        self.device_ids, self.counts, self.n_features = device_ids, counts, n_features
        self.notes = notes  # what loading did to the data (rows left out, columns dropped)

    @classmethod
    def of(cls, train: Any) -> _Census:
        return cls(train.device_ids, np.diff(train.offsets), train.X.shape[1], train.notes)

    @property
    def n_devices(self) -> int:
        return int(self.device_ids.shape[0])

    @property
    def n_records(self) -> int:
        return int(self.counts.sum())


def _simulate(cfg: SimConfig, comm: Any, rank: int, size: int, progress: bool,
              shared: dict[str, Any] | None, keeper: Checkpointer | None, control: Interrupts,
              rank_timeout: float = RANK_TIMEOUT) -> dict[str, Any] | None:
    started = time.perf_counter()
    say = _Setup(progress and rank == 0, started)
    if size == 1 or rank == 0:
        sample = None if cfg.task == "csv" else _baseline_sample(cfg, cfg.devices)
        if cfg.task == "csv":
            say(f"reading {cfg.data}")
        else:
            n = cfg.devices if size == 1 or sample is None else sample.size
            say(f"city: generating {_plural(n, 'device')} x {cfg.samples_per_device} records "
                f"({cfg.task})"
                + ("" if n == cfg.devices else ", the centralized baseline's sample"))
    if size == 1:
        train, test = _dataset(cfg, None)
        census = _Census.of(train)
    elif rank == 0:
        # Rank 0 holds pooled data for the baseline only: the sampled devices' (synthetic city,
        # each device's rows depend on its id alone), else every device's.
        if sample is not None:
            train, test = _dataset(cfg, sample)
            n = cfg.devices
            census = _Census(np.arange(n, dtype=np.int64),
                             np.full(n, cfg.samples_per_device, np.int64), train.X.shape[1])
        elif cfg.task != "csv" or "centralized" in cfg.run_set() or cfg.attacks != "none":
            train, test = _dataset(cfg, None)  # pooled, or read again by the attacks
            census = _Census.of(train)
        else:  # a CSV's test rows and every device's row count, none of the devices' rows
            train, test = _csv(cfg, lambda n: range(0, 0))
            census = _Census(*train.population, train.X.shape[1], train.notes)
    else:
        # A gateway generates, or encodes of the CSV, only its block of devices (the CSV's
        # population is known once it is read: the block is chosen then).
        def block_of(population: int) -> range:
            block = _rank_devices(cfg, population, size - 1)[rank - 1]
            return range(int(block[0]), int(block[-1]) + 1) if block.size else range(0, 0)

        if cfg.task == "csv":
            train, test = _csv(cfg, block_of, test_set=False)
            mine = block_of(int(train.population[0].shape[0]))
        else:
            mine = block_of(cfg.devices)
            train, test = _dataset(cfg, mine)
    # Wall seconds of each phase (rank 0's view), metrics.json "phases" and the table.
    phases: dict[str, float] = {"read": time.perf_counter() - started}
    target_rule = getattr(train, "task_note", "")  # a CSV's task, and why (load_csv)
    if rank == 0 and target_rule:
        say(f"target: {target_rule}")
        for note in train.notes:
            if note.startswith("warning"):
                say(note)
    model = _model(cfg, train)
    if cfg.lr == 0:
        cfg = dataclasses.replace(cfg, lr=auto_lr(model))
    init = model.init_params(cfg.seed)

    # Aggregators for the two federated runs share nothing but the city CA design; each has its
    # own keys. The gateways learn the aggregator certificates up front.
    if rank == 0:
        population = census.n_devices
        weights = census.counts.astype(np.float64)
        plain_strategy, _ = _strategy(cfg, False, population, model.n_params)
        dp_strategy, adaptive = _strategy(cfg, True, population, model.n_params,
                                          census.counts > 0)
        agg_plain = Aggregator(strategy=plain_strategy, n_params=model.n_params,
                               weights_of=lambda d: weights[d], compression=cfg.compression())
        agg_dp = Aggregator(strategy=dp_strategy, n_params=model.n_params,
                            weights_of=lambda d: weights[d], adaptive_bit=adaptive,
                            compression=cfg.compression())
        _assign_gateways(cfg, (agg_plain, agg_dp), population, size)
        advice = _round_warnings(cfg, population, model.n_params, dp_strategy)
        for text in advice:  # before training: the run may not be worth its time
            say(f"warning: {text}")
        if cfg.secure_aggregation and cfg.secure_failure_chance()[1] > SECURE_FAILURE_WARN:
            say(failure_warning(cfg.secure_failure_chance()[1], cfg.dropout))
        # (aggregator certificate, the city CA's certificate, its CRL) of each run
        pki = [(a.verified, a.ca.certificate, a.crl) for a in (agg_plain, agg_dp)]
    else:
        pki = None
    if comm is not None and size > 1:
        # Certificates travel as PEM; each gateway verifies the aggregators' against the CA.
        pem = serialization.Encoding.PEM
        wire = None if rank else [(a.ca.certificate.public_bytes(pem), a.crl.public_bytes(pem),
                                   a.certificate.public_bytes(pem)) for a in (agg_plain, agg_dp)]
        wire = comm.bcast(wire, root=0)
        if rank:
            pki = []
            for ca_pem, crl_pem, cert_pem in wire:
                ca, crl = x509.load_pem_x509_certificate(ca_pem), x509.load_pem_x509_crl(crl_pem)
                pki.append((verify_certificate(x509.load_pem_x509_certificate(cert_pem),
                                               trust_anchor=ca, crl=crl), ca, crl))
    threads = _threads_per_rank(comm) if comm is not None and size > 1 else None
    if size == 1:
        say(f"gateway: {_plural(train.n_devices, 'device')} (each gets its keys and certificate "
            "when first sampled)")
        transports = [_Local(_make_gateway(cfg, train, model, range(0, train.n_devices), *p))
                      for p in pki]
    elif rank == 0:
        say(f"ranks 1..{size - 1}: gateways generating their blocks of devices")
        transports = [_MPI(comm, rank_timeout), _MPI(comm, rank_timeout)]
    else:
        for p in pki:
            gw = _make_gateway(cfg, train, model, mine, *p, threads=threads)
            if _gateway_loop(comm, gw, control, mine):
                break  # rank 0 stopped the job
        return None
    control.stop_gateways = _stopper(transports)
    control.release()  # the setup is done: a stop asked for meanwhile happens now

    # (a) centralized baseline on the pooled raw data (of a sample of devices, if asked)
    from ..models import train_centralized
    if cfg.task == "csv":  # the population is known once the file is read
        sample = _baseline_sample(cfg, census.n_devices)
    # One process, or a CSV, holds every device: the sample is cut here. Rank 0 of a synthetic
    # city generated only the sample; of a CSV without the baseline and attacks, no device.
    base = train.subset(sample) if sample is not None and train.n_devices and (
        size == 1 or cfg.task == "csv") else train
    rows = base.X.shape[0]
    hint = ("" if cfg.baseline_devices or rows < 5_000_000 else
            "; --baseline-devices N trains it on a sample of N devices")
    runs = cfg.run_set()
    if "centralized" in runs:
        say(f"centralized baseline: {cfg.centralized_epochs} epochs on {rows:,} pooled records "
            f"of {_plural(base.n_devices, 'device')}{hint}")
    phases["setup"] = time.perf_counter() - started - phases["read"]
    t0, wall0 = time.process_time(), time.perf_counter()
    if "centralized" not in runs:  # --runs without it: nothing pooled is trained
        central, central_cpu = None, 0.0
    elif shared and "central" in shared:  # a sweep's later run: the same baseline
        central, central_cpu = shared["central"]
    elif keeper is not None and keeper.central() is not None:  # a resumed run's
        central, central_cpu = keeper.central()
    else:
        with np.errstate(over="ignore", invalid="ignore"):  # divergence reported, not warned
            central = train_centralized(model, init, base.X, base.y,
                                        epochs=cfg.centralized_epochs,
                                        batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed)
        central_cpu = time.process_time() - t0
    if keeper is not None and keeper.central() is None:
        control.hold()  # (a signal meanwhile stops the run once the checkpoint is written)
        keeper.central_done(central, central_cpu)
        control.release()
    phases["centralized"] = time.perf_counter() - wall0
    baseline_records = rows
    # The attacks read a CSV's devices again (a synthetic city's they regenerate by id).
    csv_data = (train, test) if cfg.task == "csv" else None
    del base, train  # the pooled data is not needed past here
    if central is not None:
        say(f"centralized baseline: done in {central_cpu:.1f} s CPU")
    # (b) FL without DP, (c) FL with DP; a run not asked for ends its gateways' loop at once
    if "fl" not in runs:
        plain = _not_run(agg_plain, init)
    elif shared and "plain" in shared:
        plain = shared["plain"]
        say("FL: the sweep's first run's (its settings are the same)")
    else:
        plain = _federated(cfg.for_run("fl", census.n_devices), dp=False,
                           transport=transports[0], aggregator=agg_plain,
                           model=model, test=test, init=init, progress=progress,
                           population=census.n_devices, records=census.n_records,
                           keeper=keeper, control=control)
    transports[0].finish()
    if shared is not None:
        shared.setdefault("central", (central, central_cpu))
        shared.setdefault("plain", plain)
    if "fl_dp" in runs:
        dp = _federated(cfg.for_run("fl_dp", census.n_devices), dp=True,
                        transport=transports[1], aggregator=agg_dp, model=model,
                        test=test, init=init, progress=progress, population=census.n_devices,
                        records=census.n_records, keeper=keeper, control=control)
    else:
        dp = _not_run(agg_dp, init)
    transports[1].finish()

    wall0 = time.perf_counter()
    from .risk import csv_records_risk, records_risk, release_risk
    if cfg.task == "csv":
        # The file's own records, on the columns the user names (None without any)
        qi = [c.strip() for c in cfg.quasi_identifiers.split(",") if c.strip()]
        if qi:
            say(f"linkage and unicity of {cfg.data}'s records on {', '.join(qi)}")
        records = csv_records_risk(cfg.data, quasi_identifiers=qi,
                                   device_column=cfg.device_column or None, target=cfg.target,
                                   seed=cfg.seed) if qi else None
    else:
        records = records_risk(task=cfg.task, devices=cfg.devices, n_districts=cfg.districts,
                               seed=cfg.seed, treatment=cfg.treatment or None,
                               field_epsilon=cfg.field_epsilon)
        if records is not None:
            records["computed_on"] = (f"one record of each of "
                                      f"{_plural(records['devices'], 'device')} of "
                                      f"the simulated city's {cfg.task} task (privcity.data)")
    risk = {"traces": None, "records": records}
    if cfg.risk_people and cfg.task != "csv":
        # A synthetic mobility population of the simulated city, not the task's records: a CSV
        # holds no traces, so no trace figure is printed that could pass for its data's.
        risk["traces"] = release_risk(people=cfg.risk_people, cell_m=cfg.release_cell_m,
                                      time_s=cfg.release_time_s, seed=cfg.seed)
        risk["traces"]["computed_on"] = (f"synthetic GPS traces of {cfg.risk_people:,} simulated "
                                         "people of the city (privcity.data.gps), not the "
                                         "task's records")
    # The models this run released (those --runs asked for) and each run's rounds
    released = {name: p for name, p, ran in (
        ("centralized", central, central is not None),
        ("fl", plain["params"], not plain.get("skipped")),
        ("fl_dp", dp["params"], not dp.get("skipped"))) if ran}
    rounds_run = {"centralized": 0, "fl": len(plain["rounds"]), "fl_dp": len(dp["rounds"])}
    phases["risk"] = time.perf_counter() - wall0
    results = _report(cfg, model, census, baseline_records, test, central, central_cpu, plain,
                      dp, size, time.perf_counter() - started, released)
    results["risk"] = risk
    results["phases"] = _phases(phases, plain, dp)
    results["warnings"] = advice
    if target_rule:
        results["target_rule"] = target_rule
    if keeper is not None:
        results["checkpoint"] = keeper.summary()
    # The trainings are saved before anything else runs on them: an attack, the report or a
    # model file that fails must not take the run's results with it.
    _write_metrics(cfg.out, results)
    if cfg.attacks != "none":
        from .attacks import breach_risk, run_attacks, run_audit
        z, c = results["privacy"]["noise_multiplier"], cfg.clip  # (z None: FL + DP not run)
        results["attacks"] = run_attacks(
            cfg, level=cfg.attacks, model=model, first=plain["first"] or dp["first"],
            first_run="fl" if plain["first"] else "fl_dp",
            population=census.n_devices, params=released, rounds_run=rounds_run,
            baseline=sample, noise_std=None if z is None else z * c, clip=c, csv=csv_data,
            say=say,
            share_std=(results["privacy"]["ddg"]["sigma_local_model_units"]
                       if "ddg" in results["privacy"] else None))
        results["attacks"]["run_seconds"] = results["wall_seconds"]
        results["attacks"]["breach"] = breach_risk(results)
        t0 = time.perf_counter()
        results["audit"] = run_audit(cfg, level=cfg.attacks, rounds_run=rounds_run,
                                     noise_multiplier=z, say=say,
                                     ddg_strategy=(agg_dp.strategy if cfg.secure_aggregation
                                                   else None))
        results["audit"]["seconds"] = time.perf_counter() - t0
        results["attacks"]["seconds"] += results["audit"]["seconds"]
        results["phases"]["attacks"] = results["attacks"]["seconds"]
        say(f"attacks: done in {results['attacks']['seconds']:.1f} s")
    wall0 = time.perf_counter()
    if cfg.report:
        say("report: rendering the plots")
        from ..report import render_report
        results["report"] = render_report(results, cfg.out)
    results["models"] = _save_models(cfg, model, census, sample, test, released, rounds_run,
                                     results)
    results["phases"]["report_and_models"] = time.perf_counter() - wall0
    results["wall_seconds"] = time.perf_counter() - started
    control.hold()  # the results are written whole, and then the run is over
    _write_metrics(cfg.out, results)
    if keeper is not None:
        keeper.finish()
    control.holding, control.requested = 0, None
    return results


def _stopper(transports: list[Any]) -> Any:
    """What stops the gateway ranks of an interrupted run: one "stop" message, unless their
    loops have all ended (the federated runs are over, nothing listens any more)."""
    def stop() -> None:
        if not all(getattr(t, "finished", False) for t in transports):
            transports[0].stop()
            for t in transports:
                t.finished = True
    return stop


def _phases(phases: dict[str, float], plain: dict[str, Any],
            dp: dict[str, Any]) -> dict[str, float]:
    """Wall seconds of each phase of a run, in order: read (data), setup (model, keys, the
    aggregators), centralized, fl and fl_dp (each with its evaluation and accounting, given
    apart as well), risk (the records' and traces' re-identification), then attacks and
    report_and_models once they are done."""
    return {"read": phases["read"], "setup": phases["setup"],
            "centralized": phases["centralized"], "fl": plain["wall_seconds"],
            "fl_dp": dp["wall_seconds"],
            "evaluation": plain.get("evaluation_seconds", 0.0) + dp.get("evaluation_seconds", 0.0),
            "provisioning": sum(r["provision_seconds"] for run in (plain, dp)
                                for r in run["rounds"]),
            "accounting": sum(r["accounting_seconds"] for r in dp["rounds"])
            + dp.get("epsilon_seconds", 0.0),
            "risk": phases["risk"]}


def _write_metrics(out: str, results: dict[str, Any]) -> None:
    """out/metrics.json, replaced whole (a crash or a full disk mid-write leaves the previous
    one; CheckpointError names the file and the cause)."""
    os.makedirs(out, exist_ok=True)
    text = json.dumps(results, indent=1).encode()
    write_atomic(os.path.join(out, "metrics.json"), lambda f: f.write(text))


#: Training records named in each released model's file at most (a seeded sample of members)
MEMBER_IDS_MAX = 100_000


def _save_models(cfg: SimConfig, model: Any, census: _Census, sample: np.ndarray | None,
                 test: Any, params: dict[str, np.ndarray], rounds: dict[str, int],
                 results: dict[str, Any]) -> dict[str, str]:
    """OUT/models/{centralized,fl,fl_dp}.npz (privcity.models.load): each released model with
    the ids of the held-out records and of a seeded sample of its training records."""
    from ..models import record_ids, save
    from .attacks import took_part
    folder = os.path.join(cfg.out, "models")
    os.makedirs(folder, exist_ok=True)
    # Positions 0..N-1 decide sampling (fl.rounds); the files name devices by their ids.
    pool = np.arange(census.n_devices) if sample is None else np.asarray(sample)
    counts = census.counts[pool]
    per = max(1.0, float(counts.mean())) if counts.size else 1.0
    rng = np.random.default_rng([cfg.seed, 0x6D6F64656C])  # "model": a stream of its own
    n = min(pool.size, max(1, int(MEMBER_IDS_MAX // per)))
    pick = np.sort(rng.choice(pool.size, size=n, replace=False)) if pool.size else pool
    if cfg.task == "csv":
        heldout = np.arange(test.X.shape[0], dtype=np.int64)  # rows of the test set
        where = (f"the rows of {cfg.data} (privcity.data.load_csv with target {cfg.target!r}, "
                 f"seed {cfg.seed}): member ids are (device, row within the device) of the "
                 "training rows, held-out ids "
                 + (f"the usable rows of the test file {cfg.test_data}, in file order"
                    if cfg.test_data else "rows of the test split"))
    else:
        heldout = record_ids(test.offsets, test.device_ids)
        where = (f"the synthetic city (privcity.sim.datasets.city with this run's config for "
                 f"member devices; privcity.data.make_test_set({cfg.task!r}, n_devices="
                 f"{TEST_DEVICES}, samples_per_device="
                 f"{min(cfg.samples_per_device, TEST_SAMPLES_MAX)}, seed={cfg.seed}, "
                 f"n_districts={cfg.districts}) for the held-out records): ids are (device, row "
                 "within the device)")
    out = {}
    for name, p in params.items():
        devs, cnt = pool[pick], counts[pick]
        if name != "centralized":
            seen = took_part(cfg, name, devs, rounds[name], census.n_devices)
            devs, cnt = devs[seen], cnt[seen]
        keep = cnt > 0
        members = record_ids(np.concatenate([[0], np.cumsum(cnt[keep])]).astype(np.int64),
                             census.device_ids[devs[keep]])
        summary = results[name]
        meta = {"run": name, "task": cfg.task, "seed": cfg.seed, "metric": results["metric"],
                "score": summary["score"], "records": where,
                "members": f"a seeded sample of {members.shape[0]:,} training records of "
                           f"devices that took part ({len(devs):,} devices)",
                "epsilon": results["privacy"]["epsilon"] if name == "fl_dp" else None,
                "delta": cfg.delta if name == "fl_dp" else None}
        path = os.path.join(folder, f"{name}.npz")
        save(path, model, p, member_ids=members, heldout_ids=heldout, meta=meta)
        out[name] = path
    return out


def _not_run(aggregator: Aggregator, init: np.ndarray) -> dict[str, Any]:
    """What _federated returns for a run --runs left out: no rounds, marked skipped."""
    return {"params": init, "rounds": [], "stopped": "not run (--runs)", "first": None,
            "strategy": aggregator.strategy.describe(), "wall_seconds": 0.0, "skipped": True}


def _report(cfg: SimConfig, model: Any, census: _Census, baseline_records: int, test: Any,
            central: np.ndarray | None, central_cpu: float, plain: dict[str, Any],
            dp: dict[str, Any], ranks: int, wall: float,
            released: dict[str, np.ndarray]) -> dict[str, Any]:
    def run_summary(run: dict[str, Any]) -> dict[str, Any]:
        rounds = run["rounds"]
        train_s = [x for r in rounds for x in r["train_cpu_seconds"]]
        priv_s = [x for r in rounds for x in r["privacy_seconds"]]
        sent = [r["bytes_sent"] for r in rounds]
        t_mean = float(np.mean(train_s)) if train_s else 0.0
        p_mean = float(np.mean(priv_s)) if priv_s else 0.0
        return {
            "score": rounds[-1]["score"] if rounds else None,
            "metrics": rounds[-1]["metrics"] if rounds else {},
            "rounds_run": len(rounds),
            "stopped": run["stopped"],
            "wall_seconds": run["wall_seconds"],
            # of which provisioning first-time devices (once in a device's life, not per round)
            "provision_seconds": float(sum(r["provision_seconds"] for r in rounds)),
            "device_rounds_per_second": (len(train_s) / run["wall_seconds"]
                                         if run["wall_seconds"] > 0 else 0.0),
            "bytes_total": int(sum(sent)),
            "bytes_per_round_mean": float(np.mean(sent)) if sent else 0.0,
            "device_rounds": len(train_s),
            "device_train_cpu_seconds_mean": t_mean,
            "device_privacy_seconds": _percentiles(priv_s),
            # None where no device took part (no round trained anyone: nothing to compare)
            "device_overhead_percent": 100.0 * p_mean / t_mean if t_mean > 0 else None,
            "aggregation_seconds_mean": float(np.mean([r["aggregation_seconds"]
                                                       for r in rounds])) if rounds else 0.0,
            "refused": int(sum(r["refused"] for r in rounds)),
            "refusals": dict(sorted(sum((Counter(r["refusals"]) for r in rounds),
                                        Counter()).items())),
            "strategy": run["strategy"],
            "skipped": bool(run.get("skipped")),
        }

    def strip(run: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for r in run["rounds"]:
            r = dict(r)
            r["device_privacy_seconds"] = _percentiles(r.pop("privacy_seconds"))
            t = r.pop("train_cpu_seconds")
            r["device_train_cpu_seconds_mean"] = float(np.mean(t)) if t else 0.0
            out.append(r)
        return out

    metric = "accuracy" if model.task_type == "classification" else "r2"
    fl_sum, dp_sum = run_summary(plain), run_summary(dp)
    acc = dp["strategy"]
    return {
        "config": cfg.to_dict(),
        "ranks": ranks,
        "wall_seconds": wall,
        "task_type": model.task_type,
        "metric": metric,
        "devices": census.n_devices,
        "records": census.n_records,
        "baseline_records": int(baseline_records),
        "test_records": int(test.X.shape[0]),
        "data_notes": list(census.notes),
        "n_params": int(model.n_params),
        "centralized": _central_summary(model, central, test, central_cpu),
        "fl": fl_sum,
        "fl_dp": dp_sum,
        "privacy": _privacy(cfg, dp, acc, census),
        **({"secure_aggregation": secure_summary(cfg, census.n_devices)}
           if cfg.secure_aggregation else {}),
        "bandwidth": {"raw_upload_bytes": _raw_upload_bytes(census),
                      "fl_bytes_total": fl_sum["bytes_total"],
                      "fl_dp_bytes_total": dp_sum["bytes_total"],
                      "compression": _compression_summary(cfg, int(model.n_params), census)},
        "rounds": {"fl": strip(plain), "fl_dp": strip(dp)},
        "final_params_sha256": {name: hashlib.sha256(p.tobytes()).hexdigest()
                                for name, p in released.items()},
    }


#: Whom each kind of epsilon holds against (docs/threat-model.md defines the parties).
USERS = "users of the released model"
SERVERS = "the aggregator, the gateways and users of the released model"


def _privacy(cfg: SimConfig, dp: dict[str, Any], strategy: dict[str, Any],
             census: _Census) -> dict[str, Any]:
    """metrics.json's privacy section: each epsilon with the parties it holds against and
    those it does not, and the seeded noise that voids them all for whoever knows the seed."""
    rounds = dp["rounds"]
    local = _local_dp(cfg)
    if dp.get("skipped"):  # --runs without fl_dp: no DP, no epsilon to print
        return {"epsilon": None, "delta": cfg.delta, "epsilon_budget": cfg.epsilon,
                "noise_multiplier": None, "sample_rate": cfg.sample_rate,
                "mechanism": "none (FL + DP not run)",
                "guarantees": [], "noise": "no DP run", **local}
    eps = rounds[-1]["epsilon"] if rounds else 0.0
    out: dict[str, Any] = {
        **local, "per": "device (one device's records added or removed)",
        "epsilon": eps, "delta": cfg.delta, "epsilon_budget": cfg.epsilon,
        "noise_multiplier": strategy["noise_multiplier"], "sample_rate": cfg.sample_rate,
        "noise": f"seeded SecureRNG (--seed {cfg.seed}): a reproducible simulation, so no "
                 "epsilon holds against anyone who knows the seed"}
    if "ddg" in strategy:
        servers = rounds[-1].get("epsilon_servers") if rounds else None
        out.update(mechanism="distributed", epsilon_servers=servers, ddg=strategy["ddg"],
                   block_below_floor_chance=ddg_floor_miss(
                       cfg, census.n_devices, census.counts > 0, strategy["block_floor"]))
        assumes = ("the devices whose noise is counted are honest, the servers follow the "
                   "protocol (a forged block sum would hold fewer shares than charged: the "
                   "servers' epsilon still holds), and the city CA and the devices' enrolment "
                   "are out of the servers' hands (in this simulation the aggregator holds the "
                   "CA and the gateways relay enrolment)")
        out["guarantees"] = [
            {"epsilon": eps, "holds_against": USERS, "relation": "add or remove a device",
             "sampling": "amplified (they do not see who took part)", "assumes": assumes,
             "does_not_hold_against": "the aggregator and the gateways, who see who took part "
                                      "(their epsilon is the next one)"},
            {"epsilon": servers, "holds_against": SERVERS,
             "relation": "a device's update replaced by zeros (they see who took part)",
             "sampling": "not amplified", "assumes": assumes,
             "budget": "none of its own (the run's budget is on the users' epsilon)"}]
        out["trust"] = (f"distributed DP: every device adds its own noise before secure "
                        f"aggregation; epsilon {_eps(eps)} against {USERS}, {_eps(servers)} "
                        "against the aggregator and the gateways for what a device sent (they "
                        "see who took part and each block's noisy sum: composed over the "
                        f"{strategy['servers_most_rounds_taken_part']} rounds a device was "
                        "sampled in at most, each sum holding at least "
                        f"{strategy['block_floor']} devices' noise shares, with no amplification "
                        "by sampling; it grows with the rounds and shrinks with larger blocks); "
                        "assumes " + assumes)
    else:
        out.update(mechanism="central")
        out["guarantees"] = [{"epsilon": eps, "holds_against": USERS,
                              "does_not_hold_against": "the aggregator, which adds the noise "
                              "and sees each device's update"}]
        out["trust"] = (f"central DP: epsilon {_eps(eps)} holds against {USERS} only; the "
                        "aggregator adds the noise and sees every device's update")
    return out


def _local_dp(cfg: SimConfig) -> dict[str, Any]:
    """metrics.json's privacy.local_dp: the devices' on-device noise of their records' fields
    (epsilon per record, the fields, what set it), when there is any."""
    local = cfg.local_dp()
    if local is None:
        return {}
    eps, noised = local
    source = ("--field-epsilon" if cfg.field_epsilon else
              "the default of --treatment's laplace fields: set it with --field-epsilon")
    return {"local_dp": {"epsilon": eps, "per": "record", "fields": list(noised),
                         "source": source}}


def _eps(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _central_summary(model: Any, params: np.ndarray | None, test: Any,
                     cpu: float) -> dict[str, Any]:
    if params is None:  # --runs left it out
        return {"score": None, "metrics": {}, "cpu_seconds": 0.0, "diverged": False,
                "skipped": True}
    if not np.isfinite(params).all():  # SGD diverged (e.g. a learning rate too high)
        return {"score": float("nan"), "metrics": {}, "cpu_seconds": cpu, "diverged": True}
    metrics = model.evaluate(params, test.X, test.y)  # (score is one of them: one pass)
    return {"score": float(metrics["r2" if model.task_type == "regression" else "accuracy"]),
            "metrics": {k: float(v) for k, v in metrics.items()},
            "cpu_seconds": cpu, "diverged": False}


def summary_table(results: dict[str, Any]) -> str:
    """The run's results as a text table (what ``privcity simulate`` prints)."""
    m = results["metric"]
    fl, fd, bw, pr = results["fl"], results["fl_dp"], results["bandwidth"], results["privacy"]
    ph = results.get("phases") or {}
    warned = results.get("warnings") or []

    def blown(value: float | None) -> bool:  # predictions orders of magnitude off, or none
        return value is not None and (not math.isfinite(value) or m == "r2" and value < -100)

    # FL + DP blown up where FL is not, or with the noise warned of: the noise, not --lr
    noise = any(w.startswith("FL + DP:") for w in warned) or (
        fl["score"] is not None and not blown(fl["score"]))

    def score(value: float | None, dp: bool = False) -> str:
        if value is None:
            return "-"
        cause = ("DP noise, not --lr: see the warning" if dp and noise and warned else
                 "DP noise: FL without it did not" if dp and noise else "lower --lr")
        if not math.isfinite(value):
            return f"diverged ({cause})"
        if blown(value):
            return f"diverged, r2 {value:.3g} ({cause})"
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.3g}"

    def idle(run: dict[str, Any]) -> bool:  # ran, but no device ever took part
        return not run.get("skipped") and run["device_rounds"] == 0

    def ms(run: dict[str, Any], text: str) -> str:
        return "-" if idle(run) else text

    local = pr.get("local_dp")

    rows = [
        ("", "centralized", "FL", "FL + DP"),
        (f"test {m}", score(results["centralized"]["score"]), score(fl["score"]),
         score(fd["score"], dp=True)),
        ("epsilon (delta)", "-", "-", "-" if pr["epsilon"] is None else
         f"{pr['epsilon']:.3f} ({pr['delta']:g}) / device"),
        *([("epsilon vs servers", "-", "-", _eps(pr["epsilon_servers"]) + " / device")]
          if pr.get("mechanism") == "distributed" else []),
        *([("local epsilon", *[f"{local['epsilon']:.3f} / record"] * 3)] if local else []),
        ("rounds run", "-", str(fl["rounds_run"]), str(fd["rounds_run"])),
        ("bytes sent", f"{bw['raw_upload_bytes']:,} (raw, sealed)",
         *(f"{r['bytes_total']:,}" + (" (no device took part)" if idle(r) else "")
           for r in (fl, fd))),
        ("bytes / device / round", f"{_per_device(bw['raw_upload_bytes'], results['devices'])}"
         " (raw, once)", _per_device(fl["bytes_total"], fl["device_rounds"]),
         _per_device(fd["bytes_total"], fd["device_rounds"])),
        *([("wall time", f"{ph.get('centralized', 0.0):.1f} s", f"{ph['fl']:.1f} s",
            f"{ph['fl_dp']:.1f} s")] if ph else []),
        ("device CPU / round", "-", *(ms(r, f"{r['device_train_cpu_seconds_mean'] * 1e3:.3f} ms")
                                      for r in (fl, fd))),
        ("clip + secagg p50 / p99" if results["config"].get("secure_aggregation")
         else "clip + seal p50 / p99", "-",
         *(ms(r, f"{r['device_privacy_seconds']['p50'] * 1e3:.3f} / "
                 f"{r['device_privacy_seconds']['p99'] * 1e3:.3f} ms") for r in (fl, fd))),
        ("privacy overhead", "-", *("-" if r["device_overhead_percent"] is None else
                                    ms(r, f"{r['device_overhead_percent']:.0f} %")
                                    for r in (fl, fd))),
        ("aggregation / round", "-", f"{fl['aggregation_seconds_mean'] * 1e3:.2f} ms",
         f"{fd['aggregation_seconds_mean'] * 1e3:.2f} ms"),
    ]
    rows += _attack_rows(results)
    for col, name in enumerate(("centralized", "fl", "fl_dp"), start=1):
        if results[name].get("skipped"):  # --runs left it out: say so once, no figures
            rows = [r[:col] + (("not run" if i == 1 else "-"),) + r[col + 1:] if i else r
                    for i, r in enumerate(rows)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"warning: {w}" for w in warned]
    notes += [f"privacy: {pr['trust']}" if "trust" in pr else "",
             f"DP noise: {pr['noise']}; z = {pr['noise_multiplier']:g}, q = {pr['sample_rate']:g}"
             if pr["epsilon"] is not None else ""]
    if local:
        notes.append(f"local DP: each device noises {', '.join(local['fields'])} of every record "
                     f"before anything leaves it (Laplace), epsilon {local['epsilon']:g} per "
                     f"record in all ({local['source']}); it holds against everyone, the "
                     "servers included, and composes with the model's epsilon per device")
    for name, run in (("FL", fl), ("FL + DP", fd)):
        if idle(run):
            notes.append(f"{name}: no device took part in any of its {run['rounds_run']} "
                         f"round(s) (q = {pr['sample_rate']:g} x "
                         f"{_plural(results['devices'], 'device')}"
                         f" = {pr['sample_rate'] * results['devices']:.2g} expected a round), so "
                         "nothing was sent and no device time measured: its model is the "
                         "initial one (raise --sample-rate or --devices)")
    if results.get("target_rule"):
        notes.append(f"target: {results['target_rule']}")
    comp = bw.get("compression") or {}
    if comp.get("payload_bytes"):
        how = (f"{comp['bits']} bits a coordinate after a shared random rotation, unbiased"
               if comp["kind"] == "quantize" else
               f"the largest {comp['k']:,} coordinates, the rest kept for later rounds (error "
               "feedback)")
        notes.append(f"updates compressed ({comp['compress']}: {how}): "
                     f"{comp['payload_bytes']:,} B a payload against "
                     f"{comp['dense_payload_bytes']:,} B as float32"
                     + ("; under secure aggregation FL sums them in a ring of "
                        f"{comp['fl_secure'].get('ring_bits', '?')} bits and FL + DP sends "
                        "distributed DP's own integers" if "fl_secure" in comp else ""))
    cpr = results["config"].get("clients_per_round")
    if cpr and not fl.get("skipped"):
        notes.append(f"sampling: FL {cpr:,} devices a round (--clients-per-round); FL + DP "
                     f"Poisson at q = {results['config']['sample_rate']:g}, which its epsilon "
                     "assumes")
    if ph:
        notes.append(_phase_line(ph, results["wall_seconds"]))
    notes = [n for n in notes if n]
    rec = (results.get("risk") or {}).get("records")
    if rec and "unicity" in rec:  # a CSV's own records (sim.risk.csv_records_risk)
        lr, un = rec["linkage"], rec["unicity"]
        same = rec.get("released_equals_raw")
        notes.append(
            f"records of {rec['computed_on']}: unique on {', '.join(rec['known'])}: "
            f"{un['raw']['records']:.3f} of records"
            + (f", {un['raw']['devices']:.3f} of devices" if un['raw'].get('devices')
               is not None else "")
            + f"; linkage of one record per device by them: re-identified "
            f"{lr['raw']['reidentified']:.3f}, right guess {lr['raw']['guess']:.3f}"
            + (" (devices release them unchanged)" if same else
               f" -> as released {lr['released']['reidentified']:.3f}"))
    elif rec:
        lr = rec["linkage"]
        notes.append(
            f"linkage of the baseline's records to {_plural(rec['devices'], 'device')} by "
            f"{', '.join(rec['known'])}, raw -> as released: re-identified "
            f"{lr['raw']['reidentified']:.3f} -> {lr['released']['reidentified']:.3f}, "
            f"right guess {lr['raw']['guess']:.3f} -> {lr['released']['guess']:.3f}")
    risk = (results.get("risk") or {}).get("traces")
    if risk:
        u, lk = risk["unicity_4_points"], risk["linkage_home_work"]
        notes.append(
            f"re-identification of {risk['people']:,} simulated people's synthetic GPS traces "
            "(the city's mobility, not the task's records), raw -> released "
            f"({risk['release_cell_m']:g} m cells, {risk['release_time_s']} s bins, "
            f"pseudonyms): unicity from 4 points {u['raw']:.3f} -> {u['released']:.3f}; "
            f"home/work linkage {lk['raw']['reidentified']:.3f} -> "
            f"{lk['released']['reidentified']:.3f}")
    if results["config"].get("secure_aggregation"):
        lost = sum(x.get("lost", 0) for run in ("fl", "fl_dp") for x in results["rounds"][run])
        k = results["config"]["secagg_neighbors"]
        lay = results.get("secure_aggregation") or {}
        notes.append(
            f"secure aggregation (SecAgg+ in {lay.get('blocks', '?')} block(s) of about "
            f"{lay.get('sampled_per_block', 0):.0f} sampled devices, {k or 'auto'} neighbours, "
            "signed with the devices' "
            "certificates): the servers saw only block sums (FL: exact; FL + DP: noisy); bytes "
            "sent include the key exchange"
            + (f"; {lost} device update(s) lost in block rounds that could not complete "
               "(a group below its threshold, the survivors cut apart, fewer than the DP "
               "floor, or one device's bad secret)" if lost else ""))
        chance = lay.get("failure_chance_per_block_round", 0.0)
        if chance > SECURE_FAILURE_WARN:
            notes.append(failure_warning(chance, results["config"]["dropout"]))
        miss = pr.get("block_below_floor_chance", 0.0)
        if miss > DDG_FLOOR_FAILURE:
            notes.append(
                f"warning: a block falls below its floor of noise shares in {miss:.1%} of the "
                "rounds (blocks this small), and whether a round is then dropped can turn on "
                "one device, which the users' epsilon does not count: take more devices per "
                "block (--devices, --sample-rate, --secagg-cohort)")
        dropped = sum(1 for x in results["rounds"]["fl_dp"] if x.get("dropped"))
        if dropped:
            notes.append(f"FL + DP: {dropped} round(s) dropped, their sums holding fewer noise "
                         f"shares than the {pr['ddg']['n_min']} the noise was calibrated for")
    if fd["stopped"]:
        notes.append(f"FL + DP stopped after {fd['rounds_run']} round(s): {fd['stopped']}")
    refused = [(name, results[run]) for name, run in (("FL", "fl"), ("FL + DP", "fl_dp"))
               if results[run].get("refused")]
    if refused:
        notes.append("refused and left out (one vote per sampled device and round): " + "; ".join(
            f"{name} {s['refused']} ({', '.join(f'{k} {v}' for k, v in s['refusals'].items())})"
            for name, s in refused))
    diverged = sum(x.get("diverged", 0) for run in ("fl", "fl_dp")
                   for x in results["rounds"][run])
    if diverged:
        notes.append(f"{diverged} device update(s) diverged (non-finite) and were left out; "
                     "lower --lr")
    notes += _attack_notes(results)
    notes += [f"data: {n}" for n in results.get("data_notes", ())]
    lines += notes
    head = (f"privcity simulate: {_plural(results['devices'], 'device')}, task "
            f"{results['config']['task']}"
            f" ({results['task_type']}), {results['ranks']} rank(s), "
            f"{results['wall_seconds']:.1f} s")
    return head + "\n" + "\n".join(lines)


def _per_device(total: int, count: int) -> str:
    """Bytes per device (or device-round), in B, KB or MB; "-" for none."""
    if count <= 0:
        return "-"
    x = total / count
    for unit, size in (("MB", 1e6), ("KB", 1e3)):
        if x >= size:
            return f"{x / size:.1f} {unit}"
    return f"{x:.0f} B"


def _phase_line(ph: dict[str, float], total: float) -> str:
    """"time: read 2.1 s, setup 0.3 s, ..." over the phases metrics.json lists."""
    names = {"read": "read", "setup": "setup", "centralized": "centralized", "fl": "FL",
             "fl_dp": "FL + DP", "evaluation": "evaluation (in the runs)",
             "accounting": "accounting (in the runs)",
             "provisioning": "provisioning new devices' keys and certificates (in the runs)",
             "risk": "re-identification risk",
             "attacks": "attacks", "report_and_models": "report and model files"}
    parts = [f"{names.get(k, k)} {v:.2f} s" for k, v in ph.items() if v >= 0.005]
    return f"time (wall, rank 0): {', '.join(parts)}; total {total:.1f} s"


def _ci(value: float | None, ci: list[Any], percent: bool = False) -> str:
    if value is None:
        return "-"
    if percent:
        return f"{value:.0%} [{ci[0]:.0%}, {ci[1]:.0%}]"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _attack_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The table's rows of the attack suite and the audit (none when they did not run)."""
    rows: list[tuple[str, str, str, str]] = []
    att = results.get("attacks")
    if att and att.get("breach"):
        b = att["breach"]
        rows.append(("breach risk [95% CI]", "1.000 (raw records)" if b["centralized"]["ci"]
                     == [1.0, 1.0] else _ci(b["centralized"]["risk"], b["centralized"]["ci"]),
                     *(_ci(b[k]["risk"], b[k]["ci"]) + ("" if b[k].get("above_chance", True)
                                                        else " ~chance")
                       for k in ("fl", "fl_dp"))))
        red = b["leakage_reduction"]
        rows.append(("leakage reduction", "-", *(
            "-" if red[k]["value"] is None else _ci(red[k]["value"], red[k]["ci"], True)
            for k in ("fl", "fl_dp"))))
        cells = []
        for name in ("centralized", "fl", "fl_dp"):
            best = _best_mia(att["membership"], name)
            cells.append("-" if best is None else f"{best[0]:.3f} {best[1]}")
        rows.append(("membership AUC (best)", *cells))
    audit = results.get("audit")
    if audit:
        rows.append(("empirical epsilon >=", "-", *(
            f"{audit[k]['bound']:.3f}" if "bound" in audit.get(k, {}) else "-"
            for k in ("fl", "fl_dp"))))
    return rows


def _best_mia(membership: dict[str, Any], name: str) -> tuple[float, str] | None:
    best = None
    for unit in ("record", "device"):
        for attack, r in membership.get(unit, {}).get(name, {}).items():
            if isinstance(r, dict) and "auc" in r and (best is None or r["auc"] > best[0]):
                best = (r["auc"], f"{attack}/{unit}")
    return best


def _attack_notes(results: dict[str, Any]) -> list[str]:
    att = results.get("attacks")
    if not att:
        return ["attacks: not run (--attacks none)"] if "attacks" in results.get("config", {}) \
            else []
    share = att["seconds"] / max(att["run_seconds"], 1e-9)
    notes = [f"attacks ({att['level']}, {att['seconds']:.1f} s, {share:.0%} of the run's time): "
             "breach risk is the best attack's success against what each design exposes "
             "(centralized: the pooled raw records and the model; FL: the updates, or block "
             "sums under secure aggregation, and the model; FL + DP: what its servers see and "
             "the model), its interval widened for the attacks it is the best of (~chance: the "
             "interval holds 0); leakage reduction its relative drop from centralized"]
    views = att["updates"].get("views", {})
    if views:
        notes.append(f"update inversion, records recovered within {att['tolerance']:.0%} "
                     "(relative L2): " + "; ".join(
                         f"{v['label']}: {_ci(v['recovered'], v['ci'])} of {v['n']:,}"
                         for v in views.values()))
    if att["updates"].get("optimize_note"):
        notes.append(f"update inversion: {att['updates']['optimize_note']}")
    if att["membership"].get("device_note"):
        notes.append(f"membership inference: {att['membership']['device_note']}")
    audit = results.get("audit")
    if audit and audit.get("fl_dp_note"):
        notes.append(f"epsilon audit: {audit['fl_dp_note']}")
    if audit and "fl_dp" in audit and "fl" in audit:
        fd = audit["fl_dp"]
        verdict = ("EXCEEDS the accountant's epsilon: the mechanism or the accountant is broken"
                   if fd["exceeded"] else "within the accountant's epsilon")
        ceiling = fd.get("ceiling")
        notes.append(f"epsilon audit (Steinke et al. 2023, one run, {audit['confidence']:.0%} "
                     f"confidence): FL + DP >= {fd['bound']:.3f} against the accountant's "
                     f"{fd['epsilon']:.3f} ({fd.get('canaries', audit['canaries']):,} canary "
                     "devices" + (f"; no bound above {ceiling:.3f} could show" if ceiling
                                  else "") + f"), {verdict}; FL without DP >= "
                     f"{audit['fl']['bound']:.3f} ({audit['canaries']:,} canaries)")
    return notes
