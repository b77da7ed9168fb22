"""Simulation settings: defaults, a TOML file and command-line flags, validated with messages
that name the field."""
from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["SimConfig", "display_options", "load_config", "user_message"]

TASKS = ("air_quality", "traffic", "energy", "csv")
MODELS = ("auto", "linear", "softmax", "mlp")
AGGREGATORS = ("mean", "median", "trimmed_mean", "krum")
PARTITIONS = ("district", "dirichlet")
ATTACKS = ("none", "fast", "full")
RUNS = ("centralized", "fl", "fl_dp")
TARGET_TYPES = ("auto", "regression", "classification")
#: Settings of the command line that are not simulation settings (how the result is shown, how
#: the run treats its --out and its ranks), with their type: a TOML file may set them too
#: (load_config leaves them to the caller: display_options).
DISPLAY_OPTIONS: dict[str, type] = {"quiet": bool, "json": bool, "overwrite": bool,
                                    "rank_timeout": float}


#: How often a secure-aggregation block round may be expected to fail before the run is
#: refused (most rounds would fail); above SECURE_FAILURE_WARN the run says so when it starts.
SECURE_FAILURE_LIMIT, SECURE_FAILURE_WARN = 0.5, 1e-3


@dataclass
class SimConfig:
    """Every setting of ``privcity simulate`` (the flag is the name with dashes)."""

    task: str = "air_quality"          # air_quality (classification), traffic, energy, csv
    devices: int = 2000                # devices in the city
    samples_per_device: int = 48       # local records per device (synthetic tasks)
    districts: int = 8
    partition: str = "district"        # district or dirichlet (non-IID label mix)
    alpha: float = 0.5                 # Dirichlet concentration
    rounds: int = 40
    eval_every: int = 0                # evaluate the test set every k rounds and the last; 0:
                                       # sim.runner.auto_eval_every (a small share of the run)
    sample_rate: float = 0.1           # q: Poisson sampling rate of devices per round
    clients_per_round: int = 0         # > 0: FL without DP takes exactly this many devices a
                                       # round (uniform without replacement); FL + DP keeps
                                       # Poisson sampling at sample_rate (its accountant's)
    dropout: float = 0.0               # probability a sampled device does not report
    local_epochs: int = 5
    batch_size: int = 16
    lr: float = 0.0                    # local SGD learning rate; 0: by model (see auto_lr)
    server_lr: float = 1.0
    model: str = "auto"                # auto: linear for regression, softmax for classification
    hidden: int = 32                   # hidden units of the MLP
    aggregator: str = "mean"           # FedAvg without DP: mean or a robust aggregator
    epsilon: float = 4.0               # privacy budget of the DP run
    delta: float = 1e-5
    clip: float = 1.0                  # L2 clip norm of device updates
    field_epsilon: float = 0.0         # > 0: devices noise their sensitive fields (per record)
    treatment: Any = ""                # per-field device treatment: "district=pseudonymize,..." 
    noise_multiplier: float = 0.0      # z; 0 = the smallest z whose `rounds` fit the budget
    adaptive_clip: bool = False
    secure_aggregation: bool = False   # devices' updates summed under secure aggregation
    secagg_cohort: int = 128           # expected devices per secure-aggregation round
    secagg_neighbors: int = 0          # SecAgg+ neighbours of each device; 0: by cohort, dropout
                                       # (fl.rounds.secure_neighbors: 16 to 64)
    centralized_epochs: int = 5
    baseline_devices: int = 0          # devices whose pooled records train the centralized
                                       # baseline: a seeded uniform sample; 0 = every device
    risk_people: int = 2000            # people whose GPS traces measure re-identification risk
    release_cell_m: float = 1000.0     # grid cell of the locations devices release (metres)
    release_time_s: int = 3600         # time bin of the timestamps devices release (seconds)
    seed: int = 0
    out: str = "privcity-out"
    data: str = ""                     # CSV file (task csv)
    target: str = ""                   # CSV target column
    target_type: str = "auto"          # CSV task: auto (from the target's values), regression
                                       # or classification
    device_column: str = ""            # CSV column naming the device of each row
    test_fraction: float = 0.2         # CSV rows held out for testing (a seeded hash per row)
    test_data: str = ""                # CSV file of test rows instead (every row of data trains)
    quasi_identifiers: str = ""        # CSV columns an attacker may know, comma-separated
    attacks: str = "fast"              # the attack suite: none, fast or full (sim/attacks.py)
    runs: str = "centralized,fl,fl_dp"  # which of the three trainings to run
    compress: str = "none"             # device updates: none, q<bits> (e.g. q8), topk:<fraction>
    audit_strict: bool = False         # exit non-zero if the audit's bound exceeds epsilon
    report: bool = True                # write OUT/report.html (and its PNGs)

    def secure_failure_chance(self) -> tuple[int, float]:
        """(expected devices of a block round, the chance such a round fails at this dropout:
        fl.rounds.secure_failure_chance)."""
        from ..fl.rounds import secure_failure_chance
        cohort = self.secagg_cohort if self.task == "csv" else \
            max(2, min(self.secagg_cohort, round(self.devices * self.sample_rate)))
        return cohort, secure_failure_chance(cohort, self.dropout, self.secagg_neighbors)

    def _check_secure_dropout(self, bad: Any) -> None:
        """Refuse a dropout at which most block rounds of secure aggregation would fail."""
        from ..fl.rounds import SECURE_MAX_NEIGHBORS
        if not 0 <= self.dropout < 1:
            return  # refused above
        cohort, chance = self.secure_failure_chance()
        if chance >= SECURE_FAILURE_LIMIT:
            k = self.secagg_neighbors or SECURE_MAX_NEIGHBORS
            raise bad("dropout", f"with secure aggregation a block round of {cohort} devices "
                                 f"would fail {chance:.1%} of the time at this dropout (each "
                                 "group needs about two thirds of its devices to survive, the "
                                 f"threshold that tolerates colluders; {k} neighbours at "
                                 "most): lower --dropout, or raise --secagg-neighbors")

    def local_dp(self) -> tuple[float, tuple[str, ...]] | None:
        """(epsilon per record, the fields whose Laplace noise shares it) of the devices'
        on-device noise (``field_epsilon``, or 1 where only ``treatment`` asks for laplace, as
        privcity.data.make_city takes it), or None where no field is noised. Raises ValueError
        for a treatment the task's schema refuses."""
        if self.task == "csv" or not (self.field_epsilon or self.treatment):
            return None
        from ..data.federated import _task_schema
        from ..data.preprocess import resolve_treatment
        from ..data.schema import Field, Schema
        schema = _task_schema(self.task, self.districts)
        # As preprocess_record releases a whole record: the target is treated by its flag too.
        release = Schema(tuple(schema.fields) + (Field("__privcity_no_target__", "numeric",
                                                       "public"),), "__privcity_no_target__")
        how = resolve_treatment(release, self.treatment or None)
        noised = tuple(name for name, h in how.items() if h == "laplace")
        return (float(self.field_epsilon or 1.0), noised) if noised else None

    def _check_inert(self, bad: Any) -> None:
        """Refuse a setting changed from its default that cannot apply to this run (it would
        change nothing while metrics.json records it as set)."""
        if self.field_epsilon > 0 and self.task != "csv":
            try:
                noised = self.local_dp()
            except ValueError as exc:
                raise bad("treatment", str(exc)) from None
            if noised is None:
                raise bad("field_epsilon", f"task {self.task} has no field the devices noise: its "
                                           "schema flags none as sensitive and --treatment "
                                           "names none as laplace, so this epsilon would change "
                                           "nothing (name a field: --treatment FIELD=laplace)")
        default = SimConfig()
        runs = self.run_set()

        def changed(name: str) -> bool:
            return getattr(self, name) != getattr(default, name)

        rules = [
            ("alpha", self.partition != "dirichlet",
             "is the Dirichlet concentration of --partition dirichlet"),
            ("hidden", self.model != "mlp", "sets the MLP's hidden units (--model mlp)"),
            ("centralized_epochs", "centralized" not in runs,
             "trains the centralized run, which --runs leaves out"),
            ("aggregator", "fl" not in runs, "aggregates FL without DP, which --runs leaves out"),
            ("noise_multiplier", "fl_dp" not in runs, "sets FL + DP's noise; --runs leaves it out"),
            ("adaptive_clip", "fl_dp" not in runs, "adapts FL + DP's clip; --runs leaves it out"),
            ("target_type", self.task != "csv", "sets a CSV's task (task csv); a synthetic task "
                                                "has its own"),
        ]
        rules += [(name, self.task == "csv", "shapes the synthetic city; a CSV's devices and "
                                             "rows come from the file")
                  for name in ("samples_per_device", "districts", "partition", "alpha",
                               "risk_people", "release_cell_m", "release_time_s")]
        for name, inert, why in rules:
            if name == "risk_people" and self.risk_people == 0:
                continue  # "none": what a CSV gets anyway
            if inert and changed(name):
                raise bad(name, f"{why}: it would change nothing in this run")

    def compression(self) -> Any:
        """The codec ``compress`` names (privcity.fl.compress.Compression), rotations seeded
        from ``seed``."""
        from ..fl.compress import parse_compression
        return parse_compression(self.compress, seed=self.seed)

    def _check_test_data(self, bad: Any) -> None:
        """A CSV test file (task csv), instead of the hashed split."""
        if not self.test_data:
            return
        if self.test_fraction != SimConfig.test_fraction:
            raise bad("test_fraction", "give test_fraction or test_data, not both: the test "
                                       "file holds the test rows")
        if os.path.isdir(self.test_data):
            raise bad("test_data", "is a directory, not a CSV file")
        if not os.path.isfile(self.test_data):
            raise bad("test_data", "no such file")

    def _check_compress(self, bad: Any) -> None:
        try:
            codec = self.compression()
        except ValueError as exc:
            raise bad("compress", str(exc)) from None
        if codec.kind == "topk" and self.secure_aggregation:
            raise bad("compress", "top-k sparsification needs each update: under secure "
                                  "aggregation every device's sparsity pattern differs, so a "
                                  "masked sum of sparse vectors is as long as a dense one (use "
                                  "q<bits>, or run without --secure-aggregation)")

    def run_set(self) -> frozenset[str]:
        """The trainings ``runs`` names (validated by :meth:`validate`)."""
        return frozenset(r.strip() for r in str(self.runs).split(",") if r.strip())

    def for_run(self, run: str, population: int) -> SimConfig:
        """The settings a federated run uses: FL with ``clients_per_round`` samples that many
        devices a round (:meth:`round_rate`); FL + DP ignores it (Poisson sampling at
        ``sample_rate``, which its accountant assumes)."""
        if not self.clients_per_round:
            return self
        if run == "fl_dp":
            return dataclasses.replace(self, clients_per_round=0)
        if self.clients_per_round > population:
            raise ValueError(f"config field 'clients_per_round': must be at most the "
                             f"{population:,} devices of the run (got {self.clients_per_round})")
        return self

    def round_rate(self, round_index: int, population: int) -> float:
        """The sampling rate of one round of a run's settings (:meth:`for_run`): sample_rate
        (Poisson), or the rate that takes exactly clients_per_round devices."""
        if not self.clients_per_round:
            return self.sample_rate
        from ..fl.rounds import fixed_cohort_rate
        return fixed_cohort_rate(self.seed, round_index, population, self.clients_per_round)

    def validate(self) -> SimConfig:
        """Raise ValueError naming the first bad field; returns self."""
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"config field '{name}': {why} (got {getattr(self, name)!r})")

        for name in ("devices", "samples_per_device", "districts", "rounds", "local_epochs",
                     "batch_size", "hidden", "centralized_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, "must be an integer >= 1")
        for name in ("seed", "risk_people", "baseline_devices", "eval_every",
                     "clients_per_round"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise bad(name, "must be an integer >= 0")
        if isinstance(self.release_time_s, bool) or not isinstance(self.release_time_s, int) \
                or self.release_time_s < 1:
            raise bad("release_time_s", "must be an integer >= 1")
        for name in ("out", "data", "target", "device_column", "quasi_identifiers",
                     "test_data"):
            if not isinstance(getattr(self, name), str):
                raise bad(name, "must be a string")
        for name, lo, hi, lo_open, hi_open in (("sample_rate", 0.0, 1.0, True, False),
                                               ("test_fraction", 0.0, 1.0, True, True),
                                               ("dropout", 0.0, 1.0, False, True),
                                               ("delta", 0.0, 1.0, True, True)):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) \
                    or (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi):
                raise bad(name, f"must be in {'(' if lo_open else '['}{lo}, {hi}"
                                f"{')' if hi_open else ']'}")
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) \
                or not math.isfinite(self.lr) or self.lr < 0:
            raise bad("lr", "must be a finite number > 0 (or 0: chosen by model)")
        for name in ("server_lr", "epsilon", "clip", "alpha", "release_cell_m"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) \
                    or v <= 0:
                raise bad(name, "must be a finite number > 0")
        if isinstance(self.treatment, str):
            pairs = [p.strip() for p in self.treatment.split(",") if p.strip()]
            parsed: dict[str, str] = {}
            for p in pairs:
                name, eq, how = p.partition("=")
                if not eq or not name.strip() or not how.strip():
                    raise bad("treatment", "must be field=treatment pairs separated by commas")
                parsed[name.strip()] = how.strip()
            self.treatment = parsed
        if not isinstance(self.treatment, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.treatment.items()):
            raise bad("treatment", "must map field names to treatments")
        if self.treatment and self.task == "csv":
            raise bad("treatment", "device treatments need a schema with sensitivity flags: "
                                   "synthetic tasks only")
        fe = self.field_epsilon
        if not isinstance(fe, (int, float)) or isinstance(fe, bool) or not math.isfinite(fe) \
                or fe < 0:
            raise bad("field_epsilon", "must be a finite number >= 0 (0: no field noise)")
        if fe > 0 and self.task == "csv":
            raise bad("field_epsilon", "field noise needs a schema with sensitivity flags: "
                                       "synthetic tasks only")
        z = self.noise_multiplier
        if not isinstance(z, (int, float)) or isinstance(z, bool) or not math.isfinite(z) or z < 0:
            raise bad("noise_multiplier", "must be a finite number >= 0 (0: calibrate)")
        for name, allowed in (("task", TASKS), ("model", MODELS), ("aggregator", AGGREGATORS),
                              ("partition", PARTITIONS), ("attacks", ATTACKS),
                              ("target_type", TARGET_TYPES)):
            if getattr(self, name) not in allowed:
                raise bad(name, f"must be one of {', '.join(allowed)}")
        if not isinstance(self.adaptive_clip, bool):
            raise bad("adaptive_clip", "must be true or false")
        for name in ("secure_aggregation", "audit_strict", "report"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "must be true or false")
        if not isinstance(self.runs, str) or not self.run_set() or \
                not self.run_set() <= set(RUNS):
            raise bad("runs", f"must name one or more of {', '.join(RUNS)}, comma-separated")
        if self.test_fraction != SimConfig.test_fraction and self.task != "csv":
            raise bad("test_fraction", "splits a CSV's rows (task csv); a synthetic task has "
                                       "its own held-out devices")
        if self.quasi_identifiers and self.task != "csv":
            raise bad("quasi_identifiers", "names CSV columns (task csv); a synthetic task's "
                                           "schema flags its own")
        if isinstance(self.secagg_neighbors, bool) or not isinstance(self.secagg_neighbors, int) \
                or self.secagg_neighbors < 0 or self.secagg_neighbors == 1:
            raise bad("secagg_neighbors", "must be an integer >= 2, or 0 (chosen from the "
                                          "cohort and the dropout)")
        if isinstance(self.secagg_cohort, bool) or not isinstance(self.secagg_cohort, int) \
                or self.secagg_cohort < 2:
            raise bad("secagg_cohort", "must be an integer >= 2")
        if self.secure_aggregation and self.aggregator != "mean":
            raise bad("aggregator", "secure aggregation reveals only the sum of the updates: "
                                    "the robust aggregators need each one (use mean)")
        if self.secure_aggregation and self.adaptive_clip:
            raise bad("adaptive_clip", "distributed DP (secure aggregation) keeps a fixed clip: "
                                       "adapting it needs the count of unclipped updates, which "
                                       "the servers would see without noise")
        if self.secure_aggregation and self.noise_multiplier:
            raise bad("noise_multiplier", "sets the aggregator's noise of central DP; under "
                                          "secure aggregation the devices' noise is calibrated "
                                          "from epsilon")
        if self.secure_aggregation and self.clients_per_round:
            raise bad("clients_per_round", "secure aggregation plans its blocks of devices from "
                                           "Poisson sampling: use --sample-rate")
        if self.secure_aggregation:
            self._check_secure_dropout(bad)
        self._check_compress(bad)
        self._check_inert(bad)
        if self.task == "csv":
            if not self.data:
                raise bad("data", "task csv needs a CSV file")
            if os.path.isdir(self.data):
                raise bad("data", "is a directory, not a CSV file")
            if not os.path.isfile(self.data):
                raise bad("data", "no such file")
            if not self.target:
                raise bad("target", "task csv needs the target column")
            if self.device_column and self.devices != SimConfig.devices:
                raise bad("devices", "the device column says which device each row belongs to: "
                                     "give devices or device_column, not both")
            self._check_test_data(bad)
        elif self.data or self.test_data:
            raise bad("data" if self.data else "test_data",
                      "a CSV file is only read with task = 'csv'")
        # (a CSV device column's population is known only once read: checked then)
        if (self.task != "csv" or not self.device_column) and self.clients_per_round > self.devices:
            raise bad("clients_per_round", f"must be at most devices ({self.devices}), or 0 for "
                                           "Poisson sampling at sample_rate")
        # (a CSV device column's population is known only once read; there a sample at least as
        # large as it means every device)
        if (self.task != "csv" or not self.device_column) and self.baseline_devices > self.devices:
            raise bad("baseline_devices", f"must be at most devices ({self.devices}), or 0 for all")
        if not self.out:
            raise bad("out", "must name an output directory")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _read_toml(path: str) -> dict[str, Any]:
    """The settings of a TOML file: its top-level keys and its [simulate] table, which may not
    both set one key."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"config file {path!r} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {path!r} is not valid TOML: {exc}") from None
    section = doc.get("simulate", {})
    if not isinstance(section, dict):
        raise ValueError(f"config file {path!r}: [simulate] must be a table")
    top = {k: v for k, v in doc.items() if k != "simulate"}  # other tables: unknown fields
    both = sorted(set(top) & set(section))
    if both:
        raise ValueError(f"config file {path!r} sets {', '.join(map(repr, both))} both at "
                         "the top level and in [simulate]")
    return {**top, **section}


def display_options(path: str | None) -> dict[str, Any]:
    """The DISPLAY_OPTIONS a TOML file sets: true or false, or (rank_timeout) a number of
    seconds > 0 (ValueError naming the key and file otherwise)."""
    if not path:
        return {}
    out = {}
    for key, value in _read_toml(path).items():
        name = key.replace("-", "_")
        kind = DISPLAY_OPTIONS.get(name)
        if kind is bool and not isinstance(value, bool):
            raise ValueError(f"{key!r} in {path}: must be true or false (got {value!r})")
        if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value) or value <= 0):
            raise ValueError(f"{key!r} in {path}: must be a number of seconds > 0 "
                             f"(got {value!r})")
        if kind is not None:
            out[name] = value
    return out


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def user_message(text: str, cfg: Any = None, *, flags: bool = True) -> str:
    """``text`` with each "config field 'name'" replaced by what the user typed: the key and
    the TOML file that set it (``cfg`` from load_config knows which), else (``flags``, the
    command line) the flag, ``--sample-rate``."""
    origins = getattr(cfg, "_origins", {}) if cfg is not None else {}
    return re.sub(r"config field '(\w+)'", lambda m: origins.get(m.group(1)) or (
        _flag(m.group(1)) if flags else m.group(0)), text)


def load_config(path: str | None = None, **overrides: Any) -> SimConfig:
    """Defaults, then the TOML file (top-level keys and a [simulate] table, which may not both
    set one key), then ``overrides`` (None values ignored); validated. Unknown keys and tables
    are refused by name; an error names a key the file set with the file ("'rounds' in
    city.toml: ..."), an override as "config field 'rounds'" (the command line turns that into
    its flag: :func:`user_message`). The file's DISPLAY_OPTIONS are the caller's
    (:func:`display_options`)."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}  # setting -> how the user gave it, for the messages
    if path:
        for key, value in _read_toml(path).items():
            if key.replace("-", "_") not in DISPLAY_OPTIONS:  # the command's: display_options
                values[key] = value
                origins[key.replace("-", "_")] = f"{key!r} in {path}"
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    for key in given:  # (named by the caller: the flag on the command line, see user_message)
        origins.pop(key.replace("-", "_"), None)
    known = {f.name for f in fields(SimConfig)}
    seen: dict[str, str] = {}
    for key in values:
        name = key.replace("-", "_")
        if name not in known:
            where = f" in {path}" if key not in given else ""
            raise ValueError(f"unknown config field {key!r}{where} (known: "
                             f"{', '.join(sorted(known | set(DISPLAY_OPTIONS)))})")
        if name in seen and seen[name] != key:
            raise ValueError(f"config field {name!r} is given twice ({seen[name]!r} and {key!r})")
        seen[name] = key
    cfg = SimConfig(**{k.replace("-", "_"): v for k, v in values.items()})
    cfg._origins = origins  # type: ignore[attr-defined]  # (not a setting: no field)
    try:
        return cfg.validate()
    except ValueError as exc:
        raise ValueError(user_message(str(exc), cfg, flags=False)) from None
