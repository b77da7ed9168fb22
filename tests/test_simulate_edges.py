"""What a new user meets (issue 18): settings that cannot apply are refused with the reason,
every epsilon in the table says what it is per, the CSV's task type is chosen openly, advice
names the real cause (the DP noise, no device taking part), every figure of the table is
defined, errors name what the user typed, and the README's examples and files stand alone.
Real data: vega_datasets' cars and Seattle weather (tables it ships)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from privcity.cli import main as cli_main
from privcity.data import load_csv
from privcity.sim import load_config

vega_datasets = pytest.importorskip("vega_datasets")
local_data = vega_datasets.local_data
ROOT = Path(__file__).resolve().parents[1]
FAST = ["--attacks", "none", "--no-report", "--quiet"]


@pytest.fixture(scope="module")
def cars(tmp_path_factory) -> Path:
    """vega_datasets' cars.json (406 cars: Name, Miles_per_Gallon, ..., Year, Origin) as CSV."""
    import csv
    table = json.loads((Path(vega_datasets.__file__).parent / "_data" / "cars.json").read_text())
    path = tmp_path_factory.mktemp("vega") / "cars.csv"
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=list(table[0]))
        out.writeheader()
        out.writerows({k: "" if v is None else v for k, v in row.items()} for row in table)
    return path


@pytest.fixture(scope="module")
def weather_stray(tmp_path_factory) -> Path:
    """Seattle weather whose numeric temp_max holds two stray cells, 'n/a' and 'high'."""
    table = local_data.seattle_weather()
    table["temp_max"] = table["temp_max"].astype(object)
    table.loc[10, "temp_max"], table.loc[20, "temp_max"] = "n/a", "high"
    path = tmp_path_factory.mktemp("vega") / "weather.csv"
    table.to_csv(path, index=False)
    return path


def _row(table: str, label: str) -> list[str]:
    line = next(x for x in table.splitlines() if x.startswith(label + "  "))
    return [c.strip() for c in line[len(label):].split("  ") if c.strip()]


# --- settings that do nothing -------------------------------------------------------------------

@pytest.mark.parametrize("task", ["air_quality", "traffic"])
def test_field_epsilon_on_a_task_without_sensitive_fields_is_refused_naming_the_flag(task, capsys):
    # Execute
    rc = cli_main(["simulate", "--task", task, "--field-epsilon", "4", "--quiet"])

    # Assert: refused before anything runs, with the flag and the reason
    err = capsys.readouterr().err
    assert rc == 2 and "--field-epsilon" in err and "would change nothing" in err
    assert "config field" not in err and len(err.strip().splitlines()) == 1


def test_field_epsilon_applies_once_a_treatment_names_a_laplace_field():
    # Execute / Assert: traffic's rain noised on the device: the epsilon now does something
    cfg = load_config(None, task="traffic", field_epsilon=4.0, treatment="rain=laplace")
    assert cfg.local_dp() == (4.0, ("rain",))


@pytest.mark.parametrize("extra, name", [
    (dict(alpha=0.2), "alpha"),                       # the district partition has no alpha
    (dict(hidden=64), "hidden"),                      # no MLP
    (dict(centralized_epochs=9, runs="fl"), "centralized_epochs"),  # no centralized run
    (dict(target_type="regression"), "target_type"),  # a synthetic task's type is its own
    (dict(runs="fl", noise_multiplier=1.0), "noise_multiplier"),
    (dict(task="csv", data=__file__, target="x", districts=4), "districts"),
])
def test_other_settings_that_cannot_apply_are_refused_with_the_reason(extra, name):
    # Execute / Assert
    with pytest.raises(ValueError, match=f"'{name}'.*would change nothing"):
        load_config(None, **extra)


def test_the_table_shows_each_epsilon_and_what_it_is_per(tmp_path):
    # Execute: the energy task, its sensitive fields noised on the devices at epsilon 4
    from privcity.sim import simulate, summary_table
    cfg = load_config(None, task="energy", devices=60, rounds=2, field_epsilon=4.0, lr=0.001,
                      attacks="none", report=False, risk_people=0, out=str(tmp_path))
    results = simulate(cfg, progress=False)
    table = summary_table(results)

    # Assert: the per-record local epsilon in every column, the model's per device
    assert _row(table, "local epsilon") == ["4.000 / record"] * 3
    assert _row(table, "epsilon (delta)")[-1].endswith("/ device")
    local = results["privacy"]["local_dp"]
    assert local["epsilon"] == 4.0 and local["per"] == "record"
    assert set(local["fields"]) == {"household_size", "consumption_kwh", "next_consumption_kwh"}


