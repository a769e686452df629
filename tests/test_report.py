"""report.html and progress.png, checked against results.tsv; no Prefect involved."""

from __future__ import annotations

import base64
import csv
import html
import re
from dataclasses import FrozenInstanceError, replace
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from autoresearch.cli import main
from core.ledger import Ledger, Row, Status
from steps import report
from steps.plugins import load_study
from tests.conftest import git

PNG = b"\x89PNG\r\n\x1a\n"
KEY = "sk-ant-api03-not-for-any-report"


class Tables(HTMLParser):
    """Every <table id=...> of a page as a list of rows of cell texts (header row first)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.current: str | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.current = dict(attrs).get("id") or f"table{len(self.tables)}"
            self.tables[self.current] = []
        elif tag == "tr" and self.current:
            self.tables[self.current].append([])
        elif tag in ("td", "th") and self.current:
            self.cell = []

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.current and self.cell is not None:
            self.tables[self.current][-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "table":
            self.current = None


def records(table: list[list[str]]) -> list[dict[str, str]]:
    head, *rows = table
    return [dict(zip(head, row, strict=True)) for row in rows]


def row(n: int, commit: str, score: float, status: str, description: str) -> Row:
    return Row(
        experiment=n,
        status=Status(status),
        description=description,
        commit=commit[:7],
        metric=score,
        started_at=f"2025-01-01T00:{n:02d}:00+00:00",
        duration_s=1.5,
        proposer="claude" if n > 1 else "-",
        tokens_in=1000 * n,
        tokens_out=100 * n,
        cost_usd=0.0125 * n if n > 1 else 0.0,
    )


@pytest.fixture
def reported(make_study) -> Path:
    """A study with a real history: a baseline, two kept commits, a discard, a crash."""
    folder = make_study()
    repo = folder.parent
    head = git(repo, "rev-parse", "HEAD").strip()
    commits = []
    for text in (f"X = 5.0  # {KEY}\n", "X = 4.0  # keep if X < 4.5 & 'quotes'\n"):
        (folder / "model.py").write_text(text)
        git(repo, "commit", "-qam", f"set {text.strip()}")
        commits.append(git(repo, "rev-parse", "HEAD").strip())
    study = load_study(folder)
    ledger = Ledger(study.state_dir / "results.tsv", "score")
    for r in (
        row(1, head, 7.0, "keep", "baseline"),
        row(2, commits[0], 2.0, "keep", "move X to 5 <b>bold</b>"),
        row(3, "abcdef1", 9.5, "discard", "move X to 20"),
        row(4, "-", 0.0, "crash", "raise RuntimeError"),
        row(5, commits[1], 1.0, "keep", "move X to 4"),
        row(6, "1234567", 3.0, "discard", "move X to 6"),
    ):
        ledger.append(r)
    (study.state_dir / "resource.md").write_text("# Learnings\n\nsmaller X helps; X < 3 untried\n")
    return folder


def test_report_figures_match_results_tsv(reported: Path) -> None:
    result = CliRunner().invoke(main, ["report", str(reported)])
    assert result.exit_code == 0, result.output
    study = load_study(reported)
    page = (study.state_dir / "report.html").read_text()
    assert (study.state_dir / "progress.png").read_bytes().startswith(PNG)
    with (study.state_dir / "results.tsv").open() as f:
        tsv = list(csv.DictReader(f, delimiter="\t"))

    parser = Tables()
    parser.feed(page)
    tables = parser.tables
    summary = {r["what"]: r["value"] for r in records(tables["summary"])}
    kept = [r for r in tsv if r["status"] == "keep"]
    assert summary["experiments"] == str(len(tsv)) == "6"
    assert float(summary["baseline"]) == float(kept[0]["score"]) == 7.0
    assert float(summary["best"]) == float(kept[-1]["score"]) == 1.0
    assert summary["champion"] == kept[-1]["commit"]
    total = sum(float(r["cost_usd"]) for r in tsv)
    assert float(summary["cost_usd"]) == pytest.approx(total)

    counts = {r["status"]: int(r["experiments"]) for r in records(tables["counts"])}
    for status in ("keep", "discard", "crash", "rejected", "invalid", "screened"):
        assert counts[status] == sum(r["status"] == status for r in tsv)
        assert summary[status] == str(counts[status])
    assert summary["suspect"] == "0" and "suspects" not in tables
    assert "pareto" not in tables and "Pareto" not in page  # a study of one number
    assert not (study.state_dir / "pareto.png").exists()

    costs = {r["proposer"]: r for r in records(tables["costs"])}
    assert float(costs["total"]["cost_usd"]) == pytest.approx(total)
    assert int(costs["total"]["tokens_in"]) == sum(int(r["tokens_in"]) for r in tsv)
    assert int(costs["claude"]["experiments"]) == sum(r["proposer"] == "claude" for r in tsv)

    timeline = records(tables["timeline"])
    assert [t["experiment"] for t in timeline] == [r["experiment"] for r in tsv]
    assert [float(t["score"]) for t in timeline] == [float(r["score"]) for r in tsv]
    assert [t["status"] for t in timeline] == [r["status"] for r in tsv]
    assert [float(t["best so far"]) for t in timeline] == [7.0, 2.0, 2.0, 2.0, 1.0, 1.0]

    # each kept change after the baseline, with its diff, escaped
    heads = re.findall(r"<h3 id='keep-(\d+)'>(.*?)</h3>", page)
    assert [n for n, _ in heads] == ["2", "5"]
    assert kept[1]["commit"] in heads[0][1] and "&lt;b&gt;bold&lt;/b&gt;" in heads[0][1]
    assert "<b>bold" not in page
    assert html.escape("+X = 4.0  # keep if X < 4.5 & 'quotes'") in page
    assert "-X = 10.0" in page  # the first kept diff
    assert KEY not in page and "+X = 5.0  # [redacted]" in page  # a key in a diff stays out
    assert html.escape("smaller X helps; X < 3 untried") in page

    uri = re.search(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert uri and base64.b64decode(uri.group(1)).startswith(PNG)
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_running_best_follows_direction(reported: Path) -> None:
    study = load_study(reported)
    frame = report.results_frame(Ledger(study.state_dir / "results.tsv", "score"))
    assert list(report.running_best(frame, "score", "minimize")) == [7, 2, 2, 2, 1, 1]
    assert list(report.running_best(frame, "score", "maximize")) == [7, 7, 7, 7, 7, 7]
    chart = report.chart_markdown(study, report.write_report(study)[0])
    data = chart.split("base64,", 1)[1].rstrip(")")
    assert base64.b64decode(data).startswith(PNG) and len(data) < 150_000


def test_report_of_an_empty_study_says_so(make_study) -> None:
    folder = make_study()
    result = CliRunner().invoke(main, ["report", str(folder)])
    assert result.exit_code == 1
    assert "no experiments yet" in result.output


def every_status(tmp_path: Path) -> Ledger:
    """Two rows of every Status (the baseline first), with tokens and dollars."""
    ledger = Ledger(tmp_path / "results.tsv", "score")
    order = [Status.KEEP, *(s for s in Status if s is not Status.KEEP)] * 2
    for n, status in enumerate(order, 1):
        ledger.append(row(n, f"{n:07x}", 10.0 - n, status.value, f"change {n}"))
    return ledger


def test_the_table_is_built_from_typed_rows(tmp_path: Path, monkeypatch) -> None:
    ledger = every_status(tmp_path)
    monkeypatch.setattr(Ledger, "line", lambda *a: pytest.fail("rows formatted as text again"))
    frame = report.results_frame(ledger)
    assert list(frame.columns) == ledger.columns  # results.tsv's, the metric under its own name
    assert [type(s) for s in frame["status"]] == [Status] * len(Status) * 2
    assert list(frame["status"]) == [r.status for r in ledger.rows()]
    assert frame["experiment"].dtype == "int64" and frame["tokens_in"].dtype == "int64"
    assert frame["score"].dtype == frame["cost_usd"].dtype == "float64"
    assert set(frame["secondary"]) == {""} and set(frame["suspect"]) == {""}
    empty = report.results_frame(Ledger(tmp_path / "none.tsv", "score"))
    assert list(empty.columns) == ledger.columns and dict(empty.dtypes) == dict(frame.dtypes)
    counts = report.counts_frame(frame)
    assert list(counts["status"]) == [*report.COUNTED, Status.HOLDOUT]
    assert set(counts["experiments"]) == {2}


def test_the_other_numbers_show_as_results_tsv_writes_them(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "results.tsv", "score")
    numbers = {"allocs": 12.0, "screen.quick": 0.25}
    ledger.append(replace(row(1, "abcdef1", 1.0, "keep", "baseline"), secondary=numbers))
    ledger.append(row(2, "abcdef2", 2.0, "discard", "no other numbers"))
    frame = report.results_frame(ledger)
    with ledger.path.open() as f:
        written = [r["secondary"] for r in csv.DictReader(f, delimiter="\t")]
    assert list(frame["secondary"]) == written == ["allocs=12 screen.quick=0.25", ""]
    assert [r.secondary for r in ledger.rows()] == [numbers, {}]


def test_a_secret_set_since_a_row_was_written_is_redacted(tmp_path: Path, monkeypatch) -> None:
    ledger = Ledger(tmp_path / "results.tsv", "score")
    ledger.append(row(1, "abcdef1", 1.0, "keep", "tried hunter2-but-longer"))
    monkeypatch.setenv("MY_SERVICE_TOKEN", "hunter2-but-longer")
    assert list(report.results_frame(ledger)["description"]) == ["tried [redacted]"]


def test_the_summary_is_typed_and_the_campaign_adds_how_it_ended(tmp_path: Path) -> None:
    ledger = every_status(tmp_path)
    s = report.summary(ledger, "minimize")
    assert isinstance(s, report.Summary)
    assert [s.count(status) for status in report.COUNTED] == [2] * len(report.COUNTED)
    assert s.screened == 2 and s.suspect == 0
    assert s.count(Status.HOLDOUT) == 0 and s.experiments == 2 * len(Status)  # holdouts are rows
    kept = [r for r in ledger.rows() if r.kept]
    assert (s.baseline, s.best, s.champion) == (kept[0].metric, kept[-1].metric, kept[-1].commit)
    assert s.gain == pytest.approx(kept[0].metric - kept[-1].metric)
    assert s.cost_usd == pytest.approx(sum(r.cost_usd for r in ledger.rows()))
    assert (s.report, s.ran, s.stop, s.overfitting) == (None, 0, "", False)
    with pytest.raises(FrozenInstanceError):
        s.keep = 0  # type: ignore[misc]
    ended = replace(s, ran=3, stop="stopped by request (signal)", overfitting=True)
    assert (ended.ran, ended.stop, ended.overfitting, ended.keep) == (3, ended.stop, True, s.keep)


def test_no_baseline_yet(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "results.tsv", "score")
    ledger.append(row(1, "-", 0.0, "crash", "the baseline crashed"))
    s = report.summary(ledger, "maximize")
    assert s.baseline is s.best is s.champion is s.gain is s.gain_pct is None and s.crash == 1
    shown = dict(zip(*report.summary_frame(s).to_dict(orient="list").values(), strict=True))
    assert shown["baseline"] == shown["gain"] == "" and shown["crash"] == "1"


def test_status_prints_the_summary(reported: Path) -> None:
    result = CliRunner().invoke(main, ["status", str(reported)])
    assert result.exit_code == 0, result.output
    champion = Ledger(load_study(reported).state_dir / "results.tsv", "score").rows()[4].commit
    assert "screened" in result.output  # kept, discarded, crashed, screened, other:
    assert re.search(r"│ +7 │ +1 │ 6 \(85\.7%\) │ +2 │ +2 │ +1 │ +0 │ +0 │\n", result.output)
    assert "Pareto" not in result.output and "suspect" not in result.output
    assert "cost: $0.2500" in result.output and f"champion {champion} on branch" in result.output


def test_the_champions_markdown(reported: Path) -> None:
    study = load_study(reported)
    ledger = Ledger(study.state_dir / "results.tsv", "score")
    page = study.state_dir / "report.html"
    text = report.summary_markdown(study, ledger, "![chart](data:...)", page)
    champion = ledger.rows()[4].commit
    assert f"| 7 | 1 (`{champion}`) | 6 (85.71%) | 3 | 2 | 1 | 0 | $0.2500 |" in text
    assert "Pareto" not in text and "Suspect" not in text  # one number, no doubted keep
    assert "Cost so far: **$0.2500** over 6 experiments (21000 tokens in, 2100 out)." in text
    assert "![chart](data:...)" in text and f"[report.html]({page.resolve().as_uri()})" in text
    assert "## Last kept change (#5): move X to 4" in text and "+X = 4.0" in text
    assert KEY not in text and "-X = 5.0  # [redacted]" in text  # the diff from the key's commit
    empty = Ledger(study.state_dir / "none.tsv", "score")
    assert report.summary_markdown(study, empty).endswith("No baseline yet.")


def test_results_that_arrive_over_days_are_drawn_against_their_decision_time():
    """A test decided after nine days sits nine days along, not one experiment along; a study
    measured on the spot keeps experiment numbers."""
    day = "2026-12-{:02d}T09:00:00+00:00"
    rows = [
        Row(1, Status.KEEP, "baseline", "a", 0.030, decided_at=day.format(1)),
        Row(2, Status.DISCARD, "shorter", "b", 0.028, decided_at=day.format(3)),
        Row(3, Status.CRASH, "broken copy"),
        Row(4, Status.KEEP, "a question", "c", 0.040, decided_at=day.format(12)),
    ]
    frame = pd.DataFrame({name: report._column(name, rows) for name in report.TYPES})
    frame = frame.rename(columns={"metric": "reply_rate"})
    ax = report.progress_figure(frame, "reply_rate", "maximize", "cold-email").axes[0]
    xs = sorted(x for c in ax.collections for x, _ in c.get_offsets().tolist())
    assert [b - a for a, b in zip(xs, xs[1:], strict=False)] == [2.0, 9.0]  # days apart
    assert ax.get_xlabel().startswith("decided (UTC)")
    assert {t.get_text() for t in ax.texts} >= {"#1", "#2", "#4"}
    ax = report.progress_figure(frame.assign(decided_at=""), "reply_rate", "maximize", "t").axes[0]
    assert sorted(x for c in ax.collections for x, _ in c.get_offsets().tolist()) == [1, 2, 4]
    assert ax.get_xlabel() == "experiment"
