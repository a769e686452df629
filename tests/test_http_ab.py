"""The asynchronous form of the http evaluator: an A/B test run by any HTTP service (here a
loopback one that serves two landing pages and counts their sign-ups), launched by one run of
the campaign and decided by a later one."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.ledger import Status
from evaluators.base import Launch, Unavailable
from evaluators.http_ab import HttpABConfig, HttpABEvaluator
from steps.lab import Lab
from tests.conftest import Scripted, campaign

RATES = {"Sign up now": 0.30, "Learn more": 0.10}  # what a page earns, by its button


class ABService:
    """Creates a test per Idempotency-Key; each look adds 100 visitors per arm; done at 3."""

    def __init__(self) -> None:
        self.tests: dict[str, dict] = {}
        self.keys: dict[str, str] = {}
        self.stopped: list[str] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                size = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(size) or b"null")
                if self.path.endswith("/stop"):
                    service.stopped.append(self.path.split("/")[2])
                    return self._send(200, {})
                if self.headers.get("Authorization") != "Bearer s3cret-token-value":
                    return self._send(401, {"error": "who are you"})
                key = self.headers["Idempotency-Key"]
                if key not in service.keys:
                    service.keys[key] = str(len(service.tests) + 1)
                    service.tests[service.keys[key]] = {"variants": body["variants"], "looks": 0}
                return self._send(201, {"id": service.keys[key]})

            def do_GET(self) -> None:  # noqa: N802
                test = service.tests[self.path.split("/")[2]]
                test["looks"] += 1
                visitors = 100 * test["looks"]
                arms = {}
                for arm, files in test["variants"].items():
                    page = files["landing.html"]
                    rate = next((r for b, r in RATES.items() if b in page), 0.0)
                    arms[arm] = {"signups": int(rate * visitors), "visitors": visitors}
                self._send(200, {"arms": arms, "done": test["looks"] >= 3})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[ABService]:
    monkeypatch.setenv("AB_TOKEN", "s3cret-token-value")
    ab = ABService()
    yield ab
    ab.server.shutdown()


def section(url: str) -> str:
    return (
        "evaluator:\n  kind: http_ab\n  variant: [landing.html]\n  max_pending: 1\n"
        "  headers: {Authorization: 'Bearer ${AB_TOKEN}'}\n"
        f"  launch: {{url: '{url}/tests', id_path: id, body: {{name: '{{batch}}', "
        "variants: {A: '{champion}', B: '{challenger}'}}}\n"
        f"  collect: {{url: '{url}/tests/{{id}}', closed_path: done, "
        "champion: [arms.A.signups, arms.A.visitors], "
        "challenger: [arms.B.signups, arms.B.visitors]}\n"
        f"  stop: {{method: POST, url: '{url}/tests/{{id}}/stop'}}\n"
    )


def test_launch_once_collect_later_and_stop(service, tmp_path):
    config = HttpABConfig.model_validate(
        {
            "kind": "http_ab",
            "variant": ["landing.html"],
            "headers": {"Authorization": "Bearer ${AB_TOKEN}"},
            "launch": {"url": f"{service.url}/tests", "id_path": "id",
                       "body": {"variants": {"A": "{champion}", "B": "{challenger}"}}},
            "collect": {"url": f"{service.url}/tests/{{id}}", "closed_path": "done",
                        "champion": ["arms.A.signups", "arms.A.visitors"],
                        "challenger": ["arms.B.signups", "arms.B.visitors"]},
            "stop": {"method": "POST", "url": f"{service.url}/tests/{{id}}/stop"},
        }
    )  # fmt: skip
    ev = HttpABEvaluator(config, "signup_rate")
    for name, button in (("champion", "Learn more"), ("challenger", "Sign up now ${AB_TOKEN}")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "landing.html").write_text(f"<button>{button}</button>")
    handle = ev.launch(Launch("site", 2, tmp_path / "champion", tmp_path / "challenger", tmp_path))
    assert service.tests == {}  # a plan: nothing sent yet
    ev.start(handle, tmp_path)
    (tmp_path / "http_ab" / f"{handle['batch']}.json").unlink()  # as if killed before the id
    ev.start(handle, tmp_path)  # ... landed: the same key, no second test
    assert len(service.tests) == 1
    sent = service.tests["1"]["variants"]["B"]["landing.html"]
    assert sent == "<button>Sign up now ${AB_TOKEN}</button>"  # the candidate's text, as written
    first = ev.collect(handle, tmp_path)
    assert first.arms == {"champion": (10, 100), "challenger": (30, 100)} and not first.closed
    assert ev.collect(handle, tmp_path).arms["challenger"] == (60, 200)
    assert ev.collect(handle, tmp_path).closed
    ev.finish(handle, tmp_path, "keep")
    assert service.stopped == ["1"]


def test_a_refused_key_stops_with_the_secret_masked(service, tmp_path, monkeypatch):
    monkeypatch.setenv("AB_TOKEN", "not-the-right-one-value")
    config = HttpABConfig.model_validate(
        {"kind": "http_ab", "variant": ["landing.html"],
         "headers": {"Authorization": "Bearer ${AB_TOKEN}"},
         "launch": {"url": f"{service.url}/tests", "id_path": "id"},
         "collect": {"url": f"{service.url}/tests/{{id}}", "champion": ["a", "b"],
                     "challenger": ["c", "d"]}}
    )  # fmt: skip
    ev = HttpABEvaluator(config, "signup_rate")
    handle = {"batch": "x-1", "planned_at": 0.0, "variants": {"champion": {}, "challenger": {}}}
    with pytest.raises(Unavailable, match="HTTP 401") as refused:
        ev.start(handle, tmp_path)
    assert "not-the-right-one" not in str(refused.value)


@pytest.mark.usefixtures("prefect_server")
def test_a_campaign_launches_then_a_later_run_decides(service, make_study):
    folder = make_study(
        model="unused = 1\n",
        protected="evaluate.py",
        **{"landing.html": "<button>Learn more</button>\n"},
    )
    spec = folder / "study.yaml"
    text = spec.read_text().replace("editable: [model.py]", "editable: [landing.html]")
    text = text.replace("evaluator: {kind: command, command: python evaluate.py, timeout_s: 20}\n",
                        section(service.url))  # fmt: skip
    text = text.replace("{name: score, direction: minimize}",
                        "{name: signup_rate, direction: maximize, "
                        "decision: {rule: beta_binomial, probability: 0.95}}")  # fmt: skip
    spec.write_text(text)
    from tests.conftest import git

    git(folder.parent, "commit", "-qam", "a landing page")
    better = Scripted([{"study/landing.html": "<button>Sign up now</button>\n"}])
    first = campaign(str(folder), experiments=1, researcher=better)
    assert first.ran == 0 and Lab.open(folder).records.ledger.rows() == []  # launched: pending
    assert len(service.tests) == 1
    for i in range(3):  # the scheduled runs that follow: each collects, then may launch one
        later = Scripted([{"study/landing.html": f"<button>Learn more</button> {i}\n"}])
        campaign(str(folder), experiments=1, researcher=later)
        if Lab.open(folder).records.ledger.rows():
            break
    rows = Lab.open(folder).records.ledger.rows()
    assert [r.status for r in rows] == [Status.KEEP, Status.KEEP]
    assert rows[0].description == "baseline" and rows[0].metric == pytest.approx(0.10)
    assert rows[1].metric == pytest.approx(0.30) and "1" in service.stopped
    assert (folder.parent / "runs" / "toy" / "pending" / "2.handle.json").exists() is False