# --- the CSV's task type ------------------------------------------------------------------------

def test_a_numeric_target_with_stray_text_stays_a_regression_and_says_so(weather_stray):
    # Execute
    auto, _ = load_csv(weather_stray, target="temp_max", devices=4)
    labels, _ = load_csv(weather_stray, target="temp_max", devices=4, task="classification")

    # Assert: regression, the stray cell's row left out with a warning; forcing still works
    assert auto.task_type == "regression" and auto.task_note.startswith("regression (auto")
    assert any(n.startswith("warning: target 'temp_max'") and "'high'" in n for n in auto.notes)
    assert labels.task_type == "classification"


def test_the_target_type_flag_decides_and_the_run_says_why(weather_stray, tmp_path, capsys):
    # Execute
    rc = cli_main(["simulate", "--task", "csv", "--data", str(weather_stray), "--target",
                   "temp_max", "--devices", "20", "--rounds", "2", "--runs", "fl", *FAST,
                   "--out", str(tmp_path), "--target-type", "regression"])

    # Assert
    out = capsys.readouterr().out
    assert rc == 0 and "(regression)" in out.splitlines()[0]
    assert "target: regression (--target-type regression)" in out


def test_an_implausible_class_count_is_warned_of(cars):
    # Execute: the car's name as the target, 311 "classes" of about one row each
    train, _ = load_csv(cars, target="Name", devices=4)

    # Assert
    assert train.task_type == "classification"
    assert any(n.startswith("warning: target 'Name' has 311 classes") for n in train.notes)


def test_help_says_how_the_task_type_is_chosen(capsys):
    # Execute
    with pytest.raises(SystemExit):
        cli_main(["simulate", "--help"])

    # Assert
    text = " ".join(capsys.readouterr().out.split())
    assert "--target-type TARGET_TYPE" in text and "integers with at most 20 distinct" in text


# --- advice that names the real cause -----------------------------------------------------------

def test_too_few_devices_a_round_for_the_dp_noise_are_said_before_training(cars, tmp_path,
                                                                           capsys):
    # Execute: 3 devices (one per origin), q = 0.1: 0.3 devices a round
    rc = cli_main(["simulate", "--task", "csv", "--data", str(cars), "--target",
                   "Miles_per_Gallon", "--device-column", "Origin", "--attacks", "none",
                   "--no-report", "--out", str(tmp_path)])

    # Assert: a warning with the numbers before the first round; the diverged cell blames the
    # noise, not the learning rate
    captured = capsys.readouterr()
    setup, rounds = captured.err.split("[fl    ]", 1)
    assert rc == 0 and "cannot carry the DP noise" in setup
    assert re.search(r"std per coordinate .* = 3\.91, against 0\.316", setup)
    assert "devices a round" in setup and "--epsilon" in setup
    cell = _row(captured.out, "test r2")[-1]
    assert cell.startswith("diverged") and "DP noise" in cell and "--lr" in cell
    assert "lower --lr" not in cell


def test_a_city_where_no_device_takes_part_says_why_instead_of_inf(tmp_path, capsys):
    # Execute: one device, q = 0.1, seed 1: it is sampled in none of the 3 rounds
    rc = cli_main(["simulate", "--devices", "1", "--rounds", "3", "--seed", "1",
                   "--risk-people", "0", *FAST, "--out", str(tmp_path)])

    # Assert
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("privcity simulate: 1 device,")
    assert "inf" not in out and _row(out, "privacy overhead") == ["-", "-", "-"]
    assert _row(out, "bytes sent")[1] == "0 (no device took part)"
    assert "FL: no device took part in any of its 3 round(s)" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"metrics.json holds {c}"))
    assert metrics["fl"]["device_overhead_percent"] is None


# --- every figure defined -----------------------------------------------------------------------

