"""privcity.report: the HTML report of a run and of a privacy-utility sweep, rendered from a real
small simulation with attack and audit sections shaped as metrics.json holds them
(docs: the issue's schema). The page must parse, every plot must decode (embedded and beside
it), absent sections must say so, and no string from the results may inject markup."""
from __future__ import annotations

import base64
import copy
import io
import json
import math
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from privcity.attacks import evaluate_scores
from privcity.report import render_report, render_sweep
from privcity.sim import SimConfig, simulate

VOID = {"meta", "img", "br", "hr", "link", "input", "source"}
FULL_HEADINGS = ["Settings", "Headline", "Test accuracy per round", "Membership inference",
                 "Epsilon audit", "Cost: bytes, device CPU, latency",
                 "Update inversion (what the server sees)", "Data and risk notes"]


class PageChecker(HTMLParser):
    """The page as a browser's parser reads it: tags that do not balance, headings, images,
    tables (rows of cell texts) and the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.images: list[dict[str, str]] = []
        self.headings: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self._capture: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append({k: v or "" for k, v in attrs})
        if tag in VOID:
            return
        self.stack.append(tag)
        if tag in ("h1", "h2", "td", "th"):
            self._capture = []
        if tag == "table":
            self.tables.append([])
        if tag == "tr":
            self.tables[-1].append([])

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag in ("h1", "h2", "td", "th") and self._capture is not None:
            text = "".join(self._capture)
            if tag == "h2":
                self.headings.append(text)
            elif tag in ("td", "th"):
                self.tables[-1][-1].append(text)
            self._capture = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._capture is not None:
            self._capture.append(data)

    def table(self, first_header: str) -> list[list[str]]:
        """The rows (header first) of the table whose first header cell is ``first_header``."""
        found = [t for t in self.tables if t and t[0] and t[0][0] == first_header]
        assert len(found) == 1, f"{len(found)} tables headed {first_header!r}"
        return found[0]


def pairs(table: list[list[str]]) -> dict[str, str]:
    """A table of (name, value) pairs side by side as a dict (empty filler cells dropped)."""
    cells = [c for row in table[1:] for c in row]
    return {k: v for k, v in zip(cells[::2], cells[1::2]) if k}


def parse(path: str) -> PageChecker:
    checker = PageChecker()
    checker.feed(Path(path).read_text(encoding="utf-8"))
    checker.close()
    assert checker.errors == [], checker.errors
    assert checker.stack == [], f"unclosed tags: {checker.stack}"
    return checker


def decode_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes every row: a truncated PNG fails here
    assert image.format == "PNG"
    return image


def attack_figures(rng: np.random.Generator, shift: float, n: int) -> dict:
    """One attack's entry as metrics.json holds it, from scores whose members sit ``shift``
    standard deviations above the non-members."""
    roc = evaluate_scores(rng.normal(shift, 1.0, n), rng.normal(0.0, 1.0, n))
    keep = np.unique(np.linspace(0, roc.fpr.size - 1, min(400, roc.fpr.size)).astype(int))
    return {"auc": roc.auc, "tpr_at_1pct": roc.tpr_at[0.01], "tpr_at_0.1pct": roc.tpr_at[0.001],
            "advantage": roc.advantage,
            "advantage_ci": [max(roc.advantage - 0.06, 0.0), min(roc.advantage + 0.06, 1.0)],
            "n_members": n, "n_nonmembers": n,
            "roc": {"fpr": roc.fpr[keep].tolist(), "tpr": roc.tpr[keep].tolist()}}


def with_attacks_and_audit(results: dict, seed: int = 0) -> dict:
    """results with "attacks" and "audit" sections shaped as the schema says (the simulator
    does not write them yet): leaky centralized and FL models, a DP model near chance."""
    rng = np.random.default_rng(seed)
    out = copy.deepcopy(results)
    shifts = {"centralized": 1.6, "fl": 0.9, "fl_dp": 0.1}
    attacks = {"loss": 0.6, "calibrated": 0.9, "lira": 1.0}
    membership = {level: {run: {a: attack_figures(rng, s * k, n) for a, k in attacks.items()}
                          for run, s in shifts.items()}
                  for level, n in (("record", 2000), ("device", 200))}
    best = {run: max(membership["record"][run][a]["advantage"] for a in attacks)
            for run in shifts}
    breach = {run: {"risk": best[run], "ci": [best[run] - 0.05, best[run] + 0.05],
                    "attack": "lira (record)", "exposes": f"what {run} exposes"}
              for run in shifts}
    breach["leakage_reduction"] = {
        run: {"value": 1 - best[run] / best["centralized"], "ci": [0.1, 0.9]}
        for run in ("fl", "fl_dp")}
    view = {"recovered": 0.94, "ci": [0.88, 0.98], "n": 64, "median_error": 1e-6}
    out["attacks"] = {
        "level": "fast", "seconds": 0.8, "run_seconds": 3.1,
        "updates": {"tolerance": 0.01, "views": {
            "fl": {**view, "label": "plaintext update of one device (FedAvg server)"},
            "secagg": {**view, "recovered": 0.0, "ci": [0.0, 0.05], "median_error": 0.9,
                       "label": "block sum of N devices (SecAgg server)"},
            "ddg": {**view, "recovered": 0.0, "ci": [0.0, 0.05], "median_error": 3.2,
                    "label": "noisy block sum (distributed DP)"}}},
        "membership": membership, "breach": breach}
    eps_rounds = [r["epsilon"] for r in results["rounds"]["fl_dp"]]
    out["audit"] = {
        "confidence": 0.95, "canaries": 100, "guesses": 40,
        "fl": {"bound": 6.5, "bound_per_round": [2.0 * (i + 1) for i in range(len(eps_rounds))]},
        "fl_dp": {"bound": 0.42,
                  "bound_per_round": [0.14 * (i + 1) for i in range(len(eps_rounds))],
                  "epsilon_per_round": eps_rounds, "epsilon": eps_rounds[-1], "exceeded": False}}
    return out


@pytest.fixture(scope="module")
def run_results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("sim")
    # the attacks are left out here: the fixture below adds sections of known shape
    return simulate(SimConfig(devices=200, rounds=3, out=str(out), attacks="none", report=False),
                    progress=False)


@pytest.fixture(scope="module")
def full_results(run_results) -> dict:
    return with_attacks_and_audit(run_results)


@pytest.fixture(scope="module")
def full_report(full_results, tmp_path_factory) -> tuple[str, PageChecker]:
    path = render_report(full_results, str(tmp_path_factory.mktemp("report")))
    return path, parse(path)


def test_report_parses_with_balanced_tags_and_needs_no_other_file(full_report):
    # Prepare
    path, page = full_report

    # Assert: nothing loads from elsewhere (no script, stylesheet link or external image)
    assert os.path.basename(path) == "report.html"
    assert "script" not in page.tags and "link" not in page.tags
    assert page.images and all(img["src"].startswith("data:image/png;base64,")
                               for img in page.images)


def test_every_embedded_plot_decodes_as_a_png_of_readable_size(full_report):
    # Prepare
    _, page = full_report

    # Execute
    images = [decode_png(base64.b64decode(img["src"].split(",", 1)[1], validate=True))
              for img in page.images]

    # Assert: rounds, two ROC figures, audit, cost, inversion
    assert len(images) == 6
    assert all(im.width >= 400 and im.height >= 300 for im in images)


def test_every_plot_is_also_a_png_file_beside_the_page(full_report):
    # Prepare
    path, page = full_report
    folder = Path(path).parent / "report"

    # Execute
    files = {img["data-file"]: base64.b64decode(img["src"].split(",", 1)[1])
             for img in page.images}

    # Assert: each file exists, decodes, and is the very image the page embeds
    assert sorted(os.listdir(folder)) == sorted(os.path.basename(f) for f in files)
    for name, embedded in files.items():
        on_disk = (Path(path).parent / name).read_bytes()
        decode_png(on_disk)
        assert on_disk == embedded


def test_sections_appear_with_their_headings_in_order(full_report):
    # Prepare
    _, page = full_report

    # Assert
    assert page.headings == FULL_HEADINGS


def test_headline_table_holds_scores_epsilon_audit_bound_and_breach_risk(full_report,
                                                                           full_results):
    # Prepare
    _, page = full_report
    r = full_results
    rows = {row[0]: row[1:] for row in page.table("measure")[1:]}
    text = "".join(page.text)

    # Assert: the three scores, FL + DP's epsilon with delta, whom it holds against, the
    # audit's bound, breach risk and leakage reduction with their intervals
    assert rows["test accuracy"] == [f"{r[run]['score']:.4f}" for run in
                                     ("centralized", "fl", "fl_dp")]
    eps = r["privacy"]["epsilon"]
    assert rows["epsilon (delta)"][2] == f"{eps:.3f} (1e-05)"
    assert rows[f"epsilon {eps:.3f} holds against"][2] == "users of the released model"
    assert r["privacy"]["trust"] in text
    assert rows["audit lower bound on epsilon (95%)"] == ["-", "6.500", "0.420"]
    risk = r["attacks"]["breach"]["fl_dp"]
    assert rows["breach risk [95% CI]"][2] == (f"{risk['risk']:.3f} [{risk['ci'][0]:.3f}, "
                                               f"{risk['ci'][1]:.3f}]")
    assert rows["leakage reduction vs centralized"][1].endswith("[0.100, 0.900]")


def test_settings_table_lists_every_config_field(full_report, full_results):
    # Prepare
    _, page = full_report

    # Execute
    rows = pairs(page.table("setting"))

    # Assert
    assert set(rows) == set(full_results["config"])
    assert rows["devices"] == "200" and rows["epsilon"] == "4"


def test_risk_notes_say_what_each_figure_was_computed_on(full_report, full_results):
    # Prepare
    _, page = full_report
    text = "".join(page.text)

    # Assert
    assert full_results["risk"]["traces"]["computed_on"] in text
    assert page.table("traces")[2][0] == "released"
    assert page.table("records")[1][1] == "0.000"


def test_a_csvs_record_risk_shows_unicity_and_what_it_was_computed_on(run_results, tmp_path):
    # Prepare: risk.records as the simulator writes it for a CSV's own records
    results = copy.deepcopy(run_results)
    linkage = {"reidentified": 0.8, "ambiguous": 0.2, "not_found": 0.0, "guess": 0.9}
    results["risk"] = {"traces": None, "records": {
        "computed_on": "the 3,000 rows of data.csv (columns district, age)",
        "devices": 150, "known": ["district", "age"],
        "treatment": {"district": "keep", "age": "generalize"},
        "unicity": {"raw": {"records": 0.5, "devices": 0.75},
                    "released": {"records": 0.125, "devices": None}},
        "linkage": {"raw": linkage, "released": linkage}}}

    # Execute
    page = parse(render_report(results, str(tmp_path)))

    # Assert
    text = "".join(page.text)
    assert "Computed on: the 3,000 rows of data.csv (columns district, age)." in text
    assert "Treatment on the devices: district: keep, age: generalize." in text
    assert page.table("records")[1:] == [["raw", "0.800", "0.200", "0.000", "0.900", "0.500",
                                          "0.750"],
                                         ["released", "0.800", "0.200", "0.000", "0.900",
                                          "0.125", "-"]]
    assert "GPS-trace re-identification was not measured (this task holds no traces)." in text


def test_record_risk_without_its_source_says_it_is_not_recorded(run_results, tmp_path):
    # Prepare: figures whose source metrics.json does not name
    results = copy.deepcopy(run_results)
    results["risk"]["records"].pop("computed_on", None)

    # Execute
    page = parse(render_report(results, str(tmp_path)))

    # Assert
    assert any("What these figures were computed on is not recorded." in t for t in page.text)


def test_membership_table_gives_each_attack_on_each_model(full_report):
    # Prepare
    _, page = full_report

    # Execute
    tables = [t for t in page.tables if t[0][0] == "model"]

    # Assert: record and device level, 3 models x 3 attacks; TPR at 0.1% FPR over 200
    # non-members cannot be measured and says so
    assert len(tables) == 2 and all(len(t) == 1 + 9 for t in tables)
    assert {row[4] for row in tables[1][1:]} == {"n/a"}


def test_absent_attacks_and_audit_say_they_were_not_run_and_stale_plots_go(
        full_results, run_results, tmp_path):
    # Prepare: a full report first, then one without attacks and audit in the same place
    render_report(full_results, str(tmp_path))

    # Execute
    page = parse(render_report(run_results, str(tmp_path)))

    # Assert
    text = "".join(page.text)
    assert "The attacks were not run (--attacks none)." in text
    assert "The epsilon audit was not run." in text
    assert "Update inversion was not run (--attacks none)." in text
    rows = {row[0]: row[1:] for row in page.table("measure")}
    assert rows["audit lower bound on epsilon"] == ["-", "not run", "not run"]
    assert rows["breach risk"] == ["not run", "not run", "not run"]
    assert rows["leakage reduction vs centralized"] == ["-", "not run", "not run"]
    assert page.headings == FULL_HEADINGS
    assert sorted(os.listdir(tmp_path / "report")) == ["cost_bytes_cpu_latency.png",
                                                       "score_per_round.png"]
    assert len(page.images) == 2


def test_an_inversion_with_nothing_to_invert_gives_its_reason(full_results, tmp_path):
    # Prepare
    results = copy.deepcopy(full_results)
    results["attacks"]["updates"] = {"tolerance": 0.05, "views": {},
                                     "note": "no device reported an update"}

    # Execute
    page = parse(render_report(results, str(tmp_path)))

    # Assert
    assert "Update inversion: no device reported an update." in page.text
    assert not (tmp_path / "report" / "update_inversion.png").exists()


def test_audit_bound_above_the_accountants_epsilon_is_flagged_loudly(full_results, tmp_path):
    # Prepare
    results = copy.deepcopy(full_results)
    results["audit"]["fl_dp"].update(bound=9.0, exceeded=True)

    # Execute
    page = parse(render_report(results, str(tmp_path)))

    # Assert
    assert any("exceeds the accountant's epsilon" in t for t in page.text)
    assert "alarm" in Path(tmp_path / "report.html").read_text()


HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def test_strings_from_results_cannot_inject_markup(full_results, tmp_path):
    # Prepare: every free-text place a user or a CSV can reach
    results = copy.deepcopy(full_results)
    results["config"].update(data="/home/u/" + HOSTILE, target=HOSTILE, task=HOSTILE)
    results["config"][HOSTILE] = HOSTILE
    results["data_notes"] = ["column " + HOSTILE + " dropped", "</ul></table><h2>fake</h2>"]
    results["risk"]["traces"]["computed_on"] = HOSTILE
    results["risk"]["records"]["known"] = [HOSTILE]
    results["privacy"]["trust"] = HOSTILE
    results["attacks"]["updates"]["views"]["fl"]["label"] = HOSTILE
    level = results["attacks"]["membership"]["record"]["fl"]
    level["$\\frac{$<b>" + HOSTILE] = level.pop("lira")  # broken mathtext to matplotlib
    results["attacks"]["breach"]["fl"]["exposes"] = HOSTILE

    # Execute
    page = parse(render_report(results, str(tmp_path)))

    # Assert: no tag but ours, the hostile text shown as text, whole
    assert "script" not in page.tags
    assert all(img["src"].startswith("data:image/png;base64,") for img in page.images)
    assert "fake" not in page.headings and page.headings == FULL_HEADINGS
    text = "".join(page.text)
    assert text.count(HOSTILE) >= 10
    assert "</ul></table><h2>fake</h2>" in text


def test_a_csv_whose_file_and_column_names_hold_markup_renders_them_as_text(tmp_path):
    # Prepare: a real CSV run; the file's name and its target column are HTML
    column = '<img src=x onerror=alert(1)>y'
    data = tmp_path / '"><script>alert(2)<\\script>.csv'
    rng = np.random.default_rng(0)
    rows = [f"{i % 60},{rng.normal():.4f},{rng.normal():.4f},{int(rng.integers(0, 2))}"
            for i in range(1200)]
    data.write_text("device,x1,x2," + column + "\n" + "\n".join(rows) + "\n")
    results = simulate(SimConfig(task="csv", data=str(data), target=column,
                                 device_column="device", rounds=2, out=str(tmp_path / "sim")),
                       progress=False)

    # Execute
    page = parse(render_report(results, str(tmp_path)))

    # Assert
    assert "script" not in page.tags
    assert page.images and all(img["src"][:22] == "data:image/png;base64," for img in page.images)
    settings = pairs(page.table("setting"))
    assert settings["target"] == column and settings["data"] == str(data)


def test_diverged_scores_and_unmeasured_rates_render_as_text(run_results, tmp_path):
    # Prepare: a regression run whose FL + DP blew up, a missing centralized score
    results = copy.deepcopy(run_results)
    results["metric"] = "r2"
    results["fl_dp"]["score"] = math.nan
    for i, r in enumerate(results["rounds"]["fl_dp"]):
        r["score"] = [-3e6, math.inf, math.nan][i % 3]
    del results["centralized"]

    # Execute
    page = parse(render_report(results, str(tmp_path)))

    # Assert
    assert page.table("measure")[1] == ["test r2", "-", f"{run_results['fl']['score']:.4f}", "n/a"]
    assert "Test r2 per round" in page.headings
    decode_png((tmp_path / "report" / "score_per_round.png").read_bytes())


def test_distributed_dp_run_names_each_epsilon_with_whom_it_holds_against(tmp_path):
    # Prepare: a real run under secure aggregation with distributed DP (two guarantees)
    results = simulate(SimConfig(devices=200, rounds=2, secure_aggregation=True, risk_people=0,
                                 attacks="none", out=str(tmp_path / "sim")), progress=False)
    users, servers = results["privacy"]["guarantees"]

    # Execute
    page = parse(render_report(results, str(tmp_path)))

    # Assert
    rows = {row[0]: row[1:] for row in page.table("measure")}
    assert rows[f"epsilon {users['epsilon']:.3f} holds against"][2] == users["holds_against"]
    assert rows[f"epsilon {servers['epsilon']:.3f} holds against"][2] == \
        "the aggregator, the gateways and users of the released model"
    assert len(page.images) == 2


def test_render_report_refuses_results_without_config(tmp_path):
    with pytest.raises(ValueError, match="config"):
        render_report({"metric": "accuracy"}, str(tmp_path))


def test_rendering_leaves_the_users_matplotlib_backend_and_pyplot_alone(full_results, tmp_path):
    # Prepare: the user chose a backend (PDF); rendering must not switch it to Agg
    (tmp_path / "m.json").write_text(json.dumps(full_results))
    code = ("import json, sys, matplotlib\n"
            "from privcity.report import render_report\n"
            f"render_report(json.load(open({str(tmp_path / 'm.json')!r})), "
            f"{str(tmp_path / 'out')!r})\n"
            "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n")

    # Execute
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "MPLBACKEND": "pdf"}, timeout=120)

    # Assert
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["pdf", "False"]


@pytest.fixture(scope="module")
def sweep_results(run_results, tmp_path_factory) -> list[dict]:
    """Three real runs at epsilon 8, 1 and 4 (out of order; 4 is run_results), attacks and
    audit on the first two."""
    runs = []
    for eps in (8.0, 1.0):
        out = tmp_path_factory.mktemp(f"eps{eps:g}")
        r = simulate(SimConfig(devices=200, rounds=3, epsilon=eps, out=str(out), attacks="none",
                               report=False), progress=False)
        runs.append(with_attacks_and_audit(r, seed=int(eps)))
    return runs + [run_results]


def test_sweep_renders_one_row_and_point_per_epsilon(sweep_results, tmp_path):
    # Execute
    path = render_sweep(sweep_results, str(tmp_path))

    # Assert
    page = parse(path)
    assert page.headings == ["Settings", "Test accuracy against epsilon",
                             "Epsilon: the accountant's and the audit's",
                             "Membership advantage against epsilon", "Runs"]
    rows = page.table("epsilon budget")[1:]
    assert [row[0] for row in rows] == ["1", "4", "8"]
    assert rows[1][3] == "-" and rows[0][3] == "0.420"  # epsilon 4 ran no audit
    by_eps = {r["config"]["epsilon"]: r for r in sweep_results}
    assert [row[1] for row in rows] == [f"{by_eps[e]['privacy']['epsilon']:.3f}"
                                        for e in (1.0, 4.0, 8.0)]
    assert pairs(page.table("setting"))["epsilon"] == "swept: 1, 4, 8"
    assert len(page.images) == 3
    for img in page.images:
        on_disk = (tmp_path / img["data-file"]).read_bytes()
        assert decode_png(on_disk).width >= 400
        assert base64.b64decode(img["src"].split(",", 1)[1]) == on_disk


def test_sweep_without_attacks_says_so(sweep_results, tmp_path):
    # Prepare
    bare = [{k: v for k, v in r.items() if k not in ("attacks", "audit")} for r in sweep_results]

    # Execute
    page = parse(render_sweep(bare, str(tmp_path)))

    # Assert
    text = "".join(page.text)
    assert "The attacks were not run (--attacks none)." in text
    assert "The epsilon audit was not run." in text
    assert len(page.images) == 2


@pytest.mark.parametrize("bad, match", [
    ([], "non-empty"),
    ("not a list", "non-empty"),
    ([{"config": {"epsilon": 0.0}}], r"results_list\[0\]\['config'\]\['epsilon'\]"),
    ([{"config": {"epsilon": 1.0}}, {"config": {"epsilon": 1.0}}], "twice"),
])
def test_sweep_refuses_what_is_not_one_run_per_positive_epsilon(bad, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        render_sweep(bad, str(tmp_path))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                                              "(Debian: apt-get install chromium)")
def test_headless_chromium_draws_the_report_with_its_plots(full_report, tmp_path):
    # Prepare
    path, _ = full_report
    shot = tmp_path / "shot.png"

    # Execute
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1200,7000", f"file://{path}"],
        capture_output=True, text=True, timeout=120)

    # Assert: the screenshot holds the plots' blue (FL), which only the images carry
    assert done.returncode == 0, done.stderr
    pixels = np.asarray(decode_png(shot.read_bytes()).convert("RGB")).reshape(-1, 3).astype(int)
    blue = np.all(np.abs(pixels - [31, 119, 180]) <= 8, axis=1)
    assert blue.sum() > 2000


def test_a_real_run_with_its_attacks_and_audit_renders_every_plot(tmp_path):
    # Prepare: the simulator's own attack and audit sections, not the fixture's
    results = simulate(SimConfig(devices=200, rounds=3, risk_people=0, out=str(tmp_path / "s")),
                       progress=False)

    # Execute
    page = parse(results["report"])

    # Assert: the run wrote its report, with the ROC curves, the audit and the inversion plots
    assert results["report"] == str(tmp_path / "s" / "report.html")
    names = sorted(os.listdir(tmp_path / "s" / "report"))
    assert {"membership_roc_record.png", "membership_roc_device.png",
            "audit_epsilon_per_round.png", "update_inversion.png"} <= set(names)
    text = "".join(page.text)
    assert "not run" not in text.replace("Update inversion was not run", "")
    assert len(page.images) == len(names)
