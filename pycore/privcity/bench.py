"""``privcity bench``: each hot kernel beside its anchor, on every ISA path this CPU has.

For people who run performance regression benchmarks: every kernel is timed against a
well-known implementation of the same work in the same process (OpenSSL through
``cryptography`` for AES-GCM and AES-CTR, numpy for the samplers), samples of the two
alternating, so that load on the machine slows both alike and the ratio stays meaningful. Each
ISA path runs in a child process capped with ``PRIVCITY_ISA`` (the dispatch reads it at
import). ``--json FILE`` saves the table with the CPU it ran on; ``--compare FILE`` flags each
kernel whose ratio fell by more than the noise measured in both runs (exit code 1).

The pytest-benchmark suite in the repository's bench/ stays the development tool; this command
is what an installed package offers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["KERNELS", "paths", "run_path", "compare", "main"]

KiB, MiB = 1024, 1024 * 1024


@dataclass(frozen=True)
class Kernel:
    """A kernel beside its anchor: ``make(quick)`` returns (privcity's call, the anchor's call
    or None, the work of one call in units of ``unit``)."""

    name: str
    what: str  # what one call does
    anchor: str  # the anchor's name, "" when there is none
    unit: str  # "GB/s" (bytes) or "M/s" (samples)
    make: Callable[[bool], tuple[Callable[[], Any], Callable[[], Any] | None, float]]


def _aead(size: int) -> Callable[[bool], tuple[Callable[[], Any], Callable[[], Any], float]]:
    def make(quick: bool) -> tuple[Callable[[], Any], Callable[[], Any], float]:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        from .crypto.aead import AES256GCM
        key, nonce, data = os.urandom(32), os.urandom(12), os.urandom(size)
        ours, theirs = AES256GCM(key), AESGCM(key)
        return (lambda: ours.encrypt(nonce, data, None),
                lambda: theirs.encrypt(nonce, data, None), float(size))
    return make


def _aead_batch(quick: bool) -> tuple[Callable[[], Any], Callable[[], Any], float]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from .crypto.aead import AES256GCM
    n = 1_000 if quick else 10_000
    key = os.urandom(32)
    nonces = np.frombuffer(os.urandom(12 * n), np.uint8).reshape(n, 12)
    rows = np.frombuffer(os.urandom(64 * n), np.uint8).reshape(n, 64)
    ours, theirs = AES256GCM(key), AESGCM(key)
    nonce_list, row_list = [bytes(x) for x in nonces], [bytes(x) for x in rows]

    def loop() -> None:
        for nc, m in zip(nonce_list, row_list):
            theirs.encrypt(nc, m, None)
    return lambda: ours.encrypt_many(nonces, rows), loop, float(64 * n)


def _keystream(quick: bool) -> tuple[Callable[[], Any], Callable[[], Any], float]:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from .noise import SecureRNG
    size = 256 * KiB if quick else MiB
    rng = SecureRNG(b"privcity bench")
    ctr = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16))).encryptor()
    zeros, out = bytes(size), bytearray(size + 15)
    return lambda: rng.random_bytes(size), lambda: ctr.update_into(zeros, out), float(size)


def _sampler(kind: str) -> Callable[[bool], tuple[Callable[[], Any], Callable[[], Any], float]]:
    def make(quick: bool) -> tuple[Callable[[], Any], Callable[[], Any], float]:
        from .noise import SecureRNG
        n = 200_000 if quick else 2_000_000
        rng, gen = SecureRNG(b"privcity bench"), np.random.default_rng(0)
        if kind == "gaussian":
            return (lambda: rng.gaussian(n), lambda: gen.standard_normal(n, dtype=np.float32),
                    float(n))
        return lambda: rng.laplace(n, 1.0), lambda: gen.laplace(0.0, 1.0, n), float(n)
    return make


def _discrete(sigma: float) -> Callable[[bool], tuple[Callable[[], Any], None, float]]:
    def make(quick: bool) -> tuple[Callable[[], Any], None, float]:
        from .noise import SecureRNG
        n = 100_000 if quick else 1_000_000
        rng = SecureRNG(b"privcity bench")
        return lambda: rng.discrete_gaussian(n, sigma), None, float(n)
    return make


KERNELS: tuple[Kernel, ...] = (
    Kernel("aead_1k", "AES-256-GCM encrypt, 1 KiB", "cryptography AESGCM", "GB/s", _aead(KiB)),
    Kernel("aead_16k", "AES-256-GCM encrypt, 16 KiB", "cryptography AESGCM", "GB/s",
           _aead(16 * KiB)),
    Kernel("aead_1m", "AES-256-GCM encrypt, 1 MiB", "cryptography AESGCM", "GB/s", _aead(MiB)),
    Kernel("aead_batch", "AES-256-GCM encrypt_many, 64 B messages", "loop over AESGCM.encrypt",
           "GB/s", _aead_batch),
    Kernel("csprng", "CSPRNG keystream (AES-256-CTR)", "cryptography AES-256-CTR", "GB/s",
           _keystream),
    Kernel("gaussian_f32", "Gaussian float32 samples", "numpy standard_normal float32", "M/s",
           _sampler("gaussian")),
    Kernel("laplace", "Laplace float64 samples", "numpy laplace", "M/s", _sampler("laplace")),
    Kernel("dgauss_1", "exact discrete Gaussian, sigma 1", "", "M/s", _discrete(1.0)),
    Kernel("dgauss_100", "exact discrete Gaussian, sigma 100", "", "M/s", _discrete(100.0)),
    Kernel("dgauss_1e4", "exact discrete Gaussian, sigma 1e4", "", "M/s", _discrete(1e4)),
)
_BY_NAME = {k.name: k for k in KERNELS}


def paths() -> list[str]:
    """The ISA paths this CPU can run, best first, as PRIVCITY_ISA names (always ``none``)."""
    from . import _core
    from ._dispatch import _SIMD_NAMES, aes_implementations
    native = [p for p in aes_implementations() if p != "cryptography"]
    # Vector units without AES instructions (NEON without the Crypto Extensions): that path is
    # named by its vector level, an alias of the first AES rung.
    simd = _core.simd_isa_supported()
    if not native and simd != _core.SIMD_PORTABLE:
        native = [_SIMD_NAMES[simd]]
    return native + ["none"]


def _calls_per_sample(fn: Callable[[], Any], target: float) -> int:
    """How many calls make one sample last about ``target`` seconds (one warm-up call)."""
    t = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t, 1e-7)
    return max(1, int(target / one))


def _timed(fn: Callable[[], Any], calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def measure(kernel: Kernel, *, quick: bool, repeats: int) -> dict[str, Any]:
    """One kernel on the path this process runs: medians (seconds a call) of ``repeats``
    alternating samples of privcity and its anchor, throughputs, the median ratio of the pairs
    (anchor time / privcity time: above 1, privcity is faster) and its spread (the interquartile
    range of the pair ratios over their median: the noise of this run)."""
    ours, anchor, work = kernel.make(quick)
    target = 0.01 if quick else 0.05
    n_ours = _calls_per_sample(ours, target)
    n_anchor = _calls_per_sample(anchor, target) if anchor is not None else 0
    mine, theirs, ratios = [], [], []
    for _ in range(repeats):
        mine.append(_timed(ours, n_ours))
        if anchor is not None:
            theirs.append(_timed(anchor, n_anchor))
            ratios.append(theirs[-1] / mine[-1])
    scale = 1e9 if kernel.unit == "GB/s" else 1e6
    result: dict[str, Any] = {
        "kernel": kernel.name, "what": kernel.what, "unit": kernel.unit,
        "privcity": work / statistics.median(mine) / scale, "anchor_name": kernel.anchor,
        "anchor": None, "ratio": None, "spread": _spread(mine),
    }
    if ratios:
        result.update(anchor=work / statistics.median(theirs) / scale,
                      ratio=statistics.median(ratios), spread=_spread(ratios))
    return result


def _spread(values: list[float]) -> float:
    if len(values) < 4:
        return 0.0
    q = statistics.quantiles(values, n=4)
    return (q[2] - q[0]) / statistics.median(values)


def run_path(path: str, names: list[str], *, quick: bool, repeats: int) -> list[dict[str, Any]]:
    """The kernels ``names`` on ISA path ``path``, in a child process capped to it."""
    env = dict(os.environ, PRIVCITY_ISA=path)
    cmd = [sys.executable, "-m", "privcity.bench", "--child", "--kernels", ",".join(names),
           "--repeats", str(repeats)] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the {path} path failed: {proc.stderr.strip()[-2000:]}")
    rows = json.loads(proc.stdout)
    for row in rows:
        row["path"] = path
    return rows


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("model name", "Model")):
                    return line.split(":", 1)[1].strip()
    except OSError:  # no /proc (macOS, Windows): the platform's own name below
        return platform.processor() or platform.machine()
    return platform.processor() or platform.machine()


def compare(old: dict[str, Any], new: dict[str, Any],
            floor: float = 0.10) -> list[dict[str, Any]]:
    """Kernels of ``new`` slower than in ``old`` beyond the noise: a ratio to the anchor (a
    throughput where there is no anchor) below the old one by more than max(``floor``, twice
    the two runs' spreads added). Each flagged entry gives both values and the tolerance."""
    before = {(r["kernel"], r["path"]): r for r in old.get("results", [])}
    flagged = []
    for row in new.get("results", []):
        was = before.get((row["kernel"], row["path"]))
        if was is None:
            continue
        key = "ratio" if row.get("ratio") is not None and was.get("ratio") is not None \
            else "privcity"
        tolerance = max(floor, 2.0 * (float(was.get("spread", 0.0)) + float(row["spread"])))
        if row[key] < was[key] * (1.0 - tolerance):
            flagged.append({"kernel": row["kernel"], "path": row["path"], "measure": key,
                            "before": was[key], "now": row[key], "tolerance": tolerance})
    return flagged


def _table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'kernel':13s} {'path':8s} {'privcity':>12s} {'anchor':>12s} {'ratio':>7s} "
             f"{'noise':>6s}  anchor"]
    for r in results:
        anchor = f"{r['anchor']:8.2f} {r['unit']}" if r["anchor"] is not None else "-"
        ratio = f"{r['ratio']:6.2f}x" if r["ratio"] is not None else "-"
        lines.append(f"{r['kernel']:13s} {r['path']:8s} {r['privcity']:7.2f} {r['unit']:>4s} "
                     f"{anchor:>12s} {ratio:>7s} {100 * r['spread']:5.1f}%  "
                     f"{r['anchor_name'] or '(none: throughput)'}")
    return "\n".join(lines)