def test_every_row_of_the_table_is_defined_in_help_and_readme(tmp_path, capsys):
    # Prepare: a run with the attack suite (its rows too)
    from privcity.sim.figures import FIGURES
    rc = cli_main(["simulate", "--devices", "200", "--rounds", "2", "--no-report",
                   "--risk-people", "0", "--quiet", "--out", str(tmp_path)])
    table = capsys.readouterr().out.splitlines()
    rule = next(i for i, line in enumerate(table) if set(line) <= {"-", " "})
    labels = [re.split(r"\s{2,}", line)[0] for line in table[rule - 1:]
              if re.match(r"^\S.*\s{2,}\S", line) and ":" not in line.split("  ")[0]][2:]
    with pytest.raises(SystemExit):
        cli_main(["simulate", "--help"])
    help_text = capsys.readouterr().out
    readme = (ROOT / "README.md").read_text()

    # Assert
    assert rc == 0 and "privacy overhead" in labels and "empirical epsilon >=" in labels
    for label in labels:
        assert label in FIGURES, label
        assert f"  {label}: " in help_text, label
        assert f"| {label} | {FIGURES[label]} |" in readme, label


# --- messages -----------------------------------------------------------------------------------

def test_an_error_names_the_flag_the_user_typed(capsys):
    # Execute
    rc = cli_main(["simulate", "--sample-rate", "1.5"])

    # Assert
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("privcity simulate: --sample-rate: must be in (0.0, 1.0]")


def test_an_error_names_the_toml_key_and_file(tmp_path, capsys):
    # Prepare
    toml = tmp_path / "city.toml"
    toml.write_text("[simulate]\nsample-rate = 1.5\n")

    # Execute
    rc = cli_main(["simulate", "--config", str(toml)])

    # Assert
    err = capsys.readouterr().err
    assert rc == 2 and f"'sample-rate' in {toml}: must be in (0.0, 1.0]" in err


def test_an_argparse_error_is_one_line_pointing_to_help(capsys):
    # Execute
    with pytest.raises(SystemExit) as exit_:
        cli_main(["simulate", "--sample-rate", "often"])

    # Assert
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "--sample-rate" in err and "privcity simulate --help" in err and "usage" not in err


def test_toml_takes_every_option_help_lists(tmp_path, capsys):
    # Prepare: each long option of --help, as a TOML key with its default's type
    from privcity.sim import SimConfig
    with pytest.raises(SystemExit):
        cli_main(["simulate", "--help"])
    options = set(re.findall(r"--([a-z][a-z0-9-]+)", capsys.readouterr().out))
    options -= {"help", "config", "resume"}  # (a config file naming itself; a run to resume)
    options = {o for o in options if not o.startswith("no-")}  # --no-report: report's
    defaults = SimConfig()
    values = {"quiet": True, "json": True, "overwrite": True, "rank_timeout": 60}
    for option in options:
        name = option.replace("-", "_")
        if name not in values:
            values[name] = getattr(defaults, name)
    toml = tmp_path / "all.toml"
    toml.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))

    # Execute
    load_config(str(toml))
    rc = cli_main(["simulate", "--config", str(toml), "--devices", "40", "--rounds", "1",
                   "--runs", "fl", "--attacks", "none", "--no-report", "--risk-people", "0",
                   "--out", str(tmp_path / "o")])

    # Assert: quiet = true silenced the progress lines, json = true printed JSON
    captured = capsys.readouterr()
    assert rc == 0 and captured.err == "" and json.loads(captured.out)["devices"] == 40


# --- the README's files -------------------------------------------------------------------------

def test_the_files_the_readme_commands_name_are_shipped():
    # Prepare
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"(examples/[\w./-]+\.(?:toml|csv))", readme))

    # Execute
    cfg = load_config(str(ROOT / "examples" / "city.toml"))
    train, _ = load_csv(ROOT / "examples" / "readings.csv", target="pm25",
                        device_column="sensor_id")

    # Assert
    assert named == {"examples/city.toml", "examples/readings.csv"}
    assert all((ROOT / p).is_file() for p in named)
    assert cfg.task == "traffic" and train.n_devices == 40 and train.task_type == "regression"


@pytest.mark.parametrize("line", ["rank_timeout = -1", "rank-timeout = true", "overwrite = 1"])
def test_a_bad_command_option_in_toml_is_refused_naming_the_key_and_file(tmp_path, capsys, line):
    # Prepare
    toml = tmp_path / "bad.toml"
    toml.write_text(line + "\n")

    # Execute
    rc = cli_main(["simulate", "--config", str(toml), "--out", str(tmp_path / "o")])

    # Assert
    err = capsys.readouterr().err
    assert rc == 2 and line.split(" = ")[0] in err and str(toml) in err
