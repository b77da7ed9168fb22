"""The ``privcity`` command.

    privcity simulate [flags]  a smart city of devices training privately (see --help)
    privcity sweep --epsilon 0.5,1,2,4,8 [flags]   the privacy-utility curve, one report
    privcity info [--json]     version, CPU features and the implementation of each primitive
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from typing import Any, NoReturn

from . import __version__, aes_implementations, backend_info, cpu_features

RANK_TIMEOUT = 120.0  # seconds, --rank-timeout's default


def _info(args: argparse.Namespace) -> int:
    report = {
        "version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_features": cpu_features(),
        "backends": backend_info(),
        "aes256gcm_available": aes_implementations(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"privcity {report['version']} (Python {report['python']}, {report['machine']})")
    feats = report["cpu_features"]
    print("CPU features: " + " ".join(f"{k}{'+' if v else '-'}" for k, v in feats.items()))
    print("Backends:")
    for prim, impl in report["backends"].items():
        print(f"  {prim:<10} {impl}")
    print("AES-256-GCM implementations available: " + ", ".join(report["aes256gcm_available"]))
    return 0


_FLAG_HELP = {
    "task": "air_quality (classification), traffic or energy (regression), or csv (--data)",
    "devices": "devices in the city (for csv without --device-column: devices to split rows to)",
    "samples_per_device": "local records per device (synthetic tasks)",
    "districts": "districts of the synthetic city",
    "partition": "district (each district its own regime) or dirichlet (label skew)",
    "alpha": "Dirichlet concentration for --partition dirichlet (small: skewed)",
    "rounds": "federated rounds",
    "eval_every": "evaluate the models on the test set every k rounds and after the last (0: "
                  "every rounds / 50 rounds, or less often when the test set is large beside "
                  "the rows a round trains, so that evaluating stays about a tenth of the run)",
    "sample_rate": "q: probability that a device takes part in a round (Poisson sampling)",
    "clients_per_round": "FL without DP: exactly this many devices a round, drawn uniformly "
                         "without replacement (0: Poisson sampling at --sample-rate); FL + DP "
                         "keeps Poisson sampling at --sample-rate, which its epsilon assumes",
    "dropout": "probability that a sampled device does not report (with --secure-aggregation "
               "each group needs about two thirds of its devices: the run warns when block "
               "rounds would fail more than 1 in 1,000 times, and refuses where most would)",
    "local_epochs": "local SGD epochs per round on each device",
    "batch_size": "local SGD batch size",
    "lr": "local SGD learning rate; 0: by model (0.5 softmax, 0.3 classifying MLP, 0.05 "
          "regression)",
    "server_lr": "server learning rate of FedAvg",
    "model": "auto (linear for regression, softmax for classification), linear, softmax, mlp",
    "hidden": "hidden units of the MLP",
    "aggregator": "FL without DP: mean, median, trimmed_mean or krum",
    "epsilon": "privacy budget of the DP run, against users of the released model (central DP "
               "does not hold against the aggregator; see --secure-aggregation)",
    "delta": "delta of the DP run",
    "clip": "L2 clip norm of device updates (initial clip with --adaptive-clip)",
    "noise_multiplier": "z, noise std / clip; 0 picks the smallest z whose rounds fit epsilon",
    "field_epsilon": "epsilon per record of the on-device noise of sensitive fields (their "
                     "schema flag; task energy has some); 0: none",
    "treatment": "what devices do to each field before anything leaves them, e.g. "
                 "'district=pseudonymize,hour=generalize,household_size=laplace' (keep, drop, "
                 "laplace, generalize, pseudonymize; default by the schema's flags)",
    "adaptive_clip": "adapt the clip norm to the median update norm (Andrew et al. 2021)",
    "secure_aggregation": "sum the devices' updates under authenticated secure aggregation "
                          "(SecAgg+ in fixed blocks of devices, signed with their certificates): "
                          "the servers see only block sums, exact for FL; for FL + DP each "
                          "device adds its own noise first (distributed DP), and the table "
                          "adds the epsilon that holds against the aggregator and gateways",
    "secagg_cohort": "expected devices per secure-aggregation round: the city is cut into "
                     "round(devices x sample rate / cohort) blocks, at least one; larger blocks "
                     "hold more noise shares per sum (a smaller epsilon against the servers) "
                     "but cost each device more",
    "secagg_neighbors": "neighbours of each device in its secure-aggregation group; 0: what "
                        "keeps a round's failure chance below 1e-6 at the dropout, within "
                        "16 to 64",
    "centralized_epochs": "epochs of the centralized baseline on the pooled raw data",
    "baseline_devices": "train the centralized baseline on the pooled records of this many "
                        "devices, a seeded uniform sample (0: every device; a large city's "
                        "pooled data takes memory and time on rank 0)",
    "risk_people": "simulated people whose synthetic GPS traces measure the re-identification "
                   "risk of what devices release (synthetic tasks only: a CSV holds no traces; "
                   "0: skip)",
    "release_cell_m": "grid cell (metres) of the locations devices release",
    "release_time_s": "time bin (seconds) of the timestamps devices release",
    "seed": "seed of the city, the sampling, the training and the (simulated) DP noise",
    "out": "output directory for metrics.json, report.html and models/",
    "data": "CSV file of real data (with --task csv)",
    "target": "CSV target column",
    "target_type": "the CSV's task: auto, regression or classification. auto: a target whose "
                   "values are all numbers is regression, unless they are integers with at "
                   "most 20 distinct values (classification); text labels are classification; "
                   "a numeric target with a few text cells (at most 1%%, e.g. 'high') stays "
                   "numeric and their rows are left out. The run says what it chose and why, "
                   "and warns of an implausible class count",
    "device_column": "CSV column naming each row's device",
    "test_fraction": "share of the CSV's rows held out as the test set (a seeded hash of each "
                     "row picks them)",
    "test_data": "CSV file of test rows, instead of --test-fraction: every usable row of "
                 "--data trains, and these are encoded as the training rows are (a row of a "
                 "class unseen in training is left out, noted); it needs the target and the "
                 "feature columns, not the device column",
    "quasi_identifiers": "CSV columns an attacker may know of a person (e.g. 'zip,age'), on "
                         "which the linkage and unicity of the file's own records are measured "
                         "(none: no record figure for a CSV)",
    "attacks": "the attack suite on what each party sees: none, fast (a few seconds) or full "
               "(more devices and shadow models)",
    "audit_strict": "exit with status 3 if the empirical epsilon audit's lower bound exceeds "
                    "the accountant's epsilon (a broken mechanism or accountant)",
    "report": "write OUT/report.html with its plots (on by default)",
    "compress": "compressed updates: none; q<b> (e.g. q8, q4): unbiased stochastic "
                "quantization to b bits per coordinate after a shared random rotation; "
                "topk:<fraction> (e.g. topk:0.01): the largest coordinates, with error feedback "
                "(not with --secure-aggregation). With --secure-aggregation, q<b> makes FL's "
                "devices clip to --clip and sum integers in a ring of about b + 4 + "
                "log2(records) bits (32-bit words where that fits: half the bytes of the 64-bit "
                "fixed point); distributed DP keeps its own",
    "runs": "which trainings to run, comma-separated: centralized (pooled raw data), fl "
            "(FedAvg), fl_dp (FedAvg with DP); a run left out costs nothing and shows 'not run'",
}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line and where to read more, not the 24-line usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _guarded(command: str, run: Any, cfg: Any = None) -> tuple[int | None, Any]:
    """(None, run()) or, for what a user can fix, (exit status, None) after one line on
    stderr (naming the settings as the user gave them: ``cfg`` knows how)."""
    from .sim.config import user_message
    try:
        return None, run()
    except ValueError as exc:  # bad data, target, model for the task, output directory ...
        print(f"privcity {command}: {user_message(str(exc), cfg)}", file=sys.stderr)
        return 2, None
    except (OSError, EOFError) as exc:  # unreadable data: not gzip, truncated, permissions
        print(f"privcity {command}: cannot read the data: {exc}", file=sys.stderr)
        return 2, None
    except MemoryError as exc:  # e.g. a city too large for this machine
        print(f"privcity {command}: out of memory ({exc}); try fewer devices or samples per "
              "device, or more MPI ranks", file=sys.stderr)
        return 1, None


def _display(args: argparse.Namespace, command: str) -> None:
    """--quiet, --json, --overwrite and --rank-timeout from the TOML file too (a flag given
    wins)."""
    from .sim.config import display_options
    opts = display_options(args.config)
    for name, value in opts.items():
        if not hasattr(args, name):
            raise ValueError(f"{name!r} in {args.config}: privcity {command} has no "
                             f"--{name.replace('_', '-')}")
        setattr(args, name, value if getattr(args, name) is None else getattr(args, name) or value)


def _simulate(args: argparse.Namespace) -> int:
    from .sim import CheckpointError, load_config, mpi_world
    from .sim.config import user_message
    # dp-accounting logs through absl when it drops an RDP order it cannot evaluate; harmless
    # (the bound uses the other orders) and noisy in a progress display.
    logging.getLogger("absl").setLevel(logging.ERROR)
    out = args.resume
    try:
        comm = mpi_world()
        try:
            if args.resume:
                cfg = _resume_config(args, comm)
                if cfg is None:  # a gateway rank: rank 0 says why there is nothing to resume
                    return 0
            else:
                _display(args, "simulate")
                cfg = load_config(args.config, **{k: getattr(args, k) for k in _FLAG_HELP})
        except (ValueError, CheckpointError) as exc:
            print(f"privcity simulate: {user_message(str(exc))}", file=sys.stderr)
            return 2
        out = cfg.out
        return _simulate_run(args, cfg, comm)
    except KeyboardInterrupt as exc:  # (privcity.sim.Interrupted: SIGINT or SIGTERM)
        return _stopped(str(exc) or "interrupted", getattr(exc, "hint", "")
                        or _resume_hint(out), 130, getattr(exc, "abandon", False))


def _resume_config(args: argparse.Namespace, comm: Any) -> Any:
    """The settings of the run --resume OUT continues (every setting flag refused: they are
    the run's own), or None on a gateway rank when rank 0 refused."""
    from .sim import resume_config
    given = ["--config"] if args.config else []
    given += ["--" + k.replace("_", "-") for k in _FLAG_HELP if getattr(args, k) is not None]
    if args.overwrite:
        given.append("--overwrite")
    if given:
        raise ValueError(f"--resume takes every setting from {args.resume}'s checkpoint: "
                         f"leave out {', '.join(given)}")
    return resume_config(args.resume, comm)


def _resume_hint(out: str | None) -> str:
    if out and os.path.exists(os.path.join(out, "checkpoint.npz")):
        return f"continue with: privcity simulate --resume {out}"
    return "nothing was saved"


def _stopped(what: str, hint: str, code: int, abandon: bool) -> int:
    """One line on stderr for a run that stopped before its end; exit status ``code``. A run
    that left an MPI exchange half done (``abandon``) cannot finalize with its ranks: the
    process leaves at once (the launcher then ends the other ranks)."""
    print(f"privcity simulate: {what}; {hint}" if hint else f"privcity simulate: {what}",
          file=sys.stderr)
    if abandon:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _simulate_run(args: argparse.Namespace, cfg: Any, comm: Any) -> int:
    from .sim import CheckpointError, RankFailure, simulate, summary_table

    def run() -> Any:
        try:
            return simulate(cfg, comm=comm, progress=not args.quiet, resume=bool(args.resume),
                            overwrite=args.overwrite,
                            rank_timeout=args.rank_timeout or RANK_TIMEOUT)
        except RankFailure as exc:
            return _stopped(str(exc), exc.hint, 1, True)
        except CheckpointError as exc:
            return _stopped(str(exc), exc.hint and ("the previous checkpoint stands: " + exc.hint
                                                    if exc.kind == "write" else exc.hint),
                            1 if exc.kind == "write" else 2, False)

    code, results = _guarded("simulate", run, cfg)
    if code is not None:
        return code
    if isinstance(results, int):  # stopped early, the line printed
        return results
    if results is None:  # a gateway rank
        return 0
    if args.json:
        print(json.dumps({k: v for k, v in results.items() if k != "rounds"}, indent=1))
    else:
        print(summary_table(results))
        print(f"per-round results: {cfg.out}/metrics.json")
        if results.get("report"):
            print(f"report: {results['report']}")
    audit = (results.get("audit") or {}).get("fl_dp")
    if audit and audit["exceeded"]:
        print(f"privcity simulate: THE EPSILON AUDIT FAILED: the empirical lower bound "
              f"{audit['bound']:.3f} exceeds the accountant's epsilon {audit['epsilon']:.3f} "
              "at 95% confidence: the DP mechanism or its accountant is broken (or this is "
              "the 1 run in 20 a correct mechanism fails by chance)", file=sys.stderr)
        if cfg.audit_strict:
            return 3
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .sim import load_config, mpi_world
    from .sim.sweep import parse_epsilons, sweep, sweep_table
    logging.getLogger("absl").setLevel(logging.ERROR)
    from .sim.config import user_message
    overrides = {k: getattr(args, k) for k in _FLAG_HELP if k != "epsilon"}
    try:
        _display(args, "sweep")
        eps = parse_epsilons(args.epsilon)
        cfg = load_config(args.config, **overrides)
    except ValueError as exc:
        print(f"privcity sweep: {user_message(str(exc))}", file=sys.stderr)
        return 2
    try:
        code, runs = _guarded("sweep", lambda: sweep(cfg, eps, comm=mpi_world(),
                                                     progress=not args.quiet), cfg)
    except KeyboardInterrupt as exc:  # (privcity.sim.Interrupted: SIGINT or SIGTERM)
        return _stopped(str(exc) or "interrupted", "a sweep is not resumable: run it again",
                        130, getattr(exc, "abandon", False))
    if code is not None:
        return code
    if runs is None:  # a gateway rank
        return 0
    print(sweep_table(runs))
    print(f"each run: {cfg.out}/epsilon-E/metrics.json; the curve: {cfg.out}/sweep.json"
          + (f"; report: {runs[0]['sweep_report']}" if runs[0].get("sweep_report") else ""))
    exceeded = [r["config"]["epsilon"] for r in runs
                if ((r.get("audit") or {}).get("fl_dp") or {}).get("exceeded")]
    if exceeded:
        print(f"privcity sweep: THE EPSILON AUDIT FAILED at epsilon {exceeded}: the empirical "
              "lower bound exceeds the accountant's epsilon (each run's audit fails by chance "
              f"1 time in 20 at most, so {len(runs)} runs up to {len(runs)} times in 20)",
              file=sys.stderr)
        if cfg.audit_strict:
            return 3
    return 0


def _add_settings(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The simulation's settings as flags (defaults < --config TOML < flags)."""
    from .sim.config import SimConfig
    defaults = SimConfig()
    p.add_argument("--config", help="TOML file with any of the settings below (top level or "
                                    "a [simulate] table)")
    for name, text in _FLAG_HELP.items():
        if name in skip:
            continue
        default = getattr(defaults, name)
        flag = "--" + name.replace("_", "-")
        if default is True:  # --report / --no-report
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           help=f"{text}")
        elif isinstance(default, bool):
            p.add_argument(flag, action="store_true", default=None,
                           help=f"{text} (default off)")
        else:
            p.add_argument(flag, type=type(default), default=None, metavar=name.upper(),
                           help=f"{text} (default {default!r})")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="the privacy-utility curve: one simulation per epsilon, one report",
        description="Runs privcity simulate once per epsilon (--epsilon 0.5,1,2,4,8) on the same "
                    "city: the centralized and FL runs are trained once and shared, the FL + DP "
                    "run, its attacks and its audit are redone at each epsilon. Writes "
                    "OUT/epsilon-E/ per run, OUT/report.html (the curve) and OUT/sweep.json.")
    p.add_argument("--epsilon", default="0.5,1,2,4,8",
                   help="comma-separated privacy budgets (default 0.5,1,2,4,8)")
    _add_settings(p, skip=("epsilon",))
    p.set_defaults(func=_sweep, parser=p)