def _names(text: str | None) -> list[str]:
    if not text:
        return [k.name for k in KERNELS]
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise SystemExit(f"privcity bench: unknown kernel(s) {unknown}; known: "
                         f"{', '.join(_BY_NAME)}")
    return names


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench", help="each kernel beside its anchor on every ISA path of this CPU",
        description="Times each hot kernel (AES-256-GCM, the CSPRNG keystream, the samplers) "
                    "beside an anchor doing the same work in the same process (OpenSSL through "
                    "cryptography, numpy), alternating, on every ISA path this CPU has, and "
                    "prints the ratios. --json FILE saves them; --compare FILE flags "
                    "regressions beyond the measured noise (exit code 1).")
    _options(p)
    p.set_defaults(func=_run)


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="FILE", help="save the results (with the CPU) as JSON")
    p.add_argument("--compare", metavar="FILE",
                   help="a --json file of an earlier run: flag kernels slower beyond the noise")
    p.add_argument("--kernels", help=f"comma-separated subset of: {', '.join(_BY_NAME)}")
    p.add_argument("--paths", help="comma-separated ISA paths (default: every one this CPU "
                                   "has, e.g. " + ",".join(paths()) + ")")
    p.add_argument("--repeats", type=int, default=9, help="alternating samples per kernel "
                                                           "(default 9)")
    p.add_argument("--quick", action="store_true", help="small sizes and short samples (a "
                                                         "smoke run of a few seconds a path)")


