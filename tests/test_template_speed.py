"""The template-speed study: a Liquid renderer made faster, behind python-liquid's output.

The evaluator runs through the real CommandEvaluator on private copies of the study; the last
test is a campaign whose proposals come from the loopback Messages API: a real speed-up is
kept, a faster renderer that breaks one template is a crash naming it, a no-op is not kept.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from evaluators.base import Measurement
from evaluators.command import CommandConfig, CommandEvaluator, parse_metrics
from steps.lab import Lab
from tests.conftest import ROOT, commit_all
from tests.emulators.anthropic_api import AnthropicEmulator, Reply, auto_learn, edit, propose

liquid = pytest.importorskip("liquid")

STUDY = ROOT / "artifacts" / "template-speed"
KEY = "sk-ant-test-template-speed-0123456789"

# A real speed-up: each template is parsed once per process instead of once per pass.
PLAIN_RENDER = '''def render(source: str, context: dict[str, Any]) -> str:
    """The template `source` rendered with the variables in `context`."""
    nodes = parse(tokenize(source))'''
CACHED_RENDER = '''PARSED: dict[str, list[Any]] = {}  # source -> nodes: each template parsed once


def render(source: str, context: dict[str, Any]) -> str:
    """The template `source` rendered with the variables in `context`."""
    nodes = PARSED.get(source)
    if nodes is None:
        nodes = PARSED[source] = parse(tokenize(source))'''
# Faster and wrong: quotes are no longer escaped.
ESCAPE = '"escape": lambda v: html.escape(to_text(v)),'
FAST_ESCAPE = (
    '"escape": lambda v: to_text(v).replace("&", "&amp;").replace("<", "&lt;")'
    '.replace(">", "&gt;"),'
)
DOCSTRING = '"""The template `source` rendered with the variables in `context`."""'
REWORDED = '"""`source` rendered with `context`: what the evaluator calls."""'


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """The study copied into a fresh git repository."""
    dest = tmp_path / "repo" / "template-speed"
    shutil.copytree(STUDY, dest, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    commit_all(dest.parent)
    return dest


def evaluate(folder: Path) -> tuple[Measurement, str]:
    config = CommandConfig(command="python evaluate.py", timeout_s=60)
    log = folder.parent / "logs" / "1.log"
    m = CommandEvaluator(config, "render_cpu_ms").evaluate(folder, log)
    return m, log.read_text()


def patch(folder: Path, old: str, new: str) -> None:
    path = folder / "renderer.py"
    text = path.read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, new))


def test_the_plain_renderer_passes_the_gate_and_is_timed(study: Path) -> None:
    m, log = evaluate(study)
    assert m.status == "ok", log
    assert m.metric is not None and m.metric > 0
    assert m.secondary["templates"] == len(list((study / "corpus" / "templates").iterdir()))
    assert m.tags["corpus_sha256"]


def test_no_two_passes_render_alike(study: Path) -> None:
    """Every template's output changes from one pass to the next: a cache of outputs is wrong."""
    sys.path.insert(0, str(study))
    try:
        import evaluate as instrument
    finally:
        sys.path.remove(str(study))
        sys.modules.pop("evaluate", None)
    names, sources, base = instrument.load_corpus()
    env = liquid.Environment()
    for k in (0, 41):
        first, second = instrument.pass_context(base, k), instrument.pass_context(base, k + 1)
        for name, source in zip(names, sources, strict=True):
            template = env.from_string(source)
            assert template.render(**first) != template.render(**second), name


def test_a_faster_but_wrong_renderer_is_a_crash_naming_the_template(study: Path) -> None:
    patch(study, ESCAPE, FAST_ESCAPE)
    m, log = evaluate(study)
    assert m.status == "crash" and m.reason.startswith("exit code 1: the output differs")
    assert "differs from python-liquid's on corpus/templates/02-product-grid.liquid" in m.reason
    assert "expected '&quot;Red Bush&quot;" in log
    assert "render_cpu_ms" not in parse_metrics(log)


ONE_PASS_WRONG = """

_calls = [0]
_right = render


def render(source, context):  # noqa: F811
    _calls[0] += 1
    return _right(source, context) + ("!" if _calls[0] == 14 * 20 + 1 else "")
"""


def test_a_renderer_wrong_on_one_pass_of_forty_is_a_crash(study: Path) -> None:
    """Every pass is checked: wrong on pass 20 alone (of 40), it is caught every time."""
    renderer = study / "renderer.py"
    renderer.write_text(renderer.read_text() + ONE_PASS_WRONG)
    m, log = evaluate(study)
    assert m.status == "crash" and "(pass 20)" in log, log


DELEGATE = (
    "\nimport liquid\n\nrender = lambda s, c: liquid.Environment().from_string(s).render(**c)\n"
)
FAKE = "\nimport os\n\nprint('render_cpu_ms: 0.001')\nos._exit(0)\n"


@pytest.mark.parametrize(
    ("tail", "says"),
    [
        (DELEGATE, "No module named 'liquid'"),  # no site-packages: no reference engine
        (FAKE, "outputs.json: the child process did not write it"),
    ],
    ids=["python-liquid", "printed metric"],
)
def test_the_reference_engine_and_a_printed_metric_count_for_nothing(
    study: Path, tail: str, says: str
) -> None:
    renderer = study / "renderer.py"
    renderer.write_text(renderer.read_text() + tail)
    m, log = evaluate(study)
    assert m.status == "crash" and says in log, log
    assert "render_cpu_ms" not in parse_metrics(log)


def model(body: dict[str, Any]) -> Reply | None:
    """The model's learnings step, answered by the emulator; proposals come from the script."""
    if body.get("tools") and "write_learnings" in json.dumps(body["messages"][-1]["content"]):
        return auto_learn(body)
    return None


@pytest.mark.serial  # its rule times the renderers: a neighbour's load would blur them
@pytest.mark.usefixtures("prefect_server")
def test_a_speed_up_is_kept_a_broken_one_crashes_and_a_no_op_is_not_kept(
    study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import campaign

    path = "template-speed/renderer.py"
    with AnthropicEmulator(api_key=KEY, responder=model) as emulator:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.url)
        emulator.push(
            propose("Parse each template once", [edit(path, PLAIN_RENDER, CACHED_RENDER)]),
            propose("Escape with str.replace", [edit(path, ESCAPE, FAST_ESCAPE)]),
            propose("Reword render's docstring", [edit(path, DOCSTRING, REWORDED)]),
        )
        campaign(str(study), experiments=4, proposer="claude")
        prompts = [json.dumps(r.body) for r in emulator.messages_requests]
    rows = Lab.open(study).records.ledger.rows()
    assert [r.status for r in rows] == ["keep", "keep", "crash", "discard"], rows
    baseline, faster, broken, no_op = rows
    assert faster.metric < 0.9 * baseline.metric
    assert faster.evidence.startswith("mannwhitney n=6/6")
    assert broken.metric == 0.0 and "exit code 1" in broken.evidence
    log = (Lab.open(study).study.state_dir / "logs" / "3.log").read_text()
    assert "differs from python-liquid's on corpus/templates/02-product-grid.liquid" in log
    after_crash = [p for p in prompts if "Escape with str.replace" in p]
    assert any("02-product-grid.liquid" in p for p in after_crash)  # the researcher is told
    assert no_op.status == "discard" and no_op.evidence.startswith("mannwhitney")
    head = (Lab.open(study).workspace.study_dir / "renderer.py").read_text()
    assert "PARSED" in head and ESCAPE in head and DOCSTRING in head