class _EpilogAsWritten(argparse.HelpFormatter):
    """Wraps the description as argparse does; prints the epilog (the table's definitions)
    with its own lines."""

    def add_text(self, text: str | None) -> None:
        if text and text.startswith("The results table"):
            self._add_item(lambda t: t + "\n", [text])
        else:
            super().add_text(text)


def _figures_help() -> str:
    from .sim.figures import figures_help
    return figures_help()


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate", help="simulate a smart city training privately (the main job)",
        description="Simulate a smart city whose devices train a model by federated learning, "
                    "with every update sealed (AES-256-GCM envelopes, device certificates from "
                    "a city CA) and differential privacy (DP-FedAvg, accountant). Reports the "
                    "utility of centralized, federated and federated+DP training, epsilon, "
                    "bandwidth, device CPU and latency, and aggregation time; attacks what "
                    "each party sees (update inversion, membership inference: breach risk and "
                    "leakage reduction), audits the epsilon empirically (canary devices), and "
                    "writes OUT/metrics.json, OUT/report.html and OUT/models/*.npz. One process by "
                    "default; under mpiexec -n P rank 0 aggregates and ranks 1..P-1 host the "
                    "devices (same results for every P). Every epsilon printed names whom it "
                    "holds against (docs/threat-model.md); the simulation's noise is seeded "
                    "(--seed), so none holds against anyone who knows the seed. Settings: "
                    "defaults < --config TOML < flags.",
        epilog=_figures_help(), formatter_class=_EpilogAsWritten)
    _add_settings(p)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--resume", metavar="OUT",
                   help="continue the run in OUT from its last checkpoint (written after every "
                        "round: each run's model and the server's log, from which the accountant "
                        "and the noise streams are replayed; the rounds so far are in "
                        "OUT/rounds.jsonl; no keys) to the results an uninterrupted run gives, on "
                        "any number of ranks; its settings are the checkpoint's")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run --out holds (without it such a directory is refused; "
                        "a lock file keeps two runs out of one directory)")
    p.add_argument("--rank-timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="under mpiexec: rank 0 stops the run, naming the rank, when a gateway "
                        "rank has not answered for this long (it died or hangs; the checkpoint "
                        "of the last round stands) (default 120)")
    p.set_defaults(func=_simulate, parser=p)


def _seconds(text: str) -> float:
    import math
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="privcity", description="privcity: privacy for smart-city IoT")
    parser.add_argument("--version", action="version", version=f"privcity {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_info = sub.add_parser("info", help="version, CPU features and backends")
    p_info.add_argument("--json", action="store_true", help="print a JSON object")
    p_info.set_defaults(func=_info)
    _add_simulate(sub)
    _add_sweep(sub)
    from .bench import add_parser as _add_bench
    _add_bench(sub)
    args, extra = parser.parse_known_args(argv)
    if extra:  # named by the command they were given to, whose --help lists its flags
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        args = parser.parse_args(["info"] + (argv or []))
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