def _run(args: argparse.Namespace) -> int:
    names = _names(args.kernels)
    if args.repeats < 1:
        raise SystemExit("privcity bench: --repeats must be >= 1")
    have = paths()
    chosen = [p.strip() for p in args.paths.split(",")] if args.paths else have
    lacking = [p for p in chosen if p not in have]
    if lacking:
        raise SystemExit(f"privcity bench: this CPU cannot run {lacking}; it has {have}")
    old = None
    if args.compare:
        with open(args.compare, encoding="utf-8") as f:
            old = json.load(f)
    from ._dispatch import backend_info
    results: list[dict[str, Any]] = []
    for path in chosen:
        print(f"path {path} ...", file=sys.stderr, flush=True)
        results += run_path(path, names, quick=args.quick, repeats=args.repeats)
    report = {"cpu": _cpu_name(), "machine": platform.machine(), "backends": backend_info(),
              "python": platform.python_version(), "quick": args.quick, "results": results}
    print(f"CPU: {report['cpu']} ({report['machine']}); ratio = anchor time / privcity time "
          "(above 1: privcity faster); noise = interquartile range of the samples")
    print(_table(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
        print(f"saved: {args.json}")
    if old is None:
        return 0
    if old.get("cpu") != report["cpu"]:
        print(f"note: {args.compare} ran on {old.get('cpu')!r}, this run on {report['cpu']!r}")
    flagged = compare(old, report)
    for f in flagged:
        print(f"REGRESSION {f['kernel']} on {f['path']}: {f['measure']} {f['before']:.3g} -> "
              f"{f['now']:.3g} (beyond the noise tolerance {100 * f['tolerance']:.0f}%)")
    if not flagged:
        print(f"no regression against {args.compare}")
    return 1 if flagged else 0


def _child(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="privcity.bench")
    p.add_argument("--child", action="store_true")
    _options(p)
    args = p.parse_args(argv)
    rows = [measure(_BY_NAME[n], quick=args.quick, repeats=args.repeats)
            for n in _names(args.kernels)]
    json.dump(rows, sys.stdout)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--child" in argv:
        return _child(argv)
    p = argparse.ArgumentParser(prog="privcity bench")
    _options(p)
    return _run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
