"""Shared bench machinery: every benchmark records its median under a (group, role) key, and
the session ends with a table of privcity / anchor ratios (throughput, higher is better).

A benchmark whose call handles ``per`` units (samples, bytes) records ``per=``: its median is
then compared per unit, so an anchor timed on fewer units (a slow library) still compares
fairly, and the summary prints the rate in units per second."""
from __future__ import annotations

import collections
import statistics
import time
from types import SimpleNamespace

import pytest

# group -> role -> (median seconds per unit, target ratio or None, units per call)
_RESULTS: dict[str, dict[str, tuple[float, float | None, int]]] = collections.defaultdict(dict)


@pytest.fixture
def record():
    """record(benchmark, group, role, target=None, per=1) after benchmark(...) has run.

    role "anchor" is the reference; any other role is compared against it. per: units (e.g.
    samples) handled by one call of the benchmarked function; medians are divided by it.
    """

    def _record(benchmark, group: str, role: str, target: float | None = None, per: int | None = 1) -> None:
        if benchmark is None or benchmark.stats is None:  # --benchmark-disable: nothing was timed
            return
        per = per or 1
        _RESULTS[group][role] = (benchmark.stats.stats.median / per, target, per)

    return _record


@pytest.fixture
def interleaved():
    """interleaved(benchmark, fn, anchor, rounds, setup=None, warmup_rounds=1) -> (fn's result,
    the anchor's stand-in for record()).

    Times fn with benchmark.pedantic, and runs the anchor once before each round (in the
    round's untimed setup), timing it with perf_counter: the two alternate, so a machine whose
    speed drifts over seconds (a shared host) shifts both the same way, where two benchmarks run
    one after the other can land in different phases. The anchor's median and times go into
    benchmark.extra_info. The anchor also runs before warm-up rounds; those times are dropped.
    setup, if given, runs after the anchor, right before fn.
    """

    def _run(benchmark, fn, anchor, rounds: int, setup=None, warmup_rounds: int = 1):
        times: list[float] = []

        def before() -> None:
            t0 = time.perf_counter()
            anchor()
            times.append(time.perf_counter() - t0)
            if setup is not None:
                setup()

        result = benchmark.pedantic(fn, setup=before, rounds=rounds, iterations=1,
                                    warmup_rounds=warmup_rounds)
        if benchmark.stats is None:  # --benchmark-disable: nothing was timed
            return result, None
        kept = times[warmup_rounds:]
        median = statistics.median(kept)
        benchmark.extra_info["anchor_median_s"] = median
        benchmark.extra_info["anchor_times_s"] = kept
        stand_in = SimpleNamespace(stats=SimpleNamespace(stats=SimpleNamespace(median=median)))
        return result, stand_in

    return _run


# Free-form result lines (latency percentiles and the like), printed after the ratio table.
_LINES: list[str] = []


@pytest.fixture
def report_line():
    """report_line(text): print text in the session summary."""
    return _LINES.append


def device_identities(n: int) -> SimpleNamespace:
    """A city CA (valid since yesterday), its CRL and an identity for each of devices 0..n-1:
    (Ed25519 signing key, certificate DER naming dev-<id>), as secure aggregation takes them."""
    import datetime as dt

    from cryptography.hazmat.primitives import serialization

    from privcity.crypto.pki import CertificateAuthority, IdentityKeys

    now = dt.datetime.now(dt.timezone.utc)
    ca = CertificateAuthority.create("bench-ca", not_before=now - dt.timedelta(days=1))
    identities = {}
    for c in range(n):
        keys = IdentityKeys.generate()
        cert = ca.issue(f"dev-{c}", "device", identity_key=keys.identity_public_key,
                        agreement_key=keys.agreement_public_key,
                        not_before=now - dt.timedelta(hours=1))
        identities[c] = (keys.signing_key, cert.public_bytes(serialization.Encoding.DER))
    crl = ca.publish_crl(at=now - dt.timedelta(hours=1))
    return SimpleNamespace(identities=identities, ca=ca, crl=crl)


def pytest_terminal_summary(terminalreporter):
    if _LINES:
        terminalreporter.section("privcity: other results")
        for line in _LINES:
            terminalreporter.write_line(line)
    if not _RESULTS:
        return
    tr = terminalreporter
    tr.section("privcity / anchor (median time of anchor / median time of privcity)")
    for group in sorted(_RESULTS):
        roles = _RESULTS[group]
        if "anchor" not in roles:
            continue
        anchor, _, anchor_per = roles["anchor"]
        for role, (median, target, per) in sorted(roles.items()):
            if role == "anchor":
                continue
            ratio = anchor / median
            verdict = ""
            if target is not None:
                verdict = f"  target >= {target:g}x: {'met' if ratio >= target else 'MISSED'}"
            rates = ""
            if per != 1 or anchor_per != 1:
                rates = f"  ({1 / median / 1e6:.3g} M/s vs anchor {1 / anchor / 1e6:.3g} M/s)"
            shown = f"{ratio:6.2f}" if ratio >= 0.1 else f"{ratio:6.2g}"  # 0.0037, not 0.00
            tr.write_line(f"{group:<34} {role:<22} {shown}x{verdict}{rates}")
